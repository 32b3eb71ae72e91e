"""The CUDA C kernels of ``kernels/cuda/`` as a service the GPU algorithms call: the
shared parts of a launch plan, the NVRTC build and its cache, and the launch.

A GPU op is its algorithm file (the op's launch plans and its host code:
``conv_im2col_gpu.py``, ``pool_gpu.py``, ``elementwise_gpu.py``), its ``.cu`` file and
``common.cuh``. What they share is here, called as a library is::

    plan = conv_im2col_gpu.im2col(g, x.dtype)      # g: the layer's ConvGeometry
    modules.launch(plan, x=x, cols=cols)
    # = the kernel plan.kernel of kernels/cuda/<plan.source>.cu, called as
    #   cupy.RawKernel is: kernel((plan.grid,), (plan.block,), plan.args(x=x, cols=cols))

A plan (``Plan``, built by an op with ``Params`` and ``make_plan``; letters as in the
Notation of ``tinyalex/ops/im2col.py``) says everything the host decides about one
launch, from sizes alone (a window op's from its validated geometry, trusted):

* which kernel: the ``extern "C"`` name, e.g. ``im2col_nhwc_f32_i32`` (family, memory
  order, dtype, index type), and ``source``, the file that holds it;
* the index type: 32-bit where no index can pass 2**31 - 1 (checked here, counting
  the grid-stride loop's last step), else the 64-bit variant (``index_bits``);
* ``grid`` and ``block`` (1-D; the kernels are grid-stride loops, so any grid gives
  the same result, and ``max_blocks`` only bounds it);
* the arguments in the order of the kernel's parameter list, scalars as NumPy scalars
  of the parameter's C type (CuPy passes a NumPy scalar with its own dtype, a Python
  int as a 64-bit one), each run-time divisor as three (``d``, ``magic``, ``shift``,
  see ``magic_divider``: the host half of common.cuh's ``Div``).

``plan.args`` checks every array (name, dtype, number of elements, C-contiguity)
before anything is launched, since a kernel does not check bounds: the one check below
the geometry (``kernels/__init__.py``'s contract). Plans are pure functions of sizes,
cached (``lru_cache``), so a layer pays for planning once.

Where a source's kernels come from (a *module provider*, ``launch(plan, **arrays)``):

* ``CupyModules(cupy)`` (``for_cupy``, the cupy backend's one): one
  ``cupy.RawModule(path=...)`` per source, the binary NVRTC builds for this GPU when a
  kernel of it is first asked for (``compile_with_nvrtc``: ``module_code(source)``,
  the source with ``common.cuh`` written into it, with ``nvrtc_options(arch)``), kept
  between processes in ``<CuPy's cache folder>/tinyalex/`` under a name hashed from the
  code, options and NVRTC version. We call NVRTC ourselves rather than give CuPy the
  code (``cupy.RawModule(code=...)``) because CuPy appends ``-ftz=true`` after the
  caller's options, which flushes every float32 subnormal to zero (NVRTC honours the
  last flag given); our options say ``--ftz=false``, so float32 kernels keep IEEE
  subnormals as the CPU does. A launch goes to CuPy's current stream (so it is
  recorded when that stream captures a CUDA graph).
* ``cuda_emulation.EmulatedModules``: the same sources built by g++ for the CPU tests
  (not on the GPU's path).

``tests/gpu/test_cuda_sources.py`` runs ``compile_with_nvrtc`` with the real NVRTC
wheel for sm_80 and sm_90 (no GPU needed): every planned kernel in the PTX with the
parameters the plan packs, no ``.ftz`` in it, and ptxas's registers and spills.
Nothing here imports CuPy (it is passed in).
"""

from __future__ import annotations

import hashlib
import math
import os
import re
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

BLOCK = 256                     # threads per block (kernels/cuda/common.cuh, TINYALEX_BLOCK)
MAX_BLOCKS = 16 * 1024          # grid-stride loops cover anything larger
INDEX_LIMIT = 2**31             # every i32 index stays below this

FLOATS = {np.dtype(np.float32): "f32", np.dtype(np.float64): "f64"}

# one letter per C parameter type, as emulate.h's signature() spells them
SCALAR_TYPES = {"i": np.int32, "l": np.int64, "I": np.uint32, "L": np.uint64,
                "f": np.float32, "d": np.float64}

MASK64 = 2**64 - 1


# -- division by a run-time divisor --------------------------------------------------------

def magic_divider(d: int, bits: int) -> tuple[int, int]:
    """``(magic, shift)`` with ``n // d == (mulhi(n, magic) + n) >> shift`` for every
    ``0 <= n < 2**(bits-1)`` (``mulhi``: the high ``bits`` of the 2*bits-bit product).

    ``shift = ceil(log2 d)`` and ``magic = floor(2**bits * (2**shift - d) / d) + 1``,
    which fits in ``bits`` bits; ``1 <= d < 2**(bits-1)``.
    """
    if bits not in (32, 64):
        raise ValueError(f"magic_divider: bits must be 32 or 64, got {bits!r}")
    if not 1 <= d < 2 ** (bits - 1):
        raise ValueError(f"magic_divider: divisor must lie in [1, 2**{bits - 1}), got {d!r}")
    shift = (d - 1).bit_length()                  # smallest s with 2**s >= d
    magic = ((1 << bits) * ((1 << shift) - d)) // d + 1
    assert 0 < magic < (1 << bits)
    return magic, shift


def divide(n: int, magic: int, shift: int, bits: int) -> int:
    """What a kernel computes from ``magic_divider``'s numbers: ``n // d``."""
    return (((n * magic) >> bits) + n) >> shift


# -- plans ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class Param:
    """One kernel parameter: an array (``letter == "p"``: ``dtype``, ``count`` elements,
    ``optional`` arrays may be None, passed as a null pointer) or a scalar ``value``."""
    name: str
    letter: str
    value: object = None
    dtype: np.dtype | None = None
    count: int = 0
    optional: bool = False


@dataclass(frozen=True)
class Plan:
    source: str                 # the .cu file of kernels/cuda/ without ".cu"
    kernel: str                 # its extern "C" name
    grid: int
    block: int
    index_bits: int             # 32 or 64 (the kernel's index type), 0 if it has none
    params: tuple[Param, ...]

    @property
    def signature(self) -> str:
        """The parameter types, one letter each (emulate.h's spelling)."""
        return "".join(p.letter for p in self.params)

    @property
    def arrays(self) -> tuple[str, ...]:
        return tuple(p.name for p in self.params if p.letter == "p")

    def args(self, **arrays) -> tuple:
        """The launch arguments in parameter order, after checking every array."""
        missing = [n for n in self.arrays if n not in arrays]
        unknown = [n for n in arrays if n not in self.arrays]
        if missing or unknown:
            raise ValueError(f"{self.kernel}: arrays {list(self.arrays)} expected, got "
                             f"{sorted(arrays)} (missing {missing}, unknown {unknown})")
        out = []
        for p in self.params:
            if p.letter != "p":
                out.append(p.value)
                continue
            a = arrays[p.name]
            if a is None and p.optional:
                out.append(np.uint64(0))          # a null pointer (8 bytes, as CuPy passes)
                continue
            dtype = getattr(a, "dtype", None)
            size = getattr(a, "size", None)
            flags = getattr(a, "flags", None)
            if dtype != p.dtype or size != p.count or flags is None \
                    or not flags.c_contiguous:
                what = "None" if a is None else (
                    f"{type(a).__name__} of dtype {dtype}, {size} elements"
                    + ("" if flags is not None and flags.c_contiguous else ", not C-contiguous"))
                raise ValueError(f"{self.kernel}: array {p.name!r} must be C-contiguous "
                                 f"{p.dtype} with {p.count} elements, got {what}")
            out.append(a)
        return tuple(out)


def launch(module, plan: Plan, **arrays) -> None:
    """Run ``plan`` from ``module`` (a ``cupy.RawModule`` holding ``plan.source``, or
    ``cuda_emulation.EmulatedModule``) on the named arrays; a provider's ``launch``
    (below) does the same, finding the module itself."""
    kernel = module.get_function(plan.kernel)
    kernel((plan.grid,), (plan.block,), plan.args(**arrays))


def grid_size(total: int, block: int = BLOCK, max_blocks: int = MAX_BLOCKS) -> int:
    """Blocks for a grid-stride loop over ``total`` elements: one element a thread,
    at most ``max_blocks`` blocks, at least one."""
    return max(1, min(max_blocks, math.ceil(total / block)))


def choose_index_bits(largest: int, span: int, index_bits: int | None = None) -> int:
    """32 when every index a kernel forms stays below 2**31, else 64.

    ``largest``: the most elements of any array (every index into an array is below
    its size); ``span``: grid * block, the grid-stride loop's step (its last index plus
    one step must not wrap). ``index_bits`` forces a choice (the tests run the 64-bit
    kernels on small arrays); forcing 32 where it cannot hold is an error."""
    needed = 32 if largest + span < INDEX_LIMIT else 64
    if index_bits is None:
        return needed
    if index_bits not in (32, 64):
        raise ValueError(f"index_bits must be 32, 64 or None, got {index_bits!r}")
    if index_bits < needed:
        raise ValueError(f"32-bit indices cannot address {largest} elements with a grid "
                         f"of {span} threads (2**31 - 1 at most)")
    return index_bits


def dtype_suffix(dtype, where) -> tuple[np.dtype, str]:
    dtype = np.dtype(dtype)
    if dtype not in FLOATS:
        raise ValueError(f"{where}: the CUDA kernels take float32 or float64, got {dtype}")
    return dtype, FLOATS[dtype]


def check_sizes(where, **sizes):
    """Each size an int of at least its minimum, given as ``name=(value, minimum)``."""
    for name, (value, minimum) in sizes.items():
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) \
                or value < minimum:
            raise ValueError(f"{where}: {name} must be an int >= {minimum}, got {value!r}")


class Params:
    """Collects a kernel's parameters in order, with its index width."""

    def __init__(self, bits: int, dtype: np.dtype):
        self.bits, self.dtype, self.items = bits, dtype, []

    def array(self, name, count, dtype=None, optional=False):
        self.items.append(Param(name, "p", dtype=np.dtype(dtype or self.dtype),
                                count=int(count), optional=optional))

    def index(self, name, value):           # I: i32 or i64
        letter = "i" if self.bits == 32 else "l"
        self.items.append(Param(name, letter, SCALAR_TYPES[letter](value)))

    def div(self, name, d):                 # Div<U>: U d, U magic, u32 shift
        magic, shift = magic_divider(int(d), self.bits)
        letter = "I" if self.bits == 32 else "L"
        self.items += [Param(name + "_d", letter, SCALAR_TYPES[letter](d)),
                       Param(name + "_m", letter, SCALAR_TYPES[letter](magic)),
                       Param(name + "_s", "I", np.uint32(shift))]

    def scalar(self, name, letter, value):
        self.items.append(Param(name, letter, SCALAR_TYPES[letter](value)))

    def real(self, name, value):            # T
        self.scalar(name, "f" if self.dtype == np.float32 else "d", value)


def make_plan(source, family, suffix, total, largest, index_bits, max_blocks, build) -> Plan:
    grid = grid_size(total, BLOCK, max_blocks)
    bits = choose_index_bits(largest, grid * BLOCK, index_bits)
    params = build(bits)
    return Plan(source, f"{family}_{suffix}_i{bits}", grid, BLOCK, bits, tuple(params.items))


# -- the sources -----------------------------------------------------------------------

CUDA_DIR = Path(__file__).resolve().with_name("cuda")
SOURCES = ("im2col", "pool", "elementwise")          # kernels/cuda/<name>.cu
HEADERS = ("common.cuh", "emulate.h")
ARCHS = ("sm_80", "sm_90")                           # A100, H100/H200


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


# -- module providers: where a launch finds its kernel --------------------------------------

class ModuleProvider:
    """What the algorithms call: ``launch(plan, **arrays)``. A subclass says where a
    source's module comes from (``module(source)``: an object with
    ``get_function(name)``, as ``cupy.RawModule``)."""

    name = "modules"

    def __init__(self):
        self._kernels = {}          # (source, kernel name) -> callable kernel
        self.launches = 0

    def module(self, source: str):  # pragma: no cover - abstract
        raise NotImplementedError

    def kernel(self, plan: Plan):
        key = (plan.source, plan.kernel)
        k = self._kernels.get(key)
        if k is None:
            k = self._kernels[key] = self.module(plan.source).get_function(plan.kernel)
        return k

    def launch(self, plan: Plan, **arrays) -> None:
        """Run ``plan`` on the named arrays (checked by ``plan.args`` first)."""
        args = plan.args(**arrays)
        self.kernel(plan)((plan.grid,), (plan.block,), args)
        self.launches += 1


class CupyModules(ModuleProvider):
    """The sources as ``cupy.RawModule``\\ s of binaries NVRTC built, once per process
    (and once per machine, through the cache folder)."""

    name = "NVRTC (cupy.RawModule)"

    def __init__(self, cupy, cache_dir=None):
        super().__init__()
        self.cupy, self._modules = cupy, {}
        self.cache_dir = Path(cache_dir) if cache_dir is not None else kernel_cache_dir()
        self._arch = None

    @property
    def arch(self) -> str:
        """What NVRTC builds for this process's GPU (``target_arch``)."""
        if self._arch is None:
            self._arch = target_arch(
                self.cupy.cuda.Device().compute_capability,
                self.cupy.cuda.nvrtc.getSupportedArchs())
        return self._arch

    def binary_path(self, source: str) -> Path:
        """The cubin (or PTX) of ``source`` for this GPU, built by NVRTC if the cache
        folder has none for this code, these options and this NVRTC."""
        nvrtc, arch = self.cupy.cuda.nvrtc, self.arch
        key = "\0".join([module_code(source), *nvrtc_options(arch),
                         repr(tuple(nvrtc.getVersion()))])
        digest = hashlib.sha256(key.encode()).hexdigest()[:20]
        suffix = ".cubin" if arch.startswith("sm_") else ".ptx"
        path = self.cache_dir / f"{source}_{arch}_{digest}{suffix}"
        if not path.is_file():
            build = compile_with_nvrtc(nvrtc, source, arch)
            self.cache_dir.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=self.cache_dir, prefix=f".{source}_")
            with os.fdopen(fd, "wb") as out:          # whole or not at all
                out.write(build.binary)
            os.replace(tmp, path)
        return path

    def module(self, source: str):
        mod = self._modules.get(source)
        if mod is None:
            mod = self._modules[source] = self.cupy.RawModule(path=str(self.binary_path(source)))
        return mod

    def compile_all(self) -> None:
        """Build (or find) every source's binary now (before timing or capturing)."""
        for source in SOURCES:
            self.module(source)


def kernel_cache_dir() -> Path:
    """``tinyalex/`` in CuPy's kernel cache folder (``CUPY_CACHE_DIR``, by default
    ``~/.cupy/kernel_cache``)."""
    root = os.environ.get("CUPY_CACHE_DIR") or Path.home() / ".cupy" / "kernel_cache"
    return Path(root) / "tinyalex"


_cupy_modules = None


def for_cupy(cupy) -> CupyModules:
    """The one provider of the cupy backend, built on first use."""
    global _cupy_modules
    if _cupy_modules is None:
        _cupy_modules = CupyModules(cupy)
    return _cupy_modules
