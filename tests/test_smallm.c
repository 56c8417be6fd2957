/* test_smallm.c - the few-row products at every SIMD level this machine can
 * execute, against the plain double-accumulating reference of kernels.c, and
 * the batch invariance that batched decoding relies on.
 *
 * Tolerances: smallm_matmul is one fp32 fma chain per element at every
 * level, so the levels must agree bit for bit; against the double
 * reference, each of the `in` steps rounds once (relative 2^-24), so
 * |fast - ref| <= gamma_in * sum |x_i w_i| (gamma_n = n u / (1 - n u)), plus
 * one rounding of the reference's result to fp32 (2^-24 |y|, and |y| <=
 * sum |x_i w_i|): the check is the looser (in + 7) * 2^-24 * sum |x_i w_i|,
 * which covers both for in < 2^20.  smallm_pv is one fmaf chain per element at every level, so all
 * levels must agree bit for bit, and with the double reference within
 * gamma_L * sum_l |p_l v_l| (L rounded steps of the chain), checked per
 * element; the weights p are normalised rows, as softmax gives them.
 *
 * smallm_exp: see check_exp.  Batch invariance is exact: a row computed inside batches of every size and
 * at every offset gives the same bits as alone, and a prepared X multiplied
 * by W in panels of rows (smallm_matmul_x) the bits of one smallm_matmul. */
#include <math.h>

#include "kernels.h"
#include "smallm.h"
#include "testutil.h"

static uint64_t g_rng = 99;
static float frand(void) {
    g_rng = g_rng * 6364136223846793005ULL + 1442695040888963407ULL;
    return (float)((double)(g_rng >> 11) * 0x1.0p-53 * 2.0 - 1.0);
}

static void check_matmul(smallm_level_t lv, int T, int in, int out, int pad) {
    int ldx = in + pad, ldw = in + pad, ldy = out + pad;
    float *xt = malloc(sizeof(float) * smallm_scratch_floats(in)), *yp = malloc(sizeof(float) * T * ldy);
    float *x = malloc(sizeof(float) * T * ldx), *w = malloc(sizeof(float) * out * ldw);
    float *y1 = malloc(sizeof(float) * T * ldy), *y2 = malloc(sizeof(float) * T * out), *y0 = malloc(sizeof(float) * T * ldy);
    float *xd = malloc(sizeof(float) * T * in), *wd = malloc(sizeof(float) * out * in);
    for (int i = 0; i < T * ldx; i++) x[i] = frand();
    for (int i = 0; i < out * ldw; i++) w[i] = frand();
    for (int t = 0; t < T; t++) memcpy(xd + (size_t)t * in, x + (size_t)t * ldx, sizeof(float) * in);
    for (int o = 0; o < out; o++) memcpy(wd + (size_t)o * in, w + (size_t)o * ldw, sizeof(float) * in);
    for (int i = 0; i < T * ldy; i++) y0[i] = frand();
    for (int beta = 0; beta <= 1; beta++) {
        memcpy(y1, y0, sizeof(float) * T * ldy);
        for (int t = 0; t < T; t++) memcpy(y2 + (size_t)t * out, y0 + (size_t)t * ldy, sizeof(float) * out);
        smallm_matmul(y1, ldy, x, ldx, w, ldw, T, in, out, (float)beta, xt);
        kern_matmul_ref(y2, out, xd, wd, T, in, out, (float)beta);
        /* The plain level computes the same chains one element at a time. */
        memcpy(yp, y0, sizeof(float) * T * ldy);
        TU_REQUIRE(smallm_set_level(SMALLM_PLAIN) == 0, "plain");
        smallm_matmul(yp, ldy, x, ldx, w, ldw, T, in, out, (float)beta, xt);
        TU_REQUIRE(smallm_set_level(lv) == 0, "level back");
        int plain_same = 1;
        for (int t = 0; t < T; t++) plain_same &= !memcmp(yp + (size_t)t * ldy, y1 + (size_t)t * ldy, sizeof(float) * out);
        TU_CHECK(plain_same, "%s matmul T=%d in=%d out=%d beta=%d differs from plain", smallm_level_name(lv), T, in,
                 out, beta);
        double worst = 0;
        for (int t = 0; t < T; t++)
            for (int o = 0; o < out; o++) {
                double mag = 0;
                for (int i = 0; i < in; i++) mag += fabs((double)xd[t * in + i] * wd[o * in + i]);
                /* beta = 1 adds y0 (|y0| < 1): one more rounding of it. */
                double bound = (in + 7) * 0x1.0p-24 * (mag + beta);
                worst = fmax(worst, fabs(y1[(size_t)t * ldy + o] - y2[(size_t)t * out + o]) / bound);
            }
        TU_CHECK(worst <= 1, "%s matmul T=%d in=%d out=%d beta=%d: error %g of the bound", smallm_level_name(lv), T,
                 in, out, beta, worst);
        /* Batch invariance: each row alone, and the batch's tail rows as a
         * batch of their own, give the same bits. */
        int same = 1;
        float *y3 = malloc(sizeof(float) * ldy);
        for (int t = 0; t < T; t++) {
            memcpy(y3, y0 + (size_t)t * ldy, sizeof(float) * ldy);
            smallm_matmul(y3, ldy, x + (size_t)t * ldx, ldx, w, ldw, 1, in, out, (float)beta, xt);
            same &= !memcmp(y3, y1 + (size_t)t * ldy, sizeof(float) * out);
        }
        if (T > 2) {
            float *y4 = malloc(sizeof(float) * T * ldy);
            memcpy(y4, y0, sizeof(float) * T * ldy);
            smallm_matmul(y4 + ldy, ldy, x + ldx, ldx, w, ldw, T - 1, in, out, (float)beta, xt);
            same &= !memcmp(y4 + ldy, y1 + ldy, sizeof(float) * ((size_t)(T - 1) * ldy - pad));
            free(y4);
        }
        free(y3);
        TU_CHECK(same, "%s matmul T=%d in=%d out=%d: a row's bits depend on its batch", smallm_level_name(lv), T, in,
                 out);
        /* X prepared once, W in two panels of rows (as forward.c runs a
         * dequantized matrix): the bits of one smallm_matmul. */
        if (T <= smallm_x_rows(in)) {
            float *y5 = malloc(sizeof(float) * T * ldy);
            memcpy(y5, y0, sizeof(float) * T * ldy);
            smallm_x_t px;
            smallm_x_prepare(&px, x, ldx, T, in, xt);
            int half = out / 2;
            smallm_matmul_x(y5, ldy, &px, w, ldw, half, (float)beta);
            smallm_matmul_x(y5 + half, ldy, &px, w + (size_t)half * ldw, ldw, out - half, (float)beta);
            int prep_same = 1;
            for (int t = 0; t < T; t++) prep_same &= !memcmp(y5 + (size_t)t * ldy, y1 + (size_t)t * ldy, sizeof(float) * out);
            TU_CHECK(prep_same, "%s matmul_x T=%d in=%d out=%d beta=%d in panels differs from matmul",
                     smallm_level_name(lv), T, in, out, beta);
            free(y5);
        }
    }
    free(x), free(w), free(y0), free(y1), free(y2), free(xd), free(wd), free(xt), free(yp);
}

static void check_pv(int R, int L, int hd) {
    int ldp = L + 3, ldv = hd + 5, ldo = hd + 2;
    float *p = malloc(sizeof(float) * R * ldp), *v = malloc(sizeof(float) * L * ldv);
    float *o[3], *split = malloc(sizeof(float) * R * ldo);
    for (int r = 0; r < R; r++) { /* attention weights: a row sums to 1 */
        double sum = 0;
        for (int l = 0; l < L; l++) sum += p[r * ldp + l] = (frand() + 1) / 2;
        for (int l = 0; l < L; l++) p[r * ldp + l] = (float)(p[r * ldp + l] / sum);
    }
    for (int i = 0; i < L * ldv; i++) v[i] = frand();
    for (int lv = 0; lv <= (int)smallm_best(); lv++) {
        TU_REQUIRE(smallm_set_level((smallm_level_t)lv) == 0, "level %d", lv);
        o[lv] = malloc(sizeof(float) * R * ldo);
        for (int i = 0; i < R * ldo; i++) o[lv][i] = split[i] = 7.0f; /* overwritten, not added to */
        smallm_pv(o[lv], ldo, p, ldp, v, ldv, R, L, hd, 0);
        /* A prefix and then the rest, accumulating: the same bits. */
        int cut = L / 3;
        smallm_pv(split, ldo, p, ldp, v, ldv, R, cut, hd, 0);
        smallm_pv(split, ldo, p + cut, ldp, v + (size_t)cut * ldv, ldv, R, L - cut, hd, 1);
        int same = 1;
        for (int r = 0; r < R; r++) same &= !memcmp(split + r * ldo, o[lv] + r * ldo, sizeof(float) * hd);
        TU_CHECK(same, "%s pv R=%d L=%d hd=%d: split at %d changes bits", smallm_level_name((smallm_level_t)lv), R,
                 L, hd, cut);
        if (lv > 0) {
            same = 1;
            for (int r = 0; r < R; r++) same &= !memcmp(o[0] + r * ldo, o[lv] + r * ldo, sizeof(float) * hd);
            TU_CHECK(same, "%s pv R=%d L=%d hd=%d differs from plain", smallm_level_name((smallm_level_t)lv), R, L, hd);
        }
    }
    double worst = 0, gamma = L * 0x1.0p-24 / (1 - L * 0x1.0p-24); /* gamma_L */
    for (int r = 0; r < R; r++)
        for (int i = 0; i < hd; i++) {
            double s = 0, a = 0;
            for (int l = 0; l < L; l++) {
                double t = (double)p[r * ldp + l] * v[(size_t)l * ldv + i];
                s += t, a += fabs(t);
            }
            worst = fmax(worst, fabs(s - o[0][r * ldo + i]) / (gamma * a));
        }
    TU_CHECK(worst <= 1, "pv R=%d L=%d hd=%d: error %g of gamma_L * sum |p v| against double", R, L, hd, worst);
    for (int lv = 0; lv <= (int)smallm_best(); lv++) free(o[lv]);
    free(p), free(v), free(split);
}

/* smallm_exp at level lv over a grid of [-87, 88] and the edges: within
 * SMALLM_EXP_ULPS units in the last place of the correctly rounded value
 * (Cephes' bound for its expf is ~1 ulp; the reduction adds one rounding);
 * below the clamp, at most 1e-37; every element the same whatever its
 * index. */
#define SMALLM_EXP_ULPS 2.0
static void check_exp(smallm_level_t lv) {
    enum { N = 20001 };
    static float x[N], y[N];
    for (int i = 0; i < N; i++) x[i] = -87.0f + 175.0f * (float)i / (N - 1);
    memcpy(y, x, sizeof x);
    smallm_exp(y, N);
    double worst = 0;
    for (int i = 0; i < N; i++) {
        double e = exp((double)x[i]), ulp = ldexp(1.0, ilogb((float)e) - 23);
        worst = fmax(worst, fabs(y[i] - e) / ulp);
    }
    TU_CHECK(worst <= SMALLM_EXP_ULPS, "%s exp: %.2f ulp", smallm_level_name(lv), worst);
    float lo[3] = {-100.0f, -87.5f, -1e30f};
    smallm_exp(lo, 3);
    TU_CHECK(lo[0] >= 0 && lo[0] < 1e-37f && lo[1] < 1e-37f && lo[2] < 1e-37f, "%s exp below the range",
             smallm_level_name(lv));
    int same = 1;
    for (int i = 0; i < 40; i++) {
        float one = x[i * 499];
        smallm_exp(&one, 1);
        same &= one == y[i * 499];
    }
    TU_CHECK(same, "%s exp: an element alone differs from in a vector", smallm_level_name(lv));
}

int main(void) {
    smallm_level_t best = smallm_best();
    fprintf(stderr, "best level on this CPU: %s\n", smallm_level_name(best));
    TU_CHECK(smallm_set_level((smallm_level_t)(SMALLM_AVX512 + 1)) == -1, "an unknown level is refused");
    /* Rows past one and two vectors of every level (8, 16 lanes) and
     * outputs past a tile (6, 12 rows of W). */
    int Ts[] = {1, 2, 3, 4, 5, 9, 13, 17, 40};
    int ins[] = {1, 7, 8, 16, 64, 65, 173};
    int outs[] = {1, 2, 3, 4, 5, 13, 17, 23}; /* every remainder of 6; 23 = 12 + 11 */
    for (int lv = 0; lv <= (int)best; lv++) {
        TU_REQUIRE(smallm_set_level((smallm_level_t)lv) == 0, "level %d", lv);
        for (size_t a = 0; a < sizeof Ts / sizeof *Ts; a++)
            for (size_t b = 0; b < sizeof ins / sizeof *ins; b++)
                for (size_t c = 0; c < sizeof outs / sizeof *outs; c++)
                    check_matmul((smallm_level_t)lv, Ts[a], ins[b], outs[c], (int)(a + b) % 3);
        /* Wide inputs: X's rows split into several transposed chunks. */
        check_matmul((smallm_level_t)lv, 70, 3001, 7, 1);
    }
    for (int lv = 0; lv <= (int)best; lv++) {
        TU_REQUIRE(smallm_set_level((smallm_level_t)lv) == 0, "level %d", lv);
        check_exp((smallm_level_t)lv);
    }
    int Rs[] = {1, 2, 3, 7}, Ls[] = {1, 5, 40, 301}, hds[] = {1, 8, 20, 64, 80, 128};
    for (size_t a = 0; a < sizeof Rs / sizeof *Rs; a++)
        for (size_t b = 0; b < sizeof Ls / sizeof *Ls; b++)
            for (size_t c = 0; c < sizeof hds / sizeof *hds; c++) check_pv(Rs[a], Ls[b], hds[c]);
    return tu_finish("test_smallm");
}
