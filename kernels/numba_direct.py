"""Numba loops of the direct convolution for layers with few channels (stride 1), on
plain (N, C, H, W) memory; ``conv_direct_cpu.py`` calls them with the op's geometry
(letters as in the Notation of ``tinyalex/ops/im2col.py``).

For LeNet's layers (1 -> 6 and 6 -> 16 channels, 5x5) im2col + GEMM is a poor fit:
im2col copies every pixel KH*KW times, and a GEMM with 6 or 16 columns runs far from
BLAS's peak. Here the convolution is computed in place from one padded image at a
time, with no column matrix.

The flat-row trick. Image n's channel c is copied into a zero-padded plane of Hp x Wp
pixels (Hp = H + 2*PH, Wp = W + 2*PW) stored row after row, ``x_pad[c*S + h*Wp + w]``.
For stride 1, output (oh, ow) of filter tap (kh, kw) reads ``x_pad[c*S + p + kh*Wp + kw]``
with ``p = oh*Wp + ow``: one *constant offset* per tap. So, over the flat index p, a
whole output plane is a sum of shifted copies of the input plane::

    acc[oc, p] = b[oc] + sum over taps (c, kh, kw) of
                 w[oc, c, kh, kw] * x_pad[c*S + kh*Wp + kw + p]

a loop over p with unit stride that the compiler turns into SIMD code. The columns
ow >= OW of each output row (p = oh*Wp + ow) read past the row's end: they are
computed and thrown away, a waste of (KW-1)/Wp. Each loop over p runs L times, L a
multiple of ``LANE`` (no scalar remainder loop); the planes are spaced S = Hp*Wp + L
apart and followed by L zeros, so every read stays inside the buffer.

Register blocks. Each pass over p updates 4 output rows from 4 taps (16 multiply-adds
per 4 loads and 4 stores), which is what makes the loops run near the core's
arithmetic speed rather than its memory speed. Filters and channel counts are padded
with zeros to multiples of 4 (padded taps read a region of zeros, so infinities in the
input never meet a padded zero weight).

The backward pass uses the same planes:

* ``weight_gradient``: ``gW[oc, tap] = sum over images and p of g[oc, p] * x_pad[tap + p]``,
  with g the output gradient laid out on the (OH, Wp) grid, zero in the thrown-away
  columns; 4x4 blocks of dot products. It also sums ``gb[oc]``.
* ``input_gradient``: the adjoint of the forward (as col2im is of im2col): every
  tap adds ``w * g`` back at its offset, ``gp[c*S + tap + p] += w[oc, c, tap] * g[oc, p]``,
  blocks of 4 input channels x 4 output channels; the padding is cut away at the end.

LeNet's blocks (convolution + sigmoid + 2x2 average pooling as one op) run the loops
of ``numba_lanes.py`` instead, which put 32 images side by side in the vector lanes
so that no column is thrown away; their forward and input gradient keep these loops'
order of summation.

Thrown-away columns multiply zeros of g by real pixels, so a non-finite pixel (inf or
NaN) could leak a NaN into ``gW``: ``weight_gradient`` returns False when it saw one,
and ``conv_direct_cpu.py`` then computes that gradient by im2col instead.

Every loop covers images n0..n1-1 and releases the GIL, so that ``conv_direct_cpu.py`` can run
disjoint parts of the batch in several threads; gradients of the weights are *added*
to the caller's (per-thread) arrays. Compiled for float32 and float64.
"""

from __future__ import annotations

import numpy as np
from numba import njit

LANE = 16       # loops over p run a multiple of this many times (one AVX-512 float32 vector)
BLOCK = 4       # the register block: 4 outputs x 4 inputs per pass


@njit(cache=True, nogil=True, inline="always")
def _plan(OH, OW, KH, KW):
    """(Wp, L, S): padded row length, the loop length over p, the plane spacing."""
    Hp, Wp = OH + KH - 1, OW + KW - 1
    L = -(-((OH - 1) * Wp + OW) // LANE) * LANE
    return Wp, L, Hp * Wp + L


@njit(cache=True, nogil=True, inline="always")
def _pad_image(x, n, PH, PW, Wp, S, x_pad):
    """Copy image n of x (N, C, H, W) into the zero-padded planes of x_pad (borders
    untouched: they stay zero)."""
    _, C, H, W = x.shape
    for c in range(C):
        for h in range(H):
            dst = x_pad[c * S + (h + PH) * Wp + PW:]
            src = x[n, c, h]
            for j in range(W):
                dst[j] = src[j]


@njit(cache=True, nogil=True, inline="always")
def _tap_offsets(C, KH, KW, Wp, S, K4):
    """Offset of every tap (c, kh, kw) in the padded planes; padded taps point at the
    zeros after the last plane."""
    offs = np.full(K4, C * S, np.int64)
    for c in range(C):
        for kh in range(KH):
            for kw in range(KW):
                offs[(c * KH + kh) * KW + kw] = c * S + kh * Wp + kw
    return offs


@njit(cache=True, nogil=True, fastmath={"contract"})
def forward(x, w, b, PH, PW, y, n0, n1):
    """y[n] (OC, OH, OW) for images n0..n1-1 of x (N, C, H, W); w (OC, C, KH, KW),
    b (OC,) (zeros for no bias)."""
    _, C, _, _ = x.shape
    OC, _, KH, KW = w.shape
    _, _, OH, OW = y.shape
    Wp, L, S = _plan(OH, OW, KH, KW)
    K = C * KH * KW
    K4, O4 = -(-K // BLOCK) * BLOCK, -(-OC // BLOCK) * BLOCK
    offs = _tap_offsets(C, KH, KW, Wp, S, K4)
    wm = np.zeros((O4, K4), x.dtype)                # (OC, C*KH*KW), padded with zeros
    wm[:OC, :K] = w.reshape(OC, K)
    bb = np.zeros(O4, x.dtype)
    bb[:OC] = b
    x_pad = np.zeros(C * S + L, x.dtype)               # C padded planes, then L zeros
    acc = np.empty((O4, L), x.dtype)                # output planes on the (OH, Wp) grid
    for n in range(n0, n1):
        _pad_image(x, n, PH, PW, Wp, S, x_pad)
        for oc in range(0, O4, BLOCK):
            a0, a1, a2, a3 = acc[oc], acc[oc + 1], acc[oc + 2], acc[oc + 3]
            b0, b1, b2, b3 = bb[oc], bb[oc + 1], bb[oc + 2], bb[oc + 3]
            for p in range(L):
                a0[p], a1[p], a2[p], a3[p] = b0, b1, b2, b3
            for k in range(0, K4, BLOCK):
                x0, x1 = x_pad[offs[k]:], x_pad[offs[k + 1]:]
                x2, x3 = x_pad[offs[k + 2]:], x_pad[offs[k + 3]:]
                u = wm[oc:oc + BLOCK, k:k + BLOCK]
                u00, u01, u02, u03 = u[0, 0], u[0, 1], u[0, 2], u[0, 3]
                u10, u11, u12, u13 = u[1, 0], u[1, 1], u[1, 2], u[1, 3]
                u20, u21, u22, u23 = u[2, 0], u[2, 1], u[2, 2], u[2, 3]
                u30, u31, u32, u33 = u[3, 0], u[3, 1], u[3, 2], u[3, 3]
                for p in range(L):
                    t0, t1, t2, t3 = x0[p], x1[p], x2[p], x3[p]
                    a0[p] += u00 * t0 + u01 * t1 + u02 * t2 + u03 * t3
                    a1[p] += u10 * t0 + u11 * t1 + u12 * t2 + u13 * t3
                    a2[p] += u20 * t0 + u21 * t1 + u22 * t2 + u23 * t3
                    a3[p] += u30 * t0 + u31 * t1 + u32 * t2 + u33 * t3
            for j in range(min(BLOCK, OC - oc)):    # keep the columns ow < OW
                a = acc[oc + j]
                for oh in range(OH):
                    src, dst = a[oh * Wp:], y[n, oc + j, oh]
                    for ow in range(OW):
                        dst[ow] = src[ow]
    return y


@njit(cache=True, nogil=True, inline="always")
def _dots_4x4(g0, g1, g2, g3, x0, x1, x2, x3, L, a, zero):
    """a[i, j] += the dot product of g_i and x_j over their first L numbers, i, j < 4:
    a 4 x 4 block of a weight gradient, its 16 sums held in registers (the caller's
    fastmath lets the compiler vectorise them)."""
    s00 = s01 = s02 = s03 = s10 = s11 = s12 = s13 = zero
    s20 = s21 = s22 = s23 = s30 = s31 = s32 = s33 = zero
    for p in range(L):
        t0, t1, t2, t3 = x0[p], x1[p], x2[p], x3[p]
        e = g0[p]
        s00 += e * t0
        s01 += e * t1
        s02 += e * t2
        s03 += e * t3
        e = g1[p]
        s10 += e * t0
        s11 += e * t1
        s12 += e * t2
        s13 += e * t3
        e = g2[p]
        s20 += e * t0
        s21 += e * t1
        s22 += e * t2
        s23 += e * t3
        e = g3[p]
        s30 += e * t0
        s31 += e * t1
        s32 += e * t2
        s33 += e * t3
    a[0, 0] += s00
    a[0, 1] += s01
    a[0, 2] += s02
    a[0, 3] += s03
    a[1, 0] += s10
    a[1, 1] += s11
    a[1, 2] += s12
    a[1, 3] += s13
    a[2, 0] += s20
    a[2, 1] += s21
    a[2, 2] += s22
    a[2, 3] += s23
    a[3, 0] += s30
    a[3, 1] += s31
    a[3, 2] += s32
    a[3, 3] += s33


@njit(cache=True, nogil=True, fastmath={"contract", "reassoc"})
def weight_gradient(x, gy, PH, PW, gw, gb, zero, n0, n1):
    """Adds to gw (OC, C*KH*KW) and gb (OC,) the gradients from images n0..n1-1, for
    x (N, C, H, W) and gy (N, OC, OH, OW); ``zero`` is a 0 of their dtype. Returns
    False if x held inf or NaN."""
    _, C, H, W = x.shape
    _, OC, OH, OW = gy.shape
    K = gw.shape[1]
    KH, KW = H + 2 * PH - OH + 1, W + 2 * PW - OW + 1
    Wp, L, S = _plan(OH, OW, KH, KW)
    K4, O4 = -(-K // BLOCK) * BLOCK, -(-OC // BLOCK) * BLOCK
    offs = _tap_offsets(C, KH, KW, Wp, S, K4)
    finite = True
    x_pad = np.zeros(C * S + L, x.dtype)
    g = np.zeros((O4, L), x.dtype)                  # gy[n] on the (OH, Wp) grid, zeros around
    acc = np.zeros((O4, K4), x.dtype)
    for n in range(n0, n1):
        _pad_image(x, n, PH, PW, Wp, S, x_pad)
        for c in range(C):                          # v - v is 0 unless v is inf or NaN
            plane = x[n, c]
            s = zero
            for h in range(H):
                row = plane[h]
                for j in range(W):
                    s += row[j] - row[j]
            finite = finite and s == 0
        for oc in range(OC):
            s = zero
            for oh in range(OH):
                src, dst = gy[n, oc, oh], g[oc, oh * Wp:]
                for ow in range(OW):
                    dst[ow] = src[ow]
                    s += src[ow]
            gb[oc] += s
        for oc in range(0, O4, BLOCK):
            g0, g1, g2, g3 = g[oc], g[oc + 1], g[oc + 2], g[oc + 3]
            for k in range(0, K4, BLOCK):
                _dots_4x4(g0, g1, g2, g3, x_pad[offs[k]:], x_pad[offs[k + 1]:],
                          x_pad[offs[k + 2]:], x_pad[offs[k + 3]:], L,
                          acc[oc:oc + BLOCK, k:k + BLOCK], zero)
    gw += acc[:OC, :K]
    return finite


@njit(cache=True, nogil=True, fastmath={"contract"})
def input_gradient(gy, w, PH, PW, gx, n0, n1):
    """gx[n] (C, H, W) for images n0..n1-1 (overwritten), from gy (N, OC, OH, OW) and
    w (OC, C, KH, KW)."""
    _, C, H, W = gx.shape
    OC, _, KH, KW = w.shape
    _, _, OH, OW = gy.shape
    Wp, L, S = _plan(OH, OW, KH, KW)
    C4, O4 = -(-C // BLOCK) * BLOCK, -(-OC // BLOCK) * BLOCK
    wm = np.zeros((KH * KW, C4, O4), gy.dtype)      # (tap, c, oc), padded with zeros
    for oc in range(OC):
        for c in range(C):
            for kh in range(KH):
                for kw in range(KW):
                    wm[kh * KW + kw, c, oc] = w[oc, c, kh, kw]
    g = np.zeros((O4, L), gy.dtype)                 # gy[n] on the (OH, Wp) grid, zeros around
    gp = np.empty(C4 * S + L, gy.dtype)             # gradient of the padded planes
    for n in range(n0, n1):
        for oc in range(OC):
            for oh in range(OH):
                src, dst = gy[n, oc, oh], g[oc, oh * Wp:]
                for ow in range(OW):
                    dst[ow] = src[ow]
        gp[:] = 0
        for kh in range(KH):
            for kw in range(KW):
                tap = kh * Wp + kw
                for c in range(0, C4, BLOCK):
                    d0, d1 = gp[c * S + tap:], gp[(c + 1) * S + tap:]
                    d2, d3 = gp[(c + 2) * S + tap:], gp[(c + 3) * S + tap:]
                    for oc in range(0, O4, BLOCK):
                        g0, g1, g2, g3 = g[oc], g[oc + 1], g[oc + 2], g[oc + 3]
                        u = wm[kh * KW + kw, c:c + BLOCK, oc:oc + BLOCK]
                        u00, u01, u02, u03 = u[0, 0], u[0, 1], u[0, 2], u[0, 3]
                        u10, u11, u12, u13 = u[1, 0], u[1, 1], u[1, 2], u[1, 3]
                        u20, u21, u22, u23 = u[2, 0], u[2, 1], u[2, 2], u[2, 3]
                        u30, u31, u32, u33 = u[3, 0], u[3, 1], u[3, 2], u[3, 3]
                        for p in range(L):
                            e0, e1, e2, e3 = g0[p], g1[p], g2[p], g3[p]
                            d0[p] += u00 * e0 + u01 * e1 + u02 * e2 + u03 * e3
                            d1[p] += u10 * e0 + u11 * e1 + u12 * e2 + u13 * e3
                            d2[p] += u20 * e0 + u21 * e1 + u22 * e2 + u23 * e3
                            d3[p] += u30 * e0 + u31 * e1 + u32 * e2 + u33 * e3
        for c in range(C):                          # cut the padding away
            for h in range(H):
                src, dst = gp[c * S + (h + PH) * Wp + PW:], gx[n, c, h]
                for j in range(W):
                    dst[j] = src[j]
    return gx
