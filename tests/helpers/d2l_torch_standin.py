"""The reference side of tests/d2l/test_d2l_conv_chapters.py: the few ``d2l.`` names the
convolution sections' scripts call, on real PyTorch, so that the same script runs under
``import torch`` with ``import d2l_torch_standin as d2l`` in place of tinyalex's d2l.

The aliases are PyTorch's own functions under d2l's short names (d2l's torch.py binds
them the same way); ``corr2d`` is the 2-D cross-correlation the conv-layer section saves,
written here as one product-and-sum per output position. Only the names the scripts use
are here: a script calling anything else fails on the PyTorch side and says so.
"""

import torch

abs = torch.abs                 # noqa: A001  (d2l's name)
arange = torch.arange
concat = torch.cat
float32 = torch.float32
matmul = torch.matmul
normal = torch.normal
ones = torch.ones
stack = torch.stack
tensor = torch.tensor
zeros = torch.zeros


def reduce_sum(x, *args, **kwargs):
    return x.sum(*args, **kwargs)


def reshape(x, *args, **kwargs):
    return x.reshape(*args, **kwargs)


def transpose(x, *args, **kwargs):
    return x.t(*args, **kwargs)


def corr2d(X, K):
    """Y[i, j] = sum(X[i:i+h, j:j+w] * K) for every position where K fits in X."""
    h, w = K.shape
    rows, cols = X.shape[0] - h + 1, X.shape[1] - w + 1
    Y = torch.zeros((rows, cols))
    for i in range(rows):
        for j in range(cols):
            Y[i, j] = (X[i:i + h, j:j + w] * K).sum()
    return Y
