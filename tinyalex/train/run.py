"""A training run: d2l's ``train_ch6`` for every epoch of a recipe, with its files.

    recipe = dict(D2L_RECIPES["lenet"], epochs=2)
    net, history = fit(recipe, load_fashion_mnist(), backend="numpy", out_dir="runs/lenet")

``fit`` builds the recipe's network (``tinyalex/recipes.py``), gives every
Conv2d/Linear weight Xavier-uniform initialisation (d2l semantics), trains it with
SGD one epoch at a time (``tinyalex/train/epoch.py``: the loop itself) and prints
each epoch in d2l's words (here the last of LeNet's d2l recipe on NumPy; the speed,
machine by machine, is in README.md and benchmarks/README.md)::

    loss 0.472, train acc 0.822, test acc 0.814, <N> examples/sec on numpy

What this module adds around the loop is the run: with ``out_dir`` every complete
epoch leaves there ``checkpoint.npz``, ``metrics.json`` and ``curves.png``. Runs are
deterministic for a given seed, backend, kernel mode and thread count (README,
Reliability); a run resumed from a checkpoint (``resume=``) continues exactly where
the uninterrupted run would be. Ctrl-C (SIGINT) or SIGTERM stops training after the
current batch (a second one at once, unless a checkpoint is being written, which
is always finished first); then ``TrainingInterrupted`` is raised and the files of
the last complete epoch stay.

Under ``mpiexec`` (``dist``, ``tinyalex/dist/``) several processes run ``fit``
together, one global batch split among them (``tinyalex/train/epoch.py``): rank 0
alone reads the checkpoint, logs and writes the files, and sends every process its
weights, momentum and random state (``replicas.py``); the others wait for its files
at the end of each epoch, so that a signal stops them all at the same step. A fault
that not every process meets at the same step ends the whole job (MPI_Abort), since
the others would wait for the failed one forever (tests/distributed/test_distributed.py).

Faults (``tinyalex/faults.py``; tests/reliability/test_faults.py, tests/reliability/test_resources.py):

* SIGKILL or a power cut at any moment leaves the last complete checkpoint whole
  (files are written atomically, ``tinyalex/atomic.py``); the next run into the
  folder removes the temporary files a killed write left, and holds the folder
  locked while it trains, so that two runs never write into one folder;
* a loss that is not finite, or far above chance level (``DIVERGENCE_FACTOR``), stops
  training with ``TrainingDiverged``, naming the epoch and step and what to change;
  the checkpoint of the last complete epoch is kept;
* running out of memory (NumPy's MemoryError, CuPy's OutOfMemoryError, a cuBLAS or
  CUDA allocation failure) while building the model, in a training step or in
  evaluation becomes ``OutOfMemory``, which says where and suggests a smaller batch.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import time
from dataclasses import dataclass
from pathlib import Path

import tinyalex.kernels as kernels
from tinyalex.kernels import cpu_threads

from .. import backend as B
from .. import random as R
from ..atomic import WriteFailed, atomic_write, exclusive_folder, remove_stale_temps
from ..checkpoint import (check_records, load_checkpoint, load_optimizer, load_weights,
                          save_checkpoint)
from ..data import num_batches
from ..devices import device_name
from ..dist import make_group
from ..faults import (OutOfMemory, Signals, Stop, TrainingDiverged, TrainingInterrupted,
                      device_of, is_out_of_memory, reason)
from ..models import init_weights_xavier
from ..cuda_graph import TrainStep
from ..nn.flat import FlatParameters
from ..nn.module import Module
from ..optim import SGD
from ..recipes import build_model, check_input_size, check_recipe
from ..study.plots import plot_curves
from .epoch import evaluate_accuracy, summary_line, train_epoch
from .replicas import check_same_inputs, share_start
from .shares import totals_and_stop

CHECKPOINT = "checkpoint.npz"
METRICS = "metrics.json"
CURVES = "curves.png"


def _limit(arrays, n):
    return arrays if n is None else tuple(a[:n] for a in arrays)


def _write_json(path, obj) -> None:
    text = json.dumps(obj, indent=2) + "\n"
    atomic_write(path, lambda f: f.write(text.encode()))


def algorithms_line(algorithms, backend) -> str:
    """The convolution and pooling algorithms of a network in one line, one entry per
    distinct choice: ``im2col+GEMM: layer 0; winograd F(4,3): layers 6, 8, 10; ...``."""
    by_name = {}
    for i, name in algorithms:
        by_name.setdefault(name, []).append(str(i))
    parts = [f"{name}: layer{'s' if len(ix) > 1 else ''} {', '.join(ix)}"
             for name, ix in by_name.items()]
    return (f"algorithms on {backend} ({kernels.get_mode()} kernels, TINYALEX_CONV="
            f"{kernels.get_conv_mode()}): " + ("; ".join(parts) or "the layers are inside "
                                               "blocks: tinyalex.summary lists them"))


def fit(recipe: dict, data, backend: str = "numpy", out_dir=None, resume=None,
        progress: bool = False, log=print, dist="auto"):
    """Build ``recipe['model']``, train it on ``data`` and return ``(net, records)``.

    ``data`` is ``load_fashion_mnist()``'s 4-tuple. ``resume`` is a checkpoint path
    (or a loaded Checkpoint) to continue from; its recipe must equal ``recipe`` but
    for ``epochs``. ``records`` holds one dict per epoch, as in metrics.json.

    ``dist`` ("auto", "none", "mpi", "nccl", or a group from
    ``tinyalex.dist.make_group``): under mpiexec the processes train together
    (``tinyalex/dist/``); then only rank 0 reads ``resume``, logs and writes
    ``out_dir``, and a fault that not every process meets at the same step ends the
    whole job (MPI_Abort) with this process's message.
    """
    recipe = check_recipe(recipe)
    B.check_backend_name(backend)
    group = make_group(dist, backend) if isinstance(dist, str) else dist
    if group.size == 1:
        return _fit(recipe, data, backend, out_dir, resume, progress, log, group)
    first = group.rank == 0
    try:
        return _fit(recipe, data, backend, out_dir if first else None,
                    resume if first else None, progress and first,
                    log if first else _quiet, group)
    except (TrainingInterrupted, TrainingDiverged):
        raise                  # reached by every process at the same step
    except BaseException as exc:
        group.abort_on(exc)    # the others would wait for this one forever
        raise


def _quiet(*args, **kwargs) -> None:
    pass


def _fit(recipe, data, backend, out_dir, resume, progress, log, group):
    train_images, train_labels = _limit(data[:2], recipe["train_limit"])
    test_images, test_labels = _limit(data[2:], recipe["test_limit"])

    try:
        R.manual_seed(recipe["seed"])
        net = build_model(recipe["model"])
        check_input_size(net, recipe)
        net.apply(init_weights_xavier)
        net.to(backend)
        # several processes sum their gradients in one buffer (nn/flat.py), and the
        # GPU updates every parameter in one pass over it
        flat = FlatParameters(net.parameters()) \
            if group.size > 1 or backend == "cupy" else None
        optimizer = SGD(net.parameters(), lr=recipe["lr"], momentum=recipe["momentum"],
                        weight_decay=recipe["weight_decay"], flat=flat)
        # one process on the GPU: the step as one call, a CUDA graph where it can be
        step = TrainStep(net, optimizer) if backend == "cupy" and group.size == 1 else None
        # chosen for the images this process takes a step (its share of a batch)
        algorithms = net.algorithms((-(-recipe["batch_size"] // group.size), 1,
                                     recipe["resize"], recipe["resize"]), backend=backend)
    except Exception as exc:
        if not is_out_of_memory(exc):
            raise
        raise OutOfMemory(f"out of {device_of(exc, backend)} memory building "
                          f"{recipe['model']} on {backend} ({reason(exc)}), before any "
                          "training; free memory used by other processes, or train on a "
                          "machine with more") from None
    log(algorithms_line(algorithms, backend))
    records, start = [], 0
    if resume is not None:
        start, records = _resume(resume, net, optimizer, recipe, log)
    if group.size > 1:
        log(_group_line(group, backend))
        check_same_inputs(group, recipe, (train_images, train_labels, test_images,
                                          test_labels))
        start, records = share_start(group, optimizer, start, records)

    out = Path(out_dir) if out_dir is not None else None
    info = {"recipe": recipe, "backend": backend, "device": device_name(backend),
            "algorithms": {f"layer {i}": name for i, name in algorithms},
            "train_examples": len(train_images), "test_examples": len(test_images),
            "train_batches_per_epoch": num_batches(len(train_images), recipe["batch_size"])}
    if group.size > 1:
        info.update(processes=group.size, dist=group.name, machines=group.machines)
    with contextlib.ExitStack() as stack:
        if out is not None:
            stack.enter_context(exclusive_folder(out))
            removed = remove_stale_temps(out, (CHECKPOINT, METRICS, CURVES))
            if removed:
                log(f"removed {len(removed)} temporary file(s) that an interrupted write "
                    f"left in {out}: {', '.join(removed)}")
        signals = stack.enter_context(Signals())
        run = _Run(net, optimizer, step, recipe, backend, group,
                   (train_images, train_labels), (test_images, test_labels),
                   out, info, signals, progress, log)
        records = _train(run, records, start)
    if records:
        total_n = sum(r["examples"] for r in records)
        total_t = sum(r["train_seconds"] for r in records)
        last = dict(records[-1], examples_per_sec=total_n / total_t)
        log(summary_line(last, backend, group.size))
    return net, records


def _resume(resume, net, optimizer, recipe, log):
    """Load ``resume`` (a path or a Checkpoint) into ``net``, ``optimizer`` and the
    random state: ``(complete epochs, their records)``."""
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
    return start, records


def _group_line(group, backend) -> str:
    """The processes at start, and whether the CPU threads oversubscribe a machine."""
    line = f"distributed: {group.describe()}, rank 0 on {group.host}"
    if backend == "numpy":
        threads = cpu_threads.THREADS
        line += f"; {threads} CPU thread{'s' if threads != 1 else ''} per process"
        cores = os.cpu_count() or 1
        if threads * group.local_size > cores:
            fit = max(1, cores // group.local_size)
            if threads > fit:
                how = f"set TINYALEX_CPU_THREADS={fit}" + (
                    f" (it is {os.environ['TINYALEX_CPU_THREADS']} now)"
                    if "TINYALEX_CPU_THREADS" in os.environ else "")
            else:                  # one thread each is already too many
                how = (f"start at most {cores} processes on {group.host} (mpiexec -n "
                       f"{cores}), or spread them over machines (-hosts, a hostfile)")
            line += (f" (warning: {group.local_size} processes on {group.host} x "
                     f"{threads} thread{'s' if threads != 1 else ''} > {cores} cores; "
                     f"{how})")
    elif group.gpu is not None:
        line += f"; each process on the GPU of its local rank (rank 0: GPU {group.gpu})"
    return line


@dataclass
class _Run:
    """What the epochs of ``fit`` work with: the model and how it steps, the data, and
    where the run reports (``out``: the folder of its files, or None; ``info``: what
    metrics.json says about the run besides its epochs)."""
    net: Module
    optimizer: SGD
    step: TrainStep | None          # the GPU's one-call step, or None: train_step
    recipe: dict
    backend: str
    group: object                   # tinyalex.dist: SOLO alone
    train: tuple                    # (images, labels), host arrays
    test: tuple
    out: Path | None
    info: dict
    signals: Signals
    progress: bool
    log: object


def _train(run: _Run, records: list, start: int) -> list:
    """The epochs ``start..`` of ``fit``, with its files; returns the epoch records."""
    net, optimizer, recipe, backend, group = (run.net, run.optimizer, run.recipe,
                                              run.backend, run.group)
    out, info, signals, log = run.out, run.info, run.signals, run.log
    saved = start                      # complete epochs in the checkpoint on disk
    try:
        for epoch in range(start, recipe["epochs"]):
            started = time.perf_counter()
            record = {"epoch": epoch + 1}
            record.update(train_epoch(net, optimizer, *run.train, recipe, backend, epoch,
                                      run.progress, signals.check, group, run.step))
            eval_start = time.perf_counter()
            record["test_acc"] = evaluate_accuracy(net, *run.test,
                                                   recipe["batch_size"], backend,
                                                   recipe["resize"], signals.check, group)
            record["eval_seconds"] = time.perf_counter() - eval_start
            record["seconds"] = time.perf_counter() - started
            records.append(record)
            log(f"epoch {epoch + 1}/{recipe['epochs']}: "
                f"{summary_line(record, backend, group.size)}")
            if out is not None:
                with _deferred_stop(group), signals.critical():
                    metrics = dict(info, status="running", epochs=records)
                    try:
                        save_checkpoint(out / CHECKPOINT, net, optimizer, epoch=epoch + 1,
                                        recipe=recipe, metrics=metrics)
                        saved = epoch + 1
                        _write_json(out / METRICS, metrics)
                        plot_curves(records, out / CURVES,
                                    title=f"{recipe['model']} on Fashion-MNIST")
                    except OSError as exc:        # disk full, permissions, ...
                        kept = (f"the checkpoint of epoch {saved} is kept" if saved else
                                "no checkpoint was written")
                        raise WriteFailed(exc.errno, f"cannot write the files of epoch "
                                          f"{epoch + 1} in {out} ({exc.strerror or exc}); "
                                          f"{kept}") from None
            if group.size > 1:           # all wait for rank 0's files, then stop together
                _, stop = totals_and_stop(group, signals.check)
                if stop:
                    raise Stop(stop)
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
    except (Stop, KeyboardInterrupt) as exc:
        if group.size > 1 and not isinstance(exc, Stop):
            raise                        # a second signal to one process: fit aborts the job
        done = saved if out is not None else len(records)
        records = records[:done]
        if out is not None:
            with contextlib.suppress(Exception):
                _write_json(out / METRICS, dict(info, status="interrupted",
                                                interrupted_in_epoch=done + 1,
                                                epochs=records))
        kept = out / CHECKPOINT if out is not None and (out / CHECKPOINT).exists() else None
        signum = exc.args[0] if isinstance(exc, Stop) and exc.args else None
        raise TrainingInterrupted(done, signum or signals.received or signal.SIGINT,
                                  str(kept) if kept else None) from None
    if out is not None:
        _write_json(out / METRICS, dict(info, status="complete", epochs=records))
    return records


@contextlib.contextmanager
def _deferred_stop(group):
    """Alone, a signal that arrived while the files were written stops the run after
    them (``Signals.critical``). Among several processes rank 0 alone writes, so its
    stop waits for the agreement all of them make after the files (``_train``)."""
    try:
        yield
    except Stop:
        if group.size == 1:
            raise
