/* test_selftests.c - runs every module's built-in selftest (x_selftest():
 * the checks of a module's static internals, common/selftest.h), each
 * reported by name: the wire, corpus, GGUF, tokenizer, BPE and
 * pre-tokenizer, sampler, fleet, metrics, database encoder, digest and
 * quantization modules. */
#include "bpe.h"
#include "corpus.h"
#include "db.h"
#include "digest.h"
#include "fleet.h"
#include "gguf.h"
#include "metrics.h"
#include "pretok.h"
#include "quant.h"
#include "sampler.h"
#include "testutil.h"
#include "tokenizer.h"
#include "wire.h"

int main(void) {
    static const struct {
        const char *name;
        int (*run)(void);
    } all[] = {
        {"wire_selftest", wire_selftest},         {"corpus_selftest", corpus_selftest},
        {"gguf_selftest", gguf_selftest},         {"tokenizer_selftest", tokenizer_selftest},
        {"bpe_selftest", bpe_selftest},           {"pretok_selftest", pretok_selftest},
        {"sampler_selftest", sampler_selftest},   {"fleet_selftest", fleet_selftest},
        {"db_selftest", db_selftest},             {"digest_selftest", digest_selftest},
        {"quant_selftest", quant_selftest},       {"metrics_selftest", metrics_selftest},
    };
    for (size_t i = 0; i < sizeof all / sizeof *all; i++) {
        int rc = all[i].run();
        TU_CHECK(rc == 0, "%s returned %d", all[i].name, rc);
        fprintf(stderr, "%-20s %s\n", all[i].name, rc == 0 ? "ok" : "FAILED");
    }
    return tu_finish("test_selftests");
}
