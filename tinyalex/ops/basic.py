"""Elementwise arithmetic, matrix product, reductions and reshapes.

Each op is a :class:`~tinyalex.tensor.Function` class with a lowercase wrapper,
as in DeZero. Binary ops broadcast like NumPy; their backward sums the gradient
back to each input's shape (:func:`sum_to`).
"""

from __future__ import annotations

import numbers

import numpy as np

from .. import backend as B
from ..tensor import DEFAULT_FLOAT, Function, Tensor, is_grad_enabled


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

    torch_name = "PowBackward0"

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



def _product(a, b):
    """``a @ b`` (batched like NumPy's ``matmul``). A tiny product (a few terms per
    output, a few thousand multiplications in all: the book's examples) is computed as
    its definition reads, each product rounded, then the terms summed in order, so that
    it gives to the last bit what a loop over the same terms gives (d2l's channels
    section asserts that a 1x1 convolution as a matrix product equals its loops to
    1e-6: PyTorch passes; BLAS's fused multiply-adds fail about one draw in ten).
    Anything larger goes to BLAS."""
    k = a.shape[-1]
    if k <= 16 and a.size // k * b.shape[-1] * k <= 65536:
        xp = B.get_array_module(a)
        return xp.multiply(a[..., :, :, None], b[..., None, :, :]).sum(axis=-2)
    return a @ b


class MatMul(Function):
    """``a @ b`` for 2-D ``a`` (M, K) and ``b`` (K, N)."""

    torch_name = "MmBackward0"

    def forward(self, a, b):
        if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[0]:
            raise ValueError(f"matmul: expected (M, K) @ (K, N), got {tuple(a.shape)} @ "
                             f"{tuple(b.shape)}")
        self.a, self.b = a, b
        return _product(a, b)                        # (M, N) = (M, K) @ (K, N)

    def backward(self, gy):
        ga = gy @ self.b.T if self.needs_input_grad[0] else None   # (M, K) = (M, N) @ (N, K)
        gb = self.a.T @ gy if self.needs_input_grad[1] else None   # (K, N) = (K, M) @ (M, N)
        return ga, gb


class BatchedMatMul(Function):
    """``torch.matmul``'s other cases, as NumPy's ``matmul``: a 1-D operand is a row
    (on the left) or a column (on the right) that the result drops again, and leading
    (batch) dims broadcast. Backward: the 2-D rule on the promoted shapes, summed over
    the batch dims an operand was broadcast along."""

    torch_name = "MatmulBackward0"

    def forward(self, a, b):
        if a.ndim == 0 or b.ndim == 0 or a.shape[-1] != b.shape[-2 if b.ndim > 1 else 0]:
            raise ValueError(f"matmul: shapes {tuple(a.shape)} and {tuple(b.shape)} cannot "
                             "be multiplied: the last dim of the first must equal the "
                             "second-to-last (or only) dim of the second")
        self.a_shape, self.b_shape = a.shape, b.shape
        self.a = a[None, :] if a.ndim == 1 else a                 # (..., M, K)
        self.b = b[:, None] if b.ndim == 1 else b                 # (..., K, N)
        _broadcast_shape("matmul", self.a[..., :0, :0], self.b[..., :0, :0])
        y = _product(self.a, self.b)                              # (..., M, N)
        self.y_shape = y.shape
        if a.ndim == 1:
            y = y[..., 0, :]
        return y[..., 0] if b.ndim == 1 else y

    def backward(self, gy):
        xp = B.get_array_module(gy)
        gy = gy.reshape(self.y_shape)                             # (..., M, N)
        ga = gb = None
        if self.needs_input_grad[0]:                              # (..., M, K)
            ga = sum_to(gy @ xp.swapaxes(self.b, -1, -2), self.a.shape).reshape(self.a_shape)
        if self.needs_input_grad[1]:                              # (..., K, N)
            gb = sum_to(xp.swapaxes(self.a, -1, -2) @ gy, self.b.shape).reshape(self.b_shape)
        return ga, gb


def _is_int(v) -> bool:
    return isinstance(v, numbers.Integral) and not isinstance(v, (bool, np.bool_))


def check_dim(dim, ndim, shape=None) -> int:
    """One dimension index in ``[-ndim, ndim)``, made non-negative; PyTorch's
    IndexError otherwise (a 0-d tensor takes dims 0 and -1, as in PyTorch)."""
    if not _is_int(dim):
        raise TypeError(f"dim must be an int, got {dim!r}")
    n = max(ndim, 1)
    if not -n <= dim < n:
        where = f" for a tensor of shape {tuple(shape)}" if shape is not None else ""
        raise IndexError(f"Dimension out of range (expected to be in range of [{-n}, "
                         f"{n - 1}], but got {dim}){where}")
    return dim % n if ndim else 0


def normalize_dims(dim, ndim, shape=None) -> tuple:
    """The sorted non-negative dims that ``dim`` names (None: all of them)."""
    if dim is None:
        return tuple(range(ndim))
    dims = (dim,) if _is_int(dim) else tuple(dim) if isinstance(dim, (tuple, list)) \
        else None
    if dims is None or not all(_is_int(d) for d in dims):
        raise TypeError(f"dim must be an int or a tuple of ints, got {dim!r}")
    out = [check_dim(d, ndim, shape) for d in dims]
    for d in out:
        if out.count(d) > 1:
            raise RuntimeError(f"dim {d} appears multiple times in the list of dims "
                               f"{dim!r}")
    return tuple(sorted(d for d in out if d < ndim))


def reduction_args(dim, keepdim, axis, keepdims, where):
    """PyTorch's ``dim=``/``keepdim=`` or NumPy's ``axis=``/``keepdims=``, not both."""
    if axis is not None:
        if dim is not None:
            raise TypeError(f"{where}: give dim= or axis=, not both (got dim={dim!r}, "
                            f"axis={axis!r})")
        dim = axis
    if keepdims is not None:
        keepdim = keepdims
    return dim, bool(keepdim)


def _expand_back(gy, dims, x_shape, keepdim):
    """``gy`` of a reduction over ``dims`` with its reduced dims restored as 1s."""
    if keepdim:
        return gy
    return gy.reshape([1 if i in dims else n for i, n in enumerate(x_shape)])


class Sum(Function):
    def __init__(self, dim=None, keepdim=False):
        self.dim, self.keepdim = dim, keepdim

    def forward(self, x):
        self.dims = normalize_dims(self.dim, x.ndim, x.shape)
        self.x_shape = x.shape
        return x.sum(axis=self.dims, keepdims=self.keepdim)

    def backward(self, gy):
        gy = _expand_back(gy, self.dims, self.x_shape, self.keepdim)
        return B.get_array_module(gy).broadcast_to(gy, self.x_shape).copy()


class Mean(Function):
    """The sum divided by the count, in the input's floating dtype."""

    def __init__(self, dim=None, keepdim=False):
        self.dim, self.keepdim = dim, keepdim

    def forward(self, x):
        self.dims = normalize_dims(self.dim, x.ndim, x.shape)
        self.x_shape = x.shape
        if x.dtype.kind != "f":
            x = x.astype(DEFAULT_FLOAT)
        self.count = x.dtype.type(int(np.prod([x.shape[d] for d in self.dims])))
        return x.sum(axis=self.dims, keepdims=self.keepdim) / self.count

    def backward(self, gy):
        gy = _expand_back(gy, self.dims, self.x_shape, self.keepdim) / self.count
        return B.get_array_module(gy).broadcast_to(gy, self.x_shape).copy()


class Abs(Function):
    def forward(self, x):
        xp = B.get_array_module(x)
        self.sign = xp.sign(x)
        return xp.abs(x)

    def backward(self, gy):
        return gy * self.sign                # 0 at 0, as PyTorch


class Sqrt(Function):
    def forward(self, x):
        self.y = B.get_array_module(x).sqrt(x)
        return self.y

    def backward(self, gy):
        return gy / (2 * self.y)


class Clone(Function):
    """A copy that stays in the graph (the gradient passes through unchanged)."""

    def forward(self, x):
        return x.copy()

    def backward(self, gy):
        return gy


class Reshape(Function):
    torch_name = "ViewBackward0"

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
            raise _index_error(exc, self.index, x.shape) from None

    def backward(self, gy):
        gx = B.get_array_module(gy).zeros(self.x_shape, dtype=gy.dtype)
        B.scatter_add(gx, self.index, gy)
        return gx

    @property
    def torch_name(self):
        last = self.index[-1] if isinstance(self.index, tuple) and self.index \
            else self.index
        return ("SelectBackward0" if _is_int(last) else "SliceBackward0"
                if isinstance(last, slice) else "IndexBackward0")


def _index_error(exc, index, shape):
    # out of range stays an IndexError (it ends Python's iteration protocol); an index
    # of the wrong kind (a float, a string) is a TypeError
    kind = IndexError if "out of bounds" in str(exc) or "too many" in str(exc) \
        or "did not match" in str(exc) else TypeError
    return kind(f"index {index!r} into a tensor of shape {tuple(shape)}: {exc}")


def assign(target, index, value):
    """``target[index] = value`` on arrays, with PyTorch's errors for a bad index or a
    value whose shape does not broadcast to the indexed part."""
    try:
        target[index] = value
    except IndexError as exc:
        raise _index_error(exc, index, target.shape) from None
    except ValueError as exc:
        if "broadcast" not in str(exc) and "cannot assign" not in str(exc):
            raise
        part = target[index].shape
        raise RuntimeError(f"shape mismatch: value of shape {tuple(value.shape)} cannot be "
                           f"broadcast to the indexing result of shape {tuple(part)} "
                           f"(tensor of shape {tuple(target.shape)}, index {index!r})") \
            from None


class SetItem(Function):
    """``x[index] = value`` as a new version of x: PyTorch's in-place ``index_put_``.

    The output is a copy of x with the indexed part replaced; ``Tensor.__setitem__``
    (:func:`setitem`) makes it x's new contents and this node x's creator, so ops
    that used the old x keep the old values. Backward: the overwritten elements pass
    no gradient back to the old x; the value gets the gradient of the part it filled,
    summed over the dims it was broadcast along.
    """

    torch_name = "CopySlices"

    def __init__(self, index):
        self.index = index

    def forward(self, x, value):
        self.value_shape = value.shape
        out = x.copy()
        assign(out, self.index, value)
        return out

    def backward(self, gy):
        gx = gv = None
        if self.needs_input_grad[0]:
            gx = gy.copy()
            gx[self.index] = 0
        if self.needs_input_grad[1]:
            gv = sum_to(gy[self.index], self.value_shape)
        return gx, gv


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
    """``torch.matmul``: the matrix product (2-D @ 2-D), or with 1-D and batched
    operands as NumPy's matmul."""
    a_nd = a.ndim if isinstance(a, Tensor) else np.ndim(a)
    b_nd = b.ndim if isinstance(b, Tensor) else np.ndim(b)
    return (MatMul() if a_nd == b_nd == 2 else BatchedMatMul())(a, b)


def sum(x, dim=None, keepdim=False, *, axis=None, keepdims=None):  # noqa: A001
    """torch.sum: over ``dim`` (an int, a tuple, or None for all); NumPy's
    ``axis=``/``keepdims=`` are accepted too."""
    if axis is not None or keepdims is not None:
        dim, keepdim = reduction_args(dim, keepdim, axis, keepdims, "sum")
    return Sum(dim, keepdim)(x)


def mean(x, dim=None, keepdim=False, *, axis=None, keepdims=None):
    if axis is not None or keepdims is not None:
        dim, keepdim = reduction_args(dim, keepdim, axis, keepdims, "mean")
    return Mean(dim, keepdim)(x)


def abs(x):  # noqa: A001 - mirrors torch.abs
    return Abs()(x)


def sqrt(x):
    return Sqrt()(x)


def clone(x):
    return Clone()(x)


def setitem(x, index, value) -> None:
    """``x[index] = value`` (Tensor.__setitem__), as PyTorch's ``index_put_``.

    Where no gradient is recorded (neither x nor value requires grad, or under
    ``no_grad()``) the values are written into x's memory, so views of it (``.data``,
    a slice) see them. Otherwise x gets a new version: a copy with the part replaced,
    made by a :class:`SetItem` node that becomes x's creator (x then requires grad).
    A leaf that requires grad cannot be written into, as in PyTorch.

    The one difference from PyTorch: when a gradient is recorded and x is itself a
    view of another tensor (``x = y[0]``, ``x = y.reshape(...)``), only x changes;
    PyTorch would write through to y as well. Without a gradient, views behave as
    in PyTorch.
    """
    index = _unwrap_index(index)
    if isinstance(value, Tensor):
        if value.backend != x.backend:
            raise TypeError(f"assignment into a tensor on {x.backend} of a value on "
                            f"{value.backend}; move it with .to('{x.backend}')")
    else:
        value = Tensor(B.to_backend(np.asarray(value), x.backend)
                       if not B.is_cupy_array(value) else value)
    if not (is_grad_enabled() and (x.requires_grad or value.requires_grad)):
        assign(x.array, index, value.array.astype(x.dtype, copy=False))
        return
    if x.requires_grad and x.is_leaf:
        raise RuntimeError("a leaf Variable that requires grad is being used in an "
                           "in-place operation (x[index] = value); write under "
                           "tinyalex.no_grad(), or into x.data, or into a copy "
                           "(x.clone())")
    if x.dtype.kind != "f":
        raise RuntimeError(f"x[index] = value: a value that requires grad cannot be "
                           f"written into a tensor of dtype {x.dtype} (no gradient flows "
                           "through integers); convert x with .float() first")
    if value.dtype != x.dtype:
        value = value.astype(x.dtype)
    new = SetItem(index)(x, value)
    x.array, x._creator, x.requires_grad = new.array, new._creator, True


def reshape(x, shape):
    return Reshape(shape)(x)


def getitem(x, index):
    return GetItem(_unwrap_index(index))(x)
