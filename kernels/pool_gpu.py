"""Max and average pooling on the GPU (CuPy backend): the kernels of
``kernels/cuda/pool.cu``, one launch over every image, launched through a module
provider (``cuda_launch.py``), in the memory order the input has (plain memory as
N*C one-channel images, channels-last as it lies: ``layout.py``), as the CPU's
``pool_cpu.py`` does. Max pooling keeps the argmax (int32, kh*KW + kw) for backward;
both backwards are gathers in the reference's (kh, kw) order (no atomics).

The launch plans of ``pool.cu`` come first below, then the algorithms; ``cuda_launch.py``
holds what every op's plans share.
"""

from __future__ import annotations

import functools
from dataclasses import replace

import numpy as np

from tinyalex import backend as B

from . import cuda_launch
from .cuda_launch import MAX_BLOCKS, Params, Plan, dtype_suffix, make_plan
from .geometry import PoolGeometry
from .layout import as_nhwc, pool_images, pool_result
from .pool_cpu import MaxPoolSaved


# -- launch plans of cuda/pool.cu ------------------------------------------------------------
#
# A plan's geometry is the pooled images': channels-last x (N, H, W, C), y (N, OH, OW, C).
# Plain (N, C, H, W) memory is N*C one-channel images (``images`` below: N*C images of
# C = 1); channels-last memory is N images of C channels. Built from the layer's
# PoolGeometry (validated once, by the op), trusted here.

def images(g: PoolGeometry, plain: bool) -> PoolGeometry:
    """The geometry of the images a launch pools: N*C one-channel images for plain
    memory, the layer's own for channels-last."""
    return replace(g, N=g.N * g.C, C=1) if plain else g


def _pool_forward(kind, g: PoolGeometry, dtype, index_bits, max_blocks):
    where = f"{kind}_pool_forward"
    dtype, suffix = dtype_suffix(dtype, where)
    total, nx = g.N * g.OH * g.OW * g.C, g.N * g.H * g.W * g.C

    def build(bits):
        p = Params(bits, dtype)
        p.array("x", nx)
        p.array("y", total)
        if kind == "max":
            p.array("argmax", total, np.int32)
        p.index("total", total)
        p.div("CI", g.C)
        p.div("OW", g.OW)
        p.div("OH", g.OH)
        for name in ("H", "W", "KH", "KW", "SH", "SW", "PH", "PW"):
            p.index(name, getattr(g, name))
        return p

    return make_plan("pool", where, suffix, total, max(total, nx), index_bits, max_blocks, build)


def _pool_backward(kind, g: PoolGeometry, dtype, index_bits, max_blocks):
    where = f"{kind}_pool_backward"
    dtype, suffix = dtype_suffix(dtype, where)
    total, ny = g.N * g.H * g.W * g.C, g.N * g.OH * g.OW * g.C

    def build(bits):
        p = Params(bits, dtype)
        p.array("gy", ny)
        if kind == "max":
            p.array("argmax", ny, np.int32)
        p.array("gx", total)
        p.index("total", total)
        p.div("CI", g.C)
        for name in ("W", "H", "SH", "SW"):
            p.div(name, getattr(g, name))
        for name in ("KH", "KW", "OH", "OW", "PH", "PW"):
            p.index(name, getattr(g, name))
        return p

    return make_plan("pool", where, suffix, total, max(total, ny), index_bits, max_blocks, build)


@functools.lru_cache(maxsize=1024)
def max_pool_forward(g: PoolGeometry, dtype, *, index_bits=None,
        max_blocks=MAX_BLOCKS) -> Plan:
    """x (N, H, W, C) -> y (N, OH, OW, C) and argmax (int32, y's shape) = kh*KW + kw of
    the first maximum. Arrays: ``x``, ``y``, ``argmax``."""
    return _pool_forward("max", g, dtype, index_bits, max_blocks)


@functools.lru_cache(maxsize=1024)
def max_pool_backward(g: PoolGeometry, dtype, *, index_bits=None,
        max_blocks=MAX_BLOCKS) -> Plan:
    """gy, argmax (N, OH, OW, C) -> gx (N, H, W, C), overwritten.
    Arrays: ``gy``, ``argmax``, ``gx``."""
    return _pool_backward("max", g, dtype, index_bits, max_blocks)


@functools.lru_cache(maxsize=1024)
def avg_pool_forward(g: PoolGeometry, dtype, *, index_bits=None,
        max_blocks=MAX_BLOCKS) -> Plan:
    """x (N, H, W, C) -> y (N, OH, OW, C), zero padding counted. Arrays: ``x``, ``y``."""
    return _pool_forward("avg", g, dtype, index_bits, max_blocks)


@functools.lru_cache(maxsize=1024)
def avg_pool_backward(g: PoolGeometry, dtype, *, index_bits=None,
        max_blocks=MAX_BLOCKS) -> Plan:
    """gy (N, OH, OW, C) -> gx (N, H, W, C), overwritten. Arrays: ``gy``, ``gx``."""
    return _pool_backward("avg", g, dtype, index_bits, max_blocks)


class _PoolGPU:
    def __init__(self, xp, modules, max_blocks=MAX_BLOCKS):
        self.xp, self.modules, self.max_blocks = xp, modules, max_blocks

    def _gradient_images(self, gy, g: PoolGeometry, plain):
        if plain:
            return self.xp.ascontiguousarray(gy).reshape(g.N * g.C, g.OH, g.OW, 1)
        return as_nhwc(self.xp, gy)                                  # (N, OH, OW, C)


class MaxPoolGPU(_PoolGPU):
    name = "max-pool kernel"

    def forward(self, x, g: PoolGeometry):
        xp = self.xp
        xh, plain = pool_images(xp, x)                  # (NI, H, W, CI)
        gi = images(g, plain)
        yh = xp.empty((gi.N, g.OH, g.OW, gi.C), dtype=x.dtype)
        arg = xp.empty((gi.N, g.OH, g.OW, gi.C), dtype="int32")
        self.modules.launch(max_pool_forward(gi, x.dtype, max_blocks=self.max_blocks),
                            x=xh, y=yh, argmax=arg)
        return pool_result(yh, g.N, g.C, plain), MaxPoolSaved(arg, plain, g)

    def backward(self, gy, s: MaxPoolSaved):
        xp, g = self.xp, s.g
        gyh = self._gradient_images(gy, g, s.plain)     # (NI, OH, OW, CI)
        gi = images(g, s.plain)
        gxh = xp.empty((gi.N, g.H, g.W, gi.C), dtype=gy.dtype)
        self.modules.launch(max_pool_backward(gi, gy.dtype, max_blocks=self.max_blocks),
                            gy=gyh, argmax=s.argmax, gx=gxh)
        return pool_result(gxh, g.N, g.C, s.plain)


class AvgPoolGPU(_PoolGPU):
    name = "avg-pool kernel"

    def forward(self, x, g: PoolGeometry):
        xp = self.xp
        xh, plain = pool_images(xp, x)                  # (NI, H, W, CI)
        gi = images(g, plain)
        yh = xp.empty((gi.N, g.OH, g.OW, gi.C), dtype=x.dtype)
        self.modules.launch(avg_pool_forward(gi, x.dtype, max_blocks=self.max_blocks),
                            x=xh, y=yh)
        return pool_result(yh, g.N, g.C, plain), g

    def backward(self, gy, g: PoolGeometry):
        """gx (N, C, H, W) in gy's memory order (backward needs only the geometry)."""
        gyh, plain = pool_images(self.xp, gy)           # (NI, OH, OW, CI)
        gi = images(g, plain)
        gxh = self.xp.empty((gi.N, g.H, g.W, gi.C), dtype=gy.dtype)
        # each window entry gets gy / (KH*KW), gathered in (kh, kw) order
        self.modules.launch(avg_pool_backward(gi, gy.dtype, max_blocks=self.max_blocks),
                            gy=gyh, gx=gxh)
        return pool_result(gxh, g.N, g.C, plain)


_cache = {}


def for_cupy(cls):
    """``cls`` (MaxPoolGPU or AvgPoolGPU) on CuPy arrays, built once."""
    if cls not in _cache:
        cp = B.cupy_module()
        _cache[cls] = cls(cp, cuda_launch.for_cupy(cp))
    return _cache[cls]
