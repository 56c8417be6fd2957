/* stats.c - see stats.h.
 *
 * One pass: with m the running maximum and u = l - m, keep
 *   s0 = sum e^u,  s1 = sum e^u u,  s2 = sum e^u u^2.
 * When the maximum rises by -delta (delta = m_old - m_new < 0), each term
 * scales by c = e^delta and u shifts by delta, so
 *   s0' = c s0,  s1' = c (s1 + delta s0),  s2' = c (s2 + 2 delta s1 + delta^2 s0).
 * At the end ln p_i = u_i - ln s0, hence
 *   H = ln s0 - s1/s0   and   Var[ln p] = s2/s0 - (s1/s0)^2. */
#include "stats.h"

#include <math.h>

#include "log.h"

int stats_compute(const float *logits, int n, int32_t token, stats_t *out, char *err, size_t errlen) {
    double m = -INFINITY, s0 = 0, s1 = 0, s2 = 0;
    float lt = logits[token];
    int32_t above = 0;
    for (int i = 0; i < n; i++) {
        float l = logits[i];
        if (!isfinite(l)) return log_seterr(err, errlen, "non-finite logit %g at vocabulary index %d", (double)l, i);
        above += l > lt;
        double x = l;
        if (x > m) {
            if (s0 > 0) {
                double delta = m - x, c = exp(delta);
                s2 = c * (s2 + 2 * delta * s1 + delta * delta * s0);
                s1 = c * (s1 + delta * s0);
                s0 = c * s0;
            }
            m = x;
        }
        double u = x - m, e = exp(u);
        s0 += e;
        s1 += e * u;
        s2 += e * u * u;
    }
    double ls0 = log(s0), mu = s1 / s0;
    out->logprob = (lt - m) - ls0;
    out->entropy = ls0 - mu;
    out->top1_logprob = -ls0;
    double var = s2 / s0 - mu * mu;
    out->varentropy = var > 0 ? var : 0;
    out->rank = above + 1;
    return 0;
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
