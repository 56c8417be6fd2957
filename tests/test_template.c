/* test_template.c - chat templates (template.h, tpltext.h) on the demo
 * model stories260K, whose SentencePiece vocabulary has the control tokens
 * <s> (1, BOS) and </s> (2).
 *
 * - The file format: one marker, valid UTF-8 without NUL, or a message.
 * - Special tokens: spelled as the vocabulary spells them they are those
 *   tokens; a spelling the vocabulary lacks is refused, naming it; spans
 *   with whitespace inside, or empty, are text.  A template starting with
 *   BOS gets no second one.
 * - The identity template "{document}" gives the ids and rows of no
 *   template, bit for bit.
 * - What the template means, against an independent construction: with the
 *   reference kernels (each product element and attention row computed
 *   alone, so rows do not depend on how they are batched: forward.h), the
 *   rows of a document read through a template equal, bit for bit, the
 *   rows of the plain sequence T + D scored without one at the same tokens,
 *   both for the human text and for the human continuation at a cut; pos
 *   and context_len count the document's ids (T's last token first), h less
 *   than the plain sequence's. */
#include <string.h>

#include "experiment.h"
#include "log.h"
#include "loader.h"
#include "model.h"
#include "template.h"
#include "testrows.h"
#include "testutil.h"
#include "tpltext.h"

static const char *g_doc =
    "Once upon a time, there was a little dog named Max. Max liked to run in the big green park with his friend, a "
    "small cat called Lily.";

static void test_format(void) {
    char err[LOG_ERRLEN];
    size_t b, a;
    const char *t = "<s>x{document}</s>\n";
    TU_CHECK(tpltext_split(t, strlen(t), &b, &a, err, sizeof err) == 0 && b == 4 && a == 14, "split: %s", err);
    TU_CHECK(tpltext_split("{document}", 10, &b, &a, err, sizeof err) == 0 && b == 0 && a == 10, "marker alone");
    TU_CHECK(tpltext_split("no marker", 9, &b, &a, err, sizeof err) < 0 && strstr(err, "no marker"), "none: %s", err);
    TU_CHECK(tpltext_split("{document}{document}", 20, &b, &a, err, sizeof err) < 0 && strstr(err, "more than once"),
             "two: %s", err);
    TU_CHECK(tpltext_split("a\0{document}", 12, &b, &a, err, sizeof err) < 0 && strstr(err, "NUL"), "NUL: %s", err);
    TU_CHECK(tpltext_split("\xff{document}", 11, &b, &a, err, sizeof err) < 0 && strstr(err, "UTF-8"), "utf8: %s", err);
    TU_CHECK(tpltext_read("/nonexistent/t.tpl", err, sizeof err) == NULL && strstr(err, "/nonexistent/t.tpl"),
             "missing file named: %s", err);
}

/* The fixed context of text as a vector, its length in *n. */
static const int32_t *prefix_of(const model_t *m, const char *text, template_t **t, int *n) {
    char err[LOG_ERRLEN];
    *t = template_new(m->tok, text, strlen(text), err, sizeof err);
    TU_REQUIRE(*t, "template '%s': %s", text, err);
    return template_prefix(*t, n);
}

static void test_tokens(const model_t *m) {
    char err[LOG_ERRLEN];
    template_t *t = NULL;
    int n;
    /* BOS, then the </s> and <s> of the template: no second BOS first. */
    const int32_t *p = prefix_of(m, "<s>Hi</s><s>{document}</s>", &t, &n);
    TU_CHECK(n >= 4 && p[0] == 1 && p[1] != 1 && p[n - 1] == 2, "context: n %d, first %d %d, last %d", n, p[0],
             n > 1 ? p[1] : -1, n ? p[n - 1] : -1);
    int32_t *ids = NULL;
    long k = template_encode_doc(t, m->tok, "Once", 4, &ids, err, sizeof err);
    TU_CHECK(k == 2 && ids[0] == 1 && ids[1] == 403, "ids: [T's last = <s>] + the document's (%ld: %d %d)", k,
             k > 0 ? ids[0] : -1, k > 1 ? ids[1] : -1);
    free(ids);
    TU_CHECK(template_n_after(t) == 1, "after: </s> is one token (%d)", template_n_after(t));
    template_destroy(&t);
    TU_CHECK(t == NULL, "destroy clears the pointer");
    template_destroy(&t);

    /* A span with whitespace inside, or empty, is text: the same tokens as
     * tokenize gives it. */
    p = prefix_of(m, "a <b c> <>{document}", &t, &n);
    int32_t *plain = NULL;
    long np = tokenizer_encode(m->tok, "a <b c> <>", 10, 1, &plain, err, sizeof err);
    TU_CHECK(np == n + 1 && !memcmp(p, plain, (size_t)n * sizeof *p), "text spans: %d vs %ld tokens", n + 1, np);
    free(plain);
    template_destroy(&t);

    const char *bad[] = {"<|im_start|>assistant\n{document}", "{document}<|im_end|>", "<s>{document}<eos>"};
    const char *name[] = {"'<|im_start|>'", "'<|im_end|>'", "'<eos>'"};
    for (int i = 0; i < 3; i++) {
        t = template_new(m->tok, bad[i], strlen(bad[i]), err, sizeof err);
        TU_CHECK(!t && strstr(err, name[i]) && strstr(err, "not a special token"), "refused, naming %s: %s", name[i],
                 err);
        template_destroy(&t);
    }
}

/* Scores ids (n of them) with a window of W and context ctx into rows. */
static long score(const model_t *m, int W, const int32_t *ctx, int n_ctx, const int32_t *ids, long n,
                  experiment_row_t *rows) {
    char err[LOG_ERRLEN];
    experiment_t *ex = experiment_new_ctx(m, W, EXPERIMENT_BATCH, NULL, ctx, n_ctx, err, sizeof err);
    TU_REQUIRE(ex, "%s", err);
    experiment_set_reference(ex, 1);
    long nr = experiment_score(ex, ids, (int)n, W / 2, rows, err, sizeof err);
    TU_REQUIRE(nr >= 0, "%s", err);
    experiment_destroy(&ex);
    return nr;
}

static void test_meaning(const model_t *m) {
    char err[LOG_ERRLEN];
    template_t *t = NULL, *id = NULL;
    int h, h0;
    const int32_t *ctx = prefix_of(m, "<s>Tom asked Lily for a story.</s><s>Lily said: {document}</s>\n", &t, &h);
    TU_REQUIRE(h > 5, "a context of %d tokens", h);
    int32_t *ids = NULL, *full = NULL, *plain = NULL;
    long n = template_encode_doc(t, m->tok, g_doc, strlen(g_doc), &ids, err, sizeof err);
    long np = tokenizer_encode(m->tok, g_doc, strlen(g_doc), 1, &plain, err, sizeof err);
    TU_REQUIRE(n > 20 && np == n, "the document's ids: %ld with the template, %ld without", n, np);
    TU_CHECK(!memcmp(ids + 1, plain + 1, (size_t)(n - 1) * sizeof *ids), "the document's tokens are the same");

    /* The identity template is no template. */
    prefix_of(m, "{document}", &id, &h0);
    int32_t *ids0 = NULL;
    long n0 = template_encode_doc(id, m->tok, g_doc, strlen(g_doc), &ids0, err, sizeof err);
    TU_CHECK(h0 == 0 && n0 == np && !memcmp(ids0, plain, (size_t)np * sizeof *ids0), "identity: h %d, ids", h0);
    free(ids0);
    template_destroy(&id);

    /* T + D, scored plainly, against D read through T. */
    full = malloc((size_t)(h + n) * sizeof *full);
    experiment_row_t *rt = calloc((size_t)n, sizeof *rt), *rf = calloc((size_t)(h + n), sizeof *rf),
                     *rp = calloc((size_t)n, sizeof *rp);
    TU_REQUIRE(full && rt && rf && rp, "memory");
    memcpy(full, ctx, (size_t)h * sizeof *full);
    memcpy(full + h, ids, (size_t)n * sizeof *full);
    const int W = 256; /* one window for both: the plain one sees T too */
    long nt = score(m, W, ctx, h, ids, n, rt), nf = score(m, W, NULL, 0, full, h + n, rf);
    long bad = 0;
    for (long i = 0; i < nt; i++) {
        const experiment_row_t *a = &rt[i], *b = &rf[i + h];
        bad += !tu_same_stats(a, b) || a->pos != i + 1 || b->pos != a->pos + h || a->st.context_len != i + 1 ||
               b->st.context_len != a->st.context_len + h;
    }
    TU_CHECK(nt == n - 1 && nf == h + n - 1 && bad == 0, "human rows: %ld of %ld differ from T + D's", bad, nt);
    /* Without the template the numbers are others. */
    long np_rows = score(m, W, NULL, 0, plain, np, rp), differ = 0;
    for (long i = 0; i < np_rows; i++) differ += rp[i].st.logprob != rt[i].st.logprob;
    TU_CHECK(np_rows == nt && differ > nt / 2, "without the template %ld of %ld rows differ", differ, nt);

    /* A small window: every window follows the context; pos and
     * context_len as without a template (experiment.h). */
    long nw = score(m, 16, ctx, h, ids, n, rt);
    long badw = 0;
    for (long i = 0; i < nw; i++) {
        int t1 = (int)i + 1, ctxl = t1 < 16 ? t1 : t1 - 8 * ((t1 - 16) / 8 + 1);
        badw += rt[i].pos != t1 || rt[i].st.context_len != ctxl;
    }
    TU_CHECK(nw == n - 1 && badw == 0, "windows: %ld rows with other pos or context_len", badw);

    /* The human continuation at cut c through T is T + D's at c + h. */
    experiment_cont_t cont = {6, 2, {1.0f, 0, 1.0f}, 99};
    experiment_row_t ht[6], hf[6], st[12], sf[12];
    uint64_t seeds[2];
    const int cut = 9;
    experiment_t *et = experiment_new_ctx(m, W, EXPERIMENT_BATCH, &cont, ctx, h, err, sizeof err),
                 *ef = experiment_new(m, W, EXPERIMENT_BATCH, &cont, err, sizeof err);
    TU_REQUIRE(et && ef, "%s", err);
    experiment_set_reference(et, 1);
    experiment_set_reference(ef, 1);
    TU_REQUIRE(!experiment_continue(et, ids, (int)n, cut, 5, ht, st, seeds, err, sizeof err) &&
                   !experiment_continue(ef, full, (int)(h + n), cut + h, 5, hf, sf, seeds, err, sizeof err),
               "%s", err);
    long badc = 0;
    for (int i = 0; i < 6; i++)
        badc += !tu_same_stats(&ht[i], &hf[i]) || ht[i].pos != cut + i || ht[i].st.context_len != cut + i ||
                hf[i].st.context_len != cut + h + i;
    TU_CHECK(badc == 0, "continuation at cut %d: %ld of 6 rows differ from T + D's at %d", cut, badc, cut + h);
    experiment_destroy(&et);
    experiment_destroy(&ef);

    free(rt), free(rf), free(rp), free(full), free(plain), free(ids);
    template_destroy(&t);
}

int main(void) {
    char err[LOG_ERRLEN];
    test_format();
    model_t *m = loader_load(tu_testdata("models/stories260K.gguf"), err, sizeof err);
    TU_REQUIRE(m, "%s", err);
    test_tokens(m);
    test_meaning(m);
    model_destroy(&m);
    return tu_failures ? 1 : 0;
}
