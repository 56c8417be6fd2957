/* tokenizer_json.c - tokenizer_new_json / tokenizer_new_json_buffer (see
 * tokenizer.h): Hugging Face `tokenizers` tokenizer.json files.
 *
 * What it is: a strict reader of the parts of tokenizer.json that decide
 * the ids (model, added_tokens, normalizer, pre_tokenizer, post_processor;
 * the decoder is only checked), which hands the vocabulary to
 * tokenizer_new_bpe (byte-level) or tokenizer_new_spm (SentencePiece-style,
 * merging by the merges' ranks).  Every field it relies on is checked for
 * type and range, and every refusal names the file and the field; anything
 * it does not implement is refused rather than approximated.  JSON is parsed
 * with jansson (duplicate keys refused, nesting depth bounded by jansson).
 * What it is not: an implementation of every `tokenizers` component, or a
 * reader of tokenizer_config.json (a caller that has one passes what it
 * says through tokenizer_json_opts_t).
 *
 * The strings handed to the constructors point into the parsed JSON, which
 * lives until the constructor has copied them. */
#include "tokenizer.h"

#include <errno.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "log.h"
#include "pretok.h"

/* Largest tokenizer.json read from a file (Llama 3's is 9 MB). */
#define JSON_MAX_BYTES ((size_t)1 << 30)
/* At most this many pre-tokenizer regexes. */
#define MAX_PATTERNS 16

static const char SPM_SPACE[] = "\xe2\x96\x81"; /* U+2581 */

typedef enum { KIND_BYTE_LEVEL = 1, KIND_SPM = 2 } json_kind_t;

/* Everything read so far, and where errors go. */
typedef struct {
    const char *name;
    char *err;
    size_t errlen;

    json_t *vocab;     /* model.vocab (borrowed) */
    json_t *added_map; /* added token text -> id (owned) */
    int32_t n;         /* ids 0..n-1 */
    const char **pieces;
    size_t *lens;
    int32_t *types;
    unsigned char *is_added;

    json_kind_t kind;
    /* Byte-level pre-tokenizer. */
    const char *patterns[MAX_PATTERNS];
    char *owned[MAX_PATTERNS]; /* escaped String patterns */
    size_t n_patterns;
    int add_prefix_space;
    int steps; /* pre-tokenizer steps seen */
    /* SentencePiece-style. */
    int spm_prefix;       /* Prepend or Metaspace adds the dummy prefix */
    int spm_unless_space; /* ...unless the text starts with a space */
    int spm_replace;      /* spaces become U+2581 */
    /* post_processor */
    int32_t bos;
    int add_bos;
} jctx_t;

static int jerr(jctx_t *c, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Writes "name: message" into the context's error buffer; returns -1. */
static int jerr(jctx_t *c, const char *fmt, ...) {
    char msg[LOG_ERRLEN];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return log_seterr(c->err, c->errlen, "%s: %s", c->name, msg);
}

static const char *json_kind_name(const json_t *v) {
    switch (json_typeof(v)) {
    case JSON_OBJECT: return "an object";
    case JSON_ARRAY: return "an array";
    case JSON_STRING: return "a string";
    case JSON_INTEGER: return "an integer";
    case JSON_REAL: return "a number";
    case JSON_TRUE:
    case JSON_FALSE: return "a boolean";
    case JSON_NULL: return "null";
    }
    return "a value";
}

/* obj[key] as a boolean into *out (dflt when absent or null).  Returns 0,
 * or -1 (wrong type). */
static int get_bool(jctx_t *c, const json_t *obj, const char *where,
                    const char *key, int dflt, int *out) {
    const json_t *v = json_object_get(obj, key);
    if (!v || json_is_null(v)) {
        *out = dflt;
        return 0;
    }
    if (!json_is_boolean(v))
        return jerr(c, "%s.%s must be a boolean, not %s", where, key,
                    json_kind_name(v));
    *out = json_is_true(v);
    return 0;
}

/* obj[key] as a string into *out.  Returns 0 (found), 1 (absent or null;
 * *out NULL), or -1 (wrong type). */
static int get_str(jctx_t *c, const json_t *obj, const char *where,
                   const char *key, const char **out) {
    const json_t *v = json_object_get(obj, key);
    *out = NULL;
    if (!v || json_is_null(v)) return 1;
    if (!json_is_string(v))
        return jerr(c, "%s.%s must be a string, not %s", where, key,
                    json_kind_name(v));
    *out = json_string_value(v);
    return 0;
}

/* The "type" of component v (an object with a string "type").  NULL with
 * an error otherwise. */
static const char *comp_type(jctx_t *c, const json_t *v, const char *where) {
    const char *t = NULL;
    if (!json_is_object(v)) {
        jerr(c, "%s must be an object, not %s", where, json_kind_name(v));
        return NULL;
    }
    int rc = get_str(c, v, where, "type", &t);
    if (rc > 0) jerr(c, "%s has no \"type\"", where);
    return rc == 0 ? t : NULL;
}

/* The array v[key] of a Sequence component.  NULL with an error otherwise. */
static const json_t *seq_items(jctx_t *c, const json_t *v, const char *where,
                               const char *key) {
    const json_t *a = json_object_get(v, key);
    if (!json_is_array(a)) {
        jerr(c, "%s.%s must be an array, not %s", where, key,
             a ? json_kind_name(a) : "missing");
        return NULL;
    }
    return a;
}

/* ---- model.vocab and added_tokens -------------------------------------- */

/* v as an id: an integer in 0..INT32_MAX - 1.  -1 with an error otherwise. */
static int32_t get_id(jctx_t *c, const json_t *v, const char *where) {
    if (!json_is_integer(v)) {
        jerr(c, "%s must be an integer id, not %s", where,
             v ? json_kind_name(v) : "missing");
        return -1;
    }
    json_int_t id = json_integer_value(v);
    if (id < 0 || id >= INT32_MAX) {
        jerr(c, "%s: id %lld is out of range", where, (long long)id);
        return -1;
    }
    return (int32_t)id;
}

/* Reads model.vocab and added_tokens into the id table.  Returns 0 or -1. */
static int read_vocab(jctx_t *c, const json_t *model, const json_t *added) {
    const char *key;
    json_t *val;
    size_t count = 0;
    int32_t max_id = -1;

    c->vocab = json_object_get(model, "vocab");
    if (!json_is_object(c->vocab))
        return jerr(c, "model.vocab must be an object, not %s",
                    c->vocab ? json_kind_name(c->vocab) : "missing");
    if (added && !json_is_null(added) && !json_is_array(added))
        return jerr(c, "added_tokens must be an array, not %s",
                    json_kind_name(added));
    json_object_foreach(c->vocab, key, val) {
        char where[128];
        snprintf(where, sizeof where, "model.vocab[\"%.64s\"]", key);
        int32_t id = get_id(c, val, where);
        if (id < 0) return -1;
        if (id > max_id) max_id = id;
        count++;
    }
    size_t n_added = json_is_array(added) ? json_array_size(added) : 0;
    for (size_t i = 0; i < n_added; i++) {
        const json_t *a = json_array_get(added, i);
        char where[64];
        snprintf(where, sizeof where, "added_tokens[%zu]", i);
        if (!json_is_object(a))
            return jerr(c, "%s must be an object, not %s", where,
                        json_kind_name(a));
        int32_t id = get_id(c, json_object_get(a, "id"), where);
        if (id < 0) return -1;
        if (id > max_id) max_id = id;
        count++;
    }
    if (count == 0) return jerr(c, "model.vocab is empty");
    /* Ids may leave gaps (llama.cpp's converter fills them with [PADn]),
     * but a stray huge id must not make a huge table. */
    if ((size_t)max_id >= 4 * count + 1024)
        return jerr(c,
                    "model.vocab/added_tokens: id %ld is out of range for "
                    "%zu tokens",
                    (long)max_id, count);
    c->n = max_id + 1;
    c->pieces = calloc((size_t)c->n, sizeof *c->pieces);
    c->lens = calloc((size_t)c->n, sizeof *c->lens);
    c->types = malloc((size_t)c->n * sizeof *c->types);
    c->is_added = calloc((size_t)c->n, 1);
    c->added_map = json_object();
    if (!c->pieces || !c->lens || !c->types || !c->is_added || !c->added_map)
        return jerr(c, "out of memory reading the vocabulary");
    for (int32_t i = 0; i < c->n; i++) c->types[i] = TOKENIZER_TYPE_UNUSED;

    json_object_foreach(c->vocab, key, val) {
        int32_t id = (int32_t)json_integer_value(val);
        if (c->pieces[id])
            return jerr(c,
                        "model.vocab: \"%.64s\" and \"%.64s\" both have id "
                        "%ld",
                        c->pieces[id], key, (long)id);
        c->pieces[id] = key;
        c->lens[id] = strlen(key); /* keys hold no NUL */
        c->types[id] = TOKENIZER_TYPE_NORMAL;
    }
    for (size_t i = 0; i < n_added; i++) {
        const json_t *a = json_array_get(added, i);
        char where[64];
        snprintf(where, sizeof where, "added_tokens[%zu]", i);
        int32_t id = (int32_t)json_integer_value(json_object_get(a, "id"));
        const json_t *cv = json_object_get(a, "content");
        int special = 0, single_word = 0, lstrip = 0, rstrip = 0, norm = 0;
        if (!json_is_string(cv) || json_string_length(cv) == 0)
            return jerr(c, "%s.content must be a non-empty string", where);
        if (get_bool(c, a, where, "special", 0, &special) < 0 ||
            get_bool(c, a, where, "single_word", 0, &single_word) < 0 ||
            get_bool(c, a, where, "lstrip", 0, &lstrip) < 0 ||
            get_bool(c, a, where, "rstrip", 0, &rstrip) < 0 ||
            get_bool(c, a, where, "normalized", 0, &norm) < 0)
            return -1;
        /* Special tokens are never matched in text, so how they would be
         * matched does not matter; for the others it would. */
        if (!special && (single_word || lstrip || rstrip))
            return jerr(c,
                        "%s: single_word, lstrip or rstrip on a token that "
                        "is not special is not supported",
                        where);
        const char *content = json_string_value(cv);
        size_t clen = json_string_length(cv);
        if (memchr(content, '\0', clen))
            return jerr(c, "%s.content holds a NUL byte", where);
        if (c->is_added[id])
            return jerr(c, "%s: id %ld is given to two added tokens", where,
                        (long)id);
        if (json_object_get(c->added_map, content))
            return jerr(c, "%s: \"%.64s\" is added twice", where, content);
        const json_t *in_vocab = json_object_get(c->vocab, content);
        if (in_vocab && json_integer_value(in_vocab) != id)
            return jerr(c,
                        "%s: \"%.64s\" has id %ld here but %lld in "
                        "model.vocab",
                        where, content, (long)id,
                        (long long)json_integer_value(in_vocab));
        if (c->pieces[id] && !in_vocab)
            return jerr(c,
                        "%s: id %ld is \"%.64s\" here but \"%.64s\" in "
                        "model.vocab",
                        where, (long)id, content, c->pieces[id]);
        if (json_object_set_new(c->added_map, content,
                                json_integer(id)) < 0)
            return jerr(c, "out of memory reading the vocabulary");
        c->pieces[id] = content;
        c->lens[id] = clen;
        c->types[id] = special ? TOKENIZER_TYPE_CONTROL
                               : TOKENIZER_TYPE_USER_DEFINED;
        c->is_added[id] = 1;
    }
    for (int32_t i = 0; i < c->n; i++)
        if (!c->pieces[i]) c->pieces[i] = ""; /* a gap: unused */
    return 0;
}

/* The id of token text s (model.vocab, then added tokens), or -1. */
static int32_t find_token(const jctx_t *c, const char *s) {
    const json_t *v = json_object_get(c->vocab, s);
    if (!v) v = json_object_get(c->added_map, s);
    return v ? (int32_t)json_integer_value(v) : -1;
}

/* ---- normalizer, pre_tokenizer, decoder ------------------------------- */

/* Whether component v (or a step of a Sequence) has type t. */
static int has_type(const json_t *v, const char *t, const char *seq_key) {
    if (!json_is_object(v)) return 0;
    const char *vt = json_string_value(json_object_get(v, "type"));
    if (!vt) return 0;
    if (strcmp(vt, t) == 0) return 1;
    if (strcmp(vt, "Sequence") != 0) return 0;
    const json_t *a = json_object_get(v, seq_key);
    size_t i;
    const json_t *x;
    json_array_foreach(a, i, x) if (has_type(x, t, seq_key)) return 1;
    return 0;
}

/* Escapes s for use as a literal in a PCRE2 pattern (ASCII punctuation
 * gets a backslash; everything else stands for itself).  NULL when memory
 * runs out. */
static char *regex_escape(const char *s) {
    size_t n = strlen(s);
    char *out = malloc(2 * n + 1), *o = out;
    if (!out) return NULL;
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)s[i];
        if (ch < 0x80 && !(ch >= '0' && ch <= '9') &&
            !(ch >= 'A' && ch <= 'Z') && !(ch >= 'a' && ch <= 'z') &&
            ch > 0x20)
            *o++ = '\\';
        *o++ = (char)ch;
    }
    *o = '\0';
    return out;
}

static int add_pattern(jctx_t *c, const char *where, const char *p,
                       char *owned) {
    if (c->n_patterns == MAX_PATTERNS) {
        free(owned);
        return jerr(c, "%s: more than %d pre-tokenizer steps", where,
                    MAX_PATTERNS);
    }
    c->owned[c->n_patterns] = owned;
    c->patterns[c->n_patterns++] = p;
    return 0;
}

/* Reads a component, or a Sequence of them (at most 8 deep; items names
 * its array), calling leaf with each component's type.  A missing or null
 * component is accepted when null_ok, else refused by comp_type. */
static int read_components(jctx_t *c, const json_t *v, const char *where, const char *items, int null_ok,
                           int (*leaf)(jctx_t *, const json_t *, const char *, const char *), int depth) {
    if (null_ok && (!v || json_is_null(v))) return 0;
    const char *t = comp_type(c, v, where);
    if (!t) return -1;
    if (depth > 8) return jerr(c, "%s: Sequences nested too deep", where);
    if (strcmp(t, "Sequence") == 0) {
        const json_t *a = seq_items(c, v, where, items);
        if (!a) return -1;
        for (size_t i = 0; i < json_array_size(a); i++) {
            char w[160];
            snprintf(w, sizeof w, "%.100s.%s[%zu]", where, items, i);
            if (read_components(c, json_array_get(a, i), w, items, null_ok, leaf, depth + 1) < 0) return -1;
        }
        return 0;
    }
    return leaf(c, v, where, t);
}

/* Reads one byte-level pre-tokenizer component (read_components walks Sequences). */
static int read_pre_bytelevel(jctx_t *c, const json_t *v, const char *where,
                              const char *t) {
    int first = c->steps++ == 0;
    if (strcmp(t, "ByteLevel") == 0) {
        int aps = 0, use_regex = 1, trim = 0;
        if (get_bool(c, v, where, "add_prefix_space", 0, &aps) < 0 ||
            get_bool(c, v, where, "use_regex", 1, &use_regex) < 0 ||
            get_bool(c, v, where, "trim_offsets", 1, &trim) < 0)
            return -1;
        if (aps && !first)
            return jerr(c,
                        "%s: add_prefix_space on a ByteLevel step after "
                        "another step is not supported",
                        where);
        c->add_prefix_space |= aps;
        return use_regex ? add_pattern(c, where, PRETOK_GPT2, NULL) : 0;
    }
    if (strcmp(t, "Split") == 0) {
        const json_t *pat = json_object_get(v, "pattern");
        const char *behavior = NULL, *re = NULL, *lit = NULL;
        int invert = 0;
        if (!json_is_object(pat) || json_object_size(pat) != 1)
            return jerr(c,
                        "%s.pattern must be {\"Regex\": ...} or "
                        "{\"String\": ...}",
                        where);
        char w[160];
        snprintf(w, sizeof w, "%.100s.pattern", where);
        if (get_str(c, pat, w, "Regex", &re) < 0 ||
            get_str(c, pat, w, "String", &lit) < 0)
            return -1;
        if (!re && !lit)
            return jerr(c,
                        "%s.pattern must be {\"Regex\": ...} or "
                        "{\"String\": ...}",
                        where);
        if (get_str(c, v, where, "behavior", &behavior) < 0 ||
            get_bool(c, v, where, "invert", 0, &invert) < 0)
            return -1;
        if (!behavior || strcmp(behavior, "Isolated") != 0)
            return jerr(c, "%s.behavior '%.32s' is not supported (only "
                        "\"Isolated\")",
                        where, behavior ? behavior : "(missing)");
        if (invert) return jerr(c, "%s.invert true is not supported", where);
        if (re) return add_pattern(c, where, re, NULL);
        if (!*lit) return jerr(c, "%s.pattern.String is empty", where);
        char *esc = regex_escape(lit);
        if (!esc) return jerr(c, "out of memory");
        return add_pattern(c, where, esc, esc);
    }
    if (strcmp(t, "Digits") == 0) {
        int individual = 0;
        if (get_bool(c, v, where, "individual_digits", 0, &individual) < 0)
            return -1;
        return add_pattern(c, where, individual ? PRETOK_DIGIT : PRETOK_DIGITS,
                           NULL);
    }
    return jerr(c, "%s: pre-tokenizer type '%.32s' is not supported", where,
                t);
}

/* Reads a SentencePiece-style pre_tokenizer (null or Metaspace). */
static int read_pre_spm(jctx_t *c, const json_t *v) {
    if (!v || json_is_null(v)) return 0;
    const char *t = comp_type(c, v, "pre_tokenizer");
    if (!t) return -1;
    if (strcmp(t, "Metaspace") != 0)
        return jerr(c,
                    "pre_tokenizer: type '%.32s' is not supported with "
                    "SentencePiece-style BPE (only Metaspace)",
                    t);
    const char *rep = NULL, *scheme = NULL;
    int split = 1, aps = 1;
    if (get_str(c, v, "pre_tokenizer", "replacement", &rep) < 0 ||
        get_str(c, v, "pre_tokenizer", "prepend_scheme", &scheme) < 0 ||
        get_bool(c, v, "pre_tokenizer", "split", 1, &split) < 0 ||
        get_bool(c, v, "pre_tokenizer", "add_prefix_space", 1, &aps) < 0)
        return -1;
    if (!rep || strcmp(rep, SPM_SPACE) != 0)
        return jerr(c, "pre_tokenizer.replacement must be \"\\u2581\"");
    if (split)
        return jerr(c,
                    "pre_tokenizer: Metaspace with split true (the default) "
                    "is not supported");
    if (scheme) {
        if (strcmp(scheme, "never") == 0) aps = 0;
        else if (strcmp(scheme, "always") == 0 || strcmp(scheme, "first") == 0)
            aps = 1;
        else
            return jerr(c, "pre_tokenizer.prepend_scheme '%.32s' is unknown",
                        scheme);
    }
    c->spm_prefix = aps;
    c->spm_unless_space = aps;
    c->spm_replace = 1;
    return 0;
}

/* Reads one normalizer component (read_components walks Sequences). */
static int read_norm(jctx_t *c, const json_t *v, const char *where,
                     const char *t) {
    if (c->kind == KIND_BYTE_LEVEL) {
        /* NFC is accepted and not applied (see tokenizer.h). */
        if (strcmp(t, "NFC") == 0) return 0;
        return jerr(c,
                    "%s: normalizer type '%.32s' is not supported with a "
                    "ByteLevel pre-tokenizer (only NFC)",
                    where, t);
    }
    if (strcmp(t, "Prepend") == 0) {
        const char *p = NULL;
        if (get_str(c, v, where, "prepend", &p) < 0) return -1;
        if (!p || strcmp(p, SPM_SPACE) != 0)
            return jerr(c, "%s.prepend must be \"\\u2581\"", where);
        c->spm_prefix = 1;
        return 0;
    }
    if (strcmp(t, "Replace") == 0) {
        const json_t *pat = json_object_get(v, "pattern");
        const char *from = NULL, *to = NULL;
        if (!json_is_object(pat) ||
            get_str(c, pat, where, "String", &from) != 0 ||
            get_str(c, v, where, "content", &to) != 0 || strcmp(from, " ") ||
            strcmp(to, SPM_SPACE))
            return jerr(c,
                        "%s: only Replace({\"String\": \" \"}, \"\\u2581\") "
                        "is supported",
                        where);
        c->spm_replace = 1;
        return 0;
    }
    return jerr(c,
                "%s: normalizer type '%.32s' is not supported with "
                "SentencePiece-style BPE",
                where, t);
}

/* Checks that the decoder is one this module decodes like. */
static int read_decoder(jctx_t *c, const json_t *v, const char *where,
                        const char *t) {
    (void)v; /* the type alone decides */
    static const char *const known[] = {"ByteLevel", "Metaspace", "Replace",
                                        "ByteFallback", "Fuse", "Strip"};
    for (size_t i = 0; i < sizeof known / sizeof known[0]; i++)
        if (strcmp(t, known[i]) == 0) return 0;
    return jerr(c, "%s: decoder type '%.32s' is not supported", where, t);
}

/* ---- post_processor ---------------------------------------------------- */

/* Reads a TemplateProcessing's "single" template: [SpecialToken?, A]. */
static int read_template(jctx_t *c, const json_t *v, const char *where) {
    const json_t *single = json_object_get(v, "single");
    const json_t *specials = json_object_get(v, "special_tokens");
    size_t n = json_is_array(single) ? json_array_size(single) : 0;
    int seen_a = 0;
    if (!json_is_array(single))
        return jerr(c, "%s.single must be an array", where);
    for (size_t i = 0; i < n; i++) {
        const json_t *item = json_array_get(single, i);
        const json_t *st = json_object_get(item, "SpecialToken");
        const json_t *seq = json_object_get(item, "Sequence");
        char w[160];
        snprintf(w, sizeof w, "%.100s.single[%zu]", where, i);
        if (!json_is_object(item) || json_object_size(item) != 1 ||
            (!json_is_object(st) && !json_is_object(seq)))
            return jerr(c,
                        "%s must be {\"SpecialToken\": ...} or "
                        "{\"Sequence\": ...}",
                        w);
        if (seq) {
            const char *id = json_string_value(json_object_get(seq, "id"));
            if (!id || strcmp(id, "A") != 0 || seen_a)
                return jerr(c, "%s: only one Sequence \"A\" is supported", w);
            seen_a = 1;
            continue;
        }
        if (seen_a)
            return jerr(c,
                        "%s: a special token after the text (an appended "
                        "EOS) is not supported",
                        w);
        if (c->add_bos)
            return jerr(c, "%s: more than one special token before the "
                        "text is not supported",
                        w);
        const char *name = json_string_value(json_object_get(st, "id"));
        if (!name) return jerr(c, "%s.SpecialToken.id must be a string", w);
        const json_t *spec = json_object_get(specials, name);
        const json_t *ids = json_object_get(spec, "ids");
        if (!json_is_array(ids) || json_array_size(ids) != 1)
            return jerr(c,
                        "%s.special_tokens[\"%.64s\"].ids must hold one id",
                        where, name);
        char w2[200];
        snprintf(w2, sizeof w2, "%.100s.special_tokens[\"%.64s\"].ids[0]",
                 where, name);
        int32_t id = get_id(c, json_array_get(ids, 0), w2);
        if (id < 0) return -1;
        if (id >= c->n)
            return jerr(c, "%s: id %ld is not in the vocabulary", w2,
                        (long)id);
        c->bos = id;
        c->add_bos = 1;
    }
    if (!seen_a) return jerr(c, "%s.single has no Sequence \"A\"", where);
    return 0;
}

static int read_post(jctx_t *c, const json_t *v, const char *where,
                     const char *t) {
    if (strcmp(t, "ByteLevel") == 0) return 0; /* offsets only */
    if (strcmp(t, "TemplateProcessing") == 0)
        return read_template(c, v, where);
    return jerr(c, "%s: post-processor type '%.32s' is not supported", where,
                t);
}

/* ---- model ------------------------------------------------------------- */

/* Checks the model fields this module does not implement. */
static int read_model_options(jctx_t *c, const json_t *model, int *bf,
                              int *ignore_merges, int32_t *unk) {
    const char *type = NULL, *s = NULL;
    int fuse = 0;
    const json_t *dropout = json_object_get(model, "dropout");
    if (get_str(c, model, "model", "type", &type) < 0) return -1;
    if (!type) return jerr(c, "model.type is missing");
    if (strcmp(type, "BPE") != 0)
        return jerr(c, "model.type '%.32s' is not supported (only BPE)",
                    type);
    if (dropout && !json_is_null(dropout))
        return jerr(c, "model.dropout must be null (BPE dropout is not "
                    "supported)");
    if (get_str(c, model, "model", "continuing_subword_prefix", &s) < 0)
        return -1;
    if (s && *s)
        return jerr(c, "model.continuing_subword_prefix is not supported");
    if (get_str(c, model, "model", "end_of_word_suffix", &s) < 0) return -1;
    if (s && *s) return jerr(c, "model.end_of_word_suffix is not supported");
    if (get_bool(c, model, "model", "byte_fallback", 0, bf) < 0 ||
        get_bool(c, model, "model", "ignore_merges", 0, ignore_merges) < 0 ||
        get_bool(c, model, "model", "fuse_unk", 0, &fuse) < 0 ||
        get_str(c, model, "model", "unk_token", &s) < 0)
        return -1;
    *unk = -1;
    if (s) {
        *unk = find_token(c, s);
        if (*unk < 0)
            return jerr(c, "model.unk_token \"%.64s\" is not a token", s);
    }
    return 0;
}

/* Splits model.merges into sides (pointing into the JSON), checking each
 * against model.vocab.  Returns 0 or -1. */
static int read_merges(jctx_t *c, const json_t *model, const char ***left,
                       const char ***right, size_t **llen, size_t **rlen,
                       size_t *n_out) {
    const json_t *m = json_object_get(model, "merges");
    char *cat = NULL;
    int rc = -1;
    if (!json_is_array(m))
        return jerr(c, "model.merges must be an array, not %s",
                    m ? json_kind_name(m) : "missing");
    size_t n = json_array_size(m);
    *left = malloc((n ? n : 1) * sizeof **left);
    *right = malloc((n ? n : 1) * sizeof **right);
    *llen = malloc((n ? n : 1) * sizeof **llen);
    *rlen = malloc((n ? n : 1) * sizeof **rlen);
    if (!*left || !*right || !*llen || !*rlen) {
        jerr(c, "out of memory reading model.merges");
        goto error;
    }
    for (size_t i = 0; i < n; i++) {
        const json_t *e = json_array_get(m, i);
        const char *l, *r;
        size_t ln, rn;
        if (json_is_string(e)) {
            const char *s = json_string_value(e);
            size_t len = json_string_length(e);
            const char *sp = memchr(s, ' ', len);
            if (!sp || memchr(sp + 1, ' ', len - (size_t)(sp - s) - 1)) {
                jerr(c,
                     "model.merges[%zu] (\"%.64s\") must hold exactly one "
                     "space",
                     i, s);
                goto error;
            }
            l = s;
            ln = (size_t)(sp - s);
            r = sp + 1;
            rn = len - ln - 1;
        } else if (json_is_array(e) && json_array_size(e) == 2 &&
                   json_is_string(json_array_get(e, 0)) &&
                   json_is_string(json_array_get(e, 1))) {
            l = json_string_value(json_array_get(e, 0));
            ln = json_string_length(json_array_get(e, 0));
            r = json_string_value(json_array_get(e, 1));
            rn = json_string_length(json_array_get(e, 1));
        } else {
            jerr(c,
                 "model.merges[%zu] must be \"left right\" or [\"left\", "
                 "\"right\"], not %s",
                 i, json_kind_name(e));
            goto error;
        }
        if (!json_object_getn(c->vocab, l, ln) ||
            !json_object_getn(c->vocab, r, rn)) {
            const char *bad = json_object_getn(c->vocab, l, ln) ? r : l;
            size_t bn = bad == l ? ln : rn;
            jerr(c, "model.merges[%zu]: \"%.*s\" is not in model.vocab", i,
                 (int)(bn > 64 ? 64 : bn), bad);
            goto error;
        }
        free(cat);
        cat = malloc(ln + rn + 1);
        if (!cat) {
            jerr(c, "out of memory reading model.merges");
            goto error;
        }
        memcpy(cat, l, ln);
        memcpy(cat + ln, r, rn);
        cat[ln + rn] = '\0';
        if (!json_object_getn(c->vocab, cat, ln + rn)) {
            jerr(c,
                 "model.merges[%zu]: \"%.64s\" (\"%.*s\" + \"%.*s\") is not "
                 "in model.vocab",
                 i, cat, (int)(ln > 32 ? 32 : ln), l,
                 (int)(rn > 32 ? 32 : rn), r);
            goto error;
        }
        (*left)[i] = l;
        (*right)[i] = r;
        (*llen)[i] = ln;
        (*rlen)[i] = rn;
    }
    *n_out = n;
    rc = 0;

error: /* also the way out on success; the caller frees the arrays */
    free(cat);
    return rc;
}

/* ---- BOS / EOS ------------------------------------------------------- */

/* The first special added token among names, or -1. */
static int32_t first_special(const jctx_t *c, const char *const *names,
                             size_t n) {
    for (size_t i = 0; i < n; i++) {
        const json_t *v = json_object_get(c->added_map, names[i]);
        if (v) {
            int32_t id = (int32_t)json_integer_value(v);
            if (c->types[id] == TOKENIZER_TYPE_CONTROL) return id;
        }
    }
    return -1;
}

/* Resolves an opts token text: "" -> -1, else its id.  -2 with an error
 * when it is no token. */
static int32_t opt_token(jctx_t *c, const char *s, const char *what) {
    if (!*s) return -1;
    int32_t id = find_token(c, s);
    if (id < 0) {
        jerr(c, "the %s token \"%.64s\" is not in the vocabulary", what, s);
        return -2;
    }
    return id;
}

/* ---- entry points ------------------------------------------------------ */

tokenizer_t *tokenizer_new_json_buffer(const char *json, size_t len,
                                       const char *name,
                                       const tokenizer_json_opts_t *opts,
                                       char *err, size_t errlen) {
    static const char *const bos_names[] = {"<s>", "<|begin_of_text|>",
                                            "<bos>"};
    static const char *const eos_names[] = {"</s>", "<|endoftext|>",
                                            "<|end_of_text|>", "<eos>"};
    jctx_t c = {.name = name ? name : "tokenizer.json", .err = err,
                .errlen = errlen, .bos = -1};
    tokenizer_t *self = NULL;
    json_t *root = NULL;
    json_error_t je;
    const char **left = NULL, **right = NULL;
    size_t *llen = NULL, *rlen = NULL, n_merges = 0;
    char inner[LOG_ERRLEN] = "";
    int bf = 0, ignore_merges = 0;
    int32_t unk = -1, eos;

    if (!json) {
        jerr(&c, "no JSON");
        goto error;
    }
    root = json_loadb(json, len, JSON_REJECT_DUPLICATES, &je);
    if (!root) {
        jerr(&c, "not valid JSON (line %d, column %d): %s", je.line,
             je.column, je.text);
        goto error;
    }
    if (!json_is_object(root)) {
        jerr(&c, "the top level must be an object, not %s",
             json_kind_name(root));
        goto error;
    }
    const json_t *model = json_object_get(root, "model");
    const json_t *pre = json_object_get(root, "pre_tokenizer");
    const json_t *norm = json_object_get(root, "normalizer");
    if (!json_is_object(model)) {
        jerr(&c, "model must be an object, not %s",
             model ? json_kind_name(model) : "missing");
        goto error;
    }
    static const char *const parts[] = {"normalizer", "pre_tokenizer",
                                        "post_processor", "decoder"};
    for (size_t i = 0; i < sizeof parts / sizeof *parts; i++) {
        const json_t *p = json_object_get(root, parts[i]);
        if (p && !json_is_null(p) && !json_is_object(p)) {
            jerr(&c, "%s must be an object or null, not %s", parts[i],
                 json_kind_name(p));
            goto error;
        }
    }
    if (read_vocab(&c, model, json_object_get(root, "added_tokens")) < 0 ||
        read_model_options(&c, model, &bf, &ignore_merges, &unk) < 0 ||
        read_merges(&c, model, &left, &right, &llen, &rlen, &n_merges) < 0)
        goto error;

    /* Byte-level or SentencePiece-style? */
    if (pre && !json_is_null(pre) &&
        has_type(pre, "ByteLevel", "pretokenizers")) {
        if (bf) {
            jerr(&c, "model.byte_fallback with a ByteLevel pre-tokenizer is "
                     "not supported");
            goto error;
        }
        c.kind = KIND_BYTE_LEVEL;
        if (read_components(&c, pre, "pre_tokenizer", "pretokenizers", 0, read_pre_bytelevel, 0) < 0) goto error;
    } else if (bf || has_type(pre, "Metaspace", "pretokenizers") ||
               has_type(norm, "Replace", "normalizers") ||
               has_type(norm, "Prepend", "normalizers")) {
        c.kind = KIND_SPM;
        if (ignore_merges) {
            jerr(&c, "model.ignore_merges with SentencePiece-style BPE is not "
                     "supported");
            goto error;
        }
        if (read_pre_spm(&c, pre) < 0) goto error;
    } else {
        jerr(&c, "pre_tokenizer: neither byte-level (no ByteLevel "
                 "pre-tokenizer) nor SentencePiece-style (no byte_fallback, "
                 "Metaspace or U+2581 normalizer): not supported");
        goto error;
    }
    if (read_components(&c, norm, "normalizer", "normalizers", 1, read_norm, 0) < 0 ||
        read_components(&c, json_object_get(root, "decoder"), "decoder", "decoders", 1, read_decoder, 0) < 0 ||
        read_components(&c, json_object_get(root, "post_processor"), "post_processor", "processors", 1, read_post,
                        0) < 0)
        goto error;
    if (c.kind == KIND_SPM && !c.spm_replace) {
        jerr(&c, "normalizer: SentencePiece-style BPE needs spaces written as "
                 "U+2581 (a Replace normalizer or a Metaspace "
                 "pre-tokenizer)");
        goto error;
    }

    /* Special tokens: the template's BOS, else by name; opts win. */
    eos = first_special(&c, eos_names, sizeof eos_names / sizeof *eos_names);
    if (c.bos < 0)
        c.bos = first_special(&c, bos_names,
                              sizeof bos_names / sizeof *bos_names);
    if (c.bos < 0 && eos >= 0 && strcmp(c.pieces[eos], "<|endoftext|>") == 0)
        c.bos = eos;
    if (opts && opts->bos_token &&
        (c.bos = opt_token(&c, opts->bos_token, "BOS")) == -2)
        goto error;
    if (opts && opts->eos_token &&
        (eos = opt_token(&c, opts->eos_token, "EOS")) == -2)
        goto error;
    if (opts && opts->add_bos == TOKENIZER_BOS_ADD) c.add_bos = 1;
    if (opts && opts->add_bos == TOKENIZER_BOS_NO) c.add_bos = 0;
    if (c.add_bos && c.bos < 0) {
        jerr(&c, "BOS is to be added but there is no BOS token");
        goto error;
    }
    if (unk >= 0) c.types[unk] = TOKENIZER_TYPE_UNKNOWN;

    if (c.kind == KIND_BYTE_LEVEL) {
        tokenizer_bpe_vocab_t v = {
            .n_vocab = c.n, .pieces = c.pieces, .piece_lens = c.lens,
            .types = c.types, .n_merges = n_merges, .merge_left = left,
            .merge_right = right, .merge_left_lens = llen,
            .merge_right_lens = rlen, .patterns = c.patterns,
            .n_patterns = c.n_patterns, .ignore_merges = ignore_merges,
            .add_prefix_space = c.add_prefix_space, .bos = c.bos, .eos = eos,
            .unk = unk, .add_bos = c.add_bos,
        };
        self = tokenizer_new_bpe(&v, inner, sizeof inner);
    } else {
        /* Byte tokens, as llama.cpp's converter types them. */
        for (int32_t i = 0; bf && i < c.n; i++)
            if (c.types[i] == TOKENIZER_TYPE_NORMAL && c.lens[i] == 6 &&
                memcmp(c.pieces[i], "<0x", 3) == 0 && c.pieces[i][5] == '>')
                c.types[i] = TOKENIZER_TYPE_BYTE;
        tokenizer_spm_vocab_t v = {
            .n_vocab = c.n, .pieces = c.pieces, .piece_lens = c.lens,
            .types = c.types, .bos = c.bos, .eos = eos, .unk = unk,
            .add_bos = c.add_bos, .add_space_prefix = c.spm_prefix,
            .prefix_unless_space = c.spm_unless_space, .n_merges = n_merges,
            .merge_left = left, .merge_right = right,
            .merge_left_lens = llen, .merge_right_lens = rlen,
        };
        if (n_merges == 0) {
            jerr(&c, "model.merges is empty");
            goto error;
        }
        self = tokenizer_new_spm(&v, inner, sizeof inner);
    }
    if (!self) jerr(&c, "%s", inner);

error: /* also the way out on success: the tokenizer copied what it needs */
    for (size_t i = 0; i < c.n_patterns; i++) free(c.owned[i]);
    free(c.pieces);
    free(c.lens);
    free(c.types);
    free(c.is_added);
    free(left);
    free(right);
    free(llen);
    free(rlen);
    json_decref(c.added_map);
    json_decref(root);
    return self;
}

tokenizer_t *tokenizer_new_json(const char *path, char *err, size_t errlen) {
    tokenizer_t *self = NULL;
    FILE *f = NULL;
    char *buf = NULL;
    struct stat st;

    if (!path) {
        log_seterr(err, errlen, "tokenizer.json: no path");
        goto error;
    }
    f = fopen(path, "rb");
    if (!f || fstat(fileno(f), &st) != 0) {
        log_seterr(err, errlen, "%s: cannot open: %s", path, strerror(errno));
        goto error;
    }
    if (!S_ISREG(st.st_mode) || (uint64_t)st.st_size > JSON_MAX_BYTES) {
        log_seterr(err, errlen,
                   "%s: not a regular file of at most %zu bytes", path,
                   JSON_MAX_BYTES);
        goto error;
    }
    size_t n = (size_t)st.st_size;
    buf = malloc(n ? n : 1);
    if (!buf) {
        log_seterr(err, errlen, "%s: out of memory reading %zu bytes", path,
                   n);
        goto error;
    }
    if (fread(buf, 1, n, f) != n) {
        log_seterr(err, errlen, "%s: read error: %s", path,
                   ferror(f) ? strerror(errno) : "file shrank");
        goto error;
    }
    self = tokenizer_new_json_buffer(buf, n, path, NULL, err, errlen);

error: /* also the way out on success */
    if (f) fclose(f);
    free(buf);
    return self;
}
