"""Helpers the test files share, not tests themselves: ``checks`` (tolerances, test
tensors, the references CI installs), ``strategies`` (hypothesis geometries),
``reliability`` (a tiny IDX data set, training command lines, run comparisons),
``dist`` (mpiexec jobs), ``gpu_emulation`` (the GPU algorithms on NumPy arrays) and
``d2l_torch_standin`` (d2l's names on PyTorch, for the convolution chapters' cross-check).
"""
