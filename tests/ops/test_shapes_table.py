"""Shapes: Chainer's output-size invariants for conv and pooling (hypothesis), d2l's
AlexNet table from the issue row by row, LeNet's table, and parameter counts."""

import ast
import pathlib
import re
import subprocess
import sys

import pytest
from hypothesis import given, settings, strategies as st

import tinyalex
import tinyalex.nn.functional as F
from tinyalex import nn
from tinyalex.study.summary import layer_rows

ROOT = pathlib.Path(__file__).resolve().parents[2]


# -- output-size invariants -----------------------------------------------------------

def assert_invariant(out, size, kernel, stride, pad):
    """The last window fits and one more would not: (out-1)*s + k <= w + 2p < out*s + k."""
    assert out >= 1
    assert (out - 1) * stride + kernel <= size + 2 * pad < out * stride + kernel


@st.composite
def axis(draw, pool=False):
    k = draw(st.integers(1, 7))
    p = draw(st.integers(0, k // 2 if pool else 3))
    s = draw(st.integers(1, 5))
    w = draw(st.integers(max(1, k - 2 * p), 16))
    return w, k, s, p


@settings(max_examples=30)
@given(h=axis(), w=axis())
def test_conv2d_output_size_invariant(h, w):
    (H, KH, SH, PH), (W, KW, SW, PW) = h, w
    x = tinyalex.zeros(1, 2, H, W)
    weight = tinyalex.zeros(3, 2, KH, KW)
    y = F.conv2d(x, weight, stride=(SH, SW), padding=(PH, PW))
    N, OC, OH, OW = y.shape
    assert (N, OC) == (1, 3)
    assert_invariant(OH, H, KH, SH, PH)
    assert_invariant(OW, W, KW, SW, PW)


@pytest.mark.parametrize("pool", [F.max_pool2d, F.avg_pool2d])
@settings(max_examples=20)
@given(h=axis(pool=True), w=axis(pool=True))
def test_pool_output_size_invariant(pool, h, w):
    (H, KH, SH, PH), (W, KW, SW, PW) = h, w
    y = pool(tinyalex.zeros(2, 3, H, W), (KH, KW), (SH, SW), (PH, PW))
    N, C, OH, OW = y.shape
    assert (N, C) == (2, 3)
    assert_invariant(OH, H, KH, SH, PH)
    assert_invariant(OW, W, KW, SW, PW)


@settings(max_examples=15)
@given(h=axis(pool=True), w=axis(pool=True))
def test_pool_stride_defaults_to_kernel_size(h, w):
    (H, KH, _, PH), (W, KW, _, PW) = h, w
    y = F.max_pool2d(tinyalex.zeros(1, 1, H, W), (KH, KW), padding=(PH, PW))
    assert_invariant(y.shape[2], H, KH, KH, PH)
    assert_invariant(y.shape[3], W, KW, KW, PW)


# -- d2l's AlexNet, row by row --------------------------------------------------------

# The table of the issue (d2l section 8.1), for a (1, 1, 224, 224) input, with each
# layer's parameter count worked out by hand: OC*C*KH*KW + OC for a conv,
# out*in + out for a linear layer.
ALEXNET_TABLE = [
    ("Conv2d", (1, 96, 54, 54), 96 * 1 * 11 * 11 + 96),
    ("ReLU", (1, 96, 54, 54), 0),
    ("MaxPool2d", (1, 96, 26, 26), 0),
    ("Conv2d", (1, 256, 26, 26), 256 * 96 * 5 * 5 + 256),
    ("ReLU", (1, 256, 26, 26), 0),
    ("MaxPool2d", (1, 256, 12, 12), 0),
    ("Conv2d", (1, 384, 12, 12), 384 * 256 * 3 * 3 + 384),
    ("ReLU", (1, 384, 12, 12), 0),
    ("Conv2d", (1, 384, 12, 12), 384 * 384 * 3 * 3 + 384),
    ("ReLU", (1, 384, 12, 12), 0),
    ("Conv2d", (1, 256, 12, 12), 256 * 384 * 3 * 3 + 256),
    ("ReLU", (1, 256, 12, 12), 0),
    ("MaxPool2d", (1, 256, 5, 5), 0),
    ("Flatten", (1, 6400), 0),
    ("Linear", (1, 4096), 6400 * 4096 + 4096),
    ("ReLU", (1, 4096), 0),
    ("Dropout", (1, 4096), 0),
    ("Linear", (1, 4096), 4096 * 4096 + 4096),
    ("ReLU", (1, 4096), 0),
    ("Dropout", (1, 4096), 0),
    ("Linear", (1, 10), 4096 * 10 + 10),
]

LENET_TABLE = [   # d2l section 7.6, (1, 1, 28, 28) input
    ("Conv2d", (1, 6, 28, 28), 6 * 1 * 5 * 5 + 6),
    ("Sigmoid", (1, 6, 28, 28), 0),
    ("AvgPool2d", (1, 6, 14, 14), 0),
    ("Conv2d", (1, 16, 10, 10), 16 * 6 * 5 * 5 + 16),
    ("Sigmoid", (1, 16, 10, 10), 0),
    ("AvgPool2d", (1, 16, 5, 5), 0),
    ("Flatten", (1, 400), 0),
    ("Linear", (1, 120), 400 * 120 + 120),
    ("Sigmoid", (1, 120), 0),
    ("Linear", (1, 84), 120 * 84 + 84),
    ("Sigmoid", (1, 84), 0),
    ("Linear", (1, 10), 84 * 10 + 10),
]


def d2l_alexnet():
    """d2l's definition, verbatim but for `from tinyalex import nn`."""
    return nn.Sequential(
        nn.Conv2d(1, 96, kernel_size=11, stride=4, padding=1), nn.ReLU(),
        nn.MaxPool2d(kernel_size=3, stride=2),
        nn.Conv2d(96, 256, kernel_size=5, padding=2), nn.ReLU(),
        nn.MaxPool2d(kernel_size=3, stride=2),
        nn.Conv2d(256, 384, kernel_size=3, padding=1), nn.ReLU(),
        nn.Conv2d(384, 384, kernel_size=3, padding=1), nn.ReLU(),
        nn.Conv2d(384, 256, kernel_size=3, padding=1), nn.ReLU(),
        nn.MaxPool2d(kernel_size=3, stride=2),
        nn.Flatten(),
        nn.Linear(6400, 4096), nn.ReLU(), nn.Dropout(p=0.5),
        nn.Linear(4096, 4096), nn.ReLU(), nn.Dropout(p=0.5),
        nn.Linear(4096, 10))


def test_d2l_alexnet_code_runs_and_gives_the_table_row_by_row():
    net = d2l_alexnet()
    assert len(net) == len(ALEXNET_TABLE)
    X = tinyalex.randn(1, 1, 224, 224)
    with tinyalex.no_grad():
        for i, (layer, (name, shape, params)) in enumerate(zip(net, ALEXNET_TABLE)):
            X = layer(X)                                 # d2l's loop
            assert (i, type(layer).__name__, X.shape) == (i, name, shape)
            assert sum(p.numel() for p in layer.parameters()) == params, f"row {i} ({name})"
    assert net.num_parameters() == 46_764_746


@pytest.mark.parametrize("build, size, table, total", [
    (tinyalex.models.alexnet, 224, ALEXNET_TABLE, 46_764_746),
    (tinyalex.models.lenet, 28, LENET_TABLE, 61_706),
])
def test_models_match_the_tables(build, size, table, total):
    net = build()
    assert sum(params for _, _, params in table) == total
    rows = layer_rows(net, (1, 1, size, size))
    assert [(r["name"], r["output_shape"], r["parameters"]) for r in rows] == table
    assert net.num_parameters() == total


def test_models_and_d2l_definition_are_the_same_network():
    ours, d2l = tinyalex.models.alexnet(), d2l_alexnet()
    assert repr(ours) == repr(d2l)
    assert [(k, v.shape) for k, v in ours.state_dict().items()] == \
           [(k, v.shape) for k, v in d2l.state_dict().items()]


def test_alexnet_options_change_first_and_last_layers():
    net = tinyalex.models.alexnet(num_classes=7, in_channels=3)
    assert net[0].weight.shape == (96, 3, 11, 11)
    assert net[-1].weight.shape == (7, 4096)
    assert net(tinyalex.zeros(2, 3, 224, 224)).shape == (2, 7)


# -- the printed tables, parsed row by row ----------------------------------------------

SUMMARY_ROW = re.compile(r"^\s*(\d+)\s+(\w+)\s+(\([\d, ]+\))\s+([\d,]+)\s+([\d,]+)\s+\S")
LOOP_ROW = re.compile(r"^(\w+)\s+output shape:\ttorch\.Size\((\[[\d, ]+\])\)$")   # as the book


def number(text):
    return int(text.replace(",", ""))


def summary_rows(text):
    """(index, layer, output shape, parameters) of every row of a printed summary table,
    in order, and the total's parameter count. Every line between the two rules must
    be a row: a line the pattern misses fails the test rather than being skipped."""
    lines = text.splitlines()
    rules = [i for i, line in enumerate(lines) if line and set(line) == {"-"}]
    assert len(rules) == 2, f"expected two rules around the rows, got {len(rules)}"
    rows = []
    for line in lines[rules[0] + 1:rules[1]]:
        m = SUMMARY_ROW.match(line)
        assert m, f"not a table row: {line!r}"
        rows.append((int(m[1]), m[2], ast.literal_eval(m[3]), number(m[4])))
    total = lines[rules[1] + 1].split()
    assert total[0] == "total", lines[rules[1] + 1]
    return rows, number(total[1])


def loop_rows(text):
    """(layer, output shape) of each line d2l's loop prints, in order."""
    return [(m[1], tuple(ast.literal_eval(m[2])))
            for m in map(LOOP_ROW.match, text.splitlines()) if m]


@pytest.mark.parametrize("build, size, table, total", [
    (tinyalex.models.alexnet, 224, ALEXNET_TABLE, 46_764_746),
    (tinyalex.models.lenet, 28, LENET_TABLE, 61_706),
])
def test_summary_prints_the_table_row_by_row(build, size, table, total):
    lines = []
    tinyalex.summary(build(), (1, 1, size, size), print_fn=lines.append)
    rows, printed_total = summary_rows("\n".join(lines))
    assert rows == [(i, name, shape, params) for i, (name, shape, params) in enumerate(table)]
    assert printed_total == total


def test_shapes_example_prints_the_table():
    """examples/shapes.py runs d2l's loop on the real network, then prints the summary:
    both, parsed line by line, are d2l's table in order."""
    out = subprocess.run([sys.executable, str(ROOT / "examples" / "shapes.py")],
                         capture_output=True, text=True, timeout=120, check=True).stdout
    loop_lines = [line for line in out.splitlines() if "output shape:" in line]
    assert len(loop_rows(out)) == len(loop_lines), "a loop line the parser cannot read"
    assert loop_rows(out) == [(name, shape) for name, shape, _ in ALEXNET_TABLE]
    rows, total = summary_rows(out[out.index(loop_lines[-1]) + len(loop_lines[-1]):])
    assert rows == [(i, name, shape, params)
                    for i, (name, shape, params) in enumerate(ALEXNET_TABLE)]
    assert total == 46_764_746
