"""The short names d2l's code calls through ``d2l.`` (``d2l.size(y)``, ``d2l.stack(...)``,
``d2l.reduce_sum(...)``): d2l's framework aliases for PyTorch, bound to the tinyalex
function or Tensor method of the same meaning.

d2l's ``torch.py`` ends each edition with such a list (``zeros = torch.zeros``, ``concat =
torch.cat``, ``transpose = lambda x: x.t()``, ...). These are the names of all three
editions' lists that tinyalex has; the rest (``meshgrid``, ``sin``, ``sinh``, ``cos``,
``cosh``, ``tanh``, ``batch_matmul``, ``expand_dims``, ``swapaxes``, ``repeat``) belong to
chapters past AlexNet and are absent, so a call to one fails by its name.
"""

from __future__ import annotations

from .. import (abs, arange, cat, eye, exp, float32, int32, int64, linspace,  # noqa: A004
                log, matmul, normal, ones, ones_like, rand, randn, stack, tensor, zeros,
                zeros_like)
from ..ops import sigmoid

concat = cat


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


def transpose(x, *args, **kwargs):
    """The transpose of a matrix, ``x.t()``: d2l's ``transpose`` takes one argument."""
    return x.t(*args, **kwargs)


__all__ = ["abs", "arange", "argmax", "astype", "concat", "exp", "eye", "float32", "int32",
           "int64", "linspace", "log", "matmul", "normal", "numpy", "ones", "ones_like",
           "rand", "randn", "reduce_mean", "reduce_sum", "reshape", "sigmoid", "size",
           "stack", "tensor", "to", "transpose", "zeros", "zeros_like"]
