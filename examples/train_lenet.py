"""Train d2l's LeNet-5 on Fashion-MNIST (d2l section 7.6's recipe).

    python examples/train_lenet.py                               # batch 256, lr 0.9, 10 epochs, 28x28
    python examples/train_lenet.py --epochs 2 --train-limit 5000 # a quick look
    python examples/train_lenet.py --out runs/lenet --resume     # continue after Ctrl-C
    mpiexec -n 2 python examples/train_lenet.py                  # 2 processes, one global batch
    python examples/evaluate.py runs/lenet/checkpoint.npz        # per-class accuracy

Prints one line per epoch in d2l's words (loss, train acc, test acc, examples/sec)
and leaves checkpoint.npz, metrics.json and curves.png in --out (default runs/lenet).
Every flag: python examples/train_lenet.py --help
"""

import sys

from tinyalex.cli import main

if __name__ == "__main__":
    sys.exit(main("lenet", description=__doc__.splitlines()[0]))
