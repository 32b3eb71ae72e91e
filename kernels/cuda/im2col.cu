// im2col.cu: im2col and col2im, the convolution's copy into columns and its adjoint
// (letters as in the Notation of tinyalex/ops/im2col.py).
//
// What it holds, each for T = float, double and I = i32, i64 (the index type):
//   im2col_nhwc_<t>_<i>   x (N, H, W, C)  -> cols (N*OH*OW, KH*KW*C), columns (kh, kw, c)
//   col2im_nhwc_<t>_<i>   cols, columns (kh, kw, c) -> gx (N, H, W, C), overwritten
// with rows (n, oh, ow), <t> f32 | f64 and <i> i32 | i64: the columns of
// tinyalex/ops/im2col.py with each row's entries in channels-last order, (kh, kw, c)
// for its (c, kh, kw), so that one kernel row of a window is KW*C numbers in a row of
// memory (TINYALEX_CONV=im2col runs ops/im2col.py itself on CuPy arrays).
//
// How the work is cut: a grid-stride loop over the elements of the RESULT, in memory
// order, so consecutive threads write consecutive addresses (coalesced), and one
// thread owns one output element: no atomics, and any launch size gives the same
// result. An element index is split into coordinates by Div (common.cuh): a
// multiply-high and a shift per divisor, the magic numbers computed on the host.
// col2im is a gather: the thread of input pixel (h, w) visits the windows that cover
// it in the order of the kernel offsets (kh, kw), the order in which the reference
// adds them, so float32 sums equal the NumPy reference's bit for bit (subnormals
// included: NVRTC builds with --ftz=false, see below).
//
// How it is built: on the GPU by NVRTC, called by tinyalex with --ftz=false (IEEE
// subnormals, as the CPU; CuPy's RawModule(code=...) would append -ftz=true) and
// loaded with cupy.RawModule(path=...) (kernels/cuda_launch.py, the service every GPU op
// calls); on the CPU by g++ against emulate.h, for the tests (kernels/cuda_emulation.py).
// How it is launched: kernels/conv_im2col_gpu.py's plans (im2col, col2im) say the grid,
// the block, the index type and the arguments in the order of the parameter lists below.
// Reference: tinyalex/ops/im2col.py (im2col, col2im); tests/gpu/test_gpu_kernels.py
// checks every kernel here against it (its columns reordered to (kh, kw, c)).
#include "common.cuh"

// cols[row, col] = x[n, oh*SH - PH + kh, ow*SW - PW + kw, c] (0 outside the image)
// row = (n, oh, ow), col = (kh, kw, c); x is (N, H, W, C), cols (N*OH*OW, K = KH*KW*C).
// For one kernel row kh, the KW*C entries (kw, c) are one run of x's memory.
template <typename T, typename I, typename U>
__device__ __forceinline__ void im2col_nhwc(const T* __restrict__ x, T* __restrict__ cols,
                                            I total, Div<U> K, Div<U> OW, Div<U> OH,
                                            Div<U> KWC, Div<U> C, I H, I W, I SH, I SW,
                                            I PH, I PW) {
    for (I e = first_index<I>(); e < total; e += grid_stride<I>()) {
        U row, col, t, ow, n, oh, kh, run, kw, c;
        K.divmod((U)e, row, col);
        OW.divmod(row, t, ow);
        OH.divmod(t, n, oh);
        KWC.divmod(col, kh, run);               // run = kw*C + c
        C.divmod(run, kw, c);
        const I h = (I)oh * SH - PH + (I)kh;
        const I w = (I)ow * SW - PW + (I)kw;
        const bool inside = h >= 0 && h < H && w >= 0 && w < W;
        cols[e] = inside ? x[(((I)n * H + h) * W + w) * (I)C.d + (I)c] : T(0);
    }
}

// im2col_nhwc_<t>_<i>: its parameters in the order the plan im2col packs
#define IM2COL_NHWC(NAME, T, I, U)                                                         \
    extern "C" __global__ void TINYALEX_BOUNDS im2col_nhwc_##NAME(                         \
        const T* __restrict__ x, T* __restrict__ cols, I total, DIV_PARAMS(U, K),          \
        DIV_PARAMS(U, OW), DIV_PARAMS(U, OH), DIV_PARAMS(U, KWC), DIV_PARAMS(U, C),        \
        I H, I W, I SH, I SW, I PH, I PW) {                                                \
        im2col_nhwc<T, I, U>(x, cols, total, DIV(U, K), DIV(U, OW), DIV(U, OH),            \
                             DIV(U, KWC), DIV(U, C), H, W, SH, SW, PH, PW);                \
    }                                                                                      \
    EMULATE_ENTRY(im2col_nhwc_##NAME)
FOR_EACH_VARIANT(IM2COL_NHWC)

// col2im adds, for each input element, the columns of every window that covers it
// (common.cuh, sum_over_windows: in the reference's order).

// gx[n, h, w, c] = sum over (kh, kw) of cols[(n, oh, ow), (kh, kw, c)]
// gx is (N, H, W, C), cols (N*OH*OW, KH*KW*C)
template <typename T, typename I, typename U>
__device__ __forceinline__ void col2im_nhwc(const T* __restrict__ cols, T* __restrict__ gx,
                                            I total, Div<U> C, Div<U> W, Div<U> H,
                                            Div<U> SH, Div<U> SW, I KH, I KW, I OH, I OW,
                                            I PH, I PW) {
    const I CC = (I)C.d, K = KH * KW * CC;
    for (I e = first_index<I>(); e < total; e += grid_stride<I>()) {
        U t, c, t2, w, n, h;
        C.divmod((U)e, t, c);
        W.divmod(t, t2, w);
        H.divmod(t2, n, h);
        const I hp = (I)h + PH, wp = (I)w + PW;
        gx[e] = sum_over_windows<T, I, U>(hp, wp, SH, SW, KH, KW, OH, OW,
            [&](I oh, I ow, I kh, I kw) {
                const I row = ((I)n * OH + oh) * OW + ow;
                return cols[row * K + (kh * KW + kw) * CC + (I)c];
            });
    }
}

// col2im_nhwc_<t>_<i>: its parameters in the order the plan col2im packs
#define COL2IM_NHWC(NAME, T, I, U)                                                         \
    extern "C" __global__ void TINYALEX_BOUNDS col2im_nhwc_##NAME(                         \
        const T* __restrict__ cols, T* __restrict__ gx, I total, DIV_PARAMS(U, C),         \
        DIV_PARAMS(U, W), DIV_PARAMS(U, H), DIV_PARAMS(U, SH), DIV_PARAMS(U, SW),          \
        I KH, I KW, I OH, I OW, I PH, I PW) {                                              \
        col2im_nhwc<T, I, U>(cols, gx, total, DIV(U, C), DIV(U, W), DIV(U, H),             \
                             DIV(U, SH), DIV(U, SW), KH, KW, OH, OW, PH, PW);              \
    }                                                                                      \
    EMULATE_ENTRY(col2im_nhwc_##NAME)
FOR_EACH_VARIANT(COL2IM_NHWC)
