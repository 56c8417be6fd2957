/* now.h - the monotonic clock, for timeouts, rates and durations (never for
 * wall-clock dates).  What it is not: a timer or a sleep. */
#ifndef TS_NOW_H
#define TS_NOW_H

#include <stdint.h>
#include <time.h>

/* Milliseconds of CLOCK_MONOTONIC. */
int64_t now_ms(void);
/* Seconds of CLOCK_MONOTONIC, with nanosecond resolution. */
double now_s(void);
/* Seconds of clock id (CLOCK_MONOTONIC, CLOCK_PROCESS_CPUTIME_ID,
 * CLOCK_THREAD_CPUTIME_ID, ...), with nanosecond resolution: the one reader
 * of clocks for measurements (the benchmarks' CPU time). */
double now_clock_s(clockid_t id);

#endif
