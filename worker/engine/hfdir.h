/* hfdir.h - loads a Hugging Face model directory into a model_t.
 *
 * What it is: the mapping from a `transformers` checkpoint to the engine's
 * model: config.json (model_type and hyper-parameters, under the names each
 * model family's config class uses), the weights of model.safetensors or a
 * sharded model.safetensors.index.json (F32, F16 or BF16; see safetensors.h)
 * under the names `transformers` gives them, and tokenizer.json.  Every
 * weight is converted to the layout the GGUF path gives the forward pass
 * (model.h), exactly as llama.cpp's convert_hf_to_gguf.py lays it out, so a
 * directory and its GGUF conversion compute the same statistics:
 *   - llama/mistral: q_proj and k_proj rows are permuted per head from the
 *     rotate-half RoPE layout of Hugging Face to the interleaved pairs of
 *     GGUF llama (the converter's permute(w, n_head, n_head_kv));
 * Every tensor in the checkpoint must be used (buffers that transformers
 * recomputes, such as rotary inv_freq and attention masks, excepted): a
 * tensor left over means a variant this loader does not understand, and
 * silently ignoring it would give wrong statistics.
 *
 * What it is not: a GGUF writer or converter (nothing is written), a reader
 * of PyTorch .bin pickles, or a general transformers config interpreter:
 * options that change the computation and are not implemented (rope_scaling,
 * attention biases on llama, a head_dim that is not hidden/heads, ...) are
 * errors, never ignored. */
#ifndef TS_HFDIR_H
#define TS_HFDIR_H

#include <stddef.h>

#include "model.h"

/* Whether path names a directory (the dispatch in model_load: a directory is
 * a Hugging Face model, anything else a GGUF file). */
int hfdir_is_dir(const char *path);

/* Loads the Hugging Face model directory dir: configuration, weights (all
 * converted to fp32 buffers owned by the model through m->owned, so no file
 * stays open or mapped afterwards), tokenizer (tokenizer.json).  Returns a
 * new model that the caller frees with model_destroy, or NULL with a message
 * naming the file and the key or tensor at fault. */
model_t *hfdir_load(const char *dir, char *err, size_t errlen);

#endif
