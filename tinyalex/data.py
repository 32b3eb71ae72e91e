"""Fashion-MNIST for d2l's recipes: find the IDX files, check them, batch, resize.

    train_X, train_y, test_X, test_y = load_fashion_mnist()     # uint8 (N, 28, 28), int64 (N,)
    for X_host, y_host in batches(train_X, train_y, 256, seed=0, epoch=0):
        X = to_input(X_host, backend="numpy", resize=224)        # float32 (N, 1, 224, 224)

Where the files are looked for, in order (the first that is named decides):

1. ``data_dir`` (the scripts' ``--data-dir``),
2. ``$FASHION_MNIST_DIR``,
3. ``/usr/share/datasets/fashion-mnist/`` (Debian's package ``dataset-fashion-mnist``),
4. a torchvision-style ``FashionMNIST/raw/`` folder under ``./data``, ``../data``,
   ``.`` or ``~/data`` (where d2l's ``load_data_fashion_mnist`` downloads it).

A folder named explicitly (1 or 2) that does not hold the four files is an error,
not a reason to quietly use other data. Each file may be gzip-compressed (``.gz``)
or plain, and is checked in full: magic number, dimensions, length, labels in
0..9, counts that agree; a bad file raises a ValueError naming it.

Pixels become float32 in [0, 1] (``/ 255``, no normalisation, as d2l's
``ToTensor``). ``resize`` is bilinear interpolation written as two small matrix
products per image, ``Ry (OH, H) @ img (H, W) @ Rx.T (W, OW)``, run on the training
backend, and equal to ``torch.nn.functional.interpolate(mode="bilinear",
align_corners=False)`` up to float32 rounding.
"""

from __future__ import annotations

import gzip
import os
import zlib
from pathlib import Path

import numpy as np

from . import backend as B
from .checks import check_bytes, check_int

CLASS_NAMES = ("t-shirt", "trouser", "pullover", "dress", "coat",
               "sandal", "shirt", "sneaker", "bag", "ankle boot")

# (images, labels) base names of each split; each may also end in ".gz"
FILES = {"train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
         "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")}
DEBIAN_DIR = "/usr/share/datasets/fashion-mnist"
ROWS = COLS = 28
NUM_CLASSES = len(CLASS_NAMES)
# the largest side ``resize`` accepts: the images are 28x28 and d2l's AlexNet takes 224;
# beyond this a batch of inputs is gigabytes of interpolated pixels
MAX_RESIZE = 2048

HOW_TO_GET = ("get it with `sudo apt-get install dataset-fashion-mnist` (Debian/Ubuntu), or "
              "download the four *-ubyte.gz files from "
              "https://github.com/zalandoresearch/fashion-mnist and pass their folder with "
              "--data-dir or $FASHION_MNIST_DIR")


# --------------------------------------------------------------------------------------
# Finding the files
# --------------------------------------------------------------------------------------

def _file_in(folder: Path, base: str) -> Path | None:
    """``folder/base`` or ``folder/base.gz``, whichever exists (plain first)."""
    for name in (base, base + ".gz"):
        path = folder / name
        if path.is_file():
            return path
    return None


def _files_in(folder: Path) -> tuple[dict | None, list]:
    """The four files in ``folder`` as {split: (images, labels)}, or None and the
    base names that are missing."""
    found, missing = {}, []
    for split, bases in FILES.items():
        paths = tuple(_file_in(folder, b) for b in bases)
        missing += [b for b, p in zip(bases, paths) if p is None]
        found[split] = paths
    return (None if missing else found), missing


def _torchvision_candidates() -> list[Path]:
    roots = [Path("data"), Path("..") / "data", Path("."), Path.home() / "data"]
    return [r / "FashionMNIST" / "raw" for r in roots]


def find_files(data_dir=None) -> dict:
    """Paths of the four files as ``{"train": (images, labels), "test": (...)}``.

    Raises FileNotFoundError saying where it looked and how to get the data.
    """
    explicit = []
    if data_dir is not None and not isinstance(data_dir, (str, os.PathLike)):
        raise TypeError(f"Fashion-MNIST: data_dir must be a folder path (str or Path), got "
                        f"{type(data_dir).__name__}")
    if data_dir is not None:
        explicit.append(("--data-dir", Path(data_dir)))
    env = os.environ.get("FASHION_MNIST_DIR")
    if env:
        explicit.append(("$FASHION_MNIST_DIR", Path(env)))
    if explicit:
        source, folder = explicit[0]
        # an explicitly named folder may be the data folder itself or a torchvision root
        for candidate in (folder, folder / "FashionMNIST" / "raw"):
            found, _ = _files_in(candidate)
            if found:
                return found
        _, missing = _files_in(folder)
        what = "does not exist" if not folder.is_dir() else \
            f"lacks {', '.join(m + '[.gz]' for m in missing)}"
        raise FileNotFoundError(f"Fashion-MNIST: the folder {str(folder)!r} given by {source} "
                                f"{what}; {HOW_TO_GET}")
    looked = [Path(DEBIAN_DIR)] + _torchvision_candidates()
    for folder in looked:
        found, _ = _files_in(folder)
        if found:
            return found
    where = ", ".join(str(p) for p in looked)
    raise FileNotFoundError(f"Fashion-MNIST files not found: looked in --data-dir (not given), "
                            f"$FASHION_MNIST_DIR (not set), {where}; {HOW_TO_GET}")


# --------------------------------------------------------------------------------------
# Reading and checking IDX files
# --------------------------------------------------------------------------------------

def _read_bytes(path: Path) -> bytes:
    try:
        if path.name.endswith(".gz"):
            with gzip.open(path, "rb") as f:
                return f.read()
        return path.read_bytes()
    except EOFError:
        raise ValueError(f"{path}: the gzip stream is truncated (the file ends before the "
                         "compressed data does); download it again") from None
    except (gzip.BadGzipFile, zlib.error) as exc:
        raise ValueError(f"{path}: not a valid gzip file ({exc}); download it again, or "
                         "decompress it and keep the plain file") from None
    except OSError as exc:
        raise ValueError(f"{path}: cannot be read ({exc})") from None


def read_idx(path, ndim: int) -> np.ndarray:
    """One IDX file of unsigned bytes with ``ndim`` dimensions, checked in full.

    IDX layout: two zero bytes, a type code (0x08 = unsigned byte), the number of
    dimensions, then one big-endian uint32 per dimension, then the data.
    """
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"read_idx: path must be a str or Path, got {type(path).__name__}")
    ndim = check_int(ndim, "ndim", "read_idx", 1, 255)
    path = Path(path)
    raw = _read_bytes(path)
    if len(raw) < 4:
        raise ValueError(f"{path}: only {len(raw)} bytes, too short for an IDX header")
    zero0, zero1, type_code, dims_count = raw[:4]
    magic = int.from_bytes(raw[:4], "big")
    expected_magic = 0x0800 + ndim
    if zero0 or zero1 or type_code != 0x08 or dims_count != ndim:
        kind = {1: "labels (idx1-ubyte)", 3: "images (idx3-ubyte)"}.get(ndim, f"idx{ndim}")
        raise ValueError(f"{path}: bad magic number 0x{magic:08x}, expected "
                         f"0x{expected_magic:08x} for {kind}")
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise ValueError(f"{path}: truncated header ({len(raw)} bytes, need {header})")
    dims = tuple(int(d) for d in np.frombuffer(raw, dtype=">u4", count=ndim, offset=4))
    expected = header + _product(dims)      # Python ints: no overflow for any header
    if len(raw) != expected:
        problem = "truncated" if len(raw) < expected else "has trailing bytes"
        raise ValueError(f"{path}: {problem}: the header says dimensions {dims}, which need "
                         f"{expected} bytes, but the file holds {len(raw)}")
    # a writable copy, shaped by the dimensions the header gives
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(dims).copy()


def _product(dims) -> int:
    n = 1
    for d in dims:
        n *= int(d)
    return n


def read_images(path) -> np.ndarray:
    """uint8 images (N, 28, 28) from an idx3-ubyte file."""
    images = read_idx(path, 3)
    N, H, W = images.shape
    if (H, W) != (ROWS, COLS):
        raise ValueError(f"{path}: images are {H}x{W}, Fashion-MNIST's are {ROWS}x{COLS}")
    return images


def read_labels(path) -> np.ndarray:
    """int64 labels (N,) in 0..9 from an idx1-ubyte file."""
    labels = read_idx(path, 1)
    if labels.size and labels.max() >= NUM_CLASSES:
        bad = int(np.argmax(labels >= NUM_CLASSES))
        raise ValueError(f"{path}: label {int(labels[bad])} at index {bad} is outside "
                         f"0..{NUM_CLASSES - 1}")
    return labels.astype(np.int64)


def read_split(images_path, labels_path) -> tuple[np.ndarray, np.ndarray]:
    images, labels = read_images(images_path), read_labels(labels_path)
    if images.shape[0] != labels.shape[0]:
        raise ValueError(f"{images_path} holds {images.shape[0]} images but {labels_path} "
                         f"holds {labels.shape[0]} labels; the counts must agree")
    if images.shape[0] == 0:
        raise ValueError(f"{images_path}: holds no images")
    return images, labels


def load_fashion_mnist(data_dir=None):
    """``(train_images, train_labels, test_images, test_labels)``.

    Images are uint8 arrays (N, 28, 28), labels int64 (N,) in 0..9; 60000 training
    and 10000 test examples in the real data set.
    """
    files = find_files(data_dir)
    train = read_split(*files["train"])
    test = read_split(*files["test"])
    return train[0], train[1], test[0], test[1]


# --------------------------------------------------------------------------------------
# Batches
# --------------------------------------------------------------------------------------

# A student tries the book's code in a minute: d2l's loaders (tinyalex.d2l) take the
# first N images of each split, its trainers train E epochs, when these are set.
D2L_LIMIT, D2L_EPOCHS = "TINYALEX_D2L_LIMIT", "TINYALEX_D2L_EPOCHS"


def _env_count(name: str) -> int | None:
    """The positive int in environment variable ``name``; None when unset or empty."""
    text = os.environ.get(name, "").strip()
    if not text:
        return None
    if not text.isdigit() or int(text) < 1:
        raise ValueError(f"{name}={text!r}: expected a positive whole number (for example "
                         f"{name}=1024), or unset it")
    return int(text)


def d2l_subset(train_X, train_y, test_X, test_y, where: str):
    """The four arrays, cut to their first ``$TINYALEX_D2L_LIMIT`` examples when it is
    set (saying so once per call); unchanged otherwise."""
    n = _env_count(D2L_LIMIT)
    if n is None:
        return train_X, train_y, test_X, test_y
    print(f"{where}: {D2L_LIMIT}={n}: the first {min(n, len(train_X))} of "
          f"{len(train_X)} training and {min(n, len(test_X))} of {len(test_X)} test images "
          f"(unset it for all)")
    return train_X[:n], train_y[:n], test_X[:n], test_y[:n]


def d2l_epochs(epochs: int, where: str) -> int:
    """``$TINYALEX_D2L_EPOCHS`` in place of the book's ``epochs`` when it is set (saying
    so); ``epochs`` otherwise."""
    n = _env_count(D2L_EPOCHS)
    if n is None:
        return epochs
    print(f"{where}: {D2L_EPOCHS}={n}: {n} epoch{'s' if n != 1 else ''} instead of "
          f"{epochs} (unset it for the book's)")
    return n


def epoch_order(n: int, seed: int, epoch: int) -> np.ndarray:
    """The training order of epoch ``epoch``: a permutation drawn from a generator
    seeded with ``(seed, epoch)``, so that any epoch can be replayed on resume
    without saving any state but the seed."""
    n = check_int(n, "n", "epoch_order", 0)
    seed = check_int(seed, "seed", "epoch_order", 0)
    epoch = check_int(epoch, "epoch", "epoch_order", 0)
    return np.random.Generator(np.random.PCG64([seed, epoch])).permutation(n)


def batches(images, labels, batch_size: int, *, shuffle: bool = False, seed: int = 0,
            epoch: int = 0):
    """Yield host batches ``(images[idx], labels[idx])``; the last partial batch is kept.

    With ``shuffle`` the order is ``epoch_order(N, seed, epoch)``; without, the
    stored order (as d2l's test iterator).
    """
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) \
            or batch_size < 1:
        raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
    N = len(images)
    if len(labels) != N:
        raise ValueError(f"batches: {N} images but {len(labels)} labels")
    check_int(seed, "seed", "batches", 0)
    check_int(epoch, "epoch", "batches", 0)
    order = epoch_order(N, seed, epoch) if shuffle else None
    for start in range(0, N, batch_size):
        if order is None:
            yield images[start:start + batch_size], labels[start:start + batch_size]
        else:
            idx = order[start:start + batch_size]
            yield images[idx], labels[idx]


def num_batches(n: int, batch_size: int) -> int:
    return -(-n // batch_size)


def augment(images, seed: int, epoch: int, batch_index: int, crop_padding: int = 0,
            flip: bool = False) -> np.ndarray:
    """Optional augmentation of a host uint8 batch (N, H, W), off in d2l's recipe.

    ``crop_padding=P``: pad with P zero pixels on each side and cut a random HxW window;
    ``flip``: mirror left-right with probability 1/2. Random numbers come from
    ``(seed, epoch, batch_index)`` so that a resumed run sees the same ones.
    """
    _check_host_images(images, "augment")
    N, H, W = images.shape
    crop_padding = check_int(crop_padding, "crop_padding", "augment", 0, max(H, W))
    if not isinstance(flip, (bool, np.bool_)):
        raise TypeError(f"augment: flip must be True or False, got {flip!r}")
    for arg, v in (("seed", seed), ("epoch", epoch), ("batch_index", batch_index)):
        check_int(v, arg, "augment", 0)
    if not crop_padding and not flip:
        return images
    rng = np.random.Generator(np.random.PCG64([int(seed), int(epoch), int(batch_index), 1]))
    out = np.array(images)
    if crop_padding:
        P = int(crop_padding)
        padded = np.zeros((N, H + 2 * P, W + 2 * P), dtype=images.dtype)  # (N, H+2P, W+2P)
        padded[:, P:P + H, P:P + W] = images
        top = rng.integers(0, 2 * P + 1, size=N)
        left = rng.integers(0, 2 * P + 1, size=N)
        for n in range(N):
            out[n] = padded[n, top[n]:top[n] + H, left[n]:left[n] + W]
    if flip:
        mirror = rng.random(N) < 0.5
        out[mirror] = out[mirror, :, ::-1]
    return out


# --------------------------------------------------------------------------------------
# From uint8 images to network input, on the training backend
# --------------------------------------------------------------------------------------

def bilinear_matrix(in_size: int, out_size: int, xp=np) -> "np.ndarray":
    """R (out_size, in_size): row o holds the two weights that mix input pixels into
    output pixel o, as PyTorch's bilinear ``align_corners=False``.

    Output pixel o samples the input at ``src = (o + 0.5) * in/out - 0.5`` (clamped
    at 0), between pixels ``i0 = floor(src)`` and ``i1 = min(i0 + 1, in - 1)`` with
    weights ``1 - (src - i0)`` and ``src - i0``; computed in float32 as PyTorch does.
    """
    in_size = check_int(in_size, "in_size", "bilinear_matrix", 1)
    out_size = check_int(out_size, "out_size", "bilinear_matrix", 1)
    check_bytes("bilinear_matrix", "the interpolation matrix", (out_size, in_size), 4)
    scale = np.float32(in_size) / np.float32(out_size)
    o = np.arange(out_size, dtype=np.float32)
    src = np.maximum(scale * (o + np.float32(0.5)) - np.float32(0.5), np.float32(0))
    i0 = np.minimum(np.floor(src).astype(np.int64), in_size - 1)
    i1 = np.minimum(i0 + 1, in_size - 1)
    w1 = (src - i0.astype(np.float32)).astype(np.float32)
    w0 = np.float32(1) - w1
    R = np.zeros((out_size, in_size), dtype=np.float32)
    rows = np.arange(out_size)
    np.add.at(R, (rows, i0), w0)
    np.add.at(R, (rows, i1), w1)
    return xp.asarray(R)


_DEVICE_MATRICES = {}      # (in, out, dtype, device) -> R on that GPU


def _resize_matrix(in_size, out_size, xp, dtype):
    """``bilinear_matrix`` in ``dtype``: built afresh on the host (NumPy), and on a GPU
    built and uploaded once per (in, out) size, dtype and device, then reused (a
    training run resizes every batch with the same two matrices)."""
    if xp is np:
        return bilinear_matrix(in_size, out_size, xp).astype(dtype)
    key = (in_size, out_size, np.dtype(dtype).str, xp.cuda.Device().id)
    R = _DEVICE_MATRICES.get(key)
    if R is None:
        R = _DEVICE_MATRICES[key] = xp.asarray(bilinear_matrix(in_size, out_size).astype(dtype))
    return R


def resize_bilinear(x, size):
    """Resize a float batch (N, C, H, W) to (N, C, OH, OW) on its own backend.

    Per image, two small matrix products: ``Ry (OH, H) @ img (H, W) @ Rx.T (W, OW)``.
    """
    xp = B.get_array_module(x)
    if getattr(x, "ndim", None) != 4 or x.dtype.kind != "f":
        raise ValueError(f"resize_bilinear: expected a float batch (N, C, H, W), got "
                         f"{getattr(x, 'dtype', type(x).__name__)} of shape "
                         f"{getattr(x, 'shape', '?')}")
    sizes = (size, size) if not isinstance(size, (tuple, list)) else tuple(size)
    if len(sizes) != 2:
        raise ValueError(f"resize_bilinear: size must be an int or a pair (OH, OW), got "
                         f"{size!r}")
    OH, OW = (check_int(v, "size", "resize_bilinear", 1) for v in sizes)
    N, C, H, W = x.shape
    check_bytes("resize_bilinear", "the resized batch", (N, C, OH, OW), x.dtype.itemsize,
                "use a smaller size or batch")
    if (OH, OW) == (H, W):
        return x
    Ry = _resize_matrix(H, OH, xp, x.dtype)                    # (OH, H)
    Rx = _resize_matrix(W, OW, xp, x.dtype)                    # (OW, W)
    imgs = x.reshape(N * C, H, W)                              # (N*C, H, W)
    rows = imgs @ Rx.T                                         # (N*C, H, OW) = (N*C, H, W) @ (W, OW)
    out = Ry @ rows                                            # (N*C, OH, OW) = (OH, H) @ (N*C, H, OW)
    return xp.ascontiguousarray(out.reshape(N, C, OH, OW))     # (N, C, OH, OW)


def to_input(images, backend: str = "numpy", resize: int | None = None):
    """Host uint8 images (N, 28, 28) -> float32 (N, 1, S, S) in [0, 1] on ``backend``.

    The uint8 batch travels to the device first (a quarter of the bytes), then is
    scaled and, with ``resize``, interpolated there.
    """
    xp = B.xp_of(backend)
    _check_host_images(images, "to_input")
    N, H, W = images.shape
    if N == 0:
        raise ValueError("to_input: empty batch (0 images)")
    if resize is not None:
        resize = check_int(resize, "resize", "to_input", 1, MAX_RESIZE)
    x = xp.asarray(np.ascontiguousarray(images))               # (N, H, W) uint8 on backend
    x = x.reshape(N, 1, H, W).astype(np.float32) / np.float32(255)   # (N, 1, H, W), as ToTensor
    if resize is not None and resize != H:
        x = resize_bilinear(x, resize)
    return x


def _check_host_images(images, where) -> None:
    if not isinstance(images, np.ndarray) or images.dtype != np.uint8 or images.ndim != 3:
        got = (f"dtype {images.dtype} and shape {images.shape}"
               if isinstance(images, np.ndarray) else type(images).__name__)
        raise TypeError(f"{where}: expected host images as a uint8 NumPy array (N, H, W), "
                        f"got {got}")
