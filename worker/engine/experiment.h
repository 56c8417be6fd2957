/* experiment.h - what tokshift measures on one document: teacher-forced
 * scoring in sliding windows (DESIGN.md section 1).
 *
 * What it is: the one implementation that both `tokshift score` and the
 * worker call, so their numbers are identical by construction.  It owns a
 * forward_t sized for its window.  What it is not: I/O of any kind.
 *
 * Windows (the sliding-window perplexity method): window k covers tokens
 * [k S, min(k S + W, n)) with positions restarting at 0; it scores the tokens
 * that no earlier window scored, so each token t >= 1 is scored exactly once,
 * with context_len = t - (start of its window) >= min(t, W - S). */
#ifndef TS_EXPERIMENT_H
#define TS_EXPERIMENT_H

#include <stddef.h>
#include <stdint.h>

#include "forward.h"
#include "model.h"
#include "stats.h"

typedef struct {
    int32_t pos;   /* index of the token in the document's ids */
    int32_t token; /* the token scored */
    stats_t st;
} experiment_row_t;

typedef struct experiment experiment_t;

/* Prepares scoring with windows of `window` tokens (1 < window; clipped to
 * nothing: the caller decides whether to exceed the trained context) and
 * prefill chunks of at most `batch` rows.  NULL with a message on failure. */
experiment_t *experiment_new(const model_t *model, int window, int batch, char *err, size_t errlen);

/* NULL-safe; clears *self_p. */
void experiment_destroy(experiment_t **self_p);

/* Uses the plain reference kernels (1) or BLAS (0). */
void experiment_set_reference(experiment_t *self, int on);

int experiment_window(const experiment_t *self);

/* Scores ids[1..n) given ids[0..t) each, with stride 1 <= stride < window
 * (ignored when n <= window).  rows must hold n - 1 entries; they come out in
 * position order.  Returns the number of rows (n - 1, or 0 when n < 2), or
 * -1 with a message (bad stride, a token outside the vocabulary, a non-finite
 * logit with its position). */
long experiment_score(experiment_t *self, const int32_t *ids, int n, int stride, experiment_row_t *rows, char *err,
                      size_t errlen);

#endif
