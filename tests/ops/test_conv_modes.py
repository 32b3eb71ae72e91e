"""TINYALEX_CONV=im2col (every convolution as im2col + one GEMM, the teaching path)
trains d2l's networks as the default mode does: the algorithms compute the same
convolution, rounded differently, so a few steps agree to float32 noise."""

import os
import sys

import numpy as np
import pytest

import tinyalex
import tinyalex.kernels as kernels
from tinyalex import nn, optim


def train_steps(model, conv_mode, steps, batch, side, lr):
    tinyalex.manual_seed(0)
    net = getattr(tinyalex.models, model)()
    net.apply(tinyalex.models.init_weights_xavier)
    opt = optim.SGD(net.parameters(), lr=lr)
    rng = np.random.default_rng(3)
    losses = []
    with kernels.use_conv(conv_mode):
        names = {layer.algorithm(x_shape) for layer, x_shape in _conv_inputs(net, batch, side)}
        for _ in range(steps):
            x = tinyalex.tensor(rng.random((batch, 1, side, side), np.float32))
            y = tinyalex.tensor(rng.integers(0, 10, batch))
            opt.zero_grad()
            loss = nn.CrossEntropyLoss()(net(x), y)
            loss.backward()
            opt.step()
            losses.append(loss.item())
    return np.array(losses), [p.numpy() for p in net.parameters()], names


def _conv_inputs(net, batch, side):
    x = tinyalex.zeros(batch, 1, side, side)
    with tinyalex.no_grad():
        for layer in net:
            if isinstance(layer, nn.Conv2d):
                yield layer, x.shape
            x = layer(x)


@pytest.mark.parametrize("model, steps, batch, side, lr, tol", [
    ("lenet", 20, 64, 28, 0.9, 1e-3),
    ("alexnet", 2, 4, 224, 0.01, 1e-4)])
def test_im2col_mode_trains_as_the_default_mode(model, steps, batch, side, lr, tol):
    auto_losses, auto_w, auto_names = train_steps(model, "auto", steps, batch, side, lr)
    im2col_losses, im2col_w, im2col_names = train_steps(model, "im2col", steps, batch, side, lr)
    assert im2col_names == {"im2col+GEMM (reference)"} and auto_names != im2col_names
    np.testing.assert_allclose(im2col_losses, auto_losses, rtol=tol)
    for a, b in zip(auto_w, im2col_w):
        np.testing.assert_allclose(b, a, rtol=tol * 10, atol=tol * np.abs(a).max())


def traced_step(model, batch, side):
    """The (file, function) of every Python call one training step makes."""
    tinyalex.manual_seed(0)
    net = getattr(tinyalex.models, model)()
    opt = optim.SGD(net.parameters(), lr=0.01)
    rng = np.random.default_rng(0)
    x = tinyalex.tensor(rng.random((batch, 1, side, side), np.float32))
    y = tinyalex.tensor(rng.integers(0, 10, batch))
    calls = set()

    def profile(frame, event, arg):
        if event == "call":
            code = frame.f_code
            calls.add((os.path.basename(code.co_filename), code.co_qualname))

    net(x)                     # builds any lazy state outside the trace
    sys.setprofile(profile)
    try:
        opt.zero_grad()
        nn.CrossEntropyLoss()(net(x), y).backward()
        opt.step()
    finally:
        sys.setprofile(None)
    return calls


@pytest.mark.parametrize("model, batch, side", [("alexnet", 2, 224), ("lenet", 4, 28)])
def test_im2col_mode_runs_the_reference_functions(model, batch, side):
    """The teaching path runs: under TINYALEX_CONV=im2col one traced step calls
    ops/im2col.py's im2col and col2im (through the reference convolution and pooling),
    and none of the compiled im2col, Winograd, direct or pooling loops' wrappers."""
    with kernels.use_conv("im2col"):
        calls = traced_step(model, batch, side)
    files = {f for f, _ in calls}
    assert {("im2col.py", "im2col"), ("im2col.py", "col2im")} <= calls
    assert {("conv.py", "Im2colReference.forward"), ("conv.py", "Im2colReference.backward")} <= calls
    pool = "MaxPoolReference" if model == "alexnet" else "AvgPoolReference"
    assert {("pool.py", f"{pool}.forward"), ("pool.py", f"{pool}.backward")} <= calls
    fast = {"conv_im2col_cpu.py", "numba_im2col.py", "conv_winograd_cpu.py",
            "conv_direct_cpu.py", "numba_direct.py", "numba_lanes.py", "pool_cpu.py",
            "numba_pool.py"}
    assert not files & fast, files & fast
    with kernels.use_conv("auto"):                  # the trace can fail: auto runs loops
        assert {"pool_cpu.py", "conv_direct_cpu.py"} & {f for f, _ in
                                                         traced_step(model, batch, side)}


@pytest.mark.parametrize("model, batch, side", [("alexnet", 1, 224), ("lenet", 4, 28)])
def test_im2col_mode_runs_the_reference_functions_on_the_cupy_backend_too(emulated_cupy, model,
                                                                          batch, side):
    """The teaching path is the same on both backends: on the cupy backend (emulated:
    NumPy arrays seen as CuPy's, the GPU algorithms on the CPU) TINYALEX_CONV=im2col
    runs ops/im2col.py's im2col and col2im and one GEMM, not the im2col.cu kernels
    (AlexNet's Conv2d + ReLU pairs too, which Sequential fuses on this backend)."""
    from tinyalex.kernels.geometry import conv_geometry
    from tinyalex.ops import conv
    g = conv_geometry((2, 3, 8, 8), (4, 3, 3, 3), 1, 1, 1, 1)
    with kernels.use_conv("im2col"):
        assert conv.conv2d_algorithm(g, np.dtype(np.float32), "cupy") is conv.REFERENCE
        launches = emulated_cupy.modules.launches
        calls = traced_step(model, batch, side)
    assert {("im2col.py", "im2col"), ("im2col.py", "col2im"),
            ("conv.py", "Im2colReference.forward"),
            ("conv.py", "Im2colReference.backward")} <= calls
    assert not {c for c in calls if c[0] == "conv_im2col_gpu.py"}
    assert (model == "alexnet") == (("conv.py", "Conv2dReLU.forward") in calls)   # fused
    assert emulated_cupy.modules.launches > launches      # the rest of the step: GPU kernels
    with kernels.use_conv("auto"):                  # the trace can fail: auto runs im2col.cu
        calls = traced_step(model, batch, side)
    assert ("conv_im2col_gpu.py", "Im2colGemmGPU.forward") in calls
    assert ("im2col.py", "im2col") not in calls


def test_the_reference_in_chunks_equals_it_whole():
    """Where the batch's columns would not fit, the reference takes a few images at a
    time (one GEMM each, the columns built again in backward): the same numbers."""
    from tinyalex.kernels.geometry import conv_geometry
    from tinyalex.ops.conv import Im2colReference
    rng = np.random.default_rng(5)
    x, w, b = rng.standard_normal((5, 3, 9, 8)), rng.standard_normal((4, 3, 3, 2)), \
        rng.standard_normal(4)
    g = conv_geometry(x.shape, w.shape, 2, 1, 1, 0)
    gy = rng.standard_normal((g.N, g.OC, g.OH, g.OW))
    whole, chunked = Im2colReference(), Im2colReference(chunk_bytes=1)
    assert len(whole.chunks(g, 8)) == 1 and len(chunked.chunks(g, 8)) == g.N
    (y1, s1), (y2, s2) = (a.forward(x, w, b, g, True) for a in (whole, chunked))
    assert s1.cols is not None and s2.cols is None       # chunked: columns built again
    np.testing.assert_allclose(y2, y1, rtol=1e-12, atol=1e-12)
    for r1, r2 in zip(whole.backward(gy, s1, True, True, True),
                      chunked.backward(gy, s2, True, True, True)):
        np.testing.assert_allclose(r2, r1, rtol=1e-12, atol=1e-12)


def test_the_choosers_docstring_is_its_rules(monkeypatch):
    """conv2d_algorithm walks CONV_RULES; its docstring's table is generated from them,
    and a threshold (Winograd's MIN_CHANNELS) lives in one place: the rule's words
    follow the algorithm's own attribute."""
    from tinyalex.kernels import conv_winograd_cpu
    from tinyalex.ops import conv
    assert conv.rules_table(conv.CONV_RULES) in conv.conv2d_algorithm.__doc__
    f43 = conv_winograd_cpu.WINOGRAD_F43
    assert f">= {conv_winograd_cpu.MIN_CHANNELS} channels" in conv.conv2d_algorithm.__doc__
    rule = next(r for r in conv.CONV_RULES if r.then == f43.name)
    assert rule.when.startswith(f43.condition)
    monkeypatch.setattr(f43, "min_channels", 7)
    assert ">= 7 channels" in f43.condition


@pytest.mark.parametrize("N, C, H, want", [
    (32, 512, 3, "tap GEMMs (no zero columns)"),                       # ResNet-18's last
    (128, 512, 3, "tap GEMMs (no zero columns)"),
    (8, 256, 6, "im2col+GEMM"), (32, 256, 6, "winograd F(6,3)"),       # and third stage
    (8, 256, 4, "im2col+GEMM"), (32, 256, 4, "winograd F(4,3)"),
    (1, 384, 12, "im2col+GEMM"), (4, 384, 12, "winograd F(6,3)")])     # AlexNet's conv4
def test_winograd_3x3_takes_a_layer_where_its_tiles_pay(N, C, H, want):
    """f43_pays: N*OH*OW >= 4 (tiles + 96); the layers it declines go to im2col + GEMM,
    never to the direct convolution (whose channel loops are slowest there); of those it
    takes, F(6,3) gets the maps its 8x8 tiles cover in fewer products (6x6: one tile
    against F(4,3)'s four; 12x12: four against nine). 3x3 maps padded by 1, whose
    im2col products are 40% zeros, go to the tap GEMMs at any batch."""
    from tinyalex.kernels.geometry import conv_geometry
    from tinyalex.ops import conv
    g = conv_geometry((N, C, H, H), (C, C, 3, 3), 1, 1, 1, 1, "conv")
    assert conv.conv2d_algorithm(g, np.dtype(np.float32), "numpy").name == want
