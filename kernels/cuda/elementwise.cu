// elementwise.cu: the elementwise kernels of a training step, fused where a step would
// otherwise read an array twice, and written so that a captured CUDA graph can replay
// them (nothing the host must change between steps is a kernel argument).
//
// What it holds, for T = float, double (<t> f32 | f64) and I = i32, i64 (<i>):
//   bias_relu_<t>_<i>, bias_sigmoid_<t>_<i>, bias_add_<t>_<i>
//                           out (rows, OC) = act(y + bias[oc]) on a GEMM's result
//                           (out may be y itself: in place)
//   relu_forward_<t>_<i>    y = x > 0 ? x : 0 (a NaN stays NaN, as np.maximum)
//   relu_backward_<t>_<i>   gx = y > 0 ? gy : 0 (the mask fused with the product)
//   sigmoid_forward_<t>_<i>, sigmoid_backward_<t>_<i>   (gx = gy * y * (1 - y))
//   dropout_<t>_<i>         y = keep(i) ? x * scale : 0, forward and backward alike;
//                           the seed is read from DEVICE memory (see below)
//   rng_advance             rng[1] += 1: the step counter, one thread
//   sgd_update_<t>_<i>      one update over a flat buffer of all parameters, as
//                           tinyalex/optim.py: d = g (+ weight_decay * p);
//                           with momentum: buf = first ? d : momentum * buf + d, d = buf;
//                           then p -= lr * d
//   cross_entropy_forward_<t>_<i>   one thread per row of logits (N, K): the row's loss
//                           -log softmax[label], whether argmax == label (1 or 0), and a
//                           device flag set when a label is outside [0, K): no host sync
//   cross_entropy_backward_<t>_<i>  g (N, K) = (softmax - one_hot) * (gy[0] / N), gy the
//                           loss gradient read from device memory
//
// Dropout's mask is tinyalex/random.py's counter-based one: element i of a mask drawn
// with seed s is kept when mix64(s + (i+1) * 0x9E3779B97F4A7C15) >> 40 >= threshold,
// threshold = ceil(p * 2**24). The seed of one call is derived on the device from
// rng = {base seed, step} (a u64[2] in device memory) and the call site's stream
// number (a constant of the layer):
//     s = mix64(base + (step * 65536 + stream + 1) * 0x9E3779B97F4A7C15)
// (kernels/elementwise_gpu.py, dropout_seed, computes the same on the host). A graph replays
// rng_advance once per step, so every replay draws fresh masks, and the backward of a
// step, run before the next rng_advance, recomputes the forward's mask.
//
// Every operation whose result must equal NumPy's is written with the one-rounding
// arithmetic of common.cuh (no fused multiply-add), and NVRTC builds it with IEEE
// subnormals (--ftz=false, kernels/cuda_launch.py; CuPy's own compile path would flush
// them to zero): float32 results then equal the reference's bit for bit, subnormals
// included; sigmoid and cross-entropy call exp/log, which differ from the C library's
// by a few ulp.
//
// How it is built and launched: as im2col.cu (kernels/cuda_launch.py builds it,
// kernels/elementwise_gpu.py plans the launches).
// References: tinyalex/ops/activation.py (relu, sigmoid, dropout), tinyalex/random.py
// (keep_mask), tinyalex/optim.py (SGD), tinyalex/ops/loss.py (CrossEntropy).
#include "common.cuh"

// SplitMix64's constants: tinyalex/random.py's GOLDEN, MIX1, MIX2 (a test compares them)
#define GOLDEN 0x9E3779B97F4A7C15ull
#define MIX1 0xBF58476D1CE4E5B9ull
#define MIX2 0x94D049BB133111EBull

__device__ __forceinline__ u64 mix64(u64 z) {
    z = (z ^ (z >> 30)) * MIX1;
    z = (z ^ (z >> 27)) * MIX2;
    return z ^ (z >> 31);
}

template <typename T> __device__ __forceinline__ T relu(T v) { return v <= T(0) ? T(0) : v; }

// 1 / (1 + exp(-v)) without overflow: exp of -|v| only
template <typename T> __device__ __forceinline__ T sigmoid(T v) {
    const T e = exp_t(v >= T(0) ? -v : v);
    const T d = add_rn(T(1), e);
    return v >= T(0) ? div_rn(T(1), d) : div_rn(e, d);
}

enum Activation { ACT_NONE = 0, ACT_RELU = 1, ACT_SIGMOID = 2 };

// out[row, oc] = act(y[row, oc] + bias[oc]); y and out (rows, OC) may be one array
template <int ACT, typename T, typename I, typename U>
__device__ __forceinline__ void bias_activation(const T* y, const T* __restrict__ bias, T* out,
                                                I total, Div<U> OC) {
    for (I e = first_index<I>(); e < total; e += grid_stride<I>()) {
        U row, oc;
        OC.divmod((U)e, row, oc);
        const T v = add_rn(y[e], bias[oc]);
        out[e] = ACT == ACT_RELU ? relu(v) : ACT == ACT_SIGMOID ? sigmoid(v) : v;
    }
}

template <typename T, typename I>
__device__ __forceinline__ void relu_forward(const T* x, T* y, I total) {
    for (I e = first_index<I>(); e < total; e += grid_stride<I>()) y[e] = relu(x[e]);
}

template <typename T, typename I>
__device__ __forceinline__ void relu_backward(const T* gy, const T* __restrict__ y, T* gx,
                                              I total) {
    for (I e = first_index<I>(); e < total; e += grid_stride<I>())
        gx[e] = y[e] > T(0) ? gy[e] : T(0);
}

template <typename T, typename I>
__device__ __forceinline__ void sigmoid_forward(const T* x, T* y, I total) {
    for (I e = first_index<I>(); e < total; e += grid_stride<I>()) y[e] = sigmoid(x[e]);
}

// gx = (gy * y) * (1 - y), NumPy's order
template <typename T, typename I>
__device__ __forceinline__ void sigmoid_backward(const T* gy, const T* __restrict__ y, T* gx,
                                                 I total) {
    for (I e = first_index<I>(); e < total; e += grid_stride<I>()) {
        const T v = y[e];
        gx[e] = mul_rn(mul_rn(gy[e], v), sub_rn(T(1), v));
    }
}

template <typename T, typename I>
__device__ __forceinline__ void dropout(const T* x, T* y, I total, const u64* __restrict__ rng,
                                        u64 stream, u64 threshold, T scale) {
    const u64 seed = mix64(rng[0] + (rng[1] * 65536ull + stream + 1ull) * GOLDEN);
    for (I e = first_index<I>(); e < total; e += grid_stride<I>()) {
        const u64 z = mix64(seed + ((u64)e + 1ull) * GOLDEN);
        y[e] = (z >> 40) >= threshold ? mul_rn(x[e], scale) : T(0);
    }
}

// p, g, buf: flat buffers of all parameters, their gradients and momentum buffers
// (buf unused, and may be null, when momentum is 0)
template <typename T, typename I>
__device__ __forceinline__ void sgd_update(T* __restrict__ p, const T* __restrict__ g,
                                           T* __restrict__ buf, I total, T lr, T momentum,
                                           T weight_decay, i32 first) {
    for (I e = first_index<I>(); e < total; e += grid_stride<I>()) {
        const T pe = p[e];
        T d = g[e];
        if (weight_decay != T(0)) d = add_rn(d, mul_rn(weight_decay, pe));
        if (momentum != T(0)) {
            d = first ? d : add_rn(mul_rn(buf[e], momentum), d);
            buf[e] = d;
        }
        p[e] = sub_rn(pe, mul_rn(lr, d));
    }
}

// the first maximum of a row, a NaN winning (NumPy's argmax); returns its index
template <typename T, typename I>
__device__ __forceinline__ I row_argmax(const T* __restrict__ z, I K, T& best) {
    best = z[0];
    I arg = 0;
    for (I k = 1; k < K; ++k) {
        const T v = z[k];
        if (v > best || (v != v && best == best)) { best = v; arg = k; }
    }
    return arg;
}

// log(sum_k exp(z[k] - m))
template <typename T, typename I>
__device__ __forceinline__ T log_sum_exp(const T* __restrict__ z, I K, T m) {
    T s = T(0);
#pragma unroll 1            // unrolled, the exp calls of f64_i64 spill on sm_90
    for (I k = 0; k < K; ++k) s = add_rn(s, exp_t(sub_rn(z[k], m)));
    return log_t(s);
}

// logits (N, K), labels (N,) int64 -> row_loss (N,) = -log softmax[label],
// row_hit (N,) = (argmax == label); *bad = 1 if a label lies outside [0, K)
template <typename T, typename I>
__device__ __forceinline__ void cross_entropy_forward(const T* __restrict__ logits,
                                                      const i64* __restrict__ labels,
                                                      T* __restrict__ row_loss,
                                                      T* __restrict__ row_hit,
                                                      i32* __restrict__ bad, I N, I K) {
    for (I n = first_index<I>(); n < N; n += grid_stride<I>()) {
        const T* z = logits + n * K;
        const i64 t = labels[n];
        if (t < 0 || t >= (i64)K) {
            *bad = 1;           // every writer writes 1: no race on the value
            row_loss[n] = quiet_nan<T>();
            row_hit[n] = T(0);
            continue;
        }
        T m;
        const I arg = row_argmax(z, K, m);
        const T lse = log_sum_exp(z, K, m);
        row_loss[n] = -sub_rn(sub_rn(z[t], m), lse);     // -log_p[t], log_p = (z - m) - lse
        row_hit[n] = arg == (I)t ? T(1) : T(0);
    }
}

// g[n, k] = (exp(log_p[n, k]) - (k == label[n])) * (gy[0] / N)
template <typename T, typename I>
__device__ __forceinline__ void cross_entropy_backward(const T* __restrict__ logits,
                                                       const i64* __restrict__ labels,
                                                       const T* __restrict__ gy,
                                                       T* __restrict__ g, I N, I K) {
    const T scale = div_rn(gy[0], T(N));
    for (I n = first_index<I>(); n < N; n += grid_stride<I>()) {
        const T* z = logits + n * K;
        const i64 t = labels[n];
        T m;
        row_argmax(z, K, m);
        const T lse = log_sum_exp(z, K, m);
#pragma unroll 1
        for (I k = 0; k < K; ++k) {
            T p = exp_t(sub_rn(sub_rn(z[k], m), lse));
            if ((i64)k == t) p = sub_rn(p, T(1));
            g[n * K + k] = mul_rn(p, scale);
        }
    }
}

// -- extern "C" entry points -------------------------------------------------------------

extern "C" __global__ void rng_advance(u64* rng) {
    if (blockIdx.x == 0 && threadIdx.x == 0) rng[1] += 1ull;
}
EMULATE_ENTRY(rng_advance)

#define BIAS_ENTRY(ACTNAME, ACT, NAME, T, I, U)                                            \
    extern "C" __global__ void TINYALEX_BOUNDS bias_##ACTNAME##_##NAME(                    \
        const T* y, const T* __restrict__ bias, T* out, I total, DIV_PARAMS(U, OC)) {      \
        bias_activation<ACT, T, I, U>(y, bias, out, total, DIV(U, OC));                    \
    }                                                                                      \
    EMULATE_ENTRY(bias_##ACTNAME##_##NAME)

#define UNARY_ENTRY(KERNEL, NAME, T, I, U)                                                 \
    extern "C" __global__ void TINYALEX_BOUNDS KERNEL##_##NAME(                            \
        const T* x, T* y, I total) {                                                       \
        KERNEL<T, I>(x, y, total);                                                         \
    }                                                                                      \
    EMULATE_ENTRY(KERNEL##_##NAME)

#define BINARY_ENTRY(KERNEL, NAME, T, I, U)                                                \
    extern "C" __global__ void TINYALEX_BOUNDS KERNEL##_##NAME(                            \
        const T* gy, const T* __restrict__ y, T* gx, I total) {                            \
        KERNEL<T, I>(gy, y, gx, total);                                                    \
    }                                                                                      \
    EMULATE_ENTRY(KERNEL##_##NAME)

#define ELEMENTWISE_ENTRIES(NAME, T, I, U)                                                 \
    BIAS_ENTRY(add, ACT_NONE, NAME, T, I, U)                                               \
    BIAS_ENTRY(relu, ACT_RELU, NAME, T, I, U)                                              \
    BIAS_ENTRY(sigmoid, ACT_SIGMOID, NAME, T, I, U)                                        \
    UNARY_ENTRY(relu_forward, NAME, T, I, U)                                               \
    UNARY_ENTRY(sigmoid_forward, NAME, T, I, U)                                            \
    BINARY_ENTRY(relu_backward, NAME, T, I, U)                                             \
    BINARY_ENTRY(sigmoid_backward, NAME, T, I, U)                                          \
    extern "C" __global__ void TINYALEX_BOUNDS dropout_##NAME(                             \
        const T* x, T* y, I total, const u64* __restrict__ rng, u64 stream, u64 threshold, \
        T scale) {                                                                         \
        dropout<T, I>(x, y, total, rng, stream, threshold, scale);                         \
    }                                                                                      \
    EMULATE_ENTRY(dropout_##NAME)                                                          \
    extern "C" __global__ void TINYALEX_BOUNDS sgd_update_##NAME(                          \
        T* __restrict__ p, const T* __restrict__ g, T* __restrict__ buf, I total, T lr,    \
        T momentum, T weight_decay, i32 first) {                                           \
        sgd_update<T, I>(p, g, buf, total, lr, momentum, weight_decay, first);             \
    }                                                                                      \
    EMULATE_ENTRY(sgd_update_##NAME)                                                       \
    extern "C" __global__ void TINYALEX_BOUNDS                                             \
    cross_entropy_forward_##NAME(const T* __restrict__ logits,                             \
                                 const i64* __restrict__ labels, T* __restrict__ row_loss, \
                                 T* __restrict__ row_hit, i32* __restrict__ bad, I N, I K) { \
        cross_entropy_forward<T, I>(logits, labels, row_loss, row_hit, bad, N, K);         \
    }                                                                                      \
    EMULATE_ENTRY(cross_entropy_forward_##NAME)                                            \
    extern "C" __global__ void TINYALEX_BOUNDS                                             \
    cross_entropy_backward_##NAME(const T* __restrict__ logits,                            \
                                  const i64* __restrict__ labels, const T* __restrict__ gy, \
                                  T* __restrict__ g, I N, I K) {                           \
        cross_entropy_backward<T, I>(logits, labels, gy, g, N, K);                         \
    }                                                                                      \
    EMULATE_ENTRY(cross_entropy_backward_##NAME)

FOR_EACH_VARIANT(ELEMENTWISE_ENTRIES)
