"""im2col and col2im: how a convolution becomes one matrix product.

Notation
--------
Every function in tinyalex that reshapes image data names its sizes with these
letters, unpacked from the shapes before any arithmetic::

    N        batch size (images)
    C        input channels
    H, W     input height and width
    OC       output channels (number of filters)
    KH, KW   kernel (window) height and width
    SH, SW   stride: how far the window moves between outputs
    PH, PW   zero padding added to each side of the input
    OH, OW   output height and width:
             OH = (H + 2*PH - KH) // SH + 1,   OW = (W + 2*PW - KW) // SW + 1

The idea
--------
Output pixel (n, oc, oh, ow) of a convolution is the dot product of filter ``oc``
(C*KH*KW numbers) with the input window whose top-left corner sits at
(oh*SH - PH, ow*SW - PW). ``im2col`` copies every window into one row of a matrix::

    cols[(n, oh, ow), (c, kh, kw)] = x_padded[n, c, oh*SH + kh, ow*SW + kw]
    cols: (N*OH*OW, C*KH*KW)

so that the whole convolution is a single matrix product (a GEMM) with the
filters laid out as a (C*KH*KW, OC) matrix::

    (N*OH*OW, OC) = (N*OH*OW, C*KH*KW) @ (C*KH*KW, OC)

Rows are ordered (n, oh, ow) and columns (c, kh, kw), both with the last letter
varying fastest; the fast kernels in ``tinyalex.kernels`` produce exactly this layout.

``col2im`` is the adjoint (the transpose) of ``im2col``: where ``im2col`` copies a
pixel into every window that contains it, ``col2im`` *adds* the entries of every
window back onto the pixel they came from. That is the backward pass: the gradient
with respect to the input is ``col2im(gradient with respect to cols)``. Padding
positions receive contributions too, and are cut away at the end.

The implementations here are the readable references: one strided copy per kernel
offset (KH*KW copies, each moving a whole (N, C, OH, OW) block). They work unchanged
on NumPy and CuPy arrays.
"""

from __future__ import annotations

from tinyalex.kernels.geometry import output_size

from .. import backend as B


def im2col(x, KH: int, KW: int, SH: int = 1, SW: int = 1, PH: int = 0, PW: int = 0,
           pad_value: float = 0.0):
    """Copy every KHxKW window of ``x`` into one row.

    x: (N, C, H, W)  ->  cols: (N*OH*OW, C*KH*KW), rows (n, oh, ow), columns (c, kh, kw).
    ``pad_value`` fills the padding (0 for convolution, -inf for max pooling).
    """
    xp = B.get_array_module(x)
    N, C, H, W = x.shape
    OH = output_size(H, KH, SH, PH)
    OW = output_size(W, KW, SW, PW)

    # (N, C, H + 2*PH, W + 2*PW)
    x_padded = xp.pad(x, ((0, 0), (0, 0), (PH, PH), (PW, PW)),
                      mode="constant", constant_values=pad_value)

    cols = xp.empty((N, C, KH, KW, OH, OW), dtype=x.dtype)
    for kh in range(KH):
        for kw in range(KW):
            # Element (kh, kw) of every window: a strided view of the padded image.
            # (N, C, OH, OW) = x_padded[:, :, kh + SH*oh, kw + SW*ow] for all oh, ow
            cols[:, :, kh, kw, :, :] = x_padded[:, :, kh:kh + SH * OH:SH, kw:kw + SW * OW:SW]

    # (N, C, KH, KW, OH, OW) -> (N, OH, OW, C, KH, KW) -> (N*OH*OW, C*KH*KW)
    return cols.transpose(0, 4, 5, 1, 2, 3).reshape(N * OH * OW, C * KH * KW)


def col2im(cols, x_shape, KH: int, KW: int, SH: int = 1, SW: int = 1, PH: int = 0,
           PW: int = 0):
    """The adjoint of :func:`im2col`: add each row's entries back onto their pixels.

    cols: (N*OH*OW, C*KH*KW)  ->  (N, C, H, W), overlapping windows summed.
    """
    xp = B.get_array_module(cols)
    N, C, H, W = x_shape
    OH = output_size(H, KH, SH, PH)
    OW = output_size(W, KW, SW, PW)

    # (N*OH*OW, C*KH*KW) -> (N, OH, OW, C, KH, KW) -> (N, C, KH, KW, OH, OW)
    cols = cols.reshape(N, OH, OW, C, KH, KW).transpose(0, 3, 4, 5, 1, 2)

    # (N, C, H + 2*PH, W + 2*PW): padding receives contributions too, cut off below
    x_padded = xp.zeros((N, C, H + 2 * PH, W + 2 * PW), dtype=cols.dtype)
    for kh in range(KH):
        for kw in range(KW):
            # the transpose of the copy in im2col: (N, C, OH, OW) added, not copied
            x_padded[:, :, kh:kh + SH * OH:SH, kw:kw + SW * OW:SW] += cols[:, :, kh, kw, :, :]

    # (N, C, H, W)
    return xp.ascontiguousarray(x_padded[:, :, PH:PH + H, PW:PW + W])
