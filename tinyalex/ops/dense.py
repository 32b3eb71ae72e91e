"""Fully connected layer and flatten.

The layer's three GEMMs go through the matrix product ``matmul_algorithm`` chooses:
NumPy's or CuPy's ``a @ b`` (the reference), or on the CPU the same product cut into
one GEMM per thread (``kernels/dense_cpu.py``, ``cpu_threads.gemm``).
"""

from __future__ import annotations

import numpy as np

import tinyalex.kernels as kernels
from tinyalex.kernels import dense_cpu, elementwise_gpu
from tinyalex.kernels.layout import FLOATS

from .. import backend as B

from ..tensor import Function
from .activation import activation_algorithm
from .basic import reshape
from ..checks import check_floating, check_int


class MatmulReference:
    name = "a @ b (reference)"

    def __call__(self, a, b):
        return a @ b


MATMUL_REFERENCE = MatmulReference()


def matmul_algorithm(dtype, backend: str):
    """The fully connected layers' matrix product: the reference ``a @ b`` with
    ``TINYALEX_KERNELS=reference`` or dtypes other than float32/64; on the GPU cuBLAS in
    strict FP32 (PyTorch's default for Linear); on the CPU one GEMM per thread."""
    if kernels.get_mode() == "reference" or dtype not in FLOATS:
        return MATMUL_REFERENCE
    if backend == "cupy":
        return elementwise_gpu.for_cupy(elementwise_gpu.MatmulGPU)
    return dense_cpu.MATMUL


class Linear(Function):
    """y = x @ W.T + b for x (N, in), W (out, in), b (out,)."""

    torch_name = "AddmmBackward0"  # PyTorch's name, for a repr's grad_fn

    def __init__(self, where="linear"):
        self.where = where

    def forward(self, x, weight, bias=None):
        y = self._product(x, weight, bias)
        if bias is not None:
            y += bias                          # (N, OUT) + (OUT,)
        return y

    def _product(self, x, weight, bias):
        """Check the operands, choose the GEMM; ``x @ weight.T`` (N, OUT)."""
        check_floating(x.dtype, self.where)
        check_floating(weight.dtype, self.where, "weight")
        if weight.ndim != 2:
            raise ValueError(f"{self.where}: weight must be 2-D (out_features, in_features), "
                             f"got shape {tuple(weight.shape)}")
        OUT, IN = weight.shape
        if x.ndim != 2 or x.shape[1] != IN:
            raise ValueError(f"{self.where}: expected input of shape (N, {IN}), got "
                             f"{tuple(x.shape)}")
        if x.shape[0] == 0:
            raise ValueError(f"{self.where}: empty batch, input shape {tuple(x.shape)}")
        if bias is not None and tuple(bias.shape) != (OUT,):
            raise ValueError(f"{self.where}: bias must have shape ({OUT},), got "
                             f"{tuple(bias.shape)}")
        self.matmul = matmul_algorithm(x.dtype, B.backend_of(x))
        self.x, self.weight = x, weight
        return self.matmul(x, weight.T)        # (N, OUT) = (N, IN) @ (IN, OUT)

    def backward(self, gy):
        need = self.needs_input_grad
        mm = self.matmul
        gx = mm(gy, self.weight) if need[0] else None       # (N, IN) = (N, OUT) @ (OUT, IN)
        gw = mm(gy.T, self.x) if need[1] else None          # (OUT, IN) = (OUT, N) @ (N, IN)
        if len(need) > 2:
            gb = gy.sum(axis=0) if need[2] else None        # (OUT,)
            return gx, gw, gb
        return gx, gw


class LinearReLU(Linear):
    """``relu(x @ W.T + b)`` as one op. On the GPU one kernel adds the bias and applies
    ReLU to the GEMM's result in place, and backward masks the gradient in one kernel
    before the layer's backward; elsewhere the numbers of Linear followed by ReLU.
    ``nn.Sequential`` calls it for a Linear followed by a ReLU on the cupy backend."""

    name = "Linear+ReLU"

    def forward(self, x, weight, bias=None):
        y = self._product(x, weight, bias)                 # (N, OUT)
        self.relu = activation_algorithm("relu", x.dtype, B.backend_of(x))
        if isinstance(self.matmul, elementwise_gpu.MatmulGPU):
            self.matmul.bias_activation(y, bias, "relu")  # act(y + b) in place, one kernel
        else:
            if bias is not None:
                y += bias                                  # (N, OUT) + (OUT,)
            y = self.relu.forward(y)
        if any(self.needs_input_grad):
            self.y = y                                     # the ReLU's mask is y > 0
        return y

    def backward(self, gy):
        return super().backward(self.relu.backward(gy, self.y))


def linear(x, weight, bias=None):
    fn = Linear()
    return fn(x, weight) if bias is None else fn(x, weight, bias)


def linear_relu(x, weight, bias=None, where="linear+relu"):
    """``relu(linear(x, weight, bias))`` as one op (LinearReLU)."""
    fn = LinearReLU(where)
    return fn(x, weight) if bias is None else fn(x, weight, bias)


def flatten(x, start_dim=1, end_dim=-1):
    """Merge dimensions start_dim..end_dim into one (default: all but the batch)."""
    check_int(start_dim, "start_dim", "flatten")
    check_int(end_dim, "end_dim", "flatten")
    shape = tuple(x.shape)
    nd = len(shape)
    # as PyTorch: dims in [-nd, nd), a 0-d tensor counts as one dimension
    if not all(-max(nd, 1) <= d < max(nd, 1) for d in (start_dim, end_dim)):
        raise ValueError(f"flatten: start_dim={start_dim}, end_dim={end_dim} out of range "
                         f"for a {nd}-D input of shape {shape}; expected values in "
                         f"[{-max(nd, 1)}, {max(nd, 1) - 1}]")
    s, e = start_dim % nd if nd else 0, end_dim % nd if nd else 0
    if not s <= e:
        raise ValueError(f"flatten: start_dim={start_dim}, end_dim={end_dim} do not select "
                         f"a range of dimensions of a shape {shape}")
    merged = int(np.prod(shape[s:e + 1], dtype=np.int64))
    return reshape(x, shape[:s] + (merged,) + shape[e + 1:])
