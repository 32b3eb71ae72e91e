"""Lazy layers: ``LazyConv2d`` and ``LazyLinear`` take their input size from the first
forward, as PyTorch's do (d2l 1.0 builds its LeNet and AlexNet from them).

    net = nn.Sequential(nn.LazyConv2d(6, kernel_size=5, padding=2), nn.Sigmoid(),
                        nn.Flatten(), nn.LazyLinear(10))
    type(net[0])                       # LazyConv2d: its weight has no shape yet
    net(tinyalex.rand(1, 1, 28, 28))   # C = 1 read from the input
    type(net[0])                       # Conv2d: weight (6, 1, 5, 5), PyTorch's default init

Before the first forward the layer's ``weight`` and ``bias`` are
``UninitializedParameter``s: any use of them (their shape, ``state_dict``,
``summary``, an init function) is a ValueError naming the layer, and an optimizer
refuses to step while one is still in its list. The first forward reads C (conv) or
the last dimension (linear) from the input, makes the parameters on the input's
backend and dtype, draws PyTorch's default initialisation from tinyalex's seeded
generator, and turns the object into a plain ``Conv2d`` / ``Linear``
(PyTorch's ``cls_to_become``). So ``type(m) == nn.Conv2d``, d2l's test in
``init_cnn``, is False before the first forward and True after it: an ``init_cnn``
applied before finds nothing to initialise, one applied after finds every layer,
exactly as with PyTorch.
"""

from __future__ import annotations

import numpy as np

from .. import backend as B
from ..checks import check_bool, check_int, pair
from ..tensor import Tensor, UninitializedParameter
from .layers import Conv2d, Linear, _weight_fits, check_groups
from .module import Module


class _LazyMixin:
    """What both lazy layers share: the placeholders and becoming the real layer."""

    cls_to_become = None

    def _placeholders(self, bias: bool) -> None:
        name = type(self).__name__
        self.weight = UninitializedParameter(name, "weight")
        self.bias = UninitializedParameter(name, "bias") if bias else None

    def _set_path(self, path: str) -> None:
        Module._set_path(self, path)
        for pname, p in self._parameters.items():       # errors name the layer's place
            if isinstance(p, UninitializedParameter):
                object.__setattr__(p, "owner", f"{self.where}: {pname}")

    def has_uninitialized_params(self) -> bool:
        return any(isinstance(p, UninitializedParameter) for p in self._parameters.values())

    def _become(self, weight_shape, x) -> None:
        """Make weight and bias for input ``x`` and turn into ``cls_to_become``."""
        _weight_fits(type(self).__name__, weight_shape)
        dtype = x.dtype if x.dtype.kind == "f" else np.float32
        weight, bias = self.weight, self.bias
        weight.materialize(np.empty(weight_shape, dtype=dtype))
        if bias is not None:
            bias.materialize(np.empty(weight_shape[0], dtype=dtype))
        lazy_name = type(self).__name__
        object.__setattr__(self, "__class__", self.cls_to_become)
        name = type(self).__name__
        object.__setattr__(self, "where", self.where.replace(lazy_name, name, 1))
        self.reset_parameters()                       # drawn on the host, then moved
        for p in (weight, bias):
            if p is not None:
                p.array = B.to_backend(p.array, x.backend)


class LazyConv2d(_LazyMixin, Conv2d):
    """``Conv2d`` whose ``in_channels`` come from the first input (N, C, H, W)."""

    cls_to_become = Conv2d

    def __init__(self, out_channels, kernel_size, stride=1, padding=0, bias=True, groups=1):
        Module.__init__(self)
        self.in_channels = 0                      # PyTorch prints LazyConv2d(0, 6, ...)
        self.out_channels = check_int(out_channels, "out_channels", "LazyConv2d", 1,
                                      type_error=ValueError)
        self.kernel_size = pair(kernel_size, "kernel_size", "LazyConv2d", 1)
        self.stride = pair(stride, "stride", "LazyConv2d", 1)
        self.padding = pair(padding, "padding", "LazyConv2d", 0)
        self.groups = check_groups(groups, "LazyConv2d", None, self.out_channels)
        self._placeholders(check_bool(bias, "bias", "LazyConv2d"))

    def forward(self, x):
        x = x if isinstance(x, Tensor) else Tensor(x)
        if x.ndim != 4:
            raise ValueError(f"{self.where}: expected a 4-D input (N, C, H, W) to read C "
                             f"from, got shape {tuple(x.shape)}")
        C = check_int(x.shape[1], "the input's channels", self.where, 1)
        if C % self.groups:
            raise ValueError(f"{self.where}: in_channels must be divisible by groups, got "
                             f"an input of shape {tuple(x.shape)} ({C} channels), "
                             f"groups={self.groups}")
        KH, KW = self.kernel_size
        self.in_channels = C
        self._become((self.out_channels, C // self.groups, KH, KW), x)
        return self.forward(x)                    # now Conv2d.forward


class LazyLinear(_LazyMixin, Linear):
    """``Linear`` whose ``in_features`` come from the first input's last dimension."""

    cls_to_become = Linear

    def __init__(self, out_features, bias=True):
        Module.__init__(self)
        self.in_features = 0
        self.out_features = check_int(out_features, "out_features", "LazyLinear", 1,
                                      type_error=ValueError)
        self._placeholders(check_bool(bias, "bias", "LazyLinear"))

    def forward(self, x):
        x = x if isinstance(x, Tensor) else Tensor(x)
        if x.ndim < 1 or x.shape[-1] < 1:
            raise ValueError(f"{self.where}: expected an input (N, features) to read the "
                             f"features from, got shape {tuple(x.shape)}")
        self.in_features = int(x.shape[-1])
        self._become((self.out_features, self.in_features), x)
        return self.forward(x)                    # now Linear.forward
