"""The direct convolution on the CPU (``kernels/conv_direct_cpu.py``, stride-1 layers)
and pooling on plain (N, C, H, W) memory, against the readable references: forward and
backward on hypothesis-drawn shapes and paddings, float32 and float64, inputs and
gradients in both memory orders, the batch cut into parts for threads or not; inf and
NaN as the reference gives them; which layers take which path.
"""

import numpy as np
import pytest
from hypothesis import example, given, settings, strategies as st

from tinyalex.kernels import conv_direct_cpu, cpu_threads, pool_cpu
from tinyalex.kernels.geometry import conv_geometry, pool_geometry
from tinyalex.ops import conv, pool

from helpers.checks import assert_gradients_match

REF = conv.REFERENCE
DIRECT = conv_direct_cpu.DIRECT


def images(rng, shape, dtype, channels_last):
    N, C, H, W = shape
    if channels_last:
        return rng.standard_normal((N, H, W, C)).astype(dtype).transpose(0, 3, 1, 2)
    return rng.standard_normal(shape).astype(dtype)


def tol(dtype, taps=1):
    if dtype == np.float64:
        return dict(rtol=1e-10, atol=1e-12)
    return dict(rtol=1e-4, atol=1e-5 * max(1, taps) ** 0.5)


@pytest.fixture
def parts(monkeypatch):
    """``parts(True)``: cut every batch of two or more images into parts for threads."""
    def cut(split):
        monkeypatch.setattr(conv_direct_cpu, "MIN_PART_MACS", 1 if split else 1 << 62)
        monkeypatch.setattr(DIRECT, "threads", 3 if split else 1)
    return cut


@settings(max_examples=30)
@given(N=st.integers(1, 4), C=st.integers(1, 6), OC=st.integers(1, 6), KH=st.integers(1, 5),
       KW=st.integers(1, 5), PH=st.integers(0, 4), PW=st.integers(0, 4),
       dH=st.integers(0, 5), dW=st.integers(0, 5), dtype=st.sampled_from([np.float32,
                                                                          np.float64]),
       x_cl=st.booleans(), gy_cl=st.booleans(), bias=st.booleans(), split=st.booleans(),
       seed=st.integers(0, 2**16))
@example(N=3, C=1, OC=6, KH=5, KW=5, PH=2, PW=2, dH=23, dW=23, dtype=np.float32,
         x_cl=False, gy_cl=False, bias=True, split=True, seed=0)      # LeNet's first layer
@example(N=2, C=6, OC=16, KH=5, KW=5, PH=0, PW=0, dH=9, dW=9, dtype=np.float32,
         x_cl=False, gy_cl=True, bias=True, split=True, seed=1)       # LeNet's second layer
def test_direct_conv_matches_the_reference(N, C, OC, KH, KW, PH, PW, dH, dW, dtype, x_cl,
                                           gy_cl, bias, split, seed, parts):
    PH, PW = min(PH, KH - 1), min(PW, KW - 1)          # the padding the direct path takes
    H, W = max(1, KH - 2 * PH) + dH, max(1, KW - 2 * PW) + dW
    parts(split)
    rng = np.random.default_rng(seed)
    x = images(rng, (N, C, H, W), dtype, x_cl)
    w = rng.standard_normal((OC, C, KH, KW)).astype(dtype)
    b = rng.standard_normal(OC).astype(dtype) if bias else None
    g = conv_geometry(x.shape, w.shape, 1, 1, PH, PW)
    y_ref, s_ref = REF.forward(x, w, b, g, True)
    y, s = DIRECT.forward(x, w, b, g, True)
    assert y.flags.c_contiguous and y.dtype == dtype
    t = tol(dtype, C * KH * KW)
    np.testing.assert_allclose(y, y_ref, **t)
    gy = images(rng, y.shape, dtype, gy_cl)
    for need in [(True, True, bias), (False, True, bias), (True, False, False),
                 (False, False, True)]:
        assert_gradients_match(DIRECT.backward(gy, s, *need),
                               REF.backward(gy, s_ref, *need), dtype,
                               **tol(dtype, N * H * W))


@pytest.mark.parametrize("where", ["x inf", "x nan", "w inf"])
def test_direct_conv_inf_and_nan_as_the_reference(where, parts):
    """The direct loops compute thrown-away columns from zeros of the gradient; with inf
    or NaN in the input (or inf in the filters) the gradients come from im2col, as the
    reference's. (Without that fallback, the inf at (1, 2, 5, 3) turns 8 entries of gW
    into NaN where the reference has finite values or inf.)"""
    parts(True)
    rng = np.random.default_rng(5)
    x = rng.standard_normal((2, 3, 6, 7))
    w = rng.standard_normal((4, 3, 3, 2))
    b = rng.standard_normal(4)
    if where == "x inf":
        x[1, 2, 5, 3] = np.inf
    elif where == "x nan":
        x[0, 1, 2, 6] = np.nan
    else:
        w[1, 2, 0, 1] = np.inf
    with np.errstate(invalid="ignore"):
        g = conv_geometry(x.shape, w.shape, 1, 1, 1, 1)
        assert conv.conv2d_algorithm(g, x.dtype, "numpy") is DIRECT
        y_ref, s_ref = REF.forward(x, w, b, g, True)
        y, s = DIRECT.forward(x, w, b, g, True)
        np.testing.assert_allclose(y, y_ref, rtol=1e-12)
        gy = np.abs(rng.standard_normal(y.shape)) + 0.1
        for a, e in zip(DIRECT.backward(gy, s, True, True, True),
                        REF.backward(gy, s_ref, True, True, True)):
            np.testing.assert_allclose(a, e, rtol=1e-12, atol=1e-12)


@settings(max_examples=25)
@given(N=st.integers(1, 3), C=st.integers(2, 4), H=st.integers(1, 8), W=st.integers(1, 8),
       KH=st.integers(1, 3), KW=st.integers(1, 3), SH=st.integers(1, 3), SW=st.integers(1, 3),
       dtype=st.sampled_from([np.float32, np.float64]), gy_cl=st.booleans(),
       split=st.booleans(), seed=st.integers(0, 2**16))
def test_pooling_keeps_plain_memory_plain(N, C, H, W, KH, KW, SH, SW, dtype, gy_cl, split,
                                          seed, monkeypatch):
    """Plain (N, C, H, W) input is pooled as N*C one-channel images: the results stay
    plain, and agree with the reference whatever order the gradient arrives in; the
    images cut into ranges for threads (``split``) or not."""
    monkeypatch.setattr(cpu_threads, "MIN_PART_ELEMENTS", 1 if split else 1 << 62)
    KH, KW = min(KH, H), min(KW, W)
    rng = np.random.default_rng(seed)
    x = np.round(rng.standard_normal((N, C, H, W)) * 2).astype(dtype)   # ties for max
    pg = pool_geometry(x.shape, KH, KW, SH, SW, KH // 2, KW // 2)
    y, s = pool_cpu.MAX_POOL.forward(x, pg)
    y_ref, s_ref = pool.MAX_REFERENCE.forward(x, pg)
    assert y.flags.c_contiguous and s.plain == (C > 1)
    assert s.argmax.shape == ((N * C,) + y.shape[2:] + (1,) if C > 1 else (N,) + y.shape[2:] + (1,))
    np.testing.assert_array_equal(y, y_ref)
    gy = images(rng, y.shape, dtype, gy_cl)
    gx = pool_cpu.MAX_POOL.backward(gy, s)
    assert gx.flags.c_contiguous
    np.testing.assert_array_equal(gx, pool.MAX_REFERENCE.backward(gy, s_ref))
    a, _ = pool_cpu.AVG_POOL.forward(x, pg)
    assert a.flags.c_contiguous
    np.testing.assert_allclose(a, pool.AVG_REFERENCE.forward(x, pg)[0], **tol(dtype))
    ga = pool_cpu.AVG_POOL.backward(gy, pg)
    plain = gy.flags.c_contiguous                      # gx comes in gy's memory order
    assert (ga if plain else ga.transpose(0, 2, 3, 1)).flags.c_contiguous
    np.testing.assert_allclose(ga, pool.AVG_REFERENCE.backward(gy, pg), **tol(dtype))


@settings(max_examples=30)
@given(N=st.integers(1, 4), C=st.integers(1, 6), OC=st.integers(1, 6), KH=st.integers(1, 5),
       KW=st.integers(1, 5), PH=st.integers(0, 4), PW=st.integers(0, 4),
       dH=st.integers(0, 6), dW=st.integers(0, 6), dtype=st.sampled_from([np.float32,
                                                                          np.float64]),
       scale=st.sampled_from([1.0, 30.0]), bias=st.booleans(), split=st.booleans(),
       seed=st.integers(0, 2**16))
@example(N=3, C=1, OC=6, KH=5, KW=5, PH=2, PW=2, dH=22, dW=22, dtype=np.float32, scale=1.0,
         bias=True, split=True, seed=0)                               # LeNet's first block
@example(N=2, C=6, OC=16, KH=5, KW=5, PH=0, PW=0, dH=8, dW=8, dtype=np.float32, scale=1.0,
         bias=True, split=True, seed=1)                               # LeNet's second block
@example(N=2, C=2, OC=3, KH=3, KW=2, PH=1, PW=0, dH=3, dW=4, dtype=np.float32, scale=30.0,
         bias=False, split=False, seed=2)                             # odd OH, saturation
@example(N=69, C=3, OC=5, KH=5, KW=4, PH=1, PW=2, dH=3, dW=4, dtype=np.float32, scale=1.0,
         bias=True, split=True, seed=3)           # 3 blocks of 32 images, the last partly full
@example(N=33, C=6, OC=8, KH=3, KW=3, PH=1, PW=1, dH=2, dW=1, dtype=np.float64, scale=1.0,
         bias=True, split=True, seed=4)           # 4 x 4 register blocks, float64
def test_fused_conv_sigmoid_avgpool_is_the_three_loops(N, C, OC, KH, KW, PH, PW, dH, dW,
                                                       dtype, scale, bias, split, seed, parts,
                                                       monkeypatch):
    """The direct convolution + sigmoid + 2x2 average pooling as one op with 32 images
    in the vector lanes (``forward_sigmoid_avgpool``, ``backward_sigmoid_avgpool``:
    ``numba_lanes``) gives the numbers of the three fast loops run one after the other:
    the output, the sigmoid kept for backward and the input's gradient bit for bit in
    float32 (LeNet's d2l figures stay as they are), to rounding in float64 (NumPy's exp
    against the compiled one); the filters' and bias's gradients, summed in another
    order, to rounding. Odd output sizes (a row or column no window covers), batches
    that do not fill the last block of 32, saturated sigmoids, every subset of
    gradients, the batch cut for threads or not."""
    from tinyalex.kernels import elementwise_cpu
    PH, PW = min(PH, KH - 1), min(PW, KW - 1)
    H, W = max(1, KH - 2 * PH) + 1 + dH, max(1, KW - 2 * PW) + 1 + dW   # output >= 2x2
    parts(split)
    monkeypatch.setattr(cpu_threads, "MIN_PART_ELEMENTS", 1 if split else 1 << 62)
    rng = np.random.default_rng(seed)
    x = (rng.standard_normal((N, C, H, W)) * scale).astype(dtype)
    w = rng.standard_normal((OC, C, KH, KW)).astype(dtype)
    b = rng.standard_normal(OC).astype(dtype) if bias else None
    g = conv_geometry(x.shape, w.shape, 1, 1, PH, PW)
    pg = pool_geometry((N, OC, g.OH, g.OW), 2, 2, 2, 2, 0, 0)
    assert DIRECT.takes_sigmoid_avgpool(g, pg)
    y, saved = DIRECT.forward_sigmoid_avgpool(x, w, b, g, pg, True)
    c, c_saved = DIRECT.forward(x, w, b, g, True)                     # the three loops
    s = elementwise_cpu.SIGMOID.forward(c)
    y3, _ = pool_cpu.AVG_POOL.forward(s, pg)
    same = np.testing.assert_array_equal if dtype == np.float32 else \
        lambda a, e: np.testing.assert_allclose(a, e, rtol=1e-13, atol=1e-15)

    def close(a, e):                # sums in another order: rounding of the largest term
        np.testing.assert_allclose(a, e, rtol=0, atol=(1e-5 if dtype == np.float32 else 1e-13)
                                   * (np.abs(e).max() + 1))
    assert y.shape == y3.shape and y.dtype == dtype and y.flags.c_contiguous
    same(y, y3)
    same(saved.sigmoid_output(), s)
    gy = rng.standard_normal(y.shape).astype(dtype)
    gs = elementwise_cpu.SIGMOID.backward(pool_cpu.AVG_POOL.backward(gy, pg), s)
    for need in [(True, True, bias), (False, True, bias), (True, False, False),
                 (False, False, True)]:
        for a, e, check in zip(DIRECT.backward_sigmoid_avgpool(gy, saved, *need),
                               DIRECT.backward(gs, c_saved, *need), (same, close, close)):
            assert (a is None) == (e is None)
            if a is not None:
                assert a.shape == e.shape and a.dtype == dtype
                check(a, e)


def test_the_lanes_layout_starts_cache_lines():
    """Every array of the lanes layout starts a 64-byte cache line: the ones NumPy holds
    (``numba_lanes.empty``: the packed input and the sigmoid's output the forward keeps)
    and the loops' own (``_aligned``), for sizes where NumPy's allocator would not."""
    from numba import njit
    from tinyalex.kernels import numba_lanes

    @njit
    def loops_buffer(n, dt):
        a = numba_lanes._aligned(n, dt)
        return a.ctypes.data % 64, a.size

    for dtype in (np.float32, np.float64):
        for n in range(1, 40):
            shape = (n, 3, 5, numba_lanes.V)
            a = numba_lanes.empty(shape, dtype)
            assert a.shape == shape and a.dtype == dtype and a.flags.c_contiguous
            assert a.ctypes.data % 64 == 0, (shape, dtype)
            assert loops_buffer(n * 7, dtype) == (0, n * 7)
    g = conv_geometry((3, 1, 12, 12), (6, 1, 5, 5), 1, 1, 2, 2)
    pg = pool_geometry((3, 6, 12, 12), 2, 2, 2, 2, 0, 0)
    x = np.random.default_rng(0).standard_normal((3, 1, 12, 12)).astype(np.float32)
    w = np.ones((6, 1, 5, 5), np.float32)
    _, saved = DIRECT.forward_sigmoid_avgpool(x, w, None, g, pg, True)
    assert saved.xb.ctypes.data % 64 == 0 and saved.sb.ctypes.data % 64 == 0


def test_the_fused_loop_takes_only_2x2_pooling_after_the_direct_convolution():
    g = conv_geometry((2, 3, 12, 12), (4, 3, 5, 5), 1, 1, 2, 2)
    for window, takes in [((2, 2, 2, 2, 0, 0), True), ((3, 3, 2, 2, 0, 0), False),
                          ((2, 2, 1, 1, 0, 0), False), ((2, 2, 2, 2, 1, 1), False)]:
        pg = pool_geometry((2, 4, 12, 12), *window)
        assert DIRECT.takes_sigmoid_avgpool(g, pg) == takes, window
    strided = conv_geometry((2, 3, 12, 12), (4, 3, 5, 5), 2, 2, 2, 2)
    assert not DIRECT.takes_sigmoid_avgpool(strided, pool_geometry((2, 4, 6, 6), 2, 2, 2, 2,
                                                                   0, 0))
