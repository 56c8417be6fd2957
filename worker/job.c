/* job.c - see job.h. */
#include "job.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "fault.h"
#include "log.h"
#include "tokenizer.h"

enum { KIND_HUMAN, KIND_HUMAN_CONT, KIND_SAMPLE, N_KINDS };
static const char *const g_kind_names[N_KINDS] = {"human", "human_cont", "sample"};

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

struct job_result {
    vec_t seqs, toks, docs, rollups;  /* db_seq_t, db_tok_t, db_docres_t, db_rollup_t */
    vec_t sums[N_KINDS];              /* db_rollup_t by position, per kind: the job */
    vec_t doc_sums[N_KINDS];          /* the same for the document being measured */
    vec_t errors;                     /* char * owned, for docres.error */
    vec_t rows;                       /* experiment_row_t scratch */
    vec_t seeds;                      /* uint64_t scratch */
};

job_result_t *job_result_new(void) {
    job_result_t *r = calloc(1, sizeof *r);
    if (!r) return NULL;
    r->seqs.size = sizeof(db_seq_t);
    r->toks.size = sizeof(db_tok_t);
    r->docs.size = sizeof(db_docres_t);
    r->rollups.size = sizeof(db_rollup_t);
    for (int k = 0; k < N_KINDS; k++) r->sums[k].size = r->doc_sums[k].size = sizeof(db_rollup_t);
    r->errors.size = sizeof(char *);
    r->rows.size = sizeof(experiment_row_t);
    r->seeds.size = sizeof(uint64_t);
    return r;
}

void job_result_reset(job_result_t *r) {
    for (size_t i = 0; i < r->errors.n; i++) free(((char **)r->errors.p)[i]);
    r->seqs.n = r->toks.n = r->docs.n = r->rollups.n = r->errors.n = 0;
    for (int k = 0; k < N_KINDS; k++) r->sums[k].n = r->doc_sums[k].n = 0;
}

void job_result_destroy(job_result_t **self_p) {
    if (!self_p || !*self_p) return;
    job_result_t *r = *self_p;
    job_result_reset(r);
    vec_t *all[] = {&r->seqs, &r->toks, &r->docs, &r->rollups, &r->errors, &r->rows, &r->seeds,
                    &r->sums[0], &r->sums[1], &r->sums[2], &r->doc_sums[0], &r->doc_sums[1], &r->doc_sums[2]};
    for (size_t i = 0; i < sizeof all / sizeof *all; i++) free(all[i]->p);
    free(r);
    *self_p = NULL;
}

int job_result_view(job_result_t *r, db_results_t *out) {
    /* Rollups: the non-empty positions of each kind, gathered on demand. */
    r->rollups.n = 0;
    for (int k = 0; k < N_KINDS; k++)
        for (size_t p = 0; p < r->sums[k].n; p++) {
            const db_rollup_t *s = (const db_rollup_t *)r->sums[k].p + p;
            if (!s->n) continue;
            db_rollup_t *d = vec_push(&r->rollups, 1);
            if (!d) return -1;
            *d = *s;
        }
    *out = (db_results_t){r->seqs.p, r->seqs.n, r->toks.p, r->toks.n, r->rollups.p, r->rollups.n,
                          r->docs.p, r->docs.n, 0.0};
    return 0;
}

/* Adds one token row to the rows and to the document's (kind, position)
 * rollup. */
static int add_tok(job_result_t *r, int kind, int64_t doc_id, int seq_no, int position, const experiment_row_t *e) {
    db_tok_t *t = vec_push(&r->toks, 1);
    if (!t) return -1;
    *t = (db_tok_t){doc_id, seq_no, e->pos, e->token, (float)e->st.logprob, (float)e->st.entropy, e->st.rank,
                    (float)e->st.top1_logprob, (float)e->st.varentropy, e->st.context_len};
    vec_t *sv = &r->doc_sums[kind];
    if ((size_t)position >= sv->n && !vec_push(sv, (size_t)position + 1 - sv->n)) return -1;
    db_rollup_t *s = (db_rollup_t *)sv->p + position;
    s->kind = g_kind_names[kind];
    s->position = position;
    double surprisal = -e->st.logprob, h = e->st.entropy, gap = surprisal - h;
    s->n++;
    s->sum_surprisal += surprisal, s->sumsq_surprisal += surprisal * surprisal;
    s->sum_entropy += h, s->sumsq_entropy += h * h;
    s->sum_gap += gap, s->sumsq_gap += gap * gap;
    if (e->st.varentropy > 0) {
        double z = gap / sqrt(e->st.varentropy);
        s->n_z++;
        s->sum_z += z, s->sumsq_z += z * z;
    }
    return 0;
}

/* Adds the document's rollups into the job's and clears them. */
static int merge_doc_sums(job_result_t *r) {
    for (int k = 0; k < N_KINDS; k++) {
        vec_t *d = &r->doc_sums[k], *j = &r->sums[k];
        if (d->n > j->n && !vec_push(j, d->n - j->n)) return -1;
        for (size_t p = 0; p < d->n; p++) {
            const db_rollup_t *a = (const db_rollup_t *)d->p + p;
            db_rollup_t *b = (db_rollup_t *)j->p + p;
            if (!a->n) continue;
            b->kind = a->kind;
            b->position = a->position;
            b->n += a->n, b->n_z += a->n_z;
            b->sum_surprisal += a->sum_surprisal, b->sumsq_surprisal += a->sumsq_surprisal;
            b->sum_entropy += a->sum_entropy, b->sumsq_entropy += a->sumsq_entropy;
            b->sum_gap += a->sum_gap, b->sumsq_gap += a->sumsq_gap;
            b->sum_z += a->sum_z, b->sumsq_z += a->sumsq_z;
        }
        d->n = 0;
    }
    return 0;
}

static int add_seq(job_result_t *r, const db_seq_t *s) {
    db_seq_t *d = vec_push(&r->seqs, 1);
    if (!d) return -1;
    *d = *s;
    return 0;
}

int job_measure_doc(experiment_t *ex, const model_t *m, const job_settings_t *s, int64_t doc_id, const char *text,
                    size_t text_len, job_result_t *r, volatile sig_atomic_t *cancel, char *err, size_t errlen) {
    int32_t *ids = NULL, *cuts = NULL;
    char why[LOG_ERRLEN];
    int rc = -1;
    size_t mark_seqs = r->seqs.n, mark_toks = r->toks.n;
    fault_maybe_crash_on_doc(doc_id); /* TOKSHIFT_FAULT crash_on_doc */
    long n = tokenizer_encode(m->tok, text, text_len, tokenizer_adds_bos(m->tok), &ids, err, errlen);
    if (n < 0) goto out;
    db_docres_t *dr = vec_push(&r->docs, 1);
    if (!dr) goto oom;
    dr->doc_id = doc_id;
    dr->n_tokens = (int32_t)n;
    size_t dr_index = r->docs.n - 1;

    /* Human text, in windows. */
    size_t need = n > 1 ? (size_t)n - 1 : 1;
    if (r->rows.cap < need && !vec_push(&r->rows, need)) goto oom;
    experiment_row_t *rows = r->rows.p;
    long nr = experiment_score(ex, ids, (int)n, s->stride, rows, why, sizeof why);
    if (nr < 0) goto doc_error;
    if (add_seq(r, &(db_seq_t){doc_id, 0, "human", -1, -1, 0, 0, 0, 0, (int32_t)nr})) goto oom;
    for (long i = 0; i < nr; i++)
        if (add_tok(r, KIND_HUMAN, doc_id, 0, rows[i].pos, &rows[i])) goto oom;

    /* Continuation experiments. */
    int C = s->cont.cont_len, K = s->cont.n_samples;
    size_t max_cuts = s->n_prefix_lengths + (s->cut_every > 0 ? (size_t)n / (size_t)s->cut_every + 1 : 0);
    if (C > 0 && max_cuts > 0) {
        if (fault_nth(FAULT_FAIL_ALLOC) || !(cuts = malloc(max_cuts * sizeof *cuts))) goto oom;
        size_t nc = experiment_cuts(s->prefix_lengths, s->n_prefix_lengths, s->cut_every, C, (int)n, cuts, max_cuts);
        size_t per_cut = (size_t)(K + 1) * C;
        r->rows.n = 0;
        if (!vec_push(&r->rows, per_cut)) goto oom;
        r->seeds.n = 0;
        if (!vec_push(&r->seeds, K ? (size_t)K : 1)) goto oom;
        rows = r->rows.p;
        uint64_t *seeds = r->seeds.p;
        for (size_t j = 0; j < nc; j++) {
            if (cancel && *cancel) {
                log_seterr(err, errlen, "cancelled");
                goto out;
            }
            experiment_row_t *human = rows, *samples = rows + C;
            if (experiment_continue(ex, ids, (int)n, cuts[j], (uint64_t)doc_id, human, samples, seeds, why,
                                    sizeof why))
                goto doc_error;
            int base = 1 + (int)j * (K + 1);
            if (add_seq(r, &(db_seq_t){doc_id, base, "human_cont", cuts[j], -1, 0, 0, 0, 0, C})) goto oom;
            for (int i = 0; i < C; i++)
                if (add_tok(r, KIND_HUMAN_CONT, doc_id, base, i, &human[i])) goto oom;
            for (int k = 0; k < K; k++) {
                db_seq_t sq = {doc_id, base + 1 + k, "sample", cuts[j], k, seeds[k], s->cont.sampling.temperature,
                               s->cont.sampling.top_p, s->cont.sampling.top_k, C};
                if (add_seq(r, &sq)) goto oom;
                for (int i = 0; i < C; i++)
                    if (add_tok(r, KIND_SAMPLE, doc_id, base + 1 + k, i, &samples[(size_t)k * C + i])) goto oom;
            }
        }
    }
    if (merge_doc_sums(r)) goto oom;
    rc = 0;
    goto out;
doc_error:
    /* The document's partial rows and sums go; it keeps its reason. */
    r->seqs.n = mark_seqs;
    r->toks.n = mark_toks;
    for (int k = 0; k < N_KINDS; k++) r->doc_sums[k].n = 0;
    {
        char **e = vec_push(&r->errors, 1);
        if (!e || !(*e = strdup(why))) goto oom;
        ((db_docres_t *)r->docs.p)[dr_index].error = *e;
    }
    log_warn("document %lld: %s", (long long)doc_id, why);
    rc = 0;
    goto out;
oom:
    log_seterr(err, errlen, "out of memory measuring document %lld", (long long)doc_id);
out:
    free(cuts);
    free(ids);
    return rc;
}
