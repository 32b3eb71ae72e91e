"""Batch normalization (ops/batchnorm.py, nn/batchnorm.py) and adaptive pooling
(ops/adaptive_pool.py): float64 gradchecks of the closed-form backward, outputs,
gradients and running statistics against PyTorch over several steps in train and eval
mode, state dicts traded with PyTorch both ways through safetensors, lazy layers, and
the bad-input errors."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import tinyalex
import tinyalex.kernels as kernels
import tinyalex.nn.functional as F
from tinyalex import nn
from tinyalex.kernels.batchnorm_cpu import BATCHNORM_CPU
from tinyalex.ops import batchnorm
from helpers.checks import check, distinct, randn, require_torch

torch = require_torch()
import safetensors.torch  # noqa: E402  (needs torch)


# -- gradients -------------------------------------------------------------------------

@pytest.mark.parametrize("mode", ["reference", "fast"])
@settings(max_examples=15, deadline=None)
@given(shape=st.sampled_from([(4, 3), (3, 2, 5), (2, 3, 4, 5), (3, 1, 2, 2)]),
       affine=st.booleans(), training=st.booleans(), seed=st.integers(0, 2**16))
def test_batch_norm_gradients(mode, shape, affine, training, seed):
    with kernels.use(mode):
        assert batchnorm.batch_norm_algorithm(np.zeros((2, 3, 4))).name == (
            "batchnorm (reference)" if mode == "reference" else "batchnorm loop")
        assert batchnorm.batch_norm_algorithm(np.zeros((2, 3))).name == (
            "batchnorm (reference)" if mode == "reference" else "batchnorm loop")
        _check_batch_norm_gradients(shape, affine, training, seed)


def _check_batch_norm_gradients(shape, affine, training, seed):
    rng = np.random.default_rng(seed)
    C = shape[1]
    x = randn(rng, shape, scale=2.0)
    w = randn(rng, (C,)) if affine else None
    b = randn(rng, (C,)) if affine else None
    rm = tinyalex.tensor(rng.standard_normal(C))
    rv = tinyalex.tensor(rng.random(C) + 0.5)
    inputs = (x, w, b) if affine else (x,)

    def fn(*args):
        x, w, b = (args + (None, None))[:3]
        return F.batch_norm(x, None if training else rm, None if training else rv, w, b,
                            training=training, eps=1e-3)

    check(fn, *inputs)


@settings(max_examples=20, deadline=None)
@given(H=st.integers(1, 7), W=st.integers(1, 7), OH=st.integers(1, 4),
       OW=st.integers(1, 4), kind=st.sampled_from(["avg", "max"]),
       seed=st.integers(0, 2**16))
def test_adaptive_pool_gradients_and_values(H, W, OH, OW, kind, seed):
    rng = np.random.default_rng(seed)
    x = tinyalex.tensor(distinct(rng, (2, 2, H, W)), requires_grad=True)
    fn = F.adaptive_avg_pool2d if kind == "avg" else F.adaptive_max_pool2d
    check(lambda x: fn(x, (OH, OW)), x)
    want = getattr(torch.nn.functional, f"adaptive_{kind}_pool2d")(
        torch.tensor(x.numpy()), (OH, OW)).numpy()
    np.testing.assert_allclose(fn(x, (OH, OW)).numpy(), want, rtol=1e-12, atol=1e-12)


def channels_last(a):
    """(N, C, H, W) values in (N, H, W, C) memory."""
    return np.ascontiguousarray(a.transpose(0, 2, 3, 1)).transpose(0, 3, 1, 2)


@pytest.mark.parametrize("shape,layout", [((3, 4, 6), "C"), ((2, 4, 3, 5), "C"),
                                          ((2, 4, 3, 5), "gy channels-last"),
                                          ((9, 5), "C"), ((2, 4, 3, 5), "channels-last"),
                                          ((3, 7, 2, 3), "x channels-last, gy C"),
                                          ((2, 3, 4, 5), "x strided")])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_fused_loop_equals_the_reference(shape, layout, dtype):
    """kernels/batchnorm_cpu.py against the reference, training and eval, with and
    without gamma, in both its loops (channel by channel in channel-major memory; row by
    row where the channels are innermost: (N, C), channels-last); the gradient may come
    in another memory order than the input (a convolution's)."""
    from tinyalex.kernels.batchnorm_cpu import channels_innermost
    rng = np.random.default_rng(2)
    C = shape[1]
    x = (rng.standard_normal(shape) * 3 + 1).astype(dtype)
    gy = rng.standard_normal(shape).astype(dtype)
    if layout in ("gy channels-last", "channels-last"):   # (N, C, H, W) in NHWC memory
        gy = channels_last(gy)
    if layout in ("channels-last", "x channels-last, gy C"):
        x = channels_last(x)
    if layout == "x strided":                             # every other column of a wider x
        wide = np.repeat(x, 2, axis=3)
        x = wide[..., ::2]
        assert not x.flags.c_contiguous
    rows = len(shape) == 2 or layout in ("channels-last", "x channels-last, gy C")
    assert channels_innermost(x) == rows and BATCHNORM_CPU.takes(x)
    gamma, beta = rng.standard_normal(C).astype(dtype), rng.standard_normal(C).astype(dtype)
    mean, var = rng.standard_normal(C).astype(dtype), (rng.random(C) + 0.5).astype(dtype)
    tol = dict(rtol=1e-5, atol=1e-5) if dtype == np.float32 else dict(rtol=1e-12, atol=1e-12)
    for g, b in [(gamma, beta), (None, None)]:
        for stats in [(None, None), (mean, var)]:
            got = BATCHNORM_CPU.forward(x, g, b, 1e-5, *stats)
            want = batchnorm.REFERENCE.forward(x, g, b, 1e-5, *stats)
            if rows and x.ndim == 4:                   # y lies as x: channels-last
                assert got[0].transpose(0, 2, 3, 1).flags.c_contiguous
            for a, w in zip((got[0], got[2], got[3]), (want[0], want[2], want[3])):
                np.testing.assert_allclose(a, w, **tol)
            for a, w in zip(BATCHNORM_CPU.backward(gy, got[1]),
                            batchnorm.REFERENCE.backward(gy, want[1])):
                if w is None:
                    assert a is None
                else:
                    np.testing.assert_allclose(a, w, **tol)
                    assert a.dtype == dtype


# -- against PyTorch, step by step -------------------------------------------------------

CASES = [  # (layer, input shape, options)
    ("BatchNorm2d", (4, 3, 5, 6), {}),
    ("BatchNorm2d", (2, 5, 3, 3), {"momentum": None}),
    ("BatchNorm2d", (3, 4, 2, 2), {"affine": False, "momentum": 0.3, "eps": 1e-3}),
    ("BatchNorm2d", (3, 4, 2, 2), {"track_running_stats": False}),
    ("BatchNorm1d", (8, 6), {}),
    ("BatchNorm1d", (4, 3, 7), {"momentum": 0.5}),
]


@pytest.mark.parametrize("name,shape,options", CASES)
def test_batch_norm_matches_torch(name, shape, options):
    rng = np.random.default_rng(0)
    ours, theirs = getattr(nn, name)(shape[1], **options), getattr(torch.nn, name)(
        shape[1], **options)
    if options.get("affine", True):                    # not the trivial 1 and 0
        w, b = rng.standard_normal(shape[1]), rng.standard_normal(shape[1])
        with torch.no_grad():
            theirs.weight.copy_(torch.tensor(w)), theirs.bias.copy_(torch.tensor(b))
        ours.weight.array[...], ours.bias.array[...] = w, b
    for step in range(4):                              # running statistics move
        x = (rng.standard_normal(shape) * (step + 1) + step).astype(np.float32)
        gy = rng.standard_normal(shape).astype(np.float32)
        xt, xo = torch.tensor(x, requires_grad=True), tinyalex.tensor(x, requires_grad=True)
        yt = theirs(xt)
        yt.backward(torch.tensor(gy))
        y = ours(xo)
        y.backward(gy)
        np.testing.assert_allclose(y.numpy(), yt.detach().numpy(), rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(xo.grad.numpy(), xt.grad.numpy(), rtol=1e-3, atol=1e-4)
    if options.get("affine", True):
        np.testing.assert_allclose(ours.weight.grad.numpy(), theirs.weight.grad.numpy(),
                                   rtol=1e-3, atol=1e-3)
        np.testing.assert_allclose(ours.bias.grad.numpy(), theirs.bias.grad.numpy(),
                                   rtol=1e-3, atol=1e-3)
    theirs_state = theirs.state_dict()
    assert list(ours.state_dict()) == list(theirs_state)
    for k, v in ours.state_dict().items():
        np.testing.assert_allclose(v.numpy(), theirs_state[k].numpy(), rtol=1e-5, atol=1e-5,
                                   err_msg=k)
    ours.eval(), theirs.eval()
    x = rng.standard_normal(shape).astype(np.float32)
    np.testing.assert_allclose(ours(tinyalex.tensor(x)).numpy(),
                               theirs(torch.tensor(x)).detach().numpy(), rtol=1e-4, atol=1e-5)


def test_lazy_batch_norm_becomes_the_layer():
    for lazy, plain, shape in [(nn.LazyBatchNorm2d, nn.BatchNorm2d, (2, 3, 4, 4)),
                               (nn.LazyBatchNorm1d, nn.BatchNorm1d, (5, 7))]:
        net = nn.Sequential(lazy(momentum=0.2))
        assert type(net[0]) is lazy
        net(tinyalex.randn(*shape))
        assert type(net[0]) is plain and net[0].num_features == shape[1]
        assert net[0].weight.shape == (shape[1],)
        assert int(net[0].num_batches_tracked.item()) == 1 and net[0].momentum == 0.2
        assert "BatchNorm" in net[0].where and "Lazy" not in net[0].where


def test_state_dicts_trade_with_torch_both_ways(tmp_path):
    """A net with BatchNorm (weights and running statistics) saved by PyTorch loads into
    tinyalex and gives PyTorch's eval outputs; and the reverse."""
    def torch_net():
        t = torch.nn
        return t.Sequential(t.Conv2d(1, 4, 3, padding=1), t.BatchNorm2d(4), t.ReLU(),
                            t.AdaptiveAvgPool2d((1, 1)), t.Flatten(), t.Linear(4, 6),
                            t.BatchNorm1d(6), t.Linear(6, 3))

    def our_net():
        return nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(),
                             nn.AdaptiveAvgPool2d((1, 1)), nn.Flatten(), nn.Linear(4, 6),
                             nn.BatchNorm1d(6), nn.Linear(6, 3))

    rng = np.random.default_rng(1)
    x = rng.standard_normal((5, 1, 6, 6)).astype(np.float32)
    theirs = torch_net()
    theirs(torch.tensor(x)), theirs(torch.tensor(x * 2))    # running stats away from 0/1
    theirs.eval()
    path = tmp_path / "bn.safetensors"
    safetensors.torch.save_file(theirs.state_dict(), str(path))
    ours = our_net()
    ours.load_state_dict(tinyalex.load(str(path)))
    ours.eval()
    assert int(ours[1].num_batches_tracked.item()) == 2
    want = theirs(torch.tensor(x)).detach().numpy()
    np.testing.assert_allclose(ours(tinyalex.tensor(x)).numpy(), want, rtol=1e-4, atol=1e-5)

    ours = our_net()
    ours(tinyalex.tensor(x)), ours(tinyalex.tensor(x * 3))
    ours.eval()
    tinyalex.save(ours.state_dict(), str(tmp_path / "ours.safetensors"))
    theirs = torch_net()
    theirs.load_state_dict(safetensors.torch.load_file(str(tmp_path / "ours.safetensors")))
    theirs.eval()
    assert int(theirs[1].num_batches_tracked) == 2
    np.testing.assert_allclose(theirs(torch.tensor(x)).detach().numpy(),
                               ours(tinyalex.tensor(x)).numpy(), rtol=1e-4, atol=1e-5)


def test_identity_and_buffers_follow_the_module():
    bn = nn.BatchNorm2d(3)
    assert [n for n, _ in bn.named_buffers()] == ["running_mean", "running_var",
                                                  "num_batches_tracked"]
    assert [n for n, _ in bn.named_parameters()] == ["weight", "bias"]   # optimizer's list
    bn.double()
    assert bn.running_mean.dtype == np.float64 and bn.num_batches_tracked.dtype == np.int64
    x = tinyalex.randn(2, 3)
    assert nn.Identity(54, unused=1)(x) is x


# -- bad input -------------------------------------------------------------------------

def test_bad_inputs_name_the_layer_argument_and_shape():
    net = nn.Sequential(nn.BatchNorm2d(3))
    with pytest.raises(ValueError, match=r"BatchNorm2d layer '0'.*more than 1 value per "
                                         r"channel.*\(1, 3, 1, 1\)"):
        net(tinyalex.randn(1, 3, 1, 1))
    net.eval()
    net(tinyalex.randn(1, 3, 1, 1))                  # eval: one value is fine, as PyTorch
    with pytest.raises(ValueError, match=r"BatchNorm2d layer '0'.*4-D.*\(2, 3\)"):
        net(tinyalex.randn(2, 3))
    with pytest.raises(ValueError, match=r"3 channels.*num_features=4"):
        nn.BatchNorm1d(4)(tinyalex.randn(2, 3))
    with pytest.raises(ValueError, match=r"BatchNorm1d: num_features"):
        nn.BatchNorm1d(0)
    with pytest.raises(ValueError, match=r"AdaptiveAvgPool2d: output_size.*got 0"):
        nn.AdaptiveAvgPool2d(0)
    with pytest.raises(ValueError, match=r"AdaptiveMaxPool2d layer '0'.*4-D.*\(2, 3\)"):
        nn.Sequential(nn.AdaptiveMaxPool2d(1))(tinyalex.randn(2, 3))


def test_residual_block_matches_torch_forward_and_backward():
    """d2l's Residual block (BatchNorm in training mode, the 1x1 stride-2 shortcut, the
    in-place ``Y += X``, F.relu), with PyTorch's weights: outputs, the input's gradient,
    every parameter's gradient and the running statistics equal PyTorch's."""
    def build(nn_, F_):
        class Residual(nn_.Module):
            def __init__(self):
                super().__init__()
                self.conv1 = nn_.Conv2d(3, 6, kernel_size=3, padding=1, stride=2)
                self.conv2 = nn_.Conv2d(6, 6, kernel_size=3, padding=1)
                self.conv3 = nn_.Conv2d(3, 6, kernel_size=1, stride=2)
                self.bn1, self.bn2 = nn_.BatchNorm2d(6), nn_.BatchNorm2d(6)

            def forward(self, X):
                Y = F_.relu(self.bn1(self.conv1(X)))
                Y = self.bn2(self.conv2(Y))
                Y += self.conv3(X)
                return F_.relu(Y)
        return Residual()

    theirs = build(torch.nn, torch.nn.functional)
    ours = build(nn, F)
    ours.load_state_dict({k: v.detach().numpy() for k, v in theirs.state_dict().items()})
    rng = np.random.default_rng(3)
    x = rng.standard_normal((4, 3, 7, 7)).astype(np.float32)
    gy = rng.standard_normal((4, 6, 4, 4)).astype(np.float32)
    xt, xo = torch.tensor(x, requires_grad=True), tinyalex.tensor(x, requires_grad=True)
    yt, yo = theirs(xt), ours(xo)
    yt.backward(torch.tensor(gy))
    yo.backward(gy)
    np.testing.assert_allclose(yo.numpy(), yt.detach().numpy(), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(xo.grad.numpy(), xt.grad.numpy(), rtol=1e-3, atol=1e-5)
    theirs_grads = dict(theirs.named_parameters())
    for name, p in ours.named_parameters():
        np.testing.assert_allclose(p.grad.numpy(), theirs_grads[name].grad.numpy(),
                                   rtol=1e-3, atol=1e-4, err_msg=name)
    for name, b in ours.named_buffers():
        np.testing.assert_allclose(b.numpy(), dict(theirs.named_buffers())[name].numpy(),
                                   rtol=1e-5, atol=1e-6, err_msg=name)


def test_doc_page_prints_what_it_says():
    """docs/batch_norm.md: every ``>>>`` example runs, in order, and prints exactly the
    output the page shows (doctest, no option that loosens the match)."""
    import doctest
    import re
    from helpers.reliability import ROOT
    page = ROOT / "docs" / "batch_norm.md"
    blocks = re.findall(r"```python\n(.*?)```", page.read_text(), re.S)
    test = doctest.DocTestParser().get_doctest("\n".join(blocks), {}, "docs/batch_norm.md",
                                               str(page), 0)
    assert len(test.examples) >= 15
    report = []
    runner = doctest.DocTestRunner(optionflags=0)
    runner.run(test, out=report.append)
    assert runner.failures == 0, "".join(report)
