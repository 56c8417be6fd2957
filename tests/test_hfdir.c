/* test_hfdir.c - a Hugging Face model directory computes exactly what its
 * GGUF conversion computes.
 *
 * For each architecture (llama with GQA and untied output; llama with every
 * bias, tied output; qwen2 with GQA, biases and tied output; gpt2, plainly
 * and with "transformer."-prefixed names and a stored copy of the tied
 * lm_head; gptneox with partial rotary, parallel and serial residual) the
 * test draws random weights in the Hugging Face layout, with a real
 * vocabulary (GPT-2's, from $TOKSHIFT_TESTDATA/vocab), and writes them twice:
 * as a Hugging Face directory (config.json, model.safetensors or a sharded
 * index, tokenizer.json written from the vocabulary's tokens and merges,
 * plus the buffers transformers saves and recomputes), and as a GGUF through
 * the project's GGUF writer after converting the layout exactly as
 * llama.cpp's convert_hf_to_gguf.py does (written here independently of
 * hfdir.c: the Llama Q/K permute as reshape(n_head, 2, hd/2, d).swapaxes(1, 2)
 * on weights and biases, GPT-2's Conv1D transposes, GPT-NeoX's per-head QKV
 * reordered to Q|K|V).  Both load through loader_load; the text tokenizes to
 * the same ids, and every logprob, entropy, rank and top-1 logprob is
 * identical (the same weights, types and code: the same bits).  In F32 (one checkpoint
 * sharded), in BF16 safetensors against the BF16-rounded GGUF (2-D tensors
 * BF16, vectors F32, as the converter stores them), and for qwen2 in F16.
 * For two of them `tokshift score` prints the same bytes for the file and
 * the directory (when TOKSHIFT_BIN names the command, as CTest sets it).
 *
 * Also: the rotate-half RoPE of transformers on an HF-layout head equals
 * kern_rope's interleaved RoPE on the permuted head (the reason for the
 * permutation); tokenizer_config.json's add_bos_token and BOS/EOS reach the
 * tokenizer; malformed directories fail with messages naming the file and
 * the key or tensor.
 *
 * The seed changes every run (printed; TOKSHIFT_TEST_SEED replays one). */
#include <math.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "experiment.h"
#include "gguf.h"
#include "gguf_writer.h"
#include "half.h"
#include "kernels.h"
#include "log.h"
#include "loader.h"
#include "model.h"
#include "stwrite.h"
#include "testutil.h"

static char err[LOG_ERRLEN];

static uint64_t rng_state;
static uint64_t rnd(void) { return tu_splitmix64(&rng_state); }
static float urand(void) { return (float)((double)(rnd() >> 11) / 9007199254740992.0 * 2.0 - 1.0); } /* [-1, 1) */

/* ---- one checkpoint: tensors in the Hugging Face layout ----------------- */

typedef struct {
    char name[96];
    int rows, cols; /* cols == 0: a vector of rows */
    float *data;
} hft_t;

typedef struct {
    hft_t t[256];
    int n;
} ckpt_t;

static float *ck_add(ckpt_t *c, const char *name, int rows, int cols, float scale, float offset) {
    TU_REQUIRE(c->n < 256, "too many tensors");
    hft_t *t = &c->t[c->n++];
    snprintf(t->name, sizeof t->name, "%s", name);
    t->rows = rows, t->cols = cols;
    size_t n = (size_t)rows * (cols ? cols : 1);
    t->data = malloc(n * sizeof *t->data);
    for (size_t i = 0; i < n; i++) t->data[i] = offset + scale * urand();
    return t->data;
}

static void ck_free(ckpt_t *c) {
    for (int i = 0; i < c->n; i++) free(c->t[i].data);
    c->n = 0;
}

/* Rounds every value to what a BF16 or F16 checkpoint holds. */
static void ck_round(ckpt_t *c, ggml_type_t type) {
    for (int i = 0; i < c->n; i++) {
        size_t n = (size_t)c->t[i].rows * (c->t[i].cols ? c->t[i].cols : 1);
        float *x = c->t[i].data;
        for (size_t j = 0; j < n; j++)
            x[j] = type == GGML_TYPE_BF16 ? half_bf16_to_f32(half_f32_to_bf16(x[j])) : half_f16_to_f32(half_f32_to_f16(x[j]));
    }
}

typedef enum { A_LLAMA, A_QWEN2, A_GPT2, A_GPTNEOX, A_QWEN3, A_OLMO2, A_PHI3, A_GEMMA2 } tarch_t;

typedef struct {
    const char *label;
    tarch_t arch;
    int d, n_layer, n_head, n_head_kv, ff, ctx;
    int tied;
    int variant; /* llama: attention_bias and mlp_bias; gptneox: use_parallel_residual;
                  * gpt2: names prefixed "transformer." and a stored copy of lm_head */
    float rotary_pct;    /* gptneox */
    float rope_theta, eps;
    int head_dim;        /* llama: 0, or an explicit head_dim other than d / n_head */
    int llama3;          /* llama: rope_scaling {rope_type llama3, factor 32, ...} */
} spec_t;

/* Whether spec s is of the families whose names LlamaForCausalLM set. */
static int llama_like(const spec_t *s) {
    return s->arch == A_LLAMA || s->arch == A_QWEN2 || s->arch == A_QWEN3 || s->arch == A_OLMO2 || s->arch == A_PHI3 ||
           s->arch == A_GEMMA2;
}

/* The head size of spec s. */
static int head_dim_of(const spec_t *s) { return s->head_dim ? s->head_dim : s->d / s->n_head; }

static int V; /* the vocabulary's size */

/* Random weights for spec s, under the names transformers gives them. */
static void make_ckpt(const spec_t *s, ckpt_t *c) {
    int d = s->d, hd = head_dim_of(s), q = s->n_head * hd, kv = s->n_head_kv * hd, ff = s->ff;
    float sd = 1.0f / sqrtf((float)d), sf = 1.0f / sqrtf((float)ff);
    char n[96];
    /* Gemma stores a norm's gain as w and uses 1 + w: gains near 1 either way */
    float one = s->arch == A_GEMMA2 ? 0.0f : 1.0f;
    if (llama_like(s)) {
        ck_add(c, "model.embed_tokens.weight", V, d, s->tied ? 0.4f : 1.0f, 0);
        ck_add(c, "model.norm.weight", d, 0, 0.2f, one);
        if (!s->tied) ck_add(c, "lm_head.weight", V, d, 0.6f, 0);
        for (int l = 0; l < s->n_layer; l++) {
#define L(suffix, r, cc, sc, off) (snprintf(n, sizeof n, "model.layers.%d.%s", l, suffix), ck_add(c, n, r, cc, sc, off))
            if (s->arch != A_OLMO2) L("input_layernorm.weight", d, 0, 0.2f, one);
            if (s->arch == A_PHI3) { /* Phi3Attention.qkv_proj: rows Q, K, V */
                L("self_attn.qkv_proj.weight", q + 2 * kv, d, 2.0f * sd, 0);
            } else {
                L("self_attn.q_proj.weight", q, d, 2.0f * sd, 0);
                L("self_attn.k_proj.weight", kv, d, 2.0f * sd, 0);
                L("self_attn.v_proj.weight", kv, d, sd, 0);
            }
            if (s->arch == A_QWEN2 || s->variant) {
                L("self_attn.q_proj.bias", q, 0, 0.5f, 0);
                L("self_attn.k_proj.bias", kv, 0, 0.5f, 0);
                L("self_attn.v_proj.bias", kv, 0, 0.2f, 0);
            }
            if (s->arch == A_QWEN3 || s->arch == A_OLMO2) { /* per head, or over all heads */
                L("self_attn.q_norm.weight", s->arch == A_QWEN3 ? hd : q, 0, 0.2f, 1.0f);
                L("self_attn.k_norm.weight", s->arch == A_QWEN3 ? hd : kv, 0, 0.2f, 1.0f);
            }
            L("self_attn.o_proj.weight", d, q, sd, 0);
            if (s->variant) L("self_attn.o_proj.bias", d, 0, 0.1f, 0);
            L("post_attention_layernorm.weight", d, 0, 0.2f, one); /* OLMo 2, Gemma 2: the attention output's norm */
            if (s->arch == A_GEMMA2) L("pre_feedforward_layernorm.weight", d, 0, 0.2f, one);
            if (s->arch == A_OLMO2 || s->arch == A_GEMMA2) L("post_feedforward_layernorm.weight", d, 0, 0.2f, one);
            if (s->arch == A_PHI3) { /* Phi3MLP.gate_up_proj: rows gate, then up */
                L("mlp.gate_up_proj.weight", 2 * ff, d, sd, 0);
            } else {
                L("mlp.gate_proj.weight", ff, d, sd, 0);
                L("mlp.up_proj.weight", ff, d, sd, 0);
            }
            L("mlp.down_proj.weight", d, ff, sf, 0);
            if (s->variant) {
                L("mlp.gate_proj.bias", ff, 0, 0.2f, 0);
                L("mlp.up_proj.bias", ff, 0, 0.2f, 0);
                L("mlp.down_proj.bias", d, 0, 0.1f, 0);
            }
#undef L
        }
    } else if (s->arch == A_GPT2) {
        const char *pre = s->variant ? "transformer." : "";
#define G(suffix, r, cc, sc, off) (snprintf(n, sizeof n, "%s%s", pre, suffix), ck_add(c, n, r, cc, sc, off))
        float *wte = G("wte.weight", V, d, 0.5f, 0);
        G("wpe.weight", s->ctx, d, 0.2f, 0);
        G("ln_f.weight", d, 0, 0.2f, 1.0f);
        G("ln_f.bias", d, 0, 0.1f, 0);
#undef G
        if (s->variant) /* some checkpoints store the tied output too */
            memcpy(ck_add(c, "lm_head.weight", V, d, 0, 0), wte, (size_t)V * d * sizeof *wte);
        for (int l = 0; l < s->n_layer; l++) {
#define L(suffix, r, cc, sc, off) (snprintf(n, sizeof n, "%sh.%d.%s", pre, l, suffix), ck_add(c, n, r, cc, sc, off))
            L("ln_1.weight", d, 0, 0.2f, 1.0f);
            L("ln_1.bias", d, 0, 0.1f, 0);
            L("attn.c_attn.weight", d, 3 * d, 2.0f * sd, 0); /* Conv1D: [in][out] */
            L("attn.c_attn.bias", 3 * d, 0, 0.2f, 0);
            L("attn.c_proj.weight", d, d, sd, 0);
            L("attn.c_proj.bias", d, 0, 0.1f, 0);
            L("ln_2.weight", d, 0, 0.2f, 1.0f);
            L("ln_2.bias", d, 0, 0.1f, 0);
            L("mlp.c_fc.weight", d, ff, 2.0f * sd, 0);
            L("mlp.c_fc.bias", ff, 0, 0.2f, 0);
            L("mlp.c_proj.weight", ff, d, sf, 0);
            L("mlp.c_proj.bias", d, 0, 0.1f, 0);
#undef L
        }
    } else {
        ck_add(c, "gpt_neox.embed_in.weight", V, d, 1.0f, 0);
        ck_add(c, "gpt_neox.final_layer_norm.weight", d, 0, 0.2f, 1.0f);
        ck_add(c, "gpt_neox.final_layer_norm.bias", d, 0, 0.1f, 0);
        ck_add(c, "embed_out.weight", V, d, 0.6f, 0);
        for (int l = 0; l < s->n_layer; l++) {
#define L(suffix, r, cc, sc, off) (snprintf(n, sizeof n, "gpt_neox.layers.%d.%s", l, suffix), ck_add(c, n, r, cc, sc, off))
            L("input_layernorm.weight", d, 0, 0.2f, 1.0f);
            L("input_layernorm.bias", d, 0, 0.1f, 0);
            L("attention.query_key_value.weight", 3 * d, d, 2.0f * sd, 0); /* per head: q, k, v */
            L("attention.query_key_value.bias", 3 * d, 0, 0.3f, 0);
            L("attention.dense.weight", d, d, sd, 0);
            L("attention.dense.bias", d, 0, 0.1f, 0);
            L("post_attention_layernorm.weight", d, 0, 0.2f, 1.0f);
            L("post_attention_layernorm.bias", d, 0, 0.1f, 0);
            L("mlp.dense_h_to_4h.weight", ff, d, 2.0f * sd, 0);
            L("mlp.dense_h_to_4h.bias", ff, 0, 0.2f, 0);
            L("mlp.dense_4h_to_h.weight", d, ff, sf, 0);
            L("mlp.dense_4h_to_h.bias", d, 0, 0.1f, 0);
#undef L
        }
    }
}

/* ---- the Hugging Face directory ------------------------------------------ */

static void write_file(const char *dir, const char *name, const char *text) {
    char p[512];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    stw_write_bytes(p, text, strlen(text));
}

/* Gemma 2's hyper-parameters in both files. */
#define GEMMA2_ATTN_CAP 5.0
#define GEMMA2_FINAL_CAP 30.0
#define GEMMA2_WINDOW 16

static void write_config(const spec_t *s, const char *dir) {
    json_t *c = json_object();
    int hd = s->d / s->n_head;
    (void)hd;
    switch (s->arch) {
    case A_LLAMA: case A_QWEN2: case A_QWEN3: case A_OLMO2: case A_PHI3: case A_GEMMA2: {
        static const char *const types[][2] = {[A_LLAMA] = {"llama", "LlamaForCausalLM"},
                                               [A_QWEN2] = {"qwen2", "Qwen2ForCausalLM"},
                                               [A_QWEN3] = {"qwen3", "Qwen3ForCausalLM"},
                                               [A_OLMO2] = {"olmo2", "Olmo2ForCausalLM"},
                                               [A_PHI3] = {"phi3", "Phi3ForCausalLM"},
                                               [A_GEMMA2] = {"gemma2", "Gemma2ForCausalLM"}};
        json_object_set_new(c, "model_type", json_string(types[s->arch][0]));
        json_object_set_new(c, "architectures", json_pack("[s]", types[s->arch][1]));
        json_object_set_new(c, "hidden_size", json_integer(s->d));
        json_object_set_new(c, "num_hidden_layers", json_integer(s->n_layer));
        json_object_set_new(c, "num_attention_heads", json_integer(s->n_head));
        json_object_set_new(c, "num_key_value_heads", json_integer(s->n_head_kv));
        json_object_set_new(c, "intermediate_size", json_integer(s->ff));
        json_object_set_new(c, "max_position_embeddings", json_integer(s->ctx));
        json_object_set_new(c, "rope_theta", json_real(s->rope_theta));
        json_object_set_new(c, "rms_norm_eps", json_real(s->eps));
        json_object_set_new(c, "hidden_act", json_string(s->arch == A_GEMMA2 ? "gelu_pytorch_tanh" : "silu"));
        if (s->arch == A_GEMMA2) { /* a window shorter than the text, caps that bite (GEMMA2_* below) */
            json_object_set_new(c, "hidden_activation", json_string("gelu_pytorch_tanh"));
            json_object_set_new(c, "query_pre_attn_scalar", json_integer(head_dim_of(s)));
            json_object_set_new(c, "attn_logit_softcapping", json_real(GEMMA2_ATTN_CAP));
            json_object_set_new(c, "final_logit_softcapping", json_real(GEMMA2_FINAL_CAP));
            json_object_set_new(c, "sliding_window", json_integer(GEMMA2_WINDOW));
            json_t *lt = json_array();
            for (int l = 0; l < s->n_layer; l++)
                json_array_append_new(lt, json_string(l % 2 ? "full_attention" : "sliding_attention"));
            json_object_set_new(c, "layer_types", lt);
        }
        if (s->llama3)
            json_object_set_new(c, "rope_scaling",
                                json_pack("{s:s, s:f, s:f, s:f, s:i}", "rope_type", "llama3", "factor", 32.0,
                                          "low_freq_factor", 1.0, "high_freq_factor", 4.0,
                                          "original_max_position_embeddings", 8192));
        else json_object_set_new(c, "rope_scaling", json_null());
        if (s->head_dim) json_object_set_new(c, "head_dim", json_integer(s->head_dim));
        json_object_set_new(c, "torch_dtype", json_string("float32"));
        if (s->arch == A_QWEN2 || s->arch == A_QWEN3) json_object_set_new(c, "use_sliding_window", json_false());
        if (s->arch == A_LLAMA) {
            json_object_set_new(c, "attention_bias", json_boolean(s->variant));
            json_object_set_new(c, "mlp_bias", json_boolean(s->variant));
        }
        break;
    }
    case A_GPT2:
        json_object_set_new(c, "model_type", json_string("gpt2"));
        json_object_set_new(c, "n_embd", json_integer(s->d));
        json_object_set_new(c, "n_layer", json_integer(s->n_layer));
        json_object_set_new(c, "n_head", json_integer(s->n_head));
        json_object_set_new(c, "n_inner", s->ff == 4 * s->d ? json_null() : json_integer(s->ff));
        json_object_set_new(c, "n_positions", json_integer(s->ctx));
        json_object_set_new(c, "n_ctx", json_integer(s->ctx));
        json_object_set_new(c, "layer_norm_epsilon", json_real(s->eps));
        json_object_set_new(c, "activation_function", json_string("gelu_new"));
        break;
    case A_GPTNEOX:
        json_object_set_new(c, "model_type", json_string("gpt_neox"));
        json_object_set_new(c, "hidden_size", json_integer(s->d));
        json_object_set_new(c, "num_hidden_layers", json_integer(s->n_layer));
        json_object_set_new(c, "num_attention_heads", json_integer(s->n_head));
        json_object_set_new(c, "intermediate_size", json_integer(s->ff));
        json_object_set_new(c, "max_position_embeddings", json_integer(s->ctx));
        json_object_set_new(c, "rotary_pct", json_real(s->rotary_pct));
        json_object_set_new(c, "rotary_emb_base", json_integer((json_int_t)s->rope_theta));
        json_object_set_new(c, "layer_norm_eps", json_real(s->eps));
        json_object_set_new(c, "use_parallel_residual", json_boolean(s->variant));
        json_object_set_new(c, "hidden_act", json_string("gelu"));
        break;
    }
    json_object_set_new(c, "vocab_size", json_integer(V));
    json_object_set_new(c, "tie_word_embeddings", json_boolean(s->tied));
    char *text = json_dumps(c, JSON_INDENT(2));
    write_file(dir, "config.json", text);
    free(text);
    json_decref(c);
}

/* model.safetensors, or (shards > 1) that many shards and an index. */
static void write_weights(const ckpt_t *c, const char *dir, const char *dtype, int shards, const char *extra_buffer) {
    char p[512], fname[64];
    json_t *wm = json_object();
    for (int s = 0; s < shards; s++) {
        stw_t w = {0};
        for (int i = s; i < c->n; i += shards) {
            const hft_t *t = &c->t[i];
            if (t->cols) stw_add2(&w, t->name, dtype, (uint64_t)t->rows, (uint64_t)t->cols, t->data);
            else stw_add1(&w, t->name, dtype, (uint64_t)t->rows, t->data);
            if (shards > 1) {
                snprintf(fname, sizeof fname, "model-%05d-of-%05d.safetensors", s + 1, shards);
                json_object_set_new(wm, t->name, json_string(fname));
            }
        }
        if (extra_buffer && s == 0) {
            /* What transformers saves but recomputes: must be ignored. */
            const char *buf = extra_buffer;
            uint64_t dims[4] = {1, 1, 8, 8};
            if (strstr(buf, "attn.bias")) stw_add(&w, buf, "BOOL", 4, dims, NULL);
            else stw_add1(&w, buf, "F32", 4, NULL);
            if (shards > 1) json_object_set_new(wm, buf, json_string("model-00001-of-00002.safetensors"));
        }
        if (shards > 1) snprintf(p, sizeof p, "%s/%s", dir, fname);
        else snprintf(p, sizeof p, "%s/model.safetensors", dir);
        stw_write(&w, p);
        stw_free(&w);
    }
    if (shards > 1) {
        json_t *idx = json_pack("{s:{s:i}, s:o}", "metadata", "total_size", 0, "weight_map", wm);
        char *text = json_dumps(idx, JSON_INDENT(1));
        write_file(dir, "model.safetensors.index.json", text);
        free(text);
        json_decref(idx);
    } else {
        json_decref(wm);
    }
}

/* tokenizer.json for a byte-level BPE vocabulary (GPT-2's layout), from
 * the GGUF vocabulary's tokens and merges. */
static void write_tokenizer_json(const gguf_t *vg, const char *dir) {
    const gguf_str_t *toks, *merges;
    uint64_t nt, nm;
    TU_REQUIRE(gguf_get_str_arr(vg, "tokenizer.ggml.tokens", &toks, &nt, err, sizeof err) == 0, "tokens: %s", err);
    TU_REQUIRE(gguf_get_str_arr(vg, "tokenizer.ggml.merges", &merges, &nm, err, sizeof err) == 0, "merges: %s", err);
    json_t *vocab = json_object(), *mj = json_array(), *added = json_array();
    for (uint64_t i = 0; i < nt; i++) {
        char *s = strndup(toks[i].ptr, toks[i].len);
        json_object_set_new(vocab, s, json_integer((json_int_t)i));
        if (!strcmp(s, "<|endoftext|>"))
            json_array_append_new(added, json_pack("{s:I, s:s, s:b, s:b, s:b, s:b, s:b}", "id", (json_int_t)i,
                                                   "content", s, "single_word", 0, "lstrip", 0, "rstrip", 0,
                                                   "normalized", 1, "special", 1));
        free(s);
    }
    for (uint64_t i = 0; i < nm; i++) json_array_append_new(mj, json_stringn(merges[i].ptr, merges[i].len));
    json_t *bl = json_pack("{s:s, s:b, s:b, s:b}", "type", "ByteLevel", "add_prefix_space", 0, "trim_offsets", 1,
                           "use_regex", 1);
    json_t *tj = json_pack("{s:s, s:n, s:n, s:o, s:n, s:O, s:O, s:O, s:{s:s, s:n, s:n, s:s, s:s, s:b, s:b, s:o, s:o}}",
                           "version", "1.0", "truncation", "padding", "added_tokens", added, "normalizer",
                           "pre_tokenizer", bl, "post_processor", bl, "decoder", bl, "model", "type", "BPE",
                           "dropout", "unk_token", "continuing_subword_prefix", "", "end_of_word_suffix", "",
                           "fuse_unk", 0, "byte_fallback", 0, "vocab", vocab, "merges", mj);
    json_decref(bl);
    TU_REQUIRE(tj, "json_pack tokenizer.json");
    char p[512];
    snprintf(p, sizeof p, "%s/tokenizer.json", dir);
    TU_REQUIRE(json_dump_file(tj, p, JSON_COMPACT) == 0, "write %s", p);
    json_decref(tj);
}

/* ---- the GGUF, converted as convert_hf_to_gguf.py converts ------------- */

/* LlamaModel.permute: reshape(n_head, 2, rows/n_head/2, cols).swapaxes(1, 2). */
static float *llama_permute(const hft_t *t, int n_head) {
    int cols = t->cols ? t->cols : 1, per = t->rows / n_head / 2;
    float *out = malloc((size_t)t->rows * cols * sizeof *out);
    for (int h = 0; h < n_head; h++)
        for (int a = 0; a < 2; a++)
            for (int b = 0; b < per; b++) /* source (h, a, b) -> destination (h, b, a) */
                memcpy(out + (((size_t)h * per + b) * 2 + a) * cols, t->data + (((size_t)h * 2 + a) * per + b) * cols,
                       cols * sizeof *out);
    return out;
}

static float *transposed(const hft_t *t) {
    float *out = malloc((size_t)t->rows * t->cols * sizeof *out);
    for (int r = 0; r < t->rows; r++)
        for (int c = 0; c < t->cols; c++) out[(size_t)c * t->rows + r] = t->data[(size_t)r * t->cols + c];
    return out;
}

/* GPTNeoXModel.modify_tensors: reshape(n_head, 3, hd, cols), cat([:,0], [:,1], [:,2]). */
static float *neox_qkv(const hft_t *t, int n_head) {
    int cols = t->cols ? t->cols : 1, hd = t->rows / n_head / 3;
    float *out = malloc((size_t)t->rows * cols * sizeof *out);
    for (int j = 0; j < 3; j++)
        for (int h = 0; h < n_head; h++)
            memcpy(out + (((size_t)j * n_head + h) * hd) * cols, t->data + (((size_t)h * 3 + j) * hd) * cols,
                   (size_t)hd * cols * sizeof *out);
    return out;
}

/* LlamaModel.generate_extra_tensors (convert_hf_to_gguf.py), whose torch
 * float32 arithmetic rounds each step, Python numbers meeting a tensor
 * rounded to float32 first, and computes number / tensor as
 * tensor.reciprocal() * number:
 *   freqs = 1.0 / (base ** (torch.arange(0, dim, 2, dtype=torch.float32) / dim))
 *   wavelen = 2 * math.pi / freq
 *   wavelen < high_freq_wavelen: 1; > low_freq_wavelen: factor; else
 *   smooth = (old_context_len / wavelen - low_freq_factor) / (high_freq_factor - low_freq_factor)
 *   1 / ((1 - smooth) / factor + smooth) */
static float *llama3_factors(int dim, float base, double factor, double low, double high, double old_ctx) {
    float *out = malloc(sizeof *out * (size_t)(dim / 2));
    for (int i = 0; i < dim / 2; i++) {
        float e = (float)(2 * i) / (float)dim, freq = 1.0f / powf(base, e);
        float wavelen = (1.0f / freq) * (float)(2 * 3.141592653589793);
        if (wavelen < (float)(old_ctx / high)) out[i] = 1.0f;
        else if (wavelen > (float)(old_ctx / low)) out[i] = (float)factor;
        else {
            float smooth = ((1.0f / wavelen) * (float)old_ctx - (float)low) / (float)(high - low);
            out[i] = 1.0f / ((1.0f - smooth) / (float)factor + smooth);
        }
    }
    return out;
}

static void gw_tensor(gguf_writer_t *w, const char *name, const hft_t *t, const float *data, ggml_type_t type) {
    uint64_t ne[2] = {(uint64_t)(t->cols ? t->cols : t->rows), (uint64_t)t->rows};
    if (!t->cols) type = GGML_TYPE_F32; /* the converter keeps vectors in F32 */
    TU_REQUIRE(gguf_writer_add_tensor(w, name, type, t->cols ? 2 : 1, ne, data ? data : t->data, err, sizeof err) == 0,
               "add %s: %s", name, err);
}

static void gw_u32(gguf_writer_t *w, const char *arch, const char *key, uint32_t v) {
    char k[128];
    snprintf(k, sizeof k, "%s.%s", arch, key);
    TU_REQUIRE(gguf_writer_add_u32(w, k, v, err, sizeof err) == 0, "%s: %s", k, err);
}

static void gw_f32(gguf_writer_t *w, const char *arch, const char *key, float v) {
    char k[128];
    snprintf(k, sizeof k, "%s.%s", arch, key);
    TU_REQUIRE(gguf_writer_add_f32(w, k, v, err, sizeof err) == 0, "%s: %s", k, err);
}

/* Maps an HF name of layer l ("model.layers.3.mlp.up_proj.weight") to its
 * suffix after the layer number; -1 when it is not a layer tensor. */
static int layer_of(const char *name, const char *prefix, const char **rest) {
    size_t n = strlen(prefix);
    if (strncmp(name, prefix, n)) return -1;
    char *end;
    long l = strtol(name + n, &end, 10);
    if (end == name + n || *end != '.') return -1;
    *rest = end + 1;
    return (int)l;
}

static gguf_writer_t *make_gguf(const spec_t *s, const ckpt_t *c, const gguf_t *vg, ggml_type_t type) {
    gguf_writer_t *w = gguf_writer_new(err, sizeof err);
    TU_REQUIRE(w, "%s", err);
    static const char *const names[] = {[A_LLAMA] = "llama", [A_QWEN2] = "qwen2", [A_GPT2] = "gpt2",
                                         [A_GPTNEOX] = "gptneox", [A_QWEN3] = "qwen3", [A_OLMO2] = "olmo2",
                                         [A_PHI3] = "phi3", [A_GEMMA2] = "gemma2"};
    const char *arch = names[s->arch];
    int hd = head_dim_of(s);
    TU_REQUIRE(gguf_writer_add_str(w, "general.architecture", arch, SIZE_MAX, err, sizeof err) == 0, "%s", err);
    gw_u32(w, arch, "context_length", (uint32_t)s->ctx);
    gw_u32(w, arch, "embedding_length", (uint32_t)s->d);
    gw_u32(w, arch, "block_count", (uint32_t)s->n_layer);
    gw_u32(w, arch, "feed_forward_length", (uint32_t)s->ff);
    gw_u32(w, arch, "attention.head_count", (uint32_t)s->n_head);
    if (llama_like(s)) {
        gw_u32(w, arch, "attention.head_count_kv", (uint32_t)s->n_head_kv);
        gw_f32(w, arch, "rope.freq_base", s->rope_theta);
        gw_f32(w, arch, "attention.layer_norm_rms_epsilon", s->eps);
        gw_u32(w, arch, "rope.dimension_count", (uint32_t)hd);
        if (s->head_dim) {
            gw_u32(w, arch, "attention.key_length", (uint32_t)hd);
            gw_u32(w, arch, "attention.value_length", (uint32_t)hd);
        }
        if (s->llama3) {
            hft_t f = {"rope_freqs.weight", hd / 2, 0, NULL};
            float *ff = llama3_factors(hd, s->rope_theta, 32.0, 1.0, 4.0, 8192.0);
            gw_tensor(w, f.name, &f, ff, GGML_TYPE_F32);
            free(ff);
        }
    } else {
        gw_f32(w, arch, "attention.layer_norm_epsilon", s->eps);
    }
    if (s->arch == A_GEMMA2) { /* as Gemma2Model.set_gguf_parameters */
        gw_f32(w, arch, "attn_logit_softcapping", (float)GEMMA2_ATTN_CAP);
        gw_f32(w, arch, "final_logit_softcapping", (float)GEMMA2_FINAL_CAP);
        gw_u32(w, arch, "attention.sliding_window", GEMMA2_WINDOW);
    }
    if (s->arch == A_GPTNEOX) {
        gw_u32(w, arch, "rope.dimension_count", (uint32_t)(s->rotary_pct * hd));
        gw_f32(w, arch, "rope.freq_base", s->rope_theta);
        char k[128];
        snprintf(k, sizeof k, "%s.use_parallel_residual", arch);
        TU_REQUIRE(gguf_writer_add_bool(w, k, s->variant, err, sizeof err) == 0, "%s", err);
    }
    for (uint64_t i = 0; i < gguf_n_kv(vg); i++) {
        const gguf_kv_t *kv = gguf_kv_at(vg, i);
        if (kv->key.len > 10 && !memcmp(kv->key.ptr, "tokenizer.", 10))
            TU_REQUIRE(gguf_writer_copy_kv(w, kv, err, sizeof err) == 0, "copy kv: %s", err);
    }

    char g[128];
    for (int i = 0; i < c->n; i++) {
        const hft_t *t = &c->t[i];
        const char *r = "";
        float *conv = NULL;
        int l = -1;
        g[0] = 0;
        if (llama_like(s)) {
            static const char *const map[][2] = {
                {"self_attn.q_norm.weight", "attn_q_norm.weight"}, {"self_attn.k_norm.weight", "attn_k_norm.weight"},
                {"post_feedforward_layernorm.weight", "post_ffw_norm.weight"},
                {"self_attn.qkv_proj.weight", "attn_qkv.weight"}, {"mlp.gate_up_proj.weight", "ffn_up.weight"},
                {"input_layernorm.weight", "attn_norm.weight"}, {"self_attn.q_proj.weight", "attn_q.weight"},
                {"self_attn.k_proj.weight", "attn_k.weight"},   {"self_attn.v_proj.weight", "attn_v.weight"},
                {"self_attn.q_proj.bias", "attn_q.bias"},       {"self_attn.k_proj.bias", "attn_k.bias"},
                {"self_attn.v_proj.bias", "attn_v.bias"},       {"self_attn.o_proj.weight", "attn_output.weight"},
                {"self_attn.o_proj.bias", "attn_output.bias"},
                {"post_attention_layernorm.weight", "ffn_norm.weight"}, {"mlp.gate_proj.weight", "ffn_gate.weight"},
                {"mlp.up_proj.weight", "ffn_up.weight"},        {"mlp.down_proj.weight", "ffn_down.weight"},
                {"mlp.gate_proj.bias", "ffn_gate.bias"},        {"mlp.up_proj.bias", "ffn_up.bias"},
                {"mlp.down_proj.bias", "ffn_down.bias"}};
            if (!strcmp(t->name, "model.embed_tokens.weight")) snprintf(g, sizeof g, "token_embd.weight");
            else if (!strcmp(t->name, "model.norm.weight")) snprintf(g, sizeof g, "output_norm.weight");
            else if (!strcmp(t->name, "lm_head.weight")) snprintf(g, sizeof g, "output.weight");
            else if ((l = layer_of(t->name, "model.layers.", &r)) >= 0)
                for (size_t k = 0; k < sizeof map / sizeof *map; k++)
                    if (!strcmp(r, map[k][0])) snprintf(g, sizeof g, "blk.%d.%s", l, map[k][1]);
            /* Olmo2Model: post_attention_layernorm is the attention output's norm */
            if ((s->arch == A_OLMO2 || s->arch == A_GEMMA2) && l >= 0 && !strcmp(r, "post_attention_layernorm.weight"))
                snprintf(g, sizeof g, "blk.%d.post_attention_norm.weight", l);
            if (s->arch == A_GEMMA2 && l >= 0 && !strcmp(r, "pre_feedforward_layernorm.weight"))
                snprintf(g, sizeof g, "blk.%d.ffn_norm.weight", l);
            /* Gemma2Model.modify_tensors: "norm.weight" + 1, in float32 */
            size_t nl = strlen(t->name);
            if (s->arch == A_GEMMA2 && nl > 11 && !strcmp(t->name + nl - 11, "norm.weight")) {
                conv = malloc((size_t)t->rows * sizeof *conv);
                for (int k = 0; k < t->rows; k++) conv[k] = t->data[k] + 1.0f;
            }
            if (s->arch == A_LLAMA && strstr(t->name, "q_proj")) conv = llama_permute(t, s->n_head);
            if (s->arch == A_LLAMA && strstr(t->name, "k_proj")) conv = llama_permute(t, s->n_head_kv);
        } else if (s->arch == A_GPT2) {
            static const char *const map[][2] = {
                {"ln_1.weight", "attn_norm.weight"},  {"ln_1.bias", "attn_norm.bias"},
                {"attn.c_attn.weight", "attn_qkv.weight"}, {"attn.c_attn.bias", "attn_qkv.bias"},
                {"attn.c_proj.weight", "attn_output.weight"}, {"attn.c_proj.bias", "attn_output.bias"},
                {"ln_2.weight", "ffn_norm.weight"},   {"ln_2.bias", "ffn_norm.bias"},
                {"mlp.c_fc.weight", "ffn_up.weight"}, {"mlp.c_fc.bias", "ffn_up.bias"},
                {"mlp.c_proj.weight", "ffn_down.weight"}, {"mlp.c_proj.bias", "ffn_down.bias"}};
            const char *nm = strncmp(t->name, "transformer.", 12) ? t->name : t->name + 12;
            if (!strcmp(nm, "lm_head.weight")) continue; /* tied: the converter's output is wte */
            if (!strcmp(nm, "wte.weight")) snprintf(g, sizeof g, "token_embd.weight");
            else if (!strcmp(nm, "wpe.weight")) snprintf(g, sizeof g, "position_embd.weight");
            else if (!strcmp(nm, "ln_f.weight")) snprintf(g, sizeof g, "output_norm.weight");
            else if (!strcmp(nm, "ln_f.bias")) snprintf(g, sizeof g, "output_norm.bias");
            else if ((l = layer_of(nm, "h.", &r)) >= 0)
                for (size_t k = 0; k < sizeof map / sizeof *map; k++)
                    if (!strcmp(r, map[k][0])) snprintf(g, sizeof g, "blk.%d.%s", l, map[k][1]);
            static const char *const conv1d[] = {".c_attn.weight", ".c_proj.weight", ".c_fc.weight"};
            for (size_t k = 0; k < 3; k++) {
                size_t a = strlen(t->name), b = strlen(conv1d[k]);
                if (a > b && !strcmp(t->name + a - b, conv1d[k])) conv = transposed(t);
            }
        } else {
            static const char *const map[][2] = {
                {"input_layernorm.weight", "attn_norm.weight"}, {"input_layernorm.bias", "attn_norm.bias"},
                {"attention.query_key_value.weight", "attn_qkv.weight"},
                {"attention.query_key_value.bias", "attn_qkv.bias"},
                {"attention.dense.weight", "attn_output.weight"}, {"attention.dense.bias", "attn_output.bias"},
                {"post_attention_layernorm.weight", "ffn_norm.weight"},
                {"post_attention_layernorm.bias", "ffn_norm.bias"},
                {"mlp.dense_h_to_4h.weight", "ffn_up.weight"}, {"mlp.dense_h_to_4h.bias", "ffn_up.bias"},
                {"mlp.dense_4h_to_h.weight", "ffn_down.weight"}, {"mlp.dense_4h_to_h.bias", "ffn_down.bias"}};
            if (!strcmp(t->name, "gpt_neox.embed_in.weight")) snprintf(g, sizeof g, "token_embd.weight");
            else if (!strcmp(t->name, "gpt_neox.final_layer_norm.weight")) snprintf(g, sizeof g, "output_norm.weight");
            else if (!strcmp(t->name, "gpt_neox.final_layer_norm.bias")) snprintf(g, sizeof g, "output_norm.bias");
            else if (!strcmp(t->name, "embed_out.weight")) snprintf(g, sizeof g, "output.weight");
            else if ((l = layer_of(t->name, "gpt_neox.layers.", &r)) >= 0)
                for (size_t k = 0; k < sizeof map / sizeof *map; k++)
                    if (!strcmp(r, map[k][0])) snprintf(g, sizeof g, "blk.%d.%s", l, map[k][1]);
            if (strstr(t->name, "query_key_value")) conv = neox_qkv(t, s->n_head);
        }
        TU_REQUIRE(g[0], "test bug: no GGUF name for %s", t->name);
        hft_t shape = *t;
        if (conv && s->arch == A_GPT2) shape.rows = t->cols, shape.cols = t->rows; /* transposed */
        gw_tensor(w, g, &shape, conv, type);
        free(conv);
    }
    return w;
}

/* ---- comparing the two ------------------------------------------------------ */

static const char *g_text =
    "The quick brown fox jumps over the lazy dog. In 1889, the Eiffel Tower opened in Paris; it was 300 metres "
    "tall and, for four decades, the tallest structure in the world. \"Why?\" she asked -- nobody knew.\n"
    "    def f(x): return x ** 2  # naive\n";

static experiment_row_t *score(const model_t *m, const int32_t *ids, int n, int window) {
    experiment_t *e = experiment_new(m, window, window, NULL, err, sizeof err);
    TU_REQUIRE(e, "experiment_new: %s", err);
    experiment_row_t *rows = calloc((size_t)n, sizeof *rows);
    long r = experiment_score(e, ids, n, window / 2, rows, err, sizeof err);
    TU_REQUIRE(r == n - 1, "score: %s", err);
    experiment_destroy(&e);
    return rows;
}

static void mkdir_tmp(char *dir) {
    TU_REQUIRE(mkdtemp(dir), "mkdtemp");
}

static void rm_dir(const char *dir) {
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0) fprintf(stderr, "warning: could not remove %s\n", dir);
}

/* Runs the tokshift command on the text with --model path; its stdout
 * (malloc'd) or NULL when TOKSHIFT_BIN is unset. */
static char *run_score(const char *path) {
    const char *bin = getenv("TOKSHIFT_BIN");
    if (!bin || !*bin) return NULL;
    char txt[] = "/tmp/tokshift_hftext_XXXXXX", cmd[1400];
    int fd = mkstemp(txt);
    TU_REQUIRE(fd >= 0 && write(fd, g_text, strlen(g_text)) == (ssize_t)strlen(g_text) && close(fd) == 0, "text file");
    snprintf(cmd, sizeof cmd, "'%s' score --model '%s' < '%s'", bin, path, txt);
    FILE *p = popen(cmd, "r");
    TU_REQUIRE(p, "popen %s", cmd);
    size_t cap = 1 << 16, len = 0;
    char *out = malloc(cap);
    for (size_t k; (k = fread(out + len, 1, cap - len - 1, p)) > 0;)
        if ((len += k) + 1 == cap) out = realloc(out, cap *= 2);
    out[len] = 0;
    TU_CHECK(pclose(p) == 0, "%s failed", cmd);
    unlink(txt);
    return out;
}

/* Writes spec s both ways (type F32, F16 or BF16; shards >= 1) and compares;
 * with cli, also the output of `tokshift score` on both. */
static void check_equivalent(const spec_t *s, const gguf_t *vg, ggml_type_t type, int shards, int cli) {
    const char *dtype = type == GGML_TYPE_BF16 ? "BF16" : type == GGML_TYPE_F16 ? "F16" : "F32";
    ckpt_t *c = calloc(1, sizeof *c);
    make_ckpt(s, c);
    if (type != GGML_TYPE_F32) ck_round(c, type);

    char dir[] = "/tmp/tokshift_hfdir_XXXXXX", gpath[600];
    mkdir_tmp(dir);
    write_config(s, dir);
    write_weights(c, dir, dtype, shards,
                  s->arch == A_GPT2 ? (s->variant ? "transformer.h.0.attn.bias" : "h.0.attn.bias")
                  : s->arch == A_GPTNEOX ? "gpt_neox.layers.0.attention.rotary_emb.inv_freq" : NULL);
    write_tokenizer_json(vg, dir);
    gguf_writer_t *w = make_gguf(s, c, vg, type);
    snprintf(gpath, sizeof gpath, "%s.gguf", dir); /* beside the directory, not in it */
    TU_REQUIRE(gguf_writer_write(w, gpath, err, sizeof err) == 0, "%s", err);
    gguf_writer_destroy(&w);
    ck_free(c);
    free(c);

    if (cli) {
        char *og = run_score(gpath), *oh = run_score(dir);
        if (!og) fprintf(stderr, "TOKSHIFT_BIN is unset: not comparing the command's output\n");
        else TU_CHECK(strlen(og) > 1000 && !strcmp(og, oh), "%s: tokshift score differs between the GGUF and the directory", s->label);
        free(og);
        free(oh);
    }
    model_t *mg = loader_load(gpath, err, sizeof err);
    TU_REQUIRE(mg, "%s GGUF: %s", s->label, err);
    unlink(gpath);
    model_t *mh = loader_load(dir, err, sizeof err);
    TU_REQUIRE(mh, "%s HF %s: %s", s->label, dtype, err);

    char dg[256], dh[256];
    model_describe(mg, dg, sizeof dg);
    model_describe(mh, dh, sizeof dh);
    TU_CHECK(!strcmp(dg, dh), "%s: descriptions differ:\n  GGUF %s\n  HF   %s", s->label, dg, dh);
    const model_config_t *a = &mg->cfg, *b = &mh->cfg;
    TU_CHECK(a->head_dim == b->head_dim && (mg->rope_freqs != NULL) == (mh->rope_freqs != NULL) &&
                 (!mg->rope_freqs || !memcmp(mg->rope_freqs, mh->rope_freqs, sizeof(float) * (size_t)a->rope_dim / 2)),
             "%s: head size or RoPE frequency factors differ", s->label);
    TU_CHECK(a->arch == b->arch && a->norm == b->norm && a->rope == b->rope && a->act == b->act &&
                 a->parallel_residual == b->parallel_residual && a->rope_dim == b->rope_dim &&
                 a->norm_eps == b->norm_eps && a->rope_base == b->rope_base && a->n_ctx_train == b->n_ctx_train &&
                 a->embd_scale == b->embd_scale && a->query_scale_dim == b->query_scale_dim &&
                 a->attn_softcap == b->attn_softcap && a->final_softcap == b->final_softcap &&
                 a->swa_window == b->swa_window && a->swa_period == b->swa_period,
             "%s: configurations differ", s->label);
    TU_CHECK((mg->output.data == mg->tok_embd.data) == (mh->output.data == mh->tok_embd.data), "%s: tying differs", s->label);

    /* The same text through both tokenizers, then the same ids through both. */
    int32_t *ig = NULL, *ih = NULL;
    long ng = tokenizer_encode(mg->tok, g_text, strlen(g_text), 0, &ig, err, sizeof err);
    long nh = tokenizer_encode(mh->tok, g_text, strlen(g_text), 0, &ih, err, sizeof err);
    TU_REQUIRE(ng > 40 && ng == nh, "%s: %ld vs %ld tokens", s->label, ng, nh);
    TU_CHECK(!memcmp(ig, ih, (size_t)ng * sizeof *ig), "%s: tokenizer.json and GGUF tokenize differently", s->label);
    int n = (int)(ng < s->ctx ? ng : s->ctx), window = n * 2 / 3;
    experiment_row_t *rg = score(mg, ig, n, window), *rh = score(mh, ig, n, window);
    double dl = 0, de = 0, dt = 0;
    int ranks = 0;
    for (int i = 0; i < n - 1; i++) {
        dl = fmax(dl, fabs(rg[i].st.logprob - rh[i].st.logprob));
        de = fmax(de, fabs(rg[i].st.entropy - rh[i].st.entropy));
        dt = fmax(dt, fabs(rg[i].st.top1_logprob - rh[i].st.top1_logprob));
        ranks += rg[i].st.rank != rh[i].st.rank || rg[i].st.context_len != rh[i].st.context_len;
    }
    double ent = 0;
    for (int i = 0; i < n - 1; i++) ent += rg[i].st.entropy / (n - 1);
    fprintf(stderr, "%-31s %-4s %d shard(s): %d tokens, mean entropy %.3f nats; max |dlogprob| %.3g, |dentropy| %.3g, "
                    "|dtop1| %.3g, %d rank/context differences\n",
            s->label, dtype, shards, n - 1, ent, dl, de, dt, ranks);
    /* The same weights, in the same types, through the same code and shapes:
     * the same bits, so no tolerance (the command's output is compared byte
     * for byte above too). */
    TU_CHECK(dl == 0 && de == 0 && dt == 0 && ranks == 0, "%s %s: HF and GGUF statistics differ", s->label,
             dtype);
    TU_CHECK(ent > 0.5 && ent < 9.5, "%s: the random model is degenerate (mean entropy %.3f)", s->label, ent);
    free(rg);
    free(rh);
    free(ig);
    free(ih);
    model_destroy(&mg);
    model_destroy(&mh);
    rm_dir(dir);
}

/* transformers' apply_rotary_pos_emb on one head in the HF layout (rotate
 * half: dimension i pairs with i + hd/2), permuted, equals kern_rope on the
 * permuted head. */
static void test_rotate_half(void) {
    enum { HD = 16 };
    float theta = 50000.0f;
    for (int pos = 0; pos < 40; pos += 13) {
        float q[HD], hf[HD], perm[HD];
        for (int i = 0; i < HD; i++) q[i] = urand();
        for (int i = 0; i < HD / 2; i++) {
            double f = pos * pow(theta, -2.0 * i / HD);
            float c = (float)cos(f), s = (float)sin(f);
            hf[i] = q[i] * c - q[i + HD / 2] * s;
            hf[i + HD / 2] = q[i + HD / 2] * c + q[i] * s;
        }
        hft_t t = {.rows = HD, .cols = 0, .data = q};
        float *pq = llama_permute(&t, 1);
        kern_rope(pq, 1, HD, HD, pos, theta);
        t.data = hf;
        float *phf = llama_permute(&t, 1);
        memcpy(perm, phf, sizeof perm);
        double worst = 0;
        for (int i = 0; i < HD; i++) worst = fmax(worst, fabs((double)perm[i] - pq[i]));
        /* The same c and s; a c - b s rounds twice in each (gamma_2 of |a c| +
         * |b s| <= 2 for |q| < 1), and the two may differ by both. */
        TU_CHECK(worst <= 2 * 2 * (2 * 0x1p-24 / (1 - 2 * 0x1p-24)), "pos %d: rotate-half vs permuted interleaved RoPE differ by %g", pos, worst);
        free(pq);
        free(phf);
    }
}

/* ---- malformed directories ------------------------------------------------- */

static void expect_fail(const char *dir, const char *want, const char *what) {
    model_t *m = loader_load(dir, err, sizeof err);
    TU_CHECK(!m && strstr(err, want), "%s: got '%s', want '%s'", what, m ? "(loaded)" : err, want);
    model_destroy(&m);
}

/* Writes checkpoint c less tensor `name` into dir (F32, one file) and
 * expects the load to be refused with want. */
static void expect_fail_without(const char *dir, const ckpt_t *c, const char *name, const char *want,
                                const char *what) {
    ckpt_t *less = calloc(1, sizeof *less);
    TU_REQUIRE(less, "out of memory");
    for (int i = 0; i < c->n; i++)
        if (strcmp(c->t[i].name, name)) less->t[less->n++] = c->t[i];
    write_weights(less, dir, "F32", 1, NULL);
    expect_fail(dir, want, what);
    free(less);
}

static void set_config(const char *dir, const spec_t *s, const char *key, json_t *val) {
    char p[600];
    write_config(s, dir);
    snprintf(p, sizeof p, "%s/config.json", dir);
    json_t *c = json_load_file(p, 0, NULL);
    if (val) json_object_set_new(c, key, val);
    else json_object_del(c, key);
    json_dump_file(c, p, 0);
    json_decref(c);
}

static void test_malformed(void) {
    spec_t s = {"llama (malformed)", A_LLAMA, 32, 1, 4, 2, 48, 64, 0, 0, 0, 10000.0f, 1e-5f, 0, 0};
    int saved_v = V;
    V = 300; /* nothing here gets as far as the tokenizer */
    char dir[] = "/tmp/tokshift_hfbad_XXXXXX", p[600];
    mkdir_tmp(dir);
    ckpt_t *c = calloc(1, sizeof *c);
    make_ckpt(&s, c);

    expect_fail(dir, "config.json", "no config.json");
    write_file(dir, "config.json", "{\"model_type\": \"llama\",");
    expect_fail(dir, "not valid JSON", "config.json not JSON");
    write_file(dir, "config.json", "[1]");
    expect_fail(dir, "expected a JSON object", "config.json an array");
    set_config(dir, &s, "model_type", json_string("bert"));
    expect_fail(dir, "model_type 'bert' is not supported", "unknown model_type");
    set_config(dir, &s, "model_type", NULL);
    expect_fail(dir, "'model_type' is missing", "no model_type");
    write_config(&s, dir);
    expect_fail(dir, "neither model.safetensors", "no weights");

    write_weights(c, dir, "F32", 1, NULL);
    set_config(dir, &s, "hidden_size", json_string("32"));
    expect_fail(dir, "'hidden_size' must be an integer", "hidden_size a string");
    set_config(dir, &s, "num_hidden_layers", NULL);
    expect_fail(dir, "'num_hidden_layers' is missing", "no layer count");
    set_config(dir, &s, "num_key_value_heads", json_integer(3));
    expect_fail(dir, "num_key_value_heads 3", "kv heads do not divide");
    set_config(dir, &s, "rope_scaling", json_pack("{s:s, s:f}", "type", "linear", "factor", 2.0));
    expect_fail(dir, "rope_scaling type 'linear' is not supported", "rope_scaling");
    set_config(dir, &s, "rope_scaling", json_pack("{s:s, s:f, s:f}", "rope_type", "llama3", "low_freq_factor", 4.0,
                                                  "high_freq_factor", 1.0));
    expect_fail(dir, "high_freq_factor 1 must exceed low_freq_factor 4", "llama3 rope_scaling factors");
    set_config(dir, &s, "rms_norm_eps", json_real(-1));
    expect_fail(dir, "'rms_norm_eps' = -1 is out of range", "negative eps");
    set_config(dir, &s, "vocab_size", json_integer(301));
    expect_fail(dir, "vocab_size 301 does not match", "vocab_size");
    set_config(dir, &s, "hidden_act", json_string("relu"));
    expect_fail(dir, "'hidden_act' = relu is not supported", "hidden_act");
    set_config(dir, &s, "head_dim", json_integer(16)); /* llama takes it: the shapes must follow */
    expect_fail(dir, "q_proj.weight' has shape [32, 32], expected [64, 32]", "head_dim");
    set_config(dir, &s, "intermediate_size", json_integer(50));
    expect_fail(dir, "has shape [48, 32], expected [50, 32]", "wrong ff size");
    set_config(dir, &s, "tie_word_embeddings", json_false());

    /* Tensors: one missing, one extra, one of a dtype that does not convert. */
    expect_fail_without(dir, c, "model.layers.0.mlp.up_proj.weight",
                        "tensor 'model.layers.0.mlp.up_proj.weight' is missing", "missing tensor");
    expect_fail_without(dir, c, "lm_head.weight", "'lm_head.weight' is missing and tie_word_embeddings is false",
                        "untied without lm_head");
    ckpt_t *bad = calloc(1, sizeof *bad);
    TU_REQUIRE(bad, "out of memory");
    for (int i = 0; i < c->n; i++) bad->t[bad->n++] = c->t[i];
    hft_t extra = {"model.layers.0.self_attn.rotary_scale.weight", 4, 0, c->t[1].data};
    bad->t[bad->n++] = extra;
    write_weights(bad, dir, "F32", 1, NULL);
    expect_fail(dir, "'model.layers.0.self_attn.rotary_scale.weight' is not used", "extra tensor");
    free(bad);

    stw_t w = {0};
    for (int i = 0; i < c->n; i++) {
        const hft_t *t = &c->t[i];
        const char *dt = !strcmp(t->name, "model.norm.weight") ? "I32" : "F32";
        if (t->cols) stw_add2(&w, t->name, dt, (uint64_t)t->rows, (uint64_t)t->cols, t->data);
        else stw_add1(&w, t->name, dt, (uint64_t)t->rows, t->data);
    }
    snprintf(p, sizeof p, "%s/model.safetensors", dir);
    stw_write(&w, p);
    stw_free(&w);
    expect_fail(dir, "'model.norm.weight' has dtype I32", "I32 weight");

    /* A corrupt safetensors file is reported by the reader. */
    stw_write_bytes(p, "\xff\xff\0\0\0\0\0\0{}", 10);
    expect_fail(dir, "runs past the end of the file", "corrupt safetensors");

    ck_free(c);
    free(c);

    /* gpt2 and gpt_neox options that change the computation. */
    spec_t g2 = {"gpt2 (malformed)", A_GPT2, 32, 1, 2, 2, 128, 32, 1, 0, 0, 10000.0f, 1e-5f, 0, 0};
    spec_t nx = {"gptneox (malformed)", A_GPTNEOX, 32, 1, 4, 4, 128, 64, 0, 1, 0.25f, 10000.0f, 1e-5f, 0, 0};
    c = calloc(1, sizeof *c);
    make_ckpt(&g2, c);
    write_weights(c, dir, "F32", 1, NULL);
    set_config(dir, &g2, "scale_attn_by_inverse_layer_idx", json_true());
    expect_fail(dir, "'scale_attn_by_inverse_layer_idx' is set", "gpt2 inverse layer scaling");
    set_config(dir, &g2, "activation_function", json_string("relu"));
    expect_fail(dir, "'activation_function' = relu is not supported", "gpt2 activation");
    set_config(dir, &g2, "n_positions", json_integer(40));
    expect_fail(dir, "'wpe.weight' has shape [32, 32], expected [40, 32]", "gpt2 n_positions");
    set_config(dir, &g2, "head_dim", json_integer(8));
    expect_fail(dir, "head_dim is not hidden_size / num_attention_heads = 32 / 2", "gpt2 head_dim");

    ck_free(c);
    make_ckpt(&nx, c);
    write_weights(c, dir, "F32", 1, NULL);
    set_config(dir, &nx, "rotary_pct", json_real(0.1));
    expect_fail(dir, "rotary_pct 0.1 gives 0 rotary dimensions", "gptneox rotary_pct");
    set_config(dir, &nx, "use_parallel_residual", json_string("yes"));
    expect_fail(dir, "'use_parallel_residual' must be true or false", "gptneox use_parallel_residual");
    set_config(dir, &nx, "rope_scaling", json_pack("{s:s}", "rope_type", "llama3"));
    expect_fail(dir, "rope_scaling type 'llama3' is not supported (supported: default)", "gptneox llama3 rope");
    ck_free(c);
    /* Phi-3 stores Q/K/V only fused: without qkv_proj it has no attention. */
    spec_t ph = {"phi3 (malformed)", A_PHI3, 32, 1, 4, 2, 48, 64, 0, 0, 0, 10000.0f, 1e-5f, 0, 0};
    make_ckpt(&ph, c);
    write_config(&ph, dir);
    expect_fail_without(dir, c, "model.layers.0.self_attn.qkv_proj.weight",
                        "tensor 'model.layers.0.self_attn.qkv_proj.weight' is missing", "phi3 without qkv_proj");
    ck_free(c);
    /* Gemma 2: each norm is required; the output is tied; the sliding
     * layers are the even ones. */
    spec_t gm = {"gemma2 (malformed)", A_GEMMA2, 32, 2, 4, 2, 48, 64, 1, 0, 0, 10000.0f, 1e-6f, 16, 0};
    make_ckpt(&gm, c);
    write_config(&gm, dir);
    expect_fail_without(dir, c, "model.layers.1.post_feedforward_layernorm.weight",
                        "tensor 'model.layers.1.post_feedforward_layernorm.weight' is missing",
                        "gemma2 without post_feedforward_layernorm");
    write_weights(c, dir, "F32", 1, NULL);
    set_config(dir, &gm, "tie_word_embeddings", json_false());
    expect_fail(dir, "gemma2 with tie_word_embeddings false is not supported", "gemma2 untied");
    set_config(dir, &gm, "layer_types", json_pack("[s, s]", "full_attention", "sliding_attention"));
    expect_fail(dir, "layer_types[0] is full_attention", "gemma2 odd sliding layers");
    set_config(dir, &gm, "attn_logit_softcapping", json_null());
    expect_fail(dir, "'attn_logit_softcapping' is null", "gemma2 without attention soft-capping");
    set_config(dir, &gm, "hidden_activation", json_string("silu"));
    expect_fail(dir, "'hidden_activation' = silu is not supported", "gemma2 silu");
    ck_free(c);
    free(c);
    rm_dir(dir);
    V = saved_v;
}

/* tokenizer_config.json: add_bos_token and the BOS/EOS tokens reach the
 * tokenizer; a malformed one is an error naming it. */
static void test_tokenizer_config(const gguf_t *vg) {
    spec_t s = {"gpt2 (tokenizer_config)", A_GPT2, 32, 1, 2, 2, 128, 32, 1, 0, 0, 10000.0f, 1e-5f, 0, 0};
    char dir[] = "/tmp/tokshift_hftok_XXXXXX", p[600];
    mkdir_tmp(dir);
    ckpt_t *c = calloc(1, sizeof *c);
    make_ckpt(&s, c);
    write_config(&s, dir);
    write_weights(c, dir, "F32", 1, NULL);
    ck_free(c);
    free(c);
    snprintf(p, sizeof p, "%s/tokenizer.json", dir);
    expect_fail(dir, "tokenizer.json", "no tokenizer.json");
    write_tokenizer_json(vg, dir);

    model_t *m = loader_load(dir, err, sizeof err);
    TU_REQUIRE(m, "%s", err);
    int plain = tokenizer_adds_bos(m->tok);
    model_destroy(&m);
    write_file(dir, "tokenizer_config.json",
               "{\"add_bos_token\": true, \"bos_token\": {\"__type\": \"AddedToken\", \"content\": \"<|endoftext|>\"},"
               " \"eos_token\": \"<|endoftext|>\", \"model_max_length\": 1024}");
    m = loader_load(dir, err, sizeof err);
    TU_CHECK(m && tokenizer_adds_bos(m->tok) && tokenizer_bos(m->tok) == 50256 && tokenizer_eos(m->tok) == 50256,
             "add_bos_token true: %s", m ? "BOS not added" : err);
    model_destroy(&m);
    write_file(dir, "tokenizer_config.json", "{\"add_bos_token\": false, \"bos_token\": null}");
    m = loader_load(dir, err, sizeof err);
    TU_CHECK(m && !tokenizer_adds_bos(m->tok), "add_bos_token false: %s", m ? "BOS added" : err);
    model_destroy(&m);
    fprintf(stderr, "tokenizer_config.json: BOS added without it: %d; with add_bos_token true: 1; false: 0\n", plain);
    write_file(dir, "tokenizer_config.json", "{\"add_bos_token\": \"yes\"}");
    expect_fail(dir, "tokenizer_config.json: 'add_bos_token' must be true or false", "add_bos_token a string");
    write_file(dir, "tokenizer_config.json", "{\"eos_token\": 5}");
    expect_fail(dir, "tokenizer_config.json: 'eos_token' must be a string", "eos_token a number");
    write_file(dir, "tokenizer_config.json", "{\"eos_token\": ");
    expect_fail(dir, "tokenizer_config.json: not valid JSON", "tokenizer_config.json not JSON");
    rm_dir(dir);
}

int main(void) {
    const char *env = getenv("TOKSHIFT_TEST_SEED");
    uint64_t seed = env ? strtoull(env, NULL, 10) : (uint64_t)time(NULL) ^ ((uint64_t)getpid() << 20);
    fprintf(stderr, "seed %llu (set TOKSHIFT_TEST_SEED to replay)\n", (unsigned long long)seed);
    rng_state = seed;

    test_rotate_half();

    gguf_t *vg = gguf_open(tu_testdata("vocab/ggml-vocab-gpt-2.gguf"), err, sizeof err);
    TU_REQUIRE(vg, "%s", err);
    const gguf_str_t *toks;
    uint64_t nt;
    TU_REQUIRE(gguf_get_str_arr(vg, "tokenizer.ggml.tokens", &toks, &nt, err, sizeof err) == 0, "%s", err);
    V = (int)nt;
    test_malformed();

    static const spec_t specs[] = {
        /* label                      arch      d  L  H kv   ff  ctx tied par/bias pct theta eps */
        {"llama (GQA, untied)", A_LLAMA, 64, 3, 8, 2, 96, 256, 0, 0, 0, 50000.0f, 1e-5f, 0, 0},
        {"llama (biases, tied, MHA)", A_LLAMA, 64, 2, 4, 4, 128, 256, 1, 1, 0, 10000.0f, 1e-6f, 0, 0},
        {"qwen2 (GQA, tied)", A_QWEN2, 64, 2, 4, 2, 128, 256, 1, 0, 0, 1000000.0f, 1e-6f, 0, 0},
        {"gpt2", A_GPT2, 64, 2, 4, 4, 256, 96, 1, 0, 0, 10000.0f, 1e-5f, 0, 0},
        {"gpt2 (transformer., lm_head)", A_GPT2, 64, 1, 2, 2, 128, 64, 1, 1, 0, 10000.0f, 1e-5f, 0, 0},
        {"gptneox (partial rotary)", A_GPTNEOX, 64, 2, 4, 4, 256, 256, 0, 1, 0.25f, 10000.0f, 1e-5f, 0, 0},
        {"gptneox (serial residual)", A_GPTNEOX, 64, 2, 4, 4, 256, 256, 0, 0, 0.5f, 10000.0f, 1e-5f, 0, 0},
        {"qwen3 (q/k norms, head_dim, tied)", A_QWEN3, 64, 2, 4, 2, 128, 256, 1, 0, 0, 1000000.0f, 1e-6f, 32, 0},
        {"olmo2 (post-norms, q/k norms)", A_OLMO2, 64, 2, 4, 2, 128, 256, 0, 0, 0, 500000.0f, 1e-6f, 0, 0},
        {"phi3 (fused QKV, gate-up)", A_PHI3, 64, 2, 4, 2, 128, 256, 0, 0, 0, 10000.0f, 1e-5f, 0, 0},
        {"llama 3 (head_dim, llama3 rope)", A_LLAMA, 64, 2, 4, 2, 96, 256, 0, 0, 0, 500000.0f, 1e-5f, 24, 1},
        {"gemma2 (1 + w norms, caps, window)", A_GEMMA2, 64, 3, 4, 2, 128, 256, 1, 0, 0, 10000.0f, 1e-6f, 32, 0},
    };
    for (size_t i = 0; i < sizeof specs / sizeof *specs; i++) {
        check_equivalent(&specs[i], vg, GGML_TYPE_F32, i == 0 ? 2 : 1, i == 0 || specs[i].arch == A_GPT2);
        check_equivalent(&specs[i], vg, GGML_TYPE_BF16, 1, 0);
        if (specs[i].arch == A_QWEN2) check_equivalent(&specs[i], vg, GGML_TYPE_F16, 1, 0);
    }
    test_tokenizer_config(vg);
    gguf_destroy(&vg);
    return tu_finish("test_hfdir");
}
