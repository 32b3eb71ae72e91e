"""The elementwise ops and the fully connected layers' GEMM on the GPU (CuPy backend):
the kernels of ``cuda_kernels.py`` on the memory as it lies, one launch each, and
CuPy's matmul (strict FP32, as PyTorch's Linear layers by default). Dropout's mask is
the counter-based SplitMix64 one of ``tinyalex/random.py``, so a seed gives the
CPU's mask. Not yet run on a GPU: tested in CI under Numba's CUDA simulator on NumPy
arrays.
"""

from __future__ import annotations

import numpy as np

from tinyalex import backend as B
from tinyalex import random as R

from . import gpu_launch
from .layout import dense_view, undo_order


class _Elementwise:
    def __init__(self, xp, launch):
        from . import cuda_kernels  # noqa: PLC0415 - numba.cuda, loaded for a GPU set only
        self.xp, self.launch, self.loops = xp, launch, cuda_kernels

    def _unary(self, loop, x):
        t, order = dense_view(self.xp, x)
        out = self.xp.empty(t.shape, dtype=x.dtype)
        self.launch(loop, x.size, t.reshape(-1), out.reshape(-1))
        return undo_order(out, order)

    def _binary(self, loop, gy, y):
        if gy.shape != y.shape or gy.dtype != y.dtype:
            raise ValueError(f"elementwise backward: gradient {gy.shape} ({gy.dtype}) does "
                             f"not match the output {y.shape} ({y.dtype})")
        ty, order = dense_view(self.xp, y)
        tg, _ = dense_view(self.xp, gy, order)
        out = self.xp.empty(ty.shape, dtype=y.dtype)
        self.launch(loop, y.size, tg.reshape(-1), ty.reshape(-1), out.reshape(-1))
        return undo_order(out, order)


class ReluGPU(_Elementwise):
    name = "relu kernel"

    def forward(self, x):
        return self._unary(self.loops.relu_forward, x)

    def backward(self, gy, y):
        return self._binary(self.loops.relu_backward, gy, y)


class SigmoidGPU(_Elementwise):
    name = "sigmoid kernel"

    def forward(self, x):
        return self._unary(self.loops.sigmoid_forward, x)

    def backward(self, gy, y):
        return self._binary(self.loops.sigmoid_backward, gy, y)


class DropoutGPU(_Elementwise):
    name = "dropout kernel"

    def forward(self, x, p, seed):
        if not 0.0 <= p <= 1.0 or not 0 <= int(seed) < 2**64:
            raise ValueError(f"dropout: p must lie in [0, 1] and seed in [0, 2**64), got "
                             f"p={p!r}, seed={seed!r}")
        xc = self.xp.ascontiguousarray(x)          # the mask follows the C order of x
        y = self.xp.empty(x.shape, dtype=x.dtype)
        scale = x.dtype.type(0.0 if p == 1.0 else 1.0 / (1.0 - p))
        self.launch(self.loops.dropout, x.size, xc.reshape(-1), np.uint64(seed),
                    np.uint64(R.dropout_threshold(p)), scale, y.reshape(-1))
        return y

    backward = forward


class SgdUpdateGPU(_Elementwise):
    name = "sgd kernel"

    def __call__(self, param, grad, lr):
        if param.shape != grad.shape or not param.flags.c_contiguous or param.dtype != grad.dtype:
            raise ValueError(f"sgd_update: parameter {param.shape} ({param.dtype}) and "
                             f"gradient {grad.shape} ({grad.dtype}) do not match")
        g = grad if grad.flags.c_contiguous else self.xp.ascontiguousarray(grad)
        self.launch(self.loops.sgd_update, param.size, param.reshape(-1), g.reshape(-1),
                    param.dtype.type(lr))
        return param


class MatmulGPU(_Elementwise):
    name = "cuBLAS GEMM"

    def __call__(self, a, b):
        if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[0] or a.dtype != b.dtype:
            raise ValueError(f"matmul: expected (M, K) @ (K, N) of one dtype, got "
                             f"{a.shape} ({a.dtype}) @ {b.shape} ({b.dtype})")
        out = self.xp.empty((a.shape[0], b.shape[1]), dtype=a.dtype)   # (M, N)
        self.xp.matmul(a, b, out=out)                                   # (M, K) @ (K, N)
        return out


_cache = {}


def for_cupy(cls):
    """The algorithm ``cls`` (one of the classes above) on CuPy arrays, built once."""
    if cls not in _cache:
        _cache[cls] = cls(B.cupy_module(), gpu_launch.for_cupy())
    return _cache[cls]
