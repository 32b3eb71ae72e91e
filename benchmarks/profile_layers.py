"""Where a training step's time goes: forward and backward time of every layer, and
inside each convolution the time of im2col, the GEMMs and col2im (or, for the
Winograd layers, the GEMMs and the tile transforms).

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python3 benchmarks/profile_layers.py
    python3 benchmarks/profile_layers.py --model lenet --batch 256
    TINYALEX_KERNELS=reference python3 benchmarks/profile_layers.py --batch 8

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


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", choices=["alexnet", "lenet"], default="alexnet")
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
    rows, total = profile(args.model, args.batch, args.steps, args.backend)
    info["load_average_at_end"] = os.getloadavg()
    info["numpy_blas"] = common.blas_description()     # as tinyalex left it (cpu_process.py)

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
