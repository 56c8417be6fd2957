/* test_quant.c - quantized GGUF against llama.cpp.
 *
 * 1. Conformance: every tensor of every file in $TOKSHIFT_TESTDATA/quant
 *    (one model quantized by llama.cpp's llama-quantize to each type)
 *    dequantizes to the SHA-256 of llama.cpp's own dequantization
 *    (model.TYPE.dequant.tsv: fp32 little-endian, ggml element order), bit
 *    for bit, with the AVX2 dequantizers where the CPU has AVX2, and the
 *    plain loops give the same bits.
 * 2. Refusals: a quantized tensor whose row is not whole blocks, whose data
 *    run past the file or whose offset is out of the file, and a type this
 *    engine does not compute with (IQ2_XXS, by name) are refused with a
 *    message naming the tensor.
 * 3. Forward: each quantized model (kept quantized, dequantized a panel at a
 *    time) computes what an F32 model holding its dequantized weights
 *    computes: bit-identical on the reference path, and within the bound of
 *    fp32 summation order on the BLAS path (see check_forward). */
#include <math.h>
#include <stdint.h>

#include "digest.h"
#include "forward.h"
#include "gguf.h"
#include "gguf_writer.h"
#include "log.h"
#include "loader.h"
#include "model.h"
#include "quant.h"
#include "testutil.h"

static char err[LOG_ERRLEN];

static const char *const k_files[] = {"Q4_0", "Q4_1",   "Q5_0",   "Q5_1", "Q8_0",   "Q2_K",
                                      "Q3_K_M", "Q4_K_M", "Q5_K_M", "Q6_K", "IQ4_NL", "IQ4_XS"};
#define N_FILES (sizeof k_files / sizeof *k_files)

/* Per ggml type: tensors checked, tensors whose hash matched, and tensors
 * whose plain dequantization was also compared with the AVX2 one. */
static int g_checked[64], g_matched[64], g_plain[64];

static void sha256_hex(const float *x, uint64_t n, char hex[65]) {
    digest_sha256_t c;
    uint8_t out[32];
    digest_sha256_init(&c);
    digest_sha256_update(&c, x, n * sizeof *x); /* the host is little-endian, as the hashes */
    digest_sha256_final(&c, out);
    digest_hex(out, hex);
}

/* One line of a dequant.tsv: tensor, type, shape, sha256. */
typedef struct {
    char name[128], type[16], shape[64], sha[65];
} tsv_row_t;

/* Reads the rows of quant/model.<file>.dequant.tsv; returns their count
 * (rows malloc'd into *out). */
static int read_tsv(const char *file, tsv_row_t **out) {
    char rel[128];
    snprintf(rel, sizeof rel, "quant/model.%s.dequant.tsv", file);
    char *text = tu_read_file(tu_testdata(rel), NULL);
    int n = 0, cap = 0;
    tsv_row_t *rows = NULL;
    char *save = NULL;
    for (char *line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        if (!strncmp(line, "tensor\t", 7)) continue; /* header */
        if (n == cap) {
            cap = cap ? 2 * cap : 32;
            rows = realloc(rows, (size_t)cap * sizeof *rows);
            TU_REQUIRE(rows, "out of memory");
        }
        tsv_row_t *r = &rows[n];
        TU_REQUIRE(sscanf(line, "%127[^\t]\t%15[^\t]\t%63[^\t]\t%64[0-9a-f]", r->name, r->type, r->shape, r->sha) == 4,
                   "%s: bad line '%s'", rel, line);
        n++;
    }
    free(text);
    *out = rows;
    return n;
}

static void shape_str(const gguf_tensor_t *t, char *buf, size_t len) {
    size_t at = 0;
    for (uint32_t d = 0; d < t->n_dims; d++)
        at += (size_t)snprintf(buf + at, len - at, d ? "x%llu" : "%llu", (unsigned long long)t->ne[d]);
}

/* Checks every tensor of one file against its tsv; returns the file's F32
 * twin (a GGUF image holding the verified dequantization and every key of
 * the original) in *img / *img_len for the forward comparison. */
static void check_file(const char *file, void **img, size_t *img_len) {
    char rel[128];
    snprintf(rel, sizeof rel, "quant/model.%s.gguf", file);
    gguf_t *g = gguf_open(tu_testdata(rel), err, sizeof err);
    TU_REQUIRE(g, "%s", err);
    tsv_row_t *rows;
    int n = read_tsv(file, &rows);
    TU_CHECK((uint64_t)n == gguf_n_tensors(g), "%s: %d hashes for %llu tensors", file, n,
             (unsigned long long)gguf_n_tensors(g));
    gguf_writer_t *w = gguf_writer_new(err, sizeof err);
    TU_REQUIRE(w, "%s", err);
    for (uint64_t i = 0; i < gguf_n_kv(g); i++)
        TU_REQUIRE(gguf_writer_copy_kv(w, gguf_kv_at(g, i), err, sizeof err) == 0, "%s: %s", file, err);
    for (int i = 0; i < n; i++) {
        const gguf_tensor_t *t = gguf_tensor(g, rows[i].name);
        TU_REQUIRE(t, "%s: tensor %s is missing", file, rows[i].name);
        char shape[64], hex[65];
        shape_str(t, shape, sizeof shape);
        TU_CHECK(!strcmp(quant_type_name(t->type), rows[i].type) && !strcmp(shape, rows[i].shape),
                 "%s: %s is %s %s, the reference says %s %s", file, rows[i].name, quant_type_name(t->type), shape,
                 rows[i].type, rows[i].shape);
        uint64_t ne = gguf_tensor_nelem(t);
        float *x = malloc(ne * sizeof *x);
        TU_REQUIRE(x, "out of memory");
        gguf_tensor_to_f32(t, x);
        sha256_hex(x, ne, hex);
        int ok = !strcmp(hex, rows[i].sha);
        TU_CHECK(ok, "%s: %s (%s): sha256 %s, llama.cpp's is %s (first values %.9g %.9g %.9g %.9g)", file,
                 rows[i].name, rows[i].type, hex, rows[i].sha, (double)x[0], (double)x[1], (double)x[2],
                 (double)x[3]);
        if (t->type < 64) g_checked[t->type]++, g_matched[t->type] += ok;
        if (quant_vector()) { /* the plain loops too, where AVX2 ran above */
            float *p = malloc(ne * sizeof *p);
            TU_REQUIRE(p && quant_set_vector(0) == 0, "plain dequantization");
            gguf_tensor_to_f32(t, p);
            TU_REQUIRE(quant_set_vector(1) == 0, "AVX2 dequantization back on");
            TU_CHECK(!memcmp(p, x, ne * sizeof *p), "%s: %s (%s): the plain and AVX2 dequantizations differ", file,
                     rows[i].name, rows[i].type);
            g_plain[t->type < 64 ? t->type : 0]++;
            free(p);
        }
        TU_REQUIRE(gguf_writer_add_tensor(w, rows[i].name, GGML_TYPE_F32, t->n_dims, t->ne, x, err, sizeof err) == 0,
                   "%s", err);
        free(x);
    }
    TU_REQUIRE(gguf_writer_to_buffer(w, img, img_len, err, sizeof err) == 0, "%s", err);
    gguf_writer_destroy(&w);
    free(rows);
    gguf_destroy(&g);
}

/* ---- refusals ---- */

/* Opens a mutated image; returns 1 when it is refused with a message that
 * names the tensor and contains want. */
static int refused(const uint8_t *buf, size_t len, const char *tensor, const char *want) {
    gguf_t *g = gguf_open_buffer(buf, len, "mutant.gguf", err, sizeof err);
    if (g) {
        gguf_destroy(&g);
        fprintf(stderr, "mutant accepted (wanted '%s')\n", want);
        return 0;
    }
    if (!strstr(err, want) || !strstr(err, tensor) || !strstr(err, "mutant.gguf")) {
        fprintf(stderr, "message '%s' lacks '%s' or '%s'\n", err, want, tensor);
        return 0;
    }
    return 1;
}

static void check_refusals(void) {
    size_t len;
    uint8_t *orig = (uint8_t *)tu_read_file(tu_testdata("quant/model.Q4_K_M.gguf"), &len);
    uint8_t *buf = malloc(len);
    TU_REQUIRE(buf, "out of memory");
    gguf_t *g = gguf_open_buffer(orig, len, "orig", err, sizeof err);
    TU_REQUIRE(g, "%s", err);
    const char *name = "blk.0.attn_q.weight";
    const gguf_tensor_t *t = gguf_tensor(g, name);
    TU_REQUIRE(t && t->type == GGML_TYPE_Q4_K && t->n_dims == 2, "%s", name);
    /* The tensor info after its name: u32 n_dims, u64 ne[n_dims], u32 type,
     * u64 offset. */
    size_t at = (size_t)((const uint8_t *)t->name.ptr - orig) + t->name.len;
    size_t ne0_at = at + 4, type_at = at + 4 + 8 * t->n_dims, off_at = type_at + 4;
    uint64_t ne0 = t->ne[0], ne1 = t->ne[1];
    gguf_destroy(&g);

    /* A row that is not whole blocks (keeping the element count, so only
     * the block check can catch it). */
    memcpy(buf, orig, len);
    uint64_t v = ne0 / 2;
    memcpy(buf + ne0_at, &v, 8);
    v = ne1 * 2;
    memcpy(buf + ne0_at + 8, &v, 8);
    TU_CHECK(refused(buf, len, name, "row length 128 is not a multiple of the Q4_K block of 256"), "partial block");
    /* An offset past the end of the file. */
    memcpy(buf, orig, len);
    v = (uint64_t)len * 4;
    v -= v % 32;
    memcpy(buf + off_at, &v, 8);
    TU_CHECK(refused(buf, len, name, "run past the end of the file"), "offset out of the file");
    /* A truncated file: the last tensor's data run past its end. */
    TU_CHECK(refused(orig, len - 100, "", "run past the end of the file"), "truncated");
    /* A type the engine does not compute with, by name; and an id ggml
     * never defined. */
    memcpy(buf, orig, len);
    uint32_t ty = GGML_TYPE_IQ2_XXS;
    memcpy(buf + type_at, &ty, 4);
    TU_CHECK(refused(buf, len, name, "type IQ2_XXS is not supported (supported: F32, F16, BF16, Q4_0"), "IQ2_XXS");
    ty = 99;
    memcpy(buf + type_at, &ty, 4);
    TU_CHECK(refused(buf, len, name, "unknown type 99"), "type 99");
    TU_CHECK(!strcmp(quant_type_name(GGML_TYPE_IQ2_XXS), "IQ2_XXS") && !strcmp(quant_type_name(4), "unknown type 4"),
             "names");

    /* The writer stores raw blocks as they are, and refuses what the
     * reader would. */
    g = gguf_open_buffer(orig, len, "orig", err, sizeof err);
    TU_REQUIRE(g, "%s", err);
    t = gguf_tensor(g, name);
    gguf_writer_t *w = gguf_writer_new(err, sizeof err);
    TU_REQUIRE(w, "%s", err);
    TU_CHECK(gguf_writer_add_tensor_raw(w, name, GGML_TYPE_Q4_K, 2, t->ne, t->data, err, sizeof err) == 0, "%s", err);
    uint64_t bad[2] = {100, 2};
    TU_CHECK(gguf_writer_add_tensor_raw(w, "x", GGML_TYPE_Q4_K, 2, bad, t->data, err, sizeof err) == -1 &&
                 strstr(err, "multiple of 256"), "%s", err);
    TU_CHECK(gguf_writer_add_tensor_raw(w, "x", GGML_TYPE_IQ2_XXS, 2, t->ne, t->data, err, sizeof err) == -1 &&
                 strstr(err, "IQ2_XXS"), "%s", err);
    void *img;
    size_t img_len;
    TU_REQUIRE(gguf_writer_to_buffer(w, &img, &img_len, err, sizeof err) == 0, "%s", err);
    gguf_t *back = gguf_open_buffer(img, img_len, "raw", err, sizeof err);
    TU_REQUIRE(back, "%s", err);
    const gguf_tensor_t *tb = gguf_tensor(back, name);
    TU_CHECK(tb && tb->type == GGML_TYPE_Q4_K && tb->nbytes == t->nbytes && !memcmp(tb->data, t->data, t->nbytes),
             "raw Q4_K round trip");
    gguf_destroy(&back);
    free(img);
    gguf_writer_destroy(&w);
    gguf_destroy(&g);
    free(buf);
    free(orig);
}

/* ---- the forward pass on quantized weights ---- */

static const char *g_text = "Once upon a time, there was a little dog named Max. Max liked to run in the big green "
                            "park with his friend, a small cat called Lily.";

static double max_abs_diff(const float *a, const float *b, size_t n) {
    double w = 0;
    for (size_t i = 0; i < n; i++) w = fmax(w, fabs((double)a[i] - b[i]));
    return w;
}

/* Logits of every row of ids[0..n) (malloc'd [n][V]): one prefill, or with
 * decode one row at a time (matrix-vector products). */
static float *logits_of(const model_t *m, const int32_t *ids, int n, int ref, int decode) {
    forward_t *f = forward_new(m, n, n, 1, err, sizeof err);
    TU_REQUIRE(f, "%s", err);
    forward_set_reference(f, ref);
    forward_set_panel_rows(f, 100); /* every matrix (128..768 rows) in panels, the last one partial */
    size_t V = (size_t)m->cfg.n_vocab;
    float *out = malloc((size_t)n * V * sizeof *out);
    TU_REQUIRE(out, "out of memory");
    if (decode) {
        for (int t = 0; t < n; t++) {
            TU_REQUIRE(forward_batch(f, &ids[t], NULL, &t, 1, 1, err, sizeof err) == 0, "%s", err);
            memcpy(out + (size_t)t * V, forward_logits(f), V * sizeof *out);
        }
    } else {
        TU_REQUIRE(forward_prefill(f, 0, ids, n, 0, err, sizeof err) == 0, "%s", err);
        memcpy(out, forward_logits(f), (size_t)n * V * sizeof *out);
    }
    forward_destroy(&f);
    return out;
}

/* The quantized model against its F32 twin (img: the verified
 * dequantization, see check_file).  Reference path: each logit is a double
 * sum over the same fp32 weights in the same order whether the weights are
 * dequantized a panel at a time or stored fp32, so the logits must be
 * bit-identical.  BLAS path: sgemm over a panel of rows and over the whole
 * matrix may sum each dot product in a different fp32 order; two orders of a
 * length-K dot product differ by at most 2 K u sum|x_i w_i| (u = 2^-24).
 * For the logits, K = d and x is RMS-normalized with unit gains (this
 * model's output_norm is all ones), so sum|x_i| <= d and the bound is
 * 2 d u * d max|w_out| (about 7e-4 here; observed differences are ~1e-6,
 * the earlier layers' reorderings reaching the logits shrunk by the norms
 * and well inside it). */
static void check_forward(const char *file, void *img, size_t img_len) {
    char rel[128];
    snprintf(rel, sizeof rel, "quant/model.%s.gguf", file);
    model_t *mq = loader_load(tu_testdata(rel), err, sizeof err);
    TU_REQUIRE(mq, "%s", err);
    gguf_t *g = gguf_open_buffer(img, img_len, "f32-twin", err, sizeof err);
    TU_REQUIRE(g, "%s", err);
    model_t *mf = model_from_gguf(g, img, NULL, err, sizeof err);
    TU_REQUIRE(mf, "%s", err);
    int32_t *ids = NULL;
    long n = tokenizer_encode(mq->tok, g_text, strlen(g_text), 1, &ids, err, sizeof err);
    TU_REQUIRE(n > 20, "encode gave %ld tokens", n);
    size_t nl = (size_t)n * mq->cfg.n_vocab;
    /* The slow paths (plain loops; one row at a time) on the first tokens:
     * enough for every matrix and panel, quick under the sanitizers. */
    int ns = n < 16 ? (int)n : 16;
    size_t nsl = (size_t)ns * mq->cfg.n_vocab;
    float *qr = logits_of(mq, ids, ns, 1, 0), *fr = logits_of(mf, ids, ns, 1, 0);
    TU_CHECK(!memcmp(qr, fr, nsl * sizeof *qr), "%s: reference path: quantized and F32 logits differ by %g", file,
             max_abs_diff(qr, fr, nsl));
    float *qb = logits_of(mq, ids, (int)n, 0, 0), *fb = logits_of(mf, ids, (int)n, 0, 0);
    float *qd = logits_of(mq, ids, ns, 0, 1), *fd = logits_of(mf, ids, ns, 0, 1);
    double d_qf = max_abs_diff(qb, fb, nl), d_qr = max_abs_diff(qb, fr, nsl), d_fr = max_abs_diff(fb, fr, nsl);
    const quant_mat_t *wo = &mf->output;
    const float *w = quant_mat_f32(wo);
    TU_REQUIRE(w, "the F32 twin's output matrix is not fp32 in place");
    double wmax = 0, dm = mf->cfg.n_embd;
    for (int64_t i = 0; i < wo->rows * wo->cols; i++) wmax = fmax(wmax, fabs(w[i]));
    for (int i = 0; i < mf->cfg.n_embd; i++) TU_REQUIRE(mf->output_norm[i] == 1.0f, "output_norm is not all ones");
    double tol = 2 * dm * 0x1p-24 * dm * wmax;
    double d_dec = max_abs_diff(qd, fd, nsl);
    fprintf(stderr, "%-7s %ld tokens: reference path identical; BLAS quantized vs F32 max |dlogit| prefill %.3g, "
                    "decode %.3g (bound %.3g; each vs the reference: %.3g, %.3g)\n",
            file, n, d_qf, d_dec, tol, d_qr, d_fr);
    TU_CHECK(d_qf <= tol, "%s: BLAS path: quantized and F32 logits differ by %g > %g", file, d_qf, tol);
    TU_CHECK(d_dec <= tol, "%s: BLAS decode: quantized and F32 logits differ by %g > %g", file, d_dec, tol);
    free(qr), free(fr), free(qb), free(fb), free(qd), free(fd), free(ids);
    model_destroy(&mq);
    model_destroy(&mf);
}

int main(void) {
    tu_testdata("quant"); /* skip now when unset */
    check_refusals();
    for (size_t f = 0; f < N_FILES; f++) {
        void *img = NULL;
        size_t img_len = 0;
        check_file(k_files[f], &img, &img_len);
        check_forward(k_files[f], img, img_len); /* takes img */
    }
    for (uint32_t t = 0; t < 64; t++)
        if (g_checked[t])
            fprintf(stderr, "%-7s %3d/%3d tensors match llama.cpp's sha256 (%d also with the plain loops)\n",
                    quant_type_name(t), g_matched[t], g_checked[t], g_plain[t]);
    return tu_finish("test_quant");
}
