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

Several processes (``group``, ``tinyalex/dist/``) run the same loop over the same
global batches: each takes its rows of a batch, the gradients are summed over the
processes before the step, and the step's loss sum, correct count and stop requests
after it, so that every process prints, checks and stops on the global batch's
numbers. Alone every sum is the identity and the loop is d2l's.
"""

from __future__ import annotations

import math
import signal
import sys
import time

import numpy as np

from .. import backend as B
from .. import random as R
from ..data import NUM_CLASSES, augment, batches, num_batches, to_input
from ..dist import SOLO
from ..faults import Stop, TrainingDiverged, diverged, divergence_message, translate_oom
from ..ops.loss import cross_entropy
from ..recipes import d2l_lr
from ..tensor import Tensor, no_grad


def _never() -> None:
    pass


def train_epoch(net, optimizer, images, labels, recipe: dict, backend: str, epoch: int,
                progress: bool = False, check=_never, group=SOLO, step=None) -> dict:
    """One pass over the (shuffled) training set; ``epoch`` counts from 0.

    With a ``group`` of several processes (``tinyalex/dist/``) each step is the global
    batch's: this process takes its rows, and ``optimizer`` must hold a
    ``FlatParameters`` (``SGD(..., flat=...)``) whose gradients are summed.

    ``step``: a ``tinyalex.cuda_graph.TrainStep`` doing the same step as one call (on
    the GPU, captured once as a CUDA graph and replayed, with one read back), for a
    single process. Its warm-up and capture steps (compiling and recording) are not
    counted in examples/sec; their time is the record's ``startup_seconds``."""
    if step is not None and group.size > 1:
        raise ValueError("train_epoch: a TrainStep runs one process's step; several "
                         "processes sum their gradients in the loop below")
    net.train()
    bs = recipe["batch_size"]
    steps = num_batches(len(images), bs)
    total_loss, correct, seen, timed, startup = 0.0, 0, 0, 0.0, 0.0
    bar = _progress_bar(len(images), f"epoch {epoch + 1}/{recipe['epochs']}", progress)
    try:
        for i, (X_host, y_host) in enumerate(batches(images, labels, bs, shuffle=True,
                                                     seed=recipe["seed"], epoch=epoch)):
            X_host = augment(X_host, recipe["seed"], epoch, i,
                             recipe.get("crop_padding") or 0, bool(recipe.get("flip")))
            n = len(y_host)                         # the (global) batch
            rows = group.rows(n)                    # this process's block of it
            start = time.perf_counter()
            if step is not None:             # the GPU's one-call step (tinyalex/cuda_graph.py)
                with translate_oom(f"in training step {i + 1} of epoch {epoch + 1}", n,
                                   backend, recipe["resize"]):
                    X = Tensor(to_input(X_host, backend, recipe["resize"]))
                    y = Tensor(B.xp_of(backend).asarray(y_host))
                    result = step(X, y)
                    batch_loss, hits = result.read()     # the step's one read back
                _check_loss(batch_loss, NUM_CLASSES, recipe, epoch, i + 1, steps)
                total_loss += batch_loss * n
                correct += int(hits)
                elapsed = time.perf_counter() - start
                if result.mode in ("warm-up", "capture"):
                    startup += elapsed               # compiling and recording, apart
                else:
                    seen += n
                    timed += elapsed
                _show(bar, n, total_loss / max(seen, 1), seen / max(timed, 1e-9))
                check()
                continue
            with translate_oom(f"in training step {i + 1} of epoch {epoch + 1}",
                               rows.stop - rows.start, backend, recipe["resize"]):
                optimizer.zero_grad()
                logits, y, loss = _forward_backward(net, X_host[rows], y_host[rows], n,
                                                    rows.start, backend, recipe["resize"])
                _sum_gradients(group, optimizer)
                optimizer.step()
                loss_sum = float(loss.item()) * len(y.array) if loss is not None else 0.0
                hits = _count_correct(logits.array, y.array) if loss is not None else 0
            if n < group.size:       # a process without rows drew no dropout seeds: resync
                R.set_rng_state(group.broadcast_object(R.get_rng_state()))
            (loss_sum, hits), stop = totals_and_stop(group, check, loss_sum, hits)
            batch_loss = loss_sum / n
            classes = logits.shape[1] if logits is not None else NUM_CLASSES   # no rows here
            _check_loss(batch_loss, classes, recipe, epoch, i + 1, steps)
            total_loss += batch_loss * n
            correct += int(hits)
            seen += n
            timed += time.perf_counter() - start
            _show(bar, n, total_loss / seen, seen / timed)
            _stop_if(stop, group, check)
    finally:
        if bar is not None:
            bar.close()
    _check_weights(net, recipe, epoch, steps)
    examples = len(images)
    record = {"loss": total_loss / examples, "train_acc": correct / examples,
              "examples_per_sec": seen / timed if timed else 0.0, "train_seconds": timed,
              "examples": seen}
    if step is not None:
        record["startup_seconds"] = startup
    return record


def _forward_backward(net, X_host, y_host, n: int, first: int, backend: str, resize):
    """Forward and backward of rows ``first..`` of a batch of ``n``: ``(logits, y,
    loss)``, or Nones for no rows. Alone the rows are the batch, and backward is the
    mean loss's; a share back-propagates ``loss * rows / n``, so that the sum of the
    processes' gradients is the gradient of the global batch's mean loss."""
    if len(y_host) == 0:
        return None, None, None
    X = Tensor(to_input(X_host, backend, resize))
    y = Tensor(B.xp_of(backend).asarray(y_host))
    with R.batch_rows(first):                  # dropout: these rows of the batch's masks
        logits = net(X)
        loss = cross_entropy(logits, y)
    if len(y_host) == n:
        loss.backward()
    else:
        loss.backward(loss.xp.asarray(len(y_host) / n, dtype=loss.dtype))
    return logits, y, loss


def _sum_gradients(group, optimizer) -> None:
    """Every process's gradient becomes the sum over processes: one collective over the
    flat gradient buffer (parameters without a gradient this step count as zeros)."""
    if group.size == 1:
        return
    flat = getattr(optimizer, "flat", None)
    if flat is None:
        raise ValueError("distributed training sums the gradients in one buffer: build the "
                         "optimizer with SGD(..., flat=FlatParameters(net.parameters()))")
    flat.zero_missing_gradients()
    group.sum_in_place(flat.grad)


def totals_and_stop(group, check, *values):
    """``(values summed over every process, stop)``: ``stop`` is the number of a signal
    any process received (SIGTERM before SIGINT), or 0. Alone: the values as they
    are, and 0 (the stop is ``check``'s own, ``_stop_if``)."""
    if group.size == 1:
        return values, 0
    try:
        check()
        local = 0
    except Stop as exc:
        local = exc.args[0] if exc.args else signal.SIGINT
    sums = group.sum_host([*values, local == signal.SIGINT, local == signal.SIGTERM])
    stop = signal.SIGTERM if sums[-1] else signal.SIGINT if sums[-2] else 0
    return tuple(float(v) for v in sums[:-2]), int(stop)


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
           if not bool(B.get_array_module(p.array).isfinite(p.array).all())]
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
