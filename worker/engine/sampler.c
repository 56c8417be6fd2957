/* sampler.c - see sampler.h. */
#include "sampler.h"

#include <math.h>
#include <stdlib.h>

#include "log.h"

typedef struct {
    float logit;
    int32_t id;
} cand_t;

struct sampler {
    int n_vocab;
    sampler_params_t p;
    uint64_t s[4];
    cand_t *cand; /* [n_vocab] scratch: candidates for top-k / top-p, weights for plain temperature */
};

static uint64_t splitmix64(uint64_t *x) {
    uint64_t z = (*x += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

static uint64_t next_u64(sampler_t *r) {
    uint64_t *s = r->s, result = rotl(s[1] * 5, 7) * 9, t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return result;
}

void sampler_seed(sampler_t *r, uint64_t seed) {
    uint64_t x = seed;
    for (int i = 0; i < 4; i++) r->s[i] = splitmix64(&x);
}

double sampler_uniform(sampler_t *r) { return (double)(next_u64(r) >> 11) * 0x1.0p-53; }

uint64_t sampler_derive_seed(uint64_t run_seed, uint64_t doc, uint64_t cut, uint64_t sample) {
    uint64_t x = run_seed, h = splitmix64(&x);
    uint64_t parts[3] = {doc, cut, sample};
    for (int i = 0; i < 3; i++) {
        x = h ^ parts[i];
        h = splitmix64(&x);
    }
    return h;
}

sampler_t *sampler_new(int n_vocab, sampler_params_t p, uint64_t seed, char *err, size_t errlen) {
    if (n_vocab < 1 || !(p.temperature >= 0) || !isfinite(p.temperature) || p.top_k < 0 || !(p.top_p > 0) ||
        p.top_p > 1) {
        log_seterr(err, errlen, "sampler: invalid parameters (temperature %g, top-k %d, top-p %g)",
                   (double)p.temperature, p.top_k, (double)p.top_p);
        return NULL;
    }
    sampler_t *r = calloc(1, sizeof *r);
    _Static_assert(sizeof(cand_t) >= sizeof(double), "the scratch holds a double per id");
    if (!r || !(r->cand = malloc((size_t)n_vocab * sizeof *r->cand))) {
        free(r);
        log_seterr(err, errlen, "sampler: out of memory");
        return NULL;
    }
    r->n_vocab = n_vocab;
    r->p = p;
    sampler_seed(r, seed);
    return r;
}

void sampler_destroy(sampler_t **self_p) {
    if (!self_p || !*self_p) return;
    free((*self_p)->cand);
    free(*self_p);
    *self_p = NULL;
}

/* The largest logit (the first of equals; NaNs skipped unless l[0] is one,
 * as a running `>` comparison keeps them).  Eight running maxima first,
 * which the compiler keeps in vector lanes, then the first index holding
 * their maximum: the same answer as the one running comparison, several
 * times faster over a vocabulary. */
static float max_logit(const float *l, int n) {
    float m[8];
    for (int j = 0; j < 8; j++) m[j] = l[0];
    int i = 0;
    for (; i + 8 <= n; i += 8)
        for (int j = 0; j < 8; j++) m[j] = l[i + j] > m[j] ? l[i + j] : m[j];
    for (; i < n; i++) m[0] = l[i] > m[0] ? l[i] : m[0];
    float mx = m[0];
    for (int j = 1; j < 8; j++) mx = m[j] > mx ? m[j] : mx;
    return mx;
}

static int32_t argmax(const float *l, int n) {
    float mx = max_logit(l, n);
    for (int i = 0; i < n; i++)
        if (l[i] == mx) return i;
    return 0; /* mx is NaN: l[0] was */
}

/* The plain loop that argmax must equal (sampler_selftest). */
static int32_t argmax_plain(const float *l, int n) {
    int32_t best = 0;
    for (int i = 1; i < n; i++)
        if (l[i] > l[best]) best = i;
    return best;
}

static int cmp_cand(const void *a, const void *b) {
    const cand_t *x = a, *y = b;
    if (x->logit != y->logit) return x->logit > y->logit ? -1 : 1;
    return x->id < y->id ? -1 : x->id > y->id;
}

int32_t sampler_sample(sampler_t *r, const float *logits) {
    int n = r->n_vocab;
    float inv_t = r->p.temperature > 0 ? 1.0f / r->p.temperature : 0;
    if (r->p.temperature == 0) return argmax(logits, n);
    float mx = logits[argmax(logits, n)];
    if (r->p.top_k == 0 && r->p.top_p >= 1.0f) {
        /* Plain temperature: inverse-CDF over the vocabulary in id order,
         * each weight computed once (kept in the candidates' scratch, 8
         * bytes an id as a candidate is), summed in the same order twice. */
        double z = 0, *w = (double *)(void *)r->cand;
        for (int i = 0; i < n; i++) z += w[i] = exp((double)(logits[i] - mx) * inv_t);
        double u = sampler_uniform(r) * z, acc = 0;
        for (int i = 0; i < n; i++) {
            acc += w[i];
            if (u < acc) return i;
        }
        return argmax(logits, n); /* rounding left u == z: the mode */
    }
    for (int i = 0; i < n; i++) r->cand[i] = (cand_t){logits[i], i};
    qsort(r->cand, (size_t)n, sizeof *r->cand, cmp_cand);
    int k = r->p.top_k > 0 && r->p.top_k < n ? r->p.top_k : n;
    double z = 0;
    for (int i = 0; i < k; i++) z += exp((double)(r->cand[i].logit - mx) * inv_t);
    if (r->p.top_p < 1.0f) {
        double acc = 0;
        int keep = k;
        for (int i = 0; i < k; i++) {
            acc += exp((double)(r->cand[i].logit - mx) * inv_t) / z;
            if (acc >= r->p.top_p) {
                keep = i + 1;
                break;
            }
        }
        k = keep;
        z = 0;
        for (int i = 0; i < k; i++) z += exp((double)(r->cand[i].logit - mx) * inv_t);
    }
    double u = sampler_uniform(r) * z, acc = 0;
    for (int i = 0; i < k; i++) {
        acc += exp((double)(r->cand[i].logit - mx) * inv_t);
        if (u < acc) return r->cand[i].id;
    }
    return r->cand[0].id;
}

int sampler_selftest(void) {
    /* Derived seeds differ in each coordinate and repeat exactly. */
    if (sampler_derive_seed(1, 2, 3, 4) != sampler_derive_seed(1, 2, 3, 4)) return -1;
    if (sampler_derive_seed(1, 2, 3, 4) == sampler_derive_seed(1, 2, 4, 3)) return -1;
    if (sampler_derive_seed(1, 2, 3, 4) == sampler_derive_seed(2, 2, 3, 4)) return -1;
    /* Uniforms stay in [0, 1). */
    char err[LOG_ERRLEN];
    sampler_t *r = sampler_new(4, (sampler_params_t){1.0f, 0, 1.0f}, 7, err, sizeof err);
    if (!r) return -1;
    int ok = 1;
    for (int i = 0; i < 10000 && ok; i++) {
        double u = sampler_uniform(r);
        ok = u >= 0 && u < 1;
    }
    sampler_destroy(&r);
    /* argmax equals the running comparison: ties (the first wins), the
     * maximum in the tail past the last 8, signed zeros, NaNs. */
    float l[21];
    for (int t = 0; t < 200 && ok; t++) {
        uint64_t x = (uint64_t)t;
        int n = 1 + t % 21;
        for (int i = 0; i < n; i++) l[i] = (float)(splitmix64(&x) % 5) - 2.0f;
        if (t % 7 == 1) l[splitmix64(&x) % (uint64_t)n] = -0.0f;
        if (t % 11 == 2) l[splitmix64(&x) % (uint64_t)n] = NAN;
        ok = argmax(l, n) == argmax_plain(l, n);
    }
    return ok ? 0 : -1;
}
