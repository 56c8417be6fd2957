/* experiment.c - see experiment.h. */
#include "experiment.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"

struct experiment {
    const model_t *m;
    forward_t *fwd;
    int window, batch;
    experiment_cont_t cont;
    int has_cont;
    sampler_t **samplers;   /* [K] */
    int *row_pos, *row_slot; /* [max(batch, K + 1)] */
    int32_t *row_tok;
    float *first;           /* [n_vocab]: the prefix's last distribution */
};

experiment_t *experiment_new(const model_t *m, int window, int batch, const experiment_cont_t *cont, char *err,
                             size_t errlen) {
    experiment_t *e = NULL;
    if (window < 2 || batch < 1) {
        log_seterr(err, errlen, "experiment: window must be >= 2 and batch >= 1 (got %d, %d)", window, batch);
        return NULL;
    }
    if (cont && (cont->cont_len < 1 || cont->cont_len >= window || cont->n_samples < 0)) {
        log_seterr(err, errlen, "experiment: continuation length %d must be in [1, window %d) and samples %d >= 0",
                   cont ? cont->cont_len : 0, window, cont ? cont->n_samples : 0);
        return NULL;
    }
    if (!(e = calloc(1, sizeof *e))) goto oom;
    e->m = m;
    e->window = window;
    e->batch = batch < window ? batch : window;
    int K = cont ? cont->n_samples : 0, rows = e->batch > K + 1 ? e->batch : K + 1;
    if (cont) {
        e->cont = *cont;
        e->has_cont = 1;
    }
    if (!(e->row_pos = malloc(rows * sizeof *e->row_pos)) || !(e->row_slot = malloc(rows * sizeof *e->row_slot)) ||
        !(e->row_tok = malloc(rows * sizeof *e->row_tok)) ||
        !(e->first = malloc((size_t)m->cfg.n_vocab * sizeof *e->first)) ||
        !(e->samplers = calloc(K ? K : 1, sizeof *e->samplers)))
        goto oom;
    for (int k = 0; k < K; k++)
        if (!(e->samplers[k] = sampler_new(m->cfg.n_vocab, cont->sampling, 0, err, errlen))) goto error;
    if (!(e->fwd = forward_new(m, window, rows, K + 1, err, errlen))) goto error;
    return e;
oom:
    log_seterr(err, errlen, "experiment: out of memory");
error:
    experiment_destroy(&e);
    return NULL;
}

void experiment_destroy(experiment_t **self_p) {
    if (!self_p || !*self_p) return;
    experiment_t *e = *self_p;
    forward_destroy(&e->fwd);
    if (e->samplers)
        for (int k = 0; k < e->cont.n_samples; k++) sampler_destroy(&e->samplers[k]);
    free(e->samplers);
    free(e->row_pos);
    free(e->row_slot);
    free(e->row_tok);
    free(e->first);
    free(e);
    *self_p = NULL;
}

void experiment_set_reference(experiment_t *e, int on) { forward_set_reference(e->fwd, on); }
int experiment_window(const experiment_t *e) { return e->window; }

/* Runs one window ids[b..end) and records the tokens in [first, end). */
static int score_window(experiment_t *e, const int32_t *ids, int b, int end, int first, experiment_row_t *rows,
                        char *err, size_t errlen) {
    int V = e->m->cfg.n_vocab;
    for (int c0 = b; c0 < end - 1; c0 += e->batch) {
        /* Chunk rows c0..c1 predict tokens c0+1..c1+1 (positions from b). */
        int c1 = c0 + e->batch < end - 1 ? c0 + e->batch : end - 1;
        for (int i = 0; i < c1 - c0; i++) e->row_pos[i] = c0 - b + i, e->row_slot[i] = 0;
        if (forward_batch(e->fwd, ids + c0, e->row_slot, e->row_pos, c1 - c0, 1, err, errlen)) return -1;
        const float *logits = forward_logits(e->fwd);
        for (int t = c0 + 1; t <= c1; t++) {
            if (t < first) continue;
            experiment_row_t *r = &rows[t - 1];
            char why[LOG_ERRLEN];
            if (stats_compute(logits + (size_t)(t - 1 - c0) * V, V, ids[t], &r->st, why, sizeof why))
                return log_seterr(err, errlen, "position %d: %s", t, why);
            r->pos = t;
            r->token = ids[t];
            r->st.context_len = t - b;
        }
    }
    return 0;
}

long experiment_score(experiment_t *e, const int32_t *ids, int n, int stride, experiment_row_t *rows, char *err,
                      size_t errlen) {
    int W = e->window;
    if (n < 2) return 0;
    if (n > W && (stride < 1 || stride >= W))
        return log_seterr(err, errlen, "stride %d must be in [1, window %d) for a document of %d tokens", stride, W,
                          n);
    int scored_to = 1; /* tokens [1, scored_to) are done */
    for (int b = 0;; b += stride) {
        int end = b + W < n ? b + W : n;
        if (score_window(e, ids, b, end, scored_to, rows, err, errlen)) return -1;
        scored_to = end;
        if (end == n) break;
    }
    return n - 1;
}

static int cmp_i32(const void *a, const void *b) {
    int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
    return (x > y) - (x < y);
}

size_t experiment_cuts(const int32_t *pl, size_t n_pl, int every, int C, int n, int32_t *out, size_t cap) {
    size_t k = 0;
    for (size_t i = 0; i < n_pl && k < cap; i++)
        if (pl[i] >= 1 && (long)pl[i] + C <= n) out[k++] = pl[i];
    if (every > 0)
        for (long c = every; c + C <= n && k < cap; c += every) out[k++] = (int32_t)c;
    qsort(out, k, sizeof *out, cmp_i32);
    size_t u = 0;
    for (size_t i = 0; i < k; i++)
        if (u == 0 || out[u - 1] != out[i]) out[u++] = out[i];
    return u;
}

/* Records the statistics of tok under logits into r. */
static int record(const experiment_t *e, const float *logits, int32_t tok, int pos, int ctx, experiment_row_t *r,
                  char *err, size_t errlen) {
    char why[LOG_ERRLEN];
    if (stats_compute(logits, e->m->cfg.n_vocab, tok, &r->st, why, sizeof why))
        return log_seterr(err, errlen, "position %d: %s", pos, why);
    r->pos = pos;
    r->token = tok;
    r->st.context_len = ctx;
    return 0;
}

/* The continuation experiment at cut: the human continuation and K rows
 * decoded together, row r's token being sampled (forced NULL) or forced[(r
 * - 1) * C + i].  One code path for both, so that an observer given a
 * generator's tokens computes in the same batch layout, hence the same bits
 * when it is the same model. */
static int continue_rows(experiment_t *e, const int32_t *ids, int n, int cut, uint64_t doc_key,
                         const int32_t *forced, experiment_row_t *human, experiment_row_t *samples, uint64_t *seeds,
                         char *err, size_t errlen) {
    if (!e->has_cont) return log_seterr(err, errlen, "experiment: no continuation settings");
    int C = e->cont.cont_len, K = e->cont.n_samples, V = e->m->cfg.n_vocab;
    if (cut < 1 || cut + C > n)
        return log_seterr(err, errlen, "cut %d with continuation %d does not fit a document of %d tokens", cut, C, n);
    int P = cut < e->window - C ? cut : e->window - C;
    const int32_t *prefix = ids + cut - P;
    /* Prefill the prefix into slot 0; keep its last distribution. */
    for (int c0 = 0; c0 < P; c0 += e->batch) {
        int len = P - c0 < e->batch ? P - c0 : e->batch;
        for (int i = 0; i < len; i++) e->row_pos[i] = c0 + i, e->row_slot[i] = 0;
        if (forward_batch(e->fwd, prefix + c0, e->row_slot, e->row_pos, len, 0, err, errlen)) return -1;
    }
    memcpy(e->first, forward_logits(e->fwd), (size_t)V * sizeof *e->first);
    for (int k = 0; k < K; k++) {
        forward_copy_slot(e->fwd, 0, k + 1, P);
        if (forced) continue;
        seeds[k] = sampler_derive_seed(e->cont.run_seed, doc_key, (uint64_t)cut, (uint64_t)k);
        sampler_seed(e->samplers[k], seeds[k]);
    }
    for (int i = 0; i < C; i++) {
        int pos = cut + i, ctx = P + i;
        for (int r = 0; r <= K; r++) {
            const float *L = i == 0 ? e->first : forward_logits(e->fwd) + (size_t)r * V;
            int32_t tok = r == 0  ? ids[pos]
                          : forced ? forced[(size_t)(r - 1) * C + i]
                                   : sampler_sample(e->samplers[r - 1], L);
            experiment_row_t *row = r == 0 ? &human[i] : &samples[(size_t)(r - 1) * C + i];
            if (record(e, L, tok, pos, ctx, row, err, errlen)) return -1;
            e->row_tok[r] = tok;
            e->row_slot[r] = r;
            e->row_pos[r] = ctx;
        }
        if (i + 1 < C && forward_batch(e->fwd, e->row_tok, e->row_slot, e->row_pos, K + 1, 1, err, errlen)) return -1;
    }
    return 0;
}

int experiment_continue(experiment_t *e, const int32_t *ids, int n, int cut, uint64_t doc_key,
                        experiment_row_t *human, experiment_row_t *samples, uint64_t *seeds, char *err,
                        size_t errlen) {
    return continue_rows(e, ids, n, cut, doc_key, NULL, human, samples, seeds, err, errlen);
}

int experiment_observe(experiment_t *e, const int32_t *ids, int n, int cut, const int32_t *tokens,
                       experiment_row_t *human, experiment_row_t *samples, char *err, size_t errlen) {
    int K = e->has_cont ? e->cont.n_samples : 0, V = e->m->cfg.n_vocab;
    for (size_t i = 0; i < (size_t)K * (size_t)e->cont.cont_len; i++)
        if (tokens[i] < 0 || tokens[i] >= V)
            return log_seterr(err, errlen, "sample %zu, token %zu: id %d is outside the vocabulary (%d)",
                              i / (size_t)e->cont.cont_len, i % (size_t)e->cont.cont_len, tokens[i], V);
    return continue_rows(e, ids, n, cut, 0, tokens, human, samples, NULL, err, errlen);
}
