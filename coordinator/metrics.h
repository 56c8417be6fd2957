/* metrics.h - the coordinator's metrics endpoint: Prometheus text exposition
 * format (version 0.0.4) over HTTP, served by libmicrohttpd.
 *
 * What it is: an HTTP server on its own thread (libmicrohttpd's) that
 * answers GET /metrics from the last snapshot the serve loop published, and
 * the snapshot itself: the loop calls metrics_publish() once per tick, which
 * copies the counters and the fleet into a new immutable snapshot and swaps
 * it in under a mutex (a pointer swap: the loop never waits for a scrape,
 * and a scrape renders without holding the lock).  Between publishes the
 * HTTP thread touches nothing of the loop's.
 *
 * What it is not: a source of truth (PostgreSQL is; these are the
 * coordinator's own counts, which equal the database's when a run is
 * complete), a push client, or an authenticated endpoint: it binds to
 * loopback unless told otherwise, and says nothing a job or a key could be
 * taken from. */
#ifndef TS_METRICS_H
#define TS_METRICS_H

#include <signal.h>
#include <stddef.h>
#include <stdint.h>

#include "db.h"
#include "fleet.h"

typedef struct metrics metrics_t;

/* The run's counts as the serve loop has them. */
typedef struct {
    int64_t jobs;          /* jobs loaded so far */
    int64_t done, failed;  /* jobs done, failed */
    int64_t leased_unheld; /* leased in PostgreSQL but held by no worker of the fleet: leases adopted after a
                              restart, releases waiting for PostgreSQL */
    int64_t retries;       /* attempts after the first (requeues) */
    int64_t docs, docs_done, tokens_done;
    int db_up;    /* the serve loop's connection works */
    int complete; /* the run is complete: these are its final counts */
} metrics_counts_t;

/* Checks an address for --metrics: PORT, :PORT, HOST:PORT or [IPV6]:PORT,
 * HOST a numeric address (default 127.0.0.1), PORT 0-65535 (0: any free
 * port).  0, or -1 with a message. */
int metrics_addr_check(const char *addr, char *err, size_t errlen);

/* Starts serving on addr (as metrics_addr_check takes it) the metrics of
 * run `run` (NULL: of the runs metrics_publish_run names); until the first
 * publish only the build and uptime.
 * Returns NULL with a message (bad address, address in use, no thread).
 * run is copied. */
metrics_t *metrics_new(const char *addr, const char *run, char *err, size_t errlen);
/* Stops the server (waits for a scrape in progress) and frees everything.
 * NULL-safe; clears *self_p. */
void metrics_destroy(metrics_t **self_p);

/* The URL served, http://HOST:PORT/metrics (the port chosen when addr said
 * port 0); owned by self. */
const char *metrics_url(const metrics_t *self);

/* Publishes a snapshot: counts, the fleet's workers (alive, busy, per
 * worker name jobs and tokens done (fleet_tally_t), tokens of the jobs in
 * hand) and db's round trips (db may be NULL).  Serve-loop thread only;
 * linear in the workers and worker names.
 * Out of memory, the previous snapshot stays (and a warning is logged). */
void metrics_publish(metrics_t *self, const metrics_counts_t *counts, fleet_t *fleet, const db_t *db);
/* The same for run `run` of a coordinator serving the queue of runs (a
 * self made with run NULL): each run's samples carry its name; a run not
 * published before is added (and stays, with its last figures, when it is
 * complete).  Out of memory, that run is not shown (a warning). */
void metrics_publish_run(metrics_t *self, const char *run, const metrics_counts_t *counts, fleet_t *fleet,
                         const db_t *db);

/* The exposition text of the current snapshot, malloc'd (caller frees), or
 * NULL out of memory.  Any thread. */
char *metrics_text(metrics_t *self, size_t *len);

/* Keeps serving the last snapshot for up to `seconds`, or until *stop is
 * set: so that a scraper sees a finished run's final counts. */
void metrics_linger(metrics_t *self, long seconds, const volatile sig_atomic_t *stop);

/* Checks the address parser, label escaping, the rate window and a
 * snapshot's text (no HTTP).  0 when all pass. */
int metrics_selftest(void);

#endif
