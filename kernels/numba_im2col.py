"""Numba loops of the fast im2col + GEMM convolution (``conv_im2col_cpu.py`` calls them
with the op's geometry; letters as in the Notation of ``tinyalex/ops/im2col.py``).

The matrix is the reference's: rows ``(n, oh, ow)``, columns ``(c, kh, kw)``::

    cols[(n, oh, ow), (c, kh, kw)] = x[n, c, oh*SH - PH + kh, ow*SW - PW + kw]

(0 in the padding), built for images n0..n1-1 of a batch at a time. ``x`` is the
(N, C, H, W) array in whatever memory order it has (Numba indexes it through its
strides). ``im2col`` stores the matrix row-major, (rows, K); ``im2col_t`` stores its
transpose, (K, rows), whose rows are long runs along ``ow``: the better choice when a
window row (KW numbers) is short, as in AlexNet's first layer (``conv_im2col_cpu.py``
chooses). ``col2im`` is the adjoint: it adds every entry of a column-gradient matrix
back onto the pixel it came from, as a gather: one pass owns one row (n, c, h) of the
result and adds the contributions in the order of the kernel offsets (kh, kw), the
order the reference adds them in, so float32 results equal the reference's bit for bit.

Nothing here checks its arguments, and every loop releases the GIL.
"""

from __future__ import annotations

from numba import njit


@njit(cache=True, nogil=True)
def im2col(x, n0, n1, KH, KW, SH, SW, PH, PW, OH, OW, cols):
    """cols ((n1-n0)*OH*OW, C*KH*KW) = the windows of images n0..n1-1 of x (N, C, H, W)."""
    C, H, W = x.shape[1], x.shape[2], x.shape[3]
    for n in range(n0, n1):
        for oh in range(OH):
            for ow in range(OW):
                row = ((n - n0) * OH + oh) * OW + ow
                h0, w0 = oh * SH - PH, ow * SW - PW      # the window's top-left corner
                j = 0                                    # column (c, kh, kw)
                for c in range(C):
                    for kh in range(KH):
                        h = h0 + kh
                        for kw in range(KW):
                            w = w0 + kw
                            if 0 <= h < H and 0 <= w < W:
                                cols[row, j] = x[n, c, h, w]
                            else:
                                cols[row, j] = 0
                            j += 1
    return cols


@njit(cache=True, nogil=True)
def im2col_t(x, n0, n1, KH, KW, SH, SW, PH, PW, OH, OW, colsT):
    """colsT (C*KH*KW, (n1-n0)*OH*OW): the transpose of ``im2col``'s matrix."""
    C, H, W = x.shape[1], x.shape[2], x.shape[3]
    for c in range(C):
        for kh in range(KH):
            for kw in range(KW):
                j = (c * KH + kh) * KW + kw
                # the outputs ow whose window column kw lies inside the image: lo <= ow < hi
                lo = min(OW, max(0, (PW - kw + SW - 1) // SW))
                hi = max(lo, min(OW, (W - 1 + PW - kw) // SW + 1))
                for n in range(n0, n1):
                    for oh in range(OH):
                        o0 = ((n - n0) * OH + oh) * OW       # this output row's first column
                        h = oh * SH - PH + kh
                        if h < 0 or h >= H:
                            for ow in range(OW):
                                colsT[j, o0 + ow] = 0
                            continue
                        for ow in range(lo):
                            colsT[j, o0 + ow] = 0
                        for ow in range(lo, hi):
                            colsT[j, o0 + ow] = x[n, c, h, ow * SW - PW + kw]
                        for ow in range(hi, OW):
                            colsT[j, o0 + ow] = 0
    return colsT


@njit(cache=True, nogil=True)
def col2im(gcols, n0, n1, KH, KW, SH, SW, PH, PW, OH, OW, gx, zero):
    """gx[n0:n1] (N, C, H, W, C-contiguous), overwritten with the sum of every window
    entry of gcols ((n1-n0)*OH*OW, C*KH*KW) over the pixel it was copied from."""
    C, H, W = gx.shape[1], gx.shape[2], gx.shape[3]
    for n in range(n0, n1):
        for c in range(C):
            for h in range(H):
                g = gx[n, c, h]
                g[:] = zero
                for kh in range(KH):
                    t = h + PH - kh                      # = oh*SH for the window row oh
                    if t < 0 or t % SH != 0 or t // SH >= OH:
                        continue
                    r0 = ((n - n0) * OH + t // SH) * OW  # first row of that window row
                    for kw in range(KW):
                        j = (c * KH + kh) * KW + kw
                        for ow in range(OW):
                            w = ow * SW - PW + kw
                            if 0 <= w < W:
                                g[w] += gcols[r0 + ow, j]
    return gx
