/* bench_quant.c - quantized weights: dequantization throughput per type,
 * and scoring a quantized model against the same model in F32, in the same
 * run, with resident memory against the file sizes.
 *
 *   bench_quant [SRC [d [layers [window]]]]    (defaults Q4_K_M 768 4 256)
 *
 * Reads $TOKSHIFT_TESTDATA/quant (default ../shared/testdata/quant).  The
 * dequantization figures run every tensor of each type found there.  The
 * model is a llama of width d (head size 64, FFN 8d/3 rounded to 256, a
 * 32000-row embedding tied to nothing: output is separate) whose matrices
 * are real blocks from model.SRC.gguf (each role takes the type the
 * llama.cpp mix gave it there, its blocks repeated to the size), written to
 * a temporary GGUF; its F32 twin holds exactly their dequantization.  Both
 * are loaded as a user loads them (mmap) and run the same prefill of one
 * window and the same 16 decode steps of 8 sequences, alternately, best of
 * 4.  Prints figures and the ratio quantized / F32 (tokens/s); resident
 * memory is the growth of VmRSS while a model is loaded and first run. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "forward.h"
#include "gguf.h"
#include "gguf_writer.h"
#include "log.h"
#include "loader.h"
#include "model.h"
#include "now.h"
#include "quant.h"

/* Wall time, and CPU time (all threads): on a machine shared with other
 * work the CPU time is the steadier figure, so the ratios use it. */
static double now(void) { return now_clock_s(CLOCK_MONOTONIC); }
static double cpu(void) { return now_clock_s(CLOCK_PROCESS_CPUTIME_ID); }

/* Resident set size of this process in bytes (VmRSS). */
static double rss_bytes(void) {
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    double kb = 0;
    while (f && fgets(line, sizeof line, f))
        if (!strncmp(line, "VmRSS:", 6)) kb = atof(line + 6);
    if (f) fclose(f);
    return kb * 1024;
}

static const char *g_files[] = {"Q4_0", "Q4_1",   "Q5_0",   "Q5_1", "Q8_0",   "Q2_K",
                                "Q3_K_M", "Q4_K_M", "Q5_K_M", "Q6_K", "IQ4_NL", "IQ4_XS"};
#define N_FILES (sizeof g_files / sizeof *g_files)

static char g_dir[4096];

static gguf_t *open_src(const char *file) {
    char path[4200], err[LOG_ERRLEN];
    snprintf(path, sizeof path, "%s/model.%s.gguf", g_dir, file);
    gguf_t *g = gguf_open(path, err, sizeof err);
    if (!g) log_die("", "%s", err);
    return g;
}

/* Dequantizes every tensor of each type (first file holding it) for about
 * 0.1 s; prints fp32 output and quantized input throughput. */
static void bench_dequant(void) {
    int done[64] = {0};
    float *out = NULL;
    size_t cap = 0;
    printf("dequantization, one thread (the scalar reference code, per CPU second):\n");
    printf("  %-7s %9s %9s\n", "type", "GB/s f32", "GB/s in");
    for (size_t fi = 0; fi < N_FILES; fi++) {
        gguf_t *g = open_src(g_files[fi]);
        for (uint64_t i = 0; i < gguf_n_tensors(g); i++) {
            uint32_t type = gguf_tensor_at(g, i)->type;
            if (type == GGML_TYPE_F32 || type >= 64 || done[type]) continue;
            done[type] = 1;
            double in_bytes = 0, elems = 0, t0 = now_clock_s(CLOCK_THREAD_CPUTIME_ID), dt;
            do {
                for (uint64_t j = 0; j < gguf_n_tensors(g); j++) {
                    const gguf_tensor_t *t = gguf_tensor_at(g, j);
                    if (t->type != type) continue;
                    uint64_t n = gguf_tensor_nelem(t);
                    if (n > cap) {
                        free(out);
                        out = log_xmalloc((size_t)n * sizeof *out);
                        cap = (size_t)n;
                    }
                    gguf_tensor_to_f32(t, out);
                    in_bytes += (double)t->nbytes;
                    elems += (double)n;
                }
            } while ((dt = now_clock_s(CLOCK_THREAD_CPUTIME_ID) - t0) < 0.1);
            printf("  %-7s %9.2f %9.2f\n", quant_type_name(type), elems * 4 / dt / 1e9, in_bytes / dt / 1e9);
        }
        gguf_destroy(&g);
    }
    free(out);
}

/* The model: each role's type and blocks come from src's blk.0 (or the
 * named top-level tensor). */
typedef struct {
    const char *name;   /* in the bench model; "%d" for the layer */
    const char *src;    /* the source tensor in model.SRC.gguf */
    uint64_t ne0, ne1;  /* ne1 == 0: a vector of ones (F32) */
} role_t;

static void add_tensor(gguf_writer_t *wq, gguf_writer_t *wf, const gguf_t *src, const char *name, const char *from,
                       uint64_t ne0, uint64_t ne1) {
    char err[LOG_ERRLEN];
    if (!ne1) {
        float *ones = log_xmalloc(ne0 * sizeof *ones);
        for (uint64_t i = 0; i < ne0; i++) ones[i] = 1;
        if (gguf_writer_add_tensor(wq, name, GGML_TYPE_F32, 1, &ne0, ones, err, sizeof err) ||
            gguf_writer_add_tensor(wf, name, GGML_TYPE_F32, 1, &ne0, ones, err, sizeof err))
            log_die("", "%s", err);
        free(ones);
        return;
    }
    const gguf_tensor_t *t = gguf_tensor(src, from);
    if (!t) log_die("", "source tensor %s is missing", from);
    uint64_t row = quant_row_bytes(t->type, ne0), bytes = row * ne1, ne[2] = {ne0, ne1};
    if (!row) log_die("", "%s: %s rows of %llu", name, quant_type_name(t->type), (unsigned long long)ne0);
    uint8_t *raw = log_xmalloc((size_t)bytes);
    for (uint64_t at = 0; at < bytes; at += t->nbytes) /* whole blocks, repeated */
        memcpy(raw + at, t->data, (size_t)(bytes - at < t->nbytes ? bytes - at : t->nbytes));
    float *x = log_xmalloc((size_t)(ne0 * ne1) * sizeof *x);
    quant_dequant(t->type, raw, x, ne0 * ne1);
    if (gguf_writer_add_tensor_raw(wq, name, t->type, 2, ne, raw, err, sizeof err) ||
        gguf_writer_add_tensor(wf, name, GGML_TYPE_F32, 2, ne, x, err, sizeof err))
        log_die("", "%s", err);
    free(raw);
    free(x);
}

/* Writes the quantized model and its F32 twin to qpath and fpath. */
static void build_models(const char *srcname, int d, int L, const char *qpath, const char *fpath) {
    char err[LOG_ERRLEN];
    gguf_t *src = open_src(srcname);
    gguf_writer_t *wq = gguf_writer_new(err, sizeof err), *wf = gguf_writer_new(err, sizeof err);
    if (!wq || !wf) log_die("", "%s", err);
    int H = d / 64, ff = (8 * d / 3 + 255) / 256 * 256;
    for (uint64_t i = 0; i < gguf_n_kv(src); i++) { /* the vocabulary */
        const gguf_kv_t *kv = gguf_kv_at(src, i);
        if (kv->key.len > 10 && !memcmp(kv->key.ptr, "tokenizer.", 10) &&
            (gguf_writer_copy_kv(wq, kv, err, sizeof err) || gguf_writer_copy_kv(wf, kv, err, sizeof err)))
            log_die("", "%s", err);
    }
    gguf_writer_t *ws[2] = {wq, wf};
    for (int k = 0; k < 2; k++)
        if (gguf_writer_add_str(ws[k], "general.architecture", "llama", SIZE_MAX, err, sizeof err) ||
            gguf_writer_add_u32(ws[k], "llama.embedding_length", (uint32_t)d, err, sizeof err) ||
            gguf_writer_add_u32(ws[k], "llama.block_count", (uint32_t)L, err, sizeof err) ||
            gguf_writer_add_u32(ws[k], "llama.feed_forward_length", (uint32_t)ff, err, sizeof err) ||
            gguf_writer_add_u32(ws[k], "llama.attention.head_count", (uint32_t)H, err, sizeof err) ||
            gguf_writer_add_u32(ws[k], "llama.attention.head_count_kv", (uint32_t)(H / 2), err, sizeof err) ||
            gguf_writer_add_f32(ws[k], "llama.attention.layer_norm_rms_epsilon", 1e-5f, err, sizeof err))
            log_die("", "%s", err);
    uint64_t D = (uint64_t)d, V = 32000, KV = (uint64_t)(H / 2) * 64, FF = (uint64_t)ff;
    add_tensor(wq, wf, src, "token_embd.weight", "token_embd.weight", D, V);
    add_tensor(wq, wf, src, "output_norm.weight", NULL, D, 0);
    add_tensor(wq, wf, src, "output.weight", "output.weight", D, V);
    const role_t roles[] = {
        {"blk.%d.attn_norm.weight", NULL, D, 0},           {"blk.%d.attn_q.weight", "blk.0.attn_q.weight", D, D},
        {"blk.%d.attn_k.weight", "blk.0.attn_k.weight", D, KV}, {"blk.%d.attn_v.weight", "blk.0.attn_v.weight", D, KV},
        {"blk.%d.attn_output.weight", "blk.0.attn_output.weight", D, D},
        {"blk.%d.ffn_norm.weight", NULL, D, 0},            {"blk.%d.ffn_gate.weight", "blk.0.ffn_gate.weight", D, FF},
        {"blk.%d.ffn_up.weight", "blk.0.ffn_up.weight", D, FF}, {"blk.%d.ffn_down.weight", "blk.0.ffn_down.weight", FF, D},
    };
    for (int l = 0; l < L; l++)
        for (size_t r = 0; r < sizeof roles / sizeof *roles; r++) {
            char name[96];
            snprintf(name, sizeof name, roles[r].name, l);
            add_tensor(wq, wf, src, name, roles[r].src, roles[r].ne0, roles[r].ne1);
        }
    if (gguf_writer_write(wq, qpath, err, sizeof err) || gguf_writer_write(wf, fpath, err, sizeof err))
        log_die("", "%s", err);
    gguf_writer_destroy(&wq);
    gguf_writer_destroy(&wf);
    gguf_destroy(&src);
}

typedef struct {
    model_t *m;
    forward_t *f;
    double prefill_s, decode_s;         /* best wall times */
    double prefill_cpu, decode_cpu;     /* best CPU times */
    double rss, file, fwd;
} run_t;

enum { S = 8, STEPS = 16 }; /* decode: 8 sequences, 16 steps */

/* One prefill of W tokens then STEPS decode steps of S sequences
 * continuing it; keeps the best times. */
static void run_once(run_t *r, int W) {
    char err[LOG_ERRLEN];
    int32_t ids[4096];
    for (int i = 0; i < W; i++) ids[i] = 3 + (i * 7919) % 500;
    double t0 = now(), c0 = cpu();
    if (forward_prefill(r->f, 0, ids, W, 0, err, sizeof err)) log_die("", "%s", err);
    double dt = now() - t0, dc = cpu() - c0;
    if (!r->prefill_s || dt < r->prefill_s) r->prefill_s = dt;
    if (!r->prefill_cpu || dc < r->prefill_cpu) r->prefill_cpu = dc;
    for (int s = 1; s < S; s++) forward_copy_slot(r->f, 0, s, W);
    int slots[S], pos[S];
    int32_t tok[S];
    t0 = now(), c0 = cpu();
    for (int k = 0; k < STEPS; k++) {
        for (int s = 0; s < S; s++) slots[s] = s, pos[s] = W + k, tok[s] = 3 + (s * 31 + k) % 500;
        if (forward_batch(r->f, tok, slots, pos, S, 1, err, sizeof err)) log_die("", "%s", err);
    }
    dt = now() - t0, dc = cpu() - c0;
    if (!r->decode_s || dt < r->decode_s) r->decode_s = dt;
    if (!r->decode_cpu || dc < r->decode_cpu) r->decode_cpu = dc;
}

/* Loads path as a user does (mmap), runs once, and records how much the
 * resident set grew. */
static void load_model(run_t *r, const char *path, int W) {
    char err[LOG_ERRLEN];
    double rss0 = rss_bytes();
    if (!(r->m = loader_load(path, err, sizeof err))) log_die("", "%s", err);
    if (!(r->f = forward_new(r->m, W + STEPS, W, S, err, sizeof err))) log_die("", "%s", err);
    run_once(r, W);
    r->rss = rss_bytes() - rss0;
    r->fwd = (double)forward_bytes(r->f);
    FILE *fp = fopen(path, "rb");
    if (fp) {
        fseek(fp, 0, SEEK_END);
        r->file = (double)ftell(fp);
        fclose(fp);
    }
}

int main(int argc, char **argv) {
    const char *src = argc > 1 ? argv[1] : "Q4_K_M";
    int d = argc > 2 ? atoi(argv[2]) : 768, L = argc > 3 ? atoi(argv[3]) : 4, W = argc > 4 ? atoi(argv[4]) : 256;
    if (d < 256 || d % 256 || L < 1 || W < 1 || W > 4096) log_die("", "usage: bench_quant [SRC [d (multiple of 256) [layers [window]]]]");
    const char *td = getenv("TOKSHIFT_TESTDATA");
    snprintf(g_dir, sizeof g_dir, "%s/quant", td && *td ? td : "../shared/testdata");
    bench_dequant();

    char qpath[] = "/tmp/bench_quant_q.XXXXXX", fpath[] = "/tmp/bench_quant_f.XXXXXX";
    int fq = mkstemp(qpath), ff = mkstemp(fpath);
    if (fq < 0 || ff < 0) log_die("", "cannot create temporary files");
    close(fq);
    close(ff);
    build_models(src, d, L, qpath, fpath);
    run_t q = {0}, f = {0};
    load_model(&q, qpath, W);
    load_model(&f, fpath, W);
    unlink(qpath); /* the mappings stay valid */
    unlink(fpath);
    for (int rep = 0; rep < 3; rep++) { /* alternated: a shared machine's load hits both */
        run_once(&q, W);
        run_once(&f, W);
    }
    printf("model: llama d=%d layers=%d vocab=32000, matrices from model.%s.gguf; window %d, decode 8 sequences\n",
           d, L, src, W);
    printf("  %-10s %8s %11s %12s %14s %14s %14s %14s\n", "", "file MB", "resident MB", "fwd+cache MB",
           "prefill tok/s", "tok/CPU-s", "decode tok/s", "tok/CPU-s");
    run_t *rs[2] = {&q, &f};
    const char *names[2] = {src, "F32"};
    for (int k = 0; k < 2; k++)
        printf("  %-10s %8.1f %11.1f %12.1f %14.0f %14.0f %14.0f %14.0f\n", names[k], rs[k]->file / 1e6,
               rs[k]->rss / 1e6, rs[k]->fwd / 1e6, W / rs[k]->prefill_s, W / rs[k]->prefill_cpu,
               S * STEPS / rs[k]->decode_s, S * STEPS / rs[k]->decode_cpu);
    printf("ratio %s / F32 (tokens per CPU second; wall): prefill %.2f (%.2f), decode %.2f (%.2f); "
           "resident %.2f of (file + fwd+cache)\n",
           src, f.prefill_cpu / q.prefill_cpu, f.prefill_s / q.prefill_s, f.decode_cpu / q.decode_cpu,
           f.decode_s / q.decode_s, q.rss / (q.file + q.fwd));
    for (int k = 0; k < 2; k++) {
        forward_destroy(&rs[k]->f);
        model_destroy(&rs[k]->m);
    }
    return 0;
}
