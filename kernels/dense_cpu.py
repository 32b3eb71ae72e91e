"""The fully connected layers' GEMM on the CPU: ``a @ b`` into a fresh array, cut into
GEMMs for threads (``cpu_threads.gemm``); results too large for malloc's heap are
recycled once freed (``recycle.py``). ``tinyalex/ops/dense.py`` chooses it.
"""

from __future__ import annotations

from . import cpu_threads
from .cpu_process import MMAP_THRESHOLD
from .recycle import Recycler


RESULTS = Recycler(min_bytes=MMAP_THRESHOLD, max_free_bytes=512 << 20)


class MatmulCPU:
    name = "GEMM in pieces"

    def __call__(self, a, b):
        """a (M, K) @ b (K, N) (any memory order): a fresh (M, N) array."""
        if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[0] or a.dtype != b.dtype:
            raise ValueError(f"matmul: expected (M, K) @ (K, N) of one dtype, got "
                             f"{a.shape} ({a.dtype}) @ {b.shape} ({b.dtype})")
        out = RESULTS.empty((a.shape[0], b.shape[1]), dtype=a.dtype)   # (M, N)
        cpu_threads.gemm(a, b, out)                                     # (M, K) @ (K, N)
        return out


MATMUL = MatmulCPU()
