/* tokshift.c - the user-facing command: inspect a model and a text without
 * any server.
 *
 *   tokshift tokenize --model PATH [--bos]          ids of stdin's text
 *   tokshift generate --model PATH -n N [...]       sampled/greedy text
 *   tokshift score    --model PATH [--format ...]   per-token statistics
 *   tokshift experiment --model PATH [...]          a worker's rows for one document
 *   tokshift fetch    REPO[:FILE] [...]             a model from the Hugging Face Hub (cli/fetch.c)
 *   tokshift keygen   --out PREFIX                  a CURVE key pair (PREFIX.key, PREFIX.pub)
 *   tokshift report   RUN... [--db C] [--out DIR]   HTML page with plots, and CSV (cli/report.c)
 *   tokshift db drop-run RUN [--db C] [--yes]       delete a run and its results
 *
 * What it is not: the distributed run (coordinator/, worker/).  Every
 * subcommand here calls the same engine modules as the worker. */
#include <assert.h>
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <getopt.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "curve.h"
#include "db.h"
#include "digest.h"
#include "table.h"
#include "experiment.h"
#include "fetch.h"
#include "queue.h"
#include "gguf.h"
#include "log.h"
#include "loader.h"
#include "model.h"
#include "num.h"
#include "compare.h"
#include "report.h"
#include "runset.h"
#include "sampler.h"
#include "template.h"
#include "tokenizer.h"
#include "tpltext.h"
#include "wire.h"

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
    "  regenerate reproduce a stored sequence of a run and check it against its rows\n"
    "  experiment print every row a worker would store for the document on stdin\n"
    "  db migrate apply the schema's migrations to PostgreSQL\n"
    "  db drop-run delete a run and all its results\n"
    "  status     show the progress of runs (from PostgreSQL)\n"
    "  queue      the queue of runs (--serve-queue), and a queued run's priority\n"
    "  report     write runs' HTML report (plots on shared axes) and CSV files\n"
    "  compare    compare runs document by document (paired standard errors, AUROC)\n"
    "  auroc      how well each statistic tells human continuations from samples\n"
    "  keygen     write a CURVE key pair for the coordinator or a worker\n"
    "  fetch      download a model (GGUF file or HF directory) from the Hugging Face Hub\n"
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

/* num_long / num_double, logging the error (usage errors: the caller exits 2). */
static int parse_int(const char *s, const char *what, long lo, long hi, long *out) {
    char err[LOG_ERRLEN];
    if (num_long(s, what, lo, hi, out, err, sizeof err)) {
        log_error("%s", err);
        return -1;
    }
    return 0;
}

static int parse_float(const char *s, const char *what, double lo, double hi, double *out) {
    char err[LOG_ERRLEN];
    if (num_double(s, what, lo, hi, out, err, sizeof err)) {
        log_error("%s", err);
        return -1;
    }
    return 0;
}

/* A seed as a user or the database gives it: 0 .. 2^64 - 1, or a negative
 * bigint (sequences.seed and runs.settings store the uint64's bits in a
 * signed bigint): the same 64 bits, so -1 is 18446744073709551615. */
static int parse_seed(const char *s, const char *what, uint64_t *out) {
    char *end;
    errno = 0;
    if (s[0] == '-') {
        long long v = strtoll(s, &end, 10);
        if (!errno && end != s + 1 && !*end) return *out = (uint64_t)v, 0;
    } else {
        unsigned long long v = strtoull(s, &end, 10);
        if (!errno && end != s && !*end && s[0] >= '0' && s[0] <= '9') return *out = (uint64_t)v, 0;
    }
    log_error("%s: '%s' is not a 64-bit seed (0 .. 18446744073709551615, or a negative bigint as stored)", what, s);
    return -1;
}

/* Bad usage of a command: points at its --help; returns EXIT_USAGE. */
static int usage_hint(const char *cmd) {
    fprintf(stderr, "Run 'tokshift %s --help' for its usage.\n", cmd);
    return EXIT_USAGE;
}

static model_t *load_model(const char *path) {
    char err[LOG_ERRLEN], desc[256];
    if (!path) {
        log_error("--model PATH is required");
        return NULL;
    }
    model_t *m = loader_load(path, err, sizeof err);
    if (!m) {
        log_error("%s", err);
        return NULL;
    }
    model_describe(m, desc, sizeof desc);
    log_debug("loaded %s: %s", path, desc);
    return m;
}

/* Whether the model file is the one the run measured (its sha256 identity,
 * as the worker checks it).  0, or -1 with a message naming both. */
static int check_run_model(const char *model_path, const char *run, const char *want, char *err, size_t errlen) {
    char have[65];
    if (digest_model_identity(model_path, have, err, errlen)) return -1;
    if (strcmp(have, want))
        return log_seterr(err, errlen, "run '%s' was measured with model %.12s..., and %s is %.12s...: give --model the "
                          "run's model", run, want, model_path, have);
    return 0;
}

/* The chat template for m: the file at path (--template), else the text a
 * run stored (run_text, runset_t.chat_template), else none (*out NULL).
 * 0, or -1 with a message (the file, or a special token the vocabulary
 * lacks). */
static int cli_template(const model_t *m, const char *path, const char *run_text, template_t **out, char *err,
                        size_t errlen) {
    char *file = NULL;
    const char *text = run_text;
    *out = NULL;
    if (path && !(text = file = tpltext_read(path, err, errlen))) return -1;
    int want = text && *text;
    if (want) *out = template_new(m->tok, text, strlen(text), err, errlen);
    free(file);
    return want && !*out ? -1 : 0;
}

/* An experiment for m whose windows and prefixes follow tpl's context
 * (experiment_new_ctx); NULL with a message. */
static experiment_t *cli_experiment(const model_t *m, int window, const experiment_cont_t *cont, const template_t *tpl,
                                    char *err, size_t errlen) {
    int n_ctx;
    const int32_t *ctx = template_prefix(tpl, &n_ctx);
    return experiment_new_ctx(m, window, EXPERIMENT_BATCH, cont, ctx, n_ctx, err, errlen);
}

/* ---- tokenize ---------------------------------------------------------- */

/* The tokenizer of the model at path, without its weights where the format
 * allows: a GGUF's tokenizer.* keys (so a vocabulary-only GGUF such as
 * llama.cpp's ggml-vocab-*.gguf works); a Hugging Face directory's model is
 * loaded and its tokenizer kept.  NULL after logging why. */
static tokenizer_t *load_tokenizer(const char *path) {
    char err[LOG_ERRLEN];
    if (!path) {
        log_error("--model PATH is required");
        return NULL;
    }
    tokenizer_t *t = NULL;
    if (loader_is_dir(path)) {
        model_t *m = load_model(path);
        if (!m) return NULL;
        t = m->tok, m->tok = NULL;
        model_destroy(&m);
        return t;
    }
    gguf_t *g = gguf_open(path, err, sizeof err);
    if (g && !(t = tokenizer_new_gguf(g, err, sizeof err))) log_error("%s: %s", path, err);
    else if (!g) log_error("%s", err);
    gguf_destroy(&g);
    return t;
}

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
                   "  -m, --model PATH  GGUF file (only its tokenizer is read: a vocabulary-only\n"
                   "                    GGUF such as llama.cpp's ggml-vocab-*.gguf works) or\n"
                   "                    Hugging Face model directory\n"
                   "  -b, --bos         prepend the model's BOS token\n");
            return 0;
        default: return usage_hint("tokenize");
        }
    }
    if (optind < argc) {
        log_error("tokenize reads stdin; unexpected argument '%s'", argv[optind]);
        return usage_hint("tokenize");
    }
    tokenizer_t *tok = load_tokenizer(model_path);
    if (!tok) return 1;
    size_t len;
    int32_t *ids = NULL;
    char err[LOG_ERRLEN];
    char *text = read_stdin(&len);
    long n = text ? tokenizer_encode(tok, text, len, bos, &ids, err, sizeof err) : -1;
    if (n < 0) log_error("%s", text ? err : "cannot read stdin");
    for (long i = 0; i < n; i++) printf(i ? " %d" : "%d", ids[i]);
    if (n >= 0) printf("\n");
    free(ids);
    free(text);
    tokenizer_destroy(&tok);
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
                                         {"run", required_argument, 0, 'r'},
                                         {"db", required_argument, 0, 'd'},
                                         {"template", required_argument, 0, 'T'},
                                         {"first-window", required_argument, 0, 'W'},
                                         {"help", no_argument, 0, 'h'},
                                         {0}};
    const char *model_path = NULL, *prompt = "", *prompt_ids = NULL, *run = NULL, *conninfo = "", *tpl_path = NULL;
    long first_window = 0; /* L of the document whose window 0 the prompt starts; 0 = none */
    char *run_tpl = NULL; /* --run's chat template */
    int print_ids = 0, sampling_given = 0;
    long n_gen = -1, top_k = 0;
    uint64_t seed = 0;
    double temp = 1.0, top_p = 1.0;
    int c;
    while ((c = getopt_long(argc, argv, "m:n:t:k:p:s:P:h", opts, NULL)) != -1) {
        switch (c) {
        case 'm': model_path = optarg; break;
        case 'n': if (parse_int(optarg, "-n", 0, INT_MAX, &n_gen)) return EXIT_USAGE; break;
        case 't': if (parse_float(optarg, "--temperature", 0, 1e6, &temp)) return EXIT_USAGE; sampling_given = 1; break;
        case 'k': if (parse_int(optarg, "--top-k", 0, INT_MAX, &top_k)) return EXIT_USAGE; sampling_given = 1; break;
        case 'p': if (parse_float(optarg, "--top-p", 1e-9, 1, &top_p)) return EXIT_USAGE; sampling_given = 1; break;
        case 'r': run = optarg; break;
        case 'd': conninfo = optarg; break;
        case 's': if (parse_seed(optarg, "--seed", &seed)) return EXIT_USAGE; break;
        case 'P': prompt = optarg; break;
        case 'i': prompt_ids = optarg; break;
        case 'o': print_ids = 1; break;
        case 'T': tpl_path = optarg; break;
        case 'W': if (parse_int(optarg, "--first-window", 2, INT_MAX, &first_window)) return EXIT_USAGE; break;
        case 'h':
            printf("usage: tokshift generate --model PATH -n N [--temperature T] [--top-k K] [--top-p P]\n"
                   "                         [--seed S] [--prompt TEXT] [--template FILE] [--first-window L]\n"
                   "                         [--run NAME [--db CONNINFO]]\n\n"
                   "Starts from BOS (then the prompt) and generates N tokens; prints only the\n"
                   "generated text on stdout.\n\n"
                   "  -m, --model PATH       GGUF file or Hugging Face model directory\n"
                   "  -n, --tokens N         tokens to generate (required)\n"
                   "  -t, --temperature T    0 = greedy (default 1.0)\n"
                   "  -k, --top-k K          keep the K most likely tokens (default 0 = off)\n"
                   "  -p, --top-p P          nucleus sampling mass (default 1 = off)\n"
                   "  -s, --seed S           random seed (default 0): 0 .. 2^64-1, or a negative number\n"
                   "                         as sequences.seed stores it (a bigint of the same 64 bits)\n"
                   "  -P, --prompt TEXT      text after BOS to continue\n"
                   "      --prompt-ids IDS   start from exactly these token ids instead (no BOS added),\n"
                   "                         e.g. to regenerate a recorded sample from its seed\n"
                   "      --print-ids        print the generated token ids instead of the text\n"
                   "      --template FILE    the chat template's tokens before the document come first\n"
                   "                         (then the prompt, or --prompt-ids, as a run's cut sees them)\n"
                   "      --first-window L   the prompt starts a document whose first window has L tokens\n"
                   "                         (min(window, the document's tokens)): compute it as the\n"
                   "                         scoring of that window does, as a run's cut <= window -\n"
                   "                         cont-len uses it (experiment.h); give it to regenerate a\n"
                   "                         sample of such a cut from ids[0..cut) and its seed\n"
                   "      --run NAME         sample as run NAME's workers do: its temperature, top-k,\n"
                   "                         top-p and template (runs.settings in --db); --model must\n"
                   "                         be its model\n"
                   "      --db CONNINFO      PostgreSQL for --run (default: the PG* environment)\n");
            return 0;
        default: return usage_hint("generate");
        }
    }
    if (n_gen < 0) {
        log_error("generate: give the number of tokens to generate, -n N");
        return usage_hint("generate");
    }
    if (run && (sampling_given || tpl_path)) {
        log_error("--run takes the temperature, top-k, top-p and template from the run; drop them");
        return usage_hint("generate");
    }
    if (run) {
        char rerr[LOG_ERRLEN], identity[65];
        runset_t rs;
        int lr = runset_load(conninfo, run, &rs, identity, rerr, sizeof rerr);
        if (lr == 0 && model_path && check_run_model(model_path, run, identity, rerr, sizeof rerr)) lr = -1;
        if (lr) {
            runset_free(&rs);
            log_error("%s", rerr);
            return lr > 0 ? EXIT_USAGE : 1;
        }
        temp = rs.cont.sampling.temperature, top_k = rs.cont.sampling.top_k, top_p = rs.cont.sampling.top_p;
        run_tpl = rs.chat_template, rs.chat_template = NULL;
        runset_free(&rs);
    }
    if (optind < argc) {
        log_error("generate: unexpected argument '%s' (a prompt goes after --prompt)", argv[optind]);
        free(run_tpl);
        return usage_hint("generate");
    }
    model_t *m = load_model(model_path);
    char err[LOG_ERRLEN];
    int rc = 1;
    int32_t *ids = NULL;
    forward_t *fwd = NULL;
    sampler_t *smp = NULL;
    char *piece = NULL;
    template_t *tpl = NULL;
    long n_prompt = -1;
    if (!m) {
        free(run_tpl);
        return 1;
    }
    if (cli_template(m, tpl_path, run_tpl, &tpl, err, sizeof err)) goto error;
    n_prompt = prompt_ids ? parse_ids(m, prompt_ids, &ids, err, sizeof err)
                          : template_encode_doc(tpl, m->tok, prompt, strlen(prompt), &ids, err, sizeof err);
    if (n_prompt < 0) goto error;
    if (n_prompt == 0) { /* a model without BOS and no prompt: nothing to condition on */
        log_seterr(err, sizeof err, "the model has no BOS token; give --prompt");
        goto error;
    }
    /* The template's context first, in the experiment's chunks: the same
     * rows as a run's cut computes (experiment_new_ctx).  Then the prompt
     * by experiment.h's rule: chunks of EXPERIMENT_BATCH rows, the last
     * row's logits; with --first-window L, as window 0's scoring computes
     * it (its last chunk filled up to min(chunk, L - 1) rows with any
     * token: no row reads a later one's values), every row's logits. */
    int n_tpl;
    const int32_t *tpl_ids = template_prefix(tpl, &n_tpl);
    long B = EXPERIMENT_BATCH, chunk = n_tpl < B ? n_tpl : B;
    long r0 = (n_prompt - 1) / B * B, r1 = n_prompt; /* the prompt's last chunk */
    if (first_window) {
        if (n_prompt > first_window - 1) {
            log_seterr(err, sizeof err, "--first-window %ld: a prompt of %ld tokens is not a cut's prefix in it "
                       "(at most L - 1 = %ld tokens)", first_window, n_prompt, first_window - 1);
            goto error;
        }
        r1 = r0 + B < first_window - 1 ? r0 + B : first_window - 1;
    }
    long n_ctx = n_tpl + (r1 > n_prompt + n_gen ? r1 : n_prompt + n_gen);
    if (n_tpl + n_prompt + n_gen > m->cfg.n_ctx_train)
        log_warn("template + prompt + %ld tokens = %ld exceeds the model's trained context %d", n_gen,
                 n_tpl + n_prompt + n_gen, m->cfg.n_ctx_train);
    long rows = r1 < B ? r1 : B; /* the widest chunk */
    if (rows < chunk) rows = chunk;
    if (!(fwd = forward_new(m, (int)n_ctx, (int)rows, 1, err, sizeof err))) goto error;
    sampler_params_t sp = {(float)temp, (int)top_k, (float)top_p};
    if (!(smp = sampler_new(m->cfg.n_vocab, sp, seed, err, sizeof err))) goto error;
    if (!(piece = malloc(tokenizer_max_piece_bytes(m->tok) + 1))) goto error;
    int *prompt_pos = malloc(sizeof(int) * (size_t)rows);
    int32_t *padded = malloc(sizeof(int32_t) * (size_t)r1);
    if (!prompt_pos || !padded) {
        free(prompt_pos), free(padded);
        log_seterr(err, sizeof err, "out of memory");
        goto error;
    }
    memcpy(padded, ids, sizeof(int32_t) * (size_t)n_prompt);
    for (long i = n_prompt; i < r1; i++) padded[i] = ids[n_prompt - 1];
    int prc = 0;
    for (long c0 = 0; c0 < n_tpl && !prc; c0 += chunk) {
        long len = n_tpl - c0 < chunk ? n_tpl - c0 : chunk;
        for (long i = 0; i < len; i++) prompt_pos[i] = (int)(c0 + i);
        prc = forward_batch(fwd, tpl_ids + c0, NULL, prompt_pos, (int)len, 0, err, sizeof err);
    }
    for (long c0 = 0; c0 < r1 && !prc; c0 += B) {
        long c1 = c0 == r0 ? r1 : c0 + B;
        for (long i = 0; i < c1 - c0; i++) prompt_pos[i] = (int)(n_tpl + c0 + i);
        prc = forward_batch(fwd, padded + c0, NULL, prompt_pos, (int)(c1 - c0), first_window && c0 == r0, err,
                            sizeof err);
    }
    free(prompt_pos);
    free(padded);
    if (prc) goto error;
    const float *logits = forward_logits(fwd) + (first_window ? (size_t)(n_prompt - 1 - r0) * m->cfg.n_vocab : 0);
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
        int pos = (int)(n_tpl + n_prompt + i);
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
    template_destroy(&tpl);
    free(run_tpl);
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

/* Prints rows as score does: TSV with a header line, or a JSON array
 * (every double exactly, 17 digits: JSON is for programs). */
static void print_rows(const model_t *m, const experiment_row_t *rows, long n, int json) {
    if (json) printf("[");
    else printf("pos\ttoken_id\tpiece\tlogprob\tentropy\trank\ttop1_logprob\tvarentropy\tcontext_len\n");
    for (long i = 0; i < n; i++) {
        const experiment_row_t *r = &rows[i];
        const char *piece = tokenizer_piece(m->tok, r->token);
        if (json) {
            printf("%s\n{\"pos\":%d,\"token_id\":%d,\"piece\":", i ? "," : "", r->pos, r->token);
            put_json_str(piece);
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
}

static int cmd_score(int argc, char **argv) {
    static const struct option opts[] = {{"model", required_argument, 0, 'm'}, {"format", required_argument, 0, 'f'},
                                         {"window", required_argument, 0, 'w'}, {"stride", required_argument, 0, 's'},
                                         {"reference", no_argument, 0, 'R'},  {"help", no_argument, 0, 'h'},
                                         {"ids", no_argument, 0, 'I'},        {"run", required_argument, 0, 'r'},
                                         {"db", required_argument, 0, 'd'},   {"strip", no_argument, 0, 'S'},
                                         {"template", required_argument, 0, 'T'}, {0}};
    const char *model_path = NULL, *format = "tsv", *run = NULL, *conninfo = "", *tpl_path = NULL;
    long window = 0, stride = 0;
    int c, reference = 0, ids_in = 0, strip = 0;
    while ((c = getopt_long(argc, argv, "m:f:w:s:h", opts, NULL)) != -1) {
        switch (c) {
        case 'm': model_path = optarg; break;
        case 'f': format = optarg; break;
        case 'w': if (parse_int(optarg, "--window", 2, 1 << 24, &window)) return EXIT_USAGE; break;
        case 's': if (parse_int(optarg, "--stride", 1, 1 << 24, &stride)) return EXIT_USAGE; break;
        case 'R': reference = 1; break;
        case 'I': ids_in = 1; break;
        case 'r': run = optarg; break;
        case 'd': conninfo = optarg; break;
        case 'S': strip = 1; break;
        case 'T': tpl_path = optarg; break;
        case 'h':
            printf("usage: tokshift score --model PATH [--format tsv|json] [--window W] [--stride S]\n"
                   "                      [--template FILE] [--run NAME [--db CONNINFO]] [--ids] [--strip]\n"
                   "                      [--reference]\n\n"
                   "Reads text on stdin, adds BOS (where the model does), and prints one row per\n"
                   "scored token:\n"
                   "pos token_id piece logprob entropy rank top1_logprob varentropy context_len\n"
                   "(natural logs, nats; pos 0 is BOS and is not scored).  The text is scored\n"
                   "byte for byte: `echo text |` ends it with a newline, which is scored too\n"
                   "(--strip drops trailing newlines; a run's workers score documents as stored).\n\n"
                   "  -m, --model PATH    GGUF model file or Hugging Face model directory\n"
                   "                      (config.json, safetensors, tokenizer.json)\n"
                   "  -f, --format F      tsv (default, with a header line) or json\n"
                   "  -w, --window W      tokens per forward pass (default %d, as a run's, or the\n"
                   "                      model's trained context when that is shorter)\n"
                   "  -s, --stride S      window step for long texts (default W/2); every token\n"
                   "                      after the first window sees at least W-S tokens\n"
                   "      --template FILE read the text through this chat template (README): its\n"
                   "                      tokens are context, never rows; pos and context_len count\n"
                   "                      the text's ids as without it\n"
                   "      --run NAME      take the window, stride and template from this run\n"
                   "                      (runs.settings in --db), so that the rows are the run's\n"
                   "                      workers' rows; --model must be the run's model\n"
                   "      --db CONNINFO   PostgreSQL for --run (default: the PG* environment)\n"
                   "      --strip         drop trailing newlines (\\n, \\r\\n) from stdin\n"
                   "      --reference     use the plain reference kernels instead of BLAS\n"
                   "      --ids           stdin holds token ids (whitespace-separated, BOS\n"
                   "                      included if wanted), scored exactly as given (after the\n"
                   "                      template's context with --template: the ids as measured)\n",
                   WIRE_DEFAULT_WINDOW);
            return 0;
        default: return usage_hint("score");
        }
    }
    if (optind < argc) {
        log_error("score reads stdin; unexpected argument '%s'", argv[optind]);
        return usage_hint("score");
    }
    if (strcmp(format, "tsv") && strcmp(format, "json")) {
        log_error("--format must be tsv or json, not '%s'", format);
        return EXIT_USAGE;
    }
    if (run && (window || stride || tpl_path)) {
        log_error("--run takes the window, stride and template from the run; drop --window/--stride/--template");
        return EXIT_USAGE;
    }
    char err[LOG_ERRLEN], identity[65];
    runset_t rs = {0};
    if (run) {
        int lr = runset_load(conninfo, run, &rs, identity, err, sizeof err);
        if (lr == 0 && model_path && check_run_model(model_path, run, identity, err, sizeof err)) lr = -1;
        if (lr) {
            runset_free(&rs);
            log_error("%s", err);
            return lr > 0 ? EXIT_USAGE : 1;
        }
        window = rs.window, stride = rs.stride;
    }
    model_t *m = load_model(model_path);
    template_t *tpl = NULL;
    if (m && cli_template(m, tpl_path, rs.chat_template, &tpl, err, sizeof err)) {
        log_error("%s", err);
        model_destroy(&m);
    }
    runset_free(&rs);
    if (!m) return 1;
    /* A run's default window, unless the model was trained on less (a
     * model with learned positions cannot go past them). */
    if (!window) window = WIRE_DEFAULT_WINDOW < m->cfg.n_ctx_train ? WIRE_DEFAULT_WINDOW : m->cfg.n_ctx_train;
    if (!stride) stride = window / 2 > 0 ? window / 2 : 1;
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
    while (strip && len > 0 && (text[len - 1] == '\n' || text[len - 1] == '\r')) text[--len] = 0;
    long n = ids_in ? parse_ids(m, text, &ids, err, sizeof err)
                    : template_encode_doc(tpl, m->tok, text, len, &ids, err, sizeof err);
    if (n < 0) goto error;
    if (!(ex = cli_experiment(m, (int)window, NULL, tpl, err, sizeof err))) goto error;
    experiment_set_reference(ex, reference);
    if (!(rows = calloc((size_t)(n > 1 ? n : 1), sizeof *rows))) {
        log_seterr(err, sizeof err, "out of memory for %ld rows", n);
        goto error;
    }
    long nr = experiment_score(ex, ids, (int)n, (int)stride, rows, err, sizeof err);
    if (nr < 0) goto error;
    print_rows(m, rows, nr, !strcmp(format, "json"));
    rc = 0;
error:
    if (rc) log_error("%s", err);
    experiment_destroy(&ex);
    template_destroy(&tpl);
    free(rows);
    free(ids);
    free(text);
    model_destroy(&m);
    return rc;
}

/* ---- regenerate -------------------------------------------------------- */

/* Whether a recomputed statistic x matches the stored float4 s: s is x
 * rounded to float4 (within 2^-24 |x|: half an ulp) when the computation is
 * the workers' own; tol adds an allowance for another machine or BLAS. */
static int same_stat(double x, float s, double tol) {
    return fabs(x - (double)s) <= 0x1p-24 * fabs(x) + tol;
}

/* What regenerate keeps between the sequences of one document: the model,
 * the run's settings, the document's ids, and the rows last computed (the
 * human text, or all K + 1 continuations of one cut). */
typedef struct {
    model_t *m;
    int64_t doc;
    runset_t rs;
    template_t *tpl;
    experiment_t *ex;
    int32_t *ids;
    long n;
    experiment_row_t *rows; /* max(n - 1, (K + 1) C) */
    uint64_t *seeds;        /* [K] */
    int have;               /* 0 none, -1 the human rows, else the cut whose continuations rows holds */
    long n_human;
} regen_t;

/* Prepares r for document d (its run's settings and text). */
static int regen_open(regen_t *r, const char *model_path, const char *run, const db_stored_doc_t *d, char *err,
                      size_t errlen) {
    if (!d->text) return log_seterr(err, errlen, "this document of run '%s' was not measured (it has an error)", run);
    if (runset_parse(d->settings_json, &r->rs, err, errlen) ||
        check_run_model(model_path, run, d->model_identity, err, errlen))
        return -1;
    if (!(r->m = load_model(model_path))) return log_seterr(err, errlen, "cannot load %s", model_path);
    /* The document as the worker measures it (worker/job.c). */
    if (cli_template(r->m, NULL, r->rs.chat_template, &r->tpl, err, errlen) ||
        (r->n = template_encode_doc(r->tpl, r->m->tok, d->text, d->text_len, &r->ids, err, errlen)) < 0)
        return -1;
    int C = r->rs.cont.cont_len, K = r->rs.cont.n_samples;
    size_t cap = (size_t)(r->n > 1 ? r->n - 1 : 1), cc = (size_t)(K + 1) * (size_t)C;
    if (!(r->ex = cli_experiment(r->m, r->rs.window, C > 0 ? &r->rs.cont : NULL, r->tpl, err, errlen))) return -1;
    if (!(r->rows = calloc(cap > cc ? cap : cc, sizeof *r->rows)) || !(r->seeds = calloc(K > 0 ? K : 1, sizeof *r->seeds)))
        return log_seterr(err, errlen, "out of memory");
    return 0;
}

static void regen_close(regen_t *r) {
    experiment_destroy(&r->ex);
    template_destroy(&r->tpl);
    model_destroy(&r->m);
    runset_free(&r->rs);
    free(r->ids);
    free(r->rows);
    free(r->seeds);
    memset(r, 0, sizeof *r);
}

/* Computes st's rows as the run's workers did: *rows (into r) and *n. */
static int regen_rows(regen_t *r, long seq, const db_stored_seq_t *st, const experiment_row_t **rows, long *n,
                      char *err, size_t errlen) {
    int C = r->rs.cont.cont_len, K = r->rs.cont.n_samples;
    if (!strcmp(st->kind, "human")) {
        if (r->have != -1 && (r->n_human = experiment_score(r->ex, r->ids, (int)r->n, r->rs.stride, r->rows, err,
                                                            errlen)) < 0)
            return -1;
        r->have = -1;
        *rows = r->rows, *n = r->n_human;
        return 0;
    }
    if (C < 1 || st->cut < 1 || st->cut + C > r->n || st->sample_idx >= K)
        return log_seterr(err, errlen, "sequence %ld (%s at cut %d) does not fit the run's settings (C %d, K %d) "
                          "and the document's %ld tokens", seq, st->kind, st->cut, C, K, r->n);
    /* All K samples of the cut, decoded together as the worker does. */
    if (r->have != st->cut && experiment_continue(r->ex, r->ids, (int)r->n, st->cut, (uint64_t)r->doc, r->rows, r->rows + C,
                                                  r->seeds, err, errlen))
        return -1;
    r->have = st->cut;
    *rows = r->rows, *n = C;
    if (!strcmp(st->kind, "sample")) {
        *rows = r->rows + (size_t)(st->sample_idx + 1) * C;
        if (r->seeds[st->sample_idx] != st->seed)
            return log_seterr(err, errlen, "sample %d's seed derives to %" PRIu64 ", the database holds %" PRIu64,
                              st->sample_idx, r->seeds[st->sample_idx], st->seed);
    }
    return 0;
}

/* Compares regenerated rows with the stored ones, logging the first
 * differences; returns how many rows differ (a count mismatch is one). */
static long regen_compare(const experiment_row_t *rows, long n, const db_stored_seq_t *st, double tol, double *worst) {
    long bad = 0;
    if ((size_t)n != st->n_toks) {
        log_error("%ld rows regenerated, %zu stored", n, st->n_toks);
        bad++;
    }
    for (long i = 0; i < n && (size_t)i < st->n_toks; i++) {
        const experiment_row_t *r = &rows[i];
        const db_stored_tok_t *t = &st->toks[i];
        const double x[4] = {r->st.logprob, r->st.entropy, r->st.top1_logprob, r->st.varentropy};
        const float y[4] = {t->logprob, t->entropy, t->top1_logprob, t->varentropy};
        int ok = r->pos == t->pos && r->token == t->token_id && r->st.rank == t->rank &&
                 r->st.context_len == t->context_len;
        for (int k = 0; k < 4; k++) {
            ok &= same_stat(x[k], y[k], tol);
            *worst = fmax(*worst, fabs(x[k] - y[k]));
        }
        if (!ok && bad++ < 10)
            log_error("pos %d: regenerated token %d logprob %.9g entropy %.9g rank %d context %d; stored pos %d token %d "
                      "logprob %.9g entropy %.9g rank %d context %d",
                      r->pos, r->token, r->st.logprob, r->st.entropy, r->st.rank, r->st.context_len, t->pos,
                      t->token_id, (double)t->logprob, (double)t->entropy, t->rank, t->context_len);
    }
    return bad;
}

static int regen_cmp_seq_no(const void *key, const void *elem) {
    int32_t k = *(const int32_t *)key, e = ((const db_stored_seq_t *)elem)->seq_no;
    return (k > e) - (k < e);
}

static int cmd_regenerate(int argc, char **argv) {
    static const struct option opts[] = {{"model", required_argument, 0, 'm'},  {"db", required_argument, 0, 'd'},
                                         {"format", required_argument, 0, 'f'}, {"tolerance", required_argument, 0, 't'},
                                         {"help", no_argument, 0, 'h'},         {0}};
    const char *model_path = NULL, *conninfo = "", *format = "tsv";
    double tol = 0;
    int c;
    while ((c = getopt_long(argc, argv, "m:d:f:h", opts, NULL)) != -1) {
        switch (c) {
        case 'm': model_path = optarg; break;
        case 'd': conninfo = optarg; break;
        case 'f': format = optarg; break;
        case 't': if (parse_float(optarg, "--tolerance", 0, 1e3, &tol)) return EXIT_USAGE; break;
        case 'h':
            printf("usage: tokshift regenerate --model PATH [--db CONNINFO] RUN DOC [SEQ...]\n\n"
                   "Reproduces sequence SEQ (default: every sequence) of document DOC of run RUN (a\n"
                   "name or id) from the database and the model, as the run's workers computed it:\n"
                   "the run's settings (runs.settings), the document's text, and for a sample its\n"
                   "cut and seed (sequences).  Prints each sequence's rows as `tokshift score`\n"
                   "does, after a '# run ... seq ...' line, and checks token ids, ranks, context\n"
                   "lengths and statistics against the stored rows (token_view).  SEQ 0 is the\n"
                   "human text; for the j-th cut point, 1 + j (K+1) is its human continuation\n"
                   "and 2 + j (K+1) + k its sample k.\n\n"
                   "  -m, --model PATH      the run's model (its sha256 identity is checked)\n"
                   "  -d, --db CONNINFO     PostgreSQL (default: the PG* environment)\n"
                   "  -f, --format F        tsv (default) or json (one array per sequence)\n"
                   "      --tolerance NATS  allow this much beyond float4 rounding (default 0: the\n"
                   "                        same build at the workers' OpenBLAS thread count\n"
                   "                        reproduces its statistics to the bit; elsewhere,\n"
                   "                        summation orders differ slightly)\n\n"
                   "Exit status: 0 when everything matches, 1 on a mismatch or an error, 2 on bad\n"
                   "usage or when RUN, DOC or a SEQ does not exist.\n");
            return 0;
        default: return usage_hint("regenerate");
        }
    }
    long doc = 0, v;
    if (argc - optind < 2) {
        log_error("usage: tokshift regenerate --model PATH [--db CONNINFO] RUN DOC [SEQ...]");
        return EXIT_USAGE;
    }
    const char *run = argv[optind];
    if (parse_int(argv[optind + 1], "DOC", 0, LONG_MAX, &doc)) return EXIT_USAGE;
    if (strcmp(format, "tsv") && strcmp(format, "json")) {
        log_error("--format must be tsv or json, not '%s'", format);
        return EXIT_USAGE;
    }
    if (!model_path) {
        log_error("--model PATH is required: the run's model");
        return EXIT_USAGE;
    }
    char err[LOG_ERRLEN];
    int rc = 1;
    int32_t *seqs = NULL;
    size_t n_seqs = (size_t)(argc - optind - 2);
    regen_t rg = {.doc = doc};
    db_stored_doc_t d = {0};
    long bad = 0, n_rows = 0;
    double worst = 0;
    db_t *db = db_connect(conninfo, err, sizeof err);
    if (!db) goto error;
    if (n_seqs) {
        if (!(seqs = malloc(n_seqs * sizeof *seqs))) goto error;
        for (size_t i = 0; i < n_seqs; i++) {
            if (parse_int(argv[optind + 2 + (int)i], "SEQ", 0, INT_MAX, &v)) {
                rc = EXIT_USAGE;
                goto done;
            }
            seqs[i] = (int32_t)v;
        }
    }
    /* The run, the document and its sequences' rows in one read. */
    int got = db_stored_doc(db, run, doc, seqs, n_seqs, &d, err, sizeof err);
    if (got) {
        rc = got > 0 ? EXIT_USAGE : 1;
        goto error;
    }
    if (!n_seqs) {
        if (!d.n_seqs) {
            log_seterr(err, sizeof err, "document %ld of run '%s' has no stored sequences", doc, run);
            rc = EXIT_USAGE;
            goto error;
        }
        n_seqs = d.n_seqs;
    }
    for (size_t i = 0; i < n_seqs; i++) {
        /* (the sequences asked for, in their order; else all, ascending) */
        const db_stored_seq_t *st = seqs ? bsearch(&seqs[i], d.seqs, d.n_seqs, sizeof *d.seqs, regen_cmp_seq_no)
                                         : &d.seqs[i];
        assert(st); /* db_stored_doc found every one */
        if (!rg.m && regen_open(&rg, model_path, run, &d, err, sizeof err)) goto error;
        const experiment_row_t *rows = NULL;
        long n = 0;
        if (regen_rows(&rg, st->seq_no, st, &rows, &n, err, sizeof err)) goto error;
        char what[96];
        if (!strcmp(st->kind, "human")) snprintf(what, sizeof what, "human text");
        else if (!strcmp(st->kind, "sample"))
            snprintf(what, sizeof what, "sample %d at cut %d, seed %" PRIu64, st->sample_idx, st->cut, st->seed);
        else snprintf(what, sizeof what, "human continuation at cut %d", st->cut);
        printf("# run %s doc %ld seq %d: %s\n", run, doc, st->seq_no, what);
        print_rows(rg.m, rows, n, !strcmp(format, "json"));
        fflush(stdout);
        long b = regen_compare(rows, n, st, tol, &worst);
        if (b) log_error("seq %d (%s): %ld of %ld rows differ from the stored ones", st->seq_no, what, b, n);
        bad += b, n_rows += n;
    }
    if (bad) {
        log_seterr(err, sizeof err, "run '%s' doc %ld: %ld of %ld regenerated rows differ from the stored ones", run,
                   doc, bad, n_rows);
        goto error;
    }
    log_info("run '%s' doc %ld: %zu sequence(s), %ld rows, all equal to the stored rows (max |d| %.3g nats)", run, doc,
             n_seqs, n_rows, worst);
    rc = 0;
    goto done;
error:
    log_error("%s", err);
done:
    db_destroy(&db);
    db_stored_doc_free(&d);
    regen_close(&rg);
    free(seqs);
    return rc;
}

/* ---- db migrate / status --------------------------------------------- */

/* Parses the options of the database commands (--db, --help).  Returns 0
 * with *conninfo set, 1 after printing help, or EXIT_USAGE. */
static int parse_db_opts(int argc, char **argv, const char *cmd, const char *help, const char **conninfo) {
    static const struct option opts[] = {{"db", required_argument, 0, 'd'}, {"help", no_argument, 0, 'h'}, {0}};
    int c;
    *conninfo = "";
    while ((c = getopt_long(argc, argv, "d:h", opts, NULL)) != -1) {
        switch (c) {
        case 'd': *conninfo = optarg; break;
        case 'h': fputs(help, stdout); return 1;
        default: return usage_hint(cmd);
        }
    }
    return 0;
}

/* tokshift db drop-run RUN [--db C] [--yes]: asks first (on a terminal)
 * unless --yes; refuses without --yes when stdin is not a terminal. */
static int cmd_db_drop_run(int argc, char **argv) {
    static const char *const use = "usage: tokshift db drop-run RUN [--db CONNINFO] [--yes]";
    static const struct option opts[] = {
        {"db", required_argument, 0, 'd'}, {"yes", no_argument, 0, 'y'}, {"help", no_argument, 0, 'h'}, {0}};
    const char *conninfo = "";
    int c, yes = 0;
    while ((c = getopt_long(argc, argv, "d:yh", opts, NULL)) != -1) {
        switch (c) {
        case 'd': conninfo = optarg; break;
        case 'y': yes = 1; break;
        case 'h':
            printf("%s\n\n"
                   "Deletes the run RUN (a name or an id) and everything of it: its documents,\n"
                   "jobs and rollups, and its partition(s) of the per-sequence statistics, which\n"
                   "are dropped whole.  Models and vocabularies stay.  Run it as the schema's owner,\n"
                   "with the run's coordinator and workers stopped (a run that a coordinator\n"
                   "serves is refused).  It shows the run and asks for\n"
                   "its name again when stdin is a terminal; --yes deletes without asking (and\n"
                   "is required when stdin is not a terminal).\n",
                   use);
            return 0;
        default: return EXIT_USAGE;
        }
    }
    if (optind + 1 != argc) {
        log_error("%s", use);
        return EXIT_USAGE;
    }
    const char *run = argv[optind];
    if (!yes && !isatty(STDIN_FILENO)) {
        log_error("not deleting run '%s' without --yes (stdin is not a terminal to ask on)", run);
        return EXIT_USAGE;
    }
    char err[LOG_ERRLEN], answer[256];
    int rc = 1, n_parts = 0;
    int64_t run_id = 0;
    db_t *db = db_connect(conninfo, err, sizeof err);
    if (!db) goto error;
    if (db_run_find(db, run, &run_id, err, sizeof err)) goto error;
    if (!yes) {
        if (table_print_report(db, run_id, DB_REPORT_STATUS, stderr, err, sizeof err)) goto error;
        fprintf(stderr, "\nDelete this run and all its results? Type '%s' to confirm: ", run);
        fflush(stderr);
        if (!fgets(answer, sizeof answer, stdin)) answer[0] = 0;
        answer[strcspn(answer, "\r\n")] = 0;
        if (strcmp(answer, run)) {
            log_seterr(err, sizeof err, "not confirmed; run '%s' is unchanged", run);
            goto error;
        }
    }
    /* Refused while a coordinator serves it; held meanwhile, so none starts
     * serving it during the drop (the session's end releases it). */
    int r = db_run_lock(db, run_id, err, sizeof err);
    if (r > 0) {
        char why[LOG_ERRLEN];
        snprintf(why, sizeof why, "%s", err);
        log_seterr(err, sizeof err, "not deleting run '%s': %s; stop it first", run, why);
    }
    if (r) goto error;
    r = db_run_drop(db, run_id, &n_parts, err, sizeof err);
    if (r == 1) log_seterr(err, sizeof err, "run '%s' is already gone", run);
    if (r) goto error;
    log_info("deleted run '%s' (id %lld): its rows and %d partition(s)", run, (long long)run_id, n_parts);
    rc = 0;
error:
    if (rc) log_error("%s", err);
    db_destroy(&db);
    return rc;
}

static int cmd_db(int argc, char **argv) {
    if (argc > 1 && !strcmp(argv[1], "drop-run")) {
        argv[1] = argv[0];
        return cmd_db_drop_run(argc - 1, argv + 1);
    }
    const char *conninfo;
    int r = parse_db_opts(argc, argv, "db",
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
    int r = parse_db_opts(argc, argv, "status",
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
        if (db_run_find(db, argv[optind], &run_id, err, sizeof err)) goto error;
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
            printf("usage: tokshift report RUN [RUN...] [--db CONNINFO] [--out DIR]\n\n"
                   "Writes the report of the runs RUN (names or ids; at most 7) from the database,\n"
                   "drawn on shared axes, one colour per run:\n"
                   "  DIR/index.html          one self-contained page (inline SVG, no scripts): the\n"
                   "                          runs' models, settings and counts; mean gap, surprisal\n"
                   "                          and entropy by position after the cut, human\n"
                   "                          continuation vs model samples (95 %% intervals); the\n"
                   "                          shift (human gap - model gap) by position bucket with\n"
                   "                          its band; calibration; documents by mean gap\n"
                   "  DIR/position_stats.csv  the position_stats view (human_cont, sample)\n"
                   "  DIR/shift_by_bucket.csv the shift_by_bucket view (positions written 2..3)\n"
                   "  DIR/calibration.csv     the calibration view\n"
                   "  DIR/document_gap.csv    documents by mean gap (document_summary), 0.1-nat bins\n"
                   "Every CSV row starts with its run's name.  DIR defaults to report-RUN (the\n"
                   "first RUN) and is created if needed; files in it are replaced.\n"
                   "CONNINFO is a libpq connection string; without it the PG* environment is used.\n");
            return 0;
        default: return usage_hint("report");
        }
    }
    if (optind >= argc) {
        log_error("usage: tokshift report RUN [RUN...] [--db CONNINFO] [--out DIR]");
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
    int rc = db ? report_write(db, (const char *const *)argv + optind, (size_t)(argc - optind), out, err, sizeof err)
                : -1;
    if (rc) log_error("%s", err);
    else log_info("wrote %s/index.html, position_stats.csv, shift_by_bucket.csv, calibration.csv, document_gap.csv",
                  out);
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
        default: return usage_hint("keygen");
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
        {"template", required_argument, 0, 'T'},  {0}};
    const char *model_path = NULL, *format = "tsv", *tpl_path = NULL;
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
        case 'T': tpl_path = optarg; break;
        case 'h':
            printf("usage: tokshift experiment --model PATH [--window W] [--stride S] [--prefix-lengths L]\n"
                   "         [--cut-every N] [--cont-len C] [--samples K] [--temperature T] [--top-k K]\n"
                   "         [--top-p P] [--seed S] [--doc-id D] [--template FILE] [--format tsv|json]\n\n"
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
                   "      --template FILE     read the document through this chat template (README)\n"
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
    template_t *tpl = NULL;
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
    long n = -1;
    if (cli_template(m, tpl_path, NULL, &tpl, err, sizeof err) ||
        (n = template_encode_doc(tpl, m->tok, text, len, &ids, err, sizeof err)) < 0)
        goto error;
    int C = (int)cont_len, K = (int)samples;
    size_t max_cuts = n_pl + (cut_every > 0 ? (size_t)n / (size_t)cut_every + 1 : 0);
    if (C > 0 && max_cuts > 0) {
        if (!(cuts = malloc(max_cuts * sizeof *cuts))) goto oom;
        nc = experiment_cuts(pl, n_pl, (int)cut_every, C, (int)n, cuts, max_cuts);
    }
    experiment_cont_t cont = {C, K, {(float)temp, (int)top_k, (float)top_p}, (uint64_t)seed};
    if (!(ex = cli_experiment(m, (int)window, nc ? &cont : NULL, tpl, err, sizeof err))) goto error;
    size_t need = (size_t)(n > 1 ? n - 1 : 1), per_cut = (size_t)(K + 1) * C;
    if (nc * per_cut > need) need = nc * per_cut;
    if (!(rows = calloc(need, sizeof *rows)) || !(seeds = calloc(nc * K + 1, sizeof *seeds))) goto oom;
    if (json) printf("[");
    else printf("kind\tcut\tsample\tpos\ttoken_id\tpiece\tlogprob\tentropy\trank\ttop1_logprob\tvarentropy\t"
                "context_len\tseed\n");
    long nr = experiment_score_cuts(ex, ids, (int)n, (int)stride, cuts, (int)nc, rows, err, sizeof err);
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
    template_destroy(&tpl);
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
    if (!strcmp(cmd, "regenerate")) return cmd_regenerate(argc - 1, argv + 1);
    if (!strcmp(cmd, "experiment")) return cmd_experiment(argc - 1, argv + 1);
    if (!strcmp(cmd, "db")) return cmd_db(argc - 1, argv + 1);
    if (!strcmp(cmd, "status")) return cmd_status(argc - 1, argv + 1);
    if (!strcmp(cmd, "queue")) return queue_main(argc - 1, argv + 1);
    if (!strcmp(cmd, "keygen")) return cmd_keygen(argc - 1, argv + 1);
    if (!strcmp(cmd, "report")) return cmd_report(argc - 1, argv + 1);
    if (!strcmp(cmd, "compare")) return compare_main(argc - 1, argv + 1);
    if (!strcmp(cmd, "auroc")) return compare_auroc_main(argc - 1, argv + 1);
    if (!strcmp(cmd, "fetch")) return fetch_main(argc - 1, argv + 1);
    log_error("unknown command '%s' (tokshift --help lists them)", cmd);
    fputs(g_usage, stderr);
    return EXIT_USAGE;
}
