"""The CPU hot loops, compiled by Numba (letters as in the Notation of
``tinyalex/ops/im2col.py``).

Nothing here checks its arguments: these functions are only called by
``kernels/cpu.py``, which validates every shape, dtype and range first (a compiled
loop does not check bounds). Images are *channels-last* and flattened to 2-D so that
every kernel walks memory in order::

    x2  = x_nhwc.reshape(N*H, W*C)          row (n, h), column (w, c)
    y2  = y_nhwc.reshape(N*OH, OW*C)        row (n, oh), column (ow, c)
    cols: (rows (n, oh, ow), KH*KW*C)       columns (kh, kw, c) when ``cl`` is true,
                                            (c, kh, kw) (the reference layout) when false

Every kernel that *adds* into a pixel (col2im, the pooling backwards) is written as a
gather: one parallel iteration owns one row (n, h) of the result, zeroes it, then
adds the contributions in the order of the kernel offsets (kh, kw), the order the
reference uses, so no two threads ever write the same element and float32 results
match the reference bit for bit.

Dropout's mask comes from SplitMix64, a counter-based generator: element ``i`` of a
call with seed ``s`` is kept when ``mix64(s + (i+1)*GOLDEN) >> 40 >= threshold``. The
same formula is written out with NumPy in ``tinyalex/random.py`` (the reference) and
for CUDA in ``kernels/cuda_kernels.py``, so a seed gives one mask everywhere.

Kernels that sum start from ``zero``, a scalar of the arrays' dtype (the CUDA twins in
``cuda_kernels.py`` take the same arguments, so one set of checked wrappers,
``fastset.py``, drives both). Each kernel is compiled for float32 and float64 C-contiguous arrays only (``cache=True``
keeps the machine code between runs in ``__pycache__``).
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

GOLDEN = np.uint64(0x9E3779B97F4A7C15)
MIX1 = np.uint64(0xBF58476D1CE4E5B9)
MIX2 = np.uint64(0x94D049BB133111EB)
S30, S27, S31, S40 = np.uint64(30), np.uint64(27), np.uint64(31), np.uint64(40)


# -- im2col and col2im ------------------------------------------------------------------

@njit(parallel=True, cache=True)
def im2col(x2, H, W, C, n0, n1, KH, KW, SH, SW, PH, PW, OH, OW, cols, cl):
    """Windows of images n0..n1-1 of x2 (N*H, W*C) into cols ((n1-n0)*OH*OW, KH*KW*C)."""
    KHW = KH * KW
    for r in prange((n1 - n0) * OH):
        n = n0 + r // OH
        oh = r % OH
        for ow in range(OW):
            row = r * OW + ow
            w0 = ow * SW - PW                       # left edge of the window
            kw_lo = max(0, -w0)                     # kernel columns inside the image
            kw_hi = min(KW, W - w0)
            for kh in range(KH):
                h = oh * SH - PH + kh
                inside = 0 <= h < H and kw_lo < kw_hi
                if cl:
                    base = kh * KW * C
                    out = cols[row, base:base + KW * C]     # this kernel row's KW*C entries
                    if not inside:
                        out[:] = 0
                        continue
                    out[:kw_lo * C] = 0
                    src = (w0 + kw_lo) * C                  # (w, c) run is contiguous in x2
                    out[kw_lo * C:kw_hi * C] = x2[n * H + h, src:src + (kw_hi - kw_lo) * C]
                    out[kw_hi * C:] = 0
                else:
                    for kw in range(KW):
                        w = w0 + kw
                        ok = inside and kw_lo <= kw < kw_hi
                        for c in range(C):
                            cols[row, c * KHW + kh * KW + kw] = \
                                x2[n * H + h, w * C + c] if ok else 0
    return cols


@njit(parallel=True, cache=True)
def im2col_kmajor(x2, H, W, C, n0, n1, KH, KW, SH, SW, PH, PW, OH, OW, colsT):
    """The transpose of im2col's channels-last columns: colsT (KH*KW*C, (n1-n0)*OH*OW).

    For layers with few channels (C*KW small: the first layer of AlexNet and LeNet) a
    row of cols is a few short runs, while a row of colsT is one long run along ow:
    colsT[(kh, kw, c), (n, oh, ow)] = x[n, oh*SH - PH + kh, ow*SW - PW + kw, c]."""
    for r in prange((n1 - n0) * OH):
        n = n0 + r // OH
        oh = r % OH
        o0 = r * OW                                 # first output column of this row
        for kh in range(KH):
            h = oh * SH - PH + kh
            hin = 0 <= h < H
            hrow = n * H + min(max(h, 0), H - 1)
            for kw in range(KW):
                # outputs ow whose window column kw lies inside the image: lo <= ow < hi
                lo = max(0, (PW - kw + SW - 1) // SW)
                hi = min(OW, (W - 1 + PW - kw) // SW + 1)
                if not hin:
                    lo, hi = 0, 0
                for c in range(C):
                    j = (kh * KW + kw) * C + c
                    for ow in range(0, lo):
                        colsT[j, o0 + ow] = 0
                    base = (lo * SW - PW + kw) * C + c
                    for ow in range(max(lo, 0), max(hi, lo)):
                        colsT[j, o0 + ow] = x2[hrow, base + (ow - lo) * SW * C]
                    for ow in range(max(hi, lo), OW):
                        colsT[j, o0 + ow] = 0
    return colsT


@njit(parallel=True, cache=True)
def col2im(cols, H, W, C, n0, n1, KH, KW, SH, SW, PH, PW, OH, OW, gx2, cl, zero):
    """The adjoint of im2col: rows of images n0..n1-1 of gx2 (N*H, W*C), overwritten."""
    KHW = KH * KW
    for r in prange((n1 - n0) * H):
        n = n0 + r // H
        h = r % H
        g = gx2[n * H + h]
        g[:] = zero
        for kh in range(KH):
            t = h + PH - kh                         # = oh*SH for the window row oh
            if t < 0 or t % SH != 0 or t // SH >= OH:
                continue
            oh = t // SH
            for kw in range(KW):
                for ow in range(OW):
                    w = ow * SW - PW + kw
                    if w < 0 or w >= W:
                        continue
                    row = ((n - n0) * OH + oh) * OW + ow
                    if cl:
                        base = (kh * KW + kw) * C
                        for c in range(C):
                            g[w * C + c] += cols[row, base + c]
                    else:
                        for c in range(C):
                            g[w * C + c] += cols[row, c * KHW + kh * KW + kw]
    return gx2


# -- pooling ----------------------------------------------------------------------------

@njit(parallel=True, cache=True)
def max_pool_forward(x2, N, H, W, C, KH, KW, SH, SW, PH, PW, OH, OW, y2, arg2):
    """y2 (N*OH, OW*C) = window maxima; arg2 = index kh*KW+kw of the first maximum
    (a NaN wins, the first one, as NumPy's argmax; padding is -inf and never wins)."""
    for r in prange(N * OH):
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


@njit(parallel=True, cache=True)
def max_pool_backward(gy2, arg2, N, H, W, C, KH, KW, SH, SW, PH, PW, OH, OW, gx2, zero):
    """gx2 (N*H, W*C): each output's gradient added to its window's argmax."""
    for r in prange(N * H):
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


@njit(parallel=True, cache=True)
def avg_pool_forward(x2, N, H, W, C, KH, KW, SH, SW, PH, PW, OH, OW, y2, zero):
    """y2 (N*OH, OW*C) = window sums (zero padding counted) / (KH*KW)."""
    KHW = KH * KW
    if C == 1 and KH == KW == SH == SW == 2 and PH == PW == 0:
        # d2l's LeNet pooling on plain memory, written out: 4x faster than the loops below
        for r in prange(N * OH):
            top = x2[(r // OH) * H + 2 * (r % OH)]
            bottom = x2[(r // OH) * H + 2 * (r % OH) + 1]
            y = y2[r]
            for ow in range(OW):        # (kh, kw) in the reference's order
                y[ow] = (top[2 * ow] + top[2 * ow + 1] + bottom[2 * ow]
                         + bottom[2 * ow + 1]) / 4
        return y2
    for r in prange(N * OH):
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


@njit(parallel=True, cache=True)
def avg_pool_backward(share2, N, H, W, C, KH, KW, SH, SW, PH, PW, OH, OW, gx2, zero):
    """gx2 (N*H, W*C): every window entry gets its output's share gy/(KH*KW)."""
    if C == 1 and KH == KW == SH == SW == 2 and PH == PW == 0:
        # as in avg_pool_forward: each pixel is in one window at most
        for r in prange(N * H):
            g = gx2[r]
            g[:] = zero
            if r % H < 2 * OH:
                share = share2[(r // H) * OH + (r % H) // 2]
                for ow in range(OW):
                    g[2 * ow] = share[ow]
                    g[2 * ow + 1] = share[ow]
        return gx2
    for r in prange(N * H):
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


# -- elementwise (1-D views of whole arrays) --------------------------------------------

@njit(parallel=True, cache=True)
def relu_forward(x, y):
    for i in prange(x.size):
        v = x[i]
        y[i] = 0 if v <= 0 else v                   # NaN stays NaN, as np.maximum
    return y


@njit(parallel=True, cache=True)
def relu_backward(gy, y, gx):
    for i in prange(gy.size):
        gx[i] = gy[i] if y[i] > 0 else 0
    return gx


@njit(parallel=True, cache=True)
def sigmoid_forward(x, y):
    for i in prange(x.size):
        v = x[i]
        if v >= 0:
            y[i] = 1 / (1 + np.exp(-v))
        else:
            e = np.exp(v)
            y[i] = e / (1 + e)
    return y


@njit(parallel=True, cache=True)
def sigmoid_backward(gy, y, gx):
    for i in prange(gy.size):
        gx[i] = gy[i] * y[i] * (1 - y[i])
    return gx


@njit(parallel=True, cache=True)
def sgd_update(param, grad, lr):
    """In place: param -= lr * grad (no temporary the size of the parameter)."""
    for i in prange(param.size):
        param[i] -= lr * grad[i]
    return param


@njit(cache=True, inline="always")
def _keep(seed, i, threshold):
    z = seed + np.uint64(i + 1) * GOLDEN
    z = (z ^ (z >> S30)) * MIX1
    z = (z ^ (z >> S27)) * MIX2
    z = z ^ (z >> S31)
    return (z >> S40) >= threshold


@njit(parallel=True, cache=True)
def dropout(x, seed, threshold, scale, y):
    """y = x * scale where the element is kept, else 0 (forward and backward alike)."""
    for i in prange(x.size):
        y[i] = x[i] * scale if _keep(seed, i, threshold) else 0
    return y
