"""Numba loops of the CPU pooling (``pool_cpu.py`` calls them with the op's geometry;
letters as in the Notation of ``tinyalex/ops/im2col.py``).

Images are channels-last and flattened to 2-D so that every loop walks memory in
order::

    x2 = x_nhwc.reshape(N*H, W*C)          row (n, h), column (w, c)
    y2 = y_nhwc.reshape(N*OH, OW*C)        row (n, oh), column (ow, c)

(plain (N, C, H, W) memory is N*C one-channel images, C = 1). The backward loops
*add* into pixels as a gather: one pass owns one row (n, h) of the result, zeroes it,
then adds the contributions in the order of the kernel offsets (kh, kw), the order the
reference (im2col, reduce, col2im) uses, so max pooling's float32 results match it bit
for bit. Every loop covers the N images it is given (``pool_cpu.py`` hands threads
disjoint ranges of images) and releases the GIL; sums start from ``zero``, a scalar of
the arrays' dtype.
"""

from __future__ import annotations

import numpy as np
from numba import njit


@njit(cache=True, nogil=True)
def max_pool_forward(x2, N, H, W, C, KH, KW, SH, SW, PH, PW, OH, OW, y2, arg2):
    """y2 (N*OH, OW*C) = window maxima; arg2 = index kh*KW+kw of the first maximum
    (a NaN wins, the first one, as NumPy's argmax; padding is -inf and never wins)."""
    for r in range(N * OH):
        n = r // OH
        oh = r % OH
        for ow in range(OW):
            yb = ow * C
            for c in range(C):
                y2[r, yb + c] = -np.inf
                arg2[r, yb + c] = 0
            for kh in range(KH):
                h = oh * SH - PH + kh
                if h < 0 or h >= H:
                    continue
                for kw in range(KW):
                    w = ow * SW - PW + kw
                    if w < 0 or w >= W:
                        continue
                    k = kh * KW + kw
                    xb = w * C
                    for c in range(C):
                        v = x2[n * H + h, xb + c]
                        b = y2[r, yb + c]
                        if v > b or (v != v and b == b):
                            y2[r, yb + c] = v
                            arg2[r, yb + c] = k
    return y2


@njit(cache=True, nogil=True)
def max_pool_backward(gy2, arg2, N, H, W, C, KH, KW, SH, SW, PH, PW, OH, OW, gx2, zero):
    """gx2 (N*H, W*C): each output's gradient added to its window's argmax."""
    for r in range(N * H):
        n = r // H
        h = r % H
        g = gx2[r]
        g[:] = zero
        for kh in range(KH):
            t = h + PH - kh
            if t < 0 or t % SH != 0 or t // SH >= OH:
                continue
            row = n * OH + t // SH
            for kw in range(KW):
                k = kh * KW + kw
                for ow in range(OW):
                    w = ow * SW - PW + kw
                    if w < 0 or w >= W:
                        continue
                    for c in range(C):
                        if arg2[row, ow * C + c] == k:
                            g[w * C + c] += gy2[row, ow * C + c]
    return gx2


@njit(cache=True, nogil=True)
def avg_pool_forward(x2, N, H, W, C, KH, KW, SH, SW, PH, PW, OH, OW, y2, zero):
    """y2 (N*OH, OW*C) = window sums (zero padding counted) / (KH*KW)."""
    KHW = KH * KW
    if C == 1 and KH == KW == SH == SW == 2 and PH == PW == 0:
        # d2l's LeNet pooling on plain memory, written out (faster than the loops below)
        for r in range(N * OH):
            top = x2[(r // OH) * H + 2 * (r % OH)]
            bottom = x2[(r // OH) * H + 2 * (r % OH) + 1]
            y = y2[r]
            for ow in range(OW):        # (kh, kw) in the reference's order
                y[ow] = (top[2 * ow] + top[2 * ow + 1] + bottom[2 * ow]
                         + bottom[2 * ow + 1]) / 4
        return y2
    for r in range(N * OH):
        n = r // OH
        oh = r % OH
        for ow in range(OW):
            yb = ow * C
            for c in range(C):
                y2[r, yb + c] = zero
            for kh in range(KH):
                h = oh * SH - PH + kh
                if h < 0 or h >= H:
                    continue
                for kw in range(KW):
                    w = ow * SW - PW + kw
                    if w < 0 or w >= W:
                        continue
                    for c in range(C):
                        y2[r, yb + c] += x2[n * H + h, w * C + c]
            for c in range(C):
                y2[r, yb + c] /= KHW
    return y2


@njit(cache=True, nogil=True)
def avg_pool_backward(share2, N, H, W, C, KH, KW, SH, SW, PH, PW, OH, OW, gx2, zero):
    """gx2 (N*H, W*C): every window entry gets its output's share gy/(KH*KW)."""
    if C == 1 and KH == KW == SH == SW == 2 and PH == PW == 0:
        # as in avg_pool_forward: each pixel is in one window at most
        for r in range(N * H):
            g = gx2[r]
            g[:] = zero
            if r % H < 2 * OH:
                share = share2[(r // H) * OH + (r % H) // 2]
                for ow in range(OW):
                    g[2 * ow] = share[ow]
                    g[2 * ow + 1] = share[ow]
        return gx2
    for r in range(N * H):
        n = r // H
        h = r % H
        g = gx2[r]
        g[:] = zero
        for kh in range(KH):
            t = h + PH - kh
            if t < 0 or t % SH != 0 or t // SH >= OH:
                continue
            row = n * OH + t // SH
            for kw in range(KW):
                for ow in range(OW):
                    w = ow * SW - PW + kw
                    if w < 0 or w >= W:
                        continue
                    for c in range(C):
                        g[w * C + c] += share2[row, ow * C + c]
    return gx2
