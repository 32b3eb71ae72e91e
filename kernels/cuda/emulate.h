// emulate.h: just enough of CUDA for g++ to build the kernels of this folder as plain
// C++ and run them on the CPU, one thread at a time.
//
// What it holds
//   * the CUDA keywords as no-ops: __global__, __device__, __host__, __forceinline__,
//     __launch_bounds__(...);
//   * dim3, and the built-in indices threadIdx, blockIdx, blockDim, gridDim as
//     thread_local variables that a launch loop sets;
//   * the device intrinsics the kernels use (__umulhi, __umul64hi, the _rn
//     arithmetic that nvcc never fuses into FMAs, __int_as_float, ...), written in C++;
//   * launch(grid, block, kernel, args...): runs every thread of every block in
//     order, and launch_packed(grid, block, kernel, void** args): the same with the
//     arguments given as cuLaunchKernel takes them (an array of pointers to values);
//   * EMULATE_ENTRY(name): for an extern "C" __global__ kernel, three C entry points a
//     test calls through ctypes: emu_<name>(grid, block, args) launches it,
//     emu_sig_<name>() returns its parameter types as a string of letters (p pointer,
//     i int, l long long, I unsigned int, L unsigned long long, f float, d double),
//     which the Python side compares with the arguments it packs, and
//     emu_file_<name>() the .cu file that defines it (__FILE__ where the kernel's
//     macro is used), so that a plan naming the wrong source fails as on the GPU.
//
// What it does not do
//   No shared memory, no __syncthreads, no warp functions, no atomics: the kernels
//   that are built against this header use none (every thread owns its outputs), so
//   running the threads one after another gives what the GPU computes (bit for bit
//   but for exp and log, which are the C library's here; float32 subnormals are kept
//   on both, since NVRTC builds with --ftz=false), and grid-stride loops see the same
//   (grid, block) they would on the GPU.
//
// How it is built: kernels/cuda_emulation.py, build_emulation_library(), runs
//   g++ -x c++ -std=c++17 -O1 -shared -fPIC -ffp-contract=off -I kernels/cuda *.cu
// (common.cuh includes this header when neither __CUDACC__ nor __CUDACC_RTC__ is
// defined, so nvcc and NVRTC never see it). -ffp-contract=off keeps g++ from fusing
// a*b+c, as the _rn intrinsics keep nvcc from it, so both round every operation alike.
#ifndef TINYALEX_EMULATE_H
#define TINYALEX_EMULATE_H
#if defined(__CUDACC__) || defined(__CUDACC_RTC__)
#error "emulate.h is for host compilers only; nvcc and NVRTC have the real CUDA"
#endif

#include <math.h>
#include <cmath>
#include <cstring>
#include <cstddef>
#include <type_traits>
#include <utility>

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __launch_bounds__(...)

struct dim3 {
    unsigned int x, y, z;
    dim3(unsigned int x_ = 1, unsigned int y_ = 1, unsigned int z_ = 1) : x(x_), y(y_), z(z_) {}
};
struct uint3 { unsigned int x, y, z; };

// one set per host thread (the tests launch from one thread; thread_local keeps two
// launches from different threads apart all the same)
inline thread_local uint3 threadIdx = {0, 0, 0};
inline thread_local uint3 blockIdx = {0, 0, 0};
inline thread_local dim3 blockDim;
inline thread_local dim3 gridDim;

// -- device intrinsics, as the CUDA Math API defines them -----------------------------------
inline unsigned int __umulhi(unsigned int a, unsigned int b) {
    return (unsigned int)(((unsigned long long)a * b) >> 32);
}
inline unsigned long long __umul64hi(unsigned long long a, unsigned long long b) {
    return (unsigned long long)(((unsigned __int128)a * b) >> 64);
}
inline float __fadd_rn(float a, float b) { return a + b; }
inline float __fsub_rn(float a, float b) { return a - b; }
inline float __fmul_rn(float a, float b) { return a * b; }
inline float __fdiv_rn(float a, float b) { return a / b; }
inline double __dadd_rn(double a, double b) { return a + b; }
inline double __dsub_rn(double a, double b) { return a - b; }
inline double __dmul_rn(double a, double b) { return a * b; }
inline double __ddiv_rn(double a, double b) { return a / b; }
inline float __int_as_float(int v) { float f; std::memcpy(&f, &v, sizeof f); return f; }
inline double __longlong_as_double(long long v) {
    double d;
    std::memcpy(&d, &v, sizeof d);
    return d;
}
// expf, exp, logf, log: the C library's (<math.h>), within a few ulp of CUDA's

namespace emu {

// run kernel(args...) for every (block, thread) of the launch, in order
template <typename... P, typename... A>
void launch(dim3 grid, dim3 block, void (*kernel)(P...), A... args) {
    gridDim = grid;
    blockDim = block;
    for (unsigned int bz = 0; bz < grid.z; ++bz)
    for (unsigned int by = 0; by < grid.y; ++by)
    for (unsigned int bx = 0; bx < grid.x; ++bx) {
        blockIdx = {bx, by, bz};
        for (unsigned int tz = 0; tz < block.z; ++tz)
        for (unsigned int ty = 0; ty < block.y; ++ty)
        for (unsigned int tx = 0; tx < block.x; ++tx) {
            threadIdx = {tx, ty, tz};
            kernel(args...);
        }
    }
}

template <typename V>
using plain = typename std::remove_cv<typename std::remove_reference<V>::type>::type;

// args[i] points to the value of parameter i, as for cuLaunchKernel
template <typename... P, std::size_t... K>
void launch_unpacked(dim3 grid, dim3 block, void (*kernel)(P...), void** args,
                     std::index_sequence<K...>) {
    launch(grid, block, kernel, *static_cast<plain<P>*>(args[K])...);
}

template <typename... P>
void launch_packed(dim3 grid, dim3 block, void (*kernel)(P...), void** args) {
    launch_unpacked(grid, block, kernel, args, std::index_sequence_for<P...>{});
}

// the letter for one parameter type (an unlisted type does not compile)
template <typename V> struct letter;
template <typename V> struct letter<V*> { static constexpr char value = 'p'; };
template <> struct letter<int> { static constexpr char value = 'i'; };
template <> struct letter<long long> { static constexpr char value = 'l'; };
template <> struct letter<unsigned int> { static constexpr char value = 'I'; };
template <> struct letter<unsigned long long> { static constexpr char value = 'L'; };
template <> struct letter<float> { static constexpr char value = 'f'; };
template <> struct letter<double> { static constexpr char value = 'd'; };

template <typename... P>
const char* signature(void (*)(P...)) {
    static const char letters[] = {letter<plain<P>>::value..., '\0'};
    return letters;
}

}  // namespace emu

#define EMULATE_ENTRY(NAME)                                                          \
    extern "C" void emu_##NAME(unsigned int grid, unsigned int block, void** args) { \
        emu::launch_packed(dim3(grid), dim3(block), NAME, args);                     \
    }                                                                                \
    extern "C" const char* emu_sig_##NAME() { return emu::signature(NAME); }         \
    extern "C" const char* emu_file_##NAME() { return __FILE__; }

#endif  // TINYALEX_EMULATE_H
