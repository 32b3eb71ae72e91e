"""``tinyalex.nn.functional``: the ops under PyTorch's names and signatures."""

from ..ops.activation import dropout, relu, sigmoid
from ..ops.conv import conv2d
from ..ops.dense import flatten, linear
from ..ops.loss import cross_entropy
from ..ops.pool import avg_pool2d, max_pool2d

__all__ = ["avg_pool2d", "conv2d", "cross_entropy", "dropout", "flatten", "linear",
           "max_pool2d", "relu", "sigmoid"]
