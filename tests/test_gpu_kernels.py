"""The fast GPU kernel set on a real GPU (CuPy arrays) against the readable references,
the TF32 / strict-FP32 flag, and a training step on the GPU against the CPU.

Skipped, with the reason, where CuPy or a GPU is missing (no GPU has run them yet);
the kernels' logic is checked without a GPU by ``test_kernels_cuda_sim.py``. Run on a
GPU machine by ``benchmarks/gpu_check.sh``. One test runs everywhere: the freshness
check the GPU matmul test relies on, against the CPU kernel set's matmul and against
arrays that do share memory.
"""

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import tinyalex
import tinyalex.kernels as kernels
from tinyalex import backend as B, nn
from strategies import batch_geometry

gpu = pytest.mark.skipif(not B.cupy_available(),
                         reason=f"no usable GPU: {B.cupy_unavailable_reason()}")

REF = kernels.kernel_set("numpy", "reference")


def fast():
    return kernels.kernel_set("cupy", "fast")


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
    k = fast()
    cols = k.im2col(dev(x), KH, KW, SH, SW, PH, PW)
    np.testing.assert_array_equal(host(cols), REF.im2col(x, KH, KW, SH, SW, PH, PW))
    np.testing.assert_array_equal(host(k.col2im(cols, x.shape, KH, KW, SH, SW, PH, PW)),
                                  REF.col2im(host(cols), x.shape, KH, KW, SH, SW, PH, PW))
    w = rng.standard_normal((3, C, KH, KW)).astype(dtype)
    b = rng.standard_normal(3).astype(dtype)
    with kernels.tf32(False):
        y_ref, s_ref = REF.conv2d_forward(x, w, b, SH, SW, PH, PW, True)
        y, s = k.conv2d_forward(dev(x), dev(w), dev(b), SH, SW, PH, PW, True)
        tol = dict(rtol=1e-4, atol=1e-4) if dtype == np.float32 else dict(rtol=1e-9)
        np.testing.assert_allclose(host(y), y_ref, **tol)
        gy = rng.standard_normal(y.shape).astype(dtype)
        for a, e in zip(k.conv2d_backward(dev(gy), s, True, True, True),
                        REF.conv2d_backward(gy, s_ref, True, True, True)):
            np.testing.assert_allclose(host(a), e, **tol)


@gpu
@settings(max_examples=20)
@given(g=geometry(pool=True), dtype=DTYPES, seed=st.integers(0, 2**16))
def test_gpu_pooling_matches_the_reference(g, dtype, seed):
    N, C, H, W, KH, KW, SH, SW, PH, PW = g
    rng = np.random.default_rng(seed)
    x = np.round(rng.standard_normal((N, C, H, W))).astype(dtype)
    k = fast()
    y_ref, a_ref = REF.max_pool2d_forward(x, KH, KW, SH, SW, PH, PW)
    y, a = k.max_pool2d_forward(dev(x), KH, KW, SH, SW, PH, PW)
    np.testing.assert_array_equal(host(y), y_ref)
    gy = rng.standard_normal(y.shape).astype(dtype)
    np.testing.assert_array_equal(
        host(k.max_pool2d_backward(dev(gy), a, x.shape, KH, KW, SH, SW, PH, PW)),
        REF.max_pool2d_backward(gy, a_ref, x.shape, KH, KW, SH, SW, PH, PW))
    np.testing.assert_allclose(host(k.avg_pool2d_forward(dev(x), KH, KW, SH, SW, PH, PW)),
                               REF.avg_pool2d_forward(x, KH, KW, SH, SW, PH, PW), rtol=1e-5)
    np.testing.assert_allclose(
        host(k.avg_pool2d_backward(dev(gy), x.shape, KH, KW, SH, SW, PH, PW)),
        REF.avg_pool2d_backward(gy, x.shape, KH, KW, SH, SW, PH, PW), rtol=1e-5, atol=1e-6)


@gpu
def test_gpu_elementwise_and_dropout_mask_equal_the_cpu():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((64, 300)).astype(np.float32)
    gy = rng.standard_normal(x.shape).astype(np.float32)
    k = fast()
    y = k.relu_forward(dev(x))
    np.testing.assert_array_equal(host(y), REF.relu_forward(x))
    np.testing.assert_array_equal(host(k.relu_backward(dev(gy), y)),
                                  REF.relu_backward(gy, host(y)))
    np.testing.assert_allclose(host(k.sigmoid_forward(dev(x))), REF.sigmoid_forward(x),
                               rtol=1e-6)
    np.testing.assert_array_equal(host(k.dropout(dev(x), 0.5, 1234)), REF.dropout(x, 0.5, 1234))


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
    """The logic of the GPU test below, where it can run: the CPU fast set's matmul is
    fresh, and the check refuses results that are an input, a view of one, or a
    workspace handed out twice."""
    rng = np.random.default_rng(3)
    a = rng.standard_normal((64, 512)).astype(np.float32)
    b = rng.standard_normal((512, 96)).astype(np.float32)
    cpu_fast = kernels.kernel_set("numpy", "fast")
    got = check_matmul_is_fresh(cpu_fast.matmul, np.ascontiguousarray, a, b)
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
    """The fully connected layers' GEMM (the ``matmul`` entry) stays FP32, as PyTorch's
    ``matmul.allow_tf32 = False`` default, whatever the convolutions' TF32 flag, and
    returns a fresh array each call (check_matmul_is_fresh)."""
    rng = np.random.default_rng(3)
    a = rng.standard_normal((64, 512)).astype(np.float32)
    b = rng.standard_normal((512, 96)).astype(np.float32)
    want = a.astype(np.float64) @ b.astype(np.float64)
    with kernels.tf32(True):
        got = check_matmul_is_fresh(fast().matmul, dev, a, b)
    np.testing.assert_allclose(host(got), want, rtol=1e-4, atol=1e-4)   # TF32 errs ~1e-2


@gpu
def test_tf32_flag_switches_the_conv_gemm_precision():
    cp = B.cupy_module()
    if int(cp.cuda.Device().compute_capability) < 80:
        pytest.skip("this GPU has no TF32 (compute capability < 8.0)")
    rng = np.random.default_rng(0)
    x = rng.standard_normal((4, 64, 12, 12)).astype(np.float32)
    w = rng.standard_normal((32, 64, 3, 3)).astype(np.float32)
    exact, _ = REF.conv2d_forward(x.astype(np.float64), w.astype(np.float64), None,
                                  1, 1, 1, 1, False)

    def error(enabled):
        with kernels.tf32(enabled):
            y, _ = fast().conv2d_forward(dev(x), dev(w), None, 1, 1, 1, 1, False)
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
