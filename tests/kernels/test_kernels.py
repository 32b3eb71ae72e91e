"""The fast CPU algorithms (Numba) against the readable references, on hypothesis-drawn
shapes, strides and paddings (kernel = input size and non-square included), forward
and backward, float32 and float64, inputs in both memory orders; the choosers and the
switches; argument checks before compiled code (the window ops': at their geometry,
tests/ops/test_geometry_contract.py); and the buffer contract (no result ever aliases
a reused workspace).

Exact equality where the fast loop adds in the reference's order (im2col, col2im,
max pooling, ReLU, dropout); a tolerance where BLAS or a different summation order
enters (convolution, average pooling, sigmoid).
"""

import importlib
import os
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import assume, example, given, settings, strategies as st

import tinyalex
import tinyalex.kernels as kernels
from tinyalex import nn
from tinyalex.kernels import (conv_direct_cpu, conv_im2col_cpu, conv_winograd_cpu,
                              cpu_threads, dense_cpu, elementwise_cpu, pool_cpu,
                              sgd_cpu)
from tinyalex.kernels.geometry import conv_geometry, pool_geometry
from tinyalex.ops import activation, conv, dense, pool
from tinyalex.ops.im2col import col2im, im2col
from tinyalex.optim import sgd_update_reference
from helpers.checks import assert_gradients_match
from helpers.strategies import batch_geometry

EXAMPLES = 25
IM2COL = conv_im2col_cpu.IM2COL_GEMM
F43, F25, F35, F63, F45 = (conv_winograd_cpu.WINOGRAD_F43, conv_winograd_cpu.WINOGRAD_F25,
                           conv_winograd_cpu.WINOGRAD_F35, conv_winograd_cpu.WINOGRAD_F63,
                           conv_winograd_cpu.WINOGRAD_F45)
DIRECT = conv_direct_cpu.DIRECT
REF = conv.REFERENCE
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


def conv_pair(algorithm, x, w, b, SH, SW, PH, PW, gy_rng, dtype, tolerance, needs=None):
    """Forward and every backward of ``algorithm`` against the reference's."""
    g = conv_geometry(x.shape, w.shape, SH, SW, PH, PW)
    y_ref, s_ref = REF.forward(x, w, b, g, True)
    y, s = algorithm.forward(x, w, b, g, True)
    assert y.shape == y_ref.shape and y.dtype == dtype
    np.testing.assert_allclose(y, y_ref, **tolerance)
    # an upstream gradient in plain (N, C, H, W) memory, unlike y's channels-last
    gy = gy_rng.standard_normal(y.shape).astype(dtype)
    bias = b is not None
    for need in needs or [(True, True, bias), (False, True, bias), (True, False, False)]:
        assert_gradients_match(algorithm.backward(gy, s, *need),
                               REF.backward(gy, s_ref, *need), dtype, **tolerance)
    return s


# -- im2col / col2im -------------------------------------------------------------------

@settings(max_examples=EXAMPLES)
@given(g=geometry(), dtype=DTYPES, cl=st.booleans(), transposed=st.booleans(),
       seed=st.integers(0, 2**16))
@example(g=(1, 2, 3, 5, 3, 5, 1, 1, 0, 0), dtype=np.float32, cl=False, transposed=False,
         seed=0)                                                    # kernel = input
@example(g=(2, 1, 2, 3, 4, 5, 2, 3, 1, 1), dtype=np.float64, cl=True, transposed=True,
         seed=1)                                                    # = padded input
def test_im2col_and_col2im_loops_match_the_reference(g, dtype, cl, transposed, seed,
                                                    monkeypatch):
    """The fast columns are the reference's matrix, (c, kh, kw) order, stored row-major
    or transposed, from plain or channels-last memory; col2im equals the reference's
    bit for bit (the same order of additions)."""
    N, C, H, W, KH, KW, SH, SW, PH, PW = g
    monkeypatch.setattr(conv_im2col_cpu, "SHORT_ROW", 10**9 if transposed else 0)
    rng = np.random.default_rng(seed)
    x = images(rng, (N, C, H, W), dtype, cl)
    geo = conv_geometry(x.shape, (1, C, KH, KW), SH, SW, PH, PW)
    cols = IM2COL.columns(x, 0, N, geo, x.dtype)
    assert IM2COL.transposed(geo) == transposed
    assert (cols.T if transposed else cols).flags.c_contiguous     # how it is stored
    np.testing.assert_array_equal(cols, im2col(x, KH, KW, SH, SW, PH, PW))
    gcols = rng.standard_normal(cols.shape).astype(dtype)
    gx = np.empty((N, C, H, W), dtype)
    IM2COL.col2im(gcols, 0, N, geo, gx)
    np.testing.assert_array_equal(gx, col2im(gcols, x.shape, KH, KW, SH, SW, PH, PW))


@settings(max_examples=EXAMPLES)
@given(g=geometry(), dtype=DTYPES, cl=st.booleans(), seed=st.integers(0, 2**16))
@example(g=(2, 3, 5, 4, 3, 3, 2, 2, 1, 1), dtype=np.float32, cl=False, seed=0)  # stride 2
def test_channels_last_columns_and_col2im_are_the_references_reordered(g, dtype, cl,
                                                                       seed):
    """im2col_nhwc's columns are the reference's matrix with its columns in (kh, kw, c)
    order; col2im_nhwc equals the reference's col2im bit for bit (the same additions in
    the same (kh, kw) order), in channels-last memory."""
    from tinyalex.kernels import numba_im2col
    from tinyalex.kernels.layout import as_nhwc
    N, C, H, W, KH, KW, SH, SW, PH, PW = g
    rng = np.random.default_rng(seed)
    x = images(rng, (N, C, H, W), dtype, cl)
    geo = conv_geometry(x.shape, (1, C, KH, KW), SH, SW, PH, PW)
    cols = IM2COL.columns_nhwc(as_nhwc(np, x), 0, N, geo)
    ref = im2col(x, KH, KW, SH, SW, PH, PW)                        # columns (c, kh, kw)
    reordered = ref.reshape(-1, C, KH, KW).transpose(0, 2, 3, 1).reshape(ref.shape)
    np.testing.assert_array_equal(cols, reordered)
    gcols = rng.standard_normal(cols.shape).astype(dtype)         # columns (kh, kw, c)
    gx = np.empty((N, H, W, C), dtype)
    numba_im2col.col2im_nhwc(gcols, 0, N, KH, KW, SH, SW, PH, PW, geo.OH, geo.OW, gx,
                             gx.dtype.type(0))
    as_ref = gcols.reshape(-1, KH, KW, C).transpose(0, 3, 1, 2).reshape(gcols.shape)
    np.testing.assert_array_equal(gx.transpose(0, 3, 1, 2),
                                  col2im(as_ref, x.shape, KH, KW, SH, SW, PH, PW))


# -- convolution -----------------------------------------------------------------------

@settings(max_examples=EXAMPLES)
@given(g=geometry(), OC=st.integers(1, 5), dtype=DTYPES, cl=st.booleans(),
       bias=st.booleans(), seed=st.integers(0, 2**16))
@example(g=(2, 3, 4, 6, 4, 6, 1, 1, 0, 0), OC=2, dtype=np.float32, cl=True, bias=True, seed=3)
@example(g=(2, 6, 7, 8, 3, 4, 2, 1, 1, 2), OC=3, dtype=np.float64, cl=False, bias=True, seed=4)
@example(g=(1, 9, 5, 6, 2, 5, 1, 2, 2, 0), OC=2, dtype=np.float32, cl=True, bias=False, seed=5)
@example(g=(2, 4, 7, 6, 3, 3, 2, 2, 1, 1), OC=3, dtype=np.float32, cl=False, bias=True,
         seed=6)                                          # columns (kh, kw, c) below
def test_im2col_gemm_conv_matches_the_reference(g, OC, dtype, cl, bias, seed, monkeypatch):
    """Both column orders: (c, kh, kw) from the input as it lies, and (kh, kw, c) from
    channels-last input (CHANNELS_LAST_MIN lowered to the drawn channels half the time)."""
    N, C, H, W, KH, KW, SH, SW, PH, PW = g
    monkeypatch.setattr(conv_im2col_cpu, "CHANNELS_LAST_MIN", 1 if seed % 2 == 0 else 10**9)
    rng = np.random.default_rng(seed)
    x = images(rng, (N, C, H, W), dtype, cl)
    w = rng.standard_normal((OC, C, KH, KW)).astype(dtype)
    b = rng.standard_normal(OC).astype(dtype) if bias else None
    conv_pair(IM2COL, x, w, b, SH, SW, PH, PW, rng, dtype, tol(dtype))


@settings(max_examples=40)
@given(winograd=st.sampled_from(["F43", "F25", "F35", "F63", "F45"]), N=st.integers(1, 3),
       C=st.integers(1, 5), OC=st.integers(1, 5), H=st.integers(1, 11), W=st.integers(1, 11),
       PH=st.integers(0, 4), PW=st.integers(0, 4), dtype=DTYPES, cl=st.booleans(),
       bias=st.booleans(), small=st.booleans(), seed=st.integers(0, 2**16))
@example(winograd="F43", N=2, C=3, OC=4, H=12, W=12, PH=1, PW=1, dtype=np.float32, cl=True,
         bias=True, small=False, seed=0)          # 3x3 on 12x12: AlexNet's map size
@example(winograd="F43", N=2, C=3, OC=2, H=9, W=7, PH=0, PW=2, dtype=np.float64, cl=False,
         bias=True, small=True, seed=2)                             # partial F(4, 3) tiles
@example(winograd="F25", N=2, C=3, OC=4, H=26, W=26, PH=2, PW=2, dtype=np.float32, cl=True,
         bias=True, small=False, seed=1)          # 5x5 on 26x26: AlexNet's map size
@example(winograd="F35", N=2, C=3, OC=4, H=26, W=26, PH=2, PW=2, dtype=np.float32, cl=True,
         bias=True, small=True, seed=1)           # 26 = 8 * 3 + 2: partial F(3, 5) tiles
@example(winograd="F35", N=1, C=2, OC=3, H=7, W=9, PH=1, PW=0, dtype=np.float64, cl=False,
         bias=False, small=False, seed=3)
@example(winograd="F63", N=2, C=3, OC=4, H=12, W=12, PH=1, PW=1, dtype=np.float32, cl=True,
         bias=True, small=True, seed=4)           # 3x3 on 12x12: AlexNet's, 2x2 tiles
@example(winograd="F63", N=1, C=2, OC=3, H=13, W=8, PH=2, PW=0, dtype=np.float64, cl=False,
         bias=True, small=False, seed=5)                            # partial F(6, 3) tiles
@example(winograd="F45", N=2, C=3, OC=4, H=26, W=26, PH=2, PW=2, dtype=np.float32, cl=True,
         bias=True, small=True, seed=6)           # 5x5 on 26x26: AlexNet's, 7x7 tiles
@example(winograd="F45", N=1, C=2, OC=3, H=9, W=11, PH=4, PW=1, dtype=np.float64, cl=False,
         bias=False, small=False, seed=7)                           # partial F(4, 5) tiles
def test_winograd_conv_matches_the_reference(winograd, N, C, OC, H, W, PH, PW, dtype, cl,
                                             bias, small, seed, monkeypatch):
    """3x3 and 5x5 stride-1 layers by Winograd F(mxm, rxr): odd sizes (partial tiles),
    every padding below r, one image per chunk or all at once; any channel count
    (``takes`` would refuse fewer than 96, which is only a speed rule)."""
    algorithm = {"F43": F43, "F25": F25, "F35": F35, "F63": F63, "F45": F45}[winograd]
    r = algorithm.r
    PH, PW = min(PH, r - 1), min(PW, r - 1)
    assume(H + 2 * PH >= r and W + 2 * PW >= r)
    if small:
        monkeypatch.setattr(algorithm, "chunk_bytes", 1)
    rng = np.random.default_rng(seed)
    x = images(rng, (N, C, H, W), dtype, cl)
    w = rng.standard_normal((OC, C, r, r)).astype(dtype)
    b = rng.standard_normal(OC).astype(dtype) if bias else None
    t = tol(dtype) if dtype == np.float64 else dict(rtol=1e-3, atol=1e-4 * r * r)
    conv_pair(algorithm, x, w, b, 1, 1, PH, PW, rng, dtype, t,
              needs=[(True, True, bias), (False, True, False), (True, False, bias)])


@pytest.mark.parametrize("algorithm", [F43, F25, F35, F63, F45], ids=lambda a: a.name)
def test_winograd_matrices_compute_a_correlation(algorithm):
    """y = A^T [(G g) * (B^T d)] is the 1-D correlation of d (m+r-1 values) with g (r):
    its m outputs."""
    m, r, AT, G, BT = algorithm.m, algorithm.r, algorithm.AT, algorithm.G, algorithm.BT
    n = m + r - 1
    assert AT.shape == (m, n) and G.shape == (n, r) and BT.shape == (n, n)
    rng = np.random.default_rng(r)
    for _ in range(5):
        g, d = rng.standard_normal(r), rng.standard_normal(n)
        np.testing.assert_allclose(AT @ ((G @ g) * (BT @ d)),
                                   [g @ d[i:i + r] for i in range(m)], rtol=1e-12, atol=1e-12)


def test_winograd43_matrices_are_toom_cook_at_0_1_minus1_2_minus2_inf():
    """A^T and G of F(4, 3) from the points, as conv_winograd_cpu.py's comment derives
    them: A^T[i, j] = p_j^i, G[j] = (1, p_j, p_j^2) / prod over the other points
    (p_j - p_l), with the point at infinity last (A^T: 1 in the last row only;
    G: (0, 0, 1))."""
    p = np.array([0.0, 1, -1, 2, -2])
    at = np.zeros((4, 6))
    at[:, :5] = p[None, :] ** np.arange(4)[:, None]
    at[3, 5] = 1
    g = np.zeros((6, 3))
    for j in range(5):
        g[j] = p[j] ** np.arange(3) / np.prod([p[j] - q for q in np.delete(p, j)])
    g[5, 2] = 1
    np.testing.assert_array_equal(F43.AT, at)
    np.testing.assert_allclose(F43.G, g, rtol=1e-15)


@pytest.mark.parametrize("algorithm, module", [(F25, "numba_winograd_f25"),
                                               (F43, "numba_winograd_f43"),
                                               (F35, "numba_winograd_f35"),
                                               (F63, "numba_winograd_f63"),
                                               (F45, "numba_winograd_f45")])
def test_written_out_winograd_transforms_are_the_matrices(algorithm, module):
    """numba_winograd_f25.py, numba_winograd_f35.py and numba_winograd_f63.py write B^T d,
    its adjoint B u, A^T m and A g of F(2, 5), F(3, 5) and F(6, 3) out by hand, and
    numba_winograd_f43.py and numba_winograd_f45.py A^T m and A g of F(4, 3) and
    F(4, 5) (their B^T is F(2, 5)'s and F(6, 3)'s): the matrices."""
    loops = importlib.import_module(f"tinyalex.kernels.{module}")
    m, r = algorithm.m, algorithm.r
    rng = np.random.default_rng(7)
    for _ in range(5):
        d, g = rng.standard_normal(m + r - 1), rng.standard_normal(m)
        if hasattr(loops, "_bt"):
            np.testing.assert_allclose(loops._bt(*d), algorithm.BT @ d, rtol=1e-12, atol=1e-12)
            np.testing.assert_allclose(loops._btT(*d), algorithm.BT.T @ d, rtol=1e-12,
                                       atol=1e-12)
        np.testing.assert_allclose(loops._at(*d), algorithm.AT @ d, rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(loops._a(*g), algorithm.AT.T @ g, rtol=1e-12, atol=1e-12)


def test_winograd35_matrices_are_toom_cook_at_0_1_minus1_2_minus2_half_inf():
    """A^T, G and B^T of F(3, 5) from the points, as conv_winograd_cpu.py's comment
    derives them (B^T's rows: the coefficients, lowest power first, of the products of
    (x - p) over the other finite points; the last row over all of them)."""
    p = np.array([0.0, 1, -1, 2, -2, 0.5])
    at = np.zeros((3, 7))
    at[:, :6] = p[None, :] ** np.arange(3)[:, None]
    at[2, 6] = 1
    g, bt = np.zeros((7, 5)), np.zeros((7, 7))
    for j in range(6):
        others = np.delete(p, j)
        g[j] = p[j] ** np.arange(5) / np.prod(p[j] - others)
        bt[j, :6] = np.polynomial.polynomial.polyfromroots(others)
    g[6, 4] = 1
    bt[6] = np.polynomial.polynomial.polyfromroots(p)
    np.testing.assert_array_equal(F35.AT, at)
    np.testing.assert_allclose(F35.G, g, rtol=1e-15)
    np.testing.assert_allclose(F35.BT, bt, rtol=0, atol=1e-15)


@pytest.mark.parametrize("algorithm", [F63, F45], ids=lambda a: a.name)
def test_8x8_tile_matrices_are_toom_cook_at_0_1_minus1_2_minus2_halves_inf(algorithm):
    """A^T, G and B^T of F(6, 3) and F(4, 5) from the points 0, 1, -1, 2, -2, 1/2, -1/2
    and infinity, by F(3, 5)'s rules."""
    m, r = algorithm.m, algorithm.r
    p = np.array([0.0, 1, -1, 2, -2, 0.5, -0.5])
    at = np.zeros((m, 8))
    at[:, :7] = p[None, :] ** np.arange(m)[:, None]
    at[m - 1, 7] = 1
    g, bt = np.zeros((8, r)), np.zeros((8, 8))
    for j in range(7):
        others = np.delete(p, j)
        g[j] = p[j] ** np.arange(r) / np.prod(p[j] - others)
        bt[j, :7] = np.polynomial.polynomial.polyfromroots(others)
    g[7, r - 1] = 1
    bt[7] = np.polynomial.polynomial.polyfromroots(p)
    np.testing.assert_array_equal(algorithm.AT, at)
    np.testing.assert_allclose(algorithm.G, g, rtol=1e-15)
    np.testing.assert_allclose(algorithm.BT, bt, rtol=0, atol=1e-15)


@pytest.mark.parametrize("algorithm", [F35, F45], ids=lambda a: a.name)
def test_winograd_float32_error_at_alexnets_5x5_layer(algorithm):
    """F(3x3, 5x5) and F(4x4, 5x5) at AlexNet's conv2 (96 -> 256 channels, 26x26, where
    the chooser takes F(4,5): partial tiles, post-ReLU data, He-scaled filters): the
    output and both gradients stay within 1e-4 of the output's scale of the float64
    reference, as the 3x3 sets below."""
    rng = np.random.default_rng(11)
    C, OC = 96, 256
    x = np.maximum(rng.standard_normal((1, C, 26, 26)), 0)
    w = rng.standard_normal((OC, C, 5, 5)) * np.sqrt(2 / (25 * C))
    g = conv_geometry(x.shape, w.shape, 1, 1, 2, 2)
    assert conv.conv2d_algorithm(g, np.dtype(np.float32), "numpy") is F45
    y64, s64 = REF.forward(x, w, None, g, True)
    gy = rng.standard_normal(y64.shape)
    y, s = algorithm.forward(x.astype(np.float32), w.astype(np.float32), None, g, True)
    gx, gw, _ = algorithm.backward(gy.astype(np.float32), s, True, True, False)
    gx64, gw64, _ = REF.backward(gy, s64, True, True, False)
    for got, want in ((y, y64), (gx, gx64), (gw, gw64)):
        assert np.abs(got - want).max() <= 1e-4 * np.abs(want).max()


@pytest.mark.parametrize("algorithm", [F43, F63], ids=lambda a: a.name)
def test_winograd_float32_error_at_alexnets_3x3_layers(algorithm):
    """Larger tiles' larger constants cost float32 accuracy (F(6x6, 3x3)'s up to 32 in
    A^T and 1/90 in G): at a 3x3 layer of AlexNet's width (256 -> 384 channels, 12x12,
    where the chooser takes F(6,3); post-ReLU data, He-scaled filters) the output and
    both gradients stay within 1e-4 of the output's scale of the float64 reference."""
    rng = np.random.default_rng(9)
    C, OC = 256, 384
    x = np.maximum(rng.standard_normal((4, C, 12, 12)), 0)
    w = rng.standard_normal((OC, C, 3, 3)) * np.sqrt(2 / (9 * C))
    g = conv_geometry(x.shape, w.shape, 1, 1, 1, 1)
    assert conv.conv2d_algorithm(g, np.dtype(np.float32), "numpy") is F63
    y64, s64 = REF.forward(x, w, None, g, True)
    gy = rng.standard_normal(y64.shape)
    y, s = algorithm.forward(x.astype(np.float32), w.astype(np.float32), None, g, True)
    gx, gw, _ = algorithm.backward(gy.astype(np.float32), s, True, True, False)
    gx64, gw64, _ = REF.backward(gy, s64, True, True, False)
    for got, want in ((y, y64), (gx, gx64), (gw, gw64)):
        assert np.abs(got - want).max() <= 1e-4 * np.abs(want).max()


def test_channels_last_columns_cut_over_threads_match_the_reference(monkeypatch):
    """im2col_nhwc and col2im_nhwc run on image ranges in several threads (pieces made
    tiny here) and give the reference's results."""
    monkeypatch.setattr(conv_im2col_cpu, "CHANNELS_LAST_MIN", 1)
    monkeypatch.setattr(cpu_threads, "MIN_PART_ELEMENTS", 1)
    calls = []
    split = cpu_threads.split
    monkeypatch.setattr(cpu_threads, "split", lambda n, unit, call: (
        calls.append(n), split(n, unit, call))[1])
    rng = np.random.default_rng(4)
    x = rng.standard_normal((5, 6, 9, 8)).astype(np.float64)
    w = rng.standard_normal((3, 6, 3, 3))
    conv_pair(IM2COL, x, w, None, 2, 2, 1, 1, rng, np.float64, tol(np.float64),
              needs=[(True, True, False)])
    assert calls and set(calls) == {5}              # one call per pass, five images each


@pytest.mark.parametrize("C, KW", [(1, 11), (9, 4)])    # transposed columns, row-major
def test_conv_in_chunks_matches_one_chunk(monkeypatch, C, KW):
    """A workspace smaller than one image's columns: one image per GEMM."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((5, C, 13, 15)).astype(np.float32)
    w = rng.standard_normal((4, C, 3, KW)).astype(np.float32)
    b = rng.standard_normal(4).astype(np.float32)
    g = conv_geometry(x.shape, w.shape, 2, 1, 1, 1)
    assert IM2COL.transposed(g) == (C == 1)
    monkeypatch.setattr(IM2COL, "chunk_bytes", 1)
    assert IM2COL.images_per_chunk(g, 4) == 1
    conv_pair(IM2COL, x, w, b, 2, 1, 1, 1, rng, np.float32, dict(rtol=1e-4, atol=1e-4),
              needs=[(True, True, True)])


# -- the chooser and the switches -----------------------------------------------------------

def algorithm_of(x_shape, w_shape, stride, pad, dtype=np.float32, backend="numpy"):
    g = conv_geometry(x_shape, w_shape, stride, stride, pad, pad)
    return conv.conv2d_algorithm(g, np.dtype(dtype), backend).name


def test_each_layer_of_alexnet_and_lenet_takes_its_algorithm():
    """The rules of conv2d_algorithm's table, on the layers of d2l's two networks and
    the cases around them; TINYALEX_CONV=im2col and the reference mode override them."""
    alexnet = [((32, 1, 224, 224), (96, 1, 11, 11), 4, 1, "im2col+GEMM"),
               ((32, 96, 26, 26), (256, 96, 5, 5), 1, 2, "winograd F(4,5)"),
               ((32, 256, 12, 12), (384, 256, 3, 3), 1, 1, "winograd F(6,3)"),
               ((32, 384, 12, 12), (384, 384, 3, 3), 1, 1, "winograd F(6,3)"),
               ((32, 384, 12, 12), (256, 384, 3, 3), 1, 1, "winograd F(6,3)")]
    lenet = [((256, 1, 28, 28), (6, 1, 5, 5), 1, 2, "direct"),
             ((256, 6, 14, 14), (16, 6, 5, 5), 1, 0, "direct")]
    others = [((2, 32, 9, 9), (32, 32, 3, 3), 1, 1, "direct"),       # under 64 channels
              ((32, 64, 24, 24), (64, 64, 3, 3), 1, 1, "winograd F(6,3)"),  # ResNet-18's
              ((32, 128, 7, 7), (128, 128, 3, 3), 1, 1, "winograd F(4,3)"),  # 7x7: F(6,3)
              ((32, 128, 14, 14), (128, 128, 3, 3), 1, 1, "winograd F(4,3)"),  # not fewer
              ((2, 128, 28, 28), (128, 128, 3, 3), 1, 1, "winograd F(6,3)"),
              ((2, 128, 7, 7), (128, 128, 3, 3), 1, 1, "im2col+GEMM"),  # too few outputs
              ((2, 128, 12, 12), (128, 128, 3, 3), 1, 1, "im2col+GEMM"),  # (f43_pays)
              ((8, 128, 12, 12), (128, 128, 3, 3), 1, 1, "winograd F(6,3)"),
              ((2, 128, 9, 9), (128, 128, 5, 5), 1, 2, "winograd F(3,5)"),  # 3x3 tiles
              ((2, 128, 12, 12), (128, 128, 5, 5), 1, 2, "winograd F(4,5)"),
              ((2, 128, 9, 9), (128, 128, 3, 3), 2, 1, "im2col+GEMM"),  # stride 2
              ((2, 3, 9, 9), (4, 3, 3, 3), 1, 3, "im2col+GEMM")]       # padding = kernel
    for x, w, s, p, name in alexnet + lenet + others:
        assert algorithm_of(x, w, s, p) == name, (x, w)
        assert algorithm_of(x, w, s, p, dtype=np.float16) == "im2col+GEMM (reference)"
        with kernels.use_conv("im2col"):
            assert algorithm_of(x, w, s, p) == "im2col+GEMM (reference)"
        with kernels.use("reference"):
            assert algorithm_of(x, w, s, p) == "im2col+GEMM (reference)"


def test_the_switches_are_read_at_import_and_refuse_other_values():
    code = "import tinyalex.kernels as k; print(k.get_mode(), k.get_conv_mode())"
    for env, want in [({"TINYALEX_KERNELS": "reference"}, "reference auto"),
                      ({"TINYALEX_KERNELS": "fast", "TINYALEX_CONV": "im2col"}, "fast im2col"),
                      ({}, "fast auto")]:
        environ = {k: v for k, v in os.environ.items() if not k.startswith("TINYALEX_")}
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                             env=dict(environ, **env), check=True)
        assert out.stdout.strip() == want
    for var, value, what in [("TINYALEX_KERNELS", "turbo", "kernel mode"),
                             ("TINYALEX_CONV", "fft", "convolution mode")]:
        bad = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                             env=dict(os.environ, **{var: value}))
        assert bad.returncode != 0 and f"{var}='{value}' is not a {what}" in bad.stderr
    with pytest.raises(ValueError, match="unknown kernel mode 'quick'"):
        kernels.set_mode("quick")
    with pytest.raises(ValueError, match="unknown convolution mode 'fft'"):
        kernels.set_conv_mode("fft")
    previous = kernels.get_conv_mode()
    with kernels.use_conv("im2col"):
        assert kernels.get_conv_mode() == "im2col"
    assert kernels.get_conv_mode() == previous


def test_every_op_chooses_reference_or_fast():
    f32 = np.dtype(np.float32)
    g = pool_geometry((1, 2, 4, 4), 2, 2, 2, 2, 0, 0)
    fast = [pool.pool2d_algorithm("max", g, f32, "numpy"), pool.pool2d_algorithm("avg", g, f32, "numpy"),
            activation.activation_algorithm("relu", f32, "numpy"),
            activation.activation_algorithm("sigmoid", f32, "numpy"),
            activation.activation_algorithm("dropout", f32, "numpy"),
            dense.matmul_algorithm(f32, "numpy")]
    assert fast == [pool_cpu.MAX_POOL, pool_cpu.AVG_POOL, elementwise_cpu.RELU,
                    elementwise_cpu.SIGMOID, elementwise_cpu.DROPOUT, dense_cpu.MATMUL]
    with kernels.use("reference"):
        names = [pool.pool2d_algorithm("max", g, f32, "numpy").name,
                 activation.activation_algorithm("relu", f32, "numpy").name,
                 dense.matmul_algorithm(f32, "numpy").name]
    assert all(name.endswith("(reference)") for name in names), names
    assert pool.pool2d_algorithm("avg", g, np.dtype(np.float16), "numpy").name.endswith(
        "(reference)")


def test_other_dtypes_run_the_reference_through_the_ops():
    x = np.random.default_rng(0).standard_normal((1, 2, 4, 4)).astype(np.float16)
    t = tinyalex.tensor(x)
    np.testing.assert_array_equal(tinyalex.nn.functional.max_pool2d(t, 2).numpy(),
                                  pool.MAX_REFERENCE.forward(x, pool_geometry(x.shape, 2, 2, 2, 2, 0, 0))[0])
    np.testing.assert_array_equal(tinyalex.nn.functional.relu(t).numpy(), np.maximum(x, 0))


def test_bad_arguments_are_refused_before_compiled_code():
    """The geometry refuses bad sizes; the elementwise and GEMM algorithms (no geometry)
    check their own arguments. Window ops' algorithms trust their geometry: their
    operands and gradients are refused at the op (tests/ops/test_geometry_contract.py)."""
    x = np.zeros((2, 3, 5, 5), np.float32)
    with pytest.raises(ValueError, match="window does not fit"):
        conv_geometry(x.shape, (4, 3, 7, 7), 1, 1, 0, 0)
    with pytest.raises(ValueError, match="SH must be a positive int"):
        pool_geometry(x.shape, 2, 2, 0, 1, 0, 0)
    with pytest.raises(ValueError, match="dropout: p must lie in"):
        elementwise_cpu.DROPOUT.forward(x, 1.5, 0)
    with pytest.raises(ValueError, match="dropout: p must lie in"):
        elementwise_cpu.DROPOUT.forward(x, 0.5, -1)
    with pytest.raises(ValueError, match="elementwise backward: gradient"):
        elementwise_cpu.RELU.backward(np.zeros((2, 3), np.float32), np.zeros((3, 2), np.float32))
    with pytest.raises(ValueError, match="matmul: expected"):
        dense_cpu.MATMUL(np.zeros((2, 3), np.float32), np.zeros((2, 3), np.float32))


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
    pg = pool_geometry(x.shape, KH, KW, SH, SW, PH, PW)
    y_ref, s_ref = pool.MAX_REFERENCE.forward(x, pg)
    y, s = pool_cpu.MAX_POOL.forward(x, pg)
    np.testing.assert_array_equal(y, y_ref)
    gy = rng.standard_normal(y.shape).astype(dtype)
    np.testing.assert_array_equal(pool_cpu.MAX_POOL.backward(gy, s),
                                  pool.MAX_REFERENCE.backward(gy, s_ref))


def test_max_pool_nan_and_infinity_as_the_reference():
    x = np.array([[[[1.0, np.nan, 3.0], [np.nan, -np.inf, 2.0], [-np.inf, -np.inf, 0.5]]]],
                 dtype=np.float32)
    for window in [(2, 2, 1, 1, 0, 0), (3, 3, 1, 1, 1, 1), (2, 3, 1, 2, 1, 1)]:
        pg = pool_geometry(x.shape, *window)
        y_ref, s_ref = pool.MAX_REFERENCE.forward(x, pg)
        y, s = pool_cpu.MAX_POOL.forward(x, pg)
        np.testing.assert_array_equal(y, y_ref)
        gy = np.arange(1, y.size + 1, dtype=np.float32).reshape(y.shape)
        np.testing.assert_array_equal(pool_cpu.MAX_POOL.backward(gy, s),
                                      pool.MAX_REFERENCE.backward(gy, s_ref))


@settings(max_examples=EXAMPLES)
@given(g=geometry(pool=True), dtype=DTYPES, cl=st.booleans(), seed=st.integers(0, 2**16))
def test_avg_pool_matches_the_reference(g, dtype, cl, seed):
    N, C, H, W, KH, KW, SH, SW, PH, PW = g
    rng = np.random.default_rng(seed)
    x = images(rng, (N, C, H, W), dtype, cl)
    pg = pool_geometry(x.shape, KH, KW, SH, SW, PH, PW)
    y, s = pool_cpu.AVG_POOL.forward(x, pg)
    np.testing.assert_allclose(y, pool.AVG_REFERENCE.forward(x, pg)[0], **tol(dtype))
    gy = rng.standard_normal(y.shape).astype(dtype)
    np.testing.assert_allclose(pool_cpu.AVG_POOL.backward(gy, s),
                               pool.AVG_REFERENCE.backward(gy, pg), **tol(dtype))


# -- elementwise -----------------------------------------------------------------------

shapes = st.lists(st.integers(0, 5), min_size=1, max_size=4).map(tuple)


@settings(max_examples=EXAMPLES)
@given(shape=shapes, dtype=DTYPES, transpose=st.booleans(), seed=st.integers(0, 2**16),
       p=st.sampled_from([0.0, 0.1, 0.5, 0.9, 1.0]))
def test_elementwise_loops_match_the_reference(shape, dtype, transpose, seed, p):
    """ReLU, sigmoid and dropout on any memory order, empty arrays included."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(shape).astype(dtype) * 4
    x[x > 5] = 0.0                                           # some exact zeros for ReLU
    if transpose:
        x = x.T                                              # any memory order
    gy = rng.standard_normal(x.shape).astype(dtype)
    relu, sig = elementwise_cpu.RELU, elementwise_cpu.SIGMOID
    y = relu.forward(x)
    np.testing.assert_array_equal(y, activation.RELU_REFERENCE.forward(x))
    np.testing.assert_array_equal(relu.backward(gy, y), activation.RELU_REFERENCE.backward(gy, y))
    s = sig.forward(x)
    np.testing.assert_allclose(s, activation.SIGMOID_REFERENCE.forward(x), **tol(dtype))
    np.testing.assert_allclose(sig.backward(gy, s),
                               activation.SIGMOID_REFERENCE.backward(gy, s), **tol(dtype))
    np.testing.assert_array_equal(elementwise_cpu.DROPOUT.forward(x, p, seed),
                                  activation.DROPOUT_REFERENCE.forward(x, p, seed))


def test_sigmoid_saturates_without_warnings_as_the_reference():
    x = np.array([-1e4, -100.0, -89.0, -20.0, 0.0, 20.0, 100.0, 1e4, np.nan], np.float32)
    with np.errstate(over="raise", invalid="raise"):
        got = elementwise_cpu.SIGMOID.forward(x)
    np.testing.assert_allclose(got, activation.SIGMOID_REFERENCE.forward(x), rtol=1e-6,
                               atol=1e-30)
    assert got[0] == 0.0 and got[-2] == 1.0 and np.isnan(got[-1])


def test_sgd_update_is_in_place_and_matches_the_reference():
    rng = np.random.default_rng(3)
    for dtype in (np.float32, np.float64):
        p = rng.standard_normal((7, 5)).astype(dtype)
        g = rng.standard_normal((5, 7)).astype(dtype).T          # any memory order
        want = sgd_update_reference(p.copy(), g, 0.1)
        out = sgd_cpu.sgd_update(p, g, 0.1)
        assert out is p
        np.testing.assert_allclose(p, want, rtol=1e-6)


def test_dropout_mask_is_splitmix64_and_keeps_one_minus_p():
    # SplitMix64's published first outputs for the seed 1234567
    np.testing.assert_array_equal(tinyalex.random.splitmix64(1234567, 3),
                                  np.array([6457827717110365317, 3203168211198807973,
                                            9817491932198370423], dtype=np.uint64))
    x = np.ones(200_000, np.float32)
    y = elementwise_cpu.DROPOUT.forward(x, 0.3, 99)
    assert abs((y > 0).mean() - 0.7) < 0.005
    np.testing.assert_allclose(np.unique(y), [0.0, 1 / 0.7], rtol=1e-6)
    assert not np.array_equal(y, elementwise_cpu.DROPOUT.forward(x, 0.3, 100))


# -- the buffer contract and a whole step ---------------------------------------------

def test_results_never_alias_the_reused_workspace():
    """im2col + GEMM (stride 2 here) reuses one workspace across calls."""
    from tinyalex.kernels.workspace import WORKSPACE
    rng = np.random.default_rng(1)
    x = rng.standard_normal((3, 4, 8, 8)).astype(np.float32)
    w = rng.standard_normal((5, 4, 3, 3)).astype(np.float32)
    g1 = conv_geometry(x.shape, w.shape, 2, 2, 1, 1)
    assert conv.conv2d_algorithm(g1, x.dtype, "numpy") is IM2COL
    y1, s1 = IM2COL.forward(x, w, None, g1, True)
    gy = rng.standard_normal(y1.shape).astype(np.float32)
    gx1, gw1, _ = IM2COL.backward(gy, s1, True, True, False)
    kept = [a.copy() for a in (y1, gx1, gw1)]
    buffers = list(WORKSPACE.buffers.values())
    assert buffers, "the convolution should have used its workspace"
    for a in (y1, gx1, gw1):
        assert not any(np.shares_memory(a, b) for b in buffers)
    # more calls of other shapes reuse (and grow) the workspace; earlier results stay
    for _ in range(2):
        x2 = rng.standard_normal((2, 4, 11, 9)).astype(np.float32)
        g2 = conv_geometry(x2.shape, w.shape, 2, 1, 0, 0)
        y2, s2 = IM2COL.forward(x2, w, None, g2, True)
        IM2COL.backward(np.ones(y2.shape, np.float32), s2, True, True, False)
    for a, k in zip((y1, gx1, gw1), kept):
        np.testing.assert_array_equal(a, k)


def test_direct_results_are_fresh_arrays():
    """No result aliases another or an input (a parameter's .grad may alias what
    backward returns, and the optimiser updates it in place)."""
    rng = np.random.default_rng(2)
    x = rng.standard_normal((3, 2, 7, 7)).astype(np.float32)
    w = rng.standard_normal((3, 2, 3, 3)).astype(np.float32)
    b = rng.standard_normal(3).astype(np.float32)
    g = conv_geometry(x.shape, w.shape, 1, 1, 1, 1)
    y, s = DIRECT.forward(x, w, b, g, True)
    gy = rng.standard_normal(y.shape).astype(np.float32)
    out = [y, *DIRECT.backward(gy, s, True, True, True)]
    for i, a in enumerate(out):
        assert not any(np.shares_memory(a, o) for o in (x, w, b, gy))
        assert not any(np.shares_memory(a, o) for o in out[i + 1:])


@pytest.mark.parametrize("conv_mode", ["auto", "im2col"])
def test_a_training_step_is_the_same_with_fast_and_reference_kernels(conv_mode):
    def step(mode):
        tinyalex.manual_seed(0)
        net = nn.Sequential(nn.Conv2d(2, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                            nn.Conv2d(4, 3, 3, stride=2), nn.Sigmoid(), nn.AvgPool2d(2, 1),
                            nn.Flatten(), nn.Linear(3, 5), nn.Dropout(0.5), nn.Linear(5, 3)).double()
        x = tinyalex.tensor(np.random.default_rng(2).standard_normal((4, 2, 10, 10)),
                            dtype=np.float64)
        with kernels.use(mode), kernels.use_conv(conv_mode):
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


def test_parallel_runs_every_call_once_in_order_and_raises_after_all_end():
    """``cpu_threads.parallel``: the results in the calls' order (more calls than
    threads too), every call run exactly once, each worker running its calls in another
    thread; an exception raised by any call reaches the caller once every call has
    ended; a call that itself calls ``parallel`` (from a worker) runs its calls there,
    one after the other; and the workers follow ``set_num_threads``."""
    import threading
    import time
    import tinyalex
    threads = cpu_threads.THREADS
    try:
        tinyalex.set_num_threads(3)
        assert len(cpu_threads._workers) == (2 if cpu_threads.SPLIT else 0)
        ran, idents = [], set()

        def call(i):
            def run():
                idents.add(threading.get_ident())
                time.sleep(0.002)
                ran.append(i)
                return i * i
            return run
        assert cpu_threads.parallel([call(i) for i in range(7)]) == [i * i for i in range(7)]
        assert sorted(ran) == list(range(7))
        if cpu_threads.SPLIT:
            assert len(idents) == 3                   # this thread and two workers
        ended = []

        def slow():
            time.sleep(0.02)
            ended.append(True)

        def bad():
            raise KeyError("from a call")
        with pytest.raises(KeyError, match="from a call"):
            cpu_threads.parallel([bad, slow])
        assert ended == [True]                        # the other call ran to its end
        nested = cpu_threads.parallel([lambda: 0, lambda: cpu_threads.parallel(
            [lambda: threading.get_ident(), lambda: threading.get_ident()])])
        assert len(set(nested[1])) == 1               # one thread ran both inner calls
        tinyalex.set_num_threads(1)
        assert cpu_threads._workers == [] and cpu_threads.parallel([lambda: 1, lambda: 2]) == [1, 2]
    finally:
        tinyalex.set_num_threads(threads)


@pytest.mark.parametrize("rows", [1, 7, 5000])
def test_column_sums_over_threads(monkeypatch, rows):
    """The convolutions' bias gradient (``cpu_threads.column_sums``): the rows cut over
    the threads where there are enough, each a matrix-vector product; float64 equals
    NumPy's sum to rounding, float32 stays within float32 rounding of it."""
    monkeypatch.setattr(cpu_threads, "MIN_PART_ELEMENTS", 1000)
    rng = np.random.default_rng(8)
    a = rng.standard_normal((rows, 24))
    got = cpu_threads.column_sums(a)
    assert got.shape == (24,) and got.dtype == np.float64
    np.testing.assert_allclose(got, a.sum(axis=0), rtol=1e-12, atol=1e-12)
    got32 = cpu_threads.column_sums(a.astype(np.float32))
    assert got32.dtype == np.float32
    np.testing.assert_allclose(got32, a.sum(axis=0), rtol=0, atol=2e-6 * rows)
    sums = []
    monkeypatch.setattr(cpu_threads, "parallel", lambda calls: sums.extend(c() for c in calls)
                        or sums)
    cpu_threads.column_sums(a)
    assert len(sums) == (min(cpu_threads.WORKERS, rows * 24 // 1000) or 1)


def test_elementwise_in_parts_for_threads_matches_the_reference(monkeypatch):
    """Large arrays are cut into ranges, one per thread (``cpu_threads.ranges`` and
    ``split``): the sigmoid (float32 runs the vectorised loop with its own exp, within a
    few ulp), ReLU, dropout, the SGD update, and pooling of channels-last images."""
    monkeypatch.setattr(cpu_threads, "MIN_PART_ELEMENTS", 1000)
    rng = np.random.default_rng(4)
    for dtype in (np.float32, np.float64):
        x = (rng.standard_normal((7, 5, 301)) * 30).astype(dtype).transpose(2, 0, 1)
        assert len(cpu_threads.ranges(x.size)) == cpu_threads.WORKERS
        y = elementwise_cpu.SIGMOID.forward(x)
        np.testing.assert_allclose(y, activation.SIGMOID_REFERENCE.forward(x), rtol=4e-7,
                                   atol=1e-37)
        gy = rng.standard_normal(x.shape).astype(dtype)
        np.testing.assert_array_equal(elementwise_cpu.SIGMOID.backward(gy, y),
                                      activation.SIGMOID_REFERENCE.backward(gy, y))
        r = elementwise_cpu.RELU.forward(x)
        np.testing.assert_array_equal(r, activation.RELU_REFERENCE.forward(x))
        np.testing.assert_array_equal(elementwise_cpu.RELU.backward(gy, r),
                                      activation.RELU_REFERENCE.backward(gy, r))
        np.testing.assert_array_equal(elementwise_cpu.DROPOUT.forward(x, 0.4, 77),
                                      activation.DROPOUT_REFERENCE.forward(x, 0.4, 77))
        img = rng.standard_normal((7, 5, 20, 15)).astype(dtype).transpose(0, 3, 1, 2)
        #   (N, C, H, W) = (7, 15, 5, 20), channels-last memory
        for k in (2, 3):
            pg = pool_geometry(img.shape, k, k, k, k, 0, 0)
            y_ref, s_ref = pool.MAX_REFERENCE.forward(img, pg)
            y_fast, s_fast = pool_cpu.MAX_POOL.forward(img, pg)
            np.testing.assert_array_equal(y_fast, y_ref)
            gp = rng.standard_normal(y_ref.shape).astype(dtype)
            np.testing.assert_array_equal(pool_cpu.MAX_POOL.backward(gp, s_fast),
                                          pool.MAX_REFERENCE.backward(gp, s_ref))
            np.testing.assert_allclose(pool_cpu.AVG_POOL.forward(img, pg)[0],
                                       pool.AVG_REFERENCE.forward(img, pg)[0], **tol(dtype))
            np.testing.assert_allclose(pool_cpu.AVG_POOL.backward(gp, pg),
                                       pool.AVG_REFERENCE.backward(gp, pg), **tol(dtype))
        p = np.ascontiguousarray(x)
        want = sgd_update_reference(p.copy(), gy, 0.3)
        assert sgd_cpu.sgd_update(p, gy, 0.3) is p
        np.testing.assert_array_equal(p, want)


@settings(max_examples=EXAMPLES)
@given(M=st.sampled_from([1, 3, 17, 40]), K=st.integers(1, 9),
       N=st.sampled_from([1, 5, 130, 300]), dtype=DTYPES, ta=st.booleans(), tb=st.booleans(),
       split=st.booleans(), seed=st.integers(0, 2**16))
def test_matmul_in_pieces_matches_the_reference(M, K, N, dtype, ta, tb, split, seed,
                                                monkeypatch):
    """The fully connected layers' GEMM: cut by rows (many rows) or by columns (few
    rows, many columns) into one GEMM per thread, or whole; operands in any order (a
    layer's x @ W.T, few rows times a transposed matrix, run as (W @ x.T).T)."""
    monkeypatch.setattr(cpu_threads, "MIN_PIECE_FLOPS", 1 if split else 1 << 62)
    monkeypatch.setattr(dense_cpu, "LARGE", 1)
    rng = np.random.default_rng(seed)
    a = rng.standard_normal((K, M) if ta else (M, K)).astype(dtype)
    b = rng.standard_normal((N, K) if tb else (K, N)).astype(dtype)
    a, b = (a.T if ta else a), (b.T if tb else b)
    got = dense_cpu.MATMUL(a, b)
    assert got.shape == (M, N) and got.dtype == dtype and got.flags.c_contiguous
    assert not np.shares_memory(got, a) and not np.shares_memory(got, b)
    np.testing.assert_allclose(got, a @ b, **tol(dtype))


def test_malloc_setting_applies_and_can_be_turned_off():
    """The process keeps freed memory for the next step (``cpu_process.py``) unless
    ``TINYALEX_MALLOC=default``; another value is refused, naming the variable."""
    code = "from tinyalex.kernels import cpu_process; print(cpu_process.malloc_keeps_freed_memory())"
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
    monkeypatch.setattr(dense_cpu.RESULTS, "min_bytes", 1)
    dense_cpu.RESULTS.clear()
    rng = np.random.default_rng(8)
    x = rng.standard_normal((3, 4, 9, 9)).astype(np.float32)
    w = rng.standard_normal((5, 4, 3, 3)).astype(np.float32)
    live = []
    for stride in (1, 2, 1, 2):
        g = conv_geometry(x.shape, w.shape, stride, stride, 1, 1)
        algorithm = conv.conv2d_algorithm(g, x.dtype, "numpy")
        y, s = algorithm.forward(x, w, None, g, True)
        r = elementwise_cpu.RELU.forward(y)
        p, _ = pool_cpu.MAX_POOL.forward(r, pool_geometry(r.shape, 2, 2, 2, 2, 0, 0))
        m = dense_cpu.MATMUL(p.reshape(3, -1),
                                   rng.standard_normal((p[0].size, 7)).astype(np.float32))
        gx, gw, _ = algorithm.backward(np.ones_like(y), s, True, True, False)
        live += [y, r, p, m, gx, gw]
        for i, a in enumerate(live):
            assert not any(np.shares_memory(a, b) for b in live[i + 1:])
        want = REF.backward(np.ones_like(y), REF.forward(x, w, None, g, True)[1], True, True,
                            False)
        np.testing.assert_allclose(gx, want[0], rtol=1e-4, atol=1e-4)
        live = live[-6:] if stride == 2 else live        # drop some: their memory recycles
    assert dense_cpu.RESULTS.free_bytes() > 0
