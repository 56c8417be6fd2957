/* errbound.h - how far two fp32 evaluations of the forward pass may
 * differ, from the arithmetic: the tests' cross-path tolerances.
 *
 * Per operation, the rounding model is the standard one (Higham, "Accuracy
 * and Stability of Numerical Algorithms", 2nd ed., ch. 2-3): u = 2^-24,
 * each fp32 operation's result is exact times (1 + d), |d| <= u.  An fp32
 * sum of k terms in any order (blocked, pairwise, FMA, any BLAS kernel)
 * passes every term through at most k - 1 roundings: within gamma_k =
 * k u / (1 - k u) of the sum of the terms' magnitudes (Thm 3.1), and, the
 * roundings being independent and mean zero (the model of probabilistic
 * rounding error analysis, Higham & Mary, SIAM J. Sci. Comput. 41(5),
 * 2019), with a standard deviation of at most sqrt(k/3) u of it, whatever
 * the order.  The reference kernels (double sums, one rounding) are within
 * that too.
 *
 * Through a whole model, worst-case bounds compound through |W| layer by
 * layer (for stories260K they exceed 1e20: useless).  So the propagation is
 * computed instead (Monte Carlo arithmetic, Parker 1997; Verificarlo): the
 * forward pass in double, every operation's result perturbed by a normal
 * error (uniform) of its standard-deviation bound above (sqrt(k/3) u of its terms'
 * magnitudes for a k-term sum; a few u of the result for element-wise
 * steps, counted at each step in errbound.c; GELU's fp16 steps happen or
 * not as the perturbed inputs cross them), EB_RUNS times with fixed seeds.
 * The spread of each logit and statistic about the unperturbed run is the
 * standard deviation s of what any fp32 evaluation can do; one evaluation
 * is within EB_LAMBDA s of the exact value (with 16 runs, the estimate of s
 * is above 0.65 s w.p. 0.99; 5.2 s of a normal: 2e-7), and two evaluations
 * within twice that.  The statistics are computed exactly from each run's
 * logits; stats_compute's own error (its float exp and double sums) is
 * stats_bound's (stats.h), added to each statistic's bound; EB_STATS_ABS
 * is added to each logit's.
 *
 * What it is not: fast (plain loops in double; fine for the tests' few
 * hundred tokens of small models); not used by the engine. */
#ifndef TS_ERRBOUND_H
#define TS_ERRBOUND_H

#include <stdint.h>

#include "model.h"

/* The unit roundoff of fp32 (round to nearest). */
#define EB_U 0x1p-24
/* A double rounding allowance on each logit's bound (V <= 2^20 terms of
 * magnitude <= ~100). */
#define EB_STATS_ABS 1e-9

/* gamma_k = k u / (1 - k u): the relative bound of a k-term fp32 sum. */
static inline double eb_gamma(double k) { return k * EB_U / (1.0 - k * EB_U); }

/* Bounds on the error of one row's statistics (absolute, nats). */
typedef struct {
    double logprob, entropy, top1_logprob, varentropy;
} eb_stats_t;

/* Perturbed runs per bound, and the multiple of their spread that bounds
 * one evaluation. */
#define EB_RUNS 16
#define EB_LAMBDA 8.0

/* Runs the forward over ids[0..n) at positions 0..n-1 (one window).
 * logits and err receive [n][n_vocab] doubles: the exact logits and the
 * bound on an fp32 evaluation's error of each; st (NULL: not wanted) n - 1
 * bounds on the statistics of ids[t + 1] under row t.  Returns 0, or -1
 * when an id is outside the vocabulary, n exceeds learned positions, or
 * memory runs out. */
int eb_forward(const model_t *m, const int32_t *ids, int n, double *logits, double *err, eb_stats_t *st);

/* Bounds for every row of experiment_score(ids, n, stride) with window W:
 * out[t - 1] for token t (1 <= t < n), using the same windows (window k
 * covers [k S, k S + W), positions from 0, and scores what no earlier window
 * scored).  Returns 0 or -1 as eb_forward. */
int eb_score(const model_t *m, const int32_t *ids, int n, int window, int stride, eb_stats_t *out);

#endif
