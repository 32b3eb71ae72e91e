"""The layers nn.Sequential runs as one op on the CPU (``Sequential.FUSED_CPU``) give
the numbers of the layers run one after the other, bit for bit, where the arithmetic
is the same: a ReLU before max pooling, which runs on the pooled output
(``ops/pool.py``, ReluMaxPool2d)."""

import numpy as np
import pytest
from hypothesis import example, given, settings, strategies as st

import tinyalex
import tinyalex.kernels as kernels
import tinyalex.nn.functional as F
from tinyalex import nn, ops
from helpers.strategies import window_geometry


def values(rng, shape, dtype):
    """Half of them negative, some exact zeros and ties (ReLU's and max's edge cases)."""
    x = np.round(rng.standard_normal(shape) * 4) / 4
    x[rng.random(shape) < 0.05] = -0.0
    return x.astype(dtype)


@settings(max_examples=25)
@given(N=st.integers(1, 2), C=st.integers(1, 3), geom=window_geometry(pool=True),
       dtype=st.sampled_from([np.float32, np.float64]), seed=st.integers(0, 2**16))
@example(N=2, C=3, geom=(13, 13, 3, 3, 2, 2, 0, 0), dtype=np.float32, seed=0)  # AlexNet's
@example(N=1, C=2, geom=(5, 6, 3, 2, 1, 2, 1, 1), dtype=np.float64, seed=1)    # overlapping, padded
def test_relu_max_pool_equals_relu_then_max_pool(kernel_mode, N, C, geom, dtype, seed):
    """Forward and the input's gradient equal ReLU followed by MaxPool2d's, with ties,
    zeros, windows of negatives only, overlapping windows and padding."""
    H, W, KH, KW, SH, SW, PH, PW = geom
    rng = np.random.default_rng(seed)
    x = values(rng, (N, C, H, W), dtype)
    results = []
    for fused in (False, True):
        t = tinyalex.tensor(x, requires_grad=True)
        y = ops.pool.relu_max_pool2d(t, (KH, KW), (SH, SW), (PH, PW)) if fused else \
            F.max_pool2d(F.relu(t), (KH, KW), (SH, SW), (PH, PW))
        gy = np.random.default_rng(seed + 1).standard_normal(y.shape).astype(dtype)
        y.backward(tinyalex.tensor(gy))
        results.append((y.numpy(), t.grad.numpy()))
    for unfused, fused in zip(*results):
        np.testing.assert_array_equal(fused, unfused)


@pytest.mark.parametrize("mode", ["reference", "fast"])
def test_sequential_runs_relu_and_max_pool_as_one_op_with_the_same_numbers(mode):
    """A Conv2d, ReLU, MaxPool2d block: on the CPU the ReLU and the pooling are one op
    (``fusions``), and ``net.fuse = False`` gives the same loss and gradients."""
    assert tinyalex.models.alexnet().fusions("numpy") == {
        1: "ReLU+MaxPool2d", 4: "ReLU+MaxPool2d", 11: "ReLU+MaxPool2d"}
    rng = np.random.default_rng(3)
    net = nn.Sequential(nn.Conv2d(2, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(3, 2),
                        nn.Flatten(), nn.Linear(4 * 3 * 3, 5))
    x = tinyalex.tensor(rng.standard_normal((3, 2, 7, 7)).astype(np.float32))
    labels = tinyalex.tensor(rng.integers(0, 5, 3))
    grads = []
    with kernels.use(mode):
        for fuse in (True, False):
            net.fuse = fuse
            net.zero_grad()
            loss = nn.CrossEntropyLoss()(net(x), labels)
            loss.backward()
            grads.append([loss.numpy()] + [p.grad.numpy().copy() for p in net.parameters()])
    for a, b in zip(*grads):
        np.testing.assert_array_equal(a, b)
