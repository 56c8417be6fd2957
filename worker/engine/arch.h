/* arch.h - the table of the architectures the engine runs.
 *
 * What it is: for each architecture, everything that differs between them
 * and that a loader needs to know: its GGUF general.architecture and its
 * Hugging Face model_type names, the operations the forward pass uses (norm,
 * RoPE layout, activation, residual, q/k norms, post-norms), which tensors
 * it has (by role, arch_role_t) and whether each is required, under what
 * names GGUF (llama.cpp's names, the same for every architecture) and the
 * Hugging Face checkpoint (per architecture) store them, and how the
 * checkpoint's layout differs from GGUF's.  Both loaders (model.c for GGUF,
 * hfdir.c for a Hugging Face directory) read it, and the "supported: ..."
 * messages are generated from it, so that adding an architecture touches
 * this table, the forward pass only if it needs a new operation, and the
 * tests.
 *
 * What it is not: a loader (no I/O here), nor the configuration of one
 * model (model_config_t, model.h). */
#ifndef TS_ARCH_H
#define TS_ARCH_H

#include <stddef.h>

typedef enum {
    MODEL_ARCH_LLAMA = 0,
    MODEL_ARCH_QWEN2,
    MODEL_ARCH_GPT2,
    MODEL_ARCH_GPTNEOX,
    MODEL_ARCH_QWEN3,
    MODEL_ARCH_OLMO2,
    MODEL_ARCH_PHI3,
    MODEL_ARCH_GEMMA2,
} model_arch_t;

/* Zero values are the llama choices, so a zeroed config is a llama one. */
typedef enum {
    MODEL_NORM_RMS = 0, /* x / rms(x) * g */
    MODEL_NORM_LAYER,   /* (x - mean) / sd(x) * g + b */
} model_norm_t;

typedef enum {
    MODEL_ROPE_NORM = 0, /* pairs (x[2i], x[2i+1]): GGUF llama (permuted Q/K) */
    MODEL_ROPE_NEOX,     /* pairs (x[i], x[i + rope_dim/2]): qwen2, gptneox */
    MODEL_ROPE_NONE,     /* no rotary embedding (gpt2: learned positions) */
} model_rope_t;

typedef enum {
    MODEL_ACT_SWIGLU = 0, /* down(silu(gate x) * up x) */
    MODEL_ACT_GELU,       /* down(gelu_tanh(up x + b)) + b, no gate */
    MODEL_ACT_GEGLU,      /* down(gelu_tanh(gate x) * up x) (gemma2) */
} model_act_t;

/* RMSNorm of the query and key rows after their projection, before RoPE. */
typedef enum {
    MODEL_QK_NORM_NONE = 0,
    MODEL_QK_NORM_HEAD, /* each head's head_dim values, one [head_dim] gain (qwen3) */
    MODEL_QK_NORM_ALL,  /* all of q (k) at once, gain [q_dim] ([kv_dim]) (olmo2) */
} model_qk_norm_t;

/* The tensors of a model by role: the model-wide ones, then those of each
 * layer (from ARCH_ROLE_LAYER0 on, named with the layer number). */
typedef enum {
    ARCH_TOK_EMBD = 0, /* [n_vocab][d] */
    ARCH_POS_EMBD,     /* [n_ctx_train][d] learned positions */
    ARCH_OUT_NORM,     /* [d] */
    ARCH_OUT_NORM_B,   /* [d] */
    ARCH_OUTPUT,       /* [n_vocab][d]; absent: tied to the embedding */
    ARCH_OUTPUT_B,     /* [n_vocab] */
    ARCH_ROPE_FREQS,   /* [rope_dim / 2]: divisors of the RoPE frequencies (Llama 3.1) */
    ARCH_ATTN_NORM,    /* [d] (first per-layer role) */
    ARCH_ATTN_NORM_B,
    ARCH_QKV,          /* [q_dim + 2 kv_dim][d]: rows Q, then K, then V */
    ARCH_QKV_B,
    ARCH_Q,            /* [q_dim][d] */
    ARCH_Q_B,
    ARCH_K,            /* [kv_dim][d] */
    ARCH_K_B,
    ARCH_V,
    ARCH_V_B,
    ARCH_Q_NORM,       /* [head_dim] or [q_dim] (model_qk_norm_t) */
    ARCH_K_NORM,       /* [head_dim] or [kv_dim] */
    ARCH_O,            /* [d][q_dim] */
    ARCH_O_B,
    ARCH_ATTN_POST_NORM, /* [d]: norm of the attention output before the residual add */
    ARCH_FFN_NORM,     /* [d] */
    ARCH_FFN_NORM_B,
    ARCH_GATE,         /* [n_ff][d] */
    ARCH_GATE_B,
    ARCH_UP,           /* [n_ff][d] */
    ARCH_UP_B,
    ARCH_GATE_UP,      /* [2 n_ff][d]: rows gate, then up (Phi-3's fused ffn_up) */
    ARCH_DOWN,         /* [d][n_ff] */
    ARCH_DOWN_B,
    ARCH_FFN_POST_NORM, /* [d] */
    ARCH_N_ROLES
} arch_role_t;

#define ARCH_ROLE_LAYER0 ARCH_ATTN_NORM

/* Whether an architecture has a role's tensor. */
typedef enum {
    ARCH_NO = 0, /* not part of it: a stored one is an error (unused tensor) */
    ARCH_REQ,    /* required */
    ARCH_OPT,    /* used when present */
    ARCH_ALT,    /* required unless the fused ARCH_QKV is present (Q, K, V) */
} arch_need_t;

/* How a Hugging Face checkpoint stores the matrices differently from GGUF
 * (what llama.cpp's convert_hf_to_gguf.py changes; hfdir.c does it). */
typedef enum {
    ARCH_HF_PLAIN = 0,      /* as GGUF */
    ARCH_HF_ROPE_PERMUTE,   /* Q and K rows (and biases) in rotate-half order: LlamaModel.permute */
    ARCH_HF_CONV1D,         /* GPT-2 Conv1D weights [in][out]: transposed */
    ARCH_HF_NEOX_QKV,       /* fused QKV rows per head (head, {q,k,v}, dim) */
    ARCH_HF_NORM_PLUS1,     /* RMSNorm gains stored as w for a model that uses 1 + w (Gemma): 1 added */
} arch_hf_layout_t;

/* Which family of config.json keys the checkpoint's configuration uses. */
typedef enum {
    ARCH_HFCFG_LLAMA = 0, /* hidden_size, num_hidden_layers, rms_norm_eps, ... */
    ARCH_HFCFG_GPT2,      /* n_embd, n_layer, n_inner, layer_norm_epsilon, ... */
    ARCH_HFCFG_NEOX,      /* gpt_neox: rotary_pct, use_parallel_residual, ... */
} arch_hf_config_t;

typedef struct {
    const char *gguf;          /* general.architecture */
    const char *hf[3];         /* config.json model_type values (NULL-terminated; none: no HF loader) */
    model_arch_t arch;
    model_norm_t norm;
    model_rope_t rope;
    model_act_t act;
    model_qk_norm_t qk_norm;
    int parallel_residual_key; /* GGUF <arch>.use_parallel_residual is required */
    int rope_full;             /* rope.dimension_count must equal the head size */
    int free_head_dim;         /* the head size may differ from d / n_head (attention.key_length, head_dim) */
    int gemma2;                /* the embedding scaled by sqrt(d), attention and final logit soft-capping,
                                * sliding-window layers, the 27B query scale (GGUF keys as llama.cpp's gemma2) */
    unsigned char need[ARCH_N_ROLES];  /* arch_need_t, for GGUF */
    const char *hf_names[ARCH_N_ROLES]; /* checkpoint names (layer roles with one %d); NULL: none */
    const char *hf_alt_prefix;          /* a prefix every checkpoint name may carry (gpt2: "transformer.") */
    arch_hf_layout_t hf_layout;
    arch_hf_config_t hf_config;
} arch_t;

/* The architecture whose GGUF name is name, or NULL. */
const arch_t *arch_by_gguf(const char *name);

/* The architecture with Hugging Face model_type type, or NULL. */
const arch_t *arch_by_hf(const char *type);

/* llama.cpp's GGUF name of role in layer (ignored for model-wide roles),
 * written into buf (always NUL-terminated); returns buf. */
const char *arch_gguf_name(arch_role_t role, int layer, char *buf, size_t len);

/* Whether role is a weight matrix (else a vector). */
int arch_role_is_matrix(arch_role_t role);

/* The supported names, comma-separated ("llama, qwen2, ..."), of GGUF
 * (hf = 0) or of Hugging Face model_type (hf = 1), into buf (always
 * NUL-terminated). */
void arch_list(int hf, char *buf, size_t len);

#endif
