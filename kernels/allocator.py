"""Keep freed memory in the process instead of handing it back to the kernel at every
step (glibc's malloc on Linux; the fast CPU set calls ``keep_freed_memory`` once).

A training step allocates its activations and gradients afresh and frees them again
(megabytes each: LeNet's first activation at batch 256 is 4.8 MB). With glibc's
defaults, a large block is mapped from the kernel when allocated and unmapped when
freed, and the top of the heap is trimmed once more than a few megabytes lie free;
every step then faults its memory back in page by page, and the kernel zeroes each
page. Measured on the benchmark machine (LeNet, batch 256): 1,450-1,950 page faults
and 3-8 ms of system time per step of 14-18 ms; with the settings below, 1 fault and
0.4 ms (benchmarks/README.md).

The settings: blocks up to 32 MB (glibc's largest threshold) come from the heap, and
the heap is trimmed only when more than 1 GiB lies free. Memory a step freed is reused
by the next one; the resident size stays at its high point instead of dropping
between steps. They apply to the whole process (PyTorch in the same process gains as
well, so the benchmark's ratios are if anything conservative).
``TINYALEX_MALLOC=default`` in the environment leaves malloc as it is.
"""

from __future__ import annotations

import ctypes
import os
import sys

M_TRIM_THRESHOLD = -1       # mallopt parameter numbers (malloc.h)
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD = 32 << 20   # glibc refuses larger values (HEAP_MAX_SIZE / 2 on 64-bit)
TRIM_THRESHOLD = 1 << 30

_applied = None


def keep_freed_memory() -> bool:
    """Apply the settings above once; True if glibc's mallopt took them."""
    global _applied
    if _applied is None:
        _applied = _apply()
    return _applied


def _apply() -> bool:
    choice = os.environ.get("TINYALEX_MALLOC", "keep").strip().lower() or "keep"
    if choice not in ("keep", "default"):
        raise ValueError(f"TINYALEX_MALLOC={choice!r}: expected 'keep' (the default) or "
                         "'default' (leave glibc's malloc settings as they are)")
    if choice == "default" or not sys.platform.startswith("linux"):
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt          # glibc; absent from musl
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)) \
        and bool(mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD))
