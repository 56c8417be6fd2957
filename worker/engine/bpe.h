/* bpe.h - BPE merges by rank, and the GPT-2 byte <-> character mapping.
 *
 * What it is: a table of merges (a pair of token ids -> the merge's rank and
 * the id it makes), the rank-ordered merging of a sequence of token ids as
 * Hugging Face `tokenizers` does it (the adjacent pair with the lowest rank
 * merges first, ties go to the leftmost pair; O(n log n)), and the GPT-2
 * mapping of the 256 byte values to printable characters that byte-level
 * vocabularies are written in.  What it is not: a tokenizer (tokenizer.c owns
 * the vocabulary, splits text into words and decides what the initial
 * symbols are), or a trainer.
 *
 * A bpe_merges_t is immutable once built, so threads may share one; a
 * bpe_work_t is scratch memory for one thread at a time. */
#ifndef TS_BPE_H
#define TS_BPE_H

#include <stddef.h>
#include <stdint.h>

typedef struct bpe_merges bpe_merges_t;

/* An empty table with room for about n merges (it grows as needed).
 * Returns NULL when memory runs out. */
bpe_merges_t *bpe_merges_new(size_t n);

/* NULL-safe; clears *self_p. */
void bpe_merges_destroy(bpe_merges_t **self_p);

/* Adds the merge left + right -> result with the given rank (lower merges
 * first).  Ids must be >= 0.  Returns 0 when added, 1 when the pair was
 * already there (the earlier entry is kept, as llama.cpp keeps the first
 * rank of a repeated merge), -1 when memory runs out or an id is
 * negative (nothing added). */
int bpe_merges_add(bpe_merges_t *self, int32_t left, int32_t right,
                   int32_t result, uint32_t rank);

/* Number of distinct pairs in the table. */
size_t bpe_merges_count(const bpe_merges_t *self);

/* Looks the pair up: returns 1 and sets *rank and *result when it is a
 * merge, else 0 (outputs untouched).  Either output may be NULL. */
int bpe_merges_find(const bpe_merges_t *self, int32_t left, int32_t right,
                    uint32_t *rank, int32_t *result);

/* Scratch space for bpe_merge, reused across calls; zero-initialise it,
 * release with bpe_work_free. */
typedef struct {
    int32_t *prev, *next;
    void *heap;
    size_t cap, heap_cap;
} bpe_work_t;

void bpe_work_free(bpe_work_t *w);

/* Merges syms[0..n) in place, by rank, until no adjacent pair is a merge;
 * the ids left are packed at the front of syms.  Returns their count, or -1
 * when memory runs out (syms is then unchanged). */
long bpe_merge(const bpe_merges_t *m, int32_t *syms, size_t n, bpe_work_t *w);

/* The GPT-2 byte-level alphabet: each byte value stands for one printable
 * Unicode character (printable Latin-1 bytes for themselves, the others for
 * U+0100 and up, e.g. ' ' -> U+0120 'Ġ', '\n' -> U+010A 'Ċ').  Writes the
 * UTF-8 of byte b's character into out (2 bytes suffice) and returns its
 * length (1 or 2). */
size_t bpe_byte_char(unsigned char b, char out[2]);

/* The byte that code point cp stands for, or -1 when cp is not one of the
 * 256 characters of the alphabet. */
int bpe_char_byte(uint32_t cp);

/* Runs the module's self-test; returns 0 on success, else the number of
 * failed checks (each logged). */
int bpe_selftest(void);

#endif
