/* loader.c - see loader.h. */
#include "loader.h"

#include <sys/stat.h>

#include "gguf.h"
#include "hfdir.h"

int loader_is_dir(const char *path) {
    struct stat sb;
    return stat(path, &sb) == 0 && S_ISDIR(sb.st_mode);
}

model_t *loader_load(const char *path, char *err, size_t errlen) {
    if (loader_is_dir(path)) return hfdir_load(path, err, errlen);
    gguf_t *g = gguf_open(path, err, errlen);
    return g ? model_from_gguf(g, NULL, NULL, err, errlen) : NULL;
}
