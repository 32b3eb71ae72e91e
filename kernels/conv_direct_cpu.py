"""The direct convolution on the CPU, for stride-1 layers with padding below the
kernel size that Winograd does not take (LeNet's two layers): the loops of
``numba_direct.py`` over the op's geometry, the batch cut into parts for threads
(letters as in the Notation of ``tinyalex/ops/im2col.py``).

Unlike im2col + GEMM and Winograd, images stay in plain (N, C, H, W) memory: each
loop works on one image's padded channel planes with no column matrix (im2col would
copy every pixel KH*KW times, and a GEMM with LeNet's 6 or 16 columns runs far from
BLAS's peak), and the result is a C-contiguous (N, OC, OH, OW) array, as PyTorch
returns it.

Fused: ``forward_sigmoid_avgpool`` and ``backward_sigmoid_avgpool`` compute a
convolution, the sigmoid after it and a 2x2 average pooling as one op (d2l's LeNet
blocks, ``ops/conv.py``'s ``Conv2dSigmoidAvgPool``) by the loops of
``numba_lanes.py``, which hold 32 images side by side in the vector lanes: the
forward's numbers and the input's gradient are those of the three ops run one after
the other (bit for bit in float32), the filters' gradient sums in another order.

Threads: each part of the batch adds its share of the weight gradient to arrays of
its own, summed at the end, so no two threads ever write the same memory.

``numba_direct``'s loops compute thrown-away columns from zeros of the gradient; with
inf or NaN in the input (or inf in the filters) those would leak NaN into the
gradients, so such gradients are computed by im2col + GEMM instead
(``conv_im2col_cpu.py``), as the reference computes them. (``numba_lanes``' loops
compute no such columns.)
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import cpu_threads, numba_direct as loops, numba_lanes as lanes
from .conv_im2col_cpu import IM2COL_GEMM, Im2colSaved
from .geometry import ConvGeometry, PoolGeometry

MIN_PART_MACS = 1 << 21  # a part of the batch smaller than this is not worth a thread


@dataclass
class DirectSaved:
    """What backward needs: the input and filters, C-contiguous."""
    x: object             # (N, C, H, W)
    w: object             # (OC, C, KH, KW)
    g: ConvGeometry


@dataclass
class LanesSaved:
    """What the fused convolution + sigmoid + pooling's backward needs, in
    ``numba_lanes``' blocks of V images (the image last)."""
    xb: object            # (N/V, C, H + 2*PH, W + 2*PW, V): the padded input
    sb: object            # (N/V, OC, OH, OW, V): the sigmoid's output
    w: object             # (OC, C, KH, KW)
    g: ConvGeometry

    def sigmoid_output(self):
        """The sigmoid's output as (N, OC, OH, OW) (a copy)."""
        blocks, OC, OH, OW, V = self.sb.shape
        return self.sb.transpose(0, 4, 1, 2, 3).reshape(blocks * V, OC, OH, OW)[:self.g.N]


class DirectCPU:
    name = "direct"

    def __init__(self):
        self.threads = cpu_threads.WORKERS

    @staticmethod
    def takes(g: ConvGeometry) -> bool:
        """Stride 1, padding below the kernel size."""
        return g.SH == 1 and g.SW == 1 and g.PH < g.KH and g.PW < g.KW

    condition = "stride 1, padding < kernel"     # ``takes`` in words (ops/conv.py's table)

    def _parts(self, g):
        """Disjoint (n0, n1) ranges covering the batch, one per thread that pays."""
        macs = g.N * g.OC * g.C * g.KH * g.KW * g.OH * g.OW
        parts = max(1, min(self.threads, g.N, macs // MIN_PART_MACS))
        step = -(-g.N // parts)
        return [(n0, min(g.N, n0 + step)) for n0 in range(0, g.N, step)]

    def forward(self, x, weight, bias, g: ConvGeometry, keep: bool):
        """y (N, OC, OH, OW), C-contiguous, and what backward needs."""
        x = np.ascontiguousarray(x)                                 # (N, C, H, W)
        w = np.ascontiguousarray(weight)                            # (OC, C, KH, KW)
        b = np.zeros(g.OC, x.dtype) if bias is None else np.ascontiguousarray(bias)
        y = np.empty((g.N, g.OC, g.OH, g.OW), dtype=x.dtype)        # (N, OC, OH, OW)
        cpu_threads.parallel([lambda n0=n0, n1=n1: loops.forward(x, w, b, g.PH, g.PW, y,
                                                                 n0, n1)
                              for n0, n1 in self._parts(g)])
        return y, (DirectSaved(x, w, g) if keep else None)

    def backward(self, gy, s: DirectSaved, need_x: bool, need_w: bool, need_b: bool):
        """(gx, gW, gb) for gy (N, OC, OH, OW); None where not needed. Each thread takes
        its part of the batch through both gradient loops."""
        g, x, w = s.g, s.x, s.w
        gy = np.ascontiguousarray(gy)                               # (N, OC, OH, OW)
        dt, K = gy.dtype, g.C * g.KH * g.KW
        direct_x = need_x and np.isfinite(w).all()   # inf weights: im2col, below
        gx = np.empty((g.N, g.C, g.H, g.W), dtype=dt) if direct_x else None  # (N, C, H, W)

        def part(n0, n1):
            weights = None
            if need_w:
                gw_part = np.zeros((g.OC, K), dt)                   # (OC, C*KH*KW)
                gb_part = np.zeros(g.OC, dt)                        # (OC,)
                finite = loops.weight_gradient(x, gy, g.PH, g.PW, gw_part, gb_part,
                                               dt.type(0), n0, n1)
                weights = finite, gw_part, gb_part
            if direct_x:
                loops.input_gradient(gy, w, g.PH, g.PW, gx, n0, n1)
            return weights
        results = cpu_threads.parallel([lambda n0=n0, n1=n1: part(n0, n1)
                                        for n0, n1 in self._parts(g)])
        gw = gb = None
        if need_w:
            if all(finite for finite, _, _ in results):
                # (OC, C*KH*KW) -> (OC, C, KH, KW): columns are ordered (c, kh, kw)
                gw = sum(r[1] for r in results).reshape(g.OC, g.C, g.KH, g.KW)
                gb = sum(r[2] for r in results) if need_b else None
            else:                            # inf or NaN in x: im2col adds no stray NaN
                _, gw, gb = IM2COL_GEMM.backward(gy, Im2colSaved(x, w.reshape(g.OC, K), g),
                                                 False, True, need_b)
        elif need_b:
            gb = gy.sum(axis=(0, 2, 3))                             # (OC,)
        if need_x and not direct_x:          # inf weights: as above
            gx, _, _ = IM2COL_GEMM.backward(gy, Im2colSaved(x, w.reshape(g.OC, K), g),
                                            True, False, False)
        return gx, gw, gb

    # -- fused with the sigmoid and the 2x2 average pooling after it (d2l's LeNet) ------

    fused_name = "direct, images in lanes + sigmoid + avg-pool (fused)"

    def takes_sigmoid_avgpool(self, g: ConvGeometry, pool: PoolGeometry) -> bool:
        """A convolution this class takes followed by a sigmoid and a 2x2 average
        pooling of stride 2 without padding."""
        return self.takes(g) and pool.window == (2, 2, 2, 2, 0, 0)

    def _block_parts(self, g):
        """Disjoint (b0, b1) ranges of ``numba_lanes``' blocks of V images covering the
        batch, one per thread that pays."""
        blocks = -(-g.N // lanes.V)
        macs = g.N * g.OC * g.C * g.KH * g.KW * g.OH * g.OW
        parts = max(1, min(self.threads, blocks, macs // MIN_PART_MACS))
        step = -(-blocks // parts)
        return [(b0, min(blocks, b0 + step)) for b0 in range(0, blocks, step)]

    def forward_sigmoid_avgpool(self, x, weight, bias, g: ConvGeometry, pool: PoolGeometry,
                                keep: bool):
        """y (N, OC, OH//2, OW//2) = avg_pool2d(sigmoid(conv2d(x)), 2), computed 16
        images at a time with the images in the vector lanes (``numba_lanes``), and
        what backward needs."""
        x = np.ascontiguousarray(x)                                 # (N, C, H, W)
        w = np.ascontiguousarray(weight)                            # (OC, C, KH, KW)
        b = np.zeros(g.OC, x.dtype) if bias is None else np.ascontiguousarray(bias)
        blocks = -(-g.N // lanes.V)
        xb = lanes.empty((blocks, g.C, g.H + 2 * g.PH, g.W + 2 * g.PW, lanes.V), x.dtype)
        sb = lanes.empty((blocks, g.OC, g.OH, g.OW, lanes.V), x.dtype)  # sigmoid(conv2d(x))
        y = np.empty((g.N, g.OC, pool.OH, pool.OW), dtype=x.dtype)  # its pooling

        def part(b0, b1):
            lanes.pack(x, g.PH, g.PW, xb, b0, b1)
            lanes.forward_sigmoid_avgpool(xb, w, b, x.dtype.type(0.25), sb, y, b0, b1)
        cpu_threads.parallel([lambda b0=b0, b1=b1: part(b0, b1)
                              for b0, b1 in self._block_parts(g)])
        return y, (LanesSaved(xb, sb, w, g) if keep else None)

    def backward_sigmoid_avgpool(self, gy, saved: LanesSaved, need_x: bool, need_w: bool,
                                 need_b: bool):
        """(gx, gW, gb) for gy (N, OC, OH//2, OW//2), None where not needed: the
        pooling's, the sigmoid's and the convolution's backward, block by block
        (``numba_lanes.backward``), each thread taking its part of the blocks."""
        g, w = saved.g, saved.w
        gy = np.ascontiguousarray(gy)                               # (N, OC, OH//2, OW//2)
        dt, K = gy.dtype, g.C * g.KH * g.KW
        gx = np.empty((g.N, g.C, g.H, g.W), dtype=dt) if need_x else None  # (N, C, H, W)

        def part(b0, b1):
            gw_part = np.zeros((g.OC, K), dt)                       # (OC, C*KH*KW)
            gb_part = np.zeros(g.OC, dt)                            # (OC,)
            lanes.backward(gy, saved.xb, saved.sb, w, g.PH, g.PW, need_w, need_b, need_x,
                           dt.type(1), dt.type(0.25), dt.type(0), gw_part, gb_part,
                           gx if need_x else np.empty((0, 0, 0, 0), dt), b0, b1)
            return gw_part, gb_part
        results = cpu_threads.parallel([lambda b0=b0, b1=b1: part(b0, b1)
                                        for b0, b1 in self._block_parts(g)])
        # (OC, C*KH*KW) -> (OC, C, KH, KW): columns are ordered (c, kh, kw)
        gw = sum(r[0] for r in results).reshape(g.OC, g.C, g.KH, g.KW) if need_w else None
        gb = sum(r[1] for r in results) if need_b else None
        return gx, gw, gb


DIRECT = DirectCPU()
