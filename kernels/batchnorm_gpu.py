"""Batch normalization on the GPU (CuPy backend): the kernels of
``kernels/cuda/batchnorm.cu``, launched through a module provider (``cuda_launch.py``)
on the memory as it lies, with the reference's interface (``tinyalex/ops/batchnorm.py``).

Every input is seen as x (A, C, B), C-contiguous (``channel_blocks``): plain
(N, C, H, W) memory is A = N, B = H*W; channels-last memory ((N, H, W, C), as the
convolutions return theirs) is A = N*H*W, B = 1; (N, C) and (N, C, L) are A = N and
B = 1 or L. Channel c's M = A*B entries are x[a, c, b].

Training forward, three launches:

    partial_stats   x -> part_mean, part_m2 (C, P)     Welford over each part of a channel
    stats           -> mean, var (biased), inv_std (C,) the P parts merged in order
    normalize       y = (x - mean) * inv_std * gamma + beta

Eval forward: ``normalize`` alone, with the running statistics (inv_std computed by
the reference's own line). Backward, three launches:

    partial_grads   gy, x -> part_dbeta, part_dgamma (C, P)   sums of gy, gy * xhat
    grad_sums       -> dbeta, dgamma (C,)
    backward        dx = gamma * inv_std / M * (M*gy - dbeta - xhat * dgamma)
                    (eval: dx = gy * gamma * inv_std)

As the CPU loop does, the op keeps x (which the graph holds anyway) and two numbers per
channel, not xhat. The per-channel sums are two-stage reductions without atomics
(``parts`` cuts each channel into P parts), so results do not depend on the schedule.
The running statistics are updated by the op (``ops/batchnorm.py``, batch_norm) from
the batch mean and var returned here.

The launch plans of ``batchnorm.cu`` come first below, then the algorithm;
``cuda_launch.py`` holds what every op's plans share.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

from tinyalex import backend as B

from . import cuda_launch
from .cuda_launch import MAX_BLOCKS, Params, Plan, check_sizes, dtype_suffix, make_plan
from .layout import as_nhwc


# -- how a channel's sums are cut ------------------------------------------------------------

PAIRS = 32 * 1024        # (channel, part) pairs of stage one: enough threads for a GPU
MIN_ENTRIES = 64         # entries a part sums at least


def parts(C: int, M: int) -> int:
    """P, the parts each channel's M entries are cut into for stage one: about PAIRS
    threads in all, each summing MIN_ENTRIES entries or more; 1 <= P <= M."""
    return max(1, min(M // MIN_ENTRIES, PAIRS // C))


# -- launch plans of cuda/batchnorm.cu (x (A, C, B); M = A*B entries a channel) ----------------

def _stage_one(family, A, C, B, dtype, inputs, index_bits, max_blocks) -> Plan:
    """partial_stats and partial_grads: ``inputs`` of x's size, the per-channel ``mean``
    and ``inv_std`` for the gradients, and two (C, P) outputs."""
    dtype, suffix = dtype_suffix(dtype, family)
    check_sizes(family, A=(A, 1), C=(C, 1), B=(B, 1))
    n, M = A * C * B, A * B
    P = parts(C, M)
    outputs = {"batch_norm_partial_stats": ("part_mean", "part_m2"),
               "batch_norm_partial_grads": ("part_dbeta", "part_dgamma")}[family]

    def build(bits):
        p = Params(bits, dtype)
        for name in inputs:
            p.array(name, n)
        if family == "batch_norm_partial_grads":
            p.array("mean", C)
            p.array("inv_std", C)
        for name in outputs:
            p.array(name, C * P)
        p.index("pairs", C * P)
        p.index("M", M)
        p.div("C", C)
        p.div("P", P)
        p.div("B", B)
        p.scalar("channels_inner", "i", int(B == 1))
        return p

    # every entry index m < M steps on by P once past the last: n + P bounds them all
    return make_plan("batchnorm", family, suffix, C * P, n + P, index_bits, max_blocks, build)


@functools.lru_cache(maxsize=1024)
def partial_stats(A, C, B, dtype, *, index_bits=None, max_blocks=MAX_BLOCKS) -> Plan:
    """x (A, C, B) -> part_mean, part_m2 (C, P), P = parts(C, A*B): each part's mean and
    sum of squared deviations. Arrays: ``x``, ``part_mean``, ``part_m2``."""
    return _stage_one("batch_norm_partial_stats", A, C, B, dtype, ("x",), index_bits,
                      max_blocks)


@functools.lru_cache(maxsize=1024)
def partial_grads(A, C, B, dtype, *, index_bits=None, max_blocks=MAX_BLOCKS) -> Plan:
    """gy, x (A, C, B), mean, inv_std (C,) -> part_dbeta, part_dgamma (C, P): each part's
    sums of gy and gy * xhat. Arrays: ``gy``, ``x``, ``mean``, ``inv_std``,
    ``part_dbeta``, ``part_dgamma``."""
    return _stage_one("batch_norm_partial_grads", A, C, B, dtype, ("gy", "x"), index_bits,
                      max_blocks)


def _stage_two(family, C, M, dtype, arrays, eps, index_bits, max_blocks) -> Plan:
    dtype, suffix = dtype_suffix(dtype, family)
    check_sizes(family, C=(C, 1), M=(M, 1))
    P = parts(C, M)

    def build(bits):
        p = Params(bits, dtype)
        for name, count in arrays:
            p.array(name, count * (P if name.startswith("part_") else 1))
        p.index("C", C)
        p.index("P", P)
        if eps is not None:
            p.index("M", M)
            p.real("eps", eps)
        return p

    return make_plan("batchnorm", family, suffix, C, max(C * P, M), index_bits, max_blocks,
                     build)


@functools.lru_cache(maxsize=1024)
def stats(C, M, dtype, eps, *, index_bits=None, max_blocks=MAX_BLOCKS) -> Plan:
    """part_mean, part_m2 (C, P) -> mean, var (biased), inv_std = 1 / sqrt(var + eps)
    (C,). Arrays: ``part_mean``, ``part_m2``, ``mean``, ``var``, ``inv_std``."""
    return _stage_two("batch_norm_stats", C, M, dtype,
                      [(name, C) for name in ("part_mean", "part_m2", "mean", "var",
                                              "inv_std")],
                      float(eps), index_bits, max_blocks)


@functools.lru_cache(maxsize=1024)
def grad_sums(C, M, dtype, *, index_bits=None, max_blocks=MAX_BLOCKS) -> Plan:
    """part_dbeta, part_dgamma (C, P) -> dbeta, dgamma (C,). Arrays: ``part_dbeta``,
    ``part_dgamma``, ``dbeta``, ``dgamma``."""
    return _stage_two("batch_norm_grad_sums", C, M, dtype,
                      [(name, C) for name in ("part_dbeta", "part_dgamma", "dbeta",
                                              "dgamma")],
                      None, index_bits, max_blocks)


def _elementwise(family, A, C, B, dtype, arrays, extra, index_bits, max_blocks) -> Plan:
    dtype, suffix = dtype_suffix(dtype, family)
    check_sizes(family, A=(A, 1), C=(C, 1), B=(B, 1))
    n = A * C * B

    def build(bits):
        p = Params(bits, dtype)
        for name, per_channel in arrays:
            p.array(name, C if per_channel else n, optional=name in ("gamma", "beta"))
        p.index("total", n)
        p.div("B", B)
        p.div("C", C)
        extra(p)
        return p

    return make_plan("batchnorm", family, suffix, n, n, index_bits, max_blocks, build)


@functools.lru_cache(maxsize=1024)
def normalize(A, C, B, dtype, *, index_bits=None, max_blocks=MAX_BLOCKS) -> Plan:
    """y (A, C, B) = (x - mean[c]) * inv_std[c] (* gamma[c] + beta[c]). Arrays: ``x``,
    ``mean``, ``inv_std``, ``gamma`` and ``beta`` (None: no affine), ``y``."""
    return _elementwise("batch_norm_normalize", A, C, B, dtype,
                        (("x", False), ("mean", True), ("inv_std", True), ("gamma", True),
                         ("beta", True), ("y", False)),
                        lambda p: None, index_bits, max_blocks)


@functools.lru_cache(maxsize=1024)
def backward(A, C, B, dtype, training, *, index_bits=None, max_blocks=MAX_BLOCKS) -> Plan:
    """dx (A, C, B), overwritten: training's closed form, or eval's gy * gamma * inv_std.
    Arrays: ``gy``, ``x``, ``mean``, ``inv_std``, ``gamma`` (None: 1), ``dbeta``,
    ``dgamma``, ``dx``."""
    def extra(p):
        p.index("M", A * B)
        p.scalar("training", "i", int(bool(training)))

    return _elementwise("batch_norm_backward", A, C, B, dtype,
                        (("gy", False), ("x", False), ("mean", True), ("inv_std", True),
                         ("gamma", True), ("dbeta", True), ("dgamma", True), ("dx", False)),
                        extra, index_bits, max_blocks)


# -- memory ----------------------------------------------------------------------------------

def channel_blocks(xp, x, channels_last=None):
    """``(t, A, B, channels_last)``: x's entries as the C-contiguous array ``t`` whose
    memory is (A, C, B) (module docstring). A 4-D x in channels-last memory gives its
    (N, H, W, C) view, anything else C order (a view when it is already, else a copy);
    ``channels_last`` forces the choice (a gradient follows its input's)."""
    if channels_last is None:
        channels_last = x.ndim == 4 and not x.flags.c_contiguous \
            and x.transpose(0, 2, 3, 1).flags.c_contiguous
    if channels_last:
        t = as_nhwc(xp, x)                                  # (N, H, W, C)
        return t, t.shape[0] * t.shape[1] * t.shape[2], 1, True
    t = xp.ascontiguousarray(x)                             # (N, C, ...)
    return t, x.shape[0], t.size // (x.shape[0] * x.shape[1]), False


def from_blocks(t, channels_last):
    """``channel_blocks``' array back to the (N, C, ...) shape, a view."""
    return t.transpose(0, 3, 1, 2) if channels_last else t


@dataclass
class BatchNormSaved:
    """What backward needs: x as ``channel_blocks`` laid it, and per channel the mean
    and inv_std (the batch's in training, the running ones in eval) and gamma."""
    x: object
    channels_last: bool
    mean: object
    inv_std: object
    gamma: object
    training: bool


# -- the algorithm -----------------------------------------------------------------------------

class BatchNormGPU:
    """The kernels above with the reference's interface (ops/batchnorm.py)."""

    name = "batchnorm kernel"

    def __init__(self, xp, modules, max_blocks=MAX_BLOCKS):
        self.xp, self.modules, self.max_blocks = xp, modules, max_blocks

    def _per_channel(self, a, dtype):
        return None if a is None else self.xp.ascontiguousarray(a.astype(dtype, copy=False))

    def forward(self, x, gamma, beta, eps, mean=None, var=None):
        """(y, saved, batch mean, batch var): training when ``mean`` is None (the
        batch's statistics; biased var), else eval with the given ones."""
        xp, b = self.xp, dict(max_blocks=self.max_blocks)
        t, A, Bk, channels_last = channel_blocks(xp, x)     # t: (A, C, B) in memory
        C, dtype = x.shape[1], x.dtype
        training = mean is None
        if training:
            M = A * Bk
            part = xp.empty((2, C, parts(C, M)), dtype=dtype)   # part_mean, part_m2
            st = xp.empty((3, C), dtype=dtype)                  # mean, var, inv_std
            self.modules.launch(partial_stats(A, C, Bk, dtype, **b), x=t,
                                part_mean=part[0], part_m2=part[1])
            self.modules.launch(stats(C, M, dtype, float(eps), **b), part_mean=part[0],
                                part_m2=part[1], mean=st[0], var=st[1], inv_std=st[2])
            mean, var, inv_std = st[0], st[1], st[2]
        else:
            inv_std = (1 / xp.sqrt(var + eps)).astype(dtype, copy=False)   # the reference's
            mean, inv_std = self._per_channel(mean, dtype), xp.ascontiguousarray(inv_std)
        y = xp.empty(t.shape, dtype=dtype)
        self.modules.launch(normalize(A, C, Bk, dtype, **b), x=t, mean=mean, inv_std=inv_std,
                            gamma=self._per_channel(gamma, dtype),
                            beta=self._per_channel(beta, dtype), y=y)
        saved = BatchNormSaved(t, channels_last, mean, inv_std, gamma, training)
        return from_blocks(y, channels_last), saved, mean, var

    def backward(self, gy, s: BatchNormSaved):
        """(dx, dgamma, dbeta); dgamma and dbeta None without gamma. dx lies as x."""
        xp, b = self.xp, dict(max_blocks=self.max_blocks)
        x = from_blocks(s.x, s.channels_last)
        if gy.shape != x.shape:
            raise ValueError(f"batch_norm backward: gradient {gy.shape} does not match the "
                             f"input {x.shape}")
        dtype = s.x.dtype
        g, A, Bk, _ = channel_blocks(xp, gy.astype(dtype, copy=False), s.channels_last)
        C, M = x.shape[1], A * Bk
        part = xp.empty((2, C, parts(C, M)), dtype=dtype)      # part_dbeta, part_dgamma
        sums = xp.empty((2, C), dtype=dtype)                   # dbeta, dgamma
        self.modules.launch(partial_grads(A, C, Bk, dtype, **b), gy=g, x=s.x, mean=s.mean,
                            inv_std=s.inv_std, part_dbeta=part[0], part_dgamma=part[1])
        self.modules.launch(grad_sums(C, M, dtype, **b), part_dbeta=part[0],
                            part_dgamma=part[1], dbeta=sums[0], dgamma=sums[1])
        dx = xp.empty(s.x.shape, dtype=dtype)
        self.modules.launch(backward(A, C, Bk, dtype, s.training, **b), gy=g, x=s.x,
                            mean=s.mean, inv_std=s.inv_std,
                            gamma=self._per_channel(s.gamma, dtype), dbeta=sums[0],
                            dgamma=sums[1], dx=dx)
        dx = from_blocks(dx, s.channels_last)
        if s.gamma is None:
            return dx, None, None
        return (dx, sums[1].astype(s.gamma.dtype, copy=False),
                sums[0].astype(s.gamma.dtype, copy=False))


_cache = {}


def for_cupy() -> BatchNormGPU:
    """The algorithm on CuPy arrays, built once (the cupy backend's module provider)."""
    if "batchnorm" not in _cache:
        cp = B.cupy_module()
        _cache["batchnorm"] = BatchNormGPU(cp, cuda_launch.for_cupy(cp))
    return _cache["batchnorm"]
