/* model.c - see model.h.
 *
 * One GGUF loader for every architecture: the table of arch.h says what
 * differs (norm, rope, activation, which tensors are required), and
 * load_weights() reads the tensors llama.cpp's loader for that architecture
 * reads, with the same names and shapes.  Every tensor of the file must be used: a tensor the
 * loader does not know (rope_freqs.weight of Llama 3.1, say) means a feature
 * this engine would silently compute wrongly, so it is an error. */
#include "model.h"

#include <assert.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"

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
    if (!buf || model_own(m, buf, err, errlen)) {
        log_seterr(err, errlen, "%s: out of memory converting tensor '%s'", m->path, name);
        return NULL;
    }
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
static int load_config(model_t *m, const arch_t *a, char *err, size_t errlen) {
    model_config_t *c = &m->cfg;
    c->arch = a->arch;
    c->norm = a->norm;
    c->rope = a->rope;
    c->act = a->act;
    c->qk_norm = a->qk_norm;
    int layer_norm = a->norm == MODEL_NORM_LAYER;
    if (get_int(m, "embedding_length", -1, 1, 1 << 16, &c->n_embd, err, errlen) ||
        get_int(m, "block_count", -1, 1, 1024, &c->n_layer, err, errlen) ||
        get_int(m, "feed_forward_length", -1, 1, 1 << 20, &c->n_ff, err, errlen) ||
        get_int(m, "attention.head_count", -1, 1, 1024, &c->n_head, err, errlen) ||
        get_int(m, "attention.head_count_kv", c->n_head, 1, c->n_head, &c->n_head_kv, err, errlen) ||
        get_int(m, "context_length", a->need[ARCH_POS_EMBD] == ARCH_REQ ? -1 : 2048, 1, 1 << 24, &c->n_ctx_train, err,
                errlen) ||
        get_float(m, layer_norm ? "attention.layer_norm_epsilon" : "attention.layer_norm_rms_epsilon",
                  layer_norm ? NAN : 1e-5, 0, 1, &c->norm_eps, err, errlen) ||
        get_float(m, "rope.freq_base", 10000.0, 1e-3, 1e12, &c->rope_base, err, errlen))
        return -1;
    if (c->n_head % c->n_head_kv)
        return log_seterr(err, errlen, "%s: head_count %d is not a multiple of head_count_kv %d", m->path, c->n_head,
                          c->n_head_kv);
    /* The head size: attention.key_length where the architecture's
     * llama.cpp loader sizes Q by it (Llama 3.x, Qwen3), else d / n_head. */
    int kl, vl, even = c->n_embd % c->n_head == 0;
    if (get_int(m, "attention.key_length", even ? c->n_embd / c->n_head : -1, 1, 1 << 16, &kl, err, errlen) ||
        get_int(m, "attention.value_length", kl, 1, 1 << 16, &vl, err, errlen))
        return -1;
    if (kl != vl)
        return log_seterr(err, errlen, "%s: attention key_length %d differs from value_length %d (not supported)",
                          m->path, kl, vl);
    if (!a->free_head_dim && (!even || kl != c->n_embd / c->n_head))
        return log_seterr(err, errlen, "%s: attention key/value length %d differs from embedding_length / head_count "
                          "(%d / %d), which %s does not support", m->path, kl, c->n_embd, c->n_head, a->gguf);
    c->head_dim = kl;
    if (c->rope == MODEL_ROPE_NONE) {
        c->rope_dim = 0;
    } else {
        if (get_int(m, "rope.dimension_count", c->head_dim, 2, c->head_dim, &c->rope_dim, err, errlen)) return -1;
        if (c->rope_dim % 2)
            return log_seterr(err, errlen, "%s: rope.dimension_count %d must be even", m->path, c->rope_dim);
        if (a->rope_full && c->rope_dim != c->head_dim)
            return log_seterr(err, errlen, "%s: rope.dimension_count %d must equal the head size %d for %s", m->path,
                              c->rope_dim, c->head_dim, a->gguf);
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
    if (a->gemma2) {
        /* llama.cpp's gemma2 hyper-parameters and defaults (src/models/
         * gemma2.cpp): the query scale of the 27B model (46 layers) is
         * d / n_head, not the head size; an array sliding-window pattern
         * is refused by get_int. */
        c->embd_scale = sqrtf((float)c->n_embd);
        if (c->n_layer == 46 && c->n_embd / c->n_head != c->head_dim) c->query_scale_dim = c->n_embd / c->n_head;
        if (get_float(m, "attn_logit_softcapping", 50.0, 1e-3, 1e6, &c->attn_softcap, err, errlen) ||
            get_float(m, "final_logit_softcapping", 30.0, 1e-3, 1e6, &c->final_softcap, err, errlen) ||
            get_int(m, "attention.sliding_window", 4096, 1, 1 << 24, &c->swa_window, err, errlen) ||
            get_int(m, "attention.sliding_window_pattern", 2, 1, 1024, &c->swa_period, err, errlen))
            return -1;
    }
    if (a->parallel_residual_key) {
        char key[128];
        snprintf(key, sizeof key, "%s.use_parallel_residual", m->arch_name);
        int rc = gguf_get_bool(m->gguf, key, &c->parallel_residual, err, errlen);
        if (rc < 0) return -1;
        if (rc == 1) return log_seterr(err, errlen, "%s: required metadata '%s' is missing", m->path, key);
    }
    return 0;
}

static int load_weights(loader_t *ld, const arch_t *a, char *err, size_t errlen) {
    model_t *m = ld->m;
    model_config_t *c = &m->cfg;
    const gguf_tensor_t *emb = gguf_tensor(m->gguf, "token_embd.weight");
    if (!emb) return log_seterr(err, errlen, "%s: tensor 'token_embd.weight' is missing", m->path);
    if (emb->ne[1] > (1u << 24))
        return log_seterr(err, errlen, "%s: token_embd.weight has %" PRIu64 " rows (absurd vocabulary)", m->path,
                          emb->ne[1]);
    c->n_vocab = (int)emb->ne[1];
    if (model_alloc_layers(m, err, errlen)) return -1;

    /* Required tensors fail with the message find_tensor wrote; optional
     * ones fail only when present but malformed (err non-empty).  With a
     * fused QKV, the separate Q/K/V roles are not part of the model, nor
     * without one its bias. */
    for (int l = -1; l < c->n_layer; l++) {
        int fused = 0;
        for (int r = l < 0 ? 0 : ARCH_ROLE_LAYER0; r < (l < 0 ? ARCH_ROLE_LAYER0 : ARCH_N_ROLES); r++) {
            arch_need_t need = (arch_need_t)a->need[r];
            int qkv_part = r >= ARCH_Q && r <= ARCH_V_B;
            if (need == ARCH_NO || (fused && qkv_part) || (r == ARCH_QKV_B && !fused)) continue;
            char name[96];
            uint64_t rows, cols;
            arch_gguf_name((arch_role_t)r, l, name, sizeof name);
            model_role_shape(m, (arch_role_t)r, &rows, &cols);
            model_slot_t s = model_slot(m, l, (arch_role_t)r);
            int optional = need == ARCH_OPT;
            if (s.mat) {
                *s.mat = tensor_mat(ld, name, cols, rows, optional, err, errlen);
                if (!s.mat->data && err && err[0]) return -1;
            } else {
                *s.vec = tensor_f32(ld, name, rows, optional, err, errlen);
                if (!*s.vec && err && err[0]) return -1;
            }
            if (r == ARCH_QKV) fused = s.mat->data != NULL;
        }
    }
    model_finish_weights(m);
    for (uint64_t i = 0; i < gguf_n_tensors(m->gguf); i++)
        if (!ld->used[i]) {
            const gguf_tensor_t *t = gguf_tensor_at(m->gguf, i);
            return log_seterr(err, errlen, "%s: tensor '%.*s' is not part of the %s architecture as this engine "
                              "computes it (an unsupported feature?)", m->path, (int)t->name.len, t->name.ptr,
                              a->gguf);
        }
    return 0;
}

model_t *model_from_gguf(gguf_t *g, void *buf, tokenizer_t *tok, char *err, size_t errlen) {
    model_t *m = model_new(gguf_path(g), err, errlen);
    loader_t ld = {m, NULL};
    const char *arch = NULL;
    const arch_t *a = NULL;
    if (!m) {
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
    if (!(a = arch_by_gguf(arch))) {
        char list[256];
        arch_list(0, list, sizeof list);
        log_seterr(err, errlen, "%s: architecture '%s' is not supported (supported: %s)", m->path, arch, list);
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

/* Appends " TYPE xN" for each type of weight matrix and their megabytes as
 * stored: what the model holds in memory. */
static void describe_weights(const model_t *m, char *buf, size_t len) {
    int count[64] = {0};
    double bytes = 0;
    for (size_t i = 0; i < model_n_matrices(m); i++) {
        const quant_mat_t *w = model_matrix(m, i);
        if (w && w->type < 64) {
            count[w->type]++;
            bytes += (double)quant_mat_row_bytes(w) * (double)w->rows;
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
                      *acts[] = {"swiglu", "gelu", "geglu"};
    char rope[64] = "no rope";
    if (c->rope != MODEL_ROPE_NONE)
        snprintf(rope, sizeof rope, "rope %s dim %d base %g", ropes[c->rope], c->rope_dim, (double)c->rope_base);
    static const char *qk[] = {"", ", q/k norm per head", ", q/k norm"};
    char hd[32] = "";
    if (c->head_dim * c->n_head != c->n_embd) snprintf(hd, sizeof hd, ", head_dim %d", c->head_dim);
    snprintf(buf, len, "%s: %d layers, d=%d, heads=%d (kv %d)%s, ff=%d, vocab=%d, ctx=%d, %s eps %g%s%s, %s%s, %s%s%s%s",
             m->arch_name, c->n_layer, c->n_embd, c->n_head, c->n_head_kv, hd, c->n_ff, c->n_vocab, c->n_ctx_train,
             norms[c->norm], (double)c->norm_eps, qk[c->qk_norm], m->layers && m->layers[0].attn_post_norm ? ", post-norms" : "",
             rope, m->rope_freqs ? " (llama3 frequencies)" : "", acts[c->act], c->parallel_residual ? ", parallel residual" : "",
             m->pos_embd.data ? ", learned positions" : "", m->output.data == m->tok_embd.data ? ", tied output" : "");
    size_t at = strlen(buf);
    if (c->attn_softcap && at < len)
        at += (size_t)snprintf(buf + at, len - at, ", soft-caps %g/%g", (double)c->attn_softcap,
                               (double)c->final_softcap);
    if (c->swa_window && at < len)
        snprintf(buf + at, len - at, ", sliding window %d (%d of every %d layers)", c->swa_window, c->swa_period - 1,
                 c->swa_period);
    describe_weights(m, buf, len);
}

float model_attn_scale(const model_config_t *c) {
    return 1.0f / sqrtf((float)(c->query_scale_dim ? c->query_scale_dim : c->head_dim));
}

int model_attn_first(const model_config_t *c, int layer, int pos) {
    if (!c->swa_window || layer % c->swa_period >= c->swa_period - 1 || pos < c->swa_window) return 0;
    return pos - c->swa_window + 1;
}

/* The matrices model_matrix walks: the model-wide ones, then per layer. */
static const arch_role_t g_top_mats[] = {ARCH_TOK_EMBD, ARCH_POS_EMBD, ARCH_OUTPUT};
static const arch_role_t g_layer_mats[] = {ARCH_Q, ARCH_K, ARCH_V, ARCH_O, ARCH_GATE, ARCH_UP, ARCH_DOWN};
#define N_TOP (sizeof g_top_mats / sizeof *g_top_mats)
#define N_LAYER (sizeof g_layer_mats / sizeof *g_layer_mats)

size_t model_n_matrices(const model_t *m) { return N_TOP + N_LAYER * (size_t)m->cfg.n_layer; }

const quant_mat_t *model_matrix(const model_t *m, size_t i) {
    assert(i < model_n_matrices(m));
    model_t *mm = (model_t *)m; /* model_slot hands out writable slots; nothing is written here */
    const quant_mat_t *w = i < N_TOP ? model_slot(mm, -1, g_top_mats[i]).mat
                                     : model_slot(mm, (int)((i - N_TOP) / N_LAYER), g_layer_mats[(i - N_TOP) % N_LAYER]).mat;
    if (!w->data || (w == &m->output && m->output.data == m->tok_embd.data)) return NULL;
    return w;
}

model_t *model_new(const char *path, char *err, size_t errlen) {
    model_t *m = calloc(1, sizeof *m);
    if (!m || !(m->path = strdup(path))) {
        log_seterr(err, errlen, "%s: out of memory", path);
        free(m);
        return NULL;
    }
    return m;
}

int model_own(model_t *m, void *buf, char *err, size_t errlen) {
    void **owned = realloc(m->owned, (size_t)(m->n_owned + 1) * sizeof *owned);
    if (!owned) {
        free(buf);
        return log_seterr(err, errlen, "%s: out of memory", m->path);
    }
    m->owned = owned;
    owned[m->n_owned++] = buf;
    return 0;
}

int model_alloc_layers(model_t *m, char *err, size_t errlen) {
    assert(!m->layers && m->cfg.n_layer > 0);
    if (!(m->layers = calloc((size_t)m->cfg.n_layer, sizeof *m->layers)))
        return log_seterr(err, errlen, "%s: out of memory", m->path);
    return 0;
}

model_slot_t model_slot(model_t *m, int layer, arch_role_t role) {
    model_slot_t s = {0};
    assert(role < ARCH_ROLE_LAYER0 || (layer >= 0 && layer < m->cfg.n_layer && m->layers));
    model_layer_t *L = role >= ARCH_ROLE_LAYER0 ? &m->layers[layer] : NULL;
    switch (role) {
    case ARCH_TOK_EMBD: s.mat = &m->tok_embd; break;
    case ARCH_POS_EMBD: s.mat = &m->pos_embd; break;
    case ARCH_OUT_NORM: s.vec = &m->output_norm; break;
    case ARCH_OUT_NORM_B: s.vec = &m->output_norm_b; break;
    case ARCH_OUTPUT: s.mat = &m->output; break;
    case ARCH_OUTPUT_B: s.vec = &m->output_b; break;
    case ARCH_ROPE_FREQS: s.vec = &m->rope_freqs; break;
    case ARCH_ATTN_NORM: s.vec = &L->attn_norm; break;
    case ARCH_ATTN_NORM_B: s.vec = &L->attn_norm_b; break;
    case ARCH_QKV: s.mat = &L->wqkv; break;
    case ARCH_QKV_B: s.vec = &L->bqkv; break;
    case ARCH_Q: s.mat = &L->wq; break;
    case ARCH_Q_B: s.vec = &L->bq; break;
    case ARCH_K: s.mat = &L->wk; break;
    case ARCH_K_B: s.vec = &L->bk; break;
    case ARCH_V: s.mat = &L->wv; break;
    case ARCH_V_B: s.vec = &L->bv; break;
    case ARCH_Q_NORM: s.vec = &L->q_norm; break;
    case ARCH_K_NORM: s.vec = &L->k_norm; break;
    case ARCH_O: s.mat = &L->wo; break;
    case ARCH_O_B: s.vec = &L->bo; break;
    case ARCH_ATTN_POST_NORM: s.vec = &L->attn_post_norm; break;
    case ARCH_FFN_NORM: s.vec = &L->ffn_norm; break;
    case ARCH_FFN_NORM_B: s.vec = &L->ffn_norm_b; break;
    case ARCH_GATE: s.mat = &L->w_gate; break;
    case ARCH_GATE_B: s.vec = &L->b_gate; break;
    case ARCH_UP: s.mat = &L->w_up; break;
    case ARCH_UP_B: s.vec = &L->b_up; break;
    case ARCH_GATE_UP: s.mat = &L->w_gate_up; break;
    case ARCH_DOWN: s.mat = &L->w_down; break;
    case ARCH_DOWN_B: s.vec = &L->b_down; break;
    case ARCH_FFN_POST_NORM: s.vec = &L->ffn_post_norm; break;
    case ARCH_N_ROLES: assert(0); break;
    }
    return s;
}

void model_role_shape(const model_t *m, arch_role_t role, uint64_t *rows, uint64_t *cols) {
    const model_config_t *c = &m->cfg;
    uint64_t d = (uint64_t)c->n_embd, V = (uint64_t)c->n_vocab, ff = (uint64_t)c->n_ff;
    uint64_t qd = (uint64_t)c->n_head * c->head_dim, kv = (uint64_t)c->n_head_kv * c->head_dim;
    uint64_t r = d, k = 0;
    switch (role) {
    case ARCH_TOK_EMBD: case ARCH_OUTPUT: r = V, k = d; break;
    case ARCH_POS_EMBD: r = (uint64_t)c->n_ctx_train, k = d; break;
    case ARCH_OUTPUT_B: r = V; break;
    case ARCH_ROPE_FREQS: r = (uint64_t)c->rope_dim / 2; break;
    case ARCH_QKV: r = qd + 2 * kv, k = d; break;
    case ARCH_QKV_B: r = qd + 2 * kv; break;
    case ARCH_Q: r = qd, k = d; break;
    case ARCH_Q_B: r = qd; break;
    case ARCH_K: case ARCH_V: r = kv, k = d; break;
    case ARCH_K_B: case ARCH_V_B: r = kv; break;
    case ARCH_Q_NORM: r = c->qk_norm == MODEL_QK_NORM_HEAD ? (uint64_t)c->head_dim : qd; break;
    case ARCH_K_NORM: r = c->qk_norm == MODEL_QK_NORM_HEAD ? (uint64_t)c->head_dim : kv; break;
    case ARCH_O: r = d, k = qd; break;
    case ARCH_GATE: case ARCH_UP: r = ff, k = d; break;
    case ARCH_GATE_B: case ARCH_UP_B: r = ff; break;
    case ARCH_GATE_UP: r = 2 * ff, k = d; break;
    case ARCH_DOWN: r = d, k = ff; break;
    default: break; /* the [d] norms and biases */
    }
    *rows = r, *cols = k;
}

void model_finish_weights(model_t *m) {
    const model_config_t *c = &m->cfg;
    int64_t qd = (int64_t)c->n_head * c->head_dim, kv = (int64_t)c->n_head_kv * c->head_dim;
    for (int l = 0; l < c->n_layer; l++) {
        model_layer_t *L = &m->layers[l];
        if (L->w_gate_up.data) {
            L->w_gate = quant_mat_rows(&L->w_gate_up, 0, c->n_ff);
            L->w_up = quant_mat_rows(&L->w_gate_up, c->n_ff, c->n_ff);
        }
        if (!L->wqkv.data) continue;
        L->wq = quant_mat_rows(&L->wqkv, 0, qd);
        L->wk = quant_mat_rows(&L->wqkv, qd, kv);
        L->wv = quant_mat_rows(&L->wqkv, qd + kv, kv);
        if (L->bqkv) L->bq = L->bqkv, L->bk = L->bqkv + qd, L->bv = L->bqkv + qd + kv;
    }
    if (!m->output.data) m->output = m->tok_embd; /* tied */
}
