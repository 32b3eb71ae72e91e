"""Tensors and reverse-mode automatic differentiation.

Every differentiable op is a :class:`Function`: ``forward`` maps input arrays to
one output array and keeps only what ``backward`` needs; ``backward`` maps the
gradient of the output to one gradient per input. Calling a Function on tensors
records it as the *creator* of its output, which is how the graph is built::

    class Square(Function):
        def forward(self, x):
            self.x = x                 # saved for backward
            return x * x

        def backward(self, gy):
            return 2 * self.x * gy     # d(x*x)/dx times the upstream gradient

    y = Square()(x)                    # y.creator is that Square node

``Tensor.backward`` walks the graph in reverse topological order with an explicit
work list (no recursion, so graphs of any depth work), sums the gradients of a
tensor used by several ops, and releases each node's saved arrays as soon as its
backward has run.

Writing into a tensor (``x[i, j] = v``, ``tinyalex/ops/basic.py: setitem``) is
PyTorch's in-place ``index_put_``. Where no gradient is recorded the values go into
x's memory. Where one is, x gets a new *version*: its array becomes a copy with the
part replaced and its creator a ``SetItem`` node whose inputs are the old version and
v, so the ops that used the old x keep the old values and their gradients stay right
(where PyTorch counts versions and refuses a backward through a modified tensor).
"""

from __future__ import annotations

import contextlib
import numbers

import numpy as np

from . import backend as B
from . import devices, printing
from .checks import NUMERIC_KINDS, check_dtype

# --------------------------------------------------------------------------------------
# Gradient mode
# --------------------------------------------------------------------------------------

_grad_enabled = True


def is_grad_enabled() -> bool:
    return _grad_enabled


@contextlib.contextmanager
def set_grad_enabled(mode: bool):
    """Context manager (and decorator) that turns graph recording on or off."""
    global _grad_enabled
    previous, _grad_enabled = _grad_enabled, bool(mode)
    try:
        yield
    finally:
        _grad_enabled = previous


def no_grad():
    """``with tinyalex.no_grad():`` records no graph (evaluation, SGD updates)."""
    return set_grad_enabled(False)


def enable_grad():
    return set_grad_enabled(True)


DEFAULT_FLOAT = np.float32


# --------------------------------------------------------------------------------------
# Function: the base class of every op
# --------------------------------------------------------------------------------------

class Function:
    """A differentiable op with one output.

    Subclasses implement

    * ``forward(self, *arrays) -> array``: computes the output from backend arrays
      (NumPy or CuPy) and saves on ``self`` what backward needs;
    * ``backward(self, grad_output) -> array or tuple of arrays``: one gradient per
      input, in input order (``None`` where an input needs none).

    ``self.needs_input_grad`` (a tuple of bools, one per input) is set before
    ``forward`` runs, so that an op can skip work no gradient will use.
    Options (stride, padding, ...) go to ``__init__``; inputs go to ``__call__``.
    """

    #: True for ops whose floating inputs may legitimately differ in dtype
    mixed_dtypes = False

    def __call__(self, *inputs):
        tensors = tuple(x if isinstance(x, Tensor) else as_tensor_like(x, inputs)
                        for x in inputs)
        self._check_inputs(tensors)
        record = _grad_enabled and any(t.requires_grad for t in tensors)
        self.needs_input_grad = tuple(record and t.requires_grad for t in tensors)
        out = self.forward(*(t.array for t in tensors))
        if record:
            # The graph keeps one edge per input, never the input tensors themselves:
            # the Function that made it, or the leaf whose .grad receives its gradient
            # (None where no gradient is needed). An activation no backward saved is
            # freed as soon as the caller drops it.
            self.edges = tuple(t._creator if t._creator is not None
                               else (t if t.requires_grad else None) for t in tensors)
            self.input_shapes = tuple(t.array.shape for t in tensors)
            self.input_dtypes = tuple(t.array.dtype for t in tensors)
            return Tensor(out, requires_grad=True, _creator=self)
        return Tensor(out)

    def forward(self, *arrays):  # pragma: no cover - abstract
        raise NotImplementedError(f"{type(self).__name__} does not implement forward")

    def backward(self, grad_output):  # pragma: no cover - abstract
        raise NotImplementedError(f"{type(self).__name__} does not implement backward")

    @property
    def name(self) -> str:
        return type(self).__name__

    #: the name PyTorch gives the backward of the same op, where it is not
    #: ``<name>Backward0`` (shown by a tensor's repr: ``grad_fn=<MmBackward0>``)
    torch_name: str | None = None

    @property
    def grad_fn_name(self) -> str:
        return self.torch_name or f"{self.name}Backward0"

    def _check_inputs(self, tensors):
        where = getattr(self, "where", self.name)   # e.g. "Conv2d layer '3'" for layers
        backends = {t.backend for t in tensors}
        if len(backends) > 1:
            desc = ", ".join(f"input {i}: {t.backend}" for i, t in enumerate(tensors))
            raise TypeError(f"{where}: inputs live on different backends ({desc}); "
                            "move them to one backend with .to('numpy') or .to('cupy')")
        if not self.mixed_dtypes:
            floats = {t.dtype for t in tensors if t.dtype.kind == "f"}
            if len(floats) > 1:
                desc = ", ".join(f"input {i}: {t.dtype}" for i, t in enumerate(tensors))
                raise TypeError(f"{where}: floating inputs have different dtypes "
                                f"({desc}); convert with .float() or .double()")

    def release(self):
        """Drop saved arrays and input references once backward has used them."""
        self.__dict__.clear()
        self._released = True


def as_tensor_like(value, peers) -> "Tensor":
    """Wrap a Python scalar or array given to an op beside tensors.

    A Python number takes the dtype and backend of the first floating tensor among
    ``peers`` (so ``x * 2`` stays float32 on x's backend).
    """
    if isinstance(value, numbers.Number) and not isinstance(value, bool):
        ref = next((p for p in peers if isinstance(p, Tensor)), None)
        if ref is not None:
            dtype = ref.dtype if ref.dtype.kind == "f" else None
            arr = ref.xp.asarray(value, dtype=dtype)
            if dtype is None and arr.dtype.kind == "f":
                arr = arr.astype(DEFAULT_FLOAT)
            return Tensor(arr)
    return tensor(value)


# --------------------------------------------------------------------------------------
# Size and Tensor
# --------------------------------------------------------------------------------------

class Size(tuple):
    """A tensor's shape: a tuple of ints that prints as PyTorch's ``torch.Size([1, 6])``
    (``tinyalex/printing.py`` says why that name). Slicing it or adding a tuple to it
    gives a Size; anything a tuple does, it does."""

    def __repr__(self) -> str:
        return printing.size_repr(self)

    __str__ = __repr__

    def __getitem__(self, index):
        item = tuple.__getitem__(self, index)
        return Size(item) if isinstance(index, slice) else item

    def __add__(self, other):
        if not isinstance(other, tuple):
            return NotImplemented
        return Size(tuple.__add__(self, other))

    def numel(self) -> int:
        n = 1
        for s in self:
            n *= s
        return n


class Tensor:
    """An n-dimensional array on a backend, with an optional gradient.

    ``array`` is the backend array (numpy.ndarray or cupy.ndarray) itself, shared, no
    copy: what the ops and kernels compute on. ``data`` is PyTorch's: the same memory
    as a Tensor outside the graph (``p.data = t`` replaces the values, as in PyTorch);
    ``numpy()`` is a host copy. ``grad`` is a Tensor holding the accumulated gradient of
    a leaf that ``requires_grad``.
    """

    __array_priority__ = 100  # so that ndarray * Tensor calls Tensor.__rmul__

    def __init__(self, data, requires_grad: bool = False, _creator: Function | None = None):
        if isinstance(data, Tensor):
            data = data.array
        elif not (isinstance(data, np.ndarray) or B.is_cupy_array(data)):
            data = np.asarray(data)
        if data.dtype.kind not in NUMERIC_KINDS:
            raise TypeError(f"a tensor holds numbers (bool, int or float), got an array of "
                            f"dtype {data.dtype}")
        if requires_grad and data.dtype.kind != "f":
            raise TypeError(f"only floating-point tensors can require gradients, got dtype "
                            f"{data.dtype}")
        self.array = data
        self.requires_grad = bool(requires_grad)
        self.grad: Tensor | None = None
        self._creator = _creator

    @property
    def data(self) -> "Tensor":
        """This tensor's memory as a tensor outside the graph (PyTorch's ``.data``):
        writing into it (``p.data[:] = 0``, ``p.data.normal_(0, 0.01)``) writes into this
        tensor, without autograd seeing it."""
        return Tensor(self.array)

    @data.setter
    def data(self, value) -> None:
        if isinstance(value, Tensor):
            value = value.array
        elif not (isinstance(value, np.ndarray) or B.is_cupy_array(value)):
            raise TypeError(f"Tensor.data must be set to a Tensor (or a NumPy/CuPy array), "
                            f"got {type(value).__name__}")
        self.array = value

    # -- description ---------------------------------------------------------------
    @property
    def shape(self) -> "Size":
        return Size(self.array.shape)

    @property
    def dtype(self):
        return self.array.dtype

    @property
    def ndim(self) -> int:
        return self.array.ndim

    def size(self, dim=None):
        """PyTorch's: the shape (a Size), or the size of dimension ``dim``. The
        number of elements is ``numel()``."""
        if dim is None:
            return self.shape
        if not isinstance(dim, numbers.Integral) or isinstance(dim, bool):
            raise TypeError(f"size(dim): dim must be an int, got {dim!r}")
        n = max(self.ndim, 1)
        if not -n <= dim < n or self.ndim == 0:
            raise IndexError(f"Dimension out of range (expected to be in range of [{-n}, "
                             f"{n - 1}], but got {dim}) for a tensor of shape "
                             f"{tuple(self.shape)}")
        return self.array.shape[dim]

    def numel(self) -> int:
        return int(self.array.size)

    def dim(self) -> int:
        return self.ndim

    def __len__(self) -> int:
        if self.ndim == 0:
            raise TypeError("len() of a 0-d tensor")
        return self.shape[0]

    @property
    def backend(self) -> str:
        return B.backend_of(self.array)

    @property
    def device(self) -> "devices.device":
        """Where the data lives, as PyTorch prints it: ``device(type='cpu')`` for the
        numpy backend, ``device(type='cuda', index=0)`` for cupy."""
        return devices.of_backend(self.backend)

    @property
    def xp(self):
        return B.get_array_module(self.array)

    @property
    def creator(self) -> Function | None:
        """The Function that produced this tensor (None for leaves)."""
        return self._creator

    @property
    def is_leaf(self) -> bool:
        return self._creator is None

    @property
    def grad_fn(self) -> Function | None:
        """PyTorch's name for :attr:`creator`."""
        return self._creator

    def __repr__(self) -> str:
        """As PyTorch prints a tensor (``tinyalex/printing.py`` has the rules)."""
        creator = self._creator
        return printing.tensor_repr(
            B.to_numpy(self.array), device=None if self.backend == "numpy" else "cuda:0",
            grad_fn=creator.grad_fn_name if creator is not None else None,
            requires_grad=self.requires_grad)

    def __format__(self, spec: str) -> str:
        """``f"{loss:.3f}"``: a 0-d tensor formats as its number (as in PyTorch); any
        other tensor only with an empty spec."""
        if self.ndim == 0:
            return format(self.item(), spec)
        if spec:
            raise TypeError(f"unsupported format string {spec!r} passed to "
                            f"Tensor.__format__: only a 0-d tensor formats as a number, "
                            f"this one has shape {tuple(self.shape)}; format t.item() of a "
                            "one-element tensor, or reduce it first (t.sum())")
        return repr(self)

    def __iter__(self):
        """The sub-tensors along dimension 0 (``for row in X``, ``zip(X, K)``), each
        an ``X[i]`` in the graph."""
        if self.ndim == 0:
            raise TypeError("iteration over a 0-d tensor")
        return (self[i] for i in range(len(self)))

    def __contains__(self, element) -> bool:
        """``v in t``: whether any element equals v (PyTorch's rule)."""
        other = element.array if isinstance(element, Tensor) else element
        return bool((self.array == other).any())

    # -- conversion ----------------------------------------------------------------
    def numpy(self) -> np.ndarray:
        """A host NumPy copy of the data (a view is never handed out for device data)."""
        return B.to_numpy(self.array).copy()

    def __array__(self, dtype=None, copy=None):
        """``np.asarray(t)`` (matplotlib, NumPy functions) for a tensor on the numpy
        backend; a tensor on the GPU must be copied explicitly with ``.numpy()``."""
        if self.backend != "numpy":
            raise TypeError("can't convert a cuda:0 tensor to a NumPy array implicitly; "
                            "use t.numpy() (or t.cpu()) to copy it to the host first")
        return self.array if dtype is None else self.array.astype(dtype, copy=False)

    def item(self):
        if self.array.size != 1:
            raise ValueError(f"item() needs a tensor with one element, got shape "
                             f"{tuple(self.shape)}")
        stats = self.__dict__.get("_device_stats")    # a loss made on the GPU (ops/loss.py):
        if stats is not None:                         # its value, accuracy count and label
            return stats.read()[0]                    # check come back in one copy
        return self.array.reshape(()).item()

    def __bool__(self):
        # As PyTorch: without this every tensor is truthy, so `if t == 0:` and
        # `t in [a, b]` would silently answer True.
        if self.array.size != 1:
            raise ValueError(f"the truth value of a tensor with more than one element is "
                             f"ambiguous (shape {tuple(self.shape)}); reduce it first, e.g. "
                             "(t == 0).numpy().all()")
        return bool(self.item())

    def __float__(self):
        return float(self.item())

    def __int__(self):
        return int(self.item())

    def tolist(self):
        return self.numpy().tolist()

    def detach(self) -> "Tensor":
        """The same data, cut from the graph."""
        return Tensor(self.array)

    def to(self, backend) -> "Tensor":
        """This tensor on another backend ("numpy" or "cupy") or device (``"cpu"``,
        ``"cuda"``, ``"cuda:0"``, a ``tinyalex.device``); a leaf stays a leaf."""
        backend = devices.backend_for(backend, "Tensor.to")
        data = B.to_backend(self.array, backend)
        if data is self.array:
            return self
        if self._creator is not None:
            return _Move(backend)(self)
        out = Tensor(data, requires_grad=self.requires_grad)
        return out

    def cpu(self) -> "Tensor":
        return self.to("numpy")

    def cuda(self) -> "Tensor":
        return self.to("cuda")

    def requires_grad_(self, requires_grad: bool = True) -> "Tensor":
        """Start (or stop) recording operations on this leaf, in place, as PyTorch."""
        if self._creator is not None and not requires_grad:
            raise RuntimeError("requires_grad_(False) on a tensor an op made: use "
                               "detach() to cut it from the graph")
        if requires_grad and self.dtype.kind != "f":
            raise RuntimeError(f"only floating-point tensors can require gradients, got "
                               f"dtype {self.dtype}")
        self.requires_grad = bool(requires_grad) or self._creator is not None
        return self

    def astype(self, dtype) -> "Tensor":
        dtype = check_dtype(dtype, "astype")
        if dtype == self.dtype:
            return self
        if dtype.kind == "f" and self.dtype.kind == "f":
            return _Cast(dtype)(self)
        return Tensor(self.array.astype(dtype))

    type = astype

    def float(self) -> "Tensor":
        return self.astype(np.float32)

    def double(self) -> "Tensor":
        return self.astype(np.float64)

    def long(self) -> "Tensor":
        return self.astype(np.int64)

    def int(self) -> "Tensor":
        return self.astype(np.int32)

    def bool(self) -> "Tensor":
        return self.astype(np.bool_)

    # -- autograd ------------------------------------------------------------------
    def backward(self, grad=None, retain_graph: bool = False) -> None:
        """Accumulate d(self)/d(leaf) * grad into every leaf's ``.grad``.

        ``grad`` defaults to 1 for a one-element tensor. Saved arrays are released as
        the walk goes unless ``retain_graph`` is set.
        """
        if not self.requires_grad:
            raise RuntimeError("backward() on a tensor that does not require grad (was it "
                               "computed under no_grad(), or from inputs that need none?)")
        if grad is None:
            if self.array.size != 1:
                raise RuntimeError(f"backward() without an explicit grad needs a tensor with "
                                   f"one element; this one has shape {tuple(self.shape)}")
            grad = self.xp.ones_like(self.array)
        else:
            grad = grad.array if isinstance(grad, Tensor) else self.xp.asarray(grad)
            if grad.shape != self.array.shape:
                raise ValueError(f"backward(): grad has shape {tuple(grad.shape)}, expected "
                                 f"the tensor's shape {tuple(self.shape)}")
            grad = grad.astype(self.dtype, copy=False)
        if self._creator is None:
            _accumulate_leaf(self, grad)
            return
        run_backward(self._creator, grad, retain_graph)

    # -- arithmetic: each a Function of tinyalex.ops, bound to Tensor once the ops
    #    exist (tinyalex/ops/__init__.py, ``bind_tensor_operators``): __add__, __sub__,
    #    __mul__, __truediv__ (and their reflections), __neg__, __pow__, __matmul__,
    #    __getitem__, sum, mean, reshape/view, exp, log, relu.

    # -- comparisons, without gradients ----------------------------------------------
    def _compare(self, other, op):
        other = other.array if isinstance(other, Tensor) else other
        return Tensor(op(self.array, other))

    def __eq__(self, other):
        return self._compare(other, lambda a, b: a == b)

    def __ne__(self, other):
        return self._compare(other, lambda a, b: a != b)

    def __lt__(self, other):
        return self._compare(other, lambda a, b: a < b)

    def __gt__(self, other):
        return self._compare(other, lambda a, b: a > b)

    def __le__(self, other):
        return self._compare(other, lambda a, b: a <= b)

    def __ge__(self, other):
        return self._compare(other, lambda a, b: a >= b)

    __hash__ = object.__hash__


class Parameter(Tensor):
    """A leaf tensor that a Module registers as one of its parameters."""

    def __init__(self, data, requires_grad: bool = True):
        super().__init__(data.array if isinstance(data, Tensor) else data,
                         requires_grad=requires_grad)

    def __repr__(self):
        return "Parameter containing:\n" + super().__repr__()


class UninitializedParameter(Parameter):
    """The parameter of a lazy layer (``nn.LazyConv2d``, ``nn.LazyLinear``) before its
    first forward, which gives its shape: it has no data yet, and any use of it (its
    shape, its values, an op) is a ValueError naming the layer. ``materialize`` turns
    this same object into a Parameter in place (as PyTorch's), so an optimizer or a
    list that already holds it sees the materialised weights.
    """

    def __init__(self, owner: str, name: str):
        object.__setattr__(self, "requires_grad", True)
        object.__setattr__(self, "grad", None)
        object.__setattr__(self, "_creator", None)
        object.__setattr__(self, "owner", f"{owner}: {name}")

    @property
    def array(self):
        raise ValueError(f"{self.owner} is not materialised yet: a lazy layer takes its "
                         "input size from its first forward; call the network once on a "
                         "batch first (d2l: model.apply_init([X]) or "
                         "model.layer_summary(shape))")

    @array.setter
    def array(self, value):
        raise ValueError(f"{self.owner} is not materialised yet; use materialize(array)")

    data = property(array.fget, array.fset)

    def materialize(self, array) -> None:
        """Become a Parameter holding ``array`` (a backend array), in place."""
        del self.owner
        self.__class__ = Parameter
        self.array = array

    def __repr__(self):
        return f"<UninitializedParameter {self.owner}>"


class _Move(Function):
    """Copy between backends, differentiably (the gradient moves back)."""

    def __init__(self, target):
        self.target = target

    def _check_inputs(self, tensors):
        pass

    def forward(self, x):
        self.source = B.backend_of(x)
        return B.to_backend(x, self.target)

    def backward(self, gy):
        return B.to_backend(gy, self.source)


class _Cast(Function):
    def __init__(self, dtype):
        self.dtype = dtype

    def forward(self, x):
        self.source = x.dtype
        return x.astype(self.dtype)

    def backward(self, gy):
        return gy.astype(self.source)


# --------------------------------------------------------------------------------------
# The backward walk
# --------------------------------------------------------------------------------------

def _accumulate_leaf(t: Tensor, g) -> None:
    buffer = t.__dict__.get("_grad_buffer")       # nn/flat.py: the leaf's view of one buffer
    if buffer is not None and (t.grad is None or t.grad.array is buffer):
        if t.grad is None:
            buffer[...] = g                        # a copy: g stays the caller's
            t.grad = Tensor(buffer)
        else:
            buffer += g                            # the buffer is the leaf's own memory
        return
    # Never add in place: g may be shared with another gradient (add's backward
    # hands the same array to both inputs).
    if t.grad is None:
        t.grad = Tensor(g)
    else:
        t.grad = Tensor(t.grad.array + g)


def run_backward(root: Function, grad, retain_graph: bool = False) -> None:
    """Back-propagate ``grad`` (the gradient of root's output) through the graph.

    A node's ``edges`` name, per input, the Function that produced it, the leaf
    Tensor that accumulates its gradient, or None (no gradient wanted).
    """
    # 1. Find every node reachable from the root and count, for each, how many
    #    consumers of its output lie in the graph: a node may run once all of them
    #    have handed it their gradient (Kahn's topological order, no recursion).
    waiting = {root: 0}
    stack = [root]
    while stack:
        node = stack.pop()
        if getattr(node, "_released", False):
            raise RuntimeError(
                f"backward through {node.name} a second time: its saved arrays were "
                "released by the first backward; pass retain_graph=True to the first call")
        for edge in node.edges:
            if not isinstance(edge, Function):
                continue
            if edge in waiting:
                waiting[edge] += 1
            else:
                waiting[edge] = 1
                stack.append(edge)

    # 2. Run each node once all its consumers are done, summing gradients that meet.
    grads = {root: grad}
    handed = set()                    # the arrays (by owner) given to leaves so far
    ready = [root]
    while ready:
        node = ready.pop()
        gy = grads.pop(node, None)
        edges = node.edges
        if gy is not None:
            gxs = node.backward(gy)
            if not isinstance(gxs, tuple):
                gxs = (gxs,)
            if len(gxs) != len(edges):
                raise RuntimeError(f"{node.name}.backward returned {len(gxs)} gradients for "
                                   f"{len(edges)} inputs")
            for edge, gx, need, shape, dtype in zip(edges, gxs, node.needs_input_grad,
                                                    node.input_shapes, node.input_dtypes):
                if not need or gx is None or edge is None:
                    continue
                if gx.shape != shape:
                    raise RuntimeError(f"{node.name}.backward returned a gradient of shape "
                                       f"{tuple(gx.shape)} for an input of shape "
                                       f"{tuple(shape)}")
                if gx.dtype != dtype:
                    # As PyTorch's engine does: a gradient takes its input's dtype, so
                    # the backward below it (a float32 kernel) never sees another one.
                    gx = gx.astype(dtype)
                if isinstance(edge, Tensor):
                    # A backward may hand one array (or views of it) to several inputs
                    # (add's does): a leaf's .grad gets its own copy of an array another
                    # leaf already took, so that zeroing one in place (grad.zero_())
                    # leaves the other alone.
                    owner = id(gx if gx.base is None else gx.base)
                    if owner in handed:
                        gx = gx.copy()
                    else:
                        handed.add(owner)
                    _accumulate_leaf(edge, gx)
                elif edge in grads:
                    grads[edge] = grads[edge] + gx
                else:
                    grads[edge] = gx
        for edge in edges:
            if isinstance(edge, Function):
                waiting[edge] -= 1
                if waiting[edge] == 0:
                    ready.append(edge)
        if not retain_graph:
            node.release()


# --------------------------------------------------------------------------------------
# Construction
# --------------------------------------------------------------------------------------

def tensor(data, requires_grad: bool = False, dtype=None, backend: str | None = None,
           device=None) -> Tensor:
    """Build a Tensor from array-like ``data``.

    NumPy/CuPy arrays keep their dtype and backend (the data is copied); Python
    floats become float32 and ints int64, as in PyTorch. ``backend`` (or PyTorch's
    ``device``: "cpu", "cuda", a ``tinyalex.device``) moves the data.
    """
    if device is not None:
        if backend is not None:
            raise TypeError("tensor(): give backend= or device=, not both")
        backend = devices.backend_for(device, "tensor")
    if isinstance(data, Tensor):
        arr = data.array.copy()
    elif isinstance(data, np.ndarray) or B.is_cupy_array(data):
        arr = data.copy()
    else:
        try:
            arr = np.array(data)
        except ValueError:
            raise ValueError(f"cannot build a tensor from a {type(data).__name__} of rows "
                             "of different lengths (a ragged nested list); every row of "
                             "a tensor has the same length") from None
        if arr.dtype.kind not in NUMERIC_KINDS:
            raise TypeError(f"cannot build a tensor from {type(data).__name__} holding "
                            f"mixed or non-numeric values (NumPy dtype {arr.dtype})")
        if arr.dtype.kind == "f" and dtype is None:
            arr = arr.astype(DEFAULT_FLOAT)
    if arr.dtype.kind not in NUMERIC_KINDS:
        raise TypeError(f"cannot build a tensor from an array of dtype {arr.dtype}; "
                        "expected bool, int or float values")
    if dtype is not None:
        dtype = check_dtype(dtype, "tensor")
        arr = arr.astype(dtype, copy=False)
    if backend is not None:
        arr = B.to_backend(arr, backend)
    return Tensor(arr, requires_grad=requires_grad)
