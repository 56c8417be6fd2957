/* num.h - checked parsing of numbers from the command line and
 * configuration: all of the text, in range, or an error that says which
 * option, what was given and what is allowed.  What it is not: a general
 * scanner (no units, no hex). */
#ifndef TS_NUM_H
#define TS_NUM_H

#include <stddef.h>

/* Parses s as a decimal integer in [lo, hi].  Returns 0 with *out set, or
 * -1 with "WHAT: 'S' is not an integer in [LO, HI]" in err (*out
 * untouched). */
int num_long(const char *s, const char *what, long lo, long hi, long *out, char *err, size_t errlen);

/* The same for a finite decimal number in [lo, hi]. */
int num_double(const char *s, const char *what, double lo, double hi, double *out, char *err, size_t errlen);

#endif
