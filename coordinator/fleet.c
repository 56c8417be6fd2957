/* fleet.c - see fleet.h.  A flat array of workers (iteration, round robin)
 * indexed by routing identity in an open-addressing hash table (linear
 * probing, backward-shift deletion): every message looks its sender up, and
 * with 1,000 workers a scan of the array cost more than the rest of the
 * message's handling.  The tallies by worker name (fleet_credit) have an
 * index of their own. */
#include "fleet.h"

#include <stdlib.h>
#include <stdio.h>
#include <string.h>

struct fleet {
    fleet_worker_t *w;
    size_t n, cap, rr;
    uint32_t *id_slot; /* index + 1 into w, 0 when empty; n_id_slots a power of 2, >= 2n */
    size_t n_id_slots;
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
    free((*self_p)->id_slot);
    free((*self_p)->slot);
    free(*self_p);
    *self_p = NULL;
}

/* FNV-1a of an identity, as a home slot. */
static size_t home(const fleet_t *f, const void *id, size_t id_len) {
    uint64_t h = 14695981039346656037u;
    for (size_t i = 0; i < id_len; i++) h = (h ^ ((const uint8_t *)id)[i]) * 1099511628211u;
    return (size_t)(h ^ (h >> 32)) & (f->n_id_slots - 1);
}

/* The slot of identity id, or of the empty slot where it would go. */
static size_t probe(const fleet_t *f, const void *id, size_t id_len) {
    size_t i = home(f, id, id_len);
    while (f->id_slot[i]) {
        const fleet_worker_t *w = &f->w[f->id_slot[i] - 1];
        if (w->id_len == id_len && !memcmp(w->id, id, id_len)) return i;
        i = (i + 1) & (f->n_id_slots - 1);
    }
    return i;
}

/* Rebuilds the table with n_slots slots; -1 when memory runs out. */
static int rehash(fleet_t *f, size_t n_slots) {
    uint32_t *ns = calloc(n_slots, sizeof *ns);
    if (!ns) return -1;
    free(f->id_slot);
    f->id_slot = ns, f->n_id_slots = n_slots;
    for (size_t k = 0; k < f->n; k++) f->id_slot[probe(f, f->w[k].id, f->w[k].id_len)] = (uint32_t)(k + 1);
    return 0;
}

/* Empties slot i, moving later entries of its probe run back so that
 * every entry stays reachable from its home slot. */
static void unslot(fleet_t *f, size_t i) {
    size_t mask = f->n_id_slots - 1, j = i;
    f->id_slot[i] = 0;
    for (;;) {
        j = (j + 1) & mask;
        if (!f->id_slot[j]) return;
        const fleet_worker_t *w = &f->w[f->id_slot[j] - 1];
        size_t h = home(f, w->id, w->id_len);
        /* The entry at j may fill the hole at i unless its home lies
         * cyclically in (i, j]. */
        if (((j - h) & mask) >= ((j - i) & mask)) {
            f->id_slot[i] = f->id_slot[j];
            f->id_slot[j] = 0;
            i = j;
        }
    }
}

fleet_worker_t *fleet_find(fleet_t *f, const void *id, size_t id_len) {
    if (!f->n) return NULL;
    size_t i = probe(f, id, id_len);
    return f->id_slot[i] ? &f->w[f->id_slot[i] - 1] : NULL;
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
        if (2 * (f->n + 1) > f->n_id_slots && rehash(f, f->n_id_slots ? 2 * f->n_id_slots : 64)) return NULL;
        w = &f->w[f->n];
        memcpy(w->id, id, id_len);
        w->id_len = id_len;
        f->id_slot[probe(f, id, id_len)] = (uint32_t)(++f->n);
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
    unslot(f, probe(f, w->id, w->id_len));
    size_t last = --f->n;
    if (i != last) { /* the last entry fills the gap: its slot follows it */
        f->w[i] = f->w[last];
        f->id_slot[probe(f, f->w[i].id, f->w[i].id_len)] = (uint32_t)(i + 1);
    }
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

void fleet_mark_seen(fleet_worker_t *w, int64_t now_ms) { w->last_seen_ms = now_ms, w->unreachable = 0; }

void fleet_mark_sent(fleet_worker_t *w, int64_t now_ms) { w->last_sent_ms = now_ms; }

void fleet_mark_ready(fleet_worker_t *w) { w->ready = 1; }

void fleet_mark_busy(fleet_worker_t *w, int64_t job_id, uint64_t token, int64_t leased_ms, int64_t job_bytes,
                     int adopted) {
    w->job_id = job_id, w->token = token, w->leased_ms = leased_ms, w->job_bytes = job_bytes;
    w->prog_tokens = w->prog_bytes = w->prog_docs = 0;
    w->adopted = adopted;
    w->ready = 0;
}

void fleet_mark_idle(fleet_worker_t *w) {
    w->job_id = -1, w->adopted = 0;
    w->prog_tokens = w->prog_bytes = w->prog_docs = 0;
}

int fleet_mark_unreachable(fleet_worker_t *w) {
    int was = !w->unreachable;
    w->unreachable = 1;
    return was;
}

void fleet_mark_progress(fleet_worker_t *w, int64_t tokens, int64_t bytes, int64_t docs) {
    w->prog_tokens = tokens, w->prog_bytes = bytes, w->prog_docs = docs;
}

size_t fleet_n_busy(const fleet_t *f) {
    size_t n = 0;
    for (size_t i = 0; i < f->n; i++) n += f->w[i].job_id >= 0;
    return n;
}

size_t fleet_take_ready(fleet_t *f, fleet_worker_t **out, size_t max) {
    size_t k = 0, start = f->rr;
    for (size_t j = 0; j < f->n && k < max; j++) {
        size_t i = (start + j) % f->n;
        if (f->w[i].ready && f->w[i].job_id < 0) {
            out[k++] = &f->w[i];
            f->rr = i + 1;
        }
    }
    return k;
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
    fleet_mark_ready(fleet_find(f, "a", 1));
    fleet_mark_ready(fleet_find(f, "bb", 2));
    fleet_worker_t *r1 = fleet_next_ready(f), *r2 = fleet_next_ready(f), *all[4];
    ok &= r1 && r2 && r1 != r2; /* round robin */
    ok &= fleet_take_ready(f, all, 4) == 2 && all[0] != all[1] && fleet_take_ready(f, all, 1) == 1;
    fleet_mark_busy(fleet_find(f, "a", 1), 7, 9, 0, 0, 0);
    ok &= fleet_holder(f, 7) == fleet_find(f, "a", 1) && fleet_n_busy(f) == 1 && fleet_take_ready(f, all, 4) == 1;
    fleet_mark_idle(fleet_find(f, "a", 1));
    ok &= fleet_n_busy(f) == 0 && fleet_find(f, "a", 1)->ready == 0; /* it asks again with READY */
    fleet_mark_busy(fleet_find(f, "a", 1), 7, 9, 0, 0, 0);
    fleet_remove(f, fleet_find(f, "a", 1));
    ok &= fleet_size(f) == 1 && !fleet_holder(f, 7);
    /* The identity index through growth and removals (backward shifts). */
    for (int i = 0; i < 500; i++) {
        char id[16];
        int n = snprintf(id, sizeof id, "id%d", i);
        ok &= fleet_add(f, id, (size_t)n, id, 0) != NULL;
    }
    for (int i = 0; i < 500; i += 3) {
        char id[16];
        int n = snprintf(id, sizeof id, "id%d", i);
        fleet_worker_t *x = fleet_find(f, id, (size_t)n);
        ok &= x && !strcmp(x->name, id);
        if (x) fleet_remove(f, x);
    }
    for (int i = 0; i < 500; i++) {
        char id[16];
        int n = snprintf(id, sizeof id, "id%d", i);
        fleet_worker_t *x = fleet_find(f, id, (size_t)n);
        ok &= i % 3 ? x && !strcmp(x->name, id) : !x;
    }
    ok &= fleet_size(f) == 1 + 500 - 167;
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
