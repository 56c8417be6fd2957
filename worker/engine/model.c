/* model.c - see model.h. */
#include "model.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"

/* Reads "<arch>.<suffix>" as an integer in [lo, hi]; required unless def >= 0. */
static int get_int(const model_t *m, const char *suffix, long def, long lo, long hi, int *out,
                   char *err, size_t errlen) {
    char key[128];
    uint64_t v;
    snprintf(key, sizeof key, "%s.%s", m->arch_name, suffix);
    int rc = gguf_get_u64(m->gguf, key, &v, err, errlen);
    if (rc < 0) return -1;
    if (rc == 1) {
        if (def < 0) return log_seterr(err, errlen, "%s: required metadata '%s' is missing", m->path, key);
        v = (uint64_t)def;
    }
    if (v < (uint64_t)lo || v > (uint64_t)hi)
        return log_seterr(err, errlen, "%s: metadata '%s' = %" PRIu64 " is out of range [%ld, %ld]", m->path, key, v,
                          lo, hi);
    *out = (int)v;
    return 0;
}

static int get_float(const model_t *m, const char *suffix, double def, double lo, double hi, float *out,
                     char *err, size_t errlen) {
    char key[128];
    double v;
    snprintf(key, sizeof key, "%s.%s", m->arch_name, suffix);
    int rc = gguf_get_f64(m->gguf, key, &v, err, errlen);
    if (rc < 0) return -1;
    if (rc == 1) v = def;
    if (!(v >= lo && v <= hi))
        return log_seterr(err, errlen, "%s: metadata '%s' = %g is out of range [%g, %g]", m->path, key, v, lo, hi);
    *out = (float)v;
    return 0;
}

/* Returns the fp32 data of tensor name, checking its shape is exactly
 * [ne0, ne1] (ne1 = 1 for vectors).  F32 data is used in place when aligned;
 * everything else is converted into an owned buffer. */
static const float *tensor_f32(model_t *m, const char *name, uint64_t ne0, uint64_t ne1, int optional,
                               char *err, size_t errlen) {
    const gguf_tensor_t *t = gguf_tensor(m->gguf, name);
    if (!t) {
        if (!optional) log_seterr(err, errlen, "%s: tensor '%s' is missing", m->path, name);
        else if (err && errlen) err[0] = 0;
        return NULL;
    }
    uint64_t want_dims = ne1 == 1 ? 1 : 2;
    if (t->n_dims > want_dims || t->ne[0] != ne0 || t->ne[1] != ne1) {
        log_seterr(err, errlen, "%s: tensor '%s' has shape [%" PRIu64 ", %" PRIu64 "], expected [%" PRIu64 ", %" PRIu64 "]",
                   m->path, name, t->ne[0], t->ne[1], ne0, ne1);
        return NULL;
    }
    if (t->type == GGML_TYPE_F32 && ((uintptr_t)t->data % sizeof(float)) == 0) return t->data;
    float *buf = malloc(ne0 * ne1 * sizeof *buf);
    float **owned = realloc(m->owned, (size_t)(m->n_owned + 1) * sizeof *owned);
    if (!buf || !owned) {
        free(buf);
        if (owned) m->owned = owned;
        log_seterr(err, errlen, "%s: out of memory converting tensor '%s'", m->path, name);
        return NULL;
    }
    m->owned = owned;
    m->owned[m->n_owned++] = buf;
    if (gguf_tensor_to_f32(t, buf, err, errlen)) return NULL;
    return buf;
}

static int load_llama(model_t *m, char *err, size_t errlen) {
    model_config_t *c = &m->cfg;
    c->arch = MODEL_ARCH_LLAMA;
    if (get_int(m, "embedding_length", -1, 1, 1 << 16, &c->n_embd, err, errlen) ||
        get_int(m, "block_count", -1, 1, 1024, &c->n_layer, err, errlen) ||
        get_int(m, "feed_forward_length", -1, 1, 1 << 20, &c->n_ff, err, errlen) ||
        get_int(m, "attention.head_count", -1, 1, 1024, &c->n_head, err, errlen) ||
        get_int(m, "attention.head_count_kv", c->n_head, 1, c->n_head, &c->n_head_kv, err, errlen) ||
        get_int(m, "context_length", 2048, 1, 1 << 24, &c->n_ctx_train, err, errlen) ||
        get_float(m, "attention.layer_norm_rms_epsilon", 1e-5, 0, 1, &c->norm_eps, err, errlen) ||
        get_float(m, "rope.freq_base", 10000.0, 1e-3, 1e12, &c->rope_base, err, errlen))
        return -1;
    if (c->n_embd % c->n_head)
        return log_seterr(err, errlen, "%s: embedding_length %d is not a multiple of head_count %d", m->path,
                          c->n_embd, c->n_head);
    if (c->n_head % c->n_head_kv)
        return log_seterr(err, errlen, "%s: head_count %d is not a multiple of head_count_kv %d", m->path, c->n_head,
                          c->n_head_kv);
    c->head_dim = c->n_embd / c->n_head;
    if (get_int(m, "rope.dimension_count", c->head_dim, 2, c->head_dim, &c->rope_dim, err, errlen)) return -1;
    if (c->rope_dim % 2)
        return log_seterr(err, errlen, "%s: rope.dimension_count %d must be even", m->path, c->rope_dim);

    const gguf_tensor_t *emb = gguf_tensor(m->gguf, "token_embd.weight");
    if (!emb) return log_seterr(err, errlen, "%s: tensor 'token_embd.weight' is missing", m->path);
    if (emb->ne[1] > (1u << 24))
        return log_seterr(err, errlen, "%s: token_embd.weight has %" PRIu64 " rows (absurd vocabulary)", m->path,
                          emb->ne[1]);
    c->n_vocab = (int)emb->ne[1];
    uint64_t d = (uint64_t)c->n_embd, kv = (uint64_t)c->n_head_kv * c->head_dim, ff = (uint64_t)c->n_ff;
    if (!(m->tok_embd = tensor_f32(m, "token_embd.weight", d, c->n_vocab, 0, err, errlen)) ||
        !(m->output_norm = tensor_f32(m, "output_norm.weight", d, 1, 0, err, errlen)))
        return -1;
    m->output = tensor_f32(m, "output.weight", d, c->n_vocab, 1, err, errlen);
    if (!m->output) {
        if (err && err[0]) return -1; /* present but bad */
        m->output = m->tok_embd;      /* tied */
    }
    m->layers = calloc((size_t)c->n_layer, sizeof *m->layers);
    if (!m->layers) return log_seterr(err, errlen, "%s: out of memory", m->path);
    for (int l = 0; l < c->n_layer; l++) {
        model_layer_t *L = &m->layers[l];
        char name[96];
#define W(field, suffix, a, b)                                                    \
    snprintf(name, sizeof name, "blk.%d.%s.weight", l, suffix);                   \
    if (!(L->field = tensor_f32(m, name, a, b, 0, err, errlen))) return -1;
        W(attn_norm, "attn_norm", d, 1);
        W(wq, "attn_q", d, d);
        W(wk, "attn_k", d, kv);
        W(wv, "attn_v", d, kv);
        W(wo, "attn_output", d, d);
        W(ffn_norm, "ffn_norm", d, 1);
        W(w_gate, "ffn_gate", d, ff);
        W(w_up, "ffn_up", d, ff);
        W(w_down, "ffn_down", ff, d);
#undef W
    }
    return 0;
}

model_t *model_load(const char *path, char *err, size_t errlen) {
    model_t *m = calloc(1, sizeof *m);
    const char *arch = NULL;
    if (!m || !(m->path = strdup(path))) {
        log_seterr(err, errlen, "%s: out of memory", path);
        goto error;
    }
    if (!(m->gguf = gguf_open(path, err, errlen))) goto error;
    int rc = gguf_get_str(m->gguf, "general.architecture", &arch, err, errlen);
    if (rc < 0) goto error;
    if (rc == 1) {
        log_seterr(err, errlen, "%s: metadata 'general.architecture' is missing", path);
        goto error;
    }
    snprintf(m->arch_name, sizeof m->arch_name, "%s", arch);
    if (!strcmp(arch, "llama")) {
        if (load_llama(m, err, errlen)) goto error;
    } else {
        log_seterr(err, errlen, "%s: architecture '%s' is not supported (supported: llama)", path, arch);
        goto error;
    }
    if (!(m->tok = tokenizer_new_gguf(m->gguf, err, errlen))) goto error;
    if (tokenizer_n_vocab(m->tok) > m->cfg.n_vocab) {
        log_seterr(err, errlen, "%s: the tokenizer has %d tokens but the embedding only %d rows", path,
                   tokenizer_n_vocab(m->tok), m->cfg.n_vocab);
        goto error;
    }
    return m;
error:
    model_destroy(&m);
    return NULL;
}

void model_destroy(model_t **self_p) {
    if (!self_p || !*self_p) return;
    model_t *m = *self_p;
    tokenizer_destroy(&m->tok);
    for (int i = 0; i < m->n_owned; i++) free(m->owned[i]);
    free(m->owned);
    free(m->layers);
    gguf_destroy(&m->gguf);
    free(m->path);
    free(m);
    *self_p = NULL;
}

void model_describe(const model_t *m, char *buf, size_t len) {
    const model_config_t *c = &m->cfg;
    snprintf(buf, len, "%s: %d layers, d=%d, heads=%d (kv %d), ff=%d, vocab=%d, ctx=%d, rope dim %d base %g", m->arch_name,
             c->n_layer, c->n_embd, c->n_head, c->n_head_kv, c->n_ff, c->n_vocab, c->n_ctx_train, c->rope_dim,
             (double)c->rope_base);
}
