/* randmodel.h - transformers with random weights, written through the GGUF
 * writer, for the tests, the llama.cpp conformance generator and the
 * benchmarks (header-only).
 *
 * What it is: a description of a model's shape (rm_spec_t; presets for each
 * architecture the engine runs), and rm_add_model(), which adds to a
 * gguf_writer_t exactly the metadata keys and tensors llama.cpp's converters
 * write for that architecture, with seeded Gaussian weights scaled so that
 * the next-token distributions are neither flat nor one-hot (logits of
 * standard deviation ~3.5, attention logits of order 1, and each layer's
 * attention output of the order of the embedding, so that a tied output
 * matrix does not just predict the input token again).
 *
 * The GELU FFNs (gpt2, gptneox) are scaled down (pre-activations of sd
 * ~0.5, outputs adding a few percent to the residual stream): llama.cpp
 * rounds GELU's input and output to fp16 (kernels.h), a step function, so
 * the last-bit differences of any two matmul implementations flip some of
 * those roundings and the flips cascade through the layers.  At full
 * strength that noise reaches a few 1e-4 nats between two correct engines
 * (tokshift's BLAS and reference paths included); at this strength it stays
 * at ~1e-5 (max 1.8e-5 over 4 seeds x 3 models x 128 tokens), well below the
 * conformance tolerance of 1e-4, while the test still sees a missing FFN
 * bias (0.1 nats), a sigmoid-GELU (7e-3) and even an unrounded fp32 GELU
 * (1.4e-4).
 *
 * Vocabularies come from rm_copy_vocab() (the tokenizer.* keys of a real
 * vocabulary file) or rm_add_spm_vocab() (a synthetic SentencePiece one with
 * byte fallback).  What it is not: a trained model, nor part of the engine.
 *
 * Functions return 0 or -1 with a message in err, like the writer. */
#ifndef TS_RANDMODEL_H
#define TS_RANDMODEL_H

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gguf.h"
#include "gguf_writer.h"
#include "log.h"

typedef struct {
    const char *arch;   /* GGUF general.architecture: llama, qwen2, gpt2, gptneox */
    int n_vocab, n_embd, n_layer, n_head, n_head_kv, n_ff, n_ctx;
    int rope_dim;       /* 0: the whole head */
    int head_dim;       /* 0: n_embd / n_head; else written as attention.key_length */
    int llama3_rope;    /* rope_freqs.weight: Llama 3's frequency divisors (factor 32) */
    int tied;           /* no output.weight */
    int fused_qkv;      /* llama/qwen2: attn_qkv instead of attn_q/k/v */
    int qkv_bias;       /* llama/qwen2: q/k/v biases */
    int parallel_residual; /* gptneox */
    float rope_base, eps;
    ggml_type_t type;   /* of the 2-D weights; 1-D tensors stay F32 as the
                         * converters keep them */
    uint64_t seed;
} rm_spec_t;

/* The presets of the conformance test: several layers, GQA where the
 * architecture has it, partial rotary for gptneox.  n_vocab is set by the
 * caller (it must match the vocabulary). */
static inline int rm_preset(const char *name, rm_spec_t *s) {
    memset(s, 0, sizeof *s);
    s->rope_base = 10000.0f;
    s->eps = 1e-5f;
    s->type = GGML_TYPE_F32;
    s->n_ctx = 512;
    s->seed = 1;
    for (const char *p = name; *p; p++) s->seed = s->seed * 131 + (unsigned char)*p;
    if (!strcmp(name, "llama")) { /* GQA 3:1, separate output */
        s->arch = "llama", s->n_embd = 96, s->n_layer = 4, s->n_head = 6, s->n_head_kv = 2, s->n_ff = 256;
    } else if (!strcmp(name, "llama3")) { /* Llama 3.2-like: head_dim 32 != 96 / 4, llama3 RoPE, tied */
        s->arch = "llama", s->n_embd = 96, s->n_layer = 3, s->n_head = 4, s->n_head_kv = 2, s->n_ff = 256;
        s->head_dim = 32, s->llama3_rope = 1, s->tied = 1, s->rope_base = 500000.0f;
    } else if (!strcmp(name, "qwen2")) { /* GQA 4:1, q/k/v biases, tied */
        s->arch = "qwen2", s->n_embd = 128, s->n_layer = 3, s->n_head = 8, s->n_head_kv = 2, s->n_ff = 352;
        s->qkv_bias = 1, s->tied = 1, s->rope_base = 1000000.0f, s->eps = 1e-6f;
    } else if (!strcmp(name, "qwen3")) { /* Qwen3-like: per-head q/k norms, head_dim 32 with 8 heads of d 128 */
        s->arch = "qwen3", s->n_embd = 128, s->n_layer = 3, s->n_head = 8, s->n_head_kv = 2, s->n_ff = 352;
        s->head_dim = 32, s->tied = 1, s->rope_base = 1000000.0f, s->eps = 1e-6f;
    } else if (!strcmp(name, "olmo2")) { /* OLMo 2: post-norms only, q/k norms over all heads, GQA 2:1 */
        s->arch = "olmo2", s->n_embd = 128, s->n_layer = 3, s->n_head = 8, s->n_head_kv = 4, s->n_ff = 352;
        s->rope_base = 500000.0f, s->eps = 1e-6f;
    } else if (!strcmp(name, "phi3")) { /* Phi-3: fused QKV and gate-up, NeoX RoPE, GQA 2:1 */
        s->arch = "phi3", s->n_embd = 96, s->n_layer = 3, s->n_head = 4, s->n_head_kv = 2, s->n_ff = 256;
        s->fused_qkv = 1;
    } else if (!strcmp(name, "gemma2")) { /* Gemma 2: GeGLU, pre- and post-norms, soft-capping, sliding window */
        s->arch = "gemma2", s->n_embd = 128, s->n_layer = 4, s->n_head = 4, s->n_head_kv = 2, s->n_ff = 256;
        s->head_dim = 32, s->tied = 1, s->eps = 1e-6f;
    } else if (!strcmp(name, "gpt2")) { /* learned positions, tied */
        s->arch = "gpt2", s->n_embd = 128, s->n_layer = 4, s->n_head = 4, s->n_head_kv = 4, s->n_ff = 512;
        s->tied = 1, s->n_ctx = 256;
    } else if (!strcmp(name, "gptneox")) { /* Pythia-like: rotary on a quarter of each head */
        s->arch = "gptneox", s->n_embd = 128, s->n_layer = 3, s->n_head = 4, s->n_head_kv = 4, s->n_ff = 512;
        s->rope_dim = 8, s->parallel_residual = 1;
    } else if (!strcmp(name, "gptneox-seq")) { /* the sequential-residual variant */
        s->arch = "gptneox", s->n_embd = 64, s->n_layer = 3, s->n_head = 4, s->n_head_kv = 4, s->n_ff = 256;
        s->rope_dim = 4, s->parallel_residual = 0;
    } else {
        return -1;
    }
    return 0;
}

/* splitmix64 + Box-Muller: seeded, platform-independent normals. */
static inline double rm_normal(uint64_t *st) {
    uint64_t r[2];
    for (int i = 0; i < 2; i++) {
        uint64_t z = (*st += 0x9e3779b97f4a7c15ULL);
        z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
        z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
        r[i] = z ^ (z >> 31);
    }
    double u1 = ((double)(r[0] >> 11) + 0.5) * 0x1.0p-53, u2 = (double)(r[1] >> 11) * 0x1.0p-53;
    return sqrt(-2.0 * log(u1)) * cos(2.0 * 3.14159265358979323846 * u2);
}

/* Adds tensor name [ne0] or [ne0][ne1] of mean + sd * N(0, 1) values. */
static inline int rm_tensor(gguf_writer_t *w, const char *name, ggml_type_t type, uint64_t ne0, uint64_t ne1,
                            double mean, double sd, uint64_t *st, char *err, size_t errlen) {
    size_t n = (size_t)(ne0 * ne1);
    float *x = malloc(n * sizeof *x);
    if (!x) return log_seterr(err, errlen, "randmodel: out of memory for '%s'", name);
    for (size_t i = 0; i < n; i++) x[i] = (float)(mean + sd * rm_normal(st));
    uint64_t ne[2] = {ne0, ne1};
    int rc = gguf_writer_add_tensor(w, name, ne1 == 1 ? GGML_TYPE_F32 : type, ne1 == 1 ? 1 : 2, ne, x, err, errlen);
    free(x);
    return rc;
}

/* Adds general.architecture, the architecture's keys and all its tensors. */
static inline int rm_add_model(gguf_writer_t *w, const rm_spec_t *s, char *err, size_t errlen) {
    char key[128], name[128];
    const char *a = s->arch;
    int gpt2 = !strcmp(a, "gpt2"), neox = !strcmp(a, "gptneox"), layer_norm = gpt2 || neox;
    int qwen3 = !strcmp(a, "qwen3"), olmo2 = !strcmp(a, "olmo2"); /* q/k norms per head; over all, post-norms */
    int phi3 = !strcmp(a, "phi3");                                 /* gate and up fused, rows gate then up */
    int gemma2 = !strcmp(a, "gemma2"); /* pre- and post-norms, embedding scaled by sqrt(d) */
    int hd = s->head_dim ? s->head_dim : s->n_embd / s->n_head, qd = s->n_head * hd, kv = s->n_head_kv * hd;
    uint64_t d = (uint64_t)s->n_embd, V = (uint64_t)s->n_vocab, ff = (uint64_t)s->n_ff, st = s->seed;
    double sd_out = 3.5 / sqrt((double)d); /* logits of sd ~3.5 */
    ggml_type_t t = s->type;
#define K(suffix) (snprintf(key, sizeof key, "%s.%s", a, suffix), key)
#define T(nm, a0, a1, mean, sd) \
    if (rm_tensor(w, nm, t, a0, a1, mean, sd, &st, err, errlen)) return -1;
    if (gguf_writer_add_str(w, "general.architecture", a, SIZE_MAX, err, errlen) ||
        gguf_writer_add_str(w, "general.name", "tokshift random test model", SIZE_MAX, err, errlen) ||
        gguf_writer_add_u32(w, K("context_length"), (uint32_t)s->n_ctx, err, errlen) ||
        gguf_writer_add_u32(w, K("embedding_length"), (uint32_t)s->n_embd, err, errlen) ||
        gguf_writer_add_u32(w, K("block_count"), (uint32_t)s->n_layer, err, errlen) ||
        gguf_writer_add_u32(w, K("feed_forward_length"), (uint32_t)s->n_ff, err, errlen) ||
        gguf_writer_add_u32(w, K("attention.head_count"), (uint32_t)s->n_head, err, errlen))
        return -1;
    if (!gpt2 && !neox && gguf_writer_add_u32(w, K("attention.head_count_kv"), (uint32_t)s->n_head_kv, err, errlen))
        return -1;
    if (gguf_writer_add_f32(w, K(layer_norm ? "attention.layer_norm_epsilon" : "attention.layer_norm_rms_epsilon"),
                            s->eps, err, errlen))
        return -1;
    if (!gpt2 && (gguf_writer_add_f32(w, K("rope.freq_base"), s->rope_base, err, errlen) ||
                  gguf_writer_add_u32(w, K("rope.dimension_count"), (uint32_t)(s->rope_dim ? s->rope_dim : hd), err,
                                      errlen)))
        return -1;
    if (neox && gguf_writer_add_bool(w, K("use_parallel_residual"), s->parallel_residual, err, errlen)) return -1;
    /* Caps far below Gemma 2's 50 and 30, and a window of 16 positions
     * (the test scores 128), so that the capping and the window change
     * the result. */
    if (gemma2 && (gguf_writer_add_f32(w, K("attn_logit_softcapping"), 2.0f, err, errlen) ||
                   gguf_writer_add_f32(w, K("final_logit_softcapping"), 15.0f, err, errlen) ||
                   gguf_writer_add_u32(w, K("attention.sliding_window"), 16, err, errlen)))
        return -1;
    if (s->head_dim && (gguf_writer_add_u32(w, K("attention.key_length"), (uint32_t)hd, err, errlen) ||
                        gguf_writer_add_u32(w, K("attention.value_length"), (uint32_t)hd, err, errlen)))
        return -1;
    if (s->llama3_rope) {
        /* The converter's factors (Llama 3.2: factor 32, low 1, high 4,
         * original context 8192), in double: they are this model's data. */
        int half = (s->rope_dim ? s->rope_dim : hd) / 2;
        float ff[512];
        for (int i = 0; i < half && i < 512; i++) {
            double wl = 2 * 3.14159265358979323846 * pow(s->rope_base, 2.0 * i / (2 * half));
            double smooth = (8192.0 / wl - 1.0) / (4.0 - 1.0);
            ff[i] = wl < 8192.0 / 4 ? 1.0f : wl > 8192.0 ? 32.0f : (float)(1.0 / ((1 - smooth) / 32.0 + smooth));
        }
        uint64_t ne[1] = {(uint64_t)half};
        if (gguf_writer_add_tensor(w, "rope_freqs.weight", GGML_TYPE_F32, 1, ne, ff, err, errlen)) return -1;
    }

    T("token_embd.weight", d, V, 0, sd_out);
    if (gpt2) T("position_embd.weight", d, (uint64_t)s->n_ctx, 0, sd_out);
    T("output_norm.weight", d, 1, 1, 0.1);
    if (layer_norm) T("output_norm.bias", d, 1, 0, 0.05);
    if (!s->tied) T("output.weight", d, V, 0, sd_out);
    for (int l = 0; l < s->n_layer; l++) {
#define NM(suffix) (snprintf(name, sizeof name, "blk.%d.%s", l, suffix), name)
        if (!olmo2) T(NM("attn_norm.weight"), d, 1, 1, 0.1);
        if (layer_norm) T(NM("attn_norm.bias"), d, 1, 0, 0.05);
        if (layer_norm || s->fused_qkv) {
            /* The same random draws as the separate q, k, v below (rows Q,
             * K, V; V with its own scale), so both layouts give one model. */
            size_t nw = (size_t)(qd + 2 * kv) * d;
            float *x = malloc(nw * sizeof *x);
            if (!x) return log_seterr(err, errlen, "randmodel: out of memory");
            for (size_t i = 0; i < nw; i++)
                x[i] = (float)((i < (size_t)(qd + kv) * d ? 1.2 : 1.0) / sqrt((double)d) * rm_normal(&st));
            uint64_t ne[2] = {d, (uint64_t)(qd + 2 * kv)};
            int rc = gguf_writer_add_tensor(w, NM("attn_qkv.weight"), t, 2, ne, x, err, errlen);
            free(x);
            if (rc) return -1;
            if (layer_norm || s->qkv_bias) T(NM("attn_qkv.bias"), (uint64_t)(qd + 2 * kv), 1, 0, 0.1);
        } else {
            T(NM("attn_q.weight"), d, (uint64_t)qd, 0, 1.2 / sqrt((double)d));
            T(NM("attn_k.weight"), d, (uint64_t)kv, 0, 1.2 / sqrt((double)d));
            T(NM("attn_v.weight"), d, (uint64_t)kv, 0, 1.0 / sqrt((double)d));
            if (s->qkv_bias) {
                T(NM("attn_q.bias"), (uint64_t)qd, 1, 0, 0.1);
                T(NM("attn_k.bias"), (uint64_t)kv, 1, 0, 0.1);
                T(NM("attn_v.bias"), (uint64_t)kv, 1, 0, 0.1);
            }
        }
        if (qwen3 || olmo2) {
            T(NM("attn_q_norm.weight"), (uint64_t)(qwen3 ? hd : qd), 1, 1, 0.1);
            T(NM("attn_k_norm.weight"), (uint64_t)(qwen3 ? hd : kv), 1, 1, 0.1);
        }
        T(NM("attn_output.weight"), (uint64_t)qd, d, 0, 1.0 / sqrt((double)qd));
        if (layer_norm) T(NM("attn_output.bias"), d, 1, 0, 0.02);
        /* Gemma 2 multiplies the (tied) embedding by sqrt(d), ~3.5 a
         * value: post-norm gains of 4 keep the blocks' share of the
         * residual stream above the input token's. */
        if (olmo2 || gemma2) T(NM("post_attention_norm.weight"), d, 1, gemma2 ? 4 : 1, gemma2 ? 0.4 : 0.1);
        if (!olmo2) T(NM("ffn_norm.weight"), d, 1, 1, 0.1);
        if (layer_norm) T(NM("ffn_norm.bias"), d, 1, 0, 0.05);
        if (!layer_norm && !phi3) T(NM("ffn_gate.weight"), d, ff, 0, 1.0 / sqrt((double)d));
        T(NM("ffn_up.weight"), d, phi3 ? 2 * ff : ff, 0, (layer_norm ? 0.5 : 1.0) / sqrt((double)d));
        if (layer_norm) T(NM("ffn_up.bias"), ff, 1, 0, 0.1);
        T(NM("ffn_down.weight"), ff, d, 0, (layer_norm ? 0.05 : 0.5) / sqrt((double)ff));
        if (layer_norm) T(NM("ffn_down.bias"), d, 1, 0, 0.02);
        if (olmo2 || gemma2) T(NM("post_ffw_norm.weight"), d, 1, gemma2 ? 0.25 : 1, gemma2 ? 0.025 : 0.1);
#undef NM
    }
#undef K
#undef T
    return 0;
}

/* Copies every tokenizer.* key of a vocabulary file into w; the model's
 * n_vocab must then be the length of its tokenizer.ggml.tokens. */
static inline int rm_copy_vocab(gguf_writer_t *w, const gguf_t *vocab, char *err, size_t errlen) {
    for (uint64_t i = 0; i < gguf_n_kv(vocab); i++) {
        const gguf_kv_t *kv = gguf_kv_at(vocab, i);
        if (kv->key.len > 10 && !memcmp(kv->key.ptr, "tokenizer.", 10) &&
            gguf_writer_copy_kv(w, kv, err, errlen))
            return -1;
    }
    return 0;
}

/* The number of tokens in a vocabulary file (tokenizer.ggml.tokens), or -1. */
static inline long rm_vocab_size(const gguf_t *vocab) {
    const gguf_str_t *strs;
    uint64_t n;
    return gguf_get_str_arr(vocab, "tokenizer.ggml.tokens", &strs, &n, NULL, 0) == 0 ? (long)n : -1;
}

/* A synthetic SentencePiece vocabulary of n >= 259 tokens: <unk>, <s>, </s>,
 * the 256 byte tokens, then pieces "t<i>" (scores descending). */
static inline int rm_add_spm_vocab(gguf_writer_t *w, int n, char *err, size_t errlen) {
    if (n < 259) return log_seterr(err, errlen, "randmodel: a vocabulary needs at least 259 tokens");
    char **toks = calloc((size_t)n, sizeof *toks);
    float *scores = malloc((size_t)n * sizeof *scores);
    int32_t *types = malloc((size_t)n * sizeof *types);
    int rc = -1;
    if (!toks || !scores || !types) {
        log_seterr(err, errlen, "randmodel: out of memory");
        goto error;
    }
    for (int i = 0; i < n; i++) {
        if (!(toks[i] = malloc(16))) {
            log_seterr(err, errlen, "randmodel: out of memory");
            goto error;
        }
        if (i < 3) snprintf(toks[i], 16, "%s", i == 0 ? "<unk>" : i == 1 ? "<s>" : "</s>");
        else if (i < 259) snprintf(toks[i], 16, "<0x%02X>", i - 3);
        else snprintf(toks[i], 16, "t%d", i);
        scores[i] = i < 259 ? 0.0f : -(float)i;
        types[i] = i == 0 ? 2 : i < 3 ? 3 : i < 259 ? 6 : 1;
    }
    if (gguf_writer_add_str(w, "tokenizer.ggml.model", "llama", SIZE_MAX, err, errlen) ||
        gguf_writer_add_str_arr(w, "tokenizer.ggml.tokens", (const char *const *)toks, NULL, (uint64_t)n, err,
                                errlen) ||
        gguf_writer_add_arr(w, "tokenizer.ggml.scores", GGUF_TYPE_FLOAT32, scores, (uint64_t)n, err, errlen) ||
        gguf_writer_add_arr(w, "tokenizer.ggml.token_type", GGUF_TYPE_INT32, types, (uint64_t)n, err, errlen) ||
        gguf_writer_add_u32(w, "tokenizer.ggml.bos_token_id", 1, err, errlen) ||
        gguf_writer_add_u32(w, "tokenizer.ggml.eos_token_id", 2, err, errlen) ||
        gguf_writer_add_u32(w, "tokenizer.ggml.unknown_token_id", 0, err, errlen))
        goto error;
    rc = 0;
error:
    if (toks)
        for (int i = 0; i < n; i++) free(toks[i]);
    free(toks);
    free(scores);
    free(types);
    return rc;
}

/* Copies the GGUF file in to out: every key as it is, every tensor
 * dequantized (quant.h, bit-exact with llama.cpp) and stored as F32; with
 * sigma > 0, plus seeded Gaussian noise of sigma times the tensor's root
 * mean square per value (a second model of the same size and vocabulary).
 * Returns 0 or -1 with a message. */
static inline int rm_copy_f32(const char *in, const char *out, double sigma, uint64_t seed, char *err,
                              size_t errlen) {
    int rc = -1;
    float *x = NULL;
    gguf_writer_t *w = NULL;
    gguf_t *g = gguf_open(in, err, errlen);
    if (!g || !(w = gguf_writer_new(err, errlen))) goto error;
    for (uint64_t i = 0; i < gguf_n_kv(g); i++) {
        const gguf_kv_t *kv = gguf_kv_at(g, i);
        if (kv->key.len == 17 && !memcmp(kv->key.ptr, "general.alignment", 17)) { /* the writer's own */
            if (gguf_writer_set_alignment(w, (uint32_t)kv->v.u, err, errlen)) goto error;
        } else if (gguf_writer_copy_kv(w, kv, err, errlen)) {
            goto error;
        }
    }
    for (uint64_t i = 0; i < gguf_n_tensors(g); i++) {
        const gguf_tensor_t *t = gguf_tensor_at(g, i);
        char name[256];
        snprintf(name, sizeof name, "%.*s", (int)t->name.len, t->name.ptr);
        size_t n = (size_t)gguf_tensor_nelem(t);
        free(x);
        if (!(x = malloc((n ? n : 1) * sizeof *x))) {
            log_seterr(err, errlen, "out of memory");
            goto error;
        }
        gguf_tensor_to_f32(t, x);
        if (sigma > 0) {
            double ss = 0;
            for (size_t j = 0; j < n; j++) ss += (double)x[j] * x[j];
            double sd = sigma * sqrt(ss / (double)(n ? n : 1));
            for (size_t j = 0; j < n; j++) x[j] = (float)(x[j] + sd * rm_normal(&seed));
        }
        if (gguf_writer_add_tensor(w, name, GGML_TYPE_F32, t->n_dims, t->ne, x, err, errlen)) goto error;
    }
    if (gguf_writer_write(w, out, err, errlen)) goto error;
    rc = 0;
error:
    free(x);
    gguf_writer_destroy(&w);
    gguf_destroy(&g);
    return rc;
}

#endif
