"""A quick end-to-end check that the package imports and one conv learns its gradient
right, and that the references CI installs (PyTorch, Fashion-MNIST) cannot go missing
there as skipped tests; the detailed suites live in the other test files."""

import sys

import numpy as np
import pytest

import tinyalex
from tinyalex import data
from tinyalex.nn import functional as F
from helpers.checks import real_fashion_mnist, require_torch


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


def outcome_of(helper):
    """What calling ``helper`` does to a test: ("fail" or "skip", the message), or
    (None, "") when it returns."""
    try:
        helper()
    except pytest.fail.Exception as exc:
        return "fail", str(exc)
    except pytest.skip.Exception as exc:
        return "skip", str(exc)
    return None, ""


@pytest.mark.parametrize("ci, want", [("", "skip"), ("1", "fail")])
def test_a_missing_reference_fails_in_ci_and_skips_elsewhere(monkeypatch, ci, want):
    """With torch unimportable and the data set absent: in CI (``CI`` set) both helpers
    fail the test, elsewhere they skip it, saying what is missing."""
    monkeypatch.setenv("CI", ci)
    monkeypatch.setitem(sys.modules, "torch", None)      # `import torch` raises ImportError

    def no_files(*args, **kwargs):
        raise FileNotFoundError("no Fashion-MNIST files in this test")
    monkeypatch.setattr(data, "load_fashion_mnist", no_files)
    kind, message = outcome_of(require_torch)
    assert kind == want and "PyTorch is not importable" in message
    kind, message = outcome_of(real_fashion_mnist)
    assert kind == want and "Fashion-MNIST files are not installed" in message


def test_require_torch_returns_the_torch_module():
    torch = require_torch()
    assert torch is sys.modules["torch"] and hasattr(torch.nn.functional, "conv2d")
