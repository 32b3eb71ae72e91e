// pool.cu: max and average pooling, forward and backward (letters as in the Notation
// of tinyalex/ops/im2col.py).
//
// What it holds, each for T = float, double and I = i32, i64 (the index type):
//   max_pool_forward_<t>_<i>    x -> y, and argmax (int32) = kh*KW + kw of the first
//                               maximum of each window (a NaN wins, the first one, as
//                               NumPy's argmax; padding is -inf and never wins)
//   max_pool_backward_<t>_<i>   gy, argmax -> gx, overwritten
//   avg_pool_forward_<t>_<i>    x -> y = window sum / (KH*KW), the zero padding counted
//                               (PyTorch's count_include_pad=True)
//   avg_pool_backward_<t>_<i>   gy -> gx, each window entry getting gy / (KH*KW)
//
// Memory: channels-last images, x (NI, H, W, CI), y (NI, OH, OW, CI), in the two orders
// the CPU side pools (kernels/fastset.py, _pool_images): plain (N, C, H, W) memory is
// NI = N*C one-channel images (CI = 1), channels-last (N, H, W, C) memory is NI = N,
// CI = C. argmax has y's shape.
//
// How the work is cut: a grid-stride loop over the elements of the result in memory
// order (coalesced writes, one thread per element, no atomics). The forwards visit
// their window; the backwards are gathers: input pixel (h, w) visits the windows that
// cover it in the order of the kernel offsets (kh, kw), the order in which the
// reference's col2im adds them, so float32 gradients equal the reference's bit for bit
// (subnormals included, and a max between 0 and a subnormal picks the subnormal, as
// the reference: NVRTC builds with --ftz=false, see im2col.cu).
// The average's forward sum runs in (kh, kw) order too, which is NumPy's order for
// windows of fewer than 8 entries (NumPy sums longer rows pairwise).
//
// How it is built and launched: as im2col.cu (kernels/cuda_launch.py builds it,
// kernels/pool_gpu.py plans the launches: max_pool_forward, ...).
// Reference: tinyalex/ops/pool.py (max_pool2d_forward_reference, ...).
#include "common.cuh"

// y[n, oh, ow, c] = max over the window of x[n, oh*SH - PH + kh, ow*SW - PW + kw, c]
template <typename T, typename I, typename U>
__device__ __forceinline__ void max_pool_forward(const T* __restrict__ x, T* __restrict__ y,
                                                 i32* __restrict__ argmax, I total,
                                                 Div<U> CI, Div<U> OW, Div<U> OH, I H, I W,
                                                 I KH, I KW, I SH, I SW, I PH, I PW) {
    const I C = (I)CI.d;
    for (I e = first_index<I>(); e < total; e += grid_stride<I>()) {
        U t, c, t2, ow, n, oh;
        CI.divmod((U)e, t, c);
        OW.divmod(t, t2, ow);
        OH.divmod(t2, n, oh);
        T best = neg_inf<T>();
        i32 best_k = 0;
        for (I kh = 0; kh < KH; ++kh) {
            const I h = (I)oh * SH - PH + kh;
            if (h < 0 || h >= H) continue;
            for (I kw = 0; kw < KW; ++kw) {
                const I w = (I)ow * SW - PW + kw;
                if (w < 0 || w >= W) continue;
                const T v = x[(((I)n * H + h) * W + w) * C + (I)c];
                if (v > best || (v != v && best == best)) {    // the first NaN wins
                    best = v;
                    best_k = (i32)(kh * KW + kw);
                }
            }
        }
        y[e] = best;
        argmax[e] = best_k;
    }
}

// y[n, oh, ow, c] = (sum over the window, padding as 0) / (KH*KW)
template <typename T, typename I, typename U>
__device__ __forceinline__ void avg_pool_forward(const T* __restrict__ x, T* __restrict__ y,
                                                 I total, Div<U> CI, Div<U> OW, Div<U> OH,
                                                 I H, I W, I KH, I KW, I SH, I SW, I PH,
                                                 I PW) {
    const I C = (I)CI.d;
    const T count = T(KH * KW);
    for (I e = first_index<I>(); e < total; e += grid_stride<I>()) {
        U t, c, t2, ow, n, oh;
        CI.divmod((U)e, t, c);
        OW.divmod(t, t2, ow);
        OH.divmod(t2, n, oh);
        T acc = T(0);             // padding adds +0, which leaves a sum that started at +0
        for (I kh = 0; kh < KH; ++kh) {
            const I h = (I)oh * SH - PH + kh;
            if (h < 0 || h >= H) continue;
            for (I kw = 0; kw < KW; ++kw) {
                const I w = (I)ow * SW - PW + kw;
                if (w < 0 || w >= W) continue;
                acc = add_rn(acc, x[(((I)n * H + h) * W + w) * C + (I)c]);
            }
        }
        y[e] = div_rn(acc, count);
    }
}

// gx[n, h, w, c] = sum, over the windows (oh, ow) covering (h, w) in (kh, kw) order, of
// gy[n, oh, ow, c] where argmax says the window's maximum sat at (kh, kw)
template <typename T, typename I, typename U>
__device__ __forceinline__ void max_pool_backward(const T* __restrict__ gy,
                                                  const i32* __restrict__ argmax,
                                                  T* __restrict__ gx, I total, Div<U> CI,
                                                  Div<U> W, Div<U> H, Div<U> SH, Div<U> SW,
                                                  I KH, I KW, I OH, I OW, I PH, I PW) {
    const I C = (I)CI.d;
    for (I e = first_index<I>(); e < total; e += grid_stride<I>()) {
        U t, c, t2, w, n, h;
        CI.divmod((U)e, t, c);
        W.divmod(t, t2, w);
        H.divmod(t2, n, h);
        const I hp = (I)h + PH, wp = (I)w + PW;
        gx[e] = sum_over_windows<T, I, U>(hp, wp, SH, SW, KH, KW, OH, OW,
            [&](I oh, I ow, I kh, I kw) {
                const I o = (((I)n * OH + oh) * OW + ow) * C + (I)c;
                // a window whose maximum sat elsewhere adds +0: the sum stays as it is
                return argmax[o] == (i32)(kh * KW + kw) ? gy[o] : T(0);
            });
    }
}

// gx[n, h, w, c] = sum, over the windows covering (h, w) in (kh, kw) order, of
// gy[n, oh, ow, c] / (KH*KW)
template <typename T, typename I, typename U>
__device__ __forceinline__ void avg_pool_backward(const T* __restrict__ gy,
                                                  T* __restrict__ gx, I total, Div<U> CI,
                                                  Div<U> W, Div<U> H, Div<U> SH, Div<U> SW,
                                                  I KH, I KW, I OH, I OW, I PH, I PW) {
    const I C = (I)CI.d;
    const T count = T(KH * KW);
    for (I e = first_index<I>(); e < total; e += grid_stride<I>()) {
        U t, c, t2, w, n, h;
        CI.divmod((U)e, t, c);
        W.divmod(t, t2, w);
        H.divmod(t2, n, h);
        const I hp = (I)h + PH, wp = (I)w + PW;
        gx[e] = sum_over_windows<T, I, U>(hp, wp, SH, SW, KH, KW, OH, OW,
            [&](I oh, I ow, I, I) {
                return div_rn(gy[(((I)n * OH + oh) * OW + ow) * C + (I)c], count);
            });
    }
}

// -- extern "C" entry points -------------------------------------------------------------

#define MAX_POOL_FORWARD(NAME, T, I, U)                                                    \
    extern "C" __global__ void TINYALEX_BOUNDS max_pool_forward_##NAME(                    \
        const T* __restrict__ x, T* __restrict__ y, i32* __restrict__ argmax, I total,     \
        DIV_PARAMS(U, CI), DIV_PARAMS(U, OW), DIV_PARAMS(U, OH), I H, I W, I KH, I KW,     \
        I SH, I SW, I PH, I PW) {                                                          \
        max_pool_forward<T, I, U>(x, y, argmax, total, DIV(U, CI), DIV(U, OW),             \
                                  DIV(U, OH), H, W, KH, KW, SH, SW, PH, PW);               \
    }                                                                                      \
    EMULATE_ENTRY(max_pool_forward_##NAME)
FOR_EACH_VARIANT(MAX_POOL_FORWARD)

#define AVG_POOL_FORWARD(NAME, T, I, U)                                                    \
    extern "C" __global__ void TINYALEX_BOUNDS avg_pool_forward_##NAME(                    \
        const T* __restrict__ x, T* __restrict__ y, I total, DIV_PARAMS(U, CI),            \
        DIV_PARAMS(U, OW), DIV_PARAMS(U, OH), I H, I W, I KH, I KW, I SH, I SW, I PH,      \
        I PW) {                                                                            \
        avg_pool_forward<T, I, U>(x, y, total, DIV(U, CI), DIV(U, OW), DIV(U, OH), H, W,   \
                                  KH, KW, SH, SW, PH, PW);                                 \
    }                                                                                      \
    EMULATE_ENTRY(avg_pool_forward_##NAME)
FOR_EACH_VARIANT(AVG_POOL_FORWARD)

#define MAX_POOL_BACKWARD(NAME, T, I, U)                                                   \
    extern "C" __global__ void TINYALEX_BOUNDS max_pool_backward_##NAME(                   \
        const T* __restrict__ gy, const i32* __restrict__ argmax, T* __restrict__ gx,      \
        I total, DIV_PARAMS(U, CI), DIV_PARAMS(U, W), DIV_PARAMS(U, H), DIV_PARAMS(U, SH), \
        DIV_PARAMS(U, SW), I KH, I KW, I OH, I OW, I PH, I PW) {                           \
        max_pool_backward<T, I, U>(gy, argmax, gx, total, DIV(U, CI), DIV(U, W),           \
                                   DIV(U, H), DIV(U, SH), DIV(U, SW), KH, KW, OH, OW,      \
                                   PH, PW);                                                \
    }                                                                                      \
    EMULATE_ENTRY(max_pool_backward_##NAME)
FOR_EACH_VARIANT(MAX_POOL_BACKWARD)

#define AVG_POOL_BACKWARD(NAME, T, I, U)                                                   \
    extern "C" __global__ void TINYALEX_BOUNDS avg_pool_backward_##NAME(                   \
        const T* __restrict__ gy, T* __restrict__ gx, I total, DIV_PARAMS(U, CI),          \
        DIV_PARAMS(U, W), DIV_PARAMS(U, H), DIV_PARAMS(U, SH), DIV_PARAMS(U, SW), I KH,    \
        I KW, I OH, I OW, I PH, I PW) {                                                    \
        avg_pool_backward<T, I, U>(gy, gx, total, DIV(U, CI), DIV(U, W), DIV(U, H),        \
                                   DIV(U, SH), DIV(U, SW), KH, KW, OH, OW, PH, PW);        \
    }                                                                                      \
    EMULATE_ENTRY(avg_pool_backward_##NAME)
FOR_EACH_VARIANT(AVG_POOL_BACKWARD)
