"""TF32 for the convolution GEMMs on the GPU, and the flag for strict FP32.

TF32 keeps float32's range but rounds GEMM inputs to a 10-bit mantissa inside the
tensor cores (about 8x the FP32 throughput on an H100/H200). PyTorch uses it by
default for cuDNN convolutions and not for other matrix products; tinyalex does the
same: convolution GEMMs in TF32, Linear layers in FP32.

    TINYALEX_TF32=0 python3 ...        # strict FP32 for every GEMM (read at import)
    kernels.set_tf32(False)            # the same at run time
    with kernels.tf32(False): ...      # for a block

The setting is applied around each convolution GEMM through CuPy's per-dtype compute
type (``cupy._core._routines_linalg.set_compute_type``), so it takes effect whenever
it is changed. On the CPU, and on GPUs older than compute capability 8.0, it changes
nothing.
"""

from __future__ import annotations

import contextlib
import os
import warnings

import numpy as np

from tinyalex import backend as B


def _from_env() -> bool:
    value = os.environ.get("TINYALEX_TF32", "1").strip().lower()
    if value not in ("1", "0", "true", "false", "yes", "no", "on", "off", ""):
        raise ValueError(f"TINYALEX_TF32={value!r}: expected 1 (TF32 convolutions, the "
                         "default) or 0 (strict FP32)")
    return value not in ("0", "false", "no", "off")


_tf32 = _from_env()
_warned = False
_capable = {}


def tf32_enabled() -> bool:
    return _tf32


def set_tf32(enabled: bool) -> None:
    """TF32 for convolution GEMMs on the GPU (True, the default) or strict FP32."""
    global _tf32
    _tf32 = bool(enabled)


@contextlib.contextmanager
def tf32(enabled: bool):
    previous = _tf32
    set_tf32(enabled)
    try:
        yield
    finally:
        set_tf32(previous)


def _has_tf32(xp) -> bool:
    dev = xp.cuda.Device()
    if dev.id not in _capable:
        _capable[dev.id] = int(dev.compute_capability) >= 80
    return _capable[dev.id]


@contextlib.contextmanager
def conv_compute_type(xp, dtype):
    """Run the GEMMs inside with TF32 (when enabled and available) or strict FP32."""
    global _warned
    if xp is np or np.dtype(dtype) != np.float32:
        yield
        return
    try:
        linalg = B.cupy_submodule("_core._routines_linalg")
        tf32_type, fp32_type = linalg.COMPUTE_TYPE_TF32, linalg.COMPUTE_TYPE_DEFAULT
        previous = linalg.get_compute_type(dtype)
    except (ImportError, AttributeError):
        if not _warned:
            warnings.warn("this CuPy has no per-call compute type; its own CUPY_TF32 "
                          "setting decides TF32 for every float32 GEMM", RuntimeWarning)
            _warned = True
        yield
        return
    wanted = tf32_type if (_tf32 and _has_tf32(xp)) else fp32_type
    linalg.set_compute_type(dtype, wanted)
    try:
        yield
    finally:
        linalg.set_compute_type(dtype, previous)
