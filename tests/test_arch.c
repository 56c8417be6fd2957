/* test_arch.c - the architectures beside llama (qwen2, qwen3, olmo2, phi3, gemma2, gpt2,
 * gptneox; llama3: head_dim and Llama 3 RoPE frequencies) and
 * the kernels they added, without reference data:
 *
 * 1. kernels: GELU table vs its element-wise reference on all 65536 halves
 *    (bit-identical) and vs the exact tanh formula (within the fp16 steps);
 *    LayerNorm vs its two-pass definition; NeoX RoPE vs the interleaved
 *    RoPE on permuted input (the same rotation), partial rotary untouched.
 * 2. loading: each preset of randmodel.h, written by the GGUF writer into
 *    memory, loads with the configuration its keys say; F16, BF16 and Q8_0
 *    copies load and compute nearly the same logits; malformed files
 *    (missing or extra tensor, wrong shape, missing key, unsupported arch or
 *    RoPE scaling) are rejected with messages naming the culprit.
 * 3. forward invariants per architecture: BLAS vs reference path, prefill
 *    vs token-by-token decode, batched multi-slot decode vs each slot alone,
 *    learned positions refusing positions past their table.
 * Agreement with llama.cpp itself is conformance_arch.mjs. */
#include <math.h>

#include "errbound.h"
#include "forward.h"
#include "gguf_writer.h"
#include "kernels.h"
#include "log.h"
#include "model.h"
#include "randmodel.h"
#include "smallm.h"
#include "testutil.h"

static char err[LOG_ERRLEN];
static uint64_t g_rng = 4242;

static float frand(void) {
    g_rng = g_rng * 6364136223846793005ULL + 1442695040888963407ULL;
    return (float)((double)(g_rng >> 11) * 0x1.0p-53 * 2.0 - 1.0);
}

/* The largest |a_i - b_i| / (2 e_i): two fp32 evaluations, each within e_i
 * of the exact logit (errbound.h), are within 2 e_i of each other. */
static double max_ratio(const float *a, const float *b, const double *e, size_t n) {
    double w = 0;
    for (size_t i = 0; i < n; i++) w = fmax(w, fabs((double)a[i] - b[i]) / (2 * e[i]));
    return w;
}

static double max_diff(const float *a, const float *b, size_t n) {
    double w = 0;
    for (size_t i = 0; i < n; i++) w = fmax(w, fabs((double)a[i] - b[i]));
    return w;
}

/* ---- 1. kernels ------------------------------------------------------------ */

static float half_to_float(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000) << 16, exp = (h >> 10) & 0x1f, man = h & 0x3ff, bits;
    if (exp == 0) {
        if (man == 0) bits = sign;
        else {
            exp = 127 - 15 + 1;
            while (!(man & 0x400)) man <<= 1, exp--;
            bits = sign | (exp << 23) | ((man & 0x3ff) << 13);
        }
    } else bits = sign | (exp == 31 ? 0x7f800000u : (exp + 127 - 15) << 23) | (man << 13);
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

/* kern_gelu_bias at the current level against kern_add_bias then
 * kern_gelu_ref, bit for bit (tolerance 0: the same fp32 sum, the same
 * fp16 rounding, the same table), on the inputs where a rounding could
 * go astray: the exact midpoints between adjacent halves (ties to even),
 * one fp32 ulp either side of them, the edges of fp16's range and
 * subnormals, -0, the clamps at +-10, infinities and NaN (compared as
 * NaN: its payload may differ), in rows of an odd width. */
static void check_gelu_ties_bias(void) {
    enum { W = 37, ROWS = 3 * 2048 / W + 1 };
    float *x = calloc((size_t)ROWS * W, sizeof(float)), *y = malloc(sizeof(float) * ROWS * W), bias[W];
    int n = 0;
    for (uint32_t h = 0; h < 0x7c00u && n + 3 <= ROWS * W; h += 31) { /* positive finite halves, both signs */
        float a = half_to_float((uint16_t)h), c = half_to_float((uint16_t)(h + 1)), mid = (a + c) / 2; /* exact */
        float sg = (h / 31) % 2 ? -1.0f : 1.0f;
        x[n++] = sg * mid, x[n++] = sg * nextafterf(mid, 0), x[n++] = sg * nextafterf(mid, 1e30f);
    }
    float special[] = {-0.0f, 65504.0f, 65520.0f, -65520.0f, 0x1p-24f, 0x1p-25f, 0x1.8p-25f, 10.0f, -10.0f,
                       INFINITY, -INFINITY, NAN};
    for (size_t i = 0; i < sizeof special / sizeof *special; i++) x[ROWS * W - 1 - i] = special[i];
    for (int pass = 0; pass < 2; pass++) {
        for (int i = 0; i < W; i++) bias[i] = pass ? 4 * frand() : 0.0f;
        memcpy(y, x, sizeof(float) * ROWS * W);
        kern_gelu_bias(y, pass ? bias : NULL, ROWS, W);
        int bad = -1;
        for (int t = 0; t < ROWS && bad < 0; t++)
            for (int i = 0; i < W; i++) {
                float v = x[t * W + i];
                if (pass) kern_add_bias(&v, bias + i, 1, 1);
                kern_gelu_ref(&v, 1);
                float got = y[t * W + i];
                if (isnan(v) ? !isnan(got) : memcmp(&v, &got, sizeof v)) {
                    bad = t * W + i;
                    break;
                }
            }
        TU_CHECK(bad < 0, "%s: kern_gelu_bias(%g%s) differs from the reference", smallm_level_name(smallm_level()),
                 bad < 0 ? 0.0 : x[bad], pass ? " + bias" : "");
    }
    free(x), free(y);
}

static void check_gelu(void) {
    enum { N = 65536 + 4096 };
    float *a = malloc(sizeof(float) * N), *b = malloc(sizeof(float) * N), *x = malloc(sizeof(float) * N);
    int n = 0;
    for (uint32_t h = 0; h < 65536; h++) {
        float f = half_to_float((uint16_t)h);
        if (isfinite(f)) x[n++] = f;
    }
    for (int i = 0; i < 4096; i++) x[n++] = 12.0f * frand(); /* between the halves */
    x[0] = -10.0f, x[1] = 10.0f, x[2] = nextafterf(-10.0f, 0), x[3] = nextafterf(10.0f, 0);
    memcpy(b, x, sizeof(float) * n);
    kern_gelu_ref(b, (size_t)n);
    /* Every level computes the same fp16 rounding and reads the same table,
     * so the bits must equal the reference's (tolerance 0), on an odd
     * length (the vector tail) and at every offset of the vector. */
    int worst_i = 0;
    for (int lv = 0; lv <= (int)smallm_best(); lv++) {
        TU_REQUIRE(smallm_set_level((smallm_level_t)lv) == 0, "level %d", lv);
        for (int off = 0; off < 8; off++) {
            memcpy(a, x, sizeof(float) * n);
            kern_gelu(a + off, (size_t)(n - off));
            TU_CHECK(!memcmp(a + off, b + off, sizeof(float) * (n - off)), "%s: kern_gelu and kern_gelu_ref differ",
                     smallm_level_name((smallm_level_t)lv));
        }
        check_gelu_ties_bias();
    }
    smallm_set_level(smallm_best());
    memcpy(a, x, sizeof(float) * n);
    kern_gelu(a, (size_t)n);
    double worst = 0;
    for (int i = 0; i < n; i++) {
        double v = x[i], g = 0.5 * v * (1 + tanh(0.7978845608028654 * (v + 0.044715 * v * v * v)));
        if (v <= -10) g = 0;
        if (v >= 10) g = v;
        /* fp16 steps: the input (slope of GELU <= 1.13) and the output. */
        double tol = (fabs(v) * 1.13 + fabs(g)) * 0x1p-11 + 1e-7;
        if (fabs(a[i] - g) / tol > worst) worst = fabs(a[i] - g) / tol, worst_i = i;
    }
    TU_CHECK(worst <= 1.0, "gelu(%g) = %g is beyond the fp16 steps of the exact value", x[worst_i], a[worst_i]);
    TU_CHECK(a[0] == 0.0f && a[1] == 10.0f, "gelu clamps at -10 and 10: %g %g", a[0], a[1]);
    fprintf(stderr, "gelu: %d inputs, table == reference, worst error %.2f of the fp16 bound\n", n, worst);
    free(a), free(b), free(x);
}

static void check_layernorm(void) {
    int sizes[] = {1, 2, 7, 64, 129, 768};
    for (size_t k = 0; k < sizeof sizes / sizeof *sizes; k++) {
        int n = sizes[k];
        float *x = malloc(sizeof(float) * n), *g = malloc(sizeof(float) * n), *b = malloc(sizeof(float) * n),
              *y = malloc(sizeof(float) * n);
        for (int i = 0; i < n; i++) x[i] = 3.0f + 5.0f * frand(), g[i] = 1.0f + frand(), b[i] = frand();
        kern_layernorm(y, x, g, b, n, 1e-5f);
        double mean = 0, var = 0, worst = 0;
        for (int i = 0; i < n; i++) mean += x[i];
        mean /= n;
        for (int i = 0; i < n; i++) var += (x[i] - mean) * (x[i] - mean);
        var /= n;
        /* fp32: the mean rounded (u |mean|, through s g), x - mean, the
         * scale, two products (4 u of the core), + b (u of the result); the
         * double sums are exact to ~n 2^-53. */
        double s = 1 / sqrt(var + 1e-5);
        for (int i = 0; i < n; i++) {
            double core = (x[i] - mean) * s * g[i], want = core + b[i];
            double tol = EB_U * (4 * fabs(core) + fabs(mean) * s * fabs(g[i]) + fabs(want)) + 1e-12;
            worst = fmax(worst, fabs(y[i] - want) / tol);
        }
        TU_CHECK(worst <= 1, "layernorm n=%d: error %g of the bound", n, worst);
        kern_layernorm(y, x, g, NULL, n, 1e-5f); /* no bias */
        double w2 = 0;
        for (int i = 0; i < n; i++) {
            double core = (x[i] - mean) * s * g[i];
            w2 = fmax(w2, fabs(y[i] - core) / (EB_U * (5 * fabs(core) + fabs(mean) * s * fabs(g[i])) + 1e-12));
        }
        TU_CHECK(w2 <= 1, "layernorm without bias n=%d: error %g of the bound", n, w2);
        free(x), free(g), free(b), free(y);
    }
}

/* NeoX pairs (i, i + r/2) are the interleaved pairs (2i, 2i+1) of the
 * permuted head: rope_neox(x) == P^-1 rope(P x). */
static void check_rope_neox(void) {
    int heads = 3, hd = 16;
    int rdims[] = {2, 4, 8, 16};
    for (size_t k = 0; k < 4; k++) {
        int r = rdims[k], half = r / 2;
        float x[48], p[48], x0[48];
        for (int i = 0; i < heads * hd; i++) x[i] = x0[i] = frand();
        for (int h = 0; h < heads; h++)
            for (int i = 0; i < hd; i++) {
                int src = i;
                if (i < r) src = (i % 2) ? (i / 2 + half) : (i / 2);
                p[h * hd + i] = x[h * hd + src];
            }
        kern_rope_neox(x, heads, hd, r, 37, 10000.0f);
        kern_rope(p, heads, hd, r, 37, 10000.0f);
        double worst = 0;
        for (int h = 0; h < heads; h++)
            for (int i = 0; i < hd; i++) {
                int src = i;
                if (i < r) src = (i % 2) ? (i / 2 + half) : (i / 2);
                worst = fmax(worst, fabs(p[h * hd + i] - x[h * hd + src]));
            }
        TU_CHECK(worst == 0, "rope_neox rope_dim %d differs from the permuted interleaved rope by %g", r, worst);
        for (int h = 0; h < heads; h++)
            for (int i = r; i < hd; i++)
                TU_CHECK(x[h * hd + i] == x0[h * hd + i], "rope_neox touched dim %d of head %d (rope_dim %d)", i, h, r);
        float y[48];
        memcpy(y, x0, sizeof y);
        kern_rope_neox(y, heads, hd, r, 0, 10000.0f);
        TU_CHECK(!memcmp(y, x0, sizeof y), "rope_neox at position 0 must be the identity");
    }
}

static void check_small_kernels(void) {
    float g[13], u[13], y[2][13], b[13];
    for (int i = 0; i < 13; i++) g[i] = 4 * frand(), u[i] = frand(), b[i] = frand(), y[0][i] = y[1][i] = frand();
    float gg[13];
    memcpy(gg, g, sizeof g);
    kern_swiglu(gg, u, 13);
    for (int i = 0; i < 13; i++)
    {
        /* expf within one ulp (2 u), then 1 +, the division, the product: 5 u
         * of the result (the exponential's error reaches silu damped by 1 - sigma). */
        double want = g[i] / (1 + exp(-g[i])) * u[i];
        TU_CHECK(fabs(gg[i] - want) <= 5 * EB_U * fabs(want) + 0x1p-149, "swiglu %d: %.9g vs %.9g", i, gg[i], want);
    }
    float y0[2][13];
    memcpy(y0, y, sizeof y);
    kern_add_bias(&y[0][0], b, 2, 13);
    for (int t = 0; t < 2; t++)
        for (int i = 0; i < 13; i++) TU_CHECK(y[t][i] == y0[t][i] + b[i], "add_bias %d %d", t, i);
}

/* ---- 2. loading ------------------------------------------------------------ */

/* A model in memory from a preset (vocab 512, synthetic tokenizer), with
 * the 2-D weights of the given type, and Q/K/V fused into attn_qkv when
 * fused (llama and qwen2 store them apart by default). */
static model_t *build_ex(const char *preset, ggml_type_t type, int fused) {
    rm_spec_t s;
    TU_REQUIRE(rm_preset(preset, &s) == 0, "preset %s", preset);
    s.n_vocab = 512;
    s.type = type;
    s.fused_qkv = fused;
    gguf_writer_t *w = gguf_writer_new(err, sizeof err);
    TU_REQUIRE(w, "%s", err);
    int rc = rm_add_model(w, &s, err, sizeof err);
    if (!rc) rc = rm_add_spm_vocab(w, s.n_vocab, err, sizeof err);
    TU_REQUIRE(rc == 0, "%s: %s", preset, err);
    void *buf;
    size_t len;
    rc = gguf_writer_to_buffer(w, &buf, &len, err, sizeof err);
    TU_REQUIRE(rc == 0, "%s", err);
    gguf_writer_destroy(&w);
    gguf_t *g = gguf_open_buffer(buf, len, preset, err, sizeof err);
    TU_REQUIRE(g, "%s: %s", preset, err);
    model_t *m = model_from_gguf(g, buf, NULL, err, sizeof err);
    TU_REQUIRE(m, "%s: %s", preset, err);
    return m;
}

static model_t *build(const char *preset, ggml_type_t type) { return build_ex(preset, type, 0); }

/* Rewrites a model through the writer with one change: a tensor dropped, a
 * tensor added, a key dropped, or a string key replaced.  Returns
 * model_from_gguf's result (NULL with err set when rejected). */
typedef struct {
    const char *drop_tensor, *add_tensor, *drop_key, *set_key, *set_value, *set_u32_key;
    uint64_t add_ne0;
    uint32_t set_u32;
    const char *reshape_tensor; /* written with ne0 + 1 columns */
} change_t;

static model_t *rebuild(const char *preset, change_t c) {
    rm_spec_t s;
    rm_preset(preset, &s);
    s.n_vocab = 512;
    gguf_writer_t *w = gguf_writer_new(err, sizeof err), *w2 = gguf_writer_new(err, sizeof err);
    int rc = rm_add_model(w, &s, err, sizeof err);
    if (!rc) rc = rm_add_spm_vocab(w, s.n_vocab, err, sizeof err);
    TU_REQUIRE(rc == 0 && w2, "%s", err);
    void *buf, *buf2;
    size_t len, len2;
    rc = gguf_writer_to_buffer(w, &buf, &len, err, sizeof err);
    TU_REQUIRE(rc == 0, "%s", err);
    gguf_t *g = gguf_open_buffer(buf, len, preset, err, sizeof err);
    TU_REQUIRE(g, "%s", err);
    for (uint64_t i = 0; i < gguf_n_kv(g); i++) {
        const gguf_kv_t *kv = gguf_kv_at(g, i);
        if (c.drop_key && kv->key.len == strlen(c.drop_key) && !memcmp(kv->key.ptr, c.drop_key, kv->key.len))
            continue;
        if (c.set_key && kv->key.len == strlen(c.set_key) && !memcmp(kv->key.ptr, c.set_key, kv->key.len))
            continue;
        if (c.set_u32_key && kv->key.len == strlen(c.set_u32_key) &&
            !memcmp(kv->key.ptr, c.set_u32_key, kv->key.len))
            continue;
        rc = gguf_writer_copy_kv(w2, kv, err, sizeof err);
        TU_REQUIRE(rc == 0, "%s", err);
    }
    if (c.set_key) {
        rc = gguf_writer_add_str(w2, c.set_key, c.set_value, SIZE_MAX, err, sizeof err);
        TU_REQUIRE(rc == 0, "%s", err);
    }
    if (c.set_u32_key) {
        rc = gguf_writer_add_u32(w2, c.set_u32_key, c.set_u32, err, sizeof err);
        TU_REQUIRE(rc == 0, "%s", err);
    }
    for (uint64_t i = 0; i < gguf_n_tensors(g); i++) {
        const gguf_tensor_t *t = gguf_tensor_at(g, i);
        char name[128];
        snprintf(name, sizeof name, "%.*s", (int)t->name.len, t->name.ptr);
        if (c.drop_tensor && !strcmp(name, c.drop_tensor)) continue;
        uint64_t n = gguf_tensor_nelem(t), ne[4] = {t->ne[0], t->ne[1], t->ne[2], t->ne[3]};
        float *x = calloc(n + t->ne[1] * 4, sizeof(float));
        TU_REQUIRE(x, "out of memory");
        gguf_tensor_to_f32(t, x);
        if (c.reshape_tensor && !strcmp(name, c.reshape_tensor)) ne[0] += 1; /* data past n are zeros */
        rc = gguf_writer_add_tensor(w2, name, GGML_TYPE_F32, t->n_dims, ne, x, err, sizeof err);
        TU_REQUIRE(rc == 0, "%s", err);
        free(x);
    }
    if (c.add_tensor) {
        float z[64] = {0};
        uint64_t ne[1] = {c.add_ne0};
        rc = gguf_writer_add_tensor(w2, c.add_tensor, GGML_TYPE_F32, 1, ne, z, err, sizeof err);
        TU_REQUIRE(rc == 0, "%s", err);
    }
    rc = gguf_writer_to_buffer(w2, &buf2, &len2, err, sizeof err);
    TU_REQUIRE(rc == 0, "%s", err);
    gguf_destroy(&g);
    free(buf);
    gguf_writer_destroy(&w);
    gguf_writer_destroy(&w2);
    gguf_t *g2 = gguf_open_buffer(buf2, len2, preset, err, sizeof err);
    TU_REQUIRE(g2, "%s", err);
    return model_from_gguf(g2, buf2, NULL, err, sizeof err);
}

static void expect_rejected(const char *preset, change_t c, const char *needle) {
    model_t *m = rebuild(preset, c);
    TU_CHECK(!m && strstr(err, needle), "%s: expected an error mentioning '%s', got %s", preset, needle,
             m ? "a model" : err);
    model_destroy(&m);
}

static void check_loading(void) {
    model_t *m = build("gpt2", GGML_TYPE_F32);
    const model_config_t *c = &m->cfg;
    TU_CHECK(c->arch == MODEL_ARCH_GPT2 && c->norm == MODEL_NORM_LAYER && c->rope == MODEL_ROPE_NONE &&
                 c->act == MODEL_ACT_GELU && !c->parallel_residual && c->rope_dim == 0, "gpt2 config");
    TU_CHECK(m->pos_embd.data && m->output.data == m->tok_embd.data && m->output_norm_b && m->layers[0].bq && m->layers[0].bk &&
                 m->layers[0].bv && m->layers[0].bo && m->layers[0].b_up && m->layers[0].b_down &&
                 m->layers[0].attn_norm_b && m->layers[0].ffn_norm_b && !m->layers[0].w_gate.data, "gpt2 weights");
    TU_CHECK((const float *)m->layers[1].wk.data == (const float *)m->layers[1].wq.data + 128 * 128 &&
                 (const float *)m->layers[1].wv.data == (const float *)m->layers[1].wk.data + 128 * 128,
             "gpt2 fused QKV views");
    model_destroy(&m);
    m = build("gptneox", GGML_TYPE_F32);
    c = &m->cfg;
    TU_CHECK(c->arch == MODEL_ARCH_GPTNEOX && c->rope == MODEL_ROPE_NEOX && c->rope_dim == 8 && c->parallel_residual &&
                 !m->pos_embd.data && m->output.data != m->tok_embd.data, "gptneox config");
    model_destroy(&m);
    m = build("qwen2", GGML_TYPE_F32);
    c = &m->cfg;
    TU_CHECK(c->arch == MODEL_ARCH_QWEN2 && c->norm == MODEL_NORM_RMS && c->rope == MODEL_ROPE_NEOX &&
                 c->n_head_kv == 2 && m->layers[2].bq && !m->layers[2].bo && !m->output_norm_b &&
                 m->output.data == m->tok_embd.data && fabsf(c->rope_base - 1e6f) < 1 && fabsf(c->norm_eps - 1e-6f) < 1e-9f,
             "qwen2 config");
    char desc[256];
    model_describe(m, desc, sizeof desc);
    TU_CHECK(strstr(desc, "qwen2") && strstr(desc, "neox") && strstr(desc, "tied"), "describe: %s", desc);
    model_destroy(&m);

    m = build("llama3", GGML_TYPE_F32);
    TU_CHECK(m->cfg.head_dim == 32 && m->cfg.n_embd == 96 && m->rope_freqs && m->rope_freqs[0] == 1.0f &&
                 m->rope_freqs[15] == 32.0f && m->layers[0].wq.rows == 4 * 32 && m->layers[0].wo.cols == 4 * 32,
             "llama3: head_dim 32 beside d 96, RoPE frequency factors");
    model_destroy(&m);
    m = build("qwen3", GGML_TYPE_F32);
    TU_CHECK(m->cfg.arch == MODEL_ARCH_QWEN3 && m->cfg.qk_norm == MODEL_QK_NORM_HEAD && m->cfg.head_dim == 32 &&
                 m->layers[1].q_norm && m->layers[1].k_norm && m->layers[1].attn_norm && !m->layers[1].attn_post_norm,
             "qwen3 config");
    model_destroy(&m);
    m = build("olmo2", GGML_TYPE_F32);
    TU_CHECK(m->cfg.arch == MODEL_ARCH_OLMO2 && m->cfg.qk_norm == MODEL_QK_NORM_ALL && !m->layers[1].attn_norm &&
                 !m->layers[1].ffn_norm && m->layers[1].attn_post_norm && m->layers[1].ffn_post_norm &&
                 m->output.data != m->tok_embd.data,
             "olmo2 config");
    model_describe(m, desc, sizeof desc);
    TU_CHECK(strstr(desc, "q/k norm") && strstr(desc, "post-norms"), "describe: %s", desc);
    model_destroy(&m);
    /* Gemma 2: the preset's caps and window (randmodel.h); even layers
     * slide (llama.cpp's pattern 2: l % 2 < 1), the window holding the
     * query's own position and the 15 before it. */
    m = build("gemma2", GGML_TYPE_F32);
    TU_CHECK(m->cfg.arch == MODEL_ARCH_GEMMA2 && m->cfg.act == MODEL_ACT_GEGLU &&
                 m->cfg.embd_scale == sqrtf(128.0f) && m->cfg.attn_softcap == 2.0f && m->cfg.final_softcap == 15.0f &&
                 m->cfg.swa_window == 16 && m->cfg.swa_period == 2 && !m->cfg.query_scale_dim &&
                 m->layers[3].attn_norm && m->layers[3].attn_post_norm && m->layers[3].ffn_norm &&
                 m->layers[3].ffn_post_norm && m->output.data == m->tok_embd.data,
             "gemma2 config");
    TU_CHECK(model_attn_first(&m->cfg, 0, 20) == 5 && model_attn_first(&m->cfg, 2, 15) == 0 &&
                 model_attn_first(&m->cfg, 1, 20) == 0 && model_attn_first(&m->cfg, 3, 100) == 0,
             "gemma2: sliding window on even layers");
    model_describe(m, desc, sizeof desc);
    TU_CHECK(strstr(desc, "geglu") && strstr(desc, "soft-cap") && strstr(desc, "window 16"), "describe: %s", desc);
    model_destroy(&m);

    expect_rejected("gpt2", (change_t){.drop_tensor = "blk.1.attn_qkv.bias"}, "blk.1.attn_qkv.bias");
    expect_rejected("gpt2", (change_t){.drop_tensor = "position_embd.weight"}, "position_embd.weight");
    expect_rejected("gpt2", (change_t){.drop_key = "gpt2.attention.layer_norm_epsilon"}, "layer_norm_epsilon");
    expect_rejected("gpt2", (change_t){.reshape_tensor = "blk.0.ffn_up.weight"}, "blk.0.ffn_up.weight");
    expect_rejected("gptneox", (change_t){.drop_key = "gptneox.use_parallel_residual"}, "use_parallel_residual");
    expect_rejected("gptneox", (change_t){.drop_tensor = "output.weight"}, "output.weight");
    expect_rejected("qwen2", (change_t){.add_tensor = "rope_freqs.weight", .add_ne0 = 8}, "rope_freqs.weight");
    expect_rejected("llama", (change_t){.add_tensor = "rope_freqs.weight", .add_ne0 = 7}, "rope_freqs.weight");
    expect_rejected("qwen2", (change_t){.set_u32_key = "qwen2.attention.key_length", .set_u32 = 32},
                    "which qwen2 does not support");
    expect_rejected("qwen3", (change_t){.drop_tensor = "blk.2.attn_k_norm.weight"}, "blk.2.attn_k_norm.weight");
    expect_rejected("olmo2", (change_t){.drop_tensor = "blk.0.post_ffw_norm.weight"}, "blk.0.post_ffw_norm.weight");
    expect_rejected("gemma2", (change_t){.drop_tensor = "blk.3.post_attention_norm.weight"},
                    "blk.3.post_attention_norm.weight");
    expect_rejected("gemma2", (change_t){.set_key = "gemma2.attention.sliding_window", .set_value = "wide"},
                    "sliding_window");
    expect_rejected("olmo2", (change_t){.add_tensor = "blk.0.attn_norm.weight", .add_ne0 = 64},
                    "blk.0.attn_norm.weight");
    expect_rejected("qwen2", (change_t){.set_key = "qwen2.rope.scaling.type", .set_value = "yarn"}, "yarn");
    expect_rejected("qwen2", (change_t){.set_key = "general.architecture", .set_value = "falcon"}, "falcon");
    expect_rejected("qwen2", (change_t){.set_u32_key = "qwen2.rope.dimension_count", .set_u32 = 8},
                    "rope.dimension_count 8 must equal");
}

/* ---- 3. forward invariants ------------------------------------------------- */

static void check_forward(const char *preset) {
    model_t *m = build(preset, GGML_TYPE_F32);
    int V = m->cfg.n_vocab, n = 48, P = 20;
    int32_t ids[48];
    for (int i = 0; i < n; i++) ids[i] = (int32_t)((i * 7919 + 13) % V);
    ids[0] = 1;
    forward_t *fb = forward_new(m, n, n, 4, err, sizeof err), *fr = forward_new(m, n, n, 1, err, sizeof err);
    TU_REQUIRE(fb && fr, "%s", err);
    forward_set_reference(fr, 1);
    int rc = forward_prefill(fb, 0, ids, n, 0, err, sizeof err);
    TU_REQUIRE(rc == 0, "%s", err);
    float *full = malloc(sizeof(float) * n * V);
    memcpy(full, forward_logits(fb), sizeof(float) * n * V);
    rc = forward_prefill(fr, 0, ids, n, 0, err, sizeof err);
    TU_REQUIRE(rc == 0, "%s", err);
    /* Tolerances: errbound.h's bound on each logit of an fp32 evaluation
     * (GELU's fp16 steps included), for the text and for the text's first
     * P ids followed by each slot's token; two paths within twice it. */
    double *el = malloc(sizeof(double) * n * V), *ee = malloc(sizeof(double) * n * V);
    double *sl = malloc(sizeof(double) * (P + 1) * V), *se = malloc(sizeof(double) * 4 * V);
    TU_REQUIRE(eb_forward(m, ids, n, el, ee, NULL) == 0, "%s: bounded forward", preset);
    double d_ref = max_ratio(full, forward_logits(fr), ee, (size_t)n * V), spread = 0;
    for (size_t i = 0; i < (size_t)n * V; i++) spread = fmax(spread, fabs(full[i]));
    TU_CHECK(d_ref <= 1, "%s: BLAS vs reference logits differ by %g of the bound", preset, d_ref);
    TU_CHECK(spread > 3 && spread < 100, "%s: logits up to %g: degenerate model", preset, spread);

    double d_dec = 0;
    for (int t = 0; t < n; t++) {
        rc = forward_batch(fb, &ids[t], NULL, &t, 1, 1, err, sizeof err);
        TU_REQUIRE(rc == 0, "%s", err);
        d_dec = fmax(d_dec, max_ratio(forward_logits(fb), full + (size_t)t * V, ee + (size_t)t * V, V));
    }
    TU_CHECK(d_dec <= 1, "%s: decode vs prefill differ by %g of the bound", preset, d_dec);

    rc = forward_prefill(fb, 0, ids, P, 0, err, sizeof err);
    TU_REQUIRE(rc == 0, "%s", err);
    for (int s = 1; s < 4; s++) forward_copy_slot(fb, 0, s, P);
    int32_t next[4] = {ids[P], 5, 300, 77}, alt[48];
    memcpy(alt, ids, sizeof alt);
    for (int s = 0; s < 4; s++) {
        alt[P] = next[s];
        double *tmp = malloc(sizeof(double) * (P + 1) * V);
        TU_REQUIRE(eb_forward(m, alt, P + 1, sl, tmp, NULL) == 0, "%s: bounded forward", preset);
        memcpy(se + (size_t)s * V, tmp + (size_t)P * V, sizeof(double) * V);
        free(tmp);
    }
    int slots[4] = {0, 1, 2, 3}, pos[4] = {P, P, P, P};
    rc = forward_batch(fb, next, slots, pos, 4, 1, err, sizeof err);
    TU_REQUIRE(rc == 0, "%s", err);
    float *batched = malloc(sizeof(float) * 4 * V);
    memcpy(batched, forward_logits(fb), sizeof(float) * 4 * V);
    double d_slot = 0;
    for (int s = 0; s < 4; s++) {
        rc = forward_prefill(fr, 0, ids, P, 0, err, sizeof err);
        TU_REQUIRE(rc == 0, "%s", err);
        rc = forward_batch(fr, &next[s], NULL, &pos[s], 1, 1, err, sizeof err);
        TU_REQUIRE(rc == 0, "%s", err);
        d_slot = fmax(d_slot, max_ratio(batched + (size_t)s * V, forward_logits(fr), se + (size_t)s * V, V));
    }
    TU_CHECK(d_slot <= 1, "%s: batched slots vs alone differ by %g of the bound", preset, d_slot);
    TU_CHECK(max_ratio(batched, full + (size_t)P * V, ee + (size_t)P * V, V) <= 1, "%s: slot 0 continues the text",
             preset);
    free(el), free(ee), free(sl), free(se);

    /* The RMSNorm architectures may store Q/K/V fused (attn_qkv) as
     * llama.cpp accepts: the same weights give the same logits. */
    if (m->cfg.norm == MODEL_NORM_RMS) {
        model_t *mf = build_ex(preset, GGML_TYPE_F32, 1);
        TU_CHECK((const float *)mf->layers[0].wk.data ==
                     (const float *)mf->layers[0].wq.data + (size_t)m->cfg.n_head * m->cfg.head_dim * m->cfg.n_embd,
                 "%s: fused views",
                 preset);
        forward_t *ff = forward_new(mf, n, n, 1, err, sizeof err);
        TU_REQUIRE(ff, "%s", err);
        rc = forward_prefill(ff, 0, ids, n, 0, err, sizeof err);
        TU_REQUIRE(rc == 0, "%s", err);
        double dfused = max_diff(full, forward_logits(ff), (size_t)n * V);
        TU_CHECK(dfused == 0, "%s: fused QKV changes logits by %g", preset, dfused);
        forward_destroy(&ff);
        model_destroy(&mf);
    }

    /* Quantised copies: same model up to the rounding of the weights. */
    ggml_type_t types[3] = {GGML_TYPE_F16, GGML_TYPE_BF16, GGML_TYPE_Q8_0};
    double tolq[3] = {0.05, 0.3, 1.0}, dq[3]; /* |logit| reaches ~15 */
    for (int k = 0; k < 3; k++) {
        model_t *mq = build(preset, types[k]);
        forward_t *fq = forward_new(mq, n, n, 1, err, sizeof err);
        TU_REQUIRE(fq, "%s", err);
        rc = forward_prefill(fq, 0, ids, n, 0, err, sizeof err);
        TU_REQUIRE(rc == 0, "%s", err);
        dq[k] = max_diff(full, forward_logits(fq), (size_t)n * V);
        TU_CHECK(dq[k] < tolq[k], "%s: %s weights change logits by %g", preset, quant_type_name(types[k]), dq[k]);
        forward_destroy(&fq);
        model_destroy(&mq);
    }
    fprintf(stderr, "%-12s of the bound: BLAS/ref %.2f  decode/prefill %.2f  slots %.2f  |logit| <= %.1f  F16 %.1e BF16 %.1e Q8_0 %.1e\n",
            preset, d_ref, d_dec, d_slot, spread, dq[0], dq[1], dq[2]);

    if (m->pos_embd.data) { /* learned positions are a hard limit */
        forward_t *fl = forward_new(m, m->cfg.n_ctx_train + 1, 1, 1, err, sizeof err);
        TU_REQUIRE(fl, "%s", err);
        int p = m->cfg.n_ctx_train;
        TU_CHECK(forward_batch(fl, ids, NULL, &p, 1, 1, err, sizeof err) == -1 && strstr(err, "learned positions"),
                 "%s: position %d past the table: %s", preset, p, err);
        forward_destroy(&fl);
    }
    free(full), free(batched);
    forward_destroy(&fb);
    forward_destroy(&fr);
    model_destroy(&m);
}

int main(void) {
    check_gelu();
    check_layernorm();
    check_rope_neox();
    check_small_kernels();
    check_loading();
    const char *presets[] = {"llama", "llama3", "qwen2", "qwen3", "olmo2", "phi3", "gemma2", "gpt2", "gptneox", "gptneox-seq"};
    for (size_t i = 0; i < sizeof presets / sizeof *presets; i++) check_forward(presets[i]);
    return tu_finish("test_arch");
}
