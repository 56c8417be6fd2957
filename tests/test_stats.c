/* test_stats.c - the statistics (float exp, double sums) against the
 * two-pass textbook definition in double, on random and adversarial logits, and the error for
 * non-finite logits, at every SIMD level this machine can execute (the
 * vector passes of stats.c and the plain loops; stats_bound covers both
 * exps, expf's 1 ulp within smallm_exp's 2). */
#include <math.h>

#include "log.h"
#include "smallm.h"
#include "stats.h"
#include "testutil.h"

static uint64_t g_rng = 99;
static double urand(void) {
    g_rng = g_rng * 6364136223846793005ULL + 1442695040888963407ULL;
    return (double)(g_rng >> 11) * 0x1.0p-53;
}

/* Tolerances, from the arithmetic: stats_compute within stats_bound of the
 * exact values (float exp and the float rounding of l - max, derived in
 * stats.c), and the reference within its own double rounding: it sums n
 * terms, each through exp, a product or two (k = 6 roundings per term, so
 * within gamma_{6n} of each sum's magnitude, eps = 2^-53).  With u = l -
 * max <= 0 and p the softmax: logprob and top1 move by the relative error
 * of its sum (plus one rounding of their own values); the entropy ln s0 -
 * E[u] by that much times (1 + 2 E|u|); the varentropy E[u^2] - E[u]^2 by
 * that much times 2 (E[u^2] + E[u]^2) = 2 (var + 2 mu^2).  The two within
 * the sum of both. */
static double g_worst; /* the largest |difference| / tolerance seen */

static void compare(const float *l, int n, int tok, const char *what) {
    stats_t a, b, fb;
    char err[LOG_ERRLEN];
    TU_REQUIRE(stats_compute(l, n, tok, &a, err, sizeof err) == 0, "%s: %s", what, err);
    stats_compute_ref(l, n, tok, &b);
    stats_bound(&b, n, &fb);
    double g = 6.0 * n * 0x1p-53 / (1 - 6.0 * n * 0x1p-53), mu = -(b.top1_logprob + b.entropy); /* E[u] */
    double t_lp = fb.logprob + g * (1 + fabs(b.logprob)), t_top = fb.top1_logprob + g * (1 + fabs(b.top1_logprob));
    double t_h = fb.entropy + g * (1 + 2 * fabs(mu) + b.entropy),
           t_v = fb.varentropy + g * 2 * (b.varentropy + 2 * mu * mu);
    double f[4] = {fabs(a.logprob - b.logprob) / t_lp, fabs(a.entropy - b.entropy) / t_h,
                   fabs(a.varentropy - b.varentropy) / t_v, fabs(a.top1_logprob - b.top1_logprob) / t_top};
    for (int i = 0; i < 4; i++) g_worst = fmax(g_worst, f[i]);
    TU_CHECK(fabs(a.logprob - b.logprob) <= t_lp, "%s logprob %.12g vs %.12g (tolerance %.3g)", what, a.logprob,
             b.logprob, t_lp);
    TU_CHECK(fabs(a.entropy - b.entropy) <= t_h, "%s entropy %.12g vs %.12g (tolerance %.3g)", what, a.entropy,
             b.entropy, t_h);
    TU_CHECK(fabs(a.varentropy - b.varentropy) <= t_v, "%s varentropy %.12g vs %.12g (tolerance %.3g)", what,
             a.varentropy, b.varentropy, t_v);
    TU_CHECK(fabs(a.top1_logprob - b.top1_logprob) <= t_top, "%s top1 %.12g vs %.12g (tolerance %.3g)", what,
             a.top1_logprob, b.top1_logprob, t_top);
    TU_CHECK(a.rank == b.rank, "%s rank %d vs %d", what, a.rank, b.rank);
    TU_CHECK(isfinite(a.logprob) && isfinite(a.entropy) && isfinite(a.varentropy) && a.entropy >= -1e-12 &&
                 a.varentropy >= 0 && a.logprob <= 1e-12 && a.top1_logprob >= a.logprob,
             "%s: invariants", what);
}

static void check_level(void) {
    enum { V = 32000 };
    float *l = malloc(sizeof(float) * V);
    char err[LOG_ERRLEN];
    stats_t s;
    for (int trial = 0; trial < 20; trial++) {
        double scale = 0.1 + 10 * urand();
        for (int i = 0; i < V; i++) l[i] = (float)(scale * (urand() + urand() + urand() - 1.5));
        compare(l, V, (int)(urand() * V), "random");
    }
    /* Ascending logits: the maximum last, most terms far below it. */
    for (int i = 0; i < V; i++) l[i] = (float)i * 0.01f;
    compare(l, V, 17, "ascending");
    compare(l, V, V - 1, "ascending-top");
    /* Uniform: H = ln V, varentropy 0, rank 1. */
    for (int i = 0; i < V; i++) l[i] = 3.25f;
    TU_REQUIRE(stats_compute(l, V, 5, &s, err, sizeof err) == 0, "uniform");
    TU_CHECK(fabs(s.entropy - log(V)) < 1e-12 && s.varentropy < 1e-12 && s.rank == 1 && fabs(s.logprob + log(V)) < 1e-12,
             "uniform: H %.15g rank %d", s.entropy, s.rank);
    /* Nearly one-hot with a huge dynamic range: no NaN, no inf. */
    for (int i = 0; i < V; i++) l[i] = -1e30f;
    l[3] = 1e30f;
    TU_REQUIRE(stats_compute(l, V, 4, &s, err, sizeof err) == 0, "one-hot");
    TU_CHECK(isfinite(s.logprob) && s.logprob < -1e29 && s.entropy == 0 && s.rank == 2, "one-hot: %g %g %d", s.logprob,
             s.entropy, s.rank);
    /* Rank counts strictly higher probabilities only. */
    float t[5] = {1, 2, 2, 0, 2};
    TU_REQUIRE(stats_compute(t, 5, 1, &s, err, sizeof err) == 0 && s.rank == 1, "ties share rank 1 (%d)", s.rank);
    TU_REQUIRE(stats_compute(t, 5, 0, &s, err, sizeof err) == 0 && s.rank == 4, "rank after ties (%d)", s.rank);
    /* A non-finite logit is an error naming its index. */
    t[3] = NAN;
    TU_CHECK(stats_compute(t, 5, 0, &s, err, sizeof err) == -1 && strstr(err, "index 3"), "NaN: %s", err);
    t[3] = INFINITY;
    TU_CHECK(stats_compute(t, 5, 0, &s, err, sizeof err) == -1 && strstr(err, "index 3"), "inf: %s", err);
    /* The same inside a long row, wherever the vectors put it (first lane,
     * last lane, the scalar tail), and the lowest index named. */
    int at[] = {0, 7, 8, 12345, V - 9, V - 1};
    for (int i = 0; i < V; i++) l[i] = (float)(urand() - 0.5);
    for (size_t k = 0; k < sizeof at / sizeof *at; k++)
        for (int nan = 0; nan < 2; nan++) {
            float keep = l[at[k]];
            l[at[k]] = nan ? NAN : -INFINITY;
            char want[32];
            snprintf(want, sizeof want, "index %d", at[k]);
            TU_CHECK(stats_compute(l, V - 3, 1, &s, err, sizeof err) == (at[k] < V - 3 ? -1 : 0) &&
                         (at[k] >= V - 3 || strstr(err, want)),
                     "%s at %d: %s", nan ? "NaN" : "-inf", at[k], err);
            l[at[k]] = keep;
        }
    free(l);
}

int main(void) {
    for (int lv = 0; lv <= (int)smallm_best(); lv++) {
        TU_REQUIRE(smallm_set_level((smallm_level_t)lv) == 0, "level %d", lv);
        check_level();
        fprintf(stderr, "%s: worst difference %.3g of its tolerance\n", smallm_level_name((smallm_level_t)lv), g_worst);
        g_worst = 0;
    }
    return tu_finish("test_stats");
}
