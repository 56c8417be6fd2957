/* table.c - see table.h. */
#include "table.h"

#include <stdlib.h>
#include <string.h>

/* Display width of a UTF-8 string: its characters (continuation bytes not
 * counted). */
static int width(const char *s) {
    int w = 0;
    for (; s && *s; s++) w += ((unsigned char)*s & 0xC0) != 0x80;
    return w;
}

static void pad_print(FILE *f, int w, const char *s) {
    for (int i = width(s); i < w; i++) fputc(' ', f);
    fputs(s ? s : "", f);
}

void table_print(const db_table_t *t, FILE *f) {
    int *w = calloc(t->n_cols ? t->n_cols : 1, sizeof *w);
    if (!w) return;
    for (size_t c = 0; c < t->n_cols; c++) {
        w[c] = width(t->names[c]);
        for (size_t r = 0; r < t->n_rows; r++) {
            int k = width(t->cells[r * t->n_cols + c]);
            if (k > w[c]) w[c] = k;
        }
    }
    for (size_t c = 0; c < t->n_cols; c++) {
        fputs(c ? "  " : "", f);
        pad_print(f, w[c], t->names[c]);
    }
    fputc('\n', f);
    for (size_t c = 0; c < t->n_cols; c++) {
        fputs(c ? "  " : "", f);
        for (int i = 0; i < w[c]; i++) fputc('-', f);
    }
    fputc('\n', f);
    for (size_t r = 0; r < t->n_rows; r++) {
        for (size_t c = 0; c < t->n_cols; c++) {
            fputs(c ? "  " : "", f);
            pad_print(f, w[c], t->cells[r * t->n_cols + c]);
        }
        fputc('\n', f);
    }
    free(w);
}

int table_print_report(db_t *db, int64_t run_id, db_report_t which, FILE *f, char *err, size_t errlen) {
    db_table_t t;
    if (db_report_rows(db, run_id, which, &t, err, errlen)) return -1;
    table_print(&t, f);
    db_table_free(&t);
    return 0;
}
