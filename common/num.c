/* num.c - see num.h. */
#include "num.h"

#include <errno.h>
#include <stdlib.h>

#include "log.h"

int num_long(const char *s, const char *what, long lo, long hi, long *out, char *err, size_t errlen) {
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end || v < lo || v > hi)
        return log_seterr(err, errlen, "%s: '%s' is not an integer in [%ld, %ld]", what, s, lo, hi);
    *out = v;
    return 0;
}

int num_double(const char *s, const char *what, double lo, double hi, double *out, char *err, size_t errlen) {
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || *end || !(v >= lo && v <= hi))
        return log_seterr(err, errlen, "%s: '%s' is not a number in [%g, %g]", what, s, lo, hi);
    *out = v;
    return 0;
}
