"""Stochastic gradient descent with PyTorch's ``torch.optim.SGD`` semantics."""

from __future__ import annotations

import math
import numbers

import tinyalex.kernels as kernels

from . import backend as B
from .tensor import Tensor, UninitializedParameter, no_grad


def _non_negative(value, arg, positive=False):
    if isinstance(value, bool) or not isinstance(value, numbers.Real) \
            or not math.isfinite(value) or value < 0 or (positive and value == 0):
        need = "a positive number" if positive else "a non-negative number"
        if isinstance(value, numbers.Real) and not math.isfinite(value):
            need += " (finite)"
        raise ValueError(f"SGD: {arg} must be {need}, got {value!r}")
    return float(value)


class SGD:
    """``p -= lr * v`` where ``v = momentum * v + (grad + weight_decay * p)``.

    With ``momentum=0`` this is plain SGD, d2l's optimiser. On the first step the
    momentum buffer starts at the gradient itself, as in PyTorch.
    """

    def __init__(self, params, lr, momentum=0.0, weight_decay=0.0):
        if not hasattr(params, "__iter__"):
            raise TypeError(f"SGD: params must be an iterable of Tensors (e.g. "
                            f"net.parameters()), got {type(params).__name__}")
        self.params = list(params)
        if not self.params:
            raise ValueError("SGD: got an empty parameter list")
        for i, p in enumerate(self.params):
            if not isinstance(p, Tensor) or not p.requires_grad:
                raise TypeError(f"SGD: parameter {i} must be a Tensor with requires_grad=True,"
                                f" got {type(p).__name__}")
        self.lr = _non_negative(lr, "lr", positive=True)
        self.momentum = _non_negative(momentum, "momentum")
        self.weight_decay = _non_negative(weight_decay, "weight_decay")
        self.momentum_buffers = [None] * len(self.params)

    def zero_grad(self) -> None:
        for p in self.params:
            p.grad = None

    def step(self) -> None:
        # A lazy layer's parameters may be listed before its first forward (d2l 1.0's
        # Trainer builds the optimizer first): they become Parameters in place then.
        # Stepping while one still has no shape is an error, not a silent skip.
        lazy = [i for i, p in enumerate(self.params) if isinstance(p, UninitializedParameter)]
        if lazy:
            raise ValueError(f"SGD.step: parameters {lazy} ({self.params[lazy[0]].owner}, "
                             "...) belong to lazy layers that have not run their first "
                             "forward; call the network on a batch before stepping")
        with no_grad():
            for i, p in enumerate(self.params):
                if p.grad is None:
                    continue
                d = p.grad.data
                if self.weight_decay:
                    d = d + self.weight_decay * p.data
                if self.momentum:
                    buf = self.momentum_buffers[i]
                    if buf is None:
                        buf = self.momentum_buffers[i] = d.copy()
                    else:
                        buf *= self.momentum
                        buf += d
                    d = buf
                # in place, one pass, no temporary the size of p (kernels/__init__.py)
                kernels.select(p.data).sgd_update(p.data, d, self.lr)

    # -- checkpoints ------------------------------------------------------------------
    def state_dict(self) -> dict:
        """Hyper-parameters and momentum buffers (host NumPy arrays or None)."""
        return {"lr": self.lr, "momentum": self.momentum, "weight_decay": self.weight_decay,
                "momentum_buffers": [None if b is None else B.to_numpy(b).copy()
                                     for b in self.momentum_buffers]}

    def load_state_dict(self, state: dict) -> None:
        buffers = state.get("momentum_buffers", [])
        if len(buffers) != len(self.params):
            raise ValueError(f"SGD.load_state_dict: {len(buffers)} momentum buffers for "
                             f"{len(self.params)} parameters")
        for i, (p, b) in enumerate(zip(self.params, buffers)):
            if b is not None and tuple(b.shape) != p.shape:
                raise ValueError(f"SGD.load_state_dict: momentum buffer {i} has shape "
                                 f"{tuple(b.shape)}, parameter has {p.shape}")
        self.lr = _non_negative(state.get("lr", self.lr), "lr", positive=True)
        self.momentum = _non_negative(state.get("momentum", self.momentum), "momentum")
        self.weight_decay = _non_negative(state.get("weight_decay", self.weight_decay),
                                          "weight_decay")
        self.momentum_buffers = [None if b is None else
                                 B.to_backend(b, p.backend).astype(p.dtype, copy=True)
                                 for p, b in zip(self.params, buffers)]
