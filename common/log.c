/* log.c - see log.h. */
#include "log.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

static int g_level = -1;

static void log_init_level(void) {
    if (g_level >= 0) return;
    g_level = LOG_INFO;
    const char *e = getenv("TOKSHIFT_LOG");
    if (!e) return;
    if (!strcasecmp(e, "debug")) g_level = LOG_DEBUG;
    else if (!strcasecmp(e, "warn")) g_level = LOG_WARN;
    else if (!strcasecmp(e, "error")) g_level = LOG_ERROR;
}

void log_set_level(log_level_t level) { g_level = (int)level; }

void log_msg(log_level_t level, const char *fmt, ...) {
    static const char *names[] = {"debug", "info", "warning", "error"};
    static const char *colours[] = {"\033[2m", "", "\033[33m", "\033[31m"};
    log_init_level();
    if ((int)level < g_level) return;
    int colour = isatty(STDERR_FILENO) && !getenv("NO_COLOR");
    char buf[4096];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    /* One fprintf per line keeps lines from concurrent processes whole. */
    fprintf(stderr, "%stokshift: %s: %s%s\n", colour ? colours[level] : "",
            names[level], buf, colour ? "\033[0m" : "");
}

int log_seterr(char *err, size_t errlen, const char *fmt, ...) {
    if (err && errlen > 0) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err, errlen, fmt, ap);
        va_end(ap);
    }
    return -1;
}

void log_die_at(const char *file, int line, const char *hint, const char *fmt,
                ...) {
    char buf[4096];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    /* The source location is for developers (TOKSHIFT_LOG=debug), not in
     * what a user reads. */
    log_debug("fatal error raised at %s:%d", file, line);
    fprintf(stderr, "tokshift: fatal: %s\n", buf);
    if (hint && *hint) fprintf(stderr, "  hint: %s\n", hint);
    exit(1);
}

void *log_xmalloc_at(const char *file, int line, size_t n) {
    void *p = malloc(n ? n : 1);
    if (!p)
        log_die_at(file, line, "the machine is out of memory",
                   "malloc(%zu) failed", n);
    return p;
}
