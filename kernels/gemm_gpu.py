"""The GPU algorithms' matrix products: ``gemm(a, b, out, tf32=False, accumulate=False)``
writes ``out (M, N) = a (M, K) @ b (K, N)`` (``out += a @ b`` with ``accumulate``),
each operand C-ordered or a transposed view (any leading dimension), ``out`` a
C-ordered block of rows. Three implementations, one interface:

* ``CublasGemm``: cuBLAS's ``cublasGemmEx`` called directly (ctypes) on a cuBLAS
  handle of its own, with a workspace of its own (``cublasSetWorkspace``, set again
  after every ``cublasSetStream``, which resets it) and CuPy's current stream. TF32
  per call through the compute type (``CUBLAS_COMPUTE_32F_FAST_TF32``, else
  ``CUBLAS_COMPUTE_32F``: strict FP32).
  ``capturable``: CuPy refuses every cuBLAS call of its own while a stream captures a
  CUDA graph (``cublas.setStream`` raises NotImplementedError), so a training step
  whose GEMMs go through ``cupy.matmul`` cannot be captured; cuBLAS itself supports
  capture once a workspace is set and the pointer mode is host (alpha and beta are
  then recorded by value). Eager and captured steps run the same calls.
* ``CupyGemm``: ``cupy.matmul`` with the compute type of ``precision.py`` (the fallback
  where cuBLAS cannot be loaded directly; not capturable).
* ``NumpyGemm``: ``numpy.matmul``, for the CPU emulation of the GPU algorithms.

``for_cupy()`` builds ``CublasGemm`` and falls back to ``CupyGemm`` with a warning
saying why. ``gemm_call`` (pure arithmetic, tested on the CPU) maps the row-major
product onto cuBLAS's column-major one.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import warnings
from dataclasses import dataclass

import numpy as np

from tinyalex import backend as B

from . import precision

# cublas_api.h / library_types.h
OP_N, OP_T = 0, 1
CUDA_R_32F, CUDA_R_64F = 0, 1
COMPUTE_32F, COMPUTE_32F_FAST_TF32, COMPUTE_64F = 68, 77, 70
GEMM_DEFAULT = -1
WORKSPACE_BYTES = 32 << 20          # cuBLAS's recommended workspace on Hopper


def _check(a, b, out):
    if a.ndim != 2 or b.ndim != 2 or out.ndim != 2 or a.shape[1] != b.shape[0] \
            or out.shape != (a.shape[0], b.shape[1]) \
            or not (a.dtype == b.dtype == out.dtype):
        raise ValueError(f"gemm: expected a (M, K) @ b (K, N) -> out (M, N) of one dtype, "
                         f"got {a.shape} ({a.dtype}) @ {b.shape} ({b.dtype}) -> "
                         f"{out.shape} ({out.dtype})")


# -- row-major product as cuBLAS's column-major one ---------------------------------------

@dataclass(frozen=True)
class Operand:
    """A 2-D array (R, C) as cuBLAS sees its memory: ``rows_major`` when rows are
    contiguous runs (C order, leading dimension ``ld`` elements between rows), else
    columns are (a transposed view of a C-ordered array, ``ld`` between columns)."""
    rows_major: bool
    ld: int


def operand(shape, strides, itemsize) -> Operand:
    """How a (R, C) array with these byte strides lies, or ValueError when neither its
    rows nor its columns are contiguous runs."""
    R, C = shape
    sr, sc = strides
    if (sc == itemsize or C == 1) and sr % itemsize == 0 and sr // itemsize >= C:
        return Operand(True, max(1, sr // itemsize))
    if (sr == itemsize or R == 1) and sc % itemsize == 0 and sc // itemsize >= R:
        return Operand(False, max(1, sc // itemsize))
    if R == 1 and sc == itemsize:
        return Operand(True, max(1, C))
    if C == 1 and sr == itemsize:
        return Operand(False, max(1, R))
    raise ValueError(f"gemm: an operand of shape {tuple(shape)} with strides "
                     f"{tuple(strides)} has neither contiguous rows nor contiguous columns")


@dataclass(frozen=True)
class GemmCall:
    """The arguments of one ``cublasGemmEx`` for ``out = a @ b``, row-major: cuBLAS
    computes out^T (N, M) = b^T (N, K) @ a^T (K, M) in column-major terms, so its "A" is
    ``b`` and its "B" is ``a``."""
    transa: int
    transb: int
    m: int
    n: int
    k: int
    lda: int
    ldb: int
    ldc: int


def gemm_call(a_shape, a_strides, b_shape, b_strides, out_shape, out_strides,
              itemsize) -> GemmCall:
    M, K = a_shape
    N = b_shape[1]
    oa = operand(a_shape, a_strides, itemsize)
    ob = operand(b_shape, b_strides, itemsize)
    oc = operand(out_shape, out_strides, itemsize)
    if not oc.rows_major:
        raise ValueError(f"gemm: out must have contiguous rows, got strides {out_strides}")
    # b row-major (K, N), ld: column-major (N x K) with that ld -> b^T as it lies (N)
    # b column-major: column-major (K x N) -> transposed (T)
    transa, lda = (OP_N, max(ob.ld, N)) if ob.rows_major else (OP_T, max(ob.ld, K))
    transb, ldb = (OP_N, max(oa.ld, K)) if oa.rows_major else (OP_T, max(oa.ld, M))
    return GemmCall(transa, transb, N, M, K, lda, ldb, max(oc.ld, N))


# -- the three implementations ----------------------------------------------------------

class NumpyGemm:
    """The CPU emulation's GEMM: NumPy's (no TF32 on a CPU)."""

    name = "numpy.matmul (emulation)"
    capturable = False

    def __call__(self, a, b, out, tf32=False, accumulate=False):
        _check(a, b, out)
        if accumulate:
            out += a @ b                                   # (M, N) += (M, K) @ (K, N)
        else:
            np.matmul(a, b, out=out)                       # (M, N) = (M, K) @ (K, N)
        return out


class CupyGemm:
    """``cupy.matmul`` under ``precision.gemm_compute_type`` (TF32 or strict FP32)."""

    name = "cuBLAS through cupy.matmul"
    capturable = False

    def __init__(self, cupy):
        self.xp = cupy

    def __call__(self, a, b, out, tf32=False, accumulate=False):
        _check(a, b, out)
        with precision.gemm_compute_type(self.xp, a.dtype, tf32):
            if accumulate:
                out += self.xp.matmul(a, b)                # (M, N) += (M, K) @ (K, N)
            else:
                self.xp.matmul(a, b, out=out)              # (M, N) = (M, K) @ (K, N)
        return out


def _loaded_library_path(fragment: str) -> str | None:
    """The path of a shared library already mapped into this process (Linux)."""
    try:
        with open("/proc/self/maps") as maps:
            for line in maps:
                path = line.split()[-1] if line.strip() else ""
                if fragment in path.rsplit("/", 1)[-1]:
                    return path
    except OSError:
        pass
    return None


def load_cublas(cupy) -> ctypes.CDLL:
    """The cuBLAS library CuPy uses (found in this process once CuPy has made its
    handle), else one the loader finds, the major version CuPy was built for first;
    OSError if there is none (ImportError where CuPy cannot load cuBLAS itself)."""
    cupy.cuda.device.get_cublas_handle()            # CuPy loads its cuBLAS here
    path = _loaded_library_path("libcublas.so")
    major = B.cupy_cuda_major(cupy)
    versions = sorted((13, 12, 11), key=lambda v: v != major)     # CuPy's own first
    candidates = [path] if path else []
    candidates += [ctypes.util.find_library("cublas"),
                   *(f"libcublas.so.{v}" for v in versions), "libcublas.so"]
    errors = []
    for name in candidates:
        if not name:
            continue
        try:
            return ctypes.CDLL(name)
        except OSError as exc:
            errors.append(f"{name}: {exc}")
    raise OSError("no cuBLAS library could be loaded (" + "; ".join(errors) + ")")


class CublasGemm:
    """``cublasGemmEx`` on a handle and workspace of its own (see the module docstring)."""

    name = "cuBLAS (cublasGemmEx, capturable)"
    capturable = True

    def __init__(self, cupy, lib=None):
        self.xp = cupy
        self.lib = lib if lib is not None else load_cublas(cupy)
        c = ctypes
        L = self.lib
        L.cublasCreate_v2.argtypes = [c.POINTER(c.c_void_p)]
        L.cublasSetStream_v2.argtypes = [c.c_void_p, c.c_void_p]
        L.cublasSetWorkspace_v2.argtypes = [c.c_void_p, c.c_void_p, c.c_size_t]
        L.cublasGemmEx.argtypes = [c.c_void_p, c.c_int, c.c_int, c.c_int, c.c_int, c.c_int,
                                   c.c_void_p, c.c_void_p, c.c_int, c.c_int,
                                   c.c_void_p, c.c_int, c.c_int, c.c_void_p,
                                   c.c_void_p, c.c_int, c.c_int, c.c_int, c.c_int]
        for f in (L.cublasCreate_v2, L.cublasSetStream_v2, L.cublasSetWorkspace_v2,
                  L.cublasGemmEx):
            f.restype = c.c_int
        handle = c.c_void_p()
        self._status("cublasCreate_v2", L.cublasCreate_v2(c.byref(handle)))
        self.handle = handle
        self.workspace = cupy.empty(WORKSPACE_BYTES, dtype=np.uint8)   # lives with the handle
        self._stream = None         # set (with the workspace) before the first GEMM
        self._scalars = {np.dtype(np.float32): (c.c_float(1.0), c.c_float(0.0)),
                         np.dtype(np.float64): (c.c_double(1.0), c.c_double(0.0))}

    def _set_stream(self, stream) -> None:
        """cuBLAS's stream, then the workspace again: cublasSetStream resets the
        workspace to cuBLAS's default pool (cuBLAS's documentation), which a captured
        graph must not use, so every set-stream is followed by cublasSetWorkspace."""
        c = ctypes
        self._status("cublasSetStream_v2",
                     self.lib.cublasSetStream_v2(self.handle, c.c_void_p(stream)))
        self._status("cublasSetWorkspace_v2", self.lib.cublasSetWorkspace_v2(
            self.handle, c.c_void_p(B.data_pointer(self.workspace)), WORKSPACE_BYTES))
        self._stream = stream

    @staticmethod
    def _status(what, status):
        if status != 0:
            raise RuntimeError(f"{what} failed with cuBLAS status {status}")

    def __call__(self, a, b, out, tf32=False, accumulate=False):
        _check(a, b, out)
        dtype = np.dtype(a.dtype)
        if dtype == np.float32:
            data = CUDA_R_32F
            compute = COMPUTE_32F_FAST_TF32 if tf32 and precision.tf32_available(self.xp) \
                else COMPUTE_32F
        elif dtype == np.float64:
            data, compute = CUDA_R_64F, COMPUTE_64F
        else:
            raise ValueError(f"gemm: cuBLAS takes float32 or float64 here, got {dtype}")
        M, N = out.shape
        if M == 0 or N == 0:
            return out
        call = gemm_call(a.shape, a.strides, b.shape, b.strides, out.shape, out.strides,
                         dtype.itemsize)
        stream = self.xp.cuda.get_current_stream().ptr
        if stream != self._stream:
            self._set_stream(stream)
        one, zero = self._scalars[dtype]
        beta = one if accumulate else zero
        self._status("cublasGemmEx", self.lib.cublasGemmEx(
            self.handle, call.transa, call.transb, call.m, call.n, call.k,
            ctypes.byref(one), ctypes.c_void_p(B.data_pointer(b)), data, call.lda,
            ctypes.c_void_p(B.data_pointer(a)), data, call.ldb, ctypes.byref(beta),
            ctypes.c_void_p(B.data_pointer(out)), data, call.ldc, compute, GEMM_DEFAULT))
        return out


_cupy_gemm = None


def for_cupy():
    """The cupy backend's GEMM, built once: ``CublasGemm``, or ``CupyGemm`` (with a
    warning naming the reason) where cuBLAS cannot be called directly."""
    global _cupy_gemm
    if _cupy_gemm is None:
        cp = B.cupy_module()
        try:
            _cupy_gemm = CublasGemm(cp)
        except (ImportError, OSError, AttributeError, RuntimeError) as exc:
            warnings.warn(f"tinyalex: cuBLAS cannot be called directly here ({exc}); the GPU "
                          "GEMMs go through cupy.matmul, and training steps cannot be "
                          "captured as CUDA graphs", RuntimeWarning, stacklevel=2)
            _cupy_gemm = CupyGemm(cp)
    return _cupy_gemm
