"""d2l's two networks, exactly as the book builds them.

``alexnet()`` is the AlexNet of d2l section 8.1 (single-channel input, 224x224,
sized for Fashion-MNIST), ``lenet()`` the LeNet-5 of section 7.6 (sigmoid and
average pooling, 28x28 input).
"""

from __future__ import annotations

from . import nn


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
