"""Elementwise activations and dropout.

Each op asks its kernel set for its loops (``kernels.select``); the readable
references are the ``*_reference`` functions here, and ``kernels/`` holds the fast
versions that must agree with them.

ReLU and sigmoid keep their *output* for backward, as PyTorch does (the ReLU mask is
``y > 0``; sigmoid's derivative is ``y * (1 - y)``). Dropout keeps nothing but a seed:
its mask is a pure function of (seed, element index) (``tinyalex.random.keep_mask``),
so backward recomputes it instead of storing it, and the same seed gives the same mask
on the CPU and the GPU, with reference or fast kernels.
"""

from __future__ import annotations

import numbers

import tinyalex.kernels as kernels

from .. import backend as B
from .. import random as R
from ..tensor import Function, Tensor
from ..checks import check_floating


# -- readable references -----------------------------------------------------------------

def relu_forward_reference(x):
    return B.get_array_module(x).maximum(x, 0)


def relu_backward_reference(gy, y):
    # the gradient passes where the output is positive (where x > 0)
    return B.get_array_module(gy).where(y > 0, gy, 0).astype(gy.dtype, copy=False)


def sigmoid_forward_reference(x):
    xp = B.get_array_module(x)
    # 1 / (1 + exp(-x)) without overflow for large |x|: exp of a non-positive number
    e = xp.exp(-xp.abs(x))
    return xp.where(x >= 0, 1 / (1 + e), e / (1 + e)).astype(x.dtype, copy=False)


def sigmoid_backward_reference(gy, y):
    return gy * y * (1 - y)


def dropout_reference(x, p, seed):
    """x / (1-p) where element i (in C order) is kept, 0 elsewhere; also its backward."""
    xp = B.get_array_module(x)
    keep = R.keep_mask(seed, x.size, p, xp).reshape(x.shape)
    scale = x.dtype.type(0.0 if p == 1.0 else 1.0 / (1.0 - p))
    return xp.where(keep, x * scale, 0).astype(x.dtype, copy=False)


# -- the ops -------------------------------------------------------------------------------

class ReLU(Function):
    def forward(self, x):
        check_floating(x.dtype, "relu")
        self.k = kernels.select(x)
        y = self.k.relu_forward(x)
        if self.needs_input_grad[0]:
            self.y = y
        return y

    def backward(self, gy):
        return self.k.relu_backward(gy, self.y)


class Sigmoid(Function):
    def forward(self, x):
        check_floating(x.dtype, "sigmoid")
        self.k = kernels.select(x)
        y = self.k.sigmoid_forward(x)
        if self.needs_input_grad[0]:
            self.y = y
        return y

    def backward(self, gy):
        return self.k.sigmoid_backward(gy, self.y)


class Dropout(Function):
    """Zero each element with probability p and scale the rest by 1/(1-p)."""

    def __init__(self, p):
        self.p = p

    def forward(self, x):
        check_floating(x.dtype, "dropout")
        self.k = kernels.select(x)
        self.seed = R.seed_for_device()         # one draw from the host generator
        return self.k.dropout(x, self.p, self.seed)

    def backward(self, gy):
        return self.k.dropout(gy, self.p, self.seed)   # the same mask and scale


def check_probability(p, where="dropout") -> float:
    if isinstance(p, bool) or not isinstance(p, numbers.Real) or not 0.0 <= p <= 1.0:
        raise ValueError(f"{where}: p must be a probability between 0 and 1, got {p!r}")
    return float(p)


def relu(x):
    return ReLU()(x)


def sigmoid(x):
    return Sigmoid()(x)


def dropout(x, p=0.5, training=True):
    """In training, zero elements with probability p and scale by 1/(1-p); else identity."""
    p = check_probability(p)
    if not training or p == 0.0:
        return x if isinstance(x, Tensor) else Tensor(x)
    return Dropout(p)(x)
