"""Data-parallel training: step time and images/s with 1 and N processes, the time of
one allreduce of the whole gradient, and the speed-up to expect on N machines.

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python3 benchmarks/bench_dist.py
    python3 benchmarks/bench_dist.py --processes 1,2 --cases alexnet:128,lenet:256
    python3 benchmarks/bench_dist.py --steps 2 --warmup 1 --cases lenet:64   # it runs

Each case (model:global batch) runs once per process count: 1 is the plain single-
process path (no mpiexec, no flat buffer, no reductions), N > 1 is ``mpiexec -n N``
of this script as its own worker (``--worker``), which trains with ``--dist mpi`` on
a fixed random data set: ``--warmup`` untimed steps, then ``--steps`` timed ones in
one ``train_epoch`` (the loop of tinyalex/train/epoch.py, so a step is what training
does: the block of the global batch to the backend, forward, backward, one allreduce
of the flat gradient, SGD step, the metrics' sum). Each process uses its default CPU
threads (cores / processes on the machine). With N > 1 the worker then times
``--allreduces`` allreduces of the flat gradient alone (median; a small sum before each
lines the processes up).

On one machine the processes share its cores and memory, and MPI moves the gradient
through shared memory: 2 processes on 2 cores measure the overhead of distribution
(the allreduce, the sums, half-size blocks per GEMM), not a speed-up. The model at
the end turns the measured 1-process step time T1 and the gradient's size G into the
speed-up on N machines at a stated network bandwidth W and per-message latency a
(``--latency-us``, 50 by default), with ring allreduces (2 (N-1) messages each; a step
has two: the gradient and the metrics):
``T_comm(N) = 2 (N-1)/N * G / W + 4 (N-1) a`` and ``S(N) = T1 / (T1/N + T_comm(N))``
(overlap of the allreduce with backward left out; benchmarks/README.md says when it
would pay).

Prints a table and writes JSON (``--json``, default benchmarks/results/dist_numpy.json).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.dirname(HERE))     # this checkout's tinyalex, workers' too

import common  # noqa: E402

CASES = ["alexnet:128", "lenet:256"]
BANDWIDTHS_GBIT = (1, 10, 100)
MACHINES = (2, 4, 8, 16)


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--cases", default=",".join(CASES), help="comma-separated model:batch "
                   f"(global batch; default {','.join(CASES)})")
    p.add_argument("--processes", default="1,2",
                   help="comma-separated process counts (default 1,2; never more than cores)")
    p.add_argument("--steps", type=int, default=0,
                   help="timed steps (default 5 for AlexNet, 40 for LeNet)")
    p.add_argument("--warmup", type=int, default=2, help="untimed steps first (default 2)")
    p.add_argument("--allreduces", type=int, default=5,
                   help="allreduces of the gradient timed alone (default 5)")
    p.add_argument("--latency-us", type=float, default=50.0,
                   help="the model's latency per network message, microseconds (default 50)")
    p.add_argument("--timeout", type=float, default=1800, help="seconds per run")
    p.add_argument("--json", default=None, help="where to write the results")
    p.add_argument("--worker", nargs=4, metavar=("MODEL", "BATCH", "STEPS", "WARMUP"),
                   help=argparse.SUPPRESS)
    return p.parse_args(argv)


# -- the worker: one process of a run ---------------------------------------------------

def worker(model: str, batch: int, steps: int, warmup: int, allreduces: int) -> None:
    import numpy as np

    from tinyalex import random as R
    from tinyalex.dist import make_group
    from tinyalex.kernels import cpu_threads
    from tinyalex.models import init_weights_xavier
    from tinyalex.nn import FlatParameters
    from tinyalex.optim import SGD
    from tinyalex.recipes import D2L_RECIPES, build_model
    from tinyalex.train import train_epoch
    from tinyalex.train.replicas import share_start

    group = make_group("auto", "numpy")       # Solo when started alone
    recipe = dict(D2L_RECIPES[model], batch_size=batch, epochs=2)
    R.manual_seed(0)
    net = build_model(model)
    net.apply(init_weights_xavier)
    flat = FlatParameters(net.parameters()) if group.size > 1 else None
    optimizer = SGD(net.parameters(), lr=recipe["lr"], momentum=recipe["momentum"],
                    weight_decay=recipe["weight_decay"], flat=flat)
    if group.size > 1:
        share_start(group, optimizer, 0, [])
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (steps * batch, 28, 28), dtype=np.uint8)
    labels = rng.integers(0, 10, steps * batch)
    train_epoch(net, optimizer, images[:warmup * batch], labels[:warmup * batch], recipe,
                "numpy", 0, group=group)
    timed = train_epoch(net, optimizer, images, labels, recipe, "numpy", 1, group=group)
    parameters = sum(p.numel() for p in net.parameters())
    result = {"model": model, "batch": batch, "processes": group.size,
              "threads_per_process": cpu_threads.THREADS, "steps": steps,
              "step_s": timed["train_seconds"] / steps,
              "images_per_s": timed["examples_per_sec"], "parameters": parameters,
              "gradient_bytes": parameters * 4}
    if group.size > 1:
        times = []
        for _ in range(allreduces + 1):
            group.sum_host([0.0])                  # line the processes up
            start = time.perf_counter()
            group.sum_in_place(flat.grad)
            times.append(time.perf_counter() - start)
        result["allreduce_s"] = statistics.median(times[1:])
        result["allreduce_runs"] = len(times) - 1
    if group.rank == 0:
        print("RESULT " + json.dumps(result), flush=True)


# -- the driver --------------------------------------------------------------------------

def find_mpiexec() -> str:
    import shutil
    import sysconfig
    for folder in (os.path.dirname(sys.executable), sysconfig.get_path("scripts")):
        path = os.path.join(folder, "mpiexec")
        if os.path.isfile(path):
            return path
    found = shutil.which("mpiexec")
    if not found:
        sys.exit("bench_dist: mpiexec not found; pip install -e '.[mpi]' (mpi4py, mpich)")
    return found


def run_case(model, batch, processes, steps, warmup, allreduces, timeout) -> dict:
    me = [sys.executable, os.path.abspath(__file__), "--allreduces", str(allreduces),
          "--worker", model, str(batch), str(steps), str(warmup)]
    cmd = me if processes == 1 else [find_mpiexec(), "-n", str(processes), *me]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    if done.returncode != 0 or not lines:
        sys.exit(f"bench_dist: {' '.join(cmd)} failed ({done.returncode}):\n{done.stdout}\n"
                 f"{done.stderr}")
    return json.loads(lines[0][len("RESULT "):])


def speedup_model(t1: float, gradient_bytes: int, latency_s: float) -> list[dict]:
    """S(N) = T1 / (T1/N + T_comm(N)) for each stated bandwidth W and N machines, with
    T_comm(N) = 2 (N-1)/N G/W + 4 (N-1) a (two ring allreduces per step)."""
    rows = []
    for gbit in BANDWIDTHS_GBIT:
        bytes_per_s = gbit * 1e9 / 8
        for n in MACHINES:
            comm = 2 * (n - 1) / n * gradient_bytes / bytes_per_s + 4 * (n - 1) * latency_s
            rows.append({"gbit_per_s": gbit, "machines": n, "latency_s": latency_s,
                         "communication_s": comm, "speedup": t1 / (t1 / n + comm)})
    return rows


def main(argv=None):
    args = parse_args(argv)
    if args.worker:
        model, batch, steps, warmup = args.worker
        worker(model, int(batch), int(steps), int(warmup), args.allreduces)
        return
    counts = [int(p) for p in args.processes.split(",")]
    if max(counts) > (os.cpu_count() or 1):
        sys.exit(f"bench_dist: {max(counts)} processes on {os.cpu_count()} cores")
    info = common.machine("numpy")
    rows = []
    for case in args.cases.split(","):
        model, batch = case.split(":")
        steps = args.steps or (5 if model == "alexnet" else 40)
        for p in counts:
            print(f"... {model} batch {batch}, {p} process(es)", file=sys.stderr, flush=True)
            rows.append(run_case(model, int(batch), p, steps, max(1, args.warmup),
                                 args.allreduces, args.timeout))
    for row in rows:
        single = next((r for r in rows if r["model"] == row["model"] and
                       r["batch"] == row["batch"] and r["processes"] == 1), None)
        if single is not None:
            row["speedup_vs_1"] = single["step_s"] / row["step_s"]
        if row["processes"] == 1:
            row["model_on_n_machines"] = speedup_model(row["step_s"], row["gradient_bytes"],
                                                       args.latency_us * 1e-6)
    info["load_average_at_end"] = os.getloadavg()
    print(f"\n{info['host_cpu']}, {info['cores']} cores; load {info['load_average_at_start']}"
          f" -> {info['load_average_at_end']}")
    print(f"{'model':8} {'batch':>5} {'procs':>5} {'threads':>7} {'step s':>8} {'img/s':>8} "
          f"{'allreduce s':>11} {'vs 1':>5}")
    for r in rows:
        print(f"{r['model']:8} {r['batch']:5d} {r['processes']:5d} "
              f"{r['threads_per_process']:7d} {r['step_s']:8.3f} {r['images_per_s']:8.1f} "
              f"{r.get('allreduce_s', float('nan')):11.4f} "
              f"{r.get('speedup_vs_1', float('nan')):5.2f}")
    for r in rows:
        if r["processes"] == 1 and "model_on_n_machines" in r:
            print(f"\nmodel: {r['model']} b{r['batch']} on N machines like this one "
                  f"(T1 {r['step_s']:.3f} s, gradient {r['gradient_bytes'] / 1e6:.1f} MB, "
                  f"ring allreduces, {args.latency_us:g} us a message, no overlap)")
            for m in r["model_on_n_machines"]:
                print(f"  {m['gbit_per_s']:4d} Gbit/s  N={m['machines']:3d}  communication "
                      f"{m['communication_s']:8.4f} s  speed-up {m['speedup']:6.2f}")
    path = args.json or os.path.join(common.HERE, "results", "dist_numpy.json")
    with open(path, "w") as f:
        json.dump({"machine": info, "rows": rows}, f, indent=2)
    print(f"\nwrote {path}")


if __name__ == "__main__":
    main()
