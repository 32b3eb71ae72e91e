"""``train_step`` for one process's share of a global batch (``tinyalex/dist/``).

Several processes run ``train_epoch`` over the same global batches. Each takes its
block of rows of a batch (``group.rows``) and does d2l's step on them, with three
differences from ``epoch.train_step``:

* dropout draws those rows of the mask the whole batch would get (``batch_rows``
  sets the first row on the network's Dropout layers for the forward), so that the
  processes' masks are the batch's;
* backward starts from ``rows / n`` (this share of the global mean loss), and the
  gradients are summed over the processes before the SGD step, so that every process
  steps with the gradient of the global batch's mean loss;
* the step's loss sum, correct count and stop requests are summed after it, so that
  every process prints, checks and stops on the global batch's numbers.

A process without rows (a batch smaller than the group) adds zeros and takes the
random state of rank 0, which drew the batch's dropout seeds.
"""

from __future__ import annotations

import contextlib
import signal

from .. import random as R
from ..data import NUM_CLASSES
from ..faults import Stop
from ..nn.layers import Dropout
from ..ops.loss import cross_entropy
from .batch import Done, count_correct, to_backend


class ShareStep:
    """One global batch's step, as this process of ``group`` takes part in it."""

    def __init__(self, net, optimizer, group, backend: str, resize, check):
        self.net, self.optimizer, self.group = net, optimizer, group
        self.backend, self.resize, self.check = backend, resize, check

    def rows(self, n: int) -> int:
        """How many rows of a batch of ``n`` this process computes."""
        rows = self.group.rows(n)
        return rows.stop - rows.start

    def __call__(self, X_host, y_host):
        n = len(y_host)                         # the global batch
        rows = self.group.rows(n)               # this process's block of it
        self.optimizer.zero_grad()
        logits, loss_sum, hits = None, 0.0, 0
        if rows.stop > rows.start:
            X, y = to_backend(X_host[rows], y_host[rows], self.backend, self.resize)
            with batch_rows(self.net, rows.start):  # dropout: these rows of its masks
                logits = self.net(X)
                loss = cross_entropy(logits, y)
            if len(y.array) == n:
                loss.backward()
            else:                               # this share of the global mean loss
                loss.backward(loss.xp.asarray(len(y.array) / n, dtype=loss.dtype))
            loss_sum = float(loss.item()) * len(y.array)
            hits = count_correct(logits.array, y.array)
        sum_gradients(self.group, self.optimizer)
        self.optimizer.step()
        if n < self.group.size:  # a process without rows drew no dropout seeds: resync
            R.set_rng_state(self.group.broadcast_object(R.get_rng_state()))
        (loss_sum, hits), stop = totals_and_stop(self.group, self.check, loss_sum, hits)
        classes = logits.shape[1] if logits is not None else NUM_CLASSES   # no rows here
        return Done(loss_sum / n, hits, classes, stop=stop)


@contextlib.contextmanager
def batch_rows(net, first: int):
    """Inside, ``net``'s Dropout layers take their input as rows ``first..`` of a larger
    batch (``nn.Dropout.first_row``), and draw those rows of its masks."""
    layers = [m for m in net.modules() if isinstance(m, Dropout)]
    for m in layers:
        m.first_row = first
    try:
        yield
    finally:
        for m in layers:
            m.first_row = 0


def sum_gradients(group, optimizer) -> None:
    """Every process's gradient becomes the sum over processes: one collective over the
    flat gradient buffer (parameters without a gradient this step count as zeros)."""
    if group.size == 1:
        return
    flat = getattr(optimizer, "flat", None)
    if flat is None:
        raise ValueError("distributed training sums the gradients in one buffer: build the "
                         "optimizer with SGD(..., flat=FlatParameters(net.parameters()))")
    flat.zero_missing_gradients()
    group.sum_in_place(flat.grad)


def totals_and_stop(group, check, *values):
    """``(values summed over every process, stop)``: ``stop`` is the number of a signal
    any process received (SIGTERM before SIGINT), or 0. Alone: the values as they
    are, and 0 (the stop is ``check``'s own, ``epoch._stop_if``)."""
    if group.size == 1:
        return values, 0
    try:
        check()
        local = 0
    except Stop as exc:
        local = exc.args[0] if exc.args else signal.SIGINT
    sums = group.sum_host([*values, local == signal.SIGINT, local == signal.SIGTERM])
    stop = signal.SIGTERM if sums[-1] else signal.SIGINT if sums[-2] else 0
    return tuple(float(v) for v in sums[:-2]), int(stop)
