"""A convolution taken apart: every matrix of one conv2d, forward and backward.

``walk_through(x, weight, bias, stride, padding, gy)`` computes, with the engine's
readable references (:func:`tinyalex.ops.im2col.im2col` and
:func:`~tinyalex.ops.im2col.col2im`), each step that ``tinyalex/ops/conv.py``
takes, keeps every intermediate matrix, and checks the result against the engine
itself: the output against ``tinyalex.nn.functional.conv2d``, the gradients
against autograd (``Tensor.backward``). ``format_walk(w)`` turns it into the text
that ``examples/explain_conv.py`` prints. Letters as in the Notation of
``tinyalex/ops/im2col.py``.

Forward::

    x_padded = pad(x)                                  # (N, C, H+2*PH, W+2*PW)
    cols     = im2col(x)                               # (N*OH*OW, C*KH*KW), rows (n, oh, ow), columns (c, kh, kw)
    w_mat    = weight.reshape(OC, C*KH*KW).T           # (C*KH*KW, OC)
    y_mat    = cols @ w_mat + bias                     # (N*OH*OW, OC)
    y        = y_mat -> (N, OH, OW, OC) -> (N, OC, OH, OW)

Backward, given gy (N, OC, OH, OW)::

    gy_mat = gy -> (N, OH, OW, OC) -> (N*OH*OW, OC)
    gw     = (gy_mat.T @ cols).reshape(OC, C, KH, KW)  # (OC, C*KH*KW) = (OC, N*OH*OW) @ (N*OH*OW, C*KH*KW)
    gb     = gy_mat.sum(axis=0)                        # (OC,)
    gcols  = gy_mat @ w_mat.T                          # (N*OH*OW, C*KH*KW) = (N*OH*OW, OC) @ (OC, C*KH*KW)
    gx     = col2im(gcols)                             # (N, C, H, W): overlapping windows added
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from tinyalex.kernels.geometry import conv_geometry, output_size

from ..checks import pair
from ..nn.functional import conv2d
from ..ops.im2col import col2im, im2col
from ..tensor import tensor


@dataclass
class ConvWalk:
    """Every intermediate array of one convolution, forward and backward (float64)."""

    x: np.ndarray            # (N, C, H, W)
    weight: np.ndarray       # (OC, C, KH, KW)
    bias: np.ndarray         # (OC,)
    gy: np.ndarray           # (N, OC, OH, OW): the upstream gradient
    stride: tuple
    padding: tuple
    x_padded: np.ndarray = None    # (N, C, H+2*PH, W+2*PW)
    cols: np.ndarray = None        # (N*OH*OW, C*KH*KW)
    row_labels: list = None        # [(n, oh, ow)] for the rows of cols
    col_labels: list = None        # [(c, kh, kw)] for the columns of cols
    w_mat: np.ndarray = None       # (C*KH*KW, OC)
    y_mat: np.ndarray = None       # (N*OH*OW, OC)
    y: np.ndarray = None           # (N, OC, OH, OW)
    gy_mat: np.ndarray = None      # (N*OH*OW, OC)
    gw: np.ndarray = None          # (OC, C, KH, KW)
    gb: np.ndarray = None          # (OC,)
    gcols: np.ndarray = None       # (N*OH*OW, C*KH*KW)
    gx: np.ndarray = None          # (N, C, H, W)
    overlap: np.ndarray = None     # (H+2*PH, W+2*PW): windows covering each padded pixel
    errors: dict = field(default_factory=dict)   # check name -> relative difference

    @property
    def sizes(self) -> dict:
        """The Notation letters of this convolution, by name."""
        N, C, H, W = self.x.shape
        OC, _, KH, KW = self.weight.shape
        (SH, SW), (PH, PW) = self.stride, self.padding
        return dict(N=N, C=C, H=H, W=W, OC=OC, KH=KH, KW=KW, SH=SH, SW=SW, PH=PH, PW=PW,
                    OH=output_size(H, KH, SH, PH), OW=output_size(W, KW, SW, PW))

    def ok(self, tol: float = 1e-9) -> bool:
        """True when every check agreed to within ``tol``."""
        return bool(self.errors) and all(e <= tol for e in self.errors.values())

    def window_sources(self, n: int, c: int, h: int, w: int):
        """The (row, column) entries of cols that are copies of pixel x[n, c, h, w]:
        the entries col2im adds back onto that pixel."""
        s = self.sizes
        out = []
        for r, (rn, oh, ow) in enumerate(self.row_labels):
            for k, (kc, kh, kw) in enumerate(self.col_labels):
                if (rn == n and kc == c and oh * s["SH"] + kh - s["PH"] == h
                        and ow * s["SW"] + kw - s["PW"] == w):
                    out.append((r, k))
        return out


def walk_through(x, weight, bias=None, stride=1, padding=0, gy=None) -> ConvWalk:
    """Compute one convolution step by step and check it against the engine.

    x (N, C, H, W), weight (OC, C, KH, KW), bias (OC,) or None, gy (N, OC, OH, OW)
    or None (then all ones). Arrays are taken as float64 so that the checks are
    exact up to rounding.
    """
    x = np.asarray(x, dtype=np.float64)
    weight = np.asarray(weight, dtype=np.float64)
    SH, SW = pair(stride, "stride", "walk_through", 1)
    PH, PW = pair(padding, "padding", "walk_through", 0)
    g = conv_geometry(x.shape, weight.shape, SH, SW, PH, PW, "walk_through")  # every size checked
    N, C, H, W, OC, KH, KW, OH, OW = g.N, g.C, g.H, g.W, g.OC, g.KH, g.KW, g.OH, g.OW
    bias = np.zeros(OC) if bias is None else np.asarray(bias, dtype=np.float64)
    gy = np.ones((N, OC, OH, OW)) if gy is None else np.asarray(gy, dtype=np.float64)
    if bias.shape != (OC,) or gy.shape != (N, OC, OH, OW):
        raise ValueError(f"walk_through: expected bias ({OC},) and gy {(N, OC, OH, OW)}, "
                         f"got {bias.shape} and {gy.shape}")
    w = ConvWalk(x=x, weight=weight, bias=bias, gy=gy, stride=(SH, SW), padding=(PH, PW))

    # ---- forward ---------------------------------------------------------------------
    w.x_padded = np.pad(x, ((0, 0), (0, 0), (PH, PH), (PW, PW)))   # (N, C, H+2*PH, W+2*PW)
    w.cols = im2col(x, KH, KW, SH, SW, PH, PW)                       # (N*OH*OW, C*KH*KW)
    # labels in the order of im2col's layout: last letter fastest
    w.row_labels = [(n, oh, ow) for n in range(N) for oh in range(OH) for ow in range(OW)]
    w.col_labels = [(c, kh, kw) for c in range(C) for kh in range(KH) for kw in range(KW)]
    w.w_mat = weight.reshape(OC, C * KH * KW).T                      # (C*KH*KW, OC)
    w.y_mat = w.cols @ w.w_mat + bias     # (N*OH*OW, OC) = (N*OH*OW, C*KH*KW) @ (C*KH*KW, OC)
    # (N*OH*OW, OC) -> (N, OH, OW, OC) -> (N, OC, OH, OW)
    w.y = w.y_mat.reshape(N, OH, OW, OC).transpose(0, 3, 1, 2)

    # ---- backward --------------------------------------------------------------------
    # (N, OC, OH, OW) -> (N, OH, OW, OC) -> (N*OH*OW, OC)
    w.gy_mat = gy.transpose(0, 2, 3, 1).reshape(N * OH * OW, OC)
    # (OC, C*KH*KW) = (OC, N*OH*OW) @ (N*OH*OW, C*KH*KW) -> (OC, C, KH, KW)
    w.gw = (w.gy_mat.T @ w.cols).reshape(OC, C, KH, KW)
    w.gb = w.gy_mat.sum(axis=0)                                      # (OC,)
    w.gcols = w.gy_mat @ w.w_mat.T   # (N*OH*OW, C*KH*KW) = (N*OH*OW, OC) @ (OC, C*KH*KW)
    w.gx = col2im(w.gcols, x.shape, KH, KW, SH, SW, PH, PW)          # (N, C, H, W)
    # How many windows cover each pixel of the padded grid: col2im of all ones,
    # on the padded image itself (no padding left to cut away).
    Hp, Wp = H + 2 * PH, W + 2 * PW
    ones = np.ones((OH * OW, KH * KW))                               # (1*OH*OW, 1*KH*KW)
    w.overlap = col2im(ones, (1, 1, Hp, Wp), KH, KW, SH, SW, 0, 0)[0, 0]   # (Hp, Wp)

    _check_against_engine(w)
    return w


def _check_against_engine(w: ConvWalk) -> None:
    """Fill ``w.errors``: our matrices against conv2d's output and autograd's grads."""
    xt = tensor(w.x, requires_grad=True)
    wt = tensor(w.weight, requires_grad=True)
    bt = tensor(w.bias, requires_grad=True)
    y = conv2d(xt, wt, bt, stride=w.stride, padding=w.padding)
    y.backward(w.gy)
    w.errors = {
        "output y vs conv2d": _rel_error(w.y, y.numpy()),
        "grad x vs autograd": _rel_error(w.gx, xt.grad.numpy()),
        "grad weight vs autograd": _rel_error(w.gw, wt.grad.numpy()),
        "grad bias vs autograd": _rel_error(w.gb, bt.grad.numpy()),
    }
    # col2im, entry by entry: every pixel's gradient is the sum of its copies' gradients
    s = w.sizes
    by_sum = np.zeros_like(w.gx)
    for n in range(s["N"]):
        for c in range(s["C"]):
            for h in range(s["H"]):
                for ww in range(s["W"]):
                    total = sum(w.gcols[r, k] for r, k in w.window_sources(n, c, h, ww))
                    by_sum[n, c, h, ww] = total
    w.errors["col2im vs sum over windows"] = _rel_error(by_sum, w.gx)


def _rel_error(mine, engine) -> float:
    """max |mine - engine|, relative to the engine's largest value (or absolute below 1)."""
    return float(np.abs(mine - engine).max() / max(1.0, float(np.abs(engine).max())))


def tiny_example(stride=1, padding=1, N=1, C=2, H=4, W=4, OC=2, K=3, seed=0) -> ConvWalk:
    """The explainer's example: small integers from a seeded generator, so every
    printed number is short and every sum can be followed by hand."""
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 10, size=(N, C, H, W))
    weight = rng.integers(-1, 2, size=(OC, C, K, K))
    bias = rng.integers(-2, 3, size=OC)
    (SH, SW), (PH, PW) = pair(stride, "stride", "tiny_example", 1), \
        pair(padding, "padding", "tiny_example", 0)
    OH, OW = output_size(H, K, SH, PH), output_size(W, K, SW, PW)
    gy = rng.integers(-2, 3, size=(N, OC, OH, OW))
    return walk_through(x, weight, bias, stride, padding, gy)


# -------------------------------------------------------------------------------------
# Text
# -------------------------------------------------------------------------------------

def _fmt(v) -> str:
    v = float(v)
    return str(int(v)) if v == int(v) else f"{v:.3g}"


def _paren(v) -> str:
    return f"({_fmt(v)})" if v < 0 else _fmt(v)


def format_matrix(m, row_labels=None, col_labels=None, row_title="", col_titles=()) -> str:
    """A 2-D array with labelled rows and columns.

    ``col_labels`` holds one tuple per column; each tuple position gets its own
    header line, titled by ``col_titles`` (e.g. ("c", "kh", "kw")).
    """
    m = np.asarray(m)
    if col_labels is not None:
        col_labels = [lab if isinstance(lab, tuple) else (lab,) for lab in col_labels]
    cells = [[_fmt(v) for v in row] for row in m]
    width = max([len(c) for row in cells for c in row] +
                [len(str(t)) for lab in (col_labels or []) for t in lab] + [1]) + 1
    rlabels = [("(" + ",".join(str(i) for i in lab) + ")") if isinstance(lab, tuple)
               else str(lab) for lab in (row_labels or [""] * m.shape[0])]
    lw = max([len(s) for s in rlabels] + [len(row_title)] +
             [len(t) for t in col_titles]) + 2
    lines = []
    if col_labels is not None:
        for d in range(len(col_labels[0])):
            title = col_titles[d] if d < len(col_titles) else ""
            vals = [lab[d] for lab in col_labels]
            lines.append(f"{title:>{lw}}" + "".join(f"{str(v):>{width}}" for v in vals))
    if row_title:
        lines.append(f"{row_title:<{lw}}")
    for lab, row in zip(rlabels, cells):
        lines.append(f"{lab:<{lw}}" + "".join(f"{c:>{width}}" for c in row))
    return "\n".join(lines)


def format_images(a, name: str, letters=("n", "c")) -> str:
    """A 4-D array (A, B, rows, columns) as one small grid per [a, b]."""
    blocks = []
    for i in range(a.shape[0]):
        for j in range(a.shape[1]):
            blocks.append(f"{name}[{letters[0]}={i}, {letters[1]}={j}]:\n" +
                          format_matrix(a[i, j]))
    return "\n".join(blocks)


def format_walk(w: ConvWalk, title: str = "") -> str:
    """The whole story of one convolution as text, ending with the checks."""
    s = w.sizes
    N, C, H, W, OC, KH, KW = (s[k] for k in ("N", "C", "H", "W", "OC", "KH", "KW"))
    OH, OW, SH, SW, PH, PW = (s[k] for k in ("OH", "OW", "SH", "SW", "PH", "PW"))
    out = []
    say = out.append
    rule = "=" * 78
    say(rule)
    say(title or "A convolution, step by step")
    say(f"x: (N, C, H, W) = {w.x.shape}; weight: (OC, C, KH, KW) = {w.weight.shape}; "
        f"stride (SH, SW) = ({SH}, {SW}); padding (PH, PW) = ({PH}, {PW})")
    say(f"OH = (H + 2*PH - KH) // SH + 1 = ({H} + {2 * PH} - {KH}) // {SH} + 1 = {OH};  "
        f"OW = ({W} + {2 * PW} - {KW}) // {SW} + 1 = {OW}")
    say(rule)

    say("\n1. The input, zero-padded by (PH, PW) on each side: x_padded "
        f"(N, C, H+2*PH, W+2*PW) = {w.x_padded.shape}")
    say(format_images(w.x_padded, "x_padded"))

    say(f"\n2. im2col: every {KH}x{KW} window becomes one row. cols (N*OH*OW, C*KH*KW) = "
        f"{w.cols.shape}")
    say("   cols[(n, oh, ow), (c, kh, kw)] = x_padded[n, c, oh*SH + kh, ow*SW + kw]")
    say(format_matrix(w.cols, w.row_labels, w.col_labels, "(n,oh,ow)", ("c", "kh", "kw")))

    say(f"\n3. The filters as a matrix: w_mat = weight.reshape(OC, C*KH*KW).T, "
        f"(C*KH*KW, OC) = {w.w_mat.shape}")
    say(format_matrix(w.w_mat, w.col_labels, list(range(OC)), "(c,kh,kw)", ("oc",)))
    say(f"   bias (OC,) = [{', '.join(_fmt(b) for b in w.bias)}]")

    say(f"\n4. One GEMM: y_mat = cols @ w_mat + bias, (N*OH*OW, OC) = "
        f"({N * OH * OW}, {C * KH * KW}) @ ({C * KH * KW}, {OC}) = {w.y_mat.shape}")
    say(f"   That is {N * OH * OW * OC * C * KH * KW} multiply-accumulates "
        "(N*OH*OW*OC*C*KH*KW).")
    say(format_matrix(w.y_mat, w.row_labels, list(range(OC)), "(n,oh,ow)", ("oc",)))
    r0 = 0
    terms = " + ".join(f"{_fmt(a)}*{_paren(b)}" for a, b in zip(w.cols[r0], w.w_mat[:, 0])
                       if a != 0 and b != 0)
    say(f"   e.g. y_mat[{w.row_labels[r0]}, 0] is row {w.row_labels[r0]} of cols dotted "
        "with column 0 of w_mat, plus bias[0]")
    say(f"        = {terms or '0'} + {_paren(w.bias[0])} = {_fmt(w.y_mat[r0, 0])}"
        "   (zero products left out)")

    say(f"\n5. Reshape back: (N*OH*OW, OC) -> (N, OH, OW, OC) -> transpose -> "
        f"(N, OC, OH, OW) = {w.y.shape}")
    say("   row (n, oh, ow), column oc of y_mat is y[n, oc, oh, ow]")
    say(format_images(w.y, "y", ("n", "oc")))

    say("\n" + "-" * 78)
    say("Backward pass, with an upstream gradient gy = dLoss/dy")
    say("-" * 78)
    say(f"gy (N, OC, OH, OW) = {w.gy.shape}")
    say(format_images(w.gy, "gy", ("n", "oc")))
    say(f"\n6. gy as a matrix like y_mat: gy_mat (N*OH*OW, OC) = {w.gy_mat.shape}")
    say(format_matrix(w.gy_mat, w.row_labels, list(range(OC)), "(n,oh,ow)", ("oc",)))
    say(f"\n7. Weight and bias gradients: gw = gy_mat.T @ cols, (OC, C*KH*KW) = "
        f"({OC}, {N * OH * OW}) @ ({N * OH * OW}, {C * KH * KW}); gb = gy_mat.sum(axis=0)")
    say(format_matrix(w.gw.reshape(OC, -1), list(range(OC)), w.col_labels, "oc",
                      ("c", "kh", "kw")))
    say(f"   gb (OC,) = [{', '.join(_fmt(b) for b in w.gb)}]")

    say(f"\n8. Gradient columns: gcols = gy_mat @ w_mat.T, (N*OH*OW, C*KH*KW) = "
        f"{w.gcols.shape}")
    say("   one row per window: how much each copied pixel of that window moved the loss")
    say(format_matrix(w.gcols, w.row_labels, w.col_labels, "(n,oh,ow)", ("c", "kh", "kw")))

    say("\n9. col2im, the adjoint of im2col: every pixel was copied into each window that")
    say("   covers it, so its gradient is the SUM of those copies' gradients.")
    say("   Windows covering each pixel of the padded grid (the image is the inner "
        f"{H}x{W}):")
    say(format_matrix(w.overlap))
    n, c, h, ww = 0, 0, min(1, H - 1), min(1, W - 1)
    src = w.window_sources(n, c, h, ww)
    say(f"   e.g. pixel x[{n}, {c}, {h}, {ww}] was copied into {len(src)} windows; "
        "col2im adds their gradients:")
    for r, k in src:
        say(f"      gcols[row (n,oh,ow)={w.row_labels[r]}, column (c,kh,kw)="
            f"{w.col_labels[k]}] = {_fmt(w.gcols[r, k])}")
    say(f"      sum = gx[{n}, {c}, {h}, {ww}] = {_fmt(w.gx[n, c, h, ww])}")
    inner = w.overlap[PH:PH + H, PW:PW + W]
    skipped = int((inner == 0).sum())
    if skipped:
        say(f"   {skipped} of the {H * W} image pixels lie in no window (the stride steps "
            "over them): their gradient is 0.")
    say(f"\n10. gx = col2im(gcols): (N, C, H, W) = {w.gx.shape} (padding cut away)")
    say(format_images(w.gx, "gx"))

    say("\nChecks against the engine (max |difference| / max(1, largest |value|)):")
    for name, err in w.errors.items():
        say(f"   {name:<28} {err:.3g}  {'OK' if err <= 1e-9 else 'MISMATCH'}")
    say("All steps agree with tinyalex's conv2d and autograd." if w.ok() else
        "MISMATCH: the steps above do not reproduce tinyalex's conv2d.")
    return "\n".join(out)
