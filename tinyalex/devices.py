"""Devices with PyTorch's names: ``tinyalex.device("cpu" | "cuda" | "cuda:0")``.

A device is where a tensor's array lives, said the way PyTorch says it. Each one is a
tinyalex backend (``tinyalex/backend.py``):

    device          backend   arrays
    "cpu"           "numpy"   numpy.ndarray in host memory
    "cuda", "cuda:0" "cupy"   cupy.ndarray on the GPU (CuPy's current device)

    x = tinyalex.randn(2, 3).to(tinyalex.device("cuda"))   # as x.to("cupy")
    print(x.device)                                         # cuda:0
    x.device                                                # device(type='cuda', index=0)

Building a device only checks its spelling (as PyTorch, ``device("cuda:3")`` exists
on any machine); moving data to it (``backend_for``) checks that it is there. A
missing GPU is a ValueError that says what is missing (CuPy, a driver, a GPU) and
how to get it. tinyalex computes on one GPU, so ``cuda:N`` for N > 0 is refused even
where that GPU exists, with the reason.

Also here: ``device_name(backend)``, the processor a backend computes on, in words,
which metrics.json and the main script record beside every measured figure
(``"CPU: <model name>, <n> logical cores"``, or the GPU's name).
"""

from __future__ import annotations

import numbers
import os
import platform

from . import backend as B

DEVICE_TYPES = ("cpu", "cuda")
BACKEND_OF_TYPE = {"cpu": "numpy", "cuda": "cupy"}
SPELLINGS = "'cpu', 'cuda', 'cuda:N' or a tinyalex.device"


class device:  # noqa: N801 - PyTorch's name: tinyalex.device("cuda")
    """A device named as PyTorch names it: ``device("cpu")``, ``device("cuda:0")``,
    ``device("cuda", 0)`` or ``device(other_device)``.

    ``type`` is ``"cpu"`` or ``"cuda"``, ``index`` an int or None, ``backend`` the
    tinyalex backend that computes there. ``str()`` gives ``cpu`` / ``cuda:0``,
    ``repr()`` ``device(type='cpu')``, as PyTorch prints them.
    """

    __slots__ = ("type", "index")

    def __init__(self, spec, index=None):
        if isinstance(spec, device):
            if index is not None:
                raise TypeError(f"device: an index ({index!r}) beside a device "
                                f"({spec!r}); give one or the other")
            kind, idx = spec.type, spec.index
        elif isinstance(spec, str):
            kind, idx = _parse(spec)
            if index is not None:
                if idx is not None:
                    raise ValueError(f"device: {spec!r} already names index {idx}; got "
                                     f"index={index!r} as well")
                idx = _check_index(index, spec)
        else:
            raise TypeError(f"device: expected a string such as {SPELLINGS}, got "
                            f"{type(spec).__name__} {spec!r:.60}")
        if kind == "cpu" and idx not in (None, 0):
            raise ValueError(f"device: the cpu has no index {idx}; use 'cpu'")
        object.__setattr__(self, "type", kind)
        object.__setattr__(self, "index", None if kind == "cpu" else idx)

    def __setattr__(self, name, value):
        raise AttributeError("a device is immutable; build another one")

    @property
    def backend(self) -> str:
        """The tinyalex backend of this device: ``"numpy"`` or ``"cupy"``."""
        return BACKEND_OF_TYPE[self.type]

    def __str__(self) -> str:
        return self.type if self.index is None else f"{self.type}:{self.index}"

    def __repr__(self) -> str:
        if self.index is None:
            return f"device(type='{self.type}')"
        return f"device(type='{self.type}', index={self.index})"

    def __eq__(self, other):
        if not isinstance(other, device):
            return NotImplemented
        return (self.type, self.index) == (other.type, other.index)

    def __hash__(self):
        return hash((self.type, self.index))


def _check_index(index, spec) -> int:
    if isinstance(index, bool) or not isinstance(index, numbers.Integral) or index < 0:
        raise ValueError(f"device {spec!r}: the index must be an int >= 0, got {index!r}")
    return int(index)


def _parse(spec: str):
    kind, sep, rest = spec.partition(":")
    if kind not in DEVICE_TYPES:
        raise ValueError(f"unknown device {spec!r}; expected {SPELLINGS} (tinyalex "
                         f"computes on the cpu and on CUDA GPUs)")
    if not sep:
        return kind, None
    if not rest.isdigit():
        raise ValueError(f"device {spec!r}: after '{kind}:' comes the device index, an "
                         f"int >= 0 (e.g. '{kind}:0'), got {rest!r}")
    return kind, int(rest)


def of_backend(backend: str) -> device:
    """The device of a backend's arrays: cpu for numpy, cuda:0 for cupy."""
    B.check_backend_name(backend)
    return device("cpu") if backend == "numpy" else device("cuda", 0)


def cuda_device_count() -> int:
    """How many CUDA GPUs CuPy sees; 0 where CuPy or a GPU is missing."""
    if not B.cupy_available():
        return 0
    return int(B.cupy_module().cuda.runtime.getDeviceCount())


def cuda_missing(spec) -> str:
    """Why ``spec`` (a cuda device) cannot be used here, or "" when it can."""
    if not B.cupy_available():
        return (f"device {str(spec)!r}: no usable CUDA GPU here "
                f"({B.cupy_unavailable_reason()}); tinyalex's cuda device is its CuPy "
                "backend, which needs an NVIDIA GPU with its driver and CuPy for that "
                f"CUDA version ({B.install_hint()}); or use 'cpu'")
    count = cuda_device_count()
    index = spec.index if spec.index is not None else 0
    if index >= count:
        names = ", ".join(f"cuda:{i}" for i in range(count))
        return (f"device {str(spec)!r} does not exist: CuPy sees {count} CUDA "
                f"device(s) ({names})")
    if index != 0:
        return (f"device {str(spec)!r}: tinyalex computes on one GPU, cuda:0 (CuPy's "
                "current device); choose it with CUDA_VISIBLE_DEVICES="
                f"{index} and use 'cuda'")
    return ""


def backend_for(target, where: str) -> str:
    """The backend that ``target`` names: a device, ``"cpu"``, ``"cuda"``, ``"cuda:N"``,
    or a backend name (``"numpy"``, ``"cupy"``). A cuda device that is not usable here
    is a ValueError saying what is missing; "cupy" keeps the backend's own error."""
    if isinstance(target, str) and target in B.BACKENDS:
        return target
    if not isinstance(target, (str, device)):
        raise TypeError(f"{where}: expected a device ({SPELLINGS}) or a backend name "
                        f"{B.BACKENDS}, got {type(target).__name__} {target!r:.60}")
    if isinstance(target, str):
        kind = target.partition(":")[0]
        if kind not in DEVICE_TYPES:
            raise ValueError(f"{where}: unknown backend {target!r}; expected one of "
                             f"{B.BACKENDS} or a device: {SPELLINGS}")
    dev = device(target)
    if dev.type == "cuda":
        problem = cuda_missing(dev)
        if problem:
            raise ValueError(f"{where}: {problem}")
    return dev.backend


def default_device() -> device:
    """cuda:0 when a GPU is usable, else cpu (d2l's ``try_gpu()``)."""
    return device("cuda", 0) if cuda_device_count() >= 1 else device("cpu")


def device_name(backend: str) -> str:
    """The processor ``backend`` computes on, in words (for metrics.json)."""
    if backend == "cupy":
        cp = B.cupy_module()
        dev = cp.cuda.Device()
        name = cp.cuda.runtime.getDeviceProperties(dev.id)["name"]
        return f"GPU {dev.id}: {name.decode() if isinstance(name, bytes) else name}"
    model = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return f"CPU: {model}, {os.cpu_count()} logical cores"
