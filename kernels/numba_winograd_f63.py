"""Numba loops of the Winograd F(6x6, 3x3) convolution (``conv_winograd_cpu.py``, which
holds the matrices ``AT63``, ``G63`` and ``BT63`` and checks the arguments), written
out for those matrices. Same layouts and signatures as ``numba_winograd_f35.py``:
images channels-last, ``x2`` (N*H, W*C); transformed tiles (64, T, C), plane ``8*a + b``
holding element (a, b) of every tile's 8x8 transform; every loop covers tiles
t0..t1-1 and releases the GIL; each 2-D transform is two passes of the 1-D one, along
a tile's rows first, then down its columns (``numba_winograd_f25.py`` says why).

A tile t = (n, th, tw) is the 8x8 input patch with top-left corner (6*th - PH,
6*tw - PW); it yields the 6x6 outputs (6*th + i, 6*tw + j), cropped at the edges. The
Toom-Cook points are 0, 1, -1, 2, -2, 1/2, -1/2 and infinity: 64 products per 36
outputs where F(4x4, 3x3) needs 36 per 16 (on AlexNet's 12x12 maps 2x2 tiles instead
of 3x3: 0.79 times the GEMM work and the transformed data). The points come in pairs
+-p, so each 1-D transform sums the even and the odd powers once for both (every
constant a dyadic fraction, exact in binary):

    B^T d:  u0 = 21/4 (d2 - d4) + d6 - d0,        u7 = 21/4 (d3 - d5) + d7 - d1,
            u1, u2 = e +- o,  e = d2 + d6 - 17/4 d4,         o = d1 + d5 - 17/4 d3
            u3, u4 = e +- o,  e = 1/4 d2 - 5/4 d4 + d6,      o = 1/2 d1 - 5/2 d3 + 2 d5
            u5, u6 = e +- o,  e = 4 d2 - 5 d4 + d6,          o = 2 d1 - 5/2 d3 + 1/2 d5
    A^T m:  y_i = m0 [i = 0] + sum over p = 1, 2, 1/2 of p^i (m(p) + (-1)^i m(-p))
            + m7 [i = 5]
    A g:    the values at 0, +-1, +-2, +-1/2 of g0 + g1 x + ... + g5 x^5, and g5

(``_btT``, B u, is ``_bt``'s adjoint, for the input gradient.)
"""

from __future__ import annotations

import numpy as np
from numba import njit

from .numba_winograd_f25 import _patch_row

HALF, QUARTER, EIGHTH = np.float32(0.5), np.float32(0.25), np.float32(0.125)
C2, C4, C5, C8 = np.float32(2), np.float32(4), np.float32(5), np.float32(8)
C16, C32 = np.float32(16), np.float32(32)
C1_16, C1_32 = np.float32(1 / 16), np.float32(1 / 32)
C5_4, C5_2, C17_4, C21_4 = np.float32(1.25), np.float32(2.5), np.float32(4.25), \
    np.float32(5.25)


@njit(cache=True, nogil=True, inline="always")
def _bt(d0, d1, d2, d3, d4, d5, d6, d7):
    """B^T d for one row (or column) of an 8x8 tile."""
    e1, o1 = d2 + d6 - C17_4 * d4, d1 + d5 - C17_4 * d3
    e2, o2 = QUARTER * d2 - C5_4 * d4 + d6, HALF * d1 - C5_2 * d3 + C2 * d5
    e3, o3 = C4 * d2 - C5 * d4 + d6, C2 * d1 - C5_2 * d3 + HALF * d5
    return (C21_4 * (d2 - d4) + d6 - d0, e1 + o1, e1 - o1, e2 + o2, e2 - o2, e3 + o3,
            e3 - o3, C21_4 * (d3 - d5) + d7 - d1)


@njit(cache=True, nogil=True, inline="always")
def _btT(u0, u1, u2, u3, u4, u5, u6, u7):
    """B u (B^T's transpose): the adjoint of ``_bt``, for the input gradient."""
    s1, d1 = u1 + u2, u1 - u2
    s2, d2 = u3 + u4, u3 - u4
    s3, d3 = u5 + u6, u5 - u6
    return (-u0,
            d1 + HALF * d2 + C2 * d3 - u7,
            C21_4 * u0 + s1 + QUARTER * s2 + C4 * s3,
            C21_4 * u7 - C17_4 * d1 - C5_2 * d2 - C5_2 * d3,
            -C21_4 * u0 - C17_4 * s1 - C5_4 * s2 - C5 * s3,
            d1 + C2 * d2 + HALF * d3 - C21_4 * u7,
            u0 + s1 + s2 + s3,
            u7)


@njit(cache=True, nogil=True, inline="always")
def _at(m0, m1, m2, m3, m4, m5, m6, m7):
    """A^T m: the 6 outputs of an 8-vector of products."""
    s1, d1 = m1 + m2, m1 - m2
    s2, d2 = m3 + m4, m3 - m4
    s3, d3 = m5 + m6, m5 - m6
    return (m0 + s1 + s2 + s3, d1 + C2 * d2 + HALF * d3, s1 + C4 * s2 + QUARTER * s3,
            d1 + C8 * d2 + EIGHTH * d3, s1 + C16 * s2 + C1_16 * s3,
            d1 + C32 * d2 + C1_32 * d3 + m7)


@njit(cache=True, nogil=True, inline="always")
def _a(g0, g1, g2, g3, g4, g5):
    """A g: the 8-vector transform of 6 output gradients."""
    e1, o1 = g0 + g2 + g4, g1 + g3 + g5
    e2, o2 = g0 + C4 * g2 + C16 * g4, C2 * g1 + C8 * g3 + C32 * g5
    e3 = g0 + QUARTER * g2 + C1_16 * g4
    o3 = HALF * g1 + EIGHTH * g3 + C1_32 * g5
    return g0, e1 + o1, e1 - o1, e2 + o2, e2 - o2, e3 + o3, e3 - o3, g5


@njit(cache=True, nogil=True, inline="always")
def _bt_row(src, r, o, C, tmp, i):
    """tmp[8b + i] = (d B)[i, b]: B^T along row i of the patch, whose eight pixels'
    channels are src[r, o + j*C:o + (j+1)*C]."""
    row = src[r]
    d0, d1, d2, d3, d4, d5, d6, d7 = row[o:o + C], row[o + C:o + 2 * C], \
        row[o + 2 * C:o + 3 * C], row[o + 3 * C:o + 4 * C], row[o + 4 * C:o + 5 * C], \
        row[o + 5 * C:o + 6 * C], row[o + 6 * C:o + 7 * C], row[o + 7 * C:o + 8 * C]
    u0, u1, u2, u3, u4, u5, u6, u7 = tmp[i], tmp[8 + i], tmp[16 + i], tmp[24 + i], \
        tmp[32 + i], tmp[40 + i], tmp[48 + i], tmp[56 + i]
    for c in range(C):
        u0[c], u1[c], u2[c], u3[c], u4[c], u5[c], u6[c], u7[c] = _bt(
            d0[c], d1[c], d2[c], d3[c], d4[c], d5[c], d6[c], d7[c])


@njit(cache=True, nogil=True, inline="always")
def _a_row(src, r, o, C, tmp, i):
    """tmp[6b + i] = (g A^T)[i, b]: A along row i of the 6x6 output gradient, whose six
    pixels' channels are src[r, o + j*C:o + (j+1)*C]."""
    row = src[r]
    g0, g1, g2, g3, g4, g5 = row[o:o + C], row[o + C:o + 2 * C], \
        row[o + 2 * C:o + 3 * C], row[o + 3 * C:o + 4 * C], row[o + 4 * C:o + 5 * C], \
        row[o + 5 * C:o + 6 * C]
    u0, u1, u2, u3, u4, u5, u6, u7 = tmp[i], tmp[6 + i], tmp[12 + i], tmp[18 + i], \
        tmp[24 + i], tmp[30 + i], tmp[36 + i], tmp[42 + i]
    for c in range(C):
        u0[c], u1[c], u2[c], u3[c], u4[c], u5[c], u6[c], u7[c] = _a(
            g0[c], g1[c], g2[c], g3[c], g4[c], g5[c])


@njit(cache=True, nogil=True)
def input_transform(x2, N, H, W, C, PH, PW, TH, TW, V, zero, t0, t1):
    """V[8a+b, t, c] = (B^T d B)[a, b] for the 8x8 input patch d of tile t, channel c
    (top-left corner (6*th - PH, 6*tw - PW))."""
    return input_transform8(x2, N, H, W, C, PH, PW, TH, TW, 6, V, zero, t0, t1)


@njit(cache=True, nogil=True)
def input_transform8(x2, N, H, W, C, PH, PW, TH, TW, step, V, zero, t0, t1):
    """V[8a+b, t, c] = (B^T d B)[a, b] for the 8x8 input patch d of tile t, channel c,
    tiles ``step`` apart (top-left corner (step*th - PH, step*tw - PW)): step 6 for
    F(6x6, 3x3), 4 for F(4x4, 5x5), which share B^T."""
    tmp = np.empty((64, C), dtype=V.dtype)               # tmp[8b + i] = (d B)[i, b]
    pad = np.empty((1, 8 * C), dtype=V.dtype)            # an edge tile's row, zero-padded
    for t in range(t0, t1):
        n = t // (TH * TW)
        h0, w0 = step * ((t // TW) % TH) - PH, step * (t % TW) - PW
        for i in range(8):                               # along each row i of the patch
            h = h0 + i
            if h < 0 or h >= H:                          # a row of padding
                for b in range(8):
                    tmp[8 * b + i] = zero
                continue
            r, o, padded = _patch_row(x2, n, H, W, C, h, w0, 8, pad)
            if padded:
                _bt_row(pad, r, o, C, tmp, i)
            else:
                _bt_row(x2, r, o, C, tmp, i)
        for b in range(8):                               # then down each column b
            s0, s1, s2, s3, s4, s5, s6, s7 = tmp[8 * b], tmp[8 * b + 1], tmp[8 * b + 2], \
                tmp[8 * b + 3], tmp[8 * b + 4], tmp[8 * b + 5], tmp[8 * b + 6], \
                tmp[8 * b + 7]
            v0, v1, v2, v3, v4, v5, v6, v7 = V[b, t], V[8 + b, t], V[16 + b, t], \
                V[24 + b, t], V[32 + b, t], V[40 + b, t], V[48 + b, t], V[56 + b, t]
            for c in range(C):
                v0[c], v1[c], v2[c], v3[c], v4[c], v5[c], v6[c], v7[c] = _bt(
                    s0[c], s1[c], s2[c], s3[c], s4[c], s5[c], s6[c], s7[c])
    return V


@njit(cache=True, nogil=True)
def output_transform(M, N, OH, OW, OC, TH, TW, bias, use_bias, y2, t0, t1):
    """y2 (N*OH, OW*OC) = A^T m A (+ bias) for every tile's 8x8 product m, cropped to
    the output."""
    tmp = np.empty((48, OC), dtype=M.dtype)              # tmp[8j + a] = (m A)[a, j]
    for t in range(t0, t1):
        n = t // (TH * TW)
        oh, ow = 6 * ((t // TW) % TH), 6 * (t % TW)
        for a in range(8):                               # along each row a of m
            m0, m1, m2, m3, m4, m5, m6, m7 = M[8 * a, t], M[8 * a + 1, t], \
                M[8 * a + 2, t], M[8 * a + 3, t], M[8 * a + 4, t], M[8 * a + 5, t], \
                M[8 * a + 6, t], M[8 * a + 7, t]
            u0, u1, u2, u3, u4, u5 = tmp[a], tmp[8 + a], tmp[16 + a], tmp[24 + a], \
                tmp[32 + a], tmp[40 + a]
            for c in range(OC):
                u0[c], u1[c], u2[c], u3[c], u4[c], u5[c] = _at(
                    m0[c], m1[c], m2[c], m3[c], m4[c], m5[c], m6[c], m7[c])
        rows, r0 = min(6, OH - oh), n * OH + oh          # output rows of this tile
        for j in range(min(6, OW - ow)):                 # then down each output column j
            s0, s1, s2, s3, s4, s5, s6, s7 = tmp[8 * j], tmp[8 * j + 1], tmp[8 * j + 2], \
                tmp[8 * j + 3], tmp[8 * j + 4], tmp[8 * j + 5], tmp[8 * j + 6], \
                tmp[8 * j + 7]
            o = (ow + j) * OC
            if rows == 6:
                o0, o1, o2, o3, o4, o5 = y2[r0, o:o + OC], y2[r0 + 1, o:o + OC], \
                    y2[r0 + 2, o:o + OC], y2[r0 + 3, o:o + OC], y2[r0 + 4, o:o + OC], \
                    y2[r0 + 5, o:o + OC]
                for c in range(OC):
                    b_ = bias[c] if use_bias else bias[0] - bias[0]
                    y0, y1, y2_, y3, y4, y5 = _at(s0[c], s1[c], s2[c], s3[c], s4[c], s5[c],
                                                  s6[c], s7[c])
                    o0[c], o1[c], o2[c], o3[c], o4[c], o5[c] = \
                        y0 + b_, y1 + b_, y2_ + b_, y3 + b_, y4 + b_, y5 + b_
            else:                                        # a partial tile at the bottom
                for c in range(OC):
                    b_ = bias[c] if use_bias else bias[0] - bias[0]
                    y = _at(s0[c], s1[c], s2[c], s3[c], s4[c], s5[c], s6[c], s7[c])
                    for i in range(rows):
                        y2[r0 + i, o + c] = y[i] + b_
    return y2


@njit(cache=True, nogil=True)
def grad_output_transform(gy2, N, OH, OW, OC, TH, TW, gM, zero, t0, t1):
    """gM[8a+b, t, oc] = (A g A^T)[a, b] for the 6x6 output gradient g of tile t (zero
    where the tile runs past the output)."""
    tmp = np.empty((48, OC), dtype=gM.dtype)             # tmp[6b + i] = (g A^T)[i, b]
    pad = np.empty((1, 6 * OC), dtype=gM.dtype)          # an edge tile's row, zero-padded
    for t in range(t0, t1):
        n = t // (TH * TW)
        oh, ow = 6 * ((t // TW) % TH), 6 * (t % TW)
        for i in range(6):                               # along each row i of g
            if oh + i >= OH:                             # past the output: zero
                for b in range(8):
                    tmp[6 * b + i] = zero
                continue
            r, o, padded = _patch_row(gy2, n, OH, OW, OC, oh + i, ow, 6, pad)
            if padded:
                _a_row(pad, r, o, OC, tmp, i)
            else:
                _a_row(gy2, r, o, OC, tmp, i)
        for b in range(8):                               # then down each column b
            p0, p1, p2, p3, p4, p5 = tmp[6 * b], tmp[6 * b + 1], tmp[6 * b + 2], \
                tmp[6 * b + 3], tmp[6 * b + 4], tmp[6 * b + 5]
            v0, v1, v2, v3, v4, v5, v6, v7 = gM[b, t], gM[8 + b, t], gM[16 + b, t], \
                gM[24 + b, t], gM[32 + b, t], gM[40 + b, t], gM[48 + b, t], gM[56 + b, t]
            for c in range(OC):
                v0[c], v1[c], v2[c], v3[c], v4[c], v5[c], v6[c], v7[c] = _a(
                    p0[c], p1[c], p2[c], p3[c], p4[c], p5[c])
    return gM


@njit(cache=True, nogil=True)
def input_gradient_transform(gV, N, H, W, C, PH, PW, TH, TW, gx2, t0, t1):
    """gx2 (N*H, W*C) += B gV_t B^T for every tile t: the adjoint of
    ``input_transform`` (``input_gradient_transform8`` with a step of 6)."""
    return input_gradient_transform8(gV, N, H, W, C, PH, PW, TH, TW, 6, gx2, t0, t1)


@njit(cache=True, nogil=True)
def input_gradient_transform8(gV, N, H, W, C, PH, PW, TH, TW, step, gx2, t0, t1):
    """gx2 (N*H, W*C) += B gV_t B^T for every tile t (gV_t[a, b] = gV[8a+b, t]), tiles
    ``step`` apart: the adjoint of ``input_transform8``, each pixel getting the
    gradient of every patch it lies in (the padding's is dropped). The patches of one
    image overlap: a thread must take whole images."""
    tmp = np.empty((64, C), dtype=gV.dtype)              # tmp[8j + a] = (gV_t B^T)[a, j]
    col = np.empty((8, C), dtype=gV.dtype)               # column j of B gV_t B^T
    for t in range(t0, t1):
        n = t // (TH * TW)
        h0, w0 = step * ((t // TW) % TH) - PH, step * (t % TW) - PW
        for a in range(8):                               # along each row a of gV_t
            g0, g1, g2, g3, g4, g5, g6, g7 = gV[8 * a, t], gV[8 * a + 1, t], \
                gV[8 * a + 2, t], gV[8 * a + 3, t], gV[8 * a + 4, t], gV[8 * a + 5, t], \
                gV[8 * a + 6, t], gV[8 * a + 7, t]
            u0, u1, u2, u3, u4, u5, u6, u7 = tmp[a], tmp[8 + a], tmp[16 + a], \
                tmp[24 + a], tmp[32 + a], tmp[40 + a], tmp[48 + a], tmp[56 + a]
            for c in range(C):
                u0[c], u1[c], u2[c], u3[c], u4[c], u5[c], u6[c], u7[c] = _btT(
                    g0[c], g1[c], g2[c], g3[c], g4[c], g5[c], g6[c], g7[c])
        for j in range(8):                               # then down each column j
            w = w0 + j
            if w < 0 or w >= W:
                continue
            s0, s1, s2, s3, s4, s5, s6, s7 = tmp[8 * j], tmp[8 * j + 1], tmp[8 * j + 2], \
                tmp[8 * j + 3], tmp[8 * j + 4], tmp[8 * j + 5], tmp[8 * j + 6], \
                tmp[8 * j + 7]
            c0, c1, c2, c3, c4, c5, c6, c7 = col[0], col[1], col[2], col[3], col[4], \
                col[5], col[6], col[7]
            for c in range(C):
                c0[c], c1[c], c2[c], c3[c], c4[c], c5[c], c6[c], c7[c] = _btT(
                    s0[c], s1[c], s2[c], s3[c], s4[c], s5[c], s6[c], s7[c])
            for i in range(8):                           # added onto the patch's pixels
                h = h0 + i
                if 0 <= h < H:
                    dst, src = gx2[n * H + h, w * C:(w + 1) * C], col[i]
                    for c in range(C):
                        dst[c] += src[c]
    return gx2
