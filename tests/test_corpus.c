/* test_corpus.c - the corpus reader on fixtures it writes itself (plain,
 * gzip via zlib, zstd via ZSTD_compress) in a mkdtemp folder: JSONL field
 * selection, ids and metadata, every kind of bad line, text files, long and
 * over-long lines, compressed streams with several frames/members, truncated
 * and corrupt streams, glob and directory expansion, and the UTF-8 checker.
 * It needs no reference data and no network. */
#include <errno.h>
#include <jansson.h>
#include <unistd.h>
#include <zlib.h>
#include <zstd.h>

#include "corpus.h"
#include "utf8.h"
#include "log.h"
#include "testutil.h"

static char g_dir[256];

/* "dir/name" in one of eight rotating static buffers. */
static const char *tp(const char *name) {
    static char bufs[8][512];
    static int k = 0;
    char *b = bufs[k++ % 8];
    snprintf(b, sizeof bufs[0], "%s/%s", g_dir, name);
    return b;
}

static void write_file(const char *path, const void *data, size_t n) {
    FILE *f = fopen(path, "wb");
    TU_REQUIRE(f, "cannot write %s: %s", path, strerror(errno));
    size_t w = fwrite(data, 1, n, f); /* TU_REQUIRE evaluates its condition twice */
    TU_REQUIRE(w == n, "short write %s", path);
    fclose(f);
}

static void write_str(const char *path, const char *s) { write_file(path, s, strlen(s)); }

/* gzip with one member per part (the later ones appended: "ab"). */
static void write_gz(const char *path, const char *const *parts, const size_t *lens, int n_parts) {
    for (int i = 0; i < n_parts; i++) {
        gzFile g = gzopen(path, i ? "ab" : "wb");
        TU_REQUIRE(g, "gzopen %s", path);
        int w = gzwrite(g, parts[i], (unsigned)lens[i]);
        int cl = gzclose(g);
        TU_REQUIRE(w == (int)lens[i] && cl == Z_OK, "gzwrite/gzclose %s", path);
    }
}

/* zstd with one frame per part; the compressed bytes are returned (malloc'd)
 * when out is not NULL. */
static void write_zst(const char *path, const char *const *parts, const size_t *lens, int n_parts, char **out,
                      size_t *out_len) {
    size_t cap = 0;
    for (int i = 0; i < n_parts; i++) cap += ZSTD_compressBound(lens[i]);
    char *buf = malloc(cap ? cap : 1);
    size_t n = 0;
    for (int i = 0; i < n_parts; i++) {
        size_t r = ZSTD_compress(buf + n, cap - n, parts[i], lens[i], 3);
        TU_REQUIRE(!ZSTD_isError(r), "ZSTD_compress: %s", ZSTD_getErrorName(r));
        n += r;
    }
    write_file(path, buf, n);
    if (out) {
        *out = buf;
        *out_len = n;
    } else {
        free(buf);
    }
}

typedef struct {
    corpus_doc_t *v;
    size_t n;
} docs_t;

static void docs_free(docs_t *d) {
    for (size_t i = 0; i < d->n; i++) corpus_doc_clear(&d->v[i]);
    free(d->v);
    memset(d, 0, sizeof *d);
}

/* Every document of the patterns; fails the test when the stream fails. */
static docs_t read_all(const char *const *pats, size_t np, const corpus_opts_t *o) {
    char err[LOG_ERRLEN];
    corpus_t *c = corpus_open(pats, np, o, err, sizeof err);
    TU_REQUIRE(c, "corpus_open: %s", err);
    docs_t d = {0};
    corpus_doc_t doc = {0};
    int r;
    while ((r = corpus_next(c, &doc, err, sizeof err)) == 1) {
        TU_REQUIRE(doc.source && doc.ext_id && doc.metadata, "document fields always set");
        TU_REQUIRE((doc.text == NULL) != (doc.error == NULL), "text xor error (%s)", doc.source);
        d.v = realloc(d.v, (d.n + 1) * sizeof *d.v);
        d.v[d.n++] = doc;
        memset(&doc, 0, sizeof doc);
    }
    TU_REQUIRE(r == 0, "corpus_next: %s", err);
    TU_CHECK(corpus_next(c, &doc, err, sizeof err) == 0, "the end stays the end");
    corpus_destroy(&c);
    TU_CHECK(c == NULL, "destroy clears the pointer");
    return d;
}

static docs_t read_one(const char *pattern, const corpus_opts_t *o) { return read_all(&pattern, 1, o); }

/* A usable document with these fields (NULL: not checked). */
static void expect_ok(const docs_t *d, size_t i, const char *source, const char *ext_id, const char *text,
                      const char *meta) {
    TU_REQUIRE(i < d->n, "document %zu missing (%zu documents)", i, d->n);
    const corpus_doc_t *x = &d->v[i];
    TU_CHECK(x->error == NULL, "doc %zu (%s): unexpected error: %s", i, x->source, x->error);
    if (source) TU_CHECK(strcmp(x->source, source) == 0, "doc %zu source '%s', want '%s'", i, x->source, source);
    if (ext_id) TU_CHECK(strcmp(x->ext_id, ext_id) == 0, "doc %zu ext_id '%s', want '%s'", i, x->ext_id, ext_id);
    if (text && x->text)
        TU_CHECK(x->text_len == strlen(text) && strcmp(x->text, text) == 0, "doc %zu text '%.80s', want '%.80s'", i,
                 x->text, text);
    if (meta) TU_CHECK(strcmp(x->metadata, meta) == 0, "doc %zu metadata\n  %s\nwant\n  %s", i, x->metadata, meta);
}

/* An errored document whose error contains every given substring. */
static void expect_err(const docs_t *d, size_t i, const char *source, const char *sub1, const char *sub2) {
    TU_REQUIRE(i < d->n, "document %zu missing (%zu documents)", i, d->n);
    const corpus_doc_t *x = &d->v[i];
    TU_CHECK(x->error != NULL && x->text == NULL, "doc %zu (%s): expected an error", i, x->source);
    if (!x->error) return;
    if (source) TU_CHECK(strcmp(x->source, source) == 0, "doc %zu source '%s', want '%s'", i, x->source, source);
    TU_CHECK(strncmp(x->error, x->source, strlen(x->source)) == 0, "doc %zu error starts with its source: %s", i,
             x->error);
    if (sub1) TU_CHECK(strstr(x->error, sub1) != NULL, "doc %zu error '%s' lacks '%s'", i, x->error, sub1);
    if (sub2) TU_CHECK(strstr(x->error, sub2) != NULL, "doc %zu error '%s' lacks '%s'", i, x->error, sub2);
}

static char *src_of(const char *file, int line) {
    static char b[4][600];
    static int k = 0;
    char *s = b[k++ % 4];
    snprintf(s, sizeof b[0], "%s/%s:%d", g_dir, file, line);
    return s;
}

static void test_utf8(void) {
    static const struct {
        const char *s;
        size_t n;
        long want;
    } t[] = {
        {"", 0, -1},
        {"hello", 5, -1},
        {"\x7f", 1, -1},
        {"\xc2\x80", 2, -1},             /* U+0080 */
        {"\xdf\xbf", 2, -1},             /* U+07FF */
        {"\xe0\xa0\x80", 3, -1},         /* U+0800 */
        {"\xed\x9f\xbf", 3, -1},         /* U+D7FF */
        {"\xee\x80\x80", 3, -1},         /* U+E000 */
        {"\xef\xbf\xbf", 3, -1},         /* U+FFFF */
        {"\xf0\x90\x80\x80", 4, -1},     /* U+10000 */
        {"\xf4\x8f\xbf\xbf", 4, -1},     /* U+10FFFF */
        {"a\xc3\xa9z\xe2\x82\xac\xf0\x9f\x98\x80", 11, -1},
        {"\xc0\x80", 2, 0},              /* overlong NUL */
        {"\xc1\xbf", 2, 0},              /* overlong */
        {"\xe0\x80\x80", 3, 0},          /* overlong */
        {"\xe0\x9f\xbf", 3, 0},          /* overlong */
        {"\xf0\x80\x80\x80", 4, 0},      /* overlong */
        {"\xf0\x8f\xbf\xbf", 4, 0},      /* overlong */
        {"\xed\xa0\x80", 3, 0},          /* surrogate D800 */
        {"\xed\xbf\xbf", 3, 0},          /* surrogate DFFF */
        {"\xf4\x90\x80\x80", 4, 0},      /* U+110000 */
        {"\xf5\x80\x80\x80", 4, 0},
        {"\xff", 1, 0},
        {"\xfe", 1, 0},
        {"\x80", 1, 0},                  /* lone continuation */
        {"ab\xc3", 3, 2},                /* truncated */
        {"ab\xe2\x82", 4, 2},            /* truncated */
        {"ab\xf0\x9f\x98", 5, 2},        /* truncated */
        {"\xc3\x28", 2, 0},              /* bad continuation */
        {"\xe2\x28\xa1", 3, 0},
        {"\xe2\x82\x28", 3, 0},
        {"\xf0\x9f\x98\x28", 4, 0},
        {"0123456789abcdef\xff", 17, 16}, /* after the ASCII fast path */
        {"0123456\xc3\xa9\xff", 10, 9},  /* a multibyte char across the 8-byte step */
    };
    for (size_t i = 0; i < sizeof t / sizeof *t; i++) {
        long got = utf8_invalid_at(t[i].s, t[i].n);
        TU_CHECK(got == t[i].want, "utf8 case %zu: %ld, want %ld", i, got, t[i].want);
    }
}

/* Whether v is a JSON string equal to want. */
static int str_is(const json_t *v, const char *want) {
    return v && json_is_string(v) && strcmp(json_string_value(v), want) == 0;
}

static void test_jsonl(void) {
    const char *lines =
        "{\"id\":\"d1\",\"text\":\"hello\",\"meta\":{\"k\":\"v\"}}\n"           /* 1 */
        "{\"id\":42,\"text\":\"numeric id\"}\n"                                 /* 2 */
        "{\"text\":\"no id\",\"lang\":\"en\"}\n"                                /* 3 */
        "\n"                                                                    /* 4 */
        "  \t \n"                                                               /* 5 */
        "{\"id\":\"d6\",\"text\":\"x\"\n"                                       /* 6 malformed */
        "[1,2,3]\n"                                                             /* 7 */
        "{\"id\":\"d8\",\"body\":\"x\"}\n"                                      /* 8 no text */
        "{\"id\":\"d9\",\"text\":5}\n"                                          /* 9 */
        "{\"id\":\"d10\",\"text\":\"bad \xff utf8\"}\n"                         /* 10 */
        "{\"id\":\"d11\",\"text\":\"nul \\u0000 here\"}\n"                      /* 11 */
        "{\"id\":1.5,\"text\":\"x\"}\n"                                         /* 12 */
        "{\"id\":null,\"text\":\"x\"}\n"                                        /* 13 */
        "{\"id\":\"d14\",\"text\":\"crlf\"}\r\n"                                /* 14 */
        "{\"id\": \"d15\", \"text\": \"m\", \"uni\": \"h\xc3\xa9llo \xe2\x9c\x93 \xf0\x9f\x98\x80\","
        " \"q\": \"say \\\"hi\\\"\", \"bs\": \"a\\\\b\", \"nested\": {\"a\": [1, {\"b\": null}], \"c\": true},"
        " \"f\": 0.1, \"e\": 1E5, \"big\": 123456789012345678901234567890, \"esc\": \"\\u00e9\\/\\n\"}\n" /* 15 */
        "{\"id\":12345678901234567890,\"text\":\"big id\"}\n"                   /* 16 */
        "{\"id\":-7,\"text\":\"a\\nb\\t\\u00e9\\ud83d\\ude00\"}\n"              /* 17 */
        "{\"id\":\"\",\"text\":\"x\"}\n"                                        /* 18 */
        "{\"id\":\"d19\",\"text\":\"x\",\"m\":\"a\\u0000b\"}\n"                 /* 19 */
        "{\"id\":\"d20\",\"text\":\"\\ud800\"}\n"                               /* 20 lone surrogate */
        "{\"te\\u0078t\":\"escaped key\",\"id\":\"d21\"}\n"                     /* 21 */
        "{\"id\":\"d22\",\"text\":\"\"}\n"                                      /* 22 empty text */
        "\"just a string\"\n"                                                   /* 23 */
        "{\"id\":\"dup\",\"text\":\"one\"}\n"                                   /* 24 */
        "{\"id\":\"dup\",\"text\":\"two\"}\n"                                   /* 25 */
        "{\"id\":\"d26\",\"text\":\"final, no newline\"}";                      /* 26 */
    write_str(tp("a.jsonl"), lines);
    docs_t d = read_one(tp("a.jsonl"), NULL);
    size_t i = 0;
    expect_ok(&d, i++, src_of("a.jsonl", 1), "d1", "hello", "{\"meta\":{\"k\":\"v\"}}");
    expect_ok(&d, i++, src_of("a.jsonl", 2), "42", "numeric id", "{}");
    expect_ok(&d, i++, src_of("a.jsonl", 3), src_of("a.jsonl", 3), "no id", "{\"lang\":\"en\"}");
    expect_err(&d, i++, src_of("a.jsonl", 6), "malformed JSON: ", NULL);
    expect_err(&d, i++, src_of("a.jsonl", 7), "an array", "not a JSON object");
    expect_err(&d, i++, src_of("a.jsonl", 8), "no \"text\" field", NULL);
    TU_CHECK(d.n > 5 && strcmp(d.v[5].ext_id, "d8") == 0, "an errored line keeps its id");
    TU_CHECK(d.n > 5 && strcmp(d.v[5].metadata, "{\"body\":\"x\"}") == 0, "and its metadata");
    expect_err(&d, i++, src_of("a.jsonl", 9), "\"text\" is a number", "not a string");
    expect_err(&d, i++, src_of("a.jsonl", 10), "invalid UTF-8 at byte offset 24", "ff");
    expect_err(&d, i++, src_of("a.jsonl", 11), "NUL", "at byte offset 4");
    expect_err(&d, i++, src_of("a.jsonl", 12), "id field \"id\" is 1.5", NULL);
    expect_err(&d, i++, src_of("a.jsonl", 13), "id field \"id\" is null", NULL);
    expect_ok(&d, i++, src_of("a.jsonl", 14), "d14", "crlf", "{}");
    expect_ok(&d, i++, src_of("a.jsonl", 15), "d15", "m",
              "{\"uni\":\"h\xc3\xa9llo \xe2\x9c\x93 \xf0\x9f\x98\x80\",\"q\":\"say \\\"hi\\\"\",\"bs\":\"a\\\\b\","
              "\"nested\":{\"a\":[1,{\"b\":null}],\"c\":true},\"f\":0.1,\"e\":1E5,"
              "\"big\":123456789012345678901234567890,\"esc\":\"\\u00e9\\/\\n\"}");
    if (d.n > 12) { /* the metadata parses back to the same values */
        json_error_t je;
        json_t *m = json_loads(d.v[12].metadata, JSON_DECODE_INT_AS_REAL, &je);
        TU_CHECK(m && json_is_object(m), "metadata parses: %s", m ? "" : je.text);
        if (m) {
            TU_CHECK(str_is(json_object_get(m, "uni"), "h\xc3\xa9llo \xe2\x9c\x93 \xf0\x9f\x98\x80"), "unicode value");
            TU_CHECK(str_is(json_object_get(m, "q"), "say \"hi\""), "quotes value");
            TU_CHECK(str_is(json_object_get(m, "bs"), "a\\b"), "backslash value");
            TU_CHECK(str_is(json_object_get(m, "esc"), "\xc3\xa9/\n"), "escapes value");
            TU_CHECK(json_real_value(json_object_get(m, "f")) == 0.1, "real value");
            TU_CHECK(json_object_size(m) == 8, "no text/id in metadata (%zu members)", json_object_size(m));
            json_decref(m);
        }
    }
    expect_ok(&d, i++, src_of("a.jsonl", 16), "12345678901234567890", "big id", "{}");
    expect_ok(&d, i++, src_of("a.jsonl", 17), "-7", "a\nb\t\xc3\xa9\xf0\x9f\x98\x80", "{}");
    expect_err(&d, i++, src_of("a.jsonl", 18), "empty string", NULL);
    expect_err(&d, i++, src_of("a.jsonl", 19), "\\u0000", "jsonb");
    TU_CHECK(d.n >= i && strcmp(d.v[i - 1].ext_id, "d19") == 0, "the id of a line with a bad metadata field");
    expect_err(&d, i++, src_of("a.jsonl", 20), "malformed JSON", "invalid Unicode");
    expect_ok(&d, i++, src_of("a.jsonl", 21), "d21", "escaped key", "{}");
    expect_ok(&d, i++, src_of("a.jsonl", 22), "d22", "", "{}");
    expect_err(&d, i++, src_of("a.jsonl", 23), "a string", "not a JSON object");
    expect_ok(&d, i++, src_of("a.jsonl", 24), "dup", "one", "{}");
    expect_ok(&d, i++, src_of("a.jsonl", 25), "dup", "two", "{}");
    expect_ok(&d, i++, src_of("a.jsonl", 26), "d26", "final, no newline", "{}");
    TU_CHECK(d.n == i, "%zu documents, want %zu", d.n, i);
    docs_free(&d);

    /* Field selection; and no id field at all. */
    write_str(tp("b.json"), "\xef\xbb\xbf{\"doc_id\": \"x1\", \"content\": \"C\", \"text\": \"T\", \"id\": 3}\n"
                            "{\"doc_id\": 7, \"content\": \"C2\"}\n");
    corpus_opts_t o = {.text_field = "content", .id_field = "doc_id"};
    d = read_one(tp("b.json"), &o);
    expect_ok(&d, 0, src_of("b.json", 1), "x1", "C", "{\"text\":\"T\",\"id\":3}");
    expect_ok(&d, 1, src_of("b.json", 2), "7", "C2", "{}");
    TU_CHECK(d.n == 2, "%zu documents", d.n);
    docs_free(&d);
    o = (corpus_opts_t){.id_field = ""};
    d = read_one(tp("b.json"), &o);
    expect_ok(&d, 0, src_of("b.json", 1), src_of("b.json", 1), "T", "{\"doc_id\":\"x1\",\"content\":\"C\",\"id\":3}");
    expect_err(&d, 1, src_of("b.json", 2), "no \"text\" field", NULL);
    docs_free(&d);

    /* .ndjson and upper case are JSONL; other names are text. */
    write_str(tp("c.NDJSON"), "{\"text\":\"n\"}\n");
    d = read_one(tp("c.NDJSON"), NULL);
    expect_ok(&d, 0, src_of("c.NDJSON", 1), NULL, "n", NULL);
    docs_free(&d);
}

static void test_text_files(void) {
    write_str(tp("t1.txt"), "Plain text\r\nwith CRLF, kept as is.\n\xe2\x9c\x93");
    write_file(tp("t2.md"), "", 0);
    write_str(tp("t3.txt"), "abc\xc3\x28zz");
    write_file(tp("t4.txt"), "ab\0cd", 5);
    const char *pats[] = {tp("t1.txt"), tp("t2.md"), tp("t3.txt"), tp("t4.txt")};
    docs_t d = read_all(pats, 4, NULL);
    TU_REQUIRE(d.n == 4, "%zu documents", d.n);
    expect_ok(&d, 0, tp("t1.txt"), tp("t1.txt"), "Plain text\r\nwith CRLF, kept as is.\n\xe2\x9c\x93", "{}");
    expect_ok(&d, 1, tp("t2.md"), tp("t2.md"), "", "{}");
    TU_CHECK(d.v[1].text && d.v[1].text_len == 0, "an empty file is an empty document");
    expect_err(&d, 2, tp("t3.txt"), "invalid UTF-8 at byte offset 3", "c3 28");
    expect_err(&d, 3, tp("t4.txt"), "NUL", "offset 2");
    docs_free(&d);

    /* A text file over max_doc_bytes, then one exactly at it. */
    write_str(tp("t5.txt"), "0123456789A");
    write_str(tp("t6.txt"), "0123456789");
    corpus_opts_t o = {.max_doc_bytes = 10};
    const char *p2[] = {tp("t5.txt"), tp("t6.txt")};
    d = read_all(p2, 2, &o);
    expect_err(&d, 0, tp("t5.txt"), "more than 10 bytes", NULL);
    expect_ok(&d, 1, tp("t6.txt"), NULL, "0123456789", NULL);
    docs_free(&d);
}

/* n bytes of pseudo-random lowercase words (barely compressible). */
static void fill_words(char *b, size_t n, uint64_t *seed) {
    for (size_t i = 0; i < n; i++) {
        *seed = *seed * 6364136223846793005ULL + 1442695040888963407ULL;
        unsigned r = (unsigned)(*seed >> 33) % 27;
        b[i] = r == 26 ? ' ' : (char)('a' + r);
    }
}

static void test_long_lines(void) {
    /* 10 MB of text in one line, between two short lines. */
    size_t big = 10u << 20;
    char *text = malloc(big + 1);
    uint64_t seed = 1;
    fill_words(text, big, &seed);
    text[big] = 0;
    size_t cap = big + 256;
    char *buf = malloc(cap);
    int n = snprintf(buf, cap, "{\"text\":\"a\"}\n{\"id\":\"big\",\"text\":\"%s\"}\n{\"text\":\"b\"}\n", text);
    write_file(tp("long.jsonl"), buf, (size_t)n);
    docs_t d = read_one(tp("long.jsonl"), NULL);
    TU_REQUIRE(d.n == 3, "%zu documents", d.n);
    expect_ok(&d, 0, NULL, NULL, "a", NULL);
    TU_CHECK(d.v[1].error == NULL && d.v[1].text_len == big && memcmp(d.v[1].text, text, big) == 0,
             "the 10 MB line (%zu bytes, %s)", d.v[1].text_len, d.v[1].error ? d.v[1].error : "ok");
    expect_ok(&d, 2, src_of("long.jsonl", 3), NULL, "b", NULL);
    docs_free(&d);

    /* The same in zstd (the line spans many decompressed chunks). */
    const char *parts[] = {buf};
    size_t lens[] = {(size_t)n};
    write_zst(tp("long.jsonl.zst"), parts, lens, 1, NULL, NULL);
    d = read_one(tp("long.jsonl.zst"), NULL);
    TU_REQUIRE(d.n == 3, "%zu documents", d.n);
    TU_CHECK(d.v[1].text_len == big && memcmp(d.v[1].text, text, big) == 0, "the 10 MB line from zstd");
    docs_free(&d);

    /* Over max_doc_bytes (1 MiB): an error for that line, the next line read. */
    corpus_opts_t o = {.max_doc_bytes = 1u << 20};
    d = read_one(tp("long.jsonl"), &o);
    TU_REQUIRE(d.n == 3, "%zu documents", d.n);
    expect_ok(&d, 0, src_of("long.jsonl", 1), NULL, "a", NULL);
    expect_err(&d, 1, src_of("long.jsonl", 2), "document of more than 1048576 bytes", "skipped");
    expect_ok(&d, 2, src_of("long.jsonl", 3), NULL, "b", NULL);
    docs_free(&d);

    /* A line of exactly max_doc_bytes is fine; one byte more is not; both
     * inside one chunk and as the final line without '\n'. */
    o.max_doc_bytes = 20;
    write_str(tp("edge.jsonl"), "{\"text\":\"0123456789\"}\n{\"text\":\"012345678\"}\n{\"text\":\"0123456789\"}");
    d = read_one(tp("edge.jsonl"), &o);
    TU_REQUIRE(d.n == 3, "%zu documents", d.n);
    expect_err(&d, 0, src_of("edge.jsonl", 1), "more than 20 bytes", NULL);
    expect_ok(&d, 1, src_of("edge.jsonl", 2), NULL, "012345678", NULL);
    expect_err(&d, 2, src_of("edge.jsonl", 3), "more than 20 bytes", NULL);
    docs_free(&d);
    free(buf);
    free(text);
}

/* Lines "{"id":"<tag>-<i>","text":"<words>"}" for i in [0, n), joined. */
static char *make_lines(const char *tag, int n, size_t words, size_t *len) {
    size_t cap = (size_t)n * (words + 64) + 1, used = 0;
    char *b = malloc(cap), *w = malloc(words + 1);
    uint64_t seed = 7;
    for (int i = 0; i < n; i++) {
        fill_words(w, words, &seed);
        w[words] = 0;
        used += (size_t)snprintf(b + used, cap - used, "{\"id\":\"%s-%d\",\"text\":\"%s\"}\n", tag, i, w);
    }
    free(w);
    *len = used;
    return b;
}

static void test_compressed(void) {
    size_t len;
    char *all = make_lines("m", 50, 6000, &len); /* 300 KB: zstd blocks are 128 KB */
    /* Split in the middle of a line: the member/frame boundary is not a
     * line boundary. */
    size_t cut = len / 2 + 17;
    const char *parts[] = {all, all + cut};
    size_t lens[] = {cut, len - cut};
    write_gz(tp("multi.jsonl.gz"), parts, lens, 2);
    write_zst(tp("multi.jsonl.zst"), parts, lens, 2, NULL, NULL);
    /* Compression from the magic bytes, not the name. */
    write_gz(tp("gz-named-plain.jsonl"), parts, lens, 2);
    write_file(tp("plain-named.jsonl.zst"), all, len);
    const char *names[] = {"multi.jsonl.gz", "multi.jsonl.zst", "gz-named-plain.jsonl", "plain-named.jsonl.zst"};
    for (int f = 0; f < 4; f++) {
        docs_t d = read_one(tp(names[f]), NULL);
        TU_CHECK(d.n == 50, "%s: %zu documents", names[f], d.n);
        int ok = 1;
        for (size_t i = 0; i < d.n; i++) {
            char id[32];
            snprintf(id, sizeof id, "m-%zu", i);
            ok &= d.v[i].error == NULL && strcmp(d.v[i].ext_id, id) == 0 && d.v[i].text_len == 6000;
        }
        TU_CHECK(ok, "%s: every document intact", names[f]);
        docs_free(&d);
    }

    /* A compressed text file. */
    const char *tparts[] = {"compressed ", "text \xe2\x9c\x93"};
    size_t tlens[] = {11, 8};
    write_zst(tp("tz.txt.zst"), tparts, tlens, 2, NULL, NULL);
    write_gz(tp("tg.txt.gz"), tparts, tlens, 2);
    const char *tp2[] = {tp("tz.txt.zst"), tp("tg.txt.gz")};
    docs_t d = read_all(tp2, 2, NULL);
    TU_REQUIRE(d.n == 2, "%zu documents", d.n);
    expect_ok(&d, 0, tp("tz.txt.zst"), NULL, "compressed text \xe2\x9c\x93", NULL);
    expect_ok(&d, 1, tp("tg.txt.gz"), NULL, "compressed text \xe2\x9c\x93", NULL);
    docs_free(&d);

    /* Truncated gzip and zstd, each followed by a good file. */
    char *z = NULL;
    size_t zn = 0;
    const char *whole[] = {all};
    size_t wl[] = {len};
    write_zst(tp("full.jsonl.zst"), whole, wl, 1, &z, &zn);
    write_file(tp("trunc.jsonl.zst"), z, zn / 2);
    /* A valid frame followed by bytes that are no frame. */
    char *junk = malloc(zn + 16);
    memcpy(junk, z, zn);
    memcpy(junk + zn, "NOT A FRAME AT ALL", 16);
    write_file(tp("junk.jsonl.zst"), junk, zn + 16);
    free(junk);
    free(z);
    write_gz(tp("full.jsonl.gz"), whole, wl, 1);
    size_t gn;
    char *g = tu_read_file(tp("full.jsonl.gz"), &gn);
    write_file(tp("trunc.jsonl.gz"), g, gn / 2);
    /* Corrupt gzip: flip bytes in the middle of the deflate data. */
    for (size_t i = gn / 2; i < gn / 2 + 64; i++) g[i] ^= 0x5a;
    write_file(tp("corrupt.jsonl.gz"), g, gn);
    free(g);
    write_str(tp("next.jsonl"), "{\"id\":\"after\",\"text\":\"still read\"}\n");
    const char *bad[] = {"trunc.jsonl.zst", "junk.jsonl.zst", "trunc.jsonl.gz", "corrupt.jsonl.gz"};
    const char *why[] = {"truncated zstd", "corrupt zstd", "truncated gzip", "corrupt gzip"};
    for (int f = 0; f < 4; f++) {
        const char *pats[] = {tp(bad[f]), tp("next.jsonl")};
        d = read_all(pats, 2, NULL);
        TU_REQUIRE(d.n >= 2, "%s: %zu documents", bad[f], d.n);
        size_t e = d.n - 2; /* the error, then the next file's document */
        for (size_t i = 0; i < e; i++) {
            char id[32];
            snprintf(id, sizeof id, "m-%zu", i);
            TU_CHECK(d.v[i].error == NULL && strcmp(d.v[i].ext_id, id) == 0, "%s: doc %zu before the damage", bad[f],
                     i);
        }
        TU_CHECK(f == 1 ? e == 50 : e < 50, "%s: %zu good documents first", bad[f], e);
        expect_err(&d, e, NULL, why[f], "byte");
        TU_CHECK(strstr(d.v[e].source, bad[f]) != NULL, "%s: the error names the file (%s)", bad[f], d.v[e].source);
        expect_ok(&d, e + 1, src_of("next.jsonl", 1), "after", "still read", NULL);
        docs_free(&d);
    }
    free(all);

    /* A zstd file that starts with a skippable frame (as pzstd writes). */
    {
        const char *zp[] = {"{\"text\":\"after a skippable frame\"}\n"};
        size_t zl[] = {strlen(zp[0])};
        char *zb = NULL;
        size_t zbn = 0;
        write_zst(tp("skip.jsonl.zst"), zp, zl, 1, &zb, &zbn);
        char *sk = malloc(zbn + 12);
        memcpy(sk, "\x50\x2a\x4d\x18\x04\x00\x00\x00" "abcd", 12);
        memcpy(sk + 12, zb, zbn);
        write_file(tp("skip.jsonl.zst"), sk, zbn + 12);
        free(sk);
        free(zb);
        d = read_one(tp("skip.jsonl.zst"), NULL);
        TU_CHECK(d.n == 1, "%zu documents", d.n);
        expect_ok(&d, 0, src_of("skip.jsonl.zst", 1), NULL, "after a skippable frame", NULL);
        docs_free(&d);
    }

    /* A zstd text file that is cut: one errored document. */
    write_file(tp("cut.txt.zst"), "\x28\xb5\x2f\xfd", 4);
    d = read_one(tp("cut.txt.zst"), NULL);
    TU_REQUIRE(d.n == 1, "%zu documents", d.n);
    expect_err(&d, 0, tp("cut.txt.zst"), "truncated zstd", NULL);
    docs_free(&d);
}

/* corpus_open must fail with a message holding want. */
static void open_fails(const char *const *pats, size_t n, const corpus_opts_t *o, const char *want) {
    char err[LOG_ERRLEN] = "";
    corpus_t *c = corpus_open(pats, n, o, err, sizeof err);
    TU_CHECK(c == NULL && strstr(err, want) != NULL, "open of '%s' should fail naming '%s': %s",
             n ? pats[0] : "(nothing)", want, err);
    corpus_destroy(&c);
}

static void test_patterns(void) {
    int mk = mkdir(tp("g"), 0755) | mkdir(tp("g/sub"), 0755) | mkdir(tp("empty"), 0755);
    TU_REQUIRE(mk == 0, "mkdir");
    const char *names[] = {"g/b.txt", "g/a.txt", "g/c.txt", "g/.hidden", "g/sub/d.txt", "g/x[1].txt", "g/B.txt"};
    for (size_t i = 0; i < sizeof names / sizeof *names; i++) write_str(tp(names[i]), names[i]);
    int sl = symlink("nowhere", tp("dangling.txt"));
    TU_REQUIRE(sl == 0, "symlink");

    docs_t d = read_one(tp("g/*.txt"), NULL);
    TU_REQUIRE(d.n == 5, "glob: %zu documents", d.n);
    const char *want[] = {"g/B.txt", "g/a.txt", "g/b.txt", "g/c.txt", "g/x[1].txt"}; /* bytewise order */
    for (size_t i = 0; i < 5; i++) expect_ok(&d, i, tp(want[i]), tp(want[i]), want[i], "{}");
    docs_free(&d);

    /* A directory: its regular files, sorted, not hidden, not recursive. */
    d = read_one(tp("g"), NULL);
    TU_CHECK(d.n == 5, "directory: %zu documents", d.n);
    for (size_t i = 0; i < 5 && i < d.n; i++) {
        char w[512];
        snprintf(w, sizeof w, "%s/%s", g_dir, want[i]);
        TU_CHECK(strcmp(d.v[i].source, w) == 0, "directory doc %zu: %s", i, d.v[i].source);
    }
    docs_free(&d);

    /* Given order across patterns; duplicates (also ./-spelled) kept first. */
    char dotted[600];
    snprintf(dotted, sizeof dotted, "%s/./g/a.txt", g_dir);
    const char *pats[] = {tp("g/c.txt"), tp("g/[ab].txt"), dotted, tp("g")};
    char err2[LOG_ERRLEN];
    corpus_t *c = corpus_open(pats, 4, NULL, err2, sizeof err2);
    TU_REQUIRE(c, "open: %s", err2);
    TU_CHECK(corpus_n_files(c) == 5, "%zu files", corpus_n_files(c));
    corpus_destroy(&c);
    d = read_all(pats, 4, NULL);
    const char *order[] = {"g/c.txt", "g/a.txt", "g/b.txt", "g/B.txt", "g/x[1].txt"};
    TU_REQUIRE(d.n == 5, "%zu documents", d.n);
    for (size_t i = 0; i < 5; i++) expect_ok(&d, i, tp(order[i]), NULL, NULL, NULL);
    docs_free(&d);

    /* A literal name with glob characters that match nothing else. */
    d = read_one(tp("g/x[1].txt"), NULL);
    TU_CHECK(d.n == 1 && strcmp(d.v[0].source, tp("g/x[1].txt")) == 0, "literal bracket name");
    docs_free(&d);

    /* Errors: nothing matches (named), an empty directory, a dangling link,
     * no pattern at all, an empty text field name. */
    const char *nomatch = tp("nothing-*.jsonl");
    open_fails(&nomatch, 1, NULL, "nothing-*.jsonl");
    const char *missing = tp("missing.jsonl");
    open_fails(&missing, 1, NULL, "missing.jsonl");
    const char *empty = tp("empty");
    open_fails(&empty, 1, NULL, "no regular file");
    const char *dangling = tp("dangling.txt");
    open_fails(&dangling, 1, NULL, "dangling.txt");
    open_fails(NULL, 0, NULL, "no corpus files");
    corpus_opts_t o = {.text_field = ""};
    open_fails(pats, 1, &o, "text field");
    const char *badname = tp("bad\xff.txt");
    write_str(badname, "x");
    open_fails(&badname, 1, NULL, "UTF-8");
    unlink(badname);
}

/* A file that vanishes between corpus_open and its turn: one errored
 * document, then the next file. */
static void test_vanished(void) {
    char err[LOG_ERRLEN];
    write_str(tp("gone.txt"), "soon gone");
    write_str(tp("stays.txt"), "still here");
    const char *pats[] = {tp("gone.txt"), tp("stays.txt")};
    corpus_t *c = corpus_open(pats, 2, NULL, err, sizeof err);
    TU_REQUIRE(c, "open: %s", err);
    unlink(tp("gone.txt"));
    corpus_doc_t doc = {0};
    int r = corpus_next(c, &doc, err, sizeof err);
    TU_CHECK(r == 1 && doc.error && strstr(doc.error, "cannot open") && strcmp(doc.source, tp("gone.txt")) == 0,
             "vanished file: %d %s", r, doc.error ? doc.error : "(no error)");
    r = corpus_next(c, &doc, err, sizeof err); /* releases the previous document */
    TU_CHECK(r == 1 && doc.text && strcmp(doc.text, "still here") == 0, "the next file");
    TU_CHECK(corpus_next(c, &doc, err, sizeof err) == 0 && doc.source == NULL, "end, document zeroed");
    TU_CHECK(corpus_next(c, NULL, err, sizeof err) == -1, "NULL document");
    corpus_destroy(&c);
    corpus_destroy(&c); /* NULL-safe */
    corpus_doc_clear(NULL);
}

/* Removes the fixture folder (files one level down plus g/sub). */
static void cleanup(void) {
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_dir);
    if (system(cmd) != 0) fprintf(stderr, "warning: could not remove %s\n", g_dir);
}

int main(void) {
    const char *tmp = getenv("TMPDIR");
    snprintf(g_dir, sizeof g_dir, "%s/tokshift-corpus-XXXXXX", tmp && *tmp ? tmp : "/tmp");
    char *made = mkdtemp(g_dir);
    TU_REQUIRE(made, "mkdtemp: %s", strerror(errno));
    test_utf8();
    test_jsonl();
    test_text_files();
    test_long_lines();
    test_compressed();
    test_patterns();
    test_vanished();
    if (!tu_failures) cleanup();
    else fprintf(stderr, "fixtures kept in %s\n", g_dir);
    return tu_finish("test_corpus");
}
