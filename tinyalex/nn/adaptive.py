"""``AdaptiveAvgPool2d`` and ``AdaptiveMaxPool2d``: pool to a given output size
(ops/adaptive_pool.py has PyTorch's window formula), and ``Identity``."""

from __future__ import annotations

from ..ops.adaptive_pool import AdaptivePool2d, output_size_pair
from .module import Module


class _AdaptivePool2d(Module):
    kind = None

    def __init__(self, output_size):
        super().__init__()
        output_size_pair(output_size, type(self).__name__)       # bad sizes fail here
        self.output_size = output_size

    def forward(self, x):
        return AdaptivePool2d(self.kind, self.output_size, self.where)(x)

    def extra_repr(self):
        return f"output_size={self.output_size}"


class AdaptiveAvgPool2d(_AdaptivePool2d):
    kind = "avg"


class AdaptiveMaxPool2d(_AdaptivePool2d):
    kind = "max"


class Identity(Module):
    """Returns its input (a placeholder, e.g. ResNet's shortcut without a 1x1 conv)."""

    def __init__(self, *args, **kwargs):
        super().__init__()

    def forward(self, x):
        return x
