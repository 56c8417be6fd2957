/* arch.c - see arch.h.  The GGUF requirements follow llama.cpp's
 * llama_model::load_tensors for each architecture (src/models/<arch>.cpp),
 * the Hugging Face names the `transformers` modelling code of each family. */
#include "arch.h"

#include <stdio.h>
#include <string.h>

/* llama.cpp's tensor names, the same for every architecture. */
static const char *const g_gguf_names[ARCH_N_ROLES] = {
    [ARCH_TOK_EMBD] = "token_embd.weight",
    [ARCH_POS_EMBD] = "position_embd.weight",
    [ARCH_OUT_NORM] = "output_norm.weight",
    [ARCH_OUT_NORM_B] = "output_norm.bias",
    [ARCH_OUTPUT] = "output.weight",
    [ARCH_OUTPUT_B] = "output.bias",
    [ARCH_ROPE_FREQS] = "rope_freqs.weight",
    [ARCH_ATTN_NORM] = "attn_norm.weight",
    [ARCH_ATTN_NORM_B] = "attn_norm.bias",
    [ARCH_QKV] = "attn_qkv.weight",
    [ARCH_QKV_B] = "attn_qkv.bias",
    [ARCH_Q] = "attn_q.weight",
    [ARCH_Q_B] = "attn_q.bias",
    [ARCH_K] = "attn_k.weight",
    [ARCH_K_B] = "attn_k.bias",
    [ARCH_V] = "attn_v.weight",
    [ARCH_V_B] = "attn_v.bias",
    [ARCH_Q_NORM] = "attn_q_norm.weight",
    [ARCH_K_NORM] = "attn_k_norm.weight",
    [ARCH_O] = "attn_output.weight",
    [ARCH_O_B] = "attn_output.bias",
    [ARCH_ATTN_POST_NORM] = "post_attention_norm.weight",
    [ARCH_FFN_NORM] = "ffn_norm.weight",
    [ARCH_FFN_NORM_B] = "ffn_norm.bias",
    [ARCH_GATE] = "ffn_gate.weight",
    [ARCH_GATE_B] = "ffn_gate.bias",
    [ARCH_UP] = "ffn_up.weight",
    [ARCH_UP_B] = "ffn_up.bias",
    [ARCH_GATE_UP] = "ffn_up.weight", /* llama.cpp's name for Phi-3's fused gate and up */
    [ARCH_DOWN] = "ffn_down.weight",
    [ARCH_DOWN_B] = "ffn_down.bias",
    [ARCH_FFN_POST_NORM] = "post_ffw_norm.weight",
};

#define R ARCH_REQ
#define O ARCH_OPT
#define A ARCH_ALT

/* The llama layer: pre-norms, separate or fused Q/K/V, SwiGLU, optional
 * biases (llama.cpp's create_tensor_qkv and TENSOR_NOT_REQUIRED biases). */
#define LLAMA_NEED                                                                                           \
    [ARCH_TOK_EMBD] = R, [ARCH_OUT_NORM] = R, [ARCH_OUTPUT] = O, [ARCH_ATTN_NORM] = R, QKV_NEED, [ARCH_O] = R, \
    [ARCH_O_B] = O, [ARCH_FFN_NORM] = R, [ARCH_GATE] = R, [ARCH_GATE_B] = O,     \
    [ARCH_UP] = R, [ARCH_UP_B] = O, [ARCH_DOWN] = R, [ARCH_DOWN_B] = O

/* Q, K, V separate or fused, biases optional (create_tensor_qkv). */
#define QKV_NEED                                                                                             \
    [ARCH_QKV] = O, [ARCH_QKV_B] = O, [ARCH_Q] = A, [ARCH_Q_B] = O, [ARCH_K] = A, [ARCH_K_B] = O, [ARCH_V] = A, \
    [ARCH_V_B] = O

/* The transformers names of LlamaForCausalLM and the families that copied
 * it (Mistral, Qwen2, Qwen3, OLMo 2). */
#define HF_LLAMA_TOP                                                                                   \
    [ARCH_TOK_EMBD] = "model.embed_tokens.weight", [ARCH_OUT_NORM] = "model.norm.weight",             \
    [ARCH_OUTPUT] = "lm_head.weight"
#define HF_LLAMA_ATTN                                                                                  \
    [ARCH_Q] = "model.layers.%d.self_attn.q_proj.weight", [ARCH_Q_B] = "model.layers.%d.self_attn.q_proj.bias", \
    [ARCH_K] = "model.layers.%d.self_attn.k_proj.weight", [ARCH_K_B] = "model.layers.%d.self_attn.k_proj.bias", \
    [ARCH_V] = "model.layers.%d.self_attn.v_proj.weight", [ARCH_V_B] = "model.layers.%d.self_attn.v_proj.bias", \
    [ARCH_O] = "model.layers.%d.self_attn.o_proj.weight"
#define HF_LLAMA_MLP                                                                                   \
    [ARCH_GATE] = "model.layers.%d.mlp.gate_proj.weight", [ARCH_GATE_B] = "model.layers.%d.mlp.gate_proj.bias", \
    [ARCH_UP] = "model.layers.%d.mlp.up_proj.weight", [ARCH_UP_B] = "model.layers.%d.mlp.up_proj.bias",         \
    [ARCH_DOWN] = "model.layers.%d.mlp.down_proj.weight", [ARCH_DOWN_B] = "model.layers.%d.mlp.down_proj.bias"
#define HF_LLAMA_NORMS                                                                                 \
    [ARCH_ATTN_NORM] = "model.layers.%d.input_layernorm.weight",                                       \
    [ARCH_FFN_NORM] = "model.layers.%d.post_attention_layernorm.weight"

static const arch_t g_archs[] = {
    {.gguf = "llama", .hf = {"llama", "mistral"}, .arch = MODEL_ARCH_LLAMA, .rope = MODEL_ROPE_NORM,
     .free_head_dim = 1, .need = {LLAMA_NEED, [ARCH_ROPE_FREQS] = O},
     .hf_names = {HF_LLAMA_TOP, HF_LLAMA_NORMS, HF_LLAMA_ATTN, HF_LLAMA_MLP,
                  [ARCH_O_B] = "model.layers.%d.self_attn.o_proj.bias"},
     .hf_layout = ARCH_HF_ROPE_PERMUTE},
    {.gguf = "qwen2", .hf = {"qwen2"}, .arch = MODEL_ARCH_QWEN2, .rope = MODEL_ROPE_NEOX, .rope_full = 1,
     .need = {LLAMA_NEED, [ARCH_OUTPUT_B] = O},
     .hf_names = {HF_LLAMA_TOP, HF_LLAMA_NORMS, HF_LLAMA_ATTN, HF_LLAMA_MLP}},
    {.gguf = "qwen3", .hf = {"qwen3"}, .arch = MODEL_ARCH_QWEN3, .rope = MODEL_ROPE_NEOX,
     .qk_norm = MODEL_QK_NORM_HEAD, .rope_full = 1, .free_head_dim = 1,
     .need = {[ARCH_TOK_EMBD] = R, [ARCH_OUT_NORM] = R, [ARCH_OUTPUT] = O, [ARCH_ATTN_NORM] = R, QKV_NEED,
              [ARCH_Q_NORM] = R, [ARCH_K_NORM] = R, [ARCH_O] = R, [ARCH_FFN_NORM] = R, [ARCH_GATE] = R,
              [ARCH_UP] = R, [ARCH_DOWN] = R},
     .hf_names = {HF_LLAMA_TOP, HF_LLAMA_NORMS, HF_LLAMA_ATTN, HF_LLAMA_MLP,
                  [ARCH_Q_NORM] = "model.layers.%d.self_attn.q_norm.weight",
                  [ARCH_K_NORM] = "model.layers.%d.self_attn.k_norm.weight"}},
    /* OLMo 2: no pre-norms; the attention and FFN outputs are normalised
     * before their residual add; q and k normalised over all heads. */
    {.gguf = "olmo2", .hf = {"olmo2"}, .arch = MODEL_ARCH_OLMO2, .rope = MODEL_ROPE_NEOX,
     .qk_norm = MODEL_QK_NORM_ALL, .rope_full = 1,
     .need = {[ARCH_TOK_EMBD] = R, [ARCH_OUT_NORM] = R, [ARCH_OUTPUT] = R, QKV_NEED, [ARCH_Q_NORM] = R,
              [ARCH_K_NORM] = R, [ARCH_O] = R, [ARCH_ATTN_POST_NORM] = R, [ARCH_GATE] = R, [ARCH_UP] = R,
              [ARCH_DOWN] = R, [ARCH_FFN_POST_NORM] = R},
     .hf_names = {HF_LLAMA_TOP, HF_LLAMA_ATTN, HF_LLAMA_MLP,
                  [ARCH_Q_NORM] = "model.layers.%d.self_attn.q_norm.weight",
                  [ARCH_K_NORM] = "model.layers.%d.self_attn.k_norm.weight",
                  [ARCH_ATTN_POST_NORM] = "model.layers.%d.post_attention_layernorm.weight",
                  [ARCH_FFN_POST_NORM] = "model.layers.%d.post_feedforward_layernorm.weight"}},
    /* Phi-3: fused QKV and gate-up (rows gate then up, as ggml_swiglu
     * splits them), NeoX RoPE.  Its sliding window is ignored, as llama.cpp
     * ignores it (phi3.cpp: "Phi SWA is currently disabled"); the 128k
     * variants' LongRoPE factors are not part of the table (refused). */
    {.gguf = "phi3", .hf = {"phi3"}, .arch = MODEL_ARCH_PHI3, .rope = MODEL_ROPE_NEOX,
     .need = {[ARCH_TOK_EMBD] = R, [ARCH_OUT_NORM] = R, [ARCH_OUTPUT] = O, [ARCH_ATTN_NORM] = R, QKV_NEED,
              [ARCH_O] = R, [ARCH_FFN_NORM] = R, [ARCH_GATE_UP] = R, [ARCH_DOWN] = R},
     .hf_names = {HF_LLAMA_TOP, HF_LLAMA_NORMS, [ARCH_QKV] = "model.layers.%d.self_attn.qkv_proj.weight",
                  [ARCH_O] = "model.layers.%d.self_attn.o_proj.weight",
                  [ARCH_GATE_UP] = "model.layers.%d.mlp.gate_up_proj.weight",
                  [ARCH_DOWN] = "model.layers.%d.mlp.down_proj.weight"}},
    /* Gemma 2: pre- and post-norms around both blocks, GeGLU, NeoX RoPE,
     * the output tied to the embedding (llama.cpp reads no output.weight).
     * A GGUF's norm gains are used as stored: llama.cpp's converter stores
     * Gemma's 1 + w, which the HF loader adds (ARCH_HF_NORM_PLUS1).  In a
     * checkpoint post_attention_layernorm is the attention output's norm
     * and pre_feedforward_layernorm the FFN's input norm. */
    {.gguf = "gemma2", .hf = {"gemma2"}, .arch = MODEL_ARCH_GEMMA2, .rope = MODEL_ROPE_NEOX,
     .act = MODEL_ACT_GEGLU, .free_head_dim = 1, .gemma2 = 1,
     .need = {[ARCH_TOK_EMBD] = R, [ARCH_OUT_NORM] = R, [ARCH_ATTN_NORM] = R, QKV_NEED, [ARCH_O] = R,
              [ARCH_ATTN_POST_NORM] = R, [ARCH_FFN_NORM] = R, [ARCH_GATE] = R, [ARCH_UP] = R, [ARCH_DOWN] = R,
              [ARCH_FFN_POST_NORM] = R},
     .hf_names = {HF_LLAMA_TOP, HF_LLAMA_ATTN, HF_LLAMA_MLP,
                  [ARCH_ATTN_NORM] = "model.layers.%d.input_layernorm.weight",
                  [ARCH_ATTN_POST_NORM] = "model.layers.%d.post_attention_layernorm.weight",
                  [ARCH_FFN_NORM] = "model.layers.%d.pre_feedforward_layernorm.weight",
                  [ARCH_FFN_POST_NORM] = "model.layers.%d.post_feedforward_layernorm.weight"},
     .hf_layout = ARCH_HF_NORM_PLUS1},
    {.gguf = "gpt2", .hf = {"gpt2"}, .arch = MODEL_ARCH_GPT2, .norm = MODEL_NORM_LAYER, .rope = MODEL_ROPE_NONE,
     .act = MODEL_ACT_GELU,
     .need = {[ARCH_TOK_EMBD] = R, [ARCH_POS_EMBD] = R, [ARCH_OUT_NORM] = R, [ARCH_OUT_NORM_B] = R,
              [ARCH_OUTPUT] = O, [ARCH_ATTN_NORM] = R, [ARCH_ATTN_NORM_B] = R, [ARCH_QKV] = R, [ARCH_QKV_B] = R,
              [ARCH_O] = R, [ARCH_O_B] = R, [ARCH_FFN_NORM] = R, [ARCH_FFN_NORM_B] = R, [ARCH_UP] = R,
              [ARCH_UP_B] = R, [ARCH_DOWN] = R, [ARCH_DOWN_B] = R},
     .hf_names = {[ARCH_TOK_EMBD] = "wte.weight", [ARCH_POS_EMBD] = "wpe.weight", [ARCH_OUT_NORM] = "ln_f.weight",
                  [ARCH_OUT_NORM_B] = "ln_f.bias", [ARCH_OUTPUT] = "lm_head.weight",
                  [ARCH_ATTN_NORM] = "h.%d.ln_1.weight", [ARCH_ATTN_NORM_B] = "h.%d.ln_1.bias",
                  [ARCH_QKV] = "h.%d.attn.c_attn.weight", [ARCH_QKV_B] = "h.%d.attn.c_attn.bias",
                  [ARCH_O] = "h.%d.attn.c_proj.weight", [ARCH_O_B] = "h.%d.attn.c_proj.bias",
                  [ARCH_FFN_NORM] = "h.%d.ln_2.weight", [ARCH_FFN_NORM_B] = "h.%d.ln_2.bias",
                  [ARCH_UP] = "h.%d.mlp.c_fc.weight", [ARCH_UP_B] = "h.%d.mlp.c_fc.bias",
                  [ARCH_DOWN] = "h.%d.mlp.c_proj.weight", [ARCH_DOWN_B] = "h.%d.mlp.c_proj.bias"},
     .hf_alt_prefix = "transformer.", .hf_layout = ARCH_HF_CONV1D, .hf_config = ARCH_HFCFG_GPT2},
    {.gguf = "gptneox", .hf = {"gpt_neox"}, .arch = MODEL_ARCH_GPTNEOX, .norm = MODEL_NORM_LAYER,
     .rope = MODEL_ROPE_NEOX, .act = MODEL_ACT_GELU, .parallel_residual_key = 1,
     .need = {[ARCH_TOK_EMBD] = R, [ARCH_OUT_NORM] = R, [ARCH_OUT_NORM_B] = R, [ARCH_OUTPUT] = R,
              [ARCH_ATTN_NORM] = R, [ARCH_ATTN_NORM_B] = R, [ARCH_QKV] = R, [ARCH_QKV_B] = R, [ARCH_O] = R,
              [ARCH_O_B] = R, [ARCH_FFN_NORM] = R, [ARCH_FFN_NORM_B] = R, [ARCH_UP] = R, [ARCH_UP_B] = R,
              [ARCH_DOWN] = R, [ARCH_DOWN_B] = R},
     .hf_names = {[ARCH_TOK_EMBD] = "gpt_neox.embed_in.weight",
                  [ARCH_OUT_NORM] = "gpt_neox.final_layer_norm.weight",
                  [ARCH_OUT_NORM_B] = "gpt_neox.final_layer_norm.bias", [ARCH_OUTPUT] = "embed_out.weight",
                  [ARCH_ATTN_NORM] = "gpt_neox.layers.%d.input_layernorm.weight",
                  [ARCH_ATTN_NORM_B] = "gpt_neox.layers.%d.input_layernorm.bias",
                  [ARCH_QKV] = "gpt_neox.layers.%d.attention.query_key_value.weight",
                  [ARCH_QKV_B] = "gpt_neox.layers.%d.attention.query_key_value.bias",
                  [ARCH_O] = "gpt_neox.layers.%d.attention.dense.weight",
                  [ARCH_O_B] = "gpt_neox.layers.%d.attention.dense.bias",
                  [ARCH_FFN_NORM] = "gpt_neox.layers.%d.post_attention_layernorm.weight",
                  [ARCH_FFN_NORM_B] = "gpt_neox.layers.%d.post_attention_layernorm.bias",
                  [ARCH_UP] = "gpt_neox.layers.%d.mlp.dense_h_to_4h.weight",
                  [ARCH_UP_B] = "gpt_neox.layers.%d.mlp.dense_h_to_4h.bias",
                  [ARCH_DOWN] = "gpt_neox.layers.%d.mlp.dense_4h_to_h.weight",
                  [ARCH_DOWN_B] = "gpt_neox.layers.%d.mlp.dense_4h_to_h.bias"},
     .hf_layout = ARCH_HF_NEOX_QKV, .hf_config = ARCH_HFCFG_NEOX},
};

#undef R
#undef O
#undef A

const arch_t *arch_by_gguf(const char *name) {
    for (size_t i = 0; i < sizeof g_archs / sizeof *g_archs; i++)
        if (!strcmp(name, g_archs[i].gguf)) return &g_archs[i];
    return NULL;
}

const arch_t *arch_by_hf(const char *type) {
    for (size_t i = 0; i < sizeof g_archs / sizeof *g_archs; i++)
        for (const char *const *t = g_archs[i].hf; *t; t++)
            if (!strcmp(type, *t)) return &g_archs[i];
    return NULL;
}

const char *arch_gguf_name(arch_role_t role, int layer, char *buf, size_t len) {
    if (role < ARCH_ROLE_LAYER0) snprintf(buf, len, "%s", g_gguf_names[role]);
    else snprintf(buf, len, "blk.%d.%s", layer, g_gguf_names[role]);
    return buf;
}

int arch_role_is_matrix(arch_role_t role) {
    switch (role) {
    case ARCH_TOK_EMBD: case ARCH_POS_EMBD: case ARCH_OUTPUT: case ARCH_QKV: case ARCH_Q: case ARCH_K:
    case ARCH_V: case ARCH_O: case ARCH_GATE: case ARCH_UP: case ARCH_GATE_UP: case ARCH_DOWN:
        return 1;
    default:
        return 0;
    }
}

void arch_list(int hf, char *buf, size_t len) {
    size_t at = 0;
    if (len) buf[0] = 0;
    for (size_t i = 0; i < sizeof g_archs / sizeof *g_archs; i++)
        for (int j = 0; j < (hf ? 3 : 1); j++) {
            const char *n = hf ? g_archs[i].hf[j] : g_archs[i].gguf;
            if (n && at < len) at += (size_t)snprintf(buf + at, len - at, "%s%s", at ? ", " : "", n);
        }
}
