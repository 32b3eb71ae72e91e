"""Convolution as im2col + one GEMM on the CPU with compiled loops: the algorithm of
``tinyalex/ops/conv.py``'s reference, a few images at a time (letters as in the
Notation of ``tinyalex/ops/im2col.py``; loops in ``numba_im2col.py``). It runs in the
default mode where no faster algorithm takes a layer (AlexNet's first);
``TINYALEX_CONV=im2col`` runs the reference's own functions instead.

The reference lays out the whole batch as one (N*OH*OW, C*KH*KW) matrix and keeps it
for backward: 208 MB for AlexNet's second layer at batch 32, rewritten to fresh
memory every step. Here the same matrix, columns in the same (c, kh, kw) order, is
built for a chunk of images at a time into a reused workspace (``CHUNK_BYTES``: small
enough to stay in cache between im2col writing it and the GEMM reading it) and
multiplied at once::

    cols  = im2col(x[n0:n1])                     # (nb*OH*OW, C*KH*KW)
    y     = cols @ W.reshape(OC, C*KH*KW).T + b  # (nb*OH*OW, OC): rows of the result

The result rows (n, oh, ow) x OC are the output in channels-last memory, returned as
an (N, OC, OH, OW) view with no transpose. Backward keeps only the input and the
filters, and builds each chunk's columns again::

    gW   += gy_chunk.T @ cols                    # (OC, C*KH*KW)
    gcols = gy_chunk @ W                         # (nb*OH*OW, C*KH*KW)
    gx[n0:n1] = col2im(gcols)                    # im2col's adjoint

Few-channel layers with short window rows (AlexNet's first) store the columns
transposed, (C*KH*KW, nb*OH*OW): the same matrix, long contiguous runs; BLAS takes the
transposed operand at no cost.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import cpu_threads, numba_im2col as loops
from .geometry import ConvGeometry
from .workspace import WORKSPACE

CHUNK_BYTES = 4 << 20     # columns per GEMM: a few images
SHORT_ROW = 16            # window rows of at most this many numbers: columns stored transposed


@dataclass
class Im2colSaved:
    """What backward needs: the input as given and the filters as a matrix."""
    x: object             # (N, C, H, W), any memory order
    w_mat: object         # (OC, C*KH*KW), a view of the weight
    g: ConvGeometry


class Im2colGemmCPU:
    name = "im2col+GEMM"

    def __init__(self, chunk_bytes=CHUNK_BYTES):
        self.chunk_bytes = chunk_bytes

    def images_per_chunk(self, g: ConvGeometry, itemsize: int) -> int:
        return max(1, min(g.N, self.chunk_bytes // max(1, g.P * g.K * itemsize)))

    def transposed(self, g: ConvGeometry) -> bool:
        """Store the columns as (K, rows) when a window row is short."""
        return g.KW * g.C <= SHORT_ROW

    def columns(self, x, n0, n1, g: ConvGeometry, dtype):
        """The im2col matrix of images n0..n1-1, (nb*OH*OW, C*KH*KW), in the workspace
        (a transposed view of a (K, rows) buffer for short window rows)."""
        rows = (n1 - n0) * g.P
        if self.transposed(g):
            colsT = WORKSPACE.get(np, "colsT", (g.K, rows), dtype)        # (K, nb*OH*OW)
            loops.im2col_t(x, n0, n1, g.KH, g.KW, g.SH, g.SW, g.PH, g.PW, g.OH, g.OW, colsT)
            return colsT.T                                                # (nb*OH*OW, K)
        cols = WORKSPACE.get(np, "cols", (rows, g.K), dtype)              # (nb*OH*OW, K)
        loops.im2col(x, n0, n1, g.KH, g.KW, g.SH, g.SW, g.PH, g.PW, g.OH, g.OW, cols)
        return cols

    def col2im(self, gcols, n0, n1, g: ConvGeometry, gx):
        """gx[n0:n1] = col2im(gcols): gcols ((n1-n0)*OH*OW, K) C-contiguous, gx plain."""
        loops.col2im(gcols, n0, n1, g.KH, g.KW, g.SH, g.SW, g.PH, g.PW, g.OH, g.OW, gx,
                     gx.dtype.type(0))

    def forward(self, x, weight, bias, g: ConvGeometry, keep: bool):
        """y (N, OC, OH, OW) (a view of channels-last memory), and what backward needs."""
        N, P, K, OC = g.N, g.P, g.K, g.OC
        w_mat = weight.reshape(OC, K)                               # (OC, C*KH*KW)
        y = np.empty((N * P, OC), dtype=x.dtype)                    # (N*OH*OW, OC)
        nb = self.images_per_chunk(g, x.dtype.itemsize)
        for n0 in range(0, N, nb):
            n1 = min(N, n0 + nb)
            cols = self.columns(x, n0, n1, g, x.dtype)              # (nb*OH*OW, C*KH*KW)
            out = y[n0 * P:n1 * P]
            cpu_threads.gemm(cols, w_mat.T, out)  # (nb*OH*OW, OC) = (nb*OH*OW, K) @ (K, OC)
            if bias is not None:
                out += bias                                         # (nb*OH*OW, OC) + (OC,)
        saved = Im2colSaved(x, w_mat, g) if keep else None
        # (N*OH*OW, OC) -> (N, OH, OW, OC) -> (N, OC, OH, OW), a view: memory stays NHWC
        return y.reshape(N, g.OH, g.OW, OC).transpose(0, 3, 1, 2), saved

    def backward(self, gy, s: Im2colSaved, need_x: bool, need_w: bool, need_b: bool):
        """(gx, gW, gb) for gy (N, OC, OH, OW); None where not needed."""
        g = s.g
        N, P, K, OC = g.N, g.P, g.K, g.OC
        # (N, OC, OH, OW) -> (N, OH, OW, OC) -> (N*OH*OW, OC): a view for channels-last gy
        t = gy.transpose(0, 2, 3, 1)
        gy_mat = (t if t.flags.c_contiguous else np.ascontiguousarray(t)).reshape(N * P, OC)
        gb = gy_mat.sum(axis=0) if need_b else None                 # (OC,)
        gw = np.empty((OC, K), dtype=gy.dtype) if need_w else None  # (OC, C*KH*KW)
        gx = np.empty((N, g.C, g.H, g.W), dtype=gy.dtype) if need_x else None
        nb = self.images_per_chunk(g, gy.dtype.itemsize)
        for n0 in range(0, N, nb):
            n1 = min(N, n0 + nb)
            g_chunk = gy_mat[n0 * P:n1 * P]                         # (nb*OH*OW, OC)
            if need_w:
                cols = self.columns(s.x, n0, n1, g, gy.dtype)       # the same columns again
                if n0 == 0:
                    cpu_threads.gemm(g_chunk.T, cols, gw)  # (OC, K) = (OC, rows) @ (rows, K)
                else:
                    part = WORKSPACE.get(np, "gw", (OC, K), gy.dtype)
                    cpu_threads.gemm(g_chunk.T, cols, part)         # this chunk's share
                    gw += part
            if need_x:
                gcols = WORKSPACE.get(np, "gcols", ((n1 - n0) * P, K), gy.dtype)
                cpu_threads.gemm(g_chunk, s.w_mat, gcols)  # (rows, K) = (rows, OC) @ (OC, K)
                self.col2im(gcols, n0, n1, g, gx)                   # images n0..n1-1 of gx
        if need_w:
            gw = gw.reshape(OC, g.C, g.KH, g.KW)                    # columns are (c, kh, kw)
        return gx, gw, gb


IM2COL_GEMM = Im2colGemmCPU()
