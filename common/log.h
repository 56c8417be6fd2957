/* log.h - logging to stderr, error-message buffers and start-up checks.
 *
 * What it is: the one place that formats diagnostics for every tokshift
 * program and library module.  What it is not: a policy for errors.  Library
 * code never exits; it writes a message into the caller's buffer with
 * log_seterr() and returns its failure value.  Only program start-up uses the
 * die helpers, which print file:line and a hint. */
#ifndef TS_LOG_H
#define TS_LOG_H

#include <stdarg.h>
#include <stddef.h>

/* Size that every error buffer in the project is expected to have. */
#define LOG_ERRLEN 512

typedef enum { LOG_DEBUG = 0, LOG_INFO, LOG_WARN, LOG_ERROR } log_level_t;

/* Sets the least severe level printed (default LOG_INFO; TOKSHIFT_LOG=debug
 * in the environment lowers it at the first call). */
void log_set_level(log_level_t level);

/* Prints one line to stderr: "tokshift: LEVEL: message". Colour only when
 * stderr is a terminal and NO_COLOR is unset. */
void log_msg(log_level_t level, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

#define log_debug(...) log_msg(LOG_DEBUG, __VA_ARGS__)
#define log_info(...) log_msg(LOG_INFO, __VA_ARGS__)
#define log_warn(...) log_msg(LOG_WARN, __VA_ARGS__)
#define log_error(...) log_msg(LOG_ERROR, __VA_ARGS__)

/* Formats a message into err (errlen bytes, always NUL-terminated when
 * errlen > 0).  err may be NULL, then nothing is written.  Returns -1 so that
 * callers can write `return log_seterr(...)`. */
int log_seterr(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Start-up only: prints "file:line: message\n  hint: hint" and exits 1. */
_Noreturn void log_die_at(const char *file, int line, const char *hint,
                          const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

#define log_die(hint, ...) log_die_at(__FILE__, __LINE__, hint, __VA_ARGS__)

/* Checked allocation for start-up paths: dies with file:line on failure. */
void *log_xmalloc_at(const char *file, int line, size_t n);
#define log_xmalloc(n) log_xmalloc_at(__FILE__, __LINE__, (n))

#endif
