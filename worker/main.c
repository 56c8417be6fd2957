/* main.c - tokshift-worker: a stateless worker of a distributed run.
 *
 * It loads its model once, connects to the coordinator (DEALER, through
 * link.c) and to PostgreSQL, then loops: READY, take a JOB, measure its
 * documents (job.c), write every row and mark the job done in one
 * transaction guarded by the job's attempt token (db.c), report DONE.
 *
 * The worker's life:
 *
 *   start --HELLO--> waiting --WELCOME (same model)--> idle --READY--> asked
 *                       |                                ^               |
 *                       +--WELCOME (other model, or a  |      JOB      v
 *                       |   template naming a special    |               |
 *                       |   token it lacks): exit 3      |               |
 *                                                        +--DONE/FAILED-- busy
 *   SHUTDOWN in any state: exit 0.  SIGTERM/SIGINT: idle -> exit 0; busy ->
 *   the job is handed back (FAILED, retryable) and the worker exits 0.
 *   With --keep-serving, SHUTDOWN and a WELCOME for another model lead back
 *   to waiting instead (the link says HELLO to whichever coordinator serves
 *   next at the endpoint); only a signal ends the worker.
 *
 * What it is not: a scheduler; it keeps no state between jobs. */
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "curve.h"
#include "db.h"
#include "digest.h"
#include "experiment.h"
#include "fault.h"
#include "forward.h"
#include "gguf.h"
#include "job.h"
#include "link.h"
#include "log.h"
#include "now.h"
#include "num.h"
#include "loader.h"
#include "model.h"
#include "smallm.h"
#include "template.h"
#include "tokenizer.h"
#include "utf8.h"
#include "wire.h"

#define EXIT_MISMATCH 3

/* How often a worker in a long job logs its progress. */
#define WORKER_LOG_EVERY_S 30.0

static volatile sig_atomic_t g_stop = 0;
static void on_signal(int sig) { (void)sig; g_stop = 1; }

static void usage(FILE *f) {
    fprintf(f,
            "usage: tokshift-worker --connect ENDPOINT --model PATH [--db CONNINFO] [options]\n\n"
            "Takes jobs from a tokshift coordinator, measures their documents and writes the\n"
            "statistics to PostgreSQL.  Stateless: start as many as you like, anywhere.\n\n"
            "  -c, --connect EP      coordinator endpoint, e.g. tcp://10.0.0.1:5555\n"
            "  -m, --model PATH      GGUF file (or Hugging Face directory)\n"
            "  -d, --db CONNINFO     libpq connection string (default: PG* environment)\n"
            "  -t, --threads N       BLAS threads (default: OpenBLAS's choice)\n"
            "  -n, --name NAME       name in logs and the jobs table (default host:pid)\n"
            "      --heartbeat MS    heartbeat interval (default 1000)\n"
            "      --liveness N      missed heartbeats before the coordinator is presumed dead (default 5)\n"
            "      --reconnect-ms MS first delay before reconnecting to a silent coordinator (default 500)\n"
            "      --reconnect-max-ms MS  cap of that delay, which doubles on each try (default 32000)\n"
            "      --curve-secret FILE      this worker's secret key (tokshift keygen; mode 0600)\n"
            "      --curve-server-key FILE  the coordinator's public key (its .pub): with both,\n"
            "                               traffic is CURVE-encrypted and the coordinator checks our key\n"
            "      --keep-serving    stay when a run is over (or is for another model) and serve the\n"
            "                        next coordinator at ENDPOINT; only SIGTERM/SIGINT end the worker\n"
            "      --source-vocab PATH  the model (GGUF) or tokenizer.json of the run a cross-scoring run\n"
            "                        scores, when its vocabulary is not this model's: its sequences are\n"
            "                        then decoded to text and scored in this model's tokens\n"
            "      --alive-file PATH touch PATH at every heartbeat and reconnection attempt (at least\n"
            "                        every max(--heartbeat, --reconnect-max-ms)): for a liveness probe\n"
            "  -h, --help            this text\n\n"
            "Exit status: 0 when the coordinator says the run is over or on SIGTERM, 1 on an\n"
            "error, 2 on bad usage, 3 when the run's model is not this worker's model (or its\n"
            "chat template names a special token this model's vocabulary lacks).\n");
}

/* Converts the run's settings from the wire. */
static void settings_from_wire(const wire_settings_t *w, job_settings_t *s) {
    memset(s, 0, sizeof *s);
    s->window = w->window;
    s->stride = w->stride;
    s->prefix_lengths = w->prefix_lengths;
    s->n_prefix_lengths = w->n_prefix_lengths;
    s->cut_every = w->cut_every;
    s->cont.cont_len = w->cont_len;
    s->cont.n_samples = w->n_samples;
    s->cont.sampling = (sampler_params_t){w->temperature, w->top_k, w->top_p};
    s->cont.run_seed = w->seed;
    s->observe = w->score_run > 0;
    s->cut_every_bytes = w->cut_every_bytes;
}

/* Vocabulary entry i as the vocab table stores it: the piece ("" when
 * absent), or when it is not UTF-8 its bytes as \xNN escapes written into
 * *escaped (malloc'd; the caller frees it).  NULL when memory runs out. */
static const char *vocab_piece(const tokenizer_t *tok, int i, char **escaped) {
    const char *p = tokenizer_piece(tok, i);
    size_t plen = p ? strlen(p) : 0;
    *escaped = NULL;
    if (!p) return "";
    if (!plen || utf8_invalid_at(p, plen) < 0) return p;
    if (!(*escaped = malloc(4 * plen + 1))) return NULL;
    for (size_t j = 0; j < plen; j++) sprintf(*escaped + 4 * j, "\\x%02x", (unsigned char)p[j]);
    return *escaped;
}

/* The vocabulary digest of migration 010's vocab_digests view: sha256 of
 * the stored pieces of tok's first n_vocab ids in token order, each
 * followed by a NUL byte, as hex into out.  Returns 0, or -1 when memory
 * runs out. */
static int vocab_digest(const tokenizer_t *tok, int n_vocab, char out[65]) {
    digest_sha256_t c;
    uint8_t h[32];
    digest_sha256_init(&c);
    for (int i = 0; i < n_vocab; i++) {
        char *esc;
        const char *p = vocab_piece(tok, i, &esc);
        if (!p) return -1;
        digest_sha256_update(&c, p, strlen(p) + 1);
        free(esc);
    }
    digest_sha256_final(&c, h);
    digest_hex(h, out);
    return 0;
}

/* Registers the model and its vocabulary (idempotent). */
static int register_model(db_t *db, const model_t *m, const char *identity, const char *path, char *err,
                          size_t errlen) {
    int n = m->cfg.n_vocab, rc = -1;
    const char **pieces = calloc((size_t)n, sizeof *pieces);
    char **texts = calloc((size_t)n, sizeof *texts), **escaped = calloc((size_t)n, sizeof *escaped);
    size_t cap = tokenizer_max_piece_bytes(m->tok) + 1;
    if (!pieces || !texts || !escaped) goto out;
    for (int i = 0; i < n; i++) {
        if (!(pieces[i] = vocab_piece(m->tok, i, &escaped[i]))) goto out;
        if (i >= tokenizer_n_vocab(m->tok)) continue;
        char *t = malloc(cap);
        if (!t) goto out;
        long b = tokenizer_token_bytes(m->tok, i, t, cap);
        t[b > 0 ? b : 0] = 0;
        /* Only text that PostgreSQL accepts (valid UTF-8 without NUL): a
         * single bad row would fail the whole COPY. */
        int ok = b >= 0 && !memchr(t, 0, (size_t)b) && utf8_invalid_at(t, (size_t)b) < 0;
        if (ok) texts[i] = t;
        else free(t);
    }
    const char *slash = strrchr(path, '/');
    rc = db_model_register(db, identity, slash ? slash + 1 : path, m->arch_name, n, m->cfg.n_ctx_train, pieces,
                           (const char *const *)texts, err, errlen);
out:
    if (rc && err && !*err) log_seterr(err, errlen, "out of memory registering the vocabulary");
    for (int i = 0; i < n; i++) {
        if (texts) free(texts[i]);
        if (escaped) free(escaped[i]);
    }
    free(texts);
    free(escaped);
    free(pieces);
    return rc;
}

/* Sends FAILED for a job; logs when even that fails. */
static void send_failed(link_t *link, int64_t job_id, uint64_t token, const char *why, int retryable) {
    char err[LOG_ERRLEN], text[LOG_ERRLEN];
    snprintf(text, sizeof text, "%s", why);
    wire_utf8_sanitize(text); /* the wire refuses invalid UTF-8 */
    wire_msg_t f = {.type = WIRE_FAILED};
    f.u.failed.job_id = job_id;
    f.u.failed.attempt_token = token;
    f.u.failed.error = text;
    f.u.failed.retryable = retryable;
    if (link_send(link, &f, err, sizeof err)) log_error("%s", err);
}

/* Asks the coordinator for the next job (after each job, whatever its end). */
static void send_ready(link_t *link) {
    char err[LOG_ERRLEN];
    wire_msg_t ready = {.type = WIRE_READY};
    if (!g_stop && link_send(link, &ready, err, sizeof err)) log_error("%s", err);
}

/* How commit_with_retry ended. */
typedef enum {
    COMMIT_OK,      /* written, and the job marked done */
    COMMIT_STALE,   /* fenced off: another attempt owns the job; nothing written */
    COMMIT_FAILED,  /* the data or the statement failed (why in err); nothing written */
    COMMIT_STOPPED, /* a signal came while PostgreSQL was away; nothing written */
} commit_rc_t;

/* Writes a job's rows, retrying with backoff while PostgreSQL is away. */
static commit_rc_t commit_with_retry(db_t **dbp, const char *conninfo, int64_t run_id, int64_t job_id, int64_t token,
                             const db_results_t *res, double *write_s, char *err, size_t errlen) {
    int delay_ms = 250;
    for (;;) {
        if (*dbp) {
            /* A worker stopped inside its commit (SIGSTOP, a hung host) must not
             * hold the job's row lock for ever: the server aborts a transaction
             * idle for a minute.  Set on every attempt: reconnects lose it. */
            db_set_timeout(*dbp, "idle_in_transaction_session_timeout", 60000, NULL, 0);
            int rc = db_commit_job(*dbp, run_id, job_id, token, res, write_s, err, errlen);
            if (rc >= 0) return rc == 0 ? COMMIT_OK : COMMIT_STALE;
            if (!db_connection_lost(*dbp)) return COMMIT_FAILED; /* the data, not the server */
        } else if (!(*dbp = db_connect(conninfo, err, errlen))) {
            /* stays NULL; retried below */
        } else {
            continue;
        }
        if (g_stop) return COMMIT_STOPPED;
        log_warn("job %lld: PostgreSQL unavailable (%s); retrying in %d ms, results kept", (long long)job_id, err,
                 delay_ms);
        usleep((useconds_t)delay_ms * 1000);
        delay_ms = delay_ms * 2 > 16000 ? 16000 : delay_ms * 2;
        if (*dbp && db_reconnect(*dbp, err, errlen)) {
            /* keep the handle; PQreset retried next time round */
        }
    }
}

/* What serve_job needs of the worker: its link, its database connection
 * (reconnected or opened there when needed), its model and the run's
 * measuring state. */
typedef struct {
    link_t *link;
    db_t **db;
    const char *conninfo;
    model_t *m;
    experiment_t *ex;
    const job_settings_t *settings;
    job_result_t *result;
    int64_t run_id;
} serve_t;

/* Measures one JOB of the joined run and answers it: its rows committed
 * under the attempt token and DONE (stale when fenced off), or FAILED
 * (retryable) when it could not be measured or written, or a signal came.
 * Then READY, unless stopping.  The worker is busy (its heartbeats say so)
 * from start to end. */
static void serve_job(serve_t *sv, const wire_msg_t *msg) {
    char err[LOG_ERRLEN];
    int64_t job_id = msg->u.job.job_id;
    uint64_t token = msg->u.job.attempt_token;
    link_t *link = sv->link;
    double t0 = now_s(), next_log = t0 + WORKER_LOG_EVERY_S;
    job_result_reset(sv->result);
    link_progress(link, 1, job_id, 0, 0, 0);
    int jr = 0;
    int64_t bytes = 0;
    for (size_t i = 0; i < msg->u.job.n_docs && jr == 0; i++) {
        const wire_doc_t *d = &msg->u.job.docs[i];
        if (g_stop) { /* SIGTERM: hand the job back rather than finish it */
            log_seterr(err, sizeof err, "worker stopping (signal)");
            jr = -1;
            break;
        }
        jr = job_measure_doc(sv->ex, sv->m, sv->settings, d->doc_id, d->text, d->text_len, d->samples, d->n_samples,
                             sv->result, &g_stop, err, sizeof err);
        /* The heartbeats carry the job's progress; a long job also says so
         * in the log now and then. */
        bytes += (int64_t)d->text_len;
        int64_t rows = (int64_t)job_result_n_rows(sv->result);
        link_progress(link, 1, job_id, rows, bytes, (int32_t)(i + 1));
        double now = now_s();
        if (now >= next_log && i + 1 < msg->u.job.n_docs) {
            log_info("job %lld: %zu/%zu documents, %lld token rows, %.0f rows/s", (long long)job_id, i + 1,
                     msg->u.job.n_docs, (long long)rows, rows / (now - t0));
            next_log = now + WORKER_LOG_EVERY_S;
        }
    }
    db_results_t res;
    if (jr) {
        log_warn("job %lld handed back: %s", (long long)job_id, err);
        send_failed(link, job_id, token, err, 1);
        goto out;
    }
    if (job_result_view(sv->result, &res)) {
        send_failed(link, job_id, token, "worker out of memory", 1);
        goto out;
    }
    res.compute_s = now_s() - t0;
    double write_s = 0;
    fault_maybe_stall(FAULT_STALL_BEFORE_COMMIT_MS); /* TOKSHIFT_FAULT */
    fault_maybe_stall(FAULT_SLOW_JOB_MS);
    commit_rc_t cr = commit_with_retry(sv->db, sv->conninfo, sv->run_id, job_id, (int64_t)token, &res, &write_s, err,
                                       sizeof err);
    if (cr == COMMIT_OK && fault_first(FAULT_COMMIT_TWICE)) { /* a replayed write must be fenced off */
        int again = db_commit_job(*sv->db, sv->run_id, job_id, (int64_t)token, &res, NULL, err, sizeof err);
        log_warn("job %lld committed again with the same token: %s", (long long)job_id,
                 again == 1   ? "fenced off (stale), nothing written"
                 : again == 0 ? "ACCEPTED (written twice)"
                              : err);
    }
    if (cr == COMMIT_OK || cr == COMMIT_STALE) {
        wire_msg_t done = {.type = WIRE_DONE};
        done.u.done.job_id = job_id;
        done.u.done.attempt_token = token;
        done.u.done.n_tokens = (int64_t)res.n_toks;
        done.u.done.n_docs = (int64_t)msg->u.job.n_docs;
        done.u.done.compute_s = res.compute_s;
        done.u.done.write_s = write_s;
        done.u.done.stale = cr == COMMIT_STALE;
        if (cr == COMMIT_STALE)
            log_warn("job %lld: attempt fenced off (another attempt owns it); nothing written", (long long)job_id);
        if (link_send(link, &done, err, sizeof err)) log_error("%s", err);
        if (fault_first(FAULT_REPLAY_DONE) && link_send(link, &done, err, sizeof err)) log_error("%s", err);
    } else {
        log_warn("job %lld not written: %s", (long long)job_id, cr == COMMIT_STOPPED ? "stopping" : err);
        send_failed(link, job_id, token, cr == COMMIT_STOPPED ? "worker stopped before writing" : err, 1);
    }
out:
    link_progress(link, 0, 0, 0, 0, 0);
    send_ready(link);
}

int main(int argc, char **argv) {
    static const struct option opts[] = {{"connect", required_argument, 0, 'c'}, {"model", required_argument, 0, 'm'},
                                         {"db", required_argument, 0, 'd'},      {"threads", required_argument, 0, 't'},
                                         {"name", required_argument, 0, 'n'},    {"heartbeat", required_argument, 0, 'H'},
                                         {"liveness", required_argument, 0, 'L'}, {"help", no_argument, 0, 'h'},
                                         {"curve-secret", required_argument, 0, 1001},
                                         {"curve-server-key", required_argument, 0, 1002},
                                         {"reconnect-ms", required_argument, 0, 'R'},
                                         {"reconnect-max-ms", required_argument, 0, 'X'},
                                         {"keep-serving", no_argument, 0, 1003},
                                         {"alive-file", required_argument, 0, 1004},
                                         {"source-vocab", required_argument, 0, 1005},
                                         {0}};
    const char *endpoint = NULL, *model_path = NULL, *conninfo = "", *name = NULL;
    const char *curve_secret = NULL, *curve_server = NULL, *alive_file = NULL, *source_vocab = NULL;
    long threads = 0, heartbeat = 1000, liveness = 5, reconnect_ms = 0, reconnect_max_ms = 0;
    int c, bad = 0, keep_serving = 0;
    char err[LOG_ERRLEN], host[256] = "", wname[300], identity[65];
    while (!bad && (c = getopt_long(argc, argv, "c:m:d:t:n:h", opts, NULL)) != -1) {
        switch (c) {
        case 'c': endpoint = optarg; break;
        case 'm': model_path = optarg; break;
        case 'd': conninfo = optarg; break;
        case 't': bad = num_long(optarg, "--threads", 1, 4096, &threads, err, sizeof err); break;
        case 'n': name = optarg; break;
        case 'H': bad = num_long(optarg, "--heartbeat", 10, 3600000, &heartbeat, err, sizeof err); break;
        case 'L': bad = num_long(optarg, "--liveness", 1, 1000000, &liveness, err, sizeof err); break;
        case 'R': bad = num_long(optarg, "--reconnect-ms", 1, 3600000, &reconnect_ms, err, sizeof err); break;
        case 'X': bad = num_long(optarg, "--reconnect-max-ms", 1, 3600000, &reconnect_max_ms, err, sizeof err); break;
        case 1001: curve_secret = optarg; break;
        case 1002: curve_server = optarg; break;
        case 1003: keep_serving = 1; break;
        case 1004: alive_file = optarg; break;
        case 1005: source_vocab = optarg; break;
        case 'h': usage(stdout); return 0;
        default: fprintf(stderr, "Run 'tokshift-worker --help' for its options.\n"); return 2;
        }
    }
    if (!bad && (!endpoint || !model_path))
        bad = log_seterr(err, sizeof err, "--connect ENDPOINT and --model PATH are required");
    /* ZeroMQ wants a transport: without one it fails with EINVAL at every
     * reconnect, which would look like a coordinator that never answers. */
    if (!bad && !strstr(endpoint, "://"))
        bad = log_seterr(err, sizeof err, "--connect '%s' has no transport: write tcp://%s (or ipc://PATH)", endpoint,
                         endpoint);
    if (optind < argc && !bad) bad = log_seterr(err, sizeof err, "unexpected argument '%s'", argv[optind]);
    if (bad) {
        log_error("%s", err);
        fprintf(stderr, "Run 'tokshift-worker --help' for its options.\n");
        return 2;
    }
    gethostname(host, sizeof host - 1);
    snprintf(wname, sizeof wname, "%s:%d", host, (int)getpid());
    if (name) snprintf(wname, sizeof wname, "%s", name);
    struct sigaction sa = {0};
    sa.sa_handler = on_signal;
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
    if (fault_init(err, sizeof err)) log_die("fix or unset TOKSHIFT_FAULT (a testing aid)", "%s", err);

    /* Start-up: failures here end the process with a hint. */
    if (!curve_secret != !curve_server) {
        log_error("--curve-secret and --curve-server-key go together");
        return 2;
    }
    link_curve_t curve;
    memset(&curve, 0, sizeof curve);
    if (curve_secret) {
        curve_pubkey_t server;
        if (curve_read_secret(curve_secret, &curve.keys, err, sizeof err))
            log_die("make a key pair with `tokshift keygen --out PREFIX` and pass PREFIX.key", "%s", err);
        if (curve_read_public(curve_server, &server, err, sizeof err))
            log_die("--curve-server-key is the coordinator's .pub file", "%s", err);
        memcpy(curve.server_key, server.z85, sizeof curve.server_key);
        log_info("CURVE: worker key %.8s..., coordinator key %.8s...", curve.keys.public_key, server.z85);
    } else if (!curve_endpoint_is_local(endpoint)) {
        log_warn("connecting to %s without CURVE: traffic is neither authenticated nor encrypted "
                 "(see --curve-secret, --curve-server-key)", endpoint);
    }
    if (threads > 0) {
        extern void openblas_set_num_threads(int);
        openblas_set_num_threads(threads);
    }
    if (digest_model_identity(model_path, identity, err, sizeof err))
        log_die("check the --model path", "%s", err);
    model_t *m = loader_load(model_path, err, sizeof err);
    if (!m) log_die("is this a GGUF model file?", "%s", err);
    char desc[256];
    model_describe(m, desc, sizeof desc);
    log_info("worker %s: model %s (%s), identity %.12s", wname, model_path, desc, identity);
    /* What the figures of this machine depend on (bench/ prints the same). */
    extern char *openblas_get_corename(void);
    extern int openblas_get_num_threads(void);
    log_info("engine: SIMD %s; OpenBLAS kernel %s, %d thread(s); a prefill's products %s", smallm_level_name(smallm_level()),
             openblas_get_corename(), openblas_get_num_threads(),
             forward_stream_prefill_default() ? "stream the weights (smallm)" : "through cblas_sgemm");

    db_t *db = db_connect(conninfo, err, sizeof err);
    if (!db) log_warn("%s (will retry when a job needs it)", err);

    wire_msg_t hello = {.type = WIRE_HELLO};
    hello.u.hello.worker = wname;
    hello.u.hello.host = host;
    hello.u.hello.pid = (int32_t)getpid();
    hello.u.hello.threads = threads;
    hello.u.hello.observes = 1;
    hello.u.hello.templates = 1;
    hello.u.hello.cuts_by_bytes = 1;
    hello.u.hello.model_identity = identity;
    hello.u.hello.model_name = (char *)model_path;
    link_opts_t lo = {(int)heartbeat, (int)liveness, (int)reconnect_ms, (int)reconnect_max_ms, alive_file};
    link_t *link = link_new_curve(endpoint, &hello, &lo, curve_secret ? &curve : NULL, err, sizeof err);
    curve_keypair_wipe(&curve.keys);
    if (!link) log_die("check --connect", "%s", err);

    int rc = 1, welcomed = 0;
    int64_t run_id = 0;
    job_settings_t settings;
    wire_msg_t welcome = {0};
    experiment_t *ex = NULL;
    template_t *tpl = NULL; /* the run's chat template, NULL: none */
    job_result_t *result = job_result_new();
    int registered = 0;
    char vocab[65]; /* the vocabulary digest, for cross-scoring runs */
    if (vocab_digest(m->tok, m->cfg.n_vocab, vocab)) log_die("", "out of memory");
    /* --source-vocab: the generator's tokenizer, for cross-scoring through
     * the decoded text (its GGUF's reader stays open: the tokenizer may
     * point into it). */
    gguf_t *src_gguf = NULL;
    tokenizer_t *src_tok = NULL;
    char src_vocab[65] = "";
    if (source_vocab) {
        size_t sl = strlen(source_vocab);
        if (sl > 5 && !strcmp(source_vocab + sl - 5, ".json"))
            src_tok = tokenizer_new_json(source_vocab, err, sizeof err);
        else if ((src_gguf = gguf_open(source_vocab, err, sizeof err)))
            src_tok = tokenizer_new_gguf(src_gguf, err, sizeof err);
        if (!src_tok) log_die("--source-vocab is the scored run's model (GGUF) or its tokenizer.json", "%s", err);
        if (vocab_digest(src_tok, tokenizer_n_vocab(src_tok), src_vocab)) log_die("", "out of memory");
    }
    double last_wait_log = now_s();
    if (!result) log_die("", "out of memory");

    while (!g_stop) {
        wire_msg_t msg = {0};
        int r = link_recv(link, &msg, 500, err, sizeof err);
        if (r < 0) {
            log_warn("%s", err);
            continue;
        }
        if (r == 1) {
            /* (between runs of a --keep-serving worker: every 10 minutes) */
            if (!welcomed && now_s() - last_wait_log > (run_id ? 600 : 10)) {
                log_info("waiting for the coordinator at %s", endpoint);
                last_wait_log = now_s();
            }
            continue;
        }
        switch (msg.type) {
        case WIRE_WELCOME: {
            char why[LOG_ERRLEN] = "";
            const wire_settings_t *ws = &msg.u.welcome.settings;
            template_t *new_tpl = NULL;
            if (strcmp(msg.u.welcome.model_identity, identity))
                snprintf(why, sizeof why, "its model is %s, this worker's (%s) is %s", msg.u.welcome.model_identity,
                         model_path, identity);
            else if (ws->score_run > 0 && strcmp(ws->vocab_digest, vocab) && strcmp(ws->vocab_digest, src_vocab))
                /* Cross-scoring gives samples as token ids: they mean the
                 * same text under the same vocabulary, or decoded by the
                 * generator's tokenizer (--source-vocab). */
                snprintf(why, sizeof why, "it scores run %lld, whose model's vocabulary (%.16s...) is not this "
                         "model's (%.16s...)%s%s%s: give --source-vocab that model's GGUF to score its sequences "
                         "through the decoded text", (long long)ws->score_run, ws->vocab_digest, vocab,
                         *src_vocab ? " nor --source-vocab's (" : "", *src_vocab ? src_vocab : "",
                         *src_vocab ? ")" : "");
            else if (ws->chat_template && *ws->chat_template)
                /* A template that names a special token this vocabulary
                 * lacks does not fit this model: why says which. */
                new_tpl = template_new(m->tok, ws->chat_template, strlen(ws->chat_template), why, sizeof why);
            if (*why) {
                log_error("refusing run %lld: %s%s", (long long)msg.u.welcome.run_id, why,
                          keep_serving ? "; waiting for another run" : "");
                wire_msg_clear(&msg);
                if (keep_serving) {
                    welcomed = 0;
                    continue;
                }
                rc = EXIT_MISMATCH;
                goto done;
            }
            if (!welcomed || msg.u.welcome.run_id != run_id) {
                wire_msg_clear(&welcome);
                welcome = msg; /* keeps the settings' arrays alive */
                memset(&msg, 0, sizeof msg);
                run_id = welcome.u.welcome.run_id;
                settings_from_wire(&welcome.u.welcome.settings, &settings);
                if (settings.observe && strcmp(welcome.u.welcome.settings.vocab_digest, vocab))
                    settings.source_tok = src_tok;
                experiment_destroy(&ex);
                template_destroy(&tpl);
                tpl = new_tpl, new_tpl = NULL;
                settings.tpl = tpl;
                int n_ctx;
                const int32_t *ctx = template_prefix(tpl, &n_ctx);
                experiment_cont_t *cont = settings.cont.cont_len > 0 ? &settings.cont : NULL;
                if (!(ex = experiment_new_ctx(m, settings.window, EXPERIMENT_BATCH, cont, ctx, n_ctx, err,
                                              sizeof err))) {
                    log_error("run %lld: %s", (long long)run_id, err);
                    rc = 1;
                    goto done;
                }
                log_info("joined run %lld (window %d, stride %d, C %d, K %d%s%s)", (long long)run_id,
                         settings.window, settings.stride, settings.cont.cont_len, settings.cont.n_samples,
                         tpl ? ", a chat template" : "",
                         settings.source_tok ? ", scoring through the decoded text" : "");
            }
            template_destroy(&new_tpl); /* (a WELCOME of the run already joined) */
            welcomed = 1;
            send_ready(link); /* (a WELCOME never comes in a job: serve_job holds the loop) */
            break;
        }
        case WIRE_JOB:
            if (!welcomed || msg.u.job.run_id != run_id) {
                send_failed(link, msg.u.job.job_id, msg.u.job.attempt_token, "worker has not joined this run", 1);
                break;
            }
            if (!registered && db && register_model(db, m, identity, model_path, err, sizeof err) == 0)
                registered = 1;
            serve_t sv = {link, &db, conninfo, m, ex, &settings, result, run_id};
            serve_job(&sv, &msg);
            break;
        case WIRE_SHUTDOWN:
            log_info("coordinator: %s", msg.u.shutdown.reason ? msg.u.shutdown.reason : "shutdown");
            rc = msg.u.shutdown.code == WIRE_SHUTDOWN_MODEL_MISMATCH ? EXIT_MISMATCH : 0;
            wire_msg_clear(&msg);
            if (keep_serving) {
                log_info("waiting for the next run at %s (--keep-serving)", endpoint);
                welcomed = 0;
                last_wait_log = now_s();
                continue;
            }
            goto done;
        default:
            log_debug("ignoring %s", wire_type_name(msg.type));
        }
        wire_msg_clear(&msg);
    }
    rc = 0; /* stopped by a signal */
done:
    /* Let the link flush what we queued (FAILED / DONE) before closing. */
    usleep(100 * 1000);
    link_destroy(&link);
    experiment_destroy(&ex);
    template_destroy(&tpl);
    job_result_destroy(&result);
    wire_msg_clear(&welcome);
    db_destroy(&db);
    model_destroy(&m);
    tokenizer_destroy(&src_tok);
    gguf_destroy(&src_gguf);
    return rc;
}
