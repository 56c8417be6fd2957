/* bench_continue.c - a document's whole measurement with the README's cut
 * settings on a model of a real shape (random F32 weights): the sampled
 * continuations against the engine's own prefill scoring, measured in the
 * same run, and the prefill against cblas_sgemm on the model's own shapes.
 *
 * What it is: one document of D random tokens (default 1024), window 512,
 * stride 256, cuts every 128 tokens, C = 32, K = 8 (README), 1 thread
 * unless OPENBLAS_NUM_THREADS says otherwise.  Figures, each the best of
 * REPEATS after an untimed warm-up pass of the scoring:
 *   score      experiment_score over the document (all logits + statistics)
 *   batched    experiment_continue_doc: every cut's K + 1 rows decoded
 *              together (the worker's path); sampled tokens/s counts the K
 *              samples' tokens, the prefills of the prefixes of cuts > W - C
 *              included in the time (cuts <= W - C continue the scoring's
 *              window 0: experiment_score_cuts, as the worker)
 *   per-cut    experiment_continue one cut at a time (K + 1 rows a batch)
 *   document   all rows a worker stores for the document / total time
 * and the ratios sampled tok/s / score tok/s (issue 10's goal: >= 0.6) and
 * score GFLOP/s / cblas_sgemm GFLOP/s on [512 x d] x [n_ff x d]^T (>= 0.9).
 * The machine's SIMD level and OpenBLAS's kernel are printed: figures
 * differ between machines.  What it is not: a test.
 *
 * Usage: bench_continue [gpt2|smollm|llama] [D] [REPEATS] [score|batched];
 * with "score" only the scoring figure (seconds instead of half a minute,
 * for profiling the prefill), with "batched" no per-cut figure (for
 * profiling the continuations); with TOKSHIFT_BENCH_GGUF=PATH the model is also
 * written to PATH. */
#include <cblas.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "benchutil.h"
#include "experiment.h"
#include "forward.h"
#include "gguf_writer.h"
#include "log.h"
#include "model.h"
#include "now.h"
#include "randmodel.h"
#include "smallm.h"

char *openblas_get_corename(void);

/* The clock of the figures: with one thread, the process's CPU time, which
 * a shared machine's other processes disturb much less than wall time (they
 * still share its caches); with more, wall time. */
static double clock_s(void) {
    return openblas_get_num_threads() > 1 ? now_s() : now_clock_s(CLOCK_PROCESS_CPUTIME_ID);
}

int main(int argc, char **argv) {
    const char *shape = argc > 1 ? argv[1] : "gpt2";
    int D = argc > 2 ? atoi(argv[2]) : 1024, reps = argc > 3 ? atoi(argv[3]) : 1;
    if (reps < 1) reps = 1;
    int score_only = argc > 4 && !strcmp(argv[4], "score"), batched_only = argc > 4 && !strcmp(argv[4], "batched");
    char err[LOG_ERRLEN];
    rm_spec_t s;
    if (!strcmp(shape, "gpt2"))
        s = (rm_spec_t){.arch = "gpt2", .n_vocab = 50257, .n_embd = 768, .n_layer = 12, .n_head = 12,
                        .n_head_kv = 12, .n_ff = 3072, .n_ctx = 1024, .tied = 1, .eps = 1e-5f};
    else if (!strcmp(shape, "smollm"))
        s = (rm_spec_t){.arch = "llama", .n_vocab = 49152, .n_embd = 576, .n_layer = 30, .n_head = 9,
                        .n_head_kv = 3, .n_ff = 1536, .n_ctx = 2048, .tied = 1, .eps = 1e-5f, .rope_base = 10000.0f};
    else if (!strcmp(shape, "llama"))
        s = (rm_spec_t){.arch = "llama", .n_vocab = 32000, .n_embd = 768, .n_layer = 12, .n_head = 12,
                        .n_head_kv = 4, .n_ff = 2048, .n_ctx = 2048, .eps = 1e-5f, .rope_base = 10000.0f};
    else
        log_die("usage: bench_continue [gpt2|smollm|llama] [D] [REPEATS]", "unknown shape '%s'", shape);
    /* The architecture's name through a buffer: GCC would otherwise fold
     * randmodel.h's comparisons with other literals into warnings. */
    static char arch[16];
    snprintf(arch, sizeof arch, "%s", s.arch);
    s.arch = arch;
    s.type = GGML_TYPE_F32;
    s.seed = 10;
    /* With TOKSHIFT_BENCH_GGUF, the same file for llama.cpp's benchmarks
     * (bench/llamacpp.sh run). */
    model_t *m = bench_random_model(&s, shape, getenv("TOKSHIFT_BENCH_GGUF"), NULL);
    const model_config_t *c = &m->cfg;
    char desc[256];
    model_describe(m, desc, sizeof desc);
    printf("model: %s\nCPU SIMD level: %s; OpenBLAS core: %s, threads %d; prefill products: %s\n", desc,
           smallm_level_name(smallm_level()), openblas_get_corename(), openblas_get_num_threads(),
           forward_stream_prefill_default() ? "streamed (smallm)" : "cblas_sgemm");

    /* Reference: cblas_sgemm on the model's FFN shape at 512 rows. */
    int n = 512, d = c->n_embd, ff = c->n_ff;
    double ref_gflops = bench_sgemm_gflops(n, d, ff, clock_s);

    int W = 512, S = 256, every = 128, C = 32, K = 8;
    int32_t *ids = log_xmalloc(sizeof(int32_t) * D), *cuts = log_xmalloc(sizeof(int32_t) * (D / every + 1));
    for (int i = 0; i < D; i++) ids[i] = (int32_t)(((uint64_t)i * 7919 + 13) % (uint64_t)c->n_vocab);
    int nc = (int)experiment_cuts(NULL, 0, every, C, D, cuts, (size_t)(D / every + 1));
    experiment_cont_t cont = {C, K, {1.0f, 0, 1.0f}, 42};
    experiment_t *e = experiment_new(m, W, 512, &cont, err, sizeof err);
    if (!e) log_die("", "%s", err);
    experiment_row_t *rows = log_xmalloc(sizeof *rows * (size_t)(D + (size_t)nc * (K + 1) * C));
    uint64_t *seeds = log_xmalloc(sizeof *seeds * (size_t)(nc * K + 1));
    /* One untimed pass first: the first touches the arena's and the KV
     * cache's pages (0.72 of cblas_sgemm cold, 0.92 warm on GPT-2's shape;
     * the continuations' slots and leaves likewise), which a worker pays
     * once for its whole life, not per document. */
    if (experiment_score_cuts(e, ids, D, S, cuts, nc, rows, err, sizeof err) != D - 1) log_die("", "%s", err);
    if (!score_only &&
        experiment_continue_doc(e, ids, D, cuts, nc, 3, rows, rows + (size_t)nc * C, seeds, err, sizeof err))
        log_die("", "%s", err);
    double t_score = 1e30, t_batch = 1e30, t_cut = 1e30;
    for (int r = 0; r < reps; r++) {
        double t0 = clock_s();
        if (experiment_score_cuts(e, ids, D, S, cuts, nc, rows, err, sizeof err) != D - 1) log_die("", "%s", err);
        double t1 = clock_s();
        if (t1 - t0 < t_score) t_score = t1 - t0;
        if (score_only) continue;
        experiment_row_t *hum = rows, *smp = rows + (size_t)nc * C;
        if (experiment_continue_doc(e, ids, D, cuts, nc, 3, hum, smp, seeds, err, sizeof err)) log_die("", "%s", err);
        double t2 = clock_s();
        for (int j = 0; j < nc && !batched_only; j++)
            if (experiment_continue(e, ids, D, cuts[j], 3, hum, smp, seeds, err, sizeof err)) log_die("", "%s", err);
        double t3 = clock_s();
        if (t2 - t1 < t_batch) t_batch = t2 - t1;
        if (t3 - t2 < t_cut) t_cut = t3 - t2;
    }
    double flops = bench_score_flops(c, D, W, S);
    double score_tps = (D - 1) / t_score, gf = flops / t_score / 1e9;
    double sampled = (double)nc * K * C, cont_rows = (double)nc * (K + 1) * C;
    printf("timed in %s\n", openblas_get_num_threads() > 1 ? "wall time" : "process CPU time (1 thread)");
    printf("document: %d tokens, W %d S %d, %d cuts every %d, C %d, K %d\n", D, W, S, nc, every, C, K);
    printf("reference cblas_sgemm [%dx%d]x[%dx%d]^T: %.1f GFLOP/s\n", n, d, ff, d, ref_gflops);
    printf("score     %7.0f tokens/s, %6.1f GFLOP/s = %.2f of cblas_sgemm\n", score_tps, gf, gf / ref_gflops);
    if (score_only) goto done;
    printf("batched   %7.0f sampled tokens/s (%d rows a step at most) = %.2f of score tokens/s\n", sampled / t_batch,
           experiment_decode_rows(e), sampled / t_batch / score_tps);
    if (!batched_only)
        printf("per-cut   %7.0f sampled tokens/s (%d rows a step)          = %.2f of score; batched/per-cut %.2f\n",
           sampled / t_cut, K + 1, sampled / t_cut / score_tps, t_cut / t_batch);
    printf("document  %7.0f stored tokens/s (%0.f rows in %.2f s)\n", (D - 1 + cont_rows) / (t_score + t_batch),
           D - 1 + cont_rows, t_score + t_batch);
done:
    experiment_destroy(&e);
    free(rows), free(seeds), free(ids), free(cuts);
    model_destroy(&m);
    return 0;
}
