"""The convolution explainer (tinyalex/study/conv_walk.py, examples/explain_conv.py): its
matrices must be the engine's convolution, forward and backward."""

import importlib.util
import os

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import tinyalex
from tinyalex.study.conv_walk import format_walk, tiny_example, walk_through
from tinyalex.nn.functional import conv2d

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def load_example(name):
    spec = importlib.util.spec_from_file_location(name, os.path.join(ROOT, "examples",
                                                                     name + ".py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def engine_conv(x, weight, bias, stride, padding, gy):
    """Output and gradients straight from conv2d and autograd."""
    xt = tinyalex.tensor(x, requires_grad=True)
    wt = tinyalex.tensor(weight, requires_grad=True)
    bt = tinyalex.tensor(bias, requires_grad=True)
    y = conv2d(xt, wt, bt, stride=stride, padding=padding)
    y.backward(gy)
    return y.numpy(), xt.grad.numpy(), wt.grad.numpy(), bt.grad.numpy()


@pytest.mark.parametrize("stride", [1, 2])
def test_tiny_example_reproduces_conv2d_and_autograd(stride):
    w = tiny_example(stride=stride, padding=1)
    assert w.x.shape == (1, 2, 4, 4) and w.weight.shape == (2, 2, 3, 3)
    y, gx, gw, gb = engine_conv(w.x, w.weight, w.bias, stride, 1, w.gy)
    # the explainer's own GEMM, reshaped, is conv2d's output
    s = w.sizes
    y_from_gemm = (w.cols @ w.w_mat + w.bias).reshape(1, s["OH"], s["OW"], 2).transpose(0, 3, 1, 2)
    np.testing.assert_allclose(y_from_gemm, y, atol=1e-12)
    np.testing.assert_allclose(w.y, y, atol=1e-12)
    np.testing.assert_allclose(w.gx, gx, atol=1e-12)
    np.testing.assert_allclose(w.gw, gw, atol=1e-12)
    np.testing.assert_allclose(w.gb, gb, atol=1e-12)
    assert w.ok() and set(w.errors) >= {"output y vs conv2d", "grad x vs autograd"}


def test_labels_name_the_entries_they_hold():
    w = tiny_example(stride=2, padding=1)
    SH, SW = w.stride
    assert len(w.row_labels) == w.cols.shape[0] and len(w.col_labels) == w.cols.shape[1]
    for r, (n, oh, ow) in enumerate(w.row_labels):
        for k, (c, kh, kw) in enumerate(w.col_labels):
            assert w.cols[r, k] == w.x_padded[n, c, oh * SH + kh, ow * SW + kw]


def test_gradient_columns_add_up_to_the_input_gradient():
    w = tiny_example(stride=1, padding=1, seed=4)
    total = np.zeros_like(w.gx)
    for n in range(1):
        for c in range(2):
            for h in range(4):
                for x in range(4):
                    total[n, c, h, x] = sum(w.gcols[r, k] for r, k in
                                            w.window_sources(n, c, h, x))
    np.testing.assert_allclose(total, w.gx, atol=1e-12)
    # 3x3 windows at stride 1: an interior pixel lies in 9 of them; every window is counted
    assert w.overlap[2, 2] == 9 and w.overlap.sum() == w.cols.shape[0] * 9


def test_strided_overlap_counts():
    w = tiny_example(stride=2, padding=1)
    assert w.overlap.sum() == 2 * 2 * 9            # OH*OW windows of KH*KW pixels
    assert w.overlap.max() == 4                    # where four windows meet
    assert (w.overlap[-1] == 0).all()              # the stride never reaches the last row


@settings(max_examples=25, deadline=None)
@given(N=st.integers(1, 2), C=st.integers(1, 3), OC=st.integers(1, 3),
       H=st.integers(3, 7), W=st.integers(3, 7), KH=st.integers(1, 3), KW=st.integers(1, 3),
       SH=st.integers(1, 3), SW=st.integers(1, 3), PH=st.integers(0, 1), PW=st.integers(0, 1),
       seed=st.integers(0, 2**16))
def test_walk_matches_engine_on_random_shapes(N, C, OC, H, W, KH, KW, SH, SW, PH, PW, seed):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((N, C, H, W))
    weight = rng.standard_normal((OC, C, KH, KW))
    bias = rng.standard_normal(OC)
    OH, OW = (H + 2 * PH - KH) // SH + 1, (W + 2 * PW - KW) // SW + 1
    gy = rng.standard_normal((N, OC, OH, OW))
    w = walk_through(x, weight, bias, (SH, SW), (PH, PW), gy)
    y, gx, gw, gb = engine_conv(x, weight, bias, (SH, SW), (PH, PW), gy)
    for mine, theirs in ((w.y, y), (w.gx, gx), (w.gw, gw), (w.gb, gb)):
        np.testing.assert_allclose(mine, theirs, atol=1e-10)
    assert w.ok(1e-10)


def test_text_walks_through_every_step():
    text = format_walk(tiny_example(stride=1, padding=1))
    for step in ("x_padded[n=0, c=1]", "im2col", "(n,oh,ow)", "w_mat", "One GEMM",
                 "(N, OC, OH, OW)", "gcols", "col2im", "gx[n=0, c=1]"):
        assert step in text, step
    assert "All steps agree with tinyalex's conv2d and autograd." in text
    assert "MISMATCH" not in text


def test_a_wrong_matrix_is_reported():
    w = tiny_example(stride=1, padding=1)
    w.errors["output y vs conv2d"] = 1.0          # as if the GEMM had gone wrong
    assert not w.ok()
    assert "MISMATCH" in format_walk(w)


def test_bad_shapes_are_named():
    with pytest.raises(ValueError, match=r"walk_through: expected input with 3 channels "
                                         r"\(N, 3, H, W\), got shape \(1, 2, 4, 4\)"):
        walk_through(np.zeros((1, 2, 4, 4)), np.zeros((1, 3, 3, 3)))
    with pytest.raises(ValueError, match="walk_through: .*does not fit"):
        walk_through(np.zeros((1, 1, 2, 2)), np.zeros((1, 1, 3, 3)))
    with pytest.raises(ValueError, match=r"walk_through.*4-D"):
        walk_through(np.zeros((2, 4, 4)), np.zeros((1, 1, 3, 3)))


def test_script_prints_checks_and_writes_pngs(tmp_path):
    from matplotlib.image import imread
    from tinyalex.study import plots as P
    lines = []
    rc = load_example("explain_conv").main(["--out", str(tmp_path)], print_fn=lambda *a:
                                            lines.append(" ".join(map(str, a))))
    text = "\n".join(lines)
    assert rc == 0
    assert "Case 2 (strided)" in text and "every matrix reproduces" in text
    expected = {"im2col.png": P.IM2COL_SIZE, "im2col_stride2.png": P.IM2COL_SIZE,
                "col2im_overlap.png": (2 * P.OVERLAP_PANEL[0], P.OVERLAP_PANEL[1])}
    for name, (w_in, h_in) in expected.items():
        img = imread(str(tmp_path / name))               # fails unless a valid PNG
        assert img.shape[:2] == (round(h_in * P.DPI), round(w_in * P.DPI)), name
        assert img[..., :3].std() > 0.05, f"{name} is blank"


def test_script_runs_from_the_command_line(tmp_path):
    import subprocess
    import sys
    done = subprocess.run([sys.executable, os.path.join(ROOT, "examples", "explain_conv.py"),
                           "--out", str(tmp_path), "--seed", "7"], capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.count("All steps agree with tinyalex's conv2d and autograd.") == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["col2im_overlap.png", "im2col.png",
                                                         "im2col_stride2.png"]
