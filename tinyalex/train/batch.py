"""A batch on its way through a training step: onto the backend, and what the step
leaves (``Done``), for ``epoch.py``'s steps and ``shares.py``'s."""

from __future__ import annotations

from typing import NamedTuple

from .. import backend as B
from ..data import NUM_CLASSES, to_input
from ..tensor import Tensor


def to_backend(X_host, y_host, backend: str, resize) -> tuple[Tensor, Tensor]:
    """A host batch as the net's input (float, resized) and labels on ``backend``."""
    return (Tensor(to_input(X_host, backend, resize)),
            Tensor(B.xp_of(backend).asarray(y_host)))


def count_correct(logits, y) -> int:
    """Number of rows whose largest logit is at the label (d2l's ``accuracy``)."""
    return int((logits.argmax(axis=1) == y).sum())


class Done(NamedTuple):
    """What one step of ``train_epoch`` leaves: the batch's mean loss and correct count
    (over every process's rows), the number of classes, whether it was a start-up step
    (not timed), and the stop the processes agreed on (0: none, or alone)."""
    batch_loss: float
    hits: int
    classes: int = NUM_CLASSES
    startup: bool = False
    stop: int = 0
