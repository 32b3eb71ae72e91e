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

from .numba_winograd_f25 import _patch_row, input_gradient_transform6, input_transform6


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
def input_gradient_transform(gV, N, H, W, C, PH, PW, TH, TW, gx2, t0, t1):
    """gx2 (N*H, W*C) += B gV_t B^T for every tile t: the adjoint of ``input_transform``
    (``numba_winograd_f25.input_gradient_transform6`` with a step of 4)."""
    return input_gradient_transform6(gV, N, H, W, C, PH, PW, TH, TW, 4, gx2, t0, t1)


@njit(cache=True, nogil=True, inline="always")
def _a_row(src, r, o, C, tmp, i):
    """tmp[4b + i, c] = (g A^T)[i, b]: A along row i of the 4x4 output gradient, whose
    four pixels are src[r, o + j*C + c]."""
    for c in range(C):
        tmp[i, c], tmp[4 + i, c], tmp[8 + i, c], tmp[12 + i, c], tmp[16 + i, c], \
            tmp[20 + i, c] = _a(src[r, o + c], src[r, o + C + c], src[r, o + 2 * C + c],
                                src[r, o + 3 * C + c])


# Two passes through a scratch array, along the rows of a tile first, then down its
# columns: the order that lets the compiler's vector code run (numba_winograd_f25.py).

@njit(cache=True, nogil=True)
def output_transform(M, N, OH, OW, OC, TH, TW, bias, use_bias, y2, t0, t1):
    """y2 (N*OH, OW*OC) = A^T m A (+ bias) for every tile's 6x6 product m, cropped to
    the output."""
    tmp = np.empty((24, OC), dtype=M.dtype)              # tmp[6j + a] = (m A)[a, j]
    for t in range(t0, t1):
        n = t // (TH * TW)
        oh, ow = 4 * ((t // TW) % TH), 4 * (t % TW)
        for a in range(6):                               # along each row a of m
            m0, m1, m2, m3, m4, m5 = M[6 * a, t], M[6 * a + 1, t], M[6 * a + 2, t], \
                M[6 * a + 3, t], M[6 * a + 4, t], M[6 * a + 5, t]
            u0, u1, u2, u3 = tmp[a], tmp[6 + a], tmp[12 + a], tmp[18 + a]
            for c in range(OC):
                u0[c], u1[c], u2[c], u3[c] = _at(m0[c], m1[c], m2[c], m3[c], m4[c], m5[c])
        rows, r0 = min(4, OH - oh), n * OH + oh          # output rows of this tile
        for j in range(min(4, OW - ow)):                 # then down each output column j
            s0, s1, s2, s3, s4, s5 = tmp[6 * j], tmp[6 * j + 1], tmp[6 * j + 2], \
                tmp[6 * j + 3], tmp[6 * j + 4], tmp[6 * j + 5]
            o = (ow + j) * OC
            if rows == 4:
                for c in range(OC):
                    b_ = bias[c] if use_bias else bias[0] - bias[0]
                    y0, y1, y2_, y3 = _at(s0[c], s1[c], s2[c], s3[c], s4[c], s5[c])
                    y2[r0, o + c], y2[r0 + 1, o + c], y2[r0 + 2, o + c], \
                        y2[r0 + 3, o + c] = y0 + b_, y1 + b_, y2_ + b_, y3 + b_
            else:                                        # a partial tile at the bottom
                for c in range(OC):
                    b_ = bias[c] if use_bias else bias[0] - bias[0]
                    y = _at(s0[c], s1[c], s2[c], s3[c], s4[c], s5[c])
                    for i in range(rows):
                        y2[r0 + i, o + c] = y[i] + b_
    return y2


@njit(cache=True, nogil=True)
def grad_output_transform(gy2, N, OH, OW, OC, TH, TW, gM, zero, t0, t1):
    """gM[6a+b, t, oc] = (A g A^T)[a, b] for the 4x4 output gradient g of tile t (zero
    where the tile runs past the output)."""
    tmp = np.empty((24, OC), dtype=gM.dtype)             # tmp[4b + i] = (g A^T)[i, b]
    pad = np.empty((1, 4 * OC), dtype=gM.dtype)          # an edge tile's row, zero-padded
    for t in range(t0, t1):
        n = t // (TH * TW)
        oh, ow = 4 * ((t // TW) % TH), 4 * (t % TW)
        for i in range(4):                               # along each row i of g
            if oh + i >= OH:                             # past the output: zero
                for b in range(6):
                    tmp[4 * b + i] = zero
                continue
            r, o, padded = _patch_row(gy2, n, OH, OW, OC, oh + i, ow, 4, pad)
            if padded:
                _a_row(pad, r, o, OC, tmp, i)
            else:
                _a_row(gy2, r, o, OC, tmp, i)
        for b in range(6):                               # then down each column b
            p0, p1, p2, p3 = tmp[4 * b], tmp[4 * b + 1], tmp[4 * b + 2], tmp[4 * b + 3]
            v0, v1, v2, v3, v4, v5 = gM[b, t], gM[6 + b, t], gM[12 + b, t], \
                gM[18 + b, t], gM[24 + b, t], gM[30 + b, t]
            for c in range(OC):
                v0[c], v1[c], v2[c], v3[c], v4[c], v5[c] = _a(p0[c], p1[c], p2[c], p3[c])
    return gM
