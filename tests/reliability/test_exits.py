"""tinyalex/exits.py: every way a training script can end maps to its one exit status."""

import signal

import pytest

from tinyalex import exits
from tinyalex.faults import OutOfMemory, TrainingDiverged, TrainingInterrupted


@pytest.mark.parametrize("exc,status", [
    (TrainingInterrupted(2, signal.SIGINT, None), 130),
    (TrainingInterrupted(0, signal.SIGTERM, "ck.npz"), 143),
    (KeyboardInterrupt(), 130),
    (TrainingDiverged("diverged", 0, 1, float("nan")), 3),   # a RuntimeError, yet 3
    (OutOfMemory("out of host memory"), 2),
    (ValueError("bad flag"), 2),
    (TypeError("bad type"), 2),
    (OSError(28, "No space left on device"), 2),
    (RuntimeError("cuda"), 2),
], ids=lambda v: type(v).__name__ if isinstance(v, BaseException) else str(v))
def test_each_failure_has_one_status(exc, status):
    assert exits.exit_status(exc) == status


def test_an_unexpected_exception_is_not_given_a_status():
    with pytest.raises(TypeError, match="ZeroDivisionError is not a failure"):
        exits.exit_status(ZeroDivisionError())
    assert not isinstance(ZeroDivisionError(), exits.FAILURES)


def test_the_constants():
    assert (exits.DONE, exits.BAD_INPUT, exits.EXIT_DIVERGED) == (0, 2, 3)
