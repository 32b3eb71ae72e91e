"""The 1x1 convolution as a GEMM (kernels/conv_pointwise.py): the chooser's rule picks it
for 1x1 kernels without padding at any stride (ResNet's stride-2 shortcut), it equals
the im2col reference forward and backward, gradchecks in float64, and summary names it."""

import numpy as np
import pytest

import tinyalex
import tinyalex.kernels as kernels
from tinyalex import nn
from tinyalex.kernels.conv_pointwise import POINTWISE_1X1
from tinyalex.ops import conv
from helpers.checks import check, randn


@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize("shape,OC,stride", [((2, 3, 5, 7), 4, 1), ((2, 3, 5, 7), 4, 2),
                                             ((1, 8, 6, 6), 5, (2, 3)), ((3, 2, 1, 4), 2, 3)])
def test_pointwise_equals_the_reference(shape, OC, stride, channels_last):
    """Both ways: a batched GEMM straight into NCHW (plain input, stride 1), and the
    pixels as rows, one GEMM into channels-last memory (channels-last input, or a
    stride above 1); gradients in either memory order."""
    rng = np.random.default_rng(0)
    x, w, b = (rng.standard_normal(s) for s in (shape, (OC, shape[1], 1, 1), (OC,)))
    if channels_last:
        x = np.ascontiguousarray(x.transpose(0, 2, 3, 1)).transpose(0, 3, 1, 2)
    rows = channels_last and shape[1] > 1 or stride != 1
    assert POINTWISE_1X1.rows(x, conv.Conv2d(stride, 0).geometry(shape, w.shape)) == rows
    fn = conv.Conv2d(stride, 0)
    g = fn.geometry(shape, w.shape, b.shape)
    assert conv.conv2d_algorithm(g, np.dtype(np.float64), "numpy") is POINTWISE_1X1
    y, saved = POINTWISE_1X1.forward(x, w, b, g, keep=True)
    y_ref, saved_ref = conv.REFERENCE.forward(x, w, b, g, keep=True)
    np.testing.assert_allclose(y, y_ref, rtol=1e-12, atol=1e-12)
    gy = rng.standard_normal(y.shape)
    for got, want in zip(POINTWISE_1X1.backward(gy, saved, True, True, True),
                         conv.REFERENCE.backward(gy, saved_ref, True, True, True)):
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)


def test_pointwise_gradcheck_and_the_rule_only_for_1x1_without_padding():
    rng = np.random.default_rng(1)
    x, w, b = randn(rng, (2, 3, 5, 4)), randn(rng, (4, 3, 1, 1)), randn(rng, (4,))
    check(lambda x, w, b: tinyalex.nn.functional.conv2d(x, w, b, stride=2), x, w, b)
    padded = conv.Conv2d(1, 1).geometry((2, 3, 5, 4), (4, 3, 1, 1))
    assert conv.conv2d_algorithm(padded, np.dtype(np.float32), "numpy") is not POINTWISE_1X1
    with kernels.use("reference"):
        g = conv.Conv2d(2, 0).geometry((2, 3, 5, 4), (4, 3, 1, 1))
        assert conv.conv2d_algorithm(g, np.dtype(np.float32), "numpy") is conv.REFERENCE


def test_summary_names_the_1x1_gemm():
    net = nn.Sequential(nn.Conv2d(8, 16, kernel_size=1, stride=2))
    printed = []
    rows = tinyalex.summary(net, (1, 8, 6, 6), print_fn=printed.append)
    assert rows[0]["algorithm"] == POINTWISE_1X1.name and POINTWISE_1X1.name in printed[0]
    assert net.algorithms((1, 8, 6, 6)) == [(0, POINTWISE_1X1.name)]


def test_summary_rows_inside_blocks_and_their_totals():
    """tinyalex.summary on GoogLeNet: each block's row carries its totals, and under it a
    row for every layer it calls, the Inception's four branches included; the block's
    MACs are the sum of its convolutions' (N*OC*OH*OW*C*KH*KW each)."""
    net = tinyalex.models.googlenet()
    printed = []
    rows = tinyalex.summary(net, (1, 1, 96, 96), print_fn=printed.append)
    b3 = rows[2]
    paths = [r["path"] for r in b3["inner"]]
    assert paths[:7] == ["0.p1_1", "0.p2_1", "0.p2_2", "0.p3_1", "0.p3_2", "0.p4_1", "0.p4_2"]
    assert paths[-1] == "2" and len(paths) == 15
    p2_2 = b3["inner"][2]                       # 3x3, 96 -> 128 channels on 12x12
    assert p2_2["output_shape"] == (1, 128, 12, 12)
    assert p2_2["macs"] == 128 * 12 * 12 * 96 * 3 * 3
    assert b3["macs"] == sum(r["macs"] for r in b3["inner"]) > 0
    assert b3["parameters"] == sum(r["parameters"] for r in b3["inner"])
    assert b3["inner"][0]["algorithm"] == POINTWISE_1X1.name
    assert "0.p2_2 Conv2d" in printed[0]
    assert not any("forward" in vars(m) for m in net.modules())     # the recording is gone
