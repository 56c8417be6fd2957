/* benchutil.h - what the benchmarks share (header-only): the reference every GFLOP/s figure is divided by, cblas_sgemm on one
 * of the model's own product shapes, measured in the same run.  What it is
 * not: a timing harness. */
#ifndef TS_BENCHUTIL_H
#define TS_BENCHUTIL_H

#include <cblas.h>
#include <stdlib.h>

#include "log.h"
#include "now.h"

/* GFLOP/s of cblas_sgemm computing [n x d] x [ff x d]^T (a batch of n rows
 * through an FFN matrix as the engine stores it), best of 5, with the
 * threads OpenBLAS has now. */
static inline double bench_sgemm_gflops(int n, int d, int ff) {
    float *a = log_xmalloc(sizeof(float) * n * d), *b = log_xmalloc(sizeof(float) * ff * d),
          *y = log_xmalloc(sizeof(float) * n * ff);
    for (size_t i = 0; i < (size_t)n * d; i++) a[i] = (float)((i * 2654435761u) % 2001) * 1e-3f - 1.0f;
    for (size_t i = 0; i < (size_t)ff * d; i++) b[i] = (float)((i * 40503u) % 2001) * 1e-3f - 1.0f;
    double best = 1e30;
    for (int r = 0; r < 5; r++) {
        double t0 = now_s();
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, ff, d, 1, a, d, b, d, 0, y, ff);
        double dt = now_s() - t0;
        if (dt < best) best = dt;
    }
    free(a), free(b), free(y);
    return 2.0 * n * ff * d / best / 1e9;
}

#endif
