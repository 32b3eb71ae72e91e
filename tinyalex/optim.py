"""Stochastic gradient descent with PyTorch's ``torch.optim.SGD`` semantics."""

from __future__ import annotations

import tinyalex.kernels as kernels
from tinyalex.kernels import elementwise_gpu, sgd_cpu
from tinyalex.kernels.layout import fast_dtypes

from . import backend as B
from .checks import check_number
from .tensor import Tensor, UninitializedParameter, no_grad


def sgd_update_reference(param, grad, lr):
    """``param -= lr * grad`` in place (NumPy makes a temporary for ``lr * grad``)."""
    param -= param.dtype.type(lr) * grad
    return param


def sgd_update_algorithm(param, grad):
    """The in-place update ``param -= lr * grad``: the reference above with
    ``TINYALEX_KERNELS=reference`` or dtypes other than float32/64, else one pass with
    no temporary the size of the parameter (``kernels/sgd_cpu.py`` cut into
    ranges for threads, or a CUDA kernel)."""
    if kernels.get_mode() == "reference" or not fast_dtypes(param, grad) \
            or not param.flags.c_contiguous or param.shape != grad.shape:
        return sgd_update_reference
    if B.backend_of(param) == "cupy":
        return elementwise_gpu.for_cupy(elementwise_gpu.SgdUpdateGPU)
    return sgd_cpu.sgd_update


def sgd_flat_algorithm(data, grad):
    """The whole-buffer step of ``SGD(flat=...)``: on the GPU one kernel does weight
    decay, momentum and the update in one pass (``SgdUpdateGPU.flat_step``); None
    elsewhere, where the step is written with the array operations below."""
    if kernels.get_mode() == "reference" or not fast_dtypes(data, grad) \
            or B.backend_of(data) != "cupy":
        return None
    return elementwise_gpu.for_cupy(elementwise_gpu.SgdUpdateGPU)


class SGD:
    """``p -= lr * v`` where ``v = momentum * v + (grad + weight_decay * p)``.

    With ``momentum=0`` this is plain SGD, d2l's optimiser. On the first step the
    momentum buffer starts at the gradient itself, as in PyTorch.

    ``flat``: a ``tinyalex.nn.FlatParameters`` of exactly these parameters (in this
    order): while every parameter has its gradient in the flat buffer, a step is one
    update over the whole buffer instead of one per parameter (the same numbers).
    """

    def __init__(self, params, lr, momentum=0.0, weight_decay=0.0, flat=None):
        if not hasattr(params, "__iter__") or isinstance(params, Tensor):
            raise TypeError(f"SGD: params must be an iterable of Tensors (e.g. "
                            f"net.parameters()), got {type(params).__name__}")
        self.params = list(params)
        if not self.params:
            raise ValueError("SGD: got an empty parameter list")
        for i, p in enumerate(self.params):
            if not isinstance(p, Tensor) or not p.requires_grad:
                raise TypeError(f"SGD: parameter {i} must be a Tensor with requires_grad=True,"
                                f" got {type(p).__name__}")
        self.lr = check_number(lr, "lr", "SGD", positive=True)
        self.momentum = check_number(momentum, "momentum", "SGD")
        self.weight_decay = check_number(weight_decay, "weight_decay", "SGD")
        self.momentum_buffers = [None] * len(self.params)
        if flat is not None and [id(q) for q in flat.params] != [id(q) for q in self.params]:
            raise ValueError("SGD: flat must hold exactly the parameters given, in order")
        self.flat = flat
        self._flat_momentum = None            # (total,), when the flat step keeps momentum

    def zero_grad(self) -> None:
        for p in self.params:
            p.grad = None

    def _flat_ready(self) -> bool:
        f = self.flat
        return f is not None and f.views_intact() and all(
            p.grad is not None and p.grad.array is p._grad_buffer for p in self.params) \
            and (not self.momentum or self._flat_momentum is not None
                 or all(b is None for b in self.momentum_buffers))

    def _step_flat(self) -> None:
        f = self.flat
        kernel = sgd_flat_algorithm(f.data, f.grad)
        if kernel is not None:
            first = self.momentum != 0 and self._flat_momentum is None
            if first:                       # the kernel writes buf = d on the first step
                self._new_flat_momentum(B.get_array_module(f.data).empty_like(f.data))
            kernel.flat_step(f.data, f.grad, self._flat_momentum if self.momentum else None,
                             self.lr, self.momentum, self.weight_decay, first)
            return
        d = f.grad                                                  # (total,)
        if self.weight_decay:
            d = d + self.weight_decay * f.data
        if self.momentum:
            if self._flat_momentum is None:
                self._new_flat_momentum(d.copy())
            else:
                self._flat_momentum *= self.momentum
                self._flat_momentum += d
            d = self._flat_momentum
        sgd_update_algorithm(f.data, d)(f.data, d, self.lr)

    def _new_flat_momentum(self, buffer) -> None:
        """The flat momentum buffer (total,), and each parameter's view of it."""
        self._flat_momentum = buffer
        self.momentum_buffers = [buffer[o:o + p.numel()].reshape(p.shape)
                                 for p, o in zip(self.params, self.flat.offsets)]

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
            if self._flat_ready():
                self._step_flat()
                return
            for i, p in enumerate(self.params):
                if p.grad is None:
                    continue
                d = p.grad.array
                if self.weight_decay:
                    d = d + self.weight_decay * p.array
                if self.momentum:
                    buf = self.momentum_buffers[i]
                    if buf is None:
                        buf = self.momentum_buffers[i] = d.copy()
                    else:
                        buf *= self.momentum
                        buf += d
                    d = buf
                # in place, one pass, no temporary the size of p
                sgd_update_algorithm(p.array, d)(p.array, d, self.lr)

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
                                 f"{tuple(b.shape)}, parameter has {tuple(p.shape)}")
        self.lr = check_number(state.get("lr", self.lr), "lr", "SGD", positive=True)
        self.momentum = check_number(state.get("momentum", self.momentum), "momentum", "SGD")
        self.weight_decay = check_number(state.get("weight_decay", self.weight_decay),
                                         "weight_decay", "SGD")
        self.momentum_buffers = [None if b is None else
                                 B.to_backend(b, p.backend).astype(p.dtype, copy=True)
                                 for p, b in zip(self.params, buffers)]
        self._flat_momentum = None
        if self.flat is not None and all(b is not None for b in self.momentum_buffers):
            xp = self.params[0].xp       # one flat momentum buffer again, as _step_flat keeps
            self._flat_momentum = xp.concatenate([b.reshape(-1) for b in self.momentum_buffers])
            self.momentum_buffers = [self._flat_momentum[o:o + p.numel()].reshape(p.shape)
                                     for p, o in zip(self.params, self.flat.offsets)]
