/* path.h - joining file-system paths, the one place that does it.
 *
 * What it is: path_join, for modules that open files beside others (a
 * checkpoint's shards, its tokenizer).  What it is not: normalisation or
 * validation of paths. */
#ifndef TS_PATH_H
#define TS_PATH_H

#include <stdlib.h>
#include <string.h>

/* "dir/name" in a malloc'd string the caller frees; NULL when memory runs
 * out. */
static inline char *path_join(const char *dir, const char *name) {
    size_t a = strlen(dir), b = strlen(name);
    char *p = malloc(a + b + 2);
    if (!p) return NULL;
    memcpy(p, dir, a);
    p[a] = '/';
    memcpy(p + a + 1, name, b + 1);
    return p;
}

#endif
