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
from tinyalex.kernels import pool_cpu, pool_gpu
from tinyalex.kernels.geometry import PoolGeometry, pool_geometry
from tinyalex.kernels.layout import FLOATS

from .. import backend as B
from ..tensor import Function
from .activation import activation_algorithm
from ..checks import check_bytes, check_floating, pair
from .im2col import col2im, im2col


# -- [simple version] the readable references -------------------------------------------

class MaxPoolReference:
    """Windows as rows (im2col with -inf padding), the max of each row, and the argmax
    kept (N*C*OH*OW,): each output's gradient goes back to its window's argmax."""

    name = "im2col+max (reference)"

    def forward(self, x, g: PoolGeometry):
        """y (N, C, OH, OW) and the argmax of each window."""
        xp = B.get_array_module(x)
        N, C, H, W = g.N, g.C, g.H, g.W
        # (N*C*OH*OW, KH*KW): one row per window of every channel of every image
        cols = im2col(x.reshape(N * C, 1, H, W), *g.window, pad_value=-np.inf)
        argmax = cols.argmax(axis=1)                               # (N*C*OH*OW,)
        y = cols[xp.arange(cols.shape[0]), argmax]                 # (N*C*OH*OW,)
        return y.reshape(N, C, g.OH, g.OW), (argmax, g)

    def backward(self, gy, saved):
        argmax, g = saved
        xp = B.get_array_module(gy)
        gcols = xp.zeros((argmax.shape[0], g.KH * g.KW), dtype=gy.dtype)  # (N*C*OH*OW, KH*KW)
        gcols[xp.arange(argmax.shape[0]), argmax] = gy.reshape(-1)
        gx = col2im(gcols, (g.N * g.C, 1, g.H, g.W), *g.window)          # (N*C, 1, H, W)
        return gx.reshape(g.N, g.C, g.H, g.W)


class AvgPoolReference:
    """Windows as rows (im2col, zero padding counted), the mean of each row; backward
    gives every window entry gy / (KH*KW) and col2im adds overlapping windows."""

    name = "im2col+mean (reference)"

    def forward(self, x, g: PoolGeometry):
        N, C = g.N, g.C
        cols = im2col(x.reshape(N * C, 1, g.H, g.W), *g.window)         # (N*C*OH*OW, KH*KW)
        return cols.mean(axis=1).reshape(N, C, g.OH, g.OW), g

    def backward(self, gy, g: PoolGeometry):
        xp = B.get_array_module(gy)
        share = gy.reshape(-1, 1) / (g.KH * g.KW)                        # (N*C*OH*OW, 1)
        gcols = xp.broadcast_to(share, (share.shape[0], g.KH * g.KW))    # (N*C*OH*OW, KH*KW)
        gx = col2im(gcols, (g.N * g.C, 1, g.H, g.W), *g.window)          # (N*C, 1, H, W)
        return gx.reshape(g.N, g.C, g.H, g.W)


MAX_REFERENCE, AVG_REFERENCE = MaxPoolReference(), AvgPoolReference()


# -- the one place that chooses the algorithm ---------------------------------------------

def pool2d_algorithm(kind: str, g: PoolGeometry, dtype, backend: str):
    """The algorithm that computes max (``kind="max"``) or average pooling of geometry
    ``g``: the first row that matches::

        TINYALEX_KERNELS=reference, TINYALEX_CONV=im2col,     im2col+max / im2col+mean
        or dtype not float32/64                               (reference), above
        backend cupy                                          max-pool / avg-pool kernel
        otherwise                                             max-pool / avg-pool loop

    The fast ones loop over each window directly: no window matrix (KH*KW copies of
    every pixel), max pooling's argmax kept as int32 (kernels/pool_cpu.py).
    """
    if kind not in ("max", "avg"):
        raise ValueError(f"pool2d_algorithm: kind must be 'max' or 'avg', got {kind!r}")
    if kernels.get_mode() == "reference" or kernels.get_conv_mode() == "im2col" \
            or dtype not in FLOATS:
        return MAX_REFERENCE if kind == "max" else AVG_REFERENCE
    if backend == "cupy":
        return pool_gpu.for_cupy(pool_gpu.MaxPoolGPU if kind == "max" else pool_gpu.AvgPoolGPU)
    return pool_cpu.MAX_POOL if kind == "max" else pool_cpu.AVG_POOL


# -- the ops ------------------------------------------------------------------------------

class _Pool2d(Function):
    kind = "pool"

    def __init__(self, kernel_size, stride=None, padding=0, where=None):
        self.where = where or f"{self.kind}_pool2d"
        self.KH, self.KW = pair(kernel_size, "kernel_size", self.where, 1)
        stride = (self.KH, self.KW) if stride is None else stride
        self.SH, self.SW = pair(stride, "stride", self.where, 1)
        self.PH, self.PW = pair(padding, "padding", self.where, 0)
        if 2 * self.PH > self.KH or 2 * self.PW > self.KW:
            raise ValueError(f"{self.where}: padding {(self.PH, self.PW)} must be at most "
                             f"half of kernel_size {(self.KH, self.KW)}")

    def geometry(self, x_shape) -> PoolGeometry:
        """The pooling geometry of an input shape, every size checked."""
        return pool_geometry(x_shape, self.KH, self.KW, self.SH, self.SW, self.PH, self.PW,
                             self.where)

    def forward(self, x):
        g = self.geometry(x.shape)
        check_floating(x.dtype, self.where)
        self.algorithm = pool2d_algorithm(self.kind, g, x.dtype, B.backend_of(x))
        check_pool_memory(self.where, g, x.dtype.itemsize,
                          windows=self.algorithm in (MAX_REFERENCE, AVG_REFERENCE))
        y, saved = self.algorithm.forward(x, g)
        if self.needs_input_grad[0]:
            self.saved = saved
        return y

    def backward(self, gy):
        return self.algorithm.backward(gy, self.saved)


class MaxPool2d(_Pool2d):
    torch_name = "MaxPool2DWithIndicesBackward0"  # PyTorch's name, for a repr's grad_fn

    kind = "max"


class AvgPool2d(_Pool2d):
    torch_name = "AvgPool2DBackward0"  # PyTorch's name, for a repr's grad_fn

    kind = "avg"


class ReluMaxPool2d(MaxPool2d):
    """``max_pool2d(relu(x))`` as one op, computed as ``relu(max_pool2d(x))``. ReLU is
    monotone, so the rectified window's max is the rectified max, at the same first
    argmax wherever that max is positive; where it is not, the gradient is zero either
    way (a window of rectified zeros sends its gradient to a pixel whose mask is 0).
    So ReLU runs on the pooled output, a quarter of the input for AlexNet's 3x3
    windows at stride 2, and backward masks the pooled gradient (``y > 0``) before the
    pooling's backward: no pass over the full-size input, which is not kept. The
    numbers of ReLU followed by MaxPool2d, bit for bit (the tests hold it).
    ``nn.Sequential`` calls it for a ReLU followed by a MaxPool2d on the CPU
    (``Sequential.FUSED_CPU``)."""

    torch_name = "MaxPool2DWithIndicesBackward0"  # PyTorch's name, for a repr's grad_fn

    def forward(self, x):
        pooled = super().forward(x)
        self.relu = activation_algorithm("relu", x.dtype, B.backend_of(x))
        y = self.relu.forward(pooled)
        if self.needs_input_grad[0]:
            self.y = y                         # the ReLU's mask is y > 0
        return y

    def backward(self, gy):
        return super().backward(self.relu.backward(gy, self.y))


def max_pool2d(x, kernel_size, stride=None, padding=0):
    """Max over each KHxKW window (stride defaults to kernel_size), -inf padding."""
    return MaxPool2d(kernel_size, stride, padding)(x)


def relu_max_pool2d(x, kernel_size, stride=None, padding=0, where=None):
    """``max_pool2d(relu(x), ...)`` as one op (ReluMaxPool2d)."""
    return ReluMaxPool2d(kernel_size, stride, padding, where)(x)


def avg_pool2d(x, kernel_size, stride=None, padding=0):
    """Mean over each KHxKW window, zero padding counted (PyTorch's default)."""
    return AvgPool2d(kernel_size, stride, padding)(x)


def check_pool_memory(where, g: PoolGeometry, itemsize, windows: bool) -> None:
    """Pooling's output must fit, and with the reference (``windows``) its padded input
    and the windows of every channel (im2col) too."""
    hint = "check kernel_size, stride and padding"
    check_bytes(where, "the output", (g.N, g.C, g.OH, g.OW), itemsize, hint)
    if windows:
        check_bytes(where, "the padded input", (g.N, g.C, g.H + 2 * g.PH, g.W + 2 * g.PW),
                    itemsize, hint)
        check_bytes(where, "the windows (im2col)", (g.N * g.C * g.OH * g.OW, g.KH * g.KW),
                    itemsize, hint)
