/* fetch.c - `tokshift fetch` (see fetch.h): the Hub's listing, the choice of
 * files, resumable and verified downloads, the offline mirror.
 *
 * What it is: one libcurl easy handle used for every request in turn; JSON
 * (the Hub's answers, the safetensors index) read with jansson; SHA-256 from
 * common/digest.  A file is only ever written as FILE.part (locked with
 * flock against a second fetch into the same folder) and renamed over FILE
 * once its size and hash are right, so FILE is always either absent, an
 * earlier complete file, or the verified new one.  What the Hub vouches
 * for: every file's size; an LFS file's SHA-256 (lfs.sha256 of the
 * listing); a file kept in git itself (config.json and the like) by its
 * git blob id (blobId: SHA-1 of "blob SIZE\0" and the bytes), whose SHA-256
 * is then computed here for SHA256SUMS.  What it is not: a parallel
 * downloader (files come one after another, at the connection's speed). */
#include "fetch.h"

#include <ctype.h>
#include <curl/curl.h>
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <jansson.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "digest.h"
#include "log.h"

#ifndef TOKSHIFT_VERSION
#define TOKSHIFT_VERSION "dev"
#endif

#define EXIT_USAGE 2
#define DEFAULT_ENDPOINT "https://huggingface.co"
#define SUMS_NAME "SHA256SUMS"
#define PART_SUFFIX ".part"
/* Largest API answer or safetensors index read into memory (a listing of a
 * repository with thousands of files is a few MB). */
#define JSON_MAX ((size_t)64 << 20)
/* Bytes of an error response's body kept for the message. */
#define ERRBODY_MAX 4096
/* Tries per file: a dropped connection resumes where it stopped, after
 * 1, 2, 4, 8 s. */
#define ATTEMPTS 5
#define SIZE_UNKNOWN UINT64_MAX
/* Seconds between progress lines of one file. */
#define PROGRESS_S 10

/* A file of the repository as the listing (the Hub's, or a mirror's
 * SHA256SUMS) describes it. */
typedef struct {
    char *path;      /* relative to the repository, checked by valid_relpath */
    uint64_t size;   /* bytes, or SIZE_UNKNOWN */
    char sha256[65]; /* lower-case hex, or "" when the listing has none */
    char git[41];    /* a file kept in git: its blob id (SHA-1 of "blob SIZE\0" and the bytes), or "" */
} fetch_file_t;

typedef struct {
    fetch_file_t *v;
    size_t n, cap;
} fetch_list_t;

/* Everything one `tokshift fetch` needs; errors go to err. */
typedef struct {
    const char *endpoint; /* without a trailing '/' */
    const char *token;    /* HF_TOKEN, or NULL */
    const char *repo;
    const char *revision;
    char *commit;         /* the commit the revision names (owned); NULL from a mirror */
    const char *out;      /* the output folder */
    char *mirror;         /* MIRROR/REPO when the mirror serves, else NULL (owned) */
    CURL *curl;
    fetch_list_t done;    /* files fetched or found verified: path and sha256, for SHA256SUMS */
    char *err;
    size_t errlen;
} fetch_ctx_t;

/* ---- names ------------------------------------------------------------ */

static int name_char(char ch) { return isalnum((unsigned char)ch) || ch == '-' || ch == '_' || ch == '.'; }

/* A repository id: NAME or OWNER/NAME of letters, digits, '-', '_', '.';
 * no part "." or "..". */
static int valid_repo(const char *r) {
    int parts = 0;
    for (const char *s = r;;) {
        const char *e = s;
        while (*e && *e != '/') {
            if (!name_char(*e)) return 0;
            e++;
        }
        size_t n = (size_t)(e - s);
        if (n == 0 || n > 96 || !strncmp(s, ".", n) || !strncmp(s, "..", n)) return 0;
        parts++;
        if (!*e) break;
        s = e + 1;
    }
    return parts <= 2;
}

/* A path inside the repository that is safe to create under the output
 * folder: relative, no empty, "." or ".." part, no control characters or
 * backslashes (the listing comes from a server). */
static int valid_relpath(const char *p) {
    size_t len = strlen(p);
    if (len == 0 || len > 1024 || p[0] == '/') return 0;
    for (const char *s = p;;) {
        const char *e = strchr(s, '/');
        size_t n = e ? (size_t)(e - s) : strlen(s);
        if (n == 0 || (n == 1 && s[0] == '.') || (n == 2 && s[0] == '.' && s[1] == '.')) return 0;
        for (size_t i = 0; i < n; i++)
            if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f || s[i] == '\\') return 0;
        if (!e) break;
        s = e + 1;
    }
    return 1;
}

static int is_hex(const char *s, size_t n) {
    if (strlen(s) != n) return 0;
    for (size_t i = 0; i < n; i++)
        if (!isxdigit((unsigned char)s[i])) return 0;
    return 1;
}

/* Percent-encodes s for a URL path (RFC 3986 unreserved characters kept,
 * and '/' when keep_slash).  Returns a malloc'd string, or NULL. */
static char *url_escape(const char *s, int keep_slash) {
    size_t n = strlen(s);
    char *o = malloc(3 * n + 1), *w = o;
    if (!o) return NULL;
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (isalnum(*p) || *p == '-' || *p == '.' || *p == '_' || *p == '~' || (keep_slash && *p == '/'))
            *w++ = (char)*p;
        else
            w += sprintf(w, "%%%02X", *p);
    }
    *w = 0;
    return o;
}

/* snprintf into a malloc'd string; NULL when out of memory. */
static char *strf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static char *strf(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    char *s = n < 0 ? NULL : malloc((size_t)n + 1);
    if (!s) return NULL;
    va_start(ap, fmt);
    vsnprintf(s, (size_t)n + 1, fmt, ap);
    va_end(ap);
    return s;
}

/* Creates every missing folder above path (mode 0755).  0, or -1 with a
 * message. */
static int mkdirs_for(const char *path, char *err, size_t errlen) {
    char *p = strdup(path);
    if (!p) return log_seterr(err, errlen, "out of memory");
    for (char *s = p + 1; (s = strchr(s, '/')); s++) {
        *s = 0;
        if (mkdir(p, 0755) && errno != EEXIST) {
            log_seterr(err, errlen, "cannot create folder %s: %s", p, strerror(errno));
            free(p);
            return -1;
        }
        *s = '/';
    }
    free(p);
    return 0;
}

/* ---- listings ----------------------------------------------------------- */

static void list_free(fetch_list_t *l) {
    for (size_t i = 0; i < l->n; i++) free(l->v[i].path);
    free(l->v);
    memset(l, 0, sizeof *l);
}

/* Appends a copy of (path, size, sha256, git blob id; either hash may be
 * NULL).  0, or -1 when out of memory. */
static int list_add(fetch_list_t *l, const char *path, uint64_t size, const char *sha256, const char *git) {
    if (l->n == l->cap) {
        size_t cap = l->cap ? 2 * l->cap : 16;
        fetch_file_t *v = realloc(l->v, cap * sizeof *v);
        if (!v) return -1;
        l->v = v;
        l->cap = cap;
    }
    fetch_file_t *f = &l->v[l->n];
    if (!(f->path = strdup(path))) return -1;
    f->size = size;
    snprintf(f->sha256, sizeof f->sha256, "%s", sha256 ? sha256 : "");
    snprintf(f->git, sizeof f->git, "%s", git ? git : "");
    for (char *c = f->sha256; *c; c++) *c = (char)tolower((unsigned char)*c);
    for (char *c = f->git; *c; c++) *c = (char)tolower((unsigned char)*c);
    l->n++;
    return 0;
}

static const fetch_file_t *list_find(const fetch_list_t *l, const char *path) {
    for (size_t i = 0; i < l->n; i++)
        if (!strcmp(l->v[i].path, path)) return &l->v[i];
    return NULL;
}

/* Names the listing's files ending in suffix, for a hint: "a, b, c" (at
 * most 8, then "..."), or "none". */
static void list_names(const fetch_list_t *l, const char *suffix, char *out, size_t outlen) {
    size_t w = 0, k = 0, sl = strlen(suffix);
    out[0] = 0;
    for (size_t i = 0; i < l->n && w < outlen; i++) {
        size_t pl = strlen(l->v[i].path);
        if (pl < sl || strcasecmp(l->v[i].path + pl - sl, suffix)) continue;
        if (k++ == 8) {
            w += (size_t)snprintf(out + w, outlen - w, ", ...");
            break;
        }
        w += (size_t)snprintf(out + w, outlen - w, "%s%s", k > 1 ? ", " : "", l->v[i].path);
    }
    if (!k) snprintf(out, outlen, "none");
}

/* Reads a SHA256SUMS file ("HEX  PATH" or "HEX *PATH" lines) into l, each
 * file's size taken from dir/PATH when it exists.  A missing file is an
 * empty listing when missing_ok.  0, or -1 with a message. */
static int sums_read(const char *dir, int missing_ok, fetch_list_t *l, char *err, size_t errlen) {
    char *path = strf("%s/%s", dir, SUMS_NAME), *line = NULL;
    size_t cap = 0;
    int rc = -1, lineno = 0;
    FILE *f = path ? fopen(path, "r") : NULL;
    if (!path) return log_seterr(err, errlen, "out of memory");
    if (!f) {
        if (errno == ENOENT && missing_ok) rc = 0;
        else log_seterr(err, errlen, "cannot read %s: %s", path, strerror(errno));
        goto done;
    }
    ssize_t n;
    while ((n = getline(&line, &cap, f)) > 0) {
        lineno++;
        while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r')) line[--n] = 0;
        if (n == 0) continue;
        if (n < 67 || line[64] != ' ' || (line[65] != ' ' && line[65] != '*')) {
            log_seterr(err, errlen, "%s:%d: not a 'SHA256  PATH' line", path, lineno);
            goto done;
        }
        line[64] = 0;
        const char *rel = line + 66;
        if (!is_hex(line, 64) || !valid_relpath(rel)) {
            log_seterr(err, errlen, "%s:%d: not a SHA-256 and a relative path", path, lineno);
            goto done;
        }
        char *fp = strf("%s/%s", dir, rel);
        struct stat sb;
        uint64_t size = fp && !stat(fp, &sb) ? (uint64_t)sb.st_size : SIZE_UNKNOWN;
        free(fp);
        if (list_add(l, rel, size, line, NULL)) {
            log_seterr(err, errlen, "out of memory");
            goto done;
        }
    }
    if (ferror(f)) log_seterr(err, errlen, "cannot read %s", path);
    else rc = 0;
done:
    if (f) fclose(f);
    free(line);
    free(path);
    return rc;
}

/* Writes dir/SHA256SUMS: the entries of `done` and, after them, those of
 * the existing file for other paths (a folder that holds several GGUF files
 * fetched one by one keeps all of them).  Written to a temporary file and
 * renamed.  0, or -1 with a message. */
static int sums_write(const char *dir, const fetch_list_t *done, char *err, size_t errlen) {
    fetch_list_t old = {0};
    if (sums_read(dir, 1, &old, err, errlen)) {
        list_free(&old);
        return -1;
    }
    char *path = strf("%s/%s", dir, SUMS_NAME), *tmp = strf("%s/.%s.tmp", dir, SUMS_NAME);
    FILE *f = tmp ? fopen(tmp, "w") : NULL;
    int rc = -1;
    if (!path || !tmp) {
        log_seterr(err, errlen, "out of memory");
        goto done;
    }
    if (!f) {
        log_seterr(err, errlen, "cannot write %s: %s", tmp, strerror(errno));
        goto done;
    }
    for (size_t i = 0; i < done->n; i++) fprintf(f, "%s  %s\n", done->v[i].sha256, done->v[i].path);
    for (size_t i = 0; i < old.n; i++)
        if (!list_find(done, old.v[i].path)) fprintf(f, "%s  %s\n", old.v[i].sha256, old.v[i].path);
    int bad = ferror(f) | fflush(f) | fsync(fileno(f));
    bad |= fclose(f);
    f = NULL;
    if (bad || rename(tmp, path)) {
        log_seterr(err, errlen, "cannot write %s: %s", path, strerror(errno));
        unlink(tmp);
        goto done;
    }
    rc = 0;
done:
    if (f) {
        fclose(f);
        unlink(tmp);
    }
    free(path);
    free(tmp);
    list_free(&old);
    return rc;
}

/* ---- HTTP --------------------------------------------------------------- */

typedef struct {
    char *p;
    size_t n, max;
    int overflow;
} membuf_t;

static size_t mem_write(char *data, size_t sz, size_t nm, void *ud) {
    membuf_t *b = ud;
    size_t len = sz * nm;
    if (b->n + len > b->max) {
        b->overflow = 1;
        len = b->max - b->n;
    }
    char *p = realloc(b->p, b->n + len + 1);
    if (!p) return 0;
    b->p = p;
    memcpy(b->p + b->n, data, len);
    b->n += len;
    b->p[b->n] = 0;
    return b->overflow ? 0 : sz * nm;
}

/* The request options every call shares: follow the Hub's redirects (to
 * its CDN) over HTTP(S) only, give up on a connection that moves nothing
 * for a minute, and send HF_TOKEN as a bearer token, which libcurl does not
 * send on to another host after a redirect. */
static void curl_setup(fetch_ctx_t *c, const char *url) {
    CURL *h = c->curl;
    curl_easy_reset(h);
    curl_easy_setopt(h, CURLOPT_URL, url);
    curl_easy_setopt(h, CURLOPT_FOLLOWLOCATION, 1L);
    curl_easy_setopt(h, CURLOPT_MAXREDIRS, 10L);
#if LIBCURL_VERSION_NUM >= 0x075500
    curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(h, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
#else
    curl_easy_setopt(h, CURLOPT_PROTOCOLS, (long)(CURLPROTO_HTTP | CURLPROTO_HTTPS));
    curl_easy_setopt(h, CURLOPT_REDIR_PROTOCOLS, (long)(CURLPROTO_HTTP | CURLPROTO_HTTPS));
#endif
    curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT, 30L);
    curl_easy_setopt(h, CURLOPT_LOW_SPEED_LIMIT, 1L);
    curl_easy_setopt(h, CURLOPT_LOW_SPEED_TIME, 60L);
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_USERAGENT, "tokshift/" TOKSHIFT_VERSION);
    if (c->token) {
        curl_easy_setopt(h, CURLOPT_HTTPAUTH, (long)CURLAUTH_BEARER);
        curl_easy_setopt(h, CURLOPT_XOAUTH2_BEARER, c->token);
    }
}

/* The "error" string of a Hub error body ({"error": "..."}), or the body's
 * start, into out. */
static void error_text(const membuf_t *b, char *out, size_t outlen) {
    out[0] = 0;
    if (!b->p || !b->n) return;
    json_t *j = json_loadb(b->p, b->n, 0, NULL);
    const char *s = json_string_value(json_object_get(j, "error"));
    if (s) snprintf(out, outlen, ": %s", s);
    else snprintf(out, outlen, ": %.120s", b->p);
    for (char *c = out; *c; c++)
        if ((unsigned char)*c < 0x20) *c = ' ';
    json_decref(j);
}

/* What an HTTP error status means for REPO, into err.  what: the object
 * asked for ("repository", "file X"). */
static int http_error(fetch_ctx_t *c, long status, const char *what, const char *url, const membuf_t *body) {
    char detail[200];
    error_text(body, detail, sizeof detail);
    if (status == 401)
        return log_seterr(c->err, c->errlen, "%s %s: not found, or private (HTTP 401%s); %s", c->repo, what, detail,
                          c->token ? "check that the token (HF_TOKEN) grants access to it"
                                   : "a private or gated repository needs HF_TOKEN");
    if (status == 403)
        return log_seterr(c->err, c->errlen,
                          "%s %s: access refused (HTTP 403%s); a gated repository's terms must be accepted on its "
                          "page, with the account whose token is HF_TOKEN", c->repo, what, detail);
    if (status == 404)
        return log_seterr(c->err, c->errlen, "%s %s: not found at %s (HTTP 404%s); check the name and --revision %s",
                          c->repo, what, c->endpoint, detail, c->revision);
    return log_seterr(c->err, c->errlen, "%s %s: HTTP %ld from %s%s", c->repo, what, status, url, detail);
}

/* GET url into a JSON value.  0 with *out (caller decrefs), or -1 with a
 * message. */
static int get_json(fetch_ctx_t *c, const char *url, const char *what, json_t **out) {
    membuf_t b = {.max = JSON_MAX};
    long status = 0;
    int rc = -1;
    curl_setup(c, url);
    curl_easy_setopt(c->curl, CURLOPT_WRITEFUNCTION, mem_write);
    curl_easy_setopt(c->curl, CURLOPT_WRITEDATA, &b);
    CURLcode cr = curl_easy_perform(c->curl);
    curl_easy_getinfo(c->curl, CURLINFO_RESPONSE_CODE, &status);
    if (b.overflow) {
        log_seterr(c->err, c->errlen, "%s: the answer is over %zu MB", url, JSON_MAX >> 20);
    } else if (cr != CURLE_OK) {
        log_seterr(c->err, c->errlen, "cannot reach %s: %s (offline? HF_ENDPOINT=%s; TOKSHIFT_MODEL_MIRROR names a "
                   "folder to use instead)", url, curl_easy_strerror(cr), c->endpoint);
    } else if (status != 200) {
        http_error(c, status, what, url, &b);
    } else {
        json_error_t je;
        if (!(*out = json_loadb(b.p ? b.p : "", b.n, JSON_REJECT_DUPLICATES, &je)))
            log_seterr(c->err, c->errlen, "%s: not JSON (%s, line %d)", url, je.text, je.line);
        else
            rc = 0;
    }
    free(b.p);
    return rc;
}

/* ---- the Hub's listing -------------------------------------------------- */

/* GET /api/models/REPO/revision/REV?blobs=true: the commit the revision
 * names and every file with its size and, for LFS files, lfs.sha256.  0,
 * or -1 with a message. */
static int hub_list(fetch_ctx_t *c, fetch_list_t *l) {
    char *rev = url_escape(c->revision, 0);
    char *url = rev ? strf("%s/api/models/%s/revision/%s?blobs=true", c->endpoint, c->repo, rev) : NULL;
    json_t *j = NULL;
    int rc = -1;
    free(rev);
    if (!url) return log_seterr(c->err, c->errlen, "out of memory");
    if (get_json(c, url, "repository", &j)) goto done;
    const char *sha = json_string_value(json_object_get(j, "sha"));
    json_t *sib = json_object_get(j, "siblings");
    if (!sha || !*sha || strlen(sha) > 64 || !json_is_array(sib)) {
        log_seterr(c->err, c->errlen, "%s: no \"sha\" and \"siblings\" in the Hub's answer", url);
        goto done;
    }
    for (const char *s = sha; *s; s++)
        if (!isalnum((unsigned char)*s)) {
            log_seterr(c->err, c->errlen, "%s: \"sha\" is not a commit id", url);
            goto done;
        }
    if (!(c->commit = strdup(sha))) goto oom;
    size_t i;
    json_t *e;
    json_array_foreach(sib, i, e) {
        const char *name = json_string_value(json_object_get(e, "rfilename"));
        json_t *size = json_object_get(e, "size"), *lfs = json_object_get(e, "lfs");
        if (!name) {
            log_seterr(c->err, c->errlen, "%s: sibling %zu has no \"rfilename\"", url, i);
            goto done;
        }
        if (!valid_relpath(name)) continue; /* never asked for: it could not be written safely */
        const char *h = NULL;
        if (json_is_object(lfs)) {
            h = json_string_value(json_object_get(lfs, "sha256"));
            json_t *ls = json_object_get(lfs, "size");
            if (!h || !is_hex(h, 64) || !json_is_integer(ls) || json_integer_value(ls) < 0) {
                log_seterr(c->err, c->errlen, "%s: %s: lfs has no valid \"sha256\" and \"size\"", url, name);
                goto done;
            }
            size = ls;
        }
        uint64_t n = json_is_integer(size) && json_integer_value(size) >= 0 ? (uint64_t)json_integer_value(size)
                                                                            : SIZE_UNKNOWN;
        /* An LFS file's blobId names its pointer file, not its bytes. */
        const char *git = json_string_value(json_object_get(e, "blobId"));
        if (h || !git || !is_hex(git, 40) || n == SIZE_UNKNOWN) git = NULL;
        if (list_add(l, name, n, h, git)) goto oom;
    }
    rc = 0;
    goto done;
oom:
    log_seterr(c->err, c->errlen, "out of memory");
done:
    json_decref(j);
    free(url);
    return rc;
}

/* ---- one file ------------------------------------------------------------ */

/* A download in progress into FILE.part. */
typedef struct {
    fetch_ctx_t *c;
    const fetch_file_t *f;
    FILE *part;
    digest_sha256_t h;
    digest_sha1_t g;      /* git's blob id, when f->git is known */
    uint64_t have;        /* bytes in the part file, all hashed into h (and g) */
    uint64_t asked;       /* the Range start of this request (0: none) */
    int64_t range_start;  /* Content-Range's first byte, -1 when none */
    long status;          /* of the final response, 0 until its first byte */
    membuf_t errbody;     /* an error response's body */
    int failed;           /* the write callback stopped the transfer; c->err says why */
    time_t next_progress;
} dl_t;

static size_t dl_header(char *line, size_t sz, size_t nm, void *ud) {
    dl_t *d = ud;
    size_t n = sz * nm;
    if (n >= 5 && !strncmp(line, "HTTP/", 5)) d->range_start = -1; /* a new response (after a redirect) */
    else if (n > 20 && !strncasecmp(line, "content-range:", 14)) {
        unsigned long long a;
        if (sscanf(line + 14, " bytes %llu-", &a) == 1) d->range_start = (int64_t)a;
    }
    return n;
}

/* Starts the hashes of an empty file: git's blob id begins with a header
 * holding the size the listing gives. */
static void dl_begin(dl_t *d) {
    digest_sha256_init(&d->h);
    d->have = 0;
    if (!d->f->git[0]) return;
    char hdr[32];
    int n = snprintf(hdr, sizeof hdr, "blob %" PRIu64, d->f->size);
    digest_sha1_init(&d->g);
    digest_sha1_update(&d->g, hdr, (size_t)n + 1);
}

static void dl_hash(dl_t *d, const void *data, size_t n) {
    digest_sha256_update(&d->h, data, n);
    if (d->f->git[0]) digest_sha1_update(&d->g, data, n);
    d->have += n;
}

/* Empties the part file: the server sends the whole file. */
static int dl_restart(dl_t *d) {
    if (fflush(d->part) || ftruncate(fileno(d->part), 0)) return -1;
    dl_begin(d);
    return 0;
}

static size_t dl_write(char *data, size_t sz, size_t nm, void *ud) {
    dl_t *d = ud;
    size_t n = sz * nm;
    if (!d->status) {
        curl_easy_getinfo(d->c->curl, CURLINFO_RESPONSE_CODE, &d->status);
        if (d->status == 206 && d->range_start != (int64_t)d->asked) {
            d->failed = log_seterr(d->c->err, d->c->errlen, "%s: asked for bytes from %" PRIu64
                                   ", the server sent a range from %" PRId64, d->f->path, d->asked, d->range_start);
            return 0;
        }
        if (d->status == 200 && d->have && dl_restart(d)) {
            d->failed = log_seterr(d->c->err, d->c->errlen, "%s%s: %s", d->f->path, PART_SUFFIX, strerror(errno));
            return 0;
        }
    }
    if (d->status != 200 && d->status != 206) {
        mem_write(data, sz, nm, &d->errbody); /* kept for the message, cut at ERRBODY_MAX */
        return n;
    }
    if (d->f->size != SIZE_UNKNOWN && d->have + n > d->f->size) {
        d->failed = log_seterr(d->c->err, d->c->errlen, "%s: the server sent more than the %" PRIu64
                               " bytes the listing gives", d->f->path, d->f->size);
        return 0;
    }
    if (fwrite(data, 1, n, d->part) != n) {
        d->failed = log_seterr(d->c->err, d->c->errlen, "cannot write %s%s: %s", d->f->path, PART_SUFFIX,
                               strerror(errno));
        return 0;
    }
    dl_hash(d, data, n);
    time_t now = time(NULL);
    if (now >= d->next_progress) {
        if (d->next_progress && d->f->size != SIZE_UNKNOWN)
            log_info("%s: %.1f of %.1f MB", d->f->path, (double)d->have / 1e6, (double)d->f->size / 1e6);
        d->next_progress = now + PROGRESS_S;
    }
    return n;
}

/* Hashes all of f's bytes from the start (the part file: a resumed download
 * continues the hashes; or a finished file).  0, or -1 on a read error. */
static int dl_hash_file(dl_t *d, FILE *f) {
    static unsigned char buf[1 << 16];
    dl_begin(d);
    if (fseek(f, 0, SEEK_SET)) return -1;
    size_t r;
    while ((r = fread(buf, 1, sizeof buf, f)) > 0) dl_hash(d, buf, r);
    return ferror(f) ? -1 : 0;
}

/* The hashes of the bytes hashed so far, as hex ("" for git's when f has no
 * blob id).  Ends the hashing. */
static void dl_hex(dl_t *d, char sha256[65], char git[41]) {
    uint8_t md[32];
    digest_sha256_final(&d->h, md);
    digest_hex(md, sha256);
    git[0] = 0;
    if (d->f->git[0]) {
        digest_sha1_final(&d->g, md);
        digest_hexn(md, 20, git);
    }
}

/* Whether the hashed bytes are f as the listing describes it; when not,
 * says why in c->err (what: the bytes' origin, for the message). */
static int dl_matches(fetch_ctx_t *c, dl_t *d, const char *sha256, const char *git, const char *what) {
    const fetch_file_t *f = d->f;
    if (f->size != SIZE_UNKNOWN && d->have != f->size)
        return !log_seterr(c->err, c->errlen, "%s: %s has %" PRIu64 " bytes, the listing says %" PRIu64, f->path, what,
                           d->have, f->size);
    if (f->sha256[0] && strcmp(sha256, f->sha256))
        return !log_seterr(c->err, c->errlen, "%s: wrong sha256: expected %s (%s), got %s", f->path, f->sha256,
                           c->mirror ? "the mirror's " SUMS_NAME : "the Hub's LFS metadata", sha256);
    if (f->git[0] && strcmp(git, f->git))
        return !log_seterr(c->err, c->errlen, "%s: wrong git blob id: expected %s (the Hub's blobId), got %s", f->path,
                           f->git, git);
    return 1;
}

/* Whether a failed request is worth another try: the connection, the
 * server's temporary troubles. */
static int transient(CURLcode cr, long status) {
    if (cr != CURLE_OK)
        return cr != CURLE_URL_MALFORMAT && cr != CURLE_UNSUPPORTED_PROTOCOL && cr != CURLE_OUT_OF_MEMORY &&
               cr != CURLE_TOO_MANY_REDIRECTS && cr != CURLE_COULDNT_RESOLVE_HOST;
    return status == 429 || status >= 500;
}

/* Downloads f into the open part file d->part (resuming after the bytes it
 * holds), retrying transient failures.  On success the part file holds
 * d->have bytes hashed into d->h.  0, or -1 with a message. */
static int dl_run(fetch_ctx_t *c, dl_t *d) {
    char *rev = url_escape(c->commit, 0), *file = url_escape(d->f->path, 1);
    char *url = rev && file ? strf("%s/%s/resolve/%s/%s", c->endpoint, c->repo, rev, file) : NULL;
    int rc = -1;
    free(rev);
    free(file);
    if (!url) return log_seterr(c->err, c->errlen, "out of memory");
    for (int attempt = 1;; attempt++) {
        char range[32];
        CURLcode cr;
        d->asked = d->have;
        d->status = 0;
        d->range_start = -1;
        free(d->errbody.p);
        d->errbody = (membuf_t){.max = ERRBODY_MAX};
        if (d->f->size != SIZE_UNKNOWN && d->have == d->f->size && d->have) break; /* complete already */
        curl_setup(c, url);
        curl_easy_setopt(c->curl, CURLOPT_HEADERFUNCTION, dl_header);
        curl_easy_setopt(c->curl, CURLOPT_HEADERDATA, d);
        curl_easy_setopt(c->curl, CURLOPT_WRITEFUNCTION, dl_write);
        curl_easy_setopt(c->curl, CURLOPT_WRITEDATA, d);
        if (d->have) {
            /* Range by hand, not CURLOPT_RESUME_FROM: a 200 answer (a server
             * that ignores ranges) is then ours to handle, by starting over. */
            snprintf(range, sizeof range, "%" PRIu64 "-", d->have);
            curl_easy_setopt(c->curl, CURLOPT_RANGE, range);
            log_info("%s: resuming after %" PRIu64 " bytes", d->f->path, d->have);
        }
        cr = curl_easy_perform(c->curl);
        if (!d->status) curl_easy_getinfo(c->curl, CURLINFO_RESPONSE_CODE, &d->status);
        if (d->failed) goto done;
        if (cr == CURLE_OK && (d->status == 200 || d->status == 206)) {
            if (d->f->size == SIZE_UNKNOWN || d->have == d->f->size) break;
            /* The connection closed cleanly before the end: resume. */
            cr = CURLE_PARTIAL_FILE;
        }
        if (cr == CURLE_OK && d->status == 416) {
            /* The part file is not a prefix the server can continue. */
            if (dl_restart(d)) {
                log_seterr(c->err, c->errlen, "%s%s: %s", d->f->path, PART_SUFFIX, strerror(errno));
                goto done;
            }
        } else if (!transient(cr, d->status)) {
            if (cr != CURLE_OK)
                log_seterr(c->err, c->errlen, "cannot download %s: %s", url, curl_easy_strerror(cr));
            else {
                char *what = strf("file %s", d->f->path);
                http_error(c, d->status, what ? what : "file", url, &d->errbody);
                free(what);
            }
            goto done;
        }
        if (attempt == ATTEMPTS) {
            log_seterr(c->err, c->errlen, "%s: gave up after %d tries (%s; HTTP %ld); %" PRIu64
                       " bytes are kept in %s%s for the next run", d->f->path, ATTEMPTS,
                       cr != CURLE_OK ? curl_easy_strerror(cr) : "server error", d->status, d->have, d->f->path,
                       PART_SUFFIX);
            goto done;
        }
        log_warn("%s: %s (HTTP %ld) after %" PRIu64 " bytes; trying again in %d s", d->f->path,
                 cr != CURLE_OK ? curl_easy_strerror(cr) : "server error", d->status, d->have, 1 << (attempt - 1));
        if (fflush(d->part)) {
            log_seterr(c->err, c->errlen, "cannot write %s%s: %s", d->f->path, PART_SUFFIX, strerror(errno));
            goto done;
        }
        sleep(1u << (attempt - 1));
    }
    rc = 0;
done:
    free(d->errbody.p);
    d->errbody.p = NULL;
    free(url);
    return rc;
}

/* Copies the mirror's copy of f into the empty part file, hashing it. */
static int mirror_copy(fetch_ctx_t *c, dl_t *d) {
    static unsigned char buf[1 << 16];
    char *src = strf("%s/%s", c->mirror, d->f->path);
    FILE *in = src ? fopen(src, "rb") : NULL;
    int rc = -1;
    if (!in) {
        log_seterr(c->err, c->errlen, "the mirror lists %s but cannot give it: %s/%s: %s", d->f->path, c->mirror,
                   d->f->path, src ? strerror(errno) : "out of memory");
        goto done;
    }
    if (dl_restart(d)) goto io;
    size_t r;
    while ((r = fread(buf, 1, sizeof buf, in)) > 0) {
        if (fwrite(buf, 1, r, d->part) != r) goto io;
        dl_hash(d, buf, r);
    }
    if (ferror(in)) {
        log_seterr(c->err, c->errlen, "cannot read %s", src);
        goto done;
    }
    rc = 0;
    goto done;
io:
    log_seterr(c->err, c->errlen, "cannot write %s%s: %s", d->f->path, PART_SUFFIX, strerror(errno));
done:
    if (in) fclose(in);
    free(src);
    return rc;
}

/* Makes OUT/f->path the verified file f: kept when it is there and matches
 * the listing's hash (SHA-256, or git's blob id), else fetched (from the
 * mirror or the Hub) into OUT/f->path.part and renamed into place once its
 * size and hashes are right.  A wrong hash deletes the part file.  Records
 * the file and its SHA-256 in c->done.  0, or -1 with a message. */
static int fetch_file(fetch_ctx_t *c, const fetch_file_t *f) {
    char *dst = strf("%s/%s", c->out, f->path), *part = strf("%s/%s%s", c->out, f->path, PART_SUFFIX);
    char got[65], git[41];
    dl_t d = {.c = c, .f = f};
    int rc = -1, hashed = f->sha256[0] || f->git[0];
    FILE *old = NULL;
    if (!dst || !part) {
        log_seterr(c->err, c->errlen, "out of memory");
        goto done;
    }
    if (hashed && (old = fopen(dst, "rb"))) {
        int bad = dl_hash_file(&d, old);
        fclose(old);
        if (bad) {
            log_seterr(c->err, c->errlen, "cannot read %s: %s", dst, strerror(errno));
            goto done;
        }
        dl_hex(&d, got, git);
        if (dl_matches(c, &d, got, git, "the file here")) {
            log_info("%s: already here, %s verified", f->path, f->sha256[0] ? "sha256" : "git blob id");
            rc = list_add(&c->done, f->path, d.have, got, NULL) ? log_seterr(c->err, c->errlen, "out of memory") : 0;
            goto done;
        }
        log_warn("%s: fetching it again", c->err);
    }
    if (mkdirs_for(part, c->err, c->errlen)) goto done;
    if (!(d.part = fopen(part, "a+b"))) {
        log_seterr(c->err, c->errlen, "cannot open %s: %s", part, strerror(errno));
        goto done;
    }
    if (flock(fileno(d.part), LOCK_EX | LOCK_NB)) {
        log_seterr(c->err, c->errlen, "%s: another tokshift fetch is writing it", part);
        goto done;
    }
    if (dl_hash_file(&d, d.part)) {
        log_seterr(c->err, c->errlen, "cannot read %s: %s", part, strerror(errno));
        goto done;
    }
    /* Without a hash to check, a part file left by another run (perhaps of
     * another commit) is not continued. */
    if ((!hashed || (f->size != SIZE_UNKNOWN && d.have > f->size)) && dl_restart(&d)) {
        log_seterr(c->err, c->errlen, "cannot truncate %s: %s", part, strerror(errno));
        goto done;
    }
    log_info("%s: %s%s", f->path, c->mirror ? "copying from the mirror " : "downloading",
             c->mirror ? c->mirror : "");
    if (c->mirror ? mirror_copy(c, &d) : dl_run(c, &d)) goto done;
    if (fflush(d.part) || fsync(fileno(d.part))) {
        log_seterr(c->err, c->errlen, "cannot write %s: %s", part, strerror(errno));
        goto done;
    }
    dl_hex(&d, got, git);
    if (!dl_matches(c, &d, got, git, c->mirror ? "the mirror's copy" : "the download")) {
        size_t n = strlen(c->err);
        snprintf(c->err + n, c->errlen - n, "; deleted %s, run again to fetch it afresh", part);
        unlink(part);
        goto done;
    }
    if (rename(part, dst)) {
        log_seterr(c->err, c->errlen, "cannot rename %s to %s: %s", part, dst, strerror(errno));
        goto done;
    }
    log_info("%s: %" PRIu64 " bytes, sha256 %s%s", f->path, d.have, got,
             f->sha256[0] ? " verified" : f->git[0] ? ", git blob id verified" : "");
    rc = list_add(&c->done, f->path, d.have, got, NULL) ? log_seterr(c->err, c->errlen, "out of memory") : 0;
done:
    if (d.part) fclose(d.part);
    free(dst);
    free(part);
    return rc;
}

/* ---- what to fetch -------------------------------------------------------- */

/* fetch_file of the listing's entry for path.  When it is not there: 0 if
 * optional, else -1 with a message. */
static int fetch_named(fetch_ctx_t *c, const fetch_list_t *l, const char *path, int optional) {
    const fetch_file_t *f = list_find(l, path);
    if (f) return fetch_file(c, f);
    if (optional) return 0;
    const char *ext = strrchr(path, '.');
    char names[400];
    list_names(l, ext ? ext : "", names, sizeof names);
    if (c->mirror)
        return log_seterr(c->err, c->errlen, "the mirror's %s/%s lists no %s (its %s files: %s)", c->mirror,
                          SUMS_NAME, path, ext ? ext : "", names);
    return log_seterr(c->err, c->errlen, "%s has no %s at revision %s (its %s files: %s)", c->repo, path, c->revision,
                      ext ? ext : "", names);
}

/* The shards model.safetensors.index.json (already in OUT) names in its
 * weight_map, each fetched once.  0, or -1 with a message. */
static int fetch_shards(fetch_ctx_t *c, const fetch_list_t *l, const char *index) {
    char *path = strf("%s/%s", c->out, index);
    json_error_t je;
    json_t *j = path ? json_load_file(path, JSON_REJECT_DUPLICATES, &je) : NULL;
    json_t *wm = json_object_get(j, "weight_map"), *seen = json_object();
    int rc = -1;
    if (!j || !json_is_object(wm) || !seen) {
        log_seterr(c->err, c->errlen, "%s: %s", path ? path : index,
                   !j ? je.text : "no \"weight_map\" object");
        goto done;
    }
    const char *tensor;
    json_t *v;
    json_object_foreach(wm, tensor, v) {
        const char *shard = json_string_value(v);
        if (!shard || !valid_relpath(shard)) {
            log_seterr(c->err, c->errlen, "%s: weight_map[\"%s\"] is not a file name", path, tensor);
            goto done;
        }
        if (json_object_get(seen, shard)) continue;
        if (json_object_set_new(seen, shard, json_true()) || fetch_named(c, l, shard, 0)) goto done;
    }
    rc = 0;
done:
    json_decref(seen);
    json_decref(j);
    free(path);
    return rc;
}

/* A whole Hugging Face directory: what tokshift's loader reads. */
static int fetch_hfdir(fetch_ctx_t *c, const fetch_list_t *l) {
    static const char *const index = "model.safetensors.index.json";
    if (!list_find(l, "config.json")) {
        char names[400];
        list_names(l, ".gguf", names, sizeof names);
        return log_seterr(c->err, c->errlen,
                          "%s is not a Hugging Face model directory (no config.json); its GGUF files: %s%s",
                          c->mirror ? c->mirror : c->repo, names,
                          strcmp(names, "none") ? " (fetch one with REPO:FILE)" : "");
    }
    if (fetch_named(c, l, "config.json", 0) || fetch_named(c, l, "tokenizer.json", 0) ||
        fetch_named(c, l, "tokenizer_config.json", 1))
        return -1;
    if (list_find(l, index)) return fetch_named(c, l, index, 0) || fetch_shards(c, l, index) ? -1 : 0;
    if (list_find(l, "model.safetensors")) return fetch_named(c, l, "model.safetensors", 0);
    return log_seterr(c->err, c->errlen,
                      "%s has no safetensors weights (model.safetensors or %s); tokshift reads no other format "
                      "of a directory", c->mirror ? c->mirror : c->repo, index);
}

/* ---- the command ----------------------------------------------------------- */

static const char *g_help =
    "usage: tokshift fetch REPO[:FILE] [--revision R] [--out DIR]\n"
    "\n"
    "Fetches a model from the Hugging Face Hub into DIR (default: REPO's name, in\n"
    "the current folder) and prints its path: REPO:FILE one file (a GGUF), REPO\n"
    "alone a Hugging Face directory (config.json, tokenizer.json,\n"
    "tokenizer_config.json if present, model.safetensors or the shards of\n"
    "model.safetensors.index.json).  Every file's size, and every LFS file's\n"
    "SHA-256 or other file's git blob id, are checked against the Hub's listing;\n"
    "a wrong file is deleted and refused.  An interrupted download resumes from\n"
    "FILE.part; a verified file already in DIR is kept.  DIR/SHA256SUMS records\n"
    "what was fetched.\n"
    "\n"
    "  -r, --revision R   branch, tag or commit (default main)\n"
    "  -o, --out DIR      the folder to fetch into\n"
    "\n"
    "Environment:\n"
    "  HF_ENDPOINT            the Hub (default https://huggingface.co)\n"
    "  HF_TOKEN               access token for private or gated repositories (else\n"
    "                         the file HF_TOKEN_PATH, or HF_HOME/token, where the\n"
    "                         Hub's own tools save it; HF_HOME defaults to\n"
    "                         ~/.cache/huggingface)\n"
    "  HF_HUB_OFFLINE=1       no network: only the mirror\n"
    "  TOKSHIFT_MODEL_MIRROR  a folder holding REPO/ with its SHA256SUMS (what\n"
    "                         'tokshift fetch REPO --out MIRROR/REPO' leaves), used\n"
    "                         instead of the Hub; files checked against SHA256SUMS\n";

/* The token huggingface_hub would use when HF_TOKEN is unset: the file
 * $HF_TOKEN_PATH, else $HF_HOME/token (HF_HOME: $XDG_CACHE_HOME/huggingface,
 * else ~/.cache/huggingface), where `hf auth login` saves it; its first
 * line, trimmed.  A malloc'd string, or NULL when there is none. */
static char *token_from_file(void) {
    const char *tp = getenv("HF_TOKEN_PATH"), *home = getenv("HF_HOME"), *xdg = getenv("XDG_CACHE_HOME");
    const char *h = getenv("HOME");
    char *path = tp && *tp       ? strdup(tp)
                 : home && *home ? strf("%s/token", home)
                 : xdg && *xdg   ? strf("%s/huggingface/token", xdg)
                 : h && *h       ? strf("%s/.cache/huggingface/token", h)
                                 : NULL;
    FILE *f = path ? fopen(path, "r") : NULL;
    char *line = NULL;
    size_t cap = 0;
    ssize_t n = f ? getline(&line, &cap, f) : -1;
    if (f) fclose(f);
    free(path);
    while (n > 0 && isspace((unsigned char)line[n - 1])) line[--n] = 0;
    if (n <= 0) {
        free(line);
        return NULL;
    }
    return line;
}

/* Chooses the mirror's folder for the repository when it has one with a
 * SHA256SUMS (and the file asked for, if any).  0 (c->mirror set or not), or
 * -1 with a message. */
static int pick_mirror(fetch_ctx_t *c, const char *file, int offline) {
    const char *m = getenv("TOKSHIFT_MODEL_MIRROR");
    if (!m || !*m) {
        if (offline) return log_seterr(c->err, c->errlen, "HF_HUB_OFFLINE is set and TOKSHIFT_MODEL_MIRROR is not");
        return 0;
    }
    char *dir = strf("%s/%s", m, c->repo), *sums = strf("%s/%s/%s", m, c->repo, SUMS_NAME);
    char *want = file ? strf("%s/%s/%s", m, c->repo, file) : NULL;
    struct stat sb;
    int has = dir && sums && !stat(sums, &sb) && (!file || (want && !stat(want, &sb)));
    free(sums);
    free(want);
    if (has) {
        c->mirror = dir;
        return 0;
    }
    free(dir);
    if (offline)
        return log_seterr(c->err, c->errlen, "HF_HUB_OFFLINE is set and the mirror %s has no %s/%s%s%s", m, c->repo,
                          file ? file : SUMS_NAME, file ? " listed in its " : "", file ? SUMS_NAME : "");
    log_info("the mirror %s has no %s%s%s: using %s", m, c->repo, file ? "/" : "", file ? file : "",
             getenv("HF_ENDPOINT") ? "HF_ENDPOINT" : "the Hub");
    return 0;
}

int fetch_main(int argc, char **argv) {
    static const struct option opts[] = {{"revision", required_argument, 0, 'r'},
                                         {"out", required_argument, 0, 'o'},
                                         {"help", no_argument, 0, 'h'},
                                         {0}};
    const char *revision = "main", *out = NULL;
    int ch;
    while ((ch = getopt_long(argc, argv, "r:o:h", opts, NULL)) != -1) {
        switch (ch) {
        case 'r': revision = optarg; break;
        case 'o': out = optarg; break;
        case 'h': fputs(g_help, stdout); return 0;
        default: fputs("Run 'tokshift fetch --help' for its usage.\n", stderr); return EXIT_USAGE;
        }
    }
    if (optind + 1 != argc) {
        log_error("usage: tokshift fetch REPO[:FILE] [--revision R] [--out DIR]");
        return EXIT_USAGE;
    }
    char err[LOG_ERRLEN];
    fetch_ctx_t c = {.revision = revision, .err = err, .errlen = sizeof err};
    fetch_list_t list = {0};
    char *repo = strdup(argv[optind]), *file = NULL, *path = NULL, *file_token = NULL;
    int rc = 1, curl_inited = 0;
    if (!repo) {
        log_error("out of memory");
        return 1;
    }
    if ((file = strchr(repo, ':'))) *file++ = 0;
    if (!valid_repo(repo) || (file && !valid_relpath(file)) || !*revision || strlen(revision) > 256) {
        log_error("'%s': not REPO[:FILE] (REPO: OWNER/NAME of letters, digits, '-', '_', '.'; FILE: a relative "
                  "path in it), or a bad --revision", argv[optind]);
        free(repo);
        return EXIT_USAGE;
    }
    c.repo = repo;
    if (!out) out = strrchr(repo, '/') ? strrchr(repo, '/') + 1 : repo;
    c.out = out;
    const char *ep = getenv("HF_ENDPOINT");
    char *endpoint = strdup(ep && *ep ? ep : DEFAULT_ENDPOINT);
    if (!endpoint) goto oom;
    for (size_t n = strlen(endpoint); n > 0 && endpoint[n - 1] == '/';) endpoint[--n] = 0;
    c.endpoint = endpoint;
    const char *tok = getenv("HF_TOKEN");
    if (!tok || !*tok) file_token = token_from_file();
    c.token = tok && *tok ? tok : file_token;
    const char *off = getenv("HF_HUB_OFFLINE");
    int offline = off && *off && strcmp(off, "0") && strcasecmp(off, "false");

    if (pick_mirror(&c, file, offline)) goto error;
    char *slash = strf("%s/", out);
    if (!slash) goto oom;
    int bad = mkdirs_for(slash, err, sizeof err);
    free(slash);
    if (bad) goto error;
    if (c.mirror) {
        if (sums_read(c.mirror, 0, &list, err, sizeof err)) goto error;
        log_info("%s: from the mirror %s (files checked against its %s)", repo, c.mirror, SUMS_NAME);
        if (strcmp(revision, "main"))
            log_warn("the mirror holds whichever revision was fetched into it: --revision %s is not checked", revision);
    } else {
        if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK || !(c.curl = curl_easy_init())) {
            log_seterr(err, sizeof err, "cannot initialise libcurl");
            goto error;
        }
        curl_inited = 1;
        if (hub_list(&c, &list)) goto error;
        log_info("%s: revision %s is commit %s (%s)", repo, revision, c.commit, c.endpoint);
    }
    if (file ? fetch_named(&c, &list, file, 0) : fetch_hfdir(&c, &list)) goto error;
    if (sums_write(out, &c.done, err, sizeof err)) goto error;
    if (!(path = file ? strf("%s/%s", out, file) : strdup(out))) goto oom;
    printf("%s\n", path);
    rc = fflush(stdout) ? 1 : 0;
    goto done;
oom:
    snprintf(err, sizeof err, "out of memory");
error:
    log_error("%s", err);
done:
    if (c.curl) curl_easy_cleanup(c.curl);
    if (curl_inited) curl_global_cleanup();
    list_free(&list);
    list_free(&c.done);
    free(c.commit);
    free(c.mirror);
    free(endpoint);
    free(path);
    free(repo);
    free(file_token);
    return rc;
}
