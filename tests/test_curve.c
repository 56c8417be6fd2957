/* test_curve.c - CURVE keys, key files and the coordinator's ZAP handler.
 *
 * What it checks:
 *   - keygen writes PREFIX.key (0600) and PREFIX.pub (0644) whatever the
 *     umask, refuses to overwrite either, and leaves nothing behind when it
 *     refuses;
 *   - a secret key file that group or others may access is refused with a
 *     message naming the mode and `chmod 600`; 0600 and 0400 are accepted;
 *     public-key files and allow-list directories writable by group or
 *     others are refused;
 *   - malformed key files (empty, two keys, a short key, a bad character, a
 *     NUL byte) are refused naming the file and the line;
 *   - allow-lists: a directory's *.pub files (names from the files), a file
 *     of named and unnamed keys with comments, duplicates kept once;
 *   - which endpoints count as loopback;
 *   - live, on tcp://127.0.0.1 with the real ZAP handler (auth.c): a client
 *     with a listed key gets through (its key's name arrives as User-Id);
 *     an unlisted key, a NULL-mechanism client and a client with a wrong
 *     server key get nothing through, and the handler's log names the
 *     refused peer's address and key prefix;
 *   - the log rate limiter's arithmetic. */
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <zmq.h>

#include "auth.h"
#include "curve.h"
#include "log.h"
#include "ratelimit.h"
#include "testutil.h"
#include "now.h"

static char err[LOG_ERRLEN];
static char dir[256];

static const char *path_in(const char *name) {
    static char buf[4][512];
    static int k;
    k = (k + 1) % 4;
    snprintf(buf[k], sizeof buf[k], "%s/%s", dir, name);
    return buf[k];
}

static void write_file(const char *path, const char *text, size_t len, mode_t mode) {
    unlink(path);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, mode);
    TU_REQUIRE(fd >= 0, "create %s: %s", path, strerror(errno));
    TU_REQUIRE(write(fd, text, len) == (ssize_t)len, "write %s", path);
    close(fd);
    chmod(path, mode);
}

static mode_t mode_of(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 ? (st.st_mode & 07777) : (mode_t)-1;
}

/* ---- key files ------------------------------------------------------------ */

static void test_keygen(void) {
    char pub[CURVE_Z85_LEN + 1];
    mode_t old = umask(0); /* keygen must not depend on the umask */
    TU_CHECK(curve_keygen(path_in("a"), pub, err, sizeof err) == 0, "keygen a: %s", err);
    umask(old);
    TU_CHECK(mode_of(path_in("a.key")) == 0600, "a.key mode %o", (unsigned)mode_of(path_in("a.key")));
    TU_CHECK(mode_of(path_in("a.pub")) == 0644, "a.pub mode %o", (unsigned)mode_of(path_in("a.pub")));
    curve_keypair_t kp;
    curve_pubkey_t pk;
    TU_CHECK(curve_read_secret(path_in("a.key"), &kp, err, sizeof err) == 0, "read a.key: %s", err);
    TU_CHECK(curve_read_public(path_in("a.pub"), &pk, err, sizeof err) == 0, "read a.pub: %s", err);
    TU_CHECK(!strcmp(kp.public_key, pub) && !strcmp(pk.z85, pub), "public keys agree: %s %s %s", kp.public_key,
             pk.z85, pub);
    TU_CHECK(!strcmp(pk.name, "a"), "a.pub's key is named '%s'", pk.name);

    /* Never overwritten: the secret stays the same. */
    curve_keypair_t again;
    TU_CHECK(curve_keygen(path_in("a"), NULL, err, sizeof err) == -1 && strstr(err, "exists") &&
                 strstr(err, "a.key"),
             "second keygen refused: %s", err);
    TU_CHECK(curve_read_secret(path_in("a.key"), &again, err, sizeof err) == 0 && !strcmp(again.secret, kp.secret),
             "a.key unchanged");
    /* Only the .pub exists: refused, and no .key is created. */
    write_file(path_in("p.pub"), "x\n", 2, 0644);
    TU_CHECK(curve_keygen(path_in("p"), NULL, err, sizeof err) == -1 && strstr(err, "p.pub"), "p refused: %s", err);
    TU_CHECK(access(path_in("p.key"), F_OK) != 0, "p.key not created");
    unlink(path_in("p.pub"));
    /* A folder that does not exist: a clean error, nothing left. */
    TU_CHECK(curve_keygen(path_in("nodir/x"), NULL, err, sizeof err) == -1 && strstr(err, "cannot create"),
             "keygen in a missing folder: %s", err);
    curve_keypair_wipe(&kp);
    curve_keypair_wipe(&again);
    TU_CHECK(kp.secret[0] == 0, "wipe clears the secret");
}

static void test_permissions(void) {
    static const struct {
        mode_t mode;
        int ok;
    } cases[] = {{0600, 1}, {0400, 1}, {0640, 0}, {0604, 0}, {0660, 0}, {0644, 0}, {0610, 0}, {0601, 0}};
    curve_keypair_t kp;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        chmod(path_in("a.key"), cases[i].mode);
        int r = curve_read_secret(path_in("a.key"), &kp, err, sizeof err);
        if (cases[i].ok) {
            TU_CHECK(r == 0, "mode %04o accepted: %s", (unsigned)cases[i].mode, err);
        } else {
            char want[32];
            snprintf(want, sizeof want, "%04o", (unsigned)cases[i].mode);
            TU_CHECK(r == -1 && strstr(err, "too open") && strstr(err, want) && strstr(err, "chmod 600") &&
                         kp.secret[0] == 0,
                     "mode %04o refused: %s", (unsigned)cases[i].mode, err);
        }
    }
    chmod(path_in("a.key"), 0600);
    curve_pubkey_t pk;
    chmod(path_in("a.pub"), 0664);
    TU_CHECK(curve_read_public(path_in("a.pub"), &pk, err, sizeof err) == -1 && strstr(err, "chmod go-w"),
             "group-writable .pub refused: %s", err);
    chmod(path_in("a.pub"), 0444);
    TU_CHECK(curve_read_public(path_in("a.pub"), &pk, err, sizeof err) == 0, "read-only .pub accepted: %s", err);
    chmod(path_in("a.pub"), 0644);
    TU_CHECK(curve_read_secret(path_in("missing.key"), &kp, err, sizeof err) == -1 && strstr(err, "missing.key"),
             "missing file: %s", err);
    TU_CHECK(curve_read_secret(dir, &kp, err, sizeof err) == -1 && strstr(err, "not a regular file"),
             "a directory as key file: %s", err);
}

static void test_malformed(void) {
    char sec[CURVE_Z85_LEN + 1], pub[CURVE_Z85_LEN + 1], text[512];
    TU_REQUIRE(zmq_curve_keypair(pub, sec) == 0, "keypair");
    curve_keypair_t kp;
    static const struct {
        const char *fmt, *want;
    } cases[] = {
        {"", "holds no key"},
        {"# only a comment\n\n", "holds no key"},
        {"%s\n%s\n", "more than one key"},
        {"# c\n%.39s\n", ":2: not a 40-character Z85 key"},
        {"%.39s~\n", ":1: not a 40-character Z85 key"},
        {"%sx\n", ":1: not a 40-character Z85 key"},
        {"hello world\n", ":1: not a 40-character Z85 key"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        snprintf(text, sizeof text, cases[i].fmt, sec, sec);
        write_file(path_in("bad.key"), text, strlen(text), 0600);
        TU_CHECK(curve_read_secret(path_in("bad.key"), &kp, err, sizeof err) == -1 && strstr(err, "bad.key") &&
                     strstr(err, cases[i].want),
                 "case %zu (%s): %s", i, cases[i].want, err);
    }
    /* A NUL byte, and Windows line ends and blanks (those are fine). */
    snprintf(text, sizeof text, "%s\n", sec);
    text[3] = 0;
    write_file(path_in("bad.key"), text, strlen(sec) + 1, 0600);
    TU_CHECK(curve_read_secret(path_in("bad.key"), &kp, err, sizeof err) == -1 && strstr(err, "NUL"), "NUL: %s", err);
    snprintf(text, sizeof text, "# comment\r\n\r\n  %s  \r\n", sec);
    write_file(path_in("ok.key"), text, strlen(text), 0600);
    TU_CHECK(curve_read_secret(path_in("ok.key"), &kp, err, sizeof err) == 0 && !strcmp(kp.secret, sec) &&
                 !strcmp(kp.public_key, pub),
             "CRLF and blanks: %s", err);
    /* '#' is a Z85 character, but no key starts with it: a '#' line is a
     * comment, even one that looks like a key. */
    snprintf(text, sizeof text, "#comment\n#%.39s\n%s\n", sec, sec);
    write_file(path_in("ok.key"), text, strlen(text), 0600);
    TU_CHECK(curve_read_secret(path_in("ok.key"), &kp, err, sizeof err) == 0 && !strcmp(kp.secret, sec),
             "'#' lines are comments: %s", err);
    for (int i = 0; i < 20000; i++) {
        TU_REQUIRE(zmq_curve_keypair(pub, sec) == 0, "keypair");
        if (pub[0] == '#' || sec[0] == '#') TU_CHECK(0, "a key starting with '#': %s %s", pub, sec);
    }
    curve_keypair_wipe(&kp);
}

static void test_allowed(void) {
    curve_pubkey_t *keys = NULL;
    size_t n = 0;
    char pub[3][CURVE_Z85_LEN + 1], sec[CURVE_Z85_LEN + 1], text[1024];
    for (int i = 0; i < 3; i++) TU_REQUIRE(zmq_curve_keypair(pub[i], sec) == 0, "keypair");
    const char *d = path_in("clients");
    char dpath[512];
    snprintf(dpath, sizeof dpath, "%s", d);
    TU_REQUIRE(mkdir(dpath, 0755) == 0, "mkdir %s", dpath);
    char f[600];
    snprintf(f, sizeof f, "%s/w1.pub", dpath);
    snprintf(text, sizeof text, "# worker one\n%s\n", pub[0]); /* no name: the file's */
    write_file(f, text, strlen(text), 0644);
    snprintf(f, sizeof f, "%s/w2.pub", dpath);
    snprintf(text, sizeof text, "%s gpu-box-2\n", pub[1]);
    write_file(f, text, strlen(text), 0644);
    snprintf(f, sizeof f, "%s/notes.txt", dpath);
    write_file(f, "not a key\n", 10, 0644);
    snprintf(f, sizeof f, "%s/.hidden.pub", dpath);
    write_file(f, "not a key either\n", 17, 0644);
    TU_CHECK(curve_read_allowed(dpath, &keys, &n, err, sizeof err) == 0 && n == 2, "directory: %zu keys: %s", n, err);
    if (n == 2) {
        TU_CHECK(!strcmp(keys[0].name, "w1") && !strcmp(keys[0].z85, pub[0]), "w1: %s %s", keys[0].name, keys[0].z85);
        TU_CHECK(!strcmp(keys[1].name, "gpu-box-2") && !strcmp(keys[1].z85, pub[1]), "w2: %s", keys[1].name);
    }
    free(keys);
    chmod(dpath, 0775);
    TU_CHECK(curve_read_allowed(dpath, &keys, &n, err, sizeof err) == -1 && strstr(err, "chmod go-w") && !keys,
             "group-writable directory refused: %s", err);
    chmod(dpath, 0755);

    /* A file of keys: comments, a named and an unnamed key, a duplicate. */
    snprintf(text, sizeof text, "# allowed workers\n%s  alpha\n\n%s\n%s alpha-again\n", pub[0], pub[2], pub[0]);
    write_file(path_in("clients.txt"), text, strlen(text), 0644);
    TU_CHECK(curve_read_allowed(path_in("clients.txt"), &keys, &n, err, sizeof err) == 0 && n == 2,
             "file: %zu keys: %s", n, err);
    if (n == 2) {
        TU_CHECK(!strcmp(keys[0].name, "alpha"), "named key: '%s'", keys[0].name);
        TU_CHECK(!strncmp(keys[1].name, pub[2], 8) && strlen(keys[1].name) == 8, "unnamed key named by prefix: '%s'",
                 keys[1].name);
    }
    free(keys);
    snprintf(text, sizeof text, "%s\n%s\nnot-a-key\n", pub[0], pub[1]);
    write_file(path_in("clients.txt"), text, strlen(text), 0644);
    TU_CHECK(curve_read_allowed(path_in("clients.txt"), &keys, &n, err, sizeof err) == -1 &&
                 strstr(err, "clients.txt:3:") && !keys,
             "bad line named: %s", err);
    write_file(path_in("clients.txt"), "# nobody\n", 9, 0644);
    TU_CHECK(curve_read_allowed(path_in("clients.txt"), &keys, &n, err, sizeof err) == -1 && strstr(err, "no public keys"),
             "empty list refused: %s", err);
    TU_CHECK(curve_read_allowed(path_in("nothing-here"), &keys, &n, err, sizeof err) == -1, "missing list refused");
}

static void test_local(void) {
    static const struct {
        const char *ep;
        int local;
    } cases[] = {
        {"tcp://127.0.0.1:5555", 1}, {"tcp://127.1.2.3:1", 1},   {"tcp://localhost:5555", 1},
        {"tcp://[::1]:5555", 1},     {"ipc:///tmp/x", 1},        {"inproc://x", 1},
        {"tcp://*:5555", 0},         {"tcp://0.0.0.0:5555", 0},  {"tcp://10.0.0.1:5555", 0},
        {"tcp://eth0:5555", 0},      {"tcp://127.example:1", 0}, {"tcp://coordinator:5555", 0},
        {"tcp://10.0.0.2;127.0.0.1:5555", 1}, {"udp://127.0.0.1:1", 0},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        TU_CHECK(curve_endpoint_is_local(cases[i].ep) == cases[i].local, "%s: local %d", cases[i].ep,
                 curve_endpoint_is_local(cases[i].ep));
}

static void test_ratelimit(void) {
    ratelimit_t r;
    uint64_t held = 99;
    ratelimit_init(&r, 1.0, 3, 1000);
    int passed = 0;
    for (int i = 0; i < 10; i++) passed += ratelimit_allow(&r, 1000, NULL);
    TU_CHECK(passed == 3, "burst of 3: %d passed", passed);
    TU_CHECK(ratelimit_allow(&r, 1500, &held) == 0, "half a second later: still held");
    TU_CHECK(ratelimit_allow(&r, 2001, &held) == 1 && held == 8, "a second later: one passes, %llu held",
             (unsigned long long)held);
    TU_CHECK(ratelimit_allow(&r, 2002, &held) == 0, "then held again");
    TU_CHECK(ratelimit_allow(&r, 100000, &held) == 1 && held == 1, "much later: passes (%llu held)",
             (unsigned long long)held);

    /* Per key: a noisy key does not hide a quiet one; the overall cap holds. */
    static ratelimit_keyed_t k;
    ratelimit_keyed_init(&k, 0.1, 2, 1.0, 5, 0);
    passed = 0;
    for (int i = 0; i < 50; i++) passed += ratelimit_keyed_allow(&k, "noisy", 0, NULL);
    TU_CHECK(passed == 2, "noisy key: %d passed", passed);
    TU_CHECK(ratelimit_keyed_allow(&k, "quiet", 0, &held) == 1 && held == 0, "the quiet key still passes");
    for (int i = 0; i < 10; i++) { /* (fewer than RATELIMIT_KEYS: "noisy" keeps its slot) */
        char key[16];
        snprintf(key, sizeof key, "k%d", i);
        passed += ratelimit_keyed_allow(&k, key, 0, NULL);
    }
    TU_CHECK(passed == 2 + 2, "overall cap of 5: %d passed in all (with the quiet one)", passed + 1);
    TU_CHECK(ratelimit_keyed_allow(&k, "noisy", 10000, &held) == 1 && held == 48,
             "noisy again after 10 s: %llu held", (unsigned long long)held);
}

/* ---- live: the ZAP handler ------------------------------------------------- */

typedef struct {
    void *router;
    auth_t *auth;
    int got;             /* messages received */
    char user[128];      /* User-Id of the last one */
    char body[64];
} server_t;

/* Serves for ms milliseconds: the ZAP handler and the ROUTER's messages. */
static void serve(server_t *s, int ms) {
    int64_t end = now_ms() + ms;
    while (now_ms() < end) {
        zmq_pollitem_t it[3] = {{s->router, 0, ZMQ_POLLIN, 0}};
        void *extra[2];
        int n = 1 + (int)auth_sockets(s->auth, extra, 2);
        for (int k = 1; k < n; k++) it[k] = (zmq_pollitem_t){extra[k - 1], 0, ZMQ_POLLIN, 0};
        zmq_poll(it, n, 20);
        auth_process(s->auth);
        for (;;) {
            zmq_msg_t id, body;
            zmq_msg_init(&id);
            if (zmq_msg_recv(&id, s->router, ZMQ_DONTWAIT) < 0) {
                zmq_msg_close(&id);
                break;
            }
            zmq_msg_init(&body);
            zmq_msg_recv(&body, s->router, 0);
            const char *u = zmq_msg_gets(&body, "User-Id");
            snprintf(s->user, sizeof s->user, "%s", u ? u : "");
            snprintf(s->body, sizeof s->body, "%.*s", (int)zmq_msg_size(&body), (const char *)zmq_msg_data(&body));
            s->got++;
            zmq_msg_close(&body);
            zmq_msg_close(&id);
        }
    }
}

/* A DEALER to ep: CURVE with kp and server_key when kp is given, NULL
 * mechanism otherwise; sends "hi". */
static void *client(void *ctx, const char *ep, const curve_keypair_t *kp, const char *server_key, void **mon) {
    void *c = zmq_socket(ctx, ZMQ_DEALER);
    int linger = 0;
    zmq_setsockopt(c, ZMQ_LINGER, &linger, sizeof linger);
    if (kp) TU_REQUIRE(curve_setup_client(c, kp, server_key, err, sizeof err) == 0, "client: %s", err);
    *mon = curve_monitor_open(ctx, c, err, sizeof err);
    TU_REQUIRE(*mon, "client monitor: %s", err);
    TU_REQUIRE(zmq_connect(c, ep) == 0, "connect %s", ep);
    zmq_send(c, "hi", 2, ZMQ_DONTWAIT);
    return c;
}

/* Whether mon reported an event of type ev (and, when value != 0, value). */
static int saw_event(void *mon, int ev, uint32_t value) {
    curve_event_t e;
    int seen = 0;
    while (curve_monitor_next(mon, &e) == 1) seen |= e.event == ev && (!value || e.value == value);
    return seen;
}

static void close_client(void *c, void *mon) {
    curve_monitor_close(c, &mon);
    zmq_close(c);
}

static void test_live(void) {
    void *ctx = zmq_ctx_new();
    curve_keypair_t server_kp, good, stranger;
    char buf[CURVE_Z85_LEN + 1], fake[CURVE_Z85_LEN + 1];
    TU_REQUIRE(curve_keygen(path_in("coord"), NULL, err, sizeof err) == 0, "keygen: %s", err);
    TU_REQUIRE(curve_read_secret(path_in("coord.key"), &server_kp, err, sizeof err) == 0, "%s", err);
    TU_REQUIRE(curve_keygen(path_in("clients/good"), NULL, err, sizeof err) == 0, "keygen: %s", err);
    TU_REQUIRE(curve_read_secret(path_in("clients/good.key"), &good, err, sizeof err) == 0, "%s", err);
    TU_REQUIRE(zmq_curve_keypair(stranger.public_key, stranger.secret) == 0, "keypair");
    TU_REQUIRE(zmq_curve_keypair(fake, buf) == 0, "keypair");

    /* The handler's log goes to a file, to be read back. */
    fflush(stderr);
    int saved = dup(STDERR_FILENO);
    int logfd = open(path_in("auth.log"), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    TU_REQUIRE(saved >= 0 && logfd >= 0, "log file");
    dup2(logfd, STDERR_FILENO);
    close(logfd);

    server_t s = {0};
    s.auth = auth_new(ctx, path_in("clients"), err, sizeof err);
    TU_REQUIRE(s.auth, "auth_new: %s", err);
    TU_CHECK(auth_n_keys(s.auth) == 3, "clients/ holds w1, w2 and good: %zu keys", auth_n_keys(s.auth));
    void *second = auth_new(ctx, path_in("clients"), err, sizeof err);
    TU_CHECK(!second && strstr(err, "zeromq.zap.01"), "a second ZAP handler in one context is refused: %s", err);
    s.router = zmq_socket(ctx, ZMQ_ROUTER);
    int linger = 0;
    zmq_setsockopt(s.router, ZMQ_LINGER, &linger, sizeof linger);
    TU_REQUIRE(curve_setup_server(s.router, &server_kp, err, sizeof err) == 0, "%s", err);
    TU_REQUIRE(auth_watch(s.auth, s.router, err, sizeof err) == 0, "%s", err);
    TU_REQUIRE(zmq_bind(s.router, "tcp://127.0.0.1:*") == 0, "bind");
    char ep[256];
    size_t ep_len = sizeof ep;
    zmq_getsockopt(s.router, ZMQ_LAST_ENDPOINT, ep, &ep_len);

    /* A listed key: through, named. */
    void *mon, *c = client(ctx, ep, &good, server_kp.public_key, &mon);
    serve(&s, 1500);
    TU_CHECK(s.got == 1 && !strcmp(s.body, "hi") && !strcmp(s.user, "good"), "listed key: %d messages, user '%s'",
             s.got, s.user);
    close_client(c, mon);

    /* An unlisted key: nothing through; the client hears status 400. */
    s.got = 0;
    c = client(ctx, ep, &stranger, server_kp.public_key, &mon);
    serve(&s, 1500);
    TU_CHECK(s.got == 0, "unlisted key: %d messages got through", s.got);
    TU_CHECK(saw_event(mon, ZMQ_EVENT_HANDSHAKE_FAILED_AUTH, 400), "the unlisted client was told 400");
    close_client(c, mon);

    /* NULL mechanism: nothing through; mechanism mismatch on both sides. */
    c = client(ctx, ep, NULL, NULL, &mon);
    serve(&s, 1500);
    TU_CHECK(s.got == 0, "NULL client: %d messages got through", s.got);
    TU_CHECK(saw_event(mon, ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL, ZMQ_PROTOCOL_ERROR_ZMTP_MECHANISM_MISMATCH),
             "the NULL client saw a mechanism mismatch");
    close_client(c, mon);

    /* A listed key but the wrong server key: nothing through. */
    c = client(ctx, ep, &good, fake, &mon);
    serve(&s, 1500);
    TU_CHECK(s.got == 0, "wrong server key: %d messages got through", s.got);
    close_client(c, mon);
    serve(&s, 200);

    auth_stats_t st = auth_stats(s.auth);
    zmq_close(s.router);
    auth_destroy(&s.auth);
    zmq_ctx_term(ctx);
    fflush(stderr);
    dup2(saved, STDERR_FILENO);
    close(saved);
    TU_CHECK(st.accepted >= 1 && st.refused >= 1 && st.failed_handshakes >= 2,
             "stats: %lu accepted, %lu refused, %lu failed handshakes", st.accepted, st.refused, st.failed_handshakes);

    size_t len;
    char *log = tu_read_file(path_in("auth.log"), &len);
    char want[128];
    snprintf(want, sizeof want, "refused a worker at 127.0.0.1: CURVE key %.8s... is not in --curve-clients",
             stranger.public_key);
    TU_CHECK(strstr(log, want), "log names the refused key and address (%s):\n%s", want, log);
    snprintf(want, sizeof want, "accepted worker key 'good' (%.8s...) from 127.0.0.1", good.public_key);
    TU_CHECK(strstr(log, want), "log names the accepted key (%s):\n%s", want, log);
    TU_CHECK(strstr(log, "refused a peer connecting to tcp://127.0.0.1:") && strstr(log, "mechanism mismatch"),
             "log names the mechanism mismatch:\n%s", log);
    TU_CHECK(!strstr(log, server_kp.secret) && !strstr(log, good.secret), "no secret key in the log");
    fprintf(stderr, "auth log:\n%s", log);
    free(log);
    curve_keypair_wipe(&server_kp);
    curve_keypair_wipe(&good);
}

int main(void) {
    if (!curve_available()) {
        fprintf(stderr, "skip: this libzmq has no CURVE\n");
        return 77;
    }
    snprintf(dir, sizeof dir, "/tmp/tokshift-curve-XXXXXX");
    TU_REQUIRE(mkdtemp(dir), "mkdtemp");
    test_keygen();
    test_permissions();
    test_malformed();
    test_allowed();
    test_local();
    test_ratelimit();
    test_live();
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", dir);
    return tu_finish("test_curve");
}
