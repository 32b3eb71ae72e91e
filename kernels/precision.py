"""TF32 for the convolution GEMMs on the GPU, and the flag for strict FP32.

TF32 keeps float32's range but rounds GEMM inputs to a 10-bit mantissa inside the
tensor cores (about 8x the FP32 throughput on an H100/H200). PyTorch uses it by
default for cuDNN convolutions and not for other matrix products; tinyalex does the
same: convolution GEMMs in TF32, Linear layers in FP32.

    TINYALEX_TF32=0 python3 ...        # strict FP32 for every GEMM (read at import)
    kernels.set_tf32(False)            # the same at run time
    with kernels.tf32(False): ...      # for a block

The GPU algorithms read the flag at each convolution GEMM (``tf32_enabled()``) and ask
their GEMM for TF32 or not (``gemm_gpu.py``): cuBLAS called directly takes the compute
type per call; ``cupy.matmul`` takes it from CuPy's per-dtype compute type
(``cupy._core._routines_linalg.set_compute_type``), set around the call by
``gemm_compute_type`` below. Where that CuPy setting is missing, CuPy decides alone
(its ``CUPY_TF32`` environment variable, read once, for every float32 GEMM): when that
is not what was asked for, one clear warning says so and how to get it, instead of a
silent FP32. (A captured CUDA graph keeps the setting it was captured with.) On the
CPU, in float64, and on GPUs older than compute capability 8.0, nothing changes.
"""

from __future__ import annotations

import contextlib
import os
import warnings

import numpy as np

from tinyalex import backend as B

_TRUE, _FALSE = ("1", "true", "yes", "on", ""), ("0", "false", "no", "off")
LOOKUP = object()      # gemm_compute_type's default: find CuPy's compute-type module


def _from_env() -> bool:
    value = os.environ.get("TINYALEX_TF32", "1").strip().lower()
    if value not in _TRUE + _FALSE:
        raise ValueError(f"TINYALEX_TF32={value!r}: expected 1 (TF32 convolutions, the "
                         "default) or 0 (strict FP32)")
    return value not in _FALSE


_tf32 = _from_env()
_warned = set()
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


def tf32_available(xp) -> bool:
    """True on a GPU of compute capability 8.0 or newer (cached per device)."""
    dev = xp.cuda.Device()
    if dev.id not in _capable:
        _capable[dev.id] = int(dev.compute_capability) >= 80
    return _capable[dev.id]


def compute_type_api():
    """CuPy's per-dtype compute type (``cupy._core._routines_linalg``), or None when this
    CuPy has none."""
    try:
        api = B.cupy_submodule("_core._routines_linalg")
        for name in ("COMPUTE_TYPE_TF32", "COMPUTE_TYPE_DEFAULT", "get_compute_type",
                     "set_compute_type"):
            getattr(api, name)
        return api
    except (ImportError, AttributeError):
        return None


def _warn_once(key, message):
    if key not in _warned:
        _warned.add(key)
        warnings.warn(message, RuntimeWarning, stacklevel=4)


def _without_api(xp, want_tf32: bool, environ) -> None:
    """What happens when CuPy has no per-call compute type: its CUPY_TF32 decides for
    every float32 GEMM; warn once when that is not what was asked for."""
    cupy_tf32 = environ.get("CUPY_TF32", "0").strip() not in ("", "0")
    if want_tf32 == cupy_tf32:
        return
    version = getattr(xp, "__version__", "?")
    if want_tf32:
        _warn_once("tf32", f"tinyalex: TF32 was asked for the convolution GEMMs "
                   f"(TINYALEX_TF32=1, the default), but CuPy {version} has no per-call "
                   "compute type (cupy._core._routines_linalg.set_compute_type) and "
                   "CUPY_TF32 is not set, so these GEMMs run in strict FP32. Set "
                   "CUPY_TF32=1 before starting Python for TF32 in every float32 GEMM "
                   "(Linear layers too), or TINYALEX_TF32=0 to ask for strict FP32.")
    else:
        _warn_once("fp32", f"tinyalex: strict FP32 was asked for (TINYALEX_TF32=0 or a "
                   f"Linear layer's GEMM), but CUPY_TF32=1 is set and CuPy {version} has no "
                   "per-call compute type, so every float32 GEMM runs in TF32. Unset "
                   "CUPY_TF32 for strict FP32.")


@contextlib.contextmanager
def gemm_compute_type(xp, dtype, tf32: bool, api=LOOKUP, environ=None):
    """Run the ``cupy.matmul`` calls inside in TF32 (``tf32`` and a GPU that has it) or
    in strict FP32, restoring CuPy's setting after. ``api``: CuPy's compute-type module
    (looked up by default; None: this CuPy has none), ``environ``: os.environ by
    default (the tests give stand-ins for both)."""
    if xp is np or np.dtype(dtype) != np.float32:
        yield
        return
    want = bool(tf32) and tf32_available(xp)
    api = compute_type_api() if api is LOOKUP else api
    if api is None:
        _without_api(xp, want, os.environ if environ is None else environ)
        yield
        return
    previous = api.get_compute_type(dtype)
    api.set_compute_type(dtype, api.COMPUTE_TYPE_TF32 if want else api.COMPUTE_TYPE_DEFAULT)
    try:
        yield
    finally:
        api.set_compute_type(dtype, previous)
