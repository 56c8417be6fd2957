/* load.c - see load.h. */
#include "load.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fault.h"
#include "log.h"
#include "now.h"

typedef enum { PHASE_READ, PHASE_SEND, PHASE_ANALYZE, PHASE_DONE } phase_t;

struct load {
    db_t *db;
    int64_t run_id;
    corpus_t *cp;
    long job_docs, job_bytes;
    int64_t skip;               /* documents still to read past (loaded before) */
    int64_t next_doc, next_job; /* the committed position */
    phase_t phase;
    int eof;
    /* the batch being read, then sent */
    corpus_doc_t *docs;
    size_t n, cap, bytes, sent;
    db_loader_t *ld;
    int64_t job_id, job_b; /* the job being filled while sending */
    int job_n;
    int64_t usable, usable_bytes;
    /* ANALYZE when the run's documents have doubled since the last one */
    int64_t analyzed_docs;
    int64_t batches;
    double t0;
};

load_t *load_new(db_t *db, int64_t run_id, corpus_t *corpus, int64_t next_doc, int64_t next_job, long job_docs,
                 long job_bytes, char *err, size_t errlen) {
    load_t *l = calloc(1, sizeof *l);
    if (!l) {
        corpus_destroy(&corpus);
        log_seterr(err, errlen, "out of memory");
        return NULL;
    }
    *l = (load_t){.db = db, .run_id = run_id, .cp = corpus, .job_docs = job_docs, .job_bytes = job_bytes,
                  .skip = next_doc, .next_doc = next_doc, .next_job = next_job, .t0 = now_s()};
    /* (analyzed_docs starts at 0: a continued load analyzes at its first
     * commit too, since the statistics may predate what was loaded before
     * the crash.) */
    return l;
}

void load_destroy(load_t **self_p) {
    if (!self_p || !*self_p) return;
    load_t *l = *self_p;
    db_loader_abort(&l->ld);
    for (size_t i = 0; i < l->n; i++) corpus_doc_clear(&l->docs[i]);
    free(l->docs);
    corpus_destroy(&l->cp);
    free(l);
    *self_p = NULL;
}

/* FNV-1a, for the batch's hash set of ids. */
static uint64_t hash_str(const char *s) {
    uint64_t h = 14695981039346656037ull;
    for (; *s; s++) h = (h ^ (unsigned char)*s) * 1099511628211ull;
    return h;
}

/* Turns docs[i] into the duplicate of a document first seen at first_source:
 * no text, an error that says where the first is. */
static int mark_duplicate(corpus_doc_t *d, const char *first_source, char *err, size_t errlen) {
    size_t n = strlen(d->ext_id) + strlen(first_source) + 64;
    char *e = malloc(n);
    if (!e) return log_seterr(err, errlen, "out of memory");
    snprintf(e, n, "duplicate document id %s (first at %s)", d->ext_id, first_source);
    free(d->text);
    d->text = NULL;
    d->text_len = 0;
    d->error = e;
    return 0;
}

/* Finds the batch's duplicate ids: later ones within the batch (a hash set
 * of the batch's usable ids), then those that a usable document of an
 * earlier batch has (the index).  Linear in the batch. */
static int dedup(load_t *l, char *err, size_t errlen) {
    size_t cap = 16;
    while (cap < 2 * l->n) cap *= 2;
    size_t *slot = calloc(cap, sizeof *slot); /* index + 1; 0 = empty */
    const char **ids = malloc((l->n ? l->n : 1) * sizeof *ids);
    size_t *which = malloc((l->n ? l->n : 1) * sizeof *which);
    char **first = calloc(l->n ? l->n : 1, sizeof *first);
    int rc = -1;
    size_t n_ids = 0;
    if (!slot || !ids || !which || !first) {
        log_seterr(err, errlen, "out of memory");
        goto done;
    }
    for (size_t i = 0; i < l->n; i++) {
        corpus_doc_t *d = &l->docs[i];
        if (d->error) continue;
        size_t h = (size_t)hash_str(d->ext_id) & (cap - 1);
        while (slot[h] && strcmp(l->docs[slot[h] - 1].ext_id, d->ext_id)) h = (h + 1) & (cap - 1);
        if (slot[h]) {
            if (mark_duplicate(d, l->docs[slot[h] - 1].source, err, errlen)) goto done;
            continue;
        }
        slot[h] = i + 1;
        ids[n_ids] = d->ext_id;
        which[n_ids++] = i;
    }
    if (db_load_existing_ids(l->db, l->run_id, ids, n_ids, first, err, errlen)) goto done;
    rc = 0;
    for (size_t k = 0; k < n_ids; k++)
        if (first[k] && !rc) rc = mark_duplicate(&l->docs[which[k]], first[k], err, errlen);
done:
    for (size_t k = 0; first && k < n_ids; k++) free(first[k]);
    free(first);
    free(which);
    free(ids);
    free(slot);
    return rc;
}

/* Reads documents into the batch (past those loaded before) for a slice;
 * when the batch is full or the corpus ends, finds its duplicates and
 * starts sending it. */
static int read_slice(load_t *l, double until, char *err, size_t errlen) {
    for (int k = 0; !l->eof && l->n < LOAD_BATCH_DOCS && (int64_t)l->bytes < LOAD_BATCH_BYTES; k++) {
        if ((k & 63) == 63 && now_s() > until) return 0;
        if (l->n == l->cap) {
            size_t cap = l->cap ? 2 * l->cap : 1024;
            corpus_doc_t *nd = realloc(l->docs, cap * sizeof *nd);
            if (!nd) return log_seterr(err, errlen, "out of memory");
            memset(nd + l->cap, 0, (cap - l->cap) * sizeof *nd);
            l->docs = nd, l->cap = cap;
        }
        corpus_doc_t *d = &l->docs[l->n];
        int r = corpus_next(l->cp, d, err, errlen);
        if (r < 0) return -1;
        if (r == 0) {
            l->eof = 1;
            break;
        }
        if (l->skip > 0) { /* committed before a restart */
            l->skip--;
            corpus_doc_clear(d);
            continue;
        }
        if (d->error) log_warn("%s", d->error); /* the message names its source */
        l->n++;
        l->bytes += d->text_len + strlen(d->metadata) + strlen(d->ext_id) + strlen(d->source);
    }
    if (l->skip > 0 && l->eof)
        return log_seterr(err, errlen, "the corpus ends after %" PRId64 " documents, but %" PRId64
                          " were loaded before", l->next_doc - l->skip, l->next_doc);
    if (dedup(l, err, errlen)) return -1;
    if (!(l->ld = db_loader_new(l->db, l->run_id, l->next_doc, err, errlen))) return -1;
    l->phase = PHASE_SEND;
    l->sent = 0;
    l->job_id = l->next_job, l->job_n = 0, l->job_b = 0;
    l->usable = l->usable_bytes = 0;
    return 0;
}

/* Sends the batch's documents, assigning the usable ones to jobs, for a
 * slice; once all are sent, commits the batch. */
static int send_slice(load_t *l, double until, load_batch_t *out, char *err, size_t errlen) {
    for (; l->sent < l->n; l->sent++) {
        if ((l->sent & 255) == 255 && now_s() > until) return 0;
        corpus_doc_t *d = &l->docs[l->sent];
        int64_t job = -1;
        if (!d->error) {
            if (l->job_n > 0 && (l->job_n >= l->job_docs || l->job_b + (int64_t)d->text_len > l->job_bytes)) {
                if (db_loader_job(l->ld, l->job_id, l->job_n, l->job_b, err, errlen)) return -1;
                l->job_id++, l->job_n = 0, l->job_b = 0;
            }
            l->job_n++;
            l->job_b += (int64_t)d->text_len;
            l->usable++;
            l->usable_bytes += (int64_t)d->text_len;
            job = l->job_id;
        }
        if (db_loader_add(l->ld, l->next_doc + (int64_t)l->sent, d->ext_id, d->source, d->metadata, d->text,
                          d->text_len, job, d->error, err, errlen))
            return -1;
        corpus_doc_clear(d);
    }
    if (l->job_n > 0) {
        if (db_loader_job(l->ld, l->job_id, l->job_n, l->job_b, err, errlen)) return -1;
        l->job_id++;
    }
    int last = l->eof;
    if (db_loader_commit(&l->ld, l->job_id, last, err, errlen)) return -1;
    *out = (load_batch_t){l->next_job, l->job_id, (int64_t)l->n, l->usable, l->usable_bytes};
    l->next_doc += (int64_t)l->n;
    l->next_job = l->job_id;
    l->batches++;
    log_debug("load: batch %" PRId64 " committed: documents to %" PRId64 ", jobs to %" PRId64, l->batches,
              l->next_doc, l->next_job);
    fault_maybe_crash_after_load(l->next_doc); /* TOKSHIFT_FAULT load_crash */
    l->n = 0, l->bytes = 0;
    l->phase = last || l->next_doc >= 2 * l->analyzed_docs ? PHASE_ANALYZE : PHASE_READ;
    return 0;
}

int load_step(load_t *l, load_batch_t *out, char *err, size_t errlen) {
    double until = now_s() + LOAD_SLICE_MS / 1000.0;
    memset(out, 0, sizeof *out);
    switch (l->phase) {
    case PHASE_READ:
        if (read_slice(l, until, err, errlen)) goto error;
        return 1;
    case PHASE_SEND:
        if (send_slice(l, until, out, err, errlen)) goto error;
        return 1;
    case PHASE_ANALYZE:
        if (db_load_analyze(l->db, err, errlen)) goto error;
        l->analyzed_docs = l->next_doc;
        if (!l->eof) {
            l->phase = PHASE_READ;
            return 1;
        }
        l->phase = PHASE_DONE;
        log_info("corpus: %" PRId64 " documents in %" PRId64 " jobs, loaded (%" PRId64 " batches here) in %.1f s",
                 l->next_doc, l->next_job, l->batches, now_s() - l->t0);
        return 0;
    case PHASE_DONE:
        return 0;
    }
error:
    db_loader_abort(&l->ld);
    return -1;
}
