"""The GPU kernels' logic without a GPU: Numba's CUDA simulator runs the very kernels
of ``kernels/cuda_kernels.py``, through the same checked wrappers the CuPy backend
uses (``kernels/gpu.py``), on NumPy arrays, and they must agree with the readable
references. Launches use tiny grids (2 blocks of 8 threads), so every kernel's
grid-stride loop wraps around.

The simulator must be chosen before ``numba.cuda`` is first imported, and the CPU
tests in this process need the real Numba, so this file runs itself in a child
process with ``NUMBA_ENABLE_CUDASIM=1``: in the parent only the driver test below
exists; in the child only the kernel tests do.
"""

import os
import re
import subprocess
import sys
import warnings

import numpy as np

SIMULATED = os.environ.get("NUMBA_ENABLE_CUDASIM") == "1"

if not SIMULATED:
    def test_cuda_kernels_under_the_simulator():
        env = dict(os.environ, NUMBA_ENABLE_CUDASIM="1")
        out = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                              os.path.abspath(__file__)], capture_output=True, text=True,
                             env=env, timeout=600)
        assert out.returncode == 0, out.stdout[-4000:] + out.stderr[-2000:]
        passed = re.search(r"(\d+) passed", out.stdout)
        assert passed and int(passed.group(1)) >= 4 and "skipped" not in out.stdout, \
            out.stdout[-2000:]

    def test_cuda_kernels_type_for_the_gpu_with_the_wrappers_arguments():
        """The simulator runs the kernels as Python, so it never sees Numba's typing.
        Here every kernel is typed and lowered for the real CUDA target (Numba's
        front end and LLVM, no GPU and no NVVM needed) with the very arguments the
        checked wrappers pass (recorded instead of launched): float32 sums stay
        float32, and the dropout hash stays uint64 (int64 mixed with uint64 types as
        float64 in Numba, which would silently change the mask)."""
        import pytest
        compiler = pytest.importorskip("numba.cuda.compiler",
                                       reason="numba-cuda is not installed")
        if not hasattr(compiler, "compile_cuda"):
            pytest.skip("this numba-cuda has no numba.cuda.compiler.compile_cuda")
        from numba.cuda import types
        from numba.cuda.typing.typeof import Purpose, typeof

        from tinyalex.kernels import gpu

        calls = []
        k = gpu.build(np, simulated=True)
        k.run = lambda loop, total, *args: calls.append((loop, args))
        rng = np.random.default_rng(0)
        # recorded, not run: the kernels' outputs stay uninitialised, and the GEMMs that
        # read them may overflow; only the arguments matter here
        with np.errstate(over="ignore", invalid="ignore"):
            for dtype in (np.float32, np.float64):
                x = rng.standard_normal((2, 3, 7, 6)).astype(dtype)
                w, b = rng.standard_normal((4, 3, 3, 3)).astype(dtype), np.zeros(4, dtype)
                k.col2im(k.im2col(x, 3, 3, 2, 1, 1, 0), x.shape, 3, 3, 2, 1, 1, 0)
                y, saved = k.conv2d_forward(x, w, b, 1, 1, 1, 1, True)
                k.conv2d_backward(np.ones(y.shape, dtype), saved, True, True, True)
                for cl in (False, True):        # plain memory, and channels-last memory
                    xc = np.ascontiguousarray(x) if not cl else \
                        np.ascontiguousarray(x.transpose(0, 2, 3, 1)).transpose(0, 3, 1, 2)
                    ym, arg = k.max_pool2d_forward(xc, 3, 3, 2, 2, 1, 1)
                    k.max_pool2d_backward(np.ones(ym.shape, dtype), arg, x.shape, 3, 3, 2, 2, 1, 1)
                    ya = k.avg_pool2d_forward(xc, 2, 2, 2, 2, 0, 0)
                    k.avg_pool2d_backward(np.ones(ya.shape, dtype), x.shape, 2, 2, 2, 2, 0, 0)
                for fwd, bwd in ((k.relu_forward, k.relu_backward),
                                 (k.sigmoid_forward, k.sigmoid_backward)):
                    bwd(x, fwd(x))
                k.sgd_update(w.copy(), w, 0.1)
                k.dropout(x, 0.5, 2**64 - 1)

        typed = {}
        for loop, args in calls:
            argtypes = tuple(typeof(a, Purpose.argument) for a in args)
            if (loop, argtypes) not in typed:
                cres = compiler.compile_cuda(loop.py_func, types.void, argtypes, cc=(9, 0))
                typed[loop, argtypes] = cres.type_annotation.typemap
        names = {loop.py_func.__name__ for loop, _ in typed}
        assert names == {"im2col", "col2im", "max_pool_forward", "max_pool_backward",
                         "avg_pool_forward", "avg_pool_backward", "relu_forward",
                         "relu_backward", "sigmoid_forward", "sigmoid_backward",
                         "sgd_update", "dropout"}
        for (loop, argtypes), typemap in typed.items():
            dtype = str(argtypes[0].dtype)                 # every first argument: an array
            kinds = {name.split(".")[0]: set() for name in typemap}
            for name, t in typemap.items():
                kinds[name.split(".")[0]].add(str(t))
            assert kinds.get("acc", {dtype}) == {dtype}, (loop.py_func.__name__, kinds["acc"])
            if loop.py_func.__name__ == "dropout":
                assert kinds["z"] == {"uint64"} and kinds["seed"] == {"uint64"}, kinds
                assert kinds["scale"] == {dtype}, kinds["scale"]

else:
    from hypothesis import example, given, settings, strategies as st

    import tinyalex.kernels as kernels
    from tinyalex.kernels import gpu
    from strategies import batch_geometry

    REF = kernels.kernel_set("numpy", "reference")
    SIM = gpu.build(np, simulated=True, threads=8, max_blocks=2)
    DTYPES = st.sampled_from([np.float32, np.float64])
    # the simulator runs the kernels as Python: uint64 hashing wraps with a warning
    warnings.filterwarnings("ignore", "overflow encountered", RuntimeWarning)

    def geometry(pool=False):      # tiny: the simulator runs each kernel thread as Python
        return batch_geometry(pool=pool, batch=2, channels=2, kernel=3, pad=1, stride=2,
                              extra=2)

    def tol(dtype):
        return dict(rtol=1e-4, atol=1e-5) if dtype == np.float32 else dict(rtol=1e-10)

    @settings(max_examples=6)
    @given(g=geometry(), dtype=DTYPES, seed=st.integers(0, 2**16))
    @example(g=(1, 2, 2, 3, 2, 3, 1, 1, 0, 0), dtype=np.float32, seed=0)   # kernel = input
    def test_im2col_col2im_and_conv(g, dtype, seed):
        N, C, H, W, KH, KW, SH, SW, PH, PW = g
        rng = np.random.default_rng(seed)
        x = rng.standard_normal((N, C, H, W)).astype(dtype)
        cols = SIM.im2col(x, KH, KW, SH, SW, PH, PW)
        np.testing.assert_array_equal(cols, REF.im2col(x, KH, KW, SH, SW, PH, PW))
        np.testing.assert_array_equal(SIM.col2im(cols, x.shape, KH, KW, SH, SW, PH, PW),
                                      REF.col2im(cols, x.shape, KH, KW, SH, SW, PH, PW))
        OC = 2
        w = rng.standard_normal((OC, C, KH, KW)).astype(dtype)
        b = rng.standard_normal(OC).astype(dtype)
        y_ref, s_ref = REF.conv2d_forward(x, w, b, SH, SW, PH, PW, True)
        y, s = SIM.conv2d_forward(x, w, b, SH, SW, PH, PW, True)
        np.testing.assert_allclose(y, y_ref, **tol(dtype))
        gy = rng.standard_normal(y.shape).astype(dtype)
        for a, e in zip(SIM.conv2d_backward(gy, s, True, True, True),
                        REF.conv2d_backward(gy, s_ref, True, True, True)):
            np.testing.assert_allclose(a, e, **tol(dtype))

    @settings(max_examples=6)
    @given(g=geometry(pool=True), dtype=DTYPES, cl=st.booleans(), seed=st.integers(0, 2**16))
    def test_pooling(g, dtype, cl, seed):
        """Plain (N, C, H, W) memory is pooled as N*C one-channel images, channels-last
        memory as it lies (``fastset.py``)."""
        N, C, H, W, KH, KW, SH, SW, PH, PW = g
        rng = np.random.default_rng(seed)
        x = np.round(rng.standard_normal((N, H, W, C))).astype(dtype)     # with ties
        x = x.transpose(0, 3, 1, 2) if cl else np.ascontiguousarray(x.transpose(0, 3, 1, 2))
        y_ref, a_ref = REF.max_pool2d_forward(x, KH, KW, SH, SW, PH, PW)
        y, a = SIM.max_pool2d_forward(x, KH, KW, SH, SW, PH, PW)
        np.testing.assert_array_equal(y, y_ref)
        gy = rng.standard_normal(y.shape).astype(dtype)
        np.testing.assert_array_equal(
            SIM.max_pool2d_backward(gy, a, x.shape, KH, KW, SH, SW, PH, PW),
            REF.max_pool2d_backward(gy, a_ref, x.shape, KH, KW, SH, SW, PH, PW))
        np.testing.assert_allclose(SIM.avg_pool2d_forward(x, KH, KW, SH, SW, PH, PW),
                                   REF.avg_pool2d_forward(x, KH, KW, SH, SW, PH, PW),
                                   **tol(dtype))
        np.testing.assert_allclose(
            SIM.avg_pool2d_backward(gy, x.shape, KH, KW, SH, SW, PH, PW),
            REF.avg_pool2d_backward(gy, x.shape, KH, KW, SH, SW, PH, PW), **tol(dtype))

    @settings(max_examples=6)
    @given(n=st.integers(1, 40), dtype=DTYPES, seed=st.integers(0, 2**16),
           p=st.sampled_from([0.0, 0.5, 0.9, 1.0]))
    def test_elementwise(n, dtype, seed, p):
        rng = np.random.default_rng(seed)
        x = (rng.standard_normal((n, 2)) * 4).astype(dtype).T        # a transposed view
        gy = rng.standard_normal(x.shape).astype(dtype)
        y = SIM.relu_forward(x)
        np.testing.assert_array_equal(y, REF.relu_forward(x))
        np.testing.assert_array_equal(SIM.relu_backward(gy, y), REF.relu_backward(gy, y))
        s = SIM.sigmoid_forward(x)
        np.testing.assert_allclose(s, REF.sigmoid_forward(x), **tol(dtype))
        np.testing.assert_allclose(SIM.sigmoid_backward(gy, s), REF.sigmoid_backward(gy, s),
                                   **tol(dtype))
        p_sim, p_ref = x.copy(), x.copy()
        SIM.sgd_update(p_sim, gy, 0.25)
        np.testing.assert_allclose(p_sim, REF.sgd_update(p_ref, gy, 0.25), **tol(dtype))
        # one seed, one mask: the same on the CPU (NumPy, Numba) and the GPU kernel
        np.testing.assert_array_equal(SIM.dropout(x, p, seed), REF.dropout(x, p, seed))
        # the fully connected layers' GEMM: a fresh array, operands in any order
        np.testing.assert_allclose(SIM.matmul(x, gy.T), REF.matmul(x, gy.T), **tol(dtype))

    def test_the_simulator_is_what_ran():
        from numba import cuda
        assert cuda.jit.__module__.startswith("numba.cuda.simulator")
