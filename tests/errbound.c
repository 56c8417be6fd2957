/* errbound.c - see errbound.h.  Every step below is (value, bound) in
 * double; each comment names the roundings it counts. */
#include "errbound.h"

#include <cblas.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "kernels.h"
#include "stats.h"

/* The perturbation of one run: a seeded generator (splitmix64); off for
 * the exact run. */
typedef struct {
    uint64_t state;
    int on;
} noise_t;

/* Uniform in [-sqrt 3, sqrt 3]: mean 0, variance 1, as cheap as it gets
 * (the runs draw ~10^7 of them). */
static double unit(noise_t *z) {
    uint64_t x = (z->state += 0x9E3779B97F4A7C15ULL);
    x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ULL;
    x = (x ^ (x >> 27)) * 0x94D049BB133111EBULL;
    return ((double)((x ^ (x >> 31)) >> 11) * 0x1.0p-53 * 2 - 1) * 1.7320508075688772;
}

/* One step's rounding error: k roundings of relative std u/sqrt(3) each
 * (uniform in [-u, u]) on quantities of magnitude at most mag. */
static double nz(noise_t *z, double k, double mag) {
    return z->on ? unit(z) * sqrt(k / 3) * EB_U * mag : 0;
}

/* Row r of w in fp32: in place, or dequantized into buf (cols floats): the
 * values the forward pass multiplies by. */
static const float *row_of(const quant_mat_t *w, int64_t r, float *buf) {
    const float *f = quant_mat_f32(w);
    if (f) return f + (size_t)r * (size_t)w->cols;
    quant_mat_dequant(w, r, 1, buf);
    return buf;
}

/* y[o] = sum_i w[o][i] x[i] + b[o] (+ y[o] when acc): in + 2 terms at most
 * (the products, the accumulated y, the bias added after).  buf: in floats
 * of scratch. */
static void lin(noise_t *z, const quant_mat_t *w, const float *b, const double *x, int in, int out, int acc, double *y,
                float *buf) {
    for (int o = 0; o < out; o++) {
        const float *wo = row_of(w, o, buf);
        double s = 0, mag = 0;
        for (int i = 0; i < in; i++) {
            double p = wo[i] * x[i];
            s += p;
            mag += fabs(p);
        }
        if (acc) s += y[o], mag += fabs(y[o]);
        if (b) s += b[o], mag += fabs((double)b[o]);
        y[o] = s + nz(z, in + 2, mag);
    }
}

/* RMSNorm (the scale: sqrt and 1/ in fp32 as ggml does, x*s, *g: 4 roundings) or LayerNorm
 * (the fp32 mean, the subtraction, s, *s, *g, +b: 6). */
static void norm_n(noise_t *z, const model_config_t *c, int rms, int n, const float *g, const float *b, const double *x,
                   double *out) {
    double eps = c->norm_eps;
    if (rms) {
        double ss = 0;
        for (int i = 0; i < n; i++) ss += x[i] * x[i];
        double s = 1.0 / sqrt(ss / n + eps);
        for (int i = 0; i < n; i++) out[i] = x[i] * s * g[i], out[i] += nz(z, 4, fabs(out[i]));
        return;
    }
    double mean = 0, var = 0;
    for (int i = 0; i < n; i++) mean += x[i];
    mean /= n;
    for (int i = 0; i < n; i++) var += (x[i] - mean) * (x[i] - mean);
    double s = 1.0 / sqrt(var / n + eps);
    for (int i = 0; i < n; i++) {
        double core = (x[i] - mean) * s * g[i], bi = b ? b[i] : 0;
        out[i] = core + bi + nz(z, 6, fabs(core) + fabs(bi) + fabs(mean * s * g[i]));
    }
}

/* The model's norm over a row of d. */
static void norm(noise_t *z, const model_config_t *c, const float *g, const float *b, const double *x, double *out) {
    norm_n(z, c, c->norm == MODEL_NORM_RMS, c->n_embd, g, b, x, out);
}

/* The q/k RMSNorm (model_qk_norm_t) of one row of heads x head_dim, in
 * place (norm_n reads each value before writing it). */
static void qk_norm(noise_t *z, const model_config_t *c, const float *g, int heads, double *x) {
    if (!g) return;
    if (c->qk_norm == MODEL_QK_NORM_HEAD)
        for (int h = 0; h < heads; h++) norm_n(z, c, 1, c->head_dim, g, NULL, x + h * c->head_dim, x + h * c->head_dim);
    else norm_n(z, c, 1, heads * c->head_dim, g, NULL, x, x);
}

/* x += post_norm(y) over d (OLMo 2's post-norms; y is overwritten): the
 * norm, then the add (one rounding). */
static void add_post_normed(noise_t *z, const model_config_t *c, const float *g, double *y, double *x) {
    norm(z, c, g, NULL, y, y);
    for (int i = 0; i < c->n_embd; i++) x[i] += y[i], x[i] += nz(z, 1, fabs(x[i]));
}

/* Rotary embedding (kern_rope, kern_rope_neox).  The angle pos *
 * base^(-2i/rope_dim) is within 2 i + 3 roundings however fp32 computes it
 * (llama.cpp rounds the scale base^(-2/rope_dim), which its i products
 * carry, and rounds each of them); cos, sin: one each; the rotation
 * a c - b s: two. */
static void rope(noise_t *z, const model_t *m, int n_heads, int pos, double *x) {
    const model_config_t *c = &m->cfg;
    if (c->rope == MODEL_ROPE_NONE) return;
    int half = c->rope_dim / 2, hd = c->head_dim;
    for (int i = 0; i < half; i++) {
        double theta = pos * pow(c->rope_base, -2.0 * i / c->rope_dim);
        if (m->rope_freqs) theta /= m->rope_freqs[i]; /* one more rounding (ggml's theta / ff) */
        theta += nz(z, 2 * i + 3 + (m->rope_freqs != NULL), theta);
        double cs = cos(theta), sn = sin(theta);
        cs += nz(z, 1, fabs(cs)), sn += nz(z, 1, fabs(sn));
        for (int h = 0; h < n_heads; h++) {
            int ia = h * hd + (c->rope == MODEL_ROPE_NORM ? 2 * i : i);
            int ib = ia + (c->rope == MODEL_ROPE_NORM ? 1 : half);
            double a = x[ia], b = x[ib];
            x[ia] = a * cs - b * sn + nz(z, 2, fabs(a * cs) + fabs(b * sn));
            x[ib] = a * sn + b * cs + nz(z, 2, fabs(a * sn) + fabs(b * cs));
        }
    }
}

/* Soft-capping x = cap tanh(x / cap) (kern_softcap, ggml's scale, tanh,
 * scale): the product by the rounded 1/cap (2 roundings), tanhf (2 ulp:
 * glibc's and ggml's within 1 each), the product by cap (1). */
static void softcap(noise_t *z, double cap, double *x) {
    double u = *x * (double)(1.0f / (float)cap);
    u += nz(z, 2, fabs(u));
    double t = tanh(u);
    t += nz(z, 2, fabs(t));
    *x = cap * t + nz(z, 1, fabs(cap * t));
}

/* Causal attention of query row t over cached keys/values lo..t of one head
 * (kern_attention, kern_attention_row; lo > 0: a sliding window, whose
 * masked keys add exact zeros), scores soft-capped when cap is not 0.  Scores: hd products and the scale.
 * Softmax: s_j - max (one rounding of it, in the exponent), expf (2: glibc's
 * and ggml's are within 1.5 ulp), the sum (t + 1 terms), 1/sum and the
 * product (2).  Output: t + 1 products (masked keys add exact zeros). */
static void attend(noise_t *z, int hd, float scale, double cap, int lo, const double *q, const double *k,
                   const double *v, int kvs, int t, double *out, double *sc) {
    double m = -INFINITY;
    for (int j = lo; j <= t; j++) {
        double s = 0, mag = 0;
        for (int i = 0; i < hd; i++) {
            double p = q[i] * k[(size_t)j * kvs + i];
            s += p, mag += fabs(p);
        }
        sc[j] = (s + nz(z, hd + 1, mag)) * scale;
        if (cap) softcap(z, cap, &sc[j]);
        m = fmax(m, sc[j]);
    }
    double sum = 0;
    for (int j = lo; j <= t; j++) {
        double u = sc[j] - m;
        sc[j] = exp(u + nz(z, 1, fabs(u)));
        sc[j] += nz(z, 2, sc[j]);
        sum += sc[j];
    }
    sum += nz(z, t + 1 - lo, sum);
    for (int j = lo; j <= t; j++) sc[j] /= sum, sc[j] += nz(z, 2, sc[j]);
    for (int i = 0; i < hd; i++) {
        double s = 0, mag = 0;
        for (int j = lo; j <= t; j++) {
            double p = sc[j] * v[(size_t)j * kvs + i];
            s += p, mag += fabs(p);
        }
        out[i] = s + nz(z, t + 1 - lo, mag);
    }
}

/* GELU through fp16 (kern_gelu) on the input rounded to fp32: a step
 * function, so a perturbed input moves the output by whole steps or not
 * at all, which the runs see as they happen. */
static void gelu(double *v, size_t n) {
    for (size_t i = 0; i < n; i++) {
        float f = (float)v[i];
        kern_gelu_ref(&f, 1);
        v[i] = f;
    }
}

/* SwiGLU g = silu(g) u: expf (2), 1 +, the division, the product. */
static void swiglu(noise_t *z, double *g, const double *u, size_t n) {
    for (size_t i = 0; i < n; i++) {
        double e = exp(-g[i]);
        e += nz(z, 2, e);
        g[i] = g[i] / (1.0 + e) * u[i];
        g[i] += nz(z, 3, fabs(g[i]));
    }
}

/* The output matrix in double and its absolute values, [V][d]: made once
 * per eb_forward for its runs. */
typedef struct {
    double *w, *wabs;
} out_t;

/* One run of the forward over ids[0..n) into logits [n][V]. */
static int run(const model_t *m, const out_t *out, const int32_t *ids, int n, noise_t *z, double *logits) {
    const model_config_t *c = &m->cfg;
    int d = c->n_embd, ff = c->n_ff, hd = c->head_dim, qd = c->n_head * hd, kvd = c->n_head_kv * hd;
    int group = c->n_head / c->n_head_kv, V = c->n_vocab;
    size_t nd = (size_t)n * d;
    double *x = malloc(sizeof *x * nd);
    double *buf = malloc(sizeof *buf * ((size_t)2 * d + 2 * qd + 2 * ff + n));
    double *K = malloc(sizeof *K * (size_t)2 * n * kvd), *Vv = K + (size_t)n * kvd;
    if (!x || !buf || !K) {
        free(x), free(buf), free(K);
        return -1;
    }
    double *xb = buf, *xc = xb + d, *q = xc + d, *att = q + qd, *h = att + qd, *h2 = h + ff, *sc = h2 + ff;
    float *wrow = malloc(sizeof *wrow * (size_t)(ff > qd ? (ff > d ? ff : d) : (qd > d ? qd : d)));
    if (!wrow) {
        free(x), free(buf), free(K);
        return -1;
    }
    float scale = model_attn_scale(c);
    for (int t = 0; t < n; t++) {
        const float *e = row_of(&m->tok_embd, ids[t], wrow);
        for (int i = 0; i < d; i++) x[(size_t)t * d + i] = e[i];
        for (int i = 0; c->embd_scale && i < d; i++) { /* one rounding: the product by the fp32 scale */
            double v = x[(size_t)t * d + i] * c->embd_scale;
            x[(size_t)t * d + i] = v + nz(z, 1, fabs(v));
        }
        if (!m->pos_embd.data) continue;
        const float *pe = row_of(&m->pos_embd, t, wrow);
        for (int i = 0; i < d; i++) {
            double v = x[(size_t)t * d + i] + pe[i];
            x[(size_t)t * d + i] = v + nz(z, 1, fabs(v));
        }
    }
    for (int l = 0; l < c->n_layer; l++) {
        const model_layer_t *L = &m->layers[l];
        for (int t = 0; t < n; t++) { /* K/V of every row first: rows attend to earlier rows only */
            const double *in = x + (size_t)t * d;
            if (L->attn_norm) norm(z, c, L->attn_norm, L->attn_norm_b, in, xb), in = xb;
            lin(z, &L->wk, L->bk, in, d, kvd, 0, K + (size_t)t * kvd, wrow);
            qk_norm(z, c, L->k_norm, c->n_head_kv, K + (size_t)t * kvd);
            rope(z, m, c->n_head_kv, t, K + (size_t)t * kvd);
            lin(z, &L->wv, L->bv, in, d, kvd, 0, Vv + (size_t)t * kvd, wrow);
        }
        for (int t = 0; t < n; t++) {
            double *xt = x + (size_t)t * d;
            const double *in = xt;
            if (L->attn_norm) norm(z, c, L->attn_norm, L->attn_norm_b, xt, xb), in = xb;
            lin(z, &L->wq, L->bq, in, d, qd, 0, q, wrow);
            qk_norm(z, c, L->q_norm, c->n_head, q);
            rope(z, m, c->n_head, t, q);
            for (int hh = 0; hh < c->n_head; hh++) {
                int o = (hh / group) * hd;
                attend(z, hd, scale, c->attn_softcap, model_attn_first(c, l, t), q + hh * hd, K + o, Vv + o, kvd,
                       t, att + hh * hd, sc);
            }
            /* the FFN's input: the block's input (parallel) or after attention */
            if (c->parallel_residual) norm(z, c, L->ffn_norm, L->ffn_norm_b, xt, xc);
            if (L->attn_post_norm) {
                lin(z, &L->wo, L->bo, att, qd, d, 0, xb, wrow);
                add_post_normed(z, c, L->attn_post_norm, xb, xt);
            } else {
                lin(z, &L->wo, L->bo, att, qd, d, 1, xt, wrow);
            }
            const double *fin = c->parallel_residual ? xc : xt;
            if (!c->parallel_residual && L->ffn_norm) norm(z, c, L->ffn_norm, L->ffn_norm_b, xt, xc), fin = xc;
            if (c->act == MODEL_ACT_SWIGLU) {
                lin(z, &L->w_gate, L->b_gate, fin, d, ff, 0, h, wrow);
                lin(z, &L->w_up, L->b_up, fin, d, ff, 0, h2, wrow);
                swiglu(z, h, h2, (size_t)ff);
            } else if (c->act == MODEL_ACT_GEGLU) { /* gelu(gate) through fp16, times up: one rounding */
                lin(z, &L->w_gate, L->b_gate, fin, d, ff, 0, h, wrow);
                lin(z, &L->w_up, L->b_up, fin, d, ff, 0, h2, wrow);
                gelu(h, (size_t)ff);
                for (int i = 0; i < ff; i++) h[i] *= h2[i], h[i] += nz(z, 1, fabs(h[i]));
            } else {
                lin(z, &L->w_up, L->b_up, fin, d, ff, 0, h, wrow);
                gelu(h, (size_t)ff);
            }
            if (L->ffn_post_norm) {
                lin(z, &L->w_down, L->b_down, h, ff, d, 0, xb, wrow);
                add_post_normed(z, c, L->ffn_post_norm, xb, xt);
            } else {
                lin(z, &L->w_down, L->b_down, h, ff, d, 1, xt, wrow);
            }
        }
    }
    /* The output layer, the bulk of the work for large vocabularies, as two
     * double GEMMs (the sums and their magnitudes), then as lin(). */
    double *xa = malloc(sizeof *xa * nd), *mag = malloc(sizeof *mag * (size_t)n * V);
    if (!xa || !mag) {
        free(x), free(buf), free(K), free(xa), free(mag), free(wrow);
        return -1;
    }
    for (int t = 0; t < n; t++) {
        norm(z, c, m->output_norm, m->output_norm_b, x + (size_t)t * d, xa + (size_t)t * d);
        for (int i = 0; i < d; i++) x[(size_t)t * d + i] = fabs(xa[(size_t)t * d + i]);
    }
    cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, V, d, 1.0, xa, d, out->w, d, 0.0, logits, V);
    cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, V, d, 1.0, x, d, out->wabs, d, 0.0, mag, V);
    for (int t = 0; t < n; t++)
        for (int v = 0; v < V; v++) {
            size_t i = (size_t)t * V + v;
            double b = m->output_b ? m->output_b[v] : 0;
            logits[i] += b + nz(z, d + 2, mag[i] + fabs(b));
            if (c->final_softcap) softcap(z, c->final_softcap, &logits[i]);
        }
    free(x), free(buf), free(K), free(xa), free(mag), free(wrow);
    return 0;
}

/* The statistics in double (stats_compute_ref's formulas). */
static void exact_stats(const double *l, int V, int32_t token, double out[4]) {
    double m = l[0];
    for (int i = 1; i < V; i++) m = fmax(m, l[i]);
    double zs = 0;
    for (int i = 0; i < V; i++) zs += exp(l[i] - m);
    double lse = m + log(zs), h = 0, e2 = 0;
    for (int i = 0; i < V; i++) {
        double lp = l[i] - lse, p = exp(lp);
        h -= p * lp, e2 += p * lp * lp;
    }
    out[0] = l[token] - lse, out[1] = h, out[2] = m - lse, out[3] = e2 - h * h;
}

int eb_forward(const model_t *m, const int32_t *ids, int n, double *logits, double *err, eb_stats_t *st) {
    int V = m->cfg.n_vocab;
    if (m->pos_embd.data && n > m->cfg.n_ctx_train) return -1;
    for (int t = 0; t < n; t++)
        if (ids[t] < 0 || ids[t] >= V) return -1;
    size_t nv = (size_t)n * V, vd = (size_t)V * m->cfg.n_embd;
    double *lk = malloc(sizeof *lk * nv), *base = malloc(sizeof *base * 4 * n), *ss = calloc((size_t)4 * n, sizeof *ss);
    int d = m->cfg.n_embd;
    out_t out = {malloc(sizeof(double) * vd), malloc(sizeof(double) * vd)};
    float *row = malloc(sizeof *row * (size_t)d);
    for (int v = 0; out.w && out.wabs && row && v < V; v++) {
        const float *r = row_of(&m->output, v, row);
        for (int i = 0; i < d; i++) out.w[(size_t)v * d + i] = r[i], out.wabs[(size_t)v * d + i] = fabs((double)r[i]);
    }
    free(row);
    noise_t z = {0, 0};
    int rc = lk && base && ss && out.w && out.wabs ? run(m, &out, ids, n, &z, logits) : -1;
    for (int t = 0; rc == 0 && t + 1 < n; t++) exact_stats(logits + (size_t)t * V, V, ids[t + 1], base + 4 * t);
    for (size_t i = 0; rc == 0 && i < nv; i++) err[i] = 0;
    for (int k = 0; rc == 0 && k < EB_RUNS; k++) {
        z = (noise_t){0x5EEDULL * (k + 1), 1};
        if ((rc = run(m, &out, ids, n, &z, lk))) break;
        for (size_t i = 0; i < nv; i++) err[i] += (lk[i] - logits[i]) * (lk[i] - logits[i]);
        for (int t = 0; t + 1 < n; t++) {
            double s[4];
            exact_stats(lk + (size_t)t * V, V, ids[t + 1], s);
            for (int j = 0; j < 4; j++) ss[4 * t + j] += (s[j] - base[4 * t + j]) * (s[j] - base[4 * t + j]);
        }
    }
    for (size_t i = 0; rc == 0 && i < nv; i++) err[i] = EB_LAMBDA * sqrt(err[i] / EB_RUNS) + EB_STATS_ABS;
    for (int t = 0; rc == 0 && st && t + 1 < n; t++) {
        double *q = ss + 4 * t, *b = base + 4 * t;
        stats_t ex = {.logprob = b[0], .entropy = b[1], .top1_logprob = b[2], .varentropy = b[3]}, own;
        stats_bound(&ex, V, &own);
        for (int j = 0; j < 4; j++) q[j] = EB_LAMBDA * sqrt(q[j] / EB_RUNS);
        st[t] = (eb_stats_t){q[0] + own.logprob, q[1] + own.entropy, q[2] + own.top1_logprob, q[3] + own.varentropy};
    }
    free(lk), free(base), free(ss), free(out.w), free(out.wabs);
    return rc;
}

int eb_score(const model_t *m, const int32_t *ids, int n, int window, int stride, eb_stats_t *out) {
    int V = m->cfg.n_vocab, W = window < n ? window : n;
    double *lg = malloc(sizeof(double) * (size_t)W * V), *er = malloc(sizeof(double) * (size_t)W * V);
    eb_stats_t *st = malloc(sizeof *st * (size_t)W);
    int rc = lg && er && st ? 0 : -1, scored_to = 1; /* the next token without a row */
    for (int b = 0; rc == 0 && scored_to < n; b += stride) {
        int end = b + W < n ? b + W : n;
        if ((rc = eb_forward(m, ids + b, end - b, lg, er, st))) break;
        for (int t = scored_to; t < end; t++) out[t - 1] = st[t - 1 - b];
        scored_to = end;
    }
    free(lg), free(er), free(st);
    return rc;
}
