/* auroc.h - how well a score tells two classes apart: the area under the ROC
 * curve, and its bootstrap interval over clusters.
 *
 * What it is: AUROC = P(X_pos > X_neg) + P(X_pos = X_neg) / 2 over all
 * (positive, negative) pairs, i.e. Mann-Whitney's U / (n_pos n_neg) with
 * ties counted a half, computed in one pass over the items sorted by score;
 * with integer weights per cluster (a bootstrap resample), each item counts
 * its cluster's weight times.  The bootstrap resamples clusters (documents)
 * with replacement, since the sequences of one document are correlated.
 * What it is not: database access or printing (cli/compare.c). */
#ifndef TS_AUROC_H
#define TS_AUROC_H

#include <stddef.h>
#include <stdint.h>

typedef struct {
    double x;        /* the score (not NaN) */
    uint32_t cluster; /* 0 .. n_clusters - 1 */
    int positive;    /* 1: positive class, 0: negative */
} auroc_item_t;

/* Sorts items by score, ascending (what the functions below require). */
void auroc_sort(auroc_item_t *items, size_t n);

/* The AUROC of sorted items, each weighted by w[cluster] (w NULL: all 1).
 * NaN when either class has no weight.  O(n). */
double auroc_weighted(const auroc_item_t *items, size_t n, const double *w);

/* Percentile bootstrap interval of the AUROC of sorted items: n_boot
 * resamples of n_clusters clusters drawn with replacement from a generator
 * seeded with seed; *lo and *hi the (1 - level) / 2 and (1 + level) / 2
 * quantiles of the resampled AUROCs (resamples with an empty class are
 * dropped; NaN when all are).  0, or -1 when out of memory.  O(n_boot (n +
 * n_clusters)). */
int auroc_bootstrap(const auroc_item_t *items, size_t n, size_t n_clusters, int n_boot, uint64_t seed, double level,
                    double *lo, double *hi);

#endif
