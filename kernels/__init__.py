"""tinyalex.kernels: the hot loops, and the switches that say which of them run.

This is the top-level folder ``kernels/`` of the source tree, which is the
sub-package ``tinyalex.kernels`` through the committed symlink ``tinyalex/kernels ->
../kernels``: Python, pip (plain and editable installs, wheels) and editors'
go-to-definition (jedi, pyright) all follow it. Import it as ``tinyalex.kernels``,
never as ``kernels``.

Every op has a readable reference in ``tinyalex/ops/`` (``im2col.py``, ``conv.py``,
``pool.py``, ``activation.py``), and each op's one chooser function there (for
example ``tinyalex.ops.conv.conv2d_algorithm``) returns the algorithm that runs: the
reference, or one of the fast algorithms here, each a named object with ``forward``
and ``backward``. The files, by algorithm and device:

===========================  =====================================================
``conv_im2col_cpu.py``       im2col + GEMM, a few images at a time (``numba_im2col.py``)
``conv_winograd_cpu.py``     Winograd F(6x6, 3x3), F(4x4, 3x3), F(4x4, 5x5), F(3x3, 5x5) and
                             F(2x2, 5x5) (``numba_winograd_f63.py``, ``_f43.py``, ``_f45.py``,
                             ``_f35.py``, ``_f25.py``)
``conv_direct_cpu.py``       the direct convolution of stride-1 layers (``numba_direct.py``);
                             LeNet's conv + sigmoid + avg-pool with 32 images in the
                             vector lanes (``numba_lanes.py``)
``conv_pointwise.py``        1x1 convolutions as one GEMM (no im2col)
``conv_grouped_cpu.py``      grouped convolution: one im2col, one batched GEMM over groups
``pool_cpu.py``              max and average pooling (``numba_pool.py``)
``elementwise_cpu.py``       ReLU, sigmoid, dropout (``numba_elementwise.py``)
``dense_cpu.py``             the fully connected layers' GEMM
``sgd_cpu.py``               the SGD update (``numba_elementwise.py``)
``batchnorm_cpu.py``         batch normalization's fused loops
``conv_im2col_gpu.py``,      the GPU's (CuPy backend) im2col + GEMM, pooling,
``pool_gpu.py``,             elementwise ops, loss and SGD, batch normalization: the
``elementwise_gpu.py``,      CUDA C kernels of ``cuda/*.cu``, each op's launch plans
``batchnorm_gpu.py``         beside its algorithm
``cuda_launch.py``           the service they call: the plans' shared parts, the NVRTC
                             build and its cache, the launch (cupy.RawModule)
``cuda_emulation.py``        the same kernels built by g++ for the CPU tests
``gemm_gpu.py``              the GPU GEMMs (cuBLAS called directly: capturable in a
                             CUDA graph; or cupy.matmul)
``geometry.py``              a window op's geometry, validated once
``layout.py``                memory orders (plain, channels-last)
``workspace.py``             reused scratch buffers;  ``recycle.py``: recycled GEMM results
``cpu_threads.py``           the CPU kernels' threads
``cpu_process.py``           the process policy (malloc, BLAS threads): ``tinyalex.cpu_policy``
``precision.py``             TF32 for the GPU's convolution GEMMs
===========================  =====================================================

The switches, read from the environment when tinyalex is imported and settable from
Python:

* ``TINYALEX_KERNELS`` = ``fast`` (default) or ``reference``: ``reference`` runs the
  readable NumPy/CuPy code of ``tinyalex/ops`` only. ``set_mode``, ``use`` (a block).
* ``TINYALEX_CONV`` = ``auto`` (default) or ``im2col``: with ``im2col`` every
  convolution runs as im2col + one GEMM with the functions ``tinyalex/ops/im2col.py``
  teaches (on NumPy and on CuPy arrays alike), and
  pooling with ``tinyalex/ops/pool.py``'s references; ``auto`` lets the chooser take
  Winograd, the direct convolution or the compiled im2col loops. ``set_conv_mode``,
  ``use_conv``.
* ``TINYALEX_TF32`` (``precision.py``), ``TINYALEX_CPU_THREADS`` (``cpu_threads.py``),
  ``TINYALEX_MALLOC`` (``cpu_process.py``).

The contract every fast algorithm keeps:

* Arrays it returns belong to the caller. Buffers reused between calls (the
  workspace) are used only inside a call and never handed out: a parameter's
  ``.grad`` may alias what backward returns, and the optimiser updates it in place.
* A result has the shape and values the reference gives (PyTorch's semantics); its
  memory order may differ (``layout.py``), and every algorithm accepts any order.
* A window op's algorithm trusts its geometry. The op (``tinyalex/ops/conv.py``,
  ``pool.py``) builds a ``ConvGeometry`` or ``PoolGeometry`` from its operands'
  shapes once (``geometry.py``: every size validated there, bad input refused with a
  ValueError naming the layer), takes the algorithm whose rule accepts that geometry, and hands
  it exactly the arrays the geometry describes: forward's x and weight, backward's
  gradient of the output's shape (the autograd engine checks each gradient's shape
  against its tensor's: ``tinyalex/tensor.py``), and the state its own forward saved. Below
  that nothing is checked again, and the compiled loops index with the geometry's
  sizes: a direct caller (a test, a benchmark) builds ``g`` with ``conv_geometry`` /
  ``pool_geometry`` from the very arrays it passes, and calls an algorithm only on a
  geometry its ``takes`` accepts. ``tests/reliability/test_bad_args.py`` runs every
  compiled loop, on hypothesis-drawn geometries through the ops, on arrays that
  refuse any index out of their bounds. The GPU launch keeps one check, of every
  array against its plan (``cuda_launch.Plan.args``: dtype, size, contiguity),
  because a kernel writing past an array corrupts device memory without a crash.
  The algorithms with no geometry (elementwise, the GEMMs, SGD) check their arrays
  against each other before a loop runs.
* It imports nothing from tinyalex's ops, nn, training or study code: kernels take
  arrays and a geometry.
"""

from __future__ import annotations

import contextlib
import os

if __name__ != "tinyalex.kernels":
    raise ImportError(f"this folder is tinyalex.kernels; import it as `import "
                      f"tinyalex.kernels`, not as {__name__!r} (that would be a second, "
                      "independent copy with its own switches)")

from .precision import set_tf32, tf32, tf32_enabled  # noqa: E402,F401 - the GPU precision flag

__all__ = ["MODES", "CONV_MODES", "get_mode", "set_mode", "use", "get_conv_mode",
           "set_conv_mode", "use_conv", "set_tf32", "tf32", "tf32_enabled"]

MODES = ("fast", "reference")
CONV_MODES = ("auto", "im2col")


def _from_env(variable, default, allowed, what):
    value = os.environ.get(variable, default).strip().lower() or default
    if value not in allowed:
        raise ValueError(f"{variable}={value!r} is not a {what}; expected one of {allowed}")
    return value


_mode = _from_env("TINYALEX_KERNELS", "fast", MODES, "kernel mode")
_conv_mode = _from_env("TINYALEX_CONV", "auto", CONV_MODES, "convolution mode")


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


def get_conv_mode() -> str:
    return _conv_mode


def set_conv_mode(mode: str) -> None:
    """``"auto"``: each convolution takes its fastest algorithm; ``"im2col"``: every
    convolution runs as im2col + one GEMM (``tinyalex/ops/im2col.py``'s functions)."""
    global _conv_mode
    if mode not in CONV_MODES:
        raise ValueError(f"unknown convolution mode {mode!r}; expected one of {CONV_MODES}")
    _conv_mode = mode


@contextlib.contextmanager
def use_conv(mode: str):
    """Run a block with the given convolution mode, then restore the previous one."""
    previous = _conv_mode
    set_conv_mode(mode)
    try:
        yield
    finally:
        set_conv_mode(previous)
