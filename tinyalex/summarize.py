"""``summary(net, input_shape)``: run one input through a Sequential, layer by layer,
and print each layer's output shape and parameter count."""

from __future__ import annotations

import numpy as np

from .tensor import Tensor, no_grad


def layer_macs(layer, in_shape, out_shape) -> int:
    """Multiply-accumulates of one layer for the whole batch of ``in_shape``.

    Conv2d: N*OC*OH*OW*C*KH*KW; Linear: N*in*out; other layers: 0 (they do no
    multiply-accumulate work worth counting).
    """
    from . import nn
    if isinstance(layer, nn.Conv2d):
        N, OC, OH, OW = out_shape
        C = in_shape[1]
        KH, KW = layer.kernel_size
        return N * OC * OH * OW * C * KH * KW
    if isinstance(layer, nn.Linear):
        return int(np.prod(in_shape[:-1])) * layer.in_features * layer.out_features
    return 0


def layer_rows(net, input_shape, backend: str = "numpy", dtype=np.float32):
    """One dict per layer of ``net``: index, name, output shape, parameters, MACs."""
    if not hasattr(net, "__iter__"):
        raise TypeError(f"summary needs a Sequential (iterable of layers), got "
                        f"{type(net).__name__}")
    shape = tuple(int(s) for s in input_shape)
    if any(s < 1 for s in shape):
        raise ValueError(f"summary: input_shape must hold positive sizes, got {input_shape}")
    from . import backend as B
    x = Tensor(B.xp_of(backend).zeros(shape, dtype=dtype))
    rows = []
    was_training = net.training
    net.eval()
    try:
        with no_grad():
            for i, layer in enumerate(net):
                in_shape = x.shape
                x = layer(x)
                rows.append({"index": i, "name": type(layer).__name__,
                             "output_shape": x.shape,
                             "parameters": sum(p.size for p in layer.parameters()),
                             "macs": layer_macs(layer, in_shape, x.shape)})
    finally:
        net.train(was_training)
    return rows


def summary(net, input_shape, backend: str = "numpy", print_fn=print):
    """Print the per-layer table (and return its rows)."""
    rows = layer_rows(net, input_shape, backend)
    lines = [f"{'#':>3}  {'layer':<10} {'output shape':<22} {'parameters':>12}"]
    lines.append("-" * len(lines[0]))
    for r in rows:
        lines.append(f"{r['index']:>3}  {r['name']:<10} {str(r['output_shape']):<22} "
                     f"{r['parameters']:>12,}")
    lines.append("-" * len(lines[0]))
    total = sum(r["parameters"] for r in rows)
    lines.append(f"{'':>3}  {'total':<10} {'':<22} {total:>12,}")
    if print_fn is not None:
        print_fn("\n".join(lines))
    return rows
