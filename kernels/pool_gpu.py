"""Max and average pooling on the GPU (CuPy backend): the kernels of
``kernels/cuda/pool.cu``, one launch over every image, launched through a module
provider (``gpu_modules.py``), in the memory order the input has (plain memory as
N*C one-channel images, channels-last as it lies: ``layout.py``), as the CPU's
``pool_cpu.py`` does. Max pooling keeps the argmax (int32, kh*KW + kw) for backward;
both backwards are gathers in the reference's (kh, kw) order (no atomics).
"""

from __future__ import annotations

from tinyalex import backend as B

from . import cuda_plan as plan
from . import gpu_modules
from .geometry import PoolGeometry
from .layout import as_nhwc, pool_images, pool_result
from .pool_cpu import MaxPoolSaved


class _PoolGPU:
    def __init__(self, xp, modules, max_blocks=plan.MAX_BLOCKS):
        self.xp, self.modules, self.max_blocks = xp, modules, max_blocks

    def _gradient_images(self, gy, g: PoolGeometry, plain):
        if gy.shape != (g.N, g.C, g.OH, g.OW):
            raise ValueError(f"pool2d backward: gradient {gy.shape} does not match the "
                             f"input's output shape {(g.N, g.C, g.OH, g.OW)}")
        if plain:
            return self.xp.ascontiguousarray(gy).reshape(g.N * g.C, g.OH, g.OW, 1)
        return as_nhwc(self.xp, gy)                                  # (N, OH, OW, C)


class MaxPoolGPU(_PoolGPU):
    name = "max-pool kernel"

    def forward(self, x, g: PoolGeometry):
        xp = self.xp
        xh, plain = pool_images(xp, x)                  # (NI, H, W, CI)
        NI, CI = xh.shape[0], xh.shape[3]
        yh = xp.empty((NI, g.OH, g.OW, CI), dtype=x.dtype)
        arg = xp.empty((NI, g.OH, g.OW, CI), dtype="int32")
        self.modules.launch(plan.max_pool_forward(NI, g.H, g.W, CI, *g.window, x.dtype,
                                                  max_blocks=self.max_blocks),
                            x=xh, y=yh, argmax=arg)
        return pool_result(yh, g.N, g.C, plain), MaxPoolSaved(arg, plain, g)

    def backward(self, gy, s: MaxPoolSaved):
        xp, g = self.xp, s.g
        gyh = self._gradient_images(gy, g, s.plain)     # (NI, OH, OW, CI)
        NI, CI = gyh.shape[0], gyh.shape[3]
        if s.argmax.shape != gyh.shape:
            raise ValueError(f"max_pool2d backward: argmax {s.argmax.shape} does not match "
                             f"the gradient's images {gyh.shape}")
        gxh = xp.empty((NI, g.H, g.W, CI), dtype=gy.dtype)
        self.modules.launch(plan.max_pool_backward(NI, g.H, g.W, CI, *g.window, gy.dtype,
                                                   max_blocks=self.max_blocks),
                            gy=gyh, argmax=s.argmax, gx=gxh)
        return pool_result(gxh, g.N, g.C, s.plain)


class AvgPoolGPU(_PoolGPU):
    name = "avg-pool kernel"

    def forward(self, x, g: PoolGeometry):
        xp = self.xp
        xh, plain = pool_images(xp, x)                  # (NI, H, W, CI)
        NI, CI = xh.shape[0], xh.shape[3]
        yh = xp.empty((NI, g.OH, g.OW, CI), dtype=x.dtype)
        self.modules.launch(plan.avg_pool_forward(NI, g.H, g.W, CI, *g.window, x.dtype,
                                                  max_blocks=self.max_blocks), x=xh, y=yh)
        return pool_result(yh, g.N, g.C, plain), g

    def backward(self, gy, g: PoolGeometry):
        """gx (N, C, H, W) in gy's memory order (backward needs only the geometry)."""
        if gy.shape != (g.N, g.C, g.OH, g.OW):
            raise ValueError(f"avg_pool2d backward: gradient {gy.shape} does not match "
                             f"input {(g.N, g.C, g.H, g.W)}; expected {(g.N, g.C, g.OH, g.OW)}")
        gyh, plain = pool_images(self.xp, gy)           # (NI, OH, OW, CI)
        NI, CI = gyh.shape[0], gyh.shape[3]
        gxh = self.xp.empty((NI, g.H, g.W, CI), dtype=gy.dtype)
        # each window entry gets gy / (KH*KW), gathered in (kh, kw) order
        self.modules.launch(plan.avg_pool_backward(NI, g.H, g.W, CI, *g.window, gy.dtype,
                                                   max_blocks=self.max_blocks), gy=gyh, gx=gxh)
        return pool_result(gxh, g.N, g.C, plain)


_cache = {}


def for_cupy(cls):
    """``cls`` (MaxPoolGPU or AvgPoolGPU) on CuPy arrays, built once."""
    if cls not in _cache:
        cp = B.cupy_module()
        _cache[cls] = cls(cp, gpu_modules.for_cupy(cp))
    return _cache[cls]
