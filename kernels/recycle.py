"""Large results of the CPU's fully connected GEMM (``dense_cpu.MATMUL``),
recycled from step to step once nothing refers to them any more.

Blocks above glibc's largest heap threshold (32 MB, ``cpu_process.py``) are mapped
from the kernel when allocated and unmapped when freed, so each step would page them
in afresh: AlexNet's weight gradient of its first fully connected layer is 105 MB, a
new array every step, and on a virtual machine that first touch is slow and erratic
(benchmarks/README.md has the figures). Reusing the memory removes it.

``Recycler.empty(shape, dtype)`` returns a view of a pooled array whose last user has
let go of it (the pool's own reference is the only one left: a NumPy view holds a
reference to the array it views, so no view of an earlier result can still be alive),
or of a new array added to the pool. The contract of ``kernels/__init__.py`` holds: a
result never shares memory with anything a caller still holds. Arrays below
``min_bytes`` come from NumPy as usual (the heap keeps those).

Memory: a pooled array that is free stays allocated. The fully connected layers'
weight gradients are asked for at the very start of the backward pass, while every
activation of the step is alive (the step's high point), so keeping them through the
forward pass does not raise the peak. Other large results are not recycled: the
first layers' activation gradients are freed late in the backward pass and would
sit idle through the next forward pass, raising the peak. The pool drops free arrays
beyond ``max_free_bytes`` (oldest first).
"""

from __future__ import annotations

import sys
import threading

import numpy as np


def _references(pool, i) -> int:
    """How many references pool[i] has, seen from here: the pool's list and
    getrefcount's argument when nobody else holds it."""
    return sys.getrefcount(pool[i])


IDLE = _references([np.empty(1)], 0)   # measured, not assumed: it depends on the Python


class Recycler:
    def __init__(self, min_bytes: int, max_free_bytes: int):
        self.min_bytes, self.max_free_bytes = min_bytes, max_free_bytes
        self.pool: list = []              # owned arrays, most recently used last
        self.lock = threading.Lock()

    def empty(self, shape, dtype):
        """An uninitialised array of ``shape`` and ``dtype`` that nothing else refers to."""
        dtype = np.dtype(dtype)
        size = 1
        for s in shape:
            size *= int(s)
        nbytes = size * dtype.itemsize
        if nbytes < self.min_bytes:
            return np.empty(shape, dtype=dtype)
        with self.lock:
            found = self._take(nbytes, dtype)
            if found is None:
                found = np.empty(size, dtype=dtype)
                self._trim()
            self.pool.append(found)
            return found.reshape(shape)    # a view: the pool sees it as in use until freed

    def _free(self):
        """Indices of the pooled arrays nobody else holds, oldest first."""
        return [i for i in range(len(self.pool)) if _references(self.pool, i) == IDLE]

    def _take(self, nbytes, dtype):
        for i in self._free():
            if self.pool[i].nbytes == nbytes and self.pool[i].dtype == dtype:
                return self.pool.pop(i)
        return None

    def _trim(self):
        """Drop free arrays, oldest first, while more than ``max_free_bytes`` lie free."""
        free = self._free()
        excess = sum(self.pool[i].nbytes for i in free) - self.max_free_bytes
        drop = set()
        for i in free:
            if excess <= 0:
                break
            excess -= self.pool[i].nbytes
            drop.add(i)
        self.pool = [a for i, a in enumerate(self.pool) if i not in drop]

    def free_bytes(self) -> int:
        with self.lock:
            return sum(self.pool[i].nbytes for i in self._free())

    def clear(self):
        with self.lock:
            self.pool = []
