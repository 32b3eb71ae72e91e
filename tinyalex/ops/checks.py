"""Argument checks shared by the ops: every bad value becomes a ValueError or
TypeError that names the op, the argument, what was expected and what was given,
before any kernel sees it.

Sizes are checked twice: each number on its own (``pair``: an int, not a bool, in
range), and what they ask for together (``check_bytes``): an array that would need
more memory than the machine has is refused here, by name, instead of surfacing
as NumPy's MemoryError (or the kernel's OOM killer) somewhere inside an op.
"""

from __future__ import annotations

import numbers
import os

import numpy as np

# The largest kernel size, stride or padding an op accepts: the compiled loops index
# with 64-bit integers and keep max-pooling's argmax in int32.
MAX_SIZE = 2**31 - 1


def pair(value, arg: str, where: str, minimum: int) -> tuple[int, int]:
    """``value`` as an (int, int) pair, each >= minimum (an int means (v, v))."""
    if isinstance(value, (tuple, list)):
        if len(value) != 2:
            raise ValueError(f"{where}: {arg} must be an int or a pair of ints, got "
                             f"{len(value)} values {tuple(value)!r}")
        items = tuple(value)
    else:
        items = (value, value)
    out = []
    for v in items:
        if isinstance(v, (bool, np.bool_)) or not isinstance(v, numbers.Integral):
            raise TypeError(f"{where}: {arg} must be an int or a pair of ints, got "
                            f"{value!r} ({type(v).__name__})")
        if v < minimum:
            raise ValueError(f"{where}: {arg} must be >= {minimum}, got {value!r}")
        if v > MAX_SIZE:
            raise ValueError(f"{where}: {arg} must be at most {MAX_SIZE}, got {value!r}")
        out.append(int(v))
    return out[0], out[1]


def check_rank(shape, rank: int, where: str, layout: str) -> None:
    if len(shape) != rank:
        raise ValueError(f"{where}: expected a {rank}-D input {layout}, got shape "
                         f"{tuple(shape)}")


def check_floating(dtype, where: str, arg: str = "input") -> None:
    if np.dtype(dtype).kind != "f":
        raise TypeError(f"{where}: {arg} must be floating point (float32 or float64), got "
                        f"dtype {dtype}")


def check_nonempty(shape, where: str) -> None:
    if any(int(s) == 0 for s in shape):
        raise ValueError(f"{where}: input has an empty dimension, shape {tuple(shape)}")


def check_window(where: str, H: int, W: int, KH: int, KW: int, PH: int, PW: int) -> None:
    """The padded input must hold at least one window."""
    if H + 2 * PH < KH or W + 2 * PW < KW:
        raise ValueError(
            f"{where}: input of size {H}x{W} (padded to {H + 2 * PH}x{W + 2 * PW}) is "
            f"smaller than the kernel {KH}x{KW}; use a larger input or a smaller kernel")


# -- memory -------------------------------------------------------------------------------

def memory_limit() -> int:
    """Bytes of physical memory on this machine: no single array may be larger."""
    try:
        return int(os.sysconf("SC_PAGE_SIZE")) * int(os.sysconf("SC_PHYS_PAGES"))
    except (AttributeError, ValueError, OSError):   # not a POSIX system: 1 TiB
        return 1 << 40


def format_bytes(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if n < 1024 or unit == "PiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n} B"  # pragma: no cover


def check_bytes(where: str, what: str, shape, itemsize: int, hint: str = "") -> None:
    """Refuse an array of ``shape`` that would need more memory than the machine has
    (computed with Python integers, so absurd sizes cannot overflow)."""
    n = 1
    for s in shape:
        n *= int(s)
    need = n * int(itemsize)
    limit = memory_limit()
    if need > limit:
        raise ValueError(f"{where}: {what} of shape {tuple(int(s) for s in shape)} would "
                         f"need {format_bytes(need)}, more than this machine's "
                         f"{format_bytes(limit)} of memory" + (f"; {hint}" if hint else ""))


def check_conv_memory(where, x_shape, w_shape, SH, SW, PH, PW, itemsize,
                      whole_batch_columns: bool = True) -> None:
    """The output of a convolution and its im2col columns must fit in memory (the whole
    batch's columns with the reference kernels, one image's with the fast ones)."""
    N, C, H, W = (int(s) for s in x_shape)
    OC, _, KH, KW = (int(s) for s in w_shape)
    OH, OW = (H + 2 * PH - KH) // SH + 1, (W + 2 * PW - KW) // SW + 1
    hint = "check kernel_size, stride and padding"
    check_bytes(where, "the output", (N, OC, OH, OW), itemsize, hint)
    check_bytes(where, "the padded input", (N, C, H + 2 * PH, W + 2 * PW), itemsize, hint)
    rows = N * OH * OW if whole_batch_columns else OH * OW
    check_bytes(where, "the im2col matrix", (rows, C * KH * KW), itemsize, hint)


def check_pool_memory(where, x_shape, KH, KW, SH, SW, PH, PW, itemsize,
                      windows: bool = True) -> None:
    """Pooling's output must fit, and with the reference kernels (``windows``) its
    padded input and the windows of every channel (im2col) too."""
    N, C, H, W = (int(s) for s in x_shape)
    OH, OW = (H + 2 * PH - KH) // SH + 1, (W + 2 * PW - KW) // SW + 1
    hint = "check kernel_size, stride and padding"
    check_bytes(where, "the output", (N, C, OH, OW), itemsize, hint)
    if windows:
        check_bytes(where, "the padded input", (N, C, H + 2 * PH, W + 2 * PW), itemsize,
                    hint)
        check_bytes(where, "the windows (im2col)", (N * C * OH * OW, KH * KW), itemsize,
                    hint)


def check_int(value, arg: str, where: str, minimum: int | None = None,
              maximum: int | None = None) -> int:
    """An int (a bool is refused) within [minimum, maximum]."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{where}: {arg} must be an int, got {value!r} "
                        f"({type(value).__name__})")
    if minimum is not None and value < minimum:
        raise ValueError(f"{where}: {arg} must be >= {minimum}, got {value!r}")
    if maximum is not None and value > maximum:
        raise ValueError(f"{where}: {arg} must be at most {maximum}, got {value!r}")
    return int(value)
