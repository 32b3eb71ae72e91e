"""Elementwise activations and dropout."""

from __future__ import annotations

import numbers

from .. import backend as B
from .. import random as R
from ..tensor import Function, Tensor
from .checks import check_floating


class ReLU(Function):
    def forward(self, x):
        check_floating(x.dtype, "relu")
        y = B.get_array_module(x).maximum(x, 0)
        if self.needs_input_grad[0]:
            self.mask = x > 0                 # the gradient passes where x > 0
        return y

    def backward(self, gy):
        return gy * self.mask


class Sigmoid(Function):
    def forward(self, x):
        check_floating(x.dtype, "sigmoid")
        xp = B.get_array_module(x)
        # 1 / (1 + exp(-x)) without overflow for large |x|: exp of a non-positive number
        e = xp.exp(-xp.abs(x))
        self.y = xp.where(x >= 0, 1 / (1 + e), e / (1 + e)).astype(x.dtype, copy=False)
        return self.y

    def backward(self, gy):
        return gy * self.y * (1 - self.y)


class Dropout(Function):
    """Zero each element with probability p and scale the rest by 1/(1-p)."""

    def __init__(self, p):
        self.p = p

    def forward(self, x):
        xp = B.get_array_module(x)
        if self.p == 1.0:
            self.scale_mask = xp.zeros_like(x)
        else:
            keep = R.uniform(x.shape, x.dtype, B.backend_of(x)) >= self.p
            # mask holding 0 or 1/(1-p), in x's dtype
            self.scale_mask = keep.astype(x.dtype) * x.dtype.type(1.0 / (1.0 - self.p))
        return x * self.scale_mask

    def backward(self, gy):
        return gy * self.scale_mask


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
