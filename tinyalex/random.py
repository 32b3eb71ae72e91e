"""Random numbers for initialisation and dropout, from one seeded generator.

``tinyalex.manual_seed(n)`` makes weight initialisation and dropout masks
reproducible. Initial weights are always drawn on the host (NumPy's PCG64), so the
same seed gives the same network on every backend. Random numbers needed on the
GPU (dropout masks) are drawn there from a seed taken from the host generator, so
that the host generator's state alone (``get_rng_state``) decides what comes next:
a checkpoint that saves it resumes the same stream.

Dropout masks come from a *counter-based* generator: element ``i`` of a mask drawn
with seed ``s`` depends on (s, i) alone, through SplitMix64's output function::

    z = s + (i + 1) * 0x9E3779B97F4A7C15            (mod 2**64)
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9
    z = (z ^ (z >> 27)) * 0x94D049BB133111EB
    z =  z ^ (z >> 31)
    keep  <=>  z >> 40  >=  ceil(p * 2**24)          (top 24 bits as a uniform number)

so a mask is computed in parallel, element by element, identically by NumPy
(``keep_mask`` below), the Numba kernel and the CUDA kernel, and backward recomputes
it from the seed instead of storing it.

Because element i enters only as ``(i + 1) * GOLDEN``, element ``offset + i`` of the
mask of seed ``s`` is element ``i`` of the mask of ``seed_at(s, offset) = s + offset *
GOLDEN``: a process that computes rows ``first..`` of a larger batch (data-parallel
training, ``tinyalex/dist/``) draws exactly its rows of the one mask the whole batch
would get (``dropout(x, p, first_row=first)``), with no change to the kernels.
"""

from __future__ import annotations

import json
import math

import numpy as np

from . import backend as B
from .checks import check_int

_generator = np.random.Generator(np.random.PCG64())


def manual_seed(seed: int) -> None:
    """Seed every random stream tinyalex draws from."""
    global _generator
    seed = check_int(seed, "seed", "manual_seed", 0, type_error=ValueError)
    _generator = np.random.Generator(np.random.PCG64(seed))


def generator() -> np.random.Generator:
    """The host generator (for code that needs NumPy's API directly)."""
    return _generator


def get_rng_state() -> str:
    """The generator's state as a JSON string (stored in checkpoints)."""
    return json.dumps(_generator.bit_generator.state)


def set_rng_state(state: str) -> None:
    try:
        parsed = json.loads(state)
        bit_generator = np.random.PCG64()
        bit_generator.state = parsed
    except (TypeError, ValueError, KeyError) as exc:
        raise ValueError(f"set_rng_state: not a PCG64 state saved by get_rng_state ({exc})") from None
    global _generator
    _generator = np.random.Generator(bit_generator)


def uniform(shape, dtype=np.float32, backend: str = "numpy"):
    """Uniform numbers in [0, 1) of the given shape on the given backend."""
    if backend == "numpy":
        return _generator.random(shape, dtype=np.dtype(dtype))
    seed = int(_generator.integers(0, 2**63 - 1))
    cp = B.cupy_module()
    return cp.random.RandomState(seed).random_sample(shape, dtype=np.dtype(dtype))


def seed_for_device() -> int:
    """A 64-bit seed from the host stream, for kernels that draw their own numbers."""
    return int(_generator.integers(0, 2**63 - 1))


GOLDEN = 0x9E3779B97F4A7C15
MIX1, MIX2 = 0xBF58476D1CE4E5B9, 0x94D049BB133111EB


def dropout_threshold(p: float) -> int:
    """The 24-bit threshold: an element is kept when its 24 random bits are >= it."""
    return int(math.ceil(float(p) * 2**24))


def splitmix64(seed: int, n: int, xp=np):
    """The first ``n`` outputs (uint64) of SplitMix64 started at ``seed``."""
    u64 = xp.uint64
    z = xp.uint64(seed) + (xp.arange(1, n + 1, dtype=u64) * u64(GOLDEN))   # wraps mod 2**64
    z = (z ^ (z >> u64(30))) * u64(MIX1)
    z = (z ^ (z >> u64(27))) * u64(MIX2)
    return z ^ (z >> u64(31))


def seed_at(seed: int, offset: int) -> int:
    """The seed whose mask element ``i`` is element ``offset + i`` of ``seed``'s mask."""
    return (int(seed) + int(offset) * GOLDEN) % 2**64


def keep_mask(seed: int, n: int, p: float, xp=np):
    """Dropout's keep mask, ``n`` booleans, each True with probability ``1 - p``."""
    return (splitmix64(seed, n, xp) >> xp.uint64(40)) >= xp.uint64(dropout_threshold(p))
