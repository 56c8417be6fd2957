/* test_kernels.c - every optimised kernel against its plain reference on
 * random inputs of awkward shapes (odd, prime, 1, larger than a BLAS block).
 * Tolerance: |fast - ref| <= 1e-5 * (1 + sum |x_i w_i|), the rounding bound
 * of an fp32 dot product of this length with a margin. */
#include <math.h>

#include "kernels.h"
#include "testutil.h"

static uint64_t g_rng;
static float frand(void) {
    g_rng = g_rng * 6364136223846793005ULL + 1442695040888963407ULL;
    return (float)((double)(g_rng >> 11) * 0x1.0p-53 * 2.0 - 1.0);
}

static void check_matmul(int T, int in, int out) {
    float *x = malloc(sizeof(float) * T * in), *w = malloc(sizeof(float) * out * in);
    float *y1 = malloc(sizeof(float) * T * out), *y2 = malloc(sizeof(float) * T * out);
    for (int i = 0; i < T * in; i++) x[i] = frand();
    for (int i = 0; i < out * in; i++) w[i] = frand();
    for (int i = 0; i < T * out; i++) y1[i] = y2[i] = frand(); /* for beta = 1 */
    for (int beta = 0; beta <= 1; beta++) {
        kern_matmul(y1, out, x, w, T, in, out, (float)beta);
        kern_matmul_ref(y2, out, x, w, T, in, out, (float)beta);
        double worst = 0;
        for (int t = 0; t < T; t++)
            for (int o = 0; o < out; o++) {
                double mag = 1;
                for (int i = 0; i < in; i++) mag += fabs((double)x[t * in + i] * w[o * in + i]);
                double d = fabs(y1[t * out + o] - y2[t * out + o]) / mag;
                if (d > worst) worst = d;
            }
        TU_CHECK(worst <= 1e-5, "matmul T=%d in=%d out=%d beta=%d: relative error %g", T, in, out, beta, worst);
        memcpy(y1, y2, sizeof(float) * T * out);
    }
    free(x), free(w), free(y1), free(y2);
}

static void check_attention(int T, int pos0, int hd, int kvs) {
    int L = pos0 + T, qs = hd + 3, os = hd + 5;
    float *q = malloc(sizeof(float) * T * qs), *k = malloc(sizeof(float) * L * kvs), *v = malloc(sizeof(float) * L * kvs);
    float *o1 = calloc((size_t)T * os, sizeof(float)), *o2 = malloc(sizeof(float) * hd);
    float *scores = malloc(sizeof(float) * T * L), *srow = malloc(sizeof(float) * L);
    for (int i = 0; i < T * qs; i++) q[i] = 3 * frand();
    for (int i = 0; i < L * kvs; i++) k[i] = 3 * frand(), v[i] = frand();
    kern_attention(o1, os, q, qs, k, v, kvs, T, pos0, hd, scores);
    double worst = 0;
    for (int t = 0; t < T; t++) {
        kern_attention_row(o2, q + t * qs, k, v, kvs, pos0 + t, hd, srow);
        for (int i = 0; i < hd; i++) worst = fmax(worst, fabs(o1[t * os + i] - o2[i]));
    }
    /* Outputs are convex combinations of values in [-1, 1]. */
    TU_CHECK(worst <= 1e-5, "attention T=%d pos0=%d hd=%d: max error %g", T, pos0, hd, worst);
    free(q), free(k), free(v), free(o1), free(o2), free(scores), free(srow);
}

int main(void) {
    g_rng = 12345;
    int Ts[] = {1, 2, 3, 17, 64, 129};
    int ins[] = {1, 7, 64, 65, 173};
    int outs[] = {1, 5, 63, 130, 257};
    for (size_t a = 0; a < sizeof Ts / sizeof *Ts; a++)
        for (size_t b = 0; b < sizeof ins / sizeof *ins; b++)
            for (size_t c = 0; c < sizeof outs / sizeof *outs; c++) check_matmul(Ts[a], ins[b], outs[c]);
    int aT[] = {1, 2, 5, 31, 70};
    int ap[] = {0, 1, 9, 100};
    int ahd[] = {1, 8, 13, 64};
    for (size_t a = 0; a < 5; a++)
        for (size_t b = 0; b < 4; b++)
            for (size_t c = 0; c < 4; c++) check_attention(aT[a], ap[b], ahd[c], ahd[c] * 3 + 1);

    /* RMSNorm: unit RMS after normalising with g = 1. */
    float x[37], y[37], g[37];
    for (int i = 0; i < 37; i++) x[i] = 5 * frand(), g[i] = 1;
    kern_rmsnorm(y, x, g, 37, 0);
    double ss = 0;
    for (int i = 0; i < 37; i++) ss += (double)y[i] * y[i];
    TU_CHECK(fabs(ss / 37 - 1) < 1e-5, "rmsnorm mean square %g", ss / 37);

    /* RoPE is a rotation: norms of pairs are kept, position 0 is identity. */
    float r[16], r0[16];
    for (int i = 0; i < 16; i++) r[i] = r0[i] = frand();
    kern_rope(r, 2, 8, 8, 0, 10000);
    TU_CHECK(!memcmp(r, r0, sizeof r), "rope at position 0 must be the identity");
    kern_rope(r, 2, 8, 6, 37, 10000);
    for (int i = 0; i < 16; i += 2) {
        double n0 = hypot(r0[i], r0[i + 1]), n1 = hypot(r[i], r[i + 1]);
        TU_CHECK(fabs(n0 - n1) < 1e-6, "rope pair %d norm %g -> %g", i, n0, n1);
    }
    TU_CHECK(r[6] == r0[6] && r[7] == r0[7], "dims past rope_dim must be untouched");
    return tu_finish("test_kernels");
}
