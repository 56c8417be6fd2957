/* testrows.h - comparing experiment rows bit for bit, for the C tests of
 * the engine's scoring and decoding (test_continue, test_template).  What
 * it is not: a tolerance; rows that must agree to a bound are compared by
 * their tests. */
#ifndef TS_TESTROWS_H
#define TS_TESTROWS_H

#include "experiment.h"

/* Whether a and b hold the same token and the same statistics (logprob,
 * entropy, rank, top-1 logprob, varentropy), bit for bit; pos and
 * context_len are not compared (a template shifts them). */
static inline int tu_same_stats(const experiment_row_t *a, const experiment_row_t *b) {
    return a->token == b->token && a->st.logprob == b->st.logprob && a->st.entropy == b->st.entropy &&
           a->st.rank == b->st.rank && a->st.top1_logprob == b->st.top1_logprob &&
           a->st.varentropy == b->st.varentropy;
}

/* The same, and at the same pos with the same context_len. */
static inline int tu_same_row(const experiment_row_t *a, const experiment_row_t *b) {
    return tu_same_stats(a, b) && a->pos == b->pos && a->st.context_len == b->st.context_len;
}

#endif
