"""The fast CPU kernel set: Numba loops (``numba_kernels.py``) behind checked wrappers.

Every wrapper checks shapes, dtypes and ranges *before* calling compiled code, which
does not check bounds: a bad call raises ValueError/TypeError here, never writes out
of bounds. Dtypes other than float32 and float64 go to the reference kernels, so the
compiled loops exist in those two versions only (few specialisations, short compile).

Images move between layers channels-last (see ``fastconv.py``): the arrays returned
have PyTorch's (N, C, H, W) shape over (N, H, W, C) memory, and every kernel here
accepts any memory order (a copy is made where the order does not suit).
"""

from __future__ import annotations

import numpy as np

from tinyalex import random as R
from tinyalex.ops.im2col import conv_output_size

from . import numba_kernels as nk
from .fastconv import Engine, Geometry, Saved, as_nhwc

FLOATS = (np.dtype(np.float32), np.dtype(np.float64))
CHUNK_BYTES = 8 << 20     # im2col workspace per GEMM: a few MB stays in the 32 MB L3


def _fast_dtype(*arrays) -> bool:
    d = arrays[0].dtype
    return d in FLOATS and all(a.dtype == d for a in arrays)


def _geometry_error(what, **sizes):
    raise ValueError(f"{what}: inconsistent sizes {sizes}")


def check_geometry(where, H, W, KH, KW, SH, SW, PH, PW):
    """Window sizes as the compiled loops need them; returns (OH, OW)."""
    for name, v, lo in (("KH", KH, 1), ("KW", KW, 1), ("SH", SH, 1), ("SW", SW, 1),
                        ("PH", PH, 0), ("PW", PW, 0)):
        if int(v) != v or v < lo:
            raise ValueError(f"{where}: {name} must be an int >= {lo}, got {v!r}")
    OH, OW = conv_output_size(H, KH, SH, PH), conv_output_size(W, KW, SW, PW)
    if OH < 1 or OW < 1:
        raise ValueError(f"{where}: a {KH}x{KW} window does not fit an input of "
                         f"{H}x{W} padded by {PH}x{PW}")
    return OH, OW


def _check_4d(where, a):
    if not isinstance(a, np.ndarray) or a.ndim != 4 or 0 in a.shape:
        raise ValueError(f"{where}: expected a non-empty 4-D NumPy array (N, C, H, W), "
                         f"got {getattr(a, 'shape', type(a).__name__)}")


# -- the NHWC primitives the conv engine uses --------------------------------------------

def _im2col_nhwc(xh, n0, n1, g: Geometry, cols):
    N, H, W, C = xh.shape
    if (N, H, W, C) != (g.N, g.H, g.W, g.C) or not 0 <= n0 < n1 <= N \
            or cols.shape != ((n1 - n0) * g.P, g.K) or not cols.flags.c_contiguous \
            or not xh.flags.c_contiguous or cols.dtype != xh.dtype:
        _geometry_error("im2col", x=xh.shape, n0=n0, n1=n1, cols=cols.shape, geometry=g)
    nk.im2col(xh.reshape(N * H, W * C), H, W, C, n0, n1, g.KH, g.KW, g.SH, g.SW, g.PH,
              g.PW, g.OH, g.OW, cols, True)


def _col2im_nhwc(gcols, n0, n1, g: Geometry, gxh):
    N, H, W, C = gxh.shape
    if (N, H, W, C) != (g.N, g.H, g.W, g.C) or not 0 <= n0 < n1 <= N \
            or gcols.shape != ((n1 - n0) * g.P, g.K) or not gcols.flags.c_contiguous \
            or not gxh.flags.c_contiguous or gcols.dtype != gxh.dtype:
        _geometry_error("col2im", gx=gxh.shape, n0=n0, n1=n1, cols=gcols.shape, geometry=g)
    nk.col2im(gcols, H, W, C, n0, n1, g.KH, g.KW, g.SH, g.SW, g.PH, g.PW, g.OH, g.OW,
              gxh.reshape(N * H, W * C), True)


def _matmul(a, b, out):
    np.matmul(a, b, out=out)


ENGINE = Engine(np, _im2col_nhwc, _col2im_nhwc, _matmul, CHUNK_BYTES)


# -- the kernel set ----------------------------------------------------------------------

def im2col(x, KH, KW, SH=1, SW=1, PH=0, PW=0, pad_value=0.0):
    """As ``tinyalex.ops.im2col.im2col``: (N*OH*OW, C*KH*KW), columns (c, kh, kw)."""
    if pad_value != 0 or not _fast_dtype(x):
        from tinyalex.ops.im2col import im2col as reference
        return reference(x, KH, KW, SH, SW, PH, PW, pad_value=pad_value)
    _check_4d("im2col", x)
    N, C, H, W = x.shape
    OH, OW = check_geometry("im2col", H, W, KH, KW, SH, SW, PH, PW)
    xh = as_nhwc(np, x)                                         # (N, H, W, C)
    cols = np.empty((N * OH * OW, C * KH * KW), dtype=x.dtype)  # (N*OH*OW, C*KH*KW)
    nk.im2col(xh.reshape(N * H, W * C), H, W, C, 0, N, KH, KW, SH, SW, PH, PW, OH, OW,
              cols, False)
    return cols


def col2im(cols, x_shape, KH, KW, SH=1, SW=1, PH=0, PW=0):
    """As ``tinyalex.ops.im2col.col2im``; the result has channels-last memory."""
    if not _fast_dtype(cols):
        from tinyalex.ops.im2col import col2im as reference
        return reference(cols, x_shape, KH, KW, SH, SW, PH, PW)
    N, C, H, W = (int(s) for s in x_shape)
    OH, OW = check_geometry("col2im", H, W, KH, KW, SH, SW, PH, PW)
    if cols.shape != (N * OH * OW, C * KH * KW):
        raise ValueError(f"col2im: cols of shape {cols.shape} do not match x_shape "
                         f"{tuple(x_shape)}; expected {(N * OH * OW, C * KH * KW)}")
    cols = np.ascontiguousarray(cols)
    gxh = np.empty((N, H, W, C), dtype=cols.dtype)                 # (N, H, W, C)
    nk.col2im(cols, H, W, C, 0, N, KH, KW, SH, SW, PH, PW, OH, OW,
              gxh.reshape(N * H, W * C), False)
    return gxh.transpose(0, 3, 1, 2)                                # (N, C, H, W) view


def conv2d_forward(x, weight, bias, SH, SW, PH, PW, keep):
    if not _fast_dtype(x, weight, *(() if bias is None else (bias,))):
        from tinyalex.ops.conv import conv2d_forward_reference as reference
        return reference(x, weight, bias, SH, SW, PH, PW, keep)
    _check_4d("conv2d", x)
    _check_4d("conv2d weight", weight)
    N, C, H, W = x.shape
    OC, C2, KH, KW = weight.shape
    if C2 != C or (bias is not None and bias.shape != (OC,)):
        raise ValueError(f"conv2d: input {x.shape}, weight {weight.shape} and bias "
                         f"{None if bias is None else bias.shape} do not match")
    OH, OW = check_geometry("conv2d", H, W, KH, KW, SH, SW, PH, PW)
    g = Geometry(N, C, H, W, OC, KH, KW, SH, SW, PH, PW, OH, OW)
    return ENGINE.forward(x, weight, bias, g, keep)


def conv2d_backward(gy, saved, need_x, need_w, need_b):
    if not isinstance(saved, Saved):
        from tinyalex.ops.conv import conv2d_backward_reference as reference
        return reference(gy, saved, need_x, need_w, need_b)
    g = saved.g
    if gy.shape != (g.N, g.OC, g.OH, g.OW) or gy.dtype != saved.xh.dtype:
        raise ValueError(f"conv2d backward: gradient of shape {gy.shape} ({gy.dtype}), "
                         f"expected {(g.N, g.OC, g.OH, g.OW)} ({saved.xh.dtype})")
    return ENGINE.backward(gy, saved, need_x, need_w, need_b)


def max_pool2d_forward(x, KH, KW, SH, SW, PH, PW):
    """y (N, C, OH, OW) over channels-last memory, argmax (N, OH, OW, C) int32."""
    if not _fast_dtype(x):
        from tinyalex.ops.pool import max_pool2d_forward_reference as reference
        return reference(x, KH, KW, SH, SW, PH, PW)
    _check_4d("max_pool2d", x)
    N, C, H, W = x.shape
    OH, OW = check_geometry("max_pool2d", H, W, KH, KW, SH, SW, PH, PW)
    xh = as_nhwc(np, x)                                        # (N, H, W, C)
    yh = np.empty((N, OH, OW, C), dtype=x.dtype)               # (N, OH, OW, C)
    arg = np.empty((N, OH, OW, C), dtype=np.int32)
    nk.max_pool_forward(xh.reshape(N * H, W * C), N, H, W, C, KH, KW, SH, SW, PH, PW,
                        OH, OW, yh.reshape(N * OH, OW * C), arg.reshape(N * OH, OW * C))
    return yh.transpose(0, 3, 1, 2), arg                       # (N, C, OH, OW) view


def max_pool2d_backward(gy, argmax, x_shape, KH, KW, SH, SW, PH, PW):
    N, C, H, W = (int(s) for s in x_shape)
    if not _fast_dtype(gy) or not isinstance(argmax, np.ndarray) or argmax.ndim != 4:
        from tinyalex.ops.pool import max_pool2d_backward_reference as reference
        return reference(gy, argmax, x_shape, KH, KW, SH, SW, PH, PW)
    OH, OW = check_geometry("max_pool2d backward", H, W, KH, KW, SH, SW, PH, PW)
    if gy.shape != (N, C, OH, OW) or argmax.shape != (N, OH, OW, C) \
            or argmax.dtype != np.int32:
        raise ValueError(f"max_pool2d backward: gradient {gy.shape} and argmax "
                         f"{argmax.shape} ({argmax.dtype}) do not match input {x_shape}")
    gyh = as_nhwc(np, gy)                                      # (N, OH, OW, C)
    gxh = np.empty((N, H, W, C), dtype=gy.dtype)               # (N, H, W, C)
    nk.max_pool_backward(gyh.reshape(N * OH, OW * C), np.ascontiguousarray(argmax)
                         .reshape(N * OH, OW * C), N, H, W, C, KH, KW, SH, SW, PH, PW,
                         OH, OW, gxh.reshape(N * H, W * C))
    return gxh.transpose(0, 3, 1, 2)


def avg_pool2d_forward(x, KH, KW, SH, SW, PH, PW):
    if not _fast_dtype(x):
        from tinyalex.ops.pool import avg_pool2d_forward_reference as reference
        return reference(x, KH, KW, SH, SW, PH, PW)
    _check_4d("avg_pool2d", x)
    N, C, H, W = x.shape
    OH, OW = check_geometry("avg_pool2d", H, W, KH, KW, SH, SW, PH, PW)
    xh = as_nhwc(np, x)                                        # (N, H, W, C)
    yh = np.empty((N, OH, OW, C), dtype=x.dtype)               # (N, OH, OW, C)
    nk.avg_pool_forward(xh.reshape(N * H, W * C), N, H, W, C, KH, KW, SH, SW, PH, PW,
                        OH, OW, yh.reshape(N * OH, OW * C))
    return yh.transpose(0, 3, 1, 2)


def avg_pool2d_backward(gy, x_shape, KH, KW, SH, SW, PH, PW):
    KH, KW = int(KH), int(KW)          # a Python int keeps gy / (KH*KW) in gy's dtype
    if not _fast_dtype(gy):
        from tinyalex.ops.pool import avg_pool2d_backward_reference as reference
        return reference(gy, x_shape, KH, KW, SH, SW, PH, PW)
    N, C, H, W = (int(s) for s in x_shape)
    OH, OW = check_geometry("avg_pool2d backward", H, W, KH, KW, SH, SW, PH, PW)
    if gy.shape != (N, C, OH, OW):
        raise ValueError(f"avg_pool2d backward: gradient {gy.shape} does not match input "
                         f"{x_shape}; expected {(N, C, OH, OW)}")
    share = as_nhwc(np, gy) / (KH * KW)                        # (N, OH, OW, C)
    gxh = np.empty((N, H, W, C), dtype=gy.dtype)               # (N, H, W, C)
    nk.avg_pool_backward(np.ascontiguousarray(share).reshape(N * OH, OW * C), N, H, W, C,
                         KH, KW, SH, SW, PH, PW, OH, OW, gxh.reshape(N * H, W * C))
    return gxh.transpose(0, 3, 1, 2)


# -- elementwise: run on the memory as it lies, whatever its order ------------------------

def dense_view(a, order=None):
    """``(t, order)``: ``t = a.transpose(order)`` is C-contiguous (a view when ``a`` is
    dense in some axis order, else a copy), so ``t.reshape(-1)`` walks a's memory."""
    if order is None:
        order = tuple(sorted(range(a.ndim), key=lambda i: -abs(a.strides[i])))
    t = a.transpose(order)
    return (t if t.flags.c_contiguous else np.ascontiguousarray(t)), order


def _undo(t, order):
    inverse = tuple(int(i) for i in np.argsort(order))
    return t.transpose(inverse)


def _unary(kernel, x, reference):
    if not _fast_dtype(x) or x.size == 0:
        return reference(x)
    t, order = dense_view(x)
    out = np.empty(t.shape, dtype=x.dtype)
    kernel(t.reshape(-1), out.reshape(-1))
    return _undo(out, order)


def _binary(kernel, gy, y, reference):
    if not _fast_dtype(gy, y) or gy.shape != y.shape or y.size == 0:
        return reference(gy, y)
    ty, order = dense_view(y)
    tg, _ = dense_view(gy, order)
    out = np.empty(ty.shape, dtype=y.dtype)
    kernel(tg.reshape(-1), ty.reshape(-1), out.reshape(-1))
    return _undo(out, order)


def relu_forward(x):
    from tinyalex.ops.activation import relu_forward_reference as reference
    return _unary(nk.relu_forward, x, reference)


def relu_backward(gy, y):
    from tinyalex.ops.activation import relu_backward_reference as reference
    return _binary(nk.relu_backward, gy, y, reference)


def sigmoid_forward(x):
    from tinyalex.ops.activation import sigmoid_forward_reference as reference
    return _unary(nk.sigmoid_forward, x, reference)


def sigmoid_backward(gy, y):
    from tinyalex.ops.activation import sigmoid_backward_reference as reference
    return _binary(nk.sigmoid_backward, gy, y, reference)


def dropout(x, p, seed):
    """x * scale where SplitMix64(seed, i) keeps element i (C order), else 0."""
    if not _fast_dtype(x) or x.size == 0:
        from tinyalex.ops.activation import dropout_reference as reference
        return reference(x, p, seed)
    if not 0.0 <= p <= 1.0 or not 0 <= int(seed) < 2**64:
        raise ValueError(f"dropout: p must lie in [0, 1] and seed in [0, 2**64), got "
                         f"p={p!r}, seed={seed!r}")
    xc = np.ascontiguousarray(x)
    y = np.empty(x.shape, dtype=x.dtype)
    scale = x.dtype.type(0.0 if p == 1.0 else 1.0 / (1.0 - p))
    nk.dropout(xc.reshape(-1), np.uint64(seed), np.uint64(R.dropout_threshold(p)), scale,
               y.reshape(-1))
    return y


TABLE = {
    "im2col": im2col,
    "col2im": col2im,
    "conv2d_forward": conv2d_forward,
    "conv2d_backward": conv2d_backward,
    "max_pool2d_forward": max_pool2d_forward,
    "max_pool2d_backward": max_pool2d_backward,
    "avg_pool2d_forward": avg_pool2d_forward,
    "avg_pool2d_backward": avg_pool2d_backward,
    "relu_forward": relu_forward,
    "relu_backward": relu_backward,
    "sigmoid_forward": sigmoid_forward,
    "sigmoid_backward": sigmoid_backward,
    "dropout": dropout,
}

__all__ = ["TABLE", "ENGINE", "check_geometry", "dense_view"]
