"""The fast GPU kernel set (CuPy backend): the CUDA kernels of ``cuda_kernels.py``
launched on CuPy arrays behind the checked wrappers of ``fastset.py``, GEMMs in
cuBLAS through CuPy.

* One launch per operation (a grid-stride loop over the result), no Python loop over
  kernel offsets; the convolution takes the whole batch in one im2col and one GEMM
  (``CHUNK_BYTES`` of columns, 1 GiB) in a workspace reused across layers and steps,
  and CuPy's memory pool reuses every other buffer from step to step.
* TF32: convolution GEMMs run in TF32 on GPUs that have it (compute capability 8.0
  and up), as PyTorch runs cuDNN convolutions by default; other GEMMs (Linear) stay
  in FP32, as PyTorch's ``torch.backends.cuda.matmul.allow_tf32 = False`` default.
  Strict FP32 everywhere: ``TINYALEX_TF32=0`` in the environment, or
  ``kernels.set_tf32(False)`` / ``with kernels.tf32(False):`` at run time. The switch
  is applied per GEMM through CuPy's compute-type setting, so it does not depend on
  when CuPy was imported (CuPy's own ``CUPY_TF32`` is read once, and would apply to
  every float32 matmul).
* Arrays are handed to Numba without a stream synchronisation
  (``as_cuda_array(..., sync=False)``) and launched on CuPy's current stream, so the
  GPU work is queued without waiting.
"""

from __future__ import annotations

import math

from tinyalex import backend as B

from . import precision
from .fastset import FastKernels

CHUNK_BYTES = 1 << 30
THREADS = 256
MAX_BLOCKS = 16 * 1024          # grid-stride loops cover anything larger


class Launcher:
    """``launcher(loop, total, *args)``: launch ``loop`` over ``total`` elements.

    ``simulated=True`` runs Numba's CUDA simulator on NumPy arrays (the CI tests);
    small grids there keep it fast and exercise the grid-stride loops.
    """

    def __init__(self, simulated=False, threads=THREADS, max_blocks=MAX_BLOCKS):
        from numba import cuda  # noqa: PLC0415 - only when a GPU set is built
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


def conv_matmul(xp):
    """The convolution GEMM ``out = a @ b``, in TF32 where enabled and available."""
    def matmul(a, b, out):
        with precision.conv_compute_type(xp, a.dtype):
            xp.matmul(a, b, out=out)
    return matmul


def build(xp, simulated=False, **launch_options) -> FastKernels:
    from . import cuda_kernels  # noqa: PLC0415 - imports numba.cuda
    return FastKernels(xp, cuda_kernels, Launcher(simulated, **launch_options),
                       conv_matmul(xp), CHUNK_BYTES)


def table() -> dict:
    """The GPU kernel set on CuPy arrays (CuPy and a GPU must be usable)."""
    return build(B.cupy_module()).table()
