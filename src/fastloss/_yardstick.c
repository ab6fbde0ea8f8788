/* The "C loop" yardstick of `python -m fastloss bench` (issue #11): what a compiler
 * makes of the obvious loop, not part of fastloss.
 *
 * One fused forward + backward of a mean-reduced loss per function, single thread,
 * the gradient written into `grad` (the bench's out= buffer); the return value is
 * the mean loss. The semantics are fastloss's default call (reduction="mean",
 * every label a valid class, delta = 1 for Huber), so the bench times the same work:
 *   cross-entropy: per row m = max(x), e = exp(x - m) into grad, s = sum(e), then
 *                  grad = e / (s n) - onehot / n, loss += m + log(s) - x[label];
 *   BCE with logits: max(x, 0) - x y + log1p(exp(-|x|)), grad (sigmoid(x) - y) / n;
 *   MSE: (x - y)^2, grad 2 (x - y) / n;
 *   Huber: 0.5 d^2 if |d| <= delta else delta (|d| - 0.5 delta), grad clip(d) / n.
 * Loss sums accumulate in double, as fastloss's reductions do.
 *
 * The bench compiles it with `cc -O3 -march=native -ffast-math -fopenmp-simd
 * -lmvec`: with -ffast-math, glibc's math.h declares expf/logf/log1pf as
 * `#pragma omp declare simd`, so GCC vectorises the loops below by calling
 * libmvec's vector variants (_ZGVdN8v_expf on AVX2). Nothing else is tuned.
 */
#include <math.h>
#include <stdint.h>

#define YARDSTICK(T, SUF, EXP, LOG, LOG1P, ABS)                                      \
double yard_ce_##SUF(const T *x, const int64_t *labels, int64_t n, int64_t c,        \
                     T *grad)                                                        \
{                                                                                    \
    double total = 0.0;                                                              \
    const T inv_n = (T)1 / (T)n;                                                     \
    for (int64_t i = 0; i < n; i++) {                                                \
        const T *row = x + i * c;                                                    \
        T *g = grad + i * c;                                                         \
        T m = row[0];                                                                \
        _Pragma("omp simd reduction(max:m)")                                         \
        for (int64_t j = 0; j < c; j++)                                              \
            m = row[j] > m ? row[j] : m;                                             \
        T s = 0;                                                                     \
        _Pragma("omp simd reduction(+:s)")                                           \
        for (int64_t j = 0; j < c; j++) {                                            \
            T e = EXP(row[j] - m);                                                   \
            g[j] = e;                                                                \
            s += e;                                                                  \
        }                                                                            \
        const T scale = inv_n / s;                                                   \
        _Pragma("omp simd")                                                          \
        for (int64_t j = 0; j < c; j++)                                              \
            g[j] *= scale;                                                           \
        const int64_t t = labels[i];                                                 \
        g[t] -= inv_n;                                                               \
        total += (double)m + (double)LOG(s) - (double)row[t];                        \
    }                                                                                \
    return total / (double)n;                                                        \
}                                                                                    \
                                                                                     \
double yard_bce_##SUF(const T *x, const T *y, int64_t n, T *grad)                    \
{                                                                                    \
    double total = 0.0;                                                              \
    const T inv_n = (T)1 / (T)n;                                                     \
    _Pragma("omp simd reduction(+:total)")                                           \
    for (int64_t i = 0; i < n; i++) {                                                \
        const T v = x[i];                                                            \
        const T e = EXP(-ABS(v));                                                    \
        const T r = (T)1 / ((T)1 + e);                                               \
        const T sig = v >= 0 ? r : e * r;                                            \
        total += (double)((v > 0 ? v : (T)0) - v * y[i] + LOG1P(e));                 \
        grad[i] = (sig - y[i]) * inv_n;                                              \
    }                                                                                \
    return total / (double)n;                                                        \
}                                                                                    \
                                                                                     \
double yard_mse_##SUF(const T *x, const T *y, int64_t n, T *grad)                    \
{                                                                                    \
    double total = 0.0;                                                              \
    const T two_n = (T)2 / (T)n;                                                     \
    _Pragma("omp simd reduction(+:total)")                                           \
    for (int64_t i = 0; i < n; i++) {                                                \
        const T d = x[i] - y[i];                                                     \
        total += (double)(d * d);                                                    \
        grad[i] = d * two_n;                                                         \
    }                                                                                \
    return total / (double)n;                                                        \
}                                                                                    \
                                                                                     \
double yard_huber_##SUF(const T *x, const T *y, int64_t n, T delta, T *grad)         \
{                                                                                    \
    double total = 0.0;                                                              \
    const T inv_n = (T)1 / (T)n;                                                     \
    _Pragma("omp simd reduction(+:total)")                                           \
    for (int64_t i = 0; i < n; i++) {                                                \
        const T d = x[i] - y[i];                                                     \
        const T a = ABS(d);                                                          \
        const T l = a <= delta ? (T)0.5 * d * d : delta * (a - (T)0.5 * delta);      \
        const T clipped = d > delta ? delta : (d < -delta ? -delta : d);             \
        total += (double)l;                                                          \
        grad[i] = clipped * inv_n;                                                   \
    }                                                                                \
    return total / (double)n;                                                        \
}

YARDSTICK(float, f32, expf, logf, log1pf, fabsf)
YARDSTICK(double, f64, exp, log, log1p, fabs)
