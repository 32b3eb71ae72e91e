"""3x3 and 5x5 stride-1 convolutions by Winograd's minimal filtering F(2x2, 3x3),
F(4x4, 3x3) and F(2x2, 5x5): the result of im2col + GEMM with 2.25, 4 and 2.8 times
fewer multiplications (CPU fast set only).

The idea (Lavin and Gray, 2016): a 2x2 block of outputs of a 3x3 filter g needs the
4x4 input patch d around it, and equals

    Y = A^T [ (G g G^T) * (B^T d B) ] A          (* elementwise, on 4x4 matrices)

with small constant matrices A (4x2), B (4x4), G (4x3). The 4x4 elementwise product
holds 16 multiplications instead of the 36 of the direct 2x2 x 3x3 sums. Summed over
the input channels, each of the 16 positions is a matrix product, so a layer is

    V[k] (T, C)   = input transform of every tile t (T = N * ceil(OH/2) * ceil(OW/2))
    U[k] (OC, C)  = filter transform
    M[k] (T, OC)  = V[k] @ U[k].T                  k = 0..15: 16 GEMMs
    y             = output transform of M          (T, 2x2, OC) -> (N, OH, OW, OC)

Backward, by the same algebra:

    gW = G^T [ sum over tiles (A gY A^T) * (B^T d B) ] G
       -> gU[k] (OC, C) = gM[k]^T (OC, T) @ V[k] (T, C),   gM = grad-output transform
    gx = the same convolution of gy, padded by 2 - P, with the filters turned by 180
         degrees and their in/out channels swapped

In general F(m x m, r x r) takes n x n tiles, n = m + r - 1, m apart, with A^T (m x n),
G (n x r), B^T (n x n): n*n GEMMs for m*m outputs of every tile. F(2x2, 5x5) and
F(4x4, 3x3) both take 6x6 tiles (36 GEMMs) and the matrices of Toom-Cook at the
points 0, 1, -1, 2, -2 and infinity (the same B^T); a test checks that every set
computes a correlation. F(4x4, 3x3) needs 36 products per 16 outputs where F(2x2,
3x3) needs 16 per 4, at the price of larger constants (up to 8 in A^T, 1/24 in G)
and so a larger float32 rounding error. A batch is processed a few images at a time
so that V and M stay small (``chunk_bytes``). The tile transforms are Numba loops
written out by hand: ``numba_winograd.py`` for F(2, 3), ``numba_winograd5.py`` for
F(2, 5), ``numba_winograd4.py`` for F(4, 3); the filter transforms are one GEMM
each, here.
"""

from __future__ import annotations

import numpy as np

from . import numba_winograd as nw, numba_winograd4 as nw4, numba_winograd5 as nw5

G = np.array([[1.0, 0.0, 0.0], [0.5, 0.5, 0.5], [0.5, -0.5, 0.5], [0.0, 0.0, 1.0]])
BT3 = np.array([[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, 1, 0, -1]], dtype=float)
AT3 = np.array([[1, 1, 1, 0], [0, 1, -1, -1]], dtype=float)

# F(2, 5): A^T (2x6), G (6x5), B^T (6x6)
AT5 = np.array([[1, 1, 1, 1, 1, 0], [0, 1, -1, 2, -2, 1]], dtype=float)
G5 = np.array([[1 / 4, 0, 0, 0, 0],
               [-1 / 6, -1 / 6, -1 / 6, -1 / 6, -1 / 6],
               [-1 / 6, 1 / 6, -1 / 6, 1 / 6, -1 / 6],
               [1 / 24, 1 / 12, 1 / 6, 1 / 3, 2 / 3],
               [1 / 24, -1 / 12, 1 / 6, -1 / 3, 2 / 3],
               [0, 0, 0, 0, 1]])
BT5 = np.array([[4, 0, -5, 0, 1, 0], [0, -4, -4, 1, 1, 0], [0, 4, -4, -1, 1, 0],
                [0, -2, -1, 2, 1, 0], [0, 2, -1, -2, 1, 0], [0, 4, 0, -5, 0, 1]], dtype=float)
# F(4, 3): A^T (4x6), G (6x3), B^T (6x6) = BT5. Row i of A^T holds the points to the
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
BT43 = BT5
# (m, r) -> (A^T, G, B^T) of F(m, r)
MATRICES = {(2, 3): (AT3, G, BT3), (2, 5): (AT5, G5, BT5), (4, 3): (AT43, G43, BT43)}
KRON = {key: np.kron(g, g) for key, (_, g, _) in MATRICES.items()}   # (n*n, r*r)
# (m, r) -> the module and names of the tile loops (input, output, grad-output
# transform), looked up at each call (tests replace them by their Python source)
LOOPS = {(2, 3): (nw, "input_transform", "output_transform", "grad_output_transform"),
         (2, 5): (nw5, "input_transform5", "output_transform5", "grad_output_transform5"),
         (4, 3): (nw4, "input_transform4", "output_transform4", "grad_output_transform4")}
INPUT, OUTPUT, GRAD_OUTPUT = 1, 2, 3


def _loop(m, r, which):
    module = LOOPS[m, r][0]
    return getattr(module, LOOPS[m, r][which])


def filter_transform(w, dtype, turn=False, m=2):
    """(OC, C, r, r) -> U (n*n, OC, C) = G w G^T of F(m, r) for every filter: one GEMM.

    ``vec(G w G^T) = (G kron G) vec(w)`` for a row-major r x r filter w. With ``turn``,
    each filter is first turned by 180 degrees (for the input gradient): reversing the
    r*r taps of a row-major filter is that turn."""
    OC, C, r, _ = w.shape
    wr = w.reshape(OC * C, r * r)                      # (OC*C, r*r), a view when contiguous
    if turn:
        wr = wr[:, ::-1]
    GG = KRON[m, r].astype(dtype)
    # (n*n, OC*C) = (n*n, r*r) @ (r*r, OC*C)
    return (GG @ wr.T).reshape(GG.shape[0], OC, C)


def filter_gradient(gU, dtype, r, m=2):
    """gU (n*n, OC, C) -> gW (OC, C, r, r) = G^T gU G of F(m, r): one GEMM."""
    nn, OC, C = gU.shape
    # (OC*C, r*r) = (OC*C, n*n) @ (n*n, r*r)
    return (gU.reshape(nn, OC * C).T @ KRON[m, r].astype(dtype)).reshape(OC, C, r, r)


class Winograd:
    def __init__(self, workspace, chunk_bytes: int, run, matmul):
        self.workspace, self.chunk_bytes = workspace, chunk_bytes
        # run(loop, T, *args): calls loop(*args, t0, t1) over tile ranges covering 0..T-1
        self.run = run
        self.matmul = matmul            # matmul(a, b, out): the engine's (threaded) GEMM

    def _images_per_chunk(self, N, tiles_per_image, channels, itemsize, nn):
        per_image = nn * tiles_per_image * channels * itemsize
        return max(1, min(N, self.chunk_bytes // max(1, per_image)))

    def _input_transform(self, m, r, x2, n, H, W, C, PH, PW, TH, TW, V, zero):
        self.run(_loop(m, r, INPUT), V.shape[1], x2, n, H, W, C, PH, PW, TH, TW, V, zero)

    def conv(self, xh, U, bias, PH, PW, out_h, out_w, r=3, m=2):
        """y (N, OH, OW, OC) for channels-last xh (N, H, W, C) and U (n*n, OC, C), by
        F(m x m, r x r)."""
        N, H, W, C = xh.shape
        nn, OC = U.shape[0], U.shape[1]
        OH, OW = H + 2 * PH - (r - 1), W + 2 * PW - (r - 1)
        if (OH, OW) != (out_h, out_w) or U.shape != ((m + r - 1) ** 2, OC, C) \
                or (m, r) not in LOOPS:
            raise ValueError(f"winograd: input {xh.shape}, filters {U.shape}, padding "
                             f"{(PH, PW)} do not give an output of {(out_h, out_w)}")
        TH, TW = -(-OH // m), -(-OW // m)                          # tiles down, across
        dt = xh.dtype
        zero = dt.type(0)
        b = bias if bias is not None else np.zeros(1, dt)
        yh = np.empty((N, OH, OW, OC), dtype=dt)                   # (N, OH, OW, OC)
        nb = self._images_per_chunk(N, TH * TW, max(C, OC), dt.itemsize, nn)
        for n0 in range(0, N, nb):
            n1 = min(N, n0 + nb)
            T = (n1 - n0) * TH * TW
            V = self.workspace.get(np, "wino_V", (nn, T, C), dt)    # (n*n, T, C)
            M = self.workspace.get(np, "wino_M", (nn, T, OC), dt)   # (n*n, T, OC)
            x2 = xh[n0:n1].reshape((n1 - n0) * H, W * C)           # ((n1-n0)*H, W*C)
            self._input_transform(m, r, x2, n1 - n0, H, W, C, PH, PW, TH, TW, V, zero)
            # (n*n, T, OC) = (n*n, T, C) @ (n*n, C, OC), U stored as (n*n, OC, C)
            self.matmul(V, U.transpose(0, 2, 1), M)
            y2 = yh[n0:n1].reshape((n1 - n0) * OH, OW * OC)        # ((n1-n0)*OH, OW*OC)
            self.run(_loop(m, r, OUTPUT), T, M, n1 - n0, OH, OW, OC, TH, TW, b,
                     bias is not None, y2)
        return yh

    def weight_gradient(self, xh, gyh, PH, PW, r=3, m=2):
        """gW (OC, C, r, r) from channels-last xh (N, H, W, C) and gyh (N, OH, OW, OC),
        by F(m x m, r x r)."""
        N, H, W, C = xh.shape
        _, OH, OW, OC = gyh.shape
        TH, TW = -(-OH // m), -(-OW // m)                          # tiles down, across
        nn = (m + r - 1) ** 2
        dt = xh.dtype
        zero = dt.type(0)
        # The chunks' parts are summed in the transformed domain, gU (n*n, OC, C), and
        # turned back once, when that sum is small; when it is larger than a chunk
        # (F(4,3) on 384 channels: 21 MB), each part goes back to the filter domain at
        # once and the sum is gW (OC, C, r, r), a quarter of the size (measured: AlexNet
        # b32 training memory 564 -> 549 MB). Turning back costs a GEMM per chunk, too
        # much for F(2,5)'s conv2, which takes one image per chunk.
        in_filters = nn * OC * C * dt.itemsize > self.chunk_bytes
        gU = None if in_filters else np.zeros((nn, OC, C), dtype=dt)   # (n*n, OC, C)
        gW = None                                                  # (OC, C, r, r)
        nb = self._images_per_chunk(N, TH * TW, max(C, OC), dt.itemsize, nn)
        for n0 in range(0, N, nb):
            n1 = min(N, n0 + nb)
            T = (n1 - n0) * TH * TW
            V = self.workspace.get(np, "wino_V", (nn, T, C), dt)    # (n*n, T, C)
            gM = self.workspace.get(np, "wino_M", (nn, T, OC), dt)  # (n*n, T, OC)
            part = self.workspace.get(np, "wino_gU", (nn, OC, C), dt)
            x2 = xh[n0:n1].reshape((n1 - n0) * H, W * C)           # ((n1-n0)*H, W*C)
            self._input_transform(m, r, x2, n1 - n0, H, W, C, PH, PW, TH, TW, V, zero)
            gy2 = gyh[n0:n1].reshape((n1 - n0) * OH, OW * OC)      # ((n1-n0)*OH, OW*OC)
            self.run(_loop(m, r, GRAD_OUTPUT), T, gy2, n1 - n0, OH, OW, OC, TH, TW, gM, zero)
            # (n*n, OC, C) = (n*n, OC, T) @ (n*n, T, C)
            self.matmul(gM.transpose(0, 2, 1), V, part)
            if not in_filters:
                gU += part
            elif gW is None:
                gW = filter_gradient(part, dt, r, m)               # (OC, C, r, r)
            else:
                gW += filter_gradient(part, dt, r, m)
        return gW if in_filters else filter_gradient(gU, dt, r, m)

    def input_gradient(self, gyh, w, PH, PW, H, W, m=2):
        """gx (N, H, W, C): the convolution of gy padded by r-1-P with the turned filters."""
        r = w.shape[2]
        # filters turned by 180 degrees, in/out channels swapped: the conv from OC
        # channels to C takes U'[k] (C, OC) = U_turned[k].T: (n*n, OC, C) -> (n*n, C, OC)
        U = filter_transform(w, gyh.dtype, turn=True, m=m).transpose(0, 2, 1)
        return self.conv(gyh, U, None, r - 1 - PH, r - 1 - PW, H, W, r, m)
