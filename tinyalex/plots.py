"""PNG pictures of a run: d2l's training curves and a confusion matrix.

Drawn with matplotlib's object API on the Agg canvas (no pyplot, no window, no
global backend switch), so they work on machines without a display.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np


def _figure(width, height):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    fig = Figure(figsize=(width, height), dpi=100)
    FigureCanvasAgg(fig)
    return fig


def _save(fig, path) -> str:
    from .checkpoint import atomic_write
    path = Path(path)
    atomic_write(path, lambda f: fig.savefig(f, format="png", bbox_inches="tight"))
    return str(path)


def plot_curves(records, path, title: str = "") -> str:
    """d2l's picture: train loss, train acc and test acc against epoch, one axes.

    ``records`` are metrics.json's epoch records (``epoch``, ``loss``, ``train_acc``,
    ``test_acc``).
    """
    fig = _figure(5.0, 3.5)
    ax = fig.add_subplot(1, 1, 1)
    epochs = [r["epoch"] for r in records]
    ax.plot(epochs, [r["loss"] for r in records], "-", color="tab:blue", label="train loss")
    ax.plot(epochs, [r["train_acc"] for r in records], "--", color="tab:purple",
            label="train acc")
    ax.plot(epochs, [r["test_acc"] for r in records], "-.", color="tab:green",
            label="test acc")
    ax.set_xlabel("epoch")
    from matplotlib.ticker import MaxNLocator
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    if epochs:
        ax.set_xlim(min(1, min(epochs)), max(max(epochs), 2))
    ax.grid(True, alpha=0.3)
    ax.legend(loc="best")
    if title:
        ax.set_title(title)
    return _save(fig, path)


def plot_confusion(matrix, class_names, path, title: str = "") -> str:
    """A confusion matrix (rows: true class, columns: predicted), counts in the cells."""
    matrix = np.asarray(matrix)
    K = len(class_names)
    if matrix.shape != (K, K):
        raise ValueError(f"plot_confusion: matrix has shape {matrix.shape}, expected ({K}, {K}) "
                         "for the class names given")
    fig = _figure(7.0, 6.0)
    ax = fig.add_subplot(1, 1, 1)
    image = ax.imshow(matrix, cmap="Blues")
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
    ax.set_xticks(range(K), labels=class_names, rotation=45, ha="right")
    ax.set_yticks(range(K), labels=class_names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    high = matrix.max() / 2 if matrix.size else 0
    for i in range(K):
        for j in range(K):
            ax.text(j, i, str(int(matrix[i, j])), ha="center", va="center", fontsize=7,
                    color="white" if matrix[i, j] > high else "black")
    if title:
        ax.set_title(title)
    return _save(fig, path)
