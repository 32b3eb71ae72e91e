"""The short names d2l's code calls through ``d2l.`` (``d2l.size(y)``, ``d2l.argmax(...)``),
each the tinyalex function or Tensor method of the same meaning (d2l's ``config.ini``
aliases for PyTorch)."""

from __future__ import annotations

import numpy as np

from .. import ones, rand, randn, tensor, zeros  # noqa: F401  (re-exported)
from ..ops import exp, log, matmul  # noqa: F401  (re-exported)

float32 = np.float32
int32 = np.int32
int64 = np.int64


def numpy(x, *args, **kwargs):
    """A host NumPy copy, cut from the graph."""
    return x.detach().numpy(*args, **kwargs)


def size(x, *args, **kwargs):
    """The number of elements."""
    return x.numel(*args, **kwargs)


def reshape(x, *args, **kwargs):
    return x.reshape(*args, **kwargs)


def to(x, *args, **kwargs):
    return x.to(*args, **kwargs)


def reduce_sum(x, *args, **kwargs):
    return x.sum(*args, **kwargs)


def reduce_mean(x, *args, **kwargs):
    return x.mean(*args, **kwargs)


def argmax(x, *args, **kwargs):
    return x.argmax(*args, **kwargs)


def astype(x, *args, **kwargs):
    return x.type(*args, **kwargs)


__all__ = ["argmax", "astype", "exp", "float32", "int32", "int64", "log", "matmul", "numpy",
           "ones", "rand", "randn", "reduce_mean", "reduce_sum", "reshape", "size", "tensor",
           "to", "zeros"]
