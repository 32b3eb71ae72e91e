"""The autograd engine: Tensor basics, gradient accumulation, diamond and deep graphs,
no_grad, retain_graph, releasing saved arrays, user-defined Functions, gradcheck
itself, and the README's "Writing your own op" snippet (executed here)."""

import gc
import pathlib
import re
import sys
import weakref

import numpy as np
import pytest

import tinyalex
from tinyalex import Function, GradcheckError
from helpers.checks import arr, check, host

ROOT = pathlib.Path(__file__).resolve().parents[2]


# -- Tensor basics --------------------------------------------------------------------

def test_tensor_construction_and_description(backend):
    t = tinyalex.tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]], backend=backend)
    assert t.dtype == np.float32                      # float32 by default, as PyTorch
    assert t.shape == (2, 3) and t.ndim == 2 and t.numel() == 6 and t.size() == (2, 3) and t.size(-1) == 3 and len(t) == 2
    assert t.backend == backend and not t.requires_grad and t.grad is None
    assert tinyalex.tensor([1, 2]).dtype == np.int64
    assert tinyalex.tensor([1, 2], dtype=tinyalex.float64).dtype == np.float64
    assert tinyalex.tensor(np.zeros(3, np.float64)).dtype == np.float64   # arrays keep dtype
    assert tinyalex.tensor(3.5).item() == 3.5
    assert isinstance(tinyalex.tensor([[7]]).item(), int)


def test_numpy_returns_a_host_copy(backend):
    t = tinyalex.tensor([1.0, 2.0], backend=backend)
    a = t.numpy()
    assert isinstance(a, np.ndarray)
    a[0] = 100.0
    assert t.numpy()[0] == 1.0


def test_tensor_copies_its_input_array():
    a = np.ones(3)
    t = tinyalex.tensor(a)
    a[0] = 5.0
    assert t.numpy()[0] == 1.0


def test_detach_cuts_the_graph_and_shares_data(backend):
    x = arr([1.0, 2.0], backend)
    y = x * 3
    d = y.detach()
    assert not d.requires_grad and d.is_leaf and d.array is y.array


def test_to_same_backend_is_identity(backend):
    x = arr([1.0, 2.0], backend)
    assert x.to(backend) is x


def test_truth_value_as_pytorch():
    """bool() of a one-element tensor is its value; of a bigger one an error (it was
    always True before, so `t in [a, b]` and `if t == 0:` silently lied)."""
    assert not bool(tinyalex.tensor([0.0]))
    assert bool(tinyalex.tensor(2.0))
    assert not (tinyalex.tensor(1.0) == 2.0)
    with pytest.raises(ValueError, match=r"ambiguous.*shape \(2,\)"):
        bool(tinyalex.tensor([1.0, 2.0]))


def test_int_tensor_times_python_float_is_float32():
    """PyTorch: an integer tensor times a Python float gives the default float32."""
    assert (tinyalex.tensor([1, 2]) * 2.5).dtype == np.float32
    assert (tinyalex.tensor([1, 2]) / 2).dtype == np.float32
    assert (tinyalex.tensor([1.0], dtype=np.float64) * 2).dtype == np.float64


def test_non_numeric_data_is_refused():
    with pytest.raises(TypeError, match="non-numeric"):
        tinyalex.tensor(["a", "b"])
    with pytest.raises(TypeError, match="floating-point.*int64"):
        tinyalex.tensor([1, 2], requires_grad=True)


# -- accumulation, diamonds, deep graphs ----------------------------------------------

def test_gradients_accumulate_across_backward_calls(backend):
    x = arr([1.0, -2.0, 3.0], backend)
    (x * x).sum().backward()
    np.testing.assert_array_equal(host(x.grad), [2.0, -4.0, 6.0])
    (x * 3.0).sum().backward()                       # a second graph adds on
    np.testing.assert_array_equal(host(x.grad), [5.0, -1.0, 9.0])
    x.grad = None
    (x * 3.0).sum().backward()
    np.testing.assert_array_equal(host(x.grad), [3.0, 3.0, 3.0])


def test_leaf_backward_and_explicit_upstream_gradient(backend):
    x = arr([1.0, 2.0], backend)
    x.backward(np.array([0.5, -1.0]))
    np.testing.assert_array_equal(host(x.grad), [0.5, -1.0])
    y = x * x
    y.backward(tinyalex.tensor([1.0, 10.0], dtype=np.float64, backend=backend))
    np.testing.assert_array_equal(host(x.grad), [0.5 + 2.0, -1.0 + 40.0])


def test_diamond_graph_sums_both_paths(backend):
    """x feeds a and b; a feeds c twice; everything meets in y."""
    x = arr([0.5, -1.5], backend)
    a = x * 2.0
    b = x.exp()
    c = a * a                                         # a used twice by one op
    y = (c + a * b + b).sum()
    y.backward()
    xv = np.array([0.5, -1.5])
    # y = 4x^2 + 2x e^x + e^x  ->  dy/dx = 8x + 2e^x + 2x e^x + e^x
    expected = 8 * xv + 2 * np.exp(xv) + 2 * xv * np.exp(xv) + np.exp(xv)
    np.testing.assert_allclose(host(x.grad), expected, rtol=1e-14)
    x.grad = None
    check(lambda x: (x * 2.0) * (x * 2.0) + (x * 2.0) * x.exp() + x.exp(), x)


def test_deep_chain_of_ten_thousand_nodes_has_no_recursion(backend):
    assert sys.getrecursionlimit() < 20_000        # a recursive walk would fail
    x = arr([1.0, 2.0], backend)
    y = x
    for _ in range(10_000):
        y = y * 1.0001
    y.sum().backward()
    np.testing.assert_allclose(host(x.grad), [1.0001 ** 10_000] * 2, rtol=1e-9)
    del y
    gc.collect()


def test_deep_ladder_of_diamonds(backend):
    """3000 levels, each a diamond (y = (y + y*1) / 2): a node may run only after every
    consumer has handed it its gradient, or the total comes out short."""
    x = arr([3.0], backend)
    y = x
    for _ in range(3000):
        y = (y + y * 1.0) * 0.5
    y.backward()
    np.testing.assert_allclose(host(x.grad), [1.0], rtol=1e-12)


def test_deep_graph_kept_with_retain_graph_is_freed_without_recursion(backend):
    x = arr([1.0], backend)
    y = x
    for _ in range(20_000):
        y = y + 1.0
    y.backward(retain_graph=True)
    ref = weakref.ref(y.creator)
    del y
    gc.collect()
    assert ref() is None
    assert host(x.grad)[0] == 1.0


# -- no_grad, retain_graph, releasing -------------------------------------------------

def test_no_grad_records_nothing(backend):
    x = arr([1.0, 2.0], backend)
    with tinyalex.no_grad():
        assert not tinyalex.is_grad_enabled()
        y = (x * x).sum()
        with tinyalex.enable_grad():
            z = (x * x).sum()
    assert tinyalex.is_grad_enabled()
    assert not y.requires_grad and y.creator is None
    assert z.requires_grad and z.creator is not None
    with pytest.raises(RuntimeError, match="does not require grad"):
        y.backward()


def test_no_grad_restores_mode_after_an_exception():
    with pytest.raises(KeyError):
        with tinyalex.no_grad():
            raise KeyError("boom")
    assert tinyalex.is_grad_enabled()


def test_no_grad_as_a_decorator():
    @tinyalex.no_grad()
    def f(x):
        return x * 2.0
    assert not f(arr([1.0])).requires_grad


def test_ops_on_inputs_without_grad_record_nothing():
    y = tinyalex.tensor([1.0]) * tinyalex.tensor([2.0])
    assert not y.requires_grad and y.creator is None


def test_backward_twice_raises_clearly(backend):
    x = arr([1.0, 2.0], backend)
    y = (x * x).sum()
    y.backward()
    with pytest.raises(RuntimeError, match=r"second time.*retain_graph=True"):
        y.backward()


def test_backward_through_a_freed_subgraph_raises(backend):
    x = arr([1.0, 2.0], backend)
    h = x.exp()
    h.sum().backward()
    with pytest.raises(RuntimeError, match=r"Exp a second time"):
        (h * 2.0).sum().backward()


def test_retain_graph_allows_a_second_backward(backend):
    x = arr([1.0, 2.0], backend)
    y = (x * x).sum()
    y.backward(retain_graph=True)
    y.backward()
    np.testing.assert_array_equal(host(x.grad), [4.0, 8.0])


def test_backward_releases_saved_arrays():
    """A node drops what it saved for backward as soon as it has run."""
    saved = {}

    class Keep(Function):
        def forward(self, x):
            self.big = x * 2.0
            saved["ref"] = weakref.ref(self.big)
            return self.big.sum(keepdims=True)

        def backward(self, gy):
            return np.broadcast_to(gy, self.big.shape) * 2.0

    x = arr(np.ones(1000))
    y = Keep()(x)
    assert saved["ref"]() is not None
    y.backward()
    gc.collect()
    assert saved["ref"]() is None                   # freed though y is still alive
    np.testing.assert_array_equal(host(x.grad), np.full(1000, 2.0))


def test_backward_argument_checks(backend):
    x = arr([1.0, 2.0], backend)
    y = x * 2.0
    with pytest.raises(RuntimeError, match=r"one element.*shape \(2,\)"):
        y.backward()
    with pytest.raises(ValueError, match=r"grad has shape \(3,\), expected.*\(2,\)"):
        y.backward(np.ones(3))


# -- user-defined Functions and gradcheck ---------------------------------------------

class Cube(Function):
    """x**3, written the way the built-in ops are."""

    def forward(self, x):
        self.x = x
        return x * x * x

    def backward(self, gy):
        return 3 * self.x * self.x * gy


class WrongCube(Cube):
    def backward(self, gy):
        return 2.9 * self.x * self.x * gy            # wrong on purpose


class ScaledAdd(Function):
    """a + s*b with a Python option s; records which inputs need gradients."""

    def __init__(self, s):
        self.s = s

    def forward(self, a, b):
        self.seen = self.needs_input_grad
        return a + self.s * b

    def backward(self, gy):
        return gy, self.s * gy


def test_user_defined_function_passes_gradcheck(backend):
    x = arr(np.random.default_rng(0).standard_normal((3, 4)), backend)
    y = Cube()(x)
    assert y.requires_grad and isinstance(y.creator, Cube)
    assert check(lambda x: Cube()(x), x)


def test_gradcheck_catches_a_wrong_backward_and_says_where(backend):
    x = arr([[1.0, 2.0]], backend)
    with pytest.raises(GradcheckError, match=r"input 0 \(shape \(1, 2\)\).*analytic.*numeric"):
        check(lambda x: WrongCube()(x), x)
    assert not tinyalex.gradcheck(lambda x: WrongCube()(x), x, raise_exception=False)


def test_gradcheck_leaves_grads_and_values_as_they_were(backend):
    x = arr([1.0, 2.0], backend)
    x.grad = tinyalex.tensor([7.0, 7.0], dtype=np.float64, backend=backend)
    before = x.numpy()
    check(lambda x: Cube()(x), x)
    np.testing.assert_array_equal(host(x.grad), [7.0, 7.0])
    np.testing.assert_array_equal(x.numpy(), before)


def test_gradcheck_refuses_float32_and_inputs_without_grad():
    with pytest.raises(TypeError, match=r"input 0 is float32.*float64"):
        tinyalex.gradcheck(lambda x: x * 2.0, tinyalex.tensor([1.0], requires_grad=True))
    with pytest.raises(ValueError, match="no input has requires_grad"):
        tinyalex.gradcheck(lambda x: x * 2.0, arr([1.0], requires_grad=False))


def test_needs_input_grad_is_set_before_forward():
    a, b = arr([1.0]), arr([2.0], requires_grad=False)
    f = ScaledAdd(3.0)
    f(a, b)
    assert f.seen == (True, False)
    g = ScaledAdd(3.0)
    with tinyalex.no_grad():
        g(a, b)
    assert g.seen == (False, False)


def test_a_backward_with_wrong_count_or_shape_is_named():
    class TooFew(ScaledAdd):
        def backward(self, gy):
            return gy

    class BadShape(Cube):
        def backward(self, gy):
            return gy.sum(keepdims=True)

    with pytest.raises(RuntimeError, match=r"TooFew.backward returned 1 gradients for 2"):
        TooFew(1.0)(arr([1.0, 2.0]), arr([1.0, 2.0])).sum().backward()
    with pytest.raises(RuntimeError, match=r"BadShape.backward returned a gradient of shape "
                                           r"\(1,\) for an input of shape \(2,\)"):
        BadShape()(arr([1.0, 2.0])).sum().backward()


def _readme_section(title):
    text = (ROOT / "README.md").read_text()
    match = re.search(rf"^## {re.escape(title)}\n(.*?)(?=^## |\Z)", text, re.S | re.M)
    assert match, f"README.md has no section '## {title}'"
    return match.group(1)


def test_readme_user_defined_op_runs_and_is_checked(capsys):
    """The README's own-op example is code that runs, not prose: execute it."""
    blocks = re.findall(r"```python\n(.*?)```", _readme_section("Writing your own op"), re.S)
    assert blocks, "the section holds no python block"
    namespace = {}
    exec(compile("\n".join(blocks), "README.md", "exec"), namespace)
    assert "gradcheck passed" in capsys.readouterr().out


def test_graph_does_not_keep_unsaved_activations_alive():
    # The graph holds edges (creators and leaves), not input tensors: an activation
    # that no backward saved is freed once the caller drops it, before backward.
    x = tinyalex.tensor(np.arange(6.0).reshape(2, 3), requires_grad=True)
    a = x * 2.0                      # Mul saves its inputs (x and 2), not its output
    watch = weakref.ref(a.array)
    s = a.sum()                      # Sum saves only the input's shape
    del a
    gc.collect()
    assert watch() is None, "an intermediate activation outlived its last reference"
    s.backward()
    np.testing.assert_array_equal(x.grad.numpy(), np.full((2, 3), 2.0))
