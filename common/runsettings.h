/* runsettings.h - a run's settings (runs.settings) parsed from their JSON.
 *
 * What it is: the one parser of the canonical JSON the coordinator stores
 * for a run and sends to every worker (window, stride, prefix_lengths,
 * cut_every, cut_every_bytes when cuts are placed in bytes, cont_len,
 * samples, temperature, top_k, top_p, seed, and template when the run has a
 * chat template), with each value checked against its range.  Its callers:
 * the coordinator taking a generator run's settings for a cross-scoring run
 * (coordinator/score.c) and the CLI reproducing what a run's workers
 * computed (cli/runset.c).
 *
 * What it is not: database access (common/db*.c reads the text), nor the
 * conversion into a consumer's types (wire or engine settings). */
#ifndef TS_RUNSETTINGS_H
#define TS_RUNSETTINGS_H

#include <stddef.h>
#include <stdint.h>

typedef struct {
    int32_t window, stride, cut_every, cut_every_bytes; /* cut_every_bytes 0 when absent */
    int32_t cont_len, n_samples, top_k;
    float temperature, top_p;
    uint64_t seed;            /* the stored integer's bits */
    int32_t *prefix_lengths;  /* malloc'd, n_prefix_lengths entries */
    size_t n_prefix_lengths;
    char *chat_template;      /* the template file's text (malloc'd), NULL: none */
} runsettings_t;

/* Parses settings JSON into *out.  Returns 0, or -1 with a message naming
 * the key that is missing or out of range ("run settings: ...").  Free with
 * runsettings_free (also after a failure). */
int runsettings_parse(const char *json, runsettings_t *out, char *err, size_t errlen);

/* Frees what *s owns and zeroes it; NULL-safe. */
void runsettings_free(runsettings_t *s);

#endif
