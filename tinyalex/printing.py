"""How a tensor and its shape print: the way PyTorch prints them, so that a book cell
run on tinyalex shows what the book shows.

PyTorch's rules (``torch/_tensor_str.py``), rewritten here for host NumPy arrays:

* One format for all the elements of a float tensor, chosen from its nonzero finite
  values: integers print as ``3.``; otherwise ``precision`` (4) digits after the
  point; scientific (``1.0000e-05``) when the largest / smallest magnitude is over
  1000, the largest over 1e8 or the smallest under 1e-4. Every element is padded to
  the widest one.
* More than ``threshold`` (1000) elements: each dimension shows its first and last
  ``edgeitems`` (3) entries around ``...``.
* Rows wrap at ``linewidth`` (80) columns; nested brackets are indented one column per
  level, and dimensions are separated by ``ndim - 1`` newlines.
* Suffixes after the values: ``device='cuda:0'`` off the CPU, ``dtype=torch.float64``
  unless the dtype is float32, int64 or bool, then ``grad_fn=<MulBackward0>`` for a
  tensor an op made, or ``requires_grad=True`` for a leaf that requires grad.

Names: a shape prints as ``torch.Size([1, 1, 6, 8])`` and a dtype as ``torch.float64``,
as in the book's printed output; under ``import tinyalex as torch`` those texts are
also the expressions that rebuild them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


@dataclass
class PrintOptions:
    precision: int = 4
    threshold: float = 1000
    edgeitems: int = 3
    linewidth: int = 80
    sci_mode: bool | None = None      # None: decided per tensor by the rule above


PRINT_OPTS = PrintOptions()


def set_printoptions(precision=None, threshold=None, edgeitems=None, linewidth=None,
                     profile=None, sci_mode=None) -> None:
    """PyTorch's ``torch.set_printoptions`` (``profile``: "default", "short", "full")."""
    if profile is not None:
        presets = {"default": (4, 1000, 3), "short": (2, 1000, 2), "full": (4, math.inf, 3)}
        if profile not in presets:
            raise ValueError(f"set_printoptions: profile must be one of {sorted(presets)}, "
                             f"got {profile!r}")
        PRINT_OPTS.precision, PRINT_OPTS.threshold, PRINT_OPTS.edgeitems = presets[profile]
        PRINT_OPTS.linewidth = 80
    for name, value in (("precision", precision), ("threshold", threshold),
                        ("edgeitems", edgeitems), ("linewidth", linewidth)):
        if value is not None:
            setattr(PRINT_OPTS, name, value)
    PRINT_OPTS.sci_mode = sci_mode


DEFAULT_DTYPES = (np.dtype(np.float32), np.dtype(np.int64), np.dtype(np.bool_))


def dtype_name(dtype) -> str:
    """``torch.float32`` for float32, ..., as PyTorch prints dtypes."""
    return "torch." + np.dtype(dtype).name


def size_repr(shape) -> str:
    return f"torch.Size([{', '.join(str(int(n)) for n in shape)}])"


# -- one format for every element ------------------------------------------------------

class _Formatter:
    """Chooses, from all the values to be shown, the one format they print with."""

    def __init__(self, values: np.ndarray):
        self.floating = values.dtype.kind == "f"
        self.int_mode, self.sci_mode, self.width = True, False, 1
        flat = values.reshape(-1)
        if not self.floating:
            self.width = max((len(str(v)) for v in flat.tolist()), default=1)
            return
        shown = flat[np.isfinite(flat) & (flat != 0)].astype(np.float64)
        if shown.size == 0:
            return
        magnitudes = np.abs(shown)
        low, high = magnitudes.min(), magnitudes.max()
        self.int_mode = bool((shown == np.ceil(shown)).all())
        self.sci_mode = (high / low > 1000.0 or high > 1.0e8 or low < 1.0e-4) \
            if PRINT_OPTS.sci_mode is None else PRINT_OPTS.sci_mode
        p = PRINT_OPTS.precision
        if self.sci_mode:
            self.width = max(len(f"{v:.{p}e}") for v in shown.tolist())
        elif self.int_mode:
            self.width = max(len(f"{v:.0f}") + 1 for v in shown.tolist())
        else:
            self.width = max(len(f"{v:.{p}f}") for v in shown.tolist())

    def format(self, value) -> str:
        p = PRINT_OPTS.precision
        if not self.floating:
            text = str(value)
        elif self.sci_mode:
            text = f"{value:{self.width}.{p}e}"
        elif self.int_mode:
            text = f"{value:.0f}"
            if math.isfinite(value):
                text += "."
        else:
            text = f"{value:.{p}f}"
        return text.rjust(self.width)


# -- nested brackets ---------------------------------------------------------------------

def _summarized(a: np.ndarray) -> np.ndarray:
    """The entries that will be shown (each dimension's edges), for the formatter."""
    e = PRINT_OPTS.edgeitems
    if a.ndim == 0:
        return a
    if a.shape[0] > 2 * e:
        a = np.concatenate([a[:e], a[-e:]]) if e else a[:0]
    if a.ndim == 1:
        return a
    return np.stack([_summarized(row) for row in a]) if len(a) else a


def _vector(a, indent, summarize, fmt) -> str:
    per_line = max(1, (PRINT_OPTS.linewidth - indent) // (fmt.width + 2))
    e = PRINT_OPTS.edgeitems
    if summarize and not e:
        items = ["..."]
    elif summarize and a.shape[0] > 2 * e:
        items = ([fmt.format(v) for v in a[:e].tolist()] + [" ..."]
                 + [fmt.format(v) for v in a[-e:].tolist()])
    else:
        items = [fmt.format(v) for v in a.tolist()]
    lines = [", ".join(items[i:i + per_line]) for i in range(0, len(items), per_line)]
    return "[" + (",\n" + " " * (indent + 1)).join(lines) + "]"


def _nested(a, indent, summarize, fmt) -> str:
    if a.ndim == 0:
        return fmt.format(a.item())
    if a.ndim == 1:
        return _vector(a, indent, summarize, fmt)
    e = PRINT_OPTS.edgeitems
    if summarize and a.shape[0] > 2 * e:
        rows = ([_nested(a[i], indent + 1, summarize, fmt) for i in range(e)] + ["..."]
                + [_nested(a[i], indent + 1, summarize, fmt)
                   for i in range(len(a) - e, len(a))])
    else:
        rows = [_nested(row, indent + 1, summarize, fmt) for row in a]
    return "[" + ("," + "\n" * (a.ndim - 1) + " " * (indent + 1)).join(rows) + "]"


def values_str(a: np.ndarray, indent: int) -> str:
    """The bracketed values of host array ``a``, continuation lines indented."""
    if a.size == 0:
        return "[]"
    summarize = a.size > PRINT_OPTS.threshold
    fmt = _Formatter(_summarized(a) if summarize else a)
    return _nested(a, indent, summarize, fmt)


def _with_suffixes(text: str, suffixes, indent: int) -> str:
    parts = [text]
    last = len(text) - text.rfind("\n") + 1
    for suffix in suffixes:
        if last + len(suffix) + 2 > PRINT_OPTS.linewidth:
            parts.append(",\n" + " " * indent + suffix)
            last = indent + len(suffix)
        else:
            parts.append(", " + suffix)
            last += len(suffix) + 2
    return "".join(parts) + ")"


def tensor_repr(host: np.ndarray, *, device: str | None, grad_fn: str | None,
                requires_grad: bool) -> str:
    """``tensor([...], ...)`` for a tensor with values ``host`` (a NumPy array),
    ``device`` (None on the CPU), the name of the op that made it, if any."""
    prefix = "tensor("
    indent = len(prefix)
    suffixes = []
    if device is not None:
        suffixes.append(f"device='{device}'")
    if host.size == 0:
        if host.ndim != 1:
            suffixes.append(f"size={tuple(host.shape)}")
        if host.dtype != np.float32:
            suffixes.append(f"dtype={dtype_name(host.dtype)}")
    elif host.dtype not in DEFAULT_DTYPES:
        suffixes.append(f"dtype={dtype_name(host.dtype)}")
    if grad_fn is not None:
        suffixes.append(f"grad_fn=<{grad_fn}>")
    elif requires_grad:
        suffixes.append("requires_grad=True")
    return _with_suffixes(prefix + values_str(host, indent), suffixes, indent)
