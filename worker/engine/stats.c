/* stats.c - see stats.h.
 *
 * Two passes.  The first finds the maximum m, the rank and any non-finite
 * logit.  The second, a chunk at a time, takes u = l - m in float, e = e^u
 * by smallm_exp (vectorised), and sums in double
 *   s0 = sum e,  s1 = sum e u,  s2 = sum e u^2
 * in four interleaved partial sums (a fixed order: the same bits for the
 * same logits, whatever else runs).  Then ln p_i = u_i - ln s0, hence
 *   H = ln s0 - s1/s0   and   Var[ln p] = s2/s0 - (s1/s0)^2.
 * Terms with u below STATS_U_MIN are dropped: e^u < 1.7e-38 there, and
 * smallm_exp's clamp would otherwise give them ~1e-38 times an unbounded
 * |u| in s1 and s2.
 *
 * At smallm's AVX2 and AVX-512 levels both passes run in vectors (AVX2
 * code at both): the first's maximum, count and finiteness test are exact
 * whatever the order; the second's four partial sums are the four double
 * lanes of a vector, element j going to lane j mod 4 as in the plain
 * loop, each by a separate multiply and add (no fma: the target enables
 * none), so the sums have the plain loop's bits. */
#include "stats.h"

#include <math.h>

#include "log.h"
#include "smallm.h"

#if defined(__x86_64__) || defined(__i386__)
#define STATS_X86 1
#include <immintrin.h>
#endif

/* Logits per chunk of the second pass (two float buffers on the stack). */
#define STATS_CHUNK 512
/* Below this u, e^u is dropped (see above; smallm_exp clamps at -87.34). */
#define STATS_U_MIN (-87.0f)

#ifdef STATS_X86
/* The first pass over logits[0, n8) (n8 a multiple of 8): the maximum
 * into *m, the count above lt into *above, whether any is not finite. */
__attribute__((target("avx2"))) static int first_pass_avx2(const float *logits, int n8, float lt, float *m,
                                                           int32_t *above) {
    __m256 mx = _mm256_set1_ps(*m), ltv = _mm256_set1_ps(lt), inf = _mm256_set1_ps(INFINITY), bad = _mm256_setzero_ps();
    __m256 abs_mask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff));
    __m256i cnt = _mm256_setzero_si256();
    for (int i = 0; i < n8; i += 8) {
        __m256 l = _mm256_loadu_ps(logits + i);
        bad = _mm256_or_ps(bad, _mm256_cmp_ps(_mm256_and_ps(l, abs_mask), inf, _CMP_NLT_UQ)); /* inf or NaN */
        cnt = _mm256_sub_epi32(cnt, _mm256_castps_si256(_mm256_cmp_ps(l, ltv, _CMP_GT_OQ)));
        mx = _mm256_max_ps(l, mx); /* l > mx ? l : mx, as the plain loop */
    }
    float lane[8];
    int32_t c[8];
    _mm256_storeu_ps(lane, mx);
    _mm256_storeu_si256((__m256i *)c, cnt);
    for (int j = 0; j < 8; j++) *m = lane[j] > *m ? lane[j] : *m, *above += c[j];
    return _mm256_movemask_ps(bad) != 0;
}

/* The moments of the plain loop below over u, e [0, len4) (a multiple of
 * 4) into the lanes s0[q], s1[q], s2[q]: the same operations in the same
 * order per lane. */
__attribute__((target("avx2"))) static void moments_avx2(const float *u, const float *e, int len4, double *s0,
                                                         double *s1, double *s2) {
    __m256d a0 = _mm256_loadu_pd(s0), a1 = _mm256_loadu_pd(s1), a2 = _mm256_loadu_pd(s2);
    const __m128 umin = _mm_set1_ps(STATS_U_MIN);
    for (int j = 0; j < len4; j += 4) {
        __m128 uf = _mm_loadu_ps(u + j), ef = _mm_and_ps(_mm_loadu_ps(e + j), _mm_cmpge_ps(uf, umin));
        __m256d ed = _mm256_cvtps_pd(ef), ud = _mm256_cvtps_pd(uf), eu = _mm256_mul_pd(ed, ud);
        a0 = _mm256_add_pd(a0, ed);
        a1 = _mm256_add_pd(a1, eu);
        a2 = _mm256_add_pd(a2, _mm256_mul_pd(eu, ud));
    }
    _mm256_storeu_pd(s0, a0), _mm256_storeu_pd(s1, a1), _mm256_storeu_pd(s2, a2);
}
#endif

int stats_compute(const float *logits, int n, int32_t token, stats_t *out, char *err, size_t errlen) {
    float lt = logits[token], m = logits[0];
    int32_t above = 0, bad = 0;
    int i0 = 0, vec = 0;
    (void)vec; /* used only where the vector code exists */
#ifdef STATS_X86
    vec = smallm_level() >= SMALLM_AVX2;
    if (vec) i0 = n / 8 * 8, bad = first_pass_avx2(logits, i0, lt, &m, &above);
#endif
    for (int i = i0; i < n; i++) {
        float l = logits[i];
        bad |= !isfinite(l);
        above += l > lt;
        m = l > m ? l : m;
    }
    if (bad)
        for (int i = 0; i < n; i++)
            if (!isfinite(logits[i]))
                return log_seterr(err, errlen, "non-finite logit %g at vocabulary index %d", (double)logits[i], i);
    double s0[4] = {0}, s1[4] = {0}, s2[4] = {0};
    float u[STATS_CHUNK], e[STATS_CHUNK];
    for (int i0 = 0; i0 < n; i0 += STATS_CHUNK) {
        int len = n - i0 < STATS_CHUNK ? n - i0 : STATS_CHUNK;
        for (int j = 0; j < len; j++) e[j] = u[j] = logits[i0 + j] - m;
        smallm_exp(e, len);
        int j0 = 0;
#ifdef STATS_X86
        if (vec) j0 = len / 4 * 4, moments_avx2(u, e, j0, s0, s1, s2);
#endif
        for (int j = j0; j < len; j += 4) /* len is a multiple of 4 but at the end */
            for (int q = 0; q < 4 && j + q < len; q++) {
                double ej = u[j + q] < STATS_U_MIN ? 0.0 : (double)e[j + q], uj = u[j + q];
                s0[q] += ej;
                s1[q] += ej * uj;
                s2[q] += ej * uj * uj;
            }
    }
    double S0 = (s0[0] + s0[1]) + (s0[2] + s0[3]), S1 = (s1[0] + s1[1]) + (s1[2] + s1[3]),
           S2 = (s2[0] + s2[1]) + (s2[2] + s2[3]);
    double ls0 = log(S0), mu = S1 / S0;
    out->logprob = ((double)lt - m) - ls0;
    out->entropy = ls0 - mu;
    out->top1_logprob = -ls0;
    double var = S2 / S0 - mu * mu;
    out->varentropy = var > 0 ? var : 0;
    out->rank = above + 1;
    return 0;
}

void stats_bound(const stats_t *s, int n, stats_t *bound) {
    /* Each term e_i = e^{u_i}(1 + theta_i), |theta_i| <= A + B |u_i|:
     * smallm_exp's 2 ulp (A = 2^-22) and the float rounding of u (relative
     * 2^-24, through e^u: B; u itself in s1, s2 carries it once more).  So,
     * with the moments M1 = E|u| = H + top1, M2 = E u^2 = var + M1^2 and
     * M3 = E|u|^3 <= 87 M2 (dropped terms aside) under p:
     *   s0's relative error R0 <= A + B M1 (logprob, top1: ln s0),
     *   E[u] off by <= A M1 + B (M2 + M1) + M1 R0, H by that + R0,
     *   E[u^2] off by <= A M2 + B (M3 + 2 M2) + M2 R0, var by that +
     *   2 M1 |dE[u]| + dE[u]^2.
     * The double sums add gamma_{n+4} (2^-53) of each magnitude, the
     * dropped terms n 1.7e-38 (87^2 + 87 + 1) absolutely, and first-order
     * neglect is covered by 1e-3 of slack. */
    const double A = 0x1p-22, B = 0x1p-24, g = (n + 4.0) * 0x1p-53 / (1 - (n + 4.0) * 0x1p-53);
    const double drop = n * 1.7e-38 * (87.0 * 87.0 + 88.0);
    double M1 = fabs(s->entropy + s->top1_logprob), M2 = s->varentropy + M1 * M1, M3 = 87.0 * M2;
    double R0 = A + B * M1, dmu = A * M1 + B * (M2 + M1) + M1 * R0, du2 = A * M2 + B * (M3 + 2 * M2) + M2 * R0;
    double k = 1.001;
    bound->logprob = k * (R0 + g * (1 + fabs(s->logprob))) + drop;
    bound->top1_logprob = k * (R0 + g * (1 + fabs(s->top1_logprob))) + drop;
    bound->entropy = k * (R0 + dmu + g * (1 + 2 * M1 + s->entropy)) + drop;
    bound->varentropy = k * (du2 + 2 * M1 * dmu + dmu * dmu + g * 2 * (s->varentropy + 2 * M1 * M1)) + drop;
    bound->rank = 0;
    bound->context_len = 0;
}

int stats_compute_ref(const float *logits, int n, int32_t token, stats_t *out) {
    double m = logits[0];
    for (int i = 1; i < n; i++) m = logits[i] > m ? logits[i] : m;
    double z = 0;
    for (int i = 0; i < n; i++) z += exp(logits[i] - m);
    double lse = m + log(z), h = 0, e2 = 0;
    int32_t above = 0;
    for (int i = 0; i < n; i++) {
        double lp = logits[i] - lse, p = exp(lp);
        h -= p * lp;
        e2 += p * lp * lp;
        above += logits[i] > logits[token];
    }
    out->logprob = logits[token] - lse;
    out->entropy = h;
    out->top1_logprob = m - lse;
    out->varentropy = e2 - h * h;
    out->rank = above + 1;
    return 0;
}
