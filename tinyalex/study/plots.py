"""Every picture tinyalex draws, with matplotlib's Agg canvas (no pyplot, no window,
no global backend switch: each figure gets its own ``FigureCanvasAgg``), so they
work on machines without a display.

Every function takes arrays the engine computed, writes one PNG atomically
(``tinyalex/atomic.py``: a kill mid-write leaves the previous picture whole) and
returns its path. All but the confusion matrix have a fixed pixel size
(``figsize * DPI``; no tight cropping, so tests can check the size):

* ``plot_curves(runs, path)``: loss and accuracy per epoch of one training run (the
  curves.png of every run) or several (``examples/compare.py``);
* ``plot_confusion(matrix, class_names, path)``: a confusion matrix
  (``examples/evaluate.py``);

* ``plot_im2col(walk, path)``: the padded input beside the im2col matrix, one
  window and its row highlighted;
* ``plot_overlap(walks, path)``: how many windows cover each pixel (what col2im
  adds up), one panel per convolution;
* ``plot_filters(sets, path)``: the first layer's filters as a grid, one grid per
  checkpoint;
* ``plot_feature_maps(sets, path)``: one image's feature maps after each conv and
  pool layer, one block of columns per checkpoint.
"""

from __future__ import annotations

import math

import numpy as np

from ..atomic import atomic_write

DPI = 100


def _figure(width_in: float, height_in: float):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    fig = Figure(figsize=(width_in, height_in), dpi=DPI)
    FigureCanvasAgg(fig)
    return fig


def _save(fig, path, tight: bool = False) -> str:
    """Write ``fig`` as a PNG to ``path`` (its folder made if missing), atomically. A
    figure keeps its size (figsize * DPI pixels) unless ``tight`` crops it to what
    was drawn."""
    atomic_write(path, lambda f: fig.savefig(f, format="png", dpi=DPI,
                                             bbox_inches="tight" if tight else None))
    return str(path)


def _annotate(ax, m, fmt=lambda v: f"{v:g}", fontsize=8, mid=None):
    """Write each value of the 2-D array ``m`` in its cell: white on the dark half of
    the colour scale (below ``mid``), black on the light half."""
    if mid is None:
        mid = (float(np.min(m)) + float(np.max(m))) / 2
    for i in range(m.shape[0]):
        for j in range(m.shape[1]):
            ax.text(j, i, fmt(m[i, j]), ha="center", va="center", fontsize=fontsize,
                    color="white" if m[i, j] < mid else "black")


def _label(t) -> str:
    return ",".join(str(v) for v in t)


# -- im2col and col2im ------------------------------------------------------------------

IM2COL_SIZE = (15.0, 7.5)        # inches


def plot_im2col(walk, path, row: int | None = None) -> str:
    """Left: each channel of the padded input with one window outlined. Right: the
    im2col matrix, rows (n, oh, ow) and columns (c, kh, kw), that window's row outlined."""
    from matplotlib.patches import Rectangle
    s = walk.sizes
    C, KH, KW, SH, SW, PH, PW = (s[k] for k in ("C", "KH", "KW", "SH", "SW", "PH", "PW"))
    H, W = s["H"], s["W"]
    if row is None:
        row = len(walk.row_labels) // 2 - (s["OW"] // 2 if s["OH"] > 1 else 0)
    n, oh, ow = walk.row_labels[row]
    fig = _figure(*IM2COL_SIZE)
    grid = fig.add_gridspec(C, 2, width_ratios=[1, 3.2], wspace=0.15, left=0.05,
                            right=0.98, top=0.88, bottom=0.12)
    vmin, vmax = float(walk.cols.min()), float(walk.cols.max())
    for c in range(C):
        ax = fig.add_subplot(grid[c, 0])
        img = walk.x_padded[n, c]                          # (H+2*PH, W+2*PW)
        ax.imshow(img, cmap="viridis", vmin=vmin, vmax=vmax)
        _annotate(ax, img)
        ax.add_patch(Rectangle((PW - 0.5, PH - 0.5), W, H, fill=False, ls="--",
                               ec="white", lw=1.2))
        ax.add_patch(Rectangle((ow * SW - 0.5, oh * SH - 0.5), KW, KH, fill=False,
                               ec="red", lw=2.5))
        ax.set_title(f"x_padded[n={n}, c={c}]  (dashed: the image)", fontsize=9)
        ax.set_xticks(range(img.shape[1]))
        ax.set_yticks(range(img.shape[0]))
        ax.tick_params(labelsize=7)
    ax = fig.add_subplot(grid[:, 1])
    ax.imshow(walk.cols, cmap="viridis", vmin=vmin, vmax=vmax, aspect="auto")
    _annotate(ax, walk.cols, fontsize=7 if walk.cols.shape[1] > 12 else 8)
    ax.add_patch(Rectangle((-0.5, row - 0.5), walk.cols.shape[1], 1, fill=False,
                           ec="red", lw=2.5))
    for c in range(1, C):                                  # channel boundaries
        ax.axvline(c * KH * KW - 0.5, color="white", lw=2)
    ax.set_xticks(range(len(walk.col_labels)))
    ax.set_xticklabels([_label(t) for t in walk.col_labels], rotation=90, fontsize=7)
    ax.set_yticks(range(len(walk.row_labels)))
    ax.set_yticklabels([_label(t) for t in walk.row_labels], fontsize=7)
    ax.set_xlabel("column (c, kh, kw)")
    ax.set_ylabel("row (n, oh, ow)")
    ax.set_title(f"cols = im2col(x): (N*OH*OW, C*KH*KW) = {walk.cols.shape}; the red "
                 f"window is row (n, oh, ow) = ({n}, {oh}, {ow})", fontsize=10)
    fig.suptitle(f"im2col: each {KH}x{KW} window of the padded input becomes one row "
                 f"(stride {SH}, padding {PH})", fontsize=13)
    return _save(fig, path)


OVERLAP_PANEL = (5.0, 5.5)       # inches per panel


def plot_overlap(walks, path) -> str:
    """``walks``: list of (title, ConvWalk). Each panel: windows covering each pixel
    of the padded grid, the count col2im adds up there; the image outlined."""
    from matplotlib.patches import Rectangle
    fig = _figure(OVERLAP_PANEL[0] * len(walks), OVERLAP_PANEL[1])
    top = max(float(w.overlap.max()) for _, w in walks)
    for i, (title, w) in enumerate(walks):
        s = w.sizes
        ax = fig.add_subplot(1, len(walks), i + 1)
        ax.imshow(w.overlap, cmap="magma", vmin=0, vmax=top)
        _annotate(ax, w.overlap, fmt=lambda v: str(int(v)), fontsize=10, mid=top / 2)
        ax.add_patch(Rectangle((s["PW"] - 0.5, s["PH"] - 0.5), s["W"], s["H"],
                               fill=False, ls="--", ec="cyan", lw=2))
        ax.set_xticks(range(w.overlap.shape[1]))
        ax.set_yticks(range(w.overlap.shape[0]))
        ax.set_title(f"{title}\n{s['KH']}x{s['KW']} kernel, stride {s['SH']}, padding "
                     f"{s['PH']}: {s['OH']}x{s['OW']} windows", fontsize=10)
    fig.suptitle("col2im: windows covering each pixel (gradients added there); dashed: "
                 "the image", fontsize=11)
    fig.subplots_adjust(left=0.06, right=0.98, top=0.80, bottom=0.06, wspace=0.25)
    return _save(fig, path)


# -- filters and feature maps -------------------------------------------------------------

def filter_grid_shape(n: int) -> tuple:
    """(rows, columns) of a near-square grid for n tiles, wider than tall."""
    cols = math.ceil(math.sqrt(n * 1.5))
    return math.ceil(n / cols), cols


FILTER_TILE = 0.5                # inches per filter


def _filter_image(f):
    """One filter (C, KH, KW) as an image: grey for C == 1, RGB for C == 3, else the
    mean over channels. Scaled to [0, 1] around 0 so that 0.5 grey means weight 0."""
    if f.shape[0] == 3:
        img = f.transpose(1, 2, 0)                              # (KH, KW, 3)
    else:
        img = f.mean(axis=0)                                    # (KH, KW)
    m = float(np.abs(img).max()) or 1.0
    return (img / m + 1) / 2


def filters_figsize(n_filters: int, n_sets: int) -> tuple:
    """(width, height) in inches of :func:`plot_filters`' figure."""
    rows, cols = filter_grid_shape(n_filters)
    width = max(FILTER_TILE * cols * n_sets + 0.4 * n_sets, 7.0)
    return width, FILTER_TILE * rows + 1.2


def mosaic(tiles, rows: int, cols: int, gap: int = 1, fill: float = 1.0):
    """Tiles (K, h, w) or (K, h, w, 3) laid out row by row on a (rows, cols) grid, with
    ``gap`` pixels of ``fill`` between them: one image, drawn by one imshow."""
    tiles = np.asarray(tiles)
    K, h, w = tiles.shape[:3]
    out = np.full((rows * (h + gap) - gap, cols * (w + gap) - gap) + tiles.shape[3:], fill,
                  dtype=np.float32)
    for k in range(K):
        r, c = divmod(k, cols)
        out[r * (h + gap):r * (h + gap) + h, c * (w + gap):c * (w + gap) + w] = tiles[k]
    return out


def plot_filters(sets, path) -> str:
    """``sets``: list of (title, weight (OC, C, KH, KW)). One grid of OC filters per set,
    side by side (before and after training)."""
    OC, C, KH, KW = sets[0][1].shape
    rows, cols = filter_grid_shape(OC)
    width, height = filters_figsize(OC, len(sets))
    fig = _figure(width, height)
    grid_w = FILTER_TILE * cols / width                 # one grid's width, figure units
    gap = (1 - grid_w * len(sets)) / (len(sets) + 1)
    for s, (title, weight) in enumerate(sets):
        left = gap + s * (grid_w + gap)
        ax = fig.add_axes([left, 0.1 / height, grid_w, 1 - 1.1 / height])
        ax.imshow(mosaic([_filter_image(f) for f in weight], rows, cols), cmap="gray",
                  vmin=0, vmax=1, interpolation="nearest")
        ax.set_axis_off()
        ax.set_title(title, fontsize=10)
    note = "" if C in (1, 3) else f" (mean of the {C} input channels)"
    fig.text(0.5, 1 - 0.3 / height, f"First layer: {OC} filters of {C}x{KH}x{KW}{note}\n"
             "grey = 0, light = positive, dark = negative (each filter scaled alone)",
             ha="center", va="center", fontsize=10)
    return _save(fig, path)


MAP_TILE = 1.1                   # inches per feature map


def feature_maps_figsize(n_layers: int, k: int, n_sets: int) -> tuple:
    """(width, height) in inches of :func:`plot_feature_maps`' figure."""
    return MAP_TILE * k * n_sets + 1.6, MAP_TILE * (n_layers + 1) + 1.0


def plot_feature_maps(image, sets, path, channels) -> str:
    """One image's feature maps.

    ``image``: (H, W) input; ``sets``: list of (title, [(label, maps (C, H, W)), ...]),
    the same layers in each set; ``channels``: per layer, the channel indices to show
    (the same in every set, so that before and after compare the same channels).
    Rows are layers; each set gets a block of columns. A channel has one colour
    scale in all sets, so that before and after can be compared by eye.
    """
    from matplotlib import colormaps
    layers = len(sets[0][1])
    k = max(len(ch) for ch in channels)
    width, height = feature_maps_figsize(layers, k, len(sets))
    fig = _figure(width, height)
    row_h = MAP_TILE / height                           # one layer's row, figure units
    left0 = 1.6 / width
    block_w = MAP_TILE * k / width
    fig.text(0.5, 1 - 0.3 / height, "Feature maps after each conv and pool layer: the "
             "strongest channels for this image (one colour scale per channel)",
             ha="center", va="center", fontsize=11)
    top = 1 - 0.8 / height
    ax = fig.add_axes([0.1 / width, top - row_h * 0.9, 1.3 / width, row_h * 0.8])
    ax.imshow(image, cmap="gray")
    ax.set_title("input", fontsize=8)
    ax.set_axis_off()
    for s, (title, _) in enumerate(sets):
        fig.text(left0 + (s + 0.5) * block_w, top - row_h / 2, title, ha="center",
                 va="center", fontsize=11)
    cmap = colormaps["viridis"]
    for i in range(layers):
        label, m = sets[0][1][i]
        y0 = top - (i + 2) * row_h
        fig.text(0.1 / width, y0 + row_h * 0.45, f"{label}\n{m.shape[0]}x{m.shape[1]}x"
                 f"{m.shape[2]}", ha="left", va="center", fontsize=8)
        scaled = [[] for _ in sets]
        for ch in channels[i]:
            lo = min(float(maps[i][1][ch].min()) for _, maps in sets)
            hi = max(float(maps[i][1][ch].max()) for _, maps in sets)
            for s, (_, maps) in enumerate(sets):
                tile = (maps[i][1][ch] - lo) / ((hi - lo) or 1.0)
                scaled[s].append(cmap(tile)[..., :3])               # (h, w, 3) colours
        for s in range(len(sets)):
            n = len(channels[i])
            ax = fig.add_axes([left0 + s * block_w, y0 + 0.02 * row_h,
                               block_w * n / k, row_h * 0.78])
            tiles = scaled[s]
            gap = max(1, tiles[0].shape[0] // 10)
            ax.imshow(mosaic(tiles, 1, n, gap=gap), interpolation="nearest")
            ax.set_axis_off()
            tw = tiles[0].shape[1] + gap
            for j, ch in enumerate(channels[i]):
                ax.text(j * tw + tiles[0].shape[1] / 2 - 0.5, -0.5, f"ch {ch}", ha="center",
                        va="bottom", fontsize=7)
    return _save(fig, path)


# -- training curves and the confusion matrix ----------------------------------------------

D2L_CURVES_SIZE = (5.0, 3.5)      # d2l's Animator figure, in inches
CURVES_SIZE = (18.0, 4.5)


def _plot_d2l_curves(records, path, title: str) -> str:
    """d2l's picture of one run: train loss, train acc, test acc against epoch."""
    from matplotlib.ticker import MaxNLocator
    fig = _figure(*D2L_CURVES_SIZE)
    ax = fig.add_subplot(1, 1, 1)
    epochs = [r["epoch"] for r in records]
    # markers: after one epoch each curve is a single point, which a line alone hides
    for key, style, marker, color, label in (
            ("loss", "-", "o", "tab:blue", "train loss"),
            ("train_acc", "--", "s", "tab:purple", "train acc"),
            ("test_acc", "-.", "^", "tab:green", "test acc")):
        ax.plot(epochs, [r[key] for r in records], style, marker=marker, color=color,
                label=label)
    ax.set_xlabel("epoch")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    if epochs:
        ax.set_xlim(min(1, min(epochs)), max(max(epochs), 2))
    ax.grid(True, alpha=0.3)
    ax.legend(loc="best")
    if title:
        ax.set_title(title)
    fig.subplots_adjust(left=0.1, right=0.97, bottom=0.15, top=0.88 if title else 0.95)
    return _save(fig, path)


def plot_curves(runs, path, title: str = "") -> str:
    """Loss and accuracy per epoch of one training run, or of several side by side.

    ``runs``: one run's epoch records as metrics.json holds them (dicts with
    ``epoch``, ``loss``, ``train_acc``, ``test_acc`` and ``seconds``), or several
    runs as ``(label, records)`` pairs. One run is drawn as d2l's Animator draws
    ``train_ch6``: train loss, train acc and test acc on one axes against the epoch
    (a training run's curves.png). Several runs get four panels: the training loss,
    train and test accuracy per epoch, and test accuracy against the run's elapsed
    time (a run whose records lack ``seconds`` is left out of that panel).
    """
    from matplotlib.ticker import MaxNLocator
    one_run = bool(runs) and isinstance(runs[0], dict)
    if one_run:
        return _plot_d2l_curves(runs, path, title)
    fig = _figure(*CURVES_SIZE)
    panels = [("loss", "training loss"), ("train_acc", "train accuracy"),
              ("test_acc", "test accuracy")]
    for i, (key, name) in enumerate(panels):
        ax = fig.add_subplot(1, 4, i + 1)
        for label, records in runs:
            pts = [(r["epoch"], r[key]) for r in records if r.get(key) is not None]
            if pts:
                ax.plot(*zip(*pts), marker="o", label=label)
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_title(name)
        ax.grid(alpha=0.3)
        if not one_run:
            ax.legend(fontsize=9)
    ax = fig.add_subplot(1, 4, 4)
    for label, records in runs:
        if records and all("seconds" in r for r in records):
            elapsed = np.cumsum([r["seconds"] for r in records])
            ax.plot(elapsed, [r["test_acc"] for r in records], marker="o", label=label)
    ax.set_xscale("log")
    ax.set_xlabel("seconds since the run started (log scale)")
    ax.set_title("test accuracy against time")
    ax.grid(alpha=0.3)
    if not one_run:
        ax.legend(fontsize=9)
    if title:
        fig.suptitle(title, fontsize=12)
    fig.subplots_adjust(left=0.04, right=0.99, bottom=0.14, top=0.82 if title else 0.9,
                        wspace=0.22)
    return _save(fig, path)


def plot_confusion(matrix, class_names, path, title: str = "") -> str:
    """A confusion matrix (rows: true class, columns: predicted), counts in the cells."""
    matrix = np.asarray(matrix)
    K = len(class_names)
    if matrix.shape != (K, K):
        raise ValueError(f"plot_confusion: matrix has shape {matrix.shape}, expected ({K}, {K}) "
                         "for the class names given")
    fig = _figure(7.0, 6.0)
    ax = fig.add_subplot(1, 1, 1)
    image = ax.imshow(matrix, cmap="Blues")
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
    ax.set_xticks(range(K), labels=class_names, rotation=45, ha="right")
    ax.set_yticks(range(K), labels=class_names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    high = matrix.max() / 2 if matrix.size else 0
    for i in range(K):
        for j in range(K):
            ax.text(j, i, str(int(matrix[i, j])), ha="center", va="center", fontsize=7,
                    color="white" if matrix[i, j] > high else "black")
    if title:
        ax.set_title(title)
    return _save(fig, path, tight=True)
