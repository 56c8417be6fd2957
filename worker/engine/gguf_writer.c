/* gguf_writer.c - see gguf_writer.h.
 *
 * Metadata is serialised into one byte buffer as each key is added (a failed
 * add truncates it back); tensors keep their converted bytes until the file
 * is laid out by emit_file(), which both the file and the buffer output use. */
#include "gguf_writer.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"

#define GW_MAX_NAME 65535u /* GGUF: keys are at most 65535 bytes */
#define GW_MAX_ALIGN 65536u

typedef struct {
    char *name;
    uint32_t n_dims;
    uint64_t ne[GGUF_MAX_DIMS];
    uint32_t type;
    uint8_t *data;
    uint64_t nbytes;
} gw_tensor_t;

typedef struct {
    uint8_t *p;
    size_t len, cap;
} gw_buf_t;

struct gguf_writer {
    gw_buf_t kv;      /* the serialised metadata entries */
    char **keys;      /* their keys, for duplicate checks */
    uint64_t n_kv;
    size_t keys_cap;
    gw_tensor_t *tensors;
    uint64_t n_tensors;
    size_t tensors_cap;
    uint32_t alignment;
};

/* ---- conversions (bit-exact with ggml's reference code) ----------------- */

static uint32_t f32_bits(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}

static float f32_from_bits(uint32_t u) {
    float f;
    memcpy(&f, &u, 4);
    return f;
}

/* ggml_compute_fp32_to_fp16 (from the FP16 library): round-to-nearest-even
 * done by the FPU, subnormals and overflow included. */
uint16_t gguf_writer_f32_to_f16(float f) {
    const float scale_to_inf = 0x1.0p+112f, scale_to_zero = 0x1.0p-110f;
    float base = (fabsf(f) * scale_to_inf) * scale_to_zero;
    const uint32_t w = f32_bits(f), shl1_w = w + w, sign = w & 0x80000000u;
    uint32_t bias = shl1_w & 0xFF000000u;
    if (bias < 0x71000000u) bias = 0x71000000u;
    base = f32_from_bits((bias >> 1) + 0x07800000u) + base;
    const uint32_t bits = f32_bits(base);
    const uint32_t exp_bits = (bits >> 13) & 0x00007C00u, mantissa_bits = bits & 0x00000FFFu;
    const uint32_t nonsign = exp_bits + mantissa_bits;
    return (uint16_t)((sign >> 16) | (shl1_w > 0xFF000000u ? 0x7E00u : nonsign));
}

/* ggml_compute_fp32_to_bf16: NaN forced quiet, else round-to-nearest-even. */
uint16_t gguf_writer_f32_to_bf16(float f) {
    uint32_t u = f32_bits(f);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 64);
    return (uint16_t)((u + (0x7fffu + ((u >> 16) & 1))) >> 16);
}

/* quantize_row_q8_0_ref: d = max|x| / 127, q = roundf(x / d). */
void gguf_writer_q8_0_block(const float *x, uint8_t out[34]) {
    float amax = 0.0f;
    for (int j = 0; j < 32; j++) amax = fmaxf(amax, fabsf(x[j]));
    const float d = amax / 127.0f, id = d != 0.0f ? 1.0f / d : 0.0f;
    uint16_t h = gguf_writer_f32_to_f16(d);
    memcpy(out, &h, 2);
    for (int j = 0; j < 32; j++) out[2 + j] = (uint8_t)(int8_t)roundf(x[j] * id);
}

/* ---- building ----------------------------------------------------------- */

static int buf_put(gw_buf_t *b, const void *p, size_t n) {
    if (n > b->cap - b->len) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap - b->len < n) {
            if (cap > SIZE_MAX / 2) return -1;
            cap *= 2;
        }
        uint8_t *np = realloc(b->p, cap);
        if (!np) return -1;
        b->p = np;
        b->cap = cap;
    }
    if (n) memcpy(b->p + b->len, p, n);
    b->len += n;
    return 0;
}

static int buf_u32(gw_buf_t *b, uint32_t v) { return buf_put(b, &v, 4); }
static int buf_u64(gw_buf_t *b, uint64_t v) { return buf_put(b, &v, 8); }
static int buf_str(gw_buf_t *b, const char *s, uint64_t n) { return buf_u64(b, n) || buf_put(b, s, (size_t)n); }

gguf_writer_t *gguf_writer_new(char *err, size_t errlen) {
    gguf_writer_t *w = calloc(1, sizeof *w);
    if (!w) {
        log_seterr(err, errlen, "gguf_writer: out of memory");
        return NULL;
    }
    w->alignment = 32;
    return w;
}

void gguf_writer_destroy(gguf_writer_t **self_p) {
    if (!self_p || !*self_p) return;
    gguf_writer_t *w = *self_p;
    for (uint64_t i = 0; i < w->n_kv; i++) free(w->keys[i]);
    free(w->keys);
    for (uint64_t i = 0; i < w->n_tensors; i++) {
        free(w->tensors[i].name);
        free(w->tensors[i].data);
    }
    free(w->tensors);
    free(w->kv.p);
    free(w);
    *self_p = NULL;
}

static size_t scalar_size(gguf_type_t t) {
    switch (t) {
    case GGUF_TYPE_UINT8: case GGUF_TYPE_INT8: case GGUF_TYPE_BOOL: return 1;
    case GGUF_TYPE_UINT16: case GGUF_TYPE_INT16: return 2;
    case GGUF_TYPE_UINT32: case GGUF_TYPE_INT32: case GGUF_TYPE_FLOAT32: return 4;
    case GGUF_TYPE_UINT64: case GGUF_TYPE_INT64: case GGUF_TYPE_FLOAT64: return 8;
    default: return 0;
    }
}

/* Checks key (non-empty, not too long, not yet present) and reserves its
 * slot in the key list.  Returns 0 or -1. */
static int key_check(gguf_writer_t *w, const char *key, size_t keylen, char *err, size_t errlen) {
    if (!key || keylen == 0) return log_seterr(err, errlen, "gguf_writer: empty metadata key");
    if (keylen > GW_MAX_NAME)
        return log_seterr(err, errlen, "gguf_writer: metadata key of %zu bytes (at most %u)", keylen, GW_MAX_NAME);
    for (uint64_t i = 0; i < w->n_kv; i++)
        if (strlen(w->keys[i]) == keylen && !memcmp(w->keys[i], key, keylen))
            return log_seterr(err, errlen, "gguf_writer: metadata key '%.*s' added twice", (int)keylen, key);
    if (w->n_kv == w->keys_cap) {
        size_t cap = w->keys_cap ? w->keys_cap * 2 : 32;
        char **nk = realloc(w->keys, cap * sizeof *nk);
        if (!nk) return log_seterr(err, errlen, "gguf_writer: out of memory");
        w->keys = nk;
        w->keys_cap = cap;
    }
    return 0;
}

/* Serialises one entry: key, type, then the value bytes produced by the
 * caller-supplied payload (already formatted as GGUF wants it).  On failure
 * the metadata buffer is restored. */
static int kv_add(gguf_writer_t *w, const char *key, size_t keylen, uint32_t type, const void *payload,
                  size_t payload_len, char *err, size_t errlen) {
    if (key_check(w, key, keylen, err, errlen)) return -1;
    if (keylen == strlen("general.alignment") && !memcmp(key, "general.alignment", keylen)) {
        uint32_t a;
        if (type != GGUF_TYPE_UINT32 || payload_len != 4)
            return log_seterr(err, errlen, "gguf_writer: general.alignment must be a uint32");
        memcpy(&a, payload, 4);
        if (a == 0 || (a & (a - 1)) || a > GW_MAX_ALIGN)
            return log_seterr(err, errlen, "gguf_writer: general.alignment %u is not a power of two up to %u", a,
                              GW_MAX_ALIGN);
        if (w->n_tensors)
            return log_seterr(err, errlen, "gguf_writer: general.alignment must be set before the first tensor");
        w->alignment = a;
    }
    char *kcopy = malloc(keylen + 1);
    size_t mark = w->kv.len;
    if (!kcopy || buf_str(&w->kv, key, keylen) || buf_u32(&w->kv, type) ||
        buf_put(&w->kv, payload, payload_len)) {
        free(kcopy);
        w->kv.len = mark;
        return log_seterr(err, errlen, "gguf_writer: out of memory adding '%.*s'", (int)keylen, key);
    }
    memcpy(kcopy, key, keylen);
    kcopy[keylen] = 0;
    w->keys[w->n_kv++] = kcopy;
    return 0;
}

static int add_scalar(gguf_writer_t *w, const char *key, gguf_type_t t, const void *v, char *err, size_t errlen) {
    return kv_add(w, key, key ? strlen(key) : 0, t, v, scalar_size(t), err, errlen);
}

int gguf_writer_add_u8(gguf_writer_t *w, const char *k, uint8_t v, char *e, size_t el) { return add_scalar(w, k, GGUF_TYPE_UINT8, &v, e, el); }
int gguf_writer_add_i8(gguf_writer_t *w, const char *k, int8_t v, char *e, size_t el) { return add_scalar(w, k, GGUF_TYPE_INT8, &v, e, el); }
int gguf_writer_add_u16(gguf_writer_t *w, const char *k, uint16_t v, char *e, size_t el) { return add_scalar(w, k, GGUF_TYPE_UINT16, &v, e, el); }
int gguf_writer_add_i16(gguf_writer_t *w, const char *k, int16_t v, char *e, size_t el) { return add_scalar(w, k, GGUF_TYPE_INT16, &v, e, el); }
int gguf_writer_add_u32(gguf_writer_t *w, const char *k, uint32_t v, char *e, size_t el) { return add_scalar(w, k, GGUF_TYPE_UINT32, &v, e, el); }
int gguf_writer_add_i32(gguf_writer_t *w, const char *k, int32_t v, char *e, size_t el) { return add_scalar(w, k, GGUF_TYPE_INT32, &v, e, el); }
int gguf_writer_add_u64(gguf_writer_t *w, const char *k, uint64_t v, char *e, size_t el) { return add_scalar(w, k, GGUF_TYPE_UINT64, &v, e, el); }
int gguf_writer_add_i64(gguf_writer_t *w, const char *k, int64_t v, char *e, size_t el) { return add_scalar(w, k, GGUF_TYPE_INT64, &v, e, el); }
int gguf_writer_add_f32(gguf_writer_t *w, const char *k, float v, char *e, size_t el) { return add_scalar(w, k, GGUF_TYPE_FLOAT32, &v, e, el); }
int gguf_writer_add_f64(gguf_writer_t *w, const char *k, double v, char *e, size_t el) { return add_scalar(w, k, GGUF_TYPE_FLOAT64, &v, e, el); }

int gguf_writer_add_bool(gguf_writer_t *w, const char *key, int v, char *err, size_t errlen) {
    uint8_t b = v != 0;
    return add_scalar(w, key, GGUF_TYPE_BOOL, &b, err, errlen);
}

int gguf_writer_add_str(gguf_writer_t *w, const char *key, const char *s, size_t len, char *err, size_t errlen) {
    if (!s && len) return log_seterr(err, errlen, "gguf_writer: '%s': NULL string", key ? key : "");
    if (len == SIZE_MAX) len = strlen(s);
    gw_buf_t tmp = {0};
    if (buf_str(&tmp, s, len)) {
        free(tmp.p);
        return log_seterr(err, errlen, "gguf_writer: out of memory adding '%s'", key ? key : "");
    }
    int rc = kv_add(w, key, key ? strlen(key) : 0, GGUF_TYPE_STRING, tmp.p, tmp.len, err, errlen);
    free(tmp.p);
    return rc;
}

int gguf_writer_add_arr(gguf_writer_t *w, const char *key, gguf_type_t elem, const void *data, uint64_t n,
                        char *err, size_t errlen) {
    size_t es = scalar_size(elem);
    if (!es)
        return log_seterr(err, errlen, "gguf_writer: '%s': array element type %d is not a numeric GGUF type",
                          key ? key : "", (int)elem);
    if (n && !data) return log_seterr(err, errlen, "gguf_writer: '%s': NULL array data", key ? key : "");
    if (n > (SIZE_MAX - 12) / es)
        return log_seterr(err, errlen, "gguf_writer: '%s': array of %llu elements is too large", key ? key : "",
                          (unsigned long long)n);
    gw_buf_t tmp = {0};
    if (buf_u32(&tmp, (uint32_t)elem) || buf_u64(&tmp, n) || buf_put(&tmp, data, (size_t)n * es)) {
        free(tmp.p);
        return log_seterr(err, errlen, "gguf_writer: out of memory adding '%s'", key ? key : "");
    }
    int rc = kv_add(w, key, key ? strlen(key) : 0, GGUF_TYPE_ARRAY, tmp.p, tmp.len, err, errlen);
    free(tmp.p);
    return rc;
}

int gguf_writer_add_str_arr(gguf_writer_t *w, const char *key, const char *const *strs, const size_t *lens,
                            uint64_t n, char *err, size_t errlen) {
    if (n && !strs) return log_seterr(err, errlen, "gguf_writer: '%s': NULL string array", key ? key : "");
    gw_buf_t tmp = {0};
    int oom = buf_u32(&tmp, GGUF_TYPE_STRING) || buf_u64(&tmp, n);
    for (uint64_t i = 0; i < n && !oom; i++) {
        if (!strs[i] && (!lens || lens[i])) {
            free(tmp.p);
            return log_seterr(err, errlen, "gguf_writer: '%s': string %llu is NULL", key ? key : "",
                              (unsigned long long)i);
        }
        oom = buf_str(&tmp, strs[i], lens ? lens[i] : strlen(strs[i]));
    }
    if (oom) {
        free(tmp.p);
        return log_seterr(err, errlen, "gguf_writer: out of memory adding '%s'", key ? key : "");
    }
    int rc = kv_add(w, key, key ? strlen(key) : 0, GGUF_TYPE_ARRAY, tmp.p, tmp.len, err, errlen);
    free(tmp.p);
    return rc;
}

int gguf_writer_copy_kv(gguf_writer_t *w, const gguf_kv_t *kv, char *err, size_t errlen) {
    gw_buf_t tmp = {0};
    int oom = 0;
    if (memchr(kv->key.ptr, 0, kv->key.len))
        return log_seterr(err, errlen, "gguf_writer: metadata key with a NUL byte cannot be copied");
    switch (kv->type) {
    case GGUF_TYPE_STRING: oom = buf_str(&tmp, kv->v.s.ptr, kv->v.s.len); break;
    case GGUF_TYPE_ARRAY:
        oom = buf_u32(&tmp, kv->arr_type) || buf_u64(&tmp, kv->n);
        if (kv->arr_type == GGUF_TYPE_STRING)
            for (uint64_t i = 0; i < kv->n && !oom; i++) oom = buf_str(&tmp, kv->strs[i].ptr, kv->strs[i].len);
        else if (!scalar_size(kv->arr_type)) {
            free(tmp.p);
            return log_seterr(err, errlen, "gguf_writer: '%.*s': array element type %u", (int)kv->key.len,
                              kv->key.ptr, kv->arr_type);
        } else
            oom = oom || buf_put(&tmp, kv->arr, (size_t)(kv->n * scalar_size(kv->arr_type)));
        break;
    default: {
        size_t es = scalar_size(kv->type);
        if (!es)
            return log_seterr(err, errlen, "gguf_writer: '%.*s': value type %u", (int)kv->key.len, kv->key.ptr,
                              kv->type);
        /* Scalars are decoded by the reader; re-encode the low es bytes
         * (little-endian host). */
        uint64_t raw = kv->v.u;
        if (kv->type == GGUF_TYPE_FLOAT32) {
            float f = (float)kv->v.f;
            memcpy(&raw, &f, 4);
        } else if (kv->type == GGUF_TYPE_FLOAT64)
            memcpy(&raw, &kv->v.f, 8);
        oom = buf_put(&tmp, &raw, es);
    }
    }
    if (oom) {
        free(tmp.p);
        return log_seterr(err, errlen, "gguf_writer: out of memory copying '%.*s'", (int)kv->key.len, kv->key.ptr);
    }
    int rc = kv_add(w, kv->key.ptr, (size_t)kv->key.len, kv->type, tmp.p, tmp.len, err, errlen);
    free(tmp.p);
    return rc;
}

int gguf_writer_set_alignment(gguf_writer_t *w, uint32_t alignment, char *err, size_t errlen) {
    if (alignment == 0 || (alignment & (alignment - 1)) || alignment > GW_MAX_ALIGN)
        return log_seterr(err, errlen, "gguf_writer: alignment %u is not a power of two up to %u", alignment,
                          GW_MAX_ALIGN);
    if (w->n_tensors)
        return log_seterr(err, errlen, "gguf_writer: the alignment must be set before the first tensor");
    if (alignment == 32 && w->alignment == 32) return 0;
    return gguf_writer_add_u32(w, "general.alignment", alignment, err, errlen);
}

/* Checks name (non-empty, short, new), the dimensions and that type can be
 * stored from what the caller gives (fp32 values to convert: F32, F16, BF16,
 * Q8_0; raw blocks: any type quant.h supports, whole blocks per row), and
 * appends the tensor with uninitialised data of its size.  Returns it, with
 * its element count in *n, or NULL with a message. */
static gw_tensor_t *tensor_append(gguf_writer_t *w, const char *name, ggml_type_t type, uint32_t n_dims,
                                  const uint64_t *ne, const void *data, int raw, uint64_t *n_out, char *err,
                                  size_t errlen) {
    size_t nlen = name ? strlen(name) : 0;
    if (nlen == 0) return log_seterr(err, errlen, "gguf_writer: empty tensor name"), NULL;
    if (nlen > GW_MAX_NAME) return log_seterr(err, errlen, "gguf_writer: tensor name of %zu bytes", nlen), NULL;
    if (n_dims < 1 || n_dims > GGUF_MAX_DIMS)
        return log_seterr(err, errlen, "gguf_writer: tensor '%s': %u dimensions (1..%d)", name, n_dims,
                          GGUF_MAX_DIMS), NULL;
    uint64_t n = 1;
    for (uint32_t d = 0; d < n_dims; d++) {
        if (ne[d] == 0 || ne[d] > (1ULL << 40) || n > (1ULL << 40) / ne[d])
            return log_seterr(err, errlen, "gguf_writer: tensor '%s': dimension %u = %llu is out of range", name, d,
                              (unsigned long long)ne[d]), NULL;
        n *= ne[d];
    }
    int from_f32 = type == GGML_TYPE_F32 || type == GGML_TYPE_F16 || type == GGML_TYPE_BF16 || type == GGML_TYPE_Q8_0;
    if (raw ? !quant_supported(type) : !from_f32)
        return log_seterr(err, errlen, "gguf_writer: tensor '%s': type %s cannot be written %s", name,
                          quant_type_name(type), raw ? "(not a supported type)" : "from fp32 (F32, F16, BF16, Q8_0)"),
               NULL;
    uint64_t row = quant_row_bytes(type, ne[0]);
    if (!row)
        return log_seterr(err, errlen, "gguf_writer: tensor '%s': %s needs a row length that is a multiple of %d, "
                          "not %llu", name, quant_type_name(type), quant_block_elems(type),
                          (unsigned long long)ne[0]), NULL;
    uint64_t nbytes = row * (n / ne[0]);
    if (!data) return log_seterr(err, errlen, "gguf_writer: tensor '%s': NULL data", name), NULL;
    for (uint64_t i = 0; i < w->n_tensors; i++)
        if (!strcmp(w->tensors[i].name, name))
            return log_seterr(err, errlen, "gguf_writer: tensor '%s' added twice", name), NULL;
    if (!raw && type == GGML_TYPE_Q8_0)
        for (uint64_t i = 0; i < n; i++)
            if (!isfinite(((const float *)data)[i]))
                return log_seterr(err, errlen, "gguf_writer: tensor '%s': element %llu is not finite (Q8_0 cannot "
                                  "store it)", name, (unsigned long long)i), NULL;
    if (w->n_tensors == w->tensors_cap) {
        size_t cap = w->tensors_cap ? w->tensors_cap * 2 : 64;
        gw_tensor_t *nt = realloc(w->tensors, cap * sizeof *nt);
        if (!nt) return log_seterr(err, errlen, "gguf_writer: out of memory adding tensor '%s'", name), NULL;
        w->tensors = nt;
        w->tensors_cap = cap;
    }
    gw_tensor_t t = {0};
    t.name = strdup(name);
    t.data = nbytes <= SIZE_MAX ? malloc((size_t)nbytes) : NULL;
    if (!t.name || !t.data) {
        free(t.name);
        free(t.data);
        return log_seterr(err, errlen, "gguf_writer: out of memory for tensor '%s' (%llu bytes)", name,
                          (unsigned long long)nbytes), NULL;
    }
    t.n_dims = n_dims;
    for (uint32_t d = 0; d < GGUF_MAX_DIMS; d++) t.ne[d] = d < n_dims ? ne[d] : 1;
    t.type = type;
    t.nbytes = nbytes;
    w->tensors[w->n_tensors] = t;
    *n_out = n;
    return &w->tensors[w->n_tensors++];
}

int gguf_writer_add_tensor(gguf_writer_t *w, const char *name, ggml_type_t type, uint32_t n_dims,
                           const uint64_t *ne, const float *data, char *err, size_t errlen) {
    uint64_t n;
    gw_tensor_t *t = tensor_append(w, name, type, n_dims, ne, data, 0, &n, err, errlen);
    if (!t) return -1;
    switch (type) {
    case GGML_TYPE_F32: memcpy(t->data, data, (size_t)t->nbytes); break;
    case GGML_TYPE_F16:
    case GGML_TYPE_BF16:
        for (uint64_t i = 0; i < n; i++) {
            uint16_t h = type == GGML_TYPE_F16 ? gguf_writer_f32_to_f16(data[i]) : gguf_writer_f32_to_bf16(data[i]);
            memcpy(t->data + 2 * i, &h, 2);
        }
        break;
    default: /* Q8_0 */
        for (uint64_t b = 0; b < n / 32; b++) gguf_writer_q8_0_block(data + 32 * b, t->data + 34 * b);
    }
    return 0;
}

int gguf_writer_add_tensor_raw(gguf_writer_t *w, const char *name, ggml_type_t type, uint32_t n_dims,
                               const uint64_t *ne, const void *data, char *err, size_t errlen) {
    uint64_t n;
    gw_tensor_t *t = tensor_append(w, name, type, n_dims, ne, data, 1, &n, err, errlen);
    if (!t) return -1;
    memcpy(t->data, data, (size_t)t->nbytes);
    return 0;
}

/* ---- layout -------------------------------------------------------------- */

static uint64_t pad_to(uint64_t x, uint64_t a) { return (x + a - 1) / a * a; }

/* Bytes of everything before the data section, unpadded. */
static uint64_t header_bytes(const gguf_writer_t *w) {
    uint64_t n = 4 + 4 + 8 + 8 + w->kv.len;
    for (uint64_t i = 0; i < w->n_tensors; i++)
        n += 8 + strlen(w->tensors[i].name) + 4 + 8 * (uint64_t)w->tensors[i].n_dims + 4 + 8;
    return n;
}

uint64_t gguf_writer_size(const gguf_writer_t *w) {
    uint64_t n = pad_to(header_bytes(w), w->alignment);
    for (uint64_t i = 0; i < w->n_tensors; i++) n += pad_to(w->tensors[i].nbytes, w->alignment);
    return n;
}

typedef int (*emit_fn)(void *ctx, const void *p, size_t n);

static int emit_zeros(emit_fn emit, void *ctx, uint64_t n) {
    static const uint8_t zeros[256];
    while (n) {
        size_t k = n < sizeof zeros ? (size_t)n : sizeof zeros;
        if (emit(ctx, zeros, k)) return -1;
        n -= k;
    }
    return 0;
}

/* Emits the whole file in order.  Returns 0 or -1 (the emitter failed). */
static int emit_file(const gguf_writer_t *w, emit_fn emit, void *ctx) {
    uint32_t version = 3;
    if (emit(ctx, "GGUF", 4) || emit(ctx, &version, 4) || emit(ctx, &w->n_tensors, 8) || emit(ctx, &w->n_kv, 8) ||
        emit(ctx, w->kv.p, w->kv.len))
        return -1;
    uint64_t offset = 0;
    for (uint64_t i = 0; i < w->n_tensors; i++) {
        const gw_tensor_t *t = &w->tensors[i];
        uint64_t nl = strlen(t->name);
        if (emit(ctx, &nl, 8) || emit(ctx, t->name, (size_t)nl) || emit(ctx, &t->n_dims, 4) ||
            emit(ctx, t->ne, 8 * (size_t)t->n_dims) || emit(ctx, &t->type, 4) || emit(ctx, &offset, 8))
            return -1;
        offset += pad_to(t->nbytes, w->alignment);
    }
    uint64_t h = header_bytes(w);
    if (emit_zeros(emit, ctx, pad_to(h, w->alignment) - h)) return -1;
    for (uint64_t i = 0; i < w->n_tensors; i++) {
        const gw_tensor_t *t = &w->tensors[i];
        if (emit(ctx, t->data, (size_t)t->nbytes) ||
            emit_zeros(emit, ctx, pad_to(t->nbytes, w->alignment) - t->nbytes))
            return -1;
    }
    return 0;
}

static int emit_file_cb(void *ctx, const void *p, size_t n) { return n && fwrite(p, 1, n, ctx) != n ? -1 : 0; }

typedef struct {
    uint8_t *p;
    size_t at;
} mem_ctx_t;

static int emit_mem_cb(void *ctx, const void *p, size_t n) {
    mem_ctx_t *m = ctx;
    if (n) memcpy(m->p + m->at, p, n);
    m->at += n;
    return 0;
}

int gguf_writer_write(const gguf_writer_t *w, const char *path, char *err, size_t errlen) {
    FILE *f = fopen(path, "wb");
    if (!f) return log_seterr(err, errlen, "%s: cannot create: %s", path, strerror(errno));
    int rc = emit_file(w, emit_file_cb, f);
    int e = errno;
    if (fclose(f) && !rc) rc = -1, e = errno;
    if (rc) return log_seterr(err, errlen, "%s: write failed: %s", path, strerror(e));
    return 0;
}

int gguf_writer_to_buffer(const gguf_writer_t *w, void **buf, size_t *len, char *err, size_t errlen) {
    uint64_t size = gguf_writer_size(w);
    *buf = NULL;
    if (size > SIZE_MAX - 64) return log_seterr(err, errlen, "gguf_writer: file of %llu bytes", (unsigned long long)size);
    mem_ctx_t m = {aligned_alloc(64, (size_t)pad_to(size, 64)), 0};
    if (!m.p) return log_seterr(err, errlen, "gguf_writer: out of memory for a file of %llu bytes",
                                (unsigned long long)size);
    emit_file(w, emit_mem_cb, &m);
    *buf = m.p;
    *len = (size_t)size;
    return 0;
}
