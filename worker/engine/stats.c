/* stats.c - see stats.h.
 *
 * Two passes.  The first finds the maximum m, the rank and any non-finite
 * logit.  The second, a chunk at a time, takes u = l - m in float, e = e^u
 * by smallm_exp (vectorised), and sums in double
 *   s0 = sum e,  s1 = sum e u,  s2 = sum e u^2
 * in four interleaved partial sums (a fixed order: the same bits for the
 * same logits, whatever else runs).  Then ln p_i = u_i - ln s0, hence
 *   H = ln s0 - s1/s0   and   Var[ln p] = s2/s0 - (s1/s0)^2.
 * Terms with u below STATS_U_MIN are dropped: e^u < 1.7e-38 there, and
 * smallm_exp's clamp would otherwise give them ~1e-38 times an unbounded
 * |u| in s1 and s2. */
#include "stats.h"

#include <math.h>

#include "log.h"
#include "smallm.h"

/* Logits per chunk of the second pass (two float buffers on the stack). */
#define STATS_CHUNK 512
/* Below this u, e^u is dropped (see above; smallm_exp clamps at -87.34). */
#define STATS_U_MIN (-87.0f)

int stats_compute(const float *logits, int n, int32_t token, stats_t *out, char *err, size_t errlen) {
    float lt = logits[token], m = logits[0];
    int32_t above = 0, bad = 0;
    for (int i = 0; i < n; i++) {
        float l = logits[i];
        bad |= !isfinite(l);
        above += l > lt;
        m = l > m ? l : m;
    }
    if (bad)
        for (int i = 0; i < n; i++)
            if (!isfinite(logits[i]))
                return log_seterr(err, errlen, "non-finite logit %g at vocabulary index %d", (double)logits[i], i);
    double s0[4] = {0}, s1[4] = {0}, s2[4] = {0};
    float u[STATS_CHUNK], e[STATS_CHUNK];
    for (int i0 = 0; i0 < n; i0 += STATS_CHUNK) {
        int len = n - i0 < STATS_CHUNK ? n - i0 : STATS_CHUNK;
        for (int j = 0; j < len; j++) e[j] = u[j] = logits[i0 + j] - m;
        smallm_exp(e, len);
        for (int j = 0; j < len; j += 4) /* len is a multiple of 4 but at the end */
            for (int q = 0; q < 4 && j + q < len; q++) {
                double ej = u[j + q] < STATS_U_MIN ? 0.0 : (double)e[j + q], uj = u[j + q];
                s0[q] += ej;
                s1[q] += ej * uj;
                s2[q] += ej * uj * uj;
            }
    }
    double S0 = (s0[0] + s0[1]) + (s0[2] + s0[3]), S1 = (s1[0] + s1[1]) + (s1[2] + s1[3]),
           S2 = (s2[0] + s2[1]) + (s2[2] + s2[3]);
    double ls0 = log(S0), mu = S1 / S0;
    out->logprob = ((double)lt - m) - ls0;
    out->entropy = ls0 - mu;
    out->top1_logprob = -ls0;
    double var = S2 / S0 - mu * mu;
    out->varentropy = var > 0 ? var : 0;
    out->rank = above + 1;
    return 0;
}

void stats_bound(const stats_t *s, int n, stats_t *bound) {
    /* Each term e_i = e^{u_i}(1 + theta_i), |theta_i| <= A + B |u_i|:
     * smallm_exp's 2 ulp (A = 2^-22) and the float rounding of u (relative
     * 2^-24, through e^u: B; u itself in s1, s2 carries it once more).  So,
     * with the moments M1 = E|u| = H + top1, M2 = E u^2 = var + M1^2 and
     * M3 = E|u|^3 <= 87 M2 (dropped terms aside) under p:
     *   s0's relative error R0 <= A + B M1 (logprob, top1: ln s0),
     *   E[u] off by <= A M1 + B (M2 + M1) + M1 R0, H by that + R0,
     *   E[u^2] off by <= A M2 + B (M3 + 2 M2) + M2 R0, var by that +
     *   2 M1 |dE[u]| + dE[u]^2.
     * The double sums add gamma_{n+4} (2^-53) of each magnitude, the
     * dropped terms n 1.7e-38 (87^2 + 87 + 1) absolutely, and first-order
     * neglect is covered by 1e-3 of slack. */
    const double A = 0x1p-22, B = 0x1p-24, g = (n + 4.0) * 0x1p-53 / (1 - (n + 4.0) * 0x1p-53);
    const double drop = n * 1.7e-38 * (87.0 * 87.0 + 88.0);
    double M1 = fabs(s->entropy + s->top1_logprob), M2 = s->varentropy + M1 * M1, M3 = 87.0 * M2;
    double R0 = A + B * M1, dmu = A * M1 + B * (M2 + M1) + M1 * R0, du2 = A * M2 + B * (M3 + 2 * M2) + M2 * R0;
    double k = 1.001;
    bound->logprob = k * (R0 + g * (1 + fabs(s->logprob))) + drop;
    bound->top1_logprob = k * (R0 + g * (1 + fabs(s->top1_logprob))) + drop;
    bound->entropy = k * (R0 + dmu + g * (1 + 2 * M1 + s->entropy)) + drop;
    bound->varentropy = k * (du2 + 2 * M1 * dmu + dmu * dmu + g * 2 * (s->varentropy + 2 * M1 * M1)) + drop;
    bound->rank = 0;
    bound->context_len = 0;
}

int stats_compute_ref(const float *logits, int n, int32_t token, stats_t *out) {
    double m = logits[0];
    for (int i = 1; i < n; i++) m = logits[i] > m ? logits[i] : m;
    double z = 0;
    for (int i = 0; i < n; i++) z += exp(logits[i] - m);
    double lse = m + log(z), h = 0, e2 = 0;
    int32_t above = 0;
    for (int i = 0; i < n; i++) {
        double lp = logits[i] - lse, p = exp(lp);
        h -= p * lp;
        e2 += p * lp * lp;
        above += logits[i] > logits[token];
    }
    out->logprob = logits[token] - lse;
    out->entropy = h;
    out->top1_logprob = m - lse;
    out->varentropy = e2 - h * h;
    out->rank = above + 1;
    return 0;
}
