"""2-D convolution (letters as in the Notation of ``tinyalex/ops/im2col.py``).

The simple version first: im2col + one GEMM, the readable reference::

    cols = im2col(x)                                   # (N*OH*OW, C*KH*KW)
    y    = cols @ W.reshape(OC, C*KH*KW).T + b         # (N*OH*OW, OC)
    y    -> (N, OH, OW, OC) -> (N, OC, OH, OW)

Backward, with gy the gradient of y laid out as (N*OH*OW, OC)::

    gW    = gy.T @ cols                                # (OC, C*KH*KW)
    gb    = gy.sum(axis=0)                             # (OC,)
    gcols = gy @ W                                     # (N*OH*OW, C*KH*KW)
    gx    = col2im(gcols)                              # (N, C, H, W)

Only ``cols`` and ``W`` are kept for backward. The input gradient is skipped when no
one needs it (the first layer of a network: its input is the data).

Then the real op: ``Conv2d`` asks ``conv2d_algorithm`` which algorithm computes this
layer and calls it; its rules are the table in that function's docstring, and
``tinyalex.summary`` prints the choice for every layer of a network.
"""

from __future__ import annotations

from dataclasses import dataclass

import tinyalex.kernels as kernels
from tinyalex.kernels import conv_direct_cpu, conv_im2col_cpu, conv_im2col_gpu, \
    conv_winograd_cpu
from tinyalex.kernels.geometry import ConvGeometry, conv_geometry
from tinyalex.kernels.layout import FLOATS

from .. import backend as B
from ..checks import check_bytes, check_floating, check_rank, check_window, pair
from ..tensor import Function
from .activation import activation_algorithm
from .im2col import col2im, im2col


# -- [simple version] im2col + one GEMM, the readable reference ---------------------------

@dataclass
class ReferenceSaved:
    cols: object          # (N*OH*OW, C*KH*KW)
    w_mat: object         # (OC, C*KH*KW)
    g: ConvGeometry


class Im2colReference:
    """The reference convolution: NumPy (or CuPy) array code, no compiled loop."""

    name = "im2col+GEMM (reference)"

    def forward(self, x, weight, bias, g: ConvGeometry, keep: bool):
        """y (N, OC, OH, OW) and what backward needs (None unless ``keep``)."""
        N, OC, OH, OW = g.N, g.OC, g.OH, g.OW
        cols = im2col(x, g.KH, g.KW, g.SH, g.SW, g.PH, g.PW)    # (N*OH*OW, C*KH*KW)
        w_mat = weight.reshape(OC, g.K)                         # (OC, C*KH*KW)
        y = cols @ w_mat.T           # (N*OH*OW, OC) = (N*OH*OW, C*KH*KW) @ (C*KH*KW, OC)
        if bias is not None:
            y += bias                                           # (N*OH*OW, OC) + (OC,)
        # (N*OH*OW, OC) -> (N, OH, OW, OC) -> (N, OC, OH, OW), C-contiguous
        y = y.reshape(N, OH, OW, OC).transpose(0, 3, 1, 2)
        y = y if y.flags.c_contiguous else y.copy()
        return y, (ReferenceSaved(cols, w_mat, g) if keep else None)

    def backward(self, gy, s: ReferenceSaved, need_x, need_w, need_b):
        """(gx, gW, gb) for gy (N, OC, OH, OW); None where not needed."""
        g = s.g
        gy_mat = gy.transpose(0, 2, 3, 1).reshape(-1, g.OC)   # (N, OC, OH, OW) -> (N*OH*OW, OC)
        gx = gw = gb = None
        if need_w:
            # (OC, C*KH*KW) = (OC, N*OH*OW) @ (N*OH*OW, C*KH*KW)
            gw = (gy_mat.T @ s.cols).reshape(g.OC, g.C, g.KH, g.KW)
        if need_b:
            gb = gy_mat.sum(axis=0)                           # (OC,)
        if need_x:
            gcols = gy_mat @ s.w_mat  # (N*OH*OW, C*KH*KW) = (N*OH*OW, OC) @ (OC, C*KH*KW)
            # col2im is the adjoint of im2col: every window's gradient added back onto its pixels
            gx = col2im(gcols, (g.N, g.C, g.H, g.W), g.KH, g.KW, g.SH, g.SW, g.PH, g.PW)
        return gx, gw, gb


REFERENCE = Im2colReference()


# -- the one place that chooses the algorithm ---------------------------------------------

def conv2d_algorithm(g: ConvGeometry, dtype, backend: str):
    """The algorithm that computes a convolution of geometry ``g``: the first row of
    this table that matches (mode: ``tinyalex.kernels``' switches)::

        TINYALEX_KERNELS=reference, or dtype not float32/64  im2col+GEMM (reference), above
        backend cupy, TINYALEX_CONV=im2col                   im2col+GEMM, (c, kh, kw) columns
        backend cupy                                         im2col+GEMM (kh,kw,c):
                                                             channels-last columns
        TINYALEX_CONV=im2col                                 im2col+GEMM
        3x3, stride 1, padding < 3, >= 96 channels in/out    winograd F(4,3)
        5x5, stride 1, padding < 5, >= 96 channels in/out    winograd F(2,5)
        stride 1, padding < kernel                           direct
        anything else                                        im2col+GEMM

    Why: im2col + GEMM does C*KH*KW multiply-adds per output through one large GEMM,
    near the BLAS's peak when C and OC are large. Winograd F(4x4, 3x3) needs 36
    multiplications per 16 outputs of a 3x3 filter where im2col needs 144 (4x fewer),
    F(2x2, 5x5) 36 per 4 where im2col needs 100 (2.8x fewer), at the price of
    transforming every tile; with few channels its 36 GEMMs are too thin to pay. The
    direct convolution makes no column matrix at all (im2col copies every pixel KH*KW
    times) and suits the few-channel layers whose GEMM would have 6 or 16 columns.
    docs/convolution.md shows AlexNet's and LeNet's choices.
    """
    if kernels.get_mode() == "reference" or dtype not in FLOATS:
        return REFERENCE
    im2col_only = kernels.get_conv_mode() == "im2col"
    if backend == "cupy":
        return conv_im2col_gpu.for_cupy("c,kh,kw" if im2col_only else "kh,kw,c")
    if im2col_only:
        return conv_im2col_cpu.IM2COL_GEMM
    for winograd in (conv_winograd_cpu.WINOGRAD_F43, conv_winograd_cpu.WINOGRAD_F25):
        if winograd.takes(g):
            return winograd
    if conv_direct_cpu.DIRECT.takes(g):
        return conv_direct_cpu.DIRECT
    return conv_im2col_cpu.IM2COL_GEMM


# -- the op -----------------------------------------------------------------------------

class Conv2d(Function):
    torch_name = "ConvolutionBackward0"  # PyTorch's name, for a repr's grad_fn

    def __init__(self, stride=1, padding=0, where: str = "conv2d"):
        self.where = where
        self.SH, self.SW = pair(stride, "stride", where, 1)
        self.PH, self.PW = pair(padding, "padding", where, 0)

    def geometry(self, x_shape, w_shape, b_shape=None) -> ConvGeometry:
        """The layer's geometry for these operand shapes, every size checked."""
        check_conv_shapes(self.where, x_shape, w_shape, b_shape)
        check_window(self.where, x_shape[2], x_shape[3], w_shape[2], w_shape[3], self.PH,
                     self.PW)
        return conv_geometry(x_shape, w_shape, self.SH, self.SW, self.PH, self.PW,
                             self.where)

    def _prepare(self, x, weight, bias) -> ConvGeometry:
        """Check the operands, choose the algorithm; the geometry."""
        g = self.geometry(x.shape, weight.shape, None if bias is None else bias.shape)
        check_floating(x.dtype, self.where)
        check_floating(weight.dtype, self.where, "weight")
        if bias is not None:
            check_floating(bias.dtype, self.where, "bias")
        self.algorithm = conv2d_algorithm(g, x.dtype, B.backend_of(x))
        check_conv_memory(self.where, g, x.dtype.itemsize,
                          whole_batch_columns=self.algorithm is REFERENCE)
        return g

    def forward(self, x, weight, bias=None):
        g = self._prepare(x, weight, bias)
        y, self.saved = self.algorithm.forward(x, weight, bias, g,
                                               keep=any(self.needs_input_grad))
        return y

    def backward(self, gy):
        need = self.needs_input_grad
        need_b = len(need) > 2 and need[2]
        gx, gw, gb = self.algorithm.backward(gy, self.saved, need[0], need[1], need_b)
        return (gx, gw, gb) if len(need) > 2 else (gx, gw)


class Conv2dReLU(Conv2d):
    """``relu(conv2d(x, W, b))`` as one op. With the GPU's im2col + GEMM one kernel adds
    the bias and applies ReLU to the GEMM's result in place (its epilogue), and backward
    masks the gradient in one kernel (``y > 0 ? gy : 0``) before the convolution's
    backward; with any other algorithm the convolution and the ReLU algorithm run one
    after the other, with the numbers of Conv2d followed by ReLU. ``nn.Sequential``
    calls it for a Conv2d followed by a ReLU on the cupy backend."""

    name = "Conv2d+ReLU"

    def forward(self, x, weight, bias=None):
        g = self._prepare(x, weight, bias)
        self.relu = activation_algorithm("relu", x.dtype, B.backend_of(x))
        keep = any(self.needs_input_grad)
        if isinstance(self.algorithm, conv_im2col_gpu.Im2colGemmGPU):
            y, self.saved = self.algorithm.forward(x, weight, bias, g, keep, activation="relu")
        else:
            y, self.saved = self.algorithm.forward(x, weight, bias, g, keep)
            y = self.relu.forward(y)
        if keep:
            self.y = y                         # the ReLU's mask is y > 0
        return y

    def backward(self, gy):
        return super().backward(self.relu.backward(gy, self.y))


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


def check_conv_memory(where, g: ConvGeometry, itemsize, whole_batch_columns: bool) -> None:
    """The output of a convolution and its im2col columns must fit in memory (the whole
    batch's columns with the reference, one image's with the fast algorithms)."""
    hint = "check kernel_size, stride and padding"
    check_bytes(where, "the output", (g.N, g.OC, g.OH, g.OW), itemsize, hint)
    check_bytes(where, "the padded input", (g.N, g.C, g.H + 2 * g.PH, g.W + 2 * g.PW),
                itemsize, hint)
    rows = g.N * g.P if whole_batch_columns else g.P
    check_bytes(where, "the im2col matrix", (rows, g.K), itemsize, hint)


def conv2d(x, weight, bias=None, stride=1, padding=0):
    """2-D convolution (cross-correlation, as PyTorch) of x (N, C, H, W) with
    weight (OC, C, KH, KW) and optional bias (OC,)."""
    fn = Conv2d(stride, padding)
    return fn(x, weight) if bias is None else fn(x, weight, bias)


def conv2d_relu(x, weight, bias=None, stride=1, padding=0, where="conv2d+relu"):
    """``relu(conv2d(x, weight, bias, stride, padding))`` as one op (Conv2dReLU)."""
    fn = Conv2dReLU(stride, padding, where)
    return fn(x, weight) if bias is None else fn(x, weight, bias)
