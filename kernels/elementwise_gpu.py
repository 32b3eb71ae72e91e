"""The elementwise ops, the loss, the SGD update and the fully connected layers' GEMM
on the GPU (CuPy backend): the kernels of ``kernels/cuda/elementwise.cu``, launched
through a module provider (``cuda_launch.py``) on the memory as it lies, one launch
each, and a GEMM (``gemm_gpu.py``, strict FP32 as PyTorch's Linear layers).

Nothing a step must change between steps is a kernel argument, so a captured CUDA
graph replays the step as it is (``tinyalex/cuda_graph.py``):

* ``DeviceRNG``: dropout's random state in DEVICE memory, rng = {base seed, step}
  (uint64 (2,)); each dropout call of a step takes the next stream number (a constant
  of the call, hence of a captured graph), and ``next_step()`` launches ``rng[1] += 1``
  (recorded in the graph: every replay draws fresh masks). The mask of one call is
  ``tinyalex.random.keep_mask(dropout_seed(base, step, stream), n, p)``:
  SplitMix64 as on the CPU, so a seed gives the CPU's mask bit for bit. The base seed
  is one draw from tinyalex's host generator, drawn again whenever that generator is
  replaced (``tinyalex.manual_seed``, ``set_rng_state``).
* ``CrossEntropyGPU``: the loss, the rows whose argmax is the label, and a device flag
  for labels outside [0, K), in one buffer, with no read back: ``tinyalex/ops/loss.py``
  reads the loss, the count and the flag together, in one copy, after the step.
* ``SgdUpdateGPU.flat_step``: one update over the flat buffer of all parameters
  (``nn.FlatParameters``), weight decay and momentum in the same pass.

The launch plans of ``elementwise.cu`` come first below, then the algorithms;
``cuda_launch.py`` holds what every op's plans share.
"""

from __future__ import annotations

import functools
import math

import numpy as np

from tinyalex import backend as B
from tinyalex import random as R
from tinyalex.random import GOLDEN, MIX1, MIX2, dropout_threshold  # SplitMix64: defined there

from . import cuda_launch, gemm_gpu
from .cuda_launch import (MASK64, MAX_BLOCKS, Param, Params, Plan, check_sizes, dtype_suffix,
                        make_plan)
from .layout import dense_view, undo_order


# -- launch plans of cuda/elementwise.cu ------------------------------------------------------------------------

def _elementwise(family, size, dtype, arrays, index_bits, max_blocks) -> Plan:
    dtype, suffix = dtype_suffix(dtype, family)
    check_sizes(family, size=(size, 1))

    def build(bits):
        p = Params(bits, dtype)
        for name in arrays:
            p.array(name, size)
        p.index("total", size)
        return p

    return make_plan("elementwise", family, suffix, size, size, index_bits, max_blocks, build)


ACTIVATIONS = ("add", "relu", "sigmoid")    # bias_<activation>: none, ReLU, sigmoid


@functools.lru_cache(maxsize=1024)
def bias_activation(rows, OC, dtype, activation="relu", *, index_bits=None,
                    max_blocks=MAX_BLOCKS) -> Plan:
    """out (rows, OC) = act(y + bias[oc]) for a GEMM's result y (rows, OC); ``activation``
    "relu", "sigmoid" or "add" (none). ``out`` may be ``y`` (in place).
    Arrays: ``y``, ``bias`` (OC,), ``out``."""
    if activation not in ACTIVATIONS:
        raise ValueError(f"bias_activation: activation must be one of {ACTIVATIONS}, got "
                         f"{activation!r}")
    dtype, suffix = dtype_suffix(dtype, "bias_activation")
    check_sizes("bias_activation", rows=(rows, 1), OC=(OC, 1))
    total = rows * OC

    def build(bits):
        p = Params(bits, dtype)
        p.array("y", total)
        p.array("bias", OC)
        p.array("out", total)
        p.index("total", total)
        p.div("OC", OC)
        return p

    return make_plan("elementwise", f"bias_{activation}", suffix, total, total, index_bits,
                 max_blocks, build)


@functools.lru_cache(maxsize=1024)
def relu_forward(size, dtype, *, index_bits=None, max_blocks=MAX_BLOCKS) -> Plan:
    """y = x > 0 ? x : 0 over ``size`` elements. Arrays: ``x``, ``y`` (may be ``x``)."""
    return _elementwise("relu_forward", size, dtype, ("x", "y"), index_bits, max_blocks)


@functools.lru_cache(maxsize=1024)
def relu_backward(size, dtype, *, index_bits=None, max_blocks=MAX_BLOCKS) -> Plan:
    """gx = y > 0 ? gy : 0. Arrays: ``gy``, ``y``, ``gx`` (may be ``gy``)."""
    return _elementwise("relu_backward", size, dtype, ("gy", "y", "gx"), index_bits,
                        max_blocks)


@functools.lru_cache(maxsize=1024)
def sigmoid_forward(size, dtype, *, index_bits=None, max_blocks=MAX_BLOCKS) -> Plan:
    """y = 1 / (1 + exp(-x)), without overflow. Arrays: ``x``, ``y``."""
    return _elementwise("sigmoid_forward", size, dtype, ("x", "y"), index_bits, max_blocks)


@functools.lru_cache(maxsize=1024)
def sigmoid_backward(size, dtype, *, index_bits=None, max_blocks=MAX_BLOCKS) -> Plan:
    """gx = gy * y * (1 - y). Arrays: ``gy``, ``y``, ``gx``."""
    return _elementwise("sigmoid_backward", size, dtype, ("gy", "y", "gx"), index_bits,
                        max_blocks)


# dropout: stream numbers per step (elementwise.cu: seed = mix64(base + (step*STREAMS +
# stream + 1) * GOLDEN))
STREAMS = 65536


def mix64(z: int) -> int:
    """SplitMix64's output function (tinyalex/random.py), on Python ints."""
    z = ((z ^ (z >> 30)) * MIX1) & MASK64
    z = ((z ^ (z >> 27)) * MIX2) & MASK64
    return z ^ (z >> 31)


def dropout_seed(base: int, step: int, stream: int) -> int:
    """The mask seed the dropout kernel derives from device memory rng = {base, step}
    and its call site's ``stream``: mask element i is then
    ``tinyalex.random.keep_mask(dropout_seed(base, step, stream), n, p)[i]``."""
    return mix64((base + ((step * STREAMS + stream + 1) & MASK64) * GOLDEN) & MASK64)


@functools.lru_cache(maxsize=1024)
def dropout(size, dtype, p, stream=0, *, index_bits=None, max_blocks=MAX_BLOCKS) -> Plan:
    """y = x / (1-p) where the mask of ``dropout_seed(rng[0], rng[1], stream)`` keeps the
    element, else 0; the same plan, on gy, is the backward. Arrays: ``x``, ``y``, and
    ``rng``: uint64 (2,) in device memory, {base seed, step}."""
    if isinstance(p, bool) or not isinstance(p, (int, float)) or not 0.0 <= p <= 1.0:
        raise ValueError(f"dropout: p must be a probability between 0 and 1, got {p!r}")
    check_sizes("dropout", stream=(stream, 0))
    if stream >= STREAMS:
        raise ValueError(f"dropout: stream must be below {STREAMS}, got {stream}")

    dtype, suffix = dtype_suffix(dtype, "dropout")
    check_sizes("dropout", size=(size, 1))

    def build(bits):
        q = Params(bits, dtype)
        q.array("x", size)
        q.array("y", size)
        q.index("total", size)
        q.array("rng", 2, np.uint64)
        q.scalar("stream", "L", stream)
        q.scalar("threshold", "L", dropout_threshold(p))
        q.real("scale", 0.0 if p == 1.0 else 1.0 / (1.0 - p))
        return q

    return make_plan("elementwise", "dropout", suffix, size, size, index_bits, max_blocks, build)


def rng_advance() -> Plan:
    """rng[1] += 1 (the step counter), one thread. Arrays: ``rng`` (uint64 (2,))."""
    return Plan("elementwise", "rng_advance", 1, 1, 0,
                (Param("rng", "p", dtype=np.dtype(np.uint64), count=2),))


@functools.lru_cache(maxsize=1024)
def sgd_update(size, dtype, lr, momentum=0.0, weight_decay=0.0, first=False, *,
               index_bits=None, max_blocks=MAX_BLOCKS) -> Plan:
    """One SGD step over flat buffers of ``size`` elements, as tinyalex/optim.py:
    d = g (+ weight_decay * p); with momentum, buf = d on the ``first`` step, else
    momentum * buf + d, and d = buf; then p -= lr * d.
    Arrays: ``p``, ``g``, ``buf`` (None when momentum is 0)."""
    for name, v in (("lr", lr), ("momentum", momentum), ("weight_decay", weight_decay)):
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) \
                or v < 0:
            raise ValueError(f"sgd_update: {name} must be a finite number >= 0, got {v!r}")
    dtype, suffix = dtype_suffix(dtype, "sgd_update")
    check_sizes("sgd_update", size=(size, 1))

    def build(bits):
        p = Params(bits, dtype)
        p.array("p", size)
        p.array("g", size)
        p.array("buf", size, optional=momentum == 0)
        p.index("total", size)
        p.real("lr", lr)
        p.real("momentum", momentum)
        p.real("weight_decay", weight_decay)
        p.scalar("first", "i", int(bool(first)))
        return p

    return make_plan("elementwise", "sgd_update", suffix, size, size, index_bits, max_blocks,
                 build)


def _cross_entropy(family, N, K, dtype, arrays, index_bits, max_blocks):
    dtype, suffix = dtype_suffix(dtype, family)
    check_sizes(family, N=(N, 1), K=(K, 1))

    def build(bits):
        p = Params(bits, dtype)
        for name, count, dt in arrays:
            p.array(name, count, dt)
        p.index("N", N)
        p.index("K", K)
        return p

    return make_plan("elementwise", family, suffix, N, N * K, index_bits, max_blocks, build)


@functools.lru_cache(maxsize=1024)
def cross_entropy_forward(N, K, dtype, *, index_bits=None, max_blocks=MAX_BLOCKS) -> Plan:
    """One thread per row of logits (N, K): row_loss (N,) = -log softmax[label], row_hit
    (N,) = 1 where argmax == label, bad (int32 (1,)) set to 1 when a label is outside
    [0, K) (its row's loss NaN). Arrays: ``logits``, ``labels`` (int64 (N,)),
    ``row_loss``, ``row_hit``, ``bad``."""
    return _cross_entropy("cross_entropy_forward", N, K, dtype,
                          (("logits", N * K, None), ("labels", N, np.int64),
                           ("row_loss", N, None), ("row_hit", N, None), ("bad", 1, np.int32)),
                          index_bits, max_blocks)


@functools.lru_cache(maxsize=1024)
def cross_entropy_backward(N, K, dtype, *, index_bits=None, max_blocks=MAX_BLOCKS) -> Plan:
    """g (N, K) = (softmax(logits) - one_hot(labels)) * (gy[0] / N), gy the mean loss's
    gradient in device memory. Arrays: ``logits``, ``labels``, ``gy`` (1,), ``g``."""
    return _cross_entropy("cross_entropy_backward", N, K, dtype,
                          (("logits", N * K, None), ("labels", N, np.int64), ("gy", 1, None),
                           ("g", N * K, None)),
                          index_bits, max_blocks)


class _Elementwise:
    def __init__(self, xp, modules, max_blocks=MAX_BLOCKS):
        self.xp, self.modules, self.max_blocks = xp, modules, max_blocks

    def _unary(self, make_plan, x):
        t, order = dense_view(self.xp, x)
        out = self.xp.empty(t.shape, dtype=x.dtype)
        self.modules.launch(make_plan(x.size, x.dtype, max_blocks=self.max_blocks), x=t, y=out)
        return undo_order(out, order)

    def _binary(self, make_plan, gy, y):
        if gy.shape != y.shape or gy.dtype != y.dtype:
            raise ValueError(f"elementwise backward: gradient {gy.shape} ({gy.dtype}) does "
                             f"not match the output {y.shape} ({y.dtype})")
        ty, order = dense_view(self.xp, y)
        tg, _ = dense_view(self.xp, gy, order)
        out = self.xp.empty(ty.shape, dtype=y.dtype)
        self.modules.launch(make_plan(y.size, y.dtype, max_blocks=self.max_blocks), gy=tg,
                            y=ty, gx=out)
        return undo_order(out, order)


class ReluGPU(_Elementwise):
    name = "relu kernel"

    def forward(self, x):
        return self._unary(relu_forward, x)

    def backward(self, gy, y):
        """gx = y > 0 ? gy : 0: the mask and the product in one kernel."""
        return self._binary(relu_backward, gy, y)


class SigmoidGPU(_Elementwise):
    name = "sigmoid kernel"

    def forward(self, x):
        return self._unary(sigmoid_forward, x)

    def backward(self, gy, y):
        return self._binary(sigmoid_backward, gy, y)


class BiasActivationGPU(_Elementwise):
    """y (rows, OC) = act(y + bias) in place, one kernel: a GEMM's epilogue."""

    name = "bias+activation kernel"

    def __call__(self, y, bias, activation="relu"):
        rows, OC = y.shape
        if bias is None:
            if activation == "relu":
                self.modules.launch(relu_forward(y.size, y.dtype,
                                                      max_blocks=self.max_blocks), x=y, y=y)
            elif activation != "add":
                raise ValueError(f"bias_activation: no bias and activation {activation!r}")
            return y
        self.modules.launch(bias_activation(rows, OC, y.dtype, activation,
                                                 max_blocks=self.max_blocks),
                            y=y, bias=self.xp.ascontiguousarray(bias), out=y)
        return y


class DeviceRNG:
    """Dropout's random state {base seed, step} in device memory (module docstring)."""

    def __init__(self, xp, modules):
        self.xp, self.modules = xp, modules
        self.state = None          # uint64 (2,) on the device
        self.calls = 0             # dropout calls in this step: the next stream number
        self._source = None        # the host generator the base seed was drawn from

    def seeded(self):
        """The state, seeded from the host generator if it is new (an upload of 16
        bytes, once per seeding; tinyalex/cuda_graph.py's TrainStep calls this before
        capturing and before each replay, since capture fails on the upload). Seeded
        again, the state keeps its memory, so a captured graph reads the new seed."""
        generator = R.generator()
        if self.state is None or generator is not self._source:
            fresh = self.xp.asarray(np.array([R.seed_for_device(), 0], dtype=np.uint64))
            if self.state is None:
                self.state = fresh
            else:
                self.state[...] = fresh
            self._source, self.calls = generator, 0
        return self.state

    def take_stream(self) -> int:
        """The stream number of the next dropout call of this step."""
        self.seeded()
        if self.calls >= STREAMS:
            self.next_step()
        stream, self.calls = self.calls, self.calls + 1
        return stream

    def next_step(self) -> None:
        """Begin a new step: ``rng[1] += 1`` on the device, stream numbers from 0."""
        self.modules.launch(rng_advance(), rng=self.seeded())
        self.calls = 0


class DropoutGPU(_Elementwise):
    """Dropout whose mask seed lives in device memory (``DeviceRNG``): the "seed" the
    op keeps for backward is the call's stream number."""

    name = "dropout kernel"
    seed_on_device = True

    def __init__(self, xp, modules, rng=None, max_blocks=MAX_BLOCKS):
        super().__init__(xp, modules, max_blocks)
        self.rng = rng if rng is not None else DeviceRNG(xp, modules)

    def draw_seed(self) -> int:
        return self.rng.take_stream()

    def forward(self, x, p, stream):
        """x / (1-p) where the mask keeps the element (C order), else 0; also backward."""
        xc = self.xp.ascontiguousarray(x)          # the mask follows the C order of x
        y = self.xp.empty(x.shape, dtype=x.dtype)
        self.modules.launch(dropout(x.size, x.dtype, p, stream,
                                         max_blocks=self.max_blocks),
                            x=xc, y=y, rng=self.rng.seeded())
        return y

    backward = forward                 # the same mask and scale on the gradient


class SgdUpdateGPU(_Elementwise):
    name = "sgd kernel"

    def __call__(self, param, grad, lr):
        """``param -= lr * grad`` in place (one parameter)."""
        if param.shape != grad.shape or not param.flags.c_contiguous or param.dtype != grad.dtype:
            raise ValueError(f"sgd_update: parameter {param.shape} ({param.dtype}) and "
                             f"gradient {grad.shape} ({grad.dtype}) do not match")
        g = grad if grad.flags.c_contiguous else self.xp.ascontiguousarray(grad)
        self.modules.launch(sgd_update(param.size, param.dtype, float(lr),
                                            max_blocks=self.max_blocks), p=param, g=g, buf=None)
        return param

    def flat_step(self, data, grad, buf, lr, momentum, weight_decay, first):
        """One SGD step over flat buffers (``tinyalex/optim.py``'s arithmetic): d = g
        (+ weight_decay * p); with momentum buf = d on the first step, else
        momentum * buf + d, d = buf; p -= lr * d. ``buf`` None without momentum."""
        self.modules.launch(sgd_update(data.size, data.dtype, float(lr), float(momentum),
                                            float(weight_decay), bool(first),
                                            max_blocks=self.max_blocks),
                            p=data, g=grad, buf=buf)
        return data


class CrossEntropyGPU(_Elementwise):
    """Mean cross-entropy of logits (N, K) against int64 labels (N,), no read back."""

    name = "cross-entropy kernels"

    def forward(self, logits, labels):
        """(loss, stats): loss a 0-d array (the mean); stats (4,) in the logits' dtype =
        [sum of the rows' losses, rows whose argmax is the label, 0, a flag], the flag's
        bits an int32 the kernel sets to 1 when a label lies outside [0, K) (that row's
        loss is NaN). One buffer, so that one copy reads all of it back."""
        xp = self.xp
        N, K = logits.shape
        dtype = logits.dtype
        z = xp.ascontiguousarray(logits)                            # (N, K)
        t = xp.ascontiguousarray(labels if labels.dtype == np.int64
                                 else labels.astype(np.int64))      # (N,)
        rows = xp.empty((2, N), dtype=dtype)                        # row losses, row hits
        stats = xp.zeros(4, dtype=dtype)
        flag = stats[3:4].view(np.int32)[:1]                        # int32 (1,)
        self.modules.launch(cross_entropy_forward(N, K, dtype, max_blocks=self.max_blocks),
                            logits=z, labels=t, row_loss=rows[0], row_hit=rows[1], bad=flag)
        rows.sum(axis=1, out=stats[:2])                             # (2,)
        loss = stats[0:1].reshape(()) / dtype.type(N)               # 0-d, the mean
        return loss, stats

    def backward(self, gy, logits, labels):
        """g (N, K) = (softmax(logits) - one_hot(labels)) * (gy / N), gy (0-d) read on
        the device."""
        xp = self.xp
        N, K = logits.shape
        g = xp.empty((N, K), dtype=logits.dtype)
        t = labels if labels.dtype == np.int64 else labels.astype(np.int64)
        self.modules.launch(cross_entropy_backward(N, K, logits.dtype,
                                                        max_blocks=self.max_blocks),
                            logits=xp.ascontiguousarray(logits), labels=xp.ascontiguousarray(t),
                            gy=xp.ascontiguousarray(gy.astype(logits.dtype, copy=False)
                                                    ).reshape(1), g=g)
        return g


class MatmulGPU:
    """The fully connected layers' GEMM: a fresh (M, N) array, strict FP32."""

    name = "cuBLAS GEMM"

    def __init__(self, xp, gemm, bias_activation=None):
        self.xp, self.gemm, self.bias_activation = xp, gemm, bias_activation

    def __call__(self, a, b):
        if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[0] or a.dtype != b.dtype:
            raise ValueError(f"matmul: expected (M, K) @ (K, N) of one dtype, got "
                             f"{a.shape} ({a.dtype}) @ {b.shape} ({b.dtype})")
        out = self.xp.empty((a.shape[0], b.shape[1]), dtype=a.dtype)   # (M, N)
        self.gemm(a, b, out, tf32=False)                               # (M, K) @ (K, N)
        return out


_cache = {}


def for_cupy(cls):
    """The algorithm ``cls`` (one of the classes above) on CuPy arrays, built once;
    every one shares the cupy backend's module provider, and dropout its DeviceRNG."""
    if cls not in _cache:
        cp = B.cupy_module()
        modules = cuda_launch.for_cupy(cp)
        if cls is MatmulGPU:
            _cache[cls] = MatmulGPU(cp, gemm_gpu.for_cupy(), for_cupy(BiasActivationGPU))
        elif cls is DropoutGPU:
            _cache[cls] = DropoutGPU(cp, modules, device_rng())
        else:
            _cache[cls] = cls(cp, modules)
    return _cache[cls]


_rng = None


def device_rng() -> DeviceRNG:
    """The cupy backend's dropout state (the CUDA graph step advances it)."""
    global _rng
    if _rng is None:
        cp = B.cupy_module()
        _rng = DeviceRNG(cp, cuda_launch.for_cupy(cp))
    return _rng
