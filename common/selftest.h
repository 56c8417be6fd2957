/* selftest.h - the check of the modules' built-in selftests.
 *
 * What it is: ST_CHECK, for the x_selftest() functions that test a module's
 * static internals (which tests/ cannot reach); each returns 0 when every
 * check passed.  tests/test_selftests.c runs all of them.  What it is not:
 * the test framework of tests/ (testutil.h).
 *
 * ST_CHECK(cond, fmt, ...) logs the function, file, line, the condition and
 * the formatted message when cond is false, and counts the failure in an
 * int `failures` that the enclosing function declares. */
#ifndef TS_SELFTEST_H
#define TS_SELFTEST_H

#include "log.h"

#define ST_CHECK(cond, ...)                                                    \
    do {                                                                       \
        if (!(cond)) {                                                         \
            log_error("%s: %s:%d: %s", __func__, __FILE__, __LINE__, #cond);   \
            log_error(__VA_ARGS__);                                            \
            failures++;                                                        \
        }                                                                      \
    } while (0)

#endif
