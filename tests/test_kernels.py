"""The fast CPU kernels (Numba) against the readable references, on hypothesis-drawn
shapes, strides and paddings (kernel = input size and non-square included), forward
and backward, float32 and float64, inputs in both memory orders; the kernel-mode
switch; argument checks before compiled code; and the buffer contract (no result
ever aliases a reused workspace).

Exact equality where the fast kernel adds in the reference's order (im2col, col2im,
max pooling, ReLU, dropout); a tolerance where BLAS or a different summation order
enters (convolution, average pooling, sigmoid).
"""

import importlib
import os
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import example, given, settings, strategies as st

import tinyalex
import tinyalex.kernels as kernels
from tinyalex import nn
from tinyalex.kernels import cpu, fastconv, winograd
from conftest import assert_gradients_match
from strategies import batch_geometry

EXAMPLES = 25
REF = kernels.kernel_set("numpy", "reference")
FAST = kernels.kernel_set("numpy", "fast")
ENGINE_DIRECT = cpu.KERNELS.engine.direct
DTYPES = st.sampled_from([np.float32, np.float64])


def geometry(pool=False):
    """(N, C, H, W, KH, KW, SH, SW, PH, PW) with at least one window (strategies.py)."""
    return batch_geometry(pool=pool, batch=3, channels=4, kernel=5, pad=2, stride=3, extra=6)


def images(rng, shape, dtype, channels_last):
    """Random (N, C, H, W) data, stored channels-last or plainly."""
    N, C, H, W = shape
    if channels_last:
        return rng.standard_normal((N, H, W, C)).astype(dtype).transpose(0, 3, 1, 2)
    return rng.standard_normal(shape).astype(dtype)


def tol(dtype):
    return dict(rtol=1e-4, atol=1e-5) if dtype == np.float32 else dict(rtol=1e-10, atol=1e-12)


# -- im2col / col2im -------------------------------------------------------------------

@settings(max_examples=EXAMPLES)
@given(g=geometry(), dtype=DTYPES, cl=st.booleans(), seed=st.integers(0, 2**16))
@example(g=(1, 2, 3, 5, 3, 5, 1, 1, 0, 0), dtype=np.float32, cl=False, seed=0)  # kernel = input
@example(g=(2, 1, 2, 3, 4, 5, 2, 3, 1, 1), dtype=np.float64, cl=True, seed=1)   # = padded input
def test_im2col_and_col2im_match_the_reference(g, dtype, cl, seed):
    N, C, H, W, KH, KW, SH, SW, PH, PW = g
    rng = np.random.default_rng(seed)
    x = images(rng, (N, C, H, W), dtype, cl)
    cols = FAST.im2col(x, KH, KW, SH, SW, PH, PW)
    np.testing.assert_array_equal(cols, REF.im2col(x, KH, KW, SH, SW, PH, PW))
    assert cols.dtype == dtype
    gcols = rng.standard_normal(cols.shape).astype(dtype)
    got = FAST.col2im(gcols, x.shape, KH, KW, SH, SW, PH, PW)
    np.testing.assert_array_equal(got, REF.col2im(gcols, x.shape, KH, KW, SH, SW, PH, PW))


# -- convolution -----------------------------------------------------------------------

@settings(max_examples=EXAMPLES)
@given(g=geometry(), OC=st.integers(1, 5), dtype=DTYPES, cl=st.booleans(),
       bias=st.booleans(), direct=st.booleans(), seed=st.integers(0, 2**16))
@example(g=(2, 3, 4, 6, 4, 6, 1, 1, 0, 0), OC=2, dtype=np.float32, cl=True, bias=True,
         direct=False, seed=3)
@example(g=(2, 6, 7, 8, 3, 4, 2, 1, 1, 2), OC=3, dtype=np.float64, cl=False, bias=True,
         direct=False, seed=4)
@example(g=(1, 9, 5, 6, 2, 5, 1, 2, 2, 0), OC=2, dtype=np.float32, cl=True, bias=False,
         direct=False, seed=5)
def test_conv_forward_and_backward_match_the_reference(g, OC, dtype, cl, bias, direct, seed,
                                                       monkeypatch):
    """Every lowering: im2col + GEMM (``direct=False`` also sends stride-1 layers there)
    and, for stride 1, the direct path (tested on its own in test_kernels_direct.py)."""
    N, C, H, W, KH, KW, SH, SW, PH, PW = g
    monkeypatch.setattr(cpu.KERNELS.engine, "direct", ENGINE_DIRECT if direct else None)
    rng = np.random.default_rng(seed)
    x = images(rng, (N, C, H, W), dtype, cl)
    w = rng.standard_normal((OC, C, KH, KW)).astype(dtype)
    b = rng.standard_normal(OC).astype(dtype) if bias else None
    y_ref, s_ref = REF.conv2d_forward(x, w, b, SH, SW, PH, PW, True)
    y, s = FAST.conv2d_forward(x, w, b, SH, SW, PH, PW, True)
    assert y.shape == y_ref.shape and y.dtype == dtype
    np.testing.assert_allclose(y, y_ref, **tol(dtype))
    # an upstream gradient in plain (N, C, H, W) memory, unlike y's channels-last
    gy = rng.standard_normal(y.shape).astype(dtype)
    for need in [(True, True, bias), (False, True, bias), (True, False, False)]:
        assert_gradients_match(FAST.conv2d_backward(gy, s, *need),
                               REF.conv2d_backward(gy, s_ref, *need), dtype, **tol(dtype))


@settings(max_examples=40)
@given(mr=st.sampled_from([(2, 3), (4, 3), (2, 5)]), N=st.integers(1, 3),
       C=st.integers(1, 5), OC=st.integers(1, 5), H=st.integers(1, 11), W=st.integers(1, 11),
       PH=st.integers(0, 4), PW=st.integers(0, 4), dtype=DTYPES, cl=st.booleans(),
       bias=st.booleans(), small=st.booleans(), seed=st.integers(0, 2**16))
@example(mr=(2, 3), N=2, C=3, OC=4, H=12, W=12, PH=1, PW=1, dtype=np.float32, cl=True,
         bias=True, small=False, seed=0)                            # AlexNet's 3x3 layers
@example(mr=(4, 3), N=2, C=3, OC=4, H=12, W=12, PH=1, PW=1, dtype=np.float32, cl=True,
         bias=True, small=False, seed=0)                            # the same by F(4, 3)
@example(mr=(4, 3), N=2, C=3, OC=2, H=9, W=7, PH=0, PW=2, dtype=np.float64, cl=False,
         bias=True, small=True, seed=2)                             # partial F(4, 3) tiles
@example(mr=(2, 5), N=2, C=3, OC=4, H=26, W=26, PH=2, PW=2, dtype=np.float32, cl=True,
         bias=True, small=False, seed=1)                            # AlexNet's 5x5 layer
def test_winograd_conv_matches_the_reference(mr, N, C, OC, H, W, PH, PW, dtype, cl, bias,
                                             small, seed, monkeypatch):
    """3x3 and 5x5 stride-1 layers take the Winograd F(mxm, rxr) path: odd sizes
    (partial tiles), every padding below r, one image per chunk or all at once."""
    m, r = mr
    PH, PW = min(PH, r - 1), min(PW, r - 1)
    if H + 2 * PH < r or W + 2 * PW < r:
        return
    monkeypatch.setattr(fastconv, "WINOGRAD_MIN_CHANNELS", 1)
    monkeypatch.setattr(fastconv, "WINOGRAD_F43", m == 4)
    if small:
        monkeypatch.setattr(cpu.KERNELS.engine.winograd, "chunk_bytes", 1)
    rng = np.random.default_rng(seed)
    x = images(rng, (N, C, H, W), dtype, cl)
    w = rng.standard_normal((OC, C, r, r)).astype(dtype)
    b = rng.standard_normal(OC).astype(dtype) if bias else None
    y_ref, s_ref = REF.conv2d_forward(x, w, b, 1, 1, PH, PW, True)
    y, s = FAST.conv2d_forward(x, w, b, 1, 1, PH, PW, True)
    assert (s.winograd, s.winograd_m) == (r, m) and y.dtype == dtype
    t = tol(dtype) if dtype == np.float64 else dict(rtol=1e-3, atol=1e-4 * r * r)
    np.testing.assert_allclose(y, y_ref, **t)
    gy = rng.standard_normal(y.shape).astype(dtype)
    assert_gradients_match(FAST.conv2d_backward(gy, s, True, True, bias),
                           REF.conv2d_backward(gy, s_ref, True, True, bias), dtype, **t)


@pytest.mark.parametrize("m, r", [(2, 3), (4, 3), (2, 5)])
def test_winograd_matrices_compute_a_correlation(m, r):
    """y = A^T [(G g) * (B^T d)] is the 1-D correlation of d (m+r-1 values) with g (r):
    its m outputs."""
    AT, G, BT = winograd.MATRICES[m, r]
    n = m + r - 1
    assert AT.shape == (m, n) and G.shape == (n, r) and BT.shape == (n, n)
    rng = np.random.default_rng(r)
    for _ in range(5):
        g, d = rng.standard_normal(r), rng.standard_normal(n)
        np.testing.assert_allclose(AT @ ((G @ g) * (BT @ d)),
                                   [g @ d[i:i + r] for i in range(m)], rtol=1e-12, atol=1e-12)


def test_winograd43_matrices_are_toom_cook_at_0_1_minus1_2_minus2_inf():
    """A^T and G of F(4, 3) from the points, as winograd.py's comment derives them:
    A^T[i, j] = p_j^i, G[j] = (1, p_j, p_j^2) / prod over the other points (p_j - p_l),
    with the point at infinity last (A^T: 1 in the last row only; G: (0, 0, 1))."""
    AT, G, _ = winograd.MATRICES[4, 3]
    p = np.array([0.0, 1, -1, 2, -2])
    at = np.zeros((4, 6))
    at[:, :5] = p[None, :] ** np.arange(4)[:, None]
    at[3, 5] = 1
    g = np.zeros((6, 3))
    for j in range(5):
        g[j] = p[j] ** np.arange(3) / np.prod([p[j] - q for q in np.delete(p, j)])
    g[5, 2] = 1
    np.testing.assert_array_equal(AT, at)
    np.testing.assert_allclose(G, g, rtol=1e-15)


@pytest.mark.parametrize("m, r, module", [(2, 5, "numba_winograd5"), (4, 3, "numba_winograd4")])
def test_written_out_winograd_transforms_are_the_matrices(m, r, module):
    """numba_winograd5.py writes B^T d, A^T m and A g of F(2, 5) out by hand, and
    numba_winograd4.py A^T m and A g of F(4, 3) (its B^T is F(2, 5)'s): the matrices."""
    loops = importlib.import_module(f"tinyalex.kernels.{module}")
    AT, _, BT = winograd.MATRICES[m, r]
    rng = np.random.default_rng(7)
    for _ in range(5):
        d, g = rng.standard_normal(m + r - 1), rng.standard_normal(m)
        if hasattr(loops, "_bt"):
            np.testing.assert_allclose(loops._bt(*d), BT @ d, rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(loops._at(*d), AT @ d, rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(loops._a(*g), AT.T @ g, rtol=1e-12, atol=1e-12)


def test_winograd43_float32_error_at_alexnets_3x3_layers(monkeypatch):
    """F(4x4, 3x3)'s larger constants cost float32 accuracy: at a 3x3 layer of AlexNet's
    width (256 -> 384 channels, 12x12, post-ReLU data, He-scaled filters) the output and
    both gradients stay within 1e-4 of the output's scale of the float64 reference
    (measured: ~1e-5, against ~1e-6 for F(2x2, 3x3))."""
    monkeypatch.setattr(fastconv, "WINOGRAD_F43", True)
    rng = np.random.default_rng(9)
    C, OC = 256, 384
    x = np.maximum(rng.standard_normal((2, C, 12, 12)), 0)
    w = rng.standard_normal((OC, C, 3, 3)) * np.sqrt(2 / (9 * C))
    y64, s64 = REF.conv2d_forward(x, w, None, 1, 1, 1, 1, True)
    gy = rng.standard_normal(y64.shape)
    y, s = FAST.conv2d_forward(x.astype(np.float32), w.astype(np.float32), None, 1, 1, 1, 1,
                               True)
    assert s.winograd_m == 4
    gx, gw, _ = FAST.conv2d_backward(gy.astype(np.float32), s, True, True, False)
    gx64, gw64, _ = REF.conv2d_backward(gy, s64, True, True, False)
    for got, want in ((y, y64), (gx, gx64), (gw, gw64)):
        assert np.abs(got - want).max() <= 1e-4 * np.abs(want).max()


def test_winograd_is_used_only_where_it_pays():
    g = fastconv.Geometry(32, 96, 26, 26, 256, 5, 5, 1, 1, 2, 2, 26, 26)
    assert fastconv.winograd_size(g) == 5                       # AlexNet's second layer
    assert fastconv.winograd_size(g.__class__(**{**g.__dict__, "C": 1})) == 0   # LeNet's first
    assert fastconv.winograd_size(g.__class__(**{**g.__dict__, "SH": 2})) == 0
    assert fastconv.winograd_size(g.__class__(**{**g.__dict__, "KH": 3, "KW": 3})) == 3
    assert fastconv.winograd_tile(3) == 4 and fastconv.winograd_tile(5) == 2


@pytest.mark.parametrize("C, KW", [(3, 2), (9, 4)])     # short window rows (colsT), long
def test_conv_in_chunks_matches_one_chunk(monkeypatch, C, KW):
    """A workspace smaller than one image's columns: one image per GEMM."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((5, C, 9, 7)).astype(np.float32)
    w = rng.standard_normal((4, C, 3, KW)).astype(np.float32)
    b = rng.standard_normal(4).astype(np.float32)
    y_ref, s_ref = REF.conv2d_forward(x, w, b, 2, 1, 1, 1, True)
    monkeypatch.setattr(cpu.KERNELS.engine, "chunk_bytes", 1)
    y, s = FAST.conv2d_forward(x, w, b, 2, 1, 1, 1, True)
    np.testing.assert_allclose(y, y_ref, rtol=1e-5, atol=1e-5)
    gy = rng.standard_normal(y.shape).astype(np.float32)
    for a, e in zip(FAST.conv2d_backward(gy, s, True, True, True),
                    REF.conv2d_backward(gy, s_ref, True, True, True)):
        np.testing.assert_allclose(a, e, rtol=1e-4, atol=1e-4)


# -- pooling ---------------------------------------------------------------------------

@settings(max_examples=EXAMPLES)
@given(g=geometry(pool=True), dtype=DTYPES, cl=st.booleans(), ties=st.booleans(),
       seed=st.integers(0, 2**16))
@example(g=(1, 2, 3, 3, 3, 3, 1, 1, 1, 1), dtype=np.float32, cl=False, ties=True, seed=0)
def test_max_pool_matches_the_reference(g, dtype, cl, ties, seed):
    N, C, H, W, KH, KW, SH, SW, PH, PW = g
    rng = np.random.default_rng(seed)
    x = images(rng, (N, C, H, W), dtype, cl)
    if ties:                     # many equal values: the first maximum must win, as argmax
        x = np.round(x).astype(dtype)
    y_ref, arg_ref = REF.max_pool2d_forward(x, KH, KW, SH, SW, PH, PW)
    y, arg = FAST.max_pool2d_forward(x, KH, KW, SH, SW, PH, PW)
    np.testing.assert_array_equal(y, y_ref)
    gy = rng.standard_normal(y.shape).astype(dtype)
    np.testing.assert_array_equal(
        FAST.max_pool2d_backward(gy, arg, x.shape, KH, KW, SH, SW, PH, PW),
        REF.max_pool2d_backward(gy, arg_ref, x.shape, KH, KW, SH, SW, PH, PW))


def test_max_pool_nan_and_infinity_as_the_reference():
    x = np.array([[[[1.0, np.nan, 3.0], [np.nan, -np.inf, 2.0], [-np.inf, -np.inf, 0.5]]]],
                 dtype=np.float32)
    for geometry in [(2, 2, 1, 1, 0, 0), (3, 3, 1, 1, 1, 1), (2, 3, 1, 2, 1, 1)]:
        y_ref, a_ref = REF.max_pool2d_forward(x, *geometry)
        y, a = FAST.max_pool2d_forward(x, *geometry)
        np.testing.assert_array_equal(y, y_ref)
        gy = np.arange(1, y.size + 1, dtype=np.float32).reshape(y.shape)
        np.testing.assert_array_equal(FAST.max_pool2d_backward(gy, a, x.shape, *geometry),
                                      REF.max_pool2d_backward(gy, a_ref, x.shape, *geometry))


@settings(max_examples=EXAMPLES)
@given(g=geometry(pool=True), dtype=DTYPES, cl=st.booleans(), seed=st.integers(0, 2**16))
def test_avg_pool_matches_the_reference(g, dtype, cl, seed):
    N, C, H, W, KH, KW, SH, SW, PH, PW = g
    rng = np.random.default_rng(seed)
    x = images(rng, (N, C, H, W), dtype, cl)
    y = FAST.avg_pool2d_forward(x, KH, KW, SH, SW, PH, PW)
    np.testing.assert_allclose(y, REF.avg_pool2d_forward(x, KH, KW, SH, SW, PH, PW),
                               **tol(dtype))
    gy = rng.standard_normal(y.shape).astype(dtype)
    np.testing.assert_allclose(FAST.avg_pool2d_backward(gy, x.shape, KH, KW, SH, SW, PH, PW),
                               REF.avg_pool2d_backward(gy, x.shape, KH, KW, SH, SW, PH, PW),
                               **tol(dtype))


# -- elementwise -----------------------------------------------------------------------

shapes = st.lists(st.integers(1, 5), min_size=1, max_size=4).map(tuple)


@settings(max_examples=EXAMPLES)
@given(shape=shapes, dtype=DTYPES, transpose=st.booleans(), seed=st.integers(0, 2**16),
       p=st.sampled_from([0.0, 0.1, 0.5, 0.9, 1.0]))
def test_elementwise_kernels_match_the_reference(shape, dtype, transpose, seed, p):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(shape).astype(dtype) * 4
    x[x > 5] = 0.0                                           # some exact zeros for ReLU
    if transpose:
        x = x.T                                              # any memory order
    gy = rng.standard_normal(x.shape).astype(dtype)
    y = FAST.relu_forward(x)
    np.testing.assert_array_equal(y, REF.relu_forward(x))
    np.testing.assert_array_equal(FAST.relu_backward(gy, y), REF.relu_backward(gy, y))
    s = FAST.sigmoid_forward(x)
    np.testing.assert_allclose(s, REF.sigmoid_forward(x), **tol(dtype))
    np.testing.assert_allclose(FAST.sigmoid_backward(gy, s), REF.sigmoid_backward(gy, s),
                               **tol(dtype))
    np.testing.assert_array_equal(FAST.dropout(x, p, seed), REF.dropout(x, p, seed))


def test_sigmoid_saturates_without_warnings_as_the_reference():
    x = np.array([-1e4, -100.0, -89.0, -20.0, 0.0, 20.0, 100.0, 1e4, np.nan], np.float32)
    with np.errstate(over="raise", invalid="raise"):
        got = FAST.sigmoid_forward(x)
    np.testing.assert_allclose(got, REF.sigmoid_forward(x), rtol=1e-6, atol=1e-30)
    assert got[0] == 0.0 and got[-2] == 1.0 and np.isnan(got[-1])


def test_sgd_update_is_in_place_and_matches_the_reference():
    rng = np.random.default_rng(3)
    for dtype in (np.float32, np.float64):
        p = rng.standard_normal((7, 5)).astype(dtype)
        g = rng.standard_normal((5, 7)).astype(dtype).T          # any memory order
        want = REF.sgd_update(p.copy(), g, 0.1)
        out = FAST.sgd_update(p, g, 0.1)
        assert out is p
        np.testing.assert_allclose(p, want, rtol=1e-6)


def test_dropout_mask_is_splitmix64_and_keeps_one_minus_p():
    # SplitMix64's published first outputs for the seed 1234567
    np.testing.assert_array_equal(tinyalex.random.splitmix64(1234567, 3),
                                  np.array([6457827717110365317, 3203168211198807973,
                                            9817491932198370423], dtype=np.uint64))
    x = np.ones(200_000, np.float32)
    y = FAST.dropout(x, 0.3, 99)
    assert abs((y > 0).mean() - 0.7) < 0.005
    np.testing.assert_allclose(np.unique(y), [0.0, 1 / 0.7], rtol=1e-6)
    assert not np.array_equal(y, FAST.dropout(x, 0.3, 100))      # another seed, another mask


# -- the switch, the checks, the buffer contract -----------------------------------------

def test_the_switch_selects_fast_or_reference():
    x = np.zeros((1, 1, 3, 3), np.float32)
    assert kernels.select(x).mode == kernels.get_mode()
    with kernels.use("reference"):
        k = kernels.select(x)
        assert k.mode == "reference" and set(k.sources.values()) == {"reference"}
    with kernels.use("fast"):
        k = kernels.select(x)
        assert k.sources["conv2d_forward"] == "fast" and k.im2col is cpu.TABLE["im2col"]
    with pytest.raises(ValueError, match="unknown kernel mode 'quick'"):
        kernels.set_mode("quick")
    code = "import tinyalex.kernels as k; print(k.get_mode())"
    for value, want in [("reference", "reference"), ("fast", "fast")]:
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                             env=dict(os.environ, TINYALEX_KERNELS=value), check=True)
        assert out.stdout.strip() == want
    bad = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env=dict(os.environ, TINYALEX_KERNELS="turbo"))
    assert bad.returncode != 0 and "TINYALEX_KERNELS='turbo' is not a kernel mode" in bad.stderr


def test_bad_arguments_are_refused_before_compiled_code():
    x = np.zeros((2, 3, 5, 5), np.float32)
    k = cpu.KERNELS
    with pytest.raises(ValueError, match="window does not fit"):
        FAST.im2col(x, 7, 7, 1, 1, 0, 0)
    with pytest.raises(ValueError, match="SH must be an int >= 1"):
        FAST.max_pool2d_forward(x, 2, 2, 0, 1, 0, 0)
    with pytest.raises(ValueError, match="col2im: cols of shape"):
        FAST.col2im(np.zeros((3, 4), np.float32), x.shape, 2, 2)
    y, arg = FAST.max_pool2d_forward(x, 2, 2, 2, 2, 0, 0)
    with pytest.raises(ValueError, match="max_pool2d backward"):
        FAST.max_pool2d_backward(np.zeros_like(y), arg[:1], x.shape, 2, 2, 2, 2, 0, 0)
    with pytest.raises(ValueError, match="avg_pool2d backward"):
        FAST.avg_pool2d_backward(np.zeros((2, 3, 9, 9), np.float32), x.shape, 2, 2, 2, 2, 0, 0)
    y, saved = FAST.conv2d_forward(x, np.zeros((4, 3, 3, 3), np.float32), None, 1, 1, 0, 0, True)
    with pytest.raises(ValueError, match="conv2d backward: gradient of shape"):
        FAST.conv2d_backward(np.zeros((2, 4, 2, 2), np.float32), saved, True, True, False)
    g = saved.g
    with pytest.raises(ValueError, match="im2col: inconsistent sizes"):
        k._im2col_nhwc(np.zeros((2, 5, 5, 3), np.float32), 0, 3, g, np.zeros((27, 27), np.float32))
    with pytest.raises(ValueError, match="col2im: inconsistent sizes"):
        k._col2im_nhwc(np.zeros((9, 27), np.float32), 0, 1, g, np.zeros((2, 5, 5, 3), np.float64))
    with pytest.raises(ValueError, match="dropout: p must lie in"):
        FAST.dropout(x, 1.5, 0)
    with pytest.raises(ValueError, match="dropout: p must lie in"):
        FAST.dropout(x, 0.5, -1)


def test_other_dtypes_fall_back_to_the_reference():
    x = np.random.default_rng(0).standard_normal((1, 2, 4, 4)).astype(np.float16)
    np.testing.assert_array_equal(FAST.im2col(x, 2, 2), REF.im2col(x, 2, 2))
    np.testing.assert_array_equal(FAST.max_pool2d_forward(x, 2, 2, 2, 2, 0, 0)[0],
                                  REF.max_pool2d_forward(x, 2, 2, 2, 2, 0, 0)[0])
    np.testing.assert_array_equal(FAST.relu_forward(x), REF.relu_forward(x))


def test_results_never_alias_the_reused_workspace():
    """im2col + GEMM (stride 2 here) reuses one workspace across calls."""
    rng = np.random.default_rng(1)
    x = rng.standard_normal((3, 4, 8, 8)).astype(np.float32)
    w = rng.standard_normal((5, 4, 3, 3)).astype(np.float32)
    y1, s1 = FAST.conv2d_forward(x, w, None, 2, 2, 1, 1, True)
    assert not s1.direct and not s1.winograd
    gy = rng.standard_normal(y1.shape).astype(np.float32)
    gx1, gw1, _ = FAST.conv2d_backward(gy, s1, True, True, False)
    kept = [a.copy() for a in (y1, gx1, gw1)]
    buffers = list(cpu.KERNELS.engine.workspace.buffers.values())
    assert buffers, "the conv engine should have used its workspace"
    for a in (y1, gx1, gw1):
        assert not any(np.shares_memory(a, b) for b in buffers)
    # more calls of other shapes reuse (and grow) the workspace; earlier results stay
    for _ in range(2):
        x2 = rng.standard_normal((2, 4, 11, 9)).astype(np.float32)
        y2, s2 = FAST.conv2d_forward(x2, w, None, 2, 1, 0, 0, True)
        FAST.conv2d_backward(np.ones(y2.shape, np.float32), s2, True, True, False)
    for a, k in zip((y1, gx1, gw1), kept):
        np.testing.assert_array_equal(a, k)


def test_a_training_step_is_the_same_with_fast_and_reference_kernels():
    def step(mode):
        tinyalex.manual_seed(0)
        net = nn.Sequential(nn.Conv2d(2, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                            nn.Conv2d(4, 3, 3, stride=2), nn.Sigmoid(), nn.AvgPool2d(2, 1),
                            nn.Flatten(), nn.Linear(3, 5), nn.Dropout(0.5), nn.Linear(5, 3)).double()
        x = tinyalex.tensor(np.random.default_rng(2).standard_normal((4, 2, 10, 10)),
                            dtype=np.float64)
        with kernels.use(mode):
            loss = nn.CrossEntropyLoss()(net(x), tinyalex.tensor([0, 1, 2, 1]))
            loss.backward()
        return [loss.item()] + [p.grad.numpy() for p in net.parameters()]

    for a, b in zip(step("fast"), step("reference")):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12)


def test_tf32_flag_defaults_on_and_switches():
    """The GPU precision flag (its effect on a GEMM is checked by test_gpu_kernels.py)."""
    assert kernels.tf32_enabled()
    with kernels.tf32(False):
        assert not kernels.tf32_enabled()
    assert kernels.tf32_enabled()
    code = "import tinyalex.kernels as k; print(k.tf32_enabled())"
    for value, want in [("0", "False"), ("1", "True"), ("off", "False")]:
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                             env=dict(os.environ, TINYALEX_TF32=value), check=True)
        assert out.stdout.strip() == want
    bad = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env=dict(os.environ, TINYALEX_TF32="maybe"))
    assert bad.returncode != 0 and "TINYALEX_TF32='maybe'" in bad.stderr


def test_elementwise_in_parts_for_threads_matches_the_reference(monkeypatch):
    """Large arrays are cut into ranges, one per thread (``cpu._ranges``, ``cpu._split``):
    the sigmoid (float32 runs the vectorised loop with its own exp,
    ``numba_elementwise.py``, within a few ulp), ReLU, the SGD update, and pooling of
    channels-last images."""
    monkeypatch.setattr(cpu, "MIN_PART_ELEMENTS", 1000)
    rng = np.random.default_rng(4)
    for dtype in (np.float32, np.float64):
        x = (rng.standard_normal((7, 5, 301)) * 30).astype(dtype).transpose(2, 0, 1)
        assert len(cpu._ranges(x.size)) == (cpu.THREADS if cpu.SPLIT else 1)
        y = FAST.sigmoid_forward(x)
        np.testing.assert_allclose(y, REF.sigmoid_forward(x), rtol=4e-7, atol=1e-37)
        gy = rng.standard_normal(x.shape).astype(dtype)
        np.testing.assert_array_equal(FAST.sigmoid_backward(gy, y), REF.sigmoid_backward(gy, y))
        r = FAST.relu_forward(x)
        np.testing.assert_array_equal(r, REF.relu_forward(x))
        np.testing.assert_array_equal(FAST.relu_backward(gy, r), REF.relu_backward(gy, r))
        img = rng.standard_normal((7, 5, 20, 15)).astype(dtype).transpose(0, 3, 1, 2)
        #   (N, C, H, W) = (7, 15, 5, 20), channels-last memory
        for k in (2, 3):
            y_ref, a_ref = REF.max_pool2d_forward(img, k, k, k, k, 0, 0)
            y_fast, a_fast = FAST.max_pool2d_forward(img, k, k, k, k, 0, 0)
            np.testing.assert_array_equal(y_fast, y_ref)
            gp = rng.standard_normal(y_ref.shape).astype(dtype)
            np.testing.assert_array_equal(
                FAST.max_pool2d_backward(gp, a_fast, img.shape, k, k, k, k, 0, 0),
                REF.max_pool2d_backward(gp, a_ref, img.shape, k, k, k, k, 0, 0))
            np.testing.assert_allclose(FAST.avg_pool2d_forward(img, k, k, k, k, 0, 0),
                                       REF.avg_pool2d_forward(img, k, k, k, k, 0, 0),
                                       **tol(dtype))
            np.testing.assert_allclose(
                FAST.avg_pool2d_backward(gp, img.shape, k, k, k, k, 0, 0),
                REF.avg_pool2d_backward(gp, img.shape, k, k, k, k, 0, 0), **tol(dtype))
        p = np.ascontiguousarray(x)
        want = REF.sgd_update(p.copy(), gy, 0.3)
        assert FAST.sgd_update(p, gy, 0.3) is p
        np.testing.assert_array_equal(p, want)


@settings(max_examples=EXAMPLES)
@given(M=st.sampled_from([1, 3, 17, 40]), K=st.integers(1, 9),
       N=st.sampled_from([1, 5, 130, 300]), dtype=DTYPES, ta=st.booleans(), tb=st.booleans(),
       split=st.booleans(), seed=st.integers(0, 2**16))
def test_matmul_in_pieces_matches_the_reference(M, K, N, dtype, ta, tb, split, seed,
                                                monkeypatch):
    """The fully connected layers' GEMM: cut by rows (many rows) or by columns (few
    rows, many columns) into one GEMM per thread, or whole; operands in any order."""
    monkeypatch.setattr(cpu, "MIN_PIECE_FLOPS", 1 if split else 1 << 62)
    rng = np.random.default_rng(seed)
    a = rng.standard_normal((K, M) if ta else (M, K)).astype(dtype)
    b = rng.standard_normal((N, K) if tb else (K, N)).astype(dtype)
    a, b = (a.T if ta else a), (b.T if tb else b)
    got = FAST.matmul(a, b)
    assert got.shape == (M, N) and got.dtype == dtype and got.flags.c_contiguous
    assert not np.shares_memory(got, a) and not np.shares_memory(got, b)
    np.testing.assert_allclose(got, REF.matmul(a, b), **tol(dtype))


def test_malloc_setting_applies_and_can_be_turned_off():
    """The CPU set keeps freed memory for the next step (``allocator.py``) unless
    ``TINYALEX_MALLOC=default``; another value is refused, naming the variable."""
    code = "from tinyalex.kernels import cpu; print(cpu.MALLOC_KEEPS_FREED_MEMORY)"
    import platform
    glibc = sys.platform.startswith("linux") and platform.libc_ver()[0] == "glibc"
    want = {"keep": str(glibc), "default": "False"}
    for value, expected in want.items():
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                             env=dict(os.environ, TINYALEX_MALLOC=value), check=True)
        assert out.stdout.strip() == expected
    bad = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env=dict(os.environ, TINYALEX_MALLOC="jemalloc"))
    assert bad.returncode != 0 and "TINYALEX_MALLOC='jemalloc'" in bad.stderr


def test_recycler_reuses_only_what_nobody_holds():
    """recycle.py: a pooled array comes back only once no result or view of it is left."""
    from tinyalex.kernels.recycle import Recycler
    r = Recycler(min_bytes=1000, max_free_bytes=10**9)
    assert r.empty((10,), np.float32).base is None           # small: plain NumPy
    a = r.empty((100, 10), np.float32)
    b = r.empty((100, 10), np.float32)
    assert not np.shares_memory(a, b)
    view = a[3:].T                                           # a view keeps a's memory in use
    del a
    c = r.empty((1000,), np.float32)
    assert not np.shares_memory(c, view) and not np.shares_memory(c, b)
    address = view.base.__array_interface__["data"][0]
    del view
    d = r.empty((10, 100), np.float32)                       # now free: recycled
    assert d.base.__array_interface__["data"][0] == address
    assert r.empty((100, 10), np.float64).dtype == np.float64
    del b, c, d
    r.max_free_bytes = 4000
    e = r.empty((3000,), np.float32)                         # a new size trims the free ones
    assert r.free_bytes() <= 4000 and e.size == 3000


def test_recycled_results_never_alias_live_ones(monkeypatch):
    """With every matmul result recycled (threshold lowered to 1 byte), results agree with
    the reference and no live result shares memory with another."""
    monkeypatch.setattr(cpu.RESULTS, "min_bytes", 1)
    cpu.RESULTS.clear()
    rng = np.random.default_rng(8)
    x = rng.standard_normal((3, 4, 9, 9)).astype(np.float32)
    w = rng.standard_normal((5, 4, 3, 3)).astype(np.float32)
    live = []
    for stride in (1, 2, 1, 2):
        y, s = FAST.conv2d_forward(x, w, None, stride, stride, 1, 1, True)
        r = FAST.relu_forward(y)
        p, arg = FAST.max_pool2d_forward(r, 2, 2, 2, 2, 0, 0)
        m = FAST.matmul(p.reshape(3, -1), rng.standard_normal((p[0].size, 7)).astype(np.float32))
        gx, gw, _ = FAST.conv2d_backward(np.ones_like(y), s, True, True, False)
        live += [y, r, p, m, gx, gw]
        for i, a in enumerate(live):
            assert not any(np.shares_memory(a, b) for b in live[i + 1:])
        want = REF.conv2d_backward(np.ones_like(y), REF.conv2d_forward(x, w, None, stride,
                                                                      stride, 1, 1, True)[1],
                                   True, True, False)
        np.testing.assert_allclose(gx, want[0], rtol=1e-4, atol=1e-4)
        live = live[-6:] if stride == 2 else live        # drop some: their memory recycles
    assert cpu.RESULTS.free_bytes() > 0
