"""Scratch buffers that grow to the largest size asked for and are reused.

The im2col and Winograd convolutions build their column or tile matrices a few images
at a time into these buffers, which every layer and every step reuses. A buffer is
only ever used inside one kernel call and never returned to a caller (the contract
in ``kernels/__init__.py``). Thread-local, so two threads training at once never
share one.
"""

from __future__ import annotations

import threading

import numpy as np


class Workspace(threading.local):
    def __init__(self):
        self.buffers = {}

    def get(self, xp, name, shape, dtype):
        size = 1
        for s in shape:
            size *= int(s)
        key = (name, np.dtype(dtype).str)
        buf = self.buffers.get(key)
        if buf is None or buf.size < size:
            self.buffers.pop(key, None)             # free the old one first
            buf = self.buffers[key] = xp.empty(size, dtype=dtype)
        return buf[:size].reshape(shape)

    def clear(self):
        self.buffers.clear()


WORKSPACE = Workspace()      # the CPU convolutions' (the GPU's holds device buffers)
