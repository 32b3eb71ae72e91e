"""``from tinyalex import nn``: the PyTorch ``nn`` subset that d2l's AlexNet uses."""

from . import functional, init
from .layers import (AvgPool2d, Conv2d, CrossEntropyLoss, Dropout, Flatten, Linear,
                     MaxPool2d, ReLU, Sigmoid)
from .adaptive import AdaptiveAvgPool2d, AdaptiveMaxPool2d, Identity
from .batchnorm import BatchNorm1d, BatchNorm2d, LazyBatchNorm1d, LazyBatchNorm2d
from .flat import FlatParameters
from .lazy import LazyConv2d, LazyLinear
from .module import Module, Sequential
from ..tensor import Parameter

__all__ = ["AdaptiveAvgPool2d", "AdaptiveMaxPool2d", "BatchNorm1d", "BatchNorm2d",
           "Identity", "LazyBatchNorm1d", "LazyBatchNorm2d", "AvgPool2d", "Conv2d", "CrossEntropyLoss", "Dropout", "FlatParameters", "Flatten",
           "LazyConv2d", "LazyLinear", "Linear", "MaxPool2d", "Module", "Parameter", "ReLU",
           "Sequential", "Sigmoid", "functional", "init"]
