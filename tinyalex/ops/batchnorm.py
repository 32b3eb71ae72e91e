"""Batch normalization: forward, and backward in closed form, as one op.

Notation (the letters of ``tinyalex/ops/im2col.py``): the input is (N, C) for
BatchNorm1d, (N, C, L) for BatchNorm1d on sequences, (N, C, H, W) for BatchNorm2d.
Every channel c is normalized over all its M = N (* L or * H*W) entries:

    mean[c]  = sum(x[:, c]) / M
    var[c]   = sum((x[:, c] - mean[c])**2) / M          (biased: what normalizes)
    xhat     = (x - mean) * inv_std,   inv_std = 1 / sqrt(var + eps)
    y        = gamma * xhat + beta

In eval mode (or with running statistics given and ``training`` False) mean and var
are the running estimates, constants to backward.

Backward in training mode, from the chain rule through mean and var (the standard
derivation; every sum is over a channel's M entries):

    dbeta    = sum(gy)
    dgamma   = sum(gy * xhat)
    dx       = gamma * inv_std / M * (M * gy - dbeta - xhat * dgamma)

so backward needs only xhat and inv_std, kept by forward, and three reductions: no
graph of many small ops. In eval mode ``dx = gamma * inv_std * gy``.

The running statistics follow PyTorch: ``running = (1 - momentum) * running +
momentum * batch``, with the batch variance *unbiased* (times M / (M - 1)) for the
running estimate, though the biased one normalizes; ``momentum=None`` makes it the
cumulative mean over ``num_batches_tracked`` batches.
"""

from __future__ import annotations

import numpy as np

import tinyalex.kernels as kernels
from tinyalex.kernels import batchnorm_cpu, batchnorm_gpu
from tinyalex.kernels.layout import FLOATS

from .. import backend as B
from ..tensor import Function, Tensor, no_grad
from ..checks import check_floating


def channel_axes(ndim: int) -> tuple:
    """The axes a channel's statistics are taken over: every axis but 1 (C)."""
    return (0,) + tuple(range(2, ndim))


def channel_shape(ndim: int, C: int) -> tuple:
    """(1, C, 1, 1) for a 4-D input, (1, C) for a 2-D one: per-channel values broadcast."""
    return (1, C) + (1,) * (ndim - 2)


# -- [simple version] the readable reference ----------------------------------------------

class BatchNormReference:
    """The formulas of the module docstring in NumPy (CuPy alike), one line each."""

    name = "batchnorm (reference)"

    def forward(self, x, gamma, beta, eps, mean=None, var=None):
        """(y, saved, batch mean, batch var): training (the batch's mean and biased
        var, (C,)) when ``mean`` is None, else eval with the given mean and var."""
        xp = B.get_array_module(x)
        axes, shape = channel_axes(x.ndim), channel_shape(x.ndim, x.shape[1])
        training = mean is None
        if training:
            mean = x.mean(axis=axes)                                    # (C,)
            centred = x - mean.reshape(shape)                           # like x
            var = (centred * centred).mean(axis=axes)                   # (C,) biased
        else:
            centred = x - mean.reshape(shape).astype(x.dtype)           # like x
        inv_std = (1 / xp.sqrt(var + eps)).astype(x.dtype, copy=False)  # (C,)
        xhat = centred * inv_std.reshape(shape)                         # like x
        y = xhat if gamma is None else xhat * gamma.reshape(shape) + beta.reshape(shape)
        return y.astype(x.dtype, copy=False), (xhat, inv_std, gamma, training), mean, var

    def backward(self, gy, saved):
        """(dx, dgamma, dbeta) of the module docstring's closed form; dgamma and dbeta
        None without gamma."""
        xhat, inv_std, gamma, training = saved
        axes, shape = channel_axes(gy.ndim), channel_shape(gy.ndim, gy.shape[1])
        M = gy.size // gy.shape[1]
        dbeta = gy.sum(axis=axes)                                       # (C,)
        dgamma = (gy * xhat).sum(axis=axes)                             # (C,)
        scale = inv_std if gamma is None else gamma * inv_std           # (C,)
        if training:
            dx = (scale / M).reshape(shape) * (M * gy - dbeta.reshape(shape)
                                               - xhat * dgamma.reshape(shape))
        else:
            dx = gy * scale.reshape(shape)
        if gamma is None:
            return dx.astype(gy.dtype, copy=False), None, None
        return (dx.astype(gy.dtype, copy=False), dgamma.astype(gamma.dtype, copy=False),
                dbeta.astype(gamma.dtype, copy=False))


REFERENCE = BatchNormReference()


# -- the one place that chooses the algorithm ---------------------------------------------

def batch_norm_algorithm(x):
    """What computes batch normalization of the array ``x``: the first row that
    matches::

        TINYALEX_KERNELS=reference, or dtype not float32/64   the reference above
        backend cupy                                          batchnorm kernel (CUDA C)
        otherwise                                             batchnorm loop (Numba)

    The kernel (kernels/batchnorm_gpu.py, cuda/batchnorm.cu) takes every memory order
    as it lies, its per-channel sums two-stage reductions. The loop
    (kernels/batchnorm_cpu.py) reads the input two or three times, writes once and
    keeps no xhat (the input and two numbers per channel instead), where the reference
    makes several whole-size temporaries: channel by channel in channel-major memory
    (NCHW, (N, C, L)), row by row with the channels innermost ((N, C), channels-last).
    """
    if kernels.get_mode() == "reference" or x.dtype not in FLOATS or x.size == 0:
        return REFERENCE
    if B.backend_of(x) == "cupy":
        return batchnorm_gpu.for_cupy()
    fast = batchnorm_cpu.BATCHNORM_CPU
    return fast if fast.takes(x) else REFERENCE


# -- the op ---------------------------------------------------------------------------------

class BatchNorm(Function):
    """``y = gamma * (x - mean) / sqrt(var + eps) + beta`` per channel, as one op.

    Inputs: ``x`` and, when affine, ``gamma`` and ``beta`` (C,). In training mode
    mean and var are the batch's, and ``self.batch_mean`` / ``self.batch_var`` (biased)
    are left for the caller's running statistics; otherwise ``mean`` and ``var``
    (given to ``__init__``, the running ones) are used as constants."""

    torch_name = "NativeBatchNormBackward0"

    def __init__(self, training: bool, eps: float, mean=None, var=None, where="batch_norm"):
        self.training, self.eps, self.mean, self.var = training, eps, mean, var
        self.where = where

    def forward(self, x, gamma=None, beta=None):
        check_floating(x.dtype, self.where)
        self.algorithm = batch_norm_algorithm(x)
        y, saved, self.batch_mean, self.batch_var = self.algorithm.forward(
            x, gamma, beta, self.eps,
            None if self.training else self.mean, None if self.training else self.var)
        if any(self.needs_input_grad):
            self.saved = saved
        return y

    def backward(self, gy):
        dx, dgamma, dbeta = self.algorithm.backward(gy, self.saved)
        return dx if dgamma is None else (dx, dgamma, dbeta)


def check_batch_norm_input(x, C: int | None, training: bool, where: str,
                           ranks=(2, 3, 4), layout="(N, C), (N, C, L) or (N, C, H, W)"):
    """The errors PyTorch gives, with the layer, the argument and the shapes named."""
    shape = tuple(x.shape)
    if len(shape) not in ranks:
        raise ValueError(f"{where}: expected a {' or '.join(f'{r}-D' for r in ranks)} "
                         f"input {layout}, got a {len(shape)}-D input of shape {shape}")
    if C is not None and shape[1] != C:
        raise ValueError(f"{where}: the input has {shape[1]} channels (shape {shape}) "
                         f"but the layer was built for num_features={C}")
    M = int(np.prod(shape)) // shape[1] if shape[1] else 0
    if training and M <= 1:
        raise ValueError(f"{where}: expected more than 1 value per channel when training, "
                         f"got input of shape {shape}; use a batch of 2 or more, or call "
                         f".eval() to use the running statistics")


def batch_norm(input, running_mean=None, running_var=None, weight=None, bias=None,
               training=False, momentum=0.1, eps=1e-5, num_batches_tracked=None,
               where="batch_norm"):
    """PyTorch's ``F.batch_norm``: normalize ``input`` per channel; in training mode
    update ``running_mean`` / ``running_var`` (Tensors, in place) when given.

    ``momentum=None`` averages cumulatively over ``num_batches_tracked`` (a Tensor the
    caller has already counted this batch in), as PyTorch's BatchNorm layers do."""
    x = input if isinstance(input, Tensor) else Tensor(input)
    check_batch_norm_input(x, None, training, where)
    if not training and (running_mean is None or running_var is None):
        raise ValueError(f"{where}: running_mean and running_var are needed when not "
                         "training (or pass training=True)")
    fn = BatchNorm(training, float(eps),
                   None if training else running_mean.array,
                   None if training else running_var.array, where=where)
    y = fn(x) if weight is None else fn(x, weight, bias)
    if training and running_mean is not None:
        M = x.numel() // x.shape[1]
        factor = (1.0 / float(num_batches_tracked.array) if momentum is None
                  else float(momentum))
        unbiased = fn.batch_var * (M / (M - 1))
        with no_grad():
            rm, rv = running_mean.array, running_var.array
            rm[...] = ((1 - factor) * rm + factor * fn.batch_mean).astype(rm.dtype)
            rv[...] = ((1 - factor) * rv + factor * unbiased).astype(rv.dtype)
    return y
