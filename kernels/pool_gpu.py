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

import numpy as np

from tinyalex import backend as B

from . import cuda_launch
from .cuda_launch import MAX_BLOCKS, Params, Plan, check_sizes, dtype_suffix, make_plan, window
from .geometry import PoolGeometry
from .layout import as_nhwc, pool_images, pool_result
from .pool_cpu import MaxPoolSaved


# -- launch plans of cuda/pool.cu (channels-last images: x (NI, H, W, CI), y (NI, OH, OW, CI)) -----------------
#
# Plain (N, C, H, W) memory is NI = N*C one-channel images (CI = 1); channels-last
# (N, H, W, C) memory is NI = N images of CI = C channels.

def _pool_forward(kind, NI, H, W, CI, KH, KW, SH, SW, PH, PW, dtype, index_bits, max_blocks):
    where = f"{kind}_pool_forward"
    dtype, suffix = dtype_suffix(dtype, where)
    check_sizes(where, NI=(NI, 1), CI=(CI, 1))
    OH, OW = window(where, H, W, KH, KW, SH, SW, PH, PW)
    total, nx = NI * OH * OW * CI, NI * H * W * CI

    def build(bits):
        p = Params(bits, dtype)
        p.array("x", nx)
        p.array("y", total)
        if kind == "max":
            p.array("argmax", total, np.int32)
        p.index("total", total)
        p.div("CI", CI)
        p.div("OW", OW)
        p.div("OH", OH)
        for name, v in (("H", H), ("W", W), ("KH", KH), ("KW", KW), ("SH", SH), ("SW", SW),
                        ("PH", PH), ("PW", PW)):
            p.index(name, v)
        return p

    return make_plan("pool", where, suffix, total, max(total, nx), index_bits, max_blocks, build)


def _pool_backward(kind, NI, H, W, CI, KH, KW, SH, SW, PH, PW, dtype, index_bits, max_blocks):
    where = f"{kind}_pool_backward"
    dtype, suffix = dtype_suffix(dtype, where)
    check_sizes(where, NI=(NI, 1), CI=(CI, 1))
    OH, OW = window(where, H, W, KH, KW, SH, SW, PH, PW)
    total, ny = NI * H * W * CI, NI * OH * OW * CI

    def build(bits):
        p = Params(bits, dtype)
        p.array("gy", ny)
        if kind == "max":
            p.array("argmax", ny, np.int32)
        p.array("gx", total)
        p.index("total", total)
        for name, d in (("CI", CI), ("W", W), ("H", H), ("SH", SH), ("SW", SW)):
            p.div(name, d)
        for name, v in (("KH", KH), ("KW", KW), ("OH", OH), ("OW", OW), ("PH", PH),
                        ("PW", PW)):
            p.index(name, v)
        return p

    return make_plan("pool", where, suffix, total, max(total, ny), index_bits, max_blocks, build)


@functools.lru_cache(maxsize=1024)
def max_pool_forward(NI, H, W, CI, KH, KW, SH, SW, PH, PW, dtype, *, index_bits=None,
                     max_blocks=MAX_BLOCKS) -> Plan:
    """x (NI, H, W, CI) -> y (NI, OH, OW, CI) and argmax (int32, y's shape) = kh*KW + kw
    of the first maximum. Arrays: ``x``, ``y``, ``argmax``."""
    return _pool_forward("max", NI, H, W, CI, KH, KW, SH, SW, PH, PW, dtype, index_bits,
                         max_blocks)


@functools.lru_cache(maxsize=1024)
def max_pool_backward(NI, H, W, CI, KH, KW, SH, SW, PH, PW, dtype, *, index_bits=None,
                      max_blocks=MAX_BLOCKS) -> Plan:
    """gy, argmax (NI, OH, OW, CI) -> gx (NI, H, W, CI), overwritten.
    Arrays: ``gy``, ``argmax``, ``gx``."""
    return _pool_backward("max", NI, H, W, CI, KH, KW, SH, SW, PH, PW, dtype, index_bits,
                          max_blocks)


@functools.lru_cache(maxsize=1024)
def avg_pool_forward(NI, H, W, CI, KH, KW, SH, SW, PH, PW, dtype, *, index_bits=None,
                     max_blocks=MAX_BLOCKS) -> Plan:
    """x (NI, H, W, CI) -> y (NI, OH, OW, CI), zero padding counted. Arrays: ``x``, ``y``."""
    return _pool_forward("avg", NI, H, W, CI, KH, KW, SH, SW, PH, PW, dtype, index_bits,
                         max_blocks)


@functools.lru_cache(maxsize=1024)
def avg_pool_backward(NI, H, W, CI, KH, KW, SH, SW, PH, PW, dtype, *, index_bits=None,
                      max_blocks=MAX_BLOCKS) -> Plan:
    """gy (NI, OH, OW, CI) -> gx (NI, H, W, CI), overwritten. Arrays: ``gy``, ``gx``."""
    return _pool_backward("avg", NI, H, W, CI, KH, KW, SH, SW, PH, PW, dtype, index_bits,
                          max_blocks)


class _PoolGPU:
    def __init__(self, xp, modules, max_blocks=MAX_BLOCKS):
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
        self.modules.launch(max_pool_forward(NI, g.H, g.W, CI, *g.window, x.dtype,
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
        self.modules.launch(max_pool_backward(NI, g.H, g.W, CI, *g.window, gy.dtype,
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
        self.modules.launch(avg_pool_forward(NI, g.H, g.W, CI, *g.window, x.dtype,
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
        self.modules.launch(avg_pool_backward(NI, g.H, g.W, CI, *g.window, gy.dtype,
                                                   max_blocks=self.max_blocks), gy=gyh, gx=gxh)
        return pool_result(gxh, g.N, g.C, plain)


_cache = {}


def for_cupy(cls):
    """``cls`` (MaxPoolGPU or AvgPoolGPU) on CuPy arrays, built once."""
    if cls not in _cache:
        cp = B.cupy_module()
        _cache[cls] = cls(cp, cuda_launch.for_cupy(cp))
    return _cache[cls]
