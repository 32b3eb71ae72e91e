"""The differentiable ops, each a Function with a lowercase wrapper; importing this
package binds Tensor's operators and methods to them (``bind_tensor_operators``)."""

from .. import random
from .activation import dropout, relu, sigmoid
from .basic import (abs, add, check_dim, clone, div, exp, getitem, log, matmul, mean, mul,
                    neg, normalize_dims, power, reshape, setitem, sqrt, sub, sum)
from .conv import conv2d
from .dense import flatten, linear
from .elementwise import cos, cosh, sin, sinh, tanh
from .loss import cross_entropy
from .pool import avg_pool2d, max_pool2d
from .reduce import arg_extreme, extreme, log_softmax, prod, softmax, variance
from .shape import T, cat, permute, repeat, stack, t, transpose

__all__ = ["abs", "add", "avg_pool2d", "cat", "clone", "conv2d", "cos", "cosh",
           "cross_entropy", "div", "dropout", "exp", "flatten", "linear", "log",
           "log_softmax", "matmul", "max_pool2d", "mean", "mul", "neg", "permute",
           "power", "prod", "relu", "repeat", "reshape", "setitem", "sigmoid", "sin",
           "sinh", "softmax", "sqrt", "stack", "sub", "sum", "t", "tanh", "transpose"]


def _shape_args(shape):
    """``reshape(2, 3)`` or ``reshape((2, 3))``."""
    return tuple(shape[0]) if len(shape) == 1 and isinstance(shape[0], (tuple, list)) \
        else shape


def bind_tensor_operators(Tensor) -> None:
    """``x + y``, ``x @ w``, ``x[i]``, ``x[i] = v``, ``x.sum()``, ... on tensors call the
    ops above: bound once, here, after the ops exist (DeZero's ``setup_variable``), so
    that tensor.py needs no import of the ops built on it. Methods take PyTorch's
    arguments (``dim=``, ``keepdim=``), and NumPy's ``axis=``/``keepdims=`` where
    tinyalex took them before."""
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
    Tensor.__abs__ = abs
    Tensor.__matmul__ = matmul
    Tensor.__getitem__ = getitem
    Tensor.__setitem__ = setitem
    Tensor.sum = sum
    Tensor.mean = mean
    Tensor.reshape = Tensor.view = lambda self, *shape: reshape(self, _shape_args(shape))
    Tensor.exp = exp
    Tensor.log = log
    Tensor.relu = relu
    Tensor.sigmoid = sigmoid
    Tensor.sin, Tensor.cos, Tensor.tanh, Tensor.sinh, Tensor.cosh = sin, cos, tanh, sinh, cosh
    Tensor.swapaxes = Tensor.swapdims = transpose
    Tensor.repeat = repeat
    Tensor.abs = abs
    Tensor.sqrt = sqrt
    Tensor.pow = power
    Tensor.clone = clone
    Tensor.matmul = matmul
    Tensor.max = lambda self, dim=None, keepdim=False, *, axis=None, keepdims=None: \
        extreme(self, dim, keepdim, axis, keepdims, True)
    Tensor.min = lambda self, dim=None, keepdim=False, *, axis=None, keepdims=None: \
        extreme(self, dim, keepdim, axis, keepdims, False)
    Tensor.argmax = lambda self, dim=None, keepdim=False, *, axis=None, keepdims=None: \
        arg_extreme(self, dim, keepdim, axis, keepdims, True)
    Tensor.argmin = lambda self, dim=None, keepdim=False, *, axis=None, keepdims=None: \
        arg_extreme(self, dim, keepdim, axis, keepdims, False)
    Tensor.prod = prod
    Tensor.var = lambda self, dim=None, unbiased=None, keepdim=False, *, correction=None, \
        axis=None, keepdims=None: variance(self, dim, unbiased, keepdim, correction, axis,
                                           keepdims, False)
    Tensor.std = lambda self, dim=None, unbiased=None, keepdim=False, *, correction=None, \
        axis=None, keepdims=None: variance(self, dim, unbiased, keepdim, correction, axis,
                                           keepdims, True)
    Tensor.softmax = softmax
    Tensor.log_softmax = log_softmax
    Tensor.permute = permute
    Tensor.transpose = transpose
    Tensor.t = t
    Tensor.T = property(T)
    Tensor.flatten = lambda self, start_dim=0, end_dim=-1: flatten(self, start_dim, end_dim)
    Tensor.unsqueeze = lambda self, dim: reshape(self, _unsqueezed(self, dim))
    Tensor.squeeze = lambda self, dim=None: reshape(self, _squeezed(self, dim))
    # In place, as PyTorch: ``x += y`` and ``x.add_(y)`` write into x (through
    # setitem, so a recorded graph sees a new version of x and a leaf that requires
    # grad is refused outside no_grad(), as in d2l's ``param -= lr * param.grad``).
    Tensor.__iadd__ = Tensor.add_ = _in_place(add)
    Tensor.__isub__ = Tensor.sub_ = _in_place(sub)
    Tensor.__imul__ = Tensor.mul_ = _in_place(mul)
    Tensor.__itruediv__ = Tensor.div_ = _in_place(div)
    Tensor.copy_ = _in_place(lambda x, src: src)
    Tensor.fill_ = _in_place(lambda x, value: value)
    Tensor.zero_ = lambda self: _write(self, 0)
    Tensor.normal_ = lambda self, mean=0.0, std=1.0: _write(
        self, random.generator().normal(mean, std, self.shape))
    Tensor.uniform_ = lambda self, a=0.0, b=1.0: _write(
        self, random.generator().uniform(a, b, self.shape))


def _write(x, value):
    setitem(x, Ellipsis, value)
    return x


def _in_place(op):
    return lambda self, other: _write(self, op(self, other))


def _unsqueezed(x, dim):
    d = check_dim(dim, x.ndim + 1, x.shape)
    return x.shape[:d] + (1,) + x.shape[d:]


def _squeezed(x, dim):
    dims = normalize_dims(dim, x.ndim, x.shape)
    return tuple(n for i, n in enumerate(x.shape) if not (i in dims and n == 1))


from ..tensor import Tensor as _Tensor  # noqa: E402

bind_tensor_operators(_Tensor)
