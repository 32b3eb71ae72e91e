"""Elementwise functions beyond ``ops/basic.py``'s arithmetic, under PyTorch's names:
sin, cos, tanh, sinh, cosh (d2l's aliases for them). Each saves what its derivative
needs, in the input's dtype."""

from __future__ import annotations

from .. import backend as B
from ..tensor import Function


class Sin(Function):
    def forward(self, x):
        self.x = x
        return B.get_array_module(x).sin(x)

    def backward(self, gy):
        return gy * B.get_array_module(gy).cos(self.x)


class Cos(Function):
    def forward(self, x):
        self.x = x
        return B.get_array_module(x).cos(x)

    def backward(self, gy):
        return -gy * B.get_array_module(gy).sin(self.x)


class Tanh(Function):
    def forward(self, x):
        self.y = B.get_array_module(x).tanh(x)
        return self.y

    def backward(self, gy):
        return gy * (1 - self.y * self.y)


class Sinh(Function):
    def forward(self, x):
        self.x = x
        return B.get_array_module(x).sinh(x)

    def backward(self, gy):
        return gy * B.get_array_module(gy).cosh(self.x)


class Cosh(Function):
    def forward(self, x):
        self.x = x
        return B.get_array_module(x).cosh(x)

    def backward(self, gy):
        return gy * B.get_array_module(gy).sinh(self.x)


def sin(x):
    return Sin()(x)


def cos(x):
    return Cos()(x)


def tanh(x):
    return Tanh()(x)


def sinh(x):
    return Sinh()(x)


def cosh(x):
    return Cosh()(x)
