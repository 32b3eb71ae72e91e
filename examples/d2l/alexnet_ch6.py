"""d2l's AlexNet chapter, train_ch6 edition (d2l-zh 7.1, d2l-en 0.17 7.1), on tinyalex.

    python examples/d2l/alexnet_ch6.py        # batch 128, lr 0.01, 10 epochs, 224x224

The chapter's PyTorch code as the book prints it; only the three imports differ.
The full run is a GPU's job (on 2 CPU cores an epoch of 60000 images at 224x224
takes a quarter of an hour or more); d2l.try_gpu() picks the GPU when CuPy sees one. The Animator's figure goes to
alexnet_ch6_animator.png in the current folder.
"""

import tinyalex as torch
from tinyalex import nn
from tinyalex import d2l

net = nn.Sequential(
    # an 11x11 window with stride 4, and far more channels than LeNet's
    nn.Conv2d(1, 96, kernel_size=11, stride=4, padding=1), nn.ReLU(),
    nn.MaxPool2d(kernel_size=3, stride=2),
    # a 5x5 window, padded to keep height and width; more channels again
    nn.Conv2d(96, 256, kernel_size=5, padding=2), nn.ReLU(),
    nn.MaxPool2d(kernel_size=3, stride=2),
    # three 3x3 convolutions in a row, pooling only after the last
    nn.Conv2d(256, 384, kernel_size=3, padding=1), nn.ReLU(),
    nn.Conv2d(384, 384, kernel_size=3, padding=1), nn.ReLU(),
    nn.Conv2d(384, 256, kernel_size=3, padding=1), nn.ReLU(),
    nn.MaxPool2d(kernel_size=3, stride=2),
    nn.Flatten(),
    # two wide fully connected layers, with dropout against overfitting
    nn.Linear(6400, 4096), nn.ReLU(),
    nn.Dropout(p=0.5),
    nn.Linear(4096, 4096), nn.ReLU(),
    nn.Dropout(p=0.5),
    # ten classes for Fashion-MNIST
    nn.Linear(4096, 10))

X = torch.randn(1, 1, 224, 224)
for layer in net:
    X=layer(X)
    print(layer.__class__.__name__,'output shape:\t',X.shape)

batch_size = 128
train_iter, test_iter = d2l.load_data_fashion_mnist(batch_size, resize=224)

lr, num_epochs = 0.01, 10
d2l.train_ch6(net, train_iter, test_iter, num_epochs, lr, d2l.try_gpu())
