"""The CPU process policy: glibc's malloc keeps freed memory, BLAS runs on one thread
and the CPU kernels cut large GEMMs over their own threads (``cpu_threads.py``).

One entry point sets it for the whole process: ``tinyalex.cpu_policy(...)`` (this
module's ``cpu_policy``), which ``import tinyalex`` calls once, visibly, at the top of
``tinyalex/__init__.py``. ``TINYALEX_CPU_POLICY=off`` makes that import call nothing
(the process keeps glibc's and BLAS's own settings, and the kernels run whole);
``tinyalex.cpu_policy(malloc="default", blas_threads=None)`` undoes it later, and
``tinyalex.set_num_threads(n)`` sets the kernels' threads. ``tinyalex.summary`` and
``policy()`` say what is in force; nothing else changes process-wide settings.

Why malloc: a training step allocates its activations and gradients afresh (megabytes
each) and frees them again. With glibc's defaults a large block is mapped from the
kernel when allocated and unmapped when freed, and the top of the heap is trimmed once
a few megabytes lie free, so every step faults its memory back in page by page and
the kernel zeroes each page. Here, blocks up to 32 MB (glibc's largest threshold) come
from the heap and the heap is trimmed only when more than 1 GiB lies free: memory a
step freed is reused by the next one, and the resident size stays at its high point.
``TINYALEX_MALLOC=default`` (or ``cpu_policy(malloc="default")``) leaves malloc as it
is, or puts glibc's default thresholds back (the effect is measured in
benchmarks/README.md).

Why one BLAS thread: the CPU kernels cut each large GEMM into independent pieces, one
per thread (``cpu_threads.py``), each run by single-threaded BLAS; BLAS's own thread
pool alternating hundreds of times per step with those threads keeps them spinning
against each other (benchmarks/README.md has the figures). Without threadpoolctl, or
with ``blas_threads=None``, BLAS keeps its threads and the kernels do not cut GEMMs.
"""

from __future__ import annotations

import ctypes
import os
import sys

from . import cpu_threads

M_TRIM_THRESHOLD = -1       # mallopt parameter numbers (malloc.h)
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD = 32 << 20   # glibc refuses larger values (HEAP_MAX_SIZE / 2 on 64-bit)
TRIM_THRESHOLD = 1 << 30

DEFAULT_THRESHOLD = 128 * 1024   # glibc's static default of both thresholds

_malloc_keeps = False       # whether malloc keeps freed memory (this policy set it)
_blas_limit = None          # threadpoolctl's limiter while BLAS is held to one thread


def cpu_policy(malloc: str | None = None, blas_threads: int | None = 1) -> dict:
    """Set the CPU process policy and return it (``policy()``).

    ``malloc``: ``"keep"`` (glibc's malloc keeps freed memory for the next step) or
    ``"default"`` (glibc's own thresholds); None reads ``TINYALEX_MALLOC`` (default
    ``keep``). ``blas_threads``: 1 holds BLAS to one thread, so that the CPU kernels cut
    large GEMMs over ``cpu_threads.THREADS`` threads; None gives BLAS its own threads
    back (and the kernels run whole)."""
    global _malloc_keeps, _blas_limit
    if malloc is None:
        malloc = os.environ.get("TINYALEX_MALLOC", "keep").strip().lower() or "keep"
        where = f"TINYALEX_MALLOC={malloc!r}"
    else:
        where = f"cpu_policy(malloc={malloc!r})"
    if malloc not in ("keep", "default"):
        raise ValueError(f"{where}: expected 'keep' (the default) or 'default' (leave "
                         "glibc's malloc settings as they are)")
    if blas_threads not in (1, None):
        raise ValueError(f"cpu_policy(blas_threads={blas_threads!r}): expected 1 (BLAS on "
                         "one thread, the kernels cut GEMMs) or None (BLAS's own threads)")
    if malloc == "keep" and not _malloc_keeps:
        _malloc_keeps = _set_malloc(MMAP_THRESHOLD, TRIM_THRESHOLD)
    elif malloc == "default" and _malloc_keeps:
        _set_malloc(DEFAULT_THRESHOLD, DEFAULT_THRESHOLD)
        _malloc_keeps = False
    if blas_threads == 1 and _blas_limit is None:
        _blas_limit = _single_threaded_blas()
    elif blas_threads is None and _blas_limit is not None:
        _blas_limit.restore_original_limits()
        _blas_limit = None
    cpu_threads.configure(split=_blas_limit is not None)
    return policy()


def policy() -> dict:
    """What is in force: ``{"malloc": "keep" | "default", "blas_threads": 1 | None,
    "threads": the CPU kernels' threads, "gemm_split": whether they cut GEMMs}``."""
    return {"malloc": "keep" if _malloc_keeps else "default",
            "blas_threads": 1 if _blas_limit is not None else None,
            "threads": cpu_threads.THREADS, "gemm_split": cpu_threads.SPLIT}


def describe() -> str:
    """The policy in one line, for ``summary`` and the run records."""
    p = policy()
    return (f"CPU policy (tinyalex.cpu_policy): malloc {p['malloc']} "
            f"({'keeps freed memory' if p['malloc'] == 'keep' else 'glibc defaults'}), "
            f"BLAS on {'1 thread' if p['blas_threads'] == 1 else 'its own threads'}, "
            f"{p['threads']} kernel thread{'s' if p['threads'] != 1 else ''}"
            f"{', GEMMs cut over them' if p['gemm_split'] else ''}")


def set_num_threads(n: int) -> None:
    """The CPU kernels' threads (``TINYALEX_CPU_THREADS`` at import), as torch's."""
    cpu_threads.configure(threads=n)


def get_num_threads() -> int:
    return cpu_threads.THREADS


def malloc_keeps_freed_memory() -> bool:
    return _malloc_keeps


def blas_single_threaded() -> bool:
    return _blas_limit is not None


def _set_malloc(mmap_threshold: int, trim_threshold: int) -> bool:
    if not sys.platform.startswith("linux"):
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt          # glibc; absent from musl
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return bool(mallopt(M_MMAP_THRESHOLD, mmap_threshold)) \
        and bool(mallopt(M_TRIM_THRESHOLD, trim_threshold))


def _single_threaded_blas():
    """threadpoolctl's limiter holding BLAS to one thread, or None without it."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        return None
    return threadpool_limits(limits=1, user_api="blas")
