/* bench_gpt2.c - scoring throughput of a GPT-2-small-shaped model (124M:
 * d=768, 12 layers, 12 heads, ff 3072, vocab 50257, context 1024, tied
 * output, learned positions, LayerNorm, GELU) with random weights, against
 * this machine's cblas_sgemm measured in the same run.
 *
 * What it is: the model is written by the GGUF writer into memory
 * (randmodel.h) and loaded by model_from_gguf, exactly as a converted
 * GPT-2 would be.  Three figures, each the best of a few runs:
 *   prefill   one forward pass over a full 1024-token window (one batch);
 *   score     tokshift score's work on a 1024-token document: the window in
 *             chunks of 512 rows plus the statistics over all 50257 logits
 *             of every token;
 *   long      a 4096-token document scored with the default sliding window
 *             (W = 1024, stride 512), where each window after the first
 *             recomputes 512 tokens of context (tokens/s counts scored
 *             tokens).
 * GFLOP/s counts the useful work: 2 * (weights used) per token plus the
 * causal half of the attention products.  What it is not: a test.
 *
 * Usage: bench_gpt2 [REPEATS] */
#include <cblas.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "benchutil.h"
#include "experiment.h"
#include "forward.h"
#include "gguf_writer.h"
#include "log.h"
#include "model.h"
#include "randmodel.h"
#include "now.h"

int main(int argc, char **argv) {
    int reps = argc > 1 ? atoi(argv[1]) : 3;
    if (reps < 1) reps = 1;
    char err[LOG_ERRLEN];
    rm_spec_t s = {.arch = "gpt2", .n_vocab = 50257, .n_embd = 768, .n_layer = 12, .n_head = 12, .n_head_kv = 12,
                   .n_ff = 3072, .n_ctx = 1024, .tied = 1, .eps = 1e-5f, .type = GGML_TYPE_F32, .seed = 124};
    double t_build = now_s();
    size_t len = 0;
    model_t *m = bench_random_model(&s, "gpt2-124M-random", NULL, &len);
    const model_config_t *c = &m->cfg;
    char desc[256];
    model_describe(m, desc, sizeof desc);
    int W = c->n_ctx_train, D = 4096;
    int32_t *ids = log_xmalloc(sizeof(int32_t) * D);
    for (int i = 0; i < D; i++) ids[i] = (int32_t)(((uint64_t)i * 7919 + 13) % (uint64_t)c->n_vocab);
    printf("model: %s (%.1f MB file, built in %.1f s), openblas threads=%d\n", desc, len / 1e6, now_s() - t_build,
           openblas_get_num_threads());

    /* Reference: the model's largest product shape at a 512-row batch. */
    int n = 512, d = c->n_embd, ff = c->n_ff;
    double ref_gflops = bench_sgemm_gflops(n, d, ff, now_s);
    printf("reference cblas_sgemm [%dx%d]x[%dx%d]^T: %.1f GFLOP/s\n", n, d, ff, d, ref_gflops);

    /* prefill: one batch of W rows. */
    forward_t *f = forward_new(m, W, W, 1, err, sizeof err);
    if (!f) log_die("", "%s", err);
    double best = 1e30;
    for (int r = 0; r < reps; r++) {
        double t0 = now_s();
        if (forward_prefill(f, 0, ids, W, 0, err, sizeof err)) log_die("", "%s", err);
        double dt = now_s() - t0;
        if (dt < best) best = dt;
    }
    double gf = bench_forward_flops(c, W, 0, W) / best / 1e9;
    printf("prefill %4d tokens: %7.0f tokens/s, %6.1f GFLOP/s, %.2f of cblas_sgemm\n", W, W / best, gf,
           gf / ref_gflops);
    forward_destroy(&f);

    /* score: what tokshift score does with one window (chunks of 512). */
    experiment_t *e = experiment_new(m, W, 512, NULL, err, sizeof err);
    experiment_row_t *rows = log_xmalloc(sizeof *rows * D);
    if (!e) log_die("", "%s", err);
    best = 1e30;
    for (int r = 0; r < reps; r++) {
        double t0 = now_s();
        if (experiment_score(e, ids, W, W / 2, rows, err, sizeof err) != W - 1) log_die("", "%s", err);
        double dt = now_s() - t0;
        if (dt < best) best = dt;
    }
    /* Rows 0..W-2 are computed (in chunks of 512: the same causal FLOPs). */
    double flops = bench_score_flops(c, W, W, W / 2);
    gf = flops / best / 1e9;
    printf("score   %4d tokens: %7.0f tokens/s, %6.1f GFLOP/s, %.2f of cblas_sgemm (statistics included)\n", W - 1,
           (W - 1) / best, gf, gf / ref_gflops);

    /* long: sliding windows over D tokens. */
    best = 1e30;
    for (int r = 0; r < reps; r++) {
        double t0 = now_s();
        if (experiment_score(e, ids, D, W / 2, rows, err, sizeof err) != D - 1) log_die("", "%s", err);
        double dt = now_s() - t0;
        if (dt < best) best = dt;
    }
    int n_windows = (D - W) / (W / 2) + 1;
    gf = bench_score_flops(c, D, W, W / 2) / best / 1e9;
    printf("long    %4d tokens: %7.0f tokens/s scored, %6.1f GFLOP/s, %.2f of cblas_sgemm (%d windows of %d, "
           "stride %d)\n", D - 1, (D - 1) / best, gf, gf / ref_gflops, n_windows, W, W / 2);
    printf("last row: logprob %.3f entropy %.3f (random weights)\n", rows[D - 2].st.logprob, rows[D - 2].st.entropy);

    experiment_destroy(&e);
    free(rows), free(ids);
    model_destroy(&m);
    return 0;
}
