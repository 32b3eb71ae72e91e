"""SGD against a hand computation (PyTorch's formulas) and against torch.optim.SGD."""

import numpy as np
import pytest

import tinyalex
from tinyalex import nn, optim
from helpers.checks import arr, host, require_torch

# Gradients handed to the optimiser on three successive steps (two parameters).
GRADS = [
    (np.array([0.5, -1.0, 2.0]), np.array([[1.0, 0.0], [-3.0, 0.25]])),
    (np.array([0.1, 0.2, -0.3]), np.array([[0.5, 0.5], [0.0, -1.0]])),
    (np.array([-2.0, 1.0, 0.0]), np.array([[0.0, 4.0], [1.0, 1.0]])),
]
START = (np.array([1.0, 2.0, -1.0]), np.array([[0.5, -0.5], [2.0, 0.0]]))


def by_hand(lr, momentum, weight_decay):
    """torch.optim.SGD's documented update, written out with NumPy:
    d = g + wd * p;  b = d on the first step, else momentum * b + d;  p -= lr * b."""
    params = [p.copy() for p in START]
    bufs = [None, None]
    for grads in GRADS:
        for i, g in enumerate(grads):
            d = g + weight_decay * params[i]
            if momentum:
                bufs[i] = d.copy() if bufs[i] is None else momentum * bufs[i] + d
                d = bufs[i]
            params[i] = params[i] - lr * d
    return params


def run_ours(lr, momentum, weight_decay, backend="numpy"):
    params = [arr(p, backend) for p in START]
    opt = optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay)
    for grads in GRADS:
        opt.zero_grad()
        for p, g in zip(params, grads):
            p.backward(g)          # a leaf's backward puts g in p.grad
        opt.step()
    return [host(p) for p in params]


SETTINGS = [(0.1, 0.0, 0.0), (0.1, 0.9, 0.0), (0.05, 0.0, 0.01), (0.2, 0.5, 0.1)]


@pytest.mark.parametrize("lr, momentum, weight_decay", SETTINGS)
def test_sgd_matches_the_hand_computation(backend, lr, momentum, weight_decay):
    ours = run_ours(lr, momentum, weight_decay, backend)
    for o, h in zip(ours, by_hand(lr, momentum, weight_decay)):
        np.testing.assert_allclose(o, h, rtol=1e-14, atol=1e-15)


def test_plain_sgd_one_step_written_out():
    p = arr([1.0, -2.0])
    p.grad = tinyalex.tensor([0.5, 0.25], dtype=np.float64)
    optim.SGD([p], lr=0.1).step()
    np.testing.assert_array_equal(host(p), [1.0 - 0.05, -2.0 - 0.025])


@pytest.mark.parametrize("lr, momentum, weight_decay", SETTINGS)
def test_sgd_matches_torch(lr, momentum, weight_decay):
    torch = require_torch()
    params = [torch.tensor(p, requires_grad=True) for p in START]
    opt = torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay)
    for grads in GRADS:
        opt.zero_grad()
        for p, g in zip(params, grads):
            p.grad = torch.tensor(g)
        opt.step()
    for o, t in zip(run_ours(lr, momentum, weight_decay), params):
        np.testing.assert_allclose(o, t.detach().numpy(), rtol=1e-14, atol=1e-15)


def test_float32_training_step_matches_torch():
    """One real step on a small network in float32: same weights, same data, same
    update (to float32 rounding)."""
    torch = require_torch()
    tinyalex.manual_seed(0)
    net = nn.Sequential(nn.Linear(5, 4), nn.ReLU(), nn.Linear(4, 3))
    ref = torch.nn.Sequential(torch.nn.Linear(5, 4), torch.nn.ReLU(), torch.nn.Linear(4, 3))
    ref.load_state_dict({k: torch.tensor(v.numpy()) for k, v in net.state_dict().items()})
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((6, 5)).astype(np.float32), rng.integers(0, 3, 6)
    opt = optim.SGD(net.parameters(), lr=0.3, momentum=0.9, weight_decay=1e-3)
    topt = torch.optim.SGD(ref.parameters(), lr=0.3, momentum=0.9, weight_decay=1e-3)
    for _ in range(3):
        opt.zero_grad()
        nn.functional.cross_entropy(net(tinyalex.tensor(x)), tinyalex.tensor(y)).backward()
        opt.step()
        topt.zero_grad()
        torch.nn.functional.cross_entropy(ref(torch.tensor(x)), torch.tensor(y)).backward()
        topt.step()
    for k, v in net.state_dict().items():
        np.testing.assert_allclose(v.numpy(), ref.state_dict()[k].numpy(), rtol=1e-5, atol=1e-6)


def test_parameters_without_grad_are_left_alone():
    a, b = arr([1.0]), arr([2.0])
    a.grad = tinyalex.tensor([1.0], dtype=np.float64)
    opt = optim.SGD([a, b], lr=0.5, momentum=0.9)
    opt.step()
    assert host(a)[0] == 0.5 and host(b)[0] == 2.0
    opt.zero_grad()
    assert a.grad is None and b.grad is None


def test_state_dict_resumes_the_same_trajectory():
    """Stop after one step, restore into a new optimiser: the momentum carries on."""
    full = run_ours(0.1, 0.9, 0.01)
    params = [arr(p) for p in START]
    opt = optim.SGD(params, lr=0.1, momentum=0.9, weight_decay=0.01)
    for p, g in zip(params, GRADS[0]):
        p.backward(g)
    opt.step()
    state = opt.state_dict()
    opt2 = optim.SGD(params, lr=1.0)
    opt2.load_state_dict(state)
    for grads in GRADS[1:]:
        opt2.zero_grad()
        for p, g in zip(params, grads):
            p.backward(g)
        opt2.step()
    for f, p in zip(full, params):
        np.testing.assert_array_equal(f, host(p))


@pytest.mark.parametrize("kwargs, match", [
    ({"lr": 0}, "lr must be a positive number, got 0"),
    ({"lr": -0.1}, "lr must be a positive number, got -0.1"),
    ({"lr": 0.1, "momentum": -0.5}, "momentum must be a non-negative number, got -0.5"),
    ({"lr": 0.1, "weight_decay": float("nan")}, "weight_decay must be a non-negative"),
    ({"lr": "0.1"}, "lr must be a positive number, got '0.1'"),
])
def test_bad_hyper_parameters(kwargs, match):
    with pytest.raises(ValueError, match=match):
        optim.SGD([arr([1.0])], **kwargs)


def test_bad_parameter_lists():
    with pytest.raises(ValueError, match="empty parameter list"):
        optim.SGD([], lr=0.1)
    with pytest.raises(TypeError, match="parameter 1 must be a Tensor with requires_grad"):
        optim.SGD([arr([1.0]), np.ones(2)], lr=0.1)
    opt = optim.SGD([arr([1.0, 2.0])], lr=0.1, momentum=0.9)
    with pytest.raises(ValueError, match=r"momentum buffer 0 has shape \(3,\), parameter "
                                         r"has \(2,\)"):
        opt.load_state_dict({"momentum_buffers": [np.zeros(3)]})
