"""The fast CPU kernel set: the Numba loops of ``numba_kernels.py`` behind the checked
wrappers of ``fastset.py``, with GEMMs in NumPy's BLAS.

The convolution's im2col workspace holds ``CHUNK_BYTES`` of columns at a time: a few
images, enough for BLAS to run near its peak, small enough to stay in the 32 MB L3
cache between im2col writing it and the GEMM reading it. Wide 3x3 and 5x5 stride-1
layers take the Winograd path (``winograd.py``), other stride-1 layers the direct
convolution (``direct.py``), whose batch is cut into one part per thread.

Threads (``TINYALEX_CPU_THREADS``, default: every core): each large GEMM is cut into
that many independent pieces (row blocks, or GEMMs of a Winograd batch), each run by
single-threaded BLAS in a worker thread (NumPy releases the GIL). BLAS's own threads are
set to one (with threadpoolctl) and the Numba loops run on one thread. Two thread pools
(OpenBLAS's and Numba's OpenMP) that alternate hundreds of times per step keep spinning
against each other, and OpenBLAS's fine-grained synchronisation collapses as soon as
another process wants a core: measured on the 2-core benchmark machine with one other
busy process, AlexNet at batch 32 trained at 2.8 images/s with OpenBLAS's 2 threads,
29.9 with one thread and 38.2 with two coarse GEMM pieces (benchmarks/README.md).
Without threadpoolctl BLAS keeps its threads and GEMMs are not cut.

Memory: freed blocks stay in the process for the next step (``allocator.py``;
``TINYALEX_MALLOC=default`` turns that off), and the fully connected layers' results
larger than malloc keeps are recycled once freed (``recycle.py``).
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor

import numba
import numpy as np

from . import numba_elementwise, numba_kernels
from .allocator import MMAP_THRESHOLD, keep_freed_memory
from .fastset import FLOATS, FastKernels, _undo, dense_view
from .recycle import Recycler

CHUNK_BYTES = 4 << 20
MALLOC_KEEPS_FREED_MEMORY = keep_freed_memory()     # see allocator.py


def _threads_from_env() -> int:
    value = os.environ.get("TINYALEX_CPU_THREADS", "").strip() or str(os.cpu_count() or 1)
    if not value.isdigit() or int(value) < 1:
        raise ValueError(f"TINYALEX_CPU_THREADS={value!r}: expected a positive number of "
                         "threads")
    return int(value)


THREADS = _threads_from_env()
MIN_PIECE_FLOPS = 4_000_000     # a GEMM piece smaller than this is not worth a thread


def _single_threaded_blas():
    """Limit BLAS to one thread for the whole process; False if threadpoolctl is absent."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        return False
    global _blas_limit
    _blas_limit = threadpool_limits(limits=1, user_api="blas")   # kept: never restored
    return True


_blas_limit = None
SPLIT = _single_threaded_blas() and THREADS > 1
_pool = ThreadPoolExecutor(THREADS - 1, thread_name_prefix="tinyalex-gemm") if SPLIT else None


def _call(loop, total, *args):
    previous = numba.get_num_threads()
    if previous == 1:
        loop(*args)
        return
    numba.set_num_threads(1)
    try:
        loop(*args)
    finally:
        numba.set_num_threads(previous)


def _call_split(loop, total, *args):
    """loop(*args, t0, t1) over ``THREADS`` disjoint ranges of 0..total-1, in parallel
    (Winograd's tile transforms: they release the GIL)."""
    if not SPLIT or total < 2 * THREADS:
        _call(loop, total, *args, 0, total)
        return
    ranges = _pieces(total, THREADS)
    futures = [_pool.submit(_call, loop, total, *args, r.start, r.stop) for r in ranges[1:]]
    _call(loop, total, *args, ranges[0].start, ranges[0].stop)
    for f in futures:
        f.result()


def _pieces(n, parts):
    step = -(-n // parts)
    return [slice(i, min(n, i + step)) for i in range(0, n, step)]


FEW_ROWS = 256      # below, a GEMM is cut by columns: row blocks would each read all of b


def _matmul(a, b, out):
    """out = a @ b, cut into THREADS independent GEMMs when large enough: blocks of rows,
    or of columns when a has few rows (the fully connected layers at batch 8 and 32:
    AlexNet's x @ W.T at batch 32 took 21 ms whole, 15 ms in row blocks, 11 ms in column
    blocks on the 2 idle cores; benchmarks/README.md)."""
    flops = 2 * a.size * b.shape[-1]
    if not SPLIT or flops < MIN_PIECE_FLOPS * THREADS:
        np.matmul(a, b, out=out)
        return
    if a.ndim == 3:                       # a batch of GEMMs (Winograd): share the batch
        pieces = [(a[s], b[s], out[s]) for s in _pieces(a.shape[0], THREADS)]
    elif a.shape[0] < FEW_ROWS and b.shape[1] >= 64 * THREADS:
        # column blocks: out[:, cols] = a @ b[:, cols], each piece reading its share of b
        pieces = [(a, b[:, s], out[:, s]) for s in _pieces(b.shape[1], THREADS)]
    elif a.shape[0] >= 8 * THREADS:       # row blocks: out[rows] = a[rows] @ b
        pieces = [(a[s], b, out[s]) for s in _pieces(a.shape[0], THREADS)]
    else:
        np.matmul(a, b, out=out)
        return
    futures = [_pool.submit(np.matmul, x, y, out=o) for x, y, o in pieces[1:]]
    np.matmul(*pieces[0][:2], out=pieces[0][2])
    for f in futures:
        f.result()


def _parallel(calls):
    """Run zero-argument callables at once (the first in this thread, the others in the
    pool; they must release the GIL to overlap) and return their results in order."""
    if not SPLIT or len(calls) < 2:
        return [call() for call in calls]
    futures = [_pool.submit(call) for call in calls[1:]]
    first = calls[0]()
    return [first] + [f.result() for f in futures]


def _split(n, unit, call):
    """call(i0, i1) over disjoint ranges covering 0..n-1, at once, one per thread that
    pays (items of ``unit`` work each; see FastKernels)."""
    parts = max(1, min(THREADS if SPLIT else 1, n, n * unit // MIN_PART_ELEMENTS))
    step = -(-n // parts)
    _parallel([lambda i0=i0: call(i0, min(n, i0 + step)) for i0 in range(0, n, step)])


RESULTS = Recycler(min_bytes=MMAP_THRESHOLD, max_free_bytes=512 << 20)   # recycle.py
KERNELS = FastKernels(np, numba_kernels, _call, _matmul, CHUNK_BYTES, winograd=_call_split,
                      direct=(_parallel, THREADS if SPLIT else 1), dense_matmul=_matmul,
                      split=_split, dense_empty=RESULTS.empty)


MIN_PART_ELEMENTS = 1 << 17     # an elementwise range smaller than this is not worth a thread


def _ranges(n):
    """Disjoint (i0, i1) ranges covering 0..n-1, one per thread that pays."""
    parts = max(1, min(THREADS if SPLIT else 1, n // MIN_PART_ELEMENTS))
    step = -(-n // parts)
    return [(i, min(n, i + step)) for i in range(0, n, step)]


def sigmoid_forward(x):
    """1 / (1 + exp(-x)) on the memory as it lies: float32 by the vectorised loop of
    ``numba_elementwise.py``, float64 with NumPy's SIMD exp in one buffer (exp(-x)
    overflows to inf for very negative x, and 1 / inf = 0 is the right limit, so no
    warning is raised)."""
    if x.dtype not in FLOATS or x.size == 0 or not isinstance(x, np.ndarray):
        return KERNELS.sigmoid_forward(x)
    t, order = dense_view(np, x)
    out = np.empty(t.shape, dtype=x.dtype)
    if x.dtype == np.float32:
        flat, res = t.reshape(-1), out.reshape(-1)
        _parallel([lambda i0=i0, i1=i1: numba_elementwise.forward_float32(flat, res, i0, i1)
                   for i0, i1 in _ranges(flat.size)])
    else:
        with np.errstate(over="ignore", under="ignore"):
            np.negative(t, out=out)
            np.exp(out, out=out)
            out += 1
            np.reciprocal(out, out=out)
    return _undo(out, order)


def sigmoid_backward(gy, y):
    """gy * y * (1 - y), in y's memory order, cut into ranges for threads."""
    if not KERNELS._fast(gy, y) or gy.shape != y.shape or y.size == 0:
        return KERNELS.sigmoid_backward(gy, y)
    ty, order = dense_view(np, y)
    tg, _ = dense_view(np, gy, order)
    out = np.empty(ty.shape, dtype=y.dtype)
    g, yy, res = tg.reshape(-1), ty.reshape(-1), out.reshape(-1)
    one = y.dtype.type(1)
    _parallel([lambda i0=i0, i1=i1: numba_elementwise.backward(g, yy, res, one, i0, i1)
               for i0, i1 in _ranges(res.size)])
    return _undo(out, order)


def sgd_update(param, grad, lr):
    """In place: ``param -= lr * grad``, one pass, cut into ranges for threads."""
    if not KERNELS._fast(param, grad) or param.shape != grad.shape \
            or not param.flags.c_contiguous or param.size == 0:
        return KERNELS.sgd_update(param, grad, lr)
    g = np.ascontiguousarray(grad).reshape(-1)
    p, rate = param.reshape(-1), param.dtype.type(lr)
    _parallel([lambda i0=i0, i1=i1: numba_elementwise.sgd_update(p, g, rate, i0, i1)
               for i0, i1 in _ranges(p.size)])
    return param


TABLE = KERNELS.table()
TABLE["sigmoid_forward"] = sigmoid_forward
TABLE["sigmoid_backward"] = sigmoid_backward
TABLE["sgd_update"] = sgd_update
