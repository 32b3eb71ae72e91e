"""Launching the numba.cuda kernels of ``cuda_kernels.py`` on CuPy arrays.

``Launcher()(kernel, total, *args)`` launches ``kernel`` with a grid covering
``total`` elements (every kernel is a grid-stride loop over its result, so any grid
gives the same output) on CuPy's current stream, handing the arrays to Numba without
a stream synchronisation (``as_cuda_array(..., sync=False)``), so the GPU work is
queued without waiting. ``Launcher(simulated=True)`` runs Numba's CUDA simulator on
NumPy arrays instead (the CI tests); small grids there exercise the grid-stride loops.

``for_cupy()`` is the one launcher of the cupy backend, built on first use.
"""

from __future__ import annotations

import math

from tinyalex import backend as B

THREADS = 256
MAX_BLOCKS = 16 * 1024          # grid-stride loops cover anything larger


class Launcher:
    def __init__(self, simulated=False, threads=THREADS, max_blocks=MAX_BLOCKS):
        from numba import cuda  # noqa: PLC0415 - only when a GPU launcher is built
        self.cuda, self.simulated = cuda, simulated
        self.threads, self.max_blocks = threads, max_blocks
        self._streams = {}

    def _device(self, a):
        if self.simulated or not hasattr(a, "__cuda_array_interface__"):
            return a                    # scalars, and NumPy arrays in the simulator
        try:
            return self.cuda.as_cuda_array(a, sync=False)
        except TypeError:               # an older numba without ``sync``
            return self.cuda.as_cuda_array(a)

    def _stream(self):
        if self.simulated:
            return 0
        ptr = B.cupy_module().cuda.get_current_stream().ptr
        if ptr == 0:
            return 0                    # the legacy default stream, shared with CuPy
        if ptr not in self._streams:
            self._streams[ptr] = self.cuda.external_stream(ptr)
        return self._streams[ptr]

    def __call__(self, loop, total, *args):
        blocks = max(1, min(self.max_blocks, math.ceil(total / self.threads)))
        loop[blocks, self.threads, self._stream()](*(self._device(a) for a in args))


_launcher = None


def for_cupy() -> Launcher:
    global _launcher
    if _launcher is None:
        _launcher = Launcher()
    return _launcher
