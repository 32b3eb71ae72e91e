"""d2l's section on convolutions for images, train_ch6 edition (d2l-zh 6.2, d2l-en 0.17
6.2), on tinyalex.

    python examples/d2l/conv_layer_ch6.py

The section's PyTorch code as the book prints it; only the three imports differ (the
two sources differ in their comments and in the spacing of one f-string, not in code).
Where a notebook cell shows a value, the script prints it. The cells: corr2d, the
cross-correlation as two loops; a Conv2D layer built on it; finding the vertical edges
of an image with the kernel [1, -1]; learning that kernel back from the image and its
edges with a Conv2d layer (random start, so the losses differ from run to run).
"""

from tinyalex import d2l
import tinyalex as torch
from tinyalex import nn


def corr2d(X, K):  #@save
    """2-D cross-correlation of X with the kernel K (the book's two loops)."""
    h, w = K.shape
    Y = d2l.zeros((X.shape[0] - h + 1, X.shape[1] - w + 1))
    for i in range(Y.shape[0]):
        for j in range(Y.shape[1]):
            Y[i, j] = d2l.reduce_sum((X[i: i + h, j: j + w] * K))
    return Y


# the 3x3 input and 2x2 kernel of the section's first figure
X = d2l.tensor([[0.0, 1.0, 2.0], [3.0, 4.0, 5.0], [6.0, 7.0, 8.0]])
K = d2l.tensor([[0.0, 1.0], [2.0, 3.0]])
print(corr2d(X, K))


# a convolutional layer from corr2d: a weight (the kernel) and a scalar bias
class Conv2D(nn.Module):
    def __init__(self, kernel_size):
        super().__init__()
        self.weight = nn.Parameter(torch.rand(kernel_size))
        self.bias = nn.Parameter(torch.zeros(1))

    def forward(self, x):
        return corr2d(x, self.weight) + self.bias


# a 6x8 image, white (1) with a black (0) band in columns 2 to 5
X = d2l.ones((6, 8))
X[:, 2:6] = 0
print(X)

# the kernel [1, -1] marks where neighbouring pixels differ: the vertical edges
K = d2l.tensor([[1.0, -1.0]])

Y = corr2d(X, K)
print(Y)

# on the transposed image the edges are horizontal and this kernel sees none
print(corr2d(d2l.transpose(X), K))

# learn the kernel from X and Y: one output channel, a (1, 2) kernel, no bias
conv2d = nn.Conv2d(1,1, kernel_size=(1, 2), bias=False)

# the layer takes and gives (examples, channels, height, width): one of each here
X = X.reshape((1, 1, 6, 8))
Y = Y.reshape((1, 1, 6, 7))
lr = 3e-2  # learning rate

for i in range(10):
    Y_hat = conv2d(X)
    l = (Y_hat - Y) ** 2
    conv2d.zero_grad()
    l.sum().backward()
    # one gradient-descent step on the kernel
    conv2d.weight.data[:] -= lr * conv2d.weight.grad
    if (i + 1) % 2 == 0:
        print(f'epoch {i + 1}, loss {l.sum():.3f}')

# the learned kernel: close to [1, -1]
print(d2l.reshape(conv2d.weight.data, (1, 2)))
