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
 * with context_len = t - (start of its window) >= min(t, W - S).  A
 * window computes the logits of just the rows that predict a token it
 * scores (window k > 0's first W - S rows only fill the cache), so the
 * vocabulary product of a later window runs with fewer rows than in
 * builds before 2026-12-03, and its rows may differ from theirs in the
 * last bits (window 0 and the continuations are unchanged).
 *
 * Continuation experiments: at a cut point c (the number of tokens of the
 * prefix, BOS included), the prefix is the last P = min(c, W - C) tokens
 * before c (positions restart at 0); from its last distribution on, the
 * human continuation ids[c..c+C) is teacher-forced while K samples are
 * drawn.  The K + 1 rows of every cut of a document decode together, step
 * by step, as one batch of up to ~64 rows (cuts join as earlier ones
 * finish), each cut's rows attending to one copy of its prefix's cache
 * (forward_attach); every row's numbers are those of decoding it alone
 * (forward.h), so the batch changes nothing but the speed.  Every row records the statistics of its token
 * under the untempered distribution it was drawn from (context P + i).
 *
 * The prefix's cache and first distribution (the rule that `tokshift
 * generate` follows to regenerate a row bit for bit; a GEMM row's bits may
 * depend on the number of rows it was computed with, so the rule fixes
 * them):
 *  - a cut c <= W - C (P = c, the start of window 0) uses window 0's rows
 *    as the scoring computes them: window 0 has L = min(W, n) tokens, its
 *    rows 0 .. L - 2 go in chunks of `batch` rows from row 0, each chunk
 *    with every row's logits, and the cut's first distribution is row
 *    c - 1's.  No row reads a later row's values (causal attention,
 *    row-wise products), so these numbers depend on ids[0..c) and, through
 *    the shapes of the chunks, on L, not on the tokens after the cut:
 *    `tokshift generate --first-window L` computes a prompt of c tokens so
 *    (its last chunk filled up to the chunk's length).  The continuations
 *    read window 0's cache where the scoring left it (slot 0,
 *    experiment_score_cuts) instead of prefilling the prefix again.
 *  - a cut c > W - C prefills its own prefix ids[c - P .. c) (positions
 *    from 0) in chunks of `batch` rows, the last row's logits only (as
 *    `tokshift generate` without --first-window).
 * (`batch` is EXPERIMENT_BATCH in the worker and the CLI; positions come
 * after the fixed context, when there is one.)  Builds before this rule
 * (2026-12) computed every prefix the second way, so the continuation rows
 * of cuts <= W - C of runs they made differ from this build's: statistics
 * in the last bits, and a sample may draw another token from the first
 * one that the difference flips (regenerate such a run with the build that
 * made it).  Human rows are unchanged.  The first row of a human
 * continuation at a cut <= W - C is now exactly the scoring row of the
 * same token.
 * Sample k at cut c of document d uses its own sampler seeded with
 * sampler_derive_seed(run seed, d, c, k), so it can be regenerated alone. */
#ifndef TS_EXPERIMENT_H
#define TS_EXPERIMENT_H

#include <stddef.h>
#include <stdint.h>

#include "forward.h"
#include "model.h"
#include "sampler.h"
#include "stats.h"

typedef struct {
    int32_t pos;   /* index of the token in the document's ids */
    int32_t token; /* the token scored */
    stats_t st;
} experiment_row_t;

typedef struct experiment experiment_t;

/* The prefill chunk (rows per forward call) of the worker, of `tokshift
 * score` and of `tokshift regenerate`: the same chunks give the same GEMM
 * shapes, hence the same bits, as the run's workers. */
#define EXPERIMENT_BATCH 512

/* The continuation settings of a run. */
typedef struct {
    int cont_len;          /* C >= 1, C < window */
    int n_samples;         /* K >= 0 */
    sampler_params_t sampling;
    uint64_t run_seed;
} experiment_cont_t;

/* Prepares scoring with windows of `window` tokens (the caller decides
 * whether to exceed the trained context) and prefill chunks of at most
 * `batch` rows; with cont non-NULL, also continuation experiments.  NULL
 * with a message on failure. */
experiment_t *experiment_new(const model_t *model, int window, int batch, const experiment_cont_t *cont, char *err,
                             size_t errlen);

/* The same with a fixed context ctx[0..n_ctx) (a chat template's tokens
 * before the document, template.h; copied) that every window and every
 * continuation prefix follows: the model sees ctx, then the window's (or
 * prefix's) ids, at positions continuing ctx's, so the model's context
 * holds n_ctx + window tokens at most.  The rows are unchanged in form:
 * pos indexes ids and context_len counts the ids of the context, not
 * ctx's tokens (the model's context is n_ctx + context_len).  ctx is
 * prefilled once into each cache slot (windows and prefixes never write
 * its positions), in chunks of `batch` rows whatever the window, so its
 * cache is the same computation wherever the document is measured
 * (`tokshift generate --template` prefills it so).
 * experiment_new is this with no context. */
experiment_t *experiment_new_ctx(const model_t *model, int window, int batch, const experiment_cont_t *cont,
                                 const int32_t *ctx, int n_ctx, char *err, size_t errlen);

/* NULL-safe; clears *self_p. */
void experiment_destroy(experiment_t **self_p);

/* Uses the plain reference kernels (1) or BLAS (0). */
void experiment_set_reference(experiment_t *self, int on);

int experiment_window(const experiment_t *self);

/* Continuation rows decoded together at most (0 without continuations). */
int experiment_decode_rows(const experiment_t *self);

/* Scores ids[1..n) given ids[0..t) each, with stride 1 <= stride < window
 * (ignored when n <= window).  rows must hold n - 1 entries; they come out in
 * position order.  Returns the number of rows (n - 1, or 0 when n < 2), or
 * -1 with a message (bad stride, a token outside the vocabulary, a non-finite
 * logit with its position). */
long experiment_score(experiment_t *self, const int32_t *ids, int n, int stride, experiment_row_t *rows, char *err,
                      size_t errlen);

/* experiment_score that also keeps what the continuation experiments at
 * cuts[0..nc) (sorted, as experiment_cuts gives them) of the same document
 * need from window 0: experiment_continue_doc then starts the cuts <= W -
 * C without computing anything of their prefixes (the first distributions
 * of 64 such cuts at most are kept; a later one computes its chunk of
 * window 0 again).  The rows are experiment_score's, whatever the cuts.
 * Returns as experiment_score. */
long experiment_score_cuts(experiment_t *self, const int32_t *ids, int n, int stride, const int32_t *cuts, int nc,
                           experiment_row_t *rows, char *err, size_t errlen);

/* The cut points of a document of n ids: the given prefix lengths and every
 * multiple of cut_every (0 = none), each kept only when 1 <= c and
 * c + cont_len <= n; sorted and distinct, at most cap of them into out.
 * Returns how many. */
size_t experiment_cuts(const int32_t *prefix_lengths, size_t n_prefix_lengths, int cut_every, int cont_len, int n,
                       int32_t *out, size_t cap);

/* Runs the continuation experiment at cut (a value experiment_cuts gave)
 * for document doc_key (a cut <= W - C computes what it needs of window 0
 * unless the last scoring left it: the same numbers either way).  human must hold C rows; samples K * C rows (sample
 * k's row i at k * C + i); seeds receives each sample's seed.  Returns 0 or
 * -1 with a message. */
int experiment_continue(experiment_t *self, const int32_t *ids, int n, int cut, uint64_t doc_key,
                        experiment_row_t *human, experiment_row_t *samples, uint64_t *seeds, char *err,
                        size_t errlen);

/* The same for the nc cuts of one document (values experiment_cuts gave),
 * all decoded together: cut j's human rows at human[j * C ..], its sample
 * k's rows at samples[(j * K + k) * C ..], its seeds at seeds[j * K ..].
 * Returns 0 or -1 with a message. */
int experiment_continue_doc(experiment_t *self, const int32_t *ids, int n, const int32_t *cuts, int nc,
                            uint64_t doc_key, experiment_row_t *human, experiment_row_t *samples, uint64_t *seeds,
                            char *err, size_t errlen);

/* The same experiment at the nc cuts of one document (values
 * experiment_cuts gave) with the K samples' tokens given instead of drawn:
 * tokens[(j * K + k) * C + i] is cut j's sample k's i-th token (K = the
 * settings' n_samples), e.g. another run's samples at these cuts, so that
 * this model observes what a generator wrote with the context the
 * generator had (the prefix up to the cut, then the sample).  Rows go where
 * experiment_continue_doc puts them, and all the cuts decode together as
 * there.  The rows are what experiment_continue would give had it drawn
 * these tokens: bit for bit when the model and settings are the
 * generator's (rows do not depend on their batch: forward.h).  Returns 0
 * or -1 with a message (a token outside the vocabulary, as
 * experiment_continue's). */
int experiment_observe(experiment_t *self, const int32_t *ids, int n, const int32_t *cuts, int nc,
                       const int32_t *tokens, experiment_row_t *human, experiment_row_t *samples, char *err,
                       size_t errlen);

#endif
