"""Fashion-MNIST loading: the real files, tiny broken files we write, search order,
batches, augmentation and the bilinear resize (against PyTorch when installed)."""

import gzip
import os
import struct

import numpy as np
import pytest

from tinyalex import data
from helpers.checks import real_fashion_mnist, require_torch

# ------------------------------------------------------------------ writing IDX files


def idx_bytes(array, magic_type=0x08, ndim=None):
    array = np.asarray(array, dtype=np.uint8)
    ndim = array.ndim if ndim is None else ndim
    header = bytes([0, 0, magic_type, ndim]) + b"".join(struct.pack(">I", d) for d in array.shape)
    return header + array.tobytes()


def write(path, payload, gz=True):
    if gz:
        path = path.with_name(path.name + ".gz")
        with gzip.open(path, "wb") as f:
            f.write(payload)
    else:
        path.write_bytes(payload)
    return path


def write_dataset(folder, n_train=12, n_test=5, gz=True, seed=0):
    """Four valid tiny files; returns the arrays written."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    arrays = {}
    for split, n in (("train", n_train), ("test", n_test)):
        images = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
        labels = rng.integers(0, 10, size=n, dtype=np.uint8)
        img_name, lbl_name = data.FILES[split]
        write(folder / img_name, idx_bytes(images), gz)
        write(folder / lbl_name, idx_bytes(labels), gz)
        arrays[split] = (images, labels)
    return arrays


@pytest.fixture
def no_env(monkeypatch):
    monkeypatch.delenv("FASHION_MNIST_DIR", raising=False)


# ------------------------------------------------------------------ the real data set

def test_real_files_load_with_the_published_counts():
    train_X, train_y, test_X, test_y = real_fashion_mnist()
    assert train_X.shape == (60000, 28, 28) and train_X.dtype == np.uint8
    assert test_X.shape == (10000, 28, 28) and test_X.dtype == np.uint8
    assert train_y.shape == (60000,) and test_y.shape == (10000,)
    # Fashion-MNIST is balanced: 6000 training and 1000 test images per class
    assert np.bincount(train_y, minlength=10).tolist() == [6000] * 10
    assert np.bincount(test_y, minlength=10).tolist() == [1000] * 10
    assert train_X.max() == 255 and train_X.min() == 0
    assert len(data.CLASS_NAMES) == 10 and data.CLASS_NAMES[9] == "ankle boot"


def test_real_batches_keep_the_last_partial_batch():
    train_X, train_y, _, _ = real_fashion_mnist()
    sizes = [len(y) for _, y in data.batches(train_X, train_y, 128, shuffle=True, seed=1)]
    assert len(sizes) == 469 and sizes[:-1] == [128] * 468 and sizes[-1] == 96


# ------------------------------------------------------------------ search order

@pytest.mark.parametrize("gz", [True, False])
def test_tiny_valid_files_load_gz_or_plain(tmp_path, no_env, gz):
    written = write_dataset(tmp_path, gz=gz)
    train_X, train_y, test_X, test_y = data.load_fashion_mnist(tmp_path)
    np.testing.assert_array_equal(train_X, written["train"][0])
    np.testing.assert_array_equal(train_y, written["train"][1])
    np.testing.assert_array_equal(test_X, written["test"][0])
    assert train_y.dtype == np.int64


def test_data_dir_comes_before_the_environment(tmp_path, monkeypatch):
    a = write_dataset(tmp_path / "a", n_train=3, seed=1)
    write_dataset(tmp_path / "b", n_train=4, seed=2)
    monkeypatch.setenv("FASHION_MNIST_DIR", str(tmp_path / "b"))
    np.testing.assert_array_equal(data.load_fashion_mnist(tmp_path / "a")[0], a["train"][0])
    assert len(data.load_fashion_mnist()[0]) == 4          # then the environment


def test_torchvision_layout_is_found_under_a_root(tmp_path, no_env):
    written = write_dataset(tmp_path / "FashionMNIST" / "raw", gz=False)
    np.testing.assert_array_equal(data.load_fashion_mnist(tmp_path)[1], written["train"][1])


def test_torchvision_layout_is_found_under_cwd_data(tmp_path, no_env, monkeypatch):
    monkeypatch.setattr(data, "DEBIAN_DIR", str(tmp_path / "not-installed"))
    written = write_dataset(tmp_path / "data" / "FashionMNIST" / "raw")
    monkeypatch.chdir(tmp_path)
    np.testing.assert_array_equal(data.load_fashion_mnist()[2], written["test"][0])


def test_nothing_found_says_where_it_looked(tmp_path, no_env, monkeypatch):
    monkeypatch.setattr(data, "DEBIAN_DIR", str(tmp_path / "not-installed"))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HOME", str(tmp_path))
    with pytest.raises(FileNotFoundError) as err:
        data.load_fashion_mnist()
    msg = str(err.value)
    assert "not-installed" in msg and "FASHION_MNIST_DIR" in msg and "apt-get" in msg


def test_a_named_folder_missing_a_file_is_an_error(tmp_path, no_env):
    write_dataset(tmp_path)
    os.remove(tmp_path / "t10k-labels-idx1-ubyte.gz")
    with pytest.raises(FileNotFoundError, match="t10k-labels-idx1-ubyte"):
        data.load_fashion_mnist(tmp_path)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        data.load_fashion_mnist(tmp_path / "nowhere")


# ------------------------------------------------------------------ broken files

def break_file(folder, name, payload, gz=True):
    for suffix in ("", ".gz"):
        p = folder / (name + suffix)
        if p.exists():
            p.unlink()
    return write(folder / name, payload, gz)


IMAGES, LABELS = data.FILES["train"]
GOOD_IMAGES = np.zeros((3, 28, 28), np.uint8)


@pytest.mark.parametrize("name,payload,expected", [
    (IMAGES, idx_bytes(GOOD_IMAGES, magic_type=0x09), "bad magic number 0x00000903"),
    (IMAGES, idx_bytes(GOOD_IMAGES)[:2], "too short"),
    (IMAGES, idx_bytes(GOOD_IMAGES.reshape(3, 784)), "bad magic number 0x00000802"),
    (LABELS, idx_bytes(np.zeros((3, 1), np.uint8)), "bad magic number 0x00000802"),
    (IMAGES, idx_bytes(GOOD_IMAGES)[:-10], "truncated"),
    (IMAGES, idx_bytes(GOOD_IMAGES)[:10], "truncated header"),
    (IMAGES, idx_bytes(GOOD_IMAGES) + b"\0", "trailing bytes"),
    (IMAGES, idx_bytes(np.zeros((3, 28, 27), np.uint8)), "28x27"),
    (LABELS, idx_bytes(np.array([0, 10, 3])), "label 10 at index 1"),
    (LABELS, idx_bytes(np.array([0, 1])), "3 images but .* 2 labels"),
])
def test_broken_file_names_file_and_problem(tmp_path, no_env, name, payload, expected):
    write_dataset(tmp_path, n_train=3)
    bad = break_file(tmp_path, name, payload)
    with pytest.raises(ValueError, match=expected) as err:
        data.load_fashion_mnist(tmp_path)
    assert str(bad) in str(err.value)


def test_truncated_gzip_is_reported(tmp_path, no_env):
    write_dataset(tmp_path, n_train=3)
    path = tmp_path / (IMAGES + ".gz")
    path.write_bytes(path.read_bytes()[:-20])
    with pytest.raises(ValueError, match="gzip stream is truncated") as err:
        data.load_fashion_mnist(tmp_path)
    assert str(path) in str(err.value)


def test_corrupt_gzip_is_reported(tmp_path, no_env):
    write_dataset(tmp_path, n_train=3)
    path = tmp_path / (LABELS + ".gz")
    path.write_bytes(b"this is not gzip at all")
    with pytest.raises(ValueError, match="not a valid gzip file") as err:
        data.load_fashion_mnist(tmp_path)
    assert str(path) in str(err.value)


def test_damaged_gzip_body_is_reported(tmp_path, no_env):
    write_dataset(tmp_path, n_train=3)
    path = tmp_path / (IMAGES + ".gz")
    raw = bytearray(path.read_bytes())
    for i in range(12, len(raw) - 8):       # scramble the deflate stream, keep the header
        raw[i] ^= 0x5A
    path.write_bytes(bytes(raw))
    with pytest.raises(ValueError) as err:
        data.load_fashion_mnist(tmp_path)
    assert str(path) in str(err.value)


# ------------------------------------------------------------------ batches

def test_shuffle_depends_on_seed_and_epoch_only():
    X = np.arange(50, dtype=np.uint8).reshape(50, 1, 1)
    y = np.arange(50)
    def order(seed, epoch):
        return np.concatenate([b for _, b in data.batches(X, y, 16, shuffle=True, seed=seed,
                                                          epoch=epoch)])
    assert sorted(order(0, 0)) == list(range(50))
    np.testing.assert_array_equal(order(0, 3), order(0, 3))
    assert not np.array_equal(order(0, 0), order(0, 1))
    assert not np.array_equal(order(0, 0), order(1, 0))
    fixed = [b for _, b in data.batches(X, y, 16)]
    assert [len(b) for b in fixed] == [16, 16, 16, 2]
    np.testing.assert_array_equal(np.concatenate(fixed), y)


def test_batches_rejects_bad_sizes():
    with pytest.raises(ValueError, match="batch_size"):
        list(data.batches(np.zeros((3, 2, 2)), np.zeros(3), 0))
    with pytest.raises(ValueError, match="3 images but 2 labels"):
        list(data.batches(np.zeros((3, 2, 2)), np.zeros(2), 2))


def test_to_input_scales_to_unit_interval_without_normalising():
    images = np.array([[[0, 255], [51, 102]]], dtype=np.uint8)
    x = data.to_input(images)
    assert x.dtype == np.float32 and x.shape == (1, 1, 2, 2)
    np.testing.assert_allclose(x[0, 0], [[0, 1], [0.2, 0.4]], rtol=1e-7)


def test_augment_is_reproducible_and_keeps_pixels():
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(8, 28, 28), dtype=np.uint8)
    assert data.augment(images, 0, 0, 0) is images            # off: untouched
    a = data.augment(images, 0, 2, 5, crop_padding=4, flip=True)
    b = data.augment(images, 0, 2, 5, crop_padding=4, flip=True)
    np.testing.assert_array_equal(a, b)
    assert a.shape == images.shape and not np.array_equal(a, images)
    flipped = data.augment(images, 0, 0, 0, flip=True)
    for f, img in zip(flipped, images):                      # each one mirrored or not
        assert np.array_equal(f, img) or np.array_equal(f, img[:, ::-1])


# ------------------------------------------------------------------ bilinear resize

def resize_loops(img, OH, OW):
    """Textbook bilinear (align_corners=False), one output pixel at a time, float64."""
    H, W = img.shape
    out = np.zeros((OH, OW))
    for o in range(OH):
        sy = max((o + 0.5) * H / OH - 0.5, 0.0)
        y0 = min(int(np.floor(sy)), H - 1)
        y1, wy = min(y0 + 1, H - 1), sy - y0
        for p in range(OW):
            sx = max((p + 0.5) * W / OW - 0.5, 0.0)
            x0 = min(int(np.floor(sx)), W - 1)
            x1, wx = min(x0 + 1, W - 1), sx - x0
            out[o, p] = ((1 - wy) * ((1 - wx) * img[y0, x0] + wx * img[y0, x1])
                         + wy * ((1 - wx) * img[y1, x0] + wx * img[y1, x1]))
    return out


@pytest.mark.parametrize("H,W,OH,OW", [(28, 28, 224, 224), (5, 7, 9, 4), (6, 6, 3, 3), (4, 4, 4, 4)])
def test_resize_matches_loops(H, W, OH, OW):
    x = np.random.default_rng(0).random((2, 1, H, W)).astype(np.float32)
    y = data.resize_bilinear(x, (OH, OW))
    assert y.shape == (2, 1, OH, OW) and y.dtype == np.float32
    for n in range(2):
        np.testing.assert_allclose(y[n, 0], resize_loops(x[n, 0].astype(np.float64), OH, OW),
                                   rtol=0, atol=2e-6)


def test_bilinear_rows_sum_to_one():
    R = data.bilinear_matrix(28, 224)
    assert R.shape == (224, 28)
    np.testing.assert_allclose(R.sum(axis=1), 1.0, atol=1e-6)


@pytest.mark.parametrize("size", [224, 50, 17])
def test_resize_matches_torch(size):
    torch = require_torch()
    images = np.random.default_rng(1).integers(0, 256, size=(6, 28, 28), dtype=np.uint8)
    ours = data.to_input(images, resize=size)
    ref = torch.nn.functional.interpolate(
        torch.from_numpy(images).float().div(255).unsqueeze(1), size=(size, size),
        mode="bilinear", align_corners=False).numpy()
    assert ours.shape == ref.shape == (6, 1, size, size)
    np.testing.assert_allclose(ours, ref, rtol=0, atol=2e-6)   # float32 rounding
