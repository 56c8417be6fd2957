/* test_tokenizer.c - the SentencePiece tokenizer against references it did not
 * write.
 *
 * What it checks: llama.cpp's conformance vectors for the Llama SPM vocabulary
 * (ids from the Hugging Face reference, exactly, and the byte-exact round
 * trip), ids (from llama.cpp) and round trips on the real stories260K model's
 * vocabulary, invalid UTF-8 and NUL bytes through byte fallback, a
 * deterministic fuzz loop, long documents, how GGUF files without a usable
 * tokenizer are refused, and the module's self-test.  What it does not:
 * byte-level BPE (gpt2) vocabularies. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "gguf.h"
#include "log.h"
#include "test_tokenizer_util.h"
#include "testutil.h"
#include "tokenizer.h"

/* ---- (1) conformance vectors ----------------------------------------- */

static const char SEP[] = "\n__ggml_vocab_test__\n";

static void test_vocab_vectors(void) {
    char path[4096];
    snprintf(path, sizeof path, "%s",
             tu_testdata("vocab/ggml-vocab-llama-spm.gguf"));
    tokenizer_t *t = tt_open_gguf(path);
    TU_CHECK(tokenizer_n_vocab(t) == 32000, "n_vocab %ld",
             (long)tokenizer_n_vocab(t));
    TU_CHECK(tokenizer_bos(t) == 1 && tokenizer_eos(t) == 2 &&
                 tokenizer_adds_bos(t),
             "special ids");

    size_t inp_len = 0, out_len = 0;
    char *inp = tu_read_file(
        tu_testdata("vocab/ggml-vocab-llama-spm.gguf.inp"), &inp_len);
    char *out = tu_read_file(
        tu_testdata("vocab/ggml-vocab-llama-spm.gguf.out"), &out_len);

    size_t n_cases = 0, n_pass = 0;
    const size_t sep_len = sizeof SEP - 1;
    char *p = inp, *end = inp + inp_len;
    char *line = out, *out_end = out + out_len;
    while (p < end) {
        char *s = memmem(p, (size_t)(end - p), SEP, sep_len);
        TU_REQUIRE(s != NULL, ".inp: case %zu has no separator after it",
                   n_cases);
        size_t n = (size_t)(s - p);

        TU_REQUIRE(line < out_end, ".out has fewer lines than .inp has cases");
        char *eol = memchr(line, '\n', (size_t)(out_end - line));
        if (!eol) eol = out_end;
        int32_t want[512];
        size_t n_want = 0;
        for (char *q = line; q < eol;) {
            char *next;
            long v = strtol(q, &next, 10);
            if (next == q) break;
            TU_REQUIRE(n_want < sizeof want / sizeof want[0], "line too long");
            want[n_want++] = (int32_t)v;
            q = next;
        }

        int32_t *ids = NULL;
        long k = tt_encode(t, p, n, 0, &ids);
        int same = (size_t)k == n_want;
        for (size_t i = 0; same && i < n_want; i++) same = ids[i] == want[i];
        TU_CHECK(same, "case %zu encodes differently", n_cases);
        if (!same) {
            fprintf(stderr, "  input: ");
            tt_print_bytes(stderr, p, n);
            fputc('\n', stderr);
            tt_print_ids(stderr, "want", want, n_want);
            tt_print_ids(stderr, "got ", ids, (size_t)k);
        }

        /* The decoder keeps the dummy-prefix space unless told to drop it,
         * and dropping it gives the input back exactly: "" -> "", " " ->
         * "  " -> " ", "   Hello" -> "    Hello" -> "   Hello". */
        size_t dlen = 0;
        char *dec = tokenizer_decode(t, ids, (size_t)k, 0, &dlen);
        TU_REQUIRE(dec != NULL, "decode failed");
        size_t want_len = n ? n + 1 : 0;
        TU_CHECK(dlen == want_len && (n == 0 || (dec[0] == ' ' &&
                                                 memcmp(dec + 1, p, n) == 0)),
                 "case %zu: decode without stripping is not ' ' + input",
                 n_cases);
        free(dec);
        int rt = tt_round_trips(t, p, n);
        TU_CHECK(rt, "case %zu does not round-trip", n_cases);
        n_pass += same && rt;
        free(ids);

        n_cases++;
        p = s + sep_len;
        line = eol + 1;
    }
    TU_CHECK(line >= out_end, ".out has more lines than .inp has cases");
    TU_CHECK(n_cases >= 30, "only %zu cases parsed", n_cases);
    fprintf(stderr, "llama-spm vectors: %zu/%zu cases pass\n", n_pass,
            n_cases);

    /* BOS comes first when asked; a literal U+2581 is the one lossy input
     * (SentencePiece writes the space with it). */
    int32_t *ids = NULL;
    long k = tt_encode(t, "Hello world", 11, 1, &ids);
    TU_CHECK(k == 3 && ids[0] == 1 && ids[1] == 15043 && ids[2] == 3186,
             "'Hello world' with BOS");
    free(ids);
    k = tt_encode(t, "a\xe2\x96\x81" "b", 5, 0, &ids);
    size_t dlen = 0;
    char *dec = tokenizer_decode(t, ids, (size_t)k, 1, &dlen);
    TU_CHECK(dec && strcmp(dec, "a b") == 0, "U+2581 decodes as a space");
    free(dec);
    free(ids);

    /* (4) Deterministic fuzz: random bytes, biased towards the interesting
     * ones (spaces, UTF-8 lead and continuation bytes, NUL, ASCII). */
    static const unsigned char pool[] = {' ',  ' ',  'a',  'e',  't',  '\n',
                                         0x00, 0x80, 0xbf, 0xc0, 0xc3, 0xe0,
                                         0xe2, 0x96, 0x81, 0xed, 0xf0, 0xf4,
                                         0x9f, 0xff, 0xa9, 'H',  '.',  '\t'};
    uint64_t x = 0x9e3779b97f4a7c15ull;
    int fuzz_fail = 0, n_fuzz = 0;
    for (int iter = 0; iter < 4000 && fuzz_fail < 5; iter++) {
        char buf[64];
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        size_t n = (size_t)(x % 65);
        for (size_t i = 0; i < n; i++) {
            x ^= x << 13, x ^= x >> 7, x ^= x << 17;
            buf[i] = (x >> 32) & 1 ? (char)pool[(x >> 40) % sizeof pool]
                                   : (char)(x >> 48);
        }
        /* A literal U+2581 does not survive (see above). */
        if (n >= 3 && memmem(buf, n, "\xe2\x96\x81", 3)) continue;
        n_fuzz++;
        if (!tt_round_trips(t, buf, n)) fuzz_fail++;
    }
    TU_CHECK(fuzz_fail == 0, "%d fuzz inputs do not round-trip", fuzz_fail);
    fprintf(stderr, "fuzz: %d random byte strings round-trip\n", n_fuzz);

    /* Long documents stay fast (O(n log n)): the vectors repeated to ~1 MB,
     * then 200 KB of one letter and of spaces, the worst cases for a
     * quadratic merge loop. */
    size_t big_n = 0, cap = (1u << 20) + inp_len;
    char *big = malloc(cap);
    TU_REQUIRE(big != NULL, "out of memory");
    while (big_n + inp_len <= cap) {
        memcpy(big + big_n, inp, inp_len);
        big_n += inp_len;
    }
    clock_t c0 = clock();
    TU_CHECK(tt_round_trips(t, big, big_n), "1 MB document");
    memset(big, 'a', 200000);
    TU_CHECK(tt_round_trips(t, big, 200000), "200 KB of 'a'");
    memset(big, ' ', 200000);
    TU_CHECK(tt_round_trips(t, big, 200000), "200 KB of spaces");
    double secs = (double)(clock() - c0) / CLOCKS_PER_SEC;
    fprintf(stderr, "long documents: %.2f s for %.1f MB\n", secs,
            (double)(big_n + 400000) / 1e6);
    TU_CHECK(secs < 30, "long documents took %.1f s", secs);
    free(big);

    free(inp);
    free(out);
    tokenizer_destroy(&t);
    TU_CHECK(t == NULL, "destroy clears the pointer");
}

/* ---- (2) stories260K ------------------------------------------------- */

static void test_stories(void) {
    tokenizer_t *t = tt_open_gguf(tu_testdata("models/stories260K.gguf"));
    TU_CHECK(tokenizer_n_vocab(t) == 512, "n_vocab %ld",
             (long)tokenizer_n_vocab(t));
    TU_CHECK(tokenizer_bos(t) == 1 && tokenizer_eos(t) == 2, "special ids");
    TU_CHECK(strcmp(tokenizer_piece(t, 0), "<unk>") == 0 &&
                 strcmp(tokenizer_piece(t, 3), "<0x00>") == 0 &&
                 tokenizer_piece(t, 512) == NULL,
             "pieces");
    static const char *texts[] = {
        "Once upon a time, there was a little girl named Lily.",
        "She loved to play outside in the sunshine.\n\n\"Look!\" said Tom.",
        "  two leading spaces, a tab\there, and trailing ones  ",
        "Zoë's café: 3 €, naïve 日本語 🙂",
        "",
        " ",
    };
    for (size_t i = 0; i < sizeof texts / sizeof texts[0]; i++) {
        TU_CHECK(tt_round_trips(t, texts[i], strlen(texts[i])), "text %zu", i);
        int32_t *ids = NULL;
        long k = tt_encode(t, texts[i], strlen(texts[i]), 1, &ids);
        TU_CHECK(k >= 1 && ids[0] == 1, "BOS first");
        for (long j = 0; j < k; j++)
            TU_CHECK(ids[j] >= 0 && ids[j] < 512, "id %ld", (long)ids[j]);
        free(ids);
    }
    /* Ids that llama.cpp (node-llama-cpp 3.21.1's build, tokenize without
     * special tokens) gives for this vocabulary. */
    static const struct {
        const char *s;
        int32_t ids[40];
        size_t n;
    } known[] = {
        {"Once upon a time, there was a little girl named Lily.",
         {403, 407, 261, 378, 432, 383, 286, 261, 376, 298, 315, 421, 395, 317,
          426},
         15},
        {"Hello world", {346, 306, 414, 263, 304, 341}, 6},
        {"Zo\xc3\xab's caf\xc3\xa9: 3 \xe2\x82\xac, na\xc3\xafve "
         "\xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e \xf0\x9f\x99\x82",
         {410, 469, 414, 198, 174, 439, 419, 280, 412, 431, 485, 467, 410,
          472, 410, 503, 432, 297, 412, 198, 178, 360, 410, 233, 154, 168,
          233, 159, 175, 235, 173, 161, 410, 243, 162, 156, 133},
         37},
    };
    for (size_t i = 0; i < sizeof known / sizeof known[0]; i++) {
        int32_t *ids = NULL;
        long k = tt_encode(t, known[i].s, strlen(known[i].s), 0, &ids);
        int same = (size_t)k == known[i].n;
        for (size_t j = 0; same && j < known[i].n; j++)
            same = ids[j] == known[i].ids[j];
        TU_CHECK(same, "stories260K: known ids of text %zu", i);
        if (!same) {
            tt_print_ids(stderr, "want", known[i].ids, known[i].n);
            tt_print_ids(stderr, "got ", ids, (size_t)k);
        }
        free(ids);
    }

    /* The reference greedy text re-encodes and decodes to itself. */
    size_t n = 0;
    char *ref =
        tu_read_file(tu_testdata("models/stories260K.greedy200.txt"), &n);
    TU_CHECK(tt_round_trips(t, ref, n), "greedy200 text");
    free(ref);

    /* Per-token bytes: the dummy prefix piece is a space, BOS is nothing. */
    char buf[64];
    TU_CHECK(tokenizer_max_piece_bytes(t) <= sizeof buf, "max piece %zu",
             tokenizer_max_piece_bytes(t));
    TU_CHECK(tokenizer_token_bytes(t, 1, buf, sizeof buf) == 0, "BOS bytes");
    TU_CHECK(tokenizer_token_bytes(t, 3 + '\n', buf, sizeof buf) == 1 &&
                 buf[0] == '\n',
             "<0x0A> bytes");
    for (int32_t id = 0; id < tokenizer_n_vocab(t); id++) {
        long k = tokenizer_token_bytes(t, id, buf, sizeof buf);
        TU_CHECK(k >= 0 && (size_t)k <= tokenizer_max_piece_bytes(t),
                 "token %ld: %ld bytes", (long)id, k);
        if (k > 0 && memchr(buf, 0xe2, (size_t)k))
            TU_CHECK(!memmem(buf, (size_t)k, "\xe2\x96\x81", 3),
                     "token %ld keeps a U+2581", (long)id);
    }
    tokenizer_destroy(&t);
}

/* ---- (3) invalid UTF-8 ----------------------------------------------- */

static void test_invalid_utf8(void) {
    char path[4096];
    snprintf(path, sizeof path, "%s",
             tu_testdata("vocab/ggml-vocab-llama-spm.gguf"));
    tokenizer_t *t = tt_open_gguf(path);
    static const struct {
        const char *s;
        size_t n;
    } cases[] = {
        {"\x80", 1},                         /* lone continuation */
        {"a\xbf\xbf b", 5},                  /* continuations in text */
        {"\xc3", 1},                         /* truncated 2-byte */
        {"caf\xc3", 4},                      /* truncated at the end */
        {"\xe2\x82", 2},                     /* truncated 3-byte */
        {"\xe2\x82 x", 4},                   /* truncated, then a space */
        {"\xf0\x9f\x99", 3},                 /* truncated 4-byte */
        {"\xf0\x9f\x99" "a", 4},             /* truncated, then ASCII */
        {"\xff", 1},
        {"\xfe\xff hello", 8},
        {"\xc0\xaf", 2},                     /* overlong '/' */
        {"\xe0\x80\xaf", 3},                 /* overlong '/' */
        {"\xf0\x80\x80\xaf", 4},             /* overlong '/' */
        {"\xc1\xbf", 2},                     /* overlong */
        {"\xed\xa0\x80", 3},                 /* UTF-16 surrogate */
        {"\xf4\x90\x80\x80", 4},             /* above U+10FFFF */
        {"\xf8\x88\x80\x80\x80", 5},         /* 5-byte form */
        {"a\0b", 3},                         /* NUL in the middle */
        {"\0", 1},
        {" \0 \0 ", 5},
        {"Hello\xc3(world\xa9", 13},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        TU_CHECK(tt_round_trips(t, cases[i].s, cases[i].n), "invalid case %zu",
                 i);
    }
    /* Invalid bytes become byte tokens (<0xNN> is id 3 + NN here) while the
     * valid text around them still merges. */
    int32_t *ids = NULL;
    long k = tt_encode(t, "\xff" "Hello", 6, 0, &ids);
    TU_CHECK(k == 3 && ids[0] == 29871 && ids[1] == 3 + 0xff &&
                 ids[2] == 10994,
             "\\xff Hello");
    if (k != 3) tt_print_ids(stderr, "got", ids, (size_t)k);
    free(ids);
    tokenizer_destroy(&t);
}

/* ---- GGUF files the tokenizer refuses --------------------------------- */

typedef struct {
    unsigned char *b;
    size_t n, cap;
    uint64_t n_kv;
} gbuf_t;

static void gb_put(gbuf_t *g, const void *p, size_t n) {
    if (g->n + n > g->cap) {
        g->cap = (g->n + n) * 2 + 64;
        g->b = realloc(g->b, g->cap);
        TU_REQUIRE(g->b != NULL, "out of memory");
    }
    memcpy(g->b + g->n, p, n);
    g->n += n;
}
static void gb_u32(gbuf_t *g, uint32_t v) { gb_put(g, &v, 4); }
static void gb_u64(gbuf_t *g, uint64_t v) { gb_put(g, &v, 8); }
static void gb_str(gbuf_t *g, const char *s) {
    gb_u64(g, strlen(s));
    gb_put(g, s, strlen(s));
}
static void gb_kv_str(gbuf_t *g, const char *k, const char *v) {
    gb_str(g, k), gb_u32(g, GGUF_TYPE_STRING), gb_str(g, v), g->n_kv++;
}
static void gb_kv_u32(gbuf_t *g, const char *k, uint32_t v) {
    gb_str(g, k), gb_u32(g, GGUF_TYPE_UINT32), gb_u32(g, v), g->n_kv++;
}
static void gb_kv_tokens(gbuf_t *g, const char *const *toks, uint64_t n) {
    gb_str(g, "tokenizer.ggml.tokens"), gb_u32(g, GGUF_TYPE_ARRAY);
    gb_u32(g, GGUF_TYPE_STRING), gb_u64(g, n);
    for (uint64_t i = 0; i < n; i++) gb_str(g, toks[i]);
    g->n_kv++;
}
static void gb_kv_arr(gbuf_t *g, const char *k, gguf_type_t t, uint64_t n,
                      uint32_t v) {
    gb_str(g, k), gb_u32(g, GGUF_TYPE_ARRAY), gb_u32(g, t), gb_u64(g, n);
    for (uint64_t i = 0; i < n; i++) gb_u32(g, v); /* 4-byte elements */
    g->n_kv++;
}

/* Builds a GGUF with the keys that add() writes and checks that the tokenizer
 * refuses it with a message containing want (or accepts it, want NULL). */
static void expect_gguf(const char *what, void (*add)(gbuf_t *),
                        const char *want) {
    gbuf_t body = {0};
    add(&body);
    gbuf_t g = {0};
    gb_put(&g, "GGUF", 4);
    gb_u32(&g, 3);
    gb_u64(&g, 0);
    gb_u64(&g, body.n_kv);
    gb_put(&g, body.b, body.n);
    char err[LOG_ERRLEN] = "";
    gguf_t *f = gguf_open_buffer(g.b, g.n, what, err, sizeof err);
    TU_CHECK(f != NULL, "%s: gguf_open_buffer: %s", what, err);
    if (f) {
        err[0] = '\0';
        tokenizer_t *t = tokenizer_new_gguf(f, err, sizeof err);
        if (want) {
            TU_CHECK(t == NULL && strstr(err, want) != NULL,
                     "%s: want an error with \"%s\", got \"%s\"", what, want,
                     t ? "(accepted)" : err);
        } else {
            TU_CHECK(t != NULL, "%s: refused: %s", what, err);
        }
        tokenizer_destroy(&t);
        gguf_destroy(&f);
    }
    free(body.b);
    free(g.b);
}

static const char *const TINY[] = {"<unk>", "<s>", "</s>", "\xe2\x96\x81",
                                   "a"};
enum { TINY_N = 5 };
static void add_tiny_arrays(gbuf_t *g, uint64_t n_scores, uint64_t n_types) {
    gb_kv_tokens(g, TINY, TINY_N);
    gb_kv_arr(g, "tokenizer.ggml.scores", GGUF_TYPE_FLOAT32, n_scores, 0);
    gb_kv_arr(g, "tokenizer.ggml.token_type", GGUF_TYPE_INT32, n_types,
              TOKENIZER_TYPE_NORMAL);
}
static void add_ok(gbuf_t *g) {
    gb_kv_str(g, "tokenizer.ggml.model", "llama");
    add_tiny_arrays(g, TINY_N, TINY_N);
}
static void add_bert(gbuf_t *g) {
    gb_kv_str(g, "tokenizer.ggml.model", "bert");
    add_tiny_arrays(g, TINY_N, TINY_N);
}
static void add_no_model(gbuf_t *g) { add_tiny_arrays(g, TINY_N, TINY_N); }
static void add_no_tokens(gbuf_t *g) {
    gb_kv_str(g, "tokenizer.ggml.model", "llama");
    gb_kv_arr(g, "tokenizer.ggml.scores", GGUF_TYPE_FLOAT32, TINY_N, 0);
}
static void add_no_scores(gbuf_t *g) {
    gb_kv_str(g, "tokenizer.ggml.model", "llama");
    gb_kv_tokens(g, TINY, TINY_N);
    gb_kv_arr(g, "tokenizer.ggml.token_type", GGUF_TYPE_INT32, TINY_N, 1);
}
static void add_short_scores(gbuf_t *g) {
    gb_kv_str(g, "tokenizer.ggml.model", "llama");
    add_tiny_arrays(g, TINY_N - 1, TINY_N);
}
static void add_short_types(gbuf_t *g) {
    gb_kv_str(g, "tokenizer.ggml.model", "llama");
    add_tiny_arrays(g, TINY_N, TINY_N + 1);
}
static void add_bad_bos(gbuf_t *g) {
    add_ok(g);
    gb_kv_u32(g, "tokenizer.ggml.bos_token_id", TINY_N);
}
static void add_bad_unk(gbuf_t *g) {
    add_ok(g);
    gb_kv_u32(g, "tokenizer.ggml.unknown_token_id", 1000);
}
static void add_no_eos(gbuf_t *g) {
    add_ok(g);
    gb_kv_u32(g, "tokenizer.ggml.eos_token_id", 0xFFFFFFFFu);
}
static void add_no_unk(gbuf_t *g) { /* and no byte tokens either */
    add_ok(g);
    gb_kv_u32(g, "tokenizer.ggml.unknown_token_id", 0xFFFFFFFFu);
}

static void test_bad_gguf(void) {
    expect_gguf("ok", add_ok, NULL);
    expect_gguf("no EOS", add_no_eos, NULL);
    expect_gguf("bert", add_bert, "unsupported tokenizer model 'bert'");
    expect_gguf("no model", add_no_model, "tokenizer.ggml.model");
    expect_gguf("no tokens", add_no_tokens, "tokenizer.ggml.tokens");
    expect_gguf("no scores", add_no_scores, "tokenizer.ggml.scores");
    expect_gguf("short scores", add_short_scores, "scores");
    expect_gguf("short types", add_short_types, "token_type");
    expect_gguf("bad BOS", add_bad_bos, "BOS");
    expect_gguf("bad UNK", add_bad_unk, "unknown");
    expect_gguf("no UNK", add_no_unk, "byte fallback");
}

int main(void) {
    /* Needs no files. */
    test_bad_gguf();
    /* The rest needs TOKSHIFT_TESTDATA; without it the test skips, unless
     * what ran above already failed. */
    const char *root = getenv("TOKSHIFT_TESTDATA");
    if ((!root || !*root) && tu_failures) return tu_finish("test_tokenizer");
    test_vocab_vectors();
    test_stories();
    test_invalid_utf8();
    return tu_finish("test_tokenizer");
}
