"""The CUDA C kernels of ``kernels/cuda/``, tested without a GPU.

(a) Every source compiles with the real NVRTC (the nvidia-cuda-nvrtc wheel, through
    CuPy's binding and tinyalex's own build path, ``cuda_launch.compile_with_nvrtc``,
    with the project's options) for sm_80 and sm_90, no GPU needed: every kernel a
    plan launches is an entry of the PTX with the parameters the plan packs (count and
    sizes), nothing in the PTX flushes subnormals (``.ftz``; CuPy's own path would),
    ptxas reports no spills and no stack, and the registers and spills per source are
    printed. CI installs the wheels (scripts/setup_gpu_wheels.sh) and fails without
    them; elsewhere the test is skipped, saying why.
(b) The same sources, built by g++ against ``kernels/cuda/emulate.h`` (once per
    session): the emulated provider holds the kernels each source defines, with the
    parameters the launch plans pack, and refuses any other kernel or argument list.
(c) The host logic alone: magic-number division, the 32/64-bit choice on sizes past
    2**31 (virtual: nothing is allocated), and the argument checks.

What the kernels compute, against the references (emulated and on a GPU):
``test_gpu_kernels.py``.
"""

import os
import re
from types import SimpleNamespace

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from tinyalex.kernels import conv_im2col_gpu, cuda_emulation, cuda_launch, elementwise_gpu, \
    pool_gpu
from tinyalex.kernels import cuda_launch as plan          # the plans' shared parts
from tinyalex.kernels.geometry import conv_geometry, output_size as conv_output_size, \
    pool_geometry


DTYPES = (np.float32, np.float64)
BITS = (32, 64)


# -- (a) NVRTC --------------------------------------------------------------------------------

def planned_plans() -> dict:
    """source -> {kernel name: a plan of it} for every kernel a plan can ask for (each
    family, memory order, dtype and index type)."""
    found = {s: {} for s in cuda_launch.SOURCES}
    for dtype in DTYPES:
        for bits in BITS:
            b = dict(index_bits=bits)
            cg = conv_geometry((1, 1, 3, 3), (1, 1, 2, 2), 1, 1, 0, 0)
            plans = [conv_im2col_gpu.im2col(cg, dtype, **b), conv_im2col_gpu.col2im(cg, dtype, **b)]
            plans += [f(pool_geometry((1, 1, 3, 3), 2, 2, 1, 1, 0, 0), dtype, **b) for f in
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
        nvrtc.builds[key] = cuda_launch.compile_with_nvrtc(nvrtc.binding, source, arch,
                                                          report=True)
    return nvrtc.builds[key]


@pytest.mark.parametrize("arch", cuda_launch.ARCHS)
@pytest.mark.parametrize("source", cuda_launch.SOURCES)
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
    code = cuda_launch.module_code("pool")
    program = nvrtc.binding.createProgram(code, "pool.cu", (), ())
    try:
        nvrtc.binding.compileProgram(program, cuda_launch.nvrtc_options("compute_90")
                                     + ("-ftz=true",))
        ptx = nvrtc.binding.getPTX(program)
    finally:
        nvrtc.binding.destroyProgram(program)
    ptx = ptx.decode() if isinstance(ptx, bytes) else ptx
    assert {"setp.gt.ftz.f32", "add.rn.ftz.f32"} <= ftz_opcodes(ptx) - LIBDEVICE_FTZ


def test_the_gpu_provider_writes_the_real_cubin_to_its_cache(nvrtc, tmp_path):
    """cuda_launch.CupyModules with the real NVRTC, only the GPU's compute capability
    given: the binary it would load with cupy.RawModule(path=...) is NVRTC's cubin."""
    loaded = []
    cupy = SimpleNamespace(RawModule=lambda path: loaded.append(path), cuda=SimpleNamespace(
        nvrtc=nvrtc.binding, Device=lambda: SimpleNamespace(compute_capability="90")))
    cuda_launch.CupyModules(cupy, cache_dir=tmp_path).module("pool")
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
    assert cuda_launch.parse_ptxas_report(nvcc + nvrtc_log) == {
        "k1": cuda_launch.KernelResources(32, 8, 16, 12),
        "k2": cuda_launch.KernelResources(20, 0, 0, 0)}


def test_ptx_entry_parser_reads_parameter_sizes():
    ptx = (".visible .entry k(\n\t.param .u64 k_param_0,\n\t.param .u32 k_param_1,\n"
           "\t.param .f64 k_param_2\n)\n{\n}\n.visible .entry none()\n{\n}\n")
    assert cuda_launch.parse_ptx_entries(ptx) == {"k": (8, 4, 8), "none": ()}


def test_every_source_opens_with_what_it_holds_and_where_its_reference_is():
    for name in cuda_launch.SOURCES:
        head = cuda_launch.source_text(name).split("#include", 1)[0]
        assert head.startswith(f"// {name}.cu:") and "Reference" in head and "built" in head


def test_device_code_includes_no_standard_header():
    """NVRTC (cupy.RawModule) has no standard headers: the sources include common.cuh
    alone, and common.cuh includes emulate.h (the C library's) for host compilers only."""
    include = re.compile(r'^\s*#\s*include\s*([<"][^>"]+[>"])', re.M)
    for name in cuda_launch.SOURCES:
        assert include.findall(cuda_launch.source_text(name)) == ['"common.cuh"'], name
    common = (cuda_launch.CUDA_DIR / "common.cuh").read_text()
    assert include.findall(common) == ['"emulate.h"']
    guarded = common.split("#if defined(__CUDACC__) || defined(__CUDACC_RTC__)", 1)[1]
    assert guarded.index("#else") < guarded.index('#include "emulate.h"') \
        < guarded.index("#endif")


# -- (b) the emulated provider -----------------------------------------------------------------

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
            cg = conv_geometry((2, 3, 5, 5), (1, 3, 3, 3), 1, 1, 1, 1)
            for p in (conv_im2col_gpu.im2col(cg, dtype, index_bits=bits),
                      conv_im2col_gpu.col2im(cg, dtype, index_bits=bits),
                      pool_gpu.max_pool_backward(pool_geometry((2, 3, 5, 5), 3, 3, 2, 2, 1, 1),
                                                 dtype, index_bits=bits),
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
    modules = cuda_emulation.EmulatedModules(emu)
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
    geo = conv_geometry((N, C, H, W), (1, C, KH, KW), SH, SW, PH, PW)
    big = conv_im2col_gpu.im2col(geo, np.float32)
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
    assert conv_im2col_gpu.im2col(conv_geometry((128, C, H, W), (1, C, KH, KW), SH, SW, PH, PW),
                                  np.float32).kernel == "im2col_nhwc_f32_i32"
    # col2im and pooling count their input arrays too: a small result, large input
    assert conv_im2col_gpu.col2im(geo, np.float32).index_bits == 64
    assert pool_gpu.max_pool_backward(pool_geometry((2**16, 2, 128, 128), 64, 64, 64, 64, 0, 0),
                                      np.float32).index_bits == 64


def test_plan_args_check_every_array_before_a_launch():
    geo = conv_geometry((1, 2, 4, 4), (1, 2, 3, 3), 1, 1, 1, 1)
    p = conv_im2col_gpu.im2col(geo, np.float32)
    x, cols = np.zeros((1, 4, 4, 2), np.float32), np.zeros((16, 18), np.float32)
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
        conv_im2col_gpu.im2col(geo, np.float16)
    # sizes are refused once, by the geometry a plan is built from (a window op's)
    with pytest.raises(ValueError, match="does not fit"):
        conv_geometry((1, 2, 4, 4), (1, 2, 7, 3), 1, 1, 1, 1)
    with pytest.raises(ValueError, match="KH must be a positive int"):
        pool_geometry((1, 1, 4, 4), 0, 3, 1, 1, 0, 0)
    # an unused momentum buffer is a null pointer, as CuPy would pass it
    s = elementwise_gpu.sgd_update(3, np.float32, 0.1)
    assert s.args(p=np.zeros(3, np.float32), g=np.zeros(3, np.float32), buf=None)[2] == 0
    with pytest.raises(ValueError, match="'buf'"):
        elementwise_gpu.sgd_update(3, np.float32, 0.1, 0.9).args(p=np.zeros(3, np.float32),
                                                      g=np.zeros(3, np.float32), buf=None)
