"""The one place in tinyalex that knows about CuPy.

A tensor's array lives on a *backend*: ``"numpy"`` (host memory, the CPU) or
``"cupy"`` (device memory, a CUDA GPU). Ops never import CuPy; they ask this module
for the array module (``xp``) of their inputs, as Chainer does::

    xp = get_array_module(x)        # numpy or cupy
    y = xp.maximum(x, 0)

Importing tinyalex never imports CuPy: it is loaded the first time something asks
for the ``"cupy"`` backend.
"""

from __future__ import annotations

import numpy as np

BACKENDS = ("numpy", "cupy")

_cupy = None          # the cupy module once imported successfully
_cupy_error = None    # why it could not be used, once we tried


def _load_cupy():
    """Import CuPy and check that a GPU is usable; remember the outcome."""
    global _cupy, _cupy_error
    if _cupy is not None or _cupy_error is not None:
        return _cupy
    try:
        import cupy  # noqa: PLC0415 - the only import of cupy in tinyalex
        n = cupy.cuda.runtime.getDeviceCount()
        if n < 1:
            raise RuntimeError("CuPy found no CUDA device")
        _cupy = cupy
    except Exception as exc:  # ImportError, CUDA driver errors, ...
        _cupy_error = f"{type(exc).__name__}: {exc}"
    return _cupy


def cupy_available() -> bool:
    """True when CuPy imports and sees at least one CUDA GPU."""
    return _load_cupy() is not None


def cupy_unavailable_reason() -> str:
    """Why the cupy backend cannot be used (empty string when it can)."""
    _load_cupy()
    return "" if _cupy is not None else (_cupy_error or "unknown")


def cupy_module():
    """The cupy module, or a clear RuntimeError when no GPU backend is usable."""
    cp = _load_cupy()
    if cp is None:
        raise RuntimeError(
            "the 'cupy' backend needs CuPy and a CUDA GPU, but it is not usable here "
            f"({_cupy_error}); install the extra with `pip install tinyalex[cupy]` "
            "or use backend 'numpy'")
    return cp


def cupy_submodule(name: str):
    """A submodule of CuPy (e.g. ``"_core._routines_linalg"``), imported here so that
    this file stays the only one that imports CuPy."""
    import importlib  # noqa: PLC0415
    cupy_module()
    return importlib.import_module(f"cupy.{name}")


def default_backend() -> str:
    """``"cupy"`` when a GPU is usable, else ``"numpy"``."""
    return "cupy" if cupy_available() else "numpy"


def is_cupy_array(array) -> bool:
    # Decided by the type's module, so that no cupy import is needed to answer "no".
    return type(array).__module__.startswith("cupy")


def backend_of(array) -> str:
    """The backend name of one array: ``"numpy"`` or ``"cupy"``."""
    return "cupy" if is_cupy_array(array) else "numpy"


def get_array_module(*arrays):
    """The array module (numpy or cupy) of the given arrays.

    All arrays must live on the same backend; mixing raises a TypeError that says
    which backends were seen.
    """
    names = {backend_of(a) for a in arrays if a is not None}
    if len(names) > 1:
        raise TypeError(f"arrays live on different backends {sorted(names)}; move them "
                        "to one backend first with .to('numpy') or .to('cupy')")
    if names == {"cupy"}:
        return cupy_module()
    return np


def xp_of(name: str):
    """The array module for a backend name."""
    check_backend_name(name)
    return cupy_module() if name == "cupy" else np


def check_backend_name(name) -> str:
    if name not in BACKENDS:
        raise ValueError(f"unknown backend {name!r}; expected one of {BACKENDS}")
    return name


def to_backend(array, name: str):
    """Copy ``array`` to backend ``name`` (no copy when it already lives there)."""
    check_backend_name(name)
    if backend_of(array) == name:
        return array
    if name == "numpy":
        return array.get()
    return cupy_module().asarray(array)


def to_numpy(array) -> np.ndarray:
    """A host NumPy array with the same values (a copy for device arrays)."""
    return array.get() if is_cupy_array(array) else np.asarray(array)


def data_pointer(array) -> int:
    """The address of an array's first element, in host or device memory."""
    if is_cupy_array(array):
        return int(array.data.ptr)
    return int(array.__array_interface__["data"][0])


def synchronize(name: str) -> None:
    """Wait for queued GPU work (a no-op on the numpy backend); for honest timing."""
    if name == "cupy":
        cupy_module().cuda.get_current_stream().synchronize()


def scatter_add(target, index, values) -> None:
    """``target[index] += values`` with repeated indices summed (NumPy's ``add.at``)."""
    if is_cupy_array(target):
        import cupyx  # noqa: PLC0415 - part of CuPy, loaded only for device arrays
        cupyx.scatter_add(target, index, values)
    else:
        np.add.at(target, index, values)
