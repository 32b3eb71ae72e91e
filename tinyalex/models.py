"""d2l's two networks, exactly as the book builds them.

``alexnet()`` is the AlexNet of d2l section 8.1 (single-channel input, 224x224,
sized for Fashion-MNIST), ``lenet()`` the LeNet-5 of section 7.6 (sigmoid and
average pooling, 28x28 input). ``vgg11()``, ``nin()``, ``googlenet()``, ``resnet18()``
and ``densenet()`` are the rest of the modern-CNN chapter (below).
"""

from __future__ import annotations

from . import nn
from .ops.shape import cat


def alexnet(num_classes: int = 10, in_channels: int = 1) -> nn.Sequential:
    """d2l's AlexNet; expects (N, in_channels, 224, 224) inputs."""
    return nn.Sequential(
        # A large 11x11 window with stride 4 to capture objects; many more output
        # channels than LeNet.
        nn.Conv2d(in_channels, 96, kernel_size=11, stride=4, padding=1), nn.ReLU(),
        nn.MaxPool2d(kernel_size=3, stride=2),
        # Smaller window, padding 2 keeps height and width, more channels.
        nn.Conv2d(96, 256, kernel_size=5, padding=2), nn.ReLU(),
        nn.MaxPool2d(kernel_size=3, stride=2),
        # Three successive 3x3 convolutions; only the last is followed by pooling.
        nn.Conv2d(256, 384, kernel_size=3, padding=1), nn.ReLU(),
        nn.Conv2d(384, 384, kernel_size=3, padding=1), nn.ReLU(),
        nn.Conv2d(384, 256, kernel_size=3, padding=1), nn.ReLU(),
        nn.MaxPool2d(kernel_size=3, stride=2),
        nn.Flatten(),
        # Fully connected layers several times larger than LeNet's; dropout against
        # overfitting.
        nn.Linear(6400, 4096), nn.ReLU(), nn.Dropout(p=0.5),
        nn.Linear(4096, 4096), nn.ReLU(), nn.Dropout(p=0.5),
        nn.Linear(4096, num_classes))


def lenet(num_classes: int = 10) -> nn.Sequential:
    """d2l's LeNet-5; expects (N, 1, 28, 28) inputs."""
    return nn.Sequential(
        nn.Conv2d(1, 6, kernel_size=5, padding=2), nn.Sigmoid(),
        nn.AvgPool2d(kernel_size=2, stride=2),
        nn.Conv2d(6, 16, kernel_size=5), nn.Sigmoid(),
        nn.AvgPool2d(kernel_size=2, stride=2),
        nn.Flatten(),
        nn.Linear(16 * 5 * 5, 120), nn.Sigmoid(),
        nn.Linear(120, 84), nn.Sigmoid(),
        nn.Linear(84, num_classes))


def init_weights_xavier(module) -> None:
    """d2l's ``init_weights``: Xavier-uniform weights for every Linear and Conv2d."""
    if type(module) in (nn.Linear, nn.Conv2d):
        nn.init.xavier_uniform_(module.weight)


# -- the modern CNNs of d2l's next sections (d2l-zh 7.2-7.7, d2l-en 0.17 7.2-7.7) ---------
# As the train_ch6 edition builds them for Fashion-MNIST (one input channel, explicit
# channel counts, no lazy layers), with the book's attribute names, so that their
# state dicts have the keys of the book's PyTorch networks and weights trade both ways.

def vgg11(num_classes: int = 10, conv_arch=((1, 64), (1, 128), (2, 256), (2, 512), (2, 512))
          ) -> nn.Sequential:
    """d2l's VGG-11; expects (N, 1, 224, 224). ``conv_arch``: (convolutions, channels)
    per block (the book trains ``[(n, c // 4) ...]``, a quarter of the channels)."""
    blocks, in_channels = [], 1
    for num_convs, out_channels in conv_arch:
        layers = []
        for _ in range(num_convs):
            layers += [nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1),
                       nn.ReLU()]
            in_channels = out_channels
        blocks.append(nn.Sequential(*layers, nn.MaxPool2d(kernel_size=2, stride=2)))
    return nn.Sequential(
        *blocks, nn.Flatten(),
        nn.Linear(in_channels * 7 * 7, 4096), nn.ReLU(), nn.Dropout(0.5),
        nn.Linear(4096, 4096), nn.ReLU(), nn.Dropout(0.5),
        nn.Linear(4096, num_classes))


def _nin_block(in_channels, out_channels, kernel_size, strides, padding):
    """One convolution, then two 1x1 convolutions (a per-pixel MLP), each with ReLU."""
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, kernel_size, strides, padding), nn.ReLU(),
        nn.Conv2d(out_channels, out_channels, kernel_size=1), nn.ReLU(),
        nn.Conv2d(out_channels, out_channels, kernel_size=1), nn.ReLU())


def nin(num_classes: int = 10) -> nn.Sequential:
    """d2l's Network in Network; expects (N, 1, 224, 224)."""
    return nn.Sequential(
        _nin_block(1, 96, kernel_size=11, strides=4, padding=0), nn.MaxPool2d(3, stride=2),
        _nin_block(96, 256, kernel_size=5, strides=1, padding=2), nn.MaxPool2d(3, stride=2),
        _nin_block(256, 384, kernel_size=3, strides=1, padding=1), nn.MaxPool2d(3, stride=2),
        nn.Dropout(0.5),
        _nin_block(384, num_classes, kernel_size=3, strides=1, padding=1),
        nn.AdaptiveAvgPool2d((1, 1)), nn.Flatten())


class Inception(nn.Module):
    """GoogLeNet's block: four paths side by side, concatenated on the channels (c1..c4:
    each path's output channels; c2, c3 pairs: the 1x1 reduction, then the 3x3 / 5x5)."""

    def __init__(self, in_channels, c1, c2, c3, c4):
        super().__init__()
        self.p1_1 = nn.Conv2d(in_channels, c1, kernel_size=1)
        self.p2_1 = nn.Conv2d(in_channels, c2[0], kernel_size=1)
        self.p2_2 = nn.Conv2d(c2[0], c2[1], kernel_size=3, padding=1)
        self.p3_1 = nn.Conv2d(in_channels, c3[0], kernel_size=1)
        self.p3_2 = nn.Conv2d(c3[0], c3[1], kernel_size=5, padding=2)
        self.p4_1 = nn.MaxPool2d(kernel_size=3, stride=1, padding=1)
        self.p4_2 = nn.Conv2d(in_channels, c4, kernel_size=1)

    def forward(self, x):
        relu = nn.functional.relu
        p1 = relu(self.p1_1(x))
        p2 = relu(self.p2_2(relu(self.p2_1(x))))
        p3 = relu(self.p3_2(relu(self.p3_1(x))))
        p4 = relu(self.p4_2(self.p4_1(x)))
        return cat((p1, p2, p3, p4), dim=1)          # (N, c1 + c2[1] + c3[1] + c4, H, W)


def googlenet(num_classes: int = 10) -> nn.Sequential:
    """d2l's GoogLeNet; expects (N, 1, 96, 96)."""
    pool = lambda: nn.MaxPool2d(kernel_size=3, stride=2, padding=1)  # noqa: E731
    b1 = nn.Sequential(nn.Conv2d(1, 64, kernel_size=7, stride=2, padding=3), nn.ReLU(),
                       pool())
    b2 = nn.Sequential(nn.Conv2d(64, 64, kernel_size=1), nn.ReLU(),
                       nn.Conv2d(64, 192, kernel_size=3, padding=1), nn.ReLU(), pool())
    b3 = nn.Sequential(Inception(192, 64, (96, 128), (16, 32), 32),
                       Inception(256, 128, (128, 192), (32, 96), 64), pool())
    b4 = nn.Sequential(Inception(480, 192, (96, 208), (16, 48), 64),
                       Inception(512, 160, (112, 224), (24, 64), 64),
                       Inception(512, 128, (128, 256), (24, 64), 64),
                       Inception(512, 112, (144, 288), (32, 64), 64),
                       Inception(528, 256, (160, 320), (32, 128), 128), pool())
    b5 = nn.Sequential(Inception(832, 256, (160, 320), (32, 128), 128),
                       Inception(832, 384, (192, 384), (48, 128), 128),
                       nn.AdaptiveAvgPool2d((1, 1)), nn.Flatten())
    return nn.Sequential(b1, b2, b3, b4, b5, nn.Linear(1024, num_classes))


class Residual(nn.Module):
    """ResNet's block: two 3x3 convolutions with batch norm, plus the input (through a
    1x1 convolution where channels or stride change), then ReLU."""

    def __init__(self, input_channels, num_channels, use_1x1conv=False, strides=1):
        super().__init__()
        self.conv1 = nn.Conv2d(input_channels, num_channels, kernel_size=3, padding=1,
                               stride=strides)
        self.conv2 = nn.Conv2d(num_channels, num_channels, kernel_size=3, padding=1)
        self.conv3 = nn.Conv2d(input_channels, num_channels, kernel_size=1,
                               stride=strides) if use_1x1conv else None
        self.bn1 = nn.BatchNorm2d(num_channels)
        self.bn2 = nn.BatchNorm2d(num_channels)

    def forward(self, X):
        relu = nn.functional.relu
        Y = relu(self.bn1(self.conv1(X)))
        Y = self.bn2(self.conv2(Y))
        if self.conv3 is not None:
            X = self.conv3(X)
        return relu(Y + X)


def resnet18(num_classes: int = 10) -> nn.Sequential:
    """d2l's ResNet-18; expects (N, 1, 96, 96) (any size the strides allow)."""
    def stage(input_channels, num_channels, first=False):
        return nn.Sequential(
            Residual(input_channels, num_channels, use_1x1conv=not first,
                     strides=1 if first else 2),
            Residual(num_channels, num_channels))
    b1 = nn.Sequential(nn.Conv2d(1, 64, kernel_size=7, stride=2, padding=3),
                       nn.BatchNorm2d(64), nn.ReLU(),
                       nn.MaxPool2d(kernel_size=3, stride=2, padding=1))
    return nn.Sequential(b1, stage(64, 64, first=True), stage(64, 128), stage(128, 256),
                         stage(256, 512), nn.AdaptiveAvgPool2d((1, 1)), nn.Flatten(),
                         nn.Linear(512, num_classes))


def _conv_block(input_channels, num_channels):
    return nn.Sequential(nn.BatchNorm2d(input_channels), nn.ReLU(),
                         nn.Conv2d(input_channels, num_channels, kernel_size=3, padding=1))


class DenseBlock(nn.Module):
    """DenseNet's block: each conv block sees every earlier output, concatenated."""

    def __init__(self, num_convs, input_channels, num_channels):
        super().__init__()
        self.net = nn.Sequential(*[_conv_block(num_channels * i + input_channels,
                                               num_channels) for i in range(num_convs)])

    def forward(self, X):
        for blk in self.net:
            X = cat((X, blk(X)), dim=1)              # (N, C + num_channels, H, W)
        return X


def densenet(num_classes: int = 10, num_channels: int = 64, growth_rate: int = 32,
             arch=(4, 4, 4, 4)) -> nn.Sequential:
    """d2l's DenseNet; expects (N, 1, 96, 96)."""
    b1 = nn.Sequential(nn.Conv2d(1, 64, kernel_size=7, stride=2, padding=3),
                       nn.BatchNorm2d(64), nn.ReLU(),
                       nn.MaxPool2d(kernel_size=3, stride=2, padding=1))
    blks = []
    for i, num_convs in enumerate(arch):
        blks.append(DenseBlock(num_convs, num_channels, growth_rate))
        num_channels += num_convs * growth_rate
        if i != len(arch) - 1:                      # a transition halves the channels
            blks.append(nn.Sequential(
                nn.BatchNorm2d(num_channels), nn.ReLU(),
                nn.Conv2d(num_channels, num_channels // 2, kernel_size=1),
                nn.AvgPool2d(kernel_size=2, stride=2)))
            num_channels //= 2
    return nn.Sequential(b1, *blks, nn.BatchNorm2d(num_channels), nn.ReLU(),
                         nn.AdaptiveAvgPool2d((1, 1)), nn.Flatten(),
                         nn.Linear(num_channels, num_classes))
