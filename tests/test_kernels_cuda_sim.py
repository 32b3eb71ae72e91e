"""The GPU kernels' logic without a GPU: Numba's CUDA simulator runs the very kernels
of ``kernels/cuda_kernels.py``, through the same GPU algorithms the CuPy backend
uses (``kernels/conv_im2col_gpu.py``, ``pool_gpu.py``, ``elementwise_gpu.py``), on NumPy arrays, and they must agree with the readable
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



def gpu_algorithms(launch):
    """The GPU algorithms on NumPy arrays, launching with ``launch``."""
    from tinyalex.kernels import conv_im2col_gpu, elementwise_gpu as ew, pool_gpu
    return {"conv": conv_im2col_gpu.Im2colGemmGPU(np, launch),
            "conv_ref_order": conv_im2col_gpu.Im2colGemmGPU(np, launch, order="c,kh,kw"),
            "max": pool_gpu.MaxPoolGPU(np, launch), "avg": pool_gpu.AvgPoolGPU(np, launch),
            "relu": ew.ReluGPU(np, launch), "sigmoid": ew.SigmoidGPU(np, launch),
            "dropout": ew.DropoutGPU(np, launch), "sgd": ew.SgdUpdateGPU(np, launch),
            "matmul": ew.MatmulGPU(np, launch)}


def exercise(k, x, w, b):
    """One call of every kernel through the algorithms ``k`` (conv forward and
    backward in both column orders, pooling of plain and channels-last memory, the
    elementwise ops)."""
    from tinyalex.kernels.geometry import conv_geometry, pool_geometry
    g = conv_geometry(x.shape, w.shape, 1, 1, 1, 1)
    for algorithm in (k["conv"], k["conv_ref_order"]):
        y, saved = algorithm.forward(x, w, b, g, True)
        algorithm.backward(np.ones(y.shape, x.dtype), saved, True, True, True)
    for cl in (False, True):        # plain memory, and channels-last memory
        xc = np.ascontiguousarray(x) if not cl else \
            np.ascontiguousarray(x.transpose(0, 2, 3, 1)).transpose(0, 3, 1, 2)
        ym, s = k["max"].forward(xc, pool_geometry(x.shape, 3, 3, 2, 2, 1, 1))
        k["max"].backward(np.ones(ym.shape, x.dtype), s)
        ga = pool_geometry(x.shape, 2, 2, 2, 2, 0, 0)
        ya, _ = k["avg"].forward(xc, ga)
        k["avg"].backward(np.ones(ya.shape, x.dtype), ga)
    for op in (k["relu"], k["sigmoid"]):
        op.backward(x, op.forward(x))
    k["sgd"](w.copy(), w, 0.1)
    k["dropout"].forward(x, 0.5, 2**64 - 1)


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

    def test_cuda_kernels_type_for_the_gpu_with_the_algorithms_arguments():
        """The simulator runs the kernels as Python, so it never sees Numba's typing.
        Here every kernel is typed and lowered for the real CUDA target (Numba's
        front end and LLVM, no GPU and no NVVM needed) with the very arguments the
        GPU algorithms pass (recorded instead of launched): float32 sums stay
        float32, and the dropout hash stays uint64 (int64 mixed with uint64 types as
        float64 in Numba, which would silently change the mask)."""
        import pytest
        compiler = pytest.importorskip("numba.cuda.compiler",
                                       reason="numba-cuda is not installed")
        if not hasattr(compiler, "compile_cuda"):
            pytest.skip("this numba-cuda has no numba.cuda.compiler.compile_cuda")
        from numba.cuda import types
        from numba.cuda.typing.typeof import Purpose, typeof

        calls = []
        k = gpu_algorithms(lambda loop, total, *args: calls.append((loop, args)))
        rng = np.random.default_rng(0)
        # recorded, not run: the kernels' outputs stay uninitialised, and the GEMMs that
        # read them may overflow; only the arguments matter here
        with np.errstate(over="ignore", invalid="ignore"):
            for dtype in (np.float32, np.float64):
                x = rng.standard_normal((2, 3, 7, 6)).astype(dtype)
                w, b = rng.standard_normal((4, 3, 3, 3)).astype(dtype), np.zeros(4, dtype)
                exercise(k, x, w, b)
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

    from strategies import batch_geometry
    from tinyalex.kernels.geometry import conv_geometry, pool_geometry
    from tinyalex.kernels.gpu_launch import Launcher
    from tinyalex.ops import activation, conv, pool
    from tinyalex.ops.dense import MATMUL_REFERENCE
    from tinyalex.ops.im2col import im2col
    from tinyalex.optim import sgd_update_reference

    SIM = gpu_algorithms(Launcher(simulated=True, threads=8, max_blocks=2))
    DTYPES = st.sampled_from([np.float32, np.float64])
    # the simulator runs the kernels as Python: uint64 hashing wraps with a warning
    warnings.filterwarnings("ignore", "overflow encountered", RuntimeWarning)

    def geometry(pool=False):      # tiny: the simulator runs each kernel thread as Python
        return batch_geometry(pool=pool, batch=2, channels=2, kernel=3, pad=1, stride=2,
                              extra=2)

    def tol(dtype):
        return dict(rtol=1e-4, atol=1e-5) if dtype == np.float32 else dict(rtol=1e-10)

    @settings(max_examples=6)
    @given(g=geometry(), dtype=DTYPES, cl=st.booleans(), seed=st.integers(0, 2**16))
    @example(g=(1, 2, 2, 3, 2, 3, 1, 1, 0, 0), dtype=np.float32, cl=True, seed=0)  # kernel = input
    def test_im2col_col2im_and_conv(g, dtype, cl, seed):
        """Both column orders: the GEMM's columns (kh, kw, c) over channels-last memory
        (the default) and the reference's (c, kh, kw) (TINYALEX_CONV=im2col)."""
        N, C, H, W, KH, KW, SH, SW, PH, PW = g
        rng = np.random.default_rng(seed)
        x = rng.standard_normal((N, C, H, W)).astype(dtype)
        OC = 2
        w = rng.standard_normal((OC, C, KH, KW)).astype(dtype)
        b = rng.standard_normal(OC).astype(dtype)
        geo = conv_geometry(x.shape, w.shape, SH, SW, PH, PW)
        algorithm = SIM["conv"] if cl else SIM["conv_ref_order"]
        cols = algorithm._columns(np.ascontiguousarray(x.transpose(0, 2, 3, 1)), 0, N, geo, x.dtype)
        ref_cols = im2col(x, KH, KW, SH, SW, PH, PW)
        if cl:      # (c, kh, kw) -> (kh, kw, c), the channels-last order
            ref_cols = ref_cols.reshape(-1, C, KH, KW).transpose(0, 2, 3, 1).reshape(ref_cols.shape)
        np.testing.assert_array_equal(cols, ref_cols)
        y_ref, s_ref = conv.REFERENCE.forward(x, w, b, geo, True)
        y, s = algorithm.forward(x, w, b, geo, True)
        np.testing.assert_allclose(y, y_ref, **tol(dtype))
        gy = rng.standard_normal(y.shape).astype(dtype)
        for a, e in zip(algorithm.backward(gy, s, True, True, True),
                        conv.REFERENCE.backward(gy, s_ref, True, True, True)):
            np.testing.assert_allclose(a, e, **tol(dtype))

    @settings(max_examples=6)
    @given(g=geometry(pool=True), dtype=DTYPES, cl=st.booleans(), seed=st.integers(0, 2**16))
    def test_pooling(g, dtype, cl, seed):
        """Plain (N, C, H, W) memory is pooled as N*C one-channel images, channels-last
        memory as it lies (``layout.py``)."""
        N, C, H, W, KH, KW, SH, SW, PH, PW = g
        rng = np.random.default_rng(seed)
        x = np.round(rng.standard_normal((N, H, W, C))).astype(dtype)     # with ties
        x = x.transpose(0, 3, 1, 2) if cl else np.ascontiguousarray(x.transpose(0, 3, 1, 2))
        pg = pool_geometry(x.shape, KH, KW, SH, SW, PH, PW)
        y_ref, s_ref = pool.MAX_REFERENCE.forward(x, pg)
        y, s = SIM["max"].forward(x, pg)
        np.testing.assert_array_equal(y, y_ref)
        gy = rng.standard_normal(y.shape).astype(dtype)
        np.testing.assert_array_equal(SIM["max"].backward(gy, s),
                                      pool.MAX_REFERENCE.backward(gy, s_ref))
        np.testing.assert_allclose(SIM["avg"].forward(x, pg)[0],
                                   pool.AVG_REFERENCE.forward(x, pg)[0], **tol(dtype))
        np.testing.assert_allclose(SIM["avg"].backward(gy, pg),
                                   pool.AVG_REFERENCE.backward(gy, pg), **tol(dtype))

    @settings(max_examples=6)
    @given(n=st.integers(1, 40), dtype=DTYPES, seed=st.integers(0, 2**16),
           p=st.sampled_from([0.0, 0.5, 0.9, 1.0]))
    def test_elementwise(n, dtype, seed, p):
        rng = np.random.default_rng(seed)
        x = (rng.standard_normal((n, 2)) * 4).astype(dtype).T        # a transposed view
        gy = rng.standard_normal(x.shape).astype(dtype)
        relu, sig = activation.RELU_REFERENCE, activation.SIGMOID_REFERENCE
        y = SIM["relu"].forward(x)
        np.testing.assert_array_equal(y, relu.forward(x))
        np.testing.assert_array_equal(SIM["relu"].backward(gy, y), relu.backward(gy, y))
        s = SIM["sigmoid"].forward(x)
        np.testing.assert_allclose(s, sig.forward(x), **tol(dtype))
        np.testing.assert_allclose(SIM["sigmoid"].backward(gy, s), sig.backward(gy, s),
                                   **tol(dtype))
        p_sim, p_ref = x.copy(), x.copy()
        SIM["sgd"](p_sim, gy, 0.25)
        np.testing.assert_allclose(p_sim, sgd_update_reference(p_ref, gy, 0.25), **tol(dtype))
        # one seed, one mask: the same on the CPU (NumPy, Numba) and the GPU kernel
        np.testing.assert_array_equal(SIM["dropout"].forward(x, p, seed),
                                      activation.DROPOUT_REFERENCE.forward(x, p, seed))
        # the fully connected layers' GEMM: a fresh array, operands in any order
        np.testing.assert_allclose(SIM["matmul"](x, gy.T), MATMUL_REFERENCE(x, gy.T),
                                   **tol(dtype))

    def test_the_simulator_is_what_ran():
        from numba import cuda
        assert cuda.jit.__module__.startswith("numba.cuda.simulator")
