"""Reductions along a dimension beyond sum and mean (``ops/basic.py``): max and min
(with their indices), argmax/argmin, prod, var and std, softmax and log_softmax.

Each takes PyTorch's ``dim=``/``keepdim=`` (NumPy's ``axis=``/``keepdims=`` too) and
returns what PyTorch returns: ``x.max()`` a 0-d tensor, ``x.max(dim)`` a
``(values, indices)`` named tuple; ``var``/``std`` are unbiased unless told
(``correction=0`` or ``unbiased=False``).
"""

from __future__ import annotations

import collections

import numpy as np

from .. import backend as B
from ..tensor import Function, Tensor
from .basic import _expand_back, _is_int, check_dim, normalize_dims, reduction_args


def _return_type(name):
    """``torch.return_types.max(values=..., indices=...)``: a named tuple that prints
    as PyTorch's."""
    base = collections.namedtuple(name, ["values", "indices"])

    def __repr__(self):
        return (f"torch.return_types.{name}(\nvalues={self.values!r},\n"
                f"indices={self.indices!r})")
    return type(name, (base,), {"__repr__": __repr__, "__slots__": ()})


max_return = _return_type("max")
min_return = _return_type("min")


def _refuse_empty(x, name):
    if x.size == 0:
        raise RuntimeError(f"{name}(): expected reduction dim to be specified for "
                           f"input.numel() == 0 (shape {tuple(x.shape)}); specify the "
                           "reduction dim with the 'dim' argument")


class Extreme(Function):
    """``x.max()`` / ``x.min()`` over all elements; as PyTorch, the gradient is shared
    evenly among the elements that tie for the extreme."""

    def __init__(self, largest: bool):
        self.largest = largest

    @property
    def torch_name(self):
        return "MaxBackward1" if self.largest else "MinBackward1"

    def forward(self, x):
        _refuse_empty(x, "max" if self.largest else "min")
        y = x.max() if self.largest else x.min()
        self.hit = x == y
        return B.get_array_module(x).asarray(y)

    def backward(self, gy):
        hit = self.hit
        return hit * (gy / hit.sum()).astype(gy.dtype)


class ExtremeAlong(Function):
    """The values of ``x.max(dim)`` / ``x.min(dim)``; the indices (``self.indices``)
    route the gradient back to the element each value came from."""

    def __init__(self, dim, keepdim, largest: bool):
        self.dim, self.keepdim, self.largest = dim, keepdim, largest

    @property
    def torch_name(self):
        return "MaxBackward0" if self.largest else "MinBackward0"

    def forward(self, x):
        xp = B.get_array_module(x)
        d = check_dim(self.dim, x.ndim, x.shape)
        if x.ndim == 0:
            self.indices = xp.zeros((), dtype=np.int64)
            return x.copy()
        if x.shape[d] == 0:
            raise IndexError(f"max/min(): dim {self.dim} of a tensor of shape "
                             f"{tuple(x.shape)} is empty; there is nothing to choose")
        self.d, self.x_shape = d, x.shape
        idx = xp.expand_dims((x.argmax if self.largest else x.argmin)(axis=d), d)
        values = x[_along(idx, d)]
        if not self.keepdim:
            idx, values = idx.squeeze(d), values.squeeze(d)
        self.indices = idx.astype(np.int64, copy=False)
        return values

    def backward(self, gy):
        xp = B.get_array_module(gy)
        if not hasattr(self, "d"):                    # a 0-d input
            return gy
        idx = self.indices if self.keepdim else xp.expand_dims(self.indices, self.d)
        gy = gy if self.keepdim else xp.expand_dims(gy, self.d)
        gx = xp.zeros(self.x_shape, dtype=gy.dtype)
        gx[_along(idx, self.d)] = gy
        return gx


def _along(idx, axis):
    """The fancy index that picks, along ``axis``, the positions ``idx`` (same ndim as
    the array, size 1 along ``axis``): NumPy's take/put_along_axis, on any backend."""
    xp = B.get_array_module(idx)
    grids = [xp.arange(n).reshape([-1 if k == i else 1 for k in range(idx.ndim)])
             for i, n in enumerate(idx.shape)]
    grids[axis] = idx
    return tuple(grids)


def extreme(x, dim, keepdim, axis, keepdims, largest):
    name = "max" if largest else "min"
    dim, keepdim = reduction_args(dim, keepdim, axis, keepdims, name)
    if isinstance(dim, Tensor):
        raise TypeError(f"{name}(other): the elementwise {name} of two tensors is "
                        f"tinyalex.{name}imum(a, b), not available here; {name}(dim) "
                        "takes an int")
    if dim is None:
        return Extreme(largest)(x)
    node = ExtremeAlong(dim, keepdim, largest)
    values = node(x)
    indices = Tensor(node.indices)
    return (max_return if largest else min_return)(values, indices)


def arg_extreme(x, dim, keepdim, axis, keepdims, largest) -> Tensor:
    """argmax / argmin: int64 indices, no gradient; ``dim=None`` indexes the
    flattened tensor."""
    name = "argmax" if largest else "argmin"
    dim, keepdim = reduction_args(dim, keepdim, axis, keepdims, name)
    a = x.array
    if dim is None:
        _refuse_empty(a, name)
        out = a.argmax() if largest else a.argmin()
        shape = (1,) * a.ndim if keepdim else ()
        return Tensor(B.get_array_module(a).asarray(out, dtype=np.int64).reshape(shape))
    d = check_dim(dim, a.ndim, a.shape)
    if a.ndim == 0:
        return Tensor(B.get_array_module(a).zeros((), dtype=np.int64))
    out = (a.argmax if largest else a.argmin)(axis=d)
    out = B.get_array_module(a).expand_dims(out, d) if keepdim else out
    return Tensor(out.astype(np.int64, copy=False))


class Prod(Function):
    """The product over ``dim``; backward multiplies, for each element, the products
    of the elements before and after it (exact where some are zero)."""

    def __init__(self, dim):
        self.dim = dim

    def forward(self, x):
        xp = B.get_array_module(x)
        self.x = x
        if self.dim is None or x.ndim == 0:
            return xp.asarray(x.prod())
        return x.prod(axis=check_dim(self.dim, x.ndim, x.shape))

    def backward(self, gy):
        xp = B.get_array_module(gy)
        x = self.x
        d = check_dim(self.dim, x.ndim) if self.dim is not None and x.ndim else None
        if x.ndim == 0:
            return gy * xp.ones_like(x)
        rows = x.reshape(1, -1) if d is None else xp.moveaxis(x, d, -1)   # (..., n)
        ones = xp.ones(rows.shape[:-1] + (1,), dtype=x.dtype)
        before = xp.cumprod(xp.concatenate([ones, rows[..., :-1]], -1), axis=-1)
        after = xp.flip(xp.cumprod(xp.concatenate(
            [ones, xp.flip(rows, -1)[..., :-1]], -1), axis=-1), -1)
        others = before * after                               # (..., n)
        if d is None:
            return (others.reshape(x.shape) * gy).astype(x.dtype, copy=False)
        return xp.moveaxis(others * xp.expand_dims(gy, -1), -1, d)


def prod(x, dim=None, keepdim=False, *, axis=None, keepdims=None):
    dim, keepdim = reduction_args(dim, keepdim, axis, keepdims, "prod")
    y = Prod(dim)(x)
    if keepdim:
        shape = [1] * x.ndim if dim is None else \
            [1 if i == check_dim(dim, x.ndim) else n for i, n in enumerate(x.shape)]
        y = y.reshape(shape)
    return y


class Variance(Function):
    """``var`` (or ``std`` with ``root``): the sum of squared deviations from the mean
    over ``dim``, divided by ``count - correction`` (PyTorch's default 1: unbiased)."""

    def __init__(self, dim, keepdim, correction, root):
        self.dim, self.keepdim, self.correction, self.root = dim, keepdim, correction, root

    @property
    def torch_name(self):
        return "StdBackward0" if self.root else "VarBackward0"

    def forward(self, x):
        xp = B.get_array_module(x)
        if x.dtype.kind != "f":
            raise RuntimeError(f"std and var only support floating point dtypes, got "
                               f"{x.dtype}; convert with .float()")
        self.dims = normalize_dims(self.dim, x.ndim, x.shape)
        self.x_shape = x.shape
        count = int(np.prod([x.shape[d] for d in self.dims]))
        self.divisor = x.dtype.type(max(0, count - self.correction))
        self.dev = x - x.mean(axis=self.dims, keepdims=True)
        with np.errstate(divide="ignore", invalid="ignore"):
            y = (self.dev * self.dev).sum(axis=self.dims, keepdims=self.keepdim) \
                / self.divisor
            if self.root:
                y = xp.sqrt(y)
        self.y = y
        return xp.asarray(y)

    def backward(self, gy):
        y = _expand_back(self.y, self.dims, self.x_shape, self.keepdim)
        gy = _expand_back(gy, self.dims, self.x_shape, self.keepdim)
        with np.errstate(divide="ignore", invalid="ignore"):
            g = 2 * self.dev / self.divisor * gy
            if self.root:
                g = g / (2 * y)
        return g.astype(self.dev.dtype, copy=False)


def variance(x, dim, unbiased, keepdim, correction, axis, keepdims, root):
    name = "std" if root else "var"
    if isinstance(dim, bool):               # torch's x.var(False): the unbiased flag
        dim, unbiased = None, dim
    dim, keepdim = reduction_args(dim, keepdim, axis, keepdims, name)
    if correction is not None and unbiased is not None:
        raise TypeError(f"{name}: give correction= or unbiased=, not both")
    if correction is None:
        correction = 1 if unbiased is None or unbiased else 0
    if not (_is_int(correction) or isinstance(correction, float)) or correction < 0:
        raise ValueError(f"{name}: correction must be a number >= 0, got {correction!r}")
    return Variance(dim, keepdim, correction, root)(x)


class Softmax(Function):
    """``exp(x) / sum(exp(x))`` along ``dim`` (shifted by the max, so no overflow);
    ``log`` gives log_softmax."""

    def __init__(self, dim, log: bool):
        self.dim, self.log = dim, log

    @property
    def torch_name(self):
        return "LogSoftmaxBackward0" if self.log else "SoftmaxBackward0"

    def forward(self, x):
        xp = B.get_array_module(x)
        if x.dtype.kind != "f":
            raise RuntimeError(f"softmax: expected a floating tensor, got {x.dtype}")
        d = self.d = check_dim(self.dim, x.ndim, x.shape) if x.ndim else None
        z = x - x.max(axis=d, keepdims=True)
        e = xp.exp(z)
        total = e.sum(axis=d, keepdims=True)
        self.y = z - xp.log(total) if self.log else e / total
        return self.y

    def backward(self, gy):
        xp = B.get_array_module(gy)
        if self.log:
            return gy - xp.exp(self.y) * gy.sum(axis=self.d, keepdims=True)
        return self.y * (gy - (gy * self.y).sum(axis=self.d, keepdims=True))


def _softmax_dim(dim, axis, name):
    if axis is not None:
        dim = axis
    if dim is None:
        raise TypeError(f"{name}() needs dim= (the dimension whose entries sum to 1), "
                        "as PyTorch's does")
    return dim


def softmax(x, dim=None, *, axis=None, dtype=None):
    if dtype is not None:
        x = x.astype(dtype)
    return Softmax(_softmax_dim(dim, axis, "softmax"), False)(x)


def log_softmax(x, dim=None, *, axis=None, dtype=None):
    if dtype is not None:
        x = x.astype(dtype)
    return Softmax(_softmax_dim(dim, axis, "log_softmax"), True)(x)
