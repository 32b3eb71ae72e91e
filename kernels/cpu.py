"""The fast CPU kernel set: the Numba loops of ``numba_kernels.py`` behind the checked
wrappers of ``fastset.py``, with GEMMs in NumPy's BLAS.

The convolution's im2col workspace holds ``CHUNK_BYTES`` of columns at a time: a few
images, enough for BLAS to run near its peak, small enough to stay in the 32 MB L3
cache between im2col writing it and the GEMM reading it.
"""

from __future__ import annotations

import numpy as np

from . import numba_kernels
from .fastset import FastKernels

CHUNK_BYTES = 8 << 20


def _call(loop, total, *args):
    loop(*args)


def _matmul(a, b, out):
    np.matmul(a, b, out=out)


KERNELS = FastKernels(np, numba_kernels, _call, _matmul, CHUNK_BYTES, winograd=True)
TABLE = KERNELS.table()
