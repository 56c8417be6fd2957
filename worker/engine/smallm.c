/* smallm.c - see smallm.h.
 *
 * The products are written once, as macros over a vector type, and
 * instantiated for AVX2 (8 lanes) and AVX-512 (16 lanes) with target
 * attributes, so the build needs no -m flags and one binary runs on any
 * x86-64; elsewhere only the plain versions exist.
 *
 * matmul: every element is one fmaf chain over k = 0..in-1 in order, as
 * the plain loop computes it; the vectors run one chain per lane, lanes
 * being rows of X (X's chunk transposed into the caller's scratch, W's
 * element broadcast), as an outer product.  So every level, tile and batch
 * gives the same bits, and each k step reads a scalar of W and a vector of
 * X^T per accumulator row: a quarter of the cache traffic of dot products
 * along k (one vector of X per 8 products), which held an earlier version
 * to ~0.7 of OpenBLAS at 64 rows.  Below SMALLM_FEW_ROWS rows, where the
 * lanes would be mostly padding, both levels run the same chains across 8
 * rows of W instead (few_avx2).
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

/* Below this many rows of X, AVX2 products transpose W's blocks in
 * registers (few_avx2) rather than X into the scratch.  bench_smallm (GPT-2
 * shapes, Zen): at 1 row 5.4-7.3 GFLOP/s against 4.1-5.0 for the outer
 * product; at 9 rows no better than it (16 lanes for 9 rows). */
#define SMALLM_FEW_ROWS 8

/* Floats of X's transposed chunk: 192 KiB, which stays in a 512 KiB L2
 * beside the few rows of W in use (64 rows of 768 columns).  A longer X is
 * prepared and multiplied a chunk of smallm_x_rows(in) rows at a time. */
#define SMALLM_XT_FLOATS (48 * 1024)

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

/* One tile of matmul: NV vectors of WIDTH rows of the transposed X chunk
 * (xt[k][tp], rows t0..) by NO rows of W (NV <= 4, NO <= 12), constants at
 * every call so that the accumulators live in registers.  Each lane of an
 * accumulator is one element's fma chain over k = 0..in-1 in order: x[t][k]
 * from xt's row k, w[o][k] broadcast.  Lanes past tn (padding) are
 * computed on zeros and not stored. */
#define SMALLM_TILE(NAME, TGT, VT, WIDTH, ZERO, LOAD, STORE, SET1, FMA)                                             \
    static inline __attribute__((always_inline, target(TGT))) void NAME(                                            \
        float *y, int ldy, const float *xt, int tp, int t0, int tn, const float *w, int ldw, int in, float beta,    \
        const int nv, const int no) {                                                                              \
        VT acc[4][12];                                                                                             \
        for (int a = 0; a < nv; a++)                                                                               \
            for (int b = 0; b < no; b++) acc[a][b] = ZERO();                                                       \
        const float *xk = xt + t0;                                                                                 \
        for (int k = 0; k < in; k++, xk += tp) {                                                                   \
            VT xv[4];                                                                                              \
            for (int a = 0; a < nv; a++) xv[a] = LOAD(xk + a * (WIDTH));                                           \
            for (int b = 0; b < no; b++) {                                                                         \
                VT wb = SET1(w[(size_t)b * ldw + k]);                                                              \
                for (int a = 0; a < nv; a++) acc[a][b] = FMA(xv[a], wb, acc[a][b]);                                \
            }                                                                                                      \
        }                                                                                                          \
        float lane[WIDTH];                                                                                         \
        for (int a = 0; a < nv; a++)                                                                               \
            for (int b = 0; b < no; b++) {                                                                         \
                STORE(lane, acc[a][b]);                                                                            \
                for (int i = 0; i < (WIDTH) && t0 + a * (WIDTH) + i < tn; i++) {                                   \
                    float *d = y + (size_t)(t0 + a * (WIDTH) + i) * ldy + b;                                       \
                    *d = lane[i] + (beta != 0.0f ? beta * *d : 0.0f);                                              \
                }                                                                                                  \
            }                                                                                                      \
    }

/* The tiles over one prepared X (xt[k][tp], tp its tn rows rounded up to
 * WIDTH, zero padded; see smallm_x_prepare): NO rows of W at a time stream
 * once while every vector of X's rows passes (NV vectors per tile), then
 * the last out % NO rows as one narrower tile of the same shape, so no row
 * of W runs alone on one accumulator chain per vector (latency-bound).
 * The tiling decides only which chains run together, never their
 * arithmetic. */
#define SMALLM_PASS(TILE, WIDTH, NV, NO_)                                                                         \
    do {                                                                                                           \
        const float *wo = w + (size_t)o * ldw;                                                                     \
        int v = 0;                                                                                                 \
        for (; v + (NV) <= nvec; v += (NV)) TILE(y + o, ldy, xt, tp, v * (WIDTH), tn, wo, ldw, in, beta, NV, NO_); \
        for (; v < nvec; v++) TILE(y + o, ldy, xt, tp, v * (WIDTH), tn, wo, ldw, in, beta, 1, NO_);                \
    } while (0)
#define SMALLM_REM(TILE, WIDTH, NV, NO, R)                                                                          \
    case R:                                                                                                        \
        if ((NO) > (R)) SMALLM_PASS(TILE, WIDTH, NV, R);                                                           \
        break;
#define SMALLM_MATMUL(NAME, TGT, TILE, WIDTH, NV, NO)                                                              \
    __attribute__((target(TGT))) static void NAME(float *y, int ldy, const float *xt, int tp, int tn,              \
                                                  const float *w, int ldw, int in, int out, float beta) {           \
        int nvec = tp / (WIDTH), o = 0;                                                                            \
        for (; o + (NO) <= out; o += (NO)) SMALLM_PASS(TILE, WIDTH, NV, NO);                                       \
        switch (out - o) {                                                                                         \
            SMALLM_REM(TILE, WIDTH, NV, NO, 1)                                                                     \
            SMALLM_REM(TILE, WIDTH, NV, NO, 2)                                                                     \
            SMALLM_REM(TILE, WIDTH, NV, NO, 3)                                                                     \
            SMALLM_REM(TILE, WIDTH, NV, NO, 4)                                                                     \
            SMALLM_REM(TILE, WIDTH, NV, NO, 5)                                                                     \
            SMALLM_REM(TILE, WIDTH, NV, NO, 6)                                                                     \
            SMALLM_REM(TILE, WIDTH, NV, NO, 7)                                                                     \
            SMALLM_REM(TILE, WIDTH, NV, NO, 8)                                                                     \
            SMALLM_REM(TILE, WIDTH, NV, NO, 9)                                                                     \
            SMALLM_REM(TILE, WIDTH, NV, NO, 10)                                                                    \
            SMALLM_REM(TILE, WIDTH, NV, NO, 11)                                                                    \
        default: break;                                                                                            \
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

/* AVX2 + FMA: 8 lanes; tiles of 2 vectors x 6 rows of W (12
 * accumulators, 2 of X, 1 broadcast: 15 of the 16 registers). */
SMALLM_TILE(tile_avx2, "avx2,fma", __m256, 8, _mm256_setzero_ps, _mm256_loadu_ps, _mm256_storeu_ps, _mm256_set1_ps,
            _mm256_fmadd_ps)
SMALLM_MATMUL(matmul_avx2, "avx2,fma", tile_avx2, 8, 2, 6)
/* Few rows (AVX2): the same chains vectorised across 8 rows of W instead,
 * each 8 x 8 block of W transposed in registers so that lane j holds
 * w[o + j][k]; the transposition is shared by the NT (<= 4) rows of X of a
 * tile, so it pays where X has too few rows to fill the outer product's
 * lanes.  Outputs past a multiple of 8 go through the plain loop: the same
 * chains again. */
__attribute__((target("avx2,fma"))) static inline void transpose8_avx2(__m256 r[8]) {
    __m256 t[8], u[8];
    for (int i = 0; i < 4; i++) {
        t[2 * i] = _mm256_unpacklo_ps(r[2 * i], r[2 * i + 1]);
        t[2 * i + 1] = _mm256_unpackhi_ps(r[2 * i], r[2 * i + 1]);
    }
    for (int h = 0; h < 2; h++) {
        __m256 a = t[4 * h], b = t[4 * h + 1], c = t[4 * h + 2], d = t[4 * h + 3];
        u[4 * h] = _mm256_shuffle_ps(a, c, _MM_SHUFFLE(1, 0, 1, 0));
        u[4 * h + 1] = _mm256_shuffle_ps(a, c, _MM_SHUFFLE(3, 2, 3, 2));
        u[4 * h + 2] = _mm256_shuffle_ps(b, d, _MM_SHUFFLE(1, 0, 1, 0));
        u[4 * h + 3] = _mm256_shuffle_ps(b, d, _MM_SHUFFLE(3, 2, 3, 2));
    }
    for (int i = 0; i < 4; i++) {
        r[i] = _mm256_permute2f128_ps(u[i], u[i + 4], 0x20);
        r[i + 4] = _mm256_permute2f128_ps(u[i], u[i + 4], 0x31);
    }
}

static inline __attribute__((always_inline, target("avx2,fma"))) void few_tile_avx2(
    float *y, int ldy, const float *x, int ldx, const float *w, int ldw, int in, float beta, const int nt) {
    __m256 acc[4];
    for (int a = 0; a < nt; a++) acc[a] = _mm256_setzero_ps();
    int k = 0;
    for (; k + 8 <= in; k += 8) {
        __m256 c[8];
        for (int j = 0; j < 8; j++) c[j] = _mm256_loadu_ps(w + (size_t)j * ldw + k);
        transpose8_avx2(c);
        for (int i = 0; i < 8; i++)
            for (int a = 0; a < nt; a++)
                acc[a] = _mm256_fmadd_ps(_mm256_set1_ps(x[(size_t)a * ldx + k + i]), c[i], acc[a]);
    }
    for (; k < in; k++) {
        __m256 c = _mm256_set_ps(w[(size_t)7 * ldw + k], w[(size_t)6 * ldw + k], w[(size_t)5 * ldw + k],
                                 w[(size_t)4 * ldw + k], w[(size_t)3 * ldw + k], w[(size_t)2 * ldw + k],
                                 w[(size_t)ldw + k], w[k]);
        for (int a = 0; a < nt; a++) acc[a] = _mm256_fmadd_ps(_mm256_set1_ps(x[(size_t)a * ldx + k]), c, acc[a]);
    }
    float lane[8];
    for (int a = 0; a < nt; a++) {
        _mm256_storeu_ps(lane, acc[a]);
        for (int j = 0; j < 8; j++) {
            float *d = y + (size_t)a * ldy + j;
            *d = lane[j] + (beta != 0.0f ? beta * *d : 0.0f);
        }
    }
}

__attribute__((target("avx2,fma"))) static void few_avx2(float *y, int ldy, const float *x, int ldx, const float *w,
                                                         int ldw, int T, int in, int out, float beta) {
    int o = 0;
    for (; o + 8 <= out; o += 8) {
        const float *wo = w + (size_t)o * ldw;
        int t = 0;
        for (; t + 4 <= T; t += 4) few_tile_avx2(y + (size_t)t * ldy + o, ldy, x + (size_t)t * ldx, ldx, wo, ldw, in, beta, 4);
        switch (T - t) {
        case 3: few_tile_avx2(y + (size_t)t * ldy + o, ldy, x + (size_t)t * ldx, ldx, wo, ldw, in, beta, 3); break;
        case 2: few_tile_avx2(y + (size_t)t * ldy + o, ldy, x + (size_t)t * ldx, ldx, wo, ldw, in, beta, 2); break;
        case 1: few_tile_avx2(y + (size_t)t * ldy + o, ldy, x + (size_t)t * ldx, ldx, wo, ldw, in, beta, 1); break;
        default: break;
        }
    }
    if (o < out) matmul_plain(y + o, ldy, x, ldx, w + (size_t)o * ldw, ldw, T, in, out - o, beta);
}

SMALLM_PV(pv_avx2, "avx2,fma", __m256, 8, _mm256_setzero_ps, _mm256_loadu_ps, _mm256_storeu_ps, _mm256_set1_ps,
          _mm256_fmadd_ps)

/* AVX-512: 16 lanes; tiles of 2 vectors x 12 rows of W (24 of the 32
 * registers accumulate). */
SMALLM_TILE(tile_avx512, "avx512f,avx2,fma", __m512, 16, _mm512_setzero_ps, _mm512_loadu_ps, _mm512_storeu_ps,
            _mm512_set1_ps, _mm512_fmadd_ps)
SMALLM_MATMUL(matmul_avx512, "avx512f,avx2,fma", tile_avx512, 16, 2, 12)
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

size_t smallm_scratch_floats(int max_in) {
    size_t widest = (size_t)16 * (size_t)(max_in > 0 ? max_in : 0);
    return widest > SMALLM_XT_FLOATS ? widest : SMALLM_XT_FLOATS;
}

int smallm_x_rows(int in) {
    int rows = in > 0 ? SMALLM_XT_FLOATS / in / 16 * 16 : 16;
    return rows > 16 ? rows : 16;
}

void smallm_x_prepare(smallm_x_t *px, const float *x, int ldx, int T, int in, float *scratch) {
    assert(px && T >= 0 && T <= smallm_x_rows(in) && in >= 0 && ldx >= in && scratch);
    smallm_level_t lv = smallm_level();
    int width = T < SMALLM_FEW_ROWS ? 0 : lv == SMALLM_AVX512 ? 16 : lv == SMALLM_AVX2 ? 8 : 0;
    *px = (smallm_x_t){.x = x, .ldx = ldx, .T = T, .in = in, .level = lv};
    if (!width) return; /* plain and few_avx2 read X's rows as they are */
    int tp = (T + width - 1) / width * width;
    for (int k = 0; k < in; k++) {
        float *row = scratch + (size_t)k * tp;
        for (int t = 0; t < T; t++) row[t] = x[(size_t)t * ldx + k];
        for (int t = T; t < tp; t++) row[t] = 0.0f;
    }
    px->xt = scratch;
    px->tp = tp;
}

void smallm_matmul_x(float *y, int ldy, const smallm_x_t *px, const float *w, int ldw, int out, float beta) {
    assert(px && out >= 0 && ldy >= out && ldw >= px->in && px->level == smallm_level());
    switch (px->level) {
#ifdef SMALLM_X86
    case SMALLM_AVX512:
        if (!px->xt) few_avx2(y, ldy, px->x, px->ldx, w, ldw, px->T, px->in, out, beta);
        else matmul_avx512(y, ldy, px->xt, px->tp, px->T, w, ldw, px->in, out, beta);
        return;
    case SMALLM_AVX2:
        if (!px->xt) few_avx2(y, ldy, px->x, px->ldx, w, ldw, px->T, px->in, out, beta);
        else matmul_avx2(y, ldy, px->xt, px->tp, px->T, w, ldw, px->in, out, beta);
        return;
#endif
    default: matmul_plain(y, ldy, px->x, px->ldx, w, ldw, px->T, px->in, out, beta); return;
    }
}

void smallm_matmul(float *y, int ldy, const float *x, int ldx, const float *w, int ldw, int T, int in, int out,
                   float beta, float *scratch) {
    assert(T >= 0 && in >= 0 && out >= 0 && ldy >= out && ldx >= in && ldw >= in && scratch);
    int chunk = smallm_x_rows(in);
    for (int c0 = 0; c0 < T; c0 += chunk) {
        smallm_x_t px;
        smallm_x_prepare(&px, x + (size_t)c0 * ldx, ldx, T - c0 < chunk ? T - c0 : chunk, in, scratch);
        smallm_matmul_x(y + (size_t)c0 * ldy, ldy, &px, w, ldw, out, beta);
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
