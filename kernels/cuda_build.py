"""Building the CUDA C sources of ``kernels/cuda/``: for the GPU, and for the CPU tests.

* ``SOURCES``: one file per op family (im2col, pool, elementwise); ``module_code(name)``
  is the source with ``common.cuh`` written into it, so that the code alone says
  everything the binary holds (the kernel cache keys a binary on it).
* ``compile_with_nvrtc(nvrtc, source, arch)``: NVRTC (CuPy's binding,
  ``cupy.cuda.nvrtc``, passed in) compiles ``module_code(source)`` with
  ``nvrtc_options(arch)`` to a cubin (``sm_XX``) or PTX (``compute_XX``), with
  ptxas's report of registers and spills; ``kernels/gpu_modules.py`` loads the binary
  with ``cupy.RawModule(path=...)``. We call NVRTC ourselves rather than give CuPy
  the code (``cupy.RawModule(code=...)``) because CuPy appends ``-ftz=true`` after the
  caller's options, which flushes every float32 subnormal to zero (NVRTC honours the
  last flag given); our options say ``--ftz=false``, so float32 kernels keep IEEE
  subnormals as the CPU does. ``tests/gpu/test_cuda_sources.py`` runs it with the real
  NVRTC wheel for sm_80 and sm_90 (no GPU needed): every planned kernel in the PTX with
  the parameters the plan packs, no ``.ftz`` in it, and ptxas's registers and spills.
* ``build_emulation_library(tmpdir)``: the same sources compiled by g++ against
  ``kernels/cuda/emulate.h`` into a shared library, loaded with ctypes;
  ``EmulatedModule`` wraps it in the part of ``cupy.RawModule``'s interface that
  ``cuda_plan.launch`` uses (``get_function(name)(grid, block, args)``), so one launch
  path runs the kernels on the GPU or, thread by thread, on the CPU.

Nothing here imports CuPy; the emulated kernels take NumPy arrays.
"""

from __future__ import annotations

import ctypes
import re
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .cuda_plan import SCALAR_TYPES

CUDA_DIR = Path(__file__).resolve().with_name("cuda")
SOURCES = ("im2col", "pool", "elementwise")          # kernels/cuda/<name>.cu
HEADERS = ("common.cuh", "emulate.h")
ARCHS = ("sm_80", "sm_90")                           # A100, H100/H200
CXX_FLAGS = ("-x", "c++", "-std=c++17", "-O1", "-shared", "-fPIC", "-ffp-contract=off",
             "-Wall", "-Wextra", "-Wno-unknown-pragmas")


def source_path(name: str) -> Path:
    if name not in SOURCES:
        raise ValueError(f"no CUDA source {name!r}; the sources are {SOURCES}")
    return CUDA_DIR / f"{name}.cu"


def source_text(name: str) -> str:
    """The code of one source as the file holds it."""
    return source_path(name).read_text()


_INCLUDE_COMMON = re.compile(r'^[ \t]*#[ \t]*include[ \t]*"common\.cuh"[ \t]*$', re.M)


def module_code(name: str) -> str:
    """The code of one source with ``common.cuh`` in place of its ``#include`` line:
    what NVRTC compiles (``compile_with_nvrtc``), so that the code alone (the kernel
    cache's key) says everything the binary holds. (common.cuh includes emulate.h only
    for host compilers; NVRTC skips that branch.)"""
    text = source_text(name)
    common = (CUDA_DIR / "common.cuh").read_text()
    if len(_INCLUDE_COMMON.findall(text)) != 1:
        raise ValueError(f"{name}.cu must include common.cuh exactly once")
    return _INCLUDE_COMMON.sub(lambda _: f"// ---- common.cuh, inlined ----\n{common}"
                               f"// ---- end of common.cuh ----", text, count=1)


# IEEE float32 everywhere: subnormals kept (--ftz=false; CuPy's own compile path would
# append -ftz=true), division and square root correctly rounded. fmad stays on (NVRTC's
# default, as nvcc's); the kernels use the _rn intrinsics where fusing would change a
# result the CPU reference computes.
NVRTC_FLAGS = ("--std=c++17", "--ftz=false", "--prec-div=true", "--prec-sqrt=true")


def nvrtc_options(arch: str) -> tuple[str, ...]:
    """NVRTC's options for one target: ``sm_XX`` (a cubin for that GPU) or
    ``compute_XX`` (PTX, which the driver compiles for a newer GPU)."""
    if not re.fullmatch(r"(sm|compute)_\d+", arch):
        raise ValueError(f"arch must look like 'sm_90' or 'compute_90', got {arch!r}")
    return (f"-I{CUDA_DIR}", *NVRTC_FLAGS, f"--gpu-architecture={arch}")


# -- NVRTC: the kernels as tinyalex's GPU path builds them -------------------------------------

@dataclass(frozen=True)
class NvrtcBuild:
    source: str
    arch: str
    binary: bytes            # a cubin for sm_XX, PTX for compute_XX
    ptx: str                 # the PTX NVRTC generated (its entry points, parameters)
    log: str                 # NVRTC's log (ptxas's report with ``report=True``)
    seconds: float

    @property
    def suffix(self) -> str:
        return ".cubin" if self.arch.startswith("sm_") else ".ptx"

    def kernels(self) -> dict:
        """kernel name -> KernelResources (registers, stack, spills), from ptxas."""
        return parse_ptxas_report(self.log)

    def spilling(self) -> dict:
        """The kernels that spill to local memory (none should)."""
        return {k: r for k, r in self.kernels().items() if r.spill_stores or r.spill_loads}

    def entries(self) -> dict:
        """kernel name -> its parameters' sizes in bytes, from the PTX."""
        return parse_ptx_entries(self.ptx)


@dataclass(frozen=True)
class KernelResources:
    registers: int
    stack_bytes: int
    spill_stores: int
    spill_loads: int


_PROPERTIES = re.compile(r"Function properties for (\w+)\s*\n(?:ptxas)?[\s.]*(\d+) bytes "
                         r"stack frame, (\d+) bytes spill stores, (\d+) bytes spill loads")
_REGISTERS = re.compile(r"Compiling entry function '(\w+)'.*?Used (\d+) registers", re.S)


def parse_ptxas_report(text: str) -> dict:
    """kernel name -> KernelResources, from ptxas's ``-v`` report (nvcc's or
    NVRTC's log, which prefixes each line with ``ptxas``)."""
    registers = {}
    for block in text.split("Compiling entry function")[1:]:
        m = _REGISTERS.search("Compiling entry function" + block)
        if m:
            registers[m.group(1)] = int(m.group(2))
    kernels = {}
    for name, stack, stores, loads in _PROPERTIES.findall(text):
        if name in registers:
            kernels[name] = KernelResources(registers[name], int(stack), int(stores),
                                            int(loads))
    return kernels


_ENTRY = re.compile(r"\.entry\s+(\w+)\s*\(([^)]*)\)", re.S)
_PARAM = re.compile(r"\.param\s+\.(?:align\s+\d+\s+\.)?[busf](8|16|32|64)\s+\w+")


def parse_ptx_entries(ptx: str) -> dict:
    """kernel name -> tuple of its parameters' sizes in bytes (``.param .u64 x`` is 8),
    for every ``.entry`` of a PTX text."""
    return {name: tuple(int(bits) // 8 for bits in _PARAM.findall(params))
            for name, params in _ENTRY.findall(ptx)}


def compile_with_nvrtc(nvrtc, source: str, arch: str, report: bool = False) -> NvrtcBuild:
    """NVRTC compiles ``module_code(source)`` with ``nvrtc_options(arch)``; ``nvrtc`` is
    CuPy's binding (``cupy.cuda.nvrtc``: createProgram, compileProgram, getCUBIN, getPTX,
    getProgramLog, destroyProgram). ``report``: ptxas's register and spill report in
    the log (``sm_XX`` only). RuntimeError with NVRTC's log if it fails."""
    options = nvrtc_options(arch)
    if report and arch.startswith("sm_"):
        options += ("--ptxas-options=-v",)
    start = time.perf_counter()
    program = nvrtc.createProgram(module_code(source), f"{source}.cu", (), ())
    try:
        try:
            nvrtc.compileProgram(program, options)
        except Exception as exc:             # NVRTCError: the log says why
            raise RuntimeError(f"NVRTC failed on {source}.cu for {arch} ({exc}):\n"
                               f"{nvrtc.getProgramLog(program)[-4000:]}") from None
        ptx = nvrtc.getPTX(program)
        binary = nvrtc.getCUBIN(program) if arch.startswith("sm_") else ptx
        log = nvrtc.getProgramLog(program)
    finally:
        nvrtc.destroyProgram(program)
    ptx_text = ptx.decode() if isinstance(ptx, bytes) else ptx
    binary = binary.encode() if isinstance(binary, str) else binary
    log = log.decode() if isinstance(log, bytes) else log
    return NvrtcBuild(source, arch, binary, ptx_text.rstrip("\x00"), log,
                      time.perf_counter() - start)


def target_arch(compute_capability: str, supported) -> str:
    """What to build for a GPU of ``compute_capability`` (``"90"``) with an NVRTC that
    knows the ``supported`` architectures (``nvrtc.getSupportedArchs()``): its own cubin
    where NVRTC knows it, else PTX for the newest architecture below it (the driver
    compiles that for the GPU)."""
    cc, known = int(compute_capability), sorted(int(a) for a in supported)
    if cc in known:
        return f"sm_{cc}"
    below = [a for a in known if a < cc]
    if not below:
        raise RuntimeError(f"this NVRTC cannot build for compute capability {cc} (it "
                           f"knows {known}); tinyalex's kernels need sm_{known[0]} or newer")
    return f"compute_{below[-1]}"


# -- g++: the same kernels on the CPU -------------------------------------------------------

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
