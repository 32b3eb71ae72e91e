"""d2l's ``train_ch6``, one epoch at a time: the loop a reader comes for.

    stats = train_epoch(net, optimizer, images, labels, recipe, "numpy", epoch=0)
    acc = evaluate_accuracy(net, test_images, test_labels, 256, "numpy")

One training step per batch, as the book writes it: move the batch to the backend
(resized to ``recipe["resize"]``), forward, mean cross-entropy, backward, SGD step,
then add the batch's loss and correct predictions to the epoch's sums. The epoch
reports the loss and accuracy averaged over its examples (measured on the fly,
dropout on) and examples/sec counted over the training steps only. ``evaluate_accuracy``
and ``predict`` run in eval mode without recording a graph.

Faults are reported where they happen: a batch loss that is not finite or far above
chance level raises ``TrainingDiverged`` (``tinyalex/faults.py``), an allocation
failure ``OutOfMemory``. ``check()`` runs after every batch: the run's stop request
(``tinyalex/train/run.py`` passes ``Signals.check``).
"""

from __future__ import annotations

import math
import sys
import time

import numpy as np

from .. import backend as B
from ..data import augment, batches, num_batches, to_input
from ..faults import TrainingDiverged, diverged, divergence_message, translate_oom
from ..ops.loss import cross_entropy
from ..recipes import d2l_lr
from ..tensor import Tensor, no_grad


def _never() -> None:
    pass


def train_epoch(net, optimizer, images, labels, recipe: dict, backend: str, epoch: int,
                progress: bool = False, check=_never) -> dict:
    """One pass over the (shuffled) training set; ``epoch`` counts from 0."""
    net.train()
    bs = recipe["batch_size"]
    steps = num_batches(len(images), bs)
    total_loss, correct, seen, timed = 0.0, 0, 0, 0.0
    bar = _progress_bar(len(images), f"epoch {epoch + 1}/{recipe['epochs']}", progress)
    try:
        for i, (X_host, y_host) in enumerate(batches(images, labels, bs, shuffle=True,
                                                     seed=recipe["seed"], epoch=epoch)):
            X_host = augment(X_host, recipe["seed"], epoch, i,
                             recipe.get("crop_padding") or 0, bool(recipe.get("flip")))
            start = time.perf_counter()
            with translate_oom(f"in training step {i + 1} of epoch {epoch + 1}", len(X_host),
                               backend, recipe["resize"]):
                X = Tensor(to_input(X_host, backend, recipe["resize"]))
                y = Tensor(B.xp_of(backend).asarray(y_host))
                optimizer.zero_grad()
                logits = net(X)
                loss = cross_entropy(logits, y)
                loss.backward()
                optimizer.step()
                batch_loss = float(loss.item())      # waits for the GPU, as d2l's metric.add
            _check_loss(batch_loss, logits.shape[1], recipe, epoch, i + 1, steps)
            n = len(y_host)
            total_loss += batch_loss * n
            correct += _count_correct(logits.data, y.data)
            seen += n
            timed += time.perf_counter() - start
            _show(bar, n, total_loss / seen, seen / timed)
            check()
    finally:
        if bar is not None:
            bar.close()
    _check_weights(net, recipe, epoch, steps)
    return {"loss": total_loss / seen, "train_acc": correct / seen,
            "examples_per_sec": seen / timed, "train_seconds": timed, "examples": seen}


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
                    logits = net(Tensor(to_input(X_host, backend, resize))).data
                    out.append(B.to_numpy(logits.argmax(axis=1)).astype(np.int64))
                check()
    finally:
        net.train(was_training)
    return np.concatenate(out) if out else np.zeros(0, np.int64)


def evaluate_accuracy(net, images, labels, batch_size: int, backend: str, resize=None,
                      check=_never) -> float:
    """Test accuracy in eval mode (dropout off), without recording a graph."""
    predicted = predict(net, images, batch_size, backend, resize, check)
    return float((predicted == labels).mean())


def summary_line(record: dict, backend: str) -> str:
    """An epoch's record in d2l's words: ``loss 0.472, train acc 0.822, ...``."""
    return (f"loss {record['loss']:.3f}, train acc {record['train_acc']:.3f}, "
            f"test acc {record['test_acc']:.3f}, {record['examples_per_sec']:.1f} "
            f"examples/sec on {backend}")


# --------------------------------------------------------------------------------------
# The loop's helpers: accuracy, divergence checks, progress bar
# --------------------------------------------------------------------------------------

def _count_correct(logits, y) -> int:
    """Number of rows whose largest logit is at the label (d2l's ``accuracy``)."""
    return int((logits.argmax(axis=1) == y).sum())


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
           if not bool(B.get_array_module(p.data).isfinite(p.data).all())]
    if bad:
        raise TrainingDiverged(
            divergence_message(recipe, d2l_lr(recipe), epoch, steps, steps,
                               f"after the last step the weights {bad[:3]} hold NaN or "
                               "infinite values"), epoch, steps, float("nan"))


def _progress_bar(total, desc, enabled):
    if not enabled:
        return None
    from tqdm import tqdm       # imported only when a bar is asked for
    return tqdm(total=total, desc=desc, unit="img", leave=False, file=sys.stderr,
                mininterval=0.5, dynamic_ncols=True)


def _show(bar, n: int, loss: float, images_per_sec: float) -> None:
    if bar is not None:
        bar.update(n)
        bar.set_postfix(loss=f"{loss:.3f}", img_s=f"{images_per_sec:.1f}", refresh=False)
