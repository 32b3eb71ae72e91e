"""One buffer for every parameter and one for every gradient (``nn.FlatParameters``):
backward writes the gradients there, SGD updates the whole buffer in one pass, and
the numbers are those of the per-parameter path, bit for bit."""

import numpy as np
import pytest

import tinyalex
from tinyalex import nn, optim


def lenet_steps(flat: bool, steps=3, momentum=0.9, weight_decay=1e-3):
    tinyalex.manual_seed(0)
    net = tinyalex.models.lenet()
    params = list(net.parameters())
    buffers = nn.FlatParameters(params) if flat else None
    opt = optim.SGD(params, lr=0.1, momentum=momentum, weight_decay=weight_decay,
                    flat=buffers)
    rng = np.random.default_rng(1)
    for _ in range(steps):
        x = tinyalex.tensor(rng.random((8, 1, 28, 28), np.float32))
        y = tinyalex.tensor(rng.integers(0, 10, 8))
        opt.zero_grad()
        nn.CrossEntropyLoss()(net(x), y).backward()
        if flat:
            assert opt._flat_ready()
        opt.step()
    return net, opt, buffers


@pytest.mark.parametrize("momentum, weight_decay", [(0.0, 0.0), (0.9, 1e-3)])
def test_flat_steps_equal_per_parameter_steps_bit_for_bit(momentum, weight_decay):
    net_a, opt_a, _ = lenet_steps(False, momentum=momentum, weight_decay=weight_decay)
    net_b, opt_b, flat = lenet_steps(True, momentum=momentum, weight_decay=weight_decay)
    for (name, a), (_, b) in zip(net_a.state_dict().items(), net_b.state_dict().items()):
        np.testing.assert_array_equal(a.numpy(), b.numpy(), err_msg=name)
    for a, b in zip(opt_a.state_dict()["momentum_buffers"],
                    opt_b.state_dict()["momentum_buffers"]):
        assert (a is None) == (b is None)
        if a is not None:
            np.testing.assert_array_equal(a, b)
    assert flat.views_intact()


def test_gradients_land_in_the_flat_buffer():
    net, opt, flat = lenet_steps(True, steps=1)
    for p, start in zip(flat.params, flat.offsets):
        assert p.grad.array is p._grad_buffer
        assert np.shares_memory(p.array, flat.data) and np.shares_memory(p.grad.array, flat.grad)
        np.testing.assert_array_equal(flat.grad[start:start + p.numel()], p.grad.numpy().ravel())
        np.testing.assert_array_equal(flat.data[start:start + p.numel()], p.numpy().ravel())
    assert flat.size == sum(p.numel() for p in net.parameters()) == 61706


def test_a_second_backward_adds_and_missing_gradients_are_zeroed():
    w = nn.Parameter(np.ones(3, np.float32))
    v = nn.Parameter(np.ones(2, np.float32))
    flat = nn.FlatParameters([w, v])
    flat.grad[:] = 7                                      # stale numbers from a step before
    (w * 2).sum().backward()
    (w * 3).sum().backward()
    np.testing.assert_array_equal(w.grad.numpy(), [5, 5, 5])
    assert v.grad is None
    flat.zero_missing_gradients()
    np.testing.assert_array_equal(flat.grad, [5, 5, 5, 0, 0])


def test_load_state_dict_keeps_the_views_and_moving_breaks_them():
    net, opt, flat = lenet_steps(True, steps=1)
    other = tinyalex.models.lenet()
    net.load_state_dict(other.state_dict())
    assert flat.views_intact()
    for a, b in zip(net.parameters(), other.parameters()):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    next(net.parameters()).data = tinyalex.zeros(6, 1, 5, 5)    # as d2l's init code does
    assert not flat.views_intact() and not opt._flat_ready()


def test_bad_flat_arguments_are_named():
    a = nn.Parameter(np.ones(2, np.float32))
    b = nn.Parameter(np.ones(2, np.float64))
    with pytest.raises(ValueError, match="share one dtype"):
        nn.FlatParameters([a, b])
    with pytest.raises(ValueError, match="got no parameters"):
        nn.FlatParameters([])
    with pytest.raises(ValueError, match="listed twice"):
        nn.FlatParameters([a, a])
    flat = nn.FlatParameters([a])
    with pytest.raises(ValueError, match="flat must hold exactly the parameters"):
        optim.SGD([a, nn.Parameter(np.ones(2, np.float32))], lr=0.1, flat=flat)
