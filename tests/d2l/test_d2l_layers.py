"""What d2l's chapters need of the engine beyond the layers: lazy layers with PyTorch's
cls_to_become semantics, cross-entropy reductions, PyTorch's size= keyword, .type(),
and backward() called under no_grad (d2l 1.0's Trainer)."""

from __future__ import annotations

import numpy as np
import pytest

import tinyalex
from helpers.checks import require_torch
from tinyalex import nn
from tinyalex.tensor import UninitializedParameter


def lazy_lenet(lib):
    """d2l 1.0's LeNet body, built from ``lib``'s nn (tinyalex's or PyTorch's)."""
    return lib.Sequential(
        lib.LazyConv2d(6, kernel_size=5, padding=2), lib.Sigmoid(),
        lib.AvgPool2d(kernel_size=2, stride=2),
        lib.LazyConv2d(16, kernel_size=5), lib.Sigmoid(),
        lib.AvgPool2d(kernel_size=2, stride=2), lib.Flatten(),
        lib.LazyLinear(120), lib.Sigmoid(), lib.LazyLinear(84), lib.Sigmoid(),
        lib.LazyLinear(10))


def initialised(lib):
    """An init function in d2l's style that records which layers it initialised."""
    seen = []

    def init_cnn(m):
        if type(m) == lib.Linear or type(m) == lib.Conv2d:  # noqa: E721 - d2l's test
            seen.append(type(m).__name__)
    return init_cnn, seen


def test_lazy_layers_become_conv2d_and_linear_as_in_pytorch():
    torch = require_torch()
    ours, theirs = lazy_lenet(nn), lazy_lenet(torch.nn)
    assert [type(m).__name__ for m in ours] == [type(m).__name__ for m in theirs]
    for lib, net in ((nn, ours), (torch.nn, theirs)):
        before, seen_before = initialised(lib)
        net.apply(before)                               # d2l 1.0 AlexNet: finds nothing
        assert seen_before == []
    ours(tinyalex.rand(2, 1, 28, 28))
    theirs(torch.rand(2, 1, 28, 28))
    assert [type(m).__name__ for m in ours] == [type(m).__name__ for m in theirs]
    assert type(ours[0]) is nn.Conv2d and type(ours[-1]) is nn.Linear
    for lib, net in ((nn, ours), (torch.nn, theirs)):
        after, seen_after = initialised(lib)
        net.apply(after)                                # d2l 1.0 LeNet: finds all five
        assert seen_after == ["Conv2d", "Conv2d", "Linear", "Linear", "Linear"]
    assert [(k, tuple(v.shape)) for k, v in ours.state_dict().items()] == \
           [(k, tuple(v.shape)) for k, v in theirs.state_dict().items()]
    assert repr(ours) == repr(theirs)
    assert ours[0].in_channels == 1 and ours[7].in_features == 400


def test_lazy_layer_default_init_has_pytorchs_bounds():
    layer = nn.LazyLinear(50)
    layer(tinyalex.rand(4, 200))
    bound = 1 / np.sqrt(200)                     # kaiming_uniform(a=sqrt(5)): U(-b, b)
    w = layer.weight.numpy()
    assert w.shape == (50, 200) and w.dtype == np.float32
    assert np.abs(w).max() <= bound and np.abs(w).max() > 0.9 * bound
    assert np.abs(layer.bias.numpy()).max() <= bound


def test_lazy_layer_materialises_on_the_inputs_dtype():
    layer = nn.LazyConv2d(3, kernel_size=3)
    layer(tinyalex.rand(1, 2, 5, 5, dtype=tinyalex.float64))
    assert layer.weight.dtype == np.float64 and layer.weight.shape == (3, 2, 3, 3)


def test_the_optimizer_sees_parameters_materialised_after_it_was_built():
    net = lazy_lenet(nn)
    sgd = tinyalex.optim.SGD(net.parameters(), lr=0.1)   # d2l 1.0: before any forward
    with pytest.raises(ValueError, match=r"SGD.step: parameters \[0, 1, .*\] \(LazyConv2d "
                                         r"layer '0': weight, \.\.\.\) belong to lazy layers "
                                         r"that have not run their first forward"):
        sgd.step()
    loss = nn.CrossEntropyLoss()(net(tinyalex.rand(4, 1, 28, 28)), tinyalex.tensor([0, 1, 2, 3]))
    loss.backward()
    before = net[0].weight.numpy()
    sgd.step()
    assert sgd.params[0] is net[0].weight and not isinstance(sgd.params[0], UninitializedParameter)
    assert not np.array_equal(before, net[0].weight.numpy())


@pytest.mark.parametrize("use", [
    lambda net: net[0].weight.shape,
    lambda net: net.state_dict(),
    lambda net: nn.init.xavier_uniform_(net[0].weight),
    lambda net: net.num_parameters(),
    lambda net: next(net.parameters()).device,
    lambda net: tinyalex.save(net.state_dict(), "never-written.safetensors"),
])
def test_using_a_lazy_layer_before_its_first_forward_names_it(use, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ValueError, match=r"LazyConv2d layer '0': weight is not materialised "
                                         r"yet: a lazy layer takes its input size from its "
                                         r"first forward"):
        use(lazy_lenet(nn))
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize("layer, x, match", [
    (nn.LazyConv2d(4, 3), tinyalex.rand(3, 5), r"LazyConv2d: expected a 4-D input \(N, C, H, "
                                                r"W\) to read C from, got shape \(3, 5\)"),
    (nn.LazyLinear(4), tinyalex.rand(3, 0), r"LazyLinear: expected an input \(N, features\)"),
])
def test_lazy_layer_refuses_inputs_it_cannot_size_from(layer, x, match):
    with pytest.raises(ValueError, match=match):
        layer(x)
    assert isinstance(layer.weight, UninitializedParameter)   # still lazy, nothing half-made


@pytest.mark.parametrize("make, error, match", [
    (lambda: nn.LazyConv2d(0, 3), ValueError, r"LazyConv2d: out_channels must be a positive"),
    (lambda: nn.LazyConv2d(4, (3, 3, 3)), ValueError, r"LazyConv2d: kernel_size must be an int"),
    (lambda: nn.LazyLinear(2.5), ValueError, r"LazyLinear: out_features must be a positive"),
    (lambda: nn.LazyLinear(2, bias=1), TypeError, r"LazyLinear: bias must be True or False"),
])
def test_lazy_layer_arguments_are_checked_at_construction(make, error, match):
    with pytest.raises(error, match=match):
        make()


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_cross_entropy_reductions_match_pytorch(reduction):
    torch = require_torch()
    rng = np.random.default_rng(0)
    z = rng.standard_normal((6, 4)).astype(np.float32)
    y = np.array([0, 3, 1, 1, 2, 0])
    x = tinyalex.tensor(z, requires_grad=True)
    loss = nn.CrossEntropyLoss(reduction=reduction)(x, tinyalex.tensor(y))
    xt = torch.tensor(z, requires_grad=True)
    ref = torch.nn.CrossEntropyLoss(reduction=reduction)(xt, torch.tensor(y))
    g = rng.standard_normal(loss.shape).astype(np.float32) if reduction == "none" else None
    loss.backward(g)
    ref.backward(None if g is None else torch.tensor(g))
    np.testing.assert_allclose(loss.numpy(), ref.detach().numpy(), rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(x.grad.numpy(), xt.grad.numpy(), rtol=1e-6, atol=1e-7)
    functional = nn.functional.cross_entropy(x.detach(), tinyalex.tensor(y), reduction)
    np.testing.assert_array_equal(functional.numpy(), loss.numpy())


def test_cross_entropy_refuses_unknown_reductions():
    for make in (lambda: nn.CrossEntropyLoss(reduction="avg"),
                 lambda: nn.functional.cross_entropy(tinyalex.rand(2, 3), [0, 1], "batchmean")):
        with pytest.raises(ValueError, match=r"cross_entropy: reduction must be one of "
                                             r"\('mean', 'sum', 'none'\), got '"):
            make()


def test_pytorch_size_keyword_and_type_conversion():
    X = tinyalex.rand(size=(1, 1, 28, 28), dtype=tinyalex.float32)
    assert X.shape == (1, 1, 28, 28) and X.dtype == np.float32
    assert tinyalex.zeros(size=3).shape == (3,) and tinyalex.ones(size=[2, 2]).shape == (2, 2)
    assert tinyalex.randn(size=(2,), dtype=tinyalex.float64).dtype == np.float64
    with pytest.raises(TypeError, match=r"sizes given twice, as \(2,\) and size=\(2,\)"):
        tinyalex.rand(2, size=(2,))
    with pytest.raises(ValueError, match=r"sizes must be >= 0, got \(1, -1\)"):
        tinyalex.zeros(size=(1, -1))
    labels = tinyalex.tensor([1, 0, 2])
    picked = tinyalex.tensor([[0.0, 1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]]).argmax(axis=1)
    same = picked.type(labels.dtype) == labels
    assert same.type(labels.dtype).sum().item() == 3 and same.type(tinyalex.float32).dtype \
        == np.float32


def test_backward_under_no_grad_fills_gradients_as_in_pytorch():
    w = tinyalex.randn(3, requires_grad=True)
    loss = (w * w).sum()
    with tinyalex.no_grad():                     # d2l 1.0's Trainer.fit_epoch does this
        loss.backward()
        scaled = loss * 4                        # d2l's `l * X.shape[0]` under no_grad
    np.testing.assert_allclose(w.grad.numpy(), 2 * w.numpy(), rtol=1e-6)
    assert not scaled.requires_grad and float(scaled) == pytest.approx(4 * float(loss))
