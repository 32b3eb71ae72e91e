"""Every op's backward against central finite differences in float64.

Each test draws shapes with hypothesis (batch, channels, sizes, kernel, stride,
padding, non-square, kernel = padded input size), checks every input that takes a
gradient (data, weight, bias) with a random upstream gradient, and uses the
tolerances of ``helpers.checks`` (eps=1e-6, atol=1e-6, rtol=1e-5). Ops with kernels in
``tinyalex.kernels`` (convolution, pooling, relu, sigmoid, dropout) run with every
kernel set the backend has ("reference", and "fast" where fast kernels exist).
The two ops of ``tinyalex/tensor.py``, ``_Cast`` (``.float()``, ``.double()``) and
``_Move`` (``.to(backend)`` inside a graph), are checked at the end.
"""

import numpy as np
import pytest
from hypothesis import assume, example, given, settings, strategies as st
from hypothesis.extra.numpy import mutually_broadcastable_shapes

import tinyalex
import tinyalex.nn.functional as F
from tinyalex import backend as B, ops
from tinyalex.kernels import conv_direct_cpu
from tinyalex.kernels.geometry import conv_geometry
from tinyalex.tensor import _Cast, _Move
from helpers.strategies import window_geometry
from helpers.checks import BACKENDS, arr, away_from_zero, check, distinct, host, randn

EXAMPLES = 30




# -- convolution ----------------------------------------------------------------------

@settings(max_examples=EXAMPLES)
@given(N=st.integers(1, 2), C=st.integers(1, 3), OC=st.integers(1, 3),
       geom=window_geometry(), bias=st.booleans(), seed=st.integers(0, 2**16))
@example(N=1, C=2, OC=2, geom=(3, 5, 3, 5, 1, 1, 0, 0), bias=True, seed=1)   # kernel = input, non-square
@example(N=2, C=1, OC=3, geom=(2, 3, 4, 5, 2, 3, 1, 1), bias=True, seed=2)   # kernel = padded input
@example(N=1, C=3, OC=1, geom=(7, 4, 3, 2, 2, 3, 1, 0), bias=False, seed=3)  # SH != SW, PH != PW
def test_conv2d_gradients(backend, kernel_mode, N, C, OC, geom, bias, seed):
    H, W, KH, KW, SH, SW, PH, PW = geom
    rng = np.random.default_rng(seed)
    x = randn(rng, (N, C, H, W), backend)
    w = randn(rng, (OC, C, KH, KW), backend)
    inputs = [x, w] + ([randn(rng, (OC,), backend)] if bias else [])
    check(lambda *a: F.conv2d(*a, stride=(SH, SW), padding=(PH, PW)), *inputs)


@settings(max_examples=5)
@given(seed=st.integers(0, 2**16), which=st.sampled_from(["x", "w", "b"]))
def test_conv2d_gradient_of_one_input_alone(backend, kernel_mode, seed, which):
    """Only one input requires grad: the op skips the others' gradients (its backward,
    called on the recorded node, returns None for them) and the one it computes is
    still right."""
    rng = np.random.default_rng(seed)
    x = randn(rng, (2, 2, 5, 4), backend, requires_grad=which == "x")
    w = randn(rng, (3, 2, 3, 2), backend, requires_grad=which == "w")
    b = randn(rng, (3,), backend, requires_grad=which == "b")
    wanted = tuple(name == which for name in "xwb")
    y = F.conv2d(x, w, b, stride=(2, 1), padding=1)
    node = y._creator                                  # the Conv2d Function recorded
    assert node.needs_input_grad == wanted
    grads = node.backward(y.xp.ones_like(y.array))
    assert len(grads) == 3
    for name, need, g, t in zip("xwb", wanted, grads, (x, w, b)):
        if need:
            assert g is not None and g.shape == t.shape, name
        else:
            assert g is None, f"the gradient of {name}, which nobody needs, was computed"
    check(lambda x, w, b: F.conv2d(x, w, b, stride=(2, 1), padding=1), x, w, b)


@settings(max_examples=EXAMPLES)
@given(N=st.integers(1, 2), C=st.integers(1, 3), OC=st.integers(1, 3),
       geom=window_geometry(stride=1, extra=6), pool_k=st.sampled_from([2, 3]),
       bias=st.booleans(), seed=st.integers(0, 2**16))
@example(N=2, C=1, OC=3, geom=(8, 8, 5, 5, 1, 1, 2, 2), pool_k=2, bias=True, seed=0)  # LeNet's 1st
@example(N=1, C=2, OC=2, geom=(9, 6, 3, 2, 1, 1, 0, 1), pool_k=2, bias=False, seed=1)  # odd OH
@example(N=33, C=2, OC=3, geom=(5, 4, 3, 2, 1, 1, 1, 0), pool_k=2, bias=True, seed=2)  # 2 blocks
def test_conv2d_sigmoid_avg_pool2d_gradients(backend, kernel_mode, N, C, OC, geom, pool_k,
                                             bias, seed):
    """The convolution + sigmoid + average pooling of d2l's LeNet blocks as one op
    (loops over blocks of 32 images in the vector lanes for a 2x2 pooling after the
    direct convolution, a batch of 33 filling one block and part of another; the three
    algorithms one after the other otherwise)."""
    H, W, KH, KW, _, _, PH, PW = geom
    OH, OW = H + 2 * PH - KH + 1, W + 2 * PW - KW + 1
    assume(OH >= pool_k and OW >= pool_k)
    rng = np.random.default_rng(seed)
    x = randn(rng, (N, C, H, W), backend)
    w = randn(rng, (OC, C, KH, KW), backend)
    inputs = [x, w] + ([randn(rng, (OC,), backend)] if bias else [])

    def fn(*a):
        return ops.conv.conv2d_sigmoid_avg_pool2d(*a, padding=(PH, PW), pool_kernel=pool_k,
                                                  pool_stride=2)
    g = conv_geometry((N, C, H, W), (OC, C, KH, KW), 1, 1, PH, PW)
    one_loop = pool_k == 2 and ops.conv.conv2d_algorithm(g, np.dtype(np.float64), backend) \
        is conv_direct_cpu.DIRECT               # fast mode, numpy, no 1x1 GEMM, pad < kernel
    assert (fn(*inputs).creator.pool_geometry is not None) == one_loop
    check(fn, *inputs)


# -- pooling --------------------------------------------------------------------------

@settings(max_examples=EXAMPLES)
@given(N=st.integers(1, 2), C=st.integers(1, 3), geom=window_geometry(pool=True),
       default_stride=st.booleans(), seed=st.integers(0, 2**16))
@example(N=1, C=2, geom=(3, 4, 3, 4, 1, 1, 0, 0), default_stride=True, seed=0)  # kernel = input
@example(N=2, C=1, geom=(2, 2, 3, 3, 1, 2, 1, 1), default_stride=False, seed=1)  # padding wins nowhere
def test_max_pool2d_gradients(backend, kernel_mode, N, C, geom, default_stride, seed):
    H, W, KH, KW, SH, SW, PH, PW = geom
    rng = np.random.default_rng(seed)
    x = arr(distinct(rng, (N, C, H, W)), backend)          # no ties: max is differentiable
    stride = None if default_stride else (SH, SW)
    check(lambda x: F.max_pool2d(x, (KH, KW), stride, (PH, PW)), x)


@settings(max_examples=EXAMPLES)
@given(N=st.integers(1, 2), C=st.integers(1, 3), geom=window_geometry(pool=True),
       seed=st.integers(0, 2**16))
@example(N=2, C=2, geom=(7, 7, 3, 3, 2, 2, 0, 0), seed=0)   # AlexNet's: 3x3 at stride 2
def test_relu_max_pool2d_gradients(backend, kernel_mode, N, C, geom, seed):
    """max_pool2d(relu(x)) as one op (nn.Sequential's ReLU+MaxPool2d on the CPU)."""
    H, W, KH, KW, SH, SW, PH, PW = geom
    rng = np.random.default_rng(seed)
    x = arr(distinct(rng, (N, C, H, W)) + 0.0025, backend)  # no ties, none at the kink
    check(lambda x: ops.pool.relu_max_pool2d(x, (KH, KW), (SH, SW), (PH, PW)), x)


@settings(max_examples=EXAMPLES)
@given(N=st.integers(1, 2), C=st.integers(1, 3), geom=window_geometry(pool=True),
       default_stride=st.booleans(), seed=st.integers(0, 2**16))
@example(N=1, C=1, geom=(4, 2, 4, 2, 1, 1, 0, 0), default_stride=True, seed=0)  # kernel = input
@example(N=1, C=2, geom=(3, 5, 2, 4, 2, 1, 1, 2), default_stride=False, seed=1)
def test_avg_pool2d_gradients(backend, kernel_mode, N, C, geom, default_stride, seed):
    H, W, KH, KW, SH, SW, PH, PW = geom
    rng = np.random.default_rng(seed)
    x = randn(rng, (N, C, H, W), backend)
    stride = None if default_stride else (SH, SW)
    check(lambda x: F.avg_pool2d(x, (KH, KW), stride, (PH, PW)), x)


# -- activations, dropout -------------------------------------------------------------

small_shape = st.lists(st.integers(1, 4), min_size=1, max_size=4).map(tuple)


@settings(max_examples=EXAMPLES)
@given(shape=small_shape, seed=st.integers(0, 2**16))
def test_relu_gradients(backend, kernel_mode, shape, seed):
    x = arr(away_from_zero(np.random.default_rng(seed), shape), backend)
    check(F.relu, x)


@settings(max_examples=EXAMPLES)
@given(shape=small_shape, seed=st.integers(0, 2**16), scale=st.sampled_from([1.0, 10.0]))
def test_sigmoid_gradients(backend, kernel_mode, shape, seed, scale):
    check(F.sigmoid, randn(np.random.default_rng(seed), shape, backend, scale=scale))


@settings(max_examples=EXAMPLES)
@given(shape=small_shape, seed=st.integers(0, 2**16), p=st.sampled_from([0.1, 0.5, 0.9]))
def test_dropout_gradients_with_a_fixed_mask(backend, kernel_mode, shape, seed, p):
    x = randn(np.random.default_rng(seed), shape, backend)

    def fn(x):
        tinyalex.manual_seed(seed)          # the same mask on every call
        return F.dropout(x, p, training=True)
    check(fn, x)


# -- dense, flatten, loss -------------------------------------------------------------

@settings(max_examples=EXAMPLES)
@given(N=st.integers(1, 4), IN=st.integers(1, 6), OUT=st.integers(1, 5),
       bias=st.booleans(), seed=st.integers(0, 2**16))
def test_linear_gradients(backend, N, IN, OUT, bias, seed):
    rng = np.random.default_rng(seed)
    inputs = [randn(rng, (N, IN), backend), randn(rng, (OUT, IN), backend)]
    if bias:
        inputs.append(randn(rng, (OUT,), backend))
    check(F.linear, *inputs)


@settings(max_examples=EXAMPLES)
@given(shape=st.lists(st.integers(1, 3), min_size=2, max_size=5).map(tuple),
       seed=st.integers(0, 2**16), data=st.data())
def test_flatten_gradients(backend, shape, seed, data):
    start = data.draw(st.integers(0, len(shape) - 1))
    end = data.draw(st.integers(start, len(shape) - 1))
    x = randn(np.random.default_rng(seed), shape, backend)
    y = F.flatten(x, start, end)
    assert y.shape == shape[:start] + (int(np.prod(shape[start:end + 1])),) + shape[end + 1:]
    np.testing.assert_array_equal(host(y), host(x).reshape(y.shape))   # row-major order
    check(lambda x: F.flatten(x, start, end), x)


@settings(max_examples=EXAMPLES)
@given(N=st.integers(1, 5), K=st.integers(1, 6), seed=st.integers(0, 2**16),
       scale=st.sampled_from([1.0, 30.0]))
def test_cross_entropy_gradients(backend, N, K, seed, scale):
    rng = np.random.default_rng(seed)
    logits = randn(rng, (N, K), backend, scale=scale)
    target = tinyalex.tensor(rng.integers(0, K, size=N), backend=backend)
    check(lambda z: F.cross_entropy(z, target), logits)


# -- arithmetic, reductions, reshapes -------------------------------------------------

binary_ops = {
    "add": lambda a, b: a + b,
    "sub": lambda a, b: a - b,
    "mul": lambda a, b: a * b,
    "div": lambda a, b: a / b,
    "rsub_scalar": lambda a, b: 2.5 - a * b,
    "rdiv_scalar": lambda a, b: 1.5 / b + a,
}


@pytest.mark.parametrize("op", sorted(binary_ops))
@settings(max_examples=10)
@given(shapes=mutually_broadcastable_shapes(num_shapes=2, min_dims=0, max_dims=3,
                                            max_side=3),
       seed=st.integers(0, 2**16))
def test_broadcasting_binary_op_gradients(backend, op, shapes, seed):
    rng = np.random.default_rng(seed)
    a_shape, b_shape = shapes.input_shapes
    a = randn(rng, a_shape, backend)
    b = arr(away_from_zero(rng, b_shape, 0.5, 2.0), backend)  # a safe denominator
    y = binary_ops[op](a, b)
    assert y.shape == shapes.result_shape
    check(binary_ops[op], a, b)


unary_ops = {
    "neg": (lambda x: -x, "any"),
    "exp": (lambda x: x.exp(), "any"),
    "log": (lambda x: x.log(), "positive"),
    "square": (lambda x: x ** 2, "any"),
    "power_-1.5": (lambda x: x ** -1.5, "positive"),
    "sum": (lambda x: x.sum(), "any"),
    "mean": (lambda x: x.mean(), "any"),
    "sum_axis0_keepdims": (lambda x: x.sum(axis=0, keepdims=True), "any"),
    "mean_last_axis": (lambda x: x.mean(axis=-1), "any"),
    "reshape_flat": (lambda x: x.reshape(-1), "any"),
    "getitem_slice": (lambda x: x[::2], "any"),
    "getitem_repeats": (lambda x: x[np.array([0, 0, -1])], "any"),   # scatter-add
    "getitem_bool": (lambda x: x[x.array > 0], "any"),
    "self_product": (lambda x: x * x * x, "any"),                 # one input used twice
}


@pytest.mark.parametrize("op", sorted(unary_ops))
@settings(max_examples=8)
@given(shape=st.lists(st.integers(1, 4), min_size=1, max_size=3).map(tuple),
       seed=st.integers(0, 2**16))
def test_unary_op_gradients(backend, op, shape, seed):
    fn, domain = unary_ops[op]
    rng = np.random.default_rng(seed)
    values = rng.uniform(0.5, 2.0, shape) if domain == "positive" else rng.standard_normal(shape)
    x = arr(values, backend)
    if op == "getitem_bool" and not (values > 0).any():
        values.flat[0] = 1.0
        x = arr(values, backend)
    check(fn, x)


@settings(max_examples=EXAMPLES)
@given(M=st.integers(1, 4), K=st.integers(1, 4), N=st.integers(1, 4),
       seed=st.integers(0, 2**16))
def test_matmul_gradients(backend, M, K, N, seed):
    rng = np.random.default_rng(seed)
    check(ops.matmul, randn(rng, (M, K), backend), randn(rng, (K, N), backend))


@pytest.mark.parametrize("a_shape, b_shape", [
    ((3,), (3,)), ((3,), (3, 4)), ((2, 3), (3,)), ((5, 2, 3), (3, 4)), ((2, 3), (2, 3, 4)),
    ((2, 1, 2, 3), (3, 3, 2))])
def test_matmul_1d_and_batched_gradients(backend, a_shape, b_shape):
    """torch.matmul's other cases: 1-D operands promoted and dropped, batch dims
    broadcast (the gradient summed back over them)."""
    rng = np.random.default_rng(len(a_shape) * 10 + len(b_shape))
    a, b = randn(rng, a_shape, backend), randn(rng, b_shape, backend)
    np.testing.assert_allclose(host(ops.matmul(a, b)), np.matmul(host(a), host(b)),
                               rtol=1e-12)
    check(ops.matmul, a, b)


@settings(max_examples=EXAMPLES)
@given(shape=st.lists(st.integers(1, 3), min_size=2, max_size=4).map(tuple),
       seed=st.integers(0, 2**16), data=st.data())
def test_sum_over_several_axes_gradients(backend, shape, seed, data):
    nd = len(shape)
    axes = tuple(data.draw(st.lists(st.integers(-nd, nd - 1), min_size=1, max_size=nd,
                                    unique_by=lambda a: a % nd)))
    keepdims = data.draw(st.booleans())
    x = randn(np.random.default_rng(seed), shape, backend)
    expected = x.numpy().sum(axis=axes, keepdims=keepdims)
    np.testing.assert_allclose(x.sum(axis=axes, keepdims=keepdims).numpy(), expected,
                               rtol=1e-12)
    check(lambda x: x.sum(axis=axes, keepdims=keepdims), x)
    check(lambda x: x.mean(axis=(0, -1), keepdims=keepdims), x)


# -- the torch tensor API of d2l's convolution chapters (ops/shape.py, ops/reduce.py) ---

def _dims_of(data, nd):
    return data.draw(st.integers(-nd, nd - 1))


api_ops = {
    # name: (fn(x, d) with d a dim drawn per example, domain)
    "abs": (lambda x, d: x.abs(), "away"),
    "sqrt": (lambda x, d: x.sqrt(), "positive"),
    "pow_3": (lambda x, d: x.pow(3), "any"),
    "clone": (lambda x, d: x.clone() * x, "any"),
    "T": (lambda x, d: x.T * 1.0, "any"),
    "permute_reversed": (lambda x, d: x.permute(*reversed(range(x.ndim))), "any"),
    "transpose_d_0": (lambda x, d: x.transpose(d, 0), "any"),
    "sum_dim_keepdim": (lambda x, d: x.sum(dim=d, keepdim=True), "any"),
    "mean_dim": (lambda x, d: x.mean(dim=d), "any"),
    "max_all": (lambda x, d: x.max(), "distinct"),
    "min_dim": (lambda x, d: x.min(dim=d).values, "distinct"),
    "max_dim_keepdim": (lambda x, d: x.max(d, keepdim=True)[0], "distinct"),
    "prod_all": (lambda x, d: x.prod(), "any"),
    "prod_dim": (lambda x, d: x.prod(dim=d), "any"),
    "var_dim": (lambda x, d: x.var(dim=d, correction=0), "any"),
    "var_all": (lambda x, d: x.var(), "many"),
    "std_dim_keepdim": (lambda x, d: x.std(d, keepdim=True), "many"),
    "softmax": (lambda x, d: x.softmax(dim=d), "any"),
    "log_softmax": (lambda x, d: x.log_softmax(d), "any"),
    "cat_self": (lambda x, d: tinyalex.cat([x, x * 2.0, x], dim=d), "any"),
    "stack_self": (lambda x, d: tinyalex.stack((x, x.exp()), dim=d), "any"),
    "repeat": (lambda x, d: x.repeat(*([2] * (x.ndim - 1)), 3, 1), "any"),
    "sin_cos": (lambda x, d: x.sin() * tinyalex.cos(x), "any"),
    "tanh_sinh_cosh": (lambda x, d: x.tanh() + x.sinh() / x.cosh(), "any"),
    "matmul_batched": (lambda x, d: tinyalex.matmul(x, x.transpose(-1, -2)) if x.ndim > 1
                       else x @ x, "any"),
}


@pytest.mark.parametrize("op", sorted(api_ops))
@settings(max_examples=6)
@given(shape=st.lists(st.integers(1, 4), min_size=1, max_size=3).map(tuple),
       seed=st.integers(0, 2**16), data=st.data())
def test_tensor_api_gradients(backend, op, shape, seed, data):
    fn, domain = api_ops[op]
    rng = np.random.default_rng(seed)
    if domain == "many":                            # std of one element has no derivative
        shape = (2,) + shape[1:]
    values = {"positive": lambda: rng.uniform(0.5, 2.0, shape),
              "away": lambda: away_from_zero(rng, shape),
              "distinct": lambda: distinct(rng, shape, gap=0.1)}.get(
        domain, lambda: rng.standard_normal(shape))()
    d = _dims_of(data, len(shape))
    check(lambda x: fn(x, d), arr(values, backend))


@settings(max_examples=EXAMPLES)
@given(sizes=st.lists(st.integers(1, 3), min_size=1, max_size=3), rest=st.integers(1, 3),
       seed=st.integers(0, 2**16), data=st.data())
def test_cat_and_stack_gradients_of_several_inputs(backend, sizes, rest, seed, data):
    """Inputs of different sizes along the joined dim, each its own gradient."""
    rng = np.random.default_rng(seed)
    d = data.draw(st.sampled_from([0, 1, -1]))
    xs = [randn(rng, (n, rest) if d == 0 else (rest, n), backend) for n in sizes]
    check(lambda *xs: tinyalex.cat(xs, dim=d), *xs)
    same = [randn(rng, (2, rest), backend) for _ in sizes]
    check(lambda *xs: tinyalex.stack(xs, dim=d), *same)


@settings(max_examples=EXAMPLES)
@given(shape=st.lists(st.integers(1, 4), min_size=1, max_size=3).map(tuple),
       seed=st.integers(0, 2**16), data=st.data())
def test_setitem_gradients(backend, shape, seed, data):
    """x[index] = value recorded in the graph (SetItem, PyTorch's CopySlices): the
    value gets the gradient of the part it filled, summed where it was broadcast; the
    overwritten part of the old x gets none. Index kinds: int, slice, tuple, mask,
    integer array."""
    rng = np.random.default_rng(seed)
    kind = data.draw(st.sampled_from(["int", "slice", "tuple", "mask", "array"]))
    n = shape[0]
    index = {"int": data.draw(st.integers(-n, n - 1)),
             "slice": slice(data.draw(st.integers(0, n - 1)), None,
                            data.draw(st.integers(1, 2))),
             "tuple": (data.draw(st.integers(0, n - 1)),) + (slice(None),) * (len(shape) - 1),
             "mask": rng.random(shape) > 0.5,
             "array": rng.permutation(n)[:data.draw(st.integers(1, n))]}[kind]
    part = np.zeros(shape)[index].shape
    broadcast = data.draw(st.booleans()) and len(part) > 0
    value_shape = (1,) + part[1:] if broadcast else part
    x, v = randn(rng, shape, backend), randn(rng, value_shape, backend)

    def fn(x, v):
        y = x * 1.0
        y[index] = v * 2.0
        return y * y
    check(fn, x, v)


# -- the casts and moves of tensor.py ---------------------------------------------------

CAST_EPS = 2.0 ** -10


def float32_exact(rng, shape):
    """float64 values that float32 holds exactly, and so do they +- CAST_EPS: multiples
    of 2**-12 below 4 in magnitude (14 significant bits)."""
    return rng.integers(-2 ** 14, 2 ** 14, shape) * 2.0 ** -12


def test_cast_gradients(backend):
    """``_Cast`` float64 -> float32 (``.float()``), and back (``.double()``), by finite
    differences in float64. At values float32 holds exactly, x +- eps included, the
    narrowing is exact, so the central difference is the upstream gradient itself up
    to the float64 round-off of the summed output (~1e-16 * n / eps: atol 1e-10); the
    analytic gradient differs from it by the float32 rounding of the upstream gradient
    on its way back (relative 2**-24: rtol 2**-23)."""
    rng = np.random.default_rng(0)
    x = arr(float32_exact(rng, (3, 5)), backend)
    y = x.float()
    assert isinstance(y._creator, _Cast) and y.dtype == np.float32
    z = y.double()
    assert isinstance(z._creator, _Cast) and z.dtype == np.float64
    check(lambda x: x.float(), x, eps=CAST_EPS, atol=1e-10, rtol=2.0 ** -23)
    check(lambda x: (x.float() * 0.5).double(), x, eps=CAST_EPS, atol=1e-10, rtol=2.0 ** -23)


@pytest.mark.parametrize("source, target", [(np.float32, np.float64),
                                            (np.float64, np.float32)])
def test_cast_backward_is_the_exact_adjoint(backend, source, target):
    """Widening float32 -> float64 is exact and linear, so its backward must be the
    identity on gradients float32 holds (returned as float32, the input's dtype);
    narrowing's derivative is 1 wherever it is taken, so its backward must widen the
    float32 gradient exactly. <cast(x), g> == <x, backward(g)> to the last bit."""
    rng = np.random.default_rng(1)
    values = rng.standard_normal((4, 3)).astype(np.float32)        # float32-exact
    x = tinyalex.tensor(values.astype(source), requires_grad=True, backend=backend)
    y = x.astype(target)
    assert isinstance(y._creator, _Cast) and y.dtype == target
    np.testing.assert_array_equal(host(y), values.astype(target))
    g = rng.standard_normal((4, 3)).astype(np.float32).astype(target)  # float32-exact
    y.backward(B.to_backend(g, backend))
    assert x.grad.dtype == source and x.grad.backend == backend
    np.testing.assert_array_equal(host(x.grad), g.astype(source))
    as64 = [a.astype(np.float64).reshape(-1) for a in (host(y), g, host(x), host(x.grad))]
    assert as64[0] @ as64[1] == as64[2] @ as64[3]


@pytest.mark.parametrize("target", BACKENDS)
def test_move_gradients(backend, target):
    """``_Move(target)``, the op ``tensor.to(target)`` records for a tensor inside a
    graph: the output lives on ``target`` and backward hands the upstream gradient back,
    unchanged, on the source backend. numpy -> numpy is the op called directly
    (``.to`` returns the tensor itself when nothing moves); numpy <-> cupy goes through
    ``.to``, where CuPy and a GPU are usable."""
    def move(t):
        return _Move(target)(t) if target == backend else t.to(target)

    rng = np.random.default_rng(2)
    x = randn(rng, (3, 4), backend)
    y = move(x * 2.0)
    assert isinstance(y._creator, _Move) and y.backend == target
    check(lambda x: move(x * 2.0), x)
    # the exact adjoint: <move(x), g> == <x, backward(g)> because backward(g) is g
    x.grad = None
    y = move(x)
    assert isinstance(y._creator, _Move)
    g = rng.standard_normal((3, 4))
    y.backward(B.to_backend(g, target))
    assert x.grad.backend == backend
    np.testing.assert_array_equal(host(x.grad), g)
