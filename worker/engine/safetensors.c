/* safetensors.c - see safetensors.h.  The header is parsed by jansson with
 * duplicate keys rejected; every number is range-checked before it is used
 * in arithmetic, and every tensor's bytes are checked against the mapping
 * before its data pointer is set, so a corrupt file can only produce an
 * error message. */
#include "safetensors.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "half.h"
#include "log.h"
#include "path.h"

/* The reference implementation's limit on the header; a real model's header
 * is a few hundred KiB. */
#define ST_MAX_HEADER (100ULL << 20)
/* An index file is a few hundred KiB too. */
#define ST_MAX_INDEX (64LL << 20)
/* No real tensor has more elements than this (2^48); a larger product is a
 * corrupt shape, and refusing it keeps every size below in 64 bits. */
#define ST_MAX_NELEM (1ULL << 48)

struct safetensors {
    char *path;
    const uint8_t *base;
    size_t size;
    int mapped;               /* 1 when base is our mmap */
    json_t *root;             /* the parsed header; names and metadata point into it */
    safetensors_tensor_t *tensors; /* sorted by name */
    size_t n;
    uint64_t data_start, data_size;
};

static const struct {
    const char *name;
    size_t size;
} dtypes[SAFETENSORS_DTYPE_COUNT] = {
    [SAFETENSORS_F32] = {"F32", 4},         [SAFETENSORS_F16] = {"F16", 2},
    [SAFETENSORS_BF16] = {"BF16", 2},       [SAFETENSORS_F64] = {"F64", 8},
    [SAFETENSORS_I64] = {"I64", 8},         [SAFETENSORS_U64] = {"U64", 8},
    [SAFETENSORS_I32] = {"I32", 4},         [SAFETENSORS_U32] = {"U32", 4},
    [SAFETENSORS_I16] = {"I16", 2},         [SAFETENSORS_U16] = {"U16", 2},
    [SAFETENSORS_I8] = {"I8", 1},           [SAFETENSORS_U8] = {"U8", 1},
    [SAFETENSORS_BOOL] = {"BOOL", 1},       [SAFETENSORS_F8_E4M3] = {"F8_E4M3", 1},
    [SAFETENSORS_F8_E5M2] = {"F8_E5M2", 1}, [SAFETENSORS_F8_E8M0] = {"F8_E8M0", 1},
};

const char *safetensors_dtype_name(safetensors_dtype_t d) {
    return (unsigned)d < SAFETENSORS_DTYPE_COUNT ? dtypes[d].name : "?";
}

size_t safetensors_dtype_size(safetensors_dtype_t d) {
    return (unsigned)d < SAFETENSORS_DTYPE_COUNT ? dtypes[d].size : 0;
}

/* A compact rendering of a JSON value for messages, cut to fit buf. */
static const char *jshow(const json_t *v, char *buf, size_t len) {
    char *s = json_dumps(v, JSON_ENCODE_ANY | JSON_COMPACT);
    if (!s) snprintf(buf, len, "?");
    else if (strlen(s) < len) snprintf(buf, len, "%s", s);
    else snprintf(buf, len, "%.*s...", (int)(len > 4 ? len - 4 : 0), s);
    free(s);
    return buf;
}

static const char *jtype(const json_t *v) {
    switch (json_typeof(v)) {
    case JSON_OBJECT: return "an object";
    case JSON_ARRAY: return "an array";
    case JSON_STRING: return "a string";
    case JSON_INTEGER: return "an integer";
    case JSON_REAL: return "a real number";
    case JSON_TRUE: case JSON_FALSE: return "a boolean";
    default: return "null";
    }
}

/* Reads v as an integer in [0, max]; -1 when it is not one. */
static int juint(const json_t *v, uint64_t max, uint64_t *out) {
    if (!json_is_integer(v)) return -1;
    json_int_t x = json_integer_value(v);
    if (x < 0 || (uint64_t)x > max) return -1;
    *out = (uint64_t)x;
    return 0;
}

static int parse_tensor(safetensors_t *st, const char *name, json_t *val, safetensors_tensor_t *t, char *err,
                        size_t errlen) {
    char show[96];
    const char *key;
    json_t *kv;
    t->name = name;
    t->file = st->path;
    if (!json_is_object(val))
        return log_seterr(err, errlen, "%s: tensor '%.200s': entry is %s, expected an object with dtype, shape and data_offsets",
                          st->path, name, jtype(val));
    json_object_foreach(val, key, kv) {
        if (strcmp(key, "dtype") && strcmp(key, "shape") && strcmp(key, "data_offsets"))
            return log_seterr(err, errlen, "%s: tensor '%.200s': unexpected key '%.100s' (an entry has exactly dtype, shape and data_offsets)",
                              st->path, name, key);
    }
    json_t *dt = json_object_get(val, "dtype"), *shape = json_object_get(val, "shape"),
           *offs = json_object_get(val, "data_offsets");
    if (!dt || !shape || !offs)
        return log_seterr(err, errlen, "%s: tensor '%.200s': missing '%s'", st->path, name,
                          !dt ? "dtype" : !shape ? "shape" : "data_offsets");

    if (!json_is_string(dt))
        return log_seterr(err, errlen, "%s: tensor '%.200s': dtype is %s (%s), expected a string", st->path, name,
                          jtype(dt), jshow(dt, show, sizeof show));
    const char *dname = json_string_value(dt);
    int found = -1;
    for (int i = 0; i < SAFETENSORS_DTYPE_COUNT; i++)
        if (!strcmp(dname, dtypes[i].name)) found = i;
    if (found < 0)
        return log_seterr(err, errlen, "%s: tensor '%.200s': dtype '%.40s' is not supported (F32, F16 and BF16 are)",
                          st->path, name, dname);
    t->dtype = (safetensors_dtype_t)found;

    if (!json_is_array(shape))
        return log_seterr(err, errlen, "%s: tensor '%.200s': shape is %s (%s), expected an array of integers",
                          st->path, name, jtype(shape), jshow(shape, show, sizeof show));
    size_t nd = json_array_size(shape);
    if (nd > SAFETENSORS_MAX_DIMS)
        return log_seterr(err, errlen, "%s: tensor '%.200s': shape has %zu dimensions (at most %d are supported)",
                          st->path, name, nd, SAFETENSORS_MAX_DIMS);
    t->n_dims = (int)nd;
    t->nelem = 1;
    for (size_t d = 0; d < nd; d++) {
        json_t *e = json_array_get(shape, d);
        if (juint(e, ST_MAX_NELEM, &t->shape[d]))
            return log_seterr(err, errlen, "%s: tensor '%.200s': shape[%zu] = %s is not a non-negative integer up to 2^48",
                              st->path, name, d, jshow(e, show, sizeof show));
        /* both factors <= 2^48: the product fits in 128 bits; check it fits 2^48 */
        if (t->shape[d] && t->nelem > ST_MAX_NELEM / t->shape[d])
            return log_seterr(err, errlen, "%s: tensor '%.200s': shape %s has more than 2^48 elements", st->path,
                              name, jshow(shape, show, sizeof show));
        t->nelem *= t->shape[d];
    }

    if (!json_is_array(offs) || json_array_size(offs) != 2)
        return log_seterr(err, errlen, "%s: tensor '%.200s': data_offsets is %s, expected [begin, end]", st->path,
                          name, jshow(offs, show, sizeof show));
    uint64_t begin, end;
    if (juint(json_array_get(offs, 0), UINT64_MAX >> 1, &begin) ||
        juint(json_array_get(offs, 1), UINT64_MAX >> 1, &end))
        return log_seterr(err, errlen, "%s: tensor '%.200s': data_offsets %s are not non-negative integers",
                          st->path, name, jshow(offs, show, sizeof show));
    if (begin > end)
        return log_seterr(err, errlen, "%s: tensor '%.200s': data_offsets [%" PRIu64 ", %" PRIu64 "] end before they begin",
                          st->path, name, begin, end);
    if (end > st->data_size)
        return log_seterr(err, errlen, "%s: tensor '%.200s': data_offsets [%" PRIu64 ", %" PRIu64 "] run past the end of the data section (%" PRIu64 " bytes; file truncated?)",
                          st->path, name, begin, end, st->data_size);
    t->offset = begin;
    t->nbytes = end - begin;
    uint64_t want = t->nelem * dtypes[t->dtype].size; /* <= 2^51: no overflow */
    if (t->nbytes != want)
        return log_seterr(err, errlen, "%s: tensor '%.200s': data_offsets [%" PRIu64 ", %" PRIu64 "] hold %" PRIu64 " bytes, but shape %s of %s needs %" PRIu64,
                          st->path, name, begin, end, t->nbytes, jshow(shape, show, sizeof show), dname, want);
    t->data = st->base + st->data_start + begin;
    return 0;
}

static int cmp_by_offset(const void *a, const void *b) {
    const safetensors_tensor_t *x = *(safetensors_tensor_t *const *)a, *y = *(safetensors_tensor_t *const *)b;
    if (x->offset != y->offset) return x->offset < y->offset ? -1 : 1;
    return x->nbytes < y->nbytes ? -1 : x->nbytes > y->nbytes;
}

static int cmp_by_name(const void *a, const void *b) {
    return strcmp(((const safetensors_tensor_t *)a)->name, ((const safetensors_tensor_t *)b)->name);
}

/* The tensors must tile the data section: sorted by offset, each begins
 * where the previous ended, and the last ends at the end. */
static int check_layout(safetensors_t *st, char *err, size_t errlen) {
    int rc = -1;
    const safetensors_tensor_t **order = malloc((st->n ? st->n : 1) * sizeof *order);
    if (!order) return log_seterr(err, errlen, "%s: out of memory", st->path);
    for (size_t i = 0; i < st->n; i++) order[i] = &st->tensors[i];
    qsort(order, st->n, sizeof *order, cmp_by_offset);
    uint64_t covered = 0;
    const safetensors_tensor_t *prev = NULL;
    for (size_t i = 0; i < st->n; i++) {
        const safetensors_tensor_t *t = order[i];
        if (t->offset < covered) {
            log_seterr(err, errlen, "%s: tensors '%.200s' [%" PRIu64 ", %" PRIu64 ") and '%.200s' [%" PRIu64 ", %" PRIu64 ") overlap",
                       st->path, prev->name, prev->offset, prev->offset + prev->nbytes, t->name, t->offset,
                       t->offset + t->nbytes);
            goto error;
        }
        if (t->offset > covered) {
            log_seterr(err, errlen, "%s: bytes [%" PRIu64 ", %" PRIu64 ") of the data section (before tensor '%.200s') belong to no tensor; safetensors requires the data to be fully indexed",
                       st->path, covered, t->offset, t->name);
            goto error;
        }
        covered = t->offset + t->nbytes;
        prev = t;
    }
    if (covered != st->data_size) {
        log_seterr(err, errlen, "%s: the tensors cover %" PRIu64 " bytes but the data section has %" PRIu64 " (trailing bytes belong to no tensor)",
                   st->path, covered, st->data_size);
        goto error;
    }
    rc = 0;
error:
    free(order);
    return rc;
}

static int parse(safetensors_t *st, char *err, size_t errlen) {
    char show[96];
    if (st->size < 8)
        return log_seterr(err, errlen, "%s: file is %zu bytes, too short for the 8-byte header length of a safetensors file",
                          st->path, st->size);
    uint64_t hlen;
    memcpy(&hlen, st->base, 8); /* little-endian, as the hosts this runs on */
    if (hlen > ST_MAX_HEADER)
        return log_seterr(err, errlen, "%s: header length %" PRIu64 " is absurd (limit %llu bytes; not a safetensors file?)",
                          st->path, hlen, ST_MAX_HEADER);
    if (hlen > st->size - 8)
        return log_seterr(err, errlen, "%s: header length %" PRIu64 " runs past the end of the file (%zu bytes; truncated?)",
                          st->path, hlen, st->size);
    const char *h = (const char *)st->base + 8;
    if (hlen < 2 || h[0] != '{')
        return log_seterr(err, errlen, "%s: the %" PRIu64 "-byte header does not start with '{' (not a safetensors file?)",
                          st->path, hlen);
    json_error_t je;
    st->root = json_loadb(h, (size_t)hlen, JSON_REJECT_DUPLICATES, &je);
    if (!st->root)
        return log_seterr(err, errlen, "%s: header is not valid JSON: %s (at byte %d of the header)", st->path,
                          je.text, je.position);
    if (!json_is_object(st->root))
        return log_seterr(err, errlen, "%s: header is %s, expected an object", st->path, jtype(st->root));
    st->data_start = 8 + hlen;
    st->data_size = st->size - st->data_start;

    size_t cnt = json_object_size(st->root);
    json_t *meta = json_object_get(st->root, "__metadata__");
    if (meta) {
        const char *k;
        json_t *v;
        if (!json_is_object(meta))
            return log_seterr(err, errlen, "%s: __metadata__ is %s, expected an object of strings", st->path,
                              jtype(meta));
        json_object_foreach(meta, k, v) {
            if (!json_is_string(v))
                return log_seterr(err, errlen, "%s: __metadata__ '%.100s' is %s (%s); its values must be strings",
                                  st->path, k, jtype(v), jshow(v, show, sizeof show));
        }
        cnt--;
    }
    st->tensors = calloc(cnt ? cnt : 1, sizeof *st->tensors);
    if (!st->tensors) return log_seterr(err, errlen, "%s: out of memory", st->path);
    const char *key;
    json_t *val;
    json_object_foreach(st->root, key, val) {
        if (!strcmp(key, "__metadata__")) continue;
        if (parse_tensor(st, key, val, &st->tensors[st->n], err, errlen)) return -1;
        st->n++;
    }
    if (check_layout(st, err, errlen)) return -1;
    qsort(st->tensors, st->n, sizeof *st->tensors, cmp_by_name);
    return 0;
}

static safetensors_t *st_alloc(const char *name) {
    safetensors_t *st = calloc(1, sizeof *st);
    if (!st) return NULL;
    if (!(st->path = strdup(name ? name : "(buffer)"))) {
        free(st);
        return NULL;
    }
    return st;
}

safetensors_t *safetensors_open_buffer(const void *buf, size_t len, const char *name, char *err, size_t errlen) {
    safetensors_t *st = st_alloc(name);
    if (!st) {
        log_seterr(err, errlen, "out of memory");
        return NULL;
    }
    st->base = buf;
    st->size = len;
    if (parse(st, err, errlen)) safetensors_destroy(&st);
    return st;
}

safetensors_t *safetensors_open(const char *path, char *err, size_t errlen) {
    int fd = -1;
    struct stat sb;
    safetensors_t *st = st_alloc(path);
    if (!st) {
        log_seterr(err, errlen, "%s: out of memory", path);
        return NULL;
    }
    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0 || fstat(fd, &sb) != 0) {
        log_seterr(err, errlen, "%s: cannot open: %s", path, strerror(errno));
        goto error;
    }
    if (!S_ISREG(sb.st_mode)) {
        log_seterr(err, errlen, "%s: not a regular file", path);
        goto error;
    }
    st->size = (size_t)sb.st_size;
    if (st->size < 8) {
        log_seterr(err, errlen, "%s: file is %zu bytes, too short for the 8-byte header length of a safetensors file",
                   path, st->size);
        goto error;
    }
    void *m = mmap(NULL, st->size, PROT_READ, MAP_PRIVATE, fd, 0);
    if (m == MAP_FAILED) {
        log_seterr(err, errlen, "%s: mmap failed: %s", path, strerror(errno));
        goto error;
    }
    st->base = m;
    st->mapped = 1;
    close(fd);
    fd = -1;
    if (parse(st, err, errlen)) goto error;
    return st;
error:
    if (fd >= 0) close(fd);
    safetensors_destroy(&st);
    return NULL;
}

void safetensors_destroy(safetensors_t **self_p) {
    if (!self_p || !*self_p) return;
    safetensors_t *st = *self_p;
    free(st->tensors);
    json_decref(st->root);
    if (st->mapped) munmap((void *)st->base, st->size);
    free(st->path);
    free(st);
    *self_p = NULL;
}

const char *safetensors_path(const safetensors_t *st) { return st->path; }
size_t safetensors_n_tensors(const safetensors_t *st) { return st->n; }

const safetensors_tensor_t *safetensors_tensor_at(const safetensors_t *st, size_t i) {
    return i < st->n ? &st->tensors[i] : NULL;
}

const safetensors_tensor_t *safetensors_find(const safetensors_t *st, const char *name) {
    safetensors_tensor_t key = {.name = name};
    return bsearch(&key, st->tensors, st->n, sizeof *st->tensors, cmp_by_name);
}

const char *safetensors_metadata(const safetensors_t *st, const char *key) {
    json_t *meta = json_object_get(st->root, "__metadata__");
    return meta ? json_string_value(json_object_get(meta, key)) : NULL;
}

int safetensors_to_f32(const safetensors_tensor_t *t, float *out, char *err, size_t errlen) {
    const uint8_t *p = t->data;
    switch (t->dtype) {
    case SAFETENSORS_F32:
        if (t->nbytes) memcpy(out, p, t->nbytes);
        return 0;
    case SAFETENSORS_F16:
        for (uint64_t i = 0; i < t->nelem; i++) {
            uint16_t h;
            memcpy(&h, p + 2 * i, 2);
            out[i] = half_f16_to_f32(h);
        }
        return 0;
    case SAFETENSORS_BF16:
        for (uint64_t i = 0; i < t->nelem; i++) {
            uint16_t h;
            memcpy(&h, p + 2 * i, 2);
            out[i] = half_bf16_to_f32(h);
        }
        return 0;
    default:
        return log_seterr(err, errlen, "%s: tensor '%.200s' has dtype %s; only F32, F16 and BF16 tensors can be used as weights",
                          t->file, t->name, safetensors_dtype_name(t->dtype));
    }
}

/* ---- checkpoints ------------------------------------------------------- */

struct safetensors_set {
    char *path;
    safetensors_t **files;
    size_t n_files;
    const safetensors_tensor_t **all; /* sorted by name */
    size_t n;
};


static int is_regular(const char *path) {
    struct stat sb;
    return stat(path, &sb) == 0 && S_ISREG(sb.st_mode);
}

static int cmp_ptr_by_name(const void *a, const void *b) {
    return strcmp((*(const safetensors_tensor_t *const *)a)->name, (*(const safetensors_tensor_t *const *)b)->name);
}

/* A shard name must stay inside the model directory. */
static int shard_name_ok(const char *s) {
    size_t n = strlen(s);
    return n > 0 && n < 256 && !strchr(s, '/') && strcmp(s, ".") && strcmp(s, "..");
}

static int set_open_index(safetensors_set_t *set, const char *dir, char *err, size_t errlen) {
    int rc = -1;
    char show[96];
    json_error_t je;
    json_t *root = NULL;
    const char **names = NULL; /* distinct shard names, point into root */
    struct stat sb;
    if (stat(set->path, &sb) != 0) {
        log_seterr(err, errlen, "%s: cannot stat: %s", set->path, strerror(errno));
        goto error;
    }
    if (sb.st_size > ST_MAX_INDEX) {
        log_seterr(err, errlen, "%s: an index of %lld bytes is absurd (limit %lld)", set->path, (long long)sb.st_size,
                   ST_MAX_INDEX);
        goto error;
    }
    if (!(root = json_load_file(set->path, JSON_REJECT_DUPLICATES, &je))) {
        log_seterr(err, errlen, "%s: not valid JSON: %s (line %d, column %d)", set->path, je.text, je.line, je.column);
        goto error;
    }
    json_t *wm = json_object_get(root, "weight_map");
    if (!json_is_object(root) || !json_is_object(wm) || json_object_size(wm) == 0) {
        log_seterr(err, errlen, "%s: expected an object with a non-empty \"weight_map\" object", set->path);
        goto error;
    }
    json_t *md = json_object_get(root, "metadata");
    if (md && !json_is_object(md) && !json_is_null(md)) {
        log_seterr(err, errlen, "%s: \"metadata\" is %s, expected an object", set->path, jtype(md));
        goto error;
    }
    size_t n_map = json_object_size(wm);
    if (!(names = calloc(n_map, sizeof *names))) {
        log_seterr(err, errlen, "%s: out of memory", set->path);
        goto error;
    }
    const char *key;
    json_t *val;
    json_object_foreach(wm, key, val) {
        const char *s = json_string_value(val);
        if (!s || !shard_name_ok(s)) {
            log_seterr(err, errlen, "%s: weight_map maps tensor '%.200s' to %s, expected the file name of a shard in the same directory",
                       set->path, key, jshow(val, show, sizeof show));
            goto error;
        }
        size_t i = 0;
        while (i < set->n_files && strcmp(names[i], s)) i++;
        if (i == set->n_files) names[set->n_files++] = s;
    }
    if (!(set->files = calloc(set->n_files, sizeof *set->files))) {
        log_seterr(err, errlen, "%s: out of memory", set->path);
        goto error;
    }
    size_t total = 0;
    for (size_t i = 0; i < set->n_files; i++) {
        char *p = path_join(dir, names[i]);
        if (!p) {
            log_seterr(err, errlen, "%s: out of memory", set->path);
            goto error;
        }
        set->files[i] = safetensors_open(p, err, errlen);
        free(p);
        if (!set->files[i]) goto error;
        total += safetensors_n_tensors(set->files[i]);
    }
    /* Every mapped tensor is in its shard ... */
    json_object_foreach(wm, key, val) {
        const char *s = json_string_value(val);
        size_t i = 0;
        while (strcmp(names[i], s)) i++;
        if (!safetensors_find(set->files[i], key)) {
            log_seterr(err, errlen, "%s: weight_map puts tensor '%.200s' in %s, which does not hold it (stale index or incomplete shard?)",
                       set->path, key, s);
            goto error;
        }
    }
    /* ... and every tensor of every shard is mapped to that shard, so no
     * tensor is in two shards and the index hides nothing. */
    if (!(set->all = malloc((total ? total : 1) * sizeof *set->all))) {
        log_seterr(err, errlen, "%s: out of memory", set->path);
        goto error;
    }
    for (size_t i = 0; i < set->n_files; i++)
        for (size_t j = 0; j < safetensors_n_tensors(set->files[i]); j++) {
            const safetensors_tensor_t *t = safetensors_tensor_at(set->files[i], j);
            const char *s = json_string_value(json_object_get(wm, t->name));
            if (!s || strcmp(s, names[i])) {
                log_seterr(err, errlen, "%s: tensor '%.200s' of shard %s is %s%s", set->path, t->name, names[i],
                           s ? "mapped by weight_map to " : "not in weight_map", s ? s : "");
                goto error;
            }
            set->all[set->n++] = t;
        }
    qsort(set->all, set->n, sizeof *set->all, cmp_ptr_by_name);
    rc = 0;
error:
    free(names);
    json_decref(root);
    return rc;
}

safetensors_set_t *safetensors_set_open(const char *dir, char *err, size_t errlen) {
    safetensors_set_t *set = calloc(1, sizeof *set);
    if (!set || !(set->path = path_join(dir, "model.safetensors"))) {
        log_seterr(err, errlen, "%s: out of memory", dir);
        goto error;
    }
    if (is_regular(set->path)) {
        if (!(set->files = calloc(1, sizeof *set->files))) {
            log_seterr(err, errlen, "%s: out of memory", dir);
            goto error;
        }
        if (!(set->files[0] = safetensors_open(set->path, err, errlen))) goto error;
        set->n_files = 1;
        set->n = safetensors_n_tensors(set->files[0]);
        if (!(set->all = malloc((set->n ? set->n : 1) * sizeof *set->all))) {
            log_seterr(err, errlen, "%s: out of memory", dir);
            goto error;
        }
        for (size_t i = 0; i < set->n; i++) set->all[i] = safetensors_tensor_at(set->files[0], i);
        return set;
    }
    free(set->path);
    if (!(set->path = path_join(dir, "model.safetensors.index.json"))) {
        log_seterr(err, errlen, "%s: out of memory", dir);
        goto error;
    }
    if (!is_regular(set->path)) {
        log_seterr(err, errlen, "%s: neither model.safetensors nor model.safetensors.index.json is there (PyTorch .bin checkpoints are not supported: save the model with safetensors)",
                   dir);
        goto error;
    }
    if (set_open_index(set, dir, err, errlen)) goto error;
    return set;
error:
    safetensors_set_destroy(&set);
    return NULL;
}

void safetensors_set_destroy(safetensors_set_t **self_p) {
    if (!self_p || !*self_p) return;
    safetensors_set_t *set = *self_p;
    for (size_t i = 0; set->files && i < set->n_files; i++) safetensors_destroy(&set->files[i]);
    free(set->files);
    free(set->all);
    free(set->path);
    free(set);
    *self_p = NULL;
}

size_t safetensors_set_n_tensors(const safetensors_set_t *set) { return set->n; }
size_t safetensors_set_n_files(const safetensors_set_t *set) { return set->n_files; }
const char *safetensors_set_path(const safetensors_set_t *set) { return set->path; }

const safetensors_tensor_t *safetensors_set_tensor_at(const safetensors_set_t *set, size_t i) {
    return i < set->n ? set->all[i] : NULL;
}

const safetensors_tensor_t *safetensors_set_find(const safetensors_set_t *set, const char *name) {
    safetensors_tensor_t key = {.name = name};
    const safetensors_tensor_t *kp = &key;
    const safetensors_tensor_t *const *r = bsearch(&kp, set->all, set->n, sizeof *set->all, cmp_ptr_by_name);
    return r ? *r : NULL;
}
