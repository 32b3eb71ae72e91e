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

from .numba_winograd_f25 import _run

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


@njit(cache=True, nogil=True)
def input_transform(x2, N, H, W, C, PH, PW, TH, TW, V, zero, t0, t1):
    """V[7a+b, t, c] = (B^T d B)[a, b] for the 7x7 input patch d of tile t, channel c
    (top-left corner (3*th - PH, 3*tw - PW))."""
    zeros = np.full(C, zero, dtype=V.dtype)
    tmp = np.empty((49, C), dtype=V.dtype)               # tmp[7a + j] = (B^T d)[a, j]
    for t in range(t0, t1):
        n = t // (TH * TW)
        h0, w0 = 3 * ((t // TW) % TH) - PH, 3 * (t % TW) - PW
        for j in range(7):                               # down each column j of the patch
            w = w0 + j
            d0 = _run(x2, n, H, W, C, h0, w, zeros)
            d1 = _run(x2, n, H, W, C, h0 + 1, w, zeros)
            d2 = _run(x2, n, H, W, C, h0 + 2, w, zeros)
            d3 = _run(x2, n, H, W, C, h0 + 3, w, zeros)
            d4 = _run(x2, n, H, W, C, h0 + 4, w, zeros)
            d5 = _run(x2, n, H, W, C, h0 + 5, w, zeros)
            d6 = _run(x2, n, H, W, C, h0 + 6, w, zeros)
            u0, u1, u2, u3, u4, u5, u6 = tmp[j], tmp[7 + j], tmp[14 + j], tmp[21 + j], \
                tmp[28 + j], tmp[35 + j], tmp[42 + j]
            for c in range(C):
                u0[c], u1[c], u2[c], u3[c], u4[c], u5[c], u6[c] = _bt(
                    d0[c], d1[c], d2[c], d3[c], d4[c], d5[c], d6[c])
        for a in range(7):                               # then along each row a
            s0, s1, s2, s3, s4, s5, s6 = tmp[7 * a], tmp[7 * a + 1], tmp[7 * a + 2], \
                tmp[7 * a + 3], tmp[7 * a + 4], tmp[7 * a + 5], tmp[7 * a + 6]
            v0, v1, v2, v3, v4, v5, v6 = V[7 * a, t], V[7 * a + 1, t], V[7 * a + 2, t], \
                V[7 * a + 3, t], V[7 * a + 4, t], V[7 * a + 5, t], V[7 * a + 6, t]
            for c in range(C):
                v0[c], v1[c], v2[c], v3[c], v4[c], v5[c], v6[c] = _bt(
                    s0[c], s1[c], s2[c], s3[c], s4[c], s5[c], s6[c])
    return V


@njit(cache=True, nogil=True)
def output_transform(M, N, OH, OW, OC, TH, TW, bias, use_bias, y2, t0, t1):
    """y2 (N*OH, OW*OC) = A^T m A (+ bias) for every tile's 7x7 product m, cropped to
    the output."""
    tmp = np.empty((21, OC), dtype=M.dtype)              # tmp[7i + b] = (A^T m)[i, b]
    for t in range(t0, t1):
        n = t // (TH * TW)
        oh, ow = 3 * ((t // TW) % TH), 3 * (t % TW)
        for b in range(7):                               # down each column b of m
            m0, m1, m2, m3, m4, m5, m6 = M[b, t], M[7 + b, t], M[14 + b, t], M[21 + b, t], \
                M[28 + b, t], M[35 + b, t], M[42 + b, t]
            u0, u1, u2 = tmp[b], tmp[7 + b], tmp[14 + b]
            for c in range(OC):
                u0[c], u1[c], u2[c] = _at(m0[c], m1[c], m2[c], m3[c], m4[c], m5[c], m6[c])
        cols = min(3, OW - ow)                           # output columns of this tile
        for i in range(min(3, OH - oh)):                 # then along each output row i
            s0, s1, s2, s3, s4, s5, s6 = tmp[7 * i], tmp[7 * i + 1], tmp[7 * i + 2], \
                tmp[7 * i + 3], tmp[7 * i + 4], tmp[7 * i + 5], tmp[7 * i + 6]
            row = y2[n * OH + oh + i]                    # (OW*OC,)
            if cols == 3:
                o0, o1, o2 = row[ow * OC:(ow + 1) * OC], row[(ow + 1) * OC:(ow + 2) * OC], \
                    row[(ow + 2) * OC:(ow + 3) * OC]
                for c in range(OC):
                    b_ = bias[c] if use_bias else bias[0] - bias[0]
                    y0, y1, y2_ = _at(s0[c], s1[c], s2[c], s3[c], s4[c], s5[c], s6[c])
                    o0[c], o1[c], o2[c] = y0 + b_, y1 + b_, y2_ + b_
            else:                                        # a partial tile at the right edge
                for c in range(OC):
                    b_ = bias[c] if use_bias else bias[0] - bias[0]
                    y = _at(s0[c], s1[c], s2[c], s3[c], s4[c], s5[c], s6[c])
                    for j in range(cols):
                        row[(ow + j) * OC + c] = y[j] + b_
    return y2


@njit(cache=True, nogil=True)
def grad_output_transform(gy2, N, OH, OW, OC, TH, TW, gM, zero, t0, t1):
    """gM[7a+b, t, oc] = (A g A^T)[a, b] for the 3x3 output gradient g of tile t (zero
    where the tile runs past the output)."""
    tmp = np.empty((21, OC), dtype=gM.dtype)              # tmp[3a + j] = (A g)[a, j]
    zeros = np.full(OC, zero, dtype=gM.dtype)
    for t in range(t0, t1):
        n = t // (TH * TW)
        oh, ow = 3 * ((t // TW) % TH), 3 * (t % TW)
        for j in range(3):                               # down each column j of g
            w = ow + j
            g = [zeros] * 3                              # g's rows, zero past the output
            if w < OW:
                for i in range(min(3, OH - oh)):
                    g[i] = gy2[n * OH + oh + i, w * OC:(w + 1) * OC]
            g0, g1, g2 = g[0], g[1], g[2]
            u0, u1, u2, u3, u4, u5, u6 = tmp[j], tmp[3 + j], tmp[6 + j], tmp[9 + j], \
                tmp[12 + j], tmp[15 + j], tmp[18 + j]
            for c in range(OC):
                u0[c], u1[c], u2[c], u3[c], u4[c], u5[c], u6[c] = _a(g0[c], g1[c], g2[c])
        for a in range(7):                               # then along each row a
            p0, p1, p2 = tmp[3 * a], tmp[3 * a + 1], tmp[3 * a + 2]
            v0, v1, v2, v3, v4, v5, v6 = gM[7 * a, t], gM[7 * a + 1, t], gM[7 * a + 2, t], \
                gM[7 * a + 3, t], gM[7 * a + 4, t], gM[7 * a + 5, t], gM[7 * a + 6, t]
            for c in range(OC):
                v0[c], v1[c], v2[c], v3[c], v4[c], v5[c], v6[c] = _a(p0[c], p1[c], p2[c])
    return gM
