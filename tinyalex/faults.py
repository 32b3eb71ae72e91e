"""What can go wrong in a training run, and how each fault is reported.

* ``Signals``: while training, SIGINT and SIGTERM ask the loop to stop after the
  current batch; a second signal stops at once, except inside ``critical()`` (while
  the files of an epoch are written), which always finishes first.
* ``TrainingInterrupted``, ``TrainingDiverged`` (``diverged`` and
  ``divergence_message``) and ``OutOfMemory`` (``translate_oom``): the errors
  ``tinyalex.train.fit`` raises, each saying where and what to change. The exit
  status the scripts give each is in ``tinyalex/exits.py``.

The checks are tested by injecting the faults: tests/reliability/test_faults.py (signals, kills,
divergence) and tests/reliability/test_resources.py (memory).
"""

from __future__ import annotations

import contextlib
import math
import os
import signal
import threading

# A batch whose mean cross-entropy exceeds DIVERGENCE_FACTOR * ln(classes) has
# diverged: it gives the true class, on average, a probability below
# exp(-100 * ln 10) = 1e-100 (guessing gives 1/10). No run that learns comes near:
# LeNet at lr 30 peaks near 60; at lr 100 it passes 230 by its third step, and its
# loss stays finite (the cross-entropy is computed stably), so a NaN test alone
# would never stop it.
DIVERGENCE_FACTOR = 100


class TrainingInterrupted(Exception):
    """Training stopped on a signal; ``epoch`` complete epochs are saved."""

    def __init__(self, epoch: int, signum: int, checkpoint: str | None):
        self.epoch, self.signum, self.checkpoint = epoch, signum, checkpoint
        name = signal.Signals(signum).name
        kept = f"; the last checkpoint ({checkpoint}, epoch {epoch}) is kept" if checkpoint \
            and epoch else ""
        super().__init__(f"training interrupted by {name} during epoch {epoch + 1}{kept}")


class TrainingDiverged(RuntimeError):
    """The loss (or the weights) became non-finite or exploded; nothing of the
    diverging epoch was saved, the checkpoint of the last complete epoch is kept."""

    def __init__(self, message: str, epoch: int, step: int, loss: float):
        self.epoch, self.step, self.loss = epoch, step, loss
        super().__init__(message)


class OutOfMemory(RuntimeError):
    """Memory ran out in a training step or in evaluation; says where and what to try."""


def is_out_of_memory(exc: BaseException) -> bool:
    """True for an allocation failure on either backend, recognised without importing
    CuPy: NumPy's MemoryError and CuPy's ``cupy.cuda.memory.OutOfMemoryError`` (a
    MemoryError subclass), and CUDA or cuBLAS errors that report a failed allocation
    (``CUBLAS_STATUS_ALLOC_FAILED``, ``cudaErrorMemoryAllocation``,
    ``CUDA_ERROR_OUT_OF_MEMORY``: CuPy launches every GPU kernel tinyalex runs)."""
    if isinstance(exc, MemoryError):
        return True
    module = type(exc).__module__ or ""
    if not module.startswith(("cupy", "cupy_backends")):
        return False
    text = str(exc)
    return (type(exc).__name__ == "OutOfMemoryError" or "out of memory" in text.lower()
            or "OUT_OF_MEMORY" in text or "ALLOC_FAILED" in text
            or "MemoryAllocation" in text)


def device_of(exc, backend: str) -> str:
    module = type(exc).__module__ or ""
    return "GPU" if backend == "cupy" or module.startswith(("cupy", "cupy_backends")) \
        else "host"


def reason(exc) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


@contextlib.contextmanager
def translate_oom(where: str, batch: int, backend: str, side):
    """Turn an allocation failure inside the block into ``OutOfMemory`` that says where
    it happened and suggests half the batch."""
    try:
        yield
    except Exception as exc:
        if not is_out_of_memory(exc):
            raise
        device = device_of(exc, backend)
        raise OutOfMemory(
            f"out of {device} memory {where} (a batch of {batch} images of {side}x{side} "
            f"on {backend}; {reason(exc)}); use a smaller batch, e.g. --batch-size "
            f"{max(1, batch // 2)}" + (", or free the GPU of other processes"
                                       if device == "GPU" else "")) from None


# --------------------------------------------------------------------------------------
# Signals: stop at once, but never in the middle of writing a file
# --------------------------------------------------------------------------------------

class Stop(Exception):
    """Raised inside the loop when a stop was asked for by a signal; ``args[0]`` is
    the signal's number (distributed training stops every process on any one's)."""


class Signals:
    """While active, SIGINT and SIGTERM ask the loop to stop after the current batch
    (``check()`` raises ``Stop``); a second signal raises KeyboardInterrupt at once,
    except while a checkpoint is being written (inside ``critical()``)."""

    def __init__(self):
        self.in_critical = False
        self.received = None
        self._previous = {}

    def _handler(self, signum, frame):
        if self.received is None:
            self.received = signum
            # os.write, not print: a handler may interrupt a print in progress
            os.write(2, f"\n{signal.Signals(signum).name}: stopping after this batch "
                        "(send it again to stop at once)\n".encode())
        elif not self.in_critical:
            raise KeyboardInterrupt

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            for s in (signal.SIGINT, signal.SIGTERM):
                self._previous[s] = signal.signal(s, self._handler)
        return self

    def __exit__(self, *exc):
        for s, h in self._previous.items():
            signal.signal(s, h)
        return False

    def check(self) -> None:
        if self.received is not None:
            raise Stop(self.received)

    @contextlib.contextmanager
    def critical(self):
        self.in_critical = True
        try:
            yield
        finally:
            self.in_critical = False
        self.check()


def diverged(loss: float, classes: int) -> bool:
    """True for a batch loss that is not finite or is far above chance level."""
    return not math.isfinite(loss) or loss > DIVERGENCE_FACTOR * math.log(max(classes, 2))


def divergence_message(recipe, d2l_lr, epoch, step, steps, what) -> str:
    """Where training diverged (``epoch`` from 0, ``step`` from 1) and what to change."""
    lr, d2l = recipe["lr"], d2l_lr
    advice = f"lower the learning rate (--lr {lr:g} now, e.g. --lr {lr / 10:g}"
    advice += f"; d2l's {recipe['model']} recipe uses {d2l:g})" if d2l else ")"
    if recipe.get("momentum"):
        advice += f", or the momentum ({recipe['momentum']:g})"
    return (f"training diverged in epoch {epoch + 1}, step {step} of {steps}: {what}; "
            f"{advice}")
