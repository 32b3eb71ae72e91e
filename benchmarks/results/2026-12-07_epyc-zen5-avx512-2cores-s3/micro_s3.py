"""This record's micro-benchmarks (run from the checkout's root, the machine idle):

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python3 \
        benchmarks/results/2026-12-07_epyc-zen5-avx512-2cores-s3/micro_s3.py

1. The Winograd filter transform and its adjoint, one thread, process CPU time: as one
   BLAS GEMM with kron(G, G) (what conv_winograd_cpu.py ran before this session) and as
   numba_winograd_filter's loops.
2. One convolution layer's forward + backward (all three gradients), two threads, wall
   time, median of 7: ResNet-18's 512-channel 3x3 layer by im2col + GEMM, tap GEMMs and
   Winograd F(4,3) at batches 32-128, and its 256-channel 6x6 layer by F(6,3), taps and
   im2col.
"""
import statistics
import time

import numpy as np
from threadpoolctl import threadpool_limits

import tinyalex  # noqa: F401  (the CPU policy: BLAS on one thread, the kernels cut work)
from tinyalex.kernels import conv_im2col_cpu as I, conv_winograd_cpu as W, cpu_threads
from tinyalex.kernels import numba_winograd_filter as L
from tinyalex.kernels.conv_taps_cpu import TAP_GEMMS
from tinyalex.kernels.geometry import conv_geometry


def cpu_ms(f, reps=10):
    f()
    t = time.process_time()
    for _ in range(reps):
        f()
    return (time.process_time() - t) / reps * 1e3


def filter_transforms():
    print("filter transform, one thread, ms (BLAS kron GEMM / loops), and its adjoint")
    threads = cpu_threads.THREADS
    tinyalex.set_num_threads(1)
    with threadpool_limits(1):
        for alg, OC, C in ((W.WINOGRAD_F63, 256, 256), (W.WINOGRAD_F63, 384, 384),
                           (W.WINOGRAD_F43, 256, 256), (W.WINOGRAD_F45, 256, 96)):
            n, r, F = alg.n, alg.r, OC * C
            w = np.random.default_rng(0).standard_normal((OC, C, r, r), dtype=np.float32)
            GG = np.kron(alg.G, alg.G).astype(np.float32)
            U = np.empty((n * n, F), np.float32)
            blas = cpu_ms(lambda: np.matmul(GG, w.reshape(F, r * r).T, out=U))
            loops = cpu_ms(lambda: alg.filter_transform(w, np.float32))
            err = np.abs(alg.filter_transform(w, np.float32).reshape(n * n, F) - U).max() / np.abs(U).max()
            gU = np.random.default_rng(1).standard_normal((n * n, F), dtype=np.float32)
            gW = np.empty((F, r * r), np.float32)
            gblas = cpu_ms(lambda: np.matmul(gU.T, GG, out=gW))
            gloops = cpu_ms(lambda: alg.filter_gradient(gU.reshape(n * n, OC, C), np.float32))
            print(f"  {alg.name} {OC}x{C}: transform {blas:.2f} / {loops:.2f}, adjoint "
                  f"{gblas:.2f} / {gloops:.2f}  (largest difference {err:.1e} of the largest)")
    tinyalex.set_num_threads(threads)


def layer(alg, x, w, b, g, gy):
    y, s = alg.forward(x, w, b, g, True)
    alg.backward(gy, s, True, True, True)


def layers():
    algs = {"im2col": I.IM2COL_GEMM, "taps": TAP_GEMMS, "F(4,3)": W.WINOGRAD_F43,
            "F(6,3)": W.WINOGRAD_F63}
    print("one layer, forward + backward, two threads, wall ms (median of 7)")
    for N, C, HW, names in ((32, 512, 3, ("im2col", "taps", "F(4,3)")),
                            (64, 512, 3, ("im2col", "taps", "F(4,3)")),
                            (128, 512, 3, ("im2col", "taps", "F(4,3)")),
                            (32, 256, 6, ("F(6,3)", "taps", "im2col"))):
        rng = np.random.default_rng(0)
        x = rng.standard_normal((N, HW, HW, C), dtype=np.float32).transpose(0, 3, 1, 2)
        w = rng.standard_normal((C, C, 3, 3), dtype=np.float32) * 0.05
        b = np.zeros(C, np.float32)
        g = conv_geometry(x.shape, w.shape, 1, 1, 1, 1)
        gy = rng.standard_normal((N, HW, HW, C), dtype=np.float32).transpose(0, 3, 1, 2)
        times = {name: [] for name in names}
        for name in names:
            layer(algs[name], x, w, b, g, gy)
        for _ in range(7):
            for name in names:
                t = time.perf_counter()
                layer(algs[name], x, w, b, g, gy)
                times[name].append(time.perf_counter() - t)
        print(f"  N={N} {C}x{HW}x{HW}: " + ", ".join(
            f"{name} {statistics.median(v) * 1e3:.2f}" for name, v in times.items()))


if __name__ == "__main__":
    filter_transforms()
    layers()
