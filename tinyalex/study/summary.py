"""``summary(net, input_shape)``: run one input through a Sequential, layer by layer,
and print a table of what each layer costs.

Per layer: output shape, parameters, multiply-accumulates (MACs) and the memory of
the layer's output (its activation); a block (a Sequential, GoogLeNet's Inception,
ResNet's Residual, DenseNet's DenseBlock) gets its totals on its own row and, under
it, a row for every layer it calls, branch by branch (``rows[i]["inner"]``); with ``time=True`` also the measured time of
its forward and backward pass on the chosen backend. Totals at the bottom::

    import tinyalex
    tinyalex.summary(tinyalex.models.alexnet(), (1, 1, 224, 224))
    tinyalex.summary(tinyalex.models.lenet(), (256, 1, 28, 28), time=True)

Every figure is measured on the network itself: shapes come from running a zero
input through it, parameters from ``layer.parameters()``, MACs from the layer's
sizes (``layer_macs``), times from a clock around each layer's own call.
"""

from __future__ import annotations

import time as _time

import numpy as np

import tinyalex.kernels as kernels
from tinyalex.kernels import cpu_process

from .. import backend as B
from .. import nn
from .. import random as R
from ..checks import check_bytes, check_int
from ..tensor import Tensor, no_grad


def layer_macs(layer, in_shape, out_shape) -> int:
    """Multiply-accumulates of one layer for the whole batch of ``in_shape``.

    Conv2d: N*OC*OH*OW*(C/groups)*KH*KW; Linear: N*in*out; other layers: 0 (they do no
    multiply-accumulate work worth counting).
    """
    if isinstance(layer, nn.Conv2d):
        N, OC, OH, OW = out_shape
        C = in_shape[1] // getattr(layer, "groups", 1)     # each output sees its group
        KH, KW = layer.kernel_size
        return N * OC * OH * OW * C * KH * KW
    if isinstance(layer, nn.Linear):
        return int(np.prod(in_shape[:-1])) * layer.in_features * layer.out_features
    return 0


def _check_net_and_shape(net, input_shape):
    if not hasattr(net, "__iter__"):
        raise TypeError(f"summary needs a Sequential (iterable of layers), got "
                        f"{type(net).__name__}")
    if not isinstance(input_shape, (tuple, list)) or not input_shape:
        raise TypeError(f"summary: input_shape must be a tuple of ints such as "
                        f"(1, 1, 224, 224), got {input_shape!r}")
    shape = tuple(check_int(s, "input_shape", "summary", 1) for s in input_shape)
    return shape


def layer_rows(net, input_shape, backend: str = "numpy", dtype=np.float32):
    """One dict per layer of ``net``: index, name, output shape, parameters, MACs,
    ``activation_bytes`` (the memory of the layer's output for the whole batch) and
    ``algorithm``: for convolution and pooling layers, the name of the algorithm that
    computes the layer on ``backend`` in the current kernel mode (the ops' choosers,
    e.g. ``tinyalex.ops.conv.conv2d_algorithm``), else "". Where a Sequential runs
    layers as one loop (``fused_runs``), the first layer's row names that loop and the
    others say "fused into layer i"."""
    shape = _check_net_and_shape(net, input_shape)
    check_bytes("summary", "the input", shape, np.dtype(dtype).itemsize,
                "use a smaller batch")
    x = Tensor(B.xp_of(backend).zeros(shape, dtype=dtype))
    rows = []
    runs = net.fused_runs(backend) if hasattr(net, "fused_runs") and net.fuse else {}
    fused_into = {j: i for i, (_, k, _) in runs.items() for j in range(i + 1, i + k)}
    layers, one_loop = list(net), set()     # one_loop: first layers of a fused run
    was_training = net.training
    net.eval()
    try:
        with no_grad():
            for i, layer in enumerate(net):
                in_shape = tuple(x.shape)
                inner, undo = _record_leaves(layer, dtype, backend)
                try:
                    x = layer(x)
                except (ValueError, TypeError) as exc:
                    raise ValueError(f"summary: layer {i} ({type(layer).__name__}) cannot "
                                     f"take input of shape {in_shape} (from input_shape "
                                     f"{shape}): {exc}") from None
                finally:
                    undo()
                algorithm = layer.algorithm(in_shape, dtype, backend) \
                    if hasattr(layer, "algorithm") else ""
                if i in runs:                   # this layer and the next, one loop
                    try:
                        fused = layer.algorithm_fused(in_shape, *layers[i + 1:i + runs[i][1]],
                                                      dtype, backend)
                    except (ValueError, TypeError):  # the next layers say why, in their rows
                        fused = None
                    if fused is not None:
                        algorithm = fused
                        one_loop.add(i)
                elif fused_into.get(i) in one_loop:
                    algorithm = f"fused into layer {fused_into[i]}"
                macs = layer_macs(layer, in_shape, tuple(x.shape)) if not inner \
                    else sum(r["macs"] for r in inner)
                rows.append({"index": i, "name": type(layer).__name__,
                             "output_shape": tuple(x.shape), "algorithm": algorithm,
                             "parameters": sum(p.numel() for p in layer.parameters()),
                             "macs": macs, "activation_bytes": int(x.array.nbytes),
                             "inner": inner})
    finally:
        net.train(was_training)
    return rows


def _record_leaves(layer, dtype, backend):
    """Inside a block (a layer with sub-modules: a Sequential, GoogLeNet's Inception,
    ResNet's Residual, DenseNet's DenseBlock), a row for every call of a leaf module
    while the block runs, in call order, branches included: ``(rows, undo)``, where
    ``undo()`` takes the recording off again. Each leaf's ``forward`` is wrapped on the
    instance for the one call of the block (a lazy layer that turns into its real
    class inside its forward is followed into it)."""
    leaves = [(path, m) for path, m in layer.named_modules()
              if path and not any(True for _ in m.children())]
    rows = []

    def wrap(path, m):
        def forward(*args, **kwargs):
            if m.__dict__.get("_summary_busy"):          # a lazy layer, now the real one
                return type(m).forward(m, *args, **kwargs)
            in_shape = tuple(args[0].shape)
            object.__setattr__(m, "_summary_busy", True)
            try:
                y = type(m).forward(m, *args, **kwargs)
            finally:
                object.__setattr__(m, "_summary_busy", False)
            out_shape = tuple(y.shape)
            rows.append({"path": path, "name": type(m).__name__, "output_shape": out_shape,
                         "parameters": sum(p.numel() for p in m.parameters()),
                         "macs": layer_macs(m, in_shape, out_shape),
                         "algorithm": m.algorithm(in_shape, dtype, backend)
                         if hasattr(m, "algorithm") else ""})
            return y
        return forward

    for path, m in leaves:
        object.__setattr__(m, "forward", wrap(path, m))

    def undo():
        for _, m in leaves:
            m.__dict__.pop("forward", None)
            m.__dict__.pop("_summary_busy", None)
    return rows, undo


def time_layers(net, input_shape, backend: str = "numpy", repeats: int = 3,
                warmup: int = 1, dtype=np.float32):
    """Median forward and backward time of each layer, in milliseconds.

    Each layer is timed alone, in training mode (dropout active, as in a training
    step), on the input it receives in the network. Its backward pass gets a random
    upstream gradient of its output's shape. As in training, a layer's input needs a
    gradient only when some layer before it has parameters: the first convolution
    (whose input is the data) skips its input gradient. Returns ``[(forward_ms, backward_ms), ...]``; ``backward_ms``
    is None for a layer with nothing to differentiate. The network's parameter
    gradients and tinyalex's random stream are restored afterwards.
    """
    if repeats < 1 or warmup < 0:
        raise ValueError(f"time_layers: repeats must be >= 1 and warmup >= 0, got "
                         f"repeats={repeats}, warmup={warmup}")
    shape = _check_net_and_shape(net, input_shape)
    xp = B.xp_of(backend)
    host = np.random.default_rng(0)
    x = B.to_backend(host.standard_normal(shape).astype(dtype), backend)

    saved_grads = [(p, p.grad) for p in net.parameters()]
    saved_rng = R.get_rng_state()
    was_training = net.training
    net.train()
    times = []
    input_needs_grad = False       # the data needs no gradient
    try:
        for layer in net:
            fwd, bwd = [], []
            gy = None
            for r in range(warmup + repeats):
                t_in = Tensor(x, requires_grad=input_needs_grad)
                B.synchronize(backend)
                t0 = _time.perf_counter()
                y = layer(t_in)
                B.synchronize(backend)
                t1 = _time.perf_counter()
                if gy is None:
                    gy = xp.asarray(host.standard_normal(y.shape).astype(y.dtype))
                if y.requires_grad:
                    t2 = _time.perf_counter()
                    y.backward(gy)
                    B.synchronize(backend)
                    t3 = _time.perf_counter()
                else:
                    t2 = t3 = None
                if r >= warmup:
                    fwd.append((t1 - t0) * 1e3)
                    if t2 is not None:
                        bwd.append((t3 - t2) * 1e3)
                for p in layer.parameters():
                    p.grad = None
            times.append((float(np.median(fwd)), float(np.median(bwd)) if bwd else None))
            x = y.array            # the next layer's input: this layer's (training) output
            input_needs_grad = input_needs_grad or any(p.requires_grad
                                                       for p in layer.parameters())
    finally:
        net.train(was_training)
        for p, g in saved_grads:
            p.grad = g
        R.set_rng_state(saved_rng)
    return times


def _bytes(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024


def _ms(v) -> str:
    return "-" if v is None else f"{v:.3f}"


def mode_description() -> str:
    """The kernel switches in words, e.g. ``fast kernels, TINYALEX_CONV=auto``."""
    return f"{kernels.get_mode()} kernels, TINYALEX_CONV={kernels.get_conv_mode()}"


def format_table(rows, backend: str | None = None) -> str:
    """The rows of :func:`layer_rows` (with times if present) as a text table."""
    timed = "forward_ms" in rows[0] if rows else False
    head = (f"{'#':>3}  {'layer':<10} {'output shape':<20} {'parameters':>12} "
            f"{'MACs':>15} {'activation':>11}")
    if timed:
        head += f" {'forward ms':>11} {'backward ms':>12}"
    head += "  algorithm"
    lines = [head, "-" * len(head)]
    for r in rows:
        line = (f"{r['index']:>3}  {r['name']:<10} {str(r['output_shape']):<20} "
                f"{r['parameters']:>12,} {r['macs']:>15,} {_bytes(r['activation_bytes']):>11}")
        if timed:
            line += f" {_ms(r['forward_ms']):>11} {_ms(r['backward_ms']):>12}"
        if r.get("algorithm"):
            line += f"  {r['algorithm']}"
        lines.append(line)
        for inner in r.get("inner", ()):       # a block's layers, branches included
            line = (f"{'':>3}    {inner['path'] + ' ' + inner['name']:<18} "
                    f"{str(inner['output_shape']):<20} {inner['parameters']:>10,} "
                    f"{inner['macs']:>15,}")
            if inner["algorithm"]:
                line += f"  {' ' * 11}{'' if not timed else ' ' * 25}  {inner['algorithm']}"
            lines.append(line)
    lines.append("-" * len(head))
    total = (f"{'':>3}  {'total':<10} {'':<20} {sum(r['parameters'] for r in rows):>12,} "
             f"{sum(r['macs'] for r in rows):>15,} "
             f"{_bytes(sum(r['activation_bytes'] for r in rows)):>11}")
    if timed:
        total += (f" {_ms(sum(r['forward_ms'] for r in rows)):>11} "
                  f"{_ms(sum(r['backward_ms'] or 0.0 for r in rows)):>12}")
    lines.append(total)
    if timed:
        lines.append(f"times: median per layer on backend {backend!r}, training mode; "
                     "activation: memory of each layer's output")
    else:
        lines.append("activation: memory of each layer's output for the whole batch")
    lines.append(f"algorithm: what computes each convolution and pooling layer on "
                 f"{backend or 'numpy'} ({mode_description()}; docs/convolution.md)")
    return "\n".join(lines)


def summary(net, input_shape, backend: str = "numpy", time: bool = False,
            repeats: int = 3, print_fn=print):
    """Print the per-layer table (and return its rows); on numpy a last line says the
    process's CPU policy (``tinyalex.cpu_policy``: malloc, BLAS and kernel threads).

    ``time=True`` adds ``forward_ms`` and ``backward_ms`` to each row, measured by
    :func:`time_layers` on ``backend`` (median of ``repeats`` runs after one warm-up).
    """
    rows = layer_rows(net, input_shape, backend)
    if time:
        for r, (f, b) in zip(rows, time_layers(net, input_shape, backend, repeats)):
            r["forward_ms"], r["backward_ms"] = f, b
    if print_fn is not None:
        print_fn(format_table(rows, backend))
        if (backend or "numpy") == "numpy":
            print_fn(cpu_process.describe())
    return rows
