/* errbound_tool.c - prints errbound.h's bounds for `tokshift score --ids`'s
 * rows, for the tests written in JavaScript (the llama.cpp conformance
 * tests): how far an fp32 evaluation of each row's statistics can be from
 * the exact value.
 *
 * Usage: errbound_tool MODEL [WINDOW] < ids
 * stdin: whitespace-separated token ids, scored as `tokshift score --ids`
 * scores them (window WINDOW, default score's: 512 or the model's trained
 * context when shorter; stride W/2).  stdout: a JSON array, one object per
 * row (pos 1..n-1) with the bounds of logprob, entropy, top1_logprob and
 * varentropy in nats.  Exit 0, 1 on an error, 2 on bad usage. */
#include <stdio.h>
#include <stdlib.h>

#include "errbound.h"
#include "log.h"
#include "loader.h"
#include "model.h"
#include "num.h"

int main(int argc, char **argv) {
    if (argc < 2 || argc > 3) {
        fprintf(stderr, "usage: errbound_tool MODEL [WINDOW] < ids\n");
        return 2;
    }
    char err[LOG_ERRLEN];
    model_t *m = loader_load(argv[1], err, sizeof err);
    if (!m) {
        fprintf(stderr, "errbound_tool: %s\n", err);
        return 1;
    }
    size_t cap = 1024, n = 0;
    int32_t *ids = malloc(cap * sizeof *ids);
    long v;
    while (ids && scanf("%ld", &v) == 1) {
        if (n == cap) {
            int32_t *nb = realloc(ids, 2 * cap * sizeof *ids);
            if (!nb) break;
            ids = nb, cap *= 2;
        }
        ids[n++] = (int32_t)v;
    }
    long W = 512 < m->cfg.n_ctx_train ? 512 : m->cfg.n_ctx_train;
    if (argc == 3 && num_long(argv[2], "WINDOW", 2, 1 << 24, &W, err, sizeof err)) {
        fprintf(stderr, "errbound_tool: %s\n", err);
        return 2;
    }
    eb_stats_t *b = malloc(sizeof *b * (n ? n : 1));
    if (!ids || !b || n < 2 || W < 2 || eb_score(m, ids, (int)n, (int)W, W / 2 > 0 ? (int)W / 2 : 1, b)) {
        fprintf(stderr, "errbound_tool: cannot bound %zu ids (bad ids, out of memory or past learned positions)\n", n);
        return 1;
    }
    printf("[");
    for (size_t i = 0; i + 1 < n; i++)
        printf("%s\n{\"pos\":%zu,\"logprob\":%.3e,\"entropy\":%.3e,\"top1_logprob\":%.3e,\"varentropy\":%.3e}",
               i ? "," : "", i + 1, b[i].logprob, b[i].entropy, b[i].top1_logprob, b[i].varentropy);
    printf("\n]\n");
    free(b);
    free(ids);
    model_destroy(&m);
    return 0;
}
