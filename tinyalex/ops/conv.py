"""2-D convolution as im2col + one GEMM (letters as in the Notation of
``tinyalex/ops/im2col.py``).

Forward::

    cols = im2col(x)                                   # (N*OH*OW, C*KH*KW)
    y    = cols @ W.reshape(OC, C*KH*KW).T + b         # (N*OH*OW, OC)
    y    -> (N, OH, OW, OC) -> (N, OC, OH, OW)

Backward, with gy the gradient of y laid out as (N*OH*OW, OC)::

    gW    = gy.T @ cols                                # (OC, C*KH*KW)
    gb    = gy.sum(axis=0)                             # (OC,)
    gcols = gy @ W                                     # (N*OH*OW, C*KH*KW)
    gx    = col2im(gcols)                              # (N, C, H, W)

Only ``cols`` and ``W`` are kept for backward. The input gradient is skipped when
no one needs it (the first layer of a network: its input is the data).
"""

from __future__ import annotations

import tinyalex.kernels as kernels

from ..tensor import Function
from .checks import check_floating, check_rank, check_window, pair
from .im2col import conv_output_size


class Conv2d(Function):
    def __init__(self, stride=1, padding=0, where: str = "conv2d"):
        self.where = where
        self.SH, self.SW = pair(stride, "stride", where, 1)
        self.PH, self.PW = pair(padding, "padding", where, 0)

    def forward(self, x, weight, bias=None):
        check_conv_shapes(self.where, x.shape, weight.shape,
                          None if bias is None else bias.shape)
        check_floating(x.dtype, self.where)
        N, C, H, W = x.shape
        OC, _, KH, KW = weight.shape
        SH, SW, PH, PW = self.SH, self.SW, self.PH, self.PW
        check_window(self.where, H, W, KH, KW, PH, PW)
        OH = conv_output_size(H, KH, SH, PH)
        OW = conv_output_size(W, KW, SW, PW)

        k = kernels.select(x)
        cols = k.im2col(x, KH, KW, SH, SW, PH, PW)     # (N*OH*OW, C*KH*KW)
        w_mat = weight.reshape(OC, C * KH * KW)        # (OC, C*KH*KW)
        y = cols @ w_mat.T                             # (N*OH*OW, OC) = (N*OH*OW, C*KH*KW) @ (C*KH*KW, OC)
        if bias is not None:
            y += bias                                  # (N*OH*OW, OC) + (OC,)
        # (N*OH*OW, OC) -> (N, OH, OW, OC) -> (N, OC, OH, OW)
        y = y.reshape(N, OH, OW, OC).transpose(0, 3, 1, 2)

        if any(self.needs_input_grad):
            self.k, self.cols, self.w_mat = k, cols, w_mat
            self.x_shape, self.w_shape = x.shape, weight.shape
        return _contiguous(y)

    def backward(self, gy):
        N, C, H, W = self.x_shape
        OC, _, KH, KW = self.w_shape
        need_x, need_w = self.needs_input_grad[0], self.needs_input_grad[1]
        need_b = len(self.needs_input_grad) > 2 and self.needs_input_grad[2]

        # (N, OC, OH, OW) -> (N, OH, OW, OC) -> (N*OH*OW, OC)
        gy_mat = gy.transpose(0, 2, 3, 1).reshape(-1, OC)
        gx = gw = gb = None
        if need_w:
            gw = (gy_mat.T @ self.cols).reshape(self.w_shape)  # (OC, C*KH*KW) = (OC, N*OH*OW) @ (N*OH*OW, C*KH*KW)
        if need_b:
            gb = gy_mat.sum(axis=0)                            # (OC,)
        if need_x:
            gcols = gy_mat @ self.w_mat                        # (N*OH*OW, C*KH*KW) = (N*OH*OW, OC) @ (OC, C*KH*KW)
            gx = self.k.col2im(gcols, self.x_shape, KH, KW, self.SH, self.SW, self.PH, self.PW)
        return (gx, gw, gb) if len(self.needs_input_grad) > 2 else (gx, gw)


def _contiguous(a):
    # a C-contiguous copy, so that the next layer reads memory in order
    return a.copy() if not a.flags.c_contiguous else a


def check_conv_shapes(where, x_shape, w_shape, b_shape=None):
    """Ranks and channel counts of a convolution's operands, named in the error."""
    check_rank(x_shape, 4, where, "(N, C, H, W)")
    check_rank(w_shape, 4, where + " weight", "(OC, C, KH, KW)")
    if any(s == 0 for s in x_shape):
        raise ValueError(f"{where}: input has an empty dimension, shape {tuple(x_shape)}")
    if x_shape[1] != w_shape[1]:
        raise ValueError(f"{where}: expected input with {w_shape[1]} channels (N, "
                         f"{w_shape[1]}, H, W), got shape {tuple(x_shape)}")
    if b_shape is not None and tuple(b_shape) != (w_shape[0],):
        raise ValueError(f"{where}: bias must have shape ({w_shape[0]},), got "
                         f"{tuple(b_shape)}")


def conv2d(x, weight, bias=None, stride=1, padding=0):
    """2-D convolution (cross-correlation, as PyTorch) of x (N, C, H, W) with
    weight (OC, C, KH, KW) and optional bias (OC,)."""
    fn = Conv2d(stride, padding)
    return fn(x, weight) if bias is None else fn(x, weight, bias)
