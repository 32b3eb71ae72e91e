"""The elementwise ops on the CPU: checked calls of
the loops in ``numba_elementwise.py``, on the memory as it lies (whatever its axis
order), cut into ranges for threads (``cpu_threads.ranges``).

* ReLU: ``max(x, 0)``; backward ``gy * (y > 0)`` from the forward's output y.
* Sigmoid: float32 by the vectorised loop with its own ``exp``; float64 with NumPy's
  SIMD ``exp`` in one buffer (``exp(-x)`` overflows to inf for very negative x, and
  ``1 / inf = 0`` is the right limit, so no warning is raised). Backward
  ``gy * y * (1 - y)`` in y's dtype.
* Dropout: ``x / (1-p)`` where SplitMix64(seed, i) keeps element i (in C order),
  else 0; backward is the same call on the gradient.

The fully connected layers' GEMM is in ``dense_cpu.py``, the SGD update in ``sgd_cpu.py``.
"""

from __future__ import annotations

import numpy as np

from tinyalex import random as R

from . import cpu_threads, numba_elementwise as loops
from .layout import dense_view, undo_order


def _unary(loop, x):
    t, order = dense_view(np, x)
    out = np.empty(t.shape, dtype=x.dtype)
    src, dst = t.reshape(-1), out.reshape(-1)
    cpu_threads.parallel([lambda i0=i0, i1=i1: loop(src, dst, i0, i1)
                          for i0, i1 in cpu_threads.ranges(src.size)])
    return undo_order(out, order)


def _binary(loop, gy, y, *extra):
    """loop(gy, y, out, *extra, i0, i1) over y's memory order."""
    if gy.shape != y.shape or gy.dtype != y.dtype:
        raise ValueError(f"elementwise backward: gradient {gy.shape} ({gy.dtype}) does not "
                         f"match the output {y.shape} ({y.dtype})")
    ty, order = dense_view(np, y)
    tg, _ = dense_view(np, gy, order)
    out = np.empty(ty.shape, dtype=y.dtype)
    g, yy, res = tg.reshape(-1), ty.reshape(-1), out.reshape(-1)
    cpu_threads.parallel([lambda i0=i0, i1=i1: loop(g, yy, res, *extra, i0, i1)
                          for i0, i1 in cpu_threads.ranges(res.size)])
    return undo_order(out, order)


class ReluCPU:
    name = "relu loop"

    def forward(self, x):
        return _unary(loops.relu_forward, x)

    def backward(self, gy, y):
        return _binary(loops.relu_backward, gy, y)


class SigmoidCPU:
    name = "sigmoid loop"

    def forward(self, x):
        if x.dtype == np.float32:
            return _unary(loops.forward_float32, x)
        t, order = dense_view(np, x)
        out = np.empty(t.shape, dtype=x.dtype)
        with np.errstate(over="ignore", under="ignore"):
            np.negative(t, out=out)
            np.exp(out, out=out)
            out += 1
            np.reciprocal(out, out=out)
        return undo_order(out, order)

    def backward(self, gy, y):
        return _binary(loops.backward, gy, y, y.dtype.type(1))


class DropoutCPU:
    name = "dropout loop"
    seed_on_device = False             # the seed is drawn from the host generator

    def forward(self, x, p, seed):
        """x * scale where SplitMix64(seed, i) keeps element i (C order), else 0."""
        if not 0.0 <= p <= 1.0 or not 0 <= int(seed) < 2**64:
            raise ValueError(f"dropout: p must lie in [0, 1] and seed in [0, 2**64), got "
                             f"p={p!r}, seed={seed!r}")
        xc = np.ascontiguousarray(x).reshape(-1)   # the mask follows the C order of x
        y = np.empty(x.shape, dtype=x.dtype)
        flat = y.reshape(-1)
        scale = x.dtype.type(0.0 if p == 1.0 else 1.0 / (1.0 - p))
        seed, threshold = np.uint64(seed), np.uint64(R.dropout_threshold(p))
        cpu_threads.parallel([lambda i0=i0, i1=i1: loops.dropout(xc, seed, threshold, scale,
                                                                 flat, i0, i1)
                              for i0, i1 in cpu_threads.ranges(flat.size)])
        return y

    backward = forward                 # the same mask and scale on the gradient


RELU, SIGMOID, DROPOUT = ReluCPU(), SigmoidCPU(), DropoutCPU()
