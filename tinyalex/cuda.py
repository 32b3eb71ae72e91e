"""``tinyalex.cuda``: PyTorch's two questions about GPUs, answered for the CuPy backend.

    tinyalex.cuda.is_available()     # True when CuPy imports and sees a CUDA GPU
    tinyalex.cuda.device_count()     # how many it sees (0 without CuPy or a GPU)

Asking never fails: a machine without CuPy, a driver or a GPU answers False / 0
(``tinyalex.backend.cupy_unavailable_reason()`` says which was missing).
"""

from __future__ import annotations

from . import backend as B
from .devices import cuda_device_count


def is_available() -> bool:
    """True when tinyalex can compute on a CUDA GPU (its "cupy" backend)."""
    return B.cupy_available()


def device_count() -> int:
    """The number of CUDA GPUs CuPy sees; tinyalex computes on the first (cuda:0)."""
    return cuda_device_count()


__all__ = ["device_count", "is_available"]
