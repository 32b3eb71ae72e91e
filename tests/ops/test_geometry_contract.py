"""Window ops validate once, at their geometry; the algorithms below trust it
(``kernels/__init__.py``'s contract). So the op must hand every algorithm exactly what
its geometry describes: forward's operands of the geometry's shapes, a geometry the
algorithm's rule accepts (``takes``), backward's gradient of the output's shape and
dtype and the state its own forward saved; and bad operands or gradients are refused
at the op, with a message naming the shapes, before any algorithm runs.

Each algorithm is wrapped (``Spy``) where the op's chooser returns it, on the paths
auto mode takes (im2col + GEMM, direct, Winograd F(4,3) and F(3,5), the 1x1 GEMM) and
the reference, on hypothesis-drawn geometries.
"""

import numpy as np
import pytest
from hypothesis import example, given, settings, strategies as st

import tinyalex
import tinyalex.kernels as kernels
import tinyalex.nn.functional as F
from tinyalex.kernels import conv_direct_cpu, conv_winograd_cpu, pool_cpu
from tinyalex.kernels.geometry import conv_geometry
from tinyalex.ops import conv, pool
from tinyalex.tensor import Function
from helpers.strategies import batch_geometry


class Spy:
    """An algorithm as the op calls it: asserts the contract on every call."""

    def __init__(self, algorithm, calls, check_forward, check_backward):
        self.algorithm, self.calls = algorithm, calls
        self.check_forward, self.check_backward = check_forward, check_backward
        self.name = algorithm.name

    def forward(self, *args, **options):         # (x, g) or (x, weight, bias, g), keep=
        self.check_forward(self.algorithm, *args)
        y, saved = self.algorithm.forward(*args, **options)
        self.calls.append(("forward", self.algorithm, args[-1]))
        self.out = (y.shape, y.dtype)
        return y, saved

    def backward(self, gy, saved, *need):
        assert (gy.shape, gy.dtype) == self.out, (gy.shape, gy.dtype, self.out)
        self.check_backward(self.algorithm, gy, saved)
        self.calls.append(("backward", self.algorithm, None))
        return self.algorithm.backward(gy, saved, *need)


def conv_forward_contract(algorithm, x, weight, bias, g):
    assert getattr(algorithm, "takes", lambda g: True)(g), (algorithm.name, g)
    assert x.shape == (g.N, g.C, g.H, g.W), (x.shape, g)
    assert weight.shape == (g.OC, g.C // g.groups, g.KH, g.KW), (weight.shape, g)
    assert bias is None or bias.shape == (g.OC,)
    assert x.dtype == weight.dtype


def conv_backward_contract(algorithm, gy, saved):
    g = saved.g if hasattr(saved, "g") else saved[-1] if isinstance(saved, tuple) else None
    if g is not None:
        assert gy.shape == (g.N, g.OC, g.OH, g.OW)


def pool_forward_contract(algorithm, x, g):
    assert x.shape == (g.N, g.C, g.H, g.W), (x.shape, g)


def pool_backward_contract(algorithm, gy, saved):
    if isinstance(saved, pool_cpu.MaxPoolSaved):   # the argmax of the gradient's images
        g = saved.g
        NI, OH, OW, CI = saved.argmax.shape
        assert (OH, OW, NI * CI) == (g.OH, g.OW, g.N * g.C) and saved.argmax.dtype == np.int32
    g = saved.g if hasattr(saved, "g") else saved if not isinstance(saved, tuple) else saved[1]
    assert gy.shape == (g.N, g.C, g.OH, g.OW)


@pytest.fixture
def spied(monkeypatch):
    """The conv and pool choosers' algorithms wrapped in Spy; the calls made."""
    calls = []
    choose_conv, choose_pool = conv.conv2d_algorithm, pool.pool2d_algorithm
    monkeypatch.setattr(conv, "conv2d_algorithm", lambda *a: Spy(
        choose_conv(*a), calls, conv_forward_contract, conv_backward_contract))
    monkeypatch.setattr(pool, "pool2d_algorithm", lambda *a: Spy(
        choose_pool(*a), calls, pool_forward_contract, pool_backward_contract))
    # Winograd on a few channels and tiles, so that tiny shapes reach it
    for algorithm in (conv_winograd_cpu.WINOGRAD_F43, conv_winograd_cpu.WINOGRAD_F35,
                      conv_winograd_cpu.WINOGRAD_F63, conv_winograd_cpu.WINOGRAD_F45):
        monkeypatch.setattr(algorithm, "min_channels", 1)
    monkeypatch.setattr(conv, "f43_pays", lambda g: True)
    return calls


def run(x, w, b, stride, padding, pool_fn, pool_args):
    xs, ws, bs = (tinyalex.tensor(a, requires_grad=True) for a in (x, w, b))
    y = F.conv2d(xs, ws, bs, stride=stride, padding=padding)
    z = pool_fn(y, *pool_args)
    z.backward(np.ones(z.shape, z.dtype))
    return xs.grad, ws.grad


@settings(max_examples=30, deadline=None)
@given(g=batch_geometry(batch=2, channels=3, kernel=5, pad=2, stride=2, extra=4),
       OC=st.integers(1, 3), mode=st.sampled_from(["fast", "reference"]),
       dtype=st.sampled_from([np.float32, np.float64]), kind=st.sampled_from(["max", "avg"]),
       seed=st.integers(0, 2**16))
@example(g=(2, 3, 6, 6, 3, 3, 1, 1, 1, 1), OC=2, mode="fast", dtype=np.float32, kind="max",
         seed=0)                                                        # Winograd F(6,3)
@example(g=(1, 2, 7, 7, 5, 5, 1, 1, 2, 2), OC=3, mode="fast", dtype=np.float64, kind="avg",
         seed=0)                                                        # Winograd F(4,5)
@example(g=(2, 3, 4, 4, 3, 3, 1, 1, 1, 1), OC=2, mode="fast", dtype=np.float32, kind="avg",
         seed=0)                                                        # Winograd F(4,3)
@example(g=(1, 2, 3, 3, 5, 5, 1, 1, 2, 2), OC=3, mode="fast", dtype=np.float64, kind="max",
         seed=0)                                                        # Winograd F(3,5)
@example(g=(2, 3, 6, 5, 4, 2, 1, 1, 0, 1), OC=2, mode="fast", dtype=np.float32, kind="max",
         seed=0)                                                        # direct
@example(g=(2, 3, 7, 7, 3, 3, 2, 2, 1, 1), OC=2, mode="fast", dtype=np.float32, kind="avg",
         seed=0)                                                        # im2col + GEMM
@example(g=(2, 3, 5, 5, 1, 1, 2, 1, 0, 0), OC=2, mode="fast", dtype=np.float64, kind="max",
         seed=0)                                                        # the 1x1 GEMM
def test_every_algorithm_gets_what_its_geometry_describes(spied, g, OC, mode, dtype, kind,
                                                          seed):
    N, C, H, W, KH, KW, SH, SW, PH, PW = g
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((N, C, H, W)).astype(dtype)
    x = x if seed % 2 else np.ascontiguousarray(x.transpose(0, 2, 3, 1)).transpose(0, 3, 1, 2)
    w = rng.standard_normal((OC, C, KH, KW)).astype(dtype)
    b = rng.standard_normal(OC).astype(dtype)
    OH = (H + 2 * PH - KH) // SH + 1
    OW = (W + 2 * PW - KW) // SW + 1
    k = min(2, OH, OW)
    spied.clear()
    with kernels.use(mode):
        run(x, w, b, (SH, SW), (PH, PW), F.max_pool2d if kind == "max" else F.avg_pool2d,
            (k, 1, k // 2))
    assert [c[0] for c in spied] == ["forward", "forward", "backward", "backward"]


def test_the_examples_reach_every_auto_mode_path(spied):
    """The explicit examples above take each path they name."""
    seen = set()
    for g in ((2, 3, 6, 6, 3, 3, 1, 1, 1, 1), (1, 2, 7, 7, 5, 5, 1, 1, 2, 2),
              (2, 3, 4, 4, 3, 3, 1, 1, 1, 1), (1, 2, 3, 3, 5, 5, 1, 1, 2, 2),
              (2, 3, 6, 5, 4, 2, 1, 1, 0, 1), (2, 3, 7, 7, 3, 3, 2, 2, 1, 1),
              (2, 3, 5, 5, 1, 1, 2, 1, 0, 0)):
        N, C, H, W, KH, KW, SH, SW, PH, PW = g
        spied.clear()
        x = np.ones((N, C, H, W))
        run(x, np.ones((2, C, KH, KW)), np.ones(2), (SH, SW), (PH, PW), F.max_pool2d, (1,))
        seen.add(spied[0][1].name)
    assert seen == {"winograd F(6,3)", "winograd F(4,5)",      # 6x6 and 7x7 outputs
                    "winograd F(4,3)", "winograd F(3,5)",      # 4x4 and 3x3: one small tile
                    "direct", "im2col+GEMM", "1x1 GEMM (no im2col)"}


def test_the_chooser_gives_an_algorithm_only_geometries_it_takes(monkeypatch):
    """What the algorithms once refused themselves (a stride-2 layer given to Winograd
    or to the direct convolution) the chooser never hands them."""
    f43 = conv_winograd_cpu.WINOGRAD_F43
    monkeypatch.setattr(f43, "min_channels", 1)
    monkeypatch.setattr(conv, "f43_pays", lambda g: True)
    f32 = np.dtype(np.float32)
    for SH, PH in ((2, 1), (2, 0), (1, 3)):
        g = conv_geometry((2, 3, 9, 9), (4, 3, 3, 3), SH, SH, PH, PH)
        chosen = conv.conv2d_algorithm(g, f32, "numpy")
        assert chosen not in (f43, conv_direct_cpu.DIRECT), (g, chosen.name)
    assert conv.conv2d_algorithm(conv_geometry((2, 3, 9, 9), (4, 3, 3, 3), 1, 1, 1, 1),
                                 f32, "numpy") is f43


@pytest.mark.parametrize("stride", [1, 2])      # the direct convolution, im2col + GEMM
def test_a_gradient_of_another_shape_is_refused_before_the_algorithm(spied, stride):
    x = tinyalex.tensor(np.zeros((2, 3, 5, 5), np.float32), requires_grad=True)
    w = tinyalex.tensor(np.zeros((4, 3, 3, 3), np.float32), requires_grad=True)
    y = F.conv2d(x, w, stride=stride)
    OH = 3 if stride == 1 else 2
    bad = (2, 4, OH + 1, OH)
    with pytest.raises(ValueError, match=rf"backward\(\): grad has shape \(2, 4, {OH + 1}, "
                                         rf"{OH}\), expected the tensor's shape "
                                         rf"\(2, 4, {OH}, {OH}\)"):
        y.backward(np.zeros(bad, np.float32))
    assert [c[0] for c in spied] == ["forward"]


@pytest.mark.parametrize("fn", [F.max_pool2d, F.avg_pool2d])
def test_a_pooling_gradient_of_another_shape_is_refused_before_the_algorithm(spied, fn):
    x = tinyalex.tensor(np.zeros((2, 3, 5, 5), np.float32), requires_grad=True)
    y = fn(x, 2, 2)
    with pytest.raises(ValueError, match=r"grad has shape \(2, 3, 9, 9\), expected the "
                                         r"tensor's shape \(2, 3, 2, 2\)"):
        y.backward(np.zeros((2, 3, 9, 9), np.float32))
    assert [c[0] for c in spied] == ["forward"]


class WrongGradient(Function):
    """Identity whose backward hands its input a gradient one row short."""

    def forward(self, y):
        return y.copy()

    def backward(self, gy):
        return gy[:, :, 1:]


@pytest.mark.parametrize("window", ["conv", "max", "avg"])
def test_a_wrong_gradient_from_a_later_op_stops_before_the_algorithm(spied, window):
    """A gradient handed back by the op after a window op is checked against the window
    op's output (tensor.py's run_backward) before its algorithm's backward runs."""
    x = tinyalex.tensor(np.ones((2, 3, 6, 6)), requires_grad=True)
    if window == "conv":
        y = F.conv2d(x, tinyalex.tensor(np.ones((4, 3, 3, 3)), requires_grad=True))
    else:
        y = (F.max_pool2d if window == "max" else F.avg_pool2d)(x, 2)
    z = WrongGradient()(y)
    with pytest.raises(RuntimeError, match=rf"WrongGradient\.backward returned a gradient of "
                                           rf"shape \(2, \d, \d, \d\) for an input of shape "
                                           rf"{re_shape(y.shape)}"):
        z.backward(np.ones(z.shape))
    assert [c[0] for c in spied] == ["forward"]


def re_shape(shape):
    return r"\(" + ", ".join(str(s) for s in shape) + r"\)"


def test_operands_that_disagree_are_refused_at_the_op(spied):
    """An input whose channels the weight does not take, a bias of another length, a
    window larger than the padded input: ValueErrors naming the layer and the shapes,
    and no algorithm is even chosen."""
    x = tinyalex.tensor(np.zeros((2, 3, 6, 5), np.float32))
    with pytest.raises(ValueError, match=r"conv2d: expected input with 2 channels \(N, 2, "
                                         r"H, W\), got shape \(2, 3, 6, 5\)"):
        F.conv2d(x, tinyalex.tensor(np.zeros((4, 2, 3, 3), np.float32)))
    with pytest.raises(ValueError, match=r"conv2d: bias must have shape \(4,\), got \(3,\)"):
        F.conv2d(x, tinyalex.tensor(np.zeros((4, 3, 3, 3), np.float32)),
                 tinyalex.tensor(np.zeros(3, np.float32)))
    with pytest.raises(ValueError, match="window does not fit"):
        F.conv2d(x, tinyalex.tensor(np.zeros((4, 3, 7, 3), np.float32)))
    with pytest.raises(ValueError, match="window does not fit"):
        F.max_pool2d(x, 7)
    assert spied == []


class WideGradient(Function):
    """Identity whose backward hands its input a float64 gradient."""

    def forward(self, y):
        return y.copy()

    def backward(self, gy):
        return gy.astype(np.float64)


@pytest.mark.parametrize("window", ["conv", "max", "avg"])
def test_a_gradient_of_another_dtype_takes_the_outputs_dtype(spied, window):
    """A later op's float64 gradient reaches a float32 window op's algorithm as float32
    (run_backward casts it, as PyTorch's engine does), so the algorithm computes what the
    float32 gradient gives."""
    rng = np.random.default_rng(0)
    x0 = rng.standard_normal((2, 3, 6, 6)).astype(np.float32)
    w0 = rng.standard_normal((4, 3, 3, 3)).astype(np.float32)
    grads = []
    for wide in (True, False):
        x = tinyalex.tensor(x0, requires_grad=True)
        if window == "conv":
            y = F.conv2d(x, tinyalex.tensor(w0, requires_grad=True))
        else:
            y = (F.max_pool2d if window == "max" else F.avg_pool2d)(x, 2)
        z = WideGradient()(y) if wide else y
        z.backward(np.ones(z.shape, np.float32))
        grads.append(x.grad.array)
    assert grads[0].dtype == np.float32
    np.testing.assert_array_equal(grads[0], grads[1])
    assert [c[0] for c in spied].count("backward") == 2   # the Spy checked its dtype
