"""Checkpoints: one ``.npz`` file, written atomically, read without pickle.

    save_checkpoint("runs/lenet/checkpoint.npz", net, optimizer, epoch=3, recipe=recipe)
    net, ckpt = load_model("runs/lenet/checkpoint.npz")      # built from ckpt.recipe

What the file holds (every entry a plain array; ``numpy.load(path, allow_pickle=False)``
reads it):

* ``param/<name>``: each parameter under its ``state_dict`` key (``0.weight``, ...);
* ``momentum/<name>``: SGD's momentum buffer of that parameter, where it has one;
* ``format_version``, ``epoch``, ``recipe``, ``optimizer`` (SGD's hyper-parameters),
  ``rng_state`` (``tinyalex.random.get_rng_state()``), ``data_order`` (how the
  training order of each epoch is drawn) and ``metrics``: JSON text in 0-d unicode
  arrays.

``epoch`` counts complete epochs: a checkpoint with ``epoch=3`` resumes at the 4th.
The file is first written to a temporary file in the same folder, flushed to disk,
and then renamed over the old one (``os.replace``), so an interrupted save leaves the
previous checkpoint whole.
"""

from __future__ import annotations

import json
import os
import tempfile
import zipfile
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from . import backend as B
from . import random as R

FORMAT_VERSION = 1
MODELS = ("alexnet", "lenet")
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

    @property
    def model_name(self) -> str:
        return self.recipe["model"]


# --------------------------------------------------------------------------------------
# Saving
# --------------------------------------------------------------------------------------

def _json(value) -> np.ndarray:
    return np.array(json.dumps(value, sort_keys=True))   # 0-d unicode array


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write(path, write) -> None:
    """Call ``write(file)`` on a temporary file beside ``path``, flush it to disk and
    rename it to ``path``; on any failure the temporary file is removed and ``path``
    is left as it was."""
    path = Path(path)
    folder = path.parent if str(path.parent) else Path(".")
    folder.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=folder)
    try:
        with os.fdopen(fd, "wb") as f:
            if hasattr(os, "fchmod"):         # mkstemp makes 0600; give the usual mode
                os.fchmod(f.fileno(), 0o666 & ~_umask())
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    try:  # make the rename itself durable
        dir_fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    except OSError:
        pass


def _check_recipe(recipe, where) -> dict:
    if not isinstance(recipe, dict):
        raise TypeError(f"{where}: recipe must be a dict, got {type(recipe).__name__}")
    if recipe.get("model") not in MODELS:
        raise ValueError(f"{where}: recipe['model'] must be one of {MODELS}, got "
                         f"{recipe.get('model')!r}")
    return recipe


def save_checkpoint(path, model, optimizer=None, *, epoch, recipe, metrics=None) -> None:
    """Write ``model``'s parameters, ``optimizer``'s state, ``epoch`` (complete
    epochs), the host RNG state, the data order and ``recipe`` to ``path``."""
    _check_recipe(recipe, "save_checkpoint")
    if isinstance(epoch, bool) or not isinstance(epoch, (int, np.integer)) or epoch < 0:
        raise ValueError(f"save_checkpoint: epoch must be a non-negative int, got {epoch!r}")
    arrays = OrderedDict()
    names = {}
    for name, p in model.named_parameters():
        arrays[f"param/{name}"] = B.to_numpy(p.data)
        names[id(p)] = name
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


def load_checkpoint(path) -> Checkpoint:
    """Read and check a checkpoint; any problem is a ValueError naming the file."""
    path = str(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"checkpoint {path}: no such file")
    try:
        archive = np.load(path, allow_pickle=False)
    except (zipfile.BadZipFile, EOFError, OSError, ValueError) as exc:
        _fail(path, f"not a readable .npz file ({type(exc).__name__}: {exc}); it may be "
                    "truncated or not a tinyalex checkpoint")
    if not isinstance(archive, np.lib.npyio.NpzFile):
        _fail(path, "holds a single array, not a tinyalex checkpoint (.npz archive)")
    with archive:
        files = list(archive.files)
        missing = [k for k in _JSON_KEYS if k not in files]
        if missing:
            _fail(path, f"missing entries {missing}; not a tinyalex checkpoint")
        arrays = {}
        for key in files:
            try:
                arrays[key] = archive[key]
            except (zipfile.BadZipFile, EOFError, OSError, ValueError, KeyError) as exc:
                _fail(path, f"entry {key!r} cannot be read ({type(exc).__name__}: {exc}); "
                            "the file is damaged")
    meta = {}
    for key in _JSON_KEYS:
        a = arrays[key]
        if a.shape != () or a.dtype.kind != "U":
            _fail(path, f"entry {key!r} must be JSON text in a 0-d unicode array, got "
                        f"dtype {a.dtype} shape {a.shape}")
        try:
            meta[key] = json.loads(str(a))
        except json.JSONDecodeError as exc:
            _fail(path, f"entry {key!r} is not valid JSON ({exc})")
    version = meta["format_version"]
    if version != FORMAT_VERSION:
        _fail(path, f"format_version {version!r}; this tinyalex reads version "
                    f"{FORMAT_VERSION}" + (" (written by a newer tinyalex?)"
                                           if isinstance(version, int) and version > 1 else ""))
    epoch = meta["epoch"]
    if isinstance(epoch, bool) or not isinstance(epoch, int) or epoch < 0:
        _fail(path, f"epoch must be a non-negative integer, got {epoch!r}")
    recipe = meta["recipe"]
    if not isinstance(recipe, dict) or recipe.get("model") not in MODELS:
        got = recipe.get("model") if isinstance(recipe, dict) else recipe
        _fail(path, f"recipe must name a model in {MODELS}, got {got!r}")
    if not isinstance(meta["rng_state"], str):
        _fail(path, "rng_state must be the JSON text of tinyalex.random.get_rng_state()")
    try:
        json.loads(meta["rng_state"])["state"]
    except (json.JSONDecodeError, KeyError, TypeError):
        _fail(path, "rng_state is not a generator state saved by tinyalex")

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

    optimizer_state = None
    opt = meta["optimizer"]
    if opt is not None:
        if not isinstance(opt, dict) or not {"lr", "momentum", "weight_decay", "params",
                                             "momentum_buffers"} <= set(opt):
            _fail(path, f"optimizer entry is incomplete: {opt!r}")
        unknown = [n for n in opt["params"] if n not in params]
        if unknown:
            _fail(path, f"optimizer names parameters {unknown} that the file does not hold")
        buffers = []
        for name in opt["params"]:
            if name in opt["momentum_buffers"]:
                key = f"momentum/{name}"
                if key not in arrays:
                    _fail(path, f"momentum buffer {key!r} is listed but missing")
                if arrays[key].shape != params[name].shape:
                    _fail(path, f"momentum buffer of {name!r} has shape {arrays[key].shape}, "
                                f"the parameter {params[name].shape}")
                buffers.append(arrays[key])
            else:
                buffers.append(None)
        optimizer_state = {"lr": opt["lr"], "momentum": opt["momentum"],
                           "weight_decay": opt["weight_decay"], "params": list(opt["params"]),
                           "momentum_buffers": buffers}
    return Checkpoint(path=path, params=params, epoch=epoch, recipe=recipe,
                      rng_state=meta["rng_state"], optimizer_state=optimizer_state,
                      metrics=meta["metrics"], data_order=meta["data_order"] or {},
                      format_version=version)


def build_model(name: str):
    """A freshly built network of the named architecture."""
    from . import models
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; expected one of {MODELS}")
    return getattr(models, name)()


def load_weights(model, checkpoint: Checkpoint) -> None:
    """Copy the checkpoint's parameters into ``model``; a mismatch names the keys."""
    try:
        model.load_state_dict(checkpoint.params)
    except ValueError as exc:
        raise ValueError(f"checkpoint {checkpoint.path} (a {checkpoint.model_name}) does "
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
