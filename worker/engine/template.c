/* template.c - see template.h. */
#include "template.h"

#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "tpltext.h"

struct template {
    int32_t *ctx; /* T */
    int n_ctx;
    int n_after;
};

/* Appends n ids to the growable array *a (*len of *cap). */
static int push(int32_t **a, int *len, int *cap, const int32_t *ids, long n) {
    if (*len + n > *cap) {
        int c = *cap ? *cap : 64;
        while (c < *len + n) c *= 2;
        int32_t *p = realloc(*a, (size_t)c * sizeof *p);
        if (!p) return -1;
        *a = p, *cap = c;
    }
    if (n) memcpy(*a + *len, ids, (size_t)n * sizeof *ids);
    *len += (int)n;
    return 0;
}

/* The end of the special-token spelling starting at s[0] == '<' (one past
 * its '>'), or 0 when s[0..len) starts with none. */
static size_t special_span(const char *s, size_t len) {
    for (size_t i = 1; i < len && i < TEMPLATE_MAX_SPECIAL; i++) {
        char c = s[i];
        if (c == '>') return i > 1 ? i + 1 : 0;
        if (c == '<' || c == ' ' || c == '\t' || c == '\n' || c == '\r') return 0;
    }
    return 0;
}

/* Appends the tokens of s[0..len), special tokens recognised. */
static int encode_part(const tokenizer_t *tok, const char *s, size_t len, int32_t **a, int *n, int *cap, char *err,
                       size_t errlen) {
    size_t text = 0; /* start of the plain text not yet encoded */
    for (size_t i = 0; i <= len; i++) {
        size_t end = i < len && s[i] == '<' ? special_span(s + i, len - i) : 0;
        if (i < len && !end) continue;
        if (i > text) {
            int32_t *ids = NULL;
            long k = tokenizer_encode(tok, s + text, i - text, 0, &ids, err, errlen);
            int rc = k < 0 ? -1 : push(a, n, cap, ids, k);
            free(ids);
            if (k < 0) return -1;
            if (rc) return log_seterr(err, errlen, "template: out of memory");
        }
        if (i == len) break;
        int32_t id = tokenizer_special(tok, s + i, end);
        if (id < 0)
            return log_seterr(err, errlen, "template: '%.*s' is not a special token of this model's vocabulary "
                              "(write special tokens as the vocabulary spells them)", (int)end, s + i);
        if (push(a, n, cap, &id, 1)) return log_seterr(err, errlen, "template: out of memory");
        i += end - 1;
        text = i + 1;
    }
    return 0;
}

template_t *template_new(const tokenizer_t *tok, const char *text, size_t len, char *err, size_t errlen) {
    size_t before, after;
    int32_t *tail = NULL;
    int n_tail = 0, cap_tail = 0, cap = 0;
    if (tpltext_split(text, len, &before, &after, err, errlen)) return NULL;
    template_t *t = calloc(1, sizeof *t);
    if (!t) goto oom;
    int32_t bos = tokenizer_bos(tok);
    if (tokenizer_adds_bos(tok) && bos >= 0 && push(&t->ctx, &t->n_ctx, &cap, &bos, 1)) goto oom;
    if (encode_part(tok, text, before, &t->ctx, &t->n_ctx, &cap, err, errlen)) goto error;
    /* A template that starts with BOS itself (Llama 3's
     * "<|begin_of_text|>") gets no second one. */
    if (t->n_ctx >= 2 && t->ctx[0] == bos && t->ctx[1] == bos && tokenizer_adds_bos(tok))
        memmove(t->ctx, t->ctx + 1, (size_t)--t->n_ctx * sizeof *t->ctx);
    if (encode_part(tok, text + after, len - after, &tail, &n_tail, &cap_tail, err, errlen)) goto error;
    free(tail);
    t->n_after = n_tail;
    return t;
oom:
    log_seterr(err, errlen, "template: out of memory");
error:
    free(tail);
    template_destroy(&t);
    return NULL;
}

void template_destroy(template_t **self_p) {
    if (!self_p || !*self_p) return;
    free((*self_p)->ctx);
    free(*self_p);
    *self_p = NULL;
}

const int32_t *template_prefix(const template_t *t, int *n) {
    *n = t && t->n_ctx > 1 ? t->n_ctx - 1 : 0;
    return *n ? t->ctx : NULL;
}

int template_n_after(const template_t *t) { return t ? t->n_after : 0; }

long template_encode_doc(const template_t *t, const tokenizer_t *tok, const char *text, size_t len, int32_t **ids,
                         char *err, size_t errlen) {
    if (!t) return tokenizer_encode(tok, text, len, tokenizer_adds_bos(tok), ids, err, errlen);
    int32_t *d = NULL;
    long n = tokenizer_encode(tok, text, len, 0, &d, err, errlen);
    if (n < 0 || !t->n_ctx) {
        *ids = d;
        return n;
    }
    int32_t *out = malloc(((size_t)n + 1) * sizeof *out);
    if (!out) {
        free(d);
        *ids = NULL;
        return log_seterr(err, errlen, "out of memory encoding a document");
    }
    out[0] = t->ctx[t->n_ctx - 1];
    if (n) memcpy(out + 1, d, (size_t)n * sizeof *d);
    free(d);
    *ids = out;
    return n + 1;
}
