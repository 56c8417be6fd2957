/* test_gguf_writer.c - the GGUF writer against the project's strict reader:
 * every scalar type at its limits, strings (empty, with NUL bytes), numeric
 * and string arrays (empty too), F32/F16/BF16/Q8_0 tensors of 1-4
 * dimensions, alignment, copying keys from a reader, the file and buffer
 * outputs being the same bytes, the conversions at their edges (subnormals,
 * ties, overflow, NaN), and every rejected input leaving a usable builder.
 * Needs no reference data. */
#include <math.h>
#include <unistd.h>

#include "gguf.h"
#include "gguf_writer.h"
#include "log.h"
#include "testutil.h"

static char err[LOG_ERRLEN];

/* TU_REQUIRE evaluates its condition twice: calls with effects go here. */
#define REQ0(call)                                                  \
    do {                                                            \
        int rc_ = (call);                                           \
        TU_REQUIRE(rc_ == 0, "%s: %s", #call, err);                 \
    } while (0)
static uint64_t g_rng = 99;

static float frand(void) {
    g_rng = g_rng * 6364136223846793005ULL + 1442695040888963407ULL;
    return (float)((double)(g_rng >> 11) * 0x1.0p-53 * 2.0 - 1.0);
}

static float bits_f32(uint32_t u) {
    float f;
    memcpy(&f, &u, 4);
    return f;
}

static int kv_is(const gguf_t *g, const char *key, gguf_type_t type) {
    const gguf_kv_t *kv = gguf_find(g, key);
    return kv && kv->type == type;
}

/* Conversions at their edges, against values worked out by hand. */
static void check_conversions(void) {
    struct { float f; uint16_t h; } f16[] = {
        {0.0f, 0x0000}, {-0.0f, 0x8000}, {1.0f, 0x3c00}, {-2.0f, 0xc000}, {65504.0f, 0x7bff},
        {65519.99f, 0x7bff}, {65520.0f, 0x7c00}, /* halfway to the next binade: rounds to inf */
        {INFINITY, 0x7c00}, {-INFINITY, 0xfc00}, {0x1p-24f, 0x0001}, {0x1p-25f, 0x0000}, /* tie to even 0 */
        {0x1.8p-24f, 0x0002}, /* 1.5 ulp: tie to even 2 */ {0x1p-14f, 0x0400}, {1.0f + 0x1p-11f, 0x3c00},
        {1.0f + 0x1.8p-10f, 0x3c02}, /* 1.5 ulp above 1: tie to even */ {1e-10f, 0x0000},
    };
    for (size_t i = 0; i < sizeof f16 / sizeof *f16; i++) {
        uint16_t h = gguf_writer_f32_to_f16(f16[i].f);
        TU_CHECK(h == f16[i].h, "f16(%a) = 0x%04x, expected 0x%04x", (double)f16[i].f, h, f16[i].h);
    }
    uint16_t hn = gguf_writer_f32_to_f16(NAN);
    TU_CHECK((hn & 0x7c00) == 0x7c00 && (hn & 0x3ff), "f16(NaN) = 0x%04x is not a NaN", hn);
    struct { uint32_t f; uint16_t h; } bf[] = {
        {0x3f800000, 0x3f80}, {0x3f808000, 0x3f80}, /* tie to even (down) */ {0x3f818000, 0x3f82}, /* tie up */
        {0x3f80c000, 0x3f81}, {0x7f7fffff, 0x7f80}, /* overflow to inf */ {0x00000001, 0x0000},
        {0xff800000, 0xff80},
    };
    for (size_t i = 0; i < sizeof bf / sizeof *bf; i++) {
        uint16_t h = gguf_writer_f32_to_bf16(bits_f32(bf[i].f));
        TU_CHECK(h == bf[i].h, "bf16(0x%08x) = 0x%04x, expected 0x%04x", bf[i].f, h, bf[i].h);
    }
    uint16_t bn = gguf_writer_f32_to_bf16(bits_f32(0x7f800001)); /* signalling NaN: must stay NaN */
    TU_CHECK((bn & 0x7f80) == 0x7f80 && (bn & 0x7f), "bf16(sNaN) = 0x%04x", bn);
    /* Q8_0: the largest magnitude maps to +-127, zeros block has scale 0. */
    float x[32] = {0};
    uint8_t blk[34];
    gguf_writer_q8_0_block(x, blk);
    TU_CHECK(blk[0] == 0 && blk[1] == 0 && blk[2] == 0, "Q8_0 of zeros");
    for (int j = 0; j < 32; j++) x[j] = (float)(j - 16) / 4.0f;
    gguf_writer_q8_0_block(x, blk);
    TU_CHECK((int8_t)blk[2] == -127 && (int8_t)blk[2 + 16] == 0, "Q8_0 extremes: %d %d", (int8_t)blk[2],
             (int8_t)blk[18]);
}

static void check_errors(void) {
    gguf_writer_t *w = gguf_writer_new(err, sizeof err);
    TU_REQUIRE(w, "%s", err);
    uint64_t ne[4] = {32, 2, 1, 1}, ne33[1] = {33}, ne0[2] = {4, 0};
    float data[64] = {0};
    TU_CHECK(gguf_writer_add_u32(w, "a.b", 1, err, sizeof err) == 0, "%s", err);
    TU_CHECK(gguf_writer_add_str(w, "a.b", "x", SIZE_MAX, err, sizeof err) == -1 && strstr(err, "twice"), "%s", err);
    TU_CHECK(gguf_writer_add_u32(w, "", 1, err, sizeof err) == -1 && strstr(err, "empty"), "%s", err);
    TU_CHECK(gguf_writer_add_arr(w, "arr", GGUF_TYPE_STRING, data, 1, err, sizeof err) == -1, "string as numeric");
    TU_CHECK(gguf_writer_add_arr(w, "arr", (gguf_type_t)99, data, 1, err, sizeof err) == -1, "bad element type");
    TU_CHECK(gguf_writer_set_alignment(w, 48, err, sizeof err) == -1 && strstr(err, "power of two"), "%s", err);
    TU_CHECK(gguf_writer_add_u16(w, "general.alignment", 64, err, sizeof err) == -1 && strstr(err, "uint32"), "%s",
             err);
    TU_CHECK(gguf_writer_add_tensor(w, "t", GGML_TYPE_Q8_0, 1, ne33, data, err, sizeof err) == -1 &&
                 strstr(err, "multiple of 32"), "%s", err);
    TU_CHECK(gguf_writer_add_tensor(w, "t", (ggml_type_t)2, 2, ne, data, err, sizeof err) == -1 &&
                 strstr(err, "Q4_0"), "%s", err);
    TU_CHECK(gguf_writer_add_tensor(w, "t", GGML_TYPE_F32, 0, ne, data, err, sizeof err) == -1, "0 dims");
    TU_CHECK(gguf_writer_add_tensor(w, "t", GGML_TYPE_F32, 5, ne, data, err, sizeof err) == -1, "5 dims");
    TU_CHECK(gguf_writer_add_tensor(w, "t", GGML_TYPE_F32, 2, ne0, data, err, sizeof err) == -1 &&
                 strstr(err, "dimension 1"), "%s", err);
    TU_CHECK(gguf_writer_add_tensor(w, "", GGML_TYPE_F32, 1, ne, data, err, sizeof err) == -1, "empty name");
    TU_CHECK(gguf_writer_add_tensor(w, "t", GGML_TYPE_F32, 1, ne, NULL, err, sizeof err) == -1, "NULL data");
    data[5] = NAN;
    TU_CHECK(gguf_writer_add_tensor(w, "t", GGML_TYPE_Q8_0, 2, ne, data, err, sizeof err) == -1 &&
                 strstr(err, "finite"), "%s", err);
    TU_CHECK(gguf_writer_add_tensor(w, "t", GGML_TYPE_F32, 2, ne, data, err, sizeof err) == 0, "%s", err);
    TU_CHECK(gguf_writer_add_tensor(w, "t", GGML_TYPE_F16, 1, ne, data, err, sizeof err) == -1 &&
                 strstr(err, "twice"), "%s", err);
    TU_CHECK(gguf_writer_set_alignment(w, 64, err, sizeof err) == -1 && strstr(err, "before"), "%s", err);
    /* After all that, the builder still produces a valid file. */
    void *buf;
    size_t len;
    REQ0(gguf_writer_to_buffer(w, &buf, &len, err, sizeof err));
    gguf_t *g = gguf_open_buffer(buf, len, "errors", err, sizeof err);
    TU_CHECK(g && gguf_n_kv(g) == 1 && gguf_n_tensors(g) == 1, "after rejected adds: %s", g ? "counts" : err);
    TU_CHECK(gguf_writer_write(w, "/nonexistent-dir/x.gguf", err, sizeof err) == -1 && strstr(err, "nonexistent"),
             "%s", err);
    gguf_destroy(&g);
    free(buf);
    gguf_writer_destroy(&w);
    TU_CHECK(w == NULL, "destroy clears the pointer");
    gguf_writer_destroy(&w);
    gguf_writer_destroy(NULL);
}

int main(void) {
    check_conversions();
    check_errors();

    gguf_writer_t *w = gguf_writer_new(err, sizeof err);
    TU_REQUIRE(w, "%s", err);
    REQ0(gguf_writer_set_alignment(w, 64, err, sizeof err));
#define OK(call) TU_CHECK((call) == 0, "%s: %s", #call, err)
    OK(gguf_writer_add_u8(w, "s.u8", 255, err, sizeof err));
    OK(gguf_writer_add_i8(w, "s.i8", -128, err, sizeof err));
    OK(gguf_writer_add_u16(w, "s.u16", 65535, err, sizeof err));
    OK(gguf_writer_add_i16(w, "s.i16", -32768, err, sizeof err));
    OK(gguf_writer_add_u32(w, "s.u32", 4294967295u, err, sizeof err));
    OK(gguf_writer_add_i32(w, "s.i32", INT32_MIN, err, sizeof err));
    OK(gguf_writer_add_u64(w, "s.u64", UINT64_MAX, err, sizeof err));
    OK(gguf_writer_add_i64(w, "s.i64", INT64_MIN, err, sizeof err));
    OK(gguf_writer_add_f32(w, "s.f32", 0.1f, err, sizeof err));
    OK(gguf_writer_add_f64(w, "s.f64", 0.1, err, sizeof err));
    OK(gguf_writer_add_bool(w, "s.bool", 7, err, sizeof err));
    OK(gguf_writer_add_str(w, "s.str", "h\xc3\xa9llo", SIZE_MAX, err, sizeof err));
    OK(gguf_writer_add_str(w, "s.empty", "", 0, err, sizeof err));
    OK(gguf_writer_add_str(w, "s.nul", "a\0b", 3, err, sizeof err));
    int32_t i32s[5] = {-1, 0, 1, INT32_MAX, INT32_MIN};
    float f32s[3] = {1.5f, -0.0f, 1e30f};
    uint8_t bools[4] = {1, 0, 1, 1};
    int64_t i64s[2] = {INT64_MAX, -5};
    OK(gguf_writer_add_arr(w, "a.i32", GGUF_TYPE_INT32, i32s, 5, err, sizeof err));
    OK(gguf_writer_add_arr(w, "a.f32", GGUF_TYPE_FLOAT32, f32s, 3, err, sizeof err));
    OK(gguf_writer_add_arr(w, "a.bool", GGUF_TYPE_BOOL, bools, 4, err, sizeof err));
    OK(gguf_writer_add_arr(w, "a.i64", GGUF_TYPE_INT64, i64s, 2, err, sizeof err));
    OK(gguf_writer_add_arr(w, "a.empty", GGUF_TYPE_UINT16, NULL, 0, err, sizeof err));
    const char *strs[4] = {"<s>", "", "\xe2\x96\x81the", "x\ny"};
    size_t lens[4] = {3, 0, 6, 3};
    OK(gguf_writer_add_str_arr(w, "a.str", strs, NULL, 4, err, sizeof err));
    OK(gguf_writer_add_str_arr(w, "a.strlen", strs, lens, 4, err, sizeof err));
    OK(gguf_writer_add_str_arr(w, "a.strempty", NULL, NULL, 0, err, sizeof err));

    /* Tensors: every type, 1 to 4 dimensions, odd sizes. */
    enum { N = 64 * 3 * 2 * 2 };
    float *x = malloc(sizeof(float) * N), *back = malloc(sizeof(float) * N);
    for (int i = 0; i < N; i++) x[i] = frand() * (i % 7 == 0 ? 100.0f : 1.0f);
    x[3] = 0x1p-20f; /* an F16 subnormal */
    uint64_t ne1[1] = {7}, ne2[2] = {64, 3}, ne3[3] = {32, 3, 2}, ne4[4] = {64, 3, 2, 2};
    OK(gguf_writer_add_tensor(w, "t.f32.1d", GGML_TYPE_F32, 1, ne1, x, err, sizeof err));
    OK(gguf_writer_add_tensor(w, "t.f16.2d", GGML_TYPE_F16, 2, ne2, x, err, sizeof err));
    OK(gguf_writer_add_tensor(w, "t.bf16.3d", GGML_TYPE_BF16, 3, ne3, x, err, sizeof err));
    OK(gguf_writer_add_tensor(w, "t.q8.4d", GGML_TYPE_Q8_0, 4, ne4, x, err, sizeof err));
    OK(gguf_writer_add_tensor(w, "t.f32.4d", GGML_TYPE_F32, 4, ne4, x, err, sizeof err));

    /* Both outputs, same bytes. */
    char path[] = "/tmp/test_gguf_writer.XXXXXX";
    int fd = mkstemp(path);
    TU_REQUIRE(fd >= 0, "mkstemp");
    close(fd);
    REQ0(gguf_writer_write(w, path, err, sizeof err));
    void *buf;
    size_t len;
    REQ0(gguf_writer_to_buffer(w, &buf, &len, err, sizeof err));
    size_t flen;
    char *file = tu_read_file(path, &flen);
    TU_CHECK(flen == len && !memcmp(file, buf, len) && len == gguf_writer_size(w), "file and buffer differ");
    free(file);

    gguf_t *g = gguf_open(path, err, sizeof err);
    TU_REQUIRE(g, "reading back: %s", err);
    unlink(path);
    TU_CHECK(gguf_version(g) == 3 && gguf_n_kv(g) == 23 && gguf_n_tensors(g) == 5, "counts %llu %llu",
             (unsigned long long)gguf_n_kv(g), (unsigned long long)gguf_n_tensors(g));
    uint64_t u;
    double f;
    int b;
    const char *s;
    TU_CHECK(gguf_get_u64(g, "general.alignment", &u, err, sizeof err) == 0 && u == 64 &&
                 kv_is(g, "general.alignment", GGUF_TYPE_UINT32), "alignment key");
    TU_CHECK(kv_is(g, "s.u8", GGUF_TYPE_UINT8) && gguf_find(g, "s.u8")->v.u == 255, "u8");
    TU_CHECK(kv_is(g, "s.i8", GGUF_TYPE_INT8) && gguf_find(g, "s.i8")->v.i == -128, "i8");
    TU_CHECK(kv_is(g, "s.u16", GGUF_TYPE_UINT16) && gguf_find(g, "s.u16")->v.u == 65535, "u16");
    TU_CHECK(kv_is(g, "s.i16", GGUF_TYPE_INT16) && gguf_find(g, "s.i16")->v.i == -32768, "i16");
    TU_CHECK(kv_is(g, "s.u32", GGUF_TYPE_UINT32) && gguf_find(g, "s.u32")->v.u == 4294967295u, "u32");
    TU_CHECK(kv_is(g, "s.i32", GGUF_TYPE_INT32) && gguf_find(g, "s.i32")->v.i == INT32_MIN, "i32");
    TU_CHECK(kv_is(g, "s.u64", GGUF_TYPE_UINT64) && gguf_find(g, "s.u64")->v.u == UINT64_MAX, "u64");
    TU_CHECK(kv_is(g, "s.i64", GGUF_TYPE_INT64) && gguf_find(g, "s.i64")->v.i == INT64_MIN, "i64");
    TU_CHECK(kv_is(g, "s.f32", GGUF_TYPE_FLOAT32) && gguf_get_f64(g, "s.f32", &f, err, sizeof err) == 0 &&
                 f == (double)0.1f, "f32");
    TU_CHECK(kv_is(g, "s.f64", GGUF_TYPE_FLOAT64) && gguf_get_f64(g, "s.f64", &f, err, sizeof err) == 0 && f == 0.1,
             "f64");
    TU_CHECK(gguf_get_bool(g, "s.bool", &b, err, sizeof err) == 0 && b == 1, "bool");
    TU_CHECK(gguf_get_str(g, "s.str", &s, err, sizeof err) == 0 && !strcmp(s, "h\xc3\xa9llo"), "str");
    TU_CHECK(gguf_get_str(g, "s.empty", &s, err, sizeof err) == 0 && !strcmp(s, ""), "empty str");
    const gguf_kv_t *nul = gguf_find(g, "s.nul");
    TU_CHECK(nul && nul->v.s.len == 3 && !memcmp(nul->v.s.ptr, "a\0b", 3), "string with NUL");
    const void *arr;
    uint64_t n;
    TU_CHECK(gguf_get_arr(g, "a.i32", GGUF_TYPE_INT32, &arr, &n, err, sizeof err) == 0 && n == 5, "i32 arr");
    for (int i = 0; i < 5; i++) TU_CHECK(gguf_arr_i32(arr, i) == i32s[i], "i32 arr[%d]", i);
    TU_CHECK(gguf_get_arr(g, "a.f32", GGUF_TYPE_FLOAT32, &arr, &n, err, sizeof err) == 0 && n == 3, "f32 arr");
    for (int i = 0; i < 3; i++) TU_CHECK(gguf_arr_f32(arr, i) == f32s[i], "f32 arr[%d]", i);
    TU_CHECK(gguf_get_arr(g, "a.bool", GGUF_TYPE_BOOL, &arr, &n, err, sizeof err) == 0 && n == 4 &&
                 !memcmp(arr, bools, 4), "bool arr");
    TU_CHECK(gguf_get_arr(g, "a.i64", GGUF_TYPE_INT64, &arr, &n, err, sizeof err) == 0 && n == 2 &&
                 !memcmp(arr, i64s, 16), "i64 arr");
    TU_CHECK(gguf_get_arr(g, "a.empty", GGUF_TYPE_UINT16, &arr, &n, err, sizeof err) == 0 && n == 0, "empty arr");
    const char *keys[2] = {"a.str", "a.strlen"};
    for (int k = 0; k < 2; k++) {
        const gguf_str_t *ss;
        TU_CHECK(gguf_get_str_arr(g, keys[k], &ss, &n, err, sizeof err) == 0 && n == 4, "%s", keys[k]);
        for (int i = 0; i < 4 && n == 4; i++)
            TU_CHECK(ss[i].len == lens[i] && !memcmp(ss[i].ptr, strs[i], lens[i]), "%s[%d]", keys[k], i);
    }
    const gguf_str_t *ss;
    TU_CHECK(gguf_get_str_arr(g, "a.strempty", &ss, &n, err, sizeof err) == 0 && n == 0, "empty string array");

    /* Tensor data: offsets aligned, values as converted. */
    struct { const char *name; uint32_t type, dims; const uint64_t *ne; } ts[] = {
        {"t.f32.1d", GGML_TYPE_F32, 1, ne1}, {"t.f16.2d", GGML_TYPE_F16, 2, ne2},
        {"t.bf16.3d", GGML_TYPE_BF16, 3, ne3}, {"t.q8.4d", GGML_TYPE_Q8_0, 4, ne4},
        {"t.f32.4d", GGML_TYPE_F32, 4, ne4}};
    for (size_t k = 0; k < sizeof ts / sizeof *ts; k++) {
        const gguf_tensor_t *t = gguf_tensor(g, ts[k].name);
        TU_REQUIRE(t, "tensor %s missing", ts[k].name);
        TU_CHECK(t->type == ts[k].type && t->n_dims == ts[k].dims && t->offset % 64 == 0, "%s header", ts[k].name);
        uint64_t cnt = 1;
        for (uint32_t d = 0; d < ts[k].dims; d++) {
            TU_CHECK(t->ne[d] == ts[k].ne[d], "%s ne[%u]", ts[k].name, d);
            cnt *= ts[k].ne[d];
        }
        gguf_tensor_to_f32(t, back);
        double worst = 0;
        for (uint64_t i = 0; i < cnt; i++) {
            double want = x[i];
            if (ts[k].type == GGML_TYPE_F16) {
                /* Exactly what ggml stores: compare with the reader's
                 * conversion of our own half. */
                TU_CHECK(fabs(back[i] - want) <= fabs(want) * 0x1p-11 + 0x1p-25, "f16 %llu: %g vs %g",
                         (unsigned long long)i, back[i], want);
            } else if (ts[k].type == GGML_TYPE_BF16) {
                TU_CHECK(fabs(back[i] - want) <= fabs(want) * 0x1p-8, "bf16 %llu: %g vs %g", (unsigned long long)i,
                         back[i], want);
            } else if (ts[k].type == GGML_TYPE_Q8_0) {
                double amax = 0;
                for (uint64_t j = i / 32 * 32; j < i / 32 * 32 + 32; j++) amax = fmax(amax, fabs(x[j]));
                TU_CHECK(fabs(back[i] - want) <= amax / 127 * 0.5 + amax * 0x1p-10, "q8 %llu: %g vs %g",
                         (unsigned long long)i, back[i], want);
            } else
                TU_CHECK(back[i] == x[i], "f32 %llu", (unsigned long long)i);
            worst = fmax(worst, fabs(back[i] - want));
        }
        fprintf(stderr, "%s: max |error| %.3g\n", ts[k].name, worst);
    }

    /* Copying every key of the file into a new writer reproduces them. */
    gguf_writer_t *w2 = gguf_writer_new(err, sizeof err);
    TU_REQUIRE(w2, "%s", err);
    for (uint64_t i = 0; i < gguf_n_kv(g); i++)
        TU_CHECK(gguf_writer_copy_kv(w2, gguf_kv_at(g, i), err, sizeof err) == 0, "copy %llu: %s",
                 (unsigned long long)i, err);
    void *buf2;
    size_t len2;
    REQ0(gguf_writer_to_buffer(w2, &buf2, &len2, err, sizeof err));
    gguf_t *g2 = gguf_open_buffer(buf2, len2, "copy", err, sizeof err);
    TU_REQUIRE(g2, "%s", err);
    TU_CHECK(gguf_n_kv(g2) == gguf_n_kv(g), "copied key count");
    for (uint64_t i = 0; i < gguf_n_kv(g) && i < gguf_n_kv(g2); i++) {
        const gguf_kv_t *a = gguf_kv_at(g, i), *c = gguf_kv_at(g2, i);
        int same = a->key.len == c->key.len && !memcmp(a->key.ptr, c->key.ptr, a->key.len) && a->type == c->type &&
                   a->n == c->n && a->arr_type == c->arr_type;
        if (same && a->type == GGUF_TYPE_STRING)
            same = a->v.s.len == c->v.s.len && !memcmp(a->v.s.ptr, c->v.s.ptr, a->v.s.len);
        else if (same && a->type != GGUF_TYPE_ARRAY)
            same = a->v.u == c->v.u;
        TU_CHECK(same, "copied key %.*s differs", (int)a->key.len, a->key.ptr);
    }
    /* The key section is the same bytes (both files start with it). */
    TU_CHECK(!memcmp((char *)buf + 24, (char *)buf2 + 24, len2 - 24 < 200 ? len2 - 24 : 200), "key bytes");
    gguf_destroy(&g2);
    free(buf2);
    gguf_writer_destroy(&w2);

    gguf_destroy(&g);
    free(buf);
    free(x);
    free(back);
    gguf_writer_destroy(&w);
    return tu_finish("test_gguf_writer");
}
