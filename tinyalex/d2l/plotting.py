"""d2l's live plots: ``Animator`` (train_ch6's edition), ``ProgressBoard`` (d2l 1.0),
and the helpers ``use_svg_display``, ``set_figsize``, ``set_axes``, ``plt``.

Where the figure goes:

* **in Jupyter** (an IPython kernel is running), as d2l: after every update the
  figure is displayed and the previous one cleared (``IPython.display.display`` +
  ``clear_output(wait=True)``), so one figure grows as training runs;
* **in a plain script**, where ``display`` could only print ``Figure(350x250)``, the
  figure is written to a PNG instead (atomically, so a viewer never reads half a
  file): ``<script name>_animator.png`` or ``..._board.png`` in the current folder
  (``_2``, ``_3``, ... for further figures of one run). It is written at the first
  update, then at most once a second (``SAVE_INTERVAL``: drawing a PNG costs more
  than a LeNet epoch's worth of updates), and its last state when the process
  exits. Its path is printed once; nothing else is printed per update.

In a plain script, importing this module selects matplotlib's Agg backend (no
window, no display needed) unless ``MPLBACKEND`` is set or pyplot is already
imported; that is the one process-wide setting here. Script figures are drawn on
their own Agg canvas, outside pyplot, so training runs do not pile up open figures.
"""

from __future__ import annotations

import atexit
import collections
import math
import os
import sys
import time
from pathlib import Path

from .hyperparameters import HyperParameters


def in_notebook() -> bool:
    """True inside a Jupyter kernel (where ``display`` shows a figure)."""
    shell = sys.modules.get("IPython") and sys.modules["IPython"].get_ipython()
    return bool(shell) and "IPKernelApp" in getattr(shell, "config", {})


if not in_notebook() and "matplotlib.pyplot" not in sys.modules \
        and not os.environ.get("MPLBACKEND"):
    import matplotlib
    matplotlib.use("Agg")

from matplotlib import pyplot as plt  # noqa: E402  (after the backend is chosen)

# -- where a script's figures go -----------------------------------------------------------

_paths_used = collections.Counter()


def figure_path(kind: str) -> Path:
    """``<script>_<kind>.png`` in the current folder; ``_2``, ``_3`` for the figures of
    this process that would have the same path."""
    stem = Path(sys.argv[0]).stem if sys.argv and sys.argv[0] else ""
    stem = "d2l" if stem in ("", "-c", "__main__", "ipykernel_launcher") else stem
    first = Path.cwd() / f"{stem}_{kind}.png"
    _paths_used[first] += 1
    n = _paths_used[first]
    return first if n == 1 else first.with_name(f"{stem}_{kind}_{n}.png")


def new_figure(figsize, nrows=1, ncols=1):
    """``(figure, [axes, ...])``: a pyplot figure in Jupyter (as d2l, so the inline
    backend also shows it when the cell ends), an Agg one of its own in a script."""
    if in_notebook():
        fig, axes = plt.subplots(nrows, ncols, figsize=figsize)
    else:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
        fig = Figure(figsize=figsize)
        FigureCanvasAgg(fig)
        axes = fig.subplots(nrows, ncols)
    flat = list(axes.flat) if hasattr(axes, "flat") else [axes]
    return fig, flat


# a script rewrites its PNG at most this often; the last state is written at exit
SAVE_INTERVAL = 1.0       # seconds (drawing a PNG takes 0.05-0.3 s)


class _Shower:
    """Shows one figure after each update: in Jupyter, or as a PNG from a script."""

    def __init__(self, kind: str):
        self.kind, self.path = kind, None
        self.saved_at, self.pending = -math.inf, None

    def show(self, fig) -> None:
        if in_notebook():
            from IPython import display
            display.display(fig)
            display.clear_output(wait=True)
            return
        if self.path is None:
            self.path = figure_path(self.kind)
            print(f"({self.kind}: no display in a plain script; the figure is written to "
                  f"{self.path} as it changes)")
            atexit.register(self.flush)
        self.pending = fig
        if time.monotonic() - self.saved_at >= SAVE_INTERVAL:
            self.flush()

    def flush(self) -> None:
        """Write the figure's latest state, if it changed since the last write."""
        fig, self.pending = self.pending, None
        if fig is None:
            return
        from ..atomic import atomic_write
        atomic_write(self.path, lambda f: fig.savefig(f, format="png", bbox_inches="tight"))
        self.saved_at = time.monotonic()


# -- d2l's helpers -------------------------------------------------------------------------

def use_svg_display() -> None:
    """In Jupyter, show figures as SVG (d2l's choice); a script writes PNG files."""
    if in_notebook():
        try:
            from matplotlib_inline import backend_inline
        except ImportError:       # an old IPython without matplotlib_inline: PNG it is
            return
        backend_inline.set_matplotlib_formats("svg")


def set_figsize(figsize=(3.5, 2.5)) -> None:
    """The size of pyplot's next figures, in inches."""
    use_svg_display()
    plt.rcParams["figure.figsize"] = figsize


def set_axes(axes, xlabel, ylabel, xlim, ylim, xscale, yscale, legend) -> None:
    """Labels, limits, scales, legend (when given) and a grid for one matplotlib axes."""
    axes.set_xlabel(xlabel)
    axes.set_ylabel(ylabel)
    axes.set_xscale(xscale)
    axes.set_yscale(yscale)
    axes.set_xlim(xlim)
    axes.set_ylim(ylim)
    if legend:
        axes.legend(legend)
    axes.grid()


def _number(v):
    return None if v is None else float(v)


class Animator:
    """Curves that grow point by point (train_ch6's train loss, train acc, test acc).

    ``add(x, y)``: ``y`` is one value or one per curve (None: no point for that curve
    this time), ``x`` one value for all or one per curve. Every call redraws the
    first axes and shows the figure (see the module docstring for where).
    """

    def __init__(self, xlabel=None, ylabel=None, legend=None, xlim=None, ylim=None,
                 xscale="linear", yscale="linear", fmts=("-", "m--", "g-.", "r:"),
                 nrows=1, ncols=1, figsize=(3.5, 2.5)):
        use_svg_display()
        self.fig, self.axes = new_figure(figsize, nrows, ncols)
        self.axis_settings = (xlabel, ylabel, xlim, ylim, xscale, yscale, legend or [])
        self.fmts = fmts
        self.X, self.Y = None, None
        self._shower = _Shower("animator")

    def config_axes(self) -> None:
        set_axes(self.axes[0], *self.axis_settings)

    def add(self, x, y) -> None:
        ys = list(y) if hasattr(y, "__len__") else [y]
        xs = list(x) if hasattr(x, "__len__") else [x] * len(ys)
        if self.X is None:
            self.X, self.Y = [[] for _ in ys], [[] for _ in ys]
        for curve, (a, b) in enumerate(zip(xs, ys)):
            if a is not None and b is not None:
                self.X[curve].append(_number(a))
                self.Y[curve].append(_number(b))
        ax = self.axes[0]
        ax.cla()
        for xs_, ys_, fmt in zip(self.X, self.Y, self.fmts):
            ax.plot(xs_, ys_, fmt)
        self.config_axes()
        self._shower.show(self.fig)


class ProgressBoard(HyperParameters):
    """d2l 1.0's board: ``draw(x, y, label, every_n)`` adds a point to the curve
    ``label``; every ``every_n`` points of a curve are averaged into one plotted point,
    and then (if ``display``) the figure is redrawn and shown."""

    def __init__(self, xlabel=None, ylabel=None, xlim=None, ylim=None, xscale="linear",
                 yscale="linear", ls=("-", "--", "-.", ":"), colors=("C0", "C1", "C2", "C3"),
                 fig=None, axes=None, figsize=(3.5, 2.5), display=True):
        self.save_hyperparameters()
        self.raw_points = collections.OrderedDict()     # label -> points not yet averaged
        self.data = collections.OrderedDict()           # label -> plotted (x, y) points
        self._shower = _Shower("board")

    def draw(self, x, y, label, every_n=1) -> None:
        every_n = max(1, int(every_n))      # d2l never draws when every_n rounds to 0
        pending = self.raw_points.setdefault(label, [])
        line = self.data.setdefault(label, [])
        pending.append((_number(x), _number(y)))
        if len(pending) < every_n:
            return
        line.append((sum(p[0] for p in pending) / len(pending),
                     sum(p[1] for p in pending) / len(pending)))
        pending.clear()
        if not self.display:
            return
        use_svg_display()
        if self.fig is None:
            self.fig, axes = new_figure(self.figsize)
            self.axes = self.axes or axes[0]
        ax = self.axes
        ax.cla()
        for (name, points), ls, color in zip(self.data.items(), self.ls, self.colors):
            ax.plot([p[0] for p in points], [p[1] for p in points], linestyle=ls,
                    color=color, label=name)
        if self.xlim:
            ax.set_xlim(self.xlim)
        if self.ylim:
            ax.set_ylim(self.ylim)
        ax.set_xlabel(self.xlabel)
        ax.set_ylabel(self.ylabel)
        ax.set_xscale(self.xscale)
        ax.set_yscale(self.yscale)
        ax.legend()
        self._shower.show(self.fig)
