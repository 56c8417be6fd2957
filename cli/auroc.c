/* auroc.c - see auroc.h. */
#include "auroc.h"

#include <math.h>
#include <stdlib.h>

static int by_x(const void *a, const void *b) {
    double x = ((const auroc_item_t *)a)->x, y = ((const auroc_item_t *)b)->x;
    return (x > y) - (x < y);
}

void auroc_sort(auroc_item_t *items, size_t n) {
    if (n) qsort(items, n, sizeof *items, by_x);
}

double auroc_weighted(const auroc_item_t *items, size_t n, const double *w) {
    /* Over groups of tied scores in ascending order: each positive beats the
     * negatives below its group and ties with those in it. */
    double u = 0, neg_below = 0, pos_total = 0;
    for (size_t i = 0; i < n;) {
        double pos = 0, neg = 0;
        size_t j = i;
        for (; j < n && items[j].x == items[i].x; j++) {
            double wi = w ? w[items[j].cluster] : 1;
            if (items[j].positive) pos += wi;
            else neg += wi;
        }
        u += pos * (neg_below + 0.5 * neg);
        neg_below += neg, pos_total += pos;
        i = j;
    }
    return pos_total > 0 && neg_below > 0 ? u / (pos_total * neg_below) : NAN;
}

/* splitmix64: a small generator good enough for resampling indices. */
static uint64_t next_u64(uint64_t *s) {
    uint64_t z = (*s += 0x9e3779b97f4a7c15u);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9u;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebu;
    return z ^ (z >> 31);
}

static int by_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* The q-quantile of sorted v[n] (linear between order statistics). */
static double quantile(const double *v, size_t n, double q) {
    double h = q * (double)(n - 1);
    size_t k = (size_t)h;
    return k + 1 < n ? v[k] + (h - (double)k) * (v[k + 1] - v[k]) : v[n - 1];
}

int auroc_bootstrap(const auroc_item_t *items, size_t n, size_t n_clusters, int n_boot, uint64_t seed, double level,
                    double *lo, double *hi) {
    double *w = calloc(n_clusters ? n_clusters : 1, sizeof *w);
    double *a = calloc(n_boot > 0 ? (size_t)n_boot : 1, sizeof *a);
    int rc = -1;
    if (!w || !a) goto out;
    size_t m = 0;
    for (int b = 0; b < n_boot && n_clusters; b++) {
        for (size_t c = 0; c < n_clusters; c++) w[c] = 0;
        for (size_t c = 0; c < n_clusters; c++) w[next_u64(&seed) % n_clusters] += 1;
        double v = auroc_weighted(items, n, w);
        if (!isnan(v)) a[m++] = v;
    }
    *lo = *hi = NAN;
    if (m) {
        qsort(a, m, sizeof *a, by_double);
        *lo = quantile(a, m, (1 - level) / 2);
        *hi = quantile(a, m, (1 + level) / 2);
    }
    rc = 0;
out:
    free(w);
    free(a);
    return rc;
}
