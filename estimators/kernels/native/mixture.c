/* Fused logsumexp of diagonal-Gaussian mixture log-densities (forward only).
 *
 * Compiled twice by estimators/kernels/native/__init__.py, with REAL = float and REAL = double,
 * into functions suffixed _f32 and _f64. Direct (z - mu)^2 form: no cancellation, accurate in
 * float32. Each logsumexp subtracts the exact maximum and clamps the exponent at CLAMP, so exp
 * never takes the slow denormal path; blocks of BLOCK components are merged online (running
 * maximum and sum, in double), so nothing of size N is held per query. Components are laid out
 * (D, N) so the inner loop over n is contiguous and vectorises. The exp of the clamped, non-positive
 * exponents is inlined (fast_exp: Cody-Waite reduction and a Taylor polynomial, within about 2 ulp),
 * and summed in float partial sums of SUB terms: both measured about 1.25x faster than glibc's
 * vector exp summed straight into a double, which is bound by the latency of that one accumulator.
 *
 *   joint:     out[i]         = logsumexp_n ( c[n]    + bias[i,n] - sum_d a[d,n] (z[i,d] - mu[d,n])^2 )
 *   marginals: out[i * D + d] = logsumexp_n ( cd[d,n] + bias[i,n] -       a[d,n] (z[i,d] - mu[d,n])^2 )
 *
 * with a = exp(-logvar) / 2, c[n] = -sum_d (logvar + log 2pi) / 2 + log w_n and
 * cd[d,n] = -(logvar + log 2pi) / 2 + log w_n; bias (Q, N) is an optional row-specific log weight
 * (NULL for none); entries of -inf (zero weights) are floored at BIAS_FLOOR, whose terms then fall
 * below the clamp and contribute nothing measurable. The caller floors c and cd likewise.
 */
#include <float.h>
#include <math.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#ifndef REAL
#define REAL double
#endif
#ifndef SUFFIX
#define SUFFIX _f64
#endif
#define CAT_(a, b) a##b
#define CAT(a, b) CAT_(a, b)
#define FN(name) CAT(name, SUFFIX)

#define TILE 8     /* queries per tile: reuse each loaded component TILE times */
#define BLOCK 1024 /* components per block: TILE * BLOCK values stay in L1/L2 */

/* -ffast-math assumes no infinities: start maxima at the most negative finite value. */
#define LOWEST ((sizeof(REAL) == 4) ? (REAL)-FLT_MAX : (REAL)-DBL_MAX)

#define SUB 64     /* terms per float partial sum of the exps (each <= 1) */

#define BIAS_FLOOR ((REAL)-1e30)

/* The exp clamp, estimators.numerics.exp_clamp(dtype), passed by the build as an integer
 * (-DEXP_CLAMP=-80 for float, -700 for double). fast_exp needs the clamped exponents to give normal
 * numbers: above -87 in float, -708 in double (checked at compile time). */
#ifndef EXP_CLAMP
#error "EXP_CLAMP (estimators.numerics.exp_clamp) must be defined by the build"
#endif
typedef char exp_clamp_gives_normal_numbers[(EXP_CLAMP < 0 && EXP_CLAMP > ((sizeof(REAL) == 4) ? -87 : -708)) ? 1 : -1];
static const REAL CLAMP = (REAL)EXP_CLAMP;

/* exp(x) for x in [CLAMP, 0], where the result is a normal number: x = k ln2 + r with |r| <= ln2/2
 * (Cody-Waite: ln2 split in a high part exact in k * hi and a low part, fused multiply-adds so
 * -ffast-math cannot reassociate them), exp(r) by its Taylor polynomial (truncation 5e-9 relative in
 * float at degree 7, 4e-18 in double at degree 13), times 2^k built from the exponent bits. */
static inline float fast_expf(float x)
{
    const float k = __builtin_rintf(x * 1.44269504088896341f);
    float r = __builtin_fmaf(-k, 0.693359375f, x);
    r = __builtin_fmaf(-k, -2.12194440e-4f, r);
    float p = 1.f / 5040;
    p = __builtin_fmaf(p, r, 1.f / 720);
    p = __builtin_fmaf(p, r, 1.f / 120);
    p = __builtin_fmaf(p, r, 1.f / 24);
    p = __builtin_fmaf(p, r, 1.f / 6);
    p = __builtin_fmaf(p, r, 0.5f);
    p = __builtin_fmaf(p, r, 1.f);
    p = __builtin_fmaf(p, r, 1.f);
    int32_t bits = ((int32_t)k + 127) << 23;
    float scale;
    memcpy(&scale, &bits, sizeof scale);
    return p * scale;
}

static inline double fast_exp(double x)
{
    const double k = __builtin_rint(x * 1.4426950408889634074);
    double r = __builtin_fma(-k, 6.93147180369123816490e-01, x);
    r = __builtin_fma(-k, 1.90821492927058770002e-10, r);
    double p = 1.0 / 6227020800.0; /* 1/13! */
    p = __builtin_fma(p, r, 1.0 / 479001600.0);
    p = __builtin_fma(p, r, 1.0 / 39916800.0);
    p = __builtin_fma(p, r, 1.0 / 3628800.0);
    p = __builtin_fma(p, r, 1.0 / 362880.0);
    p = __builtin_fma(p, r, 1.0 / 40320.0);
    p = __builtin_fma(p, r, 1.0 / 5040.0);
    p = __builtin_fma(p, r, 1.0 / 720.0);
    p = __builtin_fma(p, r, 1.0 / 120.0);
    p = __builtin_fma(p, r, 1.0 / 24.0);
    p = __builtin_fma(p, r, 1.0 / 6.0);
    p = __builtin_fma(p, r, 0.5);
    p = __builtin_fma(p, r, 1.0);
    p = __builtin_fma(p, r, 1.0);
    int64_t bits = ((int64_t)k + 1023) << 52;
    double scale;
    memcpy(&scale, &bits, sizeof scale);
    return p * scale;
}

/* Threads: plain pthreads, created per call and joined (blocking), never OpenMP. An OpenMP team spins
 * while it waits for work; on a machine shared with other jobs (a training loop's data-loader workers)
 * the spinning threads compete for the same cores and a 2-thread call ran 2.4x slower than a 1-thread
 * one. Calls are parallel only above about a millisecond of work (the caller decides), where creating
 * a thread (tens of microseconds) costs nothing measurable. Work is handed out in chunks through an
 * atomic counter (dynamic scheduling). */
typedef void (*work_fn)(void *ctx, long begin, long end);
typedef struct { work_fn work; void *ctx; long total, chunk, next; } pool_t;

static void *pool_worker(void *arg)
{
    pool_t *p = (pool_t *)arg;
    for (;;) {
        long b = __atomic_fetch_add(&p->next, p->chunk, __ATOMIC_RELAXED);
        if (b >= p->total) break;
        p->work(p->ctx, b, b + p->chunk < p->total ? b + p->chunk : p->total);
    }
    return NULL;
}

static void parallel_for(long total, long chunk, int threads, work_fn work, void *ctx)
{
    pool_t p = {work, ctx, total, chunk, 0};
    if (threads > 64) threads = 64;
    if (threads <= 1 || total <= chunk) {
        work(ctx, 0, total);
        return;
    }
    pthread_t th[64];
    int started = 0;
    for (int t = 0; t < threads - 1; t++) {
        if (pthread_create(&th[started], NULL, pool_worker, &p) != 0) break; /* fewer threads: still correct */
        started++;
    }
    pool_worker(&p);
    for (int t = 0; t < started; t++) pthread_join(th[t], NULL);
}

#define FAST_EXP(x) ((sizeof(REAL) == 4) ? (REAL)fast_expf((float)(x)) : (REAL)fast_exp((double)(x)))

/* Fold one block's values L[0..nb) into the running (max, sum) of one logsumexp. */
static inline void merge_block(const REAL *L, long nb, REAL m, double *run_max, double *run_sum)
{
    double new_max = m > *run_max ? m : *run_max;
    const REAL shift = (REAL)new_max;
    double s = 0;
    for (long n0 = 0; n0 < nb; n0 += SUB) {
        long n1 = (nb - n0 < SUB) ? nb : n0 + SUB;
        REAL part = 0;
        for (long n = n0; n < n1; n++) {
            REAL x = L[n] - shift;
            part += FAST_EXP(x < CLAMP ? CLAMP : x);
        }
        s += part;
    }
    *run_sum = *run_sum * exp(*run_max - new_max) + s;
    *run_max = new_max;
}

typedef struct { const REAL *z, *mu, *a, *c, *bias; long Q, N, D; REAL *out; } FN(joint_ctx);

static void FN(joint_tiles)(void *vctx, long tile0, long tile1)
{
    const FN(joint_ctx) *x = (const FN(joint_ctx) *)vctx;
    const REAL *z = x->z, *mu = x->mu, *a = x->a, *c = x->c, *bias = x->bias;
    const long Q = x->Q, N = x->N, D = x->D;
    REAL (*L)[BLOCK] = (REAL (*)[BLOCK])malloc(sizeof(REAL) * TILE * BLOCK);
    for (long tile = tile0; tile < tile1; tile++) {
        long i0 = tile * TILE, T = (Q - i0 < TILE) ? Q - i0 : TILE;
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
                merge_block(Lt, nb, m, &run_max[t], &run_sum[t]);
            }
        }
        for (long t = 0; t < T; t++) x->out[i0 + t] = (REAL)(run_max[t] + log(run_sum[t]));
    }
    free(L);
}

void FN(joint_lse)(const REAL *z, long Q, const REAL *mu, const REAL *a, const REAL *c,
                   const REAL *bias, long N, long D, REAL *out, int threads)
{
    FN(joint_ctx) ctx = {z, mu, a, c, bias, Q, N, D, out};
    parallel_for((Q + TILE - 1) / TILE, 4, threads, FN(joint_tiles), &ctx);
}

/* Per-dimension logsumexp. Parallel over query tiles; for each block of BLOCK components the
 * tile's (floored) bias rows are loaded once and serve all D dimensions, and each dimension's
 * component arrays serve the TILE queries while hot in cache. Each value is computed once, into
 * a buffer, with its block maximum in the same loop; a second loop exponentiates and sums. */
typedef struct { const REAL *z, *mu, *a, *cd, *bias; long Q, N, D; REAL *out; } FN(marginal_ctx);

static void FN(marginal_tiles)(void *vctx, long tile0, long tile1)
{
    const FN(marginal_ctx) *x = (const FN(marginal_ctx) *)vctx;
    const REAL *z = x->z, *mu = x->mu, *a = x->a, *cd = x->cd, *bias = x->bias;
    const long Q = x->Q, N = x->N, D = x->D;
    REAL *out = x->out;
    REAL L[BLOCK];
    REAL *B = bias ? (REAL *)malloc(sizeof(REAL) * TILE * BLOCK) : NULL;
    double *run_max = (double *)malloc(sizeof(double) * TILE * D);
    double *run_sum = (double *)malloc(sizeof(double) * TILE * D);
    for (long tile = tile0; tile < tile1; tile++) {
        long i0 = tile * TILE, T = (Q - i0 < TILE) ? Q - i0 : TILE;
        for (long j = 0; j < T * D; j++) { run_max[j] = -DBL_MAX; run_sum[j] = 0.0; }
        for (long n0 = 0; n0 < N; n0 += BLOCK) {
            long nb = (N - n0 < BLOCK) ? N - n0 : BLOCK;
            if (B) {
                for (long t = 0; t < T; t++) {
                    const REAL *bt = bias + (i0 + t) * N + n0;
                    REAL *Bt = B + t * BLOCK;
                    for (long n = 0; n < nb; n++) Bt[n] = bt[n] > BIAS_FLOOR ? bt[n] : BIAS_FLOOR;
                }
            }
            for (long d = 0; d < D; d++) {
                const REAL *mud = mu + d * N + n0, *ad = a + d * N + n0, *cdd = cd + d * N + n0;
                for (long t = 0; t < T; t++) {
                    const REAL zd = z[(i0 + t) * D + d];
                    REAL m = LOWEST;
                    if (B) {
                        const REAL *Bt = B + t * BLOCK;
                        for (long n = 0; n < nb; n++) {
                            REAL diff = zd - mud[n];
                            REAL l = cdd[n] + Bt[n] - ad[n] * diff * diff;
                            L[n] = l;
                            m = l > m ? l : m;
                        }
                    } else {
                        for (long n = 0; n < nb; n++) {
                            REAL diff = zd - mud[n];
                            REAL l = cdd[n] - ad[n] * diff * diff;
                            L[n] = l;
                            m = l > m ? l : m;
                        }
                    }
                    merge_block(L, nb, m, &run_max[t * D + d], &run_sum[t * D + d]);
                }
            }
        }
        for (long t = 0; t < T; t++)
            for (long d = 0; d < D; d++)
                out[(i0 + t) * D + d] = (REAL)(run_max[t * D + d] + log(run_sum[t * D + d]));
    }
    free(B);
    free(run_max);
    free(run_sum);
}

void FN(marginal_lse)(const REAL *z, long Q, const REAL *mu, const REAL *a, const REAL *cd,
                      const REAL *bias, long N, long D, REAL *out, int threads)
{
    FN(marginal_ctx) ctx = {z, mu, a, cd, bias, Q, N, D, out};
    parallel_for((Q + TILE - 1) / TILE, 1, threads, FN(marginal_tiles), &ctx);
}

/* Pruned joint logsumexp (the bound and why it is exact: estimators/kernels/pruned.py).
 *
 * Components are sorted so that each group is contiguous; each group's mu and a are stored transposed,
 * (D, n_g) at offset gstart[g] * D, with c[n] as in joint_lse. Two levels of boxes: groups (gstart[0..G]) and super-groups of consecutive groups
 * (sstart[0..S], indices of groups). Per level, (count, D) arrays lo, hi (box of the means), lvlo, lvhi
 * (range of the log-variances), elo = exp(lvlo), ehi = exp(lvhi), and (count,) wmax (largest log weight)
 * and logn (log of the number of members). Per query: the bound of every super-group, the most promising
 * group of the most promising super-group evaluated exactly (its largest term M is a lower bound of the
 * query's largest term), then every unit (super-group, then group) whose bound + logn falls below
 * M + log_cut is skipped; the rest is evaluated exactly and merged online. evaluated[i] counts the terms. */
#define PRUNE_LOG_2PI 1.8378770664093454836

static inline double box_bound(const REAL *zi, long D, long g, const REAL *lo, const REAL *hi, const REAL *lvlo,
                               const REAL *lvhi, const REAL *elo, const REAL *ehi, const REAL *wmax)
{
    double f = 0.0;
    const REAL *l = lo + g * D, *h = hi + g * D, *al = lvlo + g * D, *ah = lvhi + g * D;
    const REAL *el = elo + g * D, *eh = ehi + g * D;
    for (long d = 0; d < D; d++) {
        double r = (double)l[d] - zi[d], r_hi = (double)zi[d] - h[d];
        r = r > r_hi ? r : r_hi;
        r = r > 0.0 ? r : 0.0;
        double r2 = r * r;
        /* min over lv in [al, ah] of lv + r2 exp(-lv): at clamp(log r2, al, ah) (convex in lv) */
        f += r2 <= el[d] ? al[d] + r2 / el[d] : (r2 >= eh[d] ? ah[d] + r2 / eh[d] : log(r2) + 1.0);
    }
    return wmax[g] - 0.5 * ((double)D * PRUNE_LOG_2PI + f);
}

/* Exact terms of one group for query zi into L; returns their maximum. The group's components are
 * stored transposed, (D, nb) at offset n0 * D, so the inner loop over its members is contiguous. */
static inline REAL group_terms(const REAL *zi, long D, long n0, long n1, const REAL *mu, const REAL *a,
                               const REAL *c, REAL *L)
{
    const long nb = n1 - n0;
    const REAL *mug = mu + n0 * D, *ag = a + n0 * D;
    for (long n = 0; n < nb; n++) L[n] = c[n0 + n];
    for (long d = 0; d < D; d++) {
        const REAL zd = zi[d], *mud = mug + d * nb, *ad = ag + d * nb;
        for (long n = 0; n < nb; n++) {
            REAL diff = zd - mud[n];
            L[n] -= ad[n] * diff * diff;
        }
    }
    REAL m = LOWEST;
    for (long n = 0; n < nb; n++) m = L[n] > m ? L[n] : m;
    return m;
}

typedef struct {
    const REAL *z, *mu, *a, *c;
    long D, G, S, max_group;
    const long *gstart, *sstart;
    const REAL *glo, *ghi, *glvlo, *glvhi, *gelo, *gehi, *gwmax, *glogn;
    const REAL *slo, *shi, *slvlo, *slvhi, *selo, *sehi, *swmax, *slogn;
    double log_cut;
    REAL *out;
    long *evaluated;
} FN(pruned_ctx);

static void FN(pruned_queries)(void *vctx, long i0, long i1)
{
    const FN(pruned_ctx) *x = (const FN(pruned_ctx) *)vctx;
    const long D = x->D, S = x->S;
    REAL *L = (REAL *)malloc(sizeof(REAL) * (x->max_group > 0 ? x->max_group : 1));
    double *sb = (double *)malloc(sizeof(double) * (S > 0 ? S : 1));
    for (long i = i0; i < i1; i++) {
        const REAL *zi = x->z + i * D;
        long best_s = 0;
        for (long s = 0; s < S; s++) {
            sb[s] = box_bound(zi, D, s, x->slo, x->shi, x->slvlo, x->slvhi, x->selo, x->sehi, x->swmax);
            if (sb[s] > sb[best_s]) best_s = s;
        }
        long best_g = x->sstart[best_s];
        double best_u = -DBL_MAX;
        for (long g = x->sstart[best_s]; g < x->sstart[best_s + 1]; g++) {
            double u = box_bound(zi, D, g, x->glo, x->ghi, x->glvlo, x->glvhi, x->gelo, x->gehi, x->gwmax);
            if (u > best_u) { best_u = u; best_g = g; }
        }
        double run_max = -DBL_MAX, run_sum = 0.0;
        long nb = x->gstart[best_g + 1] - x->gstart[best_g], count = nb;
        REAL m = group_terms(zi, D, x->gstart[best_g], x->gstart[best_g + 1], x->mu, x->a, x->c, L);
        merge_block(L, nb, m, &run_max, &run_sum);
        const double cut = (double)m + x->log_cut;
        for (long s = 0; s < S; s++) {
            if (sb[s] + x->slogn[s] < cut) continue;
            for (long g = x->sstart[s]; g < x->sstart[s + 1]; g++) {
                if (g == best_g) continue;
                if (box_bound(zi, D, g, x->glo, x->ghi, x->glvlo, x->glvhi, x->gelo, x->gehi, x->gwmax)
                        + x->glogn[g] < cut) continue;
                nb = x->gstart[g + 1] - x->gstart[g];
                m = group_terms(zi, D, x->gstart[g], x->gstart[g + 1], x->mu, x->a, x->c, L);
                merge_block(L, nb, m, &run_max, &run_sum);
                count += nb;
            }
        }
        x->out[i] = (REAL)(run_max + log(run_sum));
        x->evaluated[i] = count;
    }
    free(L);
    free(sb);
}

void FN(pruned_joint_lse)(const REAL *z, long Q, long D, const REAL *mu, const REAL *a, const REAL *c,
                          long G, const long *gstart, const REAL *glo, const REAL *ghi, const REAL *glvlo,
                          const REAL *glvhi, const REAL *gelo, const REAL *gehi, const REAL *gwmax, const REAL *glogn,
                          long S, const long *sstart, const REAL *slo, const REAL *shi, const REAL *slvlo,
                          const REAL *slvhi, const REAL *selo, const REAL *sehi, const REAL *swmax, const REAL *slogn,
                          long max_group, double log_cut, REAL *out, long *evaluated, int threads)
{
    FN(pruned_ctx) ctx = {z, mu, a, c, D, G, S, max_group, gstart, sstart,
                          glo, ghi, glvlo, glvhi, gelo, gehi, gwmax, glogn,
                          slo, shi, slvlo, slvhi, selo, sehi, swmax, slogn, log_cut, out, evaluated};
    parallel_for(Q, 16, threads, FN(pruned_queries), &ctx);
}

/* k-d ordering (estimators.kernels.pruned.kd_order): recursive median bisection of the rows of pts (n, D)
 * along the dimension of largest spread / scale, down to leaves of at most `leaf` rows, depth first.
 * perm receives the ordering and starts the first row of each leaf; returns the number of leaves. */
static void FN(select_kth)(long *idx, long n, long k, const REAL *pts, long D, long d)
{
    long lo = 0, hi = n - 1;
    while (lo < hi) {
        REAL pivot = pts[idx[(lo + hi) / 2] * D + d];
        long i = lo, j = hi;
        while (i <= j) {
            while (pts[idx[i] * D + d] < pivot) i++;
            while (pts[idx[j] * D + d] > pivot) j--;
            if (i <= j) { long t = idx[i]; idx[i] = idx[j]; idx[j] = t; i++; j--; }
        }
        if (k <= j) hi = j;
        else if (k >= i) lo = i;
        else break;
    }
}

long FN(kd_order)(const REAL *pts, long n, long D, const REAL *scale, long leaf, long *perm, long *starts)
{
    for (long i = 0; i < n; i++) perm[i] = i;
    if (n == 0) return 0;
    long cap = 128, top = 0, leaves = 0;
    long *stack = (long *)malloc(sizeof(long) * 2 * cap);
    stack[0] = 0; stack[1] = n; top = 1;
    while (top > 0) {
        top--;
        long b = stack[2 * top], e = stack[2 * top + 1], m = e - b;
        if (m <= leaf) { starts[leaves++] = b; continue; }
        long best_d = 0;
        double best = -1.0;
        for (long d = 0; d < D; d++) {
            REAL lo = pts[perm[b] * D + d], hi = lo;
            for (long i = b + 1; i < e; i++) {
                REAL v = pts[perm[i] * D + d];
                lo = v < lo ? v : lo;
                hi = v > hi ? v : hi;
            }
            double spread = ((double)hi - lo) / scale[d];
            if (spread > best) { best = spread; best_d = d; }
        }
        long half = m / 2;
        FN(select_kth)(perm + b, m, half, pts, D, best_d);
        if (top + 2 > cap) { cap *= 2; stack = (long *)realloc(stack, sizeof(long) * 2 * cap); }
        /* push the upper half first: the lower half is split next (depth first, in order) */
        stack[2 * top] = b + half; stack[2 * top + 1] = e; top++;
        stack[2 * top] = b; stack[2 * top + 1] = b + half; top++;
    }
    free(stack);
    return leaves;
}
