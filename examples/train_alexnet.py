"""Train d2l's AlexNet on Fashion-MNIST resized to 224x224 (d2l section 8.1's recipe).

    python examples/train_alexnet.py                             # batch 128, lr 0.01, 10 epochs, 224x224
    python examples/train_alexnet.py --backend cupy              # on a GPU (the default when usable)
    python examples/train_alexnet.py --train-limit 2000 --test-limit 500 --epochs 2 \
        --batch-size 16 --lr 0.03                               # learns in minutes (below)
    python examples/train_alexnet.py --out runs/alexnet --resume # continue after Ctrl-C
    mpiexec -n 4 python examples/train_alexnet.py --train-limit 8000   # 4 processes (README)
    python examples/evaluate.py runs/alexnet/checkpoint.npz      # per-class accuracy

Prints one line per epoch in d2l's words (loss, train acc, test acc, examples/sec)
and leaves checkpoint.npz, metrics.json and curves.png in --out (default runs/alexnet).
On a CPU the full recipe takes many hours: use --train-limit, or a GPU. On a subset,
d2l's batch 128 and lr 0.01 take too few steps to leave chance level; batch 16 and lr
0.03 on 2000 images reach test acc 0.636 in 2 epochs (the quick tour's AlexNet,
benchmarks/results/quick/).
Every flag: python examples/train_alexnet.py --help
"""

import sys

from tinyalex.cli import main

if __name__ == "__main__":
    sys.exit(main("alexnet", description=__doc__.splitlines()[0]))
