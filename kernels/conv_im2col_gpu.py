"""Convolution as im2col + one GEMM on the GPU (CuPy backend): the im2col and col2im
kernels of ``cuda_kernels.py`` and cuBLAS through CuPy (letters as in the Notation of
``tinyalex/ops/im2col.py``).

The whole batch is one chunk (up to ``CHUNK_BYTES`` of columns, in a workspace reused
by every layer and step; CuPy's memory pool reuses every other buffer). Images are
channels-last, (N, H, W, C) in memory, so the GEMM's (N*OH*OW, OC) result is the next
layer's input with no transpose. Columns are ordered (kh, kw, c) by default, so that
a window row is KW*C numbers in a row of memory; ``order="c,kh,kw"``
(``TINYALEX_CONV=im2col``) builds the reference's (c, kh, kw) columns instead. The
GEMMs run in TF32 where enabled and available (``precision.py``).

Not yet run on a GPU: tested in CI under Numba's CUDA simulator on NumPy arrays.
"""

from __future__ import annotations

from dataclasses import dataclass

from tinyalex import backend as B

from . import gpu_launch, precision
from .geometry import ConvGeometry
from .layout import as_nhwc
from .workspace import Workspace

CHUNK_BYTES = 1 << 30


@dataclass
class GpuConvSaved:
    xh: object            # (N, H, W, C) channels-last
    w_mat: object         # (OC, K), columns in this algorithm's order
    g: ConvGeometry


class Im2colGemmGPU:
    def __init__(self, xp, launch, order="kh,kw,c", chunk_bytes=CHUNK_BYTES):
        if order not in ("kh,kw,c", "c,kh,kw"):
            raise ValueError(f"im2col+GEMM (GPU): order must be 'kh,kw,c' or 'c,kh,kw', "
                             f"got {order!r}")
        from . import cuda_kernels  # noqa: PLC0415 - numba.cuda, loaded for a GPU set only
        self.xp, self.launch, self.chunk_bytes = xp, launch, chunk_bytes
        self.loops = cuda_kernels
        self.cl = order == "kh,kw,c"
        self.name = "im2col+GEMM (kh,kw,c)" if self.cl else "im2col+GEMM"
        self.workspace = Workspace()

    def _w_mat(self, weight, g):
        if self.cl:       # (OC, C, KH, KW) -> (OC, KH, KW, C) -> (OC, KH*KW*C)
            return weight.transpose(0, 2, 3, 1).reshape(g.OC, g.K)
        return weight.reshape(g.OC, g.K)                            # (OC, C*KH*KW)

    def _matmul(self, a, b, out):
        with precision.conv_compute_type(self.xp, a.dtype):
            self.xp.matmul(a, b, out=out)

    def _columns(self, xh, n0, n1, g, dtype):
        N, H, W, C = xh.shape
        cols = self.workspace.get(self.xp, "cols", ((n1 - n0) * g.P, g.K), dtype)
        self.launch(self.loops.im2col, cols.size, xh.reshape(N * H, W * C), H, W, C, n0, n1,
                    g.KH, g.KW, g.SH, g.SW, g.PH, g.PW, g.OH, g.OW, cols, self.cl)
        return cols                                                 # (nb*OH*OW, K)

    def images_per_chunk(self, g, itemsize):
        return max(1, min(g.N, self.chunk_bytes // max(1, g.P * g.K * itemsize)))

    def forward(self, x, weight, bias, g: ConvGeometry, keep: bool):
        xp, N, P, OC = self.xp, g.N, g.P, g.OC
        xh = as_nhwc(xp, x)                                         # (N, H, W, C)
        w_mat = self._w_mat(weight, g)                              # (OC, K)
        y = xp.empty((N * P, OC), dtype=x.dtype)                    # (N*OH*OW, OC)
        nb = self.images_per_chunk(g, x.dtype.itemsize)
        for n0 in range(0, N, nb):
            n1 = min(N, n0 + nb)
            out = y[n0 * P:n1 * P]
            # (nb*OH*OW, OC) = (nb*OH*OW, K) @ (K, OC)
            self._matmul(self._columns(xh, n0, n1, g, x.dtype), w_mat.T, out)
            if bias is not None:
                out += bias                                         # (nb*OH*OW, OC) + (OC,)
        saved = GpuConvSaved(xh, w_mat, g) if keep else None
        return y.reshape(N, g.OH, g.OW, OC).transpose(0, 3, 1, 2), saved

    def backward(self, gy, s: GpuConvSaved, need_x, need_w, need_b):
        xp, g = self.xp, s.g
        N, P, K, OC = g.N, g.P, g.K, g.OC
        if gy.shape != (N, OC, g.OH, g.OW) or gy.dtype != s.xh.dtype:
            raise ValueError(f"conv2d backward: gradient of shape {gy.shape} ({gy.dtype}), "
                             f"expected {(N, OC, g.OH, g.OW)} ({s.xh.dtype})")
        gy_mat = as_nhwc(xp, gy).reshape(N * P, OC)                 # (N*OH*OW, OC)
        gb = gy_mat.sum(axis=0) if need_b else None                 # (OC,)
        gw = xp.empty((OC, K), dtype=gy.dtype) if need_w else None  # (OC, K)
        gxh = xp.empty((N, g.H, g.W, g.C), dtype=gy.dtype) if need_x else None
        nb = self.images_per_chunk(g, gy.dtype.itemsize)
        for n0 in range(0, N, nb):
            n1 = min(N, n0 + nb)
            g_chunk = gy_mat[n0 * P:n1 * P]                         # (nb*OH*OW, OC)
            if need_w:
                cols = self._columns(s.xh, n0, n1, g, gy.dtype)
                part = gw if n0 == 0 else self.workspace.get(xp, "gw", (OC, K), gy.dtype)
                self._matmul(g_chunk.T, cols, part)     # (OC, K) = (OC, rows) @ (rows, K)
                if n0:
                    gw += part
            if need_x:
                gcols = self.workspace.get(xp, "gcols", ((n1 - n0) * P, K), gy.dtype)
                self._matmul(g_chunk, s.w_mat, gcols)   # (rows, K) = (rows, OC) @ (OC, K)
                H, W, C = g.H, g.W, g.C
                self.launch(self.loops.col2im, (n1 - n0) * H * W * C, gcols, H, W, C, n0, n1,
                            g.KH, g.KW, g.SH, g.SW, g.PH, g.PW, g.OH, g.OW,
                            gxh.reshape(N * H, W * C), self.cl, gy.dtype.type(0))
        if need_w:
            if self.cl:   # (OC, KH*KW*C) -> (OC, KH, KW, C) -> (OC, C, KH, KW)
                gw = xp.ascontiguousarray(gw.reshape(OC, g.KH, g.KW, g.C).transpose(0, 3, 1, 2))
            else:
                gw = gw.reshape(OC, g.C, g.KH, g.KW)
        gx = gxh.transpose(0, 3, 1, 2) if need_x else None          # (N, C, H, W) view
        return gx, gw, gb


_cache = {}


def for_cupy(order="kh,kw,c") -> Im2colGemmGPU:
    """The algorithm on CuPy arrays (CuPy and a GPU must be usable)."""
    if order not in _cache:
        _cache[order] = Im2colGemmGPU(B.cupy_module(), gpu_launch.for_cupy(), order)
    return _cache[order]
