"""TINYALEX_CONV=im2col (every convolution as im2col + one GEMM, the teaching path)
trains d2l's networks as the default mode does: the algorithms compute the same
convolution, rounded differently, so a few steps agree to float32 noise."""

import numpy as np
import pytest

import tinyalex
import tinyalex.kernels as kernels
from tinyalex import nn, optim


def train_steps(model, conv_mode, steps, batch, side, lr):
    tinyalex.manual_seed(0)
    net = getattr(tinyalex.models, model)()
    net.apply(tinyalex.models.init_weights_xavier)
    opt = optim.SGD(net.parameters(), lr=lr)
    rng = np.random.default_rng(3)
    losses = []
    with kernels.use_conv(conv_mode):
        names = {layer.algorithm(x_shape) for layer, x_shape in _conv_inputs(net, batch, side)}
        for _ in range(steps):
            x = tinyalex.tensor(rng.random((batch, 1, side, side), np.float32))
            y = tinyalex.tensor(rng.integers(0, 10, batch))
            opt.zero_grad()
            loss = nn.CrossEntropyLoss()(net(x), y)
            loss.backward()
            opt.step()
            losses.append(loss.item())
    return np.array(losses), [p.numpy() for p in net.parameters()], names


def _conv_inputs(net, batch, side):
    x = tinyalex.zeros(batch, 1, side, side)
    with tinyalex.no_grad():
        for layer in net:
            if isinstance(layer, nn.Conv2d):
                yield layer, x.shape
            x = layer(x)


@pytest.mark.parametrize("model, steps, batch, side, lr, tol", [
    ("lenet", 20, 64, 28, 0.9, 1e-3),
    ("alexnet", 2, 4, 224, 0.01, 1e-4)])
def test_im2col_mode_trains_as_the_default_mode(model, steps, batch, side, lr, tol):
    auto_losses, auto_w, auto_names = train_steps(model, "auto", steps, batch, side, lr)
    im2col_losses, im2col_w, im2col_names = train_steps(model, "im2col", steps, batch, side, lr)
    assert im2col_names == {"im2col+GEMM"} and auto_names != im2col_names
    np.testing.assert_allclose(im2col_losses, auto_losses, rtol=tol)
    for a, b in zip(auto_w, im2col_w):
        np.testing.assert_allclose(b, a, rtol=tol * 10, atol=tol * np.abs(a).max())
