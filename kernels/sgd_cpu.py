"""The SGD update on the CPU: ``param -= lr * grad`` in place, one pass with no temporary
the size of the parameter, cut into ranges for threads (``cpu_threads.ranges``; the loop
is ``numba_elementwise.sgd_update``). ``tinyalex/optim.py`` chooses it.
"""

from __future__ import annotations

import numpy as np

from . import cpu_threads, numba_elementwise as loops


def sgd_update(param, grad, lr):
    """In place: ``param -= lr * grad``, one pass, cut into ranges for threads."""
    if param.shape != grad.shape or not param.flags.c_contiguous or param.dtype != grad.dtype:
        raise ValueError(f"sgd_update: parameter {param.shape} ({param.dtype}, contiguous: "
                         f"{param.flags.c_contiguous}) and gradient {grad.shape} "
                         f"({grad.dtype}) do not match")
    g = np.ascontiguousarray(grad).reshape(-1)
    p, rate = param.reshape(-1), param.dtype.type(lr)
    cpu_threads.parallel([lambda i0=i0, i1=i1: loops.sgd_update(p, g, rate, i0, i1)
                          for i0, i1 in cpu_threads.ranges(p.size)])
    return param
