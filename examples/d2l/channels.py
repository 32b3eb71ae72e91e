"""d2l's section on multiple input and output channels, all three editions (d2l-en 1.0
7.4, d2l-en 0.17 6.4, d2l-zh 6.4), on tinyalex.

    python examples/d2l/channels.py

The section's PyTorch code as the book prints it; only the two imports it has differ.
The three sources hold the same code (1.0 puts the last two lines in one cell with the
random inputs). Where a notebook cell shows a value, the script prints it. The cells:
a cross-correlation over several input channels (one kernel per channel, summed); over
several output channels (one such kernel stack per output, stacked); and a 1x1
convolution as one matrix product, checked against the loops on random numbers.
"""

from tinyalex import d2l
import tinyalex as torch


# one 2-D kernel per input channel: cross-correlate each channel with its kernel
# (d2l.corr2d, saved in the previous section) and add the results
def corr2d_multi_in(X, K):
    # walk the channels (axis 0) of X and K together and sum
    return sum(d2l.corr2d(x, k) for x, k in zip(X, K))


# two input channels of 3x3, two 2x2 kernels
X = d2l.tensor([[[0.0, 1.0, 2.0], [3.0, 4.0, 5.0], [6.0, 7.0, 8.0]],
               [[1.0, 2.0, 3.0], [4.0, 5.0, 6.0], [7.0, 8.0, 9.0]]])
K = d2l.tensor([[[0.0, 1.0], [2.0, 3.0]], [[1.0, 2.0], [3.0, 4.0]]])

print(corr2d_multi_in(X, K))


# one multi-input kernel per output channel: one output plane each, stacked on axis 0
def corr2d_multi_in_out(X, K):
    # walk the output channels (axis 0) of K; stack what each gives
    return d2l.stack([corr2d_multi_in(X, k) for k in K], 0)


# three output channels: K, K + 1 and K + 2
K = d2l.stack((K, K + 1, K + 2), 0)
print(K.shape)

print(corr2d_multi_in_out(X, K))


# a 1x1 convolution mixes channels pixel by pixel: a dense layer applied to every pixel,
# one matrix product of (c_o, c_i) weights with (c_i, h*w) pixels
def corr2d_multi_in_out_1x1(X, K):
    c_i, h, w = X.shape
    c_o = K.shape[0]
    X = d2l.reshape(X, (c_i, h * w))
    K = d2l.reshape(K, (c_o, c_i))
    # the dense layer's matrix product
    Y = d2l.matmul(K, X)
    return d2l.reshape(Y, (c_o, h, w))


# random inputs: the loops and the matrix product agree
X = d2l.normal(0, 1, (3, 3, 3))
K = d2l.normal(0, 1, (2, 3, 1, 1))

Y1 = corr2d_multi_in_out_1x1(X, K)
Y2 = corr2d_multi_in_out(X, K)
assert float(d2l.reduce_sum(d2l.abs(Y1 - Y2))) < 1e-6
