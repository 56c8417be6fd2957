/* quant.c - see quant.h.
 *
 * Each dequantizer is the plain scalar loop over one block, written from the
 * block layout, in the arithmetic order of ggml's reference C code
 * (dequantize_row_* in ggml-quants.c): the hashes of llama.cpp's own
 * dequantization in ../shared/testdata/quant are the specification, and a
 * different association, or a fused multiply-add where ggml rounds the
 * product first, changes the last bit.  CMakeLists.txt compiles this file
 * with -ffp-contract=off so that no compiler or -march turns d*q - m into
 * one fma.  The AVX2 row loops of the common types (see below) are the same
 * operations 8 elements at a time; they exist because a decode step
 * dequantizes every weight for a few rows only, where the plain loops
 * cost as much as the products. */
#include "quant.h"

#include <assert.h>
#include <stdio.h>
#include <string.h>

#include "half.h"

#define QK 32   /* values per block of the legacy and IQ4_NL formats */
#define QK_K 256 /* values per K-quant super-block */

typedef void (*dequant_fn)(const uint8_t *blk, float *y);
typedef void (*blocks_fn)(const uint8_t *p, float *y, uint64_t nb); /* nb whole blocks */


#if defined(__x86_64__) || defined(__i386__)
#define QUANT_X86 1
#endif

typedef struct {
    const char *name;
    int block_elems;  /* 0: unknown id */
    int block_bytes;
    dequant_fn dequant; /* NULL: named, laid out, but not computed with */
    blocks_fn avx2;     /* the row loop compiled for AVX2, or NULL */
} type_info_t;

static float rd_half(const uint8_t *p) {
    uint16_t h;
    memcpy(&h, p, 2);
    return half_f16_to_f32(h);
}

static void dq_f32(const uint8_t *b, float *y) { memcpy(y, b, 4); }

static void dq_f16(const uint8_t *b, float *y) { *y = rd_half(b); }

static void dq_bf16(const uint8_t *b, float *y) {
    uint16_t h;
    memcpy(&h, b, 2);
    *y = half_bf16_to_f32(h);
}

/* Legacy formats: value j of the block is in the low nibble of byte j,
 * value j + 16 in its high nibble. */
static void dq_q4_0(const uint8_t *b, float *y) {
    const float d = rd_half(b);
    const uint8_t *qs = b + 2;
    for (int j = 0; j < QK / 2; j++) {
        y[j] = (float)((qs[j] & 0x0f) - 8) * d;
        y[j + QK / 2] = (float)((qs[j] >> 4) - 8) * d;
    }
}

static void dq_q4_1(const uint8_t *b, float *y) {
    const float d = rd_half(b), m = rd_half(b + 2);
    const uint8_t *qs = b + 4;
    for (int j = 0; j < QK / 2; j++) {
        y[j] = (float)(qs[j] & 0x0f) * d + m;
        y[j + QK / 2] = (float)(qs[j] >> 4) * d + m;
    }
}

/* Q5: bit j of the 32-bit word is the fifth bit of value j. */
static void dq_q5_0(const uint8_t *b, float *y) {
    const float d = rd_half(b);
    uint32_t qh;
    memcpy(&qh, b + 2, 4);
    const uint8_t *qs = b + 6;
    for (int j = 0; j < QK / 2; j++) {
        int lo = (qs[j] & 0x0f) | (int)(((qh >> j) & 1) << 4);
        int hi = (qs[j] >> 4) | (int)(((qh >> (j + 16)) & 1) << 4);
        y[j] = (float)(lo - 16) * d;
        y[j + QK / 2] = (float)(hi - 16) * d;
    }
}

static void dq_q5_1(const uint8_t *b, float *y) {
    const float d = rd_half(b), m = rd_half(b + 2);
    uint32_t qh;
    memcpy(&qh, b + 4, 4);
    const uint8_t *qs = b + 8;
    for (int j = 0; j < QK / 2; j++) {
        int lo = (qs[j] & 0x0f) | (int)(((qh >> j) & 1) << 4);
        int hi = (qs[j] >> 4) | (int)(((qh >> (j + 16)) & 1) << 4);
        y[j] = (float)lo * d + m;
        y[j + QK / 2] = (float)hi * d + m;
    }
}

static void dq_q8_0(const uint8_t *b, float *y) {
    const float d = rd_half(b);
    for (int j = 0; j < QK; j++) y[j] = (float)(int8_t)b[2 + j] * d;
}

/* Q2_K: 16 sub-blocks of 16 values; byte i of scales holds the sub-block's
 * scale (low nibble, times d) and min (high nibble, times dmin).  The 64
 * bytes of q hold four 2-bit planes: plane p of byte l (l < 32) is value
 * l + 32 p of the first 128, and of bytes 32..63 of the second 128. */
static void dq_q2_k(const uint8_t *b, float *y) {
    const uint8_t *sc = b, *q = b + 16;
    const float d = rd_half(b + 80), dmin = rd_half(b + 82);
    int is = 0;
    for (int half = 0; half < 2; half++, q += 32)
        for (int shift = 0; shift < 8; shift += 2)
            for (int part = 0; part < 2; part++, is++) {
                const float dl = d * (float)(sc[is] & 0x0f), ml = dmin * (float)(sc[is] >> 4);
                for (int l = 0; l < 16; l++) *y++ = dl * (float)((q[l + 16 * part] >> shift) & 3) - ml;
            }
}

/* K-quant 6-bit scales packed in 12 bytes (Q4_K, Q5_K): for sub-block j < 4
 * the low 6 bits of bytes j (scale) and j + 4 (min); for j >= 4 the nibbles
 * of byte j + 4 with the top two bits of bytes j - 4 and j as high bits. */
static void scale_min_k4(int j, const uint8_t *s, int *sc, int *mn) {
    if (j < 4) {
        *sc = s[j] & 63;
        *mn = s[j + 4] & 63;
    } else {
        *sc = (s[j + 4] & 0x0f) | ((s[j - 4] >> 6) << 4);
        *mn = (s[j + 4] >> 4) | ((s[j] >> 6) << 4);
    }
}

/* Q3_K: 16 sub-blocks of 16 values with signed 6-bit scales (stored +32):
 * the low nibbles of bytes 0..7 are sub-blocks 0..7, their high nibbles
 * 8..15, and bytes 8..11 give each sub-block its top 2 bits (byte 8 + i%4,
 * bits 2*(i/4)).  The value is its 2-bit plane minus 4 unless its bit in the
 * high mask is set; plane k of the mask (bit k of byte l) belongs to the
 * k-th group of 32 values. */
static void dq_q3_k(const uint8_t *b, float *y) {
    const uint8_t *hm = b, *q = b + 32, *s = b + 96;
    const float d = rd_half(b + 108);
    int8_t scales[16];
    for (int i = 0; i < 16; i++) {
        int lo = i < 8 ? s[i] & 0x0f : s[i - 8] >> 4;
        int hi = (s[8 + i % 4] >> (2 * (i / 4))) & 3;
        scales[i] = (int8_t)((lo | (hi << 4)) - 32);
    }
    int is = 0, plane = 0;
    for (int half = 0; half < 2; half++, q += 32)
        for (int shift = 0; shift < 8; shift += 2, plane++)
            for (int part = 0; part < 2; part++, is++) {
                const float dl = d * (float)scales[is];
                for (int l = 0; l < 16; l++) {
                    int k = l + 16 * part;
                    int v = ((q[k] >> shift) & 3) - ((hm[k] >> plane) & 1 ? 0 : 4);
                    *y++ = dl * (float)v;
                }
            }
}

static void dq_q4_k(const uint8_t *b, float *y) {
    const float d = rd_half(b), dmin = rd_half(b + 2);
    const uint8_t *s = b + 4, *q = b + 16;
    for (int j = 0; j < 8; j += 2, q += 32) {
        int sc, mn;
        scale_min_k4(j, s, &sc, &mn);
        const float d1 = d * (float)sc, m1 = dmin * (float)mn;
        scale_min_k4(j + 1, s, &sc, &mn);
        const float d2 = d * (float)sc, m2 = dmin * (float)mn;
        for (int l = 0; l < 32; l++) *y++ = d1 * (float)(q[l] & 0x0f) - m1;
        for (int l = 0; l < 32; l++) *y++ = d2 * (float)(q[l] >> 4) - m2;
    }
}

/* Q5_K: as Q4_K, and bit j of byte l of qh is the fifth bit of value l of
 * the j-th group of 32. */
static void dq_q5_k(const uint8_t *b, float *y) {
    const float d = rd_half(b), dmin = rd_half(b + 2);
    const uint8_t *s = b + 4, *qh = b + 16, *q = b + 48;
    for (int j = 0; j < 8; j += 2, q += 32) {
        int sc, mn;
        scale_min_k4(j, s, &sc, &mn);
        const float d1 = d * (float)sc, m1 = dmin * (float)mn;
        scale_min_k4(j + 1, s, &sc, &mn);
        const float d2 = d * (float)sc, m2 = dmin * (float)mn;
        for (int l = 0; l < 32; l++) *y++ = d1 * (float)((q[l] & 0x0f) + ((qh[l] >> j) & 1 ? 16 : 0)) - m1;
        for (int l = 0; l < 32; l++) *y++ = d2 * (float)((q[l] >> 4) + ((qh[l] >> (j + 1)) & 1 ? 16 : 0)) - m2;
    }
}

/* Q6_K: each half of 128 values takes 64 bytes of low nibbles and 32 of high
 * bit pairs; value l + 32 k (k < 4) of the half has low nibble from byte
 * l + 32 (k & 1) (high nibble when k >= 2) and high bits 2k..2k+1 of byte l;
 * 16 int8 scales, one per 16 values, times d (d * scale rounded first, as
 * ggml's d * sc * q associates). */
static void dq_q6_k(const uint8_t *b, float *y) {
    const uint8_t *ql = b, *qh = b + 128;
    const int8_t *sc = (const int8_t *)(b + 192);
    const float d = rd_half(b + 208);
    for (int half = 0; half < 2; half++, y += 128, ql += 64, qh += 32, sc += 8)
        for (int k = 0; k < 4; k++) {
            const uint8_t *lo = ql + 32 * (k & 1);
            const int lshift = k < 2 ? 0 : 4, hshift = 2 * k;
            for (int g = 0; g < 2; g++) {
                const float ds = d * (float)sc[g + 2 * k];
                const uint8_t *lg = lo + 16 * g, *hg = qh + 16 * g;
                float *yg = y + 32 * k + 16 * g;
                for (int l = 0; l < 16; l++) {
                    int q = (((lg[l] >> lshift) & 0x0f) | (((hg[l] >> hshift) & 3) << 4)) - 32;
                    yg[l] = ds * (float)q;
                }
            }
        }
}

/* The 16 non-linear levels of IQ4_NL and IQ4_XS. */
static const int8_t k_iq4nl[16] = {-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113};

static void dq_iq4_nl(const uint8_t *b, float *y) {
    const float d = rd_half(b);
    const uint8_t *qs = b + 2;
    for (int j = 0; j < QK / 2; j++) {
        y[j] = d * (float)k_iq4nl[qs[j] & 0x0f];
        y[j + QK / 2] = d * (float)k_iq4nl[qs[j] >> 4];
    }
}

/* IQ4_XS: 8 sub-blocks of 32; sub-block i's 6-bit scale (stored +32) has
 * nibble i%2 of byte i/2 of scales_l as low bits and bits 2i..2i+1 of
 * scales_h as high bits. */
static void dq_iq4_xs(const uint8_t *b, float *y) {
    const float d = rd_half(b);
    uint16_t sh;
    memcpy(&sh, b + 2, 2);
    const uint8_t *sl = b + 4, *qs = b + 8;
    for (int i = 0; i < 8; i++, y += 32, qs += 16) {
        int ls = ((sl[i / 2] >> (4 * (i % 2))) & 0x0f) | (((sh >> (2 * i)) & 3) << 4);
        const float dl = d * (float)(ls - 32);
        for (int j = 0; j < 16; j++) {
            y[j] = dl * (float)k_iq4nl[qs[j] & 0x0f];
            y[j + 16] = dl * (float)k_iq4nl[qs[j] >> 4];
        }
    }
}

/* AVX2 row loops of nb blocks for the types that dominate real files
 * (Q4_0, Q8_0 and the K-quants of the usual _M mixes): the plain code's
 * per-element operations, 8 lanes at a time, each element computed exactly
 * as the plain loop computes it (integer unpacking is exact; one fp32
 * multiply, then one subtract, no fma), so the same bits: test_quant checks
 * both levels against llama.cpp's hashes.  Selected at run time, so one
 * binary runs on any x86-64. */
#ifdef QUANT_X86
#include <immintrin.h>
#define QUANT_AVX2 __attribute__((target("avx2")))

/* 8 bytes from p widened to 8 int32 lanes. */
QUANT_AVX2 static inline __m256i u8x8(const uint8_t *p) { return _mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)p)); }

QUANT_AVX2 static void q4_0_avx2(const uint8_t *b, float *y, uint64_t nb) {
    const __m256i m = _mm256_set1_epi32(0x0f), eight = _mm256_set1_epi32(8);
    for (uint64_t i = 0; i < nb; i++, b += 18, y += QK) {
        const __m256 d = _mm256_set1_ps(rd_half(b));
        for (int j = 0; j < QK / 2; j += 8) {
            __m256i q = u8x8(b + 2 + j);
            __m256 lo = _mm256_cvtepi32_ps(_mm256_sub_epi32(_mm256_and_si256(q, m), eight));
            __m256 hi = _mm256_cvtepi32_ps(_mm256_sub_epi32(_mm256_srli_epi32(q, 4), eight));
            _mm256_storeu_ps(y + j, _mm256_mul_ps(lo, d));
            _mm256_storeu_ps(y + j + QK / 2, _mm256_mul_ps(hi, d));
        }
    }
}

QUANT_AVX2 static void q8_0_avx2(const uint8_t *b, float *y, uint64_t nb) {
    for (uint64_t i = 0; i < nb; i++, b += 34, y += QK) {
        const __m256 d = _mm256_set1_ps(rd_half(b));
        for (int j = 0; j < QK; j += 8) {
            __m256i q = _mm256_cvtepi8_epi32(_mm_loadl_epi64((const __m128i *)(b + 2 + j)));
            _mm256_storeu_ps(y + j, _mm256_mul_ps(_mm256_cvtepi32_ps(q), d));
        }
    }
}

/* Q4_K and Q5_K: d * q - m per sub-block of 32 (fifth bits: qh != NULL). */
QUANT_AVX2 static inline void q45_k_avx2(const uint8_t *b, float *y, int five) {
    const float d = rd_half(b), dmin = rd_half(b + 2);
    const uint8_t *s = b + 4, *qh = b + 16, *q = b + (five ? 48 : 16);
    const __m256i m = _mm256_set1_epi32(0x0f), one = _mm256_set1_epi32(1);
    for (int j = 0; j < 8; j += 2, q += 32) {
        int sc, mn;
        scale_min_k4(j, s, &sc, &mn);
        const __m256 d1 = _mm256_set1_ps(d * (float)sc), m1 = _mm256_set1_ps(dmin * (float)mn);
        scale_min_k4(j + 1, s, &sc, &mn);
        const __m256 d2 = _mm256_set1_ps(d * (float)sc), m2 = _mm256_set1_ps(dmin * (float)mn);
        for (int l = 0; l < 32; l += 8) {
            __m256i v = u8x8(q + l), lo = _mm256_and_si256(v, m), hi = _mm256_srli_epi32(v, 4);
            if (five) {
                __m256i h = u8x8(qh + l);
                lo = _mm256_add_epi32(lo, _mm256_slli_epi32(_mm256_and_si256(_mm256_srl_epi32(h, _mm_cvtsi32_si128(j)), one), 4));
                hi = _mm256_add_epi32(hi, _mm256_slli_epi32(_mm256_and_si256(_mm256_srl_epi32(h, _mm_cvtsi32_si128(j + 1)), one), 4));
            }
            _mm256_storeu_ps(y + l, _mm256_sub_ps(_mm256_mul_ps(d1, _mm256_cvtepi32_ps(lo)), m1));
            _mm256_storeu_ps(y + 32 + l, _mm256_sub_ps(_mm256_mul_ps(d2, _mm256_cvtepi32_ps(hi)), m2));
        }
        y += 64;
    }
}

QUANT_AVX2 static void q4_k_avx2(const uint8_t *b, float *y, uint64_t nb) {
    for (uint64_t i = 0; i < nb; i++) q45_k_avx2(b + i * 144, y + i * QK_K, 0);
}

QUANT_AVX2 static void q5_k_avx2(const uint8_t *b, float *y, uint64_t nb) {
    for (uint64_t i = 0; i < nb; i++) q45_k_avx2(b + i * 176, y + i * QK_K, 1);
}

/* Q6_K: each group of 32 values (one k of a half) is assembled as bytes,
 * 32 at a time (q - 32 fits int8), then widened 8 at a time. */
QUANT_AVX2 static void q6_k_avx2(const uint8_t *blk, float *out, uint64_t nb) {
    const __m256i m4 = _mm256_set1_epi8(0x0f), m2 = _mm256_set1_epi8(3), off = _mm256_set1_epi8(32);
    for (uint64_t i = 0; i < nb; i++, blk += 210, out += QK_K) {
        const uint8_t *ql = blk, *qh = blk + 128;
        const int8_t *sc = (const int8_t *)(blk + 192);
        const float d = rd_half(blk + 208);
        float *y = out;
        for (int half = 0; half < 2; half++, y += 128, ql += 64, qh += 32, sc += 8) {
            const __m256i h = _mm256_loadu_si256((const __m256i *)qh);
            for (int k = 0; k < 4; k++) {
                __m256i lo = _mm256_loadu_si256((const __m256i *)(ql + 32 * (k & 1)));
                if (k >= 2) lo = _mm256_srli_epi16(lo, 4); /* 16-bit shifts: the mask drops what crosses bytes */
                __m256i hk = _mm256_and_si256(_mm256_srl_epi16(h, _mm_cvtsi32_si128(2 * k)), m2);
                __m256i q = _mm256_sub_epi8(_mm256_or_si256(_mm256_and_si256(lo, m4), _mm256_slli_epi16(hk, 4)), off);
                __m128i part[4] = {_mm256_castsi256_si128(q), _mm_srli_si128(_mm256_castsi256_si128(q), 8),
                                   _mm256_extracti128_si256(q, 1), _mm_srli_si128(_mm256_extracti128_si256(q, 1), 8)};
                for (int g = 0; g < 2; g++) {
                    const __m256 ds = _mm256_set1_ps(d * (float)sc[g + 2 * k]);
                    for (int j = 0; j < 2; j++)
                        _mm256_storeu_ps(y + 32 * k + 16 * g + 8 * j,
                                         _mm256_mul_ps(ds, _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(part[2 * g + j]))));
                }
            }
        }
    }
}
#define QUANT_VEC(FN) FN
#else
#define QUANT_VEC(FN) NULL
#endif

/* Indexed by ggml type id; gaps are ids ggml removed.  Every field given
 * (clang's -Wmissing-field-initializers). */
static const type_info_t g_types[] = {
    [GGML_TYPE_F32] = {"F32", 1, 4, dq_f32, NULL},
    [GGML_TYPE_F16] = {"F16", 1, 2, dq_f16, NULL},
    [GGML_TYPE_Q4_0] = {"Q4_0", QK, 18, dq_q4_0, QUANT_VEC(q4_0_avx2)},
    [GGML_TYPE_Q4_1] = {"Q4_1", QK, 20, dq_q4_1, NULL},
    [GGML_TYPE_Q5_0] = {"Q5_0", QK, 22, dq_q5_0, NULL},
    [GGML_TYPE_Q5_1] = {"Q5_1", QK, 24, dq_q5_1, NULL},
    [GGML_TYPE_Q8_0] = {"Q8_0", QK, 34, dq_q8_0, QUANT_VEC(q8_0_avx2)},
    [GGML_TYPE_Q8_1] = {"Q8_1", QK, 36, NULL, NULL},
    [GGML_TYPE_Q2_K] = {"Q2_K", QK_K, 84, dq_q2_k, NULL},
    [GGML_TYPE_Q3_K] = {"Q3_K", QK_K, 110, dq_q3_k, NULL},
    [GGML_TYPE_Q4_K] = {"Q4_K", QK_K, 144, dq_q4_k, QUANT_VEC(q4_k_avx2)},
    [GGML_TYPE_Q5_K] = {"Q5_K", QK_K, 176, dq_q5_k, QUANT_VEC(q5_k_avx2)},
    [GGML_TYPE_Q6_K] = {"Q6_K", QK_K, 210, dq_q6_k, QUANT_VEC(q6_k_avx2)},
    [GGML_TYPE_Q8_K] = {"Q8_K", QK_K, 292, NULL, NULL},
    [GGML_TYPE_IQ2_XXS] = {"IQ2_XXS", QK_K, 66, NULL, NULL},
    [GGML_TYPE_IQ2_XS] = {"IQ2_XS", QK_K, 74, NULL, NULL},
    [GGML_TYPE_IQ3_XXS] = {"IQ3_XXS", QK_K, 98, NULL, NULL},
    [GGML_TYPE_IQ1_S] = {"IQ1_S", QK_K, 50, NULL, NULL},
    [GGML_TYPE_IQ4_NL] = {"IQ4_NL", QK, 18, dq_iq4_nl, NULL},
    [GGML_TYPE_IQ3_S] = {"IQ3_S", QK_K, 110, NULL, NULL},
    [GGML_TYPE_IQ2_S] = {"IQ2_S", QK_K, 82, NULL, NULL},
    [GGML_TYPE_IQ4_XS] = {"IQ4_XS", QK_K, 136, dq_iq4_xs, NULL},
    [GGML_TYPE_I8] = {"I8", 1, 1, NULL, NULL},
    [GGML_TYPE_I16] = {"I16", 1, 2, NULL, NULL},
    [GGML_TYPE_I32] = {"I32", 1, 4, NULL, NULL},
    [GGML_TYPE_I64] = {"I64", 1, 8, NULL, NULL},
    [GGML_TYPE_F64] = {"F64", 1, 8, NULL, NULL},
    [GGML_TYPE_IQ1_M] = {"IQ1_M", QK_K, 56, NULL, NULL},
    [GGML_TYPE_BF16] = {"BF16", 1, 2, dq_bf16, NULL},
    [GGML_TYPE_TQ1_0] = {"TQ1_0", QK_K, 54, NULL, NULL},
    [GGML_TYPE_TQ2_0] = {"TQ2_0", QK_K, 66, NULL, NULL},
    [GGML_TYPE_MXFP4] = {"MXFP4", QK, 17, NULL, NULL},
};

#define N_TYPES (sizeof g_types / sizeof *g_types)

static const type_info_t *info(uint32_t type) {
    return type < N_TYPES && g_types[type].block_elems ? &g_types[type] : NULL;
}

const char *quant_type_name(uint32_t type) {
    static __thread char buf[32];
    const type_info_t *t = info(type);
    if (t) return t->name;
    snprintf(buf, sizeof buf, "unknown type %u", type);
    return buf;
}

int quant_supported(uint32_t type) {
    const type_info_t *t = info(type);
    return t && t->dequant;
}

const char *quant_supported_list(void) {
    return "F32, F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K, IQ4_NL, IQ4_XS";
}

int quant_block_elems(uint32_t type) {
    const type_info_t *t = info(type);
    return t ? t->block_elems : 0;
}

uint64_t quant_row_bytes(uint32_t type, uint64_t n) {
    const type_info_t *t = info(type);
    if (!t || n % (uint64_t)t->block_elems) return 0;
    return n / (uint64_t)t->block_elems * (uint64_t)t->block_bytes;
}

void quant_dequant(uint32_t type, const void *src, float *out, uint64_t n) {
    const type_info_t *t = info(type);
    assert(t && t->dequant && n % (uint64_t)t->block_elems == 0);
    const uint8_t *p = src;
    if (type == GGML_TYPE_F32) { /* the common case: one copy, not n calls */
        memcpy(out, p, n * sizeof(float));
        return;
    }
    uint64_t nb = n / (uint64_t)t->block_elems;
    if (t->avx2 && quant_vector()) {
        t->avx2(p, out, nb);
        return;
    }
    for (uint64_t b = 0; b < nb; b++) t->dequant(p + b * (uint64_t)t->block_bytes, out + b * (uint64_t)t->block_elems);
}

static int g_vector = -1; /* -1: not chosen yet */

static int vector_available(void) {
#ifdef QUANT_X86
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2");
#else
    return 0;
#endif
}

int quant_vector(void) {
    /* A benign race at worst: every thread computes the same value. */
    if (g_vector < 0) g_vector = vector_available();
    return g_vector;
}

int quant_set_vector(int on) {
    if (on && !vector_available()) return -1;
    g_vector = on != 0;
    return 0;
}

quant_mat_t quant_mat(uint32_t type, const void *data, int64_t rows, int64_t cols) {
    assert(rows >= 0 && cols > 0 && quant_row_bytes(type, (uint64_t)cols) > 0);
    quant_mat_t m = {type, data, rows, cols};
    return m;
}

uint64_t quant_mat_row_bytes(const quant_mat_t *m) { return quant_row_bytes(m->type, (uint64_t)m->cols); }

quant_mat_t quant_mat_rows(const quant_mat_t *m, int64_t r0, int64_t n) {
    assert(r0 >= 0 && n >= 0 && r0 + n <= m->rows);
    return quant_mat(m->type, (const uint8_t *)m->data + (uint64_t)r0 * quant_mat_row_bytes(m), n, m->cols);
}

const float *quant_mat_f32(const quant_mat_t *m) {
    return m->type == GGML_TYPE_F32 && (uintptr_t)m->data % sizeof(float) == 0 ? m->data : NULL;
}

void quant_mat_dequant(const quant_mat_t *m, int64_t r0, int64_t n, float *out) {
    assert(r0 >= 0 && n >= 0 && r0 + n <= m->rows);
    quant_dequant(m->type, (const uint8_t *)m->data + (uint64_t)r0 * quant_mat_row_bytes(m), out,
                  (uint64_t)n * (uint64_t)m->cols);
}

int quant_selftest(void) {
    /* Q4_0 with d = 0.5 (0x3800): nibbles 0 and 15 give -4 and 3.5. */
    uint8_t q40[18] = {0x00, 0x38};
    q40[2] = 0xf0;
    float y[QK_K];
    quant_dequant(GGML_TYPE_Q4_0, q40, y, 32);
    if (y[0] != -4.0f || y[16] != 3.5f || y[1] != -4.0f) return -1;
    /* Q8_0 with d = 2 (0x4000): int8 -3 gives -6. */
    uint8_t q80[34] = {0x00, 0x40};
    q80[2 + 5] = (uint8_t)-3;
    quant_dequant(GGML_TYPE_Q8_0, q80, y, 32);
    if (y[5] != -6.0f || y[0] != 0.0f) return -1;
    /* Every named type has a layout; every layout's row size is exact. */
    for (uint32_t t = 0; t < N_TYPES; t++)
        if (g_types[t].block_elems && quant_row_bytes(t, (uint64_t)g_types[t].block_elems * 3) !=
                                          3u * (uint64_t)g_types[t].block_bytes)
            return -1;
    if (quant_row_bytes(GGML_TYPE_Q4_K, 255) != 0 || quant_row_bytes(4, 32) != 0) return -1;
    return 0;
}
