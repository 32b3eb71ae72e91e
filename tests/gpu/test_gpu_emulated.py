"""The GPU path without a GPU: the very algorithm classes the cupy backend runs
(``kernels/conv_im2col_gpu.py``, ``pool_gpu.py``, ``elementwise_gpu.py``), given the CPU
emulation's module provider (``gpu_modules.EmulatedModules``: the CUDA C sources of
``kernels/cuda/`` compiled by g++) and NumPy's GEMM, on NumPy arrays, against the
readable references. The Python launch code is the GPU's: plans, grids (two blocks
at most here, so every grid-stride loop wraps), argument packing, memory orders,
the fused epilogues, the columns kept for backward, the device-side dropout state,
the loss's device flag, the flat SGD step.

The last tests run whole training steps through the ops and ``nn.Sequential`` with
the backend reported as "cupy" (``emulated_cupy``): the choosers then hand out the
emulated GPU algorithms, so the fusion of Conv2d/Linear + ReLU, dropout's device
seeds, the loss read back and ``SGD(flat=...)``'s one kernel are checked against the
CPU reference step, and the kernels a step launches are counted.

What this cannot check: CuPy itself (RawModule, NVRTC, streams), cuBLAS, and the
real GPU's exp/log (a few ulp from the C library's); ``test_gpu_kernels.py`` does, on
a GPU.
"""

import numpy as np
import pytest
from hypothesis import example, given, settings, strategies as st

import tinyalex
import tinyalex.kernels as kernels
from tinyalex import nn
from tinyalex import random as R
from tinyalex.kernels import elementwise_gpu
from tinyalex.kernels.geometry import conv_geometry, pool_geometry
from tinyalex.ops import activation, conv, loss, pool
from tinyalex.ops.im2col import im2col
from tinyalex.optim import SGD, sgd_update_reference
from helpers.gpu_emulation import Algorithms
from helpers.strategies import batch_geometry

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
       dtype=DTYPES, cl=st.booleans(), fused=st.booleans(), bias=st.booleans(),
       kept=st.booleans(), chunks=st.booleans(), seed=st.integers(0, 2**16))
@example(g=(1, 2, 2, 3, 2, 3, 1, 1, 0, 0), dtype=np.float32, cl=True, fused=True, bias=True,
         kept=True, chunks=False, seed=0)                   # the kernel is the whole input
def test_conv_forward_and_backward_equal_the_reference(cuda_emulation, g, dtype, cl, fused,
                                                       bias, kept, chunks, seed):
    """Both column orders, with and without the fused bias + ReLU epilogue, the forward's
    columns kept or built again in backward, one chunk or one image a chunk."""
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
    algorithm = k.conv if cl else k.conv_ref_order
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
def test_conv_columns_are_the_references_in_either_order(gpu, g, dtype, seed):
    N, C, H, W, KH, KW, SH, SW, PH, PW = g
    x = np.random.default_rng(seed).standard_normal((N, C, H, W)).astype(dtype)
    geo = conv_geometry(x.shape, (2, C, KH, KW), SH, SW, PH, PW)
    ref = im2col(x, KH, KW, SH, SW, PH, PW)                 # (N*OH*OW, C*KH*KW)
    np.testing.assert_array_equal(gpu.conv_ref_order._columns(x, geo, x.dtype), ref)
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
    assert net.fusions("numpy") == {} and tinyalex.models.lenet().fusions("cupy") == {}

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
