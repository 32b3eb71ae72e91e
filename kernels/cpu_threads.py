"""Threads of the CPU kernels: ``TINYALEX_CPU_THREADS`` (default: every core) workers
that run independent pieces of one kernel call at once. The compiled loops release
the GIL (``nogil=True``) and so do NumPy's GEMMs, so the pieces overlap.

* ``gemm(a, b, out)``: ``out = a @ b`` cut into one GEMM per thread: blocks of rows,
  or of columns when a has few rows (the fully connected layers at small batches),
  or the GEMMs of a batch (Winograd's), each by single-threaded BLAS;
* ``parallel(calls)``: zero-argument callables at once, their results in order;
* ``split(n, unit, call)``: ``call(i0, i1)`` over disjoint ranges covering 0..n-1, as
  many as pay for themselves (``unit``: the work of one item);
* ``ranges(n)``: the element ranges of an elementwise loop.

Pieces are cut only when BLAS runs on one thread (``cpu_process.py``): otherwise BLAS
threads itself and these run whole.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from .cpu_process import blas_single_threaded


def _threads_from_env() -> int:
    value = os.environ.get("TINYALEX_CPU_THREADS", "").strip() or str(os.cpu_count() or 1)
    if not value.isdigit() or int(value) < 1:
        raise ValueError(f"TINYALEX_CPU_THREADS={value!r}: expected a positive number of "
                         "threads")
    return int(value)


THREADS = _threads_from_env()
SPLIT = blas_single_threaded() and THREADS > 1
WORKERS = THREADS if SPLIT else 1
MIN_PIECE_FLOPS = 4_000_000     # a GEMM piece smaller than this is not worth a thread
MIN_PART_ELEMENTS = 1 << 17     # an elementwise range smaller than this is not worth one
FEW_ROWS = 256                  # below, a GEMM is cut by columns: row blocks each read all b
_pool = ThreadPoolExecutor(THREADS - 1, thread_name_prefix="tinyalex-cpu") if SPLIT else None


def pieces(n, parts):
    """``parts`` contiguous slices covering 0..n-1 (the last may be shorter)."""
    step = max(1, -(-n // parts))
    return [slice(i, min(n, i + step)) for i in range(0, n, step)]


def parallel(calls):
    """Run zero-argument callables at once (the first in this thread, the others in the
    pool) and return their results in order."""
    if not SPLIT or len(calls) < 2:
        return [call() for call in calls]
    futures = [_pool.submit(call) for call in calls[1:]]
    first = calls[0]()
    return [first] + [f.result() for f in futures]


def split(n, unit, call):
    """call(i0, i1) over disjoint ranges covering 0..n-1, one per thread that pays."""
    parts = max(1, min(WORKERS, n, n * unit // MIN_PART_ELEMENTS))
    step = max(1, -(-n // parts))
    parallel([lambda i0=i0: call(i0, min(n, i0 + step)) for i0 in range(0, n, step)])


def ranges(n):
    """Disjoint (i0, i1) ranges covering 0..n-1, one per thread that pays."""
    parts = max(1, min(WORKERS, n // MIN_PART_ELEMENTS))
    step = max(1, -(-n // parts))
    return [(i, min(n, i + step)) for i in range(0, n, step)]


def run_ranges(loop, total, *args):
    """``loop(*args, t0, t1)`` over disjoint ranges of 0..total-1 at once (Winograd's
    tile transforms)."""
    if not SPLIT or total < 2 * THREADS:
        loop(*args, 0, total)
        return
    parallel([lambda s=s: loop(*args, s.start, s.stop) for s in pieces(total, THREADS)])


def gemm(a, b, out):
    """out = a @ b (2-D, or a batch of GEMMs for 3-D a), cut into THREADS independent
    GEMMs when large enough."""
    flops = 2 * a.size * b.shape[-1]
    if not SPLIT or flops < MIN_PIECE_FLOPS * THREADS:
        np.matmul(a, b, out=out)
        return
    if a.ndim == 3:                       # a batch of GEMMs (Winograd): share the batch
        parts = [(a[s], b[s], out[s]) for s in pieces(a.shape[0], THREADS)]
    elif a.shape[0] < FEW_ROWS and b.shape[1] >= 64 * THREADS:
        # column blocks: out[:, cols] = a @ b[:, cols], each piece reading its share of b
        parts = [(a, b[:, s], out[:, s]) for s in pieces(b.shape[1], THREADS)]
    elif a.shape[0] >= 8 * THREADS:       # row blocks: out[rows] = a[rows] @ b
        parts = [(a[s], b, out[s]) for s in pieces(a.shape[0], THREADS)]
    else:
        np.matmul(a, b, out=out)
        return
    parallel([lambda x=x, y=y, o=o: np.matmul(x, y, out=o) for x, y, o in parts])
