"""PyTorch-style data loading for images held in memory: ``ImageDataset`` and ``DataLoader``.

    train = ImageDataset(train_images, train_labels, resize=(224, 224))  # uint8 (N, 28, 28)
    loader = DataLoader(train, batch_size=128, shuffle=True)
    len(loader)                          # ceil(N / 128) batches
    for X, y in loader:                  # X float32 (B, 1, 224, 224) in [0, 1], y int64 (B,)
        ...

What d2l's code relies on, as ``torch.utils.data.DataLoader`` over torchvision's
``FashionMNIST`` with ``ToTensor()`` does it: an iterable with ``len()``, yielding
``(X, y)`` tensors; pixels scaled to [0, 1] by ``/ 255``; a new random order every
epoch (every ``iter()``) with ``shuffle=True``, drawn from tinyalex's seeded
generator (``tinyalex.manual_seed``); the stored order without; the last partial
batch kept unless ``drop_last``.

How it differs, and why:

* **No worker processes.** Each batch is cut from the uint8 arrays in memory
  (``images[idx]``), moved to the device as bytes (a quarter of the float32 size) and
  converted there; that costs far less than a training step, so ``num_workers`` is
  accepted (an int >= 0, d2l passes 4) and has no other effect.
* **Batches are made on a device**, ``device=`` (default: cuda when a GPU is usable,
  else cpu: the device ``d2l.try_gpu()`` picks), so that scaling and resizing run
  on the training backend and the training loop's ``X.to(device)`` costs nothing.
  PyTorch's loader yields CPU tensors; moving ours elsewhere works the same way.
* **Resize** is tinyalex's bilinear interpolation (``tinyalex.data.resize_bilinear``,
  equal to ``torch.nn.functional.interpolate(mode="bilinear", align_corners=False)``
  to float32 rounding) on the float pixels. torchvision's ``Resize`` resizes the PIL
  image and rounds the result to uint8 before ``ToTensor``, so its pixels differ from
  ours by at most 1/255 (tests/d2l/test_d2l_data.py measures it against Pillow).
"""

from __future__ import annotations

import numbers

import numpy as np

from . import backend as B
from . import devices
from . import random as R
from .data import MAX_RESIZE, _check_host_images, resize_bilinear, to_input
from .checks import check_int
from .tensor import Tensor


def check_resize(resize, where: str):
    """``resize`` as None (keep the size) or ``(OH, OW)``: an int S means (S, S),
    torchvision's ``Resize(S)`` on square images; each side from 1 to MAX_RESIZE."""
    if resize is None:
        return None
    sides = tuple(resize) if isinstance(resize, (tuple, list)) else (resize, resize)
    if len(sides) != 2:
        raise ValueError(f"{where}: resize must be an int or a pair (height, width), got "
                         f"{resize!r}")
    for side in sides:
        if isinstance(side, (bool, np.bool_)) or not isinstance(side, numbers.Integral):
            raise TypeError(f"{where}: resize must be an int or a pair of ints, got "
                            f"{resize!r} ({type(side).__name__})")
        if not 1 <= side <= MAX_RESIZE:
            raise ValueError(f"{where}: resize must be from 1 to {MAX_RESIZE} pixels per "
                             f"side (the images are 28x28; d2l's AlexNet takes 224), got "
                             f"{resize!r}")
    return int(sides[0]), int(sides[1])


class ImageDataset:
    """Images (N, H, W) uint8 and labels (N,) in memory, as a map-style data set: item
    ``i`` is ``(X, label)`` with X float32 (1, OH, OW) in [0, 1] and label an int."""

    def __init__(self, images, labels, resize=None, where: str = "ImageDataset"):
        _check_host_images(images, where)
        labels = np.asarray(labels)
        if labels.ndim != 1 or labels.dtype.kind not in "iu" or len(labels) != len(images):
            raise ValueError(f"{where}: labels must be ints of shape ({len(images)},) to "
                             f"match the images, got {labels.dtype} {labels.shape}")
        self.images, self.labels = images, labels.astype(np.int64)
        self.resize = check_resize(resize, where)

    def __len__(self) -> int:
        return len(self.images)

    def batch(self, index, backend: str = "numpy"):
        """Images ``index`` (a slice or int array) as one (X, y) batch on ``backend``."""
        X = to_input(self.images[index], backend)               # (B, 1, H, W) float32
        if self.resize is not None and self.resize != X.shape[2:]:
            X = resize_bilinear(X, self.resize)                 # (B, 1, OH, OW)
        y = B.xp_of(backend).asarray(self.labels[index])        # (B,) int64
        return Tensor(X), Tensor(y)

    def __getitem__(self, i):
        i = check_int(i, "index", "ImageDataset", -len(self), len(self) - 1)
        X, y = self.batch(slice(i % len(self), i % len(self) + 1))
        return X.reshape(X.shape[1:]), int(y.item())            # (1, OH, OW), int


class DataLoader:
    """Batches of an ``ImageDataset``: ``DataLoader(dataset, batch_size, shuffle=...)``
    with PyTorch's arguments (see the module docstring for what differs)."""

    def __init__(self, dataset, batch_size=1, shuffle=False, num_workers=0,
                 drop_last=False, device=None):
        if not isinstance(dataset, ImageDataset):
            raise TypeError(f"DataLoader: dataset must be a tinyalex.dataloader."
                            f"ImageDataset (images held in memory), got "
                            f"{type(dataset).__name__}")
        self.dataset = dataset
        self.batch_size = check_int(batch_size, "batch_size", "DataLoader", 1)
        for arg, flag in (("shuffle", shuffle), ("drop_last", drop_last)):
            if not isinstance(flag, (bool, np.bool_)):
                raise TypeError(f"DataLoader: {arg} must be True or False, got {flag!r}")
        self.shuffle, self.drop_last = bool(shuffle), bool(drop_last)
        self.num_workers = check_int(num_workers, "num_workers", "DataLoader", 0)
        where = "DataLoader"
        self.device = devices.device(devices.default_device() if device is None else
                                     devices.of_backend(devices.backend_for(device, where)))

    def __len__(self) -> int:
        N, bs = len(self.dataset), self.batch_size
        return N // bs if self.drop_last else -(-N // bs)

    def __iter__(self):
        N, bs = len(self.dataset), self.batch_size
        order = R.generator().permutation(N) if self.shuffle else None   # one per epoch
        for b in range(len(self)):
            start = b * bs
            index = slice(start, start + bs) if order is None else order[start:start + bs]
            yield self.dataset.batch(index, self.device.backend)
