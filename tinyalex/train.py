"""d2l's ``train_ch6``: train a network on Fashion-MNIST and report as the book does.

    recipe = dict(D2L_RECIPES["lenet"], epochs=2)
    net, history = fit(recipe, load_fashion_mnist(), backend="numpy", out_dir="runs/lenet")

What happens (d2l semantics): every Conv2d/Linear weight gets Xavier-uniform
initialisation, the optimiser is SGD, the loss is the mean cross-entropy. Each epoch
reports the training loss and accuracy averaged over the epoch's examples (measured
on the fly, dropout on), the test accuracy in eval mode without recording a graph,
and examples/sec counted over the training steps only (moving the batch to the
backend, resizing, forward, backward, update), in d2l's words::

    loss 0.328, train acc 0.879, test acc 0.885, 15368.3 examples/sec on cupy

With ``out_dir`` every complete epoch leaves there ``checkpoint.npz``,
``metrics.json`` and ``curves.png``. Runs are deterministic for a given seed,
backend, kernel mode and thread count (README, Reliability); a run resumed from a checkpoint (``resume=``) continues exactly where the
uninterrupted run would be. Ctrl-C (SIGINT) or SIGTERM stops training after the
current batch (a second one at once, unless a checkpoint is being written, which
is always finished first); then ``TrainingInterrupted`` is raised and the files of
the last complete epoch stay.

Faults (``tinyalex/faults.py``; tests/test_faults.py, tests/test_resources.py):

* SIGKILL or a power cut at any moment leaves the last complete checkpoint whole
  (files are written atomically, ``checkpoint.atomic_write``); the next run into the
  folder removes the temporary files a killed write left, and holds the folder
  locked while it trains, so that two runs never write into one folder;
* a loss that is not finite, or far above chance level (``DIVERGENCE_FACTOR``), stops
  training with ``TrainingDiverged``, naming the epoch and step and what to change;
  the checkpoint of the last complete epoch is kept;
* running out of memory (NumPy's MemoryError, CuPy's OutOfMemoryError, a cuBLAS or
  CUDA allocation failure) in a training step or in evaluation becomes
  ``OutOfMemory``, which says where and suggests a smaller batch.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import platform
import signal
import sys
import time
from pathlib import Path

import numpy as np

from . import backend as B
from . import random as R
from .atomic import exclusive_folder, remove_stale_temps
from .checks import check_int, check_number
from .checkpoint import (atomic_write, build_model, check_records, load_checkpoint,
                         load_optimizer, load_weights, save_checkpoint)
from .data import MAX_RESIZE, ROWS, augment, batches, num_batches, to_input
# the faults a run reports (re-exported: tinyalex.train.TrainingDiverged, ...)
from .faults import (DIVERGENCE_FACTOR, EXIT_DIVERGED, OutOfMemory, Signals,  # noqa: F401
                     Stop, TrainingDiverged, TrainingInterrupted, device_of, diverged,
                     divergence_message, is_out_of_memory, reason, translate_oom)
from .models import init_weights_xavier
from .ops.loss import cross_entropy
from .optim import SGD
from .tensor import Tensor, no_grad

# d2l's recipes (AlexNet chapter: batch 128, lr 0.01, 10 epochs, resize 224;
# LeNet chapter: batch 256, lr 0.9, 10 epochs, 28x28)
D2L_RECIPES = {
    "alexnet": {"model": "alexnet", "epochs": 10, "batch_size": 128, "lr": 0.01,
                "momentum": 0.0, "weight_decay": 0.0, "resize": 224, "seed": 0,
                "train_limit": None, "test_limit": None, "crop_padding": 0, "flip": False},
    "lenet": {"model": "lenet", "epochs": 10, "batch_size": 256, "lr": 0.9,
              "momentum": 0.0, "weight_decay": 0.0, "resize": 28, "seed": 0,
              "train_limit": None, "test_limit": None, "crop_padding": 0, "flip": False},
}
CHECKPOINT = "checkpoint.npz"
METRICS = "metrics.json"
CURVES = "curves.png"

def _never() -> None:
    pass


def _d2l_lr(recipe):
    return D2L_RECIPES[recipe["model"]]["lr"] if recipe.get("model") in D2L_RECIPES else None


# --------------------------------------------------------------------------------------
# Measuring
# --------------------------------------------------------------------------------------

def device_name(backend: str) -> str:
    """The processor a backend computes on, in words (for metrics.json)."""
    if backend == "cupy":
        cp = B.cupy_module()
        dev = cp.cuda.Device()
        name = cp.cuda.runtime.getDeviceProperties(dev.id)["name"]
        return f"GPU {dev.id}: {name.decode() if isinstance(name, bytes) else name}"
    model = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return f"CPU: {model}, {os.cpu_count()} logical cores"


def _count_correct(logits, y) -> int:
    """Number of rows whose largest logit is at the label (d2l's ``accuracy``)."""
    return int((logits.argmax(axis=1) == y).sum())


def predict(net, images, batch_size: int, backend: str, resize=None,
            check=_never) -> np.ndarray:
    """Predicted classes (host int64 array) for uint8 images, in eval mode, no graph.

    ``check()`` runs after every batch (the training loop's stop request)."""
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


def _progress_bar(total, desc, enabled):
    if not enabled:
        return None
    from tqdm import tqdm
    return tqdm(total=total, desc=desc, unit="img", leave=False, file=sys.stderr,
                mininterval=0.5, dynamic_ncols=True)


def train_epoch(net, optimizer, images, labels, recipe: dict, backend: str, epoch: int,
                progress: bool = False, check=_never) -> dict:
    """One pass over the (shuffled) training set; ``epoch`` counts from 0.

    ``check()`` runs after every batch (the training loop's stop request). A diverged
    batch loss raises ``TrainingDiverged``, an allocation failure ``OutOfMemory``."""
    net.train()
    total_loss, correct, seen, timed = 0.0, 0, 0, 0.0
    bs = recipe["batch_size"]
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
            n = len(y_host)
            classes = logits.shape[1]
            if diverged(batch_loss, classes):
                what = (f"the batch loss is {batch_loss}" if not math.isfinite(batch_loss)
                        else f"the batch loss is {batch_loss:.4g}, far above chance level "
                             f"(ln {classes} = {math.log(classes):.3f})")
                raise TrainingDiverged(
                    divergence_message(recipe, _d2l_lr(recipe), epoch, i + 1,
                                       num_batches(len(images), bs), what),
                    epoch, i + 1, batch_loss)
            total_loss += batch_loss * n
            correct += _count_correct(logits.data, y.data)
            seen += n
            timed += time.perf_counter() - start
            if bar is not None:
                bar.update(n)
                bar.set_postfix(loss=f"{total_loss / seen:.3f}", img_s=f"{seen / timed:.1f}",
                                refresh=False)
            check()
    finally:
        if bar is not None:
            bar.close()
    bad = [name for name, p in net.named_parameters()
           if not bool(B.get_array_module(p.data).isfinite(p.data).all())]
    if bad:
        steps = num_batches(len(images), bs)
        raise TrainingDiverged(
            divergence_message(recipe, _d2l_lr(recipe), epoch, steps, steps,
                               f"after the last step the weights {bad[:3]} hold NaN or "
                               "infinite values"), epoch, steps, float("nan"))
    return {"loss": total_loss / seen, "train_acc": correct / seen,
            "examples_per_sec": seen / timed, "train_seconds": timed, "examples": seen}


def summary_line(record: dict, backend: str) -> str:
    return (f"loss {record['loss']:.3f}, train acc {record['train_acc']:.3f}, "
            f"test acc {record['test_acc']:.3f}, {record['examples_per_sec']:.1f} "
            f"examples/sec on {backend}")


# --------------------------------------------------------------------------------------
# The loop
# --------------------------------------------------------------------------------------

def check_recipe(recipe: dict) -> dict:
    """Fill in defaults from the model's d2l recipe and check every value."""
    if recipe.get("model") not in D2L_RECIPES:
        raise ValueError(f"recipe: model must be one of {sorted(D2L_RECIPES)}, got "
                         f"{recipe.get('model')!r}")
    full = dict(D2L_RECIPES[recipe["model"]])
    unknown = sorted(set(recipe) - set(full))
    if unknown:
        raise ValueError(f"recipe: unknown keys {unknown}; known: {sorted(full)}")
    full.update(recipe)
    for key in ("epochs", "batch_size", "resize"):
        check_int(full[key], key, "recipe", 1, type_error=ValueError)
    if full["resize"] > MAX_RESIZE:
        raise ValueError(f"recipe: resize must be at most {MAX_RESIZE} (the images are "
                         f"{ROWS}x{ROWS}; d2l's AlexNet takes 224), got {full['resize']!r}")
    for key in ("train_limit", "test_limit"):
        check_int(full[key], key, "recipe", 1, allow_none=True, type_error=ValueError)
    check_int(full["seed"], "seed", "recipe", 0, type_error=ValueError)
    check_int(full["crop_padding"], "crop_padding", "recipe", 0, ROWS, type_error=ValueError)
    if not isinstance(full["flip"], (bool, np.bool_)):
        raise ValueError(f"recipe: flip must be True or False, got {full['flip']!r}")
    check_number(full["lr"], "lr", "recipe", positive=True)
    check_number(full["momentum"], "momentum", "recipe")
    check_number(full["weight_decay"], "weight_decay", "recipe")
    return full


def _check_input_size(net, recipe) -> None:
    """Fail before any training when the network cannot take --resize images."""
    from .summarize import layer_rows
    S = recipe["resize"]
    try:
        layer_rows(net, (1, 1, S, S))
    except (ValueError, TypeError) as exc:
        need = D2L_RECIPES[recipe["model"]]["resize"]
        raise ValueError(f"recipe: {recipe['model']} cannot take {S}x{S} inputs (d2l's "
                         f"recipe uses {need}x{need}): {exc}") from None


def _limit(arrays, n):
    return arrays if n is None else tuple(a[:n] for a in arrays)


def _write_json(path, obj) -> None:
    text = json.dumps(obj, indent=2) + "\n"
    atomic_write(path, lambda f: f.write(text.encode()))


def fit(recipe: dict, data, backend: str = "numpy", out_dir=None, resume=None,
        progress: bool = False, log=print):
    """Build ``recipe['model']``, train it on ``data`` and return ``(net, records)``.

    ``data`` is ``load_fashion_mnist()``'s 4-tuple. ``resume`` is a checkpoint path
    (or a loaded Checkpoint) to continue from; its recipe must equal ``recipe`` but
    for ``epochs``. ``records`` holds one dict per epoch, as in metrics.json.
    """
    recipe = check_recipe(recipe)
    B.check_backend_name(backend)
    train_images, train_labels = _limit(data[:2], recipe["train_limit"])
    test_images, test_labels = _limit(data[2:], recipe["test_limit"])

    try:
        R.manual_seed(recipe["seed"])
        net = build_model(recipe["model"])
        _check_input_size(net, recipe)
        net.apply(init_weights_xavier)
        net.to(backend)
        optimizer = SGD(net.parameters(), lr=recipe["lr"], momentum=recipe["momentum"],
                        weight_decay=recipe["weight_decay"])
    except Exception as exc:
        if not is_out_of_memory(exc):
            raise
        raise OutOfMemory(f"out of {device_of(exc, backend)} memory building "
                          f"{recipe['model']} on {backend} ({reason(exc)}), before any "
                          "training; free memory used by other processes, or train on a "
                          "machine with more") from None
    records, start = [], 0
    if resume is not None:
        ckpt = resume if hasattr(resume, "params") else load_checkpoint(resume)
        theirs = {k: v for k, v in check_recipe(ckpt.recipe).items() if k != "epochs"}
        ours = {k: v for k, v in recipe.items() if k != "epochs"}
        if theirs != ours:
            diff = ", ".join(f"{k}: checkpoint {theirs.get(k)!r} vs now {ours.get(k)!r}"
                             for k in sorted(set(theirs) | set(ours))
                             if theirs.get(k) != ours.get(k))
            raise ValueError(f"cannot resume from {ckpt.path}: its recipe differs ({diff})")
        load_weights(net, ckpt)
        load_optimizer(optimizer, net, ckpt)
        R.set_rng_state(ckpt.rng_state)
        start = ckpt.epoch
        records = check_records(ckpt, start)
        if start:
            log(f"resuming from {ckpt.path} after epoch {start}")

    out = Path(out_dir) if out_dir is not None else None
    info = {"recipe": recipe, "backend": backend, "device": device_name(backend),
            "train_examples": len(train_images), "test_examples": len(test_images),
            "train_batches_per_epoch": num_batches(len(train_images), recipe["batch_size"])}
    saved = start                      # complete epochs in the checkpoint on disk
    with contextlib.ExitStack() as stack:
        if out is not None:
            stack.enter_context(exclusive_folder(out))
            removed = remove_stale_temps(out, (CHECKPOINT, METRICS, CURVES))
            if removed:
                log(f"removed {len(removed)} temporary file(s) that an interrupted write "
                    f"left in {out}: {', '.join(removed)}")
        signals = stack.enter_context(Signals())
        records = _train(net, optimizer, recipe, backend, out, info, records, saved, start,
                         train_images, train_labels, test_images, test_labels, signals,
                         progress, log)
    if records:
        total_n = sum(r["examples"] for r in records)
        total_t = sum(r["train_seconds"] for r in records)
        last = dict(records[-1], examples_per_sec=total_n / total_t)
        log(summary_line(last, backend))
    return net, records


def _train(net, optimizer, recipe, backend, out, info, records, saved, start,
           train_images, train_labels, test_images, test_labels, signals, progress, log):
    """The epochs of ``fit``, with its files; returns the epoch records."""
    try:
        for epoch in range(start, recipe["epochs"]):
            started = time.perf_counter()
            record = {"epoch": epoch + 1}
            record.update(train_epoch(net, optimizer, train_images, train_labels,
                                      recipe, backend, epoch, progress,
                                      signals.check))
            eval_start = time.perf_counter()
            record["test_acc"] = evaluate_accuracy(net, test_images, test_labels,
                                                   recipe["batch_size"], backend,
                                                   recipe["resize"], signals.check)
            record["eval_seconds"] = time.perf_counter() - eval_start
            record["seconds"] = time.perf_counter() - started
            records.append(record)
            log(f"epoch {epoch + 1}/{recipe['epochs']}: {summary_line(record, backend)}")
            if out is not None:
                with signals.critical():
                    metrics = dict(info, status="running", epochs=records)
                    try:
                        save_checkpoint(out / CHECKPOINT, net, optimizer, epoch=epoch + 1,
                                        recipe=recipe, metrics=metrics)
                        saved = epoch + 1
                        _write_json(out / METRICS, metrics)
                        _plot(out, records, recipe)
                    except OSError as exc:        # disk full, permissions, ...
                        kept = (f"the checkpoint of epoch {saved} is kept" if saved else
                                "no checkpoint was written")
                        raise OSError(exc.errno, f"cannot write the files of epoch {epoch + 1} "
                                      f"in {out} ({exc.strerror or exc}); {kept}") from None
    except TrainingDiverged as exc:
        kept = out / CHECKPOINT if out is not None and (out / CHECKPOINT).exists() else None
        if out is not None:
            with contextlib.suppress(Exception):
                _write_json(out / METRICS, dict(info, status="diverged",
                                                diverged={"epoch": exc.epoch + 1,
                                                          "step": exc.step,
                                                          "loss": repr(exc.loss)},
                                                epochs=records[:saved]))
        where = (f"the checkpoint of epoch {saved} is kept: {kept} (to train with another "
                 "learning rate, start afresh with --overwrite or another --out: --resume "
                 "keeps the checkpoint's recipe)" if kept and saved
                 else "no checkpoint was written (no epoch completed)")
        raise TrainingDiverged(f"{exc}. Nothing of epoch {exc.epoch + 1} was saved; "
                               f"{where}", exc.epoch, exc.step, exc.loss) from None
    except (Stop, KeyboardInterrupt):
        done = saved if out is not None else len(records)
        records = records[:done]
        if out is not None:
            with contextlib.suppress(Exception):
                _write_json(out / METRICS, dict(info, status="interrupted",
                                                interrupted_in_epoch=done + 1,
                                                epochs=records))
        kept = out / CHECKPOINT if out is not None and (out / CHECKPOINT).exists() else None
        raise TrainingInterrupted(done, signals.received or signal.SIGINT,
                                  str(kept) if kept else None) from None
    if out is not None:
        _write_json(out / METRICS, dict(info, status="complete", epochs=records))
    return records


def _plot(out: Path, records, recipe) -> None:
    from .plots import plot_curves
    plot_curves(records, out / CURVES, title=f"{recipe['model']} on Fashion-MNIST")
