"""Plain helpers the test files share (the fixtures are in ``tests/conftest.py``):

* ``BACKENDS``: "numpy", then "cupy" skipped with tinyalex's own reason where unusable;
* ``check``: ``tinyalex.gradcheck`` with the suite's tolerances (below);
* ``arr`` / ``randn``: float64 test tensors from a seeded NumPy generator, moved to
  a backend, so that hypothesis examples are reproducible;
* ``distinct``, ``away_from_zero``: inputs that keep finite differences away from
  the kinks of max pooling (ties) and ReLU (zero);
* ``host``, ``spot_check``, ``assert_gradients_match``;
* ``on_gpu``: a test that needs a real GPU (marked ``gpu``, skipped saying why);
* ``real_fashion_mnist()``, ``require_torch()``: what CI installs and the tests need;
  missing, a skip on a developer's machine and a failure in CI.
"""

from __future__ import annotations

import os

import numpy as np
import pytest

import tinyalex
from tinyalex import backend as B

# The suite's gradient-check tolerances. Central differences in float64 with
# eps = 1e-6 have truncation error ~eps**2 * |f'''| (~1e-12 here) and round-off
# ~1e-16 * |f| / eps (~1e-9 for |f| ~ 10), so 1e-6 absolute + 1e-5 relative is
# tight and still leaves three orders of magnitude of headroom.
EPS, ATOL, RTOL = 1e-6, 1e-6, 1e-5

_CUPY_REASON = B.cupy_unavailable_reason()
BACKENDS = [
    "numpy",
    pytest.param("cupy", marks=pytest.mark.skipif(
        bool(_CUPY_REASON), reason=f"cupy backend not usable here: {_CUPY_REASON}")),
]



def on_gpu(test):
    """A test that needs a real GPU: marked ``gpu`` (benchmarks/gpu_check.sh runs
    ``-m gpu``) and skipped, with the reason, where CuPy or a GPU is missing."""
    needs = pytest.mark.skipif(not B.cupy_available(),
                               reason=f"no usable GPU: {B.cupy_unavailable_reason()}")
    return pytest.mark.gpu(needs(test))

def real_fashion_mnist():
    """The real Fashion-MNIST files (tinyalex.data's search order). Where they are
    missing the test is skipped on a developer's machine but fails in CI (``CI`` set),
    whose set-up installs them: a broken install step must not pass as skipped tests."""
    from tinyalex import data
    try:
        return data.load_fashion_mnist()
    except FileNotFoundError as exc:
        reason = f"the real Fashion-MNIST files are not installed here ({exc})"
        if os.environ.get("CI"):
            pytest.fail(reason + "; scripts/setup.sh installs them in CI")
        pytest.skip(reason)


def require_torch():
    """PyTorch, the suite's only external reference (test-only: tinyalex never imports
    it). Every test that compares against it gets it from here. Where it is not
    importable the test is skipped on a developer's machine but fails in CI (``CI``
    set), whose set-up installs it: a failed install must not turn the parity checks
    into skips. At module level it skips or fails the whole module."""
    try:
        import torch
    except ImportError as exc:
        reason = f"PyTorch is not importable here ({exc}): no reference to compare against"
        if os.environ.get("CI"):
            pytest.fail(reason + "; scripts/setup.sh installs it in CI", pytrace=False)
        pytest.skip(reason, allow_module_level=True)
    return torch


def assert_gradients_match(got, want, dtype, **tolerance):
    """A fast kernel's (gx, gW, gb) against the reference's: None in the same places,
    the same shapes, ``dtype``, and values within ``tolerance`` (assert_allclose's)."""
    for a, e in zip(got, want):
        assert (a is None) == (e is None)
        if a is not None:
            assert a.shape == e.shape and a.dtype == dtype
            np.testing.assert_allclose(a, e, **tolerance)


def check(fn, *inputs, eps=EPS, atol=ATOL, rtol=RTOL, seed=0):
    """``tinyalex.gradcheck`` with the suite's tolerances (raises on a mismatch)."""
    return tinyalex.gradcheck(fn, *inputs, eps=eps, atol=atol, rtol=rtol, seed=seed)


def arr(values, backend="numpy", requires_grad=True, dtype=np.float64):
    """A tensor holding ``values`` on ``backend`` (float64 by default, for gradchecks)."""
    return tinyalex.tensor(np.asarray(values, dtype=dtype), requires_grad=requires_grad,
                           backend=backend)


def randn(rng, shape, backend="numpy", requires_grad=True, scale=1.0):
    return arr(rng.standard_normal(shape) * scale, backend, requires_grad)


def distinct(rng, shape, gap=0.01):
    """Values without ties (a scaled random permutation): max pooling stays
    differentiable under +-eps perturbations because neighbours differ by >= gap."""
    n = int(np.prod(shape))
    return (rng.permutation(n).reshape(shape) - n / 2) * gap


def away_from_zero(rng, shape, low=0.1, high=1.0):
    """Random signs times magnitudes in [low, high]: no element near ReLU's kink."""
    return rng.choice([-1.0, 1.0], size=shape) * rng.uniform(low, high, size=shape)


def host(t) -> np.ndarray:
    """A host NumPy copy of a Tensor's (or array's) values."""
    return t.numpy() if isinstance(t, tinyalex.Tensor) else B.to_numpy(t)


def spot_check(loss_fn, tensor, indices, eps=EPS, atol=ATOL, rtol=RTOL):
    """Compare tensor.grad (already computed for ``loss_fn()``) with central
    differences at a few ``indices``; for big networks where a full gradcheck
    over every element would take minutes. ``tensor`` must be float64.
    Returns the analytic values, so that a test can insist they are not 0."""
    assert tensor.dtype == np.float64
    analytic = host(tensor.grad)
    flat = tensor.array.reshape(-1)
    assert np.shares_memory(flat, tensor.array) if tensor.backend == "numpy" else True
    checked = []
    for index in indices:
        j = int(np.ravel_multi_index(index, tensor.shape))
        old = float(flat[j])
        with tinyalex.no_grad():
            flat[j] = old + eps
            f_plus = float(loss_fn().item())
            flat[j] = old - eps
            f_minus = float(loss_fn().item())
        flat[j] = old
        numeric = (f_plus - f_minus) / (2 * eps)
        a = analytic[tuple(index)]
        assert abs(a - numeric) <= atol + rtol * abs(numeric), (
            f"element {tuple(index)}: analytic {a:.10g}, numeric {numeric:.10g}")
        checked.append(a)
    return checked
