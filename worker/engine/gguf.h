/* gguf.h - a strict, read-only GGUF (v2, v3) reader.
 *
 * What it is: it maps a file, validates every count, offset, size and
 * dimension against the file before use, and exposes metadata and tensor
 * descriptors whose data point into the mapping.  What it is not: it knows
 * nothing of architectures or tokenizers (model.c and tokenizer.c read the
 * keys they need) and it converts tensor data only when asked
 * (gguf_tensor_to_f32; quant.h knows the types).  A tensor whose type
 * quant.h cannot dequantize is refused at open, by the type's name.
 *
 * Layout (little-endian): magic "GGUF", u32 version, u64 n_tensors, u64 n_kv,
 * n_kv x {string key, u32 type, value}, n_tensors x {string name, u32 n_dims,
 * u64 ne[n_dims], u32 ggml_type, u64 offset}, padding to general.alignment
 * (default 32), then the tensor data, each offset relative to that start. */
#ifndef TS_GGUF_H
#define TS_GGUF_H

#include <stddef.h>
#include <stdint.h>

#include "quant.h"

typedef enum {
    GGUF_TYPE_UINT8 = 0,
    GGUF_TYPE_INT8 = 1,
    GGUF_TYPE_UINT16 = 2,
    GGUF_TYPE_INT16 = 3,
    GGUF_TYPE_UINT32 = 4,
    GGUF_TYPE_INT32 = 5,
    GGUF_TYPE_FLOAT32 = 6,
    GGUF_TYPE_BOOL = 7,
    GGUF_TYPE_STRING = 8,
    GGUF_TYPE_ARRAY = 9,
    GGUF_TYPE_UINT64 = 10,
    GGUF_TYPE_INT64 = 11,
    GGUF_TYPE_FLOAT64 = 12,
    GGUF_TYPE_COUNT
} gguf_type_t;

/* A string inside the mapping: not NUL-terminated. */
typedef struct {
    uint64_t len;
    const char *ptr;
} gguf_str_t;

typedef struct {
    gguf_str_t key;
    gguf_type_t type;     /* GGUF_TYPE_ARRAY for arrays */
    gguf_type_t arr_type; /* element type when type == GGUF_TYPE_ARRAY */
    uint64_t n;           /* element count for arrays, else 1 */
    /* Scalars are decoded here; numeric arrays point (possibly unaligned)
     * into the mapping; string values and string arrays are decoded into
     * gguf_str_t records owned by the gguf_t. */
    union {
        uint64_t u;
        int64_t i;
        double f;
        gguf_str_t s;
    } v;
    const void *arr;    /* numeric array elements (raw, little-endian) */
    gguf_str_t *strs;   /* string array elements */
} gguf_kv_t;

#define GGUF_MAX_DIMS 4

typedef struct {
    gguf_str_t name;
    uint32_t n_dims;
    uint64_t ne[GGUF_MAX_DIMS]; /* ne[0] is the fastest-varying (row length) */
    uint32_t type;              /* ggml_type_t value as stored */
    uint64_t offset;            /* relative to the data section */
    uint64_t nbytes;
    const void *data;           /* into the mapping, validated in bounds */
} gguf_tensor_t;

typedef struct gguf gguf_t;

/* Opens and validates path.  Returns a new reader that the caller frees with
 * gguf_destroy, or NULL with a message naming the file, the field and the
 * offending value in err. */
gguf_t *gguf_open(const char *path, char *err, size_t errlen);

/* Same, over a caller-owned buffer that must outlive the reader (used by
 * tests and fuzzing).  name is used in messages. */
gguf_t *gguf_open_buffer(const void *buf, size_t len, const char *name,
                         char *err, size_t errlen);

/* Frees the reader and unmaps the file; NULL-safe, clears *self_p. */
void gguf_destroy(gguf_t **self_p);

uint32_t gguf_version(const gguf_t *self);
const char *gguf_path(const gguf_t *self);
uint64_t gguf_n_kv(const gguf_t *self);
const gguf_kv_t *gguf_kv_at(const gguf_t *self, uint64_t i);
uint64_t gguf_n_tensors(const gguf_t *self);
const gguf_tensor_t *gguf_tensor_at(const gguf_t *self, uint64_t i);

/* Looks a key up; NULL when absent. */
const gguf_kv_t *gguf_find(const gguf_t *self, const char *key);

/* Typed getters.  Return 0 when found and of an acceptable type, 1 when the
 * key is absent (out untouched), -1 when present with a wrong type or an
 * out-of-range value (message in err).  Integers accept any integer type
 * whose value fits; floats accept FLOAT32/FLOAT64. */
int gguf_get_u64(const gguf_t *self, const char *key, uint64_t *out, char *err,
                 size_t errlen);
int gguf_get_f64(const gguf_t *self, const char *key, double *out, char *err,
                 size_t errlen);
int gguf_get_bool(const gguf_t *self, const char *key, int *out, char *err,
                  size_t errlen);
/* *out is a NUL-terminated copy owned by the reader. */
int gguf_get_str(const gguf_t *self, const char *key, const char **out,
                 char *err, size_t errlen);
/* Arrays: elem must match the stored element type exactly. */
int gguf_get_arr(const gguf_t *self, const char *key, gguf_type_t elem,
                 const void **data, uint64_t *n, char *err, size_t errlen);
int gguf_get_str_arr(const gguf_t *self, const char *key,
                     const gguf_str_t **strs, uint64_t *n, char *err,
                     size_t errlen);

/* Reads element i of a numeric array (handles unaligned storage). */
float gguf_arr_f32(const void *arr, uint64_t i);
int32_t gguf_arr_i32(const void *arr, uint64_t i);

/* Finds a tensor by name; NULL when absent. */
const gguf_tensor_t *gguf_tensor(const gguf_t *self, const char *name);

/* Number of elements of t. */
uint64_t gguf_tensor_nelem(const gguf_tensor_t *t);

/* Converts t's elements to fp32 into out (caller-owned, nelem floats),
 * exactly as llama.cpp dequantizes them (quant_dequant).  Every tensor of an
 * open file has a supported type, so this cannot fail. */
void gguf_tensor_to_f32(const gguf_tensor_t *t, float *out);

/* Runs the module's self-test; returns 0 on success. */
int gguf_selftest(void);

#endif
