/* pretok.c - see pretok.h.
 *
 * What it is: the PCRE2 side of pre-tokenization.  Each pattern is compiled
 * once (JIT-compiled when the library can; a match that runs out of JIT
 * stack is retried with the interpreter, whose memory is on the heap), and
 * each split runs in stages over two span arrays: stage 0 cuts at invalid
 * UTF-8, stage k applies pattern k to every well-formed piece of stage k-1.
 * Every match runs on the piece alone (subject = the piece), so look-ahead
 * never sees past it, and with PCRE2_NO_UTF_CHECK, since stage 0 has
 * validated it (pretok_utf8_len accepts exactly what PCRE2 does).  An empty
 * match ends nothing: the search goes on one character later.  What it is
 * not: a tokenizer. */
#define PCRE2_CODE_UNIT_WIDTH 8
#include "pretok.h"

#include <pcre2.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "selftest.h"

const char PRETOK_GPT2[] =
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|"
    "\\s+(?!\\S)|\\s+";
const char PRETOK_LLAMA3[] =
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|"
    "\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|"
    "\\s+";
const char PRETOK_QWEN2[] =
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}|"
    " ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
const char PRETOK_DIGIT[] = "\\p{N}";
const char PRETOK_DIGITS[] = "\\p{N}+";

struct pretok {
    pcre2_code **codes;
    size_t n;
};

/* Unicode's White_Space property (PropList.txt), as a class body.  PCRE2's
 * \s under PCRE2_UCP also matches U+180E MONGOLIAN VOWEL SEPARATOR (a space
 * before Unicode 6.3); Oniguruma, which `tokenizers` uses, and llama.cpp
 * follow White_Space, so \s and \S are rewritten to this. */
#define WHITE_SPACE                                                          \
    "\\x{9}-\\x{d}\\x{20}\\x{85}\\x{a0}\\x{1680}\\x{2000}-\\x{200a}"           \
    "\\x{2028}\\x{2029}\\x{202f}\\x{205f}\\x{3000}"

/* Appends n bytes of s to out at *o. */
static void put(char *out, size_t *o, const char *s, size_t n) {
    memcpy(out + *o, s, n);
    *o += n;
}

/* Rewrites \s and \S in pattern p to WHITE_SPACE: "[WS]" and "[^WS]" outside
 * a character class, the bare list for \s inside one (a \S inside a class
 * is left to PCRE2); \Q...\E is copied as it is.  Returns a malloc'd
 * pattern, or NULL when memory runs out. */
static char *rewrite_spaces(const char *p) {
    static const char ws[] = WHITE_SPACE;
    const size_t wn = sizeof ws - 1;
    size_t n = strlen(p), o = 0;
    int in_class = 0;
    if (n > (SIZE_MAX - 1) / (wn + 4)) return NULL;
    char *out = malloc(n / 2 * (wn + 4) + n + 1);
    if (!out) return NULL;
    for (size_t i = 0; i < n;) {
        if (p[i] == '\\' && i + 1 < n) {
            char d = p[i + 1];
            if (d == 'Q') { /* literal up to \E */
                const char *e = strstr(p + i + 2, "\\E");
                size_t end = e ? (size_t)(e - p) + 2 : n;
                put(out, &o, p + i, end - i);
                i = end;
            } else if (d == 's') {
                if (!in_class) put(out, &o, "[", 1);
                put(out, &o, ws, wn);
                if (!in_class) put(out, &o, "]", 1);
                i += 2;
            } else if (d == 'S' && !in_class) {
                put(out, &o, "[^", 2);
                put(out, &o, ws, wn);
                put(out, &o, "]", 1);
                i += 2;
            } else {
                put(out, &o, p + i, 2);
                i += 2;
            }
        } else if (!in_class && p[i] == '[') {
            in_class = 1;
            put(out, &o, p + i++, 1);
            if (i < n && p[i] == '^') put(out, &o, p + i++, 1);
            if (i < n && p[i] == ']') put(out, &o, p + i++, 1); /* literal */
        } else if (in_class && p[i] == '[' && p[i + 1] == ':') {
            const char *e = strstr(p + i + 2, ":]"); /* [:alpha:] */
            size_t end = e ? (size_t)(e - p) + 2 : i + 1;
            put(out, &o, p + i, end - i);
            i = end;
        } else {
            if (in_class && p[i] == ']') in_class = 0;
            put(out, &o, p + i++, 1);
        }
    }
    out[o] = '\0';
    return out;
}

size_t pretok_utf8_len(const unsigned char *s, size_t avail) {
    unsigned c = s[0];
    size_t n;
    unsigned lo = 0x80, hi = 0xBF; /* allowed range of the second byte */
    if (c < 0x80) return 1;
    if (c >= 0xC2 && c <= 0xDF) n = 2;
    else if (c == 0xE0) n = 3, lo = 0xA0;             /* no overlong */
    else if (c >= 0xE1 && c <= 0xEC) n = 3;
    else if (c == 0xED) n = 3, hi = 0x9F;             /* no surrogates */
    else if (c >= 0xEE && c <= 0xEF) n = 3;
    else if (c == 0xF0) n = 4, lo = 0x90;             /* no overlong */
    else if (c >= 0xF1 && c <= 0xF3) n = 4;
    else if (c == 0xF4) n = 4, hi = 0x8F;             /* <= U+10FFFF */
    else return 0;
    if (avail < n || s[1] < lo || s[1] > hi) return 0;
    for (size_t i = 2; i < n; i++)
        if ((s[i] & 0xC0) != 0x80) return 0;
    return n;
}

void pretok_destroy(pretok_t **self_p) {
    if (!self_p || !*self_p) return;
    pretok_t *self = *self_p;
    for (size_t i = 0; i < self->n; i++) pcre2_code_free(self->codes[i]);
    free(self->codes);
    free(self);
    *self_p = NULL;
}

pretok_t *pretok_new(const char *const *patterns, size_t n, char *err,
                     size_t errlen) {
    pretok_t *self = calloc(1, sizeof *self);
    if (!self || (n && !(self->codes = calloc(n, sizeof *self->codes)))) {
        log_seterr(err, errlen, "pre-tokenizer: out of memory");
        goto error;
    }
    for (size_t i = 0; i < n; i++) {
        int code = 0;
        PCRE2_SIZE at = 0;
        if (!patterns[i]) {
            log_seterr(err, errlen, "pre-tokenizer: pattern %zu is missing",
                       i);
            goto error;
        }
        /* The pattern as written first, so that an error's offset is the
         * caller's; then as rewritten. */
        self->codes[i] = pcre2_compile(
            (PCRE2_SPTR)patterns[i], PCRE2_ZERO_TERMINATED,
            PCRE2_UTF | PCRE2_UCP | PCRE2_MULTILINE, &code, &at, NULL);
        if (self->codes[i]) {
            char *ws = rewrite_spaces(patterns[i]);
            pcre2_code_free(self->codes[i]);
            self->codes[i] = NULL;
            if (!ws) {
                log_seterr(err, errlen, "pre-tokenizer: out of memory");
                goto error;
            }
            self->codes[i] = pcre2_compile(
                (PCRE2_SPTR)ws, PCRE2_ZERO_TERMINATED,
                PCRE2_UTF | PCRE2_UCP | PCRE2_MULTILINE, &code, &at, NULL);
            free(ws);
        }
        if (!self->codes[i]) {
            PCRE2_UCHAR msg[256];
            if (pcre2_get_error_message(code, msg, sizeof msg) < 0)
                strcpy((char *)msg, "unknown error");
            log_seterr(err, errlen,
                       "pre-tokenizer: pattern %zu does not compile at "
                       "offset %zu: %s",
                       i, (size_t)at, (const char *)msg);
            goto error;
        }
        self->n = i + 1;
        /* Without JIT (not built in, or no executable memory) the
         * interpreter gives the same matches, only slower. */
        (void)pcre2_jit_compile(self->codes[i], PCRE2_JIT_COMPLETE);
    }
    return self;

error:
    pretok_destroy(&self);
    return NULL;
}

size_t pretok_n_patterns(const pretok_t *self) { return self->n; }

/* A span with whether its bytes are well-formed UTF-8. */
typedef struct {
    size_t off, len;
    int valid;
} piece_t;

typedef struct {
    piece_t *p;
    size_t n, cap;
} pieces_t;

static int pieces_push(pieces_t *v, size_t off, size_t len, int valid) {
    if (len == 0) return 0;
    if (v->n == v->cap) {
        size_t cap = v->cap ? 2 * v->cap : 64;
        if (cap > SIZE_MAX / sizeof *v->p) return -1;
        piece_t *p = realloc(v->p, cap * sizeof *p);
        if (!p) return -1;
        v->p = p;
        v->cap = cap;
    }
    v->p[v->n++] = (piece_t){off, len, valid};
    return 0;
}

/* Stage 0: runs of well-formed UTF-8 and runs of invalid bytes. */
static int cut_invalid(const char *text, size_t len, pieces_t *out) {
    const unsigned char *u = (const unsigned char *)text;
    size_t start = 0, i = 0;
    int valid = 1;
    while (i < len) {
        size_t k = pretok_utf8_len(u + i, len - i);
        int v = k > 0;
        if (v != valid) {
            if (pieces_push(out, start, i - start, valid) < 0) return -1;
            start = i;
            valid = v;
        }
        i += k ? k : 1;
    }
    return pieces_push(out, start, len - start, valid);
}

/* Matches code in subject[0..n) from start: 1 (match; *m0 and *m1 set), 0 (no
 * match), -1 (the engine gave up; message in err). */
static int match_at(const pcre2_code *code, const char *subject, size_t n,
                    size_t start, pcre2_match_data *md, size_t *m0,
                    size_t *m1, char *err, size_t errlen) {
    int rc = pcre2_match(code, (PCRE2_SPTR)subject, n, start,
                         PCRE2_NO_UTF_CHECK, md, NULL);
    if (rc == PCRE2_ERROR_JIT_STACKLIMIT)
        rc = pcre2_match(code, (PCRE2_SPTR)subject, n, start,
                         PCRE2_NO_UTF_CHECK | PCRE2_NO_JIT, md, NULL);
    if (rc == PCRE2_ERROR_NOMATCH) return 0;
    if (rc < 0) {
        PCRE2_UCHAR msg[256];
        if (pcre2_get_error_message(rc, msg, sizeof msg) < 0)
            strcpy((char *)msg, "unknown error");
        return log_seterr(err, errlen,
                          "pre-tokenizer: regex match failed on a piece of "
                          "%zu bytes: %s",
                          n, (const char *)msg);
    }
    /* rc == 0 only says the ovector is too small for the capture groups;
     * the whole match is still in pair 0. */
    const PCRE2_SIZE *ov = pcre2_get_ovector_pointer(md);
    *m0 = ov[0];
    *m1 = ov[1];
    return 1;
}

/* Splits the well-formed piece p with code, appending to out. */
static int split_piece(const pcre2_code *code, const char *text, piece_t p,
                       pcre2_match_data *md, pieces_t *out, char *err,
                       size_t errlen) {
    const char *s = text + p.off;
    const unsigned char *u = (const unsigned char *)s;
    size_t gap = 0, at = 0;
    while (at < p.len) {
        size_t m0 = 0, m1 = 0;
        int rc = match_at(code, s, p.len, at, md, &m0, &m1, err, errlen);
        if (rc < 0) return -1;
        if (rc == 0) break;
        if (m1 == m0) { /* empty: look again one character later */
            size_t k = pretok_utf8_len(u + m0, p.len - m0);
            at = m0 + (k ? k : 1);
            continue;
        }
        if (pieces_push(out, p.off + gap, m0 - gap, 1) < 0 ||
            pieces_push(out, p.off + m0, m1 - m0, 1) < 0)
            goto oom;
        gap = at = m1;
    }
    if (pieces_push(out, p.off + gap, p.len - gap, 1) < 0) goto oom;
    return 0;

oom:
    return log_seterr(err, errlen, "pre-tokenizer: out of memory");
}

long pretok_split(const pretok_t *self, const char *text, size_t len,
                  pretok_span_t **spans, size_t *cap, char *err,
                  size_t errlen) {
    pieces_t a = {0}, b = {0};
    pcre2_match_data *md = NULL;
    long count = -1;

    if (len == 0) return 0;
    if (cut_invalid(text, len, &a) < 0) {
        log_seterr(err, errlen, "pre-tokenizer: out of memory");
        goto error;
    }
    if (self->n && !(md = pcre2_match_data_create(1, NULL))) {
        log_seterr(err, errlen, "pre-tokenizer: out of memory");
        goto error;
    }
    for (size_t k = 0; k < self->n; k++) {
        b.n = 0;
        for (size_t i = 0; i < a.n; i++) {
            if (!a.p[i].valid) {
                if (pieces_push(&b, a.p[i].off, a.p[i].len, 0) < 0) {
                    log_seterr(err, errlen, "pre-tokenizer: out of memory");
                    goto error;
                }
            } else if (split_piece(self->codes[k], text, a.p[i], md, &b, err,
                                   errlen) < 0) {
                goto error;
            }
        }
        pieces_t t = a;
        a = b;
        b = t;
    }
    if (a.n > *cap) {
        pretok_span_t *s = realloc(*spans, a.n * sizeof *s);
        if (!s) {
            log_seterr(err, errlen, "pre-tokenizer: out of memory");
            goto error;
        }
        *spans = s;
        *cap = a.n;
    }
    for (size_t i = 0; i < a.n; i++)
        (*spans)[i] = (pretok_span_t){a.p[i].off, a.p[i].len};
    count = (long)a.n;

error: /* also the way out on success */
    pcre2_match_data_free(md);
    free(a.p);
    free(b.p);
    return count;
}

/* ---- self-test --------------------------------------------------------- */

/* Splits text with the patterns and compares with want, the pieces joined
 * by '|' (texts here hold no '|'). */
static int st_split(const char *const *patterns, size_t n, const char *text,
                    size_t len, const char *want) {
    int failures = 0;
    char err[LOG_ERRLEN] = "";
    pretok_t *p = pretok_new(patterns, n, err, sizeof err);
    ST_CHECK(p != NULL, "pretok_new: %s", err);
    if (!p) return failures;
    pretok_span_t *spans = NULL;
    size_t cap = 0;
    long k = pretok_split(p, text, len, &spans, &cap, err, sizeof err);
    ST_CHECK(k >= 0, "split: %s", err);
    char got[512];
    size_t o = 0;
    for (long i = 0; i < k && o + 2 < sizeof got; i++) {
        if (i) got[o++] = '|';
        for (size_t j = 0; j < spans[i].len && o + 1 < sizeof got; j++)
            got[o++] = text[spans[i].off + j];
    }
    got[o] = '\0';
    ST_CHECK(strcmp(got, want) == 0, "split '%.*s': got '%s' want '%s'",
             (int)len, text, got, want);
    free(spans);
    pretok_destroy(&p);
    return failures;
}

int pretok_selftest(void) {
    int failures = 0;
    const char *gpt2[] = {PRETOK_GPT2};
    const char *digit_gpt2[] = {PRETOK_DIGIT, PRETOK_GPT2};
    const char *none[] = {NULL};
    failures += st_split(gpt2, 1, "Hello world", 11, "Hello| world");
    failures += st_split(gpt2, 1, "a  b", 4, "a| | b");
    failures += st_split(gpt2, 1, "it's 42!", 8, "it|'s| 42|!");
    failures += st_split(digit_gpt2, 2, "a123", 4, "a|1|2|3");
    /* Invalid bytes are pieces of their own; the regex sees each valid run
     * alone, so the spaces before \xff end that run ("\s+(?!\S)" at its
     * end matches both). */
    failures += st_split(gpt2, 1, "ab  \xff\xfe" "cd", 8, "ab|  |\xff\xfe|cd");
    failures += st_split(none, 0, "x\xc3(y", 4, "x|\xc3|(y");
    failures += st_split(none, 0, "\xe2\x82\xac", 3, "\xe2\x82\xac");

    char err[LOG_ERRLEN] = "";
    const char *bad[] = {"(unclosed"};
    pretok_t *p = pretok_new(bad, 1, err, sizeof err);
    ST_CHECK(p == NULL && strstr(err, "pattern 0"), "bad pattern: %s", err);
    pretok_destroy(&p);

    /* U+180E is no space (White_Space, as Oniguruma and llama.cpp have it;
     * PCRE2's own \s would take it), in and out of classes; \Q..\E is
     * literal. */
    failures += st_split(gpt2, 1, "\xe1\xa0\x8e't", 5, "\xe1\xa0\x8e'|t");
    const char *nonspace[] = {"\\S+"}, *cls[] = {"[\\s]+"},
               *lit[] = {"\\Q\\s[\\E"};
    failures += st_split(nonspace, 1, "a\xe1\xa0\x8e b", 6,
                         "a\xe1\xa0\x8e| |b");
    failures += st_split(cls, 1, "a\xe1\xa0\x8e \xc2\x85" "b", 8,
                         "a\xe1\xa0\x8e| \xc2\x85|b");
    failures += st_split(lit, 1, "x\\s[y", 5, "x|\\s[|y");

    /* An empty match never makes an empty piece or a loop. */
    const char *empty[] = {"x*"};
    failures += st_split(empty, 1, "abxxc", 5, "ab|xx|c");

    unsigned char s[4] = {0xF4, 0x8F, 0xBF, 0xBF};
    ST_CHECK(pretok_utf8_len(s, 4) == 4, "U+10FFFF");
    s[1] = 0x90;
    ST_CHECK(pretok_utf8_len(s, 4) == 0, "above U+10FFFF");
    ST_CHECK(pretok_utf8_len((const unsigned char *)"\xed\xa0\x80", 3) == 0,
             "surrogate");
    ST_CHECK(pretok_utf8_len((const unsigned char *)"\xc3\xa9", 1) == 0,
             "truncated");
    return failures;
}
