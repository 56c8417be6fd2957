/* storage_bench.c - writes synthetic jobs through the real write path, to
 * measure storage and query times at scale without running a model.
 *
 * Usage: storage_bench CONNINFO RUN_ID N_JOBS DOCS_PER_JOB DOC_LEN WINDOW STRIDE CUT_EVERY CONT_LEN SAMPLES
 *
 * The run, its documents (doc_id = job * DOCS_PER_JOB + i, DOC_LEN tokens
 * each) and its jobs must exist, each job leased with attempt token
 * job_id + 1 (bench/storage_scale.sh does that in SQL).  For every job it
 * builds what a worker builds for such documents — the human text at pos
 * 1..DOC_LEN-1 with the context lengths of windows of WINDOW every STRIDE
 * tokens, and at every CUT_EVERY tokens a human continuation and SAMPLES
 * samples of CONT_LEN tokens, with the worker's sequence numbering — but
 * with pseudo-random statistics instead of the model's, through job.c
 * (job_doc_begin / job_add_sequence / job_doc_end: the same arrays and
 * rollups) and db_commit_job (the same COPYs, fence and transaction).  It
 * prints the tokens written, the seconds spent in db_commit_job and the
 * rate.  What it is not: a measure of the engine (the statistics cost
 * nothing to make here). */
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "db.h"
#include "experiment.h"
#include "job.h"
#include "log.h"
#include "now.h"

/* xorshift64*: reproducible statistics. */
static uint64_t g_rng = 0x9e3779b97f4a7c15ull;
static double unif(void) {
    g_rng ^= g_rng >> 12, g_rng ^= g_rng << 25, g_rng ^= g_rng >> 27;
    return (double)((g_rng * 2685821657736338717ull) >> 11) * 0x1.0p-53;
}

/* Plausible statistics of a 32k vocabulary: rank 1 about half the time. */
static void fake(experiment_row_t *r, int pos, int ctx) {
    double h = 0.2 + 4.5 * unif(), top1 = -h * unif() * 0.8;
    int32_t rank = unif() < 0.5 ? 1 : 1 + (int32_t)(exp(unif() * 8));
    r->pos = pos;
    r->token = (int32_t)(unif() * 32000);
    r->st.logprob = rank == 1 ? top1 : top1 - 0.1 - 6 * unif();
    r->st.entropy = h;
    r->st.rank = rank;
    r->st.top1_logprob = top1;
    r->st.varentropy = unif() < 0.02 ? 0 : 0.5 + 6 * unif();
    r->st.context_len = ctx;
}

int main(int argc, char **argv) {
    if (argc != 11)
        log_die("", "usage: storage_bench CONNINFO RUN_ID N_JOBS DOCS_PER_JOB DOC_LEN WINDOW STRIDE CUT_EVERY "
                    "CONT_LEN SAMPLES");
    int64_t run_id = strtoll(argv[2], NULL, 10);
    int n_jobs = atoi(argv[3]), per_job = atoi(argv[4]), n = atoi(argv[5]), W = atoi(argv[6]), S = atoi(argv[7]),
        every = atoi(argv[8]), C = atoi(argv[9]), K = atoi(argv[10]);
    if (n_jobs < 1 || per_job < 1 || n < 2 || W < 2 || S < 1 || S >= W || every < 1 || C < 1 || C >= W || K < 0)
        log_die("", "storage_bench: bad sizes");
    char err[LOG_ERRLEN];
    db_t *db = db_connect(argv[1], err, sizeof err);
    job_result_t *res = job_result_new();
    experiment_row_t *rows = malloc((size_t)(n > C ? n : C) * sizeof *rows);
    if (!db || !res || !rows) log_die("", "storage_bench: %s", db ? "out of memory" : err);
    double write_s = 0, t0 = now_s();
    int64_t tokens = 0, seqs = 0;
    for (int j = 0; j < n_jobs; j++) {
        job_result_reset(res);
        for (int d = 0; d < per_job; d++) {
            int64_t doc_id = (int64_t)j * per_job + d;
            if (job_doc_begin(res, doc_id, n)) log_die("", "storage_bench: out of memory");
            for (int t = 1; t < n; t++) fake(&rows[t - 1], t, t < W ? t : t - S * ((t - W) / S + 1));
            if (job_add_sequence(res, DB_KIND_HUMAN, 0, 0, -1, 0, 0, rows, (size_t)n - 1))
                log_die("", "storage_bench: out of memory");
            int base = 1;
            for (int cut = every; cut + C <= n; cut += every, base += K + 1)
                for (int k = 0; k <= K; k++) {
                    int P = cut < W - C ? cut : W - C;
                    for (int i = 0; i < C; i++) fake(&rows[i], cut + i, P + i);
                    /* (a cut's byte offset: about 4 bytes a token) */
                    if (job_add_sequence(res, k ? DB_KIND_SAMPLE : DB_KIND_HUMAN_CONT, base + k, cut, 4 * cut, k - 1,
                                         (uint64_t)doc_id * 1000003u + (uint64_t)base + (uint64_t)k, rows,
                                         (size_t)C))
                        log_die("", "storage_bench: out of memory");
                }
            if (job_doc_end(res)) log_die("", "storage_bench: out of memory");
        }
        db_results_t r;
        if (job_result_view(res, &r)) log_die("", "storage_bench: out of memory");
        double w = 0;
        if (db_commit_job(db, run_id, j, j + 1, &r, &w, err, sizeof err))
            log_die("", "storage_bench: job %d: %s", j, err);
        write_s += w;
        tokens += (int64_t)r.n_toks;
        seqs += (int64_t)r.n_seqs;
    }
    printf("storage_bench: %" PRId64 " tokens in %" PRId64 " sequences, %d jobs; db_commit_job %.2f s "
           "(%.0f tokens/s), total %.2f s\n",
           tokens, seqs, n_jobs, write_s, tokens / write_s, now_s() - t0);
    free(rows);
    job_result_destroy(&res);
    db_destroy(&db);
    return 0;
}
