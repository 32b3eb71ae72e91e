"""Argument checks shared by the ops: every bad value becomes a ValueError or
TypeError that names the op, the argument, what was expected and what was given,
before any kernel sees it."""

from __future__ import annotations

import numbers

import numpy as np


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
