/* forward.c - see forward.h. */
#include "forward.h"

#include <assert.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "kernels.h"
#include "log.h"
#include "smallm.h"

/* OpenBLAS's extensions: the kernel it chose, its threads. */
char *openblas_get_corename(void);
int openblas_get_num_threads(void);

struct forward {
    const model_t *m;
    int n_ctx, max_batch, n_slots, n_leaves, leaf_len, ref;
    int q_dim, kv_dim;
    /* KV cache: full slots [slot][layer][n_ctx][kv_dim], then leaves
     * [leaf][layer][leaf_len][kv_dim].  A leaf attached to a parent slot at
     * base reads positions [0, base) from the parent and keeps positions
     * [base, base + leaf_len) itself. */
    float *k_cache, *v_cache;
    int *leaf_parent, *leaf_base; /* [n_leaves]; parent -1 = not attached */
    /* Activations, carved from one arena. B = max_batch. */
    float *arena;
    size_t arena_floats, cache_floats;
    float *x;      /* [B][d] residual stream */
    float *xb;     /* [B][d] normed input of a block */
    float *xc;     /* [B][d] a block's output before its post-norm */
    float *q;      /* [B][q_dim] */
    float *k;      /* [B][kv_dim] */
    float *v;      /* [B][kv_dim] */
    float *att;    /* [B][q_dim] attention output before wo */
    float *hb;     /* [B][n_ff] */
    float *hb2;    /* [B][n_ff] */
    float *scores; /* [B * group][n_ctx] */
    float *qg, *og; /* [B][q_dim]: one KV head's query rows gathered, their outputs */
    float *logits; /* [B][n_vocab] */
    float *wbuf;   /* [panel_rows][max cols] dequantized weight rows */
    float *xt;     /* smallm_matmul's scratch */
    int stream_prefill; /* a prefill's fp32 products through smallm (forward_set_stream_prefill) */
    int panel_rows; /* rows of a weight matrix dequantized at a time */
    int *row_pos, *row_slot; /* [B] for forward_prefill */
    float *rope_cs; /* [n_ctx][rope_dim]: kern_rope_angles of every position, or NULL */
};

/* Below this many rows a prefill chunk's products stream the weights
 * (smallm) instead of calling cblas_sgemm, which repacks the weight matrix
 * for every call (at any size where forward_stream_prefill_default says).
 * bench_smallm (AVX2, OpenBLAS Zen, GPT-2 shapes): smallm
 * 1.1-1.6x OpenBLAS from 9 to 63 rows, 0.86-0.91x at 128; decode batches
 * (up to 64 rows, experiment.c) use smallm at any size (see
 * forward_batch).  Kept at 16: only a window's short last chunk would
 * move, for little gain. */
#define FORWARD_SMALL_M 16

/* How a batch's products run: through cblas_sgemm, streaming the weights
 * (smallm), or streaming only fp32 weights (a prefill where streaming is
 * the faster, forward_stream_prefill_default: a quantized matrix would be
 * dequantized once per smallm_x_rows chunk of a long prefill, so it keeps
 * the one dequantization per panel of the BLAS path). */
typedef enum { FWD_BLAS, FWD_STREAM, FWD_STREAM_F32 } fwd_path_t;

/* Floats of a stored weight matrix dequantized at a time for a few-row
 * product (smallm): 128 KiB, which stays in L2 between its dequantization
 * and its use by every row of the batch.  The panel's rows are a multiple
 * of 12, smallm's widest tile of W rows (6 at AVX2, 12 at AVX-512), so no
 * panel ends in a narrow tile; at least 12 rows whatever the width. */
#define FORWARD_SMALL_PANEL_FLOATS (32 * 1024)
#define FORWARD_SMALL_PANEL_TILE 12

/* Rows of a stored (non-fp32) weight matrix dequantized per sgemm.  sgemm
 * packs X once per call, so with P rows a call that packing costs about 1/P
 * of the products: 256 rows cost a visible share of a prefill in
 * bench_quant, 1024 little.  The scratch is P times the widest row: 1024 x
 * 14336 fp32 (a Llama 3 8B FFN) is 58 MiB, small beside the 4.9 GB of its
 * Q4_K_M file; the dequantization itself runs at 5-20 GB/s of fp32. */
#define FORWARD_PANEL_ROWS 1024

/* The widest row of any weight matrix that cannot be used in place (fp32
 * stored and aligned), so the panel scratch can hold it; 0 when there is
 * none (an F32 model needs no scratch). */
static int64_t widest_stored_row(const model_t *m) {
    int64_t w = 0;
    for (size_t i = 0; i < model_n_matrices(m); i++) {
        const quant_mat_t *x = model_matrix(m, i);
        if (x && !quant_mat_f32(x) && x->cols > w) w = x->cols;
    }
    return w;
}

forward_t *forward_new(const model_t *m, int n_ctx, int max_batch, int n_slots, char *err, size_t errlen) {
    return forward_new_shared(m, n_ctx, max_batch, n_slots, 0, 0, err, errlen);
}

forward_t *forward_new_shared(const model_t *m, int n_ctx, int max_batch, int n_slots, int n_leaves, int leaf_len,
                              char *err, size_t errlen) {
    const model_config_t *c = &m->cfg;
    forward_t *f = NULL;
    if (n_ctx < 1 || max_batch < 1 || n_slots < 1 || n_leaves < 0 || (n_leaves && (leaf_len < 1 || leaf_len > n_ctx)) ||
        max_batch > n_ctx * n_slots + leaf_len * n_leaves) {
        log_seterr(err, errlen, "forward: invalid sizes (n_ctx %d, max_batch %d, n_slots %d, %d leaves of %d)", n_ctx,
                   max_batch, n_slots, n_leaves, leaf_len);
        return NULL;
    }
    if (!(f = calloc(1, sizeof *f))) goto oom;
    f->m = m;
    f->n_ctx = n_ctx;
    f->max_batch = max_batch;
    f->n_slots = n_slots;
    f->n_leaves = n_leaves;
    f->leaf_len = n_leaves ? leaf_len : 0;
    f->q_dim = c->n_head * c->head_dim;
    f->kv_dim = c->n_head_kv * c->head_dim;
    size_t B = (size_t)max_batch;
    f->panel_rows = FORWARD_PANEL_ROWS;
    f->stream_prefill = forward_stream_prefill_default();
    size_t wbuf = (size_t)f->panel_rows * (size_t)widest_stored_row(m);
    size_t group = (size_t)(c->n_head / c->n_head_kv);
    int widest_in = c->n_embd > f->q_dim ? c->n_embd : f->q_dim;
    if (c->n_ff > widest_in) widest_in = c->n_ff;
    size_t sizes[] = {B * c->n_embd, B * c->n_embd, B * f->q_dim, B * f->kv_dim, B * f->kv_dim, B * f->q_dim,
                      B * c->n_ff,   B * c->n_ff,   B * group * n_ctx, B * c->n_vocab, wbuf, B * f->q_dim,
                      B * f->q_dim,  B * c->n_embd, smallm_scratch_floats(widest_in)};
    float **dst[] = {&f->x,  &f->xb,     &f->q,    &f->k,  &f->v,  &f->att, &f->hb,
                     &f->hb2, &f->scores, &f->logits, &f->wbuf, &f->qg, &f->og, &f->xc, &f->xt};
    size_t total = 0;
    for (size_t i = 0; i < sizeof sizes / sizeof *sizes; i++) total += (sizes[i] + 15) & ~(size_t)15;
    f->arena_floats = total;
    if (!(f->arena = aligned_alloc(64, total * sizeof(float)))) goto oom;
    float *p = f->arena;
    for (size_t i = 0; i < sizeof sizes / sizeof *sizes; i++) {
        *dst[i] = p;
        p += (sizes[i] + 15) & ~(size_t)15;
    }
    f->cache_floats = ((size_t)n_slots * n_ctx + (size_t)n_leaves * f->leaf_len) * c->n_layer * f->kv_dim;
    if (!(f->row_pos = malloc(B * sizeof(int))) || !(f->row_slot = malloc(B * sizeof(int))) ||
        !(f->leaf_parent = malloc((n_leaves ? n_leaves : 1) * sizeof(int))) ||
        !(f->leaf_base = calloc(n_leaves ? n_leaves : 1, sizeof(int))))
        goto oom;
    for (int i = 0; i < n_leaves; i++) f->leaf_parent[i] = -1;
    if (c->rope != MODEL_ROPE_NONE) {
        /* pow, cos and sin once per position, not per row and layer. */
        if (!(f->rope_cs = malloc(sizeof(float) * (size_t)n_ctx * (c->rope_dim > 0 ? c->rope_dim : 1)))) goto oom;
        for (int p = 0; p < n_ctx; p++) kern_rope_angles(f->rope_cs + (size_t)p * c->rope_dim, c->rope_dim, p, c->rope_base, m->rope_freqs);
    }
    if (!(f->k_cache = calloc(f->cache_floats, sizeof(float))) ||
        !(f->v_cache = calloc(f->cache_floats, sizeof(float))))
        goto oom;
    return f;
oom:
    log_seterr(err, errlen, "forward: out of memory for a cache of %d slots x %d positions and batches of %d", n_slots,
               n_ctx, max_batch);
    forward_destroy(&f);
    return NULL;
}

void forward_destroy(forward_t **self_p) {
    if (!self_p || !*self_p) return;
    forward_t *f = *self_p;
    free(f->arena);
    free(f->k_cache);
    free(f->v_cache);
    free(f->row_pos);
    free(f->row_slot);
    free(f->leaf_parent);
    free(f->leaf_base);
    free(f->rope_cs);
    free(f);
    *self_p = NULL;
}

void forward_set_reference(forward_t *f, int on) { f->ref = on; }

int forward_stream_prefill_default(void) {
    /* smallm is one thread: more OpenBLAS threads are what its GEMM has
     * that streaming has not.  (OpenBLAS's own sums already differ with
     * the thread count, so `tokshift regenerate` reproduces a worker's
     * bits at the worker's --threads in any case.) */
    if (smallm_level() != SMALLM_AVX512 || openblas_get_num_threads() > 1) return 0;
    const char *core = openblas_get_corename();
    static const char *const avx512_cores[] = {"skylakex", "cooperlake", "sapphirerapids"};
    for (size_t i = 0; core && i < sizeof avx512_cores / sizeof *avx512_cores; i++)
        if (!strncasecmp(core, avx512_cores[i], strlen(avx512_cores[i]))) return 0;
    return 1;
}

void forward_set_stream_prefill(forward_t *f, int on) { f->stream_prefill = on; }
int forward_stream_prefill(const forward_t *f) { return f->stream_prefill; }

void forward_set_panel_rows(forward_t *f, int rows) {
    assert(rows >= 1 && rows <= FORWARD_PANEL_ROWS);
    f->panel_rows = rows;
}
const float *forward_logits(const forward_t *f) { return f->logits; }
int forward_n_ctx(const forward_t *f) { return f->n_ctx; }
int forward_max_batch(const forward_t *f) { return f->max_batch; }
int forward_n_slots(const forward_t *f) { return f->n_slots; }
size_t forward_bytes(const forward_t *f) { return (f->arena_floats + 2 * f->cache_floats) * sizeof(float); }

/* The cache row of position pos of slot (a full slot or a leaf, whose own
 * rows start at its base) in layer. */
static float *cache_at(const forward_t *f, float *cache, int slot, int layer, int pos) {
    size_t L = (size_t)f->m->cfg.n_layer;
    if (slot < f->n_slots)
        return cache + (size_t)slot * L * f->n_ctx * f->kv_dim + ((size_t)layer * f->n_ctx + pos) * f->kv_dim;
    int leaf = slot - f->n_slots;
    return cache + ((size_t)f->n_slots * f->n_ctx + (size_t)leaf * f->leaf_len) * L * f->kv_dim +
           ((size_t)layer * f->leaf_len + (pos - f->leaf_base[leaf])) * f->kv_dim;
}

int forward_n_leaves(const forward_t *f) { return f->n_leaves; }

void forward_attach(forward_t *f, int leaf, int parent, int base) {
    assert(leaf >= f->n_slots && leaf < f->n_slots + f->n_leaves && parent >= 0 && parent < f->n_slots && base >= 0 &&
           base + f->leaf_len <= f->n_ctx);
    f->leaf_parent[leaf - f->n_slots] = parent;
    f->leaf_base[leaf - f->n_slots] = base;
}

void forward_copy_slot(forward_t *f, int src, int dst, int n_pos) {
    assert(src >= 0 && src < f->n_slots && dst >= 0 && dst < f->n_slots && n_pos >= 0 && n_pos <= f->n_ctx);
    if (src == dst) return;
    for (int l = 0; l < f->m->cfg.n_layer; l++) {
        size_t bytes = (size_t)n_pos * f->kv_dim * sizeof(float);
        memcpy(cache_at(f, f->k_cache, dst, l, 0), cache_at(f, f->k_cache, src, l, 0), bytes);
        memcpy(cache_at(f, f->v_cache, dst, l, 0), cache_at(f, f->v_cache, src, l, 0), bytes);
    }
}

/* Whether rows form one prefill: one full slot, consecutive positions. */
static int is_contiguous(const forward_t *f, const int *slots, const int *pos, int n) {
    if (slots && slots[0] >= f->n_slots) return 0;
    for (int i = 1; i < n; i++)
        if ((slots ? slots[i] != slots[0] : 0) || pos[i] != pos[0] + i) return 0;
    return 1;
}

/* The shared part of row i's keys: the parent slot and how many positions
 * it gives (0 for a full slot, which has only its own). */
static int row_prefix(const forward_t *f, const int *slots, int i, int *parent) {
    int s = slots ? slots[i] : 0;
    if (s < f->n_slots) return *parent = -1, 0;
    *parent = f->leaf_parent[s - f->n_slots];
    return f->leaf_base[s - f->n_slots];
}

/* Decode attention of rows [i0, i1), which share one prefix (parent slot
 * and base; base 0 for a single row of a full slot): for each KV head, the
 * query rows of all its heads and rows are gathered, scored against the
 * prefix's keys in one product and against each row's own keys, softmaxed,
 * and multiplied by the prefix's values in one product and each row's own.
 * smallm's batch invariance and pv's exact split make every row's bits the
 * same as when it is decoded alone. */
static void attention_rows(forward_t *f, int layer, const int *slots, const int *pos, int i0, int i1, int parent,
                           int base) {
    const model_config_t *c = &f->m->cfg;
    int hd = c->head_dim, group = c->n_head / c->n_head_kv, R = (i1 - i0) * group, ld = f->n_ctx;
    float scale = model_attn_scale(c);
    for (int kvh = 0; kvh < c->n_head_kv; kvh++) {
        for (int i = i0; i < i1; i++)
            memcpy(f->qg + (size_t)(i - i0) * group * hd, f->q + (size_t)i * f->q_dim + (size_t)kvh * group * hd,
                   sizeof(float) * group * hd);
        if (base > 0)
            smallm_matmul(f->scores, ld, f->qg, hd, cache_at(f, f->k_cache, parent, layer, 0) + kvh * hd, f->kv_dim,
                          R, hd, base, 0.0f, f->xt);
        for (int r = 0; r < R; r++) {
            int i = i0 + r / group, slot = slots ? slots[i] : 0, own = pos[i] + 1 - base;
            float *srow = f->scores + (size_t)r * ld;
            smallm_matmul(srow + base, ld, f->qg + (size_t)r * hd, hd,
                          cache_at(f, f->k_cache, slot, layer, base) + kvh * hd, f->kv_dim, 1, hd, own, 0.0f, f->xt);
            for (int j = 0; j <= pos[i]; j++) srow[j] *= scale;
            int lo = model_attn_first(c, layer, pos[i]);
            if (c->attn_softcap) kern_softcap(srow + lo, pos[i] + 1 - lo, c->attn_softcap);
            kern_softmax(srow + lo, pos[i] + 1 - lo);
            for (int j = 0; j < lo; j++) srow[j] = 0.0f; /* outside the window: weight 0, as a -inf mask gives */
        }
        smallm_pv(f->og, hd, f->scores, ld, cache_at(f, f->v_cache, parent < 0 ? 0 : parent, layer, 0) + kvh * hd,
                  f->kv_dim, R, base, hd, 0);
        for (int r = 0; r < R; r++) {
            int i = i0 + r / group, slot = slots ? slots[i] : 0;
            smallm_pv(f->og + (size_t)r * hd, hd, f->scores + (size_t)r * ld + base, ld,
                      cache_at(f, f->v_cache, slot, layer, base) + kvh * hd, f->kv_dim, 1, pos[i] + 1 - base, hd, 1);
        }
        for (int i = i0; i < i1; i++)
            memcpy(f->att + (size_t)i * f->q_dim + (size_t)kvh * group * hd, f->og + (size_t)(i - i0) * group * hd,
                   sizeof(float) * group * hd);
    }
}

/* Attention of every row and head into f->att, after this layer's K/V rows
 * have been written to the cache; contig: the rows are one prefill
 * (is_contiguous, computed once per forward_batch). */
static void attention(forward_t *f, int layer, const int *slots, const int *pos, int n, int contig) {
    const model_config_t *c = &f->m->cfg;
    int hd = c->head_dim, group = c->n_head / c->n_head_kv;
    if (!f->ref && n > 1 && contig) {
        int slot = slots ? slots[0] : 0, last = pos[0] + n - 1, first = model_attn_first(c, layer, last);
        int window = first ? last - first + 1 : 0; /* 0: no row's window excludes a key */
        for (int kvh = 0; kvh < c->n_head_kv; kvh++) {
            const float *k = cache_at(f, f->k_cache, slot, layer, 0) + kvh * hd;
            const float *v = cache_at(f, f->v_cache, slot, layer, 0) + kvh * hd;
            size_t h0 = (size_t)kvh * group * hd;
            kern_attention_causal(f->att + h0, f->q_dim, f->q + h0, f->q_dim, k, v, f->kv_dim, n, pos[0], hd, group,
                                  model_attn_scale(c), c->attn_softcap, window, f->scores, f->qg, f->og);
        }
        return;
    }
    if (f->ref) {
        /* The reference reads each row's keys through its own copy, so it
         * checks the leaves' addressing independently of attention_rows. */
        for (int i = 0; i < n; i++) {
            int slot = slots ? slots[i] : 0, parent, base = row_prefix(f, slots, i, &parent);
            for (int h = 0; h < c->n_head; h++) {
                int kvh = h / group;
                float *out = f->att + (size_t)i * f->q_dim + h * hd, *sc = f->scores;
                const float *q = f->q + (size_t)i * f->q_dim + h * hd;
                int src = base ? parent : slot;
                kern_attention_split(out, q, cache_at(f, f->k_cache, src, layer, 0) + kvh * hd,
                                     cache_at(f, f->v_cache, src, layer, 0) + kvh * hd, base ? base : pos[i] + 1,
                                     cache_at(f, f->k_cache, slot, layer, base) + kvh * hd,
                                     cache_at(f, f->v_cache, slot, layer, base) + kvh * hd, f->kv_dim, pos[i], hd,
                                     model_attn_scale(c), c->attn_softcap, model_attn_first(c, layer, pos[i]), sc);
            }
        }
        return;
    }
    /* Runs of consecutive rows that continue one prefix decode together. */
    for (int i0 = 0; i0 < n;) {
        int parent, base = row_prefix(f, slots, i0, &parent), i1 = i0 + 1;
        if (base > 0)
            for (int p2; i1 < n && row_prefix(f, slots, i1, &p2) == base && p2 == parent;) i1++;
        attention_rows(f, layer, slots, pos, i0, i1, parent, base);
        i0 = i1;
    }
}

/* out[i] = norm(x[i]) for rows i < rows (RMSNorm or LayerNorm, as the model
 * says; b is the LayerNorm bias or NULL). */
static void norm_rows(const forward_t *f, float *out, const float *x, const float *g, const float *b, int rows) {
    const model_config_t *c = &f->m->cfg;
    int d = c->n_embd;
    for (int i = 0; i < rows; i++) {
        if (c->norm == MODEL_NORM_LAYER) kern_layernorm(out + (size_t)i * d, x + (size_t)i * d, g, b, d, c->norm_eps);
        else kern_rmsnorm(out + (size_t)i * d, x + (size_t)i * d, g, d, c->norm_eps);
    }
}

/* RMSNorm of the query or key rows x[rows][heads * head_dim] in place
 * (model_qk_norm_t): each head's head_dim values with the gain g[head_dim],
 * or each whole row with g[heads * head_dim]. */
static void qk_norm_rows(const forward_t *f, float *x, const float *g, int rows, int heads) {
    const model_config_t *c = &f->m->cfg;
    int hd = c->head_dim, w = heads * hd;
    for (int i = 0; i < rows; i++) {
        float *xi = x + (size_t)i * w;
        if (c->qk_norm == MODEL_QK_NORM_HEAD)
            for (int h = 0; h < heads; h++) kern_rmsnorm(xi + (size_t)h * hd, xi + (size_t)h * hd, g, hd, c->norm_eps);
        else kern_rmsnorm(xi, xi, g, w, c->norm_eps);
    }
}

/* x += post_norm(y) for rows rows of d (y is overwritten): the residual add
 * of a block whose output is normalised (OLMo 2's post-norms). */
static void add_post_normed(const forward_t *f, float *x, float *y, const float *g, int rows) {
    size_t n = (size_t)rows * f->m->cfg.n_embd;
    norm_rows(f, y, y, g, NULL, rows);
    for (size_t i = 0; i < n; i++) x[i] += y[i];
}

/* y[T][out] = x[T][in] W^T (+ bias) + beta y, W [out][in] as stored, by
 * the path given (fwd_path_t).  An
 * fp32 W in place is one product; any other is dequantized a panel of rows
 * at a time into f->wbuf, each panel's product filling its columns of y.
 * The reference path computes each element alone, so panels change nothing
 * there; on the BLAS path a panel's edge may be summed by another sgemm
 * kernel than the whole matrix's, a difference of fp32 rounding that
 * test_quant bounds. */
static void linear(const forward_t *f, float *y, const float *x, const quant_mat_t *w, const float *bias, int T,
                   float beta, fwd_path_t path) {
    void (*mm)(float *, int, const float *, const float *, int, int, int, float) =
        f->ref ? kern_matmul_ref : kern_matmul;
    int in = (int)w->cols, out = (int)w->rows;
    const float *w32 = quant_mat_f32(w);
    if ((path == FWD_STREAM || (path == FWD_STREAM_F32 && w32)) && !f->ref) {
        /* Few rows: stream W once (smallm); a stored W a small panel at a
         * time, each panel dequantized once for all T rows. */
        if (w32) {
            smallm_matmul(y, out, x, in, w32, in, T, in, out, beta, f->xt);
        } else {
            /* X laid out (transposed) once per smallm_x_rows(in) rows, i.e.
             * once per decode batch, not once per panel. */
            int chunk = smallm_x_rows(in), tile = FORWARD_SMALL_PANEL_TILE;
            int panel = FORWARD_SMALL_PANEL_FLOATS / in / tile * tile;
            if (panel < tile) panel = tile;
            if (panel > f->panel_rows) panel = f->panel_rows;
            for (int c0 = 0; c0 < T; c0 += chunk) {
                smallm_x_t px;
                smallm_x_prepare(&px, x + (size_t)c0 * in, in, T - c0 < chunk ? T - c0 : chunk, in, f->xt);
                for (int r0 = 0; r0 < out; r0 += panel) {
                    int rows = out - r0 < panel ? out - r0 : panel;
                    quant_mat_dequant(w, r0, rows, f->wbuf);
                    smallm_matmul_x(y + (size_t)c0 * out + r0, out, &px, f->wbuf, in, rows, beta);
                }
            }
        }
    } else if (w32) {
        mm(y, out, x, w32, T, in, out, beta);
    } else {
        /* Few rows of x (decode): packing x is cheap, so take panels that
         * stay in a 256 KiB cache between their dequantization and use. */
        int panel = f->panel_rows, fit = (1 << 16) / in;
        if (T < 32 && fit < panel) panel = fit > 16 ? fit : 16;
        for (int r0 = 0; r0 < out; r0 += panel) {
            int rows = out - r0 < panel ? out - r0 : panel;
            quant_mat_dequant(w, r0, rows, f->wbuf);
            mm(y + r0, out, x, f->wbuf, T, in, rows, beta);
        }
    }
    if (bias) kern_add_bias(y, bias, T, out);
}

int forward_batch(forward_t *f, const int32_t *tokens, const int *slots, const int *pos, int n, int all_logits,
                  char *err, size_t errlen) {
    return forward_batch_from(f, tokens, slots, pos, n, all_logits ? 0 : n - 1, err, errlen);
}

int forward_batch_from(forward_t *f, const int32_t *tokens, const int *slots, const int *pos, int n, int logits_from,
                       char *err, size_t errlen) {
    const model_t *m = f->m;
    const model_config_t *c = &m->cfg;
    int d = c->n_embd, ff = c->n_ff;
    if (n < 1 || n > f->max_batch)
        return log_seterr(err, errlen, "forward: batch of %d rows (this forward takes 1..%d)", n, f->max_batch);
    assert(logits_from >= 0 && logits_from <= n);
    for (int i = 0; i < n; i++) {
        if (tokens[i] < 0 || tokens[i] >= c->n_vocab)
            return log_seterr(err, errlen, "forward: token id %d at row %d is outside the vocabulary [0, %d)",
                              tokens[i], i, c->n_vocab);
        if (pos[i] < 0 || pos[i] >= f->n_ctx)
            return log_seterr(err, errlen, "forward: position %d at row %d is outside the context [0, %d)", pos[i],
                              i, f->n_ctx);
        if (m->pos_embd.data && pos[i] >= c->n_ctx_train)
            return log_seterr(err, errlen, "forward: position %d at row %d is past the model's %d learned positions",
                              pos[i], i, c->n_ctx_train);
        if (slots && (slots[i] < 0 || slots[i] >= f->n_slots + f->n_leaves))
            return log_seterr(err, errlen, "forward: slot %d at row %d is outside [0, %d)", slots[i], i,
                              f->n_slots + f->n_leaves);
        if (slots && slots[i] >= f->n_slots) {
            int leaf = slots[i] - f->n_slots, b = f->leaf_base[leaf];
            if (f->leaf_parent[leaf] < 0 || pos[i] < b || pos[i] >= b + f->leaf_len)
                return log_seterr(err, errlen, "forward: position %d at row %d is outside leaf %d's [%d, %d)%s",
                                  pos[i], i, slots[i], b, b + f->leaf_len,
                                  f->leaf_parent[leaf] < 0 ? " (not attached)" : "");
        }
    }
    /* Decode batches (rows of several slots) always use smallm, whose rows
     * do not depend on the batch: a sample decoded among others gets the
     * bits it gets alone.  A prefill chunk uses it when it is short, and
     * for its fp32 products where streaming is the faster
     * (forward_stream_prefill_default). */
    int contig = is_contiguous(f, slots, pos, n);
    fwd_path_t path = n < FORWARD_SMALL_M || !contig ? FWD_STREAM : f->stream_prefill ? FWD_STREAM_F32 : FWD_BLAS;

    /* x[n][d] = embedding rows (+ learned position rows), dequantizing
     * only the rows used. */
    for (int i = 0; i < n; i++) {
        float *xi = f->x + (size_t)i * d;
        quant_mat_dequant(&m->tok_embd, tokens[i], 1, xi);
        if (c->embd_scale)
            for (int j = 0; j < d; j++) xi[j] *= c->embd_scale;
        if (m->pos_embd.data) {
            const float *p = quant_mat_f32(&m->pos_embd);
            if (!p) quant_mat_dequant(&m->pos_embd, pos[i], 1, f->wbuf);
            kern_add_bias(xi, p ? p + (size_t)pos[i] * d : f->wbuf, 1, d);
        }
    }

    for (int l = 0; l < c->n_layer; l++) {
        const model_layer_t *L = &m->layers[l];
        /* Attention block: xb = norm(x) (x itself without a pre-norm);
         * q, k, v = xb W^T + b; q/k norms; rope; cache. */
        const float *ain = f->x;
        if (L->attn_norm) norm_rows(f, f->xb, f->x, L->attn_norm, L->attn_norm_b, n), ain = f->xb; /* xb[n][d] */
        linear(f, f->q, ain, &L->wq, L->bq, n, 0.0f, path);        /* q[n][q_dim] */
        linear(f, f->k, ain, &L->wk, L->bk, n, 0.0f, path);       /* k[n][kv_dim] */
        linear(f, f->v, ain, &L->wv, L->bv, n, 0.0f, path);       /* v[n][kv_dim] */
        if (L->q_norm) qk_norm_rows(f, f->q, L->q_norm, n, c->n_head);
        if (L->k_norm) qk_norm_rows(f, f->k, L->k_norm, n, c->n_head_kv);
        for (int i = 0; i < n; i++) {
            int slot = slots ? slots[i] : 0;
            float *qi = f->q + (size_t)i * f->q_dim, *ki = f->k + (size_t)i * f->kv_dim;
            if (c->rope != MODEL_ROPE_NONE) {
                const float *cs = f->rope_cs + (size_t)pos[i] * c->rope_dim;
                kern_rope_apply(qi, c->n_head, c->head_dim, c->rope_dim, cs, c->rope == MODEL_ROPE_NEOX);
                kern_rope_apply(ki, c->n_head_kv, c->head_dim, c->rope_dim, cs, c->rope == MODEL_ROPE_NEOX);
            }
            memcpy(cache_at(f, f->k_cache, slot, l, pos[i]), ki, f->kv_dim * sizeof(float));
            memcpy(cache_at(f, f->v_cache, slot, l, pos[i]), f->v + (size_t)i * f->kv_dim, f->kv_dim * sizeof(float));
        }
        attention(f, l, slots, pos, n, contig); /* att[n][q_dim] */
        /* Parallel residual: the FFN reads the block's input, so normalise
         * it before the attention output is added. */
        if (c->parallel_residual) norm_rows(f, f->xb, f->x, L->ffn_norm, L->ffn_norm_b, n); /* xb[n][d] */
        if (L->attn_post_norm) { /* x += post_norm(att Wo^T + bo) */
            linear(f, f->xc, f->att, &L->wo, L->bo, n, 0.0f, path);
            add_post_normed(f, f->x, f->xc, L->attn_post_norm, n);
        } else {
            linear(f, f->x, f->att, &L->wo, L->bo, n, 1.0f, path); /* x += att Wo^T + bo */
        }
        const float *fin = f->x;
        if (c->parallel_residual) fin = f->xb;
        else if (L->ffn_norm) norm_rows(f, f->xb, f->x, L->ffn_norm, L->ffn_norm_b, n), fin = f->xb;

        /* FFN block: SwiGLU (silu(fin Wg^T) * (fin Wu^T)) Wd^T, or
         * GELU gelu(fin Wu^T + bu) Wd^T + bd, added to x (post-normed
         * where the model has ffn_post_norm). */
        if (c->act == MODEL_ACT_SWIGLU) {
            linear(f, f->hb, fin, &L->w_gate, L->b_gate, n, 0.0f, path); /* hb[n][ff] */
            linear(f, f->hb2, fin, &L->w_up, L->b_up, n, 0.0f, path);    /* hb2[n][ff] */
            (f->ref ? kern_swiglu_ref : kern_swiglu)(f->hb, f->hb2, (size_t)n * ff);
        } else if (c->act == MODEL_ACT_GEGLU) { /* gelu(fin Wg^T) * (fin Wu^T), as ggml_geglu_split */
            linear(f, f->hb, fin, &L->w_gate, L->b_gate, n, 0.0f, path); /* hb[n][ff] */
            linear(f, f->hb2, fin, &L->w_up, L->b_up, n, 0.0f, path);    /* hb2[n][ff] */
            (f->ref ? kern_gelu_ref : kern_gelu)(f->hb, (size_t)n * ff);
            for (size_t i = 0; i < (size_t)n * ff; i++) f->hb[i] *= f->hb2[i];
        } else {
            /* The fast path adds the up bias inside GELU's pass (the same
             * fp32 sums, one pass fewer over hb). */
            linear(f, f->hb, fin, &L->w_up, f->ref ? L->b_up : NULL, n, 0.0f, path); /* hb[n][ff] */
            if (f->ref) kern_gelu_ref(f->hb, (size_t)n * ff);
            else kern_gelu_bias(f->hb, L->b_up, n, ff);
        }
        if (L->ffn_post_norm) {
            linear(f, f->xc, f->hb, &L->w_down, L->b_down, n, 0.0f, path);
            add_post_normed(f, f->x, f->xc, L->ffn_post_norm, n);
        } else {
            linear(f, f->x, f->hb, &L->w_down, L->b_down, n, 1.0f, path); /* x += hb Wd^T + bd */
        }
    }

    /* Output: logits = norm(x) Wout^T (+ b), for the rows asked for (none:
     * a chunk that only fills the cache skips the vocabulary product, the
     * largest of a small model's). */
    int first = logits_from, rows = n - first;
    if (rows == 0) return 0;
    norm_rows(f, f->xb, f->x + (size_t)first * d, m->output_norm, m->output_norm_b, rows);
    linear(f, f->logits, f->xb, &m->output, m->output_b, rows, 0.0f, rows < FORWARD_SMALL_M ? FWD_STREAM : path); /* [rows][n_vocab] */
    if (c->final_softcap) kern_softcap(f->logits, (size_t)rows * c->n_vocab, c->final_softcap);
    return 0;
}

int forward_prefill(forward_t *f, int slot, const int32_t *tokens, int n, int pos0, char *err, size_t errlen) {
    if (n < 1 || n > f->max_batch)
        return log_seterr(err, errlen, "forward: prefill of %d tokens (this forward takes 1..%d)", n, f->max_batch);
    for (int i = 0; i < n; i++) f->row_pos[i] = pos0 + i, f->row_slot[i] = slot;
    return forward_batch(f, tokens, f->row_slot, f->row_pos, n, 1, err, errlen);
}
