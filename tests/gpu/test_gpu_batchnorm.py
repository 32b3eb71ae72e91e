"""The batch-norm CUDA C kernels (kernels/cuda/batchnorm.cu, planned and launched by
kernels/batchnorm_gpu.py) against the readable reference (tinyalex/ops/batchnorm.py).

1. Emulated (the sources built by g++, tests/conftest.py's ``cuda_emulation``), through
   the GPU algorithm's own launch code, on hypothesis-drawn shapes in every memory
   order the ops hand over ((N, C), (N, C, L), (N, C, H, W) plain and channels-last),
   float32 and float64, 32- and 64-bit indices, grids of 1 to 3 blocks (every
   grid-stride loop wraps) and the default: against the reference computed in float64
   on the same values, in train and eval mode, with and without affine. Eval's
   normalize equals the reference's in the input's dtype bit for bit.
2. The op and nn.BatchNorm2d on the emulated GPU path (``emulated_cupy``): the chooser
   hands out the kernel, a float64 gradcheck through it, a training step's outputs,
   gradients and running statistics equal the CPU's, and the launches are counted.
3. On a real GPU (CuPy): skipped, with the reason, where CuPy or a GPU is missing; no
   GPU has run it yet.

The NVRTC build of batchnorm.cu (registers, spills, the parameters each plan packs):
tests/gpu/test_cuda_sources.py, with the other sources.
"""

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import tinyalex
import tinyalex.nn.functional as F
from tinyalex import nn
from tinyalex.kernels import batchnorm_gpu
from tinyalex.kernels.cuda_emulation import EmulatedModules
from tinyalex.kernels import cuda_launch as plan
from tinyalex.ops import batchnorm
from helpers.checks import check, host, on_gpu
from helpers.gpu_emulation import EmulatedCupy

REF = batchnorm.REFERENCE
LAYOUTS = ("2d", "3d", "plain", "channels_last")


@st.composite
def bn_case(draw):
    """(shape, layout): N >= 2 so that a training batch has M >= 2 entries a channel."""
    layout = draw(st.sampled_from(LAYOUTS))
    N, C = draw(st.integers(2, 5)), draw(st.integers(1, 6))
    rest = {"2d": (), "3d": (draw(st.integers(1, 7)),)}.get(
        layout, (draw(st.integers(1, 6)), draw(st.integers(1, 6))))
    return (N, C) + rest, layout


def values(rng, shape, layout, dtype, offset):
    """N(offset, 2) values of ``shape`` (exact in ``dtype``) in the layout's memory."""
    x = (offset + 2 * rng.standard_normal(shape)).astype(dtype)
    if layout == "channels_last":
        x = np.ascontiguousarray(x.transpose(0, 2, 3, 1)).transpose(0, 3, 1, 2)
    return x


def close(got, want, dtype, scale):
    """Within float32's (or float64's) rounding of values of size ``scale``."""
    r = 2e-5 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(got, want, rtol=r, atol=r * scale)


@pytest.fixture(scope="module")
def make(cuda_emulation):
    """The GPU algorithm on NumPy arrays, its kernels emulated, grids of ``max_blocks``."""
    def algorithm(max_blocks):
        return batchnorm_gpu.BatchNormGPU(EmulatedCupy(),
                                          EmulatedModules(cuda_emulation),
                                          max_blocks)
    return algorithm


PLANS = ("partial_stats", "stats", "normalize", "partial_grads", "grad_sums", "backward")


def index_width(mp, bits):
    """Every plan batchnorm_gpu makes asks for ``bits``-bit indices."""
    for family in PLANS:
        planned = getattr(batchnorm_gpu, family)
        mp.setattr(batchnorm_gpu, family,
                   lambda *a, _p=planned, **k: _p(*a, **{**k, "index_bits": bits}))


# == 1. the kernels through their launch plans, emulated ==================================

@pytest.mark.parametrize("dtype", (np.float32, np.float64))
@pytest.mark.parametrize("training", (True, False))
@settings(max_examples=14, deadline=None)
@given(case=bn_case(), affine=st.booleans(), bits=st.sampled_from([32, 64]),
       blocks=st.sampled_from([1, 2, 3, plan.MAX_BLOCKS]), offset=st.sampled_from([0, 10]),
       seed=st.integers(0, 2**32 - 1))
def test_kernels_equal_the_float64_reference(make, dtype, training, case, affine, bits,
                                             blocks, offset, seed):
    shape, layout = case
    rng = np.random.default_rng(seed)
    C, eps = shape[1], 1e-5
    x = values(rng, shape, layout, dtype, offset)
    gy = rng.standard_normal(shape).astype(dtype)
    gamma = rng.standard_normal(C).astype(dtype) if affine else None
    beta = rng.standard_normal(C).astype(dtype) if affine else None
    mean = None if training else rng.standard_normal(C).astype(dtype)
    var = None if training else (rng.random(C) + 0.5).astype(dtype)
    alg = make(blocks)
    with pytest.MonkeyPatch.context() as mp:
        index_width(mp, bits)
        y, saved, bmean, bvar = alg.forward(x, gamma, beta, eps, mean, var)
        dx, dgamma, dbeta = alg.backward(gy, saved)

    f64 = lambda a: None if a is None else a.astype(np.float64)     # noqa: E731
    y64, saved64, mean64, var64 = REF.forward(f64(x), f64(gamma), f64(beta), eps, f64(mean),
                                              f64(var))
    dx64, dgamma64, dbeta64 = REF.backward(f64(gy), saved64)
    assert y.shape == dx.shape == shape and y.dtype == dx.dtype == dtype
    if layout == "channels_last":                    # results lie as the input does
        assert y.transpose(0, 2, 3, 1).flags.c_contiguous
        assert dx.transpose(0, 2, 3, 1).flags.c_contiguous
    close(y, y64, dtype, 1 + np.abs(y64).max())
    if training:
        close(bmean, mean64, dtype, offset + 2)
        close(bvar, var64, dtype, (offset + 2) ** 2)
    else:                      # normalize in x's dtype: the reference's arithmetic exactly
        np.testing.assert_array_equal(y, REF.forward(x, gamma, beta, eps, mean, var)[0])
    xhat64 = saved64[0]
    axes = batchnorm.channel_axes(len(shape))
    scale = np.abs(gy).astype(np.float64).sum(axis=axes) * (1 + np.abs(xhat64).max())
    k = (1.0 if gamma is None else np.abs(f64(gamma)).max()) * saved64[1].max()
    close(dx, dx64, dtype, k * (1 + scale.max() / (x.size // C)))
    if affine:
        assert dgamma.dtype == dbeta.dtype == dtype
        close(dgamma, dgamma64, dtype, scale.max())
        close(dbeta, dbeta64, dtype, scale.max())
    else:
        assert dgamma is None and dbeta is None


def test_welford_keeps_the_variance_of_values_far_from_zero(make):
    """float32 values 1000 + N(0, 0.01): E[x^2] - E[x]^2 would lose every digit; the
    one-pass Welford parts merged by Chan's formula keep the variance to ~1e-3."""
    rng = np.random.default_rng(5)
    x = (1000 + 0.01 * rng.standard_normal((64, 3, 17, 19))).astype(np.float32)
    _, _, mean, var = make(plan.MAX_BLOCKS).forward(x, None, None, 1e-5)
    want = x.astype(np.float64).var(axis=(0, 2, 3))
    np.testing.assert_allclose(var, want, rtol=2e-3)
    np.testing.assert_allclose(mean, x.astype(np.float64).mean(axis=(0, 2, 3)), rtol=1e-6)


def test_parts_fill_the_gpu_and_never_exceed_the_entries():
    assert batchnorm_gpu.parts(64, 32 * 48 * 48) == batchnorm_gpu.PAIRS // 64
    assert batchnorm_gpu.parts(64, 256 * 48 * 48) == batchnorm_gpu.PAIRS // 64
    assert batchnorm_gpu.parts(512, 32 * 3 * 3) == 32 * 3 * 3 // batchnorm_gpu.MIN_ENTRIES
    assert batchnorm_gpu.parts(4, 100) == 1 and batchnorm_gpu.parts(3, 2) == 1
    assert batchnorm_gpu.parts(1, 10**6) == 10**6 // batchnorm_gpu.MIN_ENTRIES
    assert batchnorm_gpu.parts(10**6, 10**6) == 1
    p = batchnorm_gpu.partial_stats(32, 64, 48 * 48, np.float32)
    assert p.kernel == "batch_norm_partial_stats_f32_i32" and p.source == "batchnorm"
    assert p.grid * p.block >= 64 * batchnorm_gpu.parts(64, 32 * 48 * 48)


def test_plans_refuse_what_the_kernels_cannot_take():
    with pytest.raises(ValueError, match="float32 or float64, got int32"):
        batchnorm_gpu.normalize(2, 3, 4, np.int32)
    with pytest.raises(ValueError, match="C must be an int >= 1, got 0"):
        batchnorm_gpu.partial_stats(2, 0, 4, np.float32)
    p = batchnorm_gpu.normalize(2, 3, 4, np.float32)
    x = np.zeros((2, 3, 4), np.float32)
    c = np.zeros(3, np.float32)
    with pytest.raises(ValueError, match="array 'x' must be C-contiguous float32 with 24"):
        p.args(x=x.transpose(0, 2, 1), mean=c, inv_std=c, gamma=None, beta=None, y=x)
    assert p.args(x=x, mean=c, inv_std=c, gamma=None, beta=None, y=x)[3] == np.uint64(0)


# == 2. the op and the layer on the emulated GPU path ========================================

def test_the_chooser_hands_the_kernel_to_cupy_arrays(emulated_cupy):
    assert batchnorm.batch_norm_algorithm(np.zeros((2, 3, 4, 4))) is emulated_cupy.batchnorm
    assert batchnorm.batch_norm_algorithm(np.zeros((2, 3))).name == "batchnorm kernel"
    with tinyalex.kernels.use("reference"):
        assert batchnorm.batch_norm_algorithm(np.zeros((2, 3))) is batchnorm.REFERENCE


@settings(max_examples=6, deadline=None)
@given(shape=st.sampled_from([(4, 3), (3, 2, 5), (2, 3, 4, 5)]), affine=st.booleans(),
       training=st.booleans(), seed=st.integers(0, 2**16))
def test_float64_gradcheck_through_the_kernels(emulated_cupy, shape, affine, training, seed):
    rng = np.random.default_rng(seed)
    C = shape[1]
    randn = lambda *s, scale=1.0: tinyalex.tensor(scale * rng.standard_normal(s),  # noqa: E731
                                                   requires_grad=True)
    x = randn(*shape, scale=2.0)
    w, b = (randn(C), randn(C)) if affine else (None, None)
    rm = tinyalex.tensor(rng.standard_normal(C))
    rv = tinyalex.tensor(rng.random(C) + 0.5)
    before = emulated_cupy.modules.launches

    def fn(*args):
        x, w, b = (args + (None, None))[:3]
        return F.batch_norm(x, None if training else rm, None if training else rv, w, b,
                            training=training, eps=1e-3)

    check(fn, *((x, w, b) if affine else (x,)))
    assert emulated_cupy.modules.launches > before          # the kernels ran


def _train_steps(model, x, steps=3):
    outs = []
    for i in range(steps):
        xt = tinyalex.tensor(x * (i + 1), requires_grad=True)
        out = model(xt)
        (out * out).sum().backward()
        outs.append((host(out), host(xt.grad), host(model.weight.grad), host(model.bias.grad)))
        model.weight.grad = model.bias.grad = None
    return outs


def test_batchnorm2d_steps_on_the_emulated_gpu_equal_the_cpu(emulated_cupy, monkeypatch):
    """Three training steps of nn.BatchNorm2d (float32, channels-last input, as a
    convolution returns it) on the emulated GPU path, then eval: outputs, gradients and
    running statistics equal the CPU reference's to float32 rounding; six launches a
    training step (three forward, three backward)."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((4, 5, 6, 7)).astype(np.float32)
    x = np.ascontiguousarray(x.transpose(0, 2, 3, 1)).transpose(0, 3, 1, 2)
    gpu, cpu = nn.BatchNorm2d(5), nn.BatchNorm2d(5)
    before = emulated_cupy.modules.launches
    got = _train_steps(gpu, x)
    assert emulated_cupy.modules.launches - before == 3 * 6
    gpu.eval()
    got_eval = host(gpu(tinyalex.tensor(x)))
    monkeypatch.undo()          # emulated_cupy's patches (this monkeypatch's) undone: the CPU
    with tinyalex.kernels.use("reference"):
        want = _train_steps(cpu, x)
        cpu.eval()
        want_eval = host(cpu(tinyalex.tensor(x)))
    for g, w in zip(got, want):
        for a, b in zip(g, w):
            np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4 * (1 + np.abs(b).max()))
    np.testing.assert_allclose(host(gpu.running_mean), host(cpu.running_mean), rtol=1e-5,
                               atol=1e-6)
    np.testing.assert_allclose(host(gpu.running_var), host(cpu.running_var), rtol=1e-5)
    assert int(host(gpu.num_batches_tracked)) == 3
    np.testing.assert_allclose(got_eval, want_eval, rtol=1e-5, atol=1e-5)


# == 3. on a real GPU =======================================================================

@on_gpu
@pytest.mark.parametrize("dtype", (np.float32, np.float64))
@pytest.mark.parametrize("shape", [(32, 64, 24, 24), (256, 10), (4, 3, 9)])
def test_gpu_batch_norm_matches_the_float64_reference(dtype, shape):
    from tinyalex import backend as B
    cp = B.cupy_module()
    rng = np.random.default_rng(1)
    x = (3 + 2 * rng.standard_normal(shape)).astype(dtype)
    gy = rng.standard_normal(shape).astype(dtype)
    C = shape[1]
    gamma, beta = rng.standard_normal(C).astype(dtype), rng.standard_normal(C).astype(dtype)
    alg = batchnorm.batch_norm_algorithm(cp.asarray(x))
    assert alg.name == "batchnorm kernel"
    y, saved, _, _ = alg.forward(cp.asarray(x), cp.asarray(gamma), cp.asarray(beta), 1e-5)
    dx, dgamma, dbeta = alg.backward(cp.asarray(gy), saved)
    y64, s64, _, _ = REF.forward(*(a.astype(np.float64) for a in (x, gamma, beta)), 1e-5)
    want = (y64,) + REF.backward(gy.astype(np.float64), s64)
    r = 1e-4 if dtype == np.float32 else 1e-10
    for got, w in zip((y, dx, dgamma, dbeta), want):
        np.testing.assert_allclose(host(got), w, rtol=r, atol=r * (1 + np.abs(w).max()))
