"""The differentiable ops, each a Function with a lowercase wrapper; importing this
package binds Tensor's operators to them (``bind_tensor_operators``)."""

from .activation import dropout, relu, sigmoid
from .basic import (add, div, exp, getitem, log, matmul, mean, mul, neg, power, reshape,
                    sub, sum)
from .conv import conv2d
from .dense import flatten, linear
from .loss import cross_entropy
from .pool import avg_pool2d, max_pool2d

__all__ = ["add", "avg_pool2d", "conv2d", "cross_entropy", "div", "dropout", "exp",
           "flatten", "linear", "log", "matmul", "max_pool2d", "mean", "mul", "neg",
           "power", "relu", "reshape", "sigmoid", "sub", "sum"]


def bind_tensor_operators(Tensor) -> None:
    """``x + y``, ``x @ w``, ``x[i]``, ``x.sum()``, ... on tensors call the ops above:
    bound once, here, after the ops exist (DeZero's ``setup_variable``), so that
    tensor.py needs no import of the ops built on it."""
    Tensor.__add__ = add
    Tensor.__radd__ = lambda self, other: add(other, self)
    Tensor.__sub__ = sub
    Tensor.__rsub__ = lambda self, other: sub(other, self)
    Tensor.__mul__ = mul
    Tensor.__rmul__ = lambda self, other: mul(other, self)
    Tensor.__truediv__ = div
    Tensor.__rtruediv__ = lambda self, other: div(other, self)
    Tensor.__neg__ = neg
    Tensor.__pow__ = power
    Tensor.__matmul__ = matmul
    Tensor.__getitem__ = getitem
    Tensor.sum = lambda self, axis=None, keepdims=False: sum(self, axis, keepdims)
    Tensor.mean = lambda self, axis=None, keepdims=False: mean(self, axis, keepdims)
    Tensor.reshape = Tensor.view = lambda self, *shape: reshape(
        self, tuple(shape[0]) if len(shape) == 1 and isinstance(shape[0], (tuple, list))
        else shape)
    Tensor.exp = exp
    Tensor.log = log
    Tensor.relu = relu


from ..tensor import Tensor as _Tensor  # noqa: E402

bind_tensor_operators(_Tensor)
