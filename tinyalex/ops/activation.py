"""Elementwise activations and dropout.

The readable references come first; ``activation_algorithm`` chooses what runs (the
reference, or a fast loop in ``kernels/elementwise_cpu.py`` or ``elementwise_gpu.py``
that the tests hold to it).

ReLU and sigmoid keep their *output* for backward, as PyTorch does (the ReLU mask is
``y > 0``; sigmoid's derivative is ``y * (1 - y)``). Dropout keeps nothing but a seed:
its mask is a pure function of (seed, element index) (``tinyalex.random.keep_mask``),
so backward recomputes it instead of storing it, and the same seed gives the same mask
on the CPU and the GPU, with reference or fast kernels. On the CPU the seed is a draw
from the host generator; the GPU kernel derives it on the device from a state kept in
device memory and the call's stream number (``kernels/elementwise_gpu.py``,
``DeviceRNG``), so that a captured CUDA graph draws fresh masks at every replay.
"""

from __future__ import annotations

import numbers

import tinyalex.kernels as kernels
from tinyalex.kernels import elementwise_cpu, elementwise_gpu
from tinyalex.kernels.layout import FLOATS

from .. import backend as B
from .. import random as R
from ..tensor import Function, Tensor
from ..checks import check_floating, check_int


# -- [simple version] the readable references -------------------------------------------

class ReluReference:
    name = "maximum (reference)"

    def forward(self, x):
        return B.get_array_module(x).maximum(x, 0)

    def backward(self, gy, y):
        # the gradient passes where the output is positive (where x > 0)
        return B.get_array_module(gy).where(y > 0, gy, 0).astype(gy.dtype, copy=False)


class SigmoidReference:
    name = "exp (reference)"

    def forward(self, x):
        xp = B.get_array_module(x)
        # 1 / (1 + exp(-x)) without overflow for large |x|: exp of a non-positive number
        e = xp.exp(-xp.abs(x))
        return xp.where(x >= 0, 1 / (1 + e), e / (1 + e)).astype(x.dtype, copy=False)

    def backward(self, gy, y):
        return gy * y * (1 - y)


class DropoutReference:
    name = "keep_mask (reference)"
    seed_on_device = False             # the seed is drawn from the host generator

    def forward(self, x, p, seed):
        """x / (1-p) where element i (in C order) is kept, 0 elsewhere; also its backward."""
        xp = B.get_array_module(x)
        keep = R.keep_mask(seed, x.size, p, xp).reshape(x.shape)
        scale = x.dtype.type(0.0 if p == 1.0 else 1.0 / (1.0 - p))
        return xp.where(keep, x * scale, 0).astype(x.dtype, copy=False)

    backward = forward                 # the same mask and scale on the gradient


RELU_REFERENCE, SIGMOID_REFERENCE = ReluReference(), SigmoidReference()
DROPOUT_REFERENCE = DropoutReference()


# -- the one place that chooses the algorithms --------------------------------------------

def activation_algorithm(op: str, dtype, backend: str):
    """The algorithm of ``op`` ("relu", "sigmoid" or "dropout"): the first row that
    matches::

        TINYALEX_KERNELS=reference, or dtype not float32/64   the reference above
        backend cupy                                          the op's CUDA kernel
        otherwise                                             the op's Numba loop

    The loops run on the memory as it lies, one pass, cut into ranges for threads
    (kernels/elementwise_cpu.py); the float32 sigmoid has its own vectorised exp.
    """
    if op not in ("relu", "sigmoid", "dropout"):
        raise ValueError(f"activation_algorithm: op must be relu, sigmoid or dropout, "
                         f"got {op!r}")
    if kernels.get_mode() == "reference" or dtype not in FLOATS:
        return {"relu": RELU_REFERENCE, "sigmoid": SIGMOID_REFERENCE,
                "dropout": DROPOUT_REFERENCE}[op]
    if backend == "cupy":
        return elementwise_gpu.for_cupy({"relu": elementwise_gpu.ReluGPU,
                                         "sigmoid": elementwise_gpu.SigmoidGPU,
                                         "dropout": elementwise_gpu.DropoutGPU}[op])
    return {"relu": elementwise_cpu.RELU, "sigmoid": elementwise_cpu.SIGMOID,
            "dropout": elementwise_cpu.DROPOUT}[op]


# -- the ops -------------------------------------------------------------------------------

class ReLU(Function):
    torch_name = "ReluBackward0"  # PyTorch's name, for a repr's grad_fn

    def forward(self, x):
        check_floating(x.dtype, "relu")
        self.algorithm = activation_algorithm("relu", x.dtype, B.backend_of(x))
        y = self.algorithm.forward(x)
        if self.needs_input_grad[0]:
            self.y = y
        return y

    def backward(self, gy):
        return self.algorithm.backward(gy, self.y)


class Sigmoid(Function):
    def forward(self, x):
        check_floating(x.dtype, "sigmoid")
        self.algorithm = activation_algorithm("sigmoid", x.dtype, B.backend_of(x))
        y = self.algorithm.forward(x)
        if self.needs_input_grad[0]:
            self.y = y
        return y

    def backward(self, gy):
        return self.algorithm.backward(gy, self.y)


class Dropout(Function):
    """Zero each element with probability p and scale the rest by 1/(1-p).

    With ``first_row`` > 0 the input (N, ...) is rows first_row.. of a larger batch
    (a process's share of a global batch, ``tinyalex/train/shares.py``), and the mask
    is those rows of the larger batch's mask (``random.seed_at``)."""

    torch_name = "MulBackward0"  # PyTorch's name, for a repr's grad_fn

    def __init__(self, p, first_row: int = 0):
        self.p = p
        self.first_row = first_row

    def forward(self, x):
        check_floating(x.dtype, "dropout")
        self.algorithm = activation_algorithm("dropout", x.dtype, B.backend_of(x))
        self.first = self.first_row if x.ndim else 0        # rows first.. of a batch
        if self.algorithm.seed_on_device:       # the GPU kernel: the seed lives on the
            self.seed = self.algorithm.draw_seed()   # device, this is the call's stream
            return rows_of_larger_batch(self.algorithm.forward, x, self.p, self.seed,
                                        self.first)
        self.seed = R.seed_for_device()         # one draw from the host generator
        if self.first:                          # rows first.. of a larger batch
            self.seed = R.seed_at(self.seed, self.first * (x.size // x.shape[0]))
        return self.algorithm.forward(x, self.p, self.seed)

    def backward(self, gy):
        if self.algorithm.seed_on_device:       # the same mask and scale
            return rows_of_larger_batch(self.algorithm.backward, gy, self.p, self.seed,
                                        self.first)
        return self.algorithm.backward(gy, self.p, self.seed)   # the same mask and scale


def rows_of_larger_batch(apply, x, p, seed, first: int):
    """``apply`` (a dropout algorithm's forward or backward) on rows ``first..`` of a
    larger batch, for a kernel whose seed lives on the device (the GPU's), where
    ``random.seed_at`` cannot shift the host's seed: the kernel runs over ``first``
    rows of zeros and then ``x``, so that ``x``'s elements get the mask elements of
    their rows in the larger batch; it costs the work of those rows too."""
    if not first:
        return apply(x, p, seed)
    xp = B.get_array_module(x)
    zeros = xp.zeros((first,) + x.shape[1:], dtype=x.dtype)      # (first, ...)
    padded = xp.concatenate([zeros, x])                            # (first + N, ...)
    return xp.ascontiguousarray(apply(padded, p, seed)[first:])    # (N, ...)


def check_probability(p, where="dropout") -> float:
    if isinstance(p, bool) or not isinstance(p, numbers.Real) or not 0.0 <= p <= 1.0:
        raise ValueError(f"{where}: p must be a probability between 0 and 1, got {p!r}")
    return float(p)


def relu(x):
    return ReLU()(x)


def sigmoid(x):
    return Sigmoid()(x)


def dropout(x, p=0.5, training=True, first_row: int = 0):
    """In training, zero elements with probability p and scale by 1/(1-p); else identity.
    ``first_row``: x is rows first_row.. of a larger batch, and gets those rows of its
    mask (``Dropout``)."""
    p = check_probability(p)
    if not training or p == 0.0:
        return x if isinstance(x, Tensor) else Tensor(x)
    if first_row:
        first_row = check_int(first_row, "first_row", "dropout", 0)
    return Dropout(p, first_row)(x)
