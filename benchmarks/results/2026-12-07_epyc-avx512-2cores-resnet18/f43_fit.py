"""Winograd F(4x4, 3x3) against im2col + GEMM, forward + backward (gx and gW), on
3x3 stride-1 layers of ResNet-18's and AlexNet's widths at several batches: the figures
ops/conv.py's f43_pays was fitted to. One thread, process CPU time, best of 4.

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE OPENBLAS_NUM_THREADS=1 \
        TINYALEX_CPU_THREADS=1 python3 benchmarks/results/<this record>/f43_fit.py
"""
import json
import os
import time

import numpy as np

from tinyalex.kernels import conv_im2col_cpu, conv_winograd_cpu
from tinyalex.kernels.geometry import conv_geometry
from tinyalex.ops.conv import f43_pays

CASES = [(32, 512, 3), (64, 512, 3), (128, 512, 3), (8, 256, 6), (16, 256, 6),
         (32, 256, 6), (32, 128, 12), (1, 384, 12), (2, 384, 12), (4, 384, 12),
         (8, 384, 12)]
rng = np.random.default_rng(0)
rows = []
for N, C, H in CASES:
    x = rng.standard_normal((N, C, H, H), dtype=np.float32)
    w = rng.standard_normal((C, C, 3, 3), dtype=np.float32)
    g = conv_geometry(x.shape, w.shape, 1, 1, 1, 1, "fit")
    ms = {}
    for name, a in (("F43", conv_winograd_cpu.WINOGRAD_F43),
                    ("im2col", conv_im2col_cpu.IM2COL_GEMM)):
        best = float("inf")
        for _ in range(4):
            t0 = time.process_time()
            y, s = a.forward(x, w, None, g, True)
            a.backward(y, s, True, True, False)
            best = min(best, time.process_time() - t0)
        ms[name] = best * 1e3
    tiles = N * (-(-H // 4)) ** 2
    rows.append({"N": N, "C": C, "OH": H, "tiles": tiles, "F43_ms": ms["F43"],
                 "im2col_ms": ms["im2col"], "f43_pays": f43_pays(g)})
    print(f"N={N:3} C={C} {H}x{H} tiles {tiles:4}: F43 {ms['F43']:6.1f} ms, im2col "
          f"{ms['im2col']:6.1f} ms, F43/im2col {ms['F43'] / ms['im2col']:.2f}, "
          f"f43_pays {f43_pays(g)}", flush=True)
with open(os.path.join(os.path.dirname(os.path.abspath(__file__)), "f43_fit.json"), "w") as f:
    json.dump({"load_average": os.getloadavg(), "rows": rows}, f, indent=1)
