"""Batch normalization on the CPU: the formulas of ``tinyalex/ops/batchnorm.py`` as
fused Numba loops, one channel at a time (channels cut into ranges for threads,
``cpu_threads.split``). Letters as in the Notation of ``tinyalex/ops/im2col.py``;
every input is seen as (N, C, H, W) (a 2-D (N, C) input as (N, C, 1, 1), a 3-D
(N, C, L) as (N, C, L, 1)), in whatever memory order it lies (a convolution's output
may be channels-last), and sums are kept in float64.

Per channel c, over its M = N*H*W entries:

    forward (training)   two passes: the mean, then the variance around it (no
                         cancellation of E[x^2] - E[x]^2); a third writes
                         y = (x - mean) * inv_std * gamma + beta
    forward (eval)       one pass: y = x * scale + shift, scale = gamma * inv_std,
                         shift = beta - mean * scale, from the running statistics
    backward (training)  one pass for dbeta = sum(gy) and dgamma = sum(gy * xhat),
                         one for dx = gamma * inv_std / M * (M*gy - dbeta - xhat*dgamma)
    backward (eval)      one pass: the two sums and dx = gy * gamma * inv_std

The loops take channel-major memory (NCHW, (N, C, L)). Where the channels are the
innermost axis instead (a 2-D (N, C) input; a 4-D one in channels-last memory, as the
CPU convolutions return theirs) they would stride through memory, and NumPy's
reductions in the reference do better: ``takes`` says no and the chooser
(ops/batchnorm.py) runs the reference. (A NumPy version over the (N*H*W, C) matrix of
rows was tried and was slower than the reference there.)

xhat is recomputed from x, mean and inv_std where it is needed, never stored: the
op keeps the input (which the graph holds anyway) and two numbers per channel, where
the reference keeps a whole xhat array.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from . import cpu_threads


@njit(nogil=True, cache=True)
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


@njit(nogil=True, cache=True)
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


def channels_innermost(a) -> bool:
    """Whether the channels are a's innermost axis in memory: 2-D (N, C), or 4-D in
    channels-last memory (as the CPU convolutions return their output)."""
    return (a.ndim == 2 and a.strides[1] == a.itemsize) or (
        a.ndim == 4 and a.transpose(0, 2, 3, 1).flags.c_contiguous and a.shape[1] > 1)


def _as4d(a):
    """(N, C) -> (N, C, 1, 1), (N, C, L) -> (N, C, L, 1): views, no copy."""
    return a.reshape(a.shape + (1,) * (4 - a.ndim)) if a.ndim < 4 else a


class BatchNormCPU:
    """The fused loops above, with the reference's interface (ops/batchnorm.py)."""

    name = "batchnorm loop"
    condition = "channel-major memory (NCHW, (N, C, L))"    # ``takes`` in words

    @staticmethod
    def takes(x) -> bool:
        return x.ndim in (3, 4) and not channels_innermost(x)

    def forward(self, x, gamma, beta, eps, mean=None, var=None):
        """(y, saved, batch mean, batch var): training when ``mean`` is None (the
        batch's statistics; biased var), else eval with the given ones."""
        C = x.shape[1]
        x4 = _as4d(x)
        one = np.ones(C, np.float64) if gamma is None else gamma.astype(np.float64)
        zero = np.zeros(C, np.float64) if beta is None else beta.astype(np.float64)
        training = mean is None
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
            x4, scale, shift, _as4d(y), c0, c1))
        saved = (x, mean, inv_std, gamma, training)
        return y, saved, mean.astype(x.dtype), var.astype(x.dtype)

    def backward(self, gy, saved):
        """(dx, dgamma, dbeta); dgamma and dbeta None without gamma."""
        x, mean, inv_std, gamma, training = saved
        C = x.shape[1]
        one = np.ones(C, np.float64) if gamma is None else gamma.astype(np.float64)
        dgamma, dbeta = np.empty(C, np.float64), np.empty(C, np.float64)
        dx = np.empty(x.shape, dtype=gy.dtype)
        cpu_threads.split(C, x.size // C, lambda c0, c1: _backward(
            _as4d(gy), _as4d(x), mean, inv_std, one, training, _as4d(dx), dgamma,
            dbeta, c0, c1))
        if gamma is None:
            return dx, None, None
        return dx, dgamma.astype(gamma.dtype), dbeta.astype(gamma.dtype)


BATCHNORM_CPU = BatchNormCPU()
