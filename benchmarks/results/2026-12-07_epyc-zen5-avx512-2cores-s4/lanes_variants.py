"""One thread, LeNet's two blocks at 128 images (a thread's half of batch 256): the
fused loops of ``kernels/numba_lanes.py`` as they are, and rebuilt with 16 images a
block and/or the layout's arrays where NumPy and Numba put them (16/32-byte aligned).
Run from the repository root: python3 benchmarks/results/<this folder>/lanes_variants.py
"""
import importlib.util
import os
import sys
import tempfile
import time

import numpy as np

SRC = open(os.path.join("kernels", "numba_lanes.py")).read()
ALIGNED = '''    raw = np.empty(n + 16, dt)                      # 16 numbers: at least 64 bytes
    skip = (-raw.ctypes.data) % 64 // raw.itemsize
    return raw[skip:skip + n]'''
assert ALIGNED in SRC


def variant(V, aligned):
    s = SRC.replace("V = 32 ", f"V = {V} ", 1)
    if not aligned:
        s = s.replace(ALIGNED, "    return np.empty(n, dt)")
    s = s.replace("from .numba_direct", "from tinyalex.kernels.numba_direct")
    s = s.replace("from .numba_elementwise", "from tinyalex.kernels.numba_elementwise")
    s = s.replace("cache=True", "cache=False")
    path = os.path.join(tempfile.mkdtemp(), f"lanes_{V}_{aligned}.py")
    open(path, "w").write(s)
    spec = importlib.util.spec_from_file_location(f"lanes_{V}_{aligned}", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def ms(f, reps=30):
    f(); f()
    ts = []
    for _ in range(reps):
        t = time.perf_counter(); f(); ts.append(time.perf_counter() - t)
    return np.median(ts) * 1e3


def run(L, N=128):
    V, rng, out, total = L.V, np.random.default_rng(0), [], 0.0
    for name, C, H, OC, P in [("conv1", 1, 28, 6, 2), ("conv2", 6, 14, 16, 0)]:
        x = rng.standard_normal((N, C, H, H), dtype=np.float32)
        w = (rng.standard_normal((OC, C, 5, 5)) * 0.3).astype(np.float32)
        b = np.zeros(OC, np.float32)
        NB, Hp = -(-N // V), H + 2 * P
        OH = Hp - 4
        xb = L.empty((NB, C, Hp, Hp, V), np.float32)
        sb = L.empty((NB, OC, OH, OH, V), np.float32)
        y = np.empty((N, OC, OH // 2, OH // 2), np.float32)
        q, one, zero = np.float32(0.25), np.float32(1), np.float32(0)
        fwd = ms(lambda: (L.pack(x, P, P, xb, 0, NB),
                          L.forward_sigmoid_avgpool(xb, w, b, q, sb, y, 0, NB)))
        gy = rng.standard_normal(y.shape, dtype=np.float32)
        gw, gb = np.zeros((OC, C * 25), np.float32), np.zeros(OC, np.float32)
        gx = np.empty((N, C, H, H), np.float32)
        bwd = ms(lambda: L.backward(gy, xb, sb, w, P, P, True, True, C > 1, one, q, zero,
                                    gw, gb, gx, 0, NB))
        out.append(f"{name} fwd {fwd:.3f} bwd {bwd:.3f}")
        total += fwd + bwd
    return f"{' | '.join(out)} | sum {total:.3f} ms"


if __name__ == "__main__":
    variants = [(V, a) for V in (16, 32) for a in (False, True)]
    mods = {k: variant(*k) for k in variants}
    for r in range(int(sys.argv[1]) if len(sys.argv) > 1 else 2):
        for V, a in variants:
            print(f"round {r + 1}: V={V:2d} {'aligned  ' if a else 'unaligned'}: "
                  f"{run(mods[(V, a)])}", flush=True)
