/* test_experiment_rows.c - `tokshift experiment` prints the rows a worker
 * stores: the worker's own job_measure_doc (worker/job.c, which fills the
 * arrays db_commit_job writes) on one document, against the command's JSON
 * output for the same document, settings and document id, on the real
 * stories260K model.
 *
 * Exact: the stored arrays are fp32 (sequence_stats), the command prints
 * the engine's doubles with 17 digits, so every stored value must equal the
 * command's value rounded to fp32; ids, ranks, kinds, cuts, sample indices
 * and seeds must be equal.  (Positions and context lengths are not stored:
 * sequence_stats derives them; test_cli checks the command's against
 * `tokshift score` and the cut settings.) */
#include <jansson.h>
#include <math.h>
#include <unistd.h>

#include "job.h"
#include "log.h"
#include "loader.h"
#include "model.h"
#include "testutil.h"

static const char *g_text =
    "Once upon a time, there was a little dog named Max. Max liked to run in the big green park with his friend, a "
    "small cat called Lily. One day, the sun was hot and Max was thirsty. He saw a pond and ran to drink.";

int main(void) {
    char err[LOG_ERRLEN];
    const char *bin = getenv("TOKSHIFT_BIN");
    const char *mpath = tu_testdata("models/stories260K.gguf");
    TU_REQUIRE(bin, "TOKSHIFT_BIN is not set");
    model_t *m = loader_load(mpath, err, sizeof err);
    TU_REQUIRE(m, "%s", err);

    /* The worker's side. */
    int32_t pl[] = {5};
    job_settings_t s = {48, 16, pl, 1, 11, {6, 3, {1.0f, 0, 1.0f}, 12345}, 0, NULL, 0, NULL};
    experiment_t *ex = experiment_new(m, s.window, EXPERIMENT_BATCH, &s.cont, err, sizeof err);
    job_result_t *r = job_result_new();
    TU_REQUIRE(ex && r, "%s", err);
    TU_REQUIRE(job_measure_doc(ex, m, &s, 9, g_text, strlen(g_text), NULL, 0, r, NULL, err, sizeof err) == 0, "%s", err);
    db_results_t v;
    TU_REQUIRE(job_result_view(r, &v) == 0, "view");
    TU_REQUIRE(v.n_docs == 1 && !v.docs[0].error, "the document was measured");

    /* The command's side. */
    char doc[] = "/tmp/tokshift-exp-XXXXXX", cmd[3 * 4096 + 512];
    int fd = mkstemp(doc);
    TU_REQUIRE(fd >= 0 && write(fd, g_text, strlen(g_text)) == (ssize_t)strlen(g_text), "temp file");
    close(fd);
    snprintf(cmd, sizeof cmd,
             "'%s' experiment --model '%s' --window 48 --stride 16 --prefix-lengths 5 --cut-every 11 --cont-len 6 "
             "--samples 3 --temperature 1 --seed 12345 --doc-id 9 --format json < '%s'",
             bin, mpath, doc);
    FILE *p = popen(cmd, "r");
    TU_REQUIRE(p, "popen");
    json_error_t je;
    json_t *rows = json_loadf(p, 0, &je);
    int prc = pclose(p);
    unlink(doc);
    TU_REQUIRE(rows && json_is_array(rows) && prc == 0, "experiment output: %s (exit %d)", rows ? "" : je.text, prc);

    size_t at = 0, bad = 0, n_seqs = 0;
    for (size_t q = 0; q < v.n_seqs; q++) {
        const db_seq_t *sq = &v.seqs[q];
        n_seqs++;
        for (int32_t i = 0; i < sq->n_tokens; i++, at++) {
            json_t *row = json_array_get(rows, at);
            if (!row) {
                bad++;
                continue;
            }
            const char *kind = json_string_value(json_object_get(row, "kind"));
            json_t *cut = json_object_get(row, "cut"), *smp = json_object_get(row, "sample"),
                   *seed = json_object_get(row, "seed");
            int ok = kind && !strcmp(kind, db_kind_name(sq->kind)) &&
                     (sq->has_cut ? json_integer_value(cut) == sq->cut : json_is_null(cut)) &&
                     (sq->has_sample ? json_integer_value(smp) == sq->sample_idx && json_is_string(seed) &&
                                           strtoull(json_string_value(seed), NULL, 10) == sq->seed
                                     : json_is_null(smp) && json_is_null(seed)) &&
                     json_integer_value(json_object_get(row, "token_id")) == sq->token_id[i] &&
                     json_integer_value(json_object_get(row, "rank")) == sq->rank[i] &&
                     (float)json_real_value(json_object_get(row, "logprob")) == sq->logprob[i] &&
                     (float)json_number_value(json_object_get(row, "entropy")) == sq->entropy[i] &&
                     (float)json_number_value(json_object_get(row, "top1_logprob")) == sq->top1_logprob[i] &&
                     (float)json_number_value(json_object_get(row, "varentropy")) == sq->varentropy[i];
            if (!ok && bad++ < 5)
                fprintf(stderr, "sequence %d (%s) token %d differs from experiment row %zu\n", sq->seq_no,
                        db_kind_name(sq->kind), i, at);
        }
    }
    fprintf(stderr, "%zu sequences, %zu rows compared\n", n_seqs, at);
    TU_CHECK(bad == 0, "%zu stored rows differ from tokshift experiment's", bad);
    TU_CHECK(at == json_array_size(rows), "experiment printed %zu rows, the worker stored %zu", json_array_size(rows),
             at);
    TU_CHECK(n_seqs > 10, "%zu sequences: cuts and samples were made", n_seqs);
    json_decref(rows);

    /* Each continuation's cut_byte is where its cut falls in the text: the
     * length of the prefix's tokens as the tokenizer's own decoder gives
     * them (tokenizer_decode, leading space stripped; job.c lays the
     * tokens' bytes over the text instead), and that prefix is the text's.
     * With --cut-every-bytes 40, the cuts are the first tokens starting
     * with a space at or after 40, 80, ... bytes (found here by decoding
     * every prefix). */
    int32_t *ids = NULL;
    long n = tokenizer_encode(m->tok, g_text, strlen(g_text), tokenizer_adds_bos(m->tok), &ids, err, sizeof err);
    TU_REQUIRE(n > 20, "%s", err);
    size_t *starts = malloc(((size_t)n + 1) * sizeof *starts); /* decoded length of ids[0..i) */
    TU_REQUIRE(starts, "out of memory");
    for (long i = 0; i <= n; i++) {
        size_t len = 0;
        char *d = tokenizer_decode(m->tok, ids, (size_t)i, 1, &len);
        TU_REQUIRE(d, "decode");
        TU_CHECK(!memcmp(d, g_text, len), "the decoded prefix of %ld tokens is the text's", i);
        starts[i] = len;
        free(d);
    }
    size_t n_cont = 0, bad_cb = 0;
    for (size_t q = 0; q < v.n_seqs; q++) {
        const db_seq_t *sq = &v.seqs[q];
        if (!sq->has_cut) continue;
        n_cont++;
        if (!sq->has_cut_byte || (size_t)sq->cut_byte != starts[sq->cut]) bad_cb++;
    }
    TU_CHECK(n_cont > 10 && bad_cb == 0, "%zu of %zu continuations' cut_byte differ from the decoded prefix", bad_cb,
             n_cont);
    s.cut_every_bytes = 40;
    job_result_reset(r);
    TU_REQUIRE(job_measure_doc(ex, m, &s, 9, g_text, strlen(g_text), NULL, 0, r, NULL, err, sizeof err) == 0, "%s", err);
    TU_REQUIRE(job_result_view(r, &v) == 0 && v.n_docs == 1 && !v.docs[0].error, "measured by bytes");
    int32_t want[64];
    size_t n_want = 0;
    for (size_t target = 40; n_want < 64; target += 40) {
        long c = 1;
        while (c + s.cont.cont_len <= n && (starts[c] < target || g_text[starts[c]] != ' ')) c++;
        if (c + s.cont.cont_len > n) break;
        if (!n_want || want[n_want - 1] != c) want[n_want++] = (int32_t)c;
    }
    size_t got = 0, bad_cut = 0;
    for (size_t q = 0; q < v.n_seqs; q++) {
        const db_seq_t *sq = &v.seqs[q];
        if (sq->kind != DB_KIND_HUMAN_CONT) continue;
        if (got >= n_want || sq->cut != want[got] || (size_t)sq->cut_byte != starts[sq->cut]) bad_cut++;
        got++;
    }
    TU_CHECK(n_want >= 3 && got == n_want && bad_cut == 0, "--cut-every-bytes 40: %zu cuts, %zu expected, %zu differ",
             got, n_want, bad_cut);
    free(starts);
    free(ids);
    job_result_destroy(&r);
    experiment_destroy(&ex);
    model_destroy(&m);
    return tu_finish("test_experiment_rows");
}
