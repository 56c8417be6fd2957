/* score.c - see score.h. */
#include "score.h"

#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "runsettings.h"

int score_wire_settings(const runsettings_t *rs, wire_settings_t *s, int32_t *prefix_buf, char *err,
                        size_t errlen) {
    if (rs->n_prefix_lengths > WIRE_MAX_CUTS)
        return log_seterr(err, errlen, "%zu prefix lengths, at most %d", rs->n_prefix_lengths, WIRE_MAX_CUTS);
    /* (the other members, e.g. a --template's text, stay as the caller set them) */
    s->window = rs->window, s->stride = rs->stride, s->cut_every = rs->cut_every;
    s->cut_every_bytes = rs->cut_every_bytes, s->cont_len = rs->cont_len, s->n_samples = rs->n_samples;
    s->temperature = rs->temperature, s->top_k = rs->top_k, s->top_p = rs->top_p, s->seed = rs->seed;
    s->prefix_lengths = prefix_buf, s->n_prefix_lengths = rs->n_prefix_lengths;
    if (rs->n_prefix_lengths) memcpy(prefix_buf, rs->prefix_lengths, rs->n_prefix_lengths * sizeof *prefix_buf);
    return 0;
}

int score_settings(db_t *db, const char *src_name, wire_settings_t *s, int32_t *prefix_buf, char digest[65],
                   char *err, size_t errlen) {
    db_score_source_t src;
    runsettings_t rs = {0};
    char why[LOG_ERRLEN];
    int rc = -1;
    int f = db_score_source(db, src_name, &src, why, sizeof why);
    if (f) return log_seterr(err, errlen, "--score-run %s: %s", src_name, why);
    if (strcmp(src.status, "done")) {
        log_seterr(err, errlen, "--score-run %s: the run is %s, not done (its samples are not all stored)", src_name,
                   src.status);
        goto out;
    }
    if (!src.vocab_digest[0]) {
        log_seterr(err, errlen, "--score-run %s: the vocabulary of its model %s is not registered (a worker of that "
                   "run registers it when it has the database)", src_name, src.model_identity);
        goto out;
    }
    if (runsettings_parse(src.settings, &rs, why, sizeof why) ||
        score_wire_settings(&rs, s, prefix_buf, why, sizeof why)) {
        log_seterr(err, errlen, "--score-run %s: its settings are unreadable (%s)", src_name, why);
        goto out;
    }
    s->score_run = src.run_id, s->vocab_digest = digest;
    memcpy(digest, src.vocab_digest, 65);
    rc = 0;
out:
    runsettings_free(&rs);
    free(src.settings);
    return rc;
}

int score_attach(db_t *db, int64_t src, int64_t run_id, int64_t job_id, wire_doc_t *docs, size_t n, score_job_t *held,
                 char *err, size_t errlen) {
    memset(held, 0, sizeof *held);
    if (db_job_samples(db, src, run_id, job_id, &held->rows, &held->n_rows, err, errlen)) return -1;
    if (!(held->wire = calloc(held->n_rows ? held->n_rows : 1, sizeof *held->wire))) {
        score_release(held);
        return log_seterr(err, errlen, "out of memory for job %lld's samples", (long long)job_id);
    }
    /* Both lists are ordered by doc_id: one merge. */
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        while (k < held->n_rows && held->rows[k].doc_id < docs[i].doc_id) k++;
        docs[i].samples = held->wire + k;
        for (; k < held->n_rows && held->rows[k].doc_id == docs[i].doc_id; k++, docs[i].n_samples++) {
            const db_sample_t *r = &held->rows[k];
            held->wire[k] = (wire_sample_t){r->cut, r->sample_idx, r->seed, r->tokens, r->n_tokens};
        }
    }
    return 0;
}

void score_release(score_job_t *held) {
    if (!held) return;
    db_samples_free(held->rows, held->n_rows);
    free(held->wire);
    memset(held, 0, sizeof *held);
}
