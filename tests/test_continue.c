/* test_continue.c - the continuation experiments of a document, decoded all
 * together (experiment_continue_doc: many cuts, continuous batching, rows
 * over a shared prefix), against each row decoded alone the way
 * `tokshift generate --prompt-ids ... --seed ...` decodes it (then one row
 * per step in a slot of its own), on the real stories260K model.  The
 * prefix follows experiment.h's rule, written out here on its own: a cut
 * c <= W - C as `generate --first-window L` computes it (window 0's chunk
 * shapes, the tokens after the cut replaced by others, every row's
 * logits), a later one in one prefill with the last row's logits.  The
 * cuts <= W - C take their prefix from window 0 in the experiment: computed
 * by the continuations themselves, and kept from the scoring
 * (experiment_score_cuts), both the same rows; the first row of their
 * human continuation is the scoring row of the same token.
 *
 * Exact, not within a tolerance: forward.h promises that a decode row's
 * numbers do not depend on its batch, so every sampled token and every
 * statistic must be bit-identical.  More cuts than the batch holds make
 * cuts join as others finish; the run seed is chosen so that some derived
 * seeds have their top bit set (stored as negative bigint), and the test
 * checks that they do. */
#include <math.h>

#include "experiment.h"
#include "forward.h"
#include "log.h"
#include "loader.h"
#include "model.h"
#include "sampler.h"
#include "stats.h"
#include "testrows.h"
#include "testutil.h"

static char err[LOG_ERRLEN];

static const char *g_text =
    "Once upon a time, there was a little dog named Max. Max liked to run in the big green park with his friend, a "
    "small cat called Lily. One day, the sun was hot and Max was thirsty. He saw a pond and ran to drink. Lily said, "
    "\"Be careful, Max! The water is deep.\" Max did not listen. He jumped in and splashed all around. Then he felt "
    "scared because he could not touch the ground. Lily ran to get help from a kind old man. The man pulled Max out "
    "of the water. Max was wet and cold, but he was safe. He said sorry to Lily and they went home together.";

/* Decodes one row alone: prefix ids[cut-P..cut) then C tokens, sampled with
 * seed (or teacher-forced from ids when smp is NULL).  The prefix goes in
 * chunks of batch rows; with wlen > 0 (a cut <= W - C of a document whose
 * window 0 has wlen tokens) as window 0's rows 0 .. wlen - 2 go, up to the
 * chunk that holds row P - 1, the rows after the cut holding another token
 * than the document's, that chunk with all logits; else the last row's. */
static void decode_alone(const model_t *m, const int32_t *ids, int cut, int P, int C, int wlen, int batch,
                         sampler_t *smp, experiment_row_t *out) {
    int V = m->cfg.n_vocab, r0 = (P - 1) / batch * batch, rows = P;
    if (wlen) rows = r0 + batch < wlen - 1 ? r0 + batch : wlen - 1;
    forward_t *f = forward_new(m, rows + C, batch < rows ? batch : rows, 1, err, sizeof err);
    TU_REQUIRE(f, "%s", err);
    int *pos = malloc(sizeof(int) * rows);
    int32_t *tok = malloc(sizeof(int32_t) * rows);
    for (int i = 0; i < rows; i++) pos[i] = i, tok[i] = i < P ? ids[cut - P + i] : (ids[cut] + 1 + i) % V;
    for (int c0 = 0; c0 < rows; c0 += batch) {
        int len = rows - c0 < batch ? rows - c0 : batch;
        TU_REQUIRE(forward_batch(f, tok + c0, NULL, pos + c0, len, wlen > 0, err, sizeof err) == 0, "%s", err);
    }
    free(tok);
    for (int i = 0; i < C; i++) {
        const float *L = forward_logits(f) + (i == 0 && wlen ? (size_t)(P - 1 - r0) * V : 0);
        int32_t tok = smp ? sampler_sample(smp, L) : ids[cut + i];
        TU_REQUIRE(stats_compute(L, V, tok, &out[i].st, err, sizeof err) == 0, "%s", err);
        out[i].pos = cut + i;
        out[i].token = tok;
        out[i].st.context_len = P + i;
        int p = P + i;
        if (i + 1 < C) TU_REQUIRE(forward_batch(f, &tok, NULL, &p, 1, 0, err, sizeof err) == 0, "%s", err);
    }
    free(pos);
    forward_destroy(&f);
}

/* Every continuation row of the document with prefill chunks of batch rows
 * against the same row decoded alone, then with window 0 kept from the
 * scoring, then one cut at a time. */
static void check_doc(const model_t *m, const int32_t *ids, long n, int batch) {
    /* K = 6: 9 cuts of 7 rows each = 63 rows (one batch holds 64 / 7 = 9
     * cuts); W = 64 < the last cuts, so their prefixes are cut to W - C. */
    int W = 64, C = 7, K = 6, every = 9;
    int32_t pl[] = {3};
    int32_t cuts[64];
    int nc = (int)experiment_cuts(pl, 1, every, C, (int)n, cuts, 64);
    TU_REQUIRE(nc > 12, "%d cuts", nc);
    experiment_cont_t cont = {C, K, {1.0f, 0, 1.0f}, 0xfedcba9876543210ULL};
    experiment_t *e = experiment_new(m, W, batch, &cont, err, sizeof err);
    TU_REQUIRE(e, "%s", err);
    experiment_row_t *human = calloc((size_t)nc * C, sizeof *human), *samples = calloc((size_t)nc * K * C, sizeof *samples);
    experiment_row_t *alone = calloc(C, sizeof *alone);
    uint64_t *seeds = calloc((size_t)nc * K, sizeof *seeds);
    TU_REQUIRE(experiment_continue_doc(e, ids, (int)n, cuts, nc, 77, human, samples, seeds, err, sizeof err) == 0,
               "%s", err);
    sampler_t *smp = sampler_new(m->cfg.n_vocab, cont.sampling, 0, err, sizeof err);
    TU_REQUIRE(smp, "%s", err);
    int top_bit = 0, bad = 0, checked = 0, reused = 0;
    for (int j = 0; j < nc; j++) {
        int P = cuts[j] < W - C ? cuts[j] : W - C, wlen = cuts[j] <= W - C ? (n < W ? (int)n : W) : 0;
        reused += wlen > 0;
        decode_alone(m, ids, cuts[j], P, C, wlen, batch, NULL, alone);
        for (int i = 0; i < C; i++) bad += !tu_same_row(&human[(size_t)j * C + i], &alone[i]);
        for (int k = 0; k < K; k++) {
            uint64_t seed = seeds[(size_t)j * K + k];
            TU_CHECK(seed == sampler_derive_seed(cont.run_seed, 77, (uint64_t)cuts[j], (uint64_t)k), "seed of %d/%d",
                     j, k);
            top_bit += seed >> 63;
            sampler_seed(smp, seed);
            decode_alone(m, ids, cuts[j], P, C, wlen, batch, smp, alone);
            for (int i = 0; i < C; i++) bad += !tu_same_row(&samples[((size_t)j * K + k) * C + i], &alone[i]);
            checked++;
        }
    }
    TU_CHECK(reused > 3 && reused < nc, "cuts <= W - C: %d of %d", reused, nc);
    /* The same continuations with window 0 kept from the scoring: the same
     * rows; the scoring's rows are experiment_score's whatever the cuts;
     * a reused cut's first human row is the scoring row of its token. */
    experiment_row_t *scored = calloc((size_t)n, sizeof *scored), *scored_cuts = calloc((size_t)n, sizeof *scored);
    experiment_row_t *human2 = calloc((size_t)nc * C, sizeof *human2);
    experiment_row_t *samples2 = calloc((size_t)nc * K * C, sizeof *samples2);
    TU_REQUIRE(experiment_score(e, ids, (int)n, 32, scored, err, sizeof err) == n - 1, "%s", err);
    TU_REQUIRE(experiment_score_cuts(e, ids, (int)n, 32, cuts, nc, scored_cuts, err, sizeof err) == n - 1, "%s", err);
    TU_REQUIRE(experiment_continue_doc(e, ids, (int)n, cuts, nc, 77, human2, samples2, seeds, err, sizeof err) == 0,
               "%s", err);
    int bad_kept = 0, bad_score = 0, bad_first = 0;
    for (long t = 0; t < n - 1; t++) bad_score += !tu_same_row(&scored[t], &scored_cuts[t]);
    for (size_t i = 0; i < (size_t)nc * C; i++) bad_kept += !tu_same_row(&human[i], &human2[i]);
    for (size_t i = 0; i < (size_t)nc * K * C; i++) bad_kept += !tu_same_row(&samples[i], &samples2[i]);
    for (int j = 0; j < nc && cuts[j] <= W - C; j++) {
        experiment_row_t a = human2[(size_t)j * C], b = scored[cuts[j] - 1];
        bad_first += a.pos != b.pos || a.token != b.token || a.st.logprob != b.st.logprob ||
                     a.st.entropy != b.st.entropy || a.st.varentropy != b.st.varentropy;
    }
    TU_CHECK(bad_score == 0, "%d scoring rows change with the cuts", bad_score);
    TU_CHECK(bad_kept == 0, "%d rows differ with window 0 kept from the scoring", bad_kept);
    TU_CHECK(bad_first == 0, "%d first human rows differ from the scoring rows", bad_first);
    free(scored_cuts), free(human2);
    fprintf(stderr, "batch %d: %d cuts, %d samples regenerated alone (%d seeds with the top bit set), %d rows differ\n", batch, nc,
            checked, top_bit, bad);
    TU_CHECK(bad == 0, "%d rows of the batched decode differ from decoding alone", bad);
    TU_CHECK(top_bit > 0 && top_bit < checked, "seeds with and without the top bit (%d of %d)", top_bit, checked);
    /* experiment_continue (one cut) is the same computation. */
    TU_REQUIRE(experiment_continue(e, ids, (int)n, cuts[nc - 1], 77, alone, samples, seeds, err, sizeof err) == 0,
               "%s", err);
    for (int i = 0; i < C; i++) TU_CHECK(tu_same_row(&alone[i], &human[(size_t)(nc - 1) * C + i]), "single cut row %d", i);
    /* And a cut <= W - C after a scoring that kept nothing for it, of
     * this document (its chunk of window 0 computed again) or of another
     * (window 0 computed up to that chunk). */
    int j = 5;
    TU_REQUIRE(cuts[j] > 32 && cuts[j] <= W - C, "cut %d", cuts[j]);
    for (int other = 0; other < 2; other++) {
        TU_REQUIRE(experiment_score(e, ids + other, (int)n - other, 32, scored, err, sizeof err) == n - 1 - other,
                   "%s", err);
        TU_REQUIRE(experiment_continue(e, ids, (int)n, cuts[j], 77, alone, samples, seeds, err, sizeof err) == 0,
                   "%s", err);
        for (int i = 0; i < C; i++)
            TU_CHECK(tu_same_row(&alone[i], &human[(size_t)j * C + i]), "cut %d row %d (%d)", cuts[j], i, other);
        for (int i = 0; i < K * C; i++)
            TU_CHECK(tu_same_row(&samples[i], &samples2[(size_t)j * K * C + i]), "cut %d sample row %d (%d)", cuts[j],
                     i, other);
    }
    sampler_destroy(&smp);
    experiment_destroy(&e);
    free(human), free(samples), free(samples2), free(scored), free(alone), free(seeds);
}

int main(void) {
    model_t *m = loader_load(tu_testdata("models/stories260K.gguf"), err, sizeof err);
    TU_REQUIRE(m, "%s", err);
    int32_t *ids = NULL;
    long n = tokenizer_encode(m->tok, g_text, strlen(g_text), 1, &ids, err, sizeof err);
    TU_REQUIRE(n > 120, "encode gave %ld tokens", n);
    /* Window 0 (63 rows) in one chunk, and in chunks of 16, 16, 16 and 15
     * (the last one through the few-row product): a cut computes the
     * chunks before its own, then its own again when nothing was kept. */
    check_doc(m, ids, n, 512);
    check_doc(m, ids, n, 16);
    free(ids);
    model_destroy(&m);
    return tu_finish("test_continue");
}
