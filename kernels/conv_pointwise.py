"""A 1x1 convolution is a GEMM: no im2col, no window (letters as in the Notation of
``tinyalex/ops/im2col.py``).

With KH = KW = 1 and no padding, output pixel (oh, ow) of image n is the C-vector of
input pixel (oh*SH, ow*SW) times the (OC, C) filter matrix. So take the strided pixels
(a view; one copy of N*C*OH*OW numbers when the stride is above 1, never the KH*KW-times
im2col matrix) and multiply, one batched GEMM straight into NCHW::

    xs = x[:, :, ::SH, ::SW]                     # (N, C, OH, OW)
    y  = W.reshape(OC, C) @ xs.reshape(N, C, P)  # (N, OC, P) = (OC, C) @ (N, C, P)

Backward::

    gW  = sum_n gy[n] @ xs[n].T                  # (OC, C): one GEMM over all N*P pixels
    gxs = W.T @ gy                               # (N, C, P) = (C, OC) @ (N, OC, P)
    gx[:, :, ::SH, ::SW] = gxs                   # the pixels the stride skipped get 0

Where the input lies channels-last, or the stride is above 1 (the strided pixels are
copied anyway), the pixels are rows instead and the whole batch is one GEMM, its result
the output in channels-last memory, as the im2col and Winograd convolutions return
theirs (so a residual addition meets two arrays in one order)::

    xs = x[:, :, ::SH, ::SW] as (N*OH*OW, C)     # rows of pixels, channels-last
    y  = xs @ W.reshape(OC, C).T                 # (N*OH*OW, OC) = (N*OH*OW, C) @ (C, OC)
    gW = gy.T @ xs,  gxs = gy @ W                # (OC, C), (N*OH*OW, C)

NiN's 1x1 layers, GoogLeNet's Inception branches, ResNet's shortcut (stride 2) and
DenseNet's transition layers run this. NumPy or CuPy arrays alike (the module comes
from the input); on NumPy the rows' GEMMs are cut over the CPU threads
(``cpu_threads.gemm``).
"""

from __future__ import annotations

import numpy as np

from tinyalex import backend as B

from . import cpu_threads
from .geometry import ConvGeometry


def _gemm(xp, a, b):
    """a @ b into a fresh array: cut over the CPU threads on NumPy."""
    if xp is not np:
        return xp.matmul(a, b)
    out = np.empty((a.shape[0], b.shape[1]), dtype=a.dtype)
    cpu_threads.gemm(a, b, out)
    return out


def _channels_last(x) -> bool:
    return x.ndim == 4 and not x.flags.c_contiguous \
        and x.transpose(0, 2, 3, 1).flags.c_contiguous


class Pointwise1x1:
    name = "1x1 GEMM (no im2col)"
    condition = "1x1 kernel, no padding"          # ``takes`` in words (ops/conv.py's table)

    @staticmethod
    def takes(g: ConvGeometry) -> bool:
        return g.KH == 1 and g.KW == 1 and g.PH == 0 and g.PW == 0

    @staticmethod
    def rows(x, g: ConvGeometry) -> bool:
        """Whether the pixels go as rows (channels-last; module docstring)."""
        return g.SH > 1 or g.SW > 1 or _channels_last(x)

    def forward(self, x, weight, bias, g: ConvGeometry, keep: bool):
        xp = B.get_array_module(x)
        N, C, OC, P = g.N, g.C, g.OC, g.P
        if self.rows(x, g):
            xs = x[:, :, ::g.SH, ::g.SW]                               # (N, C, OH, OW)
            if _channels_last(x):
                xs = xp.ascontiguousarray(xs.transpose(0, 2, 3, 1))    # (N, OH, OW, C)
            else:                  # plain: (N, C, P) -> (N, P, C) as a 3-D transpose
                xs = xp.ascontiguousarray(xp.ascontiguousarray(xs).reshape(N, C, P)
                                          .transpose(0, 2, 1))
            xs = xs.reshape(N * P, C)                                  # (N*OH*OW, C)
            w_mat = weight.reshape(OC, C)                              # (OC, C)
            y = _gemm(xp, xs, w_mat.T)             # (N*OH*OW, OC) = (N*OH*OW, C) @ (C, OC)
            if bias is not None:
                y += bias                                              # + (OC,)
            y = y.reshape(N, g.OH, g.OW, OC).transpose(0, 3, 1, 2)     # NHWC memory
            return y, ((xs, w_mat, True, g) if keep else None)
        xs = x[:, :, ::g.SH, ::g.SW]                                   # (N, C, OH, OW)
        xs = xp.ascontiguousarray(xs).reshape(N, C, P)                 # (N, C, P)
        w_mat = weight.reshape(OC, C)                                  # (OC, C)
        y = xp.matmul(w_mat, xs)                                       # (N, OC, P)
        if bias is not None:
            y += bias.reshape(1, OC, 1)                                # (N, OC, P) + (1, OC, 1)
        y = y.reshape(N, OC, g.OH, g.OW)
        return y, ((xs, w_mat, False, g) if keep else None)

    def backward(self, gy, saved, need_x, need_w, need_b):
        xs, w_mat, rows, g = saved
        xp = B.get_array_module(gy)
        if rows:
            return self._backward_rows(xp, gy, xs, w_mat, g, need_x, need_w, need_b)
        gy = xp.ascontiguousarray(gy).reshape(g.N, g.OC, g.P)          # (N, OC, P)
        gx = gw = gb = None
        if need_b:
            gb = gy.sum(axis=(0, 2))                                   # (OC,)
        if need_w:
            # (OC, C) = sum over n and p of gy (N, OC, P) times xs (N, C, P)
            gw = xp.tensordot(gy, xs, axes=([0, 2], [0, 2])).reshape(g.OC, g.C, 1, 1)
        if need_x:
            gxs = xp.matmul(w_mat.T, gy)                               # (N, C, P)
            if g.SH == 1 and g.SW == 1:
                gx = gxs.reshape(g.N, g.C, g.H, g.W)
            else:
                gx = xp.zeros((g.N, g.C, g.H, g.W), dtype=gy.dtype)
                gx[:, :, ::g.SH, ::g.SW] = gxs.reshape(g.N, g.C, g.OH, g.OW)
        return gx, gw, gb

    def _backward_rows(self, xp, gy, xs, w_mat, g, need_x, need_w, need_b):
        N, C, OC, P = g.N, g.C, g.OC, g.P
        t = gy.transpose(0, 2, 3, 1)                                   # (N, OH, OW, OC)
        gy = (t if t.flags.c_contiguous else xp.ascontiguousarray(t)).reshape(N * P, OC)
        gx = gw = gb = None
        if need_b:                                                     # (OC,)
            gb = cpu_threads.column_sums(gy) if xp is np else gy.sum(axis=0)
        if need_w:
            gw = _gemm(xp, gy.T, xs).reshape(OC, C, 1, 1)  # (OC, C) = (OC, N*P) @ (N*P, C)
        if need_x:
            gxs = _gemm(xp, gy, w_mat)                     # (N*P, C) = (N*P, OC) @ (OC, C)
            if g.SH == 1 and g.SW == 1:
                gxh = gxs.reshape(N, g.H, g.W, C)
            else:
                gxh = xp.zeros((N, g.H, g.W, C), dtype=gy.dtype)     # (N, H, W, C)
                gxh[:, ::g.SH, ::g.SW] = gxs.reshape(N, g.OH, g.OW, C)
            gx = gxh.transpose(0, 3, 1, 2)                             # NHWC memory
        return gx, gw, gb


POINTWISE_1X1 = Pointwise1x1()
