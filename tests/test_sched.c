/* test_sched.c - the coordinator's scheduling core (coordinator/scheduler.c)
 * driven by real wire messages over real ZeroMQ sockets (inproc: no
 * network is needed between two sockets of one process) against a real
 * PostgreSQL (a private cluster from deploy/pg-cluster.sh, stopped at
 * exit).  Each case registers its own run of one-document jobs and plays
 * the workers by hand: HELLO, READY, committing through db_commit_job as a
 * worker does, DONE, FAILED, silence.  Every check compares what the
 * scheduler did with what PostgreSQL holds (job states, tokens, attempts)
 * or with the messages the workers received.
 *
 * Cases: hand-out; DONE (counted once, replay ignored, DONE without a
 * commit released); FAILED retried then failed at the attempt limit, and a
 * not-retryable FAILED failed at once; lease expiry requeue (and the
 * coordinator's heartbeat to a busy worker); heartbeat liveness (a beating
 * worker stays, a silent one is removed and its job requeued); a worker
 * gone (socket closed) and one starting over (a new HELLO); a stale
 * attempt token fenced off; model-mismatch SHUTDOWN; finishing; the
 * dispatch's prepared statements after the session is lost; the run's
 * serving lock (refused while another session holds it, taken again in a
 * new session, nothing served while another coordinator has it).  The
 * queue of runs (coordinator/runq.c, migration 013), one fleet for several
 * runs: priority order and FIFO within a priority; two models, two runs (and
 * a third model refused); a run submitted while another is served takes the
 * next ready worker, completes on its own, and its worker moves back; a
 * run another coordinator holds is left to it until released.
 * Skips (77) when PostgreSQL's programs are not installed. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zmq.h>

#include "db.h"
#include "log.h"
#include "now.h"
#include "runq.h"
#include "scheduler.h"
#include "testutil.h"
#include "wire.h"

#define IDENT "1111111111111111111111111111111111111111111111111111111111111111"
#define OTHER "2222222222222222222222222222222222222222222222222222222222222222"

static char g_tmp[64] = "/tmp/test_sched.XXXXXX";
static int g_pg_started;
static void *g_ctx;
static db_t *g_db;
static char g_conninfo[512];

static void stop_pg(void) {
    char cmd[256];
    if (g_pg_started) {
        snprintf(cmd, sizeof cmd, "deploy/pg-cluster.sh stop %s/pg immediate >/dev/null 2>&1", g_tmp);
        if (system(cmd)) fprintf(stderr, "test_sched: stopping PostgreSQL failed\n");
    }
    snprintf(cmd, sizeof cmd, "rm -rf %s", g_tmp);
    if (system(cmd)) fprintf(stderr, "test_sched: removing %s failed\n", g_tmp);
}

/* A private cluster; its connection string into conninfo. */
static void start_pg(char *conninfo, size_t len) {
    if (system("command -v initdb >/dev/null 2>&1 || ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1")) {
        fprintf(stderr, "skip: PostgreSQL's initdb is not installed\n");
        exit(77);
    }
    TU_REQUIRE(mkdtemp(g_tmp), "mkdtemp: %s", strerror(errno));
    atexit(stop_pg);
    /* (Run as root, the server runs as another user, who must reach it.) */
    TU_REQUIRE(!chmod(g_tmp, 0755), "chmod %s: %s", g_tmp, strerror(errno));
    char cmd[256];
    snprintf(cmd, sizeof cmd, "deploy/pg-cluster.sh start %s/pg 2>%s/pg.err", g_tmp, g_tmp);
    FILE *p = popen(cmd, "r");
    TU_REQUIRE(p, "popen");
    g_pg_started = 1;
    TU_REQUIRE(fgets(conninfo, (int)len, p), "pg-cluster.sh printed nothing (see %s/pg.err)", g_tmp);
    TU_REQUIRE(pclose(p) == 0, "pg-cluster.sh failed");
    conninfo[strcspn(conninfo, "\n")] = 0;
}

/* ---- a run and a scheduler ---------------------------------------------- */

typedef struct {
    int64_t run_id;
    void *router;
    sched_t *s;
    sched_opts_t o;
    runq_t *q; /* the queue cases: a queue server instead of s */
} fixture_t;

static int g_n_runs;

/* A run of n_jobs one-document jobs, and a scheduler over an inproc ROUTER. */
/* A loaded run `name` of model identity with n_jobs one-document jobs and
 * these settings (JSON); its id. */
static int64_t make_run(const char *name, const char *identity, const char *settings, int n_jobs) {
    char err[LOG_ERRLEN];
    db_run_t run;
    TU_REQUIRE(!db_run_open(g_db, name, identity, settings, "{}", &run, err, sizeof err), "%s", err);
    int64_t run_id = run.run_id;
    db_run_clear(&run);
    db_loader_t *l = db_loader_new(g_db, run_id, 0, err, sizeof err);
    TU_REQUIRE(l, "%s", err);
    for (int j = 0; j < n_jobs; j++) {
        char ext[32], text[32];
        snprintf(ext, sizeof ext, "d%d", j);
        snprintf(text, sizeof text, "text of job %d", j);
        TU_REQUIRE(!db_loader_add(l, j, ext, "test", "{}", text, strlen(text), j, NULL, err, sizeof err), "%s", err);
        TU_REQUIRE(!db_loader_job(l, j, 1, (int64_t)strlen(text), err, sizeof err), "%s", err);
    }
    TU_REQUIRE(!db_loader_commit(&l, n_jobs, 1, err, sizeof err), "%s", err);
    return run_id;
}

/* A bound inproc ROUTER for the next fixture (its endpoint numbered by
 * g_n_runs, as w_hello connects). */
static void *router(void) {
    char err[LOG_ERRLEN], ep[64];
    void *r = zmq_socket(g_ctx, ZMQ_ROUTER);
    int one = 1;
    snprintf(ep, sizeof ep, "inproc://sched-%d", g_n_runs);
    TU_REQUIRE(r && !wire_socket_setup(r, err, sizeof err) && !zmq_setsockopt(r, ZMQ_ROUTER_MANDATORY, &one, sizeof one) &&
                   !zmq_bind(r, ep),
               "router: %s", zmq_strerror(zmq_errno()));
    return r;
}

static void fixture(fixture_t *f, int n_jobs, long max_attempts, long heartbeat_ms, long liveness, long timeout_s) {
    char err[LOG_ERRLEN], name[64];
    memset(f, 0, sizeof *f);
    snprintf(name, sizeof name, "sched-%d", ++g_n_runs);
    f->run_id = make_run(name, IDENT, "{}", n_jobs);
    f->router = router();
    const wire_settings_t st = {8, 4, NULL, 0, 0, 2, 1, 1.0f, 0, 1.0f, 0, 0, NULL, NULL, 0};
    f->o = (sched_opts_t){"test", IDENT, st, max_attempts, heartbeat_ms, liveness, timeout_s, 0};
    TU_REQUIRE((f->s = sched_new(&f->o, g_db, f->router, f->run_id, err, sizeof err)), "%s", err);
    TU_CHECK(sched_n_queued(f->s) == (size_t)n_jobs, "%zu queued, not %d", sched_n_queued(f->s), n_jobs);
}

static void fixture_end(fixture_t *f) {
    runq_destroy(&f->q);
    runq_destroy(&f->q); /* NULL-safe, and cleared */
    sched_destroy(&f->s);
    sched_destroy(&f->s); /* NULL-safe, and cleared */
    TU_CHECK(f->s == NULL, "sched_destroy left the pointer");
    int zero = 0;
    zmq_setsockopt(f->router, ZMQ_LINGER, &zero, sizeof zero);
    zmq_close(f->router);
}

/* Hands every message waiting at the ROUTER to the scheduler (waiting up to
 * 100 ms for the first), then dispatches. */
static void pump(fixture_t *f) {
    char err[LOG_ERRLEN];
    zmq_pollitem_t it = {f->router, 0, ZMQ_POLLIN, 0};
    zmq_poll(&it, 1, 100);
    for (;;) {
        uint8_t peer[SCHED_MAX_PEER];
        size_t peer_len = sizeof peer;
        wire_msg_t m = {0};
        int r = wire_recv(f->router, peer, &peer_len, &m, ZMQ_DONTWAIT, err, sizeof err);
        if (r == 1) break;
        if (r < 0) {
            if (f->q) runq_bad_message(f->q, peer, peer_len, err);
            else sched_bad_message(f->s, peer, peer_len, err);
            continue;
        }
        if (f->q) runq_on_message(f->q, peer, peer_len, &m);
        else sched_on_message(f->s, peer, peer_len, &m);
        wire_msg_clear(&m);
    }
    if (f->q) runq_dispatch(f->q);
    else sched_dispatch(f->s);
}

/* ---- a worker played by hand -------------------------------------------- */

typedef struct {
    void *sock;
    char name[32];
    int64_t run_id, job_id; /* the run of the job it holds */
    uint64_t token;
} worker_t;

static void w_send(worker_t *w, wire_msg_t *m) {
    char err[LOG_ERRLEN];
    TU_REQUIRE(!wire_send(w->sock, NULL, 0, m, err, sizeof err), "%s: %s", w->name, err);
}

/* The next message to w within ms, into m (type 0 when none). */
static void w_recv(worker_t *w, wire_msg_t *m, int ms) {
    char err[LOG_ERRLEN];
    memset(m, 0, sizeof *m);
    zmq_pollitem_t it = {w->sock, 0, ZMQ_POLLIN, 0};
    if (zmq_poll(&it, 1, ms) <= 0) return;
    TU_REQUIRE(wire_recv(w->sock, NULL, NULL, m, ZMQ_DONTWAIT, err, sizeof err) == 0, "%s: %s", w->name, err);
}

/* The next message to w that is not a HEARTBEAT, into m. */
static void w_next(worker_t *w, wire_msg_t *m) {
    for (;;) {
        w_recv(w, m, 200);
        if (m->type != WIRE_HEARTBEAT) return;
        wire_msg_clear(m);
    }
}

/* HELLO on w's connection (again, for a worker that restarts its session). */
static void w_say_hello(fixture_t *f, worker_t *w, const char *identity) {
    wire_msg_t h = {.type = WIRE_HELLO};
    h.u.hello.worker = w->name;
    h.u.hello.host = "test";
    h.u.hello.model_identity = (char *)identity;
    h.u.hello.model_name = "m";
    h.u.hello.observes = 1;
    w_send(w, &h);
    pump(f);
}

/* A new connection (ZeroMQ gives it a routing identity) saying HELLO. */
static void w_hello(fixture_t *f, worker_t *w, const char *name, const char *identity) {
    char ep[64];
    memset(w, 0, sizeof *w);
    snprintf(w->name, sizeof w->name, "%s", name);
    snprintf(ep, sizeof ep, "inproc://sched-%d", g_n_runs);
    w->sock = zmq_socket(g_ctx, ZMQ_DEALER);
    TU_REQUIRE(w->sock && !zmq_connect(w->sock, ep), "dealer: %s", zmq_strerror(zmq_errno()));
    w_say_hello(f, w, identity);
}

/* HELLO (right model), expecting WELCOME. */
static void w_join(fixture_t *f, worker_t *w, const char *name) {
    w_hello(f, w, name, IDENT);
    wire_msg_t m;
    w_next(w, &m);
    TU_CHECK(m.type == WIRE_WELCOME && m.u.welcome.run_id == f->run_id && m.u.welcome.settings.window == 8,
             "%s: no WELCOME to this run (type %d)", name, m.type);
    wire_msg_clear(&m);
}

/* READY; returns 1 with the job taken into w->job_id/token when a JOB came. */
static int w_ask(fixture_t *f, worker_t *w) {
    wire_msg_t m = {.type = WIRE_READY};
    w_send(w, &m);
    pump(f);
    w_next(w, &m);
    int got = m.type == WIRE_JOB;
    if (got) {
        TU_CHECK(m.u.job.run_id == f->run_id && m.u.job.n_docs == 1 && m.u.job.docs[0].doc_id == m.u.job.job_id,
                 "%s: JOB %" PRId64 " malformed", w->name, m.u.job.job_id);
        w->run_id = m.u.job.run_id, w->job_id = m.u.job.job_id, w->token = m.u.job.attempt_token;
    }
    wire_msg_clear(&m);
    return got;
}

/* Commits w's job with no rows as a worker does (db_commit_job); 0 or 1 (stale). */
static int w_commit(fixture_t *f, worker_t *w) {
    char err[LOG_ERRLEN];
    db_results_t empty = {0};
    (void)f;
    int rc = db_commit_job(g_db, w->run_id, w->job_id, (int64_t)w->token, &empty, NULL, err, sizeof err);
    TU_REQUIRE(rc >= 0, "%s", err);
    return rc;
}

static void w_done(fixture_t *f, worker_t *w, uint64_t token, int stale) {
    wire_msg_t m = {.type = WIRE_DONE};
    m.u.done.job_id = w->job_id, m.u.done.attempt_token = token, m.u.done.n_tokens = 7, m.u.done.n_docs = 1;
    m.u.done.stale = stale;
    w_send(w, &m);
    pump(f);
}

static void w_failed(fixture_t *f, worker_t *w, int retryable) {
    wire_msg_t m = {.type = WIRE_FAILED};
    m.u.failed.job_id = w->job_id, m.u.failed.attempt_token = w->token, m.u.failed.error = "boom";
    m.u.failed.retryable = retryable;
    w_send(w, &m);
    pump(f);
}

/* n rounds of: ms milliseconds pass, w beats, the scheduler reads it and
 * ticks. */
static void beat_ticks(fixture_t *f, worker_t *w, int n, int ms) {
    for (int i = 0; i < n; i++) {
        usleep((useconds_t)ms * 1000);
        wire_msg_t m = {.type = WIRE_HEARTBEAT};
        w_send(w, &m);
        pump(f);
        sched_tick(f->s);
    }
}

static void w_close(worker_t *w) {
    int zero = 0;
    zmq_setsockopt(w->sock, ZMQ_LINGER, &zero, sizeof zero);
    zmq_close(w->sock);
    w->sock = NULL;
}

/* ---- PostgreSQL's side -------------------------------------------------- */

static db_job_state_t state_of(fixture_t *f, int64_t job) {
    char err[LOG_ERRLEN];
    db_job_state_t st;
    TU_REQUIRE(!db_jobs_state(g_db, f->run_id, 1, &job, &st, err, sizeof err), "%s", err);
    return st;
}

/* The lease of job in PostgreSQL (token 0 when not leased). */
static db_lease_t lease_of(fixture_t *f, int64_t job) {
    char err[LOG_ERRLEN];
    db_lease_t *l = NULL, out = {0};
    size_t n = 0;
    TU_REQUIRE(!db_jobs_leased(g_db, f->run_id, &l, &n, err, sizeof err), "%s", err);
    for (size_t i = 0; i < n; i++)
        if (l[i].job_id == job) out = l[i];
    free(l);
    return out;
}

static db_progress_t progress_of(fixture_t *f) {
    char err[LOG_ERRLEN];
    db_progress_t pg;
    TU_REQUIRE(!db_progress(g_db, f->run_id, &pg, err, sizeof err), "%s", err);
    return pg;
}

/* ---- the cases ---------------------------------------------------------- */

static void test_hand_out(void) {
    fixture_t f;
    worker_t a, b;
    fixture(&f, 3, 3, 1000, 1000, 3600);
    w_join(&f, &a, "wa");
    w_join(&f, &b, "wb");
    TU_REQUIRE(w_ask(&f, &a) && w_ask(&f, &b), "no JOB for a ready worker");
    TU_CHECK(a.job_id != b.job_id && a.token != b.token, "the same job or token twice");
    db_lease_t la = lease_of(&f, a.job_id), lb = lease_of(&f, b.job_id);
    TU_CHECK((uint64_t)la.token == a.token && !strcmp(la.worker, "wa"), "PostgreSQL's lease of job %" PRId64
             " is not wa's (token %" PRId64 ", worker %s)", a.job_id, la.token, la.worker);
    TU_CHECK((uint64_t)lb.token == b.token && !strcmp(lb.worker, "wb"), "PostgreSQL's lease is not wb's");
    TU_CHECK(sched_n_queued(f.s) == 1, "%zu queued after two hand-outs", sched_n_queued(f.s));
    /* A worker holding a job that asks again gets nothing more. */
    worker_t a2 = a;
    TU_CHECK(!w_ask(&f, &a2), "a busy worker got a second job");
    fixture_end(&f);
    w_close(&a), w_close(&b);
}

static void test_done(void) {
    fixture_t f;
    worker_t a;
    fixture(&f, 2, 3, 1000, 1000, 3600);
    w_join(&f, &a, "wa");
    TU_REQUIRE(w_ask(&f, &a), "no JOB");
    TU_CHECK(w_commit(&f, &a) == 0, "the holder's commit was fenced off");
    w_done(&f, &a, a.token, 0);
    const sched_counts_t *c = sched_counts(f.s);
    TU_CHECK(c->done == 1 && c->tokens == 7, "done %" PRId64 ", tokens %" PRId64 " after one DONE", c->done,
             c->tokens);
    w_done(&f, &a, a.token, 0); /* replayed */
    TU_CHECK(c->done == 1, "a replayed DONE was counted (%" PRId64 ")", c->done);
    /* The next job: DONE without a commit puts it back. */
    TU_REQUIRE(w_ask(&f, &a), "no second JOB");
    int64_t second = a.job_id;
    w_done(&f, &a, a.token, 0);
    TU_CHECK(state_of(&f, second) == DB_JOB_PENDING, "a DONE with nothing committed left job %" PRId64 " %d", second,
             state_of(&f, second));
    TU_CHECK(c->done == 1 && c->retries == 1, "done %" PRId64 ", retries %" PRId64, c->done, c->retries);
    TU_REQUIRE(w_ask(&f, &a) && a.job_id == second, "the requeued job was not handed out again");
    TU_CHECK(w_commit(&f, &a) == 0, "commit");
    w_done(&f, &a, a.token, 0);
    TU_CHECK(c->done == 2, "done %" PRId64, c->done);
    /* Everything done: finished (after the idle check's query). */
    TU_CHECK(sched_finished(f.s, 0) == 1, "not finished with every job done");
    TU_CHECK(sched_finished(f.s, 1) == 0, "finished while loading");
    fixture_end(&f);
    w_close(&a);
}

static void test_failed(void) {
    fixture_t f;
    worker_t a;
    fixture(&f, 2, 2, 1000, 1000, 3600);
    w_join(&f, &a, "wa");
    TU_REQUIRE(w_ask(&f, &a), "no JOB");
    int64_t job = a.job_id;
    w_failed(&f, &a, 1);
    TU_CHECK(state_of(&f, job) == DB_JOB_PENDING && sched_counts(f.s)->retries == 1,
             "a retryable FAILED below the limit did not requeue");
    /* (The other job is handed out first: the requeued one waits its turn.) */
    TU_REQUIRE(w_ask(&f, &a), "no JOB");
    w_failed(&f, &a, 0); /* not retryable: failed at once */
    TU_CHECK(state_of(&f, a.job_id) == DB_JOB_FAILED && sched_counts(f.s)->failed == 1,
             "a not-retryable FAILED did not fail job %" PRId64, a.job_id);
    TU_REQUIRE(w_ask(&f, &a) && a.job_id == job, "the requeued job did not come back");
    w_failed(&f, &a, 1); /* second attempt of 2 */
    TU_CHECK(state_of(&f, job) == DB_JOB_FAILED && sched_counts(f.s)->failed == 2,
             "job %" PRId64 " not failed at the attempt limit", job);
    TU_CHECK(progress_of(&f).failed == 2, "PostgreSQL has %" PRId64 " failed", progress_of(&f).failed);
    TU_CHECK(!w_ask(&f, &a), "a JOB with nothing left");
    TU_CHECK(sched_finished(f.s, 0) == 1, "not finished with every job failed");
    fixture_end(&f);
    w_close(&a);
}

static void test_lease_expiry(void) {
    fixture_t f;
    worker_t a;
    fixture(&f, 1, 3, 50, 1000, 1);
    w_join(&f, &a, "wa");
    TU_REQUIRE(w_ask(&f, &a), "no JOB");
    usleep(60 * 1000); /* more than half a beat since the JOB: a heartbeat is due */
    sched_tick(f.s);
    TU_CHECK(state_of(&f, a.job_id) == DB_JOB_LEASED, "taken back before its timeout");
    wire_msg_t hb;
    w_recv(&a, &hb, 200);
    TU_CHECK(hb.type == WIRE_HEARTBEAT, "no HEARTBEAT to a busy worker a beat after its JOB (type %d)", hb.type);
    wire_msg_clear(&hb);
    beat_ticks(&f, &a, 1, 1100); /* alive: only the lease is overdue */
    TU_CHECK(state_of(&f, a.job_id) == DB_JOB_PENDING, "a lease past --job-timeout was not requeued");
    TU_CHECK(sched_n_queued(f.s) == 1, "the job is not queued again");
    /* Its worker, idle again, gets it with a new token. */
    uint64_t old = a.token;
    TU_CHECK(w_ask(&f, &a) && a.token != old, "not handed out again under a new token");
    fixture_end(&f);
    w_close(&a);
}

static void test_liveness(void) {
    fixture_t f;
    worker_t a, b;
    fixture(&f, 3, 3, 50, 4, 3600); /* dead after 200 ms of silence */
    w_join(&f, &a, "beating");
    w_join(&f, &b, "silent");
    TU_REQUIRE(w_ask(&f, &a) && w_ask(&f, &b), "no JOB");
    beat_ticks(&f, &a, 8, 50); /* 400 ms: twice the limit */
    TU_CHECK(state_of(&f, a.job_id) == DB_JOB_LEASED, "the beating worker's job was taken back");
    TU_CHECK(state_of(&f, b.job_id) == DB_JOB_PENDING, "the silent worker's job was not requeued");
    /* The silent worker is forgotten: its READY gets a HEARTBEAT (say HELLO
     * again), not a job. */
    wire_msg_t m = {.type = WIRE_READY}, r;
    w_send(&b, &m);
    pump(&f);
    w_recv(&b, &r, 200);
    while (r.type == WIRE_HEARTBEAT && r.type != 0) {
        wire_msg_clear(&r);
        w_recv(&b, &r, 100);
    }
    TU_CHECK(r.type != WIRE_JOB, "a worker declared dead got a JOB without a new HELLO");
    wire_msg_clear(&r);
    fixture_end(&f);
    w_close(&a), w_close(&b);
}

static void test_gone_and_reconnect(void) {
    fixture_t f;
    worker_t a, b;
    fixture(&f, 3, 3, 50, 4, 3600);
    w_join(&f, &a, "gone");
    w_join(&f, &b, "back");
    TU_REQUIRE(w_ask(&f, &a) && w_ask(&f, &b), "no JOB");
    int64_t ja = a.job_id, jb = b.job_id;
    w_close(&a); /* its connection is gone */
    /* b says HELLO again on its connection (a worker that starts over): the
     * job it held is requeued at once. */
    w_say_hello(&f, &b, IDENT);
    wire_msg_t m;
    w_next(&b, &m);
    TU_CHECK(m.type == WIRE_WELCOME, "no WELCOME for a second HELLO");
    wire_msg_clear(&m);
    TU_CHECK(state_of(&f, jb) == DB_JOB_PENDING, "a worker's new HELLO left its old job leased");
    beat_ticks(&f, &b, 6, 50); /* 300 ms > 200 ms */
    TU_CHECK(state_of(&f, ja) == DB_JOB_PENDING, "the gone worker's job was not requeued");
    /* Both requeued jobs (and the third) go to the one worker left. */
    int got = 0;
    for (int i = 0; i < 3; i++) {
        if (!w_ask(&f, &b)) break;
        got++;
        TU_CHECK(w_commit(&f, &b) == 0, "commit");
        w_done(&f, &b, b.token, 0);
    }
    TU_CHECK(got == 3 && sched_counts(f.s)->done == 3, "%d jobs after the losses, %" PRId64 " done", got,
             sched_counts(f.s)->done);
    fixture_end(&f);
    w_close(&b);
}

static void test_stale_token(void) {
    fixture_t f;
    worker_t a, b;
    fixture(&f, 1, 3, 50, 1000, 1);
    w_join(&f, &a, "slow");
    w_join(&f, &b, "fast");
    TU_REQUIRE(w_ask(&f, &a), "no JOB");
    worker_t old = a;
    beat_ticks(&f, &a, 1, 1100); /* a's lease times out ... */
    TU_REQUIRE(w_ask(&f, &b) && b.job_id == old.job_id && b.token != old.token, "the job was not re-leased to b");
    /* ... and a's late work is fenced off: its commit writes nothing, and
     * its DONE (even one that claims success) neither counts nor releases
     * b's lease. */
    TU_CHECK(w_commit(&f, &old) == 1, "a commit under the old token was accepted");
    w_done(&f, &old, old.token, 1);
    w_done(&f, &old, old.token, 0);
    TU_CHECK(sched_counts(f.s)->done == 0, "a stale DONE was counted");
    db_lease_t l = lease_of(&f, b.job_id);
    TU_CHECK((uint64_t)l.token == b.token, "the stale DONE disturbed the current lease");
    TU_CHECK(w_commit(&f, &b) == 0, "the current holder's commit was fenced off");
    w_done(&f, &b, b.token, 0);
    TU_CHECK(sched_counts(f.s)->done == 1, "done %" PRId64, sched_counts(f.s)->done);
    fixture_end(&f);
    w_close(&a), w_close(&b);
}

static void test_model_mismatch(void) {
    fixture_t f;
    worker_t a;
    fixture(&f, 1, 3, 1000, 1000, 3600);
    w_hello(&f, &a, "wrong", OTHER);
    wire_msg_t m;
    w_next(&a, &m);
    TU_CHECK(m.type == WIRE_SHUTDOWN && m.u.shutdown.code == WIRE_SHUTDOWN_MODEL_MISMATCH,
             "a worker with another model got type %d (code %d), not SHUTDOWN model-mismatch", m.type,
             m.type == WIRE_SHUTDOWN ? (int)m.u.shutdown.code : -1);
    wire_msg_clear(&m);
    TU_CHECK(!w_ask(&f, &a), "a refused worker got a JOB");
    TU_CHECK(sched_n_queued(f.s) == 1 && state_of(&f, 0) == DB_JOB_PENDING, "the job moved");
    fixture_end(&f);
    w_close(&a);
}

/* The dispatch's prepared statements (db_jobs_lease, db_jobs_state: once
 * per session) after the session is lost: the scheduler reconnects and
 * prepares them again; a lease and a DONE's check work as before. */
static void test_prepared_after_reconnect(void) {
    fixture_t f;
    worker_t a, b;
    fixture(&f, 3, 3, 1000, 1000, 3600);
    w_join(&f, &a, "pa");
    TU_CHECK(w_ask(&f, &a), "no job before the session was lost");
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "psql '%s' -XAtqc 'SELECT pg_terminate_backend(%d)' >/dev/null", g_conninfo,
             db_backend_pid(g_db));
    TU_REQUIRE(!system(cmd), "psql: terminating the scheduler's session failed");
    usleep(200 * 1000);
    w_join(&f, &b, "pb");
    TU_CHECK(!w_ask(&f, &b), "a job was leased over a terminated session");
    TU_CHECK(sched_db_down(f.s), "the lost session was not noticed");
    sched_tick(f.s); /* reconnects */
    TU_CHECK(!sched_db_down(f.s), "no reconnect");
    TU_CHECK(w_ask(&f, &b), "no job after the reconnect (the lease statement not prepared again?)");
    TU_CHECK(w_commit(&f, &a) == 0, "a's commit was stale");
    w_done(&f, &a, a.token, 0);
    TU_CHECK(progress_of(&f).done == 1 && sched_counts(f.s)->done == 1,
             "a's DONE not counted after the reconnect (%" PRId64 " done)", sched_counts(f.s)->done);
    fixture_end(&f);
    w_close(&a);
    w_close(&b);
}

/* The serving lock (db_run_lock): a scheduler is refused a run another
 * session holds, naming that session; it holds the run while it lives; it
 * takes the lock again in a new session and, while another coordinator
 * holds it then, serves nothing of the run. */
static void test_serving_lock(void) {
    char err[LOG_ERRLEN], name[64], cmd[1024];
    db_t *other = db_connect(g_conninfo, err, sizeof err);
    TU_REQUIRE(other, "%s", err);
    snprintf(name, sizeof name, "sched-%d", ++g_n_runs);
    int64_t run = make_run(name, IDENT, "{}", 2);
    TU_REQUIRE(db_run_lock(other, run, err, sizeof err) == 0, "%s", err);
    const wire_settings_t st = {8, 4, NULL, 0, 0, 2, 1, 1.0f, 0, 1.0f, 0, 0, NULL, NULL, 0};
    sched_opts_t o = {"test", IDENT, st, 3, 1000, 1000, 3600, 0};
    void *r = router();
    char pid[32];
    snprintf(pid, sizeof pid, "session %d ", db_backend_pid(other));
    sched_t *s = sched_new(&o, g_db, r, run, err, sizeof err);
    TU_CHECK(!s && strstr(err, "served by another coordinator") && strstr(err, pid),
             "a run locked by another session was taken (%s)", s ? "served" : err);
    sched_destroy(&s);
    db_run_unlock(other, run);
    fixture_t f = {0};
    f.router = r, f.run_id = run, f.o = o;
    TU_REQUIRE((f.s = sched_new(&f.o, g_db, r, run, err, sizeof err)), "after the release: %s", err);
    TU_CHECK(db_run_lock(other, run, err, sizeof err) == 1, "another session took a served run's lock");
    /* The scheduler's session ends; the other takes the lock meanwhile. */
    worker_t a;
    w_join(&f, &a, "la");
    snprintf(cmd, sizeof cmd, "psql '%s' -XAtqc 'SELECT pg_terminate_backend(%d)' >/dev/null", g_conninfo,
             db_backend_pid(g_db));
    TU_REQUIRE(!system(cmd), "psql: terminating the scheduler's session failed");
    usleep(200 * 1000);
    TU_REQUIRE(db_run_lock(other, run, err, sizeof err) == 0, "the lock outlived its session: %s", err);
    TU_CHECK(!w_ask(&f, &a), "a job was leased over a terminated session");
    sched_tick(f.s); /* reconnects, finds the lock taken */
    TU_CHECK(sched_db_down(f.s), "serving on while another coordinator holds the run");
    TU_CHECK(!w_ask(&f, &a), "a job was handed out while another coordinator holds the run");
    db_run_unlock(other, run);
    sched_tick(f.s);
    TU_CHECK(!sched_db_down(f.s), "the run was not taken back once released");
    TU_CHECK(w_ask(&f, &a), "no job once the lock was taken back");
    TU_CHECK(db_run_lock(other, run, err, sizeof err) == 1, "the lock was not taken back in the new session");
    fixture_end(&f);
    TU_CHECK(db_run_lock(other, run, err, sizeof err) == 0, "sched_destroy kept the run's lock: %s", err);
    w_close(&a);
    db_destroy(&other);
}

/* ---- the queue of runs (runq.c) ------------------------------------------ */

#define THIRD "3333333333333333333333333333333333333333333333333333333333333333"
static const char *const k_settings = "{\"window\": 8, \"stride\": 4, \"prefix_lengths\": [], \"cut_every\": 0, "
                                      "\"cont_len\": 2, \"samples\": 1, \"temperature\": 1.0, \"top_k\": 0, "
                                      "\"top_p\": 1.0, \"seed\": 0}";

/* A run queued with priority; its id. */
static int64_t queued_run(const char *name, const char *identity, int n_jobs, int priority) {
    char err[LOG_ERRLEN], full[64];
    snprintf(full, sizeof full, "q%d-%s", g_n_runs, name);
    int64_t id = make_run(full, identity, k_settings, n_jobs);
    TU_REQUIRE(!db_queue_submit(g_db, id, priority, err, sizeof err), "%s", err);
    return id;
}

/* A queue server over the runs queued so far (heartbeat 1 s, liveness
 * 1000: nobody is presumed dead). */
static void queue_fixture(fixture_t *f) {
    char err[LOG_ERRLEN];
    memset(f, 0, sizeof *f);
    f->router = router();
    const runq_opts_t o = {3, 1000, 1000, 3600, NULL, NULL};
    TU_REQUIRE((f->q = runq_new(&o, g_db, f->router, err, sizeof err)), "%s", err);
}

/* Takes every run of the queue out of it (status done), for the next case. */
static void queue_end(fixture_t *f) {
    char err[LOG_ERRLEN];
    db_queued_t *q;
    size_t n;
    TU_REQUIRE(!db_queue_list(g_db, &q, &n, err, sizeof err), "%s", err);
    for (size_t i = 0; i < n; i++) TU_REQUIRE(!db_run_set_status(g_db, q[i].run_id, "done", err, sizeof err), "%s", err);
    db_queue_free(q, n);
    fixture_end(f);
}

/* The next message to w that is not a HEARTBEAT: its type, with the run it
 * names (WELCOME, JOB) in *run; a JOB is taken into w. */
static int q_next(worker_t *w, int64_t *run) {
    wire_msg_t m;
    w_next(w, &m);
    int type = m.type;
    *run = type == WIRE_WELCOME ? m.u.welcome.run_id : type == WIRE_JOB ? m.u.job.run_id : -1;
    if (type == WIRE_JOB) w->run_id = m.u.job.run_id, w->job_id = m.u.job.job_id, w->token = m.u.job.attempt_token;
    wire_msg_clear(&m);
    return type;
}

/* READY: what came back (see q_next). */
static int q_ready(fixture_t *f, worker_t *w, int64_t *run) {
    wire_msg_t m = {.type = WIRE_READY};
    w_send(w, &m);
    pump(f);
    return q_next(w, run);
}

/* w's job committed and DONE; then READY: what came back. */
static int q_done_ready(fixture_t *f, worker_t *w, int64_t *run) {
    TU_CHECK(w_commit(f, w) == 0, "%s: job %" PRId64 " of run %" PRId64 " stale", w->name, w->job_id, w->run_id);
    w_done(f, w, w->token, 0);
    return q_ready(f, w, run);
}

/* Priority first, then FIFO: runs a and b (priority 0, a queued first) and
 * c (priority 5, queued last).  One worker serves c, then a, then b, moved
 * between them by WELCOMEs; `tokshift queue priority` (db_queue_set_priority)
 * moves b before a. */
static void test_queue_order(void) {
    fixture_t f;
    worker_t w;
    ++g_n_runs;
    int64_t a = queued_run("a", IDENT, 2, 0), b = queued_run("b", IDENT, 1, 0), c = queued_run("c", IDENT, 2, 5);
    queue_fixture(&f);
    TU_CHECK(runq_n_runs(f.q) == 3 && sched_run_id(runq_sched_at(f.q, 0)) == c &&
                 sched_run_id(runq_sched_at(f.q, 1)) == a && sched_run_id(runq_sched_at(f.q, 2)) == b,
             "queue order is not c, a, b");
    w_hello(&f, &w, "qw", IDENT);
    int64_t run;
    TU_CHECK(q_next(&w, &run) == WIRE_WELCOME && run == c, "HELLO: WELCOME to run %" PRId64 ", want c %" PRId64, run, c);
    TU_CHECK(q_ready(&f, &w, &run) == WIRE_JOB && run == c, "first job from run %" PRId64 ", want c", run);
    TU_CHECK(q_done_ready(&f, &w, &run) == WIRE_JOB && run == c, "second job from run %" PRId64 ", want c", run);
    /* c has nothing queued: the next READY moves the worker to a (FIFO). */
    TU_CHECK(q_done_ready(&f, &w, &run) == WIRE_WELCOME && run == a, "after c: WELCOME to %" PRId64 ", want a", run);
    TU_CHECK(q_ready(&f, &w, &run) == WIRE_JOB && run == a, "job from run %" PRId64 ", want a", run);
    /* b raised above a: the worker moves at its next READY, a's job left. */
    char err[LOG_ERRLEN], bid[32];
    snprintf(bid, sizeof bid, "%" PRId64, b);
    TU_CHECK(db_queue_set_priority(g_db, bid, 7, err, sizeof err) == 0, "set priority: %s", err);
    TU_CHECK(db_queue_set_priority(g_db, "no-such-run", 7, err, sizeof err) == 1, "a priority for no run");
    runq_tick(f.q, NULL);
    TU_CHECK(sched_run_id(runq_sched_at(f.q, 0)) == b, "b is not first after its priority rose");
    TU_CHECK(q_done_ready(&f, &w, &run) == WIRE_WELCOME && run == b, "after the change: WELCOME to %" PRId64 ", want b",
             run);
    TU_CHECK(q_ready(&f, &w, &run) == WIRE_JOB && run == b, "job from run %" PRId64 ", want b", run);
    /* c completes on its own while a and b go on. */
    runq_tick(f.q, NULL);
    TU_CHECK(runq_n_completed(f.q) == 1 && runq_n_runs(f.q) == 2, "%zu runs completed, %zu served; want c alone done",
             runq_n_completed(f.q), runq_n_runs(f.q));
    w_close(&w);
    queue_end(&f);
}

/* Two models, two runs: each worker joins the run of its model and takes
 * its jobs; a worker of a third model is told that no queued run fits it. */
static void test_queue_two_models(void) {
    fixture_t f;
    worker_t x, y, z;
    ++g_n_runs;
    int64_t r1 = queued_run("m1", IDENT, 2, 0), r2 = queued_run("m2", OTHER, 2, 0);
    queue_fixture(&f);
    int64_t run;
    w_hello(&f, &x, "x", OTHER);
    TU_CHECK(q_next(&x, &run) == WIRE_WELCOME && run == r2, "model 2's worker: WELCOME to %" PRId64 ", want %" PRId64,
             run, r2);
    w_hello(&f, &y, "y", IDENT);
    TU_CHECK(q_next(&y, &run) == WIRE_WELCOME && run == r1, "model 1's worker: WELCOME to %" PRId64, run);
    TU_CHECK(q_ready(&f, &x, &run) == WIRE_JOB && run == r2, "model 2's worker: job of run %" PRId64, run);
    TU_CHECK(q_ready(&f, &y, &run) == WIRE_JOB && run == r1, "model 1's worker: job of run %" PRId64, run);
    TU_CHECK(q_done_ready(&f, &x, &run) == WIRE_JOB && run == r2, "model 2's second job from run %" PRId64, run);
    /* x's run has nothing queued; r1 has, but not of x's model: x stays. */
    TU_CHECK(q_done_ready(&f, &x, &run) == 0, "model 2's idle worker got message type for run %" PRId64, run);
    w_hello(&f, &z, "z", THIRD);
    wire_msg_t m;
    w_next(&z, &m);
    TU_CHECK(m.type == WIRE_SHUTDOWN && m.u.shutdown.code == WIRE_SHUTDOWN_MODEL_MISMATCH && m.u.shutdown.reason &&
                 strstr(m.u.shutdown.reason, "no run in the queue can use worker z") &&
                 strstr(m.u.shutdown.reason, IDENT) && strstr(m.u.shutdown.reason, OTHER),
             "a third model's worker: type %d, reason '%s'", m.type,
             m.type == WIRE_SHUTDOWN && m.u.shutdown.reason ? m.u.shutdown.reason : "");
    wire_msg_clear(&m);
    runq_tick(f.q, NULL);
    TU_CHECK(runq_n_completed(f.q) == 1, "run of model 2 not completed (%zu)", runq_n_completed(f.q));
    w_close(&x);
    w_close(&y);
    w_close(&z);
    queue_end(&f);
}

/* A queued run that another coordinator holds (db_run_lock) is left to it
 * and served once released; the queue server then holds it. */
static void test_queue_locked_run(void) {
    fixture_t f;
    char err[LOG_ERRLEN];
    ++g_n_runs;
    db_t *other = db_connect(g_conninfo, err, sizeof err);
    TU_REQUIRE(other, "%s", err);
    int64_t a = queued_run("held", IDENT, 1, 0);
    TU_REQUIRE(db_run_lock(other, a, err, sizeof err) == 0, "%s", err);
    queue_fixture(&f);
    TU_CHECK(runq_n_runs(f.q) == 0, "a run another coordinator holds is served (%zu runs)", runq_n_runs(f.q));
    db_run_unlock(other, a);
    runq_tick(f.q, NULL);
    TU_CHECK(runq_n_runs(f.q) == 1, "the released run is not served (%zu runs)", runq_n_runs(f.q));
    TU_CHECK(db_run_lock(other, a, err, sizeof err) == 1, "the queue server does not hold the run it serves");
    db_destroy(&other);
    queue_end(&f);
}

/* A run submitted while another is served: the queue server finds it at its
 * next tick; the worker, at its next READY, moves to it (higher priority),
 * completes it (status done while the first run goes on), and moves back. */
static void test_queue_submitted_while_running(void) {
    fixture_t f;
    worker_t w;
    ++g_n_runs;
    int64_t a = queued_run("first", IDENT, 3, 0);
    queue_fixture(&f);
    int64_t run;
    w_hello(&f, &w, "w", IDENT);
    TU_CHECK(q_next(&w, &run) == WIRE_WELCOME && run == a, "WELCOME to %" PRId64, run);
    TU_CHECK(q_ready(&f, &w, &run) == WIRE_JOB && run == a, "job of %" PRId64, run);
    int64_t b = queued_run("later", IDENT, 1, 1);
    runq_tick(f.q, NULL);
    TU_CHECK(runq_n_runs(f.q) == 2, "the run submitted later is not served (%zu runs)", runq_n_runs(f.q));
    TU_CHECK(q_done_ready(&f, &w, &run) == WIRE_WELCOME && run == b, "moved to %" PRId64 ", want the later run", run);
    TU_CHECK(q_ready(&f, &w, &run) == WIRE_JOB && run == b, "job of %" PRId64 ", want the later run", run);
    TU_CHECK(w_commit(&f, &w) == 0, "stale");
    w_done(&f, &w, w.token, 0);
    runq_tick(f.q, NULL);
    char err[LOG_ERRLEN];
    db_progress_t pa, pb;
    TU_REQUIRE(!db_progress(g_db, a, &pa, err, sizeof err) && !db_progress(g_db, b, &pb, err, sizeof err), "%s", err);
    TU_CHECK(runq_n_completed(f.q) == 1 && pb.done == 1 && pa.done == 1 && pa.pending == 2,
             "the later run is not complete on its own (completed %zu; a: %" PRId64 " done, %" PRId64 " pending)",
             runq_n_completed(f.q), pa.done, pa.pending);
    TU_CHECK(q_next(&w, &run) == WIRE_WELCOME && run == a, "after the later run: WELCOME to %" PRId64 ", want a", run);
    TU_CHECK(q_ready(&f, &w, &run) == WIRE_JOB && run == a, "job of %" PRId64 ", want a", run);
    w_close(&w);
    queue_end(&f);
}

int main(void) {
    char *conninfo = g_conninfo, err[LOG_ERRLEN];
    start_pg(conninfo, sizeof g_conninfo);
    TU_REQUIRE((g_db = db_connect(conninfo, err, sizeof err)), "%s", err);
    TU_REQUIRE(db_migrate(g_db, err, sizeof err) >= 0, "%s", err);
    TU_REQUIRE((g_ctx = zmq_ctx_new()), "zmq_ctx_new");
    test_hand_out();
    test_done();
    test_failed();
    test_lease_expiry();
    test_liveness();
    test_gone_and_reconnect();
    test_stale_token();
    test_model_mismatch();
    test_prepared_after_reconnect();
    test_serving_lock();
    test_queue_order();
    test_queue_two_models();
    test_queue_submitted_while_running();
    test_queue_locked_run();
    sched_destroy(NULL);
    zmq_ctx_term(g_ctx);
    db_destroy(&g_db);
    return tu_finish("test_sched");
}
