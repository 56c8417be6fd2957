/* hfdir.c - see hfdir.h.  The layout conversions follow llama.cpp's
 * convert_hf_to_gguf.py, so that the forward pass sees exactly what it sees
 * for the GGUF that converter writes:
 *
 *   llama, mistral  q_proj/k_proj (weights and biases): LlamaModel.permute,
 *                   reshape(n_head, 2, head_dim/2, ...).swapaxes(1, 2): row
 *                   h*hd + 2i + j of GGUF is row h*hd + j*hd/2 + i of HF.
 *   qwen2           unchanged (GGUF qwen2 keeps the HF layout and uses NeoX
 *                   rotary pairs).
 *   gpt2            Conv1D weights c_attn, c_proj, c_fc are stored [in][out]
 *                   and are transposed; c_attn's output columns are already
 *                   Q, then K, then V, head-major.
 *   gpt_neox        query_key_value rows are (head, {q,k,v}, dim); GGUF
 *                   reorders them to ({q,k,v}, head, dim) (GPTNeoXModel
 *                   modify_tensors), weights and bias alike.  NeoX rotary
 *                   pairs on the first int(rotary_pct * head_dim)
 *                   dimensions.
 *
 * The computation is the GGUF path's, so it follows llama.cpp where that
 * differs from transformers: GPT-NeoX's hidden_act "gelu" (erf) runs as the
 * fp16-tabled tanh GELU of kernels.h, as llama.cpp runs it (a difference of
 * ~1e-3 nats against transformers, none against the GGUF). */
#include "hfdir.h"

#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "log.h"
#include "path.h"
#include "safetensors.h"
#include "tokenizer.h"

typedef struct {
    model_t *m;
    char *cfg_path;
    json_t *cfg;
    safetensors_set_t *set;
    unsigned char *used; /* per tensor of set, in its (name) order */
    char *err;
    size_t errlen;
} hf_t;

int hfdir_is_dir(const char *path) {
    struct stat sb;
    return stat(path, &sb) == 0 && S_ISDIR(sb.st_mode);
}


/* ---- config.json --------------------------------------------------------- */

/* The first of keys (NULL-terminated) present with a non-null value. */
static json_t *cfg_find(const hf_t *h, const char *const *keys, const char **which) {
    for (; *keys; keys++) {
        json_t *v = json_object_get(h->cfg, *keys);
        if (v && !json_is_null(v)) {
            *which = *keys;
            return v;
        }
    }
    return NULL;
}

/* An integer under the first present key, in [lo, hi]; def < 0: required. */
static int cfg_int(hf_t *h, const char *const *keys, long def, long lo, long hi, int *out) {
    const char *k = keys[0];
    json_t *v = cfg_find(h, keys, &k);
    long x;
    if (!v) {
        if (def < 0) return log_seterr(h->err, h->errlen, "%s: required key '%s' is missing", h->cfg_path, keys[0]);
        x = def;
    } else {
        if (!json_is_integer(v))
            return log_seterr(h->err, h->errlen, "%s: '%s' must be an integer", h->cfg_path, k);
        json_int_t j = json_integer_value(v);
        if (j < lo || j > hi)
            return log_seterr(h->err, h->errlen, "%s: '%s' = %lld is out of range [%ld, %ld]", h->cfg_path, k,
                              (long long)j, lo, hi);
        x = (long)j;
    }
    *out = (int)x;
    return 0;
}

static int cfg_float(hf_t *h, const char *const *keys, double def, double lo, double hi, float *out) {
    const char *k = keys[0];
    json_t *v = cfg_find(h, keys, &k);
    double x = def;
    if (v) {
        if (!json_is_number(v))
            return log_seterr(h->err, h->errlen, "%s: '%s' must be a number", h->cfg_path, k);
        x = json_number_value(v);
    }
    if (!(x >= lo && x <= hi))
        return log_seterr(h->err, h->errlen, "%s: '%s' = %g is out of range [%g, %g]", h->cfg_path, k, x, lo, hi);
    *out = (float)x;
    return 0;
}

/* A boolean key (absent or null: def).  *out is def on failure too, so
 * that it is never left unset (callers chain these with ||). */
static int cfg_bool(hf_t *h, const char *key, int def, int *out) {
    json_t *v = json_object_get(h->cfg, key);
    *out = def;
    if (!v || json_is_null(v)) return 0;
    if (!json_is_boolean(v)) return log_seterr(h->err, h->errlen, "%s: '%s' must be true or false", h->cfg_path, key);
    *out = json_is_true(v);
    return 0;
}

/* A string key that must be absent, null, or one of allowed (NULL-terminated). */
static int cfg_str_in(hf_t *h, const char *key, const char *const *allowed, const char *what) {
    json_t *v = json_object_get(h->cfg, key);
    if (!v || json_is_null(v)) return 0;
    const char *s = json_string_value(v);
    for (const char *const *a = allowed; s && *a; a++)
        if (!strcmp(s, *a)) return 0;
    return log_seterr(h->err, h->errlen, "%s: '%s' = %s is not supported (%s)", h->cfg_path, key,
                      s ? s : "(not a string)", what);
}

/* Options that change the computation in ways this engine does not
 * implement must be absent, null or false. */
static int cfg_must_be_off(hf_t *h, const char *key, const char *why) {
    json_t *v = json_object_get(h->cfg, key);
    if (!v || json_is_null(v) || json_is_false(v)) return 0;
    return log_seterr(h->err, h->errlen, "%s: '%s' is set, which is not supported (%s)", h->cfg_path, key, why);
}

/* rope_scaling must be absent or null; a "rope_parameters" object (newer
 * transformers) may only say rope_type "default" and carry rope_theta. */
static int cfg_rope(hf_t *h, float def_theta, float *theta) {
    static const char *const theta_keys[] = {"rope_theta", "rotary_emb_base", NULL};
    if (cfg_must_be_off(h, "rope_scaling", "only plain RoPE is implemented") ||
        cfg_float(h, theta_keys, def_theta, 1e-3, 1e12, theta))
        return -1;
    json_t *rp = json_object_get(h->cfg, "rope_parameters");
    if (!rp || json_is_null(rp)) return 0;
    const char *k;
    json_t *v;
    if (!json_is_object(rp)) return log_seterr(h->err, h->errlen, "%s: 'rope_parameters' must be an object", h->cfg_path);
    json_object_foreach(rp, k, v) {
        if (!strcmp(k, "rope_type") && json_is_string(v) && !strcmp(json_string_value(v), "default")) continue;
        if (!strcmp(k, "rope_theta") && json_is_number(v) && json_number_value(v) >= 1e-3 &&
            json_number_value(v) <= 1e12) {
            *theta = (float)json_number_value(v);
            continue;
        }
        if (!strcmp(k, "partial_rotary_factor")) continue; /* read by the caller where it applies */
        return log_seterr(h->err, h->errlen, "%s: rope_parameters '%s' is not supported (only default RoPE with rope_theta)",
                          h->cfg_path, k);
    }
    return 0;
}

/* ---- tensors -------------------------------------------------------------- */

static long tensor_index(const hf_t *h, const char *name) {
    size_t lo = 0, hi = safetensors_set_n_tensors(h->set);
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = strcmp(safetensors_set_tensor_at(h->set, mid)->name, name);
        if (!c) return (long)mid;
        if (c < 0) lo = mid + 1;
        else hi = mid;
    }
    return -1;
}

static int own(hf_t *h, void *buf) {
    void **owned = realloc(h->m->owned, (size_t)(h->m->n_owned + 1) * sizeof *owned);
    if (!owned) {
        free(buf);
        return log_seterr(h->err, h->errlen, "%s: out of memory", h->m->path);
    }
    h->m->owned = owned;
    owned[h->m->n_owned++] = buf;
    return 0;
}

/* Finds tensor name and checks its shape is [rows][cols] (cols == 0: a
 * vector of rows); marks it used.  *t = NULL and 0 when it is absent and
 * not required; -1 with a message when it is absent and required or has
 * another shape. */
static int find(hf_t *h, const char *name, uint64_t rows, uint64_t cols, int required,
                const safetensors_tensor_t **out) {
    *out = NULL;
    long i = tensor_index(h, name);
    if (i < 0) {
        if (!required) return 0;
        return log_seterr(h->err, h->errlen, "%s: tensor '%s' is missing", safetensors_set_path(h->set), name);
    }
    const safetensors_tensor_t *t = safetensors_set_tensor_at(h->set, (size_t)i);
    int ok = cols ? t->n_dims == 2 && t->shape[0] == rows && t->shape[1] == cols
                  : t->n_dims == 1 && t->shape[0] == rows;
    if (!ok) {
        char got[128] = "", want[64];
        size_t n = 0;
        for (int d = 0; d < t->n_dims && n < sizeof got - 24; d++)
            n += (size_t)snprintf(got + n, sizeof got - n, "%s%" PRIu64, d ? ", " : "", t->shape[d]);
        if (cols) snprintf(want, sizeof want, "%" PRIu64 ", %" PRIu64, rows, cols);
        else snprintf(want, sizeof want, "%" PRIu64, rows);
        return log_seterr(h->err, h->errlen, "%s: tensor '%s' has shape [%s], expected [%s]", t->file, name, got, want);
    }
    h->used[i] = 1;
    *out = t;
    return 0;
}

/* Sets *out to tensor name converted to fp32 in a buffer owned by the model,
 * after checking its shape (find).  Absent: an error when required, else
 * *out = NULL and 0. */
static int get(hf_t *h, const char *name, uint64_t rows, uint64_t cols, int required, float **out) {
    const safetensors_tensor_t *t;
    *out = NULL;
    if (find(h, name, rows, cols, required, &t)) return -1;
    if (!t) return 0;
    float *buf = malloc((size_t)(t->nelem ? t->nelem : 1) * sizeof *buf);
    if (!buf) return log_seterr(h->err, h->errlen, "%s: out of memory loading tensor '%s'", t->file, name);
    if (own(h, buf) || safetensors_to_f32(t, buf, h->err, h->errlen)) return -1;
    *out = buf;
    return 0;
}

/* A weight matrix [rows][cols], required: copied into a buffer the model
 * owns in its stored type when that is F16 or BF16 (as the GGUF converter
 * stores matrices: both then compute the same bits, and the model takes
 * half the memory), else converted to fp32.  *raw is that buffer and *es
 * its element size, for the layout changes below. */
static int get_mat(hf_t *h, const char *name, uint64_t rows, uint64_t cols, quant_mat_t *out, void **raw,
                   size_t *es) {
    const safetensors_tensor_t *t;
    if (find(h, name, rows, cols, 1, &t)) return -1;
    uint32_t type = t->dtype == SAFETENSORS_F16 ? GGML_TYPE_F16 : t->dtype == SAFETENSORS_BF16 ? GGML_TYPE_BF16
                                                                                           : GGML_TYPE_F32;
    *es = type == GGML_TYPE_F32 ? sizeof(float) : 2;
    void *buf = malloc((size_t)t->nelem * *es);
    if (!buf) return log_seterr(h->err, h->errlen, "%s: out of memory loading tensor '%s'", t->file, name);
    if (own(h, buf)) return -1;
    if (type != GGML_TYPE_F32) memcpy(buf, t->data, (size_t)t->nelem * 2);
    else if (safetensors_to_f32(t, buf, h->err, h->errlen)) return -1;
    *out = quant_mat(type, buf, (int64_t)rows, (int64_t)cols);
    *raw = buf;
    return 0;
}

/* Marks a tensor as deliberately not needed (e.g. lm_head of a tied model). */
static void skip(hf_t *h, const char *name) {
    long i = tensor_index(h, name);
    if (i >= 0) h->used[i] = 1;
}

/* In-place layout changes, through one scratch copy; elements are es bytes
 * (fp32 or 16-bit). */
static uint8_t *scratch_copy(hf_t *h, const void *w, size_t bytes) {
    uint8_t *s = malloc(bytes ? bytes : 1);
    if (!s) log_seterr(h->err, h->errlen, "%s: out of memory", h->m->path);
    else memcpy(s, w, bytes);
    return s;
}

/* LlamaModel.permute: for each of n_heads heads of hd rows of cols, row
 * 2i + j (GGUF) <- row j*hd/2 + i (HF), i < hd/2, j < 2. */
static int permute_rope(hf_t *h, void *wv, size_t es, int n_heads, int hd, size_t cols) {
    uint8_t *w = wv, *s = scratch_copy(h, w, (size_t)n_heads * hd * cols * es);
    size_t row = cols * es;
    if (!s) return -1;
    for (int hh = 0; hh < n_heads; hh++)
        for (int i = 0; i < hd / 2; i++)
            for (int j = 0; j < 2; j++)
                memcpy(w + ((size_t)hh * hd + 2 * i + j) * row, s + ((size_t)hh * hd + (size_t)j * (hd / 2) + i) * row,
                       row);
    free(s);
    return 0;
}

/* [rows][cols] -> [cols][rows] (Conv1D [in][out] -> Linear [out][in]). */
static int transpose(hf_t *h, void *wv, size_t es, size_t rows, size_t cols) {
    uint8_t *w = wv, *s = scratch_copy(h, w, rows * cols * es);
    if (!s) return -1;
    for (size_t r = 0; r < rows; r++)
        for (size_t c = 0; c < cols; c++) memcpy(w + (c * rows + r) * es, s + (r * cols + c) * es, es);
    free(s);
    return 0;
}

/* A GPT-2 Conv1D weight, stored [in][out], as the Linear matrix [out][in]. */
static int get_conv1d(hf_t *h, const char *name, uint64_t in, uint64_t out, quant_mat_t *m) {
    void *raw;
    size_t es;
    if (get_mat(h, name, in, out, m, &raw, &es) || transpose(h, raw, es, (size_t)in, (size_t)out)) return -1;
    *m = quant_mat(m->type, raw, (int64_t)out, (int64_t)in);
    return 0;
}

/* GPT-NeoX fused QKV: rows (head, {q,k,v}, dim) -> ({q,k,v}, head, dim),
 * each row cols wide (cols = 1 for the bias). */
static int neox_qkv(hf_t *h, void *wv, size_t es, int n_head, int hd, size_t cols) {
    uint8_t *w = wv, *s = scratch_copy(h, w, (size_t)3 * n_head * hd * cols * es);
    size_t row = cols * es;
    if (!s) return -1;
    for (int hh = 0; hh < n_head; hh++)
        for (int j = 0; j < 3; j++)
            memcpy(w + (((size_t)j * n_head + hh) * hd) * row, s + (((size_t)hh * 3 + j) * hd) * row,
                   (size_t)hd * row);
    free(s);
    return 0;
}

static int check_heads(hf_t *h, model_config_t *c) {
    if (c->n_embd % c->n_head)
        return log_seterr(h->err, h->errlen, "%s: hidden size %d is not a multiple of the %d attention heads",
                          h->cfg_path, c->n_embd, c->n_head);
    if (c->n_head_kv < 1 || c->n_head_kv > c->n_head || c->n_head % c->n_head_kv)
        return log_seterr(h->err, h->errlen, "%s: %d attention heads are not a multiple of num_key_value_heads %d",
                          h->cfg_path, c->n_head, c->n_head_kv);
    c->head_dim = c->n_embd / c->n_head;
    json_t *hd = json_object_get(h->cfg, "head_dim");
    if (hd && !json_is_null(hd) && (!json_is_integer(hd) || json_integer_value(hd) != c->head_dim))
        return log_seterr(h->err, h->errlen, "%s: head_dim is not hidden_size / num_attention_heads = %d (not supported)",
                          h->cfg_path, c->head_dim);
    return 0;
}

/* The embedding fixes the vocabulary; config's vocab_size must agree. */
static int get_embedding(hf_t *h, const char *name) {
    model_config_t *c = &h->m->cfg;
    long i = tensor_index(h, name);
    if (i < 0) return log_seterr(h->err, h->errlen, "%s: tensor '%s' is missing", safetensors_set_path(h->set), name);
    const safetensors_tensor_t *t = safetensors_set_tensor_at(h->set, (size_t)i);
    if (t->n_dims != 2 || t->shape[0] < 1 || t->shape[0] > (1u << 24) || t->shape[1] != (uint64_t)c->n_embd)
        return log_seterr(h->err, h->errlen, "%s: tensor '%s' is not an embedding of [vocabulary][%d]", t->file, name,
                          c->n_embd);
    c->n_vocab = (int)t->shape[0];
    static const char *const vk[] = {"vocab_size", NULL};
    int vs;
    if (cfg_int(h, vk, c->n_vocab, 1, 1 << 24, &vs)) return -1;
    if (vs != c->n_vocab)
        return log_seterr(h->err, h->errlen, "%s: vocab_size %d does not match the %d rows of '%s'", h->cfg_path, vs,
                          c->n_vocab, name);
    void *raw;
    size_t es;
    return get_mat(h, name, (uint64_t)c->n_vocab, (uint64_t)c->n_embd, &h->m->tok_embd, &raw, &es);
}

/* The output matrix: tied to the embedding, or `name` [n_vocab][d]. */
static int get_output(hf_t *h, const char *name, int tied) {
    model_t *m = h->m;
    if (tied) {
        skip(h, name); /* transformers ties it: a stored copy is not used */
        m->output = m->tok_embd;
        return 0;
    }
    void *raw;
    size_t es;
    if (tensor_index(h, name) < 0)
        return log_seterr(h->err, h->errlen, "%s: tensor '%s' is missing and tie_word_embeddings is false",
                          safetensors_set_path(h->set), name);
    return get_mat(h, name, (uint64_t)m->cfg.n_vocab, (uint64_t)m->cfg.n_embd, &m->output, &raw, &es);
}

static int alloc_layers(hf_t *h) {
    h->m->layers = calloc((size_t)h->m->cfg.n_layer, sizeof *h->m->layers);
    if (!h->m->layers) return log_seterr(h->err, h->errlen, "%s: out of memory", h->m->path);
    return 0;
}

/* ---- llama, mistral, qwen2 ------------------------------------------------ */

static int load_llama_like(hf_t *h, int qwen2) {
    model_t *m = h->m;
    model_config_t *c = &m->cfg;
    static const char *const k_d[] = {"hidden_size", NULL}, *const k_l[] = {"num_hidden_layers", NULL},
                             *const k_h[] = {"num_attention_heads", NULL}, *const k_kv[] = {"num_key_value_heads", NULL},
                             *const k_ff[] = {"intermediate_size", NULL},
                             *const k_ctx[] = {"max_position_embeddings", NULL},
                             *const k_eps[] = {"rms_norm_eps", NULL}, *const k_sw[] = {"sliding_window", NULL},
                             *const act[] = {"silu", NULL};
    int tied, attn_bias, mlp_bias;
    c->arch = qwen2 ? MODEL_ARCH_QWEN2 : MODEL_ARCH_LLAMA;
    c->norm = MODEL_NORM_RMS;
    c->rope = qwen2 ? MODEL_ROPE_NEOX : MODEL_ROPE_NORM;
    c->act = MODEL_ACT_SWIGLU;
    snprintf(m->arch_name, sizeof m->arch_name, "%s", qwen2 ? "qwen2" : "llama");
    if (cfg_int(h, k_d, -1, 1, 1 << 16, &c->n_embd) || cfg_int(h, k_l, -1, 1, 1024, &c->n_layer) ||
        cfg_int(h, k_h, -1, 1, 1024, &c->n_head) || cfg_int(h, k_kv, c->n_head, 1, c->n_head, &c->n_head_kv) ||
        cfg_int(h, k_ff, -1, 1, 1 << 20, &c->n_ff) || cfg_int(h, k_ctx, 2048, 1, 1 << 24, &c->n_ctx_train) ||
        cfg_float(h, k_eps, 1e-6, 0, 1, &c->norm_eps) || cfg_rope(h, 10000.0f, &c->rope_base) ||
        cfg_bool(h, "tie_word_embeddings", 0, &tied) || cfg_bool(h, "attention_bias", qwen2, &attn_bias) ||
        cfg_bool(h, "mlp_bias", 0, &mlp_bias) || cfg_str_in(h, "hidden_act", act, "SwiGLU needs silu") ||
        check_heads(h, c))
        return -1;
    if (qwen2) {
        if (cfg_must_be_off(h, "use_sliding_window", "sliding-window attention is not implemented")) return -1;
        if (!attn_bias)
            return log_seterr(h->err, h->errlen, "%s: qwen2 without q/k/v biases is not supported", h->cfg_path);
    } else {
        /* Mistral's sliding window is not implemented: within it, attention
         * is exact, so the trained context is capped to it. */
        int sw = 0;
        if (cfg_int(h, k_sw, 0, 0, 1 << 24, &sw)) return -1;
        if (sw > 0 && sw < c->n_ctx_train) c->n_ctx_train = sw;
    }
    json_t *prf = json_object_get(h->cfg, "partial_rotary_factor");
    if (prf && !json_is_null(prf) && !(json_is_number(prf) && json_number_value(prf) == 1.0))
        return log_seterr(h->err, h->errlen, "%s: partial_rotary_factor other than 1 is not supported for %s",
                          h->cfg_path, m->arch_name);
    c->rope_dim = c->head_dim;
    if (c->head_dim % 2)
        return log_seterr(h->err, h->errlen, "%s: head dimension %d must be even for RoPE", h->cfg_path, c->head_dim);

    float *w;
    if (get_embedding(h, "model.embed_tokens.weight")) return -1;
    if (get(h, "model.norm.weight", (uint64_t)c->n_embd, 0, 1, &w)) return -1;
    m->output_norm = w;
    if (get_output(h, "lm_head.weight", tied) || alloc_layers(h)) return -1;

    uint64_t d = (uint64_t)c->n_embd, q = (uint64_t)c->n_head * c->head_dim,
             kv = (uint64_t)c->n_head_kv * c->head_dim, ff = (uint64_t)c->n_ff;
    for (int l = 0; l < c->n_layer; l++) {
        model_layer_t *L = &m->layers[l];
        char name[128];
        float *x;
        void *xm;
        size_t es;
#define T(field, suffix, rows, cols, required)                                      \
    snprintf(name, sizeof name, "model.layers.%d.%s", l, suffix);                   \
    if (get(h, name, rows, cols, required, &x)) return -1;                          \
    L->field = x;
#define M(field, suffix, rows, cols)                                                \
    snprintf(name, sizeof name, "model.layers.%d.%s", l, suffix);                   \
    if (get_mat(h, name, rows, cols, &L->field, &xm, &es)) return -1;
        T(attn_norm, "input_layernorm.weight", d, 0, 1);
        M(wq, "self_attn.q_proj.weight", q, d);
        if (!qwen2 && permute_rope(h, xm, es, c->n_head, c->head_dim, d)) return -1;
        M(wk, "self_attn.k_proj.weight", kv, d);
        if (!qwen2 && permute_rope(h, xm, es, c->n_head_kv, c->head_dim, d)) return -1;
        M(wv, "self_attn.v_proj.weight", kv, d);
        M(wo, "self_attn.o_proj.weight", d, q);
        T(bq, "self_attn.q_proj.bias", q, 0, attn_bias);
        if (x && !qwen2 && permute_rope(h, x, sizeof *x, c->n_head, c->head_dim, 1)) return -1;
        T(bk, "self_attn.k_proj.bias", kv, 0, attn_bias);
        if (x && !qwen2 && permute_rope(h, x, sizeof *x, c->n_head_kv, c->head_dim, 1)) return -1;
        T(bv, "self_attn.v_proj.bias", kv, 0, attn_bias);
        T(bo, "self_attn.o_proj.bias", d, 0, attn_bias && !qwen2); /* qwen2: o_proj has no bias */
        T(ffn_norm, "post_attention_layernorm.weight", d, 0, 1);
        M(w_gate, "mlp.gate_proj.weight", ff, d);
        M(w_up, "mlp.up_proj.weight", ff, d);
        M(w_down, "mlp.down_proj.weight", d, ff);
        T(b_gate, "mlp.gate_proj.bias", ff, 0, mlp_bias);
        T(b_up, "mlp.up_proj.bias", ff, 0, mlp_bias);
        T(b_down, "mlp.down_proj.bias", d, 0, mlp_bias);
#undef T
#undef M
    }
    return 0;
}

/* ---- gpt2 ----------------------------------------------------------------- */

static int load_gpt2(hf_t *h) {
    model_t *m = h->m;
    model_config_t *c = &m->cfg;
    static const char *const k_d[] = {"n_embd", "hidden_size", NULL}, *const k_l[] = {"n_layer", "num_hidden_layers", NULL},
                             *const k_h[] = {"n_head", "num_attention_heads", NULL}, *const k_ff[] = {"n_inner", NULL},
                             *const k_ctx[] = {"n_positions", "n_ctx", "max_position_embeddings", NULL},
                             *const k_eps[] = {"layer_norm_epsilon", "layer_norm_eps", NULL},
                             *const act[] = {"gelu_new", "gelu_pytorch_tanh", NULL};
    int tied, scale;
    c->arch = MODEL_ARCH_GPT2;
    c->norm = MODEL_NORM_LAYER;
    c->rope = MODEL_ROPE_NONE;
    c->act = MODEL_ACT_GELU;
    snprintf(m->arch_name, sizeof m->arch_name, "gpt2");
    if (cfg_int(h, k_d, -1, 1, 1 << 16, &c->n_embd) || cfg_int(h, k_l, -1, 1, 1024, &c->n_layer) ||
        cfg_int(h, k_h, -1, 1, 1024, &c->n_head) || cfg_int(h, k_ff, 4L * c->n_embd, 1, 1 << 20, &c->n_ff) ||
        cfg_int(h, k_ctx, 1024, 1, 1 << 24, &c->n_ctx_train) || cfg_float(h, k_eps, 1e-5, 0, 1, &c->norm_eps) ||
        cfg_bool(h, "tie_word_embeddings", 1, &tied) || cfg_bool(h, "scale_attn_weights", 1, &scale) ||
        cfg_must_be_off(h, "scale_attn_by_inverse_layer_idx", "attention scaling is 1/sqrt(head_dim)") ||
        cfg_str_in(h, "activation_function", act, "the tanh GELU gelu_new is implemented"))
        return -1;
    if (!scale)
        return log_seterr(h->err, h->errlen, "%s: scale_attn_weights = false is not supported", h->cfg_path);
    c->n_head_kv = c->n_head;
    if (check_heads(h, c)) return -1;
    c->rope_dim = 0;
    c->rope_base = 10000.0f; /* unused; what the GGUF path reports */

    /* Older checkpoints prefix every name with "transformer." */
    const char *pre = tensor_index(h, "transformer.wte.weight") >= 0 ? "transformer." : "";
    char name[128];
    float *w;
    uint64_t d = (uint64_t)c->n_embd, ff = (uint64_t)c->n_ff;
    snprintf(name, sizeof name, "%swte.weight", pre);
    void *raw;
    size_t es;
    if (get_embedding(h, name)) return -1;
    snprintf(name, sizeof name, "%swpe.weight", pre);
    if (get_mat(h, name, (uint64_t)c->n_ctx_train, d, &m->pos_embd, &raw, &es)) return -1;
    snprintf(name, sizeof name, "%sln_f.weight", pre);
    if (get(h, name, d, 0, 1, &w)) return -1;
    m->output_norm = w;
    snprintf(name, sizeof name, "%sln_f.bias", pre);
    if (get(h, name, d, 0, 1, &w)) return -1;
    m->output_norm_b = w;
    if (get_output(h, "lm_head.weight", tied) || alloc_layers(h)) return -1;

    for (int l = 0; l < c->n_layer; l++) {
        model_layer_t *L = &m->layers[l];
        float *x;
#define T(suffix, rows, cols)                                                    \
    snprintf(name, sizeof name, "%sh.%d.%s", pre, l, suffix);                    \
    if (get(h, name, rows, cols, 1, &x)) return -1;
        T("ln_1.weight", d, 0);
        L->attn_norm = x;
        T("ln_1.bias", d, 0);
        L->attn_norm_b = x;
        quant_mat_t qkv;
        snprintf(name, sizeof name, "%sh.%d.attn.c_attn.weight", pre, l);
        if (get_conv1d(h, name, d, 3 * d, &qkv)) return -1;
        L->wq = quant_mat_rows(&qkv, 0, (int64_t)d);
        L->wk = quant_mat_rows(&qkv, (int64_t)d, (int64_t)d);
        L->wv = quant_mat_rows(&qkv, 2 * (int64_t)d, (int64_t)d);
        T("attn.c_attn.bias", 3 * d, 0);
        L->bq = x, L->bk = x + d, L->bv = x + 2 * d;
        snprintf(name, sizeof name, "%sh.%d.attn.c_proj.weight", pre, l);
        if (get_conv1d(h, name, d, d, &L->wo)) return -1;
        T("attn.c_proj.bias", d, 0);
        L->bo = x;
        T("ln_2.weight", d, 0);
        L->ffn_norm = x;
        T("ln_2.bias", d, 0);
        L->ffn_norm_b = x;
        snprintf(name, sizeof name, "%sh.%d.mlp.c_fc.weight", pre, l);
        if (get_conv1d(h, name, d, ff, &L->w_up)) return -1;
        T("mlp.c_fc.bias", ff, 0);
        L->b_up = x;
        snprintf(name, sizeof name, "%sh.%d.mlp.c_proj.weight", pre, l);
        if (get_conv1d(h, name, ff, d, &L->w_down)) return -1;
        T("mlp.c_proj.bias", d, 0);
        L->b_down = x;
#undef T
    }
    return 0;
}

/* ---- gpt_neox ------------------------------------------------------------- */

static int load_gptneox(hf_t *h) {
    model_t *m = h->m;
    model_config_t *c = &m->cfg;
    static const char *const k_d[] = {"hidden_size", NULL}, *const k_l[] = {"num_hidden_layers", NULL},
                             *const k_h[] = {"num_attention_heads", NULL}, *const k_ff[] = {"intermediate_size", NULL},
                             *const k_ctx[] = {"max_position_embeddings", NULL},
                             *const k_eps[] = {"layer_norm_eps", "layer_norm_epsilon", NULL},
                             *const k_pct[] = {"rotary_pct", "partial_rotary_factor", NULL},
                             *const act[] = {"gelu", "gelu_new", "gelu_pytorch_tanh", "gelu_fast", NULL};
    int tied, parallel, bias;
    float pct;
    c->arch = MODEL_ARCH_GPTNEOX;
    c->norm = MODEL_NORM_LAYER;
    c->rope = MODEL_ROPE_NEOX;
    c->act = MODEL_ACT_GELU;
    snprintf(m->arch_name, sizeof m->arch_name, "gptneox");
    if (cfg_int(h, k_d, -1, 1, 1 << 16, &c->n_embd) || cfg_int(h, k_l, -1, 1, 1024, &c->n_layer) ||
        cfg_int(h, k_h, -1, 1, 1024, &c->n_head) || cfg_int(h, k_ff, -1, 1, 1 << 20, &c->n_ff) ||
        cfg_int(h, k_ctx, 2048, 1, 1 << 24, &c->n_ctx_train) || cfg_float(h, k_eps, 1e-5, 0, 1, &c->norm_eps) ||
        cfg_float(h, k_pct, 0.25, 0, 1, &pct) || cfg_rope(h, 10000.0f, &c->rope_base) ||
        cfg_bool(h, "tie_word_embeddings", 0, &tied) || cfg_bool(h, "use_parallel_residual", 1, &parallel) ||
        cfg_bool(h, "attention_bias", 1, &bias) || cfg_str_in(h, "hidden_act", act, "GELU is implemented"))
        return -1;
    json_t *rp = json_object_get(h->cfg, "rope_parameters"), *rpf = json_object_get(rp, "partial_rotary_factor");
    if (json_is_number(rpf)) pct = (float)json_number_value(rpf);
    if (!bias) return log_seterr(h->err, h->errlen, "%s: gpt_neox without attention biases is not supported", h->cfg_path);
    c->n_head_kv = c->n_head;
    if (check_heads(h, c)) return -1;
    c->parallel_residual = parallel;
    /* as the converter: int(rotary_pct * head_dim) */
    c->rope_dim = (int)((double)pct * c->head_dim);
    if (c->rope_dim < 2 || c->rope_dim % 2)
        return log_seterr(h->err, h->errlen, "%s: rotary_pct %g gives %d rotary dimensions per head (must be even, >= 2)",
                          h->cfg_path, (double)pct, c->rope_dim);

    float *w;
    uint64_t d = (uint64_t)c->n_embd, ff = (uint64_t)c->n_ff;
    if (get_embedding(h, "gpt_neox.embed_in.weight")) return -1;
    if (get(h, "gpt_neox.final_layer_norm.weight", d, 0, 1, &w)) return -1;
    m->output_norm = w;
    if (get(h, "gpt_neox.final_layer_norm.bias", d, 0, 1, &w)) return -1;
    m->output_norm_b = w;
    if (get_output(h, "embed_out.weight", tied) || alloc_layers(h)) return -1;

    for (int l = 0; l < c->n_layer; l++) {
        model_layer_t *L = &m->layers[l];
        char name[128];
        float *x;
#define T(suffix, rows, cols)                                                    \
    snprintf(name, sizeof name, "gpt_neox.layers.%d.%s", l, suffix);             \
    if (get(h, name, rows, cols, 1, &x)) return -1;
        T("input_layernorm.weight", d, 0);
        L->attn_norm = x;
        T("input_layernorm.bias", d, 0);
        L->attn_norm_b = x;
        quant_mat_t qkv;
        void *raw;
        size_t es;
        snprintf(name, sizeof name, "gpt_neox.layers.%d.attention.query_key_value.weight", l);
        if (get_mat(h, name, 3 * d, d, &qkv, &raw, &es) || neox_qkv(h, raw, es, c->n_head, c->head_dim, d))
            return -1;
        L->wq = quant_mat_rows(&qkv, 0, (int64_t)d);
        L->wk = quant_mat_rows(&qkv, (int64_t)d, (int64_t)d);
        L->wv = quant_mat_rows(&qkv, 2 * (int64_t)d, (int64_t)d);
        T("attention.query_key_value.bias", 3 * d, 0);
        if (neox_qkv(h, x, sizeof *x, c->n_head, c->head_dim, 1)) return -1;
        L->bq = x, L->bk = x + d, L->bv = x + 2 * d;
        snprintf(name, sizeof name, "gpt_neox.layers.%d.attention.dense.weight", l);
        if (get_mat(h, name, d, d, &L->wo, &raw, &es)) return -1;
        T("attention.dense.bias", d, 0);
        L->bo = x;
        T("post_attention_layernorm.weight", d, 0);
        L->ffn_norm = x;
        T("post_attention_layernorm.bias", d, 0);
        L->ffn_norm_b = x;
        snprintf(name, sizeof name, "gpt_neox.layers.%d.mlp.dense_h_to_4h.weight", l);
        if (get_mat(h, name, ff, d, &L->w_up, &raw, &es)) return -1;
        T("mlp.dense_h_to_4h.bias", ff, 0);
        L->b_up = x;
        snprintf(name, sizeof name, "gpt_neox.layers.%d.mlp.dense_4h_to_h.weight", l);
        if (get_mat(h, name, d, ff, &L->w_down, &raw, &es)) return -1;
        T("mlp.dense_4h_to_h.bias", d, 0);
        L->b_down = x;
#undef T
    }
    return 0;
}

/* ---- the directory -------------------------------------------------------- */

/* tokenizer_config.json, when present, says what tokenizer.json leaves
 * implicit, as llama.cpp's converter reads it: add_bos_token, and the BOS
 * and EOS tokens (a string, or an AddedToken object with "content"; null
 * keeps tokenizer.json's choice). */
static const char *token_text(json_t *v) {
    if (json_is_object(v)) v = json_object_get(v, "content");
    return json_string_value(v);
}

static int read_tokenizer_config(const char *dir, json_t **root, tokenizer_json_opts_t *o, char *err, size_t errlen) {
    json_error_t je;
    char *p = path_join(dir, "tokenizer_config.json");
    if (!p) return log_seterr(err, errlen, "%s: out of memory", dir);
    struct stat sb;
    if (stat(p, &sb) != 0) { /* optional */
        free(p);
        return 0;
    }
    int rc = -1;
    if (!(*root = json_load_file(p, JSON_REJECT_DUPLICATES, &je))) {
        log_seterr(err, errlen, "%s: not valid JSON: %s", p, je.text);
        goto error;
    }
    if (!json_is_object(*root)) {
        log_seterr(err, errlen, "%s: expected a JSON object", p);
        goto error;
    }
    json_t *ab = json_object_get(*root, "add_bos_token");
    if (ab && !json_is_null(ab)) {
        if (!json_is_boolean(ab)) {
            log_seterr(err, errlen, "%s: 'add_bos_token' must be true or false", p);
            goto error;
        }
        o->add_bos = json_is_true(ab) ? TOKENIZER_BOS_ADD : TOKENIZER_BOS_NO;
    }
    static const char *const keys[2] = {"bos_token", "eos_token"};
    for (int i = 0; i < 2; i++) {
        json_t *v = json_object_get(*root, keys[i]);
        if (!v || json_is_null(v)) continue;
        const char *t = token_text(v);
        if (!t) {
            log_seterr(err, errlen, "%s: '%s' must be a string or an object with a \"content\" string", p, keys[i]);
            goto error;
        }
        if (i == 0) o->bos_token = t;
        else o->eos_token = t;
    }
    rc = 0;
error:
    free(p);
    return rc;
}

/* tokenizer.json with the options of tokenizer_config.json. */
static tokenizer_t *load_tokenizer(const char *dir, char *err, size_t errlen) {
    tokenizer_t *tok = NULL;
    json_t *tc = NULL;
    tokenizer_json_opts_t opts = {0};
    char *text = NULL, *p = path_join(dir, "tokenizer.json");
    FILE *f = NULL;
    if (!p) {
        log_seterr(err, errlen, "%s: out of memory", dir);
        goto error;
    }
    if (read_tokenizer_config(dir, &tc, &opts, err, errlen)) goto error;
    struct stat sb;
    if (!(f = fopen(p, "rb")) || fstat(fileno(f), &sb) != 0) {
        log_seterr(err, errlen, "%s: cannot open (a Hugging Face model directory needs tokenizer.json): %s", p,
                   strerror(errno));
        goto error;
    }
    if (sb.st_size > (1LL << 30)) {
        log_seterr(err, errlen, "%s: %lld bytes is absurd for a tokenizer", p, (long long)sb.st_size);
        goto error;
    }
    size_t n = (size_t)sb.st_size;
    if (!(text = malloc(n + 1))) {
        log_seterr(err, errlen, "%s: out of memory", p);
        goto error;
    }
    if (fread(text, 1, n, f) != n) {
        log_seterr(err, errlen, "%s: read error", p);
        goto error;
    }
    tok = tokenizer_new_json_buffer(text, n, p, &opts, err, errlen);
error:
    if (f) fclose(f);
    free(text);
    free(p);
    json_decref(tc);
    return tok;
}

/* Buffers transformers rebuilds at load: causal masks and RoPE frequencies. */
static int ignorable(const char *name) {
    static const char *const suffixes[] = {"rotary_emb.inv_freq", ".attn.bias", ".attn.masked_bias",
                                           ".attention.bias", ".attention.masked_bias"};
    size_t n = strlen(name);
    for (size_t i = 0; i < sizeof suffixes / sizeof *suffixes; i++) {
        size_t k = strlen(suffixes[i]);
        if (n >= k && !strcmp(name + n - k, suffixes[i])) return 1;
    }
    return 0;
}

model_t *hfdir_load(const char *dir, char *err, size_t errlen) {
    int rc = -1;
    char *tok_path = NULL;
    json_error_t je;
    model_t *m = calloc(1, sizeof *m);
    hf_t h = {.m = m, .err = err, .errlen = errlen};
    if (!m || !(m->path = strdup(dir))) {
        log_seterr(err, errlen, "%s: out of memory", dir);
        goto error;
    }
    if (!(h.cfg_path = path_join(m->path, "config.json"))) {
        log_seterr(err, errlen, "%s: out of memory", m->path);
        goto error;
    }
    if (!(h.cfg = json_load_file(h.cfg_path, JSON_REJECT_DUPLICATES, &je))) {
        log_seterr(err, errlen, "%s: %s%s (a Hugging Face model directory needs config.json)", h.cfg_path,
                   je.line < 0 ? "cannot read: " : "not valid JSON: ", je.text);
        goto error;
    }
    if (!json_is_object(h.cfg)) {
        log_seterr(err, errlen, "%s: expected a JSON object", h.cfg_path);
        goto error;
    }
    const char *type = json_string_value(json_object_get(h.cfg, "model_type"));
    if (!type) {
        log_seterr(err, errlen, "%s: 'model_type' is missing or not a string", h.cfg_path);
        goto error;
    }
    int which = !strcmp(type, "llama") || !strcmp(type, "mistral") ? 0
              : !strcmp(type, "qwen2")                               ? 1
              : !strcmp(type, "gpt2")                                ? 2
              : !strcmp(type, "gpt_neox")                            ? 3
                                                                     : -1;
    if (which < 0) {
        log_seterr(err, errlen, "%s: model_type '%s' is not supported (supported: llama, mistral, qwen2, gpt2, gpt_neox)",
                   h.cfg_path, type);
        goto error;
    }
    if (!(h.set = safetensors_set_open(m->path, err, errlen))) goto error;
    if (!(h.used = calloc(safetensors_set_n_tensors(h.set) + 1, 1))) {
        log_seterr(err, errlen, "%s: out of memory", m->path);
        goto error;
    }
    if (which == 0 && load_llama_like(&h, 0)) goto error;
    if (which == 1 && load_llama_like(&h, 1)) goto error;
    if (which == 2 && load_gpt2(&h)) goto error;
    if (which == 3 && load_gptneox(&h)) goto error;
    for (size_t i = 0; i < safetensors_set_n_tensors(h.set); i++) {
        const safetensors_tensor_t *t = safetensors_set_tensor_at(h.set, i);
        if (!h.used[i] && !ignorable(t->name)) {
            log_seterr(err, errlen, "%s: tensor '%s' is not used by the %s loader (a variant of the architecture that is not supported?)",
                       t->file, t->name, m->arch_name);
            goto error;
        }
    }
    if (!(tok_path = path_join(m->path, "tokenizer.json"))) {
        log_seterr(err, errlen, "%s: out of memory", m->path);
        goto error;
    }
    if (!(m->tok = load_tokenizer(m->path, err, errlen))) goto error;
    if (tokenizer_n_vocab(m->tok) > m->cfg.n_vocab) {
        log_seterr(err, errlen, "%s: the tokenizer has %d tokens but the embedding only %d rows", tok_path,
                   tokenizer_n_vocab(m->tok), m->cfg.n_vocab);
        goto error;
    }
    rc = 0;
error:
    free(tok_path);
    free(h.used);
    safetensors_set_destroy(&h.set);
    json_decref(h.cfg);
    free(h.cfg_path);
    if (rc) model_destroy(&m);
    return m;
}
