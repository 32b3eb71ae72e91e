"""Grouped convolution (``groups=G``) on the CPU as one im2col and one batched GEMM over
the groups, where the reference (``tinyalex/ops/conv.py``, GroupedReference) runs G
convolutions one after another, each with its own im2col, GEMM and concatenation.
Letters as in the Notation of ``tinyalex/ops/im2col.py``; Cg = C/G input and
OCg = OC/G output channels a group, Kg = KH*KW*Cg.

The input is read in channels-last memory (as ``conv_im2col_cpu.py``'s channels-last
path does), where group g's channels are the run [g*Cg, (g+1)*Cg) of every pixel; one
walk over the windows fills the columns of all groups, a (G, rows, Kg) array, group g's
from the channels of its run (``numba_im2col.im2col_grouped_nhwc``, columns (kh, kw,
cg)); then one batched GEMM::

    cols[g]  = x_nhwc[..., g*Cg:(g+1)*Cg]'s windows           # (G, rows, Kg), one loop
    y[g]     = cols[g] @ W[g].T                               # (G, rows, OCg) batched
    y        -> (rows, G, OCg) = (N, OH, OW, OC)              # channels-last output

Backward, a few images at a time as forward (the columns built again)::

    gW[g]    = gy[g].T @ cols[g]                              # (G, OCg, Kg)
    gcols[g] = gy[g] @ W[g]                                   # (G, rows, Kg)
    gx_nhwc  = col2im_grouped_nhwc(gcols)                     # a gather, one loop

The filters' (OC, Cg, KH, KW) are reordered to (G, OCg, KH*KW*Cg) for the columns'
order, and gW back (3-D transposes). ResNeXt's blocks (d2l 1.0) run this.

It takes groups of ``MIN_GROUP_CHANNELS`` input channels or more: with fewer, each
group's GEMMs are too thin for the batched GEMM to beat the reference's loop (ResNeXt-50's
first stage, 32 groups of 4 channels: 0.8-0.9x of the reference's speed; its later
stages, 8 and 16 channels a group, 1.7-2.9x; d2l's ResNeXt block, 2 groups of 16,
3.2-3.4x: one thread, the record benchmarks/results/2026-12-07_epyc-avx512-2cores-resnet18/).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import cpu_threads, numba_im2col as loops
from .conv_im2col_cpu import CHUNK_BYTES, last_two_swapped, nhwc
from .geometry import ConvGeometry
from .workspace import WORKSPACE


@dataclass
class GroupedSaved:
    x: object             # (N, H, W, C), channels-last
    w_g: object           # (G, OCg, Kg), columns (kh, kw, cg)
    g: ConvGeometry


MIN_GROUP_CHANNELS = 8      # input channels a group, at least


class GroupedIm2colCPU:
    name = "im2col+batched GEMM over groups"

    @staticmethod
    def takes(g: ConvGeometry) -> bool:
        return g.groups > 1 and g.C // g.groups >= MIN_GROUP_CHANNELS

    @property
    def condition(self) -> str:
        """``takes`` in words, for the chooser's table (ops/conv.py)."""
        return f"groups > 1 of >= {MIN_GROUP_CHANNELS} channels"

    def __init__(self, chunk_bytes=CHUNK_BYTES):
        self.chunk_bytes = chunk_bytes

    def images_per_chunk(self, g: ConvGeometry, itemsize: int) -> int:
        return max(1, min(g.N, self.chunk_bytes // max(1, g.P * g.K * g.groups * itemsize)))

    def columns(self, xh, n0, n1, g: ConvGeometry):
        """(G, nb*OH*OW, Kg): every group's (kh, kw, cg) columns of images n0..n1-1,
        images cut for threads."""
        P = g.P
        cols = WORKSPACE.get(np, "cols_grouped", (g.groups, (n1 - n0) * P, g.K), xh.dtype)
        cpu_threads.split(n1 - n0, P * g.K * g.groups, lambda a, b: loops.im2col_grouped_nhwc(
            xh, n0 + a, n0 + b, g.KH, g.KW, g.SH, g.SW, g.PH, g.PW, g.OH, g.OW,
            cols[:, a * P:b * P]))
        return cols

    def forward(self, x, weight, bias, g: ConvGeometry, keep: bool):
        """y (N, OC, OH, OW) (a view of channels-last memory), and what backward needs."""
        N, P, G, OC = g.N, g.P, g.groups, g.OC
        OCg, Cg, KK = OC // G, g.C // G, g.KH * g.KW
        xh = nhwc(x)                                                # (N, H, W, C)
        # (OC, Cg, KH*KW) -> (OC, KH*KW, Cg) -> (G, OCg, Kg): columns (kh, kw, cg)
        w_g = last_two_swapped(weight.reshape(OC, Cg, KK)).reshape(G, OCg, g.K)
        y = np.empty((N * P, G, OCg), dtype=x.dtype)                # (N*OH*OW, G, OCg)
        nb = self.images_per_chunk(g, x.dtype.itemsize)
        for n0 in range(0, N, nb):
            n1 = min(N, n0 + nb)
            cols = self.columns(xh, n0, n1, g)                      # (G, rows, Kg)
            part = WORKSPACE.get(np, "y_grouped", (G, (n1 - n0) * P, OCg), x.dtype)
            # (G, rows, OCg) = (G, rows, Kg) @ (G, Kg, OCg)
            cpu_threads.gemm(cols, w_g.transpose(0, 2, 1), part)
            y[n0 * P:n1 * P] = part.transpose(1, 0, 2)              # -> (rows, G, OCg)
        y = y.reshape(N * P, OC)
        if bias is not None:
            y += bias                                               # (N*OH*OW, OC) + (OC,)
        saved = GroupedSaved(xh, w_g, g) if keep else None
        return y.reshape(N, g.OH, g.OW, OC).transpose(0, 3, 1, 2), saved

    def backward(self, gy, s: GroupedSaved, need_x: bool, need_w: bool, need_b: bool):
        """(gx, gW, gb) for gy (N, OC, OH, OW); None where not needed."""
        g = s.g
        N, P, G, OC = g.N, g.P, g.groups, g.OC
        OCg, Cg, KK = OC // G, g.C // G, g.KH * g.KW
        t = gy.transpose(0, 2, 3, 1)                                # (N, OH, OW, OC)
        gy_mat = (t if t.flags.c_contiguous else np.ascontiguousarray(t)).reshape(N * P, OC)
        gb = cpu_threads.column_sums(gy_mat) if need_b else None                 # (OC,)
        gw = np.zeros((G, OCg, g.K), dtype=gy.dtype) if need_w else None
        gxh = np.empty((N, g.H, g.W, g.C), dtype=gy.dtype) if need_x else None
        nb = self.images_per_chunk(g, gy.dtype.itemsize)
        for n0 in range(0, N, nb):
            n1 = min(N, n0 + nb)
            rows = (n1 - n0) * P
            # (rows, G, OCg) -> (G, rows, OCg), each group's gradient a matrix
            g_chunk = np.ascontiguousarray(
                gy_mat[n0 * P:n1 * P].reshape(rows, G, OCg).transpose(1, 0, 2))
            if need_w:
                cols = self.columns(s.x, n0, n1, g)                 # (G, rows, Kg) again
                part = WORKSPACE.get(np, "gw_grouped", (G, OCg, g.K), gy.dtype)
                # (G, OCg, Kg) = (G, OCg, rows) @ (G, rows, Kg)
                cpu_threads.gemm(g_chunk.transpose(0, 2, 1), cols, part)
                gw += part
            if need_x:
                gcols = WORKSPACE.get(np, "gcols_grouped", (G, rows, g.K), gy.dtype)
                # (G, rows, Kg) = (G, rows, OCg) @ (G, OCg, Kg)
                cpu_threads.gemm(g_chunk, s.w_g, gcols)
                cpu_threads.split(n1 - n0, P * g.K * G, lambda a, b: loops.col2im_grouped_nhwc(
                    gcols[:, a * P:b * P], n0 + a, n0 + b, g.KH, g.KW, g.SH, g.SW, g.PH,
                    g.PW, g.OH, g.OW, gxh, gxh.dtype.type(0)))
        if need_w:      # (G, OCg, KH*KW, Cg) -> (OC, Cg, KH*KW) -> (OC, Cg, KH, KW)
            gw = last_two_swapped(gw.reshape(OC, KK, Cg)).reshape(OC, Cg, g.KH, g.KW)
        gx = None if gxh is None else gxh.transpose(0, 3, 1, 2)     # NHWC memory
        return gx, gw, gb


GROUPED_IM2COL = GroupedIm2colCPU()
