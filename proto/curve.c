/* curve.c - see curve.h.
 *
 * What it is: key files (reading with permission checks, writing new ones
 * exclusively), Z85 via libzmq, the CURVE socket options, and the socket
 * monitor that reports failed handshakes.  What it is not: a store of keys
 * (nothing here keeps state), nor the ZAP handler (coordinator/auth.c). */
#include "curve.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zmq.h>

#include "log.h"

/* Key files are small; an allow-list of 100,000 named keys fits in 16 MiB. */
#define KEY_FILE_MAX (64u << 10)
#define LIST_FILE_MAX (16u << 20)

static const char Z85_CHARS[] =
    "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ.-:+=^!/*?&<>()[]{}@%$#";

int curve_available(void) { return zmq_has("curve") ? 1 : 0; }

void curve_keypair_wipe(curve_keypair_t *kp) {
    if (kp) explicit_bzero(kp, sizeof *kp);
}

/* ---- reading key files ---------------------------------------------------- */

/* Reads the regular file at path (at most max bytes) into a malloc'd,
 * NUL-terminated buffer, checking its mode against forbidden (bits that
 * group/other must not have).  secret selects the wording of a refusal.
 * Returns the buffer, or NULL with a message. */
static char *read_key_file(const char *path, size_t max, mode_t forbidden, int secret, size_t *len, char *err,
                           size_t errlen) {
    char *buf = NULL;
    struct stat st = {0};
    int fd = open(path, O_RDONLY | O_NOCTTY | O_CLOEXEC);
    if (fd < 0) {
        log_seterr(err, errlen, "%s: cannot open: %s", path, strerror(errno));
        return NULL;
    }
    if (fstat(fd, &st) != 0) {
        log_seterr(err, errlen, "%s: %s", path, strerror(errno));
        goto error;
    }
    if (!S_ISREG(st.st_mode)) {
        log_seterr(err, errlen, "%s: not a regular file", path);
        goto error;
    }
    if (st.st_mode & forbidden) {
        if (secret)
            log_seterr(err, errlen,
                       "%s: permissions %04o are too open: a secret key must be accessible by its owner only "
                       "(run: chmod 600 %s)",
                       path, (unsigned)(st.st_mode & 07777), path);
        else
            log_seterr(err, errlen,
                       "%s: permissions %04o let group or others change these public keys (run: chmod go-w %s)",
                       path, (unsigned)(st.st_mode & 07777), path);
        goto error;
    }
    if ((uint64_t)st.st_size > max) {
        log_seterr(err, errlen, "%s: %lld bytes, more than a key file may hold (%zu)", path, (long long)st.st_size,
                   max);
        goto error;
    }
    buf = malloc((size_t)st.st_size + 1);
    if (!buf) {
        log_seterr(err, errlen, "%s: out of memory", path);
        goto error;
    }
    size_t n = 0;
    while (n < (size_t)st.st_size) {
        ssize_t r = read(fd, buf + n, (size_t)st.st_size - n);
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) {
            log_seterr(err, errlen, "%s: cannot read: %s", path, strerror(errno));
            goto error;
        }
        if (r == 0) break; /* shrank meanwhile: parse what is there */
        n += (size_t)r;
    }
    buf[n] = 0;
    *len = n;
    close(fd);
    return buf;
error:
    if (buf) explicit_bzero(buf, (size_t)st.st_size);
    free(buf);
    close(fd);
    return NULL;
}

/* One parsed line: a key (Z85 and bytes) and its name (may be empty). */
typedef struct {
    char z85[CURVE_Z85_LEN + 1];
    uint8_t key[CURVE_KEY_BYTES];
    char name[CURVE_NAME_MAX + 1];
} line_key_t;

/* Parses the line s[0..n): returns 1 with *k filled when it is a key, 0 when
 * it is blank or a comment, -1 (message naming path:lineno) otherwise. */
static int parse_line(const char *s, size_t n, const char *path, size_t lineno, line_key_t *k, char *err,
                      size_t errlen) {
    while (n && (s[n - 1] == '\r' || s[n - 1] == ' ' || s[n - 1] == '\t')) n--;
    while (n && (*s == ' ' || *s == '\t')) s++, n--;
    /* No key starts with '#': the first of five Z85 characters encodes at
     * most 2^32 / 85^4 < 83, and '#' is the 85th character. */
    if (n == 0 || s[0] == '#') return 0;
    size_t tok = 0;
    while (tok < n && s[tok] != ' ' && s[tok] != '\t') tok++;
    int is_key = tok == CURVE_Z85_LEN;
    for (size_t i = 0; is_key && i < tok; i++) is_key = s[i] && strchr(Z85_CHARS, s[i]) != NULL;
    if (!is_key)
        return log_seterr(err, errlen, "%s:%zu: not a %d-character Z85 key (nor a '#' comment)", path, lineno,
                          CURVE_Z85_LEN);
    memcpy(k->z85, s, CURVE_Z85_LEN);
    k->z85[CURVE_Z85_LEN] = 0;
    if (!zmq_z85_decode(k->key, k->z85))
        return log_seterr(err, errlen, "%s:%zu: not a valid Z85 key", path, lineno);
    size_t p = tok;
    while (p < n && (s[p] == ' ' || s[p] == '\t')) p++;
    size_t nl = n - p > CURVE_NAME_MAX ? CURVE_NAME_MAX : n - p;
    for (size_t i = 0; i < nl; i++) {
        unsigned char c = (unsigned char)s[p + i];
        k->name[i] = c >= 0x20 && c < 0x7f ? (char)c : '?'; /* names go into logs */
    }
    k->name[nl] = 0;
    return 1;
}

/* Calls on_key for every key of buf (path names it in messages).  Returns
 * the number of keys, or -1 with a message. */
typedef int (*on_key_fn)(void *ctx, const line_key_t *k, char *err, size_t errlen);
static long parse_keys(const char *buf, size_t len, const char *path, on_key_fn on_key, void *ctx, char *err,
                       size_t errlen) {
    long keys = 0;
    size_t lineno = 0, i = 0;
    if (memchr(buf, 0, len)) return log_seterr(err, errlen, "%s: contains a NUL byte: not a key file", path);
    while (i < len) {
        const char *e = memchr(buf + i, '\n', len - i);
        size_t n = e ? (size_t)(e - (buf + i)) : len - i;
        line_key_t k = {0};
        int r = parse_line(buf + i, n, path, ++lineno, &k, err, errlen);
        if (r < 0) return -1;
        if (r == 1) {
            if (on_key(ctx, &k, err, errlen)) {
                explicit_bzero(&k, sizeof k);
                return -1;
            }
            keys++;
        }
        explicit_bzero(&k, sizeof k);
        i += n + 1;
    }
    return keys;
}

/* Collects exactly one key. */
typedef struct {
    const char *path;
    line_key_t k;
    int n;
} one_key_t;

static int one_key(void *ctx, const line_key_t *k, char *err, size_t errlen) {
    one_key_t *o = ctx;
    if (o->n++) return log_seterr(err, errlen, "%s: holds more than one key (a key file holds exactly one)", o->path);
    o->k = *k;
    return 0;
}

int curve_read_secret(const char *path, curve_keypair_t *kp, char *err, size_t errlen) {
    size_t len = 0;
    one_key_t o;
    memset(&o, 0, sizeof o);
    o.path = path;
    memset(kp, 0, sizeof *kp);
    if (!curve_available()) return log_seterr(err, errlen, "this libzmq was built without CURVE (libsodium)");
    char *buf = read_key_file(path, KEY_FILE_MAX, S_IRWXG | S_IRWXO, 1, &len, err, errlen);
    if (!buf) return -1;
    long n = parse_keys(buf, len, path, one_key, &o, err, errlen);
    explicit_bzero(buf, len);
    free(buf);
    if (n == 0) log_seterr(err, errlen, "%s: holds no key", path);
    if (n != 1) goto error;
    memcpy(kp->secret, o.k.z85, sizeof kp->secret);
    if (zmq_curve_public(kp->public_key, kp->secret) != 0) {
        log_seterr(err, errlen, "%s: cannot derive the public key: %s", path, zmq_strerror(zmq_errno()));
        goto error;
    }
    explicit_bzero(&o, sizeof o);
    return 0;
error:
    explicit_bzero(&o, sizeof o);
    curve_keypair_wipe(kp);
    return -1;
}

int curve_read_public(const char *path, curve_pubkey_t *out, char *err, size_t errlen) {
    size_t len = 0;
    one_key_t o;
    memset(&o, 0, sizeof o);
    o.path = path;
    memset(out, 0, sizeof *out);
    char *buf = read_key_file(path, KEY_FILE_MAX, S_IWGRP | S_IWOTH, 0, &len, err, errlen);
    if (!buf) return -1;
    long n = parse_keys(buf, len, path, one_key, &o, err, errlen);
    free(buf);
    if (n == 0) log_seterr(err, errlen, "%s: holds no key", path);
    if (n != 1) return -1;
    memcpy(out->z85, o.k.z85, sizeof out->z85);
    memcpy(out->key, o.k.key, sizeof out->key);
    memcpy(out->name, o.k.name, sizeof out->name);
    return 0;
}

/* ---- allow-lists ---------------------------------------------------------- */

typedef struct {
    curve_pubkey_t *keys;
    size_t n, cap;
    const char *default_name; /* for keys without a name; NULL: the key's first 8 characters */
} list_t;

static int list_add(void *ctx, const line_key_t *k, char *err, size_t errlen) {
    list_t *l = ctx;
    for (size_t i = 0; i < l->n; i++)
        if (!memcmp(l->keys[i].key, k->key, CURVE_KEY_BYTES)) return 0; /* a duplicate: kept once */
    if (l->n == l->cap) {
        size_t cap = l->cap ? 2 * l->cap : 16;
        curve_pubkey_t *nk = realloc(l->keys, cap * sizeof *nk);
        if (!nk) return log_seterr(err, errlen, "out of memory for %zu keys", cap);
        l->keys = nk;
        l->cap = cap;
    }
    curve_pubkey_t *o = &l->keys[l->n++];
    memset(o, 0, sizeof *o);
    memcpy(o->z85, k->z85, sizeof o->z85);
    memcpy(o->key, k->key, sizeof o->key);
    if (k->name[0]) snprintf(o->name, sizeof o->name, "%s", k->name);
    else if (l->default_name) snprintf(o->name, sizeof o->name, "%s", l->default_name);
    else snprintf(o->name, sizeof o->name, "%.8s", k->z85);
    return 0;
}

static int list_file(list_t *l, const char *path, char *err, size_t errlen) {
    size_t len = 0;
    char *buf = read_key_file(path, LIST_FILE_MAX, S_IWGRP | S_IWOTH, 0, &len, err, errlen);
    if (!buf) return -1;
    long n = parse_keys(buf, len, path, list_add, l, err, errlen);
    free(buf);
    return n < 0 ? -1 : 0;
}

static int pub_filter(const struct dirent *d) {
    size_t n = strlen(d->d_name);
    return n > 4 && d->d_name[0] != '.' && !strcmp(d->d_name + n - 4, ".pub");
}

int curve_read_allowed(const char *path, curve_pubkey_t **keys, size_t *n, char *err, size_t errlen) {
    list_t l = {0};
    struct dirent **ents = NULL;
    int n_ents = 0;
    struct stat st;
    *keys = NULL;
    *n = 0;
    if (stat(path, &st) != 0) return log_seterr(err, errlen, "%s: %s", path, strerror(errno));
    if (S_ISDIR(st.st_mode)) {
        if (st.st_mode & (S_IWGRP | S_IWOTH))
            return log_seterr(err, errlen,
                              "%s: permissions %04o let group or others add keys to this directory "
                              "(run: chmod go-w %s)",
                              path, (unsigned)(st.st_mode & 07777), path);
        n_ents = scandir(path, &ents, pub_filter, alphasort);
        if (n_ents < 0) return log_seterr(err, errlen, "%s: cannot list: %s", path, strerror(errno));
        for (int i = 0; i < n_ents; i++) {
            char file[4096], name[CURVE_NAME_MAX + 1];
            snprintf(name, sizeof name, "%.*s", (int)(strlen(ents[i]->d_name) - 4), ents[i]->d_name);
            if ((size_t)snprintf(file, sizeof file, "%s/%s", path, ents[i]->d_name) >= sizeof file) {
                log_seterr(err, errlen, "%s/%s: path too long", path, ents[i]->d_name);
                goto error;
            }
            l.default_name = name;
            if (list_file(&l, file, err, errlen)) goto error;
            l.default_name = NULL;
        }
    } else if (list_file(&l, path, err, errlen)) {
        goto error;
    }
    if (l.n == 0) {
        log_seterr(err, errlen, "%s: no public keys in it%s", path,
                   S_ISDIR(st.st_mode) ? " (a directory's keys are its *.pub files)" : "");
        goto error;
    }
    for (int i = 0; i < n_ents; i++) free(ents[i]);
    free(ents);
    *keys = l.keys;
    *n = l.n;
    return 0;
error:
    for (int i = 0; i < n_ents; i++) free(ents[i]);
    free(ents);
    free(l.keys);
    return -1;
}

/* ---- writing a key pair ------------------------------------------------------ */

/* Writes all of s to the new file path (O_EXCL, mode).  Returns 0, 1 when
 * the file exists, or -1 (message); on -1 the file is removed. */
static int write_new(const char *path, const char *s, mode_t mode, char *err, size_t errlen) {
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, mode);
    if (fd < 0) {
        if (errno == EEXIST) return 1;
        return log_seterr(err, errlen, "%s: cannot create: %s", path, strerror(errno));
    }
    size_t n = strlen(s), off = 0;
    int e = 0;
    if (fchmod(fd, mode) != 0) e = errno; /* whatever the umask said */
    while (!e && off < n) {
        ssize_t w = write(fd, s + off, n - off);
        if (w < 0 && errno == EINTR) continue;
        if (w < 0) e = errno;
        else off += (size_t)w;
    }
    if (!e && fsync(fd) != 0) e = errno;
    if (close(fd) != 0 && !e) e = errno;
    if (e) {
        unlink(path);
        return log_seterr(err, errlen, "%s: cannot write: %s", path, strerror(e));
    }
    return 0;
}

int curve_keygen(const char *prefix, char public_out[CURVE_Z85_LEN + 1], char *err, size_t errlen) {
    char key_path[4096], pub_path[4096], text[512], name[CURVE_NAME_MAX + 1];
    curve_keypair_t kp;
    int wrote_key = 0;
    memset(&kp, 0, sizeof kp);
    if (!prefix || !*prefix) return log_seterr(err, errlen, "keygen: empty --out prefix");
    if ((size_t)snprintf(key_path, sizeof key_path, "%s.key", prefix) >= sizeof key_path ||
        (size_t)snprintf(pub_path, sizeof pub_path, "%s.pub", prefix) >= sizeof pub_path)
        return log_seterr(err, errlen, "keygen: the prefix is too long");
    if (!curve_available()) return log_seterr(err, errlen, "this libzmq was built without CURVE (libsodium)");
    struct stat st;
    if (lstat(key_path, &st) == 0 || lstat(pub_path, &st) == 0)
        return log_seterr(err, errlen, "%s exists: refusing to overwrite a key (remove it, or choose another --out)",
                          lstat(key_path, &st) == 0 ? key_path : pub_path);
    if (zmq_curve_keypair(kp.public_key, kp.secret) != 0)
        return log_seterr(err, errlen, "keygen: %s", zmq_strerror(zmq_errno()));
    /* The name on the public key's line: the prefix's last component,
     * printable ASCII only. */
    const char *base = strrchr(prefix, '/');
    base = base ? base + 1 : prefix;
    size_t nb = strlen(base) > CURVE_NAME_MAX ? CURVE_NAME_MAX : strlen(base);
    for (size_t i = 0; i < nb; i++) name[i] = base[i] > 0x20 && base[i] < 0x7f ? base[i] : '_';
    name[nb] = 0;

    snprintf(text, sizeof text,
             "# tokshift CURVE secret key (Z85, ZeroMQ RFC 32). Keep it private: mode 0600, never copied.\n"
             "# Its public half is in %s.pub.\n%s\n",
             name, kp.secret);
    int r = write_new(key_path, text, 0600, err, errlen);
    explicit_bzero(text, sizeof text);
    if (r == 1) log_seterr(err, errlen, "%s exists: refusing to overwrite a key", key_path);
    if (r) goto error;
    wrote_key = 1;
    snprintf(text, sizeof text, "# tokshift CURVE public key (Z85, ZeroMQ RFC 32) of %s\n%s %s\n", name,
             kp.public_key, name);
    r = write_new(pub_path, text, 0644, err, errlen);
    if (r == 1) log_seterr(err, errlen, "%s exists: refusing to overwrite a key", pub_path);
    if (r) goto error;
    if (public_out) memcpy(public_out, kp.public_key, CURVE_Z85_LEN + 1);
    curve_keypair_wipe(&kp);
    return 0;
error:
    if (wrote_key) unlink(key_path);
    curve_keypair_wipe(&kp);
    return -1;
}

/* ---- sockets ---------------------------------------------------------------- */

int curve_setup_server(void *sock, const curve_keypair_t *kp, char *err, size_t errlen) {
    int one = 1;
    if (!curve_available()) return log_seterr(err, errlen, "this libzmq was built without CURVE (libsodium)");
    if (zmq_setsockopt(sock, ZMQ_CURVE_SERVER, &one, sizeof one) ||
        zmq_setsockopt(sock, ZMQ_CURVE_SECRETKEY, kp->secret, CURVE_Z85_LEN + 1) ||
        zmq_setsockopt(sock, ZMQ_ZAP_DOMAIN, "tokshift", 8))
        return log_seterr(err, errlen, "setting up the CURVE server: %s", zmq_strerror(zmq_errno()));
    return 0;
}

int curve_setup_client(void *sock, const curve_keypair_t *kp, const char *server_public, char *err,
                       size_t errlen) {
    if (!curve_available()) return log_seterr(err, errlen, "this libzmq was built without CURVE (libsodium)");
    if (!server_public || strlen(server_public) != CURVE_Z85_LEN)
        return log_seterr(err, errlen, "the server's public key is not %d Z85 characters", CURVE_Z85_LEN);
    if (zmq_setsockopt(sock, ZMQ_CURVE_SERVERKEY, server_public, CURVE_Z85_LEN + 1) ||
        zmq_setsockopt(sock, ZMQ_CURVE_PUBLICKEY, kp->public_key, CURVE_Z85_LEN + 1) ||
        zmq_setsockopt(sock, ZMQ_CURVE_SECRETKEY, kp->secret, CURVE_Z85_LEN + 1))
        return log_seterr(err, errlen, "setting up the CURVE client: %s", zmq_strerror(zmq_errno()));
    return 0;
}

int curve_endpoint_is_local(const char *ep) {
    if (!ep) return 0;
    if (!strncmp(ep, "ipc://", 6) || !strncmp(ep, "inproc://", 9)) return 1;
    if (strncmp(ep, "tcp://", 6)) return 0;
    const char *h = ep + 6, *semi = strchr(h, ';');
    if (semi) h = semi + 1; /* tcp://source;destination: the destination */
    const char *colon = strrchr(h, ':');
    size_t n = colon ? (size_t)(colon - h) : strlen(h);
    if (n >= 2 && h[0] == '[' && h[n - 1] == ']') h++, n -= 2;
    if ((n == 9 && !strncmp(h, "localhost", 9)) || (n == 3 && !strncmp(h, "::1", 3))) return 1;
    if (n >= 4 && !strncmp(h, "127.", 4)) {
        for (size_t i = 4; i < n; i++)
            if (!(h[i] == '.' || (h[i] >= '0' && h[i] <= '9'))) return 0;
        return 1;
    }
    return 0;
}

/* ---- handshake monitor ------------------------------------------------------- */

void *curve_monitor_open(void *ctx, void *sock, char *err, size_t errlen) {
    static atomic_int seq;
    char name[96];
    snprintf(name, sizeof name, "inproc://tokshift-monitor-%d-%d", (int)getpid(), atomic_fetch_add(&seq, 1));
    if (zmq_socket_monitor(sock, name,
                           ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL | ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL |
                               ZMQ_EVENT_HANDSHAKE_FAILED_AUTH) != 0) {
        log_seterr(err, errlen, "monitoring handshakes: %s", zmq_strerror(zmq_errno()));
        return NULL;
    }
    void *mon = zmq_socket(ctx, ZMQ_PAIR);
    int linger = 0;
    if (!mon || zmq_setsockopt(mon, ZMQ_LINGER, &linger, sizeof linger) || zmq_connect(mon, name) != 0) {
        log_seterr(err, errlen, "monitoring handshakes: %s", zmq_strerror(zmq_errno()));
        if (mon) zmq_close(mon);
        zmq_socket_monitor(sock, NULL, 0);
        return NULL;
    }
    return mon;
}

int curve_monitor_next(void *mon, curve_event_t *ev) {
    zmq_msg_t head, addr;
    memset(ev, 0, sizeof *ev);
    zmq_msg_init(&head);
    if (zmq_msg_recv(&head, mon, ZMQ_DONTWAIT) < 0) {
        int e = zmq_errno();
        zmq_msg_close(&head);
        return e == EAGAIN || e == EINTR ? 0 : -1;
    }
    int more = zmq_msg_more(&head);
    if (zmq_msg_size(&head) == 6) {
        uint16_t event;
        memcpy(&event, zmq_msg_data(&head), 2);
        memcpy(&ev->value, (const uint8_t *)zmq_msg_data(&head) + 2, 4);
        ev->event = event;
    }
    zmq_msg_close(&head);
    int first = 1;
    while (more) { /* the endpoint, and nothing else in this event version */
        zmq_msg_init(&addr);
        if (zmq_msg_recv(&addr, mon, 0) < 0) {
            zmq_msg_close(&addr);
            return -1;
        }
        if (first) {
            size_t n = zmq_msg_size(&addr);
            if (n >= sizeof ev->endpoint) n = sizeof ev->endpoint - 1;
            memcpy(ev->endpoint, zmq_msg_data(&addr), n);
            ev->endpoint[n] = 0;
            first = 0;
        }
        more = zmq_msg_more(&addr);
        zmq_msg_close(&addr);
    }
    return 1;
}

const char *curve_event_describe(const curve_event_t *ev, char *buf, size_t cap) {
    switch (ev->event) {
    case ZMQ_EVENT_HANDSHAKE_FAILED_AUTH:
        snprintf(buf, cap, "authentication refused (ZAP status %u): the key is not on the server's list",
                 (unsigned)ev->value);
        break;
    case ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL:
        snprintf(buf, cap, "handshake failed: %s", ev->value ? strerror((int)ev->value) : "no detail");
        break;
    case ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL:
        if (ev->value == ZMQ_PROTOCOL_ERROR_ZMTP_MECHANISM_MISMATCH)
            snprintf(buf, cap, "security mechanism mismatch: one side uses CURVE and the other does not");
        else if (ev->value == ZMQ_PROTOCOL_ERROR_ZMTP_CRYPTOGRAPHIC ||
                 ev->value == ZMQ_PROTOCOL_ERROR_ZMTP_KEY_EXCHANGE)
            snprintf(buf, cap, "CURVE handshake failed (cryptographic error 0x%x: a wrong server key?)",
                     (unsigned)ev->value);
        else if ((ev->value & 0xf0000000u) == ZMQ_PROTOCOL_ERROR_ZAP_UNSPECIFIED)
            snprintf(buf, cap, "the authentication handler failed (ZAP error 0x%x)", (unsigned)ev->value);
        else
            snprintf(buf, cap, "ZMTP protocol error 0x%x (not a ZeroMQ peer, or a broken handshake)",
                     (unsigned)ev->value);
        break;
    default:
        snprintf(buf, cap, "socket event 0x%x (value %u)", (unsigned)ev->event, (unsigned)ev->value);
    }
    return buf;
}

void curve_monitor_close(void *sock, void **mon) {
    if (sock) zmq_socket_monitor(sock, NULL, 0);
    if (mon && *mon) {
        zmq_close(*mon);
        *mon = NULL;
    }
}
