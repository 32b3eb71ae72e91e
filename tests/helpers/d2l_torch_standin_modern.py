"""The reference side of tests/d2l/test_d2l_modern_chapters.py: the d2l 1.0 names the
modern-CNN sections' model cells call (``Classifier`` with ``layer_summary`` and
``apply_init``, ``add_to_class``, ``init_cnn``, ``randn``), on real PyTorch, so that the
same script's model and shape cells run under ``import torch`` with this module as
``d2l``. Each is a few lines doing what d2l's own does; training (Trainer, FashionMNIST)
is not here: the test cuts the scripts before it."""

import torch
from torch import nn

randn = torch.randn


def add_to_class(Class):
    """Register the decorated function as a method of ``Class``."""
    def wrapper(obj):
        setattr(Class, obj.__name__, obj)
    return wrapper


def init_cnn(module):
    """Xavier-uniform weights for the Linear and Conv2d layers."""
    if type(module) == nn.Linear or type(module) == nn.Conv2d:
        nn.init.xavier_uniform_(module.weight)


class Classifier(nn.Module):
    def save_hyperparameters(self):
        pass

    def forward(self, X):
        return self.net(X)

    def layer_summary(self, X_shape):
        X = torch.randn(*X_shape)
        for layer in self.net:
            X = layer(X)
            print(layer.__class__.__name__, 'output shape:\t', X.shape)

    def apply_init(self, inputs, init=None):
        self.forward(*inputs)
        if init is not None:
            self.net.apply(init)
