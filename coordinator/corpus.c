/* corpus.c - see corpus.h.
 *
 * What it is: four small layers, bottom up.
 *   src_*    one file's bytes, decompressed: read(2) for plain files,
 *            ZSTD_decompressStream for zstd, gzread on gzdopen for gzip (both
 *            go on across concatenated frames / members), chosen by the magic
 *            bytes.  Memory is bounded: a fixed input buffer and a fixed
 *            output chunk, whatever the file's size.
 *   lr_*     lines out of those bytes: a line that lies inside the current
 *            chunk is handed out in place (no copy); one that spans chunks is
 *            gathered in a growable buffer, which never grows past
 *            max_doc_bytes: the rest of a longer line is read and dropped.
 *   jl_*     one JSONL line into a document: UTF-8 check of the raw bytes,
 *            jansson parse, field extraction, and the metadata object built
 *            from the line's own bytes (members other than the text and id
 *            fields, whitespace outside strings removed), so numbers and
 *            escapes stay exactly as written.  Re-serialising with jansson
 *            would print 0.1 as 0.10000000000000001, 1E5 as 100000.0, and
 *            could not represent integers beyond 2^63 at all (jansson parses
 *            with JSON_DECODE_INT_AS_REAL here, so such lines still load).
 *   corpus_* the file list (glob, directories, de-duplication by device and
 *            inode) and the document stream.
 *
 * What it is not: a JSON library (jansson parses and validates every line;
 * the member scanner below only ever walks text jansson has accepted), nor
 * a de-duplicator of document ids (the database layer does that).
 */
#include "corpus.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <glob.h>
#include <jansson.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>
#include <zlib.h>
#include <zstd.h>

#include "log.h"
#include "utf8.h"

#define DEFAULT_MAX_DOC ((size_t)256 << 20)
#define CHUNK_BYTES ((size_t)1 << 20)   /* decompressed bytes per read */
#define IN_BYTES ((size_t)256 << 10)    /* compressed bytes per read (zstd) */
#define LINE_KEEP ((size_t)16 << 20)    /* a line buffer above this is freed between lines */
#define ZSTD_WINDOW_LOG_MAX 31          /* accept frames made with zstd --long=31 */

/* ---- small helpers ---------------------------------------------------- */

/* malloc'd printf; NULL when out of memory. */
static char *xprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static char *xprintf(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    char *s = NULL;
    int r = vasprintf(&s, fmt, ap);
    va_end(ap);
    return r < 0 ? NULL : s;
}

/* malloc'd copy of s[0..n) plus a NUL; NULL when out of memory. */
static char *xstrndup(const char *s, size_t n) {
    char *d = malloc(n + 1);
    if (!d) return NULL;
    if (n) memcpy(d, s, n);
    d[n] = 0;
    return d;
}

/* Writes "bytes xx xx .." (up to 4 bytes from s[off], within len) into buf. */
static void hex_near(const char *s, size_t len, size_t off, char *buf, size_t buflen) {
    size_t used = (size_t)snprintf(buf, buflen, "bytes");
    for (size_t i = off; i < len && i < off + 4 && used < buflen; i++)
        used += (size_t)snprintf(buf + used, buflen - used, " %02x", (unsigned char)s[i]);
}

/* "an object", "a string", "null", ... for messages (static text). */
static const char *json_type_name(const json_t *v) {
    switch (json_typeof(v)) {
    case JSON_OBJECT: return "an object";
    case JSON_ARRAY: return "an array";
    case JSON_STRING: return "a string";
    case JSON_INTEGER:
    case JSON_REAL: return "a number";
    case JSON_TRUE: return "true";
    case JSON_FALSE: return "false";
    case JSON_NULL: return "null";
    }
    return "an unknown value";
}

/* ---- growable string -------------------------------------------------- */

typedef struct {
    char *s;
    size_t len, cap;
} sbuf_t;

/* Appends p[0..n); keeps s NUL-terminated.  -1 when out of memory. */
static int sb_put(sbuf_t *b, const char *p, size_t n) {
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 64;
        while (cap < b->len + n + 1) cap *= 2;
        char *s = realloc(b->s, cap);
        if (!s) return -1;
        b->s = s;
        b->cap = cap;
    }
    memcpy(b->s + b->len, p, n);
    b->len += n;
    b->s[b->len] = 0;
    return 0;
}

/* ---- member scanner over jansson-validated JSON text ------------------ */

/* JSON whitespace (RFC 8259: space, tab, LF, CR). */
static int is_json_ws(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }

/* The index of the first non-whitespace byte at or after i (n if none). */
static size_t skip_ws(const char *p, size_t n, size_t i) {
    while (i < n && is_json_ws(p[i])) i++;
    return i;
}

/* p[i] is the opening quote of a string; returns the index just past its
 * closing quote (n when there is none).  Finds quotes with memchr and counts
 * the backslashes before each, so long strings cost little. */
static size_t skip_string(const char *p, size_t n, size_t i) {
    size_t j = i + 1;
    while (j < n) {
        const char *q = memchr(p + j, '"', n - j);
        if (!q) return n;
        size_t k = (size_t)(q - p), b = 0;
        while (k - b - 1 > i && p[k - b - 1] == '\\') b++;
        if (b % 2 == 0) return k + 1;
        j = k + 1;
    }
    return n;
}

/* p[i] starts a value; returns the index just past it (n on a mismatch). */
static size_t skip_value(const char *p, size_t n, size_t i) {
    if (i >= n) return n;
    if (p[i] == '"') return skip_string(p, n, i);
    if (p[i] == '{' || p[i] == '[') {
        size_t depth = 0;
        while (i < n) {
            char c = p[i];
            if (c == '"') {
                i = skip_string(p, n, i);
                continue;
            }
            if (c == '{' || c == '[') depth++;
            else if (c == '}' || c == ']') {
                if (--depth == 0) return i + 1;
            }
            i++;
        }
        return n;
    }
    while (i < n && p[i] != ',' && p[i] != '}' && p[i] != ']' && !is_json_ws(p[i])) i++;
    return i;
}

/* Appends p[0..n) with the whitespace outside strings removed. */
static int sb_put_compact(sbuf_t *b, const char *p, size_t n) {
    size_t i = 0;
    while (i < n) {
        size_t j = i;
        if (p[i] == '"') j = skip_string(p, n, i);
        else if (is_json_ws(p[i])) {
            i++;
            continue;
        } else
            while (j < n && p[j] != '"' && !is_json_ws(p[j])) j++;
        if (sb_put(b, p + i, j - i)) return -1;
        i = j;
    }
    return 0;
}

/* Whether the raw key p[ks..ke) (quotes included) decodes to name. */
static int key_is(const char *p, size_t ks, size_t ke, const char *name) {
    if (!name || ke < ks + 2) return 0;
    const char *k = p + ks + 1;
    size_t kn = ke - ks - 2;
    if (!memchr(k, '\\', kn)) return kn == strlen(name) && memcmp(k, name, kn) == 0;
    json_error_t je; /* an escaped key (rare): let jansson decode it */
    json_t *v = json_loadb(p + ks, ke - ks, JSON_DECODE_ANY, &je);
    int same = v && json_is_string(v) && json_string_length(v) == strlen(name) &&
               memcmp(json_string_value(v), name, strlen(name)) == 0;
    json_decref(v);
    return same;
}

/* Builds in *meta the object text p[0..n) (which jansson accepted as an
 * object) without the members named skip_a or skip_b, compact, members and
 * their bytes otherwise as written; sets *id_at and *id_len to the span of the value of the
 * last member named id_key (jansson keeps the last of duplicate keys too),
 * or *id_len = 0 when there is none.  Returns 0; -1 when out of memory; -2
 * when the text is not the object the scanner expects (a bug). */
static int meta_build(const char *p, size_t n, const char *skip_a, const char *skip_b, const char *id_key,
                      sbuf_t *meta, size_t *id_at, size_t *id_len) {
    *id_len = 0;
    meta->len = 0;
    if (sb_put(meta, "{", 1)) return -1;
    size_t i = skip_ws(p, n, 0);
    if (i >= n || p[i] != '{') return -2;
    i = skip_ws(p, n, i + 1);
    int first = 1;
    if (i < n && p[i] == '}') return sb_put(meta, "}", 1);
    while (i < n) {
        if (p[i] != '"') return -2;
        size_t ks = i, ke = skip_string(p, n, i);
        i = skip_ws(p, n, ke);
        if (i >= n || p[i] != ':') return -2;
        size_t vs = skip_ws(p, n, i + 1), ve = skip_value(p, n, vs);
        if (vs >= n || ve > n || ve == vs) return -2;
        if (key_is(p, ks, ke, id_key)) *id_at = vs, *id_len = ve - vs;
        if (!key_is(p, ks, ke, skip_a) && !key_is(p, ks, ke, skip_b)) {
            if ((!first && sb_put(meta, ",", 1)) || sb_put(meta, p + ks, ke - ks) || sb_put(meta, ":", 1) ||
                sb_put_compact(meta, p + vs, ve - vs))
                return -1;
            first = 0;
        }
        i = skip_ws(p, n, ve);
        if (i < n && p[i] == ',') {
            i = skip_ws(p, n, i + 1);
            continue;
        }
        if (i < n && p[i] == '}') return sb_put(meta, "}", 1);
        return -2;
    }
    return -2;
}

/* Whether a metadata text holds the escape \u0000 (not the text "\\u0000",
 * an escaped backslash then "u0000").  PostgreSQL's jsonb refuses it. */
static int has_escaped_nul(const char *s, size_t n) {
    for (size_t i = 0; i + 6 <= n; i++) {
        if (s[i] != '\\') continue;
        if (s[i + 1] == 'u' && s[i + 2] == '0' && s[i + 3] == '0' && s[i + 4] == '0' && s[i + 5] == '0') return 1;
        i++; /* skip the escaped character, so "\\u0000" is not matched */
    }
    return 0;
}

/* ---- the file list ---------------------------------------------------- */

typedef struct {
    char *path;
    dev_t dev;
    ino_t ino;
    size_t order;
} fent_t;

typedef struct {
    fent_t *v;
    size_t n, cap;
} flist_t;

/* Frees the list and its paths; leaves it empty. */
static void fl_free(flist_t *fl) {
    for (size_t i = 0; i < fl->n; i++) free(fl->v[i].path);
    free(fl->v);
    memset(fl, 0, sizeof *fl);
}

/* Appends a copy of path.  -1 when out of memory. */
static int fl_add(flist_t *fl, const char *path, const struct stat *st) {
    if (fl->n == fl->cap) {
        size_t cap = fl->cap ? 2 * fl->cap : 64;
        fent_t *v = realloc(fl->v, cap * sizeof *v);
        if (!v) return -1;
        fl->v = v;
        fl->cap = cap;
    }
    char *c = strdup(path);
    if (!c) return -1;
    fl->v[fl->n] = (fent_t){c, st->st_dev, st->st_ino, fl->n};
    fl->n++;
    return 0;
}

/* qsort orders: strings bytewise; files by (device, inode, order); by order. */
static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

static int cmp_inode(const void *a, const void *b) {
    const fent_t *x = a, *y = b;
    if (x->dev != y->dev) return x->dev < y->dev ? -1 : 1;
    if (x->ino != y->ino) return x->ino < y->ino ? -1 : 1;
    return x->order < y->order ? -1 : x->order > y->order;
}

static int cmp_order(const void *a, const void *b) {
    const fent_t *x = a, *y = b;
    return x->order < y->order ? -1 : x->order > y->order;
}

/* Adds the regular files of directory dir (not recursing, hidden names
 * skipped, as dir/ * in a shell), sorted bytewise.  Returns 0, -1 with a
 * message (unreadable or no regular file). */
static int fl_add_dir(flist_t *fl, const char *dir, char *err, size_t errlen) {
    char **names = NULL;
    size_t n = 0, cap = 0;
    DIR *d = opendir(dir);
    if (!d) return log_seterr(err, errlen, "cannot read directory '%s': %s", dir, strerror(errno));
    size_t dl = strlen(dir);
    const char *sep = dl && dir[dl - 1] == '/' ? "" : "/";
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.') continue;
        char *full = xprintf("%s%s%s", dir, sep, e->d_name);
        struct stat st;
        if (full && (stat(full, &st) != 0 || !S_ISREG(st.st_mode))) {
            free(full);
            continue;
        }
        if (full && n == cap) {
            char **nn = realloc(names, (cap ? 2 * cap : 64) * sizeof *nn);
            if (nn) names = nn, cap = cap ? 2 * cap : 64;
        }
        if (!full || n == cap) {
            free(full);
            log_seterr(err, errlen, "out of memory listing '%s'", dir);
            goto error;
        }
        names[n++] = full;
    }
    if (n == 0) {
        log_seterr(err, errlen, "directory '%s' holds no regular file", dir);
        goto error;
    }
    qsort(names, n, sizeof *names, cmp_str);
    for (size_t i = 0; i < n; i++) {
        struct stat st;
        if (stat(names[i], &st) != 0) {
            log_seterr(err, errlen, "'%s': %s", names[i], strerror(errno));
            goto error;
        }
        if (fl_add(fl, names[i], &st)) {
            log_seterr(err, errlen, "out of memory listing '%s'", dir);
            goto error;
        }
    }
    for (size_t i = 0; i < n; i++) free(names[i]);
    free(names);
    closedir(d);
    return 0;
error:
    for (size_t i = 0; i < n; i++) free(names[i]);
    free(names);
    closedir(d);
    return -1;
}

/* Adds what one matched path stands for: itself, or a directory's files. */
static int fl_add_path(flist_t *fl, const char *path, const char *pattern, char *err, size_t errlen) {
    struct stat st;
    if (stat(path, &st) != 0)
        return log_seterr(err, errlen, "'%s' (from '%s'): %s", path, pattern, strerror(errno));
    if (S_ISDIR(st.st_mode)) return fl_add_dir(fl, path, err, errlen);
    if (fl_add(fl, path, &st)) return log_seterr(err, errlen, "out of memory");
    return 0;
}

/* Expands one pattern with glob(3), matches sorted bytewise (glob's own order
 * follows the locale's collation).  A pattern that matches nothing but names
 * an existing path literally (say "a[1].txt") is taken as that path. */
static int fl_add_pattern(flist_t *fl, const char *pattern, char *err, size_t errlen) {
    glob_t g;
    memset(&g, 0, sizeof g);
    int r = glob(pattern, GLOB_NOSORT, NULL, &g);
    if (r == GLOB_NOMATCH) {
        globfree(&g);
        struct stat st;
        if (stat(pattern, &st) == 0) return fl_add_path(fl, pattern, pattern, err, errlen);
        return log_seterr(err, errlen, "no file matches '%s'", pattern);
    }
    if (r != 0) {
        globfree(&g);
        return log_seterr(err, errlen, "cannot expand '%s': %s", pattern,
                          r == GLOB_NOSPACE ? "out of memory" : "a directory could not be read");
    }
    qsort(g.gl_pathv, g.gl_pathc, sizeof *g.gl_pathv, cmp_str);
    for (size_t i = 0; i < g.gl_pathc; i++) {
        if (fl_add_path(fl, g.gl_pathv[i], pattern, err, errlen)) {
            globfree(&g);
            return -1;
        }
    }
    globfree(&g);
    return 0;
}

/* Keeps the first occurrence of every file (same device and inode: the same
 * file under two names, "a" and "./a", or a link, counts once). */
static void fl_dedup(flist_t *fl) {
    if (fl->n < 2) return;
    qsort(fl->v, fl->n, sizeof *fl->v, cmp_inode);
    size_t k = 1;
    for (size_t i = 1; i < fl->n; i++) {
        if (fl->v[i].dev == fl->v[k - 1].dev && fl->v[i].ino == fl->v[k - 1].ino) free(fl->v[i].path);
        else fl->v[k++] = fl->v[i];
    }
    fl->n = k;
    qsort(fl->v, fl->n, sizeof *fl->v, cmp_order);
}

/* ---- decompressed bytes of one file ----------------------------------- */

typedef enum { COMP_NONE, COMP_GZIP, COMP_ZSTD } comp_t;

typedef struct {
    comp_t comp;
    int fd;           /* -1 when closed or owned by gz */
    gzFile gz;
    long long size;   /* file size in bytes (for messages), -1 unknown */
    size_t in_len, in_pos; /* corpus_t.inbuf: raw bytes read, consumed */
    long long in_base;     /* file offset of inbuf[0] */
    int in_eof;
    size_t zlast;     /* last ZSTD_decompressStream result: 0 between frames */
    long long out_total; /* decompressed bytes handed out */
} src_t;

struct corpus {
    char *text_field, *id_field; /* id_field NULL: no id field */
    size_t max_doc;
    char **files;
    size_t n_files, next_file;
    /* the JSONL file being read (text files are read in one call) */
    int cur_open;
    const char *cur_path;
    uint64_t lineno;
    src_t src;
    ZSTD_DCtx *zd;
    unsigned char *inbuf; /* IN_BYTES */
    char *chunk;          /* CHUNK_BYTES */
    size_t chunk_len, chunk_pos;
    int chunk_eof;
    char *line;           /* a line that spans chunks */
    size_t line_cap;
    sbuf_t meta;          /* reused metadata buffer */
    int broken;
};

/* Closes the file (and its gzip state) and zeroes *s; idempotent. */
static void src_close(src_t *s) {
    if (s->gz) gzclose(s->gz);
    if (s->fd >= 0) close(s->fd);
    memset(s, 0, sizeof *s);
    s->fd = -1;
}

/* Opens path and picks the decompressor from its first bytes.  Returns 0;
 * -1 with a reason in msg (the file cannot be read; the caller reports it as
 * a document error); -2 when out of memory. */
static int src_open(corpus_t *c, const char *path, char *msg, size_t msglen) {
    src_t *s = &c->src;
    src_close(s);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return log_seterr(msg, msglen, "cannot open: %s", strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0 || S_ISDIR(st.st_mode)) {
        int e = S_ISDIR(st.st_mode) ? EISDIR : errno;
        close(fd);
        return log_seterr(msg, msglen, "cannot read: %s", strerror(e));
    }
    s->size = S_ISREG(st.st_mode) ? (long long)st.st_size : -1;
#ifdef POSIX_FADV_SEQUENTIAL
    (void)posix_fadvise(fd, 0, 0, POSIX_FADV_SEQUENTIAL);
#endif
    /* Sniff four bytes; they stay in inbuf for the plain and zstd readers. */
    size_t got = 0;
    while (got < 4) {
        ssize_t r = read(fd, c->inbuf + got, 4 - got);
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) {
            int e = errno;
            close(fd);
            return log_seterr(msg, msglen, "read error: %s", strerror(e));
        }
        if (r == 0) break;
        got += (size_t)r;
    }
    const unsigned char *m = c->inbuf;
    s->fd = fd;
    s->in_len = got;
    s->in_eof = got < 4;
    if (got >= 2 && m[0] == 0x1f && m[1] == 0x8b) {
        s->comp = COMP_GZIP;
        if (lseek(fd, 0, SEEK_SET) != 0) {
            src_close(s);
            return log_seterr(msg, msglen, "gzip input must be seekable: %s", strerror(errno));
        }
        s->gz = gzdopen(fd, "rb");
        if (!s->gz) {
            src_close(s);
            return -2;
        }
        s->fd = -1; /* gz owns it now */
        gzbuffer(s->gz, (unsigned)IN_BYTES);
    } else if (got == 4 && ((m[0] == 0x28 && m[1] == 0xb5 && m[2] == 0x2f && m[3] == 0xfd) ||
                            /* a skippable frame first, as pzstd writes */
                            ((m[0] & 0xf0) == 0x50 && m[1] == 0x2a && m[2] == 0x4d && m[3] == 0x18))) {
        s->comp = COMP_ZSTD;
        ZSTD_DCtx_reset(c->zd, ZSTD_reset_session_only);
    } else {
        s->comp = COMP_NONE;
    }
    return 0;
}

/* Reads up to cap decompressed bytes into buf.  Returns the count (> 0), 0
 * at the end, -1 with a reason naming the byte offset in msg (corrupt or
 * truncated data, read error). */
static long src_read(corpus_t *c, char *buf, size_t cap, char *msg, size_t msglen) {
    src_t *s = &c->src;
    if (s->comp == COMP_GZIP) {
        int r = gzread(s->gz, buf, (unsigned)(cap > INT_MAX ? INT_MAX : cap));
        if (r > 0) {
            s->out_total += r;
            return r;
        }
        int e = Z_OK;
        const char *why = gzerror(s->gz, &e);
        if (r == 0 && e == Z_OK) return 0;
        if (e == Z_ERRNO) why = strerror(errno);
        else if (strncmp(why, "<fd:", 4) == 0 && strstr(why, ">: ")) why = strstr(why, ">: ") + 3; /* gzdopen's name */
        return log_seterr(msg, msglen,
                          "%s gzip data near compressed byte %lld of %lld, after %lld decompressed bytes (%s)",
                          e == Z_BUF_ERROR ? "truncated" : "corrupt", (long long)gzoffset(s->gz), s->size,
                          s->out_total, why);
    }
    if (s->comp == COMP_NONE) {
        if (s->in_pos < s->in_len) { /* the sniffed bytes first */
            size_t n = s->in_len - s->in_pos < cap ? s->in_len - s->in_pos : cap;
            memcpy(buf, c->inbuf + s->in_pos, n);
            s->in_pos += n;
            s->out_total += (long long)n;
            return (long)n;
        }
        if (s->in_eof) return 0;
        ssize_t r;
        do r = read(s->fd, buf, cap);
        while (r < 0 && errno == EINTR);
        if (r < 0) return log_seterr(msg, msglen, "read error at byte %lld: %s", s->out_total, strerror(errno));
        if (r == 0) s->in_eof = 1;
        s->out_total += (long long)r;
        return (long)r;
    }
    for (;;) {
        if (s->in_pos == s->in_len && !s->in_eof) {
            s->in_base += (long long)s->in_len;
            s->in_pos = s->in_len = 0;
            ssize_t r;
            do r = read(s->fd, c->inbuf, IN_BYTES);
            while (r < 0 && errno == EINTR);
            if (r < 0) return log_seterr(msg, msglen, "read error at byte %lld: %s", s->in_base, strerror(errno));
            if (r == 0) s->in_eof = 1;
            s->in_len = (size_t)r;
        }
        /* The end of the input between two frames is the clean end. */
        if (s->in_pos == s->in_len && s->in_eof && s->zlast == 0) return 0;
        ZSTD_inBuffer ib = {c->inbuf, s->in_len, s->in_pos};
        ZSTD_outBuffer ob = {buf, cap, 0};
        size_t r = ZSTD_decompressStream(c->zd, &ob, &ib);
        s->in_pos = ib.pos;
        if (ZSTD_isError(r))
            return log_seterr(msg, msglen, "corrupt zstd data near compressed byte %lld of %lld, after %lld decompressed bytes (%s)",
                              s->in_base + (long long)ib.pos, s->size, s->out_total, ZSTD_getErrorName(r));
        s->zlast = r;
        if (ob.pos > 0) {
            s->out_total += (long long)ob.pos;
            return (long)ob.pos;
        }
        if (s->in_pos == s->in_len && s->in_eof) {
            if (r != 0)
                return log_seterr(msg, msglen,
                                  "truncated zstd data: the file ends inside a frame at compressed byte %lld, after %lld decompressed bytes",
                                  s->in_base + (long long)s->in_len, s->out_total);
            return 0;
        }
    }
}

/* ---- lines ------------------------------------------------------------ */

enum { LR_NOMEM = -2, LR_BAD = -1, LR_EOF = 0, LR_LINE = 1, LR_OVER = 2 };

/* Hands out the next line of the current file, without its '\n': in place
 * in the chunk when it lies inside it, else in c->line (valid until the next
 * call).  A final line without '\n' counts.  Returns LR_LINE; LR_OVER when
 * the line is longer than max_doc (its bytes are read and dropped; *total
 * says how many); LR_EOF; LR_BAD with a reason in msg (the partial line is
 * dropped); LR_NOMEM. */
static int lr_next(corpus_t *c, const char **line, size_t *len, unsigned long long *total, char *msg, size_t msglen) {
    size_t have = 0;
    unsigned long long tot = 0;
    int over = 0, any = 0;
    if (c->line_cap > LINE_KEEP) {
        free(c->line);
        c->line = NULL;
        c->line_cap = 0;
    }
    for (;;) {
        if (c->chunk_pos == c->chunk_len) {
            if (c->chunk_eof) {
                if (!any) return LR_EOF;
                break;
            }
            long r = src_read(c, c->chunk, CHUNK_BYTES, msg, msglen);
            if (r < 0) return LR_BAD;
            c->chunk_pos = c->chunk_len = 0;
            if (r == 0) {
                c->chunk_eof = 1;
                if (!any) return LR_EOF;
                break;
            }
            c->chunk_len = (size_t)r;
        }
        char *s = c->chunk + c->chunk_pos;
        size_t avail = c->chunk_len - c->chunk_pos;
        char *nl = memchr(s, '\n', avail);
        size_t seg = nl ? (size_t)(nl - s) : avail;
        c->chunk_pos += seg + (nl != NULL);
        any = 1;
        tot += seg;
        if (!over && nl && have == 0 && seg <= c->max_doc) {
            *line = s;
            *len = seg;
            return LR_LINE;
        }
        if (!over && tot > c->max_doc) over = 1;
        if (!over && seg) {
            if (have + seg > c->line_cap) {
                size_t cap = c->line_cap ? c->line_cap : (size_t)64 << 10;
                while (cap < have + seg && cap <= SIZE_MAX / 2) cap *= 2;
                if (cap < have + seg) cap = have + seg;
                if (cap > c->max_doc) cap = c->max_doc;
                char *nb = realloc(c->line, cap);
                if (!nb) return LR_NOMEM;
                c->line = nb;
                c->line_cap = cap;
            }
            memcpy(c->line + have, s, seg);
            have += seg;
        }
        if (nl) break;
    }
    *total = tot;
    if (over) return LR_OVER;
    *line = have ? c->line : "";
    *len = have;
    return LR_LINE;
}

/* ---- documents -------------------------------------------------------- */

void corpus_doc_clear(corpus_doc_t *doc) {
    if (!doc) return;
    free(doc->ext_id);
    free(doc->source);
    free(doc->text);
    free(doc->metadata);
    free(doc->error);
    memset(doc, 0, sizeof *doc);
}

/* Fills the fields a document always has (ext_id = source and metadata "{}"
 * unless set already).  Returns 1, or -1 when out of memory (doc cleared). */
static int doc_finish(corpus_doc_t *doc) {
    if (doc->source && !doc->ext_id) doc->ext_id = strdup(doc->source);
    if (!doc->metadata) doc->metadata = strdup("{}");
    if (!doc->source || !doc->ext_id || !doc->metadata || (!doc->text && !doc->error)) {
        corpus_doc_clear(doc);
        return -1;
    }
    return 1;
}

/* Whether the line is only spaces, tabs, CR, FF or VT (or empty). */
static int is_blank(const char *p, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (!(p[i] == ' ' || p[i] == '\t' || p[i] == '\r' || p[i] == '\f' || p[i] == '\v')) return 0;
    return 1;
}

/* Sets doc->error from a format; 0, or -1 when out of memory. */
static int doc_err(corpus_doc_t *doc, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int doc_err(corpus_doc_t *doc, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    char *s = NULL;
    int r = vasprintf(&s, fmt, ap);
    va_end(ap);
    if (r < 0) return -1;
    free(doc->error);
    doc->error = s;
    return 0;
}

/* Fills doc (source set) from the JSONL line p[0..n); *root receives the
 * parsed value, which the caller releases.  A document that cannot be used
 * gets doc->error; returns 0, or -1 when out of memory. */
static int jl_fill(corpus_t *c, corpus_doc_t *doc, const char *p, size_t n, json_t **root) {
    const char *src = doc->source;
    long bad = utf8_invalid_at(p, n);
    if (bad >= 0) {
        char hex[32];
        hex_near(p, n, (size_t)bad, hex, sizeof hex);
        return doc_err(doc, "%s: invalid UTF-8 at byte offset %ld of the line (%s)", src, bad, hex);
    }
    json_error_t je;
    *root = json_loadb(p, n, JSON_DECODE_ANY | JSON_ALLOW_NUL | JSON_DECODE_INT_AS_REAL, &je);
    if (!*root) return doc_err(doc, "%s: malformed JSON: %s (column %d)", src, je.text, je.column);
    if (!json_is_object(*root))
        return doc_err(doc, "%s: the line is %s, not a JSON object", src, json_type_name(*root));

    size_t id_at = 0, id_len = 0;
    int r = meta_build(p, n, c->text_field, c->id_field, c->id_field, &c->meta, &id_at, &id_len);
    if (r == -1) return -1;
    if (r == -2) return doc_err(doc, "%s: internal error: the JSON member scanner disagrees with jansson", src);
    json_t *id = c->id_field ? json_object_get(*root, c->id_field) : NULL;
    if (id && json_is_string(id)) {
        size_t il = json_string_length(id);
        if (il == 0) return doc_err(doc, "%s: the id field \"%s\" is an empty string", src, c->id_field);
        if (memchr(json_string_value(id), 0, il))
            return doc_err(doc, "%s: the id field \"%s\" holds a NUL character (\\u0000)", src, c->id_field);
        if (!(doc->ext_id = xstrndup(json_string_value(id), il))) return -1;
    } else if (id && json_is_number(id)) {
        /* The number as written, when it is an integer (any size). */
        const char *t = p + id_at;
        size_t k = id_len > 0 && t[0] == '-';
        int integer = id_len > k;
        for (; k < id_len && integer; k++) integer = t[k] >= '0' && t[k] <= '9';
        if (!integer)
            return doc_err(doc, "%s: the id field \"%s\" is %.*s, not an integer or a string", src, c->id_field,
                           (int)(id_len < 64 ? id_len : 64), t);
        if (!(doc->ext_id = xstrndup(t, id_len))) return -1;
    } else if (id) {
        return doc_err(doc, "%s: the id field \"%s\" is %s, not a string or an integer", src, c->id_field,
                       json_type_name(id));
    }

    if (has_escaped_nul(c->meta.s, c->meta.len))
        return doc_err(doc, "%s: a metadata field holds \\u0000 (a NUL character), which PostgreSQL jsonb cannot store",
                       src);
    if (!(doc->metadata = xstrndup(c->meta.s, c->meta.len))) return -1;

    json_t *text = json_object_get(*root, c->text_field);
    if (!text) return doc_err(doc, "%s: no \"%s\" field (the text field)", src, c->text_field);
    if (!json_is_string(text))
        return doc_err(doc, "%s: the text field \"%s\" is %s, not a string", src, c->text_field, json_type_name(text));
    /* jansson decodes escapes to valid UTF-8 and rejects lone surrogates, and
     * the raw line was valid, so the text is valid UTF-8; only NUL remains. */
    const char *tv = json_string_value(text);
    size_t tl = json_string_length(text);
    const char *nul = memchr(tv, 0, tl);
    if (nul)
        return doc_err(doc, "%s: the text field \"%s\" holds a NUL character (\\u0000) at byte offset %zu of the text", src,
                       c->text_field, (size_t)(nul - tv));
    if (!(doc->text = xstrndup(tv, tl))) return -1;
    doc->text_len = tl;
    return 0;
}

/* One JSONL line into *doc.  Returns 1 with a document, 0 for a blank line
 * (nothing made), -1 when out of memory (doc cleared). */
static int jl_doc(corpus_t *c, const char *p, size_t n, corpus_doc_t *doc) {
    json_t *root = NULL;
    if (n && p[n - 1] == '\r') n--;
    if (c->lineno == 1 && n >= 3 && memcmp(p, "\xEF\xBB\xBF", 3) == 0) p += 3, n -= 3; /* a UTF-8 BOM */
    if (is_blank(p, n)) return 0;
    doc->source = xprintf("%s:%llu", c->cur_path, (unsigned long long)c->lineno);
    if (!doc->source) goto error;
    if (jl_fill(c, doc, p, n, &root)) goto error;
    json_decref(root);
    return doc_finish(doc);
error:
    json_decref(root);
    corpus_doc_clear(doc);
    return -1;
}

/* Reads the whole (decompressed) text file opened in c->src into *doc.
 * Returns 1, or -1 when out of memory (doc cleared). */
static int tf_doc(corpus_t *c, const char *path, corpus_doc_t *doc) {
    char *buf = NULL, msg[LOG_ERRLEN];
    size_t len = 0, cap;
    doc->source = strdup(path);
    if (!doc->source) goto error;
    /* Plain files: the size is known, read in one go (+1 to see the end). */
    if (c->src.comp == COMP_NONE && c->src.size >= 0 && (unsigned long long)c->src.size < c->max_doc)
        cap = (size_t)c->src.size + 1;
    else
        cap = c->max_doc < ((size_t)64 << 10) ? c->max_doc + 1 : (size_t)64 << 10;
    buf = malloc(cap);
    if (!buf) goto error;
    for (;;) {
        if (len == cap) {
            if (cap > c->max_doc) {
                if (doc_err(doc, "%s: document of more than %zu bytes (max_doc_bytes)", path, c->max_doc)) goto error;
                break;
            }
            size_t nc = cap <= SIZE_MAX / 2 ? cap * 2 : SIZE_MAX;
            if (nc > c->max_doc + 1 || nc < cap) nc = c->max_doc + 1;
            char *nb = realloc(buf, nc);
            if (!nb) goto error;
            buf = nb;
            cap = nc;
        }
        long r = src_read(c, buf + len, cap - len, msg, sizeof msg);
        if (r < 0) {
            if (doc_err(doc, "%s: %s", path, msg)) goto error;
            break;
        }
        if (r == 0) break;
        len += (size_t)r;
    }
    if (!doc->error) {
        long bad = utf8_invalid_at(buf, len);
        const char *nul = bad < 0 ? memchr(buf, 0, len) : NULL;
        char hex[32];
        if (bad >= 0) hex_near(buf, len, (size_t)bad, hex, sizeof hex);
        if (bad >= 0 && doc_err(doc, "%s: invalid UTF-8 at byte offset %ld (%s)", path, bad, hex)) goto error;
        if (nul && doc_err(doc, "%s: a NUL byte at byte offset %zu", path, (size_t)(nul - buf))) goto error;
    }
    if (doc->error) {
        free(buf);
    } else {
        /* Give back what doubling over-allocated, when it is worth it. */
        char *t = len + 1 <= cap && cap - len < ((size_t)1 << 20) ? buf : realloc(buf, len + 1);
        if (!t) goto error;
        t[len] = 0;
        doc->text = t;
        doc->text_len = len;
    }
    buf = NULL;
    return doc_finish(doc);
error:
    free(buf);
    corpus_doc_clear(doc);
    return -1;
}

/* Whether the name (without .gz/.zst/.zstd) ends in .jsonl/.json/.ndjson. */
static int name_is_jsonl(const char *path) {
    const char *base = strrchr(path, '/');
    base = base ? base + 1 : path;
    size_t n = strlen(base);
    static const char *const comp[] = {".gz", ".zst", ".zstd"};
    for (size_t i = 0; i < sizeof comp / sizeof *comp; i++) {
        size_t k = strlen(comp[i]);
        if (n > k && strcasecmp(base + n - k, comp[i]) == 0) {
            n -= k;
            break;
        }
    }
    static const char *const ext[] = {".jsonl", ".json", ".ndjson"};
    for (size_t i = 0; i < sizeof ext / sizeof *ext; i++) {
        size_t k = strlen(ext[i]);
        if (n > k && strncasecmp(base + n - k, ext[i], k) == 0) return 1;
    }
    return 0;
}

/* ---- the stream ------------------------------------------------------- */

corpus_t *corpus_open(const char *const *patterns, size_t n_patterns, const corpus_opts_t *opts, char *err,
                      size_t errlen) {
    corpus_t *c = NULL;
    flist_t fl = {0};
    if (!patterns || n_patterns == 0) {
        log_seterr(err, errlen, "no corpus files given");
        goto error;
    }
    c = calloc(1, sizeof *c);
    if (!c) {
        log_seterr(err, errlen, "out of memory opening the corpus");
        goto error;
    }
    c->src.fd = -1;
    const char *tf = opts && opts->text_field ? opts->text_field : "text";
    const char *idf = opts && opts->id_field ? opts->id_field : "id";
    if (!*tf) {
        log_seterr(err, errlen, "the text field name is empty");
        goto error;
    }
    c->text_field = strdup(tf);
    c->id_field = *idf ? strdup(idf) : NULL;
    if (!c->text_field || (*idf && !c->id_field)) {
        log_seterr(err, errlen, "out of memory opening the corpus");
        goto error;
    }
    c->max_doc = opts && opts->max_doc_bytes ? opts->max_doc_bytes : DEFAULT_MAX_DOC;
    if (c->max_doc > SIZE_MAX / 4) c->max_doc = SIZE_MAX / 4; /* so that max_doc + 1 and doubling cannot wrap */
    for (size_t i = 0; i < n_patterns; i++) {
        if (!patterns[i] || !*patterns[i]) {
            log_seterr(err, errlen, "empty corpus path (argument %zu)", i + 1);
            goto error;
        }
        if (fl_add_pattern(&fl, patterns[i], err, errlen)) goto error;
    }
    fl_dedup(&fl);
    /* Paths become document sources and ids, stored as text: UTF-8 only. */
    for (size_t i = 0; i < fl.n; i++) {
        if (utf8_invalid_at(fl.v[i].path, strlen(fl.v[i].path)) >= 0) {
            log_seterr(err, errlen, "the file name '%s' is not valid UTF-8; rename it", fl.v[i].path);
            goto error;
        }
    }
    c->files = malloc(fl.n * sizeof *c->files);
    if (!c->files) {
        log_seterr(err, errlen, "out of memory opening the corpus");
        goto error;
    }
    for (size_t i = 0; i < fl.n; i++) c->files[i] = fl.v[i].path;
    c->n_files = fl.n;
    free(fl.v);
    memset(&fl, 0, sizeof fl);
    c->zd = ZSTD_createDCtx();
    c->inbuf = malloc(IN_BYTES);
    c->chunk = malloc(CHUNK_BYTES);
    if (!c->zd || !c->inbuf || !c->chunk) {
        log_seterr(err, errlen, "out of memory opening the corpus");
        goto error;
    }
    if (ZSTD_isError(ZSTD_DCtx_setParameter(c->zd, ZSTD_d_windowLogMax, ZSTD_WINDOW_LOG_MAX))) {
        log_seterr(err, errlen, "zstd: cannot set the window limit");
        goto error;
    }
    return c;
error:
    fl_free(&fl);
    corpus_destroy(&c);
    return NULL;
}

void corpus_destroy(corpus_t **self_p) {
    if (!self_p || !*self_p) return;
    corpus_t *c = *self_p;
    src_close(&c->src);
    for (size_t i = 0; i < c->n_files; i++) free(c->files[i]);
    free(c->files);
    free(c->text_field);
    free(c->id_field);
    ZSTD_freeDCtx(c->zd);
    free(c->inbuf);
    free(c->chunk);
    free(c->line);
    free(c->meta.s);
    free(c);
    *self_p = NULL;
}

size_t corpus_n_files(const corpus_t *self) { return self ? self->n_files : 0; }

const char *corpus_file(const corpus_t *self, size_t i) { return self && i < self->n_files ? self->files[i] : NULL; }

/* Ends the current file's reading state. */
static void cur_close(corpus_t *c) {
    src_close(&c->src);
    c->cur_open = 0;
    c->chunk_len = c->chunk_pos = 0;
    c->chunk_eof = 0;
    free(c->line);
    c->line = NULL;
    c->line_cap = 0;
}

/* Opens the next file.  Returns 1 with a document in *doc (a text file, or an
 * error for a file that cannot be read), 0 when a JSONL file is open for
 * lines, -1 when out of memory. */
static int file_start(corpus_t *c, const char *path, corpus_doc_t *doc) {
    char msg[LOG_ERRLEN];
    int r = src_open(c, path, msg, sizeof msg);
    if (r == -2) return -1;
    if (r == -1) {
        doc->source = strdup(path);
        if (doc_err(doc, "%s: %s", path, msg)) {
            corpus_doc_clear(doc);
            return -1;
        }
        return doc_finish(doc);
    }
    if (!name_is_jsonl(path)) {
        r = tf_doc(c, path, doc);
        cur_close(c);
        return r;
    }
    c->cur_open = 1;
    c->cur_path = path;
    c->lineno = 0;
    return 0;
}

int corpus_next(corpus_t *self, corpus_doc_t *doc, char *err, size_t errlen) {
    corpus_t *c = self;
    char msg[LOG_ERRLEN];
    corpus_doc_clear(doc);
    if (!c || !doc) return log_seterr(err, errlen, "corpus_next: no corpus or no document");
    if (c->broken) return log_seterr(err, errlen, "the corpus stream stopped after an earlier failure");
    for (;;) {
        if (!c->cur_open) {
            if (c->next_file == c->n_files) return 0;
            const char *path = c->files[c->next_file++];
            int r = file_start(c, path, doc);
            if (r < 0) goto error;
            if (r == 1) return 1;
            continue;
        }
        const char *p = NULL;
        size_t n = 0;
        unsigned long long total = 0;
        int r = lr_next(c, &p, &n, &total, msg, sizeof msg);
        if (r == LR_NOMEM) goto error;
        if (r == LR_EOF) {
            cur_close(c);
            continue;
        }
        c->lineno++;
        if (r == LR_BAD) {
            /* The rest of the file is unreadable: one document says so. */
            doc->source = xprintf("%s:%llu", c->cur_path, (unsigned long long)c->lineno);
            if (!doc->source || doc_err(doc, "%s: %s; the rest of the file is skipped", doc->source, msg))
                goto error;
            cur_close(c);
            if (doc_finish(doc) < 0) goto error;
            return 1;
        }
        if (r == LR_OVER) {
            doc->source = xprintf("%s:%llu", c->cur_path, (unsigned long long)c->lineno);
            if (!doc->source || doc_err(doc, "%s: document of more than %zu bytes (max_doc_bytes): a line of %llu bytes, skipped",
                                        doc->source, c->max_doc, total))
                goto error;
            if (doc_finish(doc) < 0) goto error;
            return 1;
        }
        int d = jl_doc(c, p, n, doc);
        if (d < 0) goto error;
        if (d == 1) return 1;
    }
error:
    c->broken = 1;
    corpus_doc_clear(doc);
    return log_seterr(err, errlen, "out of memory reading the corpus");
}

/* ---- self-test -------------------------------------------------------- */

int corpus_selftest(void) {
    static const struct {
        const char *s;
        size_t n;
        long want;
    } u8[] = {
        {"", 0, -1},
        {"plain ascii text, long enough for the fast path", 48, -1},
        {"caf\xc3\xa9", 5, -1},
        {"\xe2\x82\xac\xf0\x9f\x98\x80", 7, -1},
        {"\xf4\x8f\xbf\xbf", 4, -1},
        {"ab\xc0\x80", 4, 2},
        {"\xe0\x80\x80", 3, 0},
        {"\xed\xa0\x80", 3, 0},
        {"\xf4\x90\x80\x80", 4, 0},
        {"abcdefgh\xe2\x82", 10, 8},
        {"\xff", 1, 0},
        {"abcdefghijk\x80", 12, 11},
    };
    for (size_t i = 0; i < sizeof u8 / sizeof *u8; i++) {
        long got = utf8_invalid_at(u8[i].s, u8[i].n);
        if (got != u8[i].want) {
            log_error("corpus_selftest: utf8 case %zu: %ld, want %ld", i, got, u8[i].want);
            return -1;
        }
    }
    static const struct {
        const char *line, *meta, *id;
    } mt[] = {
        {"{}", "{}", NULL},
        {" { \"text\" : \"x\" } ", "{}", NULL},
        {"{\"id\": 12345678901234567890, \"text\": \"a \\\" } b\", \"m\": {\"k\": [1, 2.50, \"\\\\\"]}}",
         "{\"m\":{\"k\":[1,2.50,\"\\\\\"]}}", "12345678901234567890"},
        {"{\"a\":0.1,\"te\\u0078t\":\"x\",\"b\":\"s p\",\"id\":\"q\"}", "{\"a\":0.1,\"b\":\"s p\"}", "\"q\""},
    };
    sbuf_t meta = {0};
    int ret = 0;
    for (size_t i = 0; i < sizeof mt / sizeof *mt && !ret; i++) {
        size_t at = 0, len = 0;
        const char *l = mt[i].line;
        int r = meta_build(l, strlen(l), "text", "id", "id", &meta, &at, &len);
        if (r != 0 || strcmp(meta.s, mt[i].meta) != 0 ||
            (mt[i].id ? len != strlen(mt[i].id) || memcmp(l + at, mt[i].id, len) != 0 : len != 0)) {
            log_error("corpus_selftest: metadata case %zu: r=%d got %s", i, r, meta.s ? meta.s : "(null)");
            ret = -1;
        }
    }
    free(meta.s);
    if (!ret && (!has_escaped_nul("{\"a\":\"\\u0000\"}", 14) || has_escaped_nul("{\"a\":\"\\\\u0000\"}", 15))) {
        log_error("corpus_selftest: \\u0000 detection");
        ret = -1;
    }
    if (!ret && (!name_is_jsonl("a/b.jsonl.zst") || !name_is_jsonl("x.JSON.gz") || name_is_jsonl("a.jsonl/b.txt") ||
                 name_is_jsonl("notes.txt.gz") || !name_is_jsonl("c.ndjson"))) {
        log_error("corpus_selftest: format from the name");
        ret = -1;
    }
    return ret;
}
