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

NiN's 1x1 layers, GoogLeNet's Inception branches, ResNet's shortcut (stride 2) and
DenseNet's transition layers run this. NumPy or CuPy arrays alike (the module comes
from the input).
"""

from __future__ import annotations

from tinyalex import backend as B

from .geometry import ConvGeometry


class Pointwise1x1:
    name = "1x1 GEMM (no im2col)"
    condition = "1x1 kernel, no padding"          # ``takes`` in words (ops/conv.py's table)

    @staticmethod
    def takes(g: ConvGeometry) -> bool:
        return g.KH == 1 and g.KW == 1 and g.PH == 0 and g.PW == 0

    def forward(self, x, weight, bias, g: ConvGeometry, keep: bool):
        xp = B.get_array_module(x)
        N, C, OC, P = g.N, g.C, g.OC, g.P
        xs = x[:, :, ::g.SH, ::g.SW]                                   # (N, C, OH, OW)
        xs = xp.ascontiguousarray(xs).reshape(N, C, P)                 # (N, C, P)
        w_mat = weight.reshape(OC, C)                                  # (OC, C)
        y = xp.matmul(w_mat, xs)                                       # (N, OC, P)
        if bias is not None:
            y += bias.reshape(1, OC, 1)                                # (N, OC, P) + (1, OC, 1)
        y = y.reshape(N, OC, g.OH, g.OW)
        return y, ((xs, w_mat, g) if keep else None)

    def backward(self, gy, saved, need_x, need_w, need_b):
        xs, w_mat, g = saved
        xp = B.get_array_module(gy)
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


POINTWISE_1X1 = Pointwise1x1()
