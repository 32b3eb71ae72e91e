"""Bad arguments everywhere a user can reach, drawn by hypothesis: every public layer
(constructor and forward), nn.functional op, optim.SGD, tinyalex.tensor and friends,
summary, the data loader's functions, the checkpoint functions and the training
scripts' flags. Each bad value must raise ValueError or TypeError with a message
that names the place (never IndexError, ZeroDivisionError, MemoryError, a Numba
error or a traceback from inside NumPy), under both kernel modes, and before any
compiled loop runs. The other scripts (examples/evaluate.py, visualize.py,
compare.py, main.py) must answer a bad path, flag or number with exit status 2 and
a message naming it, never a traceback.

tests/reliability/test_bad_input.py holds ~50 hand-picked cases with their exact messages; this
file sweeps the space around them. The last part runs the compiled loops themselves
as Python on arrays that refuse any index out of their bounds, over random
geometries the checks let through, to show that no loop reads or writes outside its
arrays (Numba's compiled code does not check).
"""

import importlib
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import assume, given, settings, strategies as st
from hypothesis import example as hypothesis_example

import tinyalex
import tinyalex.kernels as kernels
import tinyalex.nn.functional as F
from helpers.reliability import ROOT, tiny_dataset
from helpers.tensor_api_errors import TENSOR_API_ERRORS
from tinyalex import checkpoint as C
from tinyalex import cli, data, nn, optim, recipes

OK_ERRORS = (ValueError, TypeError)
MODES = ["reference", "fast"]


def loop_modules():
    """The CPU set's modules of compiled loops: kernels/numba_*.py."""
    import pkgutil
    return sorted(m.name for m in pkgutil.iter_modules(kernels.__path__)
                  if m.name.startswith("numba_"))


def compiled_loops():
    """(module, name, dispatcher) for every Numba-compiled function of the CPU set
    (looked up by the wrappers as module attributes at call time, so replacing the
    attribute replaces the loop they call)."""
    for mod_name in loop_modules():
        mod = importlib.import_module(f"tinyalex.kernels.{mod_name}")
        for name, obj in sorted(vars(mod).items()):
            if hasattr(obj, "py_func") and hasattr(obj, "signatures"):
                yield mod, name, obj


@pytest.fixture
def loop_calls(monkeypatch):
    """Counts calls of the compiled loops (which still run compiled)."""
    calls = []
    for mod, name, fn in compiled_loops():
        def counted(*args, _fn=fn, _name=name):
            calls.append(_name)
            return _fn(*args)
        monkeypatch.setattr(mod, name, counted)
    return calls


def refused(call, where=None, loop_calls=None):
    """``call()`` must raise ValueError/TypeError with a message (naming ``where``),
    before any compiled loop ran."""
    before = len(loop_calls) if loop_calls is not None else 0
    with pytest.raises(OK_ERRORS) as err:
        call()
    msg = str(err.value)
    assert msg and len(msg) > 15, f"uninformative message {msg!r}"
    if where is not None:
        assert where in msg, f"{where!r} not named in {msg!r}"
    if loop_calls is not None:
        assert len(loop_calls) == before, f"compiled loops ran first: {loop_calls[before:]}"
    return msg


# -------------------------------------------------------------------------- values

not_int = st.sampled_from([1.5, "3", None, [1, 2, 3], (1,), object(), float("nan"), 2.0])
bools = st.sampled_from([True, False, np.bool_(True)])
nonpositive = st.integers(-10**12, 0)
negative = st.integers(-10**12, -1)
too_big = st.sampled_from([2**31, 2**40, 10**30])
bad_float = st.sampled_from([float("nan"), float("inf"), float("-inf"), -1.0, -1e-9, "0.1",
                             None, True, [0.1]])


def bad_positive():          # for sizes that must be >= 1
    return st.one_of(nonpositive, bools, not_int, too_big)


def bad_nonnegative():       # for padding, >= 0
    return st.one_of(negative, bools, not_int, too_big)


# -------------------------------------------------------------------------- constructors

@settings(max_examples=60, deadline=None)
@given(arg=st.sampled_from(["in_channels", "out_channels", "kernel_size", "stride",
                            "padding", "bias"]), data_=st.data())
def test_conv2d_constructor(arg, data_):
    kwargs = dict(in_channels=1, out_channels=2, kernel_size=3, stride=1, padding=0,
                  bias=True)
    bad = {"padding": bad_nonnegative(), "bias": st.sampled_from([1, "yes", None, 0.5])}
    value = data_.draw(bad.get(arg, bad_positive()) | (st.tuples(st.just(1), negative)
                                                       if arg != "bias" else st.nothing()))
    kwargs[arg] = value
    refused(lambda: nn.Conv2d(**kwargs), "Conv2d")


@settings(max_examples=30, deadline=None)
@given(arg=st.sampled_from(["in_features", "out_features", "bias"]), data_=st.data())
def test_linear_constructor(arg, data_):
    kwargs = dict(in_features=3, out_features=2, bias=True)
    kwargs[arg] = data_.draw(st.sampled_from([1, "no", None]) if arg == "bias"
                             else bad_positive())
    refused(lambda: nn.Linear(**kwargs), "Linear")


def test_layers_too_big_for_memory_are_refused_before_allocation():
    for make, where in [(lambda: nn.Linear(10**7, 10**7), "Linear"),
                        (lambda: nn.Conv2d(10**4, 10**4, 1000), "Conv2d"),
                        (lambda: tinyalex.zeros(10**7, 10**7), "zeros")]:
        msg = refused(make, where)
        assert "more than this machine's" in msg


@settings(max_examples=60, deadline=None)
@given(cls=st.sampled_from([nn.MaxPool2d, nn.AvgPool2d]),
       arg=st.sampled_from(["kernel_size", "stride", "padding", "half"]), data_=st.data())
def test_pool_constructors(cls, arg, data_):
    kwargs = dict(kernel_size=3, stride=None, padding=0)
    if arg == "half":        # padding larger than half the kernel
        k = data_.draw(st.integers(1, 9))
        kwargs.update(kernel_size=k, padding=data_.draw(st.integers(k // 2 + 1, 3 * k)))
    elif arg == "padding":
        kwargs["padding"] = data_.draw(bad_nonnegative())
    else:                    # (stride=None is valid: it means the kernel size)
        kwargs[arg] = data_.draw(bad_positive().filter(lambda v: v is not None))
    refused(lambda: cls(**kwargs), cls.__name__)


@settings(max_examples=30, deadline=None)
@given(p=st.one_of(st.floats(1.0001, 1e9), st.floats(-1e9, -1e-9),
                   st.sampled_from([float("nan"), float("inf"), "0.5", None, True])))
def test_dropout_constructor_and_functional(p):
    refused(lambda: nn.Dropout(p), "Dropout")
    refused(lambda: F.dropout(tinyalex.zeros(2, 3), p), "dropout")


@settings(max_examples=30, deadline=None)
@given(start=st.one_of(st.integers(-50, 50), not_int, bools), end=st.integers(-50, 50))
def test_flatten(start, end):
    """Exactly PyTorch's valid (start, end) pairs flatten (dims in [-3, 3), start's
    dim <= end's) to the merged shape with the values in order; every other pair is
    refused naming flatten."""
    data = np.arange(24, dtype=np.float32).reshape(2, 3, 4)
    valid = isinstance(start, int) and not isinstance(start, bool) \
        and -3 <= start < 3 and -3 <= end < 3 and start % 3 <= end % 3
    try:
        y = F.flatten(tinyalex.tensor(data), start, end)
    except OK_ERRORS as exc:
        assert "flatten" in str(exc)
        assert not valid, f"flatten({start}, {end}) refused: {exc}"
    else:
        assert valid, f"flatten({start}, {end}) accepted"
        s, e = start % 3, end % 3
        shape = data.shape[:s] + (int(np.prod(data.shape[s:e + 1])),) + data.shape[e + 1:]
        assert y.shape == shape
        np.testing.assert_array_equal(y.numpy(), data.reshape(shape))


@settings(max_examples=40, deadline=None)
@given(arg=st.sampled_from(["params", "lr", "momentum", "weight_decay"]), data_=st.data())
def test_sgd(arg, data_):
    kwargs = dict(params=list(nn.Linear(2, 2).parameters()), lr=0.1, momentum=0.0,
                  weight_decay=0.0)
    if arg == "params":
        kwargs["params"] = data_.draw(st.sampled_from(
            [None, 5, [], [np.zeros(2)], [tinyalex.zeros(2)], tinyalex.zeros(2, requires_grad=True)]))
    else:
        kwargs[arg] = data_.draw(bad_float | (st.just(0.0) if arg == "lr" else st.nothing()))
    refused(lambda: optim.SGD(**kwargs), "SGD")


# -------------------------------------------------------------------------- forwards

def shapes(max_rank=6):
    return st.lists(st.integers(0, 6), min_size=0, max_size=max_rank).map(tuple)


def bad_image_batch(channels, min_side):
    """Shapes a layer expecting (N, channels, >=min_side, >=min_side) must refuse."""
    return st.one_of(
        shapes().filter(lambda s: len(s) != 4),                              # wrong rank
        st.tuples(st.integers(0, 2), st.integers(0, 4), st.integers(0, 8),
                  st.integers(0, 8)).filter(
            lambda s: 0 in s or s[1] != channels or min(s[2:]) < min_side))


@pytest.mark.parametrize("mode", MODES)
@settings(max_examples=40, deadline=None)
@given(shape=bad_image_batch(2, 3), dtype=st.sampled_from([np.float32, np.float64,
                                                            np.int64, np.bool_]))
def test_conv2d_forward_bad_inputs(mode, loop_calls, shape, dtype):
    layer = nn.Conv2d(2, 3, 3)
    x = tinyalex.tensor(np.zeros(shape, dtype=dtype))
    with kernels.use(mode):
        refused(lambda: layer(x), "Conv2d", loop_calls)


@pytest.mark.parametrize("mode", MODES)
@settings(max_examples=40, deadline=None)
@given(shape=bad_image_batch(1, 3), cls=st.sampled_from([nn.MaxPool2d, nn.AvgPool2d]))
def test_pool_forward_bad_inputs(mode, loop_calls, shape, cls):
    assume(len(shape) != 4 or 0 in shape or min(shape[2:]) < 3)   # pools take any C
    layer = cls(3, stride=2, padding=1)      # padded by 1: needs a side of at least 1
    assume(len(shape) != 4 or 0 in shape or min(shape[2:]) + 2 < 3)
    x = tinyalex.tensor(np.zeros(shape, dtype=np.float32))
    with kernels.use(mode):
        refused(lambda: layer(x), cls.__name__, loop_calls)


@pytest.mark.parametrize("mode", MODES)
@settings(max_examples=40, deadline=None)
@given(case=st.sampled_from(["weight rank", "bias shape", "dtype mix", "int weight",
                             "stride 0", "padding -1", "stride float", "huge padding",
                             "huge stride", "kernel over image", "channels"]))
def test_functional_conv2d_bad_arguments(mode, loop_calls, case):
    x, w, b = tinyalex.zeros(1, 2, 5, 5), tinyalex.zeros(3, 2, 3, 3), tinyalex.zeros(3)
    kw = {}
    if case == "weight rank":
        w = tinyalex.zeros(3, 2, 3)
    elif case == "bias shape":
        b = tinyalex.zeros(4)
    elif case == "dtype mix":
        x = tinyalex.zeros(1, 2, 5, 5, dtype=np.float64)
    elif case == "int weight":
        w = tinyalex.tensor(np.zeros((3, 2, 3, 3), int))
    elif case == "stride 0":
        kw["stride"] = 0
    elif case == "padding -1":
        kw["padding"] = (0, -1)
    elif case == "stride float":
        kw["stride"] = 1.5
    elif case == "huge padding":
        kw["padding"] = 10**6
    elif case == "huge stride":
        kw["stride"] = 10**30
    elif case == "kernel over image":
        w = tinyalex.zeros(3, 2, 6, 6)
    elif case == "channels":
        x = tinyalex.zeros(1, 3, 5, 5)
    with kernels.use(mode):
        refused(lambda: F.conv2d(x, w, b, **kw), "conv2d", loop_calls)


@pytest.mark.parametrize("mode", MODES)
@settings(max_examples=40, deadline=None)
@given(fn=st.sampled_from([F.max_pool2d, F.avg_pool2d]), k=st.integers(1, 5),
       case=st.sampled_from(["padding over half", "stride 0", "kernel 0", "rank",
                             "int input", "huge kernel", "bool kernel"]))
def test_functional_pool_bad_arguments(mode, loop_calls, fn, k, case):
    x, kw = tinyalex.zeros(1, 2, 6, 6), dict(kernel_size=k)
    if case == "padding over half":
        kw["padding"] = k // 2 + 1
    elif case == "stride 0":
        kw["stride"] = (1, 0)
    elif case == "kernel 0":
        kw["kernel_size"] = (k, 0)
    elif case == "rank":
        x = tinyalex.zeros(2, 6, 6)
    elif case == "int input":
        x = tinyalex.tensor(np.zeros((1, 2, 6, 6), np.int32))
    elif case == "huge kernel":          # (with padding 10**6 it would be valid)
        kw.update(kernel_size=2 * 10**6)
    elif case == "bool kernel":
        kw["kernel_size"] = True
    with kernels.use(mode):
        refused(lambda: fn(x, **kw), fn.__name__, loop_calls)


@pytest.mark.parametrize("mode", MODES)
@settings(max_examples=40, deadline=None)
@given(target=st.one_of(
    st.lists(st.floats(0, 2, allow_nan=False), min_size=3, max_size=3).map(
        lambda v: np.array(v, np.float64)),                                 # non-integer
    st.lists(st.integers(-5, 7), min_size=3, max_size=3).filter(
        lambda v: min(v) < 0 or max(v) > 3).map(np.array),                   # out of range
    st.lists(st.integers(0, 3), min_size=0, max_size=6).filter(
        lambda v: len(v) != 3).map(lambda v: np.array(v, np.int64)),        # wrong length
    st.sampled_from([np.array([[0], [1], [2]]), np.array([True, False, True]),
                     np.array(["a", "b", "c"]), None, 1.5])))
def test_cross_entropy_bad_labels(mode, target, loop_calls):
    logits = tinyalex.zeros(3, 4, requires_grad=True)
    with kernels.use(mode):
        refused(lambda: F.cross_entropy(logits, target), "cross_entropy", loop_calls)


@pytest.mark.parametrize("mode", MODES)
def test_empty_batches_everywhere(mode, loop_calls):
    with kernels.use(mode):
        for layer, shape in [(nn.Conv2d(1, 2, 3), (0, 1, 5, 5)), (nn.MaxPool2d(2), (0, 1, 4, 4)),
                             (nn.AvgPool2d(2), (0, 1, 4, 4)), (nn.Linear(4, 2), (0, 4))]:
            refused(lambda: layer(tinyalex.zeros(*shape)), type(layer).__name__, loop_calls)
        refused(lambda: F.cross_entropy(tinyalex.zeros(0, 3), np.zeros(0, np.int64)),
                "cross_entropy", loop_calls)
        refused(lambda: F.cross_entropy(tinyalex.zeros(2, 0), np.zeros(2, np.int64)),
                "cross_entropy", loop_calls)


@pytest.mark.parametrize("mode", MODES)
@settings(max_examples=30, deadline=None)
@given(case=st.sampled_from(["x rank", "x width", "w rank", "bias", "int x", "mixed",
                             "empty"]))
def test_linear_forward(mode, loop_calls, case):
    layer = nn.Linear(4, 2)
    x = {"x rank": tinyalex.zeros(4), "x width": tinyalex.zeros(3, 5),
         "int x": tinyalex.tensor(np.zeros((3, 4), int)),
         "mixed": tinyalex.zeros(3, 4, dtype=np.float64), "empty": tinyalex.zeros(0, 4)
         }.get(case, tinyalex.zeros(3, 4))
    with kernels.use(mode):
        if case == "w rank":
            refused(lambda: F.linear(x, tinyalex.zeros(2, 4, 1)), "linear", loop_calls)
        elif case == "bias":
            refused(lambda: F.linear(x, tinyalex.zeros(2, 4), tinyalex.zeros(5)), "linear",
                    loop_calls)
        else:
            refused(lambda: layer(x), "Linear", loop_calls)


@pytest.mark.parametrize("mode", MODES)
@settings(max_examples=20, deadline=None)
@given(fn=st.sampled_from([F.relu, F.sigmoid, lambda x: F.dropout(x, 0.5)]),
       dtype=st.sampled_from([np.int8, np.int64, np.uint8, np.bool_]))
def test_activations_refuse_non_floats(mode, loop_calls, fn, dtype):
    x = tinyalex.tensor(np.zeros((2, 3), dtype))
    with kernels.use(mode):
        refused(lambda: fn(x), None, loop_calls)


# -------------------------------------------------------------------------- tensors, summary

@settings(max_examples=40, deadline=None)
@given(value=st.sampled_from([[[1, 2], [3]], ["a", "b"], [None], {"a": 1}, [1 + 2j],
                              np.array([1, "x"], object), np.array(["s"])]),
       dtype=st.sampled_from([None, "float32", object, "not-a-dtype", str]))
def test_tensor_construction(value, dtype):
    refused(lambda: tinyalex.tensor(value, dtype=dtype))


@settings(max_examples=30, deadline=None)
@given(shape=st.one_of(st.tuples(st.integers(-5, -1)), st.tuples(st.just(2), st.floats()),
                       st.tuples(bools), st.tuples(st.just(10**8), st.just(10**8))),
       fn=st.sampled_from(["zeros", "ones", "rand", "randn"]))
def test_tensor_factories(shape, fn):
    refused(lambda: getattr(tinyalex, fn)(*shape), fn)


@settings(max_examples=30, deadline=None)
@given(case=st.sampled_from(["reshape -2", "reshape two -1", "reshape float", "axis float",
                             "axis twice", "axis range", "index float", "index str",
                             "astype object", "backward shape", "item"]))
def test_tensor_methods(case):
    t = tinyalex.zeros(2, 3, requires_grad=True)
    call = {"reshape -2": lambda: t.reshape(-2, 3), "reshape two -1": lambda: t.reshape(-1, -1),
            "reshape float": lambda: t.reshape(2.0, 3), "axis float": lambda: t.sum(axis=0.5),
            "axis twice": lambda: t.sum(axis=(1, -1)), "axis range": lambda: t.mean(axis=2),
            "index float": lambda: t[0.5], "index str": lambda: t["a"],
            "astype object": lambda: t.astype(object),
            "backward shape": lambda: (t * 2).backward(np.zeros(3)),
            "item": lambda: t.item()}[case]
    if case in ("axis twice", "axis range"):          # PyTorch's errors for a bad dim
        with pytest.raises(RuntimeError if case == "axis twice" else IndexError,
                           match=r"\(1, -1\)" if case == "axis twice" else r"\(2, 3\)"):
            call()
        return
    refused(call)


@settings(max_examples=30, deadline=None)
@given(shape=st.one_of(st.tuples(st.integers(-3, 0), st.just(1), st.just(28), st.just(28)),
                       st.tuples(st.just(1), st.just(1), st.floats(1.1, 30.9)
                                 .filter(lambda v: v != int(v)), st.just(28)),
                       st.tuples(bools, st.just(1), st.just(28), st.just(28)),
                       st.tuples(st.just(1), st.just(28), st.just(28)),
                       st.tuples(st.just(1), st.just(2), st.just(28), st.just(28)),
                       st.tuples(st.just(1), st.just(1), st.integers(1, 3), st.just(28)),
                       st.tuples(st.just(10**12), st.just(1), st.just(28), st.just(28)),
                       st.sampled_from(["abc", 5, None])))
def test_summary(shape, capsys):
    refused(lambda: tinyalex.summary(tinyalex.models.lenet(), shape), "summary")


# -------------------------------------------------------------------------- data loader

images = np.zeros((4, 28, 28), np.uint8)


@settings(max_examples=60, deadline=None)
@given(case=st.sampled_from(["to_input float", "to_input 2-D", "to_input empty",
                             "to_input list", "resize 0", "resize float", "resize huge",
                             "resize bool", "resize_bilinear 3-D", "resize_bilinear int",
                             "resize_bilinear size", "bilinear float", "bilinear huge",
                             "batches 0", "batches float", "batches mismatch",
                             "batches seed", "batches epoch", "order n", "order seed",
                             "augment pad", "augment huge pad", "augment flip",
                             "augment float images", "read_idx ndim", "read_idx path",
                             "data_dir int"]))
def test_data_functions(case):
    x4 = np.zeros((2, 1, 28, 28), np.float32)
    call = {
        "to_input float": lambda: data.to_input(images.astype(np.float32)),
        "to_input 2-D": lambda: data.to_input(images[0]),
        "to_input empty": lambda: data.to_input(images[:0], resize=56),
        "to_input list": lambda: data.to_input(images.tolist()),
        "resize 0": lambda: data.to_input(images, resize=0),
        "resize float": lambda: data.to_input(images, resize=56.5),
        "resize huge": lambda: data.to_input(images, resize=10**6),
        "resize bool": lambda: data.to_input(images, resize=True),
        "resize_bilinear 3-D": lambda: data.resize_bilinear(x4[0], 56),
        "resize_bilinear int": lambda: data.resize_bilinear(x4.astype(np.int32), 56),
        "resize_bilinear size": lambda: data.resize_bilinear(x4, (56, 56, 1)),
        "bilinear float": lambda: data.bilinear_matrix(28, 56.0),
        "bilinear huge": lambda: data.bilinear_matrix(28, 10**12),
        "batches 0": lambda: list(data.batches(images, np.zeros(4), 0)),
        "batches float": lambda: list(data.batches(images, np.zeros(4), 2.5)),
        "batches mismatch": lambda: list(data.batches(images, np.zeros(3), 2)),
        "batches seed": lambda: list(data.batches(images, np.zeros(4), 2, shuffle=True, seed=-1)),
        "batches epoch": lambda: list(data.batches(images, np.zeros(4), 2, shuffle=True,
                                                   epoch=1.5)),
        "order n": lambda: data.epoch_order(-1, 0, 0),
        "order seed": lambda: data.epoch_order(4, "0", 0),
        "augment pad": lambda: data.augment(images, 0, 0, 0, crop_padding=-1),
        "augment huge pad": lambda: data.augment(images, 0, 0, 0, crop_padding=10**6),
        "augment flip": lambda: data.augment(images, 0, 0, 0, flip="yes"),
        "augment float images": lambda: data.augment(images.astype(float), 0, 0, 0, flip=True),
        "read_idx ndim": lambda: data.read_idx("/etc/hostname", 0),
        "read_idx path": lambda: data.read_idx(None, 3),
        "data_dir int": lambda: data.load_fashion_mnist(5),
    }[case]
    refused(call)


# -------------------------------------------------------------------------- checkpoints

def test_checkpoint_functions(tmp_path):
    net = tinyalex.models.lenet()
    recipe = {"model": "lenet"}
    for call, where in [
        (lambda: C.save_checkpoint(tmp_path / "a.npz", 5, epoch=0, recipe=recipe), "model"),
        (lambda: C.save_checkpoint(tmp_path / "a.npz", net, 5, epoch=0, recipe=recipe),
         "optimizer"),
        (lambda: C.save_checkpoint(tmp_path / "a.npz", net, epoch=True, recipe=recipe), "epoch"),
        (lambda: C.save_checkpoint(tmp_path / "a.npz", net, epoch=0, recipe=[]), "recipe"),
        (lambda: C.save_checkpoint(tmp_path / "a.npz", net, epoch=0, recipe={"model": "x"}),
         "recipe"),
        (lambda: C.load_checkpoint(None), "path"),
        (lambda: C.load_checkpoint(3), "path"),
        (lambda: C.load_checkpoint(tmp_path), "is a folder"),
        (lambda: C.load_model(tmp_path / "none.npz", backend="gpu"), "backend"),
        (lambda: recipes.build_model("resnet"), "resnet"),
    ]:
        refused(call, where)
    assert not list(tmp_path.iterdir())
    with pytest.raises(FileNotFoundError, match="none.npz: no such file"):
        C.load_checkpoint(tmp_path / "none.npz")


# -------------------------------------------------------------------------- command line

INT_FLAGS = {"--epochs": 1, "--batch-size": 1, "--resize": 1, "--train-limit": 1,
             "--test-limit": 1, "--seed": 0, "--crop-padding": 0}
FLOAT_FLAGS = {"--lr": "positive", "--momentum": "non-negative",
               "--weight-decay": "non-negative"}


def bad_flag_values(flag):
    if flag in INT_FLAGS:
        low = INT_FLAGS[flag]
        values = st.one_of(st.integers(-10**6, low - 1).map(str),
                           st.sampled_from(["1.5", "abc", "", "nan", "0x10", "1e3"]))
        if flag == "--resize":
            values |= st.integers(2049, 10**9).map(str)
        if flag == "--crop-padding":
            values |= st.integers(29, 10**9).map(str)
        return values
    values = st.sampled_from(["nan", "inf", "-inf", "-1", "-1e-9", "abc", ""])
    return values | st.just("0") if FLOAT_FLAGS[flag] == "positive" else values


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory):
    return tiny_dataset(tmp_path_factory.mktemp("tiny"), n_train=16, n_test=8)


@settings(max_examples=60, deadline=None)
@given(flag=st.sampled_from(sorted(INT_FLAGS) + sorted(FLOAT_FLAGS)), data_=st.data(),
       model=st.sampled_from(["lenet", "alexnet"]))
def test_training_script_flags(flag, data_, model, tiny_data, tmp_path, capsys):
    """A bad flag value: argparse's usage error (exit 2) or our "error: ..." (exit 2)
    naming the flag or recipe key; no traceback, no training, no checkpoint."""
    value = data_.draw(bad_flag_values(flag))
    out = tmp_path / "run"
    argv = ["--backend", "numpy", "--data-dir", str(tiny_data), "--out", str(out),
            "--no-progress", "--overwrite", f"{flag}={value}"]
    try:
        rc = cli.main(model, argv)
    except SystemExit as exc:              # argparse: not a number of the flag's type
        rc = exc.code
    err = capsys.readouterr().err
    assert rc == 2, (model, flag, value, err)
    assert "Traceback" not in err and "error" in err
    key = flag[2:].replace("-", "_")
    assert flag in err or key in err, err
    assert not (out / "checkpoint.npz").exists()


# -------------------------------------------------------------------------- the other scripts

def example(name):
    """examples/<name>.py as a module, to call its main(argv)."""
    spec = importlib.util.spec_from_file_location(f"example_{name}",
                                                  ROOT / "examples" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


SCRIPTS = {name: example(name) for name in ("evaluate", "visualize", "compare", "main",
                                            "shapes", "explain_conv")}


def script_status(name, argv, capsys):
    """examples/<name>.py's exit status and stderr for ``argv``; any exception other
    than argparse's SystemExit escapes (it would be a traceback for the user)."""
    try:
        rc = SCRIPTS[name].main(argv)
    except SystemExit as exc:              # argparse: usage error
        rc = exc.code
    return rc, capsys.readouterr().err


def assert_refused(name, argv, names, capsys):
    rc, err = script_status(name, argv, capsys)
    assert rc == 2, (name, argv, rc, err)
    assert "error" in err and "Traceback" not in err, err
    assert any(n in err for n in names), (names, err)


@pytest.fixture(scope="module")
def study(tmp_path_factory, tiny_data):
    """A trained LeNet run folder (checkpoint.npz, metrics.json), a plain file, a
    folder with no run, and run folders whose metrics.json is broken in one way each."""
    d = tmp_path_factory.mktemp("study")
    from tinyalex import train
    train.fit({"model": "lenet", "epochs": 1, "batch_size": 8}, data.load_fashion_mnist(tiny_data),
              out_dir=d / "run", log=lambda s: None)
    (d / "file.txt").write_text("not a checkpoint, not a folder\n")
    (d / "empty").mkdir()
    good = json.loads((d / "run" / "metrics.json").read_text())
    record = good["epochs"][0]
    broken = {"not json": "{", "a list": "[1, 2]",
              "no recipe": json.dumps(dict(good, recipe=None)),
              "bad resize": json.dumps(dict(good, recipe=dict(good["recipe"], resize="abc"))),
              "no epochs": json.dumps(dict(good, epochs=[])),
              "record not an object": json.dumps(dict(good, epochs=[5])),
              "loss a string": json.dumps(dict(good, epochs=[dict(record, loss="low")])),
              "record lacks test_acc": json.dumps(dict(good, epochs=[
                  {k: v for k, v in record.items() if k != "test_acc"}]))}
    for i, text in enumerate(broken.values()):
        (d / f"broken{i}").mkdir()
        (d / f"broken{i}" / "metrics.json").write_text(text)
    bad_data = d / "bad_data"
    bad_data.mkdir()
    for f in tiny_data.iterdir():
        (bad_data / f.name).write_bytes(f.read_bytes()[:-5])          # each cut short
    return {"ck": str(d / "run" / "checkpoint.npz"), "run": str(d / "run"),
            "file": str(d / "file.txt"), "empty": str(d / "empty"), "dir": str(d),
            "missing": str(d / "missing"), "data": str(tiny_data), "bad_data": str(bad_data),
            "out": str(d / "out"), "broken": [str(d / f"broken{i}") for i in range(len(broken))]}


# (script, argv, what the message must name); {key} is study[key]
PATH_CASES = [
    ("evaluate", ["{missing}"], ["{missing}"]),
    ("evaluate", ["{dir}"], ["{dir}"]),
    ("evaluate", ["{file}"], ["{file}"]),
    ("evaluate", ["{ck}", "--data-dir", "{missing}"], ["{missing}"]),
    ("evaluate", ["{ck}", "--data-dir", "{bad_data}"], ["{bad_data}"]),
    ("evaluate", ["{ck}", "--data-dir", "{data}", "--confusion", "{dir}"], ["{dir}"]),
    ("evaluate", ["{ck}", "--backend", "gpu"], ["--backend"]),
    ("evaluate", [], ["checkpoint"]),
    ("visualize", ["{missing}"], ["{missing}"]),
    ("visualize", ["{file}"], ["{file}"]),
    ("visualize", ["{ck}", "{ck}", "{ck}"], ["two checkpoints"]),
    ("visualize", ["{ck}", "{ck}", "--before-init"], ["--before-init"]),
    ("visualize", ["{ck}", "--data-dir", "{missing}", "--out", "{out}"], ["{missing}"]),
    ("visualize", ["{ck}", "--data-dir", "{bad_data}", "--out", "{out}"], ["{bad_data}"]),
    ("visualize", ["{ck}", "--data-dir", "{data}", "--out", "{file}"], ["{file}"]),
    ("compare", [], ["RUN"]),
    ("compare", ["{missing}"], ["{missing}"]),
    ("compare", ["{empty}"], ["{empty}"]),
    ("compare", ["{file}"], ["{file}"]),
    ("compare", ["{run}", "--out", "{file}"], ["{file}"]),
    ("main", ["--backend", "gpu"], ["--backend"]),
    ("main", ["--data-dir", "{missing}", "--out", "{out}"], ["{missing}"]),
    ("main", ["--data-dir", "{bad_data}", "--out", "{out}"], ["{bad_data}"]),
    ("main", ["--data-dir", "{data}", "--out", "{file}"], ["{file}"]),
    ("main", ["--epochs", "3"], ["--epochs"]),
    ("shapes", ["--batch", "0"], ["--batch"]),
    ("shapes", ["--lenet", "--batch", str(10**12)], ["--batch"]),     # no memory holds it
    ("shapes", ["--backend", "gpu"], ["--backend"]),
    ("explain_conv", ["--seed", "-1"], ["--seed"]),
    ("explain_conv", ["--seed", "abc"], ["--seed"]),
    ("explain_conv", ["--out", "{file}"], ["{file}"]),
]


@pytest.mark.parametrize("name,argv,names", PATH_CASES,
                         ids=[f"{n}-{i}" for i, (n, _, _) in enumerate(PATH_CASES)])
def test_the_other_scripts_refuse_bad_paths_and_flags(study, name, argv, names, capsys,
                                                      tmp_path, monkeypatch):
    """examples/evaluate.py, visualize.py, compare.py, main.py, shapes.py and
    explain_conv.py: a missing, wrong or damaged file or folder, a flag they do not take,
    a bad choice or number: exit 2 with the path or flag named, no traceback, nothing
    written where --out points."""
    monkeypatch.chdir(tmp_path)              # where defaults such as runs/ would go
    fill = lambda a: a.format(**study)       # noqa: E731
    assert_refused(name, [fill(a) for a in argv], [fill(n) for n in names], capsys)
    assert not (Path(study["out"]) / "lenet").exists() and os.listdir(tmp_path) == []


@pytest.mark.parametrize("i", range(8))
def test_compare_refuses_each_broken_metrics_file(study, i, capsys, tmp_path):
    broken = study["broken"][i]
    assert_refused("compare", [study["run"], broken, "--out", str(tmp_path / "cmp")],
                   [broken], capsys)
    assert not (tmp_path / "cmp").exists()


def bad_count(low, also):
    """Command-line text that is not an int >= low."""
    return st.one_of(st.integers(-10**6, low - 1).map(str), also,
                     st.sampled_from(["1.5", "abc", "", "nan", "0x10", "1e3", "-"]))


SCRIPT_FLAGS = {                           # (script, flag): the lowest good value
    ("evaluate", "--batch-size"): 1, ("evaluate", "--test-limit"): 1,
    ("visualize", "--index"): 0, ("visualize", "--channels"): 1,
}
TOO_HIGH = {("visualize", "--index"): st.integers(8, 10**9).map(str)}   # 8 test images


def numeric_flag_refused(study, case, value, capsys):
    import tempfile
    name, flag = case
    out = Path(tempfile.mkdtemp(dir=study["dir"])) / "pictures"       # a fresh one each time
    argv = {"evaluate": [study["ck"], "--data-dir", study["data"], "--confusion",
                         str(out / "cm.png")],
            "visualize": [study["ck"], "--data-dir", study["data"], "--out", str(out)]}[name]
    assert_refused(name, argv + [f"{flag}={value}"], [flag, flag[2:]], capsys)
    assert not out.exists()


@settings(max_examples=40, deadline=None)
@given(case=st.sampled_from(sorted(SCRIPT_FLAGS)), data_=st.data())
def test_the_other_scripts_numeric_flags(study, case, data_, capsys):
    """A bad number for each numeric flag of evaluate.py and visualize.py (main.py and
    compare.py take none): exit 2 naming the flag, before any picture is written."""
    value = data_.draw(bad_count(SCRIPT_FLAGS[case], TOO_HIGH.get(case, st.nothing())))
    numeric_flag_refused(study, case, value, capsys)


@pytest.mark.parametrize("case", sorted(SCRIPT_FLAGS), ids=" ".join)
def test_the_other_scripts_numeric_flags_one_below_the_lowest(study, case, capsys):
    numeric_flag_refused(study, case, str(SCRIPT_FLAGS[case] - 1), capsys)


def test_the_other_scripts_as_commands(study, tmp_path):
    """The same through ``python examples/<name>.py``: exit status 2, a one-line
    error, no traceback."""
    for name, argv in [("evaluate", [study["missing"]]),
                       ("visualize", [study["ck"], "--channels", "0"]),
                       ("compare", [study["broken"][5]]),
                       ("main", ["--data-dir", study["missing"]])]:
        proc = subprocess.run([sys.executable, str(ROOT / "examples" / f"{name}.py"), *argv],
                              capture_output=True, text=True, timeout=120, cwd=tmp_path)
        assert proc.returncode == 2, (name, proc.stderr)
        assert "error" in proc.stderr and "Traceback" not in proc.stderr, proc.stderr


# -------------------------------------------------------------------------- compiled loops

class OutOfBounds(AssertionError):
    pass


class Guarded(np.ndarray):
    """An array that refuses an integer index outside its shape, negative ones
    included: Numba's compiled code would read or write memory there unchecked (or
    wrap around)."""

    def _check(self, index):
        idx = index if isinstance(index, tuple) else (index,)
        for d, i in enumerate(idx):
            if isinstance(i, (int, np.integer)) and not isinstance(i, bool) \
                    and d < self.ndim and not 0 <= i < self.shape[d]:
                raise OutOfBounds(f"index {index!r} outside shape {self.shape}")

    def __getitem__(self, index):
        self._check(index)
        return super().__getitem__(index)

    def __setitem__(self, index, value):
        self._check(index)
        super().__setitem__(index, value)


@pytest.fixture
def guarded_loops(monkeypatch):
    """Every compiled loop replaced by its Python source run on Guarded views."""
    ran = []
    for mod, name, fn in compiled_loops():
        def python(*args, _py=fn.py_func, _name=f"{mod.__name__.rpartition('.')[2]}.{name}"):
            ran.append(_name)
            with np.errstate(over="ignore"):
                return _py(*(a.view(Guarded) if type(a) is np.ndarray else a for a in args))
        monkeypatch.setattr(mod, name, python)
    return ran


def host(t):
    return None if t is None else np.asarray(t.numpy(), dtype=np.float64)


def loops_run(ran) -> set:
    """The loops a sweep ran, without the inlined helpers (``_plan``, ``_bt``, ...)."""
    return {name for name in ran if not name.rpartition(".")[2].startswith("_")}


def conv_pass(mode, x, w, b, stride, padding, gy, groups=1):
    with kernels.use(mode):
        xs, ws, bs = (tinyalex.tensor(a, requires_grad=True) for a in (x, w, b))
        y = F.conv2d(xs, ws, bs, stride=stride, padding=padding, groups=groups)
        y.backward(gy)
        return host(y), host(xs.grad), host(ws.grad), host(bs.grad)


geometry = st.fixed_dictionaries({
    "N": st.integers(1, 2), "C": st.integers(1, 5), "OC": st.integers(1, 3),
    "H": st.integers(1, 7), "W": st.integers(1, 7), "KH": st.integers(1, 4),
    "KW": st.integers(1, 4), "SH": st.integers(1, 3), "SW": st.integers(1, 3),
    "PH": st.integers(0, 3), "PW": st.integers(0, 3)})


# The loops each fast convolution path must run, forward and both gradients (the
# Winograd loops call their shared 6x6 input transform, which is run guarded too, and
# the 3x3 sets share the filter transform's loops).
WINOGRAD_FILTER = {"numba_winograd_filter.filter_transform",
                   "numba_winograd_filter.filter_gradient"}
CONV_PATHS = {
    "im2col": {"numba_im2col.im2col", "numba_im2col.col2im"},
    "im2col transposed": {"numba_im2col.im2col_t", "numba_im2col.col2im"},
    "im2col channels-last": {"numba_im2col.im2col_nhwc", "numba_im2col.col2im_nhwc"},
    "grouped": {"numba_im2col.im2col_grouped_nhwc", "numba_im2col.col2im_grouped_nhwc"},
    "direct": {"numba_direct.forward", "numba_direct.weight_gradient",
               "numba_direct.input_gradient"},
    "winograd F(4,3)": {"numba_winograd_f43.input_transform",
                        "numba_winograd_f43.input_transform6",
                        "numba_winograd_f43.output_transform",
                        "numba_winograd_f43.grad_output_transform",
                        "numba_winograd_f43.input_gradient_transform",
                        "numba_winograd_f43.input_gradient_transform6"} | WINOGRAD_FILTER,
    "winograd F(2,5)": {"numba_winograd_f25.input_transform",
                        "numba_winograd_f25.input_transform6",
                        "numba_winograd_f25.output_transform",
                        "numba_winograd_f25.grad_output_transform",
                        "numba_winograd_f25.input_gradient_transform",
                        "numba_winograd_f25.input_gradient_transform6"},
    "winograd F(6,3)": {"numba_winograd_f63.input_transform",
                        "numba_winograd_f63.input_transform8",
                        "numba_winograd_f63.output_transform",
                        "numba_winograd_f63.grad_output_transform",
                        "numba_winograd_f63.input_gradient_transform",
                        "numba_winograd_f63.input_gradient_transform8"} | WINOGRAD_FILTER,
    "winograd F(4,5)": {"numba_winograd_f45.input_transform",
                        "numba_winograd_f45.output_transform",
                        "numba_winograd_f45.grad_output_transform",
                        "numba_winograd_f45.input_gradient_transform",
                        "numba_winograd_f45.input_transform8",
                        "numba_winograd_f45.input_gradient_transform8"},
    "winograd F(3,5)": {"numba_winograd_f35.input_transform",
                        "numba_winograd_f35.output_transform",
                        "numba_winograd_f35.grad_output_transform",
                        "numba_winograd_f35.input_gradient_transform"},
}


def force_path(path, g, monkeypatch):
    """Change the geometry ``g`` (and the choosers' thresholds) so that the convolution
    takes ``path``; returns the (possibly changed) geometry."""
    from tinyalex.kernels import conv_direct_cpu, conv_im2col_cpu, conv_pointwise, \
        conv_winograd_cpu
    g = dict(g)
    # a 1x1 kernel without padding is one GEMM (no loop of these to sweep): declined here
    monkeypatch.setattr(conv_pointwise.POINTWISE_1X1, "takes", lambda g: False)
    if path == "grouped":
        # two groups of C channels each (C in, OC out a group), any window, stride,
        # padding; the batched-groups algorithm however few channels a group has
        from tinyalex.kernels import conv_grouped_cpu
        kernels.set_conv_mode("auto")
        monkeypatch.setattr(conv_grouped_cpu, "MIN_GROUP_CHANNELS", 1)
        g.update(groups=2, C=2 * g["C"], OC=2 * g["OC"])
    elif path.startswith("im2col"):
        # the fast im2col + GEMM loops: auto mode's last rule, once direct declines
        # (TINYALEX_CONV=im2col runs ops/im2col.py's reference instead)
        kernels.set_conv_mode("auto")
        monkeypatch.setattr(conv_direct_cpu.DIRECT, "takes", lambda g: False)
        monkeypatch.setattr(conv_im2col_cpu, "SHORT_ROW", 10**9 if "transposed" in path else 0)
        monkeypatch.setattr(conv_im2col_cpu, "CHANNELS_LAST_MIN",
                            1 if "channels-last" in path else 10**9)
    elif path == "direct":
        g.update(SH=1, SW=1, PH=min(g["PH"], g["KH"] - 1), PW=min(g["PW"], g["KW"] - 1))
    else:
        algorithm = {"F(4,3)": conv_winograd_cpu.WINOGRAD_F43,
                     "F(2,5)": conv_winograd_cpu.WINOGRAD_F25,
                     "F(3,5)": conv_winograd_cpu.WINOGRAD_F35,
                     "F(6,3)": conv_winograd_cpu.WINOGRAD_F63,
                     "F(4,5)": conv_winograd_cpu.WINOGRAD_F45}[path[len("winograd "):]]
        monkeypatch.setattr(algorithm, "min_channels", 1)
        if algorithm in (conv_winograd_cpu.WINOGRAD_F43,   # however few its tiles
                         conv_winograd_cpu.WINOGRAD_F63):
            from tinyalex.ops import conv as conv_ops
            monkeypatch.setattr(conv_ops, "f43_pays", lambda g: True)
        if algorithm.rival is not None:                    # any map, not only where it
            monkeypatch.setattr(algorithm, "rival", None)  # needs fewer products
        if algorithm is conv_winograd_cpu.WINOGRAD_F25:    # the chooser's 5x5 rules pick
            from tinyalex.ops import conv as conv_ops      # F(4,5) or F(3,5): let them
            monkeypatch.setattr(conv_ops, "_F35", algorithm)   # pick F(2,5)
        r = algorithm.r
        g.update(KH=r, KW=r, SH=1, SW=1, PH=min(g["PH"], r - 1), PW=min(g["PW"], r - 1))
    return g


@pytest.fixture
def conv_mode_restored():
    previous = kernels.get_conv_mode()
    yield
    kernels.set_conv_mode(previous)


@pytest.mark.parametrize("path", sorted(CONV_PATHS))
@settings(max_examples=15, deadline=None)
@given(g=geometry, seed=st.integers(0, 2**16))
@hypothesis_example(g={"N": 2, "C": 1, "OC": 3, "H": 9, "W": 9, "KH": 4, "KW": 3, "SH": 2, "SW": 3,
            "PH": 1, "PW": 2}, seed=0)
def test_conv_loops_stay_in_bounds(guarded_loops, monkeypatch, conv_mode_restored, path, g,
                                   seed):
    """Convolution, forward and both gradients, through each fast path (im2col with
    its columns stored row-major, transposed or (kh, kw, c) from channels-last memory,
    grouped (all groups' columns at once), direct, Winograd F(4x4, 3x3),
    F(2x2, 5x5) and F(3x3, 5x5) with the channel threshold lowered to reach them with tiny shapes):
    exactly the path's loops run, none indexes outside its arrays, and the results
    equal the reference's."""
    g = force_path(path, g, monkeypatch)
    assume(g["H"] + 2 * g["PH"] >= g["KH"] and g["W"] + 2 * g["PW"] >= g["KW"])
    rng = np.random.default_rng(seed)
    groups = g.get("groups", 1)
    x = rng.standard_normal((g["N"], g["C"], g["H"], g["W"]))
    w = rng.standard_normal((g["OC"], g["C"] // groups, g["KH"], g["KW"]))
    b = rng.standard_normal(g["OC"])
    OH = (g["H"] + 2 * g["PH"] - g["KH"]) // g["SH"] + 1
    OW = (g["W"] + 2 * g["PW"] - g["KW"]) // g["SW"] + 1
    gy = rng.standard_normal((g["N"], g["OC"], OH, OW))
    stride, padding = (g["SH"], g["SW"]), (g["PH"], g["PW"])
    guarded_loops.clear()
    fast = conv_pass("fast", x, w, b, stride, padding, gy, groups)
    assert loops_run(guarded_loops) == CONV_PATHS[path], sorted(set(guarded_loops))
    ref = conv_pass("reference", x, w, b, stride, padding, gy, groups)
    for f, r, name in zip(fast, ref, ("y", "gx", "gw", "gb")):
        np.testing.assert_allclose(f, r, rtol=1e-9, atol=1e-9, err_msg=name)


FUSED_LOOPS = {"numba_lanes.pack", "numba_lanes.forward_sigmoid_avgpool",
               "numba_lanes.backward"}


@settings(max_examples=15, deadline=None)
@given(g=geometry, seed=st.integers(0, 2**16))
def test_fused_conv_sigmoid_avgpool_loops_stay_in_bounds(guarded_loops, monkeypatch, g, seed):
    """The direct convolution + sigmoid + 2x2 average pooling as one op (LeNet's blocks):
    exactly its loops run, none indexes outside its arrays, and the results equal the
    reference's (the three reference ops one after the other)."""
    from tinyalex.kernels import conv_pointwise
    from tinyalex.ops.conv import conv2d_sigmoid_avg_pool2d
    monkeypatch.setattr(conv_pointwise.POINTWISE_1X1, "takes", lambda g: False)  # 1x1: a GEMM
    PH, PW = min(g["PH"], g["KH"] - 1), min(g["PW"], g["KW"] - 1)
    OH, OW = g["H"] + 2 * PH - g["KH"] + 1, g["W"] + 2 * PW - g["KW"] + 1
    assume(OH >= 2 and OW >= 2)
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((g["N"], g["C"], g["H"], g["W"]))
    w = rng.standard_normal((g["OC"], g["C"], g["KH"], g["KW"]))
    b = rng.standard_normal(g["OC"])
    gy = rng.standard_normal((g["N"], g["OC"], OH // 2, OW // 2))
    guarded_loops.clear()
    out = {}
    for mode in ("fast", "reference"):
        with kernels.use(mode):
            xs, ws, bs = (tinyalex.tensor(a, requires_grad=True) for a in (x, w, b))
            y = conv2d_sigmoid_avg_pool2d(xs, ws, bs, padding=(PH, PW))
            y.backward(gy)
            out[mode] = (host(y), host(xs.grad), host(ws.grad), host(bs.grad))
    assert loops_run(guarded_loops) == FUSED_LOOPS, sorted(set(guarded_loops))
    for f, r, name in zip(out["fast"], out["reference"], ("y", "gx", "gw", "gb")):
        np.testing.assert_allclose(f, r, rtol=1e-9, atol=1e-9, err_msg=name)


@settings(max_examples=30, deadline=None)
@given(N=st.integers(1, 2), C=st.integers(1, 3), H=st.integers(1, 7), W=st.integers(1, 7),
       K=st.integers(1, 4), S=st.integers(1, 3), data_=st.data(),
       fn=st.sampled_from([F.max_pool2d, F.avg_pool2d]), seed=st.integers(0, 2**16))
def test_pool_loops_stay_in_bounds(guarded_loops, N, C, H, W, K, S, data_, fn, seed):
    P = data_.draw(st.integers(0, K // 2))
    assume(H + 2 * P >= K and W + 2 * P >= K)
    rng = np.random.default_rng(seed)
    x = rng.permutation(N * C * H * W).reshape(N, C, H, W).astype(np.float64)  # no ties
    guarded_loops.clear()           # one fixture for all of hypothesis's examples
    results = {}
    for mode in ("fast", "reference"):
        with kernels.use(mode):
            xs = tinyalex.tensor(x, requires_grad=True)
            y = fn(xs, K, S, P)
            y.backward(np.ones(y.shape))
            results[mode] = (host(y), host(xs.grad))
    kind = "max" if fn is F.max_pool2d else "avg"
    assert loops_run(guarded_loops) == {f"numba_pool.{kind}_pool_forward",
                                  f"numba_pool.{kind}_pool_backward"}
    for f, r in zip(results["fast"], results["reference"]):
        np.testing.assert_allclose(f, r, rtol=1e-12)


@settings(max_examples=20, deadline=None)
@given(shape=st.lists(st.integers(1, 5), min_size=1, max_size=4).map(tuple),
       p=st.floats(0, 1), transpose=st.booleans(), seed=st.integers(0, 2**16))
def test_elementwise_loops_stay_in_bounds(guarded_loops, shape, p, transpose, seed):
    """ReLU, sigmoid's backward, dropout and the SGD update on contiguous and transposed
    memory (float64: the float32 sigmoid forward is the one loop that cannot run as
    Python, below)."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(shape)
    x = x.T if transpose else x
    guarded_loops.clear()
    out = {}
    for mode in ("fast", "reference"):
        with kernels.use(mode):
            tinyalex.manual_seed(seed)
            xs = tinyalex.tensor(x, requires_grad=True)
            y = F.dropout(F.sigmoid(F.relu(xs)), p)
            y.backward(np.ones(y.shape))
            param = tinyalex.tensor(x.copy(), requires_grad=True)
            param.grad = tinyalex.tensor(np.ones(x.shape))
            optim.SGD([param], lr=0.5).step()
            out[mode] = (host(y), host(xs.grad), host(param))
    want = {"numba_elementwise.relu_forward", "numba_elementwise.relu_backward",
            "numba_elementwise.backward", "numba_elementwise.sgd_update"}
    if p > 0:                       # p = 0 is the identity: no dropout runs
        want.add("numba_elementwise.dropout")
    assert loops_run(guarded_loops) == want
    for f, r in zip(out["fast"], out["reference"]):
        np.testing.assert_allclose(f, r, rtol=1e-12, atol=1e-12)


def test_the_guard_catches_an_out_of_bounds_loop(guarded_loops):
    """The check above can fail: a loop handed an output shorter than its input
    writes past the end, and the guard says so."""
    from tinyalex.kernels import numba_elementwise
    with pytest.raises(OutOfBounds):
        numba_elementwise.relu_forward(np.ones(5), np.empty(4), 0, 5)
    assert guarded_loops == ["numba_elementwise.relu_forward"]


def test_every_compiled_loop_is_swept_but_the_float32_sigmoid():
    """The sweeps above run every compiled loop of kernels/numba_*.py as guarded Python
    but one: the float32 sigmoid forward (its scalar ``_sigmoid32``, which the fused
    LeNet loop runs too) builds 2**n from its IEEE-754 bits with a
    Numba intrinsic (``_float32_from_bits``), which has no Python form, so it is held
    to the reference compiled (tests/kernels/test_kernels.py, on saturating and random values)."""
    swept = set().union(*CONV_PATHS.values()) | FUSED_LOOPS | {
        f"numba_pool.{k}_pool_{d}" for k in ("max", "avg") for d in ("forward", "backward")} | {
        "numba_elementwise.relu_forward", "numba_elementwise.relu_backward",
        "numba_elementwise.backward", "numba_elementwise.sgd_update",
        "numba_elementwise.dropout"}
    every = {f"{mod.__name__.rpartition('.')[2]}.{name}" for mod, name, _ in compiled_loops()
             if not name.startswith("_")}
    every.discard("numba_winograd_f43.input_transform6")   # f25's, imported: swept via f43
    assert every - swept == {"numba_elementwise.forward_float32"}
    assert swept - every - {"numba_winograd_f43.input_transform6"} == set()
    from tinyalex.kernels import numba_elementwise
    with pytest.raises(Exception):       # the intrinsic cannot be called from Python
        numba_elementwise._sigmoid32.py_func(np.float32(1))


# -------------------------------------------------------------- the torch tensor API
# Each: the exception PyTorch raises for the same call (test_torch_parity.py makes each
# call on torch itself and checks the type), with a message naming the argument and the
# shapes; the table is tests/helpers/tensor_api_errors.py.


@pytest.mark.parametrize("case", sorted(TENSOR_API_ERRORS))
def test_tensor_api_bad_arguments(case):
    call, error, match = TENSOR_API_ERRORS[case]
    with pytest.raises(error, match=match):
        call(tinyalex)
