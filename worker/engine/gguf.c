/* gguf.c - see gguf.h.  Every read goes through the cursor below, which
 * checks the remaining length first, so a corrupt file can only produce an
 * error message, never an out-of-bounds read. */
#include "gguf.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "half.h"
#include "quant.h"
#include "log.h"

/* Bounds that no real model reaches; a file claiming more is corrupt, and
 * refusing early keeps a hostile header from making us allocate gigabytes. */
#define GGUF_MAX_KV 1000000ULL
#define GGUF_MAX_TENSORS 1000000ULL
#define GGUF_MAX_STRING (1ULL << 30)
#define GGUF_MAX_ALIGN 65536ULL

struct gguf {
    char *path;
    const uint8_t *base;
    size_t size;
    int mapped; /* 1 when base is our mmap */
    uint32_t version;
    uint64_t n_kv, n_tensors;
    gguf_kv_t *kvs;
    gguf_tensor_t *tensors;
    uint64_t data_offset;
    char **cstrs; /* NUL-terminated copies handed out by gguf_get_str */
};

typedef struct {
    const uint8_t *p;
    size_t left;
    size_t off; /* offset from the file start, for messages */
} cursor_t;

static int cur_take(cursor_t *c, size_t n, const void **out) {
    if (n > c->left) return -1;
    *out = c->p;
    c->p += n;
    c->left -= n;
    c->off += n;
    return 0;
}

static int cur_u32(cursor_t *c, uint32_t *v) {
    const void *p;
    if (cur_take(c, 4, &p)) return -1;
    memcpy(v, p, 4);
    return 0;
}

static int cur_u64(cursor_t *c, uint64_t *v) {
    const void *p;
    if (cur_take(c, 8, &p)) return -1;
    memcpy(v, p, 8);
    return 0;
}

static int cur_str(cursor_t *c, gguf_str_t *s) {
    uint64_t len;
    const void *p;
    if (cur_u64(c, &len)) return -1;
    if (len > GGUF_MAX_STRING || cur_take(c, (size_t)len, &p)) return -1;
    s->len = len;
    s->ptr = p;
    return 0;
}

static size_t scalar_size(uint32_t t) {
    switch (t) {
    case GGUF_TYPE_UINT8: case GGUF_TYPE_INT8: case GGUF_TYPE_BOOL: return 1;
    case GGUF_TYPE_UINT16: case GGUF_TYPE_INT16: return 2;
    case GGUF_TYPE_UINT32: case GGUF_TYPE_INT32: case GGUF_TYPE_FLOAT32: return 4;
    case GGUF_TYPE_UINT64: case GGUF_TYPE_INT64: case GGUF_TYPE_FLOAT64: return 8;
    default: return 0;
    }
}

static int type_is_int(uint32_t t) {
    return t == GGUF_TYPE_UINT8 || t == GGUF_TYPE_INT8 || t == GGUF_TYPE_UINT16 ||
           t == GGUF_TYPE_INT16 || t == GGUF_TYPE_UINT32 ||
           t == GGUF_TYPE_INT32 || t == GGUF_TYPE_UINT64 || t == GGUF_TYPE_INT64;
}

static int type_is_signed(uint32_t t) {
    return t == GGUF_TYPE_INT8 || t == GGUF_TYPE_INT16 || t == GGUF_TYPE_INT32 ||
           t == GGUF_TYPE_INT64;
}

/* Decodes one scalar of type t at p into kv->v. */
static void decode_scalar(uint32_t t, const void *p, gguf_kv_t *kv) {
    switch (t) {
    case GGUF_TYPE_UINT8: case GGUF_TYPE_BOOL: kv->v.u = *(const uint8_t *)p; break;
    case GGUF_TYPE_INT8: kv->v.i = *(const int8_t *)p; break;
    case GGUF_TYPE_UINT16: { uint16_t x; memcpy(&x, p, 2); kv->v.u = x; break; }
    case GGUF_TYPE_INT16: { int16_t x; memcpy(&x, p, 2); kv->v.i = x; break; }
    case GGUF_TYPE_UINT32: { uint32_t x; memcpy(&x, p, 4); kv->v.u = x; break; }
    case GGUF_TYPE_INT32: { int32_t x; memcpy(&x, p, 4); kv->v.i = x; break; }
    case GGUF_TYPE_UINT64: memcpy(&kv->v.u, p, 8); break;
    case GGUF_TYPE_INT64: memcpy(&kv->v.i, p, 8); break;
    case GGUF_TYPE_FLOAT32: { float x; memcpy(&x, p, 4); kv->v.f = x; break; }
    case GGUF_TYPE_FLOAT64: memcpy(&kv->v.f, p, 8); break;
    default: break;
    }
}

static int parse_kv(gguf_t *g, cursor_t *c, gguf_kv_t *kv, uint64_t idx,
                    char *err, size_t errlen) {
    size_t at = c->off;
    uint32_t t;
    if (cur_str(c, &kv->key))
        return log_seterr(err, errlen, "%s: metadata key %" PRIu64 " at byte %zu: key string runs past the end of the file",
                          g->path, idx, at);
    if (cur_u32(c, &t))
        return log_seterr(err, errlen, "%s: metadata '%.*s': truncated value type",
                          g->path, (int)kv->key.len, kv->key.ptr);
    kv->n = 1;
    if (t == GGUF_TYPE_STRING) {
        kv->type = GGUF_TYPE_STRING;
        if (cur_str(c, &kv->v.s))
            return log_seterr(err, errlen, "%s: metadata '%.*s': string value runs past the end of the file",
                              g->path, (int)kv->key.len, kv->key.ptr);
        return 0;
    }
    if (t == GGUF_TYPE_ARRAY) {
        uint32_t et;
        uint64_t n;
        kv->type = GGUF_TYPE_ARRAY;
        if (cur_u32(c, &et) || cur_u64(c, &n))
            return log_seterr(err, errlen, "%s: metadata '%.*s': truncated array header",
                              g->path, (int)kv->key.len, kv->key.ptr);
        kv->arr_type = et;
        kv->n = n;
        if (et == GGUF_TYPE_STRING) {
            /* Each string needs at least its 8-byte length. */
            if (n > c->left / 8)
                return log_seterr(err, errlen, "%s: metadata '%.*s': array count %" PRIu64 " exceeds the file size",
                                  g->path, (int)kv->key.len, kv->key.ptr, n);
            kv->strs = calloc(n ? n : 1, sizeof *kv->strs);
            if (!kv->strs) return log_seterr(err, errlen, "%s: out of memory", g->path);
            for (uint64_t i = 0; i < n; i++)
                if (cur_str(c, &kv->strs[i]))
                    return log_seterr(err, errlen, "%s: metadata '%.*s': string %" PRIu64 " of %" PRIu64 " runs past the end of the file",
                                      g->path, (int)kv->key.len, kv->key.ptr, i, n);
            return 0;
        }
        size_t es = scalar_size(et);
        if (!es)
            return log_seterr(err, errlen, "%s: metadata '%.*s': invalid array element type %u",
                              g->path, (int)kv->key.len, kv->key.ptr, et);
        if (n > c->left / es)
            return log_seterr(err, errlen, "%s: metadata '%.*s': array of %" PRIu64 " elements runs past the end of the file",
                              g->path, (int)kv->key.len, kv->key.ptr, n);
        return cur_take(c, (size_t)(n * es), &kv->arr);
    }
    size_t es = scalar_size(t);
    const void *p;
    if (!es)
        return log_seterr(err, errlen, "%s: metadata '%.*s': invalid value type %u",
                          g->path, (int)kv->key.len, kv->key.ptr, t);
    if (cur_take(c, es, &p))
        return log_seterr(err, errlen, "%s: metadata '%.*s': value runs past the end of the file",
                          g->path, (int)kv->key.len, kv->key.ptr);
    kv->type = t;
    decode_scalar(t, p, kv);
    return 0;
}

static int cmp_tensor_offset(const void *a, const void *b) {
    const gguf_tensor_t *x = *(gguf_tensor_t *const *)a, *y = *(gguf_tensor_t *const *)b;
    return x->offset < y->offset ? -1 : x->offset > y->offset;
}

static int str_eq(gguf_str_t s, const char *c) {
    size_t n = strlen(c);
    return s.len == n && memcmp(s.ptr, c, n) == 0;
}

/* Parses the validated mapping in g->base/g->size. */
static int parse(gguf_t *g, char *err, size_t errlen) {
    cursor_t c = {g->base, g->size, 0};
    const void *magic;
    gguf_tensor_t **order = NULL;
    if (cur_take(&c, 4, &magic) || memcmp(magic, "GGUF", 4) != 0)
        return log_seterr(err, errlen, "%s: not a GGUF file (bad magic; expected \"GGUF\" in the first 4 bytes)", g->path);
    if (cur_u32(&c, &g->version))
        return log_seterr(err, errlen, "%s: truncated header (version)", g->path);
    if (g->version != 2 && g->version != 3)
        return log_seterr(err, errlen, "%s: unsupported GGUF version %u (this reader knows 2 and 3)", g->path, g->version);
    if (cur_u64(&c, &g->n_tensors) || cur_u64(&c, &g->n_kv))
        return log_seterr(err, errlen, "%s: truncated header (counts)", g->path);
    if (g->n_kv > GGUF_MAX_KV || g->n_kv > c.left / 12)
        return log_seterr(err, errlen, "%s: header field n_kv = %" PRIu64 " is absurd for a file of %zu bytes", g->path, g->n_kv, g->size);
    if (g->n_tensors > GGUF_MAX_TENSORS || g->n_tensors > c.left / 24)
        return log_seterr(err, errlen, "%s: header field n_tensors = %" PRIu64 " is absurd for a file of %zu bytes", g->path, g->n_tensors, g->size);
    g->kvs = calloc(g->n_kv ? g->n_kv : 1, sizeof *g->kvs);
    g->tensors = calloc(g->n_tensors ? g->n_tensors : 1, sizeof *g->tensors);
    if (!g->kvs || !g->tensors) return log_seterr(err, errlen, "%s: out of memory", g->path);
    for (uint64_t i = 0; i < g->n_kv; i++)
        if (parse_kv(g, &c, &g->kvs[i], i, err, errlen)) return -1;

    uint64_t align = 32;
    const gguf_kv_t *ak = gguf_find(g, "general.alignment");
    if (ak) {
        if (!type_is_int(ak->type) || type_is_signed(ak->type) || ak->v.u == 0 ||
            (ak->v.u & (ak->v.u - 1)) || ak->v.u > GGUF_MAX_ALIGN)
            return log_seterr(err, errlen, "%s: general.alignment must be a power of two up to %llu stored as an unsigned integer (type %u, value %" PRIu64 ")",
                              g->path, GGUF_MAX_ALIGN, ak->type, ak->v.u);
        align = ak->v.u;
    }

    for (uint64_t i = 0; i < g->n_tensors; i++) {
        gguf_tensor_t *t = &g->tensors[i];
        if (cur_str(&c, &t->name) || cur_u32(&c, &t->n_dims))
            return log_seterr(err, errlen, "%s: tensor info %" PRIu64 ": truncated", g->path, i);
        if (t->n_dims < 1 || t->n_dims > GGUF_MAX_DIMS)
            return log_seterr(err, errlen, "%s: tensor '%.*s': n_dims = %u (must be 1..%d)", g->path,
                              (int)t->name.len, t->name.ptr, t->n_dims, GGUF_MAX_DIMS);
        uint64_t nel = 1;
        for (uint32_t d = 0; d < GGUF_MAX_DIMS; d++) t->ne[d] = 1;
        for (uint32_t d = 0; d < t->n_dims; d++) {
            if (cur_u64(&c, &t->ne[d]))
                return log_seterr(err, errlen, "%s: tensor '%.*s': truncated dimensions", g->path, (int)t->name.len, t->name.ptr);
            if (t->ne[d] == 0 || t->ne[d] > (1ULL << 40) || nel > (1ULL << 40) / t->ne[d])
                return log_seterr(err, errlen, "%s: tensor '%.*s': dimension %u = %" PRIu64 " is out of range", g->path,
                                  (int)t->name.len, t->name.ptr, d, t->ne[d]);
            nel *= t->ne[d];
        }
        if (cur_u32(&c, &t->type) || cur_u64(&c, &t->offset))
            return log_seterr(err, errlen, "%s: tensor '%.*s': truncated type/offset", g->path, (int)t->name.len, t->name.ptr);
        if (!quant_supported(t->type))
            return log_seterr(err, errlen, "%s: tensor '%.*s': type %s is not supported (supported: %s)", g->path,
                              (int)t->name.len, t->name.ptr, quant_type_name(t->type), quant_supported_list());
        uint64_t rb = quant_row_bytes(t->type, t->ne[0]);
        if (rb == 0)
            return log_seterr(err, errlen, "%s: tensor '%.*s': row length %" PRIu64 " is not a multiple of the %s block of %d values (corrupt file?)",
                              g->path, (int)t->name.len, t->name.ptr, t->ne[0], quant_type_name(t->type),
                              quant_block_elems(t->type));
        t->nbytes = rb * (nel / t->ne[0]);
        if (t->offset % align)
            return log_seterr(err, errlen, "%s: tensor '%.*s': offset %" PRIu64 " is not a multiple of the alignment %" PRIu64,
                              g->path, (int)t->name.len, t->name.ptr, t->offset, align);
        for (uint64_t j = 0; j < i; j++)
            if (g->tensors[j].name.len == t->name.len && !memcmp(g->tensors[j].name.ptr, t->name.ptr, t->name.len))
                return log_seterr(err, errlen, "%s: tensor name '%.*s' appears twice", g->path, (int)t->name.len, t->name.ptr);
    }
    g->data_offset = (c.off + align - 1) / align * align;
    if (g->data_offset > g->size && g->n_tensors)
        return log_seterr(err, errlen, "%s: the tensor data section (at byte %" PRIu64 ") starts past the end of the file (%zu bytes)",
                          g->path, g->data_offset, g->size);
    uint64_t data_size = g->data_offset <= g->size ? g->size - g->data_offset : 0;
    for (uint64_t i = 0; i < g->n_tensors; i++) {
        gguf_tensor_t *t = &g->tensors[i];
        if (t->offset > data_size || t->nbytes > data_size - t->offset)
            return log_seterr(err, errlen, "%s: tensor '%.*s': %" PRIu64 " bytes at data offset %" PRIu64 " run past the end of the file (data section is %" PRIu64 " bytes; file truncated?)",
                              g->path, (int)t->name.len, t->name.ptr, t->nbytes, t->offset, data_size);
        t->data = g->base + g->data_offset + t->offset;
    }
    /* Overlap check: sort by offset, compare neighbours. */
    if (g->n_tensors > 1) {
        order = malloc(g->n_tensors * sizeof *order);
        if (!order) return log_seterr(err, errlen, "%s: out of memory", g->path);
        for (uint64_t i = 0; i < g->n_tensors; i++) order[i] = &g->tensors[i];
        qsort(order, g->n_tensors, sizeof *order, cmp_tensor_offset);
        for (uint64_t i = 1; i < g->n_tensors; i++)
            if (order[i - 1]->offset + order[i - 1]->nbytes > order[i]->offset) {
                log_seterr(err, errlen, "%s: tensors '%.*s' and '%.*s' overlap (offsets %" PRIu64 " + %" PRIu64 " bytes > %" PRIu64 ")",
                           g->path, (int)order[i - 1]->name.len, order[i - 1]->name.ptr,
                           (int)order[i]->name.len, order[i]->name.ptr, order[i - 1]->offset,
                           order[i - 1]->nbytes, order[i]->offset);
                free(order);
                return -1;
            }
        free(order);
    }
    return 0;
}

static gguf_t *gguf_alloc(const char *name) {
    gguf_t *g = calloc(1, sizeof *g);
    if (!g) return NULL;
    g->path = strdup(name ? name : "(buffer)");
    if (!g->path) { free(g); return NULL; }
    return g;
}

gguf_t *gguf_open_buffer(const void *buf, size_t len, const char *name,
                         char *err, size_t errlen) {
    gguf_t *g = gguf_alloc(name);
    if (!g) { log_seterr(err, errlen, "out of memory"); return NULL; }
    g->base = buf;
    g->size = len;
    if (parse(g, err, errlen)) gguf_destroy(&g);
    return g;
}

gguf_t *gguf_open(const char *path, char *err, size_t errlen) {
    int fd = -1;
    gguf_t *g = gguf_alloc(path);
    if (!g) { log_seterr(err, errlen, "%s: out of memory", path); return NULL; }
    struct stat st;
    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0 || fstat(fd, &st) != 0) {
        log_seterr(err, errlen, "%s: cannot open: %s", path, strerror(errno));
        goto error;
    }
    if (!S_ISREG(st.st_mode)) {
        log_seterr(err, errlen, "%s: not a regular file", path);
        goto error;
    }
    g->size = (size_t)st.st_size;
    if (g->size < 24) {
        log_seterr(err, errlen, "%s: file is %zu bytes, too short for a GGUF header (24 bytes)", path, g->size);
        goto error;
    }
    /* MAP_PRIVATE + PROT_READ: F32 tensors are used in place, never copied. */
    void *m = mmap(NULL, g->size, PROT_READ, MAP_PRIVATE, fd, 0);
    if (m == MAP_FAILED) {
        log_seterr(err, errlen, "%s: mmap failed: %s", path, strerror(errno));
        goto error;
    }
    g->base = m;
    g->mapped = 1;
    close(fd);
    fd = -1;
    if (parse(g, err, errlen)) goto error;
    return g;
error:
    if (fd >= 0) close(fd);
    gguf_destroy(&g);
    return NULL;
}

void gguf_destroy(gguf_t **self_p) {
    if (!self_p || !*self_p) return;
    gguf_t *g = *self_p;
    if (g->kvs)
        for (uint64_t i = 0; i < g->n_kv; i++) free(g->kvs[i].strs);
    if (g->cstrs) {
        for (uint64_t i = 0; i < g->n_kv; i++) free(g->cstrs[i]);
        free(g->cstrs);
    }
    free(g->kvs);
    free(g->tensors);
    if (g->mapped) munmap((void *)g->base, g->size);
    free(g->path);
    free(g);
    *self_p = NULL;
}

uint32_t gguf_version(const gguf_t *g) { return g->version; }
const char *gguf_path(const gguf_t *g) { return g->path; }
uint64_t gguf_n_kv(const gguf_t *g) { return g->n_kv; }
uint64_t gguf_n_tensors(const gguf_t *g) { return g->n_tensors; }
const gguf_kv_t *gguf_kv_at(const gguf_t *g, uint64_t i) { return i < g->n_kv ? &g->kvs[i] : NULL; }
const gguf_tensor_t *gguf_tensor_at(const gguf_t *g, uint64_t i) { return i < g->n_tensors ? &g->tensors[i] : NULL; }

const gguf_kv_t *gguf_find(const gguf_t *g, const char *key) {
    /* Last definition wins would hide corruption; first is what llama.cpp
     * reports too.  Linear: models have tens of keys, read once. */
    for (uint64_t i = 0; i < g->n_kv; i++)
        if (str_eq(g->kvs[i].key, key)) return &g->kvs[i];
    return NULL;
}

static const char *kv_type_name(const gguf_kv_t *kv) {
    static const char *names[] = {"uint8", "int8", "uint16", "int16", "uint32", "int32", "float32",
                                  "bool", "string", "array", "uint64", "int64", "float64"};
    return kv->type < GGUF_TYPE_COUNT ? names[kv->type] : "?";
}

int gguf_get_u64(const gguf_t *g, const char *key, uint64_t *out, char *err, size_t errlen) {
    const gguf_kv_t *kv = gguf_find(g, key);
    if (!kv) return 1;
    if (!type_is_int(kv->type))
        return log_seterr(err, errlen, "%s: metadata '%s' has type %s, expected an integer", g->path, key, kv_type_name(kv));
    if (type_is_signed(kv->type) && kv->v.i < 0)
        return log_seterr(err, errlen, "%s: metadata '%s' = %" PRId64 " must not be negative", g->path, key, kv->v.i);
    *out = kv->v.u;
    return 0;
}

int gguf_get_f64(const gguf_t *g, const char *key, double *out, char *err, size_t errlen) {
    const gguf_kv_t *kv = gguf_find(g, key);
    if (!kv) return 1;
    if (kv->type != GGUF_TYPE_FLOAT32 && kv->type != GGUF_TYPE_FLOAT64)
        return log_seterr(err, errlen, "%s: metadata '%s' has type %s, expected a float", g->path, key, kv_type_name(kv));
    *out = kv->v.f;
    return 0;
}

int gguf_get_bool(const gguf_t *g, const char *key, int *out, char *err, size_t errlen) {
    const gguf_kv_t *kv = gguf_find(g, key);
    if (!kv) return 1;
    if (kv->type != GGUF_TYPE_BOOL)
        return log_seterr(err, errlen, "%s: metadata '%s' has type %s, expected bool", g->path, key, kv_type_name(kv));
    *out = kv->v.u != 0;
    return 0;
}

int gguf_get_str(const gguf_t *g, const char *key, const char **out, char *err, size_t errlen) {
    const gguf_kv_t *kv = gguf_find(g, key);
    if (!kv) return 1;
    if (kv->type != GGUF_TYPE_STRING)
        return log_seterr(err, errlen, "%s: metadata '%s' has type %s, expected string", g->path, key, kv_type_name(kv));
    gguf_t *mg = (gguf_t *)g; /* the cache of C strings is logically const */
    uint64_t i = (uint64_t)(kv - g->kvs);
    if (!mg->cstrs && !(mg->cstrs = calloc(g->n_kv, sizeof *mg->cstrs)))
        return log_seterr(err, errlen, "%s: out of memory", g->path);
    if (!mg->cstrs[i]) {
        if (memchr(kv->v.s.ptr, 0, kv->v.s.len))
            return log_seterr(err, errlen, "%s: metadata '%s' contains a NUL byte", g->path, key);
        if (!(mg->cstrs[i] = strndup(kv->v.s.ptr, kv->v.s.len)))
            return log_seterr(err, errlen, "%s: out of memory", g->path);
    }
    *out = mg->cstrs[i];
    return 0;
}

int gguf_get_arr(const gguf_t *g, const char *key, gguf_type_t elem, const void **data, uint64_t *n,
                 char *err, size_t errlen) {
    const gguf_kv_t *kv = gguf_find(g, key);
    if (!kv) return 1;
    if (kv->type != GGUF_TYPE_ARRAY || kv->arr_type != elem)
        return log_seterr(err, errlen, "%s: metadata '%s' has type %s (element type %u), expected an array of type %u",
                          g->path, key, kv_type_name(kv), kv->arr_type, elem);
    *data = kv->arr;
    *n = kv->n;
    return 0;
}

int gguf_get_str_arr(const gguf_t *g, const char *key, const gguf_str_t **strs, uint64_t *n,
                     char *err, size_t errlen) {
    const gguf_kv_t *kv = gguf_find(g, key);
    if (!kv) return 1;
    if (kv->type != GGUF_TYPE_ARRAY || kv->arr_type != GGUF_TYPE_STRING)
        return log_seterr(err, errlen, "%s: metadata '%s' has type %s, expected an array of strings", g->path, key,
                          kv_type_name(kv));
    *strs = kv->strs;
    *n = kv->n;
    return 0;
}

float gguf_arr_f32(const void *arr, uint64_t i) {
    float x;
    memcpy(&x, (const char *)arr + i * 4, 4);
    return x;
}

int32_t gguf_arr_i32(const void *arr, uint64_t i) {
    int32_t x;
    memcpy(&x, (const char *)arr + i * 4, 4);
    return x;
}

const gguf_tensor_t *gguf_tensor(const gguf_t *g, const char *name) {
    for (uint64_t i = 0; i < g->n_tensors; i++)
        if (str_eq(g->tensors[i].name, name)) return &g->tensors[i];
    return NULL;
}

uint64_t gguf_tensor_nelem(const gguf_tensor_t *t) {
    uint64_t n = 1;
    for (uint32_t d = 0; d < t->n_dims; d++) n *= t->ne[d];
    return n;
}

void gguf_tensor_to_f32(const gguf_tensor_t *t, float *out) {
    quant_dequant(t->type, t->data, out, gguf_tensor_nelem(t));
}

int gguf_selftest(void) {
    /* Conversions at the edges of the formats. */
    if (half_f16_to_f32(0x3c00) != 1.0f || half_f16_to_f32(0xc000) != -2.0f) return -1;
    if (half_f16_to_f32(0x0001) != 5.9604644775390625e-08f) return -1; /* smallest subnormal */
    if (half_f16_to_f32(0x7bff) != 65504.0f) return -1;
    if (half_bf16_to_f32(0x3f80) != 1.0f || half_bf16_to_f32(0xbfc0) != -1.5f) return -1;
    return 0; /* quant_selftest runs on its own (tests/test_selftests.c) */
}
