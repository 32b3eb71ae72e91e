"""Convolution as im2col + one GEMM on the GPU (CuPy backend): the im2col and col2im
kernels of ``kernels/cuda/im2col.cu`` (launched through the service ``cuda_launch.py``,
which builds them with NVRTC) and a GEMM (``gemm_gpu.py``), letters as in the Notation of
``tinyalex/ops/im2col.py``.

Memory order. Images are channels-last, x (N, H, W, C) in memory, and the columns
are ordered (kh, kw, c): the reference's columns (``tinyalex/ops/im2col.py``, (c, kh,
kw)) with each row's entries reordered, so that one kernel row of a window is KW*C
numbers in a row of memory, and the GEMM's (N*OH*OW, OC) result is the next layer's
channels-last input with no transpose. ``TINYALEX_CONV=im2col`` runs the reference
itself: on the GPU as on the CPU, ``ops/conv.py``'s ``Im2colReference``
(``ops/im2col.py`` on CuPy arrays and one GEMM).

One pass of work per layer and direction:

* forward: the columns of a chunk of images (the whole batch up to ``chunk_bytes`` of
  columns), one GEMM ``(rows, OC) = (rows, K) @ (K, OC)`` per chunk, and its epilogue
  in one kernel over the result in place: the bias added and, for a fused
  Conv2d + ReLU (``activation="relu"``), ReLU applied (``bias_relu``);
* the forward's columns are kept for backward when the whole batch's fit in one chunk
  (``keep_bytes``, 1 GiB by default: d2l's AlexNet in float32 keeps every layer's up to
  batch 165; above that conv2's (6.5 MB an image) are built again in backward, conv4's
  and conv5's above batch 539); kept, backward builds no columns at all;
* backward: ``gW (OC, K) += gy_chunk.T @ cols`` accumulated by the GEMM itself,
  ``gcols = gy_chunk @ W`` and col2im (a gather: no atomics) into gx.

The weight enters the GEMM as ``W (OC, K)``, one reordered copy per forward (no stride
maps (OC, C, KH, KW) memory onto (kh, kw, c) columns), kept for backward. The weight
gradient comes back as a strided (OC, C, KH, KW) view of the GEMM's (OC, KH, KW, C)
result, with no reordering copy (the flat gradient buffer of ``nn.FlatParameters``
takes it with the one copy it makes anyway). Buffers come from CuPy's memory pool per
call: nothing is kept between calls, so a captured CUDA graph owns every buffer it
uses. The GEMMs run in TF32 where enabled and available (``precision.py``).

The launch plans of ``im2col.cu`` (``im2col``, ``col2im``: kernel, grid, index width,
arguments) come first below, then the algorithm; ``cuda_launch.py`` holds what every
op's plans share. Plans are built from the layer's ``ConvGeometry`` (validated once,
by the op) and trust it; ``Plan.args`` checks each array against the plan.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, replace

from tinyalex import backend as B

from . import cuda_launch, gemm_gpu, precision
from .cuda_launch import MAX_BLOCKS, Params, Plan, dtype_suffix, make_plan
from .elementwise_gpu import bias_activation, relu_forward
from .geometry import ConvGeometry
from .layout import as_nhwc

CHUNK_BYTES = 1 << 30          # the most columns one GEMM takes
KEEP_BYTES = 1 << 30           # a layer's forward columns are kept up to this size
EPILOGUES = (None, "relu")


# -- launch plans of cuda/im2col.cu -----------------------------------------------------------------------------

@functools.lru_cache(maxsize=1024)
def im2col(g: ConvGeometry, dtype, *, index_bits=None, max_blocks=MAX_BLOCKS) -> Plan:
    """x (N, H, W, C) -> cols (N*OH*OW, K), rows (n, oh, ow), columns (kh, kw, c),
    K = C*KH*KW, for the g.N images of this launch. Arrays: ``x``, ``cols``."""
    dtype, suffix = dtype_suffix(dtype, "im2col")
    total = g.N * g.P * g.K

    def build(bits):
        p = Params(bits, dtype)
        p.array("x", g.N * g.C * g.H * g.W)
        p.array("cols", total)
        p.index("total", total)
        p.div("K", g.K)
        p.div("OW", g.OW)
        p.div("OH", g.OH)
        p.div("KWC", g.KW * g.C)
        p.div("C", g.C)
        for name in ("H", "W", "SH", "SW", "PH", "PW"):
            p.index(name, getattr(g, name))
        return p

    return make_plan("im2col", "im2col_nhwc", suffix, total,
                     max(total, g.N * g.C * g.H * g.W), index_bits, max_blocks, build)


@functools.lru_cache(maxsize=1024)
def col2im(g: ConvGeometry, dtype, *, index_bits=None, max_blocks=MAX_BLOCKS) -> Plan:
    """cols (N*OH*OW, K), columns (kh, kw, c) -> gx (N, H, W, C), im2col's adjoint,
    gathered in (kh, kw) order, for the g.N images of this launch.
    Arrays: ``cols``, ``gx`` (overwritten)."""
    dtype, suffix = dtype_suffix(dtype, "col2im")
    total, ncols = g.N * g.C * g.H * g.W, g.N * g.P * g.K

    def build(bits):
        p = Params(bits, dtype)
        p.array("cols", ncols)
        p.array("gx", total)
        p.index("total", total)
        for name in ("C", "W", "H", "SH", "SW"):
            p.div(name, getattr(g, name))
        for name in ("KH", "KW", "OH", "OW", "PH", "PW"):
            p.index(name, getattr(g, name))
        return p

    return make_plan("im2col", "col2im_nhwc", suffix, total, max(total, ncols), index_bits,
                     max_blocks, build)


@dataclass
class GpuConvSaved:
    x: object             # the input as the kernels read it, None when cols are kept
    w_mat: object         # (OC, K), columns in this algorithm's order
    cols: object          # (N*OH*OW, K), the forward's columns, or None
    g: ConvGeometry


class Im2colGemmGPU:
    """im2col + GEMM over CuPy arrays, or NumPy ones with the CPU emulation's
    ``modules`` and ``gemm`` (the tests)."""

    name = "im2col+GEMM (kh,kw,c)"

    def __init__(self, xp, modules, gemm, chunk_bytes=CHUNK_BYTES, keep_bytes=KEEP_BYTES,
                 max_blocks=MAX_BLOCKS):
        self.xp, self.modules, self.gemm = xp, modules, gemm
        self.chunk_bytes, self.keep_bytes, self.max_blocks = chunk_bytes, keep_bytes, max_blocks

    # -- pieces ----------------------------------------------------------------------
    def _w_mat(self, weight, g):
        """(OC, C, KH, KW) -> (OC, KH, KW, C) -> (OC, KH*KW*C), a copy."""
        return self.xp.ascontiguousarray(weight.transpose(0, 2, 3, 1)).reshape(g.OC, g.K)

    def _columns(self, xk, g, dtype):
        """cols (nb*OH*OW, K) of the channels-last images xk (nb, H, W, C), one launch."""
        nb = xk.shape[0]
        cols = self.xp.empty((nb * g.P, g.K), dtype=dtype)
        self.modules.launch(im2col(g if nb == g.N else replace(g, N=nb), dtype,
                                   max_blocks=self.max_blocks), x=xk, cols=cols)
        return cols

    def _epilogue(self, out, bias, activation, dtype):
        """out (rows, OC) = act(out + bias), in place, one launch (none for neither)."""
        rows, OC = out.shape
        if bias is not None:
            p = bias_activation(rows, OC, dtype, activation or "add",
                                     max_blocks=self.max_blocks)
            self.modules.launch(p, y=out, bias=bias, out=out)
        elif activation == "relu":
            self.modules.launch(relu_forward(out.size, dtype, max_blocks=self.max_blocks),
                                x=out, y=out)

    def images_per_chunk(self, g, itemsize):
        return max(1, min(g.N, self.chunk_bytes // max(1, g.P * g.K * itemsize)))

    def keeps_columns(self, g, itemsize) -> bool:
        """Whether forward keeps its columns for backward (the whole batch in one
        chunk, within ``keep_bytes``)."""
        whole = g.N * g.P * g.K * itemsize
        return self.images_per_chunk(g, itemsize) == g.N and whole <= self.keep_bytes

    # -- the algorithm -----------------------------------------------------------------
    def forward(self, x, weight, bias, g: ConvGeometry, keep: bool, activation=None):
        """y (N, OC, OH, OW) (channels-last memory) and what backward needs (None
        unless ``keep``); ``activation="relu"`` applies ReLU in the GEMM's epilogue (the
        fused Conv2d + ReLU)."""
        if activation not in EPILOGUES:
            raise ValueError(f"im2col+GEMM (GPU): activation must be one of {EPILOGUES}, "
                             f"got {activation!r}")
        xp, N, P, OC, dtype = self.xp, g.N, g.P, g.OC, x.dtype
        xk = as_nhwc(xp, x)                                         # (N, H, W, C)
        w_mat = self._w_mat(weight, g)                              # (OC, K)
        b = None if bias is None else xp.ascontiguousarray(bias)    # (OC,)
        y = xp.empty((N * P, OC), dtype=dtype)                      # (N*OH*OW, OC)
        nb = self.images_per_chunk(g, dtype.itemsize)
        kept = keep and self.keeps_columns(g, dtype.itemsize)
        tf32 = precision.tf32_enabled()
        cols = None
        for n0 in range(0, N, nb):
            n1 = min(N, n0 + nb)
            cols = self._columns(xk[n0:n1], g, dtype)               # (nb*OH*OW, K)
            out = y[n0 * P:n1 * P]
            self.gemm(cols, w_mat.T, out, tf32=tf32)    # (nb*OH*OW, OC) = (.., K) @ (K, OC)
            self._epilogue(out, b, activation, dtype)
        saved = None
        if keep:
            saved = GpuConvSaved(None if kept else xk, w_mat, cols if kept else None, g)
        # (N*OH*OW, OC) -> (N, OH, OW, OC) -> (N, OC, OH, OW), a view (channels-last memory)
        return y.reshape(N, g.OH, g.OW, OC).transpose(0, 3, 1, 2), saved

    def backward(self, gy, s: GpuConvSaved, need_x, need_w, need_b):
        """(gx, gW, gb) for gy (N, OC, OH, OW) in any memory order; None where not
        needed."""
        xp, g = self.xp, s.g
        N, P, K, OC = g.N, g.P, g.K, g.OC
        dtype = s.w_mat.dtype
        gy_mat = as_nhwc(xp, gy).reshape(N * P, OC)                 # (N*OH*OW, OC)
        gb = gy_mat.sum(axis=0) if need_b else None                 # (OC,)
        gw = xp.empty((OC, K), dtype=dtype) if need_w else None     # (OC, K)
        gxk = xp.empty((N, g.H, g.W, g.C), dtype=dtype) if need_x else None
        nb = N if s.cols is not None else self.images_per_chunk(g, dtype.itemsize)
        tf32 = precision.tf32_enabled()
        for n0 in range(0, N, nb):
            n1 = min(N, n0 + nb)
            g_chunk = gy_mat[n0 * P:n1 * P]                         # (nb*OH*OW, OC)
            if need_w:
                cols = s.cols if s.cols is not None else self._columns(s.x[n0:n1], g, dtype)
                # (OC, K) (+)= (OC, nb*OH*OW) @ (nb*OH*OW, K)
                self.gemm(g_chunk.T, cols, gw, tf32=tf32, accumulate=n0 > 0)
            if need_x:
                gcols = xp.empty(((n1 - n0) * P, K), dtype=dtype)
                self.gemm(g_chunk, s.w_mat, gcols, tf32=tf32)  # (rows, K) = (rows, OC) @ (OC, K)
                # col2im is im2col's adjoint: every window's gradient added back onto its pixels
                gi = g if n1 - n0 == N else replace(g, N=n1 - n0)
                self.modules.launch(col2im(gi, dtype, max_blocks=self.max_blocks),
                                    cols=gcols, gx=gxk[n0:n1])
        if need_w:  # (OC, KH*KW*C) -> (OC, KH, KW, C) -> (OC, C, KH, KW), a view
            gw = gw.reshape(OC, g.KH, g.KW, g.C).transpose(0, 3, 1, 2)
        gx = gxk.transpose(0, 3, 1, 2) if need_x else None          # (N, C, H, W), a view
        return gx, gw, gb


_cache = {}


def for_cupy() -> Im2colGemmGPU:
    """The algorithm on CuPy arrays (CuPy and a GPU must be usable), built once."""
    if "algorithm" not in _cache:
        cp = B.cupy_module()
        _cache["algorithm"] = Im2colGemmGPU(cp, cuda_launch.for_cupy(cp), gemm_gpu.for_cupy())
    return _cache["algorithm"]
