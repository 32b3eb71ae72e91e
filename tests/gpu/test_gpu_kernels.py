"""The GPU kernels against the readable references, the same launch code three ways:

1. The CUDA C kernels of ``kernels/cuda/``, built by g++ against
   ``kernels/cuda/emulate.h`` (once per session), run on the CPU through the ops' launch
   plans (``conv_im2col_gpu.py``, ``pool_gpu.py``, ``elementwise_gpu.py``, on
   ``kernels/cuda_launch.py``), the very launch path the GPU takes, and equal the NumPy
   references on hypothesis-drawn shapes, strides and paddings, in float32 and float64,
   with 32- and 64-bit indices and grids small enough that every grid-stride loop wraps:
   exactly where the kernel adds in the reference's order, to a tight tolerance where
   exp/log or NumPy's pairwise sums differ (skipped, with the reason, where g++ is absent).
2. The GPU path without a GPU: the very algorithm classes the cupy backend runs
   (``kernels/conv_im2col_gpu.py``, ``pool_gpu.py``, ``elementwise_gpu.py``), given the
   CPU emulation's module provider (``cuda_emulation.EmulatedModules``: the same sources
   built by g++) and NumPy's GEMM, on NumPy arrays, against the readable references. The
   Python launch code is the GPU's: plans, grids (two blocks at most here, so every
   grid-stride loop wraps), argument packing, memory orders, the fused epilogues, the
   columns kept for backward, the device-side dropout state, the loss's device flag, the
   flat SGD step. The last tests of this part run whole training steps through the ops
   and ``nn.Sequential`` with the backend reported as "cupy" (``emulated_cupy``): the
   choosers then hand out the emulated GPU algorithms, so the fusion of Conv2d/Linear +
   ReLU, dropout's device seeds, the loss read back and ``SGD(flat=...)``'s one kernel
   are checked against the CPU reference step, and the kernels a step launches are
   counted.
3. The GPU algorithms on a real GPU (CuPy arrays: NVRTC-compiled kernels, cuBLAS)
   against the readable references, the TF32 / strict-FP32 flag, the two GEMM paths,
   the loss's device flag, the fused layers, and a training step on the GPU against the
   CPU. Skipped, with the reason, where CuPy or a GPU is missing (no GPU has run them
   yet); run on a GPU machine by ``benchmarks/gpu_check.sh``. One test runs everywhere:
   the freshness check the GPU matmul test relies on, against the CPU's matmul and
   against arrays that do share memory.

What parts 1 and 2 cannot check: CuPy itself (RawModule, NVRTC, streams), cuBLAS, and
the real GPU's exp/log (a few ulp from the C library's); part 3 does, on a GPU. The
sources compiled by the real NVRTC and the launch plans' host logic:
``test_cuda_sources.py``; CuPy and cuBLAS stand-ins: ``test_gpu_host_logic.py``.
"""

import re

import numpy as np
import pytest
from hypothesis import example, given, settings, strategies as st

import tinyalex
import tinyalex.kernels as kernels
from tinyalex import backend as B, nn
from tinyalex import random as R
from tinyalex.kernels import conv_im2col_gpu, cuda_launch, dense_cpu, \
    elementwise_gpu, pool_gpu
from tinyalex.kernels import cuda_launch as plan          # the plans' shared parts
from tinyalex.kernels.geometry import conv_geometry, pool_geometry
from tinyalex.ops import activation, conv, dense, loss, pool
from tinyalex.ops.activation import DROPOUT_REFERENCE, RELU_REFERENCE, SIGMOID_REFERENCE
from tinyalex.ops.im2col import col2im, im2col
from tinyalex.ops.loss import cross_entropy, read_loss
from tinyalex.optim import SGD, sgd_update_reference
from tinyalex.tensor import Tensor
from helpers.checks import on_gpu
from helpers.gpu_emulation import Algorithms
from helpers.strategies import batch_geometry


# == 1. the CUDA C kernels through their launch plans, emulated ==========================

def max_pool_reference(x, *window):
    """(y, argmax (N*C*OH*OW,)) of the readable reference (tinyalex/ops/pool.py)."""
    y, (argmax, _) = pool.MAX_REFERENCE.forward(x, pool_geometry(x.shape, *window))
    return y, argmax


def max_pool_backward_reference(gy, argmax, x_shape, *window):
    return pool.MAX_REFERENCE.backward(gy, (argmax, pool_geometry(x_shape, *window)))


def avg_pool_reference(x, *window):
    return pool.AVG_REFERENCE.forward(x, pool_geometry(x.shape, *window))[0]


def avg_pool_backward_reference(gy, x_shape, *window):
    return pool.AVG_REFERENCE.backward(gy, pool_geometry(x_shape, *window))


KERNEL_DTYPES = (np.float32, np.float64)
BITS = (32, 64)
GRIDS = st.sampled_from([1, 2, 3, plan.MAX_BLOCKS])     # max_blocks: 1-3 wrap the loops
FEW = settings(max_examples=12)


def kernel_tol(dtype):
    return dict(rtol=2e-6, atol=1e-7) if dtype == np.float32 else dict(rtol=1e-14, atol=1e-15)


@pytest.fixture
def emu(cuda_emulation):
    return cuda_emulation          # conftest.py: built by g++ once per session


def data(seed, shape, dtype, ties=False):
    rng = np.random.default_rng(seed)
    if ties:                                        # few distinct values: ties in windows
        return rng.integers(-3, 4, size=shape).astype(dtype)
    return rng.standard_normal(shape).astype(dtype)


def nhwc(a):
    """(N, C, H, W) values in (N, H, W, C) memory."""
    return np.ascontiguousarray(a.transpose(0, 2, 3, 1))


def cl_columns(cols, C, KH, KW):
    """Reference columns (c, kh, kw) reordered to (kh, kw, c)."""
    return np.ascontiguousarray(
        cols.reshape(-1, C, KH, KW).transpose(0, 2, 3, 1).reshape(cols.shape[0], -1))


@pytest.mark.parametrize("bits", BITS)
@pytest.mark.parametrize("dtype", KERNEL_DTYPES)
@FEW
@given(g=batch_geometry(), blocks=GRIDS, seed=st.integers(0, 2**32 - 1))
def test_im2col_and_col2im_equal_the_reference(emu, dtype, bits, g, blocks, seed):
    """The channels-last kernels against ops/im2col.py, its columns reordered (kh, kw, c)."""
    N, C, H, W, KH, KW, SH, SW, PH, PW = g
    x = data(seed, (N, C, H, W), dtype)
    cols_ref = im2col(x, KH, KW, SH, SW, PH, PW)                # (N*OH*OW, C*KH*KW)
    gcols = data(seed + 1, cols_ref.shape, dtype)
    gx_ref = col2im(gcols, x.shape, KH, KW, SH, SW, PH, PW)     # (N, C, H, W)
    geo = conv_geometry(x.shape, (1, C, KH, KW), SH, SW, PH, PW)
    opts = dict(index_bits=bits, max_blocks=blocks)
    want = cl_columns(cols_ref, C, KH, KW)
    cols = np.full(want.shape, np.nan, dtype)
    plan.launch(emu, conv_im2col_gpu.im2col(geo, dtype, **opts), x=nhwc(x), cols=cols)
    np.testing.assert_array_equal(cols, want)
    gx = np.full((N, H, W, C), np.nan, dtype)
    plan.launch(emu, conv_im2col_gpu.col2im(geo, dtype, **opts),
                cols=cl_columns(gcols, C, KH, KW), gx=gx)
    # the gather adds in the reference's (kh, kw) order: equal bit for bit
    np.testing.assert_array_equal(gx.transpose(0, 3, 1, 2), gx_ref)


def pool_images(x, layout):
    """(x_images (NI, H, W, CI), to_nchw) as kernels/pool_gpu.py pools either memory order."""
    N, C, H, W = x.shape
    if layout == "plain":
        return np.ascontiguousarray(x).reshape(N * C, H, W, 1), \
            lambda a: a.reshape(N, C, a.shape[1], a.shape[2])
    return nhwc(x), lambda a: a.transpose(0, 3, 1, 2)


@pytest.mark.parametrize("bits", BITS)
@pytest.mark.parametrize("dtype", KERNEL_DTYPES)
@FEW
@given(g=batch_geometry(pool=True), blocks=GRIDS, seed=st.integers(0, 2**32 - 1),
       special=st.sampled_from([None, np.nan, -np.inf]))
def test_max_pool_equals_the_reference(emu, dtype, bits, g, blocks, seed, special):
    N, C, H, W, KH, KW, SH, SW, PH, PW = g
    x = data(seed, (N, C, H, W), dtype, ties=True)
    if special is not None:                     # a NaN wins its windows; -inf never does
        x.reshape(-1)[np.random.default_rng(seed).integers(0, x.size, 2)] = special
    win = (KH, KW, SH, SW, PH, PW)
    y_ref, arg_ref = max_pool_reference(x, *win)
    gy = data(seed + 1, y_ref.shape, dtype)
    gx_ref = max_pool_backward_reference(gy, arg_ref, x.shape, *win)
    for layout in ("plain", "channels_last"):
        xi, to_nchw = pool_images(x, layout)
        NI, _, _, CI = xi.shape
        OH, OW = y_ref.shape[2:]
        y = np.full((NI, OH, OW, CI), np.nan, dtype)
        arg = np.full((NI, OH, OW, CI), -1, np.int32)
        sizes = (pool_geometry((NI, CI, H, W), *win), dtype)    # the pooled images'
        opts = dict(index_bits=bits, max_blocks=blocks)
        plan.launch(emu, pool_gpu.max_pool_forward(*sizes, **opts), x=xi, y=y, argmax=arg)
        np.testing.assert_array_equal(to_nchw(y), y_ref)
        np.testing.assert_array_equal(to_nchw(arg).reshape(-1), arg_ref)
        gyi, _ = pool_images(gy, layout)
        gx = np.full(xi.shape, np.nan, dtype)
        plan.launch(emu, pool_gpu.max_pool_backward(*sizes, **opts), gy=gyi, argmax=arg, gx=gx)
        np.testing.assert_array_equal(to_nchw(gx), gx_ref)


def test_float32_subnormals_are_kept_as_ieee_and_the_numpy_reference_keep_them(emu):
    """The behaviour chosen for the GPU (NVRTC with --ftz=false, checked in the PTX
    above), run on the emulation: ReLU passes a positive subnormal through, max
    pooling picks a subnormal over 0 (the reference's index), the bias add and the SGD
    step compute with subnormals; under -ftz=true each would give 0 or another index."""
    tiny = np.float32(1e-40)                           # subnormal: below 2**-126
    assert 0 < tiny < np.finfo(np.float32).tiny
    x = np.array([tiny, -tiny, 0, 3 * tiny], np.float32)
    y = np.full_like(x, np.nan)
    plan.launch(emu, elementwise_gpu.relu_forward(4, np.float32), x=x, y=y)
    np.testing.assert_array_equal(y, RELU_REFERENCE.forward(x))
    assert y[0] == tiny and y[3] == 3 * tiny
    pair = np.array([0, tiny], np.float32).reshape(1, 1, 1, 2)       # one 1x2 window
    y_ref, arg_ref = max_pool_reference(pair, 1, 2, 1, 2, 0, 0)
    out, arg = np.full((1, 1, 1, 1), np.nan, np.float32), np.full((1, 1, 1, 1), -1, np.int32)
    plan.launch(emu, pool_gpu.max_pool_forward(pool_geometry((1, 1, 1, 2), 1, 2, 1, 2, 0, 0),
                                               np.float32),
                x=pair.reshape(1, 1, 2, 1), y=out, argmax=arg)
    assert out.item() == y_ref.item() == tiny and arg.item() == arg_ref.item() == 1
    z = np.array([[tiny, 0]], np.float32)
    bias = np.array([tiny, tiny], np.float32)
    biased = np.full_like(z, np.nan)
    plan.launch(emu, elementwise_gpu.bias_activation(1, 2, np.float32, "add"), y=z, bias=bias,
                out=biased)
    np.testing.assert_array_equal(biased, [[2 * tiny, tiny]])
    param, grad = np.array([3 * tiny], np.float32), np.array([tiny], np.float32)
    plan.launch(emu, elementwise_gpu.sgd_update(1, np.float32, 1.0), p=param, g=grad, buf=None)
    assert param.item() == 2 * tiny


@pytest.mark.parametrize("bits", BITS)
@pytest.mark.parametrize("dtype", KERNEL_DTYPES)
@FEW
@given(g=batch_geometry(pool=True), blocks=GRIDS, seed=st.integers(0, 2**32 - 1))
def test_avg_pool_equals_the_reference(emu, dtype, bits, g, blocks, seed):
    N, C, H, W, KH, KW, SH, SW, PH, PW = g
    x = data(seed, (N, C, H, W), dtype)
    win = (KH, KW, SH, SW, PH, PW)
    y_ref = avg_pool_reference(x, *win)
    gy = data(seed + 1, y_ref.shape, dtype)
    gx_ref = avg_pool_backward_reference(gy, x.shape, *win)
    for layout in ("plain", "channels_last"):
        xi, to_nchw = pool_images(x, layout)
        NI, _, _, CI = xi.shape
        y = np.full((NI, *y_ref.shape[2:], CI), np.nan, dtype)
        sizes = (pool_geometry((NI, CI, H, W), *win), dtype)    # the pooled images'
        opts = dict(index_bits=bits, max_blocks=blocks)
        plan.launch(emu, pool_gpu.avg_pool_forward(*sizes, **opts), x=xi, y=y)
        if KH * KW < 8:     # NumPy sums rows of fewer than 8 in order, longer ones pairwise
            np.testing.assert_array_equal(to_nchw(y), y_ref)
        else:
            np.testing.assert_allclose(to_nchw(y), y_ref, **kernel_tol(dtype))
        gyi, _ = pool_images(gy, layout)
        gx = np.full(xi.shape, np.nan, dtype)
        plan.launch(emu, pool_gpu.avg_pool_backward(*sizes, **opts), gy=gyi, gx=gx)
        np.testing.assert_array_equal(to_nchw(gx), gx_ref)


@pytest.mark.parametrize("bits", BITS)
@pytest.mark.parametrize("dtype", KERNEL_DTYPES)
@FEW
@given(rows=st.integers(1, 40), OC=st.integers(1, 9), blocks=GRIDS,
       seed=st.integers(0, 2**32 - 1))
def test_bias_activations_and_activations_equal_the_reference(emu, dtype, bits, rows, OC,
                                                              blocks, seed):
    opts = dict(index_bits=bits, max_blocks=blocks)
    y = data(seed, (rows, OC), dtype) * 8                 # sigmoid's both branches, saturated
    y[0, 0] = 0.0                                         # ReLU's kink: its mask is y > 0
    bias = data(seed + 1, (OC,), dtype)
    gy = data(seed + 2, (rows, OC), dtype)
    z = y + bias                                          # (rows, OC) + (OC,)
    for kind, want, exact in (("add", z, True),
                              ("relu", RELU_REFERENCE.forward(z), True),
                              ("sigmoid", SIGMOID_REFERENCE.forward(z), False)):
        out = np.full_like(y, np.nan)
        plan.launch(emu, elementwise_gpu.bias_activation(rows, OC, dtype, kind, **opts), y=y,
                    bias=bias, out=out)
        (np.testing.assert_array_equal if exact else
         lambda a, b: np.testing.assert_allclose(a, b, **kernel_tol(dtype)))(out, want)
    inplace = y.copy()                                    # out may be y itself
    plan.launch(emu, elementwise_gpu.bias_activation(rows, OC, dtype, "relu", **opts), y=inplace,
                bias=bias, out=inplace)
    np.testing.assert_array_equal(inplace, RELU_REFERENCE.forward(z))

    n = y.size
    for name, ref, exact in (("relu", RELU_REFERENCE.forward, True),
                             ("sigmoid", SIGMOID_REFERENCE.forward, False)):
        out = np.full_like(y, np.nan)
        plan.launch(emu, getattr(elementwise_gpu, f"{name}_forward")(n, dtype, **opts), x=y, y=out)
        want = ref(y)
        if exact:
            np.testing.assert_array_equal(out, want)
        else:
            np.testing.assert_allclose(out, want, **kernel_tol(dtype))
        gx = np.full_like(y, np.nan)
        plan.launch(emu, getattr(elementwise_gpu, f"{name}_backward")(n, dtype, **opts), gy=gy, y=want,
                    gx=gx)
        backward = {"relu": RELU_REFERENCE, "sigmoid": SIGMOID_REFERENCE}[name].backward
        np.testing.assert_array_equal(gx, backward(gy, want))   # no exp: equal bit for bit


@pytest.mark.parametrize("bits", BITS)
@pytest.mark.parametrize("dtype", KERNEL_DTYPES)
@FEW
@given(shape=st.tuples(st.integers(1, 5), st.integers(1, 30)), blocks=GRIDS,
       p=st.sampled_from([0.0, 0.1, 0.5, 0.9, 1.0, 1 / 3]), stream=st.integers(0, 65535),
       base=st.integers(0, 2**64 - 1), step=st.integers(0, 2**40), seed=st.integers(0, 2**32 - 1))
def test_dropout_masks_are_the_reference_masks_of_the_derived_seed(emu, dtype, bits, shape,
                                                                   blocks, p, stream, base,
                                                                   step, seed):
    x = data(seed, shape, dtype)
    rng = np.array([base, step], np.uint64)               # {base seed, step} on the "device"
    dropout = elementwise_gpu.dropout(x.size, dtype, p, stream, index_bits=bits, max_blocks=blocks)
    y = np.full_like(x, np.nan)
    plan.launch(emu, dropout, x=x, y=y, rng=rng)
    np.testing.assert_array_equal(
        y, DROPOUT_REFERENCE.forward(x, p, elementwise_gpu.dropout_seed(base, step, stream)))
    gx = np.full_like(x, np.nan)                          # backward: the same launch on gy
    plan.launch(emu, dropout, x=y, y=gx, rng=rng)
    np.testing.assert_array_equal(
        gx, DROPOUT_REFERENCE.forward(y, p, elementwise_gpu.dropout_seed(base, step, stream)))
    plan.launch(emu, elementwise_gpu.rng_advance(), rng=rng)          # the next step: a fresh mask
    assert rng.tolist() == [base, (step + 1) % 2**64]
    plan.launch(emu, dropout, x=x, y=y, rng=rng)
    np.testing.assert_array_equal(
        y, DROPOUT_REFERENCE.forward(x, p, elementwise_gpu.dropout_seed(base, step + 1, stream)))


def test_dropout_seed_is_splitmix64_of_the_step_and_stream():
    base, step, stream = 12345, 7, 3
    counter = step * elementwise_gpu.STREAMS + stream               # the counter-th output after base
    assert elementwise_gpu.dropout_seed(base, step, stream) == int(R.splitmix64(base, counter + 1)[-1])
    seeds = {elementwise_gpu.dropout_seed(base, s, t) for s in range(4) for t in range(4)}
    assert len(seeds) == 16


def test_splitmix64_is_defined_once_and_the_cuda_copy_holds_the_same_constants():
    """tinyalex/random.py defines SplitMix64's constants; the Numba loops and the CUDA
    plans import them, and elementwise.cu's #defines (C cannot import) equal them."""
    from tinyalex.kernels import numba_elementwise
    source = cuda_launch.source_text("elementwise")
    for name in ("GOLDEN", "MIX1", "MIX2"):
        value = getattr(R, name)
        defined = re.search(rf"^#define {name} (0x[0-9A-Fa-f]+)ull$", source, re.M)
        assert defined is not None, f"elementwise.cu no longer #defines {name}"
        assert int(defined.group(1), 16) == value, name
        assert int(getattr(numba_elementwise, name)) == value, name
    assert elementwise_gpu.GOLDEN is R.GOLDEN and elementwise_gpu.MIX1 is R.MIX1 \
        and elementwise_gpu.MIX2 is R.MIX2
    assert not re.search(r"0x9E3779B97F4A7C15|0xBF58476D1CE4E5B9|0x94D049BB133111EB",
                         source.split("#define MIX2", 1)[1].split("\n", 1)[1],
                         re.I)                                 # no second copy below


@pytest.mark.parametrize("bits", BITS)
@pytest.mark.parametrize("dtype", KERNEL_DTYPES)
@pytest.mark.parametrize("momentum, weight_decay", [(0.0, 0.0), (0.9, 0.0), (0.9, 5e-4),
                                                    (0.0, 1e-2)])
def test_sgd_update_over_one_flat_buffer_equals_optim_sgd(emu, dtype, bits, momentum,
                                                          weight_decay):
    """Three steps of tinyalex.optim.SGD (reference kernels) on three parameters, and the
    kernel on their concatenation: equal bit for bit."""
    rng = np.random.default_rng(0)
    shapes = [(4, 3, 2, 2), (4,), (5, 7)]
    start = [rng.standard_normal(s).astype(dtype) for s in shapes]
    start[1][0] = np.inf            # weight decay 0 must leave it inf (0 * inf would be NaN)
    grads = [[rng.standard_normal(s).astype(dtype) for s in shapes] for _ in range(3)]
    params = [Tensor(a.copy(), requires_grad=True) for a in start]
    opt = SGD(params, lr=0.1, momentum=momentum, weight_decay=weight_decay)
    flat = np.concatenate([a.reshape(-1) for a in start])   # one buffer of all parameters
    buf = np.full_like(flat, np.nan) if momentum else None     # the first step overwrites it
    with kernels.use("reference"), np.errstate(invalid="ignore"):    # inf - inf with decay
        for i, gs in enumerate(grads):
            for t, g in zip(params, gs):
                t.grad = Tensor(g)
            opt.step()
            step = elementwise_gpu.sgd_update(flat.size, dtype, 0.1, momentum, weight_decay, first=i == 0,
                                   index_bits=bits, max_blocks=1)
            plan.launch(emu, step, p=flat, g=np.concatenate([g.reshape(-1) for g in gs]),
                        buf=buf)
    np.testing.assert_array_equal(flat, np.concatenate([t.array.reshape(-1) for t in params]))


@pytest.mark.parametrize("bits", BITS)
@pytest.mark.parametrize("dtype", KERNEL_DTYPES)
@FEW
@given(N=st.integers(1, 20), K=st.integers(1, 12), blocks=GRIDS, seed=st.integers(0, 2**32 - 1))
def test_cross_entropy_pieces_equal_the_reference(emu, dtype, bits, N, K, blocks, seed):
    rng = np.random.default_rng(seed)
    logits = (rng.standard_normal((N, K)) * 5).astype(dtype)
    labels = rng.integers(0, K, N).astype(np.int64)
    opts = dict(index_bits=bits, max_blocks=blocks)
    x = Tensor(logits.copy(), requires_grad=True)
    loss = cross_entropy(x, labels)
    loss.backward()
    row_loss, row_hit = np.full(N, np.nan, dtype), np.full(N, np.nan, dtype)
    bad = np.zeros(1, np.int32)
    plan.launch(emu, elementwise_gpu.cross_entropy_forward(N, K, dtype, **opts), logits=logits,
                labels=labels, row_loss=row_loss, row_hit=row_hit, bad=bad)
    assert bad[0] == 0
    np.testing.assert_allclose(row_loss.mean(), loss.array, rtol=1e-5 if dtype == np.float32
                               else 1e-12)
    np.testing.assert_array_equal(row_hit, (logits.argmax(axis=1) == labels).astype(dtype))
    g = np.full_like(logits, np.nan)
    gy = np.ones(1, dtype)                                 # d loss / d loss, on the device
    plan.launch(emu, elementwise_gpu.cross_entropy_backward(N, K, dtype, **opts), logits=logits,
                labels=labels, gy=gy, g=g)
    np.testing.assert_allclose(g, x.grad.array, rtol=1e-5 if dtype == np.float32 else 1e-12,
                               atol=1e-7 if dtype == np.float32 else 1e-15)


def test_cross_entropy_flags_a_bad_label_on_the_device(emu):
    logits = np.zeros((3, 4), np.float32)
    labels = np.array([1, 4, -1], np.int64)
    row_loss, row_hit, bad = np.zeros(3, np.float32), np.zeros(3, np.float32), np.zeros(1, np.int32)
    plan.launch(emu, elementwise_gpu.cross_entropy_forward(3, 4, np.float32), logits=logits,
                labels=labels, row_loss=row_loss, row_hit=row_hit, bad=bad)
    assert bad[0] == 1
    assert np.isfinite(row_loss[0]) and np.isnan(row_loss[1:]).all()


# == 2. the GPU algorithm classes, emulated =========================================

DTYPES = st.sampled_from([np.float32, np.float64])


@pytest.fixture
def gpu(cuda_emulation):
    return Algorithms(cuda_emulation)


def tol(dtype):
    return dict(rtol=1e-4, atol=1e-5) if dtype == np.float32 else dict(rtol=1e-10, atol=1e-12)


def channels_last(x):
    """(N, C, H, W) values in (N, H, W, C) memory."""
    return np.ascontiguousarray(x.transpose(0, 2, 3, 1)).transpose(0, 3, 1, 2)


# -- convolution -------------------------------------------------------------------------

@settings(max_examples=10)
@given(g=batch_geometry(batch=3, channels=3, kernel=3, pad=1, stride=2, extra=3),
       dtype=DTYPES, fused=st.booleans(), bias=st.booleans(),
       kept=st.booleans(), chunks=st.booleans(), seed=st.integers(0, 2**16))
@example(g=(1, 2, 2, 3, 2, 3, 1, 1, 0, 0), dtype=np.float32, fused=True, bias=True,
         kept=True, chunks=False, seed=0)                   # the kernel is the whole input
def test_conv_forward_and_backward_equal_the_reference(cuda_emulation, g, dtype, fused,
                                                       bias, kept, chunks, seed):
    """With and without the fused bias + ReLU epilogue, the forward's columns kept or
    built again in backward, one chunk or one image a chunk, either memory order in."""
    N, C, H, W, KH, KW, SH, SW, PH, PW = g
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((N, C, H, W)).astype(dtype)
    x = channels_last(x) if seed % 2 else x                 # either memory order in
    OC = 3
    w = rng.standard_normal((OC, C, KH, KW)).astype(dtype)
    b = rng.standard_normal(OC).astype(dtype) if bias else None
    geo = conv_geometry(x.shape, w.shape, SH, SW, PH, PW)
    options = dict(keep_bytes=(1 << 30) if kept else 0,
                   chunk_bytes=1 if chunks else 1 << 30)       # 1 byte: one image a chunk
    k = Algorithms(cuda_emulation, **options)
    algorithm = k.conv
    y_ref, s_ref = conv.REFERENCE.forward(x, w, b, geo, True)
    if fused:
        y_ref = activation.RELU_REFERENCE.forward(y_ref)
    y, s = algorithm.forward(x, w, b, geo, True, activation="relu" if fused else None)
    np.testing.assert_allclose(y, y_ref, **tol(dtype))
    assert (s.cols is not None) == (kept and not (chunks and N > 1))
    assert (s.x is None) == (s.cols is not None)       # kept columns: the input is dropped
    gy = rng.standard_normal(y.shape).astype(dtype)
    if fused:
        gy = activation.RELU_REFERENCE.backward(gy, y_ref)
    got = algorithm.backward(gy, s, True, True, bias)
    want = conv.REFERENCE.backward(gy, s_ref, True, True, bias)
    for a, e in zip(got, want):
        assert (a is None) == (e is None)
        if a is not None:
            assert a.shape == e.shape and a.dtype == dtype
            np.testing.assert_allclose(a, e, **tol(dtype))


@settings(max_examples=8)
@given(g=batch_geometry(batch=2, channels=3, kernel=3, pad=1, stride=2, extra=3),
       dtype=DTYPES, seed=st.integers(0, 2**16))
def test_conv_columns_are_the_references_reordered(gpu, g, dtype, seed):
    N, C, H, W, KH, KW, SH, SW, PH, PW = g
    x = np.random.default_rng(seed).standard_normal((N, C, H, W)).astype(dtype)
    geo = conv_geometry(x.shape, (2, C, KH, KW), SH, SW, PH, PW)
    ref = im2col(x, KH, KW, SH, SW, PH, PW)                 # (N*OH*OW, C*KH*KW)
    cl_ref = ref.reshape(-1, C, KH, KW).transpose(0, 2, 3, 1).reshape(ref.shape)
    np.testing.assert_array_equal(
        gpu.conv._columns(np.ascontiguousarray(x.transpose(0, 2, 3, 1)), geo, x.dtype), cl_ref)


def test_conv_keeps_columns_up_to_a_batch_that_fits_one_chunk(gpu):
    """The batches at which d2l's AlexNet (float32, 224x224) stops keeping each layer's
    columns (conv_im2col_gpu.py's docstring gives them)."""
    layers = {"conv1": ((1, 224, 224), (96, 1, 11, 11), 4, 1),
              "conv2": ((96, 26, 26), (256, 96, 5, 5), 1, 2),
              "conv3": ((256, 12, 12), (384, 256, 3, 3), 1, 1),
              "conv4": ((384, 12, 12), (384, 384, 3, 3), 1, 1),
              "conv5": ((384, 12, 12), (256, 384, 3, 3), 1, 1)}
    last = {}
    for name, (chw, w, s, p) in layers.items():
        def keeps(n):
            return gpu.conv.keeps_columns(conv_geometry((n,) + chw, w, s, s, p, p), 4)
        n = 1
        while keeps(n + 1):
            n += 1
        last[name] = n
    assert last == {"conv1": 760, "conv2": 165, "conv3": 809, "conv4": 539, "conv5": 539}


def test_conv_weight_gradient_is_a_view_without_a_reordering_copy(gpu):
    rng = np.random.default_rng(0)
    x = channels_last(rng.standard_normal((2, 3, 6, 6)))
    w = rng.standard_normal((4, 3, 3, 3))
    geo = conv_geometry(x.shape, w.shape, 1, 1, 1, 1)
    y, s = gpu.conv.forward(x, w, None, geo, True)
    _, gw, _ = gpu.conv.backward(np.ones(y.shape), s, False, True, False)
    assert gw.base is not None and not gw.flags.c_contiguous      # (OC, KH, KW, C) memory
    assert gw.transpose(0, 2, 3, 1).flags.c_contiguous


# -- pooling -----------------------------------------------------------------------------

@settings(max_examples=10)
@given(g=batch_geometry(pool=True, batch=2, channels=3, kernel=3, pad=1, stride=2, extra=3),
       dtype=DTYPES, cl=st.booleans(), seed=st.integers(0, 2**16))
def test_pooling_equals_the_reference(gpu, g, dtype, cl, seed):
    """Plain memory is pooled as N*C one-channel images, channels-last as it lies."""
    N, C, H, W, KH, KW, SH, SW, PH, PW = g
    rng = np.random.default_rng(seed)
    x = np.round(rng.standard_normal((N, C, H, W))).astype(dtype)        # with ties
    x = channels_last(x) if cl else x
    pg = pool_geometry(x.shape, KH, KW, SH, SW, PH, PW)
    y_ref, s_ref = pool.MAX_REFERENCE.forward(x, pg)
    y, s = gpu.max.forward(x, pg)
    np.testing.assert_array_equal(y, y_ref)
    gy = rng.standard_normal(y.shape).astype(dtype)
    np.testing.assert_array_equal(gpu.max.backward(gy, s), pool.MAX_REFERENCE.backward(gy, s_ref))
    ya, sa = gpu.avg.forward(x, pg)
    np.testing.assert_allclose(ya, pool.AVG_REFERENCE.forward(x, pg)[0], **tol(dtype))
    np.testing.assert_array_equal(gpu.avg.backward(gy, sa), pool.AVG_REFERENCE.backward(gy, pg))


# -- elementwise -------------------------------------------------------------------------

@settings(max_examples=10)
@given(n=st.integers(1, 40), dtype=DTYPES, seed=st.integers(0, 2**16))
def test_activations_and_the_fused_epilogue_equal_the_reference(gpu, n, dtype, seed):
    rng = np.random.default_rng(seed)
    x = (rng.standard_normal((n, 3)) * 4).astype(dtype).T           # a transposed view
    x[0, 0] = 0.0                                                   # ReLU's kink
    gy = rng.standard_normal(x.shape).astype(dtype)
    relu, sig = activation.RELU_REFERENCE, activation.SIGMOID_REFERENCE
    y = gpu.relu.forward(x)
    np.testing.assert_array_equal(y, relu.forward(x))
    np.testing.assert_array_equal(gpu.relu.backward(gy, y), relu.backward(gy, y))
    s = gpu.sigmoid.forward(x)
    np.testing.assert_allclose(s, sig.forward(x), **tol(dtype))
    np.testing.assert_array_equal(gpu.sigmoid.backward(gy, s), sig.backward(gy, s))
    rows = np.ascontiguousarray(x.T)                                # (n, 3) a GEMM's result
    bias = rng.standard_normal(3).astype(dtype)
    for act, want in (("relu", relu.forward(rows + bias)), ("add", rows + bias)):
        out = rows.copy()
        assert gpu.bias_activation(out, bias, act) is out          # in place
        np.testing.assert_array_equal(out, want)
    out = rows.copy()
    np.testing.assert_array_equal(gpu.bias_activation(out, None, "relu"), relu.forward(rows))


def test_matmul_is_a_fresh_product_of_any_operand_order(gpu):
    rng = np.random.default_rng(1)
    a, b = rng.standard_normal((5, 7)), rng.standard_normal((3, 7)).T   # b: a transposed view
    out = gpu.matmul(a, b)
    np.testing.assert_allclose(out, a @ b, rtol=1e-12)
    assert not np.shares_memory(out, a) and not np.shares_memory(out, b)


# -- dropout: the seed and the step counter in device memory -----------------------------

@settings(max_examples=10)
@given(shape=st.tuples(st.integers(1, 4), st.integers(1, 30)), dtype=DTYPES,
       p=st.sampled_from([0.1, 0.5, 0.9, 1.0, 1 / 3]), seed=st.integers(0, 2**31))
def test_dropout_masks_come_from_the_device_state(gpu, shape, dtype, p, seed):
    """A call's mask is the reference mask of dropout_seed(base, step, stream); backward
    (the same stream, the same step) reuses it; the next call of a step, and the next
    step, draw fresh ones; the base seed is a draw from tinyalex's host generator."""
    R.manual_seed(seed)
    x = np.random.default_rng(seed).standard_normal(shape).astype(dtype)
    base = int(R.generator().integers(0, 2**63 - 1))       # the draw DeviceRNG will make
    R.manual_seed(seed)
    first = gpu.dropout.draw_seed()
    assert first == 0 and gpu.rng.state.tolist() == [base, 0]
    y = gpu.dropout.forward(x, p, first)
    np.testing.assert_array_equal(y, activation.DROPOUT_REFERENCE.forward(
        x, p, elementwise_gpu.dropout_seed(base, 0, 0)))
    gy = np.ones_like(x)
    np.testing.assert_array_equal(gpu.dropout.backward(gy, p, first) != 0, y != 0 if p < 1
                                  else np.zeros(shape, bool))
    second = gpu.dropout.draw_seed()
    assert second == 1
    np.testing.assert_array_equal(gpu.dropout.forward(x, p, second),
                                  activation.DROPOUT_REFERENCE.forward(
                                      x, p, elementwise_gpu.dropout_seed(base, 0, 1)))
    gpu.rng.next_step()                                     # one kernel: rng[1] += 1
    assert gpu.rng.state.tolist() == [base, 1] and gpu.dropout.draw_seed() == 0
    np.testing.assert_array_equal(gpu.dropout.forward(x, p, 0),
                                  activation.DROPOUT_REFERENCE.forward(
                                      x, p, elementwise_gpu.dropout_seed(base, 1, 0)))


def test_dropout_state_is_seeded_again_when_the_host_generator_is(gpu):
    R.manual_seed(3)
    gpu.dropout.draw_seed()
    gpu.rng.next_step()
    state = gpu.rng.state.tolist()
    R.manual_seed(3)                                        # a new generator, same seed
    gpu.dropout.draw_seed()
    assert gpu.rng.state.tolist() == [state[0], 0]          # the same base, step 0 again


def test_dropout_streams_of_a_long_step_roll_over_to_the_next_step(gpu):
    R.manual_seed(0)
    gpu.rng.seeded()
    gpu.rng.calls = elementwise_gpu.STREAMS                       # every stream of this step used
    assert gpu.dropout.draw_seed() == 0 and int(gpu.rng.state[1]) == 1


# -- the SGD update ----------------------------------------------------------------------

@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("momentum, weight_decay", [(0.0, 0.0), (0.9, 0.0), (0.9, 5e-4),
                                                    (0.0, 1e-2)])
def test_sgd_updates_equal_optim_sgds_arithmetic(gpu, dtype, momentum, weight_decay):
    """One parameter (``param -= lr * d``) and the flat step with weight decay and
    momentum in one kernel: equal to tinyalex.optim.SGD's reference steps bit for bit."""
    rng = np.random.default_rng(0)
    shapes = [(4, 3, 2, 2), (4,), (5, 7)]
    start = [rng.standard_normal(s).astype(dtype) for s in shapes]
    params = [tinyalex.Tensor(a.copy(), requires_grad=True) for a in start]
    opt = SGD(params, lr=0.1, momentum=momentum, weight_decay=weight_decay)
    flat = np.concatenate([a.reshape(-1) for a in start])
    buf = np.empty_like(flat) if momentum else None
    with kernels.use("reference"):
        for i in range(3):
            grads = [rng.standard_normal(s).astype(dtype) for s in shapes]
            for t, g in zip(params, grads):
                t.grad = tinyalex.Tensor(g)
            opt.step()
            gpu.sgd.flat_step(flat, np.concatenate([g.reshape(-1) for g in grads]), buf,
                              0.1, momentum, weight_decay, first=i == 0)
    np.testing.assert_array_equal(flat, np.concatenate([t.array.reshape(-1) for t in params]))
    p, g = start[2].copy(), rng.standard_normal(shapes[2]).astype(dtype)
    np.testing.assert_array_equal(gpu.sgd(p.copy(), g.T.copy().T, 0.25),
                                  sgd_update_reference(p, g, 0.25))


# -- the loss ----------------------------------------------------------------------------

@settings(max_examples=10)
@given(N=st.integers(1, 20), K=st.integers(1, 12), dtype=DTYPES, seed=st.integers(0, 2**16))
def test_cross_entropy_on_the_device_equals_the_reference(gpu, N, K, dtype, seed):
    rng = np.random.default_rng(seed)
    logits = (rng.standard_normal((N, K)) * 5).astype(dtype)
    labels = rng.integers(0, K, N).astype(np.int64)
    want, saved = loss.CROSS_ENTROPY_REFERENCE.forward(logits, labels)
    got, stats = gpu.loss.forward(logits, labels)
    rtol = 1e-5 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(got, want, rtol=rtol)
    value, correct = loss.DeviceLossStats(stats, N, K).read()
    assert value == float(got) and correct == int((logits.argmax(axis=1) == labels).sum())
    gy = np.ones((), dtype)
    np.testing.assert_allclose(gpu.loss.backward(gy, logits, labels),
                               loss.CROSS_ENTROPY_REFERENCE.backward(gy, saved), rtol=rtol,
                               atol=1e-7 if dtype == np.float32 else 1e-15)


def test_a_bad_label_is_reported_at_the_read_back_naming_it(gpu):
    logits = np.zeros((3, 4), np.float32)
    got, stats = gpu.loss.forward(logits, np.array([1, 4, 0]))          # int64 after astype
    assert np.isnan(got)
    with pytest.raises(ValueError, match=r"a label of this batch lies outside \[0, 3\] for 4"):
        loss.DeviceLossStats(stats, 3, 4).read()


# -- whole steps through the ops, the backend reported as "cupy" ---------------------------

def small_alexnet(dropout=0.0):
    """AlexNet's pattern at toy size: conv+ReLU, pool, conv+ReLU, flatten, linear+ReLU,
    dropout, linear."""
    return nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Conv2d(4, 6, 3), nn.ReLU(), nn.Flatten(),
                         nn.Linear(6 * 2 * 2, 8), nn.ReLU(), nn.Dropout(dropout),
                         nn.Linear(8, 3)).double()


def train_step(net, opt, x, y):
    opt.zero_grad()
    out = loss.cross_entropy(net(tinyalex.Tensor(x)), tinyalex.Tensor(y))
    out.backward()
    opt.step()
    return loss.read_loss(out)


def reference_steps(steps, x, y, momentum, weight_decay):
    tinyalex.manual_seed(0)
    net = small_alexnet()
    flat = nn.FlatParameters(net.parameters())
    opt = SGD(net.parameters(), lr=0.1, momentum=momentum, weight_decay=weight_decay,
              flat=flat)
    with kernels.use("reference"):
        losses = [train_step(net, opt, x, y)[0] for _ in range(steps)]
    return losses, [p.numpy() for p in net.parameters()]


def test_alexnets_pattern_fuses_conv_and_linear_with_their_relu():
    net = tinyalex.models.alexnet()
    assert net.fusions("cupy") == {0: "Conv2d+ReLU", 3: "Conv2d+ReLU", 6: "Conv2d+ReLU",
                                   8: "Conv2d+ReLU", 10: "Conv2d+ReLU", 14: "Linear+ReLU",
                                   17: "Linear+ReLU"}
    assert net.fusions("numpy") == {1: "ReLU+MaxPool2d", 4: "ReLU+MaxPool2d",
                                    11: "ReLU+MaxPool2d"}           # the CPU's own
    assert tinyalex.models.lenet().fusions("cupy") == {}

    class MyReLU(nn.ReLU):                       # its own forward: not fused
        def forward(self, x):
            return x
    assert nn.Sequential(nn.Linear(2, 2), MyReLU()).fusions("cupy") == {}


def test_sequential_fuses_the_pairs_it_names_and_fuse_false_runs_each_layer():
    """Which pairs run as one op is the table nn.Sequential.FUSED_PAIRS; forward runs
    them through the first layer's forward_relu on the GPU, and `net.fuse = False` (or
    another backend) runs every layer on its own."""
    assert nn.Sequential.FUSED_PAIRS == {(nn.Conv2d, nn.ReLU): "Conv2d+ReLU",
                                         (nn.Linear, nn.ReLU): "Linear+ReLU"}
    calls = []

    class Gpu:                                   # an input on the cupy backend
        backend = "cupy"

    class Layer(nn.Module):
        def forward(self, x):
            calls.append("layer")
            return x

        def forward_relu(self, x):
            calls.append("layer+relu")
            return x

    class Relu(nn.Module):
        def forward(self, x):
            calls.append("relu")
            return x

    net = nn.Sequential(Layer(), Relu(), Relu())
    nn.Sequential.FUSED_PAIRS[(Layer, Relu)] = "Layer+ReLU"
    try:
        assert net.fusions("cupy") == {0: "Layer+ReLU"}
        net(Gpu())
        assert calls == ["layer+relu", "relu"]
        calls.clear()
        net.fuse = False
        net(Gpu())
        assert calls == ["layer", "relu", "relu"]
    finally:
        del nn.Sequential.FUSED_PAIRS[(Layer, Relu)]


@pytest.mark.parametrize("momentum, weight_decay", [(0.0, 0.0), (0.9, 5e-4)])
def test_emulated_gpu_steps_equal_the_reference_and_count_their_launches(
        emulated_cupy, momentum, weight_decay):
    """Three training steps of AlexNet's pattern on the emulated GPU path (fused layers,
    the loss's device flag and single read back, SGD(flat=...) as one kernel) equal the
    CPU reference's in float64; one step launches 14 kernels and 11 GEMMs."""
    rng = np.random.default_rng(5)
    x = rng.standard_normal((4, 1, 8, 8))
    y = np.array([0, 1, 2, 1])
    want_losses, want_params = reference_steps(3, x, y, momentum, weight_decay)
    tinyalex.manual_seed(0)
    net = small_alexnet()
    flat = nn.FlatParameters(net.parameters())
    opt = SGD(net.parameters(), lr=0.1, momentum=momentum, weight_decay=weight_decay,
              flat=flat)
    k = emulated_cupy
    results = []
    for step in range(3):
        before, gemms = k.modules.launches, len(k.calls)
        results.append(train_step(net, opt, x, y))
        # forward: im2col + bias_relu, max-pool, im2col + bias_relu, bias_relu (fc1),
        # dropout (p = 0: not launched), loss; backward: loss, relu_backward (fc1),
        # relu_backward + col2im (conv2, its columns kept), max-pool, relu_backward
        # (conv1, no input gradient); the flat SGD step
        assert k.modules.launches - before == 14
        assert len(k.calls) - gemms == 11            # forward 4, backward 2+2+2+1
    np.testing.assert_allclose([r[0] for r in results], want_losses, rtol=1e-12)
    assert all(isinstance(r[1], int) and 0 <= r[1] <= 4 for r in results)   # correct rows
    for p, want in zip(net.parameters(), want_params):
        np.testing.assert_allclose(p.numpy(), want, rtol=1e-10, atol=1e-12)


def test_emulated_gpu_dropout_steps_draw_fresh_masks_without_the_host_generator(emulated_cupy):
    rng = np.random.default_rng(6)
    x, y = rng.standard_normal((4, 1, 8, 8)), np.array([0, 1, 2, 1])
    tinyalex.manual_seed(0)
    net = small_alexnet(dropout=0.5)
    opt = SGD(net.parameters(), lr=1e-300)          # no update to speak of: the masks change
    state = R.get_rng_state()
    first = train_step(net, opt, x, y)[0]
    after_first = R.get_rng_state()                        # the base seed: one draw, once
    emulated_cupy.rng.next_step()
    second = train_step(net, opt, x, y)[0]
    assert R.get_rng_state() == after_first != state
    assert first != second                                 # another step, other masks


def test_an_alexnet_step_launches_37_kernels_and_23_gemms(emulated_cupy):
    """d2l's AlexNet at batch 1 (224x224) through TrainStep on the emulated GPU path:
    im2col 5, bias+ReLU 7, ReLU backward 7, col2im 4 (not for the data), max-pool 6,
    dropout 4, loss 2, the dropout step counter 1, SGD 1 (benchmarks/README.md counts
    the CuPy array operations beside them)."""
    from tinyalex import cuda_graph
    tinyalex.manual_seed(0)
    net = tinyalex.models.alexnet()
    opt = SGD(net.parameters(), lr=0.01, flat=nn.FlatParameters(net.parameters()))
    step = cuda_graph.TrainStep(net, opt, graphs=False)
    X = tinyalex.Tensor(np.random.default_rng(0).random((1, 1, 224, 224), np.float32))
    k = emulated_cupy
    step(X, tinyalex.Tensor(np.array([3]))).read()
    assert (k.modules.launches, len(k.calls)) == (37, 23)


def test_the_fused_ops_elsewhere_give_conv_or_linear_then_relu_bit_for_bit():
    """Off the GPU (here: the CPU's algorithms) Conv2d+ReLU and Linear+ReLU run the two
    algorithms one after the other: the unfused numbers, forward and backward; and
    their gradients pass a float64 gradient check."""
    from helpers.checks import check
    from tinyalex.ops.conv import conv2d, conv2d_relu
    from tinyalex.ops.dense import linear, linear_relu
    rng = np.random.default_rng(7)

    def leaves(*shapes):
        return [tinyalex.tensor(rng.standard_normal(s), requires_grad=True) for s in shapes]

    for fused, plain, shapes in (
            (lambda x, w, b: conv2d_relu(x, w, b, 1, 1),
             lambda x, w, b: activation.relu(conv2d(x, w, b, 1, 1)), ((2, 3, 5, 5), (4, 3, 3, 3), (4,))),
            (linear_relu, lambda x, w, b: activation.relu(linear(x, w, b)), ((5, 6), (4, 6), (4,)))):
        a = leaves(*shapes)
        b = [tinyalex.tensor(t.numpy(), requires_grad=True) for t in a]
        ya, yb = fused(*a), plain(*b)
        np.testing.assert_array_equal(ya.numpy(), yb.numpy())
        gy = rng.standard_normal(ya.shape)
        ya.backward(gy)
        yb.backward(gy)
        for ta, tb in zip(a, b):
            np.testing.assert_array_equal(ta.grad.numpy(), tb.grad.numpy())
        check(fused, *leaves(*shapes))


# == 3. on a real GPU ==============================================================

F32 = np.dtype(np.float32)


def gpu_conv():
    from tinyalex.kernels import conv_im2col_gpu
    return conv_im2col_gpu.for_cupy()


def host(a):
    return B.to_numpy(a)


def dev(a):
    return B.to_backend(np.ascontiguousarray(a), "cupy")


def geometry(pool=False):
    return batch_geometry(pool=pool, batch=3, channels=5, kernel=5, pad=2, stride=3, extra=8)



@on_gpu
@settings(max_examples=20)
@given(g=geometry(), dtype=DTYPES, seed=st.integers(0, 2**16))
def test_gpu_conv_im2col_col2im_match_the_reference(g, dtype, seed):
    N, C, H, W, KH, KW, SH, SW, PH, PW = g
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((N, C, H, W)).astype(dtype)
    w = rng.standard_normal((3, C, KH, KW)).astype(dtype)
    b = rng.standard_normal(3).astype(dtype)
    geo = conv_geometry(x.shape, w.shape, SH, SW, PH, PW)
    k = gpu_conv()
    cols = k._columns(dev(np.ascontiguousarray(x.transpose(0, 2, 3, 1))), geo, x.dtype)
    ref = im2col(x, KH, KW, SH, SW, PH, PW)                 # columns (c, kh, kw) -> (kh, kw, c)
    np.testing.assert_array_equal(
        host(cols), ref.reshape(-1, C, KH, KW).transpose(0, 2, 3, 1).reshape(ref.shape))
    with kernels.tf32(False):
        y_ref, s_ref = conv.REFERENCE.forward(x, w, b, geo, True)
        y, s = k.forward(dev(x), dev(w), dev(b), geo, True)
        tol = dict(rtol=1e-4, atol=1e-4) if dtype == np.float32 else dict(rtol=1e-9)
        np.testing.assert_allclose(host(y), y_ref, **tol)
        gy = rng.standard_normal(y.shape).astype(dtype)
        for a, e in zip(k.backward(dev(gy), s, True, True, True),
                        conv.REFERENCE.backward(gy, s_ref, True, True, True)):
            np.testing.assert_allclose(host(a), e, **tol)


@on_gpu
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


@on_gpu
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


@on_gpu
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


@on_gpu
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


@on_gpu
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


@on_gpu
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


@on_gpu
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


@on_gpu
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


@on_gpu
def test_float32_subnormals_survive_the_gpu_kernels():
    """NVRTC builds the kernels with --ftz=false (kernels/cuda_launch.py): a positive
    subnormal passes ReLU and wins a max-pooling window against 0, as on the CPU
    (CuPy's own compile path, -ftz=true, would give 0 and the other index)."""
    from tinyalex.kernels import elementwise_gpu, pool_gpu
    cp = B.cupy_module()
    modules = cuda_launch.for_cupy(cp)
    tiny = np.float32(1e-40)
    x = dev(np.array([tiny, -tiny, 0, 3 * tiny], np.float32))
    y = cp.full(4, np.nan, np.float32)
    modules.launch(elementwise_gpu.relu_forward(4, np.float32), x=x, y=y)
    np.testing.assert_array_equal(host(y), [tiny, 0, 0, 3 * tiny])
    pair = dev(np.array([0, tiny], np.float32))             # one image 1x2, one channel
    out, arg = cp.full(1, np.nan, np.float32), cp.full(1, -1, np.int32)
    modules.launch(pool_gpu.max_pool_forward(pool_geometry((1, 1, 1, 2), 1, 2, 1, 2, 0, 0),
                                             np.float32),
                   x=pair, y=out, argmax=arg)
    assert host(out)[0] == tiny and host(arg)[0] == 1
