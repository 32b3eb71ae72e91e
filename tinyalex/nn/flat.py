"""All parameters of a network in one contiguous buffer, and all their gradients in
another: ``FlatParameters(net.parameters())``.

Each parameter's data becomes a view of ``data``, and backward writes each
parameter's gradient into its view of ``grad`` (``Tensor._grad_buffer``), so that a
whole step's gradients lie in one array: one allreduce of that array sums them over
processes (distributed training), and one pass over ``data`` and ``grad`` updates
every parameter (``optim.SGD``). The layout follows the order of ``params``::

    data[offsets[i] : offsets[i] + params[i].numel()] is params[i].array.reshape(-1)

A parameter that received no gradient in a step has ``.grad is None`` and stale
numbers in its view; ``zero_missing_gradients()`` zeroes those views, so the whole
buffer can be reduced.

The buffers live as long as the parameters (the gradients of one step are not freed
before the next), which adds the size of the gradients to a step's memory: opt-in,
where one buffer pays.
"""

from __future__ import annotations

from .. import backend as B
from ..tensor import Tensor


class FlatParameters:
    def __init__(self, params):
        self.params = list(params)
        if not self.params:
            raise ValueError("FlatParameters: got no parameters")
        dtypes = {p.dtype for p in self.params}
        backends = {p.backend for p in self.params}
        if len(dtypes) > 1 or len(backends) > 1:
            raise ValueError(f"FlatParameters: parameters must share one dtype and one "
                             f"backend, got dtypes {sorted(map(str, dtypes))} on "
                             f"{sorted(backends)}")
        if len({id(p) for p in self.params}) != len(self.params):
            raise ValueError("FlatParameters: a parameter is listed twice")
        xp = self.params[0].xp
        dtype = self.params[0].dtype
        self.offsets, self.sizes, total = [], [], 0
        for p in self.params:
            self.offsets.append(total)
            self.sizes.append(p.numel())
            total += p.numel()
        self.size = total
        self.data = xp.empty(total, dtype=dtype)             # (total,)
        self.grad = xp.zeros(total, dtype=dtype)             # (total,)
        for p, start in zip(self.params, self.offsets):
            view = self.data[start:start + p.numel()].reshape(p.shape)
            view[...] = p.array
            p.array = view
            p._grad_buffer = self.grad[start:start + p.numel()].reshape(p.shape)
            if p.grad is not None:
                p._grad_buffer[...] = p.grad.array
                p.grad = Tensor(p._grad_buffer)

    @property
    def backend(self) -> str:
        return B.backend_of(self.data)

    def views_intact(self) -> bool:
        """True while every parameter's data is still its view of ``data`` (moving a
        network to another backend, or assigning ``p.data``, breaks it). Decided from
        addresses alone: no device work, no wait (``shares_memory`` on CuPy arrays would
        sort the addresses of every element and read the answer back)."""
        backend, base = self.backend, B.data_pointer(self.data)
        item = self.data.dtype.itemsize
        return all(B.backend_of(p.array) == backend and p.array.dtype == self.data.dtype
                   and p.array.flags.c_contiguous and p.array.size == size
                   and B.data_pointer(p.array) == base + start * item
                   for p, start, size in zip(self.params, self.offsets, self.sizes))

    def zero_missing_gradients(self) -> None:
        """Zero the gradient views of parameters that got no gradient this step, and
        give them a ``.grad`` of zeros, so that ``grad`` holds the whole step."""
        for p in self.params:
            if p.grad is None:
                p._grad_buffer[...] = 0
                p.grad = Tensor(p._grad_buffer)

    def release(self) -> None:
        """Give every parameter memory of its own again (the buffers are dropped)."""
        for p in self.params:
            p.array = p.array.copy()
            p.__dict__.pop("_grad_buffer", None)
            if p.grad is not None:
                p.grad = Tensor(p.grad.array.copy())
