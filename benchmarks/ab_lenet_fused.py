"""d2l's LeNet training step with its Conv2d + Sigmoid + AvgPool2d blocks as one op
(``Sequential.FUSED_CPU``) against the three layers one after the other
(``net.fuse = False``), interleaved in one process (blocks of four steps, order flipped
each round), so that a change in machine load hits both alike. Both networks start
from the same weights; their numbers are the same bit for bit. Prints the median wall
and process CPU time per step of each, and writes JSON (``--json``).

    python3 benchmarks/ab_lenet_fused.py --batch 256 --rounds 30
    OPENBLAS_NUM_THREADS=1 NUMBA_NUM_THREADS=1 python3 benchmarks/ab_lenet_fused.py
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import common  # noqa: E402


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--rounds", type=int, default=30)
    p.add_argument("--json", default=None, help="write the figures here")
    args = p.parse_args(argv)
    steps = {"fused": common.TinyalexStep("lenet", args.batch),
             "unfused": common.TinyalexStep("lenet", args.batch)}
    steps["unfused"].net.fuse = False
    times = {k: ([], []) for k in steps}
    load_start = os.getloadavg()
    for step in steps.values():                 # warm-up: compile, grow the buffers
        for _ in range(3):
            step()
    for r in range(args.rounds):
        for k in (list(steps) if r % 2 == 0 else list(steps)[::-1]):
            for _ in range(4):
                t0, c0 = time.perf_counter(), time.process_time()
                steps[k]()
                times[k][0].append(time.perf_counter() - t0)
                times[k][1].append(time.process_time() - c0)
    result = {"batch": args.batch, "rounds": args.rounds, "load_start": load_start,
              "load_end": os.getloadavg(), "machine": common.machine("numpy")}
    print(f"lenet batch {args.batch}, load {load_start[0]:.1f} -> {os.getloadavg()[0]:.1f}")
    for k, (wall, cpu) in times.items():
        wall_ms, cpu_ms = statistics.median(wall) * 1e3, statistics.median(cpu) * 1e3
        result[k] = {"wall_ms": wall_ms, "cpu_ms": cpu_ms,
                     "images_per_s": args.batch / statistics.median(wall)}
        print(f"{k:8} wall {wall_ms:6.2f} ms ({args.batch / statistics.median(wall):,.0f} "
              f"img/s), cpu {cpu_ms:6.2f} ms")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=1)
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
