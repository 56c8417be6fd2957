/* stwrite.h - a minimal safetensors writer for the tests (header-only).
 *
 * What it is: builds a valid safetensors image from fp32 arrays (stored as
 * F32, F16 or BF16, rounded by half.h exactly as the GGUF writer rounds), so
 * that tests can write checkpoints, and corrupt them.  What it is not: part of the engine
 * (tokshift only reads safetensors).  Failures exit(1): tests only. */
#ifndef TS_STWRITE_H
#define TS_STWRITE_H

#include <jansson.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "half.h"

typedef struct {
    char *name;
    char dtype[8]; /* "F32", "F16", "BF16"; any other name writes zeros of esize bytes */
    int esize;
    int n_dims;
    uint64_t shape[8];
    uint64_t nelem;
    uint8_t *bytes;
} stw_tensor_t;

typedef struct {
    stw_tensor_t *t;
    int n, cap;
} stw_t;

static inline void stw_die(const char *what) {
    fprintf(stderr, "FAIL: stwrite: %s\n", what);
    exit(1);
}

/* Adds a tensor of shape dims[0..n_dims) (dims[0] slowest) from nelem fp32
 * values (data may be NULL: zeros), stored as dtype. */
static inline void stw_add(stw_t *w, const char *name, const char *dtype, int n_dims, const uint64_t *dims,
                           const float *data) {
    if (w->n == w->cap) {
        w->cap = w->cap ? 2 * w->cap : 16;
        if (!(w->t = realloc(w->t, (size_t)w->cap * sizeof *w->t))) stw_die("out of memory");
    }
    stw_tensor_t *t = &w->t[w->n++];
    memset(t, 0, sizeof *t);
    if (!(t->name = strdup(name))) stw_die("out of memory");
    snprintf(t->dtype, sizeof t->dtype, "%s", dtype);
    t->esize = !strcmp(dtype, "F32") || !strcmp(dtype, "I32") ? 4 : !strcmp(dtype, "I64") || !strcmp(dtype, "F64") ? 8
               : !strcmp(dtype, "U8") || !strcmp(dtype, "BOOL") ? 1 : 2;
    t->n_dims = n_dims;
    t->nelem = 1;
    for (int d = 0; d < n_dims; d++) {
        t->shape[d] = dims[d];
        t->nelem *= dims[d];
    }
    if (!(t->bytes = calloc(t->nelem ? t->nelem : 1, (size_t)t->esize))) stw_die("out of memory");
    for (uint64_t i = 0; data && i < t->nelem; i++) {
        if (!strcmp(dtype, "F32")) memcpy(t->bytes + 4 * i, &data[i], 4);
        else if (!strcmp(dtype, "F16") || !strcmp(dtype, "BF16")) {
            uint16_t h = !strcmp(dtype, "F16") ? half_f32_to_f16(data[i]) : half_f32_to_bf16(data[i]);
            memcpy(t->bytes + 2 * i, &h, 2);
        }
    }
}

/* 2-D convenience: rows x cols. */
static inline void stw_add2(stw_t *w, const char *name, const char *dtype, uint64_t rows, uint64_t cols,
                            const float *data) {
    uint64_t d[2] = {rows, cols};
    stw_add(w, name, dtype, 2, d, data);
}

static inline void stw_add1(stw_t *w, const char *name, const char *dtype, uint64_t n, const float *data) {
    stw_add(w, name, dtype, 1, &n, data);
}

/* The image: u64 header length, the JSON header padded with spaces to a
 * multiple of 8, then the tensors in the order added.  metadata (a JSON
 * object text) may be NULL.  Returns a malloc'd buffer. */
static inline uint8_t *stw_build(const stw_t *w, const char *metadata, size_t *len) {
    json_t *h = json_object();
    uint64_t off = 0;
    if (metadata) {
        json_t *m = json_loads(metadata, 0, NULL);
        if (!m) stw_die("bad metadata JSON");
        json_object_set_new(h, "__metadata__", m);
    }
    for (int i = 0; i < w->n; i++) {
        const stw_tensor_t *t = &w->t[i];
        json_t *e = json_object(), *shape = json_array();
        for (int d = 0; d < t->n_dims; d++) json_array_append_new(shape, json_integer((json_int_t)t->shape[d]));
        uint64_t nb = t->nelem * (uint64_t)t->esize;
        json_object_set_new(e, "dtype", json_string(t->dtype));
        json_object_set_new(e, "shape", shape);
        json_object_set_new(e, "data_offsets", json_pack("[II]", (json_int_t)off, (json_int_t)(off + nb)));
        json_object_set_new(h, t->name, e);
        off += nb;
    }
    char *text = json_dumps(h, JSON_COMPACT | JSON_PRESERVE_ORDER);
    json_decref(h);
    if (!text) stw_die("json_dumps");
    size_t hl = strlen(text), padded = (hl + 7) / 8 * 8;
    *len = 8 + padded + off;
    uint8_t *buf = malloc(*len ? *len : 1);
    if (!buf) stw_die("out of memory");
    uint64_t n = padded;
    memcpy(buf, &n, 8);
    memcpy(buf + 8, text, hl);
    memset(buf + 8 + hl, ' ', padded - hl);
    free(text);
    uint8_t *p = buf + 8 + padded;
    for (int i = 0; i < w->n; i++) {
        size_t nb = (size_t)(w->t[i].nelem * (uint64_t)w->t[i].esize);
        memcpy(p, w->t[i].bytes, nb);
        p += nb;
    }
    return buf;
}

static inline void stw_write_bytes(const char *path, const void *buf, size_t len) {
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(buf, 1, len, f) != len || fclose(f) != 0) {
        fprintf(stderr, "FAIL: cannot write %s\n", path);
        exit(1);
    }
}

static inline void stw_write(const stw_t *w, const char *path) {
    size_t len;
    uint8_t *buf = stw_build(w, "{\"format\": \"pt\"}", &len);
    stw_write_bytes(path, buf, len);
    free(buf);
}

static inline void stw_free(stw_t *w) {
    for (int i = 0; i < w->n; i++) {
        free(w->t[i].name);
        free(w->t[i].bytes);
    }
    free(w->t);
    memset(w, 0, sizeof *w);
}

#endif
