"""One thread: ``numba_lanes._row_4x4`` (LeNet's second layer: 16 channels, 6 x 5 x 5
taps, rows of 10 pixels x 16 images) over input rows and accumulators placed 0, 16 or
32 bytes past a cache line's start. Run from the repository root."""
import time

import numpy as np
from numba import njit

from tinyalex.kernels import numba_lanes as L

V16 = 16                                        # one AVX-512 vector a pixel, as before


@njit(cache=False)
def rows(xf, offs, wm, bb, OW, acc, OH, Wp, reps):
    for r in range(reps):
        for oh in range(OH):
            L._row_4x4(xf, oh * Wp * V16, offs, wm, bb, OW * V16 // L.V, acc)


def placed(n, shift):
    raw = np.empty(n + 64, np.float32)
    start = (-raw.ctypes.data % 64) // 4 + shift // 4
    return raw[start:start + n]


OW, C, OC, Hp = 10, 6, 16, 14
Wp, KP = OW + 4, 152
plane = Hp * Wp * V16
offs = np.full(KP, C * plane, np.int64)
for c in range(C):
    for kh in range(5):
        for kw in range(5):
            offs[(c * 5 + kh) * 5 + kw] = c * plane + (kh * Wp + kw) * V16
rng = np.random.default_rng(0)
wm = rng.random((OC, KP), dtype=np.float32)
bb = np.zeros(OC, np.float32)
for xs in (0, 16, 32):
    for as_ in (0, 16, 32):
        xf = placed(C * plane + plane, xs)
        xf[:] = rng.random(xf.size, dtype=np.float32)
        acc = placed(OC * OW * V16, as_).reshape(OC, OW * V16)
        rows(xf, offs, wm, bb, OW, acc, 10, Wp, 2)
        best = 0.0
        for _ in range(5):
            t = time.perf_counter()
            rows(xf, offs, wm, bb, OW, acc, 10, Wp, 100)
            best = max(best, 100 * 10 * OC * KP * OW * V16 * 2 / (time.perf_counter() - t))
        print(f"input rows {xs:2d} B, accumulators {as_:2d} B past a line: "
              f"{best / 1e9:.0f} GFLOP/s (best of 5)")
