"""Where a training step's time goes: forward and backward time of every layer, and
inside each convolution the time of im2col, the GEMMs and col2im (or, for the
Winograd layers, the GEMMs and the tile transforms).

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python3 benchmarks/profile_layers.py
    python3 benchmarks/profile_layers.py --model lenet --batch 256
    TINYALEX_KERNELS=reference python3 benchmarks/profile_layers.py --batch 8
    OPENBLAS_NUM_THREADS=1 TINYALEX_CPU_THREADS=1 python3 benchmarks/profile_layers.py \
        --model resnet18 --cpu-time                  # by op: ResNet's layers are in blocks

``--by-op`` (the default for ResNet-18, whose top-level layers are whole stages) times
every op instead of every top-level layer: each autograd Function's forward and
backward, summed per (op, algorithm, input shape) over a step, so a residual block's
convolutions, batch norms, ReLUs and additions each get a row.

The layers run one by one exactly as ``net(x)`` runs them; each backward node is
timed as the graph walk calls it. Inside the fast CPU convolutions the compiled
loops and the GEMMs are timed as they are called (the module attributes the
algorithms look up: ``numba_im2col.im2col``/``im2col_t``/``col2im``,
``cpu_threads.gemm``, ``cpu_threads.run_ranges`` and ``WinogradCPU.tiles_to_pixels``
for Winograd's tile transforms); in reference mode, and on the GPU, a convolution is
timed as a whole. Times are medians over
``--steps`` steps after one warm-up step. Prints a table and writes JSON.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import common  # noqa: E402


now = time.perf_counter     # --cpu-time: time.process_time (robust on a loaded machine
                            # when BLAS and Numba run one thread each)


class Clock:
    """Accumulates seconds under (layer, part) keys for the current step."""

    def __init__(self):
        self.step = collections.defaultdict(float)
        self.steps = []
        self.layer = None

    def wrap(self, part, fn):
        def timed(*args, **kwargs):
            t0 = now()
            try:
                return fn(*args, **kwargs)
            finally:
                self.step[(self.layer, part)] += now() - t0
        return timed

    def end_step(self):
        self.steps.append(dict(self.step))
        self.step.clear()

    def median(self, key):
        return statistics.median(s.get(key, 0.0) for s in self.steps)


def profile(model, N, steps, backend="numpy"):
    import tinyalex
    import tinyalex.kernels as kernels
    from tinyalex import backend as B, nn

    clock = Clock()
    step = common.TinyalexStep(model, N, backend)
    net, loss_fn, opt = step.net, step.loss, step.opt
    # the layers as net(x) runs them: a run Sequential fuses (fused_runs) is one op
    runs, modules, layers, i = net.fused_runs(backend) if net.fuse else {}, list(net), [], 0
    while i < len(modules):
        if i in runs:
            fused, k, run = runs[i]
            layers.append((f"{i}-{i + k - 1} {fused}", run))
            i += k
        else:
            layers.append((f"{i} {type(modules[i]).__name__}", modules[i]))
            i += 1

    patched = []
    if kernels.get_mode() == "fast" and backend == "numpy":
        from tinyalex.kernels import conv_winograd_cpu, cpu_threads, numba_im2col
        for module, name, part in ((numba_im2col, "im2col", "im2col"),
                                   (numba_im2col, "im2col_t", "im2col"),
                                   (numba_im2col, "col2im", "col2im"),
                                   (cpu_threads, "gemm", "gemm"),
                                   (cpu_threads, "run_ranges", "transforms"),
                                   (conv_winograd_cpu.WinogradCPU, "tiles_to_pixels",
                                    "transforms")):
            original = getattr(module, name)
            patched.append((module, name, original))
            setattr(module, name, clock.wrap(part, original))

    def sync():
        B.synchronize(backend)

    def one_step():
        opt.zero_grad()
        x, nodes = step.x, []
        for name, layer in layers:
            clock.layer = name
            t0 = now()
            x = layer(x)
            sync()
            clock.step[(name, "forward")] += now() - t0
            node = x.creator
            if node is not None and node not in (n for n, _ in nodes):
                nodes.append((node, name))
        for node, name in nodes:                      # time each node's backward
            node.backward = clock_backward(node.backward, name)
        clock.layer = "loss"
        t0 = now()
        loss = loss_fn(x, step.y)
        clock.step[("loss", "forward")] += now() - t0
        t0 = now()
        loss.backward()
        sync()
        clock.step[("total", "backward")] += now() - t0
        t0 = now()
        opt.step()
        sync()
        clock.step[("SGD step", "forward")] += now() - t0

    def clock_backward(fn, name):
        def timed(gy):
            clock.layer = name
            t0 = now()
            out = fn(gy)
            sync()
            clock.step[(name, "backward")] += now() - t0
            return out
        return timed

    one_step()
    clock.steps.clear()
    clock.step.clear()
    for _ in range(steps):
        t0 = now()
        one_step()
        clock.step[("total", "step")] = now() - t0
        clock.end_step()
    for module, name, original in patched:
        setattr(module, name, original)

    rows = []
    for name, _ in layers + [("loss", None), ("SGD step", None)]:
        row = {"layer": name}
        for part in ("forward", "backward", "im2col", "gemm", "col2im", "transforms"):
            v = clock.median((name, part))
            if v:
                row[part] = v
        rows.append(row)
    total = {"step": clock.median(("total", "step")),
             "backward": clock.median(("total", "backward"))}
    del tinyalex, nn
    return rows, total


def profile_ops(model, N, steps, backend="numpy"):
    """Per-op times: every Function subclass's forward and backward wrapped, summed per
    (op, algorithm, input shape) over each step; medians over ``steps`` steps."""
    from tinyalex import backend as B
    from tinyalex.tensor import Function

    def subclasses(cls):
        for sub in cls.__subclasses__():
            yield sub
            yield from subclasses(sub)

    clock = Clock()

    def key(fn, arrays):
        shapes = tuple(tuple(a.shape) for a in arrays[:2] if hasattr(a, "shape"))
        return (type(fn).__name__, getattr(getattr(fn, "algorithm", None), "name", ""),
                shapes)

    patched = []
    for cls in set(subclasses(Function)):
        if "forward" in vars(cls):
            def forward(self, *arrays, _f=vars(cls)["forward"]):
                t0 = now()
                out = _f(self, *arrays)
                B.synchronize(backend)
                self._profile_key = key(self, arrays)       # the algorithm is chosen now
                clock.step[(self._profile_key, "forward")] += now() - t0
                return out
            patched.append((cls, "forward", vars(cls)["forward"]))
            cls.forward = forward
        if "backward" in vars(cls):
            def backward(self, gy, _b=vars(cls)["backward"]):
                t0 = now()
                out = _b(self, gy)
                B.synchronize(backend)
                k = getattr(self, "_profile_key", (type(self).__name__, "", ()))
                clock.step[(k, "backward")] += now() - t0
                return out
            patched.append((cls, "backward", vars(cls)["backward"]))
            cls.backward = backward
    try:
        step = common.TinyalexStep(model, N, backend)
        step()
        clock.step.clear()
        for _ in range(steps):
            t0 = now()
            step()
            clock.step[("total", "step")] = now() - t0
            clock.end_step()
    finally:
        for cls, name, original in patched:
            setattr(cls, name, original)
    keys = sorted({k for s in clock.steps for k, part in s if k != "total"},
                  key=lambda k: -sum(clock.median((k, p)) for p in ("forward", "backward")))
    rows = [{"op": k[0], "algorithm": k[1], "shapes": [list(s) for s in k[2]],
             "forward": clock.median((k, "forward")),
             "backward": clock.median((k, "backward"))} for k in keys]
    return rows, {"step": clock.median(("total", "step"))}


def print_ops(rows, total, batch):
    print(f"{'ms fwd':>8} {'ms bwd':>8}  op, algorithm, input (and weight) shapes")
    for r in rows:
        shapes = " ".join("x".join(map(str, s)) for s in r["shapes"])
        print(f"{r['forward'] * 1e3:8.1f} {r['backward'] * 1e3:8.1f}  {r['op']}"
              f"{', ' + r['algorithm'] if r['algorithm'] else ''}, {shapes}")
    ops = sum(r["forward"] + r["backward"] for r in rows)
    print(f"ops {ops * 1e3:.1f} ms of the step's {total['step'] * 1e3:.1f} ms (the rest: "
          f"loss, graph walk, SGD) = {batch / total['step']:.1f} images/s")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", choices=["alexnet", "lenet", "resnet18"], default="alexnet")
    p.add_argument("--by-op", action="store_true",
                   help="time every op (forward, backward) instead of every top-level "
                        "layer; always so for resnet18")
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--backend", choices=["numpy", "cupy"], default="numpy")
    p.add_argument("--cpu-time", action="store_true",
                   help="measure process CPU time instead of wall time (meaningful with "
                        "OPENBLAS_NUM_THREADS=1 NUMBA_NUM_THREADS=1 on a busy machine)")
    p.add_argument("--json", default=None, help="default benchmarks/results/profile_<model>"
                   "_<batch>_<backend>.json")
    args = p.parse_args(argv)
    global now
    if args.cpu_time:
        now = time.process_time
    import tinyalex.kernels as kernels
    info = common.machine(args.backend)
    info["kernels"] = kernels.get_mode()
    info["clock"] = "process CPU time" if args.cpu_time else "wall time"
    by_op = args.by_op or args.model == "resnet18"
    profiler = profile_ops if by_op else profile
    rows, total = profiler(args.model, args.batch, args.steps, args.backend)
    info["load_average_at_end"] = os.getloadavg()
    info["numpy_blas"] = common.blas_description()     # as tinyalex left it (cpu_process.py)
    if by_op:
        print(f"\n{args.model} batch {args.batch}, {kernels.get_mode()} kernels on "
              f"{args.backend}, by op ({info['clock']}); {info['numpy_blas']}; load "
              f"{info['load_average_at_start'][0]:.1f}")
        print_ops(rows, total, args.batch)
        path = args.json or os.path.join(common.HERE, "results", f"profile_{args.model}_"
                                         f"{args.batch}_{args.backend}_ops.json")
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        with open(path, "w") as f:
            json.dump({"machine": info, "ops": rows, "total": total}, f, indent=1)
        print(f"wrote {path}")
        return

    print(f"\n{args.model} batch {args.batch}, {kernels.get_mode()} kernels on {args.backend}; "
          f"{info['numpy_blas']}; load {info['load_average_at_start'][0]:.1f}")
    print(f"{'layer':28} {'fwd ms':>8} {'bwd ms':>8} | {'im2col':>8} {'gemm':>8} "
          f"{'col2im':>8} {'wino tf':>8}  (inside the conv, fwd+bwd)")
    ms = lambda r, k: f"{r[k] * 1e3:8.1f}" if k in r else f"{'':8}"   # noqa: E731
    for r in rows:
        print(f"{r['layer']:28} {ms(r, 'forward')} {ms(r, 'backward')} | {ms(r, 'im2col')} "
              f"{ms(r, 'gemm')} {ms(r, 'col2im')} {ms(r, 'transforms')}")
    fwd = sum(r.get("forward", 0) for r in rows)
    print(f"{'sum':28} {fwd * 1e3:8.1f} {total['backward'] * 1e3:8.1f}   step (median) "
          f"{total['step'] * 1e3:.1f} ms = {args.batch / total['step']:.1f} images/s")
    path = args.json or os.path.join(common.HERE, "results", f"profile_{args.model}_"
                                     f"{args.batch}_{args.backend}.json")
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w") as f:
        json.dump({"machine": info, "layers": rows, "total": total}, f, indent=1)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
