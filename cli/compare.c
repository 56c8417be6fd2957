/* compare.c - see compare.h. */
#include "compare.h"

#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "auroc.h"
#include "db.h"
#include "log.h"
#include "num.h"
#include "table.h"

#define MAX_RUNS 32
#define BOOT_SEED 20260312u /* fixed: the same interval every time it is asked */

typedef struct {
    const char *conninfo;
    int n_boot;
    const char *names[MAX_RUNS];
    int64_t ids[MAX_RUNS];
    size_t n;
} opts_t;

/* Parses [--db C] [--boot N] RUN...; 0, 1 after --help, 2 on bad usage. */
static int parse(int argc, char **argv, const char *help, size_t min_runs, opts_t *o) {
    static const struct option lo[] = {{"db", required_argument, 0, 'd'},
                                       {"boot", required_argument, 0, 'b'},
                                       {"help", no_argument, 0, 'h'},
                                       {0}};
    *o = (opts_t){.conninfo = "", .n_boot = COMPARE_N_BOOT};
    int c;
    while ((c = getopt_long(argc, argv, "d:b:h", lo, NULL)) != -1) {
        switch (c) {
        case 'd': o->conninfo = optarg; break;
        case 'b': {
            long v;
            char err[LOG_ERRLEN];
            if (num_long(optarg, "--boot (resamples)", 0, 100000, &v, err, sizeof err)) {
                log_error("%s", err);
                return 2;
            }
            o->n_boot = (int)v;
            break;
        }
        case 'h': fputs(help, stdout); return 1;
        default: fprintf(stderr, "%s", help); return 2;
        }
    }
    for (; optind < argc; optind++) {
        if (o->n == MAX_RUNS) {
            log_error("at most %d runs at once", MAX_RUNS);
            return 2;
        }
        o->names[o->n++] = argv[optind];
    }
    if (o->n < min_runs) {
        fprintf(stderr, "%s", help);
        return 2;
    }
    return 0;
}

/* Looks the runs up by name or id; 0, or -1 with a message. */
static int find_runs(db_t *db, opts_t *o, char *err, size_t errlen) {
    for (size_t i = 0; i < o->n; i++) {
        if (db_run_find(db, o->names[i], &o->ids[i], err, errlen)) return -1;
    }
    return 0;
}

/* Prints table `which` under title (nothing when it has no rows and
 * skip_empty).  0, or -1 with a message. */
static int print_table(db_t *db, const opts_t *o, db_compare_t which, const char *title, int skip_empty, char *err,
                       size_t errlen) {
    db_table_t t;
    if (db_compare_rows(db, o->ids, o->n, which, &t, err, errlen)) return -1;
    if (t.n_rows || !skip_empty) {
        printf("%s\n", title);
        table_print(&t, stdout);
        printf("\n");
    }
    db_table_free(&t);
    return 0;
}

/* A cell of the AUROC table: malloc'd text. */
static char *cell(const char *fmt, double v) {
    char buf[64];
    if (isnan(v)) return strdup("");
    snprintf(buf, sizeof buf, fmt, v);
    return strdup(buf);
}

int compare_auroc_rows(db_t *db, int64_t run_id, int n_boot, db_table_t *out, char *err, size_t errlen) {
    static const char *const stats[] = {"surprisal", "gap", "z"};
    static const char *const cols[] = {"stat", "n_human", "n_sample", "auroc", "lo95", "hi95"};
    enum { N_COLS = sizeof cols / sizeof *cols, N_STATS = sizeof stats / sizeof *stats };
    db_seqmean_t *m = NULL;
    auroc_item_t *it = NULL;
    size_t n;
    int rc = -1;
    *out = (db_table_t){.n_cols = N_COLS};
    if (db_seq_means(db, run_id, &m, &n, err, errlen)) return -1;
    if (!(out->names = calloc(N_COLS, sizeof *out->names)) ||
        !(out->cells = calloc(N_STATS * N_COLS, sizeof *out->cells)) || !(it = malloc((n ? n : 1) * sizeof *it)))
        goto oom;
    for (size_t c = 0; c < N_COLS; c++)
        if (!(out->names[c] = strdup(cols[c]))) goto oom;
    for (int s = 0; s < N_STATS; s++) {
        /* Clusters are documents, numbered in doc_id order (m is sorted). */
        size_t k = 0, n_h = 0, n_s = 0;
        uint32_t cl = 0;
        for (size_t i = 0; i < n; i++) {
            double x = s == 0 ? m[i].surprisal : s == 1 ? m[i].gap : m[i].z;
            if (i && m[i].doc_id != m[i - 1].doc_id) cl++;
            if (isnan(x)) continue;
            it[k++] = (auroc_item_t){x, cl, m[i].human};
            n_h += m[i].human, n_s += !m[i].human;
        }
        auroc_sort(it, k);
        double a = auroc_weighted(it, k, NULL), lo = NAN, hi = NAN;
        if (n_boot > 0 && auroc_bootstrap(it, k, n ? (size_t)cl + 1 : 0, n_boot, BOOT_SEED, 0.95, &lo, &hi))
            goto oom;
        char **row = out->cells + out->n_rows * N_COLS;
        out->n_rows++; /* (its cells freed with the table, even half made) */
        if (!(row[0] = strdup(stats[s])) || !(row[1] = cell("%.0f", (double)n_h)) ||
            !(row[2] = cell("%.0f", (double)n_s)) || !(row[3] = cell("%.17g", a)) || !(row[4] = cell("%.17g", lo)) ||
            !(row[5] = cell("%.17g", hi)))
            goto oom;
    }
    rc = 0;
    goto done;
oom:
    log_seterr(err, errlen, "out of memory computing the AUROC");
    db_table_free(out);
done:
    free(m);
    free(it);
    return rc;
}

/* The AUROC of each run and statistic with its bootstrap interval, as a
 * table; 0, or -1 with a message. */
static int print_auroc(db_t *db, const opts_t *o, char *err, size_t errlen) {
    static const char *const cols[] = {"run", "stat", "n_human", "n_sample", "auroc", "95% interval"};
    enum { N_COLS = sizeof cols / sizeof *cols, N_STATS = 3 };
    db_table_t t = {0}, a = {0};
    int rc = -1;
    t.n_cols = N_COLS;
    if (!(t.names = calloc(N_COLS, sizeof *t.names)) || !(t.cells = calloc(o->n * N_STATS * N_COLS, sizeof *t.cells)))
        goto oom;
    for (size_t c = 0; c < N_COLS; c++)
        if (!(t.names[c] = strdup(cols[c]))) goto oom;
    for (size_t r = 0; r < o->n; r++) {
        db_table_free(&a);
        if (compare_auroc_rows(db, o->ids[r], o->n_boot, &a, err, errlen)) goto error;
        for (size_t k = 0; k < a.n_rows && k < N_STATS; k++) {
            const char *const *in = (const char *const *)a.cells + k * a.n_cols;
            char **row = t.cells + t.n_rows * N_COLS;
            char au[32] = "", iv[96] = "";
            t.n_rows++;
            if (*in[3]) snprintf(au, sizeof au, "%.4f", strtod(in[3], NULL));
            if (*in[4]) snprintf(iv, sizeof iv, "[%.4f, %.4f]", strtod(in[4], NULL), strtod(in[5], NULL));
            if (!(row[0] = strdup(o->names[r])) || !(row[1] = strdup(in[0])) || !(row[2] = strdup(in[1])) ||
                !(row[3] = strdup(in[2])) || !(row[4] = strdup(au)) || !(row[5] = strdup(iv)))
                goto oom;
        }
    }
    printf("AUROC of human continuation vs sample by the sequence's mean statistic "
           "(P(human > sample); 0.5: indistinguishable; interval: %d bootstrap resamples of documents)\n",
           o->n_boot);
    table_print(&t, stdout);
    printf("\n");
    rc = 0;
    goto error;
oom:
    log_seterr(err, errlen, "out of memory computing the AUROC");
error:
    db_table_free(&t);
    db_table_free(&a);
    return rc;
}

/* The two commands: parse, connect, look the runs up; then, with full
 * (compare), check they are comparable and print every table, else only the
 * AUROC.  0, 1 on an error, 2 on bad usage. */
static int run_command(int argc, char **argv, const char *help, size_t min_runs, int full) {
    opts_t o;
    int r = parse(argc, argv, help, min_runs, &o);
    if (r) return r == 1 ? 0 : r;
    char err[LOG_ERRLEN];
    char *why = NULL;
    int rc = 1;
    db_t *db = db_connect(o.conninfo, err, sizeof err);
    if (!db || find_runs(db, &o, err, sizeof err)) goto error;
    for (size_t i = 1; full && i < o.n; i++) {
        if (db_runs_differ(db, o.ids[0], o.ids[i], &why, err, sizeof err)) goto error;
        if (why) {
            log_seterr(err, sizeof err, "runs '%s' and '%s' are not comparable: %s", o.names[0], o.names[i], why);
            goto error;
        }
    }
    if (full &&
        (print_table(db, &o, DB_COMPARE_BUCKETS,
                     "By position bucket after the cut (± standard error clustered by document):", 0, err,
                     sizeof err) ||
         print_table(db, &o, DB_COMPARE_CUTS,
                     "Runs whose tokenizers differ: their continuations pair where both cut a document at the same "
                     "byte:", 1, err, sizeof err) ||
         print_table(db, &o, DB_COMPARE_DIFFS,
                     "Differences from the first run (± standard error paired by document; 'all, by byte': over "
                     "the cuts both runs made at the same byte, all positions):",
                     0, err, sizeof err) ||
         print_table(db, &o, DB_COMPARE_CALIBRATION, "Calibration (accuracy ± standard error clustered by document):",
                     0, err, sizeof err)))
        goto error;
    if (print_auroc(db, &o, err, sizeof err)) goto error;
    rc = 0;
error:
    if (rc) log_error("%s", err);
    free(why);
    db_destroy(&db);
    return rc;
}

int compare_main(int argc, char **argv) {
    static const char *const help =
        "usage: tokshift compare RUN_A RUN_B [RUN ...] [--db CONNINFO] [--boot N]\n\n"
        "Compares runs (by name or id) over the same corpus with the same cuts and seed\n"
        "(window, stride, prefix lengths, cut intervals, continuation length, seed; the\n"
        "models, temperature, top-k/p and samples may differ; the tokenizers may differ\n"
        "when the cuts are placed in bytes, --cut-every-bytes: such runs pair cut by cut\n"
        "where both cut a document at the same byte, over all positions after the cut),\n"
        "document by document.  Prints by position bucket after the cut: each run's\n"
        "human-continuation and sample gap, surprisal and entropy with standard errors\n"
        "clustered by document; each run minus the first with standard errors paired by\n"
        "document; the calibration of each; and the AUROC of telling human\n"
        "continuations from samples with a bootstrap interval over documents (N\n"
        "resamples, default 200).  Refuses runs that are not comparable, naming what\n"
        "differs.\n";
    return run_command(argc, argv, help, 2, 1);
}

int compare_auroc_main(int argc, char **argv) {
    static const char *const help =
        "usage: tokshift auroc RUN [RUN ...] [--db CONNINFO] [--boot N]\n\n"
        "Prints, per run, the AUROC of telling human continuations from model samples\n"
        "by each sequence's mean surprisal, mean gap and mean z (Fast-DetectGPT's\n"
        "criterion): P(human > sample) + P(tie) / 2, with a 95 % percentile bootstrap\n"
        "interval from N resamples of documents (default 200).\n";
    return run_command(argc, argv, help, 1, 0);
}
