/* model.h - a transformer's configuration and fp32 weights, loaded from GGUF.
 *
 * What it is: reads the architecture's hyper-parameters and tensors, checks
 * every tensor's shape against them, and exposes the weights: matrices as
 * they are stored (quant_mat_t pointing into the file mapping, in any type
 * quant.h supports, so a quantized model stays the size of its file), and
 * fp32 vectors (F32 in place, other types converted once at load; they are
 * a negligible share).  It also builds the model's tokenizer.  What it is
 * not: the computation (forward.c) or the statistics (stats.c).
 *
 * Architectures (GGUF general.architecture, with llama.cpp's key and tensor
 * names, so that a file llama.cpp converts loads here unchanged):
 *
 *   llama    RMSNorm, RoPE (interleaved pairs), SwiGLU, GQA; tied or separate
 *            output; optional biases on wo and the FFN as llama.cpp allows.
 *   qwen2    llama with q/k/v biases and RoPE in the NeoX layout.
 *   gpt2     learned positions (position_embd.weight [n_ctx_train][d]),
 *            LayerNorm with bias, fused QKV with bias, biased projections,
 *            tanh-GELU FFN (no gate), tied output unless output.weight.
 *   gptneox  LayerNorm with bias, fused QKV with bias, partial rotary
 *            (rope.dimension_count) in the NeoX layout, parallel residual
 *            (use_parallel_residual), GELU FFN, separate output.
 *
 * Everything that differs between them is a field of model_config_t (norm,
 * rope, activation, residual) or a NULL/non-NULL weight pointer (biases,
 * position embeddings), so forward.c is one function.
 *
 * Weight matrices are row-major [out][in], as GGUF stores them (ne0 = in),
 * so y = W x is a row-wise dot product and Y = X W^T one cblas_sgemm.  A
 * fused QKV tensor ([q_dim + 2 kv_dim][d], rows Q then K then V, which is
 * how llama.cpp's converters store GPT-2 and GPT-NeoX: the Hugging Face
 * GPT-NeoX query_key_value is interleaved per head and must be reordered,
 * and GPT-2's Conv1D weights are transposed) is exposed as the three
 * views wq, wk, wv into it. */
#ifndef TS_MODEL_H
#define TS_MODEL_H

#include <stddef.h>
#include <stdint.h>

#include "gguf.h"
#include "quant.h"
#include "tokenizer.h"

typedef enum {
    MODEL_ARCH_LLAMA = 0,
    MODEL_ARCH_QWEN2,
    MODEL_ARCH_GPT2,
    MODEL_ARCH_GPTNEOX,
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
} model_act_t;

typedef struct {
    model_arch_t arch;
    int n_vocab;
    int n_embd;      /* d */
    int n_layer;
    int n_head;
    int n_head_kv;   /* < n_head for grouped-query attention */
    int head_dim;    /* d / n_head */
    int n_ff;
    int n_ctx_train; /* the context the model was built for (gpt2: the rows
                      * of position_embd, a hard limit) */
    int rope_dim;    /* leading dimensions of each head that are rotated */
    float rope_base;
    float norm_eps;  /* RMSNorm or LayerNorm epsilon */
    model_norm_t norm;
    model_rope_t rope;
    model_act_t act;
    int parallel_residual; /* x += attn(ln1 x) + ffn(ln2 x) (gptneox) */
} model_config_t;

/* Weight matrices are quant_mat_t: their type and rows as stored (a GGUF
 * file's tensors, quantized or not, are used in place in the mapping; the
 * forward pass dequantizes them a panel of rows at a time).  An absent
 * matrix has data NULL.  Vectors (norms, biases) are fp32, NULL when the
 * model has none. */
typedef struct {
    const float *attn_norm, *attn_norm_b; /* [d] */
    quant_mat_t wq, wk, wv; /* [n_head*head_dim][d], [n_head_kv*head_dim][d] x 2 */
    const float *bq, *bk, *bv; /* [n_head*head_dim], [n_head_kv*head_dim] x 2 */
    quant_mat_t wo;         /* [d][n_head*head_dim] */
    const float *bo;        /* [d] */
    const float *ffn_norm, *ffn_norm_b; /* [d] */
    quant_mat_t w_gate;     /* [n_ff][d]; data NULL without a gate */
    quant_mat_t w_up;       /* [n_ff][d] */
    quant_mat_t w_down;     /* [d][n_ff] */
    const float *b_gate, *b_up, *b_down; /* [n_ff], [n_ff], [d] */
} model_layer_t;

typedef struct model {
    model_config_t cfg;
    quant_mat_t tok_embd;     /* [n_vocab][d] */
    quant_mat_t pos_embd;     /* [n_ctx_train][d] learned positions; data NULL without */
    const float *output_norm, *output_norm_b; /* [d] */
    quant_mat_t output;       /* [n_vocab][d]; the same data as tok_embd when tied */
    const float *output_b;    /* [n_vocab] or NULL */
    model_layer_t *layers;    /* [n_layer] */
    tokenizer_t *tok;
    char *path;
    char arch_name[32];
    /* private: the mapping and the converted copies */
    gguf_t *gguf;
    void *gguf_buf;
    void **owned;
    int n_owned;
} model_t;

/* Loads the model at path: a GGUF file, or a Hugging Face model directory
 * (config.json, safetensors weights, tokenizer.json; see hfdir.h), which
 * computes what its GGUF conversion computes.  Returns a new model that the
 * caller frees with model_destroy, or NULL with a message that names the
 * file and the key or tensor at fault. */
model_t *model_load(const char *path, char *err, size_t errlen);

/* The same from a reader that is already open (for instance over a file
 * image that gguf_writer_to_buffer laid out in memory).  Takes ownership of
 * g, of buf (the malloc'd image g reads from, freed with free(); NULL when g
 * maps a file) and of tok (a tokenizer built elsewhere, e.g. from a
 * tokenizer.json; NULL: built from g's tokenizer.* keys), on failure too.
 * Returns the model or NULL with a message. */
model_t *model_from_gguf(gguf_t *g, void *buf, tokenizer_t *tok, char *err, size_t errlen);

/* NULL-safe; clears *self_p. */
void model_destroy(model_t **self_p);

/* One line describing the model for logs ("llama: 5 layers, d=64, ...,
 * weights Q4_K x13 Q6_K x3 (41.3 MB)": the weight matrices' types and their
 * size as held in memory), written into buf (always NUL-terminated). */
void model_describe(const model_t *self, char *buf, size_t len);

#endif
