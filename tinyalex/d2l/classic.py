"""The ``train_ch6`` edition of d2l (d2l-zh, d2l-en 0.17): data, devices, metrics, the loop.

    train_iter, test_iter = d2l.load_data_fashion_mnist(256)           # LeNet: 28x28
    d2l.train_ch6(net, train_iter, test_iter, 10, 0.9, d2l.try_gpu())
    # training on cpu
    # loss 0.472, train acc 0.822, test acc 0.814
    # ... examples/sec on cpu             (benchmarks/results/ records measured speeds)

Written on tinyalex's public API (nn, optim, tensors, ``tinyalex.dataloader``), the
way the book writes it on PyTorch's. Where it differs from d2l, and why:

* ``load_data_fashion_mnist`` reads the IDX files where tinyalex's training scripts
  find them (``$FASHION_MNIST_DIR``, Debian's ``/usr/share/datasets/fashion-mnist``,
  a torchvision-style ``../data/FashionMNIST/raw``; ``tinyalex.data.find_files``) and
  downloads nothing: a missing data set is a FileNotFoundError saying where it
  looked and how to get the files. ``TINYALEX_D2L_LIMIT=N`` cuts both splits to their
  first N images and ``TINYALEX_D2L_EPOCHS=E`` makes ``train_ch6`` train E epochs
  (``tinyalex/data.py``), so that a chapter runs in a minute on a CPU; each says so
  when in effect. ``resize=0`` is an error here (d2l treats it as
  None); resizing and batching are ``tinyalex.dataloader``'s (its docstring says how
  they differ from torchvision's).
* ``train_ch6`` adds a point to the Animator every ``max(1, num_batches // 5)``
  batches: d2l divides by ``num_batches // 5`` and fails with ZeroDivisionError on a
  data set of fewer than 5 batches. Its Timer uses ``time.perf_counter`` (d2l:
  ``time.time``), a monotonic clock, for the same examples/sec.
* ``try_gpu(i)`` / ``gpu(i)`` name ``cuda:i`` as d2l does, but tinyalex computes on
  one GPU: ``cuda:0`` (moving to ``cuda:1`` is a ValueError with the reason).
"""

from __future__ import annotations

import time

import numpy as np

from .. import cuda, devices, nn, optim
from ..data import CLASS_NAMES, d2l_epochs, d2l_subset, load_fashion_mnist
from ..dataloader import DataLoader, ImageDataset, check_resize
from ..models import init_weights_xavier
from ..checks import check_int
from ..tensor import no_grad
from .plotting import Animator

# -- devices ---------------------------------------------------------------------------


def cpu() -> devices.device:
    """The CPU: tinyalex's numpy backend."""
    return devices.device("cpu")


def gpu(i=0) -> devices.device:
    """GPU ``i`` as a device (``cuda:i``); not checked until something moves there."""
    return devices.device("cuda", check_int(i, "i", "d2l.gpu", 0))


def num_gpus() -> int:
    """How many CUDA GPUs CuPy sees (0 without CuPy or a GPU)."""
    return cuda.device_count()


def try_gpu(i=0) -> devices.device:
    """``gpu(i)`` when there are more than ``i`` GPUs, else ``cpu()``."""
    return gpu(i) if num_gpus() > i else cpu()


def try_all_gpus() -> list:
    """Every GPU, or ``[cpu()]`` when there is none."""
    return [gpu(i) for i in range(num_gpus())] or [cpu()]


# -- measuring -------------------------------------------------------------------------

class Timer:
    """Stopwatch that keeps every interval: ``start()``, ``stop()``, then the intervals'
    ``sum()``, ``avg()`` or running ``cumsum()`` in seconds. Starts when built."""

    def __init__(self):
        self.times = []
        self.start()

    def start(self) -> None:
        self.tik = time.perf_counter()

    def stop(self) -> float:
        self.times.append(time.perf_counter() - self.tik)
        return self.times[-1]

    def avg(self) -> float:
        return sum(self.times) / len(self.times)

    def sum(self) -> float:
        return sum(self.times)

    def cumsum(self) -> list:
        return np.cumsum(self.times).tolist()


class Accumulator:
    """``n`` running sums; ``add(a, b, ...)`` adds one value (number or one-element
    tensor) to each, ``acc[i]`` reads sum ``i``."""

    def __init__(self, n):
        self.data = [0.0] * check_int(n, "n", "Accumulator", 1)

    def add(self, *values) -> None:
        self.data = [total + float(v) for total, v in zip(self.data, values)]

    def reset(self) -> None:
        self.data = [0.0] * len(self.data)

    def __getitem__(self, i):
        return self.data[i]


def accuracy(y_hat, y) -> float:
    """How many predictions are right: rows of logits ``y_hat`` (N, K) are reduced to
    their largest class first; a (N,) ``y_hat`` is taken as the classes themselves."""
    if y_hat.ndim > 1 and y_hat.shape[1] > 1:
        y_hat = y_hat.argmax(axis=1)
    right = y_hat.type(y.dtype) == y                       # (N,) bool
    return float(right.type(y.dtype).sum())


def evaluate_accuracy_gpu(net, data_iter, device=None) -> float:
    """The fraction of ``data_iter``'s examples ``net`` classifies right, in eval mode
    and without a graph, on ``device`` (default: where ``net``'s parameters are)."""
    if isinstance(net, nn.Module):
        net.eval()
        if not device:
            device = next(iter(net.parameters())).device
    right_and_seen = Accumulator(2)
    with no_grad():
        for X, y in data_iter:
            X = [x.to(device) for x in X] if isinstance(X, list) else X.to(device)
            y = y.to(device)
            right_and_seen.add(accuracy(net(X), y), y.numel())
    return right_and_seen[0] / right_and_seen[1]


# -- data ------------------------------------------------------------------------------

def get_dataloader_workers() -> int:
    """d2l's 4 loader processes; tinyalex's loaders take the number and need none."""
    return 4


def get_fashion_mnist_labels(labels) -> list:
    """The text labels ('t-shirt', 'trouser', ...) of numeric labels."""
    return [CLASS_NAMES[int(i)] for i in labels]


def load_data_fashion_mnist(batch_size, resize=None):
    """``(train_iter, test_iter)``: Fashion-MNIST loaders, the training one shuffled
    every epoch, images float32 (N, 1, S, S) in [0, 1], resized when ``resize`` (an int
    or a pair) is given; the last partial batch is kept."""
    where = "load_data_fashion_mnist"
    batch_size = check_int(batch_size, "batch_size", where, 1)
    resize = check_resize(resize, where)
    train_X, train_y, test_X, test_y = d2l_subset(*load_fashion_mnist(), where)
    workers = get_dataloader_workers()
    return (DataLoader(ImageDataset(train_X, train_y, resize, where), batch_size,
                       shuffle=True, num_workers=workers),
            DataLoader(ImageDataset(test_X, test_y, resize, where), batch_size,
                       shuffle=False, num_workers=workers))


# -- the loop --------------------------------------------------------------------------

def train_ch6(net, train_iter, test_iter, num_epochs, lr, device):
    """Train ``net`` with SGD at ``lr`` and the mean cross-entropy for ``num_epochs``
    on ``device``, from Xavier-uniform weights (every Conv2d and Linear), as d2l.

    Each epoch: training mode; per batch, the time from ``zero_grad`` (moving the batch
    to ``device`` included) to the metrics is measured, not the loader's making of the
    batch; the running training loss and accuracy go to the Animator five times an
    epoch, the test accuracy (eval mode, ``evaluate_accuracy_gpu``) once.
    Then it prints d2l's three lines: the device, the last epoch's loss and
    accuracies, and examples/sec over every measured step.
    """
    check_int(num_epochs, "num_epochs", "train_ch6", 1)
    num_epochs = d2l_epochs(num_epochs, "train_ch6")
    net.apply(init_weights_xavier)
    print("training on", device)
    net.to(device)
    sgd = optim.SGD(net.parameters(), lr=lr)
    criterion = nn.CrossEntropyLoss()
    # one epoch (TINYALEX_D2L_EPOCHS=1) would give matplotlib an empty x range
    animator = Animator(xlabel="epoch", xlim=[1, max(num_epochs, 2)],
                        legend=["train loss", "train acc", "test acc"])
    steps = len(train_iter)
    plot_every = max(1, steps // 5)
    timer = Timer()
    for epoch in range(num_epochs):
        sums = Accumulator(3)          # loss * examples, right predictions, examples
        net.train()
        for step, (X, y) in enumerate(train_iter, start=1):
            timer.start()
            sgd.zero_grad()
            X, y = X.to(device), y.to(device)
            logits = net(X)
            batch_loss = criterion(logits, y)
            batch_loss.backward()
            sgd.step()
            with no_grad():
                sums.add(batch_loss * X.shape[0], accuracy(logits, y), X.shape[0])
            timer.stop()
            train_loss, train_acc = sums[0] / sums[2], sums[1] / sums[2]
            if step % plot_every == 0 or step == steps:
                animator.add(epoch + step / steps, (train_loss, train_acc, None))
        test_acc = evaluate_accuracy_gpu(net, test_iter)
        animator.add(epoch + 1, (None, None, test_acc))
    print(f"loss {train_loss:.3f}, train acc {train_acc:.3f}, test acc {test_acc:.3f}")
    print(f"{sums[2] * num_epochs / timer.sum():.1f} examples/sec on {device}")
