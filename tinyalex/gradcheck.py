"""Check a backward pass against central finite differences.

``gradcheck(fn, *inputs)`` computes ``y = fn(*inputs)``, draws a random upstream
gradient ``gy`` of y's shape, and compares, for every input that requires grad and
every one of its elements, the analytic gradient of ``sum(y * gy)`` (from
``backward``) with the numeric one::

    (f(x + eps) - f(x - eps)) / (2 * eps),   f(x) = sum(fn(x) * gy)

Inputs must be float64: float32 finite differences are too coarse to be a proof.
This is the function the test suite itself uses for every op and layer.
"""

from __future__ import annotations

import numpy as np

from . import backend as B
from .tensor import Tensor, no_grad


class GradcheckError(AssertionError):
    """The analytic and numeric gradients disagree (the message says where)."""


def _output(fn, inputs):
    y = fn(*inputs)
    if not isinstance(y, Tensor):
        raise TypeError(f"gradcheck: fn must return a Tensor, got {type(y).__name__}")
    return y


def gradcheck(fn, *inputs, eps: float = 1e-6, atol: float = 1e-5, rtol: float = 1e-3,
              seed: int = 0, raise_exception: bool = True) -> bool:
    """True when every gradient matches within ``|a - n| <= atol + rtol * |n|``.

    On a mismatch raise :class:`GradcheckError` naming the input, the element and
    both values (or return False with ``raise_exception=False``). ``seed`` fixes the
    upstream gradient; the global random stream is not touched.
    """
    checked = [i for i, x in enumerate(inputs) if isinstance(x, Tensor) and x.requires_grad]
    if not checked:
        raise ValueError("gradcheck: no input has requires_grad=True, nothing to check")
    for i in checked:
        if inputs[i].dtype != np.float64:
            raise TypeError(f"gradcheck: input {i} is {inputs[i].dtype}; finite differences "
                            "need float64 inputs (use .double())")

    saved_grads = [x.grad if isinstance(x, Tensor) else None for x in inputs]
    try:
        for i in checked:
            inputs[i].grad = None
        y = _output(fn, inputs)
        if not y.requires_grad:
            raise ValueError("gradcheck: fn's output does not depend on any input that "
                             "requires grad")
        rng = np.random.default_rng(seed)
        gy_host = rng.standard_normal(y.shape)
        gy = B.to_backend(gy_host.astype(y.dtype), y.backend)
        y.backward(gy)
        analytic = {i: (B.to_numpy(inputs[i].grad.array) if inputs[i].grad is not None
                        else np.zeros(inputs[i].shape)) for i in checked}
    finally:
        for x, g in zip(inputs, saved_grads):
            if isinstance(x, Tensor):
                x.grad = g

    def f():
        with no_grad():
            out = _output(fn, inputs)
        return float((B.to_numpy(out.array).astype(np.float64) * gy_host).sum())

    for i in checked:
        if not inputs[i].array.flags.c_contiguous:
            inputs[i].array = inputs[i].xp.ascontiguousarray(inputs[i].array)
        x = inputs[i].array
        flat = x.reshape(-1)               # a view: writing flat[j] perturbs x
        numeric = np.empty(x.size)
        for j in range(x.size):
            old = float(flat[j])
            flat[j] = old + eps
            f_plus = f()
            flat[j] = old - eps
            f_minus = f()
            flat[j] = old
            numeric[j] = (f_plus - f_minus) / (2 * eps)
        numeric = numeric.reshape(x.shape)
        a = analytic[i]
        bad = np.abs(a - numeric) > atol + rtol * np.abs(numeric)
        if bad.any():
            where = np.unravel_index(np.argmax(np.abs(a - numeric) * bad), x.shape)
            msg = (f"gradcheck: gradient of input {i} (shape {x.shape}) is wrong at "
                   f"{tuple(int(w) for w in where)}: analytic {a[where]:.8g}, numeric "
                   f"{numeric[where]:.8g}; {int(bad.sum())} of {x.size} elements differ "
                   f"by more than atol={atol} + rtol={rtol}*|numeric| (max abs error "
                   f"{np.abs(a - numeric).max():.3g})")
            if raise_exception:
                raise GradcheckError(msg)
            return False
    return True
