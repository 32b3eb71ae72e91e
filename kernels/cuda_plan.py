"""Launch plans for the CUDA C kernels of ``kernels/cuda/`` (letters as in the Notation
of ``tinyalex/ops/im2col.py``): plain Python, shared by the GPU and the CPU tests.

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

    plan = cuda_plan.im2col(N, C, H, W, KH, KW, SH, SW, PH, PW, x.dtype, "nhwc")
    launch(module, plan, x=x, cols=cols)
    # = module.get_function(plan.kernel)((plan.grid,), (plan.block,),
    #                                    plan.args(x=x, cols=cols))

where ``module`` is a ``cupy.RawModule`` of ``plan.source`` (kernels/gpu_modules.py:
the binary NVRTC builds from ``cuda_build.module_code`` with ``nvrtc_options``) or the
emulated module that g++ builds from the same files (``cuda_build.emulated_module``). ``plan.args`` checks every array (name,
dtype, number of elements, C-contiguity) before anything is launched, since a kernel
does not check bounds. Plans are pure functions of sizes, cached (``lru_cache``), so a
layer pays for planning once.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np

from tinyalex.random import GOLDEN, MIX1, MIX2, dropout_threshold  # SplitMix64: one definition

BLOCK = 256                     # threads per block (kernels/cuda/common.cuh, TINYALEX_BLOCK)
MAX_BLOCKS = 16 * 1024          # grid-stride loops cover anything larger
INDEX_LIMIT = 2**31             # every i32 index stays below this

FLOATS = {np.dtype(np.float32): "f32", np.dtype(np.float64): "f64"}
LAYOUTS = ("nchw", "nhwc")
ACTIVATIONS = ("add", "relu", "sigmoid")    # bias_<activation>: none, ReLU, sigmoid

# one letter per C parameter type, as emulate.h's signature() spells them
SCALAR_TYPES = {"i": np.int32, "l": np.int64, "I": np.uint32, "L": np.uint64,
                "f": np.float32, "d": np.float64}

# dropout: stream numbers per step (elementwise.cu: seed = mix64(base + (step*STREAMS +
# stream + 1) * GOLDEN))
STREAMS = 65536
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


def _dtype_suffix(dtype, where) -> tuple[np.dtype, str]:
    dtype = np.dtype(dtype)
    if dtype not in FLOATS:
        raise ValueError(f"{where}: the CUDA kernels take float32 or float64, got {dtype}")
    return dtype, FLOATS[dtype]


def _check_sizes(where, **sizes):
    """Each size an int of at least its minimum, given as ``name=(value, minimum)``."""
    for name, (value, minimum) in sizes.items():
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) \
                or value < minimum:
            raise ValueError(f"{where}: {name} must be an int >= {minimum}, got {value!r}")


class _Params:
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


def _window(where, H, W, KH, KW, SH, SW, PH, PW) -> tuple[int, int]:
    _check_sizes(where, H=(H, 1), W=(W, 1), KH=(KH, 1), KW=(KW, 1), SH=(SH, 1),
                 SW=(SW, 1), PH=(PH, 0), PW=(PW, 0))
    OH, OW = (H + 2 * PH - KH) // SH + 1, (W + 2 * PW - KW) // SW + 1
    if OH < 1 or OW < 1:
        raise ValueError(f"{where}: a {KH}x{KW} window does not fit an input of {H}x{W} "
                         f"padded by {PH}x{PW}")
    return OH, OW


def _plan(source, family, suffix, total, largest, index_bits, max_blocks, build) -> Plan:
    grid = grid_size(total, BLOCK, max_blocks)
    bits = choose_index_bits(largest, grid * BLOCK, index_bits)
    params = build(bits)
    return Plan(source, f"{family}_{suffix}_i{bits}", grid, BLOCK, bits, tuple(params.items))


# -- im2col.cu -----------------------------------------------------------------------------

@functools.lru_cache(maxsize=1024)
def im2col(N, C, H, W, KH, KW, SH, SW, PH, PW, dtype, layout="nchw", *, index_bits=None,
           max_blocks=MAX_BLOCKS) -> Plan:
    """x -> cols (N*OH*OW, K), rows (n, oh, ow), K = C*KH*KW.

    layout "nchw": x (N, C, H, W), columns (c, kh, kw) (tinyalex/ops/im2col.py's order);
    layout "nhwc": x (N, H, W, C), columns (kh, kw, c). Arrays: ``x``, ``cols``."""
    dtype, suffix = _dtype_suffix(dtype, "im2col")
    _check_sizes("im2col", N=(N, 1), C=(C, 1))
    if layout not in LAYOUTS:
        raise ValueError(f"im2col: layout must be one of {LAYOUTS}, got {layout!r}")
    OH, OW = _window("im2col", H, W, KH, KW, SH, SW, PH, PW)
    K, rows = C * KH * KW, N * OH * OW
    total = rows * K

    def build(bits):
        p = _Params(bits, dtype)
        p.array("x", N * C * H * W)
        p.array("cols", total)
        p.index("total", total)
        p.div("K", K)
        p.div("OW", OW)
        p.div("OH", OH)
        if layout == "nchw":
            p.div("KW", KW)
            p.div("KH", KH)
            p.index("C", C)
        else:
            p.div("KWC", KW * C)
            p.div("C", C)
        for name, v in (("H", H), ("W", W), ("SH", SH), ("SW", SW), ("PH", PH), ("PW", PW)):
            p.index(name, v)
        return p

    return _plan("im2col", f"im2col_{layout}", suffix, total, max(total, N * C * H * W),
                 index_bits, max_blocks, build)


@functools.lru_cache(maxsize=1024)
def col2im(N, C, H, W, KH, KW, SH, SW, PH, PW, dtype, layout="nchw", *, index_bits=None,
           max_blocks=MAX_BLOCKS) -> Plan:
    """cols (N*OH*OW, K) -> gx, im2col's adjoint, gathered in (kh, kw) order; gx is
    (N, C, H, W) for layout "nchw", (N, H, W, C) for "nhwc" (columns as im2col's).
    Arrays: ``cols``, ``gx`` (overwritten)."""
    dtype, suffix = _dtype_suffix(dtype, "col2im")
    _check_sizes("col2im", N=(N, 1), C=(C, 1))
    if layout not in LAYOUTS:
        raise ValueError(f"col2im: layout must be one of {LAYOUTS}, got {layout!r}")
    OH, OW = _window("col2im", H, W, KH, KW, SH, SW, PH, PW)
    total, ncols = N * C * H * W, N * OH * OW * C * KH * KW

    def build(bits):
        p = _Params(bits, dtype)
        p.array("cols", ncols)
        p.array("gx", total)
        p.index("total", total)
        for name, d in ((("W", W), ("H", H), ("C", C)) if layout == "nchw"
                        else (("C", C), ("W", W), ("H", H))):
            p.div(name, d)
        p.div("SH", SH)
        p.div("SW", SW)
        for name, v in (("KH", KH), ("KW", KW), ("OH", OH), ("OW", OW), ("PH", PH),
                        ("PW", PW)):
            p.index(name, v)
        return p

    return _plan("im2col", f"col2im_{layout}", suffix, total, max(total, ncols), index_bits,
                 max_blocks, build)


# -- pool.cu (channels-last images: x (NI, H, W, CI), y (NI, OH, OW, CI)) -----------------
#
# Plain (N, C, H, W) memory is NI = N*C one-channel images (CI = 1); channels-last
# (N, H, W, C) memory is NI = N images of CI = C channels.

def _pool_forward(kind, NI, H, W, CI, KH, KW, SH, SW, PH, PW, dtype, index_bits, max_blocks):
    where = f"{kind}_pool_forward"
    dtype, suffix = _dtype_suffix(dtype, where)
    _check_sizes(where, NI=(NI, 1), CI=(CI, 1))
    OH, OW = _window(where, H, W, KH, KW, SH, SW, PH, PW)
    total, nx = NI * OH * OW * CI, NI * H * W * CI

    def build(bits):
        p = _Params(bits, dtype)
        p.array("x", nx)
        p.array("y", total)
        if kind == "max":
            p.array("argmax", total, np.int32)
        p.index("total", total)
        p.div("CI", CI)
        p.div("OW", OW)
        p.div("OH", OH)
        for name, v in (("H", H), ("W", W), ("KH", KH), ("KW", KW), ("SH", SH), ("SW", SW),
                        ("PH", PH), ("PW", PW)):
            p.index(name, v)
        return p

    return _plan("pool", where, suffix, total, max(total, nx), index_bits, max_blocks, build)


def _pool_backward(kind, NI, H, W, CI, KH, KW, SH, SW, PH, PW, dtype, index_bits, max_blocks):
    where = f"{kind}_pool_backward"
    dtype, suffix = _dtype_suffix(dtype, where)
    _check_sizes(where, NI=(NI, 1), CI=(CI, 1))
    OH, OW = _window(where, H, W, KH, KW, SH, SW, PH, PW)
    total, ny = NI * H * W * CI, NI * OH * OW * CI

    def build(bits):
        p = _Params(bits, dtype)
        p.array("gy", ny)
        if kind == "max":
            p.array("argmax", ny, np.int32)
        p.array("gx", total)
        p.index("total", total)
        for name, d in (("CI", CI), ("W", W), ("H", H), ("SH", SH), ("SW", SW)):
            p.div(name, d)
        for name, v in (("KH", KH), ("KW", KW), ("OH", OH), ("OW", OW), ("PH", PH),
                        ("PW", PW)):
            p.index(name, v)
        return p

    return _plan("pool", where, suffix, total, max(total, ny), index_bits, max_blocks, build)


@functools.lru_cache(maxsize=1024)
def max_pool_forward(NI, H, W, CI, KH, KW, SH, SW, PH, PW, dtype, *, index_bits=None,
                     max_blocks=MAX_BLOCKS) -> Plan:
    """x (NI, H, W, CI) -> y (NI, OH, OW, CI) and argmax (int32, y's shape) = kh*KW + kw
    of the first maximum. Arrays: ``x``, ``y``, ``argmax``."""
    return _pool_forward("max", NI, H, W, CI, KH, KW, SH, SW, PH, PW, dtype, index_bits,
                         max_blocks)


@functools.lru_cache(maxsize=1024)
def max_pool_backward(NI, H, W, CI, KH, KW, SH, SW, PH, PW, dtype, *, index_bits=None,
                      max_blocks=MAX_BLOCKS) -> Plan:
    """gy, argmax (NI, OH, OW, CI) -> gx (NI, H, W, CI), overwritten.
    Arrays: ``gy``, ``argmax``, ``gx``."""
    return _pool_backward("max", NI, H, W, CI, KH, KW, SH, SW, PH, PW, dtype, index_bits,
                          max_blocks)


@functools.lru_cache(maxsize=1024)
def avg_pool_forward(NI, H, W, CI, KH, KW, SH, SW, PH, PW, dtype, *, index_bits=None,
                     max_blocks=MAX_BLOCKS) -> Plan:
    """x (NI, H, W, CI) -> y (NI, OH, OW, CI), zero padding counted. Arrays: ``x``, ``y``."""
    return _pool_forward("avg", NI, H, W, CI, KH, KW, SH, SW, PH, PW, dtype, index_bits,
                         max_blocks)


@functools.lru_cache(maxsize=1024)
def avg_pool_backward(NI, H, W, CI, KH, KW, SH, SW, PH, PW, dtype, *, index_bits=None,
                      max_blocks=MAX_BLOCKS) -> Plan:
    """gy (NI, OH, OW, CI) -> gx (NI, H, W, CI), overwritten. Arrays: ``gy``, ``gx``."""
    return _pool_backward("avg", NI, H, W, CI, KH, KW, SH, SW, PH, PW, dtype, index_bits,
                          max_blocks)


# -- elementwise.cu ------------------------------------------------------------------------

def _elementwise(family, size, dtype, arrays, index_bits, max_blocks) -> Plan:
    dtype, suffix = _dtype_suffix(dtype, family)
    _check_sizes(family, size=(size, 1))

    def build(bits):
        p = _Params(bits, dtype)
        for name in arrays:
            p.array(name, size)
        p.index("total", size)
        return p

    return _plan("elementwise", family, suffix, size, size, index_bits, max_blocks, build)


@functools.lru_cache(maxsize=1024)
def bias_activation(rows, OC, dtype, activation="relu", *, index_bits=None,
                    max_blocks=MAX_BLOCKS) -> Plan:
    """out (rows, OC) = act(y + bias[oc]) for a GEMM's result y (rows, OC); ``activation``
    "relu", "sigmoid" or "add" (none). ``out`` may be ``y`` (in place).
    Arrays: ``y``, ``bias`` (OC,), ``out``."""
    if activation not in ACTIVATIONS:
        raise ValueError(f"bias_activation: activation must be one of {ACTIVATIONS}, got "
                         f"{activation!r}")
    dtype, suffix = _dtype_suffix(dtype, "bias_activation")
    _check_sizes("bias_activation", rows=(rows, 1), OC=(OC, 1))
    total = rows * OC

    def build(bits):
        p = _Params(bits, dtype)
        p.array("y", total)
        p.array("bias", OC)
        p.array("out", total)
        p.index("total", total)
        p.div("OC", OC)
        return p

    return _plan("elementwise", f"bias_{activation}", suffix, total, total, index_bits,
                 max_blocks, build)


@functools.lru_cache(maxsize=1024)
def relu_forward(size, dtype, *, index_bits=None, max_blocks=MAX_BLOCKS) -> Plan:
    """y = x > 0 ? x : 0 over ``size`` elements. Arrays: ``x``, ``y`` (may be ``x``)."""
    return _elementwise("relu_forward", size, dtype, ("x", "y"), index_bits, max_blocks)


@functools.lru_cache(maxsize=1024)
def relu_backward(size, dtype, *, index_bits=None, max_blocks=MAX_BLOCKS) -> Plan:
    """gx = y > 0 ? gy : 0. Arrays: ``gy``, ``y``, ``gx`` (may be ``gy``)."""
    return _elementwise("relu_backward", size, dtype, ("gy", "y", "gx"), index_bits,
                        max_blocks)


@functools.lru_cache(maxsize=1024)
def sigmoid_forward(size, dtype, *, index_bits=None, max_blocks=MAX_BLOCKS) -> Plan:
    """y = 1 / (1 + exp(-x)), without overflow. Arrays: ``x``, ``y``."""
    return _elementwise("sigmoid_forward", size, dtype, ("x", "y"), index_bits, max_blocks)


@functools.lru_cache(maxsize=1024)
def sigmoid_backward(size, dtype, *, index_bits=None, max_blocks=MAX_BLOCKS) -> Plan:
    """gx = gy * y * (1 - y). Arrays: ``gy``, ``y``, ``gx``."""
    return _elementwise("sigmoid_backward", size, dtype, ("gy", "y", "gx"), index_bits,
                        max_blocks)


def mix64(z: int) -> int:
    """SplitMix64's output function (tinyalex/random.py), on Python ints."""
    z = ((z ^ (z >> 30)) * MIX1) & MASK64
    z = ((z ^ (z >> 27)) * MIX2) & MASK64
    return z ^ (z >> 31)


def dropout_seed(base: int, step: int, stream: int) -> int:
    """The mask seed the dropout kernel derives from device memory rng = {base, step}
    and its call site's ``stream``: mask element i is then
    ``tinyalex.random.keep_mask(dropout_seed(base, step, stream), n, p)[i]``."""
    return mix64((base + ((step * STREAMS + stream + 1) & MASK64) * GOLDEN) & MASK64)


@functools.lru_cache(maxsize=1024)
def dropout(size, dtype, p, stream=0, *, index_bits=None, max_blocks=MAX_BLOCKS) -> Plan:
    """y = x / (1-p) where the mask of ``dropout_seed(rng[0], rng[1], stream)`` keeps the
    element, else 0; the same plan, on gy, is the backward. Arrays: ``x``, ``y``, and
    ``rng``: uint64 (2,) in device memory, {base seed, step}."""
    if isinstance(p, bool) or not isinstance(p, (int, float)) or not 0.0 <= p <= 1.0:
        raise ValueError(f"dropout: p must be a probability between 0 and 1, got {p!r}")
    _check_sizes("dropout", stream=(stream, 0))
    if stream >= STREAMS:
        raise ValueError(f"dropout: stream must be below {STREAMS}, got {stream}")

    dtype, suffix = _dtype_suffix(dtype, "dropout")
    _check_sizes("dropout", size=(size, 1))

    def build(bits):
        q = _Params(bits, dtype)
        q.array("x", size)
        q.array("y", size)
        q.index("total", size)
        q.array("rng", 2, np.uint64)
        q.scalar("stream", "L", stream)
        q.scalar("threshold", "L", dropout_threshold(p))
        q.real("scale", 0.0 if p == 1.0 else 1.0 / (1.0 - p))
        return q

    return _plan("elementwise", "dropout", suffix, size, size, index_bits, max_blocks, build)


def rng_advance() -> Plan:
    """rng[1] += 1 (the step counter), one thread. Arrays: ``rng`` (uint64 (2,))."""
    return Plan("elementwise", "rng_advance", 1, 1, 0,
                (Param("rng", "p", dtype=np.dtype(np.uint64), count=2),))


@functools.lru_cache(maxsize=1024)
def sgd_update(size, dtype, lr, momentum=0.0, weight_decay=0.0, first=False, *,
               index_bits=None, max_blocks=MAX_BLOCKS) -> Plan:
    """One SGD step over flat buffers of ``size`` elements, as tinyalex/optim.py:
    d = g (+ weight_decay * p); with momentum, buf = d on the ``first`` step, else
    momentum * buf + d, and d = buf; then p -= lr * d.
    Arrays: ``p``, ``g``, ``buf`` (None when momentum is 0)."""
    for name, v in (("lr", lr), ("momentum", momentum), ("weight_decay", weight_decay)):
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) \
                or v < 0:
            raise ValueError(f"sgd_update: {name} must be a finite number >= 0, got {v!r}")
    dtype, suffix = _dtype_suffix(dtype, "sgd_update")
    _check_sizes("sgd_update", size=(size, 1))

    def build(bits):
        p = _Params(bits, dtype)
        p.array("p", size)
        p.array("g", size)
        p.array("buf", size, optional=momentum == 0)
        p.index("total", size)
        p.real("lr", lr)
        p.real("momentum", momentum)
        p.real("weight_decay", weight_decay)
        p.scalar("first", "i", int(bool(first)))
        return p

    return _plan("elementwise", "sgd_update", suffix, size, size, index_bits, max_blocks,
                 build)


def _cross_entropy(family, N, K, dtype, arrays, index_bits, max_blocks):
    dtype, suffix = _dtype_suffix(dtype, family)
    _check_sizes(family, N=(N, 1), K=(K, 1))

    def build(bits):
        p = _Params(bits, dtype)
        for name, count, dt in arrays:
            p.array(name, count, dt)
        p.index("N", N)
        p.index("K", K)
        return p

    return _plan("elementwise", family, suffix, N, N * K, index_bits, max_blocks, build)


@functools.lru_cache(maxsize=1024)
def cross_entropy_forward(N, K, dtype, *, index_bits=None, max_blocks=MAX_BLOCKS) -> Plan:
    """One thread per row of logits (N, K): row_loss (N,) = -log softmax[label], row_hit
    (N,) = 1 where argmax == label, bad (int32 (1,)) set to 1 when a label is outside
    [0, K) (its row's loss NaN). Arrays: ``logits``, ``labels`` (int64 (N,)),
    ``row_loss``, ``row_hit``, ``bad``."""
    return _cross_entropy("cross_entropy_forward", N, K, dtype,
                          (("logits", N * K, None), ("labels", N, np.int64),
                           ("row_loss", N, None), ("row_hit", N, None), ("bad", 1, np.int32)),
                          index_bits, max_blocks)


@functools.lru_cache(maxsize=1024)
def cross_entropy_backward(N, K, dtype, *, index_bits=None, max_blocks=MAX_BLOCKS) -> Plan:
    """g (N, K) = (softmax(logits) - one_hot(labels)) * (gy[0] / N), gy the mean loss's
    gradient in device memory. Arrays: ``logits``, ``labels``, ``gy`` (1,), ``g``."""
    return _cross_entropy("cross_entropy_backward", N, K, dtype,
                          (("logits", N * K, None), ("labels", N, np.int64), ("gy", 1, None),
                           ("g", N * K, None)),
                          index_bits, max_blocks)
