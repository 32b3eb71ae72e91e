"""Evaluate a trained checkpoint on the Fashion-MNIST test set.

    python examples/evaluate.py runs/lenet/checkpoint.npz
    python examples/evaluate.py runs/alexnet/checkpoint.npz --backend cupy
    python examples/evaluate.py runs/alexnet/checkpoint.npz --test-limit 1000 --confusion cm.png
    python examples/evaluate.py lenet.safetensors      # weights saved by tinyalex or PyTorch

Builds the network named in the checkpoint's recipe (for a .safetensors file: d2l's
LeNet or AlexNet, recognised by its first layer, with d2l's recipe for the input
size and batch), loads its weights, and prints
the test accuracy, a per-class table (accuracy of each of the ten classes and what
it is most often mistaken for) and saves the confusion matrix as a PNG (default:
confusion.png beside the checkpoint).
"""

import argparse
import sys
from pathlib import Path

import numpy as np

from tinyalex import backend as B
from tinyalex.checkpoint import load_model
from tinyalex.data import CLASS_NAMES, load_fashion_mnist
from tinyalex.exits import DONE, FAILURES, exit_status
from tinyalex.recipes import D2L_RECIPES, epochs_word
from tinyalex.safetensors_io import model_from_file
from tinyalex.study.plots import plot_confusion
from tinyalex.train import predict


def confusion_matrix(labels, predicted, K=len(CLASS_NAMES)) -> np.ndarray:
    """counts (K, K): row = true class, column = predicted class."""
    matrix = np.zeros((K, K), dtype=np.int64)
    np.add.at(matrix, (labels, predicted), 1)
    return matrix


def per_class_table(matrix) -> str:
    lines = [f"{'class':<12} {'examples':>8} {'correct':>8} {'accuracy':>9}  most often taken for"]
    for k, name in enumerate(CLASS_NAMES):
        row = matrix[k]
        total = int(row.sum())
        others = row.copy()
        others[k] = 0
        worst = int(np.argmax(others))
        confused = f"{CLASS_NAMES[worst]} ({others[worst]})" if others[worst] else "-"
        acc = f"{row[k] / total:.3f}" if total else "n/a"
        lines.append(f"{name:<12} {total:>8} {int(row[k]):>8} {acc:>9}  {confused}")
    return "\n".join(lines)


def load(path, backend):
    """``(network, recipe, what)`` from a checkpoint.npz or a .safetensors weights file."""
    if str(path).endswith(".safetensors"):
        net, name = model_from_file(path, backend)
        return net, dict(D2L_RECIPES[name]), "weights"
    net, ckpt = load_model(path, backend=backend)
    return net, ckpt.recipe, f"after {epochs_word(ckpt.epoch)}"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("checkpoint", help="a checkpoint.npz written by train_alexnet.py or "
                   "train_lenet.py, or a .safetensors file of LeNet or AlexNet weights")
    p.add_argument("--backend", choices=B.BACKENDS, default=None,
                   help="default: cupy when a GPU is usable, else numpy")
    p.add_argument("--data-dir", help="folder holding the Fashion-MNIST IDX files")
    p.add_argument("--batch-size", type=int, default=None,
                   help="default: the checkpoint's training batch size")
    p.add_argument("--test-limit", type=int, metavar="N", help="the first N test examples only")
    p.add_argument("--confusion", help="PNG path (default: confusion.png beside the checkpoint)")
    args = p.parse_args(argv)
    try:
        backend = args.backend or B.default_backend()
        net, recipe, what = load(args.checkpoint, backend)
        _, _, images, labels = load_fashion_mnist(args.data_dir)
        if args.test_limit is not None:
            if args.test_limit < 1:
                raise ValueError(f"--test-limit must be positive, got {args.test_limit}")
            images, labels = images[:args.test_limit], labels[:args.test_limit]
        batch_size = recipe["batch_size"] if args.batch_size is None else args.batch_size
        if batch_size < 1:
            raise ValueError(f"--batch-size must be positive, got {batch_size}")
        print(f"{recipe['model']} {what} ({args.checkpoint}), "
              f"{len(images)} test images on {backend}")
        predicted = predict(net, images, batch_size, backend, recipe["resize"])
        matrix = confusion_matrix(labels, predicted)
        print(f"test acc {np.trace(matrix) / len(labels):.4f}")
        print(per_class_table(matrix))
        png = args.confusion or str(Path(args.checkpoint).with_name("confusion.png"))
        plot_confusion(matrix, CLASS_NAMES, png,
                       title=f"{recipe['model']} {what}: test acc "
                             f"{np.trace(matrix) / len(labels):.3f}")
        print(f"confusion matrix: {png}")
    except FAILURES as exc:                # a bad file or flag, out of memory, ...
        print(f"error: {exc}", file=sys.stderr)
        return exit_status(exc)
    return DONE


if __name__ == "__main__":
    sys.exit(main())
