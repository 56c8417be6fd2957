/* fleet.c - see fleet.h.  A flat array: hundreds of workers cost a few
 * microseconds per lookup, far below one PostgreSQL round trip per job. */
#include "fleet.h"

#include <stdlib.h>
#include <stdio.h>
#include <string.h>

struct fleet {
    fleet_worker_t *w;
    size_t n, cap, rr;
    /* the tallies, and an open-addressing index of them by name (slot:
     * tally index + 1, 0 = empty; at most half full) */
    fleet_tally_t *t;
    size_t nt, cap_t;
    size_t *slot, n_slot;
};

fleet_t *fleet_new(void) { return calloc(1, sizeof(fleet_t)); }

void fleet_destroy(fleet_t **self_p) {
    if (!self_p || !*self_p) return;
    free((*self_p)->w);
    free((*self_p)->t);
    free((*self_p)->slot);
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

static size_t name_hash(const char *s) { /* FNV-1a */
    uint64_t h = 1469598103934665603u;
    for (; *s; s++) h = (h ^ (uint8_t)*s) * 1099511628211u;
    return (size_t)h;
}

/* The slot of name: its tally's, or the empty one where it would go. */
static size_t slot_of(const fleet_t *f, const char *name) {
    size_t i = name_hash(name) & (f->n_slot - 1);
    while (f->slot[i] && strcmp(f->t[f->slot[i] - 1].name, name)) i = (i + 1) & (f->n_slot - 1);
    return i;
}

int fleet_credit(fleet_t *f, fleet_worker_t *w, int64_t tokens) {
    w->jobs_done++;
    if (2 * (f->nt + 1) > f->n_slot) { /* grow the index (and rehash) first */
        size_t n = f->n_slot ? 2 * f->n_slot : 64, *old = f->slot, n_old = f->n_slot;
        size_t *ns = calloc(n, sizeof *ns);
        if (!ns) return -1;
        f->slot = ns, f->n_slot = n;
        for (size_t i = 0; i < n_old; i++)
            if (old[i]) f->slot[slot_of(f, f->t[old[i] - 1].name)] = old[i];
        free(old);
    }
    size_t i = slot_of(f, w->name);
    if (!f->slot[i]) {
        if (f->nt == f->cap_t) {
            size_t cap = f->cap_t ? 2 * f->cap_t : 16;
            fleet_tally_t *nt = realloc(f->t, cap * sizeof *nt);
            if (!nt) return -1;
            f->t = nt, f->cap_t = cap;
        }
        fleet_tally_t *t = &f->t[f->nt++];
        memset(t, 0, sizeof *t);
        snprintf(t->name, sizeof t->name, "%s", w->name);
        f->slot[i] = f->nt;
    }
    f->t[f->slot[i] - 1].jobs_done++;
    f->t[f->slot[i] - 1].tokens_done += tokens;
    return 0;
}

size_t fleet_n_tallies(const fleet_t *f) { return f->nt; }
const fleet_tally_t *fleet_tally_at(const fleet_t *f, size_t i) { return i < f->nt ? &f->t[i] : NULL; }

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
    /* Tallies by name outlive connections; many names rehash the index. */
    fleet_worker_t *b = fleet_find(f, "bb", 2);
    ok &= fleet_credit(f, b, 5) == 0 && fleet_credit(f, b, 7) == 0 && b->jobs_done == 2;
    fleet_remove(f, b);
    b = fleet_add(f, "b2", 2, "wb", 0);
    ok &= b && b->jobs_done == 0 && fleet_credit(f, b, 1) == 0;
    for (int k = 0; k < 100 && b; k++) {
        snprintf(b->name, sizeof b->name, "n%d", k);
        ok &= fleet_credit(f, b, k) == 0;
    }
    ok &= fleet_n_tallies(f) == 101 && !strcmp(fleet_tally_at(f, 0)->name, "wb") &&
          fleet_tally_at(f, 0)->jobs_done == 3 && fleet_tally_at(f, 0)->tokens_done == 13 &&
          fleet_tally_at(f, 100)->tokens_done == 99 && !fleet_tally_at(f, 101);
    snprintf(b->name, sizeof b->name, "n42");
    ok &= fleet_credit(f, b, 1) == 0 && fleet_n_tallies(f) == 101 && fleet_tally_at(f, 43)->tokens_done == 43;
    fleet_destroy(&f);
    fleet_destroy(&f);
    return ok ? 0 : -1;
}
