"""Memory orders, shared by the CPU and GPU kernels.

Tensors keep PyTorch's (N, C, H, W) shape, but their memory may be *plain* (C order)
or *channels-last* ((N, H, W, C) in memory, seen through a transposed view): the
convolutions that multiply channels (im2col + GEMM, Winograd) produce channels-last
results, since their GEMM's (N*OH*OW, OC) result is that memory with no transpose.
Every kernel accepts any order; these helpers say how an array lies.
"""

from __future__ import annotations

import numpy as np

FLOATS = (np.dtype(np.float32), np.dtype(np.float64))   # the dtypes the loops compile for


def fast_dtypes(*arrays) -> bool:
    """True when every array is float32, or every one float64 (what the loops take)."""
    d = arrays[0].dtype
    return d in FLOATS and all(a.dtype == d for a in arrays)


def as_nhwc(xp, x):
    """(N, C, H, W) -> its channels-last (N, H, W, C) C-contiguous array (a view when the
    memory is channels-last already, a copy otherwise)."""
    t = x.transpose(0, 2, 3, 1)                     # (N, H, W, C)
    return t if t.flags.c_contiguous else xp.ascontiguousarray(t)


def dense_view(xp, a, order=None):
    """``(t, order)``: ``t = a.transpose(order)`` is C-contiguous (a view when ``a`` is
    dense in some axis order, else a copy), so ``t.reshape(-1)`` walks a's memory."""
    if order is None:
        order = tuple(sorted(range(a.ndim), key=lambda i: -abs(a.strides[i])))
    t = a.transpose(order)
    return (t if t.flags.c_contiguous else xp.ascontiguousarray(t)), order


def undo_order(t, order):
    """The inverse of ``dense_view``'s transpose: back to the caller's axis order."""
    return t.transpose(tuple(int(i) for i in np.argsort(order)))


def pool_images(xp, x):
    """x (N, C, H, W) as channels-last images for the pooling loops: ``(xh, plain)``.
    Plain memory is already N*C one-channel images (N*C, H, W, 1), so it is pooled as
    it lies and the result stays plain; any other order is pooled channels-last (a
    view when the memory is, else a copy)."""
    N, C, H, W = x.shape
    if C > 1 and x.flags.c_contiguous:
        return x.reshape(N * C, H, W, 1), True                  # (N*C, H, W, 1)
    return as_nhwc(xp, x), False                                # (N, H, W, C)


def pool_result(yh, N, C, plain):
    """Pooled images (NI, OH', OW', CI) -> the (N, C, OH', OW') result, a view."""
    if plain:
        return yh.reshape(N, C, yh.shape[1], yh.shape[2])       # (N*C, ., ., 1) -> plain
    return yh.transpose(0, 3, 1, 2)                             # (N, ., ., C) -> (N, C, ., .)
