"""Checkpoints: one ``.npz`` file, written atomically, read without pickle.

    save_checkpoint("runs/lenet/checkpoint.npz", net, optimizer, epoch=3, recipe=recipe)
    net, ckpt = load_model("runs/lenet/checkpoint.npz")      # built from ckpt.recipe

What the file holds (every entry a plain array; ``numpy.load(path, allow_pickle=False)``
reads it):

* ``param/<name>``: each parameter under its ``state_dict`` key (``0.weight``, ...);
* ``buffer/<name>``: each buffer (batch norm's running statistics, ``num_batches_tracked``)
  under its ``state_dict`` key;
* ``momentum/<name>``: SGD's momentum buffer of that parameter, where it has one;
* ``format_version``, ``epoch``, ``recipe``, ``optimizer`` (SGD's hyper-parameters),
  ``rng_state`` (``tinyalex.random.get_rng_state()``), ``data_order`` (how the
  training order of each epoch is drawn) and ``metrics``: JSON text in 0-d unicode
  arrays.

``epoch`` counts complete epochs: a checkpoint with ``epoch=3`` resumes at the 4th.
The file is first written to a temporary file in the same folder, flushed to disk,
and then renamed over the old one (``os.replace``), and the folder itself is flushed
so that the rename survives a power cut: a save interrupted at any moment (SIGKILL
included) leaves the previous checkpoint whole. A killed save can leave its temporary
file (``.checkpoint.npz.*.tmp``); the next run into that folder removes it
(``tinyalex/atomic.py``).

Loading treats the file as data, never code (``tinyalex/npz.py``): each entry's .npy
header is read and checked (plain numbers or text, sizes that agree with the bytes
present) before its data, an entry holding Python objects (a pickle) is refused
without being read, and the rest is read with ``allow_pickle=False``. Then every
entry is checked here. Every problem is a ValueError naming the file and what is
wrong.

This module knows the file format only; the models and their recipes are facts of
``tinyalex/recipes.py``, which ``load_model`` asks to build the network a recipe
names before it copies the weights in.
"""

from __future__ import annotations

import json
import os
from collections import OrderedDict
from dataclasses import dataclass, field

import numpy as np

from . import backend as B
from . import random as R
from .atomic import atomic_write
from .npz import read_entries
from .recipes import D2L_RECIPES, MODEL_NAMES, a_model, build_model, check_recipe

FORMAT_VERSION = 1
_JSON_KEYS = ("format_version", "epoch", "recipe", "optimizer", "rng_state", "data_order",
              "metrics")
DATA_ORDER = "numpy PCG64([seed, epoch]).permutation(N) for each epoch (tinyalex.data.epoch_order)"


@dataclass
class Checkpoint:
    """The validated contents of a checkpoint file."""

    path: str
    params: "OrderedDict[str, np.ndarray]"
    epoch: int
    recipe: dict
    rng_state: str
    optimizer_state: dict | None = None   # lr, momentum, weight_decay, momentum_buffers
    metrics: dict | None = None
    data_order: dict = field(default_factory=dict)
    format_version: int = FORMAT_VERSION
    buffers: "OrderedDict[str, np.ndarray]" = field(default_factory=OrderedDict)

    @property
    def model_name(self) -> str:
        return self.recipe["model"]


# --------------------------------------------------------------------------------------
# Saving
# --------------------------------------------------------------------------------------

def _json(value) -> np.ndarray:
    return np.array(json.dumps(value, sort_keys=True))   # 0-d unicode array


def _check_recipe(recipe, where) -> dict:
    if not isinstance(recipe, dict):
        raise TypeError(f"{where}: recipe must be a dict, got {type(recipe).__name__}")
    if recipe.get("model") not in MODEL_NAMES:
        raise ValueError(f"{where}: recipe['model'] must be one of {MODEL_NAMES}, got "
                         f"{recipe.get('model')!r}")
    return recipe


def _contradictions(optimizer_state: dict, full_recipe: dict) -> str:
    """SGD's hyper-parameters that differ from the recipe's (which resuming trains on
    and the run reports), in words; "" when they agree."""
    return ", ".join(f"{k} {optimizer_state[k]!r} (recipe: {full_recipe[k]!r})"
                     for k in ("lr", "momentum", "weight_decay")
                     if optimizer_state[k] != full_recipe[k])


def save_checkpoint(path, model, optimizer=None, *, epoch, recipe, metrics=None) -> None:
    """Write ``model``'s parameters, ``optimizer``'s state, ``epoch`` (complete
    epochs), the host RNG state, the data order and ``recipe`` to ``path``."""
    _check_recipe(recipe, "save_checkpoint")
    if not callable(getattr(model, "named_parameters", None)):
        raise TypeError(f"save_checkpoint: model must be a tinyalex Module, got "
                        f"{type(model).__name__}")
    if optimizer is not None and not (callable(getattr(optimizer, "state_dict", None))
                                      and hasattr(optimizer, "params")):
        raise TypeError(f"save_checkpoint: optimizer must be a tinyalex.optim.SGD or None, "
                        f"got {type(optimizer).__name__}")
    if isinstance(epoch, bool) or not isinstance(epoch, (int, np.integer)) or epoch < 0:
        raise ValueError(f"save_checkpoint: epoch must be a non-negative int, got {epoch!r}")
    arrays = OrderedDict()
    names = {}
    for name, p in model.named_parameters():
        arrays[f"param/{name}"] = B.to_numpy(p.array)
        names[id(p)] = name
    for name, b in model.named_buffers():
        arrays[f"buffer/{name}"] = B.to_numpy(getattr(b, "array", b))
    optimizer_json = None
    if optimizer is not None:
        state = optimizer.state_dict()
        with_buffer = []
        for p, buf in zip(optimizer.params, state["momentum_buffers"]):
            if id(p) not in names:
                raise ValueError("save_checkpoint: the optimizer holds a parameter that is not "
                                 "one of the model's")
            if buf is not None:
                arrays[f"momentum/{names[id(p)]}"] = buf
                with_buffer.append(names[id(p)])
        optimizer_json = {"type": type(optimizer).__name__, "lr": state["lr"],
                          "momentum": state["momentum"],
                          "weight_decay": state["weight_decay"],
                          "params": [names[id(p)] for p in optimizer.params],
                          "momentum_buffers": with_buffer}
        full = dict(D2L_RECIPES[recipe["model"]])
        full.update(recipe)
        differ = _contradictions(state, full)
        if differ:
            raise ValueError(f"save_checkpoint: the optimizer contradicts the recipe: {differ}")
    meta = {"format_version": FORMAT_VERSION, "epoch": int(epoch), "recipe": recipe,
            "optimizer": optimizer_json, "rng_state": R.get_rng_state(),
            "data_order": {"scheme": DATA_ORDER, "seed": recipe.get("seed"),
                           "next_epoch": int(epoch)},
            "metrics": metrics}
    for key in _JSON_KEYS:
        arrays[key] = _json(meta[key])
    atomic_write(path, lambda f: np.savez(f, **arrays))


# --------------------------------------------------------------------------------------
# Loading
# --------------------------------------------------------------------------------------

def _fail(path, problem):
    raise ValueError(f"checkpoint {path}: {problem}")


def _is_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _check_metrics(path, metrics) -> None:
    """metrics: None, or a dict whose "epochs" (if any) are records fit() can reuse."""
    if metrics is None:
        return
    if not isinstance(metrics, dict):
        _fail(path, f"metrics must be a JSON object, got {type(metrics).__name__}")
    records = metrics.get("epochs", [])
    if not isinstance(records, list):
        _fail(path, "metrics['epochs'] must be a list of epoch records")
    for i, r in enumerate(records):
        if not isinstance(r, dict):
            _fail(path, f"metrics['epochs'][{i}] must be a JSON object, got {r!r}")


# what fit() needs of each epoch record it resumes with
RECORD_KEYS = ("epoch", "loss", "train_acc", "test_acc", "examples", "train_seconds")


def check_records(checkpoint: "Checkpoint", epochs: int) -> list:
    """The first ``epochs`` epoch records of a checkpoint's metrics, for resuming."""
    records = list((checkpoint.metrics or {}).get("epochs", []))[:epochs]
    for i, r in enumerate(records):
        if not all(_is_number(r.get(k)) for k in RECORD_KEYS):
            _fail(checkpoint.path, f"metrics['epochs'][{i}] must hold numbers for "
                                   f"{list(RECORD_KEYS)} to resume, got {r!r}")
    return records


def _check_optimizer(path, opt, params) -> None:
    if not isinstance(opt, dict) or not {"lr", "momentum", "weight_decay", "params",
                                         "momentum_buffers"} <= set(opt):
        _fail(path, f"optimizer entry is incomplete: {opt!r}")
    for key in ("lr", "momentum", "weight_decay"):
        v = opt[key]
        if not _is_number(v) or not np.isfinite(v) or v < 0 or (key == "lr" and v == 0):
            _fail(path, f"optimizer {key} must be a finite " + ("positive" if key == "lr"
                        else "non-negative") + f" number, got {v!r}")
    for key in ("params", "momentum_buffers"):
        names = opt[key]
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            _fail(path, f"optimizer {key} must be a list of parameter names, got {names!r}")
    unknown = [n for n in opt["params"] if n not in params]
    if unknown:
        _fail(path, f"optimizer names parameters {unknown} that the file does not hold")
    stray = [n for n in opt["momentum_buffers"] if n not in opt["params"]]
    if stray:
        _fail(path, f"optimizer lists momentum buffers {stray} of parameters it does not "
                    "optimise")


def load_checkpoint(path) -> Checkpoint:
    """Read and check a checkpoint; any problem is a ValueError naming the file.

    Nothing in the file is executed: every entry's .npy header is read first and an
    entry holding Python objects (a pickle) is refused before its data is touched;
    the rest is read with ``allow_pickle=False``.
    """
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"load_checkpoint: path must be a str or Path, got "
                        f"{type(path).__name__}")
    path = str(path)
    if os.path.isdir(path):
        _fail(path, f"is a folder; expected the checkpoint file in it, e.g. "
                    f"{os.path.join(path, 'checkpoint.npz')}")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"checkpoint {path}: no such file")
    arrays = read_entries(path)
    files = list(arrays)
    missing = [k for k in _JSON_KEYS if k not in files]
    if missing:
        _fail(path, f"missing entries {missing}; not a tinyalex checkpoint")
    unexpected = [k for k in files if k not in _JSON_KEYS and not k.startswith("param/")
                  and not k.startswith("momentum/") and not k.startswith("buffer/")]
    if unexpected:
        _fail(path, f"unexpected entries {unexpected}; not a tinyalex checkpoint of format "
                    f"{FORMAT_VERSION}")
    meta = {}
    for key in _JSON_KEYS:
        a = arrays[key]
        if a.shape != () or a.dtype.kind != "U":
            _fail(path, f"entry {key!r} must be JSON text in a 0-d unicode array, got "
                        f"dtype {a.dtype} shape {a.shape}")
        try:
            meta[key] = json.loads(str(a))
        except (json.JSONDecodeError, RecursionError) as exc:
            _fail(path, f"entry {key!r} is not valid JSON ({exc})")
    version = meta["format_version"]
    if isinstance(version, bool) or version != FORMAT_VERSION:
        _fail(path, f"format_version {version!r}; this tinyalex reads version "
                    f"{FORMAT_VERSION}" + (" (written by a newer tinyalex?)"
                                           if _is_number(version) and version > 1 else ""))
    epoch = meta["epoch"]
    if isinstance(epoch, bool) or not isinstance(epoch, int) or epoch < 0:
        _fail(path, f"epoch must be a non-negative integer, got {epoch!r}")
    recipe = meta["recipe"]
    if not isinstance(recipe, dict) or recipe.get("model") not in MODEL_NAMES:
        got = recipe.get("model") if isinstance(recipe, dict) else recipe
        _fail(path, f"recipe must name a model in {MODEL_NAMES}, got {got!r}")
    try:
        full_recipe = check_recipe(recipe)
    except (ValueError, TypeError) as exc:
        _fail(path, f"its recipe is not valid ({exc})")
    if not isinstance(meta["rng_state"], str):
        _fail(path, "rng_state must be the JSON text of tinyalex.random.get_rng_state()")
    try:
        np.random.PCG64().state = json.loads(meta["rng_state"])
    except (json.JSONDecodeError, KeyError, TypeError, ValueError, OverflowError,
            RecursionError):
        _fail(path, "rng_state is not a generator state saved by tinyalex")
    _check_metrics(path, meta["metrics"])
    if meta["data_order"] is not None and not isinstance(meta["data_order"], dict):
        _fail(path, "data_order must be a JSON object")

    params = OrderedDict()
    for key, a in arrays.items():
        if key.startswith("param/"):
            name = key[len("param/"):]
            if a.dtype.kind != "f":
                _fail(path, f"parameter {name!r} has dtype {a.dtype}, expected floating point")
            if not np.isfinite(a).all():
                _fail(path, f"parameter {name!r} holds NaN or infinite values (the run "
                            "diverged before this checkpoint was written)")
            params[name] = a
    if not params:
        _fail(path, "holds no parameters (no 'param/...' entries)")
    model_buffers = OrderedDict()
    for key, a in arrays.items():
        if key.startswith("buffer/"):
            name = key[len("buffer/"):]
            if a.dtype.kind not in "fiu" or (a.dtype.kind == "f" and not np.isfinite(a).all()):
                _fail(path, f"buffer {name!r} must hold finite numbers, got dtype {a.dtype}")
            model_buffers[name] = a

    optimizer_state = None
    opt = meta["optimizer"]
    if opt is not None:
        _check_optimizer(path, opt, params)
        # resuming restores these into SGD: they must be the recipe's, which the run reports
        differ = _contradictions(opt, full_recipe)
        if differ:
            _fail(path, f"optimizer entry contradicts its recipe: {differ}")
        buffers = []
        for name in opt["params"]:
            if name in opt["momentum_buffers"]:
                key = f"momentum/{name}"
                if key not in arrays:
                    _fail(path, f"momentum buffer {key!r} is listed but missing")
                b = arrays[key]
                if b.shape != params[name].shape:
                    _fail(path, f"momentum buffer of {name!r} has shape {b.shape}, "
                                f"the parameter {tuple(params[name].shape)}")
                if b.dtype.kind != "f" or not np.isfinite(b).all():
                    _fail(path, f"momentum buffer of {name!r} must hold finite floats, got "
                                f"dtype {b.dtype}" + ("" if b.dtype.kind != "f"
                                                      else " with NaN or infinite values"))
                buffers.append(b)
            else:
                buffers.append(None)
        optimizer_state = {"lr": opt["lr"], "momentum": opt["momentum"],
                           "weight_decay": opt["weight_decay"], "params": list(opt["params"]),
                           "momentum_buffers": buffers}
    stray = [k for k in files if k.startswith("momentum/")
             and (opt is None or k[len("momentum/"):] not in opt["momentum_buffers"])]
    if stray:
        _fail(path, f"entries {stray} are momentum buffers the optimizer entry does not "
                    "list")
    return Checkpoint(path=path, params=params, epoch=epoch, recipe=recipe,
                      rng_state=meta["rng_state"], optimizer_state=optimizer_state,
                      metrics=meta["metrics"], data_order=meta["data_order"] or {},
                      format_version=version, buffers=model_buffers)


def load_weights(model, checkpoint: Checkpoint) -> None:
    """Copy the checkpoint's parameters into ``model``; a mismatch names the keys."""
    try:
        model.load_state_dict(OrderedDict([*checkpoint.params.items(),
                                           *checkpoint.buffers.items()]))
    except ValueError as exc:
        raise ValueError(f"checkpoint {checkpoint.path} ({a_model(checkpoint.model_name)}) does "
                         f"not fit this model: {exc}") from None


def load_optimizer(optimizer, model, checkpoint: Checkpoint) -> None:
    """Restore SGD's momentum buffers and hyper-parameters, matched by parameter name."""
    state = checkpoint.optimizer_state
    if state is None:
        raise ValueError(f"checkpoint {checkpoint.path}: holds no optimizer state to resume")
    by_name = dict(zip(state["params"], state["momentum_buffers"]))
    names = {id(p): n for n, p in model.named_parameters()}
    own = [names.get(id(p)) for p in optimizer.params]
    if own != state["params"]:
        raise ValueError(f"checkpoint {checkpoint.path}: optimizer parameters "
                         f"{state['params']} do not match this optimizer's {own}")
    optimizer.load_state_dict({"lr": state["lr"], "momentum": state["momentum"],
                               "weight_decay": state["weight_decay"],
                               "momentum_buffers": [by_name[n] for n in own]})


def load_model(path, backend: str = "numpy"):
    """``(model, checkpoint)``: the architecture named by the recipe, with its weights,
    on ``backend``, in eval mode."""
    B.check_backend_name(backend)
    checkpoint = load_checkpoint(path)
    state = R.get_rng_state()          # building draws initial weights; leave the
    try:                               # caller's random stream as it was
        model = build_model(checkpoint.model_name)
    finally:
        R.set_rng_state(state)
    load_weights(model, checkpoint)
    model.to(backend)
    model.eval()
    return model, checkpoint
