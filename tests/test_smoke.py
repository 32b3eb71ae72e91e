"""A quick end-to-end check that the package imports and one conv learns its gradient
right; the detailed suites live in the other test files."""

import numpy as np

import tinyalex
from tinyalex.nn import functional as F


def test_alexnet_output_and_parameter_count():
    net = tinyalex.models.alexnet()
    y = net(tinyalex.zeros(1, 1, 224, 224))
    assert y.shape == (1, 10)
    assert net.num_parameters() == 46_764_746


def test_conv2d_gradcheck_float64():
    rng = np.random.default_rng(1)
    x, w, b = (tinyalex.tensor(rng.standard_normal(s), requires_grad=True)
               for s in [(2, 2, 5, 4), (3, 2, 3, 2), (3,)])
    assert tinyalex.gradcheck(lambda x, w, b: F.conv2d(x, w, b, stride=(2, 1), padding=1),
                              x, w, b, atol=1e-6, rtol=1e-5)
