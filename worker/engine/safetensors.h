/* safetensors.h - a strict, read-only reader of safetensors files and of
 * sharded safetensors checkpoints (model.safetensors.index.json).
 *
 * What it is: it maps a file, validates the header completely before any
 * tensor is exposed, and gives tensor descriptors whose data point into the
 * mapping, plus conversion of F32, F16 and BF16 tensors to fp32.  What it is
 * not: it knows nothing of model architectures or tensor names (hfdir.c maps
 * Hugging Face names onto the model), and it never writes.
 *
 * Layout (little-endian): u64 N, then N bytes of UTF-8 JSON (an object,
 * possibly padded with spaces), then the data section.  Every key of the
 * object but "__metadata__" is a tensor name mapping to
 *   {"dtype": "F32", "shape": [d0, d1, ...], "data_offsets": [begin, end]}
 * with offsets relative to the data section and shape row-major (d0 slowest,
 * as PyTorch stores it: a Linear weight is [out][in]).  "__metadata__", when
 * present, maps strings to strings.
 *
 * What is checked (a violation is an error naming the file, the tensor and
 * the value): N against the file size and a 100 MiB limit; the header is
 * JSON, an object, starts with '{', has no duplicate keys; each tensor entry
 * has exactly those three keys; dtype is one the format defines (layouts of
 * every defined byte-sized dtype are validated; only F32, F16 and BF16
 * convert); shape has at most SAFETENSORS_MAX_DIMS non-negative integers
 * whose product does not overflow; begin <= end <= data size and
 * end - begin == product(shape) * dtype size; tensors do not overlap, and
 * (as the format requires, so that no unindexed bytes can hide in the file)
 * they cover the data section without holes. */
#ifndef TS_SAFETENSORS_H
#define TS_SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>

#define SAFETENSORS_MAX_DIMS 8

/* The dtypes the format defines that this reader can lay out.  Only F32,
 * F16 and BF16 convert to fp32; the others are recognised so that a file
 * holding, say, an I64 buffer still opens, and the error comes only when such
 * a tensor is converted. */
typedef enum {
    SAFETENSORS_F32 = 0,
    SAFETENSORS_F16,
    SAFETENSORS_BF16,
    SAFETENSORS_F64,
    SAFETENSORS_I64,
    SAFETENSORS_U64,
    SAFETENSORS_I32,
    SAFETENSORS_U32,
    SAFETENSORS_I16,
    SAFETENSORS_U16,
    SAFETENSORS_I8,
    SAFETENSORS_U8,
    SAFETENSORS_BOOL,
    SAFETENSORS_F8_E4M3,
    SAFETENSORS_F8_E5M2,
    SAFETENSORS_F8_E8M0,
    SAFETENSORS_DTYPE_COUNT
} safetensors_dtype_t;

typedef struct {
    const char *name;  /* NUL-terminated, owned by the reader */
    const char *file;  /* path of the file holding it, for messages */
    safetensors_dtype_t dtype;
    int n_dims;        /* 0 for a scalar */
    uint64_t shape[SAFETENSORS_MAX_DIMS]; /* shape[0] varies slowest */
    uint64_t nelem;    /* product of shape (1 for a scalar) */
    uint64_t offset;   /* data_offsets[0], relative to the data section */
    uint64_t nbytes;   /* data_offsets[1] - data_offsets[0] */
    const void *data;  /* into the mapping, validated in bounds; may be unaligned */
} safetensors_tensor_t;

typedef struct safetensors safetensors_t;

/* Opens and validates the file at path.  Returns a new reader that the caller
 * frees with safetensors_destroy, or NULL with a message naming the file, the
 * tensor and the offending value in err. */
safetensors_t *safetensors_open(const char *path, char *err, size_t errlen);

/* Same, over a caller-owned buffer that must outlive the reader (tests and
 * fuzzing).  name is used in messages. */
safetensors_t *safetensors_open_buffer(const void *buf, size_t len, const char *name, char *err, size_t errlen);

/* NULL-safe; unmaps the file; clears *self_p. */
void safetensors_destroy(safetensors_t **self_p);

const char *safetensors_path(const safetensors_t *self);
size_t safetensors_n_tensors(const safetensors_t *self);
/* Tensors in name order (strcmp); NULL when i is out of range. */
const safetensors_tensor_t *safetensors_tensor_at(const safetensors_t *self, size_t i);
/* Finds a tensor by name (binary search); NULL when absent. */
const safetensors_tensor_t *safetensors_find(const safetensors_t *self, const char *name);
/* A "__metadata__" value, owned by the reader; NULL when absent. */
const char *safetensors_metadata(const safetensors_t *self, const char *key);

/* Converts t's nelem elements to fp32 into out (caller-owned, t->nelem
 * floats).  Returns 0, or -1 with a message naming the file, the tensor and
 * its dtype when the dtype is not F32, F16 or BF16. */
int safetensors_to_f32(const safetensors_tensor_t *t, float *out, char *err, size_t errlen);

/* The format's name of a dtype ("F32", "BF16", ...). */
const char *safetensors_dtype_name(safetensors_dtype_t dtype);

/* Bytes per element of a dtype (1, 2, 4 or 8). */
size_t safetensors_dtype_size(safetensors_dtype_t dtype);

/* ---- checkpoints: one file or a sharded set ---------------------------- */

typedef struct safetensors_set safetensors_set_t;

/* Opens the safetensors checkpoint of a Hugging Face model directory:
 * dir/model.safetensors when it exists (as transformers prefers it), else
 * dir/model.safetensors.index.json, whose "weight_map" object maps every
 * tensor name to a shard file name in dir.  For an index: shard names must be
 * plain file names (no '/', not "." or ".."), every shard is opened and
 * validated like a single file, every mapped tensor must be in the shard the
 * index names, and every tensor of every shard must be mapped there (a
 * missing shard, a stale index or a tensor present twice is an error).
 * Returns a new set (free with safetensors_set_destroy) or NULL with a
 * message naming the file and the tensor at fault. */
safetensors_set_t *safetensors_set_open(const char *dir, char *err, size_t errlen);

/* NULL-safe; closes every shard; clears *self_p. */
void safetensors_set_destroy(safetensors_set_t **self_p);

/* All tensors of all shards, in name order; tensor_at is NULL out of range. */
size_t safetensors_set_n_tensors(const safetensors_set_t *self);
const safetensors_tensor_t *safetensors_set_tensor_at(const safetensors_set_t *self, size_t i);
/* Finds a tensor by name in any shard; NULL when absent. */
const safetensors_tensor_t *safetensors_set_find(const safetensors_set_t *self, const char *name);
/* Number of files (1 for model.safetensors). */
size_t safetensors_set_n_files(const safetensors_set_t *self);
/* What was opened: the .safetensors file or the index, for messages. */
const char *safetensors_set_path(const safetensors_set_t *self);

#endif
