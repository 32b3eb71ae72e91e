"""Which rows of a batch, and which examples of a data set, each process takes.

    rows(10, rank=0, size=4)  ->  slice(0, 3)       # 3, 3, 2, 2 rows for ranks 0..3
    rows(1, rank=1, size=2)   ->  slice(1, 1)       # empty: rank 1 has no row

One rule for both, contiguous blocks in rank order: ``n = q * size + r`` gives the
first ``r`` processes ``q + 1`` rows and the others ``q``. Every process computes
the same blocks from (n, size) alone, so no list of indices travels; the blocks
cover 0..n-1 once each; rank 0 always has a row when n > 0 (it holds the reference
random state, ``tinyalex/train/epoch.py``).
"""

from __future__ import annotations

from ..checks import check_int


def rows(n: int, rank: int, size: int) -> slice:
    """The block of ``range(n)`` that process ``rank`` of ``size`` takes."""
    size = check_int(size, "size", "rows", 1)
    rank = check_int(rank, "rank", "rows", 0, size - 1)
    n = check_int(n, "n", "rows", 0)
    q, r = divmod(n, size)
    start = rank * q + min(rank, r)
    return slice(start, start + q + (1 if rank < r else 0))
