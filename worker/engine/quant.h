/* quant.h - ggml's tensor types: their names, block layouts and the exact
 * dequantization of the ones this project computes with.
 *
 * What it is: one table of every ggml type id (so that any type, supported
 * or not, is named in messages: "IQ2_XXS", never "type 16"), the size of a
 * row of n elements of each type, and a scalar dequantizer per supported
 * type that reproduces llama.cpp's ggml dequantize_row_* bit for bit: fp16
 * scales widened exactly, every product and sum rounded in fp32 in the order
 * ggml writes them, with no fused multiply-add (the file is built with
 * -ffp-contract=off; see quant.c), at every level (the plain loops, and AVX2
 * versions of Q4_0 Q8_0 Q4_K Q5_K Q6_K chosen at run time).  Supported: F32 F16 BF16 Q4_0 Q4_1 Q5_0
 * Q5_1 Q8_0 Q2_K Q3_K Q4_K Q5_K Q6_K IQ4_NL IQ4_XS.
 *
 * Also the weight matrix as the forward pass sees it, quant_mat_t: a type
 * and a pointer to rows of that type (usually into a mapped GGUF file), so a
 * quantized model stays quantized in memory and is dequantized a panel of
 * rows at a time where it is used.
 *
 * What it is not: a quantizer (gguf_writer.c writes the few types it needs),
 * a file reader (gguf.c validates sizes and offsets before anything here
 * touches the bytes), or a fused quantized kernel.
 *
 * Block layouts (little-endian; "half" is an IEEE fp16 scale; K-quants hold
 * 256 values per block, the others 32):
 *   Q4_0   half d, 16 bytes of 4-bit q:               x = d (q - 8)
 *   Q4_1   half d, half m, 16 bytes of 4-bit q:       x = d q + m
 *   Q5_0   half d, u32 high bits, 16 bytes of nibbles: x = d (q - 16)
 *   Q5_1   half d, half m, u32 high bits, nibbles:    x = d q + m
 *   Q8_0   half d, 32 int8 q:                         x = d q
 *   Q2_K   16 scale/min nibble pairs, 64 bytes of 2-bit q, half d, half dmin
 *   Q3_K   32 bytes high-bit mask, 64 bytes of 2-bit q, 12 bytes of 6-bit
 *          scales, half d
 *   Q4_K   half d, half dmin, 12 bytes of 6-bit scales/mins, 128 nibbles
 *   Q5_K   Q4_K plus 32 bytes of fifth bits
 *   Q6_K   128 bytes low nibbles, 64 bytes high 2 bits, 16 int8 scales, half d
 *   IQ4_NL half d, 16 bytes of 4-bit indices into a fixed 16-value table
 *   IQ4_XS half d, u16 high scale bits, 4 bytes low scale nibbles, 128 bytes
 *          of 4-bit indices into the IQ4_NL table (8 sub-blocks of 32) */
#ifndef TS_QUANT_H
#define TS_QUANT_H

#include <stddef.h>
#include <stdint.h>

/* ggml type ids as stored in GGUF tensor infos (ggml.h's enum ggml_type).
 * Ids 4, 5 and 31..33, 36..38 were removed from ggml and are unnamed. */
typedef enum {
    GGML_TYPE_F32 = 0,
    GGML_TYPE_F16 = 1,
    GGML_TYPE_Q4_0 = 2,
    GGML_TYPE_Q4_1 = 3,
    GGML_TYPE_Q5_0 = 6,
    GGML_TYPE_Q5_1 = 7,
    GGML_TYPE_Q8_0 = 8,
    GGML_TYPE_Q8_1 = 9,
    GGML_TYPE_Q2_K = 10,
    GGML_TYPE_Q3_K = 11,
    GGML_TYPE_Q4_K = 12,
    GGML_TYPE_Q5_K = 13,
    GGML_TYPE_Q6_K = 14,
    GGML_TYPE_Q8_K = 15,
    GGML_TYPE_IQ2_XXS = 16,
    GGML_TYPE_IQ2_XS = 17,
    GGML_TYPE_IQ3_XXS = 18,
    GGML_TYPE_IQ1_S = 19,
    GGML_TYPE_IQ4_NL = 20,
    GGML_TYPE_IQ3_S = 21,
    GGML_TYPE_IQ2_S = 22,
    GGML_TYPE_IQ4_XS = 23,
    GGML_TYPE_I8 = 24,
    GGML_TYPE_I16 = 25,
    GGML_TYPE_I32 = 26,
    GGML_TYPE_I64 = 27,
    GGML_TYPE_F64 = 28,
    GGML_TYPE_IQ1_M = 29,
    GGML_TYPE_BF16 = 30,
    GGML_TYPE_TQ1_0 = 34,
    GGML_TYPE_TQ2_0 = 35,
    GGML_TYPE_MXFP4 = 39,
} ggml_type_t;

/* The name of a ggml type ("Q4_K", "IQ2_XXS"), or "unknown type N" (in a
 * per-thread buffer) for an id ggml does not define. */
const char *quant_type_name(uint32_t type);

/* Whether quant_dequant can expand type (the list in the header comment). */
int quant_supported(uint32_t type);

/* The supported types' names, comma-separated, for "supported: ..."
 * messages. */
const char *quant_supported_list(void);

/* Elements per block (1 for F32/F16/BF16/I*), or 0 for an unknown id. */
int quant_block_elems(uint32_t type);

/* Bytes of a row of n elements of type, or 0 when n is not a multiple of
 * the type's block (a corrupt or unsupported shape) or the id is unknown. */
uint64_t quant_row_bytes(uint32_t type, uint64_t n);

/* Expands n elements (a multiple of the type's block) of a supported type
 * from src (any alignment) into out, exactly as ggml's dequantize_row_*.
 * Asserts on an unsupported type or a partial block: the loader has checked
 * both (programmer error otherwise). */
void quant_dequant(uint32_t type, const void *src, float *out, uint64_t n);

/* Whether quant_dequant runs the AVX2 dequantizers of the types that have
 * one (the plain loops' operations, 8 lanes at a time: the same bits); on
 * by default where the CPU has AVX2. */
int quant_vector(void);

/* Turns the AVX2 dequantizers on or off; returns 0, or -1 (changing
 * nothing) when asked for them on a CPU without AVX2.  Not thread-safe: for
 * tests and benchmarks, before any dequantization runs. */
int quant_set_vector(int on);

/* A weight matrix [rows][cols] of one type: row r starts at
 * data + r * quant_row_bytes(type, cols).  The data are not owned (a file
 * mapping, or fp32 buffers a loader keeps). */
typedef struct {
    uint32_t type;
    const void *data;
    int64_t rows, cols;
} quant_mat_t;

/* A matrix over data; rows' length cols must be whole blocks of type
 * (asserted: the loader checks the file first). */
quant_mat_t quant_mat(uint32_t type, const void *data, int64_t rows, int64_t cols);

/* Rows [r0, r0 + n) of m as a matrix of their own (a view: fused QKV). */
quant_mat_t quant_mat_rows(const quant_mat_t *m, int64_t r0, int64_t n);

/* Bytes of one row of m. */
uint64_t quant_mat_row_bytes(const quant_mat_t *m);

/* The fp32 rows of m when they can be used in place (F32 stored
 * float-aligned), else NULL. */
const float *quant_mat_f32(const quant_mat_t *m);

/* Dequantizes rows [r0, r0 + n) of m into out [n][cols]. */
void quant_mat_dequant(const quant_mat_t *m, int64_t r0, int64_t n, float *out);

/* Runs the module's self-test (known blocks of each format); 0 on
 * success. */
int quant_selftest(void);

#endif
