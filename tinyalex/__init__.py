"""tinyalex: AlexNet and LeNet from scratch on NumPy (CPU) and CuPy (GPU).

    import tinyalex
    from tinyalex import nn

    net = tinyalex.models.alexnet()
    X = tinyalex.randn(1, 1, 224, 224)
    for layer in net:
        X = layer(X)
        print(type(layer).__name__, "output shape:", X.shape)
"""

import os as _os

import numpy as _np

# The hot loops live in the top-level folder kernels/ of the source tree and are
# installed as the sub-package tinyalex.kernels (setup.cfg, package_dir). Running
# from a source checkout without installing, let tinyalex.kernels be found there too.
if not _os.path.isdir(_os.path.join(__path__[0], "kernels")):
    _root = _os.path.dirname(_os.path.abspath(__path__[0]))
    if _os.path.isfile(_os.path.join(_root, "kernels", "__init__.py")):
        __path__.append(_root)

from . import backend, random
from .backend import cupy_available, default_backend
from .gradcheck import GradcheckError, gradcheck
from .random import manual_seed
from .tensor import (Function, Parameter, Tensor, enable_grad, is_grad_enabled, no_grad,
                     set_grad_enabled, tensor)
from .tensor import check_shape as _check_shape
from . import ops, nn, optim, models  # noqa: E402  (built on the names above)
from . import cuda
from .devices import device
from .safetensors_io import load, save
from .summarize import summary

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
