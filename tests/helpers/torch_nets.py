"""PyTorch's side of the weight-exchange tests (d2l/test_d2l_weights.py,
reliability/test_messages.py): d2l's LeNet and AlexNet (train_ch6 edition) built in
PyTorch, and the logits of one of ours and one of theirs on the same images.
Importing it needs PyTorch (``require_torch``: a skip here, a failure in CI)."""

from __future__ import annotations

import numpy as np

import tinyalex
from helpers.checks import require_torch

torch = require_torch()                     # at module level: skips or fails the importer
import safetensors.torch  # noqa: E402,F401  (needs torch; the importers use it)


def torch_lenet():
    """d2l's LeNet (train_ch6 edition), in PyTorch."""
    t = torch.nn
    return t.Sequential(
        t.Conv2d(1, 6, kernel_size=5, padding=2), t.Sigmoid(), t.AvgPool2d(kernel_size=2, stride=2),
        t.Conv2d(6, 16, kernel_size=5), t.Sigmoid(), t.AvgPool2d(kernel_size=2, stride=2),
        t.Flatten(), t.Linear(16 * 5 * 5, 120), t.Sigmoid(), t.Linear(120, 84), t.Sigmoid(),
        t.Linear(84, 10))


def torch_alexnet():
    """d2l's AlexNet (train_ch6 edition), in PyTorch."""
    t = torch.nn
    return t.Sequential(
        t.Conv2d(1, 96, kernel_size=11, stride=4, padding=1), t.ReLU(),
        t.MaxPool2d(kernel_size=3, stride=2),
        t.Conv2d(96, 256, kernel_size=5, padding=2), t.ReLU(), t.MaxPool2d(kernel_size=3, stride=2),
        t.Conv2d(256, 384, kernel_size=3, padding=1), t.ReLU(),
        t.Conv2d(384, 384, kernel_size=3, padding=1), t.ReLU(),
        t.Conv2d(384, 256, kernel_size=3, padding=1), t.ReLU(),
        t.MaxPool2d(kernel_size=3, stride=2), t.Flatten(),
        t.Linear(6400, 4096), t.ReLU(), t.Dropout(p=0.5),
        t.Linear(4096, 4096), t.ReLU(), t.Dropout(p=0.5), t.Linear(4096, 10))



def logits_of(ours, theirs, size, seed=0):
    x = np.random.default_rng(seed).random((2, 1, size, size), dtype=np.float32)
    ours.eval()
    theirs.eval()
    with torch.no_grad():
        want = theirs(torch.tensor(x)).numpy()
    with tinyalex.no_grad():
        got = ours(tinyalex.tensor(x)).numpy()
    return got, want
