/* test_kernels.c - every optimised kernel against its plain reference on
 * random inputs of awkward shapes (odd, prime, 1, larger than a BLAS block),
 * and the same matrix product summed in different orders.
 *
 * Tolerances (errbound.h): an fp32 sum of k terms in any order is within
 * gamma_k = k u / (1 - k u) of the exact value, relative to the sum of the
 * terms' magnitudes (u = 2^-24); the reference (double sums, one rounding)
 * is within u (1 + tiny).  So each way of computing Y = X W^T + beta Y
 * (in products, the old y: in + 1 terms) is within gamma_{in+1} * mag of
 * the exact value, and any two within twice that. */
#include <cblas.h>
#include <math.h>

#include "errbound.h"
#include "kernels.h"
#include "smallm.h"
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
        float *yold = malloc(sizeof(float) * T * out);
        memcpy(yold, y1, sizeof(float) * T * out);
        kern_matmul(y1, out, x, w, T, in, out, (float)beta);
        kern_matmul_ref(y2, out, x, w, T, in, out, (float)beta);
        double worst = 0; /* in units of the bound */
        for (int t = 0; t < T; t++)
            for (int o = 0; o < out; o++) {
                double mag = beta * fabs(yold[t * out + o]);
                for (int i = 0; i < in; i++) mag += fabs((double)x[t * in + i] * w[o * in + i]);
                double d = fabs(y1[t * out + o] - y2[t * out + o]) / (2 * eb_gamma(in + 1) * mag + 0x1p-149);
                if (d > worst) worst = d;
            }
        free(yold);
        TU_CHECK(worst <= 1, "matmul T=%d in=%d out=%d beta=%d: error %g of the bound", T, in, out, beta, worst);
        memcpy(y1, y2, sizeof(float) * T * out);
    }
    free(x), free(w), free(y1), free(y2);
}

/* ---- one product, many summation orders -----------------------------------
 * Y[T][out] = X[T][in] W[out][in]^T computed as one sgemm, as sgemm's on
 * column panels of W (7 outputs at a time), row by row (sgemv), element by
 * element (sdot), by naive fp32 loops forwards and backwards (the order
 * with the largest error growth), and by the reference kernel; each against
 * the exact value (a long double sum of the exact fp32 products: < 2^-64
 * relative) within gamma_in * mag, and every pair within twice that. */
enum { ORD_GEMM, ORD_PANELS, ORD_GEMV, ORD_DOT, ORD_NAIVE, ORD_BACKWARDS, ORD_REF, N_ORD };
static const char *g_ord_name[N_ORD] = {"sgemm", "column panels", "sgemv rows", "sdot", "naive fp32",
                                        "backwards fp32", "reference"};

static void product(int ord, float *y, const float *x, const float *w, int T, int in, int out) {
    switch (ord) {
    case ORD_GEMM:
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, T, out, in, 1.0f, x, in, w, in, 0.0f, y, out);
        break;
    case ORD_PANELS:
        for (int o0 = 0; o0 < out; o0 += 7) {
            int p = out - o0 < 7 ? out - o0 : 7;
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, T, p, in, 1.0f, x, in, w + (size_t)o0 * in, in,
                        0.0f, y + o0, out);
        }
        break;
    case ORD_GEMV:
        for (int t = 0; t < T; t++)
            cblas_sgemv(CblasRowMajor, CblasNoTrans, out, in, 1.0f, w, in, x + (size_t)t * in, 1, 0.0f,
                        y + (size_t)t * out, 1);
        break;
    case ORD_DOT:
        for (int t = 0; t < T; t++)
            for (int o = 0; o < out; o++) y[t * out + o] = cblas_sdot(in, x + (size_t)t * in, 1, w + (size_t)o * in, 1);
        break;
    case ORD_NAIVE:
    case ORD_BACKWARDS:
        for (int t = 0; t < T; t++)
            for (int o = 0; o < out; o++) {
                volatile float s = 0; /* no reassociation, no wider accumulator */
                for (int k = 0; k < in; k++) {
                    int i = ord == ORD_NAIVE ? k : in - 1 - k;
                    float p = x[t * in + i] * w[o * in + i];
                    s = s + p;
                }
                y[t * out + o] = s;
            }
        break;
    default: kern_matmul_ref(y, out, x, w, T, in, out, 0.0f);
    }
}

static void check_orders(int T, int out, int in, double scale) {
    float *x = malloc(sizeof(float) * T * in), *w = malloc(sizeof(float) * out * in);
    float *y[N_ORD];
    for (int i = 0; i < T * in; i++) x[i] = (float)(scale * frand());
    for (int i = 0; i < out * in; i++) w[i] = frand() + 0.25f; /* a bias: partial sums grow, errors too */
    for (int k = 0; k < N_ORD; k++) product(k, y[k] = malloc(sizeof(float) * T * out), x, w, T, in, out);
    double worst[N_ORD] = {0}, pair = 0, spread = 0;
    for (int t = 0; t < T; t++)
        for (int o = 0; o < out; o++) {
            long double exact = 0;
            double mag = 0;
            for (int i = 0; i < in; i++) {
                double p = (double)x[t * in + i] * w[o * in + i]; /* exact: 24 x 24 bits */
                exact += p, mag += fabs(p);
            }
            double bound = eb_gamma(in) * mag + 0x1p-149;
            for (int k = 0; k < N_ORD; k++) {
                double yk = y[k][t * out + o];
                worst[k] = fmax(worst[k], fabs(yk - (double)exact) / bound);
                for (int j = 0; j < k; j++) {
                    double dj = fabs(yk - y[j][t * out + o]);
                    pair = fmax(pair, dj / (2 * bound));
                    spread = fmax(spread, dj);
                }
            }
        }
    for (int k = 0; k < N_ORD; k++)
        TU_CHECK(worst[k] <= 1, "%dx%dx%d %s: error %.3g of gamma_%d", T, out, in, g_ord_name[k], worst[k], in);
    TU_CHECK(pair <= 1, "%dx%dx%d: two orders differ by %.3g of twice the bound", T, out, in, pair);
    /* the orders really differ (else this test could not fail): beyond one
     * term, the fp32 orders round differently somewhere */
    if ((long)T * out * in >= 100000)
        TU_CHECK(spread > 0, "%dx%dx%d: every order gave the same bits", T, out, in);
    fprintf(stderr, "orders %3dx%3dx%3d: worst %.2f of gamma_n (naive %.2f, sgemm %.2f), max spread %.2g\n", T, out, in,
            fmax(fmax(worst[0], worst[1]), fmax(worst[2], worst[3])), worst[ORD_NAIVE], worst[ORD_GEMM], spread);
    for (int k = 0; k < N_ORD; k++) free(y[k]);
    free(x), free(w);
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
    /* Outputs are convex combinations of values in [-1, 1]: p_j v_j summed
     * over L terms (gamma_L), each p_j off by the scores' rounding (hd
     * products of |q k| <= 9 scaled by 1/sqrt(hd): gamma_{hd+1} 9 sqrt(hd)
     * in the exponent, which moves p_j by twice that relatively) plus
     * softmax's own (s_j - max: u |s_j - max| <= u 18 sqrt(hd); exp, 1/sum,
     * product: 4 u; the sum: gamma_L), and |v_j| <= 1: twice, for the two
     * paths. */
    double sq = sqrt(hd);
    double bound = 2 * (eb_gamma(L) + 2 * eb_gamma(hd + 1) * 9 * sq + EB_U * 18 * sq + 4 * EB_U + eb_gamma(L));
    TU_CHECK(worst <= bound, "attention T=%d pos0=%d hd=%d: max error %g", T, pos0, hd, worst);
    free(q), free(k), free(v), free(o1), free(o2), free(scores), free(srow);
}

/* kern_attention_causal with GQA, a query scale, soft-capping and a sliding
 * window (Gemma 2's prefill) against kern_attention_split row by row.  The
 * bound is check_attention's, with the scores' part grown by the capping:
 * cap tanh(s / cap) has slope <= 1, so an error in s passes through at
 * most whole, and each path's capping rounds s / cap (u |s|), tanhf (1 ulp
 * of a value <= 1, scaled by cap: 2 u cap) and the product (u cap): an
 * exponent off by 3 u cap + u |s| more per path, p_j by twice that. */
static void check_attention_capped(int T, int pos0, int hd, int group, int window, float cap) {
    int L = pos0 + T, kvs = hd + 1, qs = group * hd + 2, os = group * hd + 3;
    float scale = 0.7f / sqrtf((float)hd);
    float *q = malloc(sizeof(float) * T * qs), *k = malloc(sizeof(float) * L * kvs), *v = malloc(sizeof(float) * L * kvs);
    float *o1 = calloc((size_t)T * os, sizeof(float)), *o2 = malloc(sizeof(float) * hd);
    float *scores = malloc(sizeof(float) * 64 * group * L), *srow = malloc(sizeof(float) * L);
    float *qg = malloc(sizeof(float) * T * group * hd), *og = malloc(sizeof(float) * T * group * hd);
    for (int i = 0; i < T * qs; i++) q[i] = 3 * frand();
    for (int i = 0; i < L * kvs; i++) k[i] = 3 * frand(), v[i] = frand();
    kern_attention_causal(o1, os, q, qs, k, v, kvs, T, pos0, hd, group, scale, cap, window, scores, qg, og);
    double worst = 0;
    for (int t = 0; t < T; t++)
        for (int g = 0; g < group; g++) {
            int p = pos0 + t, lo = window && p >= window ? p - window + 1 : 0;
            kern_attention_split(o2, q + t * qs + g * hd, k, v, p + 1, k, v, kvs, p, hd, scale, cap, lo, srow);
            for (int i = 0; i < hd; i++) worst = fmax(worst, fabs(o1[t * os + g * hd + i] - o2[i]));
        }
    double smax = 9 * hd * scale; /* |s| <= hd |q k| scale */
    double bound = 2 * (eb_gamma(L) + 2 * eb_gamma(hd + 1) * smax + EB_U * 2 * smax + 4 * EB_U + eb_gamma(L)) +
                   4 * (3 * EB_U * cap + EB_U * smax);
    TU_CHECK(worst <= bound, "capped attention T=%d pos0=%d hd=%d group %d window %d: max error %g (bound %g)", T,
             pos0, hd, group, window, worst, bound);
    free(q), free(k), free(v), free(o1), free(o2), free(scores), free(srow), free(qg), free(og);
}

/* kern_softmax at the current level against the exact softmax in long
 * double.  Each e_i = exp(fl(x_i - max)): the subtraction rounds once
 * (relative u, so the exponent is off by u |x_i - max| <= u R), the exp
 * within 2 ulp (2^-22 relative; expf's 1 ulp at the plain level is
 * within it); widened exactly, summed in double (gamma_n in 2^-53,
 * negligible beside: 1e-12), 1 / sum rounded to fp32 (u) and the product
 * (u).  So p_i is within p_i (2 (2^-22 + u R) + 2 u + 1e-12) of the exact
 * value, to first order (slack 1.01), plus 2^-149 for underflow and
 * 1.2e-38 absolute: below -87.34 smallm_exp gives e^-87.34 = 1.18e-38
 * rather than less (smallm.h), and the sum is >= 1. */
static void check_softmax(int n, double scale) {
    float *x = malloc(sizeof(float) * n), *p = malloc(sizeof(float) * n);
    for (int i = 0; i < n; i++) x[i] = (float)(scale * frand());
    memcpy(p, x, sizeof(float) * n);
    kern_softmax(p, n);
    float mx = x[0];
    for (int i = 1; i < n; i++) mx = x[i] > mx ? x[i] : mx;
    long double z = 0;
    double R = 0;
    for (int i = 0; i < n; i++) z += expl((long double)x[i] - mx), R = fmax(R, (double)mx - x[i]);
    double worst = 0;
    for (int i = 0; i < n; i++) {
        double exact = (double)(expl((long double)x[i] - mx) / z);
        double tol = 1.01 * exact * (2 * (0x1p-22 + EB_U * R) + 2 * EB_U + 1e-12) + 0x1p-149 + 1.2e-38;
        worst = fmax(worst, fabs(p[i] - exact) / tol);
    }
    TU_CHECK(worst <= 1, "%s softmax n=%d scale %g: error %.3g of the bound", smallm_level_name(smallm_level()), n,
             scale, worst);
    free(x), free(p);
}

/* kern_swiglu at the current level against g / (1 + e^-g) u in double,
 * for |g| <= 20: e^-g within 2 ulp (2^-22 relative, smallm_exp; expf's 1
 * ulp at the plain level is within it) moves 1 + e^-g by at most that
 * relatively, 1 + e rounds (u), the division (u), the product (u): within
 * (2^-22 + 3 u) |value| (slack 1.01), plus 2^-149 for underflow; on a
 * length that leaves a vector tail. */
static void check_swiglu(void) {
    enum { N = 1031 };
    float g[N], u[N], y[N];
    for (int i = 0; i < N; i++) g[i] = 20 * frand(), u[i] = frand();
    memcpy(y, g, sizeof g);
    kern_swiglu(y, u, N);
    double worst = 0;
    for (int i = 0; i < N; i++) {
        double want = g[i] / (1 + exp(-(double)g[i])) * u[i];
        worst = fmax(worst, fabs(y[i] - want) / (1.01 * fabs(want) * (0x1p-22 + 3 * EB_U) + 0x1p-149));
    }
    TU_CHECK(worst <= 1, "%s swiglu: error %.3g of the bound", smallm_level_name(smallm_level()), worst);
}

/* The norms at the current level give the plain level's bits (the same
 * partial sums, the same element operations: tolerance 0), on widths
 * about the vector sizes; b NULL too (LayerNorm still adds 0: -0 -> +0). */
static void check_norms_level(void) {
    int ns[] = {1, 3, 4, 7, 8, 9, 31, 64, 577};
    for (size_t k = 0; k < sizeof ns / sizeof *ns; k++) {
        int n = ns[k];
        float *x = malloc(sizeof(float) * n), *g = malloc(sizeof(float) * n), *b = malloc(sizeof(float) * n);
        float *y[2][3];
        for (int i = 0; i < n; i++) x[i] = 5 * frand() + 1, g[i] = frand(), b[i] = frand();
        x[0] = -0.0f;
        smallm_level_t lv = smallm_level();
        for (int pass = 0; pass < 2; pass++) {
            TU_REQUIRE(smallm_set_level(pass ? lv : SMALLM_PLAIN) == 0, "level");
            for (int j = 0; j < 3; j++) y[pass][j] = malloc(sizeof(float) * n);
            kern_rmsnorm(y[pass][0], x, g, n, 1e-5f);
            kern_layernorm(y[pass][1], x, g, b, n, 1e-5f);
            kern_layernorm(y[pass][2], x, g, NULL, n, 1e-5f);
        }
        for (int j = 0; j < 3; j++) {
            TU_CHECK(!memcmp(y[0][j], y[1][j], sizeof(float) * n), "%s %s n=%d differs from plain",
                     smallm_level_name(lv), j ? "layernorm" : "rmsnorm", n);
            free(y[0][j]), free(y[1][j]);
        }
        free(x), free(g), free(b);
    }
}

int main(void) {
    g_rng = 12345;
    /* Softmax, SwiGLU and the norms at every level, on lengths about the vector width. */
    int sn[] = {1, 2, 7, 8, 9, 15, 16, 17, 63, 64, 65, 511, 2049};
    for (int lv = 0; lv <= (int)smallm_best(); lv++) {
        TU_REQUIRE(smallm_set_level((smallm_level_t)lv) == 0, "level %d", lv);
        for (size_t i = 0; i < sizeof sn / sizeof *sn; i++)
            for (int sc = 0; sc < 3; sc++) check_softmax(sn[i], sc == 0 ? 1.0 : sc == 1 ? 10.0 : 60.0);
        check_swiglu();
        check_norms_level();
    }
    smallm_set_level(smallm_best());
    int Ts[] = {1, 2, 3, 17, 64, 129};
    int ins[] = {1, 7, 64, 65, 173};
    int outs[] = {1, 5, 63, 130, 257};
    for (size_t a = 0; a < sizeof Ts / sizeof *Ts; a++)
        for (size_t b = 0; b < sizeof ins / sizeof *ins; b++)
            for (size_t c = 0; c < sizeof outs / sizeof *outs; c++) check_matmul(Ts[a], ins[b], outs[c]);
    int shapes[][3] = {{1, 1, 1}, {1, 1, 257}, {7, 13, 129}, {63, 65, 257}, {31, 37, 211}, {2, 3, 1031},
                       {17, 127, 64}, {1, 509, 172}};
    for (size_t i = 0; i < sizeof shapes / sizeof *shapes; i++)
        for (int sc = 0; sc < 2; sc++) check_orders(shapes[i][0], shapes[i][1], shapes[i][2], sc ? 1000.0 : 1.0);
    int aT[] = {1, 2, 5, 31, 70};
    int ap[] = {0, 1, 9, 100};
    int ahd[] = {1, 8, 13, 64};
    for (size_t a = 0; a < 5; a++)
        for (size_t b = 0; b < 4; b++)
            for (size_t c = 0; c < 4; c++) check_attention(aT[a], ap[b], ahd[c], ahd[c] * 3 + 1);
    /* Windows shorter than a block and longer, crossing block starts. */
    int cw[][5] = {{70, 0, 16, 1, 0}, {130, 0, 16, 2, 7}, {150, 9, 8, 3, 100}, {200, 5, 32, 2, 64}, {65, 64, 13, 1, 1}};
    for (size_t i = 0; i < sizeof cw / sizeof *cw; i++)
        for (int capped = 0; capped < 2; capped++)
            check_attention_capped(cw[i][0], cw[i][1], cw[i][2], cw[i][3], cw[i][4], capped ? 5.0f : 0.0f);

    /* RMSNorm: unit RMS after normalising with g = 1. */
    float x[37], y[37], g[37];
    for (int i = 0; i < 37; i++) x[i] = 5 * frand(), g[i] = 1;
    kern_rmsnorm(y, x, g, 37, 0);
    double ss = 0;
    for (int i = 0; i < 37; i++) ss += (double)y[i] * y[i];
    /* y_i = x_i s (1 + d): s rounded to fp32, x*s, *g (exact for 1): |d| <= 2 u
     * to first order plus s's u, so y_i^2 within 6 u of x_i^2 s^2. */
    TU_CHECK(fabs(ss / 37 - 1) <= 6.01 * EB_U, "rmsnorm mean square %.9g", ss / 37);

    /* RoPE is a rotation: norms of pairs are kept, position 0 is identity. */
    float r[16], r0[16];
    for (int i = 0; i < 16; i++) r[i] = r0[i] = frand();
    kern_rope(r, 2, 8, 8, 0, 10000);
    TU_CHECK(!memcmp(r, r0, sizeof r), "rope at position 0 must be the identity");
    kern_rope(r, 2, 8, 6, 37, 10000);
    for (int i = 0; i < 16; i += 2) {
        double n0 = hypot(r0[i], r0[i + 1]), n1 = hypot(r[i], r[i + 1]);
        /* cos and sin rounded (c^2 + s^2 within 2 u of 1: u of the norm), then
         * a c - b s: two roundings (gamma_2 of |a c| + |b s| <= sqrt2 n0). */
        TU_CHECK(fabs(n0 - n1) <= (EB_U + eb_gamma(2) * sqrt(2)) * n0 + 1e-300, "rope pair %d norm %g -> %g", i, n0, n1);
    }
    TU_CHECK(r[6] == r0[6] && r[7] == r0[7], "dims past rope_dim must be untouched");
    return tu_finish("test_kernels");
}
