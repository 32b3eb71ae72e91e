"""Grouped convolution on the CPU: one im2col + one batched GEMM over the groups
(kernels/conv_grouped_cpu.py) against the per-group reference (ops/conv.py,
GroupedReference) on ResNeXt's shapes, forward + backward (gx, gW, gb), float32, one
thread, process CPU time, best of 3.

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE OPENBLAS_NUM_THREADS=1 \
        TINYALEX_CPU_THREADS=1 python3 benchmarks/results/<this record>/grouped_vs_reference.py
"""
import time, numpy as np
from tinyalex.kernels.conv_grouped_cpu import GROUPED_IM2COL as F
from tinyalex.ops.conv import GROUPED as R
from tinyalex.kernels.geometry import conv_geometry
now = time.process_time
rng = np.random.default_rng(0)
CASES = [  # N, C, H, groups, stride: d2l 1.0's ResNeXtBlock(32, 16, 1) example (2 groups of 16),
           # ResNeXt-50 (32x4d) stage 1-3 3x3 layers at batch 8 (32 groups)
    (4, 32, 96, 2, 1), (8, 128, 56, 32, 1), (8, 256, 28, 32, 1), (8, 512, 14, 32, 1), (8, 256, 56, 32, 2)]
for N, C, H, G, S in CASES:
    x = rng.standard_normal((N, C, H, H), dtype=np.float32)
    w = rng.standard_normal((C, C // G, 3, 3), dtype=np.float32)
    b = rng.standard_normal(C, dtype=np.float32)
    g = conv_geometry(x.shape, w.shape, S, S, 1, 1, "g", G)
    res = {}
    for name, a in (("batched", F), ("per-group reference", R)):
        best = 1e9
        for _ in range(3):
            t0 = now(); y, s = a.forward(x, w, b, g, True); a.backward(y, s, True, True, True)
            best = min(best, now() - t0)
        res[name] = best * 1e3
    print(f"N={N} C={C} {H}x{H} groups={G} stride={S}: batched {res['batched']:.1f} ms, reference {res['per-group reference']:.1f} ms, {res['per-group reference']/res['batched']:.2f}x", flush=True)
