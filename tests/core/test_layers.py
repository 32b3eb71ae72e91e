"""The nn layers: float64 gradient checks through the modules themselves, dropout's
statistics, default and Xavier initialisation, manual_seed, and whole-network
backward passes of AlexNet and LeNet."""

import math

import numpy as np
import pytest

import tinyalex
import tinyalex.nn.functional as F
from tinyalex import nn
from tinyalex.models import init_weights_xavier
from helpers.checks import (arr, away_from_zero, check, distinct, host, randn, require_torch,
                      spot_check)


def layer_check(layer, x):
    """gradcheck of a layer (made float64) in its input and all its parameters."""
    layer.double()
    params = list(layer.parameters())
    return check(lambda x, *ps: layer(x), x, *params)


# -- gradient checks through the modules -----------------------------------------------

@pytest.mark.parametrize("C, OC, kernel, stride, padding, bias, H, W", [
    (2, 3, 3, 1, 1, True, 5, 5),
    (1, 2, (2, 4), (2, 1), (0, 2), True, 4, 6),   # non-square everything
    (3, 1, (4, 3), 3, 0, False, 4, 3),            # kernel = input size, no bias
])
def test_conv2d_layer_gradients(backend, kernel_mode, C, OC, kernel, stride, padding, bias, H, W):
    layer = nn.Conv2d(C, OC, kernel, stride=stride, padding=padding, bias=bias).to(backend)
    x = randn(np.random.default_rng(0), (2, C, H, W), backend)
    layer_check(layer, x)


@pytest.mark.parametrize("bias", [True, False])
def test_linear_layer_gradients(backend, bias):
    layer = nn.Linear(5, 3, bias=bias).to(backend)
    layer_check(layer, randn(np.random.default_rng(1), (4, 5), backend))


@pytest.mark.parametrize("layer", [
    nn.MaxPool2d(3, stride=2), nn.MaxPool2d((2, 3), stride=(1, 2), padding=1),
    nn.AvgPool2d(2), nn.AvgPool2d((3, 2), stride=1, padding=(1, 0)),
], ids=repr)
def test_pool_layer_gradients(backend, kernel_mode, layer):
    x = arr(distinct(np.random.default_rng(2), (2, 2, 5, 6)), backend)
    layer_check(layer, x)


def test_activation_flatten_and_dropout_layer_gradients(backend, kernel_mode):
    rng = np.random.default_rng(3)
    x = arr(away_from_zero(rng, (3, 2, 2, 2)), backend)
    layer_check(nn.ReLU(), x)
    layer_check(nn.Sigmoid(), x)
    layer_check(nn.Flatten(), x)
    drop = nn.Dropout(0.4)

    def fn(x):
        tinyalex.manual_seed(7)
        return drop(x)
    check(fn, x)


def test_cross_entropy_loss_module_matches_functional():
    rng = np.random.default_rng(4)
    z = randn(rng, (4, 3), requires_grad=False)
    t = tinyalex.tensor([0, 2, 1, 2])
    assert nn.CrossEntropyLoss()(z, t).item() == F.cross_entropy(z, t).item()


def test_cross_entropy_value_and_stability():
    z = np.array([[1.0, 2.0, 3.0], [1000.0, -1000.0, 0.0]])
    loss = F.cross_entropy(arr(z), tinyalex.tensor([2, 0])).item()
    expected = np.mean([-(3 - np.log(np.exp(1) + np.exp(2) + np.exp(3))), 0.0])
    assert loss == pytest.approx(expected, rel=1e-14)
    big = arr([[1e4, -1e4], [-1e4, 1e4]])
    out = F.cross_entropy(big, tinyalex.tensor([1, 1]))
    out.backward()
    assert out.item() == pytest.approx(1e4, rel=1e-12)           # (2e4 + 0) / 2
    np.testing.assert_allclose(host(big.grad), [[0.5, -0.5], [0.0, 0.0]], atol=1e-15)


# -- dropout --------------------------------------------------------------------------

@pytest.mark.parametrize("p", [0.1, 0.5, 0.8])
def test_dropout_zeroes_or_scales_and_preserves_the_mean(backend, kernel_mode, p):
    tinyalex.manual_seed(0)
    n = 200_000
    x = tinyalex.tensor(np.random.default_rng(0).uniform(0.5, 1.5, n).astype(np.float32),
                        backend=backend)
    y = host(F.dropout(x, p, training=True))
    xv = host(x)
    kept = y != 0
    # every element is exactly 0 or x / (1 - p) (to float32 rounding of the scale)
    np.testing.assert_allclose(y[kept], xv[kept] / (1 - p), rtol=2e-7)
    # the dropped fraction is p: binomial std sqrt(p(1-p)/n) <= 0.0012; allow 5 std
    assert abs((~kept).mean() - p) < 5 * math.sqrt(p * (1 - p) / n)
    # the mean is preserved: E[y] = E[x]; std of the sample mean of y is
    # sqrt(E[x^2] p / (1-p) / n + var(x) / n) <= 0.0052 here; allow 5 std (relative)
    spread = math.sqrt(((xv ** 2).mean() * p / (1 - p) + xv.var()) / n)
    assert abs(y.mean() - xv.mean()) < 5 * spread


def test_dropout_edge_probabilities_and_eval_identity(backend):
    x = tinyalex.randn(4, 5, backend=backend)
    np.testing.assert_array_equal(host(F.dropout(x, 1.0)), np.zeros((4, 5)))
    assert F.dropout(x, 0.0) is x
    assert F.dropout(x, 0.5, training=False) is x
    layer = nn.Dropout(0.5)
    layer.eval()
    assert layer(x) is x
    layer.train()
    assert (host(layer(x)) == 0).any()


def test_dropout_in_a_network_follows_train_and_eval():
    tinyalex.manual_seed(0)
    net = nn.Sequential(nn.Linear(8, 8), nn.Dropout(0.5))
    x = tinyalex.randn(3, 8)
    net.eval()
    np.testing.assert_array_equal(net(x).numpy(), net[0](x).numpy())
    net.train()
    assert not np.array_equal(net(x).numpy(), net[0](x).numpy())


def test_manual_seed_makes_dropout_and_init_reproducible():
    def draw(seed):
        tinyalex.manual_seed(seed)
        net = tinyalex.models.lenet()
        mask = F.dropout(tinyalex.ones(50), 0.5).numpy()
        return [p.numpy() for p in net.parameters()] + [mask, tinyalex.randn(5).numpy()]

    a, b, c = draw(3), draw(3), draw(4)
    for u, v in zip(a, b):
        np.testing.assert_array_equal(u, v)
    assert not all(np.array_equal(u, v) for u, v in zip(a, c))


# -- initialisation -------------------------------------------------------------------

ALPHA = 1e-6        # the chance, per check, that a correct sampler fails assert_uniform
Z = 5.0             # a normal statistic beyond 5 standard errors: two-sided p ~ 6e-7


def assert_uniform(sample, bound, what):
    """``sample`` is a draw of U(-bound, bound), with every tolerance worked out from
    its size n (each check fails a correct sampler with probability ~1e-6):

    * inside the bounds (``bound`` rounded to the sample's dtype, as each value was);
    * not all zero, and both ends reached: the largest value lies above
      bound * (1 - q) and the smallest below -bound * (1 - q), where
      P(max < bound * (1 - q)) = (1 - q/2)**n = ALPHA;
    * mean 0 and variance bound**2 / 3 within Z standard errors: sigma / sqrt(n) for
      the mean and sigma**2 * sqrt(0.8 / n) for the variance (a uniform's fourth
      central moment is 9/5 sigma**4);
    * its Kolmogorov-Smirnov distance to the uniform's CDF below the ALPHA critical
      value sqrt(ln(2 / ALPHA) / 2n).

    Small samples can only be checked loosely (n = 10 cannot tell a uniform from many
    things), so the tests pool the draws of several layers where one layer's is small.
    """
    x = np.asarray(sample, dtype=np.float64).reshape(-1)
    n = x.size
    limit = float(np.asarray(bound, dtype=np.asarray(sample).dtype))
    assert n > 0, what
    assert np.abs(x).max() <= limit, f"{what}: |value| {np.abs(x).max()} > bound {limit}"
    assert np.count_nonzero(x) > 0, f"{what}: all {n} values are zero"
    q = 2 * (1 - ALPHA ** (1 / n))
    assert x.max() > bound * (1 - q) and x.min() < -bound * (1 - q), (
        f"{what}: range [{x.min():.4g}, {x.max():.4g}] of {n} draws does not reach "
        f"+-{bound * (1 - q):.4g} (bound {bound:.4g})")
    sigma2 = bound ** 2 / 3
    assert abs(x.mean()) < Z * math.sqrt(sigma2 / n), f"{what}: mean {x.mean():.4g}"
    assert abs(x.var(ddof=1) - sigma2) < Z * sigma2 * math.sqrt(0.8 / n), (
        f"{what}: variance {x.var(ddof=1):.4g}, a uniform's is {sigma2:.4g} (n = {n})")
    u = np.sort((x + bound) / (2 * bound))                   # U(0, 1) if x is uniform
    i = np.arange(1, n + 1)
    ks = max((i / n - u).max(), (u - (i - 1) / n).max())
    assert ks < math.sqrt(math.log(2 / ALPHA) / (2 * n)), f"{what}: KS distance {ks:.4g}"


def pooled(make, name, at_least=2000):
    """The values of parameter ``name`` of freshly made layers, as many layers as it
    takes to hold ``at_least`` values (a bias of 10 alone says little)."""
    parts, n = [], 0
    while n < at_least:
        p = getattr(make(), name)
        a = p.detach().numpy() if hasattr(p, "detach") else p.numpy()
        parts.append(a.reshape(-1))
        n += a.size
    return np.concatenate(parts)


def test_assert_uniform_rejects_what_is_not_the_uniform():
    """The check can fail: zeros, a narrower or wider uniform, a normal of the same
    variance, one value repeated, a sample that never reaches one end, and one with
    the uniform's mean, variance and range but another shape."""
    rng = np.random.default_rng(0)
    b, n = 0.1, 5000
    assert_uniform(rng.uniform(-b, b, n).astype(np.float32), b, "U(-b, b)")
    bad = {
        "zeros": np.zeros(n),
        "U(-b/2, b/2)": rng.uniform(-b / 2, b / 2, n),
        "U(-1.2 b, 1.2 b) clipped": np.clip(rng.uniform(-1.2 * b, 1.2 * b, n), -b, b),
        # mean, variance and range of U(-b, b), not its shape: the KS distance sees it
        "30% at +-b/sqrt(3)": np.where(rng.random(n) < 0.3,
                                       rng.choice([-b, b], n) / math.sqrt(3),
                                       rng.uniform(-b, b, n)),
        "normal, same variance": np.clip(rng.normal(0, b / math.sqrt(3), n), -b, b),
        "one value": np.full(n, b / 2),
        "U(-b, 0.9 b)": rng.uniform(-b, 0.9 * b, n),
        "U(0, b)": rng.uniform(0, b, n),
    }
    for name, sample in bad.items():
        with pytest.raises(AssertionError):
            assert_uniform(sample, b, name)


@pytest.mark.parametrize("make, fan_in", [
    (lambda: nn.Conv2d(16, 32, 3), 16 * 9),
    (lambda: nn.Conv2d(1, 96, 11, stride=4, padding=1), 121),
    (lambda: nn.Linear(400, 120), 400),
])
def test_default_init_is_pytorchs_uniform(make, fan_in):
    """kaiming_uniform_(a=sqrt(5)) = U(-1/sqrt(fan_in), 1/sqrt(fan_in)) for the
    weight, and the same bound for the bias (PyTorch's reset_parameters)."""
    tinyalex.manual_seed(0)
    layer = make()
    bound = 1 / math.sqrt(fan_in)
    assert layer.weight.dtype == np.float32 and layer.bias.dtype == np.float32
    assert_uniform(layer.weight.numpy(), bound, "weight")
    assert_uniform(pooled(make, "bias"), bound, "bias")


def test_default_init_equals_torchs_distribution():
    """Both frameworks' default weights and biases are draws of the same uniform."""
    torch = require_torch()
    torch.manual_seed(0)
    tinyalex.manual_seed(0)
    for ours, theirs, fan_in in [
            (lambda: nn.Conv2d(6, 16, 5), lambda: torch.nn.Conv2d(6, 16, 5), 6 * 25),
            (lambda: nn.Linear(84, 10), lambda: torch.nn.Linear(84, 10), 84)]:
        assert theirs().weight[0].numel() == fan_in
        bound = 1 / math.sqrt(fan_in)
        for name in ("weight", "bias"):
            o, t = pooled(ours, name), pooled(theirs, name)
            assert getattr(ours(), name).shape == tuple(getattr(theirs(), name).shape)
            assert_uniform(o, bound, f"ours, {name}")
            assert_uniform(t, bound, f"torch's, {name}")


def test_xavier_uniform_bound_and_d2l_init_weights():
    tinyalex.manual_seed(0)
    w = nn.Linear(300, 200).weight
    nn.init.xavier_uniform_(w)
    assert_uniform(w.numpy(), math.sqrt(6 / (300 + 200)), "xavier_uniform_")
    net = tinyalex.models.lenet()
    biases = [p.numpy() for n, p in net.named_parameters() if n.endswith("bias")]
    net.apply(init_weights_xavier)
    for i, layer in enumerate(net):
        if isinstance(layer, (nn.Conv2d, nn.Linear)):
            fan_in, fan_out = nn.init.fan_in_and_fan_out(layer.weight)
            assert_uniform(layer.weight.numpy(), math.sqrt(6 / (fan_in + fan_out)),
                           f"layer {i} ({type(layer).__name__})")
    after = [p.numpy() for n, p in net.named_parameters() if n.endswith("bias")]
    for u, v in zip(biases, after):                    # d2l's init touches weights only
        np.testing.assert_array_equal(u, v)


def test_xavier_uniform_equals_torchs_distribution():
    torch = require_torch()
    torch.manual_seed(0)
    t = torch.empty(96, 1, 11, 11)
    torch.nn.init.xavier_uniform_(t)
    ours = nn.Conv2d(1, 96, 11).weight
    nn.init.xavier_uniform_(ours)
    bound = math.sqrt(6 / (121 + 96 * 121))
    assert_uniform(ours.numpy(), bound, "ours")
    assert_uniform(t.numpy(), bound, "torch's")


# -- whole networks -------------------------------------------------------------------

def test_alexnet_backward_on_a_small_batch():
    """Float32, batch 2 at 224x224 (the size its Linear(6400) needs): every parameter
    gets a finite, nonzero gradient of its own shape."""
    tinyalex.manual_seed(0)
    net = tinyalex.models.alexnet()
    x = tinyalex.randn(2, 1, 224, 224)
    loss = F.cross_entropy(net(x), tinyalex.tensor([3, 7]))
    assert np.isfinite(loss.item())
    loss.backward()
    for name, p in net.named_parameters():
        g = p.grad.numpy()
        assert g.shape == p.shape and g.dtype == np.float32, name
        assert np.isfinite(g).all(), name
        assert np.abs(g).max() > 0, name


def test_alexnet_gradient_element_against_finite_differences(backend, kernel_mode):
    """Float64, eval mode (no dropout), one image: an element of the first conv's
    weight (its gradient travels back through every layer) and one of the first
    linear layer's, against central differences on the whole network. A fixed seed keeps
    pre-activations away from ReLU's kink and max-pool ties."""
    tinyalex.manual_seed(1)
    net = tinyalex.models.alexnet().double().eval().to(backend)
    x = tinyalex.randn(1, 1, 224, 224, dtype=np.float64, backend=backend)
    y = tinyalex.tensor([4], backend=backend)

    def loss():
        return F.cross_entropy(net(x), y)
    loss().backward()
    # in the linear layer, many units are dead (ReLU) for one image: take the
    # element with the largest gradient, so that the check is not 0 == 0
    g14 = host(net[14].weight.grad)
    busiest = np.unravel_index(np.abs(g14).argmax(), g14.shape)
    checked = (spot_check(loss, net[0].weight, [(95, 0, 5, 10)])
               + spot_check(loss, net[14].weight, [busiest]))
    assert all(abs(g) > 1e-9 for g in checked), checked      # not a dead path


def test_lenet_float64_gradcheck_on_a_tiny_batch(backend, kernel_mode):
    """LeNet is smooth (sigmoid, average pooling), so finite differences hold
    everywhere: a full gradcheck of every bias (with a random upstream gradient on
    the logits of a batch of 2), then spot checks of the input and of every weight
    through the loss (checking all 61,706 parameters would take minutes)."""
    tinyalex.manual_seed(2)
    net = tinyalex.models.lenet().double().to(backend)
    rng = np.random.default_rng(2)
    x = randn(rng, (2, 1, 28, 28), backend)
    small = [p for n, p in net.named_parameters() if n.endswith("bias")]
    big = [p for p in net.parameters() if all(p is not s for s in small)]
    for p in big + [x]:
        p.requires_grad = False
    check(lambda *ps: net(x), *small)
    for p in big + [x]:
        p.requires_grad = True
    y = tinyalex.tensor([0, 9], backend=backend)

    def loss():
        return F.cross_entropy(net(x), y)
    loss().backward()
    for p in big + [x]:
        picks = [tuple(int(rng.integers(0, n)) for n in p.shape) for _ in range(3)]
        assert any(abs(g) > 1e-9 for g in spot_check(loss, p, picks))
