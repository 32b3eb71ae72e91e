"""Elementwise arithmetic, matrix product, reductions and reshapes.

Each op is a :class:`~tinyalex.tensor.Function` class with a lowercase wrapper,
as in DeZero. Binary ops broadcast like NumPy; their backward sums the gradient
back to each input's shape (:func:`sum_to`).
"""

from __future__ import annotations

import numbers

import numpy as np

from .. import backend as B
from ..tensor import DEFAULT_FLOAT, Function, Tensor


def sum_to(g, shape):
    """Sum ``g`` over the axes that broadcasting added or stretched to reach ``shape``."""
    if g.shape == tuple(shape):
        return g
    lead = g.ndim - len(shape)
    axes = tuple(range(lead)) + tuple(i + lead for i, n in enumerate(shape)
                                      if n == 1 and g.shape[i + lead] != 1)
    g = g.sum(axis=axes, keepdims=True)
    return g.reshape(shape) if lead else g


def _broadcast_shape(op, a, b):
    try:
        return np.broadcast_shapes(a.shape, b.shape)
    except ValueError:
        raise ValueError(f"{op}: shapes {a.shape} and {b.shape} cannot be broadcast "
                         "together") from None


def _promote(a, b, to_float=False):
    """PyTorch's dtype rule: an integer operand beside a float one takes the float's
    dtype; two integer operands of a true division give float32 (NumPy would give
    float64 in both cases)."""
    floats = [x.dtype for x in (a, b) if x.dtype.kind == "f"]
    if not floats and not to_float:
        return a, b
    dtype = floats[0] if floats else DEFAULT_FLOAT
    return a.astype(dtype, copy=False), b.astype(dtype, copy=False)


class _Binary(Function):
    true_division = False

    def forward(self, a, b):
        _broadcast_shape(self.name, a, b)
        self.a_shape, self.b_shape = a.shape, b.shape
        return self.compute(*_promote(a, b, self.true_division))


class Add(_Binary):
    def compute(self, a, b):
        return a + b

    def backward(self, gy):
        return sum_to(gy, self.a_shape), sum_to(gy, self.b_shape)


class Sub(_Binary):
    def compute(self, a, b):
        return a - b

    def backward(self, gy):
        return sum_to(gy, self.a_shape), sum_to(-gy, self.b_shape)


class Mul(_Binary):
    def compute(self, a, b):
        self.a, self.b = a, b
        return a * b

    def backward(self, gy):
        ga = sum_to(gy * self.b, self.a_shape) if self.needs_input_grad[0] else None
        gb = sum_to(gy * self.a, self.b_shape) if self.needs_input_grad[1] else None
        return ga, gb


class Div(_Binary):
    true_division = True

    def compute(self, a, b):
        self.a, self.b = a, b
        return a / b

    def backward(self, gy):
        ga = sum_to(gy / self.b, self.a_shape) if self.needs_input_grad[0] else None
        gb = (sum_to(-gy * self.a / (self.b * self.b), self.b_shape)
              if self.needs_input_grad[1] else None)
        return ga, gb


class Neg(Function):
    def forward(self, x):
        return -x

    def backward(self, gy):
        return -gy


class Power(Function):
    """``x ** c`` for a constant exponent c."""

    def __init__(self, c):
        self.c = float(c)

    def forward(self, x):
        self.x = x
        return x ** self.c

    def backward(self, gy):
        return gy * self.c * self.x ** (self.c - 1)


class Exp(Function):
    def forward(self, x):
        self.y = B.get_array_module(x).exp(x)
        return self.y

    def backward(self, gy):
        return gy * self.y


class Log(Function):
    def forward(self, x):
        self.x = x
        return B.get_array_module(x).log(x)

    def backward(self, gy):
        return gy / self.x


class MatMul(Function):
    """``a @ b`` for 2-D ``a`` (M, K) and ``b`` (K, N)."""

    def forward(self, a, b):
        if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[0]:
            raise ValueError(f"matmul: expected (M, K) @ (K, N), got {tuple(a.shape)} @ "
                             f"{tuple(b.shape)}")
        self.a, self.b = a, b
        return a @ b                                 # (M, N) = (M, K) @ (K, N)

    def backward(self, gy):
        ga = gy @ self.b.T if self.needs_input_grad[0] else None   # (M, K) = (M, N) @ (N, K)
        gb = self.a.T @ gy if self.needs_input_grad[1] else None   # (K, N) = (K, M) @ (M, N)
        return ga, gb


def _is_int(v) -> bool:
    return isinstance(v, numbers.Integral) and not isinstance(v, (bool, np.bool_))


def _normalize_axis(axis, ndim):
    if axis is None:
        return tuple(range(ndim))
    axes = (axis,) if _is_int(axis) else tuple(axis) if isinstance(axis, (tuple, list)) \
        else None
    if axes is None or not all(_is_int(a) for a in axes):
        raise TypeError(f"axis must be an int or a tuple of ints, got {axis!r}")
    if len(set(a % ndim if ndim else a for a in axes)) != len(axes):
        raise ValueError(f"axis {axis!r} names a dimension twice")
    for a in axes:
        if not -ndim <= a < ndim:
            raise ValueError(f"axis {a} is out of range for a tensor of {ndim} dimensions")
    return tuple(sorted(a % ndim for a in axes))


class Sum(Function):
    def __init__(self, axis=None, keepdims=False):
        self.axis, self.keepdims = axis, keepdims

    def forward(self, x):
        self.axes = _normalize_axis(self.axis, x.ndim)
        self.x_shape = x.shape
        return x.sum(axis=self.axes, keepdims=self.keepdims)

    def backward(self, gy):
        if not self.keepdims:
            gy = gy.reshape([1 if i in self.axes else n for i, n in enumerate(self.x_shape)])
        return B.get_array_module(gy).broadcast_to(gy, self.x_shape).copy()


class Reshape(Function):
    def __init__(self, shape):
        if not all(_is_int(s) for s in shape):
            raise TypeError(f"reshape: the shape must be ints, got {tuple(shape)!r}")
        if any(s < -1 for s in shape) or list(shape).count(-1) > 1:
            raise ValueError(f"reshape: sizes must be >= 0, with at most one -1 (inferred), "
                             f"got {tuple(shape)!r}")
        self.shape = tuple(int(s) for s in shape)

    def forward(self, x):
        self.x_shape = x.shape
        try:
            return x.reshape(self.shape)
        except ValueError:
            raise ValueError(f"reshape: cannot view shape {tuple(x.shape)} ({x.size} "
                             f"elements) as {self.shape}") from None

    def backward(self, gy):
        return gy.reshape(self.x_shape)


class GetItem(Function):
    """``x[index]`` (basic or integer-array indexing); backward scatters-adds."""

    def __init__(self, index):
        self.index = index

    def forward(self, x):
        self.x_shape, self.x_dtype = x.shape, x.dtype
        try:
            return x[self.index]
        except IndexError as exc:
            # out of range stays an IndexError (it ends Python's iteration protocol);
            # an index of the wrong kind (a float, a string) is a TypeError
            kind = IndexError if "out of bounds" in str(exc) or "too many" in str(exc) \
                else TypeError
            raise kind(f"index {self.index!r} into a tensor of shape "
                       f"{tuple(x.shape)}: {exc}") from None

    def backward(self, gy):
        gx = B.get_array_module(gy).zeros(self.x_shape, dtype=gy.dtype)
        B.scatter_add(gx, self.index, gy)
        return gx


def _unwrap_index(index):
    if isinstance(index, Tensor):
        return index.array
    if isinstance(index, tuple):
        return tuple(i.array if isinstance(i, Tensor) else i for i in index)
    return index


# -- lowercase wrappers -------------------------------------------------------------------

def add(a, b):
    return Add()(a, b)


def sub(a, b):
    return Sub()(a, b)


def mul(a, b):
    return Mul()(a, b)


def div(a, b):
    return Div()(a, b)


def neg(x):
    return Neg()(x)


def power(x, c):
    return Power(c)(x)


def exp(x):
    return Exp()(x)


def log(x):
    return Log()(x)


def matmul(a, b):
    return MatMul()(a, b)


def sum(x, axis=None, keepdims=False):  # noqa: A001 - mirrors torch.sum
    return Sum(axis, keepdims)(x)


def mean(x, axis=None, keepdims=False):
    x = x if isinstance(x, Tensor) else Tensor(x)
    count = int(np.prod([x.shape[a] for a in _normalize_axis(axis, x.ndim)]))
    return Sum(axis, keepdims)(x) / float(count)


def reshape(x, shape):
    return Reshape(shape)(x)


def getitem(x, index):
    return GetItem(_unwrap_index(index))(x)
