"""The layers of AlexNet and LeNet, with PyTorch's names, arguments and weight shapes."""

from __future__ import annotations

import math

import numpy as np

from ..ops import activation, conv, dense, loss, pool
from ..checks import check_bool, check_bytes, check_int, pair
from ..tensor import Parameter
from . import init
from .module import Module, Sequential


def _weight_fits(where, shape):
    """A layer whose weight would not fit in memory is refused before allocation: 12
    bytes per number, the float32 weight and the float64 numbers its initialisation
    draws (``init.uniform_``)."""
    check_bytes(where, "the weight (with its float64 initial draw)", shape, 4 + 8,
                "check the layer's sizes")


def check_groups(groups, where, in_channels, out_channels) -> int:
    """``groups`` as a positive int dividing both channel counts (PyTorch's ValueErrors);
    ``in_channels`` None for a lazy layer, whose input channels come later."""
    groups = check_int(groups, "groups", where, 1, type_error=ValueError)
    for arg, n in (("in_channels", in_channels), ("out_channels", out_channels)):
        if n is not None and n % groups:
            raise ValueError(f"{where}: {arg} must be divisible by groups, got {arg}={n}, "
                             f"groups={groups}")
    return groups


class Conv2d(Module):
    """2-D convolution: weight (OC, C/groups, KH, KW), bias (OC,); PyTorch's default init.
    With ``groups`` > 1 the channels go in that many independent groups (ops/conv.py,
    GroupedReference)."""

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0,
                 bias=True, groups=1):
        super().__init__()
        self.in_channels = check_int(in_channels, "in_channels", "Conv2d", 1, type_error=ValueError)
        self.out_channels = check_int(out_channels, "out_channels", "Conv2d", 1, type_error=ValueError)
        self.kernel_size = pair(kernel_size, "kernel_size", "Conv2d", 1)
        self.stride = pair(stride, "stride", "Conv2d", 1)
        self.padding = pair(padding, "padding", "Conv2d", 0)
        bias = check_bool(bias, "bias", "Conv2d")
        self.groups = check_groups(groups, "Conv2d", self.in_channels, self.out_channels)
        KH, KW = self.kernel_size
        shape = (self.out_channels, self.in_channels // self.groups, KH, KW)
        _weight_fits("Conv2d", shape)
        self.weight = Parameter(np.empty(shape, dtype=np.float32))
        self.bias = Parameter(np.empty(self.out_channels, dtype=np.float32)) if bias else None
        self.reset_parameters()

    def reset_parameters(self):
        # PyTorch: kaiming_uniform_(a=sqrt(5)) gives U(-1/sqrt(fan_in), 1/sqrt(fan_in))
        init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        if self.bias is not None:
            bound = 1 / math.sqrt(init.fan_in_and_fan_out(self.weight)[0])
            init.uniform_(self.bias, -bound, bound)

    def forward(self, x):
        fn = conv.Conv2d(self.stride, self.padding, where=self.where, groups=self.groups)
        return fn(x, self.weight) if self.bias is None else fn(x, self.weight, self.bias)

    def forward_relu(self, x):
        """``relu(self(x))`` as one op, ``Conv2d+ReLU`` (ops/conv.py, Conv2dReLU)."""
        fn = conv.Conv2dReLU(self.stride, self.padding, where=f"{self.where} + ReLU",
                             groups=self.groups)
        return fn(x, self.weight) if self.bias is None else fn(x, self.weight, self.bias)

    def forward_sigmoid_avgpool(self, x, sigmoid, pool):
        """``pool(sigmoid(self(x)))`` as one op, ``Conv2d+Sigmoid+AvgPool2d`` (ops/conv.py,
        Conv2dSigmoidAvgPool); ``sigmoid`` and ``pool`` are the Sigmoid and AvgPool2d
        layers."""
        fn = conv.Conv2dSigmoidAvgPool(self.stride, self.padding, pool.kernel_size,
                                       pool.stride, pool.padding, groups=self.groups,
                                       where=f"{self.where} + {sigmoid.where} + {pool.where}")
        return fn(x, self.weight) if self.bias is None else fn(x, self.weight, self.bias)

    def algorithm_fused(self, input_shape, sigmoid, pool, dtype=np.float32,
                        backend="numpy"):
        """The name of the one loop that computes this layer, ``sigmoid`` and ``pool``
        (``forward_sigmoid_avgpool``) for an input of ``input_shape``, or None where
        the three run one after the other (their own algorithms)."""
        fn = conv.Conv2dSigmoidAvgPool(self.stride, self.padding, pool.kernel_size,
                                       pool.stride, pool.padding, groups=self.groups)
        g = fn.geometry(tuple(input_shape), self.weight.shape,
                        None if self.bias is None else self.bias.shape)
        return fn.fused_name(g, np.dtype(dtype), backend)

    def algorithm(self, input_shape, dtype=np.float32, backend="numpy") -> str:
        """The name of the algorithm that computes this layer for an input of
        ``input_shape`` on ``backend`` in the current kernel mode (ops/conv.py's
        ``conv2d_algorithm``, whose docstring holds the rules)."""
        g = conv.Conv2d(self.stride, self.padding, where=self.where,
                        groups=self.groups).geometry(
            tuple(input_shape), self.weight.shape,
            None if self.bias is None else self.bias.shape)
        return conv.conv2d_algorithm(g, np.dtype(dtype), backend).name

    def extra_repr(self):
        s = (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
             f"stride={self.stride}")
        if self.padding != (0, 0):
            s += f", padding={self.padding}"
        if self.groups != 1:
            s += f", groups={self.groups}"
        return s + ("" if self.bias is not None else ", bias=False")


class Linear(Module):
    """Fully connected: weight (out_features, in_features), bias (out_features,)."""

    def __init__(self, in_features, out_features, bias=True):
        super().__init__()
        self.in_features = check_int(in_features, "in_features", "Linear", 1, type_error=ValueError)
        self.out_features = check_int(out_features, "out_features", "Linear", 1, type_error=ValueError)
        bias = check_bool(bias, "bias", "Linear")
        _weight_fits("Linear", (self.out_features, self.in_features))
        self.weight = Parameter(np.empty((self.out_features, self.in_features),
                                         dtype=np.float32))
        self.bias = Parameter(np.empty(self.out_features, dtype=np.float32)) if bias else None
        self.reset_parameters()

    def reset_parameters(self):
        init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        if self.bias is not None:
            bound = 1 / math.sqrt(self.in_features)
            init.uniform_(self.bias, -bound, bound)

    def forward(self, x):
        fn = dense.Linear(where=self.where)
        return fn(x, self.weight) if self.bias is None else fn(x, self.weight, self.bias)

    def forward_relu(self, x):
        """``relu(self(x))`` as one op, ``Linear+ReLU`` (ops/dense.py, LinearReLU)."""
        fn = dense.LinearReLU(where=f"{self.where} + ReLU")
        return fn(x, self.weight) if self.bias is None else fn(x, self.weight, self.bias)

    def extra_repr(self):
        return (f"in_features={self.in_features}, out_features={self.out_features}, "
                f"bias={self.bias is not None}")


class _Pool(Module):
    op = None

    def __init__(self, kernel_size, stride=None, padding=0):
        super().__init__()
        # build the op once now, so that bad arguments fail at construction
        self.op(kernel_size, stride, padding, where=type(self).__name__)
        self.kernel_size, self.stride, self.padding = kernel_size, stride, padding

    def forward(self, x):
        return self.op(self.kernel_size, self.stride, self.padding, where=self.where)(x)

    def algorithm(self, input_shape, dtype=np.float32, backend="numpy") -> str:
        """The name of the algorithm that computes this layer for an input of
        ``input_shape`` (ops/pool.py's ``pool2d_algorithm``)."""
        fn = self.op(self.kernel_size, self.stride, self.padding, where=self.where)
        return pool.pool2d_algorithm(fn.kind, fn.geometry(tuple(input_shape)),
                                     np.dtype(dtype), backend).name

    def extra_repr(self):
        stride = self.kernel_size if self.stride is None else self.stride
        return f"kernel_size={self.kernel_size}, stride={stride}, padding={self.padding}"


class MaxPool2d(_Pool):
    op = pool.MaxPool2d


class AvgPool2d(_Pool):
    op = pool.AvgPool2d


class ReLU(Module):
    def forward(self, x):
        return activation.relu(x)

    def forward_maxpool(self, x, pooling):
        """``pooling(self(x))`` as one op for ``pooling`` a MaxPool2d layer,
        ``ReLU+MaxPool2d`` (ops/pool.py, ReluMaxPool2d: the ReLU on the pooled output)."""
        return pool.relu_max_pool2d(x, pooling.kernel_size, pooling.stride, pooling.padding,
                                    where=f"{self.where} + {pooling.where}")

    def algorithm_fused(self, input_shape, pooling, dtype=np.float32,
                        backend="numpy") -> str:
        """What computes this layer and ``pooling`` (``forward_maxpool``), for summary."""
        return f"{pooling.algorithm(input_shape, dtype, backend)}, then ReLU on the pooled"


class Sigmoid(Module):
    def forward(self, x):
        return activation.sigmoid(x)


class Dropout(Module):
    """Zeroes elements with probability p in training mode; identity in eval mode.

    ``first_row`` (0: the batch is the whole batch) says that the input is rows
    first_row.. of a larger batch, whose mask they get: a process's share of a global
    batch sets it for the step (``tinyalex/train/shares.py``, ``batch_rows``)."""

    def __init__(self, p=0.5):
        super().__init__()
        self.p = activation.check_probability(p, "Dropout")
        self.first_row = 0

    def forward(self, x):
        return activation.dropout(x, self.p, self.training, first_row=self.first_row)

    def extra_repr(self):
        return f"p={self.p}"


class Flatten(Module):
    def __init__(self, start_dim=1, end_dim=-1):
        super().__init__()
        self.start_dim = check_int(start_dim, "start_dim", "Flatten")
        self.end_dim = check_int(end_dim, "end_dim", "Flatten")

    def forward(self, x):
        return dense.flatten(x, self.start_dim, self.end_dim)

    def extra_repr(self):
        return f"start_dim={self.start_dim}, end_dim={self.end_dim}"


class CrossEntropyLoss(Module):
    """Cross-entropy of logits (N, K) against integer labels (N,): their mean, sum, or
    the (N,) losses (``reduction="mean" | "sum" | "none"``, as PyTorch's)."""

    def __init__(self, reduction="mean"):
        super().__init__()
        loss.CrossEntropy(reduction)              # a bad reduction fails here, by name
        self.reduction = reduction

    def forward(self, logits, target):
        return loss.cross_entropy(logits, target, self.reduction)


# The pairs nn.Sequential runs as one op on the GPU (module.py, Sequential.fusions): the
# first layer's forward_relu computes relu(layer(x)), the bias and ReLU in one kernel.
Sequential.FUSED_PAIRS.update({(Conv2d, ReLU): "Conv2d+ReLU", (Linear, ReLU): "Linear+ReLU"})
# The runs it computes as one op on the CPU (module.py, Sequential.fused_runs): the first
# layer's method, called with the run's other layers. d2l's LeNet blocks: one loop per
# image (ops/conv.py); a ReLU before max pooling runs on the pooled output (ops/pool.py,
# ReluMaxPool2d).
Sequential.FUSED_CPU.update({(Conv2d, Sigmoid, AvgPool2d): Conv2d.forward_sigmoid_avgpool,
                             (ReLU, MaxPool2d): ReLU.forward_maxpool})
