"""Train d2l's LeNet-5 on Fashion-MNIST (d2l section 7.6's recipe).

    python examples/train_lenet.py                               # batch 256, lr 0.9, 10 epochs, 28x28
    python examples/train_lenet.py --epochs 2                    # a quick look (see below)
    python examples/train_lenet.py --out runs/lenet --resume     # continue after Ctrl-C
    mpiexec -n 2 python examples/train_lenet.py                  # 2 processes, one global batch
    python examples/evaluate.py runs/lenet/checkpoint.npz        # per-class accuracy

Prints one line per epoch in d2l's words (loss, train acc, test acc, examples/sec)
and leaves checkpoint.npz, metrics.json and curves.png in --out (default runs/lenet).
d2l's sigmoid LeNet spends its whole first epoch at chance level (test acc 0.100) and
leaves it in the second (0.627 in the quick tour's record, benchmarks/results/quick/);
on a few thousand images it does not leave it in a few epochs: train on all of them.
Every flag: python examples/train_lenet.py --help
"""

import sys

from tinyalex.cli import main

if __name__ == "__main__":
    sys.exit(main("lenet", description=__doc__.splitlines()[0]))
