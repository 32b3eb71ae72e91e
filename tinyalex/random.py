"""Random numbers for initialisation and dropout, from one seeded generator.

``tinyalex.manual_seed(n)`` makes weight initialisation and dropout masks
reproducible. Initial weights are always drawn on the host (NumPy's PCG64), so the
same seed gives the same network on every backend. Random numbers needed on the
GPU (dropout masks) are drawn there from a seed taken from the host generator, so
that the host generator's state alone (``get_rng_state``) decides what comes next:
a checkpoint that saves it resumes the same stream.
"""

from __future__ import annotations

import json
import numbers

import numpy as np

from . import backend as B

_generator = np.random.Generator(np.random.PCG64())


def manual_seed(seed: int) -> None:
    """Seed every random stream tinyalex draws from."""
    global _generator
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or seed < 0:
        raise ValueError(f"manual_seed: seed must be a non-negative int, got {seed!r}")
    _generator = np.random.Generator(np.random.PCG64(int(seed)))


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
