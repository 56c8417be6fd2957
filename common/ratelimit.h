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

/* A limiter per key (say, a peer's address and key), for up to
 * RATELIMIT_KEYS keys at a time (the least recently seen key gives its slot
 * to a new one), under one overall limit: one noisy peer cannot hide
 * another, and many peers together cannot flood the log either. */
#define RATELIMIT_KEYS 32
#define RATELIMIT_KEY_MAX 96

typedef struct {
    char key[RATELIMIT_KEY_MAX]; /* "" = free */
    ratelimit_t rl;
    int64_t used_ms;
} ratelimit_slot_t;

typedef struct {
    ratelimit_slot_t slot[RATELIMIT_KEYS];
    double per_s, burst; /* for each key */
    ratelimit_t all;     /* over all keys */
} ratelimit_keyed_t;

/* Each key may log `burst` lines at once and `per_s` a second after; all
 * keys together `all_burst` and `all_per_s`. */
void ratelimit_keyed_init(ratelimit_keyed_t *r, double per_s, double burst, double all_per_s, double all_burst,
                          int64_t now_ms);

/* As ratelimit_allow, for key (cut at RATELIMIT_KEY_MAX - 1 bytes);
 * *suppressed counts this key's refused lines. */
int ratelimit_keyed_allow(ratelimit_keyed_t *r, const char *key, int64_t now_ms, uint64_t *suppressed);

#endif
