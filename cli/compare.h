/* compare.h - `tokshift compare` and `tokshift auroc`: runs side by side.
 *
 * What it is: the two commands' option parsing and output: for runs over
 * the same corpus with the same cuts and seed (checked first; the command
 * refuses, naming what differs; runs whose tokenizers differ pair by the
 * cuts' byte offsets), each run's human-continuation and sample
 * gap, surprisal and entropy by position bucket with clustered standard
 * errors, the differences of every run from the first with standard errors
 * paired by document, the calibration of each, and the AUROC of telling
 * human continuations from samples by each statistic with a bootstrap
 * interval over documents.  What it is not: the statistics (the views of
 * sql/migrations/008_paired.sql; cli/auroc.c) or database access
 * (common/db_compare.c). */
#ifndef TS_COMPARE_H
#define TS_COMPARE_H

#include <stdint.h>

#include "db.h"

/* How many bootstrap resamples the AUROC's interval takes unless told. */
#define COMPARE_N_BOOT 200

/* The AUROC of run run_id's human continuations vs samples by each
 * sequence's mean surprisal, gap and z, into *out: one row per statistic,
 * columns stat, n_human, n_sample, auroc, lo95, hi95 (the 95 % percentile
 * bootstrap interval of n_boot resamples of documents, fixed seed; empty
 * cells where undefined, or without resamples).  Free *out with
 * db_table_free.  0, or -1 with a message (*out then empty).  Linear in
 * the run's sequences, times n_boot + 1. */
int compare_auroc_rows(db_t *db, int64_t run_id, int n_boot, db_table_t *out, char *err, size_t errlen);

/* tokshift compare RUN_A RUN_B [RUN ...] [--db C] [--boot N]: 0, 1 on an
 * error or runs that are not comparable, 2 on bad usage. */
int compare_main(int argc, char **argv);

/* tokshift auroc RUN [RUN ...] [--db C] [--boot N]: 0, 1 on an error, 2 on
 * bad usage. */
int compare_auroc_main(int argc, char **argv);

#endif
