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

# setup.cfg's extras, one per CUDA major version: CuPy for that CUDA with the NVIDIA
# wheels it needs to compile (NVRTC, and the CUDA headers of cuda-runtime that CuPy's
# own kernels include) and to multiply (cuBLAS). tinyalex is not on the package index:
# the extras install from a checkout.
CUDA_EXTRAS = {12: "cuda12", 13: "cuda13"}


def install_hint(major: int | None = None) -> str:
    """The command that installs the GPU backend, run from a checkout of tinyalex;
    ``major``: the CUDA major version of an installed CuPy (or of the driver)."""
    if major in CUDA_EXTRAS:
        return f"`pip install -e '.[{CUDA_EXTRAS[major]}]'` in the tinyalex checkout"
    return ("`pip install -e '.[cuda13]'` in the tinyalex checkout (for a CUDA 13 "
            "driver, R580 or newer; `.[cuda12]` for a CUDA 12 driver)")


def parts_hint(major: int) -> str:
    """The command that adds NVRTC, the CUDA headers and cuBLAS to an installed CuPy
    for CUDA ``major`` (the wheels CuPy's own ``[ctk]`` extra brings, less the
    libraries tinyalex does not call)."""
    return f"`pip install 'cuda-toolkit[nvrtc,cudart,cublas]=={major}.*'`"


def cupy_missing_parts(cupy) -> list[str]:
    """What an imported CuPy lacks to compile tinyalex's kernels and multiply, each
    as "<part> (<why>)"; empty when nothing is missing. Needs no GPU: NVRTC is loaded
    (its version asked), cuBLAS's library is loaded, and the CUDA headers CuPy's own
    kernels include (cuda_fp16.h) are looked for where CuPy looks."""
    import importlib  # noqa: PLC0415
    import os  # noqa: PLC0415
    missing = []
    try:
        cupy.cuda.nvrtc.getVersion()
    except Exception as exc:  # noqa: BLE001 - DynamicLibNotFoundError, OSError, ...
        missing.append(f"NVRTC, the CUDA compiler library ({_first_line(exc)})")
    try:
        importlib.import_module("cupy_backends.cuda.libs.cublas")
    except Exception as exc:  # noqa: BLE001 - ImportError naming the missing .so
        missing.append(f"cuBLAS ({_first_line(exc)})")
    folders = []
    try:
        from cuda import pathfinder  # noqa: PLC0415 - CuPy 14's library finder
        folders.append(pathfinder.find_nvidia_header_directory("cudart"))
    except Exception:  # noqa: BLE001 - an older CuPy without cuda-pathfinder
        pass
    try:
        root = cupy.cuda.get_cuda_path()
        folders.append(os.path.join(root, "include") if root else None)
    except Exception:  # noqa: BLE001
        pass
    if not any(f and os.path.isfile(os.path.join(f, "cuda_fp16.h")) for f in folders):
        missing.append("the CUDA headers (cuda_fp16.h, from the cuda-runtime wheel or a "
                       "CUDA toolkit) that CuPy compiles its own kernels with")
    return missing


def _first_line(exc) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}"


def cupy_cuda_major(cupy) -> int | None:
    """The CUDA major version CuPy was built for (12 for cupy-cuda12x)."""
    try:
        return int(cupy.cuda.runtime.runtimeGetVersion()) // 1000
    except Exception:  # noqa: BLE001
        return None


def _load_cupy():
    """Import CuPy, check that it can compile and multiply (NVRTC, the CUDA headers,
    cuBLAS) and that a GPU is usable; remember the outcome (``_cupy_error`` says every
    missing part and the command that installs it)."""
    global _cupy, _cupy_error
    if _cupy is not None or _cupy_error is not None:
        return _cupy
    try:
        import cupy  # noqa: PLC0415 - the only import of cupy in tinyalex
    except Exception as exc:  # noqa: BLE001 - ImportError, a broken install, ...
        _cupy_error = f"CuPy is not installed ({_first_line(exc)}); {install_hint()}"
        return None
    problems = []
    major = cupy_cuda_major(cupy)
    missing = cupy_missing_parts(cupy)
    if missing:
        fix = parts_hint(major) if major in CUDA_EXTRAS else install_hint()
        problems.append(f"CuPy {cupy.__version__} (for CUDA {major}) is missing "
                        f"{'; '.join(missing)}; {fix} adds them (or "
                        f"{install_hint(major)})")
    try:
        n = cupy.cuda.runtime.getDeviceCount()
        if n < 1:
            problems.append("CuPy found no CUDA device")
    except Exception as exc:  # noqa: BLE001 - CUDA driver errors, ...
        why = f"no usable GPU ({_first_line(exc)})"
        if "InsufficientDriver" in str(exc) and major == 13:
            why += ("; no NVIDIA driver, or one older than CUDA 13 needs (R580): with an "
                    f"R525 or newer driver {install_hint(12)} (CuPy for CUDA 12) works")
        problems.append(why)
    if problems:
        _cupy_error = "; ".join(problems)
    else:
        _cupy = cupy
    return _cupy


def cupy_available() -> bool:
    """True when CuPy imports, can compile and multiply, and sees a CUDA GPU."""
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
            f"({_cupy_error}); the GPU backend installs with {install_hint()}; or use "
            "backend 'numpy'")
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
