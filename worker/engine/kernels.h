/* kernels.h - the numeric building blocks of the forward pass, each with a
 * plain reference beside the optimised version.
 *
 * What it is: fp32 matrix products (OpenBLAS), RMSNorm and LayerNorm, rotary
 * embedding in both layouts, the GELU and SwiGLU activations, bias addition
 * and causal attention over a KV cache, on caller-owned buffers.  Nothing
 * here allocates.  What it is not: the model's wiring (forward.c).
 *
 * The matmul and attention have a BLAS version and a plain one, GELU a table
 * lookup and an element-wise evaluation, SwiGLU and softmax a vector exp and
 * expf; GELU, SwiGLU, softmax and the norms also run in AVX2 vectors at
 * smallm's AVX2 and AVX-512 levels (smallm.h; a plain loop at the plain
 * level, which test_kernels and test_arch compare every level against); the
 * rotary embeddings and bias addition are plain loops, their own reference.
 *
 * Conventions: matrices are row-major; W is [out][in] as stored in GGUF; a
 * batch is T rows. */
#ifndef TS_KERNELS_H
#define TS_KERNELS_H

#include <stddef.h>

/* Y[T][out] = X[T][in] W[out][in]^T + beta Y, where row t of Y starts at
 * y + t * ldy (ldy >= out: Y may be a column panel of a wider matrix).
 * cblas_sgemm (sgemv for T = 1). */
void kern_matmul(float *y, int ldy, const float *x, const float *w, int T, int in, int out, float beta);
/* The same with plain loops (double accumulation): the reference.  Each
 * element's arithmetic depends only on its row of X and of W, so computing
 * W a panel of rows at a time gives the same bits as all at once. */
void kern_matmul_ref(float *y, int ldy, const float *x, const float *w, int T, int in, int out, float beta);

/* out[i] = x[i] / sqrt(mean(x^2) + eps) * g[i], for one row of n.  The
 * norms' sums are in double, element i into partial sum i mod 4 (vector
 * lanes at the AVX levels), the four added pairwise: the same bits at
 * every level. */
void kern_rmsnorm(float *out, const float *x, const float *g, int n, float eps);

/* out[i] = (x[i] - mean(x)) / sqrt(var(x) + eps) * g[i] + b[i] for one row
 * of n (b may be NULL).  Mean and variance in double: the variance is the
 * mean of squared deviations (two passes), as ggml_norm computes it. */
void kern_layernorm(float *out, const float *x, const float *g, const float *b, int n, float eps);

/* y[t][i] += b[i] for T rows of n. */
void kern_add_bias(float *y, const float *b, int T, int n);

/* x[i] = gelu(x[i]) for n values: the tanh approximation of GPT-2
 * ("gelu_new"), 0.5 v (1 + tanh(sqrt(2/pi) v (1 + 0.044715 v^2))), exactly as
 * llama.cpp's CPU backend computes it, so that GGUF models agree with
 * llama.cpp: v is x rounded to fp16, the formula is evaluated in fp32 and
 * the result rounded to fp16 (one table of all 65536 halves, built once);
 * x <= -10 gives 0 and x >= 10 gives x.  The fp16 steps change an activation
 * by up to 2^-11 of its value, which moves logprobs by ~1e-3 nats against an
 * unrounded fp32 GELU (Hugging Face's); bit-exact agreement with llama.cpp
 * was preferred.  Thread-safe. */
void kern_gelu(float *x, size_t n);
/* x[t][i] = gelu(x[t][i] + b[i]) for T rows of n (b NULL: no addition),
 * the bias added in fp32 as kern_add_bias would, so the bits are those of
 * kern_add_bias then kern_gelu, in one pass.  Both run 8 values at a time
 * at smallm's AVX2 and AVX-512 levels (hardware fp16 conversion and a
 * gather from the same table) where the CPU has F16C, and one at a time
 * at the plain level: the same bits at every level. */
void kern_gelu_bias(float *x, const float *b, int T, int n);
/* The same function evaluated element by element (no table): the
 * reference.  Bit-identical to kern_gelu. */
void kern_gelu_ref(float *x, size_t n);

/* g[i] = silu(g[i]) * u[i] for n values (SwiGLU), exp by smallm_exp. */
void kern_swiglu(float *g, const float *u, size_t n);
/* The same with expf: the reference. */
void kern_swiglu_ref(float *g, const float *u, size_t n);

/* Rotates the first rope_dim dims of each of n_heads heads (head_dim apart)
 * of one row at position pos, in the interleaved layout GGUF llama uses:
 * pairs (x[2i], x[2i+1]) by angle pos * base^(-2i/rope_dim). */
void kern_rope(float *x, int n_heads, int head_dim, int rope_dim, int pos, float base);

/* The same rotation in the NeoX layout (GPT-NeoX, Qwen2, Hugging Face's
 * rotate_half): pairs (x[i], x[i + rope_dim/2]) for i < rope_dim/2, by angle
 * pos * base^(-2i/rope_dim); dims from rope_dim on are untouched. */
void kern_rope_neox(float *x, int n_heads, int head_dim, int rope_dim, int pos, float base);

/* The rotation of position pos as kern_rope and kern_rope_neox compute it:
 * cs[2i], cs[2i + 1] = cos, sin of pos * base^(-2i/rope_dim) / ff[i] for i <
 * rope_dim/2 (angles in double, rounded to fp32), so that a table of them
 * computed once per position gives the same bits.  ff: the frequency
 * divisors of Llama 3's RoPE scaling (GGUF rope_freqs.weight, as ggml's
 * rope applies them), or NULL for none (all 1). */
void kern_rope_angles(float *cs, int rope_dim, int pos, float base, const float *ff);

/* Rotates as kern_rope (neox 0) or kern_rope_neox (neox 1) with the
 * angles of kern_rope_angles. */
void kern_rope_apply(float *x, int n_heads, int head_dim, int rope_dim, const float *cs, int neox);

/* Causal attention of one head for T query rows at consecutive positions
 * pos0..pos0+T-1 over keys/values 0..pos0+T-1.  q: [T] rows with stride qs;
 * k, v: cache rows with stride kvs; out: [T] rows with stride os, hd wide.
 * scores: scratch of T * (pos0 + T) floats.  kern_attention_causal with one
 * head in the group (the fast path). */
void kern_attention(float *out, int os, const float *q, int qs, const float *k, const float *v, int kvs, int T,
                    int pos0, int hd, float *scores);
/* The same for the group heads that share this KV head (GQA), stacked into
 * one pair of products: q + t * qs holds the group heads of position t side
 * by side (hd apart), as does out + t * os.  The scores are scaled by scale,
 * soft-capped to cap tanh(s / cap) when cap is not 0 (Gemma 2), and with
 * window > 0 the row at position p attends to keys max(0, p - window +
 * 1)..p only (a sliding window), as kern_attention_split computes them.
 * The rows go in blocks of 64 positions, each multiplied only by the keys
 * from its first row's window start to its last position (the mask skipped
 * but for half a block).  scores: (64 * group) * (pos0 + T) floats; qg, og:
 * T * group * hd floats each (unused, may be NULL, when group is 1). */
void kern_attention_causal(float *out, int os, const float *q, int qs, const float *k, const float *v, int kvs, int T,
                           int pos0, int hd, int group, float scale, float cap, int window, float *scores, float *qg,
                           float *og);
/* The same for T=1 query at position pos with plain loops: the reference, and
 * the decode path for rows that do not share a slot.  scores: pos+1 floats. */
void kern_attention_row(float *out, const float *q, const float *k, const float *v, int kvs, int pos, int hd,
                        float *scores);

/* kern_attention_row with the keys and values in two parts: positions
 * [0, base) at k1/v1 (a shared prefix), positions [base, pos] at k2/v2
 * (row 0 of k2 is position base).  The reference for rows that continue a
 * shared prefix.  The scores are scaled by scale, soft-capped to cap tanh(s /
 * cap) when cap is not 0 (Gemma 2), and positions before lo (a sliding
 * window) get weight 0. */
void kern_attention_split(float *out, const float *q, const float *k1, const float *v1, int base, const float *k2,
                          const float *v2, int kvs, int pos, int hd, float scale, float cap, int lo, float *scores);

/* x[i] = cap tanh(x[i] / cap) for n values (soft-capping, as ggml: scale
 * by 1/cap, tanh, scale by cap). */
void kern_softcap(float *x, size_t n, float cap);

/* Numerically stable in-place softmax of n values (double sum), exp by
 * smallm_exp; at smallm's AVX2 and AVX-512 levels 8 values at a time (AVX2
 * code), the sum in 8 interleaved double partial sums, otherwise one at a
 * time in order.  A row's bits depend only on the row and the level. */
void kern_softmax(float *x, int n);
/* The same with expf: the reference (kern_attention_row uses it). */
void kern_softmax_ref(float *x, int n);

#endif
