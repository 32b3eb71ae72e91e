"""The GPU algorithms on NumPy arrays (test helpers, not a test module).

``Algorithms(emulated)``: every GPU algorithm class of ``kernels/`` built with the CPU
emulation's module provider (the CUDA C sources compiled by g++) and NumPy's GEMM,
grids of ``BLOCKS`` blocks at most so that every grid-stride loop wraps.

``install(monkeypatch, algorithms)``: the ops and nn then see NumPy arrays as the cupy
backend's, and the choosers hand out these algorithms: whole training steps run the
GPU path's Python (fusions, dropout's device state, the loss's device statistics, the
flat SGD kernel) on the CPU. ``algorithms.modules.launches`` counts the kernels,
``algorithms.calls`` the GEMMs (their operand shapes).
"""

import numpy as np

from tinyalex import backend as B
from tinyalex.kernels import conv_im2col_gpu, elementwise_gpu as ew, gemm_gpu, gpu_modules, \
    pool_gpu

BLOCKS = 2                       # grids of 2 blocks: every grid-stride loop wraps


class Algorithms:
    """The GPU algorithms on NumPy arrays through one emulated module provider."""

    def __init__(self, emulated, **conv_options):
        self.modules = gpu_modules.EmulatedModules(emulated)
        self.gemm = gemm_gpu.NumpyGemm()
        m, b = self.modules, dict(max_blocks=BLOCKS)
        self.conv = conv_im2col_gpu.Im2colGemmGPU(np, m, self.gemm, **b, **conv_options)
        self.conv_ref_order = conv_im2col_gpu.Im2colGemmGPU(np, m, self.gemm, "c,kh,kw", **b,
                                                            **conv_options)
        self.max, self.avg = pool_gpu.MaxPoolGPU(np, m, **b), pool_gpu.AvgPoolGPU(np, m, **b)
        self.relu, self.sigmoid = ew.ReluGPU(np, m, **b), ew.SigmoidGPU(np, m, **b)
        self.bias_activation = ew.BiasActivationGPU(np, m, **b)
        self.rng = ew.DeviceRNG(np, m)
        self.dropout = ew.DropoutGPU(np, m, self.rng, **b)
        self.sgd = ew.SgdUpdateGPU(np, m, **b)
        self.loss = ew.CrossEntropyGPU(np, m, **b)
        self.matmul = ew.MatmulGPU(np, self.gemm, self.bias_activation)
        self.calls = []


def install(monkeypatch, k: Algorithms) -> Algorithms:
    gemm = k.gemm

    def counted(a, b, out, tf32=False, accumulate=False):
        k.calls.append((a.shape, b.shape))
        return gemm(a, b, out, tf32, accumulate)

    for algorithm in (k.conv, k.conv_ref_order, k.matmul):
        algorithm.gemm = counted
    monkeypatch.setattr(B, "backend_of", lambda array: "cupy")
    monkeypatch.setattr(B, "get_array_module", lambda *arrays: np)
    monkeypatch.setattr(B, "synchronize", lambda name: None)       # the CPU has no queue
    monkeypatch.setattr(conv_im2col_gpu, "for_cupy",
                        lambda order="kh,kw,c": k.conv if order == "kh,kw,c" else k.conv_ref_order)
    monkeypatch.setattr(pool_gpu, "for_cupy",
                        lambda cls: k.max if cls is pool_gpu.MaxPoolGPU else k.avg)
    by_class = {ew.ReluGPU: k.relu, ew.SigmoidGPU: k.sigmoid, ew.DropoutGPU: k.dropout,
                ew.SgdUpdateGPU: k.sgd, ew.CrossEntropyGPU: k.loss, ew.MatmulGPU: k.matmul,
                ew.BiasActivationGPU: k.bias_activation}
    monkeypatch.setattr(ew, "for_cupy", lambda cls: by_class[cls])
    monkeypatch.setattr(ew, "device_rng", lambda: k.rng)
    return k
