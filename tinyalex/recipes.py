"""The models tinyalex trains and d2l's recipe for each: one table of facts.

    net = build_model("lenet")                         # a fresh, untrained LeNet
    recipe = check_recipe({"model": "lenet", "epochs": 2})   # d2l's, with epochs=2

``MODELS`` holds, per model, what the training scripts, the checkpoints and the
comparison tool need to know of it: its name in tables, the function that builds
it (``tinyalex.models``) and d2l's recipe (AlexNet chapter: batch 128, lr 0.01,
10 epochs, resize 224; LeNet chapter: batch 256, lr 0.9, 10 epochs, 28x28; VGG-11,
NiN, GoogLeNet, ResNet-18 and DenseNet as the modern-CNN chapter trains them). The
recipe's ``resize`` is the input side the network is built for (``input_size``).

``check_recipe`` fills a recipe's missing keys from the model's d2l recipe and
checks every value; ``check_input_size`` runs one zero image of the recipe's size
through the network, so that a size the network cannot take fails before training.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from . import models
from .checks import check_int, check_number
from .data import MAX_RESIZE, ROWS
from .tensor import Tensor, no_grad


@dataclass(frozen=True)
class Model:
    """What tinyalex knows of one model: its name in tables, its builder, and d2l's
    recipe for it (``recipe["resize"]``: the input side it is built for)."""

    title: str
    build: Callable
    recipe: dict


MODELS = {
    "alexnet": Model("AlexNet", models.alexnet, {
        "model": "alexnet", "epochs": 10, "batch_size": 128, "lr": 0.01, "momentum": 0.0,
        "weight_decay": 0.0, "resize": 224, "seed": 0, "train_limit": None,
        "test_limit": None, "crop_padding": 0, "flip": False}),
    "lenet": Model("LeNet", models.lenet, {
        "model": "lenet", "epochs": 10, "batch_size": 256, "lr": 0.9, "momentum": 0.0,
        "weight_decay": 0.0, "resize": 28, "seed": 0, "train_limit": None,
        "test_limit": None, "crop_padding": 0, "flip": False}),
}


def _recipe(model, batch_size, lr, resize):
    """d2l's recipe of a later section of the chapter: 10 epochs of plain SGD."""
    return dict(MODELS["lenet"].recipe, model=model, batch_size=batch_size, lr=lr,
                resize=resize)


def _vgg11_trained():
    """VGG-11 with a quarter of the channels, as the book trains it."""
    return models.vgg11(conv_arch=((1, 16), (1, 32), (2, 64), (2, 128), (2, 128)))


# The modern-CNN chapter's later sections, train_ch6 edition (d2l-zh 7.2-7.7, d2l-en 0.17),
# as examples/d2l/*_ch6.py run them: batch, lr, resize.
MODELS.update({
    "vgg11": Model("VGG-11", _vgg11_trained, _recipe("vgg11", 128, 0.05, 224)),
    "nin": Model("NiN", models.nin, _recipe("nin", 128, 0.1, 224)),
    "googlenet": Model("GoogLeNet", models.googlenet, _recipe("googlenet", 128, 0.1, 96)),
    "resnet18": Model("ResNet-18", models.resnet18, _recipe("resnet18", 256, 0.05, 96)),
    "densenet": Model("DenseNet", models.densenet, _recipe("densenet", 256, 0.1, 96)),
})
MODEL_NAMES = tuple(MODELS)                       # ("alexnet", "lenet", "vgg11", ...)
D2L_RECIPES = {name: m.recipe for name, m in MODELS.items()}


def input_size(name: str) -> int:
    """The input side (pixels) the named network is built for: 224 for AlexNet."""
    return MODELS[name].recipe["resize"]


def title(name: str) -> str:
    """The model's name in tables and pictures: "AlexNet", "LeNet"."""
    return MODELS[name].title


def d2l_lr(recipe: dict):
    """The learning rate of d2l's recipe for ``recipe``'s model (None if unknown)."""
    model = MODELS.get(recipe.get("model"))
    return model.recipe["lr"] if model is not None else None


def a_model(name: str) -> str:
    """The model's name with its article, for sentences: "an AlexNet", "a LeNet"."""
    t = title(name)
    return ("an " if t[:1].upper() in "AEIOU" else "a ") + t


def epochs_word(n: int) -> str:
    """"1 epoch", "4 epochs"."""
    return f"{n} epoch" + ("" if n == 1 else "s")


def build_model(name: str):
    """A freshly built network of the named architecture."""
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; expected one of {MODEL_NAMES}")
    return MODELS[name].build()


def check_recipe(recipe: dict) -> dict:
    """Fill in defaults from the model's d2l recipe and check every value."""
    if recipe.get("model") not in D2L_RECIPES:
        raise ValueError(f"recipe: model must be one of {sorted(D2L_RECIPES)}, got "
                         f"{recipe.get('model')!r}")
    full = dict(D2L_RECIPES[recipe["model"]])
    unknown = sorted(set(recipe) - set(full))
    if unknown:
        raise ValueError(f"recipe: unknown keys {unknown}; known: {sorted(full)}")
    full.update(recipe)
    for key in ("epochs", "batch_size", "resize"):
        check_int(full[key], key, "recipe", 1, type_error=ValueError)
    if full["resize"] > MAX_RESIZE:
        raise ValueError(f"recipe: resize must be at most {MAX_RESIZE} (the images are "
                         f"{ROWS}x{ROWS}; d2l's AlexNet takes 224), got {full['resize']!r}")
    for key in ("train_limit", "test_limit"):
        check_int(full[key], key, "recipe", 1, allow_none=True, type_error=ValueError)
    check_int(full["seed"], "seed", "recipe", 0, type_error=ValueError)
    check_int(full["crop_padding"], "crop_padding", "recipe", 0, ROWS, type_error=ValueError)
    if not isinstance(full["flip"], (bool, np.bool_)):
        raise ValueError(f"recipe: flip must be True or False, got {full['flip']!r}")
    check_number(full["lr"], "lr", "recipe", positive=True)
    check_number(full["momentum"], "momentum", "recipe")
    check_number(full["weight_decay"], "weight_decay", "recipe")
    return full


def _side(x) -> int:
    return x[0] if isinstance(x, (tuple, list)) else x


def sizes_that_fit(net, limit: int = MAX_RESIZE) -> list:
    """The input sides S (1..``limit``) for which (1, 1, S, S) images reach the
    network's first Linear layer with the features it takes, worked out from the
    layers' own kernel sizes, strides and paddings (no forward pass). Empty when the
    network has a layer this arithmetic does not know (then nothing is claimed)."""
    from .nn import layers as L       # noqa: PLC0415 -- models import nn; keep it local
    layers = list(net)
    fits = []
    for S in range(1, limit + 1):
        C, H, ok = 1, S, False
        for i, layer in enumerate(layers):
            if isinstance(layer, (L.Conv2d, L._Pool)):
                K, P = _side(layer.kernel_size), _side(layer.padding)
                T = _side(layer.stride if layer.stride is not None else layer.kernel_size)
                if H + 2 * P < K:
                    break
                H = (H + 2 * P - K) // T + 1
                C = layer.out_channels if isinstance(layer, L.Conv2d) else C
            elif isinstance(layer, L.Flatten):
                nxt = layers[i + 1] if i + 1 < len(layers) else None
                if not isinstance(nxt, L.Linear):
                    return []
                ok = C * H * H == nxt.in_features
                break
            elif type(layer).__module__.startswith("tinyalex.nn") and not list(layer.parameters()):
                continue                  # activations, dropout: the shape stays
            else:
                return []
        if ok:
            fits.append(S)
    return fits


def describe_sizes(sizes: list) -> str:
    """``[193, 194, ..., 224]`` as "193-224" (runs of consecutive sides)."""
    runs, first = [], sizes[0] if sizes else None
    for prev, cur in zip(sizes, sizes[1:] + [None]):
        if cur != prev + 1:
            runs.append(f"{first}-{prev}" if first != prev else f"{first}")
            first = cur
    return ", ".join(runs)


def check_input_size(net, recipe: dict) -> None:
    """Fail before any training when ``net`` cannot take ``recipe["resize"]`` images:
    one zero image (1, 1, S, S) goes through it in eval mode without a graph, and a
    layer's complaint is raised again naming the recipe."""
    S = recipe["resize"]
    was_training = net.training
    net.eval()
    try:
        with no_grad():
            net(Tensor(np.zeros((1, 1, S, S), np.float32)))
    except (ValueError, TypeError) as exc:
        need = input_size(recipe["model"])
        fits = sizes_that_fit(net)
        works = (f"; the sizes it takes (--resize): {describe_sizes(fits)}" if fits else "")
        raise ValueError(f"recipe: {recipe['model']} cannot take {S}x{S} inputs (d2l's "
                         f"recipe uses {need}x{need}{works}): {exc}") from None
    finally:
        net.train(was_training)
