/* test_sampler.c - the sampler's distribution, tested as statistics.
 *
 * The seed changes every run (printed, so a failure can be replayed with
 * TOKSHIFT_TEST_SEED).  Tolerance: each category's count must lie within 5
 * binomial standard deviations of N p (false alarm < 1e-6 per category), and
 * the mean surprisal of samples within 5 standard errors of the entropy. */
#include <math.h>
#include <time.h>
#include <unistd.h>

#include "log.h"
#include "sampler.h"
#include "stats.h"
#include "testutil.h"

enum { V = 6, N = 200000 };
static const float logits[V] = {1.0f, 2.5f, 0.0f, -1.0f, 2.0f, 0.5f};
static char err[LOG_ERRLEN];

/* Draws N samples and checks counts against probabilities p (0 = excluded). */
static void check_dist(sampler_params_t sp, uint64_t seed, const double *p, const char *what) {
    sampler_t *s = sampler_new(V, sp, seed, err, sizeof err);
    TU_REQUIRE(s, "%s", err);
    long count[V] = {0};
    for (int i = 0; i < N; i++) count[sampler_sample(s, logits)]++;
    for (int k = 0; k < V; k++) {
        double expect = N * p[k], sd = sqrt(N * p[k] * (1 - p[k]));
        if (p[k] == 0) TU_CHECK(count[k] == 0, "%s: token %d excluded but drawn %ld times", what, k, count[k]);
        else TU_CHECK(fabs(count[k] - expect) <= 5 * sd, "%s: token %d drawn %ld times, expected %.0f +- %.0f", what, k,
                      count[k], expect, sd);
    }
    sampler_destroy(&s);
}

static void softmax_t(double t, const int *keep, double *p) {
    double z = 0;
    for (int k = 0; k < V; k++) z += keep[k] ? exp(logits[k] / t) : 0;
    for (int k = 0; k < V; k++) p[k] = keep[k] ? exp(logits[k] / t) / z : 0;
}

int main(void) {
    const char *env = getenv("TOKSHIFT_TEST_SEED");
    uint64_t seed = env ? strtoull(env, NULL, 10) : (uint64_t)time(NULL) ^ ((uint64_t)getpid() << 20);
    fprintf(stderr, "seed %llu (set TOKSHIFT_TEST_SEED to replay)\n", (unsigned long long)seed);
    double p[V];
    int all[V] = {1, 1, 1, 1, 1, 1};

    softmax_t(1.0, all, p);
    check_dist((sampler_params_t){1.0f, 0, 1.0f}, seed, p, "T=1");
    softmax_t(0.5, all, p);
    check_dist((sampler_params_t){0.5f, 0, 1.0f}, seed + 1, p, "T=0.5");
    softmax_t(2.0, all, p);
    check_dist((sampler_params_t){2.0f, 0, 1.0f}, seed + 2, p, "T=2");
    int top2[V] = {0, 1, 0, 0, 1, 0};
    softmax_t(1.0, top2, p);
    check_dist((sampler_params_t){1.0f, 2, 1.0f}, seed + 3, p, "top-k 2");
    /* top-p 0.8 at T=1: sorted probs .43 .26 .16 .10 ...: keep the first 3. */
    int nuc[V] = {1, 1, 0, 0, 1, 0};
    softmax_t(1.0, all, p);
    TU_REQUIRE(p[1] + p[4] < 0.8 && p[1] + p[4] + p[0] >= 0.8, "test premise: nucleus is {1, 4, 0}");
    softmax_t(1.0, nuc, p);
    check_dist((sampler_params_t){1.0f, 0, 0.8f}, seed + 4, p, "top-p 0.8");

    /* Greedy is the argmax; the same seed repeats the same stream. */
    sampler_t *a = sampler_new(V, (sampler_params_t){0, 0, 1}, seed, err, sizeof err);
    TU_CHECK(sampler_sample(a, logits) == 1, "greedy");
    sampler_destroy(&a);
    a = sampler_new(V, (sampler_params_t){1, 0, 1}, seed, err, sizeof err);
    sampler_t *b = sampler_new(V, (sampler_params_t){1, 0, 1}, seed, err, sizeof err);
    int same = 1;
    for (int i = 0; i < 1000; i++) same &= sampler_sample(a, logits) == sampler_sample(b, logits);
    TU_CHECK(same, "same seed, same stream");
    sampler_destroy(&a);
    sampler_destroy(&b);
    TU_CHECK(!sampler_new(V, (sampler_params_t){-1, 0, 1}, 0, err, sizeof err), "negative temperature rejected");
    TU_CHECK(!sampler_new(V, (sampler_params_t){1, 0, 0}, 0, err, sizeof err), "top-p 0 rejected");

    /* The law of DESIGN.md section 1 in miniature: samples at T=1 have mean
     * surprisal equal to the entropy, within 5 standard errors. */
    enum { BIG = 1000 };
    float *l = malloc(sizeof(float) * BIG);
    uint64_t r = seed;
    for (int i = 0; i < BIG; i++) {
        r = r * 6364136223846793005ULL + 1442695040888963407ULL;
        l[i] = (float)(4.0 * (double)(r >> 11) * 0x1.0p-53);
    }
    sampler_t *s = sampler_new(BIG, (sampler_params_t){1, 0, 1}, seed + 5, err, sizeof err);
    double sum = 0, sum2 = 0;
    stats_t st;
    for (int i = 0; i < 50000; i++) {
        int32_t tok = sampler_sample(s, l);
        stats_compute(l, BIG, tok, &st, err, sizeof err);
        double gap = -st.logprob - st.entropy;
        sum += gap, sum2 += gap * gap;
    }
    double mean = sum / 50000, se = sqrt((sum2 / 50000 - mean * mean) / 50000);
    fprintf(stderr, "mean gap of samples %.5f (se %.5f)\n", mean, se);
    TU_CHECK(fabs(mean) <= 5 * se, "mean gap %g exceeds 5 se %g", mean, se);
    sampler_destroy(&s);
    free(l);
    return tu_finish("test_sampler");
}
