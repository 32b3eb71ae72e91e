"""Shared fixtures for the test suite (the plain helpers live in ``tests/helpers/``:
``helpers.checks`` for tolerances, tensors and the references CI installs).

* ``backend``: every test that takes it runs once per backend ("numpy", "cupy");
  the cupy run is skipped, with the reason tinyalex itself gives, where CuPy or a
  GPU is missing. One test, every backend: never a copy of a test per backend.
* ``kernel_mode``: runs a test under each kernel set ("reference", "fast").
* ``cuda_emulation``: the CUDA C kernels built for the CPU by g++, once per session;
  ``emulated_cupy``: whole steps on the GPU path, emulated
  (``tests/helpers/gpu_emulation.py``).

Test files import their helpers as ``from helpers.checks import ...`` (setup.cfg:
``pythonpath = . tests``).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

import tinyalex.kernels as kernels
from helpers.checks import BACKENDS

# Subprocesses the tests start (training runs, kill tests, examples) import tinyalex
# from this checkout, as the test process does (setup.cfg: pythonpath = . tests), and not
# whatever copy an earlier `pip install -e` elsewhere left on the path.
ROOT = str(Path(__file__).resolve().parents[1])
os.environ["PYTHONPATH"] = os.pathsep.join(
    [ROOT] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p])

# Hypothesis: no deadline (timings are noisy on a shared 2-core machine) and the
# backend fixture is a plain string, identical for every example of one test run.
settings.register_profile(
    "tinyalex", deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
settings.load_profile("tinyalex")


@pytest.fixture(params=BACKENDS)
def backend(request) -> str:
    """The backend name a test runs on: "numpy", then "cupy" where usable."""
    return request.param


@pytest.fixture(params=["reference", "fast"])
def kernel_mode(request, backend):
    """Run a test under each kernel mode of ``tinyalex.kernels`` on ``backend`` (both
    backends have fast algorithms for every op: the ops' choosers say which)."""
    with kernels.use(request.param):
        yield request.param


@pytest.fixture(scope="session")
def cuda_emulation(tmp_path_factory):
    """The CUDA C sources of kernels/cuda/ built by g++ against emulate.h, once per
    session (``cuda_emulation.EmulatedModule``: the kernels as ``cupy.RawModule`` would give
    them, run on the CPU over NumPy arrays); skipped, saying why, without g++."""
    from tinyalex.kernels import cuda_emulation as emulation
    if emulation.cxx_path() is None:
        pytest.skip("g++ is not on PATH, so the CUDA sources cannot be built for the CPU")
    return emulation.emulated_module(tmp_path_factory.mktemp("cuda_emu"))


@pytest.fixture
def emulated_cupy(cuda_emulation, monkeypatch):
    """NumPy arrays seen as the cupy backend's, the GPU algorithms emulated on the CPU
    (``tests/helpers/gpu_emulation.py``); yields the ``Algorithms`` (they count launches)."""
    from helpers.gpu_emulation import Algorithms, install
    yield install(monkeypatch, Algorithms(cuda_emulation))
