/* fleet.c - see fleet.h.  A flat array: hundreds of workers cost a few
 * microseconds per lookup, far below one PostgreSQL round trip per job. */
#include "fleet.h"

#include <stdlib.h>
#include <stdio.h>
#include <string.h>

struct fleet {
    fleet_worker_t *w;
    size_t n, cap, rr;
};

fleet_t *fleet_new(void) { return calloc(1, sizeof(fleet_t)); }

void fleet_destroy(fleet_t **self_p) {
    if (!self_p || !*self_p) return;
    free((*self_p)->w);
    free(*self_p);
    *self_p = NULL;
}

fleet_worker_t *fleet_find(fleet_t *f, const void *id, size_t id_len) {
    for (size_t i = 0; i < f->n; i++)
        if (f->w[i].id_len == id_len && !memcmp(f->w[i].id, id, id_len)) return &f->w[i];
    return NULL;
}

fleet_worker_t *fleet_add(fleet_t *f, const void *id, size_t id_len, const char *name, int64_t now_ms) {
    if (id_len > FLEET_MAX_ID) return NULL;
    fleet_worker_t *w = fleet_find(f, id, id_len);
    if (!w) {
        if (f->n == f->cap) {
            size_t cap = f->cap ? 2 * f->cap : 16;
            fleet_worker_t *nw = realloc(f->w, cap * sizeof *nw);
            if (!nw) return NULL;
            f->w = nw;
            f->cap = cap;
        }
        w = &f->w[f->n++];
    }
    memset(w, 0, sizeof *w);
    memcpy(w->id, id, id_len);
    w->id_len = id_len;
    snprintf(w->name, sizeof w->name, "%s", name && *name ? name : "?");
    w->last_seen_ms = now_ms;
    w->job_id = -1;
    return w;
}

fleet_worker_t *fleet_holder(fleet_t *f, int64_t job_id) {
    for (size_t i = 0; i < f->n; i++)
        if (f->w[i].job_id == job_id) return &f->w[i];
    return NULL;
}

void fleet_remove(fleet_t *f, fleet_worker_t *w) {
    size_t i = (size_t)(w - f->w);
    if (i >= f->n) return;
    f->w[i] = f->w[--f->n];
}

size_t fleet_size(const fleet_t *f) { return f->n; }
fleet_worker_t *fleet_at(fleet_t *f, size_t i) { return i < f->n ? &f->w[i] : NULL; }

fleet_worker_t *fleet_next_ready(fleet_t *f) {
    for (size_t k = 0; k < f->n; k++) {
        size_t i = (f->rr + k) % f->n;
        if (f->w[i].ready && f->w[i].job_id < 0) {
            f->rr = i + 1;
            return &f->w[i];
        }
    }
    return NULL;
}

int fleet_selftest(void) {
    fleet_t *f = fleet_new();
    if (!f) return -1;
    int ok = 1;
    fleet_worker_t *a = fleet_add(f, "a", 1, "wa", 0);
    fleet_add(f, "bb", 2, "wb", 0);
    ok &= a && fleet_size(f) == 2 && fleet_find(f, "bb", 2) && !fleet_find(f, "b", 1);
    fleet_find(f, "a", 1)->ready = 1;
    fleet_find(f, "bb", 2)->ready = 1;
    fleet_worker_t *r1 = fleet_next_ready(f), *r2 = fleet_next_ready(f);
    ok &= r1 && r2 && r1 != r2; /* round robin */
    fleet_find(f, "a", 1)->job_id = 7;
    ok &= fleet_holder(f, 7) == fleet_find(f, "a", 1);
    fleet_remove(f, fleet_find(f, "a", 1));
    ok &= fleet_size(f) == 1 && !fleet_holder(f, 7);
    fleet_destroy(&f);
    fleet_destroy(&f);
    return ok ? 0 : -1;
}
