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
    int rc = rm_copy_f32(argv[1], argv[2], sigma, st, err, sizeof err);
    if (rc) fprintf(stderr, "dequant_gguf: %s\n", err);
    return rc ? 1 : 0;
}
