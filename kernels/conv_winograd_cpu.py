"""3x3 and 5x5 stride-1 convolutions by Winograd's minimal filtering on the CPU:
F(6x6, 3x3) for AlexNet's conv3-5 and F(4x4, 5x5) for its conv2 (F(4x4, 3x3) and
F(3x3, 5x5) for the layers whose maps their smaller tiles cover with fewer products),
the results of im2col + GEMM with 5, 6.25, 4 and 4.6 times fewer multiplications
(letters as in the Notation of ``tinyalex/ops/im2col.py``; tile loops in
``numba_winograd_f63.py``, ``_f45.py``, ``_f43.py``, ``_f35.py`` and ``_f25.py``:
F(2x2, 5x5), 2.8 times fewer, the simpler 5x5 set, which the chooser no longer picks).

The idea (Lavin and Gray, 2016), for F(m x m, r x r): the m x m block of outputs of an
r x r filter g needs the n x n input patch d around it (n = m + r - 1), and equals

    Y = A^T [ (G g G^T) * (B^T d B) ] A          (* elementwise, on n x n matrices)

with small constant matrices A^T (m x n), G (n x r), B^T (n x n): n*n multiplications
instead of the m*m*r*r of the direct sums. Summed over the input channels, each of the
n*n positions is a matrix product, so a layer is

    V[k] (T, C)   = input transform of every tile t (T = N * ceil(OH/m) * ceil(OW/m))
    U[k] (OC, C)  = filter transform
    M[k] (T, OC)  = V[k] @ U[k].T                  k = 0..n*n-1: n*n GEMMs
    y             = output transform of M          (T, m x m, OC) -> (N, OH, OW, OC)

Backward, by the same algebra, from the output gradient's transform, once per chunk:

    gM[k] (T, OC) = A g A^T for every tile g of gy (the output transform's adjoint)
    gU[k] (OC, C) = gM[k]^T (OC, T) @ V[k] (T, C),   gW = G^T gU G
    gV[k] (T, C)  = gM[k] (T, OC) @ U[k] (OC, C)      (the forward's product, transposed)
    gx            = B gV B^T for every tile, added onto the pixels of its patch
                    (the input transform's adjoint; the patches overlap by r - 1)

F(4x4, 3x3) and F(2x2, 5x5) use 6x6 tiles (36 GEMMs) and the matrices of Toom-Cook
at the points 0, 1, -1, 2, -2 and infinity (the same B^T); F(3x3, 5x5) 7x7 tiles (49
GEMMs) and the points 0, 1, -1, 2, -2, 1/2 and infinity; F(6x6, 3x3) and F(4x4, 5x5)
8x8 tiles (64 GEMMs) and those points and -1/2 (the same B^T; a test checks that each
set computes a correlation). Larger tiles need fewer products per output (F(4x4,
3x3) 36 per 16, F(6x6, 3x3) 64 per 36, F(3x3, 5x5) 49 per 9, F(4x4, 5x5) 64 per 16)
at the price of larger constants (up to 32 in A^T, 1/90 in G) and so a larger
float32 rounding error: the tests hold it to 1e-4 of the output's scale at
AlexNet's widths. A larger tile also wastes more of itself past the edge of a map:
the 8x8 sets take a layer only where their tiles need fewer products than the
smaller set's (``rival``: on 12x12 maps 4 tiles of 64 against F(4x4, 3x3)'s 9 of 36,
on 7x7 maps 4 of 64 against 4 of 36; on 26x26 maps 49 of 64 against F(3x3, 5x5)'s
81 of 49). A batch is processed
a few images at a time so that V and M stay small (``CHUNK_BYTES``). Images are
channels-last, as the GEMMs leave them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import cpu_threads, numba_winograd_f25, numba_winograd_f35, numba_winograd_f43, \
    numba_winograd_f45, numba_winograd_f63, numba_winograd_filter
from .geometry import ConvGeometry
from .layout import as_nhwc
from .workspace import WORKSPACE

CHUNK_BYTES = 16 << 20       # transformed tiles per GEMM batch (V or M)
MIN_CHANNELS = 64            # below, the direct convolution is faster: Winograd's GEMMs
                             # are too thin (benchmarks/README.md)

# F(2, 5): A^T (2x6), G (6x5), B^T (6x6)
AT25 = np.array([[1, 1, 1, 1, 1, 0], [0, 1, -1, 2, -2, 1]], dtype=float)
G25 = np.array([[1 / 4, 0, 0, 0, 0],
               [-1 / 6, -1 / 6, -1 / 6, -1 / 6, -1 / 6],
               [-1 / 6, 1 / 6, -1 / 6, 1 / 6, -1 / 6],
               [1 / 24, 1 / 12, 1 / 6, 1 / 3, 2 / 3],
               [1 / 24, -1 / 12, 1 / 6, -1 / 3, 2 / 3],
               [0, 0, 0, 0, 1]])
BT25 = np.array([[4, 0, -5, 0, 1, 0], [0, -4, -4, 1, 1, 0], [0, 4, -4, -1, 1, 0],
                [0, -2, -1, 2, 1, 0], [0, 2, -1, -2, 1, 0], [0, 4, 0, -5, 0, 1]], dtype=float)
# F(4, 3): A^T (4x6), G (6x3), B^T (6x6) = BT25. Row i of A^T holds the points to the
# power i (and 1 at infinity for the last); the rows of G are the filter's polynomial
# at each point, scaled by 1 / prod_j (p_i - p_j) over the other finite points.
AT43 = np.array([[1, 1, 1, 1, 1, 0], [0, 1, -1, 2, -2, 0], [0, 1, 1, 4, 4, 0],
                 [0, 1, -1, 8, -8, 1]], dtype=float)
G43 = np.array([[1 / 4, 0, 0],
                [-1 / 6, -1 / 6, -1 / 6],
                [-1 / 6, 1 / 6, -1 / 6],
                [1 / 24, 1 / 12, 1 / 6],
                [1 / 24, -1 / 12, 1 / 6],
                [0, 0, 1]])
BT43 = BT25
# F(3, 5): 7x7 tiles, the points 0, 1, -1, 2, -2, 1/2 and infinity, built by the same
# rules: A^T's row i holds the points to the power i; G's rows the filter's polynomial
# at each point over prod_j (p_i - p_j); B^T's row i the coefficients (lowest power
# first) of prod_{j != i} (x - p_j) over the finite points, the last row their product.
AT35 = np.array([[1, 1, 1, 1, 1, 1, 0], [0, 1, -1, 2, -2, 1 / 2, 0],
                 [0, 1, 1, 4, 4, 1 / 4, 1]])
G35 = np.array([[-1 / 2, 0, 0, 0, 0],
                [-1 / 3, -1 / 3, -1 / 3, -1 / 3, -1 / 3],
                [1 / 9, -1 / 9, 1 / 9, -1 / 9, 1 / 9],
                [1 / 36, 1 / 18, 1 / 9, 2 / 9, 4 / 9],
                [-1 / 60, 1 / 30, -1 / 15, 2 / 15, -4 / 15],
                [32 / 45, 16 / 45, 8 / 45, 4 / 45, 2 / 45],
                [0, 0, 0, 0, 1]])
BT35 = np.array([[-2, 4, 5 / 2, -5, -1 / 2, 1, 0],
                 [0, 2, -2, -9 / 2, 1 / 2, 1, 0],
                 [0, -2, 6, -7 / 2, -3 / 2, 1, 0],
                 [0, 1, -3 / 2, -2, 3 / 2, 1, 0],
                 [0, -1, 5 / 2, 0, -5 / 2, 1, 0],
                 [0, 4, 0, -5, 0, 1, 0],
                 [0, -2, 4, 5 / 2, -5, -1 / 2, 1]])
# F(6, 3): 8x8 tiles, the points 0, 1, -1, 2, -2, 1/2, -1/2 and infinity, by the same
# rules as F(3, 5).
AT63 = np.array([[1, 1, 1, 1, 1, 1, 1, 0],
                 [0, 1, -1, 2, -2, 1 / 2, -1 / 2, 0],
                 [0, 1, 1, 4, 4, 1 / 4, 1 / 4, 0],
                 [0, 1, -1, 8, -8, 1 / 8, -1 / 8, 0],
                 [0, 1, 1, 16, 16, 1 / 16, 1 / 16, 0],
                 [0, 1, -1, 32, -32, 1 / 32, -1 / 32, 1]])
G63 = np.array([[-1, 0, 0],
                [-2 / 9, -2 / 9, -2 / 9],
                [-2 / 9, 2 / 9, -2 / 9],
                [1 / 90, 1 / 45, 2 / 45],
                [1 / 90, -1 / 45, 2 / 45],
                [32 / 45, 16 / 45, 8 / 45],
                [32 / 45, -16 / 45, 8 / 45],
                [0, 0, 1]])
BT63 = np.array([[-1, 0, 21 / 4, 0, -21 / 4, 0, 1, 0],
                 [0, 1, 1, -17 / 4, -17 / 4, 1, 1, 0],
                 [0, -1, 1, 17 / 4, -17 / 4, -1, 1, 0],
                 [0, 1 / 2, 1 / 4, -5 / 2, -5 / 4, 2, 1, 0],
                 [0, -1 / 2, 1 / 4, 5 / 2, -5 / 4, -2, 1, 0],
                 [0, 2, 4, -5 / 2, -5, 1 / 2, 1, 0],
                 [0, -2, 4, 5 / 2, -5, -1 / 2, 1, 0],
                 [0, -1, 0, 21 / 4, 0, -21 / 4, 0, 1]])
# F(4, 5): F(6, 3)'s eight points and B^T, 4 outputs of a 5-tap filter.
AT45 = AT63[:4].copy()
AT45[3, 7] = 1
G45 = np.array([[-1, 0, 0, 0, 0],
                [-2 / 9, -2 / 9, -2 / 9, -2 / 9, -2 / 9],
                [-2 / 9, 2 / 9, -2 / 9, 2 / 9, -2 / 9],
                [1 / 90, 1 / 45, 2 / 45, 4 / 45, 8 / 45],
                [1 / 90, -1 / 45, 2 / 45, -4 / 45, 8 / 45],
                [32 / 45, 16 / 45, 8 / 45, 4 / 45, 2 / 45],
                [32 / 45, -16 / 45, 8 / 45, -4 / 45, 2 / 45],
                [0, 0, 0, 0, 1]])
BT45 = BT63


@dataclass
class WinogradSaved:
    """What backward needs: the channels-last input and the filters."""
    xh: object            # (N, H, W, C), C-contiguous
    weight: object        # (OC, C, r, r)
    g: ConvGeometry


class WinogradCPU:
    """Winograd F(m x m, r x r) with the tile loops of ``loops`` (a numba_winograd_*
    module, looked up at each call)."""

    def __init__(self, m: int, r: int, AT, G, BT, loops, rival=None):
        self.m, self.r, self.n = m, r, m + r - 1
        self.name = f"winograd F({m},{r})"
        self.AT, self.G, self.BT, self.loops = AT, G, BT, loops
        self.GG = np.kron(G, G)                    # (n*n, r*r): vec(G w G^T) = GG vec(w)
        # the 3x3 sets transform their filters by loops (9 terms an output: BLAS runs
        # that GEMM slower), the 5x5 sets by one GEMM (25 terms: BLAS runs it faster than
        # the loops; the record benchmarks/results/2026-12-07_epyc-zen5-avx512-2cores-s3)
        self.filter_loops = r == 3
        self.chunk_bytes = CHUNK_BYTES
        self.min_channels = MIN_CHANNELS
        self.rival = rival                         # takes only layers it needs fewer
                                                   # products for than this set

    def products(self, g: ConvGeometry) -> int:
        """Multiplications per image and channel pair: tiles times n*n."""
        return -(-g.OH // self.m) * -(-g.OW // self.m) * self.n * self.n

    def takes(self, g: ConvGeometry) -> bool:
        """The layers it computes: r x r filters, stride 1, padding below r, at least
        ``min_channels`` channels in and out (and fewer products than ``rival``)."""
        r = self.r
        return g.KH == r and g.KW == r and g.SH == 1 and g.SW == 1 and g.PH < r \
            and g.PW < r and min(g.C, g.OC) >= self.min_channels \
            and (self.rival is None or self.products(g) < self.rival.products(g))

    @property
    def condition(self) -> str:
        """``takes`` in words, for the chooser's table (ops/conv.py)."""
        r = self.r
        words = f"{r}x{r}, stride 1, padding < {r}, >= {self.min_channels} channels in/out"
        return words + (f", fewer products than {self.rival.name[9:]}" if self.rival else "")

    # -- the filter transforms: loops over blocks of filters (numba_winograd_filter) or
    #    one GEMM with kron(G, G) --------------------------------------------------------
    def filter_transform(self, w, dtype):
        """(OC, C, r, r) -> U (n*n, OC, C) = G w G^T for every filter."""
        OC, C, r, _ = w.shape
        F, nn = OC * C, self.n * self.n
        U = np.empty((nn, F), dtype=dtype)
        if self.filter_loops:
            G = self.G.astype(dtype)
            wT = np.ascontiguousarray(w.reshape(F, r * r).T, dtype=dtype)  # (r*r, F)
            cpu_threads.split(F, nn, lambda f0, f1:
                              numba_winograd_filter.filter_transform(G, wT, U, f0, f1))
        else:               # (n*n, OC*C) = (n*n, r*r) @ (r*r, OC*C)
            cpu_threads.gemm(self.GG.astype(dtype), w.reshape(F, r * r).T, U)
        return U.reshape(nn, OC, C)

    def filter_gradient(self, gU, dtype):
        """gU (n*n, OC, C) -> gW (OC, C, r, r) = G^T gU G."""
        nn, OC, C = gU.shape
        r, F = self.r, OC * C
        gU2 = gU.reshape(nn, F)
        if not self.filter_loops:   # (OC*C, r*r) = (OC*C, n*n) @ (n*n, r*r)
            gW = np.empty((F, r * r), dtype=dtype)
            cpu_threads.gemm(gU2.T, self.GG.astype(dtype), gW)
            return gW.reshape(OC, C, r, r)
        G = self.G.astype(dtype)
        gWT = np.empty((r * r, F), dtype=dtype)                         # tap-major
        cpu_threads.split(F, nn, lambda f0, f1:
                          numba_winograd_filter.filter_gradient(G, gU2, gWT, f0, f1))
        return np.ascontiguousarray(gWT.T).reshape(OC, C, r, r)

    def _images_per_chunk(self, N, tiles_per_image, channels, itemsize):
        per_image = self.n * self.n * tiles_per_image * channels * itemsize
        return max(1, min(N, self.chunk_bytes // max(1, per_image)))

    # -- the convolution of channels-last images -------------------------------------
    def conv(self, xh, U, bias, PH, PW, OH, OW):
        """y (N, OH, OW, OC) for channels-last xh (N, H, W, C) and U (n*n, OC, C)."""
        N, H, W, C = xh.shape
        m, nn, OC = self.m, self.n * self.n, U.shape[1]
        TH, TW = -(-OH // m), -(-OW // m)                          # tiles down, across
        dt = xh.dtype
        b = bias if bias is not None else np.zeros(1, dt)
        yh = np.empty((N, OH, OW, OC), dtype=dt)                   # (N, OH, OW, OC)
        nb = self._images_per_chunk(N, TH * TW, max(C, OC), dt.itemsize)
        for n0 in range(0, N, nb):
            n1 = min(N, n0 + nb)
            T = (n1 - n0) * TH * TW
            V = WORKSPACE.get(np, "wino_V", (nn, T, C), dt)         # (n*n, T, C)
            M = WORKSPACE.get(np, "wino_M", (nn, T, OC), dt)        # (n*n, T, OC)
            x2 = xh[n0:n1].reshape((n1 - n0) * H, W * C)           # ((n1-n0)*H, W*C)
            cpu_threads.run_ranges(self.loops.input_transform, T, x2, n1 - n0, H, W, C,
                                   PH, PW, TH, TW, V, dt.type(0))
            # (n*n, T, OC) = (n*n, T, C) @ (n*n, C, OC), U stored as (n*n, OC, C)
            cpu_threads.gemm(V, U.transpose(0, 2, 1), M)
            y2 = yh[n0:n1].reshape((n1 - n0) * OH, OW * OC)        # ((n1-n0)*OH, OW*OC)
            cpu_threads.run_ranges(self.loops.output_transform, T, M, n1 - n0, OH, OW, OC,
                                   TH, TW, b, bias is not None, y2)
        return yh

    def gradients(self, xh, gyh, weight, PH, PW, need_x=True, need_w=True):
        """(gW, gx): gW (OC, C, r, r) and channels-last gx (N, H, W, C) (None where not
        needed) from xh (N, H, W, C), gyh (N, OH, OW, OC) and the filters, in one pass
        over the batch. Each chunk's output gradient is transformed once, gM (n*n, T,
        OC), and serves both: gU[k] = gM[k]^T V[k] for the filters, and gV[k] = gM[k]
        U[k] (the forward's product, transposed) for the input, whose tiles go back to
        the pixels by the input transform's adjoint, B gV B^T, added over the
        overlapping patches."""
        N, H, W, C = xh.shape
        _, OH, OW, OC = gyh.shape
        m, nn = self.m, self.n * self.n
        TH, TW = -(-OH // m), -(-OW // m)
        dt = xh.dtype
        zero = dt.type(0)
        # The chunks' parts of gW are summed in the transformed domain, gU (n*n, OC, C),
        # and turned back once, when that sum is small; when it is larger than a chunk
        # (F(4,3) on 384 channels), each part goes back to the filter domain at once
        # and the sum is gW (OC, C, r, r), a quarter of the size. Turning back costs a
        # GEMM per chunk, too much for conv2's 5x5 sets, which take one or two images
        # a chunk.
        in_filters = nn * OC * C * dt.itemsize > self.chunk_bytes
        gU = np.empty((nn, OC, C), dtype=dt) if need_w and not in_filters else None
        gW = None                                                  # (OC, C, r, r)
        U = self.filter_transform(weight, dt) if need_x else None  # (n*n, OC, C)
        gxh = np.zeros((N, H, W, C), dtype=dt) if need_x else None
        nb = self._images_per_chunk(N, TH * TW, max(C, OC), dt.itemsize)
        for n0 in range(0, N, nb):
            n1 = min(N, n0 + nb)
            T = (n1 - n0) * TH * TW
            V = WORKSPACE.get(np, "wino_V", (nn, T, C), dt)         # (n*n, T, C)
            gM = WORKSPACE.get(np, "wino_M", (nn, T, OC), dt)       # (n*n, T, OC)
            gy2 = gyh[n0:n1].reshape((n1 - n0) * OH, OW * OC)      # ((n1-n0)*OH, OW*OC)
            cpu_threads.run_ranges(self.loops.grad_output_transform, T, gy2, n1 - n0, OH,
                                   OW, OC, TH, TW, gM, zero)
            if need_w:
                # the first chunk's share goes straight into gU, the others by a part
                part = gU if n0 == 0 and not in_filters else \
                    WORKSPACE.get(np, "wino_gU", (nn, OC, C), dt)
                x2 = xh[n0:n1].reshape((n1 - n0) * H, W * C)       # ((n1-n0)*H, W*C)
                cpu_threads.run_ranges(self.loops.input_transform, T, x2, n1 - n0, H, W,
                                       C, PH, PW, TH, TW, V, zero)
                cpu_threads.gemm(gM.transpose(0, 2, 1), V, part)  # (n*n, OC, C) = (n*n, OC, T) @ (n*n, T, C)
                if not in_filters:
                    if part is not gU:
                        gU += part
                elif gW is None:
                    gW = self.filter_gradient(part, dt)            # (OC, C, r, r)
                else:
                    gW += self.filter_gradient(part, dt)
            if need_x:
                cpu_threads.gemm(gM, U, V)  # gV (n*n, T, C) = (n*n, T, OC) @ (n*n, OC, C), in V's place
                gx2 = gxh[n0:n1].reshape((n1 - n0) * H, W * C)
                self.tiles_to_pixels(V, n1 - n0, H, W, C, PH, PW, TH, TW, gx2)
        if need_w and not in_filters:
            gW = self.filter_gradient(gU, dt)
        return gW, gxh

    def tiles_to_pixels(self, gV, images, H, W, C, PH, PW, TH, TW, gx2):
        """gx2 (images*H, W*C) += the input transform's adjoint of gV (n*n, T, C), a
        thread taking whole images (their patches overlap)."""
        tiles = TH * TW
        cpu_threads.split(images, tiles * self.n * self.n * C, lambda i0, i1:
                          self.loops.input_gradient_transform(gV, images, H, W, C, PH, PW,
                                                              TH, TW, gx2, i0 * tiles,
                                                              i1 * tiles))

    # -- the algorithm: forward and backward of a layer ----------------------------------
    def forward(self, x, weight, bias, g: ConvGeometry, keep: bool):
        """y (N, OC, OH, OW) (a view of channels-last memory), and what backward needs."""
        xh = as_nhwc(np, x)                                         # (N, H, W, C)
        U = self.filter_transform(weight, x.dtype)                  # (n*n, OC, C)
        yh = self.conv(xh, U, bias, g.PH, g.PW, g.OH, g.OW)         # (N, OH, OW, OC)
        saved = WinogradSaved(xh, weight, g) if keep else None
        return yh.transpose(0, 3, 1, 2), saved                      # (N, OC, OH, OW) view

    def backward(self, gy, s: WinogradSaved, need_x: bool, need_w: bool, need_b: bool):
        """(gx, gW, gb) for gy (N, OC, OH, OW); None where not needed."""
        g = s.g
        gyh = as_nhwc(np, gy)                                       # (N, OH, OW, OC)
        gb = cpu_threads.column_sums(gyh.reshape(-1, g.OC)) if need_b else None  # (OC,)
        gw = gxh = None
        if need_x or need_w:
            gw, gxh = self.gradients(s.xh, gyh, s.weight, g.PH, g.PW, need_x, need_w)
        gx = gxh.transpose(0, 3, 1, 2) if need_x else None          # (N, C, H, W) view
        return gx, gw, gb


WINOGRAD_F43 = WinogradCPU(4, 3, AT43, G43, BT43, numba_winograd_f43)
WINOGRAD_F25 = WinogradCPU(2, 5, AT25, G25, BT25, numba_winograd_f25)
WINOGRAD_F35 = WinogradCPU(3, 5, AT35, G35, BT35, numba_winograd_f35)
WINOGRAD_F63 = WinogradCPU(6, 3, AT63, G63, BT63, numba_winograd_f63, rival=WINOGRAD_F43)
WINOGRAD_F45 = WinogradCPU(4, 5, AT45, G45, BT45, numba_winograd_f45, rival=WINOGRAD_F35)
