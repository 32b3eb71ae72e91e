"""The command line shared by ``examples/train_alexnet.py``, ``examples/train_lenet.py``
and ``examples/train.py --model NAME`` (any model of ``tinyalex.recipes.MODELS``).

Flags default to d2l's recipe of the model (``tinyalex.recipes.D2L_RECIPES``). With
``--resume`` the recipe comes from the checkpoint in ``--out``; a flag given on the
command line must then agree with it (``--epochs`` may grow, to train longer).

Exit status (``tinyalex/exits.py``): 0 done; 2 a bad flag, file or folder, or out of
memory (the message says what to change); 3 training diverged (the loss became
non-finite or exploded; the last good checkpoint is kept); 130 / 143 stopped by
SIGINT / SIGTERM (the last complete epoch is kept; ``--resume`` continues).

Under ``mpiexec`` (``--dist``, docs/training.md "Several processes and machines") every process
runs the script: rank 0 alone prints and reads and writes ``--out``; a failure of one
process ends the job with that failure's status (MPI_Abort).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from . import backend as B
from .checkpoint import load_checkpoint
from .data import load_fashion_mnist
from .dist import CHOICES as DIST_CHOICES
from .dist import make_group
from .exits import DONE, FAILURES, exit_status
from .faults import TrainingDiverged, TrainingInterrupted
from .launcher import launch_from_env
from .recipes import D2L_RECIPES, MODEL_NAMES, a_model, epochs_word
from .train import CHECKPOINT, fit

# flag name -> recipe key
_RECIPE_FLAGS = {"epochs": "epochs", "batch_size": "batch_size", "lr": "lr",
                 "momentum": "momentum", "weight_decay": "weight_decay", "resize": "resize",
                 "seed": "seed", "train_limit": "train_limit", "test_limit": "test_limit",
                 "crop_padding": "crop_padding", "flip": "flip"}


def model_parser(description: str = "", add_help: bool = True) -> argparse.ArgumentParser:
    """The parser of ``--model`` alone (examples/train.py): a name not in ``MODEL_NAMES``
    gets argparse's one ``error:`` line listing the choices, and exit status 2."""
    p = argparse.ArgumentParser(description=description, add_help=add_help)
    p.add_argument("--model", choices=MODEL_NAMES, required=True,
                   help="the network and its d2l recipe (--model NAME --help: that "
                   "recipe's flags and defaults)")
    return p


def main_any(argv=None, description: str = "") -> int:
    """``main`` for the model that ``--model`` names (examples/train.py)."""
    argv = sys.argv[1:] if argv is None else list(argv)
    if {"-h", "--help"} & set(argv) and not any(a.startswith("--model") for a in argv):
        model_parser(description).parse_args(["--help"])
    known, _ = model_parser(description, add_help=False).parse_known_args(argv)
    return main(known.model, argv, description, choose=True)


def parser(model: str, description: str = "", choose: bool = False) -> argparse.ArgumentParser:
    d = D2L_RECIPES[model]
    p = argparse.ArgumentParser(description=description or f"Train d2l's {model} on "
                                "Fashion-MNIST with tinyalex.")
    if choose:
        p.add_argument("--model", choices=MODEL_NAMES, required=True,
                       help="the network and its d2l recipe")
    p.add_argument("--backend", choices=B.BACKENDS, default=None,
                   help="where to compute (default: cupy when a GPU is usable, else numpy)")
    p.add_argument("--epochs", type=int, help=f"epochs to train (default {d['epochs']})")
    p.add_argument("--batch-size", type=int, help=f"default {d['batch_size']}")
    p.add_argument("--lr", type=float, help=f"SGD learning rate (default {d['lr']})")
    p.add_argument("--momentum", type=float, help="SGD momentum (default 0, plain SGD)")
    p.add_argument("--weight-decay", type=float, help="L2 weight decay (default 0)")
    p.add_argument("--resize", type=int, help=f"input side in pixels (default {d['resize']})")
    p.add_argument("--seed", type=int, help="seed of initial weights, data order and dropout "
                   "(default 0)")
    p.add_argument("--data-dir", help="folder holding the Fashion-MNIST IDX files (default: "
                   "$FASHION_MNIST_DIR, /usr/share/datasets/fashion-mnist, ./data/FashionMNIST/raw)")
    p.add_argument("--train-limit", type=int, metavar="N",
                   help="train on the first N training examples only")
    p.add_argument("--test-limit", type=int, metavar="N",
                   help="test on the first N test examples only")
    p.add_argument("--crop-padding", type=int, metavar="P",
                   help="augmentation: random crop after padding P pixels (default 0: off)")
    p.add_argument("--flip", action="store_const", const=True, default=None,
                   help="augmentation: random horizontal flips (default off)")
    p.add_argument("--out", default=f"runs/{model}",
                   help="folder for checkpoint.npz, metrics.json and curves.png "
                   f"(default runs/{model})")
    p.add_argument("--resume", action="store_true",
                   help="continue from --out's checkpoint after its last complete epoch")
    p.add_argument("--overwrite", action="store_true",
                   help="start afresh even if --out already holds a checkpoint")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--dist", choices=DIST_CHOICES, default="auto",
                   help="data-parallel training under mpiexec (default auto: nccl on cupy, "
                   "mpi on numpy, none when started alone); --batch-size stays the global "
                   "batch")
    return p


def recipe_from_args(model: str, args, base: dict | None = None) -> dict:
    """The recipe: ``base`` (d2l's, or a checkpoint's) with the flags given applied.

    Raises ValueError when resuming (``base`` from a checkpoint) and a flag other
    than --epochs contradicts it.
    """
    resuming = base is not None
    recipe = dict(D2L_RECIPES[model] if base is None else base)
    conflicts = []
    for flag, key in _RECIPE_FLAGS.items():
        value = getattr(args, flag)
        if value is None:
            continue
        if resuming and key != "epochs" and value != recipe.get(key):
            conflicts.append(f"--{flag.replace('_', '-')} {value} (checkpoint: "
                             f"{recipe.get(key)})")
        recipe[key] = value
    if conflicts:
        raise ValueError("--resume continues the checkpoint's recipe, but the command line "
                         "changes it: " + ", ".join(conflicts) + "; drop those flags or "
                         "train afresh in another --out")
    return recipe


def main(model: str, argv=None, description: str = "", choose: bool = False) -> int:
    """Parse flags, train, and return the exit status (130 after Ctrl-C).

    Under mpiexec (``--dist``, ``tinyalex/dist/``) every process runs this; rank 0
    alone prints, checks ``--out`` and reads the checkpoint, and tells the others
    what to train. A failure not every process meets at the same step ends the whole
    job (MPI_Abort) with the message of the process that failed."""
    args = parser(model, description, choose).parse_args(argv)
    say = print if launch_from_env().rank == 0 else _quiet
    try:
        backend = args.backend or B.default_backend()
        group = make_group(args.dist, backend)       # alone: SOLO, and no mpi4py
    except FAILURES as exc:                # every process meets these alike
        say(f"error: {exc}", file=sys.stderr)
        return exit_status(exc)
    if group.size == 1:
        return _main(model, args, backend, group, print)
    try:
        return _main(model, args, backend, group, say)
    except BaseException as exc:           # a fault of this process alone
        group.abort_on(exc)
        raise


class _Agreed(Exception):
    """A failure every process of a group learned from rank 0: status in args[0]."""


def _main(model: str, args, backend: str, group, say) -> int:
    try:
        if args.backend is None:
            why = "a GPU is usable" if backend == "cupy" else \
                f"no GPU backend: {B.cupy_unavailable_reason()}"
            say(f"backend: {backend} (default; {why})")
        else:
            B.xp_of(backend)      # a clear error now if cupy was asked for but is unusable
            say(f"backend: {backend}")
        out = Path(args.out)
        recipe, ckpt, done = _prepare(model, args, out, group)
        say("recipe: " + ", ".join(f"{k}={v}" for k, v in recipe.items()))
        data = load_fashion_mnist(args.data_dir)
        if done:
            say(done)
            return DONE
        fit(recipe, data, backend=backend, out_dir=out, resume=ckpt,
            progress=not args.no_progress and sys.stderr.isatty(), log=say, dist=group)
    except _Agreed as exc:                 # rank 0 printed why
        return exc.args[0]
    except TrainingInterrupted as exc:
        say(f"\n{exc}", file=sys.stderr)
        if exc.checkpoint and exc.epoch:
            say(f"resume with: python {sys.argv[0]} --out {args.out} --resume",
                file=sys.stderr)
        return exit_status(exc)
    except KeyboardInterrupt as exc:       # Ctrl-C before training began: nothing written
        if group.size > 1:
            raise
        print("\ninterrupted before training began; nothing was written", file=sys.stderr)
        return exit_status(exc)
    except FAILURES as exc:                # diverged, bad input, out of memory, ...
        if group.size > 1 and not isinstance(exc, TrainingDiverged):
            raise                          # this process's alone: main aborts the job
        say(f"error: {exc}", file=sys.stderr)
        return exit_status(exc)
    say(f"files in {out}: checkpoint.npz, metrics.json, curves.png")
    return DONE


def _prepare(model: str, args, out: Path, group):
    """``(recipe, checkpoint or None, message when there is nothing to do)``, from
    rank 0's look at ``--out``; the other processes get the recipe and the message
    (only rank 0 reads the checkpoint: ``fit`` broadcasts its contents)."""
    failure = found = None
    if group.rank == 0:
        try:
            found = _look_at_out(model, args, out)
        except FAILURES as exc:
            if group.size == 1:
                raise
            failure = exc
    if group.size > 1:
        mine = None if group.rank != 0 else ("failed", exit_status(failure)) if failure \
            else ("ok", found[0], found[2])
        shared = group.broadcast_object(mine)
        if failure is not None:
            print(f"error: {failure}", file=sys.stderr)
        if shared[0] == "failed":
            raise _Agreed(shared[1])
        if group.rank != 0:
            return shared[1], None, shared[2]
    return found


def _look_at_out(model: str, args, out: Path):
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out} is a file; expected a folder")
    ckpt_path = out / CHECKPOINT
    if not args.resume:
        if ckpt_path.exists() and not args.overwrite:
            raise ValueError(f"{ckpt_path} already exists; pass --resume to continue it, "
                             "--overwrite to start afresh, or another --out")
        return recipe_from_args(model, args), None, None
    if not ckpt_path.exists():
        raise ValueError(f"--resume: {ckpt_path} does not exist; nothing to resume")
    ckpt = load_checkpoint(ckpt_path)
    if ckpt.model_name != model:
        raise ValueError(f"--resume: {ckpt_path} holds {a_model(ckpt.model_name)} checkpoint, "
                         f"this script trains {a_model(model)}; give --out the folder of "
                         f"{a_model(model)} run")
    recipe = recipe_from_args(model, args, ckpt.recipe)
    done = None
    if ckpt.epoch >= recipe["epochs"]:
        done = (f"{ckpt_path} already holds {epochs_word(ckpt.epoch)} (recipe: "
                f"{recipe['epochs']}); nothing to do (raise --epochs to train longer)")
    return recipe, ckpt, done


def _quiet(*args, **kwargs) -> None:
    pass
