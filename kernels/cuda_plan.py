"""Launch plans for the CUDA C kernels of ``kernels/cuda/``: the shared parts (letters
as in the Notation of ``tinyalex/ops/im2col.py``), plain Python, used by the GPU and
the CPU tests. Each op's own plans live beside its algorithm, one file per ``.cu``:
``conv_im2col_gpu.py`` (``cuda/im2col.cu``), ``pool_gpu.py`` (``cuda/pool.cu``) and
``elementwise_gpu.py`` (``cuda/elementwise.cu``).

A plan says everything the host decides about one launch, from sizes alone:

* which kernel: the ``extern "C"`` name, e.g. ``im2col_nhwc_f32_i32`` (family, memory
  order, dtype, index type), and ``source``, the file that holds it;
* the index type: 32-bit where no index can pass 2**31 - 1 (checked here, counting
  the grid-stride loop's last step), else the 64-bit variant (``index_bits``);
* ``grid`` and ``block`` (1-D; the kernels are grid-stride loops, so any grid gives
  the same result, and ``max_blocks`` only bounds it);
* the arguments in the order of the kernel's parameter list, scalars as NumPy scalars
  of the parameter's C type (CuPy passes a NumPy scalar with its own dtype, a Python
  int as a 64-bit one), each run-time divisor as three (``d``, ``magic``, ``shift``,
  see ``magic_divider``).

The same plan drives the GPU and the CPU emulation of the same source::

    plan = conv_im2col_gpu.im2col(N, C, H, W, KH, KW, SH, SW, PH, PW, x.dtype, "nhwc")
    launch(module, plan, x=x, cols=cols)
    # = module.get_function(plan.kernel)((plan.grid,), (plan.block,),
    #                                    plan.args(x=x, cols=cols))

where ``module`` is a ``cupy.RawModule`` of ``plan.source`` (kernels/gpu_modules.py:
the binary NVRTC builds from ``cuda_build.module_code`` with ``nvrtc_options``) or the
emulated module that g++ builds from the same files (``cuda_build.emulated_module``).
``plan.args`` checks every array (name, dtype, number of elements, C-contiguity)
before anything is launched, since a kernel does not check bounds. Plans are pure
functions of sizes, cached (``lru_cache``), so a layer pays for planning once.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .geometry import output_size

BLOCK = 256                     # threads per block (kernels/cuda/common.cuh, TINYALEX_BLOCK)
MAX_BLOCKS = 16 * 1024          # grid-stride loops cover anything larger
INDEX_LIMIT = 2**31             # every i32 index stays below this

FLOATS = {np.dtype(np.float32): "f32", np.dtype(np.float64): "f64"}
LAYOUTS = ("nchw", "nhwc")

# one letter per C parameter type, as emulate.h's signature() spells them
SCALAR_TYPES = {"i": np.int32, "l": np.int64, "I": np.uint32, "L": np.uint64,
                "f": np.float32, "d": np.float64}

MASK64 = 2**64 - 1


# -- division by a run-time divisor --------------------------------------------------------

def magic_divider(d: int, bits: int) -> tuple[int, int]:
    """``(magic, shift)`` with ``n // d == (mulhi(n, magic) + n) >> shift`` for every
    ``0 <= n < 2**(bits-1)`` (``mulhi``: the high ``bits`` of the 2*bits-bit product).

    ``shift = ceil(log2 d)`` and ``magic = floor(2**bits * (2**shift - d) / d) + 1``,
    which fits in ``bits`` bits; ``1 <= d < 2**(bits-1)``.
    """
    if bits not in (32, 64):
        raise ValueError(f"magic_divider: bits must be 32 or 64, got {bits!r}")
    if not 1 <= d < 2 ** (bits - 1):
        raise ValueError(f"magic_divider: divisor must lie in [1, 2**{bits - 1}), got {d!r}")
    shift = (d - 1).bit_length()                  # smallest s with 2**s >= d
    magic = ((1 << bits) * ((1 << shift) - d)) // d + 1
    assert 0 < magic < (1 << bits)
    return magic, shift


def divide(n: int, magic: int, shift: int, bits: int) -> int:
    """What a kernel computes from ``magic_divider``'s numbers: ``n // d``."""
    return (((n * magic) >> bits) + n) >> shift


# -- plans ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class Param:
    """One kernel parameter: an array (``letter == "p"``: ``dtype``, ``count`` elements,
    ``optional`` arrays may be None, passed as a null pointer) or a scalar ``value``."""
    name: str
    letter: str
    value: object = None
    dtype: np.dtype | None = None
    count: int = 0
    optional: bool = False


@dataclass(frozen=True)
class Plan:
    source: str                 # the .cu file of kernels/cuda/ without ".cu"
    kernel: str                 # its extern "C" name
    grid: int
    block: int
    index_bits: int             # 32 or 64 (the kernel's index type), 0 if it has none
    params: tuple[Param, ...]

    @property
    def signature(self) -> str:
        """The parameter types, one letter each (emulate.h's spelling)."""
        return "".join(p.letter for p in self.params)

    @property
    def arrays(self) -> tuple[str, ...]:
        return tuple(p.name for p in self.params if p.letter == "p")

    def args(self, **arrays) -> tuple:
        """The launch arguments in parameter order, after checking every array."""
        missing = [n for n in self.arrays if n not in arrays]
        unknown = [n for n in arrays if n not in self.arrays]
        if missing or unknown:
            raise ValueError(f"{self.kernel}: arrays {list(self.arrays)} expected, got "
                             f"{sorted(arrays)} (missing {missing}, unknown {unknown})")
        out = []
        for p in self.params:
            if p.letter != "p":
                out.append(p.value)
                continue
            a = arrays[p.name]
            if a is None and p.optional:
                out.append(np.uint64(0))          # a null pointer (8 bytes, as CuPy passes)
                continue
            dtype = getattr(a, "dtype", None)
            size = getattr(a, "size", None)
            flags = getattr(a, "flags", None)
            if dtype != p.dtype or size != p.count or flags is None \
                    or not flags.c_contiguous:
                what = "None" if a is None else (
                    f"{type(a).__name__} of dtype {dtype}, {size} elements"
                    + ("" if flags is not None and flags.c_contiguous else ", not C-contiguous"))
                raise ValueError(f"{self.kernel}: array {p.name!r} must be C-contiguous "
                                 f"{p.dtype} with {p.count} elements, got {what}")
            out.append(a)
        return tuple(out)


def launch(module, plan: Plan, **arrays) -> None:
    """Run ``plan`` from ``module`` (a ``cupy.RawModule`` holding ``plan.source``, or
    ``cuda_build.EmulatedModule``) on the named arrays."""
    kernel = module.get_function(plan.kernel)
    kernel((plan.grid,), (plan.block,), plan.args(**arrays))


def grid_size(total: int, block: int = BLOCK, max_blocks: int = MAX_BLOCKS) -> int:
    """Blocks for a grid-stride loop over ``total`` elements: one element a thread,
    at most ``max_blocks`` blocks, at least one."""
    return max(1, min(max_blocks, math.ceil(total / block)))


def choose_index_bits(largest: int, span: int, index_bits: int | None = None) -> int:
    """32 when every index a kernel forms stays below 2**31, else 64.

    ``largest``: the most elements of any array (every index into an array is below
    its size); ``span``: grid * block, the grid-stride loop's step (its last index plus
    one step must not wrap). ``index_bits`` forces a choice (the tests run the 64-bit
    kernels on small arrays); forcing 32 where it cannot hold is an error."""
    needed = 32 if largest + span < INDEX_LIMIT else 64
    if index_bits is None:
        return needed
    if index_bits not in (32, 64):
        raise ValueError(f"index_bits must be 32, 64 or None, got {index_bits!r}")
    if index_bits < needed:
        raise ValueError(f"32-bit indices cannot address {largest} elements with a grid "
                         f"of {span} threads (2**31 - 1 at most)")
    return index_bits


def dtype_suffix(dtype, where) -> tuple[np.dtype, str]:
    dtype = np.dtype(dtype)
    if dtype not in FLOATS:
        raise ValueError(f"{where}: the CUDA kernels take float32 or float64, got {dtype}")
    return dtype, FLOATS[dtype]


def check_sizes(where, **sizes):
    """Each size an int of at least its minimum, given as ``name=(value, minimum)``."""
    for name, (value, minimum) in sizes.items():
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) \
                or value < minimum:
            raise ValueError(f"{where}: {name} must be an int >= {minimum}, got {value!r}")


class Params:
    """Collects a kernel's parameters in order, with its index width."""

    def __init__(self, bits: int, dtype: np.dtype):
        self.bits, self.dtype, self.items = bits, dtype, []

    def array(self, name, count, dtype=None, optional=False):
        self.items.append(Param(name, "p", dtype=np.dtype(dtype or self.dtype),
                                count=int(count), optional=optional))

    def index(self, name, value):           # I: i32 or i64
        letter = "i" if self.bits == 32 else "l"
        self.items.append(Param(name, letter, SCALAR_TYPES[letter](value)))

    def div(self, name, d):                 # Div<U>: U d, U magic, u32 shift
        magic, shift = magic_divider(int(d), self.bits)
        letter = "I" if self.bits == 32 else "L"
        self.items += [Param(name + "_d", letter, SCALAR_TYPES[letter](d)),
                       Param(name + "_m", letter, SCALAR_TYPES[letter](magic)),
                       Param(name + "_s", "I", np.uint32(shift))]

    def scalar(self, name, letter, value):
        self.items.append(Param(name, letter, SCALAR_TYPES[letter](value)))

    def real(self, name, value):            # T
        self.scalar(name, "f" if self.dtype == np.float32 else "d", value)


def window(where, H, W, KH, KW, SH, SW, PH, PW) -> tuple[int, int]:
    check_sizes(where, H=(H, 1), W=(W, 1), KH=(KH, 1), KW=(KW, 1), SH=(SH, 1),
                 SW=(SW, 1), PH=(PH, 0), PW=(PW, 0))
    OH, OW = output_size(H, KH, SH, PH), output_size(W, KW, SW, PW)
    if OH < 1 or OW < 1:
        raise ValueError(f"{where}: a {KH}x{KW} window does not fit an input of {H}x{W} "
                         f"padded by {PH}x{PW}")
    return OH, OW


def make_plan(source, family, suffix, total, largest, index_bits, max_blocks, build) -> Plan:
    grid = grid_size(total, BLOCK, max_blocks)
    bits = choose_index_bits(largest, grid * BLOCK, index_bits)
    params = build(bits)
    return Plan(source, f"{family}_{suffix}_i{bits}", grid, BLOCK, bits, tuple(params.items))
