"""Weights as safetensors files, both ways with PyTorch: ``tinyalex.save`` / ``tinyalex.load``.

    tinyalex.save(net.state_dict(), "alexnet.safetensors")      # PyTorch reads it with
    net.load_state_dict(tinyalex.load("alexnet.safetensors"))   # safetensors.torch.load_file

A safetensors file is an 8-byte little-endian header length, a JSON header naming
each entry's dtype, shape and byte range, then the raw little-endian bytes: data
only, no code, so loading one can never run anything (no pickle, ever). Files are
read and written through the ``safetensors`` package's NumPy API; a file written by
``safetensors.torch.save_file(torch_net.state_dict(), path)`` from a PyTorch network
built like d2l's has the same names and shapes as tinyalex's (``0.weight``,
``0.bias``, ... of ``nn.Sequential``), so it loads as it is, and the other way round.

Before the package reads a file, its header is checked here, so that a file that is
not safetensors (a PyTorch ``torch.save`` pickle, a ``.npz``, text), a truncated one,
or an entry of a dtype NumPy has no type for (BF16, F8) is a ValueError naming the
file, the entry, what was expected and what was found. Wrong names or shapes for a
network are ``load_state_dict``'s errors, which list every mismatch.
"""

from __future__ import annotations

import json
import os
import zipfile
from collections import OrderedDict
from pathlib import Path

import numpy as np

from . import backend as B
from .atomic import atomic_write
from .npz import is_pickle
from .tensor import Tensor

# safetensors dtype names and the NumPy types tinyalex tensors can hold
DTYPES = {"F64": np.float64, "F32": np.float32, "F16": np.float16, "I64": np.int64,
          "I32": np.int32, "I16": np.int16, "I8": np.int8, "U64": np.uint64,
          "U32": np.uint32, "U16": np.uint16, "U8": np.uint8, "BOOL": np.bool_}
FLOAT_DTYPES = ("F64", "F32", "F16")
MAX_HEADER = 100 * 1024 * 1024      # the safetensors format's own limit on the header


def _check_path(path, where: str) -> Path:
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"{where}: path must be a str or Path, got {type(path).__name__}")
    return Path(path)


# --------------------------------------------------------------------------------------
# Saving
# --------------------------------------------------------------------------------------

def _host_array(name, value) -> np.ndarray:
    if isinstance(value, Tensor):
        try:
            value = value.array
        except ValueError as exc:        # a lazy layer's parameter before its first forward
            raise ValueError(f"tinyalex.save: entry {name!r}: {exc}") from None
    if not (isinstance(value, np.ndarray) or B.is_cupy_array(value)):
        raise TypeError(f"tinyalex.save: entry {name!r} must be a Tensor or an array, got "
                        f"{type(value).__name__}")
    host = np.ascontiguousarray(B.to_numpy(value))
    if host.dtype.type not in DTYPES.values():
        raise TypeError(f"tinyalex.save: entry {name!r} has dtype {host.dtype}; a "
                        f"safetensors file holds {', '.join(DTYPES)}")
    return host


def save(state_dict, path) -> None:
    """Write ``state_dict`` (names -> Tensors or arrays, e.g. ``net.state_dict()``) as a
    safetensors file at ``path``, atomically (a temporary file renamed into place)."""
    path = _check_path(path, "tinyalex.save")
    if not hasattr(state_dict, "items"):
        raise TypeError(f"tinyalex.save: expected a mapping of names to tensors (e.g. "
                        f"net.state_dict()), got {type(state_dict).__name__}")
    arrays = {}
    for name, value in state_dict.items():
        if not isinstance(name, str) or not name:
            raise TypeError(f"tinyalex.save: names must be non-empty strings, got {name!r}")
        arrays[name] = _host_array(name, value)
    from safetensors.numpy import save as to_bytes
    data = to_bytes(arrays)
    atomic_write(path, lambda f: f.write(data))


# --------------------------------------------------------------------------------------
# Loading
# --------------------------------------------------------------------------------------

def _not_safetensors(head: bytes, path) -> str:
    """Why a file whose header length makes no sense is not safetensors, in words."""
    if head.startswith(b"PK\x03\x04"):
        try:                           # the archive's table of contents: names only
            with zipfile.ZipFile(path) as zf:
                names = zf.namelist()
        except (zipfile.BadZipFile, OSError):
            names = []
        if "recipe.npy" in names and any(n.startswith("param/") for n in names):
            return ("it is a tinyalex training checkpoint (.npz); export its weights with "
                    "python examples/export.py CHECKPOINT OUT.safetensors, or load the "
                    "network with tinyalex.checkpoint.load_model(CHECKPOINT)")
        return ("it is a zip archive (PyTorch's torch.save format, a pickle inside, or "
                "NumPy's .npz); in PyTorch write a safetensors file with "
                "safetensors.torch.save_file(net.state_dict(), path)")
    if is_pickle(path):
        return ("it is a Python pickle, which tinyalex never loads; in PyTorch write a "
                "safetensors file with safetensors.torch.save_file(net.state_dict(), path)")
    if head.startswith(b"\x93NUMPY"):
        return "it is a NumPy .npy file"
    return ""


def read_header(path) -> "OrderedDict[str, dict]":
    """The entries of a safetensors file (name -> dtype, shape, data_offsets), in the
    order of their bytes, each checked against the file; or a ValueError."""
    path = _check_path(path, "tinyalex.load")
    size = path.stat().st_size
    with open(path, "rb") as f:
        head = f.read(8)
        if len(head) < 8:
            raise ValueError(f"{path}: not a safetensors file: {size} bytes, fewer than the "
                             "8 that give the header's length")
        n = int.from_bytes(head, "little")
        if n < 2 or n > min(MAX_HEADER, size - 8):
            why = _not_safetensors(head, path) or (
                f"its first 8 bytes give a header of {n} bytes, but the file holds "
                f"{size - 8} after them (and a header holds at most {MAX_HEADER})")
            raise ValueError(f"{path}: not a safetensors file: {why}")
        raw = f.read(n)
    try:
        header = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"{path}: not a safetensors file: its header is not JSON "
                         f"({exc})") from None
    if not isinstance(header, dict):
        raise ValueError(f"{path}: not a safetensors file: its header is a JSON "
                         f"{type(header).__name__}, expected an object of entries")
    data_bytes = size - 8 - n
    entries = []
    for name, info in header.items():
        if name == "__metadata__":
            continue
        entries.append((name, _check_entry(path, name, info, data_bytes)))
    entries.sort(key=lambda item: item[1]["data_offsets"][0])
    return OrderedDict(entries)


def _check_entry(path, name, info, data_bytes) -> dict:
    if not isinstance(info, dict) or not {"dtype", "shape", "data_offsets"} <= set(info):
        raise ValueError(f"{path}: entry {name!r} is {info!r:.80}, expected an object with "
                         "dtype, shape and data_offsets")
    dtype, shape, offsets = info["dtype"], info["shape"], info["data_offsets"]
    if dtype not in DTYPES:
        raise ValueError(f"{path}: entry {name!r} has dtype {dtype!r}, which NumPy (and so "
                         f"tinyalex) cannot hold; expected one of {', '.join(DTYPES)} (in "
                         "PyTorch convert first, e.g. {k: v.float() for k, v in sd.items()})")
    ints = lambda v: isinstance(v, list) and all(  # noqa: E731
        isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in v)
    if not ints(shape):
        raise ValueError(f"{path}: entry {name!r} has shape {shape!r}, expected a list of "
                         "ints >= 0")
    if not ints(offsets) or len(offsets) != 2 or not offsets[0] <= offsets[1] <= data_bytes:
        raise ValueError(f"{path}: entry {name!r} has data_offsets {offsets!r}, expected "
                         f"[begin, end] within the {data_bytes} data bytes")
    need = int(np.prod(shape, dtype=object)) * np.dtype(DTYPES[dtype]).itemsize
    if offsets[1] - offsets[0] != need:
        raise ValueError(f"{path}: entry {name!r} ({dtype}, shape {tuple(shape)}) needs "
                         f"{need} bytes, its data_offsets {offsets} give "
                         f"{offsets[1] - offsets[0]}")
    return {"dtype": dtype, "shape": tuple(shape), "data_offsets": tuple(offsets)}


def load(path) -> "OrderedDict[str, Tensor]":
    """The tensors of a safetensors file by name, on the numpy backend, in file order;
    ``net.load_state_dict(tinyalex.load(path))`` puts them into a network."""
    entries = read_header(path)
    from safetensors import SafetensorError
    from safetensors.numpy import load_file
    try:
        arrays = load_file(str(path))
    except (SafetensorError, TypeError, ValueError) as exc:
        raise ValueError(f"{path}: the safetensors package could not read it ({exc})") from None
    return OrderedDict((name, Tensor(np.array(arrays[name]))) for name in entries)


# --------------------------------------------------------------------------------------
# A whole network from a file (examples/evaluate.py, examples/visualize.py)
# --------------------------------------------------------------------------------------

# what tells the two architectures apart: the first convolution's weight
FIRST_CONV = {"lenet": (6, 1, 5, 5), "alexnet": (96, 1, 11, 11)}
PREFIX = "net."     # d2l 1.0's Classifier keeps its layers in self.net


def model_from_file(path, backend: str = "numpy"):
    """``(network, name)``: d2l's LeNet or AlexNet with the weights of a safetensors
    file, on ``backend``, in eval mode. The architecture is recognised by its first
    convolution's shape; names may carry d2l 1.0's ``net.`` prefix. Every entry must
    be a floating-point weight of the network's shape, or the ValueError says which
    entry differs, how, and what was expected."""
    from .recipes import build_model
    from . import random as R
    B.check_backend_name(backend)
    entries = read_header(path)
    strip = bool(entries) and all(name.startswith(PREFIX) for name in entries)
    shapes = {(name[len(PREFIX):] if strip else name): e["shape"]
              for name, e in entries.items()}
    found = [m for m, shape in FIRST_CONV.items() if shapes.get("0.weight") == shape]
    if not found:
        expected = "; ".join(f"{m}: {s}" for m, s in FIRST_CONV.items())
        raise ValueError(f"{path}: entry '0.weight' has shape {shapes.get('0.weight')} "
                         f"(None: absent), which is neither d2l network's first "
                         f"convolution ({expected}); entries: {list(entries)[:6]}")
    for name, e in entries.items():
        if e["dtype"] not in FLOAT_DTYPES:
            raise ValueError(f"{path}: entry {name!r} has dtype {e['dtype']}, expected a "
                             f"floating-point weight ({', '.join(FLOAT_DTYPES)}; F32 as "
                             "tinyalex and PyTorch save them)")
    name = found[0]
    state = R.get_rng_state()           # building draws initial weights: leave the
    try:                                # caller's random stream as it was
        net = build_model(name)
    finally:
        R.set_rng_state(state)
    tensors = load(path)
    try:
        net.load_state_dict(OrderedDict(((k[len(PREFIX):] if strip else k), v)
                                        for k, v in tensors.items()))
    except ValueError as exc:
        raise ValueError(f"{path}: {exc}") from None
    net.to(backend)
    net.eval()
    return net, name
