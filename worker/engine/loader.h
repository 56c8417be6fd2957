/* loader.h - opens a model in whichever format it is stored.
 *
 * What it is: the format dispatch above the loaders: a directory is a
 * Hugging Face model (hfdir.h), anything else a GGUF file (model.h's
 * model_from_gguf).  Neither loader knows the other.  What it is not: a
 * loader itself, nor a downloader. */
#ifndef TS_LOADER_H
#define TS_LOADER_H

#include <stddef.h>

#include "model.h"

/* Loads the model at path: a GGUF file, or a Hugging Face model directory
 * (config.json, safetensors weights, tokenizer.json; see hfdir.h), which
 * computes what its GGUF conversion computes.  Returns a new model that the
 * caller frees with model_destroy, or NULL with a message that names the
 * file and the key or tensor at fault. */
model_t *loader_load(const char *path, char *err, size_t errlen);

/* Whether path names a directory (what loader_load reads as a Hugging Face
 * model; anything else is a GGUF file). */
int loader_is_dir(const char *path);

#endif
