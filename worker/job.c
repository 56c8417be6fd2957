/* job.c - see job.h. */
#include "job.h"

#include <assert.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fault.h"
#include "log.h"
#include "tokenizer.h"

/* Growable array of elements of a fixed size. */
typedef struct {
    void *p;
    size_t n, cap, size;
} vec_t;

static void *vec_push(vec_t *v, size_t k) {
    if (fault_nth(FAULT_FAIL_ALLOC)) return NULL; /* TOKSHIFT_FAULT fail_alloc */
    if (v->n + k > v->cap) {
        size_t cap = v->cap ? v->cap : 256;
        while (cap < v->n + k) cap *= 2;
        void *np = realloc(v->p, cap * v->size);
        if (!np) return NULL;
        v->p = np;
        v->cap = cap;
    }
    void *at = (char *)v->p + v->n * v->size;
    memset(at, 0, k * v->size);
    v->n += k;
    return at;
}

/* Position buckets (tokshift_bucket: 0, 1, 2-3, 4-7, ...) by index: 0 is
 * position 0, i >= 1 positions [2^(i-1), 2^i); the last slot is "all
 * positions" (bucket -1). */
#define N_BUCKETS 34
#define BUCKET_ALL (N_BUCKETS - 1)

static int bucket_index(int32_t position) {
    int i = 0;
    while (position > 0) position >>= 1, i++;
    return i;
}

static int32_t bucket_of_index(int i) { return i == BUCKET_ALL ? -1 : i == 0 ? 0 : (int32_t)1 << (i - 1); }

/* The per-token columns, in the order of the vecs of job_result. */
enum { COL_TOKEN_ID, COL_RANK, COL_LOGPROB, COL_ENTROPY, COL_TOP1, COL_VARENTROPY, N_COLS };

struct job_result {
    vec_t seqs, seq_off;              /* db_seq_t (arrays unset until the view), size_t: first token */
    vec_t cols[N_COLS];               /* int32_t or float per token, all sequences end to end */
    vec_t docs, docsums;              /* db_docres_t, db_docsum_t */
    vec_t sums[DB_N_KINDS];           /* db_rollup_t by position, per kind */
    db_calib_t calib[DB_N_KINDS][DB_CALIB_BINS];
    db_rollup_t buckets[DB_N_KINDS][N_BUCKETS];
    /* The document being folded in (job_doc_end): its sums by position,
     * bucket and confidence bin, whose squares make the cluster terms. */
    vec_t doc_pos[DB_N_KINDS];
    db_rollup_t doc_bucket[DB_N_KINDS][N_BUCKETS];
    db_calib_t doc_calib[DB_N_KINDS][DB_CALIB_BINS];
    vec_t docbuckets;                 /* db_docbucket_t */
    vec_t buckets_out;                /* job_result_view's gathered bucket rows */
    db_toptok_t top[DB_TOP_TOKENS];   /* a min-heap: top[0] is the least surprising kept */
    size_t n_top;
    vec_t rollups, calib_out;         /* job_result_view's gathered rows */
    vec_t errors;                     /* char * owned, for docres.error */
    vec_t rows;                       /* experiment_row_t scratch */
    vec_t seeds;                      /* uint64_t scratch */
    size_t doc_seqs, doc_docsums;     /* where the document being measured starts */
};

job_result_t *job_result_new(void) {
    job_result_t *r = calloc(1, sizeof *r);
    if (!r) return NULL;
    r->seqs.size = sizeof(db_seq_t);
    r->seq_off.size = sizeof(size_t);
    for (int c = 0; c < N_COLS; c++) r->cols[c].size = 4; /* int32_t, float */
    r->docs.size = sizeof(db_docres_t);
    r->docsums.size = sizeof(db_docsum_t);
    r->rollups.size = sizeof(db_rollup_t);
    r->calib_out.size = sizeof(db_calib_t);
    for (int k = 0; k < DB_N_KINDS; k++) r->sums[k].size = r->doc_pos[k].size = sizeof(db_rollup_t);
    r->docbuckets.size = sizeof(db_docbucket_t);
    r->buckets_out.size = sizeof(db_rollup_t);
    r->errors.size = sizeof(char *);
    r->rows.size = sizeof(experiment_row_t);
    r->seeds.size = sizeof(uint64_t);
    return r;
}

void job_result_reset(job_result_t *r) {
    for (size_t i = 0; i < r->errors.n; i++) free(((char **)r->errors.p)[i]);
    r->seqs.n = r->seq_off.n = r->docs.n = r->docsums.n = r->rollups.n = r->calib_out.n = r->errors.n = 0;
    for (int c = 0; c < N_COLS; c++) r->cols[c].n = 0;
    r->docbuckets.n = r->buckets_out.n = 0;
    for (int k = 0; k < DB_N_KINDS; k++) r->sums[k].n = r->doc_pos[k].n = 0;
    memset(r->calib, 0, sizeof r->calib);
    memset(r->buckets, 0, sizeof r->buckets);
    memset(r->doc_bucket, 0, sizeof r->doc_bucket);
    memset(r->doc_calib, 0, sizeof r->doc_calib);
    r->n_top = 0;
    r->doc_seqs = r->doc_docsums = 0;
}

size_t job_result_n_rows(const job_result_t *r) { return r->cols[COL_TOKEN_ID].n; }

void job_result_destroy(job_result_t **self_p) {
    if (!self_p || !*self_p) return;
    job_result_t *r = *self_p;
    job_result_reset(r);
    vec_t *all[] = {&r->seqs, &r->seq_off, &r->docs, &r->docsums, &r->rollups, &r->calib_out, &r->errors, &r->rows,
                    &r->seeds, &r->docbuckets, &r->buckets_out};
    for (size_t i = 0; i < sizeof all / sizeof *all; i++) free(all[i]->p);
    for (int c = 0; c < N_COLS; c++) free(r->cols[c].p);
    for (int k = 0; k < DB_N_KINDS; k++) free(r->sums[k].p), free(r->doc_pos[k].p);
    free(r);
    *self_p = NULL;
}

int job_result_view(job_result_t *r, db_results_t *out) {
    /* Rollups and calibration bins: the non-empty ones, gathered on demand. */
    r->rollups.n = r->calib_out.n = r->buckets_out.n = 0;
    for (int k = 0; k < DB_N_KINDS; k++) {
        for (int b = 0; b < N_BUCKETS; b++) {
            if (!r->buckets[k][b].n) continue;
            db_rollup_t *d = vec_push(&r->buckets_out, 1);
            if (!d) return -1;
            *d = r->buckets[k][b];
        }
        for (size_t p = 0; p < r->sums[k].n; p++) {
            const db_rollup_t *s = (const db_rollup_t *)r->sums[k].p + p;
            if (!s->n) continue;
            db_rollup_t *d = vec_push(&r->rollups, 1);
            if (!d) return -1;
            *d = *s;
        }
        for (int b = 0; b < DB_CALIB_BINS; b++) {
            if (!r->calib[k][b].n) continue;
            db_calib_t *d = vec_push(&r->calib_out, 1);
            if (!d) return -1;
            *d = r->calib[k][b];
        }
    }
    /* The arrays' addresses are final only now that nothing grows. */
    const int32_t *tok = r->cols[COL_TOKEN_ID].p, *rank = r->cols[COL_RANK].p;
    const float *lp = r->cols[COL_LOGPROB].p, *h = r->cols[COL_ENTROPY].p, *top1 = r->cols[COL_TOP1].p,
                *var = r->cols[COL_VARENTROPY].p;
    size_t n_toks = 0;
    for (size_t i = 0; i < r->seqs.n; i++) {
        db_seq_t *s = (db_seq_t *)r->seqs.p + i;
        size_t o = ((const size_t *)r->seq_off.p)[i];
        n_toks += (size_t)s->n_tokens;
        if (!s->n_tokens) { /* (the columns may be empty: no address to offset) */
            s->token_id = s->rank = NULL;
            s->logprob = s->entropy = s->top1_logprob = s->varentropy = NULL;
            continue;
        }
        s->token_id = tok + o, s->rank = rank + o;
        s->logprob = lp + o, s->entropy = h + o, s->top1_logprob = top1 + o, s->varentropy = var + o;
    }
    *out = (db_results_t){.seqs = r->seqs.p, .n_seqs = r->seqs.n, .n_toks = n_toks,
                          .rollups = r->rollups.p, .n_rollups = r->rollups.n,
                          .calib = r->calib_out.p, .n_calib = r->calib_out.n,
                          .docsums = r->docsums.p, .n_docsums = r->docsums.n,
                          .buckets = r->buckets_out.p, .n_buckets = r->buckets_out.n,
                          .docbuckets = r->docbuckets.p, .n_docbuckets = r->docbuckets.n,
                          .top = r->top, .n_top = r->n_top,
                          .docs = r->docs.p, .n_docs = r->docs.n};
    return 0;
}

int job_doc_begin(job_result_t *r, int64_t doc_id, int32_t n_tokens) {
    db_docres_t *d = vec_push(&r->docs, 1);
    if (!d) return -1;
    d->doc_id = doc_id;
    d->n_tokens = n_tokens;
    r->doc_seqs = r->seqs.n;
    r->doc_docsums = r->docsums.n;
    return 0;
}

int job_add_sequence(job_result_t *r, db_kind_t kind, int32_t seq_no, int32_t cut, int32_t cut_byte,
                     int32_t sample_idx, uint64_t seed, const experiment_row_t *rows, size_t n) {
    assert(r->docs.n > 0 && (unsigned)kind < DB_N_KINDS);
    db_seq_t *s = vec_push(&r->seqs, 1);
    size_t *off = vec_push(&r->seq_off, 1);
    if (!s || !off) return -1;
    *off = r->cols[0].n;
    *s = (db_seq_t){.doc_id = ((const db_docres_t *)r->docs.p)[r->docs.n - 1].doc_id, .seq_no = seq_no,
                    .kind = kind, .n_tokens = (int32_t)n, .has_cut = kind != DB_KIND_HUMAN,
                    .has_sample = kind == DB_KIND_SAMPLE};
    if (s->has_cut) s->cut = cut, s->has_cut_byte = cut_byte >= 0, s->cut_byte = cut_byte;
    if (s->has_sample) s->sample_idx = sample_idx, s->seed = seed;
    if (!n) return 0;
    void *c[N_COLS];
    for (int k = 0; k < N_COLS; k++)
        if (!(c[k] = vec_push(&r->cols[k], n))) return -1;
    for (size_t i = 0; i < n; i++) {
        const stats_t *st = &rows[i].st;
        ((int32_t *)c[COL_TOKEN_ID])[i] = rows[i].token;
        ((int32_t *)c[COL_RANK])[i] = st->rank;
        ((float *)c[COL_LOGPROB])[i] = (float)st->logprob;
        ((float *)c[COL_ENTROPY])[i] = (float)st->entropy;
        ((float *)c[COL_TOP1])[i] = (float)st->top1_logprob;
        ((float *)c[COL_VARENTROPY])[i] = (float)st->varentropy;
    }
    /* The sequence's sums, from the stored floats as job_doc_end's. */
    const float *lp = c[COL_LOGPROB], *h = c[COL_ENTROPY], *var = c[COL_VARENTROPY];
    for (size_t i = 0; i < n; i++) {
        double surprisal = -(double)lp[i];
        s->sum_surprisal += surprisal, s->sum_entropy += h[i], s->sum_gap += surprisal - h[i];
        if (var[i] > 0) s->n_z++, s->sum_z += (double)(float)(-lp[i] - h[i]) / sqrt((double)var[i]);
    }
    return 0;
}

/* Whether top token a ranks below b: smaller z, then later (doc, pos) (the
 * order of 005_sequence_arrays.sql's conversion, so a job keeps the same
 * DB_TOP_TOKENS tokens whichever way it was written). */
static int top_below(const db_toptok_t *a, const db_toptok_t *b) {
    if (a->z != b->z) return a->z < b->z;
    if (a->doc_id != b->doc_id) return a->doc_id > b->doc_id;
    return a->pos > b->pos;
}

/* Keeps t if it is among the job's DB_TOP_TOKENS largest. */
static void top_offer(job_result_t *r, const db_toptok_t *t) {
    db_toptok_t *h = r->top;
    size_t i;
    if (r->n_top < DB_TOP_TOKENS) { /* sift up */
        for (i = r->n_top++; i > 0 && top_below(t, &h[(i - 1) / 2]); i = (i - 1) / 2) h[i] = h[(i - 1) / 2];
        h[i] = *t;
        return;
    }
    if (!top_below(&h[0], t)) return;
    for (i = 0;;) { /* sift down from the root */
        size_t c = 2 * i + 1;
        if (c >= DB_TOP_TOKENS) break;
        if (c + 1 < DB_TOP_TOKENS && top_below(&h[c + 1], &h[c])) c++;
        if (!top_below(&h[c], t)) break;
        h[i] = h[c];
        i = c;
    }
    h[i] = *t;
}

/* Adds one token's quantities (in double, from the stored floats, as the
 * views compute them) to a sum row. */
#define ADD_SUMS(s, surprisal, h, gap, has_z, z)                                                                     \
    do {                                                                                                             \
        (s)->n++;                                                                                                    \
        (s)->sum_surprisal += (surprisal), (s)->sumsq_surprisal += (surprisal) * (surprisal);                        \
        (s)->sum_entropy += (h), (s)->sumsq_entropy += (h) * (h);                                                    \
        (s)->sum_gap += (gap), (s)->sumsq_gap += (gap) * (gap);                                                      \
        if (has_z) (s)->n_z++, (s)->sum_z += (z), (s)->sumsq_z += (z) * (z);                                         \
    } while (0)

/* Adds a document's sums d (a cell's) to u: the sums themselves. */
static void rollup_add(db_rollup_t *u, const db_rollup_t *d) {
    u->n += d->n, u->n_z += d->n_z;
    u->sum_surprisal += d->sum_surprisal, u->sumsq_surprisal += d->sumsq_surprisal;
    u->sum_entropy += d->sum_entropy, u->sumsq_entropy += d->sumsq_entropy;
    u->sum_gap += d->sum_gap, u->sumsq_gap += d->sumsq_gap;
    u->sum_z += d->sum_z, u->sumsq_z += d->sumsq_z;
}

/* Adds a document's sums d in a cell to the cell's cluster terms u; x, when
 * not NULL, is the same document's samples in the same cell (u is a
 * human_cont row): the cross terms of the shift. */
static void cluster_add(db_rollup_t *u, const db_rollup_t *d, const db_rollup_t *x) {
    double n = (double)d->n, nz = (double)d->n_z;
    u->g++, u->c_nn += n * n;
    u->c_ss_surprisal += d->sum_surprisal * d->sum_surprisal, u->c_ns_surprisal += n * d->sum_surprisal;
    u->c_ss_entropy += d->sum_entropy * d->sum_entropy, u->c_ns_entropy += n * d->sum_entropy;
    u->c_ss_gap += d->sum_gap * d->sum_gap, u->c_ns_gap += n * d->sum_gap;
    if (d->n_z) u->g_z++, u->c_nn_z += nz * nz, u->c_ss_z += d->sum_z * d->sum_z, u->c_ns_z += nz * d->sum_z;
    if (x) {
        u->x_ss_gap += d->sum_gap * x->sum_gap, u->x_sn_gap += d->sum_gap * (double)x->n;
        u->x_ns_gap += n * x->sum_gap, u->x_nn += n * (double)x->n;
    }
}

/* Folds the document's per-cell sums into the job's cluster terms, writes
 * its doc_bucket_rollups rows, and clears the per-document sums.  0, or -1
 * when memory runs out (the job then fails as a whole; job_result_reset
 * clears what was half folded). */
static int doc_fold(job_result_t *r, int64_t doc_id) {
    const db_rollup_t *none = NULL;
    for (int k = 0; k < DB_N_KINDS; k++) {
        const vec_t *dp = &r->doc_pos[k], *sp = &r->doc_pos[DB_KIND_SAMPLE];
        for (size_t p = 0; p < dp->n; p++) {
            const db_rollup_t *d = (const db_rollup_t *)dp->p + p;
            if (!d->n) continue;
            const db_rollup_t *x = k == DB_KIND_HUMAN_CONT && p < sp->n ? (const db_rollup_t *)sp->p + p : none;
            cluster_add((db_rollup_t *)r->sums[k].p + p, d, x);
            rollup_add(&r->doc_bucket[k][bucket_index((int32_t)p)], d);
            rollup_add(&r->doc_bucket[k][BUCKET_ALL], d);
        }
    }
    for (int k = 0; k < DB_N_KINDS; k++) {
        for (int b = 0; b < N_BUCKETS; b++) {
            const db_rollup_t *d = &r->doc_bucket[k][b];
            if (!d->n) continue;
            db_rollup_t *u = &r->buckets[k][b];
            u->kind = (db_kind_t)k, u->position = bucket_of_index(b);
            rollup_add(u, d);
            cluster_add(u, d, k == DB_KIND_HUMAN_CONT ? &r->doc_bucket[DB_KIND_SAMPLE][b] : none);
            if (b == BUCKET_ALL) continue;
            db_docbucket_t *o = vec_push(&r->docbuckets, 1);
            if (!o) return -1;
            *o = (db_docbucket_t){.doc_id = doc_id, .kind = (db_kind_t)k, .bucket = u->position, .n = d->n,
                                  .n_z = d->n_z, .sum_surprisal = d->sum_surprisal, .sum_entropy = d->sum_entropy,
                                  .sum_gap = d->sum_gap, .sum_z = d->sum_z};
        }
        for (int b = 0; b < DB_CALIB_BINS; b++) {
            const db_calib_t *d = &r->doc_calib[k][b];
            if (!d->n) continue;
            db_calib_t *u = &r->calib[k][b];
            double n = (double)d->n, c = (double)d->n_correct;
            u->g++, u->c_nn += n * n;
            u->c_ss_conf += d->sum_conf * d->sum_conf, u->c_ns_conf += n * d->sum_conf;
            u->c_ss_correct += c * c, u->c_ns_correct += n * c;
        }
        if (r->doc_pos[k].n) memset(r->doc_pos[k].p, 0, r->doc_pos[k].n * sizeof(db_rollup_t));
        r->doc_pos[k].n = 0;
    }
    memset(r->doc_bucket, 0, sizeof r->doc_bucket);
    memset(r->doc_calib, 0, sizeof r->doc_calib);
    return 0;
}

int job_doc_end(job_result_t *r) {
    const int32_t *tok = r->cols[COL_TOKEN_ID].p, *rank = r->cols[COL_RANK].p;
    const float *lp = r->cols[COL_LOGPROB].p, *ent = r->cols[COL_ENTROPY].p, *top1 = r->cols[COL_TOP1].p,
                *var = r->cols[COL_VARENTROPY].p;
    for (size_t q = r->doc_seqs; q < r->seqs.n; q++) {
        const db_seq_t *s = (const db_seq_t *)r->seqs.p + q;
        size_t o = ((const size_t *)r->seq_off.p)[q];
        if (!s->n_tokens) continue;
        int32_t cut = s->has_cut ? s->cut : 0;
        /* Per document, kind and cut: a sequence's samples share one row. */
        db_docsum_t *ds = r->docsums.n > r->doc_docsums ? (db_docsum_t *)r->docsums.p + r->docsums.n - 1 : NULL;
        if (!ds || ds->kind != s->kind || ds->cut != cut) {
            if (!(ds = vec_push(&r->docsums, 1))) return -1;
            ds->doc_id = s->doc_id, ds->kind = s->kind, ds->cut = cut;
        }
        vec_t *sv = &r->sums[s->kind], *dv = &r->doc_pos[s->kind];
        /* human: position = pos = i + 1; continuations: i */
        size_t last = (size_t)s->n_tokens - 1 + (s->kind == DB_KIND_HUMAN);
        if (last >= sv->n && !vec_push(sv, last + 1 - sv->n)) return -1;
        if (last >= dv->n && !vec_push(dv, last + 1 - dv->n)) return -1;
        for (int32_t i = 0; i < s->n_tokens; i++) {
            size_t t = o + (size_t)i;
            int32_t position = s->kind == DB_KIND_HUMAN ? i + 1 : i;
            float gap_f = -lp[t] - ent[t]; /* token_view's real arithmetic */
            double surprisal = -(double)lp[t], h = ent[t], gap = surprisal - h;
            int has_z = var[t] > 0;
            double z = has_z ? (double)gap_f / sqrt((double)var[t]) : 0;
            db_rollup_t *u = (db_rollup_t *)sv->p + position;
            u->kind = s->kind, u->position = position;
            ADD_SUMS(u, surprisal, h, gap, has_z, z);
            ADD_SUMS(ds, surprisal, h, gap, has_z, z);
            ADD_SUMS((db_rollup_t *)dv->p + position, surprisal, h, gap, has_z, z);
            double conf = exp((double)top1[t]);
            int bin = conf < 0 ? 0 : conf >= 1.0000001 ? 11 : (int)(10.0 * conf / 1.0000001) + 1;
            db_calib_t *cb = &r->calib[s->kind][bin];
            cb->kind = s->kind, cb->bin = bin;
            cb->n++, cb->n_correct += rank[t] == 1;
            cb->sum_conf += conf, cb->sumsq_conf += conf * conf;
            db_calib_t *dc = &r->doc_calib[s->kind][bin];
            dc->n++, dc->n_correct += rank[t] == 1, dc->sum_conf += conf;
            if (s->kind == DB_KIND_HUMAN && has_z)
                top_offer(r, &(db_toptok_t){s->doc_id, position, tok[t], rank[t], lp[t], ent[t], var[t], z});
        }
    }
    return doc_fold(r, ((const db_docres_t *)r->docs.p)[r->docs.n - 1].doc_id);
}

/* Whether rows (a sequence of kind at cut, in a run of window W and stride
 * S) have the positions and context lengths that token_view derives
 * instead of reading them (005_sequence_arrays.sql): human, the i-th row
 * (from 0) is pos i + 1, seen with pos - (start of its window) tokens of
 * context; a continuation's is pos cut + i with least(cut, W - n) + i. */
static int layout_ok(db_kind_t kind, int32_t cut, int W, int S, const experiment_row_t *rows, size_t n) {
    for (size_t i = 0; i < n; i++) {
        int32_t pos = kind == DB_KIND_HUMAN ? (int32_t)i + 1 : cut + (int32_t)i, ctx;
        if (kind != DB_KIND_HUMAN) ctx = (cut < W - (int32_t)n ? cut : W - (int32_t)n) + (int32_t)i;
        else ctx = pos < W ? pos : pos - S * ((pos - W) / S + 1);
        if (rows[i].pos != pos || rows[i].st.context_len != ctx) return 0;
    }
    return 1;
}

/* Drops what the document being measured added (it keeps its docres). */
static void doc_discard(job_result_t *r) {
    if (r->doc_seqs < r->seqs.n) {
        size_t o = ((const size_t *)r->seq_off.p)[r->doc_seqs];
        for (int c = 0; c < N_COLS; c++) r->cols[c].n = o;
    }
    r->seqs.n = r->seq_off.n = r->doc_seqs;
    r->docsums.n = r->doc_docsums;
}

/* With s->observe: the K given samples at cut, from given[*at] on, into
 * tokens (K * C) and seeds; *at moves past them.  Returns 0, or -1 with a
 * message in why when they are not there (K of C tokens each, in order). */
static int given_at(const job_settings_t *s, const wire_sample_t *given, size_t n_given, size_t *at, int32_t cut,
                    int32_t *tokens, uint64_t *seeds, char *why, size_t whylen) {
    int C = s->cont.cont_len, K = s->cont.n_samples;
    for (int k = 0; k < K; k++, (*at)++) {
        const wire_sample_t *g = *at < n_given ? &given[*at] : NULL;
        if (!g || g->cut != cut || g->sample_idx != k || g->n_tokens != (size_t)C)
            return log_seterr(why, whylen,
                              "the scored run has no sample %d of %d tokens at cut %d (another tokenization?)", k, C,
                              (int)cut);
        memcpy(tokens + (size_t)k * C, g->tokens, (size_t)C * sizeof *tokens);
        seeds[k] = g->seed;
    }
    return 0;
}

/* Where each of the n tokens ids starts in text (len bytes): offs[i] for
 * ids[i], offs[n] = len, laying the tokens' decoded bytes over the text
 * from ids[lead] on (the first lead ids are context before the text: a chat
 * template's last token; their offsets are 0) (a
 * space the tokenizer put before the text, SentencePiece's dummy prefix,
 * is not in it: offsets 0 up to the first byte that is).  Returns 0, 1
 * when the tokens do not decode to the text byte for byte (a normalizing
 * tokenizer, an unknown token: no offsets), or -1 when memory runs out.
 * O(n + len). */
static int token_offsets(const tokenizer_t *tok, const int32_t *ids, long lead, long n, const char *text,
                         size_t len, int32_t *offs) {
    if (len > INT32_MAX) return 1;
    size_t cap = tokenizer_max_piece_bytes(tok) + 1, pos = 0;
    char *b = malloc(cap);
    if (!b) return -1;
    int skip = tokenizer_adds_space_prefix(tok), rc = 0;
    for (long i = 0; i < lead && i < n; i++) offs[i] = 0;
    for (long i = lead; i < n && !rc; i++) {
        offs[i] = (int32_t)pos;
        long k = tokenizer_token_bytes(tok, ids[i], b, cap);
        for (long j = 0; j < k && !rc; j++) {
            if (skip && b[j] == ' ') { /* the added space prefix: once, before any byte of the text */
                skip = 0;
                continue;
            }
            skip = 0;
            if (pos >= len || text[pos] != b[j]) rc = 1;
            pos++;
        }
        if (k < 0) rc = 1;
    }
    if (!rc && pos != len) rc = 1;
    offs[n] = (int32_t)pos;
    free(b);
    return rc;
}

/* The cuts of --cut-every-bytes N (job_settings_t.cut_every_bytes): for
 * every multiple kN of N bytes (k >= 1), the first token at or after it
 * that starts with ASCII whitespace (a word's start: a token boundary in
 * every tokenizer that splits words at their leading space, so runs whose
 * tokenizers differ cut at the same bytes), kept when 1 <= cut and cut +
 * cont_len <= n; ascending and distinct, at most cap into out.  offs are
 * token_offsets' (n + 1 of them).  Returns how many.  O(n + len / N). */
static size_t byte_cuts(const int32_t *offs, long n, const char *text, size_t len, int every, int cont_len,
                        int32_t *out, size_t cap) {
    size_t nc = 0;
    long c = 1;
#define AT_SPACE(o) ((size_t)(o) < len && (text[o] == ' ' || text[o] == '\n' || text[o] == '\t' || text[o] == '\r'))
    for (int64_t target = every; nc < cap && c + cont_len <= n; target += every) {
        while (c + cont_len <= n && (offs[c] < target || !AT_SPACE(offs[c]))) c++;
        if (c + cont_len > n) break;
        if (!nc || out[nc - 1] != c) out[nc++] = (int32_t)c;
        if (offs[c] >= target + every) target = offs[c] / every * every; /* (skip the multiples a long token spans) */
    }
#undef AT_SPACE
    return nc;
}

/* The most cuts a document of n ids may have under s's settings. */
static size_t cuts_max(const job_settings_t *s, long n) {
    return s->n_prefix_lengths + (s->cut_every > 0 ? (size_t)n / (size_t)s->cut_every + 1 : 0) +
           (s->cut_every_bytes > 0 ? (size_t)n : 0);
}

/* The cuts of a document of n ids (offs: token_offsets', needed with
 * --cut-every-bytes) under s's settings, at most cap into out.  Returns
 * how many. */
static size_t doc_cuts(const job_settings_t *s, const int32_t *offs, long n, const char *text, size_t len,
                       int32_t *out, size_t cap) {
    return s->cut_every_bytes > 0 ? byte_cuts(offs, n, text, len, s->cut_every_bytes, s->cont.cont_len, out, cap)
                                  : experiment_cuts(s->prefix_lengths, s->n_prefix_lengths, s->cut_every,
                                                    s->cont.cont_len, (int)n, out, cap);
}

/* Cross-scoring through the decoded text (s->source_tok; job.h): the
 * generator's cuts found again in its own tokens of the text (as it cut:
 * the same settings), and each of its continuations at a cut (its human
 * continuation, then its K samples given[*at ..], decoded by its tokenizer)
 * written after the text up to the cut's byte and encoded, all of it, by
 * this model's tokenizer (so a token may span the cut).  The cut in this
 * model's tokens, shared by the K + 1 (sequence_stats keys a document's
 * sums by kind and cut), is the earliest of their tokens holding the cut's
 * byte: each continuation's rows are those of its tokens from there on
 * (they cover all its bytes, and any bytes before the cut that its first
 * tokens spell: cut_byte says where they start), with the context a
 * continuation has (min(cut, W - n) tokens before it, one window).  They
 * are stored under the generator's seq_no with end_byte, where the text
 * ends.  One forward of at most W tokens per continuation: linear in the
 * text and the continuations.  Returns 0, 1 with the document's error in
 * why, 2 when the rows are not laid out as sequence_stats derives them, or
 * -1 when memory runs out. */
static int observe_text(experiment_t *ex, const model_t *m, const job_settings_t *s, const char *text, size_t len,
                        const wire_sample_t *given, size_t n_given, size_t *at, job_result_t *r, char *why,
                        size_t whylen) {
    const tokenizer_t *gt = s->source_tok;
    int C = s->cont.cont_len, K = s->cont.n_samples, W = s->window, rc = -1;
    int32_t *gids = NULL, *goffs = NULL, *cuts = NULL, *gtok = NULL, **oids = NULL, **ooffs = NULL;
    long *no = NULL;
    size_t *bl = NULL;
    uint64_t *seed = NULL;
    char *buf = NULL;
    long ng = template_encode_doc(NULL, gt, text, len, &gids, why, whylen);
    if (ng < 0) {
        rc = 1;
        goto out;
    }
    size_t max_cuts = cuts_max(s, ng);
    if (C <= 0 || !max_cuts) {
        rc = 0;
        goto out;
    }
    size_t piece = tokenizer_max_piece_bytes(gt) + 1, K1 = (size_t)K + 1;
    if (!(cuts = malloc(max_cuts * sizeof *cuts)) || !(goffs = malloc(((size_t)ng + 1) * sizeof *goffs)) ||
        !(buf = malloc(len + (size_t)C * piece + 1)) || !(oids = calloc(K1, sizeof *oids)) ||
        !(ooffs = calloc(K1, sizeof *ooffs)) || !(no = calloc(K1, sizeof *no)) || !(bl = calloc(K1, sizeof *bl)) ||
        !(seed = calloc(K1, sizeof *seed)) || !(gtok = malloc(((size_t)K * C + 1) * sizeof *gtok)))
        goto out;
    int t = token_offsets(gt, gids, 0, ng, text, len, goffs);
    if (t) {
        if (t > 0) {
            rc = 1;
            log_seterr(why, whylen, "the generator's tokens do not decode back to the text byte for byte: its "
                       "continuations have no place in the text (scored through the decoded text)");
        }
        goto out;
    }
    size_t nc = doc_cuts(s, goffs, ng, text, len, cuts, max_cuts);
    for (size_t j = 0; j < nc; j++) {
        int32_t cb = goffs[cuts[j]];
        long f = -1; /* the shared cut: the earliest token holding byte cb */
        if (given_at(s, given, n_given, at, cuts[j], gtok, seed + 1, why, whylen)) {
            rc = 1;
            goto out;
        }
        memcpy(buf, text, (size_t)cb);
        for (int k = 0; k <= K; k++) {
            bl[k] = (size_t)cb;
            if (!k) {
                memcpy(buf + cb, text + cb, (size_t)(goffs[cuts[j] + C] - cb));
                bl[k] = (size_t)goffs[cuts[j] + C];
            } else {
                for (int i = 0; i < C; i++) {
                    long b = tokenizer_token_bytes(gt, gtok[(size_t)(k - 1) * C + i], buf + bl[k], piece);
                    if (b > 0) bl[k] += (size_t)b;
                }
            }
            free(oids[k]);
            oids[k] = NULL;
            if ((no[k] = template_encode_doc(NULL, m->tok, buf, bl[k], &oids[k], why, whylen)) < 0) {
                rc = 1;
                goto out;
            }
            int32_t *o2 = realloc(ooffs[k], ((size_t)no[k] + 1) * sizeof *o2);
            if (!o2) goto out;
            ooffs[k] = o2;
            if ((t = token_offsets(m->tok, oids[k], 0, no[k], buf, bl[k], ooffs[k]))) {
                if (t > 0) {
                    rc = 1;
                    log_seterr(why, whylen, "this model's tokens of a continuation at cut %d do not decode back "
                               "to its text byte for byte", (int)cuts[j]);
                }
                goto out;
            }
            if (bl[k] == (size_t)cb) {
                rc = 1;
                log_seterr(why, whylen, "%s %d at cut %d decodes to no text", k ? "sample" : "the human continuation",
                           k - 1, (int)cuts[j]);
                goto out;
            }
            /* (its first token ending past byte cb, after BOS's position) */
            long fk = 1;
            while (fk < no[k] && ooffs[k][fk + 1] <= cb) fk++;
            if (f < 0 || fk < f) f = fk;
        }
        for (int k = 0; k <= K; k++) {
            long n_o = no[k] - f, ctx = f < W - n_o ? f : W - n_o;
            if (ctx < 1) {
                rc = 1;
                log_seterr(why, whylen, "%s %d at cut %d is more tokens of this model than its window holds",
                           k ? "sample" : "the human continuation", k - 1, (int)cuts[j]);
                goto out;
            }
            r->rows.n = 0;
            experiment_row_t *rows = vec_push(&r->rows, (size_t)(ctx + n_o));
            if (!rows) goto out;
            if (experiment_score(ex, oids[k] + f - ctx, (int)(ctx + n_o), s->stride, rows, why, whylen) < 0) {
                rc = 1;
                goto out;
            }
            rows += ctx - 1;
            for (long i = 0; i < n_o; i++) rows[i].pos = (int32_t)(f + i);
            db_kind_t kind = k ? DB_KIND_SAMPLE : DB_KIND_HUMAN_CONT;
            if (!layout_ok(kind, (int32_t)f, W, s->stride, rows, (size_t)n_o)) {
                rc = 2;
                goto out;
            }
            if (job_add_sequence(r, kind, 1 + (int32_t)j * (K + 1) + k, (int32_t)f, ooffs[k][f], k - 1, seed[k],
                                 rows, (size_t)n_o))
                goto out;
            db_seq_t *q = (db_seq_t *)r->seqs.p + r->seqs.n - 1;
            q->end_byte = (int32_t)bl[k], q->has_end_byte = 1;
        }
    }
    rc = 0;
out:
    for (int k = 0; oids && k <= K; k++) free(oids[k]);
    for (int k = 0; ooffs && k <= K; k++) free(ooffs[k]);
    free(oids);
    free(ooffs);
    free(no);
    free(bl);
    free(seed);
    free(gtok);
    free(buf);
    free(goffs);
    free(cuts);
    free(gids);
    return rc;
}

int job_measure_doc(experiment_t *ex, const model_t *m, const job_settings_t *s, int64_t doc_id, const char *text,
                    size_t text_len, const wire_sample_t *given, size_t n_given, job_result_t *r,
                    volatile sig_atomic_t *cancel, char *err, size_t errlen) {
    int32_t *ids = NULL, *cuts = NULL, *tokens = NULL, *offs = NULL;
    size_t at = 0;
    char why[LOG_ERRLEN];
    int rc = -1;
    fault_maybe_crash_on_doc(doc_id); /* TOKSHIFT_FAULT crash_on_doc */
    long n = template_encode_doc(s->tpl, m->tok, text, text_len, &ids, err, errlen);
    if (n < 0) goto out;
    if (job_doc_begin(r, doc_id, (int32_t)n)) goto oom;

    /* The cuts first, so that the scoring keeps what they need of window
     * 0 (experiment_score_cuts); each cut's byte offset, when the tokens
     * decode to the text. */
    int C = s->cont.cont_len, K = s->cont.n_samples;
    size_t max_cuts = cuts_max(s, n), nc = 0;
    int own_cuts = !s->source_tok && C > 0 && max_cuts > 0;
    if (own_cuts) {
        if (fault_nth(FAULT_FAIL_ALLOC) || !(cuts = malloc(max_cuts * sizeof *cuts)) ||
            !(offs = malloc(((size_t)n + 1) * sizeof *offs)))
            goto oom;
        int have_offs = token_offsets(m->tok, ids, s->tpl ? 1 : 0, n, text, text_len, offs);
        if (have_offs < 0) goto oom;
        if (have_offs) { /* (1: no offsets) */
            free(offs);
            offs = NULL;
        }
        if (s->cut_every_bytes > 0 && !offs) {
            snprintf(why, sizeof why, "--cut-every-bytes: the tokens do not decode back to the text byte for byte");
            goto doc_error;
        }
        nc = doc_cuts(s, offs, n, text, text_len, cuts, max_cuts);
    }

    /* Human text, in windows. */
    size_t need = n > 1 ? (size_t)n - 1 : 1;
    if (r->rows.cap < need && !vec_push(&r->rows, need)) goto oom;
    experiment_row_t *rows = r->rows.p;
    long nr = experiment_score_cuts(ex, ids, (int)n, s->stride, cuts, (int)nc, rows, why, sizeof why);
    if (nr < 0) goto doc_error;
    if (!layout_ok(DB_KIND_HUMAN, 0, s->window, s->stride, rows, (size_t)nr)) goto layout;
    if (job_add_sequence(r, DB_KIND_HUMAN, 0, 0, -1, 0, 0, rows, (size_t)nr)) goto oom;

    /* Continuation experiments. */
    if (s->source_tok) {
        int t = observe_text(ex, m, s, text, text_len, given, n_given, &at, r, why, sizeof why);
        if (t < 0) goto oom;
        if (t == 1) goto doc_error;
        if (t == 2) goto layout;
    } else if (own_cuts) {
        size_t per_cut = (size_t)(K + 1) * C;
        r->rows.n = 0;
        if (!vec_push(&r->rows, per_cut * (nc ? nc : 1))) goto oom;
        r->seeds.n = 0;
        if (!vec_push(&r->seeds, K && nc ? (size_t)K * nc : 1)) goto oom;
        if (cancel && *cancel) {
            log_seterr(err, errlen, "cancelled");
            goto out;
        }
        experiment_row_t *all_human = r->rows.p, *all_samples = all_human + nc * (size_t)C;
        if (s->observe) {
            /* Cross-scoring: every cut with the samples it was given, all
             * decoded together as when drawn. */
            if (K > 0 && nc && !(tokens = malloc(nc * K * (size_t)C * sizeof *tokens))) goto oom;
            for (size_t j = 0; j < nc; j++)
                if (given_at(s, given, n_given, &at, cuts[j], tokens + j * K * (size_t)C,
                             (uint64_t *)r->seeds.p + j * K, why, sizeof why))
                    goto doc_error;
            if (nc && experiment_observe(ex, ids, (int)n, cuts, (int)nc, tokens, all_human, all_samples, why,
                                         sizeof why))
                goto doc_error;
        } else if (nc && experiment_continue_doc(ex, ids, (int)n, cuts, (int)nc, (uint64_t)doc_id, all_human,
                                                 all_samples, r->seeds.p, why, sizeof why)) {
            /* Every cut of the document decodes together (experiment.h). */
            goto doc_error;
        }
        for (size_t j = 0; j < nc; j++) {
            experiment_row_t *human = all_human + j * C, *samples = all_samples + j * K * (size_t)C;
            const uint64_t *seeds = (const uint64_t *)r->seeds.p + j * K;
            int base = 1 + (int)j * (K + 1);
            for (int k = 0; k <= K; k++)
                if (!layout_ok(k ? DB_KIND_SAMPLE : DB_KIND_HUMAN_CONT, cuts[j], s->window, s->stride,
                               k ? samples + (size_t)(k - 1) * C : human, (size_t)C))
                    goto layout;
            int32_t cb = offs ? offs[cuts[j]] : -1;
            if (job_add_sequence(r, DB_KIND_HUMAN_CONT, base, cuts[j], cb, 0, 0, human, (size_t)C)) goto oom;
            for (int k = 0; k < K; k++)
                if (job_add_sequence(r, DB_KIND_SAMPLE, base + 1 + k, cuts[j], cb, k, seeds[k],
                                     samples + (size_t)k * C, (size_t)C))
                    goto oom;
        }
    }
    if (s->observe && at != n_given) {
        snprintf(why, sizeof why, "the scored run has %zu samples of this document beyond its cuts (another "
                 "tokenization?)", n_given - at);
        goto doc_error;
    }
    if (job_doc_end(r)) goto oom;
    rc = 0;
    goto out;
layout:
    /* Never expected: the engine and the schema disagree on what pos and
     * context_len are, and the stored rows would misstate them. */
    snprintf(why, sizeof why, "internal: positions or context lengths not as sequence_stats derives them");
doc_error:
    /* The document's partial rows go; it keeps its reason. */
    doc_discard(r);
    {
        char **e = vec_push(&r->errors, 1);
        if (!e || !(*e = strdup(why))) goto oom;
        ((db_docres_t *)r->docs.p)[r->docs.n - 1].error = *e;
    }
    log_warn("document %lld: %s", (long long)doc_id, why);
    rc = 0;
    goto out;
oom:
    log_seterr(err, errlen, "out of memory measuring document %lld", (long long)doc_id);
out:
    free(offs);
    free(tokens);
    free(cuts);
    free(ids);
    return rc;
}
