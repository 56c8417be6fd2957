/* kernels.c - see kernels.h. */
#include "kernels.h"

#include <assert.h>
#include <cblas.h>
#include <math.h>
#include <pthread.h>
#include <stdint.h>
#include <string.h>

#include "half.h"
#include "smallm.h"

/* Sets rows x cols of y (rows ldy apart) to 0.  Before a product with
 * beta = 1 it stands in for beta = 0: OpenBLAS then clears C itself with
 * a scalar loop (sgemm_beta, 10 % of the attention's time and 2 % of a
 * prefill's in perf), and its kernels add A B into the zeros either way,
 * so the bits are the same. */
static void zero_rows(float *y, int ldy, int rows, int cols) {
    if (ldy == cols) memset(y, 0, sizeof(float) * (size_t)rows * cols);
    else
        for (int t = 0; t < rows; t++) memset(y + (size_t)t * ldy, 0, sizeof(float) * cols);
}

void kern_matmul(float *y, int ldy, const float *x, const float *w, int T, int in, int out, float beta) {
    assert(T > 0 && in > 0 && out > 0 && ldy >= out);
    if (T == 1) {
        /* A matrix-vector product: sgemv avoids sgemm's packing overhead. */
        cblas_sgemv(CblasRowMajor, CblasNoTrans, out, in, 1.0f, w, in, x, 1, beta, y, 1);
        return;
    }
    if (beta == 0.0f) zero_rows(y, ldy, T, out), beta = 1.0f;
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

#if defined(__x86_64__) || defined(__i386__)
#define KERN_X86 1
#include <cpuid.h>
#include <immintrin.h>

/* The norms' loops over [0, n4), n4 a multiple of 4, 4 at a time in
 * double lanes (element i in lane i mod 4, as the plain loops) or 8 at a
 * time in float: the same operations per element (no fma: the target
 * enables none), so the same bits as the plain loops. */
__attribute__((target("avx2"))) static void sum_avx2(const float *x, int n4, double *s) {
    __m256d a = _mm256_loadu_pd(s);
    for (int i = 0; i < n4; i += 4) a = _mm256_add_pd(a, _mm256_cvtps_pd(_mm_loadu_ps(x + i)));
    _mm256_storeu_pd(s, a);
}
__attribute__((target("avx2"))) static void sumsq_avx2(const float *x, int n4, double c, double *s) {
    __m256d a = _mm256_loadu_pd(s), cv = _mm256_set1_pd(c);
    for (int i = 0; i < n4; i += 4) {
        __m256d d = _mm256_sub_pd(_mm256_cvtps_pd(_mm_loadu_ps(x + i)), cv);
        a = _mm256_add_pd(a, _mm256_mul_pd(d, d));
    }
    _mm256_storeu_pd(s, a);
}
/* out = (x - c) * scale * g (+ b, or + 0 when add and b is NULL), [0, n8). */
__attribute__((target("avx2"))) static void norm_out_avx2(float *out, const float *x, const float *g, const float *b,
                                                          int n8, float c, float scale, int add) {
    __m256 cv = _mm256_set1_ps(c), sv = _mm256_set1_ps(scale);
    for (int i = 0; i < n8; i += 8) {
        __m256 y = _mm256_mul_ps(_mm256_mul_ps(_mm256_sub_ps(_mm256_loadu_ps(x + i), cv), sv), _mm256_loadu_ps(g + i));
        if (add) y = _mm256_add_ps(y, b ? _mm256_loadu_ps(b + i) : _mm256_setzero_ps());
        _mm256_storeu_ps(out + i, y);
    }
}
#endif

/* Whether the norms run their vector loops (smallm's AVX2 or AVX-512 level). */
static int norm_vec(void) {
#ifdef KERN_X86
    return smallm_level() >= SMALLM_AVX2;
#else
    return 0;
#endif
}

/* sum over i of (x[i] - c)^2 (sq) or of x[i] (!sq) in double, element i
 * into partial sum i mod 4, the four added pairwise: a fixed order. */
static double norm_sum(const float *x, int n, double c, int sq) {
    double s[4] = {0, 0, 0, 0};
    int i = 0;
#ifdef KERN_X86
    if (norm_vec()) {
        i = n / 4 * 4;
        if (sq) sumsq_avx2(x, i, c, s);
        else sum_avx2(x, i, s);
    }
#endif
    for (; i < n; i++) s[i % 4] += sq ? ((double)x[i] - c) * ((double)x[i] - c) : (double)x[i];
    return (s[0] + s[1]) + (s[2] + s[3]);
}

/* out[i] = (x[i] - c) * scale * g[i], + (b ? b[i] : 0) when add. */
static void norm_out(float *out, const float *x, const float *g, const float *b, int n, float c, float scale, int add) {
    int i = 0;
#ifdef KERN_X86
    if (norm_vec()) i = n / 8 * 8, norm_out_avx2(out, x, g, b, i, c, scale, add);
#endif
    for (; i < n; i++) {
        float y = (x[i] - c) * scale * g[i];
        out[i] = add ? y + (b ? b[i] : 0.0f) : y;
    }
}

void kern_rmsnorm(float *out, const float *x, const float *g, int n, float eps) {
    float scale = (float)(1.0 / sqrt(norm_sum(x, n, 0.0, 1) / n + eps));
    norm_out(out, x, g, NULL, n, 0.0f, scale, 0); /* x - 0 is x, bit for bit */
}

void kern_layernorm(float *out, const float *x, const float *g, const float *b, int n, float eps) {
    double mean = norm_sum(x, n, 0.0, 0) / n;
    float scale = (float)(1.0 / sqrt(norm_sum(x, n, mean, 1) / n + eps)), fmean = (float)mean;
    norm_out(out, x, g, b, n, fmean, scale, 1);
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

#ifdef KERN_X86
/* Whether the CPU converts to fp16 in hardware (F16C; every AVX2 CPU so
 * far has it, but it is a separate flag).  From CPUID leaf 1 itself:
 * clang's __builtin_cpu_supports does not know "f16c". */
static int has_f16c(void) {
    static int known = -1; /* a benign race: every thread computes the same */
    if (known < 0) {
        unsigned a, b, c, d;
        known = __get_cpuid(1, &a, &b, &c, &d) && (c & bit_F16C) ? 1 : 0;
    }
    return known;
}

/* gelu of x[0..n) (+ b[0..n) first when b is not NULL) 8 at a time: the
 * conversion to fp16 by vcvtps2ph (IEEE round to nearest even, what
 * f32_to_f16 computes in software), the table read by a gather, the
 * clamps by masks.  Returns how many it did (a multiple of 8); the rest
 * go through the scalar loop. */
__attribute__((target("avx2,fma,f16c"))) static size_t gelu_avx2(float *x, const float *b, size_t n) {
    const __m256 lo = _mm256_set1_ps(-10.0f), hi = _mm256_set1_ps(10.0f);
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256 v = _mm256_loadu_ps(x + i);
        if (b) v = _mm256_add_ps(v, _mm256_loadu_ps(b + i));
        __m256i idx = _mm256_cvtepu16_epi32(_mm256_cvtps_ph(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
        __m256 g = _mm256_i32gather_ps(g_gelu_table, idx, 4);
        g = _mm256_andnot_ps(_mm256_cmp_ps(v, lo, _CMP_LE_OQ), g);
        g = _mm256_blendv_ps(g, v, _mm256_cmp_ps(v, hi, _CMP_GE_OQ));
        _mm256_storeu_ps(x + i, g);
    }
    return i;
}
#endif

/* One row of kern_gelu_bias. */
static void gelu_row(float *x, const float *b, size_t n) {
    size_t i = 0;
#ifdef KERN_X86
    /* AVX-512 runs the AVX2 code too: the gather bounds it, not the width. */
    if (smallm_level() >= SMALLM_AVX2 && has_f16c()) i = gelu_avx2(x, b, n);
#endif
    for (; i < n; i++) {
        float v = b ? x[i] + b[i] : x[i];
        x[i] = v <= -10.0f ? 0.0f : v >= 10.0f ? v : g_gelu_table[f32_to_f16(v)];
    }
}

void kern_gelu_bias(float *x, const float *b, int T, int n) {
    pthread_once(&g_gelu_once, gelu_table_init);
    for (int t = 0; t < T; t++) gelu_row(x + (size_t)t * n, b, (size_t)n);
}

void kern_gelu(float *x, size_t n) {
    pthread_once(&g_gelu_once, gelu_table_init);
    gelu_row(x, NULL, n);
}

void kern_gelu_ref(float *x, size_t n) {
    for (size_t i = 0; i < n; i++) {
        float v = x[i];
        x[i] = v <= -10.0f ? 0.0f : v >= 10.0f ? v : gelu_of_half(f32_to_f16(v));
    }
}

void kern_swiglu_ref(float *g, const float *u, size_t n) {
    for (size_t i = 0; i < n; i++) g[i] = g[i] / (1.0f + expf(-g[i])) * u[i];
}

#ifdef KERN_X86
/* kern_swiglu's two loops over [0, m8), m8 a multiple of 8, 8 at a time:
 * negation, division and product are exact IEEE operations, so the bits
 * are the scalar loops'. */
__attribute__((target("avx2"))) static void swiglu_neg_avx2(float *e, const float *g, int m8) {
    for (int j = 0; j < m8; j += 8) _mm256_storeu_ps(e + j, _mm256_xor_ps(_mm256_loadu_ps(g + j), _mm256_set1_ps(-0.0f)));
}
__attribute__((target("avx2"))) static void swiglu_mul_avx2(float *g, const float *e, const float *u, int m8) {
    for (int j = 0; j < m8; j += 8) {
        __m256 d = _mm256_div_ps(_mm256_loadu_ps(g + j), _mm256_add_ps(_mm256_set1_ps(1.0f), _mm256_loadu_ps(e + j)));
        _mm256_storeu_ps(g + j, _mm256_mul_ps(d, _mm256_loadu_ps(u + j)));
    }
}
#endif

void kern_swiglu(float *g, const float *u, size_t n) {
    float e[256];
    int vec = 0;
#ifdef KERN_X86
    vec = smallm_level() >= SMALLM_AVX2;
#endif
    for (size_t i0 = 0; i0 < n; i0 += 256) {
        int m = n - i0 < 256 ? (int)(n - i0) : 256, m8 = vec ? m / 8 * 8 : 0;
#ifdef KERN_X86
        if (vec) swiglu_neg_avx2(e, g + i0, m8);
#endif
        for (int j = m8; j < m; j++) e[j] = -g[i0 + j];
        smallm_exp(e, m);
#ifdef KERN_X86
        if (vec) swiglu_mul_avx2(g + i0, e, u + i0, m8);
#endif
        for (int j = m8; j < m; j++) g[i0 + j] = g[i0 + j] / (1.0f + e[j]) * u[i0 + j];
    }
}

void kern_rope_angles(float *cs, int rope_dim, int pos, float base, const float *ff) {
    for (int i = 0; i < rope_dim / 2; i++) {
        double theta = pos * pow(base, -2.0 * i / rope_dim);
        if (ff) theta /= ff[i];
        cs[2 * i] = (float)cos(theta);
        cs[2 * i + 1] = (float)sin(theta);
    }
}

void kern_rope_apply(float *x, int n_heads, int head_dim, int rope_dim, const float *cs, int neox) {
    int half = rope_dim / 2, stride = neox ? 1 : 2, other = neox ? half : 1;
    for (int h = 0; h < n_heads; h++)
        for (int i = 0; i < half; i++) {
            float c = cs[2 * i], s = cs[2 * i + 1];
            float *p = x + (size_t)h * head_dim + (size_t)i * stride;
            float a = p[0], b = p[other];
            p[0] = a * c - b * s;
            p[other] = a * s + b * c;
        }
}

/* The widest rotation kern_rope computes angles for on the stack. */
#define KERN_ROPE_MAX 1024

void kern_rope_neox(float *x, int n_heads, int head_dim, int rope_dim, int pos, float base) {
    float cs[KERN_ROPE_MAX];
    assert(rope_dim <= KERN_ROPE_MAX);
    kern_rope_angles(cs, rope_dim, pos, base, NULL);
    kern_rope_apply(x, n_heads, head_dim, rope_dim, cs, 1);
}

void kern_rope(float *x, int n_heads, int head_dim, int rope_dim, int pos, float base) {
    float cs[KERN_ROPE_MAX];
    assert(rope_dim <= KERN_ROPE_MAX);
    kern_rope_angles(cs, rope_dim, pos, base, NULL);
    kern_rope_apply(x, n_heads, head_dim, rope_dim, cs, 0);
}

/* Softmax with the vector exp (vec) or expf. */
static void softmax(float *x, int n, int vec) {
    float mx = x[0];
    for (int i = 1; i < n; i++)
        if (x[i] > mx) mx = x[i];
    for (int i = 0; i < n; i++) x[i] -= mx;
    if (vec) smallm_exp(x, n);
    else
        for (int i = 0; i < n; i++) x[i] = expf(x[i]);
    double sum = 0;
    for (int i = 0; i < n; i++) sum += x[i];
    float inv = (float)(1.0 / sum);
    for (int i = 0; i < n; i++) x[i] *= inv;
}

#ifdef KERN_X86
/* softmax's vec path 8 at a time: the maximum (exact in any order), the
 * subtraction, smallm_exp, the sum in double in 8 lanes (element j in lane
 * j mod 8, a fixed order: the same bits for the same row wherever it lies),
 * the scaling. */
__attribute__((target("avx2"))) static void softmax_avx2(float *x, int n) {
    int n8 = n / 8 * 8;
    __m256 mv = _mm256_set1_ps(x[0]);
    for (int i = 0; i < n8; i += 8) mv = _mm256_max_ps(_mm256_loadu_ps(x + i), mv);
    float lane[8], mx = x[0];
    _mm256_storeu_ps(lane, mv);
    for (int j = 0; j < 8; j++) mx = lane[j] > mx ? lane[j] : mx;
    for (int i = n8; i < n; i++) mx = x[i] > mx ? x[i] : mx;
    mv = _mm256_set1_ps(mx);
    for (int i = 0; i < n8; i += 8) _mm256_storeu_ps(x + i, _mm256_sub_ps(_mm256_loadu_ps(x + i), mv));
    for (int i = n8; i < n; i++) x[i] -= mx;
    smallm_exp(x, n);
    __m256d lo = _mm256_setzero_pd(), hi = _mm256_setzero_pd();
    for (int i = 0; i < n8; i += 8) {
        __m256 v = _mm256_loadu_ps(x + i);
        lo = _mm256_add_pd(lo, _mm256_cvtps_pd(_mm256_castps256_ps128(v)));
        hi = _mm256_add_pd(hi, _mm256_cvtps_pd(_mm256_extractf128_ps(v, 1)));
    }
    double d[8];
    _mm256_storeu_pd(d, lo), _mm256_storeu_pd(d + 4, hi);
    double sum = ((d[0] + d[4]) + (d[1] + d[5])) + ((d[2] + d[6]) + (d[3] + d[7]));
    for (int i = n8; i < n; i++) sum += x[i];
    float inv = (float)(1.0 / sum);
    __m256 iv = _mm256_set1_ps(inv);
    for (int i = 0; i < n8; i += 8) _mm256_storeu_ps(x + i, _mm256_mul_ps(_mm256_loadu_ps(x + i), iv));
    for (int i = n8; i < n; i++) x[i] *= inv;
}
#endif

void kern_softmax(float *x, int n) {
#ifdef KERN_X86
    if (smallm_level() >= SMALLM_AVX2) {
        softmax_avx2(x, n);
        return;
    }
#endif
    softmax(x, n, 1);
}
void kern_softmax_ref(float *x, int n) { softmax(x, n, 0); }

/* Query positions per block of the causal attention: each block's products
 * run over the keys up to its last row only, so the masked upper triangle
 * costs at most half a block per row instead of half of all the keys. */
#define KERN_ATT_BLOCK 64

void kern_attention_causal(float *out, int os, const float *q, int qs, const float *k, const float *v, int kvs, int T,
                           int pos0, int hd, int group, float scale, float cap, int window, float *scores, float *qg,
                           float *og) {
    /* The group's query rows stacked: row t * group + g is head g of
     * position t (the heads of a position are adjacent in q already). */
    const float *qs_rows = q;
    float *o_rows = out;
    int ldq = qs, ldo = os;
    if (group > 1) {
        assert(qg && og);
        for (int t = 0; t < T; t++) memcpy(qg + (size_t)t * group * hd, q + (size_t)t * qs, sizeof(float) * group * hd);
        qs_rows = qg, o_rows = og, ldq = ldo = hd;
    }
    for (int t0 = 0; t0 < T; t0 += KERN_ATT_BLOCK) {
        int t1 = t0 + KERN_ATT_BLOCK < T ? t0 + KERN_ATT_BLOCK : T, L = pos0 + t1, R = (t1 - t0) * group;
        /* Keys before the block's first row's window are no row's: skipped. */
        int k0 = window && pos0 + t0 >= window ? pos0 + t0 - window + 1 : 0, N = L - k0;
        /* S[R][N] = scale * Q K[k0..L)^T (into zeros: see zero_rows) */
        zero_rows(scores, N, R, N);
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, R, N, hd, scale, qs_rows + (size_t)t0 * group * ldq,
                    ldq, k + (size_t)k0 * kvs, kvs, 1.0f, scores, N);
        for (int r = 0; r < R; r++) {
            float *row = scores + (size_t)r * N;
            int p = pos0 + t0 + r / group, lo = window && p >= window ? p - window + 1 : 0; /* keys lo..p */
            if (cap) kern_softcap(row + lo - k0, (size_t)(p + 1 - lo), cap);
            kern_softmax(row + lo - k0, p + 1 - lo);
            for (int j = k0; j < lo; j++) row[j - k0] = 0.0f;
            for (int j = p + 1; j < L; j++) row[j - k0] = 0.0f;
        }
        /* O[R][hd] = P[R][N] V[k0..L) */
        zero_rows(o_rows + (size_t)t0 * group * ldo, ldo, R, hd);
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, R, hd, N, 1.0f, scores, N, v + (size_t)k0 * kvs, kvs,
                    1.0f, o_rows + (size_t)t0 * group * ldo, ldo);
    }
    if (group > 1)
        for (int t = 0; t < T; t++) memcpy(out + (size_t)t * os, og + (size_t)t * group * hd, sizeof(float) * group * hd);
}

void kern_attention(float *out, int os, const float *q, int qs, const float *k, const float *v, int kvs, int T,
                    int pos0, int hd, float *scores) {
    kern_attention_causal(out, os, q, qs, k, v, kvs, T, pos0, hd, 1, 1.0f / sqrtf((float)hd), 0.0f, 0, scores, NULL,
                          NULL);
}

void kern_attention_split(float *out, const float *q, const float *k1, const float *v1, int base, const float *k2,
                          const float *v2, int kvs, int pos, int hd, float scale, float cap, int lo, float *scores) {
    for (int j = 0; j < lo; j++) scores[j] = 0.0f;
    for (int j = lo; j <= pos; j++) {
        const float *kj = j < base ? k1 + (size_t)j * kvs : k2 + (size_t)(j - base) * kvs;
        double s = 0;
        for (int i = 0; i < hd; i++) s += (double)q[i] * kj[i];
        scores[j] = (float)s * scale;
        if (cap) scores[j] = cap * tanhf(scores[j] * (1.0f / cap));
    }
    kern_softmax_ref(scores + lo, pos + 1 - lo);
    for (int i = 0; i < hd; i++) {
        double s = 0;
        for (int j = 0; j <= pos; j++)
            s += (double)scores[j] * (j < base ? v1[(size_t)j * kvs + i] : v2[(size_t)(j - base) * kvs + i]);
        out[i] = (float)s;
    }
}

void kern_attention_row(float *out, const float *q, const float *k, const float *v, int kvs, int pos, int hd,
                        float *scores) {
    kern_attention_split(out, q, k, v, pos + 1, k, v, kvs, pos, hd, 1.0f / sqrtf((float)hd), 0.0f, 0, scores);
}

void kern_softcap(float *x, size_t n, float cap) {
    float inv = 1.0f / cap;
    for (size_t i = 0; i < n; i++) x[i] = cap * tanhf(x[i] * inv);
}
