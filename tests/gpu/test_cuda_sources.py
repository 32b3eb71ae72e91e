"""The CUDA C kernels of ``kernels/cuda/``, tested without a GPU.

(a) Every source compiles with the real NVRTC (the nvidia-cuda-nvrtc wheel, through
    CuPy's binding and tinyalex's own build path, ``cuda_build.compile_with_nvrtc``,
    with the project's options) for sm_80 and sm_90, no GPU needed: every kernel a
    plan launches is an entry of the PTX with the parameters the plan packs (count and
    sizes), nothing in the PTX flushes subnormals (``.ftz``; CuPy's own path would),
    ptxas reports no spills and no stack, and the registers and spills per source are
    printed. CI installs the wheels (scripts/setup_gpu_wheels.sh) and fails without
    them; elsewhere the test is skipped, saying why.
(b) The same sources, built by g++ against ``kernels/cuda/emulate.h`` (once per
    session), run on the CPU through the ops' launch plans (``conv_im2col_gpu.py``, ``pool_gpu.py``, ``elementwise_gpu.py``, on ``kernels/cuda_plan.py``), the very launch
    path the GPU takes, and equal the NumPy references on hypothesis-drawn shapes,
    strides and paddings, in float32 and float64, with 32- and 64-bit indices and
    grids small enough that every grid-stride loop wraps: exactly where the kernel adds
    in the reference's order, to a tight tolerance where exp/log or NumPy's pairwise
    sums differ (skipped, with the reason, where g++ is absent).
(c) The host logic alone: magic-number division, the 32/64-bit choice on sizes past
    2**31 (virtual: nothing is allocated), and the argument checks.
"""

import os
import re
from types import SimpleNamespace

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st


import tinyalex.kernels as kernels
from tinyalex import random as R
from tinyalex.kernels import conv_im2col_gpu, cuda_build, cuda_plan as plan, elementwise_gpu, \
    pool_gpu
from tinyalex.kernels.geometry import pool_geometry
from tinyalex.ops import pool
from tinyalex.ops.activation import DROPOUT_REFERENCE, RELU_REFERENCE, SIGMOID_REFERENCE
from tinyalex.kernels.geometry import output_size as conv_output_size
from tinyalex.ops.im2col import col2im, im2col
from tinyalex.ops.loss import cross_entropy
from tinyalex.optim import SGD
from tinyalex.tensor import Tensor
from helpers.strategies import batch_geometry


def max_pool_reference(x, *window):
    """(y, argmax (N*C*OH*OW,)) of the readable reference (tinyalex/ops/pool.py)."""
    y, (argmax, _) = pool.MAX_REFERENCE.forward(x, pool_geometry(x.shape, *window))
    return y, argmax


def max_pool_backward_reference(gy, argmax, x_shape, *window):
    return pool.MAX_REFERENCE.backward(gy, (argmax, pool_geometry(x_shape, *window)))


def avg_pool_reference(x, *window):
    return pool.AVG_REFERENCE.forward(x, pool_geometry(x.shape, *window))[0]


def avg_pool_backward_reference(gy, x_shape, *window):
    return pool.AVG_REFERENCE.backward(gy, pool_geometry(x_shape, *window))

DTYPES = (np.float32, np.float64)
BITS = (32, 64)
GRIDS = st.sampled_from([1, 2, 3, plan.MAX_BLOCKS])     # max_blocks: 1-3 wrap the loops
FEW = settings(max_examples=12)


def tol(dtype):
    return dict(rtol=2e-6, atol=1e-7) if dtype == np.float32 else dict(rtol=1e-14, atol=1e-15)


# -- (a) NVRTC --------------------------------------------------------------------------------

def planned_plans() -> dict:
    """source -> {kernel name: a plan of it} for every kernel a plan can ask for (each
    family, memory order, dtype and index type)."""
    found = {s: {} for s in cuda_build.SOURCES}
    for dtype in DTYPES:
        for bits in BITS:
            b = dict(index_bits=bits)
            plans = [conv_im2col_gpu.im2col(1, 1, 3, 3, 2, 2, 1, 1, 0, 0, dtype, lay, **b) for lay in
                     plan.LAYOUTS]
            plans += [conv_im2col_gpu.col2im(1, 1, 3, 3, 2, 2, 1, 1, 0, 0, dtype, lay, **b) for lay in
                      plan.LAYOUTS]
            plans += [f(1, 3, 3, 1, 2, 2, 1, 1, 0, 0, dtype, **b) for f in
                      (pool_gpu.max_pool_forward, pool_gpu.max_pool_backward, pool_gpu.avg_pool_forward,
                       pool_gpu.avg_pool_backward)]
            plans += [elementwise_gpu.bias_activation(2, 3, dtype, a, **b) for a in elementwise_gpu.ACTIVATIONS]
            plans += [f(5, dtype, **b) for f in (elementwise_gpu.relu_forward, elementwise_gpu.relu_backward,
                                                 elementwise_gpu.sigmoid_forward, elementwise_gpu.sigmoid_backward)]
            plans += [elementwise_gpu.dropout(5, dtype, 0.5, **b), elementwise_gpu.sgd_update(5, dtype, 0.1, **b),
                      elementwise_gpu.cross_entropy_forward(2, 3, dtype, **b),
                      elementwise_gpu.cross_entropy_backward(2, 3, dtype, **b)]
            for p in plans:
                found[p.source][p.kernel] = p
    advance = elementwise_gpu.rng_advance()
    found[advance.source][advance.kernel] = advance
    return found


def planned_kernels() -> dict:
    """source -> every kernel name a plan can ask for."""
    return {source: set(plans) for source, plans in planned_plans().items()}


# bytes of each parameter letter (emulate.h's spelling) as CuPy packs the argument
LETTER_BYTES = {"p": 8, **{k: np.dtype(v).itemsize for k, v in plan.SCALAR_TYPES.items()}}

# PTX instructions that flush subnormals (".ftz"), by opcode
FTZ = re.compile(r"^\s*(?:@!?%p\d+\s+)?([\w.]*\.ftz[\w.]*)", re.M)
# the two the CUDA math library (libdevice) uses inside expf and double division /
# exp whatever the flag: an approximation on a range-reduced argument, never on a
# subnormal, refined after; they appear alike with -ftz=true and --ftz=false
LIBDEVICE_FTZ = {"ex2.approx.ftz.f32", "rcp.approx.ftz.f64"}


def ftz_opcodes(ptx: str) -> set:
    return set(FTZ.findall(ptx))


@pytest.fixture(scope="module")
def nvrtc():
    """CuPy's binding of the real NVRTC library (no GPU needed to compile)."""
    try:
        import cupy
        binding = cupy.cuda.nvrtc
        version = binding.getVersion()
    except Exception as exc:  # noqa: BLE001 - ImportError, a missing libnvrtc, ...
        why = (f"the real NVRTC is not usable here ({type(exc).__name__}: "
               f"{str(exc).splitlines()[0] if str(exc) else ''}); "
               "bash scripts/setup_gpu_wheels.sh installs it")
        if os.environ.get("CI"):
            pytest.fail(f"CI must compile the CUDA sources with NVRTC: {why}")
        pytest.skip(why)
    return SimpleNamespace(binding=binding, version=version, builds={})


def build(nvrtc, source, arch):
    """One NVRTC build (with ptxas's report) per source and arch, kept for the module."""
    key = (source, arch)
    if key not in nvrtc.builds:
        nvrtc.builds[key] = cuda_build.compile_with_nvrtc(nvrtc.binding, source, arch,
                                                          report=True)
    return nvrtc.builds[key]


@pytest.mark.parametrize("arch", cuda_build.ARCHS)
@pytest.mark.parametrize("source", cuda_build.SOURCES)
def test_source_compiles_with_the_real_nvrtc_as_the_gpu_path_builds_it(nvrtc, source, arch,
                                                                       capsys):
    b = build(nvrtc, source, arch)
    assert b.binary[:4] == b"\x7fELF"                          # a cubin
    entries = b.entries()
    wanted = planned_plans()[source]
    missing = sorted(set(wanted) - set(entries))
    assert not missing, f"planned kernels missing from the PTX: {missing}"
    for name, p in wanted.items():
        packed = tuple(LETTER_BYTES[letter] for letter in p.signature)
        assert entries[name] == packed, (name, p.signature, entries[name])
    assert ftz_opcodes(b.ptx) <= LIBDEVICE_FTZ, "an instruction flushes subnormals"
    kernels_ = b.kernels()
    assert set(kernels_) == set(entries), "ptxas reported other kernels than the PTX has"
    assert b.spilling() == {}, b.log[-3000:]
    assert all(r.stack_bytes == 0 for r in kernels_.values()), b.log[-3000:]
    assert all(0 < r.registers <= 64 for r in kernels_.values())   # common.cuh's bound
    registers = [r.registers for r in kernels_.values()]
    with capsys.disabled():                       # the report, in CI's log too
        print(f"\n  NVRTC {'.'.join(map(str, nvrtc.version))} {arch} {source}.cu: "
              f"{len(kernels_)} kernels, registers {min(registers)}-{max(registers)}, "
              f"spills 0, stack 0, {b.seconds:.1f} s", end="")


def test_cupys_own_compile_flag_would_flush_subnormals(nvrtc):
    """What the check above guards against: the same source with the -ftz=true that
    CuPy's RawModule(code=...) appends flushes in its own arithmetic and comparisons
    (so the check can fail)."""
    code = cuda_build.module_code("pool")
    program = nvrtc.binding.createProgram(code, "pool.cu", (), ())
    try:
        nvrtc.binding.compileProgram(program, cuda_build.nvrtc_options("compute_90")
                                     + ("-ftz=true",))
        ptx = nvrtc.binding.getPTX(program)
    finally:
        nvrtc.binding.destroyProgram(program)
    ptx = ptx.decode() if isinstance(ptx, bytes) else ptx
    assert {"setp.gt.ftz.f32", "add.rn.ftz.f32"} <= ftz_opcodes(ptx) - LIBDEVICE_FTZ


def test_the_gpu_provider_writes_the_real_cubin_to_its_cache(nvrtc, tmp_path):
    """gpu_modules.CupyModules with the real NVRTC, only the GPU's compute capability
    given: the binary it would load with cupy.RawModule(path=...) is NVRTC's cubin."""
    from tinyalex.kernels import gpu_modules
    loaded = []
    cupy = SimpleNamespace(RawModule=lambda path: loaded.append(path), cuda=SimpleNamespace(
        nvrtc=nvrtc.binding, Device=lambda: SimpleNamespace(compute_capability="90")))
    gpu_modules.CupyModules(cupy, cache_dir=tmp_path).module("pool")
    assert len(loaded) == 1 and loaded[0].endswith(".cubin")
    cubin = open(loaded[0], "rb").read()
    assert cubin[:4] == b"\x7fELF"                   # the kernels' names in its symbols
    assert all(name.encode() + b"\x00" in cubin for name in planned_plans()["pool"])


def test_ptxas_report_parser_reads_spills():
    nvcc = ("ptxas info    : Compiling entry function 'k1' for 'sm_80'\n"
            "ptxas info    : Function properties for k1\n"
            "    8 bytes stack frame, 16 bytes spill stores, 12 bytes spill loads\n"
            "ptxas info    : Used 32 registers, used 0 barriers, 544 bytes cmem[0]\n")
    nvrtc_log = ("ptxas info    : Compiling entry function 'k2' for 'sm_90'\n"
                 "ptxas info    : Function properties for k2\n"
                 "ptxas         .     0 bytes stack frame, 0 bytes spill stores, "
                 "0 bytes spill loads\n"
                 "ptxas info    : Used 20 registers, used 0 barriers\n")
    assert cuda_build.parse_ptxas_report(nvcc + nvrtc_log) == {
        "k1": cuda_build.KernelResources(32, 8, 16, 12),
        "k2": cuda_build.KernelResources(20, 0, 0, 0)}


def test_ptx_entry_parser_reads_parameter_sizes():
    ptx = (".visible .entry k(\n\t.param .u64 k_param_0,\n\t.param .u32 k_param_1,\n"
           "\t.param .f64 k_param_2\n)\n{\n}\n.visible .entry none()\n{\n}\n")
    assert cuda_build.parse_ptx_entries(ptx) == {"k": (8, 4, 8), "none": ()}


def test_every_source_opens_with_what_it_holds_and_where_its_reference_is():
    for name in cuda_build.SOURCES:
        head = cuda_build.source_text(name).split("#include", 1)[0]
        assert head.startswith(f"// {name}.cu:") and "Reference" in head and "built" in head


def test_device_code_includes_no_standard_header():
    """NVRTC (cupy.RawModule) has no standard headers: the sources include common.cuh
    alone, and common.cuh includes emulate.h (the C library's) for host compilers only."""
    include = re.compile(r'^\s*#\s*include\s*([<"][^>"]+[>"])', re.M)
    for name in cuda_build.SOURCES:
        assert include.findall(cuda_build.source_text(name)) == ['"common.cuh"'], name
    common = (cuda_build.CUDA_DIR / "common.cuh").read_text()
    assert include.findall(common) == ['"emulate.h"']
    guarded = common.split("#if defined(__CUDACC__) || defined(__CUDACC_RTC__)", 1)[1]
    assert guarded.index("#else") < guarded.index('#include "emulate.h"') \
        < guarded.index("#endif")


# -- (b) the emulation ------------------------------------------------------------------------

@pytest.fixture
def emu(cuda_emulation):
    return cuda_emulation          # conftest.py: built by g++ once per session


def test_plans_pack_the_arguments_each_compiled_kernel_declares(emu):
    """The planner's parameter types and order equal the C parameter lists, kernel by kernel
    (emulate.h reads them from the compiled functions' types)."""
    for names in planned_kernels().values():
        for name in names:
            assert emu.get_function(name).signature, name
    for dtype in DTYPES:
        for bits in BITS:
            for p in (conv_im2col_gpu.im2col(2, 3, 5, 5, 3, 3, 1, 1, 1, 1, dtype, "nhwc", index_bits=bits),
                      conv_im2col_gpu.col2im(2, 3, 5, 5, 3, 3, 1, 1, 1, 1, dtype, "nchw", index_bits=bits),
                      pool_gpu.max_pool_backward(2, 5, 5, 3, 3, 3, 2, 2, 1, 1, dtype,
                                             index_bits=bits),
                      elementwise_gpu.dropout(7, dtype, 0.3, 2, index_bits=bits),
                      elementwise_gpu.sgd_update(7, dtype, 0.1, 0.9, 1e-4, index_bits=bits),
                      elementwise_gpu.cross_entropy_backward(4, 10, dtype, index_bits=bits),
                      elementwise_gpu.bias_activation(4, 3, dtype, "sigmoid", index_bits=bits)):
                assert emu.get_function(p.kernel).signature == p.signature, p.kernel
    assert emu.get_function("rng_advance").signature == elementwise_gpu.rng_advance().signature


def test_the_emulated_provider_refuses_a_kernel_its_source_does_not_define(emu):
    """One module per source, as cupy.RawModule has: a plan naming the wrong .cu fails
    on the CPU as it would on the GPU, and every planned kernel is in its own source."""
    import dataclasses
    from tinyalex.kernels import gpu_modules
    modules = gpu_modules.EmulatedModules(emu)
    for source, names in planned_kernels().items():
        for name in names:
            assert emu.get_function(name).source == source, name
    p = elementwise_gpu.relu_forward(4, np.float32)
    x = np.arange(-2, 2, dtype=np.float32)
    wrong = dataclasses.replace(p, source="pool")
    with pytest.raises(ValueError, match=r"pool.cu defines no kernel 'relu_forward_f32_i32' "
                                         r"\(it is in elementwise.cu\)"):
        modules.launch(wrong, x=x, y=np.empty_like(x))
    y = np.empty_like(x)
    modules.launch(p, x=x, y=y)                      # the right source: runs
    np.testing.assert_array_equal(y, np.maximum(x, 0))
    with pytest.raises(ValueError, match="no CUDA source 'relu'"):
        modules.module("relu")


def test_emulated_kernels_refuse_arguments_cupy_would_pass_with_the_wrong_size(emu):
    p = elementwise_gpu.relu_forward(4, np.float32)
    x = np.arange(4, dtype=np.float32)
    args = list(p.args(x=x, y=np.empty_like(x)))
    args[2] = 4                                     # a Python int: CuPy would pass 8 bytes
    with pytest.raises(TypeError, match="int32"):
        emu.get_function(p.kernel)((1,), (p.block,), tuple(args))
    with pytest.raises(TypeError, match="3 arguments"):
        emu.get_function(p.kernel)((1,), (p.block,), tuple(args[:2]))
    with pytest.raises(ValueError, match="no kernel"):
        emu.get_function("relu_forward_f16_i32")


def data(seed, shape, dtype, ties=False):
    rng = np.random.default_rng(seed)
    if ties:                                        # few distinct values: ties in windows
        return rng.integers(-3, 4, size=shape).astype(dtype)
    return rng.standard_normal(shape).astype(dtype)


def nhwc(a):
    """(N, C, H, W) values in (N, H, W, C) memory."""
    return np.ascontiguousarray(a.transpose(0, 2, 3, 1))


def cl_columns(cols, C, KH, KW):
    """Reference columns (c, kh, kw) reordered to (kh, kw, c)."""
    return np.ascontiguousarray(
        cols.reshape(-1, C, KH, KW).transpose(0, 2, 3, 1).reshape(cols.shape[0], -1))


@pytest.mark.parametrize("bits", BITS)
@pytest.mark.parametrize("dtype", DTYPES)
@FEW
@given(g=batch_geometry(), blocks=GRIDS, seed=st.integers(0, 2**32 - 1))
def test_im2col_and_col2im_equal_the_reference_in_both_layouts(emu, dtype, bits, g, blocks,
                                                               seed):
    N, C, H, W, KH, KW, SH, SW, PH, PW = g
    x = data(seed, (N, C, H, W), dtype)
    cols_ref = im2col(x, KH, KW, SH, SW, PH, PW)                # (N*OH*OW, C*KH*KW)
    gcols = data(seed + 1, cols_ref.shape, dtype)
    gx_ref = col2im(gcols, x.shape, KH, KW, SH, SW, PH, PW)     # (N, C, H, W)
    geometry = (N, C, H, W, KH, KW, SH, SW, PH, PW, dtype)
    opts = dict(index_bits=bits, max_blocks=blocks)
    for layout, xin, want, gin in (
            ("nchw", x, cols_ref, gcols),
            ("nhwc", nhwc(x), cl_columns(cols_ref, C, KH, KW), cl_columns(gcols, C, KH, KW))):
        cols = np.full(want.shape, np.nan, dtype)
        plan.launch(emu, conv_im2col_gpu.im2col(*geometry, layout, **opts), x=xin, cols=cols)
        np.testing.assert_array_equal(cols, want)
        gx = np.full(xin.shape, np.nan, dtype)
        plan.launch(emu, conv_im2col_gpu.col2im(*geometry, layout, **opts), cols=gin, gx=gx)
        # the gather adds in the reference's (kh, kw) order: equal bit for bit
        np.testing.assert_array_equal(gx if layout == "nchw" else gx.transpose(0, 3, 1, 2),
                                      gx_ref)


def pool_images(x, layout):
    """(x_images (NI, H, W, CI), to_nchw) as kernels/fastset.py pools either memory order."""
    N, C, H, W = x.shape
    if layout == "plain":
        return np.ascontiguousarray(x).reshape(N * C, H, W, 1), \
            lambda a: a.reshape(N, C, a.shape[1], a.shape[2])
    return nhwc(x), lambda a: a.transpose(0, 3, 1, 2)


@pytest.mark.parametrize("bits", BITS)
@pytest.mark.parametrize("dtype", DTYPES)
@FEW
@given(g=batch_geometry(pool=True), blocks=GRIDS, seed=st.integers(0, 2**32 - 1),
       special=st.sampled_from([None, np.nan, -np.inf]))
def test_max_pool_equals_the_reference(emu, dtype, bits, g, blocks, seed, special):
    N, C, H, W, KH, KW, SH, SW, PH, PW = g
    x = data(seed, (N, C, H, W), dtype, ties=True)
    if special is not None:                     # a NaN wins its windows; -inf never does
        x.reshape(-1)[np.random.default_rng(seed).integers(0, x.size, 2)] = special
    win = (KH, KW, SH, SW, PH, PW)
    y_ref, arg_ref = max_pool_reference(x, *win)
    gy = data(seed + 1, y_ref.shape, dtype)
    gx_ref = max_pool_backward_reference(gy, arg_ref, x.shape, *win)
    for layout in ("plain", "channels_last"):
        xi, to_nchw = pool_images(x, layout)
        NI, _, _, CI = xi.shape
        OH, OW = y_ref.shape[2:]
        y = np.full((NI, OH, OW, CI), np.nan, dtype)
        arg = np.full((NI, OH, OW, CI), -1, np.int32)
        sizes = (NI, H, W, CI, *win, dtype)
        opts = dict(index_bits=bits, max_blocks=blocks)
        plan.launch(emu, pool_gpu.max_pool_forward(*sizes, **opts), x=xi, y=y, argmax=arg)
        np.testing.assert_array_equal(to_nchw(y), y_ref)
        np.testing.assert_array_equal(to_nchw(arg).reshape(-1), arg_ref)
        gyi, _ = pool_images(gy, layout)
        gx = np.full(xi.shape, np.nan, dtype)
        plan.launch(emu, pool_gpu.max_pool_backward(*sizes, **opts), gy=gyi, argmax=arg, gx=gx)
        np.testing.assert_array_equal(to_nchw(gx), gx_ref)


def test_float32_subnormals_are_kept_as_ieee_and_the_numpy_reference_keep_them(emu):
    """The behaviour chosen for the GPU (NVRTC with --ftz=false, checked in the PTX
    above), run on the emulation: ReLU passes a positive subnormal through, max
    pooling picks a subnormal over 0 (the reference's index), the bias add and the SGD
    step compute with subnormals; under -ftz=true each would give 0 or another index."""
    tiny = np.float32(1e-40)                           # subnormal: below 2**-126
    assert 0 < tiny < np.finfo(np.float32).tiny
    x = np.array([tiny, -tiny, 0, 3 * tiny], np.float32)
    y = np.full_like(x, np.nan)
    plan.launch(emu, elementwise_gpu.relu_forward(4, np.float32), x=x, y=y)
    np.testing.assert_array_equal(y, RELU_REFERENCE.forward(x))
    assert y[0] == tiny and y[3] == 3 * tiny
    pair = np.array([0, tiny], np.float32).reshape(1, 1, 1, 2)       # one 1x2 window
    y_ref, arg_ref = max_pool_reference(pair, 1, 2, 1, 2, 0, 0)
    out, arg = np.full((1, 1, 1, 1), np.nan, np.float32), np.full((1, 1, 1, 1), -1, np.int32)
    plan.launch(emu, pool_gpu.max_pool_forward(1, 1, 2, 1, 1, 2, 1, 2, 0, 0, np.float32),
                x=pair.reshape(1, 1, 2, 1), y=out, argmax=arg)
    assert out.item() == y_ref.item() == tiny and arg.item() == arg_ref.item() == 1
    z = np.array([[tiny, 0]], np.float32)
    bias = np.array([tiny, tiny], np.float32)
    biased = np.full_like(z, np.nan)
    plan.launch(emu, elementwise_gpu.bias_activation(1, 2, np.float32, "add"), y=z, bias=bias,
                out=biased)
    np.testing.assert_array_equal(biased, [[2 * tiny, tiny]])
    param, grad = np.array([3 * tiny], np.float32), np.array([tiny], np.float32)
    plan.launch(emu, elementwise_gpu.sgd_update(1, np.float32, 1.0), p=param, g=grad, buf=None)
    assert param.item() == 2 * tiny


@pytest.mark.parametrize("bits", BITS)
@pytest.mark.parametrize("dtype", DTYPES)
@FEW
@given(g=batch_geometry(pool=True), blocks=GRIDS, seed=st.integers(0, 2**32 - 1))
def test_avg_pool_equals_the_reference(emu, dtype, bits, g, blocks, seed):
    N, C, H, W, KH, KW, SH, SW, PH, PW = g
    x = data(seed, (N, C, H, W), dtype)
    win = (KH, KW, SH, SW, PH, PW)
    y_ref = avg_pool_reference(x, *win)
    gy = data(seed + 1, y_ref.shape, dtype)
    gx_ref = avg_pool_backward_reference(gy, x.shape, *win)
    for layout in ("plain", "channels_last"):
        xi, to_nchw = pool_images(x, layout)
        NI, _, _, CI = xi.shape
        y = np.full((NI, *y_ref.shape[2:], CI), np.nan, dtype)
        sizes = (NI, H, W, CI, *win, dtype)
        opts = dict(index_bits=bits, max_blocks=blocks)
        plan.launch(emu, pool_gpu.avg_pool_forward(*sizes, **opts), x=xi, y=y)
        if KH * KW < 8:     # NumPy sums rows of fewer than 8 in order, longer ones pairwise
            np.testing.assert_array_equal(to_nchw(y), y_ref)
        else:
            np.testing.assert_allclose(to_nchw(y), y_ref, **tol(dtype))
        gyi, _ = pool_images(gy, layout)
        gx = np.full(xi.shape, np.nan, dtype)
        plan.launch(emu, pool_gpu.avg_pool_backward(*sizes, **opts), gy=gyi, gx=gx)
        np.testing.assert_array_equal(to_nchw(gx), gx_ref)


@pytest.mark.parametrize("bits", BITS)
@pytest.mark.parametrize("dtype", DTYPES)
@FEW
@given(rows=st.integers(1, 40), OC=st.integers(1, 9), blocks=GRIDS,
       seed=st.integers(0, 2**32 - 1))
def test_bias_activations_and_activations_equal_the_reference(emu, dtype, bits, rows, OC,
                                                              blocks, seed):
    opts = dict(index_bits=bits, max_blocks=blocks)
    y = data(seed, (rows, OC), dtype) * 8                 # sigmoid's both branches, saturated
    y[0, 0] = 0.0                                         # ReLU's kink: its mask is y > 0
    bias = data(seed + 1, (OC,), dtype)
    gy = data(seed + 2, (rows, OC), dtype)
    z = y + bias                                          # (rows, OC) + (OC,)
    for activation, want, exact in (("add", z, True),
                                    ("relu", RELU_REFERENCE.forward(z), True),
                                    ("sigmoid", SIGMOID_REFERENCE.forward(z), False)):
        out = np.full_like(y, np.nan)
        plan.launch(emu, elementwise_gpu.bias_activation(rows, OC, dtype, activation, **opts), y=y,
                    bias=bias, out=out)
        (np.testing.assert_array_equal if exact else
         lambda a, b: np.testing.assert_allclose(a, b, **tol(dtype)))(out, want)
    inplace = y.copy()                                    # out may be y itself
    plan.launch(emu, elementwise_gpu.bias_activation(rows, OC, dtype, "relu", **opts), y=inplace,
                bias=bias, out=inplace)
    np.testing.assert_array_equal(inplace, RELU_REFERENCE.forward(z))

    n = y.size
    for name, ref, exact in (("relu", RELU_REFERENCE.forward, True),
                             ("sigmoid", SIGMOID_REFERENCE.forward, False)):
        out = np.full_like(y, np.nan)
        plan.launch(emu, getattr(elementwise_gpu, f"{name}_forward")(n, dtype, **opts), x=y, y=out)
        want = ref(y)
        if exact:
            np.testing.assert_array_equal(out, want)
        else:
            np.testing.assert_allclose(out, want, **tol(dtype))
        gx = np.full_like(y, np.nan)
        plan.launch(emu, getattr(elementwise_gpu, f"{name}_backward")(n, dtype, **opts), gy=gy, y=want,
                    gx=gx)
        backward = {"relu": RELU_REFERENCE, "sigmoid": SIGMOID_REFERENCE}[name].backward
        np.testing.assert_array_equal(gx, backward(gy, want))   # no exp: equal bit for bit


@pytest.mark.parametrize("bits", BITS)
@pytest.mark.parametrize("dtype", DTYPES)
@FEW
@given(shape=st.tuples(st.integers(1, 5), st.integers(1, 30)), blocks=GRIDS,
       p=st.sampled_from([0.0, 0.1, 0.5, 0.9, 1.0, 1 / 3]), stream=st.integers(0, 65535),
       base=st.integers(0, 2**64 - 1), step=st.integers(0, 2**40), seed=st.integers(0, 2**32 - 1))
def test_dropout_masks_are_the_reference_masks_of_the_derived_seed(emu, dtype, bits, shape,
                                                                   blocks, p, stream, base,
                                                                   step, seed):
    x = data(seed, shape, dtype)
    rng = np.array([base, step], np.uint64)               # {base seed, step} on the "device"
    dropout = elementwise_gpu.dropout(x.size, dtype, p, stream, index_bits=bits, max_blocks=blocks)
    y = np.full_like(x, np.nan)
    plan.launch(emu, dropout, x=x, y=y, rng=rng)
    np.testing.assert_array_equal(
        y, DROPOUT_REFERENCE.forward(x, p, elementwise_gpu.dropout_seed(base, step, stream)))
    gx = np.full_like(x, np.nan)                          # backward: the same launch on gy
    plan.launch(emu, dropout, x=y, y=gx, rng=rng)
    np.testing.assert_array_equal(
        gx, DROPOUT_REFERENCE.forward(y, p, elementwise_gpu.dropout_seed(base, step, stream)))
    plan.launch(emu, elementwise_gpu.rng_advance(), rng=rng)          # the next step: a fresh mask
    assert rng.tolist() == [base, (step + 1) % 2**64]
    plan.launch(emu, dropout, x=x, y=y, rng=rng)
    np.testing.assert_array_equal(
        y, DROPOUT_REFERENCE.forward(x, p, elementwise_gpu.dropout_seed(base, step + 1, stream)))


def test_dropout_seed_is_splitmix64_of_the_step_and_stream():
    base, step, stream = 12345, 7, 3
    counter = step * elementwise_gpu.STREAMS + stream               # the counter-th output after base
    assert elementwise_gpu.dropout_seed(base, step, stream) == int(R.splitmix64(base, counter + 1)[-1])
    seeds = {elementwise_gpu.dropout_seed(base, s, t) for s in range(4) for t in range(4)}
    assert len(seeds) == 16


def test_splitmix64_is_defined_once_and_the_cuda_copy_holds_the_same_constants():
    """tinyalex/random.py defines SplitMix64's constants; the Numba loops and the CUDA
    plans import them, and elementwise.cu's #defines (C cannot import) equal them."""
    from tinyalex.kernels import numba_elementwise
    source = cuda_build.source_text("elementwise")
    for name in ("GOLDEN", "MIX1", "MIX2"):
        value = getattr(R, name)
        defined = re.search(rf"^#define {name} (0x[0-9A-Fa-f]+)ull$", source, re.M)
        assert defined is not None, f"elementwise.cu no longer #defines {name}"
        assert int(defined.group(1), 16) == value, name
        assert int(getattr(numba_elementwise, name)) == value, name
    assert elementwise_gpu.GOLDEN is R.GOLDEN and elementwise_gpu.MIX1 is R.MIX1 \
        and elementwise_gpu.MIX2 is R.MIX2
    assert not re.search(r"0x9E3779B97F4A7C15|0xBF58476D1CE4E5B9|0x94D049BB133111EB",
                         source.split("#define MIX2", 1)[1].split("\n", 1)[1],
                         re.I)                                 # no second copy below


@pytest.mark.parametrize("bits", BITS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("momentum, weight_decay", [(0.0, 0.0), (0.9, 0.0), (0.9, 5e-4),
                                                    (0.0, 1e-2)])
def test_sgd_update_over_one_flat_buffer_equals_optim_sgd(emu, dtype, bits, momentum,
                                                          weight_decay):
    """Three steps of tinyalex.optim.SGD (reference kernels) on three parameters, and the
    kernel on their concatenation: equal bit for bit."""
    rng = np.random.default_rng(0)
    shapes = [(4, 3, 2, 2), (4,), (5, 7)]
    start = [rng.standard_normal(s).astype(dtype) for s in shapes]
    start[1][0] = np.inf            # weight decay 0 must leave it inf (0 * inf would be NaN)
    grads = [[rng.standard_normal(s).astype(dtype) for s in shapes] for _ in range(3)]
    params = [Tensor(a.copy(), requires_grad=True) for a in start]
    opt = SGD(params, lr=0.1, momentum=momentum, weight_decay=weight_decay)
    flat = np.concatenate([a.reshape(-1) for a in start])   # one buffer of all parameters
    buf = np.full_like(flat, np.nan) if momentum else None     # the first step overwrites it
    with kernels.use("reference"), np.errstate(invalid="ignore"):    # inf - inf with decay
        for i, gs in enumerate(grads):
            for t, g in zip(params, gs):
                t.grad = Tensor(g)
            opt.step()
            step = elementwise_gpu.sgd_update(flat.size, dtype, 0.1, momentum, weight_decay, first=i == 0,
                                   index_bits=bits, max_blocks=1)
            plan.launch(emu, step, p=flat, g=np.concatenate([g.reshape(-1) for g in gs]),
                        buf=buf)
    np.testing.assert_array_equal(flat, np.concatenate([t.array.reshape(-1) for t in params]))


@pytest.mark.parametrize("bits", BITS)
@pytest.mark.parametrize("dtype", DTYPES)
@FEW
@given(N=st.integers(1, 20), K=st.integers(1, 12), blocks=GRIDS, seed=st.integers(0, 2**32 - 1))
def test_cross_entropy_pieces_equal_the_reference(emu, dtype, bits, N, K, blocks, seed):
    rng = np.random.default_rng(seed)
    logits = (rng.standard_normal((N, K)) * 5).astype(dtype)
    labels = rng.integers(0, K, N).astype(np.int64)
    opts = dict(index_bits=bits, max_blocks=blocks)
    x = Tensor(logits.copy(), requires_grad=True)
    loss = cross_entropy(x, labels)
    loss.backward()
    row_loss, row_hit = np.full(N, np.nan, dtype), np.full(N, np.nan, dtype)
    bad = np.zeros(1, np.int32)
    plan.launch(emu, elementwise_gpu.cross_entropy_forward(N, K, dtype, **opts), logits=logits,
                labels=labels, row_loss=row_loss, row_hit=row_hit, bad=bad)
    assert bad[0] == 0
    np.testing.assert_allclose(row_loss.mean(), loss.array, rtol=1e-5 if dtype == np.float32
                               else 1e-12)
    np.testing.assert_array_equal(row_hit, (logits.argmax(axis=1) == labels).astype(dtype))
    g = np.full_like(logits, np.nan)
    gy = np.ones(1, dtype)                                 # d loss / d loss, on the device
    plan.launch(emu, elementwise_gpu.cross_entropy_backward(N, K, dtype, **opts), logits=logits,
                labels=labels, gy=gy, g=g)
    np.testing.assert_allclose(g, x.grad.array, rtol=1e-5 if dtype == np.float32 else 1e-12,
                               atol=1e-7 if dtype == np.float32 else 1e-15)


def test_cross_entropy_flags_a_bad_label_on_the_device(emu):
    logits = np.zeros((3, 4), np.float32)
    labels = np.array([1, 4, -1], np.int64)
    row_loss, row_hit, bad = np.zeros(3, np.float32), np.zeros(3, np.float32), np.zeros(1, np.int32)
    plan.launch(emu, elementwise_gpu.cross_entropy_forward(3, 4, np.float32), logits=logits,
                labels=labels, row_loss=row_loss, row_hit=row_hit, bad=bad)
    assert bad[0] == 1
    assert np.isfinite(row_loss[0]) and np.isnan(row_loss[1:]).all()


# -- (c) the host logic --------------------------------------------------------------------

@settings(max_examples=300)
@given(bits=st.sampled_from(BITS), data_=st.data())
def test_magic_division_equals_floor_division(bits, data_):
    top = 2 ** (bits - 1)
    d = data_.draw(st.one_of(st.integers(1, 300), st.integers(1, top - 1),
                             st.sampled_from([1, 2, 3, 7, top // 2, top // 2 + 1, top - 1])))
    magic, shift = plan.magic_divider(d, bits)
    assert 0 < magic < 2**bits and 2**shift >= d
    for n in data_.draw(st.lists(st.one_of(st.integers(0, top - 1),
                                           st.sampled_from([0, 1, d - 1, d, d + 1, top - 1])),
                                 min_size=1, max_size=20)):
        if 0 <= n < top:
            assert plan.divide(n, magic, shift, bits) == n // d, (n, d, bits)


def test_magic_division_exhaustively_for_small_divisors():
    n = np.arange(0, 1 << 16, dtype=np.uint64)
    for d in range(1, 400):
        magic, shift = plan.magic_divider(d, 32)
        q = (((n * np.uint64(magic)) >> np.uint64(32)) + n) >> np.uint64(shift)
        np.testing.assert_array_equal(q, n // np.uint64(d))
    with pytest.raises(ValueError, match="divisor"):
        plan.magic_divider(2**31, 32)
    with pytest.raises(ValueError, match="divisor"):
        plan.magic_divider(0, 64)


def test_the_planner_takes_64_bit_indices_past_two_to_the_31():
    span = plan.MAX_BLOCKS * plan.BLOCK            # the grid-stride step of a full grid
    last32 = 2**31 - 1 - span                      # the largest size with 32-bit indices
    assert elementwise_gpu.relu_forward(last32, np.float32).kernel == "relu_forward_f32_i32"
    assert elementwise_gpu.relu_forward(last32 + 1, np.float32).kernel == "relu_forward_f32_i64"
    p = elementwise_gpu.relu_forward(last32 + 1, np.float32)
    assert p.grid == plan.MAX_BLOCKS and p.signature == "ppl"
    with pytest.raises(ValueError, match="32-bit indices cannot"):
        elementwise_gpu.relu_forward(last32 + 1, np.float32, index_bits=32)

    # AlexNet's conv1 columns at batch 4096: 4096*55*55*363 = 4.5e9 entries
    N, C, H, W, KH, KW, SH, SW, PH, PW = 4096, 3, 224, 224, 11, 11, 4, 4, 2, 2
    OH = conv_output_size(H, KH, SH, PH)
    big = conv_im2col_gpu.im2col(N, C, H, W, KH, KW, SH, SW, PH, PW, np.float32, "nhwc")
    assert big.kernel == "im2col_nhwc_f32_i64" and big.index_bits == 64
    total = N * OH * OH * C * KH * KW
    values = {q.name: int(q.value) for q in big.params if q.letter != "p"}
    assert values["total"] == total > 2**32
    # the 64-bit magic numbers split the last index of that array correctly
    K = C * KH * KW
    for name, d, n in (("K", K, total - 1), ("OW", OH, (total - 1) // K)):
        assert values[name + "_d"] == d
        assert plan.divide(n, values[name + "_m"], values[name + "_s"], 64) == n // d
    # at batch 128 it fits 32 bits
    assert conv_im2col_gpu.im2col(128, C, H, W, KH, KW, SH, SW, PH, PW, np.float32,
                       "nhwc").kernel == "im2col_nhwc_f32_i32"
    # col2im and pooling count their input arrays too: a small result, large input
    assert conv_im2col_gpu.col2im(N, C, H, W, KH, KW, SH, SW, PH, PW, np.float32).index_bits == 64
    assert pool_gpu.max_pool_backward(2**16, 128, 128, 2, 64, 64, 64, 64, 0, 0,
                                  np.float32).index_bits == 64


def test_plan_args_check_every_array_before_a_launch():
    p = conv_im2col_gpu.im2col(1, 2, 4, 4, 3, 3, 1, 1, 1, 1, np.float32, "nchw")
    x, cols = np.zeros((1, 2, 4, 4), np.float32), np.zeros((16, 18), np.float32)
    args = p.args(x=x, cols=cols)
    assert args[0] is x and args[1] is cols and len(args) == len(p.signature)
    assert all(type(a) is plan.SCALAR_TYPES[s] for a, s in zip(args, p.signature) if s != "p")
    with pytest.raises(ValueError, match="'x' must be C-contiguous float32 with 32"):
        p.args(x=x.astype(np.float64), cols=cols)
    with pytest.raises(ValueError, match="with 288 elements"):
        p.args(x=x, cols=cols[:8])
    with pytest.raises(ValueError, match="not C-contiguous"):
        p.args(x=np.zeros((1, 4, 4, 2), np.float32).transpose(0, 3, 1, 2), cols=cols)
    with pytest.raises(ValueError, match="missing \\['cols'\\]"):
        p.args(x=x)
    with pytest.raises(ValueError, match="float32 or float64"):
        conv_im2col_gpu.im2col(1, 2, 4, 4, 3, 3, 1, 1, 1, 1, np.float16)
    with pytest.raises(ValueError, match="does not fit"):
        conv_im2col_gpu.im2col(1, 2, 4, 4, 7, 3, 1, 1, 1, 1, np.float32)
    with pytest.raises(ValueError, match="KH must be an int >= 1"):
        pool_gpu.max_pool_forward(1, 4, 4, 1, 0, 3, 1, 1, 0, 0, np.float32)
    # an unused momentum buffer is a null pointer, as CuPy would pass it
    s = elementwise_gpu.sgd_update(3, np.float32, 0.1)
    assert s.args(p=np.zeros(3, np.float32), g=np.zeros(3, np.float32), buf=None)[2] == 0
    with pytest.raises(ValueError, match="'buf'"):
        elementwise_gpu.sgd_update(3, np.float32, 0.1, 0.9).args(p=np.zeros(3, np.float32),
                                                      g=np.zeros(3, np.float32), buf=None)
