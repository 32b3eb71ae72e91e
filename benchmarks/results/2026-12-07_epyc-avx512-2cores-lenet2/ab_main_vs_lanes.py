"""LeNet's training step with main's fused blocks (numba_direct's loops on plain
(N, C, H, W) memory, taken from git at ``--rev``) against this checkout's
(numba_lanes: 16 images in the vector lanes), alternating in one process in blocks of
four steps (the order flipped each round), so that a change in machine load hits both
alike. Prints the median, 10th percentile and minimum wall time and the median
process CPU time per step of each. Run from the repository root:

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE PYTHONPATH=$PWD \\
        python3 benchmarks/results/2026-12-07_epyc-avx512-2cores-lenet2/ab_main_vs_lanes.py
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", ".."))
sys.path.insert(0, os.path.join(ROOT, "benchmarks"))

import common  # noqa: E402
import tinyalex.ops.conv as conv  # noqa: E402
from tinyalex.kernels import conv_direct_cpu  # noqa: E402


def main_direct(rev):
    """main's DirectCPU (its conv_direct_cpu.py and numba_direct.py at ``rev``) as a
    package of its own in a temporary folder."""
    folder = tempfile.mkdtemp(prefix="ab_main_")
    package = os.path.join(folder, "main_direct")
    os.mkdir(package)
    open(os.path.join(package, "__init__.py"), "w").close()
    for name in ("conv_direct_cpu.py", "numba_direct.py"):
        text = subprocess.run(["git", "-C", ROOT, "show", f"{rev}:kernels/{name}"],
                              check=True, capture_output=True, text=True).stdout
        text = text.replace("from . import cpu_threads, numba_direct as loops",
                            "from tinyalex.kernels import cpu_threads\n"
                            "from main_direct import numba_direct as loops")
        text = text.replace("from .", "from tinyalex.kernels.")
        with open(os.path.join(package, name), "w") as f:
            f.write(text)
    sys.path.insert(0, folder)
    from main_direct import conv_direct_cpu as old
    return old.DIRECT


def run(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rev", default="2823bce",
                   help="main's commit (default 2823bce; its fused loops are d3e7c4a's)")
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--rounds", type=int, default=20)
    args = p.parse_args(argv)
    impl = {"main": main_direct(args.rev), "lanes": conv_direct_cpu.DIRECT}
    steps = {k: common.TinyalexStep("lenet", args.batch) for k in impl}
    times = {k: ([], []) for k in impl}

    def step(k):
        conv._DIRECT = impl[k]                  # what Conv2dSigmoidAvgPool calls
        steps[k]()
    for k in impl:                              # warm-up: compile, grow the buffers
        for _ in range(3):
            step(k)
    load = os.getloadavg()[0]
    for r in range(args.rounds):
        for k in (list(impl) if r % 2 == 0 else list(impl)[::-1]):
            for _ in range(4):
                t0, c0 = time.perf_counter(), time.process_time()
                step(k)
                times[k][0].append(time.perf_counter() - t0)
                times[k][1].append(time.process_time() - c0)
    conv._DIRECT = conv_direct_cpu.DIRECT
    print(f"lenet batch {args.batch}, main = {args.rev}, load {load:.2f} -> "
          f"{os.getloadavg()[0]:.2f}")
    for k, (wall, cpu) in times.items():
        wall = sorted(wall)
        print(f"{k:6} wall median {statistics.median(wall) * 1e3:.2f} ms "
              f"({args.batch / statistics.median(wall):,.0f} img/s), p10 "
              f"{wall[len(wall) // 10] * 1e3:.2f}, min {wall[0] * 1e3:.2f}; "
              f"cpu median {statistics.median(cpu) * 1e3:.2f} ms")


if __name__ == "__main__":
    run()
