"""Cross-entropy loss on logits with integer class labels.

The simple version first (``CrossEntropyReference``): log-softmax as
``z - log(sum(exp(z)))`` with ``z = logits - max(logits)``, so exp never overflows,
and the labels' range checked on the host before anything is computed.

On the GPU (``cross_entropy_algorithm``) the kernels of ``kernels/elementwise_gpu.py``
compute the same loss without reading anything back in the middle of the step: a
label outside [0, K) sets a flag in device memory (and makes its row's loss NaN),
and the loss, the number of rows whose argmax is the label, and the flag are read
back together, once, when the loss is read (``read_loss``, or the loss tensor's
``item()``), which raises ValueError naming the problem. The labels of the training
data are already checked when their file is read (``tinyalex/data.py``).
"""

from __future__ import annotations

import numpy as np

import tinyalex.kernels as kernels
from tinyalex.kernels import elementwise_gpu
from tinyalex.kernels.layout import FLOATS

from .. import backend as B
from ..tensor import Function, Tensor
from ..checks import check_floating


REDUCTIONS = ("mean", "sum", "none")


# -- [simple version] the readable reference ----------------------------------------------

class CrossEntropyReference:
    name = "log-softmax (reference)"

    def forward(self, logits, target, reduction="mean"):
        """``-log softmax(logits)[n, target[n]]`` per row, then their mean (0-d), sum
        (0-d) or, with ``reduction="none"``, the (N,) losses; and what backward needs."""
        xp = B.get_array_module(logits)
        N, K = logits.shape
        # one read of both ends: on the GPU each read back waits for the device
        lo, hi = (int(v) for v in B.to_numpy(xp.stack([target.min(), target.max()])))
        if lo < 0 or hi >= K:
            raise ValueError(f"cross_entropy: labels must lie in [0, {K - 1}] for {K} "
                             f"classes, got values from {lo} to {hi}")
        z = logits - logits.max(axis=1, keepdims=True)           # (N, K), max 0 per row
        log_sum = xp.log(xp.exp(z).sum(axis=1, keepdims=True))    # (N, 1)
        log_p = z - log_sum                                       # (N, K) log-softmax
        losses = -log_p[xp.arange(N), target]                     # (N,)
        out = {"mean": losses.mean, "sum": losses.sum}.get(reduction, lambda: losses)()
        return out, (log_p, target, reduction)

    def backward(self, gy, saved):
        log_p, target, reduction = saved
        xp = B.get_array_module(gy)
        N = log_p.shape[0]
        g = xp.exp(log_p)                                         # softmax, (N, K)
        g[xp.arange(N), target] -= 1                              # softmax - one_hot
        if reduction == "none":
            return g * gy[:, None]                                # (N, K) * (N, 1)
        return g * (gy / N if reduction == "mean" else gy)


CROSS_ENTROPY_REFERENCE = CrossEntropyReference()


def cross_entropy_algorithm(dtype, backend: str, reduction: str = "mean"):
    """The reference above with ``TINYALEX_KERNELS=reference``, dtypes other than
    float32/64, a ``reduction`` other than the mean, or on the CPU (where a read back
    costs nothing); on the GPU the cross-entropy kernels, whose label check is a
    device flag (module docstring)."""
    if kernels.get_mode() == "reference" or dtype not in FLOATS or backend != "cupy" \
            or reduction != "mean":
        return CROSS_ENTROPY_REFERENCE
    return elementwise_gpu.for_cupy(elementwise_gpu.CrossEntropyGPU)


class CrossEntropy(Function):
    """``-log softmax(logits)[n, target[n]]`` per example, then ``reduction``: the mean
    over the batch (the default), the sum, or ``"none"``: the (N,) losses themselves."""

    torch_name = "NllLossBackward0"  # PyTorch's name, for a repr's grad_fn

    mixed_dtypes = True  # float logits beside integer labels

    def __init__(self, reduction: str = "mean"):
        if reduction not in REDUCTIONS:
            raise ValueError(f"cross_entropy: reduction must be one of {REDUCTIONS}, got "
                             f"{reduction!r}")
        self.reduction = reduction

    def forward(self, logits, target):
        check_floating(logits.dtype, "cross_entropy", "logits")
        if logits.ndim != 2:
            raise ValueError(f"cross_entropy: logits must be 2-D (N, classes), got shape "
                             f"{tuple(logits.shape)}")
        N, K = logits.shape
        if N == 0:
            raise ValueError("cross_entropy: empty batch (logits of shape (0, K))")
        if K == 0:
            raise ValueError(f"cross_entropy: logits of shape {tuple(logits.shape)} hold no "
                             "classes; expected (N, K) with K >= 1")
        if target.dtype.kind not in "iu":
            raise TypeError(f"cross_entropy: target must hold integer class labels, got "
                            f"dtype {target.dtype}")
        if target.shape != (N,):
            raise ValueError(f"cross_entropy: target must have shape ({N},) to match "
                             f"logits {tuple(logits.shape)}, got {tuple(target.shape)}")
        self.algorithm = cross_entropy_algorithm(logits.dtype, B.backend_of(logits),
                                                 self.reduction)
        self.stats = None
        if self.algorithm is CROSS_ENTROPY_REFERENCE:
            loss, self.saved = self.algorithm.forward(logits, target, self.reduction)
            return loss
        loss, stats = self.algorithm.forward(logits, target)
        self.saved = (logits, target)
        self.stats = DeviceLossStats(stats, N, K)
        return loss

    def backward(self, gy):
        if self.algorithm is CROSS_ENTROPY_REFERENCE:
            return self.algorithm.backward(gy, self.saved), None
        return self.algorithm.backward(gy, *self.saved), None


class DeviceLossStats:
    """What the GPU loss leaves in device memory: ``stats`` (4,) in the logits' dtype,
    [sum of the rows' losses, rows whose argmax is the label, 0, the bad-label flag's
    bits as int32]; ``read()`` copies it to the host once."""

    def __init__(self, stats, N: int, K: int):
        self.stats, self.N, self.K = stats, N, K

    def read(self) -> tuple[float, int]:
        """(mean loss, correct rows), or ValueError if a label lay outside [0, K)."""
        host = B.to_numpy(self.stats)                             # one read back
        if int(host[3:4].view(np.int32)[0]):
            raise ValueError(f"cross_entropy: a label of this batch lies outside "
                             f"[0, {self.K - 1}] for {self.K} classes (found by the loss "
                             "kernel on the GPU and reported at the step's read of the "
                             "loss); check the labels given to the loss")
        return float(host[0] / host.dtype.type(self.N)), int(host[1])


def read_loss(loss: Tensor) -> tuple[float, int | None]:
    """The step's one read back: (loss, correct rows) for a loss made on the GPU (loss,
    accuracy count and label check in one copy), (loss, None) for any other loss."""
    stats = loss.__dict__.get("_device_stats")
    if stats is None:
        return float(loss.item()), None
    return stats.read()


def cross_entropy(logits, target, reduction: str = "mean"):
    if not isinstance(target, Tensor):
        try:
            target = Tensor(B.get_array_module(logits.array).asarray(target)
                            if isinstance(logits, Tensor) else target)
        except (TypeError, ValueError):
            raise TypeError(f"cross_entropy: target must hold integer class labels, got "
                            f"{type(target).__name__} {target!r:.60}") from None
    fn = CrossEntropy(reduction)
    out = fn(logits, target)
    if fn.stats is not None:
        out._device_stats = fn.stats          # read by read_loss and Tensor.item()
    return out
