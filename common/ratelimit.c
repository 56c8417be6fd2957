/* ratelimit.c - see ratelimit.h. */
#include "ratelimit.h"

void ratelimit_init(ratelimit_t *r, double per_s, double burst, int64_t now_ms) {
    r->per_s = per_s > 0 ? per_s : 1;
    r->burst = burst >= 1 ? burst : 1;
    r->tokens = r->burst;
    r->last_ms = now_ms;
    r->suppressed = 0;
}

int ratelimit_allow(ratelimit_t *r, int64_t now_ms, uint64_t *suppressed) {
    if (now_ms > r->last_ms) {
        r->tokens += (double)(now_ms - r->last_ms) * r->per_s / 1000.0;
        if (r->tokens > r->burst) r->tokens = r->burst;
        r->last_ms = now_ms;
    }
    if (r->tokens < 1.0) {
        r->suppressed++;
        return 0;
    }
    r->tokens -= 1.0;
    if (suppressed) *suppressed = r->suppressed;
    r->suppressed = 0;
    return 1;
}
