/* queue.c - see queue.h. */
#include "queue.h"

#include <getopt.h>
#include <stdio.h>
#include <string.h>

#include "db.h"
#include "log.h"
#include "num.h"

static const char *const k_use =
    "usage: tokshift queue [--db CONNINFO]\n"
    "       tokshift queue priority RUN P [--db CONNINFO]\n";

int queue_main(int argc, char **argv) {
    static const struct option opts[] = {{"db", required_argument, 0, 'd'}, {"help", no_argument, 0, 'h'}, {0}};
    const char *conninfo = "";
    int c;
    while ((c = getopt_long(argc, argv, "d:h", opts, NULL)) != -1) {
        switch (c) {
        case 'd': conninfo = optarg; break;
        case 'h':
            printf("%s\n"
                   "Without a subcommand: the runs queued with `tokshift-coordinator --submit`, in the\n"
                   "order a coordinator started with --serve-queue serves them (priority, highest\n"
                   "first; then the order they were queued in).  `priority RUN P` gives the queued\n"
                   "run RUN (a name or an id) the priority P (-1000..1000); a queue server takes it\n"
                   "into account within a heartbeat.\n",
                   k_use);
            return 0;
        default: fputs(k_use, stderr); return 2;
        }
    }
    int set = optind < argc && !strcmp(argv[optind], "priority");
    if (set ? optind + 3 != argc : optind != argc) {
        fputs(k_use, stderr);
        return 2;
    }
    char err[LOG_ERRLEN];
    long p = 0;
    if (set && num_long(argv[optind + 2], "the priority", -1000, 1000, &p, err, sizeof err)) {
        log_error("%s", err);
        return 2;
    }
    int rc = 1;
    db_queued_t *q = NULL;
    size_t n = 0;
    db_t *db = db_connect(conninfo, err, sizeof err);
    if (!db) goto error;
    if (set) {
        int r = db_queue_set_priority(db, argv[optind + 1], (int)p, err, sizeof err);
        if (r == 1) log_seterr(err, sizeof err, "no run '%s' in the queue", argv[optind + 1]);
        if (r) goto error;
        log_info("run '%s': priority %ld", argv[optind + 1], p);
    } else {
        if (db_queue_list(db, &q, &n, err, sizeof err)) goto error;
        printf("%-8s %-10s %-8s %-24s %s\n", "order", "status", "priority", "run", "model");
        for (size_t i = 0; i < n; i++)
            printf("%-8zu %-10s %-8d %-24s %.16s\n", i + 1, q[i].status, q[i].priority, q[i].name,
                   q[i].model_identity);
    }
    rc = 0;
error:
    if (rc) log_error("%s", err);
    db_queue_free(q, n);
    db_destroy(&db);
    return rc;
}
