/* runset.h - a run's measurement settings read back from the database, for
 * the commands that reproduce what a run's workers computed (`tokshift
 * regenerate`, `tokshift score --run`).
 *
 * What it is: runs.settings (parsed by common/runsettings.c, the one parser
 * of them) as the values experiment.c takes.  What it is not: database
 * access (common/db_report.c reads the text). */
#ifndef TS_RUNSET_H
#define TS_RUNSET_H

#include <stddef.h>
#include <stdint.h>

#include "experiment.h"

typedef struct {
    int window, stride, cut_every;
    int32_t *prefix_lengths; /* malloc'd */
    size_t n_prefix_lengths;
    experiment_cont_t cont; /* cont_len 0: no continuations */
    char *chat_template;    /* the template file's text (malloc'd), NULL: none */
} runset_t;

/* Parses settings JSON into out.  Returns 0, or -1 with a message naming
 * the key that is missing or out of range.  Free with runset_free (also
 * after a failure). */
int runset_parse(const char *json, runset_t *out, char *err, size_t errlen);
void runset_free(runset_t *s);

/* Connects to conninfo and reads run's settings (by name or id) and model
 * identity (identity[65]).  Returns 0, 1 when there is no such run, or -1;
 * err says why. */
int runset_load(const char *conninfo, const char *run, runset_t *out, char identity[65], char *err,
                size_t errlen);

#endif
