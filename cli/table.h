/* table.h - prints a database table (db_table_t) for a person.
 *
 * What it is: an aligned plain-text table on a stdio stream, as the
 * coordinator's closing summary and `tokshift status` show it.  What it is
 * not: a query (common/db_report.c reads the tables) or a report format
 * (cli/report.c writes HTML and CSV).
 */
#ifndef TS_TABLE_H
#define TS_TABLE_H

#include <stdio.h>

#include "db.h"

/* Writes t to f: a header of column names, a rule, then one line per row,
 * each column right-aligned to its widest cell (counted in UTF-8 characters,
 * so "±" takes one column); SQL NULLs print as empty cells. */
void table_print(const db_table_t *t, FILE *f);

/* Reads one of the report tables of run_id (db_report_rows) and prints it to
 * f.  0, or -1 with a message (nothing printed). */
int table_print_report(db_t *db, int64_t run_id, db_report_t which, FILE *f, char *err, size_t errlen);

#endif
