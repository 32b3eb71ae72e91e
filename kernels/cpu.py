"""The fast CPU kernel set: the Numba loops of ``numba_kernels.py`` behind the checked
wrappers of ``fastset.py``, with GEMMs in NumPy's BLAS.

The convolution's im2col workspace holds ``CHUNK_BYTES`` of columns at a time: a few
images, enough for BLAS to run near its peak, small enough to stay in the 32 MB L3
cache between im2col writing it and the GEMM reading it. 3x3 stride-1 layers take
the Winograd path (``winograd.py``).

Threads: the GEMMs use all of BLAS's threads; the Numba loops run on
``TINYALEX_CPU_THREADS`` threads (default 1). Two thread pools (OpenBLAS's and
Numba's OpenMP pool) that alternate hundreds of times per step on a 2-core machine
keep spinning against each other: measured on the 2-core benchmark machine, AlexNet
at batch 32 ran at 16 images/s with both pools on 2 threads and at 48 with the Numba
loops on one thread (benchmarks/README.md). Raise it on machines with many cores.
"""

from __future__ import annotations

import os

import numba
import numpy as np

from . import numba_kernels
from .fastset import FastKernels

CHUNK_BYTES = 8 << 20


def _threads_from_env() -> int:
    value = os.environ.get("TINYALEX_CPU_THREADS", "1").strip() or "1"
    if not value.isdigit() or int(value) < 1:
        raise ValueError(f"TINYALEX_CPU_THREADS={value!r}: expected a positive number of "
                         "threads for the Numba loops")
    return min(int(value), numba.config.NUMBA_NUM_THREADS)


THREADS = _threads_from_env()


def _call(loop, total, *args):
    previous = numba.get_num_threads()
    if previous == THREADS:
        loop(*args)
        return
    numba.set_num_threads(THREADS)
    try:
        loop(*args)
    finally:
        numba.set_num_threads(previous)


def _matmul(a, b, out):
    np.matmul(a, b, out=out)


KERNELS = FastKernels(np, numba_kernels, _call, _matmul, CHUNK_BYTES, winograd=True)
TABLE = KERNELS.table()
