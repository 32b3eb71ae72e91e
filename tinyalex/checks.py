"""Argument checks: every bad value becomes a ValueError or TypeError that names the
place (``where``: the op, layer, function or flag), the argument, what was expected
and what was given, before any computation sees it. These are the validators every
part of tinyalex uses; nothing else checks integers, sizes or numbers by hand.

Sizes are checked twice: each number on its own (``check_int``, ``pair``: an int,
not a bool, in range), and what they ask for together (``check_bytes``): an array
that would need more memory than the machine has is refused by name, instead of
surfacing as NumPy's MemoryError (or the kernel's OOM killer) somewhere later.
"""

from __future__ import annotations

import math
import numbers
import os

import numpy as np

# The largest kernel size, stride or padding an op accepts: the compiled loops index
# with 64-bit integers and keep max-pooling's argmax in int32.
MAX_SIZE = 2**31 - 1
NUMERIC_KINDS = "biuf"      # bool, signed and unsigned int, float: what tensors hold


def is_int(value) -> bool:
    """An integer that is not a bool (Python's or NumPy's)."""
    return isinstance(value, numbers.Integral) and not isinstance(value, (bool, np.bool_))


def _int_wanted(minimum, maximum, allow_none) -> str:
    if minimum == 1 and maximum is None:
        what = "a positive int"
    elif minimum == 0 and maximum is None:
        what = "a non-negative int"
    elif minimum is not None and maximum is not None:
        what = f"an int from {minimum} to {maximum}"
    elif minimum is not None:
        what = f"an int >= {minimum}"
    elif maximum is not None:
        what = f"an int <= {maximum}"
    else:
        what = "an int"
    return what + (" or None" if allow_none else "")


def check_int(value, arg: str, where: str, minimum: int | None = None,
              maximum: int | None = None, *, allow_none: bool = False,
              type_error=TypeError) -> int | None:
    """``value`` as an int within [minimum, maximum] (None passes when ``allow_none``).

    A value that is no int (a bool, a float, a string) raises ``type_error``
    (TypeError, or ValueError where a caller reports every bad value alike); one out
    of range raises ValueError. Both say ``"{where}: {arg} must be {what}, got ..."``."""
    if value is None and allow_none:
        return None
    wanted = _int_wanted(minimum, maximum, allow_none)
    if not is_int(value):
        raise type_error(f"{where}: {arg} must be {wanted}, got {value!r} "
                         f"({type(value).__name__})")
    if (minimum is not None and value < minimum) or (maximum is not None and value > maximum):
        raise ValueError(f"{where}: {arg} must be {wanted}, got {value!r}")
    return int(value)


def check_number(value, arg: str, where: str, *, minimum: float = 0.0,
                 positive: bool = False, maximum: float | None = None) -> float:
    """A finite real number (not a bool) >= minimum (> minimum when ``positive``) and
    <= maximum; every bad value is a ValueError."""
    if positive:
        wanted = "a positive number" if minimum == 0 else f"a number above {minimum}"
    else:
        wanted = "a non-negative number" if minimum == 0 else f"a number >= {minimum}"
    if maximum is not None:
        wanted = f"a number from {minimum} to {maximum}"
    ok = isinstance(value, numbers.Real) and not isinstance(value, (bool, np.bool_))
    if ok and not math.isfinite(value):
        raise ValueError(f"{where}: {arg} must be {wanted} (finite), got {value!r}")
    if not ok or value < minimum or (positive and value == minimum) \
            or (maximum is not None and value > maximum):
        raise ValueError(f"{where}: {arg} must be {wanted}, got {value!r}")
    return float(value)


def check_bool(value, arg: str, where: str) -> bool:
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{where}: {arg} must be True or False, got {value!r}")
    return bool(value)


def pair(value, arg: str, where: str, minimum: int) -> tuple[int, int]:
    """``value`` as an (int, int) pair, each >= minimum (an int means (v, v))."""
    if isinstance(value, (tuple, list)):
        if len(value) != 2:
            raise ValueError(f"{where}: {arg} must be an int or a pair of ints, got "
                             f"{len(value)} values {tuple(value)!r}")
        items = tuple(value)
    else:
        items = (value, value)
    for v in items:
        if not is_int(v):
            raise TypeError(f"{where}: {arg} must be an int or a pair of ints, got "
                            f"{value!r} ({type(v).__name__})")
        if v < minimum:
            raise ValueError(f"{where}: {arg} must be >= {minimum}, got {value!r}")
        if v > MAX_SIZE:
            raise ValueError(f"{where}: {arg} must be at most {MAX_SIZE}, got {value!r}")
    return int(items[0]), int(items[1])


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


def check_dtype(dtype, where: str) -> np.dtype:
    """``dtype`` as a NumPy dtype of numbers (bool, int or float), or a TypeError."""
    try:
        dt = np.dtype(dtype)
    except TypeError:
        raise TypeError(f"{where}: {dtype!r} is not a dtype; use e.g. tinyalex.float32 or "
                        "tinyalex.int64") from None
    if dt.kind not in NUMERIC_KINDS:
        raise TypeError(f"{where}: dtype must be bool, int or float, got {dt}")
    return dt


def check_shape(shape, where: str, dtype=np.float32) -> tuple:
    """A shape of non-negative ints (bools refused) whose array fits in memory."""
    if not isinstance(shape, (tuple, list)):
        shape = (shape,)
    for s in shape:
        if not is_int(s):
            raise TypeError(f"{where}: sizes must be ints, got {tuple(shape)!r} (a "
                            f"{type(s).__name__})")
        if s < 0:
            raise ValueError(f"{where}: sizes must be >= 0, got {tuple(shape)!r}")
    check_bytes(where, "a tensor", shape, check_dtype(dtype, where).itemsize)
    return tuple(int(s) for s in shape)


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
