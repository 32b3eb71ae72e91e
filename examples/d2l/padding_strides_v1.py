"""d2l's section on padding and stride, d2l 1.0 edition (d2l-en 7.3), on tinyalex.

    python examples/d2l/padding_strides_v1.py

The section's PyTorch code as the book prints it (the PyTorch tab); only the two
imports it has differ (it needs no d2l). Each cell shows the output shape of one
convolution of an 8x8 input: padding keeps the size, stride divides it. The layers
are lazy (their input channels come from the first input), the train_ch6 edition's
only difference. The weights and the input are random; the shapes are not.
"""

import tinyalex as torch
from tinyalex import nn


# convolve a 2-D input with a one-channel layer: add the example and channel axes
# the layer wants, run it, and take them off again
def comp_conv2d(conv2d, X):
    # (1, 1): one example, one channel
    X = X.reshape((1, 1) + X.shape)
    Y = conv2d(X)
    # keep height and width only
    return Y.reshape(Y.shape[2:])

# a 3x3 kernel with one row and column of zeros on every side: 8x8 stays 8x8
conv2d = nn.LazyConv2d(1, kernel_size=3, padding=1)
X = torch.rand(size=(8, 8))
print(comp_conv2d(conv2d, X).shape)

# a 5x3 kernel padded by 2 rows and 1 column on each side: still 8x8
conv2d = nn.LazyConv2d(1, kernel_size=(5, 3), padding=(2, 1))
print(comp_conv2d(conv2d, X).shape)

# stride 2 halves height and width
conv2d = nn.LazyConv2d(1, kernel_size=3, padding=1, stride=2)
print(comp_conv2d(conv2d, X).shape)

# a 3x5 kernel, padding (0, 1), strides (3, 4)
conv2d = nn.LazyConv2d(1, kernel_size=(3, 5), padding=(0, 1), stride=(3, 4))
print(comp_conv2d(conv2d, X).shape)
