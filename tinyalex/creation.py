"""Functions that make new tensors, under PyTorch's names and with its dtype rules:
a float made from Python numbers is float32, an int int64 (``arange(5)`` is int64,
``arange(5.)`` float32); a NumPy array keeps its dtype.

Each takes ``backend=`` ("numpy" or "cupy") or PyTorch's ``device=`` ("cpu",
"cuda", "cuda:0", a ``tinyalex.device``). Random numbers come from tinyalex's seeded
generator (``tinyalex.manual_seed``), drawn on the host.
"""

from __future__ import annotations

import math
import numbers

import numpy as np

from . import backend as B
from . import devices, random
from .checks import check_dtype, check_shape
from .tensor import DEFAULT_FLOAT, Tensor, tensor


def _backend(backend, device, where) -> str:
    if device is not None:
        return devices.backend_for(device, where)
    return B.check_backend_name(backend)


def _shape(shape, size, where):
    """The sizes given as ints, one tuple or list, or PyTorch's keyword ``size=``."""
    if size is not None:
        if shape:
            raise TypeError(f"{where}: sizes given twice, as {shape!r} and size={size!r}; "
                            "give one")
        shape = (size,)
    shape = tuple(shape[0]) if len(shape) == 1 and isinstance(shape[0], (tuple, list)) \
        else shape
    return check_shape(shape, where)      # ints >= 0 that fit in memory


def zeros(*shape, size=None, dtype=np.float32, backend="numpy", device=None,
          requires_grad=False):
    xp = B.xp_of(_backend(backend, device, "zeros"))
    return Tensor(xp.zeros(_shape(shape, size, "zeros"), dtype=dtype),
                  requires_grad=requires_grad)


def ones(*shape, size=None, dtype=np.float32, backend="numpy", device=None,
         requires_grad=False):
    xp = B.xp_of(_backend(backend, device, "ones"))
    return Tensor(xp.ones(_shape(shape, size, "ones"), dtype=dtype),
                  requires_grad=requires_grad)


def full(size, fill_value, dtype=None, backend="numpy", device=None, requires_grad=False):
    """A tensor of ``size`` filled with ``fill_value`` (its dtype as tensor() would
    give it, unless ``dtype``)."""
    if dtype is None:
        dtype = np.asarray(fill_value).dtype
        dtype = DEFAULT_FLOAT if dtype.kind == "f" else dtype
    xp = B.xp_of(_backend(backend, device, "full"))
    return Tensor(xp.full(_shape((size,), None, "full"), fill_value,
                          dtype=check_dtype(dtype, "full")), requires_grad=requires_grad)


def randn(*shape, size=None, dtype=np.float32, backend="numpy", device=None,
          requires_grad=False):
    """Standard normal numbers from tinyalex's seeded generator."""
    host = random.generator().standard_normal(_shape(shape, size, "randn")).astype(dtype)
    return tensor(host, requires_grad=requires_grad,
                  backend=_backend(backend, device, "randn"))


def rand(*shape, size=None, dtype=np.float32, backend="numpy", device=None,
         requires_grad=False):
    """Uniform numbers in [0, 1) from tinyalex's seeded generator."""
    host = random.generator().random(_shape(shape, size, "rand")).astype(dtype)
    return tensor(host, requires_grad=requires_grad,
                  backend=_backend(backend, device, "rand"))


def normal(mean=0.0, std=1.0, size=None, *, dtype=np.float32, backend="numpy",
           device=None, requires_grad=False):
    """``torch.normal``: numbers drawn from N(mean, std**2), of shape ``size``; or,
    with tensors for mean and/or std, one draw per element of their broadcast shape."""
    if isinstance(mean, Tensor) or isinstance(std, Tensor):
        m = mean.numpy() if isinstance(mean, Tensor) else np.asarray(mean)
        s = std.numpy() if isinstance(std, Tensor) else np.asarray(std)
        ref = mean if isinstance(mean, Tensor) else std
        if size is not None:
            raise TypeError("normal(): give size= only with a number for both mean and std")
        if (s < 0).any():
            raise RuntimeError("normal(): std must be >= 0, got a negative entry")
        host = random.generator().normal(m, s).astype(ref.dtype)
        return tensor(host, backend=ref.backend, requires_grad=requires_grad)
    if size is None:
        raise TypeError("normal(mean, std, size): give size (a tuple of ints) when mean "
                        "and std are numbers")
    if not std >= 0:
        raise RuntimeError(f"normal(): std must be >= 0, got {std}")
    shape = _shape((size,), None, "normal")
    host = random.generator().normal(mean, std, shape).astype(dtype)
    return tensor(host, requires_grad=requires_grad,
                  backend=_backend(backend, device, "normal"))


def zeros_like(x: Tensor, dtype=None, requires_grad=False) -> Tensor:
    return Tensor(x.xp.zeros(x.shape, dtype=dtype or x.dtype), requires_grad=requires_grad)


def ones_like(x: Tensor, dtype=None, requires_grad=False) -> Tensor:
    return Tensor(x.xp.ones(x.shape, dtype=dtype or x.dtype), requires_grad=requires_grad)


def _is_float(v) -> bool:
    return isinstance(v, (float, np.floating)) or (isinstance(v, Tensor) and
                                                    v.dtype.kind == "f")


def arange(start, end=None, step=1, *, dtype=None, backend="numpy", device=None,
           requires_grad=False):
    """``torch.arange``: ``start, start + step, ...`` below ``end`` (``arange(n)`` is
    0..n-1); int64 when every bound is an int, else float32, unless ``dtype``."""
    if end is None:
        start, end = 0, start
    bounds = [float(v) if isinstance(v, Tensor) else v for v in (start, end, step)]
    for name, v in zip(("start", "end", "step"), bounds):
        if not isinstance(v, numbers.Real) or isinstance(v, bool) or not math.isfinite(v):
            raise TypeError(f"arange(): {name} must be a finite number, got {v!r}")
    start, end, step = bounds
    if step == 0:
        raise RuntimeError("arange(): step must be nonzero")
    if (end - start) * step < 0:
        raise RuntimeError(f"arange(): upper bound and larger bound inconsistent with "
                           f"step sign (start={start}, end={end}, step={step})")
    count = max(0, math.ceil((end - start) / step))
    if dtype is None:
        dtype = DEFAULT_FLOAT if any(_is_float(v) for v in (start, end, step)) else np.int64
    dtype = check_dtype(dtype, "arange")
    host = (start + step * np.arange(count, dtype=np.float64 if dtype.kind == "f"
                                     else np.int64)).astype(dtype)
    return tensor(host, requires_grad=requires_grad,
                  backend=_backend(backend, device, "arange"))


def linspace(start, end, steps, *, dtype=None, backend="numpy", device=None,
             requires_grad=False):
    """``steps`` evenly spaced numbers from ``start`` to ``end`` inclusive (float32)."""
    if not isinstance(steps, numbers.Integral) or isinstance(steps, bool) or steps < 0:
        raise RuntimeError(f"linspace(): steps must be an int >= 0, got {steps!r}")
    dtype = check_dtype(dtype or DEFAULT_FLOAT, "linspace")
    # PyTorch's way: the step in the output's dtype; the first half counted from start,
    # the second back from end, each value rounded once (a fused multiply-add)
    start, end = dtype.type(start), dtype.type(end)
    step = (end - start) / dtype.type(steps - 1) if steps > 1 else dtype.type(0)
    i = np.arange(steps, dtype=np.float64)
    start, end, step = float(start), float(end), float(step)
    host = np.where(i < steps // 2, start + step * i, end - step * (steps - 1 - i))
    return tensor(host.astype(dtype), requires_grad=requires_grad,
                  backend=_backend(backend, device, "linspace"))


def eye(n, m=None, *, dtype=np.float32, backend="numpy", device=None, requires_grad=False):
    """The n x m identity matrix (m defaults to n)."""
    shape = check_shape((n, n if m is None else m), "eye")
    xp = B.xp_of(_backend(backend, device, "eye"))
    return Tensor(xp.eye(*shape, dtype=dtype), requires_grad=requires_grad)


def as_tensor(data, dtype=None, device=None) -> Tensor:
    """``data`` as a tensor, sharing memory where it can (a Tensor or array of the
    right dtype and backend is not copied)."""
    if isinstance(data, Tensor):
        arr = data.array
    elif isinstance(data, np.ndarray) or B.is_cupy_array(data):
        arr = data
    else:
        return tensor(data, dtype=dtype, backend=None if device is None
                      else devices.backend_for(device, "as_tensor"))
    if dtype is not None:
        arr = arr.astype(check_dtype(dtype, "as_tensor"), copy=False)
    if device is not None:
        arr = B.to_backend(arr, devices.backend_for(device, "as_tensor"))
    return data if isinstance(data, Tensor) and arr is data.array else Tensor(arr)


def from_numpy(array: np.ndarray) -> Tensor:
    """A tensor sharing ``array``'s memory (writes to one show in the other)."""
    if not isinstance(array, np.ndarray):
        raise TypeError(f"from_numpy(): expected a numpy.ndarray, got "
                        f"{type(array).__name__}")
    return Tensor(array)
