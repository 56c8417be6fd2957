/* ratelimit.c - see ratelimit.h. */
#include "ratelimit.h"

#include <stdio.h>
#include <string.h>

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

void ratelimit_keyed_init(ratelimit_keyed_t *r, double per_s, double burst, double all_per_s, double all_burst,
                          int64_t now_ms) {
    memset(r, 0, sizeof *r);
    r->per_s = per_s;
    r->burst = burst;
    ratelimit_init(&r->all, all_per_s, all_burst, now_ms);
}

int ratelimit_keyed_allow(ratelimit_keyed_t *r, const char *key, int64_t now_ms, uint64_t *suppressed) {
    char k[RATELIMIT_KEY_MAX];
    snprintf(k, sizeof k, "%s", key && *key ? key : "-"); /* "" marks a free slot */
    ratelimit_slot_t *s = NULL, *lru = &r->slot[0];
    for (size_t i = 0; i < RATELIMIT_KEYS && !s; i++) {
        if (!strcmp(r->slot[i].key, k)) s = &r->slot[i];
        else if (lru->key[0] && (!r->slot[i].key[0] || r->slot[i].used_ms < lru->used_ms)) lru = &r->slot[i];
    }
    if (!s) {
        s = lru;
        memcpy(s->key, k, sizeof s->key);
        ratelimit_init(&s->rl, r->per_s, r->burst, now_ms);
    }
    s->used_ms = now_ms;
    uint64_t held = 0;
    if (!ratelimit_allow(&s->rl, now_ms, &held)) return 0; /* counted by the key's limiter */
    if (!ratelimit_allow(&r->all, now_ms, NULL)) {
        s->rl.suppressed = held + 1; /* the key's limiter let it pass: count it there */
        return 0;
    }
    if (suppressed) *suppressed = held;
    return 1;
}
