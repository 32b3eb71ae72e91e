"""Where the GPU algorithms get their CUDA C kernels from: a *module provider*.

Every GPU algorithm (``conv_im2col_gpu.py``, ``pool_gpu.py``, ``elementwise_gpu.py``)
takes a provider in its constructor and launches through it, with a plan from
``cuda_plan.py``::

    modules.launch(plan, x=x, cols=cols)
    # = the kernel plan.kernel of source plan.source, called as cupy.RawKernel is:
    #   kernel((plan.grid,), (plan.block,), plan.args(x=x, cols=cols))

Two providers, one launch path:

* ``CupyModules(cupy)``: one ``cupy.RawModule`` per source of ``kernels/cuda/``
  (code ``cuda_build.module_code(source)``, options ``cuda_build.nvrtc_options()``),
  compiled by NVRTC when a kernel of it is first asked for, once per process; CuPy's
  kernel cache (``~/.cupy/kernel_cache``) keeps the binaries between processes. Each
  kernel is looked up once; a launch goes to CuPy's current stream (so it is
  recorded when that stream captures a CUDA graph).
* ``EmulatedModules(module)``: the same sources built by g++ against
  ``kernels/cuda/emulate.h`` (``cuda_build.emulated_module``), run thread by thread
  on the CPU over NumPy arrays. The tests give it to the very same algorithm classes,
  so the Python launch code the GPU runs (plans, grids, argument packing, memory
  orders) is exercised without a GPU.

``launches`` counts the kernels a provider has launched (the tests count a step's
launches with it).
"""

from __future__ import annotations

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
    """The sources as ``cupy.RawModule``\\ s, compiled once per process."""

    name = "NVRTC (cupy.RawModule)"

    def __init__(self, cupy):
        super().__init__()
        self.cupy, self._modules = cupy, {}

    def module(self, source: str):
        mod = self._modules.get(source)
        if mod is None:
            mod = self._modules[source] = self.cupy.RawModule(
                code=cuda_build.module_code(source), options=cuda_build.nvrtc_options())
        return mod

    def compile_all(self) -> None:
        """Compile every source now (a warm-up before timing or capturing a graph)."""
        for source in cuda_build.SOURCES:
            self.module(source).compile()


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
