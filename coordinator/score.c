/* score.c - see score.h. */
#include "score.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"

int score_parse_settings(const char *json, wire_settings_t *s, int32_t *prefix_buf, char *err, size_t errlen) {
    json_error_t je;
    json_t *pl = NULL;
    json_int_t seed = 0;
    double temp = 0, top_p = 0;
    json_t *j = json_loads(json, 0, &je);
    if (!j || json_unpack_ex(j, &je, 0, "{s:i, s:i, s:o, s:i, s:i, s:i, s:F, s:i, s:F, s:I}", "window", &s->window,
                             "stride", &s->stride, "prefix_lengths", &pl, "cut_every", &s->cut_every, "cont_len",
                             &s->cont_len, "samples", &s->n_samples, "temperature", &temp, "top_k", &s->top_k,
                             "top_p", &top_p, "seed", &seed) ||
        !json_is_array(pl) || json_array_size(pl) > WIRE_MAX_CUTS) {
        json_decref(j);
        return log_seterr(err, errlen, "its settings are unreadable (%s)", je.text);
    }
    s->n_prefix_lengths = json_array_size(pl);
    s->prefix_lengths = prefix_buf;
    for (size_t i = 0; i < s->n_prefix_lengths; i++)
        prefix_buf[i] = (int32_t)json_integer_value(json_array_get(pl, i));
    /* (a key of runs cut by bytes only) */
    json_t *ceb = json_object_get(j, "cut_every_bytes");
    s->cut_every_bytes = json_is_integer(ceb) ? (int32_t)json_integer_value(ceb) : 0;
    s->temperature = (float)temp;
    s->top_p = (float)top_p;
    s->seed = (uint64_t)seed;
    json_decref(j);
    return 0;
}

int score_settings(db_t *db, const char *src_name, wire_settings_t *s, int32_t *prefix_buf, char digest[65],
                   char *err, size_t errlen) {
    db_score_source_t src;
    int rc = -1;
    int f = db_score_source(db, src_name, &src, err, errlen);
    if (f) return f == 1 ? log_seterr(err, errlen, "--score-run %s: no such run", src_name) : -1;
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
    char why[LOG_ERRLEN];
    if (score_parse_settings(src.settings, s, prefix_buf, why, sizeof why)) {
        log_seterr(err, errlen, "--score-run %s: %s", src_name, why);
        goto out;
    }
    s->score_run = src.run_id;
    memcpy(digest, src.vocab_digest, 65);
    s->vocab_digest = digest;
    rc = 0;
out:
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
