"""The CPU process policy: glibc's malloc keeps freed memory, and BLAS runs on one
thread. Applied once, at ``import tinyalex`` (``tinyalex/__init__.py`` calls
``apply()``), for the whole process; nothing else changes process-wide settings.

Why malloc: a training step allocates its activations and gradients afresh (megabytes
each) and frees them again. With glibc's defaults a large block is mapped from the
kernel when allocated and unmapped when freed, and the top of the heap is trimmed once
a few megabytes lie free, so every step faults its memory back in page by page and
the kernel zeroes each page. Here, blocks up to 32 MB (glibc's largest threshold) come
from the heap and the heap is trimmed only when more than 1 GiB lies free: memory a
step freed is reused by the next one, and the resident size stays at its high point.
``TINYALEX_MALLOC=default`` leaves malloc as it is (the effect is measured in
benchmarks/README.md).

Why one BLAS thread: the CPU kernels cut each large GEMM into independent pieces, one
per thread (``cpu_threads.py``), each run by single-threaded BLAS; BLAS's own thread
pool alternating hundreds of times per step with those threads keeps them spinning
against each other (benchmarks/README.md has the figures). Without threadpoolctl BLAS
keeps its threads and the kernels do not cut GEMMs.
"""

from __future__ import annotations

import ctypes
import os
import sys

M_TRIM_THRESHOLD = -1       # mallopt parameter numbers (malloc.h)
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD = 32 << 20   # glibc refuses larger values (HEAP_MAX_SIZE / 2 on 64-bit)
TRIM_THRESHOLD = 1 << 30

_state = None               # (malloc keeps freed memory, BLAS single-threaded) once applied
_blas_limit = None          # threadpoolctl's limiter, kept alive: never restored


def apply() -> tuple[bool, bool]:
    """Apply the policy once (later calls return the first result):
    ``(malloc keeps freed memory, BLAS runs on one thread)``."""
    global _state
    if _state is None:
        _state = (_keep_freed_memory(), _single_threaded_blas())
    return _state


def malloc_keeps_freed_memory() -> bool:
    return apply()[0]


def blas_single_threaded() -> bool:
    return apply()[1]


def _keep_freed_memory() -> bool:
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


def _single_threaded_blas() -> bool:
    global _blas_limit
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        return False
    _blas_limit = threadpool_limits(limits=1, user_api="blas")
    return True
