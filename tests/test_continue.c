/* test_continue.c - the continuation experiments of a document, decoded all
 * together (experiment_continue_doc: many cuts, continuous batching, rows
 * over a shared prefix), against each row decoded alone the way
 * `tokshift generate --prompt-ids ... --seed ...` decodes it (the prefix in
 * one prefill with the last row's logits, then one row per step in a slot
 * of its own), on the real stories260K model.
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
 * seed (or teacher-forced from ids when smp is NULL). */
static void decode_alone(const model_t *m, const int32_t *ids, int cut, int P, int C, sampler_t *smp,
                         experiment_row_t *out) {
    int V = m->cfg.n_vocab;
    forward_t *f = forward_new(m, P + C, P, 1, err, sizeof err);
    TU_REQUIRE(f, "%s", err);
    int *pos = malloc(sizeof(int) * P);
    for (int i = 0; i < P; i++) pos[i] = i;
    TU_REQUIRE(forward_batch(f, ids + cut - P, NULL, pos, P, 0, err, sizeof err) == 0, "%s", err);
    for (int i = 0; i < C; i++) {
        const float *L = forward_logits(f);
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

int main(void) {
    model_t *m = loader_load(tu_testdata("models/stories260K.gguf"), err, sizeof err);
    TU_REQUIRE(m, "%s", err);
    int32_t *ids = NULL;
    long n = tokenizer_encode(m->tok, g_text, strlen(g_text), 1, &ids, err, sizeof err);
    TU_REQUIRE(n > 120, "encode gave %ld tokens", n);
    /* K = 6: 9 cuts of 7 rows each = 63 rows (one batch holds 64 / 7 = 9
     * cuts); W = 64 < the last cuts, so their prefixes are cut to W - C. */
    int W = 64, C = 7, K = 6, every = 9;
    int32_t pl[] = {3};
    int32_t cuts[64];
    int nc = (int)experiment_cuts(pl, 1, every, C, (int)n, cuts, 64);
    TU_REQUIRE(nc > 12, "%d cuts", nc);
    experiment_cont_t cont = {C, K, {1.0f, 0, 1.0f}, 0xfedcba9876543210ULL};
    experiment_t *e = experiment_new(m, W, 512, &cont, err, sizeof err);
    TU_REQUIRE(e, "%s", err);
    experiment_row_t *human = calloc((size_t)nc * C, sizeof *human), *samples = calloc((size_t)nc * K * C, sizeof *samples);
    experiment_row_t *alone = calloc(C, sizeof *alone);
    uint64_t *seeds = calloc((size_t)nc * K, sizeof *seeds);
    TU_REQUIRE(experiment_continue_doc(e, ids, (int)n, cuts, nc, 77, human, samples, seeds, err, sizeof err) == 0,
               "%s", err);
    sampler_t *smp = sampler_new(m->cfg.n_vocab, cont.sampling, 0, err, sizeof err);
    TU_REQUIRE(smp, "%s", err);
    int top_bit = 0, bad = 0, checked = 0;
    for (int j = 0; j < nc; j++) {
        int P = cuts[j] < W - C ? cuts[j] : W - C;
        decode_alone(m, ids, cuts[j], P, C, NULL, alone);
        for (int i = 0; i < C; i++) bad += !tu_same_row(&human[(size_t)j * C + i], &alone[i]);
        for (int k = 0; k < K; k++) {
            uint64_t seed = seeds[(size_t)j * K + k];
            TU_CHECK(seed == sampler_derive_seed(cont.run_seed, 77, (uint64_t)cuts[j], (uint64_t)k), "seed of %d/%d",
                     j, k);
            top_bit += seed >> 63;
            sampler_seed(smp, seed);
            decode_alone(m, ids, cuts[j], P, C, smp, alone);
            for (int i = 0; i < C; i++) bad += !tu_same_row(&samples[((size_t)j * K + k) * C + i], &alone[i]);
            checked++;
        }
    }
    fprintf(stderr, "%d cuts, %d samples regenerated alone (%d seeds with the top bit set), %d rows differ\n", nc,
            checked, top_bit, bad);
    TU_CHECK(bad == 0, "%d rows of the batched decode differ from decoding alone", bad);
    TU_CHECK(top_bit > 0 && top_bit < checked, "seeds with and without the top bit (%d of %d)", top_bit, checked);
    /* experiment_continue (one cut) is the same computation. */
    TU_REQUIRE(experiment_continue(e, ids, (int)n, cuts[nc - 1], 77, alone, samples, seeds, err, sizeof err) == 0,
               "%s", err);
    for (int i = 0; i < C; i++) TU_CHECK(tu_same_row(&alone[i], &human[(size_t)(nc - 1) * C + i]), "single cut row %d", i);
    sampler_destroy(&smp);
    experiment_destroy(&e);
    free(human), free(samples), free(alone), free(seeds), free(ids);
    model_destroy(&m);
    return tu_finish("test_continue");
}
