/* hfdir.h - loads a Hugging Face model directory into a model_t.
 *
 * What it is: the mapping from a `transformers` checkpoint to the engine's
 * model: config.json (the model_type values of arch.h's table: llama,
 * mistral, qwen2, qwen3, olmo2, phi3, gemma2, gpt2, gpt_neox; the hyper-parameters under
 * the names each family's config class uses),
 * the weights of model.safetensors or of a sharded
 * model.safetensors.index.json (F32, F16 or BF16; see safetensors.h) under
 * the names `transformers` gives them (the table's hf_names), and tokenizer.json with what
 * tokenizer_config.json says (add_bos_token, bos_token, eos_token).  Every
 * weight is put into the layout the GGUF path gives the forward pass
 * (model.h), exactly as llama.cpp's convert_hf_to_gguf.py lays it out, so a
 * directory and its GGUF conversion compute the same statistics (hfdir.c
 * lists the conversions: Llama's Q/K rotary permutation, GPT-2's Conv1D
 * transposes, GPT-NeoX's per-head QKV order, Gemma's 1 + w norm gains).
 *
 * Every tensor in the checkpoint must be used (buffers that transformers
 * recomputes, rotary inv_freq and attention masks, excepted): a tensor left
 * over means a variant this loader does not understand, and ignoring it
 * would give wrong statistics.  Likewise options that change the computation
 * and are not implemented (rope_scaling other than Llama 3's "llama3",
 * which becomes the rope_freqs the converter writes; a head_dim other than
 * hidden/heads where llama.cpp does not allow it; Qwen2/3's sliding window, GPT-2's layer-wise attention
 * scaling, an activation other than the family's) are errors.  Mistral's
 * sliding window caps the trained context (n_ctx_train) instead: within
 * the window, attention is exact.
 *
 * What it is not: a GGUF writer or converter (nothing is written), a reader
 * of PyTorch .bin pickles, or a general transformers config interpreter.
 * Weights are always copied into buffers the model owns (matrices in their
 * F16/BF16, everything else fp32), never used in place from the mapping.
 * The format dispatch (a directory or a GGUF file) is loader.h's. */
#ifndef TS_HFDIR_H
#define TS_HFDIR_H

#include <stddef.h>

#include "model.h"

/* Loads the Hugging Face model directory dir: configuration, weights (all
 * copied into buffers owned by the model through m->owned, so no file stays
 * open or mapped afterwards: matrices in their stored F16 or BF16, as a GGUF
 * conversion keeps them, everything else as fp32), tokenizer (tokenizer.json).  Returns a
 * new model that the caller frees with model_destroy, or NULL with a message
 * naming the file and the key or tensor at fault. */
model_t *hfdir_load(const char *dir, char *err, size_t errlen);

#endif
