/* model.h - a transformer's configuration and weights; the GGUF loader.
 *
 * What it is: reads the architecture's hyper-parameters and tensors, checks
 * every tensor's shape against them, and exposes the weights: matrices as
 * they are stored (quant_mat_t pointing into the file mapping, in any type
 * quant.h supports, so a quantized model stays the size of its file), and
 * fp32 vectors (F32 in place, other types converted once at load; they are
 * a negligible share).  It also builds the model's tokenizer.  What it is
 * not: the computation (forward.c) or the statistics (stats.c).
 *
 * Architectures: the table of arch.h (GGUF general.architecture with
 * llama.cpp's key and tensor names, so that a file llama.cpp converts loads
 * here unchanged).  Everything that differs between them is a field of
 * model_config_t (norm, rope, activation, residual, q/k norms) or a
 * NULL/non-NULL weight pointer (biases, position embeddings, post-norms),
 * so forward.c is one function.
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

#include "arch.h"
#include "gguf.h"
#include "quant.h"
#include "tokenizer.h"

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
    model_qk_norm_t qk_norm;
    int parallel_residual; /* x += attn(ln1 x) + ffn(ln2 x) (gptneox) */
    float embd_scale;      /* the embedding rows are multiplied by it; 0: not */
    int query_scale_dim;   /* attention scores are scaled by 1/sqrt(it); 0: by 1/sqrt(head_dim) */
    float attn_softcap;    /* scores s become cap tanh(s / cap) before the softmax; 0: not */
    float final_softcap;   /* the same on the logits; 0: not */
    int swa_window;        /* sliding layers see the last swa_window positions (self included); 0: none */
    int swa_period;        /* layer l slides when l % swa_period < swa_period - 1 (llama.cpp's pattern) */
} model_config_t;

/* The attention scale of c (query_scale_dim). */
float model_attn_scale(const model_config_t *c);

/* The first position layer l's query at pos attends to (sliding window). */
int model_attn_first(const model_config_t *c, int layer, int pos);

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
    const float *q_norm, *k_norm;  /* model_qk_norm_t: [head_dim] or [q_dim], [kv_dim] */
    const float *attn_post_norm, *ffn_post_norm; /* [d]: norms of the blocks' outputs */
    quant_mat_t wqkv;       /* a fused QKV as loaded: wq, wk, wv are views of it */
    quant_mat_t w_gate_up;  /* a fused gate-up as loaded: w_gate, w_up are views of it */
    const float *bqkv;
} model_layer_t;

typedef struct model {
    model_config_t cfg;
    quant_mat_t tok_embd;     /* [n_vocab][d] */
    quant_mat_t pos_embd;     /* [n_ctx_train][d] learned positions; data NULL without */
    const float *output_norm, *output_norm_b; /* [d] */
    quant_mat_t output;       /* [n_vocab][d]; the same data as tok_embd when tied */
    const float *output_b;    /* [n_vocab] or NULL */
    const float *rope_freqs;  /* [rope_dim / 2]: divisors of the RoPE frequencies, or NULL */
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

/* The GGUF loader: the model of an open reader (a file, or a file image
 * that gguf_writer_to_buffer laid out in memory; loader_load opens files).  Takes ownership of
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

/* The weight matrices, for whoever walks them all (forward.c's scratch
 * sizing, model_describe): i < model_n_matrices(self); NULL for an absent
 * one and for the output when it is the embedding (each held matrix once;
 * a fused QKV through its three views). */
size_t model_n_matrices(const model_t *self);
const quant_mat_t *model_matrix(const model_t *self, size_t i);

/* ---- for the loaders (this file's GGUF one, hfdir.c) ---------------------- */

/* A new empty model named path (for messages), or NULL with a message. */
model_t *model_new(const char *path, char *err, size_t errlen);

/* Gives buf (malloc'd) to the model, which frees it with itself; on
 * failure frees buf and returns -1 with a message. */
int model_own(model_t *self, void *buf, char *err, size_t errlen);

/* Where the tensor of role (in layer, for a layer role) goes: exactly one
 * of mat (a matrix role) and vec (a vector role) is set.  The layers must
 * have been allocated (model_alloc_layers). */
typedef struct {
    quant_mat_t *mat;
    const float **vec;
} model_slot_t;
model_slot_t model_slot(model_t *self, int layer, arch_role_t role);

/* The shape of role's tensor under self->cfg: [rows][cols], cols 0 for a
 * vector of rows. */
void model_role_shape(const model_t *self, arch_role_t role, uint64_t *rows, uint64_t *cols);

/* Allocates self->layers for cfg.n_layer; -1 with a message. */
int model_alloc_layers(model_t *self, char *err, size_t errlen);

/* After the tensors: splits each fused QKV (and its bias) into the views
 * wq, wk, wv, each fused gate-up into w_gate, w_up, and ties the output to the embedding when it has none. */
void model_finish_weights(model_t *self);

#endif
