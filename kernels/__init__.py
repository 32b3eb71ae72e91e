"""The hot loops, and the one place that chooses which implementation runs.

Every kernel exists as a readable reference, written with NumPy-style array code
that runs on NumPy and CuPy alike (``tinyalex/ops/im2col.py``, ``conv.py``,
``pool.py``, ``activation.py``). Fast versions live beside this file: Numba on the CPU
(``cpu.py``) and CUDA on the GPU (``gpu.py``); they must agree with the reference,
and the tests check that they do (``tests/test_kernels*.py``, ``tests/test_gpu_kernels.py``).

An op asks for the kernel set of its input and keeps it for its backward pass::

    k = kernels.select(x)           # chosen from x's backend and the kernel mode
    cols = k.im2col(x, KH, KW, SH, SW, PH, PW)

The kernel mode is ``"fast"`` (the default) or ``"reference"``. Set it with the
environment variable ``TINYALEX_KERNELS=reference`` before starting Python, with
``kernels.set_mode("reference")``, or for a block of code::

    with kernels.use("reference"):
        ...

Kernel set entries (shapes use the letters of the Notation in ``tinyalex/ops/im2col.py``):

* ``im2col(x, KH, KW, SH, SW, PH, PW) -> cols (N*OH*OW, C*KH*KW)``
* ``col2im(cols, x_shape, KH, KW, SH, SW, PH, PW) -> (N, C, H, W)``
* ``conv2d_forward(x, weight, bias, SH, SW, PH, PW, keep) -> (y, saved)`` and
  ``conv2d_backward(gy, saved, need_x, need_w, need_b) -> (gx, gW, gb)`` (None where
  not needed); ``saved`` is private to the kernel set (None unless ``keep``)
* ``max_pool2d_forward(x, KH, KW, SH, SW, PH, PW) -> (y, argmax)``, where ``argmax``
  is private to the kernel set and goes back unchanged to
  ``max_pool2d_backward(gy, argmax, x_shape, KH, KW, SH, SW, PH, PW) -> gx``
* ``avg_pool2d_forward(x, KH, KW, SH, SW, PH, PW) -> y`` and
  ``avg_pool2d_backward(gy, x_shape, KH, KW, SH, SW, PH, PW) -> gx``
* ``relu_forward(x) -> y``, ``relu_backward(gy, y) -> gx`` (y: the forward's output);
  ``sigmoid_forward(x) -> y``, ``sigmoid_backward(gy, y) -> gx``
* ``dropout(x, p, seed) -> x * mask / (1-p)``, the mask a function of (seed, index)
  (``tinyalex.random.keep_mask``); backward is the same call on the gradient.
* ``sgd_update(param, grad, lr) -> param``: ``param -= lr * grad`` in place, without
  a temporary the size of the parameter (for the optimiser).
* ``matmul(a, b) -> a @ b`` for 2-D a (M, K) and b (K, N), a fresh array (the fully
  connected layers; on the CPU cut into GEMMs for threads like the convolutions').

Where the implementations live: the readable references in ``tinyalex/ops/im2col.py``,
``conv.py``, ``pool.py`` and ``activation.py``; the fast CPU set in ``cpu.py`` (checked
wrappers) over ``numba_kernels.py`` (compiled loops), with the direct convolution in
``direct.py`` / ``numba_direct.py``, Winograd's in ``winograd.py`` /
``numba_winograd.py`` / ``numba_winograd4.py`` / ``numba_winograd5.py`` and loops over
index ranges for threads in ``numba_elementwise.py``; the fast GPU set in ``gpu.py`` over ``cuda_kernels.py``
(numba.cuda kernels launched on CuPy arrays); the checked wrappers both fast sets share
in ``fastset.py``, and their chunked channels-last convolution in ``fastconv.py``.

Environment variables: ``TINYALEX_KERNELS`` (above); ``TINYALEX_CPU_THREADS`` (threads
of the CPU set, default every core: BLAS runs single-threaded and large GEMMs are cut
into that many pieces, see ``cpu.py``); ``TINYALEX_TF32`` (on the GPU, convolution
GEMMs run in TF32 by default, as PyTorch's cuDNN convolutions do; ``TINYALEX_TF32=0``
or ``kernels.set_tf32(False)`` asks for strict FP32, see ``precision.py``);
``TINYALEX_MALLOC`` (the CPU set keeps freed memory in the process for the next step,
``TINYALEX_MALLOC=default`` leaves glibc's malloc as it is, see ``allocator.py``).

The fast CPU convolution takes one of four lowerings by shape (``fastconv.py``):
Winograd F(4x4, 3x3) or F(2x2, 5x5) for 3x3 and 5x5 stride-1 layers with at least 96
channels in and out (AlexNet's, ``winograd.py``); the direct convolution on plain
(N, C, H, W) memory for the other stride-1 layers with padding below the kernel size
(LeNet's, ``direct.py``); otherwise im2col + GEMM on channels-last images, with the
columns built transposed for layers with few channels (``im2col_kmajor``).

The contract every kernel keeps:

* Arrays returned by a kernel belong to the caller. A kernel that reuses buffers
  between calls (the fast convolution's im2col workspace) uses them only inside the
  call and never hands one out as a result or gradient: a parameter's ``.grad`` may
  alias what backward returns, and the optimiser updates it in place.
* A result has the shape and values the reference gives (PyTorch's semantics); its
  memory order may differ: the fast sets return images as (N, C, H, W) views of
  channels-last memory (im2col and Winograd convolutions, and pooling of such
  images) or in plain memory (direct convolutions, and pooling of plain images), and
  accept any memory order.
* Arguments are checked before compiled code runs (shapes, dtypes, ranges): bad input
  raises ValueError or TypeError, never reads or writes out of bounds.
"""

from __future__ import annotations

import contextlib
import os

from tinyalex import backend as B

from .precision import set_tf32, tf32, tf32_enabled  # noqa: F401 - the GPU precision flag

__all__ = ["KernelSet", "get_mode", "kernel_set", "select", "set_mode", "set_tf32", "tf32",
           "tf32_enabled", "use"]

MODES = ("fast", "reference")


def _mode_from_env() -> str:
    mode = os.environ.get("TINYALEX_KERNELS", "fast").strip().lower() or "fast"
    if mode not in MODES:
        raise ValueError(f"TINYALEX_KERNELS={mode!r} is not a kernel mode; expected one "
                         f"of {MODES}")
    return mode


_mode = _mode_from_env()
_cache: dict = {}


class KernelSet:
    """The kernels chosen for one backend and mode (attributes named as above)."""

    def __init__(self, backend: str, mode: str, table: dict, sources: dict):
        self.backend, self.mode, self.sources = backend, mode, sources
        self.__dict__.update(table)

    def __repr__(self):
        return f"KernelSet(backend={self.backend!r}, mode={self.mode!r})"


def get_mode() -> str:
    return _mode


def set_mode(mode: str) -> None:
    """Choose ``"fast"`` or ``"reference"`` kernels for every op from now on."""
    global _mode
    if mode not in MODES:
        raise ValueError(f"unknown kernel mode {mode!r}; expected one of {MODES}")
    _mode = mode


@contextlib.contextmanager
def use(mode: str):
    """Run a block with the given kernel mode, then restore the previous one."""
    previous = _mode
    set_mode(mode)
    try:
        yield
    finally:
        set_mode(previous)


def _reference_table() -> dict:
    from tinyalex.ops import activation as act_ref, conv as conv_ref, im2col as cols_ref
    from tinyalex.ops import pool as pool_ref
    return {
        "im2col": cols_ref.im2col,
        "col2im": cols_ref.col2im,
        "conv2d_forward": conv_ref.conv2d_forward_reference,
        "conv2d_backward": conv_ref.conv2d_backward_reference,
        "max_pool2d_forward": pool_ref.max_pool2d_forward_reference,
        "max_pool2d_backward": pool_ref.max_pool2d_backward_reference,
        "avg_pool2d_forward": pool_ref.avg_pool2d_forward_reference,
        "avg_pool2d_backward": pool_ref.avg_pool2d_backward_reference,
        "relu_forward": act_ref.relu_forward_reference,
        "relu_backward": act_ref.relu_backward_reference,
        "sigmoid_forward": act_ref.sigmoid_forward_reference,
        "sigmoid_backward": act_ref.sigmoid_backward_reference,
        "dropout": act_ref.dropout_reference,
        "sgd_update": sgd_update_reference,
        "matmul": matmul_reference,
    }


def matmul_reference(a, b):
    """a @ b (NumPy's or CuPy's GEMM)."""
    return a @ b


def sgd_update_reference(param, grad, lr):
    """``param -= lr * grad`` in place (NumPy makes a temporary for ``lr * grad``)."""
    param -= param.dtype.type(lr) * grad
    return param


def _fast_table(backend: str) -> dict:
    """Fast kernels for a backend: Numba on "numpy", CUDA kernels on "cupy"."""
    if backend == "numpy":
        from . import cpu  # noqa: PLC0415 - compiled on first use, not at import
        return dict(cpu.TABLE)
    from . import gpu  # noqa: PLC0415
    return dict(gpu.table())


def kernel_set(backend: str, mode: str | None = None) -> KernelSet:
    mode = mode or _mode
    key = (backend, mode)
    if key not in _cache:
        table = _reference_table()
        sources = dict.fromkeys(table, "reference")
        if mode == "fast":
            fast = _fast_table(backend)
            table.update(fast)
            sources.update(dict.fromkeys(fast, "fast"))
        _cache[key] = KernelSet(backend, mode, table, sources)
    return _cache[key]


def select(array) -> KernelSet:
    """The kernel set for ``array``'s backend in the current mode."""
    return kernel_set(B.backend_of(array))
