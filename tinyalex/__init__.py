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

from .kernels.cpu_process import cpu_policy, get_num_threads, set_num_threads

# The process-wide CPU policy, set here once for the whole process: glibc's malloc keeps
# freed memory for the next step, BLAS runs on one thread and the CPU kernels cut large
# GEMMs over TINYALEX_CPU_THREADS threads (kernels/cpu_process.py says why; summary
# reports it). TINYALEX_CPU_POLICY=off skips this call; cpu_policy(malloc="default",
# blas_threads=None) undoes it, set_num_threads(n) changes the threads.
if _os.environ.get("TINYALEX_CPU_POLICY", "on").strip().lower() != "off":
    cpu_policy()

from . import backend, random
from .backend import cupy_available, default_backend
from .gradcheck import GradcheckError, gradcheck
from .random import manual_seed
from .tensor import (Function, Parameter, Size, Tensor, enable_grad, is_grad_enabled,
                     no_grad, set_grad_enabled, tensor)
from .printing import set_printoptions
from . import ops, nn, optim, models  # noqa: E402  (built on the names above)
from . import cuda
from .creation import (arange, as_tensor, eye, from_numpy, full, linspace, normal, ones,
                       ones_like, rand, randn, zeros, zeros_like)
from .devices import device
from .ops import (abs, cat, clone, cos, cosh, exp, log, log_softmax, matmul, mean, permute,
                  prod, relu, reshape, sigmoid, sin, sinh, softmax, sqrt, stack, sum, tanh,
                  transpose)
from .ops import power as pow
from .ops.reduce import arg_extreme as _arg_extreme, extreme as _extreme, \
    variance as _variance
from .safetensors_io import load, save
from .study.summary import summary

__version__ = "0.1.0"

float16 = _np.float16
float32 = _np.float32
float64 = _np.float64
double = _np.float64
int32 = _np.int32
int64 = _np.int64
long = _np.int64
uint8 = _np.uint8
concat = cat              # torch.concat is torch.cat
swapaxes = transpose


def bmm(input, mat2):
    """Batched matrix product of (B, M, K) and (B, K, N) tensors."""
    if input.ndim != 3 or mat2.ndim != 3 or input.shape[0] != mat2.shape[0]:
        raise RuntimeError(f"bmm: expected (B, M, K) and (B, K, N) tensors with the same B, "
                           f"got shapes {tuple(input.shape)} and {tuple(mat2.shape)}")
    return matmul(input, mat2)


def meshgrid(*tensors, indexing="ij"):
    """Coordinate grids from 1-D tensors (PyTorch's default indexing 'ij')."""
    tensors = tuple(tensors[0]) if len(tensors) == 1 and isinstance(tensors[0], (list, tuple)) \
        else tensors
    if indexing not in ("ij", "xy"):
        raise ValueError(f"meshgrid: indexing must be 'ij' or 'xy', got {indexing!r}")
    xp = tensors[0].xp
    return tuple(Tensor(g.copy()) for g in xp.meshgrid(*(t.array for t in tensors),
                                                        indexing=indexing))


def t(input):
    return input.t()


def numel(input) -> int:
    return input.numel()


def max(input, dim=None, keepdim=False):  # noqa: A001 - torch.max
    return _extreme(input, dim, keepdim, None, None, True)


def min(input, dim=None, keepdim=False):  # noqa: A001 - torch.min
    return _extreme(input, dim, keepdim, None, None, False)


def argmax(input, dim=None, keepdim=False):
    return _arg_extreme(input, dim, keepdim, None, None, True)


def argmin(input, dim=None, keepdim=False):
    return _arg_extreme(input, dim, keepdim, None, None, False)


def var(input, dim=None, unbiased=None, keepdim=False, *, correction=None):
    return _variance(input, dim, unbiased, keepdim, correction, None, None, False)


def std(input, dim=None, unbiased=None, keepdim=False, *, correction=None):
    return _variance(input, dim, unbiased, keepdim, correction, None, None, True)


def detach(input):
    return input.detach()


__all__ = ["Function", "GradcheckError", "Parameter", "Size", "Tensor", "abs", "arange",
           "argmax", "argmin", "as_tensor", "backend", "bmm", "cat", "clone", "concat",
           "cos", "cosh", "cpu_policy", "cuda", "cupy_available", "default_backend",
           "detach", "device", "double", "enable_grad", "exp", "eye", "float16", "float32",
           "float64", "from_numpy", "full", "get_num_threads", "gradcheck", "int32",
           "int64", "is_grad_enabled", "linspace", "load", "log", "log_softmax", "long",
           "manual_seed", "matmul", "max", "mean", "meshgrid", "min", "models", "nn",
           "no_grad", "normal", "numel", "ones", "ones_like", "ops", "optim", "permute",
           "pow", "prod", "rand", "randn", "random", "relu", "reshape", "save",
           "set_grad_enabled", "set_num_threads", "set_printoptions", "sigmoid", "sin",
           "sinh", "softmax", "sqrt", "stack", "std", "sum", "summary", "swapaxes", "t",
           "tanh", "tensor", "transpose", "uint8", "var", "zeros", "zeros_like"]
