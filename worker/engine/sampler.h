/* sampler.h - seeded, reproducible sampling of the next token.
 *
 * What it is: temperature (0 = greedy argmax), optional top-k and top-p
 * (applied in that order after temperature, as Hugging Face's generate does),
 * driven by xoshiro256** so that one seed gives one token sequence on every
 * machine.  What it is not: the statistics recorded for a sampled token
 * (stats.c computes those from the untempered logits). */
#ifndef TS_SAMPLER_H
#define TS_SAMPLER_H

#include <stddef.h>
#include <stdint.h>

typedef struct {
    float temperature; /* 0 = greedy; > 0 scales logits by 1/T */
    int top_k;         /* 0 = off */
    float top_p;       /* 1 = off; keep the smallest set with mass >= top_p */
} sampler_params_t;

typedef struct sampler sampler_t;

/* Creates a sampler for n_vocab logits.  Returns NULL with a message for
 * invalid parameters (negative temperature, top_p outside (0, 1]) or when
 * memory runs out.  Free with sampler_destroy. */
sampler_t *sampler_new(int n_vocab, sampler_params_t params, uint64_t seed, char *err, size_t errlen);

/* NULL-safe; clears *self_p. */
void sampler_destroy(sampler_t **self_p);

/* Restarts the random stream from seed. */
void sampler_seed(sampler_t *self, uint64_t seed);

/* Draws the next token from logits[n_vocab].  Never allocates. */
int32_t sampler_sample(sampler_t *self, const float *logits);

/* A uniform double in [0, 1) from the sampler's stream. */
double sampler_uniform(sampler_t *self);

/* Mixes a run seed and the coordinates of one sample (document, cut point,
 * sample index) into that sample's seed, so that any sequence can be
 * regenerated alone.  Pure function (splitmix64 finalisers). */
uint64_t sampler_derive_seed(uint64_t run_seed, uint64_t doc, uint64_t cut, uint64_t sample);

int sampler_selftest(void);

#endif
