"""Train any of tinyalex's models on Fashion-MNIST with d2l's recipe for it.

    python examples/train.py --model resnet18                   # batch 256, lr 0.05, 10 epochs, 96x96
    python examples/train.py --model vgg11                      # batch 128, lr 0.05, 224x224
    python examples/train.py --model nin                        # batch 128, lr 0.1, 224x224
    python examples/train.py --model googlenet                  # batch 128, lr 0.1, 96x96
    python examples/train.py --model densenet                   # batch 256, lr 0.1, 96x96
    python examples/train.py --model lenet                      # as examples/train_lenet.py
    python examples/train.py --model resnet18 --train-limit 2000 --epochs 1   # a look on a CPU
    python examples/train.py --model resnet18 --help            # every flag, that recipe's defaults

The recipes are the modern-CNN chapter's train_ch6 edition (d2l-zh, d2l-en 0.17),
tinyalex.recipes.MODELS. Prints and leaves what train_alexnet.py does (checkpoint.npz,
metrics.json, curves.png in --out, default runs/NAME); the same flags, --resume and
mpiexec. On a CPU the full recipes take many hours: use --train-limit, or a GPU.
"""

import sys

from tinyalex.cli import main_any

if __name__ == "__main__":
    sys.exit(main_any(description=__doc__.splitlines()[0]))
