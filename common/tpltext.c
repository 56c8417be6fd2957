/* tpltext.c - see tpltext.h. */
#include "tpltext.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "utf8.h"

int tpltext_split(const char *text, size_t len, size_t *before_len, size_t *after_off, char *err, size_t errlen) {
    const size_t ml = sizeof TPLTEXT_MARKER - 1;
    if (len > TPLTEXT_MAX_BYTES)
        return log_seterr(err, errlen, "template: %zu bytes; a template holds at most %d", len, TPLTEXT_MAX_BYTES);
    long bad = utf8_invalid_at(text, len);
    if (bad >= 0) return log_seterr(err, errlen, "template: invalid UTF-8 at byte %ld", bad);
    if (memchr(text, 0, len)) return log_seterr(err, errlen, "template: a NUL byte");
    const char *at = NULL;
    for (size_t i = 0; i + ml <= len; i++) {
        if (memcmp(text + i, TPLTEXT_MARKER, ml)) continue;
        if (at)
            return log_seterr(err, errlen, "template: the marker %s appears more than once (at bytes %zu and %zu)",
                              TPLTEXT_MARKER, (size_t)(at - text), i);
        at = text + i;
    }
    if (!at)
        return log_seterr(err, errlen, "template: no marker %s where the document goes (e.g. "
                          "\"<|im_start|>assistant\\n%s<|im_end|>\\n\")", TPLTEXT_MARKER, TPLTEXT_MARKER);
    *before_len = (size_t)(at - text);
    *after_off = *before_len + ml;
    return 0;
}

char *tpltext_read(const char *path, char *err, size_t errlen) {
    char *buf = NULL;
    size_t len = 0, b, a;
    FILE *f = fopen(path, "rb");
    if (!f) {
        log_seterr(err, errlen, "template %s: cannot open it", path);
        return NULL;
    }
    /* One byte more than allowed, so that a larger file is seen as one. */
    if (!(buf = malloc(TPLTEXT_MAX_BYTES + 2))) {
        log_seterr(err, errlen, "template %s: out of memory", path);
        goto error;
    }
    len = fread(buf, 1, TPLTEXT_MAX_BYTES + 1, f);
    if (ferror(f)) {
        log_seterr(err, errlen, "template %s: cannot read it", path);
        goto error;
    }
    buf[len] = 0;
    char why[LOG_ERRLEN];
    if (tpltext_split(buf, len, &b, &a, why, sizeof why)) {
        log_seterr(err, errlen, "%s: %s", path, why);
        goto error;
    }
    fclose(f);
    return buf;
error:
    free(buf);
    fclose(f);
    return NULL;
}
