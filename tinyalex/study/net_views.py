"""What a trained network computes, layer by layer: what ``examples/visualize.py``
draws.

* ``first_conv(net)``: the first Conv2d, whose weights are the filters the network
  learned to look at pixels with;
* ``feature_maps(net, x)``: one image's activations after every conv and pool layer;
* ``pick_channels(maps, k)``: which channels of each layer to show;
* ``test_image(index)``: one Fashion-MNIST test image, as the network's input;
* ``initial_model(recipe)``: the network as training starts (``tinyalex.train.fit``'s
  seeded Xavier initialisation), for a before/after picture from one checkpoint.
"""

from __future__ import annotations

import numpy as np

from .. import backend as B
from .. import nn
from .. import random as R
from ..data import find_files, read_split, to_input
from ..models import init_weights_xavier
from ..recipes import build_model
from ..tensor import Tensor, no_grad

SHOWN_LAYERS = (nn.Conv2d, nn.MaxPool2d, nn.AvgPool2d)


def first_conv(net) -> nn.Conv2d:
    for layer in net:
        if isinstance(layer, nn.Conv2d):
            return layer
    raise ValueError(f"the network has no Conv2d layer (layers: "
                     f"{[type(m).__name__ for m in net]})")


def filters(net) -> np.ndarray:
    """The first layer's weights on the host: (OC, C, KH, KW)."""
    return B.to_numpy(first_conv(net).weight.array).astype(np.float32)


def feature_maps(net, x):
    """Run ``x`` (1, C, H, W) through ``net`` in eval mode; return
    ``[(label, maps (C, H, W)), ...]`` after each conv and pool layer and the class
    probabilities (num_classes,)."""
    if len(x.shape) != 4 or x.shape[0] != 1:
        raise ValueError(f"feature_maps: expected one image (1, C, H, W), got shape "
                         f"{tuple(x.shape)}")
    t = x if isinstance(x, Tensor) else Tensor(x)
    maps = []
    was_training = net.training
    net.eval()
    try:
        with no_grad():
            for i, layer in enumerate(net):
                t = layer(t)
                if isinstance(layer, SHOWN_LAYERS):
                    maps.append((f"{i}: {type(layer).__name__}", B.to_numpy(t.array[0])))
    finally:
        net.train(was_training)
    logits = B.to_numpy(t.array[0]).astype(np.float64)
    p = np.exp(logits - logits.max())
    return maps, p / p.sum()


def pick_channels(maps, k: int = 8):
    """Per layer, the ``k`` channels with the largest mean |activation| (strongest
    first): the ones that respond most to this image."""
    if k < 1:
        raise ValueError(f"pick_channels: k must be >= 1, got {k}")
    out = []
    for _, m in maps:
        strength = np.abs(m).mean(axis=(1, 2))            # (C,)
        out.append([int(c) for c in np.argsort(-strength, kind="stable")[:k]])
    return out


def test_image(index: int = 0, data_dir=None, resize: int = 28, backend: str = "numpy"):
    """Test image ``index`` of Fashion-MNIST: ``(image (28, 28) uint8, label, x)``,
    with x (1, 1, resize, resize) float32 exactly as training feeds the network."""
    images, labels = read_split(*find_files(data_dir)["test"])
    if not 0 <= index < len(images):
        raise ValueError(f"test image index must be in 0..{len(images) - 1}, got {index}")
    return images[index], int(labels[index]), to_input(images[index:index + 1], backend,
                                                      resize)


def initial_model(recipe: dict):
    """The network ``fit`` starts from for ``recipe``: seeded, Xavier-initialised.
    tinyalex's random stream is left as it was."""
    state = R.get_rng_state()
    try:
        R.manual_seed(int(recipe.get("seed", 0)))
        net = build_model(recipe["model"])
        net.apply(init_weights_xavier)
    finally:
        R.set_rng_state(state)
    net.eval()
    return net
