/* test_forward.c - the forward pass on the real stories260K model:
 * BLAS path vs reference path, one prefill vs token-by-token decode, batched
 * decode over several slots vs each slot alone, windowed scoring (each token
 * exactly once, context_len right, short texts identical), and the
 * statistics under different summation orders (one GEMM per window, chunks
 * of prime sizes, row by row, the reference kernels); an observer given a
 * generator's samples (experiment_observe): the same model reproduces the
 * generator's rows bit for bit, a perturbed copy scores the same tokens
 * differently.
 *
 * Every comparison of two paths allows what the arithmetic allows and no
 * more: errbound.h bounds, per logit and per statistic, how far any fp32
 * evaluation of this model on this text can be from the exact value
 * (gamma_k of each product's magnitudes through the model's dimensions and
 * layers), and two paths may differ by twice that. */
#include <math.h>
#include <stdlib.h>
#include <unistd.h>

#include "errbound.h"
#include "experiment.h"
#include "forward.h"
#include "log.h"
#include "loader.h"
#include "model.h"
#include "randmodel.h"
#include "testutil.h"

static char err[LOG_ERRLEN];

static double max_diff(const float *a, const float *b, size_t n) {
    double w = 0;
    for (size_t i = 0; i < n; i++) w = fmax(w, fabs((double)a[i] - b[i]));
    return w;
}

/* The largest |a_i - b_i| / (2 e_i): two fp32 evaluations, each within e_i
 * of the exact logit, are within 2 e_i of each other; > 1 fails. */
static double max_ratio(const float *a, const float *b, const double *e, size_t n) {
    double w = 0;
    for (size_t i = 0; i < n; i++) w = fmax(w, fabs((double)a[i] - b[i]) / (2 * e[i]));
    return w;
}

/* The same for rows of statistics with per-row bounds (eb_score). */
static double stats_ratio(const experiment_row_t *a, const experiment_row_t *b, const eb_stats_t *e, long n) {
    double w = 0;
    for (long i = 0; i < n; i++) {
        w = fmax(w, fabs(a[i].st.logprob - b[i].st.logprob) / (2 * e[i].logprob));
        w = fmax(w, fabs(a[i].st.entropy - b[i].st.entropy) / (2 * e[i].entropy));
        w = fmax(w, fabs(a[i].st.top1_logprob - b[i].st.top1_logprob) / (2 * e[i].top1_logprob));
        w = fmax(w, fabs(a[i].st.varentropy - b[i].st.varentropy) / (2 * e[i].varentropy));
    }
    return w;
}

static const char *g_text =
    "Once upon a time, there was a little dog named Max. Max liked to run in the big green park with his friend, a "
    "small cat called Lily. One day, the sun was hot and Max was thirsty. He saw a pond and ran to drink. Lily said, "
    "\"Be careful, Max! The water is deep.\" Max did not listen. He jumped in and splashed all around. Then he felt "
    "scared because he could not touch the ground. Lily ran to get help from a kind old man. The man pulled Max out "
    "of the water. Max was wet and cold, but he was safe. He said sorry to Lily and they went home together. From "
    "that day on, Max always listened to his friend. They played in the park every day and were very happy.";

int main(void) {
    model_t *m = loader_load(tu_testdata("models/stories260K.gguf"), err, sizeof err);
    TU_REQUIRE(m, "%s", err);
    int V = m->cfg.n_vocab;
    int32_t *ids = NULL;
    long n = tokenizer_encode(m->tok, g_text, strlen(g_text), 1, &ids, err, sizeof err);
    TU_REQUIRE(n > 150, "encode gave %ld tokens", n);
    fprintf(stderr, "text: %ld tokens\n", n);

    /* The bounds: every logit of the whole text, and of the text's first 40
     * ids followed by each of the four tokens of part 3. */
    double *ex_l = malloc(sizeof(double) * n * V), *ex_e = malloc(sizeof(double) * n * V);
    TU_REQUIRE(eb_forward(m, ids, (int)n, ex_l, ex_e, NULL) == 0, "bounded forward");
    double emax = 0;
    for (size_t i = 0; i < (size_t)n * V; i++) emax = fmax(emax, ex_e[i]);
    fprintf(stderr, "bound on an fp32 logit's error: up to %.3g\n", emax);

    /* 1. Prefill vs reference prefill, by both paths of a prefill's
     * products (cblas_sgemm, and the weights streamed through smallm):
     * forward_stream_prefill_default picks one per machine, so both are
     * checked on every machine; the default's logits go on. */
    forward_t *fb = forward_new(m, (int)n, (int)n, 4, err, sizeof err);
    forward_t *fr = forward_new(m, (int)n, (int)n, 1, err, sizeof err);
    TU_REQUIRE(fb && fr, "%s", err);
    forward_set_reference(fr, 1);
    TU_REQUIRE(forward_prefill(fr, 0, ids, (int)n, 0, err, sizeof err) == 0, "%s", err);
    float *full = malloc(sizeof(float) * n * V);
    int dflt = forward_stream_prefill_default();
    for (int pass = 0; pass < 2; pass++) {
        int stream = pass ? dflt : !dflt;
        forward_set_stream_prefill(fb, stream);
        TU_REQUIRE(forward_prefill(fb, 0, ids, (int)n, 0, err, sizeof err) == 0, "%s", err);
        memcpy(full, forward_logits(fb), sizeof(float) * n * V);
        double d = max_diff(full, forward_logits(fr), (size_t)n * V);
        double q = max_ratio(full, forward_logits(fr), ex_e, (size_t)n * V);
        fprintf(stderr, "%s vs reference prefill%s: max |dlogit| %.3g, %.3g of the bound\n",
                stream ? "streamed" : "BLAS", pass ? " (this machine's default)" : "", d, q);
        TU_CHECK(q <= 1, "%s vs reference logits differ by %g of the bound", stream ? "streamed" : "BLAS", q);
    }

    /* 2. Token-by-token decode (one-row batches) reproduces the prefill. */
    double worst = 0;
    for (int t = 0; t < n; t++) {
        TU_REQUIRE(forward_batch(fb, &ids[t], NULL, &t, 1, 1, err, sizeof err) == 0, "%s", err);
        worst = fmax(worst, max_ratio(forward_logits(fb), full + (size_t)t * V, ex_e + (size_t)t * V, V));
    }
    fprintf(stderr, "decode vs prefill: %.3g of the bound\n", worst);
    TU_CHECK(worst <= 1, "decode vs prefill differ by %g of the bound", worst);

    /* 3. Batched decode over slots sharing a copied prefix equals each slot
     * run alone. */
    int P = 40;
    TU_REQUIRE(forward_prefill(fb, 0, ids, P, 0, err, sizeof err) == 0, "%s", err);
    for (int s = 1; s < 4; s++) forward_copy_slot(fb, 0, s, P);
    int32_t next[4] = {ids[P], 5, 300, 77};
    int slots[4] = {0, 1, 2, 3}, pos[4] = {P, P, P, P};
    TU_REQUIRE(forward_batch(fb, next, slots, pos, 4, 1, err, sizeof err) == 0, "%s", err);
    float *batched = malloc(sizeof(float) * 4 * V);
    memcpy(batched, forward_logits(fb), sizeof(float) * 4 * V);
    int32_t *alt = malloc(sizeof(int32_t) * (P + 1));
    double *al = malloc(sizeof(double) * (P + 1) * V), *ae = malloc(sizeof(double) * (P + 1) * V);
    memcpy(alt, ids, sizeof(int32_t) * P);
    for (int s = 0; s < 4; s++) {
        TU_REQUIRE(forward_prefill(fr, 0, ids, P, 0, err, sizeof err) == 0, "%s", err);
        TU_REQUIRE(forward_batch(fr, &next[s], NULL, &pos[s], 1, 1, err, sizeof err) == 0, "%s", err);
        alt[P] = next[s];
        TU_REQUIRE(eb_forward(m, alt, P + 1, al, ae, NULL) == 0, "bounded forward");
        double ds = max_ratio(batched + (size_t)s * V, forward_logits(fr), ae + (size_t)P * V, V);
        TU_CHECK(ds <= 1, "slot %d batched vs alone differ by %g of the bound", s, ds);
    }
    TU_CHECK(max_ratio(batched, full + (size_t)P * V, ex_e + (size_t)P * V, V) <= 1, "slot 0 continues the text");
    free(alt), free(al), free(ae);

    /* Out-of-range inputs are errors, not crashes. */
    int32_t bad = V;
    int p0 = 0, far = (int)n;
    TU_CHECK(forward_batch(fb, &bad, NULL, &p0, 1, 1, err, sizeof err) == -1 && strstr(err, "vocabulary"), "%s", err);
    TU_CHECK(forward_batch(fb, ids, NULL, &far, 1, 1, err, sizeof err) == -1 && strstr(err, "context"), "%s", err);

    /* 4. Windowed scoring. A text shorter than the window: identical rows for
     * any window >= n. */
    experiment_row_t *r1 = calloc(n, sizeof *r1), *r2 = calloc(n, sizeof *r2);
    experiment_t *e1 = experiment_new(m, 2048, 512, NULL, err, sizeof err), *e2 = experiment_new(m, (int)n + 1, 512, NULL, err, sizeof err);
    TU_REQUIRE(e1 && e2, "%s", err);
    TU_REQUIRE(experiment_score(e1, ids, (int)n, 1024, r1, err, sizeof err) == n - 1, "%s", err);
    TU_REQUIRE(experiment_score(e2, ids, (int)n, 1, r2, err, sizeof err) == n - 1, "%s", err);
    int identical = 1;
    for (long i = 0; i < n - 1; i++)
        identical &= r1[i].pos == r2[i].pos && r1[i].st.logprob == r2[i].st.logprob &&
                     r1[i].st.entropy == r2[i].st.entropy && r1[i].st.context_len == r2[i].st.context_len;
    TU_CHECK(identical, "short text: windowed and unwindowed rows must be identical");
    for (long i = 0; i < n - 1; i++) TU_CHECK(r1[i].st.context_len == i + 1, "context_len at %ld", i + 1);

    /* A longer text: windows of W with stride S. Every token 1..n-1 exactly
     * once, context_len = t - (start of the first window that reaches t),
     * which is >= W - S after the first window. */
    eb_stats_t *eb = malloc(sizeof *eb * n); /* the first 64 tokens: every first window's */
    TU_REQUIRE(eb_score(m, ids, 64, 64, 1, eb) == 0, "bounded scoring");
    int cases[][2] = {{64, 16}, {64, 63}, {50, 25}, {33, 1}};
    for (size_t c = 0; c < sizeof cases / sizeof *cases; c++) {
        int W = cases[c][0], S = cases[c][1];
        experiment_t *ew = experiment_new(m, W, 24, NULL, err, sizeof err);
        TU_REQUIRE(ew, "%s", err);
        for (long i = 0; i < n - 1; i++) r2[i].pos = -1;
        TU_REQUIRE(experiment_score(ew, ids, (int)n, S, r2, err, sizeof err) == n - 1, "%s", err);
        for (long t = 1; t < n; t++) {
            const experiment_row_t *r = &r2[t - 1];
            long b = 0;
            while (b + W <= t) b += S; /* first window whose end passes t */
            TU_CHECK(r->pos == t && r->token == ids[t], "W=%d S=%d: row for %ld", W, S, t);
            TU_CHECK(r->st.context_len == t - b, "W=%d S=%d: context_len at %ld is %d, expected %ld", W, S, t,
                     r->st.context_len, t - b);
            TU_CHECK(t < W || r->st.context_len >= W - S, "W=%d S=%d: context %d < W-S", W, S, r->st.context_len);
            if (t < W) /* inside the first window: the same exact numbers as unwindowed, other GEMM shapes */
                TU_CHECK(fabs(r->st.logprob - r1[t - 1].st.logprob) <= 2 * eb[t - 1].logprob,
                         "first window at %ld: %g apart, bound 2 x %g", t, fabs(r->st.logprob - r1[t - 1].st.logprob),
                         eb[t - 1].logprob);
        }
        TU_CHECK(experiment_score(ew, ids, (int)n, W, r2, err, sizeof err) == -1 && strstr(err, "stride"),
                 "stride >= window rejected");
        experiment_destroy(&ew);
    }

    /* 5. The statistics under different summation orders: windows of 64
     * with stride 16, each window as one GEMM, in chunks of 7 or 13 rows,
     * row by row (sgemv, one-row attention), and by the reference kernels
     * (double sums); every pair within twice the bound of each row. */
    TU_REQUIRE(eb_score(m, ids, (int)n, 64, 16, eb) == 0, "bounded scoring");
    int batches[] = {64, 7, 13, 1, 64};
    experiment_row_t *orders[5];
    for (int k = 0; k < 5; k++) {
        experiment_t *ek = experiment_new(m, 64, batches[k], NULL, err, sizeof err);
        TU_REQUIRE(ek, "%s", err);
        experiment_set_reference(ek, k == 4);
        orders[k] = calloc(n, sizeof **orders);
        TU_REQUIRE(experiment_score(ek, ids, (int)n, 16, orders[k], err, sizeof err) == n - 1, "%s", err);
        experiment_destroy(&ek);
    }
    const char *names[] = {"one GEMM", "chunks of 7", "chunks of 13", "row by row", "reference"};
    double ebmax = 0;
    for (long i = 0; i < n - 1; i++) ebmax = fmax(ebmax, eb[i].logprob);
    for (int a = 0; a < 5; a++)
        for (int b = 0; b < a; b++) {
            double qab = stats_ratio(orders[a], orders[b], eb, n - 1);
            fprintf(stderr, "statistics, %s vs %s: %.3g of the bound\n", names[a], names[b], qab);
            TU_CHECK(qab <= 1, "%s vs %s: statistics differ by %g of the bound", names[a], names[b], qab);
        }
    fprintf(stderr, "bound on an fp32 logprob's error: up to %.3g nats\n", ebmax);
    for (int k = 0; k < 5; k++) free(orders[k]);
    free(eb), free(ex_l), free(ex_e);

    /* 6. Observer = generator: continuations at two cuts, 4 samples of 12
     * tokens each, then the same tokens given to experiment_observe: the
     * same batch layout, so the same bits in every statistic (no tolerance:
     * the arithmetic is the same, operation for operation).  A copy with
     * noise on its weights (sigma 0.1 of each tensor's RMS) sees the same
     * tokens with the same context but other probabilities. */
    {
        enum { C = 12, K = 4 };
        experiment_cont_t cont = {C, K, {1.0f, 0, 1.0f}, 12345};
        experiment_t *eg = experiment_new(m, 64, EXPERIMENT_BATCH, &cont, err, sizeof err);
        TU_REQUIRE(eg, "%s", err);
        char path[] = "/tmp/test_forward_XXXXXX";
        int fd = mkstemp(path);
        TU_REQUIRE(fd >= 0, "mkstemp");
        close(fd);
        TU_REQUIRE(rm_copy_f32(tu_testdata("models/stories260K.gguf"), path, 0.1, 7, err, sizeof err) == 0, "%s", err);
        model_t *mp = loader_load(path, err, sizeof err);
        unlink(path);
        TU_REQUIRE(mp, "%s", err);
        experiment_t *ep = experiment_new(mp, 64, EXPERIMENT_BATCH, &cont, err, sizeof err);
        TU_REQUIRE(ep, "%s", err);
        experiment_row_t gen[(K + 1) * C], obs[(K + 1) * C], per[(K + 1) * C];
        uint64_t seeds[K];
        int32_t toks[K * C];
        int cuts[] = {16, 70};
        int32_t toks2[2 * K * C];
        experiment_row_t obs2[2 * (K + 1) * C], both[2 * (K + 1) * C]; /* humans, then samples */
        for (int j = 0; j < 2; j++) {
            TU_REQUIRE(experiment_continue(eg, ids, (int)n, cuts[j], 3, gen, gen + C, seeds, err, sizeof err) == 0,
                       "%s", err);
            for (int i = 0; i < K * C; i++) toks[i] = gen[C + i].token;
            memset(obs, 0xa5, sizeof obs);
            TU_REQUIRE(experiment_observe(eg, ids, (int)n, &cuts[j], 1, toks, obs, obs + C, err, sizeof err) == 0,
                       "%s", err);
            TU_REQUIRE(experiment_observe(ep, ids, (int)n, &cuts[j], 1, toks, per, per + C, err, sizeof err) == 0,
                       "%s", err);
            memcpy(toks2 + j * K * C, toks, sizeof toks);
            memcpy(obs2 + j * C, obs, sizeof(experiment_row_t) * C);
            memcpy(obs2 + 2 * C + j * K * C, obs + C, sizeof(experiment_row_t) * K * C);
            int same = 0, differ = 0;
            for (int i = 0; i < (K + 1) * C; i++) {
                const experiment_row_t *a = &gen[i], *b = &obs[i];
                same += a->pos == b->pos && a->token == b->token && a->st.context_len == b->st.context_len &&
                        a->st.rank == b->st.rank && !memcmp(&a->st.logprob, &b->st.logprob, sizeof a->st.logprob) &&
                        !memcmp(&a->st.entropy, &b->st.entropy, sizeof a->st.entropy) &&
                        !memcmp(&a->st.top1_logprob, &b->st.top1_logprob, sizeof a->st.top1_logprob) &&
                        !memcmp(&a->st.varentropy, &b->st.varentropy, sizeof a->st.varentropy);
                differ += per[i].token == gen[i].token && per[i].pos == gen[i].pos &&
                          per[i].st.context_len == gen[i].st.context_len && per[i].st.logprob != gen[i].st.logprob;
            }
            fprintf(stderr, "observer at cut %d: %d of %d rows identical to the generator's; perturbed model: %d "
                            "differ\n", cuts[j], same, (K + 1) * C, differ);
            TU_CHECK(same == (K + 1) * C, "cut %d: the same model observing its samples changed %d rows", cuts[j],
                     (K + 1) * C - same);
            TU_CHECK(differ == (K + 1) * C, "cut %d: the perturbed model scored %d rows like the generator", cuts[j],
                     (K + 1) * C - differ);
        }
        /* Both cuts observed together (as the worker does): each cut's rows
         * as observed alone, bit for bit. */
        memset(both, 0x5a, sizeof both);
        TU_REQUIRE(experiment_observe(eg, ids, (int)n, cuts, 2, toks2, both, both + 2 * C, err, sizeof err) == 0, "%s",
                   err);
        int together = 1;
        for (int i = 0; i < 2 * (K + 1) * C; i++)
            together &= both[i].pos == obs2[i].pos && both[i].token == obs2[i].token &&
                        both[i].st.context_len == obs2[i].st.context_len && both[i].st.rank == obs2[i].st.rank &&
                        !memcmp(&both[i].st.logprob, &obs2[i].st.logprob, sizeof both[i].st.logprob) &&
                        !memcmp(&both[i].st.entropy, &obs2[i].st.entropy, sizeof both[i].st.entropy) &&
                        !memcmp(&both[i].st.varentropy, &obs2[i].st.varentropy, sizeof both[i].st.varentropy);
        TU_CHECK(together, "two cuts observed together differ from each observed alone");
        toks[5] = V; /* outside the vocabulary: refused */
        TU_CHECK(experiment_observe(eg, ids, (int)n, cuts, 1, toks, obs, obs + C, err, sizeof err) == -1 &&
                     strstr(err, "outside the vocabulary"),
                 "a token outside the vocabulary was observed: %s", err);
        experiment_destroy(&ep);
        model_destroy(&mp);
        experiment_destroy(&eg);
    }

    experiment_destroy(&e1);
    experiment_destroy(&e2);
    free(r1), free(r2), free(full), free(batched), free(ids);
    forward_destroy(&fb);
    forward_destroy(&fr);
    model_destroy(&m);
    return tu_finish("test_forward");
}
