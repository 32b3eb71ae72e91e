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
the map's size) writes y with no addition; the others add onto it. The taps are dealt
out to the CPU threads (``shares``): each thread copies its taps' rows, runs their GEMMs
whole and sums them into an array of its own, and the threads' arrays are added at the
end (small: these are small maps), so the copies and additions run in parallel too.
Images and results are channels-last, as the other GEMM convolutions keep them. ``zero_share`` is the part
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
        bh, bw = TapGemmCPU.input_box(g, rows, cols)
        return ah[:, bh, bw]

    @staticmethod
    def shares(taps):
        """The taps dealt out to the threads (``cpu_threads.WORKERS``), the largest first
        to the least loaded, so that each thread runs whole GEMMs of its own taps (and
        their copies and additions) at the same time as the others."""
        load, shares = [0] * cpu_threads.WORKERS, [[] for _ in range(cpu_threads.WORKERS)]
        for tap in taps:
            j = load.index(min(load))
            shares[j].append(tap)
            load[j] += (tap[1][1] - tap[1][0]) * (tap[2][1] - tap[2][0])
        return [share for share in shares if share]

    @staticmethod
    def transposed(a2, out):
        """out (B, A) = a2 (A, B).T, copied by every thread (a slice of B each)."""
        cpu_threads.parallel([lambda s=s: np.copyto(out[s], a2[:, s].T)
                              for s in cpu_threads.pieces(out.shape[0], cpu_threads.WORKERS)])
        return out

    def sum_of_taps(self, shares, out, images, mats, box, name):
        """out (N, A, B, D) = the sum over the taps of ``images(rows, cols)`` (the tap's
        rows, (N*ho*wo, .)) @ ``mats(t)``, each added onto the tap's part of out,
        ``box(rows, cols)`` (two slices: ho x wo places of out): each thread sums its share
        into an array of its own (the first thread into out itself), added at the end. A
        tap whose box is all of out writes it, with no zeros first."""
        N, A, B, D = out.shape
        full = (slice(0, A, 1), slice(0, B, 1))
        outs = [out] + [WORKSPACE.get(np, f"{name}{j}", out.shape, out.dtype)
                        for j in range(1, len(shares))]

        def run(j):
            acc, filled = outs[j], False
            for t, rows, cols in shares[j]:
                a, (bh, bw) = images(rows, cols), box(rows, cols)
                if not filled and (bh, bw) == full:
                    np.matmul(a, mats(t), out=acc.reshape(-1, D))
                    filled = True
                    continue
                if not filled:
                    acc.fill(0)
                    filled = True
                part = np.matmul(a, mats(t))                          # (N*ho*wo, D)
                acc[:, bh, bw] += part.reshape(N, rows[1] - rows[0], cols[1] - cols[0], D)
            if not filled:
                acc.fill(0)
        if not shares:                                                # every tap in the padding
            out.fill(0)
        cpu_threads.parallel([lambda j=j: run(j) for j in range(len(shares))])
        for acc in outs[1:]:
            out += acc
        return out

    def forward(self, x, weight, bias, g: ConvGeometry, keep: bool):
        """y (N, OC, OH, OW) (a view of channels-last memory), and what backward needs."""
        N, C, OC, KK = g.N, g.C, g.OC, g.KH * g.KW
        xh = as_nhwc(np, x)                                           # (N, H, W, C)
        # (OC, C, KH, KW) -> (KH*KW, OC, C): each tap's filter matrix contiguous
        w_taps = self.transposed(weight.reshape(OC * C, KK),
                                 np.empty((KK, OC * C), x.dtype)).reshape(KK, OC, C)
        yh = np.empty((N, g.OH, g.OW, OC), dtype=x.dtype)             # (N, OH, OW, OC)
        self.sum_of_taps(
            self.shares(self.taps(g)), yh,
            lambda rows, cols: np.ascontiguousarray(self.pixels(xh, g, rows, cols)).reshape(
                -1, C),                                               # (N*ho*wo, C)
            lambda t: w_taps[t].T,                                    # (C, OC)
            lambda rows, cols: (slice(rows[0], rows[1], 1), slice(cols[0], cols[1], 1)),
            "taps_y")
        if bias is not None:
            yh += bias                                                # (..., OC) + (OC,)
        saved = TapsSaved(xh, w_taps, g) if keep else None
        return yh.transpose(0, 3, 1, 2), saved                        # (N, OC, OH, OW) view

    def backward(self, gy, s: TapsSaved, need_x: bool, need_w: bool, need_b: bool):
        """(gx, gW, gb) for gy (N, OC, OH, OW); None where not needed."""
        g = s.g
        N, C, OC, KK = g.N, g.C, g.OC, g.KH * g.KW
        gyh = as_nhwc(np, gy)                                         # (N, OH, OW, OC)
        gb = cpu_threads.column_sums(gyh.reshape(-1, OC)) if need_b else None      # (OC,)
        taps = self.taps(g)
        shares = self.shares(taps)

        def grad_rows(rows, cols):                                    # (N*ho*wo, OC)
            return np.ascontiguousarray(gyh[:, rows[0]:rows[1], cols[0]:cols[1]]).reshape(
                -1, OC)
        gw = None
        if need_w:      # every tap with outputs writes its own; the others stay zero
            gw_taps = (np.empty if len(taps) == KK else np.zeros)((KK, OC, C), gy.dtype)

            def weight_grads(share):
                for t, rows, cols in share:   # (OC, C) = (OC, rows) @ (rows, C)
                    a = np.ascontiguousarray(self.pixels(s.xh, g, rows, cols))
                    np.matmul(grad_rows(rows, cols).T, a.reshape(-1, C), out=gw_taps[t])
            cpu_threads.parallel([lambda sh=sh: weight_grads(sh) for sh in shares])
            # (KH*KW, OC*C) -> (OC*C, KH*KW) = (OC, C, KH, KW)
            gw = self.transposed(gw_taps.reshape(KK, OC * C),
                                 np.empty((OC * C, KK), gy.dtype)).reshape(OC, C, g.KH, g.KW)
        gxh = None
        if need_x:      # gx[:, pixels of the tap] += gy rows @ W_tap, (rows, C)
            gxh = self.sum_of_taps(
                shares, np.empty((N, g.H, g.W, C), gy.dtype), grad_rows,
                lambda t: s.w_taps[t],                                # (OC, C)
                lambda rows, cols: self.input_box(g, rows, cols), "taps_gx")
        gx = gxh.transpose(0, 3, 1, 2) if need_x else None            # (N, C, H, W) view
        return gx, gw, gb

    @staticmethod
    def input_box(g, rows, cols):
        """The input pixels a tap reads, as two slices (every SH-th row, SW-th column)."""
        (oh0, oh1, ih0), (ow0, ow1, iw0) = rows, cols
        return (slice(ih0, ih0 + (oh1 - oh0 - 1) * g.SH + 1, g.SH),
                slice(iw0, iw0 + (ow1 - ow0 - 1) * g.SW + 1, g.SW))


TAP_GEMMS = TapGemmCPU()
