"""Numba loops of the Winograd filter transform, U = G w G^T, and of its adjoint, gW =
G^T gU G, for the 3x3 sets (``conv_winograd_cpu.py``'s ``filter_transform`` and
``filter_gradient``; G is that module's n x r matrix; the 5x5 sets, with 25 terms an
output, run one BLAS GEMM faster).

A layer has F = OC*C filters, and the GEMMs read each transformed position k of all of
them as one row, U[k] (F numbers). Written as one BLAS GEMM, kron(G, G) (n*n, r*r)
times the filters (r*r, F), the product has only 9 or 25 terms per output and tens of
thousands of columns, a shape BLAS runs well below its speed where r = 3. These loops take a block
of filters at a time, the filters along the rows (so every step is a run of
neighbouring numbers, one vector instruction per 16 filters), in two passes of r (or
n) terms each, as the product of the small matrices is written:

    T[a, b] = sum_c G[a, c] w[c, b]          (n x r rows of the block)
    U[a*n + d] = sum_b T[a, b] G[d, b]       (n x n rows, each stored once)

and the adjoint in the opposite order. The filters come and go tap-major, wT (r*r, F):
one transpose of the small filter array on the way in and on the way out.
"""

from __future__ import annotations

import numpy as np
from numba import njit

BLOCK = 256     # filters per pass: the block's rows of T stay in the L1 cache


@njit(cache=True, nogil=True, fastmath={"contract"}, inline="always")
def _combination(out, src, row0, step, col0, coef, m):
    """out[:m] = sum over k of coef[k] * src[row0 + k*step, col0:col0 + m]: one output
    row of a block as a combination of rows of another (every pass below)."""
    g, s = coef[0], src[row0, col0:col0 + m]
    for i in range(m):
        out[i] = g * s[i]
    for k in range(1, coef.shape[0]):
        g, s = coef[k], src[row0 + k * step, col0:col0 + m]
        for i in range(m):
            out[i] += g * s[i]


@njit(cache=True, nogil=True, fastmath={"contract"})
def filter_transform(G, wT, U, f0, f1):
    """U[:, f] = vec(G w_f G^T) for filters f0..f1-1: G (n, r), wT (r*r, F) the filters
    tap-major (row c*r + b holds tap (c, b) of every filter), U (n*n, F)."""
    n, r = G.shape
    T = np.empty((n * r, BLOCK), U.dtype)
    for fb in range(f0, f1, BLOCK):
        m = min(f1, fb + BLOCK) - fb
        for a in range(n):                       # T[a, b] = sum_c G[a, c] w[c, b]
            for b in range(r):
                _combination(T[a * r + b], wT, b, r, fb, G[a], m)
        for a in range(n):                       # U[a*n + d] = sum_b T[a, b] G[d, b]
            for d in range(n):
                _combination(U[a * n + d, fb:fb + m], T, a * r, 1, 0, G[d], m)


@njit(cache=True, nogil=True, fastmath={"contract"})
def filter_gradient(G, gU, gWT, f0, f1):
    """gWT[:, f] = vec(G^T gU_f G) for filters f0..f1-1 (``filter_transform``'s
    adjoint): gU (n*n, F), gWT (r*r, F) tap-major."""
    n, r = G.shape
    T = np.empty((n * r, BLOCK), gU.dtype)
    for fb in range(f0, f1, BLOCK):
        m = min(f1, fb + BLOCK) - fb
        for a in range(n):                       # T[a, b] = sum_d gU[a*n + d] G[d, b]
            for b in range(r):
                _combination(T[a * r + b], gU, a * n, 1, fb, G[:, b], m)
        for c in range(r):                       # gW[c, b] = sum_a G[a, c] T[a, b]
            for b in range(r):
                _combination(gWT[c * r + b, fb:fb + m], T, b, r, 0, G[:, c], m)
