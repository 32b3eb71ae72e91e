// common.cuh: what every kernel source of this folder shares.
//
// What it holds
//   * the integer names: i32, i64 (signed indices), u32, u64 (their unsigned twins);
//   * Div<U>: division by a run-time divisor d as a multiply and a shift, with the
//     magic number computed once on the host (kernels/cuda_launch.py, magic_divider);
//   * grid-stride loop helpers in the index type I (i32 or i64: the launcher picks
//     i64 when an index could pass 2**31 - 1);
//   * the float/double arithmetic with one rounding per operation (add_rn, mul_rn, ...:
//     nvcc never contracts these into FMAs, so a result equals NumPy's, which rounds
//     every operation), exp/log overloads, -inf and NaN;
//   * DIV_PARAMS / DIV: a divisor as three kernel parameters, and back;
//   * FOR_EACH_VARIANT(ENTRY): a kernel's four entry points (float/double, i32/i64);
//   * sum_over_windows: the backward passes' sum over every window that covers one
//     input position, in the reference's order (col2im, max and average pooling);
//   * EMULATE_ENTRY(name): nothing under nvcc/NVRTC; under g++ (emulate.h) the C entry
//     points the CPU tests call.
//
// How it is built: included by each .cu of this folder; on the GPU
// kernels/cuda_launch.py writes it into each source's code before NVRTC compiles it
// (module_code), and g++ finds it beside them.
// No standard header is included on the device side, since NVRTC has none.
#ifndef TINYALEX_COMMON_CUH
#define TINYALEX_COMMON_CUH

#if defined(__CUDACC__) || defined(__CUDACC_RTC__)     // nvcc, or NVRTC
#define EMULATE_ENTRY(NAME)
#else
#include "emulate.h"
#endif

// The largest block the launcher uses (kernels/cuda_launch.py, BLOCK), and at least 4
// such blocks resident per SM: ptxas then allows 64 registers a thread. (Given the
// block size alone, ptxas aims at 8 resident blocks, 32 registers, and the 64-bit
// col2im spills to local memory on sm_80.)
#define TINYALEX_BLOCK 256
#define TINYALEX_BOUNDS __launch_bounds__(TINYALEX_BLOCK, 4)

typedef int i32;
typedef long long i64;
typedef unsigned int u32;
typedef unsigned long long u64;

template <typename I> struct Unsigned;
template <> struct Unsigned<i32> { typedef u32 type; };
template <> struct Unsigned<i64> { typedef u64 type; };

__device__ __forceinline__ u32 mulhi(u32 a, u32 b) { return __umulhi(a, b); }
__device__ __forceinline__ u64 mulhi(u64 a, u64 b) { return __umul64hi(a, b); }

// n / d == (mulhi(n, magic) + n) >> shift for 0 <= n, d < 2**(bits-1), where
// shift = ceil(log2 d) and magic = floor(2**bits * (2**shift - d) / d) + 1 (Granlund and
// Montgomery's round-up method; the sum cannot overflow since mulhi(n, magic) <= n).
template <typename U> struct Div {
    U d, magic;
    u32 shift;
    __device__ __forceinline__ U quotient(U n) const { return (mulhi(n, magic) + n) >> shift; }
    // q = n / d, r = n % d
    __device__ __forceinline__ void divmod(U n, U& q, U& r) const {
        q = quotient(n);
        r = n - q * d;
    }
};

// the first element of this thread, and the step of the grid-stride loop
template <typename I> __device__ __forceinline__ I first_index() {
    return (I)blockIdx.x * (I)blockDim.x + (I)threadIdx.x;
}
template <typename I> __device__ __forceinline__ I grid_stride() {
    return (I)blockDim.x * (I)gridDim.x;
}

__device__ __forceinline__ float add_rn(float a, float b) { return __fadd_rn(a, b); }
__device__ __forceinline__ float sub_rn(float a, float b) { return __fsub_rn(a, b); }
__device__ __forceinline__ float mul_rn(float a, float b) { return __fmul_rn(a, b); }
__device__ __forceinline__ float div_rn(float a, float b) { return __fdiv_rn(a, b); }
__device__ __forceinline__ double add_rn(double a, double b) { return __dadd_rn(a, b); }
__device__ __forceinline__ double sub_rn(double a, double b) { return __dsub_rn(a, b); }
__device__ __forceinline__ double mul_rn(double a, double b) { return __dmul_rn(a, b); }
__device__ __forceinline__ double div_rn(double a, double b) { return __ddiv_rn(a, b); }

__device__ __forceinline__ float exp_t(float v) { return expf(v); }
__device__ __forceinline__ double exp_t(double v) { return exp(v); }
__device__ __forceinline__ float log_t(float v) { return logf(v); }
__device__ __forceinline__ double log_t(double v) { return log(v); }
// correctly rounded (NVRTC builds with --prec-sqrt=true; the C library's on the host)
__device__ __forceinline__ float sqrt_t(float v) { return sqrtf(v); }
__device__ __forceinline__ double sqrt_t(double v) { return sqrt(v); }

template <typename I> __device__ __forceinline__ I imin(I a, I b) { return a < b ? a : b; }

// A divisor is passed as three parameters, U d, U magic, u32 shift (packed by a plan's
// Params.div, kernels/cuda_launch.py), and taken back as one Div<U>.
#define DIV_PARAMS(U, NAME) U NAME##_d, U NAME##_m, u32 NAME##_s
#define DIV(U, NAME) Div<U>{NAME##_d, NAME##_m, NAME##_s}

// Every kernel has four extern "C" entry points, <kernel>_<t>_<i> (the names the plans
// ask cupy.RawModule.get_function for): T float (f32) or double (f64), I i32 or i64,
// and U, I's unsigned twin, for the divisors. FOR_EACH_VARIANT(ENTRY) writes
// ENTRY(<t>_<i>, T, I, U) for each of the four.
#define FOR_EACH_VARIANT(ENTRY)                                                            \
    ENTRY(f32_i32, float, i32, u32)                                                        \
    ENTRY(f64_i32, double, i32, u32)                                                       \
    ENTRY(f32_i64, float, i64, u64)                                                        \
    ENTRY(f64_i64, double, i64, u64)

// The sum, over every window (oh, ow) of a KH x KW, stride (SH, SW) operator whose tap
// (kh, kw) lands on padded position (hp, wp) = (h + PH, w + PW), of term(oh, ow, kh, kw).
// The windows that cover row hp are oh = hp/SH, hp/SH - 1, ... with kh = hp - oh*SH
// growing by SH while it stays below KH: visiting oh (and ow) from the top down visits
// (kh, kw) in increasing order, the order in which the reference adds them.
template <typename T, typename I, typename U, typename Term>
__device__ __forceinline__ T sum_over_windows(I hp, I wp, Div<U> SH, Div<U> SW, I KH, I KW,
                                              I OH, I OW, Term term) {
    const I oh_top = imin<I>(OH - 1, (I)SH.quotient((U)hp));
    const I ow_top = imin<I>(OW - 1, (I)SW.quotient((U)wp));
    T acc = T(0);
    for (I oh = oh_top; oh >= 0; --oh) {
        const I kh = hp - oh * (I)SH.d;
        if (kh >= KH) break;
        for (I ow = ow_top; ow >= 0; --ow) {
            const I kw = wp - ow * (I)SW.d;
            if (kw >= KW) break;
            acc = add_rn(acc, term(oh, ow, kh, kw));
        }
    }
    return acc;
}

template <typename T> __device__ __forceinline__ T neg_inf();
template <> __device__ __forceinline__ float neg_inf<float>() {
    return __int_as_float((int)0xff800000u);
}
template <> __device__ __forceinline__ double neg_inf<double>() {
    return __longlong_as_double((long long)0xfff0000000000000ull);
}

template <typename T> __device__ __forceinline__ T quiet_nan();
template <> __device__ __forceinline__ float quiet_nan<float>() {
    return __int_as_float(0x7fc00000);
}
template <> __device__ __forceinline__ double quiet_nan<double>() {
    return __longlong_as_double(0x7ff8000000000000ll);
}

#endif  // TINYALEX_COMMON_CUH
