/* fault.c - see fault.h.  Single-threaded by contract: every point is on the
 * main thread of its process (the worker's job loop, the coordinator's
 * loop), so the counters are plain integers. */
#include "fault.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <sys/resource.h>
#include <time.h>

#include "log.h"

static const char *const g_names[FAULT_N] = {
    "crash_on_doc", "fail_alloc", "fail_copy_chunk", "stall_before_commit_ms", "stall_in_commit_ms",
    "commit_twice", "replay_done", "dup_dispatch", "load_crash", "slow_job_ms",
};

static struct {
    int parsed, rc;
    char err[LOG_ERRLEN];
    int armed[FAULT_N];
    int64_t value[FAULT_N], passes[FAULT_N];
} g;

static int parse(const char *spec) {
    char *copy = strdup(spec), *save = NULL;
    if (!copy) return log_seterr(g.err, sizeof g.err, "TOKSHIFT_FAULT: out of memory");
    int rc = 0;
    for (char *t = strtok_r(copy, ",", &save); t && !rc; t = strtok_r(NULL, ",", &save)) {
        char *eq = strchr(t, '=');
        int f = 0;
        if (eq) {
            *eq = 0;
            while (f < FAULT_N && strcmp(t, g_names[f])) f++;
        }
        char *end = NULL;
        errno = 0;
        long long v = eq ? strtoll(eq + 1, &end, 10) : 0;
        if (!eq || f == FAULT_N || errno || end == eq + 1 || *end || v < (f == FAULT_CRASH_ON_DOC ? 0 : 1)) {
            rc = log_seterr(g.err, sizeof g.err,
                            "TOKSHIFT_FAULT: '%s%s%s' is not NAME=N with a known NAME (crash_on_doc, fail_alloc, "
                            "fail_copy_chunk, stall_before_commit_ms, stall_in_commit_ms, commit_twice, replay_done, "
                            "dup_dispatch, load_crash, slow_job_ms) and a count >= 1",
                            t, eq ? "=" : "", eq ? eq + 1 : "");
            break;
        }
        g.armed[f] = 1;
        g.value[f] = v;
        log_warn("fault armed: %s=%lld (TOKSHIFT_FAULT)", g_names[f], v);
    }
    free(copy);
    return rc;
}

int fault_init(char *err, size_t errlen) {
    if (!g.parsed) {
        g.parsed = 1;
        const char *spec = getenv("TOKSHIFT_FAULT");
        g.rc = spec && *spec ? parse(spec) : 0;
        if (g.rc) memset(g.armed, 0, sizeof g.armed); /* all or nothing */
    }
    if (g.rc) log_seterr(err, errlen, "%s", g.err);
    return g.rc;
}

int fault_armed(fault_t f) {
    if (!g.parsed) fault_init(NULL, 0);
    return f >= 0 && f < FAULT_N && g.armed[f];
}

int64_t fault_value(fault_t f) { return fault_armed(f) ? g.value[f] : 0; }

int fault_nth(fault_t f) {
    if (!fault_armed(f)) return 0;
    if (++g.passes[f] != g.value[f]) return 0;
    log_warn("fault injected: %s=%" PRId64, g_names[f], g.value[f]);
    return 1;
}

int fault_first(fault_t f) {
    if (!fault_armed(f)) return 0;
    int64_t limit = f == FAULT_STALL_BEFORE_COMMIT_MS || f == FAULT_STALL_IN_COMMIT_MS ? 1 : g.value[f];
    if (++g.passes[f] > limit) return 0;
    log_warn("fault injected: %s (%" PRId64 " of %" PRId64 ")", g_names[f], g.passes[f], limit);
    return 1;
}

void fault_maybe_crash_on_doc(int64_t doc_id) {
    if (!fault_armed(FAULT_CRASH_ON_DOC) || doc_id != g.value[FAULT_CRASH_ON_DOC]) return;
    log_error("fault injected: crash_on_doc=%" PRId64 ": aborting", doc_id);
    struct rlimit no_core = {0, 0};
    setrlimit(RLIMIT_CORE, &no_core);
    abort();
}

void fault_maybe_stall(fault_t f) {
    if (f == FAULT_SLOW_JOB_MS) { /* every time; said the first */
        if (!fault_armed(f)) return;
        if (!g.passes[f]++) log_warn("fault injected: slow_job_ms=%" PRId64 " (each job)", g.value[f]);
    } else if (!fault_first(f)) {
        return;
    }
    int64_t ms = g.value[f];
    struct timespec ts = {(time_t)(ms / 1000), (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) && errno == EINTR) {
    }
}

void fault_maybe_crash_after_load(int64_t next_doc) {
    if (!fault_armed(FAULT_LOAD_CRASH) || next_doc < g.value[FAULT_LOAD_CRASH]) return;
    log_error("fault injected: load_crash=%" PRId64 ": killed with %" PRId64 " documents loaded",
              g.value[FAULT_LOAD_CRASH], next_doc);
    raise(SIGKILL);
}
