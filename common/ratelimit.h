/* ratelimit.h - a token bucket for log lines that a peer can provoke.
 *
 * What it is: a few numbers in a struct, no allocation, no clock of its own
 * (the caller passes the time), so that a hostile or broken peer sending
 * garbage, or knocking with a refused key ten times a second, cannot flood
 * the logs: the first `burst` lines pass, then `per_s` a second, and the next
 * line that passes says how many were held back.
 *
 * What it is not: thread-safe (one limiter per thread), nor a limit on the
 * work done for a peer (only on what is logged about it). */
#ifndef TS_RATELIMIT_H
#define TS_RATELIMIT_H

#include <stdint.h>

typedef struct {
    double per_s;        /* lines per second in the long run */
    double burst;        /* lines that may pass at once */
    double tokens;       /* lines that may pass now */
    int64_t last_ms;     /* time of the last refill (the caller's clock) */
    uint64_t suppressed; /* lines refused since the last one that passed */
} ratelimit_t;

/* Sets r up to allow `burst` lines at once (>= 1) and `per_s` a second
 * afterwards (> 0).  Starts full.  now_ms is the caller's monotonic clock. */
void ratelimit_init(ratelimit_t *r, double per_s, double burst, int64_t now_ms);

/* Whether one more line may be logged at now_ms.  Returns 1 and sets
 * *suppressed (when not NULL) to the number of lines refused since the last
 * one that passed, resetting that count; returns 0 and counts the line as
 * suppressed otherwise. */
int ratelimit_allow(ratelimit_t *r, int64_t now_ms, uint64_t *suppressed);

#endif
