/* report.c - `tokshift report`: several runs' results on shared axes, as
 * one self-contained HTML page (inline SVG, no scripts) and CSV files. */
#include "report.h"

#include <assert.h>
#include <errno.h>
#include <jansson.h>
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "compare.h"
#include "log.h"

/* Okabe & Ito's colour-blind-safe palette (yellow last: faint on white);
 * one colour per run.  Human vs model is told by the line's dash and the
 * marker's shape, so it survives grey-scale printing too. */
static const char *const PALETTE[] = {"#0072B2", "#D55E00", "#009E73", "#CC79A7",
                                      "#E69F00", "#56B4E9", "#000000"};
#define N_PALETTE (sizeof PALETTE / sizeof *PALETTE)

/* ---- text escaping ------------------------------------------------------ */

void report_csv_field(FILE *f, const char *s) {
    if (!s) return;
    if (!strpbrk(s, ",\"\r\n")) {
        fputs(s, f);
        return;
    }
    fputc('"', f);
    for (; *s; s++) {
        if (*s == '"') fputc('"', f);
        fputc(*s, f);
    }
    fputc('"', f);
}

void report_html_text(FILE *f, const char *s) {
    if (!s) return;
    for (; *s; s++) {
        switch (*s) {
        case '&': fputs("&amp;", f); break;
        case '<': fputs("&lt;", f); break;
        case '>': fputs("&gt;", f); break;
        case '"': fputs("&quot;", f); break;
        case '\'': fputs("&#39;", f); break;
        default: fputc(*s, f);
        }
    }
}

/* ---- tables ------------------------------------------------------------- */

static int col_of(const db_table_t *t, const char *name) {
    for (size_t c = 0; c < t->n_cols; c++)
        if (!strcmp(t->names[c], name)) return (int)c;
    return -1;
}

static const char *cell(const db_table_t *t, size_t row, const char *name) {
    int c = col_of(t, name);
    return c < 0 || row >= t->n_rows ? NULL : t->cells[row * t->n_cols + (size_t)c];
}

static double cell_d(const db_table_t *t, size_t row, const char *name) {
    const char *s = cell(t, row, name);
    if (!s || !*s) return NAN;
    char *end;
    double v = strtod(s, &end);
    return *end ? NAN : v;
}

/* One run's tables, as the views give them (T_AUROC: as
 * compare_auroc_rows computes it). */
enum { T_RUN, T_POS, T_SHIFT, T_CAL, T_GAP, T_AUROC, N_T };
typedef struct {
    const char *name; /* the run's name, as stored */
    const char *color;
    db_table_t t[N_T];
} run_data_t;

/* Writes the tables t[which] of every run as one CSV file, each row led by
 * its run's name.  Returns 0 or -1 with a message. */
static int write_csv(const char *path, const run_data_t *runs, size_t n_runs, int which, char *err,
                     size_t errlen) {
    FILE *f = fopen(path, "w");
    if (!f) return log_seterr(err, errlen, "cannot write %s: %s", path, strerror(errno));
    const db_table_t *t0 = &runs[0].t[which];
    fputs("run", f);
    for (size_t c = 0; c < t0->n_cols; c++) {
        fputc(',', f);
        report_csv_field(f, t0->names[c]);
    }
    fputs("\r\n", f);
    for (size_t i = 0; i < n_runs; i++) {
        const db_table_t *t = &runs[i].t[which];
        for (size_t r = 0; r < t->n_rows; r++) {
            report_csv_field(f, runs[i].name);
            for (size_t c = 0; c < t->n_cols; c++) {
                fputc(',', f);
                report_csv_field(f, t->cells[r * t->n_cols + c]);
            }
            fputs("\r\n", f);
        }
    }
    int bad = ferror(f);
    if (fclose(f) || bad) return log_seterr(err, errlen, "cannot write %s: %s", path, strerror(errno));
    return 0;
}

/* ---- SVG plots ---------------------------------------------------------- */

/* One line of a plot.  Error marks are ±1.96 se (a 95 % interval when the
 * standard error is right), or [lo, hi] when lo is set (an interval given
 * as such: a bootstrap's), drawn as bars or, with `band`, as a shaded band;
 * se[i] (lo[i], hi[i]) may be NAN: no mark.  With `points`, no line joins
 * the markers (x is a category, not an order). */
typedef struct {
    char label[160];
    const char *color;
    int dashed, square, band, points;
    size_t n;
    double *x, *y, *se, *lo, *hi;
} series_t;

typedef struct {
    const char *title, *xlabel, *ylabel;
    int ref_line;              /* y = ref_y, labelled ref_label */
    double ref_y;
    int diagonal;              /* y = x on [0, 1] x [0, 1] */
    const char *ref_label;     /* what the reference line means */
    const char *mark_label;    /* what the error marks are; NULL: none */
    double x_offset;           /* series i is shifted by (i - (n-1)/2) * x_offset */
    const char *const *xcats;  /* when set: x is 0 .. n_xcats-1, ticks named so */
    size_t n_xcats;
} plot_t;

/* The canvas: 1300 x 560 user units, shown at the page's full width (about
 * 1,300 px on a 1,400 px window); the plot area on the left, the legend in
 * a column on its right. */
enum { W = 1300, H = 560, PL = 80, PR = 960, PT = 45, PB = 490, LX = 985 };
#define Z95 1.959964 /* the normal 97.5 % quantile */

static double nice_step(double range) {
    if (!(range > 0)) return 1;
    double e = pow(10, floor(log10(range / 8))), f = range / 8 / e;
    return (f < 1.5 ? 1 : f < 3 ? 2 : f < 7 ? 5 : 10) * e;
}

static void axis_range(double lo, double hi, double *a, double *b, double *step) {
    if (!(hi > lo)) lo -= 1, hi += 1;
    *step = nice_step(hi - lo);
    *a = floor(lo / *step) * *step;
    *b = ceil(hi / *step) * *step;
}

static int decimals(double step) {
    int d = (int)-floor(log10(step) + 1e-9);
    return d < 0 ? 0 : d > 6 ? 6 : d;
}

/* The lower and upper ends of point j's error mark (NAN: none). */
static double mark_lo(const series_t *q, size_t j) {
    return q->lo ? q->lo[j] : q->y[j] - Z95 * q->se[j];
}
static double mark_hi(const series_t *q, size_t j) {
    return q->hi ? q->hi[j] : q->y[j] + Z95 * q->se[j];
}

static void svg_marker(FILE *f, const series_t *q, double X, double Y) {
    if (q->square)
        fprintf(f, "<rect x=\"%.1f\" y=\"%.1f\" width=\"6\" height=\"6\" fill=\"%s\"/>", X - 3, Y - 3, q->color);
    else
        fprintf(f, "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"3\" fill=\"%s\"/>", X, Y, q->color);
}

/* Writes one plot as an inline <svg> with its axes in <g class="axes"> and
 * its legend in <g class="legend"> (the browser test looks for both). */
static void svg_plot(FILE *f, const plot_t *p, const series_t *s, size_t ns) {
    double x0 = INFINITY, x1 = -INFINITY, y0 = INFINITY, y1 = -INFINITY;
    size_t n_points = 0;
    for (size_t i = 0; i < ns; i++)
        for (size_t j = 0; j < s[i].n; j++) {
            double y = s[i].y[j], a = mark_lo(&s[i], j), b = mark_hi(&s[i], j);
            if (!isfinite(y) || !isfinite(s[i].x[j])) continue;
            x0 = fmin(x0, s[i].x[j]), x1 = fmax(x1, s[i].x[j]);
            y0 = fmin(y0, isfinite(a) ? fmin(a, y) : y), y1 = fmax(y1, isfinite(b) ? fmax(b, y) : y);
            n_points++;
        }
    if (!n_points) x0 = 0, x1 = 1, y0 = 0, y1 = 1;
    if (p->ref_line) y0 = fmin(y0, p->ref_y), y1 = fmax(y1, p->ref_y);
    double xa, xb, xs, ya, yb, ys;
    if (p->diagonal) xa = ya = 0, xb = yb = 1, xs = ys = 0.1;
    else if (p->xcats) xa = -0.5, xb = (double)p->n_xcats - 0.5, xs = 1, axis_range(y0, y1, &ya, &yb, &ys);
    else axis_range(x0, x1, &xa, &xb, &xs), axis_range(y0, y1, &ya, &yb, &ys);
    double pad = p->x_offset * (double)ns; /* room for the shifted series */
#define SX(v) (PL + ((v) - (xa - pad)) / ((xb + pad) - (xa - pad)) * (PR - PL))
#define SY(v) (PB - ((v) - ya) / (yb - ya) * (PB - PT))

    fprintf(f, "<svg xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 %d %d\" width=\"%d\" height=\"%d\" "
               "style=\"width:100%%;height:auto\" font-family=\"sans-serif\" font-size=\"15\" role=\"img\" "
               "aria-label=\"", W, H, W, H);
    report_html_text(f, p->title);
    fputs("\">\n<rect width=\"100%\" height=\"100%\" fill=\"#fff\"/>\n", f);
    fprintf(f, "<text x=\"%d\" y=\"26\" text-anchor=\"middle\" font-size=\"19\" font-weight=\"bold\">",
            (PL + PR) / 2);
    report_html_text(f, p->title);
    fputs("</text>\n<g class=\"axes\">\n", f);
    int xd = decimals(xs), yd = decimals(ys);
    if (p->xcats) {
        for (size_t k = 0; k < p->n_xcats; k++) {
            double X = SX((double)k);
            fprintf(f, "<line x1=\"%.1f\" y1=\"%d\" x2=\"%.1f\" y2=\"%d\" stroke=\"#e5e5e5\"/>", X, PT, X, PB);
            fprintf(f, "<text x=\"%.1f\" y=\"%d\" text-anchor=\"middle\">", X, PB + 20);
            report_html_text(f, p->xcats[k]);
            fputs("</text>\n", f);
        }
    } else {
        for (double v = xa; v <= xb + xs * 1e-6; v += xs) {
            double X = SX(v);
            fprintf(f, "<line x1=\"%.1f\" y1=\"%d\" x2=\"%.1f\" y2=\"%d\" stroke=\"#e5e5e5\"/>", X, PT, X, PB);
            fprintf(f, "<text x=\"%.1f\" y=\"%d\" text-anchor=\"middle\">%.*f</text>\n", X, PB + 20, xd, v);
        }
    }
    for (double v = ya; v <= yb + ys * 1e-6; v += ys) {
        double Y = SY(v);
        fprintf(f, "<line x1=\"%d\" y1=\"%.1f\" x2=\"%d\" y2=\"%.1f\" stroke=\"#e5e5e5\"/>", PL, Y, PR, Y);
        fprintf(f, "<text x=\"%d\" y=\"%.1f\" text-anchor=\"end\">%.*f</text>\n", PL - 8, Y + 5, yd, v);
    }
    fprintf(f, "<rect x=\"%d\" y=\"%d\" width=\"%d\" height=\"%d\" fill=\"none\" stroke=\"#444\"/>\n", PL, PT,
            PR - PL, PB - PT);
    fprintf(f, "<text x=\"%d\" y=\"%d\" text-anchor=\"middle\">", (PL + PR) / 2, PB + 50);
    report_html_text(f, p->xlabel);
    fprintf(f, "</text>\n<text transform=\"translate(22 %d) rotate(-90)\" text-anchor=\"middle\">", (PT + PB) / 2);
    report_html_text(f, p->ylabel);
    fputs("</text>\n", f);
    if (p->ref_line)
        fprintf(f, "<line x1=\"%d\" y1=\"%.1f\" x2=\"%d\" y2=\"%.1f\" stroke=\"#000\" stroke-dasharray=\"2 3\"/>\n",
                PL, SY(p->ref_y), PR, SY(p->ref_y));
    if (p->diagonal)
        fprintf(f, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#000\" stroke-dasharray=\"2 3\"/>\n",
                SX(0), SY(0), SX(1), SY(1));
    fputs("</g>\n", f);
    /* series: error marks, line, markers */
    for (size_t i = 0; i < ns; i++) {
        double dx = ((double)i - (double)(ns - 1) / 2) * p->x_offset;
        const series_t *q = &s[i];
        fputs("<g class=\"series\">\n", f);
        if (q->band) { /* the upper edge left to right, the lower one back */
            int any = 0;
            for (size_t j = 0; j < q->n; j++) any |= isfinite(q->y[j]) && isfinite(mark_lo(q, j));
            if (any) {
                fprintf(f, "<polygon fill=\"%s\" fill-opacity=\"0.18\" stroke=\"none\" points=\"", q->color);
                for (size_t j = 0; j < q->n; j++)
                    if (isfinite(q->y[j]) && isfinite(mark_hi(q, j)))
                        fprintf(f, "%.1f,%.1f ", SX(q->x[j] + dx), SY(mark_hi(q, j)));
                for (size_t j = q->n; j-- > 0;)
                    if (isfinite(q->y[j]) && isfinite(mark_lo(q, j)))
                        fprintf(f, "%.1f,%.1f ", SX(q->x[j] + dx), SY(mark_lo(q, j)));
                fputs("\"/>\n", f);
            }
        } else {
            for (size_t j = 0; j < q->n; j++) {
                if (!isfinite(q->y[j]) || !isfinite(mark_lo(q, j)) || !isfinite(mark_hi(q, j))) continue;
                double X = SX(q->x[j] + dx), Ya = SY(mark_lo(q, j)), Yb = SY(mark_hi(q, j));
                fprintf(f, "<path d=\"M%.1f %.1fV%.1fM%.1f %.1fh6M%.1f %.1fh6\" stroke=\"%s\" fill=\"none\"/>\n",
                        X, Ya, Yb, X - 3, Ya, X - 3, Yb, q->color);
            }
        }
        if (!q->points) {
            fprintf(f, "<polyline fill=\"none\" stroke=\"%s\" stroke-width=\"2.5\"%s points=\"", q->color,
                    q->dashed ? " stroke-dasharray=\"8 5\"" : "");
            for (size_t j = 0; j < q->n; j++)
                if (isfinite(q->y[j])) fprintf(f, "%.1f,%.1f ", SX(q->x[j] + dx), SY(q->y[j]));
            fputs("\"/>\n", f);
        }
        for (size_t j = 0; j < q->n; j++)
            if (isfinite(q->y[j])) svg_marker(f, q, SX(q->x[j] + dx), SY(q->y[j]));
        fputs("\n</g>\n", f);
    }
    /* legend: a column right of the plot area */
    fputs("<g class=\"legend\">\n", f);
    int ly = PT + 12;
    for (size_t i = 0; i < ns; i++, ly += 26) {
        fprintf(f, "<line x1=\"%d\" y1=\"%d\" x2=\"%d\" y2=\"%d\" stroke=\"%s\" stroke-width=\"2.5\"%s/>", LX, ly,
                LX + 40, ly, s[i].color, s[i].dashed ? " stroke-dasharray=\"8 5\"" : "");
        svg_marker(f, &s[i], LX + 20, ly);
        fprintf(f, "<text x=\"%d\" y=\"%d\">", LX + 48, ly + 5);
        report_html_text(f, s[i].label);
        fputs("</text>\n", f);
    }
    if (p->ref_label) {
        fprintf(f, "<line x1=\"%d\" y1=\"%d\" x2=\"%d\" y2=\"%d\" stroke=\"#000\" stroke-dasharray=\"2 3\"/>", LX,
                ly, LX + 40, ly);
        fprintf(f, "<text x=\"%d\" y=\"%d\">", LX + 48, ly + 5);
        report_html_text(f, p->ref_label);
        fputs("</text>\n", f);
        ly += 26;
    }
    if (p->mark_label) {
        fprintf(f, "<text x=\"%d\" y=\"%d\" fill=\"#555\">", LX, ly + 5);
        report_html_text(f, p->mark_label);
        fputs("</text>\n", f);
    }
    fputs("</g>\n", f);
    if (!n_points)
        fprintf(f, "<text x=\"%d\" y=\"%d\" text-anchor=\"middle\">no data yet</text>\n", (PL + PR) / 2,
                (PT + PB) / 2);
    fputs("</svg>\n", f);
#undef SX
#undef SY
}

/* The rows of t whose column `kind` equals kind (every row when kind is
 * NULL), as a series: x from column xc (the row's index in t when xc is
 * NULL), y from yc, se from sec (none when sec is ""). */
static int series_of(const db_table_t *t, const char *kind, const char *xc, const char *yc, const char *sec,
                     series_t *s) {
    s->n = 0;
    s->x = malloc((t->n_rows + 1) * sizeof *s->x);
    s->y = malloc((t->n_rows + 1) * sizeof *s->y);
    s->se = malloc((t->n_rows + 1) * sizeof *s->se);
    if (!s->x || !s->y || !s->se) return -1;
    for (size_t r = 0; r < t->n_rows; r++) {
        const char *k = cell(t, r, "kind");
        if (kind && (!k || strcmp(k, kind))) continue;
        s->x[s->n] = xc ? cell_d(t, r, xc) : (double)r;
        s->y[s->n] = cell_d(t, r, yc);
        s->se[s->n] = *sec ? cell_d(t, r, sec) : NAN;
        s->n++;
    }
    return 0;
}

/* Frees the series' arrays and clears them whole (styles included), so
 * that the array serves the next plot. */
static void series_free(series_t *s, size_t n) {
    for (size_t i = 0; i < n; i++) {
        free(s[i].x), free(s[i].y), free(s[i].se), free(s[i].lo), free(s[i].hi);
        memset(&s[i], 0, sizeof s[i]);
    }
}

/* ---- the page ----------------------------------------------------------- */

static const char *rv(const db_table_t *run, const char *name) {
    const char *s = cell(run, 0, name);
    return s ? s : "";
}

static void td(FILE *f, const char *v) {
    fputs("<td>", f);
    report_html_text(f, v ? v : "");
    fputs("</td>", f);
}

/* The runs side by side: one column each. */
static void runs_table(FILE *f, const run_data_t *runs, size_t n) {
    static const char *const rows[] = {"run id", "status", "model", "model identity (sha256)", "settings",
                                       "corpus", "documents", "jobs", "tokens scored", "created", "finished"};
    fputs("<table class=\"runs\"><tr><th></th>", f);
    for (size_t i = 0; i < n; i++) {
        fprintf(f, "<th><span class=\"sw\" style=\"background:%s\"></span> ", runs[i].color);
        report_html_text(f, runs[i].name);
        fputs("</th>", f);
    }
    fputs("</tr>\n", f);
    char buf[512];
    for (size_t k = 0; k < sizeof rows / sizeof *rows; k++) {
        fputs("<tr><th>", f);
        report_html_text(f, rows[k]);
        fputs("</th>", f);
        for (size_t i = 0; i < n; i++) {
            const db_table_t *r = &runs[i].t[T_RUN];
            switch (k) {
            case 0: td(f, rv(r, "run_id")); break;
            case 1: td(f, rv(r, "status")); break;
            case 2:
                snprintf(buf, sizeof buf, "%s (%s)", rv(r, "model_name"), rv(r, "model_arch"));
                td(f, buf);
                break;
            case 3: fputs("<td><code>", f), report_html_text(f, rv(r, "model_identity")), fputs("</code></td>", f); break;
            case 4: fputs("<td><code>", f), report_html_text(f, rv(r, "settings")), fputs("</code></td>", f); break;
            case 5: fputs("<td><code>", f), report_html_text(f, rv(r, "corpus")), fputs("</code></td>", f); break;
            case 6:
                snprintf(buf, sizeof buf, "%s done of %s (%s could not be used)", rv(r, "docs_done"),
                         rv(r, "n_docs"), rv(r, "docs_error"));
                td(f, buf);
                break;
            case 7:
                snprintf(buf, sizeof buf, "%s: %s done, %s failed, %s leased, %s pending; %s retries", rv(r, "jobs"),
                         rv(r, "jobs_done"), rv(r, "jobs_failed"), rv(r, "jobs_leased"), rv(r, "jobs_pending"),
                         rv(r, "retries"));
                td(f, buf);
                break;
            case 8: td(f, rv(r, "tokens_done")); break;
            case 9: td(f, rv(r, "created")); break;
            default: td(f, rv(r, "finished")); break;
            }
        }
        fputs("</tr>\n", f);
    }
    fputs("</table>\n", f);
}

/* Two series per run from table `which`: the human continuation (solid,
 * circles) and the model's samples (dashed, squares); kind_h names the
 * human kind.  s has room for 2 n series. */
static int pair_series(const run_data_t *runs, size_t n, int which, const char *kind_h, const char *xc,
                       const char *yc, const char *sec, series_t *s) {
    for (size_t i = 0; i < n; i++) {
        series_t *h = &s[2 * i], *m = &s[2 * i + 1];
        if (series_of(&runs[i].t[which], kind_h, xc, yc, sec, h) ||
            series_of(&runs[i].t[which], "sample", xc, yc, sec, m))
            return -1;
        snprintf(h->label, sizeof h->label, "%s: human", runs[i].name);
        snprintf(m->label, sizeof m->label, "%s: model samples", runs[i].name);
        h->color = m->color = runs[i].color;
        m->dashed = m->square = 1;
    }
    return 0;
}

static void figure(FILE *f, const char *id, const char *h2, const plot_t *p, const series_t *s, size_t ns,
                   const char *caption) {
    fprintf(f, "<h2 id=\"%s\">", id);
    report_html_text(f, h2);
    fputs("</h2>\n<figure>\n", f);
    svg_plot(f, p, s, ns);
    fputs("<figcaption>", f);
    fputs(caption, f); /* literal HTML written here, never data */
    fputs("</figcaption></figure>\n", f);
}

static const char *const SE_NOTE =
    " Error marks: ±1.96 × the standard error the views give (position_stats, shift_by_bucket).";

static int write_html(const char *path, const run_data_t *runs, size_t n, char *err, size_t errlen) {
    size_t ns = 2 * n;
    series_t *s = calloc(ns, sizeof *s);
    const char **cats = NULL;
    int rc = -1;
    FILE *f = fopen(path, "w");
    if (!f || !s) {
        free(s);
        if (f) fclose(f);
        return log_seterr(err, errlen, "cannot write %s: %s", path, f ? "out of memory" : strerror(errno));
    }
    fputs("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\n"
          "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n<title>tokshift report: ",
          f);
    for (size_t i = 0; i < n; i++) fputs(i ? ", " : "", f), report_html_text(f, runs[i].name);
    fputs("</title>\n<style>\n"
          "body{font-family:sans-serif;max-width:1340px;margin:1.5em auto;padding:0 20px;color:#222}\n"
          "table{border-collapse:collapse;margin:1em 0;width:100%;table-layout:fixed}\n"
          "th,td{border:1px solid #ccc;padding:3px 8px;text-align:left;font-size:14px;vertical-align:top;"
          "overflow-wrap:anywhere}\n"
          "table.runs th:first-child{width:13em}\n"
          "table.data td{text-align:right;font-variant-numeric:tabular-nums}\n"
          "th{background:#f3f3f3}figure{margin:1em 0}figcaption{color:#444;font-size:15px;max-width:75em}\n"
          "svg{display:block}.sw{display:inline-block;width:1em;height:1em;vertical-align:-2px}\n"
          "code{overflow-wrap:anywhere}\n</style></head><body>\n<h1>tokshift report: ",
          f);
    for (size_t i = 0; i < n; i++) fputs(i ? ", " : "", f), report_html_text(f, runs[i].name);
    fputs("</h1>\n", f);
    runs_table(f, runs, n);
    fputs("<p>Data (one row per run and point, led by the run's name): "
          "<a href=\"position_stats.csv\">position_stats.csv</a>, "
          "<a href=\"shift_by_bucket.csv\">shift_by_bucket.csv</a>, "
          "<a href=\"calibration.csv\">calibration.csv</a>, "
          "<a href=\"document_gap.csv\">document_gap.csv</a>, "
          "<a href=\"auroc.csv\">auroc.csv</a>.</p>\n",
          f);

    /* gap, surprisal, entropy by position */
    static const struct {
        const char *id, *h2, *title, *ylabel, *y, *se, *caption;
    } by_pos[] = {
        {"gap", "Gap (surprisal − entropy) by position", "Mean gap after the cut", "gap (nats)", "mean_gap", "se_gap",
         "The gap's expectation under the model's own distribution is 0: a model's samples should sit on the "
         "dotted line, and human text above it is more surprising than the model expects."},
        {"surprisal", "Surprisal by position", "Mean surprisal after the cut", "surprisal (nats)", "mean_surprisal",
         "se_surprisal", "Surprisal: −log p of the token that came."},
        {"entropy", "Entropy by position", "Mean entropy after the cut", "entropy (nats)", "mean_entropy",
         "se_entropy", "Entropy of the model's next-token distribution."},
    };
    for (size_t k = 0; k < sizeof by_pos / sizeof *by_pos; k++) {
        if (pair_series(runs, n, T_POS, "human_cont", "position", by_pos[k].y, by_pos[k].se, s)) goto oom;
        char cap[1024];
        snprintf(cap, sizeof cap,
                 "%s Colour: the run; solid with circles: the human continuation (teacher-forced); dashed with "
                 "squares: the model's own samples.%s",
                 by_pos[k].caption, SE_NOTE);
        figure(f, by_pos[k].id, by_pos[k].h2,
               &(plot_t){.title = by_pos[k].title, .xlabel = "position after the cut (tokens)",
                         .ylabel = by_pos[k].ylabel, .ref_line = k == 0,
                         .ref_label = k == 0 ? "0: the model's expectation" : NULL,
                         .mark_label = "bars: 95 % interval", .x_offset = 0.06},
               s, ns, cap);
        series_free(s, ns);
    }

    /* the shift by bucket, with its band; buckets named by their positions */
    size_t n_cats = 0;
    for (size_t i = 0; i < n; i++)
        for (size_t r = 0; r < runs[i].t[T_SHIFT].n_rows; r++) {
            double b = cell_d(&runs[i].t[T_SHIFT], r, "bucket");
            if (b >= 0 && b < 64 && (size_t)b + 1 > n_cats) n_cats = (size_t)b + 1;
        }
    cats = calloc(n_cats + 1, sizeof *cats);
    if (!cats) goto oom;
    for (size_t i = 0; i < n; i++)
        for (size_t r = 0; r < runs[i].t[T_SHIFT].n_rows; r++) {
            double b = cell_d(&runs[i].t[T_SHIFT], r, "bucket");
            if (b >= 0 && b < (double)n_cats) cats[(size_t)b] = cell(&runs[i].t[T_SHIFT], r, "positions");
        }
    for (size_t k = 0; k < n_cats; k++)
        if (!cats[k]) cats[k] = "";
    for (size_t i = 0; i < n; i++) {
        if (series_of(&runs[i].t[T_SHIFT], NULL, "bucket", "shift", "se_shift", &s[i])) goto oom;
        snprintf(s[i].label, sizeof s[i].label, "%s", runs[i].name);
        s[i].color = runs[i].color, s[i].band = 1;
    }
    figure(f, "shift", "The shift: human gap − model gap",
           &(plot_t){.title = "Shift by position bucket", .xlabel = "positions after the cut (bucket)",
                     .ylabel = "human gap − model gap (nats)", .ref_line = 1, .ref_label = "0: no shift",
                     .mark_label = "band: 95 % interval", .xcats = cats, .n_xcats = n_cats},
           s, n,
           "Above 0: the human continuation surprises the model more, relative to its own entropy, than its "
           "samples do. Band: ±1.96 × se_shift of shift_by_bucket (the two gaps' standard errors combined).");
    series_free(s, ns);

    /* calibration */
    if (pair_series(runs, n, T_CAL, "human_cont", "mean_confidence", "accuracy", "se_accuracy", s)) goto oom;
    figure(f, "calibration", "Calibration",
           &(plot_t){.title = "Accuracy vs confidence", .xlabel = "mean top-1 probability in the bin",
                     .ylabel = "accuracy (rank = 1)", .diagonal = 1, .ref_label = "perfect calibration",
                     .mark_label = "bars: 95 % interval"},
           s, ns,
           "Tokens in ten bins of the model's top-1 probability; accuracy is the share whose token was the "
           "model's first choice. Colour: the run; solid: human continuations; dashed: the model's samples. "
           "Bars: ±1.96 × se_accuracy of the calibration view, clustered by document (a document's tokens, and "
           "the samples of one prefix, are not independent draws).");
    series_free(s, ns);

    /* per-document gap */
    if (pair_series(runs, n, T_GAP, "human_cont", "gap_lo", "docs", "", s)) goto oom;
    figure(f, "documents", "Per-document gap",
           &(plot_t){.title = "Documents by mean gap", .xlabel = "mean gap of the document (nats; bin's lower edge, "
                                                                  "bins 0.1 wide)",
                     .ylabel = "documents"},
           s, ns,
           "A frequency polygon of document_summary's per-document mean gap: solid, the document's human "
           "continuations; dashed, its model samples (document_gap.csv also holds the whole human text, kind "
           "'human').");
    series_free(s, ns);

    /* detection: the AUROC by statistic, one point per run and statistic */
    static const char *const stat_cats[] = {"mean surprisal", "mean gap", "mean z"};
    for (size_t i = 0; i < n; i++) {
        const db_table_t *t = &runs[i].t[T_AUROC];
        if (series_of(t, NULL, NULL, "auroc", "", &s[i]) || !(s[i].lo = malloc((t->n_rows + 1) * sizeof *s[i].lo)) ||
            !(s[i].hi = malloc((t->n_rows + 1) * sizeof *s[i].hi)))
            goto oom;
        for (size_t r = 0; r < t->n_rows; r++) s[i].lo[r] = cell_d(t, r, "lo95"), s[i].hi[r] = cell_d(t, r, "hi95");
        snprintf(s[i].label, sizeof s[i].label, "%s", runs[i].name);
        s[i].color = runs[i].color, s[i].points = 1;
    }
    char cap[1024];
    snprintf(cap, sizeof cap,
             "How well each sequence's mean statistic tells a human continuation from a model sample: the AUROC, "
             "P(human &gt; sample) + P(tie) / 2 (0.5: indistinguishable; 1: the human continuation always scores "
             "higher), over every continuation and sample of the run (the view sequence_auroc; "
             "<code>tokshift auroc</code>). Bars: the 95 %% percentile interval of %d bootstrap resamples of "
             "documents (auroc.csv: lo95, hi95).",
             COMPARE_N_BOOT);
    figure(f, "auroc", "Detection (AUROC)",
           &(plot_t){.title = "AUROC by statistic", .xlabel = "the sequence's statistic", .ylabel = "AUROC",
                     .ref_line = 1, .ref_y = 0.5, .ref_label = "0.5: indistinguishable",
                     .mark_label = "bars: 95 % bootstrap interval", .x_offset = 0.08, .xcats = stat_cats,
                     .n_xcats = sizeof stat_cats / sizeof *stat_cats},
           s, n, cap);
    series_free(s, ns);
    fputs("</body></html>\n", f);
    rc = 0;
oom:
    series_free(s, ns);
    free(s);
    free(cats);
    if (rc) log_seterr(err, errlen, "out of memory writing %s", path);
    int bad = ferror(f);
    if (fclose(f) || bad) {
        if (!rc) log_seterr(err, errlen, "cannot write %s: %s", path, strerror(errno));
        rc = -1;
    }
    return rc;
}

int report_write(db_t *db, const char *const *run_names, size_t n_runs, const char *dir, char *err,
                 size_t errlen) {
    static const db_report_t which[T_AUROC] = {DB_REPORT_RUN, DB_REPORT_POSITION_STATS, DB_REPORT_SHIFT,
                                               DB_REPORT_CALIBRATION, DB_REPORT_DOC_GAP};
    static const char *const csv[N_T] = {NULL, "position_stats.csv", "shift_by_bucket.csv", "calibration.csv",
                                         "document_gap.csv", "auroc.csv"};
    assert(n_runs >= 1);
    if (n_runs > N_PALETTE)
        return log_seterr(err, errlen, "at most %zu runs in one report (one colour each)", N_PALETTE);
    char path[PATH_MAX];
    run_data_t *runs = calloc(n_runs, sizeof *runs);
    if (!runs) return log_seterr(err, errlen, "out of memory");
    int rc = -1;
    for (size_t i = 0; i < n_runs; i++) {
        int64_t run_id;
        int found = db_run_find(db, run_names[i], &run_id, err, errlen);
        if (found) {
            rc = found;
            goto done;
        }
        for (int k = 0; k < T_AUROC; k++)
            if (db_report_rows(db, run_id, which[k], &runs[i].t[k], err, errlen)) goto done;
        if (compare_auroc_rows(db, run_id, COMPARE_N_BOOT, &runs[i].t[T_AUROC], err, errlen)) goto done;
        if (runs[i].t[T_RUN].n_rows != 1) {
            log_seterr(err, errlen, "run '%s' has no progress row", run_names[i]);
            goto done;
        }
        runs[i].name = rv(&runs[i].t[T_RUN], "name");
        runs[i].color = PALETTE[i];
    }
    struct stat st;
    if (mkdir(dir, 0755) && !(errno == EEXIST && !stat(dir, &st) && S_ISDIR(st.st_mode))) {
        log_seterr(err, errlen, "cannot create the folder %s: %s", dir, strerror(errno));
        goto done;
    }
    for (int k = 1; k < N_T; k++) {
        if ((size_t)snprintf(path, sizeof path, "%s/%s", dir, csv[k]) >= sizeof path) {
            log_seterr(err, errlen, "folder name too long: %s", dir);
            goto done;
        }
        if (write_csv(path, runs, n_runs, k, err, errlen)) goto done;
    }
    if ((size_t)snprintf(path, sizeof path, "%s/index.html", dir) >= sizeof path) {
        log_seterr(err, errlen, "folder name too long: %s", dir);
        goto done;
    }
    if (write_html(path, runs, n_runs, err, errlen)) goto done;
    rc = 0;
done:
    for (size_t i = 0; i < n_runs; i++)
        for (int k = 0; k < N_T; k++) db_table_free(&runs[i].t[k]);
    free(runs);
    return rc;
}
