"""The torch tensor API that d2l's convolution chapters use, with PyTorch's semantics:
item assignment (in place, and in the graph), ``.data`` sharing memory, reductions
returning what PyTorch returns, shapes as ``torch.Size``, formatting, the module
functions. Values and gradients against PyTorch itself: ``test_torch_parity.py``;
float64 gradchecks: ``test_gradcheck_ops.py``; bad arguments: ``test_bad_args.py``.
"""

import numpy as np
import pytest

import tinyalex
from helpers.checks import arr, check, host


# -- item assignment ----------------------------------------------------------------

@pytest.mark.parametrize("index, value", [
    ((1, 2), 7.0),                                   # X[i, j] = scalar (corr2d)
    ((slice(None), slice(2, 4)), 0),                  # X[:, 2:4] = 0 (conv-layer)
    (0, np.arange(4.0)),                              # a row from an array
    (np.array([True, False, True]), -1.0),            # a boolean mask
    ((np.array([0, 2]), np.array([1, 3])), np.array([5.0, 6.0])),   # integer arrays
    (Ellipsis, 2.5),
])
def test_setitem_writes_what_numpy_writes(backend, index, value):
    want = np.arange(12.0).reshape(3, 4).astype(np.float32)
    want[index] = value
    x = tinyalex.arange(12.0, backend=backend).reshape(3, 4)
    x[index] = value
    np.testing.assert_array_equal(host(x), want)
    assert x.dtype == np.float32 and x.is_leaf and not x.requires_grad


def test_setitem_takes_tensor_values_and_index_tensors(backend):
    x = tinyalex.zeros(2, 3, backend=backend)
    x[1] = tinyalex.tensor([1.0, 2.0, 3.0], dtype=tinyalex.float64, backend=backend)
    x[0, tinyalex.tensor([0, 2], backend=backend)] = tinyalex.tensor(9.0, backend=backend)
    x[x < 0] = 5.0
    np.testing.assert_array_equal(host(x), [[9, 0, 9], [1, 2, 3]])
    assert x.dtype == np.float32                 # the value takes x's dtype, as PyTorch


def test_corr2d_as_the_book_writes_it():
    """d2l's corr2d fills Y element by element, on a tensor made by zeros."""
    X = tinyalex.tensor([[0.0, 1.0, 2.0], [3.0, 4.0, 5.0], [6.0, 7.0, 8.0]])
    K = tinyalex.tensor([[0.0, 1.0], [2.0, 3.0]])
    h, w = K.shape
    Y = tinyalex.zeros((X.shape[0] - h + 1, X.shape[1] - w + 1))
    for i in range(Y.shape[0]):
        for j in range(Y.shape[1]):
            Y[i, j] = (X[i:i + h, j:j + w] * K).sum()
    assert Y.tolist() == [[19.0, 25.0], [37.0, 43.0]]


def test_data_shares_memory_and_is_outside_the_graph():
    """The learning-a-kernel loop: ``w.data[:] -= lr * w.grad`` changes the layer."""
    w = tinyalex.nn.Parameter(tinyalex.ones(1, 2))
    (w * tinyalex.tensor([[1.0, 2.0]])).sum().backward()
    d = w.data
    assert isinstance(d, tinyalex.Tensor) and not d.requires_grad and d.grad_fn is None
    w.data[:] -= 0.5 * w.grad
    np.testing.assert_allclose(w.numpy(), [[0.5, 0.0]])
    assert w.is_leaf and w.requires_grad                 # still the same parameter
    w.data = tinyalex.zeros(3)                           # replacing, as d2l's init does
    assert w.shape == (3,) and w.requires_grad
    with pytest.raises(TypeError, match="Tensor.data must be set to a Tensor"):
        w.data = [1.0, 2.0]


def test_setitem_in_the_graph_is_a_new_version():
    """x[idx] = v where a gradient is recorded: x's creator becomes a SetItem node
    (grad_fn CopySlices); what used x before keeps the old values; the gradient
    reaches v for the part it filled and not the overwritten part of x."""
    a = tinyalex.tensor([1.0, 2.0, 3.0], requires_grad=True)
    v = tinyalex.tensor(10.0, requires_grad=True)
    x = a * 2
    before = x * 1                                       # uses the old version
    x[1] = v * 3
    assert x.grad_fn.grad_fn_name == "CopySlices" and x.requires_grad
    assert x.tolist() == [2.0, 30.0, 6.0] and before.tolist() == [2.0, 4.0, 6.0]
    (x.sum() + before.sum()).backward()
    assert a.grad.tolist() == [4.0, 2.0, 4.0]            # element 1 only through `before`
    assert v.grad.item() == 3.0

    y = tinyalex.zeros(2, 2)                             # a leaf without grad, as in corr2d
    y[0, 1] = v
    assert y.requires_grad and not y.is_leaf
    y.sum().backward()
    assert v.grad.item() == 4.0


def test_setitem_gradcheck_broadcast_value():
    """The value broadcast over the part it fills: its gradient is summed back."""
    rng = np.random.default_rng(0)
    x, v = arr(rng.standard_normal((3, 4))), arr(rng.standard_normal((1, 2)))

    def fn(x, v):
        y = x * 1.0
        y[1:, 1:3] = v * v
        return y * y
    check(fn, x, v)


def test_setitem_into_a_leaf_that_requires_grad_is_refused():
    w = tinyalex.zeros(3, requires_grad=True)
    with pytest.raises(RuntimeError, match="leaf Variable that requires grad"):
        w[0] = 1.0
    with tinyalex.no_grad():                             # allowed, as in PyTorch
        w[0] = 1.0
    assert w.tolist() == [1.0, 0.0, 0.0] and w.is_leaf


def test_setitem_under_no_grad_writes_through_views():
    x = tinyalex.zeros(2, 3)
    row = x[1]                                           # a view, as in PyTorch
    row[:] = 4.0
    assert x.tolist() == [[0.0] * 3, [4.0] * 3]


# -- shapes, formatting, iteration --------------------------------------------------

def test_shape_is_a_torch_size():
    x = tinyalex.zeros(1, 1, 6, 8)
    assert repr(x.shape) == str(x.shape) == "torch.Size([1, 1, 6, 8])"
    assert f"{x.shape}" == "torch.Size([1, 1, 6, 8])"
    assert x.shape == (1, 1, 6, 8) and isinstance(x.shape, tuple)
    assert repr(x.shape[2:]) == "torch.Size([6, 8])" and x.shape[-1] == 8
    assert (1, 1) + x.shape[2:] == (1, 1, 6, 8)
    assert repr(x.shape[2:] + (3,)) == "torch.Size([6, 8, 3])"
    assert x.shape.numel() == 48 == x.numel() == tinyalex.numel(x)
    assert repr(tinyalex.tensor(1.0).shape) == "torch.Size([])"


def test_format_of_a_0d_tensor_and_refusal_otherwise():
    loss = tinyalex.tensor([1.23456, 2.0]).sum()
    assert f"loss {loss:.3f}" == "loss 3.235" and f"{loss:g}" == "3.23456"
    with pytest.raises(TypeError, match=r"only a 0-d tensor formats as a number.*\(1,\)"):
        f"{tinyalex.tensor([1.0]):.3f}"
    assert f"{tinyalex.tensor([1.0])}" == "tensor([1.])"


def test_iteration_and_python_sum():
    """d2l's corr2d_multi_in: ``sum(corr2d(x, k) for x, k in zip(X, K))``."""
    X = tinyalex.arange(8.0).reshape(2, 2, 2)
    rows = list(X)
    assert len(rows) == 2 and rows[1].tolist() == [[4.0, 5.0], [6.0, 7.0]]
    assert sum(x.sum() for x in X).item() == 28.0
    with pytest.raises(TypeError, match="0-d"):
        iter(tinyalex.tensor(1.0))
    assert 5.0 in X and 9.0 not in X and tinyalex.tensor(7.0) in X


# -- reductions: what they return ---------------------------------------------------

def test_max_min_return_types():
    x = tinyalex.tensor([[1.0, 5.0, 2.0], [7.0, 0.0, 7.0]])
    m = x.max()
    assert m.ndim == 0 and m.item() == 7.0
    values, indices = x.max(dim=1)
    assert values.tolist() == [5.0, 7.0] and indices.tolist() == [1, 0]
    r = x.min(1, keepdim=True)
    assert r.values.shape == (2, 1) and r.indices.dtype == np.int64
    assert repr(r).startswith("torch.return_types.min(\nvalues=tensor([[1.],")
    assert x.argmax().item() == 3 and x.argmax(dim=0).tolist() == [1, 0, 1]
    assert x.argmin(1, keepdim=True).shape == (2, 1)
    assert tinyalex.max(x, 0).indices.tolist() == [1, 0, 1]


def test_numpy_names_still_work():
    x = tinyalex.arange(6.0).reshape(2, 3)
    assert x.sum(axis=1).tolist() == x.sum(dim=1).tolist() == [3.0, 12.0]
    assert x.mean(axis=0, keepdims=True).shape == (1, 3)
    assert x.max(axis=1).values.tolist() == [2.0, 5.0]
    with pytest.raises(TypeError, match="not both"):
        x.sum(dim=0, axis=0)


def test_var_std_unbiased_by_default():
    x = tinyalex.tensor([1.0, 2.0, 3.0, 4.0])
    assert x.var().item() == pytest.approx(5 / 3)
    assert x.var(unbiased=False).item() == pytest.approx(1.25)
    assert x.var(correction=0).item() == pytest.approx(1.25)
    assert x.std(False).item() == pytest.approx(1.25 ** 0.5)


# -- module functions ----------------------------------------------------------------

def test_creation_functions_dtypes_and_sharing():
    assert tinyalex.arange(5).dtype == np.int64 and tinyalex.arange(5.0).dtype == np.float32
    assert tinyalex.arange(16, dtype=tinyalex.float32).shape == (16,)
    assert tinyalex.arange(1, 2, 0.25).tolist() == [1.0, 1.25, 1.5, 1.75]
    assert tinyalex.linspace(0, 1, 5).tolist() == [0.0, 0.25, 0.5, 0.75, 1.0]
    assert tinyalex.eye(2, 3).tolist() == [[1, 0, 0], [0, 1, 0]]
    assert tinyalex.full((2,), 3).dtype == np.int64
    x = tinyalex.normal(0, 1, (3, 3, 3))
    assert x.shape == (3, 3, 3) and x.dtype == np.float32
    assert tinyalex.zeros_like(x).shape == x.shape and tinyalex.ones_like(x).sum().item() == 27
    a = np.zeros(3)
    t = tinyalex.from_numpy(a)
    a[0] = 1.0
    assert t.tolist() == [1.0, 0.0, 0.0] and t.dtype == np.float64
    assert tinyalex.as_tensor(t) is t and tinyalex.as_tensor([1, 2]).dtype == np.int64
    assert tinyalex.concat is tinyalex.cat
    assert tinyalex.tensor([1.0], device="cpu").backend == "numpy"
    assert tinyalex.zeros(2, device=tinyalex.device("cpu")).backend == "numpy"
    X = tinyalex.arange(4.0).reshape(2, 2)
    assert tinyalex.transpose(X, 0, 1).tolist() == X.T.tolist() == X.t().tolist() \
        == [[0.0, 2.0], [1.0, 3.0]]
    assert tinyalex.cat((X, X + 1), 1).shape == (2, 4)
    assert tinyalex.stack([X, X], 0).shape == (2, 2, 2)
    assert tinyalex.abs(-X).tolist() == X.tolist()
    assert tinyalex.sqrt(X * X).tolist() == X.tolist()
    assert X.clone().tolist() == X.tolist() and X.detach().array is X.array
    assert X.unsqueeze(0).shape == (1, 2, 2) and X.unsqueeze(0).squeeze().shape == (2, 2)
    assert X.flatten().tolist() == [0.0, 1.0, 2.0, 3.0]


# -- in-place operators -------------------------------------------------------------

def test_in_place_operators_write_into_the_tensor():
    """d2l's from-scratch SGD: ``param -= lr * param.grad; param.grad.zero_()`` under
    no_grad() changes the parameter itself; two leaves whose gradients came from one
    array (add's backward) are zeroed independently."""
    w = tinyalex.ones(3, requires_grad=True)
    b = tinyalex.ones(3, requires_grad=True)
    (w + b).sum().backward()
    params = [w, b]
    with tinyalex.no_grad():
        for param in params:
            param -= 0.5 * param.grad
            param.grad.zero_()
    assert w.tolist() == b.tolist() == [0.5] * 3 and w.is_leaf and w.requires_grad
    with pytest.raises(RuntimeError, match="leaf Variable"):
        w += 1.0
    x = tinyalex.zeros(2, 2)
    alias = x
    x += 1.0
    x *= 3.0
    x /= 2.0
    x.sub_(0.5).add_(1.0).mul_(2.0).div_(4.0)
    assert alias is x and x.tolist() == [[1.0, 1.0], [1.0, 1.0]]
    x.data.fill_(2.0)
    assert x.tolist() == [[2.0] * 2] * 2
    x.copy_(tinyalex.eye(2))
    assert x.tolist() == [[1.0, 0.0], [0.0, 1.0]]
    tinyalex.manual_seed(0)
    x.normal_(0.0, 0.01)
    assert 0 < float(x.abs().max()) < 0.1
    x.uniform_(2.0, 3.0)
    assert 2.0 <= float(x.min()) and float(x.max()) < 3.0


def test_in_place_in_the_graph_gradcheck():
    rng = np.random.default_rng(1)
    x, y = arr(rng.standard_normal((2, 3))), arr(rng.standard_normal((2, 3)))

    def fn(x, y):
        z = x * 1.0
        z += y * y
        z *= x
        return z
    check(fn, x, y)


def test_repr_on_the_gpu_names_the_device():
    """The cupy backend prints as PyTorch prints a cuda tensor (checked here on the
    printing function, which takes the host copy, so that it runs without a GPU)."""
    from tinyalex.printing import tensor_repr
    text = tensor_repr(np.array([1.0, 2.5], np.float32), device="cuda:0", grad_fn=None,
                       requires_grad=True)
    assert text == "tensor([1.0000, 2.5000], device='cuda:0', requires_grad=True)"


def test_numpy_interop():
    x = tinyalex.arange(3.0)
    assert np.asarray(x).tolist() == [0.0, 1.0, 2.0]
    assert np.shares_memory(np.asarray(x), x.array)      # as torch's, no copy on the CPU
    assert np.asarray(x, dtype=np.float64).dtype == np.float64
    n = x.numpy()
    n[0] = 5.0
    assert x[0].item() == 0.0               # numpy() is a host copy (documented)


def test_the_rest_of_d2ls_aliases():
    """The names d2l's library binds for PyTorch beyond these chapters (its aliases
    list): they exist under PyTorch's names and behave as its."""
    x = tinyalex.arange(3.0)
    gi, gj = tinyalex.meshgrid(x, tinyalex.arange(2.0))
    assert gi.shape == gj.shape == (3, 2) and gi[:, 0].tolist() == [0.0, 1.0, 2.0]
    assert tinyalex.bmm(tinyalex.ones(2, 1, 3), tinyalex.ones(2, 3, 4)).shape == (2, 1, 4)
    with pytest.raises(RuntimeError, match=r"bmm: .*\(2, 3\) and \(3, 4\)"):
        tinyalex.bmm(tinyalex.ones(2, 3), tinyalex.ones(3, 4))
    assert tinyalex.swapaxes(tinyalex.zeros(2, 3), 0, 1).shape == (3, 2)
    assert tinyalex.sigmoid(tinyalex.zeros(1)).item() == 0.5
    for name in ("sin", "cos", "tanh", "sinh", "cosh", "relu"):
        assert getattr(tinyalex, name)(x).shape == (3,)


def test_a_tiny_matrix_product_equals_its_loop_as_the_channels_section_asserts():
    """d2l's channels section checks a 1x1 convolution as a matrix product against its
    loops to 1e-6 on random draws; a product of a few terms is summed in order, as the
    loop does, so the check holds for every draw (BLAS's fused multiply-adds broke it
    about one draw in ten) while a large product still goes to BLAS."""
    rng = np.random.default_rng(0)
    for _ in range(500):
        X = rng.standard_normal((3, 9)).astype(np.float32)
        K = rng.standard_normal((2, 3)).astype(np.float32)
        loops = np.float32(0) + K[:, :1] * X[0] + K[:, 1:2] * X[1] + K[:, 2:3] * X[2]
        product = tinyalex.matmul(tinyalex.tensor(K), tinyalex.tensor(X)).numpy()
        np.testing.assert_array_equal(product, loops)
    a = rng.standard_normal((64, 256)).astype(np.float32)
    b = rng.standard_normal((256, 32)).astype(np.float32)
    np.testing.assert_allclose(tinyalex.matmul(tinyalex.tensor(a), tinyalex.tensor(b)).numpy(),
                               a @ b, rtol=1e-5, atol=1e-4)
