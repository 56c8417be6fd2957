/* main.c - tokshift-coordinator: one run per invocation.
 *
 * It registers the run in PostgreSQL (or finds it there and resumes), loads
 * the corpus into documents and jobs in batches that commit as they go
 * (load.c), between its messages: the jobs of a committed batch are served
 * while later batches load, and a restarted coordinator continues the load
 * after the last committed batch (refusing other corpus files; resume.c).
 * It hands jobs to workers over a ZeroMQ ROUTER, tracks the workers by
 * heartbeat, re-queues the jobs of workers that went silent or failed, gives
 * a job up after --max-attempts, and ends when the corpus is loaded and
 * every job is done or failed, printing the summary.
 *
 * Restarted, it adopts the leases PostgreSQL holds (same attempt tokens):
 * a worker that reconnects under the lease's name holds its job again, and
 * one that finished meanwhile commits under its token and reports DONE;
 * only the leases that nobody reclaims within 2 x heartbeat x liveness are
 * requeued.
 *
 * The protocol as the coordinator sees it (per worker):
 *
 *   HELLO ----> model matches? --no--> SHUTDOWN "model mismatch: ..."
 *                    | yes
 *                    v
 *               WELCOME; READY ----> (a pending job: lease it in PostgreSQL
 *                                     with a new token) JOB
 *               DONE(token)  ----> PostgreSQL says done? count it
 *               FAILED(token) ---> release: pending again, or failed at the
 *                                  attempt limit
 *               silence > heartbeat x liveness ---> dead: release its job
 *
 * With --curve-secret and --curve-clients the ROUTER is a CURVE server and
 * auth.c, polled in the same loop (no thread), lets in only the listed
 * worker keys.  Log lines that a peer can provoke (bad or unexpected
 * messages, refusals) are rate-limited.
 *
 * What it is not: a model runner (it never loads a model; the model's
 * identity is the hash of its file) or a store of results (workers write
 * those to PostgreSQL themselves). */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <jansson.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
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
#include "fleet.h"
#include "load.h"
#include "log.h"
#include "metrics.h"
#include "ratelimit.h"
#include "resume.h"
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
    char vocab_digest[65];                    /* its model's vocabulary digest (s.vocab_digest) */
    wire_settings_t s;
    int32_t prefix_buf[WIRE_MAX_CUTS];
    long job_docs, job_bytes, max_attempts, heartbeat, liveness, job_timeout_s, progress_s, max_doc_bytes;
    char **patterns;
    int n_patterns;
} opts_t;

static void usage(FILE *f) {
    fprintf(f,
            "usage: tokshift-coordinator --run NAME --model PATH [options] CORPUS...\n\n"
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
        case 'h': usage(stdout); exit(0);
        default: usage(stderr); exit(2);
        }
    }
    o->patterns = argv + optind;
    o->n_patterns = argc - optind;
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

/* ---- serving ------------------------------------------------------------ */

typedef struct {
    const opts_t *o;
    db_t *db;
    void *sock;
    fleet_t *fleet;
    int64_t run_id;
    const char *identity;
    int64_t *queue;
    size_t q_head, q_len, q_cap;
    uint64_t rng;
    /* counters for progress */
    int64_t done, failed, retries, tokens, docs_done, jobs_total, docs_total;
    int64_t bytes_total, bytes_done; /* text bytes of usable documents: all loaded, and of done jobs */
    int64_t t0_ms, tokens0;
    /* The progress line's rate: tokens (committed + in flight) at the last
     * line, and a moving average of tokens/s over the recent lines. */
    int64_t last_tokens_ms, last_tokens;
    double rate;
    uint64_t bad_messages; /* malformed messages received */
    ratelimit_t peer_log;  /* lines that any peer can provoke: bad and unexpected messages */
    /* PostgreSQL trouble: while db_down, database work waits for tick() to
     * reconnect; releases that failed are retried from `unreleased`. */
    int db_down;
    struct unreleased { int64_t job_id; uint64_t token; char reason[256]; } *unreleased;
    size_t n_unreleased, cap_unreleased;
    int retrying; /* in retry_releases: failures were logged the first time */
    int64_t dups; /* jobs handed to two workers (TOKSHIFT_FAULT dup_dispatch) */
    /* The corpus load, interleaved with serving (load.c) on a connection of
     * its own; after a failure it starts again from the run's position. */
    db_t *load_db;
    load_t *load;
    int load_again;          /* a failed load waits to start again */
    int64_t load_again_ms;
    int fatal;               /* stop serving: an error that a restart must fix */
    /* Leases found at start, waiting for their workers to reconnect until
     * adopt_until_ms; then requeued. */
    db_lease_t *adopted;
    size_t n_adopted;
    int64_t adopt_until_ms;
} coord_t;

/* How long a database call may wait for a row lock: a worker stopped inside
 * its commit holds its job's row, and the loop must keep beating (a release
 * that times out is retried by tick()). */
static int lock_ms(const opts_t *o) { return o->heartbeat / 2 > 50 ? (int)(o->heartbeat / 2) : 50; }

/* Notes a failed database call: a lost connection pauses database work until
 * tick() has reconnected. */
static void db_trouble(coord_t *c, const char *err) {
    if (c->db_down || !db_connection_lost(c->db)) return;
    c->db_down = 1;
    log_warn("PostgreSQL is unreachable (%s); reconnecting every %ld ms, jobs stay as PostgreSQL has them", err,
             c->o->heartbeat);
}

/* Reconnects after trouble; 0 when the database is usable. */
static int db_revive(coord_t *c) {
    char err[LOG_ERRLEN];
    if (!c->db_down) return 0;
    if (db_reconnect(c->db, err, sizeof err)) {
        log_debug("%s", err);
        return -1;
    }
    if (db_async_commit(c->db, err, sizeof err) || db_set_timeout(c->db, "lock_timeout", lock_ms(c->o), err, sizeof err))
        log_warn("%s", err); /* a new session: set them again */
    c->db_down = 0;
    log_info("reconnected to PostgreSQL");
    return 0;
}

static uint64_t next_token(coord_t *c) {
    c->rng ^= c->rng << 13, c->rng ^= c->rng >> 7, c->rng ^= c->rng << 17;
    return c->rng & INT64_MAX; /* stored as a positive bigint */
}

static int q_push(coord_t *c, int64_t job) {
    if (c->q_head + c->q_len == c->q_cap) {
        if (c->q_head > 0) {
            memmove(c->queue, c->queue + c->q_head, c->q_len * sizeof *c->queue);
            c->q_head = 0;
        } else {
            size_t cap = c->q_cap ? 2 * c->q_cap : 1024;
            int64_t *nq = realloc(c->queue, cap * sizeof *nq);
            if (!nq) return -1;
            c->queue = nq;
            c->q_cap = cap;
        }
    }
    c->queue[c->q_head + c->q_len++] = job;
    return 0;
}

/* Sends m to w.  A worker whose connection is gone (it left, or died: the
 * ROUTER says EHOSTUNREACH) is marked unreachable and said so once, at
 * debug level; it stops counting as alive, and the heartbeat check removes
 * it (and requeues its job) as before. */
static void send_to(coord_t *c, fleet_worker_t *w, const wire_msg_t *m) {
    char err[LOG_ERRLEN];
    if (!wire_send(c->sock, w->id, w->id_len, m, err, sizeof err)) return;
    if (errno == EHOSTUNREACH) {
        if (!w->unreachable) log_debug("worker %s disconnected: %s", w->name, err);
        w->unreachable = 1;
        return;
    }
    log_warn("to worker %s: %s", w->name, err);
}

/* Puts w's job back (or fails it at the attempt limit) with reason.  When
 * PostgreSQL cannot be told, the release is kept and retried by tick(). */
static void release_job_limit(coord_t *c, int64_t job_id, uint64_t token, const char *reason, int max_attempts) {
    char err[LOG_ERRLEN];
    db_release_t r = c->db_down ? DB_RELEASE_ERROR
                                : db_job_release(c->db, c->run_id, job_id, (int64_t)token, reason, max_attempts, err,
                                                 sizeof err);
    if (r == DB_RELEASE_ERROR) {
        if (!c->db_down) {
            if (!c->retrying) log_error("job %" PRId64 ": %s (will retry)", job_id, err);
            db_trouble(c, err);
        }
        if (c->n_unreleased == c->cap_unreleased) {
            size_t cap = c->cap_unreleased ? 2 * c->cap_unreleased : 16;
            struct unreleased *nu = realloc(c->unreleased, cap * sizeof *nu);
            if (!nu) {
                log_error("out of memory keeping job %" PRId64 "'s release; it is requeued at the end", job_id);
                return;
            }
            c->unreleased = nu, c->cap_unreleased = cap;
        }
        struct unreleased *u = &c->unreleased[c->n_unreleased++];
        u->job_id = job_id, u->token = token;
        snprintf(u->reason, sizeof u->reason, "%s", reason);
        return;
    }
    if (r == DB_RELEASE_REQUEUED) {
        c->retries++;
        log_warn("job %" PRId64 " requeued: %s", job_id, reason);
        if (q_push(c, job_id)) log_error("out of memory requeueing job %" PRId64, job_id);
    } else if (r == DB_RELEASE_FAILED) {
        c->failed++;
        if (max_attempts)
            log_error("job %" PRId64 " failed after %d attempts: %s", job_id, max_attempts, reason);
        else
            log_error("job %" PRId64 " failed (the worker says it cannot succeed): %s", job_id, reason);
    }
}

static void release_job(coord_t *c, int64_t job_id, uint64_t token, const char *reason) {
    release_job_limit(c, job_id, token, reason, (int)c->o->max_attempts);
}

/* Retries the releases that PostgreSQL could not be told. */
static void retry_releases(coord_t *c) {
    size_t n = c->n_unreleased;
    struct unreleased *u = c->unreleased;
    c->n_unreleased = 0, c->unreleased = NULL, c->cap_unreleased = 0;
    c->retrying = 1;
    for (size_t i = 0; i < n; i++) release_job(c, u[i].job_id, u[i].token, u[i].reason);
    c->retrying = 0;
    free(u);
}

/* When no worker holds a job and none is queued, yet PostgreSQL has some
 * pending or leased (a lease whose reply was lost, or lost in a database
 * crash: the coordinator's commits are asynchronous), puts them back in the
 * queue, so the run cannot stall.  Their old tokens become stale. */
static void reconcile(coord_t *c, const db_progress_t *pg) {
    char err[LOG_ERRLEN];
    int64_t *ids = NULL;
    size_t n = 0;
    if (c->n_unreleased || (pg->pending == 0 && pg->leased == 0)) return;
    if (db_jobs_pending(c->db, c->run_id, 1, &ids, &n, err, sizeof err)) {
        log_error("%s", err);
        db_trouble(c, err);
        return;
    }
    log_warn("%" PRId64 " job(s) pending and %" PRId64 " leased in PostgreSQL but held by no worker: requeued",
             pg->pending, pg->leased);
    for (size_t i = 0; i < n; i++)
        if (q_push(c, ids[i])) log_error("out of memory requeueing job %" PRId64, ids[i]);
    free(ids);
}

/* The entry of the sending worker that holds job_id under token: the
 * sender's own, or the one of its earlier connection (same name: a worker
 * that reconnected finishes the job it had); NULL when it holds none (a
 * replayed or late message).  Only the dup_dispatch fault gives one attempt
 * to two workers. */
static fleet_worker_t *holder(coord_t *c, int64_t job_id, uint64_t token, fleet_worker_t *sender) {
    if (!sender) return NULL;
    if (sender->job_id == job_id && sender->token == token) return sender;
    for (size_t i = 0; i < fleet_size(c->fleet); i++) {
        fleet_worker_t *w = fleet_at(c->fleet, i);
        if (w->job_id == job_id && w->token == token && !strcmp(w->name, sender->name)) return w;
    }
    return NULL;
}

/* Refreshes the progress counters from PostgreSQL (after adopted leases
 * ended without the worker's DONE reaching this coordinator, and for the
 * closing line). */
static void refresh_counts(coord_t *c) {
    char err[LOG_ERRLEN];
    db_progress_t pg;
    if (c->db_down || db_progress(c->db, c->run_id, &pg, err, sizeof err)) return;
    c->done = pg.done, c->failed = pg.failed, c->docs_done = pg.docs_done, c->tokens = pg.tokens_done;
    c->bytes_done = pg.bytes_done;
}

/* Removes adopted lease i from the waiting list. */
static void adopted_drop(coord_t *c, size_t i) { c->adopted[i] = c->adopted[--c->n_adopted]; }

/* The waiting adopted lease of job_id under token, or -1. */
static long adopted_find(coord_t *c, int64_t job_id, uint64_t token) {
    for (size_t i = 0; i < c->n_adopted; i++)
        if (c->adopted[i].job_id == job_id && (uint64_t)c->adopted[i].token == token) return (long)i;
    return -1;
}

/* A worker said HELLO: if a lease found at start names it, it holds that
 * job again (the same attempt token: its commit is not fenced off). */
static void adopt_for(coord_t *c, fleet_worker_t *w) {
    for (size_t i = 0; i < c->n_adopted; i++) {
        if (strcmp(c->adopted[i].worker, w->name)) continue;
        w->job_id = c->adopted[i].job_id;
        w->token = (uint64_t)c->adopted[i].token;
        w->leased_ms = now_ms() - c->adopted[i].age_ms;
        w->job_bytes = c->adopted[i].n_bytes, w->prog_tokens = w->prog_bytes = w->prog_docs = 0;
        w->adopted = 1;
        w->ready = 0;
        log_info("worker %s reconnected holding job %" PRId64 ": lease adopted", w->name, w->job_id);
        adopted_drop(c, i);
        return;
    }
}

/* The grace period is over: the leases that no worker reclaimed are
 * requeued (or, done meanwhile, counted). */
static void adopt_expire(coord_t *c) {
    char reason[256];
    snprintf(reason, sizeof reason, "its worker did not reconnect within %" PRId64 " ms of the coordinator's restart",
             2 * c->o->heartbeat * c->o->liveness);
    while (c->n_adopted) {
        db_lease_t l = c->adopted[c->n_adopted - 1];
        c->n_adopted--;
        release_job(c, l.job_id, (uint64_t)l.token, reason);
    }
    refresh_counts(c);
}

/* Hands pending jobs to ready workers. */
static void dispatch(coord_t *c) {
    char err[LOG_ERRLEN];
    fleet_worker_t *w;
    int dup = fault_armed(FAULT_DUP_DISPATCH) && c->dups < fault_value(FAULT_DUP_DISPATCH);
    if (dup) { /* TOKSHIFT_FAULT dup_dispatch: wait until two workers are ready, then hand a job to both */
        size_t ready = 0;
        for (size_t i = 0; i < fleet_size(c->fleet); i++) {
            fleet_worker_t *x = fleet_at(c->fleet, i);
            ready += x->ready && x->job_id < 0;
        }
        if (ready < 2) return;
    }
    while (!c->db_down && c->q_len > 0 && (w = fleet_next_ready(c->fleet))) {
        int64_t job_id = c->queue[c->q_head++];
        c->q_len--;
        uint64_t token = next_token(c);
        int attempts = 0;
        int r = db_job_lease(c->db, c->run_id, job_id, (int64_t)token, w->name, &attempts, err, sizeof err);
        if (r < 0) {
            log_error("leasing job %" PRId64 ": %s", job_id, err);
            db_trouble(c, err);
            q_push(c, job_id);
            return; /* PostgreSQL trouble: try again on the next tick */
        }
        if (r == 1) continue; /* no longer pending (done meanwhile) */
        db_doc_t *docs = NULL;
        size_t n = 0;
        if (db_job_docs(c->db, c->run_id, job_id, &docs, &n, err, sizeof err)) {
            log_error("job %" PRId64 ": %s", job_id, err);
            db_trouble(c, err);
            release_job(c, job_id, token, err);
            return;
        }
        wire_msg_t m = {.type = WIRE_JOB};
        m.u.job.run_id = c->run_id;
        m.u.job.job_id = job_id;
        m.u.job.attempt_token = token;
        wire_doc_t *wd = calloc(n ? n : 1, sizeof *wd);
        for (size_t i = 0; wd && i < n; i++) wd[i] = (wire_doc_t){docs[i].doc_id, docs[i].text, docs[i].text_len, NULL, 0};
        score_job_t held = {0};
        if (wd && c->o->score_run &&
            score_attach(c->db, c->o->s.score_run, c->run_id, job_id, wd, n, &held, err, sizeof err)) {
            log_error("job %" PRId64 ": %s", job_id, err);
            db_trouble(c, err);
            release_job(c, job_id, token, err);
            free(wd);
            db_docs_free(docs, n);
            return;
        }
        m.u.job.docs = wd;
        m.u.job.n_docs = n;
        w->job_id = job_id;
        w->token = token;
        w->ready = 0;
        w->leased_ms = now_ms();
        w->job_bytes = w->prog_tokens = w->prog_bytes = w->prog_docs = 0;
        for (size_t i = 0; i < n; i++) w->job_bytes += (int64_t)docs[i].text_len;
        if (!wd || wire_send(c->sock, w->id, w->id_len, &m, err, sizeof err)) {
            log_warn("job %" PRId64 " to %s: %s", job_id, w->name, wd ? err : "out of memory");
            w->job_id = -1;
            release_job(c, job_id, token, "could not be sent to the worker");
        } else {
            log_debug("job %" PRId64 " (attempt %d, %zu docs) -> %s", job_id, attempts, n, w->name);
            fleet_worker_t *w2 = dup ? fleet_next_ready(c->fleet) : NULL;
            if (w2 && !wire_send(c->sock, w2->id, w2->id_len, &m, err, sizeof err)) {
                log_warn("job %" PRId64 " handed to %s too, same attempt token (TOKSHIFT_FAULT dup_dispatch)", job_id,
                         w2->name);
                w2->job_id = job_id, w2->token = token, w2->ready = 0, w2->leased_ms = w->leased_ms;
                dup = ++c->dups < fault_value(FAULT_DUP_DISPATCH);
            }
        }
        score_release(&held);
        free(wd);
        db_docs_free(docs, n);
    }
}

static void on_message(coord_t *c, const uint8_t *peer, size_t peer_len, wire_msg_t *m) {
    char err[LOG_ERRLEN];
    fleet_worker_t *w = fleet_find(c->fleet, peer, peer_len);
    if (w) w->last_seen_ms = now_ms(), w->unreachable = 0;
    switch (m->type) {
    case WIRE_HELLO: {
        int old_tpl = c->o->s.chat_template && *c->o->s.chat_template && !m->u.hello.templates;
        int old = (c->o->score_run && !m->u.hello.observes) || (c->o->s.cut_every_bytes && !m->u.hello.cuts_by_bytes) ||
                  old_tpl;
        if (strcmp(m->u.hello.model_identity, c->identity) || old) {
            wire_msg_t s = {.type = WIRE_SHUTDOWN};
            char reason[400];
            if (c->o->s.cut_every_bytes && !m->u.hello.cuts_by_bytes)
                snprintf(reason, sizeof reason, "run '%s' cuts by bytes, which worker %s (a version before "
                         "--cut-every-bytes) would not", c->o->run, m->u.hello.worker);
            else if (c->o->score_run && !m->u.hello.observes)
                snprintf(reason, sizeof reason, "run '%s' scores another run's samples, which worker %s (a version "
                         "before cross-scoring) would draw anew", c->o->run, m->u.hello.worker);
            else if (old_tpl)
                snprintf(reason, sizeof reason, "run '%s' reads its documents through a chat template, which worker "
                         "%s (a version before templates) would ignore", c->o->run, m->u.hello.worker);
            else
                snprintf(reason, sizeof reason, "model mismatch: run '%s' uses model %s, worker %s has %s",
                         c->o->run, c->identity, m->u.hello.worker, m->u.hello.model_identity);
            s.u.shutdown.reason = reason;
            s.u.shutdown.code = WIRE_SHUTDOWN_MODEL_MISMATCH;
            if (ratelimit_allow(&c->peer_log, now_ms(), NULL)) log_warn("%s", reason);
            wire_send(c->sock, peer, peer_len, &s, err, sizeof err);
            return;
        }
        if (w && w->job_id >= 0) release_job(c, w->job_id, w->token, "the worker reconnected");
        w = fleet_add(c->fleet, peer, peer_len, m->u.hello.worker, now_ms());
        if (!w) {
            log_error("out of memory adding a worker");
            return;
        }
        log_info("worker %s joined (%zu alive)", w->name, fleet_size(c->fleet));
        if (c->n_adopted) adopt_for(c, w);
        wire_msg_t wm = {.type = WIRE_WELCOME};
        wm.u.welcome.run_id = c->run_id;
        wm.u.welcome.model_identity = (char *)c->identity;
        wm.u.welcome.settings = c->o->s;
        wm.u.welcome.heartbeat_ms = (int32_t)c->o->heartbeat;
        wm.u.welcome.liveness = (int32_t)c->o->liveness;
        send_to(c, w, &wm);
        return;
    }
    case WIRE_READY:
        if (!w) { /* a worker we forgot (declared dead): it must say HELLO again */
            wire_msg_t s = {.type = WIRE_HEARTBEAT};
            wire_send(c->sock, peer, peer_len, &s, err, sizeof err);
            log_debug("READY from an unknown peer");
            return;
        }
        if (w->adopted && w->job_id >= 0) {
            /* A worker sends DONE or FAILED before asking again: one that
             * asks while holding an adopted lease is a new process under
             * the old name, without the job. */
            w->adopted = 0;
            int64_t job = w->job_id;
            w->job_id = -1;
            release_job(c, job, w->token, "its worker restarted without it");
        }
        w->ready = 1;
        return;
    case WIRE_DONE: {
        /* Counted once: only from the worker holding this attempt (a replayed
         * or late DONE finds no holder). */
        int64_t job_id = m->u.done.job_id;
        fleet_worker_t *h = holder(c, job_id, m->u.done.attempt_token, w);
        if (h) h->job_id = -1, h->adopted = 0;
        long a = adopted_find(c, job_id, m->u.done.attempt_token);
        int64_t job_bytes = h ? h->job_bytes : a >= 0 ? c->adopted[a].n_bytes : 0;
        if (a >= 0) adopted_drop(c, (size_t)a); /* from a worker not (yet) reconnected under its name */
        char state[16];
        if (c->db_down || db_job_state(c->db, c->run_id, job_id, state, err, sizeof err) < 0) {
            if (!c->db_down) log_error("job %" PRId64 ": %s", job_id, err);
            db_trouble(c, err);
            return; /* a done job stays done; any other is found again by reconcile() */
        }
        if (!m->u.done.stale && !strcmp(state, "done") && (h || a >= 0)) {
            c->done++;
            c->tokens += m->u.done.n_tokens;
            c->docs_done += m->u.done.n_docs;
            c->bytes_done += job_bytes;
            if (w && fleet_credit(c->fleet, w, m->u.done.n_tokens)) log_warn("out of memory counting a worker's job");
            log_debug("job %" PRId64 " done by %s: %" PRId64 " tokens, compute %.2fs, write %.3fs", job_id,
                      w ? w->name : "?", m->u.done.n_tokens, m->u.done.compute_s, m->u.done.write_s);
        } else if (!strcmp(state, "leased") && !m->u.done.stale && h) {
            release_job(c, job_id, m->u.done.attempt_token, "worker reported done but nothing was committed");
        }
        return;
    }
    case WIRE_FAILED: {
        int64_t job_id = m->u.failed.job_id;
        fleet_worker_t *h = holder(c, job_id, m->u.failed.attempt_token, w);
        if (h) h->job_id = -1, h->adopted = 0;
        long a = adopted_find(c, job_id, m->u.failed.attempt_token);
        if (a >= 0) adopted_drop(c, (size_t)a);
        char reason[600];
        snprintf(reason, sizeof reason, "worker %s: %s", w ? w->name : "?", m->u.failed.error ? m->u.failed.error : "");
        /* A failure the worker calls not retryable (the job itself is bad)
         * fails the job now: another attempt would end the same way. */
        release_job_limit(c, job_id, m->u.failed.attempt_token, reason,
                          m->u.failed.retryable ? (int)c->o->max_attempts : 0);
        return;
    }
    case WIRE_HEARTBEAT:
        /* A busy worker's progress in the job it holds (a late beat about
         * an earlier job is ignored). */
        if (w && m->u.heartbeat.busy && w->job_id == m->u.heartbeat.job_id) {
            w->prog_tokens = m->u.heartbeat.tokens;
            w->prog_bytes = m->u.heartbeat.bytes;
            w->prog_docs = m->u.heartbeat.docs;
        }
        return;
    default:
        if (ratelimit_allow(&c->peer_log, now_ms(), NULL))
            log_warn("unexpected %s from %s", wire_type_name(m->type), w ? w->name : "an unknown peer");
    }
}

/* Heartbeats out, silent workers and overdue jobs back. */
static void tick(coord_t *c) {
    if (db_revive(c) == 0 && c->n_unreleased) retry_releases(c);
    int64_t now = now_ms(), dead_after = c->o->heartbeat * c->o->liveness;
    if (c->n_adopted && now >= c->adopt_until_ms && !c->db_down) adopt_expire(c);
    wire_msg_t hb = {.type = WIRE_HEARTBEAT};
    for (size_t i = 0; i < fleet_size(c->fleet);) {
        fleet_worker_t *w = fleet_at(c->fleet, i);
        if (now - w->last_seen_ms > dead_after) {
            char reason[256];
            snprintf(reason, sizeof reason, "worker %s silent for %" PRId64 " ms: presumed dead", w->name,
                     now - w->last_seen_ms);
            log_warn("%s", reason);
            if (w->job_id >= 0) release_job(c, w->job_id, w->token, reason);
            fleet_remove(c->fleet, w);
            continue;
        }
        if (w->job_id >= 0 && now - w->leased_ms > c->o->job_timeout_s * 1000) {
            char reason[256];
            snprintf(reason, sizeof reason, "timed out after %ld s on worker %s", c->o->job_timeout_s, w->name);
            release_job(c, w->job_id, w->token, reason);
            w->job_id = -1;
        }
        send_to(c, w, &hb);
        i++;
    }
}

static double cpu_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* The progress line: jobs, documents and tokens done, the token rate (a
 * moving average over the recent lines, counting the tokens measured in
 * jobs still in hand, which the workers' heartbeats report), and the ETA
 * from the work still to do: the text bytes not yet measured, at the tokens
 * per byte seen so far, over that rate.  No rate yet, or none lately: no
 * ETA ("--:--:--"). */
static void progress(coord_t *c, int final) {
    int64_t now = now_ms(), el = now - c->t0_ms;
    int64_t fl_tokens = 0, fl_bytes = 0, fl_docs = 0;
    size_t alive = 0;
    for (size_t i = 0; i < fleet_size(c->fleet); i++) {
        const fleet_worker_t *w = fleet_at(c->fleet, i);
        alive += !w->unreachable;
        if (w->job_id >= 0) fl_tokens += w->prog_tokens, fl_bytes += w->prog_bytes, fl_docs += w->prog_docs;
    }
    int64_t tokens = c->tokens + fl_tokens, bytes = c->bytes_done + fl_bytes;
    if (c->last_tokens_ms == 0) {
        c->last_tokens_ms = c->t0_ms, c->last_tokens = c->tokens0;
    }
    if (now > c->last_tokens_ms) {
        double r = (double)(tokens - c->last_tokens) * 1000.0 / (double)(now - c->last_tokens_ms);
        if (r < 0) r = 0; /* a job handed back takes its in-flight tokens with it */
        c->rate = c->rate > 0 ? 0.7 * c->rate + 0.3 * r : r;
        c->last_tokens_ms = now, c->last_tokens = tokens;
    }
    double per_byte = bytes > 0 ? (double)tokens / (double)bytes : 0;
    int64_t bytes_left = c->bytes_total - bytes > 0 ? c->bytes_total - bytes : 0;
    double tokens_left = per_byte * (double)bytes_left;
    char eta[32] = "--:--:--";
    if (final) {
        snprintf(eta, sizeof eta, "00:00:00");
    } else if (c->rate > 0.5 && per_byte > 0) {
        double s = tokens_left / c->rate;
        if (s < 100.0 * 3600) snprintf(eta, sizeof eta, "%02d:%02d:%02d", (int)(s / 3600), (int)(s / 60) % 60, (int)s % 60);
    }
    log_info("%sjobs %" PRId64 "/%" PRId64 " done, %" PRId64 " failed | docs %" PRId64 "/%" PRId64 " | tokens %" PRId64
             " (%" PRId64 " in jobs in hand) | %.0f tok/s | ETA %s (~%.3g tokens left) | workers %zu | retries %" PRId64,
             final ? "finished: " : "", c->done, c->jobs_total, c->failed, c->docs_done + fl_docs, c->docs_total, tokens,
             fl_tokens, final ? (el > 0 ? (double)(c->tokens - c->tokens0) * 1000.0 / (double)el : 0.0) : c->rate, eta,
             final ? 0.0 : tokens_left, alive, c->retries);
    if (final) {
        int64_t finished = c->done + c->failed;
        log_info("coordinator CPU %.3f s over %.1f s wall (%.3f ms per job)", cpu_seconds(), el / 1000.0,
                 finished ? cpu_seconds() * 1000.0 / (double)finished : 0.0);
    }
}

/* The serve loop's counts, to the metrics endpoint (metrics.c); once per
 * tick and at the end. */
static void publish_metrics(coord_t *c, metrics_t *m, int complete) {
    if (!m) return;
    metrics_counts_t mc = {c->jobs_total, c->done, c->failed, (int64_t)(c->n_adopted + c->n_unreleased), c->retries,
                           c->docs_total, c->docs_done, c->tokens, !c->db_down, complete};
    metrics_publish(m, &mc, c->fleet, c->db);
}

/* ---- the corpus load, between messages --------------------------------- */

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
    for (int64_t j = b.job_from; j < b.job_to; j++)
        if (q_push(c, j)) log_error("out of memory queueing job %" PRId64, j);
    c->jobs_total += b.job_to - b.job_from;
    c->docs_total += b.docs_usable;
    c->bytes_total += b.bytes_usable;
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
    if (c->db_down || db_run_open(c->db, c->o->run, c->identity, "{}", "{}", &run, err, sizeof err)) return;
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
    metrics_t *metrics = o.metrics ? metrics_new(o.metrics, o.run, err, sizeof err) : NULL;
    if (o.metrics && !metrics) log_die("choose another --metrics address or port", "%s", err);
    if (metrics) log_info("metrics at %s", metrics_url(metrics));

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
    free(sj);
    free(cj);

    coord_t c = {0};
    c.o = &o;
    c.db = db;
    c.run_id = run.run_id;
    c.identity = ident;
    int urnd = open("/dev/urandom", O_RDONLY);
    if (urnd < 0 || read(urnd, &c.rng, sizeof c.rng) != sizeof c.rng) c.rng = (uint64_t)time(NULL) * 2654435761u;
    if (urnd >= 0) close(urnd);
    c.rng |= 1;
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
    /* Leases of the coordinator before: adopted, not requeued, while their
     * workers reconnect (see adopt_for). */
    if (db_jobs_leased(db, c.run_id, &c.adopted, &c.n_adopted, err, sizeof err)) log_die("", "%s", err);
    int64_t *pending = NULL;
    size_t n_pending = 0;
    if (db_jobs_pending(db, c.run_id, 0, &pending, &n_pending, err, sizeof err)) log_die("", "%s", err);
    for (size_t i = 0; i < n_pending; i++)
        if (q_push(&c, pending[i])) log_die("", "out of memory");
    free(pending);
    db_progress_t pg;
    if (db_progress(db, c.run_id, &pg, err, sizeof err)) log_die("", "%s", err);
    c.jobs_total = pg.jobs;
    c.done = pg.done;
    c.failed = pg.failed;
    c.docs_total = pg.docs - pg.docs_error;
    c.bytes_total = pg.bytes;
    c.bytes_done = pg.bytes_done;
    c.docs_done = pg.docs_done;
    c.tokens = c.tokens0 = pg.tokens_done;
    c.retries = pg.retries;
    if (!c.load && (n_pending || c.n_adopted)) db_run_set_status(db, c.run_id, "running", err, sizeof err);

    c.sock = zmq_socket(ctx, ZMQ_ROUTER);
    if (!c.sock) log_die("", "zmq_socket: %s", zmq_strerror(zmq_errno()));
    if (auth) {
        /* The ZAP handler is bound (auth_new) before the ROUTER binds. */
        if (curve_setup_server(c.sock, &kp, err, sizeof err) || auth_watch(auth, c.sock, err, sizeof err))
            log_die("", "%s", err);
        log_info("CURVE: server key %.8s..., %zu worker keys allowed", kp.public_key, auth_n_keys(auth));
    } else if (!curve_endpoint_is_local(o.bind)) {
        log_warn("serving %s without CURVE: anyone who reaches this address can take jobs, and traffic is not "
                 "encrypted (see --curve-secret, --curve-clients)", o.bind);
    }
    curve_keypair_wipe(&kp);
    int one = 1;
    if (!c.sock || wire_socket_setup(c.sock, err, sizeof err) ||
        zmq_setsockopt(c.sock, ZMQ_ROUTER_MANDATORY, &one, sizeof one) || zmq_bind(c.sock, o.bind) != 0)
        log_die("is the address in use? choose another --bind", "cannot bind %s: %s", o.bind,
                zmq_strerror(zmq_errno()));
    char ep[256];
    size_t ep_len = sizeof ep;
    zmq_getsockopt(c.sock, ZMQ_LAST_ENDPOINT, ep, &ep_len);
    log_info("serving %zu pending jobs on %s", n_pending, ep);
    if (c.n_adopted) {
        /* A worker notices the old coordinator's silence after heartbeat x
         * liveness (the same settings reach it in WELCOME), then reconnects
         * after its first reconnect delay: twice that period covers both. */
        c.adopt_until_ms = now_ms() + 2 * o.heartbeat * o.liveness;
        log_info("%zu job(s) leased before the restart: their workers have %ld ms to reconnect before they are "
                 "requeued", c.n_adopted, 2 * o.heartbeat * o.liveness);
    }
    /* (Only now: starting up, waiting for a lock is right, e.g. for a stopped
     * worker's commit while the leases are read.) */
    if (db_set_timeout(db, "lock_timeout", lock_ms(&o), err, sizeof err)) log_die("", "%s", err);
    c.fleet = fleet_new();
    c.t0_ms = now_ms();
    int64_t next_tick = now_ms() + o.heartbeat, next_progress = now_ms() + o.progress_s * 1000, next_idle_check = 0;
    int exit_code = 0;
    ratelimit_init(&c.peer_log, 2.0, 20, now_ms());
    publish_metrics(&c, metrics, 0);
    while (!g_stop && !c.fatal) {
        /* Finished when the corpus is loaded, nothing is queued and nobody
         * holds a job. */
        int busy = c.load || c.load_again || c.n_adopted;
        for (size_t i = 0; i < fleet_size(c.fleet); i++) busy |= fleet_at(c.fleet, i)->job_id >= 0;
        if (c.q_len == 0 && !busy && !c.db_down && now_ms() >= next_idle_check) {
            if (db_progress(db, c.run_id, &pg, err, sizeof err)) {
                db_trouble(&c, err);
            } else if (pg.pending == 0 && pg.leased == 0 && !c.n_unreleased) {
                break;
            } else {
                reconcile(&c, &pg);
                next_idle_check = now_ms() + o.heartbeat; /* not on every message */
            }
        }
        zmq_pollitem_t it[3] = {{c.sock, 0, ZMQ_POLLIN, 0}};
        void *extra[2];
        int n_it = 1 + (int)(auth ? auth_sockets(auth, extra, 2) : 0);
        for (int k = 1; k < n_it; k++) it[k] = (zmq_pollitem_t){extra[k - 1], 0, ZMQ_POLLIN, 0};
        int64_t now = now_ms();
        long timeout = c.load ? 0 : next_tick > now ? (long)(next_tick - now) : 0;
        if (zmq_poll(it, n_it, timeout) < 0 && zmq_errno() != EINTR) {
            log_error("poll: %s", zmq_strerror(zmq_errno()));
            exit_code = 1;
            break;
        }
        if (auth) auth_process(auth);
        for (int budget = 0; budget < 1000; budget++) {
            uint8_t peer[FLEET_MAX_ID];
            size_t peer_len = sizeof peer;
            wire_msg_t m = {0};
            int r = wire_recv(c.sock, peer, &peer_len, &m, ZMQ_DONTWAIT, err, sizeof err);
            if (r == 1) break;
            if (r < 0) {
                fleet_worker_t *w = fleet_find(c.fleet, peer, peer_len);
                uint64_t held = 0;
                /* A peer sending garbage must not flood the log. */
                if (ratelimit_allow(&c.peer_log, now_ms(), &held))
                    log_warn("bad message from %s: %s%s", w ? w->name : "an unknown peer", err,
                             held ? " (earlier bad messages not logged)" : "");
                c.bad_messages++;
                if (w) w->last_seen_ms = now_ms();
                continue;
            }
            on_message(&c, peer, peer_len, &m);
            wire_msg_clear(&m);
        }
        dispatch(&c);
        if (c.load) load_slice(&c);
        else if (c.load_again && now_ms() >= c.load_again_ms) load_retry(&c);
        now = now_ms();
        if (now >= next_tick) {
            tick(&c);
            publish_metrics(&c, metrics, 0);
            next_tick = now + o.heartbeat;
        }
        if (now >= next_progress) {
            progress(&c, 0);
            next_progress = now + o.progress_s * 1000;
        }
    }
    load_destroy(&c.load); /* an open batch rolls back; the committed ones stay */
    db_destroy(&c.load_db);
    if (c.fatal) {
        db_run_set_status(db, c.run_id, "stopped", err, sizeof err);
        exit_code = 1;
    } else if (g_stop) {
        log_info("stopped by a signal; run it again with --run %s to resume", o.run);
        db_run_set_status(db, c.run_id, "stopped", err, sizeof err);
        exit_code = 130;
    } else if (!exit_code) {
        wire_msg_t s = {.type = WIRE_SHUTDOWN};
        s.u.shutdown.reason = "run complete";
        s.u.shutdown.code = WIRE_SHUTDOWN_RUN_COMPLETE;
        for (size_t i = 0; i < fleet_size(c.fleet); i++) send_to(&c, fleet_at(c.fleet, i), &s);
        db_run_set_status(db, c.run_id, "done", err, sizeof err);
        refresh_counts(&c);
        progress(&c, 1);
        publish_metrics(&c, metrics, 1);
        if (table_print_report(db, c.run_id, DB_REPORT_SUMMARY, stdout, err, sizeof err)) log_error("%s", err);
    }
    int linger = 200;
    zmq_setsockopt(c.sock, ZMQ_LINGER, &linger, sizeof linger);
    zmq_close(c.sock);
    if (c.bad_messages) log_info("%llu malformed messages were refused", (unsigned long long)c.bad_messages);
    if (auth) {
        auth_stats_t as = auth_stats(auth);
        log_info("CURVE: %lu connections accepted, %lu refused by key, %lu failed handshakes", as.accepted,
                 as.refused, as.failed_handshakes);
    }
    auth_destroy(&auth);
    zmq_ctx_term(ctx);
    if (metrics && exit_code == 0) metrics_linger(metrics, o.metrics_linger, &g_stop);
    metrics_destroy(&metrics);
    fleet_destroy(&c.fleet);
    free(c.queue);
    free(c.unreleased);
    free(c.adopted);
    free(o.s.chat_template);
    db_destroy(&db);
    return exit_code;
}
