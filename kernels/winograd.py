"""3x3 stride-1 convolutions by Winograd's minimal filtering F(2x2, 3x3): the same
result as im2col + GEMM with 2.25 times fewer multiplications (CPU fast set only).

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

A batch is processed a few images at a time so that V and M stay small (``chunk_bytes``).
The transforms are the Numba loops of ``numba_winograd.py``; the filter transforms
are tiny and done with NumPy here.
"""

from __future__ import annotations

import numpy as np

from . import numba_winograd as nw

G = np.array([[1.0, 0.0, 0.0], [0.5, 0.5, 0.5], [0.5, -0.5, 0.5], [0.0, 0.0, 1.0]])


GG = np.kron(G, G)     # (16, 9): vec(G w G^T) = GG @ vec(w) for a 3x3 w, row-major


def filter_transform(w, dtype, turn=False):
    """(OC, C, 3, 3) -> U (16, OC, C) = G w G^T for every filter: one GEMM.

    With ``turn``, each filter is first turned by 180 degrees (for the input
    gradient): reversing the 9 taps of a row-major 3x3 filter is that turn."""
    OC, C = w.shape[:2]
    w9 = w.reshape(OC * C, 9)                          # (OC*C, 9), a view when contiguous
    if turn:
        w9 = w9[:, ::-1]
    # (16, OC*C) = (16, 9) @ (9, OC*C)
    return (GG.astype(dtype) @ w9.T).reshape(16, OC, C)


def filter_gradient(gU, dtype):
    """gU (16, OC, C) -> gW (OC, C, 3, 3) = G^T gU G: one GEMM."""
    _, OC, C = gU.shape
    # (OC*C, 9) = (OC*C, 16) @ (16, 9)
    return (gU.reshape(16, OC * C).T @ GG.astype(dtype)).reshape(OC, C, 3, 3)


class Winograd:
    def __init__(self, workspace, chunk_bytes: int, run):
        self.workspace, self.chunk_bytes, self.run = workspace, chunk_bytes, run

    def _images_per_chunk(self, N, tiles_per_image, channels, itemsize):
        per_image = 16 * tiles_per_image * channels * itemsize
        return max(1, min(N, self.chunk_bytes // max(1, per_image)))

    def conv(self, xh, U, bias, PH, PW, out_h, out_w):
        """y (N, OH, OW, OC) for channels-last xh (N, H, W, C) and U (16, OC, C)."""
        N, H, W, C = xh.shape
        OC = U.shape[1]
        OH, OW = H + 2 * PH - 2, W + 2 * PW - 2
        assert (OH, OW) == (out_h, out_w) and U.shape == (16, OC, C)
        TH, TW = (OH + 1) // 2, (OW + 1) // 2
        dt = xh.dtype
        zero = dt.type(0)
        b = bias if bias is not None else np.zeros(1, dt)
        yh = np.empty((N, OH, OW, OC), dtype=dt)                   # (N, OH, OW, OC)
        nb = self._images_per_chunk(N, TH * TW, max(C, OC), dt.itemsize)
        for n0 in range(0, N, nb):
            n1 = min(N, n0 + nb)
            T = (n1 - n0) * TH * TW
            V = self.workspace.get(np, "wino_V", (16, T, C), dt)    # (16, T, C)
            M = self.workspace.get(np, "wino_M", (16, T, OC), dt)   # (16, T, OC)
            x2 = xh[n0:n1].reshape((n1 - n0) * H, W * C)           # ((n1-n0)*H, W*C)
            self.run(nw.input_transform, T * C, x2, n1 - n0, H, W, C, PH, PW, TH, TW, V, zero)
            # (16, T, OC) = (16, T, C) @ (16, C, OC), U stored as (16, OC, C)
            np.matmul(V, U.transpose(0, 2, 1), out=M)
            y2 = yh[n0:n1].reshape((n1 - n0) * OH, OW * OC)        # ((n1-n0)*OH, OW*OC)
            self.run(nw.output_transform, T * OC, M, n1 - n0, OH, OW, OC, TH, TW, b,
                     bias is not None, y2)
        return yh

    def weight_gradient(self, xh, gyh, PH, PW):
        """gW (OC, C, 3, 3) from channels-last xh (N, H, W, C) and gyh (N, OH, OW, OC)."""
        N, H, W, C = xh.shape
        _, OH, OW, OC = gyh.shape
        TH, TW = (OH + 1) // 2, (OW + 1) // 2
        dt = xh.dtype
        zero = dt.type(0)
        gU = np.zeros((16, OC, C), dtype=dt)                       # (16, OC, C)
        nb = self._images_per_chunk(N, TH * TW, max(C, OC), dt.itemsize)
        for n0 in range(0, N, nb):
            n1 = min(N, n0 + nb)
            T = (n1 - n0) * TH * TW
            V = self.workspace.get(np, "wino_V", (16, T, C), dt)    # (16, T, C)
            gM = self.workspace.get(np, "wino_M", (16, T, OC), dt)  # (16, T, OC)
            part = self.workspace.get(np, "wino_gU", (16, OC, C), dt)
            x2 = xh[n0:n1].reshape((n1 - n0) * H, W * C)           # ((n1-n0)*H, W*C)
            self.run(nw.input_transform, T * C, x2, n1 - n0, H, W, C, PH, PW, TH, TW, V, zero)
            gy2 = gyh[n0:n1].reshape((n1 - n0) * OH, OW * OC)      # ((n1-n0)*OH, OW*OC)
            self.run(nw.grad_output_transform, T * OC, gy2, n1 - n0, OH, OW, OC, TH, TW, gM,
                     zero)
            # (16, OC, C) = (16, OC, T) @ (16, T, C)
            np.matmul(gM.transpose(0, 2, 1), V, out=part)
            gU += part
        return filter_gradient(gU, dt)

    def input_gradient(self, gyh, w, PH, PW, H, W):
        """gx (N, H, W, C): the convolution of gy padded by 2 - P with the turned filters."""
        # filters turned by 180 degrees, in/out channels swapped: the conv from OC
        # channels to C takes U'[k] (C, OC) = U_turned[k].T, i.e. (16, OC, C) -> (16, C, OC)
        U = filter_transform(w, gyh.dtype, turn=True).transpose(0, 2, 1)
        return self.conv(gyh, U, None, 2 - PH, 2 - PW, H, W)
