/* runsettings.c - see runsettings.h. */
#include "runsettings.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"

/* An integer member in [lo, hi]; absent is an error unless optional (then
 * *out is 0). */
static int get_int(json_t *o, const char *key, long lo, long hi, int optional, int32_t *out, char *err,
                   size_t errlen) {
    json_t *v = json_object_get(o, key);
    if (!v && optional) {
        *out = 0;
        return 0;
    }
    if (!json_is_integer(v)) return log_seterr(err, errlen, "run settings: '%s' is missing or not an integer", key);
    json_int_t x = json_integer_value(v);
    if (x < lo || x > hi)
        return log_seterr(err, errlen, "run settings: '%s' = %lld is outside [%ld, %ld]", key, (long long)x, lo, hi);
    *out = (int32_t)x;
    return 0;
}

static int get_num(json_t *o, const char *key, float *out, char *err, size_t errlen) {
    json_t *v = json_object_get(o, key);
    if (!json_is_number(v)) return log_seterr(err, errlen, "run settings: '%s' is missing or not a number", key);
    *out = (float)json_number_value(v);
    return 0;
}

int runsettings_parse(const char *json, runsettings_t *s, char *err, size_t errlen) {
    memset(s, 0, sizeof *s);
    json_error_t je;
    json_t *o = json_loads(json, 0, &je);
    int rc = -1;
    if (!json_is_object(o)) {
        log_seterr(err, errlen, "run settings are not a JSON object: %s", je.text);
        goto out;
    }
    if (get_int(o, "window", 2, 1L << 24, 0, &s->window, err, errlen) ||
        get_int(o, "stride", 1, 1L << 24, 0, &s->stride, err, errlen) ||
        get_int(o, "cut_every", 0, 1L << 30, 0, &s->cut_every, err, errlen) ||
        get_int(o, "cut_every_bytes", 0, 1L << 30, 1, &s->cut_every_bytes, err, errlen) ||
        get_int(o, "cont_len", 0, 1L << 24, 0, &s->cont_len, err, errlen) ||
        get_int(o, "samples", 0, 1L << 20, 0, &s->n_samples, err, errlen) ||
        get_int(o, "top_k", 0, 1L << 30, 0, &s->top_k, err, errlen) ||
        get_num(o, "temperature", &s->temperature, err, errlen) || get_num(o, "top_p", &s->top_p, err, errlen))
        goto out;
    json_t *seed = json_object_get(o, "seed");
    if (!json_is_integer(seed)) {
        log_seterr(err, errlen, "run settings: 'seed' is missing or not an integer");
        goto out;
    }
    s->seed = (uint64_t)json_integer_value(seed); /* stored as the uint64's bits */
    json_t *pl = json_object_get(o, "prefix_lengths");
    if (!json_is_array(pl)) {
        log_seterr(err, errlen, "run settings: 'prefix_lengths' is missing or not an array");
        goto out;
    }
    size_t n = json_array_size(pl);
    if (!(s->prefix_lengths = malloc((n ? n : 1) * sizeof *s->prefix_lengths))) {
        log_seterr(err, errlen, "out of memory");
        goto out;
    }
    for (size_t i = 0; i < n; i++) {
        json_t *v = json_array_get(pl, i);
        if (!json_is_integer(v) || json_integer_value(v) < 1 || json_integer_value(v) > INT32_MAX) {
            log_seterr(err, errlen, "run settings: prefix_lengths[%zu] is not a positive integer", i);
            goto out;
        }
        s->prefix_lengths[i] = (int32_t)json_integer_value(v);
    }
    s->n_prefix_lengths = n;
    json_t *tpl = json_object_get(o, "template");
    if (tpl && !json_is_string(tpl)) {
        log_seterr(err, errlen, "run settings: 'template' is not a string");
        goto out;
    }
    if (tpl && !(s->chat_template = strdup(json_string_value(tpl)))) {
        log_seterr(err, errlen, "out of memory");
        goto out;
    }
    rc = 0;
out:
    json_decref(o);
    return rc;
}

void runsettings_free(runsettings_t *s) {
    if (!s) return;
    free(s->prefix_lengths);
    free(s->chat_template);
    memset(s, 0, sizeof *s);
}
