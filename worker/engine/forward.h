/* forward.h - the transformer forward pass over a KV cache.
 *
 * What it is: one explicit forward() for every architecture of model.h,
 * parameterised by the model's configuration (RMSNorm or LayerNorm, RoPE in
 * the interleaved or NeoX layout or none, SwiGLU or GELU, sequential or
 * parallel residual) and by which weights it has (biases, learned
 * positions: NULL pointers are skipped), with a
 * KV cache of n_slots independent sequences of up to n_ctx positions, and one
 * arena, allocated by forward_new, carved into every activation buffer, so
 * that forward_batch itself never allocates.  A batch is a list of rows, each
 * (token, slot, position): a prefill is n rows of one slot at consecutive
 * positions (attention by sgemm), a decode step is one row per slot.
 * Weights are used as the model stores them (model.h): an fp32 matrix in
 * place, any other (quantized, F16, BF16) dequantized a panel of rows at a
 * time into a scratch buffer of the arena before its product, so a
 * quantized model stays the size of its file; embedding rows are
 * dequantized on lookup.
 * What it is not: tokenization, statistics or sampling.
 *
 * Two paths compute the same function: the default uses OpenBLAS and
 * smallm's streamed products (decode batches, short chunks, and a prefill
 * where forward_stream_prefill_default says); with
 * forward_set_reference(f, 1) every product, every attention row and GELU
 * use the plain loops of kernels.c, which the tests compare against.  (With
 * GELU, whose fp16 steps follow llama.cpp, the paths agree to ~1e-5 in the
 * logits rather than to the last bits: see kernels.h.) */
#ifndef TS_FORWARD_H
#define TS_FORWARD_H

#include <stddef.h>
#include <stdint.h>

#include "model.h"

typedef struct forward forward_t;

/* Allocates the cache and arena for batches of up to max_batch rows over
 * n_slots sequences of n_ctx positions each (n_ctx may exceed the trained
 * context; the caller decides).  Returns NULL with a message on bad sizes or
 * when memory runs out.  The model must outlive the forward_t. */
forward_t *forward_new(const model_t *model, int n_ctx, int max_batch, int n_slots, char *err, size_t errlen);

/* The same with n_leaves extra slots of leaf_len positions each (numbered
 * n_slots .. n_slots + n_leaves - 1), for rows that continue a prefix held
 * in a full slot without copying it: see forward_attach.  max_batch may then
 * be up to n_ctx * n_slots + leaf_len * n_leaves. */
forward_t *forward_new_shared(const model_t *model, int n_ctx, int max_batch, int n_slots, int n_leaves, int leaf_len,
                              char *err, size_t errlen);

/* Attaches leaf (a slot number >= n_slots) to the full slot parent at base:
 * the leaf's positions [0, base) are the parent's (read in place; the
 * parent must hold them and keep them while the leaf is used), and the
 * leaf holds positions [base, base + leaf_len) itself.  Rows of one batch
 * that continue one parent at one base, placed consecutively, attend to the
 * prefix in one product per KV head.  Re-attaching forgets the leaf's
 * positions. */
void forward_attach(forward_t *self, int leaf, int parent, int base);

int forward_n_leaves(const forward_t *self);

/* NULL-safe; clears *self_p. */
void forward_destroy(forward_t **self_p);

/* Selects the reference path (1) or the BLAS path (0, the default). */
void forward_set_reference(forward_t *self, int on);

/* Whether a prefill chunk's fp32 products stream the weights through
 * smallm (1) rather than call cblas_sgemm (0), on this machine by default:
 * 1 where smallm runs AVX-512, OpenBLAS runs one thread (smallm is one)
 * and OpenBLAS's chosen kernel is not an AVX-512 one (a CPU this OpenBLAS
 * does not know, e.g. AMD Zen 5, gets its Haswell kernel: bench_continue
 * there, 1 thread, scoring at 0.90-0.94 of cblas_sgemm's GFLOP/s through
 * it, 1.32-1.41 streamed).  A rule on what
 * the machine is, never a timing, so two workers on like machines compute
 * the same bits; either path is within the bounds the tests derive, and
 * both are tested on every machine (forward_set_stream_prefill).  Decode
 * batches and short chunks stream whatever this says. */
int forward_stream_prefill_default(void);
void forward_set_stream_prefill(forward_t *self, int on);
int forward_stream_prefill(const forward_t *self);

/* Sets how many rows of a stored (non-fp32) weight matrix are dequantized
 * per product, 1..the default (1024, what forward_new sized the scratch
 * for): the tests use small, uneven panels so that every matrix is split. */
void forward_set_panel_rows(forward_t *self, int rows);

/* Runs n rows.  Row i puts tokens[i] at position pos[i] of slot slots[i]
 * (slots may be NULL: all slot 0), attending to positions 0..pos[i] of its
 * slot, which must already hold earlier positions.  Rows of one slot must
 * have distinct positions.  When all_logits, logits for every row are in
 * forward_logits(self) [n][n_vocab]; otherwise only the last row's, as row 0.
 * A leaf's rows must lie in [base, base + leaf_len) of its attachment.
 * Batches of rows of several slots (decoding) compute each row exactly as
 * when it is alone in a batch (smallm.h), so a sequence's numbers do not
 * depend on what it was decoded beside.
 * Returns 0, or -1 with a message for an out-of-range token, slot or position
 * (a run-time error: the data came from outside), a position past a model's
 * learned position embeddings (gpt2: n_ctx_train) included. */
int forward_batch(forward_t *self, const int32_t *tokens, const int *slots, const int *pos, int n, int all_logits,
                  char *err, size_t errlen);

/* forward_batch with the logits of rows [logits_from, n) only, in
 * forward_logits(self) as rows 0 .. n - logits_from - 1 (0 <= logits_from
 * <= n; n: none, e.g. a chunk that only fills the cache).  Everything but
 * the vocabulary product is forward_batch's; that product's rows are
 * computed with n - logits_from rows (a GEMM row's bits may depend on the
 * row count; below 16 rows they go through smallm, whose rows
 * do not).  forward_batch is this with 0 or n - 1. */
int forward_batch_from(forward_t *self, const int32_t *tokens, const int *slots, const int *pos, int n,
                       int logits_from, char *err, size_t errlen);

/* Convenience: rows tokens[0..n) at positions pos0.. of slot, all logits. */
int forward_prefill(forward_t *self, int slot, const int32_t *tokens, int n, int pos0, char *err, size_t errlen);

/* Copies positions [0, n_pos) of slot src's cache into slot dst, so that K
 * samples can continue one prefix without recomputing it. */
void forward_copy_slot(forward_t *self, int src, int dst, int n_pos);

/* The logits of the last forward_batch: [rows][n_vocab], owned by self. */
const float *forward_logits(const forward_t *self);

int forward_n_ctx(const forward_t *self);
int forward_max_batch(const forward_t *self);
int forward_n_slots(const forward_t *self);
/* Bytes of the arena and the cache, for logs. */
size_t forward_bytes(const forward_t *self);

#endif
