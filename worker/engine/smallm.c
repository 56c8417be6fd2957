/* smallm.c - see smallm.h.
 *
 * The products are written once, as macros over a vector type, and
 * instantiated for AVX2 (8 lanes) and AVX-512 (16 lanes) with target
 * attributes, so the build needs no -m flags and one binary runs on any
 * x86-64; elsewhere only the plain versions exist.
 *
 * matmul: a tile of NT rows of X by NO rows of W keeps NT x NO vector
 * accumulators over k; W's NO rows are read once per tile of X rows, i.e.
 * once per product from memory while X (a few rows) stays in cache.  Every
 * element is lanes of fmas over k in steps of the width, one fixed
 * reduction tree over the lanes, then the tail k in order with fmaf: the
 * same steps whatever tile the element falls in.
 *
 * pv: every element is one fmaf chain over l in order; vectors only do many
 * chains at once, so every level and tiling gives the same bits. */
#include "smallm.h"

#include <assert.h>
#include <math.h>
#include <stddef.h>

#if defined(__x86_64__) || defined(__i386__)
#define SMALLM_X86 1
#include <immintrin.h>
#endif

/* ---- plain -------------------------------------------------------------- */

static void matmul_plain(float *y, int ldy, const float *x, int ldx, const float *w, int ldw, int T, int in, int out,
                         float beta) {
    for (int o = 0; o < out; o++) {
        const float *wo = w + (size_t)o * ldw;
        for (int t = 0; t < T; t++) {
            const float *xt = x + (size_t)t * ldx;
            float s = 0.0f;
            for (int k = 0; k < in; k++) s = fmaf(xt[k], wo[k], s);
            float *d = y + (size_t)t * ldy + o;
            *d = s + (beta != 0.0f ? beta * *d : 0.0f);
        }
    }
}

static void pv_plain(float *o, int ldo, const float *p, int ldp, const float *v, int ldv, int R, int L, int hd,
                     int accumulate) {
    for (int r = 0; r < R; r++) {
        float *orow = o + (size_t)r * ldo;
        const float *prow = p + (size_t)r * ldp;
        if (!accumulate)
            for (int i = 0; i < hd; i++) orow[i] = 0.0f;
        for (int l = 0; l < L; l++) {
            const float *vl = v + (size_t)l * ldv;
            float pl = prow[l];
            for (int i = 0; i < hd; i++) orow[i] = fmaf(pl, vl[i], orow[i]);
        }
    }
}

/* ---- SIMD templates ----------------------------------------------------- */

#ifdef SMALLM_X86

/* Bytes of X rows a product keeps in L2 at a time (L2 is 512 KiB to 2 MiB
 * on the x86 cores of today; W's few rows and Y's share the rest). */
#define SMALLM_X_BYTES (160 * 1024)

/* One NT x NO tile of matmul (NT <= 4, NO <= 4), NT and NO constants at
 * every call so that the accumulators live in registers. */
#define SMALLM_TILE(NAME, TGT, VT, WIDTH, ZERO, LOAD, FMA, HSUM)                                                    \
    static inline __attribute__((always_inline, target(TGT))) void NAME(                                            \
        float *y, int ldy, const float *x, int ldx, const float *w, int ldw, int in, float beta, const int nt,      \
        const int no) {                                                                                            \
        VT acc[4][4];                                                                                              \
        for (int a = 0; a < nt; a++)                                                                               \
            for (int b = 0; b < no; b++) acc[a][b] = ZERO();                                                       \
        int k = 0;                                                                                                 \
        for (; k + (WIDTH) <= in; k += (WIDTH)) {                                                                  \
            VT wv[4];                                                                                              \
            for (int b = 0; b < no; b++) wv[b] = LOAD(w + (size_t)b * ldw + k);                                    \
            for (int a = 0; a < nt; a++) {                                                                         \
                VT xv = LOAD(x + (size_t)a * ldx + k);                                                             \
                for (int b = 0; b < no; b++) acc[a][b] = FMA(xv, wv[b], acc[a][b]);                                \
            }                                                                                                      \
        }                                                                                                          \
        for (int a = 0; a < nt; a++)                                                                               \
            for (int b = 0; b < no; b++) {                                                                         \
                float s = HSUM(acc[a][b]);                                                                         \
                for (int kk = k; kk < in; kk++) s = fmaf(x[(size_t)a * ldx + kk], w[(size_t)b * ldw + kk], s);     \
                float *d = y + (size_t)a * ldy + b;                                                                \
                *d = s + (beta != 0.0f ? beta * *d : 0.0f);                                                        \
            }                                                                                                      \
    }

/* The matmul driver over tiles of NT x NO, remainders by 1; the rows of X
 * go in chunks of about SMALLM_X_BYTES, so that the chunk stays in L2 while
 * every row of W passes over it (W is then read once per chunk). */
#define SMALLM_MATMUL(NAME, TGT, TILE, NT, NO)                                                                      \
    __attribute__((target(TGT))) static void NAME(float *y, int ldy, const float *x, int ldx, const float *w,      \
                                                  int ldw, int T, int in, int out, float beta) {                   \
        int chunk = (int)(SMALLM_X_BYTES / (sizeof(float) * (size_t)(in > 0 ? in : 1))) / (NT) * (NT);             \
        if (chunk < (NT)) chunk = (NT);                                                                            \
        for (int t0 = 0; t0 < T; t0 += chunk)                                                                      \
            NAME##_rows(y + (size_t)t0 * ldy, ldy, x + (size_t)t0 * ldx, ldx, w, ldw,                              \
                        T - t0 < chunk ? T - t0 : chunk, in, out, beta);                                           \
    }

#define SMALLM_MATMUL_ROWS(NAME, TGT, TILE, NT, NO)                                                                 \
    __attribute__((target(TGT))) static void NAME##_rows(float *y, int ldy, const float *x, int ldx,               \
                                                         const float *w, int ldw, int T, int in, int out,          \
                                                         float beta) {                                             \
        int o = 0;                                                                                                 \
        for (; o + (NO) <= out; o += (NO)) {                                                                       \
            const float *wo = w + (size_t)o * ldw;                                                                 \
            int t = 0;                                                                                             \
            for (; t + (NT) <= T; t += (NT))                                                                       \
                TILE(y + (size_t)t * ldy + o, ldy, x + (size_t)t * ldx, ldx, wo, ldw, in, beta, NT, NO);           \
            for (; t < T; t++) TILE(y + (size_t)t * ldy + o, ldy, x + (size_t)t * ldx, ldx, wo, ldw, in, beta, 1, NO); \
        }                                                                                                          \
        for (; o < out; o++) {                                                                                     \
            const float *wo = w + (size_t)o * ldw;                                                                 \
            int t = 0;                                                                                             \
            for (; t + (NT) <= T; t += (NT))                                                                       \
                TILE(y + (size_t)t * ldy + o, ldy, x + (size_t)t * ldx, ldx, wo, ldw, in, beta, NT, 1);            \
            for (; t < T; t++) TILE(y + (size_t)t * ldy + o, ldy, x + (size_t)t * ldx, ldx, wo, ldw, in, beta, 1, 1); \
        }                                                                                                          \
    }

/* pv: tiles of 2 rows x 4 vectors of hd, then 1 row, then single vectors,
 * then single lanes; all the same fma chains. */
#define SMALLM_PV(NAME, TGT, VT, WIDTH, ZERO, LOAD, STORE, SET1, FMA)                                               \
    __attribute__((target(TGT))) static void NAME(float *o, int ldo, const float *p, int ldp, const float *v,      \
                                                  int ldv, int R, int L, int hd, int accumulate) {                 \
        int i0 = 0;                                                                                                \
        for (; i0 + 4 * (WIDTH) <= hd; i0 += 4 * (WIDTH)) {                                                        \
            int r = 0;                                                                                             \
            for (; r + 2 <= R; r += 2) {                                                                           \
                VT acc[2][4];                                                                                      \
                for (int a = 0; a < 2; a++)                                                                        \
                    for (int b = 0; b < 4; b++)                                                                    \
                        acc[a][b] = accumulate ? LOAD(o + (size_t)(r + a) * ldo + i0 + b * (WIDTH)) : ZERO();      \
                for (int l = 0; l < L; l++) {                                                                      \
                    const float *vl = v + (size_t)l * ldv + i0;                                                    \
                    VT v0 = LOAD(vl), v1 = LOAD(vl + (WIDTH)), v2 = LOAD(vl + 2 * (WIDTH)), v3 = LOAD(vl + 3 * (WIDTH)); \
                    for (int a = 0; a < 2; a++) {                                                                  \
                        VT s = SET1(p[(size_t)(r + a) * ldp + l]);                                                 \
                        acc[a][0] = FMA(s, v0, acc[a][0]);                                                         \
                        acc[a][1] = FMA(s, v1, acc[a][1]);                                                         \
                        acc[a][2] = FMA(s, v2, acc[a][2]);                                                         \
                        acc[a][3] = FMA(s, v3, acc[a][3]);                                                         \
                    }                                                                                              \
                }                                                                                                  \
                for (int a = 0; a < 2; a++)                                                                        \
                    for (int b = 0; b < 4; b++) STORE(o + (size_t)(r + a) * ldo + i0 + b * (WIDTH), acc[a][b]);     \
            }                                                                                                      \
            for (; r < R; r++) {                                                                                   \
                VT acc[4];                                                                                         \
                for (int b = 0; b < 4; b++) acc[b] = accumulate ? LOAD(o + (size_t)r * ldo + i0 + b * (WIDTH)) : ZERO(); \
                for (int l = 0; l < L; l++) {                                                                      \
                    const float *vl = v + (size_t)l * ldv + i0;                                                    \
                    VT s = SET1(p[(size_t)r * ldp + l]);                                                           \
                    for (int b = 0; b < 4; b++) acc[b] = FMA(s, LOAD(vl + b * (WIDTH)), acc[b]);                   \
                }                                                                                                  \
                for (int b = 0; b < 4; b++) STORE(o + (size_t)r * ldo + i0 + b * (WIDTH), acc[b]);                 \
            }                                                                                                      \
        }                                                                                                          \
        for (; i0 + (WIDTH) <= hd; i0 += (WIDTH))                                                                  \
            for (int r = 0; r < R; r++) {                                                                          \
                VT acc = accumulate ? LOAD(o + (size_t)r * ldo + i0) : ZERO();                                     \
                for (int l = 0; l < L; l++) acc = FMA(SET1(p[(size_t)r * ldp + l]), LOAD(v + (size_t)l * ldv + i0), acc); \
                STORE(o + (size_t)r * ldo + i0, acc);                                                              \
            }                                                                                                      \
        if (i0 < hd)                                                                                               \
            for (int r = 0; r < R; r++) {                                                                          \
                float *orow = o + (size_t)r * ldo;                                                                 \
                for (int i = i0; i < hd; i++) {                                                                    \
                    float acc = accumulate ? orow[i] : 0.0f;                                                       \
                    for (int l = 0; l < L; l++) acc = fmaf(p[(size_t)r * ldp + l], v[(size_t)l * ldv + i], acc);   \
                    orow[i] = acc;                                                                                 \
                }                                                                                                  \
            }                                                                                                      \
    }

/* AVX2 + FMA: 8 lanes; tiles of 4 x 3 (12 accumulators, 3 W vectors, X
 * folded into the fma: 16 registers). */
__attribute__((target("avx2,fma"))) static inline float hsum_avx2(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}
SMALLM_TILE(tile_avx2, "avx2,fma", __m256, 8, _mm256_setzero_ps, _mm256_loadu_ps, _mm256_fmadd_ps, hsum_avx2)
SMALLM_MATMUL_ROWS(matmul_avx2, "avx2,fma", tile_avx2, 4, 3)
SMALLM_MATMUL(matmul_avx2, "avx2,fma", tile_avx2, 4, 3)
SMALLM_PV(pv_avx2, "avx2,fma", __m256, 8, _mm256_setzero_ps, _mm256_loadu_ps, _mm256_storeu_ps, _mm256_set1_ps,
          _mm256_fmadd_ps)

/* AVX-512: 16 lanes; tiles of 4 x 4 (32 registers leave room). */
__attribute__((target("avx512f,avx2,fma"))) static inline float hsum_avx512(__m512 v) {
    return hsum_avx2(_mm256_add_ps(_mm512_castps512_ps256(v),
                                   _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(v), 1))));
}
SMALLM_TILE(tile_avx512, "avx512f,avx2,fma", __m512, 16, _mm512_setzero_ps, _mm512_loadu_ps, _mm512_fmadd_ps, hsum_avx512)
SMALLM_MATMUL_ROWS(matmul_avx512, "avx512f,avx2,fma", tile_avx512, 4, 4)
SMALLM_MATMUL(matmul_avx512, "avx512f,avx2,fma", tile_avx512, 4, 4)
SMALLM_PV(pv_avx512, "avx512f,avx2,fma", __m512, 16, _mm512_setzero_ps, _mm512_loadu_ps, _mm512_storeu_ps, _mm512_set1_ps,
          _mm512_fmadd_ps)

/* exp: n = round(x log2 e), r = x - n ln 2 (in two parts), e^r by a
 * degree-5 polynomial, times 2^n through the exponent bits. */
#define SMALLM_EXP(NAME, TGT, VT, IT, WIDTH, LOAD, STORE, SET1, FMA, MUL, ADD, SUB, MIN, MAX, ROUND, CVT, ADDI,     \
                   SHIFTL, CASTI, SET1I)                                                                           \
    __attribute__((target(TGT))) static inline VT NAME##_v(VT x) {                                                \
        x = MIN(MAX(x, SET1(-87.3365f)), SET1(88.3762f));                                                          \
        VT n = ROUND(MUL(x, SET1(1.44269504088896341f)));                                                          \
        VT r = FMA(n, SET1(-0.693359375f), x);                                                                     \
        r = FMA(n, SET1(2.12194440e-4f), r);                                                                       \
        VT p = SET1(1.9875691500E-4f);                                                                             \
        p = FMA(p, r, SET1(1.3981999507E-3f));                                                                     \
        p = FMA(p, r, SET1(8.3334519073E-3f));                                                                     \
        p = FMA(p, r, SET1(4.1665795894E-2f));                                                                     \
        p = FMA(p, r, SET1(1.6666665459E-1f));                                                                     \
        p = FMA(p, r, SET1(5.0000001201E-1f));                                                                     \
        p = FMA(p, MUL(r, r), ADD(r, SET1(1.0f)));                                                                 \
        IT e = SHIFTL(ADDI(CVT(n), SET1I(127)), 23);                                                               \
        return MUL(p, CASTI(e));                                                                                   \
    }                                                                                                              \
    __attribute__((target(TGT))) static void NAME(float *x, int n) {                                               \
        int i = 0;                                                                                                 \
        for (; i + (WIDTH) <= n; i += (WIDTH)) STORE(x + i, NAME##_v(LOAD(x + i)));                                \
        if (i < n) {                                                                                               \
            float pad[WIDTH] = {0};                                                                                \
            for (int j = i; j < n; j++) pad[j - i] = x[j];                                                         \
            STORE(pad, NAME##_v(LOAD(pad)));                                                                       \
            for (int j = i; j < n; j++) x[j] = pad[j - i];                                                         \
        }                                                                                                          \
    }

#define SMALLM_ROUND256(v) _mm256_round_ps(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC)
#define SMALLM_ROUND512(v) _mm512_roundscale_ps(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC)
SMALLM_EXP(exp_avx2, "avx2,fma", __m256, __m256i, 8, _mm256_loadu_ps, _mm256_storeu_ps, _mm256_set1_ps,
           _mm256_fmadd_ps, _mm256_mul_ps, _mm256_add_ps, _mm256_sub_ps, _mm256_min_ps, _mm256_max_ps,
           SMALLM_ROUND256, _mm256_cvtps_epi32, _mm256_add_epi32, _mm256_slli_epi32, _mm256_castsi256_ps,
           _mm256_set1_epi32)
SMALLM_EXP(exp_avx512, "avx512f,avx2,fma", __m512, __m512i, 16, _mm512_loadu_ps, _mm512_storeu_ps, _mm512_set1_ps,
           _mm512_fmadd_ps, _mm512_mul_ps, _mm512_add_ps, _mm512_sub_ps, _mm512_min_ps, _mm512_max_ps,
           SMALLM_ROUND512, _mm512_cvtps_epi32, _mm512_add_epi32, _mm512_slli_epi32, _mm512_castsi512_ps,
           _mm512_set1_epi32)

#endif

/* ---- dispatch ----------------------------------------------------------- */

static int g_level = -1; /* -1: not chosen yet */

smallm_level_t smallm_best(void) {
#ifdef SMALLM_X86
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f")) return SMALLM_AVX512;
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return SMALLM_AVX2;
#endif
    return SMALLM_PLAIN;
}

smallm_level_t smallm_level(void) {
    /* A benign race at worst: every thread computes the same value. */
    if (g_level < 0) g_level = (int)smallm_best();
    return (smallm_level_t)g_level;
}

int smallm_set_level(smallm_level_t level) {
    if ((int)level < 0 || level > smallm_best()) return -1;
    g_level = (int)level;
    return 0;
}

const char *smallm_level_name(smallm_level_t level) {
    static const char *const names[] = {"plain", "avx2", "avx512"};
    return (int)level >= 0 && level <= SMALLM_AVX512 ? names[level] : "?";
}

void smallm_matmul(float *y, int ldy, const float *x, int ldx, const float *w, int ldw, int T, int in, int out,
                   float beta) {
    assert(T >= 0 && in >= 0 && out >= 0 && ldy >= out && ldx >= in && ldw >= in);
    switch (smallm_level()) {
#ifdef SMALLM_X86
    case SMALLM_AVX512: matmul_avx512(y, ldy, x, ldx, w, ldw, T, in, out, beta); return;
    case SMALLM_AVX2: matmul_avx2(y, ldy, x, ldx, w, ldw, T, in, out, beta); return;
#endif
    default: matmul_plain(y, ldy, x, ldx, w, ldw, T, in, out, beta); return;
    }
}

void smallm_pv(float *o, int ldo, const float *p, int ldp, const float *v, int ldv, int R, int L, int hd,
               int accumulate) {
    assert(R >= 0 && L >= 0 && hd >= 0 && ldo >= hd && ldv >= hd && ldp >= L);
    switch (smallm_level()) {
#ifdef SMALLM_X86
    case SMALLM_AVX512: pv_avx512(o, ldo, p, ldp, v, ldv, R, L, hd, accumulate); return;
    case SMALLM_AVX2: pv_avx2(o, ldo, p, ldp, v, ldv, R, L, hd, accumulate); return;
#endif
    default: pv_plain(o, ldo, p, ldp, v, ldv, R, L, hd, accumulate); return;
    }
}

void smallm_exp(float *x, int n) {
    switch (smallm_level()) {
#ifdef SMALLM_X86
    case SMALLM_AVX512: exp_avx512(x, n); return;
    case SMALLM_AVX2: exp_avx2(x, n); return;
#endif
    default:
        for (int i = 0; i < n; i++) x[i] = expf(x[i]);
        return;
    }
}
