"""Batch normalization on the CPU: the formulas of ``tinyalex/ops/batchnorm.py`` as
fused Numba loops (two sets, one per memory order: below). Letters as in the Notation
of ``tinyalex/ops/im2col.py``; every input is seen as (N, C, H, W) (a 2-D (N, C) input
as (N, C, 1, 1), a 3-D (N, C, L) as (N, C, L, 1)), in whatever memory order it lies (a
convolution's output may be channels-last), and sums are kept in float64.

Per channel c, over its M = N*H*W entries:

    forward (training)   two passes: the mean, then the variance around it (no
                         cancellation of E[x^2] - E[x]^2); a third writes
                         y = (x - mean) * inv_std * gamma + beta
    forward (eval)       one pass: y = x * scale + shift, scale = gamma * inv_std,
                         shift = beta - mean * scale, from the running statistics
    backward (training)  one pass for dbeta = sum(gy) and dgamma = sum(gy * xhat),
                         one for dx = gamma * inv_std / M * (M*gy - dbeta - xhat*dgamma)
    backward (eval)      one pass: the two sums and dx = gy * gamma * inv_std

Two sets of loops, one per memory order, chosen by ``channels_innermost``:

* channel-major memory (NCHW, (N, C, L)): one channel at a time, as above, its M
  entries in runs along H*W (channels cut into ranges for threads);
* channels innermost (a 2-D (N, C) input; a 4-D one in channels-last memory, as the
  CPU convolutions return theirs): the input is the (R, C) matrix of its R = N*H*W rows,
  and each pass walks the rows in memory order with the channels as its inner loop,
  adding into C per-channel sums at once (a vector of them: SIMD lanes are channels).
  Rows are cut into ranges for threads, each with its own sums, added in range order
  (the same result whatever the threads' timing). The passes and formulas are those
  above; y and dx come back channels-last, as x lies.

The channel-major sums may be added in any order (Numba's ``fastmath={"reassoc"}``, no
other fast-math flag: NaN and inf propagate as written), so that LLVM vectorizes them;
they are float64 sums of float32 or float64 values either way.

xhat is recomputed from x, mean and inv_std where it is needed, never stored: the
op keeps the input (which the graph holds anyway) and two numbers per channel, where
the reference keeps a whole xhat array.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from . import cpu_threads


@njit(nogil=True, cache=True, fastmath={"reassoc"})
def _stats(x, eps, mean, inv_std, var, c0, c1):
    N, _, H, W = x.shape
    M = N * H * W
    for c in range(c0, c1):
        s = 0.0
        for n in range(N):
            for h in range(H):
                for w in range(W):
                    s += x[n, c, h, w]
        m = s / M
        v = 0.0
        for n in range(N):
            for h in range(H):
                for w in range(W):
                    d = x[n, c, h, w] - m
                    v += d * d
        v /= M
        mean[c] = m
        var[c] = v
        inv_std[c] = 1.0 / np.sqrt(v + eps)


@njit(nogil=True, cache=True)
def _affine(x, scale, shift, y, c0, c1):
    """y = x * scale[c] + shift[c]."""
    N, _, H, W = x.shape
    for c in range(c0, c1):
        a, b = scale[c], shift[c]
        for n in range(N):
            for h in range(H):
                for w in range(W):
                    y[n, c, h, w] = x[n, c, h, w] * a + b


@njit(nogil=True, cache=True, fastmath={"reassoc"})
def _backward(gy, x, mean, inv_std, gamma, training, dx, dgamma, dbeta, c0, c1):
    N, _, H, W = x.shape
    M = N * H * W
    for c in range(c0, c1):
        m, r = mean[c], inv_std[c]
        sb = 0.0
        sg = 0.0
        for n in range(N):
            for h in range(H):
                for w in range(W):
                    g = gy[n, c, h, w]
                    sb += g
                    sg += g * (x[n, c, h, w] - m) * r
        dbeta[c] = sb
        dgamma[c] = sg
        k = gamma[c] * r
        if training:
            for n in range(N):
                for h in range(H):
                    for w in range(W):
                        xhat = (x[n, c, h, w] - m) * r
                        dx[n, c, h, w] = k / M * (M * gy[n, c, h, w] - sb - xhat * sg)
        else:
            for n in range(N):
                for h in range(H):
                    for w in range(W):
                        dx[n, c, h, w] = gy[n, c, h, w] * k


# -- channels innermost: x as rows (R, C) ---------------------------------------------------

@njit(nogil=True, cache=True)
def _rows_sum(x, r0, r1):
    """(C,) float64: the sum of rows r0..r1-1 of x (R, C)."""
    s = np.zeros(x.shape[1])
    for r in range(r0, r1):
        for c in range(x.shape[1]):
            s[c] += x[r, c]
    return s


@njit(nogil=True, cache=True)
def _rows_squared_deviations(x, mean, r0, r1):
    """(C,) float64: sum over rows r0..r1-1 of (x[r, c] - mean[c])**2."""
    v = np.zeros(x.shape[1])
    for r in range(r0, r1):
        for c in range(x.shape[1]):
            d = x[r, c] - mean[c]
            v[c] += d * d
    return v


@njit(nogil=True, cache=True)
def _rows_affine(x, scale, shift, y, r0, r1):
    """y[r, c] = x[r, c] * scale[c] + shift[c] for rows r0..r1-1."""
    for r in range(r0, r1):
        for c in range(x.shape[1]):
            y[r, c] = x[r, c] * scale[c] + shift[c]


@njit(nogil=True, cache=True)
def _rows_gradient_sums(gy, x, mean, r0, r1):
    """((C,), (C,)) float64: sums over rows r0..r1-1 of gy and of gy * (x - mean)
    (the latter times inv_std is dgamma's part)."""
    C = x.shape[1]
    sb, sg = np.zeros(C), np.zeros(C)
    for r in range(r0, r1):
        for c in range(C):
            g = gy[r, c]
            sb[c] += g
            sg[c] += g * (x[r, c] - mean[c])
    return sb, sg


@njit(nogil=True, cache=True)
def _rows_dx(gy, x, mean, inv_std, k, dbeta, dgamma, M, training, dx, r0, r1):
    """dx = k / M * (M*gy - dbeta - xhat * dgamma) (training) or gy * k, rows r0..r1-1;
    k = gamma * inv_std (C,)."""
    for r in range(r0, r1):
        if training:
            for c in range(x.shape[1]):
                xhat = (x[r, c] - mean[c]) * inv_std[c]
                dx[r, c] = k[c] / M * (M * gy[r, c] - dbeta[c] - xhat * dgamma[c])
        else:
            for c in range(x.shape[1]):
                dx[r, c] = gy[r, c] * k[c]


def _over_rows(R, C, call):
    """[call(r0, r1) for disjoint row ranges covering 0..R-1], run at once by as many
    threads as pay (cpu_threads), the results in range order."""
    parts = max(1, min(cpu_threads.WORKERS, R, R * C // cpu_threads.MIN_PART_ELEMENTS))
    return cpu_threads.parallel([lambda s=s: call(s.start, s.stop)
                                 for s in cpu_threads.pieces(R, parts)])


def _rows(a):
    """(R, C): the rows of a whose channels are innermost, a view; a copy in that order
    when a lies otherwise (a gradient in another memory order than its input)."""
    if a.ndim == 2:
        return np.ascontiguousarray(a)                         # (N, C)
    t = a.transpose(0, 2, 3, 1)                                 # (N, H, W, C)
    return (t if t.flags.c_contiguous else np.ascontiguousarray(t)).reshape(-1, a.shape[1])


def _like_rows(rows, shape):
    """(R, C) rows back to ``shape`` (N, C) or (N, C, H, W) (channels-last), a view."""
    if len(shape) == 2:
        return rows
    N, C, H, W = shape
    return rows.reshape(N, H, W, C).transpose(0, 3, 1, 2)


def channels_innermost(a) -> bool:
    """Whether the channels are a's innermost axis in memory: 2-D (N, C), or 4-D in
    channels-last memory (as the CPU convolutions return their output)."""
    return (a.ndim == 2 and a.strides[1] == a.itemsize) or (
        a.ndim == 4 and a.transpose(0, 2, 3, 1).flags.c_contiguous and a.shape[1] > 1)


def _as4d(a, flat):
    """(N, C) -> (N, C, 1, 1), (N, C, L) -> (N, C, L, 1): views, no copy. With ``flat``
    (the op's input is C-contiguous) every array goes as (N, C, 1, H*W) (L alike), in C
    order (a view, or a copy of a gradient lying otherwise): the loops' innermost run
    is then a channel's whole plane, one contiguous run LLVM vectorizes."""
    if flat:
        return np.ascontiguousarray(a).reshape(a.shape[0], a.shape[1], 1, -1)
    return a.reshape(a.shape + (1,) * (4 - a.ndim)) if a.ndim < 4 else a


class BatchNormCPU:
    """The fused loops above, with the reference's interface (ops/batchnorm.py)."""

    name = "batchnorm loop"
    condition = "any (N, C), (N, C, L), (N, C, H, W)"       # ``takes`` in words

    @staticmethod
    def takes(x) -> bool:
        return x.ndim in (2, 3, 4)

    def forward(self, x, gamma, beta, eps, mean=None, var=None):
        """(y, saved, batch mean, batch var): training when ``mean`` is None (the
        batch's statistics; biased var), else eval with the given ones."""
        C = x.shape[1]
        one = np.ones(C, np.float64) if gamma is None else gamma.astype(np.float64)
        zero = np.zeros(C, np.float64) if beta is None else beta.astype(np.float64)
        training = mean is None
        if channels_innermost(x):
            return self._forward_rows(x, one, zero, eps, mean, var, gamma)
        flat = x.flags.c_contiguous
        x4 = _as4d(x, flat)
        if training:
            mean, var = np.empty(C, np.float64), np.empty(C, np.float64)
            inv_std = np.empty(C, np.float64)
            cpu_threads.split(C, x.size // C, lambda c0, c1: _stats(
                x4, float(eps), mean, inv_std, var, c0, c1))
        else:
            mean, var = mean.astype(np.float64), var.astype(np.float64)
            inv_std = 1.0 / np.sqrt(var + eps)
        scale = one * inv_std                                   # (C,)
        shift = zero - mean * scale                             # (C,)
        y = np.empty(x.shape, dtype=x.dtype)
        cpu_threads.split(C, x.size // C, lambda c0, c1: _affine(
            x4, scale, shift, _as4d(y, flat), c0, c1))
        saved = (x, mean, inv_std, gamma, training)
        return y, saved, mean.astype(x.dtype), var.astype(x.dtype)

    def _forward_rows(self, x, one, zero, eps, mean, var, gamma):
        """forward on x whose channels are innermost: the loops over its rows (R, C)."""
        xr = _rows(x)                                           # (R, C), a view
        R, C = xr.shape
        if mean is None:                                        # training
            mean = sum(_over_rows(R, C, lambda r0, r1: _rows_sum(xr, r0, r1))) / R
            var = sum(_over_rows(R, C, lambda r0, r1: _rows_squared_deviations(
                xr, mean, r0, r1))) / R                         # (C,), biased
            inv_std = 1.0 / np.sqrt(var + eps)
            training = True
        else:
            mean, var = mean.astype(np.float64), var.astype(np.float64)
            inv_std = 1.0 / np.sqrt(var + eps)
            training = False
        scale = one * inv_std                                   # (C,)
        shift = zero - mean * scale                             # (C,)
        yr = np.empty((R, C), dtype=x.dtype)
        _over_rows(R, C, lambda r0, r1: _rows_affine(xr, scale, shift, yr, r0, r1))
        saved = (x, mean, inv_std, gamma, training)
        return _like_rows(yr, x.shape), saved, mean.astype(x.dtype), var.astype(x.dtype)

    def _backward_rows(self, gy, x, mean, inv_std, one, training):
        xr, gr = _rows(x), _rows(gy.astype(x.dtype, copy=False))   # (R, C) each
        R, C = xr.shape
        sums = _over_rows(R, C, lambda r0, r1: _rows_gradient_sums(gr, xr, mean, r0, r1))
        dbeta = sum(s[0] for s in sums)                         # (C,)
        dgamma = sum(s[1] for s in sums) * inv_std              # (C,)
        dxr = np.empty((R, C), dtype=x.dtype)
        _over_rows(R, C, lambda r0, r1: _rows_dx(gr, xr, mean, inv_std, one * inv_std,
                                                 dbeta, dgamma, R, training, dxr, r0, r1))
        return _like_rows(dxr, x.shape), dgamma, dbeta

    def backward(self, gy, saved):
        """(dx, dgamma, dbeta); dgamma and dbeta None without gamma."""
        x, mean, inv_std, gamma, training = saved
        C = x.shape[1]
        one = np.ones(C, np.float64) if gamma is None else gamma.astype(np.float64)
        if channels_innermost(x):
            dx, dgamma, dbeta = self._backward_rows(gy, x, mean, inv_std, one, training)
            if gamma is None:
                return dx, None, None
            return dx, dgamma.astype(gamma.dtype), dbeta.astype(gamma.dtype)
        dgamma, dbeta = np.empty(C, np.float64), np.empty(C, np.float64)
        dx = np.empty(x.shape, dtype=gy.dtype)
        flat = x.flags.c_contiguous
        g4, x4, dx4 = _as4d(gy, flat), _as4d(x, flat), _as4d(dx, flat)
        cpu_threads.split(C, x.size // C, lambda c0, c1: _backward(
            g4, x4, mean, inv_std, one, training, dx4, dgamma, dbeta, c0, c1))
        if gamma is None:
            return dx, None, None
        return dx, dgamma.astype(gamma.dtype), dbeta.astype(gamma.dtype)


BATCHNORM_CPU = BatchNormCPU()
