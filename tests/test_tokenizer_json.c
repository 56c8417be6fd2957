/* test_tokenizer_json.c - tokenizer.json (Hugging Face `tokenizers`) files.
 *
 * What it checks: tokenizer.json files that this test writes (into a temp
 * folder) from the shared GGUF vocabularies give the conformance vectors'
 * ids exactly, as the GGUF does: GPT-2 as byte-level BPE (merges as "a b"
 * strings and as ["a", "b"] pairs), Llama SPM as SentencePiece-style BPE
 * (merges made from the scores the way `transformers`' SentencePiece
 * converter makes them, the legacy Prepend/Replace normaliser, and
 * Metaspace); the Split regex / Digits pre-tokenizers and ignore_merges on
 * the GPT-2 vocabulary; BOS/EOS from post_processor, names and opts; clean
 * refusals of malformed files, each naming the file and the field; and a
 * deterministic fuzz loop over mutations of a small valid file
 * (truncations, byte flips, values of the wrong type), which must give a
 * tokenizer or an error, never a crash (run it under the sanitizer build).
 * What it does not: GGUF-only behaviour (test_tokenizer_bpe.c,
 * test_tokenizer.c). */
#include <jansson.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "bpe.h"
#include "gguf.h"
#include "log.h"
#include "pretok.h"
#include "test_tokenizer_util.h"
#include "testutil.h"
#include "tokenizer.h"

static char g_dir[512]; /* the temp folder */

static void make_temp_dir(void) {
    const char *tmp = getenv("TMPDIR");
    snprintf(g_dir, sizeof g_dir, "%s/tokshift-tokjson-XXXXXX",
             tmp && *tmp ? tmp : "/tmp");
    TU_REQUIRE(mkdtemp(g_dir) != NULL, "mkdtemp %s failed", g_dir);
}

/* Writes root (compact) to g_dir/name and returns the path (static). */
static const char *write_json(const char *name, const json_t *root) {
    static char path[640];
    snprintf(path, sizeof path, "%s/%s", g_dir, name);
    TU_REQUIRE(json_dump_file(root, path, JSON_COMPACT) == 0,
               "cannot write %s", path);
    return path;
}

static tokenizer_t *load_json(const char *path) {
    char err[LOG_ERRLEN];
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    tokenizer_t *t = tokenizer_new_json(path, err, sizeof err);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    TU_REQUIRE(t != NULL, "tokenizer_new_json: %s", err);
    fprintf(stderr, "loaded %s in %.3f s\n", strrchr(path, '/') + 1,
            (double)(t1.tv_sec - t0.tv_sec) +
                (double)(t1.tv_nsec - t0.tv_nsec) / 1e9);
    return t;
}

/* A JSON string of n bytes (pieces are valid UTF-8). */
static json_t *jstr(const char *s, size_t n) {
    json_t *v = json_stringn(s, n);
    TU_REQUIRE(v != NULL, "piece is not UTF-8: %.*s", (int)n, s);
    return v;
}

static void jset(json_t *obj, const char *key, json_t *v) {
    TU_REQUIRE(v != NULL && json_object_set_new(obj, key, v) == 0,
               "json_object_set %s", key);
}

static json_t *jparse(const char *text) {
    json_error_t je;
    json_t *v = json_loads(text, JSON_DECODE_ANY, &je);
    TU_REQUIRE(v != NULL, "bad JSON in the test: %s: %s", je.text, text);
    return v;
}

/* The GGUF vocabulary: tokens and types, and merges or scores. */
typedef struct {
    const gguf_str_t *tokens;
    uint64_t n;
    const void *types;
    const gguf_str_t *merges;
    uint64_t n_merges;
    const void *scores;
    gguf_t *g;
} gvocab_t;

static gvocab_t gvocab_open(const char *rel) {
    char err[LOG_ERRLEN];
    gvocab_t v = {0};
    uint64_t n2 = 0;
    v.g = gguf_open(tu_testdata(rel), err, sizeof err);
    TU_REQUIRE(v.g != NULL, "gguf_open: %s", err);
    TU_REQUIRE(gguf_get_str_arr(v.g, "tokenizer.ggml.tokens", &v.tokens, &v.n,
                                err, sizeof err) == 0,
               "tokens: %s", err);
    TU_REQUIRE(gguf_get_arr(v.g, "tokenizer.ggml.token_type", GGUF_TYPE_INT32,
                            &v.types, &n2, err, sizeof err) == 0 &&
                   n2 == v.n,
               "token_type: %s", err);
    if (gguf_get_str_arr(v.g, "tokenizer.ggml.merges", &v.merges, &v.n_merges,
                         err, sizeof err) != 0)
        v.merges = NULL;
    if (gguf_get_arr(v.g, "tokenizer.ggml.scores", GGUF_TYPE_FLOAT32,
                     &v.scores, &n2, err, sizeof err) != 0)
        v.scores = NULL;
    return v;
}

/* model.vocab of all tokens but those of type skip (0: none). */
static json_t *vocab_object(const gvocab_t *v) {
    json_t *o = json_object();
    for (uint64_t i = 0; i < v->n; i++)
        TU_REQUIRE(json_object_setn_new(o, v->tokens[i].ptr,
                                        (size_t)v->tokens[i].len,
                                        json_integer((json_int_t)i)) == 0,
                   "vocab %llu", (unsigned long long)i);
    return o;
}

static json_t *added_token(int64_t id, const char *content, int special) {
    json_t *a = json_object();
    jset(a, "id", json_integer(id));
    jset(a, "content", json_string(content));
    jset(a, "single_word", json_false());
    jset(a, "lstrip", json_false());
    jset(a, "rstrip", json_false());
    jset(a, "normalized", json_boolean(!special));
    jset(a, "special", json_boolean(special));
    return a;
}

/* ---- GPT-2 ------------------------------------------------------------- */

/* GPT-2's tokenizer.json, as `tokenizers` writes it, from the GGUF; merges
 * as pairs when pairs is set. */
static json_t *gpt2_json(const gvocab_t *v, int pairs) {
    json_t *root = json_object(), *model = json_object();
    json_t *added = json_array(), *merges = json_array();
    for (uint64_t i = 0; i < v->n; i++)
        if (gguf_arr_i32(v->types, i) == TOKENIZER_TYPE_CONTROL) {
            char content[64];
            snprintf(content, sizeof content, "%.*s", (int)v->tokens[i].len,
                     v->tokens[i].ptr);
            json_array_append_new(added, added_token((int64_t)i, content, 1));
        }
    for (uint64_t i = 0; i < v->n_merges; i++) {
        const char *s = v->merges[i].ptr;
        size_t len = (size_t)v->merges[i].len;
        if (!pairs) {
            json_array_append_new(merges, jstr(s, len));
            continue;
        }
        const char *sp = memchr(s + 1, ' ', len - 1);
        TU_REQUIRE(sp != NULL, "merge %llu", (unsigned long long)i);
        json_t *pair = json_array();
        json_array_append_new(pair, jstr(s, (size_t)(sp - s)));
        json_array_append_new(pair, jstr(sp + 1, len - (size_t)(sp - s) - 1));
        json_array_append_new(merges, pair);
    }
    jset(root, "version", json_string("1.0"));
    jset(root, "truncation", json_null());
    jset(root, "padding", json_null());
    jset(root, "added_tokens", added);
    jset(root, "normalizer", json_null());
    jset(root, "pre_tokenizer",
         jparse("{\"type\": \"ByteLevel\", \"add_prefix_space\": false, "
                "\"trim_offsets\": true, \"use_regex\": true}"));
    jset(root, "post_processor",
         jparse("{\"type\": \"ByteLevel\", \"add_prefix_space\": true, "
                "\"trim_offsets\": false, \"use_regex\": true}"));
    jset(root, "decoder",
         jparse("{\"type\": \"ByteLevel\", \"add_prefix_space\": true, "
                "\"trim_offsets\": true, \"use_regex\": true}"));
    jset(model, "type", json_string("BPE"));
    jset(model, "dropout", json_null());
    jset(model, "unk_token", json_null());
    jset(model, "continuing_subword_prefix", json_string(""));
    jset(model, "end_of_word_suffix", json_string(""));
    jset(model, "fuse_unk", json_false());
    jset(model, "byte_fallback", json_false());
    jset(model, "vocab", vocab_object(v));
    jset(model, "merges", merges);
    jset(root, "model", model);
    return root;
}

/* Encodes random byte strings with both tokenizers; the ids must agree. */
static void same_ids(const tokenizer_t *a, const tokenizer_t *b,
                     const char *label) {
    static const unsigned char pool[] = {' ', ' ', 'a', 'e', 't', '\n', 0x00,
                                         0x80, 0xc3, 0xa9, 0xe2, 0x96, 0x81,
                                         0xff, 'H', '\'', '1', '2', '\t', 's'};
    uint64_t x = 0x2545f4914f6cdd1dull;
    int diff = 0;
    for (int it = 0; it < 2000 && diff < 3; it++) {
        char buf[64];
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        size_t n = (size_t)(x % 65);
        for (size_t i = 0; i < n; i++) {
            x ^= x << 13, x ^= x >> 7, x ^= x << 17;
            buf[i] = (x >> 32) & 1 ? (char)pool[(x >> 40) % sizeof pool]
                                   : (char)(x >> 48);
        }
        int32_t *ia = NULL, *ib = NULL;
        long ka = tt_encode(a, buf, n, 0, &ia), kb = tt_encode(b, buf, n, 0, &ib);
        int same = ka == kb && memcmp(ia, ib, (size_t)ka * sizeof *ia) == 0;
        if (!same) {
            diff++;
            fprintf(stderr, "%s: ids differ for ", label);
            tt_print_bytes(stderr, buf, n);
            fputc('\n', stderr);
            tt_print_ids(stderr, "a", ia, (size_t)ka);
            tt_print_ids(stderr, "b", ib, (size_t)kb);
        }
        free(ia);
        free(ib);
    }
    TU_CHECK(diff == 0, "%s: %d random texts encode differently", label, diff);
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

static void test_gpt2(void) {
    gvocab_t v = gvocab_open("vocab/ggml-vocab-gpt-2.gguf");
    tokenizer_t *gg = tt_open_gguf(tu_testdata("vocab/ggml-vocab-gpt-2.gguf"));
    tt_vectors_t vec;
    tt_vectors_load(&vec, "vocab/ggml-vocab-gpt-2.gguf");

    for (int pairs = 0; pairs <= 1; pairs++) {
        json_t *root = gpt2_json(&v, pairs);
        const char *path =
            write_json(pairs ? "gpt2-pairs.json" : "gpt2.json", root);
        json_decref(root);
        tokenizer_t *t = load_json(path);
        TU_CHECK(tokenizer_n_vocab(t) == 50257, "n_vocab");
        /* No TemplateProcessing: no BOS added; <|endoftext|> is both. */
        TU_CHECK(!tokenizer_adds_bos(t) && tokenizer_bos(t) == 50256 &&
                     tokenizer_eos(t) == 50256 &&
                     !tokenizer_adds_space_prefix(t),
                 "special tokens");
        size_t pass = tt_vectors_check(
            t, &vec, pairs ? "gpt-2 vectors (tokenizer.json, pair merges)"
                           : "gpt-2 vectors (tokenizer.json)");
        TU_CHECK(pass == vec.n, "%zu cases fail", vec.n - pass);
        same_ids(gg, t, "gpt-2 GGUF vs tokenizer.json");
        tokenizer_destroy(&t);
    }

    /* The same vocabulary under Llama 3's and Qwen2's pre-tokenizers, as
     * their tokenizer.json files write them (Split + ByteLevel without
     * regex), with ignore_merges and a BOS template (Llama 3). */
    static const struct {
        const char *label, *pattern;
        int ignore_merges;
        const char *text;
        const char *parts[8];
        size_t n_parts;
    } pre[] = {
        {"llama3", PRETOK_LLAMA3, 1, "1234567 hello\n\n",
         {"123", "456", "7", " hello", "\n\n"}, 5},
        {"qwen2", PRETOK_QWEN2, 0, "x 123 HE's",
         {"x", " ", "1", "2", "3", " HE", "'s"}, 7},
    };
    for (size_t i = 0; i < sizeof pre / sizeof pre[0]; i++) {
        json_t *root = gpt2_json(&v, 0);
        json_t *split = json_object(), *seq = json_object();
        json_t *steps = json_array(), *pat = json_object();
        jset(pat, "Regex", json_string(pre[i].pattern));
        jset(split, "type", json_string("Split"));
        jset(split, "pattern", pat);
        jset(split, "behavior", json_string("Isolated"));
        jset(split, "invert", json_false());
        json_array_append_new(steps, split);
        json_array_append_new(
            steps, jparse("{\"type\": \"ByteLevel\", \"add_prefix_space\": "
                          "false, \"trim_offsets\": true, \"use_regex\": "
                          "false}"));
        jset(seq, "type", json_string("Sequence"));
        jset(seq, "pretokenizers", steps);
        jset(root, "pre_tokenizer", seq);
        jset(root, "normalizer", jparse("{\"type\": \"NFC\"}"));
        jset(json_object_get(root, "model"), "ignore_merges",
             json_boolean(pre[i].ignore_merges));
        if (pre[i].ignore_merges)
            jset(root, "post_processor",
                 jparse("{\"type\": \"Sequence\", \"processors\": ["
                        "{\"type\": \"ByteLevel\", \"add_prefix_space\": "
                        "true, \"trim_offsets\": false, \"use_regex\": true},"
                        "{\"type\": \"TemplateProcessing\", \"single\": ["
                        "{\"SpecialToken\": {\"id\": \"<|endoftext|>\", "
                        "\"type_id\": 0}}, {\"Sequence\": {\"id\": \"A\", "
                        "\"type_id\": 0}}], \"pair\": [], \"special_tokens\": "
                        "{\"<|endoftext|>\": {\"id\": \"<|endoftext|>\", "
                        "\"ids\": [50256], \"tokens\": [\"<|endoftext|>\"]}}}"
                        "]}"));
        char name[64];
        snprintf(name, sizeof name, "gpt2-%s.json", pre[i].label);
        const char *path = write_json(name, root);
        json_decref(root);
        tokenizer_t *t = load_json(path);
        int32_t want[64];
        size_t n = encode_parts(gg, pre[i].parts, pre[i].n_parts, want, 64);
        TU_CHECK(tt_encodes_to(t, pre[i].text, strlen(pre[i].text), want, n),
                 "%s split", pre[i].label);
        TU_CHECK(tokenizer_adds_bos(t) == pre[i].ignore_merges,
                 "%s: BOS from the template", pre[i].label);
        TU_CHECK(tt_round_trips(t, vec.inp, strlen(vec.inp)),
                 "%s: round trip", pre[i].label);
        tokenizer_destroy(&t);
    }
    tt_vectors_free(&vec);
    tokenizer_destroy(&gg);
    gguf_destroy(&v.g);
}

/* ---- Llama SPM --------------------------------------------------------- */

typedef struct {
    float score;
    int32_t result, left, right;
} spm_merge_t;

static int spm_merge_cmp(const void *a, const void *b) {
    const spm_merge_t *x = a, *y = b;
    if (x->score != y->score) return x->score > y->score ? -1 : 1;
    if (x->result != y->result) return x->result < y->result ? -1 : 1;
    if (x->left != y->left) return x->left < y->left ? -1 : 1;
    return x->right < y->right ? -1 : x->right > y->right;
}

/* The merges `transformers`' SentencePieceExtractor makes from a
 * SentencePiece model: every split of every piece into two pieces, ordered
 * by the piece's score (highest first), then by piece id, then by the ids
 * of the two sides (the order Python's stable sort leaves them in). */
static json_t *spm_merges(const gvocab_t *v, json_t *vocab) {
    spm_merge_t *m = NULL;
    size_t n = 0, cap = 0;
    for (uint64_t i = 0; i < v->n; i++) {
        const char *s = v->tokens[i].ptr;
        size_t len = (size_t)v->tokens[i].len;
        for (size_t k = 1; k < len; k++) {
            const json_t *l = json_object_getn(vocab, s, k);
            const json_t *r = json_object_getn(vocab, s + k, len - k);
            if (!l || !r) continue;
            if (n == cap) {
                cap = cap ? 2 * cap : 4096;
                m = realloc(m, cap * sizeof *m);
                TU_REQUIRE(m != NULL, "out of memory");
            }
            m[n++] = (spm_merge_t){gguf_arr_f32(v->scores, i), (int32_t)i,
                                   (int32_t)json_integer_value(l),
                                   (int32_t)json_integer_value(r)};
        }
    }
    qsort(m, n, sizeof *m, spm_merge_cmp);
    json_t *a = json_array();
    for (size_t i = 0; i < n; i++) {
        json_t *pair = json_array();
        const gguf_str_t *l = &v->tokens[m[i].left], *r = &v->tokens[m[i].right];
        json_array_append_new(pair, jstr(l->ptr, (size_t)l->len));
        json_array_append_new(pair, jstr(r->ptr, (size_t)r->len));
        json_array_append_new(a, pair);
    }
    free(m);
    return a;
}

/* Llama 2's tokenizer.json (legacy: Prepend + Replace normaliser), from the
 * GGUF; with metaspace, the newer form (Metaspace pre-tokenizer,
 * prepend_scheme "first", no normaliser). */
static json_t *spm_json(const gvocab_t *v, int metaspace) {
    json_t *root = json_object(), *model = json_object(), *added = json_array();
    json_t *vocab = vocab_object(v);
    for (uint64_t i = 0; i < v->n; i++) {
        int32_t type = gguf_arr_i32(v->types, i);
        if (type == TOKENIZER_TYPE_CONTROL || type == TOKENIZER_TYPE_UNKNOWN) {
            char content[64];
            snprintf(content, sizeof content, "%.*s", (int)v->tokens[i].len,
                     v->tokens[i].ptr);
            json_array_append_new(added, added_token((int64_t)i, content, 1));
        }
    }
    jset(root, "version", json_string("1.0"));
    jset(root, "added_tokens", added);
    if (metaspace) {
        jset(root, "normalizer", json_null());
        jset(root, "pre_tokenizer",
             jparse("{\"type\": \"Metaspace\", \"replacement\": \"\\u2581\", "
                    "\"prepend_scheme\": \"first\", \"split\": false}"));
        jset(root, "decoder",
             jparse("{\"type\": \"Sequence\", \"decoders\": [{\"type\": "
                    "\"Metaspace\", \"replacement\": \"\\u2581\", "
                    "\"prepend_scheme\": \"first\", \"split\": false}, "
                    "{\"type\": \"ByteFallback\"}, {\"type\": \"Fuse\"}]}"));
    } else {
        jset(root, "normalizer",
             jparse("{\"type\": \"Sequence\", \"normalizers\": [{\"type\": "
                    "\"Prepend\", \"prepend\": \"\\u2581\"}, {\"type\": "
                    "\"Replace\", \"pattern\": {\"String\": \" \"}, "
                    "\"content\": \"\\u2581\"}]}"));
        jset(root, "pre_tokenizer", json_null());
        jset(root, "decoder",
             jparse("{\"type\": \"Sequence\", \"decoders\": [{\"type\": "
                    "\"Replace\", \"pattern\": {\"String\": \"\\u2581\"}, "
                    "\"content\": \" \"}, {\"type\": \"ByteFallback\"}, "
                    "{\"type\": \"Fuse\"}, {\"type\": \"Strip\", "
                    "\"content\": \" \", \"start\": 1, \"stop\": 0}]}"));
    }
    jset(root, "post_processor",
         jparse("{\"type\": \"TemplateProcessing\", \"single\": ["
                "{\"SpecialToken\": {\"id\": \"<s>\", \"type_id\": 0}}, "
                "{\"Sequence\": {\"id\": \"A\", \"type_id\": 0}}], "
                "\"pair\": [], \"special_tokens\": {\"<s>\": {\"id\": "
                "\"<s>\", \"ids\": [1], \"tokens\": [\"<s>\"]}}}"));
    jset(model, "type", json_string("BPE"));
    jset(model, "dropout", json_null());
    jset(model, "unk_token", json_string("<unk>"));
    jset(model, "continuing_subword_prefix", json_null());
    jset(model, "end_of_word_suffix", json_null());
    jset(model, "fuse_unk", json_true());
    jset(model, "byte_fallback", json_true());
    jset(model, "merges", spm_merges(v, vocab));
    jset(model, "vocab", vocab);
    jset(root, "model", model);
    return root;
}

static void test_spm(void) {
    gvocab_t v = gvocab_open("vocab/ggml-vocab-llama-spm.gguf");
    tokenizer_t *gg =
        tt_open_gguf(tu_testdata("vocab/ggml-vocab-llama-spm.gguf"));
    tt_vectors_t vec;
    tt_vectors_load(&vec, "vocab/ggml-vocab-llama-spm.gguf");

    json_t *root = spm_json(&v, 0);
    fprintf(stderr, "llama-spm: %zu merges made from the scores\n",
            json_array_size(json_object_get(json_object_get(root, "model"),
                                            "merges")));
    const char *path = write_json("llama-spm.json", root);
    json_decref(root);
    tokenizer_t *t = load_json(path);
    TU_CHECK(tokenizer_n_vocab(t) == 32000 && tokenizer_bos(t) == 1 &&
                 tokenizer_eos(t) == 2 && tokenizer_adds_bos(t) &&
                 tokenizer_adds_space_prefix(t),
             "special tokens");
    size_t pass = tt_vectors_check(t, &vec, "llama-spm vectors (tokenizer.json)");
    TU_CHECK(pass == vec.n, "%zu cases fail", vec.n - pass);
    same_ids(gg, t, "llama-spm GGUF vs tokenizer.json");
    int32_t *ids = NULL;
    long k = tt_encode(t, "Hello world", 11, 1, &ids);
    TU_CHECK(k == 3 && ids[0] == 1 && ids[1] == 15043 && ids[2] == 3186,
             "'Hello world' with BOS");
    free(ids);
    tokenizer_destroy(&t);

    /* Metaspace (prepend_scheme "first"): no dummy prefix before text that
     * starts with a space, so " Hello" is the legacy "Hello" (and " " is
     * the U+2581 token alone, where the legacy "" is nothing). */
    root = spm_json(&v, 1);
    path = write_json("llama-spm-metaspace.json", root);
    json_decref(root);
    t = load_json(path);
    for (size_t i = 0; i < vec.n; i++) {
        const tt_case_t *c = &vec.cases[i];
        static const int32_t space[] = {29871}; /* U+2581 */
        int lone_space = c->len == 1 && c->text[0] == ' ';
        size_t skip = c->len > 1 && c->text[0] == ' ';
        int32_t *legacy = NULL;
        long n = lone_space ? 0
                            : tt_encode(gg, c->text + skip, c->len - skip, 0,
                                        &legacy);
        TU_CHECK(lone_space ? tt_encodes_to(t, " ", 1, space, 1)
                            : tt_encodes_to(t, c->text, c->len, legacy,
                                            (size_t)n),
                 "metaspace case %zu", i);
        free(legacy);
    }
    tokenizer_destroy(&t);
    tt_vectors_free(&vec);
    tokenizer_destroy(&gg);
    gguf_destroy(&v.g);
}

/* ---- a small file: refusals, options, fuzz ------------------------------ */

/* A small valid byte-level tokenizer.json: the 256 byte characters, "ab",
 * "abc", a user-defined and a special added token. */
static json_t *small_json(void) {
    char buf[4096];
    size_t o = 0;
    o += (size_t)snprintf(buf + o, sizeof buf - o, "{");
    for (int b = 0; b < 256; b++) {
        char u[3];
        size_t k = bpe_byte_char((unsigned char)b, u);
        u[k] = '\0';
        const char *q = (u[0] == '"' || u[0] == '\\') ? "\\" : "";
        o += (size_t)snprintf(buf + o, sizeof buf - o, "%s\"%s%s\": %d",
                              b ? ", " : "", q, u, b);
    }
    o += (size_t)snprintf(buf + o, sizeof buf - o,
                          ", \"ab\": 256, \"abc\": 257}");
    json_t *vocab = jparse(buf);
    json_t *root = jparse(
        "{\"version\": \"1.0\", \"added_tokens\": ["
        "{\"id\": 258, \"content\": \"<pad>\", \"single_word\": false, "
        "\"lstrip\": false, \"rstrip\": false, \"normalized\": true, "
        "\"special\": false},"
        "{\"id\": 259, \"content\": \"<|end|>\", \"single_word\": false, "
        "\"lstrip\": false, \"rstrip\": false, \"normalized\": false, "
        "\"special\": true}],"
        "\"normalizer\": null,"
        "\"pre_tokenizer\": {\"type\": \"ByteLevel\", \"add_prefix_space\": "
        "false, \"trim_offsets\": true, \"use_regex\": true},"
        "\"post_processor\": {\"type\": \"ByteLevel\"},"
        "\"decoder\": {\"type\": \"ByteLevel\"},"
        "\"model\": {\"type\": \"BPE\", \"dropout\": null, \"unk_token\": "
        "null, \"continuing_subword_prefix\": null, \"end_of_word_suffix\": "
        "null, \"fuse_unk\": false, \"byte_fallback\": false, "
        "\"ignore_merges\": false, \"merges\": [\"a b\", [\"ab\", \"c\"]]}}");
    jset(json_object_get(root, "model"), "vocab", vocab);
    return root;
}

static tokenizer_t *from_json(const json_t *root, const char *name,
                              const tokenizer_json_opts_t *opts, char *err,
                              size_t errlen) {
    char *s = json_dumps(root, JSON_COMPACT);
    TU_REQUIRE(s != NULL, "json_dumps");
    tokenizer_t *t =
        tokenizer_new_json_buffer(s, strlen(s), name, opts, err, errlen);
    free(s);
    return t;
}

/* Sets root's member at a dotted path ("model.vocab.ab") to v (NULL:
 * deletes it). */
static void set_path(json_t *root, const char *path, json_t *v) {
    char buf[256];
    snprintf(buf, sizeof buf, "%s", path);
    json_t *o = root;
    char *key = buf, *dot;
    while ((dot = strchr(key, '.'))) {
        *dot = '\0';
        o = json_object_get(o, key);
        TU_REQUIRE(o != NULL, "no %s in %s", key, path);
        key = dot + 1;
    }
    if (v) jset(o, key, v);
    else json_object_del(o, key);
}

static void test_small_and_refusals(void) {
    char err[LOG_ERRLEN] = "";
    json_t *root = small_json();
    tokenizer_t *t = from_json(root, "small.json", NULL, err, sizeof err);
    TU_REQUIRE(t != NULL, "small.json: %s", err);
    TU_CHECK(tokenizer_n_vocab(t) == 260 && tokenizer_bos(t) == -1 &&
                 tokenizer_eos(t) == -1 && !tokenizer_adds_bos(t),
             "small: special tokens");
    TU_CHECK(tt_encodes_to(t, "abc<pad>ab <|end|>", 18,
                           (const int32_t[]){257, 258, 256, ' ', '<', '|',
                                             'e', 'n', 'd', '|', '>'},
                           11),
             "small: encode");
    tokenizer_destroy(&t);

    /* opts name BOS / EOS and force add_bos. */
    tokenizer_json_opts_t o = {.bos_token = "<|end|>", .eos_token = "<|end|>",
                               .add_bos = TOKENIZER_BOS_ADD};
    t = from_json(root, "small.json", &o, err, sizeof err);
    TU_CHECK(t && tokenizer_bos(t) == 259 && tokenizer_eos(t) == 259 &&
                 tokenizer_adds_bos(t),
             "opts: %s", t ? "wrong values" : err);
    tokenizer_destroy(&t);
    o = (tokenizer_json_opts_t){.bos_token = "nope"};
    t = from_json(root, "small.json", &o, err, sizeof err);
    TU_CHECK(!t && strstr(err, "BOS token \"nope\" is not in the vocabulary"),
             "opts bad BOS: %s", t ? "(accepted)" : err);
    tokenizer_destroy(&t);
    o = (tokenizer_json_opts_t){.add_bos = TOKENIZER_BOS_ADD};
    t = from_json(root, "small.json", &o, err, sizeof err);
    TU_CHECK(!t && strstr(err, "no BOS token"), "add_bos without BOS: %s",
             t ? "(accepted)" : err);
    tokenizer_destroy(&t);

    /* Each change to the small file, and the message it must give. */
    static const struct {
        const char *path, *value; /* value NULL: delete */
        const char *want;
    } bad[] = {
        {"model", "[]", "model must be an object, not an array"},
        {"model", NULL, "model must be an object, not missing"},
        {"model.type", "\"WordPiece\"", "model.type 'WordPiece' is not supported"},
        {"model.type", NULL, "model.type is missing"},
        {"model.vocab", "[]", "model.vocab must be an object"},
        {"model.vocab", "{}", "model.merges[0]: \"a\" is not in model.vocab"},
        {"model.vocab.ab", "\"256\"", "model.vocab[\"ab\"] must be an integer id"},
        {"model.vocab.ab", "-1", "model.vocab[\"ab\"]: id -1 is out of range"},
        {"model.vocab.ab", "2.5", "must be an integer id, not a number"},
        {"model.vocab.ab", "100000000", "id 100000000 is out of range for"},
        {"model.vocab.ab", "257", "both have id 257"},
        {"model.merges", "{}", "model.merges must be an array"},
        {"model.merges", "[\"a b c\"]", "model.merges[0] (\"a b c\") must hold exactly one space"},
        {"model.merges", "[\"ab\"]", "must hold exactly one space"},
        {"model.merges", "[7]", "model.merges[0] must be \"left right\" or"},
        {"model.merges", "[[\"a\"]]", "model.merges[0] must be"},
        {"model.merges", "[\"a zz\"]", "model.merges[0]: \"zz\" is not in model.vocab"},
        {"model.merges", "[\"x y\"]", "model.merges[0]: \"xy\" (\"x\" + \"y\") is not in model.vocab"},
        {"model.dropout", "0.1", "model.dropout must be null"},
        {"model.byte_fallback", "true", "byte_fallback with a ByteLevel"},
        {"model.byte_fallback", "1", "model.byte_fallback must be a boolean"},
        {"model.unk_token", "\"<unk>\"", "model.unk_token \"<unk>\" is not a token"},
        {"model.unk_token", "5", "model.unk_token must be a string"},
        {"model.continuing_subword_prefix", "\"##\"", "continuing_subword_prefix is not supported"},
        {"added_tokens", "{}", "added_tokens must be an array"},
        {"added_tokens", "[5]", "added_tokens[0] must be an object"},
        {"added_tokens", "[{\"id\": \"x\", \"content\": \"q\"}]", "added_tokens[0] must be an integer id"},
        {"added_tokens", "[{\"id\": 300}]", "added_tokens[0].content must be a non-empty string"},
        {"added_tokens", "[{\"id\": 300, \"content\": \"\"}]", "content must be a non-empty string"},
        {"added_tokens", "[{\"id\": 256, \"content\": \"<x>\"}]", "id 256 is \"<x>\" here but \"ab\" in model.vocab"},
        {"added_tokens", "[{\"id\": 300, \"content\": \"ab\"}]", "\"ab\" has id 300 here but 256 in model.vocab"},
        {"added_tokens", "[{\"id\": 300, \"content\": \"<x>\"}, {\"id\": 300, \"content\": \"<y>\"}]", "added_tokens[1]: id 300 is given to two added tokens"},
        {"added_tokens", "[{\"id\": 300, \"content\": \"<x>\"}, {\"id\": 301, \"content\": \"<x>\"}]", "added_tokens[1]: \"<x>\" is added twice"},
        {"added_tokens", "[{\"id\": 300, \"content\": \"<x>\", \"special\": \"yes\"}]", "added_tokens[0].special must be a boolean"},
        {"added_tokens", "[{\"id\": 300, \"content\": \"<x>\", \"lstrip\": true}]", "added_tokens[0]: single_word, lstrip or rstrip on a token that is not special"},
        {"pre_tokenizer", "\"ByteLevel\"", "pre_tokenizer must be an object or null, not a string"},
        {"pre_tokenizer", "null", "neither byte-level"},
        {"pre_tokenizer", "{\"type\": \"Sequence\", \"pretokenizers\": [{\"type\": \"Whitespace\"}, {\"type\": \"ByteLevel\"}]}",
         "pre_tokenizer.pretokenizers[0]: pre-tokenizer type 'Whitespace' is not supported"},
        {"pre_tokenizer", "{\"type\": \"Sequence\", \"pretokenizers\": [{\"type\": \"ByteLevel\"}, {\"type\": \"Sequence\", \"pretokenizers\": {}}]}",
         "pre_tokenizer.pretokenizers[1].pretokenizers must be an array"},
        {"pre_tokenizer", "{\"type\": \"Sequence\", \"pretokenizers\": [{\"type\": \"Split\", \"pattern\": {\"Regex\": \"a\"}, \"behavior\": \"Removed\"}, {\"type\": \"ByteLevel\"}]}",
         "behavior 'Removed' is not supported"},
        {"pre_tokenizer", "{\"type\": \"Sequence\", \"pretokenizers\": [{\"type\": \"Split\", \"pattern\": {\"Regex\": \"(\"}, \"behavior\": \"Isolated\"}, {\"type\": \"ByteLevel\"}]}",
         "does not compile"},
        {"pre_tokenizer", "{\"type\": \"Sequence\", \"pretokenizers\": [{\"type\": \"Split\", \"pattern\": {\"Regex\": \"a\"}, \"behavior\": \"Isolated\", \"invert\": true}, {\"type\": \"ByteLevel\"}]}",
         "invert true is not supported"},
        {"pre_tokenizer", "{\"type\": \"Sequence\", \"pretokenizers\": [{\"type\": \"Split\", \"pattern\": \"a\", \"behavior\": \"Isolated\"}, {\"type\": \"ByteLevel\"}]}",
         "pattern must be {\"Regex\": ...} or {\"String\": ...}"},
        {"pre_tokenizer", "{\"type\": \"Sequence\", \"pretokenizers\": [{\"type\": \"Digits\"}, {\"type\": \"ByteLevel\", \"add_prefix_space\": true}]}",
         "add_prefix_space on a ByteLevel step after another step"},
        {"pre_tokenizer", "{\"type\": \"ByteLevel\", \"use_regex\": \"yes\"}", "pre_tokenizer.use_regex must be a boolean"},
        {"pre_tokenizer", "{\"kind\": \"ByteLevel\"}", "neither byte-level"},
        {"normalizer", "{\"type\": \"Lowercase\"}", "normalizer type 'Lowercase' is not supported"},
        {"normalizer", "{\"type\": \"Sequence\", \"normalizers\": [{\"type\": \"NFC\"}, {\"type\": \"NFKC\"}]}", "normalizer.normalizers[1]: normalizer type 'NFKC'"},
        {"post_processor", "{\"type\": \"BertProcessing\"}", "post-processor type 'BertProcessing' is not supported"},
        {"post_processor", "{\"type\": \"TemplateProcessing\", \"single\": [{\"Sequence\": {\"id\": \"A\"}}, {\"SpecialToken\": {\"id\": \"<|end|>\"}}], \"special_tokens\": {\"<|end|>\": {\"ids\": [259]}}}",
         "an appended EOS"},
        {"post_processor", "{\"type\": \"TemplateProcessing\", \"single\": [{\"SpecialToken\": {\"id\": \"<|end|>\"}}, {\"Sequence\": {\"id\": \"A\"}}], \"special_tokens\": {\"<|end|>\": {\"ids\": [999]}}}",
         "id 999 is not in the vocabulary"},
        {"post_processor", "{\"type\": \"TemplateProcessing\", \"single\": [{\"SpecialToken\": {\"id\": \"<|end|>\"}}, {\"Sequence\": {\"id\": \"A\"}}], \"special_tokens\": {}}",
         "special_tokens[\"<|end|>\"].ids must hold one id"},
        {"post_processor", "{\"type\": \"TemplateProcessing\", \"single\": []}", "single has no Sequence \"A\""},
        {"post_processor", "{\"type\": \"TemplateProcessing\"}", "post_processor.single must be an array"},
        {"decoder", "{\"type\": \"WordPiece\"}", "decoder type 'WordPiece' is not supported"},
        {"decoder", "{\"type\": 5}", "decoder.type must be a string"},
        {"decoder", "{}", "decoder has no \"type\""},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        json_t *r = json_deep_copy(root);
        set_path(r, bad[i].path, bad[i].value ? jparse(bad[i].value) : NULL);
        err[0] = '\0';
        t = from_json(r, "bad.json", NULL, err, sizeof err);
        TU_CHECK(t == NULL && strstr(err, bad[i].want) &&
                     strncmp(err, "bad.json: ", 10) == 0,
                 "change %zu (%s): want \"%s\", got \"%s\"", i, bad[i].path,
                 bad[i].want, t ? "(accepted)" : err);
        tokenizer_destroy(&t);
        json_decref(r);
    }

    /* Sequences nested ten deep. */
    {
        json_t *r = json_deep_copy(root);
        json_t *inner = jparse("{\"type\": \"ByteLevel\"}");
        for (int d = 0; d < 10; d++) {
            json_t *seq = json_object(), *steps = json_array();
            json_array_append_new(steps, inner);
            jset(seq, "type", json_string("Sequence"));
            jset(seq, "pretokenizers", steps);
            inner = seq;
        }
        set_path(r, "pre_tokenizer", inner);
        t = from_json(r, "deep.json", NULL, err, sizeof err);
        TU_CHECK(!t && strstr(err, "deep.json: ") &&
                     strstr(err, "nested too deep"),
                 "deep Sequences: %s", t ? "(accepted)" : err);
        tokenizer_destroy(&t);
        json_decref(r);
    }

    /* SentencePiece-style files that are not complete. */
    {
        json_t *r = json_deep_copy(root);
        set_path(r, "pre_tokenizer", json_null());
        set_path(r, "model.byte_fallback", json_true());
        t = from_json(r, "spm.json", NULL, err, sizeof err);
        TU_CHECK(!t && strstr(err, "needs spaces written as U+2581"),
                 "spm without Replace: %s", t ? "(accepted)" : err);
        tokenizer_destroy(&t);
        set_path(r, "pre_tokenizer",
                 jparse("{\"type\": \"Metaspace\", \"replacement\": "
                        "\"\\u2581\", \"prepend_scheme\": \"first\"}"));
        t = from_json(r, "spm.json", NULL, err, sizeof err);
        TU_CHECK(!t && strstr(err, "split true"), "metaspace split: %s",
                 t ? "(accepted)" : err);
        tokenizer_destroy(&t);
        set_path(r, "model.ignore_merges", json_true());
        t = from_json(r, "spm.json", NULL, err, sizeof err);
        TU_CHECK(!t && strstr(err, "model.ignore_merges with SentencePiece"),
                 "spm ignore_merges: %s", t ? "(accepted)" : err);
        tokenizer_destroy(&t);
        json_decref(r);
    }

    /* Raw text the JSON parser refuses. */
    static const char *raw[][2] = {
        {"", "not valid JSON"},
        {"{", "not valid JSON"},
        {"[1, 2]", "the top level must be an object, not an array"},
        {"{\"model\": 1, \"model\": 2}", "duplicate object key"},
        {"{\"model\": {\"vocab\": {\"a\\u0000\": 0}}}", "not valid JSON"},
    };
    for (size_t i = 0; i < sizeof raw / sizeof raw[0]; i++) {
        t = tokenizer_new_json_buffer(raw[i][0], strlen(raw[i][0]), "raw.json",
                                      NULL, err, sizeof err);
        TU_CHECK(!t && strstr(err, raw[i][1]) && strstr(err, "raw.json"),
                 "raw %zu: want \"%s\", got \"%s\"", i, raw[i][1],
                 t ? "(accepted)" : err);
        tokenizer_destroy(&t);
    }
    t = tokenizer_new_json("/nonexistent/tokenizer.json", err, sizeof err);
    TU_CHECK(!t && strstr(err, "/nonexistent/tokenizer.json: cannot open"),
             "missing file: %s", err);
    tokenizer_destroy(&t);
    t = tokenizer_new_json(g_dir, err, sizeof err);
    TU_CHECK(!t && strstr(err, "not a regular file"), "directory: %s", err);
    tokenizer_destroy(&t);
    json_decref(root);
}

/* ---- fuzz ---------------------------------------------------------------- */

static uint64_t g_rng = 0x853c49e6748fea9bull;
static uint64_t rnd(void) {
    g_rng ^= g_rng << 13, g_rng ^= g_rng >> 7, g_rng ^= g_rng << 17;
    return g_rng;
}

/* Replaces a random value somewhere in v (an object or array) with a value
 * of a random type, or deletes it. */
static void mutate_value(json_t *v, int depth) {
    size_t n = json_is_object(v) ? json_object_size(v)
               : json_is_array(v) ? json_array_size(v) : 0;
    if (n == 0) return;
    size_t pick = (size_t)(rnd() % n);
    json_t *child;
    const char *key = NULL;
    if (json_is_object(v)) {
        void *it = json_object_iter(v);
        for (size_t i = 0; i < pick; i++) it = json_object_iter_next(v, it);
        key = json_object_iter_key(it);
        child = json_object_iter_value(it);
    } else {
        child = json_array_get(v, pick);
    }
    if (depth < 6 && (json_is_object(child) || json_is_array(child)) &&
        rnd() % 4 != 0) {
        mutate_value(child, depth + 1);
        return;
    }
    static const char *const repl[] = {
        "null", "0", "-1", "2147483647", "4294967296", "1e300", "\"\"",
        "\"x\"", "\"a b\"", "[]", "{}", "true", "false", "[[1]]",
        "{\"type\": \"Sequence\"}", "{\"type\": \"ByteLevel\"}", "\"Isolated\"",
        "[\"ab\", \"c\"]", "259", "258", "\"<pad>\"",
    };
    json_t *r = json_loads(repl[rnd() % (sizeof repl / sizeof *repl)],
                           JSON_DECODE_ANY, NULL);
    int del = rnd() % 8 == 0;
    if (json_is_object(v)) {
        if (del) json_object_del(v, key);
        else json_object_set_new(v, key, r), r = NULL;
    } else {
        if (del) json_array_remove(v, pick);
        else json_array_set_new(v, pick, r), r = NULL;
    }
    json_decref(r);
}

static void test_fuzz(void) {
    json_t *root = small_json();
    char *base = json_dumps(root, JSON_COMPACT);
    TU_REQUIRE(base != NULL, "json_dumps");
    size_t n = strlen(base);
    char *buf = malloc(n + 1);
    TU_REQUIRE(buf != NULL, "out of memory");
    static const char interesting[] = "\"{}[],:0-9enlt \\";
    int accepted = 0, iters = 3000;
    for (int it = 0; it < iters; it++) {
        size_t len = n;
        char *text = buf;
        char *dumped = NULL;
        memcpy(buf, base, n + 1);
        switch (it % 3) {
        case 0: /* truncation */
            len = (size_t)(rnd() % (n + 1));
            break;
        case 1: /* byte flips */
            for (int k = 1 + (int)(rnd() % 4); k > 0; k--) {
                size_t at = (size_t)(rnd() % n);
                buf[at] = rnd() % 2 ? interesting[rnd() % (sizeof interesting - 1)]
                                    : (char)rnd();
            }
            break;
        default: { /* a value of another type */
            json_t *r = json_deep_copy(root);
            for (int k = 1 + (int)(rnd() % 3); k > 0; k--) mutate_value(r, 0);
            dumped = json_dumps(r, JSON_COMPACT);
            json_decref(r);
            TU_REQUIRE(dumped != NULL, "json_dumps");
            text = dumped;
            len = strlen(dumped);
        }
        }
        char err[LOG_ERRLEN] = "";
        tokenizer_t *t =
            tokenizer_new_json_buffer(text, len, "fuzz.json", NULL, err,
                                      sizeof err);
        if (t) {
            accepted++;
            /* Whatever was accepted must work. */
            static const char probe[] = "abc <pad> x\xff\n 12";
            int32_t *ids = NULL;
            long k = tokenizer_encode(t, probe, sizeof probe - 1, 1, &ids,
                                      err, sizeof err);
            TU_CHECK(k >= 0, "fuzz %d: encode failed: %s", it, err);
            for (long j = 0; j < k; j++)
                TU_CHECK(ids[j] >= 0 && ids[j] < tokenizer_n_vocab(t),
                         "fuzz %d: id %ld", it, (long)ids[j]);
            char *dec = k >= 0 ? tokenizer_decode(t, ids, (size_t)k, 1, NULL)
                               : NULL;
            free(dec);
            free(ids);
            tokenizer_destroy(&t);
        } else {
            TU_CHECK(strncmp(err, "fuzz.json: ", 11) == 0 &&
                         strlen(err) > 11,
                     "fuzz %d: error without the file's name: \"%s\"", it,
                     err);
        }
        free(dumped);
    }
    fprintf(stderr, "fuzz: %d of %d mutated files accepted, the rest "
                    "refused cleanly\n",
            accepted, iters);
    free(buf);
    free(base);
    json_decref(root);
}

static void remove_temp_dir(void) {
    static const char *const names[] = {
        "gpt2.json", "gpt2-pairs.json", "gpt2-llama3.json",
        "gpt2-qwen2.json", "llama-spm.json", "llama-spm-metaspace.json"};
    char path[640];
    for (size_t i = 0; i < sizeof names / sizeof *names; i++) {
        snprintf(path, sizeof path, "%s/%s", g_dir, names[i]);
        unlink(path);
    }
    rmdir(g_dir);
}

int main(void) {
    make_temp_dir();
    /* Needs no files. */
    test_small_and_refusals();
    test_fuzz();
    /* The rest needs TOKSHIFT_TESTDATA; without it the test skips, unless
     * what ran above already failed. */
    const char *root = getenv("TOKSHIFT_TESTDATA");
    if (!root || !*root) {
        remove_temp_dir();
        if (tu_failures) return tu_finish("test_tokenizer_json");
        fprintf(stderr, "skip: TOKSHIFT_TESTDATA is not set\n");
        return 77;
    }
    test_gpt2();
    test_spm();
    remove_temp_dir();
    return tu_finish("test_tokenizer_json");
}
