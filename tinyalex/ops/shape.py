"""Ops that move, join or repeat elements without arithmetic: ``permute`` (and its
special cases ``transpose``, ``t``, ``.T``), ``cat``, ``stack`` and ``repeat``, each
with PyTorch's signature, errors and gradient."""

from __future__ import annotations

import numpy as np

from .. import backend as B
from ..tensor import Function, Tensor
from .basic import _is_int, check_dim


class Permute(Function):
    """The dimensions of x in a new order: output dim i is input dim ``dims[i]``;
    backward applies the inverse order."""

    def __init__(self, dims, torch_name="PermuteBackward0"):
        self.dims, self.torch_name = tuple(dims), torch_name

    def forward(self, x):
        return x.transpose(self.dims)

    def backward(self, gy):
        return gy.transpose(tuple(np.argsort(self.dims)))


def permute(x, *dims):
    dims = tuple(dims[0]) if len(dims) == 1 and isinstance(dims[0], (tuple, list)) else dims
    if not all(_is_int(d) for d in dims):
        raise TypeError(f"permute(): dims must be ints, got {dims!r}")
    if len(dims) != x.ndim:
        raise RuntimeError(f"permute(): the tensor has {x.ndim} dimensions (shape "
                           f"{tuple(x.shape)}) but dims {dims!r} has {len(dims)}")
    order = tuple(check_dim(d, x.ndim, x.shape) for d in dims)
    if len(set(order)) != len(order):
        raise RuntimeError(f"permute(): duplicate dims are not allowed, got {dims!r}")
    return Permute(order)(x)


def transpose(x, dim0, dim1):
    """x with dims ``dim0`` and ``dim1`` swapped."""
    order = list(range(x.ndim))
    a, b = check_dim(dim0, x.ndim, x.shape), check_dim(dim1, x.ndim, x.shape)
    if x.ndim < 2:
        return Permute(order, "TransposeBackward0")(x)
    order[a], order[b] = order[b], order[a]
    return Permute(order, "TransposeBackward0")(x)


def t(x):
    """The transpose of a matrix; a 0-d or 1-D tensor as it is (PyTorch's ``t()``)."""
    if x.ndim > 2:
        raise RuntimeError(f"t() expects a tensor with <= 2 dimensions, but self is "
                           f"{x.ndim}D (shape {tuple(x.shape)}); use "
                           "transpose(dim0, dim1) or permute")
    return Permute(tuple(reversed(range(x.ndim))), "TBackward0")(x)


def T(x):
    """``x.T``: all dims reversed (PyTorch deprecates it beyond 2-D, NumPy's rule)."""
    return Permute(tuple(reversed(range(x.ndim))))(x)


def _join_dtype(arrays):
    """PyTorch's promotion for joined tensors: the widest float among the floating
    ones, else NumPy's rule for the integers and bools."""
    floats = [a.dtype for a in arrays if a.dtype.kind == "f"]
    return np.result_type(*floats) if floats else np.result_type(*(a.dtype for a in arrays))


class Cat(Function):
    """Tensors joined along ``dim``; backward hands each its slice of the gradient."""

    mixed_dtypes = True

    def __init__(self, dim, new_axis=False):
        self.dim, self.new_axis = dim, new_axis

    @property
    def torch_name(self):
        return "StackBackward0" if self.new_axis else "CatBackward0"

    def forward(self, *arrays):
        xp = B.get_array_module(*arrays)
        dtype = _join_dtype(arrays)
        self.dtypes = [a.dtype for a in arrays]
        arrays = [a.astype(dtype, copy=False) for a in arrays]
        if self.new_axis:
            return xp.stack(arrays, axis=self.dim)
        self.sizes = [a.shape[self.dim] for a in arrays]
        return xp.concatenate(arrays, axis=self.dim)

    def backward(self, gy):
        if self.new_axis:
            parts = [gy.take(i, axis=self.dim) for i in range(len(self.dtypes))]
        else:
            cuts = np.cumsum(self.sizes)[:-1].tolist()
            parts = B.get_array_module(gy).split(gy, cuts, axis=self.dim)
        return tuple(g.astype(dt, copy=False) if need else None
                     for g, dt, need in zip(parts, self.dtypes, self.needs_input_grad))


def _tensor_list(tensors, name):
    if isinstance(tensors, Tensor) or not isinstance(tensors, (list, tuple)):
        raise TypeError(f"{name}(): expected a list or tuple of Tensors, got "
                        f"{type(tensors).__name__}")
    if not tensors:
        raise (ValueError if name == "cat" else RuntimeError)(
            f"{name}(): expected a non-empty list of Tensors")
    return [x if isinstance(x, Tensor) else Tensor(x) for x in tensors]


def cat(tensors, dim=0, *, axis=None):
    """``torch.cat``: the tensors joined along the existing dimension ``dim``; all
    other sizes must match."""
    dim = dim if axis is None else axis
    tensors = _tensor_list(tensors, "cat")
    first = tensors[0]
    for i, x in enumerate(tensors):
        if x.ndim == 0:
            raise RuntimeError(f"cat(): zero-dimensional tensor (at position {i}) cannot "
                               "be concatenated")
        if x.ndim != first.ndim:
            raise RuntimeError(f"cat(): tensors must have the same number of dimensions: "
                               f"got {first.ndim} (shape {tuple(first.shape)}, tensor 0) "
                               f"and {x.ndim} (shape {tuple(x.shape)}, tensor {i})")
    d = check_dim(dim, first.ndim, first.shape)
    for i, x in enumerate(tensors):
        for k, (a, b) in enumerate(zip(first.shape, x.shape)):
            if k != d and a != b:
                raise RuntimeError(
                    f"cat(): sizes of tensors must match except in dimension {d}. Expected "
                    f"size {a} but got size {b} for tensor number {i} in the list "
                    f"(shapes {tuple(first.shape)} and {tuple(x.shape)})")
    return Cat(d)(*tensors)


def stack(tensors, dim=0, *, axis=None):
    """``torch.stack``: equal-shaped tensors joined along a new dimension ``dim``."""
    dim = dim if axis is None else axis
    tensors = _tensor_list(tensors, "stack")
    first = tensors[0]
    for i, x in enumerate(tensors):
        if x.shape != first.shape:
            raise RuntimeError(f"stack expects each tensor to be equal size, but got "
                               f"{list(first.shape)} at entry 0 and {list(x.shape)} at "
                               f"entry {i}")
    d = check_dim(dim, first.ndim + 1, first.shape)
    return Cat(d, new_axis=True)(*tensors)


class Repeat(Function):
    """x tiled ``reps`` times along each dim (PyTorch's ``repeat``, NumPy's ``tile``);
    backward sums the copies: gy viewed as (r0, s0, r1, s1, ...), summed over the r's."""

    def __init__(self, reps):
        self.reps = reps

    def forward(self, x):
        self.x_shape = (1,) * (len(self.reps) - x.ndim) + x.shape
        return B.get_array_module(x).tile(x.reshape(self.x_shape), self.reps)

    def backward(self, gy):
        pairs = [n for r, s in zip(self.reps, self.x_shape) for n in (r, s)]
        g = gy.reshape(pairs).sum(axis=tuple(range(0, len(pairs), 2)))
        return g.reshape(self.input_shapes[0])


def repeat(x, *reps):
    reps = tuple(reps[0]) if len(reps) == 1 and isinstance(reps[0], (tuple, list)) else reps
    if not all(_is_int(r) and r >= 0 for r in reps):
        raise TypeError(f"repeat(): the repeats must be ints >= 0, got {reps!r}")
    if len(reps) < x.ndim:
        raise RuntimeError(f"repeat(): the number of repeats ({len(reps)}) can not be "
                           f"smaller than the number of dimensions of the tensor "
                           f"({x.ndim}, shape {tuple(x.shape)})")
    return Repeat(reps)(x)
