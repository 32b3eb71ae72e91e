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

That is the readable reference below (``conv2d_forward_reference`` and
``conv2d_backward_reference``). The op asks its kernel set for the pair, so the fast
kernels (``kernels/fastconv.py``: the same algebra one chunk of the batch at a time,
on channels-last memory) run in its place unless the reference mode is chosen.
"""

from __future__ import annotations

import tinyalex.kernels as kernels

from ..tensor import Function
from ..checks import check_bytes, check_floating, check_rank, check_window, pair
from .im2col import col2im, conv_output_size, im2col


# -- the readable reference -----------------------------------------------------------

def conv2d_forward_reference(x, weight, bias, SH, SW, PH, PW, keep):
    """y (N, OC, OH, OW) and what backward needs (None unless ``keep``)."""
    N, C, H, W = x.shape
    OC, _, KH, KW = weight.shape
    OH = conv_output_size(H, KH, SH, PH)
    OW = conv_output_size(W, KW, SW, PW)

    cols = im2col(x, KH, KW, SH, SW, PH, PW)       # (N*OH*OW, C*KH*KW)
    w_mat = weight.reshape(OC, C * KH * KW)        # (OC, C*KH*KW)
    y = cols @ w_mat.T                             # (N*OH*OW, OC) = (N*OH*OW, C*KH*KW) @ (C*KH*KW, OC)
    if bias is not None:
        y += bias                                  # (N*OH*OW, OC) + (OC,)
    # (N*OH*OW, OC) -> (N, OH, OW, OC) -> (N, OC, OH, OW)
    y = y.reshape(N, OH, OW, OC).transpose(0, 3, 1, 2)

    saved = (cols, w_mat, x.shape, weight.shape, (SH, SW, PH, PW)) if keep else None
    return _contiguous(y), saved


def conv2d_backward_reference(gy, saved, need_x, need_w, need_b):
    """(gx, gW, gb) for gy (N, OC, OH, OW); None where not needed."""
    cols, w_mat, x_shape, w_shape, (SH, SW, PH, PW) = saved
    OC, _, KH, KW = w_shape

    # (N, OC, OH, OW) -> (N, OH, OW, OC) -> (N*OH*OW, OC)
    gy_mat = gy.transpose(0, 2, 3, 1).reshape(-1, OC)
    gx = gw = gb = None
    if need_w:
        gw = (gy_mat.T @ cols).reshape(w_shape)   # (OC, C*KH*KW) = (OC, N*OH*OW) @ (N*OH*OW, C*KH*KW)
    if need_b:
        gb = gy_mat.sum(axis=0)                   # (OC,)
    if need_x:
        gcols = gy_mat @ w_mat                    # (N*OH*OW, C*KH*KW) = (N*OH*OW, OC) @ (OC, C*KH*KW)
        # col2im is the adjoint of im2col: every window's gradient added back onto its pixels
        gx = col2im(gcols, x_shape, KH, KW, SH, SW, PH, PW)   # (N, C, H, W)
    return gx, gw, gb


def _contiguous(a):
    # a C-contiguous copy, so that the next layer reads memory in order
    return a.copy() if not a.flags.c_contiguous else a


# -- the op ---------------------------------------------------------------------------

class Conv2d(Function):
    def __init__(self, stride=1, padding=0, where: str = "conv2d"):
        self.where = where
        self.SH, self.SW = pair(stride, "stride", where, 1)
        self.PH, self.PW = pair(padding, "padding", where, 0)

    def forward(self, x, weight, bias=None):
        check_conv_shapes(self.where, x.shape, weight.shape,
                          None if bias is None else bias.shape)
        check_floating(x.dtype, self.where)
        check_floating(weight.dtype, self.where, "weight")
        if bias is not None:
            check_floating(bias.dtype, self.where, "bias")
        _, _, H, W = x.shape
        _, _, KH, KW = weight.shape
        check_window(self.where, H, W, KH, KW, self.PH, self.PW)
        check_conv_memory(self.where, x.shape, weight.shape, self.SH, self.SW, self.PH,
                          self.PW, x.dtype.itemsize, kernels.get_mode() == "reference")

        self.k = kernels.select(x)
        y, self.saved = self.k.conv2d_forward(x, weight, bias, self.SH, self.SW, self.PH,
                                              self.PW, keep=any(self.needs_input_grad))
        return y

    def backward(self, gy):
        need = self.needs_input_grad
        need_b = len(need) > 2 and need[2]
        gx, gw, gb = self.k.conv2d_backward(gy, self.saved, need[0], need[1], need_b)
        return (gx, gw, gb) if len(need) > 2 else (gx, gw)


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


def check_conv_memory(where, x_shape, w_shape, SH, SW, PH, PW, itemsize,
                      whole_batch_columns: bool = True) -> None:
    """The output of a convolution and its im2col columns must fit in memory (the whole
    batch's columns with the reference kernels, one image's with the fast ones)."""
    N, C, H, W = (int(s) for s in x_shape)
    OC, _, KH, KW = (int(s) for s in w_shape)
    OH, OW = (H + 2 * PH - KH) // SH + 1, (W + 2 * PW - KW) // SW + 1
    hint = "check kernel_size, stride and padding"
    check_bytes(where, "the output", (N, OC, OH, OW), itemsize, hint)
    check_bytes(where, "the padded input", (N, C, H + 2 * PH, W + 2 * PW), itemsize, hint)
    rows = N * OH * OW if whole_batch_columns else OH * OW
    check_bytes(where, "the im2col matrix", (rows, C * KH * KW), itemsize, hint)
