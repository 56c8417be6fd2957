/* test_auroc.c - the AUROC (cli/auroc.c) against textbook cases.
 *
 *   - Hanley & McNeil (1982), "The meaning and use of the area under a ROC
 *     curve", Radiology 143:29-36, Table 1: 109 CT images rated 1-5 by a
 *     radiologist, 58 normal (33, 6, 6, 11, 2 per rating) and 51 abnormal
 *     (3, 2, 2, 11, 33).  Their Wilcoxon area is 0.893; exactly, by hand:
 *     U = 3(16.5) + 2(33 + 3) + 2(39 + 3) + 11(45 + 5.5) + 33(56 + 1) = 2642,
 *     AUROC = 2642 / (51 x 58) = 0.893171...
 *   - A small case with ties, by hand: positives {1, 2, 3, 3}, negatives
 *     {0, 2, 3, 5}: U = 1 + 1.5 + 2.5 + 2.5 = 7.5, AUROC = 7.5 / 16; and the
 *     identity AUROC = U / (n1 n0) with U = R1 - n1 (n1 + 1) / 2 from the
 *     mid-ranks R1 (the view sequence_auroc's formula), computed here
 *     independently of auroc_weighted.
 *   - A cluster weight of 2 counts as the cluster's items twice; the
 *     bootstrap interval contains the point estimate, is reproducible from
 *     its seed, and is [1, 1] for separable classes.
 * Exact comparisons: every quantity is a ratio of small integers (halves),
 * exact in double before the one division: the results must be equal to
 * the expected quotients, bit for bit. */
#include <math.h>

#include "auroc.h"
#include "testutil.h"

/* U from mid-ranks, by its own arithmetic (O(n^2), for the test only). */
static double u_from_ranks(const auroc_item_t *it, size_t n, size_t *n1, size_t *n0) {
    double r1 = 0;
    *n1 = *n0 = 0;
    for (size_t i = 0; i < n; i++) {
        double below = 0, tied = 0;
        for (size_t j = 0; j < n; j++) below += it[j].x < it[i].x, tied += it[j].x == it[i].x;
        if (it[i].positive) r1 += below + (tied + 1) / 2, (*n1)++;
        else (*n0)++;
    }
    return r1 - (double)*n1 * (double)(*n1 + 1) / 2;
}

int main(void) {
    /* Hanley & McNeil, Table 1. */
    static const int normal[5] = {33, 6, 6, 11, 2}, abnormal[5] = {3, 2, 2, 11, 33};
    auroc_item_t hm[109];
    size_t n = 0;
    for (int r = 0; r < 5; r++) {
        for (int k = 0; k < normal[r] + abnormal[r]; k++, n++) /* each image its own cluster */
            hm[n] = (auroc_item_t){r + 1, (uint32_t)n, k >= normal[r]};
    }
    TU_REQUIRE(n == 109, "items %zu", n);
    auroc_sort(hm, n);
    double a = auroc_weighted(hm, n, NULL);
    TU_CHECK(a == 2642.0 / (51 * 58), "Hanley-McNeil AUROC %.17g, expected 2642/2958", a);
    TU_CHECK(fabs(a - 0.893) < 0.0005, "Hanley-McNeil AUROC %.6f, published 0.893", a);
    size_t n1, n0;
    double u = u_from_ranks(hm, n, &n1, &n0);
    TU_CHECK(n1 == 51 && n0 == 58 && u == 2642 && a == u / (double)(n1 * n0),
             "U %.3f from ranks (n1 %zu, n0 %zu)", u, n1, n0);

    /* Ties, by hand; items given unsorted. */
    auroc_item_t t[8] = {{3, 0, 1}, {5, 1, 0}, {1, 2, 1}, {2, 3, 0}, {3, 4, 1}, {0, 5, 0}, {2, 6, 1}, {3, 7, 0}};
    double ut = u_from_ranks(t, 8, &n1, &n0);
    auroc_sort(t, 8);
    a = auroc_weighted(t, 8, NULL);
    TU_CHECK(a == 7.5 / 16 && ut == 7.5, "ties: AUROC %.17g, U %.3f", a, ut);

    /* Weights: cluster 0 (the positive 3) twice = that item duplicated. */
    double w[8] = {2, 1, 1, 1, 1, 1, 1, 1};
    auroc_item_t d[9] = {{3, 0, 1}, {3, 0, 1}, {5, 1, 0}, {1, 2, 1}, {2, 3, 0}, {3, 4, 1}, {0, 5, 0}, {2, 6, 1}, {3, 7, 0}};
    auroc_sort(d, 9);
    double dw = auroc_weighted(t, 8, w), dd = auroc_weighted(d, 9, NULL);
    TU_CHECK(dw == dd && dd == 10.0 / 20, "weighted %.17g, duplicated %.17g", dw, dd);

    /* One class empty: undefined. */
    TU_CHECK(isnan(auroc_weighted(t, 1, NULL)), "one item: not NaN");

    /* Bootstrap over clusters. */
    double lo, hi, lo2, hi2;
    a = auroc_weighted(hm, 109, NULL);
    TU_REQUIRE(auroc_bootstrap(hm, 109, 109, 200, 42, 0.95, &lo, &hi) == 0, "bootstrap failed");
    TU_REQUIRE(auroc_bootstrap(hm, 109, 109, 200, 42, 0.95, &lo2, &hi2) == 0, "bootstrap failed");
    TU_CHECK(lo < a && a < hi && hi - lo > 0.02 && hi - lo < 0.3 && lo == lo2 && hi == hi2,
             "bootstrap [%.4f, %.4f] around %.4f (again [%.4f, %.4f])", lo, hi, a, lo2, hi2);
    auroc_item_t sep[6] = {{0, 0, 0}, {1, 1, 0}, {2, 2, 0}, {3, 0, 1}, {4, 1, 1}, {5, 2, 1}};
    TU_REQUIRE(auroc_bootstrap(sep, 6, 3, 200, 7, 0.95, &lo, &hi) == 0, "bootstrap failed");
    TU_CHECK(lo == 1 && hi == 1, "separable: [%g, %g]", lo, hi);
    if (tu_failures) return 1;
    fprintf(stderr, "test_auroc: ok (Hanley-McNeil %.6f)\n", a);
    return 0;
}
