/* model.h - a transformer's configuration and fp32 weights, loaded from GGUF.
 *
 * What it is: reads the architecture's hyper-parameters and tensors, checks
 * every tensor's shape against them, and exposes fp32 weight pointers (F32
 * tensors point into the file mapping without a copy; F16, BF16 and Q8_0 are
 * converted once at load).  It also builds the model's tokenizer.  What it is
 * not: the computation (forward.c) or the statistics (stats.c).
 *
 * Weight matrices are row-major [out][in], as GGUF stores them (ne0 = in),
 * so y = W x is a row-wise dot product and Y = X W^T one cblas_sgemm. */
#ifndef TS_MODEL_H
#define TS_MODEL_H

#include <stddef.h>
#include <stdint.h>

#include "gguf.h"
#include "tokenizer.h"

typedef enum {
    MODEL_ARCH_LLAMA = 0,
} model_arch_t;

typedef struct {
    model_arch_t arch;
    int n_vocab;
    int n_embd;      /* d */
    int n_layer;
    int n_head;
    int n_head_kv;   /* < n_head for grouped-query attention */
    int head_dim;    /* d / n_head */
    int n_ff;
    int n_ctx_train; /* the context the model was built for */
    int rope_dim;    /* leading dimensions of each head that are rotated */
    float rope_base;
    float norm_eps;
} model_config_t;

typedef struct {
    const float *attn_norm; /* [d] */
    const float *wq;        /* [n_head*head_dim][d] */
    const float *wk;        /* [n_head_kv*head_dim][d] */
    const float *wv;        /* [n_head_kv*head_dim][d] */
    const float *wo;        /* [d][n_head*head_dim] */
    const float *ffn_norm;  /* [d] */
    const float *w_gate;    /* [n_ff][d] */
    const float *w_up;      /* [n_ff][d] */
    const float *w_down;    /* [d][n_ff] */
} model_layer_t;

typedef struct model {
    model_config_t cfg;
    const float *tok_embd;    /* [n_vocab][d] */
    const float *output_norm; /* [d] */
    const float *output;      /* [n_vocab][d]; == tok_embd when tied */
    model_layer_t *layers;    /* [n_layer] */
    tokenizer_t *tok;
    char *path;
    char arch_name[32];
    /* private: the mapping and the converted copies */
    gguf_t *gguf;
    float **owned;
    int n_owned;
} model_t;

/* Loads the model at path (a GGUF file).  Returns a new model that the caller
 * frees with model_destroy, or NULL with a message that names the file and
 * the key or tensor at fault. */
model_t *model_load(const char *path, char *err, size_t errlen);

/* NULL-safe; clears *self_p. */
void model_destroy(model_t **self_p);

/* One line describing the model for logs ("llama: 5 layers, d=64, ..."),
 * written into buf (always NUL-terminated). */
void model_describe(const model_t *self, char *buf, size_t len);

#endif
