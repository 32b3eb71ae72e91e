// batchnorm.cu: batch normalization, forward (training and eval) and its closed-form
// backward (the formulas of tinyalex/ops/batchnorm.py's docstring; its letters).
//
// Memory: every input is seen as x (A, C, B), C-contiguous; channel c's M = A*B entries
// are x[a, c, b], at (a*C + c)*B + b:
//   (N, C, H, W) plain memory                  A = N,        B = H*W
//   (N, C, H, W) channels-last ((N, H, W, C))  A = N*H*W,    B = 1
//   (N, C) and (N, C, L)                       A = N,        B = 1 and L
// so one set of kernels takes every layout the ops hand over (kernels/batchnorm_gpu.py,
// channel_blocks). gy, dx and y lie as x does.
//
// What it holds, each for T = float, double and I = i32, i64 (the index type):
//   batch_norm_partial_stats_<t>_<i>  x -> part_mean, part_m2 (C, P): thread (c, p) runs
//                                     Welford's update over the entries m = p, p + P,
//                                     p + 2P, ... < M of channel c (its mean and sum of
//                                     squared deviations: one pass, no cancellation)
//   batch_norm_stats_<t>_<i>          part_mean, part_m2 -> mean, var (biased), inv_std
//                                     (C,) = 1 / sqrt(var + eps): thread c merges its P
//                                     parts in order (Chan, Golub and LeVeque's formula)
//   batch_norm_normalize_<t>_<i>      y = (x - mean[c]) * inv_std[c] (* gamma[c] +
//                                     beta[c] when gamma is given; the reference's order)
//   batch_norm_partial_grads_<t>_<i>  gy, x, mean, inv_std -> part_dbeta, part_dgamma
//                                     (C, P): sums of gy and gy * xhat over the same
//                                     entries, xhat = (x - mean) * inv_std recomputed
//   batch_norm_grad_sums_<t>_<i>      the parts -> dbeta, dgamma (C,), added in order
//   batch_norm_backward_<t>_<i>       dx = gamma * inv_std / M * (M*gy - dbeta -
//                                     xhat * dgamma) in training, gy * gamma * inv_std in
//                                     eval (gamma null: 1)
//
// How the work is cut: the per-channel sums are two-stage reductions with neither
// atomics nor shared memory, so that every thread owns what it writes and the result
// does not depend on the schedule (the same on every run, and in the g++ emulation,
// which runs the threads one after another). Stage one is a grid-stride loop over the
// C*P (channel, part) pairs; the host picks P (kernels/batchnorm_gpu.py, parts) to give
// the GPU some tens of thousands of threads. Neighbouring threads take neighbouring
// parts of one channel (m and m + 1 are neighbours in memory when B > 1), or, where
// the channels are innermost (B == 1), neighbouring channels of one row: a warp reads
// adjacent addresses either way. Stage two is one thread per channel. The elementwise
// kernels are grid-stride loops over x's memory, channel c = (e / B) % C.
//
// Every operation is written with common.cuh's one-rounding arithmetic (no fused
// multiply-add), so the GPU and the emulation compute the same bits; the normalize
// step then equals the reference's for the same mean and inv_std, while the sums, taken
// in another order than NumPy's pairwise ones, agree to rounding.
//
// How it is built and launched: as im2col.cu (kernels/cuda_launch.py builds it,
// kernels/batchnorm_gpu.py plans the launches).
// Reference: tinyalex/ops/batchnorm.py (BatchNormReference).
#include "common.cuh"

// Thread e of a stage-one kernel -> (channel c, part p): the channel fastest where the
// channels are innermost in memory (channels_inner, B == 1), else the part fastest.
template <typename U>
__device__ __forceinline__ void channel_and_part(U e, Div<U> C, Div<U> P, i32 channels_inner,
                                                 U& c, U& p) {
    if (channels_inner) C.divmod(e, p, c);
    else P.divmod(e, c, p);
}

// visit(i) for the offsets i of the entries m = p, p + P, ... < M of channel c, in order
template <typename I, typename U, typename Visit>
__device__ __forceinline__ void for_each_entry(U c, U p, I M, I P, I C, Div<U> B, Visit visit) {
    for (I m = (I)p; m < M; m += P) {
        U a, b;
        B.divmod((U)m, a, b);
        visit(((I)a * C + (I)c) * (I)B.d + (I)b);
    }
}

// part_mean[c, p], part_m2[c, p] = Welford's mean and sum of squared deviations of the
// entries of channel c that part p visits
template <typename T, typename I, typename U>
__device__ __forceinline__ void batch_norm_partial_stats(const T* __restrict__ x,
                                                         T* __restrict__ part_mean,
                                                         T* __restrict__ part_m2, I pairs,
                                                         I M, Div<U> C, Div<U> P, Div<U> B,
                                                         i32 channels_inner) {
    for (I e = first_index<I>(); e < pairs; e += grid_stride<I>()) {
        U c, p;
        channel_and_part<U>((U)e, C, P, channels_inner, c, p);
        T count = T(0), mean = T(0), m2 = T(0);
        for_each_entry<I, U>(c, p, M, (I)P.d, (I)C.d, B, [&](I i) {
            const T v = x[i];
            count = add_rn(count, T(1));
            const T d = sub_rn(v, mean);               // from the old mean
            mean = add_rn(mean, div_rn(d, count));
            m2 = add_rn(m2, mul_rn(d, sub_rn(v, mean)));   // times the deviation from the new
        });
        part_mean[(I)c * (I)P.d + (I)p] = mean;
        part_m2[(I)c * (I)P.d + (I)p] = m2;
    }
}

// The number of entries part p visits: ceil((M - p) / P), at least 1 (the host keeps
// P <= M).
template <typename I>
__device__ __forceinline__ I part_count(I M, I P, I p) { return (M - p + P - 1) / P; }

// mean[c], var[c] (biased), inv_std[c] from the P parts of channel c, merged in order:
// for counts na, nb (n = na + nb) and d = mean_b - mean_a,
//   mean = mean_a + d * nb / n,   m2 = m2_a + m2_b + d * d * na * nb / n
template <typename T, typename I>
__device__ __forceinline__ void batch_norm_stats(const T* __restrict__ part_mean,
                                                 const T* __restrict__ part_m2,
                                                 T* __restrict__ mean, T* __restrict__ var,
                                                 T* __restrict__ inv_std, I C, I P, I M,
                                                 T eps) {
    for (I c = first_index<I>(); c < C; c += grid_stride<I>()) {
        T n = T(0), m = T(0), m2 = T(0);
        for (I p = 0; p < P; ++p) {
            const T nb = T(part_count<I>(M, P, p));
            const T n_ab = add_rn(n, nb);
            const T d = sub_rn(part_mean[c * P + p], m);
            const T w = div_rn(nb, n_ab);                     // nb / n
            m = add_rn(m, mul_rn(d, w));
            m2 = add_rn(add_rn(m2, part_m2[c * P + p]), mul_rn(mul_rn(mul_rn(d, d), n), w));
            n = n_ab;
        }
        const T v = div_rn(m2, T(M));
        mean[c] = m;
        var[c] = v;
        inv_std[c] = div_rn(T(1), sqrt_t(add_rn(v, eps)));
    }
}

// y = (x - mean[c]) * inv_std[c], then * gamma[c] + beta[c] unless gamma is null
template <typename T, typename I, typename U>
__device__ __forceinline__ void batch_norm_normalize(const T* __restrict__ x,
                                                     const T* __restrict__ mean,
                                                     const T* __restrict__ inv_std,
                                                     const T* __restrict__ gamma,
                                                     const T* __restrict__ beta,
                                                     T* __restrict__ y, I total, Div<U> B,
                                                     Div<U> C) {
    for (I e = first_index<I>(); e < total; e += grid_stride<I>()) {
        U t, b, a, c;
        B.divmod((U)e, t, b);
        C.divmod(t, a, c);
        const T xhat = mul_rn(sub_rn(x[e], mean[c]), inv_std[c]);
        y[e] = gamma ? add_rn(mul_rn(xhat, gamma[c]), beta[c]) : xhat;
    }
}

// part_dbeta[c, p] = sum of gy, part_dgamma[c, p] = sum of gy * xhat, over the entries
// of channel c that part p visits
template <typename T, typename I, typename U>
__device__ __forceinline__ void batch_norm_partial_grads(const T* __restrict__ gy,
                                                         const T* __restrict__ x,
                                                         const T* __restrict__ mean,
                                                         const T* __restrict__ inv_std,
                                                         T* __restrict__ part_dbeta,
                                                         T* __restrict__ part_dgamma, I pairs,
                                                         I M, Div<U> C, Div<U> P, Div<U> B,
                                                         i32 channels_inner) {
    for (I e = first_index<I>(); e < pairs; e += grid_stride<I>()) {
        U c, p;
        channel_and_part<U>((U)e, C, P, channels_inner, c, p);
        const T m = mean[c], r = inv_std[c];
        T sb = T(0), sg = T(0);
        for_each_entry<I, U>(c, p, M, (I)P.d, (I)C.d, B, [&](I i) {
            const T g = gy[i];
            sb = add_rn(sb, g);
            sg = add_rn(sg, mul_rn(g, mul_rn(sub_rn(x[i], m), r)));
        });
        part_dbeta[(I)c * (I)P.d + (I)p] = sb;
        part_dgamma[(I)c * (I)P.d + (I)p] = sg;
    }
}

// dbeta[c], dgamma[c]: the P parts of channel c added in order
template <typename T, typename I>
__device__ __forceinline__ void batch_norm_grad_sums(const T* __restrict__ part_dbeta,
                                                     const T* __restrict__ part_dgamma,
                                                     T* __restrict__ dbeta,
                                                     T* __restrict__ dgamma, I C, I P) {
    for (I c = first_index<I>(); c < C; c += grid_stride<I>()) {
        T sb = T(0), sg = T(0);
        for (I p = 0; p < P; ++p) {
            sb = add_rn(sb, part_dbeta[c * P + p]);
            sg = add_rn(sg, part_dgamma[c * P + p]);
        }
        dbeta[c] = sb;
        dgamma[c] = sg;
    }
}

// training: dx = (k / M) * (M * gy - dbeta[c] - xhat * dgamma[c]), eval: dx = gy * k,
// k = gamma[c] * inv_std[c] (inv_std[c] when gamma is null)
template <typename T, typename I, typename U>
__device__ __forceinline__ void batch_norm_backward(const T* __restrict__ gy,
                                                    const T* __restrict__ x,
                                                    const T* __restrict__ mean,
                                                    const T* __restrict__ inv_std,
                                                    const T* __restrict__ gamma,
                                                    const T* __restrict__ dbeta,
                                                    const T* __restrict__ dgamma,
                                                    T* __restrict__ dx, I total, Div<U> B,
                                                    Div<U> C, I M, i32 training) {
    const T count = T(M);
    for (I e = first_index<I>(); e < total; e += grid_stride<I>()) {
        U t, b, a, c;
        B.divmod((U)e, t, b);
        C.divmod(t, a, c);
        const T k = gamma ? mul_rn(gamma[c], inv_std[c]) : inv_std[c];
        if (training) {
            const T xhat = mul_rn(sub_rn(x[e], mean[c]), inv_std[c]);
            const T inner = sub_rn(sub_rn(mul_rn(count, gy[e]), dbeta[c]),
                                   mul_rn(xhat, dgamma[c]));
            dx[e] = mul_rn(div_rn(k, count), inner);
        } else {
            dx[e] = mul_rn(gy[e], k);
        }
    }
}

// -- extern "C" entry points -------------------------------------------------------------

#define BATCH_NORM_PARTIAL_STATS(NAME, T, I, U)                                            \
    extern "C" __global__ void TINYALEX_BOUNDS batch_norm_partial_stats_##NAME(            \
        const T* __restrict__ x, T* __restrict__ part_mean, T* __restrict__ part_m2,       \
        I pairs, I M, DIV_PARAMS(U, C), DIV_PARAMS(U, P), DIV_PARAMS(U, B),                \
        i32 channels_inner) {                                                              \
        batch_norm_partial_stats<T, I, U>(x, part_mean, part_m2, pairs, M, DIV(U, C),      \
                                          DIV(U, P), DIV(U, B), channels_inner);           \
    }                                                                                      \
    EMULATE_ENTRY(batch_norm_partial_stats_##NAME)
FOR_EACH_VARIANT(BATCH_NORM_PARTIAL_STATS)

#define BATCH_NORM_STATS(NAME, T, I, U)                                                    \
    extern "C" __global__ void TINYALEX_BOUNDS batch_norm_stats_##NAME(                    \
        const T* __restrict__ part_mean, const T* __restrict__ part_m2,                    \
        T* __restrict__ mean, T* __restrict__ var, T* __restrict__ inv_std, I C, I P,      \
        I M, T eps) {                                                                      \
        batch_norm_stats<T, I>(part_mean, part_m2, mean, var, inv_std, C, P, M, eps);      \
    }                                                                                      \
    EMULATE_ENTRY(batch_norm_stats_##NAME)
FOR_EACH_VARIANT(BATCH_NORM_STATS)

#define BATCH_NORM_NORMALIZE(NAME, T, I, U)                                                \
    extern "C" __global__ void TINYALEX_BOUNDS batch_norm_normalize_##NAME(                \
        const T* __restrict__ x, const T* __restrict__ mean,                               \
        const T* __restrict__ inv_std, const T* __restrict__ gamma,                        \
        const T* __restrict__ beta, T* __restrict__ y, I total, DIV_PARAMS(U, B),          \
        DIV_PARAMS(U, C)) {                                                                \
        batch_norm_normalize<T, I, U>(x, mean, inv_std, gamma, beta, y, total, DIV(U, B),  \
                                      DIV(U, C));                                          \
    }                                                                                      \
    EMULATE_ENTRY(batch_norm_normalize_##NAME)
FOR_EACH_VARIANT(BATCH_NORM_NORMALIZE)

#define BATCH_NORM_PARTIAL_GRADS(NAME, T, I, U)                                            \
    extern "C" __global__ void TINYALEX_BOUNDS batch_norm_partial_grads_##NAME(            \
        const T* __restrict__ gy, const T* __restrict__ x, const T* __restrict__ mean,     \
        const T* __restrict__ inv_std, T* __restrict__ part_dbeta,                         \
        T* __restrict__ part_dgamma, I pairs, I M, DIV_PARAMS(U, C), DIV_PARAMS(U, P),     \
        DIV_PARAMS(U, B), i32 channels_inner) {                                            \
        batch_norm_partial_grads<T, I, U>(gy, x, mean, inv_std, part_dbeta, part_dgamma,   \
                                          pairs, M, DIV(U, C), DIV(U, P), DIV(U, B),       \
                                          channels_inner);                                 \
    }                                                                                      \
    EMULATE_ENTRY(batch_norm_partial_grads_##NAME)
FOR_EACH_VARIANT(BATCH_NORM_PARTIAL_GRADS)

#define BATCH_NORM_GRAD_SUMS(NAME, T, I, U)                                                \
    extern "C" __global__ void TINYALEX_BOUNDS batch_norm_grad_sums_##NAME(                \
        const T* __restrict__ part_dbeta, const T* __restrict__ part_dgamma,               \
        T* __restrict__ dbeta, T* __restrict__ dgamma, I C, I P) {                         \
        batch_norm_grad_sums<T, I>(part_dbeta, part_dgamma, dbeta, dgamma, C, P);          \
    }                                                                                      \
    EMULATE_ENTRY(batch_norm_grad_sums_##NAME)
FOR_EACH_VARIANT(BATCH_NORM_GRAD_SUMS)

#define BATCH_NORM_BACKWARD(NAME, T, I, U)                                                 \
    extern "C" __global__ void TINYALEX_BOUNDS batch_norm_backward_##NAME(                 \
        const T* __restrict__ gy, const T* __restrict__ x, const T* __restrict__ mean,     \
        const T* __restrict__ inv_std, const T* __restrict__ gamma,                        \
        const T* __restrict__ dbeta, const T* __restrict__ dgamma, T* __restrict__ dx,     \
        I total, DIV_PARAMS(U, B), DIV_PARAMS(U, C), I M, i32 training) {                  \
        batch_norm_backward<T, I, U>(gy, x, mean, inv_std, gamma, dbeta, dgamma, dx,       \
                                     total, DIV(U, B), DIV(U, C), M, training);            \
    }                                                                                      \
    EMULATE_ENTRY(batch_norm_backward_##NAME)
FOR_EACH_VARIANT(BATCH_NORM_BACKWARD)
