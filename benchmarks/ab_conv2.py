"""AlexNet's training step with conv2 (5x5) by Winograd F(2x2, 5x5), F(3x3, 5x5) and
F(4x4, 5x5) (the chooser's), interleaved in one process (blocks of two steps, order flipped each round), so that a
change in machine load hits both alike. Prints median wall and process CPU time per
step for each.

    python3 benchmarks/ab_conv2.py --batch 32 --rounds 6
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import common  # noqa: E402


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--rounds", type=int, default=6)
    args = p.parse_args(argv)
    from tinyalex.kernels import conv_winograd_cpu as cw
    from tinyalex.ops import conv
    choices = {"F(2,5)": cw.WINOGRAD_F25, "F(3,5)": cw.WINOGRAD_F35,
               "F(4,5)": cw.WINOGRAD_F45}
    step = common.TinyalexStep("alexnet", args.batch, "numpy")
    times = {k: ([], []) for k in choices}
    original = conv._F45
    try:
        for k in choices:                       # warm-up: compile, grow the workspaces
            conv._F45 = choices[k]
            step()
        for r in range(args.rounds):
            for k in (list(choices) if r % 2 == 0 else list(choices)[::-1]):
                conv._F45 = choices[k]          # the chooser's first 5x5 rule picks it
                for _ in range(2):
                    t0, c0 = time.perf_counter(), time.process_time()
                    step()
                    times[k][0].append(time.perf_counter() - t0)
                    times[k][1].append(time.process_time() - c0)
    finally:
        conv._F45 = original
    print(f"alexnet batch {args.batch}, load {os.getloadavg()[0]:.1f}")
    for k, (wall, cpu) in times.items():
        print(f"conv2 {k}: wall {statistics.median(wall) * 1e3:.0f} ms "
              f"({args.batch / statistics.median(wall):.1f} img/s), "
              f"cpu {statistics.median(cpu) * 1e3:.0f} ms")


if __name__ == "__main__":
    main()
