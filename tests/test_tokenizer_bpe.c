/* test_tokenizer_bpe.c - byte-level BPE (GPT-2 style) against references it
 * did not write.
 *
 * What it checks: llama.cpp's conformance vectors for the GPT-2 vocabulary
 * (ids from the Hugging Face reference, exactly, and the byte-exact round
 * trip); the GPT-2, Llama 3 and Qwen2 pre-tokenizer regexes on tricky text
 * (contractions, digit groups, Unicode letters and numbers, whitespace runs,
 * newlines), against splits derived by hand from the regex semantics (first
 * alternative that matches at the leftmost position, greedy, backtracking)
 * and cross-checked with Python's `regex` module (mrab-regex 2026.5.9, the
 * engine GPT-2's reference encoder.py uses, with \p{..} support): every
 * expected split below is what regex.findall(pattern, text) returns; the
 * tokenizer.ggml.pre names on the real vocabulary; ignore_merges,
 * user-defined tokens, the space prefix, and decoding on a small vocabulary
 * built in memory; invalid UTF-8 and random bytes (byte-level BPE is
 * lossless for any bytes); long documents; GGUF files the tokenizer
 * refuses, and a deterministic fuzz loop over mutations of a small
 * byte-level GGUF (a tokenizer that works, or a clean error; run it under
 * the sanitizer build).  What it does not: tokenizer.json (test_tokenizer_json.c), or
 * SentencePiece (test_tokenizer.c). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bpe.h"
#include "gguf.h"
#include "gguf_writer.h"
#include "log.h"
#include "pretok.h"
#include "test_tokenizer_util.h"
#include "testutil.h"
#include "tokenizer.h"

static const char GPT2_VOCAB[] = "vocab/ggml-vocab-gpt-2.gguf";

/* ---- pre-tokenizer regexes ------------------------------------------- */

/* Splits text with pattern and compares the pieces, joined by '|', with
 * want (no text here holds a '|'). */
static void expect_split(const char *label, const char *pattern,
                         const char *text, const char *want) {
    char err[LOG_ERRLEN] = "";
    pretok_t *p = pretok_new(&pattern, 1, err, sizeof err);
    TU_REQUIRE(p != NULL, "pretok_new(%s): %s", label, err);
    pretok_span_t *spans = NULL;
    size_t cap = 0, len = strlen(text);
    long k = pretok_split(p, text, len, &spans, &cap, err, sizeof err);
    TU_REQUIRE(k >= 0, "pretok_split: %s", err);
    size_t size = 2 * len + 2, o = 0;
    char *got = malloc(size);
    TU_REQUIRE(got != NULL, "out of memory");
    for (long i = 0; i < k; i++) {
        if (i) got[o++] = '|';
        memcpy(got + o, text + spans[i].off, spans[i].len);
        o += spans[i].len;
    }
    got[o] = '\0';
    TU_CHECK(strcmp(got, want) == 0, "%s split differs", label);
    if (strcmp(got, want) != 0) {
        fprintf(stderr, "  text: ");
        tt_print_bytes(stderr, text, len);
        fprintf(stderr, "\n  want: ");
        tt_print_bytes(stderr, want, strlen(want));
        fprintf(stderr, "\n  got:  ");
        tt_print_bytes(stderr, got, o);
        fputc('\n', stderr);
    }
    free(got);
    free(spans);
    pretok_destroy(&p);
}

static void test_regex_splits(void) {
    static const struct {
        const char *text, *gpt2, *llama3, *qwen2;
    } cases[] = {
        /* Contractions: GPT-2's are lower case only; Llama 3 and Qwen2
         * match them case-insensitively. */
        {"I'm you're HE'S we'LL they've it'd don't",
         "I|'m| you|'re| HE|'|S| we|'|LL| they|'ve| it|'d| don|'t",
         "I|'m| you|'re| HE|'S| we|'LL| they|'ve| it|'d| don|'t",
         "I|'m| you|'re| HE|'S| we|'LL| they|'ve| it|'d| don|'t"},
        /* Digits: GPT-2 runs (with a space), Llama 3 groups of 1-3, Qwen2
         * single digits; the space before digits is its own piece in both
         * of the latter. */
        {"1 12 123 1234 12345 1234567",
         "1| 12| 123| 1234| 12345| 1234567",
         "1| |12| |123| |123|4| |123|45| |123|456|7",
         "1| |1|2| |1|2|3| |1|2|3|4| |1|2|3|4|5| |1|2|3|4|5|6|7"},
        {"3.14159 2,000,000 v1.2.3",
         "3|.|14159| 2|,|000|,|000| v|1|.|2|.|3",
         "3|.|141|59| |2|,|000|,|000| v|1|.|2|.|3",
         "3|.|1|4|1|5|9| |2|,|0|0|0|,|0|0|0| v|1|.|2|.|3"},
        /* Unicode letters (\p{L}) and numbers (\p{N}: Arabic-Indic digits
         * Nd, vulgar fraction and superscript No). */
        {"na\xc3\xafve caf\xc3\xa9 \xce\xa9mega \xd9\xa3\xd9\xa4\xd9\xa5 "
         "\xc2\xbd x\xc2\xb2",
         "na\xc3\xafve| caf\xc3\xa9| \xce\xa9mega| \xd9\xa3\xd9\xa4\xd9\xa5|"
         " \xc2\xbd| x|\xc2\xb2",
         "na\xc3\xafve| caf\xc3\xa9| \xce\xa9mega| |"
         "\xd9\xa3\xd9\xa4\xd9\xa5| |\xc2\xbd| x|\xc2\xb2",
         "na\xc3\xafve| caf\xc3\xa9| \xce\xa9mega| |\xd9\xa3|\xd9\xa4|"
         "\xd9\xa5| |\xc2\xbd| x|\xc2\xb2"},
        /* Whitespace runs: \s+(?!\S) leaves the last space to the next
         * word; Llama 3 and Qwen2 end runs at newlines (\s*[\r\n]+). */
        {"a  b\n\n  c \t\nd   ",
         "a| | b|\n\n | c| \t|\n|d|   ",
         "a| | b|\n\n| | c| \t\n|d|   ",
         "a| | b|\n\n| | c| \t\n|d|   "},
        /* Punctuation takes the newlines after it in Llama 3 / Qwen2. */
        {"Hello!!\n\nWorld?\r\n",
         "Hello|!!|\n|\n|World|?|\r\n",
         "Hello|!!\n\n|World|?\r\n",
         "Hello|!!\n\n|World|?\r\n"},
        /* One non-letter may lead a word in Llama 3 / Qwen2 ("(hello"). */
        {"don't $hello _foo 'quote' f(hello)",
         "don|'t| $|hello| _|foo| '|quote|'| f|(|hello|)",
         "don|'t| $|hello| _|foo| '|quote|'| f|(hello|)",
         "don|'t| $|hello| _|foo| '|quote|'| f|(hello|)"},
        /* CJK: letters; the ideographic comma leads the next word in
         * Llama 3 / Qwen2. */
        {"\xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e\xe3\x81\xae\xe3\x83\x86\xe3"
         "\x82\xad\xe3\x82\xb9\xe3\x83\x88\xe3\x80\x81\xe4\xb8\xad\xe6\x96"
         "\x87\xe3\x80\x82",
         "\xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e\xe3\x81\xae\xe3\x83\x86\xe3"
         "\x82\xad\xe3\x82\xb9\xe3\x83\x88|\xe3\x80\x81|\xe4\xb8\xad\xe6\x96"
         "\x87|\xe3\x80\x82",
         "\xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e\xe3\x81\xae\xe3\x83\x86\xe3"
         "\x82\xad\xe3\x82\xb9\xe3\x83\x88|\xe3\x80\x81\xe4\xb8\xad\xe6\x96"
         "\x87|\xe3\x80\x82",
         "\xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e\xe3\x81\xae\xe3\x83\x86\xe3"
         "\x82\xad\xe3\x82\xb9\xe3\x83\x88|\xe3\x80\x81\xe4\xb8\xad\xe6\x96"
         "\x87|\xe3\x80\x82"},
        /* Unicode spaces (NBSP, ideographic space) are \s, but only the
         * ASCII space may lead a GPT-2 word. */
        {" \xc2\xa0x\xe3\x80\x80y",
         " |\xc2\xa0|x|\xe3\x80\x80|y",
         " |\xc2\xa0x|\xe3\x80\x80y",
         " |\xc2\xa0x|\xe3\x80\x80y"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        expect_split("GPT-2", PRETOK_GPT2, cases[i].text, cases[i].gpt2);
        expect_split("Llama 3", PRETOK_LLAMA3, cases[i].text, cases[i].llama3);
        expect_split("Qwen2", PRETOK_QWEN2, cases[i].text, cases[i].qwen2);
    }
}

/* ---- a small vocabulary in memory -------------------------------------- */

/* Ids 0..255: the characters of bytes 0..255; then these. */
static const struct {
    const char *piece;
    int32_t type;
} EXTRA[] = {
    {"ab", TOKENIZER_TYPE_NORMAL},                 /* 256 */
    {"abc", TOKENIZER_TYPE_NORMAL},                /* 257 */
    {"xyz", TOKENIZER_TYPE_NORMAL},                /* 258: no merge */
    {"\xc4\xa0" "a", TOKENIZER_TYPE_NORMAL},       /* 259: " a" */
    {"<pad>", TOKENIZER_TYPE_USER_DEFINED},        /* 260 */
    {"<|eot|>", TOKENIZER_TYPE_CONTROL},           /* 261 */
    {"  ", TOKENIZER_TYPE_USER_DEFINED},           /* 262: two spaces */
    {"\xce\xa9", TOKENIZER_TYPE_NORMAL},           /* 263: not the alphabet */
    {"   ", TOKENIZER_TYPE_USER_DEFINED},          /* 264: three spaces */
};
enum { N_EXTRA = sizeof EXTRA / sizeof EXTRA[0], SMALL_N = 256 + N_EXTRA };

static char g_bytes[256][3];
static const char *g_pieces[SMALL_N];
static int32_t g_types[SMALL_N];
/* Ranks: "a b" (0) before "ab c" (1) before "Ġ a" (2). */
static const char *const M_LEFT[] = {"a", "ab", "\xc4\xa0"};
static const char *const M_RIGHT[] = {"b", "c", "a"};

static tokenizer_bpe_vocab_t small_vocab(void) {
    for (int b = 0; b < 256; b++) {
        size_t k = bpe_byte_char((unsigned char)b, g_bytes[b]);
        g_bytes[b][k] = '\0';
        g_pieces[b] = g_bytes[b];
        g_types[b] = TOKENIZER_TYPE_NORMAL;
    }
    for (int i = 0; i < N_EXTRA; i++) {
        g_pieces[256 + i] = EXTRA[i].piece;
        g_types[256 + i] = EXTRA[i].type;
    }
    static const char *patterns[] = {PRETOK_GPT2};
    return (tokenizer_bpe_vocab_t){
        .n_vocab = SMALL_N, .pieces = g_pieces, .types = g_types,
        .n_merges = 3, .merge_left = M_LEFT, .merge_right = M_RIGHT,
        .patterns = patterns, .n_patterns = 1,
        .bos = 261, .eos = 261, .unk = -1,
    };
}

/* Checks the ids of s (EXPECT_IDS), and that s round-trips (EXPECT). */
#define EXPECT_IDS(t, s, ...)                                                \
    do {                                                                     \
        static const int32_t want_[] = {__VA_ARGS__};                        \
        TU_CHECK(tt_encodes_to(t, s, strlen(s), want_,                       \
                               sizeof want_ / sizeof want_[0]),              \
                 "encode \"%s\"", s);                                        \
    } while (0)
#define EXPECT(t, s, ...)                                                    \
    do {                                                                     \
        EXPECT_IDS(t, s, __VA_ARGS__);                                       \
        TU_CHECK(tt_round_trips(t, s, strlen(s)), "round trip \"%s\"", s);   \
    } while (0)

static void test_small_vocab(void) {
    char err[LOG_ERRLEN] = "";
    tokenizer_bpe_vocab_t v = small_vocab();
    tokenizer_t *t = tokenizer_new_bpe(&v, err, sizeof err);
    TU_REQUIRE(t != NULL, "tokenizer_new_bpe: %s", err);
    TU_CHECK(tokenizer_n_vocab(t) == SMALL_N && tokenizer_bos(t) == 261 &&
                 !tokenizer_adds_bos(t) && !tokenizer_adds_space_prefix(t),
             "accessors");

    EXPECT(t, "abc", 257);
    /* "a b" (rank 0) merges before "Ġ a" (rank 2), and "Ġ ab" is no merge. */
    EXPECT(t, " ab", ' ', 256);
    EXPECT(t, " a", 259);
    EXPECT(t, "xyz", 'x', 'y', 'z'); /* a token, but no merge makes it */
    /* User-defined tokens are matched in the text, leftmost-longest; control
     * tokens are not ("<|eot|>" is plain text: "<|", "eot", "|>"). */
    EXPECT(t, "a<pad>b", 'a', 260, 'b');
    EXPECT(t, "<|eot|>", '<', '|', 'e', 'o', 't', '|', '>');
    EXPECT(t, "a  b", 'a', 262, 'b');
    EXPECT(t, "a     b", 'a', 264, 262, 'b');
    EXPECT(t, "<pad><pad>", 260, 260);
    /* Decoding: user-defined tokens as their text, control tokens as
     * nothing, a piece outside the alphabet as its own UTF-8. */
    {
        char buf[16];
        TU_CHECK(tokenizer_token_bytes(t, 260, buf, sizeof buf) == 5 &&
                     memcmp(buf, "<pad>", 5) == 0,
                 "user-defined bytes");
        TU_CHECK(tokenizer_token_bytes(t, 261, buf, sizeof buf) == 0,
                 "control bytes");
        TU_CHECK(tokenizer_token_bytes(t, 263, buf, sizeof buf) == 2 &&
                     memcmp(buf, "\xce\xa9", 2) == 0,
                 "piece outside the alphabet");
        TU_CHECK(tokenizer_token_bytes(t, 259, buf, sizeof buf) == 2 &&
                     memcmp(buf, " a", 2) == 0,
                 "Ġa bytes");
        TU_CHECK(tokenizer_token_bytes(t, ' ', buf, sizeof buf) == 1 &&
                     buf[0] == ' ',
                 "space byte");
        TU_CHECK(tokenizer_token_bytes(t, 259, buf, 1) == -1, "small cap");
        int32_t ids[] = {261, 'h', 260, 263, 99999, -5};
        size_t len = 0;
        char *dec = tokenizer_decode(t, ids, 6, 1, &len);
        TU_CHECK(dec && len == 8 && memcmp(dec, "h<pad>\xce\xa9", 8) == 0,
                 "decode mixed ids");
        free(dec);
    }
    {
        int32_t *ids = NULL;
        long k = tt_encode(t, "", 0, 0, &ids);
        TU_CHECK(k == 0, "empty text: %ld ids", k);
        free(ids);
        k = tt_encode(t, "abc", 3, 1, &ids);
        TU_CHECK(k == 2 && ids[0] == 261 && ids[1] == 257, "BOS first");
        free(ids);
    }
    tokenizer_destroy(&t);

    /* ignore_merges: a word that is a token is that token. */
    v.ignore_merges = 1;
    t = tokenizer_new_bpe(&v, err, sizeof err);
    TU_REQUIRE(t != NULL, "tokenizer_new_bpe: %s", err);
    EXPECT(t, "xyz", 258);
    EXPECT(t, "xyz xyz", 258, ' ', 'x', 'y', 'z'); /* "Ġxyz" is no token */
    EXPECT(t, "abc", 257);
    tokenizer_destroy(&t);
    v.ignore_merges = 0;

    /* add_prefix_space: " abc" is encoded, and decoding drops the space;
     * text that starts with a space gets none (and so does not round-trip:
     * decoding cannot tell, as with `tokenizers`). */
    v.add_prefix_space = 1;
    t = tokenizer_new_bpe(&v, err, sizeof err);
    TU_REQUIRE(t != NULL, "tokenizer_new_bpe: %s", err);
    TU_CHECK(tokenizer_adds_space_prefix(t), "adds space prefix");
    EXPECT(t, "abc", ' ', 257);
    EXPECT_IDS(t, " a", 259);
    /* Each stretch between user-defined tokens gets its own space, as each
     * split does in `tokenizers`. */
    EXPECT_IDS(t, "a<pad>a", 259, 260, 259);
    {
        int32_t ids[] = {259};
        size_t len = 0;
        char *dec = tokenizer_decode(t, ids, 1, 0, &len);
        TU_CHECK(dec && len == 2 && strcmp(dec, " a") == 0, "keep space");
        free(dec);
    }
    tokenizer_destroy(&t);
    v.add_prefix_space = 0;

    /* No pattern: the whole text is one word. */
    v.n_patterns = 0;
    t = tokenizer_new_bpe(&v, err, sizeof err);
    TU_REQUIRE(t != NULL, "tokenizer_new_bpe: %s", err);
    EXPECT(t, "ab ab", 256, ' ', 256);
    EXPECT(t, "xa", 'x', 'a');
    tokenizer_destroy(&t);
    v.n_patterns = 1;

    /* Refusals. */
    static const struct {
        const char *left, *right, *want;
    } bad_merges[] = {
        {"zz", "a", "merge 3 ('zz a'): 'zz' is not a token"},
        {"a", "zz", "merge 3 ('a zz'): 'zz' is not a token"},
        {"x", "y", "merge 3 ('x y'): 'xy' is not a token"},
    };
    for (size_t i = 0; i < sizeof bad_merges / sizeof bad_merges[0]; i++) {
        const char *l[4] = {M_LEFT[0], M_LEFT[1], M_LEFT[2],
                            bad_merges[i].left};
        const char *r[4] = {M_RIGHT[0], M_RIGHT[1], M_RIGHT[2],
                            bad_merges[i].right};
        tokenizer_bpe_vocab_t b = v;
        b.merge_left = l;
        b.merge_right = r;
        b.n_merges = 4;
        t = tokenizer_new_bpe(&b, err, sizeof err);
        TU_CHECK(t == NULL && strstr(err, bad_merges[i].want),
                 "bad merge %zu: %s", i, t ? "(accepted)" : err);
        tokenizer_destroy(&t);
    }
    {
        tokenizer_bpe_vocab_t b = v;
        const char *p[SMALL_N];
        memcpy(p, g_pieces, sizeof p);
        p[0] = "missing"; /* the character of byte 0 */
        b.pieces = p;
        t = tokenizer_new_bpe(&b, err, sizeof err);
        TU_CHECK(t == NULL && strstr(err, "byte 0x00 has no token"),
                 "missing byte: %s", t ? "(accepted)" : err);
        tokenizer_destroy(&t);
        b.unk = 1; /* then it falls back to UNK */
        t = tokenizer_new_bpe(&b, err, sizeof err);
        TU_CHECK(t != NULL, "missing byte with UNK: %s", err);
        tokenizer_destroy(&t);

        b = v;
        const char *bad_re[] = {"(?<x"};
        b.patterns = bad_re;
        t = tokenizer_new_bpe(&b, err, sizeof err);
        TU_CHECK(t == NULL && strstr(err, "does not compile"),
                 "bad pattern: %s", t ? "(accepted)" : err);
        tokenizer_destroy(&t);

        b = v;
        b.eos = SMALL_N;
        t = tokenizer_new_bpe(&b, err, sizeof err);
        TU_CHECK(t == NULL && strstr(err, "EOS"), "bad EOS: %s",
                 t ? "(accepted)" : err);
        tokenizer_destroy(&t);

        b = v;
        int32_t ty[SMALL_N];
        memcpy(ty, g_types, sizeof ty);
        ty[5] = 9;
        b.types = ty;
        t = tokenizer_new_bpe(&b, err, sizeof err);
        TU_CHECK(t == NULL && strstr(err, "type"), "bad type: %s",
                 t ? "(accepted)" : err);
        tokenizer_destroy(&t);
    }
}

/* ---- GGUF files ------------------------------------------------------- */

/* Builds a GGUF from the gpt-2 vocabulary's tokenizer keys, leaving out
 * those named in drop ('|'-separated), then adding what add() writes. */
static tokenizer_t *gpt2_variant(const char *drop,
                                 void (*add)(gguf_writer_t *), char *err,
                                 size_t errlen) {
    char e[LOG_ERRLEN];
    gguf_t *src = gguf_open(tu_testdata(GPT2_VOCAB), e, sizeof e);
    TU_REQUIRE(src != NULL, "gguf_open: %s", e);
    gguf_writer_t *w = gguf_writer_new(e, sizeof e);
    TU_REQUIRE(w != NULL, "gguf_writer_new: %s", e);
    for (uint64_t i = 0; i < gguf_n_kv(src); i++) {
        const gguf_kv_t *kv = gguf_kv_at(src, i);
        char key[128];
        snprintf(key, sizeof key, "|%.*s|", (int)kv->key.len, kv->key.ptr);
        if (drop && strstr(drop, key)) continue;
        TU_REQUIRE(gguf_writer_copy_kv(w, kv, e, sizeof e) == 0,
                   "copy_kv: %s", e);
    }
    if (add) add(w);
    void *buf = NULL;
    size_t len = 0;
    TU_REQUIRE(gguf_writer_to_buffer(w, &buf, &len, e, sizeof e) == 0,
               "to_buffer: %s", e);
    gguf_t *g = gguf_open_buffer(buf, len, "variant.gguf", e, sizeof e);
    TU_REQUIRE(g != NULL, "gguf_open_buffer: %s", e);
    tokenizer_t *t = tokenizer_new_gguf(g, err, errlen);
    gguf_destroy(&g);
    free(buf);
    gguf_writer_destroy(&w);
    gguf_destroy(&src);
    return t;
}

#define ADD_STR(fn, key, val)                                                \
    static void fn(gguf_writer_t *w) {                                       \
        char e[LOG_ERRLEN];                                                  \
        TU_REQUIRE(gguf_writer_add_str(w, key, val, SIZE_MAX, e,             \
                                       sizeof e) == 0,                       \
                   "add: %s", e);                                            \
    }
ADD_STR(add_pre_qwen2, "tokenizer.ggml.pre", "qwen2")
ADD_STR(add_pre_llama3, "tokenizer.ggml.pre", "llama-bpe")
ADD_STR(add_pre_smollm, "tokenizer.ggml.pre", "smollm")
ADD_STR(add_pre_unknown, "tokenizer.ggml.pre", "no-such-pre")
static void add_pre_llama3_no_bos(gguf_writer_t *w) {
    char e[LOG_ERRLEN];
    add_pre_llama3(w);
    TU_REQUIRE(gguf_writer_add_bool(w, "tokenizer.ggml.add_bos_token", 0, e,
                                    sizeof e) == 0,
               "add: %s", e);
}
static void add_bad_merges(gguf_writer_t *w) {
    char e[LOG_ERRLEN];
    const char *m[] = {"\xc4\xa0 t", "nospace"};
    TU_REQUIRE(gguf_writer_add_str_arr(w, "tokenizer.ggml.merges", m, NULL, 2,
                                       e, sizeof e) == 0,
               "add: %s", e);
}
static void add_unknown_merge(gguf_writer_t *w) {
    char e[LOG_ERRLEN];
    const char *m[] = {"\xc4\xa0 t", "\xe2\x98\x83 t"}; /* ☃ is no token */
    TU_REQUIRE(gguf_writer_add_str_arr(w, "tokenizer.ggml.merges", m, NULL, 2,
                                       e, sizeof e) == 0,
               "add: %s", e);
}
static void add_short_types(gguf_writer_t *w) {
    char e[LOG_ERRLEN];
    int32_t ty[3] = {1, 1, 1};
    TU_REQUIRE(gguf_writer_add_arr(w, "tokenizer.ggml.token_type",
                                   GGUF_TYPE_INT32, ty, 3, e, sizeof e) == 0,
               "add: %s", e);
}

/* Concatenates the ids of encoding each of n strings. */
static size_t encode_parts(const tokenizer_t *t, const char *const *parts,
                           size_t n, int32_t *out, size_t cap) {
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        int32_t *ids = NULL;
        long m = tt_encode(t, parts[i], strlen(parts[i]), 0, &ids);
        TU_REQUIRE(k + (size_t)m <= cap, "too many ids");
        memcpy(out + k, ids, (size_t)m * sizeof *ids);
        k += (size_t)m;
        free(ids);
    }
    return k;
}

static void test_gguf_variants(const tokenizer_t *gpt2) {
    char err[LOG_ERRLEN] = "";
    int32_t want[64];
    size_t n;

    /* Qwen2's regex on the GPT-2 vocabulary: every digit alone. */
    tokenizer_t *t = gpt2_variant("|tokenizer.ggml.pre|", add_pre_qwen2, err,
                                  sizeof err);
    TU_REQUIRE(t != NULL, "qwen2 variant: %s", err);
    const char *digits[] = {"1", "2", "3", "4", "5", " ", "6", "7"};
    n = encode_parts(gpt2, digits, 8, want, 64);
    TU_CHECK(tt_encodes_to(t, "12345 67", 8, want, n), "qwen2 digits");
    TU_CHECK(!tokenizer_adds_bos(t), "qwen2: no BOS by default");
    tokenizer_destroy(&t);

    /* Llama 3's: groups of three, BOS by default, and ignore_merges. */
    t = gpt2_variant("|tokenizer.ggml.pre|", add_pre_llama3, err, sizeof err);
    TU_REQUIRE(t != NULL, "llama-bpe variant: %s", err);
    const char *groups[] = {"123", "456", "7", " HE", "'S"};
    n = encode_parts(gpt2, groups, 5, want, 64);
    TU_CHECK(tt_encodes_to(t, "1234567 HE'S", 12, want, n), "llama3 groups");
    TU_CHECK(tokenizer_adds_bos(t) && tokenizer_bos(t) == 50256,
             "llama-bpe adds BOS");
    tokenizer_destroy(&t);
    t = gpt2_variant("|tokenizer.ggml.pre|", add_pre_llama3_no_bos, err,
                     sizeof err);
    TU_REQUIRE(t != NULL, "llama-bpe variant: %s", err);
    TU_CHECK(!tokenizer_adds_bos(t), "add_bos_token false wins");
    tokenizer_destroy(&t);

    /* SmolLM's: digits alone first, then GPT-2's regex. */
    t = gpt2_variant("|tokenizer.ggml.pre|", add_pre_smollm, err, sizeof err);
    TU_REQUIRE(t != NULL, "smollm variant: %s", err);
    const char *smol[] = {"a", "1", "2", " b"};
    n = encode_parts(gpt2, smol, 4, want, 64);
    TU_CHECK(tt_encodes_to(t, "a12 b", 5, want, n), "smollm digits");
    tokenizer_destroy(&t);

    /* No pre key at all: "default", which is GPT-2's regex here. */
    t = gpt2_variant("|tokenizer.ggml.pre|", NULL, err, sizeof err);
    TU_REQUIRE(t != NULL, "no pre: %s", err);
    TU_CHECK(tt_encodes_to(t, "Hello world", 11,
                           (const int32_t[]){15496, 995}, 2),
             "no pre");
    tokenizer_destroy(&t);
    /* No token types: all normal (<|endoftext|> too). */
    t = gpt2_variant("|tokenizer.ggml.token_type|", NULL, err, sizeof err);
    TU_REQUIRE(t != NULL, "no token types: %s", err);
    tokenizer_destroy(&t);

    static const struct {
        const char *what, *drop;
        void (*add)(gguf_writer_t *);
        const char *want;
    } bad[] = {
        {"unknown pre", "|tokenizer.ggml.pre|", add_pre_unknown,
         "unknown pre-tokenizer 'no-such-pre'"},
        {"no merges", "|tokenizer.ggml.merges|", NULL,
         "tokenizer.ggml.merges is missing"},
        {"merge without space", "|tokenizer.ggml.merges|", add_bad_merges,
         "tokenizer.ggml.merges[1] ('nospace') is not 'left right'"},
        {"merge of no token", "|tokenizer.ggml.merges|", add_unknown_merge,
         "is not a token"},
        {"no tokens", "|tokenizer.ggml.tokens|", NULL,
         "tokenizer.ggml.tokens is missing"},
        {"short token types", "|tokenizer.ggml.token_type|", add_short_types,
         ".token_type has 3"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        err[0] = '\0';
        t = gpt2_variant(bad[i].drop, bad[i].add, err, sizeof err);
        TU_CHECK(t == NULL && strstr(err, bad[i].want) &&
                     strstr(err, "variant.gguf"),
                 "%s: want \"%s\", got \"%s\"", bad[i].what, bad[i].want,
                 t ? "(accepted)" : err);
        tokenizer_destroy(&t);
    }
}

/* A small byte-level GGUF (the small vocabulary above, GPT-2's pre), its
 * bytes mutated: every mutant must give a tokenizer that works, or a clean
 * error. */
static void test_gguf_fuzz(void) {
    char e[LOG_ERRLEN];
    tokenizer_bpe_vocab_t v = small_vocab();
    gguf_writer_t *w = gguf_writer_new(e, sizeof e);
    TU_REQUIRE(w != NULL, "gguf_writer_new: %s", e);
    char merges[3][16];
    const char *mp[3];
    for (int i = 0; i < 3; i++) {
        snprintf(merges[i], sizeof merges[i], "%s %s", M_LEFT[i], M_RIGHT[i]);
        mp[i] = merges[i];
    }
    TU_REQUIRE(gguf_writer_add_str(w, "tokenizer.ggml.model", "gpt2",
                                   SIZE_MAX, e, sizeof e) == 0 &&
                   gguf_writer_add_str(w, "tokenizer.ggml.pre", "gpt-2",
                                       SIZE_MAX, e, sizeof e) == 0 &&
                   gguf_writer_add_str_arr(w, "tokenizer.ggml.tokens",
                                           v.pieces, NULL, SMALL_N, e,
                                           sizeof e) == 0 &&
                   gguf_writer_add_arr(w, "tokenizer.ggml.token_type",
                                       GGUF_TYPE_INT32, v.types, SMALL_N, e,
                                       sizeof e) == 0 &&
                   gguf_writer_add_str_arr(w, "tokenizer.ggml.merges", mp,
                                           NULL, 3, e, sizeof e) == 0 &&
                   gguf_writer_add_u32(w, "tokenizer.ggml.bos_token_id", 261,
                                       e, sizeof e) == 0,
               "small GGUF: %s", e);
    void *buf = NULL;
    size_t len = 0;
    TU_REQUIRE(gguf_writer_to_buffer(w, &buf, &len, e, sizeof e) == 0,
               "to_buffer: %s", e);
    gguf_writer_destroy(&w);
    unsigned char *m = malloc(len);
    TU_REQUIRE(m != NULL, "out of memory");
    uint64_t x = 0xda942042e4dd58b5ull;
    int opened = 0, built = 0, iters = 4000;
    for (int it = 0; it < iters; it++) {
        memcpy(m, buf, len);
        size_t n = len;
        if (it == 0) {
            /* the file as written */
        } else if (it % 4 == 0) {
            x ^= x << 13, x ^= x >> 7, x ^= x << 17;
            n = (size_t)(x % len);
        } else {
            for (int k = 1 + it % 3; k > 0; k--) {
                x ^= x << 13, x ^= x >> 7, x ^= x << 17;
                m[(x >> 8) % len] = (unsigned char)(x >> 48);
            }
        }
        gguf_t *g = gguf_open_buffer(m, n, "fuzz.gguf", e, sizeof e);
        if (!g) continue;
        opened++;
        e[0] = '\0';
        tokenizer_t *t = tokenizer_new_gguf(g, e, sizeof e);
        if (t) {
            built++;
            static const char probe[] = "abc <pad> x\xff\n 12";
            int32_t *ids = NULL;
            long k = tokenizer_encode(t, probe, sizeof probe - 1, 1, &ids, e,
                                      sizeof e);
            TU_CHECK(k >= 0, "fuzz %d: encode failed: %s", it, e);
            for (long j = 0; j < k; j++)
                TU_CHECK(ids[j] >= 0 && ids[j] < tokenizer_n_vocab(t),
                         "fuzz %d: id %ld", it, (long)ids[j]);
            if (k >= 0) free(tokenizer_decode(t, ids, (size_t)k, 1, NULL));
            free(ids);
            tokenizer_destroy(&t);
        } else {
            TU_CHECK(strncmp(e, "fuzz.gguf: ", 11) == 0,
                     "fuzz %d: error without the file's name: \"%s\"", it,
                     e);
        }
        gguf_destroy(&g);
    }
    TU_CHECK(built > 0, "not even the unmutated file was accepted");
    fprintf(stderr, "gguf fuzz: %d of %d mutants opened, %d tokenizers "
                    "built\n",
            opened, iters, built);
    free(m);
    free(buf);
}

/* ---- the GPT-2 vocabulary ----------------------------------------------- */

static void test_gpt2(const tokenizer_t *t) {
    TU_CHECK(tokenizer_n_vocab(t) == 50257, "n_vocab %ld",
             (long)tokenizer_n_vocab(t));
    TU_CHECK(tokenizer_bos(t) == 50256 && tokenizer_eos(t) == 50256 &&
                 !tokenizer_adds_bos(t) && !tokenizer_adds_space_prefix(t),
             "special ids and conventions");
    TU_CHECK(strcmp(tokenizer_piece(t, 50256), "<|endoftext|>") == 0 &&
                 strcmp(tokenizer_piece(t, 220), "\xc4\xa0") == 0 &&
                 tokenizer_piece(t, 50257) == NULL,
             "pieces");

    tt_vectors_t v;
    tt_vectors_load(&v, GPT2_VOCAB);
    size_t pass = tt_vectors_check(t, &v, "gpt-2 vectors (GGUF)");
    TU_CHECK(pass == v.n, "%zu of %zu cases fail", v.n - pass, v.n);
    tt_vectors_free(&v);

    /* Text that spells the control token is plain text. */
    int32_t *ids = NULL;
    long k = tt_encode(t, "<|endoftext|>", 13, 0, &ids);
    TU_CHECK(k > 1, "<|endoftext|> in text");
    for (long i = 0; i < k; i++)
        TU_CHECK(ids[i] != 50256, "control token from text");
    free(ids);
    k = tt_encode(t, "Hello", 5, 1, &ids);
    TU_CHECK(k == 2 && ids[0] == 50256 && ids[1] == 15496, "BOS when asked");
    free(ids);

    /* Every token's bytes fit tokenizer_max_piece_bytes, and the normal
     * ones re-encode to themselves when their text is a word alone
     * (spot check). */
    char buf[256];
    size_t max = tokenizer_max_piece_bytes(t);
    TU_CHECK(max <= sizeof buf, "max piece %zu", max);
    for (int32_t id = 0; id < tokenizer_n_vocab(t); id++) {
        long nb = tokenizer_token_bytes(t, id, buf, sizeof buf);
        TU_CHECK(nb >= 0 && (size_t)nb <= max, "token %ld: %ld bytes",
                 (long)id, nb);
    }
    TU_CHECK(tokenizer_token_bytes(t, 50256, buf, sizeof buf) == 0,
             "control decodes to nothing");
    TU_CHECK(tt_encodes_to(t, " the", 4, (const int32_t[]){262}, 1), "Ġthe");
}

static void test_gpt2_bytes(const tokenizer_t *t) {
    /* Invalid UTF-8: each run of invalid bytes is a word of its own, and
     * the valid text around it encodes as if alone. */
    static const struct {
        const char *s;
        size_t n;
    } cases[] = {
        {"\x80", 1},       {"a\xbf\xbf b", 5},     {"\xc3", 1},
        {"caf\xc3", 4},    {"\xe2\x82", 2},        {"\xe2\x82 x", 4},
        {"\xf0\x9f\x99", 3}, {"\xff", 1},          {"\xfe\xff hello", 8},
        {"\xc0\xaf", 2},   {"\xed\xa0\x80", 3},    {"\xf4\x90\x80\x80", 4},
        {"a\0b", 3},       {"\0", 1},              {" \0 \0 ", 5},
        {"Hello\xc3(world\xa9", 13},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        TU_CHECK(tt_round_trips(t, cases[i].s, cases[i].n),
                 "invalid case %zu", i);
    int32_t want[64];
    const char *parts[] = {"Hello world", "\xff\xfe", " and more"};
    size_t n = encode_parts(t, parts, 3, want, 64);
    TU_CHECK(tt_encodes_to(t, "Hello world\xff\xfe and more", 22, want, n),
             "invalid bytes cut the text");

    /* Random bytes, biased towards the interesting ones, round-trip. */
    static const unsigned char pool[] = {' ',  ' ',  'a',  'e',  't',  '\n',
                                         0x00, 0x80, 0xbf, 0xc0, 0xc3, 0xe0,
                                         0xe2, 0x96, 0x81, 0xed, 0xf0, 0xf4,
                                         0x9f, 0xff, 0xa9, 'H',  '\'', '1',
                                         '\t', '\r', 's'};
    uint64_t x = 0x9e3779b97f4a7c15ull;
    int fails = 0, iters = 0;
    for (; iters < 5000 && fails < 5; iters++) {
        char buf[80];
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        size_t len = (size_t)(x % 81);
        for (size_t i = 0; i < len; i++) {
            x ^= x << 13, x ^= x >> 7, x ^= x << 17;
            buf[i] = (x >> 32) & 1 ? (char)pool[(x >> 40) % sizeof pool]
                                   : (char)(x >> 48);
        }
        if (!tt_round_trips(t, buf, len)) fails++;
    }
    TU_CHECK(fails == 0, "%d random byte strings do not round-trip", fails);
    fprintf(stderr, "fuzz: %d random byte strings round-trip\n", iters);
}

static void test_long_documents(const tokenizer_t *t) {
    tt_vectors_t v;
    tt_vectors_load(&v, GPT2_VOCAB);
    size_t inp = 0;
    for (size_t i = 0; i < v.n; i++) inp += v.cases[i].len + 1;
    size_t cap = (1u << 20) + inp, n = 0;
    char *big = malloc(cap);
    TU_REQUIRE(big != NULL, "out of memory");
    while (n + inp <= cap)
        for (size_t i = 0; i < v.n; i++) {
            memcpy(big + n, v.cases[i].text, v.cases[i].len);
            n += v.cases[i].len;
            big[n++] = '\n';
        }
    tt_vectors_free(&v);

    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    int32_t *ids = NULL;
    long k = tt_encode(t, big, n, 0, &ids);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double secs = (double)(t1.tv_sec - t0.tv_sec) +
                  (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
    fprintf(stderr, "encode: %.2f MB of text, %ld tokens in %.3f s "
                    "(%.1f MB/s)\n",
            (double)n / 1e6, k, secs, (double)n / 1e6 / secs);
    free(ids);
    TU_CHECK(tt_round_trips(t, big, n), "1 MB document");

    /* One huge word each: the worst cases for a quadratic merge loop. */
    static const char fill[] = {'a', ' ', '7', '\n', '\xff'};
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (size_t i = 0; i < sizeof fill; i++) {
        memset(big, fill[i], 200000);
        TU_CHECK(tt_round_trips(t, big, 200000), "200 KB of 0x%02x",
                 (unsigned char)fill[i]);
    }
    clock_gettime(CLOCK_MONOTONIC, &t1);
    secs = (double)(t1.tv_sec - t0.tv_sec) +
           (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
    fprintf(stderr, "one-word documents: 5 x 200 KB in %.3f s\n", secs);
    TU_CHECK(secs < 30, "one-word documents took %.1f s", secs);
    free(big);
}

int main(void) {
    /* Needs no files. */
    test_regex_splits();
    test_small_vocab();
    test_gguf_fuzz();
    /* The rest needs TOKSHIFT_TESTDATA; without it the test skips, unless
     * what ran above already failed. */
    const char *root = getenv("TOKSHIFT_TESTDATA");
    if ((!root || !*root) && tu_failures)
        return tu_finish("test_tokenizer_bpe");
    tokenizer_t *t = tt_open_gguf(tu_testdata(GPT2_VOCAB));
    test_gpt2(t);
    test_gguf_variants(t);
    test_gpt2_bytes(t);
    test_long_documents(t);
    tokenizer_destroy(&t);
    return tu_finish("test_tokenizer_bpe");
}
