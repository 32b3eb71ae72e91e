"""Max and average pooling on the CPU: the loops of ``numba_pool.py`` over the op's
geometry, each channel pooled alone in the memory order the input has (letters as in
the Notation of ``tinyalex/ops/im2col.py``).

Plain (N, C, H, W) memory is pooled as N*C one-channel images and the result stays
plain; channels-last memory (what the GEMM-based convolutions leave) is pooled as it
lies and stays channels-last (``layout.pool_images``). The images are cut into ranges,
one per thread that pays. Max pooling keeps the index ``kh*KW + kw`` of each window's
first maximum (int32) for its backward, which then needs no search; average pooling
counts the zero padding (PyTorch's ``count_include_pad=True``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import cpu_threads, numba_pool as loops
from .geometry import PoolGeometry
from .layout import as_nhwc, pool_images, pool_result


@dataclass
class MaxPoolSaved:
    argmax: object        # int32, (NI, OH, OW, CI): per pooled image, as forward laid them
    plain: bool           # True: plain memory, NI = N*C images of CI = 1 channel
    g: PoolGeometry


def _gradient_images(gy, g: PoolGeometry, plain: bool):
    """gy (N, C, OH, OW) as the pooled images of forward: (N*C, OH, OW, 1) or
    (N, OH, OW, C), C-contiguous."""
    if plain:
        return np.ascontiguousarray(gy).reshape(g.N * g.C, g.OH, g.OW, 1)
    return as_nhwc(np, gy)


class MaxPoolCPU:
    name = "max-pool loop"

    def forward(self, x, g: PoolGeometry):
        """y (N, C, OH, OW) in x's memory order (plain or channels-last), and the argmax."""
        xh, plain = pool_images(np, x)                  # (NI, H, W, CI)
        NI, CI = xh.shape[0], xh.shape[3]
        H, W, OH, OW = g.H, g.W, g.OH, g.OW
        yh = np.empty((NI, OH, OW, CI), dtype=x.dtype)  # (NI, OH, OW, CI)
        arg = np.empty((NI, OH, OW, CI), dtype=np.int32)
        x2, y2 = xh.reshape(NI * H, W * CI), yh.reshape(NI * OH, OW * CI)
        a2 = arg.reshape(NI * OH, OW * CI)
        cpu_threads.split(NI, OH * OW * CI * g.KH * g.KW, lambda n0, n1: loops.max_pool_forward(
            x2[n0 * H:n1 * H], n1 - n0, H, W, CI, *g.window, OH, OW, y2[n0 * OH:n1 * OH],
            a2[n0 * OH:n1 * OH]))
        return pool_result(yh, g.N, g.C, plain), MaxPoolSaved(arg, plain, g)

    def backward(self, gy, s: MaxPoolSaved):
        """gx (N, C, H, W): each output's gradient added at its window's argmax."""
        g = s.g
        gyh = _gradient_images(gy, g, s.plain)          # (NI, OH, OW, CI)
        NI, CI = gyh.shape[0], gyh.shape[3]
        H, W, OH, OW = g.H, g.W, g.OH, g.OW
        gxh = np.empty((NI, H, W, CI), dtype=gy.dtype)  # (NI, H, W, CI)
        g2, gx2 = gyh.reshape(NI * OH, OW * CI), gxh.reshape(NI * H, W * CI)
        a2, zero = s.argmax.reshape(NI * OH, OW * CI), gy.dtype.type(0)
        cpu_threads.split(NI, H * W * CI * g.KH * g.KW, lambda n0, n1: loops.max_pool_backward(
            g2[n0 * OH:n1 * OH], a2[n0 * OH:n1 * OH], n1 - n0, H, W, CI, *g.window, OH, OW,
            gx2[n0 * H:n1 * H], zero))
        return pool_result(gxh, g.N, g.C, s.plain)


class AvgPoolCPU:
    name = "avg-pool loop"

    def forward(self, x, g: PoolGeometry):
        """y (N, C, OH, OW) in x's memory order; backward needs only the geometry."""
        xh, plain = pool_images(np, x)
        NI, CI = xh.shape[0], xh.shape[3]
        H, W, OH, OW = g.H, g.W, g.OH, g.OW
        yh = np.empty((NI, OH, OW, CI), dtype=x.dtype)  # (NI, OH, OW, CI)
        x2, y2, zero = xh.reshape(NI * H, W * CI), yh.reshape(NI * OH, OW * CI), x.dtype.type(0)
        cpu_threads.split(NI, OH * OW * CI * g.KH * g.KW, lambda n0, n1: loops.avg_pool_forward(
            x2[n0 * H:n1 * H], n1 - n0, H, W, CI, *g.window, OH, OW, y2[n0 * OH:n1 * OH], zero))
        return pool_result(yh, g.N, g.C, plain), g

    def backward(self, gy, g: PoolGeometry):
        """gx (N, C, H, W) in gy's memory order: every window entry gets gy / (KH*KW)."""
        gyh, plain = pool_images(np, gy)
        share = np.ascontiguousarray(gyh / (g.KH * g.KW))          # (NI, OH, OW, CI)
        NI, CI = share.shape[0], share.shape[3]
        H, W, OH, OW = g.H, g.W, g.OH, g.OW
        gxh = np.empty((NI, H, W, CI), dtype=gy.dtype)             # (NI, H, W, CI)
        s2, gx2, zero = share.reshape(NI * OH, OW * CI), gxh.reshape(NI * H, W * CI), \
            gy.dtype.type(0)
        cpu_threads.split(NI, H * W * CI * g.KH * g.KW, lambda n0, n1: loops.avg_pool_backward(
            s2[n0 * OH:n1 * OH], n1 - n0, H, W, CI, *g.window, OH, OW, gx2[n0 * H:n1 * H],
            zero))
        return pool_result(gxh, g.N, g.C, plain)


MAX_POOL = MaxPoolCPU()
AVG_POOL = AvgPoolCPU()
