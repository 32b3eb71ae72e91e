"""The fully connected layers' GEMM on the CPU: ``a @ b`` into a fresh array, cut into
GEMMs for threads (``cpu_threads.gemm``); results too large for malloc's heap are
recycled once freed (``recycle.py``). ``tinyalex/ops/dense.py`` chooses it.

A layer's forward is ``x @ W.T``: a few rows (the batch) times the transpose of a
large weight. OpenBLAS streams the large operand faster as the left one, so that
product runs as ``(W @ x.T).T`` (``W`` read in its own row order, ``x.T`` the small
right operand) and the (OUT, N) result is copied back to (N, OUT) rows
(benchmarks/README.md has the figures); the other products run as written.
"""

from __future__ import annotations

import numpy as np

from . import cpu_threads
from .cpu_process import MMAP_THRESHOLD
from .recycle import Recycler


RESULTS = Recycler(min_bytes=MMAP_THRESHOLD, max_free_bytes=512 << 20)
LARGE = 1 << 20           # a weight of at least this many numbers is read as the left operand


class MatmulCPU:
    name = "GEMM in pieces"

    def __call__(self, a, b):
        """a (M, K) @ b (K, N) (any memory order): a fresh (M, N) array."""
        if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[0] or a.dtype != b.dtype:
            raise ValueError(f"matmul: expected (M, K) @ (K, N) of one dtype, got "
                             f"{a.shape} ({a.dtype}) @ {b.shape} ({b.dtype})")
        M, N = a.shape[0], b.shape[1]
        out = RESULTS.empty((M, N), dtype=a.dtype)                     # (M, N)
        if self.left_transposed(a, b):
            t = np.empty((N, M), dtype=a.dtype)                        # (N, M)
            cpu_threads.gemm(b.T, a.T, t)                              # (N, K) @ (K, M)
            np.copyto(out, t.T)
        else:
            cpu_threads.gemm(a, b, out)                                # (M, K) @ (K, N)
        return out

    @staticmethod
    def left_transposed(a, b) -> bool:
        """Run ``a @ b`` as ``(b.T @ a.T).T``: b is the transpose of a large row-major
        matrix (a weight seen as W.T, of at least ``LARGE`` numbers, whose streaming
        the order is about) and a has fewer rows than b has columns."""
        return a.shape[0] < b.shape[1] and b.size >= LARGE and b.T.flags.c_contiguous \
            and not b.flags.c_contiguous


MATMUL = MatmulCPU()
