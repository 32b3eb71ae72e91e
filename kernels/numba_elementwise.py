"""Elementwise loops of the CPU over index ranges i0..i1-1 of 1-D arrays, so that
``elementwise_cpu.py`` (which checks the arguments) can cut an array into one range
per thread: ReLU, the sigmoid (float32 forward, and backward), dropout and the SGD
update. They release the GIL.

Dropout's mask comes from SplitMix64, a counter-based generator: element ``i`` of a
call with seed ``s`` is kept when ``mix64(s + (i+1)*GOLDEN) >> 40 >= threshold``, i the
index in the whole array, so a range computes its part of the one mask. The same
formula is written out with NumPy in ``tinyalex/random.py`` (the reference) and for
CUDA in ``kernels/cuda/elementwise.cu``, so a seed gives one mask everywhere.

The sigmoid. NumPy's SIMD ``exp`` needs four passes over memory for
``1 / (1 + exp(-x))``, and Numba's ``exp`` calls the C library once per element. Here
``exp`` is written out so that the compiler turns the whole loop into SIMD code
(float32, LeNet's activation; float64 stays with NumPy):

    exp(t) = 2**n * exp(r),   n = round(t / ln 2),   r = t - n*ln 2 in [-ln2/2, ln2/2]

with ``exp(r)`` a degree-7 polynomial (the coefficients of Cephes' ``expf``, within
2 ulp on that interval) and 2**n built directly from its IEEE-754 bits: exponent
field ``n + 127``, mantissa 0. ``ln 2`` is split in two parts (``LN2_HI`` has few
enough bits that ``n * LN2_HI`` is exact) so that r keeps its accuracy. The result is
within a few ulp of NumPy's ``1 / (1 + exp(-x))`` (the tests hold it to 4e-7 relative).

Saturation, as the reference gives it: ``t = -x`` is held above -86 (there the sigmoid
is 1 to float32 precision), ``exp`` is inf beyond 88.72 (so the sigmoid is 0), and
in between the division gives the tiny denormal values; NaN stays NaN.
``error_model="numpy"`` lets a division by zero give inf instead of raising, which
is what allows the compiler to vectorise the loop.
"""

from __future__ import annotations

import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.extending import intrinsic

from tinyalex import random as R

# SplitMix64's constants (defined once, in tinyalex/random.py), as Numba's uint64
GOLDEN, MIX1, MIX2 = np.uint64(R.GOLDEN), np.uint64(R.MIX1), np.uint64(R.MIX2)
S30, S27, S31, S40 = np.uint64(30), np.uint64(27), np.uint64(31), np.uint64(40)

LOG2E = np.float32(1.4426950408889634)
LN2_HI = np.float32(0.693359375)            # 9 significant bits: n * LN2_HI is exact
LN2_LO = np.float32(-2.12194440e-4)         # ln 2 - LN2_HI
T_MIN = np.float32(-86.0)                   # exp(-86) + 1 == 1 in float32
T_MAX = np.float32(88.72283)                # ln(largest float32)
MAGIC = np.float32(12582912.0)              # 1.5 * 2**23: x + MAGIC - MAGIC rounds x


@intrinsic
def _float32_from_bits(typingctx, bits):
    """The float32 whose IEEE-754 bit pattern is the int32 ``bits``."""
    if bits != types.int32:
        return None

    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], ir.FloatType())
    return types.float32(types.int32), codegen


@njit(cache=True, nogil=True, fastmath={"contract"}, error_model="numpy", inline="always")
def _sigmoid32(v):
    """1 / (1 + exp(-v)) of one float32 (inlined into the loops, which vectorise it)."""
    t = -v
    big = t > T_MAX
    t = t if t < T_MAX else T_MAX
    t = t if t > T_MIN else T_MIN
    n = (t * LOG2E + MAGIC) - MAGIC                 # round(t / ln 2)
    r = (t - n * LN2_HI) - n * LN2_LO               # t - n ln 2, |r| <= ln2 / 2
    p = np.float32(1.9875691500e-4)
    p = p * r + np.float32(1.3981999507e-3)
    p = p * r + np.float32(8.3334519073e-3)
    p = p * r + np.float32(4.1665795894e-2)
    p = p * r + np.float32(1.6666665459e-1)
    p = p * r + np.float32(5.0000001201e-1)
    e = p * r * r + r + np.float32(1.0)             # exp(r)
    # 2**n as 2**(n-1) * 2: n - 1 + 127 stays within the exponent field's 1..254
    e = e * _float32_from_bits(np.int32((np.int32(n) + np.int32(126)) << np.int32(23)))
    e = e * np.float32(2.0)
    e = np.float32(np.inf) if big else e
    s = np.float32(1.0) / (np.float32(1.0) + e)
    return s if v == v else v                       # NaN stays NaN


@njit(cache=True, nogil=True, fastmath={"contract"}, error_model="numpy")
def forward_float32(x, y, i0, i1):
    """y[i] = 1 / (1 + exp(-x[i])) for i in i0..i1-1 (1-D float32 arrays)."""
    xs, ys = x[i0:i1], y[i0:i1]
    for i in range(i1 - i0):
        ys[i] = _sigmoid32(xs[i])
    return y


@njit(cache=True, nogil=True)
def backward(gy, y, gx, one, i0, i1):
    """gx[i] = gy[i] * y[i] * (one - y[i]) for i in i0..i1-1 (1-D arrays of one dtype;
    ``one`` of that dtype, so that float32 is not promoted: the reference's rounding)."""
    gs, ys, out = gy[i0:i1], y[i0:i1], gx[i0:i1]
    for i in range(i1 - i0):
        out[i] = gs[i] * ys[i] * (one - ys[i])
    return gx


@njit(cache=True, nogil=True)
def sgd_update(param, grad, lr, i0, i1):
    """In place: param[i] -= lr * grad[i] for i in i0..i1-1 (no temporary)."""
    ps, gs = param[i0:i1], grad[i0:i1]
    for i in range(i1 - i0):
        ps[i] -= lr * gs[i]
    return param


@njit(cache=True, nogil=True)
def relu_forward(x, y, i0, i1):
    """y[i] = max(x[i], 0) for i in i0..i1-1 (NaN stays NaN, as np.maximum)."""
    xs, ys = x[i0:i1], y[i0:i1]
    for i in range(i1 - i0):
        v = xs[i]
        ys[i] = 0 if v <= 0 else v
    return y


@njit(cache=True, nogil=True)
def relu_backward(gy, y, gx, i0, i1):
    """gx[i] = gy[i] where the forward's output y[i] > 0, else 0."""
    gs, ys, out = gy[i0:i1], y[i0:i1], gx[i0:i1]
    for i in range(i1 - i0):
        out[i] = gs[i] if ys[i] > 0 else 0
    return gx


@njit(cache=True, nogil=True, inline="always")
def _keep(seed, i, threshold):
    z = seed + np.uint64(i + 1) * GOLDEN
    z = (z ^ (z >> S30)) * MIX1
    z = (z ^ (z >> S27)) * MIX2
    z = z ^ (z >> S31)
    return (z >> S40) >= threshold


@njit(cache=True, nogil=True)
def dropout(x, seed, threshold, scale, y, i0, i1):
    """y[i] = x[i] * scale where element i is kept, else 0 (forward and backward alike)."""
    for i in range(i0, i1):
        y[i] = x[i] * scale if _keep(seed, i, threshold) else 0
    return y
