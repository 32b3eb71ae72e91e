"""Where the GPU algorithms get their CUDA C kernels from: a *module provider*.

Every GPU algorithm (``conv_im2col_gpu.py``, ``pool_gpu.py``, ``elementwise_gpu.py``)
takes a provider in its constructor and launches through it, with a plan of its own
(each builds its kernels' plans beside it, on ``cuda_plan.py``)::

    modules.launch(plan, x=x, cols=cols)
    # = the kernel plan.kernel of source plan.source, called as cupy.RawKernel is:
    #   kernel((plan.grid,), (plan.block,), plan.args(x=x, cols=cols))

Two providers, one launch path:

* ``CupyModules(cupy)``: one ``cupy.RawModule(path=...)`` per source of
  ``kernels/cuda/``, the binary NVRTC builds for this GPU when a kernel of it is
  first asked for (``cuda_build.compile_with_nvrtc``: ``module_code(source)`` with
  ``nvrtc_options(arch)``, IEEE subnormals kept, which CuPy's ``RawModule(code=...)``
  would flush), kept between processes in ``<CuPy's cache folder>/tinyalex/`` under
  a name hashed from the code, options and NVRTC version. Each kernel is looked up
  once; a launch goes to CuPy's current stream (so it is recorded when that stream
  captures a CUDA graph).
* ``EmulatedModules(module)``: the same sources built by g++ against
  ``kernels/cuda/emulate.h`` (``cuda_build.emulated_module``), run thread by thread
  on the CPU over NumPy arrays. The tests give it to the very same algorithm classes,
  so the Python launch code the GPU runs (plans, grids, argument packing, memory
  orders) is exercised without a GPU.

``launches`` counts the kernels a provider has launched (the tests count a step's
launches with it).
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path

from . import cuda_build
from .cuda_plan import Plan


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
        """What NVRTC builds for this process's GPU (``cuda_build.target_arch``)."""
        if self._arch is None:
            self._arch = cuda_build.target_arch(
                self.cupy.cuda.Device().compute_capability,
                self.cupy.cuda.nvrtc.getSupportedArchs())
        return self._arch

    def binary_path(self, source: str) -> Path:
        """The cubin (or PTX) of ``source`` for this GPU, built by NVRTC if the cache
        folder has none for this code, these options and this NVRTC."""
        nvrtc, arch = self.cupy.cuda.nvrtc, self.arch
        key = "\0".join([cuda_build.module_code(source), *cuda_build.nvrtc_options(arch),
                         repr(tuple(nvrtc.getVersion()))])
        digest = hashlib.sha256(key.encode()).hexdigest()[:20]
        suffix = ".cubin" if arch.startswith("sm_") else ".ptx"
        path = self.cache_dir / f"{source}_{arch}_{digest}{suffix}"
        if not path.is_file():
            build = cuda_build.compile_with_nvrtc(nvrtc, source, arch)
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
        for source in cuda_build.SOURCES:
            self.module(source)


def kernel_cache_dir() -> Path:
    """``tinyalex/`` in CuPy's kernel cache folder (``CUPY_CACHE_DIR``, by default
    ``~/.cupy/kernel_cache``)."""
    root = os.environ.get("CUPY_CACHE_DIR") or Path.home() / ".cupy" / "kernel_cache"
    return Path(root) / "tinyalex"


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


_cupy_modules = None


def for_cupy(cupy) -> CupyModules:
    """The one provider of the cupy backend, built on first use."""
    global _cupy_modules
    if _cupy_modules is None:
        _cupy_modules = CupyModules(cupy)
    return _cupy_modules
