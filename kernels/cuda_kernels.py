"""The GPU hot loops as CUDA kernels written with numba.cuda (letters as in the
Notation of ``tinyalex/ops/im2col.py``; memory layouts as in ``numba_pool.py``: images
channels-last, flattened to 2-D).

One launch does a whole operation: every kernel is a grid-stride loop over the
elements of its *result*, so its output is the same for any launch size, and one
thread computes one element with no atomics:

* im2col: one column entry ``cols[row, col]``;
* col2im and the pooling backwards: one input pixel, gathering the contributions of
  every window that covers it in the order of the kernel offsets (kh, kw), as the
  reference adds them;
* pooling forwards: one output, with the argmax index ``kh*KW + kw`` kept;
* ReLU, sigmoid, dropout: one element (dropout with the counter-based SplitMix64 mask
  of ``tinyalex/random.py``, recomputed in backward).

Sums start from ``zero``, a scalar of the arrays' dtype passed by the launcher, so
float32 stays float32. ``gpu_launch.py`` launches them on CuPy arrays (numba.cuda
accepts any object with ``__cuda_array_interface__``). Their logic runs in CI without a GPU under Numba's
CUDA simulator (``NUMBA_ENABLE_CUDASIM=1``) on NumPy arrays: see
``tests/test_kernels_cuda_sim.py``.
"""

from __future__ import annotations

import math

import numpy as np
from numba import cuda

GOLDEN = np.uint64(0x9E3779B97F4A7C15)
MIX1 = np.uint64(0xBF58476D1CE4E5B9)
MIX2 = np.uint64(0x94D049BB133111EB)


@cuda.jit
def im2col(x2, H, W, C, n0, n1, KH, KW, SH, SW, PH, PW, OH, OW, cols, cl):
    """cols (rows (n-n0, oh, ow), K) from x2 (N*H, W*C); columns (kh, kw, c) if cl."""
    rows, K = cols.shape
    for e in range(cuda.grid(1), rows * K, cuda.gridsize(1)):
        row, col = e // K, e % K
        if cl:
            kh, rem = col // (KW * C), col % (KW * C)
            kw, c = rem // C, rem % C
        else:
            c, kh, kw = col // (KH * KW), (col // KW) % KH, col % KW
        n = n0 + row // (OH * OW)
        oh, ow = (row // OW) % OH, row % OW
        h, w = oh * SH - PH + kh, ow * SW - PW + kw
        if 0 <= h < H and 0 <= w < W:
            cols[row, col] = x2[n * H + h, w * C + c]
        else:
            cols[row, col] = 0


@cuda.jit
def col2im(cols, H, W, C, n0, n1, KH, KW, SH, SW, PH, PW, OH, OW, gx2, cl, zero):
    """gx2 rows of images n0..n1-1 (N*H, W*C), overwritten: im2col's adjoint, gathered."""
    total = (n1 - n0) * H * W * C
    for e in range(cuda.grid(1), total, cuda.gridsize(1)):
        c = e % C
        w = (e // C) % W
        h = (e // (C * W)) % H
        n = n0 + e // (C * W * H)
        acc = zero
        for kh in range(KH):
            t = h + PH - kh
            if t < 0 or t % SH != 0 or t // SH >= OH:
                continue
            oh = t // SH
            for kw in range(KW):
                u = w + PW - kw
                if u < 0 or u % SW != 0 or u // SW >= OW:
                    continue
                row = ((n - n0) * OH + oh) * OW + u // SW
                if cl:
                    acc += cols[row, (kh * KW + kw) * C + c]
                else:
                    acc += cols[row, c * KH * KW + kh * KW + kw]
        gx2[n * H + h, w * C + c] = acc


@cuda.jit
def max_pool_forward(x2, N, H, W, C, KH, KW, SH, SW, PH, PW, OH, OW, y2, arg2):
    total = N * OH * OW * C
    for e in range(cuda.grid(1), total, cuda.gridsize(1)):
        c = e % C
        ow = (e // C) % OW
        oh = (e // (C * OW)) % OH
        n = e // (C * OW * OH)
        best = -math.inf
        best_k = 0
        for kh in range(KH):
            h = oh * SH - PH + kh
            if h < 0 or h >= H:
                continue
            for kw in range(KW):
                w = ow * SW - PW + kw
                if w < 0 or w >= W:
                    continue
                v = x2[n * H + h, w * C + c]
                if v > best or (v != v and best == best):   # the first NaN wins
                    best = v
                    best_k = kh * KW + kw
        y2[n * OH + oh, ow * C + c] = best
        arg2[n * OH + oh, ow * C + c] = best_k


@cuda.jit
def max_pool_backward(gy2, arg2, N, H, W, C, KH, KW, SH, SW, PH, PW, OH, OW, gx2, zero):
    total = N * H * W * C
    for e in range(cuda.grid(1), total, cuda.gridsize(1)):
        c = e % C
        w = (e // C) % W
        h = (e // (C * W)) % H
        n = e // (C * W * H)
        acc = zero
        for kh in range(KH):
            t = h + PH - kh
            if t < 0 or t % SH != 0 or t // SH >= OH:
                continue
            for kw in range(KW):
                u = w + PW - kw
                if u < 0 or u % SW != 0 or u // SW >= OW:
                    continue
                i, j = n * OH + t // SH, (u // SW) * C + c
                if arg2[i, j] == kh * KW + kw:
                    acc += gy2[i, j]
        gx2[n * H + h, w * C + c] = acc


@cuda.jit
def avg_pool_forward(x2, N, H, W, C, KH, KW, SH, SW, PH, PW, OH, OW, y2, zero):
    total = N * OH * OW * C
    for e in range(cuda.grid(1), total, cuda.gridsize(1)):
        c = e % C
        ow = (e // C) % OW
        oh = (e // (C * OW)) % OH
        n = e // (C * OW * OH)
        acc = zero
        for kh in range(KH):
            h = oh * SH - PH + kh
            if h < 0 or h >= H:
                continue
            for kw in range(KW):
                w = ow * SW - PW + kw
                if 0 <= w < W:
                    acc += x2[n * H + h, w * C + c]
        y2[n * OH + oh, ow * C + c] = acc / (KH * KW)


@cuda.jit
def avg_pool_backward(share2, N, H, W, C, KH, KW, SH, SW, PH, PW, OH, OW, gx2, zero):
    total = N * H * W * C
    for e in range(cuda.grid(1), total, cuda.gridsize(1)):
        c = e % C
        w = (e // C) % W
        h = (e // (C * W)) % H
        n = e // (C * W * H)
        acc = zero
        for kh in range(KH):
            t = h + PH - kh
            if t < 0 or t % SH != 0 or t // SH >= OH:
                continue
            for kw in range(KW):
                u = w + PW - kw
                if u < 0 or u % SW != 0 or u // SW >= OW:
                    continue
                acc += share2[n * OH + t // SH, (u // SW) * C + c]
        gx2[n * H + h, w * C + c] = acc


@cuda.jit
def relu_forward(x, y):
    for i in range(cuda.grid(1), x.size, cuda.gridsize(1)):
        v = x[i]
        y[i] = 0 if v <= 0 else v


@cuda.jit
def relu_backward(gy, y, gx):
    for i in range(cuda.grid(1), gy.size, cuda.gridsize(1)):
        gx[i] = gy[i] if y[i] > 0 else 0


@cuda.jit
def sigmoid_forward(x, y):
    for i in range(cuda.grid(1), x.size, cuda.gridsize(1)):
        v = x[i]
        if v >= 0:
            y[i] = 1 / (1 + math.exp(-v))
        else:
            e = math.exp(v)
            y[i] = e / (1 + e)


@cuda.jit
def sigmoid_backward(gy, y, gx):
    for i in range(cuda.grid(1), gy.size, cuda.gridsize(1)):
        gx[i] = gy[i] * y[i] * (1 - y[i])


@cuda.jit
def sgd_update(param, grad, lr):
    for i in range(cuda.grid(1), param.size, cuda.gridsize(1)):
        param[i] -= lr * grad[i]


@cuda.jit
def dropout(x, seed, threshold, scale, y):
    for i in range(cuda.grid(1), x.size, cuda.gridsize(1)):
        z = seed + np.uint64(i + 1) * GOLDEN
        z = (z ^ (z >> np.uint64(30))) * MIX1
        z = (z ^ (z >> np.uint64(27))) * MIX2
        z = z ^ (z >> np.uint64(31))
        y[i] = x[i] * scale if (z >> np.uint64(40)) >= threshold else 0
