"""One process alone: the group of ``tinyalex.train`` when nothing is distributed.

Every collective is the identity, so the training loop is written once for any
number of processes; alone it runs as it always did (``fit`` keeps its single-
process path: no flat gradient buffer, no reductions, the same numbers).
"""

from __future__ import annotations

import socket

import numpy as np

from .shards import rows


class Solo:
    name = "none"
    size, rank, local_size, local_rank, machines = 1, 0, 1, 0, 1

    def __init__(self):
        self.host = socket.gethostname()

    def rows(self, n: int) -> slice:
        return rows(n, 0, 1)

    def sum_in_place(self, array) -> None:
        pass

    def sum_host(self, values) -> np.ndarray:
        return np.asarray(values, dtype=np.float64)

    def broadcast_in_place(self, array) -> None:
        pass

    def broadcast_object(self, obj):
        return obj

    def describe(self) -> str:
        return "1 process"


SOLO = Solo()
