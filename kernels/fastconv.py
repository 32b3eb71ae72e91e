"""The fast convolution shared by the CPU and GPU kernel sets: channels-last images,
im2col one chunk of the batch at a time into a reused buffer, one GEMM per chunk
(letters as in the Notation of ``tinyalex/ops/im2col.py``).

The readable reference (``tinyalex/ops/conv.py``) lays out the whole batch as one
(N*OH*OW, C*KH*KW) matrix and keeps it for the backward pass. That matrix is large
(208 MB for AlexNet's second convolution at batch 32) and is rewritten to fresh
memory every step. Here instead:

* images are channels-last, (N, H, W, C) in memory, while the tensors the user sees
  keep PyTorch's (N, C, H, W) shape (a transposed view of the same memory). A window
  row is then KW*C numbers in a row of memory, and the GEMM's (N*OH*OW, OC) result
  *is* the next layer's channels-last input, with no transpose;
* the columns are ordered (kh, kw, c), so the filters are used as
  ``weight.transpose(0, 2, 3, 1).reshape(OC, KH*KW*C)`` (a small copy per call);
* ``im2col`` fills a workspace for a few images at a time (``chunk_bytes``), which is
  multiplied at once while it is still in cache; the workspace is reused by every
  layer and every step, and never handed out;
* backward keeps only the input (which the previous layer produced anyway) and
  computes the columns again, chunk by chunk: ``gW`` accumulates over the chunks, and
  each chunk's column gradient is added back onto the image with col2im (im2col's
  adjoint) before the next chunk overwrites the workspace.

An ``Engine`` is built with the array module and three primitives: ``im2col(xh, n0,
n1, geometry, cols)``, ``col2im(gcols, n0, n1, geometry, gxh)`` (writing images n0..n1-1
of gxh) and ``matmul(a, b, out)``; with ``winograd_run`` (how to call a compiled loop;
CPU only) 3x3 and 5x5 stride-1 layers take the Winograd path of ``winograd.py``, and
with ``direct`` (CPU only) stride-1 layers with few channels take the direct
convolution of ``direct.py``, on plain (N, C, H, W) memory.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

import numpy as np

from .direct import applies as direct_applies


@dataclass(frozen=True)
class Geometry:
    N: int
    C: int
    H: int
    W: int
    OC: int
    KH: int
    KW: int
    SH: int
    SW: int
    PH: int
    PW: int
    OH: int
    OW: int

    @property
    def K(self) -> int:
        return self.KH * self.KW * self.C           # columns of the im2col matrix

    @property
    def P(self) -> int:
        return self.OH * self.OW                    # rows per image


@dataclass
class Saved:
    """What the fast backward needs: the input and the filters."""
    xh: object          # (N, H, W, C) channels-last; (N, C, H, W) plain when ``direct``
    w_hwc: object       # (OC, KH*KW*C); the (OC, C, KH, KW) weight for Winograd and direct
    g: Geometry
    bias: bool
    winograd: int = 0   # r of the Winograd F(mxm, rxr) path taken, 0 for im2col
    winograd_m: int = 2  # its m: outputs per tile side (4 for F(4x4, 3x3))
    direct: bool = False  # the direct path (``direct.py``) was taken


def as_nhwc(xp, x):
    """(N, C, H, W) -> its channels-last (N, H, W, C) C-contiguous array (a view when the
    memory is channels-last already, a copy otherwise)."""
    t = x.transpose(0, 2, 3, 1)                     # (N, H, W, C)
    return t if t.flags.c_contiguous else xp.ascontiguousarray(t)


KMAJOR_RUN = 16      # window rows of at most this many numbers (KW*C) use im2col_kmajor


WINOGRAD_CHUNK_BYTES = 8 << 20   # transformed tiles per GEMM batch (V or M)
WINOGRAD_MIN_CHANNELS = 96  # below, the direct convolution (CPU) is faster: Winograd's
                            # GEMMs are too thin (benchmarks/README.md)


WINOGRAD_F43 = True         # 3x3 layers take F(4x4, 3x3) rather than F(2x2, 3x3)


def winograd_size(g: Geometry) -> int:
    """r when the layer takes Winograd F(mxm, rxr) (r = 3 or 5, stride 1, padding < r),
    else 0."""
    r = g.KH
    if r in (3, 5) and g.KW == r and g.SH == 1 and g.SW == 1 and g.PH < r and g.PW < r \
            and min(g.C, g.OC) >= WINOGRAD_MIN_CHANNELS:
        return r
    return 0


def winograd_tile(r: int) -> int:
    """m, the outputs per tile side, of the Winograd path for r x r filters."""
    return 4 if r == 3 and WINOGRAD_F43 else 2


class Workspace(threading.local):
    """Scratch buffers that grow to the largest size asked for and are reused.

    Thread-local, so that two threads training at once never share one. A buffer is
    only ever used inside one kernel call and never returned to a caller.
    """

    def __init__(self):
        self.buffers = {}

    def get(self, xp, name, shape, dtype):
        size = 1
        for s in shape:
            size *= int(s)
        key = (name, np.dtype(dtype).str)
        buf = self.buffers.get(key)
        if buf is None or buf.size < size:
            self.buffers.pop(key, None)             # free the old one first
            buf = self.buffers[key] = xp.empty(size, dtype=dtype)
        return buf[:size].reshape(shape)

    def clear(self):
        self.buffers.clear()


class Engine:
    def __init__(self, xp, im2col, col2im, matmul, chunk_bytes: int, winograd_run=None,
                 im2col_kmajor=None, direct=None):
        self.xp, self.im2col, self.col2im, self.matmul = xp, im2col, col2im, matmul
        self.im2col_kmajor = im2col_kmajor
        self.chunk_bytes = chunk_bytes
        self.workspace = Workspace()
        self.winograd = None
        if winograd_run is not None:        # 3x3 stride-1 layers: see winograd.py
            from .winograd import Winograd
            self.winograd = Winograd(self.workspace, WINOGRAD_CHUNK_BYTES, winograd_run,
                                     lambda a, b, out: self.matmul(a, b, out))
        self.direct = None
        if direct is not None:              # direct(parallel, threads): see direct.py
            from .direct import DirectConv
            self.direct = DirectConv(*direct, fallback=self._im2col_backward_of)

    def _columns(self, xh, n0, n1, g: Geometry, dtype):
        """The chunk's im2col matrix (nb*OH*OW, K): a row-major workspace, or for few
        channels the transpose of a (K, nb*OH*OW) workspace (long contiguous runs)."""
        rows = (n1 - n0) * g.P
        if self.im2col_kmajor is not None and g.KW * g.C <= KMAJOR_RUN:
            colsT = self.workspace.get(self.xp, "colsT", (g.K, rows), dtype)  # (K, nb*OH*OW)
            self.im2col_kmajor(xh, n0, n1, g, colsT)
            return colsT.T                                                   # (nb*OH*OW, K)
        cols = self.workspace.get(self.xp, "cols", (rows, g.K), dtype)       # (nb*OH*OW, K)
        self.im2col(xh, n0, n1, g, cols)
        return cols

    def images_per_chunk(self, g: Geometry, itemsize: int) -> int:
        return max(1, min(g.N, self.chunk_bytes // max(1, g.P * g.K * itemsize)))

    def forward(self, x, weight, bias, g: Geometry, keep: bool):
        """y (N, OC, OH, OW) (channels-last memory) and what backward needs."""
        xp = self.xp
        N, P, K, OC = g.N, g.P, g.K, g.OC
        r = winograd_size(g) if self.winograd is not None else 0
        if not r and self.direct is not None and direct_applies(g):
            y, xc, w = self.direct.forward(x, weight, bias, g)      # (N, OC, OH, OW)
            return y, (Saved(xc, w, g, bias is not None, direct=True) if keep else None)
        xh = as_nhwc(xp, x)                                         # (N, H, W, C)
        if r:
            from .winograd import filter_transform
            m = winograd_tile(r)
            U = filter_transform(weight, x.dtype, m=m)              # ((m+r-1)**2, OC, C)
            # (N, OH, OW, OC)
            yh = self.winograd.conv(xh, U, bias, g.PH, g.PW, g.OH, g.OW, r, m)
            saved = Saved(xh, weight, g, bias is not None, winograd=r,
                          winograd_m=m) if keep else None
            return yh.transpose(0, 3, 1, 2), saved                  # (N, OC, OH, OW) view
        # (OC, C, KH, KW) -> (OC, KH, KW, C) -> (OC, KH*KW*C), columns ordered (kh, kw, c)
        w_hwc = weight.transpose(0, 2, 3, 1).reshape(OC, K)
        y = xp.empty((N * P, OC), dtype=x.dtype)                    # (N*OH*OW, OC)
        nb = self.images_per_chunk(g, x.dtype.itemsize)
        for n0 in range(0, N, nb):
            n1 = min(N, n0 + nb)
            cols = self._columns(xh, n0, n1, g, x.dtype)            # (nb*OH*OW, KH*KW*C)
            out = y[n0 * P:n1 * P]
            self.matmul(cols, w_hwc.T, out)          # (nb*OH*OW, OC) = (nb*OH*OW, K) @ (K, OC)
            if bias is not None:
                out += bias                                         # (nb*OH*OW, OC) + (OC,)
        saved = Saved(xh, w_hwc, g, bias is not None) if keep else None
        # (N*OH*OW, OC) -> (N, OH, OW, OC) -> (N, OC, OH, OW), a view: memory stays NHWC
        return y.reshape(N, g.OH, g.OW, OC).transpose(0, 3, 1, 2), saved

    def backward(self, gy, s: Saved, need_x: bool, need_w: bool, need_b: bool):
        """(gx, gW, gb) for gy (N, OC, OH, OW); None where not needed."""
        if s.direct:
            return self.direct.backward(gy, s.xh, s.w_hwc, s.g, need_x, need_w, need_b)
        xp, ws, g = self.xp, self.workspace, s.g
        N, P, K, OC = g.N, g.P, g.K, g.OC
        # (N, OC, OH, OW) -> (N, OH, OW, OC) -> (N*OH*OW, OC): a view for channels-last gy
        gy_mat = as_nhwc(xp, gy).reshape(N * P, OC)
        gb = gy_mat.sum(axis=0) if need_b else None                 # (OC,)
        if s.winograd:
            gyh = gy_mat.reshape(N, g.OH, g.OW, OC)                 # (N, OH, OW, OC)
            m = s.winograd_m
            gw = (self.winograd.weight_gradient(s.xh, gyh, g.PH, g.PW, s.winograd, m)
                  if need_w else None)
            gxh = (self.winograd.input_gradient(gyh, s.w_hwc, g.PH, g.PW, g.H, g.W, m)
                   .transpose(0, 3, 1, 2) if need_x else None)      # (N, C, H, W) view
            return gxh, gw, gb
        gw = xp.empty((OC, K), dtype=gy.dtype) if need_w else None  # (OC, KH*KW*C)
        gxh = xp.empty((N, g.H, g.W, g.C), dtype=gy.dtype) if need_x else None
        nb = self.images_per_chunk(g, gy.dtype.itemsize)
        for n0 in range(0, N, nb):
            n1 = min(N, n0 + nb)
            rows = (n1 - n0) * P
            g_chunk = gy_mat[n0 * P:n1 * P]                         # (nb*OH*OW, OC)
            if need_w:
                cols = self._columns(s.xh, n0, n1, g, gy.dtype)     # the same columns again
                if n0 == 0:
                    self.matmul(g_chunk.T, cols, gw)  # (OC, K) = (OC, nb*OH*OW) @ (nb*OH*OW, K)
                else:
                    part = ws.get(xp, "gw", (OC, K), gy.dtype)
                    self.matmul(g_chunk.T, cols, part)              # (OC, K), this chunk's share
                    gw += part
            if need_x:
                gcols = ws.get(xp, "gcols", (rows, K), gy.dtype)
                self.matmul(g_chunk, s.w_hwc, gcols)   # (nb*OH*OW, K) = (nb*OH*OW, OC) @ (OC, K)
                self.col2im(gcols, n0, n1, g, gxh)                  # images n0..n1-1 of gxh
        if need_w:
            # (OC, KH*KW*C) -> (OC, KH, KW, C) -> (OC, C, KH, KW), contiguous for the optimiser
            gw = xp.ascontiguousarray(gw.reshape(OC, g.KH, g.KW, g.C).transpose(0, 3, 1, 2))
        if need_x:
            gxh = gxh.transpose(0, 3, 1, 2)          # (N, H, W, C) -> (N, C, H, W), a view
        return gxh, gw, gb

    def _im2col_backward_of(self, gy, x, weight, g: Geometry, need_x, need_w, need_b):
        """The im2col backward for an input x (N, C, H, W) and weight (OC, C, KH, KW)
        (the direct path's fallback)."""
        # (OC, C, KH, KW) -> (OC, KH, KW, C) -> (OC, KH*KW*C), columns ordered (kh, kw, c)
        w_hwc = weight.transpose(0, 2, 3, 1).reshape(g.OC, g.K)
        return self.backward(gy, Saved(as_nhwc(self.xp, x), w_hwc, g, False), need_x,
                             need_w, need_b)
