/* experiment.c - see experiment.h. */
#include "experiment.h"

#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"

/* Rows decoded together, aimed at: enough that each weight row streamed
 * from memory serves many rows (smallm), few enough that the few-row
 * product stays in its regime and the groups' prefixes (a window each) fit
 * in memory. */
#define EXPERIMENT_DECODE_ROWS 64

/* First distributions of cuts <= W - C kept from window 0's scoring
 * (experiment_score_cuts), at most: V floats each, so the memory stays
 * bounded (64 x a 152k vocabulary is 39 MB) whatever the cut settings; a
 * cut beyond them computes its chunk of window 0 again (the same bits). */
#define EXPERIMENT_FIRST_KEPT 64

/* One cut being decoded: its prefix in full slot 1 + g (a cut <= W - C:
 * window 0's, in slot 0), its K + 1 rows in the leaves attached to it. */
typedef struct {
    int cut;  /* index into the document's cuts; -1 = free */
    int P;    /* prefix length */
    int step; /* tokens recorded per row so far */
} group_t;

struct experiment {
    const model_t *m;
    forward_t *fwd;
    int window, batch;
    experiment_cont_t cont;
    int has_cont;
    int n_groups;            /* G: cuts decoded at once */
    group_t *groups;         /* [G] */
    sampler_t **samplers;    /* [G * K]: group g's sample k at g * K + k */
    int *row_pos, *row_slot; /* [max(batch, G * (K + 1))] */
    int32_t *row_tok;
    int32_t *cur;            /* [G * (K + 1)]: each row's last token */
    int32_t *ctx;            /* the fixed context before every window and prefix */
    int n_ctx;               /* h */
    int ctx_batch;           /* its prefill chunk */
    unsigned char *ctx_in;   /* [full slots]: the slot's positions [0, h) hold ctx */
    int n_slots;             /* full slots: 0 = window 0, then one per group */
    /* Window 0 of the document last measured, in slot 0 after the context:
     * its L = min(W, n) ids, its rows [0, w0_rows) computed (a chunk
     * boundary); L = 0: nothing valid. */
    int32_t *w0_ids;
    int w0_len, w0_rows;
    /* Kept first distributions: cut first_cut[i]'s at first + i V. */
    float *first;
    int32_t first_cut[EXPERIMENT_FIRST_KEPT];
    int n_first, cap_first;
};

experiment_t *experiment_new(const model_t *m, int window, int batch, const experiment_cont_t *cont, char *err,
                             size_t errlen) {
    return experiment_new_ctx(m, window, batch, cont, NULL, 0, err, errlen);
}

experiment_t *experiment_new_ctx(const model_t *m, int window, int batch, const experiment_cont_t *cont,
                                 const int32_t *ctx, int n_ctx, char *err, size_t errlen) {
    experiment_t *e = NULL;
    if (n_ctx < 0 || (n_ctx && !ctx) || n_ctx > (1 << 24)) {
        log_seterr(err, errlen, "experiment: a fixed context of %d tokens", n_ctx);
        return NULL;
    }
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
    int K = cont ? cont->n_samples : 0, G = cont ? EXPERIMENT_DECODE_ROWS / (K + 1) : 0;
    if (cont && G < 1) G = 1;
    int dec_rows = G * (K + 1), rows = e->batch > dec_rows ? e->batch : dec_rows;
    /* The fixed context goes in chunks of the batch asked for, whatever
     * the window: `tokshift generate`, which has no window, prefills it
     * the same way (the same shapes, the same bits). */
    e->ctx_batch = batch;
    if (rows < (n_ctx < batch ? n_ctx : batch)) rows = n_ctx < batch ? n_ctx : batch;
    if (cont) {
        e->cont = *cont;
        e->has_cont = 1;
    }
    e->n_groups = G;
    e->n_slots = G + 1;
    if (n_ctx) {
        if (!(e->ctx = malloc((size_t)n_ctx * sizeof *e->ctx)) || !(e->ctx_in = calloc((size_t)G + 1, 1))) goto oom;
        memcpy(e->ctx, ctx, (size_t)n_ctx * sizeof *ctx);
        e->n_ctx = n_ctx;
    }
    if (!(e->row_pos = malloc(rows * sizeof *e->row_pos)) || !(e->row_slot = malloc(rows * sizeof *e->row_slot)) ||
        !(e->row_tok = malloc(rows * sizeof *e->row_tok)) ||
        !(e->cur = malloc((dec_rows ? dec_rows : 1) * sizeof *e->cur)) ||
        !(e->groups = calloc(G ? G : 1, sizeof *e->groups)) ||
        !(e->samplers = calloc(G * K > 0 ? (size_t)(G * K) : 1, sizeof *e->samplers)) ||
        !(e->w0_ids = malloc((size_t)window * sizeof *e->w0_ids)))
        goto oom;
    for (int k = 0; k < G * K; k++)
        if (!(e->samplers[k] = sampler_new(m->cfg.n_vocab, cont->sampling, 0, err, errlen))) goto error;
    /* Every window and prefix follows the fixed context in its slot; slot
     * 0 keeps window 0 for the continuations (experiment.h). */
    if (!(e->fwd = forward_new_shared(m, window + n_ctx, rows, e->n_slots, dec_rows, cont ? cont->cont_len : 0, err,
                                      errlen)))
        goto error;
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
        for (int k = 0; k < e->n_groups * e->cont.n_samples; k++) sampler_destroy(&e->samplers[k]);
    free(e->samplers);
    free(e->row_pos);
    free(e->row_slot);
    free(e->row_tok);
    free(e->cur);
    free(e->groups);
    free(e->ctx);
    free(e->ctx_in);
    free(e->w0_ids);
    free(e->first);
    free(e);
    *self_p = NULL;
}

void experiment_set_reference(experiment_t *e, int on) {
    forward_set_reference(e->fwd, on);
    /* The context's cache came from the other path: computed anew. */
    if (e->ctx_in) memset(e->ctx_in, 0, (size_t)e->n_slots);
    e->w0_len = 0;
}
int experiment_window(const experiment_t *e) { return e->window; }
int experiment_decode_rows(const experiment_t *e) { return e->has_cont ? e->n_groups * (e->cont.n_samples + 1) : 0; }

/* Prefills the fixed context into slot at positions [0, h), in chunks of
 * ctx_batch (no logits: nothing of it is scored), once per slot: windows
 * and prefixes write only positions from h on, so the slot keeps it, the
 * same values as computing it again (the same rows, the same shapes). */
static int prefill_ctx(experiment_t *e, int slot, char *err, size_t errlen) {
    if (!e->n_ctx || e->ctx_in[slot]) return 0;
    for (int c0 = 0; c0 < e->n_ctx; c0 += e->ctx_batch) {
        int len = e->n_ctx - c0 < e->ctx_batch ? e->n_ctx - c0 : e->ctx_batch;
        for (int i = 0; i < len; i++) e->row_pos[i] = c0 + i, e->row_slot[i] = slot;
        if (forward_batch_from(e->fwd, e->ctx + c0, e->row_slot, e->row_pos, len, len, err, errlen)) return -1;
    }
    e->ctx_in[slot] = 1;
    return 0;
}

/* Computes rows [r0, r1) of the window that starts at ids + b into slot,
 * positions from h (after the fixed context), with the logits of rows
 * [from, r1) (forward_batch_from: r0 every row's, r1 none). */
static int window_chunk(experiment_t *e, const int32_t *ids, int b, int r0, int r1, int from, int slot, char *err,
                        size_t errlen) {
    assert(r0 <= from && from <= r1);
    for (int i = 0; i < r1 - r0; i++) e->row_pos[i] = e->n_ctx + r0 + i, e->row_slot[i] = slot;
    return forward_batch_from(e->fwd, ids + b + r0, e->row_slot, e->row_pos, r1 - r0, from - r0, err, errlen);
}

/* Whether slot 0 holds window 0 of the document ids[0..n) (rows
 * [0, w0_rows) of it): the same ids over the same L. */
static int w0_holds(const experiment_t *e, const int32_t *ids, int n) {
    int L = n < e->window ? n : e->window;
    return e->w0_len == L && !memcmp(e->w0_ids, ids, (size_t)L * sizeof *ids);
}

/* Forgets slot 0's window and takes ids[0..n)'s, nothing computed yet. */
static void w0_reset(experiment_t *e, const int32_t *ids, int n) {
    e->w0_len = n < e->window ? n : e->window;
    memcpy(e->w0_ids, ids, (size_t)e->w0_len * sizeof *ids);
    e->w0_rows = 0;
    e->n_first = 0;
}

/* Keeps row r of logits as cut c's first distribution, when there is room
 * (EXPERIMENT_FIRST_KEPT; without it, or without memory, the cut computes
 * its chunk again). */
static void keep_first(experiment_t *e, const float *logits, int r, int c) {
    size_t V = (size_t)e->m->cfg.n_vocab;
    if (e->n_first == EXPERIMENT_FIRST_KEPT) return;
    if (e->n_first == e->cap_first) {
        int cap = e->cap_first ? 2 * e->cap_first : 4;
        if (cap > EXPERIMENT_FIRST_KEPT) cap = EXPERIMENT_FIRST_KEPT;
        float *nb = realloc(e->first, (size_t)cap * V * sizeof *nb);
        if (!nb) return;
        e->first = nb, e->cap_first = cap;
    }
    memcpy(e->first + (size_t)e->n_first * V, logits + (size_t)r * V, V * sizeof *logits);
    e->first_cut[e->n_first++] = c;
}

/* Runs one window ids[b..end) after the fixed context and records the
 * tokens in [first, end).  Window 0 goes to slot 0, where it stays for the
 * continuations (its first distributions of the sorted cuts[0..nc) that
 * are <= W - C kept); later windows to slot 1 (0 without continuations,
 * which then forgets window 0). */
static int score_window(experiment_t *e, const int32_t *ids, int n, int b, int end, int first, const int32_t *cuts,
                        int nc, experiment_row_t *rows, char *err, size_t errlen) {
    int V = e->m->cfg.n_vocab, slot = b == 0 ? 0 : e->n_slots > 1 ? 1 : 0;
    int max_cut = e->has_cont ? e->window - e->cont.cont_len : 0, j = 0;
    if (end - b < 2) return 0;
    if (prefill_ctx(e, slot, err, errlen)) return -1;
    if (b == 0) w0_reset(e, ids, n);
    else if (slot == 0) e->w0_len = 0;
    for (int c0 = b; c0 < end - 1; c0 += e->batch) {
        /* Chunk rows c0..c1 predict tokens c0+1..c1+1 (positions from b,
         * after the fixed context). */
        int c1 = c0 + e->batch < end - 1 ? c0 + e->batch : end - 1;
        /* Logits of the rows that predict a token not scored yet (window
         * 0: all; a later window: none of those its predecessor scored). */
        int from = first - 1 > c0 ? (first - 1 < c1 ? first - 1 : c1) : c0;
        if (window_chunk(e, ids, b, c0 - b, c1 - b, from - b, slot, err, errlen)) return -1;
        const float *logits = forward_logits(e->fwd);
        for (int t = from + 1; t <= c1; t++) {
            experiment_row_t *r = &rows[t - 1];
            char why[LOG_ERRLEN];
            if (stats_compute(logits + (size_t)(t - 1 - from) * V, V, ids[t], &r->st, why, sizeof why))
                return log_seterr(err, errlen, "position %d: %s", t, why);
            r->pos = t;
            r->token = ids[t];
            r->st.context_len = t - b;
        }
        if (b == 0) {
            assert(from == c0);
            for (; j < nc && cuts[j] <= c1 && cuts[j] <= max_cut; j++)
                if (cuts[j] > c0) keep_first(e, logits, cuts[j] - 1 - c0, cuts[j]);
            e->w0_rows = c1;
        }
    }
    return 0;
}

long experiment_score_cuts(experiment_t *e, const int32_t *ids, int n, int stride, const int32_t *cuts, int nc,
                           experiment_row_t *rows, char *err, size_t errlen) {
    int W = e->window;
    if (n < 2) return 0;
    if (n > W && (stride < 1 || stride >= W))
        return log_seterr(err, errlen, "stride %d must be in [1, window %d) for a document of %d tokens", stride, W,
                          n);
    int scored_to = 1; /* tokens [1, scored_to) are done */
    for (int b = 0;; b += stride) {
        int end = b + W < n ? b + W : n;
        if (score_window(e, ids, n, b, end, scored_to, cuts, nc, rows, err, errlen)) return -1;
        scored_to = end;
        if (end == n) break;
    }
    return n - 1;
}

long experiment_score(experiment_t *e, const int32_t *ids, int n, int stride, experiment_row_t *rows, char *err,
                      size_t errlen) {
    return experiment_score_cuts(e, ids, n, stride, NULL, 0, rows, err, errlen);
}

/* Makes slot 0 hold window 0 of ids[0..n) through the chunk that holds
 * row c - 1 (c <= W - C) and points *first at row c - 1's logits: kept
 * from the scoring, or that chunk computed (again: the same rows, the same
 * bits) with every row's logits, as the scoring computes it. */
static int w0_prefix(experiment_t *e, const int32_t *ids, int n, int c, const float **first, char *err,
                     size_t errlen) {
    if (!w0_holds(e, ids, n)) w0_reset(e, ids, n);
    if (prefill_ctx(e, 0, err, errlen)) return -1;
    for (int i = 0; i < e->n_first; i++)
        if (e->first_cut[i] == c) {
            *first = e->first + (size_t)i * e->m->cfg.n_vocab;
            return 0;
        }
    int last = e->w0_len - 1, r0 = (c - 1) / e->batch * e->batch, r1 = r0 + e->batch < last ? r0 + e->batch : last;
    for (; e->w0_rows < r0; e->w0_rows += e->batch) /* whole chunks: w0_rows < r0 is a multiple of the batch */
        if (window_chunk(e, ids, 0, e->w0_rows, e->w0_rows + e->batch, e->w0_rows + e->batch, 0, err, errlen))
            return -1;
    if (window_chunk(e, ids, 0, r0, r1, r0, 0, err, errlen)) return -1;
    if (e->w0_rows < r1) e->w0_rows = r1;
    *first = forward_logits(e->fwd) + (size_t)(c - 1 - r0) * e->m->cfg.n_vocab;
    return 0;
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

/* Starts cut j of cuts in group g: a cut <= W - C takes its prefix from
 * window 0 in slot 0, a later one prefills its own into slot 1 + g (chunks
 * of the batch, the last row's logits); records every row's first token
 * from the prefix's last distribution (sampled, or forced[(j K + k) C]
 * when forced is not NULL), and attaches the group's leaves. */
static int group_start(experiment_t *e, int g, const int32_t *ids, int n, const int32_t *cuts, int j, uint64_t doc_key,
                       const int32_t *forced, experiment_row_t *human, experiment_row_t *samples, uint64_t *seeds,
                       char *err, size_t errlen) {
    int C = e->cont.cont_len, K = e->cont.n_samples, cut = cuts[j];
    int P = cut < e->window - C ? cut : e->window - C, slot = 0;
    int h = e->n_ctx;
    const float *first;
    if (cut <= e->window - C) {
        if (w0_prefix(e, ids, n, cut, &first, err, errlen)) return -1;
    } else {
        slot = 1 + g;
        if (prefill_ctx(e, slot, err, errlen)) return -1;
        for (int c0 = 0; c0 < P; c0 += e->batch) {
            int len = P - c0 < e->batch ? P - c0 : e->batch;
            /* Only the prefix's last row's logits are read. */
            int from = c0 + len < P ? c0 + len : P - 1;
            if (window_chunk(e, ids, cut - P, c0, c0 + len, from, slot, err, errlen)) return -1;
        }
        first = forward_logits(e->fwd);
    }
    int32_t *cur = e->cur + (size_t)g * (K + 1);
    for (int r = 0; r <= K; r++) {
        int32_t tok = ids[cut];
        experiment_row_t *row = &human[(size_t)j * C];
        if (r > 0 && forced) {
            tok = forced[((size_t)j * K + r - 1) * C];
            row = &samples[((size_t)j * K + r - 1) * C];
        } else if (r > 0) {
            sampler_t *smp = e->samplers[(size_t)g * K + r - 1];
            uint64_t seed = sampler_derive_seed(e->cont.run_seed, doc_key, (uint64_t)cut, (uint64_t)(r - 1));
            seeds[(size_t)j * K + r - 1] = seed;
            sampler_seed(smp, seed);
            tok = sampler_sample(smp, first);
            row = &samples[((size_t)j * K + r - 1) * C];
        }
        if (record(e, first, tok, cut, P, row, err, errlen)) return -1;
        cur[r] = tok;
        forward_attach(e->fwd, forward_n_slots(e->fwd) + g * (K + 1) + r, slot, h + P);
    }
    e->groups[g] = (group_t){j, P, 1};
    return 0;
}

/* The continuation experiments at cuts, all decoded together; sample k of
 * cut j sampled, or its tokens forced[(j K + k) C ..] when forced is not
 * NULL (an observer of another run's samples; seeds unused).  One code path
 * for both, and every row's bits independent of the batch (forward.h), so
 * an observer that is the generator reproduces its rows exactly. */
static int continue_cuts(experiment_t *e, const int32_t *ids, int n, const int32_t *cuts, int nc, uint64_t doc_key,
                         const int32_t *forced, experiment_row_t *human, experiment_row_t *samples, uint64_t *seeds,
                         char *err, size_t errlen) {
    if (!e->has_cont) return log_seterr(err, errlen, "experiment: no continuation settings");
    int C = e->cont.cont_len, K = e->cont.n_samples, V = e->m->cfg.n_vocab, G = e->n_groups;
    for (int j = 0; j < nc; j++)
        if (cuts[j] < 1 || cuts[j] + C > n)
            return log_seterr(err, errlen, "cut %d with continuation %d does not fit a document of %d tokens",
                              cuts[j], C, n);
    for (int g = 0; g < G; g++) e->groups[g].cut = -1;
    int next = 0;
    for (;;) {
        /* Cuts join as groups free up: continuous batching within the
         * document. */
        for (int g = 0; g < G; g++)
            while (e->groups[g].cut < 0 && next < nc) {
                if (group_start(e, g, ids, n, cuts, next, doc_key, forced, human, samples, seeds, err, errlen))
                    return -1;
                next++;
                if (e->groups[g].step == C) e->groups[g].cut = -1;
            }
        int nrows = 0;
        for (int g = 0; g < G; g++) {
            const group_t *gr = &e->groups[g];
            if (gr->cut < 0) continue;
            for (int r = 0; r <= K; r++, nrows++) {
                e->row_tok[nrows] = e->cur[(size_t)g * (K + 1) + r];
                e->row_slot[nrows] = forward_n_slots(e->fwd) + g * (K + 1) + r;
                e->row_pos[nrows] = e->n_ctx + gr->P + gr->step - 1;
            }
        }
        if (nrows == 0) return 0;
        if (forward_batch(e->fwd, e->row_tok, e->row_slot, e->row_pos, nrows, 1, err, errlen)) return -1;
        const float *logits = forward_logits(e->fwd);
        int row = 0;
        for (int g = 0; g < G; g++) {
            group_t *gr = &e->groups[g];
            if (gr->cut < 0) continue;
            int j = gr->cut, i = gr->step, cut = cuts[j];
            for (int r = 0; r <= K; r++, row++) {
                const float *L = logits + (size_t)row * V;
                int32_t tok = r == 0  ? ids[cut + i]
                              : forced ? forced[((size_t)j * K + r - 1) * C + i]
                                       : sampler_sample(e->samplers[(size_t)g * K + r - 1], L);
                experiment_row_t *dst = r == 0 ? &human[(size_t)j * C + i] : &samples[((size_t)j * K + r - 1) * C + i];
                if (record(e, L, tok, cut + i, gr->P + i, dst, err, errlen)) return -1;
                e->cur[(size_t)g * (K + 1) + r] = tok;
            }
            if (++gr->step == C) gr->cut = -1;
        }
    }
}

int experiment_continue_doc(experiment_t *e, const int32_t *ids, int n, const int32_t *cuts, int nc, uint64_t doc_key,
                            experiment_row_t *human, experiment_row_t *samples, uint64_t *seeds, char *err,
                            size_t errlen) {
    return continue_cuts(e, ids, n, cuts, nc, doc_key, NULL, human, samples, seeds, err, errlen);
}

int experiment_continue(experiment_t *e, const int32_t *ids, int n, int cut, uint64_t doc_key,
                        experiment_row_t *human, experiment_row_t *samples, uint64_t *seeds, char *err,
                        size_t errlen) {
    return continue_cuts(e, ids, n, &cut, 1, doc_key, NULL, human, samples, seeds, err, errlen);
}

int experiment_observe(experiment_t *e, const int32_t *ids, int n, const int32_t *cuts, int nc,
                       const int32_t *tokens, experiment_row_t *human, experiment_row_t *samples, char *err,
                       size_t errlen) {
    int K = e->has_cont ? e->cont.n_samples : 0, V = e->m->cfg.n_vocab;
    size_t per_cut = (size_t)K * (size_t)e->cont.cont_len;
    for (size_t i = 0; i < per_cut * (size_t)(nc > 0 ? nc : 0); i++)
        if (tokens[i] < 0 || tokens[i] >= V)
            return log_seterr(err, errlen, "cut %d, sample %zu, token %zu: id %d is outside the vocabulary (%d)",
                              cuts[i / per_cut], i % per_cut / (size_t)e->cont.cont_len,
                              i % (size_t)e->cont.cont_len, tokens[i], V);
    return continue_cuts(e, ids, n, cuts, nc, 0, tokens, human, samples, NULL, err, errlen);
}
