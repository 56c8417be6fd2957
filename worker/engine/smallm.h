/* smallm.h - products with few rows (decoding) without BLAS packing, with
 * the SIMD level chosen at run time.
 *
 * What it is: Y = X W^T for a batch of few rows X (M below a threshold,
 * where OpenBLAS would repack the whole weight matrix for every product),
 * streaming each row of W once for all rows of the batch; and the
 * probability-times-values product of attention, streaming each value row
 * once for all the query rows that attend to it.  Each has a plain C
 * version, an AVX2+FMA version and an AVX-512 version, selected once from
 * what the CPU supports (__builtin_cpu_supports) and switchable for tests
 * and benchmarks.  Nothing here allocates.  What it is not: large products
 * (kernels.c hands those to cblas_sgemm).
 *
 * Batch invariance, the property that makes batched decoding reproducible:
 * the arithmetic of every output element depends only on its own row of X
 * and row of W (one fma chain in order, the same at every SIMD level),
 * never on how many rows the batch has or where the row sits in it.  So a sequence decoded in a batch of 40 rows gets the
 * same bits as decoded alone, and a stored sample regenerates exactly. */
#ifndef TS_SMALLM_H
#define TS_SMALLM_H

#include <stddef.h>

typedef enum { SMALLM_PLAIN = 0, SMALLM_AVX2 = 1, SMALLM_AVX512 = 2 } smallm_level_t;

/* The best level this CPU can execute. */
smallm_level_t smallm_best(void);

/* The level in use (initially smallm_best()). */
smallm_level_t smallm_level(void);

/* Selects a level; returns 0, or -1 (and changes nothing) when the CPU
 * cannot execute it.  Not thread-safe: for tests and benchmarks, before any
 * product runs. */
int smallm_set_level(smallm_level_t level);

/* "plain", "avx2", "avx512". */
const char *smallm_level_name(smallm_level_t level);

/* Floats of the scratch smallm_matmul needs for inputs of up to max_in
 * columns (at least 192 KiB worth). */
size_t smallm_scratch_floats(int max_in);

/* Y[T][out] = X[T][in] W[out][in]^T + beta Y, rows of X, W and Y ldx, ldw
 * and ldy floats apart; scratch holds smallm_scratch_floats(in) floats,
 * owned by the caller (its contents are not kept).  Each element is
 * s = fmaf(x[t][k], w[o][k], s) for k = 0..in-1 in order from s = 0, then
 * s + beta y (error at most in * 2^-24 * sum |x w| / (1 - in 2^-24)), at
 * every level: the levels agree bit for bit, and the product is
 * batch-invariant (see above). */
void smallm_matmul(float *y, int ldy, const float *x, int ldx, const float *w, int ldw, int T, int in, int out,
                   float beta, float *scratch);

/* X laid out once for several products with it, e.g. one per panel of a
 * weight matrix that is dequantized a panel at a time (forward.c): the
 * vector levels' transposed copy of X is built once per batch rather than
 * once per panel.  Fields are smallm's; x is not copied (it must stay valid
 * and unchanged while the prepared X is used). */
typedef struct {
    const float *x;
    int ldx, T, in;
    smallm_level_t level; /* the level it was prepared for */
    const float *xt;      /* X^T [in][tp] in the caller's scratch, or NULL */
    int tp;
} smallm_x_t;

/* Rows of X (at least 16) that one smallm_x_prepare takes with in columns
 * in smallm_scratch_floats(in) floats of scratch. */
int smallm_x_rows(int in);

/* Prepares T <= smallm_x_rows(in) rows of X (ldx floats apart) for
 * smallm_matmul_x, writing into scratch (smallm_scratch_floats(in) floats,
 * owned by the caller, used until px is done with).  Nothing allocated. */
void smallm_x_prepare(smallm_x_t *px, const float *x, int ldx, int T, int in, float *scratch);

/* Y[T][out] = X W^T + beta Y for a prepared X: the same bits as
 * smallm_matmul with the same arguments.  The level must not have changed
 * since px was prepared (asserted). */
void smallm_matmul_x(float *y, int ldy, const smallm_x_t *px, const float *w, int ldw, int out, float beta);

/* O[R][hd] (+)= P[R][L] V[L][hd], rows of O, P and V ldo, ldp, ldv floats
 * apart; with accumulate 0 O is overwritten.  Each element is one chain of
 * fused multiply-adds over l = 0..L-1 in order, so splitting L into
 * consecutive parts (a shared prefix, then a row's own suffix) with
 * accumulate gives the bits of one call, at every level. */
void smallm_pv(float *o, int ldo, const float *p, int ldp, const float *v, int ldv, int R, int L, int hd,
               int accumulate);

/* x[i] = exp(x[i]) for n floats, in place: a vector polynomial (Cephes'
 * expf, within 2 ulp of the correctly rounded value for x in [-87, 88];
 * below -87.3 it gives ~1e-38 rather than 0) at the AVX levels, expf plain.
 * The same for every element whatever its index (the tail goes through the
 * vector code padded), so a softmax row's bits do not depend on where it
 * starts. */
void smallm_exp(float *x, int n);

#endif
