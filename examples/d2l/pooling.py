"""d2l's section on pooling, all three editions (d2l-en 1.0 7.5, d2l-en 0.17 6.5,
d2l-zh 6.5), on tinyalex.

    python examples/d2l/pooling.py

The section's PyTorch code as the book prints it; only the three imports differ. The
three sources hold the same code. Where a notebook cell shows a value, the script
prints it. The cells: pool2d, maximum and average pooling as two loops; nn.MaxPool2d
with the default stride (the window's size), then with padding and stride chosen;
and pooling two channels, each on its own.
"""

from tinyalex import d2l
import tinyalex as torch
from tinyalex import nn


# slide a p_h x p_w window over X and keep each window's maximum or mean
def pool2d(X, pool_size, mode='max'):
    p_h, p_w = pool_size
    Y = d2l.zeros((X.shape[0] - p_h + 1, X.shape[1] - p_w + 1))
    for i in range(Y.shape[0]):
        for j in range(Y.shape[1]):
            if mode == 'max':
                Y[i, j] = X[i: i + p_h, j: j + p_w].max()
            elif mode == 'avg':
                Y[i, j] = X[i: i + p_h, j: j + p_w].mean()
    return Y


# the section's 3x3 input, 2x2 windows
X = d2l.tensor([[0.0, 1.0, 2.0], [3.0, 4.0, 5.0], [6.0, 7.0, 8.0]])
print(pool2d(X, (2, 2)))

print(pool2d(X, (2, 2), 'avg'))

# one example, one channel, 4x4
X = d2l.reshape(d2l.arange(16, dtype=d2l.float32), (1, 1, 4, 4))
print(X)

# a 3x3 window; the stride defaults to the window's size, so one window fits
pool2d = nn.MaxPool2d(3)
# no parameters to initialise: the layer can run at once
print(pool2d(X))

# padding 1 and stride 2 by hand
pool2d = nn.MaxPool2d(3, padding=1, stride=2)
print(pool2d(X))

# a 2x3 window, stride (2, 3), padding (0, 1)
pool2d = nn.MaxPool2d((2, 3), stride=(2, 3), padding=(0, 1))
print(pool2d(X))

# two channels, X and X + 1: pooling keeps them apart, as many channels out as in
X = d2l.concat((X, X + 1), 1)
print(X)

pool2d = nn.MaxPool2d(3, padding=1, stride=2)
print(pool2d(X))
