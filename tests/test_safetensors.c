/* test_safetensors.c - the safetensors reader on files this test writes, and
 * on corrupted copies of them: every corruption (truncation at every length,
 * lying header lengths, bad JSON, wrong dtypes, shapes and offsets that do
 * not match, overlaps, holes, random byte flips and random JSON-level
 * mutations of the header) is rejected with a message naming the file, or,
 * where the mutant happens to be a valid file, reads back without touching a
 * byte outside the buffer (each mutant lives in a buffer of its exact size,
 * and the suite runs under ASan + UBSan).  Sharded checkpoints: the index is
 * checked against its shards.  Plus, on every 16-bit pattern, that half.h's
 * widening and narrowing are inverses and narrowing ties to even.
 *
 * The seed changes every run (printed; TOKSHIFT_TEST_SEED replays one). */
#include <math.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "half.h"
#include "log.h"
#include "safetensors.h"
#include "stwrite.h"
#include "testutil.h"

static char err[LOG_ERRLEN];

static uint64_t rng_state;
static uint64_t rnd(void) { return tu_splitmix64(&rng_state); }

/* Opens a copy of buf in a buffer of exactly len bytes (so ASan sees any
 * overread); returns 1 when rejected with a message naming the file and
 * containing want (when non-NULL).  Accepted files are read completely. */
static int rejected(const uint8_t *buf, size_t len, const char *want) {
    uint8_t *copy = malloc(len ? len : 1);
    memcpy(copy, buf, len);
    safetensors_t *st = safetensors_open_buffer(copy, len, "mutant.safetensors", err, sizeof err);
    int r = 0;
    if (st) {
        for (size_t i = 0; i < safetensors_n_tensors(st); i++) {
            const safetensors_tensor_t *t = safetensors_tensor_at(st, i);
            float *out = malloc((t->nelem ? t->nelem : 1) * sizeof *out);
            if (safetensors_to_f32(t, out, err, sizeof err) == 0 && t->nelem)
                out[0] += out[t->nelem - 1]; /* touch both ends */
            free(out);
            TU_CHECK(safetensors_find(st, t->name) == t, "find '%s'", t->name);
        }
        safetensors_destroy(&st);
    } else if (want && !strstr(err, want)) {
        fprintf(stderr, "message '%s' lacks '%s'\n", err, want);
    } else {
        r = strstr(err, "mutant.safetensors") != NULL;
        if (!r) fprintf(stderr, "message '%s' does not name the file\n", err);
    }
    free(copy);
    return r;
}

/* A valid file whose header is the given JSON text (padded to 8) followed by
 * data_len bytes 0..255. */
static uint8_t *with_header(const char *json, size_t data_len, size_t *len) {
    size_t hl = strlen(json);
    *len = 8 + hl + data_len;
    uint8_t *b = malloc(*len);
    uint64_t n = hl;
    memcpy(b, &n, 8);
    memcpy(b + 8, json, hl);
    for (size_t i = 0; i < data_len; i++) b[8 + hl + i] = (uint8_t)i;
    return b;
}

static void check_header(const char *json, size_t data_len, const char *want) {
    size_t len;
    uint8_t *b = with_header(json, data_len, &len);
    TU_CHECK(rejected(b, len, want), "header %s: expected an error with '%s'", json, want ? want : "");
    free(b);
}

static void check_valid_header(const char *json, size_t data_len) {
    size_t len;
    uint8_t *b = with_header(json, data_len, &len);
    safetensors_t *st = safetensors_open_buffer(b, len, "ok.safetensors", err, sizeof err);
    TU_CHECK(st, "header %s should be valid: %s", json, err);
    safetensors_destroy(&st);
    free(b);
}

static void test_half(void) {
    /* Every f16 and bf16 pattern widens and narrows back to itself (NaN
     * payloads aside), and narrowing rounds to nearest even. */
    int bad = 0;
    for (uint32_t h = 0; h < 65536; h++) {
        float f = half_f16_to_f32((uint16_t)h), g = half_bf16_to_f32((uint16_t)h);
        if (isnan(f) ? !isnan(half_f16_to_f32(half_f32_to_f16(f))) : half_f32_to_f16(f) != h) bad++;
        if (isnan(g) ? !isnan(half_bf16_to_f32(half_f32_to_bf16(g))) : half_f32_to_bf16(g) != h) bad++;
        /* midpoints between neighbours round to the even one */
        if (!isnan(f) && !isinf(f) && (h & 0x7fff) < 0x7bff) {
            float nf = half_f16_to_f32((uint16_t)(h + 1));
            double mid = ((double)f + nf) / 2;
            uint16_t want = (h & 1) ? (uint16_t)(h + 1) : (uint16_t)h;
            if ((float)mid == mid && half_f32_to_f16((float)mid) != want) bad++;
        }
    }
    TU_CHECK(bad == 0, "%d half-precision round trips failed", bad);
    TU_CHECK(half_f32_to_f16(65520.0f) == 0x7c00 && half_f32_to_f16(65519.0f) == 0x7bff, "f16 overflow edge");
    TU_CHECK(half_f32_to_f16(1e-8f) == 0 && half_f32_to_f16(-3e-8f) == 0x8001, "f16 underflow edge");
    TU_CHECK(half_f32_to_bf16(1.00390625f) == 0x3f80 && half_f32_to_bf16(1.01171875f) == 0x3f82,
             "bf16 ties to even");
}

/* The file every mutation starts from: three dtypes, a scalar, an empty
 * tensor, metadata. */
static uint8_t *valid_file(size_t *len) {
    stw_t w = {0};
    float a[12], b[6], c[5], s = 3.25f;
    for (int i = 0; i < 12; i++) a[i] = (float)i * 0.5f - 2.0f;
    for (int i = 0; i < 6; i++) b[i] = (float)i + 0.25f;
    for (int i = 0; i < 5; i++) c[i] = -(float)i * 1.5f;
    stw_add2(&w, "model.layers.0.self_attn.q_proj.weight", "F32", 3, 4, a);
    stw_add2(&w, "emb", "F16", 2, 3, b);
    stw_add1(&w, "norm.weight", "BF16", 5, c);
    stw_add(&w, "scalar", "F32", 0, NULL, &s);
    uint64_t z[2] = {0, 7};
    stw_add(&w, "empty", "F32", 2, z, NULL);
    stw_add1(&w, "position_ids", "I64", 2, NULL);
    uint8_t *buf = stw_build(&w, "{\"format\": \"pt\"}", len);
    stw_free(&w);
    return buf;
}

static void test_valid(const uint8_t *buf, size_t len) {
    safetensors_t *st = safetensors_open_buffer(buf, len, "valid.safetensors", err, sizeof err);
    TU_REQUIRE(st, "valid file: %s", err);
    TU_CHECK(safetensors_n_tensors(st) == 6, "n_tensors %zu", safetensors_n_tensors(st));
    TU_CHECK(safetensors_metadata(st, "format") && !strcmp(safetensors_metadata(st, "format"), "pt"), "metadata");
    TU_CHECK(!safetensors_metadata(st, "nope"), "absent metadata");
    TU_CHECK(!safetensors_find(st, "nope") && !safetensors_find(st, "__metadata__"), "absent tensor");
    for (size_t i = 1; i < safetensors_n_tensors(st); i++)
        TU_CHECK(strcmp(safetensors_tensor_at(st, i - 1)->name, safetensors_tensor_at(st, i)->name) < 0, "name order");
    float out[12];
    const safetensors_tensor_t *t = safetensors_find(st, "model.layers.0.self_attn.q_proj.weight");
    TU_REQUIRE(t && t->dtype == SAFETENSORS_F32 && t->n_dims == 2 && t->shape[0] == 3 && t->shape[1] == 4 &&
                   t->nelem == 12,
               "q_proj descriptor");
    TU_CHECK(safetensors_to_f32(t, out, err, sizeof err) == 0 && out[0] == -2.0f && out[11] == 3.5f, "F32 data");
    t = safetensors_find(st, "emb");
    TU_CHECK(t && t->dtype == SAFETENSORS_F16 && safetensors_to_f32(t, out, err, sizeof err) == 0 && out[5] == 5.25f,
             "F16 data");
    t = safetensors_find(st, "norm.weight");
    TU_CHECK(t && t->dtype == SAFETENSORS_BF16 && safetensors_to_f32(t, out, err, sizeof err) == 0 && out[3] == -4.5f,
             "BF16 data");
    t = safetensors_find(st, "scalar");
    TU_CHECK(t && t->n_dims == 0 && t->nelem == 1 && safetensors_to_f32(t, out, err, sizeof err) == 0 &&
                 out[0] == 3.25f,
             "scalar");
    t = safetensors_find(st, "empty");
    TU_CHECK(t && t->nelem == 0 && t->nbytes == 0, "empty tensor");
    t = safetensors_find(st, "position_ids");
    TU_CHECK(t && t->dtype == SAFETENSORS_I64 && safetensors_to_f32(t, out, err, sizeof err) == -1 &&
                 strstr(err, "position_ids") && strstr(err, "I64") && strstr(err, "valid.safetensors"),
             "I64 tensor opens but does not convert: %s", err);
    safetensors_destroy(&st);
    safetensors_destroy(&st); /* NULL-safe */

    /* The same through a real file and mmap. */
    char path[] = "/tmp/tokshift_st_XXXXXX";
    int fd = mkstemp(path);
    TU_REQUIRE(fd >= 0, "mkstemp");
    close(fd);
    stw_write_bytes(path, buf, len);
    st = safetensors_open(path, err, sizeof err);
    TU_CHECK(st && safetensors_n_tensors(st) == 6, "open file: %s", err);
    safetensors_destroy(&st);
    stw_write_bytes(path, buf, 5);
    TU_CHECK(!safetensors_open(path, err, sizeof err) && strstr(err, path) && strstr(err, "too short"),
             "short file: %s", err);
    unlink(path);
    TU_CHECK(!safetensors_open(path, err, sizeof err) && strstr(err, "cannot open"), "missing file: %s", err);
    TU_CHECK(!safetensors_open("/tmp", err, sizeof err) && strstr(err, "not a regular file"), "directory: %s", err);
}

static void test_specific(const uint8_t *buf, size_t len) {
    uint8_t *b = malloc(len);
    uint64_t hl;
    memcpy(&hl, buf, 8);

    /* Truncation at every length. */
    int bad = 0;
    for (size_t n = 0; n < len; n++)
        if (!rejected(buf, n, NULL)) {
            fprintf(stderr, "truncation to %zu bytes accepted\n", n);
            bad++;
        }
    TU_CHECK(bad == 0, "%d truncations accepted", bad);
    TU_CHECK(rejected(buf, 3, "too short"), "3 bytes");
    TU_CHECK(rejected(buf, 8 + hl / 2, "runs past the end of the file"), "cut header");
    TU_CHECK(rejected(buf, len - 1, "run past the end of the data section"), "cut data");

    /* Lying header lengths. */
    uint64_t lies[] = {0, 1, hl - 1, hl + 1, hl + 8, (uint64_t)len, UINT64_MAX, 1ULL << 40, 100ULL << 20};
    for (size_t i = 0; i < sizeof lies / sizeof *lies; i++) {
        memcpy(b, buf, len);
        memcpy(b, &lies[i], 8);
        TU_CHECK(rejected(b, len, NULL), "header length %llu accepted", (unsigned long long)lies[i]);
    }
    memcpy(b, buf, len);
    uint64_t huge = UINT64_MAX;
    memcpy(b, &huge, 8);
    TU_CHECK(rejected(b, len, "absurd"), "absurd header length");
    free(b);

    /* Header-level errors, each named. */
    check_header("[1, 2]", 0, "does not start with '{'");
    check_header("{\"a\": ", 0, "not valid JSON");
    check_header("{\"a\": {}} x", 0, "not valid JSON");
    check_header("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
                 "\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}",
                 8, "duplicate");
    check_header("{\"w\": 5}", 0, "entry is an integer");
    check_header("{\"w\": {\"dtype\":\"F32\",\"shape\":[1]}}", 4, "missing 'data_offsets'");
    check_header("{\"w\": {\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4],\"x\":1}}", 4, "unexpected key 'x'");
    check_header("{\"w\": {\"dtype\":\"Q8\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4, "dtype 'Q8' is not supported");
    check_header("{\"w\": {\"dtype\":\"F4\",\"shape\":[2],\"data_offsets\":[0,1]}}", 1, "dtype 'F4' is not supported");
    check_header("{\"w\": {\"dtype\":32,\"shape\":[1],\"data_offsets\":[0,4]}}", 4, "dtype is an integer");
    check_header("{\"w\": {\"dtype\":\"F32\",\"shape\":[-1],\"data_offsets\":[0,4]}}", 4, "shape[0] = -1");
    check_header("{\"w\": {\"dtype\":\"F32\",\"shape\":[1.0],\"data_offsets\":[0,4]}}", 4, "shape[0] = 1.0");
    check_header("{\"w\": {\"dtype\":\"F32\",\"shape\":[\"1\"],\"data_offsets\":[0,4]}}", 4, "shape[0]");
    check_header("{\"w\": {\"dtype\":\"F32\",\"shape\":5,\"data_offsets\":[0,4]}}", 4, "shape is an integer");
    check_header("{\"w\": {\"dtype\":\"F32\",\"shape\":[1099511627776,1099511627776],\"data_offsets\":[0,4]}}", 4,
                 "more than 2^48");
    check_header("{\"w\": {\"dtype\":\"F32\",\"shape\":[99999999999999999999],\"data_offsets\":[0,4]}}", 4,
                 "not valid JSON"); /* jansson: too big an integer */
    check_header("{\"w\": {\"dtype\":\"F32\",\"shape\":[1,1,1,1,1,1,1,1,1],\"data_offsets\":[0,4]}}", 4,
                 "9 dimensions");
    check_header("{\"w\": {\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,0]}}", 4, "end before they begin");
    check_header("{\"w\": {\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0]}}", 4, "expected [begin, end]");
    check_header("{\"w\": {\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,-4]}}", 4, "not non-negative");
    check_header("{\"w\": {\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,8]}}", 4, "run past the end");
    check_header("{\"w\": {\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,4]}}", 4, "needs 8");
    check_header("{\"w\": {\"dtype\":\"BF16\",\"shape\":[3],\"data_offsets\":[0,4]}}", 4, "needs 6");
    check_header("{\"a\": {\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
                 "\"b\": {\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}",
                 12, "overlap");
    check_header("{\"a\": {\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
                 "\"b\": {\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}",
                 4, "overlap");
    check_header("{\"a\": {\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}", 8, "belong to no tensor");
    check_header("{\"a\": {\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", 6, "trailing");
    check_header("{\"__metadata__\": {\"format\": 1}}", 0, "values must be strings");
    check_header("{\"__metadata__\": [\"pt\"]}", 0, "__metadata__ is an array");
    check_header("{}", 3, "trailing");
    check_valid_header("{}", 0);
    check_valid_header("{\"__metadata__\": {}}   ", 0);
    check_valid_header("{\"b\": {\"dtype\":\"U8\",\"shape\":[3],\"data_offsets\":[1,4]},"
                       "\"a\": {\"dtype\":\"BOOL\",\"shape\":[],\"data_offsets\":[0,1]}}",
                       4);
}

/* Random byte flips in the first 8 + header bytes (the data section carries
 * no structure), 1 to 4 bytes at a time. */
static void fuzz_bytes(const uint8_t *buf, size_t len, int iters) {
    uint64_t hl;
    memcpy(&hl, buf, 8);
    size_t span = 8 + (size_t)hl;
    uint8_t *b = malloc(len);
    int accepted = 0;
    for (int it = 0; it < iters; it++) {
        memcpy(b, buf, len);
        int k = 1 + (int)(rnd() % 4);
        for (int j = 0; j < k; j++) {
            size_t at = rnd() % span;
            switch (rnd() % 4) {
            case 0: b[at] ^= (uint8_t)(1u << (rnd() % 8)); break;
            case 1: b[at] = (uint8_t)rnd(); break;
            case 2: b[at] = "{}[]\",:0123456789-.e \\"[rnd() % 22]; break;
            default: b[at] = 0; break;
            }
        }
        size_t n = rnd() % 8 ? len : rnd() % (len + 1);
        safetensors_t *st = safetensors_open_buffer(b, n, "mutant.safetensors", err, sizeof err);
        if (!st) {
            TU_CHECK(strstr(err, "mutant.safetensors"), "message does not name the file: %s", err);
            continue;
        }
        accepted++;
        rejected(b, n, NULL); /* re-open in an exact-size copy and read every tensor */
        safetensors_destroy(&st);
    }
    fprintf(stderr, "byte flips: %d mutants, %d still valid files\n", iters, accepted);
    free(b);
}

/* JSON-level mutations: parse the header, set one field of one tensor to a
 * hostile value, write it back (the data section unchanged). */
static void fuzz_json(const uint8_t *buf, size_t len, int iters) {
    uint64_t hl;
    memcpy(&hl, buf, 8);
    const uint8_t *data = buf + 8 + hl;
    size_t dlen = len - 8 - (size_t)hl;
    json_t *orig = json_loadb((const char *)buf + 8, (size_t)hl, 0, NULL);
    TU_REQUIRE(orig, "reparse");
    static const json_int_t vals[] = {0, 1, 2, 3, 4, 7, 8, 12, 24, 47, 48, 49, -1, -8, 1LL << 31, 1LL << 32,
                                      (1LL << 48) + 1, 1LL << 62, INT64_MAX, INT64_MIN};
    static const char *dts[] = {"F32", "F16", "BF16", "I64", "U8", "BOOL", "F8_E4M3", "f32", "", "F32 ", "Q4_0"};
    int accepted = 0;
    for (int it = 0; it < iters; it++) {
        json_t *h = json_deep_copy(orig);
        int k = 1 + (int)(rnd() % 3);
        for (int j = 0; j < k; j++) {
            size_t n = json_object_size(h), pick = rnd() % n, i = 0;
            const char *key;
            json_t *v, *target = NULL;
            json_object_foreach(h, key, v) if (i++ == pick) target = v;
            if (!json_is_object(target)) continue;
            json_t *x = rnd() % 8 ? json_integer(vals[rnd() % (sizeof vals / sizeof *vals)])
                                  : json_string(dts[rnd() % (sizeof dts / sizeof *dts)]);
            switch (rnd() % 6) {
            case 0: json_object_set_new(target, "dtype", json_string(dts[rnd() % (sizeof dts / sizeof *dts)])); json_decref(x); break;
            case 1: { json_t *s = json_object_get(target, "shape"); if (json_is_array(s) && json_array_size(s)) json_array_set_new(s, rnd() % json_array_size(s), x); else json_decref(x); break; }
            case 2: { json_t *s = json_object_get(target, "shape"); if (json_is_array(s)) json_array_append_new(s, x); else json_decref(x); break; }
            case 3: { json_t *o = json_object_get(target, "data_offsets"); if (json_is_array(o) && json_array_size(o)) json_array_set_new(o, rnd() % json_array_size(o), x); else json_decref(x); break; }
            case 4: json_object_del(target, rnd() % 2 ? "shape" : "data_offsets"); json_decref(x); break;
            default: json_object_set_new(target, rnd() % 2 ? "shape" : "data_offsets", x); break;
            }
        }
        char *text = json_dumps(h, JSON_COMPACT);
        json_decref(h);
        size_t tl = strlen(text), n = 8 + tl + dlen;
        uint8_t *b = malloc(n);
        uint64_t l = tl;
        memcpy(b, &l, 8);
        memcpy(b + 8, text, tl);
        memcpy(b + 8 + tl, data, dlen);
        free(text);
        safetensors_t *st = safetensors_open_buffer(b, n, "mutant.safetensors", err, sizeof err);
        if (st) {
            accepted++;
            safetensors_destroy(&st);
            rejected(b, n, NULL);
        } else {
            TU_CHECK(strstr(err, "mutant.safetensors"), "message does not name the file: %s", err);
        }
        free(b);
    }
    json_decref(orig);
    fprintf(stderr, "JSON mutations: %d mutants, %d still valid files\n", iters, accepted);
}

static void write_text(const char *path, const char *text) { stw_write_bytes(path, text, strlen(text)); }

static void test_sharded(void) {
    char dir[] = "/tmp/tokshift_shards_XXXXXX", path[512];
    TU_REQUIRE(mkdtemp(dir), "mkdtemp");
    float v[6] = {1, 2, 3, 4, 5, 6};
    stw_t a = {0}, b = {0};
    stw_add2(&a, "x.weight", "F32", 2, 3, v);
    stw_add1(&a, "y.weight", "BF16", 6, v);
    stw_add1(&b, "z.weight", "F16", 4, v);
    snprintf(path, sizeof path, "%s/model-00001-of-00002.safetensors", dir);
    stw_write(&a, path);
    snprintf(path, sizeof path, "%s/model-00002-of-00002.safetensors", dir);
    stw_write(&b, path);
    snprintf(path, sizeof path, "%s/model.safetensors.index.json", dir);
    const char *good = "{\"metadata\": {\"total_size\": 44}, \"weight_map\": {"
                       "\"x.weight\": \"model-00001-of-00002.safetensors\","
                       "\"y.weight\": \"model-00001-of-00002.safetensors\","
                       "\"z.weight\": \"model-00002-of-00002.safetensors\"}}";
    write_text(path, good);
    safetensors_set_t *set = safetensors_set_open(dir, err, sizeof err);
    TU_REQUIRE(set, "sharded: %s", err);
    TU_CHECK(safetensors_set_n_files(set) == 2 && safetensors_set_n_tensors(set) == 3, "counts");
    const safetensors_tensor_t *t = safetensors_set_find(set, "z.weight");
    float out[6];
    TU_CHECK(t && safetensors_to_f32(t, out, err, sizeof err) == 0 && out[3] == 4.0f && strstr(t->file, "00002"),
             "z.weight from shard 2");
    TU_CHECK(safetensors_set_find(set, "x.weight") && safetensors_set_find(set, "y.weight") &&
                 !safetensors_set_find(set, "w.weight"),
             "find");
    TU_CHECK(!strcmp(safetensors_set_tensor_at(set, 0)->name, "x.weight") && !safetensors_set_tensor_at(set, 3),
             "tensor_at");
    safetensors_set_destroy(&set);

    static const struct {
        const char *index, *want;
    } bad[] = {
        {"{\"weight_map\": {\"x.weight\": \"model-00001-of-00002.safetensors\","
         "\"z.weight\": \"model-00002-of-00002.safetensors\"}}", "not in weight_map"},
        {"{\"weight_map\": {\"x.weight\": \"model-00001-of-00002.safetensors\","
         "\"y.weight\": \"model-00002-of-00002.safetensors\","
         "\"z.weight\": \"model-00002-of-00002.safetensors\"}}", "does not hold it"},
        {"{\"weight_map\": {\"x.weight\": \"model-00001-of-00002.safetensors\","
         "\"y.weight\": \"model-00001-of-00002.safetensors\","
         "\"z.weight\": \"model-00003-of-00002.safetensors\"}}", "cannot open"},
        {"{\"weight_map\": {\"x.weight\": \"../model-00001-of-00002.safetensors\"}}", "expected the file name"},
        {"{\"weight_map\": {\"x.weight\": \"..\"}}", "expected the file name"},
        {"{\"weight_map\": {\"x.weight\": 3}}", "expected the file name"},
        {"{\"weight_map\": {}}", "non-empty"},
        {"{\"weight_map\": []}", "non-empty"},
        {"[]", "non-empty"},
        {"{\"weight_map\": {\"x.weight\": \"a\", \"x.weight\": \"b\"}}", "not valid JSON"},
        {"{\"weight_map\": ", "not valid JSON"},
        {"{\"metadata\": 5, \"weight_map\": {\"x.weight\": \"a\"}}", "\"metadata\" is an integer"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        write_text(path, bad[i].index);
        set = safetensors_set_open(dir, err, sizeof err);
        TU_CHECK(!set && strstr(err, bad[i].want) && strstr(err, dir), "index %s: got '%s', want '%s'", bad[i].index,
                 set ? "(opened)" : err, bad[i].want);
        safetensors_set_destroy(&set);
    }
    /* A shard that is itself corrupt is named. */
    write_text(path, good);
    char shard[512];
    snprintf(shard, sizeof shard, "%s/model-00002-of-00002.safetensors", dir);
    stw_write_bytes(shard, "\x05\0\0\0\0\0\0\0{\"a\":", 13);
    set = safetensors_set_open(dir, err, sizeof err);
    TU_CHECK(!set && strstr(err, "model-00002-of-00002.safetensors") && strstr(err, "not valid JSON"),
             "corrupt shard: %s", err);
    unlink(shard);
    unlink(path);
    /* model.safetensors wins over an index; neither is an error. */
    set = safetensors_set_open(dir, err, sizeof err);
    TU_CHECK(!set && strstr(err, "neither model.safetensors"), "empty directory: %s", err);
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    stw_write(&b, path);
    set = safetensors_set_open(dir, err, sizeof err);
    TU_CHECK(set && safetensors_set_n_files(set) == 1 && safetensors_set_find(set, "z.weight"), "single file: %s",
             err);
    safetensors_set_destroy(&set);
    unlink(path);
    snprintf(path, sizeof path, "%s/model-00001-of-00002.safetensors", dir);
    unlink(path);
    rmdir(dir);
    stw_free(&a);
    stw_free(&b);
}

int main(void) {
    const char *env = getenv("TOKSHIFT_TEST_SEED");
    uint64_t seed = env ? strtoull(env, NULL, 10) : (uint64_t)time(NULL) ^ ((uint64_t)getpid() << 20);
    fprintf(stderr, "seed %llu (set TOKSHIFT_TEST_SEED to replay)\n", (unsigned long long)seed);
    rng_state = seed;

    test_half();
    size_t len;
    uint8_t *buf = valid_file(&len);
    test_valid(buf, len);
    test_specific(buf, len);
    fuzz_bytes(buf, len, 4000);
    fuzz_json(buf, len, 3000);
    test_sharded();
    free(buf);
    return tu_finish("test_safetensors");
}
