"""Pictures of what a trained network learned: first-layer filters and feature maps.

    python examples/visualize.py runs/alexnet/checkpoint.npz                 # 96 filters, maps
    python examples/visualize.py runs/lenet/checkpoint.npz --before-init     # vs. untrained
    python examples/visualize.py early.npz late.npz --index 7 --out pictures # before/after
    python examples/visualize.py lenet.safetensors --before-init             # tinyalex or PyTorch weights

Writes to --out (default: a folder "pictures" beside the last checkpoint):

* filters.png: the first convolution's filters as a grid (96 of 11x11 for AlexNet),
  one grid per checkpoint, side by side;
* feature_maps.png: test image --index after every conv and pool layer, the --channels
  strongest channels of each layer (chosen on the first checkpoint, the same ones
  for the second), one block of columns per checkpoint.

With two checkpoints (or --before-init: the network as training starts, from the
checkpoint's recipe) the pictures show before and after training.
"""

import argparse
import os
import sys

from tinyalex.checkpoint import load_model
from tinyalex.data import CLASS_NAMES
from tinyalex.recipes import D2L_RECIPES, input_size
from tinyalex.safetensors_io import model_from_file
from tinyalex.study.net_views import (feature_maps, filters, initial_model, pick_channels,
                                      test_image)
from tinyalex.study.plots import plot_feature_maps, plot_filters


def parse(argv):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("checkpoints", nargs="+", metavar="CHECKPOINT",
                   help="one checkpoint, or two (before and after) of the same model; a "
                   ".safetensors file of LeNet or AlexNet weights counts as one")
    p.add_argument("--before-init", action="store_true",
                   help="compare one checkpoint with the network as training starts")
    p.add_argument("--index", type=int, default=0, help="test image index (default 0)")
    p.add_argument("--channels", type=int, default=8, help="channels per layer (default 8)")
    p.add_argument("--data-dir", default=None, help="Fashion-MNIST folder (default: found "
                   "as tinyalex.data does)")
    p.add_argument("--out", default=None, help="folder for the PNGs")
    args = p.parse_args(argv)
    if len(args.checkpoints) > 2 or (args.before_init and len(args.checkpoints) != 1):
        p.error("give one checkpoint (optionally with --before-init) or two checkpoints")
    if args.channels < 1:
        p.error(f"--channels must be at least 1, got {args.channels}")
    if args.index < 0:
        p.error(f"--index must be a test image index (0 or more), got {args.index}")
    if args.out is not None and os.path.exists(args.out) and not os.path.isdir(args.out):
        p.error(f"--out {args.out} is a file; --out takes a folder for the PNGs (made if "
                "missing)")
    return args


def main(argv=None, print_fn=print) -> int:
    """Parse the flags and draw the pictures; 0 done, 2 a bad flag, file or folder."""
    args = parse(argv)
    try:
        return pictures(args, print_fn)
    except (ValueError, TypeError, OSError, RuntimeError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


def pictures(args, print_fn) -> int:
    nets = []                                  # (title, network, recipe)
    for path in args.checkpoints:
        if path.endswith(".safetensors"):     # weights only: d2l's recipe for the model
            net, name = model_from_file(path)
            nets.append((f"{os.path.basename(path)}: {name}", net, dict(D2L_RECIPES[name])))
            continue
        net, ckpt = load_model(path)
        nets.append((f"{os.path.basename(path)}: {ckpt.model_name}, epoch {ckpt.epoch}",
                     net, ckpt.recipe))
    if args.before_init:
        recipe = nets[0][2]
        nets.insert(0, (f"untrained: {recipe['model']}, seed {recipe.get('seed', 0)}",
                        initial_model(recipe), recipe))
    models = {recipe["model"] for _, _, recipe in nets}
    if len(models) > 1:
        raise ValueError(f"visualize: the checkpoints hold different models {sorted(models)}; "
                         "before/after pictures need the same one")
    recipe = nets[-1][2]
    size = int(recipe.get("resize") or input_size(recipe["model"]))
    out = args.out or os.path.join(os.path.dirname(os.path.abspath(args.checkpoints[-1])),
                                   "pictures")

    image, label, x = test_image(args.index, args.data_dir, size)
    print_fn(f"test image {args.index} ({CLASS_NAMES[label]}), fed as {tuple(x.shape)}")
    sets = []
    for title, net, _ in nets:
        maps, probs = feature_maps(net, x)
        guess = int(probs.argmax())
        print_fn(f"  {title}: predicts {CLASS_NAMES[guess]} (p={probs[guess]:.2f})")
        sets.append((f"{title}\npredicts {CLASS_NAMES[guess]} (p={probs[guess]:.2f})", maps))
    channels = pick_channels(sets[0][1], args.channels)
    print_fn("spread of each layer's maps over the image (std over pixels, mean over "
             "channels):")
    for i, (label, _) in enumerate(sets[0][1]):
        spreads = "  ".join(f"{maps[i][1].std(axis=(1, 2)).mean():9.4f}" for _, maps in sets)
        print_fn(f"  {label:<16} {spreads}")

    paths = [plot_filters([(title, filters(net)) for title, net, _ in nets],
                          os.path.join(out, "filters.png")),
             plot_feature_maps(image, sets, os.path.join(out, "feature_maps.png"), channels)]
    for p in paths:
        print_fn(f"wrote {p}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
