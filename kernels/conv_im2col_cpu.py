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

Layers of ``CHANNELS_LAST_MIN`` channels or more read the input in channels-last
memory ((N, H, W, C): as it lies where the layer before was a GEMM, else one copy) and
order the columns (kh, kw, c), the filters' matrix alike, so that each window tap is a
run of C neighbouring numbers in both (``numba_im2col.im2col_nhwc``); backward's
col2im writes gx channels-last::

    cols  = im2col_nhwc(x_nhwc[n0:n1])           # (nb*OH*OW, KH*KW*C)
    y     = cols @ W.transpose(0, 2, 3, 1).reshape(OC, KH*KW*C).T + b
"""


from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import cpu_threads, numba_im2col as loops
from .geometry import ConvGeometry
from .layout import as_nhwc
from .workspace import WORKSPACE

CHUNK_BYTES = 4 << 20     # columns per GEMM: a few images
SHORT_ROW = 16            # window rows of at most this many numbers: columns stored transposed
CHANNELS_LAST_MIN = 16    # at least this many channels: columns (kh, kw, c), channels-last


@dataclass
class Im2colSaved:
    """What backward needs: the input as given and the filters as a matrix."""
    x: object             # (N, C, H, W), any memory order; (N, H, W, C) if channels_last
    w_mat: object         # (OC, C*KH*KW), a view of the weight; (OC, KH*KW*C) if channels_last
    g: ConvGeometry
    channels_last: bool = False


class Im2colGemmCPU:
    name = "im2col+GEMM"

    def __init__(self, chunk_bytes=CHUNK_BYTES):
        self.chunk_bytes = chunk_bytes

    def images_per_chunk(self, g: ConvGeometry, itemsize: int) -> int:
        return max(1, min(g.N, self.chunk_bytes // max(1, g.P * g.K * itemsize)))

    def transposed(self, g: ConvGeometry) -> bool:
        """Store the columns as (K, rows) when a window row is short."""
        return g.KW * g.C <= SHORT_ROW

    def channels_last(self, g: ConvGeometry) -> bool:
        """Columns (kh, kw, c) from channels-last input (module docstring)."""
        return not self.transposed(g) and g.C >= CHANNELS_LAST_MIN

    def columns(self, x, n0, n1, g: ConvGeometry, dtype):
        """The im2col matrix of images n0..n1-1, (nb*OH*OW, C*KH*KW), in the workspace
        (a transposed view of a (K, rows) buffer for short window rows)."""
        rows = (n1 - n0) * g.P
        if self.transposed(g):
            P = g.P
            colsT = WORKSPACE.get(np, "colsT", (g.K, rows), dtype)        # (K, nb*OH*OW)
            # images a..b-1 of the chunk (cut for threads) fill columns a*P..b*P-1
            cpu_threads.split(n1 - n0, P * g.K, lambda a, b: loops.im2col_t(
                x, n0 + a, n0 + b, g.KH, g.KW, g.SH, g.SW, g.PH, g.PW, g.OH, g.OW,
                colsT[:, a * P:b * P]))
            return colsT.T                                                # (nb*OH*OW, K)
        cols = WORKSPACE.get(np, "cols", (rows, g.K), dtype)              # (nb*OH*OW, K)
        loops.im2col(x, n0, n1, g.KH, g.KW, g.SH, g.SW, g.PH, g.PW, g.OH, g.OW, cols)
        return cols

    def col2im(self, gcols, n0, n1, g: ConvGeometry, gx):
        """gx[n0:n1] = col2im(gcols): gcols ((n1-n0)*OH*OW, K) C-contiguous, gx plain."""
        loops.col2im(gcols, n0, n1, g.KH, g.KW, g.SH, g.SW, g.PH, g.PW, g.OH, g.OW, gx,
                     gx.dtype.type(0))

    def columns_nhwc(self, xh, n0, n1, g: ConvGeometry):
        """The (kh, kw, c) columns of images n0..n1-1 of xh (N, H, W, C), in the
        workspace: (nb*OH*OW, KH*KW*C)."""
        P = g.P
        cols = WORKSPACE.get(np, "cols", ((n1 - n0) * P, g.K), xh.dtype)
        # images a..b-1 of the chunk (cut for threads) fill rows a*P..b*P-1 of cols
        cpu_threads.split(n1 - n0, P * g.K, lambda a, b: loops.im2col_nhwc(
            xh, n0 + a, n0 + b, g.KH, g.KW, g.SH, g.SW, g.PH, g.PW, g.OH, g.OW,
            cols[a * P:b * P]))
        return cols

    def col2im_nhwc(self, gcols, n0, n1, g: ConvGeometry, gx):
        """gx[n0:n1] (N, H, W, C) = col2im of the (kh, kw, c) columns gcols
        ((n1-n0)*OH*OW, KH*KW*C), images cut for threads."""
        P = g.P
        cpu_threads.split(n1 - n0, P * g.K, lambda a, b: loops.col2im_nhwc(
            gcols[a * P:b * P], n0 + a, n0 + b, g.KH, g.KW, g.SH, g.SW, g.PH, g.PW, g.OH,
            g.OW, gx, gx.dtype.type(0)))

    def forward(self, x, weight, bias, g: ConvGeometry, keep: bool):
        """y (N, OC, OH, OW) (a view of channels-last memory), and what backward needs."""
        N, P, K, OC = g.N, g.P, g.K, g.OC
        if self.channels_last(g):
            x = nhwc(x)                                             # (N, H, W, C)
            # (OC, C, KH*KW) -> (OC, KH*KW, C) -> (OC, KH*KW*C): columns (kh, kw, c)
            w_mat = last_two_swapped(weight.reshape(OC, g.C, g.KH * g.KW)).reshape(OC, K)
        else:
            w_mat = weight.reshape(OC, K)                           # (OC, C*KH*KW)
        y = np.empty((N * P, OC), dtype=x.dtype)                    # (N*OH*OW, OC)
        nb = self.images_per_chunk(g, x.dtype.itemsize)
        for n0 in range(0, N, nb):
            n1 = min(N, n0 + nb)
            cols = (self.columns_nhwc(x, n0, n1, g) if self.channels_last(g)
                    else self.columns(x, n0, n1, g, x.dtype))       # (nb*OH*OW, K)
            out = y[n0 * P:n1 * P]
            cpu_threads.gemm(cols, w_mat.T, out)  # (nb*OH*OW, OC) = (nb*OH*OW, K) @ (K, OC)
            if bias is not None:
                out += bias                                         # (nb*OH*OW, OC) + (OC,)
        saved = Im2colSaved(x, w_mat, g, self.channels_last(g)) if keep else None
        # (N*OH*OW, OC) -> (N, OH, OW, OC) -> (N, OC, OH, OW), a view: memory stays NHWC
        return y.reshape(N, g.OH, g.OW, OC).transpose(0, 3, 1, 2), saved

    def backward(self, gy, s: Im2colSaved, need_x: bool, need_w: bool, need_b: bool):
        """(gx, gW, gb) for gy (N, OC, OH, OW); None where not needed."""
        g = s.g
        N, P, K, OC = g.N, g.P, g.K, g.OC
        # (N, OC, OH, OW) -> (N, OH, OW, OC) -> (N*OH*OW, OC): a view for channels-last gy
        t = gy.transpose(0, 2, 3, 1)
        gy_mat = (t if t.flags.c_contiguous else np.ascontiguousarray(t)).reshape(N * P, OC)
        gb = cpu_threads.column_sums(gy_mat) if need_b else None                 # (OC,)
        # gW's transpose (K, OC) where the columns are stored transposed: colsT @ gy
        # reads both operands along their rows
        tw = self.transposed(g) and not s.channels_last
        gw = np.empty((K, OC) if tw else (OC, K), dtype=gy.dtype) if need_w else None
        cl = s.channels_last
        gx_shape = (N, g.H, g.W, g.C) if cl else (N, g.C, g.H, g.W)
        gx = np.empty(gx_shape, dtype=gy.dtype) if need_x else None
        nb = self.images_per_chunk(g, gy.dtype.itemsize)
        for n0 in range(0, N, nb):
            n1 = min(N, n0 + nb)
            g_chunk = gy_mat[n0 * P:n1 * P]                         # (nb*OH*OW, OC)
            if need_w:
                cols = (self.columns_nhwc(s.x, n0, n1, g) if cl     # the same columns
                        else self.columns(s.x, n0, n1, g, gy.dtype))  # again
                a, b = (cols.T, g_chunk) if tw else (g_chunk.T, cols)
                if n0 == 0:   # (OC, K) = (OC, rows) @ (rows, K), or its transpose
                    cpu_threads.gemm(a, b, gw)
                else:
                    part = WORKSPACE.get(np, "gw", gw.shape, gy.dtype)
                    cpu_threads.gemm(a, b, part)                    # this chunk's share
                    gw += part
            if need_x:
                gcols = WORKSPACE.get(np, "gcols", ((n1 - n0) * P, K), gy.dtype)
                cpu_threads.gemm(g_chunk, s.w_mat, gcols)  # (rows, K) = (rows, OC) @ (OC, K)
                if cl:                                              # images n0..n1-1
                    self.col2im_nhwc(gcols, n0, n1, g, gx)
                else:
                    self.col2im(gcols, n0, n1, g, gx)
        if cl:      # columns (kh, kw, c): gW (OC, KH*KW, C) -> (OC, C, KH, KW), copied
            if need_w:
                gw = last_two_swapped(gw.reshape(OC, g.KH * g.KW, g.C)).reshape(
                    OC, g.C, g.KH, g.KW)
            gx = None if gx is None else gx.transpose(0, 3, 1, 2)   # (N, H, W, C), a view
        elif need_w:                                                # columns (c, kh, kw)
            gw = (np.ascontiguousarray(gw.T) if tw else gw).reshape(OC, g.C, g.KH, g.KW)
        return gx, gw, gb


def last_two_swapped(a):
    """A C-contiguous copy of the 3-D ``a`` with its last two axes swapped. (NumPy copies
    a 3-D transpose about ten times faster than the same data seen as a 4-D one, such
    as (OC, KH, KW, C) -> (OC, C, KH, KW).)"""
    return np.ascontiguousarray(a.transpose(0, 2, 1))


def nhwc(x):
    """x (N, C, H, W) as C-contiguous (N, H, W, C): a view where its memory is
    channels-last, else one copy (plain memory through the 3-D (N, C, H*W) transpose)."""
    if x.flags.c_contiguous:
        N, C, H, W = x.shape
        return last_two_swapped(x.reshape(N, C, H * W)).reshape(N, H, W, C)
    return as_nhwc(np, x)


IM2COL_GEMM = Im2colGemmCPU()
