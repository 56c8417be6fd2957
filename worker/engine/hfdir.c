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
 *   gemma2          RMSNorm gains stored as w (the model uses 1 + w): 1.0f
 *                   is added in fp32 to every norm weight, after BF16/F16
 *                   expansion (Gemma2Model.modify_tensors).
 *
 * The computation is the GGUF path's, so it follows llama.cpp where that
 * differs from transformers: GPT-NeoX's hidden_act "gelu" (erf) runs as the
 * fp16-tabled tanh GELU of kernels.h, as llama.cpp runs it (a difference of
 * ~1e-3 nats against transformers, none against the GGUF). */
#include "hfdir.h"

#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "arch.h"
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

/* The RoPE settings of config.json: rope_theta, and Llama 3's frequency
 * scaling when rope_scaling (or the newer rope_parameters) says rope_type
 * "llama3", with the converter's defaults for its parameters. */
typedef struct {
    float theta;
    int llama3;
    double factor, low, high, orig; /* factor, low_freq_factor, high_freq_factor, original_max_position_embeddings */
} hf_rope_t;

/* Reads one RoPE object (rope_scaling or rope_parameters) into r: rope_type
 * (or type) "default" or, where allowed, "llama3" with its numbers;
 * rope_theta; partial_rotary_factor is the caller's.  Anything else
 * changes the angles in a way not implemented: an error. */
static int cfg_rope_obj(hf_t *h, const char *key, int allow_llama3, hf_rope_t *r) {
    json_t *o = json_object_get(h->cfg, key), *v;
    const char *k;
    if (!o || json_is_null(o)) return 0;
    if (!json_is_object(o)) return log_seterr(h->err, h->errlen, "%s: '%s' must be an object", h->cfg_path, key);
    json_object_foreach(o, k, v) {
        if (!strcmp(k, "rope_type") || !strcmp(k, "type")) {
            const char *t = json_string_value(v);
            if (t && !strcmp(t, "default")) continue;
            if (t && !strcmp(t, "llama3") && allow_llama3) {
                r->llama3 = 1;
                continue;
            }
            return log_seterr(h->err, h->errlen, "%s: %s type '%s' is not supported (supported: default%s)",
                              h->cfg_path, key, t ? t : "(not a string)", allow_llama3 ? ", llama3" : "");
        }
        double x = json_is_number(v) ? json_number_value(v) : NAN;
        double *dst = !strcmp(k, "factor") ? &r->factor : !strcmp(k, "low_freq_factor") ? &r->low
                    : !strcmp(k, "high_freq_factor") ? &r->high
                    : !strcmp(k, "original_max_position_embeddings") ? &r->orig : NULL;
        if (dst && x > 0 && x < 1e9) {
            *dst = x;
            continue;
        }
        if (!strcmp(k, "rope_theta") && x >= 1e-3 && x <= 1e12) {
            r->theta = (float)x;
            continue;
        }
        if (!strcmp(k, "partial_rotary_factor")) continue; /* read by the caller where it applies */
        return log_seterr(h->err, h->errlen, "%s: %s '%s' is not supported (only %sRoPE with rope_theta)", h->cfg_path,
                          key, k, allow_llama3 ? "default or llama3 " : "default ");
    }
    if (r->llama3 && !(r->high > r->low))
        return log_seterr(h->err, h->errlen, "%s: %s: high_freq_factor %g must exceed low_freq_factor %g", h->cfg_path,
                          key, r->high, r->low);
    return 0;
}

static int cfg_rope(hf_t *h, float def_theta, int allow_llama3, hf_rope_t *r) {
    static const char *const theta_keys[] = {"rope_theta", "rotary_emb_base", NULL};
    *r = (hf_rope_t){.factor = 8.0, .low = 1.0, .high = 4.0, .orig = 8192.0};
    return cfg_float(h, theta_keys, def_theta, 1e-3, 1e12, &r->theta) ||
           cfg_rope_obj(h, "rope_scaling", allow_llama3, r) || cfg_rope_obj(h, "rope_parameters", allow_llama3, r);
}

/* Llama 3's RoPE frequency divisors for heads of dim dimensions, as
 * llama.cpp's converter computes the rope_freqs.weight it writes
 * (LlamaModel.generate_extra_tensors), step by step in float32 as its
 * torch arithmetic runs: a Python number meeting a float32 tensor is
 * rounded to float32, and number / tensor is torch's reciprocal() times
 * the number.  (Written from torch's operator definitions; no torch here
 * to compare with, so a real checkpoint's factors may differ from its
 * GGUF's in the last bit.)  Owned by the model; NULL with a message when
 * memory runs out. */
static const float *llama3_freqs(hf_t *h, const hf_rope_t *r, int dim) {
    float *ff = malloc(sizeof *ff * (size_t)(dim / 2 + 1));
    if (!ff || model_own(h->m, ff, h->err, h->errlen)) return NULL;
    float low_wl = (float)(r->orig / r->low), high_wl = (float)(r->orig / r->high);
    for (int i = 0; i < dim / 2; i++) {
        float freq = 1.0f / powf(r->theta, (float)(2 * i) / (float)dim);
        float wavelen = 1.0f / freq * (float)(2 * M_PI);
        if (wavelen < high_wl) {
            ff[i] = 1.0f;
        } else if (wavelen > low_wl) {
            ff[i] = (float)r->factor;
        } else {
            float smooth = (1.0f / wavelen * (float)r->orig - (float)r->low) / (float)(r->high - r->low);
            ff[i] = 1.0f / ((1.0f - smooth) / (float)r->factor + smooth);
        }
    }
    return ff;
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

/* Sets *out to vector name [rows] converted to fp32 in a buffer owned by
 * the model, after checking its shape (find).  Absent: an error when
 * required, else *out = NULL and 0. */
static int get_vec(hf_t *h, const char *name, uint64_t rows, int required, const float **out) {
    const safetensors_tensor_t *t;
    *out = NULL;
    if (find(h, name, rows, 0, required, &t)) return -1;
    if (!t) return 0;
    float *buf = malloc((size_t)(t->nelem ? t->nelem : 1) * sizeof *buf);
    if (!buf) return log_seterr(h->err, h->errlen, "%s: out of memory loading tensor '%s'", t->file, name);
    if (model_own(h->m, buf, h->err, h->errlen) || safetensors_to_f32(t, buf, h->err, h->errlen)) return -1;
    *out = buf;
    return 0;
}

/* Sets *out to matrix name [rows][cols], copied into a buffer the model
 * owns in its stored type when that is F16 or BF16 (as the GGUF converter
 * stores matrices: both then compute the same bits, and the model takes
 * half the memory), else converted to fp32.  Absent: as get_vec, with
 * out->data NULL. */
static int get_mat(hf_t *h, const char *name, uint64_t rows, uint64_t cols, int required, quant_mat_t *out) {
    const safetensors_tensor_t *t;
    *out = (quant_mat_t){0};
    if (find(h, name, rows, cols, required, &t)) return -1;
    if (!t) return 0;
    uint32_t type = t->dtype == SAFETENSORS_F16 ? GGML_TYPE_F16 : t->dtype == SAFETENSORS_BF16 ? GGML_TYPE_BF16
                                                                                           : GGML_TYPE_F32;
    size_t es = type == GGML_TYPE_F32 ? sizeof(float) : 2;
    void *buf = malloc((size_t)t->nelem * es);
    if (!buf) return log_seterr(h->err, h->errlen, "%s: out of memory loading tensor '%s'", t->file, name);
    if (model_own(h->m, buf, h->err, h->errlen)) return -1;
    if (type != GGML_TYPE_F32) memcpy(buf, t->data, (size_t)t->nelem * 2);
    else if (safetensors_to_f32(t, buf, h->err, h->errlen)) return -1;
    *out = quant_mat(type, buf, (int64_t)rows, (int64_t)cols);
    return 0;
}

/* Marks a tensor as deliberately not needed (e.g. lm_head of a tied model). */
static void skip(hf_t *h, const char *name) {
    long i = tensor_index(h, name);
    if (i >= 0) h->used[i] = 1;
}

/* ---- layout changes ------------------------------------------------------- */

/* A loaded tensor's bytes, rewritten in place by the layout changes below:
 * a matrix (get_mat, F32/F16/BF16) or an fp32 vector (get_vec), both in
 * buffers the model owns, so writing them is ours to do. */
typedef struct {
    uint8_t *p;
    size_t rows, row_bytes;
} rows_t;

static rows_t mat_rows(const quant_mat_t *w) {
    return (rows_t){(uint8_t *)(uintptr_t)w->data, (size_t)w->rows, quant_mat_row_bytes(w)};
}
static rows_t vec_rows(const float *v, uint64_t n) {
    return (rows_t){(uint8_t *)(uintptr_t)v, (size_t)n, sizeof(float)};
}

/* Rows in another order: row dst(i) of the result is row i of x, through
 * one scratch copy. */
static int reorder(hf_t *h, rows_t x, size_t (*dst)(size_t i, const int *k), const int *k) {
    uint8_t *s = malloc(x.rows * x.row_bytes + 1);
    if (!s) return log_seterr(h->err, h->errlen, "%s: out of memory", h->m->path);
    memcpy(s, x.p, x.rows * x.row_bytes);
    for (size_t i = 0; i < x.rows; i++) memcpy(x.p + dst(i, k) * x.row_bytes, s + i * x.row_bytes, x.row_bytes);
    free(s);
    return 0;
}

/* LlamaModel.permute, k = {head_dim}: HF row hh*hd + j*hd/2 + i goes to
 * GGUF row hh*hd + 2i + j (i < hd/2, j < 2). */
static size_t permute_dst(size_t r, const int *k) {
    size_t hd = (size_t)k[0], hh = r / hd, w = r % hd, j = w / (hd / 2), i = w % (hd / 2);
    return hh * hd + 2 * i + j;
}

/* GPT-NeoX fused QKV, k = {n_head, head_dim}: HF row (head, {q,k,v}, dim)
 * goes to ({q,k,v}, head, dim). */
static size_t neox_dst(size_t r, const int *k) {
    size_t nh = (size_t)k[0], hd = (size_t)k[1], dim = r % hd, j = (r / hd) % 3, hh = r / hd / 3;
    return (j * nh + hh) * hd + dim;
}

/* A GPT-2 Conv1D weight, loaded as its stored [in][out], becomes the Linear
 * matrix [out][in]. */
static int transpose(hf_t *h, quant_mat_t *w) {
    rows_t x = mat_rows(w);
    size_t in = (size_t)w->rows, out = (size_t)w->cols, es = x.row_bytes / out;
    uint8_t *s = malloc(in * x.row_bytes + 1);
    if (!s) return log_seterr(h->err, h->errlen, "%s: out of memory", h->m->path);
    memcpy(s, x.p, in * x.row_bytes);
    for (size_t r = 0; r < in; r++)
        for (size_t c = 0; c < out; c++) memcpy(x.p + (c * in + r) * es, s + (r * out + c) * es, es);
    free(s);
    *w = quant_mat(w->type, x.p, (int64_t)out, (int64_t)in);
    return 0;
}

/* What llama.cpp's converter does to role's tensor, just loaded into s. */
static int convert(hf_t *h, const arch_t *a, arch_role_t role, model_slot_t s) {
    const model_config_t *c = &h->m->cfg;
    uint64_t rows, cols;
    model_role_shape(h->m, role, &rows, &cols);
    rows_t x = s.mat ? mat_rows(s.mat) : vec_rows(*s.vec, rows);
    switch (a->hf_layout) {
    case ARCH_HF_ROPE_PERMUTE:
        if (role == ARCH_Q || role == ARCH_Q_B || role == ARCH_K || role == ARCH_K_B) {
            int k[1] = {c->head_dim};
            return reorder(h, x, permute_dst, k);
        }
        return 0;
    case ARCH_HF_NEOX_QKV:
        if (role == ARCH_QKV || role == ARCH_QKV_B) {
            int k[2] = {c->n_head, c->head_dim};
            return reorder(h, x, neox_dst, k);
        }
        return 0;
    case ARCH_HF_CONV1D:
        return s.mat && role >= ARCH_ROLE_LAYER0 ? transpose(h, s.mat) : 0;
    case ARCH_HF_NORM_PLUS1:
        /* Gemma2Model.modify_tensors adds 1 to every "norm.weight" after the
         * tensor is made float32 (prepare_tensors converts BF16 first), so
         * the sum is the fp32 one of the expanded gain. */
        if (!s.mat && (role == ARCH_OUT_NORM || role == ARCH_ATTN_NORM || role == ARCH_ATTN_POST_NORM ||
                       role == ARCH_FFN_NORM || role == ARCH_FFN_POST_NORM)) {
            float *v = (float *)(uintptr_t)*s.vec;
            for (uint64_t i = 0; i < rows; i++) v[i] += 1.0f;
        }
        return 0;
    case ARCH_HF_PLAIN:
        return 0;
    }
    return 0;
}

/* ---- configuration of each family ---------------------------------------- */

/* What config.json says beyond model_config_t. */
typedef struct {
    int tied;      /* tie_word_embeddings */
    int attn_bias; /* q/k/v (and o) projections have biases */
    int mlp_bias;  /* the FFN projections have biases */
} hf_opts_t;

/* The head counts and size: head_dim where the architecture allows it to
 * differ from hidden_size / num_attention_heads (free_head_dim), else that
 * quotient. */
static int check_heads(hf_t *h, model_config_t *c, int free_head_dim) {
    if (c->n_head_kv < 1 || c->n_head_kv > c->n_head || c->n_head % c->n_head_kv)
        return log_seterr(h->err, h->errlen, "%s: %d attention heads are not a multiple of num_key_value_heads %d",
                          h->cfg_path, c->n_head, c->n_head_kv);
    json_t *hd = json_object_get(h->cfg, "head_dim");
    int even = c->n_embd % c->n_head == 0;
    if (hd && !json_is_null(hd)) {
        if (!json_is_integer(hd) || json_integer_value(hd) < 1 || json_integer_value(hd) > (1 << 16))
            return log_seterr(h->err, h->errlen, "%s: 'head_dim' must be an integer in [1, 65536]", h->cfg_path);
        if (free_head_dim || (even && json_integer_value(hd) == c->n_embd / c->n_head)) {
            c->head_dim = (int)json_integer_value(hd);
            return 0;
        }
        return log_seterr(h->err, h->errlen, "%s: head_dim is not hidden_size / num_attention_heads = %d / %d (not "
                          "supported for this model_type)", h->cfg_path, c->n_embd, c->n_head);
    }
    if (!even)
        return log_seterr(h->err, h->errlen, "%s: hidden size %d is not a multiple of the %d attention heads",
                          h->cfg_path, c->n_embd, c->n_head);
    c->head_dim = c->n_embd / c->n_head;
    return 0;
}

/* A soft-capping value of Gemma2Config: null turns the cap off in
 * transformers, which llama.cpp's converter cannot write: refused. */
static int cfg_softcap(hf_t *h, const char *key, double def, float *out) {
    const char *const keys[] = {key, NULL};
    json_t *v = json_object_get(h->cfg, key);
    if (v && json_is_null(v))
        return log_seterr(h->err, h->errlen, "%s: '%s' is null (no soft-capping), which is not supported", h->cfg_path,
                          key);
    return cfg_float(h, keys, def, 1e-3, 1e6, out);
}

/* Gemma2Config beyond LlamaConfig, with its defaults: the embedding scaled
 * by sqrt(hidden_size); attention and final logit soft-capping; sliding
 * window on the even layers (transformers' layer_types, when given, must
 * say that: llama.cpp's gemma2 has no other pattern); the attention scale
 * query_pre_attn_scalar^-1/2, as transformers computes it.  (llama.cpp
 * instead uses head_dim, or hidden_size / num_attention_heads for a
 * 46-layer model: the same for the released 2B, 9B and 27B, not for a
 * checkpoint that sets it otherwise.)  The output is always tied. */
static int config_gemma2(hf_t *h, const hf_opts_t *o) {
    model_config_t *c = &h->m->cfg;
    static const char *const k_sw[] = {"sliding_window", NULL}, *const k_q[] = {"query_pre_attn_scalar", NULL};
    int qs;
    if (cfg_softcap(h, "attn_logit_softcapping", 50.0, &c->attn_softcap) ||
        cfg_softcap(h, "final_logit_softcapping", 30.0, &c->final_softcap) ||
        cfg_int(h, k_sw, 4096, 1, 1 << 24, &c->swa_window) || cfg_int(h, k_q, 256, 1, 1 << 20, &qs))
        return -1;
    if (!o->tied)
        return log_seterr(h->err, h->errlen, "%s: gemma2 with tie_word_embeddings false is not supported (llama.cpp's "
                          "gemma2 has no separate output)", h->cfg_path);
    json_t *lt = json_object_get(h->cfg, "layer_types");
    if (lt && !json_is_null(lt)) {
        if (!json_is_array(lt) || json_array_size(lt) != (size_t)c->n_layer)
            return log_seterr(h->err, h->errlen, "%s: 'layer_types' must be an array of num_hidden_layers strings",
                              h->cfg_path);
        for (int l = 0; l < c->n_layer; l++) {
            const char *t = json_string_value(json_array_get(lt, (size_t)l));
            if (!t || strcmp(t, l % 2 ? "full_attention" : "sliding_attention"))
                return log_seterr(h->err, h->errlen, "%s: layer_types[%d] is %s: only sliding even layers and full odd "
                                  "ones are supported", h->cfg_path, l, t ? t : "not a string");
        }
    }
    c->swa_period = 2;
    c->embd_scale = sqrtf((float)c->n_embd);
    c->query_scale_dim = qs == c->head_dim ? 0 : qs;
    return 0;
}

/* LlamaConfig and the configs that copied it (Mistral, Qwen2, Qwen3, OLMo 2, Phi-3, Gemma 2). */
static int config_llama(hf_t *h, const arch_t *a, hf_opts_t *o) {
    model_config_t *c = &h->m->cfg;
    static const char *const k_d[] = {"hidden_size", NULL}, *const k_l[] = {"num_hidden_layers", NULL},
                             *const k_h[] = {"num_attention_heads", NULL}, *const k_kv[] = {"num_key_value_heads", NULL},
                             *const k_ff[] = {"intermediate_size", NULL},
                             *const k_ctx[] = {"max_position_embeddings", NULL},
                             *const k_eps[] = {"rms_norm_eps", NULL}, *const k_sw[] = {"sliding_window", NULL},
                             *const act[] = {"silu", NULL}, *const gelu[] = {"gelu_pytorch_tanh", NULL};
    int qwen2 = a->arch == MODEL_ARCH_QWEN2, geglu = a->act == MODEL_ACT_GEGLU;
    hf_rope_t rope;
    if (cfg_int(h, k_d, -1, 1, 1 << 16, &c->n_embd) || cfg_int(h, k_l, -1, 1, 1024, &c->n_layer) ||
        cfg_int(h, k_h, -1, 1, 1024, &c->n_head) || cfg_int(h, k_kv, c->n_head, 1, c->n_head, &c->n_head_kv) ||
        cfg_int(h, k_ff, -1, 1, 1 << 20, &c->n_ff) || cfg_int(h, k_ctx, 2048, 1, 1 << 24, &c->n_ctx_train) ||
        cfg_float(h, k_eps, 1e-6, 0, 1, &c->norm_eps) ||
        cfg_rope(h, 10000.0f, a->need[ARCH_ROPE_FREQS] != ARCH_NO, &rope) ||
        cfg_bool(h, "tie_word_embeddings", a->gemma2, &o->tied) ||
        cfg_bool(h, "attention_bias", qwen2, &o->attn_bias) || cfg_bool(h, "mlp_bias", 0, &o->mlp_bias) ||
        cfg_str_in(h, "hidden_act", geglu ? gelu : act, geglu ? "GeGLU is the tanh GELU" : "SwiGLU needs silu") ||
        (geglu && cfg_str_in(h, "hidden_activation", gelu, "GeGLU is the tanh GELU")) ||
        check_heads(h, c, a->free_head_dim) || (a->gemma2 && config_gemma2(h, o)))
        return -1;
    c->rope_base = rope.theta;
    if (a->arch == MODEL_ARCH_QWEN2 || a->arch == MODEL_ARCH_QWEN3) {
        if (cfg_must_be_off(h, "use_sliding_window", "sliding-window attention is not implemented")) return -1;
        if (qwen2 && !o->attn_bias)
            return log_seterr(h->err, h->errlen, "%s: qwen2 without q/k/v biases is not supported", h->cfg_path);
    } else if (a->arch == MODEL_ARCH_LLAMA) {
        /* Mistral's sliding window is not implemented: within it, attention
         * is exact, so the trained context is capped to it.  (Phi-3's is
         * ignored, as llama.cpp ignores it for its GGUF: see arch.c.) */
        int sw = 0;
        if (cfg_int(h, k_sw, 0, 0, 1 << 24, &sw)) return -1;
        if (sw > 0 && sw < c->n_ctx_train) c->n_ctx_train = sw;
    }
    json_t *prf = json_object_get(h->cfg, "partial_rotary_factor");
    if (prf && !json_is_null(prf) && !(json_is_number(prf) && json_number_value(prf) == 1.0))
        return log_seterr(h->err, h->errlen, "%s: partial_rotary_factor other than 1 is not supported for %s",
                          h->cfg_path, a->gguf);
    c->rope_dim = c->head_dim;
    if (c->head_dim % 2)
        return log_seterr(h->err, h->errlen, "%s: head dimension %d must be even for RoPE", h->cfg_path, c->head_dim);
    if (rope.llama3 && !(h->m->rope_freqs = llama3_freqs(h, &rope, c->head_dim))) return -1;
    return 0;
}

static int config_gpt2(hf_t *h, hf_opts_t *o) {
    model_config_t *c = &h->m->cfg;
    static const char *const k_d[] = {"n_embd", "hidden_size", NULL}, *const k_l[] = {"n_layer", "num_hidden_layers", NULL},
                             *const k_h[] = {"n_head", "num_attention_heads", NULL}, *const k_ff[] = {"n_inner", NULL},
                             *const k_ctx[] = {"n_positions", "n_ctx", "max_position_embeddings", NULL},
                             *const k_eps[] = {"layer_norm_epsilon", "layer_norm_eps", NULL},
                             *const act[] = {"gelu_new", "gelu_pytorch_tanh", NULL};
    int scale;
    if (cfg_int(h, k_d, -1, 1, 1 << 16, &c->n_embd) || cfg_int(h, k_l, -1, 1, 1024, &c->n_layer) ||
        cfg_int(h, k_h, -1, 1, 1024, &c->n_head) || cfg_int(h, k_ff, 4L * c->n_embd, 1, 1 << 20, &c->n_ff) ||
        cfg_int(h, k_ctx, 1024, 1, 1 << 24, &c->n_ctx_train) || cfg_float(h, k_eps, 1e-5, 0, 1, &c->norm_eps) ||
        cfg_bool(h, "tie_word_embeddings", 1, &o->tied) || cfg_bool(h, "scale_attn_weights", 1, &scale) ||
        cfg_must_be_off(h, "scale_attn_by_inverse_layer_idx", "attention scaling is 1/sqrt(head_dim)") ||
        cfg_str_in(h, "activation_function", act, "the tanh GELU gelu_new is implemented"))
        return -1;
    if (!scale)
        return log_seterr(h->err, h->errlen, "%s: scale_attn_weights = false is not supported", h->cfg_path);
    c->n_head_kv = c->n_head;
    if (check_heads(h, c, 0)) return -1;
    c->rope_dim = 0;
    c->rope_base = 10000.0f; /* unused; what the GGUF path reports */
    o->attn_bias = o->mlp_bias = 1;
    return 0;
}

static int config_neox(hf_t *h, hf_opts_t *o) {
    model_config_t *c = &h->m->cfg;
    static const char *const k_d[] = {"hidden_size", NULL}, *const k_l[] = {"num_hidden_layers", NULL},
                             *const k_h[] = {"num_attention_heads", NULL}, *const k_ff[] = {"intermediate_size", NULL},
                             *const k_ctx[] = {"max_position_embeddings", NULL},
                             *const k_eps[] = {"layer_norm_eps", "layer_norm_epsilon", NULL},
                             *const k_pct[] = {"rotary_pct", "partial_rotary_factor", NULL},
                             *const act[] = {"gelu", "gelu_new", "gelu_pytorch_tanh", "gelu_fast", NULL};
    int parallel;
    float pct;
    hf_rope_t rope;
    if (cfg_int(h, k_d, -1, 1, 1 << 16, &c->n_embd) || cfg_int(h, k_l, -1, 1, 1024, &c->n_layer) ||
        cfg_int(h, k_h, -1, 1, 1024, &c->n_head) || cfg_int(h, k_ff, -1, 1, 1 << 20, &c->n_ff) ||
        cfg_int(h, k_ctx, 2048, 1, 1 << 24, &c->n_ctx_train) || cfg_float(h, k_eps, 1e-5, 0, 1, &c->norm_eps) ||
        cfg_float(h, k_pct, 0.25, 0, 1, &pct) || cfg_rope(h, 10000.0f, 0, &rope) ||
        cfg_bool(h, "tie_word_embeddings", 0, &o->tied) || cfg_bool(h, "use_parallel_residual", 1, &parallel) ||
        cfg_bool(h, "attention_bias", 1, &o->attn_bias) || cfg_str_in(h, "hidden_act", act, "GELU is implemented"))
        return -1;
    json_t *rp = json_object_get(h->cfg, "rope_parameters"), *rpf = json_object_get(rp, "partial_rotary_factor");
    if (json_is_number(rpf)) pct = (float)json_number_value(rpf);
    if (!o->attn_bias)
        return log_seterr(h->err, h->errlen, "%s: gpt_neox without attention biases is not supported", h->cfg_path);
    o->mlp_bias = 1;
    c->rope_base = rope.theta;
    c->n_head_kv = c->n_head;
    if (check_heads(h, c, 0)) return -1;
    c->parallel_residual = parallel;
    /* as the converter: int(rotary_pct * head_dim) */
    c->rope_dim = (int)((double)pct * c->head_dim);
    if (c->rope_dim < 2 || c->rope_dim % 2)
        return log_seterr(h->err, h->errlen, "%s: rotary_pct %g gives %d rotary dimensions per head (must be even, >= 2)",
                          h->cfg_path, (double)pct, c->rope_dim);
    return 0;
}

/* ---- the tensors, by the table ------------------------------------------- */

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
    return get_mat(h, name, (uint64_t)c->n_vocab, (uint64_t)c->n_embd, 1, &h->m->tok_embd);
}

/* A checkpoint name: prefix, then the table's template with its "%d" (if
 * any) replaced by the layer number. */
static void hf_name(char *buf, size_t len, const char *prefix, const char *tmpl, int layer) {
    const char *at = strstr(tmpl, "%d");
    if (!at) snprintf(buf, len, "%s%s", prefix, tmpl);
    else snprintf(buf, len, "%s%.*s%d%s", prefix, (int)(at - tmpl), tmpl, layer, at + 2);
}

/* Every tensor of the architecture's table under its checkpoint name, in the
 * layout GGUF gives it.  Biases are required where config.json says the
 * projections have them, else used when present; the output is skipped
 * when tied (transformers ties it: a stored copy is not used). */
static int load_tensors(hf_t *h, const arch_t *a, const hf_opts_t *o) {
    model_t *m = h->m;
    char name[160];
    const char *pre = "";
    if (a->hf_alt_prefix) { /* older GPT-2 checkpoints prefix every name but lm_head's */
        snprintf(name, sizeof name, "%s%s", a->hf_alt_prefix, a->hf_names[ARCH_TOK_EMBD]);
        if (tensor_index(h, name) >= 0) pre = a->hf_alt_prefix;
    }
    snprintf(name, sizeof name, "%s%s", pre, a->hf_names[ARCH_TOK_EMBD]);
    if (get_embedding(h, name) || model_alloc_layers(m, h->err, h->errlen)) return -1;
    for (int l = -1; l < m->cfg.n_layer; l++)
        for (int r = l < 0 ? 0 : ARCH_ROLE_LAYER0; r < (l < 0 ? ARCH_ROLE_LAYER0 : ARCH_N_ROLES); r++) {
            arch_role_t role = (arch_role_t)r;
            if (role == ARCH_TOK_EMBD || !a->hf_names[r]) continue;
            hf_name(name, sizeof name, role == ARCH_OUTPUT ? "" : pre, a->hf_names[r], l);
            if (role == ARCH_OUTPUT && o->tied && a->need[r] == ARCH_NO) { /* a stored copy of the tied output */
                skip(h, name);
                continue;
            }
            if (a->need[r] == ARCH_NO) continue;
            /* A checkpoint stores Q/K/V one way: fused where the table names
             * no separate ones (Phi-3), separate otherwise. */
            int required = a->need[r] != ARCH_OPT || (role == ARCH_QKV && !a->hf_names[ARCH_Q]);
            if (role == ARCH_Q_B || role == ARCH_K_B || role == ARCH_V_B || role == ARCH_O_B) required = o->attn_bias;
            if (role == ARCH_GATE_B || role == ARCH_UP_B || role == ARCH_DOWN_B) required = o->mlp_bias;
            if (role == ARCH_OUTPUT) {
                if (o->tied) {
                    skip(h, name);
                    continue;
                }
                if (tensor_index(h, name) < 0)
                    return log_seterr(h->err, h->errlen, "%s: tensor '%s' is missing and tie_word_embeddings is false",
                                      safetensors_set_path(h->set), name);
            }
            uint64_t rows, cols;
            model_role_shape(m, role, &rows, &cols);
            model_slot_t s = model_slot(m, l, role);
            if (s.mat) {
                int conv1d = a->hf_layout == ARCH_HF_CONV1D && role >= ARCH_ROLE_LAYER0; /* stored [in][out] */
                if (get_mat(h, name, conv1d ? cols : rows, conv1d ? rows : cols, required, s.mat)) return -1;
                if (!s.mat->data) continue;
            } else {
                if (get_vec(h, name, rows, required, s.vec)) return -1;
                if (!*s.vec) continue;
            }
            if (convert(h, a, role, s)) return -1;
        }
    model_finish_weights(m);
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
    model_t *m = model_new(dir, err, errlen);
    hf_t h = {.m = m, .err = err, .errlen = errlen};
    if (!m) goto error;
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
    const arch_t *a = arch_by_hf(type);
    if (!a) {
        char list[256];
        arch_list(1, list, sizeof list);
        log_seterr(err, errlen, "%s: model_type '%s' is not supported (supported: %s)", h.cfg_path, type, list);
        goto error;
    }
    model_config_t *c = &m->cfg;
    c->arch = a->arch, c->norm = a->norm, c->rope = a->rope, c->act = a->act, c->qk_norm = a->qk_norm;
    snprintf(m->arch_name, sizeof m->arch_name, "%s", a->gguf);
    hf_opts_t o = {0};
    int crc = a->hf_config == ARCH_HFCFG_GPT2 ? config_gpt2(&h, &o)
            : a->hf_config == ARCH_HFCFG_NEOX ? config_neox(&h, &o)
                                              : config_llama(&h, a, &o);
    if (crc) goto error;
    if (!(h.set = safetensors_set_open(m->path, err, errlen))) goto error;
    if (!(h.used = calloc(safetensors_set_n_tensors(h.set) + 1, 1))) {
        log_seterr(err, errlen, "%s: out of memory", m->path);
        goto error;
    }
    if (load_tensors(&h, a, &o)) goto error;
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
