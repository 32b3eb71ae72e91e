"""Feed one image through d2l's AlexNet (or LeNet), layer by layer.

    python examples/shapes.py                          # AlexNet (d2l section 8.1)
    python examples/shapes.py --lenet                  # LeNet-5 (d2l section 7.6), 28x28
    python examples/shapes.py --time --batch 32        # also time each layer's forward
                                                       # and backward pass at batch 32
    python examples/shapes.py --time --backend cupy    # ... on the GPU

Prints each layer's output shape (d2l's loop, run on the real network), then the
table of ``tinyalex.summary``: output shape, parameters, multiply-accumulates and
activation memory per layer, with totals (and times with --time).
"""

import argparse
import sys

import tinyalex


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lenet", action="store_true", help="LeNet instead of AlexNet")
    parser.add_argument("--time", action="store_true",
                        help="measure each layer's forward and backward time")
    parser.add_argument("--batch", type=int, default=1,
                        help="batch size of the summary table (default 1)")
    parser.add_argument("--backend", choices=tinyalex.backend.BACKENDS, default="numpy",
                        help="backend for the summary and its timings (default numpy)")
    args = parser.parse_args(argv)
    if args.batch < 1:
        parser.error(f"--batch must be a positive int, got {args.batch}")
    if args.backend == "cupy" and not tinyalex.cupy_available():
        parser.error(f"--backend cupy needs CuPy and a CUDA GPU, not usable here "
                     f"({tinyalex.backend.cupy_unavailable_reason()}); use --backend numpy, "
                     "or install CuPy on a GPU machine (pip install 'tinyalex[cupy]')")
    net, size = (tinyalex.models.lenet(), 28) if args.lenet else (tinyalex.models.alexnet(), 224)

    X = tinyalex.randn(1, 1, size, size)
    for layer in net:                       # d2l's loop, with one import changed
        X = layer(X)
        print(f"{type(layer).__name__:<10} output shape:\t{X.shape}")
    print()
    net.to(args.backend)
    try:
        tinyalex.summary(net, (args.batch, 1, size, size), backend=args.backend, time=args.time)
    except ValueError as exc:              # a batch no memory holds
        print(f"error: --batch {args.batch}: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
