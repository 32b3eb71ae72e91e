"""Convolution as one GEMM per filter tap, for small maps where im2col's columns are
mostly padding (letters as in the Notation of ``tinyalex/ops/im2col.py``).

A KH x KW convolution is the sum over its taps (kh, kw) of 1x1 convolutions of shifted
images: tap (kh, kw) multiplies input pixel (oh*SH + kh - PH, ow*SW + kw - PW) by the
filters' (OC, C) matrix W[:, :, kh, kw] and adds the product onto output pixel (oh, ow).
im2col + GEMM computes every tap of every output, including the taps that fall on the
padding: a zero column times a filter. On a 3x3 map with padding 1 (ResNet-18's last
stage at 96x96 input) 32 of an output's 81 tap products are such zeros: 40% of the
GEMM. Here each tap multiplies only the outputs whose input pixel exists, a rectangle
of the output, so no zero is ever multiplied::

    for each tap (kh, kw), with outputs R (a rectangle) and their input pixels S:
        a = x_nhwc[:, S] as rows                 # (N*|R|, C), copied from the input
        y_nhwc[:, R] += a @ W[:, :, kh, kw].T    # (N*|R|, OC): one GEMM

Backward, per tap, from the same rows::

    gW[:, :, kh, kw] = gy_nhwc[:, R].T @ a       # (OC, C)
    gx_nhwc[:, S]   += gy_nhwc[:, R] @ W[:, :, kh, kw]

The tap whose rectangle is the whole output (the centre tap, wherever the padding keeps
the map's size) writes y with no addition; the others add onto it. Images and results
are channels-last, as the other GEMM convolutions keep them. ``zero_share`` is the part
of im2col's products that this algorithm skips; the chooser (``tinyalex/ops/conv.py``)
gives it the layers where that part is large.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import cpu_threads
from .geometry import ConvGeometry
from .layout import as_nhwc
from .workspace import WORKSPACE

MIN_ZERO_SHARE = 0.35    # im2col multiplies at least this part zeros: taps pay (3x3
                         # maps padded by 1: 40%; 4x4: 31%, left to Winograd F(4,3))
MIN_CHANNELS = 64        # each tap's GEMM is (rows, C) @ (C, OC): thinner ones do not pay


def tap_span(O, S, P, k, size):
    """(o0, o1, i0): the outputs o0..o1-1 (along one axis) whose tap k falls inside the
    input (o*S + k - P in 0..size-1), and the input index of o0."""
    o0 = min(O, max(0, -(-(P - k) // S)))          # first o with o*S + k - P >= 0
    o1 = min(O, (size - 1 + P - k) // S + 1)       # past the last o with o*S + k - P < size
    return o0, max(o0, o1), o0 * S + k - P


def zero_share(g: ConvGeometry) -> float:
    """The share of im2col's tap products that fall on padding (zeros)."""
    def live(O, S, P, K, size):
        return sum(tap_span(O, S, P, k, size)[1] - tap_span(O, S, P, k, size)[0]
                   for k in range(K))
    taps = live(g.OH, g.SH, g.PH, g.KH, g.H) * live(g.OW, g.SW, g.PW, g.KW, g.W)
    return 1.0 - taps / (g.OH * g.OW * g.KH * g.KW)


@dataclass
class TapsSaved:
    """What backward needs: the channels-last input and the tap-major filters."""
    xh: object            # (N, H, W, C), C-contiguous
    w_taps: object        # (KH*KW, OC, C): w_taps[kh*KW + kw] = W[:, :, kh, kw]
    g: ConvGeometry


class TapGemmCPU:
    name = "tap GEMMs (no zero columns)"
    condition = (f"groups 1, >= {MIN_CHANNELS} channels in/out, im2col's products "
                 f">= {MIN_ZERO_SHARE:.0%} padding (zero_share)")

    @staticmethod
    def takes(g: ConvGeometry) -> bool:
        return g.groups == 1 and min(g.C, g.OC) >= MIN_CHANNELS \
            and zero_share(g) >= MIN_ZERO_SHARE

    @staticmethod
    def taps(g: ConvGeometry):
        """Every tap with outputs: (t, (oh0, oh1, ih0), (ow0, ow1, iw0)), t = kh*KW + kw,
        the taps that reach the most outputs first."""
        out = []
        for kh in range(g.KH):
            rows = tap_span(g.OH, g.SH, g.PH, kh, g.H)
            for kw in range(g.KW):
                cols = tap_span(g.OW, g.SW, g.PW, kw, g.W)
                if rows[1] > rows[0] and cols[1] > cols[0]:
                    out.append((kh * g.KW + kw, rows, cols))
        out.sort(key=lambda tap: -(tap[1][1] - tap[1][0]) * (tap[2][1] - tap[2][0]))
        return out

    @staticmethod
    def pixels(ah, g: ConvGeometry, rows, cols):
        """The input pixels of a tap's outputs: ah (N, H, W, C) -> (N, ho, wo, C), a view."""
        (oh0, oh1, ih0), (ow0, ow1, iw0) = rows, cols
        return ah[:, ih0:ih0 + (oh1 - oh0 - 1) * g.SH + 1:g.SH,
                  iw0:iw0 + (ow1 - ow0 - 1) * g.SW + 1:g.SW]

    def forward(self, x, weight, bias, g: ConvGeometry, keep: bool):
        """y (N, OC, OH, OW) (a view of channels-last memory), and what backward needs."""
        N, C, OC = g.N, g.C, g.OC
        xh = as_nhwc(np, x)                                           # (N, H, W, C)
        # (OC, C, KH, KW) -> (KH*KW, OC, C): each tap's filter matrix contiguous
        w_taps = np.ascontiguousarray(weight.reshape(OC * C, g.KH * g.KW).T).reshape(
            g.KH * g.KW, OC, C)
        yh = np.empty((N, g.OH, g.OW, OC), dtype=x.dtype)             # (N, OH, OW, OC)
        taps = self.taps(g)
        first_fills = bool(taps) and taps[0][1][:2] == (0, g.OH) and taps[0][2][:2] == (0, g.OW)
        if not first_fills:
            yh.fill(0)
        for i, (t, rows, cols) in enumerate(taps):
            a = np.ascontiguousarray(self.pixels(xh, g, rows, cols))  # (N, ho, wo, C)
            ho, wo = a.shape[1], a.shape[2]
            if i == 0 and first_fills:                                # the whole output
                cpu_threads.gemm(a.reshape(-1, C), w_taps[t].T, yh.reshape(-1, OC))
                continue
            part = WORKSPACE.get(np, "taps_y", (N * ho * wo, OC), x.dtype)
            cpu_threads.gemm(a.reshape(-1, C), w_taps[t].T, part)     # (N*ho*wo, OC)
            yh[:, rows[0]:rows[1], cols[0]:cols[1]] += part.reshape(N, ho, wo, OC)
        if bias is not None:
            yh += bias                                                # (..., OC) + (OC,)
        saved = TapsSaved(xh, w_taps, g) if keep else None
        return yh.transpose(0, 3, 1, 2), saved                        # (N, OC, OH, OW) view

    def backward(self, gy, s: TapsSaved, need_x: bool, need_w: bool, need_b: bool):
        """(gx, gW, gb) for gy (N, OC, OH, OW); None where not needed."""
        g = s.g
        N, C, OC = g.N, g.C, g.OC
        gyh = as_nhwc(np, gy)                                         # (N, OH, OW, OC)
        gb = gyh.reshape(-1, OC).sum(axis=0) if need_b else None      # (OC,)
        taps = self.taps(g)
        gw_taps = None                                                # (KH*KW, OC, C)
        if need_w:      # every tap with outputs writes its own; the others stay zero
            gw_taps = (np.empty if len(taps) == g.KH * g.KW else np.zeros)(
                (g.KH * g.KW, OC, C), dtype=gy.dtype)
        gxh = None                                                    # (N, H, W, C)
        if need_x:      # the first tap covers every input pixel: it writes, no zeros
            fills = False
            if taps:
                (oh0, oh1, ih0), (ow0, ow1, iw0) = taps[0][1], taps[0][2]
                fills = g.SH == g.SW == 1 and ih0 == iw0 == 0 and oh1 - oh0 == g.H \
                    and ow1 - ow0 == g.W
            gxh = (np.empty if fills else np.zeros)((g.N, g.H, g.W, C), dtype=gy.dtype)
        for i, (t, rows, cols) in enumerate(taps):
            gyt = np.ascontiguousarray(gyh[:, rows[0]:rows[1], cols[0]:cols[1]])
            ho, wo = gyt.shape[1], gyt.shape[2]
            gyt = gyt.reshape(-1, OC)                                 # (N*ho*wo, OC)
            if need_w:
                a = np.ascontiguousarray(self.pixels(s.xh, g, rows, cols)).reshape(-1, C)
                cpu_threads.gemm(gyt.T, a, gw_taps[t])  # (OC, C) = (OC, rows) @ (rows, C)
            if need_x and i == 0 and fills:                           # every input pixel
                cpu_threads.gemm(gyt, s.w_taps[t], gxh.reshape(-1, C))
            elif need_x:
                part = WORKSPACE.get(np, "taps_gx", (N * ho * wo, C), gy.dtype)
                cpu_threads.gemm(gyt, s.w_taps[t], part)  # (rows, C) = (rows, OC) @ (OC, C)
                self.pixels(gxh, g, rows, cols)[...] += part.reshape(N, ho, wo, C)
        gw = None
        if need_w:      # (KH*KW, OC, C) -> (OC, C, KH, KW): one 2-D transpose
            gw = np.ascontiguousarray(gw_taps.reshape(g.KH * g.KW, OC * C).T).reshape(
                OC, C, g.KH, g.KW)
        gx = gxh.transpose(0, 3, 1, 2) if need_x else None            # (N, C, H, W) view
        return gx, gw, gb


TAP_GEMMS = TapGemmCPU()
