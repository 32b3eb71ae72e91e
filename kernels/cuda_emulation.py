"""The CUDA C kernels of ``kernels/cuda/`` on the CPU, for the tests: g++ builds the
very sources against ``kernels/cuda/emulate.h`` into a shared library, loaded with
ctypes, and runs them thread by thread over NumPy arrays.

* ``build_emulation_library(tmpdir)``: the library (RuntimeError with g++'s output if it
  fails);
* ``EmulatedModule``: the part of ``cupy.RawModule``'s interface a launch uses
  (``get_function(name)(grid, block, args)``);
* ``EmulatedModules``: a module provider (``cuda_launch.ModuleProvider``) of it, which
  the tests give to the very algorithm classes the GPU runs, so that the Python launch
  code (plans, grids, argument packing, memory orders) is exercised without a GPU.

Not on the GPU's path: ``cuda_launch.py`` holds what the GPU runs.
"""

from __future__ import annotations

import ctypes
import shutil
import subprocess
from pathlib import Path

import numpy as np

from .cuda_launch import CUDA_DIR, SCALAR_TYPES, SOURCES, ModuleProvider, source_path

CXX_FLAGS = ("-x", "c++", "-std=c++17", "-O1", "-shared", "-fPIC", "-ffp-contract=off",
             "-Wall", "-Wextra", "-Wno-unknown-pragmas")


def cxx_path() -> str | None:
    return shutil.which("g++")


def build_emulation_library(tmpdir, sources=SOURCES) -> ctypes.CDLL:
    """g++ builds the sources against emulate.h into ``<tmpdir>/libtinyalex_cuda_emu.so``;
    raises RuntimeError with the compiler's output if it fails."""
    cxx = cxx_path()
    if cxx is None:
        raise RuntimeError("g++ is not on PATH (needed to build the CPU emulation)")
    out = Path(tmpdir) / "libtinyalex_cuda_emu.so"
    cmd = [cxx, *CXX_FLAGS, "-I", str(CUDA_DIR), *(str(source_path(s)) for s in sources),
           "-o", str(out)]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    if done.returncode != 0:
        raise RuntimeError(f"g++ failed to build the CUDA emulation:\n"
                           f"{(done.stdout + done.stderr)[-4000:]}")
    return ctypes.CDLL(str(out))


class EmulatedKernel:
    """One kernel of the emulation library, called as a ``cupy.RawKernel`` is:
    ``kernel((grid,), (block,), args)``. Every argument must match the parameter's
    C type exactly (an array for a pointer, or ``np.uint64(0)`` for a null one; a NumPy
    scalar of the very dtype otherwise), since CuPy would pass anything else with the
    wrong size."""

    def __init__(self, lib: ctypes.CDLL, name: str):
        try:
            self._run = getattr(lib, f"emu_{name}")
            signature = getattr(lib, f"emu_sig_{name}")
            source_file = getattr(lib, f"emu_file_{name}")
        except AttributeError:
            raise ValueError(f"the CUDA emulation has no kernel {name!r}") from None
        self._run.argtypes = [ctypes.c_uint, ctypes.c_uint, ctypes.POINTER(ctypes.c_void_p)]
        self._run.restype = None
        signature.restype = source_file.restype = ctypes.c_char_p
        self.name, self.signature = name, signature().decode()
        self.source = Path(source_file().decode()).stem       # the .cu file defining it

    def __call__(self, grid, block, args, shared_mem=0):
        if len(grid) != 1 or len(block) != 1 or shared_mem:
            raise ValueError(f"{self.name}: the emulation runs 1-D launches without shared "
                             f"memory, got grid {grid}, block {block}, shared_mem {shared_mem}")
        if len(args) != len(self.signature):
            raise TypeError(f"{self.name}: {len(self.signature)} arguments "
                            f"({self.signature}) expected, got {len(args)}")
        values = [self._value(i, letter, a) for i, (letter, a) in
                  enumerate(zip(self.signature, args))]
        pointers = (ctypes.c_void_p * len(values))(
            *(ctypes.cast(ctypes.pointer(v), ctypes.c_void_p) for v in values))
        self._run(int(grid[0]), int(block[0]), pointers)

    def _value(self, i, letter, a):
        if letter == "p":
            if isinstance(a, np.ndarray):
                return ctypes.c_void_p(a.ctypes.data)
            if isinstance(a, np.uint64) and a == 0:
                return ctypes.c_void_p(0)
            raise TypeError(f"{self.name}: argument {i} is a pointer; expected a NumPy "
                            f"array, got {type(a).__name__}")
        want = SCALAR_TYPES[letter]
        if type(a) is not want:
            raise TypeError(f"{self.name}: argument {i} must be {want.__name__}, got "
                            f"{type(a).__name__} {a!r}")
        return np.ctypeslib.as_ctypes_type(np.dtype(want))(a.item())


class EmulatedModule:
    """The emulation library with ``cupy.RawModule``'s ``get_function``: every kernel
    of every source, or with ``source`` only that source's kernels (a
    ``cupy.RawModule`` of one source has no other, and says so)."""

    def __init__(self, lib: ctypes.CDLL, source: str | None = None):
        self.lib, self.source, self._kernels = lib, source, {}

    def get_function(self, name: str) -> EmulatedKernel:
        if name not in self._kernels:
            kernel = EmulatedKernel(self.lib, name)
            if self.source is not None and kernel.source != self.source:
                raise ValueError(f"{self.source}.cu defines no kernel {name!r} (it is in "
                                 f"{kernel.source}.cu); cupy.RawModule would not find it")
            self._kernels[name] = kernel
        return self._kernels[name]

    def of_source(self, source: str) -> "EmulatedModule":
        """The kernels of one source alone, as ``cupy.RawModule`` of that file has them."""
        source_path(source)                     # a ValueError naming the sources if unknown
        return EmulatedModule(self.lib, source)


def emulated_module(tmpdir) -> EmulatedModule:
    return EmulatedModule(build_emulation_library(tmpdir))


class EmulatedModules(ModuleProvider):
    """The g++ emulation of every source (one library holds them all)."""

    name = "g++ emulation (CPU)"

    def __init__(self, emulated_module):
        super().__init__()
        self.emulated = emulated_module
        self._modules = {}

    def module(self, source: str):
        """The kernels ``source`` defines, and no other (a plan naming the wrong source
        fails here as ``cupy.RawModule.get_function`` fails on the GPU)."""
        if source not in self._modules:
            self._modules[source] = self.emulated.of_source(source)
        return self._modules[source]
