/* dequant_gguf.c - writes the F32 twin of a GGUF file: every key as it is,
 * every tensor dequantized (quant.h, bit-exact with llama.cpp) and stored as
 * F32.  The llama.cpp conformance of quantized files (conformance_quant.mjs)
 * scores a quantized file with tokshift and its twin with llama.cpp.
 *
 *   dequant_gguf [--perturb SIGMA SEED] IN.gguf OUT.gguf
 *
 * --perturb also adds seeded Gaussian noise to every tensor, SIGMA times
 * the tensor's root mean square per value: a second model of the same size
 * and vocabulary (the README's worked example compares it with the demo
 * model as a stand-in for a base/instruct pair; it is not a tuned model).
 *
 * What it is not: a test by itself, or a converter for users.  Exit 0, 1 on
 * an error, 2 on bad usage. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "randmodel.h"

int main(int argc, char **argv) {
    double sigma = 0;
    uint64_t st = 0;
    if (argc == 6 && !strcmp(argv[1], "--perturb")) {
        char *e1, *e2;
        sigma = strtod(argv[2], &e1);
        st = strtoull(argv[3], &e2, 10);
        if (*e1 || *e2 || !(sigma > 0 && sigma < 10)) argc = 0;
        argv += 3, argc -= 3;
    }
    if (argc != 3) {
        fprintf(stderr, "usage: dequant_gguf [--perturb SIGMA SEED] IN.gguf OUT.gguf (0 < SIGMA < 10)\n");
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
        size_t n = (size_t)gguf_tensor_nelem(t);
        gguf_tensor_to_f32(t, x);
        if (sigma > 0) {
            double ss = 0;
            for (size_t j = 0; j < n; j++) ss += (double)x[j] * x[j];
            double sd = sigma * sqrt(ss / (double)(n ? n : 1));
            for (size_t j = 0; j < n; j++) x[j] = (float)(x[j] + sd * rm_normal(&st));
        }
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
