/* stats.h - per-token statistics of a next-token distribution.
 *
 * What it is: exactly the columns of DESIGN.md section 1, computed from the
 * untempered (T = 1) logits: the maximum, then e^(l - max) by a vectorised
 * float exp, summed in double precision (stats.c).  What it is not: sampling (sampler.c) or aggregation (SQL). */
#ifndef TS_STATS_H
#define TS_STATS_H

#include <stddef.h>
#include <stdint.h>

typedef struct {
    double logprob;      /* ln p(token) */
    double entropy;      /* -sum p ln p, nats */
    int32_t rank;        /* 1 + #tokens with strictly higher probability */
    double top1_logprob; /* ln max p */
    double varentropy;   /* sum p (ln p)^2 - H^2 */
    int32_t context_len; /* tokens of context the prediction saw (set by caller) */
} stats_t;

/* Computes out from n logits for the observed token (0 <= token < n).
 * Returns 0, or -1 when a logit is NaN or infinite, with its index in the
 * message (such a row must never leave the engine). */
int stats_compute(const float *logits, int n, int32_t token, stats_t *out, char *err, size_t errlen);

/* Bounds on |stats_compute's value - the exact value| of each statistic of
 * a row whose (exact or computed) statistics are s over n logits: float
 * exp and rounding of l - max, double sums (see stats.c).  The rank is
 * exact (bound 0). */
void stats_bound(const stats_t *s, int n, stats_t *bound);

/* The same by the textbook two-pass definition, for tests. */
int stats_compute_ref(const float *logits, int n, int32_t token, stats_t *out);

#endif
