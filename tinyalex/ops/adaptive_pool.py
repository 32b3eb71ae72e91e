"""Adaptive average and max pooling: the output size is given, the windows follow.

For an input side of ``H`` and an output side of ``OH``, output row ``i`` pools input
rows ``start = floor(i * H / OH)`` to ``end = ceil((i + 1) * H / OH)`` (exclusive):
PyTorch's windows, which overlap by a row when ``OH`` does not divide ``H`` and tile
the input exactly when it does. Columns alike. ``(1, 1)`` is a global pool over the
whole image (NiN, GoogLeNet, ResNet, DenseNet end with it).

The reference loops over the OH*OW windows, each one NumPy reduction over (N, C) at
once; backward sends each window's gradient back to where it came from (every entry
gets gy / window size for the mean; the argmax entry for the max), and windows that
overlap add up.
"""

from __future__ import annotations

import numpy as np

from .. import backend as B
from ..checks import check_floating, is_int
from ..tensor import Function, Tensor


def adaptive_windows(size: int, out: int) -> list:
    """[(start, end), ...] of the ``out`` windows over ``size`` entries."""
    return [((i * size) // out, -((-(i + 1) * size) // out)) for i in range(out)]


def output_size_pair(output_size, where: str) -> tuple:
    """``7``, ``(7, 7)`` or ``(None, 7)`` (None keeps that input side) -> a pair."""
    pair = output_size if isinstance(output_size, (tuple, list)) else (output_size,) * 2
    if len(pair) != 2 or not all(v is None or (is_int(v) and v >= 1) for v in pair):
        raise ValueError(f"{where}: output_size must be a positive int or a pair of "
                         f"positive ints (or None to keep a side), got {output_size!r}")
    return tuple(None if v is None else int(v) for v in pair)


class AdaptivePool2d(Function):
    """``kind`` "avg" or "max" over (N, C, H, W) -> (N, C, OH, OW)."""

    def __init__(self, kind: str, output_size, where: str):
        self.kind, self.where = kind, where
        self.output_size = output_size_pair(output_size, where)

    @property
    def torch_name(self):
        return "AdaptiveAvgPool2DBackward0" if self.kind == "avg" \
            else "AdaptiveMaxPool2DBackward0"

    def forward(self, x):
        check_floating(x.dtype, self.where)
        if x.ndim != 4 or 0 in x.shape:
            raise ValueError(f"{self.where}: expected a non-empty 4-D input (N, C, H, W), "
                             f"got shape {tuple(x.shape)}")
        xp = B.get_array_module(x)
        N, C, H, W = x.shape
        OH, OW = (H if self.output_size[0] is None else self.output_size[0],
                  W if self.output_size[1] is None else self.output_size[1])
        rows, cols = adaptive_windows(H, OH), adaptive_windows(W, OW)
        y = xp.empty((N, C, OH, OW), dtype=x.dtype)
        argmax = []
        for i, (h0, h1) in enumerate(rows):
            for j, (w0, w1) in enumerate(cols):
                win = x[:, :, h0:h1, w0:w1].reshape(N, C, -1)          # (N, C, window)
                if self.kind == "avg":
                    y[:, :, i, j] = win.mean(axis=2)
                else:
                    k = win.argmax(axis=2)                               # (N, C)
                    argmax.append(k)
                    y[:, :, i, j] = xp.take_along_axis(win, k[..., None], axis=2)[..., 0]
        self.saved = (x.shape, rows, cols, argmax)
        return y

    def backward(self, gy):
        (N, C, H, W), rows, cols, argmax = self.saved
        xp = B.get_array_module(gy)
        gx = xp.zeros((N, C, H, W), dtype=gy.dtype)
        n = 0
        for i, (h0, h1) in enumerate(rows):
            for j, (w0, w1) in enumerate(cols):
                size = (h1 - h0) * (w1 - w0)
                if self.kind == "avg":
                    gx[:, :, h0:h1, w0:w1] += (gy[:, :, i, j] / size)[..., None, None]
                else:
                    g = xp.zeros((N * C, size), dtype=gy.dtype)          # (N*C, window)
                    g[xp.arange(N * C), argmax[n].reshape(-1)] = gy[:, :, i, j].reshape(-1)
                    gx[:, :, h0:h1, w0:w1] += g.reshape(N, C, h1 - h0, w1 - w0)
                    n += 1
        return gx


def adaptive_avg_pool2d(input, output_size):
    x = input if isinstance(input, Tensor) else Tensor(input)
    return AdaptivePool2d("avg", output_size, "adaptive_avg_pool2d")(x)


def adaptive_max_pool2d(input, output_size, return_indices=False):
    if return_indices:
        raise NotImplementedError("adaptive_max_pool2d: return_indices=True is not "
                                  "supported; call it with return_indices=False")
    x = input if isinstance(input, Tensor) else Tensor(input)
    return AdaptivePool2d("max", output_size, "adaptive_max_pool2d")(x)
