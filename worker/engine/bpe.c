/* bpe.c - see bpe.h.
 *
 * What it is: an open-addressing hash table from a pair of ids (one 64-bit
 * key) to its rank and result, and the merge loop of Hugging Face
 * `tokenizers` (models/bpe/word.rs, merge_all): a binary min-heap of
 * candidate merges ordered by (rank, position of the left symbol), a doubly
 * linked list of live symbols, and a staleness check when a candidate is
 * popped (the two symbols must still be adjacent and hold the ids they held
 * when it was queued; a symbol's id only changes by growing into a longer
 * piece, so equal ids mean nothing changed).  llama.cpp's llm_tokenizer_bpe
 * orders its queue the same way.  What it is not: a tokenizer. */
#include "bpe.h"

#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "selftest.h"

/* ---- merge table ------------------------------------------------------- */

#define EMPTY_KEY UINT64_MAX /* ids are >= 0, so no real key has all bits */

typedef struct {
    uint64_t key; /* (left << 32) | right, or EMPTY_KEY */
    uint32_t rank;
    int32_t result;
} slot_t;

struct bpe_merges {
    slot_t *slots;
    size_t mask; /* capacity - 1; capacity is a power of two */
    size_t count;
};

static uint64_t pair_key(int32_t left, int32_t right) {
    return ((uint64_t)(uint32_t)left << 32) | (uint32_t)right;
}

static size_t key_hash(uint64_t k) {
    k ^= k >> 33; /* murmur3 finaliser */
    k *= 0xff51afd7ed558ccdull;
    k ^= k >> 33;
    k *= 0xc4ceb9fe1a85ec53ull;
    k ^= k >> 33;
    return (size_t)k;
}

static slot_t *slots_alloc(size_t cap) {
    slot_t *s = malloc(cap * sizeof *s);
    if (!s) return NULL;
    for (size_t i = 0; i < cap; i++) s[i].key = EMPTY_KEY;
    return s;
}

bpe_merges_t *bpe_merges_new(size_t n) {
    bpe_merges_t *self = calloc(1, sizeof *self);
    size_t cap = 64;
    if (!self) goto error;
    while (cap / 2 < n && cap < SIZE_MAX / (4 * sizeof(slot_t))) cap *= 2;
    self->slots = slots_alloc(cap);
    if (!self->slots) goto error;
    self->mask = cap - 1;
    return self;

error:
    bpe_merges_destroy(&self);
    return NULL;
}

void bpe_merges_destroy(bpe_merges_t **self_p) {
    if (!self_p || !*self_p) return;
    free((*self_p)->slots);
    free(*self_p);
    *self_p = NULL;
}

size_t bpe_merges_count(const bpe_merges_t *self) { return self->count; }

/* The slot holding key, or the empty slot where it would go. */
static slot_t *slot_for(slot_t *slots, size_t mask, uint64_t key) {
    size_t i = key_hash(key) & mask;
    while (slots[i].key != EMPTY_KEY && slots[i].key != key) i = (i + 1) & mask;
    return &slots[i];
}

static int grow(bpe_merges_t *self) {
    size_t cap = (self->mask + 1) * 2;
    if (cap > SIZE_MAX / (2 * sizeof(slot_t))) return -1;
    slot_t *s = slots_alloc(cap);
    if (!s) return -1;
    for (size_t i = 0; i <= self->mask; i++)
        if (self->slots[i].key != EMPTY_KEY)
            *slot_for(s, cap - 1, self->slots[i].key) = self->slots[i];
    free(self->slots);
    self->slots = s;
    self->mask = cap - 1;
    return 0;
}

int bpe_merges_add(bpe_merges_t *self, int32_t left, int32_t right,
                   int32_t result, uint32_t rank) {
    if (left < 0 || right < 0 || result < 0) return -1;
    if (2 * (self->count + 1) > self->mask + 1 && grow(self) < 0) return -1;
    uint64_t key = pair_key(left, right);
    slot_t *s = slot_for(self->slots, self->mask, key);
    if (s->key == key) return 1;
    *s = (slot_t){key, rank, result};
    self->count++;
    return 0;
}

int bpe_merges_find(const bpe_merges_t *self, int32_t left, int32_t right,
                    uint32_t *rank, int32_t *result) {
    if (left < 0 || right < 0) return 0;
    const slot_t *s = slot_for(self->slots, self->mask, pair_key(left, right));
    if (s->key == EMPTY_KEY) return 0;
    if (rank) *rank = s->rank;
    if (result) *result = s->result;
    return 1;
}

/* ---- merging ----------------------------------------------------------- */

typedef struct {
    uint32_t rank;
    int32_t pos;          /* the left symbol */
    int32_t left, right;  /* the ids the pair held when queued */
    int32_t result;
} cand_t;

static int cand_before(const cand_t *a, const cand_t *b) {
    if (a->rank != b->rank) return a->rank < b->rank;
    return a->pos < b->pos;
}

static void heap_push(cand_t *h, size_t *n, cand_t c) {
    size_t i = (*n)++;
    while (i > 0) {
        size_t parent = (i - 1) / 2;
        if (!cand_before(&c, &h[parent])) break;
        h[i] = h[parent];
        i = parent;
    }
    h[i] = c;
}

static cand_t heap_pop(cand_t *h, size_t *n) {
    cand_t top = h[0], last = h[--*n];
    size_t i = 0, m = *n;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= m) break;
        if (c + 1 < m && cand_before(&h[c + 1], &h[c])) c++;
        if (!cand_before(&h[c], &last)) break;
        h[i] = h[c];
        i = c;
    }
    if (m > 0) h[i] = last;
    return top;
}

void bpe_work_free(bpe_work_t *w) {
    if (!w) return;
    free(w->prev);
    free(w->next);
    free(w->heap);
    memset(w, 0, sizeof *w);
}

/* Makes room for n symbols and 3n candidates (n - 1 initial pairs, then at
 * most two new ones per merge, and at most n - 1 merges). */
static int work_reserve(bpe_work_t *w, size_t n) {
    if (n > (size_t)INT32_MAX || n > SIZE_MAX / (3 * sizeof(cand_t))) return -1;
    if (n > w->cap) {
        int32_t *p = realloc(w->prev, n * sizeof *p);
        if (!p) return -1;
        w->prev = p;
        p = realloc(w->next, n * sizeof *p);
        if (!p) return -1;
        w->next = p;
        w->cap = n;
    }
    if (3 * n > w->heap_cap) {
        cand_t *h = realloc(w->heap, 3 * n * sizeof *h);
        if (!h) return -1;
        w->heap = h;
        w->heap_cap = 3 * n;
    }
    return 0;
}

static void try_pair(const bpe_merges_t *m, const int32_t *syms, cand_t *h,
                     size_t *hn, int32_t a, int32_t b) {
    uint32_t rank;
    int32_t result;
    if (a < 0 || b < 0) return;
    if (bpe_merges_find(m, syms[a], syms[b], &rank, &result))
        heap_push(h, hn, (cand_t){rank, a, syms[a], syms[b], result});
}

long bpe_merge(const bpe_merges_t *m, int32_t *syms, size_t n, bpe_work_t *w) {
    if (n < 2) return (long)n;
    if (work_reserve(w, n) < 0) return -1;
    int32_t *prev = w->prev, *next = w->next;
    cand_t *h = w->heap;
    size_t hn = 0;
    for (size_t i = 0; i < n; i++) {
        prev[i] = (int32_t)i - 1;
        next[i] = i + 1 < n ? (int32_t)i + 1 : -1;
    }
    for (size_t i = 0; i + 1 < n; i++)
        try_pair(m, syms, h, &hn, (int32_t)i, (int32_t)i + 1);

    while (hn > 0) {
        cand_t c = heap_pop(h, &hn);
        int32_t r = next[c.pos];
        if (syms[c.pos] != c.left || r < 0 || syms[r] != c.right)
            continue; /* stale: one side merged since it was queued */
        syms[c.pos] = c.result;
        syms[r] = -1;
        next[c.pos] = next[r];
        if (next[r] >= 0) prev[next[r]] = c.pos;
        try_pair(m, syms, h, &hn, prev[c.pos], c.pos);
        try_pair(m, syms, h, &hn, c.pos, next[c.pos]);
    }

    /* Symbol 0 is never merged away: merges fold the right one into the
     * left one. */
    size_t k = 0;
    for (int32_t i = 0; i >= 0; i = next[i]) syms[k++] = syms[i];
    return (long)k;
}

/* ---- the byte-level alphabet -------------------------------------------- */

/* GPT-2's bytes_to_unicode(): the bytes '!'..'~', 0xA1..0xAC and 0xAE..0xFF
 * stand for themselves; the other 68 (0x00..0x20, 0x7F..0xA0, 0xAD) for
 * U+0100 + their index among those, in byte order. */
static uint32_t byte_cp(unsigned char b) {
    if (b <= 0x20) return 0x100 + b;
    if (b >= 0x7F && b <= 0xA0) return 0x100 + 33 + (b - 0x7F);
    if (b == 0xAD) return 0x100 + 67;
    return b;
}

size_t bpe_byte_char(unsigned char b, char out[2]) {
    uint32_t cp = byte_cp(b);
    if (cp < 0x80) {
        out[0] = (char)cp;
        return 1;
    }
    out[0] = (char)(0xC0 | (cp >> 6));
    out[1] = (char)(0x80 | (cp & 0x3F));
    return 2;
}

int bpe_char_byte(uint32_t cp) {
    if (cp < 0x100) return byte_cp((unsigned char)cp) == cp ? (int)cp : -1;
    if (cp <= 0x100 + 32) return (int)(cp - 0x100);
    if (cp <= 0x100 + 66) return (int)(cp - 0x100 - 33 + 0x7F);
    if (cp == 0x100 + 67) return 0xAD;
    return -1;
}

/* ---- self-test ---------------------------------------------------------- */


int bpe_selftest(void) {
    int failures = 0;
    /* The alphabet is a bijection onto 256 characters below U+0144. */
    int seen[0x144] = {0};
    for (int b = 0; b < 256; b++) {
        char u[2];
        size_t n = bpe_byte_char((unsigned char)b, u);
        uint32_t cp = n == 1 ? (unsigned char)u[0]
                             : (((unsigned char)u[0] & 0x1Fu) << 6) |
                                   ((unsigned char)u[1] & 0x3Fu);
        ST_CHECK(cp < 0x144 && !seen[cp], "byte %d -> U+%04X", b, (unsigned)cp);
        if (cp < 0x144) seen[cp] = 1;
        ST_CHECK(bpe_char_byte(cp) == b, "U+%04X -> %d", (unsigned)cp,
                 bpe_char_byte(cp));
    }
    ST_CHECK(byte_cp(' ') == 0x120 && byte_cp('\n') == 0x10A &&
                 byte_cp('a') == 'a' && byte_cp(0xAD) == 0x143,
             "known characters");
    ST_CHECK(bpe_char_byte(0x144) == -1 && bpe_char_byte(0x20) == -1 &&
                 bpe_char_byte(0xAD) == -1,
             "characters outside the alphabet");

    /* Ids: a=0 b=1 c=2, ab=3 bc=4 abc=5 aa=6, aaaa=7 */
    bpe_merges_t *m = bpe_merges_new(0);
    ST_CHECK(m != NULL, "bpe_merges_new");
    if (!m) return failures;
    ST_CHECK(bpe_merges_add(m, 1, 2, 4, 0) == 0, "add bc");
    ST_CHECK(bpe_merges_add(m, 0, 1, 3, 1) == 0, "add ab");
    ST_CHECK(bpe_merges_add(m, 0, 4, 5, 2) == 0, "add a+bc");
    ST_CHECK(bpe_merges_add(m, 0, 0, 6, 3) == 0, "add aa");
    ST_CHECK(bpe_merges_add(m, 6, 6, 7, 4) == 0, "add aa+aa");
    ST_CHECK(bpe_merges_add(m, 1, 2, 4, 9) == 1, "duplicate kept first");
    for (int i = 0; i < 1000; i++) /* forces the table to grow */
        bpe_merges_add(m, 100 + i, 100 + i, 5000 + i, 100 + (uint32_t)i);
    uint32_t rank = 99;
    int32_t res = -1;
    ST_CHECK(bpe_merges_find(m, 1, 2, &rank, &res) == 1 && rank == 0 &&
                 res == 4,
             "find bc: rank %u result %d", rank, res);
    ST_CHECK(bpe_merges_find(m, 2, 1, NULL, NULL) == 0, "cb is no merge");
    ST_CHECK(bpe_merges_find(m, 600, 600, &rank, &res) == 1 && rank == 600,
             "find after growth");
    ST_CHECK(bpe_merges_count(m) == 1005, "count %zu", bpe_merges_count(m));

    bpe_work_t w = {0};
    struct {
        int32_t in[8];
        size_t n;
        int32_t want[8];
        long n_want;
    } cases[] = {
        {{0, 1, 2}, 3, {5}, 1},          /* bc (rank 0) first, then a+bc */
        {{0, 1, 0, 1}, 4, {3, 3}, 2},    /* ab twice */
        {{0, 0, 0}, 3, {6, 0}, 2},       /* ties: leftmost */
        {{0, 0, 0, 0}, 4, {7}, 1},       /* aa aa -> aaaa */
        {{0, 0, 0, 0, 0}, 5, {7, 0}, 2},
        {{2, 1, 0}, 3, {2, 1, 0}, 3},    /* nothing merges */
        {{1}, 1, {1}, 1},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        long k = bpe_merge(m, cases[i].in, cases[i].n, &w);
        int same = k == cases[i].n_want;
        for (long j = 0; same && j < k; j++)
            same = cases[i].in[j] == cases[i].want[j];
        ST_CHECK(same, "merge case %zu: %ld symbols", i, k);
    }
    bpe_work_free(&w);
    bpe_merges_destroy(&m);
    ST_CHECK(m == NULL, "destroy clears");
    return failures;
}
