"""The direct convolution of the fast CPU set, for stride-1 layers (LeNet's, and all
but AlexNet's wide ones, which take Winograd's path): checked calls of the loops in
``numba_direct.py`` and the batch split over threads (letters as in the Notation of
``tinyalex/ops/im2col.py``).

Unlike the im2col and Winograd paths (``fastconv.py``), images stay in plain
(N, C, H, W) memory here: each loop works on one image's padded channel planes, and
the result is a C-contiguous (N, OC, OH, OW) array, as PyTorch returns it.

Threads: the batch is cut into ``threads`` parts run at once (the loops release the
GIL); each part adds its share of the weight gradient to arrays of its own, summed at
the end, so no two threads ever write the same memory.
"""

from __future__ import annotations

import numpy as np

from . import numba_direct as nd

MIN_PART_MACS = 1 << 21  # a part of the batch smaller than this is not worth a thread


def applies(g) -> bool:
    """True for the layers the direct path computes: stride 1, padding below the kernel
    size. The engine gives it every such layer but the wide ones of the Winograd path
    (``fastconv.winograd_size``): measured on 2 cores, it beats im2col + GEMM on all the
    stride-1 layers tried, from LeNet's 1 -> 6 channels to 64 -> 64 (benchmarks/README.md)."""
    return g.SH == 1 and g.SW == 1 and g.PH < g.KH and g.PW < g.KW


class DirectConv:
    """``parallel(calls)`` runs zero-argument callables at once and returns their
    results in order; ``fallback(gy, x, weight, g, need_x, need_w, need_b)`` is the
    engine's im2col backward, for inputs with inf or NaN (see ``numba_direct.py``)."""

    def __init__(self, parallel, threads: int, fallback):
        self.parallel, self.threads, self.fallback = parallel, threads, fallback

    def _parts(self, g):
        """Disjoint (n0, n1) ranges covering the batch, one per thread that pays."""
        macs = g.N * g.OC * g.C * g.KH * g.KW * g.OH * g.OW
        parts = max(1, min(self.threads, g.N, macs // MIN_PART_MACS))
        step = -(-g.N // parts)
        return [(n0, min(g.N, n0 + step)) for n0 in range(0, g.N, step)]

    def forward(self, x, weight, bias, g):
        """y (N, OC, OH, OW), C-contiguous."""
        x = np.ascontiguousarray(x)                                 # (N, C, H, W)
        w = np.ascontiguousarray(weight)                            # (OC, C, KH, KW)
        b = np.zeros(g.OC, x.dtype) if bias is None else np.ascontiguousarray(bias)
        y = np.empty((g.N, g.OC, g.OH, g.OW), dtype=x.dtype)        # (N, OC, OH, OW)
        self.parallel([lambda n0=n0, n1=n1: nd.forward(x, w, b, g.PH, g.PW, y, n0, n1)
                       for n0, n1 in self._parts(g)])
        return y, x, w

    def backward(self, gy, x, w, g, need_x, need_w, need_b):
        """(gx, gW, gb) for gy (N, OC, OH, OW); x and w as ``forward`` returned them."""
        gy = np.ascontiguousarray(gy)                               # (N, OC, OH, OW)
        dt, K = gy.dtype, g.C * g.KH * g.KW
        parts = self._parts(g)
        gx = gw = gb = None
        if need_w:
            def weight_part(n0, n1):
                gw_part = np.zeros((g.OC, K), dt)                   # (OC, C*KH*KW)
                gb_part = np.zeros(g.OC, dt)                        # (OC,)
                finite = nd.weight_gradient(x, gy, g.PH, g.PW, gw_part, gb_part,
                                            dt.type(0), n0, n1)
                return finite, gw_part, gb_part
            results = self.parallel([lambda n0=n0, n1=n1: weight_part(n0, n1)
                                     for n0, n1 in parts])
            if all(finite for finite, _, _ in results):
                # (OC, C*KH*KW) -> (OC, C, KH, KW): columns are ordered (c, kh, kw)
                gw = sum(r[1] for r in results).reshape(g.OC, g.C, g.KH, g.KW)
                gb = sum(r[2] for r in results) if need_b else None
            else:                            # inf or NaN in x: im2col adds no stray NaN
                _, gw, gb = self.fallback(gy, x, w, g, False, True, need_b)
        elif need_b:
            gb = gy.sum(axis=(0, 2, 3))                             # (OC,)
        if need_x:
            if not np.isfinite(w).all():     # inf weights: as above
                gx, _, _ = self.fallback(gy, x, w, g, True, False, False)
            else:
                gx = np.empty((g.N, g.C, g.H, g.W), dtype=dt)       # (N, C, H, W)
                self.parallel([lambda n0=n0, n1=n1: nd.input_gradient(gy, w, g.PH, g.PW,
                                                                      gx, n0, n1)
                               for n0, n1 in parts])
        return gx, gw, gb
