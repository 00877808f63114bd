/* Fused logsumexp of diagonal-Gaussian mixture log-densities (forward only).
 *
 * Compiled twice by estimators/native/__init__.py, with REAL = float and REAL = double, into
 * functions suffixed _f32 and _f64. Direct (z - mu)^2 form: no cancellation, accurate in float32.
 * Each logsumexp subtracts the exact maximum and clamps the exponent at CLAMP, so exp never takes
 * the slow denormal path. Components are laid out (D, N) so the inner loop over n is contiguous and
 * vectorises (gcc -O3 -ffast-math uses glibc's vector exp).
 *
 *   joint:     out[i]         = logsumexp_n ( c[n] + bias[i,n] - sum_d a[d,n] (z[i,d] - mu[d,n])^2 )
 *   marginals: out[i * D + d] = logsumexp_n ( cd[d,n] - a[d,n] (z[i,d] - mu[d,n])^2 )
 *
 * with a = exp(-logvar) / 2, c[n] = -sum_d (logvar + log 2pi) / 2 + log w_n and
 * cd[d,n] = -(logvar + log 2pi) / 2 + log w_n; bias (Q, N) is an optional row-specific log weight
 * (NULL for none); entries of -inf (zero weights) are floored at BIAS_FLOOR, whose terms then fall
 * below the clamp and contribute nothing measurable.
 */
#include <math.h>
#include <float.h>
#include <stdlib.h>

#ifndef REAL
#define REAL double
#endif
#ifndef SUFFIX
#define SUFFIX _f64
#endif
#define CAT_(a, b) a##b
#define CAT(a, b) CAT_(a, b)
#define FN(name) CAT(name, SUFFIX)
#ifndef EXP
#define EXP exp
#endif

#define TILE 8     /* queries per tile: reuse each loaded component TILE times */
#define BLOCK 1024 /* components per block: TILE * BLOCK values stay in L1/L2 */

/* -ffast-math assumes no infinities: start maxima at the most negative finite value. */
#define LOWEST ((sizeof(REAL) == 4) ? (REAL)-FLT_MAX : (REAL)-DBL_MAX)

#define BIAS_FLOOR ((REAL)-1e30)

static const REAL CLAMP = (sizeof(REAL) == 4) ? (REAL)-80 : (REAL)-700;

void FN(joint_lse)(const REAL *z, long Q, const REAL *mu, const REAL *a, const REAL *c,
                   const REAL *bias, long N, long D, REAL *out, int threads)
{
    long tiles = (Q + TILE - 1) / TILE;
#pragma omp parallel for schedule(dynamic, 4) num_threads(threads)
    for (long tile = 0; tile < tiles; tile++) {
        long i0 = tile * TILE, T = (Q - i0 < TILE) ? Q - i0 : TILE;
        REAL L[TILE][BLOCK];
        double run_max[TILE], run_sum[TILE];
        for (long t = 0; t < T; t++) { run_max[t] = -DBL_MAX; run_sum[t] = 0.0; }
        for (long n0 = 0; n0 < N; n0 += BLOCK) {
            long nb = (N - n0 < BLOCK) ? N - n0 : BLOCK;
            for (long t = 0; t < T; t++) {
                REAL *Lt = L[t];
                if (bias) {
                    const REAL *bt = bias + (i0 + t) * N + n0;
                    for (long n = 0; n < nb; n++) Lt[n] = c[n0 + n] + (bt[n] > BIAS_FLOOR ? bt[n] : BIAS_FLOOR);
                } else {
                    for (long n = 0; n < nb; n++) Lt[n] = c[n0 + n];
                }
                for (long d = 0; d < D; d++) {
                    const REAL zd = z[(i0 + t) * D + d];
                    const REAL *mud = mu + d * N + n0, *ad = a + d * N + n0;
                    for (long n = 0; n < nb; n++) {
                        REAL diff = zd - mud[n];
                        Lt[n] -= ad[n] * diff * diff;
                    }
                }
                REAL m = LOWEST;
                for (long n = 0; n < nb; n++) m = Lt[n] > m ? Lt[n] : m;
                double new_max = m > run_max[t] ? m : run_max[t];
                double s = 0;
                for (long n = 0; n < nb; n++) {
                    REAL x = Lt[n] - (REAL)new_max;
                    s += EXP(x < CLAMP ? CLAMP : x);
                }
                run_sum[t] = run_sum[t] * exp(run_max[t] - new_max) + s;
                run_max[t] = new_max;
            }
        }
        for (long t = 0; t < T; t++) out[i0 + t] = (REAL)(run_max[t] + log(run_sum[t]));
    }
}

void FN(marginal_lse)(const REAL *z, long Q, const REAL *mu, const REAL *a, const REAL *cd,
                      long N, long D, REAL *out, int threads)
{
    long tiles = (Q + TILE - 1) / TILE;
    /* (dimension, query tile) pairs in parallel; each pass over one dimension's N components
       serves TILE queries while the component arrays are hot in cache. */
#pragma omp parallel for schedule(dynamic, 4) num_threads(threads) collapse(2)
    for (long d = 0; d < D; d++) {
        for (long tile = 0; tile < tiles; tile++) {
            long i0 = tile * TILE, T = (Q - i0 < TILE) ? Q - i0 : TILE;
            const REAL *mud = mu + d * N, *ad = a + d * N, *cdd = cd + d * N;
            for (long t = 0; t < T; t++) {
                const REAL zd = z[(i0 + t) * D + d];
                REAL m = LOWEST;
                for (long n = 0; n < N; n++) {
                    REAL diff = zd - mud[n];
                    REAL l = cdd[n] - ad[n] * diff * diff;
                    m = l > m ? l : m;
                }
                double s = 0;
                for (long n = 0; n < N; n++) {
                    REAL diff = zd - mud[n];
                    REAL x = cdd[n] - ad[n] * diff * diff - m;
                    s += EXP(x < CLAMP ? CLAMP : x);
                }
                out[(i0 + t) * D + d] = (REAL)((double)m + log(s));
            }
        }
    }
}
