"""Numba loops of d2l's LeNet blocks, convolution + sigmoid + 2x2 average pooling as one
op, with 32 images side by side in the vector lanes; ``conv_direct_cpu.py`` calls them
(letters as in the Notation of ``tinyalex/ops/im2col.py``; stride 1, padding below the
kernel, as ``numba_direct.py``'s loops).

Why lanes. ``numba_direct.py`` vectorises over the pixels of one image: an output row
of LeNet's second layer is 10 pixels, shorter than one AVX-512 vector of 16 floats, so
its loops run over whole padded planes and throw away the columns between rows. Here
a block of ``V`` = 32 images is stored with the image as the last, fastest index::

    xb[block, c, h, w, l] = x[block * V + l, c, h - PH, w - PW]   (0 in the padding)

so pixel (h, w) of the block's 32 images fills two vectors of 16, and an output row of
OW pixels is OW * V floats with no gap: every lane computes a useful number. The input
is copied into this layout once per step (``pack``), the sigmoid's output stays in it
for backward, and only the small pooled output and the input's gradient are copied
back to (N, C, H, W). Images past the batch's end fill the last block's lanes with
zeros.

Why 32 images and not one vector's 16: a loop over a row is set up once per 4
channels x 4 taps (the filters broadcast, the rows' overlap checked) and LeNet's second
layer's rows are short (10 pixels), so that set-up weighs on 10 vectors at 16 images
and on 20 at 32. And every array of the layout starts a cache line (``empty``,
``_aligned``): a vector load that straddles two lines costs more than one that does
not, and V, a multiple of 16, keeps every row on a line's start. What each change
measured is in the s4 record
(benchmarks/results/2026-12-07_epyc-zen5-avx512-2cores-s4/README.md).

The forward pass. For stride 1, output row oh of tap (c, kh, kw) reads the input row
oh + kh from column kw on: ``xb[block, c, oh + kh, kw:kw + OW, :]``, a contiguous run
of OW * V floats at a constant offset from the row's start. So a whole output row is a
sum of shifted input rows::

    acc[oc, :] = b[oc] + sum over taps (c, kh, kw) of w[oc, c, kh, kw] * row(c, oh + kh, kw)

one loop over OW * V floats per 4 output channels x 4 taps (16 multiply-adds per 4
loads and 4 stores), as ``numba_direct.forward`` does over a padded plane; where the
channels do not come in fours (LeNet's first layer has 6), 2 channels x 8 taps, so
that no channel is computed for nothing. Every output element is summed in
``numba_direct.forward``'s order (the bias, then the taps 4 at a time in (c, kh, kw)
order), so the numbers are that loop's bit for bit. Then, while the row is in cache,
the sigmoid, and after every second row the 2x2 pooling.

The backward pass, per block: the pooled gradient times the sigmoid's derivative
gives the gradient at the convolution's output ``g`` (in lanes), then

* the weight gradient, ``gW[oc, tap] = sum over images and pixels of
  g[oc, pixel] * x[tap + pixel]``: for each kw the input is copied once more with
  rows of OW pixels starting at column kw, so that for every tap the pixels a filter
  tap meets are one contiguous run over the block's whole output, OH * OW * V floats:
  long dot products in 4x4 blocks, no gaps. Its sums run in another order than
  ``numba_direct.weight_gradient``'s (rounding differs);
* the input gradient, the forward's adjoint: input row h collects, for kh = 0..KH-1
  (output row h - kh) and kw = 0..KW-1, ``w[oc, c, kh, kw] * g[oc, h - kh, :]`` added
  at column kw, 2 input channels x 8 output channels per loop (LeNet's second layer
  has 6 input channels: none computed for nothing), in
  ``numba_direct.input_gradient``'s order for every element (its bits).

Only real pixels meet in these sums (no thrown-away columns), so inf or NaN in the
input or the filters spreads exactly as in the reference's products.

Every loop covers blocks b0..b1-1 and releases the GIL, so that ``conv_direct_cpu.py``
can run disjoint blocks in several threads; weight gradients are *added* to the
caller's (per-thread) arrays. Compiled for float32 and float64.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit, types
from numba.extending import overload

from .numba_direct import _dots_4x4
from .numba_elementwise import _sigmoid32

V = 32          # images per block: two AVX-512 vectors of float32 (four AVX2 ones)
BLOCK = 4       # the weight gradient's register block: 4 channels x 4 taps


@njit(cache=True, nogil=True, inline="always")
def _aligned(n, dt):
    """An uninitialised 1-D array of n numbers of dtype dt whose first number starts a
    cache line (64 bytes): with V a multiple of 16 every row of the lanes layout then
    starts one too, so no vector load or store straddles two lines (NumPy's and
    Numba's allocators guarantee 16 and 32 bytes)."""
    raw = np.empty(n + 16, dt)                      # 16 numbers: at least 64 bytes
    skip = (-raw.ctypes.data) % 64 // raw.itemsize
    return raw[skip:skip + n]


def empty(shape, dtype):
    """``np.empty(shape, dtype)`` starting a cache line, as ``_aligned`` in the loops:
    the layout's arrays that NumPy holds between them (the packed input, the sigmoid's
    output)."""
    dtype, n = np.dtype(dtype), math.prod(shape)
    raw = np.empty(n + 64 // dtype.itemsize, dtype)
    skip = (-raw.__array_interface__["data"][0]) % 64 // dtype.itemsize
    return raw[skip:skip + n].reshape(shape)


def sigmoid(v):
    """1 / (1 + exp(-v)) of one number: this Python form runs under the tests' guarded
    sweep (float64); compiled, float32 takes ``numba_elementwise``'s vectorised
    ``_sigmoid32`` (the sigmoid loop's own numbers) and float64 ``np.exp``."""
    return 1.0 / (1.0 + np.exp(-v))


@overload(sigmoid, inline="always")
def _sigmoid_compiled(v):
    if v == types.float32:
        return lambda v: _sigmoid32(v)
    return lambda v: 1.0 / (1.0 + np.exp(-v))


@njit(cache=True, nogil=True)
def _images_to_lanes(src, dst):
    """dst[i, lane] = src[lane, i] for the lanes of src (n, M) (n <= V images of a
    block, into dst (M, V)); dst's other lanes are left as they are. Row by row of dst:
    its writes are contiguous, its reads strided (measured faster than the other way
    round: the s4 record)."""
    n, M = src.shape
    for i in range(M):
        d = dst[i]
        for lane in range(n):
            d[lane] = src[lane, i]


@njit(cache=True, nogil=True)
def pack(x, PH, PW, xb, b0, b1):
    """Blocks b0..b1-1 of xb (NB, C, H + 2*PH, W + 2*PW, V) from x (N, C, H, W), with
    zeros in the padding and in the lanes past the batch's end."""
    N, C, H, W = x.shape
    for block in range(b0, b1):
        n0, n1 = block * V, min(N, block * V + V)
        if PH or PW or n1 - n0 < V:
            xb[block] = 0
        for c in range(C):
            for h in range(H):
                _images_to_lanes(x[n0:n1, c, h], xb[block, c, h + PH, PW:PW + W])
    return xb


@njit(cache=True, nogil=True)
def _lanes_to_images(src, dst):
    """dst[lane, i] = src[i, lane] for the lanes of dst (n, M) (a block's images, n <= V,
    back from src (M, V)), in tiles of V values (a transposition of V x V floats)."""
    n, M = dst.shape
    tiles = M - M % V
    for i0 in range(0, tiles, V):
        for lane in range(n):
            d = dst[lane, i0:]
            for i in range(V):
                d[i] = src[i0 + i, lane]
    for i in range(tiles, M):
        for lane in range(n):
            dst[lane, i] = src[i, lane]


@njit(cache=True, nogil=True, fastmath={"contract"})
def _row_4x4(xf, start, offs, wm, bb, OW, acc):
    """acc (O4, OW * V) = an output row of every channel (``forward_sigmoid_avgpool``),
    4 channels x 4 taps per pass over the row; wm (O4, K4), offs (K4,): the filters
    and their taps' offsets in xf, padded with zeros."""
    O4, K4 = wm.shape
    R = OW * V                                      # a multiple of V: no remainder loop
    for oc in range(0, O4, 4):
        a0, a1, a2, a3 = acc[oc], acc[oc + 1], acc[oc + 2], acc[oc + 3]
        c0, c1, c2, c3 = bb[oc], bb[oc + 1], bb[oc + 2], bb[oc + 3]
        for q in range(R):
            a0[q], a1[q], a2[q], a3[q] = c0, c1, c2, c3
        for k in range(0, K4, 4):
            x0, x1 = xf[start + offs[k]:], xf[start + offs[k + 1]:]
            x2, x3 = xf[start + offs[k + 2]:], xf[start + offs[k + 3]:]
            u = wm[oc:oc + 4, k:k + 4]
            u00, u01, u02, u03 = u[0, 0], u[0, 1], u[0, 2], u[0, 3]
            u10, u11, u12, u13 = u[1, 0], u[1, 1], u[1, 2], u[1, 3]
            u20, u21, u22, u23 = u[2, 0], u[2, 1], u[2, 2], u[2, 3]
            u30, u31, u32, u33 = u[3, 0], u[3, 1], u[3, 2], u[3, 3]
            for q in range(R):
                t0, t1, t2, t3 = x0[q], x1[q], x2[q], x3[q]
                a0[q] += u00 * t0 + u01 * t1 + u02 * t2 + u03 * t3
                a1[q] += u10 * t0 + u11 * t1 + u12 * t2 + u13 * t3
                a2[q] += u20 * t0 + u21 * t1 + u22 * t2 + u23 * t3
                a3[q] += u30 * t0 + u31 * t1 + u32 * t2 + u33 * t3


@njit(cache=True, nogil=True, inline="always")
def _add_2x8(a0, a1, x0, x1, x2, x3, x4, x5, x6, x7, u, R):
    """a_i[q] += sum over j of u[i, j] * x_j[q] for i < 2, j < 8, q < R, four terms at a
    time, ``a = (a + terms 0-3) + terms 4-7``: the order of two 4-term passes
    (``numba_direct``'s). The forward's taps and the input gradient's channels."""
    u00, u01, u02, u03 = u[0, 0], u[0, 1], u[0, 2], u[0, 3]
    u04, u05, u06, u07 = u[0, 4], u[0, 5], u[0, 6], u[0, 7]
    u10, u11, u12, u13 = u[1, 0], u[1, 1], u[1, 2], u[1, 3]
    u14, u15, u16, u17 = u[1, 4], u[1, 5], u[1, 6], u[1, 7]
    for q in range(R):
        t0, t1, t2, t3 = x0[q], x1[q], x2[q], x3[q]
        t4, t5, t6, t7 = x4[q], x5[q], x6[q], x7[q]
        a = a0[q] + (u00 * t0 + u01 * t1 + u02 * t2 + u03 * t3)
        a0[q] = a + (u04 * t4 + u05 * t5 + u06 * t6 + u07 * t7)
        a = a1[q] + (u10 * t0 + u11 * t1 + u12 * t2 + u13 * t3)
        a1[q] = a + (u14 * t4 + u15 * t5 + u16 * t6 + u17 * t7)


@njit(cache=True, nogil=True, fastmath={"contract"})
def _row_2x8(xf, start, offs, wm, bb, OW, acc):
    """``_row_4x4`` with 2 channels x 8 taps per pass (wm (O2, K8)): for channel
    counts that are not a multiple of 4 (LeNet's first layer, 6). Each output still
    adds its taps 4 at a time, ``a = (a + taps 0-3) + taps 4-7``, the order of two
    4-tap passes; the filters' padding to 8 taps adds zeros."""
    O2, K8 = wm.shape
    R = OW * V                                      # a multiple of V: no remainder loop
    for oc in range(0, O2, 2):
        a0, a1 = acc[oc], acc[oc + 1]
        c0, c1 = bb[oc], bb[oc + 1]
        for q in range(R):
            a0[q], a1[q] = c0, c1
        for k in range(0, K8, 8):
            x0, x1 = xf[start + offs[k]:], xf[start + offs[k + 1]:]
            x2, x3 = xf[start + offs[k + 2]:], xf[start + offs[k + 3]:]
            x4, x5 = xf[start + offs[k + 4]:], xf[start + offs[k + 5]:]
            x6, x7 = xf[start + offs[k + 6]:], xf[start + offs[k + 7]:]
            _add_2x8(a0, a1, x0, x1, x2, x3, x4, x5, x6, x7, wm[oc:oc + 2, k:k + 8], R)


@njit(cache=True, nogil=True, fastmath={"contract"}, error_model="numpy")
def forward_sigmoid_avgpool(xb, w, b, quarter, sb, y, b0, b1):
    """For blocks b0..b1-1 of xb (NB, C, Hp, Wp, V): sb (NB, OC, OH, OW, V) =
    sigmoid(conv(x)) and y (N, OC, OH//2, OW//2) its 2x2 average pooling (stride 2),
    in (N, C, H, W) order; w (OC, C, KH, KW), b (OC,) (zeros for no bias); ``quarter``
    is 1/4 in their dtype (a window's sum times 1/4 is its sum / 4 to the bit)."""
    _, C, Hp, Wp, _ = xb.shape
    OC, _, KH, KW = w.shape
    _, _, OH, OW, _ = sb.shape
    N, _, POH, POW = y.shape
    K = C * KH * KW
    fours = OC % 4 == 0                             # 4 x 4 register blocks, else 2 x 8
    OP = OC if fours else -(-OC // 2) * 2           # channels and taps, padded to the
    KP = -(-K // 4) * 4 if fours else -(-K // 8) * 8  # register block
    R, plane = OW * V, Hp * Wp * V                  # an output row, an input plane
    offs = np.full(KP, C * plane, np.int64)         # padded taps: the zeros after the planes
    for c in range(C):
        for kh in range(KH):
            for kw in range(KW):
                offs[(c * KH + kh) * KW + kw] = c * plane + (kh * Wp + kw) * V
    wm = np.zeros((OP, KP), xb.dtype)               # (OC, C*KH*KW), padded with zeros
    wm[:OC, :K] = w.reshape(OC, K)
    bb = np.zeros(OP, xb.dtype)
    bb[:OC] = b
    xf = _aligned(C * plane + plane, xb.dtype)      # one block's planes, then zeros
    xf[C * plane:] = 0
    acc = _aligned(OP * R, xb.dtype).reshape(OP, R)  # one output row of every channel
    pooled = np.empty((OC, POH, POW, V), xb.dtype)  # one block's output
    for block in range(b0, b1):
        xf[:C * plane] = xb[block].reshape(C * plane)
        for oh in range(OH):
            if fours:
                _row_4x4(xf, oh * Wp * V, offs, wm, bb, OW, acc)
            else:
                _row_2x8(xf, oh * Wp * V, offs, wm, bb, OW, acc)
            for oc in range(OC):
                a, s = acc[oc], sb[block, oc, oh].reshape(R)
                for q in range(R):
                    s[q] = sigmoid(a[q])
            if oh % 2 == 1 and oh < 2 * POH:         # rows oh-1, oh: a row of windows
                for oc in range(OC):
                    top, bottom = sb[block, oc, oh - 1], sb[block, oc, oh]
                    out = pooled[oc, oh // 2]
                    for k in range(POW):             # (kh, kw) in the pooling's order
                        tl, tr, bl, br = top[2 * k], top[2 * k + 1], bottom[2 * k], \
                            bottom[2 * k + 1]
                        o = out[k]
                        for lane in range(V):
                            o[lane] = (tl[lane] + tr[lane] + bl[lane] + br[lane]) * quarter
        n0, n1 = block * V, min(N, block * V + V)
        _lanes_to_images(pooled.reshape(OC * POH * POW, V),
                         y[n0:n1].reshape(n1 - n0, OC * POH * POW))
    return y


@njit(cache=True, nogil=True)
def _output_gradient(gy, sb, block, one, quarter, gyb, g):
    """g (O8, OH * OW * V): the gradient at the convolution's output for one block,
    from the pooled gradient gy (N, OC, POH, POW): each pixel gets its window's
    gy * 1/4 (0 in a row or column no window covers, and in the lanes past the batch's
    end), times the sigmoid's derivative s * (1 - s); the numbers of
    ``numba_pool.avg_pool_backward`` and ``numba_elementwise.backward``. gyb (OC,
    POH, POW, V): room for the block's gy in lanes."""
    N, OC, POH, POW = gy.shape
    _, _, OH, OW, _ = sb.shape
    R = OW * V
    n0, n1 = block * V, min(N, block * V + V)
    lanes = gyb.reshape(OC * POH * POW, V)
    if n1 - n0 < V:
        lanes[:] = 0
    _images_to_lanes(gy[n0:n1].reshape(n1 - n0, OC * POH * POW), lanes)
    share = np.zeros(R, sb.dtype)                   # a pooled row's gy/4, each value twice
    for oc in range(OC):
        for oh in range(OH):
            if oh % 2 == 0:                         # a new row of windows
                share[:] = 0
                if oh < 2 * POH:
                    windows = gyb[oc, oh // 2]
                    for k in range(POW):
                        e, left, right = windows[k], share[2 * k * V:], share[(2 * k + 1) * V:]
                        for lane in range(V):
                            left[lane] = right[lane] = e[lane] * quarter
            s, dst = sb[block, oc, oh].reshape(R), g[oc, oh * R:]
            for q in range(R):
                dst[q] = share[q] * s[q] * (one - s[q])


@njit(cache=True, nogil=True, fastmath={"reassoc"})
def _bias_gradient(g, gb, zero):
    """Adds one block's share to gb (OC,): the sums of g's rows (O4, OH * OW * V)."""
    for oc in range(gb.shape[0]):
        s = zero
        row = g[oc]
        for p in range(row.shape[0]):
            s += row[p]
        gb[oc] += s


@njit(cache=True, nogil=True, fastmath={"contract", "reassoc"})
def _weight_gradient(xb, g, block, KH, KW, xs, acc, zero):
    """Adds one block's share to acc (O4, K4) = gW (padded). xs: room for the input's
    KW column-shifted copies, then OH * OW * V zeros."""
    _, C, Hp, Wp, _ = xb.shape
    O4, K4 = acc.shape
    OH, OW = Hp - KH + 1, Wp - KW + 1
    M, R = OH * OW * V, OW * V                      # the block's output, a row
    plane = Hp * R
    for kw in range(KW):                            # xs[kw, c, h] = xb[block, c, h, kw:kw+OW]
        for c in range(C):
            for h in range(Hp):
                src, dst = xb[block, c, h].reshape(Wp * V)[kw * V:], xs[(kw * C + c) * plane
                                                                         + h * R:]
                for q in range(R):
                    dst[q] = src[q]
    offs = np.full(K4, KW * C * plane, np.int64)    # tap (c, kh, kw); padded: the zeros
    for c in range(C):
        for kh in range(KH):
            for kw in range(KW):
                offs[(c * KH + kh) * KW + kw] = (kw * C + c) * plane + kh * R
    for oc in range(0, O4, BLOCK):
        g0, g1, g2, g3 = g[oc], g[oc + 1], g[oc + 2], g[oc + 3]
        for k in range(0, K4, BLOCK):
            _dots_4x4(g0, g1, g2, g3, xs[offs[k]:], xs[offs[k + 1]:], xs[offs[k + 2]:],
                      xs[offs[k + 3]:], M, acc[oc:oc + BLOCK, k:k + BLOCK], zero)


@njit(cache=True, nogil=True, fastmath={"contract"})
def _input_gradient(g, wm, block, KH, KW, PH, PW, gp, gx):
    """Images of one block of gx (N, C, H, W) (overwritten) from g (O8, OH * OW * V);
    wm (KH*KW, C2, O8) the filters as (tap, c, oc), padded with zeros; gp (C2, Hp,
    Wp * V) room for the padded planes' gradient. 2 input channels x 8 output
    channels per pass over a row: each element adds the output channels 4 at a time,
    ``d = (d + channels 0-3) + channels 4-7``, the order of ``numba_direct``'s 4 x 4
    passes."""
    N, C, H, W = gx.shape
    C2, Hp, WpV = gp.shape
    O8 = wm.shape[2]
    OH, OW = Hp - KH + 1, WpV // V - KW + 1
    R = OW * V                                      # an output row (a multiple of V: no
                                                    # remainder loops)
    gp[:] = 0
    for h in range(Hp):                             # input row h, from output rows h - kh
        for kh in range(KH):
            oh = h - kh
            if oh < 0 or oh >= OH:
                continue
            for kw in range(KW):
                for c in range(0, C2, 2):
                    d0, d1 = gp[c, h, kw * V:], gp[c + 1, h, kw * V:]
                    for oc in range(0, O8, 8):
                        at = oh * R
                        g0, g1, g2, g3 = g[oc, at:], g[oc + 1, at:], g[oc + 2, at:], g[oc + 3, at:]
                        g4, g5, g6, g7 = g[oc + 4, at:], g[oc + 5, at:], g[oc + 6, at:], g[oc + 7, at:]
                        _add_2x8(d0, d1, g0, g1, g2, g3, g4, g5, g6, g7,
                                 wm[kh * KW + kw, c:c + 2, oc:oc + 8], R)
    n0, n1 = block * V, min(N, block * V + V)
    for c in range(C):                              # back to (N, C, H, W), padding cut
        for h in range(H):
            _lanes_to_images(gp[c, h + PH, PW * V:(PW + W) * V].reshape(W, V),
                             gx[n0:n1, c, h])


@njit(cache=True, nogil=True)
def backward(gy, xb, sb, w, PH, PW, need_w, need_b, need_x, one, quarter, zero, gw, gb,
             gx, b0, b1):
    """For blocks b0..b1-1: adds to gw (OC, C*KH*KW) and gb (OC,) their share of the
    filters' and bias's gradients (if ``need_w``, ``need_b``) and writes their images of gx
    (N, C, H, W) (if ``need_x``), from the pooled gradient gy (N, OC, OH//2, OW//2),
    the packed input xb and the sigmoid's output sb (``forward_sigmoid_avgpool``);
    ``one``, ``quarter`` and ``zero`` of their dtype keep float32 from being promoted."""
    _, C, Hp, Wp, _ = xb.shape
    OC, _, KH, KW = w.shape
    _, _, OH, OW, _ = sb.shape
    dt = xb.dtype
    K = C * KH * KW
    K4, O4 = -(-K // BLOCK) * BLOCK, -(-OC // BLOCK) * BLOCK
    C2, O8 = -(-C // 2) * 2, -(-OC // 8) * 8
    M = OH * OW * V
    g = _aligned(O8 * M, dt).reshape(O8, M)         # padded channels stay 0
    g[OC:] = 0
    gyb = np.empty((OC, gy.shape[2], gy.shape[3], V), dt)
    xs = _aligned(KW * C * Hp * OW * V + M, dt)     # the shifted copies, then zeros
    xs[KW * C * Hp * OW * V:] = 0
    acc = np.zeros((O4, K4), dt)
    wm = np.zeros((KH * KW, C2, O8), dt)            # (tap, c, oc), padded with zeros
    for oc in range(OC):
        for c in range(C):
            for kh in range(KH):
                for kw in range(KW):
                    wm[kh * KW + kw, c, oc] = w[oc, c, kh, kw]
    gp = _aligned(C2 * Hp * Wp * V, dt).reshape(C2, Hp, Wp * V)
    for block in range(b0, b1):
        _output_gradient(gy, sb, block, one, quarter, gyb, g)
        if need_b:
            _bias_gradient(g, gb, zero)
        if need_w:
            _weight_gradient(xb, g, block, KH, KW, xs, acc, zero)
        if need_x:
            _input_gradient(g, wm, block, KH, KW, PH, PW, gp, gx)
    if need_w:
        gw += acc[:OC, :K]
    return gw
