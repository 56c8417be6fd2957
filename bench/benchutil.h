/* benchutil.h - what the benchmarks share (header-only): a model of a real
 * shape with random weights, loaded exactly as a converted file would be,
 * and the reference every GFLOP/s figure is divided by, cblas_sgemm on one
 * of the model's own product shapes, measured in the same run.  What it is
 * not: a timing harness. */
#ifndef TS_BENCHUTIL_H
#define TS_BENCHUTIL_H

#include <cblas.h>
#include <stdlib.h>

#include "gguf_writer.h"
#include "log.h"
#include "model.h"
#include "randmodel.h"
#include "now.h"

/* GFLOP/s of cblas_sgemm computing [n x d] x [ff x d]^T (a batch of n rows
 * through an FFN matrix as the engine stores it), best of 5, with the
 * threads OpenBLAS has now, timed by clock_s (seconds; the clock of the
 * figures it is compared with). */
static inline double bench_sgemm_gflops(int n, int d, int ff, double (*clock_s)(void)) {
    float *a = log_xmalloc(sizeof(float) * n * d), *b = log_xmalloc(sizeof(float) * ff * d),
          *y = log_xmalloc(sizeof(float) * n * ff);
    for (size_t i = 0; i < (size_t)n * d; i++) a[i] = (float)((i * 2654435761u) % 2001) * 1e-3f - 1.0f;
    for (size_t i = 0; i < (size_t)ff * d; i++) b[i] = (float)((i * 40503u) % 2001) * 1e-3f - 1.0f;
    double best = 1e30;
    for (int r = 0; r < 5; r++) {
        double t0 = clock_s();
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, ff, d, 1, a, d, b, d, 0, y, ff);
        double dt = clock_s() - t0;
        if (dt < best) best = dt;
    }
    free(a), free(b), free(y);
    return 2.0 * n * ff * d / best / 1e9;
}

/* FLOPs of a forward pass of T rows at positions p0.. (causal: row t sees
 * p0 + t + 1 keys) with the vocabulary product of `logit_rows` of them. */
static inline double bench_forward_flops(const model_config_t *c, double T, double p0, double logit_rows) {
    double d = c->n_embd, qd = (double)c->n_head * c->head_dim, kvd = (double)c->n_head_kv * c->head_dim;
    double ffn = (c->act != MODEL_ACT_GELU ? 3.0 : 2.0) * d * c->n_ff;
    double per_token = c->n_layer * (d * qd + 2 * d * kvd + qd * d + ffn);
    double keys = T * p0 + T * (T + 1) / 2;
    return 2 * per_token * T + 2.0 * c->n_vocab * d * logit_rows + c->n_layer * 2.0 * 2.0 * qd * keys;
}

/* FLOPs of scoring n tokens in windows of W with stride S as experiment.h
 * computes them: each window's rows from position 0, the logits of the
 * rows that predict a token no earlier window scored. */
static inline double bench_score_flops(const model_config_t *c, int n, int W, int S) {
    double flops = 0;
    for (int b = 0, scored = 1;; b += S) {
        int end = b + W < n ? b + W : n;
        flops += bench_forward_flops(c, end - b - 1, 0, end - scored);
        scored = end;
        if (end == n) break;
    }
    return flops;
}

/* The model of spec s (randmodel.h, a synthetic SentencePiece vocabulary)
 * written by the GGUF writer into memory, and also to write_path when it is
 * not NULL (for llama.cpp's benchmarks), then loaded by model_from_gguf.
 * *bytes gets the file's size.  Dies with the message on failure. */
static inline model_t *bench_random_model(const rm_spec_t *s, const char *name, const char *write_path,
                                          size_t *bytes) {
    char err[LOG_ERRLEN];
    gguf_writer_t *w = gguf_writer_new(err, sizeof err);
    void *buf = NULL;
    size_t len = 0;
    if (!w || rm_add_model(w, s, err, sizeof err) || rm_add_spm_vocab(w, s->n_vocab, err, sizeof err) ||
        gguf_writer_to_buffer(w, &buf, &len, err, sizeof err) ||
        (write_path && gguf_writer_write(w, write_path, err, sizeof err)))
        log_die("", "%s", err);
    gguf_writer_destroy(&w);
    gguf_t *g = gguf_open_buffer(buf, len, name, err, sizeof err);
    model_t *m = g ? model_from_gguf(g, buf, NULL, err, sizeof err) : NULL;
    if (!m) log_die("", "%s", err);
    if (bytes) *bytes = len;
    return m;
}

#endif
