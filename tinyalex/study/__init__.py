"""The study tools: what a network costs, what a convolution does, what a trained
network learned, and how two runs compare. Nothing here is needed to train.

* ``summary.py``: ``tinyalex.summary(net, input_shape)``, the per-layer table
  (output shape, parameters, multiply-accumulates, activation memory, times);
* ``conv_walk.py``: one convolution taken apart, every matrix of im2col + GEMM,
  forward and backward (``examples/explain_conv.py``);
* ``net_views.py``: a trained network's first-layer filters and one image's feature
  maps (``examples/visualize.py``);
* ``compare.py``: AlexNet against LeNet, architecture and measured facts side by
  side (``examples/compare.py``);
* ``plots.py``: every picture: the training curves (``plot_curves``, also the
  curves.png of every training run), the confusion matrix, and the pictures of the
  tools above.

The sub-modules are imported by name (``from tinyalex.study.plots import
plot_curves``); this package imports none of them, so that ``import tinyalex`` (which
takes ``summary`` from ``study/summary.py``) does not load matplotlib.
"""
