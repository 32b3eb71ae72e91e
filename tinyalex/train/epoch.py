"""d2l's ``train_ch6``, one epoch at a time: the loop a reader comes for.

    stats = train_epoch(net, optimizer, images, labels, recipe, "numpy", epoch=0)
    acc = evaluate_accuracy(net, test_images, test_labels, 256, "numpy")

One ``train_step`` per batch, as the book writes it (zero_grad, forward, mean
cross-entropy, backward, SGD step) on the batch moved to the backend (resized to
``recipe["resize"]``), then the batch's loss and correct predictions added to the
epoch's sums. The epoch
reports the loss and accuracy averaged over its examples (measured on the fly,
dropout on) and examples/sec counted over the training steps only. ``evaluate_accuracy``
and ``predict`` run in eval mode without recording a graph.

Faults are reported where they happen: a batch loss that is not finite or far above
chance level raises ``TrainingDiverged`` (``tinyalex/faults.py``), an allocation
failure ``OutOfMemory``. ``check()`` runs after every batch: the run's stop request
(``tinyalex/train/run.py`` passes ``Signals.check``).

What else a step can be is a wrapper beside it, for a reader to skip: several
processes (``group``, ``tinyalex/dist/``) each run their share of every global
batch's step (``shares.py``), and the GPU runs the step as one call, a CUDA graph
(``tinyalex/cuda_graph.py``). Alone on the CPU the loop is d2l's.
"""

from __future__ import annotations

import math
import sys
import time

import numpy as np

from .. import backend as B
from ..data import augment, batches, num_batches, to_input
from ..dist import SOLO
from ..faults import Stop, TrainingDiverged, diverged, divergence_message, translate_oom
from ..ops.loss import cross_entropy
from ..recipes import d2l_lr
from ..nn.module import Module
from ..optim import SGD
from ..tensor import Tensor, no_grad
from .batch import Done, count_correct, to_backend
from .shares import ShareStep, totals_and_stop


def _never() -> None:
    pass


def train_step(net: Module, optimizer: SGD, X: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
    """One step of d2l's ``train_ch6`` on the batch ``(X, y)``: ``(logits, loss)``."""
    optimizer.zero_grad()
    logits = net(X)                      # forward, layer by layer: (N, classes)
    loss = cross_entropy(logits, y)      # the batch's mean loss: one number
    loss.backward()                      # the gradient of every weight
    optimizer.step()                     # SGD: w -= lr * (grad + momentum, decay)
    return logits, loss


def train_epoch(net, optimizer, images, labels, recipe: dict, backend: str, epoch: int,
                progress: bool = False, check=_never, group=SOLO, step=None) -> dict:
    """One pass over the (shuffled) training set; ``epoch`` counts from 0.

    Alone, each batch is one ``train_step``. With a ``group`` of several processes
    (``tinyalex/dist/``) each step is the global batch's, this process taking its rows
    (``shares.ShareStep``); ``optimizer`` must then hold a ``FlatParameters``
    (``SGD(..., flat=...)``) whose gradients are summed.

    ``step``: a ``tinyalex.cuda_graph.TrainStep`` doing ``train_step`` as one call (on
    the GPU, captured once as a CUDA graph and replayed, with one read back), for a
    single process. Its warm-up and capture steps (compiling and recording) are not
    counted in examples/sec; their time is the record's ``startup_seconds``."""
    if step is not None and group.size > 1:
        raise ValueError("train_epoch: a TrainStep runs one process's step; several "
                         "processes sum their gradients in the loop below")
    net.train()
    if step is not None:            # the GPU's one-call step (tinyalex/cuda_graph.py)
        one_step = _GraphStep(step, backend, recipe["resize"])
    elif group.size > 1:            # this process's rows of every batch (shares.py)
        one_step = ShareStep(net, optimizer, group, backend, recipe["resize"], check)
    else:                           # d2l's loop: train_step on every batch
        one_step = _EagerStep(net, optimizer, backend, recipe["resize"])
    steps = num_batches(len(images), recipe["batch_size"])
    meter = _Meter(len(images), f"epoch {epoch + 1}/{recipe['epochs']}", progress)
    with meter:
        for i, (X_host, y_host) in enumerate(_augmented_batches(images, labels, recipe,
                                                                epoch)):
            n = len(y_host)
            start = time.perf_counter()
            with translate_oom(f"in training step {i + 1} of epoch {epoch + 1}",
                               one_step.rows(n), backend, recipe["resize"]):
                done = one_step(X_host, y_host)
            _check_loss(done.batch_loss, done.classes, recipe, epoch, i + 1, steps)
            meter.add(n, done.batch_loss, done.hits, time.perf_counter() - start,
                      startup=done.startup)
            _stop_if(done.stop, group, check)
    _check_weights(net, recipe, epoch, steps)
    return meter.record(step is not None)


# --------------------------------------------------------------------------------------
# The steps train_epoch runs: d2l's (train_step) and the GPU's one call (TrainStep)
# --------------------------------------------------------------------------------------

def _augmented_batches(images, labels, recipe: dict, epoch: int):
    """The epoch's shuffled batches (host arrays), each augmented as the recipe says."""
    for i, (X_host, y_host) in enumerate(batches(images, labels, recipe["batch_size"],
                                                 shuffle=True, seed=recipe["seed"],
                                                 epoch=epoch)):
        yield augment(X_host, recipe["seed"], epoch, i, recipe.get("crop_padding") or 0,
                      bool(recipe.get("flip"))), y_host


class _EagerStep:
    """``train_step`` on a host batch, with its loss sum and correct count."""

    def __init__(self, net, optimizer, backend: str, resize):
        self.net, self.optimizer, self.backend, self.resize = net, optimizer, backend, resize

    def rows(self, n: int) -> int:
        return n

    def __call__(self, X_host, y_host) -> Done:
        X, y = to_backend(X_host, y_host, self.backend, self.resize)
        logits, loss = train_step(self.net, self.optimizer, X, y)
        loss_sum = float(loss.item()) * len(y.array)
        return Done(loss_sum / len(y_host), count_correct(logits.array, y.array),
                    logits.shape[1])


class _GraphStep:
    """A ``cuda_graph.TrainStep`` on a host batch: one call, one read back."""

    def __init__(self, step, backend: str, resize):
        self.step, self.backend, self.resize = step, backend, resize

    def rows(self, n: int) -> int:
        return n

    def __call__(self, X_host, y_host) -> Done:
        X, y = to_backend(X_host, y_host, self.backend, self.resize)
        result = self.step(X, y)
        batch_loss, hits = result.read()            # the step's one read back
        return Done(batch_loss, int(hits),
                    startup=result.mode in ("warm-up", "capture"))


def _stop_if(stop: int, group, check) -> None:
    """Stop every process on the agreed signal; alone, on the run's own request."""
    if stop:
        raise Stop(stop)
    if group.size == 1:
        check()


def predict(net, images, batch_size: int, backend: str, resize=None,
            check=_never) -> np.ndarray:
    """Predicted classes (host int64 array) for uint8 images, in eval mode, no graph."""
    was_training = net.training
    net.eval()
    out = []
    try:
        with no_grad():
            for i, (X_host, _) in enumerate(batches(images, np.zeros(len(images), np.int64),
                                                    batch_size)):
                with translate_oom(f"in evaluation (batch {i + 1})", len(X_host), backend,
                                   resize or X_host.shape[-1]):
                    logits = net(Tensor(to_input(X_host, backend, resize))).array
                    out.append(B.to_numpy(logits.argmax(axis=1)).astype(np.int64))
                check()
    finally:
        net.train(was_training)
    return np.concatenate(out) if out else np.zeros(0, np.int64)


def evaluate_accuracy(net, images, labels, batch_size: int, backend: str, resize=None,
                      check=_never, group=SOLO) -> float:
    """Test accuracy in eval mode (dropout off), without recording a graph.

    With a ``group`` of several processes each predicts its contiguous block of the
    test set (no example twice) and the correct counts are summed; a stop request is
    honoured once all have counted."""
    if group.size == 1:
        predicted = predict(net, images, batch_size, backend, resize, check)
        return float((predicted == labels).mean())
    block = group.rows(len(images))
    predicted = predict(net, images[block], batch_size, backend, resize)
    (hits,), stop = totals_and_stop(group, check, int((predicted == labels[block]).sum()))
    _stop_if(stop, group, check)
    return hits / len(images)


def summary_line(record: dict, backend: str, processes: int = 1) -> str:
    """An epoch's record in d2l's words: ``loss 0.472, train acc 0.822, ...``; with
    several processes the speed is theirs together, and the line says how many."""
    together = f" x {processes} processes" if processes > 1 else ""
    return (f"loss {record['loss']:.3f}, train acc {record['train_acc']:.3f}, "
            f"test acc {record['test_acc']:.3f}, {record['examples_per_sec']:.1f} "
            f"examples/sec on {backend}{together}")


# --------------------------------------------------------------------------------------
# The loop's helpers: divergence checks, the epoch's sums and progress bar
# --------------------------------------------------------------------------------------

def _check_loss(batch_loss: float, classes: int, recipe, epoch: int, step: int,
                steps: int) -> None:
    """Raise ``TrainingDiverged`` for a batch loss that is not finite or is far above
    chance level (``faults.diverged``)."""
    if not diverged(batch_loss, classes):
        return
    what = (f"the batch loss is {batch_loss}" if not math.isfinite(batch_loss)
            else f"the batch loss is {batch_loss:.4g}, far above chance level "
                 f"(ln {classes} = {math.log(classes):.3f})")
    raise TrainingDiverged(divergence_message(recipe, d2l_lr(recipe), epoch, step, steps,
                                              what), epoch, step, batch_loss)


def _check_weights(net, recipe, epoch: int, steps: int) -> None:
    """Raise ``TrainingDiverged`` when the epoch left NaN or infinite weights."""
    bad = [name for name, p in net.named_parameters()
           if not bool(B.get_array_module(p.array).isfinite(p.array).all())]
    if bad:
        raise TrainingDiverged(
            divergence_message(recipe, d2l_lr(recipe), epoch, steps, steps,
                               f"after the last step the weights {bad[:3]} hold NaN or "
                               "infinite values"), epoch, steps, float("nan"))


class _Meter:
    """The epoch's sums (loss, correct, examples, seconds) and its progress bar."""

    def __init__(self, total: int, desc: str, progress: bool):
        self.total_loss, self.correct, self.seen, self.timed, self.startup = 0.0, 0, 0, 0.0, 0.0
        self.examples = total
        self.bar = None
        if progress:
            from tqdm import tqdm       # imported only when a bar is asked for
            self.bar = tqdm(total=total, desc=desc, unit="img", leave=False,
                            file=sys.stderr, mininterval=0.5, dynamic_ncols=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        if self.bar is not None:
            self.bar.close()

    def add(self, n: int, batch_loss: float, hits: int, seconds: float,
            startup: bool) -> None:
        self.total_loss += batch_loss * n
        self.correct += int(hits)
        if startup:
            self.startup += seconds              # compiling and recording, apart
        else:
            self.seen += n
            self.timed += seconds
        if self.bar is not None:
            self.bar.update(n)
            self.bar.set_postfix(loss=f"{self.total_loss / max(self.seen, 1):.3f}",
                                 img_s=f"{self.seen / max(self.timed, 1e-9):.1f}",
                                 refresh=False)

    def record(self, startup: bool) -> dict:
        record = {"loss": self.total_loss / self.examples,
                  "train_acc": self.correct / self.examples,
                  "examples_per_sec": self.seen / self.timed if self.timed else 0.0,
                  "train_seconds": self.timed, "examples": self.seen}
        if startup:
            record["startup_seconds"] = self.startup
        return record
