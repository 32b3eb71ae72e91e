"""``BatchNorm1d``, ``BatchNorm2d`` and their lazy forms, with PyTorch's semantics.

    bn = nn.BatchNorm2d(16)           # weight (16,) = 1, bias (16,) = 0
    bn.running_mean, bn.running_var   # buffers: (16,) zeros and ones
    bn.num_batches_tracked            # int64 0-D, counts training batches

Training mode normalizes with the batch's statistics and updates the running ones
(unbiased variance, ``momentum`` 0.1; ``momentum=None`` a cumulative mean); eval mode
normalizes with the running ones. ``track_running_stats=False`` keeps no buffers and
always uses the batch. ``affine=False`` has no weight and bias. The state dict has
PyTorch's keys (``weight, bias, running_mean, running_var, num_batches_tracked``), so
weights trade with PyTorch through safetensors. The op is ``ops/batchnorm.py``.
"""

from __future__ import annotations

import numpy as np

from .. import backend as B
from ..checks import check_bool, check_int, check_number
from ..ops.batchnorm import batch_norm, check_batch_norm_input
from ..tensor import Parameter, Tensor, UninitializedParameter
from .module import Module


class _BatchNorm(Module):
    ranks, layout = (2, 3, 4), ""

    def __init__(self, num_features, eps=1e-5, momentum=0.1, affine=True,
                 track_running_stats=True):
        super().__init__()
        name = type(self).__name__
        self.num_features = check_int(num_features, "num_features", name, 1,
                                      type_error=ValueError)
        self._options(eps, momentum, affine, track_running_stats)
        self._make_state(self.num_features, np.float32, "numpy")

    def _options(self, eps, momentum, affine, track_running_stats):
        name = type(self).__name__
        self.eps = check_number(eps, "eps", name, positive=True)
        self.momentum = None if momentum is None else check_number(
            momentum, "momentum (or None for a cumulative average)", name, maximum=1.0)
        self.affine = check_bool(affine, "affine", name)
        self.track_running_stats = check_bool(track_running_stats, "track_running_stats",
                                              name)

    def _make_state(self, C, dtype, backend):
        xp = np                            # made on the host; .to() or a lazy layer moves them
        if self.affine:
            self.weight = Parameter(xp.ones(C, dtype=dtype))
            self.bias = Parameter(xp.zeros(C, dtype=dtype))
        else:
            self.weight = self.bias = None
        if self.track_running_stats:
            self.register_buffer("running_mean", Tensor(xp.zeros(C, dtype=dtype)))
            self.register_buffer("running_var", Tensor(xp.ones(C, dtype=dtype)))
            self.register_buffer("num_batches_tracked", Tensor(np.zeros((), np.int64)))
        else:
            self.register_buffer("running_mean", None)
            self.register_buffer("running_var", None)
            self.register_buffer("num_batches_tracked", None)

    def reset_running_stats(self):
        if self.track_running_stats:
            self.running_mean.array[...] = 0
            self.running_var.array[...] = 1
            self.num_batches_tracked.array[...] = 0

    def reset_parameters(self):
        self.reset_running_stats()
        if self.affine:
            self.weight.array[...] = 1
            self.bias.array[...] = 0

    def forward(self, x):
        x = x if isinstance(x, Tensor) else Tensor(x)
        use_batch = self.training or not self.track_running_stats
        check_batch_norm_input(x, self.num_features, use_batch, self.where, self.ranks,
                               self.layout)
        if self.training and self.track_running_stats:
            self.num_batches_tracked.array[...] += 1
        track = self.training and self.track_running_stats
        return batch_norm(x, self.running_mean if track or not use_batch else None,
                          self.running_var if track or not use_batch else None,
                          self.weight, self.bias, use_batch, self.momentum, self.eps,
                          self.num_batches_tracked, where=self.where)

    def extra_repr(self):
        return (f"{self.num_features}, eps={self.eps}, momentum={self.momentum}, "
                f"affine={self.affine}, track_running_stats={self.track_running_stats}")


class BatchNorm1d(_BatchNorm):
    """Batch normalization of (N, C) or (N, C, L) inputs, per channel C."""
    ranks, layout = (2, 3), "(N, C) or (N, C, L)"


class BatchNorm2d(_BatchNorm):
    """Batch normalization of (N, C, H, W) inputs, per channel C."""
    ranks, layout = (4,), "(N, C, H, W)"


class _LazyBatchNorm(_BatchNorm):
    """num_features read from the first input's C; then the layer becomes
    ``cls_to_become`` (as PyTorch's lazy modules do)."""

    cls_to_become = None

    def __init__(self, eps=1e-5, momentum=0.1, affine=True, track_running_stats=True):
        Module.__init__(self)
        self.num_features = 0
        self._options(eps, momentum, affine, track_running_stats)
        name = type(self).__name__
        if self.affine:
            self.weight = UninitializedParameter(name, "weight")
            self.bias = UninitializedParameter(name, "bias")
        else:
            self.weight = self.bias = None

    def _set_path(self, path: str) -> None:
        Module._set_path(self, path)
        for pname, p in self._parameters.items():
            if isinstance(p, UninitializedParameter):
                object.__setattr__(p, "owner", f"{self.where}: {pname}")

    def has_uninitialized_params(self) -> bool:
        return any(isinstance(p, UninitializedParameter) for p in self._parameters.values())

    def forward(self, x):
        x = x if isinstance(x, Tensor) else Tensor(x)
        check_batch_norm_input(x, None, False, self.where, self.ranks, self.layout)
        C = check_int(x.shape[1], "the input's channels", self.where, 1)
        dtype = x.dtype if x.dtype.kind == "f" else np.float32
        weight, bias = self.weight, self.bias
        self.num_features = C
        self._make_state(C, dtype, "numpy")
        if weight is not None:                 # the same Parameter objects, now filled
            weight.materialize(self.weight.array)
            bias.materialize(self.bias.array)
            self.weight, self.bias = weight, bias
        lazy_name = type(self).__name__
        object.__setattr__(self, "__class__", self.cls_to_become)
        object.__setattr__(self, "where", self.where.replace(lazy_name,
                                                             type(self).__name__, 1))
        for t in list(self.parameters()) + list(self.buffers()):
            t.array = B.to_backend(t.array, x.backend)
        return self.forward(x)


class LazyBatchNorm1d(_LazyBatchNorm, BatchNorm1d):
    cls_to_become = BatchNorm1d


class LazyBatchNorm2d(_LazyBatchNorm, BatchNorm2d):
    cls_to_become = BatchNorm2d
