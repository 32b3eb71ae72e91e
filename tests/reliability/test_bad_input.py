"""Bad input gets a ValueError/TypeError naming the layer or argument, what was
expected and what was given; never a bare NumPy error. Messages are asserted."""

import types

import numpy as np
import pytest

import tinyalex
import tinyalex.nn.functional as F
from tinyalex import backend as B, nn

zeros = tinyalex.zeros


def _message_id(value):
    """Test ids from the expected messages (regex escapes dropped), else pytest's own."""
    return value.replace("\\", "")[:60] if isinstance(value, str) else None


@pytest.fixture(scope="module")
def alexnet():
    return tinyalex.models.alexnet()


# -- through d2l's networks: the layer is named by its place in the Sequential ----------

def test_wrong_number_of_channels(alexnet):
    with pytest.raises(ValueError, match=r"Conv2d layer '0': expected input with 1 channels "
                                         r"\(N, 1, H, W\), got shape \(1, 3, 224, 224\)"):
        alexnet(zeros(1, 3, 224, 224))


@pytest.mark.parametrize("size, match", [
    (32, r"MaxPool2d layer '5': input of size 2x2 \(padded to 2x2\) is smaller than the "
         r"kernel 3x3"),
    (100, r"Linear layer '14': expected input of shape \(N, 6400\), got \(1, 1024\)"),
])
def test_too_small_image(alexnet, size, match):
    with pytest.raises(ValueError, match=match):
        alexnet(zeros(1, 1, size, size))


def test_lenet_wrong_image_size_names_the_linear_layer():
    with pytest.raises(ValueError, match=r"Linear layer '7': expected input of shape "
                                         r"\(N, 400\), got \(1, 576\)"):
        tinyalex.models.lenet()(zeros(1, 1, 32, 32))


def test_wrong_rank_and_empty_batch(alexnet):
    with pytest.raises(ValueError, match=r"Conv2d layer '0': expected a 4-D input "
                                         r"\(N, C, H, W\), got shape \(1, 224, 224\)"):
        alexnet(zeros(1, 224, 224))
    with pytest.raises(ValueError, match=r"Conv2d layer '0': input has an empty dimension, "
                                         r"shape \(0, 1, 224, 224\)"):
        alexnet(zeros(0, 1, 224, 224))


def test_float64_input_into_a_float32_network(alexnet):
    with pytest.raises(TypeError, match=r"Conv2d layer '0': floating inputs have different "
                                        r"dtypes \(input 0: float64, input 1: float32"):
        alexnet(zeros(1, 1, 224, 224, dtype=np.float64))


# -- layer and op arguments -----------------------------------------------------------

@pytest.mark.parametrize("make, error, match", [
    (lambda: nn.Conv2d(1, 1, 3, stride=0), ValueError, r"Conv2d: stride must be >= 1, got 0"),
    (lambda: nn.Conv2d(1, 1, 3, padding=-1), ValueError,
     r"Conv2d: padding must be >= 0, got -1"),
    (lambda: nn.Conv2d(1, 1, 0), ValueError, r"Conv2d: kernel_size must be >= 1, got 0"),
    (lambda: nn.Conv2d(1, 1, 2.5), TypeError,
     r"Conv2d: kernel_size must be an int or a pair of ints, got 2.5 \(float\)"),
    (lambda: nn.Conv2d(1, 1, (1, 2, 3)), ValueError,
     r"Conv2d: kernel_size must be an int or a pair of ints, got 3 values \(1, 2, 3\)"),
    (lambda: nn.Conv2d(1, 0, 3), ValueError, r"Conv2d: out_channels must be a positive int, got 0"),
    (lambda: nn.Linear(0, 2), ValueError, r"Linear: in_features must be a positive int, got 0"),
    (lambda: nn.MaxPool2d(2, stride=0), ValueError, r"MaxPool2d: stride must be >= 1, got 0"),
    (lambda: nn.AvgPool2d(2, padding=-1), ValueError, r"AvgPool2d: padding must be >= 0, got -1"),
    (lambda: nn.MaxPool2d(2, padding=2), ValueError,
     r"MaxPool2d: padding \(2, 2\) must be at most half of kernel_size \(2, 2\)"),
    (lambda: nn.Dropout(1.5), ValueError,
     r"Dropout: p must be a probability between 0 and 1, got 1.5"),
    (lambda: nn.Sequential(nn.ReLU(), lambda x: x), TypeError,
     r"Sequential: item '1' is a function, not a Module"),
], ids=_message_id)
def test_bad_layer_arguments(make, error, match):
    with pytest.raises(error, match=match):
        make()


@pytest.mark.parametrize("call, error, match", [
    (lambda: F.conv2d(zeros(1, 1, 4, 4), zeros(1, 1, 3, 3), stride=0), ValueError,
     r"conv2d: stride must be >= 1, got 0"),
    (lambda: F.conv2d(zeros(1, 1, 4, 4), zeros(1, 1, 3, 3), padding=(1, -1)), ValueError,
     r"conv2d: padding must be >= 0, got \(1, -1\)"),
    (lambda: F.conv2d(zeros(1, 1, 4, 4), zeros(1, 3, 3)), ValueError,
     r"conv2d weight: expected a 4-D input \(OC, C, KH, KW\), got shape \(1, 3, 3\)"),
    (lambda: F.conv2d(zeros(1, 1, 4, 4), zeros(2, 1, 3, 3), zeros(3)), ValueError,
     r"conv2d: bias must have shape \(2,\), got \(3,\)"),
    (lambda: F.conv2d(zeros(1, 1, 2, 5), zeros(1, 1, 3, 3)), ValueError,
     r"conv2d: input of size 2x5 \(padded to 2x5\) is smaller than the kernel 3x3"),
    (lambda: F.conv2d(zeros(1, 1, 1, 4, 4), zeros(1, 1, 3, 3)), ValueError,
     r"conv2d: expected a 4-D input \(N, C, H, W\), got shape \(1, 1, 1, 4, 4\)"),
    (lambda: F.conv2d(tinyalex.tensor(np.zeros((1, 1, 4, 4), int)), zeros(1, 1, 3, 3)),
     TypeError, r"conv2d: input must be floating point \(float32 or float64\), got dtype int64"),
    (lambda: F.max_pool2d(zeros(1, 4, 4), 2), ValueError,
     r"max_pool2d: expected a 4-D input \(N, C, H, W\), got shape \(1, 4, 4\)"),
    (lambda: F.avg_pool2d(zeros(0, 1, 4, 4), 2), ValueError,
     r"avg_pool2d: input has an empty dimension, shape \(0, 1, 4, 4\)"),
    (lambda: F.avg_pool2d(zeros(1, 1, 4, 4), 5), ValueError,
     r"avg_pool2d: input of size 4x4 \(padded to 4x4\) is smaller than the kernel 5x5"),
    (lambda: F.max_pool2d(zeros(1, 1, 4, 4), 2, stride=(1, 0)), ValueError,
     r"max_pool2d: stride must be >= 1, got \(1, 0\)"),
    (lambda: F.linear(zeros(3, 5), zeros(2, 4)), ValueError,
     r"linear: expected input of shape \(N, 4\), got \(3, 5\)"),
    (lambda: F.linear(zeros(0, 4), zeros(2, 4)), ValueError,
     r"linear: empty batch, input shape \(0, 4\)"),
    (lambda: F.linear(zeros(1, 4), zeros(2, 4), zeros(3)), ValueError,
     r"linear: bias must have shape \(2,\), got \(3,\)"),
    (lambda: F.linear(zeros(1, 4), tinyalex.tensor(np.zeros((2, 4), int))), TypeError,
     r"linear: weight must be floating point \(float32 or float64\), got dtype int64"),
    (lambda: F.flatten(zeros(2, 3), 3), ValueError,
     r"flatten: start_dim=3, end_dim=-1 out of range for a 2-D input of shape \(2, 3\)"),
    (lambda: F.flatten(zeros(2, 3, 4), 2, 1), ValueError,
     r"flatten: start_dim=2, end_dim=1 do not select a range"),
    (lambda: F.relu(tinyalex.tensor([1, 2])), TypeError,
     r"relu: input must be floating point \(float32 or float64\), got dtype int64"),
    (lambda: F.sigmoid(tinyalex.tensor([1, 2])), TypeError,
     r"sigmoid: input must be floating point"),
    (lambda: F.dropout(zeros(2), -0.1), ValueError,
     r"dropout: p must be a probability between 0 and 1, got -0.1"),
], ids=_message_id)
def test_bad_op_arguments(call, error, match):
    with pytest.raises(error, match=match):
        call()


def test_dropout_on_integers_is_named():
    with pytest.raises(TypeError, match=r"dropout: input must be floating point"):
        F.dropout(tinyalex.tensor([1, 2]), 0.5)


def test_conv2d_integer_weight_is_refused():
    with pytest.raises(TypeError, match=r"conv2d: weight must be floating point"):
        F.conv2d(zeros(1, 1, 4, 4), tinyalex.tensor(np.zeros((1, 1, 3, 3), int)))


# -- labels ---------------------------------------------------------------------------

@pytest.mark.parametrize("target, error, match", [
    ([0, 3], ValueError, r"labels must lie in \[0, 2\] for 3 classes, got values from 0 to 3"),
    ([-1, 0], ValueError, r"labels must lie in \[0, 2\] for 3 classes, got values from -1 to 0"),
    ([0.0, 1.0], TypeError, r"target must hold integer class labels, got dtype float"),
    (np.array([0.5, 1.0]), TypeError, r"target must hold integer class labels, got dtype float64"),
    ([True, False], TypeError, r"target must hold integer class labels, got dtype bool"),
    ([0, 1, 2], ValueError, r"target must have shape \(2,\) to match logits \(2, 3\), got \(3,\)"),
    ([[0], [1]], ValueError, r"target must have shape \(2,\) to match logits \(2, 3\), got \(2, 1\)"),
])
def test_bad_labels(target, error, match):
    with pytest.raises(error, match="cross_entropy: " + match):
        F.cross_entropy(zeros(2, 3), target)


def test_bad_logits():
    with pytest.raises(ValueError, match=r"cross_entropy: logits must be 2-D \(N, classes\), "
                                         r"got shape \(3,\)"):
        F.cross_entropy(zeros(3), [0])
    with pytest.raises(ValueError, match=r"cross_entropy: empty batch"):
        F.cross_entropy(zeros(0, 3), np.zeros(0, int))


# -- dtypes and backends --------------------------------------------------------------

def test_mixing_float32_and_float64_is_a_type_error():
    with pytest.raises(TypeError, match=r"Add: floating inputs have different dtypes "
                                        r"\(input 0: float32, input 1: float64\); convert "
                                        r"with .float\(\) or .double\(\)"):
        zeros(2) + zeros(2, dtype=np.float64)
    with pytest.raises(TypeError, match=r"linear: floating inputs have different dtypes"):
        F.linear(zeros(1, 2, dtype=np.float64), zeros(3, 2))


def test_backend_mismatch_check_names_every_input():
    """Function._check_inputs, the one place that refuses mixed backends, on stand-in
    inputs that report different backends (a real mix needs CuPy: see the next test)."""
    fake = [types.SimpleNamespace(backend="numpy", dtype=np.dtype(np.float32)),
            types.SimpleNamespace(backend="cupy", dtype=np.dtype(np.float32))]
    op = nn.Conv2d(1, 1, 1)
    nn.Sequential(op)                                # gives it the name "Conv2d layer '0'"
    from tinyalex.ops.conv import Conv2d as ConvOp
    with pytest.raises(TypeError, match=r"Conv2d layer '0': inputs live on different backends "
                                        r"\(input 0: numpy, input 1: cupy\); move them to one "
                                        r"backend"):
        ConvOp(where=op.where)._check_inputs(fake)
    with pytest.raises(TypeError, match=r"arrays live on different backends \['cupy', 'numpy'\]"):
        B.get_array_module(np.zeros(1), type("ndarray", (), {"__module__": "cupy"})())


@pytest.mark.skipif(not B.cupy_available(),
                    reason=f"needs a usable cupy backend: {B.cupy_unavailable_reason()}")
def test_mixing_backends_for_real():
    x = zeros(1, 1, 4, 4)
    layer = nn.Conv2d(1, 1, 3).to("cupy")
    with pytest.raises(TypeError, match=r"Conv2d: inputs live on different backends "
                                        r"\(input 0: numpy, input 1: cupy"):
        layer(x)


@pytest.mark.skipif(B.cupy_available(), reason="cupy is usable here: no error to see")
def test_asking_for_cupy_without_it_says_what_to_install():
    with pytest.raises(RuntimeError, match=r"the 'cupy' backend needs CuPy and a CUDA GPU.*"
                                           r"pip install -e '\.\[cuda13\]'. in the "
                                           r"tinyalex checkout"):
        zeros(2).to("cupy")


@pytest.mark.parametrize("call", [lambda: zeros(2).to("gpu"),
                                  lambda: nn.Linear(1, 1).to("gpu"),
                                  lambda: zeros(2, backend="gpu")])
def test_unknown_backend_name(call):
    with pytest.raises(ValueError, match=r"unknown backend 'gpu'; expected one of "
                                         r"\('numpy', 'cupy'\)"):
        call()


# -- shapes of generic ops ------------------------------------------------------------

@pytest.mark.parametrize("call, error, match", [
    (lambda: zeros(2, 3) + zeros(4), ValueError,
     r"Add: shapes \(2, 3\) and \(4,\) cannot be broadcast together"),
    (lambda: zeros(2, 3) * zeros(3, 2), ValueError,
     r"Mul: shapes \(2, 3\) and \(3, 2\) cannot be broadcast together"),
    (lambda: zeros(2, 3) @ zeros(4, 2), ValueError,
     r"matmul: expected \(M, K\) @ \(K, N\), got \(2, 3\) @ \(4, 2\)"),
    (lambda: zeros(2, 3).reshape(4), ValueError,
     r"reshape: cannot view shape \(2, 3\) \(6 elements\) as \(4,\)"),
    (lambda: zeros(2, 3).sum(axis=2), IndexError,
     r"Dimension out of range \(expected to be in range of \[-2, 1\], but got 2\) for a "
     r"tensor of shape \(2, 3\)"),
    (lambda: zeros(2, 3)[5], IndexError,
     r"index 5 into a tensor of shape \(2, 3\)"),
    (lambda: zeros(3).item(), ValueError,
     r"item\(\) needs a tensor with one element, got shape \(3,\)"),
    (lambda: tinyalex.manual_seed(-1), ValueError,
     r"manual_seed: seed must be a non-negative int, got -1"),
    (lambda: tinyalex.manual_seed(1.5), ValueError,
     r"manual_seed: seed must be a non-negative int, got 1.5"),
], ids=_message_id)
def test_bad_generic_op_arguments(call, error, match):
    with pytest.raises(error, match=match):
        call()
