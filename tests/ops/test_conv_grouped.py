"""Grouped convolution (``groups=``; the per-group reference, ops/conv.py
GroupedReference, and one im2col + one batched GEMM over the groups,
kernels/conv_grouped_cpu.py): PyTorch's semantics (weight (OC, C/groups, KH, KW), group
i's outputs from group i's inputs), float64 gradchecks of both, the fast one equal to the
reference on ResNeXt's shapes, equal to PyTorch forward and backward, the chooser's
first rules, summary's name, and bad groups refused naming the layer and the sizes."""

import numpy as np
import pytest

import tinyalex
import tinyalex.kernels as kernels
from tinyalex import nn
from tinyalex.nn import functional as F
from tinyalex.kernels.conv_grouped_cpu import GROUPED_IM2COL
from tinyalex.ops import conv
from helpers.checks import check, randn

torch = pytest.importorskip("torch")


@pytest.mark.parametrize("mode", ["fast", "reference"])   # batched groups, per group
def test_grouped_gradcheck_float64(mode):
    with kernels.use(mode):
        _grouped_gradcheck()


def _grouped_gradcheck():
    rng = np.random.default_rng(0)
    x, w, b = randn(rng, (2, 16, 4, 3)), randn(rng, (4, 8, 3, 2)), randn(rng, (4,))
    check(lambda x, w, b: F.conv2d(x, w, b, stride=(2, 1), padding=1, groups=2), x, w, b)
    x, w, b = randn(rng, (2, 4, 5, 4)), randn(rng, (6, 2, 3, 2)), randn(rng, (6,))
    check(lambda x, w, b: F.conv2d(x, w, b, stride=(2, 1), padding=1, groups=2), x, w, b)
    x, w = randn(rng, (1, 3, 4, 4)), randn(rng, (3, 1, 3, 3))         # depthwise
    check(lambda x, w: F.conv2d(x, w, padding=1, groups=3), x, w)


@pytest.mark.parametrize("C,OC,groups,k,stride,padding", [
    (4, 8, 2, 3, 1, 1), (6, 9, 3, 3, 2, 1), (8, 8, 8, 3, 1, 1), (4, 4, 2, 1, 2, 0)])
def test_grouped_layer_equals_pytorch(C, OC, groups, k, stride, padding):
    """nn.Conv2d(groups=...) with PyTorch's weights: same weight shape, same output and
    same gradients of input, weight and bias (float64)."""
    ours = nn.Conv2d(C, OC, k, stride=stride, padding=padding, groups=groups)
    ref = torch.nn.Conv2d(C, OC, k, stride=stride, padding=padding, groups=groups).double()
    assert tuple(ours.weight.shape) == tuple(ref.weight.shape) == (OC, C // groups, k, k)
    assert repr(ours) == repr(ref)
    ours.weight = tinyalex.nn.Parameter(ref.weight.detach().numpy().copy())
    ours.bias = tinyalex.nn.Parameter(ref.bias.detach().numpy().copy())
    x = np.random.default_rng(1).standard_normal((2, C, 7, 6))
    X, Xt = tinyalex.tensor(x, requires_grad=True), torch.tensor(x, requires_grad=True)
    y, yt = ours(X), ref(Xt)
    np.testing.assert_allclose(y.numpy(), yt.detach().numpy(), rtol=1e-10, atol=1e-10)
    gy = np.random.default_rng(2).standard_normal(yt.shape)
    y.backward(tinyalex.tensor(gy))
    yt.backward(torch.tensor(gy))
    for a, t in ((X, Xt), (ours.weight, ref.weight), (ours.bias, ref.bias)):
        np.testing.assert_allclose(a.grad.numpy(), t.grad.numpy(), rtol=1e-10, atol=1e-10)


def test_summary_counts_a_grouped_layers_macs_and_names_its_algorithm():
    net = nn.Sequential(nn.Conv2d(32, 16, 3, padding=1, groups=4))
    rows = tinyalex.summary(net, (2, 32, 5, 5), print_fn=lambda *a: None)
    assert rows[0]["macs"] == 2 * 16 * 5 * 5 * (32 // 4) * 3 * 3
    assert rows[0]["algorithm"] == GROUPED_IM2COL.name == "im2col+batched GEMM over groups"
    with kernels.use("reference"):
        rows = tinyalex.summary(net, (2, 32, 5, 5), print_fn=lambda *a: None)
        assert rows[0]["algorithm"] == conv.GROUPED.name
    few = nn.Sequential(nn.Conv2d(8, 16, 3, padding=1, groups=4))    # 2 channels a group
    assert few.algorithms((2, 8, 5, 5)) == [(0, conv.GROUPED.name)]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("N,C,OC,groups,H,W,k,stride,padding,chunk", [
    (4, 32, 32, 2, 12, 12, 3, 1, 1, None),     # d2l 1.0's ResNeXt block: 2 groups of 16
    (2, 64, 64, 32, 7, 7, 3, 2, 1, None),      # ResNeXt-50's 32 groups of 2
    (3, 6, 9, 3, 5, 6, 3, (2, 1), (1, 0), 1),  # a few images per chunk, uneven stride
    (2, 8, 8, 8, 6, 5, 3, 1, 1, None),         # depthwise
    (2, 4, 4, 2, 5, 5, 1, 2, 0, None)])        # grouped 1x1, stride 2
def test_batched_groups_equal_the_per_group_reference(N, C, OC, groups, H, W, k, stride,
                                                      padding, chunk, dtype, monkeypatch):
    """kernels/conv_grouped_cpu.py (one im2col, one batched GEMM over the groups) against
    the per-group reference, forward and every gradient; float32 within its rounding."""
    from tinyalex.kernels.conv_grouped_cpu import GroupedIm2colCPU
    rng = np.random.default_rng(3)
    x = rng.standard_normal((N, C, H, W)).astype(dtype)
    w = rng.standard_normal((OC, C // groups, k, k)).astype(dtype)
    b = rng.standard_normal(OC).astype(dtype)
    fn = conv.Conv2d(stride, padding, groups=groups)
    g = fn.geometry(x.shape, w.shape, b.shape)
    fast = GroupedIm2colCPU(chunk_bytes=chunk) if chunk else GROUPED_IM2COL
    if chunk:
        assert fast.images_per_chunk(g, x.dtype.itemsize) == 1
    assert (conv.conv2d_algorithm(g, np.dtype(dtype), "numpy") is GROUPED_IM2COL) == (
        C // groups >= 8)                          # MIN_GROUP_CHANNELS: else the reference
    y, saved = fast.forward(x, w, b, g, keep=True)
    y_ref, saved_ref = conv.GROUPED.forward(x, w, b, g, keep=True)
    tol = dict(rtol=1e-4, atol=1e-4) if dtype == np.float32 else dict(rtol=1e-11, atol=1e-11)
    np.testing.assert_allclose(y, y_ref, **tol)
    gy = rng.standard_normal(y.shape).astype(dtype)
    for need in [(True, True, True), (False, True, False), (True, False, False)]:
        for got, want in zip(fast.backward(gy, saved, *need),
                             conv.GROUPED.backward(gy, saved_ref, *need)):
            if want is None:
                assert got is None
            else:
                assert got.shape == want.shape and got.dtype == dtype
                np.testing.assert_allclose(got, want, **tol)


def test_lazy_grouped_takes_its_weight_shape_from_the_input():
    m = nn.LazyConv2d(8, kernel_size=3, padding=1, groups=4)
    y = m(tinyalex.randn(2, 12, 5, 5))
    assert type(m) is nn.Conv2d and tuple(m.weight.shape) == (8, 3, 3, 3)
    assert tuple(y.shape) == (2, 8, 5, 5) and "groups=4" in repr(m)


def test_the_grouped_rules_come_first_in_every_mode_and_backend():
    """The other fast algorithms (1x1 GEMM, Winograd, direct, GPU im2col) take only
    groups == 1: a grouped layer gets the batched-groups algorithm on NumPy with the fast
    kernels in auto mode, and the per-group reference in every other mode and on the
    GPU; groups=1 chooses as before; the docstring's table holds the rules."""
    grouped = conv.Conv2d(1, 1, groups=2).geometry((1, 64, 12, 12), (64, 32, 3, 3))
    plain = conv.Conv2d(1, 1).geometry((1, 64, 12, 12), (64, 64, 3, 3))
    assert grouped.K == 32 * 9 and plain.groups == 1
    for mode in ("reference", "fast"):
        with kernels.use(mode):
            for backend in ("numpy", "cupy"):
                for dtype in (np.float32, np.float64):
                    want = (GROUPED_IM2COL if mode == "fast" and backend == "numpy"
                            else conv.GROUPED)
                    assert conv.conv2d_algorithm(grouped, np.dtype(dtype), backend) is want
            assert conv.conv2d_algorithm(plain, np.dtype(np.float32), "numpy") \
                not in (conv.GROUPED, GROUPED_IM2COL)
    with kernels.use_conv("im2col"):
        assert conv.conv2d_algorithm(grouped, np.dtype(np.float32), "numpy") is conv.GROUPED
    pointwise = conv.Conv2d(1, 0, groups=4).geometry((1, 8, 4, 4), (8, 2, 1, 1))
    assert conv.conv2d_algorithm(pointwise, np.dtype(np.float32), "numpy") is conv.GROUPED
    pointwise = conv.Conv2d(1, 0, groups=4).geometry((1, 32, 4, 4), (8, 8, 1, 1))
    assert conv.conv2d_algorithm(pointwise, np.dtype(np.float32), "numpy") is GROUPED_IM2COL
    assert conv.rules_table(conv.CONV_RULES) in conv.conv2d_algorithm.__doc__
    assert conv.GROUPED.name in conv.conv2d_algorithm.__doc__
    assert GROUPED_IM2COL.name in conv.conv2d_algorithm.__doc__
    assert nn.Conv2d(16, 8, 3, groups=2).algorithm((1, 16, 6, 6)) == GROUPED_IM2COL.name
    assert nn.Conv2d(4, 8, 3, groups=2).algorithm((1, 4, 6, 6)) == conv.GROUPED.name


@pytest.mark.parametrize("make,words", [
    (lambda: nn.Conv2d(3, 8, 3, groups=2), ["Conv2d", "in_channels", "divisible by groups",
                                            "in_channels=3", "groups=2"]),
    (lambda: nn.Conv2d(4, 6, 3, groups=4), ["Conv2d", "out_channels", "divisible by groups",
                                            "out_channels=6", "groups=4"]),
    (lambda: nn.Conv2d(4, 8, 3, groups=0), ["Conv2d", "groups", "got 0"]),
    (lambda: nn.LazyConv2d(6, 3, groups=4), ["LazyConv2d", "out_channels", "groups=4"]),
    (lambda: nn.LazyConv2d(8, 3, groups=2)(tinyalex.randn(1, 3, 5, 5)),
     ["LazyConv2d", "in_channels", "(1, 3, 5, 5)", "groups=2"]),
    (lambda: F.conv2d(tinyalex.randn(1, 5, 5, 5), tinyalex.randn(4, 2, 3, 3), groups=2),
     ["conv2d", "4 channels", "(1, 5, 5, 5)", "(4, 2, 3, 3)", "groups=2"]),
    (lambda: F.conv2d(tinyalex.randn(1, 4, 5, 5), tinyalex.randn(3, 2, 3, 3), groups=2),
     ["conv2d", "(3, 2, 3, 3)", "3 output channels", "groups=2"]),
])
def test_bad_groups_name_the_layer_argument_and_shapes(make, words):
    """PyTorch raises ValueError for channels that groups does not divide; so do we,
    and every message names the layer, the argument and the sizes."""
    with pytest.raises(ValueError) as e:
        make()
    for w in words:
        assert w in str(e.value), (w, str(e.value))
