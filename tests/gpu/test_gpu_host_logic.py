"""The GPU path's host logic, on the CPU with stand-ins for CuPy and cuBLAS:

* ``gemm_gpu.CublasGemm``: the row-major product mapped onto cuBLAS's column-major
  ``cublasGemmEx`` (operands C-ordered, transposed views, row blocks with a larger
  leading dimension), the compute type it asks for (TF32 only for a convolution GEMM on
  a GPU that has it), beta for accumulation, the stream set when it changes, errors;
  run against a stand-in cuBLAS that reads and writes host memory at the addresses it
  is given, with cuBLAS's own column-major semantics, and through the GPU convolution;
* ``precision.gemm_compute_type``: CuPy's compute type set and restored, and the one
  clear warning where CuPy has no per-call compute type and its CUPY_TF32 disagrees;
* ``cuda_launch.CupyModules``: one NVRTC build per source (the code with common.cuh
  inlined, NVRTC's options for this GPU), cached on disk, loaded as
  ``cupy.RawModule(path=...)``, each kernel looked up once.

What needs the real libraries (NVRTC compiling, cuBLAS running) is checked on a GPU by
``tests/gpu/test_gpu_kernels.py``.
"""

import ctypes
import warnings
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from tinyalex.kernels import conv_im2col_gpu, cuda_launch, gemm_gpu, precision
from tinyalex.kernels.cuda_emulation import EmulatedModules
from tinyalex.kernels.geometry import conv_geometry
from tinyalex.ops import conv


class FakeCupy:
    """The part of CuPy the GEMM and precision code use, over NumPy."""
    __version__ = "stand-in"

    def __init__(self, cc="90"):
        self.stream = 7
        self.cuda = SimpleNamespace(
            Device=lambda: SimpleNamespace(id=0, compute_capability=cc),
            get_current_stream=lambda: SimpleNamespace(ptr=self.stream))
        self.empty = np.empty


def column_major(address, rows, cols, ld, dtype):
    """The (rows x cols) column-major matrix at ``address`` with leading dimension ld."""
    dtype = np.dtype(dtype)
    n = ld * (cols - 1) + rows
    ctype = ctypes.c_float if dtype == np.float32 else ctypes.c_double
    flat = np.ctypeslib.as_array((ctype * n).from_address(address))
    return np.lib.stride_tricks.as_strided(flat, (rows, cols), (dtype.itemsize, ld * dtype.itemsize))


class FakeCublas:
    """cuBLAS's entry points as Python functions over host memory, with cuBLAS's
    semantics: C (m x n) = alpha op(A) op(B) + beta C, all column-major; ``status``
    is what every call returns (0: success). As in cuBLAS, ``cublasSetStream`` resets
    the workspace to the library's default (``None`` here), and a GEMM records which
    workspace it ran with (a captured graph must run with the handle's own)."""

    def __init__(self, status=0):
        self.status, self.gemms, self.streams, self.workspace = status, [], [], None
        self.gemm_workspaces = []

        def create(ref):
            ref._obj.value = 4321
            return self.status

        def set_stream(handle, stream):
            self.streams.append(stream.value)
            self.workspace = None                  # back to cuBLAS's default pool
            return 0

        def set_workspace(handle, pointer, size):
            assert pointer.value and size > 0
            self.workspace = size
            return 0

        def gemm(handle, transa, transb, m, n, k, alpha, A, atype, lda, B, btype, ldb, beta,
                 C, ctype, ldc, compute, algo):
            assert handle.value == 4321 if hasattr(handle, "value") else True
            assert atype == btype == ctype and algo == gemm_gpu.GEMM_DEFAULT
            dtype = np.float32 if atype == gemm_gpu.CUDA_R_32F else np.float64
            opA = (column_major(A.value, m, k, lda, dtype) if transa == gemm_gpu.OP_N
                   else column_major(A.value, k, m, lda, dtype).T)
            opB = (column_major(B.value, k, n, ldb, dtype) if transb == gemm_gpu.OP_N
                   else column_major(B.value, n, k, ldb, dtype).T)
            out = column_major(C.value, m, n, ldc, dtype)
            a, b = alpha._obj.value, beta._obj.value
            out[...] = a * (opA @ opB) + (b * out if b else 0)
            self.gemm_workspaces.append(self.workspace)
            self.gemms.append((transa, transb, m, n, k, lda, ldb, ldc, compute, b))
            return self.status

        self.cublasCreate_v2, self.cublasSetStream_v2 = create, set_stream
        self.cublasSetWorkspace_v2, self.cublasGemmEx = set_workspace, gemm


@pytest.fixture
def cublas(monkeypatch):
    monkeypatch.setattr(precision, "_capable", {})
    lib = FakeCublas()
    return gemm_gpu.CublasGemm(FakeCupy(), lib=lib), lib


def operand(rng, shape, dtype, order):
    """A (R, C) operand: C-ordered, a transposed view, or rows of a wider array."""
    R, C = shape
    if order == "c":
        return rng.standard_normal(shape).astype(dtype)
    if order == "t":
        return rng.standard_normal((C, R)).astype(dtype).T
    return rng.standard_normal((R, C + 3)).astype(dtype)[:, 1:C + 1]   # ld = C + 3


@settings(max_examples=40)
@given(M=st.integers(1, 6), K=st.integers(1, 6), N=st.integers(1, 6),
       orders=st.tuples(st.sampled_from("ctw"), st.sampled_from("ctw")),
       dtype=st.sampled_from([np.float32, np.float64]), accumulate=st.booleans(),
       seed=st.integers(0, 2**16))
def test_cublas_gemm_maps_row_major_products_onto_column_major_cublas(
        cublas, M, K, N, orders, dtype, accumulate, seed):
    gemm, lib = cublas
    rng = np.random.default_rng(seed)
    a, b = operand(rng, (M, K), dtype, orders[0]), operand(rng, (K, N), dtype, orders[1])
    wide = rng.standard_normal((M + 2, N)).astype(dtype)
    out = wide[1:M + 1]                                      # a block of rows
    before = out.copy()
    gemm(a, b, out, accumulate=accumulate)
    want = a.astype(np.float64) @ b.astype(np.float64) + (before if accumulate else 0)
    np.testing.assert_allclose(out, want, rtol=1e-5 if dtype == np.float32 else 1e-12,
                               atol=1e-5 if dtype == np.float32 else 1e-12)
    np.testing.assert_array_equal(wide[0], wide[0])          # untouched rows stay
    assert lib.gemms[-1][-1] == (1.0 if accumulate else 0.0)


def test_cublas_gemm_asks_tf32_only_where_asked_and_available(monkeypatch):
    monkeypatch.setattr(precision, "_capable", {})
    rng = np.random.default_rng(0)
    for cc, dtype, tf32, want in (("90", np.float32, True, gemm_gpu.COMPUTE_32F_FAST_TF32),
                                  ("90", np.float32, False, gemm_gpu.COMPUTE_32F),
                                  ("75", np.float32, True, gemm_gpu.COMPUTE_32F),
                                  ("90", np.float64, True, gemm_gpu.COMPUTE_64F)):
        precision._capable.clear()
        lib = FakeCublas()
        gemm = gemm_gpu.CublasGemm(FakeCupy(cc), lib=lib)
        a, b = rng.standard_normal((3, 4)).astype(dtype), rng.standard_normal((4, 2)).astype(dtype)
        gemm(a, b, np.empty((3, 2), dtype), tf32=tf32)
        assert lib.gemm_workspaces == [gemm_gpu.WORKSPACE_BYTES]
        assert lib.gemms[-1][8] == want, (cc, dtype, tf32)


def test_cublas_gemm_sets_the_stream_when_it_changes_and_reports_failures(cublas):
    gemm, lib = cublas
    a, b, out = np.ones((2, 2)), np.ones((2, 2)), np.empty((2, 2))
    gemm(a, b, out)
    gemm(a, b, out)
    gemm.xp.stream = 9                                       # another current stream
    gemm(a, b, out)
    assert lib.streams == [7, 9]
    # every GEMM ran with the handle's own workspace, set again after each set-stream
    assert lib.gemm_workspaces == [gemm_gpu.WORKSPACE_BYTES] * 3
    lib.status = 13
    with pytest.raises(RuntimeError, match="cublasGemmEx failed with cuBLAS status 13"):
        gemm(a, b, out)
    with pytest.raises(ValueError, match="expected a .M, K. @ b .K, N."):
        gemm(a, np.ones((3, 2)), out)
    with pytest.raises(ValueError, match="neither contiguous rows nor contiguous columns"):
        gemm(np.ones((4, 4))[::2, ::2], b, out)
    with pytest.raises(RuntimeError, match="cublasCreate_v2 failed"):
        gemm_gpu.CublasGemm(FakeCupy(), lib=FakeCublas(status=1))


def test_the_gpu_convolution_through_cublas_gemm_equals_the_reference(cuda_emulation, cublas):
    """The GEMMs the convolution really makes (transposed weights and gradients,
    accumulation over chunks) through CublasGemm's column-major calls."""
    gemm, lib = cublas
    rng = np.random.default_rng(2)
    x = rng.standard_normal((3, 2, 7, 6))
    w, bias = rng.standard_normal((4, 2, 3, 3)), rng.standard_normal(4)
    geo = conv_geometry(x.shape, w.shape, 2, 1, 1, 0)
    modules = EmulatedModules(cuda_emulation)
    for chunk in (1, 1 << 30):                               # one image a chunk, one chunk
        k = conv_im2col_gpu.Im2colGemmGPU(np, modules, gemm, chunk_bytes=chunk, max_blocks=2)
        y, s = k.forward(x, w, bias, geo, True)
        y_ref, s_ref = conv.REFERENCE.forward(x, w, bias, geo, True)
        np.testing.assert_allclose(y, y_ref, rtol=1e-12)
        gy = rng.standard_normal(y.shape)
        for a, e in zip(k.backward(gy, s, True, True, True),
                        conv.REFERENCE.backward(gy, s_ref, True, True, True)):
            np.testing.assert_allclose(a, e, rtol=1e-11, atol=1e-12)
    assert any(call[-1] == 1.0 for call in lib.gemms)        # gW accumulated by the GEMM


# -- CuPy's compute type -------------------------------------------------------------------

class FakeComputeTypes:
    COMPUTE_TYPE_DEFAULT, COMPUTE_TYPE_TF32 = 1, 7

    def __init__(self, current=1):
        self.current, self.log = current, []

    def get_compute_type(self, dtype):
        return self.current

    def set_compute_type(self, dtype, value):
        self.log.append(value)
        self.current = value


def test_gemm_compute_type_sets_tf32_or_fp32_and_restores_cupys(monkeypatch):
    monkeypatch.setattr(precision, "_capable", {})
    for cc, tf32, want in (("90", True, 7), ("90", False, 1), ("80", True, 7), ("75", True, 1)):
        precision._capable.clear()
        api = FakeComputeTypes(current=3)
        with precision.gemm_compute_type(FakeCupy(cc), np.float32, tf32, api=api):
            assert api.current == want, (cc, tf32)
        assert api.current == 3                              # CuPy's own setting is back
    api = FakeComputeTypes()
    with precision.gemm_compute_type(FakeCupy(), np.float64, True, api=api):
        pass
    with precision.gemm_compute_type(np, np.float32, True, api=api):
        pass
    assert api.log == []                                     # float64 and NumPy: untouched


def test_a_cupy_without_per_call_compute_type_warns_once_when_it_cannot_do_what_is_asked(
        monkeypatch):
    monkeypatch.setattr(precision, "_capable", {})
    monkeypatch.setattr(precision, "_warned", set())
    xp = FakeCupy("90")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for _ in range(3):                                   # TF32 asked, CuPy does FP32
            with precision.gemm_compute_type(xp, np.float32, True, api=None, environ={}):
                pass
        with precision.gemm_compute_type(xp, np.float32, False, api=None, environ={}):
            pass                                             # FP32 asked and done: quiet
        with precision.gemm_compute_type(xp, np.float32, True, api=None,
                                         environ={"CUPY_TF32": "1"}):
            pass                                             # TF32 asked and done: quiet
        with precision.gemm_compute_type(xp, np.float32, False, api=None,
                                         environ={"CUPY_TF32": "1"}):
            pass                                             # FP32 asked, CuPy does TF32
    messages = [str(w.message) for w in caught]
    assert len(messages) == 2, messages
    assert "TF32 was asked" in messages[0] and "run in strict FP32" in messages[0] \
        and "CUPY_TF32=1" in messages[0] and "TINYALEX_TF32=0" in messages[0]
    assert "strict FP32 was asked" in messages[1] and "Unset CUPY_TF32" in messages[1]


def test_tf32_is_the_default_for_convolution_gemms():
    code = "import tinyalex.kernels.precision as p; print(p.tf32_enabled())"
    import os
    import subprocess
    import sys
    env = {k: v for k, v in os.environ.items() if k != "TINYALEX_TF32"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env=env, check=True)
    assert out.stdout.strip() == "True"


# -- the RawModule provider ------------------------------------------------------------------

class FakeNvrtc:
    """CuPy's NVRTC binding as CupyModules calls it; records each compile."""

    def __init__(self, archs=(75, 80, 86, 89, 90, 100, 120)):
        self.archs, self.compiled = archs, []

    def getVersion(self):
        return (13, 5)

    def getSupportedArchs(self):
        return self.archs

    def createProgram(self, code, name, headers, include_names):
        return [code, name]

    def compileProgram(self, program, options):
        self.compiled.append((program[1], program[0], tuple(options)))

    def getPTX(self, program):
        return b".version 9.0 (PTX of " + program[1].encode() + b")\x00"

    def getCUBIN(self, program):
        return b"CUBIN of " + program[1].encode()

    def getProgramLog(self, program):
        return ""

    def destroyProgram(self, program):
        pass


def test_cupy_modules_build_each_source_once_with_nvrtc_and_load_it_by_path(tmp_path):
    """One NVRTC build per source (module_code, nvrtc_options for this GPU: IEEE
    subnormals, not CuPy's -ftz=true), written to the cache folder and loaded with
    cupy.RawModule(path=...); each kernel looked up once; a second process (a new
    provider on the same folder) builds nothing."""
    made, looked_up, launched = [], [], []

    class RawModule:
        def __init__(self, *, path):
            made.append(Path(path))

        def get_function(self, name):
            looked_up.append(name)
            return lambda grid, block, args: launched.append((name, grid, block, len(args)))

    nvrtc = FakeNvrtc()
    cupy = SimpleNamespace(RawModule=RawModule, cuda=SimpleNamespace(
        nvrtc=nvrtc, Device=lambda: SimpleNamespace(compute_capability="90")))
    modules = cuda_launch.CupyModules(cupy, cache_dir=tmp_path)
    from tinyalex.kernels import elementwise_gpu
    x, y = np.zeros(5, np.float32), np.zeros(5, np.float32)
    for _ in range(3):
        modules.launch(elementwise_gpu.relu_forward(5, np.float32), x=x, y=y)
    modules.launch(elementwise_gpu.sigmoid_forward(5, np.float32), x=x, y=y)
    assert len(made) == 1 and looked_up == ["relu_forward_f32_i32", "sigmoid_forward_f32_i32"]
    (name, code, options), = nvrtc.compiled
    assert name == "elementwise.cu" and code == cuda_launch.module_code("elementwise")
    assert options == cuda_launch.nvrtc_options("sm_90")
    assert "--ftz=false" in options and not any("ftz=true" in o for o in options)
    assert '#include "common.cuh"' not in code and "struct Div" in code
    assert made[0].parent == tmp_path and made[0].name.startswith("elementwise_sm_90_")
    assert made[0].read_bytes() == b"CUBIN of elementwise.cu"
    assert launched[0] == ("relu_forward_f32_i32", (1,), (256,), 3)
    assert modules.launches == 4
    modules.compile_all()
    assert len(made) == len(cuda_launch.SOURCES) == len(nvrtc.compiled)
    again = cuda_launch.CupyModules(cupy, cache_dir=tmp_path)
    again.compile_all()                              # found in the cache folder
    assert len(nvrtc.compiled) == len(cuda_launch.SOURCES)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(p.name for p in made[:3])


def test_a_gpu_newer_than_nvrtc_gets_ptx_of_the_newest_architecture_nvrtc_knows(tmp_path):
    made = []
    cupy = SimpleNamespace(RawModule=lambda path: made.append(Path(path)), cuda=SimpleNamespace(
        nvrtc=FakeNvrtc(archs=(80, 90)), Device=lambda: SimpleNamespace(compute_capability="100")))
    cuda_launch.CupyModules(cupy, cache_dir=tmp_path).module("pool")
    assert made[0].name.startswith("pool_compute_90_") and made[0].suffix == ".ptx"
    assert made[0].read_bytes().startswith(b".version")
    assert cuda_launch.target_arch("80", (80, 90)) == "sm_80"
    with pytest.raises(RuntimeError, match="cannot build for compute capability 70"):
        cuda_launch.target_arch("70", (80, 90))
    with pytest.raises(ValueError, match="arch must look like"):
        cuda_launch.nvrtc_options("90")


def test_the_resize_matrices_are_built_once_per_size_on_a_device(monkeypatch):
    """tinyalex.data: on a GPU the two bilinear matrices are uploaded once per (in, out)
    size, dtype and device and reused; on the CPU they are built as before."""
    from tinyalex import data
    uploads = []

    def asarray(a):
        uploads.append(a.shape)
        return np.array(a)

    device = SimpleNamespace(id=0)
    xp = SimpleNamespace(asarray=asarray, cuda=SimpleNamespace(Device=lambda: device))
    monkeypatch.setattr(data, "_DEVICE_MATRICES", {})
    first = data._resize_matrix(28, 224, xp, np.float32)
    assert data._resize_matrix(28, 224, xp, np.float32) is first and uploads == [(224, 28)]
    np.testing.assert_array_equal(first, data.bilinear_matrix(28, 224))
    data._resize_matrix(28, 224, xp, np.float64)
    device.id = 1
    data._resize_matrix(28, 224, xp, np.float32)
    assert len(uploads) == 3                              # another dtype, another device
    host = data._resize_matrix(28, 224, np, np.float32)
    assert host is not data._resize_matrix(28, 224, np, np.float32)   # CPU: built each time


# -- the GPU backend's install checks (tinyalex/backend.py) ----------------------------------

def fake_installed_cupy(monkeypatch, tmp_path, nvrtc=True, cublas=True, headers=True, gpus=1):
    """CuPy for CUDA 13 as far as ``backend._load_cupy`` looks: NVRTC loads or not,
    cuBLAS's module imports or not, cuda_fp16.h lies under the CUDA path or not."""
    import sys
    from types import ModuleType

    from tinyalex import backend as B

    def nvrtc_version():
        if not nvrtc:
            raise OSError("libnvrtc.so.13: cannot open shared object file")
        return (13, 5)

    (tmp_path / "include").mkdir(exist_ok=True)
    if headers:
        (tmp_path / "include" / "cuda_fp16.h").write_text("")
    cupy = SimpleNamespace(__version__="14.2.0", cuda=SimpleNamespace(
        nvrtc=SimpleNamespace(getVersion=nvrtc_version),
        runtime=SimpleNamespace(runtimeGetVersion=lambda: 13020, getDeviceCount=lambda: gpus),
        get_cuda_path=lambda: str(tmp_path)))
    monkeypatch.setitem(sys.modules, "cupy", cupy)
    monkeypatch.setitem(sys.modules, "cupy_backends.cuda.libs.cublas",
                        ModuleType("cublas") if cublas else None)   # None: ImportError
    monkeypatch.setitem(sys.modules, "cuda", None)       # no cuda-pathfinder: CuPy's path
    monkeypatch.setattr(B, "_cupy", None)
    monkeypatch.setattr(B, "_cupy_error", None)
    return B, cupy


def test_the_cupy_backend_names_each_missing_part_and_the_command_that_adds_it(
        monkeypatch, tmp_path):
    B, _ = fake_installed_cupy(monkeypatch, tmp_path, nvrtc=False, cublas=False,
                               headers=False)
    assert not B.cupy_available()
    why = B.cupy_unavailable_reason()
    assert "CuPy 14.2.0 (for CUDA 13) is missing NVRTC" in why and "libnvrtc.so.13" in why
    assert "cuBLAS (ModuleNotFoundError" in why and "the CUDA headers (cuda_fp16.h" in why
    assert "`pip install 'cuda-toolkit[nvrtc,cudart,cublas]==13.*'` adds them" in why
    assert "`pip install -e '.[cuda13]'` in the tinyalex checkout" in why
    with pytest.raises(RuntimeError, match=r"or use backend 'numpy'"):
        B.cupy_module()


@pytest.mark.parametrize("part", ["nvrtc", "cublas", "headers"])
def test_one_missing_part_is_named_alone(monkeypatch, tmp_path, part):
    B, _ = fake_installed_cupy(monkeypatch, tmp_path, **{part: False})
    why = B.cupy_unavailable_reason()
    named = {"nvrtc": "NVRTC", "cublas": "cuBLAS", "headers": "CUDA headers"}
    assert [p for p, word in named.items() if word in why] == [part], why


def test_a_complete_install_with_a_gpu_is_usable_and_without_one_says_so(monkeypatch,
                                                                          tmp_path):
    B, cupy = fake_installed_cupy(monkeypatch, tmp_path)
    assert B.cupy_available() and B.cupy_module() is cupy
    B, _ = fake_installed_cupy(monkeypatch, tmp_path, gpus=0)
    assert B.cupy_unavailable_reason() == "CuPy found no CUDA device"


def test_a_driver_too_old_for_cuda_13_gets_the_cuda_12_extra_named(monkeypatch, tmp_path):
    B, cupy = fake_installed_cupy(monkeypatch, tmp_path)

    def no_driver():
        raise RuntimeError("cudaErrorInsufficientDriver: CUDA driver version is "
                           "insufficient for CUDA runtime version")

    cupy.cuda.runtime.getDeviceCount = no_driver
    why = B.cupy_unavailable_reason()
    assert why.startswith("no usable GPU (RuntimeError: cudaErrorInsufficientDriver")
    assert "older than CUDA 13 needs (R580)" in why
    assert "`pip install -e '.[cuda12]'` in the tinyalex checkout" in why


def test_the_install_hints_name_extras_that_setup_cfg_defines():
    """Every command the hints print installs something that exists: the extras of
    setup.cfg, each CuPy 14 for its CUDA with the cuda-toolkit wheels of that CUDA."""
    import configparser
    from pathlib import Path

    from tinyalex import backend as B
    cfg = configparser.ConfigParser()
    cfg.read(Path(__file__).resolve().parents[2] / "setup.cfg")
    extras = {name: value.split() for name, value in cfg["options.extras_require"].items()}
    for major, extra in B.CUDA_EXTRAS.items():
        assert f"'.[{extra}]'" in B.install_hint(major)
        assert extras[extra] == [f"cupy-cuda{major}x>=14",
                                 f"cuda-toolkit[nvrtc,cudart,cublas]=={major}.*"]
        assert f"cuda-toolkit[nvrtc,cudart,cublas]=={major}.*" in B.parts_hint(major)
    assert "cupy" not in extras           # a bare CuPy cannot compile or multiply
    assert "'.[cuda13]'" in B.install_hint() and "'.[cuda12]'" not in B.install_hint()


def test_the_nccl_hint_names_the_wheel_of_cupys_cuda():
    from tinyalex.dist.nccl import nccl_hint
    for version, wheel in ((13020, "nvidia-nccl-cu13"), (12090, "nvidia-nccl-cu12")):
        cupy = SimpleNamespace(cuda=SimpleNamespace(runtime=SimpleNamespace(
            runtimeGetVersion=lambda v=version: v)))
        assert nccl_hint(cupy) == f"pip install {wheel}"


def test_each_gpu_check_command_fits_a_lent_machines_command_limit():
    """benchmarks/gpu_check.sh: each of its two commands' stage limits add up to at most
    450 s, inside the 600 s a lent GPU machine gives one command (with room to start)."""
    import re
    import subprocess
    from pathlib import Path
    script = Path(__file__).resolve().parents[2] / "benchmarks" / "gpu_check.sh"
    done = subprocess.run(["bash", str(script), "limits"], capture_output=True, text=True,
                          timeout=30, check=True)
    totals = dict(re.findall(r"^(\w+): .* = (\d+) s$", done.stdout, re.M))
    assert set(totals) == {"first", "recipe"}, done.stdout
    assert all(int(t) <= 450 for t in totals.values()), totals
