/* bench_smallm.c - few-row products: smallm_matmul at every SIMD level this
 * CPU runs against cblas_sgemm (sgemv at M = 1) on the same shapes, measured
 * in the same run: the figures that set FORWARD_SMALL_M in forward.c.
 *
 * What it is: for M = 1..128 rows and the products of a GPT-2-small layer
 * ([768 -> 3072] and [3072 -> 768]), GFLOP/s of each, best of REPEATS, and
 * the ratio smallm / BLAS.  One thread (both sides), timed in the thread's
 * CPU time, so that other processes on a shared machine disturb the figures
 * less (they still share its caches).  What it is not: a test.
 *
 * Usage: bench_smallm [REPEATS] */
#include <cblas.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "kernels.h"
#include "now.h"
#include "smallm.h"

char *openblas_get_corename(void);
void openblas_set_num_threads(int);

static double now(void) { return now_clock_s(CLOCK_THREAD_CPUTIME_ID); }

int main(int argc, char **argv) {
    int reps = argc > 1 ? atoi(argv[1]) : 5;
    if (reps < 1) reps = 1;
    openblas_set_num_threads(1);
    printf("CPU SIMD level: %s; OpenBLAS core: %s, threads %d\n", smallm_level_name(smallm_best()),
           openblas_get_corename(), openblas_get_num_threads());
    int shapes[][2] = {{768, 3072}, {3072, 768}};
    int Ms[] = {1, 9, 16, 32, 63, 128};
    for (size_t s = 0; s < 2; s++) {
        int in = shapes[s][0], out = shapes[s][1];
        float *w = malloc(sizeof(float) * in * out), *x = malloc(sizeof(float) * 128 * in),
              *y = malloc(sizeof(float) * 128 * out), *xt = malloc(sizeof(float) * smallm_scratch_floats(in));
        for (size_t i = 0; i < (size_t)in * out; i++) w[i] = (float)((i * 2654435761u) % 1000) * 1e-3f - 0.5f;
        for (size_t i = 0; i < (size_t)128 * in; i++) x[i] = (float)((i * 40503u) % 1000) * 1e-3f - 0.5f;
        printf("[M x %d] x [%d x %d]^T:\n", in, out, in);
        for (size_t mi = 0; mi < sizeof Ms / sizeof *Ms; mi++) {
            int M = Ms[mi];
            double flops = 2.0 * M * in * out, best_blas = 1e30, best[3] = {1e30, 1e30, 1e30};
            for (int r = 0; r < reps; r++) {
                double t0 = now();
                kern_matmul(y, out, x, w, M, in, out, 0.0f);
                double dt = now() - t0;
                if (dt < best_blas) best_blas = dt;
                for (int lv = 0; lv <= (int)smallm_best(); lv++) {
                    smallm_set_level((smallm_level_t)lv);
                    t0 = now();
                    smallm_matmul(y, out, x, in, w, in, M, in, out, 0.0f, xt);
                    dt = now() - t0;
                    if (dt < best[lv]) best[lv] = dt;
                }
            }
            printf("  M=%3d  blas %6.1f GFLOP/s", M, flops / best_blas / 1e9);
            for (int lv = 0; lv <= (int)smallm_best(); lv++)
                printf("  %s %6.1f (%.2fx)", smallm_level_name((smallm_level_t)lv), flops / best[lv] / 1e9,
                       best_blas / best[lv]);
            printf("\n");
        }
        free(w), free(x), free(y), free(xt);
    }
    return 0;
}
