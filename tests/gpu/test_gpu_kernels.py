"""The GPU algorithms on a real GPU (CuPy arrays: NVRTC-compiled kernels, cuBLAS)
against the readable references, the TF32 / strict-FP32 flag, the two GEMM paths, the
loss's device flag, the fused layers, and a training step on the GPU against the CPU.

Skipped, with the reason, where CuPy or a GPU is missing (no GPU has run them yet);
the same launch code is checked without a GPU by ``test_gpu_emulated.py`` (the CUDA C
sources built by g++) and ``test_gpu_host_logic.py`` (stand-ins for CuPy and cuBLAS).
Run on a GPU machine by ``benchmarks/gpu_check.sh``. One test runs everywhere: the
freshness check the GPU matmul test relies on, against the CPU's matmul and against
arrays that do share memory.
"""

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import tinyalex
import tinyalex.kernels as kernels
from tinyalex import backend as B, nn
from tinyalex.kernels import dense_cpu
from tinyalex.kernels.geometry import conv_geometry, pool_geometry
from tinyalex.ops import activation, conv, dense, pool
from tinyalex.ops.im2col import im2col
from tinyalex.ops.loss import read_loss
from helpers.strategies import batch_geometry

gpu = pytest.mark.skipif(not B.cupy_available(),
                         reason=f"no usable GPU: {B.cupy_unavailable_reason()}")

F32 = np.dtype(np.float32)


def gpu_conv(order="kh,kw,c"):
    from tinyalex.kernels import conv_im2col_gpu
    return conv_im2col_gpu.for_cupy(order)


def host(a):
    return B.to_numpy(a)


def dev(a):
    return B.to_backend(np.ascontiguousarray(a), "cupy")


def geometry(pool=False):
    return batch_geometry(pool=pool, batch=3, channels=5, kernel=5, pad=2, stride=3, extra=8)


DTYPES = st.sampled_from([np.float32, np.float64])


@gpu
@settings(max_examples=20)
@given(g=geometry(), dtype=DTYPES, seed=st.integers(0, 2**16))
def test_gpu_conv_im2col_col2im_match_the_reference(g, dtype, seed):
    N, C, H, W, KH, KW, SH, SW, PH, PW = g
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((N, C, H, W)).astype(dtype)
    w = rng.standard_normal((3, C, KH, KW)).astype(dtype)
    b = rng.standard_normal(3).astype(dtype)
    geo = conv_geometry(x.shape, w.shape, SH, SW, PH, PW)
    k = gpu_conv("c,kh,kw")                     # the reference's column order
    cols = k._columns(dev(x), geo, x.dtype)
    np.testing.assert_array_equal(host(cols), im2col(x, KH, KW, SH, SW, PH, PW))
    with kernels.tf32(False):
        for k in (gpu_conv("c,kh,kw"), gpu_conv("kh,kw,c")):
            y_ref, s_ref = conv.REFERENCE.forward(x, w, b, geo, True)
            y, s = k.forward(dev(x), dev(w), dev(b), geo, True)
            tol = dict(rtol=1e-4, atol=1e-4) if dtype == np.float32 else dict(rtol=1e-9)
            np.testing.assert_allclose(host(y), y_ref, **tol)
            gy = rng.standard_normal(y.shape).astype(dtype)
            for a, e in zip(k.backward(dev(gy), s, True, True, True),
                            conv.REFERENCE.backward(gy, s_ref, True, True, True)):
                np.testing.assert_allclose(host(a), e, **tol)


@gpu
@settings(max_examples=20)
@given(g=geometry(pool=True), dtype=DTYPES, seed=st.integers(0, 2**16))
def test_gpu_pooling_matches_the_reference(g, dtype, seed):
    N, C, H, W, KH, KW, SH, SW, PH, PW = g
    rng = np.random.default_rng(seed)
    x = np.round(rng.standard_normal((N, C, H, W))).astype(dtype)
    pg = pool_geometry(x.shape, KH, KW, SH, SW, PH, PW)
    fast_max = pool.pool2d_algorithm("max", pg, x.dtype, "cupy")
    fast_avg = pool.pool2d_algorithm("avg", pg, x.dtype, "cupy")
    y_ref, s_ref = pool.MAX_REFERENCE.forward(x, pg)
    y, s = fast_max.forward(dev(x), pg)
    np.testing.assert_array_equal(host(y), y_ref)
    gy = rng.standard_normal(y.shape).astype(dtype)
    np.testing.assert_array_equal(host(fast_max.backward(dev(gy), s)),
                                  pool.MAX_REFERENCE.backward(gy, s_ref))
    np.testing.assert_allclose(host(fast_avg.forward(dev(x), pg)[0]),
                               pool.AVG_REFERENCE.forward(x, pg)[0], rtol=1e-5)
    np.testing.assert_allclose(host(fast_avg.backward(dev(gy), pg)),
                               pool.AVG_REFERENCE.backward(gy, pg), rtol=1e-5, atol=1e-6)


@gpu
def test_gpu_elementwise_and_dropout_mask_equal_the_cpu():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((64, 300)).astype(np.float32)
    gy = rng.standard_normal(x.shape).astype(np.float32)
    relu = activation.activation_algorithm("relu", F32, "cupy")
    sigmoid = activation.activation_algorithm("sigmoid", F32, "cupy")
    dropout = activation.activation_algorithm("dropout", F32, "cupy")
    y = relu.forward(dev(x))
    np.testing.assert_array_equal(host(y), activation.RELU_REFERENCE.forward(x))
    np.testing.assert_array_equal(host(relu.backward(dev(gy), y)),
                                  activation.RELU_REFERENCE.backward(gy, host(y)))
    np.testing.assert_allclose(host(sigmoid.forward(dev(x))),
                               activation.SIGMOID_REFERENCE.forward(x), rtol=1e-6)
    from tinyalex.kernels import elementwise_gpu
    stream = dropout.draw_seed()
    base, step = (int(v) for v in host(dropout.rng.state))
    np.testing.assert_array_equal(
        host(dropout.forward(dev(x), 0.5, stream)),
        activation.DROPOUT_REFERENCE.forward(x, 0.5, elementwise_gpu.dropout_seed(base, step, stream)))


def extent(a):
    """[first, last + 1) byte addresses that array ``a`` (NumPy or CuPy, any strides)
    can touch, from its array interface."""
    iface = getattr(a, "__cuda_array_interface__", None) or a.__array_interface__
    start, shape = iface["data"][0], tuple(iface["shape"])
    itemsize = np.dtype(iface["typestr"]).itemsize
    strides = iface.get("strides") or tuple(
        itemsize * int(np.prod(shape[i + 1:], dtype=np.int64)) for i in range(len(shape)))
    if 0 in shape:
        return start, start
    low = start + sum(min(0, (n - 1) * st) for n, st in zip(shape, strides))
    high = start + sum(max(0, (n - 1) * st) for n, st in zip(shape, strides)) + itemsize
    return low, high


def assert_fresh(result, *others):
    """``result`` owns memory of its own: its byte range overlaps none of ``others``'
    (all on one device: addresses of host and device memory are not comparable)."""
    lo, hi = extent(result)
    for i, other in enumerate(others):
        olo, ohi = extent(other)
        assert hi <= olo or ohi <= lo, f"the result shares memory with argument {i}"


def check_matmul_is_fresh(matmul, to_device, a, b):
    """Two calls of ``matmul`` on the same (M, K) and (K, N) inputs: each result holds
    a @ b, shares memory with neither input nor the earlier result, and the second call
    leaves the inputs and the first result as they were. Returns the first result."""
    da, db = to_device(a), to_device(b)
    first = matmul(da, db)
    kept = host(first).copy()
    second = matmul(da, db)
    assert first.shape == second.shape == (a.shape[0], b.shape[1])
    assert first.dtype == second.dtype == a.dtype
    assert_fresh(first, da, db)
    assert_fresh(second, da, db, first)
    np.testing.assert_array_equal(host(first), kept)          # not overwritten
    np.testing.assert_array_equal(host(da), a)
    np.testing.assert_array_equal(host(db), b)
    np.testing.assert_array_equal(host(second), kept)         # the same product again
    return first


def test_freshness_check_on_the_cpu_kernel_set():
    """The logic of the GPU test below, where it can run: the CPU's matmul is
    fresh, and the check refuses results that are an input, a view of one, or a
    workspace handed out twice."""
    rng = np.random.default_rng(3)
    a = rng.standard_normal((64, 512)).astype(np.float32)
    b = rng.standard_normal((512, 96)).astype(np.float32)
    got = check_matmul_is_fresh(dense_cpu.MATMUL, np.ascontiguousarray, a, b)
    np.testing.assert_allclose(got, a.astype(np.float64) @ b.astype(np.float64),
                               rtol=1e-4, atol=1e-4)
    workspace = np.empty((64, 96), np.float32)

    def reused(x, y):
        np.matmul(x, y, out=workspace)
        return workspace

    for bad in (reused, lambda x, y: x[:, :96], lambda x, y: y.T[::-1, :64].T):
        with pytest.raises(AssertionError, match="shares memory"):
            check_matmul_is_fresh(bad, np.ascontiguousarray, a, b)


@gpu
def test_gpu_matmul_is_strict_fp32_and_fresh():
    """The fully connected layers' GEMM (``matmul_algorithm``) stays FP32, as PyTorch's
    ``matmul.allow_tf32 = False`` default, whatever the convolutions' TF32 flag, and
    returns a fresh array each call (check_matmul_is_fresh)."""
    rng = np.random.default_rng(3)
    a = rng.standard_normal((64, 512)).astype(np.float32)
    b = rng.standard_normal((512, 96)).astype(np.float32)
    want = a.astype(np.float64) @ b.astype(np.float64)
    with kernels.tf32(True):
        got = check_matmul_is_fresh(dense.matmul_algorithm(F32, "cupy"), dev, a, b)
    np.testing.assert_allclose(host(got), want, rtol=1e-4, atol=1e-4)   # TF32 errs ~1e-2


@gpu
def test_tf32_flag_switches_the_conv_gemm_precision():
    cp = B.cupy_module()
    if int(cp.cuda.Device().compute_capability) < 80:
        pytest.skip("this GPU has no TF32 (compute capability < 8.0)")
    rng = np.random.default_rng(0)
    x = rng.standard_normal((4, 64, 12, 12)).astype(np.float32)
    w = rng.standard_normal((32, 64, 3, 3)).astype(np.float32)
    geo = conv_geometry(x.shape, w.shape, 1, 1, 1, 1)
    exact, _ = conv.REFERENCE.forward(x.astype(np.float64), w.astype(np.float64), None,
                                      geo, False)

    def error(enabled):
        with kernels.tf32(enabled):
            y, _ = gpu_conv().forward(dev(x), dev(w), None, geo, False)
        return np.abs(host(y) - exact).max() / np.abs(exact).max()

    strict, tf32 = error(False), error(True)
    assert strict < 1e-5                   # FP32: float rounding only
    assert 1e-5 < tf32 < 1e-2              # TF32: a 10-bit mantissa inside the GEMM
    assert kernels.tf32_enabled()          # the default is back after the block


@gpu
def test_a_training_step_on_the_gpu_matches_the_cpu():
    def step(backend):
        tinyalex.manual_seed(0)
        net = tinyalex.models.lenet().to(backend)
        x = tinyalex.tensor(np.random.default_rng(1).random((8, 1, 28, 28), np.float32),
                            backend=backend)
        with kernels.tf32(False):
            loss = nn.CrossEntropyLoss()(net(x), tinyalex.tensor(np.arange(8) % 10,
                                                                backend=backend))
            loss.backward()
        return [loss.item()] + [p.grad.numpy() for p in net.parameters()]

    for a, b in zip(step("cupy"), step("numpy")):
        np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-5)


@gpu
def test_the_direct_cublas_gemm_equals_cupy_matmul():
    """gemm_gpu's two paths on the same operands (C-ordered, transposed, row blocks)."""
    from tinyalex.kernels import gemm_gpu
    cp = B.cupy_module()
    direct = gemm_gpu.for_cupy()
    assert isinstance(direct, gemm_gpu.CublasGemm), direct.name
    via_cupy = gemm_gpu.CupyGemm(cp)
    rng = np.random.default_rng(4)
    for dtype in (np.float32, np.float64):
        a = dev(rng.standard_normal((70, 33)).astype(dtype))
        b = dev(rng.standard_normal((50, 33)).astype(dtype)).T          # (33, 50), transposed
        for tf32 in (False, True):
            outs = [cp.empty((70, 50), dtype=dtype) for _ in range(2)]
            direct(a, b, outs[0], tf32=tf32)
            via_cupy(a, b, outs[1], tf32=tf32)
            tol = dict(rtol=1e-2, atol=1e-2) if tf32 and dtype == np.float32 else \
                dict(rtol=1e-5, atol=1e-5)
            np.testing.assert_allclose(host(outs[0]), host(outs[1]), **tol)
        acc = cp.ones((70, 50), dtype=dtype)
        direct(a, b, acc, accumulate=True)
        np.testing.assert_allclose(host(acc), host(a) @ host(b) + 1, rtol=1e-5, atol=1e-5)


@gpu
def test_gpu_loss_reports_a_bad_label_at_the_read_back():
    logits = tinyalex.tensor(np.zeros((3, 4), np.float32), backend="cupy", requires_grad=True)
    labels = tinyalex.tensor(np.array([1, 4, 0]), backend="cupy")
    loss = nn.CrossEntropyLoss()(logits, labels)             # no wait, no error yet
    with pytest.raises(ValueError, match="lies outside"):
        loss.item()
    good = nn.CrossEntropyLoss()(logits, tinyalex.tensor(np.array([1, 3, 0]), backend="cupy"))
    value, correct = read_loss(good)
    np.testing.assert_allclose(value, np.log(4), rtol=1e-6)
    assert correct == 1                                      # argmax 0 for every row


@gpu
def test_fused_layers_on_the_gpu_equal_the_cpu():
    """AlexNet's pattern (Conv2d+ReLU, Linear+ReLU fused on the GPU) against the CPU."""
    def step(backend):
        tinyalex.manual_seed(0)
        net = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                            nn.Conv2d(8, 6, 3), nn.ReLU(), nn.Flatten(), nn.Linear(6 * 4 * 4, 16),
                            nn.ReLU(), nn.Linear(16, 3)).to(backend)
        x = tinyalex.tensor(np.random.default_rng(1).random((4, 1, 12, 12), np.float32),
                            backend=backend)
        with kernels.tf32(False):
            loss = nn.CrossEntropyLoss()(net(x), tinyalex.tensor(np.arange(4) % 3,
                                                                backend=backend))
            loss.backward()
        return [loss.item()] + [p.grad.numpy() for p in net.parameters()]

    for a, b in zip(step("cupy"), step("numpy")):
        np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-5)


@gpu
def test_float32_subnormals_survive_the_gpu_kernels():
    """NVRTC builds the kernels with --ftz=false (kernels/cuda_build.py): a positive
    subnormal passes ReLU and wins a max-pooling window against 0, as on the CPU
    (CuPy's own compile path, -ftz=true, would give 0 and the other index)."""
    from tinyalex.kernels import elementwise_gpu, gpu_modules, pool_gpu
    cp = B.cupy_module()
    modules = gpu_modules.for_cupy(cp)
    tiny = np.float32(1e-40)
    x = dev(np.array([tiny, -tiny, 0, 3 * tiny], np.float32))
    y = cp.full(4, np.nan, np.float32)
    modules.launch(elementwise_gpu.relu_forward(4, np.float32), x=x, y=y)
    np.testing.assert_array_equal(host(y), [tiny, 0, 0, 3 * tiny])
    pair = dev(np.array([0, tiny], np.float32))             # one image 1x2, one channel
    out, arg = cp.full(1, np.nan, np.float32), cp.full(1, -1, np.int32)
    modules.launch(pool_gpu.max_pool_forward(1, 1, 2, 1, 1, 2, 1, 2, 0, 0, np.float32),
                   x=pair, y=out, argmax=arg)
    assert host(out)[0] == tiny and host(arg)[0] == 1
