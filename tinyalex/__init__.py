"""tinyalex: AlexNet and LeNet from scratch on NumPy (CPU) and CuPy (GPU).

    import tinyalex
    from tinyalex import nn

    net = tinyalex.models.alexnet()
    X = tinyalex.randn(1, 1, 224, 224)
    for layer in net:
        X = layer(X)
        print(type(layer).__name__, "output shape:", X.shape)
"""

import importlib.util as _importlib_util
import os as _os
import sys as _sys

import numpy as _np


def _graft_kernels():
    """Make the repository's top-level folder ``kernels/`` the sub-package
    ``tinyalex.kernels`` when running from a source checkout (an install, plain or
    editable, puts it under tinyalex itself or maps it there: setup.cfg). Exactly that
    folder is grafted, and nothing else of the repository becomes importable as part
    of tinyalex."""
    if _os.path.isdir(_os.path.join(__path__[0], "kernels")) or "tinyalex.kernels" in _sys.modules:
        return
    folder = _os.path.join(_os.path.dirname(_os.path.abspath(__path__[0])), "kernels")
    spec = _importlib_util.spec_from_file_location(
        "tinyalex.kernels", _os.path.join(folder, "__init__.py"),
        submodule_search_locations=[folder])
    if spec is None:
        return                      # no kernels folder: the import below says so
    module = _importlib_util.module_from_spec(spec)
    _sys.modules["tinyalex.kernels"] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del _sys.modules["tinyalex.kernels"]
        raise


_graft_kernels()

# The CPU process policy (glibc's malloc keeps freed memory, BLAS on one thread),
# applied here once for the whole process: kernels/cpu_process.py says what and why.
from .kernels import cpu_process as _cpu_process  # noqa: E402

_cpu_process.apply()

from . import backend, random
from .backend import cupy_available, default_backend
from .gradcheck import GradcheckError, gradcheck
from .random import manual_seed
from .tensor import (Function, Parameter, Tensor, enable_grad, is_grad_enabled, no_grad,
                     set_grad_enabled, tensor)
from .checks import check_shape as _check_shape
from . import ops, nn, optim, models  # noqa: E402  (built on the names above)
from . import cuda
from .devices import device
from .safetensors_io import load, save
from .study.summary import summary

__version__ = "0.1.0"

float32 = _np.float32
float64 = _np.float64
int64 = _np.int64


def _shape(shape, size=None):
    """The sizes given as ints, one tuple or list, or PyTorch's keyword ``size=``."""
    if size is not None:
        if shape:
            raise TypeError(f"zeros/ones/rand/randn: sizes given twice, as {shape!r} and "
                            f"size={size!r}; give one")
        shape = (size,)
    shape = tuple(shape[0]) if len(shape) == 1 and isinstance(shape[0], (tuple, list)) else shape
    return _check_shape(shape, "zeros/ones/rand/randn")    # ints >= 0 that fit in memory


def zeros(*shape, size=None, dtype=float32, backend="numpy", requires_grad=False):
    return Tensor(globals()["backend"].xp_of(backend).zeros(_shape(shape, size), dtype=dtype),
                  requires_grad=requires_grad)


def ones(*shape, size=None, dtype=float32, backend="numpy", requires_grad=False):
    return Tensor(globals()["backend"].xp_of(backend).ones(_shape(shape, size), dtype=dtype),
                  requires_grad=requires_grad)


def randn(*shape, size=None, dtype=float32, backend="numpy", requires_grad=False):
    """Standard normal numbers from tinyalex's seeded generator."""
    host = random.generator().standard_normal(_shape(shape, size)).astype(dtype)
    return tensor(host, requires_grad=requires_grad, backend=backend)


def rand(*shape, size=None, dtype=float32, backend="numpy", requires_grad=False):
    host = random.generator().random(_shape(shape, size)).astype(dtype)
    return tensor(host, requires_grad=requires_grad, backend=backend)


__all__ = ["Function", "GradcheckError", "Parameter", "Tensor", "backend", "cuda",
           "cupy_available", "default_backend", "device", "enable_grad", "float32",
           "float64", "gradcheck", "is_grad_enabled", "load", "manual_seed", "models", "nn",
           "no_grad", "ops", "optim", "rand", "randn", "random", "save", "set_grad_enabled",
           "summary", "tensor", "zeros", "ones"]
