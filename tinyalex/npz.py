"""Reading a checkpoint's .npz archive as data, never as code.

``read_entries(path)`` returns every entry as a plain NumPy array. Each entry's .npy
header is read and checked before its data: an entry must be .npy, hold numbers or
text (an entry of Python objects would be a pickle, i.e. code to run, and is refused
without being read), and its header must agree with the bytes present (so a header
claiming 10**12 floats cannot make NumPy allocate them). The data is then read with
``allow_pickle=False``. Any problem raises ``Refused`` (a ValueError) naming the file.
"""

from __future__ import annotations

import io
import pickletools
import zipfile

import numpy as np

from .checks import format_bytes, memory_limit


class Refused(ValueError):
    """A file that is not a plain-data checkpoint archive."""


def _refuse(path, problem):
    raise Refused(f"checkpoint {path}: {problem}")


_NPY_MAGIC = b"\x93NUMPY"
# What a .npz entry may hold: floats (weights, momentum), ints and bools, and unicode
# text (the JSON entries). Never Python objects: those are pickles, i.e. code.
_ENTRY_KINDS = "fiubU"


def is_pickle(path, limit: int = 1 << 20) -> bool:
    """Whether the file is a Python pickle, read as the pickle protocol's opcodes by
    ``pickletools`` (which decodes them and never runs anything): the first ``limit``
    bytes must be a sequence of valid opcodes that keeps the pickle machine's stack
    consistent and ends with STOP, or, for a longer file, a protocol 2-5 pickle whose
    opcodes are valid up to ``limit``. Text or random bytes that merely start like a
    pickle (``(``, ``]``, ``}``, ``c``, 0x80) are not one."""
    with open(path, "rb") as f:
        data = f.read(limit)
    try:
        pickletools.dis(data, out=io.StringIO())
        return True
    except Exception:     # noqa: BLE001 -- any complaint of the decoder: not a whole pickle
        pass
    if len(data) < limit or data[:1] != b"\x80" or data[1:2] not in (b"\x02", b"\x03",
                                                                   b"\x04", b"\x05"):
        return False
    try:                  # a large pickle cut at ``limit``: its opcodes up to there
        for _ in pickletools.genops(data):
            pass
    except ValueError as exc:
        return any(w in str(exc) for w in ("exhausted", "not enough data", "remain"))
    return True


def _not_a_zip(path) -> None:
    """Say what a file that is not a zip archive is, and refuse it."""
    with open(path, "rb") as f:
        head = f.read(8)
    if head.startswith(_NPY_MAGIC):
        _refuse(path, "holds a single array (.npy), not a tinyalex checkpoint (.npz archive)")
    if is_pickle(path):
        _refuse(path, "is a Python pickle; checkpoints are plain arrays and tinyalex never "
                    "unpickles anything (refused, nothing was executed)")
    _refuse(path, "not a readable .npz file (not a zip archive); it may be truncated or "
                "not a tinyalex checkpoint")


def _entry_header(path, zf, info):
    """(key, shape, dtype) of one archive entry, read from its .npy header alone, so
    that nothing is allocated or unpickled before the entry is known to be plain data."""
    name = info.filename
    if not name.endswith(".npy"):
        _refuse(path, f"entry {name!r} is not a NumPy array (.npy); refused")
    key = name[:-len(".npy")]
    with zf.open(info) as f:
        if f.read(len(_NPY_MAGIC)) != _NPY_MAGIC:
            _refuse(path, f"entry {key!r} is not in NumPy's .npy format (it may be a pickle); "
                        "refused, nothing was executed")
        f.seek(0)
        version = np.lib.format.read_magic(f)
        if version == (1, 0):
            shape, _, dtype = np.lib.format.read_array_header_1_0(f)
        elif version == (2, 0):
            shape, _, dtype = np.lib.format.read_array_header_2_0(f)
        else:
            _refuse(path, f"entry {key!r} uses .npy format {version}, which tinyalex does "
                        "not write")
        header_len = f.tell()
    if dtype.hasobject:
        _refuse(path, f"entry {key!r} holds Python objects (dtype {dtype}): that would "
                    "mean unpickling, i.e. running code from the file; checkpoints hold "
                    "plain numbers and text only (refused, nothing was executed)")
    if dtype.kind not in _ENTRY_KINDS or dtype.fields is not None:
        _refuse(path, f"entry {key!r} has dtype {dtype}; checkpoints hold floats, ints and "
                    "text only")
    count = 1
    for n in shape:
        count *= int(n)
    if count * dtype.itemsize != info.file_size - header_len:
        _refuse(path, f"entry {key!r}: its header says shape {shape} of {dtype} "
                    f"({count * dtype.itemsize} bytes) but it holds "
                    f"{info.file_size - header_len} bytes; the file is damaged")
    return key, shape, dtype


def read_entries(path) -> dict:
    """Every entry of the archive as a plain array, checked before it is read."""
    try:
        zf = zipfile.ZipFile(path)
    except zipfile.BadZipFile:
        _not_a_zip(path)
    except OSError as exc:
        _refuse(path, f"cannot be read ({exc})")
    except Exception as exc:      # zipfile parses untrusted bytes: any failure is damage
        _refuse(path, f"not a readable .npz file ({type(exc).__name__}: {exc}); it may be "
                    "truncated or damaged")
    arrays = {}
    with zf:
        infos = zf.infolist()
        total = sum(i.file_size for i in infos)
        if total > memory_limit():
            _refuse(path, f"its entries would take {format_bytes(total)}, more than this "
                        "machine's memory; not a tinyalex checkpoint")
        try:
            for info in infos:
                key, _, _ = _entry_header(path, zf, info)
                if key in arrays:
                    _refuse(path, f"entry {key!r} appears twice")
                with zf.open(info) as f:
                    arrays[key] = np.lib.format.read_array(f, allow_pickle=False)
        except Exception as exc:  # zipfile and NumPy parse untrusted bytes: any failure
            if isinstance(exc, Refused):
                raise             # one of ours, already saying what is wrong
            _refuse(path, f"an entry cannot be read ({type(exc).__name__}: {exc}); the file "
                        "is damaged")
    return arrays
