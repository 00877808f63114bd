/* Fused logsumexp of diagonal-Gaussian mixture log-densities (forward only).
 *
 * Compiled twice by estimators/kernels/native/__init__.py, with REAL = float and REAL = double,
 * into functions suffixed _f32 and _f64. Direct (z - mu)^2 form: no cancellation, accurate in
 * float32. Each logsumexp subtracts the exact maximum and clamps the exponent at CLAMP, so exp
 * never takes the slow denormal path; blocks of BLOCK components are merged online (running
 * maximum and sum, in double), so nothing of size N is held per query. The marginals take the
 * components laid out (D, N), so the inner loop over n is contiguous and vectorises; the joint takes them
 * (N, D) and packs them into panels for its register tiles. The exp of the clamped, non-positive
 * exponents is inlined (fast_exp: Cody-Waite reduction and a Taylor polynomial, within about 2 ulp),
 * and summed in float partial sums of SUB terms: both measured about 1.25x faster than glibc's
 * vector exp summed straight into a double, which is bound by the latency of that one accumulator.
 *
 *   joint:     out[i]         = logsumexp_n ( c[n]    + bias[i,n] - sum_d a[n,d] (z[i,d] - mu[n,d])^2 )
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
    const float r2 = r * r, r4 = r2 * r2; /* Estrin's scheme, as in fast_exp */
    const float s0 = __builtin_fmaf(__builtin_fmaf(r, 1.f / 6, 0.5f), r2, __builtin_fmaf(r, 1.f, 1.f));
    const float s1 = __builtin_fmaf(__builtin_fmaf(r, 1.f / 5040, 1.f / 720), r2, __builtin_fmaf(r, 1.f / 120, 1.f / 24));
    const float p = __builtin_fmaf(s1, r4, s0);
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
    /* Estrin's scheme: the same polynomial in a tree of depth 4 instead of a chain of 13 multiply-adds, whose
     * latency bounded the loops that sum the exps */
    const double r2 = r * r, r4 = r2 * r2, r8 = r4 * r4;
    const double q0 = __builtin_fma(r, 1.0, 1.0), q1 = __builtin_fma(r, 1.0 / 6.0, 0.5);
    const double q2 = __builtin_fma(r, 1.0 / 120.0, 1.0 / 24.0), q3 = __builtin_fma(r, 1.0 / 5040.0, 1.0 / 720.0);
    const double q4 = __builtin_fma(r, 1.0 / 362880.0, 1.0 / 40320.0);
    const double q5 = __builtin_fma(r, 1.0 / 39916800.0, 1.0 / 3628800.0);
    const double q6 = __builtin_fma(r, 1.0 / 6227020800.0, 1.0 / 479001600.0);
    const double s0 = __builtin_fma(q1, r2, q0), s1 = __builtin_fma(q3, r2, q2), s2 = __builtin_fma(q5, r2, q4);
    const double p = __builtin_fma(__builtin_fma(q6, r4, s2), r8, __builtin_fma(s1, r4, s0));
    /* 2^k from the bits of k + 1.5 * 2^52, whose low mantissa bits hold 2^51 + k: integer adds and a shift,
     * which vectorise on AVX2, where a double -> int64 conversion (AVX-512DQ only) would not */
    const double shifted = k + 6755399441055744.0;
    uint64_t bits;
    memcpy(&bits, &shifted, sizeof bits);
    bits = (bits + (uint64_t)(1023 - (1LL << 51))) << 52;
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

/* The largest of L[0..nb): the exact maximum each block's logsumexp subtracts. */
static inline REAL block_max(const REAL *L, long nb)
{
    REAL m = LOWEST;
    for (long n = 0; n < nb; n++) m = L[n] > m ? L[n] : m;
    return m;
}

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

/* Register tiles of the joint: TILE queries x VW components (one vector) accumulate in registers over
 * all D dimensions, so each loaded mu and a serves TILE queries and each term is stored once, instead of
 * D read-modify-writes of a buffer per query. The components are packed once per call into panels
 * (for each run of VW components: D vectors of mu, then of a; padded with zero precisions and a floored
 * constant), so a tile reads one contiguous stream; blocks of components small enough for L2 serve every
 * tile of a thread's chunk before the next block. GCC/clang vector extensions keep the TILE accumulators
 * in registers (256-bit vectors, 512-bit where AVX-512 is available). */
#if defined(__AVX512F__)
#define VBYTES 64
#else
#define VBYTES 32
#endif
typedef REAL FN(vreal) __attribute__((vector_size(VBYTES)));
#define VW ((long)(VBYTES / sizeof(REAL)))
#define PANEL_BYTES (192 * 1024) /* components per block: their panels fit in L2 */
#define CHUNK_TILES 32           /* at most, query tiles per thread chunk: each block is read from memory
                                  * once per chunk, so a chunk of 256 queries keeps D = 64 off the DRAM limit */

static inline FN(vreal) FN(vload)(const REAL *p) { FN(vreal) v; memcpy(&v, p, sizeof v); return v; }

/* L[t][n - n0] = c[n] - sum_d a[d, n] (zt[t, d] - mu[d, n])^2 for t < T and n0 <= n < n1 (n0 a
 * multiple of VW), from the panels pm (mu, a interleaved per vector run) and the padded constants pc. */
static inline __attribute__((always_inline)) void FN(tile_terms_T)(const REAL *zt, long D, const REAL *pm,
                                                                   const REAL *pc, long n0, long n1,
                                                                   REAL (*L)[BLOCK], const int T)
{
    for (long n = n0; n < n1; n += VW) {
        const REAL *panel = pm + (n / VW) * 2 * D * VW;
        FN(vreal) acc[TILE];
        const FN(vreal) cv = FN(vload)(pc + n);
#pragma GCC unroll 8
        for (int t = 0; t < T; t++) acc[t] = cv;
        for (long d = 0; d < D; d++) {
            const FN(vreal) m = FN(vload)(panel + d * VW), av = FN(vload)(panel + (D + d) * VW);
#pragma GCC unroll 8
            for (int t = 0; t < T; t++) {
                const FN(vreal) diff = zt[t * D + d] - m;
                acc[t] -= av * diff * diff;
            }
        }
#pragma GCC unroll 8
        for (int t = 0; t < T; t++) memcpy(&L[t][n - n0], &acc[t], sizeof acc[t]);
    }
}

static void FN(tile_terms)(const REAL *zt, long D, const REAL *pm, const REAL *pc, long n0, long n1,
                           REAL (*L)[BLOCK])
{
    FN(tile_terms_T)(zt, D, pm, pc, n0, n1, L, TILE);
}

/* The same on one group of np members for T = 1, 2, 4 or 8 queries (each a specialised loop): the pruned
 * kernel's groups are often needed by only a few queries of a block. */
static void FN(tile_terms_few)(const REAL *zt, long D, const REAL *pm, const REAL *pc, long np,
                               REAL (*L)[BLOCK], int T)
{
    switch (T) {
    case 1: FN(tile_terms_T)(zt, D, pm, pc, 0, np, L, 1); break;
    case 2: FN(tile_terms_T)(zt, D, pm, pc, 0, np, L, 2); break;
    case 4: FN(tile_terms_T)(zt, D, pm, pc, 0, np, L, 4); break;
    default: FN(tile_terms_T)(zt, D, pm, pc, 0, np, L, TILE); break;
    }
}

typedef struct { const REAL *z, *pm, *pc, *bias; long Q, N, D, block; REAL *out; } FN(joint_ctx);

static void FN(joint_tiles)(void *vctx, long tile0, long tile1)
{
    const FN(joint_ctx) *x = (const FN(joint_ctx) *)vctx;
    const REAL *z = x->z, *bias = x->bias;
    const long Q = x->Q, N = x->N, D = x->D, ntiles = tile1 - tile0;
    REAL (*L)[BLOCK] = (REAL (*)[BLOCK])malloc(sizeof(REAL) * TILE * BLOCK);
    REAL *zt = (REAL *)malloc(sizeof(REAL) * ntiles * TILE * D);
    double *run_max = (double *)malloc(sizeof(double) * ntiles * TILE);
    double *run_sum = (double *)malloc(sizeof(double) * ntiles * TILE);
    for (long j = 0; j < ntiles * TILE; j++) {
        /* a partial last tile repeats its last query; the copies' results are dropped */
        long i = tile0 * TILE + j;
        memcpy(zt + j * D, z + (i < Q ? i : Q - 1) * D, sizeof(REAL) * D);
        run_max[j] = -DBL_MAX;
        run_sum[j] = 0.0;
    }
    for (long n0 = 0; n0 < N; n0 += x->block) {
        const long nb = (N - n0 < x->block) ? N - n0 : x->block;
        for (long tile = tile0; tile < tile1; tile++) {
            const long j0 = (tile - tile0) * TILE, i0 = tile * TILE, T = (Q - i0 < TILE) ? Q - i0 : TILE;
            FN(tile_terms)(zt + j0 * D, D, x->pm, x->pc, n0, n0 + nb, L);
            for (long t = 0; t < T; t++) {
                REAL *Lt = L[t];
                if (bias) {
                    const REAL *bt = bias + (i0 + t) * N + n0;
                    for (long n = 0; n < nb; n++) Lt[n] += bt[n] > BIAS_FLOOR ? bt[n] : BIAS_FLOOR;
                }
                merge_block(Lt, nb, block_max(Lt, nb), &run_max[j0 + t], &run_sum[j0 + t]);
            }
        }
    }
    for (long j = 0; j < ntiles * TILE && tile0 * TILE + j < Q; j++)
        x->out[tile0 * TILE + j] = (REAL)(run_max[j] + log(run_sum[j]));
    free(L);
    free(zt);
    free(run_max);
    free(run_sum);
}

/* The panels of the register tiles, for the joint (one group of all N rows) and the pruned kernel (its
 * groups): group g holds rows perm[starts[g]] .. perm[starts[g + 1] - 1] of mu and a (row-major (N, D), as
 * torch holds them; perm NULL: the rows in order) and their constants c, packed from member offset
 * poff[g] (a multiple of VW; poff[G] the total) in runs of VW members (D vectors of mu, then D of a) and
 * padded to poff[g + 1] with zero precisions and the floored constant. Each row is read once. */
typedef struct { const REAL *mu, *a, *c; const long *perm, *starts, *poff; long D; REAL *pm, *pc; } FN(pack_ctx);

static void FN(pack_range)(void *vctx, long g0, long g1)
{
    const FN(pack_ctx) *x = (const FN(pack_ctx) *)vctx;
    const long D = x->D;
    for (long g = g0; g < g1; g++) {
        const long first = x->starts[g], size = x->starts[g + 1] - first;
        for (long v = x->poff[g] / VW; v < x->poff[g + 1] / VW; v++) {
            REAL *panel = x->pm + v * 2 * D * VW;
            for (long l = 0; l < VW; l++) {
                const long j = v * VW + l - x->poff[g], inside = j < size;
                const long n = !inside ? 0 : x->perm ? x->perm[first + j] : first + j;
                const REAL *mun = x->mu + n * D, *an = x->a + n * D;
                x->pc[v * VW + l] = inside ? x->c[n] : BIAS_FLOOR;
                for (long d = 0; d < D; d++) {
                    panel[d * VW + l] = inside ? mun[d] : 0;
                    panel[(D + d) * VW + l] = inside ? an[d] : 0;
                }
            }
        }
    }
}

void FN(pack_panels)(const REAL *mu, const REAL *a, const REAL *c, const long *perm, const long *starts, long G,
                     long D, const long *poff, REAL *pm, REAL *pc, int threads)
{
    FN(pack_ctx) ctx = {mu, a, c, perm, starts, poff, D, pm, pc};
    parallel_for(G, G / (4L * (threads > 1 ? threads : 1)) + 1, threads, FN(pack_range), &ctx);
}

/* The pruned kernel's boxes of its groups (rows perm[starts[g]] .. as in pack_panels): lo, hi (means),
 * lvlo, lvhi (log-variances), (G, D) each, and wmax (G,), the largest log weight (lw NULL: all 0). */
typedef struct { const REAL *mu, *lv, *lw; const long *perm, *starts; long D; REAL *lo, *hi, *lvlo, *lvhi, *wmax; } FN(box_ctx);

static void FN(box_range)(void *vctx, long g0, long g1)
{
    const FN(box_ctx) *x = (const FN(box_ctx) *)vctx;
    const long D = x->D;
    for (long g = g0; g < g1; g++) {
        REAL *lo = x->lo + g * D, *hi = x->hi + g * D, *al = x->lvlo + g * D, *ah = x->lvhi + g * D;
        REAL w = LOWEST;
        for (long i = x->starts[g]; i < x->starts[g + 1]; i++) {
            const long n = x->perm[i];
            const REAL *m = x->mu + n * D, *l = x->lv + n * D;
            const int first = i == x->starts[g];
            for (long d = 0; d < D; d++) {
                lo[d] = first || m[d] < lo[d] ? m[d] : lo[d];
                hi[d] = first || m[d] > hi[d] ? m[d] : hi[d];
                al[d] = first || l[d] < al[d] ? l[d] : al[d];
                ah[d] = first || l[d] > ah[d] ? l[d] : ah[d];
            }
            const REAL wn = x->lw ? x->lw[n] : 0;
            w = wn > w ? wn : w;
        }
        x->wmax[g] = w;
    }
}

void FN(group_boxes)(const REAL *mu, const REAL *lv, const REAL *lw, const long *perm, const long *starts, long G,
                     long D, REAL *lo, REAL *hi, REAL *lvlo, REAL *lvhi, REAL *wmax, int threads)
{
    FN(box_ctx) ctx = {mu, lv, lw, perm, starts, D, lo, hi, lvlo, lvhi, wmax};
    parallel_for(G, G / (4L * (threads > 1 ? threads : 1)) + 1, threads, FN(box_range), &ctx);
}

void FN(joint_lse)(const REAL *z, long Q, const REAL *mu, const REAL *a, const REAL *c,
                   const REAL *bias, long N, long D, REAL *out, int threads)
{
    if (Q <= 0) return;
    const long nvec = (N + VW - 1) / VW, starts[2] = {0, N}, poff[2] = {0, nvec * VW};
    REAL *pm = (REAL *)malloc(sizeof(REAL) * nvec * 2 * D * VW);
    REAL *pc = (REAL *)malloc(sizeof(REAL) * nvec * VW);
    FN(pack_range)(&(FN(pack_ctx)){mu, a, c, NULL, starts, poff, D, pm, pc}, 0, 1);
    long block = PANEL_BYTES / (2 * D * (long)sizeof(REAL)) / VW * VW;
    block = block < 4 * VW ? 4 * VW : block > BLOCK ? BLOCK : block;
    FN(joint_ctx) ctx = {z, pm, pc, bias, Q, N, D, block, out};
    const long tiles = (Q + TILE - 1) / TILE, per_thread = tiles / (2L * (threads > 1 ? threads : 1));
    const long chunk = per_thread < 1 ? 1 : per_thread > CHUNK_TILES ? CHUNK_TILES : per_thread;
    parallel_for(tiles, chunk, threads, FN(joint_tiles), &ctx);
    free(pm);
    free(pc);
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
 * Components are sorted so that each group is contiguous; each group is stored as panels (as the joint
 * packs its components: runs of VW members, D vectors of mu then D of a, padded with zero precisions) at
 * panel offset poff[g] (in members: pm + poff[g] * 2 D, pc + poff[g]), with c as in joint_lse in pc.
 * The groups are the finest of nlev levels of boxes, level 0 the coarsest; each unit of a level is a run
 * of consecutive units of the next finer level (of components, for the finest). Per level (PRUNE_FIELDS pointers in ptrs, counts[k] units):
 * start (count + 1, long; the unit's children), lo, hi (box of the means), lvlo, lvhi (range of the
 * log-variances), iel = exp(-lvlo), ieh = exp(-lvhi), all (D, count) so that the bounds of a run of
 * siblings vectorise, then (count,) wmax (largest log weight) and logn (log of the number of members).
 * Per query: a greedy descent to the most promising group, evaluated exactly (its largest term M is a
 * lower bound of the query's largest term, raised to the running maximum as groups are evaluated), then
 * a traversal from the top that skips every unit whose bound + logn falls below M + log_cut; the rest is
 * evaluated exactly and merged online.
 * evaluated[i] counts the terms. */
#define PRUNE_LOG_2PI 1.8378770664093454836
#define PRUNE_FIELDS 9
#define PRUNE_MAX_LEVELS 16

typedef struct {
    long count;
    const long *start;
    const double *lo, *hi, *lvlo, *lvhi, *iel, *ieh, *wmax, *logn;
} prune_level;

/* A lower bound on log x for normal x > 0, within 0.016: x = 2^e m with m in [1, 2), and
 * log2 m >= (m - 1) + 0.27 (m - 1)(2 - m) there (log2 m minus the chord is concave, zero at both ends,
 * with slope -0.2787 at m = 2; checked on a fine grid). Integer and float operations only, so the
 * loops that call it vectorise; a bound need not be tight, only never above the truth. */
static inline double log_lower(double x)
{
    uint64_t u;
    memcpy(&u, &x, sizeof u);
    uint64_t eb = (u >> 52) | 0x4330000000000000ull, mb = (u & 0x000FFFFFFFFFFFFFull) | 0x3FF0000000000000ull;
    double e, m;
    memcpy(&e, &eb, sizeof e);
    memcpy(&m, &mb, sizeof m);
    e -= 4503599627370496.0 + 1023.0;  /* 2^52 + the exponent bias */
    double t = m - 1.0;
    return (e + t + 0.27 * t * (1.0 - t)) * 0.69314718055994530942;
}

/* S[j] = sum over the dimensions dims[0 .. nd) of min over lv in [lvlo, lvhi] of lv + r^2 exp(-lv), for units
 * u0 .. u1 - 1 of a level and query zi: the minimum is at clamp(log r^2, lvlo, lvhi) (convex in lv), where r
 * is the distance of z_d to the box; log r^2 taken from below. */
static void unit_sums(const REAL *zi, const long *dims, long nd, const prune_level *lv, long u0, long u1, double *S)
{
    const long nu = u1 - u0, C = lv->count;
    for (long j = 0; j < nu; j++) S[j] = 0.0;
    for (long k = 0; k < nd; k++) {
        const long d = dims[k];
        const double zd = (double)zi[d];
        const double *lo = lv->lo + d * C + u0, *hi = lv->hi + d * C + u0, *al = lv->lvlo + d * C + u0,
                     *ah = lv->lvhi + d * C + u0, *il = lv->iel + d * C + u0, *ih = lv->ieh + d * C + u0;
        for (long j = 0; j < nu; j++) {
            double r = lo[j] - zd, r_hi = zd - hi[j];
            r = r > r_hi ? r : r_hi;
            r = r > 0.0 ? r : 0.0;
            const double r2 = r * r, t_lo = r2 * il[j], t_hi = r2 * ih[j];
            /* r2 <= exp(lvlo): the minimum at lvlo; r2 >= exp(lvhi): at lvhi; else log r2 + 1. The
             * middle value is floored at lvlo + 1, below the truth there, so a subnormal r2 (whose
             * log_lower would not be a bound) cannot matter: it only reaches the middle when
             * exp(lvlo) is itself subnormal. */
            const double mid = log_lower(r2 > DBL_MIN ? r2 : DBL_MIN);
            const double mid_f = (mid > al[j] ? mid : al[j]) + 1.0;
            S[j] += t_lo <= 1.0 ? al[j] + t_lo : (t_hi >= 1.0 ? ah[j] + t_hi : mid_f);
        }
    }
}

/* U (the bound of the largest member term, log w included) of units u0 .. u1 - 1 of a level for query zi,
 * into U[0 .. u1 - u0): the sums over the sharp dimensions of the units' own boxes, plus `flat`, the query's
 * sum over the flat dimensions of the box of all components (a lower bound of every unit's, as that box
 * contains theirs; where the components hardly differ, the units' own boxes would add next to nothing). */
static void unit_bounds(const REAL *zi, long D, const long *sharp, long nsharp, double flat, const prune_level *lv,
                        long u0, long u1, double *U)
{
    unit_sums(zi, sharp, nsharp, lv, u0, u1, U);
    for (long j = 0; j < u1 - u0; j++) U[j] = lv->wmax[u0 + j] - 0.5 * ((double)D * PRUNE_LOG_2PI + flat + U[j]);
}

typedef struct {
    const REAL *z, *pm, *pc;
    const long *poff;
    long D, nlev, max_fanout, nsharp;
    const long *dims; /* the sharp dimensions (nsharp), then the flat ones */
    prune_level levels[PRUNE_MAX_LEVELS], whole; /* whole: one unit, the box of all components */
    double log_cut;
    REAL *out;
    long *evaluated;
} FN(pruned_ctx);

#define PRUNE_BLOCK 32  /* consecutive (k-d sorted, so nearby) queries that share one traversal */

typedef struct {
    const REAL *z;  /* the block's first query */
    double cut[PRUNE_BLOCK], run_max[PRUNE_BLOCK], run_sum[PRUNE_BLOCK], flat[PRUNE_BLOCK];
    long count[PRUNE_BLOCK], first_group[PRUNE_BLOCK];
    REAL (*L)[BLOCK]; /* TILE rows of group terms */
    REAL *zt;         /* TILE x D: the queries of one register tile */
    double *U;   /* per depth: PRUNE_BLOCK x max_fanout bounds */
    int *active; /* per depth: the block's queries still alive under the unit being visited */
} FN(prune_block);

/* Children u0 .. u1 - 1 of one unit at level k, for the nq queries active[0 .. nq) of the block: a
 * child is skipped for every query whose cut its bound misses, and entirely when no query is left;
 * at the finest level a group's components are loaded once for all the queries that need them. */
static void FN(prune_visit)(const FN(pruned_ctx) *x, FN(prune_block) *b, long k, long u0, long u1,
                            const int *active, int nq)
{
    const prune_level *lv = &x->levels[k];
    const long F = x->max_fanout, D = x->D;
    double *U = b->U + k * PRUNE_BLOCK * F;
    int *next = b->active + (k + 1) * PRUNE_BLOCK;
    for (int t = 0; t < nq; t++)
        unit_bounds(b->z + active[t] * D, D, x->dims, x->nsharp, b->flat[active[t]], lv, u0, u1, U + t * F);
    for (long u = u0; u < u1; u++) {
        int alive = 0;
        for (int t = 0; t < nq; t++)
            if (U[t * F + u - u0] + lv->logn[u] >= b->cut[active[t]]) next[alive++] = active[t];
        if (alive == 0) continue;
        if (k + 1 < x->nlev) {
            FN(prune_visit)(x, b, k + 1, lv->start[u], lv->start[u + 1], next, alive);
            continue;
        }
        /* the group's exact terms for its alive queries (but those that began with it), TILE at a time */
        const long ng = lv->start[u + 1] - lv->start[u], np = x->poff[u + 1] - x->poff[u];
        const REAL *pm = x->pm + x->poff[u] * 2 * D, *pc = x->pc + x->poff[u];
        int todo[PRUNE_BLOCK], nt = 0;
        for (int t = 0; t < alive; t++)
            if (u != b->first_group[next[t]]) todo[nt++] = next[t];
        for (int t0 = 0, T; t0 < nt; t0 += T) {
            const int left = nt - t0;
            T = left >= TILE ? TILE : left >= 4 ? 4 : left >= 2 ? 2 : 1;
            for (int t = 0; t < T; t++) memcpy(b->zt + t * D, b->z + todo[t0 + t] * D, sizeof(REAL) * D);
            FN(tile_terms_few)(b->zt, D, pm, pc, np, b->L, T);
            for (int t = 0; t < T; t++) {
                const int j = todo[t0 + t];
                merge_block(b->L[t], ng, block_max(b->L[t], ng), &b->run_max[j], &b->run_sum[j]);
                b->count[j] += ng;
                /* the running maximum is a larger lower bound of the largest term: the cut may only rise */
                const double cut = b->run_max[j] + x->log_cut;
                b->cut[j] = cut > b->cut[j] ? cut : b->cut[j];
            }
        }
    }
}

static void FN(pruned_queries)(void *vctx, long i0, long i1)
{
    const FN(pruned_ctx) *x = (const FN(pruned_ctx) *)vctx;
    const long D = x->D, nlev = x->nlev, F = x->max_fanout;
    FN(prune_block) b;
    b.L = (REAL (*)[BLOCK])malloc(sizeof(REAL) * TILE * BLOCK);
    b.zt = (REAL *)malloc(sizeof(REAL) * TILE * D);
    b.U = (double *)malloc(sizeof(double) * nlev * PRUNE_BLOCK * F);
    b.active = (int *)malloc(sizeof(int) * (nlev + 1) * PRUNE_BLOCK);
    for (long i = i0; i < i1; i += PRUNE_BLOCK) {
        const int nq = (int)(i1 - i < PRUNE_BLOCK ? i1 - i : PRUNE_BLOCK);
        b.z = x->z + i * D;
        for (int j = 0; j < nq; j++) {
            /* greedy descent: the child with the largest bound at every level */
            const REAL *zi = b.z + j * D;
            long u0 = 0, u1 = x->levels[0].count, best = 0;
            unit_sums(zi, x->dims + x->nsharp, D - x->nsharp, &x->whole, 0, 1, &b.flat[j]);
            for (long k = 0; k < nlev; k++) {
                unit_bounds(zi, D, x->dims, x->nsharp, b.flat[j], &x->levels[k], u0, u1, b.U);
                best = u0;
                for (long u = u0 + 1; u < u1; u++) if (b.U[u - u0] > b.U[best - u0]) best = u;
                u0 = x->levels[k].start[best];
                u1 = x->levels[k].start[best + 1];
            }
            b.run_max[j] = -DBL_MAX;
            b.run_sum[j] = 0.0;
            FN(tile_terms_few)(zi, D, x->pm + x->poff[best] * 2 * D, x->pc + x->poff[best],
                               x->poff[best + 1] - x->poff[best], b.L, 1);
            REAL m = block_max(b.L[0], u1 - u0);
            merge_block(b.L[0], u1 - u0, m, &b.run_max[j], &b.run_sum[j]);
            b.count[j] = u1 - u0;
            b.first_group[j] = best;
            b.cut[j] = (double)m + x->log_cut;
            b.active[j] = j;
        }
        FN(prune_visit)(x, &b, 0, 0, x->levels[0].count, b.active, nq);
        for (int j = 0; j < nq; j++) {
            x->out[i + j] = (REAL)(b.run_max[j] + log(b.run_sum[j]));
            x->evaluated[i + j] = b.count[j];
        }
    }
    free(b.L);
    free(b.zt);
    free(b.U);
    free(b.active);
}

/* ptrs: PRUNE_FIELDS pointers per level, in the order of prune_level (start, lo, hi, lvlo, lvhi, iel,
 * ieh, wmax, logn), for the nlev levels and then for `whole`, one unit holding every component; counts: the
 * units per level; max_fanout: the most children of one unit (and the count of level 0); dims: the D
 * dimensions, the nsharp whose boxes the units' bounds use first, then the flat ones, bounded once per query
 * by the whole box; pm, pc, poff: the groups' panels (G + 1 offsets, each group padded to at most BLOCK
 * members). Returns 0, or -1 for more than PRUNE_MAX_LEVELS levels. */
int FN(pruned_joint_lse)(const REAL *z, long Q, long D, const REAL *pm, const REAL *pc, const long *poff,
                         long nlev, const long *counts, void *const *ptrs, long max_fanout, const long *dims,
                         long nsharp, double log_cut, REAL *out, long *evaluated, int threads)
{
    if (nlev < 1 || nlev > PRUNE_MAX_LEVELS) return -1;
    FN(pruned_ctx) ctx = {z, pm, pc, poff, D, nlev, max_fanout, nsharp, dims, {{0}}, {0}, log_cut, out, evaluated};
    for (long k = 0; k <= nlev; k++) {
        void *const *p = ptrs + k * PRUNE_FIELDS;
        prune_level level = {k < nlev ? counts[k] : 1, (const long *)p[0], (const double *)p[1],
                             (const double *)p[2], (const double *)p[3], (const double *)p[4],
                             (const double *)p[5], (const double *)p[6], (const double *)p[7],
                             (const double *)p[8]};
        if (k < nlev) ctx.levels[k] = level;
        else ctx.whole = level;
    }
    parallel_for(Q, 16, threads, FN(pruned_queries), &ctx);
    return 0;
}

/* k-d ordering (estimators.kernels.pruned.kd_order): recursive median bisection of the rows of pts (n, D)
 * along the dimension of largest spread / scale, down to leaves of at most `leaf` rows, depth first.
 * The rows are copied once into a working array that is partitioned in place, row by row, with the
 * permutation alongside: every pass reads contiguous rows, where selecting through the permutation into
 * pts missed the cache at every step. The first splits run in order; the subtrees below them on the
 * threads (their leaves do not depend on the order in which subtrees finish). */
static inline void FN(swap_rows)(REAL *w, long *perm, long D, long i, long j)
{
    REAL *a = w + i * D, *b = w + j * D;
    for (long d = 0; d < D; d++) { REAL t = a[d]; a[d] = b[d]; b[d] = t; }
    long t = perm[i]; perm[i] = perm[j]; perm[j] = t;
}

/* Partition rows [b, e) of w about their median along the widest dimension (scaled): returns b + (e - b) / 2,
 * with every key of [b, mid) <= every key of [mid, e) (quickselect, Hoare partitions). */
static long FN(kd_split)(REAL *w, long *perm, long b, long e, long D, const REAL *scale)
{
    REAL *box = (REAL *)malloc(sizeof(REAL) * 2 * D), *top = box + D;
    memcpy(box, w + b * D, sizeof(REAL) * D);
    memcpy(top, w + b * D, sizeof(REAL) * D);
    for (long i = b + 1; i < e; i++) { /* one pass over the rows */
        const REAL *row = w + i * D;
        for (long d = 0; d < D; d++) {
            box[d] = row[d] < box[d] ? row[d] : box[d];
            top[d] = row[d] > top[d] ? row[d] : top[d];
        }
    }
    long best_d = 0;
    double best = -1.0;
    for (long d = 0; d < D; d++) {
        const double spread = ((double)top[d] - box[d]) / scale[d];
        if (spread > best) { best = spread; best_d = d; }
    }
    free(box);
    const long k = b + (e - b) / 2;
    long lo = b, hi = e - 1;
    REAL *key = w + best_d;
    while (lo < hi) {
        const REAL pivot = key[((lo + hi) / 2) * D];
        long i = lo, j = hi;
        while (i <= j) {
            while (key[i * D] < pivot) i++;
            while (key[j * D] > pivot) j--;
            if (i <= j) { FN(swap_rows)(w, perm, D, i, j); i++; j--; }
        }
        if (k <= j) hi = j;
        else if (k >= i) lo = i;
        else break;
    }
    return k;
}

typedef struct { REAL *w; long *perm; long D, leaf; const REAL *scale; const long *ranges; char *is_start; } FN(kd_ctx);

/* Depth-first splitting of the ranges r0 .. r1 - 1 (pairs in ctx->ranges) down to leaves, marked in is_start. */
static void FN(kd_subtrees)(void *vctx, long r0, long r1)
{
    const FN(kd_ctx) *x = (const FN(kd_ctx) *)vctx;
    long cap = 128, top = 0;
    long *stack = (long *)malloc(sizeof(long) * 2 * cap);
    for (long r = r0; r < r1; r++) {
        stack[0] = x->ranges[2 * r]; stack[1] = x->ranges[2 * r + 1]; top = 1;
        while (top > 0) {
            top--;
            const long b = stack[2 * top], e = stack[2 * top + 1];
            if (e - b <= x->leaf) { if (e > b) x->is_start[b] = 1; continue; }
            const long mid = FN(kd_split)(x->w, x->perm, b, e, x->D, x->scale);
            if (top + 2 > cap) { cap *= 2; stack = (long *)realloc(stack, sizeof(long) * 2 * cap); }
            stack[2 * top] = mid; stack[2 * top + 1] = e; top++;
            stack[2 * top] = b; stack[2 * top + 1] = mid; top++;
        }
    }
    free(stack);
}

#define KD_SUBTREES 16 /* ranges split in order before the threads take the subtrees below them */

/* The members per panel vector of this build (the pruned groups are padded to multiples of it). */
long FN(vector_width)(void) { return VW; }

long FN(kd_order)(const REAL *pts, long n, long D, const REAL *scale, long leaf, long *perm, long *starts,
                  int threads)
{
    for (long i = 0; i < n; i++) perm[i] = i;
    if (n == 0) return 0;
    REAL *w = (REAL *)malloc(sizeof(REAL) * n * D);
    char *is_start = (char *)calloc(n, 1);
    memcpy(w, pts, sizeof(REAL) * n * D);
    /* breadth first until KD_SUBTREES ranges (or leaves): the same splits as depth first, in another order */
    long ranges[2 * KD_SUBTREES], next[2 * KD_SUBTREES], count = 1;
    ranges[0] = 0; ranges[1] = n;
    for (;;) {
        long c = 0, split = 0;
        for (long r = 0; r < count; r++) {
            const long b = ranges[2 * r], e = ranges[2 * r + 1];
            if (e - b > leaf && 2 * count <= KD_SUBTREES) {
                const long mid = FN(kd_split)(w, perm, b, e, D, scale);
                next[2 * c] = b; next[2 * c + 1] = mid; c++;
                next[2 * c] = mid; next[2 * c + 1] = e; c++;
                split = 1;
            } else {
                next[2 * c] = b; next[2 * c + 1] = e; c++;
            }
        }
        memcpy(ranges, next, sizeof(long) * 2 * c);
        count = c;
        if (!split) break;
    }
    FN(kd_ctx) ctx = {w, perm, D, leaf, scale, ranges, is_start};
    parallel_for(count, 1, n * D >= (1L << 16) ? threads : 1, FN(kd_subtrees), &ctx);
    long leaves = 0;
    for (long i = 0; i < n; i++)
        if (is_start[i]) starts[leaves++] = i;
    free(w);
    free(is_start);
    return leaves;
}
