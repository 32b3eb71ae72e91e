"""Cross-entropy loss on logits with integer class labels."""

from __future__ import annotations

from .. import backend as B
from ..tensor import Function, Tensor
from ..checks import check_floating


REDUCTIONS = ("mean", "sum", "none")


class CrossEntropy(Function):
    """``-log softmax(logits)[n, target[n]]`` per example, then ``reduction``: the mean
    over the batch (the default), the sum, or ``"none"``: the (N,) losses themselves.

    Stable for logits of any magnitude: log-softmax is computed as
    ``z - log(sum(exp(z)))`` with ``z = logits - max(logits)``, so exp never overflows.
    """

    mixed_dtypes = True  # float logits beside integer labels

    def __init__(self, reduction: str = "mean"):
        if reduction not in REDUCTIONS:
            raise ValueError(f"cross_entropy: reduction must be one of {REDUCTIONS}, got "
                             f"{reduction!r}")
        self.reduction = reduction

    def forward(self, logits, target):
        xp = B.get_array_module(logits)
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
        # one read of both ends: on the GPU each read back waits for the device
        lo, hi = (int(v) for v in B.to_numpy(xp.stack([target.min(), target.max()])))
        if lo < 0 or hi >= K:
            raise ValueError(f"cross_entropy: labels must lie in [0, {K - 1}] for {K} "
                             f"classes, got values from {lo} to {hi}")
        z = logits - logits.max(axis=1, keepdims=True)           # (N, K), max 0 per row
        log_sum = xp.log(xp.exp(z).sum(axis=1, keepdims=True))    # (N, 1)
        log_p = z - log_sum                                       # (N, K) log-softmax
        rows = xp.arange(N)
        self.log_p, self.target = log_p, target
        losses = -log_p[rows, target]                             # (N,)
        if self.reduction == "none":
            return losses
        return losses.sum() if self.reduction == "sum" else losses.mean()

    def backward(self, gy):
        xp = B.get_array_module(gy)
        N = self.log_p.shape[0]
        g = xp.exp(self.log_p)                                    # softmax, (N, K)
        g[xp.arange(N), self.target] -= 1                         # softmax - one_hot
        if self.reduction == "none":
            return g * gy[:, None], None                          # (N, K) * (N, 1)
        return g * (gy / N if self.reduction == "mean" else gy), None


def cross_entropy(logits, target, reduction: str = "mean"):
    if not isinstance(target, Tensor):
        try:
            target = Tensor(B.get_array_module(logits.data).asarray(target)
                            if isinstance(logits, Tensor) else target)
        except (TypeError, ValueError):
            raise TypeError(f"cross_entropy: target must hold integer class labels, got "
                            f"{type(target).__name__} {target!r:.60}") from None
    return CrossEntropy(reduction)(logits, target)
