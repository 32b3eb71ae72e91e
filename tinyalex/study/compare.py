"""AlexNet against LeNet, as d2l's AlexNet chapter contrasts them: what
``examples/compare.py`` tabulates.

* ``architecture(net, input_shape)``: depth, activations, pooling, dropout, channels,
  kernels, parameters and multiply-accumulates per image, read off the network
  itself (its layers and :func:`tinyalex.study.summary.layer_rows`);
* ``load_run(path)``: a training run's ``metrics.json`` (written by
  ``tinyalex.train.fit``), checked;
* ``run_facts(run)``: what the run measured: time per epoch, examples/sec, accuracy;
* ``markdown_table(columns)``: the facts side by side.
"""

from __future__ import annotations

import json
import os
from collections import Counter

from .. import nn
from ..checks import pair
from ..recipes import MODEL_NAMES, check_recipe, input_size
from .summary import layer_rows


def _pool_desc(layer) -> str:
    KH, KW = pair(layer.kernel_size, "kernel_size", "pool", 1)
    SH, SW = pair(layer.stride if layer.stride is not None else layer.kernel_size,
                  "stride", "pool", 1)
    kind = "max" if isinstance(layer, nn.MaxPool2d) else "average"
    return f"{kind} {KH}x{KW}, stride {SH}" + ("" if SH == SW else f"x{SW}")


def _counted(items) -> str:
    if not items:
        return "none"
    counts = Counter(items)
    return ", ".join(f"{n} x {item}" if n > 1 else item for item, n in counts.items())


def architecture(net, input_shape) -> dict:
    """The chapter's points of contrast, each computed from ``net``; ``input_shape``
    is one image (1, C, H, W)."""
    layers = list(net)
    convs = [m for m in layers if isinstance(m, nn.Conv2d)]
    linears = [m for m in layers if isinstance(m, nn.Linear)]
    acts = [type(m).__name__ for m in layers if isinstance(m, (nn.ReLU, nn.Sigmoid))]
    pools = [_pool_desc(m) for m in layers if isinstance(m, (nn.MaxPool2d, nn.AvgPool2d))]
    drops = [f"p={m.p:g}" for m in layers if isinstance(m, nn.Dropout)]
    rows = layer_rows(net, input_shape)
    _, C, H, W = input_shape
    return {
        "input": f"{C}x{H}x{W}",
        "depth (layers with weights)": f"{len(convs) + len(linears)}: {len(convs)} conv + "
                                       f"{len(linears)} fully connected",
        "conv kernels": ", ".join(f"{m.kernel_size[0]}x{m.kernel_size[1]}" +
                                  (f"/{m.stride[0]}" if m.stride != (1, 1) else "")
                                  for m in convs),
        "conv channels": " -> ".join(str(c) for c in [convs[0].in_channels] +
                                     [m.out_channels for m in convs]) if convs else "none",
        "fully connected": " -> ".join(str(n) for n in [linears[0].in_features] +
                                       [m.out_features for m in linears]) if linears else "none",
        "activation": _counted(acts),
        "pooling": _counted(pools),
        "dropout": _counted(drops),
        "parameters": f"{sum(r['parameters'] for r in rows):,}",
        "MACs per image": f"{sum(r['macs'] for r in rows):,}",
        "activations per image": f"{sum(r['activation_bytes'] for r in rows) / 2**20:.2f} MiB",
    }


def load_run(path) -> dict:
    """A run's metrics.json (``path`` is the file or the run's --out folder)."""
    path = os.fspath(path)
    file = os.path.join(path, "metrics.json") if os.path.isdir(path) else path
    if not os.path.isfile(file):
        raise FileNotFoundError(f"compare: no metrics.json at {path} (give a training "
                                "run's --out folder or its metrics.json)")
    try:
        with open(file) as f:
            run = json.load(f)
    except (OSError, ValueError) as exc:
        raise ValueError(f"compare: {file} is not readable JSON ({exc})") from None
    recipe = run.get("recipe") if isinstance(run, dict) else None
    if not isinstance(recipe, dict) or recipe.get("model") not in MODEL_NAMES:
        raise ValueError(f"compare: {file} has no recipe naming a model in "
                         f"{sorted(MODEL_NAMES)}")
    try:
        check_recipe(recipe)            # sizes the network is built at, among others
    except (ValueError, TypeError) as exc:
        raise ValueError(f"compare: {file}: {exc}") from None
    records = run.get("epochs")
    if not isinstance(records, list) or not records:
        raise ValueError(f"compare: {file} holds no epoch records ('epochs' list)")
    for i, r in enumerate(records):
        if not isinstance(r, dict):
            raise ValueError(f"compare: {file}: epoch record {i + 1} is not a JSON object: "
                             f"{r!r}")
        missing = [k for k in ("epoch", "loss", "train_acc", "test_acc", "seconds",
                               "examples_per_sec") if k not in r]
        if missing:
            raise ValueError(f"compare: {file}: epoch record {r.get('epoch', '?')} lacks "
                             f"{missing}")
        wrong = [k for k in ("epoch", "loss", "train_acc", "test_acc", "seconds",
                             "examples_per_sec", "examples", "train_seconds")
                 if k in r and (isinstance(r[k], bool) or not isinstance(r[k], (int, float)))]
        if wrong:
            raise ValueError(f"compare: {file}: epoch record {i + 1} holds non-numbers in "
                             f"{wrong}")
    run["path"] = file
    return run


def input_shape(run) -> tuple:
    recipe = run["recipe"]
    size = int(recipe.get("resize") or input_size(recipe["model"]))
    return (1, 1, size, size)


def run_facts(run) -> dict:
    """What the run measured: time per epoch (mean, and the fastest, which other work
    on the machine disturbed least), examples/sec over all training steps, loss and
    accuracy of the last epoch, the best test accuracy."""
    recs = run["epochs"]
    best = max(recs, key=lambda r: r["test_acc"])
    recipe = run["recipe"]
    n_ex = sum(r.get("examples", 0) for r in recs)
    t_ex = sum(r.get("train_seconds", 0.0) for r in recs)
    speed = n_ex / t_ex if n_ex and t_ex else sum(r["examples_per_sec"] for r in recs) / len(recs)
    return {
        "measured on": f"{run.get('backend', '?')} ({run.get('device', '?')})",
        "recipe": f"batch {recipe.get('batch_size')}, lr {recipe.get('lr')}, "
                  f"{len(recs)} epoch{'s' if len(recs) > 1 else ''}"
                  + (f", {run['train_examples']} training images"
                     if run.get("train_examples") else ""),
        "time per epoch": f"{sum(r['seconds'] for r in recs) / len(recs):.1f} s mean, "
                          f"{min(r['seconds'] for r in recs):.1f} s fastest",
        "training examples/sec": f"{speed:.1f}",
        "final loss": f"{recs[-1]['loss']:.3f}",
        "final train accuracy": f"{recs[-1]['train_acc']:.3f}",
        "final test accuracy": f"{recs[-1]['test_acc']:.3f}",
        "best test accuracy": f"{best['test_acc']:.3f} (epoch {best['epoch']})",
    }


def markdown_table(columns) -> str:
    """``columns``: list of (heading, facts dict). Rows in the order facts first appear."""
    keys = []
    for _, facts in columns:
        keys += [k for k in facts if k not in keys]
    lines = ["| | " + " | ".join(h for h, _ in columns) + " |",
             "| --- |" + " --- |" * len(columns)]
    for k in keys:
        cells = [str(facts.get(k, "")).replace("|", "\\|") for _, facts in columns]
        lines.append(f"| {k} | " + " | ".join(cells) + " |")
    return "\n".join(lines)
