/* model.c - see model.h.
 *
 * One loader for every architecture: a table says what differs (norm, rope,
 * activation, which tensors are required), and load_weights() reads the
 * tensors llama.cpp's loader for that architecture reads, with the same
 * names and shapes.  Every tensor of the file must be used: a tensor the
 * loader does not know (rope_freqs.weight of Llama 3.1, say) means a feature
 * this engine would silently compute wrongly, so it is an error. */
#include "model.h"

#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hfdir.h"
#include "log.h"

/* What the loader requires beyond the common tensors. */
enum {
    ARCH_POS_EMBD = 1 << 0,   /* position_embd.weight (learned positions) */
    ARCH_QKV_FUSED = 1 << 1,  /* attn_qkv only (else attn_qkv or attn_q/k/v) */
    ARCH_BIASES = 1 << 2,     /* QKV, attn_output, ffn_up, ffn_down biases required */
    ARCH_OUTPUT = 1 << 3,     /* output.weight required (never tied) */
    ARCH_PAR_RES = 1 << 4,    /* use_parallel_residual key required */
    ARCH_OUTPUT_B = 1 << 5,   /* output.bias allowed */
    ARCH_ROPE_FULL = 1 << 6,  /* rope.dimension_count must equal head_dim */
};

typedef struct {
    const char *name;
    model_arch_t arch;
    model_norm_t norm;
    model_rope_t rope;
    model_act_t act;
    unsigned flags;
} arch_info_t;

static const arch_info_t g_archs[] = {
    {"llama", MODEL_ARCH_LLAMA, MODEL_NORM_RMS, MODEL_ROPE_NORM, MODEL_ACT_SWIGLU, 0},
    {"qwen2", MODEL_ARCH_QWEN2, MODEL_NORM_RMS, MODEL_ROPE_NEOX, MODEL_ACT_SWIGLU, ARCH_OUTPUT_B | ARCH_ROPE_FULL},
    {"gpt2", MODEL_ARCH_GPT2, MODEL_NORM_LAYER, MODEL_ROPE_NONE, MODEL_ACT_GELU,
     ARCH_POS_EMBD | ARCH_QKV_FUSED | ARCH_BIASES},
    {"gptneox", MODEL_ARCH_GPTNEOX, MODEL_NORM_LAYER, MODEL_ROPE_NEOX, MODEL_ACT_GELU,
     ARCH_QKV_FUSED | ARCH_BIASES | ARCH_OUTPUT | ARCH_PAR_RES},
};

/* Loader state: which tensors of the file have been taken. */
typedef struct {
    model_t *m;
    uint8_t *used; /* [n_tensors] */
} loader_t;

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

/* Reads "<arch>.<suffix>" as a float in [lo, hi]; def when absent, or
 * required when def is NaN. */
static int get_float(const model_t *m, const char *suffix, double def, double lo, double hi, float *out,
                     char *err, size_t errlen) {
    char key[128];
    double v;
    snprintf(key, sizeof key, "%s.%s", m->arch_name, suffix);
    int rc = gguf_get_f64(m->gguf, key, &v, err, errlen);
    if (rc < 0) return -1;
    if (rc == 1) {
        if (isnan(def)) return log_seterr(err, errlen, "%s: required metadata '%s' is missing", m->path, key);
        v = def;
    }
    if (!(v >= lo && v <= hi))
        return log_seterr(err, errlen, "%s: metadata '%s' = %g is out of range [%g, %g]", m->path, key, v, lo, hi);
    *out = (float)v;
    return 0;
}

/* Finds tensor name, checks its shape is exactly [ne0, ne1] (ne1 = 1 for
 * vectors) and marks it used.  Returns it; NULL with err set when it is
 * missing and required, or malformed; NULL with err empty when it is
 * optional and absent. */
static const gguf_tensor_t *find_tensor(loader_t *ld, const char *name, uint64_t ne0, uint64_t ne1, int optional,
                                        char *err, size_t errlen) {
    model_t *m = ld->m;
    const gguf_tensor_t *t = gguf_tensor(m->gguf, name);
    if (err && errlen) err[0] = 0;
    if (!t) {
        if (!optional) log_seterr(err, errlen, "%s: tensor '%s' is missing", m->path, name);
        return NULL;
    }
    uint64_t want_dims = ne1 == 1 ? 1 : 2;
    if (t->n_dims > want_dims || t->ne[0] != ne0 || t->ne[1] != ne1) {
        log_seterr(err, errlen, "%s: tensor '%s' has shape [%" PRIu64 ", %" PRIu64 "], expected [%" PRIu64 ", %" PRIu64 "]",
                   m->path, name, t->ne[0], t->ne[1], ne0, ne1);
        return NULL;
    }
    ld->used[t - gguf_tensor_at(m->gguf, 0)] = 1;
    return t;
}

/* A vector's fp32 data: F32 in place when aligned, anything else converted
 * into a buffer the model owns.  NULL as find_tensor. */
static const float *tensor_f32(loader_t *ld, const char *name, uint64_t n, int optional, char *err, size_t errlen) {
    model_t *m = ld->m;
    const gguf_tensor_t *t = find_tensor(ld, name, n, 1, optional, err, errlen);
    if (!t) return NULL;
    if (t->type == GGML_TYPE_F32 && ((uintptr_t)t->data % sizeof(float)) == 0) return t->data;
    float *buf = malloc(n * sizeof *buf);
    void **owned = realloc(m->owned, (size_t)(m->n_owned + 1) * sizeof *owned);
    if (!buf || !owned) {
        free(buf);
        if (owned) m->owned = owned;
        log_seterr(err, errlen, "%s: out of memory converting tensor '%s'", m->path, name);
        return NULL;
    }
    m->owned = owned;
    m->owned[m->n_owned++] = buf;
    gguf_tensor_to_f32(t, buf);
    return buf;
}

/* A matrix [ne1 rows][ne0 cols] in place, in its stored type (data NULL as
 * find_tensor returns NULL). */
static quant_mat_t tensor_mat(loader_t *ld, const char *name, uint64_t ne0, uint64_t ne1, int optional, char *err,
                              size_t errlen) {
    quant_mat_t none = {0};
    const gguf_tensor_t *t = find_tensor(ld, name, ne0, ne1, optional, err, errlen);
    return t ? quant_mat(t->type, t->data, (int64_t)ne1, (int64_t)ne0) : none;
}

/* Hyper-parameters, with llama.cpp's keys and defaults. */
static int load_config(model_t *m, const arch_info_t *a, char *err, size_t errlen) {
    model_config_t *c = &m->cfg;
    c->arch = a->arch;
    c->norm = a->norm;
    c->rope = a->rope;
    c->act = a->act;
    int layer_norm = a->norm == MODEL_NORM_LAYER;
    if (get_int(m, "embedding_length", -1, 1, 1 << 16, &c->n_embd, err, errlen) ||
        get_int(m, "block_count", -1, 1, 1024, &c->n_layer, err, errlen) ||
        get_int(m, "feed_forward_length", -1, 1, 1 << 20, &c->n_ff, err, errlen) ||
        get_int(m, "attention.head_count", -1, 1, 1024, &c->n_head, err, errlen) ||
        get_int(m, "attention.head_count_kv", c->n_head, 1, c->n_head, &c->n_head_kv, err, errlen) ||
        get_int(m, "context_length", (a->flags & ARCH_POS_EMBD) ? -1 : 2048, 1, 1 << 24, &c->n_ctx_train, err,
                errlen) ||
        get_float(m, layer_norm ? "attention.layer_norm_epsilon" : "attention.layer_norm_rms_epsilon",
                  layer_norm ? NAN : 1e-5, 0, 1, &c->norm_eps, err, errlen) ||
        get_float(m, "rope.freq_base", 10000.0, 1e-3, 1e12, &c->rope_base, err, errlen))
        return -1;
    if (c->n_embd % c->n_head)
        return log_seterr(err, errlen, "%s: embedding_length %d is not a multiple of head_count %d", m->path,
                          c->n_embd, c->n_head);
    if (c->n_head % c->n_head_kv)
        return log_seterr(err, errlen, "%s: head_count %d is not a multiple of head_count_kv %d", m->path, c->n_head,
                          c->n_head_kv);
    c->head_dim = c->n_embd / c->n_head;
    int hd;
    if (get_int(m, "attention.key_length", c->head_dim, 1, 1 << 16, &hd, err, errlen)) return -1;
    if (hd == c->head_dim && get_int(m, "attention.value_length", c->head_dim, 1, 1 << 16, &hd, err, errlen))
        return -1;
    if (hd != c->head_dim)
        return log_seterr(err, errlen, "%s: attention key/value length %d differs from embedding_length / head_count "
                          "= %d (not supported)", m->path, hd, c->head_dim);
    if (c->rope == MODEL_ROPE_NONE) {
        c->rope_dim = 0;
    } else {
        if (get_int(m, "rope.dimension_count", c->head_dim, 2, c->head_dim, &c->rope_dim, err, errlen)) return -1;
        if (c->rope_dim % 2)
            return log_seterr(err, errlen, "%s: rope.dimension_count %d must be even", m->path, c->rope_dim);
        if ((a->flags & ARCH_ROPE_FULL) && c->rope_dim != c->head_dim)
            return log_seterr(err, errlen, "%s: rope.dimension_count %d must equal the head size %d for %s", m->path,
                              c->rope_dim, c->head_dim, a->name);
        /* RoPE scaling changes the angles; refuse rather than compute
         * something else. */
        char key[128];
        const char *type;
        double factor;
        snprintf(key, sizeof key, "%s.rope.scaling.type", m->arch_name);
        int rc = gguf_get_str(m->gguf, key, &type, err, errlen);
        if (rc < 0) return -1;
        if (rc == 0 && strcmp(type, "none") && strcmp(type, "linear"))
            return log_seterr(err, errlen, "%s: RoPE scaling '%s' is not supported", m->path, type);
        snprintf(key, sizeof key, "%s.rope.scaling.factor", m->arch_name);
        rc = gguf_get_f64(m->gguf, key, &factor, err, errlen);
        if (rc < 0) return -1;
        if (rc == 0 && factor != 0.0 && factor != 1.0)
            return log_seterr(err, errlen, "%s: RoPE scaling factor %g is not supported", m->path, factor);
    }
    if (a->flags & ARCH_PAR_RES) {
        char key[128];
        snprintf(key, sizeof key, "%s.use_parallel_residual", m->arch_name);
        int rc = gguf_get_bool(m->gguf, key, &c->parallel_residual, err, errlen);
        if (rc < 0) return -1;
        if (rc == 1) return log_seterr(err, errlen, "%s: required metadata '%s' is missing", m->path, key);
    }
    return 0;
}

static int load_weights(loader_t *ld, const arch_info_t *a, char *err, size_t errlen) {
    model_t *m = ld->m;
    model_config_t *c = &m->cfg;
    int layer_norm = c->norm == MODEL_NORM_LAYER, biases = (a->flags & ARCH_BIASES) != 0;
    const gguf_tensor_t *emb = gguf_tensor(m->gguf, "token_embd.weight");
    if (!emb) return log_seterr(err, errlen, "%s: tensor 'token_embd.weight' is missing", m->path);
    if (emb->ne[1] > (1u << 24))
        return log_seterr(err, errlen, "%s: token_embd.weight has %" PRIu64 " rows (absurd vocabulary)", m->path,
                          emb->ne[1]);
    c->n_vocab = (int)emb->ne[1];
    uint64_t d = (uint64_t)c->n_embd, V = (uint64_t)c->n_vocab, ff = (uint64_t)c->n_ff;
    uint64_t qd = (uint64_t)c->n_head * c->head_dim, kv = (uint64_t)c->n_head_kv * c->head_dim;

    /* Required tensors fail with the message find_tensor wrote; optional
     * ones fail only when present but malformed (err non-empty).  Matrices
     * are [rows][cols]; GGUF's ne is (cols, rows). */
#define REQ(dst, name, n) \
    if (!((dst) = tensor_f32(ld, name, n, 0, err, errlen))) return -1;
#define OPT(dst, name, n, required) \
    if (!((dst) = tensor_f32(ld, name, n, !(required), err, errlen)) && err && err[0]) return -1;
#define REQ_M(dst, name, rows, cols) \
    if (!((dst) = tensor_mat(ld, name, cols, rows, 0, err, errlen)).data) return -1;
#define OPT_M(dst, name, rows, cols, required) \
    if (!((dst) = tensor_mat(ld, name, cols, rows, !(required), err, errlen)).data && err && err[0]) return -1;

    REQ_M(m->tok_embd, "token_embd.weight", V, d);
    if (a->flags & ARCH_POS_EMBD) REQ_M(m->pos_embd, "position_embd.weight", (uint64_t)c->n_ctx_train, d);
    REQ(m->output_norm, "output_norm.weight", d);
    if (layer_norm) REQ(m->output_norm_b, "output_norm.bias", d);
    OPT_M(m->output, "output.weight", V, d, a->flags & ARCH_OUTPUT);
    if (!m->output.data) m->output = m->tok_embd; /* tied */
    if (a->flags & ARCH_OUTPUT_B) OPT(m->output_b, "output.bias", V, 0);

    m->layers = calloc((size_t)c->n_layer, sizeof *m->layers);
    if (!m->layers) return log_seterr(err, errlen, "%s: out of memory", m->path);
    for (int l = 0; l < c->n_layer; l++) {
        model_layer_t *L = &m->layers[l];
        char name[96];
#define N(suffix) (snprintf(name, sizeof name, "blk.%d.%s", l, suffix), name)
        REQ(L->attn_norm, N("attn_norm.weight"), d);
        if (layer_norm) REQ(L->attn_norm_b, N("attn_norm.bias"), d);
        quant_mat_t wqkv;
        const float *bqkv = NULL;
        OPT_M(wqkv, N("attn_qkv.weight"), qd + 2 * kv, d, a->flags & ARCH_QKV_FUSED);
        if (wqkv.data) {
            OPT(bqkv, N("attn_qkv.bias"), qd + 2 * kv, biases);
            L->wq = quant_mat_rows(&wqkv, 0, (int64_t)qd);
            L->wk = quant_mat_rows(&wqkv, (int64_t)qd, (int64_t)kv);
            L->wv = quant_mat_rows(&wqkv, (int64_t)(qd + kv), (int64_t)kv);
            if (bqkv) L->bq = bqkv, L->bk = bqkv + qd, L->bv = bqkv + qd + kv;
        } else {
            REQ_M(L->wq, N("attn_q.weight"), qd, d);
            REQ_M(L->wk, N("attn_k.weight"), kv, d);
            REQ_M(L->wv, N("attn_v.weight"), kv, d);
            OPT(L->bq, N("attn_q.bias"), qd, biases);
            OPT(L->bk, N("attn_k.bias"), kv, biases);
            OPT(L->bv, N("attn_v.bias"), kv, biases);
        }
        REQ_M(L->wo, N("attn_output.weight"), d, qd);
        OPT(L->bo, N("attn_output.bias"), d, biases);
        REQ(L->ffn_norm, N("ffn_norm.weight"), d);
        if (layer_norm) REQ(L->ffn_norm_b, N("ffn_norm.bias"), d);
        if (c->act == MODEL_ACT_SWIGLU) {
            REQ_M(L->w_gate, N("ffn_gate.weight"), ff, d);
            OPT(L->b_gate, N("ffn_gate.bias"), ff, 0);
        }
        REQ_M(L->w_up, N("ffn_up.weight"), ff, d);
        OPT(L->b_up, N("ffn_up.bias"), ff, biases);
        REQ_M(L->w_down, N("ffn_down.weight"), d, ff);
        OPT(L->b_down, N("ffn_down.bias"), d, biases);
#undef N
    }
#undef REQ
#undef OPT
#undef REQ_M
#undef OPT_M
    for (uint64_t i = 0; i < gguf_n_tensors(m->gguf); i++)
        if (!ld->used[i]) {
            const gguf_tensor_t *t = gguf_tensor_at(m->gguf, i);
            return log_seterr(err, errlen, "%s: tensor '%.*s' is not part of the %s architecture as this engine "
                              "computes it (an unsupported feature?)", m->path, (int)t->name.len, t->name.ptr,
                              a->name);
        }
    return 0;
}

model_t *model_from_gguf(gguf_t *g, void *buf, tokenizer_t *tok, char *err, size_t errlen) {
    model_t *m = calloc(1, sizeof *m);
    loader_t ld = {m, NULL};
    const char *arch = NULL;
    const arch_info_t *a = NULL;
    if (!m || !(m->path = strdup(gguf_path(g)))) {
        log_seterr(err, errlen, "%s: out of memory", gguf_path(g));
        free(m);
        gguf_destroy(&g);
        free(buf);
        tokenizer_destroy(&tok);
        return NULL;
    }
    m->gguf = g;
    m->gguf_buf = buf;
    m->tok = tok;
    int rc = gguf_get_str(g, "general.architecture", &arch, err, errlen);
    if (rc < 0) goto error;
    if (rc == 1) {
        log_seterr(err, errlen, "%s: metadata 'general.architecture' is missing", m->path);
        goto error;
    }
    snprintf(m->arch_name, sizeof m->arch_name, "%s", arch);
    for (size_t i = 0; i < sizeof g_archs / sizeof *g_archs; i++)
        if (!strcmp(arch, g_archs[i].name)) a = &g_archs[i];
    if (!a) {
        log_seterr(err, errlen, "%s: architecture '%s' is not supported (supported: llama, qwen2, gpt2, gptneox)",
                   m->path, arch);
        goto error;
    }
    if (!(ld.used = calloc(gguf_n_tensors(g) + 1, 1))) {
        log_seterr(err, errlen, "%s: out of memory", m->path);
        goto error;
    }
    if (load_config(m, a, err, errlen) || load_weights(&ld, a, err, errlen)) goto error;
    if (!m->tok && !(m->tok = tokenizer_new_gguf(g, err, errlen))) goto error;
    if (tokenizer_n_vocab(m->tok) > m->cfg.n_vocab) {
        log_seterr(err, errlen, "%s: the tokenizer has %d tokens but the embedding only %d rows", m->path,
                   tokenizer_n_vocab(m->tok), m->cfg.n_vocab);
        goto error;
    }
    free(ld.used);
    return m;
error:
    free(ld.used);
    model_destroy(&m);
    return NULL;
}

model_t *model_load(const char *path, char *err, size_t errlen) {
    if (hfdir_is_dir(path)) return hfdir_load(path, err, errlen); /* a Hugging Face model directory */
    gguf_t *g = gguf_open(path, err, errlen);
    return g ? model_from_gguf(g, NULL, NULL, err, errlen) : NULL;
}

void model_destroy(model_t **self_p) {
    if (!self_p || !*self_p) return;
    model_t *m = *self_p;
    tokenizer_destroy(&m->tok);
    for (int i = 0; i < m->n_owned; i++) free(m->owned[i]);
    free(m->owned);
    free(m->layers);
    gguf_destroy(&m->gguf);
    free(m->gguf_buf);
    free(m->path);
    free(m);
    *self_p = NULL;
}

/* Appends " TYPE xN" for each type of weight matrix (tied output counted
 * once) and their megabytes as stored: what the model holds in memory. */
static void describe_weights(const model_t *m, char *buf, size_t len) {
    int count[64] = {0};
    double bytes = 0;
    const quant_mat_t *top[] = {&m->tok_embd, &m->pos_embd, m->output.data == m->tok_embd.data ? NULL : &m->output};
    for (int l = -1; l < m->cfg.n_layer; l++) {
        const model_layer_t *L = l >= 0 ? &m->layers[l] : NULL;
        const quant_mat_t *layer[] = {L ? &L->wq : NULL, L ? &L->wk : NULL,     L ? &L->wv : NULL,  L ? &L->wo : NULL,
                                      L ? &L->w_gate : NULL, L ? &L->w_up : NULL, L ? &L->w_down : NULL};
        const quant_mat_t *const *mats = L ? layer : top;
        size_t n = L ? sizeof layer / sizeof *layer : sizeof top / sizeof *top;
        for (size_t i = 0; i < n; i++)
            if (mats[i] && mats[i]->data && mats[i]->type < 64) {
                count[mats[i]->type]++;
                bytes += (double)quant_mat_row_bytes(mats[i]) * (double)mats[i]->rows;
            }
    }
    size_t at = strlen(buf);
    at += (size_t)snprintf(buf + at, at < len ? len - at : 0, ", weights");
    for (uint32_t t = 0; t < 64; t++)
        if (count[t] && at < len) at += (size_t)snprintf(buf + at, len - at, " %s x%d", quant_type_name(t), count[t]);
    if (at < len) snprintf(buf + at, len - at, " (%.1f MB)", bytes / 1e6);
}

void model_describe(const model_t *m, char *buf, size_t len) {
    const model_config_t *c = &m->cfg;
    static const char *norms[] = {"rmsnorm", "layernorm"}, *ropes[] = {"norm", "neox", "none"},
                      *acts[] = {"swiglu", "gelu"};
    char rope[64] = "no rope";
    if (c->rope != MODEL_ROPE_NONE)
        snprintf(rope, sizeof rope, "rope %s dim %d base %g", ropes[c->rope], c->rope_dim, (double)c->rope_base);
    snprintf(buf, len, "%s: %d layers, d=%d, heads=%d (kv %d), ff=%d, vocab=%d, ctx=%d, %s eps %g, %s, %s%s%s%s",
             m->arch_name, c->n_layer, c->n_embd, c->n_head, c->n_head_kv, c->n_ff, c->n_vocab, c->n_ctx_train,
             norms[c->norm], (double)c->norm_eps, rope, acts[c->act], c->parallel_residual ? ", parallel residual" : "",
             m->pos_embd.data ? ", learned positions" : "", m->output.data == m->tok_embd.data ? ", tied output" : "");
    describe_weights(m, buf, len);
}
