"""Numba loops of the Winograd F(4x4, 5x5) convolution (``conv_winograd_cpu.py``, which
holds the matrices ``AT45``, ``G45`` and ``BT45`` and checks the arguments), written
out for those matrices. Same layouts and signatures as ``numba_winograd_f63.py``,
whose eight points (0, 1, -1, 2, -2, 1/2, -1/2, infinity) it shares, and so its 8x8
tiles' B^T: the input transform and its adjoint are f63's with a step of 4. A tile
t = (n, th, tw) is the 8x8 input patch with top-left corner (4*th - PH, 4*tw - PW);
it yields the 4x4 outputs (4*th + i, 4*tw + j), cropped at the edges: 64 products per
16 outputs where F(3x3, 5x5) needs 49 per 9 (on AlexNet's 26x26 maps 7 x 7 tiles
instead of 9 x 9: 0.79 times the GEMM work). The 1-D transforms of the outputs:

    A^T m:  y_i = m0 [i = 0] + sum over p = 1, 2, 1/2 of p^i (m(p) + (-1)^i m(-p))
            + m7 [i = 3]
    A g:    the values at 0, +-1, +-2, +-1/2 of g0 + g1 x + g2 x^2 + g3 x^3, and g3
"""

from __future__ import annotations

import numpy as np
from numba import njit

from .numba_winograd_f25 import _patch_row
from .numba_winograd_f63 import _bt, _btT, input_gradient_transform8, input_transform8

HALF, QUARTER, EIGHTH = np.float32(0.5), np.float32(0.25), np.float32(0.125)
C2, C4, C8 = np.float32(2), np.float32(4), np.float32(8)


@njit(cache=True, nogil=True, inline="always")
def _at(m0, m1, m2, m3, m4, m5, m6, m7):
    """A^T m: the 4 outputs of an 8-vector of products."""
    s1, d1 = m1 + m2, m1 - m2
    s2, d2 = m3 + m4, m3 - m4
    s3, d3 = m5 + m6, m5 - m6
    return (m0 + s1 + s2 + s3, d1 + C2 * d2 + HALF * d3, s1 + C4 * s2 + QUARTER * s3,
            d1 + C8 * d2 + EIGHTH * d3 + m7)


@njit(cache=True, nogil=True, inline="always")
def _a(g0, g1, g2, g3):
    """A g: the 8-vector transform of 4 output gradients."""
    e1, o1 = g0 + g2, g1 + g3
    e2, o2 = g0 + C4 * g2, C2 * g1 + C8 * g3
    e3, o3 = g0 + QUARTER * g2, HALF * g1 + EIGHTH * g3
    return g0, e1 + o1, e1 - o1, e2 + o2, e2 - o2, e3 + o3, e3 - o3, g3


@njit(cache=True, nogil=True, inline="always")
def _a_row(src, r, o, C, tmp, i):
    """tmp[4b + i] = (g A^T)[i, b]: A along row i of the 4x4 output gradient, whose four
    pixels' channels are src[r, o + j*C:o + (j+1)*C]."""
    row = src[r]
    g0, g1, g2, g3 = row[o:o + C], row[o + C:o + 2 * C], row[o + 2 * C:o + 3 * C], \
        row[o + 3 * C:o + 4 * C]
    u0, u1, u2, u3, u4, u5, u6, u7 = tmp[i], tmp[4 + i], tmp[8 + i], tmp[12 + i], \
        tmp[16 + i], tmp[20 + i], tmp[24 + i], tmp[28 + i]
    for c in range(C):
        u0[c], u1[c], u2[c], u3[c], u4[c], u5[c], u6[c], u7[c] = _a(g0[c], g1[c], g2[c],
                                                                    g3[c])


@njit(cache=True, nogil=True)
def input_transform(x2, N, H, W, C, PH, PW, TH, TW, V, zero, t0, t1):
    """V[8a+b, t, c] = (B^T d B)[a, b] for the 8x8 input patch d of tile t, channel c
    (top-left corner (4*th - PH, 4*tw - PW))."""
    return input_transform8(x2, N, H, W, C, PH, PW, TH, TW, 4, V, zero, t0, t1)


@njit(cache=True, nogil=True)
def input_gradient_transform(gV, N, H, W, C, PH, PW, TH, TW, gx2, t0, t1):
    """gx2 (N*H, W*C) += B gV_t B^T for every tile t: the adjoint of
    ``input_transform`` (f63's ``input_gradient_transform8`` with a step of 4)."""
    return input_gradient_transform8(gV, N, H, W, C, PH, PW, TH, TW, 4, gx2, t0, t1)


@njit(cache=True, nogil=True)
def output_transform(M, N, OH, OW, OC, TH, TW, bias, use_bias, y2, t0, t1):
    """y2 (N*OH, OW*OC) = A^T m A (+ bias) for every tile's 8x8 product m, cropped to
    the output."""
    tmp = np.empty((32, OC), dtype=M.dtype)              # tmp[8j + a] = (m A)[a, j]
    for t in range(t0, t1):
        n = t // (TH * TW)
        oh, ow = 4 * ((t // TW) % TH), 4 * (t % TW)
        for a in range(8):                               # along each row a of m
            m0, m1, m2, m3, m4, m5, m6, m7 = M[8 * a, t], M[8 * a + 1, t], \
                M[8 * a + 2, t], M[8 * a + 3, t], M[8 * a + 4, t], M[8 * a + 5, t], \
                M[8 * a + 6, t], M[8 * a + 7, t]
            u0, u1, u2, u3 = tmp[a], tmp[8 + a], tmp[16 + a], tmp[24 + a]
            for c in range(OC):
                u0[c], u1[c], u2[c], u3[c] = _at(m0[c], m1[c], m2[c], m3[c], m4[c], m5[c],
                                                 m6[c], m7[c])
        rows, r0 = min(4, OH - oh), n * OH + oh          # output rows of this tile
        for j in range(min(4, OW - ow)):                 # then down each output column j
            s0, s1, s2, s3, s4, s5, s6, s7 = tmp[8 * j], tmp[8 * j + 1], tmp[8 * j + 2], \
                tmp[8 * j + 3], tmp[8 * j + 4], tmp[8 * j + 5], tmp[8 * j + 6], \
                tmp[8 * j + 7]
            o = (ow + j) * OC
            if rows == 4:
                o0, o1, o2, o3 = y2[r0, o:o + OC], y2[r0 + 1, o:o + OC], \
                    y2[r0 + 2, o:o + OC], y2[r0 + 3, o:o + OC]
                for c in range(OC):
                    b_ = bias[c] if use_bias else bias[0] - bias[0]
                    y0, y1, y2_, y3 = _at(s0[c], s1[c], s2[c], s3[c], s4[c], s5[c], s6[c],
                                          s7[c])
                    o0[c], o1[c], o2[c], o3[c] = y0 + b_, y1 + b_, y2_ + b_, y3 + b_
            else:                                        # a partial tile at the bottom
                for c in range(OC):
                    b_ = bias[c] if use_bias else bias[0] - bias[0]
                    y = _at(s0[c], s1[c], s2[c], s3[c], s4[c], s5[c], s6[c], s7[c])
                    for i in range(rows):
                        y2[r0 + i, o + c] = y[i] + b_
    return y2


@njit(cache=True, nogil=True)
def grad_output_transform(gy2, N, OH, OW, OC, TH, TW, gM, zero, t0, t1):
    """gM[8a+b, t, oc] = (A g A^T)[a, b] for the 4x4 output gradient g of tile t (zero
    where the tile runs past the output)."""
    tmp = np.empty((32, OC), dtype=gM.dtype)             # tmp[4b + i] = (g A^T)[i, b]
    pad = np.empty((1, 4 * OC), dtype=gM.dtype)          # an edge tile's row, zero-padded
    for t in range(t0, t1):
        n = t // (TH * TW)
        oh, ow = 4 * ((t // TW) % TH), 4 * (t % TW)
        for i in range(4):                               # along each row i of g
            if oh + i >= OH:                             # past the output: zero
                for b in range(8):
                    tmp[4 * b + i] = zero
                continue
            r, o, padded = _patch_row(gy2, n, OH, OW, OC, oh + i, ow, 4, pad)
            if padded:
                _a_row(pad, r, o, OC, tmp, i)
            else:
                _a_row(gy2, r, o, OC, tmp, i)
        for b in range(8):                               # then down each column b
            p0, p1, p2, p3 = tmp[4 * b], tmp[4 * b + 1], tmp[4 * b + 2], tmp[4 * b + 3]
            v0, v1, v2, v3, v4, v5, v6, v7 = gM[b, t], gM[8 + b, t], gM[16 + b, t], \
                gM[24 + b, t], gM[32 + b, t], gM[40 + b, t], gM[48 + b, t], gM[56 + b, t]
            for c in range(OC):
                v0[c], v1[c], v2[c], v3[c], v4[c], v5[c], v6[c], v7[c] = _a(
                    p0[c], p1[c], p2[c], p3[c])
    return gM
