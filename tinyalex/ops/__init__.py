"""The differentiable ops, each a Function with a lowercase wrapper."""

from .activation import dropout, relu, sigmoid
from .basic import add, div, exp, log, matmul, mean, mul, neg, power, reshape, sub, sum
from .conv import conv2d
from .dense import flatten, linear
from .loss import cross_entropy
from .pool import avg_pool2d, max_pool2d

__all__ = ["add", "avg_pool2d", "conv2d", "cross_entropy", "div", "dropout", "exp",
           "flatten", "linear", "log", "matmul", "max_pool2d", "mean", "mul", "neg",
           "power", "relu", "reshape", "sigmoid", "sub", "sum"]
