"""Numba loops of the Winograd F(2x2, 5x5) convolution (``conv_winograd_cpu.py``, which
holds the matrices ``AT25`` and ``BT25`` and calls them on the op's geometry),
written out for those matrices. Images are channels-last and flattened to 2-D, ``x2``
(N*H, W*C), row (n, h), column (w, c); transformed tiles are stored (36, T, C), plane
``6*a + b`` holding element (a, b) of every tile's 6x6 transform, so each plane is
one GEMM operand; every loop covers tiles t0..t1-1 (so that several threads can take
disjoint ranges) and releases the GIL.

Each 2-D transform is two passes of the 1-D one through a scratch array, each pass a
loop over the channels that the compiler vectorises. It tests at run time that the
rows a loop stores to overlap nothing else it touches, and it widens that test over
the loop around it: where the rows stored lie interleaved over that loop (the planes
6a + b for b = 0..5, a the outer loop) the test fails and the scalar code runs. So
``input_transform6`` runs along the rows of the patch first (tmp[6b + i], i outer)
and then down its columns (V[6a + b], b outer); the output transforms that only
F(2x2, 5x5) uses (the chooser no longer picks it) keep the older order.

The 1-D transforms, from the matrices' rows:

    B^T d = (4 d0 - 5 d2 + d4,  (d3 + d4) - 4 (d1 + d2),  (d4 - d3) + 4 (d1 - d2),
             (d4 - d2) + 2 (d3 - d1),  (d4 - d2) - 2 (d3 - d1),  4 d1 - 5 d3 + d5)
    A^T m = (m0 + m1 + m2 + m3 + m4,  (m1 - m2) + 2 (m3 - m4) + m5)
    A g   = (g0,  g0 + g1,  g0 - g1,  g0 + 2 g1,  g0 - 2 g1,  g1)

Multiples are formed by additions (x + x is exactly 2x), so float32 data never meets a
float64 constant (Numba would promote the arithmetic to float64).
"""

from __future__ import annotations

import numpy as np
from numba import njit


@njit(cache=True, nogil=True, inline="always")
def _bt(d0, d1, d2, d3, d4, d5):
    """B^T d for one column (or row) of a 6x6 tile."""
    e = d0 - d2
    e2 = e + e
    f = d1 + d2
    f2 = f + f
    g = d1 - d2
    g2 = g + g
    h = d3 - d1
    h2 = h + h
    k = d1 - d3
    k2 = k + k
    return (e2 + e2 - d2 + d4, (d3 + d4) - (f2 + f2), (d4 - d3) + (g2 + g2),
            (d4 - d2) + h2, (d4 - d2) - h2, k2 + k2 - d3 + d5)


@njit(cache=True, nogil=True, inline="always")
def _btT(u0, u1, u2, u3, u4, u5):
    """B u (B^T's transpose): the adjoint of ``_bt``, for the input gradient."""
    u00 = u0 + u0
    p = (u2 - u1) + u5
    p2 = p + p
    q = u4 - u3
    r = (u0 + u1) + u2
    r2 = r + r
    e = u3 - u4
    f = u5 + u5
    return (u00 + u00, (p2 + p2) + (q + q), -((r2 + r2) + u0 + u3 + u4),
            (u1 - u2) + (e + e) - (f + f + u5), r + u3 + u4, u5)


@njit(cache=True, nogil=True, inline="always")
def _at(m0, m1, m2, m3, m4, m5):
    """A^T m: the 2 outputs of a 6-vector of products."""
    d = m3 - m4
    return m0 + m1 + m2 + m3 + m4, (m1 - m2) + (d + d) + m5


@njit(cache=True, nogil=True, inline="always")
def _a(g0, g1):
    """A g: the 6-vector transform of a pair of output gradients."""
    h = g1 + g1
    return g0, g0 + g1, g0 - g1, g0 + h, g0 - h, g1


@njit(cache=True, nogil=True, inline="always")
def _patch_row(x2, n, H, W, C, h, w0, width, pad):
    """Row h of image n from column w0 on, ``width`` pixels, as ``(src, offset)``:
    x2 itself when the pixels lie inside the image, else ``pad`` (1, width*C)
    filled with them and zeros in the padding (the edge tiles). h must be inside."""
    if w0 >= 0 and w0 + width <= W:
        return n * H + h, w0 * C, False
    for j in range(width):
        w = w0 + j
        if 0 <= w < W:
            pad[0, j * C:(j + 1) * C] = x2[n * H + h, w * C:(w + 1) * C]
        else:
            pad[0, j * C:(j + 1) * C] = 0
    return 0, 0, True


@njit(cache=True, nogil=True, inline="always")
def _bt_row(src, r, o, C, tmp, i):
    """tmp[6b + i, c] = (d B)[i, b]: B^T along row i of the patch, whose six pixels
    are src[r, o + j*C + c]."""
    for c in range(C):
        tmp[i, c], tmp[6 + i, c], tmp[12 + i, c], tmp[18 + i, c], tmp[24 + i, c], \
            tmp[30 + i, c] = _bt(src[r, o + c], src[r, o + C + c], src[r, o + 2 * C + c],
                                 src[r, o + 3 * C + c], src[r, o + 4 * C + c],
                                 src[r, o + 5 * C + c])


@njit(cache=True, nogil=True)
def input_transform(x2, N, H, W, C, PH, PW, TH, TW, V, zero, t0, t1):
    """V[6a+b, t, c] = (B^T d B)[a, b] for the 6x6 input patch d of tile t, channel c
    (top-left corner (2*th - PH, 2*tw - PW))."""
    return input_transform6(x2, N, H, W, C, PH, PW, TH, TW, 2, V, zero, t0, t1)


@njit(cache=True, nogil=True)
def input_transform6(x2, N, H, W, C, PH, PW, TH, TW, step, V, zero, t0, t1):
    """V[6a+b, t, c] = (B^T d B)[a, b] for the 6x6 input patch d of tile t, channel c,
    tiles ``step`` apart (top-left corner (step*th - PH, step*tw - PW)): step 2 for
    F(2x2, 5x5), 4 for F(4x4, 3x3), which share B^T. Along the patch's rows first
    (into tmp), then down its columns: in both passes the six rows a loop stores to
    stay apart over the loop around it, so that the compiler's overlap test (widened
    over that loop) passes and the vector code runs."""
    tmp = np.empty((36, C), dtype=V.dtype)               # tmp[6b + i] = (d B)[i, b]
    pad = np.empty((1, 6 * C), dtype=V.dtype)            # an edge tile's row, zero-padded
    for t in range(t0, t1):
        n = t // (TH * TW)
        h0, w0 = step * ((t // TW) % TH) - PH, step * (t % TW) - PW
        for i in range(6):                               # along each row i of the patch
            h = h0 + i
            if h < 0 or h >= H:                          # a row of padding
                for b in range(6):
                    tmp[6 * b + i] = zero
                continue
            r, o, padded = _patch_row(x2, n, H, W, C, h, w0, 6, pad)
            if padded:
                _bt_row(pad, r, o, C, tmp, i)
            else:
                _bt_row(x2, r, o, C, tmp, i)
        for b in range(6):                               # then down each column b
            s0, s1, s2, s3, s4, s5 = tmp[6 * b], tmp[6 * b + 1], tmp[6 * b + 2], \
                tmp[6 * b + 3], tmp[6 * b + 4], tmp[6 * b + 5]
            v0, v1, v2, v3, v4, v5 = V[b, t], V[6 + b, t], V[12 + b, t], V[18 + b, t], \
                V[24 + b, t], V[30 + b, t]
            for c in range(C):
                v0[c], v1[c], v2[c], v3[c], v4[c], v5[c] = _bt(s0[c], s1[c], s2[c], s3[c],
                                                               s4[c], s5[c])
    return V


@njit(cache=True, nogil=True)
def input_gradient_transform(gV, N, H, W, C, PH, PW, TH, TW, gx2, t0, t1):
    """gx2 (N*H, W*C) += B gV_t B^T for every tile t: the adjoint of ``input_transform``
    (``input_gradient_transform6`` with a step of 2)."""
    return input_gradient_transform6(gV, N, H, W, C, PH, PW, TH, TW, 2, gx2, t0, t1)


@njit(cache=True, nogil=True)
def input_gradient_transform6(gV, N, H, W, C, PH, PW, TH, TW, step, gx2, t0, t1):
    """gx2 (N*H, W*C) += B gV_t B^T for every tile t (gV_t[a, b] = gV[6a+b, t]), tiles
    ``step`` apart: the adjoint of ``input_transform6``, each pixel getting the gradient
    of every patch it lies in (the padding's is dropped). The patches of one image
    overlap: a thread must take whole images."""
    tmp = np.empty((36, C), dtype=gV.dtype)              # tmp[6j + a] = (gV_t B^T)[a, j]
    col = np.empty((6, C), dtype=gV.dtype)               # column j of B gV_t B^T
    for t in range(t0, t1):
        n = t // (TH * TW)
        h0, w0 = step * ((t // TW) % TH) - PH, step * (t % TW) - PW
        for a in range(6):                               # along each row a of gV_t
            g0, g1, g2, g3, g4, g5 = gV[6 * a, t], gV[6 * a + 1, t], gV[6 * a + 2, t], \
                gV[6 * a + 3, t], gV[6 * a + 4, t], gV[6 * a + 5, t]
            u0, u1, u2, u3, u4, u5 = tmp[a], tmp[6 + a], tmp[12 + a], tmp[18 + a], \
                tmp[24 + a], tmp[30 + a]
            for c in range(C):
                u0[c], u1[c], u2[c], u3[c], u4[c], u5[c] = _btT(g0[c], g1[c], g2[c], g3[c],
                                                                g4[c], g5[c])
        for j in range(6):                               # then down each column j
            w = w0 + j
            if w < 0 or w >= W:
                continue
            s0, s1, s2, s3, s4, s5 = tmp[6 * j], tmp[6 * j + 1], tmp[6 * j + 2], \
                tmp[6 * j + 3], tmp[6 * j + 4], tmp[6 * j + 5]
            c0, c1, c2, c3, c4, c5 = col[0], col[1], col[2], col[3], col[4], col[5]
            for c in range(C):
                c0[c], c1[c], c2[c], c3[c], c4[c], c5[c] = _btT(s0[c], s1[c], s2[c], s3[c],
                                                                s4[c], s5[c])
            for i in range(6):                           # added onto the patch's pixels
                h = h0 + i
                if 0 <= h < H:
                    dst, src = gx2[n * H + h, w * C:(w + 1) * C], col[i]
                    for c in range(C):
                        dst[c] += src[c]
    return gx2


@njit(cache=True, nogil=True)
def output_transform(M, N, OH, OW, OC, TH, TW, bias, use_bias, y2, t0, t1):
    """y2 (N*OH, OW*OC) = A^T m A (+ bias) for every tile's 6x6 product m, cropped."""
    tmp = np.empty((12, OC), dtype=M.dtype)              # tmp[6i + b] = (A^T m)[i, b]
    for t in range(t0, t1):
        n = t // (TH * TW)
        oh, ow = 2 * ((t // TW) % TH), 2 * (t % TW)
        for b in range(6):                               # down each column b of m
            m0, m1, m2, m3, m4, m5 = M[b, t], M[6 + b, t], M[12 + b, t], M[18 + b, t], \
                M[24 + b, t], M[30 + b, t]
            u, v = tmp[b], tmp[6 + b]
            for c in range(OC):
                u[c], v[c] = _at(m0[c], m1[c], m2[c], m3[c], m4[c], m5[c])
        for i in range(min(2, OH - oh)):                 # then along each output row i
            s0, s1, s2, s3, s4, s5 = tmp[6 * i], tmp[6 * i + 1], tmp[6 * i + 2], \
                tmp[6 * i + 3], tmp[6 * i + 4], tmp[6 * i + 5]
            row = y2[n * OH + oh + i]
            left = row[ow * OC:(ow + 1) * OC]
            if ow + 1 < OW:
                right = row[(ow + 1) * OC:(ow + 2) * OC]
                for c in range(OC):
                    b_ = bias[c] if use_bias else bias[0] - bias[0]
                    o0, o1 = _at(s0[c], s1[c], s2[c], s3[c], s4[c], s5[c])
                    left[c], right[c] = o0 + b_, o1 + b_
            else:
                for c in range(OC):
                    b_ = bias[c] if use_bias else bias[0] - bias[0]
                    left[c] = s0[c] + s1[c] + s2[c] + s3[c] + s4[c] + b_
    return y2


@njit(cache=True, nogil=True)
def grad_output_transform(gy2, N, OH, OW, OC, TH, TW, gM, zero, t0, t1):
    """gM[6a+b, t, oc] = (A g A^T)[a, b] for the 2x2 output gradient g of tile t (zero
    where the tile runs past the output)."""
    tmp = np.empty((12, OC), dtype=gM.dtype)              # tmp[2a + j] = (A g)[a, j]
    for t in range(t0, t1):
        n = t // (TH * TW)
        oh, ow = 2 * ((t // TW) % TH), 2 * (t % TW)
        top, bottom = gy2[n * OH + oh], gy2[n * OH + min(oh + 1, OH - 1)]
        for j in range(2):                               # down each column j of g
            keep0 = ow + j < OW                          # g is zero past the output
            keep1 = keep0 and oh + 1 < OH
            col = min(ow + j, OW - 1) * OC
            g0, g1 = top[col:col + OC], bottom[col:col + OC]
            u0, u1, u2, u3, u4, u5 = tmp[j], tmp[2 + j], tmp[4 + j], tmp[6 + j], \
                tmp[8 + j], tmp[10 + j]
            for c in range(OC):
                u0[c], u1[c], u2[c], u3[c], u4[c], u5[c] = _a(g0[c] if keep0 else zero,
                                                              g1[c] if keep1 else zero)
        for a in range(6):                               # then along each row a
            p, q = tmp[2 * a], tmp[2 * a + 1]
            v0, v1, v2, v3, v4, v5 = gM[6 * a, t], gM[6 * a + 1, t], gM[6 * a + 2, t], \
                gM[6 * a + 3, t], gM[6 * a + 4, t], gM[6 * a + 5, t]
            for c in range(OC):
                v0[c], v1[c], v2[c], v3[c], v4[c], v5[c] = _a(p[c], q[c])
    return gM
