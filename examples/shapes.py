"""Feed one 224x224 image through d2l's AlexNet, layer by layer.

    python examples/shapes.py            # AlexNet (d2l section 8.1)
    python examples/shapes.py --lenet    # LeNet-5 (d2l section 7.6), 28x28

Prints each layer's output shape (d2l's loop, run on the real network), then the
table of ``tinyalex.summary``.
"""

import argparse

import tinyalex


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lenet", action="store_true", help="LeNet instead of AlexNet")
    args = parser.parse_args()
    net, size = (tinyalex.models.lenet(), 28) if args.lenet else (tinyalex.models.alexnet(), 224)

    X = tinyalex.randn(1, 1, size, size)
    for layer in net:                       # d2l's loop, with one import changed
        X = layer(X)
        print(f"{type(layer).__name__:<10} output shape:\t{X.shape}")
    print()
    tinyalex.summary(net, (1, 1, size, size))


if __name__ == "__main__":
    main()
