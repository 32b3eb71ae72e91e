"""The GPU algorithms on NumPy arrays (test helpers, not a test module).

``Algorithms(emulated)``: every GPU algorithm class of ``kernels/`` built with the CPU
emulation's module provider (the CUDA C sources compiled by g++) and NumPy's GEMM,
grids of ``BLOCKS`` blocks at most so that every grid-stride loop wraps.

``install(monkeypatch, algorithms)``: the ops and nn then see NumPy arrays as the cupy
backend's, and the choosers hand out these algorithms: whole training steps run the
GPU path's Python (fusions, dropout's device state, the loss's device statistics, the
flat SGD kernel) on the CPU. ``algorithms.modules.launches`` counts the kernels,
``algorithms.calls`` the GEMMs (their operand shapes).

As strict as CuPy while a stream captures a CUDA graph (``CAPTURE.recording()``, which
the graph stand-in of ``tests/gpu/test_cuda_graph.py`` enters around the captured body):
real capture fails on a synchronous copy between host and device and on CuPy's own
cuBLAS calls, so here these raise ``CaptureError``:

* host to device: ``xp.asarray``/``xp.array`` of the GPU algorithms' array module
  (``EmulatedCupy``; the emulation cannot tell a host array from a device one, so
  every such call counts as an upload: the GPU kernels' code calls them only on host
  data), ``backend.to_backend``;
* device to host: ``backend.to_numpy`` (``.numpy()``, the loss's one read back),
  ``Tensor.item()``/``float()``/``int()``/``bool()`` of a tensor, ``xp.asnumpy``;
* CuPy-level cuBLAS: ``xp.matmul``/``dot``/``tensordot``/``einsum``/``inner`` (the GPU
  path's GEMMs go through the capturable ``gemm`` object instead).
"""

import contextlib

import numpy as np

from tinyalex import backend as B
from tinyalex.tensor import Tensor
from tinyalex.kernels import conv_im2col_gpu, cuda_emulation, elementwise_gpu as ew, gemm_gpu, \
    pool_gpu

BLOCKS = 2                       # grids of 2 blocks: every grid-stride loop wraps


class CaptureError(RuntimeError):
    """What real stream capture raises (cudaErrorStreamCaptureUnsupported, CuPy's
    NotImplementedError for its cuBLAS calls), raised by the stand-ins."""


class Capture:
    """Whether the (stand-in) stream is capturing a graph now."""

    def __init__(self):
        self.active = False

    @contextlib.contextmanager
    def recording(self):
        self.active, before = True, self.active
        try:
            yield
        finally:
            self.active = before

    def refuse(self, what: str) -> None:
        if self.active:
            raise CaptureError(f"{what} while a stream captures a CUDA graph: real "
                               "capture fails here (only kernels, cuBLAS on its own "
                               "handle and device-to-device copies can be recorded)")


CAPTURE = Capture()


class EmulatedCupy:
    """NumPy as the GPU algorithms' ``xp``, refusing in capture what CuPy refuses."""

    def __getattr__(self, name):
        return getattr(np, name)

    def asarray(self, *args, **kwargs):
        CAPTURE.refuse("a host-to-device copy (xp.asarray)")
        return np.asarray(*args, **kwargs)

    def array(self, *args, **kwargs):
        CAPTURE.refuse("a host-to-device copy (xp.array)")
        return np.array(*args, **kwargs)

    def asnumpy(self, a):
        CAPTURE.refuse("a device-to-host copy (xp.asnumpy)")
        return np.asarray(a)

    def _cublas(name):
        def call(self, *args, **kwargs):
            CAPTURE.refuse(f"CuPy's own cuBLAS call (xp.{name})")
            return getattr(np, name)(*args, **kwargs)
        call.__name__ = name
        return call

    matmul, dot, tensordot = _cublas("matmul"), _cublas("dot"), _cublas("tensordot")
    einsum, inner = _cublas("einsum"), _cublas("inner")
    del _cublas


class Algorithms:
    """The GPU algorithms on NumPy arrays through one emulated module provider."""

    def __init__(self, emulated, **conv_options):
        self.modules = cuda_emulation.EmulatedModules(emulated)
        self.gemm = gemm_gpu.NumpyGemm()
        self.xp = xp = EmulatedCupy()
        m, b = self.modules, dict(max_blocks=BLOCKS)
        self.conv = conv_im2col_gpu.Im2colGemmGPU(xp, m, self.gemm, **b, **conv_options)
        self.max, self.avg = pool_gpu.MaxPoolGPU(xp, m, **b), pool_gpu.AvgPoolGPU(xp, m, **b)
        self.relu, self.sigmoid = ew.ReluGPU(xp, m, **b), ew.SigmoidGPU(xp, m, **b)
        self.bias_activation = ew.BiasActivationGPU(xp, m, **b)
        self.rng = ew.DeviceRNG(xp, m)
        self.dropout = ew.DropoutGPU(xp, m, self.rng, **b)
        self.sgd = ew.SgdUpdateGPU(xp, m, **b)
        self.loss = ew.CrossEntropyGPU(xp, m, **b)
        self.matmul = ew.MatmulGPU(xp, self.gemm, self.bias_activation)
        self.calls = []


def install(monkeypatch, k: Algorithms) -> Algorithms:
    gemm = k.gemm

    def counted(a, b, out, tf32=False, accumulate=False):
        k.calls.append((a.shape, b.shape))
        return gemm(a, b, out, tf32, accumulate)

    for algorithm in (k.conv, k.matmul):
        algorithm.gemm = counted
    monkeypatch.setattr(B, "backend_of", lambda array: "cupy")
    monkeypatch.setattr(B, "get_array_module", lambda *arrays: np)
    monkeypatch.setattr(B, "synchronize", lambda name: None)       # the CPU has no queue
    guard_transfers(monkeypatch)
    monkeypatch.setattr(conv_im2col_gpu, "for_cupy", lambda: k.conv)
    monkeypatch.setattr(pool_gpu, "for_cupy",
                        lambda cls: k.max if cls is pool_gpu.MaxPoolGPU else k.avg)
    by_class = {ew.ReluGPU: k.relu, ew.SigmoidGPU: k.sigmoid, ew.DropoutGPU: k.dropout,
                ew.SgdUpdateGPU: k.sgd, ew.CrossEntropyGPU: k.loss, ew.MatmulGPU: k.matmul,
                ew.BiasActivationGPU: k.bias_activation}
    monkeypatch.setattr(ew, "for_cupy", lambda cls: by_class[cls])
    monkeypatch.setattr(ew, "device_rng", lambda: k.rng)
    return k


def guard_transfers(monkeypatch) -> None:
    """The backend's and Tensor's host/device copies refuse to run in capture."""
    to_numpy, to_backend = B.to_numpy, B.to_backend
    item, numpy_ = Tensor.item, Tensor.numpy

    def guarded_to_numpy(array):
        CAPTURE.refuse("a device-to-host copy (backend.to_numpy)")
        return to_numpy(array)

    def guarded_to_backend(array, name):
        CAPTURE.refuse(f"a copy to the {name} backend (backend.to_backend)")
        return to_backend(array, name)

    def guarded_item(self):
        CAPTURE.refuse("a synchronous read of one value (Tensor.item)")
        return item(self)

    def guarded_numpy(self):
        CAPTURE.refuse("a device-to-host copy (Tensor.numpy)")
        return numpy_(self)

    monkeypatch.setattr(B, "to_numpy", guarded_to_numpy)
    monkeypatch.setattr(B, "to_backend", guarded_to_backend)
    monkeypatch.setattr(Tensor, "item", guarded_item)
    monkeypatch.setattr(Tensor, "numpy", guarded_numpy)
