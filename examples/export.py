"""Export a training checkpoint's weights as a safetensors file, for PyTorch.

    python examples/export.py runs/quick/lenet/checkpoint.npz lenet.safetensors

A checkpoint.npz holds what training needs (weights, momentum, epoch, random state,
recipe); the safetensors file holds the weights alone, under the names d2l's PyTorch
network has (``0.weight``, ``0.bias``, ``3.weight``, ...), so that in PyTorch

    net.load_state_dict(safetensors.torch.load_file("lenet.safetensors"))

loads them into d2l's LeNet (or AlexNet) and gives tinyalex's logits to float32
rounding. Nothing is pickled either way. The same in Python:

    net, _ = tinyalex.checkpoint.load_model("runs/quick/lenet/checkpoint.npz")
    tinyalex.save(net.state_dict(), "lenet.safetensors")
"""

import argparse
import sys

import tinyalex
from tinyalex.checkpoint import load_model
from tinyalex.exits import BAD_INPUT, DONE, FAILURES
from tinyalex.recipes import a_model, epochs_word


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("checkpoint", help="a checkpoint.npz written by training")
    p.add_argument("out", help="the .safetensors file to write")
    args = p.parse_args(argv)
    if not args.out.endswith(".safetensors"):
        p.error(f"OUT must end with .safetensors (the format written), got {args.out!r}")
    try:
        net, ckpt = load_model(args.checkpoint)
        state = net.state_dict()
        tinyalex.save(state, args.out)
    except FAILURES as exc:
        print(f"error: {exc}", file=sys.stderr)
        return BAD_INPUT
    n = sum(int(v.numpy().size) for v in state.values())
    print(f"wrote {args.out}: {a_model(ckpt.model_name)} after "
          f"{epochs_word(ckpt.epoch)}, {len(state)} tensors, {n:,} parameters")
    return DONE


if __name__ == "__main__":
    sys.exit(main())
