"""The data loaders d2l's chapters iterate (tinyalex/dataloader.py, d2l.load_data_fashion_mnist,
d2l.FashionMNIST): batches, order, scaling, resizing against torchvision's PIL resize and
PyTorch's interpolate, where the files are found, and the errors for bad arguments."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import tinyalex
from tinyalex import d2l
from tinyalex.dataloader import DataLoader, ImageDataset
from helpers.checks import real_fashion_mnist, require_torch
from helpers.reliability import write_idx


def small_folder(folder: Path, n_train: int, n_test: int) -> Path:
    """The first images of the real data set as four IDX files, as d2l users have them."""
    train_X, train_y, test_X, test_y = real_fashion_mnist()
    folder.mkdir(parents=True, exist_ok=True)
    write_idx(folder / "train-images-idx3-ubyte", train_X[:n_train])
    write_idx(folder / "train-labels-idx1-ubyte", train_y[:n_train])
    write_idx(folder / "t10k-images-idx3-ubyte", test_X[:n_test])
    write_idx(folder / "t10k-labels-idx1-ubyte", test_y[:n_test])
    return folder


def numbered(n):
    """n images whose first pixel is their index, labels = index % 10."""
    images = np.zeros((n, 28, 28), np.uint8)
    images[:, 0, 0] = np.arange(n)
    return images, np.arange(n) % 10


def test_batches_keep_the_last_partial_one_and_scale_as_to_tensor():
    images, labels = numbered(10)
    loader = DataLoader(ImageDataset(images, labels), batch_size=4, device="cpu")
    batches = list(loader)
    assert len(loader) == 3 and [len(y) for _, y in batches] == [4, 4, 2]
    X, y = batches[0]
    assert X.shape == (4, 1, 28, 28) and X.dtype == np.float32 and y.dtype == np.int64
    np.testing.assert_array_equal(X.numpy()[:, 0], images[:4] / np.float32(255))
    assert np.concatenate([y.numpy() for _, y in batches]).tolist() == labels.tolist()
    dropped = DataLoader(ImageDataset(images, labels), batch_size=4, drop_last=True)
    assert len(dropped) == 2 and [len(y) for _, y in dropped] == [4, 4]


def test_shuffle_draws_a_new_order_every_epoch_from_the_seeded_generator():
    images, labels = numbered(100)
    loader = DataLoader(ImageDataset(images, labels), batch_size=32, shuffle=True)

    def epoch_order():
        return np.concatenate([X.numpy()[:, 0, 0, 0] * 255 for X, _ in loader]).round()

    tinyalex.manual_seed(3)
    first, second = epoch_order(), epoch_order()
    assert sorted(first) == sorted(second) == list(range(100))     # each a permutation
    assert not np.array_equal(first, second)                       # reshuffled
    tinyalex.manual_seed(3)
    assert np.array_equal(epoch_order(), first)                     # reproducible
    in_order = DataLoader(ImageDataset(images, labels), batch_size=32)
    assert np.concatenate([y.numpy() for _, y in in_order]).tolist() == labels.tolist()


def test_resize_is_within_one_level_of_torchvisions_pil_resize_and_equals_interpolate():
    from PIL import Image
    torch = require_torch()
    images = real_fashion_mnist()[2][:64]
    X, _ = next(iter(DataLoader(ImageDataset(images, np.zeros(64, np.int64), resize=224),
                                batch_size=64)))
    ours = X.numpy()[:, 0]
    # torchvision's Resize(224) on the PIL image, then ToTensor (uint8 / 255)
    pil = np.stack([np.asarray(Image.fromarray(im).resize((224, 224), Image.BILINEAR))
                    for im in images]).astype(np.float32) / 255
    assert np.abs(ours - pil).max() <= 1 / 255 + 1e-6
    ref = torch.nn.functional.interpolate(torch.tensor(images[:, None] / np.float32(255)),
                                          size=(224, 224), mode="bilinear", align_corners=False)
    np.testing.assert_allclose(ours, ref.numpy()[:, 0], atol=2e-6)
    # a pair resizes to that height and width; the item of a data set is (1, OH, OW)
    assert ImageDataset(images, np.zeros(64, np.int64), resize=(32, 40))[0][0].shape == (1, 32, 40)


def test_load_data_fashion_mnist_reads_fashion_mnist_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("FASHION_MNIST_DIR", str(small_folder(tmp_path / "data", 300, 70)))
    train_iter, test_iter = d2l.load_data_fashion_mnist(64, resize=224)
    assert (len(train_iter), len(test_iter)) == (5, 2)
    assert train_iter.shuffle and not test_iter.shuffle and train_iter.num_workers == 4
    X, y = next(iter(test_iter))
    assert X.shape == (64, 1, 224, 224) and X.dtype == np.float32
    assert 0 <= float(X.numpy().min()) and float(X.numpy().max()) <= 1
    assert y.numpy().tolist() == real_fashion_mnist()[3][:64].tolist()     # stored order
    assert [len(y) for _, y in test_iter] == [64, 6]


def test_missing_data_says_where_it_looked(tmp_path, monkeypatch):
    monkeypatch.setenv("FASHION_MNIST_DIR", str(tmp_path / "nowhere"))
    with pytest.raises(FileNotFoundError, match=r"the folder '.*nowhere' given by "
                                                r"\$FASHION_MNIST_DIR does not exist; get it "
                                                r"with `sudo apt-get install "
                                                r"dataset-fashion-mnist`"):
        d2l.load_data_fashion_mnist(256)


def test_d2l_fashion_mnist_data_module(tmp_path, monkeypatch):
    monkeypatch.setenv("FASHION_MNIST_DIR", str(small_folder(tmp_path / "data", 200, 50)))
    data = d2l.FashionMNIST(batch_size=64, resize=(32, 32))
    assert (len(data.train), len(data.val)) == (200, 50)
    X0, label0 = data.train[0]
    assert X0.shape == (1, 32, 32) and label0 == int(real_fashion_mnist()[1][0])
    train, val = data.train_dataloader(), data.val_dataloader()
    assert train.shuffle and not val.shuffle and (len(train), len(val)) == (4, 1)
    assert next(iter(data.get_dataloader(True)))[0].shape == (64, 1, 32, 32)
    assert data.text_labels([0, 9]) == ["t-shirt", "ankle boot"]
    assert data.batch_size == 64 and data.hparams == {"batch_size": 64, "resize": (32, 32)}


@pytest.mark.parametrize("call, error, match", [
    (lambda: d2l.load_data_fashion_mnist(0), ValueError,
     r"load_data_fashion_mnist: batch_size must be a positive int, got 0"),
    (lambda: d2l.load_data_fashion_mnist(-256), ValueError,
     r"load_data_fashion_mnist: batch_size must be a positive int, got -256"),
    (lambda: d2l.load_data_fashion_mnist(2.5), TypeError,
     r"load_data_fashion_mnist: batch_size must be a positive int, got 2.5 \(float\)"),
    (lambda: d2l.load_data_fashion_mnist(True), TypeError,
     r"batch_size must be a positive int, got True \(bool\)"),
    (lambda: d2l.load_data_fashion_mnist(256, resize=0), ValueError,
     r"load_data_fashion_mnist: resize must be from 1 to 2048 pixels per side .*got 0"),
    (lambda: d2l.load_data_fashion_mnist(256, resize=10**6), ValueError,
     r"resize must be from 1 to 2048 pixels per side.*got 1000000"),
    (lambda: d2l.load_data_fashion_mnist(256, resize=(224,)), ValueError,
     r"resize must be an int or a pair \(height, width\), got \(224,\)"),
    (lambda: d2l.load_data_fashion_mnist(256, resize="224"), TypeError,
     r"resize must be an int or a pair of ints, got '224' \(str\)"),
    (lambda: d2l.FashionMNIST(batch_size=0), ValueError,
     r"FashionMNIST: batch_size must be a positive int, got 0"),
    (lambda: d2l.FashionMNIST(resize=(224, -1)), ValueError,
     r"FashionMNIST: resize must be from 1 to 2048 pixels per side.*got \(224, -1\)"),
    (lambda: DataLoader(ImageDataset(*numbered(4)), num_workers=-1), ValueError,
     r"DataLoader: num_workers must be a non-negative int, got -1"),
    (lambda: DataLoader(ImageDataset(*numbered(4)), device="tpu"), ValueError,
     r"DataLoader: unknown backend 'tpu'"),
    (lambda: DataLoader([(1, 2)]), TypeError,
     r"DataLoader: dataset must be a tinyalex.dataloader.ImageDataset .*got list"),
    (lambda: ImageDataset(np.zeros((4, 28, 28)), np.zeros(4, np.int64)), TypeError,
     r"ImageDataset: expected host images as a uint8 NumPy array \(N, H, W\), got dtype "
     r"float64"),
    (lambda: ImageDataset(*numbered(4))[4], ValueError, r"ImageDataset: index must be an "
                                                        r"int from -4 to 3, got 4"),
])
def test_bad_loader_arguments_name_argument_expected_and_actual(call, error, match, tmp_path,
                                                                 monkeypatch):
    monkeypatch.setenv("FASHION_MNIST_DIR", str(small_folder(tmp_path / "data", 20, 10)))
    with pytest.raises(error, match=match):
        call()
