"""Training-step throughput of d2l's AlexNet (224x224) and LeNet (28x28), and of its
ResNet-18 (96x96, ``--cases resnet18:32``): tinyalex against PyTorch in the same
process, interleaved step by step.

    # CPU: AlexNet at batch 8, 32 and 128 (d2l's), LeNet at 256. NumPy's OpenBLAS is told by this
    # machine's environment to use its Haswell kernels; unset both variables for this
    # command only to let it pick the kernels of the CPU it runs on (the table says
    # which kernel ran, via threadpoolctl):
    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python3 benchmarks/bench_train.py
    python3 benchmarks/bench_train.py                       # as the environment is
    python3 benchmarks/bench_train.py --cases alexnet:32 --steps 10

    # GPU: AlexNet at 128 and 256, LeNet at 256, TF32 and strict FP32 each against
    # PyTorch with the matching setting (cuDNN TF32 on/off, matmul TF32 off); tinyalex's
    # step is captured as a CUDA graph after its warm-up (cuda_graph.TrainStep; --graph
    # off: eager), so --warmup 3 leaves replays to time
    python3 benchmarks/bench_train.py --backend cupy

One step is what d2l's ``train_ch6`` does per batch: zero_grad, forward,
cross-entropy, backward, SGD update (both networks start from the same weights, on
the same fixed batch). After ``--warmup`` steps each, the two frameworks alternate in
blocks of ``--block`` steps (the order flipped every block), so a change in machine
load hits both alike; the figure is the median step time. Blocks rather than single
steps: PyTorch's OpenMP threads keep spinning for a while after each of its steps and
take a core from whatever runs next in the process (measured on 2 idle cores, LeNet
batch 256: alternating step by step, tinyalex 20,500-24,000 images/s against 38,000 in
blocks of 5, while PyTorch's figure stayed at 28,000; with OMP_WAIT_POLICY=passive
the difference went away). ``--block 1`` alternates step by step. Peak memory comes
from separate processes (``memory_probe.py``). Prints a table and writes JSON
(``--json``).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import common  # noqa: E402

CPU_CASES = ["alexnet:8", "alexnet:32", "alexnet:128", "lenet:256"]
GPU_CASES = ["alexnet:128", "alexnet:256", "lenet:256"]


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--backend", choices=["numpy", "cupy"], default="numpy")
    p.add_argument("--cases", help="comma-separated model:batch (default: the issue's)")
    p.add_argument("--steps", type=int, default=0,
                   help="timed steps per framework (default: 12 AlexNet, 60 LeNet on the "
                        "CPU; 50 on the GPU)")
    p.add_argument("--warmup", type=int, default=3, help="untimed steps first (default 3)")
    p.add_argument("--block", type=int, default=4,
                   help="steps of one framework before switching to the other (default 4)")
    p.add_argument("--precision", default="tf32,fp32",
                   help="GPU only: tf32, fp32 or both (default tf32,fp32)")
    p.add_argument("--cpu-time", action="store_true",
                   help="CPU only: both frameworks on one thread (torch.set_num_threads(1), "
                        "tinyalex.set_num_threads(1), BLAS on one), each step timed in "
                        "process CPU time: a ratio that a loaded machine disturbs far less "
                        "than wall time")
    p.add_argument("--no-memory", action="store_true", help="skip the peak-memory probes")
    p.add_argument("--no-torch", action="store_true", help="tinyalex alone")
    p.add_argument("--graph", choices=["auto", "off"], default="auto",
                   help="GPU only: the step as a CUDA graph where it works (auto, "
                        "TINYALEX_CUDA_GRAPH decides) or always eager (off)")
    p.add_argument("--json", default=None,
                   help="where to write the results (default benchmarks/results/"
                        "train_<backend>.json)")
    return p.parse_args(argv)


def set_precision(precision: str, torch):
    import tinyalex.kernels as kernels
    kernels.set_tf32(precision == "tf32")
    if torch is not None:
        torch.backends.cudnn.allow_tf32 = precision == "tf32"   # PyTorch's default: True
        torch.backends.cuda.matmul.allow_tf32 = False          # PyTorch's default


def run_case(model, N, backend, steps, warmup, with_torch, block=4, graph=None,
             clock=common.timed):
    ours = common.TinyalexStep(model, N, backend, graph=graph)
    theirs = None
    if with_torch:
        theirs = common.TorchStep(model, N, "cpu" if backend == "numpy" else "cuda",
                                  weights_from=ours.net)
    first = {"tinyalex": float(ours())}
    if theirs is not None:
        first["torch"] = float(theirs())
    for _ in range(warmup - 1):
        ours()
        if theirs is not None:
            theirs()
    t_ours, t_theirs = [], []
    block = max(1, block)
    for i in range(0, steps, block):
        n = min(block, steps - i)
        order = (0, 1) if (i // block) % 2 == 0 else (1, 0)
        for who in order:
            for _ in range(n):
                if who == 0:
                    t_ours.append(clock(ours))
                elif theirs is not None:
                    t_theirs.append(clock(theirs))
    row = {"model": model, "batch": N, "steps": steps, "block": block,
           "first_step_loss": first, "cuda_graph": ours.graphed,
           "tinyalex_step_s": statistics.median(t_ours),
           "tinyalex_images_per_s": N / statistics.median(t_ours)}
    if t_theirs:
        row["torch_step_s"] = statistics.median(t_theirs)
        row["torch_images_per_s"] = N / statistics.median(t_theirs)
        row["ratio"] = row["tinyalex_images_per_s"] / row["torch_images_per_s"]
    return row


def main(argv=None):
    args = parse_args(argv)
    try:
        import torch
        torch.set_num_threads(1 if args.cpu_time else (os.cpu_count() or 1))
    except ImportError:
        torch = None
    if args.cpu_time:
        if args.backend != "numpy":
            sys.exit("bench_train.py: --cpu-time is for the CPU (--backend numpy)")
        import tinyalex
        tinyalex.set_num_threads(1)
    with_torch = torch is not None and not args.no_torch
    cases = (args.cases.split(",") if args.cases else
             (CPU_CASES if args.backend == "numpy" else GPU_CASES))
    precisions = args.precision.split(",") if args.backend == "cupy" else ["fp32"]
    info = common.machine(args.backend)
    rows = []
    for precision in precisions:
        if args.backend == "cupy":
            set_precision(precision, torch)
        for case in cases:
            model, N = case.split(":")
            N = int(N)
            steps = args.steps or (50 if args.backend == "cupy" else
                                   (60 if model == "lenet" else 12))
            print(f"... {model} batch {N} {precision}", file=sys.stderr, flush=True)
            row = run_case(model, N, args.backend, steps, max(1, args.warmup), with_torch,
                           args.block, graph=None if args.graph == "auto" else False,
                           clock=common.cpu_timed if args.cpu_time else common.timed)
            row["clock"] = "process CPU time, one thread" if args.cpu_time else "wall time"
            row["precision"] = precision
            if not args.no_memory and precision == precisions[0]:
                row["memory"] = {f: common.probe_memory(f, model, N, args.backend)
                                 for f in (("tinyalex", "torch") if with_torch else
                                           ("tinyalex",))}
            rows.append(row)
    info["load_average_at_end"] = os.getloadavg()
    info["numpy_blas"] = common.blas_description()     # as tinyalex left it (cpu_process.py)
    if args.backend == "numpy":
        from tinyalex.kernels import cpu_threads
        info["tinyalex_cpu_threads"] = cpu_threads.THREADS
        info["tinyalex_gemm_split"] = bool(cpu_threads.SPLIT)
    import tinyalex.kernels as kernels
    info["tinyalex_kernels"], info["tinyalex_conv"] = kernels.get_mode(), kernels.get_conv_mode()
    print_table(info, rows, args.backend)
    path = args.json or os.path.join(common.HERE, "results", f"train_{args.backend}.json")
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w") as f:
        json.dump({"machine": info, "results": rows}, f, indent=1)
    print(f"wrote {path}")


def _mem(row, framework, key):
    m = row.get("memory", {}).get(framework, {})
    return m.get(key)


def print_table(info, rows, backend):
    where = info.get("gpu") if backend == "cupy" else f"{info['host_cpu']}, {info['cores']} cores"
    print(f"\n{where}; numpy BLAS: {info['numpy_blas']}; torch {info.get('torch')} "
          f"({info.get('torch_threads')} threads)")
    print(f"load average {info['load_average_at_start'][0]:.2f} at start, "
          f"{info['load_average_at_end'][0]:.2f} at end; {info['date']}; tinyalex kernels "
          f"{info.get('tinyalex_kernels')}, TINYALEX_CONV={info.get('tinyalex_conv')}")
    clocks = sorted({r.get("clock", "wall time") for r in rows})
    print(f"step times: {', '.join(clocks)}")
    key = "device_peak_mb" if backend == "cupy" else "grown_mb"
    print(f"{'model':8} {'batch':>5} {'prec':>5} {'step':>5} {'tinyalex img/s':>15} "
          f"{'torch img/s':>12} {'ratio':>6} {'mem MB ours':>12} {'torch':>8}")
    for r in rows:
        tor = r.get("torch_images_per_s")
        mo, mt = _mem(r, "tinyalex", key), _mem(r, "torch", key)
        print(f"{r['model']:8} {r['batch']:>5} {r['precision']:>5} "
              f"{'graph' if r.get('cuda_graph') else 'eager':>5} "
              f"{r['tinyalex_images_per_s']:>15.1f} "
              f"{'-' if tor is None else f'{tor:.1f}':>12} "
              f"{'-' if tor is None else '%.2fx' % r['ratio']:>6} "
              f"{'-' if mo is None else f'{mo:.0f}':>12} {'-' if mt is None else f'{mt:.0f}':>8}")
    note = ("device memory held by each allocator" if backend == "cupy" else
            "peak RSS of training steps minus RSS after imports and a warm-up step (code)")
    print(f"memory: {note}, separate processes")


if __name__ == "__main__":
    main()
