"""Numba loops of the Winograd F(2x2, 3x3) convolution (see ``winograd.py``).

Images are channels-last and flattened as in ``numba_kernels.py``: ``x2`` is
(N*H, W*C), row (n, h), column (w, c). A *tile* t = (n, th, tw) is the 4x4 input patch
whose top-left corner is (2*th - PH, 2*tw - PW); it yields the 2x2 outputs
(2*th + i, 2*tw + j). Transformed tiles are stored as (16, T, C): plane k = 4*a + b
holds element (a, b) of every tile's 4x4 transform, so each plane is one GEMM operand.
Every loop covers the tiles t0..t1-1, so that ``winograd.py`` can hand disjoint tile
ranges to several threads (the loops release the GIL). Nothing here checks its
arguments; ``winograd.py`` does.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange


@njit(parallel=True, cache=True, nogil=True)
def input_transform(x2, N, H, W, C, PH, PW, TH, TW, V, zero, t0, t1):
    """V[4a+b, t, c] = (B^T d B)[a, b] for the 4x4 input patch d of tile t, channel c.

    The 16 patch positions are taken as 1-D runs over the channels (a zero run where
    the position lies in the padding), so the loop over c walks memory in order and
    vectorises."""
    zeros = np.full(C, zero, dtype=V.dtype)
    for t in prange(t0, t1):
        n = t // (TH * TW)
        th = (t // TW) % TH
        tw = t % TW
        h0, w0 = 2 * th - PH, 2 * tw - PW
        d = [zeros] * 16
        for a in range(4):
            h = h0 + a
            if h < 0 or h >= H:
                continue
            for b in range(4):
                w = w0 + b
                if 0 <= w < W:
                    d[4 * a + b] = x2[n * H + h, w * C:(w + 1) * C]
        d00, d01, d02, d03, d10, d11, d12, d13 = d[0], d[1], d[2], d[3], d[4], d[5], d[6], d[7]
        d20, d21, d22, d23, d30, d31, d32, d33 = (d[8], d[9], d[10], d[11], d[12], d[13],
                                                  d[14], d[15])
        v0, v1, v2, v3, v4, v5, v6, v7 = (V[0, t], V[1, t], V[2, t], V[3, t], V[4, t],
                                          V[5, t], V[6, t], V[7, t])
        v8, v9, v10, v11, v12, v13, v14, v15 = (V[8, t], V[9, t], V[10, t], V[11, t],
                                                V[12, t], V[13, t], V[14, t], V[15, t])
        for c in range(C):
            # B^T d: rows (d0 - d2, d1 + d2, d2 - d1, d1 - d3)
            e00, e01, e02, e03 = d00[c] - d20[c], d01[c] - d21[c], d02[c] - d22[c], d03[c] - d23[c]
            e10, e11, e12, e13 = d10[c] + d20[c], d11[c] + d21[c], d12[c] + d22[c], d13[c] + d23[c]
            e20, e21, e22, e23 = d20[c] - d10[c], d21[c] - d11[c], d22[c] - d12[c], d23[c] - d13[c]
            e30, e31, e32, e33 = d10[c] - d30[c], d11[c] - d31[c], d12[c] - d32[c], d13[c] - d33[c]
            # (B^T d) B: the same combination of columns
            v0[c], v1[c], v2[c], v3[c] = e00 - e02, e01 + e02, e02 - e01, e01 - e03
            v4[c], v5[c], v6[c], v7[c] = e10 - e12, e11 + e12, e12 - e11, e11 - e13
            v8[c], v9[c], v10[c], v11[c] = e20 - e22, e21 + e22, e22 - e21, e21 - e23
            v12[c], v13[c], v14[c], v15[c] = e30 - e32, e31 + e32, e32 - e31, e31 - e33
    return V


@njit(parallel=True, cache=True, nogil=True)
def output_transform(M, N, OH, OW, OC, TH, TW, bias, use_bias, y2, t0, t1):
    """y2 (N*OH, OW*OC) = A^T m A (+ bias) for every tile's 4x4 product m, cropped."""
    for t in prange(t0, t1):
        n = t // (TH * TW)
        th = (t // TW) % TH
        tw = t % TW
        oh, ow = 2 * th, 2 * tw
        down, right = oh + 1 < OH, ow + 1 < OW
        row0, row1 = n * OH + oh, n * OH + min(oh + 1, OH - 1)
        col0, col1 = ow * OC, min(ow + 1, OW - 1) * OC
        for oc in range(OC):
            # A^T m: rows (m0 + m1 + m2, m1 - m2 - m3), then the same on columns
            s0 = M[0, t, oc] + M[4, t, oc] + M[8, t, oc]
            s1 = M[1, t, oc] + M[5, t, oc] + M[9, t, oc]
            s2 = M[2, t, oc] + M[6, t, oc] + M[10, t, oc]
            s3 = M[3, t, oc] + M[7, t, oc] + M[11, t, oc]
            u0 = M[4, t, oc] - M[8, t, oc] - M[12, t, oc]
            u1 = M[5, t, oc] - M[9, t, oc] - M[13, t, oc]
            u2 = M[6, t, oc] - M[10, t, oc] - M[14, t, oc]
            u3 = M[7, t, oc] - M[11, t, oc] - M[15, t, oc]
            b = bias[oc] if use_bias else bias[0] - bias[0]
            y2[row0, col0 + oc] = s0 + s1 + s2 + b
            if right:
                y2[row0, col1 + oc] = s1 - s2 - s3 + b
            if down:
                y2[row1, col0 + oc] = u0 + u1 + u2 + b
                if right:
                    y2[row1, col1 + oc] = u1 - u2 - u3 + b
    return y2


@njit(parallel=True, cache=True, nogil=True)
def grad_output_transform(gy2, N, OH, OW, OC, TH, TW, G, zero, t0, t1):
    """G[4a+b, t, oc] = (A g A^T)[a, b] for the 2x2 output gradient g of tile t."""
    for t in prange(t0, t1):
        n = t // (TH * TW)
        th = (t // TW) % TH
        tw = t % TW
        oh, ow = 2 * th, 2 * tw
        down, right = oh + 1 < OH, ow + 1 < OW
        row0, row1 = n * OH + oh, n * OH + min(oh + 1, OH - 1)
        col0, col1 = ow * OC, min(ow + 1, OW - 1) * OC
        for oc in range(OC):
            g00 = gy2[row0, col0 + oc]
            g01 = gy2[row0, col1 + oc] if right else zero
            g10 = gy2[row1, col0 + oc] if down else zero
            g11 = gy2[row1, col1 + oc] if down and right else zero
            # A g: rows (g0, g0 + g1, g0 - g1, -g1); then (A g) A^T on columns alike
            for a in range(4):
                if a == 0:
                    p, q = g00, g01
                elif a == 1:
                    p, q = g00 + g10, g01 + g11
                elif a == 2:
                    p, q = g00 - g10, g01 - g11
                else:
                    p, q = -g10, -g11
                G[4 * a + 0, t, oc] = p
                G[4 * a + 1, t, oc] = p + q
                G[4 * a + 2, t, oc] = p - q
                G[4 * a + 3, t, oc] = -q
    return G
