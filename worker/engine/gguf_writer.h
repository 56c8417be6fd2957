/* gguf_writer.h - builds GGUF v3 files: metadata and tensors.
 *
 * What it is: an in-memory builder.  Keys of every GGUF value type (the
 * integer and float scalars, bool, strings, numeric arrays and string arrays)
 * and tensors given as fp32 and stored as F32, F16, BF16 or Q8_0 (converted
 * here, with the rounding ggml uses: round-to-nearest-even for F16/BF16, the
 * reference quantiser quantize_row_q8_0_ref for Q8_0) are copied into the
 * builder as they are added; gguf_writer_write / gguf_writer_to_buffer then
 * lay the file out: header, metadata in insertion order, tensor infos in
 * insertion order, padding to the alignment, and each tensor's data at an
 * offset that is a multiple of the alignment (32 unless set).
 *
 * What it is not: a reader (gguf.h reads, and the tests read every file back
 * through it), a model converter, or a streaming writer: everything added is
 * held in memory until written.
 *
 * Errors: every function that can fail returns 0 or -1 with a message that
 * names the key or tensor in err; a failed add leaves the builder as it was,
 * so the caller may go on or give up.  Checked: empty or over-long keys and
 * names, duplicates, unknown value or tensor types, dimension counts and
 * sizes, Q8_0 rows that are not a multiple of 32, non-finite values where a
 * conversion cannot represent them (Q8_0 only). */
#ifndef TS_GGUF_WRITER_H
#define TS_GGUF_WRITER_H

#include <stddef.h>
#include <stdint.h>

#include "gguf.h"

typedef struct gguf_writer gguf_writer_t;

/* A new, empty builder (alignment 32).  NULL with a message when memory runs
 * out.  Free with gguf_writer_destroy. */
gguf_writer_t *gguf_writer_new(char *err, size_t errlen);

/* NULL-safe; clears *self_p. */
void gguf_writer_destroy(gguf_writer_t **self_p);

/* Sets the data alignment (a power of two, 1..65536) and records it as the
 * key general.alignment (uint32) unless it is the default 32.  Must come
 * before the first tensor.  Returns 0 or -1. */
int gguf_writer_set_alignment(gguf_writer_t *self, uint32_t alignment, char *err, size_t errlen);

/* Scalars.  type is the GGUF value type (UINT8..FLOAT64 except STRING and
 * ARRAY); the value is taken from the argument of the matching C type below.
 * Each returns 0, or -1 (duplicate or invalid key). */
int gguf_writer_add_u8(gguf_writer_t *self, const char *key, uint8_t v, char *err, size_t errlen);
int gguf_writer_add_i8(gguf_writer_t *self, const char *key, int8_t v, char *err, size_t errlen);
int gguf_writer_add_u16(gguf_writer_t *self, const char *key, uint16_t v, char *err, size_t errlen);
int gguf_writer_add_i16(gguf_writer_t *self, const char *key, int16_t v, char *err, size_t errlen);
int gguf_writer_add_u32(gguf_writer_t *self, const char *key, uint32_t v, char *err, size_t errlen);
int gguf_writer_add_i32(gguf_writer_t *self, const char *key, int32_t v, char *err, size_t errlen);
int gguf_writer_add_u64(gguf_writer_t *self, const char *key, uint64_t v, char *err, size_t errlen);
int gguf_writer_add_i64(gguf_writer_t *self, const char *key, int64_t v, char *err, size_t errlen);
int gguf_writer_add_f32(gguf_writer_t *self, const char *key, float v, char *err, size_t errlen);
int gguf_writer_add_f64(gguf_writer_t *self, const char *key, double v, char *err, size_t errlen);
int gguf_writer_add_bool(gguf_writer_t *self, const char *key, int v, char *err, size_t errlen);

/* A string value of len bytes (any bytes; GGUF strings are not
 * NUL-terminated).  len == SIZE_MAX means strlen(s). */
int gguf_writer_add_str(gguf_writer_t *self, const char *key, const char *s, size_t len, char *err,
                        size_t errlen);

/* A numeric array of n elements of type elem (a scalar type), copied from
 * data, which holds them in the host's (little-endian) layout: uint8_t for
 * UINT8 and BOOL, int32_t for INT32, float for FLOAT32, and so on.  n may be
 * 0 (data may then be NULL). */
int gguf_writer_add_arr(gguf_writer_t *self, const char *key, gguf_type_t elem, const void *data, uint64_t n,
                        char *err, size_t errlen);

/* An array of n strings; lens[i] is the length of strs[i], or lens may be
 * NULL for NUL-terminated strings. */
int gguf_writer_add_str_arr(gguf_writer_t *self, const char *key, const char *const *strs, const size_t *lens,
                            uint64_t n, char *err, size_t errlen);

/* Copies one key with its value from a reader (any type; used to carry a
 * vocabulary's tokenizer.* keys into a new file). */
int gguf_writer_copy_kv(gguf_writer_t *self, const gguf_kv_t *kv, char *err, size_t errlen);

/* Adds tensor name of n_dims (1..4) dimensions ne[0..n_dims) (ne[0] the row
 * length, each >= 1), from n = prod(ne) fp32 values, stored as type
 * (GGML_TYPE_F32, F16, BF16 or Q8_0; Q8_0 needs ne[0] % 32 == 0 and finite
 * values).  The data are converted and copied: data need not outlive the
 * call.  Returns 0 or -1. */
int gguf_writer_add_tensor(gguf_writer_t *self, const char *name, ggml_type_t type, uint32_t n_dims,
                           const uint64_t *ne, const float *data, char *err, size_t errlen);

/* Adds tensor name as its stored bytes: data holds ne[1..] rows of
 * quant_row_bytes(type, ne[0]) bytes each, in type (any type quant.h
 * supports; ne[0] whole blocks), copied as they are (tests and benchmarks
 * build quantized files from real blocks this way).  Returns 0 or -1. */
int gguf_writer_add_tensor_raw(gguf_writer_t *self, const char *name, ggml_type_t type, uint32_t n_dims,
                               const uint64_t *ne, const void *data, char *err, size_t errlen);

/* The file's size in bytes as it would be written now. */
uint64_t gguf_writer_size(const gguf_writer_t *self);

/* Writes the file to path (created or truncated, mode 0644 before umask).
 * Returns 0, or -1 with a message naming the path (a partial file may remain
 * on a write error; the caller removes it). */
int gguf_writer_write(const gguf_writer_t *self, const char *path, char *err, size_t errlen);

/* Lays the file out into a new malloc'd buffer of *len bytes, aligned to 64
 * bytes so that F32 tensors in it are float-aligned (free with free()).
 * Returns 0, or -1 (out of memory) with *buf NULL. */
int gguf_writer_to_buffer(const gguf_writer_t *self, void **buf, size_t *len, char *err, size_t errlen);

/* The conversions the writer stores with (exposed for tests and for other
 * writers): fp32 -> IEEE half and -> bfloat16, round-to-nearest-even,
 * bit-exact with ggml's ggml_compute_fp32_to_fp16 / _bf16 (overflow gives
 * inf, NaN stays NaN); and one Q8_0 block (34 bytes: f16 scale
 * d = max|x|/127, then 32 int8 roundf(x/d)) of 32 values, as ggml's
 * quantize_row_q8_0_ref makes it. */
uint16_t gguf_writer_f32_to_f16(float f);
uint16_t gguf_writer_f32_to_bf16(float f);
void gguf_writer_q8_0_block(const float *x, uint8_t out[34]);

#endif
