"""The d2l 1.0 edition (d2l-en today): ``Module``, ``Classifier``, ``DataModule``,
``FashionMNIST``, ``Trainer`` and ``init_cnn``.

    model = LeNet(lr=0.1)                                  # a d2l.Classifier of lazy layers
    data = d2l.FashionMNIST(batch_size=128)
    model.apply_init([next(iter(data.get_dataloader(True)))[0]], init_cnn)
    d2l.Trainer(max_epochs=10, num_gpus=1).fit(model, data)   # draws a ProgressBoard

The same objects and hooks as d2l: the Trainer asks the model for its optimizer
(``configure_optimizers``) and runs ``training_step`` / ``validation_step`` per batch,
which plot through ``Module.plot`` onto the model's ``ProgressBoard``: the training
loss twice an epoch, the validation loss and accuracy once. As in d2l the Trainer
prints nothing; in a plain script the board is a PNG (``plotting``).

Where it differs from d2l, and why:

* ``num_gpus=1`` on a machine without a usable GPU trains on the CPU, as d2l's
  final Trainer does (``min(num_gpus, d2l.num_gpus())`` GPUs); with a GPU it uses
  ``cuda:0`` (tinyalex computes on one GPU, so ``num_gpus=2`` also uses one).
* ``FashionMNIST`` finds the files as ``d2l.load_data_fashion_mnist`` does (no
  download; ``root``, when a subclass passes one other than ``'../data'``, is
  searched like ``--data-dir``); ``data.train`` / ``data.val`` are
  ``tinyalex.dataloader.ImageDataset`` objects (``len()``, ``[i]`` gives
  ``(X, label)``), not torchvision data sets. ``DataModule.get_tensorloader``
  (synthetic regression data, other chapters) is not provided.
* ``TINYALEX_D2L_LIMIT=N`` and ``TINYALEX_D2L_EPOCHS=E`` cut ``FashionMNIST`` to the
  first N images of each split and make the Trainer train E epochs, saying so (a
  chapter in a minute on a CPU; ``tinyalex/data.py``).
* ``ProgressBoard.draw`` averages at least one point: d2l's never draws a curve
  whose ``every_n`` rounds down to 0 (fewer batches than points per epoch).
"""

from __future__ import annotations

import math
import numbers

import numpy as np

from .. import nn, optim
from .. import backend as B
from ..data import CLASS_NAMES, d2l_epochs, d2l_subset, load_fashion_mnist
from ..dataloader import DataLoader, ImageDataset
from ..checks import check_int
from ..ops.loss import cross_entropy
from ..tensor import Tensor, no_grad
from .classic import gpu
from .classic import num_gpus as gpus_here
from .hyperparameters import HyperParameters
from .plotting import ProgressBoard


def init_cnn(module) -> None:
    """Xavier-uniform weights for a Conv2d or Linear (d2l 1.0's CNN initialisation);
    a lazy layer before its first forward is neither, so it is left alone."""
    if type(module) in (nn.Linear, nn.Conv2d):
        nn.init.xavier_uniform_(module.weight)


class Module(nn.Module, HyperParameters):
    """A model that knows its loss, its optimizer and how to plot its progress."""

    def __init__(self, plot_train_per_epoch=2, plot_valid_per_epoch=1):
        super().__init__()
        self.save_hyperparameters()
        self.board = ProgressBoard()

    def loss(self, y_hat, y):
        raise NotImplementedError(f"{type(self).__name__} defines no loss()")

    def forward(self, X):
        if not hasattr(self, "net"):
            raise AttributeError(f"{type(self).__name__}: d2l.Module.forward runs self.net, "
                                 "which this model does not define")
        return self.net(X)

    def plot(self, key, value, train):
        """One point of ``train_<key>`` / ``val_<key>`` on the board, at the fraction
        of epochs done; averaged so that an epoch has ``plot_*_per_epoch`` points."""
        if not hasattr(self, "trainer"):
            raise AttributeError("Module.plot: no trainer yet (d2l.Trainer.fit sets it)")
        trainer = self.trainer
        self.board.xlabel = "epoch"
        if train:
            x = trainer.train_batch_idx / trainer.num_train_batches
            n = trainer.num_train_batches / self.plot_train_per_epoch
        else:
            x = trainer.epoch + 1
            n = trainer.num_val_batches / self.plot_valid_per_epoch
        self.board.draw(x, float(value), ("train_" if train else "val_") + key,
                        every_n=int(n))

    def training_step(self, batch):
        loss = self.loss(self(*batch[:-1]), batch[-1])
        self.plot("loss", loss, train=True)
        return loss

    def validation_step(self, batch):
        loss = self.loss(self(*batch[:-1]), batch[-1])
        self.plot("loss", loss, train=False)

    def configure_optimizers(self):
        return optim.SGD(self.parameters(), lr=self.lr)

    def apply_init(self, inputs, init=None):
        """Run one forward on ``inputs`` (lazy layers take their sizes from it), then
        apply ``init`` to every layer of ``self.net``."""
        self.forward(*inputs)
        if init is not None:
            self.net.apply(init)


class Classifier(Module):
    """A Module for classification: cross-entropy loss, accuracy, a shape table."""

    def validation_step(self, batch):
        Y_hat = self(*batch[:-1])
        self.plot("loss", self.loss(Y_hat, batch[-1]), train=False)
        self.plot("acc", self.accuracy(Y_hat, batch[-1]), train=False)

    def accuracy(self, Y_hat, Y, averaged=True):
        """The fraction (``averaged``) or the 0/1 indicator per example of predictions
        (largest logit) equal to the labels."""
        Y_hat = Y_hat.reshape((-1, Y_hat.shape[-1]))          # (N, K)
        predicted = Y_hat.argmax(axis=1).type(Y.dtype)        # (N,)
        right = (predicted == Y.reshape(-1)).type(np.float32)
        return right.mean() if averaged else right

    def loss(self, Y_hat, Y, averaged=True):
        """Cross-entropy of logits against labels: the mean, or one per example."""
        Y_hat = Y_hat.reshape((-1, Y_hat.shape[-1]))          # (N, K)
        return cross_entropy(Y_hat, Y.reshape((-1,)), "mean" if averaged else "none")

    def layer_summary(self, X_shape):
        """Each layer's output shape for a random input of ``X_shape``."""
        from .. import randn
        X = randn(*X_shape)
        for layer in self.net:
            X = layer(X)
            print(layer.__class__.__name__, "output shape:\t", X.shape)


class DataModule(HyperParameters):
    """Data for a Trainer: ``train_dataloader()`` and ``val_dataloader()``."""

    def __init__(self, root="../data", num_workers=4):
        self.save_hyperparameters()

    def get_dataloader(self, train):
        raise NotImplementedError(f"{type(self).__name__} defines no get_dataloader()")

    def train_dataloader(self):
        return self.get_dataloader(train=True)

    def val_dataloader(self):
        return self.get_dataloader(train=False)


class FashionMNIST(DataModule):
    """Fashion-MNIST, 60000 training and 10000 validation images, resized to
    ``resize`` (height, width), in batches of ``batch_size``."""

    def __init__(self, batch_size=64, resize=(28, 28)):
        super().__init__()
        self.save_hyperparameters()
        check_int(batch_size, "batch_size", "FashionMNIST", 1)
        data_dir = None if self.root == "../data" else self.root
        train_X, train_y, val_X, val_y = d2l_subset(*load_fashion_mnist(data_dir),
                                                    "FashionMNIST")
        self.train = ImageDataset(train_X, train_y, resize, "FashionMNIST")
        self.val = ImageDataset(val_X, val_y, resize, "FashionMNIST")

    def text_labels(self, indices):
        return [CLASS_NAMES[int(i)] for i in indices]

    def get_dataloader(self, train):
        data = self.train if train else self.val
        return DataLoader(data, self.batch_size, shuffle=train, num_workers=self.num_workers)


class Trainer(HyperParameters):
    """Fits a Module to a DataModule: ``Trainer(max_epochs, num_gpus, gradient_clip_val)
    .fit(model, data)``; on the first GPU when ``num_gpus`` >= 1 and one is usable."""

    def __init__(self, max_epochs, num_gpus=0, gradient_clip_val=0):
        self.save_hyperparameters()
        check_int(max_epochs, "max_epochs", "Trainer", 0)
        self.max_epochs = d2l_epochs(max_epochs, "Trainer")     # TINYALEX_D2L_EPOCHS
        check_int(num_gpus, "num_gpus", "Trainer", 0)
        if isinstance(gradient_clip_val, bool) or not isinstance(gradient_clip_val,
                                                                 numbers.Real) \
                or not math.isfinite(gradient_clip_val) or gradient_clip_val < 0:
            raise ValueError(f"Trainer: gradient_clip_val must be a finite number >= 0 "
                             f"(0: no clipping), got {gradient_clip_val!r}")
        self.gpus = [gpu(i) for i in range(min(num_gpus, gpus_here(), 1))]

    def prepare_data(self, data):
        self.train_dataloader = data.train_dataloader()
        self.val_dataloader = data.val_dataloader()
        self.num_train_batches = len(self.train_dataloader)
        self.num_val_batches = (len(self.val_dataloader)
                                if self.val_dataloader is not None else 0)

    def prepare_model(self, model):
        model.trainer = self
        model.board.xlim = [0, self.max_epochs]
        if self.gpus:
            model.to(self.gpus[0])
        self.model = model

    def prepare_batch(self, batch):
        if self.gpus:
            batch = [a.to(self.gpus[0]) for a in batch]
        return batch

    def fit(self, model, data):
        self.prepare_data(data)
        self.prepare_model(model)
        self.optim = model.configure_optimizers()
        self.epoch = self.train_batch_idx = self.val_batch_idx = 0
        for self.epoch in range(self.max_epochs):
            self.fit_epoch()

    def fit_epoch(self):
        """One pass of training steps, then (if there is validation data) of
        validation steps in eval mode without a graph."""
        self.model.train()
        for batch in self.train_dataloader:
            loss = self.model.training_step(self.prepare_batch(batch))
            self.optim.zero_grad()
            with no_grad():                 # as d2l: backward and step record no graph
                loss.backward()
                if self.gradient_clip_val > 0:
                    self.clip_gradients(self.gradient_clip_val, self.model)
                self.optim.step()
            self.train_batch_idx += 1
        if self.val_dataloader is None:
            return
        self.model.eval()
        for batch in self.val_dataloader:
            with no_grad():
                self.model.validation_step(self.prepare_batch(batch))
            self.val_batch_idx += 1

    def clip_gradients(self, grad_clip_val, model):
        """Scale every gradient by ``grad_clip_val / norm`` when their joint L2 norm
        exceeds ``grad_clip_val``."""
        params = [p for p in model.parameters() if p.requires_grad and p.grad is not None]
        if not params:
            return
        xp = B.get_array_module(*(p.grad.array for p in params))
        norm = float(xp.sqrt(sum((p.grad.array.astype(np.float64) ** 2).sum()
                                 for p in params)))
        if norm > grad_clip_val:
            scale = grad_clip_val / norm
            for p in params:        # new arrays: a gradient array may be shared
                p.grad = Tensor(p.grad.array * p.grad.array.dtype.type(scale))
