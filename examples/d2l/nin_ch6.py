"""d2l's NiN section, train_ch6 edition (d2l-zh 7.3, d2l-en 0.17 7.3), on tinyalex.

    python examples/d2l/nin_ch6.py     # batch 128, lr 0.1, 10 epochs, 224x224

The section's PyTorch code, imports changed. The full run is a GPU's job.
"""

import tinyalex as torch
from tinyalex import nn
from tinyalex import d2l


def nin_block(in_channels, out_channels, kernel_size, strides, padding):
    # one ordinary convolution, then two 1x1 convolutions: a per-pixel MLP
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, kernel_size, strides, padding),
        nn.ReLU(),
        nn.Conv2d(out_channels, out_channels, kernel_size=1), nn.ReLU(),
        nn.Conv2d(out_channels, out_channels, kernel_size=1), nn.ReLU())


net = nn.Sequential(
    nin_block(1, 96, kernel_size=11, strides=4, padding=0),
    nn.MaxPool2d(3, stride=2),
    nin_block(96, 256, kernel_size=5, strides=1, padding=2),
    nn.MaxPool2d(3, stride=2),
    nin_block(256, 384, kernel_size=3, strides=1, padding=1),
    nn.MaxPool2d(3, stride=2),
    nn.Dropout(0.5),
    # ten classes: the last block has one channel per class
    nin_block(384, 10, kernel_size=3, strides=1, padding=1),
    nn.AdaptiveAvgPool2d((1, 1)),
    # (batch, 10, 1, 1) -> (batch, 10)
    nn.Flatten())

X = torch.rand(size=(1, 1, 224, 224))
for layer in net:
    X = layer(X)
    print(layer.__class__.__name__, 'output shape:\t', X.shape)

lr, num_epochs, batch_size = 0.1, 10, 128
train_iter, test_iter = d2l.load_data_fashion_mnist(batch_size, resize=224)
d2l.train_ch6(net, train_iter, test_iter, num_epochs, lr, d2l.try_gpu())
