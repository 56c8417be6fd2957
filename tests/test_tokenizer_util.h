/* test_tokenizer_util.h - what the tokenizer tests share: printing bytes and
 * ids, opening a GGUF's tokenizer, round trips, and llama.cpp's tokenizer
 * conformance vectors (NAME.gguf.inp / NAME.gguf.out, see
 * ../shared/testdata/README.md).
 *
 * Header-only (static inline functions), like testutil.h, for the
 * test_tokenizer* executables. */
#ifndef TS_TEST_TOKENIZER_UTIL_H
#define TS_TEST_TOKENIZER_UTIL_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gguf.h"
#include "log.h"
#include "testutil.h"
#include "tokenizer.h"

static inline void tt_print_bytes(FILE *f, const char *s, size_t n) {
    fputc('"', f);
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '"' || c == '\\') fprintf(f, "\\%c", c);
        else if (c >= 0x20 && c < 0x7f) fputc(c, f);
        else fprintf(f, "\\x%02x", c);
    }
    fputc('"', f);
}

static inline void tt_print_ids(FILE *f, const char *label,
                                const int32_t *ids, size_t n) {
    fprintf(f, "  %s (%zu):", label, n);
    for (size_t i = 0; i < n; i++) fprintf(f, " %ld", (long)ids[i]);
    fputc('\n', f);
}

/* The tokenizer of a GGUF file (the file is closed again); exits on error. */
static inline tokenizer_t *tt_open_gguf(const char *path) {
    char err[LOG_ERRLEN];
    gguf_t *g = gguf_open(path, err, sizeof err);
    TU_REQUIRE(g != NULL, "gguf_open: %s", err);
    tokenizer_t *t = tokenizer_new_gguf(g, err, sizeof err);
    TU_REQUIRE(t != NULL, "tokenizer_new_gguf: %s", err);
    gguf_destroy(&g);
    return t;
}

/* Encodes s (no BOS unless bos); exits when encoding fails. */
static inline long tt_encode(const tokenizer_t *t, const char *s, size_t n,
                             int bos, int32_t **ids) {
    char err[LOG_ERRLEN];
    long k = tokenizer_encode(t, s, n, bos, ids, err, sizeof err);
    TU_REQUIRE(k >= 0 && *ids != NULL, "encode failed: %s", err);
    return k;
}

/* Encodes s without BOS, decodes with the leading space stripped, and
 * checks that the bytes come back.  Returns 1 when they do. */
static inline int tt_round_trips(const tokenizer_t *t, const char *s,
                                 size_t n) {
    int32_t *ids = NULL;
    long k = tt_encode(t, s, n, 0, &ids);
    size_t dlen = 0;
    char *dec = tokenizer_decode(t, ids, (size_t)k, 1, &dlen);
    TU_REQUIRE(dec != NULL, "decode failed");
    int ok = dlen == n && memcmp(dec, s, n) == 0 && dec[dlen] == '\0';
    if (!ok) {
        fprintf(stderr, "round trip failed for ");
        tt_print_bytes(stderr, s, n);
        fprintf(stderr, "\n  decoded: ");
        tt_print_bytes(stderr, dec, dlen);
        fputc('\n', stderr);
        tt_print_ids(stderr, "ids", ids, (size_t)k);
    }
    free(dec);
    free(ids);
    return ok;
}

/* Whether encoding s without BOS gives exactly want[0..n_want); prints the
 * difference when not. */
static inline int tt_encodes_to(const tokenizer_t *t, const char *s,
                                size_t n, const int32_t *want,
                                size_t n_want) {
    int32_t *ids = NULL;
    long k = tt_encode(t, s, n, 0, &ids);
    int same = (size_t)k == n_want;
    for (size_t i = 0; same && i < n_want; i++) same = ids[i] == want[i];
    if (!same) {
        fprintf(stderr, "  input: ");
        tt_print_bytes(stderr, s, n);
        fputc('\n', stderr);
        tt_print_ids(stderr, "want", want, n_want);
        tt_print_ids(stderr, "got ", ids, (size_t)k);
    }
    free(ids);
    return same;
}

/* One conformance case: the input (into the .inp buffer) and its ids. */
typedef struct {
    const char *text;
    size_t len;
    int32_t *ids;
    size_t n_ids;
} tt_case_t;

typedef struct {
    char *inp, *out;
    tt_case_t *cases;
    size_t n;
} tt_vectors_t;

/* Reads $TOKSHIFT_TESTDATA/REL.inp and REL.out (rel names the .gguf);
 * exits 77 when TOKSHIFT_TESTDATA is unset, 1 when a file is missing or
 * malformed. */
static inline void tt_vectors_load(tt_vectors_t *v, const char *rel) {
    static const char SEP[] = "\n__ggml_vocab_test__\n";
    const size_t sep_len = sizeof SEP - 1;
    char path[4096];
    size_t inp_len = 0, out_len = 0;
    memset(v, 0, sizeof *v);
    snprintf(path, sizeof path, "%s.inp", rel);
    v->inp = tu_read_file(tu_testdata(path), &inp_len);
    snprintf(path, sizeof path, "%s.out", rel);
    v->out = tu_read_file(tu_testdata(path), &out_len);

    size_t cap = 0;
    char *p = v->inp, *end = v->inp + inp_len;
    char *line = v->out, *out_end = v->out + out_len;
    while (p < end) {
        char *s = memmem(p, (size_t)(end - p), SEP, sep_len);
        TU_REQUIRE(s != NULL, "%s.inp: case %zu has no separator after it",
                   rel, v->n);
        TU_REQUIRE(line < out_end, "%s.out has fewer lines than cases", rel);
        char *eol = memchr(line, '\n', (size_t)(out_end - line));
        if (!eol) eol = out_end;
        if (v->n == cap) {
            cap = cap ? 2 * cap : 64;
            v->cases = realloc(v->cases, cap * sizeof *v->cases);
            TU_REQUIRE(v->cases != NULL, "out of memory");
        }
        tt_case_t *c = &v->cases[v->n++];
        *c = (tt_case_t){p, (size_t)(s - p), NULL, 0};
        c->ids = malloc((size_t)(eol - line + 1) * sizeof *c->ids);
        TU_REQUIRE(c->ids != NULL, "out of memory");
        for (char *q = line; q < eol;) {
            char *next;
            long id = strtol(q, &next, 10);
            if (next == q) break;
            c->ids[c->n_ids++] = (int32_t)id;
            q = next;
        }
        p = s + sep_len;
        line = eol + 1;
    }
    TU_REQUIRE(line >= out_end, "%s.out has more lines than cases", rel);
    TU_REQUIRE(v->n >= 30, "%s: only %zu cases", rel, v->n);
}

static inline void tt_vectors_free(tt_vectors_t *v) {
    for (size_t i = 0; i < v->n; i++) free(v->cases[i].ids);
    free(v->cases);
    free(v->inp);
    free(v->out);
    memset(v, 0, sizeof *v);
}

/* Encodes every case without BOS and compares the ids; decodes them back
 * (dropping the tokenizer's own space prefix) and compares with the input.
 * Counts failures with TU_CHECK; returns the number of cases that pass
 * both. */
static inline size_t tt_vectors_check(const tokenizer_t *t,
                                      const tt_vectors_t *v,
                                      const char *label) {
    size_t n_pass = 0;
    for (size_t i = 0; i < v->n; i++) {
        const tt_case_t *c = &v->cases[i];
        int same = tt_encodes_to(t, c->text, c->len, c->ids, c->n_ids);
        TU_CHECK(same, "%s: case %zu encodes differently", label, i);
        int rt = tt_round_trips(t, c->text, c->len);
        TU_CHECK(rt, "%s: case %zu does not round-trip", label, i);
        n_pass += same && rt;
    }
    fprintf(stderr, "%s: %zu/%zu cases pass\n", label, n_pass, v->n);
    return n_pass;
}

#endif
