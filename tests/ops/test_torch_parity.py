"""Outputs and gradients equal PyTorch's to float32 rounding, on shapes drawn by
hypothesis, and d2l's two networks loaded with PyTorch's weights give PyTorch's
outputs and gradients. Where torch is not importable (it is a test-only reference,
never a tinyalex dependency) the module is skipped, with the reason, on a developer's
machine and fails in CI (``helpers.checks.require_torch``).

Tolerance: both sides compute in float32 (unit round-off 6e-8) but sum in
different orders; the reductions here have at most a few hundred terms, so
values agree to rtol=1e-5 with an absolute floor of 1e-5 times the largest
magnitude (for entries that cancel to near zero).
"""

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import tinyalex
import tinyalex.nn.functional as F
from helpers.strategies import window_geometry
from helpers.checks import require_torch
from helpers.torch_nets import torch_alexnet, torch_lenet
from helpers.tensor_api_errors import TENSOR_API_ERRORS

torch = require_torch()
TF = torch.nn.functional

EXAMPLES = 15


def close(ours, ref):
    ref = ref.detach().numpy() if isinstance(ref, torch.Tensor) else ref
    ours = ours.numpy() if isinstance(ours, tinyalex.Tensor) else ours
    assert ours.shape == ref.shape and ours.dtype == ref.dtype
    np.testing.assert_allclose(ours, ref, rtol=1e-5,
                               atol=1e-5 * max(1.0, float(np.abs(ref).max(initial=0))))


def pair_of(fn_ours, fn_torch, arrays, seed=0):
    """Run both on the same float32 arrays (all requiring grad) with the same random
    upstream gradient; compare the outputs and every input's gradient."""
    ours = [tinyalex.tensor(a, requires_grad=True) for a in arrays]
    theirs = [torch.tensor(a, requires_grad=True) for a in arrays]
    y, ty = fn_ours(*ours), fn_torch(*theirs)
    close(y, ty)
    gy = np.random.default_rng(seed).standard_normal(ty.shape).astype(np.float32)
    y.backward(gy)
    ty.backward(torch.tensor(gy))
    for o, t in zip(ours, theirs):
        close(o.grad, t.grad)


def f32(rng, shape, scale=1.0):
    return (rng.standard_normal(shape) * scale).astype(np.float32)


def geometry(pool=False):
    return window_geometry(pool=pool, kernel=5, pad=2, stride=3, extra=8)


@settings(max_examples=EXAMPLES)
@given(N=st.integers(1, 3), C=st.integers(1, 4), OC=st.integers(1, 4), g=geometry(),
       seed=st.integers(0, 2**16))
def test_conv2d_matches_torch(N, C, OC, g, seed):
    H, W, KH, KW, SH, SW, PH, PW = g
    rng = np.random.default_rng(seed)
    arrays = [f32(rng, (N, C, H, W)), f32(rng, (OC, C, KH, KW)), f32(rng, (OC,))]
    pair_of(lambda x, w, b: F.conv2d(x, w, b, (SH, SW), (PH, PW)),
            lambda x, w, b: TF.conv2d(x, w, b, (SH, SW), (PH, PW)), arrays, seed)


@pytest.mark.parametrize("name", ["max_pool2d", "avg_pool2d"])
@settings(max_examples=EXAMPLES)
@given(N=st.integers(1, 3), C=st.integers(1, 3), g=geometry(pool=True),
       seed=st.integers(0, 2**16))
def test_pools_match_torch(name, N, C, g, seed):
    H, W, KH, KW, SH, SW, PH, PW = g
    rng = np.random.default_rng(seed)
    # a permutation: no ties, so both libraries route max-pool gradients alike
    x = (rng.permutation(N * C * H * W).reshape(N, C, H, W) / 7.0).astype(np.float32)
    pair_of(lambda x: getattr(F, name)(x, (KH, KW), (SH, SW), (PH, PW)),
            lambda x: getattr(TF, name)(x, (KH, KW), (SH, SW), (PH, PW)), [x], seed)


@settings(max_examples=EXAMPLES)
@given(N=st.integers(1, 5), IN=st.integers(1, 40), OUT=st.integers(1, 20),
       seed=st.integers(0, 2**16))
def test_linear_matches_torch(N, IN, OUT, seed):
    rng = np.random.default_rng(seed)
    pair_of(F.linear, TF.linear, [f32(rng, (N, IN)), f32(rng, (OUT, IN)), f32(rng, (OUT,))],
            seed)


@settings(max_examples=EXAMPLES)
@given(N=st.integers(1, 8), K=st.integers(1, 12), seed=st.integers(0, 2**16),
       scale=st.sampled_from([1.0, 100.0, 1e4]))
def test_cross_entropy_matches_torch(N, K, seed, scale):
    rng = np.random.default_rng(seed)
    target = rng.integers(0, K, N)
    pair_of(lambda z: F.cross_entropy(z, tinyalex.tensor(target)),
            lambda z: TF.cross_entropy(z, torch.tensor(target)), [f32(rng, (N, K), scale)],
            seed)


@pytest.mark.parametrize("name", ["relu", "sigmoid"])
@settings(max_examples=EXAMPLES)
@given(shape=st.lists(st.integers(1, 5), min_size=1, max_size=4).map(tuple),
       seed=st.integers(0, 2**16), scale=st.sampled_from([1.0, 50.0]))
def test_activations_match_torch(name, shape, seed, scale):
    x = f32(np.random.default_rng(seed), shape, scale)
    pair_of(getattr(F, name), getattr(torch, name), [x], seed)


def test_dropout_in_eval_matches_torch_identity():
    x = f32(np.random.default_rng(0), (3, 4))
    close(F.dropout(tinyalex.tensor(x), 0.5, training=False),
          TF.dropout(torch.tensor(x), 0.5, training=False))


# -- whole networks with PyTorch's weights --------------------------------------------

# d2l's LeNet and AlexNet in PyTorch: tests/helpers/torch_nets.py


@pytest.mark.parametrize("ours, theirs, size, batch", [
    (tinyalex.models.lenet, torch_lenet, 28, 4),
    (tinyalex.models.alexnet, torch_alexnet, 224, 1),
], ids=["lenet", "alexnet"])
def test_network_with_torch_weights_matches_torch(ours, theirs, size, batch):
    """Eval mode (no dropout): loss and every parameter's gradient agree."""
    torch.manual_seed(0)
    ref = theirs().eval()
    net = ours().eval()
    net.load_state_dict({k: v.numpy() for k, v in ref.state_dict().items()})
    rng = np.random.default_rng(0)
    x = f32(rng, (batch, 1, size, size))
    y = rng.integers(0, 10, batch)
    loss = F.cross_entropy(net(tinyalex.tensor(x)), tinyalex.tensor(y))
    tloss = TF.cross_entropy(ref(torch.tensor(x)), torch.tensor(y))
    close(loss, tloss)
    loss.backward()
    tloss.backward()
    theirs_grads = dict(ref.named_parameters())
    for name, p in net.named_parameters():
        close(p.grad, theirs_grads[name].grad)


# -- the tensor API of d2l's convolution chapters -------------------------------------

REDUCTIONS = {
    # name: (ours(x, d), theirs(x, d)); d is a dim drawn per example
    "sum_dims_keepdim": (lambda x, d: x.sum(dim=(0, d) if d % x.ndim else 0, keepdim=True),
                         lambda x, d: x.sum(dim=(0, d) if d % x.ndim else 0, keepdim=True)),
    "mean_dim": (lambda x, d: x.mean(dim=d), lambda x, d: x.mean(dim=d)),
    "max_all": (lambda x, d: x.max(), lambda x, d: x.max()),
    "max_dim": (lambda x, d: x.max(dim=d).values, lambda x, d: x.max(dim=d).values),
    "min_dim_keepdim": (lambda x, d: x.min(d, True)[0], lambda x, d: x.min(d, True)[0]),
    "prod_dim": (lambda x, d: x.prod(d), lambda x, d: x.prod(d)),
    "var": (lambda x, d: x.var(), lambda x, d: x.var()),
    "std_dim_biased": (lambda x, d: x.std(d, unbiased=False),
                       lambda x, d: x.std(d, unbiased=False)),
    "softmax": (lambda x, d: x.softmax(dim=d), lambda x, d: x.softmax(dim=d)),
    "log_softmax": (lambda x, d: x.log_softmax(d), lambda x, d: x.log_softmax(d)),
    "permute_transpose": (lambda x, d: x.transpose(0, d).abs().sqrt(),
                          lambda x, d: x.transpose(0, d).abs().sqrt()),
    "repeat": (lambda x, d: x.repeat(2, *([1] * (x.ndim - 1)), 3),
               lambda x, d: x.repeat(2, *([1] * (x.ndim - 1)), 3)),
    "elementwise": (lambda x, d: x.sin() * x.cos() + x.tanh() + x.sinh() / x.cosh(),
                    lambda x, d: x.sin() * x.cos() + x.tanh() + x.sinh() / x.cosh()),
    "cat_stack": (lambda x, d: tinyalex.stack([tinyalex.cat([x, x * 2], d),
                                               tinyalex.cat([x.pow(2), x], d)], d),
                  lambda x, d: torch.stack([torch.cat([x, x * 2], d),
                                            torch.cat([x.pow(2), x], d)], d)),
}


@pytest.mark.parametrize("name", sorted(REDUCTIONS))
@settings(max_examples=6)
@given(shape=st.lists(st.integers(2, 4), min_size=1, max_size=3).map(tuple),
       seed=st.integers(0, 2**16), data=st.data())
def test_tensor_api_matches_torch(name, shape, seed, data):
    ours, theirs = REDUCTIONS[name]
    d = data.draw(st.integers(-len(shape), len(shape) - 1))
    rng = np.random.default_rng(seed)
    x = (rng.permutation(int(np.prod(shape))).reshape(shape) / 7.0 + 0.5).astype(np.float32)
    pair_of(lambda x: ours(x, d), lambda x: theirs(x, d), [x], seed)


def test_argmax_argmin_and_indices_match_torch():
    rng = np.random.default_rng(0)
    x = rng.integers(0, 4, (3, 4, 5)).astype(np.float32)          # many ties
    ours, theirs = tinyalex.tensor(x), torch.tensor(x)
    for d in (None, 0, 1, -1):
        for k in (False, True):
            if d is None and k:
                continue
            assert np.array_equal(ours.argmax(d, k).numpy(), theirs.argmax(d, k).numpy())
            assert np.array_equal(ours.argmin(d, k).numpy(), theirs.argmin(d, k).numpy())
    for d in (0, 1, 2):
        assert np.array_equal(ours.max(d).indices.numpy(), theirs.max(d).indices.numpy())


def test_setitem_gradients_match_torch():
    """The same writes into a non-leaf, both ways: values and gradients."""
    rng = np.random.default_rng(0)
    arrays = [f32(rng, (3, 4)), f32(rng, (2,)), f32(rng, (4,))]

    def program(lib):
        def fn(a, v, w):
            x = a * 2
            x[1:, 2] = v                                      # a slice of a column
            x[0] = w.exp()                                    # a whole row
            x[x > 1.5] = 0.0                                  # a mask, value a number
            x[[2, 0], [0, 1]] = v * 3                         # integer arrays
            return x * a
        return fn
    pair_of(program(tinyalex), program(torch), arrays)


def as_torch_prints(values, **kwargs):
    ours = repr(tinyalex.tensor(values, **kwargs))
    theirs = repr(torch.tensor(values, **kwargs))
    assert ours == theirs, f"\nours:   {ours}\ntheirs: {theirs}"


@pytest.mark.parametrize("values", [
    [[0.0, 1.0, 2.0], [3.0, 4.0, 5.0]], [[19.0, 25.0], [37.0, 43.0]], [[0.9687, -1.0157]],
    [1e-5, 1.0, 1000.0], [1e9, -2.0], [0.0, -0.0, float("nan"), float("inf")], 3.14159,
    -7.0, [], [[1, 2], [3, 400]], [True, False], [[[[5.0, 7.0], [13.0, 15.0]]]],
    [123456.789, 0.001], [-1.5, 2.25e-3],
], ids=repr)
def test_repr_matches_torch(values):
    as_torch_prints(values)


@settings(max_examples=25)
@given(shape=st.lists(st.integers(1, 12), min_size=1, max_size=4).map(tuple),
       scale=st.sampled_from([1e-6, 1e-2, 1.0, 10.0, 1e5, 1e9]), seed=st.integers(0, 2**16),
       kind=st.sampled_from(["float32", "float64", "int64", "int32", "integral"]))
def test_repr_of_drawn_tensors_matches_torch(shape, scale, seed, kind):
    """Every width, precision and scientific-notation rule, summarised tensors (over
    1000 elements), line wrapping at 80 columns and the dtype suffix."""
    rng = np.random.default_rng(seed)
    values = rng.standard_normal(shape) * scale
    values = {"float32": values.astype(np.float32), "float64": values,
              "int64": values.astype(np.int64),
              "int32": values.clip(-2**31, 2**31 - 1).astype(np.int32),
              "integral": np.round(values).astype(np.float32)}[kind]
    ours, theirs = repr(tinyalex.tensor(values)), repr(torch.tensor(values))
    assert ours == theirs, f"\nours:   {ours}\ntheirs: {theirs}"


def test_repr_suffixes_and_shapes_match_torch():
    pairs = []
    for lib in (tinyalex, torch):
        x = lib.tensor([[1.0, 2.0], [3.0, 4.0]], requires_grad=True)
        k = lib.tensor([[1.0, -1.0]])
        pairs.append([x, x + 1, x * k, x.sum(), x.mean(), x.exp(), x - k, x / 2, -x,
                      x.t(), x.permute(1, 0), x.abs(), x.sqrt(), x.pow(2), x.clone(),
                      x @ x, x.softmax(dim=1), lib.cat([x, x]), lib.stack([x, x]),
                      x.reshape(4), x.max(), x.data, x.detach(),
                      lib.zeros(2, 3, dtype=lib.float64), lib.zeros(0, 3),
                      lib.arange(5), lib.arange(1, 2, 0.25), lib.linspace(-1, 1, 7),
                      lib.eye(3), lib.zeros(1, 1, 6, 8).shape, lib.zeros(0).shape])
    for ours, theirs in zip(*pairs):
        assert repr(ours) == repr(theirs)
    p = tinyalex.nn.Parameter(tinyalex.ones(2))
    assert repr(p) == repr(torch.nn.Parameter(torch.ones(2)))
    assert f"{tinyalex.tensor(2.5):.3f}" == f"{torch.tensor(2.5):.3f}"
    assert repr(tinyalex.tensor([[1.0, 5.0]]).max(1)) == repr(torch.tensor([[1.0, 5.0]]).max(1))


@pytest.mark.parametrize("case", sorted(TENSOR_API_ERRORS))
def test_tensor_api_errors_are_torchs(case):
    """The same bad call raises the same exception type in tinyalex and in torch."""
    call, error, _ = TENSOR_API_ERRORS[case]
    with pytest.raises(error):
        call(torch)
    with pytest.raises(error):
        call(tinyalex)


CREATED = {
    "arange int": lambda t: t.arange(7), "arange step": lambda t: t.arange(2, 9, 3),
    "arange 0.1": lambda t: t.arange(0, 1, 0.1),
    "arange negative": lambda t: t.arange(-1.5, 2.0, 0.25),
    "arange dtype": lambda t: t.arange(16, dtype=t.float32),
    "linspace 7": lambda t: t.linspace(-1, 1, 7), "linspace 11": lambda t: t.linspace(0, 10, 11),
    "linspace down": lambda t: t.linspace(3.0, -2.0, 6), "eye": lambda t: t.eye(3, 2),
    "full": lambda t: t.full((2, 2), 1.5),
    "zeros_like": lambda t: t.zeros_like(t.ones(2, 3, dtype=t.int64)),
}


@pytest.mark.parametrize("name", sorted(CREATED))
def test_creation_functions_match_torch(name):
    """The same values and dtypes, bit for bit."""
    a, b = CREATED[name](tinyalex).numpy(), CREATED[name](torch).numpy()
    assert a.dtype == b.dtype and a.shape == b.shape
    np.testing.assert_array_equal(a, b)


def test_cross_correlation_by_item_assignment_learns_as_torch():
    """A kernel learned through a cross-correlation written with two loops and item
    assignment (conv-layer's hand-made layer): every step's loss and gradients equal
    PyTorch's, so the graph through x[i, j] = ... is PyTorch's."""
    def run(lib):
        X = lib.ones((6, 8))
        X[:, 2:6] = 0
        Y = lib.zeros((6, 7))
        Y[:, 1], Y[:, 5] = 1.0, -1.0
        K = lib.tensor([[0.3, -0.2]], requires_grad=True)
        b = lib.zeros(1, requires_grad=True)
        losses, grads = [], []
        for _ in range(3):
            out = lib.zeros((6, 7))
            for i in range(6):
                for j in range(7):
                    out[i, j] = (X[i:i + 1, j:j + 2] * K).sum()
            loss = ((out + b - Y) ** 2).sum()
            K.grad = b.grad = None
            loss.backward()
            losses.append(loss.item())
            grads.append((K.grad.numpy().copy(), b.grad.numpy().copy()))
            with lib.no_grad():
                K -= 0.03 * K.grad
                b -= 0.03 * b.grad
        return losses, grads, K.detach().numpy()
    ours, theirs = run(tinyalex), run(torch)
    np.testing.assert_allclose(ours[0], theirs[0], rtol=1e-6)
    for (gk, gb), (tk, tb) in zip(ours[1], theirs[1]):
        np.testing.assert_allclose(gk, tk, rtol=1e-5)
        np.testing.assert_allclose(gb, tb, rtol=1e-5)
    np.testing.assert_allclose(ours[2], theirs[2], rtol=1e-6)


@pytest.mark.parametrize("options", [dict(precision=2), dict(sci_mode=True),
                                     dict(sci_mode=False), dict(threshold=5, edgeitems=1),
                                     dict(linewidth=30), dict(profile="short")], ids=repr)
def test_print_options_match_torch(options):
    values = np.array([[1e-5, 123.456, -7.0, 0.5, 2.0, 3.0]] * 4, np.float32)
    try:
        for lib in (tinyalex, torch):
            lib.set_printoptions(**options)
        assert repr(tinyalex.tensor(values)) == repr(torch.tensor(values))
    finally:
        for lib in (tinyalex, torch):
            lib.set_printoptions(profile="default", sci_mode=None)


def test_layer_grad_fn_names_match_torch():
    """A network's intermediate tensors print PyTorch's grad_fn names."""
    torch.manual_seed(0)
    ref = torch_lenet()
    net = tinyalex.models.lenet()
    x, tx = tinyalex.ones(1, 1, 28, 28), torch.ones(1, 1, 28, 28)
    extra = [(tinyalex.nn.ReLU(), torch.nn.ReLU()),
             (tinyalex.nn.MaxPool2d(2), torch.nn.MaxPool2d(2))]
    for ours, theirs in list(zip(net, ref))[:3] + extra:
        x, tx = ours(x), theirs(tx)
        assert type(tx.grad_fn).__name__ == x.grad_fn.grad_fn_name
    logits, tlogits = net(tinyalex.ones(2, 1, 28, 28)), ref(torch.ones(2, 1, 28, 28))
    assert type(tlogits.grad_fn).__name__ == logits.grad_fn.grad_fn_name      # Linear
    loss = F.cross_entropy(logits, tinyalex.tensor([0, 1]))
    tloss = TF.cross_entropy(tlogits, torch.tensor([0, 1]))
    assert type(tloss.grad_fn).__name__ == loss.grad_fn.grad_fn_name
    y = F.dropout(logits, 0.5, training=True)
    assert type(TF.dropout(tlogits, 0.5).grad_fn).__name__ == y.grad_fn.grad_fn_name
