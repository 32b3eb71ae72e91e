"""What d2l's convolution sections save into the library (``#@save``): ``corr2d``, the
cross-correlation as two loops, which the channels section calls as ``d2l.corr2d``.

The other functions those sections write (``comp_conv2d``, ``pool2d``,
``corr2d_multi_in``, ...) stay in the reader's notebook: no edition saves them.
"""

from __future__ import annotations

from .. import zeros
from ..tensor import Tensor


def corr2d(X, K):
    """Two-dimensional cross-correlation of the image ``X`` (H, W) with the kernel ``K``
    (KH, KW): the layer d2l calls a convolution, one channel in, one out, no padding,
    stride 1::

        Y[i, j] = sum over a < KH, b < KW of  X[i + a, j + b] * K[a, b]
        Y: (OH, OW) = (H - KH + 1, W - KW + 1)

    Two loops, as the book writes it: each output pixel is one window of ``X`` times
    the kernel, summed, and written into ``Y`` by index assignment. The result is float32
    (as ``d2l.zeros`` makes it) on ``X``'s backend, and gradients reach ``X`` and ``K``
    through the assignments, as in PyTorch. Every convolution in tinyalex computes this
    sum, per channel pair, far faster: docs/convolution.md shows them side by side.
    """
    for name, t in (("X", X), ("K", K)):
        if not isinstance(t, Tensor) or t.ndim != 2:
            got = f"shape {tuple(t.shape)}" if isinstance(t, Tensor) else type(t).__name__
            raise ValueError(f"corr2d: {name} must be a 2-D tensor (one channel, "
                             f"{'(H, W)' if name == 'X' else '(KH, KW)'}), got {got}; "
                             "several channels: sum corr2d over them (the channels section)")
    H, W = X.shape
    KH, KW = K.shape
    if KH > H or KW > W:
        raise ValueError(f"corr2d: the kernel K {tuple(K.shape)} is larger than the image "
                         f"X {tuple(X.shape)}: no position where it fits")
    OH, OW = H - KH + 1, W - KW + 1
    Y = zeros((OH, OW), backend=X.backend)
    for i in range(OH):
        for j in range(OW):
            Y[i, j] = (X[i:i + KH, j:j + KW] * K).sum()     # (KH, KW) window times K
    return Y


__all__ = ["corr2d"]
