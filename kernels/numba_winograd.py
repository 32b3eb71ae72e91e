"""Numba loops of the Winograd F(2x2, 3x3) convolution (see ``winograd.py``).

Images are channels-last and flattened as in ``numba_kernels.py``: ``x2`` is
(N*H, W*C), row (n, h), column (w, c). A *tile* t = (n, th, tw) is the 4x4 input patch
whose top-left corner is (2*th - PH, 2*tw - PW); it yields the 2x2 outputs
(2*th + i, 2*tw + j). Transformed tiles are stored as (16, T, C): plane k = 4*a + b
holds element (a, b) of every tile's 4x4 transform, so each plane is one GEMM operand.
Nothing here checks its arguments; ``winograd.py`` does.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange


@njit(parallel=True, cache=True)
def input_transform(x2, N, H, W, C, PH, PW, TH, TW, V, zero):
    """V[4a+b, t, c] = (B^T d B)[a, b] for the 4x4 input patch d of tile t, channel c.

    Written out element by element with the loop over c innermost, so that it runs
    along memory and vectorises; positions outside the image read a clamped address
    and select ``zero`` (a loop-invariant choice)."""
    for t in prange(N * TH * TW):
        n = t // (TH * TW)
        th = (t // TW) % TH
        tw = t % TW
        h0, w0 = 2 * th - PH, 2 * tw - PW
        r0, r1 = n * H + min(max(h0, 0), H - 1), n * H + min(max(h0 + 1, 0), H - 1)
        r2, r3 = n * H + min(max(h0 + 2, 0), H - 1), n * H + min(max(h0 + 3, 0), H - 1)
        q0, q1 = min(max(w0, 0), W - 1) * C, min(max(w0 + 1, 0), W - 1) * C
        q2, q3 = min(max(w0 + 2, 0), W - 1) * C, min(max(w0 + 3, 0), W - 1) * C
        a0, a1, a2, a3 = 0 <= h0 < H, 0 <= h0 + 1 < H, 0 <= h0 + 2 < H, 0 <= h0 + 3 < H
        b0, b1, b2, b3 = 0 <= w0 < W, 0 <= w0 + 1 < W, 0 <= w0 + 2 < W, 0 <= w0 + 3 < W
        for c in range(C):
            d00 = x2[r0, q0 + c] if a0 and b0 else zero
            d01 = x2[r0, q1 + c] if a0 and b1 else zero
            d02 = x2[r0, q2 + c] if a0 and b2 else zero
            d03 = x2[r0, q3 + c] if a0 and b3 else zero
            d10 = x2[r1, q0 + c] if a1 and b0 else zero
            d11 = x2[r1, q1 + c] if a1 and b1 else zero
            d12 = x2[r1, q2 + c] if a1 and b2 else zero
            d13 = x2[r1, q3 + c] if a1 and b3 else zero
            d20 = x2[r2, q0 + c] if a2 and b0 else zero
            d21 = x2[r2, q1 + c] if a2 and b1 else zero
            d22 = x2[r2, q2 + c] if a2 and b2 else zero
            d23 = x2[r2, q3 + c] if a2 and b3 else zero
            d30 = x2[r3, q0 + c] if a3 and b0 else zero
            d31 = x2[r3, q1 + c] if a3 and b1 else zero
            d32 = x2[r3, q2 + c] if a3 and b2 else zero
            d33 = x2[r3, q3 + c] if a3 and b3 else zero
            # B^T d: rows (d0 - d2, d1 + d2, d2 - d1, d1 - d3)
            e00, e01, e02, e03 = d00 - d20, d01 - d21, d02 - d22, d03 - d23
            e10, e11, e12, e13 = d10 + d20, d11 + d21, d12 + d22, d13 + d23
            e20, e21, e22, e23 = d20 - d10, d21 - d11, d22 - d12, d23 - d13
            e30, e31, e32, e33 = d10 - d30, d11 - d31, d12 - d32, d13 - d33
            # (B^T d) B: the same combination of columns
            V[0, t, c], V[1, t, c], V[2, t, c], V[3, t, c] = \
                e00 - e02, e01 + e02, e02 - e01, e01 - e03
            V[4, t, c], V[5, t, c], V[6, t, c], V[7, t, c] = \
                e10 - e12, e11 + e12, e12 - e11, e11 - e13
            V[8, t, c], V[9, t, c], V[10, t, c], V[11, t, c] = \
                e20 - e22, e21 + e22, e22 - e21, e21 - e23
            V[12, t, c], V[13, t, c], V[14, t, c], V[15, t, c] = \
                e30 - e32, e31 + e32, e32 - e31, e31 - e33
    return V


@njit(parallel=True, cache=True)
def output_transform(M, N, OH, OW, OC, TH, TW, bias, use_bias, y2):
    """y2 (N*OH, OW*OC) = A^T m A (+ bias) for every tile's 4x4 product m, cropped."""
    for t in prange(N * TH * TW):
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


@njit(parallel=True, cache=True)
def grad_output_transform(gy2, N, OH, OW, OC, TH, TW, G, zero):
    """G[4a+b, t, oc] = (A g A^T)[a, b] for the 2x2 output gradient g of tile t."""
    for t in prange(N * TH * TW):
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
