/* report.h - `tokshift report`: a run's results as a self-contained HTML page
 * (inline SVG plots, no scripts, no network) and CSV files.
 *
 * What it is: a reader of the database's report views (through db.h, which
 * owns every SQL statement) and a writer of files.  What it is not: a place
 * where statistics are computed; means and standard errors come from the
 * views, the AUROC and its bootstrap interval from compare_auroc_rows.
 */
#ifndef TS_REPORT_H
#define TS_REPORT_H

#include <stddef.h>
#include <stdio.h>

#include "db.h"

/* Writes DIR/index.html (the runs on shared axes), and
 * DIR/position_stats.csv, shift_by_bucket.csv, calibration.csv,
 * document_gap.csv and auroc.csv (each row led by its run's name) for the
 * n_runs >= 1
 * runs `runs` (names or decimal ids; at most 7, one colour each), creating
 * DIR if needed.  Returns 0, 1 when a run does not exist (DIR untouched), or
 * -1; with a message in err on failure. */
int report_write(db_t *db, const char *const *runs, size_t n_runs, const char *dir, char *err, size_t errlen);

/* Writes s as one RFC 4180 CSV field (quoted when it holds a comma, a quote,
 * CR or LF; quotes doubled).  NULL is an empty field. */
void report_csv_field(FILE *f, const char *s);
/* Writes s with &, <, >, " and ' escaped for HTML text and attributes. */
void report_html_text(FILE *f, const char *s);

#endif
