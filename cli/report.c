/* report.c - `tokshift report`: HTML with inline SVG plots, and CSV. */
#include "report.h"

#include <errno.h>
#include <jansson.h>
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "log.h"

#define C_HUMAN "#1f77b4"
#define C_MODEL "#d95f02"
#define C_TEXT "#1b9e77"

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

static int write_csv(const char *path, const db_table_t *t, char *err, size_t errlen) {
    FILE *f = fopen(path, "w");
    if (!f) return log_seterr(err, errlen, "cannot write %s: %s", path, strerror(errno));
    for (size_t c = 0; c < t->n_cols; c++) {
        if (c) fputc(',', f);
        report_csv_field(f, t->names[c]);
    }
    fputs("\r\n", f);
    for (size_t r = 0; r < t->n_rows; r++) {
        for (size_t c = 0; c < t->n_cols; c++) {
            if (c) fputc(',', f);
            report_csv_field(f, t->cells[r * t->n_cols + c]);
        }
        fputs("\r\n", f);
    }
    int bad = ferror(f);
    if (fclose(f) || bad) return log_seterr(err, errlen, "cannot write %s: %s", path, strerror(errno));
    return 0;
}

/* A number with a decimal point is shown with 4 significant digits. */
static void html_cell(FILE *f, const char *s) {
    char *end;
    if (s && strchr(s, '.')) {
        double v = strtod(s, &end);
        if (!*end && isfinite(v)) {
            fprintf(f, "%.4g", v);
            return;
        }
    }
    report_html_text(f, s ? s : "");
}

static void html_table(FILE *f, const db_table_t *t) {
    fputs("<div style=\"overflow-x:auto\"><table class=\"data\"><tr>", f);
    for (size_t c = 0; c < t->n_cols; c++) {
        fputs("<th>", f);
        report_html_text(f, t->names[c]);
        fputs("</th>", f);
    }
    fputs("</tr>\n", f);
    for (size_t r = 0; r < t->n_rows; r++) {
        fputs("<tr>", f);
        for (size_t c = 0; c < t->n_cols; c++) {
            fputs("<td>", f);
            html_cell(f, t->cells[r * t->n_cols + c]);
            fputs("</td>", f);
        }
        fputs("</tr>\n", f);
    }
    fputs("</table></div>\n", f);
}

/* ---- SVG plots ---------------------------------------------------------- */

typedef struct {
    const char *label, *color;
    int dashed;
    size_t n;
    double *x, *y, *se; /* se[i] may be NAN: no error bar */
} series_t;

typedef struct {
    const char *title, *xlabel, *ylabel;
    int zero_line; /* y = 0, labelled as the model's expectation */
    int diagonal;  /* y = x on [0, 1] x [0, 1] */
    double x_offset; /* series i is shifted by (i - (n-1)/2) * x_offset */
} plot_t;

enum { W = 780, H = 430, PL = 75, PR = 540, PT = 45, PB = 365 };

static double nice_step(double range) {
    if (!(range > 0)) return 1;
    double e = pow(10, floor(log10(range / 5))), f = range / 5 / e;
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

static void svg_plot(FILE *f, const plot_t *p, const series_t *s, size_t ns) {
    double x0 = INFINITY, x1 = -INFINITY, y0 = INFINITY, y1 = -INFINITY;
    for (size_t i = 0; i < ns; i++)
        for (size_t j = 0; j < s[i].n; j++) {
            double y = s[i].y[j], e = isfinite(s[i].se[j]) ? s[i].se[j] : 0;
            if (!isfinite(y) || !isfinite(s[i].x[j])) continue;
            x0 = fmin(x0, s[i].x[j]), x1 = fmax(x1, s[i].x[j]);
            y0 = fmin(y0, y - e), y1 = fmax(y1, y + e);
        }
    if (!isfinite(x0)) x0 = 0, x1 = 1, y0 = 0, y1 = 1;
    if (p->zero_line) y0 = fmin(y0, 0), y1 = fmax(y1, 0);
    double xa, xb, xs, ya, yb, ys;
    if (p->diagonal) xa = ya = 0, xb = yb = 1, xs = ys = 0.1;
    else axis_range(x0, x1, &xa, &xb, &xs), axis_range(y0, y1, &ya, &yb, &ys);
    double pad = p->x_offset * (double)ns; /* room for the shifted series */
#define SX(v) (PL + ((v) - (xa - pad)) / ((xb + pad) - (xa - pad)) * (PR - PL))
#define SY(v) (PB - ((v) - ya) / (yb - ya) * (PB - PT))

    fprintf(f, "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\" viewBox=\"0 0 %d %d\" "
               "font-family=\"sans-serif\" font-size=\"12\" role=\"img\" aria-label=\"", W, H, W, H);
    report_html_text(f, p->title);
    fputs("\">\n<rect width=\"100%\" height=\"100%\" fill=\"#fff\"/>\n", f);
    fprintf(f, "<text x=\"%d\" y=\"22\" text-anchor=\"middle\" font-size=\"15\" font-weight=\"bold\">", (PL + PR) / 2);
    report_html_text(f, p->title);
    fputs("</text>\n", f);
    /* grid and ticks */
    int xd = decimals(xs), yd = decimals(ys);
    for (double v = xa; v <= xb + xs * 1e-6; v += xs) {
        double X = SX(v);
        fprintf(f, "<line x1=\"%.1f\" y1=\"%d\" x2=\"%.1f\" y2=\"%d\" stroke=\"#e5e5e5\"/>", X, PT, X, PB);
        fprintf(f, "<text x=\"%.1f\" y=\"%d\" text-anchor=\"middle\">%.*f</text>\n", X, PB + 16, xd, v);
    }
    for (double v = ya; v <= yb + ys * 1e-6; v += ys) {
        double Y = SY(v);
        fprintf(f, "<line x1=\"%d\" y1=\"%.1f\" x2=\"%d\" y2=\"%.1f\" stroke=\"#e5e5e5\"/>", PL, Y, PR, Y);
        fprintf(f, "<text x=\"%d\" y=\"%.1f\" text-anchor=\"end\">%.*f</text>\n", PL - 6, Y + 4, yd, v);
    }
    fprintf(f, "<rect x=\"%d\" y=\"%d\" width=\"%d\" height=\"%d\" fill=\"none\" stroke=\"#444\"/>\n", PL, PT,
            PR - PL, PB - PT);
    fprintf(f, "<text x=\"%d\" y=\"%d\" text-anchor=\"middle\">", (PL + PR) / 2, PB + 40);
    report_html_text(f, p->xlabel);
    fprintf(f, "</text>\n<text transform=\"translate(18 %d) rotate(-90)\" text-anchor=\"middle\">", (PT + PB) / 2);
    report_html_text(f, p->ylabel);
    fputs("</text>\n", f);
    /* reference lines */
    const char *ref = NULL;
    if (p->zero_line) {
        fprintf(f, "<line x1=\"%d\" y1=\"%.1f\" x2=\"%d\" y2=\"%.1f\" stroke=\"#000\" stroke-dasharray=\"2 3\"/>\n",
                PL, SY(0), PR, SY(0));
        ref = "0: the model's expectation";
    }
    if (p->diagonal) {
        fprintf(f, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#000\" stroke-dasharray=\"2 3\"/>\n",
                SX(0), SY(0), SX(1), SY(1));
        ref = "perfect calibration";
    }
    /* series: error bars, line, points */
    for (size_t i = 0; i < ns; i++) {
        double dx = ((double)i - (double)(ns - 1) / 2) * p->x_offset;
        const series_t *q = &s[i];
        for (size_t j = 0; j < q->n; j++) {
            if (!isfinite(q->y[j]) || !isfinite(q->se[j])) continue;
            double X = SX(q->x[j] + dx), Ya = SY(q->y[j] - q->se[j]), Yb = SY(q->y[j] + q->se[j]);
            fprintf(f,
                    "<path d=\"M%.1f %.1fV%.1fM%.1f %.1fh6M%.1f %.1fh6\" stroke=\"%s\" stroke-width=\"1\" "
                    "fill=\"none\"/>\n",
                    X, Ya, Yb, X - 3, Ya, X - 3, Yb, q->color);
        }
        fprintf(f, "<polyline fill=\"none\" stroke=\"%s\" stroke-width=\"2\"%s points=\"", q->color,
                q->dashed ? " stroke-dasharray=\"6 4\"" : "");
        for (size_t j = 0; j < q->n; j++)
            if (isfinite(q->y[j])) fprintf(f, "%.1f,%.1f ", SX(q->x[j] + dx), SY(q->y[j]));
        fputs("\"/>\n", f);
        for (size_t j = 0; j < q->n; j++)
            if (isfinite(q->y[j]))
                fprintf(f, "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"2.5\" fill=\"%s\"/>", SX(q->x[j] + dx), SY(q->y[j]),
                        q->color);
        fputs("\n", f);
    }
    /* legend */
    int ly = PT + 10;
    for (size_t i = 0; i < ns; i++, ly += 22) {
        fprintf(f, "<line x1=\"%d\" y1=\"%d\" x2=\"%d\" y2=\"%d\" stroke=\"%s\" stroke-width=\"2\"%s/>", PR + 15,
                ly, PR + 45, ly, s[i].color, s[i].dashed ? " stroke-dasharray=\"6 4\"" : "");
        fprintf(f, "<text x=\"%d\" y=\"%d\">", PR + 52, ly + 4);
        report_html_text(f, s[i].label);
        fputs("</text>\n", f);
    }
    fprintf(f, "<text x=\"%d\" y=\"%d\" fill=\"#555\">error bars: ±1 standard error</text>\n", PR + 15, ly + 4);
    if (ref) {
        ly += 22;
        fprintf(f, "<line x1=\"%d\" y1=\"%d\" x2=\"%d\" y2=\"%d\" stroke=\"#000\" stroke-dasharray=\"2 3\"/>",
                PR + 15, ly, PR + 45, ly);
        fprintf(f, "<text x=\"%d\" y=\"%d\">%s</text>\n", PR + 52, ly + 4, ref);
    }
    if (!ns || !s[0].n) fprintf(f, "<text x=\"%d\" y=\"%d\" text-anchor=\"middle\">no data yet</text>\n",
                                (PL + PR) / 2, (PT + PB) / 2);
    fputs("</svg>\n", f);
#undef SX
#undef SY
}

/* The rows of t whose column `kind` equals kind, as a series. */
static int series_of(const db_table_t *t, const char *kind, const char *xc, const char *yc, const char *sec,
                     series_t *s) {
    s->n = 0;
    s->x = malloc((t->n_rows + 1) * sizeof *s->x);
    s->y = malloc((t->n_rows + 1) * sizeof *s->y);
    s->se = malloc((t->n_rows + 1) * sizeof *s->se);
    if (!s->x || !s->y || !s->se) return -1;
    for (size_t r = 0; r < t->n_rows; r++) {
        const char *k = cell(t, r, "kind");
        if (!k || strcmp(k, kind)) continue;
        s->x[s->n] = cell_d(t, r, xc);
        s->y[s->n] = cell_d(t, r, yc);
        if (sec) {
            s->se[s->n] = cell_d(t, r, sec);
        } else { /* binomial: sqrt(p (1 - p) / n) */
            double p = s->y[s->n], n = cell_d(t, r, "n");
            s->se[s->n] = n > 0 ? sqrt(p * (1 - p) / n) : NAN;
        }
        s->n++;
    }
    return 0;
}

static void series_free(series_t *s, size_t n) {
    for (size_t i = 0; i < n; i++) free(s[i].x), free(s[i].y), free(s[i].se);
}

/* ---- the page ----------------------------------------------------------- */

/* A cell of the run's one row, "" for NULL. */
static const char *rv(const db_table_t *run, const char *name) {
    const char *s = cell(run, 0, name);
    return s ? s : "";
}

static void kv(FILE *f, const char *k, const char *v) {
    fputs("<tr><th>", f);
    report_html_text(f, k);
    fputs("</th><td>", f);
    report_html_text(f, v ? v : "");
    fputs("</td></tr>\n", f);
}

static void settings_rows(FILE *f, const char *json) {
    json_t *o = json ? json_loads(json, 0, NULL) : NULL;
    if (!json_is_object(o)) {
        kv(f, "settings", json);
        json_decref(o);
        return;
    }
    const char *key;
    json_t *v;
    json_object_foreach(o, key, v) {
        char *s = json_is_string(v) ? NULL : json_dumps(v, JSON_ENCODE_ANY | JSON_COMPACT);
        char name[128];
        snprintf(name, sizeof name, "setting: %s", key);
        kv(f, name, s ? s : json_string_value(v));
        free(s);
    }
    json_decref(o);
}

static int write_html(const char *path, const db_table_t *run, const db_table_t *pos, const db_table_t *shift,
                      const db_table_t *cal, char *err, size_t errlen) {
    series_t s[4] = {{0}};
    int rc = -1;
    FILE *f = fopen(path, "w");
    if (!f) return log_seterr(err, errlen, "cannot write %s: %s", path, strerror(errno));
    fputs("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\n<title>tokshift report: ", f);
    report_html_text(f, cell(run, 0, "name"));
    fputs("</title>\n<style>\n"
          "body{font-family:sans-serif;max-width:1000px;margin:2em auto;padding:0 1em;color:#222}\n"
          "table{border-collapse:collapse;margin:1em 0}th,td{border:1px solid #ccc;padding:3px 8px;"
          "text-align:left;font-size:13px}\n"
          "table.data td{text-align:right;font-variant-numeric:tabular-nums}\n"
          "th{background:#f3f3f3}figure{margin:1.5em 0}figcaption{color:#444;font-size:14px;max-width:780px}\n"
          "code{word-break:break-all}\n</style></head><body>\n<h1>tokshift report: ",
          f);
    report_html_text(f, cell(run, 0, "name"));
    fputs("</h1>\n<table>\n", f);
    char buf[256];
    kv(f, "run id", cell(run, 0, "run_id"));
    kv(f, "status", cell(run, 0, "status"));
    snprintf(buf, sizeof buf, "%s (%s)", rv(run, "model_name"), rv(run, "model_arch"));
    kv(f, "model", buf);
    kv(f, "model identity (sha256)", rv(run, "model_identity"));
    settings_rows(f, cell(run, 0, "settings"));
    kv(f, "corpus", rv(run, "corpus"));
    snprintf(buf, sizeof buf, "%s done of %s (%s could not be used)", rv(run, "docs_done"), rv(run, "n_docs"),
             rv(run, "docs_error"));
    kv(f, "documents", buf);
    snprintf(buf, sizeof buf, "%s total: %s done, %s failed, %s leased, %s pending; %s retries", rv(run, "jobs"),
             rv(run, "jobs_done"), rv(run, "jobs_failed"), rv(run, "jobs_leased"), rv(run, "jobs_pending"),
             rv(run, "retries"));
    kv(f, "jobs", buf);
    kv(f, "tokens scored", cell(run, 0, "tokens_done"));
    kv(f, "created", cell(run, 0, "created"));
    kv(f, "finished", cell(run, 0, "finished"));
    fputs("</table>\n<p>Data: <a href=\"position_stats.csv\">position_stats.csv</a>, "
          "<a href=\"shift_by_bucket.csv\">shift_by_bucket.csv</a>, "
          "<a href=\"calibration.csv\">calibration.csv</a>.</p>\n",
          f);

    /* 1. surprisal and entropy by position */
    if (series_of(pos, "human_cont", "position", "mean_surprisal", "se_surprisal", &s[0]) ||
        series_of(pos, "sample", "position", "mean_surprisal", "se_surprisal", &s[1]) ||
        series_of(pos, "human_cont", "position", "mean_entropy", "se_entropy", &s[2]) ||
        series_of(pos, "sample", "position", "mean_entropy", "se_entropy", &s[3]))
        goto oom;
    s[0].label = "surprisal, human", s[0].color = C_HUMAN;
    s[1].label = "surprisal, model", s[1].color = C_MODEL;
    s[2].label = "entropy, human", s[2].color = C_HUMAN, s[2].dashed = 1;
    s[3].label = "entropy, model", s[3].color = C_MODEL, s[3].dashed = 1;
    fputs("<h2>Surprisal and entropy by position</h2>\n<figure>\n", f);
    svg_plot(f,
             &(plot_t){"Mean surprisal and entropy after the cut", "position after the cut (tokens)", "nats", 0, 0,
                       0.1},
             s, 4);
    fputs("<figcaption>Solid: mean surprisal (−log p of the token that came); dashed: mean entropy of the "
          "next-token distribution. Blue: the human continuation (teacher-forced); orange: the model's own "
          "samples.</figcaption></figure>\n",
          f);
    series_free(s, 4);
    memset(s, 0, sizeof s);

    /* 2. gap by position */
    if (series_of(pos, "human_cont", "position", "mean_gap", "se_gap", &s[0]) ||
        series_of(pos, "sample", "position", "mean_gap", "se_gap", &s[1]))
        goto oom;
    s[0].label = "human continuation", s[0].color = C_HUMAN;
    s[1].label = "model samples", s[1].color = C_MODEL;
    fputs("<h2>Gap (surprisal − entropy) by position</h2>\n<figure>\n", f);
    svg_plot(f, &(plot_t){"Mean gap after the cut", "position after the cut (tokens)", "gap (nats)", 1, 0, 0.15},
             s, 2);
    fputs("<figcaption>The gap's expectation under the model's own distribution is 0: samples should sit on "
          "the dotted line, and a human text above it is more surprising than the model expects.</figcaption>"
          "</figure>\n",
          f);
    series_free(s, 2);
    memset(s, 0, sizeof s);

    /* 3. calibration */
    if (series_of(cal, "human", "mean_confidence", "accuracy", NULL, &s[0]) ||
        series_of(cal, "human_cont", "mean_confidence", "accuracy", NULL, &s[1]) ||
        series_of(cal, "sample", "mean_confidence", "accuracy", NULL, &s[2]))
        goto oom;
    s[0].label = "human text", s[0].color = C_TEXT;
    s[1].label = "human continuation", s[1].color = C_HUMAN;
    s[2].label = "model samples", s[2].color = C_MODEL;
    fputs("<h2>Calibration</h2>\n<figure>\n", f);
    svg_plot(f, &(plot_t){"Accuracy vs confidence", "mean top-1 probability in the bin", "accuracy (rank = 1)", 0, 1, 0},
             s, 3);
    fputs("<figcaption>Tokens in ten bins of the model's top-1 probability; accuracy is the share whose "
          "token was the model's first choice. Error bars: binomial standard error.</figcaption></figure>\n",
          f);

    fputs("<h2>Shift by position bucket</h2>\n", f);
    html_table(f, shift);
    fputs("</body></html>\n", f);
    rc = 0;
oom:
    series_free(s, 4);
    if (rc) log_seterr(err, errlen, "out of memory writing %s", path);
    int bad = ferror(f);
    if (fclose(f) || bad) {
        if (!rc) log_seterr(err, errlen, "cannot write %s: %s", path, strerror(errno));
        rc = -1;
    }
    return rc;
}

int report_write(db_t *db, const char *run, const char *dir, char *err, size_t errlen) {
    db_table_t t[4] = {{0}};
    static const db_report_t which[4] = {DB_REPORT_RUN, DB_REPORT_POSITION_STATS, DB_REPORT_SHIFT,
                                         DB_REPORT_CALIBRATION};
    static const char *const csv[4] = {NULL, "position_stats.csv", "shift_by_bucket.csv", "calibration.csv"};
    char path[PATH_MAX];
    int64_t run_id;
    int rc = db_run_find(db, run, &run_id, err, errlen);
    if (rc == 1) log_seterr(err, errlen, "no run named '%s' (see 'tokshift status' for the runs)", run);
    if (rc) return rc;
    rc = -1;
    for (int i = 0; i < 4; i++)
        if (db_report_rows(db, run_id, which[i], &t[i], err, errlen)) goto done;
    if (t[0].n_rows != 1) {
        log_seterr(err, errlen, "run '%s' has no progress row", run);
        goto done;
    }
    struct stat st;
    if (mkdir(dir, 0755) && !(errno == EEXIST && !stat(dir, &st) && S_ISDIR(st.st_mode))) {
        log_seterr(err, errlen, "cannot create the folder %s: %s", dir, strerror(errno));
        goto done;
    }
    for (int i = 1; i < 4; i++) {
        if ((size_t)snprintf(path, sizeof path, "%s/%s", dir, csv[i]) >= sizeof path) {
            log_seterr(err, errlen, "folder name too long: %s", dir);
            goto done;
        }
        if (write_csv(path, &t[i], err, errlen)) goto done;
    }
    if ((size_t)snprintf(path, sizeof path, "%s/index.html", dir) >= sizeof path) {
        log_seterr(err, errlen, "folder name too long: %s", dir);
        goto done;
    }
    if (write_html(path, &t[0], &t[1], &t[2], &t[3], err, errlen)) goto done;
    rc = 0;
done:
    for (int i = 0; i < 4; i++) db_table_free(&t[i]);
    return rc;
}
