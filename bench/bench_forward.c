/* bench_forward.c - prefill throughput of the forward pass, against this
 * machine's cblas_sgemm measured in the same run.
 *
 * Shapes: a Llama-style model with random weights (no file needed) of a size
 * given on the command line (default d=512, 8 layers, 8 heads / 4 kv heads,
 * ff=1376, vocab 32000, window 512), so the figure reflects a realistic
 * matrix mix.  Prints tokens/s, achieved GFLOP/s (2 * params * tokens plus
 * attention), and the ratio to a square sgemm of comparable size. */
#include <cblas.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "forward.h"
#include "log.h"
#include "model.h"
#include "now.h"

static float *rnd(size_t n, float scale, uint64_t *s) {
    float *p = log_xmalloc(n * sizeof *p);
    for (size_t i = 0; i < n; i++) {
        *s = *s * 6364136223846793005ULL + 1442695040888963407ULL;
        p[i] = scale * (float)((double)(*s >> 11) * 0x1.0p-53 * 2 - 1);
    }
    return p;
}

int main(int argc, char **argv) {
    int d = argc > 1 ? atoi(argv[1]) : 512, L = argc > 2 ? atoi(argv[2]) : 8, W = argc > 3 ? atoi(argv[3]) : 512;
    int H = 8, HKV = 4, FF = d * 43 / 16, V = 32000;
    uint64_t s = 1;
    model_t m = {0};
    m.cfg = (model_config_t){.arch = MODEL_ARCH_LLAMA, .n_vocab = V, .n_embd = d, .n_layer = L, .n_head = H,
                             .n_head_kv = HKV, .head_dim = d / H, .n_ff = FF, .n_ctx_train = 4096, .rope_dim = d / H,
                             .rope_base = 10000.0f, .norm_eps = 1e-5f};
    float *ones = log_xmalloc(sizeof(float) * d);
    for (int i = 0; i < d; i++) ones[i] = 1;
    m.tok_embd = quant_mat(GGML_TYPE_F32, rnd((size_t)V * d, 0.1f, &s), V, d);
    m.output = m.tok_embd;
    m.output_norm = ones;
    m.layers = calloc(L, sizeof *m.layers);
    int kv = HKV * d / H;
    for (int l = 0; l < L; l++) {
        model_layer_t *ly = &m.layers[l];
        ly->attn_norm = ly->ffn_norm = ones;
        ly->wq = quant_mat(GGML_TYPE_F32, rnd((size_t)d * d, 0.05f, &s), d, d);
        ly->wk = quant_mat(GGML_TYPE_F32, rnd((size_t)kv * d, 0.05f, &s), kv, d);
        ly->wv = quant_mat(GGML_TYPE_F32, rnd((size_t)kv * d, 0.05f, &s), kv, d);
        ly->wo = quant_mat(GGML_TYPE_F32, rnd((size_t)d * d, 0.05f, &s), d, d);
        ly->w_gate = quant_mat(GGML_TYPE_F32, rnd((size_t)FF * d, 0.05f, &s), FF, d);
        ly->w_up = quant_mat(GGML_TYPE_F32, rnd((size_t)FF * d, 0.05f, &s), FF, d);
        ly->w_down = quant_mat(GGML_TYPE_F32, rnd((size_t)d * FF, 0.05f, &s), d, FF);
    }
    char err[LOG_ERRLEN];
    forward_t *f = forward_new(&m, W, W, 1, err, sizeof err);
    if (!f) log_die("", "%s", err);
    int32_t *ids = log_xmalloc(sizeof(int32_t) * W);
    for (int i = 0; i < W; i++) ids[i] = (i * 7919) % V;

    /* Reference: square sgemm of the model's typical size, same threads. */
    int n = W;
    float *a = rnd((size_t)n * d, 1, &s), *b = rnd((size_t)FF * d, 1, &s), *c = log_xmalloc(sizeof(float) * n * FF);
    double best_ref = 1e30;
    for (int r = 0; r < 5; r++) {
        double t0 = now_s();
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, FF, d, 1, a, d, b, d, 0, c, FF);
        double dt = now_s() - t0;
        if (dt < best_ref) best_ref = dt;
    }
    double ref_gflops = 2.0 * n * FF * d / best_ref / 1e9;

    double params = (double)L * (2.0 * d * d + 2.0 * kv * d + 3.0 * FF * d) + (double)V * d;
    double attn = (double)L * 2.0 * 2.0 * H * (d / H) * ((double)W * (W + 1) / 2);
    double best = 1e30;
    for (int r = 0; r < 3; r++) {
        double t0 = now_s();
        if (forward_prefill(f, 0, ids, W, 0, err, sizeof err)) log_die("", "%s", err);
        double dt = now_s() - t0;
        if (dt < best) best = dt;
    }
    double gflops = (2.0 * params * W + attn) / best / 1e9;
    printf("model: d=%d layers=%d heads=%d/%d ff=%d vocab=%d window=%d (%.1fM params), openblas threads=%d\n", d, L,
           H, HKV, FF, V, W, params / 1e6, openblas_get_num_threads());
    printf("prefill: %.0f tokens/s, %.1f GFLOP/s\n", W / best, gflops);
    printf("reference cblas_sgemm [%dx%d]x[%dx%d]^T: %.1f GFLOP/s\n", n, d, FF, d, ref_gflops);
    printf("ratio: %.2f of cblas_sgemm\n", gflops / ref_gflops);
    forward_destroy(&f);
    return 0;
}
