"""Max and average pooling on the GPU (CuPy backend): the pooling kernels of
``cuda_kernels.py``, one launch over every image, in the memory order the input has
(plain memory as N*C one-channel images, channels-last as it lies: ``layout.py``), as
the CPU's ``pool_cpu.py`` does. Not yet run on a GPU: tested in CI under Numba's CUDA
simulator on NumPy arrays.
"""

from __future__ import annotations

from tinyalex import backend as B

from . import gpu_launch
from .geometry import PoolGeometry
from .layout import as_nhwc, pool_images, pool_result
from .pool_cpu import MaxPoolSaved


class _PoolGPU:
    def __init__(self, xp, launch):
        from . import cuda_kernels  # noqa: PLC0415 - numba.cuda, loaded for a GPU set only
        self.xp, self.launch, self.loops = xp, launch, cuda_kernels

    def _gradient_images(self, gy, g: PoolGeometry, plain):
        if gy.shape != (g.N, g.C, g.OH, g.OW):
            raise ValueError(f"pool2d backward: gradient {gy.shape} does not match the "
                             f"input's output shape {(g.N, g.C, g.OH, g.OW)}")
        if plain:
            return self.xp.ascontiguousarray(gy).reshape(g.N * g.C, g.OH, g.OW, 1)
        return as_nhwc(self.xp, gy)


class MaxPoolGPU(_PoolGPU):
    name = "max-pool kernel"

    def forward(self, x, g: PoolGeometry):
        xp = self.xp
        xh, plain = pool_images(xp, x)                  # (NI, H, W, CI)
        NI, CI = xh.shape[0], xh.shape[3]
        yh = xp.empty((NI, g.OH, g.OW, CI), dtype=x.dtype)
        arg = xp.empty((NI, g.OH, g.OW, CI), dtype="int32")
        self.launch(self.loops.max_pool_forward, yh.size, xh.reshape(NI * g.H, g.W * CI), NI,
                    g.H, g.W, CI, *g.window, g.OH, g.OW, yh.reshape(NI * g.OH, g.OW * CI),
                    arg.reshape(NI * g.OH, g.OW * CI))
        return pool_result(yh, g.N, g.C, plain), MaxPoolSaved(arg, plain, g)

    def backward(self, gy, s: MaxPoolSaved):
        xp, g = self.xp, s.g
        gyh = self._gradient_images(gy, g, s.plain)     # (NI, OH, OW, CI)
        NI, CI = gyh.shape[0], gyh.shape[3]
        if s.argmax.shape != gyh.shape:
            raise ValueError(f"max_pool2d backward: argmax {s.argmax.shape} does not match "
                             f"the gradient's images {gyh.shape}")
        gxh = xp.empty((NI, g.H, g.W, CI), dtype=gy.dtype)
        self.launch(self.loops.max_pool_backward, gxh.size, gyh.reshape(NI * g.OH, g.OW * CI),
                    s.argmax.reshape(NI * g.OH, g.OW * CI), NI, g.H, g.W, CI, *g.window,
                    g.OH, g.OW, gxh.reshape(NI * g.H, g.W * CI), gy.dtype.type(0))
        return pool_result(gxh, g.N, g.C, s.plain)


class AvgPoolGPU(_PoolGPU):
    name = "avg-pool kernel"

    def forward(self, x, g: PoolGeometry):
        xp = self.xp
        xh, plain = pool_images(xp, x)
        NI, CI = xh.shape[0], xh.shape[3]
        yh = xp.empty((NI, g.OH, g.OW, CI), dtype=x.dtype)
        self.launch(self.loops.avg_pool_forward, yh.size, xh.reshape(NI * g.H, g.W * CI), NI,
                    g.H, g.W, CI, *g.window, g.OH, g.OW, yh.reshape(NI * g.OH, g.OW * CI),
                    x.dtype.type(0))
        return pool_result(yh, g.N, g.C, plain), g

    def backward(self, gy, g: PoolGeometry):
        xp = self.xp
        gyh, plain = pool_images(xp, gy)
        if gy.shape != (g.N, g.C, g.OH, g.OW):
            raise ValueError(f"avg_pool2d backward: gradient {gy.shape} does not match "
                             f"input {(g.N, g.C, g.H, g.W)}; expected {(g.N, g.C, g.OH, g.OW)}")
        share = xp.ascontiguousarray(gyh / (g.KH * g.KW))          # (NI, OH, OW, CI)
        NI, CI = share.shape[0], share.shape[3]
        gxh = xp.empty((NI, g.H, g.W, CI), dtype=gy.dtype)
        self.launch(self.loops.avg_pool_backward, gxh.size, share.reshape(NI * g.OH, g.OW * CI),
                    NI, g.H, g.W, CI, *g.window, g.OH, g.OW, gxh.reshape(NI * g.H, g.W * CI),
                    gy.dtype.type(0))
        return pool_result(gxh, g.N, g.C, plain)


_cache = {}


def for_cupy(cls):
    """``cls`` (MaxPoolGPU or AvgPoolGPU) on CuPy arrays, built once."""
    if cls not in _cache:
        _cache[cls] = cls(B.cupy_module(), gpu_launch.for_cupy())
    return _cache[cls]
