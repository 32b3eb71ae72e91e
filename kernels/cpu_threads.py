"""Threads of the CPU kernels: ``TINYALEX_CPU_THREADS`` workers that run independent
pieces of one kernel call at once. The default is every core, shared among the
processes an MPI launcher started on this machine (cores // local processes, read
from the launcher's environment variables: ``tinyalex/launcher.py``), so that the
processes of a distributed run do not oversubscribe it. The compiled loops release
the GIL (``nogil=True``) and so do NumPy's GEMMs, so the pieces overlap.

* ``gemm(a, b, out)``: ``out = a @ b`` cut into one GEMM per thread: blocks of rows,
  or of columns when a has few rows (the fully connected layers at small batches),
  or the GEMMs of a batch (Winograd's), each by single-threaded BLAS;
* ``parallel(calls)``: zero-argument callables at once, their results in order;
* ``split(n, unit, call)``: ``call(i0, i1)`` over disjoint ranges covering 0..n-1, as
  many as pay for themselves (``unit``: the work of one item);
* ``ranges(n)``: the element ranges of an elementwise loop;
* ``column_sums(a)``: the sums over the rows of a matrix (bias gradients).

Pieces are cut only when BLAS runs on one thread (``cpu_process.py``'s policy, which
calls ``configure``): otherwise BLAS threads itself and these run whole. The workers are
``THREADS - 1`` threads of ours (``_Worker``): between calls each looks for the next one
for a short while without the GIL before it sleeps, since waking a sleeping thread
costs more than a short call, and a training step hands out hundreds of calls
(benchmarks/results/2026-12-07_epyc-zen5-avx512-2cores-s3/ab_dispatch.txt).
"""

from __future__ import annotations

import ctypes
import os
import threading

import numpy as np
from numba import njit

from tinyalex.launcher import local_processes


def _threads_from_env() -> int:
    default = max(1, (os.cpu_count() or 1) // local_processes())
    value = os.environ.get("TINYALEX_CPU_THREADS", "").strip() or str(default)
    if not value.isdigit() or int(value) < 1:
        raise ValueError(f"TINYALEX_CPU_THREADS={value!r}: expected a positive number of "
                         "threads")
    return int(value)


MIN_PIECE_FLOPS = 4_000_000     # a GEMM piece smaller than this is not worth a thread
MIN_PART_ELEMENTS = 1 << 17     # an elementwise range smaller than this is not worth one
FEW_ROWS = 256                  # below, a GEMM is cut by columns: row blocks each read all b

THREADS = _threads_from_env()   # set by configure (set_num_threads) from here on
_blas_single = False            # BLAS on one thread (cpu_process.py's policy)
SPLIT = False                   # work cut into pieces: BLAS on one thread, THREADS > 1
WORKERS = 1                     # threads an elementwise loop is cut for
_workers = []                   # THREADS - 1 workers while SPLIT
_handing = threading.Lock()     # held while parallel() hands calls to the workers


def configure(threads: int | None = None, split: bool | None = None) -> None:
    """Set the threads (``tinyalex.set_num_threads``) and whether BLAS runs on one
    thread, so that work may be cut into pieces (``cpu_process.cpu_policy``)."""
    global THREADS, _blas_single, SPLIT, WORKERS, _workers
    if threads is not None:
        if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
            raise ValueError(f"set_num_threads({threads!r}): expected a positive number "
                             "of threads")
        if threads != THREADS:
            _stop_workers()
        THREADS = threads
    if split is not None:
        _blas_single = bool(split)
    SPLIT = _blas_single and THREADS > 1
    WORKERS = THREADS if SPLIT else 1
    if not SPLIT:
        _stop_workers()
    elif not _workers:
        _workers = [_Worker(f"tinyalex-cpu-{i}") for i in range(1, THREADS)]


def _stop_workers() -> None:
    global _workers
    for worker in _workers:
        worker.stop()
    _workers = []


SPINS = 2000     # a worker looks this many times for its next call (yielding the core in
                 # between) before it sleeps; the caller as many for the end of a call


def _sched_yield():
    """libc's sched_yield (give the core to another runnable thread), for the spins."""
    try:
        fn = ctypes.CDLL(None).sched_yield
    except (OSError, AttributeError):
        return None
    fn.restype, fn.argtypes = ctypes.c_int, []
    return fn


_yield = _sched_yield()


if _yield is not None:
    @njit(nogil=True)       # not cached: it calls libc through a ctypes pointer
    def _spin(counters, i, seen, spins):
        """Wait, without the GIL, for counters[i] to differ from ``seen``, looking at most
        ``spins`` times; whether it does. (The call to libc between looks makes the
        compiled loop read counters[i] afresh each time.)"""
        for _ in range(spins):
            if counters[i] != seen:
                return True
            _yield()
        return counters[i] != seen
else:
    def _spin(counters, i, seen, spins):
        return counters[i] != seen


class _Worker:
    """A thread that runs the calls handed to it, one at a time. Handing a call over
    counts it in ``counters[0]`` and releases a lock; the worker, once done with one,
    looks for the next by ``_spin`` (no GIL held) before it sleeps on that lock, and
    the caller looks for the end (``counters[1]``) the same way."""

    def __init__(self, name):
        self._go, self._done = threading.Lock(), threading.Lock()
        self._go.acquire()
        self._done.acquire()
        self.counters = np.zeros(2, dtype=np.int64)       # calls handed over, calls done
        self._call = self._outcome = None
        self._thread = threading.Thread(target=self._loop, name=name, daemon=True)
        self._thread.start()

    def _loop(self):
        seen = 0
        while True:
            _spin(self.counters, 0, seen, SPINS)
            self._go.acquire()
            seen += 1
            call = self._call
            if call is None:                                  # stop()
                return
            try:
                self._outcome = (True, call())
            except BaseException as exc:                      # raised by the caller
                self._outcome = (False, exc)
            self.counters[1] += 1
            self._done.release()

    def start(self, call):
        self._done_before = int(self.counters[1])
        self._call = call
        self.counters[0] += 1
        self._go.release()

    def wait(self):
        """``(True, result)`` or ``(False, exception)`` of the call handed to it."""
        _spin(self.counters, 1, self._done_before, SPINS)
        self._done.acquire()
        outcome, self._outcome = self._outcome, None
        return outcome

    def stop(self):
        self._call = None
        self.counters[0] += 1
        self._go.release()
        self._thread.join()


def pieces(n, parts):
    """``parts`` contiguous slices covering 0..n-1 (the last may be shorter)."""
    step = max(1, -(-n // parts))
    return [slice(i, min(n, i + step)) for i in range(0, n, step)]


def parallel(calls):
    """Run zero-argument callables at once (the first in this thread, the others by the
    workers, THREADS at a time) and return their results in order; an exception in any
    is raised here once all have ended. Called from a worker, or while another thread
    is handing out calls, they run one after the other in the calling thread."""
    if not SPLIT or len(calls) < 2 or not _handing.acquire(blocking=False):
        return [call() for call in calls]
    try:
        results = []
        for i in range(0, len(calls), THREADS):
            batch = calls[i:i + THREADS]
            busy = _workers[:len(batch) - 1]
            for worker, call in zip(busy, batch[1:]):
                worker.start(call)
            try:
                first = batch[0]()
            finally:
                outcomes = [worker.wait() for worker in busy]
            for ok, value in outcomes:
                if not ok:
                    raise value
            results += [first] + [value for _, value in outcomes]
        return results
    finally:
        _handing.release()


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


def column_sums(a):
    """a (R, D) summed over its rows, (D,): a convolution's bias gradient. A vector of
    ones times a, one matrix-vector product per thread (a range of rows each), the
    threads' sums added in range order: BLAS reads a once, where NumPy's
    ``a.sum(axis=0)`` adds it row by row, some three times slower."""
    R = a.shape[0]
    ones = np.ones(R, dtype=a.dtype)
    parts = max(1, min(WORKERS, R * a.shape[1] // MIN_PART_ELEMENTS))
    sums = parallel([lambda s=s: ones[s] @ a[s] for s in pieces(R, parts)])
    for part in sums[1:]:
        sums[0] += part
    return sums[0]


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
