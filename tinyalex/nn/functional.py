"""``tinyalex.nn.functional``: the ops under PyTorch's names and signatures."""

from ..ops.adaptive_pool import adaptive_avg_pool2d, adaptive_max_pool2d
from ..ops.activation import dropout, relu, sigmoid
from ..ops.batchnorm import batch_norm
from ..ops.conv import conv2d
from ..ops.dense import flatten, linear
from ..ops.loss import cross_entropy
from ..ops.pool import avg_pool2d, max_pool2d
from ..ops.reduce import log_softmax, softmax

__all__ = ["adaptive_avg_pool2d", "adaptive_max_pool2d", "avg_pool2d", "batch_norm", "conv2d",
           "cross_entropy", "dropout", "flatten", "linear", "log_softmax", "max_pool2d", "relu", "sigmoid", "softmax"]
