"""The exit status of the training scripts (``tinyalex/cli.py``, ``examples/main.py``):
one mapping from what ended a run to the number a shell sees.

====== ==============================================================================
status what ended the run
====== ==============================================================================
0      done
2      a bad flag, file or folder, out of memory, or a file that could not be written
       (ValueError, TypeError, OSError, RuntimeError; ``OutOfMemory`` is a
       RuntimeError): the message says what to change
3      training diverged (``TrainingDiverged``): the loss became non-finite or
       exploded; the last good checkpoint is kept
130    stopped by SIGINT (Ctrl-C), 143 by SIGTERM: 128 + the signal, as a shell
       reports it (``TrainingInterrupted``; a KeyboardInterrupt counts as SIGINT)
====== ==============================================================================
"""

from __future__ import annotations

import signal

from .faults import TrainingDiverged, TrainingInterrupted

DONE = 0
BAD_INPUT = 2
EXIT_DIVERGED = 3

# what a script reports as a message and an exit status instead of a traceback
FAILURES = (TrainingInterrupted, TrainingDiverged, ValueError, TypeError, OSError,
            RuntimeError)


def exit_status(exc: BaseException) -> int:
    """The exit status for a run ended by ``exc`` (one of ``FAILURES``, or a
    KeyboardInterrupt); any other exception is not a failure the scripts report."""
    if isinstance(exc, TrainingInterrupted):
        return 128 + exc.signum
    if isinstance(exc, KeyboardInterrupt):
        return 128 + signal.SIGINT
    if isinstance(exc, TrainingDiverged):           # before RuntimeError: it is one
        return EXIT_DIVERGED
    if isinstance(exc, FAILURES):
        return BAD_INPUT
    raise TypeError(f"exit_status: {type(exc).__name__} is not a failure the training "
                    f"scripts report; expected one of "
                    f"{[t.__name__ for t in FAILURES + (KeyboardInterrupt,)]}")
