/* report.h - `tokshift report`: a run's results as a self-contained HTML page
 * (inline SVG plots, no scripts, no network) and CSV files.
 *
 * What it is: a reader of the database's report views (through db.h, which
 * owns every SQL statement) and a writer of files.  What it is not: a place
 * where statistics are computed; means and standard errors come from the
 * views (only the calibration plot's binomial error bars are derived here).
 */
#ifndef TS_REPORT_H
#define TS_REPORT_H

#include <stddef.h>
#include <stdio.h>

#include "db.h"

/* Writes DIR/index.html, DIR/position_stats.csv, DIR/shift_by_bucket.csv and
 * DIR/calibration.csv for the run `run` (a name or a decimal id), creating
 * DIR if needed.  Returns 0, 1 when there is no such run, or -1; with a
 * message in err on failure. */
int report_write(db_t *db, const char *run, const char *dir, char *err, size_t errlen);

/* Writes s as one RFC 4180 CSV field (quoted when it holds a comma, a quote,
 * CR or LF; quotes doubled).  NULL is an empty field. */
void report_csv_field(FILE *f, const char *s);
/* Writes s with &, <, >, " and ' escaped for HTML text and attributes. */
void report_html_text(FILE *f, const char *s);

#endif
