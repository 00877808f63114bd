/* The roofline of the joint kernel (benchmarks/speed_kernel_bound.py): what one term must cost at
 * least, measured with the kernel's own pieces and the kernel's build flags.
 *
 *   bound_exp: the kernel's inline exp summed over values in L1 (merge_block's loop, no max pass);
 *   bound_fma: D fused multiply-adds per term, TILE x VW independent chains held in registers;
 *   bound_direct: the kernel's own register tiles (tile_terms: a subtraction, a multiplication and a
 *                 fused multiply-add per dimension) on one block of components that stays in L1.
 *
 * A term of the joint costs at least an exp and D multiply-adds; the direct (z - mu)^2 form, kept
 * because it is accurate in float32, needs a subtraction and a multiplication more per dimension. */
#include "../estimators/kernels/native/mixture.c"

double FN(bound_exp)(long reps)
{
    static REAL buf[BLOCK];
    for (long n = 0; n < BLOCK; n++) buf[n] = (REAL)(-20.0 * n / BLOCK);
    double s = 0;
    for (long r = 0; r < reps; r++) {
        for (long n0 = 0; n0 < BLOCK; n0 += SUB) {
            REAL part = 0;
            for (long n = n0; n < n0 + SUB; n++) {
                REAL x = buf[n] - (REAL)(r & 1);
                part += FAST_EXP(x < CLAMP ? CLAMP : x);
            }
            s += part;
        }
    }
    return s;
}

double FN(bound_fma)(long reps, long D)
{
    FN(vreal) acc[TILE];
    const FN(vreal) k = {0}, one = k + (REAL)0.999, b = k - (REAL)0.001;
    for (int t = 0; t < TILE; t++) acc[t] = k - (REAL)(0.01 * t);
    for (long r = 0; r < reps; r++)
        for (long d = 0; d < D; d++)
#pragma GCC unroll 8
            for (int t = 0; t < TILE; t++) acc[t] = acc[t] * one + b;
    double s = 0;
    for (int t = 0; t < TILE; t++)
        for (long l = 0; l < VW; l++) s += acc[t][l];
    return s;
}

double FN(bound_direct)(long reps, long D)
{
    const long n = 64; /* components: 2 D n values, in L1 */
    REAL *pm = (REAL *)calloc(2 * D * n, sizeof(REAL)), *pc = (REAL *)calloc(n, sizeof(REAL));
    REAL *zt = (REAL *)calloc(TILE * D, sizeof(REAL));
    REAL (*L)[BLOCK] = (REAL (*)[BLOCK])malloc(sizeof(REAL) * TILE * BLOCK);
    for (long j = 0; j < 2 * D * n; j++) pm[j] = (REAL)(0.001 * (j % 97));
    double s = 0;
    for (long r = 0; r < reps; r++) {
        zt[r % (TILE * D)] += (REAL)1e-3; /* the compiler cannot hoist the tiles out of the loop */
        FN(tile_terms)(zt, D, pm, pc, 0, n, L);
        s += L[r % TILE][r % n];
    }
    free(pm); free(pc); free(zt); free(L);
    return s;
}

long FN(bound_lanes)(void) { return TILE * VW; }
