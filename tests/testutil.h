/* testutil.h - the few helpers every C test in tests/ shares.
 *
 * Tests are plain executables run by CTest: exit 0 passes, exit 77 skips
 * (SKIP_RETURN_CODE), anything else fails.  Reference data is found through
 * TOKSHIFT_TESTDATA: unset means skip, set but a file missing means fail. */
#ifndef TS_TESTUTIL_H
#define TS_TESTUTIL_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static int tu_failures = 0;

#define TU_CHECK(cond, ...)                                                   \
    do {                                                                      \
        if (!(cond)) {                                                        \
            fprintf(stderr, "%s:%d: check failed: %s: ", __FILE__, __LINE__, \
                    #cond);                                                   \
            fprintf(stderr, __VA_ARGS__);                                     \
            fputc('\n', stderr);                                              \
            tu_failures++;                                                    \
        }                                                                     \
    } while (0)

/* Stops the test at once (for failures that make the rest meaningless).
 * cond is evaluated once. */
#define TU_REQUIRE(cond, ...)                                                 \
    do {                                                                      \
        int tu_ok_ = (cond) ? 1 : 0;                                          \
        TU_CHECK(tu_ok_, __VA_ARGS__);                                        \
        if (!tu_ok_) exit(1);                                                 \
    } while (0)

/* The next value of the splitmix64 generator whose state is *state: the
 * tests' seeded pseudo-random numbers. */
static inline uint64_t tu_splitmix64(uint64_t *state) {
    uint64_t z = (*state += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

/* Path of a file under $TOKSHIFT_TESTDATA in a static buffer (one at a time:
 * copy it if you need two).  Exits 77 (skip) when the variable is unset and 1
 * when the file is missing. */
static inline const char *tu_testdata(const char *rel) {
    static char buf[4096];
    const char *root = getenv("TOKSHIFT_TESTDATA");
    if (!root || !*root) {
        fprintf(stderr, "skip: TOKSHIFT_TESTDATA is not set\n");
        exit(77);
    }
    snprintf(buf, sizeof buf, "%s/%s", root, rel);
    struct stat st;
    if (stat(buf, &st) != 0) {
        fprintf(stderr, "FAIL: TOKSHIFT_TESTDATA is set but %s is missing\n",
                buf);
        exit(1);
    }
    return buf;
}

/* Reads a whole file into a malloc'd NUL-terminated buffer; exits 1 on error. */
static inline char *tu_read_file(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) {
        fprintf(stderr, "FAIL: cannot open %s\n", path);
        exit(1);
    }
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *b = malloc((size_t)n + 1);
    if (!b || fread(b, 1, (size_t)n, f) != (size_t)n) {
        fprintf(stderr, "FAIL: cannot read %s\n", path);
        exit(1);
    }
    b[n] = 0;
    fclose(f);
    if (len) *len = (size_t)n;
    return b;
}

static inline int tu_finish(const char *name) {
    if (tu_failures) {
        fprintf(stderr, "%s: %d check(s) failed\n", name, tu_failures);
        return 1;
    }
    fprintf(stderr, "%s: ok\n", name);
    return 0;
}

#endif
