/* main.c - tokshift-coordinator: one run per invocation, or the queue of runs.
 *
 * It registers the run in PostgreSQL (or finds it there and resumes), loads
 * the corpus into documents and jobs in batches that commit as they go
 * (load.c), between its messages: the jobs of a committed batch are served
 * while later batches load, and a restarted coordinator continues the load
 * after the last committed batch (refusing other corpus files; resume.c).
 * It serves the run's jobs over a ZeroMQ ROUTER through the scheduling
 * core (scheduler.c: the protocol, leases, retries, liveness, the adoption of
 * a restarted coordinator's leases) and ends when the corpus is loaded and
 * every job is done or failed, printing the summary.  This file is the
 * start-up (options, the run's registration and resume checks, the
 * socket), the poll loop, signals and the closing lines.
 *
 * With --curve-secret and --curve-clients the ROUTER is a CURVE server and
 * auth.c, polled in the same loop (no thread), lets in only the listed
 * worker keys.
 *
 * With --submit it loads the run and queues it (migration 013) instead of
 * serving it; with --serve-queue it serves every queued run from one fleet
 * (runq.c) until stopped, or until the queue is empty (--exit-when-empty).
 *
 * What it is not: a model runner (it never loads a model; the model's
 * identity is the hash of its file) or a store of results (workers write
 * those to PostgreSQL themselves). */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <jansson.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>
#include <zmq.h>

#include "auth.h"
#include "corpus.h"
#include "curve.h"
#include "db.h"
#include "table.h"
#include "tpltext.h"
#include "digest.h"
#include "fault.h"
#include "load.h"
#include "log.h"
#include "metrics.h"
#include "resume.h"
#include "runq.h"
#include "scheduler.h"
#include "score.h"
#include "wire.h"
#include "now.h"
#include "num.h"

static volatile sig_atomic_t g_stop = 0;
static void on_signal(int sig) { (void)sig; g_stop = 1; }

typedef struct {
    const char *db, *bind, *run, *model, *identity, *text_field, *id_field;
    const char *curve_secret, *curve_clients; /* both or neither */
    const char *score_run;                    /* --score-run: the generator run, or NULL */
    const char *metrics;                      /* --metrics ADDR:PORT, or NULL */
    long metrics_linger;
    int submit, serve_queue, exit_when_empty; /* --submit, --serve-queue, --exit-when-empty */
    long priority;                            /* --priority */
    char vocab_digest[65];                    /* its model's vocabulary digest (s.vocab_digest) */
    wire_settings_t s;
    int32_t prefix_buf[WIRE_MAX_CUTS];
    long job_docs, job_bytes, max_attempts, heartbeat, liveness, job_timeout_s, progress_s, max_doc_bytes;
    char **patterns;
    int n_patterns;
} opts_t;

static void usage(FILE *f) {
    fprintf(f,
            "usage: tokshift-coordinator --run NAME --model PATH [options] CORPUS...\n"
            "       tokshift-coordinator --run NAME --model PATH --submit [--priority P] [options] CORPUS...\n"
            "       tokshift-coordinator --serve-queue [--exit-when-empty] [scheduling options]\n\n"
            "Registers a run of CORPUS (files, directories, globs; JSONL or text; .gz/.zst)\n"
            "in PostgreSQL and serves its jobs to tokshift-worker processes.  Started again\n"
            "with the same --run, it resumes where it stopped.\n\n"
            "  -r, --run NAME            the run's name (unique)\n"
            "  -m, --model PATH          the model the workers must have (only hashed)\n"
            "      --model-identity HEX  instead of --model: its sha256\n"
            "      --score-run RUN       no CORPUS: score the documents and samples of the done\n"
            "                            run RUN (a name or id) with this run's model, under\n"
            "                            RUN's settings; the models' vocabularies must be equal\n"
            "  -d, --db CONNINFO         libpq connection string (default: PG* environment)\n"
            "  -b, --bind EP             ZeroMQ endpoint (default tcp://*:5555)\n"
            "      --text-field F        JSONL text field (default text)\n"
            "      --id-field F          JSONL id field (default id)\n"
            "      --max-doc-bytes N     larger documents are recorded with an error, not\n"
            "                            measured (default and most 64 MiB: what a job message holds)\n"
            "measurement settings (fixed for the run):\n"
            "      --window W            tokens per window (default 512)\n"
            "      --stride S            window stride (default W/2)\n"
            "      --prefix-lengths L    continuation cut points, e.g. 16,64 (default none)\n"
            "      --cut-every N         also cut every N tokens (default 0 = off)\n"
            "      --cut-every-bytes N   instead, cut at the first word start at or after every\n"
            "                            N bytes of text: runs of models whose tokenizers differ\n"
            "                            then cut at the same places (tokshift compare pairs them)\n"
            "      --cont-len C          tokens per continuation (default 32)\n"
            "      --samples K           model samples per cut (default 4)\n"
            "      --temperature T       sampling temperature (default 1.0)\n"
            "      --top-k K, --top-p P  truncation (default off)\n"
            "      --seed S              run seed (default 0)\n"
            "      --template FILE       read each document through this chat template: the\n"
            "                            text before and after it, split at {document}, special\n"
            "                            tokens as the vocabulary spells them (README)\n"
            "the queue of runs (one coordinator, one fleet, many runs):\n"
            "      --submit              load the run, queue it and exit (again: its new priority)\n"
            "      --priority P          its priority, -1000..1000 (default 0): higher runs first,\n"
            "                            FIFO within a priority (`tokshift queue priority` changes it)\n"
            "      --serve-queue         serve every queued run at once until stopped (SIGTERM; the\n"
            "                            queue resumes when served again); a worker takes jobs of the\n"
            "                            first run in queue order with jobs pending for its model\n"
            "      --exit-when-empty     with --serve-queue: exit 0 once the queue is empty\n"
            "scheduling:\n"
            "      --job-docs N          documents per job at most (default 64)\n"
            "      --job-bytes N         bytes of text per job at most (default 262144)\n"
            "      --max-attempts N      attempts before a job is failed (default 3)\n"
            "      --heartbeat MS        heartbeat interval (default 1000)\n"
            "      --liveness N          missed heartbeats before a worker is dead (default 5)\n"
            "      --job-timeout S       seconds before a leased job is taken back (default 3600)\n"
            "      --progress S          seconds between progress lines (default 5)\n"
            "monitoring:\n"
            "      --metrics [HOST:]PORT serve Prometheus metrics over HTTP at /metrics (HOST a\n"
            "                            numeric address, default 127.0.0.1; [::1]:PORT for IPv6)\n"
            "      --metrics-linger S    when the run is complete, keep serving its final metrics\n"
            "                            for up to S seconds (default 0) before exiting\n"
            "security (ZeroMQ CURVE; without it traffic is neither authenticated nor encrypted):\n"
            "      --curve-secret FILE   this coordinator's secret key (tokshift keygen; mode 0600)\n"
            "      --curve-clients PATH  the workers' public keys allowed in: a directory of *.pub\n"
            "                            files, or a file with one key per line\n"
            "  -h, --help\n\n"
            "Exit status: 0 when the run is complete (failed jobs included), 1 on error,\n"
            "2 on bad usage, 130 when stopped by a signal (resume by running it again).\n");
}

static long num(const char *s, const char *what, long lo, long hi) {
    char err[LOG_ERRLEN];
    long v;
    if (num_long(s, what, lo, hi, &v, err, sizeof err)) {
        log_error("%s", err);
        exit(2);
    }
    return v;
}

static double fnum(const char *s, const char *what, double lo, double hi) {
    char err[LOG_ERRLEN];
    double v;
    if (num_double(s, what, lo, hi, &v, err, sizeof err)) {
        log_error("%s", err);
        exit(2);
    }
    return v;
}

static const wire_settings_t k_default_settings = {WIRE_DEFAULT_WINDOW, 0, NULL, 0, 0, 32, 4, 1.0f, 0, 1.0f, 0, 0,
                                                   NULL, NULL, 0};

static void parse_opts(int argc, char **argv, opts_t *o) {
    static const struct option lo[] = {
        {"run", required_argument, 0, 'r'},        {"model", required_argument, 0, 'm'},
        {"model-identity", required_argument, 0, 'I'}, {"db", required_argument, 0, 'd'},
        {"bind", required_argument, 0, 'b'},       {"text-field", required_argument, 0, 'T'},
        {"id-field", required_argument, 0, 'D'},   {"window", required_argument, 0, 'w'},
        {"stride", required_argument, 0, 's'},     {"prefix-lengths", required_argument, 0, 'P'},
        {"cut-every", required_argument, 0, 'E'},  {"cont-len", required_argument, 0, 'C'},
        {"samples", required_argument, 0, 'K'},    {"temperature", required_argument, 0, 't'},
        {"top-k", required_argument, 0, 'k'},      {"top-p", required_argument, 0, 'p'},
        {"seed", required_argument, 0, 'S'},       {"job-docs", required_argument, 0, 'j'},
        {"job-bytes", required_argument, 0, 'J'},  {"max-attempts", required_argument, 0, 'A'},
        {"heartbeat", required_argument, 0, 'H'},  {"liveness", required_argument, 0, 'L'},
        {"job-timeout", required_argument, 0, 'O'}, {"progress", required_argument, 0, 'G'},
        {"max-doc-bytes", required_argument, 0, 'M'},
        {"curve-secret", required_argument, 0, 'X'}, {"curve-clients", required_argument, 0, 'Y'},
        {"score-run", required_argument, 0, 'R'},  {"template", required_argument, 0, 'U'},
        {"metrics", required_argument, 0, 'Q'},    {"metrics-linger", required_argument, 0, 'q'},
        {"cut-every-bytes", required_argument, 0, 'B'},
        {"submit", no_argument, 0, 1001},          {"priority", required_argument, 0, 1002},
        {"serve-queue", no_argument, 0, 1003},     {"exit-when-empty", no_argument, 0, 1004},
        {"help", no_argument, 0, 'h'},             {0}};
    memset(o, 0, sizeof *o);
    o->db = "";
    o->bind = "tcp://*:5555";
    o->text_field = "text";
    o->id_field = "id";
    o->s = k_default_settings;
    o->s.prefix_lengths = o->prefix_buf;
    o->job_docs = 64;
    o->job_bytes = 256 * 1024;
    o->max_attempts = 3;
    o->heartbeat = 1000;
    o->liveness = 5;
    o->job_timeout_s = 3600;
    o->progress_s = 5;
    o->max_doc_bytes = WIRE_MAX_STRING;
    int c;
    while ((c = getopt_long(argc, argv, "r:m:d:b:h", lo, NULL)) != -1) {
        switch (c) {
        case 'r': o->run = optarg; break;
        case 'm': o->model = optarg; break;
        case 'I': o->identity = optarg; break;
        case 'd': o->db = optarg; break;
        case 'b': o->bind = optarg; break;
        case 'T': o->text_field = optarg; break;
        case 'D': o->id_field = optarg; break;
        case 'w': o->s.window = (int32_t)num(optarg, "--window", 2, 1 << 20); break;
        case 's': o->s.stride = (int32_t)num(optarg, "--stride", 1, 1 << 20); break;
        case 'P': {
            char *copy = strdup(optarg), *save = NULL;
            for (char *t = strtok_r(copy, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
                if (o->s.n_prefix_lengths == WIRE_MAX_CUTS) log_die("", "too many --prefix-lengths");
                o->prefix_buf[o->s.n_prefix_lengths++] = (int32_t)num(t, "--prefix-lengths", 1, 1 << 24);
            }
            free(copy);
            break;
        }
        case 'E': o->s.cut_every = (int32_t)num(optarg, "--cut-every", 0, 1 << 24); break;
        case 'B': o->s.cut_every_bytes = (int32_t)num(optarg, "--cut-every-bytes", 0, 1 << 30); break;
        case 'C': o->s.cont_len = (int32_t)num(optarg, "--cont-len", 0, 1 << 20); break;
        case 'K': o->s.n_samples = (int32_t)num(optarg, "--samples", 0, 4096); break;
        case 't': o->s.temperature = (float)fnum(optarg, "--temperature", 0, 1e6); break;
        case 'k': o->s.top_k = (int32_t)num(optarg, "--top-k", 0, 1 << 24); break;
        case 'p': o->s.top_p = (float)fnum(optarg, "--top-p", 1e-9, 1); break;
        case 'S': o->s.seed = (uint64_t)num(optarg, "--seed", 0, INT64_MAX); break;
        case 'j': o->job_docs = num(optarg, "--job-docs", 1, WIRE_MAX_DOCS_PER_JOB); break;
        case 'J': o->job_bytes = num(optarg, "--job-bytes", 1, WIRE_MAX_FRAME / 2); break;
        case 'A': o->max_attempts = num(optarg, "--max-attempts", 1, 1000); break;
        case 'H': o->heartbeat = num(optarg, "--heartbeat", 10, 3600000); break;
        case 'L': o->liveness = num(optarg, "--liveness", 1, 1000); break;
        case 'O': o->job_timeout_s = num(optarg, "--job-timeout", 1, 86400 * 30); break;
        case 'G': o->progress_s = num(optarg, "--progress", 1, 86400); break;
        case 'M': o->max_doc_bytes = num(optarg, "--max-doc-bytes", 1, WIRE_MAX_STRING); break;
        case 'X': o->curve_secret = optarg; break;
        case 'Y': o->curve_clients = optarg; break;
        case 'R': o->score_run = optarg; break;
        case 'Q': {
            char err[LOG_ERRLEN];
            if (metrics_addr_check(optarg, err, sizeof err)) {
                log_error("%s", err);
                exit(2);
            }
            o->metrics = optarg;
            break;
        }
        case 'q': o->metrics_linger = num(optarg, "--metrics-linger", 0, 86400); break;
        case 'U': {
            char err[LOG_ERRLEN];
            free(o->s.chat_template);
            if (!(o->s.chat_template = tpltext_read(optarg, err, sizeof err)))
                log_die("check --template", "%s", err);
            break;
        }
        case 1001: o->submit = 1; break;
        case 1002: o->priority = num(optarg, "--priority", -1000, 1000); break;
        case 1003: o->serve_queue = 1; break;
        case 1004: o->exit_when_empty = 1; break;
        case 'h': usage(stdout); exit(0);
        default: usage(stderr); exit(2);
        }
    }
    o->patterns = argv + optind;
    o->n_patterns = argc - optind;
    if (o->serve_queue) {
        /* (Each run's model, settings and corpus are the queue's.) */
        if (o->run || o->model || o->identity || o->n_patterns || o->score_run || o->submit) {
            log_error("--serve-queue serves the runs queued with --submit: it takes no --run, --model, "
                      "--score-run, --submit or CORPUS");
            exit(2);
        }
        return;
    }
    if (o->exit_when_empty || (o->priority && !o->submit)) {
        log_error("--exit-when-empty goes with --serve-queue, --priority with --submit");
        exit(2);
    }
    if (!o->run || (!o->model && !o->identity) || (o->n_patterns < 1) == !o->score_run) {
        usage(stderr);
        exit(2);
    }
    if (!o->curve_secret != !o->curve_clients) {
        log_error("--curve-secret and --curve-clients go together (a CURVE server must know which workers to let in)");
        exit(2);
    }
    const wire_settings_t d = k_default_settings;
    if (o->score_run &&
        (o->s.window != d.window || o->s.stride != d.stride || o->s.n_prefix_lengths || o->s.cut_every != d.cut_every ||
         o->s.cont_len != d.cont_len || o->s.n_samples != d.n_samples || o->s.temperature != d.temperature ||
         o->s.top_k != d.top_k || o->s.top_p != d.top_p || o->s.seed != d.seed ||
         o->s.cut_every_bytes != d.cut_every_bytes))
        log_die("drop the settings options", "--score-run takes the scored run's settings; none may be given");
    if (o->s.cut_every_bytes && (o->s.cut_every || o->s.n_prefix_lengths))
        log_die("give --cut-every-bytes alone", "--cut-every-bytes places every cut; it takes no --cut-every or "
                "--prefix-lengths");
    if (!o->s.stride) o->s.stride = o->s.window / 2 > 0 ? o->s.window / 2 : 1;
    if (o->s.stride >= o->s.window) log_die("use a stride smaller than the window", "--stride %d >= --window %d",
                                            o->s.stride, o->s.window);
    if (o->s.cont_len >= o->s.window)
        log_die("continuations must fit the window", "--cont-len %d >= --window %d", o->s.cont_len, o->s.window);
}

/* The settings as canonical JSON (sorted keys), malloc'd. */
static char *settings_json(const wire_settings_t *s) {
    json_t *pl = json_array();
    for (size_t i = 0; i < s->n_prefix_lengths; i++) json_array_append_new(pl, json_integer(s->prefix_lengths[i]));
    json_t *o = json_pack("{s:i, s:i, s:o, s:i, s:i, s:i, s:f, s:i, s:f, s:I}", "window", s->window, "stride",
                          s->stride, "prefix_lengths", pl, "cut_every", s->cut_every, "cont_len", s->cont_len,
                          "samples", s->n_samples, "temperature", (double)s->temperature, "top_k", s->top_k, "top_p",
                          (double)s->top_p, "seed", (json_int_t)s->seed);
    /* (Only runs cut by bytes have "cut_every_bytes", only cross-scoring
     * runs the next two, only runs with a template "template": other runs'
     * JSON is as before.) */
    if (o && s->cut_every_bytes > 0 && json_object_set_new(o, "cut_every_bytes", json_integer(s->cut_every_bytes))) {
        json_decref(o);
        o = NULL;
    }
    if (o && s->score_run > 0 &&
        (json_object_set_new(o, "score_run", json_integer((json_int_t)s->score_run)) ||
         json_object_set_new(o, "vocab_digest", json_string(s->vocab_digest)))) {
        json_decref(o);
        o = NULL;
    }
    if (o && s->chat_template && *s->chat_template &&
        json_object_set_new(o, "template", json_string(s->chat_template))) {
        json_decref(o);
        o = NULL;
    }
    char *txt = o ? json_dumps(o, JSON_SORT_KEYS | JSON_COMPACT) : NULL;
    json_decref(o);
    return txt;
}

static char *corpus_json(const opts_t *o) {
    if (o->score_run) { /* the documents are another run's */
        json_t *j = json_pack("{s:I}", "score_run", (json_int_t)o->s.score_run);
        char *txt = j ? json_dumps(j, JSON_SORT_KEYS | JSON_COMPACT) : NULL;
        json_decref(j);
        return txt;
    }
    json_t *pats = json_array();
    for (int i = 0; i < o->n_patterns; i++) json_array_append_new(pats, json_string(o->patterns[i]));
    json_t *j = json_pack("{s:o, s:s, s:s}", "patterns", pats, "text_field", o->text_field, "id_field", o->id_field);
    char *txt = j ? json_dumps(j, JSON_SORT_KEYS | JSON_COMPACT) : NULL;
    json_decref(j);
    return txt;
}

/* ---- the corpus load, between messages --------------------------------- */

/* What the loop holds besides the scheduler: the corpus load, interleaved
 * with serving (load.c) on a connection of its own; after a failure it
 * starts again from the run's position. */
typedef struct {
    const opts_t *o;
    db_t *db;
    int64_t run_id;
    const char *identity;
    sched_t *sched; /* NULL until serving starts */
    db_t *load_db;
    load_t *load;
    int load_again; /* a failed load waits to start again */
    int64_t load_again_ms;
    int fatal; /* stop serving: an error that a restart must fix */
} coord_t;

/* How long a database call may wait for a row lock: a worker stopped inside
 * its commit holds its job's row, and the loop must keep beating (a release
 * that times out is retried by sched_tick). */
static int lock_ms(const opts_t *o) { return o->heartbeat / 2 > 50 ? (int)(o->heartbeat / 2) : 50; }

/* Records the run's final status, reconnecting every heartbeat while
 * PostgreSQL is away (a restart just as the run ends must not leave a
 * finished run 'running'), for heartbeat x liveness or 30 s, whichever is
 * longer, or until a signal.  0, or -1 with the error logged. */
static int record_status(db_t *db, int64_t run_id, const char *status, const opts_t *o) {
    char err[LOG_ERRLEN];
    long patience = o->heartbeat * o->liveness > 30000 ? o->heartbeat * o->liveness : 30000;
    int64_t until = now_ms() + patience;
    int away = 0;
    for (;;) {
        if (!db_run_set_status(db, run_id, status, err, sizeof err)) {
            if (away) log_info("reconnected to PostgreSQL");
            return 0;
        }
        if (!db_connection_lost(db) || now_ms() >= until || g_stop) break;
        if (!away)
            log_warn("PostgreSQL is unreachable (%s); reconnecting every %ld ms to record the run as %s", err,
                     o->heartbeat, status);
        away = 1;
        usleep((useconds_t)o->heartbeat * 1000);
        db_reconnect(db, err, sizeof err);
    }
    log_error("recording the run as %s: %s", status, err);
    return -1;
}

/* The serve loop's counts, to the metrics endpoint (metrics.c); once per
 * tick and at the end. */
static void publish_sched(metrics_t *m, const char *run, sched_t *s, const db_t *db, int complete) {
    if (!m) return;
    const sched_counts_t *n = sched_counts(s);
    metrics_counts_t mc = {n->jobs_total, n->done,         n->failed,    (int64_t)sched_n_unheld(s),
                           n->retries,    n->docs_total,   n->docs_done, n->tokens,
                           !sched_db_down(s), complete};
    metrics_publish_run(m, run, &mc, sched_fleet(s), db);
}

static void publish_metrics(coord_t *c, metrics_t *m, int complete) { publish_sched(m, NULL, c->sched, c->db, complete); }


/* Starts the load of the run from its position (run: as db_run_open found
 * it), after checking that the corpus files are those the load began with
 * (a first load records them).  Returns 0, -1 with a message (try again
 * later), or 1 with a message when the corpus differs (a person must act). */
static int load_begin(coord_t *c, const db_run_t *run, char *err, size_t errlen) {
    const opts_t *o = c->o;
    corpus_opts_t co = {o->text_field, o->id_field, (size_t)o->max_doc_bytes};
    corpus_t *cp = corpus_open((const char *const *)o->patterns, (size_t)o->n_patterns, &co, err, errlen);
    if (!cp) return -1;
    char *fp = resume_fingerprint(cp, err, errlen), diff[LOG_ERRLEN - 128];
    int rc = -1;
    if (!fp) goto done;
    if (run->fingerprint) {
        int n = resume_fingerprint_diff(run->fingerprint, fp, diff, sizeof diff);
        if (n) {
            log_seterr(err, errlen, "run '%s' began loading other corpus files: %s", o->run,
                       n < 0 ? "its recorded fingerprint is unreadable" : diff);
            rc = 1;
            goto done;
        }
    } else if (db_run_set_fingerprint(c->db, c->run_id, fp, err, errlen)) {
        goto done;
    }
    if (!c->load_db && !(c->load_db = db_connect(o->db, err, errlen))) goto done;
    if (db_reconnect(c->load_db, err, errlen)) goto done;
    if (run->next_doc)
        log_info("run '%s': continuing the load after document %" PRId64 " (job %" PRId64 ")", o->run, run->next_doc,
                 run->next_job);
    c->load = load_new(c->load_db, c->run_id, cp, run->next_doc, run->next_job, o->job_docs, o->job_bytes, err, errlen);
    cp = NULL; /* taken */
    rc = c->load ? 0 : -1;
done:
    free(fp);
    corpus_destroy(&cp);
    return rc;
}

/* One slice of the load; a committed batch's jobs join the queue. */
static void load_slice(coord_t *c) {
    char err[LOG_ERRLEN];
    load_batch_t b;
    int r = load_step(c->load, &b, err, sizeof err);
    if (sched_add_jobs(c->sched, b.job_from, b.job_to, b.docs_usable, b.bytes_usable))
        log_error("out of memory queueing jobs %" PRId64 "-%" PRId64 "; the idle check requeues them", b.job_from,
                  b.job_to);
    if (r == 1) return;
    load_destroy(&c->load);
    db_destroy(&c->load_db);
    if (r < 0) {
        log_error("loading the corpus: %s; it continues from the last committed batch in %ld ms", err,
                  5 * c->o->heartbeat);
        c->load_again = 1;
        c->load_again_ms = now_ms() + 5 * c->o->heartbeat;
    }
}

/* Starts a failed load again from the run's position. */
static void load_retry(coord_t *c) {
    char err[LOG_ERRLEN];
    db_run_t run;
    c->load_again_ms = now_ms() + 5 * c->o->heartbeat;
    if (sched_db_down(c->sched) || db_run_open(c->db, c->o->run, c->identity, "{}", "{}", &run, err, sizeof err)) return;
    int r = run.loaded ? 0 : load_begin(c, &run, err, sizeof err);
    db_run_clear(&run);
    if (r == 1) {
        log_error("%s", err);
        c->fatal = 1;
    } else if (r < 0) {
        log_error("loading the corpus: %s", err);
    } else {
        c->load_again = 0;
    }
}

/* --submit: completes the load (none left when it is loaded), then queues
 * the run with priority.  The exit status (0, or 1 with the error logged). */
static int submit(coord_t *c, int priority) {
    char err[LOG_ERRLEN];
    while (c->load) {
        load_batch_t b;
        int r = load_step(c->load, &b, err, sizeof err);
        if (r == 1) continue;
        load_destroy(&c->load);
        db_destroy(&c->load_db);
        if (r < 0) {
            log_error("loading the corpus: %s; submit it again to continue from the last committed batch", err);
            return 1;
        }
    }
    if (db_queue_submit(c->db, c->run_id, priority, err, sizeof err)) {
        log_error("%s", err);
        return 1;
    }
    log_info("run '%s' (id %" PRId64 ") queued with priority %d", c->o->run, c->run_id, priority);
    return 0;
}

/* Refuses to resume a run under another model, settings or (while its load
 * is incomplete) corpus description, naming each key that differs. */
static void check_resume(const opts_t *o, const db_run_t *run, const char *identity, const char *settings,
                         const char *corpus) {
    char diff[LOG_ERRLEN];
    const char *hint = "a run name is bound to its model and settings; choose another --run to change them";
    if (strcmp(run->model_identity, identity))
        log_die(hint, "run '%s' was registered with model %s, not %s (--model)", o->run, run->model_identity,
                identity);
    int n = resume_json_diff(run->settings, settings, diff, sizeof diff);
    if (n)
        log_die(hint, "run '%s' was registered with other settings: %s", o->run,
                n < 0 ? "its recorded settings are unreadable" : diff);
    if (!run->loaded && (n = resume_json_diff(run->corpus, corpus, diff, sizeof diff)))
        log_die("its load continues only with the same corpus; choose another --run for another",
                "run '%s' began loading another corpus: %s", o->run,
                n < 0 ? "its recorded corpus is unreadable" : diff);
}

/* The ROUTER bound at --bind (a CURVE server watched by auth when auth is
 * not NULL); kp is wiped.  Dies with a hint when it cannot bind. */
static void *open_router(const opts_t *opts, void *ctx, auth_t *auth, curve_keypair_t *kp) {
    char err[LOG_ERRLEN];
    void *sock = zmq_socket(ctx, ZMQ_ROUTER);
    if (!sock) log_die("", "zmq_socket: %s", zmq_strerror(zmq_errno()));
    if (auth) {
        /* The ZAP handler is bound (auth_new) before the ROUTER binds. */
        if (curve_setup_server(sock, kp, err, sizeof err) || auth_watch(auth, sock, err, sizeof err))
            log_die("", "%s", err);
        log_info("CURVE: server key %.8s..., %zu worker keys allowed", kp->public_key, auth_n_keys(auth));
    } else if (!curve_endpoint_is_local(opts->bind)) {
        log_warn("serving %s without CURVE: anyone who reaches this address can take jobs, and traffic is not "
                 "encrypted (see --curve-secret, --curve-clients)", opts->bind);
    }
    curve_keypair_wipe(kp);
    int one = 1;
    if (wire_socket_setup(sock, err, sizeof err) || zmq_setsockopt(sock, ZMQ_ROUTER_MANDATORY, &one, sizeof one) ||
        zmq_bind(sock, opts->bind) != 0)
        log_die("is the address in use? choose another --bind", "cannot bind %s: %s", opts->bind,
                zmq_strerror(zmq_errno()));
    return sock;
}

/* One poll of sock (and auth's sockets) for up to timeout_ms, then up to
 * 1,000 waiting messages, each to on_message (or on_bad when it does not
 * decode).  0, or -1 when the poll failed. */
typedef struct {
    void (*on_message)(void *self, const uint8_t *peer, size_t peer_len, wire_msg_t *m);
    void (*on_bad)(void *self, const uint8_t *peer, size_t peer_len, const char *why);
    void *self;
} sink_t;

static int receive(void *sock, auth_t *auth, long timeout_ms, const sink_t *k) {
    char err[LOG_ERRLEN];
    zmq_pollitem_t it[3] = {{sock, 0, ZMQ_POLLIN, 0}};
    void *extra[2];
    int n_it = 1 + (int)(auth ? auth_sockets(auth, extra, 2) : 0);
    for (int i = 1; i < n_it; i++) it[i] = (zmq_pollitem_t){extra[i - 1], 0, ZMQ_POLLIN, 0};
    if (zmq_poll(it, n_it, timeout_ms) < 0 && zmq_errno() != EINTR) {
        log_error("poll: %s", zmq_strerror(zmq_errno()));
        return -1;
    }
    if (auth) auth_process(auth);
    for (int budget = 0; budget < 1000; budget++) {
        uint8_t peer[SCHED_MAX_PEER];
        size_t peer_len = sizeof peer;
        wire_msg_t m = {0};
        int r = wire_recv(sock, peer, &peer_len, &m, ZMQ_DONTWAIT, err, sizeof err);
        if (r == 1) break;
        if (r < 0) {
            k->on_bad(k->self, peer, peer_len, err);
            continue;
        }
        k->on_message(k->self, peer, peer_len, &m);
        wire_msg_clear(&m);
    }
    return 0;
}

static void sched_msg(void *s, const uint8_t *p, size_t n, wire_msg_t *m) { sched_on_message(s, p, n, m); }
static void sched_bad(void *s, const uint8_t *p, size_t n, const char *why) { sched_bad_message(s, p, n, why); }
static void runq_msg(void *q, const uint8_t *p, size_t n, wire_msg_t *m) { runq_on_message(q, p, n, m); }
static void runq_bad(void *q, const uint8_t *p, size_t n, const char *why) { runq_bad_message(q, p, n, why); }

/* The metrics of a queue server: every run's, per tick; a completed run's
 * final ones (runq's closing hook). */
typedef struct {
    metrics_t *m;
    db_t *db;
} queue_metrics_t;

static void publish_closing(void *arg, sched_t *s) {
    queue_metrics_t *qm = arg;
    publish_sched(qm->m, sched_opts(s)->run, s, qm->db, 1);
}

static void publish_queue(queue_metrics_t *qm, runq_t *q) {
    for (size_t i = 0; qm->m && i < runq_n_runs(q); i++) {
        sched_t *s = runq_sched_at(q, i);
        publish_sched(qm->m, sched_opts(s)->run, s, qm->db, 0);
    }
}

/* --serve-queue: every queued run from one fleet (runq.c) until a signal,
 * or until the queue is empty (--exit-when-empty), with each run's metrics
 * when metrics is not NULL.  The exit status. */
static int serve_queue(const opts_t *o, void *sock, auth_t *auth, db_t *db, metrics_t *metrics) {
    char err[LOG_ERRLEN];
    queue_metrics_t qm = {metrics, db};
    const runq_opts_t qo = {o->max_attempts, o->heartbeat, o->liveness, o->job_timeout_s,
                            metrics ? publish_closing : NULL, &qm};
    runq_t *q = runq_new(&qo, db, sock, err, sizeof err);
    if (!q) log_die("check --db; run `tokshift db migrate` first", "%s", err);
    log_info("serving the queue: %zu run(s)", runq_n_runs(q));
    publish_queue(&qm, q);
    if (db_set_timeout(db, "lock_timeout", lock_ms(o), err, sizeof err)) log_die("", "%s", err);
    const sink_t k = {runq_msg, runq_bad, q};
    int64_t next_tick = now_ms() + o->heartbeat, next_progress = now_ms() + o->progress_s * 1000;
    int rc = 0;
    while (!g_stop && !(o->exit_when_empty && !runq_n_runs(q))) {
        int64_t now = now_ms();
        if (receive(sock, auth, next_tick > now ? (long)(next_tick - now) : 0, &k)) {
            rc = 1;
            break;
        }
        runq_dispatch(q);
        now = now_ms();
        if (now >= next_tick) {
            runq_tick(q, stdout);
            publish_queue(&qm, q);
            next_tick = now + o->heartbeat;
        }
        if (now >= next_progress) {
            runq_progress(q);
            next_progress = now + o->progress_s * 1000;
        }
    }
    if (g_stop) {
        log_info("stopped by a signal; %zu queued run(s) resume when the queue is served again", runq_n_runs(q));
        rc = 130;
    } else if (!rc) {
        log_info("the queue is empty: %zu run(s) completed", runq_n_completed(q));
    }
    runq_destroy(&q);
    return rc;
}

int main(int argc, char **argv) {
    opts_t o;
    parse_opts(argc, argv, &o);
    /* Keys first: a refused key file should not wait for a corpus load. */
    void *ctx = zmq_ctx_new();
    auth_t *auth = NULL;
    curve_keypair_t kp;
    char kerr[LOG_ERRLEN];
    memset(&kp, 0, sizeof kp);
    if (!ctx) log_die("", "zmq_ctx_new: %s", zmq_strerror(zmq_errno()));
    if (o.curve_secret) {
        if (curve_read_secret(o.curve_secret, &kp, kerr, sizeof kerr))
            log_die("make a key pair with `tokshift keygen --out PREFIX` and pass PREFIX.key", "%s", kerr);
        if (!(auth = auth_new(ctx, o.curve_clients, kerr, sizeof kerr)))
            log_die("--curve-clients names the workers' *.pub files (a directory) or a file of keys", "%s", kerr);
    }
    char err[LOG_ERRLEN], ident[65];
    struct sigaction sa = {0};
    sa.sa_handler = on_signal;
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    /* Each worker's connection is a descriptor: the soft limit (often 1,024)
     * would refuse the thousandth worker; the hard one is ours to take. */
    struct rlimit rl;
    if (!getrlimit(RLIMIT_NOFILE, &rl) && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    metrics_t *metrics = o.metrics ? metrics_new(o.metrics, o.run, err, sizeof err) : NULL; /* (queue: run NULL) */
    if (o.metrics && !metrics) log_die("choose another --metrics address or port", "%s", err);
    if (metrics) log_info("metrics at %s", metrics_url(metrics));

    if (o.serve_queue) {
        db_t *db = db_connect(o.db, err, sizeof err);
        if (!db || db_async_commit(db, err, sizeof err))
            log_die("check --db or the PG* environment; run `tokshift db migrate` first", "%s", err);
        void *sock = open_router(&o, ctx, auth, &kp);
        int rc = serve_queue(&o, sock, auth, db, metrics);
        int linger = 200;
        zmq_setsockopt(sock, ZMQ_LINGER, &linger, sizeof linger);
        zmq_close(sock);
        auth_destroy(&auth);
        zmq_ctx_term(ctx);
        if (metrics && rc == 0) metrics_linger(metrics, o.metrics_linger, &g_stop);
        metrics_destroy(&metrics);
        db_destroy(&db);
        return rc;
    }
    if (o.identity) snprintf(ident, sizeof ident, "%s", o.identity);
    else if (digest_model_identity(o.model, ident, err, sizeof err)) log_die("check --model", "%s", err);
    db_t *db = db_connect(o.db, err, sizeof err);
    if (!db) log_die("check --db or the PG* environment; run `tokshift db migrate` first", "%s", err);
    if (db_async_commit(db, err, sizeof err)) log_die("", "%s", err);
    if (o.score_run &&
        score_settings(db, o.score_run, &o.s, o.prefix_buf, o.vocab_digest, err, sizeof err))
        log_die("--score-run takes a done run whose workers had the database", "%s", err);
    char *sj = settings_json(&o.s), *cj = corpus_json(&o);
    if (!sj || !cj) log_die("", "out of memory");
    db_run_t run;
    if (db_run_open(db, o.run, ident, sj, cj, &run, err, sizeof err)) log_die("check --db", "%s", err);
    if (run.existed) check_resume(&o, &run, ident, sj, cj);
    /* One coordinator loads and serves a run at a time (its scheduler
     * takes the lock again; --submit of a loaded run serves nothing). */
    if (!o.submit || !run.loaded) {
        int held = db_run_lock(db, run.run_id, err, sizeof err);
        if (held)
            log_die(held > 0 ? "stop that coordinator first, or let it finish the run; if its machine is gone, end "
                               "its session: SELECT pg_terminate_backend(PID)"
                             : "check --db",
                    "run '%s': %s",
                    o.run, err);
    }
    free(sj);
    free(cj);

    coord_t c = {0};
    c.o = &o;
    c.db = db;
    c.run_id = run.run_id;
    c.identity = ident;
    if (!run.loaded && o.score_run) {
        log_info("run '%s' (id %" PRId64 "): scoring the documents and samples of run %s", o.run, run.run_id,
                 o.score_run);
        /* (ANALYZE after the bulk insert, as a corpus load does: plans from
         * statistics that predate it can be quadratic.) */
        if (db_score_load(db, o.s.score_run, run.run_id, err, sizeof err) || db_load_analyze(db, err, sizeof err))
            log_die("", "%s", err);
    } else if (!run.loaded) {
        log_info("run '%s' (id %" PRId64 "): reading the corpus", o.run, run.run_id);
        int r = load_begin(&c, &run, err, sizeof err);
        if (r) log_die(r == 1 ? "a load continues only with the files it began with: restore them, or choose another --run"
                              : "check the corpus paths",
                       "%s", err);
        if (strcmp(run.status, "loading") && db_run_set_status(db, c.run_id, "loading", err, sizeof err))
            log_die("", "%s", err);
    } else {
        log_info("run '%s' (id %" PRId64 ", %s): resuming", o.run, run.run_id, run.status);
    }
    db_run_clear(&run);
    if (o.submit) {
        int rc = submit(&c, (int)o.priority);
        curve_keypair_wipe(&kp);
        auth_destroy(&auth);
        zmq_ctx_term(ctx);
        metrics_destroy(&metrics);
        free(o.s.chat_template);
        db_destroy(&db);
        return rc;
    }
    void *sock = open_router(&o, ctx, auth, &kp);
    const sched_opts_t so = {o.run, ident, o.s, o.max_attempts, o.heartbeat, o.liveness, o.job_timeout_s, 0};
    if (!(c.sched = sched_new(&so, db, sock, c.run_id, err, sizeof err))) log_die("", "%s", err);
    if (!c.load && (sched_n_queued(c.sched) || sched_n_adopted(c.sched)))
        db_run_set_status(db, c.run_id, "running", err, sizeof err);
    char ep[256];
    size_t ep_len = sizeof ep;
    zmq_getsockopt(sock, ZMQ_LAST_ENDPOINT, ep, &ep_len);
    log_info("serving %zu pending jobs on %s", sched_n_queued(c.sched), ep);
    /* (Only now: starting up, waiting for a lock is right, e.g. for a stopped
     * worker's commit while the leases are read.) */
    if (db_set_timeout(db, "lock_timeout", lock_ms(&o), err, sizeof err)) log_die("", "%s", err);
    int64_t next_tick = now_ms() + o.heartbeat, next_progress = now_ms() + o.progress_s * 1000;
    int exit_code = 0;
    publish_metrics(&c, metrics, 0);
    const sink_t k = {sched_msg, sched_bad, c.sched};
    while (!g_stop && !c.fatal) {
        /* Finished when the corpus is loaded, nothing is queued and nobody
         * holds a job. */
        if (sched_finished(c.sched, c.load || c.load_again)) break;
        int64_t now = now_ms();
        long timeout = c.load ? 0 : next_tick > now ? (long)(next_tick - now) : 0;
        if (receive(sock, auth, timeout, &k)) {
            exit_code = 1;
            break;
        }
        sched_dispatch(c.sched);
        if (c.load) load_slice(&c);
        else if (c.load_again && now_ms() >= c.load_again_ms) load_retry(&c);
        now = now_ms();
        if (now >= next_tick) {
            sched_tick(c.sched);
            publish_metrics(&c, metrics, 0);
            next_tick = now + o.heartbeat;
        }
        if (now >= next_progress) {
            sched_progress(c.sched, 0);
            next_progress = now + o.progress_s * 1000;
        }
    }
    load_destroy(&c.load); /* an open batch rolls back; the committed ones stay */
    db_destroy(&c.load_db);
    if (c.fatal) {
        record_status(db, c.run_id, "stopped", &o);
        exit_code = 1;
    } else if (g_stop) {
        log_info("stopped by a signal; run it again with --run %s to resume", o.run);
        record_status(db, c.run_id, "stopped", &o);
        exit_code = 130;
    } else if (!exit_code) {
        sched_finish(c.sched);
        if (record_status(db, c.run_id, "done", &o)) {
            log_error("every job of run '%s' is settled, but its status is not recorded: run it again with --run %s",
                      o.run, o.run);
            exit_code = 1;
        }
        sched_progress(c.sched, 1);
        publish_metrics(&c, metrics, 1);
        if (table_print_report(db, c.run_id, DB_REPORT_SUMMARY, stdout, err, sizeof err)) log_error("%s", err);
    }
    int linger = 200;
    zmq_setsockopt(sock, ZMQ_LINGER, &linger, sizeof linger);
    zmq_close(sock);
    uint64_t bad = sched_counts(c.sched)->bad_messages;
    if (bad) log_info("%llu malformed messages were refused", (unsigned long long)bad);
    if (auth) {
        auth_stats_t as = auth_stats(auth);
        log_info("CURVE: %lu connections accepted, %lu refused by key, %lu failed handshakes", as.accepted,
                 as.refused, as.failed_handshakes);
    }
    auth_destroy(&auth);
    zmq_ctx_term(ctx);
    if (metrics && exit_code == 0) metrics_linger(metrics, o.metrics_linger, &g_stop);
    metrics_destroy(&metrics);
    sched_destroy(&c.sched);
    free(o.s.chat_template);
    db_destroy(&db);
    return exit_code;
}
