"""Numba loops of the Winograd F(4x4, 3x3) convolution (``conv_winograd_cpu.py``, which
holds the matrices ``AT43`` and ``BT43`` and calls them on the op's geometry),
written out for those matrices. Same layouts and signatures as
``numba_winograd_f25.py``: images channels-last, ``x2`` (N*H, W*C); transformed tiles
(36, T, C), plane ``6*a + b`` holding element (a, b) of every tile's 6x6 transform;
every loop covers tiles t0..t1-1 and releases the GIL.

A tile t = (n, th, tw) is the 6x6 input patch with top-left corner (4*th - PH,
4*tw - PW); it yields the 4x4 outputs (4*th + i, 4*tw + j), cropped at the edges. B^T
is the one of F(2x2, 5x5) (the same six points), so the input transform is
``numba_winograd_f25.input_transform6`` with a step of 4. The 1-D transforms of the
outputs, from the rows of A^T (columns of A):

    A^T m = (m0 + (m1 + m2) + (m3 + m4),   (m1 - m2) + 2 (m3 - m4),
             (m1 + m2) + 4 (m3 + m4),      (m1 - m2) + 8 (m3 - m4) + m5)
    A g   = (g0,  (g0 + g2) + (g1 + g3),  (g0 + g2) - (g1 + g3),
             (g0 + 4 g2) + (2 g1 + 8 g3),  (g0 + 4 g2) - (2 g1 + 8 g3),  g3)

Multiples are formed by additions (x + x is exactly 2x), so float32 data never meets a
float64 constant (Numba would promote the arithmetic to float64).
"""

from __future__ import annotations

import numpy as np
from numba import njit

from .numba_winograd_f25 import input_transform6


@njit(cache=True, nogil=True, inline="always")
def _at(m0, m1, m2, m3, m4, m5):
    """A^T m: the 4 outputs of a 6-vector of products."""
    a, b = m1 + m2, m1 - m2
    c, d = m3 + m4, m3 - m4
    c2, d2 = c + c, d + d
    d4 = d2 + d2
    return m0 + a + c, b + d2, a + (c2 + c2), b + (d4 + d4) + m5


@njit(cache=True, nogil=True, inline="always")
def _a(g0, g1, g2, g3):
    """A g: the 6-vector transform of 4 output gradients."""
    p, q = g0 + g2, g1 + g3
    g2_2, g3_2 = g2 + g2, g3 + g3
    s = g0 + (g2_2 + g2_2)                  # g0 + 4 g2
    u = g1 + (g3_2 + g3_2)                  # g1 + 4 g3
    u2 = u + u                              # 2 g1 + 8 g3
    return g0, p + q, p - q, s + u2, s - u2, g3


@njit(cache=True, nogil=True)
def input_transform(x2, N, H, W, C, PH, PW, TH, TW, V, zero, t0, t1):
    """V[6a+b, t, c] = (B^T d B)[a, b] for the 6x6 input patch d of tile t, channel c
    (top-left corner (4*th - PH, 4*tw - PW))."""
    return input_transform6(x2, N, H, W, C, PH, PW, TH, TW, 4, V, zero, t0, t1)


@njit(cache=True, nogil=True)
def output_transform(M, N, OH, OW, OC, TH, TW, bias, use_bias, y2, t0, t1):
    """y2 (N*OH, OW*OC) = A^T m A (+ bias) for every tile's 6x6 product m, cropped to
    the output."""
    tmp = np.empty((24, OC), dtype=M.dtype)              # tmp[6i + b] = (A^T m)[i, b]
    for t in range(t0, t1):
        n = t // (TH * TW)
        oh, ow = 4 * ((t // TW) % TH), 4 * (t % TW)
        for b in range(6):                               # down each column b of m
            m0, m1, m2, m3, m4, m5 = M[b, t], M[6 + b, t], M[12 + b, t], M[18 + b, t], \
                M[24 + b, t], M[30 + b, t]
            u0, u1, u2, u3 = tmp[b], tmp[6 + b], tmp[12 + b], tmp[18 + b]
            for c in range(OC):
                u0[c], u1[c], u2[c], u3[c] = _at(m0[c], m1[c], m2[c], m3[c], m4[c], m5[c])
        cols = min(4, OW - ow)                           # output columns of this tile
        for i in range(min(4, OH - oh)):                 # then along each output row i
            s0, s1, s2, s3, s4, s5 = tmp[6 * i], tmp[6 * i + 1], tmp[6 * i + 2], \
                tmp[6 * i + 3], tmp[6 * i + 4], tmp[6 * i + 5]
            row = y2[n * OH + oh + i]                    # (OW*OC,)
            if cols == 4:
                o0, o1, o2, o3 = row[ow * OC:(ow + 1) * OC], row[(ow + 1) * OC:(ow + 2) * OC], \
                    row[(ow + 2) * OC:(ow + 3) * OC], row[(ow + 3) * OC:(ow + 4) * OC]
                for c in range(OC):
                    b_ = bias[c] if use_bias else bias[0] - bias[0]
                    y0, y1, y2_, y3 = _at(s0[c], s1[c], s2[c], s3[c], s4[c], s5[c])
                    o0[c], o1[c], o2[c], o3[c] = y0 + b_, y1 + b_, y2_ + b_, y3 + b_
            else:                                        # a partial tile at the right edge
                for c in range(OC):
                    b_ = bias[c] if use_bias else bias[0] - bias[0]
                    y = _at(s0[c], s1[c], s2[c], s3[c], s4[c], s5[c])
                    for j in range(cols):
                        row[(ow + j) * OC + c] = y[j] + b_
    return y2


@njit(cache=True, nogil=True)
def grad_output_transform(gy2, N, OH, OW, OC, TH, TW, gM, zero, t0, t1):
    """gM[6a+b, t, oc] = (A g A^T)[a, b] for the 4x4 output gradient g of tile t (zero
    where the tile runs past the output)."""
    tmp = np.empty((24, OC), dtype=gM.dtype)              # tmp[4a + j] = (A g)[a, j]
    zeros = np.full(OC, zero, dtype=gM.dtype)
    for t in range(t0, t1):
        n = t // (TH * TW)
        oh, ow = 4 * ((t // TW) % TH), 4 * (t % TW)
        for j in range(4):                               # down each column j of g
            w = ow + j
            g = [zeros] * 4                              # g's rows, zero past the output
            if w < OW:
                for i in range(min(4, OH - oh)):
                    g[i] = gy2[n * OH + oh + i, w * OC:(w + 1) * OC]
            g0, g1, g2, g3 = g[0], g[1], g[2], g[3]
            u0, u1, u2, u3, u4, u5 = tmp[j], tmp[4 + j], tmp[8 + j], tmp[12 + j], \
                tmp[16 + j], tmp[20 + j]
            for c in range(OC):
                u0[c], u1[c], u2[c], u3[c], u4[c], u5[c] = _a(g0[c], g1[c], g2[c], g3[c])
        for a in range(6):                               # then along each row a
            p0, p1, p2, p3 = tmp[4 * a], tmp[4 * a + 1], tmp[4 * a + 2], tmp[4 * a + 3]
            v0, v1, v2, v3, v4, v5 = gM[6 * a, t], gM[6 * a + 1, t], gM[6 * a + 2, t], \
                gM[6 * a + 3, t], gM[6 * a + 4, t], gM[6 * a + 5, t]
            for c in range(OC):
                v0[c], v1[c], v2[c], v3[c], v4[c], v5[c] = _a(p0[c], p1[c], p2[c], p3[c])
    return gM
