/* test_gguf.c - the GGUF reader against the real stories260K file and
 * against corrupted copies of it: each corruption gives an error naming the
 * field and value, never a crash or an out-of-bounds read (the suite also
 * runs under ASan + UBSan). */
#include <stdint.h>
#include <unistd.h>

#include "gguf.h"
#include "log.h"
#include "loader.h"
#include "model.h"
#include "testutil.h"

static char err[LOG_ERRLEN];

/* Opens a mutated copy; returns 1 when it was rejected with a message that
 * contains want (when want is non-NULL). */
static int rejected(const uint8_t *buf, size_t len, const char *want) {
    gguf_t *g = gguf_open_buffer(buf, len, "mutant.gguf", err, sizeof err);
    if (g) {
        gguf_destroy(&g);
        return 0;
    }
    if (want && !strstr(err, want)) {
        fprintf(stderr, "message '%s' lacks '%s'\n", err, want);
        return 0;
    }
    return strstr(err, "mutant.gguf") != NULL;
}

static size_t off_of(const uint8_t *base, const void *p) { return (size_t)((const uint8_t *)p - base); }

static void put_u64(uint8_t *p, uint64_t v) { memcpy(p, &v, 8); }
static void put_u32(uint8_t *p, uint32_t v) { memcpy(p, &v, 4); }

int main(void) {
    const char *path = tu_testdata("models/stories260K.gguf");
    size_t len;
    uint8_t *orig = (uint8_t *)tu_read_file(path, &len);
    uint8_t *buf = malloc(len);

    /* The real file: version, keys, tensors. */
    gguf_t *g = gguf_open(path, err, sizeof err);
    TU_REQUIRE(g, "open: %s", err);
    TU_CHECK(gguf_version(g) == 3, "version %u", gguf_version(g));
    const char *arch = NULL;
    TU_CHECK(gguf_get_str(g, "general.architecture", &arch, err, sizeof err) == 0 && !strcmp(arch, "llama"),
             "architecture");
    uint64_t v = 0;
    TU_CHECK(gguf_get_u64(g, "llama.block_count", &v, err, sizeof err) == 0 && v == 5, "block_count %lu",
             (unsigned long)v);
    TU_CHECK(gguf_get_u64(g, "no.such.key", &v, err, sizeof err) == 1, "absent key");
    TU_CHECK(gguf_get_f64(g, "llama.block_count", (double *)&v, err, sizeof err) == -1 &&
                 strstr(err, "llama.block_count"),
             "wrong type is an error naming the key: %s", err);
    const gguf_tensor_t *emb = gguf_tensor(g, "token_embd.weight");
    TU_REQUIRE(emb && emb->ne[0] == 64 && emb->ne[1] == 512 && emb->type == GGML_TYPE_F32, "token_embd");
    TU_CHECK(gguf_n_tensors(g) == 3 + 5 * 9, "tensor count %lu", (unsigned long)gguf_n_tensors(g));
    gguf_destroy(&g);
    gguf_destroy(&g); /* NULL-safe */

    g = gguf_open_buffer(orig, len, "mutant.gguf", err, sizeof err);
    TU_REQUIRE(g, "open buffer: %s", err);
    const gguf_tensor_t *t0 = gguf_tensor_at(g, 0), *t1 = gguf_tensor_at(g, 1);
    size_t t0_off_field = off_of(orig, t0->name.ptr) + t0->name.len + 4 + 8 * t0->n_dims + 4;
    size_t t1_off_field = off_of(orig, t1->name.ptr) + t1->name.len + 4 + 8 * t1->n_dims + 4;
    size_t t0_dim_field = off_of(orig, t0->name.ptr) + t0->name.len + 4;
    const gguf_kv_t *bc = gguf_find(g, "llama.block_count");
    size_t bc_type_field = off_of(orig, bc->key.ptr) + bc->key.len;
    uint64_t t0_offset = t0->offset;
    gguf_destroy(&g);

#define MUTATE(stmt, want, what)                                   \
    do {                                                           \
        memcpy(buf, orig, len);                                    \
        stmt;                                                      \
        TU_CHECK(rejected(buf, len, want), "%s: %s", what, err);   \
    } while (0)

    MUTATE(buf[0] = 'X', "bad magic", "magic");
    MUTATE(put_u32(buf + 4, 99), "version 99", "version");
    MUTATE(put_u64(buf + 8, UINT64_MAX), "n_tensors", "n_tensors");
    MUTATE(put_u64(buf + 16, 1ULL << 40), "n_kv", "n_kv");
    MUTATE(put_u64(buf + t0_off_field, 1ULL << 40), "run past the end", "tensor offset past end");
    MUTATE(put_u64(buf + t1_off_field, t0_offset), "overlap", "overlapping tensors");
    MUTATE(put_u64(buf + t0_off_field, t0_offset + 4), "alignment", "misaligned offset");
    MUTATE(put_u64(buf + t0_dim_field, 0), "dimension 0", "zero dimension");
    MUTATE(put_u64(buf + t0_dim_field, 1ULL << 50), "out of range", "huge dimension");
    MUTATE(put_u32(buf + bc_type_field, 77), "invalid value type 77", "kv type");

    /* Truncation anywhere gives an error (header) or, for the data, names a
     * tensor that runs past the end. */
    for (size_t cut = 0; cut < len; cut += cut < 4096 ? 7 : 4093) {
        gguf_t *tg = gguf_open_buffer(orig, cut, "mutant.gguf", err, sizeof err);
        TU_CHECK(!tg, "truncated at %zu was accepted", cut);
        gguf_destroy(&tg);
    }

    /* A wrong type for a key the model needs: block_count stored as float32. */
    memcpy(buf, orig, len);
    put_u32(buf + bc_type_field, GGUF_TYPE_FLOAT32);
    char tmp[] = "/tmp/tokshift-test-gguf-XXXXXX";
    int fd = mkstemp(tmp);
    TU_REQUIRE(fd >= 0 && write(fd, buf, len) == (ssize_t)len, "temp file");
    close(fd);
    model_t *m = loader_load(tmp, err, sizeof err);
    TU_CHECK(!m && strstr(err, "llama.block_count") && strstr(err, "float32") && strstr(err, tmp),
             "loader_load of a float block_count: %s", err);
    model_destroy(&m);
    /* A file truncated in its tensor data: loader_load names the tensor. */
    TU_REQUIRE(truncate(tmp, (off_t)(len - 1000)) == 0, "truncate");
    m = loader_load(tmp, err, sizeof err);
    TU_CHECK(!m && strstr(err, "past the end"), "truncated model: %s", err);
    unlink(tmp);

    /* Random corruption of the header region: never a crash; whatever opens
     * still has every tensor inside the buffer. */
    uint64_t rng = 0x9e3779b97f4a7c15ULL;
    size_t header_end = t1_off_field + 64;
    int opened = 0;
    for (int it = 0; it < 3000; it++) {
        memcpy(buf, orig, len);
        int flips = 1 + (int)(rng % 4);
        for (int f = 0; f < flips; f++) {
            rng = rng * 6364136223846793005ULL + 1442695040888963407ULL;
            size_t at = (size_t)(rng >> 33) % header_end;
            buf[at] = (uint8_t)(rng >> 17);
        }
        gguf_t *fg = gguf_open_buffer(buf, len, "mutant.gguf", err, sizeof err);
        if (fg) {
            opened++;
            for (uint64_t i = 0; i < gguf_n_tensors(fg); i++) {
                const gguf_tensor_t *t = gguf_tensor_at(fg, i);
                TU_CHECK((const uint8_t *)t->data >= buf && (const uint8_t *)t->data + t->nbytes <= buf + len,
                         "tensor outside the buffer after fuzz iteration %d", it);
            }
        }
        gguf_destroy(&fg);
    }
    fprintf(stderr, "fuzz: %d of 3000 mutants still parsed\n", opened);
    free(buf);
    free(orig);
    return tu_finish("test_gguf");
}
