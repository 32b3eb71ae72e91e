"""The README's main command: d2l's AlexNet chapter end to end, then AlexNet vs LeNet.

    python examples/main.py                  # GPU: both full recipes; CPU: see below
    python examples/main.py --quick          # the quick tour: minutes on a CPU (runs/quick)
    python examples/main.py --full           # both full recipes on any backend (hours on a CPU)
    python examples/main.py --backend numpy  # force the CPU mode on a GPU machine

With a usable GPU (CuPy) it trains both of d2l's full recipes on it: LeNet (batch
256, lr 0.9, 10 epochs, 28x28) and AlexNet (batch 128, lr 0.01, 10 epochs, 224x224).
Without one it trains what a CPU finishes in minutes (the time it took on the
development machine is in README.md, "Measured results"):

* LeNet with its full d2l recipe (all 60000 training images, 10 epochs), and
* AlexNet at 224x224 with d2l's hyper-parameters on a subset (CPU_ALEXNET below:
  the first 8000 training images, 4 epochs, batch 32, tested on the first 2000
  test images), since d2l's full AlexNet recipe (10 epochs of 60000 images) takes
  hours on a CPU (the run record behind README.md's "Measured results", its
  comparison.json: the time per 60000-image epoch).

Then it prints the comparison: parameters, FLOPs per image, epoch time and
accuracy. Each run's checkpoint.npz, metrics.json and curves.png go under --out
(default runs/main/lenet and runs/main/alexnet), and comparison.json beside them.

Running the same command again continues where it stopped: a run whose checkpoint
holds fewer epochs than its recipe resumes from it, a complete one is not trained
again (its metrics are used); ``--overwrite`` starts both afresh. A checkpoint of
another recipe in the same folder is refused: ``--overwrite`` or another ``--out``.
"""

import argparse
import json
import shlex
import sys
import time
from pathlib import Path

try:                                   # Ctrl-C while Python imports NumPy, Numba, ...
    import tinyalex
    from tinyalex import backend as B
    from tinyalex.atomic import atomic_write
    from tinyalex.checkpoint import check_records, load_checkpoint
    from tinyalex.data import load_fashion_mnist
    from tinyalex.devices import device_name
    from tinyalex.exits import BAD_INPUT, DONE, FAILURES, exit_status
    from tinyalex.faults import TrainingInterrupted
    from tinyalex.recipes import D2L_RECIPES, build_model
    from tinyalex.study.summary import layer_rows
    from tinyalex.train import CHECKPOINT, fit
except KeyboardInterrupt:
    print("\ninterrupted while starting; nothing was written", file=sys.stderr)
    sys.exit(130)

# AlexNet on a CPU: d2l's learning rate, on the first CPU_ALEXNET["train_limit"]
# training images. A batch of 32 rather than 128 gives four times as many SGD steps
# for the same work, which is what lets AlexNet learn from a small subset.
CPU_ALEXNET = {"train_limit": 8000, "test_limit": 2000, "epochs": 4, "batch_size": 32}

# The quick tour (--quick): what learns visibly in a few minutes on a 2-core CPU.
# LeNet is d2l's full recipe (it is fast; on a few thousand images d2l's sigmoid LeNet
# sits at chance level for its whole first epoch). AlexNet trains on a subset.
# AlexNet at d2l's lr 0.01 and batch 128 stays near chance on 2000 images for two
# epochs (125 steps at batch 16 and lr 0.03 move it; README, "A quick tour").
QUICK = {"lenet": {},
         "alexnet": {"train_limit": 2000, "test_limit": 500, "epochs": 2, "batch_size": 16,
                     "lr": 0.03}}


def model_costs(name: str, side: int) -> dict:
    """Parameters and forward FLOPs per image (2 per multiply-accumulate)."""
    rows = layer_rows(build_model(name), (1, 1, side, side))
    return {"parameters": sum(r["parameters"] for r in rows),
            "flops_per_image": 2 * sum(r["macs"] for r in rows)}


def existing_run(name: str, recipe: dict, out: Path):
    """The checkpoint in ``out`` to continue from (None: train afresh), after checking
    it holds ``name`` trained with ``recipe`` (its epochs aside)."""
    path = out / CHECKPOINT
    if not path.exists():
        return None
    ckpt = load_checkpoint(path)
    theirs = {k: v for k, v in ckpt.recipe.items() if k != "epochs"}
    ours = {k: v for k, v in recipe.items() if k != "epochs"}
    if theirs != ours:
        diff = ", ".join(f"{k} {theirs.get(k)!r} (now {ours.get(k)!r})"
                         for k in sorted(set(theirs) | set(ours))
                         if theirs.get(k) != ours.get(k))
        raise ValueError(f"{path} was trained with another recipe ({diff}); pass "
                         "--overwrite to train afresh, or another --out")
    return ckpt


def run(name: str, recipe: dict, data, backend: str, out: Path, progress: bool,
        overwrite: bool) -> dict:
    print(f"\n=== {name}: " + ", ".join(f"{k}={v}" for k, v in recipe.items()
                                          if k != "model") + f" on {backend}")
    ckpt = None if overwrite else existing_run(name, recipe, out)
    started = time.perf_counter()
    if ckpt is not None and ckpt.epoch >= recipe["epochs"]:
        print(f"{out / CHECKPOINT} holds all {ckpt.epoch} epochs of this recipe: not "
              "trained again (--overwrite trains afresh)")
        records = check_records(ckpt, ckpt.epoch)      # its metrics, as it measured them
    else:
        _, records = fit(recipe, data, backend=backend, out_dir=out, resume=ckpt,
                         progress=progress)
    wall = time.perf_counter() - started
    last = records[-1]
    n_train = records[0]["examples"]
    train_s = sum(r["train_seconds"] for r in records) / len(records)
    eps = sum(r["examples"] for r in records) / sum(r["train_seconds"] for r in records)
    return {"recipe": recipe, "train_examples": n_train,
            "test_examples": len(data[2]) if recipe["test_limit"] is None
            else min(recipe["test_limit"], len(data[2])),
            "epochs": len(records), "loss": last["loss"], "train_acc": last["train_acc"],
            "test_acc": last["test_acc"], "examples_per_sec": eps,
            "train_seconds_per_epoch": train_s,
            "full_epoch_seconds": 60000 / eps,     # 60000 images at the measured rate
            "wall_seconds": wall, **model_costs(recipe["model"], recipe["resize"])}


def fmt_count(n: float) -> str:
    for unit, size in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if n >= size:
            return f"{n / size:.2f}{unit}"
    return f"{n:.0f}"


def comparison_table(results: dict) -> str:
    lenet, alexnet = results["lenet"], results["alexnet"]
    rows = [
        ("input", lambda r: f"{r['recipe']['resize']}x{r['recipe']['resize']}"),
        ("parameters", lambda r: f"{r['parameters']:,}"),
        ("FLOPs per image (forward)", lambda r: fmt_count(r["flops_per_image"])),
        ("trained on", lambda r: f"{r['train_examples']} imgs x {r['epochs']} epochs"),
        ("batch, lr", lambda r: f"{r['recipe']['batch_size']}, {r['recipe']['lr']}"),
        ("training examples/sec", lambda r: f"{r['examples_per_sec']:.1f}"),
        ("seconds per epoch (as run)", lambda r: f"{r['train_seconds_per_epoch']:.1f}"),
        ("seconds per 60000-image epoch", lambda r: f"{r['full_epoch_seconds']:.0f}"),
        ("final loss", lambda r: f"{r['loss']:.3f}"),
        ("train acc", lambda r: f"{r['train_acc']:.3f}"),
        ("test acc", lambda r: f"{r['test_acc']:.3f} ({r['test_examples']} imgs)"),
    ]
    w0 = max(len(label) for label, _ in rows)
    cells = [(label, f(lenet), f(alexnet)) for label, f in rows]
    w1 = max(len("LeNet"), *(len(c[1]) for c in cells))
    w2 = max(len("AlexNet"), *(len(c[2]) for c in cells))
    lines = [f"{'':<{w0}}  {'LeNet':>{w1}}  {'AlexNet':>{w2}}", "-" * (w0 + w1 + w2 + 4)]
    lines += [f"{a:<{w0}}  {b:>{w1}}  {c:>{w2}}" for a, b, c in cells]
    ratio = alexnet["flops_per_image"] / lenet["flops_per_image"]
    pratio = alexnet["parameters"] / lenet["parameters"]
    lines.append(f"AlexNet has {pratio:.0f}x LeNet's parameters and needs {ratio:.0f}x its "
                 "FLOPs per image.")
    return "\n".join(lines)


def resume_command() -> str:
    """This command again, without --overwrite: rerunning it continues the runs."""
    return shlex.join(["python3", sys.argv[0], *(a for a in sys.argv[1:] if a != "--overwrite")])


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--backend", choices=B.BACKENDS, default=None,
                   help="default: cupy when a GPU is usable, else numpy")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--full", action="store_true",
                      help="both full d2l recipes even without a GPU (AlexNet: hours on a CPU)")
    mode.add_argument("--quick", action="store_true",
                      help="the quick tour: LeNet's full recipe and AlexNet on 2000 images "
                      "(batch 16, lr 0.03, 2 epochs), minutes on a CPU (default --out "
                      "runs/quick)")
    p.add_argument("--data-dir", help="folder holding the Fashion-MNIST IDX files")
    p.add_argument("--out", default=None,
                   help="folder for both runs (default runs/main, with --quick runs/quick)")
    p.add_argument("--overwrite", action="store_true",
                   help="train afresh even where --out holds a checkpoint (default: continue "
                   "it, or use it when complete)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    args = p.parse_args(argv)
    out = Path(args.out or ("runs/quick" if args.quick else "runs/main"))
    try:
        return _main(args, out)
    except KeyboardInterrupt:              # Ctrl-C outside training (start-up, data)
        print(f"\ninterrupted while starting a run; the files in {out} are as they were "
              f"(the same command continues): {resume_command()}", file=sys.stderr)
        return 130


def _main(args, out: Path) -> int:
    try:
        backend = args.backend or B.default_backend()
        B.xp_of(backend)                   # a clear error now if cupy is not usable
        device = device_name(backend)
    except FAILURES as exc:
        print(f"error: --backend {backend}: {exc}", file=sys.stderr)
        return BAD_INPUT
    full = args.full or (backend == "cupy" and not args.quick)
    why = "" if args.backend else (" (a GPU is usable)" if backend == "cupy" else
                                   f" (no GPU: {B.cupy_unavailable_reason()})")
    print(f"tinyalex {tinyalex.__version__}: backend {backend}{why}; {device}")
    lenet = dict(D2L_RECIPES["lenet"])
    alexnet = dict(D2L_RECIPES["alexnet"])
    if args.quick:
        lenet.update(QUICK["lenet"])
        alexnet.update(QUICK["alexnet"])
        q = QUICK["alexnet"]
        print(f"mode: quick tour — LeNet's full recipe, AlexNet on {q['train_limit']} "
              f"training images ({q['epochs']} epochs, batch {q['batch_size']}, lr {q['lr']}, "
              f"{q['test_limit']} test images)")
    elif full:
        print("mode: both full d2l recipes")
    else:
        alexnet.update(CPU_ALEXNET)
        print(f"mode: CPU — LeNet's full recipe, AlexNet on a subset "
              f"({CPU_ALEXNET['train_limit']} training images, {CPU_ALEXNET['epochs']} epochs, "
              f"batch {CPU_ALEXNET['batch_size']}, {CPU_ALEXNET['test_limit']} test images)")
    progress = not args.no_progress and sys.stderr.isatty()
    started = time.perf_counter()
    try:
        data = load_fashion_mnist(args.data_dir)
        results = {}
        for name, recipe in (("lenet", lenet), ("alexnet", alexnet)):
            results[name] = run(name, recipe, data, backend, out / name, progress,
                                args.overwrite)
    except TrainingInterrupted as exc:
        print(f"\n{exc}", file=sys.stderr)
        print(f"resume with: {resume_command()}", file=sys.stderr)
        return exit_status(exc)
    except FAILURES as exc:                # diverged, bad input, out of memory, ...
        print(f"error: {exc}", file=sys.stderr)
        return exit_status(exc)
    total = time.perf_counter() - started
    what = ("full recipes" if full else "quick tour" if args.quick
            else "LeNet full recipe, AlexNet on a subset")
    print(f"\n=== AlexNet vs LeNet on Fashion-MNIST ({what}, {backend})")
    print(comparison_table(results))
    print(f"total time: {total / 60:.1f} min; files in {out}/")
    summary = {"backend": backend, "device": device, "full": full, "quick": args.quick,
               "total_seconds": total, "results": results}
    text = json.dumps(summary, indent=2) + "\n"
    atomic_write(out / "comparison.json", lambda f: f.write(text.encode()))
    return DONE


if __name__ == "__main__":
    sys.exit(main())
