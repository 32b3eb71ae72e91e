"""The convolution as one GEMM per filter tap (kernels/conv_taps_cpu.py): it equals the
im2col reference forward and backward on any window, stride and padding (hypothesis
shapes, either memory order), gradchecks in float64 through the op, the chooser gives it
only the small padded maps where im2col's products are mostly zeros, and summary names
it."""

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import tinyalex
from tinyalex import nn
from tinyalex.kernels import conv_taps_cpu
from tinyalex.kernels.conv_taps_cpu import TAP_GEMMS, tap_span, zero_share
from tinyalex.ops import conv
from helpers.checks import check, randn

F32 = np.dtype(np.float32)


def reference_zero_share(g):
    """zero_share counted the slow way: every output and tap of the padded window."""
    zeros = 0
    for oh in range(g.OH):
        for ow in range(g.OW):
            for kh in range(g.KH):
                for kw in range(g.KW):
                    h, w = oh * g.SH + kh - g.PH, ow * g.SW + kw - g.PW
                    zeros += not (0 <= h < g.H and 0 <= w < g.W)
    return zeros / (g.OH * g.OW * g.KH * g.KW)


@settings(max_examples=40, deadline=None)
@given(N=st.integers(1, 3), C=st.integers(1, 4), OC=st.integers(1, 4), H=st.integers(1, 7),
       W=st.integers(1, 7), KH=st.integers(1, 4), KW=st.integers(1, 4), SH=st.integers(1, 3),
       SW=st.integers(1, 3), PH=st.integers(0, 3), PW=st.integers(0, 3),
       channels_last=st.booleans(), seed=st.integers(0, 2**16))
def test_taps_equal_the_reference(N, C, OC, H, W, KH, KW, SH, SW, PH, PW, channels_last, seed):
    """Forward and all three gradients against im2col + GEMM (float64), on shapes that
    include taps reaching no output at all (padding as large as the window)."""
    if H + 2 * PH < KH or W + 2 * PW < KW:
        return
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((N, C, H, W))
    if channels_last:
        x = np.ascontiguousarray(x.transpose(0, 2, 3, 1)).transpose(0, 3, 1, 2)
    w, b = rng.standard_normal((OC, C, KH, KW)), rng.standard_normal(OC)
    g = conv.Conv2d((SH, SW), (PH, PW)).geometry(x.shape, w.shape, b.shape)
    assert zero_share(g) == pytest.approx(reference_zero_share(g), abs=1e-12)
    y, saved = TAP_GEMMS.forward(x, w, b, g, keep=True)
    y_ref, saved_ref = conv.REFERENCE.forward(x, w, b, g, keep=True)
    np.testing.assert_allclose(y, y_ref, rtol=1e-12, atol=1e-12)
    gy = rng.standard_normal(y.shape)
    for need in ((True, True, True), (True, False, False), (False, True, False)):
        got = TAP_GEMMS.backward(gy, saved, *need)
        want = conv.REFERENCE.backward(gy, saved_ref, *need)
        for a, b_ in zip(got, want):
            assert (a is None) == (b_ is None)
            if a is not None:
                np.testing.assert_allclose(a, b_, rtol=1e-12, atol=1e-12)


def test_tap_span_is_the_outputs_a_tap_reaches():
    # 3 outputs of a 3-wide map padded by 1: tap 0 misses the first, tap 2 the last
    assert [tap_span(3, 1, 1, k, 3) for k in range(3)] == [(1, 3, 0), (0, 3, 0), (0, 2, 1)]
    # stride 2 on 6 pixels, padding 1: outputs 0..2 read 2*o - 1 + k
    assert [tap_span(3, 2, 1, k, 6) for k in range(3)] == [(1, 3, 1), (0, 3, 0), (0, 3, 1)]
    o0, o1, _ = tap_span(1, 1, 3, 0, 1)                   # a tap entirely in the padding
    assert o0 == o1


def test_gradcheck_through_the_op(monkeypatch):
    """float64 gradcheck of conv2d where the chooser picks the taps (thin layers allowed
    for the check): a 3x3 map padded by 1, and a stride-2 one with an empty tap."""
    monkeypatch.setattr(conv_taps_cpu, "MIN_CHANNELS", 1)
    rng = np.random.default_rng(3)
    for shape, wshape, stride, padding in (((2, 3, 3, 3), (4, 3, 3, 3), 1, 1),
                                          ((1, 2, 3, 2), (3, 2, 3, 3), 2, 2)):
        g = conv.Conv2d(stride, padding).geometry(shape, wshape)
        assert conv.conv2d_algorithm(g, np.dtype(np.float64), "numpy") is TAP_GEMMS
        x, w, b = randn(rng, shape), randn(rng, wshape), randn(rng, wshape[:1])
        check(lambda x, w, b: tinyalex.nn.functional.conv2d(x, w, b, stride=stride,
                                                             padding=padding), x, w, b)


def test_the_chooser_gives_it_small_padded_maps_only():
    def pick(shape, channels=512, stride=1, padding=1):
        g = conv.Conv2d(stride, padding).geometry(shape, (channels, shape[1], 3, 3))
        return conv.conv2d_algorithm(g, F32, "numpy")
    assert pick((32, 512, 3, 3)) is TAP_GEMMS             # ResNet-18's last stage: 40% zeros
    assert pick((128, 512, 3, 3)) is TAP_GEMMS
    assert pick((32, 256, 6, 6), 256) is conv.conv_winograd_cpu.WINOGRAD_F63  # 21% zeros
    assert pick((32, 256, 4, 4), 256) is conv.conv_winograd_cpu.WINOGRAD_F43  # 31%
    assert pick((32, 16, 3, 3), 16) is not TAP_GEMMS      # too thin for its GEMMs
    assert pick((32, 256, 6, 6), 512, stride=2) is conv.conv_im2col_cpu.IM2COL_GEMM  # 21%
    with tinyalex.kernels.use("reference"):
        assert pick((32, 512, 3, 3)) is conv.REFERENCE


def test_float32_against_float64():
    """float32 results stay at float32 rounding of the float64 ones (each output is a
    sum of tap GEMMs, added in another order than im2col's)."""
    rng = np.random.default_rng(5)
    x = rng.standard_normal((4, 64, 3, 3))
    w = rng.standard_normal((64, 64, 3, 3)) / 24
    g = conv.Conv2d(1, 1).geometry(x.shape, w.shape)
    y64, s64 = TAP_GEMMS.forward(x, w, None, g, keep=True)
    y32, s32 = TAP_GEMMS.forward(x.astype(np.float32), w.astype(np.float32), None, g,
                                 keep=True)
    assert y32.dtype == np.float32
    np.testing.assert_allclose(y32, y64, atol=2e-6 * np.abs(y64).max())
    gy = rng.standard_normal(y64.shape)
    for a, b in zip(TAP_GEMMS.backward(gy.astype(np.float32), s32, True, True, False)[:2],
                    TAP_GEMMS.backward(gy, s64, True, True, False)[:2]):
        assert a.dtype == np.float32
        np.testing.assert_allclose(a, b, atol=2e-6 * np.abs(b).max())


def test_summary_names_the_taps():
    net = nn.Sequential(nn.Conv2d(64, 64, kernel_size=3, padding=1))
    printed = []
    rows = tinyalex.summary(net, (2, 64, 3, 3), print_fn=printed.append)
    assert rows[0]["algorithm"] == TAP_GEMMS.name and TAP_GEMMS.name in printed[0]
