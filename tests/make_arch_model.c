/* make_arch_model.c - writes a GGUF model with random weights (a preset of
 * randmodel.h) for the llama.cpp conformance test and for by-hand checks.
 *
 *   make_arch_model PRESET OUT.gguf [VOCAB.gguf] [--type f32|f16|bf16|q8_0] [--seed N]
 *
 * PRESET: llama, llama3, qwen2, qwen3, olmo2, phi3, gemma2, gpt2, gptneox, gptneox-seq (--seed N replaces the
 * preset's seed: other weights of the same shape).  With VOCAB.gguf, its
 * tokenizer.* keys are copied and the model has its vocabulary size;
 * without, a synthetic 512-token SentencePiece vocabulary is written.
 * Prints the model's vocabulary size on stdout.  What it is not: a test by
 * itself (conformance_arch.mjs runs it).  Exit 0, 1 on an error, 2 on bad
 * usage. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gguf_writer.h"
#include "log.h"
#include "randmodel.h"

int main(int argc, char **argv) {
    const char *pos[3] = {0};
    int npos = 0;
    ggml_type_t type = GGML_TYPE_F32;
    uint64_t seed = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--type") && i + 1 < argc) {
            const char *t = argv[++i];
            if (!strcmp(t, "f32")) type = GGML_TYPE_F32;
            else if (!strcmp(t, "f16")) type = GGML_TYPE_F16;
            else if (!strcmp(t, "bf16")) type = GGML_TYPE_BF16;
            else if (!strcmp(t, "q8_0")) type = GGML_TYPE_Q8_0;
            else {
                fprintf(stderr, "make_arch_model: unknown --type %s\n", t);
                return 2;
            }
        } else if (!strcmp(argv[i], "--seed") && i + 1 < argc) {
            char *end;
            seed = strtoull(argv[++i], &end, 10);
            if (*end || !seed) {
                fprintf(stderr, "make_arch_model: --seed needs a positive integer\n");
                return 2;
            }
        } else if (npos < 3) {
            pos[npos++] = argv[i];
        } else {
            npos = 99;
        }
    }
    rm_spec_t s;
    if (npos < 2 || npos > 3 || rm_preset(pos[0], &s)) {
        fprintf(stderr, "usage: make_arch_model llama|llama3|qwen2|qwen3|olmo2|phi3|gemma2|gpt2|gptneox|gptneox-seq OUT.gguf [VOCAB.gguf] "
                        "[--type f32|f16|bf16|q8_0] [--seed N]\n");
        return 2;
    }
    s.type = type;
    if (seed) s.seed = seed;
    char err[LOG_ERRLEN];
    int rc = 1;
    gguf_t *vocab = NULL;
    gguf_writer_t *w = gguf_writer_new(err, sizeof err);
    if (!w) goto error;
    if (npos == 3) {
        if (!(vocab = gguf_open(pos[2], err, sizeof err))) goto error;
        long n = rm_vocab_size(vocab);
        if (n < 1) {
            log_seterr(err, sizeof err, "%s: no tokenizer.ggml.tokens", pos[2]);
            goto error;
        }
        s.n_vocab = (int)n;
    } else {
        s.n_vocab = 512;
    }
    if (rm_add_model(w, &s, err, sizeof err)) goto error;
    if (vocab ? rm_copy_vocab(w, vocab, err, sizeof err) : rm_add_spm_vocab(w, s.n_vocab, err, sizeof err))
        goto error;
    if (gguf_writer_write(w, pos[1], err, sizeof err)) goto error;
    printf("%d\n", s.n_vocab);
    rc = 0;
error:
    if (rc) fprintf(stderr, "make_arch_model: %s\n", err);
    gguf_destroy(&vocab);
    gguf_writer_destroy(&w);
    return rc;
}
