"""The geometry of a window op (convolution, pooling) as plain numbers, checked once,
before any compiled loop sees it (letters as in the Notation of
``tinyalex/ops/im2col.py``)::

    N C H W      the input batch          OC           output channels (convolution)
    KH KW        the window               SH SW        the stride
    PH PW        the zero padding         OH OW        the output:
                                          OH = (H + 2*PH - KH) // SH + 1

This is the one place that validates a window op's shapes and sizes: the ops build
the geometry of their operands with ``conv_geometry`` and ``pool_geometry``, and the
algorithms below them trust it (compiled loops do not check bounds; the contract is
in ``kernels/__init__.py``). It holds the one output-size formula (``output_size``)
and the one "window does not fit" error (``window_output``).
"""

from __future__ import annotations

from dataclasses import dataclass

from tinyalex.checks import check_int, check_nonempty, check_rank


def output_size(size: int, kernel: int, stride: int, pad: int) -> int:
    """Output length along one axis: ``(size + 2*pad - kernel) // stride + 1``."""
    return (size + 2 * pad - kernel) // stride + 1


@dataclass(frozen=True)
class ConvGeometry:
    N: int
    C: int
    H: int
    W: int
    OC: int
    KH: int
    KW: int
    SH: int
    SW: int
    PH: int
    PW: int
    OH: int
    OW: int
    groups: int = 1                                 # C and OC split into this many groups

    @property
    def K(self) -> int:
        return self.C // self.groups * self.KH * self.KW   # columns of one group's im2col matrix

    @property
    def P(self) -> int:
        return self.OH * self.OW                    # rows of the im2col matrix per image


@dataclass(frozen=True)
class PoolGeometry:
    N: int
    C: int
    H: int
    W: int
    KH: int
    KW: int
    SH: int
    SW: int
    PH: int
    PW: int
    OH: int
    OW: int

    @property
    def window(self) -> tuple:
        return self.KH, self.KW, self.SH, self.SW, self.PH, self.PW


def window_output(where, H, W, KH, KW, SH, SW, PH, PW) -> tuple:
    """(OH, OW) of a window op, after checking that every size is an int in range and
    that at least one window fits the padded input."""
    for name, v, lo in (("KH", KH, 1), ("KW", KW, 1), ("SH", SH, 1), ("SW", SW, 1),
                        ("PH", PH, 0), ("PW", PW, 0)):
        check_int(v, name, where, lo, type_error=ValueError)
    OH, OW = output_size(H, KH, SH, PH), output_size(W, KW, SW, PW)
    if OH < 1 or OW < 1:
        raise ValueError(f"{where}: input of size {H}x{W} (padded to {H + 2 * PH}x"
                         f"{W + 2 * PW}) is smaller than the kernel {KH}x{KW} (the window "
                         "does not fit); use a larger input or a smaller kernel")
    return OH, OW


def conv_geometry(x_shape, w_shape, SH, SW, PH, PW, where="conv2d", groups=1) -> ConvGeometry:
    """The geometry of x (N, C, H, W) convolved with weight (OC, C/groups, KH, KW), every
    size checked: ranks, no empty dimension, channels that match, a window that fits."""
    check_rank(x_shape, 4, where, "(N, C, H, W)")
    check_rank(w_shape, 4, where + " weight", "(OC, C, KH, KW)")
    check_nonempty(x_shape, where)
    check_nonempty(w_shape, where + " weight")
    N, C, H, W = (int(s) for s in x_shape)
    OC, C2, KH, KW = (int(s) for s in w_shape)
    if C2 * groups != C:
        raise ValueError(f"{where}: expected input with {C2 * groups} channels (N, "
                         f"{C2 * groups}, H, W), got shape {tuple(x_shape)}"
                         + (f" (weight {tuple(w_shape)}, groups={groups})" if groups > 1 else ""))
    if OC % groups:
        raise ValueError(f"{where}: weight {tuple(w_shape)} has {OC} output channels, which "
                         f"groups={groups} does not divide")
    OH, OW = window_output(where, H, W, KH, KW, SH, SW, PH, PW)
    return ConvGeometry(N, C, H, W, OC, KH, KW, int(SH), int(SW), int(PH), int(PW), OH, OW,
                        int(groups))


def pool_geometry(x_shape, KH, KW, SH, SW, PH, PW, where="pool2d") -> PoolGeometry:
    """The geometry of pooling x (N, C, H, W) with a KH x KW window, every size checked."""
    check_rank(x_shape, 4, where, "(N, C, H, W)")
    check_nonempty(x_shape, where)
    N, C, H, W = (int(s) for s in x_shape)
    OH, OW = window_output(where, H, W, KH, KW, SH, SW, PH, PW)
    return PoolGeometry(N, C, H, W, int(KH), int(KW), int(SH), int(SW), int(PH), int(PW),
                        OH, OW)
