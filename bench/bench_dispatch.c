/* bench_dispatch.c - many fast no-op workers against a real coordinator.
 *
 * Usage: bench_dispatch ENDPOINT CONNINFO IDENTITY N_WORKERS [N_PROCS [COORD_PID]]
 *
 * Opens N_WORKERS DEALER sockets spread over N_PROCS processes (default 1;
 * each one thread and one PostgreSQL connection), each socket a "worker"
 * that says HELLO with the run's model identity, waits until all N_WORKERS
 * are welcomed (so the figure is of all of them at once, and the
 * coordinator's CPU time at that moment, read from /proc/COORD_PID/stat
 * when given, separates its start-up from its dispatch), asks for jobs, and answers
 * each JOB at once: the job is committed done with no rows, fenced by its
 * attempt token as a real worker's commit is (so it really is done in
 * PostgreSQL and a stale attempt writes nothing), then DONE and READY.  A
 * process commits the JOBs of one poll round together in one statement
 * (db_commit_jobs_empty): one transaction per job would make the no-op
 * workers' own commits the limit (a real worker commits once per job of
 * seconds or minutes of compute; 1,000 of them commit a few hundred times a
 * second), and the figure is the coordinator's.  It exits when the
 * coordinator has said SHUTDOWN to all of them, and prints the jobs handled,
 * jobs/s from the first JOB to the last DONE, and the share of that time the
 * no-op workers spent committing, and the CPU time of their PostgreSQL
 * backends (read from /proc: the server must run on this machine), which
 * bench/pipeline.sh takes from the cluster's to leave the coordinator's
 * share.  The coordinator logs its own CPU time per job when it finishes. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>
#include <zmq.h>

#include "db.h"
#include "log.h"
#include "now.h"
#include "num.h"
#include "wire.h"

/* What one process of workers reports to the parent through a pipe. */
typedef struct {
    long jobs, stale;
    double t_first, t_last, commit_s;
    double pg_cpu_s; /* CPU time of this process's PostgreSQL backend */
} share_t;

/* CPU seconds (user + system) of process pid so far, or 0 when unreadable
 * (fields 14 and 15 of /proc/PID/stat, in clock ticks). */
static double cpu_of(int pid) {
    char path[64], line[1024];
    snprintf(path, sizeof path, "/proc/%d/stat", pid);
    FILE *f = fopen(path, "r");
    if (!f) return 0;
    char *p = fgets(line, sizeof line, f) ? strrchr(line, ')') : NULL; /* after the command name */
    fclose(f);
    unsigned long ut = 0, st = 0;
    if (!p || sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &ut, &st) != 2) return 0;
    return (double)(ut + st) / (double)sysconf(_SC_CLK_TCK);
}

/* Serves workers [from, to) until each has been told SHUTDOWN; barrier[0]
 * says to the parent that all are welcomed, barrier[1] is where it says go. */
static share_t serve(const char *endpoint, const char *conninfo, const char *identity, int from, int to,
                     const int barrier[2]) {
    char err[LOG_ERRLEN];
    int n = to - from;
    db_t *db = db_connect(conninfo, err, sizeof err);
    /* (The coordinator's bookkeeping commits asynchronously too; results of
     * real jobs commit durably: see bench/pipeline.sh's PostgreSQL ceiling.) */
    if (!db || db_async_commit(db, err, sizeof err)) log_die("", "%s", err);
    void *ctx = zmq_ctx_new();
    zmq_ctx_set(ctx, ZMQ_MAX_SOCKETS, n + 16);
    void **s = calloc((size_t)n, sizeof *s);
    zmq_pollitem_t *items = calloc((size_t)n, sizeof *items);
    int64_t *ids = calloc((size_t)n, sizeof *ids), *tokens = calloc((size_t)n, sizeof *tokens);
    int *who = calloc((size_t)n, sizeof *who);
    int64_t *ndocs = calloc((size_t)n, sizeof *ndocs);
    bool *ok = calloc((size_t)n, sizeof *ok);
    if (!s || !items || !ids || !tokens || !who || !ndocs || !ok) log_die("", "out of memory");
    int64_t run_id = 0;
    for (int i = 0; i < n; i++) {
        char name[32];
        if (!(s[i] = zmq_socket(ctx, ZMQ_DEALER)) || wire_socket_setup(s[i], err, sizeof err) ||
            zmq_connect(s[i], endpoint))
            log_die("raise the open files limit (ulimit -n)", "worker %d: %s", from + i, zmq_strerror(zmq_errno()));
        snprintf(name, sizeof name, "noop-%d", from + i);
        wire_msg_t h = {.type = WIRE_HELLO};
        h.u.hello.worker = name;
        h.u.hello.host = "bench";
        h.u.hello.model_identity = (char *)identity;
        h.u.hello.model_name = "noop";
        h.u.hello.observes = 1;
        if (wire_send(s[i], NULL, 0, &h, err, sizeof err)) log_die("", "%s", err);
        items[i] = (zmq_pollitem_t){s[i], 0, ZMQ_POLLIN, 0};
    }
    /* Every worker is welcomed before any asks for a job, and every process
     * waits for the others' (barrier through the parent), so the figure is
     * that of all N workers at once: the coordinator's HELLO handling is
     * its start-up, not its dispatch, and a run that ended before the last
     * HELLO arrived would leave that worker waiting forever. */
    share_t sh = {0};
    wire_msg_t ready = {.type = WIRE_READY};
    for (long welcomed = 0; welcomed < n;) {
        if (zmq_poll(items, n, 60000) <= 0) log_die("", "%ld of %d workers welcomed, then no message for 60 s", welcomed, n);
        for (int i = 0; i < n; i++) {
            if (!(items[i].revents & ZMQ_POLLIN)) continue;
            wire_msg_t m = {0};
            while (wire_recv(s[i], NULL, NULL, &m, ZMQ_DONTWAIT, err, sizeof err) == 0) {
                if (m.type == WIRE_WELCOME) run_id = m.u.welcome.run_id, welcomed++;
                else if (m.type != WIRE_HEARTBEAT) log_die("", "worker %d: message %d before the start", from + i, m.type);
                wire_msg_clear(&m);
            }
        }
    }
    char b = 1;
    if (write(barrier[0], &b, 1) != 1 || read(barrier[1], &b, 1) != 1) log_die("", "barrier: the parent is gone");
    for (int i = 0; i < n; i++) wire_send(s[i], NULL, 0, &ready, err, sizeof err);
    long live = n;
    while (live > 0) {
        if (zmq_poll(items, n, 60000) <= 0) log_die("", "no message for 60 s");
        size_t k = 0; /* this round's jobs */
        for (int i = 0; i < n; i++) {
            if (!(items[i].revents & ZMQ_POLLIN)) continue;
            wire_msg_t m = {0};
            while (wire_recv(s[i], NULL, NULL, &m, ZMQ_DONTWAIT, err, sizeof err) == 0) {
                if (m.type == WIRE_JOB) {
                    ids[k] = m.u.job.job_id, tokens[k] = (int64_t)m.u.job.attempt_token;
                    who[k] = i, ndocs[k] = (int64_t)m.u.job.n_docs;
                    k++;
                } else if (m.type == WIRE_SHUTDOWN) {
                    items[i].events = 0;
                    live--;
                }
                wire_msg_clear(&m);
                if (!items[i].events) break;
            }
        }
        if (!k) continue;
        double t0 = now_s();
        if (!sh.t_first) sh.t_first = t0;
        if (db_commit_jobs_empty(db, run_id, k, ids, tokens, ok, err, sizeof err)) log_die("", "%s", err);
        sh.commit_s += now_s() - t0;
        for (size_t j = 0; j < k; j++) {
            wire_msg_t d = {.type = WIRE_DONE};
            d.u.done.job_id = ids[j];
            d.u.done.attempt_token = (uint64_t)tokens[j];
            d.u.done.n_docs = ndocs[j];
            d.u.done.stale = !ok[j];
            sh.stale += !ok[j];
            wire_send(s[who[j]], NULL, 0, &d, err, sizeof err);
            wire_send(s[who[j]], NULL, 0, &ready, err, sizeof err);
        }
        sh.jobs += (long)k;
        sh.t_last = now_s();
    }
    sh.pg_cpu_s = cpu_of(db_backend_pid(db));
    int zero = 0;
    for (int i = 0; i < n; i++) {
        zmq_setsockopt(s[i], ZMQ_LINGER, &zero, sizeof zero);
        zmq_close(s[i]);
    }
    zmq_ctx_term(ctx);
    db_destroy(&db);
    free(s), free(items), free(ids), free(tokens), free(who), free(ndocs), free(ok);
    return sh;
}

int main(int argc, char **argv) {
    char err[LOG_ERRLEN];
    long n, procs = 1;
    long coord = 0;
    if (argc < 5 || argc > 7) log_die("", "usage: bench_dispatch ENDPOINT CONNINFO IDENTITY N_WORKERS [N_PROCS [COORD_PID]]");
    if (num_long(argv[4], "N_WORKERS", 1, 100000, &n, err, sizeof err) ||
        (argc >= 6 && num_long(argv[5], "N_PROCS", 1, 64, &procs, err, sizeof err)) ||
        (argc == 7 && num_long(argv[6], "COORD_PID", 1, 1L << 30, &coord, err, sizeof err)))
        log_die("", "%s", err);
    /* Each worker is a socket (and a descriptor or two). */
    struct rlimit rl;
    if (!getrlimit(RLIMIT_NOFILE, &rl) && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    int fd[2], up[2], go[2];
    if (pipe(fd) || pipe(up) || pipe(go)) log_die("", "pipe");
    for (long p = 0; p < procs; p++) {
        pid_t pid = fork();
        if (pid < 0) log_die("", "fork");
        if (pid == 0) {
            close(fd[0]), close(up[0]), close(go[1]);
            int barrier[2] = {up[1], go[0]};
            share_t sh = serve(argv[1], argv[2], argv[3], (int)(n * p / procs), (int)(n * (p + 1) / procs), barrier);
            if (write(fd[1], &sh, sizeof sh) != sizeof sh) _exit(1);
            _exit(0);
        }
    }
    close(fd[1]), close(up[1]), close(go[0]);
    /* All processes' workers welcomed, then all go at once. */
    char b;
    for (long p = 0; p < procs; p++)
        if (read(up[0], &b, 1) != 1) log_die("", "a worker process failed before the start");
    double coord_cpu0 = coord ? cpu_of((int)coord) : 0;
    for (long p = 0; p < procs; p++)
        if (write(go[1], &b, 1) != 1) log_die("", "barrier: write");
    share_t all = {0}, sh;
    long got = 0;
    while (read(fd[0], &sh, sizeof sh) == sizeof sh) {
        got++;
        all.jobs += sh.jobs, all.stale += sh.stale, all.commit_s += sh.commit_s, all.pg_cpu_s += sh.pg_cpu_s;
        if (sh.t_first && (!all.t_first || sh.t_first < all.t_first)) all.t_first = sh.t_first;
        if (sh.t_last > all.t_last) all.t_last = sh.t_last;
    }
    int failed = 0, st;
    while (wait(&st) > 0) failed |= !WIFEXITED(st) || WEXITSTATUS(st);
    if (failed || got != procs) log_die("", "a worker process failed");
    double el = all.t_last - all.t_first;
    printf("dispatch: %ld jobs (%ld stale) to %ld no-op workers in %ld process(es) in %.2f s: %.0f jobs/s "
           "(the workers' batched commits: %.2f s, %.0f%% of one process's time)\n",
           all.jobs, all.stale, n, procs, el, el > 0 ? all.jobs / el : 0.0, all.commit_s,
           el > 0 ? 100.0 * all.commit_s / procs / el : 0.0);
    printf("no-op workers' PostgreSQL backends: %.2f s CPU (bench_pg_cpu_s=%.3f)\n", all.pg_cpu_s, all.pg_cpu_s);
    if (coord) printf("coordinator CPU when all %ld workers were welcomed: %.2f s (coord_cpu0_s=%.3f)\n", n, coord_cpu0, coord_cpu0);
    return 0;
}
