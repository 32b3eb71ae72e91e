"""The short names d2l's code calls through ``d2l.`` (``d2l.size(y)``, ``d2l.stack(...)``,
``d2l.reduce_sum(...)``): d2l's framework aliases for PyTorch, bound to the tinyalex
function or Tensor method of the same meaning.

d2l's ``torch.py`` ends each edition with such a list (``zeros = torch.zeros``, ``concat =
torch.cat``, ``transpose = lambda x: x.t()``, ...). Here is the union of the three
editions' lists (1.0's is the longest; 0.17 and d2l-zh have a subset), each bound to the
same tinyalex name or method as d2l binds it to PyTorch's.
"""

from __future__ import annotations

from .. import (abs, arange, bmm, cat, cos, cosh, eye, exp, float32, int32,  # noqa: A004
                int64, linspace, log, matmul, meshgrid, normal, ones, ones_like, rand,
                randn, sigmoid, sin, sinh, stack, tanh, tensor, zeros, zeros_like)

concat = cat
batch_matmul = bmm


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


def expand_dims(x, *args, **kwargs):
    return x.unsqueeze(*args, **kwargs)


def swapaxes(x, *args, **kwargs):
    return x.swapaxes(*args, **kwargs)


def repeat(x, *args, **kwargs):
    return x.repeat(*args, **kwargs)


__all__ = ["abs", "arange", "argmax", "astype", "batch_matmul", "concat", "cos", "cosh", "exp",
           "expand_dims", "eye", "float32", "int32", "int64", "linspace", "log", "matmul",
           "meshgrid", "normal", "numpy", "ones", "ones_like", "rand", "randn", "reduce_mean",
           "reduce_sum", "repeat", "reshape", "sigmoid", "sin", "sinh", "size", "stack",
           "swapaxes", "tanh", "tensor", "to", "transpose", "zeros", "zeros_like"]
