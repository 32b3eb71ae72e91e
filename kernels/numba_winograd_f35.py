"""Numba loops of the Winograd F(3x3, 5x5) convolution (``conv_winograd_cpu.py``, which
holds the matrices ``AT35`` and ``BT35`` and calls them on the op's geometry),
written out for those matrices. Same layouts and signatures as
``numba_winograd_f25.py``: images channels-last, ``x2`` (N*H, W*C); transformed tiles
(49, T, C), plane ``7*a + b`` holding element (a, b) of every tile's 7x7 transform;
every loop covers tiles t0..t1-1 and releases the GIL.

A tile t = (n, th, tw) is the 7x7 input patch with top-left corner (3*th - PH,
3*tw - PW); it yields the 3x3 outputs (3*th + i, 3*tw + j), cropped at the edges. The
Toom-Cook points are 0, 1, -1, 2, -2, 1/2 and infinity: 49 products per 9 outputs
where F(2x2, 5x5) needs 36 per 4 (0.6 times the GEMM work and the transformed data).
The 1-D transforms, from the matrices' rows (every constant a dyadic fraction, exact
in binary):

    B^T d = (-2 d0 + 4 d1 + 5/2 d2 - 5 d3 - 1/2 d4 + d5,
             2 d1 - 2 d2 - 9/2 d3 + 1/2 d4 + d5,
             -2 d1 + 6 d2 - 7/2 d3 - 3/2 d4 + d5,
             d1 - 3/2 d2 - 2 d3 + 3/2 d4 + d5,
             -d1 + 5/2 d2 - 5/2 d4 + d5,
             4 d1 - 5 d3 + d5,
             -2 d1 + 4 d2 + 5/2 d3 - 5 d4 - 1/2 d5 + d6)
    A^T m = (m0 + m1 + m2 + m3 + m4 + m5,
             (m1 - m2) + 2 (m3 - m4) + 1/2 m5,
             (m1 + m2) + 4 (m3 + m4) + 1/4 m5 + m6)
    A g   = (g0,  g0 + g1 + g2,  g0 - g1 + g2,  g0 + 2 g1 + 4 g2,  g0 - 2 g1 + 4 g2,
             g0 + 1/2 g1 + 1/4 g2,  g2)

The constants are float32 scalars, so float32 data is never promoted to float64 (and
float64 data meets the same exact values).
"""

from __future__ import annotations

import numpy as np
from numba import njit

from .numba_winograd_f25 import _patch_row

HALF, QUARTER = np.float32(0.5), np.float32(0.25)
C2, C4, C5, C6 = np.float32(2), np.float32(4), np.float32(5), np.float32(6)
C3_2, C5_2, C7_2, C9_2 = np.float32(1.5), np.float32(2.5), np.float32(3.5), np.float32(4.5)


@njit(cache=True, nogil=True, inline="always")
def _bt(d0, d1, d2, d3, d4, d5, d6):
    """B^T d for one column (or row) of a 7x7 tile."""
    return (C4 * d1 - C2 * d0 + C5_2 * d2 - C5 * d3 - HALF * d4 + d5,
            C2 * d1 - C2 * d2 - C9_2 * d3 + HALF * d4 + d5,
            C6 * d2 - C2 * d1 - C7_2 * d3 - C3_2 * d4 + d5,
            d1 - C3_2 * d2 - C2 * d3 + C3_2 * d4 + d5,
            C5_2 * d2 - d1 - C5_2 * d4 + d5,
            C4 * d1 - C5 * d3 + d5,
            C4 * d2 - C2 * d1 + C5_2 * d3 - C5 * d4 - HALF * d5 + d6)


@njit(cache=True, nogil=True, inline="always")
def _btT(u0, u1, u2, u3, u4, u5, u6):
    """B u (B^T's transpose): the adjoint of ``_bt``, for the input gradient."""
    return (-C2 * u0,
            C4 * u0 + C2 * u1 - C2 * u2 + u3 - u4 + C4 * u5 - C2 * u6,
            C5_2 * u0 - C2 * u1 + C6 * u2 - C3_2 * u3 + C5_2 * u4 + C4 * u6,
            C5_2 * u6 - C5 * u0 - C9_2 * u1 - C7_2 * u2 - C2 * u3 - C5 * u5,
            HALF * u1 - HALF * u0 - C3_2 * u2 + C3_2 * u3 - C5_2 * u4 - C5 * u6,
            u0 + u1 + u2 + u3 + u4 + u5 - HALF * u6,
            u6)


@njit(cache=True, nogil=True, inline="always")
def _at(m0, m1, m2, m3, m4, m5, m6):
    """A^T m: the 3 outputs of a 7-vector of products."""
    return (m0 + m1 + m2 + m3 + m4 + m5,
            (m1 - m2) + C2 * (m3 - m4) + HALF * m5,
            (m1 + m2) + C4 * (m3 + m4) + QUARTER * m5 + m6)


@njit(cache=True, nogil=True, inline="always")
def _a(g0, g1, g2):
    """A g: the 7-vector transform of 3 output gradients."""
    p = g0 + g2
    q = g0 + C4 * g2
    h = C2 * g1
    return g0, p + g1, p - g1, q + h, q - h, g0 + HALF * g1 + QUARTER * g2, g2


@njit(cache=True, nogil=True, inline="always")
def _bt_row(src, r, o, C, tmp, i):
    """tmp[7b + i] = (d B)[i, b]: B^T along row i of the patch, whose seven pixels'
    channels are src[r, o + j*C:o + (j+1)*C]."""
    row = src[r]
    d0, d1, d2, d3, d4, d5, d6 = row[o:o + C], row[o + C:o + 2 * C], \
        row[o + 2 * C:o + 3 * C], row[o + 3 * C:o + 4 * C], row[o + 4 * C:o + 5 * C], \
        row[o + 5 * C:o + 6 * C], row[o + 6 * C:o + 7 * C]
    u0, u1, u2, u3, u4, u5, u6 = tmp[i], tmp[7 + i], tmp[14 + i], tmp[21 + i], \
        tmp[28 + i], tmp[35 + i], tmp[42 + i]
    for c in range(C):
        u0[c], u1[c], u2[c], u3[c], u4[c], u5[c], u6[c] = _bt(
            d0[c], d1[c], d2[c], d3[c], d4[c], d5[c], d6[c])


@njit(cache=True, nogil=True, inline="always")
def _a_row(src, r, o, C, tmp, i):
    """tmp[3b + i] = (g A^T)[i, b]: A along row i of the 3x3 output gradient, whose
    three pixels' channels are src[r, o + j*C:o + (j+1)*C]."""
    row = src[r]
    g0, g1, g2 = row[o:o + C], row[o + C:o + 2 * C], row[o + 2 * C:o + 3 * C]
    u0, u1, u2, u3, u4, u5, u6 = tmp[i], tmp[3 + i], tmp[6 + i], tmp[9 + i], \
        tmp[12 + i], tmp[15 + i], tmp[18 + i]
    for c in range(C):
        u0[c], u1[c], u2[c], u3[c], u4[c], u5[c], u6[c] = _a(g0[c], g1[c], g2[c])


# Each 2-D transform is two passes of the 1-D one through a scratch array, in the order
# that lets the compiler's vector code run (numba_winograd_f25.py says why): along the
# rows of a tile first, then down its columns.

@njit(cache=True, nogil=True)
def input_transform(x2, N, H, W, C, PH, PW, TH, TW, V, zero, t0, t1):
    """V[7a+b, t, c] = (B^T d B)[a, b] for the 7x7 input patch d of tile t, channel c
    (top-left corner (3*th - PH, 3*tw - PW))."""
    tmp = np.empty((49, C), dtype=V.dtype)               # tmp[7b + i] = (d B)[i, b]
    pad = np.empty((1, 7 * C), dtype=V.dtype)            # an edge tile's row, zero-padded
    for t in range(t0, t1):
        n = t // (TH * TW)
        h0, w0 = 3 * ((t // TW) % TH) - PH, 3 * (t % TW) - PW
        for i in range(7):                               # along each row i of the patch
            h = h0 + i
            if h < 0 or h >= H:                          # a row of padding
                for b in range(7):
                    tmp[7 * b + i] = zero
                continue
            r, o, padded = _patch_row(x2, n, H, W, C, h, w0, 7, pad)
            if padded:
                _bt_row(pad, r, o, C, tmp, i)
            else:
                _bt_row(x2, r, o, C, tmp, i)
        for b in range(7):                               # then down each column b
            s0, s1, s2, s3, s4, s5, s6 = tmp[7 * b], tmp[7 * b + 1], tmp[7 * b + 2], \
                tmp[7 * b + 3], tmp[7 * b + 4], tmp[7 * b + 5], tmp[7 * b + 6]
            v0, v1, v2, v3, v4, v5, v6 = V[b, t], V[7 + b, t], V[14 + b, t], \
                V[21 + b, t], V[28 + b, t], V[35 + b, t], V[42 + b, t]
            for c in range(C):
                v0[c], v1[c], v2[c], v3[c], v4[c], v5[c], v6[c] = _bt(
                    s0[c], s1[c], s2[c], s3[c], s4[c], s5[c], s6[c])
    return V


@njit(cache=True, nogil=True)
def output_transform(M, N, OH, OW, OC, TH, TW, bias, use_bias, y2, t0, t1):
    """y2 (N*OH, OW*OC) = A^T m A (+ bias) for every tile's 7x7 product m, cropped to
    the output."""
    tmp = np.empty((21, OC), dtype=M.dtype)              # tmp[7j + a] = (m A)[a, j]
    for t in range(t0, t1):
        n = t // (TH * TW)
        oh, ow = 3 * ((t // TW) % TH), 3 * (t % TW)
        for a in range(7):                               # along each row a of m
            m0, m1, m2, m3, m4, m5, m6 = M[7 * a, t], M[7 * a + 1, t], M[7 * a + 2, t], \
                M[7 * a + 3, t], M[7 * a + 4, t], M[7 * a + 5, t], M[7 * a + 6, t]
            u0, u1, u2 = tmp[a], tmp[7 + a], tmp[14 + a]
            for c in range(OC):
                u0[c], u1[c], u2[c] = _at(m0[c], m1[c], m2[c], m3[c], m4[c], m5[c], m6[c])
        rows, r0 = min(3, OH - oh), n * OH + oh          # output rows of this tile
        for j in range(min(3, OW - ow)):                 # then down each output column j
            s0, s1, s2, s3, s4, s5, s6 = tmp[7 * j], tmp[7 * j + 1], tmp[7 * j + 2], \
                tmp[7 * j + 3], tmp[7 * j + 4], tmp[7 * j + 5], tmp[7 * j + 6]
            o = (ow + j) * OC
            if rows == 3:
                o0, o1, o2 = y2[r0, o:o + OC], y2[r0 + 1, o:o + OC], y2[r0 + 2, o:o + OC]
                for c in range(OC):
                    b_ = bias[c] if use_bias else bias[0] - bias[0]
                    y0, y1, y2_ = _at(s0[c], s1[c], s2[c], s3[c], s4[c], s5[c], s6[c])
                    o0[c], o1[c], o2[c] = y0 + b_, y1 + b_, y2_ + b_
            else:                                        # a partial tile at the bottom
                for c in range(OC):
                    b_ = bias[c] if use_bias else bias[0] - bias[0]
                    y = _at(s0[c], s1[c], s2[c], s3[c], s4[c], s5[c], s6[c])
                    for i in range(rows):
                        y2[r0 + i, o + c] = y[i] + b_
    return y2


@njit(cache=True, nogil=True)
def grad_output_transform(gy2, N, OH, OW, OC, TH, TW, gM, zero, t0, t1):
    """gM[7a+b, t, oc] = (A g A^T)[a, b] for the 3x3 output gradient g of tile t (zero
    where the tile runs past the output)."""
    tmp = np.empty((21, OC), dtype=gM.dtype)             # tmp[3b + i] = (g A^T)[i, b]
    pad = np.empty((1, 3 * OC), dtype=gM.dtype)          # an edge tile's row, zero-padded
    for t in range(t0, t1):
        n = t // (TH * TW)
        oh, ow = 3 * ((t // TW) % TH), 3 * (t % TW)
        for i in range(3):                               # along each row i of g
            if oh + i >= OH:                             # past the output: zero
                for b in range(7):
                    tmp[3 * b + i] = zero
                continue
            r, o, padded = _patch_row(gy2, n, OH, OW, OC, oh + i, ow, 3, pad)
            if padded:
                _a_row(pad, r, o, OC, tmp, i)
            else:
                _a_row(gy2, r, o, OC, tmp, i)
        for b in range(7):                               # then down each column b
            p0, p1, p2 = tmp[3 * b], tmp[3 * b + 1], tmp[3 * b + 2]
            v0, v1, v2, v3, v4, v5, v6 = gM[b, t], gM[7 + b, t], gM[14 + b, t], \
                gM[21 + b, t], gM[28 + b, t], gM[35 + b, t], gM[42 + b, t]
            for c in range(OC):
                v0[c], v1[c], v2[c], v3[c], v4[c], v5[c], v6[c] = _a(p0[c], p1[c], p2[c])
    return gM


@njit(cache=True, nogil=True)
def input_gradient_transform(gV, N, H, W, C, PH, PW, TH, TW, gx2, t0, t1):
    """gx2 (N*H, W*C) += B gV_t B^T for every tile t (gV_t[a, b] = gV[7a+b, t]): the
    adjoint of ``input_transform``, each pixel getting the gradient of every patch it
    lies in (the padding's is dropped). The patches of one image overlap: a thread
    must take whole images."""
    tmp = np.empty((49, C), dtype=gV.dtype)              # tmp[7j + a] = (gV_t B^T)[a, j]
    col = np.empty((7, C), dtype=gV.dtype)               # column j of B gV_t B^T
    for t in range(t0, t1):
        n = t // (TH * TW)
        h0, w0 = 3 * ((t // TW) % TH) - PH, 3 * (t % TW) - PW
        for a in range(7):                               # along each row a of gV_t
            g0, g1, g2, g3, g4, g5, g6 = gV[7 * a, t], gV[7 * a + 1, t], gV[7 * a + 2, t], \
                gV[7 * a + 3, t], gV[7 * a + 4, t], gV[7 * a + 5, t], gV[7 * a + 6, t]
            u0, u1, u2, u3, u4, u5, u6 = tmp[a], tmp[7 + a], tmp[14 + a], tmp[21 + a], \
                tmp[28 + a], tmp[35 + a], tmp[42 + a]
            for c in range(C):
                u0[c], u1[c], u2[c], u3[c], u4[c], u5[c], u6[c] = _btT(
                    g0[c], g1[c], g2[c], g3[c], g4[c], g5[c], g6[c])
        for j in range(7):                               # then down each column j
            w = w0 + j
            if w < 0 or w >= W:
                continue
            s0, s1, s2, s3, s4, s5, s6 = tmp[7 * j], tmp[7 * j + 1], tmp[7 * j + 2], \
                tmp[7 * j + 3], tmp[7 * j + 4], tmp[7 * j + 5], tmp[7 * j + 6]
            c0, c1, c2, c3, c4, c5, c6 = col[0], col[1], col[2], col[3], col[4], col[5], \
                col[6]
            for c in range(C):
                c0[c], c1[c], c2[c], c3[c], c4[c], c5[c], c6[c] = _btT(
                    s0[c], s1[c], s2[c], s3[c], s4[c], s5[c], s6[c])
            for i in range(7):                           # added onto the patch's pixels
                h = h0 + i
                if 0 <= h < H:
                    dst, src = gx2[n * H + h, w * C:(w + 1) * C], col[i]
                    for c in range(C):
                        dst[c] += src[c]
    return gx2
