/* resume.c - see resume.h. */
#include "resume.h"

#include <fcntl.h>
#include <inttypes.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "digest.h"
#include "log.h"

#define ENDS_BYTES 4096

/* Appends a formatted item to out, "; "-separated; a full out ends in "...". */
static void append(char *out, size_t outlen, const char *fmt, ...) {
    size_t len = strlen(out);
    if (len + 4 >= outlen) return;
    if (len) len += (size_t)snprintf(out + len, outlen - len, "; ");
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(out + len, outlen - len, fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= outlen - len) snprintf(out + outlen - 4, 4, "...");
}

/* A JSON value as compact text (malloc'd), "(none)" for a missing one. */
static char *value_text(const json_t *v) {
    return v ? json_dumps(v, JSON_COMPACT | JSON_SORT_KEYS | JSON_ENCODE_ANY) : strdup("(none)");
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(const char *const *)a, *(const char *const *)b); }

int resume_json_diff(const char *registered, const char *given, char *out, size_t outlen) {
    json_t *a = json_loads(registered, 0, NULL), *b = json_loads(given, 0, NULL);
    const char **keys = NULL;
    int n_diff = -1;
    out[0] = 0;
    if (!json_is_object(a) || !json_is_object(b)) goto done;
    size_t n_keys = 0;
    if (!(keys = malloc((json_object_size(a) + json_object_size(b) + 1) * sizeof *keys))) goto done;
    const char *k;
    json_t *v;
    json_object_foreach(a, k, v) keys[n_keys++] = k;
    json_object_foreach(b, k, v) if (!json_object_get(a, k)) keys[n_keys++] = k;
    qsort(keys, n_keys, sizeof *keys, cmp_str);
    n_diff = 0;
    for (size_t i = 0; i < n_keys; i++) {
        json_t *x = json_object_get(a, keys[i]), *y = json_object_get(b, keys[i]);
        /* jsonb keeps 1.0 as 1.0 and jansson reads 1 as an integer: numbers
         * compare by value. */
        int same = x && y && (json_is_number(x) && json_is_number(y) ? json_number_value(x) == json_number_value(y)
                                                                     : json_equal(x, y));
        if (same) continue;
        char *tx = value_text(x), *ty = value_text(y);
        append(out, outlen, "%s: %s (registered) vs %s (given)", keys[i], tx ? tx : "?", ty ? ty : "?");
        free(tx);
        free(ty);
        n_diff++;
    }
done:
    free(keys);
    json_decref(a);
    json_decref(b);
    return n_diff;
}

/* sha256 of the first and last ENDS_BYTES of an open file of size bytes
 * (the whole file when it is shorter than both). */
static int hash_ends(int fd, int64_t size, char hex[65]) {
    static unsigned char buf[ENDS_BYTES];
    digest_sha256_t h;
    digest_sha256_init(&h);
    int64_t offs[2] = {0, size > 2 * ENDS_BYTES ? size - ENDS_BYTES : ENDS_BYTES};
    for (int k = 0; k < 2; k++) {
        if (offs[k] >= size) break;
        int64_t want = size - offs[k] < ENDS_BYTES ? size - offs[k] : ENDS_BYTES;
        ssize_t got = pread(fd, buf, (size_t)want, (off_t)offs[k]);
        if (got != (ssize_t)want) return -1;
        digest_sha256_update(&h, buf, (size_t)got);
    }
    uint8_t d[32];
    digest_sha256_final(&h, d);
    digest_hex(d, hex);
    return 0;
}

char *resume_fingerprint(const corpus_t *corpus, char *err, size_t errlen) {
    json_t *files = json_array();
    char *txt = NULL;
    if (!files) goto oom;
    for (size_t i = 0; i < corpus_n_files(corpus); i++) {
        const char *path = corpus_file(corpus, i);
        struct stat st;
        char hex[65], mtime[48];
        int fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0 || fstat(fd, &st) || hash_ends(fd, (int64_t)st.st_size, hex)) {
            log_seterr(err, errlen, "%s: cannot read it to fingerprint the corpus", path);
            if (fd >= 0) close(fd);
            json_decref(files);
            return NULL;
        }
        close(fd);
        snprintf(mtime, sizeof mtime, "%lld.%09ld", (long long)st.st_mtim.tv_sec, (long)st.st_mtim.tv_nsec);
        json_t *f = json_pack("{s:s, s:I, s:s, s:s}", "path", path, "size", (json_int_t)st.st_size, "mtime", mtime,
                              "ends_sha256", hex);
        if (!f || json_array_append_new(files, f)) goto oom;
    }
    if ((txt = json_dumps(files, JSON_COMPACT))) {
        json_decref(files);
        return txt;
    }
oom:
    json_decref(files);
    log_seterr(err, errlen, "out of memory fingerprinting the corpus");
    return NULL;
}

/* The files of a fingerprint by path (a new object; the entries are
 * borrowed from files), so that comparing two costs linear time. */
static json_t *by_path(json_t *files) {
    json_t *m = json_object(), *f;
    size_t i;
    json_array_foreach(files, i, f) {
        const char *path = json_string_value(json_object_get(f, "path"));
        if (!m || !path || json_object_set(m, path, f)) {
            json_decref(m);
            return NULL;
        }
    }
    return m;
}

int resume_fingerprint_diff(const char *registered, const char *now, char *out, size_t outlen) {
    json_t *a = json_loads(registered, 0, NULL), *b = json_loads(now, 0, NULL);
    json_t *ma = json_is_array(a) ? by_path(a) : NULL, *mb = json_is_array(b) ? by_path(b) : NULL;
    int n_diff = -1;
    out[0] = 0;
    if (!ma || !mb) goto done;
    n_diff = 0;
    size_t i;
    json_t *f;
    json_array_foreach(a, i, f) {
        const char *path = json_string_value(json_object_get(f, "path"));
        json_t *g = json_object_get(mb, path);
        if (!g) {
            append(out, outlen, "removed %s", path);
            n_diff++;
            continue;
        }
        char what[512] = "";
        json_int_t s1 = json_integer_value(json_object_get(f, "size")), s2 = json_integer_value(json_object_get(g, "size"));
        const char *m1 = json_string_value(json_object_get(f, "mtime")), *m2 = json_string_value(json_object_get(g, "mtime"));
        const char *h1 = json_string_value(json_object_get(f, "ends_sha256")),
                   *h2 = json_string_value(json_object_get(g, "ends_sha256"));
        if (s1 != s2) append(what, sizeof what, "size %" JSON_INTEGER_FORMAT " -> %" JSON_INTEGER_FORMAT, s1, s2);
        if (!m1 || !m2 || strcmp(m1, m2)) append(what, sizeof what, "mtime %s -> %s", m1 ? m1 : "?", m2 ? m2 : "?");
        if (!h1 || !h2 || strcmp(h1, h2)) append(what, sizeof what, "first/last %d bytes differ", ENDS_BYTES);
        if (what[0]) {
            append(out, outlen, "%s changed (%s)", path, what);
            n_diff++;
        }
    }
    json_array_foreach(b, i, f) {
        const char *path = json_string_value(json_object_get(f, "path"));
        if (!json_object_get(ma, path)) {
            append(out, outlen, "added %s", path);
            n_diff++;
        }
    }
done:
    json_decref(ma);
    json_decref(mb);
    json_decref(a);
    json_decref(b);
    return n_diff;
}
