/* tokshift.c - the user-facing command: inspect a model and a text without
 * any server.
 *
 *   tokshift tokenize --model PATH [--bos]          ids of stdin's text
 *   tokshift generate --model PATH -n N [...]       sampled/greedy text
 *   tokshift score    --model PATH [--format ...]   per-token statistics
 *   tokshift experiment --model PATH [...]          a worker's rows for one document
 *   tokshift keygen   --out PREFIX                  a CURVE key pair (PREFIX.key, PREFIX.pub)
 *   tokshift report   RUN [--db C] [--out DIR]      HTML page with plots, and CSV (cli/report.c)
 *
 * What it is not: the distributed run (coordinator/, worker/).  Every
 * subcommand here calls the same engine modules as the worker. */
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "curve.h"
#include "db.h"
#include "table.h"
#include "experiment.h"
#include "log.h"
#include "model.h"
#include "report.h"
#include "sampler.h"
#include "tokenizer.h"

#define EXIT_USAGE 2

static const char *g_usage =
    "usage: tokshift COMMAND [OPTIONS]\n"
    "\n"
    "Measure autoregressive distribution shift in language models.\n"
    "\n"
    "commands:\n"
    "  tokenize   print the token ids of the UTF-8 text on stdin\n"
    "  generate   generate text from BOS (and an optional prompt)\n"
    "  score      print per-token statistics of the text on stdin\n"
    "  experiment print every row a worker would store for the document on stdin\n"
    "  db migrate apply the schema's migrations to PostgreSQL\n"
    "  status     show the progress of runs (from PostgreSQL)\n"
    "  report     write a run's HTML report (plots) and CSV files\n"
    "  keygen     write a CURVE key pair for the coordinator or a worker\n"
    "\n"
    "Run 'tokshift COMMAND --help' for a command's options.\n";

/* Reads all of stdin; NULL with errno on failure.  Caller frees. */
static char *read_stdin(size_t *len) {
    size_t cap = 1 << 16, n = 0;
    char *buf = malloc(cap + 1);
    if (!buf) return NULL;
    for (;;) {
        if (n == cap) {
            char *nb = cap > (SIZE_MAX >> 2) ? NULL : realloc(buf, cap * 2 + 1);
            if (!nb) {
                free(buf);
                return NULL;
            }
            buf = nb;
            cap *= 2;
        }
        size_t r = fread(buf + n, 1, cap - n, stdin);
        n += r;
        if (r == 0) {
            if (ferror(stdin)) {
                free(buf);
                return NULL;
            }
            break;
        }
    }
    buf[n] = 0;
    *len = n;
    return buf;
}

static int parse_int(const char *s, const char *what, long lo, long hi, long *out) {
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end || v < lo || v > hi) {
        log_error("%s: '%s' is not an integer in [%ld, %ld]", what, s, lo, hi);
        return -1;
    }
    *out = v;
    return 0;
}

static int parse_float(const char *s, const char *what, double lo, double hi, double *out) {
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || *end || !(v >= lo && v <= hi)) {
        log_error("%s: '%s' is not a number in [%g, %g]", what, s, lo, hi);
        return -1;
    }
    *out = v;
    return 0;
}

static model_t *load_model(const char *path) {
    char err[LOG_ERRLEN], desc[256];
    if (!path) {
        log_error("--model PATH is required");
        return NULL;
    }
    model_t *m = model_load(path, err, sizeof err);
    if (!m) {
        log_error("%s", err);
        return NULL;
    }
    model_describe(m, desc, sizeof desc);
    log_debug("loaded %s: %s", path, desc);
    return m;
}

/* ---- tokenize ---------------------------------------------------------- */

static int cmd_tokenize(int argc, char **argv) {
    static const struct option opts[] = {
        {"model", required_argument, 0, 'm'}, {"bos", no_argument, 0, 'b'}, {"help", no_argument, 0, 'h'}, {0}};
    const char *model_path = NULL;
    int bos = 0, c;
    while ((c = getopt_long(argc, argv, "m:bh", opts, NULL)) != -1) {
        switch (c) {
        case 'm': model_path = optarg; break;
        case 'b': bos = 1; break;
        case 'h':
            printf("usage: tokshift tokenize --model PATH [--bos]\n\n"
                   "Reads UTF-8 text on stdin and prints its token ids on one line.\n\n"
                   "  -m, --model PATH  GGUF model (its tokenizer is used)\n"
                   "  -b, --bos         prepend the model's BOS token\n");
            return 0;
        default: return EXIT_USAGE;
        }
    }
    model_t *m = load_model(model_path);
    if (!m) return 1;
    size_t len;
    int32_t *ids = NULL;
    char err[LOG_ERRLEN];
    char *text = read_stdin(&len);
    long n = text ? tokenizer_encode(m->tok, text, len, bos, &ids, err, sizeof err) : -1;
    if (n < 0) log_error("%s", text ? err : "cannot read stdin");
    for (long i = 0; i < n; i++) printf(i ? " %d" : "%d", ids[i]);
    if (n >= 0) printf("\n");
    free(ids);
    free(text);
    model_destroy(&m);
    return n < 0;
}

/* ---- generate ---------------------------------------------------------- */

static long parse_ids(const model_t *m, const char *text, int32_t **ids, char *err, size_t errlen);

static int cmd_generate(int argc, char **argv) {
    static const struct option opts[] = {{"model", required_argument, 0, 'm'},
                                         {"tokens", required_argument, 0, 'n'},
                                         {"temperature", required_argument, 0, 't'},
                                         {"top-k", required_argument, 0, 'k'},
                                         {"top-p", required_argument, 0, 'p'},
                                         {"seed", required_argument, 0, 's'},
                                         {"prompt", required_argument, 0, 'P'},
                                         {"prompt-ids", required_argument, 0, 'i'},
                                         {"print-ids", no_argument, 0, 'o'},
                                         {"help", no_argument, 0, 'h'},
                                         {0}};
    const char *model_path = NULL, *prompt = "", *prompt_ids = NULL;
    int print_ids = 0;
    long n_gen = 0, top_k = 0;
    unsigned long long seed = 0;
    double temp = 1.0, top_p = 1.0;
    int c;
    while ((c = getopt_long(argc, argv, "m:n:t:k:p:s:P:h", opts, NULL)) != -1) {
        switch (c) {
        case 'm': model_path = optarg; break;
        case 'n': if (parse_int(optarg, "-n", 0, INT_MAX, &n_gen)) return EXIT_USAGE; break;
        case 't': if (parse_float(optarg, "--temperature", 0, 1e6, &temp)) return EXIT_USAGE; break;
        case 'k': if (parse_int(optarg, "--top-k", 0, INT_MAX, &top_k)) return EXIT_USAGE; break;
        case 'p': if (parse_float(optarg, "--top-p", 1e-9, 1, &top_p)) return EXIT_USAGE; break;
        case 's': {
            char *end;
            errno = 0;
            seed = strtoull(optarg, &end, 10);
            if (errno || end == optarg || *end || optarg[0] == '-') {
                log_error("--seed: '%s' is not an unsigned 64-bit integer", optarg);
                return EXIT_USAGE;
            }
            break;
        }
        case 'P': prompt = optarg; break;
        case 'i': prompt_ids = optarg; break;
        case 'o': print_ids = 1; break;
        case 'h':
            printf("usage: tokshift generate --model PATH -n N [--temperature T] [--top-k K] [--top-p P]\n"
                   "                         [--seed S] [--prompt TEXT]\n\n"
                   "Starts from BOS (then the prompt) and generates N tokens; prints only the\n"
                   "generated text on stdout.\n\n"
                   "  -m, --model PATH       GGUF model\n"
                   "  -n, --tokens N         tokens to generate\n"
                   "  -t, --temperature T    0 = greedy (default 1.0)\n"
                   "  -k, --top-k K          keep the K most likely tokens (default 0 = off)\n"
                   "  -p, --top-p P          nucleus sampling mass (default 1 = off)\n"
                   "  -s, --seed S           random seed (default 0)\n"
                   "  -P, --prompt TEXT      text after BOS to continue\n"
                   "      --prompt-ids IDS   start from exactly these token ids instead (no BOS added),\n"
                   "                         e.g. to regenerate a recorded sample from its seed\n"
                   "      --print-ids        print the generated token ids instead of the text\n");
            return 0;
        default: return EXIT_USAGE;
        }
    }
    model_t *m = load_model(model_path);
    if (!m) return 1;
    char err[LOG_ERRLEN];
    int rc = 1;
    int32_t *ids = NULL;
    forward_t *fwd = NULL;
    sampler_t *smp = NULL;
    char *piece = NULL;
    long n_prompt = prompt_ids ? parse_ids(m, prompt_ids, &ids, err, sizeof err)
                               : tokenizer_encode(m->tok, prompt, strlen(prompt), tokenizer_adds_bos(m->tok), &ids,
                                                  err, sizeof err);
    if (n_prompt < 0) goto error;
    if (n_prompt == 0) { /* a model without BOS and no prompt: nothing to condition on */
        log_seterr(err, sizeof err, "the model has no BOS token; give --prompt");
        goto error;
    }
    long n_ctx = n_prompt + n_gen;
    if (n_ctx > m->cfg.n_ctx_train)
        log_warn("prompt + %ld tokens = %ld exceeds the model's trained context %d", n_gen, n_ctx, m->cfg.n_ctx_train);
    if (!(fwd = forward_new(m, (int)n_ctx, (int)n_prompt, 1, err, sizeof err))) goto error;
    sampler_params_t sp = {(float)temp, (int)top_k, (float)top_p};
    if (!(smp = sampler_new(m->cfg.n_vocab, sp, (uint64_t)seed, err, sizeof err))) goto error;
    if (!(piece = malloc(tokenizer_max_piece_bytes(m->tok) + 1))) goto error;
    /* The last row's logits only, as the worker's prefix prefill computes
     * them: with the decode steps' batch invariance (forward.h), a stored
     * sample regenerates bit for bit. */
    int *prompt_pos = malloc(sizeof(int) * (size_t)n_prompt);
    if (!prompt_pos) {
        log_seterr(err, sizeof err, "out of memory");
        goto error;
    }
    for (long i = 0; i < n_prompt; i++) prompt_pos[i] = (int)i;
    int prc = forward_batch(fwd, ids, NULL, prompt_pos, (int)n_prompt, 0, err, sizeof err);
    free(prompt_pos);
    if (prc) goto error;
    const float *logits = forward_logits(fwd);
    int32_t prev = ids[n_prompt - 1];
    for (long i = 0; i < n_gen; i++) {
        int32_t next = sampler_sample(smp, logits);
        long nb = tokenizer_token_bytes(m->tok, next, piece, tokenizer_max_piece_bytes(m->tok));
        const char *out = piece;
        /* SentencePiece drops the dummy-prefix space of the token after BOS. */
        if (tokenizer_adds_space_prefix(m->tok) && prev == tokenizer_bos(m->tok) && nb > 0 && piece[0] == ' ')
            out++, nb--;
        if (print_ids) printf(i ? " %d" : "%d", next);
        else if (nb > 0) fwrite(out, 1, (size_t)nb, stdout);
        prev = next;
        if (i + 1 == n_gen) break;
        int pos = (int)(n_prompt + i);
        if (forward_batch(fwd, &next, NULL, &pos, 1, 0, err, sizeof err)) goto error;
        logits = forward_logits(fwd);
    }
    if (print_ids) printf("\n");
    fflush(stdout);
    rc = 0;
error:
    if (rc) log_error("%s", err);
    free(piece);
    sampler_destroy(&smp);
    forward_destroy(&fwd);
    free(ids);
    model_destroy(&m);
    return rc;
}

/* ---- score ------------------------------------------------------------- */

/* Writes s escaped for a TSV field: backslash, tab, newline and CR as \\, \t,
 * \n, \r (the text COPY convention of PostgreSQL). */
static void put_tsv(const char *s) {
    for (; *s; s++) switch (*s) {
        case '\\': fputs("\\\\", stdout); break;
        case '\t': fputs("\\t", stdout); break;
        case '\n': fputs("\\n", stdout); break;
        case '\r': fputs("\\r", stdout); break;
        default: putchar(*s);
        }
}

static void put_json_str(const char *s) {
    putchar('"');
    for (; *s; s++) {
        unsigned char ch = (unsigned char)*s;
        if (ch == '"' || ch == '\\') printf("\\%c", ch);
        else if (ch < 0x20) printf("\\u%04x", ch);
        else putchar(ch);
    }
    putchar('"');
}

/* Parses whitespace-separated token ids (score --ids): returns the count and
 * a malloc'd array in *ids, or -1 with a message for anything that is not an
 * id of the model's vocabulary. */
static long parse_ids(const model_t *m, const char *text, int32_t **ids, char *err, size_t errlen) {
    size_t cap = 64;
    long n = 0;
    *ids = malloc(cap * sizeof **ids);
    for (const char *p = text; *ids;) {
        while (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r') p++;
        if (!*p) return n;
        char *end;
        errno = 0;
        long v = strtol(p, &end, 10);
        if (end == p || errno || v < 0 || v >= m->cfg.n_vocab || (*end && !strchr(" \t\n\r", *end))) {
            free(*ids);
            *ids = NULL;
            int w = (int)strcspn(p, " \t\n\r");
            return log_seterr(err, errlen, "--ids: '%.*s' (id %ld) is not a token id in [0, %d)", w < 20 ? w : 20, p,
                              n, m->cfg.n_vocab);
        }
        if ((size_t)n == cap) {
            int32_t *nb = cap > SIZE_MAX / 8 ? NULL : realloc(*ids, 2 * cap * sizeof **ids);
            if (!nb) break;
            *ids = nb;
            cap *= 2;
        }
        (*ids)[n++] = (int32_t)v;
        p = end;
    }
    free(*ids);
    *ids = NULL;
    return log_seterr(err, errlen, "out of memory reading ids");
}

static int cmd_score(int argc, char **argv) {
    static const struct option opts[] = {{"model", required_argument, 0, 'm'}, {"format", required_argument, 0, 'f'},
                                         {"window", required_argument, 0, 'w'}, {"stride", required_argument, 0, 's'},
                                         {"reference", no_argument, 0, 'R'},  {"help", no_argument, 0, 'h'},
                                         {"ids", no_argument, 0, 'I'},        {0}};
    const char *model_path = NULL, *format = "tsv";
    long window = 0, stride = 0;
    int c, reference = 0, ids_in = 0;
    while ((c = getopt_long(argc, argv, "m:f:w:s:h", opts, NULL)) != -1) {
        switch (c) {
        case 'm': model_path = optarg; break;
        case 'f': format = optarg; break;
        case 'w': if (parse_int(optarg, "--window", 2, 1 << 24, &window)) return EXIT_USAGE; break;
        case 's': if (parse_int(optarg, "--stride", 1, 1 << 24, &stride)) return EXIT_USAGE; break;
        case 'R': reference = 1; break;
        case 'I': ids_in = 1; break;
        case 'h':
            printf("usage: tokshift score --model PATH [--format tsv|json] [--window W] [--stride S]\n\n"
                   "Reads text on stdin, adds BOS (where the model does), and prints one row per\n"
                   "scored token:\n"
                   "pos token_id piece logprob entropy rank top1_logprob varentropy context_len\n"
                   "(natural logs, nats; pos 0 is BOS and is not scored).\n\n"
                   "  -m, --model PATH    GGUF model\n"
                   "  -f, --format F      tsv (default, with a header line) or json\n"
                   "  -w, --window W      tokens per forward pass (default: the model's context)\n"
                   "  -s, --stride S      window step for long texts (default W/2); every token\n"
                   "                      after the first window sees at least W-S tokens\n"
                   "      --reference     use the plain reference kernels instead of BLAS\n"
                   "      --ids           stdin holds token ids (whitespace-separated, BOS\n"
                   "                      included if wanted), scored exactly as given\n");
            return 0;
        default: return EXIT_USAGE;
        }
    }
    if (strcmp(format, "tsv") && strcmp(format, "json")) {
        log_error("--format must be tsv or json, not '%s'", format);
        return EXIT_USAGE;
    }
    model_t *m = load_model(model_path);
    if (!m) return 1;
    if (!window) window = m->cfg.n_ctx_train;
    if (!stride) stride = window / 2;
    char err[LOG_ERRLEN];
    int rc = 1;
    int32_t *ids = NULL;
    experiment_row_t *rows = NULL;
    experiment_t *ex = NULL;
    size_t len;
    char *text = read_stdin(&len);
    if (!text) {
        log_seterr(err, sizeof err, "cannot read stdin: %s", strerror(errno));
        goto error;
    }
    long n = ids_in ? parse_ids(m, text, &ids, err, sizeof err)
                    : tokenizer_encode(m->tok, text, len, tokenizer_adds_bos(m->tok), &ids, err, sizeof err);
    if (n < 0) goto error;
    if (!(ex = experiment_new(m, (int)window, 512, NULL, err, sizeof err))) goto error;
    experiment_set_reference(ex, reference);
    if (!(rows = calloc((size_t)(n > 1 ? n : 1), sizeof *rows))) {
        log_seterr(err, sizeof err, "out of memory for %ld rows", n);
        goto error;
    }
    long nr = experiment_score(ex, ids, (int)n, (int)stride, rows, err, sizeof err);
    if (nr < 0) goto error;
    int json = !strcmp(format, "json");
    if (json) printf("[");
    else printf("pos\ttoken_id\tpiece\tlogprob\tentropy\trank\ttop1_logprob\tvarentropy\tcontext_len\n");
    for (long i = 0; i < nr; i++) {
        const experiment_row_t *r = &rows[i];
        const char *piece = tokenizer_piece(m->tok, r->token);
        if (json) {
            printf("%s\n{\"pos\":%d,\"token_id\":%d,\"piece\":", i ? "," : "", r->pos, r->token);
            put_json_str(piece);
            /* JSON is for programs: every double exactly (17 digits). */
            printf(",\"logprob\":%.17g,\"entropy\":%.17g,\"rank\":%d,\"top1_logprob\":%.17g,\"varentropy\":%.17g,"
                   "\"context_len\":%d}",
                   r->st.logprob, r->st.entropy, r->st.rank, r->st.top1_logprob, r->st.varentropy, r->st.context_len);
        } else {
            printf("%d\t%d\t", r->pos, r->token);
            put_tsv(piece);
            printf("\t%.9g\t%.9g\t%d\t%.9g\t%.9g\t%d\n", r->st.logprob, r->st.entropy, r->st.rank,
                   r->st.top1_logprob, r->st.varentropy, r->st.context_len);
        }
    }
    if (json) printf("\n]\n");
    rc = 0;
error:
    if (rc) log_error("%s", err);
    experiment_destroy(&ex);
    free(rows);
    free(ids);
    free(text);
    model_destroy(&m);
    return rc;
}

/* ---- db migrate / status --------------------------------------------- */

/* Parses the options of the database commands (--db, --help).  Returns 0
 * with *conninfo set, 1 after printing help, or EXIT_USAGE. */
static int parse_db_opts(int argc, char **argv, const char *help, const char **conninfo) {
    static const struct option opts[] = {{"db", required_argument, 0, 'd'}, {"help", no_argument, 0, 'h'}, {0}};
    int c;
    *conninfo = "";
    while ((c = getopt_long(argc, argv, "d:h", opts, NULL)) != -1) {
        switch (c) {
        case 'd': *conninfo = optarg; break;
        case 'h': fputs(help, stdout); return 1;
        default: return EXIT_USAGE;
        }
    }
    return 0;
}

static int cmd_db(int argc, char **argv) {
    const char *conninfo;
    int r = parse_db_opts(argc, argv,
                          "usage: tokshift db migrate [--db CONNINFO]\n\n"
                          "Applies the schema migrations not yet applied (idempotent).  Run it as the\n"
                          "database owner.  CONNINFO is a libpq connection string; without it the PG*\n"
                          "environment variables are used.\n",
                          &conninfo);
    if (r) return r == 1 ? 0 : r;
    if (optind >= argc || strcmp(argv[optind], "migrate")) {
        log_error("usage: tokshift db migrate [--db CONNINFO]");
        return EXIT_USAGE;
    }
    char err[LOG_ERRLEN];
    db_t *db = db_connect(conninfo, err, sizeof err);
    int n = db ? db_migrate(db, err, sizeof err) : -1;
    if (n < 0) log_error("%s", err);
    else log_info("%d migration(s) applied; the schema is current", n);
    db_destroy(&db);
    return n < 0;
}

static int cmd_status(int argc, char **argv) {
    const char *conninfo;
    int r = parse_db_opts(argc, argv,
                          "usage: tokshift status [RUN] [--db CONNINFO]\n\n"
                          "Shows the progress of one run (by name or id) or of every run, and for a\n"
                          "single run its human-vs-model summary so far.\n",
                          &conninfo);
    if (r) return r == 1 ? 0 : r;
    char err[LOG_ERRLEN];
    int rc = 1;
    int64_t run_id = 0;
    db_t *db = db_connect(conninfo, err, sizeof err);
    if (!db) goto error;
    if (optind < argc) {
        int r = db_run_find(db, argv[optind], &run_id, err, sizeof err);
        if (r < 0) goto error;
        if (r == 1) {
            log_seterr(err, sizeof err, "no run named '%s'", argv[optind]);
            goto error;
        }
    }
    if (table_print_report(db, run_id, DB_REPORT_STATUS, stdout, err, sizeof err)) goto error;
    if (run_id) {
        printf("\n");
        if (table_print_report(db, run_id, DB_REPORT_SUMMARY, stdout, err, sizeof err)) goto error;
    }
    rc = 0;
error:
    if (rc) log_error("%s", err);
    db_destroy(&db);
    return rc;
}

/* ---- report ------------------------------------------------------------ */

static int cmd_report(int argc, char **argv) {
    static const struct option opts[] = {
        {"db", required_argument, 0, 'd'}, {"out", required_argument, 0, 'o'}, {"help", no_argument, 0, 'h'}, {0}};
    const char *conninfo = "", *out = NULL;
    int c;
    while ((c = getopt_long(argc, argv, "d:o:h", opts, NULL)) != -1) {
        switch (c) {
        case 'd': conninfo = optarg; break;
        case 'o': out = optarg; break;
        case 'h':
            printf("usage: tokshift report RUN [--db CONNINFO] [--out DIR]\n\n"
                   "Writes the report of the run RUN (a name or an id) from the database:\n"
                   "  DIR/index.html          one self-contained page (inline SVG, no scripts): the\n"
                   "                          run's model, settings and counts; mean surprisal and\n"
                   "                          entropy, and mean gap, by position after the cut, human\n"
                   "                          continuation vs model samples (±1 standard error);\n"
                   "                          calibration (accuracy vs confidence)\n"
                   "  DIR/position_stats.csv  the position_stats view (human_cont, sample)\n"
                   "  DIR/shift_by_bucket.csv the shift_by_bucket view\n"
                   "  DIR/calibration.csv     the calibration view\n"
                   "DIR defaults to report-RUN and is created if needed; files in it are replaced.\n"
                   "CONNINFO is a libpq connection string; without it the PG* environment is used.\n");
            return 0;
        default: return EXIT_USAGE;
        }
    }
    if (optind + 1 != argc) {
        log_error("usage: tokshift report RUN [--db CONNINFO] [--out DIR]");
        return EXIT_USAGE;
    }
    const char *run = argv[optind];
    char dflt[PATH_MAX], err[LOG_ERRLEN];
    if (!out) {
        if ((size_t)snprintf(dflt, sizeof dflt, "report-%s", run) >= sizeof dflt || strchr(run, '/')) {
            log_error("cannot make a folder name from the run '%s'; give --out DIR", run);
            return EXIT_USAGE;
        }
        out = dflt;
    }
    db_t *db = db_connect(conninfo, err, sizeof err);
    int rc = db ? report_write(db, run, out, err, sizeof err) : -1;
    if (rc) log_error("%s", err);
    else log_info("wrote %s/index.html, position_stats.csv, shift_by_bucket.csv, calibration.csv", out);
    db_destroy(&db);
    return rc ? 1 : 0;
}

/* ---- keygen ------------------------------------------------------------ */

static int cmd_keygen(int argc, char **argv) {
    static const struct option opts[] = {{"out", required_argument, 0, 'o'}, {"help", no_argument, 0, 'h'}, {0}};
    const char *prefix = NULL;
    int c;
    while ((c = getopt_long(argc, argv, "o:h", opts, NULL)) != -1) {
        switch (c) {
        case 'o': prefix = optarg; break;
        case 'h':
            printf("usage: tokshift keygen --out PREFIX\n\n"
                   "Writes a new CURVE key pair (ZeroMQ CurveZMQ, Curve25519): PREFIX.key, the secret\n"
                   "key (mode 0600; keep it on the machine it belongs to), and PREFIX.pub, the public\n"
                   "key (give it to the other side).  Existing files are never overwritten.  Prints\n"
                   "the public key on stdout.\n\n"
                   "Files are text: '#' comment lines and one 40-character Z85 key (ZeroMQ RFC 32);\n"
                   "in PREFIX.pub the key is followed by a name for logs (PREFIX's last part).\n\n"
                   "  coordinator: --curve-secret coord.key --curve-clients DIR_OF_WORKER_PUBS\n"
                   "  worker:      --curve-secret worker.key --curve-server-key coord.pub\n");
            return 0;
        default: return EXIT_USAGE;
        }
    }
    if (!prefix || optind < argc) {
        log_error("usage: tokshift keygen --out PREFIX");
        return EXIT_USAGE;
    }
    char err[LOG_ERRLEN], pub[CURVE_Z85_LEN + 1];
    if (curve_keygen(prefix, pub, err, sizeof err)) {
        log_error("%s", err);
        return 1;
    }
    log_info("wrote %s.key (secret, mode 0600) and %s.pub (public)", prefix, prefix);
    printf("%s\n", pub);
    return 0;
}

/* ---- experiment -------------------------------------------------------- */

/* Prints one row of `tokshift experiment` (cut < 0: none; sample < 0: none,
 * and then no seed). */
static void put_experiment_row(const model_t *m, int json, int *first, const char *kind, int cut, int sample,
                               uint64_t seed, const experiment_row_t *r) {
    const char *piece = tokenizer_piece(m->tok, r->token);
    if (json) {
        printf("%s\n{\"kind\":\"%s\",\"cut\":", *first ? "" : ",", kind);
        if (cut >= 0) printf("%d", cut);
        else printf("null");
        if (sample >= 0) printf(",\"sample\":%d", sample);
        else printf(",\"sample\":null");
        printf(",\"pos\":%d,\"token_id\":%d,\"piece\":", r->pos, r->token);
        put_json_str(piece ? piece : "");
        printf(",\"logprob\":%.17g,\"entropy\":%.17g,\"rank\":%d,\"top1_logprob\":%.17g,\"varentropy\":%.17g,"
               "\"context_len\":%d,\"seed\":",
               r->st.logprob, r->st.entropy, r->st.rank, r->st.top1_logprob, r->st.varentropy, r->st.context_len);
        if (sample >= 0) printf("\"%llu\"}", (unsigned long long)seed); /* beyond 2^53: a string */
        else printf("null}");
    } else {
        printf("%s\t", kind);
        if (cut >= 0) printf("%d", cut);
        putchar('\t');
        if (sample >= 0) printf("%d", sample);
        printf("\t%d\t%d\t", r->pos, r->token);
        put_tsv(piece ? piece : "");
        printf("\t%.9g\t%.9g\t%d\t%.9g\t%.9g\t%d\t", r->st.logprob, r->st.entropy, r->st.rank, r->st.top1_logprob,
               r->st.varentropy, r->st.context_len);
        if (sample >= 0) printf("%llu", (unsigned long long)seed);
        putchar('\n');
    }
    *first = 0;
}

/* tokshift experiment: the whole measurement of one document, as a worker
 * makes it (the same engine calls: experiment_score, experiment_cuts,
 * experiment_continue_doc), without a database; defaults are the
 * coordinator's. */
static int cmd_experiment(int argc, char **argv) {
    static const struct option opts[] = {
        {"model", required_argument, 0, 'm'},     {"window", required_argument, 0, 'w'},
        {"stride", required_argument, 0, 's'},    {"prefix-lengths", required_argument, 0, 'P'},
        {"cut-every", required_argument, 0, 'E'}, {"cont-len", required_argument, 0, 'C'},
        {"samples", required_argument, 0, 'K'},   {"temperature", required_argument, 0, 't'},
        {"top-k", required_argument, 0, 'k'},     {"top-p", required_argument, 0, 'p'},
        {"seed", required_argument, 0, 'S'},      {"doc-id", required_argument, 0, 'D'},
        {"format", required_argument, 0, 'f'},    {"help", no_argument, 0, 'h'},
        {0}};
    const char *model_path = NULL, *format = "tsv";
    long window = 512, stride = 0, cut_every = 0, cont_len = 32, samples = 4, top_k = 0, doc_id = 0, seed = 0;
    double temp = 1.0, top_p = 1.0;
    int32_t pl[256];
    size_t n_pl = 0;
    int c;
    while ((c = getopt_long(argc, argv, "m:w:s:f:h", opts, NULL)) != -1) {
        switch (c) {
        case 'm': model_path = optarg; break;
        case 'w': if (parse_int(optarg, "--window", 2, 1 << 20, &window)) return EXIT_USAGE; break;
        case 's': if (parse_int(optarg, "--stride", 1, 1 << 20, &stride)) return EXIT_USAGE; break;
        case 'P':
            for (char *save = NULL, *t = strtok_r(optarg, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
                long v;
                if (n_pl == sizeof pl / sizeof *pl) {
                    log_error("--prefix-lengths: at most %zu", sizeof pl / sizeof *pl);
                    return EXIT_USAGE;
                }
                if (parse_int(t, "--prefix-lengths", 1, 1 << 24, &v)) return EXIT_USAGE;
                pl[n_pl++] = (int32_t)v;
            }
            break;
        case 'E': if (parse_int(optarg, "--cut-every", 0, 1 << 24, &cut_every)) return EXIT_USAGE; break;
        case 'C': if (parse_int(optarg, "--cont-len", 0, 1 << 20, &cont_len)) return EXIT_USAGE; break;
        case 'K': if (parse_int(optarg, "--samples", 0, 4096, &samples)) return EXIT_USAGE; break;
        case 't': if (parse_float(optarg, "--temperature", 0, 1e6, &temp)) return EXIT_USAGE; break;
        case 'k': if (parse_int(optarg, "--top-k", 0, 1 << 24, &top_k)) return EXIT_USAGE; break;
        case 'p': if (parse_float(optarg, "--top-p", 1e-9, 1, &top_p)) return EXIT_USAGE; break;
        case 'S': if (parse_int(optarg, "--seed", 0, LONG_MAX, &seed)) return EXIT_USAGE; break;
        case 'D': if (parse_int(optarg, "--doc-id", 0, LONG_MAX, &doc_id)) return EXIT_USAGE; break;
        case 'f': format = optarg; break;
        case 'h':
            printf("usage: tokshift experiment --model PATH [--window W] [--stride S] [--prefix-lengths L]\n"
                   "         [--cut-every N] [--cont-len C] [--samples K] [--temperature T] [--top-k K]\n"
                   "         [--top-p P] [--seed S] [--doc-id D] [--format tsv|json]\n\n"
                   "Reads one document on stdin and prints every row a worker would store for it,\n"
                   "with a run's settings (defaults are the coordinator's):\n"
                   "kind cut sample pos token_id piece logprob entropy rank top1_logprob varentropy\n"
                   "context_len seed\n"
                   "kind is human (the text, in windows), human_cont (the C tokens after a cut) or\n"
                   "sample (the model's own continuation k of a cut, regenerated exactly by\n"
                   "tokshift generate --prompt-ids PREFIX --seed SEED).\n\n"
                   "  -w, --window W          tokens per window (default 512)\n"
                   "  -s, --stride S          window stride (default W/2)\n"
                   "      --prefix-lengths L  cut points, e.g. 16,64 (default none)\n"
                   "      --cut-every N       also cut every N tokens (default 0 = off)\n"
                   "      --cont-len C        tokens per continuation (default 32)\n"
                   "      --samples K         model samples per cut (default 4)\n"
                   "      --temperature T, --top-k K, --top-p P   sampling (default 1, off, off)\n"
                   "      --seed S            run seed (default 0)\n"
                   "      --doc-id D          the document's id in a run, which seeds its samples (default 0)\n"
                   "  -f, --format F          tsv (default, with a header line) or json\n");
            return 0;
        default: return EXIT_USAGE;
        }
    }
    if (strcmp(format, "tsv") && strcmp(format, "json")) {
        log_error("--format must be tsv or json, not '%s'", format);
        return EXIT_USAGE;
    }
    if (!stride) stride = window / 2 > 0 ? window / 2 : 1;
    if (stride >= window || cont_len >= window) {
        log_error("--stride %ld and --cont-len %ld must be smaller than --window %ld", stride, cont_len, window);
        return EXIT_USAGE;
    }
    model_t *m = load_model(model_path);
    if (!m) return 1;
    char err[LOG_ERRLEN];
    int rc = 1, first = 1, json = !strcmp(format, "json");
    int32_t *ids = NULL, *cuts = NULL;
    experiment_row_t *rows = NULL;
    uint64_t *seeds = NULL;
    experiment_t *ex = NULL;
    size_t len, nc = 0;
    char *text = read_stdin(&len);
    if (!text) {
        log_seterr(err, sizeof err, "cannot read stdin: %s", strerror(errno));
        goto error;
    }
    long n = tokenizer_encode(m->tok, text, len, tokenizer_adds_bos(m->tok), &ids, err, sizeof err);
    if (n < 0) goto error;
    int C = (int)cont_len, K = (int)samples;
    size_t max_cuts = n_pl + (cut_every > 0 ? (size_t)n / (size_t)cut_every + 1 : 0);
    if (C > 0 && max_cuts > 0) {
        if (!(cuts = malloc(max_cuts * sizeof *cuts))) goto oom;
        nc = experiment_cuts(pl, n_pl, (int)cut_every, C, (int)n, cuts, max_cuts);
    }
    experiment_cont_t cont = {C, K, {(float)temp, (int)top_k, (float)top_p}, (uint64_t)seed};
    if (!(ex = experiment_new(m, (int)window, 512, nc ? &cont : NULL, err, sizeof err))) goto error;
    size_t need = (size_t)(n > 1 ? n - 1 : 1), per_cut = (size_t)(K + 1) * C;
    if (nc * per_cut > need) need = nc * per_cut;
    if (!(rows = calloc(need, sizeof *rows)) || !(seeds = calloc(nc * K + 1, sizeof *seeds))) goto oom;
    if (json) printf("[");
    else printf("kind\tcut\tsample\tpos\ttoken_id\tpiece\tlogprob\tentropy\trank\ttop1_logprob\tvarentropy\t"
                "context_len\tseed\n");
    long nr = experiment_score(ex, ids, (int)n, (int)stride, rows, err, sizeof err);
    if (nr < 0) goto error;
    for (long i = 0; i < nr; i++) put_experiment_row(m, json, &first, "human", -1, -1, 0, &rows[i]);
    if (nc) {
        experiment_row_t *human = rows, *smp = rows + nc * (size_t)C;
        if (experiment_continue_doc(ex, ids, (int)n, cuts, (int)nc, (uint64_t)doc_id, human, smp, seeds, err,
                                    sizeof err))
            goto error;
        for (size_t j = 0; j < nc; j++) {
            for (int i = 0; i < C; i++)
                put_experiment_row(m, json, &first, "human_cont", cuts[j], -1, 0, &human[j * C + i]);
            for (int k = 0; k < K; k++)
                for (int i = 0; i < C; i++)
                    put_experiment_row(m, json, &first, "sample", cuts[j], k, seeds[j * K + k],
                                       &smp[(j * K + k) * C + i]);
        }
    }
    if (json) printf("\n]\n");
    fflush(stdout);
    rc = 0;
    goto error;
oom:
    log_seterr(err, sizeof err, "out of memory for a document of %ld tokens", n);
error:
    if (rc) log_error("%s", err);
    experiment_destroy(&ex);
    free(rows), free(seeds), free(cuts), free(ids), free(text);
    model_destroy(&m);
    return rc;
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fputs(g_usage, stderr);
        return EXIT_USAGE;
    }
    const char *cmd = argv[1];
    if (!strcmp(cmd, "--help") || !strcmp(cmd, "-h") || !strcmp(cmd, "help")) {
        fputs(g_usage, stdout);
        return 0;
    }
    if (!strcmp(cmd, "--version")) {
        printf("tokshift %s\n", TOKSHIFT_VERSION);
        return 0;
    }
    argv[1] = argv[0]; /* getopt then sees "tokshift OPTIONS..." */
    if (!strcmp(cmd, "tokenize")) return cmd_tokenize(argc - 1, argv + 1);
    if (!strcmp(cmd, "generate")) return cmd_generate(argc - 1, argv + 1);
    if (!strcmp(cmd, "score")) return cmd_score(argc - 1, argv + 1);
    if (!strcmp(cmd, "experiment")) return cmd_experiment(argc - 1, argv + 1);
    if (!strcmp(cmd, "db")) return cmd_db(argc - 1, argv + 1);
    if (!strcmp(cmd, "status")) return cmd_status(argc - 1, argv + 1);
    if (!strcmp(cmd, "keygen")) return cmd_keygen(argc - 1, argv + 1);
    if (!strcmp(cmd, "report")) return cmd_report(argc - 1, argv + 1);
    log_error("unknown command '%s'", cmd);
    fputs(g_usage, stderr);
    return EXIT_USAGE;
}
