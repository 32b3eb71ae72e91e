"""``from tinyalex import d2l``: the d2l library the LeNet and AlexNet chapters call,
on tinyalex, so that their PyTorch code runs with three imports changed:

    import tinyalex as torch          # instead of: import torch
    from tinyalex import nn           #             from torch import nn
    from tinyalex import d2l          #             from d2l import torch as d2l

Both editions of the book:

* the ``train_ch6`` edition (d2l-zh, d2l-en 0.17), ``classic.py``:
  ``load_data_fashion_mnist``, ``get_dataloader_workers``, ``train_ch6``,
  ``evaluate_accuracy_gpu``, ``accuracy``, ``Accumulator``, ``Timer``, ``try_gpu``,
  ``try_all_gpus``, ``cpu``, ``gpu``, ``num_gpus``;
* the d2l 1.0 edition (d2l-en today), ``modern.py``: ``Module``, ``Classifier``,
  ``DataModule``, ``FashionMNIST``, ``Trainer``, ``init_cnn``, with
  ``HyperParameters`` and ``add_to_class`` (``hyperparameters.py``);
* plots, ``plotting.py``: ``Animator``, ``ProgressBoard``, ``use_svg_display``,
  ``set_figsize``, ``set_axes``, ``plt`` (live in Jupyter, PNG files in a script);
* the convolution sections' saved function, ``corr2d`` (the cross-correlation as
  d2l's two loops), ``convolution.py``;
* the short names of d2l's alias lists (``size``, ``argmax``, ``reduce_sum``,
  ``reshape``, ``transpose``, ``stack``, ``concat``, ``arange``, ``normal``, ``abs``,
  ...), ``aliases.py``.

Each module's docstring says where it differs from d2l and why. The code is
tinyalex's own, written from d2l's documented behaviour.
"""

from .aliases import (abs, arange, argmax, astype, batch_matmul, concat, cos, cosh, exp,
                      expand_dims, eye, float32, int32, int64, linspace, log, matmul,
                      meshgrid, normal, numpy, ones, ones_like, rand, randn, reduce_mean,
                      reduce_sum, repeat, reshape, sigmoid, sin, sinh, size, stack,
                      swapaxes, tanh, tensor, to, transpose, zeros, zeros_like)  # noqa: A004
from .classic import (Accumulator, Timer, accuracy, cpu, evaluate_accuracy_gpu,
                      get_dataloader_workers, get_fashion_mnist_labels,
                      load_data_fashion_mnist, num_gpus, gpu, train_ch6, try_all_gpus,
                      try_gpu)
from .convolution import corr2d
from .hyperparameters import HyperParameters, add_to_class
from .modern import Classifier, DataModule, FashionMNIST, Module, Trainer, init_cnn
from .plotting import Animator, ProgressBoard, plt, set_axes, set_figsize, use_svg_display

__all__ = ["Accumulator", "Animator", "Classifier", "DataModule", "FashionMNIST",
           "HyperParameters", "Module", "ProgressBoard", "Timer", "Trainer", "abs", "accuracy",
           "add_to_class", "arange", "argmax", "astype", "batch_matmul", "concat", "corr2d",
           "cos", "cosh", "cpu", "evaluate_accuracy_gpu", "exp", "expand_dims", "eye", "float32",
           "get_dataloader_workers", "get_fashion_mnist_labels", "gpu", "init_cnn", "int32",
           "int64", "linspace", "load_data_fashion_mnist", "log", "matmul", "meshgrid", "normal",
           "num_gpus", "numpy", "ones", "ones_like", "plt", "rand", "randn", "reduce_mean",
           "reduce_sum", "repeat", "reshape", "set_axes", "set_figsize", "sigmoid", "sin",
           "sinh", "size", "stack", "swapaxes", "tanh", "tensor", "to", "train_ch6", "transpose",
           "try_all_gpus", "try_gpu", "use_svg_display", "zeros", "zeros_like"]
