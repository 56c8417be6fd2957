/* runset.c - see runset.h. */
#include "runset.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "db.h"
#include "log.h"
#include "runsettings.h"

int runset_parse(const char *json, runset_t *s, char *err, size_t errlen) {
    memset(s, 0, sizeof *s);
    runsettings_t rs;
    if (runsettings_parse(json, &rs, err, errlen)) {
        runsettings_free(&rs);
        return -1;
    }
    s->window = rs.window, s->stride = rs.stride, s->cut_every = rs.cut_every;
    s->prefix_lengths = rs.prefix_lengths, s->n_prefix_lengths = rs.n_prefix_lengths;
    s->chat_template = rs.chat_template;
    s->cont = (experiment_cont_t){rs.cont_len, rs.n_samples, {rs.temperature, rs.top_k, rs.top_p}, rs.seed};
    return 0;
}

void runset_free(runset_t *s) {
    if (!s) return;
    free(s->prefix_lengths);
    free(s->chat_template);
    memset(s, 0, sizeof *s);
}

int runset_load(const char *conninfo, const char *run, runset_t *out, char identity[65], char *err, size_t errlen) {
    memset(out, 0, sizeof *out);
    db_t *db = db_connect(conninfo, err, errlen);
    if (!db) return -1;
    int64_t run_id;
    char *id = NULL, *settings = NULL;
    int rc = db_run_settings(db, run, &run_id, &id, &settings, err, errlen);
    if (rc == 0) rc = runset_parse(settings, out, err, errlen);
    if (rc == 0) snprintf(identity, 65, "%s", id);
    free(id);
    free(settings);
    db_destroy(&db);
    return rc;
}
