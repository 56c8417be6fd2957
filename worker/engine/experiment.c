/* experiment.c - see experiment.h. */
#include "experiment.h"

#include <stdio.h>
#include <stdlib.h>

#include "log.h"

struct experiment {
    const model_t *m;
    forward_t *fwd;
    int window, batch;
};

experiment_t *experiment_new(const model_t *m, int window, int batch, char *err, size_t errlen) {
    if (window < 2 || batch < 1) {
        log_seterr(err, errlen, "experiment: window must be >= 2 and batch >= 1 (got %d, %d)", window, batch);
        return NULL;
    }
    experiment_t *e = calloc(1, sizeof *e);
    if (!e) {
        log_seterr(err, errlen, "experiment: out of memory");
        return NULL;
    }
    e->m = m;
    e->window = window;
    e->batch = batch < window ? batch : window;
    if (!(e->fwd = forward_new(m, window, e->batch, 1, err, errlen))) experiment_destroy(&e);
    return e;
}

void experiment_destroy(experiment_t **self_p) {
    if (!self_p || !*self_p) return;
    forward_destroy(&(*self_p)->fwd);
    free(*self_p);
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
        if (forward_prefill(e->fwd, 0, ids + c0, c1 - c0, c0 - b, err, errlen)) return -1;
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
