"""``tinyalex.summary``: every count in the per-layer table against its formula, the
timing columns, and the errors it gives for bad input."""

import numpy as np
import pytest

import tinyalex
from tinyalex import nn
from tinyalex.study.summary import format_table, layer_rows, time_layers


def pair(v):
    return tuple(v) if isinstance(v, (tuple, list)) else (v, v)


def expected_rows(net, input_shape):
    """Shapes, parameters and MACs from the layers' own settings and the formulas
    (no forward pass): what the summary must report."""
    shape = tuple(input_shape)
    out = []
    for layer in net:
        N = shape[0]
        params = macs = 0
        if isinstance(layer, nn.Conv2d):
            _, C, H, W = shape
            OC, (KH, KW) = layer.out_channels, layer.kernel_size
            (SH, SW), (PH, PW) = layer.stride, layer.padding
            OH, OW = (H + 2 * PH - KH) // SH + 1, (W + 2 * PW - KW) // SW + 1
            shape = (N, OC, OH, OW)
            params = OC * C * KH * KW + OC
            macs = N * OC * OH * OW * C * KH * KW
        elif isinstance(layer, (nn.MaxPool2d, nn.AvgPool2d)):
            _, C, H, W = shape
            KH, KW = pair(layer.kernel_size)
            SH, SW = pair(layer.stride if layer.stride is not None else layer.kernel_size)
            PH, PW = pair(layer.padding)
            shape = (N, C, (H + 2 * PH - KH) // SH + 1, (W + 2 * PW - KW) // SW + 1)
        elif isinstance(layer, nn.Flatten):
            shape = (N, int(np.prod(shape[1:])))
        elif isinstance(layer, nn.Linear):
            params = layer.out_features * layer.in_features + layer.out_features
            macs = N * layer.in_features * layer.out_features
            shape = (N, layer.out_features)
        out.append((type(layer).__name__, shape, params, macs, 4 * int(np.prod(shape))))
    return out


@pytest.mark.parametrize("build, input_shape", [
    (tinyalex.models.alexnet, (1, 1, 224, 224)),
    (tinyalex.models.lenet, (3, 1, 28, 28)),
])
def test_counts_match_the_formulas_layer_by_layer(build, input_shape):
    net = build()
    rows = layer_rows(net, input_shape)
    want = expected_rows(net, input_shape)
    assert len(rows) == len(want)
    for r, (name, shape, params, macs, nbytes) in zip(rows, want):
        where = f"layer {r['index']} ({name})"
        assert r["name"] == name, where
        assert r["output_shape"] == shape, where
        assert r["parameters"] == params, where
        assert r["macs"] == macs, where
        assert r["activation_bytes"] == nbytes, where


def test_alexnet_totals():
    rows = layer_rows(tinyalex.models.alexnet(), (1, 1, 224, 224))
    assert sum(r["parameters"] for r in rows) == 46_764_746
    conv_macs = [r["macs"] for r in rows if r["name"] == "Conv2d"]
    # first layer by hand: 96 filters * 54*54 positions * 1*11*11 taps
    assert conv_macs[0] == 96 * 54 * 54 * 11 * 11
    text = format_table(rows)
    assert "46,764,746" in text and f"{sum(r['macs'] for r in rows):,}" in text


def test_time_adds_measured_forward_and_backward_per_layer():
    net = tinyalex.models.lenet()
    before = [p.array.copy() for p in net.parameters()]
    state = tinyalex.random.get_rng_state()
    lines = []
    rows = tinyalex.summary(net, (8, 1, 28, 28), time=True, repeats=2,
                            print_fn=lines.append)
    for r in rows:
        assert r["forward_ms"] > 0, r
        assert r["backward_ms"] is not None and r["backward_ms"] > 0, r
    text = lines[0]
    assert "forward ms" in text and "backward ms" in text and "total" in text
    total_line = [ln for ln in text.splitlines() if ln.strip().startswith("total")][0]
    assert f"{sum(r['forward_ms'] for r in rows):.3f}" in total_line
    # the network is left as it was: weights, gradients, mode, random stream
    assert all(np.array_equal(a, p.array) for a, p in zip(before, net.parameters()))
    assert all(p.grad is None for p in net.parameters())
    assert net.training
    assert tinyalex.random.get_rng_state() == state


def test_time_layers_without_gradient_to_compute():
    # a first layer with no parameters whose input is data: nothing to differentiate
    net = nn.Sequential(nn.ReLU(), nn.Flatten(), nn.Linear(16, 2))
    times = time_layers(net, (2, 1, 4, 4), repeats=1, warmup=0)
    assert times[0][1] is None and times[1][1] is None and times[2][1] > 0
    assert "-" in format_table([dict(r, forward_ms=f, backward_ms=b) for r, (f, b) in
                                zip(layer_rows(net, (2, 1, 4, 4)), times)], "numpy")


def test_bad_input_is_reported_clearly():
    with pytest.raises(TypeError, match="Sequential"):
        tinyalex.summary(nn.Linear(2, 2), (1, 2), print_fn=None)
    with pytest.raises(ValueError, match="positive"):
        tinyalex.summary(tinyalex.models.lenet(), (0, 1, 28, 28), print_fn=None)
    with pytest.raises(ValueError, match=r"layer \d+ \(\w+\)"):
        tinyalex.summary(tinyalex.models.lenet(), (1, 3, 28, 28), print_fn=None)
    with pytest.raises(ValueError, match="repeats"):
        time_layers(tinyalex.models.lenet(), (1, 1, 28, 28), repeats=0)


RELU_POOL = "max-pool loop, then ReLU on the pooled"      # ReLU+MaxPool2d, one op
ALEXNET_ALGORITHMS = {0: "im2col+GEMM", 1: RELU_POOL, 2: "fused into layer 1",
                      3: "winograd F(4,5)", 4: RELU_POOL, 5: "fused into layer 4",
                      6: "winograd F(6,3)", 8: "winograd F(6,3)", 10: "winograd F(6,3)",
                      11: RELU_POOL, 12: "fused into layer 11"}
FUSED = "direct, images in lanes + sigmoid + avg-pool (fused)"
LENET_ALGORITHMS = {0: FUSED, 1: "fused into layer 0", 2: "fused into layer 0",
                    3: FUSED, 4: "fused into layer 3", 5: "fused into layer 3"}


@pytest.mark.parametrize("build, shape, want", [
    (tinyalex.models.alexnet, (4, 1, 224, 224), ALEXNET_ALGORITHMS),
    (tinyalex.models.lenet, (2, 1, 28, 28), LENET_ALGORITHMS)])
def test_the_algorithm_column_names_what_runs(build, shape, want):
    """Every convolution and pooling layer names its algorithm, as the ops' choosers
    pick it in each mode; other layers name none; the table prints the column."""
    import tinyalex.kernels as kernels
    net = build()
    rows = layer_rows(net, shape)
    assert {r["index"]: r["algorithm"] for r in rows if r["algorithm"]} == want
    table = format_table(rows, "numpy").splitlines()
    assert table[0].endswith("algorithm")
    for r in rows:
        line = table[2 + r["index"]]
        assert line.endswith(r["algorithm"]) if r["algorithm"] else line.endswith("B")
    assert "fast kernels, TINYALEX_CONV=auto" in table[-1]
    with kernels.use_conv("im2col"):
        convs = {r["algorithm"] for r in layer_rows(net, shape) if r["name"] == "Conv2d"}
        assert convs == {"im2col+GEMM (reference)"}
    with kernels.use("reference"):
        names = {r["algorithm"] for r in layer_rows(net, shape) if r["algorithm"]
                 and not r["algorithm"].startswith("fused into layer")}
        assert names <= {"im2col+GEMM (reference)", "im2col+max (reference)",
                         "im2col+max (reference), then ReLU on the pooled",
                         "im2col+mean (reference)"} and len(names) == 2
    net.fuse = False                                # every layer on its own
    unfused = {r["index"]: r["algorithm"] for r in layer_rows(net, shape) if r["algorithm"]}
    assert FUSED not in unfused.values() and not any("fused" in a for a in unfused.values())


def test_summary_reports_the_cpu_policy_and_the_policy_can_be_turned_off():
    """import tinyalex sets the CPU process policy at one visible call (cpu_policy),
    summary says what is in force, TINYALEX_CPU_POLICY=off skips it and a call undoes
    it (kernels/cpu_process.py)."""
    import json
    import os
    import subprocess
    import sys
    lines = []
    tinyalex.summary(tinyalex.models.lenet(), (1, 1, 28, 28), print_fn=lines.append)
    assert lines[-1] == tinyalex.kernels.cpu_process.describe()
    assert lines[-1].startswith("CPU policy (tinyalex.cpu_policy): malloc ")
    code = ("import tinyalex, json; before = tinyalex.kernels.cpu_process.policy(); "
            "tinyalex.set_num_threads(1); after = tinyalex.cpu_policy(); "
            "undone = tinyalex.cpu_policy(malloc='default', blas_threads=None); "
            "print(json.dumps([before, after, undone]))")
    runs = {}
    for value in ("on", "off"):
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                             check=True, timeout=120,
                             env=dict(os.environ, TINYALEX_CPU_POLICY=value))
        runs[value] = json.loads(out.stdout)
    on, off = runs["on"], runs["off"]
    assert off[0]["malloc"] == "default" and off[0]["blas_threads"] is None
    assert not off[0]["gemm_split"]
    assert on[0]["blas_threads"] == 1 and on[0]["gemm_split"] == (on[0]["threads"] > 1)
    assert off[1]["blas_threads"] == 1 and off[1]["threads"] == 1     # asked for later
    assert not off[1]["gemm_split"]                                     # one thread: whole
    for undone in (on[2], off[2]):
        assert undone["malloc"] == "default" and undone["blas_threads"] is None
    with pytest.raises(ValueError, match="set_num_threads"):
        tinyalex.set_num_threads(0)
    with pytest.raises(ValueError, match="blas_threads"):
        tinyalex.cpu_policy(blas_threads=4)
