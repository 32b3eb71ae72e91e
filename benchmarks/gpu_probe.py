"""The Python pieces of ``benchmarks/gpu_check.sh`` (a GPU machine lent with no network,
two commands of at most 7.5 minutes); each writes JSON into ``--out`` and prints what
it found. ``steps`` is not in gpu_check.sh's commands (their time goes to the ratios
and the recipe); run it by hand where there is time.

    python3 benchmarks/gpu_probe.py versions --out DIR    # driver, CUDA, NVRTC, CuPy, GPU
    python3 benchmarks/gpu_probe.py kernels --out DIR     # GPU ms per kernel (CUDA events)
                                                          # at AlexNet batch-128 shapes, and
                                                          # host microseconds per launch
    python3 benchmarks/gpu_probe.py steps --out DIR       # timed training steps, eager and
                                                          # graphed (cuda_graph.TrainStep)
    python3 benchmarks/gpu_probe.py table --out DIR       # everything above, bench_train's
                                                          # JSON and the recipe's metrics
                                                          # (recipe.json) as one table

``--emulate`` runs ``kernels`` and ``steps`` without a GPU, to check this script: the
kernels through the g++ emulation of the CUDA sources at batch 1 (``perf_counter``
instead of CUDA events: figures that mean nothing), the steps on the numpy backend.
GPU time per kernel is the median of ``--repeats`` launches each between two CUDA
events; host time per launch is the wall time of queueing ``--launches`` launches
(no wait) divided by their number.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

# d2l's AlexNet layers at 224x224: (name, (C, H, W), (OC, C, KH, KW), stride, padding)
ALEXNET_CONVS = [("conv1", (1, 224, 224), (96, 1, 11, 11), 4, 1),
                 ("conv2", (96, 26, 26), (256, 96, 5, 5), 1, 2),
                 ("conv3", (256, 12, 12), (384, 256, 3, 3), 1, 1),
                 ("conv4", (384, 12, 12), (384, 384, 3, 3), 1, 1),
                 ("conv5", (384, 12, 12), (256, 384, 3, 3), 1, 1)]
ALEXNET_POOLS = [("pool1", (96, 54, 54)), ("pool2", (256, 26, 26)), ("pool3", (256, 12, 12))]
ALEXNET_FCS = [("fc1", 6400, 4096), ("fc2", 4096, 4096), ("fc3", 4096, 10)]


def write(out, name, obj):
    os.makedirs(out, exist_ok=True)
    path = os.path.join(out, name)
    with open(path, "w") as f:
        json.dump(obj, f, indent=1)
    return path


# -- versions ---------------------------------------------------------------------------------

def versions(args):
    from tinyalex import backend as B
    info = {"python": sys.version.split()[0], "numpy": np.__version__}
    if not B.cupy_available():
        info["cupy"] = f"not usable: {B.cupy_unavailable_reason()}"
    else:
        cp = B.cupy_module()
        rt = cp.cuda.runtime
        props = rt.getDeviceProperties(cp.cuda.Device().id)
        name = props["name"]
        info.update(cupy=cp.__version__, driver=rt.driverGetVersion(),
                    cuda_runtime=rt.runtimeGetVersion(),
                    nvrtc=".".join(map(str, cp.cuda.nvrtc.getVersion())),
                    gpu=name.decode() if isinstance(name, bytes) else name,
                    compute_capability=cp.cuda.Device().compute_capability,
                    memory_gib=round(props["totalGlobalMem"] / 2**30, 1))
        from tinyalex.kernels import gemm_gpu
        info["gemm"] = gemm_gpu.for_cupy().name
    try:
        import torch
        info["torch"] = torch.__version__
        info["torch_cuda"] = torch.version.cuda if torch.cuda.is_available() else None
    except ImportError:
        info["torch"] = None
    for k, v in info.items():
        print(f"{k:20} {v}")
    write(args.out, "versions.json", info)


# -- per-kernel GPU time and host time per launch ---------------------------------------------

class CudaTimer:
    def __init__(self, cp):
        self.cp = cp
        self.start, self.end = cp.cuda.Event(), cp.cuda.Event()

    def ms(self, fn, repeats):
        times = []
        for _ in range(repeats):
            self.start.record()
            fn()
            self.end.record()
            self.end.synchronize()
            times.append(self.cp.cuda.get_elapsed_time(self.start, self.end))
        return statistics.median(times)

    def sync(self):
        self.cp.cuda.get_current_stream().synchronize()


class WallTimer:                      # --emulate: the CPU has no events
    def ms(self, fn, repeats):
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            fn()
            times.append((time.perf_counter() - t0) * 1e3)
        return statistics.median(times)

    def sync(self):
        pass


def algorithms(emulate):
    """(xp, conv, max_pool, elementwise dict, timer)."""
    from tinyalex.kernels import conv_im2col_gpu, elementwise_gpu as ew, pool_gpu
    if emulate:
        from tinyalex.kernels import cuda_emulation, gemm_gpu
        emulated = cuda_emulation.emulated_module(tempfile.mkdtemp())
        modules = cuda_emulation.EmulatedModules(emulated)
        gemm = gemm_gpu.NumpyGemm()
        conv = conv_im2col_gpu.Im2colGemmGPU(np, modules, gemm)
        ops = {"relu": ew.ReluGPU(np, modules), "bias": ew.BiasActivationGPU(np, modules),
               "dropout": ew.DropoutGPU(np, modules), "sgd": ew.SgdUpdateGPU(np, modules),
               "loss": ew.CrossEntropyGPU(np, modules), "modules": modules}
        return np, conv, pool_gpu.MaxPoolGPU(np, modules), ops, WallTimer()
    from tinyalex import backend as B
    from tinyalex.kernels import cuda_launch
    cp = B.cupy_module()
    ops = {"relu": ew.for_cupy(ew.ReluGPU), "bias": ew.for_cupy(ew.BiasActivationGPU),
           "dropout": ew.for_cupy(ew.DropoutGPU), "sgd": ew.for_cupy(ew.SgdUpdateGPU),
           "loss": ew.for_cupy(ew.CrossEntropyGPU), "modules": cuda_launch.for_cupy(cp)}
    return cp, conv_im2col_gpu.for_cupy(), pool_gpu.for_cupy(pool_gpu.MaxPoolGPU), ops, \
        CudaTimer(cp)


def kernels(args):
    from tinyalex.kernels import conv_im2col_gpu, elementwise_gpu, precision
    from tinyalex.kernels.geometry import conv_geometry, pool_geometry
    xp, conv, max_pool, ops, timer = algorithms(args.emulate)
    N, R, f32 = args.batch, args.repeats, np.dtype(np.float32)
    rng = np.random.default_rng(0)

    def dev(shape, dtype=np.float32):
        return xp.asarray(rng.standard_normal(shape).astype(dtype))

    rows = []

    def timed(layer, op, fn, elements):
        ms = timer.ms(fn, R)
        rows.append({"layer": layer, "op": op, "gpu_ms": ms, "elements": int(elements)})
        print(f"{layer:6} {op:16} {ms:9.4f} ms", flush=True)

    tf32 = precision.tf32_enabled()
    params = 0
    for name, (C, H, W), wshape, s, p in ALEXNET_CONVS:
        g = conv_geometry((N, C, H, W), wshape, s, s, p, p)
        xk = dev((N, H, W, C))
        w_mat = dev((g.OC, g.K))
        bias = dev((g.OC,))
        params += g.OC * g.K + g.OC
        cols = conv._columns(xk, g, f32)
        out = xp.empty((N * g.P, g.OC), dtype=f32)
        gy = dev((N * g.P, g.OC))
        gw = xp.empty((g.OC, g.K), dtype=f32)
        gcols = xp.empty((N * g.P, g.K), dtype=f32)
        gx = xp.empty((N, H, W, C), dtype=f32)
        timed(name, "im2col", lambda: conv._columns(xk, g, f32), cols.size)
        timed(name, "GEMM forward", lambda: conv.gemm(cols, w_mat.T, out, tf32=tf32), out.size)
        timed(name, "bias+ReLU", lambda: conv._epilogue(out, bias, "relu", f32), out.size)
        y = ops["relu"].forward(out)
        timed(name, "ReLU backward", lambda: ops["relu"].backward(gy, y), out.size)
        timed(name, "GEMM gW", lambda: conv.gemm(gy.T, cols, gw, tf32=tf32), gw.size)
        if name != "conv1":                   # the data needs no gradient
            timed(name, "GEMM gcols", lambda: conv.gemm(gy, w_mat, gcols, tf32=tf32),
                  gcols.size)
            timed(name, "col2im", lambda: ops["modules"].launch(
                conv_im2col_gpu.col2im(g, f32),
                cols=gcols, gx=gx), gx.size)
        cols = gcols = None                  # free before the next layer
    for name, (C, H, W) in ALEXNET_POOLS:
        g = pool_geometry((N, C, H, W), 3, 3, 2, 2, 0, 0)
        x = dev((N, H, W, C)).transpose(0, 3, 1, 2)           # channels-last memory
        y, saved = max_pool.forward(x, g)
        gy = dev((N, g.OH, g.OW, C)).transpose(0, 3, 1, 2)   # as the next layer gives it
        timed(name, "max-pool forward", lambda: max_pool.forward(x, g), y.size)
        timed(name, "max-pool backward", lambda: max_pool.backward(gy, saved), x.size)
    for name, IN, OUT in ALEXNET_FCS:
        a, w, b = dev((N, IN)), dev((OUT, IN)), dev((OUT,))
        out = xp.empty((N, OUT), dtype=f32)
        params += IN * OUT + OUT
        timed(name, "GEMM forward", lambda: conv.gemm(a, w.T, out), out.size)
        timed(name, "bias+ReLU", lambda: ops["bias"](out, b, "relu"), out.size)
        if OUT != 10:
            stream = ops["dropout"].draw_seed()
            timed(name, "dropout", lambda: ops["dropout"].forward(out, 0.5, stream), out.size)
    logits, labels = dev((N, 10)), xp.asarray(rng.integers(0, 10, N))
    timed("loss", "forward", lambda: ops["loss"].forward(logits, labels), N * 10)
    gy0 = xp.ones((), dtype=f32)
    timed("loss", "backward", lambda: ops["loss"].backward(gy0, logits, labels), N * 10)
    flat, grad, buf = dev((params,)), dev((params,)), dev((params,))
    timed("SGD", "flat step", lambda: ops["sgd"].flat_step(flat, grad, buf, 0.01, 0.9, 5e-4,
                                                           False), params)

    # host microseconds to queue one launch (no wait)
    small = dev((1024,))
    host = {}

    def per_launch(label, fn, n):
        fn()
        timer.sync()
        t0 = time.perf_counter()
        for _ in range(n):
            fn()
        host[label] = (time.perf_counter() - t0) / n * 1e6
        timer.sync()
        print(f"host  {label:44} {host[label]:8.2f} us/launch", flush=True)

    n = args.launches
    per_launch("tinyalex kernel (plan + checks + RawKernel)", lambda: ops["relu"].forward(small), n)
    p_relu = elementwise_gpu.relu_forward(small.size, f32)
    k = ops["modules"].kernel(p_relu)
    out_small = xp.empty_like(small)
    raw_args = p_relu.args(x=small, y=out_small)
    per_launch("the bare RawKernel call", lambda: k((p_relu.grid,), (p_relu.block,), raw_args), n)
    per_launch("a CuPy elementwise op (x * 2)", lambda: small * 2, n)
    a64, b64, c64 = dev((64, 64)), dev((64, 64)), xp.empty((64, 64), dtype=f32)
    per_launch(f"a 64x64 GEMM ({type(conv.gemm).__name__})", lambda: conv.gemm(a64, b64, c64), n)
    result = {"batch": N, "repeats": R, "emulated": args.emulate, "tf32": tf32, "kernels": rows,
              "host_us_per_launch": host, "sgd_parameters": params}
    write(args.out, "kernels.json", result)


# -- timed training steps -------------------------------------------------------------------

def steps(args):
    import tinyalex
    from tinyalex import cuda_graph, nn
    backend = "numpy" if args.emulate else "cupy"
    cases = [c.split(":") for c in args.cases.split(",")]
    results = []
    for model, batch in cases:
        batch = int(batch)
        for graphs in (False, None):
            tinyalex.manual_seed(0)
            net = tinyalex.models.alexnet() if model == "alexnet" else tinyalex.models.lenet()
            net.apply(tinyalex.models.init_weights_xavier)
            net.to(backend)
            opt = tinyalex.optim.SGD(net.parameters(), lr=0.01,
                                     flat=nn.FlatParameters(net.parameters()))
            step = cuda_graph.TrainStep(net, opt, graphs=graphs)
            side = 224 if model == "alexnet" else 28
            rng = np.random.default_rng(1)
            X = tinyalex.tensor(rng.random((batch, 1, side, side), np.float32), backend=backend)
            y = tinyalex.tensor(rng.integers(0, 10, batch), backend=backend)
            t0 = time.perf_counter()
            step(X, y).read()                          # compiles and loads every kernel
            first = time.perf_counter() - t0
            for _ in range(args.warmup):
                step(X, y).read()
            times, losses = [], []
            for _ in range(args.steps):
                t0 = time.perf_counter()
                loss, _ = step(X, y).read()
                times.append(time.perf_counter() - t0)
                losses.append(loss)
            median = statistics.median(times)
            row = {"model": model, "batch": batch, "graph": step.graphs is not None,
                   "why_eager": step.why_eager, "modes": step.counts,
                   "first_step_s": first, "median_step_ms": median * 1e3,
                   "images_per_s": batch / median, "last_loss": losses[-1],
                   "graph_pool_mb": step.graph_memory_bytes() / 2**20}
            if backend == "cupy":
                from tinyalex import backend as B
                row["default_pool_mb"] = \
                    B.cupy_module().get_default_memory_pool().total_bytes() / 2**20
            results.append(row)
            print(f"{model:8} b{batch:<4} {'graph' if row['graph'] else 'eager':5} "
                  f"first step {first:7.2f} s, median {row['median_step_ms']:8.2f} ms, "
                  f"{row['images_per_s']:9.1f} img/s {step.why_eager}", flush=True)
            del step, opt, net
    write(args.out, "steps.json", {"backend": backend, "steps": args.steps, "results": results})


# -- the table last ---------------------------------------------------------------------------

def table(args):
    def load(name):
        try:
            with open(os.path.join(args.out, name)) as f:
                return json.load(f)
        except (OSError, ValueError):
            return None

    v = load("versions.json") or {}
    print(f"\n== {v.get('gpu', '?')} (cc {v.get('compute_capability', '?')}), driver "
          f"{v.get('driver', '?')}, CUDA {v.get('cuda_runtime', '?')}, NVRTC {v.get('nvrtc', '?')}"
          f", CuPy {v.get('cupy', '?')}, torch {v.get('torch', '?')}; GEMM: {v.get('gemm', '?')}")
    k = load("kernels.json")
    if k:
        total = sum(r["gpu_ms"] for r in k["kernels"])
        print(f"kernels at batch {k['batch']}{' (EMULATED: not GPU figures)' if k['emulated'] else ''}:"
              f" {len(k['kernels'])} timed, {total:.2f} ms in all; the five slowest:")
        for r in sorted(k["kernels"], key=lambda r: -r["gpu_ms"])[:5]:
            print(f"  {r['layer']:6} {r['op']:18} {r['gpu_ms']:8.3f} ms")
        for label, us in k["host_us_per_launch"].items():
            print(f"  host {label:44} {us:7.2f} us/launch")
    s = load("steps.json")
    if s:
        print(f"training steps ({s['backend']}, median of {s['steps']}):")
        for r in s["results"]:
            print(f"  {r['model']:8} b{r['batch']:<4} {'graph' if r['graph'] else 'eager':5} "
                  f"{r['median_step_ms']:8.2f} ms {r['images_per_s']:9.1f} img/s, first step "
                  f"{r['first_step_s']:.1f} s, graph pool {r['graph_pool_mb']:.0f} MB")
    b = load("train_cupy.json")
    if b:
        print("against PyTorch in the same process (bench_train.py):")
        for r in b["results"]:
            mem = r.get("memory", {})
            ours = mem.get("tinyalex", {}).get("device_peak_mb")
            theirs = mem.get("torch", {}).get("device_peak_mb")
            ratio = r.get("ratio")
            print(f"  {r['model']:8} b{r['batch']:<4} {r['precision']:5} "
                  f"{r['tinyalex_images_per_s']:9.1f} img/s vs "
                  f"{r.get('torch_images_per_s', float('nan')):9.1f}: "
                  f"{'-' if ratio is None else f'{ratio:.2f}x'}"
                  f"{'' if ours is None else f', memory {ours:.0f} MB vs {theirs} MB'}")


    r = load("recipe.json")
    if r:
        rec, done = r["recipe"], r["epochs"]
        last = done[-1] if done else {}
        seconds = sum(e.get("seconds", 0.0) for e in done)
        target = "" if rec["epochs"] < 10 or rec["resize"] != 224 else (
            ", target test acc >= 0.88 " + ("met" if last.get("test_acc", 0) >= 0.88
                                           else "NOT met"))
        print(f"d2l's {rec['model']} recipe on {r['backend']} ({r['device']}): "
              f"{len(done)}/{rec['epochs']} epochs ({r['status']}), {seconds:.0f} s"
              + (f", {seconds / len(done):.1f} s/epoch, loss {last['loss']:.3f}, train acc "
                 f"{last['train_acc']:.3f}, test acc {last['test_acc']:.3f}" if done else "")
              + target)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("what", choices=["versions", "kernels", "steps", "table"])
    p.add_argument("--out", default=os.path.join(HERE, "results", "gpu"))
    p.add_argument("--emulate", action="store_true",
                   help="no GPU: the emulation (kernels) or the numpy backend (steps)")
    p.add_argument("--batch", type=int, default=None, help="kernels: batch (128; 1 emulated)")
    p.add_argument("--repeats", type=int, default=None, help="kernels: timed launches (20)")
    p.add_argument("--launches", type=int, default=None, help="host us: launches (2000)")
    p.add_argument("--cases", default=None,
                   help="steps: model:batch,... (alexnet:128,lenet:256; emulated lenet:4)")
    p.add_argument("--steps", type=int, default=None, help="steps: timed steps (20)")
    p.add_argument("--warmup", type=int, default=2, help="steps: untimed after the first")
    args = p.parse_args(argv)
    emulate = args.emulate
    args.batch = args.batch or (1 if emulate else 128)
    args.repeats = args.repeats or (2 if emulate else 20)
    args.launches = args.launches or (50 if emulate else 2000)
    args.cases = args.cases or ("lenet:4" if emulate else "alexnet:128,lenet:256")
    args.steps = args.steps or (2 if emulate else 20)
    {"versions": versions, "kernels": kernels, "steps": steps, "table": table}[args.what](args)


if __name__ == "__main__":
    main()
