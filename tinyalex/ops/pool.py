"""Max and average pooling (letters as in the Notation of ``tinyalex/ops/im2col.py``).

Pooling is a convolution without weights, applied to each channel alone: treat
the (N, C, H, W) input as N*C one-channel images, lay every window out as a row
with :func:`~tinyalex.ops.im2col.im2col`, and reduce each row (max or mean). The
backward pass sends each output's gradient to the window entries it came from and
adds the windows back with :func:`~tinyalex.ops.im2col.col2im`, im2col's adjoint.

Max pooling pads with -inf (padding never wins) and remembers the argmax of each
window, so backward needs no search. Average pooling pads with zeros and divides
by KH*KW, the padding counted (PyTorch's default ``count_include_pad=True``).
"""

from __future__ import annotations

import numpy as np

import tinyalex.kernels as kernels

from .. import backend as B
from ..tensor import Function
from ..checks import (check_bytes, check_floating, check_nonempty, check_rank,
                      check_window, pair)
from .im2col import col2im, conv_output_size, im2col


# -- readable references ------------------------------------------------------------------

def max_pool2d_forward_reference(x, KH, KW, SH, SW, PH, PW):
    """(N, C, H, W) -> y (N, C, OH, OW) and argmax (N*C*OH*OW,): index in window."""
    xp = B.get_array_module(x)
    N, C, H, W = x.shape
    OH, OW = conv_output_size(H, KH, SH, PH), conv_output_size(W, KW, SW, PW)
    # (N*C*OH*OW, KH*KW): one row per window of every channel of every image
    cols = im2col(x.reshape(N * C, 1, H, W), KH, KW, SH, SW, PH, PW, pad_value=-np.inf)
    argmax = cols.argmax(axis=1)                               # (N*C*OH*OW,)
    y = cols[xp.arange(cols.shape[0]), argmax]                 # (N*C*OH*OW,)
    return y.reshape(N, C, OH, OW), argmax


def max_pool2d_backward_reference(gy, argmax, x_shape, KH, KW, SH, SW, PH, PW):
    """Each output gradient goes to its window's argmax; windows add up (col2im)."""
    xp = B.get_array_module(gy)
    N, C, H, W = x_shape
    gcols = xp.zeros((argmax.shape[0], KH * KW), dtype=gy.dtype)   # (N*C*OH*OW, KH*KW)
    gcols[xp.arange(argmax.shape[0]), argmax] = gy.reshape(-1)
    gx = col2im(gcols, (N * C, 1, H, W), KH, KW, SH, SW, PH, PW)   # (N*C, 1, H, W)
    return gx.reshape(N, C, H, W)


def avg_pool2d_forward_reference(x, KH, KW, SH, SW, PH, PW):
    N, C, H, W = x.shape
    OH, OW = conv_output_size(H, KH, SH, PH), conv_output_size(W, KW, SW, PW)
    cols = im2col(x.reshape(N * C, 1, H, W), KH, KW, SH, SW, PH, PW)   # (N*C*OH*OW, KH*KW)
    return cols.mean(axis=1).reshape(N, C, OH, OW)


def avg_pool2d_backward_reference(gy, x_shape, KH, KW, SH, SW, PH, PW):
    """Each window entry gets gy / (KH*KW); col2im adds overlapping windows."""
    xp = B.get_array_module(gy)
    N, C, H, W = x_shape
    share = gy.reshape(-1, 1) / (KH * KW)                              # (N*C*OH*OW, 1)
    gcols = xp.broadcast_to(share, (share.shape[0], KH * KW))           # (N*C*OH*OW, KH*KW)
    gx = col2im(gcols, (N * C, 1, H, W), KH, KW, SH, SW, PH, PW)       # (N*C, 1, H, W)
    return gx.reshape(N, C, H, W)


# -- the ops ------------------------------------------------------------------------------

class _Pool2d(Function):
    kind = "pool"

    def __init__(self, kernel_size, stride=None, padding=0, where=None):
        self.where = where or f"{self.kind}2d"
        self.KH, self.KW = pair(kernel_size, "kernel_size", self.where, 1)
        stride = (self.KH, self.KW) if stride is None else stride
        self.SH, self.SW = pair(stride, "stride", self.where, 1)
        self.PH, self.PW = pair(padding, "padding", self.where, 0)
        if 2 * self.PH > self.KH or 2 * self.PW > self.KW:
            raise ValueError(f"{self.where}: padding {(self.PH, self.PW)} must be at most "
                             f"half of kernel_size {(self.KH, self.KW)}")

    @property
    def geometry(self):
        return self.KH, self.KW, self.SH, self.SW, self.PH, self.PW

    def _check(self, x):
        check_rank(x.shape, 4, self.where, "(N, C, H, W)")
        check_nonempty(x.shape, self.where)
        check_floating(x.dtype, self.where)
        _, _, H, W = x.shape
        check_window(self.where, H, W, self.KH, self.KW, self.PH, self.PW)
        check_pool_memory(self.where, x.shape, *self.geometry, x.dtype.itemsize,
                          kernels.get_mode() == "reference")


class MaxPool2d(_Pool2d):
    kind = "max_pool"

    def forward(self, x):
        self._check(x)
        self.k = kernels.select(x)
        y, argmax = self.k.max_pool2d_forward(x, *self.geometry)
        if self.needs_input_grad[0]:
            self.argmax, self.x_shape = argmax, x.shape
        return y

    def backward(self, gy):
        return self.k.max_pool2d_backward(gy, self.argmax, self.x_shape, *self.geometry)


class AvgPool2d(_Pool2d):
    kind = "avg_pool"

    def forward(self, x):
        self._check(x)
        self.k = kernels.select(x)
        self.x_shape = x.shape
        return self.k.avg_pool2d_forward(x, *self.geometry)

    def backward(self, gy):
        return self.k.avg_pool2d_backward(gy, self.x_shape, *self.geometry)


def max_pool2d(x, kernel_size, stride=None, padding=0):
    """Max over each KHxKW window (stride defaults to kernel_size), -inf padding."""
    return MaxPool2d(kernel_size, stride, padding)(x)


def avg_pool2d(x, kernel_size, stride=None, padding=0):
    """Mean over each KHxKW window, zero padding counted (PyTorch's default)."""
    return AvgPool2d(kernel_size, stride, padding)(x)


def check_pool_memory(where, x_shape, KH, KW, SH, SW, PH, PW, itemsize,
                      windows: bool = True) -> None:
    """Pooling's output must fit, and with the reference kernels (``windows``) its
    padded input and the windows of every channel (im2col) too."""
    N, C, H, W = (int(s) for s in x_shape)
    OH, OW = (H + 2 * PH - KH) // SH + 1, (W + 2 * PW - KW) // SW + 1
    hint = "check kernel_size, stride and padding"
    check_bytes(where, "the output", (N, C, OH, OW), itemsize, hint)
    if windows:
        check_bytes(where, "the padded input", (N, C, H + 2 * PH, W + 2 * PW), itemsize,
                    hint)
        check_bytes(where, "the windows (im2col)", (N * C * OH * OW, KH * KW), itemsize,
                    hint)
