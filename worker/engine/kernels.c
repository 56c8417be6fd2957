/* kernels.c - see kernels.h. */
#include "kernels.h"

#include <assert.h>
#include <cblas.h>
#include <math.h>
#include <pthread.h>
#include <stdint.h>
#include <string.h>

#include "half.h"

void kern_matmul(float *y, int ldy, const float *x, const float *w, int T, int in, int out, float beta) {
    assert(T > 0 && in > 0 && out > 0 && ldy >= out);
    if (T == 1) {
        /* A matrix-vector product: sgemv avoids sgemm's packing overhead. */
        cblas_sgemv(CblasRowMajor, CblasNoTrans, out, in, 1.0f, w, in, x, 1, beta, y, 1);
        return;
    }
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, T, out, in, 1.0f, x, in, w, in, beta, y, ldy);
}

void kern_matmul_ref(float *y, int ldy, const float *x, const float *w, int T, int in, int out, float beta) {
    for (int t = 0; t < T; t++)
        for (int o = 0; o < out; o++) {
            double s = 0;
            for (int i = 0; i < in; i++) s += (double)x[(size_t)t * in + i] * w[(size_t)o * in + i];
            float *dst = &y[(size_t)t * ldy + o];
            *dst = (float)s + (beta != 0.0f ? beta * *dst : 0.0f);
        }
}

void kern_rmsnorm(float *out, const float *x, const float *g, int n, float eps) {
    double ss = 0;
    for (int i = 0; i < n; i++) ss += (double)x[i] * x[i];
    float scale = (float)(1.0 / sqrt(ss / n + eps));
    for (int i = 0; i < n; i++) out[i] = x[i] * scale * g[i];
}

void kern_layernorm(float *out, const float *x, const float *g, const float *b, int n, float eps) {
    double sum = 0, ss = 0;
    for (int i = 0; i < n; i++) sum += x[i];
    double mean = sum / n;
    for (int i = 0; i < n; i++) ss += (x[i] - mean) * (x[i] - mean);
    float scale = (float)(1.0 / sqrt(ss / n + eps)), fmean = (float)mean;
    for (int i = 0; i < n; i++) out[i] = (x[i] - fmean) * scale * g[i] + (b ? b[i] : 0.0f);
}

void kern_add_bias(float *y, const float *b, int T, int n) {
    for (int t = 0; t < T; t++)
        for (int i = 0; i < n; i++) y[(size_t)t * n + i] += b[i];
}

/* fp32 -> IEEE half, round-to-nearest-even (ggml_compute_fp32_to_fp16, the
 * FP16 library's algorithm; the FPU does the rounding), and back. */
static uint16_t f32_to_f16(float f) {
    const float scale_to_inf = 0x1.0p+112f, scale_to_zero = 0x1.0p-110f;
    uint32_t w, bits;
    memcpy(&w, &f, 4);
    float base = (fabsf(f) * scale_to_inf) * scale_to_zero;
    uint32_t shl1_w = w + w, sign = w & 0x80000000u, bias = shl1_w & 0xFF000000u;
    if (bias < 0x71000000u) bias = 0x71000000u;
    uint32_t bb = (bias >> 1) + 0x07800000u;
    float fb;
    memcpy(&fb, &bb, 4);
    base = fb + base;
    memcpy(&bits, &base, 4);
    uint32_t nonsign = ((bits >> 13) & 0x00007C00u) + (bits & 0x00000FFFu);
    return (uint16_t)((sign >> 16) | (shl1_w > 0xFF000000u ? 0x7E00u : nonsign));
}

static float gelu_tanh_f32(float v) {
    const float k = 0.79788456080286535587989211986876f, a = 0.044715f;
    return 0.5f * v * (1.0f + tanhf(k * v * (1.0f + a * v * v)));
}

/* gelu of the half h, rounded to a half and widened again. */
static float gelu_of_half(uint16_t h) { return half_f16_to_f32(f32_to_f16(gelu_tanh_f32(half_f16_to_f32(h)))); }

static float g_gelu_table[1 << 16];
static pthread_once_t g_gelu_once = PTHREAD_ONCE_INIT;

static void gelu_table_init(void) {
    for (uint32_t h = 0; h < (1u << 16); h++) g_gelu_table[h] = gelu_of_half((uint16_t)h);
}

void kern_gelu(float *x, size_t n) {
    pthread_once(&g_gelu_once, gelu_table_init);
    for (size_t i = 0; i < n; i++) {
        float v = x[i];
        x[i] = v <= -10.0f ? 0.0f : v >= 10.0f ? v : g_gelu_table[f32_to_f16(v)];
    }
}

void kern_gelu_ref(float *x, size_t n) {
    for (size_t i = 0; i < n; i++) {
        float v = x[i];
        x[i] = v <= -10.0f ? 0.0f : v >= 10.0f ? v : gelu_of_half(f32_to_f16(v));
    }
}

void kern_swiglu(float *g, const float *u, size_t n) {
    for (size_t i = 0; i < n; i++) g[i] = g[i] / (1.0f + expf(-g[i])) * u[i];
}

void kern_rope_neox(float *x, int n_heads, int head_dim, int rope_dim, int pos, float base) {
    int half = rope_dim / 2;
    for (int i = 0; i < half; i++) {
        double theta = pos * pow(base, -2.0 * i / rope_dim);
        float c = (float)cos(theta), s = (float)sin(theta);
        for (int h = 0; h < n_heads; h++) {
            float *p = x + (size_t)h * head_dim + i;
            float a = p[0], b = p[half];
            p[0] = a * c - b * s;
            p[half] = a * s + b * c;
        }
    }
}

void kern_rope(float *x, int n_heads, int head_dim, int rope_dim, int pos, float base) {
    for (int i = 0; i < rope_dim; i += 2) {
        double theta = pos * pow(base, -(double)i / rope_dim);
        float c = (float)cos(theta), s = (float)sin(theta);
        for (int h = 0; h < n_heads; h++) {
            float *p = x + (size_t)h * head_dim + i;
            float a = p[0], b = p[1];
            p[0] = a * c - b * s;
            p[1] = a * s + b * c;
        }
    }
}

void kern_softmax(float *x, int n) {
    float mx = x[0];
    for (int i = 1; i < n; i++)
        if (x[i] > mx) mx = x[i];
    double sum = 0;
    for (int i = 0; i < n; i++) {
        x[i] = expf(x[i] - mx);
        sum += x[i];
    }
    float inv = (float)(1.0 / sum);
    for (int i = 0; i < n; i++) x[i] *= inv;
}

void kern_attention(float *out, int os, const float *q, int qs, const float *k, const float *v, int kvs, int T,
                    int pos0, int hd, float *scores) {
    int L = pos0 + T;
    float scale = 1.0f / sqrtf((float)hd);
    /* S[T][L] = scale * Q[T][hd] K[L][hd]^T */
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, T, L, hd, scale, q, qs, k, kvs, 0.0f, scores, L);
    for (int t = 0; t < T; t++) {
        float *row = scores + (size_t)t * L;
        int n = pos0 + t + 1; /* causal: keys 0..pos0+t */
        kern_softmax(row, n);
        for (int j = n; j < L; j++) row[j] = 0.0f;
    }
    /* O[T][hd] = P[T][L] V[L][hd] */
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, T, hd, L, 1.0f, scores, L, v, kvs, 0.0f, out, os);
}

void kern_attention_split(float *out, const float *q, const float *k1, const float *v1, int base, const float *k2,
                          const float *v2, int kvs, int pos, int hd, float *scores) {
    float scale = 1.0f / sqrtf((float)hd);
    for (int j = 0; j <= pos; j++) {
        const float *kj = j < base ? k1 + (size_t)j * kvs : k2 + (size_t)(j - base) * kvs;
        double s = 0;
        for (int i = 0; i < hd; i++) s += (double)q[i] * kj[i];
        scores[j] = (float)s * scale;
    }
    kern_softmax(scores, pos + 1);
    for (int i = 0; i < hd; i++) {
        double s = 0;
        for (int j = 0; j <= pos; j++)
            s += (double)scores[j] * (j < base ? v1[(size_t)j * kvs + i] : v2[(size_t)(j - base) * kvs + i]);
        out[i] = (float)s;
    }
}

void kern_attention_row(float *out, const float *q, const float *k, const float *v, int kvs, int pos, int hd,
                        float *scores) {
    kern_attention_split(out, q, k, v, pos + 1, k, v, kvs, pos, hd, scores);
}
