/* bench_dispatch.c - many fast no-op workers against a real coordinator.
 *
 * Usage: bench_dispatch ENDPOINT CONNINFO IDENTITY N_WORKERS
 *
 * Opens N DEALER sockets in one thread, each a "worker" that says HELLO with
 * the run's model identity, asks for jobs, and answers each JOB at once by
 * committing an empty result through db_commit_job (so the job really is
 * done in PostgreSQL, token-checked, as a real worker's) and sending DONE.
 * It exits when the coordinator says SHUTDOWN to all of them and prints the
 * jobs handled and jobs/s.  The no-op workers commit without waiting for
 * the WAL flush (db_async_commit): this measures dispatch, not the disk.  The
 * coordinator logs its own CPU time per job when it finishes. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <zmq.h>

#include "db.h"
#include "log.h"
#include "wire.h"
#include "now.h"

int main(int argc, char **argv) {
    if (argc != 5) log_die("", "usage: bench_dispatch ENDPOINT CONNINFO IDENTITY N_WORKERS");
    int n = atoi(argv[4]);
    char err[LOG_ERRLEN];
    db_t *db = db_connect(argv[2], err, sizeof err);
    if (!db || db_async_commit(db, err, sizeof err)) log_die("", "%s", err);
    void *ctx = zmq_ctx_new();
    void **s = calloc((size_t)n, sizeof *s);
    zmq_pollitem_t *items = calloc((size_t)n, sizeof *items);
    int *alive = calloc((size_t)n, sizeof *alive);
    int64_t run_id = 0;
    for (int i = 0; i < n; i++) {
        s[i] = zmq_socket(ctx, ZMQ_DEALER);
        if (wire_socket_setup(s[i], err, sizeof err) || zmq_connect(s[i], argv[1])) log_die("", "connect");
        char name[32];
        snprintf(name, sizeof name, "noop-%d", i);
        wire_msg_t h = {.type = WIRE_HELLO};
        h.u.hello.worker = name;
        h.u.hello.host = "bench";
        h.u.hello.model_identity = argv[3];
        h.u.hello.model_name = "noop";
        if (wire_send(s[i], NULL, 0, &h, err, sizeof err)) log_die("", "%s", err);
        items[i] = (zmq_pollitem_t){s[i], 0, ZMQ_POLLIN, 0};
        alive[i] = 1;
    }
    long jobs = 0, live = n;
    double t0 = 0, commit_s = 0;
    db_results_t empty = {0};
    while (live > 0) {
        if (zmq_poll(items, n, 60000) <= 0) log_die("", "no message for 60 s");
        for (int i = 0; i < n; i++) {
            if (!(items[i].revents & ZMQ_POLLIN)) continue;
            wire_msg_t m = {0};
            if (wire_recv(s[i], NULL, NULL, &m, ZMQ_DONTWAIT, err, sizeof err) != 0) continue;
            wire_msg_t reply = {.type = WIRE_READY};
            int send = 1;
            if (m.type == WIRE_WELCOME) {
                run_id = m.u.welcome.run_id;
            } else if (m.type == WIRE_JOB) {
                if (!t0) t0 = now_s();
                double w;
                int rc = db_commit_job(db, run_id, m.u.job.job_id, (int64_t)m.u.job.attempt_token, &empty, &w, err,
                                       sizeof err);
                commit_s += w;
                if (rc < 0) log_die("", "%s", err);
                wire_msg_t d = {.type = WIRE_DONE};
                d.u.done.job_id = m.u.job.job_id;
                d.u.done.attempt_token = m.u.job.attempt_token;
                d.u.done.n_docs = (int64_t)m.u.job.n_docs;
                d.u.done.stale = rc == 1;
                wire_send(s[i], NULL, 0, &d, err, sizeof err);
                jobs++;
            } else if (m.type == WIRE_SHUTDOWN) {
                send = 0;
                if (alive[i]) alive[i] = 0, live--;
                items[i].events = 0;
            } else {
                send = 0;
            }
            if (send) wire_send(s[i], NULL, 0, &reply, err, sizeof err);
            wire_msg_clear(&m);
        }
    }
    double el = now_s() - t0;
    printf("dispatch: %ld jobs to %d no-op workers in %.2f s: %.0f jobs/s (the workers' own commits took %.2f s of it)\n",
           jobs, n, el, jobs / el, commit_s);
    for (int i = 0; i < n; i++) zmq_close(s[i]);
    zmq_ctx_term(ctx);
    db_destroy(&db);
    return 0;
}
