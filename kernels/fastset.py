"""The checked wrappers of the fast kernel sets, shared by the CPU and the GPU.

``FastKernels(xp, loops, run, matmul, chunk_bytes)`` builds a kernel set (the entries
listed in ``kernels/__init__.py``) from

* ``loops``: a module of compiled loops with identical signatures on both devices
  (``numba_kernels`` for the CPU, ``cuda_kernels`` for the GPU);
* ``run(loop, total, *args)``: how to call one (a plain call on the CPU; a launch of
  a grid covering ``total`` elements on the GPU);
* ``matmul(a, b, out)``: the GEMM (BLAS through NumPy, cuBLAS through CuPy);
* ``winograd``: on the CPU, how to run a Winograd tile transform over tile ranges
  (``cpu._call_split``); None leaves every layer to im2col + GEMM;
* ``direct``: on the CPU, ``(parallel, threads)`` for the direct convolution of
  stride-1 layers (``direct.py``); None leaves those to im2col + GEMM;
* ``dense_matmul(a, b, out)``: the GEMM of the ``matmul`` entry (the fully connected
  layers); None means the array module's plain ``matmul`` (FP32 on the GPU);
* ``split(n, unit, call)``: on the CPU, runs ``call(i0, i1)`` over disjoint ranges
  covering 0..n-1 at once, one per thread that pays (``unit``: the work of one item);
  None makes one call over everything. The pooling and ReLU loops are run on ranges of
  images or elements this way (a loop over fewer images is the same loop);
* ``dense_empty(shape, dtype)``: how the ``matmul`` entry allocates its result (on the
  CPU, large ones are recycled once freed, ``recycle.py``); None means ``xp.empty``.

Every wrapper checks shapes, dtypes and ranges *before* a compiled loop runs, since
compiled loops do not check bounds: a bad call raises ValueError here and never
reads or writes out of bounds. Dtypes other than float32 and float64 go to the
readable reference (so the loops are compiled in those two versions only).

Images move between layers channels-last (see ``fastconv.py``): the arrays returned
have PyTorch's (N, C, H, W) shape over (N, H, W, C) memory, and every entry accepts
any memory order (copying where the order does not suit).
"""

from __future__ import annotations

import numpy as np

from tinyalex import random as R
from tinyalex.ops.im2col import conv_output_size

from .fastconv import Engine, Geometry, Saved, as_nhwc

FLOATS = (np.dtype(np.float32), np.dtype(np.float64))


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


def dense_view(xp, a, order=None):
    """``(t, order)``: ``t = a.transpose(order)`` is C-contiguous (a view when ``a`` is
    dense in some axis order, else a copy), so ``t.reshape(-1)`` walks a's memory."""
    if order is None:
        order = tuple(sorted(range(a.ndim), key=lambda i: -abs(a.strides[i])))
    t = a.transpose(order)
    return (t if t.flags.c_contiguous else xp.ascontiguousarray(t)), order


def _undo(t, order):
    return t.transpose(tuple(int(i) for i in np.argsort(order)))


def _reference(name):
    from tinyalex import kernels  # noqa: PLC0415 - the reference table, built lazily
    return getattr(kernels.kernel_set("numpy", "reference"), name)


class FastKernels:
    def __init__(self, xp, loops, run, matmul, chunk_bytes: int, winograd=None, direct=None,
                 dense_matmul=None, split=None, dense_empty=None):
        self.xp, self.loops, self.run = xp, loops, run
        self.dense_empty = dense_empty or xp.empty
        self.split = split or (lambda n, unit, call: call(0, n))
        self.dense_matmul = dense_matmul or (lambda a, b, out: xp.matmul(a, b, out=out))
        self.engine = Engine(xp, self._im2col_nhwc, self._col2im_nhwc, matmul, chunk_bytes,
                             winograd or None,
                             self._im2col_kmajor if hasattr(loops, "im2col_kmajor") else None,
                             direct)

    def table(self) -> dict:
        names = ("im2col", "col2im", "conv2d_forward", "conv2d_backward",
                 "max_pool2d_forward", "max_pool2d_backward", "avg_pool2d_forward",
                 "avg_pool2d_backward", "relu_forward", "relu_backward",
                 "sigmoid_forward", "sigmoid_backward", "dropout", "sgd_update", "matmul")
        return {name: getattr(self, name) for name in names}

    # -- helpers ------------------------------------------------------------------------
    def _fast(self, *arrays) -> bool:
        d = arrays[0].dtype
        return d in FLOATS and all(a.dtype == d for a in arrays) \
            and all(isinstance(a, self.xp.ndarray) for a in arrays)

    def _check_4d(self, where, a):
        if not isinstance(a, self.xp.ndarray) or a.ndim != 4 or 0 in a.shape:
            raise ValueError(f"{where}: expected a non-empty 4-D array (N, C, H, W), got "
                             f"{getattr(a, 'shape', type(a).__name__)}")

    # -- the NHWC primitives of the conv engine -------------------------------------------
    def _im2col_nhwc(self, xh, n0, n1, g: Geometry, cols):
        N, H, W, C = xh.shape
        if (N, H, W, C) != (g.N, g.H, g.W, g.C) or not 0 <= n0 < n1 <= N \
                or cols.shape != ((n1 - n0) * g.P, g.K) or not cols.flags.c_contiguous \
                or not xh.flags.c_contiguous or cols.dtype != xh.dtype:
            raise ValueError(f"im2col: inconsistent sizes: x {xh.shape}, images {n0}..{n1}, "
                             f"cols {cols.shape}, {g}")
        self.run(self.loops.im2col, cols.size, xh.reshape(N * H, W * C), H, W, C, n0, n1,
                 g.KH, g.KW, g.SH, g.SW, g.PH, g.PW, g.OH, g.OW, cols, True)

    def _im2col_kmajor(self, xh, n0, n1, g: Geometry, colsT):
        N, H, W, C = xh.shape
        if (N, H, W, C) != (g.N, g.H, g.W, g.C) or not 0 <= n0 < n1 <= N \
                or colsT.shape != (g.K, (n1 - n0) * g.P) or not colsT.flags.c_contiguous \
                or not xh.flags.c_contiguous or colsT.dtype != xh.dtype:
            raise ValueError(f"im2col: inconsistent sizes: x {xh.shape}, images {n0}..{n1}, "
                             f"colsT {colsT.shape}, {g}")
        self.run(self.loops.im2col_kmajor, colsT.size, xh.reshape(N * H, W * C), H, W, C,
                 n0, n1, g.KH, g.KW, g.SH, g.SW, g.PH, g.PW, g.OH, g.OW, colsT)

    def _col2im_nhwc(self, gcols, n0, n1, g: Geometry, gxh):
        N, H, W, C = gxh.shape
        if (N, H, W, C) != (g.N, g.H, g.W, g.C) or not 0 <= n0 < n1 <= N \
                or gcols.shape != ((n1 - n0) * g.P, g.K) or not gcols.flags.c_contiguous \
                or not gxh.flags.c_contiguous or gcols.dtype != gxh.dtype:
            raise ValueError(f"col2im: inconsistent sizes: gx {gxh.shape}, images "
                             f"{n0}..{n1}, cols {gcols.shape}, {g}")
        self.run(self.loops.col2im, (n1 - n0) * H * W * C, gcols, H, W, C, n0, n1, g.KH,
                 g.KW, g.SH, g.SW, g.PH, g.PW, g.OH, g.OW, gxh.reshape(N * H, W * C), True,
                 gxh.dtype.type(0))

    # -- the kernel set -------------------------------------------------------------------
    def im2col(self, x, KH, KW, SH=1, SW=1, PH=0, PW=0, pad_value=0.0):
        """As the reference: (N*OH*OW, C*KH*KW), columns (c, kh, kw)."""
        if pad_value != 0 or not self._fast(x):
            return _reference("im2col")(x, KH, KW, SH, SW, PH, PW, pad_value=pad_value)
        self._check_4d("im2col", x)
        N, C, H, W = x.shape
        OH, OW = check_geometry("im2col", H, W, KH, KW, SH, SW, PH, PW)
        xh = as_nhwc(self.xp, x)                                           # (N, H, W, C)
        cols = self.xp.empty((N * OH * OW, C * KH * KW), dtype=x.dtype)    # (N*OH*OW, C*KH*KW)
        self.run(self.loops.im2col, cols.size, xh.reshape(N * H, W * C), H, W, C, 0, N,
                 KH, KW, SH, SW, PH, PW, OH, OW, cols, False)
        return cols

    def col2im(self, cols, x_shape, KH, KW, SH=1, SW=1, PH=0, PW=0):
        """As the reference; the result has channels-last memory."""
        if not self._fast(cols):
            return _reference("col2im")(cols, x_shape, KH, KW, SH, SW, PH, PW)
        N, C, H, W = (int(s) for s in x_shape)
        OH, OW = check_geometry("col2im", H, W, KH, KW, SH, SW, PH, PW)
        if cols.shape != (N * OH * OW, C * KH * KW):
            raise ValueError(f"col2im: cols of shape {cols.shape} do not match x_shape "
                             f"{tuple(x_shape)}; expected {(N * OH * OW, C * KH * KW)}")
        cols = self.xp.ascontiguousarray(cols)
        gxh = self.xp.empty((N, H, W, C), dtype=cols.dtype)                # (N, H, W, C)
        self.run(self.loops.col2im, gxh.size, cols, H, W, C, 0, N, KH, KW, SH, SW, PH, PW,
                 OH, OW, gxh.reshape(N * H, W * C), False, cols.dtype.type(0))
        return gxh.transpose(0, 3, 1, 2)                                   # (N, C, H, W) view

    def conv2d_forward(self, x, weight, bias, SH, SW, PH, PW, keep):
        if not self._fast(x, weight, *(() if bias is None else (bias,))):
            return _reference("conv2d_forward")(x, weight, bias, SH, SW, PH, PW, keep)
        self._check_4d("conv2d", x)
        self._check_4d("conv2d weight", weight)
        N, C, H, W = x.shape
        OC, C2, KH, KW = weight.shape
        if C2 != C or (bias is not None and bias.shape != (OC,)):
            raise ValueError(f"conv2d: input {x.shape}, weight {weight.shape} and bias "
                             f"{None if bias is None else bias.shape} do not match")
        OH, OW = check_geometry("conv2d", H, W, KH, KW, SH, SW, PH, PW)
        g = Geometry(N, C, H, W, OC, KH, KW, int(SH), int(SW), int(PH), int(PW), OH, OW)
        return self.engine.forward(x, weight, bias, g, keep)

    def conv2d_backward(self, gy, saved, need_x, need_w, need_b):
        if not isinstance(saved, Saved):
            return _reference("conv2d_backward")(gy, saved, need_x, need_w, need_b)
        g = saved.g
        if gy.shape != (g.N, g.OC, g.OH, g.OW) or gy.dtype != saved.xh.dtype:
            raise ValueError(f"conv2d backward: gradient of shape {gy.shape} ({gy.dtype}), "
                             f"expected {(g.N, g.OC, g.OH, g.OW)} ({saved.xh.dtype})")
        return self.engine.backward(gy, saved, need_x, need_w, need_b)

    # -- pooling: each channel alone, in the memory order the input has -------------------
    def _pool_images(self, x):
        """x (N, C, H, W) as channels-last images for the pooling loops: ``(xh, plain)``.
        Plain (N, C, H, W) memory is already N*C one-channel images (N*C, H, W, 1), so
        it is pooled as it lies and the result stays plain; any other order is
        pooled channels-last (a view when the memory is, else a copy)."""
        N, C, H, W = x.shape
        if C > 1 and x.flags.c_contiguous:
            return x.reshape(N * C, H, W, 1), True                  # (N*C, H, W, 1)
        return as_nhwc(self.xp, x), False                           # (N, H, W, C)

    @staticmethod
    def _pool_result(yh, N, C, plain):
        """(N', OH', OW', C') pooled images -> the (N, C, OH', OW') result, a view."""
        if plain:
            return yh.reshape(N, C, yh.shape[1], yh.shape[2])       # (N*C, ., ., 1) -> plain
        return yh.transpose(0, 3, 1, 2)                             # (N, ., ., C) -> (N, C, ., .)

    def max_pool2d_forward(self, x, KH, KW, SH, SW, PH, PW):
        """y (N, C, OH, OW) in the memory order of x (plain or channels-last), and
        argmax int32, (N, OH, OW, C) or, for plain memory, (N*C, OH, OW, 1)."""
        if not self._fast(x):
            return _reference("max_pool2d_forward")(x, KH, KW, SH, SW, PH, PW)
        self._check_4d("max_pool2d", x)
        xp = self.xp
        N, C, H, W = x.shape
        OH, OW = check_geometry("max_pool2d", H, W, KH, KW, SH, SW, PH, PW)
        xh, plain = self._pool_images(x)
        NI, CI = xh.shape[0], xh.shape[3]                           # images, channels
        yh = xp.empty((NI, OH, OW, CI), dtype=x.dtype)              # (NI, OH, OW, CI)
        arg = xp.empty((NI, OH, OW, CI), dtype=np.int32)
        x2, y2 = xh.reshape(NI * H, W * CI), yh.reshape(NI * OH, OW * CI)
        a2 = arg.reshape(NI * OH, OW * CI)
        self.split(NI, OH * OW * CI * KH * KW, lambda n0, n1: self.run(
            self.loops.max_pool_forward, (n1 - n0) * OH * OW * CI, x2[n0 * H:n1 * H], n1 - n0,
            H, W, CI, KH, KW, SH, SW, PH, PW, OH, OW, y2[n0 * OH:n1 * OH], a2[n0 * OH:n1 * OH]))
        return self._pool_result(yh, N, C, plain), arg

    def max_pool2d_backward(self, gy, argmax, x_shape, KH, KW, SH, SW, PH, PW):
        if not self._fast(gy) or not isinstance(argmax, self.xp.ndarray) or argmax.ndim != 4:
            return _reference("max_pool2d_backward")(gy, argmax, x_shape, KH, KW, SH, SW,
                                                     PH, PW)
        xp = self.xp
        N, C, H, W = (int(s) for s in x_shape)
        OH, OW = check_geometry("max_pool2d backward", H, W, KH, KW, SH, SW, PH, PW)
        plain = C > 1 and argmax.shape == (N * C, OH, OW, 1)        # as forward chose
        if gy.shape != (N, C, OH, OW) or argmax.dtype != np.int32 \
                or not (plain or argmax.shape == (N, OH, OW, C)):
            raise ValueError(f"max_pool2d backward: gradient {gy.shape} and argmax "
                             f"{argmax.shape} ({argmax.dtype}) do not match input {x_shape}")
        if plain:
            gyh = xp.ascontiguousarray(gy).reshape(N * C, OH, OW, 1)  # (N*C, OH, OW, 1)
        else:
            gyh = as_nhwc(xp, gy)                                   # (N, OH, OW, C)
        NI, CI = gyh.shape[0], gyh.shape[3]
        gxh = xp.empty((NI, H, W, CI), dtype=gy.dtype)              # (NI, H, W, CI)
        g2, gx2 = gyh.reshape(NI * OH, OW * CI), gxh.reshape(NI * H, W * CI)
        a2, zero = xp.ascontiguousarray(argmax).reshape(NI * OH, OW * CI), gy.dtype.type(0)
        self.split(NI, H * W * CI * KH * KW, lambda n0, n1: self.run(
            self.loops.max_pool_backward, (n1 - n0) * H * W * CI, g2[n0 * OH:n1 * OH],
            a2[n0 * OH:n1 * OH], n1 - n0, H, W, CI, KH, KW, SH, SW, PH, PW, OH, OW,
            gx2[n0 * H:n1 * H], zero))
        return self._pool_result(gxh, N, C, plain)

    def avg_pool2d_forward(self, x, KH, KW, SH, SW, PH, PW):
        """y (N, C, OH, OW) in the memory order of x (plain or channels-last)."""
        if not self._fast(x):
            return _reference("avg_pool2d_forward")(x, KH, KW, SH, SW, PH, PW)
        self._check_4d("avg_pool2d", x)
        xp = self.xp
        N, C, H, W = x.shape
        OH, OW = check_geometry("avg_pool2d", H, W, KH, KW, SH, SW, PH, PW)
        xh, plain = self._pool_images(x)
        NI, CI = xh.shape[0], xh.shape[3]
        yh = xp.empty((NI, OH, OW, CI), dtype=x.dtype)              # (NI, OH, OW, CI)
        x2, y2, zero = xh.reshape(NI * H, W * CI), yh.reshape(NI * OH, OW * CI), x.dtype.type(0)
        self.split(NI, OH * OW * CI * KH * KW, lambda n0, n1: self.run(
            self.loops.avg_pool_forward, (n1 - n0) * OH * OW * CI, x2[n0 * H:n1 * H], n1 - n0,
            H, W, CI, KH, KW, SH, SW, PH, PW, OH, OW, y2[n0 * OH:n1 * OH], zero))
        return self._pool_result(yh, N, C, plain)

    def avg_pool2d_backward(self, gy, x_shape, KH, KW, SH, SW, PH, PW):
        """gx (N, C, H, W) in the memory order of gy (plain or channels-last)."""
        KH, KW = int(KH), int(KW)       # a Python int keeps gy / (KH*KW) in gy's dtype
        if not self._fast(gy):
            return _reference("avg_pool2d_backward")(gy, x_shape, KH, KW, SH, SW, PH, PW)
        xp = self.xp
        N, C, H, W = (int(s) for s in x_shape)
        OH, OW = check_geometry("avg_pool2d backward", H, W, KH, KW, SH, SW, PH, PW)
        if gy.shape != (N, C, OH, OW):
            raise ValueError(f"avg_pool2d backward: gradient {gy.shape} does not match "
                             f"input {x_shape}; expected {(N, C, OH, OW)}")
        gyh, plain = self._pool_images(gy)
        share = xp.ascontiguousarray(gyh / (KH * KW))               # (NI, OH, OW, CI)
        NI, CI = share.shape[0], share.shape[3]
        gxh = xp.empty((NI, H, W, CI), dtype=gy.dtype)              # (NI, H, W, CI)
        s2, gx2, zero = share.reshape(NI * OH, OW * CI), gxh.reshape(NI * H, W * CI), \
            gy.dtype.type(0)
        self.split(NI, H * W * CI * KH * KW, lambda n0, n1: self.run(
            self.loops.avg_pool_backward, (n1 - n0) * H * W * CI, s2[n0 * OH:n1 * OH], n1 - n0,
            H, W, CI, KH, KW, SH, SW, PH, PW, OH, OW, gx2[n0 * H:n1 * H], zero))
        return self._pool_result(gxh, N, C, plain)

    # -- elementwise: on the memory as it lies, whatever its order ---------------------------
    def _unary(self, loop, x, name):
        if not self._fast(x) or x.size == 0:
            return _reference(name)(x)
        t, order = dense_view(self.xp, x)
        out = self.xp.empty(t.shape, dtype=x.dtype)
        src, dst = t.reshape(-1), out.reshape(-1)
        self.split(x.size, 1, lambda i0, i1: self.run(loop, i1 - i0, src[i0:i1], dst[i0:i1]))
        return _undo(out, order)

    def _binary(self, loop, gy, y, name):
        if not self._fast(gy, y) or gy.shape != y.shape or y.size == 0:
            return _reference(name)(gy, y)
        ty, order = dense_view(self.xp, y)
        tg, _ = dense_view(self.xp, gy, order)
        out = self.xp.empty(ty.shape, dtype=y.dtype)
        g1, y1, dst = tg.reshape(-1), ty.reshape(-1), out.reshape(-1)
        self.split(y.size, 1, lambda i0, i1: self.run(loop, i1 - i0, g1[i0:i1], y1[i0:i1],
                                                      dst[i0:i1]))
        return _undo(out, order)

    def relu_forward(self, x):
        return self._unary(self.loops.relu_forward, x, "relu_forward")

    def relu_backward(self, gy, y):
        return self._binary(self.loops.relu_backward, gy, y, "relu_backward")

    def sigmoid_forward(self, x):
        return self._unary(self.loops.sigmoid_forward, x, "sigmoid_forward")

    def sigmoid_backward(self, gy, y):
        return self._binary(self.loops.sigmoid_backward, gy, y, "sigmoid_backward")

    def matmul(self, a, b):
        """a @ b for a (M, K) and b (K, N) (any memory order): a fresh (M, N) array, from
        ``dense_matmul`` (on the CPU cut into GEMMs for threads; never TF32 on the GPU)."""
        if not self._fast(a, b) or a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[0] \
                or 0 in a.shape or b.shape[1] == 0:
            return _reference("matmul")(a, b)
        out = self.dense_empty((a.shape[0], b.shape[1]), dtype=a.dtype)  # (M, N)
        self.dense_matmul(a, b, out)                                      # (M, K) @ (K, N)
        return out

    def sgd_update(self, param, grad, lr):
        """In place: ``param -= lr * grad``, one pass, no temporary."""
        if not self._fast(param, grad) or param.shape != grad.shape \
                or not param.flags.c_contiguous or param.size == 0:
            return _reference("sgd_update")(param, grad, lr)
        g = grad if grad.flags.c_contiguous else self.xp.ascontiguousarray(grad)
        self.run(self.loops.sgd_update, param.size, param.reshape(-1), g.reshape(-1),
                 param.dtype.type(lr))
        return param

    def dropout(self, x, p, seed):
        """x * scale where SplitMix64(seed, i) keeps element i (C order), else 0."""
        if not self._fast(x) or x.size == 0:
            return _reference("dropout")(x, p, seed)
        if not 0.0 <= p <= 1.0 or not 0 <= int(seed) < 2**64:
            raise ValueError(f"dropout: p must lie in [0, 1] and seed in [0, 2**64), got "
                             f"p={p!r}, seed={seed!r}")
        xc = self.xp.ascontiguousarray(x)          # the mask follows the C order of x
        y = self.xp.empty(x.shape, dtype=x.dtype)
        scale = x.dtype.type(0.0 if p == 1.0 else 1.0 / (1.0 - p))
        self.run(self.loops.dropout, x.size, xc.reshape(-1), np.uint64(seed),
                 np.uint64(R.dropout_threshold(p)), scale, y.reshape(-1))
        return y
