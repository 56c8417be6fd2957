/* dequant_gguf.c - writes the F32 twin of a GGUF file: every key as it is,
 * every tensor dequantized (quant.h, bit-exact with llama.cpp) and stored as
 * F32.  The llama.cpp conformance of quantized files (conformance_quant.mjs)
 * scores a quantized file with tokshift and its twin with llama.cpp.
 *
 *   dequant_gguf IN.gguf OUT.gguf
 *
 * What it is not: a test by itself, or a converter for users.  Exit 0, 1 on
 * an error, 2 on bad usage. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gguf.h"
#include "gguf_writer.h"
#include "log.h"

int main(int argc, char **argv) {
    if (argc != 3) {
        fprintf(stderr, "usage: dequant_gguf IN.gguf OUT.gguf\n");
        return 2;
    }
    char err[LOG_ERRLEN];
    int rc = 1;
    float *x = NULL;
    gguf_writer_t *w = NULL;
    gguf_t *g = gguf_open(argv[1], err, sizeof err);
    if (!g || !(w = gguf_writer_new(err, sizeof err))) goto error;
    for (uint64_t i = 0; i < gguf_n_kv(g); i++) {
        const gguf_kv_t *kv = gguf_kv_at(g, i);
        if (kv->key.len == 17 && !memcmp(kv->key.ptr, "general.alignment", 17)) { /* the writer's own */
            if (gguf_writer_set_alignment(w, (uint32_t)kv->v.u, err, sizeof err)) goto error;
        } else if (gguf_writer_copy_kv(w, kv, err, sizeof err)) {
            goto error;
        }
    }
    for (uint64_t i = 0; i < gguf_n_tensors(g); i++) {
        const gguf_tensor_t *t = gguf_tensor_at(g, i);
        char name[256];
        snprintf(name, sizeof name, "%.*s", (int)t->name.len, t->name.ptr);
        free(x);
        if (!(x = malloc((size_t)gguf_tensor_nelem(t) * sizeof *x))) {
            log_seterr(err, sizeof err, "out of memory");
            goto error;
        }
        gguf_tensor_to_f32(t, x);
        if (gguf_writer_add_tensor(w, name, GGML_TYPE_F32, t->n_dims, t->ne, x, err, sizeof err)) goto error;
    }
    if (gguf_writer_write(w, argv[2], err, sizeof err)) goto error;
    rc = 0;
error:
    if (rc) fprintf(stderr, "dequant_gguf: %s\n", err);
    free(x);
    gguf_writer_destroy(&w);
    gguf_destroy(&g);
    return rc;
}
