/* test_wire.c - the wire protocol (proto/wire.h) without the generated code.
 *
 * What it checks:
 *   - every message type round-trips with edge values (empty and NULL
 *     strings, 0 docs, 100000 docs, an 8 MiB text, a WIRE_MAX_STRING text,
 *     unicode, extreme integers, -0.0);
 *   - wire_encode's bytes equal those of an independent protobuf encoder
 *     written here from tokshift.proto (so the schema's field numbers and
 *     types are what the .proto says, and the test can craft bad frames
 *     byte by byte without including tokshift.pb-c.h);
 *   - each absurd value is refused by wire_encode and, as crafted bytes, by
 *     wire_decode, with a message naming the field and value;
 *   - malformed frames (empty, oversized, not protobuf, truncated, wrong
 *     version, unknown or missing payload, element counts that would make
 *     unpack allocate without bound) give clean errors;
 *   - a fuzz loop of random bytes, truncations, bit flips and splices of
 *     valid encodings: never a crash (the suite also runs under ASan+UBSan),
 *     an error always has a message, and whatever decodes re-encodes and
 *     decodes to the same message;
 *   - a live loopback (ROUTER on tcp://127.0.0.1:*, DEALERs): the
 *     conversation, then garbage frames of every kind, each reported with
 *     the sender's identity, and the sockets keep working afterwards.
 * What it is not: a test of the coordinator's or worker's state machines.
 *
 * TOKSHIFT_TEST_SEED=N replays a fuzz run (the seed is printed);
 * TOKSHIFT_WIRE_FUZZ=N runs N fuzz iterations instead of 200000. */
#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/time.h>
#include <time.h>
#include <zmq.h>

#include "log.h"
#include "testutil.h"
#include "wire.h"
#include "now.h"

static char err[LOG_ERRLEN];

/* TU_REQUIRE evaluates its condition twice; this evaluates it once (most
 * conditions here bind, connect or send). */
#define REQUIRE(cond, ...)                 \
    do {                                   \
        int ok_ = !!(cond);                \
        TU_REQUIRE(ok_, __VA_ARGS__);      \
    } while (0)

static uint64_t rng_state;
static uint64_t rnd(void) { /* xorshift64* */
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return rng_state * 0x2545F4914F6CDD1DULL;
}
static size_t rnd_below(size_t n) { return n ? (size_t)(rnd() % n) : 0; }

static char *xstrdup(const char *s) {
    size_t n = strlen(s);
    char *d = malloc(n + 1);
    REQUIRE(d, "out of memory");
    memcpy(d, s, n + 1);
    return d;
}

static void *xmalloc(size_t n) {
    void *p = malloc(n ? n : 1);
    REQUIRE(p, "out of memory (%zu bytes)", n);
    return p;
}

/* ---- an independent protobuf encoder (proto3 rules) ------------------------ */

typedef struct {
    uint8_t *b;
    size_t n, cap;
} pb_t;

static void pb_raw(pb_t *p, const void *d, size_t n) {
    if (p->n + n > p->cap) {
        size_t cap = p->cap ? p->cap : 64;
        while (cap < p->n + n) cap *= 2;
        p->b = realloc(p->b, cap);
        REQUIRE(p->b, "out of memory");
        p->cap = cap;
    }
    if (n) memcpy(p->b + p->n, d, n);
    p->n += n;
}
static void pb_uvarint(pb_t *p, uint64_t v) {
    uint8_t b[10];
    size_t n = 0;
    do {
        b[n++] = (uint8_t)((v & 0x7f) | (v > 0x7f ? 0x80 : 0));
        v >>= 7;
    } while (v);
    pb_raw(p, b, n);
}
static void pb_tag(pb_t *p, unsigned field, unsigned wt) { pb_uvarint(p, (uint64_t)field << 3 | wt); }
/* proto3: a scalar equal to its default is not written. */
static void pb_u64(pb_t *p, unsigned f, uint64_t v) {
    if (!v) return;
    pb_tag(p, f, 0);
    pb_uvarint(p, v);
}
static void pb_i64(pb_t *p, unsigned f, int64_t v) { pb_u64(p, f, (uint64_t)v); } /* int32 too: sign-extended */
/* protobuf-c leaves out a float equal to 0, -0.0 included (it arrives as 0). */
static void pb_f32(pb_t *p, unsigned f, float v) {
    uint32_t bits;
    memcpy(&bits, &v, 4);
    if (v == 0.0f) return;
    pb_tag(p, f, 5);
    uint8_t b[4] = {(uint8_t)bits, (uint8_t)(bits >> 8), (uint8_t)(bits >> 16), (uint8_t)(bits >> 24)};
    pb_raw(p, b, 4);
}
static void pb_f64(pb_t *p, unsigned f, double v) {
    uint64_t bits;
    memcpy(&bits, &v, 8);
    if (v == 0.0) return;
    pb_tag(p, f, 1);
    uint8_t b[8];
    for (int i = 0; i < 8; i++) b[i] = (uint8_t)(bits >> (8 * i));
    pb_raw(p, b, 8);
}
static void pb_lenfield(pb_t *p, unsigned f, const void *d, size_t n) {
    pb_tag(p, f, 2);
    pb_uvarint(p, n);
    pb_raw(p, d, n);
}
static void pb_str(pb_t *p, unsigned f, const char *s) {
    if (s && *s) pb_lenfield(p, f, s, strlen(s));
}
static void pb_sub(pb_t *p, unsigned f, pb_t *sub) { /* always written; frees sub */
    pb_lenfield(p, f, sub->b, sub->n);
    free(sub->b);
    memset(sub, 0, sizeof *sub);
}

/* m as the .proto says it is encoded, with the given version (0: none). */
static pb_t tenc(const wire_msg_t *m, uint32_t version) {
    pb_t env = {0}, s = {0};
    pb_u64(&env, 1, version);
    switch (m->type) {
    case WIRE_HELLO:
        pb_str(&s, 1, m->u.hello.worker);
        pb_str(&s, 2, m->u.hello.host);
        pb_i64(&s, 3, m->u.hello.pid);
        pb_i64(&s, 4, m->u.hello.threads);
        pb_str(&s, 5, m->u.hello.model_identity);
        pb_str(&s, 6, m->u.hello.model_name);
        if (m->u.hello.observes) pb_i64(&s, 7, m->u.hello.observes); /* proto3: false is not written */
        if (m->u.hello.templates) pb_i64(&s, 8, m->u.hello.templates);
        if (m->u.hello.cuts_by_bytes) pb_i64(&s, 9, m->u.hello.cuts_by_bytes);
        break;
    case WIRE_WELCOME: {
        const wire_settings_t *st = &m->u.welcome.settings;
        pb_t rs = {0};
        pb_i64(&rs, 1, st->window);
        pb_i64(&rs, 2, st->stride);
        if (st->n_prefix_lengths) { /* packed */
            pb_t packed = {0};
            for (size_t i = 0; i < st->n_prefix_lengths; i++)
                pb_uvarint(&packed, (uint64_t)(int64_t)st->prefix_lengths[i]);
            pb_sub(&rs, 3, &packed);
        }
        pb_i64(&rs, 4, st->cut_every);
        pb_i64(&rs, 5, st->cont_len);
        pb_i64(&rs, 6, st->n_samples);
        pb_f32(&rs, 7, st->temperature);
        pb_i64(&rs, 8, st->top_k);
        pb_f32(&rs, 9, st->top_p);
        pb_u64(&rs, 10, st->seed);
        pb_i64(&rs, 11, st->score_run);
        pb_str(&rs, 12, st->vocab_digest);
        pb_str(&rs, 13, st->chat_template);
        pb_i64(&rs, 14, st->cut_every_bytes);
        pb_i64(&s, 1, m->u.welcome.run_id);
        pb_str(&s, 2, m->u.welcome.model_identity);
        pb_sub(&s, 3, &rs);
        pb_i64(&s, 4, m->u.welcome.heartbeat_ms);
        pb_i64(&s, 5, m->u.welcome.liveness);
        break;
    }
    case WIRE_JOB:
        pb_i64(&s, 1, m->u.job.run_id);
        pb_i64(&s, 2, m->u.job.job_id);
        pb_u64(&s, 3, m->u.job.attempt_token);
        for (size_t i = 0; i < m->u.job.n_docs; i++) {
            pb_t d = {0};
            pb_i64(&d, 1, m->u.job.docs[i].doc_id);
            if (m->u.job.docs[i].text_len) pb_lenfield(&d, 2, m->u.job.docs[i].text, m->u.job.docs[i].text_len);
            for (size_t k = 0; k < m->u.job.docs[i].n_samples; k++) {
                const wire_sample_t *x = &m->u.job.docs[i].samples[k];
                pb_t sm = {0};
                pb_i64(&sm, 1, x->cut);
                pb_i64(&sm, 2, x->sample_idx);
                pb_u64(&sm, 3, x->seed);
                if (x->n_tokens) { /* packed */
                    pb_t packed = {0};
                    for (size_t t = 0; t < x->n_tokens; t++) pb_uvarint(&packed, (uint64_t)(int64_t)x->tokens[t]);
                    pb_sub(&sm, 4, &packed);
                }
                pb_sub(&d, 3, &sm);
            }
            pb_sub(&s, 4, &d);
        }
        break;
    case WIRE_DONE:
        pb_i64(&s, 1, m->u.done.job_id);
        pb_u64(&s, 2, m->u.done.attempt_token);
        pb_i64(&s, 3, m->u.done.n_tokens);
        pb_i64(&s, 4, m->u.done.n_docs);
        pb_f64(&s, 5, m->u.done.compute_s);
        pb_f64(&s, 6, m->u.done.write_s);
        pb_u64(&s, 7, (uint64_t)(int64_t)m->u.done.stale);
        break;
    case WIRE_FAILED:
        pb_i64(&s, 1, m->u.failed.job_id);
        pb_u64(&s, 2, m->u.failed.attempt_token);
        pb_str(&s, 3, m->u.failed.error);
        pb_u64(&s, 4, (uint64_t)(int64_t)m->u.failed.retryable);
        break;
    case WIRE_SHUTDOWN:
        pb_str(&s, 1, m->u.shutdown.reason);
        pb_u64(&s, 2, (uint64_t)(int64_t)m->u.shutdown.code);
        break;
    case WIRE_HEARTBEAT:
        pb_u64(&s, 1, (uint64_t)(int64_t)m->u.heartbeat.busy);
        pb_i64(&s, 2, m->u.heartbeat.job_id);
        pb_i64(&s, 3, m->u.heartbeat.tokens);
        pb_i64(&s, 4, m->u.heartbeat.bytes);
        pb_i64(&s, 5, m->u.heartbeat.docs);
        break;
    case WIRE_READY:
        break;
    }
    pb_sub(&env, 10 + (unsigned)m->type, &s);
    return env;
}

/* ---- sample messages (everything heap-owned: wire_msg_clear frees them) ---- */

static const char *IDENT = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";

static wire_msg_t mk_hello(int edge) {
    wire_msg_t m = {.type = WIRE_HELLO};
    if (edge) { /* everything empty or zero; NULL strings arrive as "" */
        m.u.hello.host = xstrdup("");
        return m;
    }
    m.u.hello.worker = xstrdup("gpu-node-3:4242");
    m.u.hello.host = xstrdup("gpu-node-3.\xc3\xa9tude.example");
    m.u.hello.pid = INT32_MAX;
    m.u.hello.threads = 16;
    m.u.hello.model_identity = xstrdup(IDENT);
    m.u.hello.model_name = xstrdup("stories260K \xe2\x80\x94 \xf0\x9f\xa6\x99");
    m.u.hello.observes = 1;
    m.u.hello.templates = 1;
    m.u.hello.cuts_by_bytes = 1;
    return m;
}

static wire_msg_t mk_welcome(int edge) {
    wire_msg_t m = {.type = WIRE_WELCOME};
    wire_settings_t *s = &m.u.welcome.settings;
    if (edge == 1) { /* the smallest legal values */
        s->window = 2;
        s->stride = 1;
        s->top_p = 1.0f;
        s->temperature = -0.0f; /* arrives as 0 */
        m.u.welcome.heartbeat_ms = 1;
        m.u.welcome.liveness = 1;
        return m;
    }
    if (edge == 2) { /* the largest */
        m.u.welcome.run_id = INT64_MAX;
        s->window = INT32_MAX;
        s->stride = INT32_MAX - 1;
        s->n_prefix_lengths = WIRE_MAX_CUTS;
        s->prefix_lengths = xmalloc(WIRE_MAX_CUTS * sizeof(int32_t));
        for (int i = 0; i < WIRE_MAX_CUTS; i++) s->prefix_lengths[i] = i == 0 ? 1 : INT32_MAX - i;
        s->cut_every = INT32_MAX;
        s->cont_len = INT32_MAX;
        s->n_samples = INT32_MAX;
        s->temperature = 3.4e38f;
        s->top_k = INT32_MAX;
        s->top_p = 1e-30f;
        s->seed = UINT64_MAX;
        m.u.welcome.heartbeat_ms = 3600000;
        m.u.welcome.liveness = 1000;
        m.u.welcome.model_identity = xstrdup(IDENT);
        return m;
    }
    m.u.welcome.run_id = 7;
    m.u.welcome.model_identity = xstrdup(IDENT);
    s->window = 256;
    s->stride = 128;
    s->n_prefix_lengths = 3;
    s->prefix_lengths = xmalloc(3 * sizeof(int32_t));
    s->prefix_lengths[0] = 1;
    s->prefix_lengths[1] = 16;
    s->prefix_lengths[2] = 64;
    s->cut_every = 32;
    s->cont_len = 64;
    s->n_samples = 4;
    s->temperature = 0.8f;
    s->top_k = 40;
    s->top_p = 0.95f;
    s->seed = 0x0123456789abcdefULL;
    m.u.welcome.heartbeat_ms = 1000;
    m.u.welcome.liveness = 3;
    return m;
}

static void set_doc(wire_doc_t *d, int64_t id, const char *text, size_t len) {
    d->doc_id = id;
    d->text = xmalloc(len + 1);
    if (len) memcpy(d->text, text, len);
    d->text[len] = 0;
    d->text_len = len;
}

/* n docs of short texts (a mix of scripts). */
static wire_msg_t mk_job_n(size_t n) {
    static const char *texts[] = {"", "Once upon a time, there was a little girl named Lily.",
                                  "\xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e \xd0\xba\xd0\xb8\xd1\x80\xd0\xb8\xd0\xbb\xd0\xbb\xd0\xb8\xd1\x86\xd0\xb0",
                                  "emoji \xf0\x9f\x98\x80\xf0\x9f\x91\x8d\xf0\x9f\x8f\xbd tab\there\nnewline \xef\xbf\xbd"};
    wire_msg_t m = {.type = WIRE_JOB};
    m.u.job.run_id = 3;
    m.u.job.job_id = 1000;
    m.u.job.attempt_token = 0xfeedfacecafebeefULL;
    if (!n) return m;
    m.u.job.docs = calloc(n, sizeof(wire_doc_t));
    REQUIRE(m.u.job.docs, "out of memory");
    m.u.job.n_docs = n;
    for (size_t i = 0; i < n; i++) set_doc(&m.u.job.docs[i], (int64_t)i * 7, texts[i % 4], strlen(texts[i % 4]));
    return m;
}

/* A cross-scoring job: n docs, doc i with i samples of i + 1 tokens each
 * (edge values: the largest seed, token id INT32_MAX). */
static wire_msg_t mk_job_samples(size_t n) {
    wire_msg_t m = mk_job_n(n);
    for (size_t i = 0; i < n; i++) {
        wire_doc_t *d = &m.u.job.docs[i];
        if (!i) continue;
        d->samples = calloc(i, sizeof *d->samples);
        REQUIRE(d->samples, "out of memory");
        d->n_samples = i;
        for (size_t k = 0; k < i; k++) {
            wire_sample_t *x = &d->samples[k];
            x->cut = (int32_t)(1 + 8 * i), x->sample_idx = (int32_t)k, x->seed = UINT64_MAX - k;
            x->tokens = xmalloc((i + 1) * sizeof *x->tokens);
            x->n_tokens = i + 1;
            for (size_t t = 0; t <= i; t++) x->tokens[t] = t == i ? INT32_MAX : (int32_t)(t * 1000 + k);
        }
    }
    return m;
}

/* A WELCOME of a cross-scoring run. */
static wire_msg_t mk_welcome_score(void) {
    wire_msg_t m = mk_welcome(0);
    m.u.welcome.settings.score_run = INT64_MAX;
    m.u.welcome.settings.vocab_digest = xstrdup(IDENT);
    return m;
}

/* A WELCOME of a run with a chat template (newlines, multi-byte text). */
static wire_msg_t mk_welcome_template(void) {
    wire_msg_t m = mk_welcome(0);
    m.u.welcome.settings.chat_template = xstrdup("<|im_start|>user\nR\xc3\xa9sum\xc3\xa9<|im_end|>\n"
                                                 "<|im_start|>assistant\n{document}<|im_end|>\n");
    return m;
}

/* One doc of len bytes of valid UTF-8 (ASCII with multi-byte characters). */
static wire_msg_t mk_job_big(size_t len) {
    wire_msg_t m = {.type = WIRE_JOB};
    m.u.job.run_id = INT64_MAX;
    m.u.job.job_id = INT64_MAX;
    m.u.job.attempt_token = UINT64_MAX;
    m.u.job.docs = calloc(1, sizeof(wire_doc_t));
    REQUIRE(m.u.job.docs, "out of memory");
    m.u.job.n_docs = 1;
    wire_doc_t *d = &m.u.job.docs[0];
    d->doc_id = INT64_MAX;
    d->text = xmalloc(len + 1);
    d->text_len = len;
    static const char chunk[] = "The quick brown fox \xe2\x80\x94 \xc3\xa9t\xc3\xa9 \xf0\x9f\xa6\x8a.\n";
    size_t i = 0, c = sizeof chunk - 1;
    for (; i + c <= len; i += c) memcpy(d->text + i, chunk, c);
    memset(d->text + i, 'x', len - i);
    d->text[len] = 0;
    return m;
}

static wire_msg_t mk_done(int edge) {
    wire_msg_t m = {.type = WIRE_DONE};
    if (edge == 1) return m; /* all zero */
    m.u.done.job_id = edge ? INT64_MAX : 1000;
    m.u.done.attempt_token = edge ? UINT64_MAX : 12345;
    m.u.done.n_tokens = edge ? INT64_MAX : 123456;
    m.u.done.n_docs = edge ? INT64_MAX : 17;
    m.u.done.compute_s = edge ? 1.7976931348623157e308 : 12.5;
    m.u.done.write_s = edge ? 4.9e-324 : 0.25;
    m.u.done.stale = edge ? 1 : 0;
    return m;
}

static wire_msg_t mk_failed(int edge) {
    wire_msg_t m = {.type = WIRE_FAILED};
    m.u.failed.job_id = edge ? 0 : 1000;
    m.u.failed.attempt_token = edge ? 0 : 99;
    m.u.failed.error = edge ? NULL : xstrdup("model mismatch: worker has \xe2\x80\x98" "abc\xe2\x80\x99");
    m.u.failed.retryable = edge ? 1 : 0;
    return m;
}

static wire_msg_t mk_shutdown(int edge) {
    wire_msg_t m = {.type = WIRE_SHUTDOWN};
    m.u.shutdown.reason = xstrdup(edge ? "" : "run 7 finished \xe2\x9c\x93");
    m.u.shutdown.code = edge ? WIRE_SHUTDOWN_MODEL_MISMATCH : WIRE_SHUTDOWN_RUN_COMPLETE;
    return m;
}

static wire_msg_t mk_simple(wire_type_t t) { return (wire_msg_t){.type = t}; }

/* A busy worker's heartbeat: its progress in job 12. */
static wire_msg_t mk_progress(void) {
    wire_msg_t m = {.type = WIRE_HEARTBEAT};
    m.u.heartbeat.busy = 1;
    m.u.heartbeat.job_id = 12;
    m.u.heartbeat.tokens = 5000000123LL;
    m.u.heartbeat.bytes = 20000000456LL;
    m.u.heartbeat.docs = 777;
    return m;
}

/* ---- comparison ------------------------------------------------------------- */

static int str_eq(const char *a, const char *b) { return !strcmp(a ? a : "", b ? b : ""); }
/* By value: -0.0 arrives as 0 (protobuf-c does not send a zero float), and a
 * NaN never passes validation. */
static int f32_eq(float a, float b) { return a == b; }
static int f64_eq(double a, double b) { return a == b; }

/* 1 when b (decoded) carries exactly what a said; names the first difference. */
static int msg_eq(const wire_msg_t *a, const wire_msg_t *b, const char **diff) {
#define D(cond, what)            \
    if (!(cond)) {               \
        *diff = what;            \
        return 0;                \
    }
    D(a->type == b->type, "type");
    D(b->version == WIRE_PROTOCOL_VERSION, "version");
    switch (a->type) {
    case WIRE_HELLO:
        D(str_eq(a->u.hello.worker, b->u.hello.worker), "worker");
        D(str_eq(a->u.hello.host, b->u.hello.host), "host");
        D(a->u.hello.pid == b->u.hello.pid, "pid");
        D(a->u.hello.threads == b->u.hello.threads, "threads");
        D(str_eq(a->u.hello.model_identity, b->u.hello.model_identity), "model_identity");
        D(str_eq(a->u.hello.model_name, b->u.hello.model_name), "model_name");
        D(a->u.hello.observes == b->u.hello.observes, "observes");
        D(a->u.hello.templates == b->u.hello.templates, "templates");
        D(a->u.hello.cuts_by_bytes == b->u.hello.cuts_by_bytes, "cuts_by_bytes");
        D(b->u.hello.worker && b->u.hello.host && b->u.hello.model_identity && b->u.hello.model_name,
          "decoded strings are never NULL");
        break;
    case WIRE_WELCOME: {
        const wire_settings_t *x = &a->u.welcome.settings, *y = &b->u.welcome.settings;
        D(a->u.welcome.run_id == b->u.welcome.run_id, "run_id");
        D(str_eq(a->u.welcome.model_identity, b->u.welcome.model_identity), "model_identity");
        D(a->u.welcome.heartbeat_ms == b->u.welcome.heartbeat_ms, "heartbeat_ms");
        D(a->u.welcome.liveness == b->u.welcome.liveness, "liveness");
        D(x->window == y->window && x->stride == y->stride, "window/stride");
        D(x->n_prefix_lengths == y->n_prefix_lengths, "n_prefix_lengths");
        D(!x->n_prefix_lengths || !memcmp(x->prefix_lengths, y->prefix_lengths, x->n_prefix_lengths * 4),
          "prefix_lengths");
        D(x->cut_every == y->cut_every && x->cont_len == y->cont_len && x->n_samples == y->n_samples, "counts");
        D(f32_eq(x->temperature, y->temperature), "temperature");
        D(x->top_k == y->top_k && f32_eq(x->top_p, y->top_p), "top_k/top_p");
        D(x->seed == y->seed, "seed");
        D(x->score_run == y->score_run && str_eq(x->vocab_digest, y->vocab_digest), "score_run/vocab_digest");
        D(str_eq(x->chat_template, y->chat_template), "chat_template");
        D(x->cut_every_bytes == y->cut_every_bytes, "cut_every_bytes");
        break;
    }
    case WIRE_JOB:
        D(a->u.job.run_id == b->u.job.run_id && a->u.job.job_id == b->u.job.job_id, "ids");
        D(a->u.job.attempt_token == b->u.job.attempt_token, "attempt_token");
        D(a->u.job.n_docs == b->u.job.n_docs, "n_docs");
        for (size_t i = 0; i < a->u.job.n_docs; i++) {
            const wire_doc_t *x = &a->u.job.docs[i], *y = &b->u.job.docs[i];
            D(x->doc_id == y->doc_id, "doc_id");
            D(x->text_len == y->text_len && y->text && !memcmp(x->text, y->text, x->text_len), "text");
            D(y->text[y->text_len] == 0, "text NUL-terminated");
            D(x->n_samples == y->n_samples, "n_samples");
            for (size_t k = 0; k < x->n_samples; k++) {
                const wire_sample_t *p = &x->samples[k], *q = &y->samples[k];
                D(p->cut == q->cut && p->sample_idx == q->sample_idx && p->seed == q->seed, "sample fields");
                D(p->n_tokens == q->n_tokens && (!p->n_tokens || !memcmp(p->tokens, q->tokens, p->n_tokens * 4)),
                  "sample tokens");
            }
        }
        break;
    case WIRE_DONE:
        D(a->u.done.job_id == b->u.done.job_id && a->u.done.attempt_token == b->u.done.attempt_token, "ids");
        D(a->u.done.n_tokens == b->u.done.n_tokens && a->u.done.n_docs == b->u.done.n_docs, "counts");
        D(f64_eq(a->u.done.compute_s, b->u.done.compute_s) && f64_eq(a->u.done.write_s, b->u.done.write_s),
          "times");
        D(a->u.done.stale == b->u.done.stale, "stale");
        break;
    case WIRE_FAILED:
        D(a->u.failed.job_id == b->u.failed.job_id && a->u.failed.attempt_token == b->u.failed.attempt_token,
          "ids");
        D(str_eq(a->u.failed.error, b->u.failed.error) && b->u.failed.error, "error");
        D(a->u.failed.retryable == b->u.failed.retryable, "retryable");
        break;
    case WIRE_SHUTDOWN:
        D(str_eq(a->u.shutdown.reason, b->u.shutdown.reason) && b->u.shutdown.reason, "reason");
        D(a->u.shutdown.code == b->u.shutdown.code, "code");
        break;
    case WIRE_HEARTBEAT:
        D(a->u.heartbeat.busy == b->u.heartbeat.busy && a->u.heartbeat.job_id == b->u.heartbeat.job_id, "job");
        D(a->u.heartbeat.tokens == b->u.heartbeat.tokens && a->u.heartbeat.bytes == b->u.heartbeat.bytes &&
              a->u.heartbeat.docs == b->u.heartbeat.docs,
          "progress");
        break;
    case WIRE_READY:
        break;
    }
#undef D
    return 1;
}

static int is_empty(const wire_msg_t *m) {
    static const wire_msg_t zero;
    return !memcmp(m, &zero, sizeof zero);
}

/* ---- round trips -------------------------------------------------------------- */

/* Encodes m, checks the bytes against tenc, decodes and compares; frees m. */
static void roundtrip(wire_msg_t m, const char *what) {
    uint8_t *buf = NULL;
    size_t len = 0;
    wire_msg_t d;
    const char *diff = "";
    int rc = wire_encode(&m, &buf, &len, err, sizeof err);
    TU_CHECK(rc == 0, "%s: encode: %s", what, err);
    if (rc == 0) {
        pb_t ref = tenc(&m, WIRE_PROTOCOL_VERSION);
        TU_CHECK(ref.n == len && !memcmp(ref.b, buf, len), "%s: wire_encode's %zu bytes differ from the .proto's %zu",
                 what, len, ref.n);
        free(ref.b);
        rc = wire_decode(buf, len, &d, err, sizeof err);
        TU_CHECK(rc == 0, "%s: decode: %s", what, err);
        if (rc == 0) {
            TU_CHECK(msg_eq(&m, &d, &diff), "%s: round trip differs in %s", what, diff);
            wire_msg_clear(&d);
            TU_CHECK(is_empty(&d), "%s: wire_msg_clear leaves zeroes", what);
        }
    }
    free(buf);
    wire_msg_clear(&m);
}

static void test_roundtrips(void) {
    roundtrip(mk_hello(0), "HELLO");
    roundtrip(mk_hello(1), "HELLO empty");
    roundtrip(mk_welcome(0), "WELCOME");
    roundtrip(mk_welcome(1), "WELCOME smallest");
    roundtrip(mk_welcome(2), "WELCOME largest, WIRE_MAX_CUTS cuts");
    roundtrip(mk_simple(WIRE_READY), "READY");
    roundtrip(mk_simple(WIRE_HEARTBEAT), "HEARTBEAT");
    roundtrip(mk_progress(), "HEARTBEAT with progress");
    roundtrip(mk_job_n(0), "JOB 0 docs");
    roundtrip(mk_job_n(4), "JOB 4 docs (empty, ASCII, CJK/Cyrillic, emoji)");
    roundtrip(mk_job_n(WIRE_MAX_DOCS_PER_JOB), "JOB WIRE_MAX_DOCS_PER_JOB docs");
    roundtrip(mk_job_big(8u << 20), "JOB 8 MiB text");
    roundtrip(mk_job_samples(4), "JOB with samples (cross-scoring)");
    roundtrip(mk_welcome_score(), "WELCOME of a cross-scoring run");
    roundtrip(mk_welcome_template(), "WELCOME of a run with a chat template");
    roundtrip(mk_done(0), "DONE");
    roundtrip(mk_done(1), "DONE zeros");
    roundtrip(mk_done(2), "DONE extremes, stale");
    roundtrip(mk_failed(0), "FAILED");
    roundtrip(mk_failed(1), "FAILED NULL error, retryable");
    roundtrip(mk_shutdown(0), "SHUTDOWN");
    roundtrip(mk_shutdown(1), "SHUTDOWN empty reason");
    {   /* A code from a newer peer is read as "other", never as a reason to
         * exit with another status; an encoder refuses codes it lacks. */
        wire_msg_t m = mk_shutdown(0), d;
        m.u.shutdown.code = (wire_shutdown_code_t)9;
        pb_t raw = tenc(&m, WIRE_PROTOCOL_VERSION);
        TU_CHECK(wire_decode(raw.b, raw.n, &d, err, sizeof err) == 0 && d.u.shutdown.code == WIRE_SHUTDOWN_OTHER,
                 "SHUTDOWN code 9 decodes as %d (%s)", (int)d.u.shutdown.code, err);
        wire_msg_clear(&d);
        free(raw.b);
        uint8_t *buf = NULL;
        size_t len = 0;
        TU_CHECK(wire_encode(&m, &buf, &len, err, sizeof err) == -1 && strstr(err, "SHUTDOWN code"),
                 "SHUTDOWN code 9 encoded: %s", err);
        free(buf);
        wire_msg_clear(&m);
    }

    /* A text of exactly WIRE_MAX_STRING bytes is legal (the bound is inclusive). */
    wire_msg_t m = mk_job_big(WIRE_MAX_STRING), d;
    uint8_t *buf = NULL;
    size_t len = 0;
    TU_CHECK(wire_encode(&m, &buf, &len, err, sizeof err) == 0, "WIRE_MAX_STRING text: %s", err);
    wire_msg_clear(&m);
    if (buf) {
        TU_CHECK(wire_decode(buf, len, &d, err, sizeof err) == 0 && d.u.job.docs[0].text_len == WIRE_MAX_STRING,
                 "WIRE_MAX_STRING text decodes: %s", err);
        wire_msg_clear(&d);
    }
    free(buf);
}

/* ---- bad values -------------------------------------------------------------- */

static void replace_str(char **s, const char *v) {
    free(*s);
    *s = xstrdup(v);
}

static void replace_text(wire_doc_t *d, const char *v, size_t n) {
    free(d->text);
    set_doc(d, d->doc_id, v, n);
}

/* Builds bad case i into *m; returns its name, or NULL past the last case.
 * *w1 and *w2 must both appear in the error; *enc_only is set when the bad
 * value cannot be put on the wire (the decoder can never see it). */
static const char *bad_case(int i, wire_msg_t *m, const char **w1, const char **w2, int *enc_only) {
    *enc_only = 0;
    *w2 = "";
#define CASE(k, mk, stmt, a, b) \
    case k:                     \
        *m = mk;                \
        stmt;                   \
        *w1 = a;                \
        *w2 = b;                \
        return a " " b;
    switch (i) {
        CASE(0, mk_hello(0), m->u.hello.pid = -1, "HELLO pid", "-1 is negative")
        CASE(1, mk_hello(0), m->u.hello.threads = -5, "HELLO threads", "-5")
        CASE(2, mk_hello(0), replace_str(&m->u.hello.model_identity, "xyz"), "HELLO model_identity", "'xyz'")
        CASE(3, mk_hello(0),
             replace_str(&m->u.hello.model_identity, "9F86D081884C7D659A2FEAA0C55AD015A3BF4F1B2B0B822CD15D6C15B0F00A08"),
             "HELLO model_identity", "lowercase hex")
        CASE(4, mk_hello(0), replace_str(&m->u.hello.worker, "w\xff"), "HELLO worker",
             "invalid UTF-8 at byte 1 of 2 (0xff)")
        CASE(5, mk_hello(0), replace_str(&m->u.hello.host, "\xc0\xaf"), "HELLO host", "invalid UTF-8 at byte 0")
        CASE(6, mk_hello(0), replace_str(&m->u.hello.model_name, "ok \xed\xa0\x80"), "HELLO model_name", "(0xed)")
        CASE(7, mk_welcome(0), m->u.welcome.run_id = -1, "WELCOME run_id", "-1 is negative")
        CASE(8, mk_welcome(0), m->u.welcome.settings.window = 1, "WELCOME settings.window 1", "below 2")
        CASE(9, mk_welcome(0), m->u.welcome.settings.window = -7, "WELCOME settings.window -7", "below 2")
        CASE(10, mk_welcome(0), m->u.welcome.settings.stride = 0, "WELCOME settings.stride 0", "[1, window 256)")
        CASE(11, mk_welcome(0), m->u.welcome.settings.stride = 256, "WELCOME settings.stride 256", "[1, window 256)")
        CASE(12, mk_welcome(0), m->u.welcome.settings.stride = -3, "WELCOME settings.stride -3", "[1, window 256)")
        CASE(13, mk_welcome(0), m->u.welcome.settings.cont_len = -1, "WELCOME settings.cont_len", "-1 is negative")
        CASE(14, mk_welcome(0), m->u.welcome.settings.n_samples = -2, "WELCOME settings.n_samples", "-2 is negative")
        CASE(15, mk_welcome(0), m->u.welcome.settings.temperature = -0.5f, "WELCOME settings.temperature", "-0.5")
        CASE(16, mk_welcome(0), m->u.welcome.settings.temperature = NAN, "WELCOME settings.temperature", "nan")
        CASE(17, mk_welcome(0), m->u.welcome.settings.temperature = INFINITY, "WELCOME settings.temperature", "inf")
        CASE(18, mk_welcome(0), m->u.welcome.settings.top_p = 0.0f, "WELCOME settings.top_p 0", "(0, 1]")
        CASE(19, mk_welcome(0), m->u.welcome.settings.top_p = 1.5f, "WELCOME settings.top_p 1.5", "(0, 1]")
        CASE(20, mk_welcome(0), m->u.welcome.settings.top_p = NAN, "WELCOME settings.top_p", "nan")
        CASE(21, mk_welcome(0), m->u.welcome.settings.top_p = -0.25f, "WELCOME settings.top_p -0.25", "(0, 1]")
        CASE(22, mk_welcome(2), m->u.welcome.settings.n_prefix_lengths = WIRE_MAX_CUTS + 1;
             m->u.welcome.settings.prefix_lengths =
                 realloc(m->u.welcome.settings.prefix_lengths, (WIRE_MAX_CUTS + 1) * sizeof(int32_t));
             m->u.welcome.settings.prefix_lengths[WIRE_MAX_CUTS] = 5, "WELCOME settings.prefix_lengths",
             "4097 of them, more than WIRE_MAX_CUTS (4096)")
        CASE(23, mk_welcome(0), m->u.welcome.settings.prefix_lengths[1] = 0, "WELCOME settings.prefix_lengths[1] 0",
             "below 1")
        CASE(24, mk_welcome(0), m->u.welcome.settings.prefix_lengths[2] = -4, "WELCOME settings.prefix_lengths[2] -4",
             "below 1")
        CASE(25, mk_welcome(0), m->u.welcome.settings.cut_every = -1, "WELCOME settings.cut_every", "-1 is negative")
        CASE(26, mk_welcome(0), m->u.welcome.settings.top_k = -1, "WELCOME settings.top_k", "-1 is negative")
        CASE(27, mk_welcome(0), m->u.welcome.heartbeat_ms = 0, "WELCOME heartbeat_ms 0", "outside [1, 3600000]")
        CASE(28, mk_welcome(0), m->u.welcome.heartbeat_ms = -1000, "WELCOME heartbeat_ms -1000", "outside")
        CASE(29, mk_welcome(0), m->u.welcome.liveness = 0, "WELCOME liveness 0", "outside [1, 1000]")
        CASE(30, mk_welcome(0), replace_str(&m->u.welcome.model_identity, "sha256:\x01"), "WELCOME model_identity",
             "'sha256:\\x01'")
        CASE(31, mk_job_n(3), m->u.job.run_id = -1, "JOB run_id", "-1 is negative")
        CASE(32, mk_job_n(3), m->u.job.job_id = -3, "JOB job_id", "-3 is negative")
        CASE(33, mk_job_n(3), m->u.job.docs[1].doc_id = -9, "JOB docs[1].doc_id", "-9 is negative")
        CASE(34, mk_job_n(3), replace_text(&m->u.job.docs[2], "ok \xf8\x88\x80\x80\x80", 8), "JOB docs[2].text",
             "invalid UTF-8 at byte 3 of 8 (0xf8)")
        CASE(35, mk_job_n(3), replace_text(&m->u.job.docs[0], "ab\0cd", 5), "JOB docs[0].text (doc_id 0)",
             "contains NUL at byte 2 of 5")
        CASE(36, mk_job_n(3), replace_text(&m->u.job.docs[1], "abc\xe2\x82", 5), "JOB docs[1].text (doc_id 7)",
             "invalid UTF-8 at byte 3 of 5 (0xe2)")
        CASE(37, mk_job_n(WIRE_MAX_DOCS_PER_JOB + 1), (void)0, "JOB docs",
             "100001 of them, more than WIRE_MAX_DOCS_PER_JOB (100000)")
        CASE(38, mk_done(0), m->u.done.job_id = -1, "DONE job_id", "-1 is negative")
        CASE(39, mk_done(0), m->u.done.n_tokens = -1, "DONE n_tokens", "-1 is negative")
        CASE(40, mk_done(0), m->u.done.n_docs = INT64_MIN, "DONE n_docs", "-9223372036854775808 is negative")
        CASE(41, mk_done(0), m->u.done.compute_s = NAN, "DONE compute_s", "nan")
        CASE(42, mk_done(0), m->u.done.write_s = -1.0, "DONE write_s -1", "not a finite number")
        CASE(43, mk_done(0), m->u.done.compute_s = -INFINITY, "DONE compute_s -inf", "not a finite number")
        CASE(44, mk_done(0), (m->u.done.stale = 2, *enc_only = 1), "DONE stale 2", "neither 0 nor 1")
        CASE(45, mk_failed(0), m->u.failed.job_id = -1, "FAILED job_id", "-1 is negative")
        CASE(46, mk_failed(0), replace_str(&m->u.failed.error, "bad path /tmp/\xe9t\xe9"), "FAILED error",
             "invalid UTF-8 at byte 14")
        CASE(47, mk_failed(0), (m->u.failed.retryable = 3, *enc_only = 1), "FAILED retryable 3", "neither 0 nor 1")
        CASE(48, mk_shutdown(0), replace_str(&m->u.shutdown.reason, "\x80"), "SHUTDOWN reason",
             "invalid UTF-8 at byte 0")
        CASE(49, mk_simple((wire_type_t)99), *enc_only = 1, "unknown message type", "99")
        CASE(50, mk_simple((wire_type_t)0), *enc_only = 1, "unknown message type", "0")
        CASE(51, mk_job_n(0), (m->u.job.n_docs = 2, *enc_only = 1), "JOB docs", "NULL with 2")
        CASE(52, mk_welcome(1), (m->u.welcome.settings.n_prefix_lengths = 2, *enc_only = 1),
             "WELCOME settings.prefix_lengths", "NULL with 2")
        CASE(53, mk_progress(), m->u.heartbeat.tokens = -1, "HEARTBEAT tokens", "-1 is negative")
        CASE(54, mk_progress(), m->u.heartbeat.job_id = -5, "HEARTBEAT job_id", "-5 is negative")
        CASE(55, mk_progress(), (m->u.heartbeat.busy = 2, *enc_only = 1), "HEARTBEAT busy 2", "neither 0 nor 1")
        CASE(56, mk_welcome(0), m->u.welcome.settings.score_run = -2, "WELCOME settings.score_run", "-2 is negative")
        CASE(57, mk_welcome(0), m->u.welcome.settings.score_run = 5, "WELCOME settings: score_run 5",
             "without a vocab_digest")
        CASE(58, mk_welcome_score(), replace_str(&m->u.welcome.settings.vocab_digest, "abc"),
             "WELCOME settings.vocab_digest", "'abc'")
        CASE(59, mk_job_samples(3), m->u.job.docs[2].samples[1].cut = 0, "JOB docs[2].samples[1].cut 0", "below 1")
        CASE(60, mk_job_samples(3), m->u.job.docs[1].samples[0].sample_idx = -1,
             "JOB docs[1].samples[0].sample_idx -1", "negative")
        CASE(61, mk_job_samples(3), m->u.job.docs[2].samples[0].tokens[1] = -7,
             "JOB docs[2].samples[0].tokens[1] -7", "negative")
        CASE(62, mk_job_samples(2), (m->u.job.docs[1].samples[0].n_tokens = WIRE_MAX_SAMPLE_TOKENS + 1,
                                     *enc_only = 1),
             "JOB docs[1].samples[0].tokens", "more than WIRE_MAX_SAMPLE_TOKENS")
        /* (samples freed first, so that wire_msg_clear's loop stays in bounds) */
        CASE(63, mk_job_samples(2), (free(m->u.job.docs[1].samples[0].tokens), free(m->u.job.docs[1].samples),
                                     m->u.job.docs[1].samples = NULL,
                                     m->u.job.docs[1].n_samples = WIRE_MAX_SAMPLES_PER_DOC + 1, *enc_only = 1),
             "JOB docs[1].samples", "more than WIRE_MAX_SAMPLES_PER_DOC")
        CASE(64, mk_hello(0), (m->u.hello.observes = 2, *enc_only = 1), "HELLO observes 2", "neither 0 nor 1")
        CASE(65, mk_hello(0), (m->u.hello.templates = 2, *enc_only = 1), "HELLO templates 2", "neither 0 nor 1")
        CASE(66, mk_welcome_template(), replace_str(&m->u.welcome.settings.chat_template, "{document}\xc3"),
             "WELCOME settings.chat_template", "invalid UTF-8 at byte 10")
        CASE(67, mk_hello(0), (m->u.hello.cuts_by_bytes = 2, *enc_only = 1), "HELLO cuts_by_bytes 2",
             "neither 0 nor 1")
        CASE(68, mk_welcome(0), m->u.welcome.settings.cut_every_bytes = -1, "WELCOME settings.cut_every_bytes",
             "-1 is negative")
        CASE(69, mk_welcome(0), m->u.welcome.settings.cut_every_bytes = 100, "WELCOME settings: cut_every_bytes 100",
             "with other cuts")
    }
#undef CASE
    return NULL;
}

static int has(const char *s, const char *a, const char *b) { return strstr(s, a) && strstr(s, b); }

static void test_bad_values(void) {
    int n_cases = 0;
    for (int i = 0;; i++) {
        wire_msg_t m = {0}, d;
        const char *w1, *w2;
        int enc_only;
        const char *name = bad_case(i, &m, &w1, &w2, &enc_only);
        if (!name) break;
        n_cases++;
        uint8_t *buf = (uint8_t *)"untouched";
        size_t len = 1;
        int rc = wire_encode(&m, &buf, &len, err, sizeof err);
        TU_CHECK(rc == -1 && buf == NULL && len == 0, "encode accepts bad case %d (%s)", i, name);
        TU_CHECK(has(err, w1, w2), "encode, case %d: message '%s' lacks '%s' / '%s'", i, err, w1, w2);
        if (rc == 0) free(buf);
        if (!enc_only) {
            pb_t raw = tenc(&m, WIRE_PROTOCOL_VERSION);
            rc = wire_decode(raw.b, raw.n, &d, err, sizeof err);
            TU_CHECK(rc == -1 && is_empty(&d), "decode accepts bad case %d (%s)", i, name);
            TU_CHECK(has(err, w1, w2), "decode, case %d: message '%s' lacks '%s' / '%s'", i, err, w1, w2);
            if (rc == 0) wire_msg_clear(&d);
            free(raw.b);
        }
        /* The NULL-with-count cases must not make clear free garbage. */
        if (i == 51) m.u.job.n_docs = 0;
        if (i == 52) m.u.welcome.settings.n_prefix_lengths = 0;
        wire_msg_clear(&m);
    }
    TU_CHECK(n_cases == 70, "ran %d bad-value cases", n_cases);
    fprintf(stderr, "bad values: %d cases, each refused by encode and (where it can be sent) decode\n", n_cases);

    /* A text over WIRE_MAX_STRING: refused before packing, and as bytes
     * (one doc, built in place) before being copied. */
    wire_msg_t m = mk_job_big(WIRE_MAX_STRING + 1u), d;
    uint8_t *buf = NULL;
    size_t len = 0;
    TU_CHECK(wire_encode(&m, &buf, &len, err, sizeof err) == -1 &&
                 has(err, "JOB docs[0].text", "67108865 bytes, more than WIRE_MAX_STRING (67108864)"),
             "encode of an over-long text: %s", err);
    wire_msg_clear(&m);
    size_t n = WIRE_MAX_STRING + 1u;
    pb_t doc = {0};
    pb_tag(&doc, 2, 2);
    pb_uvarint(&doc, n);
    pb_t jobhdr = {0}, envhdr = {0};
    pb_tag(&jobhdr, 4, 2);
    pb_uvarint(&jobhdr, doc.n + n);
    pb_u64(&envhdr, 1, WIRE_PROTOCOL_VERSION);
    pb_tag(&envhdr, 14, 2);
    pb_uvarint(&envhdr, jobhdr.n + doc.n + n);
    size_t total = envhdr.n + jobhdr.n + doc.n + n;
    uint8_t *frame = xmalloc(total);
    memcpy(frame, envhdr.b, envhdr.n);
    memcpy(frame + envhdr.n, jobhdr.b, jobhdr.n);
    memcpy(frame + envhdr.n + jobhdr.n, doc.b, doc.n);
    memset(frame + envhdr.n + jobhdr.n + doc.n, 'a', n);
    TU_CHECK(wire_decode(frame, total, &d, err, sizeof err) == -1 &&
                 has(err, "JOB docs[0].text (doc_id 0)", "67108865 bytes, more than WIRE_MAX_STRING"),
             "decode of an over-long text: %s", err);
    free(frame);
    free(doc.b);
    free(jobhdr.b);
    free(envhdr.b);
}

/* ---- malformed frames ---------------------------------------------------------- */

static void expect_refused(const uint8_t *buf, size_t len, const char *w1, const char *w2, const char *what) {
    wire_msg_t d;
    int rc = wire_decode(buf, len, &d, err, sizeof err);
    TU_CHECK(rc == -1 && is_empty(&d), "%s: accepted", what);
    TU_CHECK(has(err, w1, w2), "%s: message '%s' lacks '%s' / '%s'", what, err, w1, w2);
    if (rc == 0) wire_msg_clear(&d);
}

static void test_malformed(void) {
    /* Over WIRE_MAX_FRAME: refused on the length alone (the pages are never
     * touched: a reserved, unbacked mapping). */
    size_t big = (size_t)WIRE_MAX_FRAME + 1;
    void *map = mmap(NULL, big, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    REQUIRE(map != MAP_FAILED, "mmap %zu: %s", big, strerror(errno));
    expect_refused(map, big, "frame of 268435457 bytes", "exceeds WIRE_MAX_FRAME (268435456)", "oversized frame");
    munmap(map, big);

    expect_refused((const uint8_t *)"", 0, "empty frame", "0 bytes", "empty frame");
    static const uint8_t junk[] = {0xff, 0xff, 0xff, 0xff, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06};
    expect_refused(junk, sizeof junk, "frame of 10 bytes is not a tokshift protobuf", "starts ff ff ff ff", "junk");
    static const uint8_t text[] = "GET / HTTP/1.1\r\n\r\n";
    expect_refused(text, sizeof text - 1, "not a tokshift protobuf", "starts 47 45 54", "HTTP");

    /* Version: wrong, missing, and wrong wire type. */
    pb_t p = {0}, s = {0};
    wire_msg_t hb = mk_simple(WIRE_HEARTBEAT);
    p = tenc(&hb, WIRE_PROTOCOL_VERSION + 1);
    expect_refused(p.b, p.n, "protocol version 2 from the peer", "this side speaks version 1", "version 2");
    free(p.b);
    p = tenc(&hb, 0);
    expect_refused(p.b, p.n, "protocol version 0", "version 1", "no version");
    free(p.b);
    p = tenc(&hb, 0xffffffffu);
    expect_refused(p.b, p.n, "protocol version 4294967295", "version 1", "version 2^32-1");
    free(p.b);
    p = (pb_t){0};
    pb_lenfield(&p, 1, "\x01", 1); /* version as bytes */
    pb_sub(&p, 15, &s);
    expect_refused(p.b, p.n, "not a tokshift protobuf", "", "version with the wrong wire type");
    free(p.b);

    /* Payload: none, unknown (a newer type), two (the last wins, as in
     * protobuf: a READY then a HEARTBEAT is a HEARTBEAT). */
    p = (pb_t){0};
    pb_u64(&p, 1, WIRE_PROTOCOL_VERSION);
    expect_refused(p.b, p.n, "no known message", "missing", "no payload");
    pb_sub(&p, 19, &s);
    expect_refused(p.b, p.n, "no known message", "field 19", "unknown payload type");
    free(p.b);
    p = (pb_t){0};
    pb_u64(&p, 1, WIRE_PROTOCOL_VERSION);
    pb_sub(&p, 13, &s);
    pb_sub(&p, 15, &s);
    wire_msg_t d;
    TU_CHECK(wire_decode(p.b, p.n, &d, err, sizeof err) == 0 && d.type == WIRE_HEARTBEAT, "two payloads: %s", err);
    wire_msg_clear(&d);
    free(p.b);

    /* A WELCOME without settings. */
    p = (pb_t){0};
    s = (pb_t){0};
    pb_u64(&p, 1, WIRE_PROTOCOL_VERSION);
    pb_i64(&s, 1, 7);
    pb_sub(&p, 12, &s);
    expect_refused(p.b, p.n, "WELCOME has no settings", "", "WELCOME without settings");
    free(p.b);

    /* Truncation at every byte of a valid JOB: never accepted unless the cut
     * falls on a field boundary that leaves a valid message, and then it is
     * a prefix of the same message. */
    wire_msg_t job = mk_job_n(4);
    uint8_t *buf;
    size_t len;
    REQUIRE(wire_encode(&job, &buf, &len, err, sizeof err) == 0, "encode: %s", err);
    int accepted = 0;
    for (size_t cut = 0; cut < len; cut++) {
        int rc = wire_decode(buf, cut, &d, err, sizeof err);
        TU_CHECK(rc == -1 || d.type == WIRE_JOB || d.type == 0, "cut %zu gives type %d", cut, (int)d.type);
        TU_CHECK(rc == 0 || (err[0] && is_empty(&d)), "cut %zu: no message", cut);
        accepted += rc == 0;
        wire_msg_clear(&d);
    }
    TU_CHECK(accepted == 0, "%d truncations of a JOB accepted (the envelope's length prefix covers it all)", accepted);
    free(buf);
    wire_msg_clear(&job);

    /* Element counts that would make unpack allocate without bound: 2 bytes
     * on the wire per empty doc, tens of bytes each unpacked. */
    size_t n = 2000000;
    pb_t docs = {0};
    for (size_t i = 0; i < n; i++) pb_raw(&docs, "\x22\x00", 2);
    p = (pb_t){0};
    pb_u64(&p, 1, WIRE_PROTOCOL_VERSION);
    pb_sub(&p, 14, &docs);
    double t0 = now_s();
    expect_refused(p.b, p.n, "needs more than", "to unpack (absurd element counts)", "2M empty docs");
    fprintf(stderr, "2M empty docs (%zu bytes) refused in %.3f s\n", p.n, now_s() - t0);
    free(p.b);

    /* A huge declared length in a short frame. */
    static const uint8_t liar[] = {0x08, 0x01, 0x72, 0xff, 0xff, 0xff, 0xff, 0x0f, 0x00};
    expect_refused(liar, sizeof liar, "not a tokshift protobuf", "", "length prefix past the end");
    /* A varint that never ends. */
    static const uint8_t endless[] = {0x08, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff};
    expect_refused(endless, sizeof endless, "not a tokshift protobuf", "", "endless varint");
}

/* ---- fuzz ------------------------------------------------------------------------ */

typedef struct {
    uint8_t *b;
    size_t n;
} blob_t;

static void test_fuzz(int iterations) {
    wire_msg_t samples[] = {mk_hello(0),    mk_hello(1),     mk_welcome(0),  mk_welcome(1),
                            mk_simple(WIRE_READY), mk_simple(WIRE_HEARTBEAT), mk_job_n(0), mk_job_n(5),
                            mk_done(0),     mk_done(2),      mk_failed(0),   mk_failed(1),
                            mk_shutdown(0), mk_shutdown(1)};
    enum { NS = sizeof samples / sizeof samples[0] };
    blob_t pool[NS];
    for (int i = 0; i < NS; i++) {
        REQUIRE(wire_encode(&samples[i], &pool[i].b, &pool[i].n, err, sizeof err) == 0, "fuzz pool %d: %s", i,
                   err);
        wire_msg_clear(&samples[i]);
    }
    int accepted = 0, refused = 0, it;
    size_t cap = 4096;
    for (int i = 0; i < NS; i++) REQUIRE(pool[i].n < cap / 3, "fuzz pool %d: %zu bytes", i, pool[i].n);
    uint8_t *buf = xmalloc(cap);
    double t0 = now_s();
    for (it = 0; it < iterations && now_s() - t0 < 20.0; it++) {
        const blob_t *a = &pool[rnd_below(NS)], *b = &pool[rnd_below(NS)];
        size_t len = a->n;
        memcpy(buf, a->b, a->n);
        switch (rnd_below(7)) {
        case 0: /* random bytes, sometimes behind a valid version field */
            len = rnd_below(96);
            for (size_t i = 0; i < len; i++) buf[i] = (uint8_t)rnd();
            if (len > 2 && rnd_below(2)) buf[0] = 0x08, buf[1] = WIRE_PROTOCOL_VERSION;
            break;
        case 1: /* truncation */
            len = rnd_below(a->n + 1);
            break;
        case 2: /* bit flips */
            for (size_t k = 1 + rnd_below(4); k; k--) buf[rnd_below(len)] ^= (uint8_t)(1u << rnd_below(8));
            break;
        case 3: /* byte overwrites with protobuf-significant values */
            for (size_t k = 1 + rnd_below(3); k; k--) {
                static const uint8_t vals[] = {0x00, 0x01, 0x02, 0x7f, 0x80, 0xff, 0x08, 0x0a, 0x12, 0x22, 0x72};
                buf[rnd_below(len)] = rnd_below(2) ? vals[rnd_below(sizeof vals)] : (uint8_t)rnd();
            }
            break;
        case 4: { /* random bytes inserted */
            size_t at = rnd_below(len + 1), k = 1 + rnd_below(8);
            memmove(buf + at + k, buf + at, len - at);
            for (size_t i = 0; i < k; i++) buf[at + i] = (uint8_t)rnd();
            len += k;
            break;
        }
        case 5: /* two messages concatenated (protobuf merges them) */
            memcpy(buf + len, b->b, b->n);
            len += b->n;
            break;
        case 6: /* a chunk deleted */
            if (len) {
                size_t at = rnd_below(len), k = 1 + rnd_below(len - at);
                memmove(buf + at, buf + at + k, len - at - k);
                len -= k;
            }
            break;
        }
        wire_msg_t d, d2;
        err[0] = 0;
        if (wire_decode(buf, len, &d, err, sizeof err) == 0) {
            accepted++;
            /* What decodes is valid: it re-encodes, and decodes the same. */
            uint8_t *re = NULL;
            size_t relen = 0;
            const char *diff = "";
            int ok = wire_encode(&d, &re, &relen, err, sizeof err) == 0 &&
                     wire_decode(re, relen, &d2, err, sizeof err) == 0;
            TU_CHECK(ok, "fuzz %d: a decoded message does not re-encode: %s", it, err);
            if (ok) {
                TU_CHECK(msg_eq(&d, &d2, &diff), "fuzz %d: re-decoded message differs in %s", it, diff);
                wire_msg_clear(&d2);
            }
            free(re);
            wire_msg_clear(&d);
        } else {
            refused++;
            TU_CHECK(err[0] && is_empty(&d), "fuzz %d: refused without a message, or *m not empty", it);
        }
        if (tu_failures > 20) break;
    }
    double dt = now_s() - t0;
    fprintf(stderr, "fuzz: %d iterations in %.2f s (%.1f us each): %d accepted (re-encoded and compared), %d refused\n",
            it, dt, 1e6 * dt / (it ? it : 1), accepted, refused);
    TU_CHECK(it == iterations, "fuzz stopped after %d of %d iterations (20 s)", it, iterations);
    TU_CHECK(refused > it / 2 && accepted > 0, "fuzz should mostly refuse, sometimes accept");
    free(buf);
    for (int i = 0; i < NS; i++) free(pool[i].b);
}

/* ---- live loopback ---------------------------------------------------------------- */

static volatile sig_atomic_t alarms;
static void on_alarm(int sig) {
    (void)sig;
    alarms++;
}

static void unmap_frame(void *data, void *hint) { munmap(data, (size_t)(uintptr_t)hint); }

/* A frame of WIRE_MAX_FRAME + 1 bytes sent without a copy from untouched
 * pages (read as zeros, never backed by memory). */
static int send_oversized(void *sock) {
    size_t big = (size_t)WIRE_MAX_FRAME + 1;
    void *map = mmap(NULL, big, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    REQUIRE(map != MAP_FAILED, "mmap: %s", strerror(errno));
    zmq_msg_t msg;
    REQUIRE(zmq_msg_init_data(&msg, map, big, unmap_frame, (void *)(uintptr_t)big) == 0, "msg init");
    int rc = zmq_msg_send(&msg, sock, 0);
    if (rc < 0) zmq_msg_close(&msg);
    return rc < 0 ? -1 : 0;
}

static void *mk_socket(void *ctx, int type, int timeout_ms) {
    void *s = zmq_socket(ctx, type);
    REQUIRE(s, "zmq_socket: %s", zmq_strerror(zmq_errno()));
    REQUIRE(wire_socket_setup(s, err, sizeof err) == 0, "setup: %s", err);
    REQUIRE(zmq_setsockopt(s, ZMQ_RCVTIMEO, &timeout_ms, sizeof timeout_ms) == 0, "RCVTIMEO");
    return s;
}

/* Sends m; receives it on the other side (into *got, cleared by the caller)
 * and checks it arrived whole.  Returns the wire_recv status. */
static int pass(void *from, const void *to_peer, size_t to_len, void *to_sock, uint8_t *peer, size_t *peer_len,
                const wire_msg_t *m, wire_msg_t *got, const char *what) {
    const char *diff = "";
    TU_CHECK(wire_send(from, to_peer, to_len, m, err, sizeof err) == 0, "%s: send: %s", what, err);
    size_t cap = peer_len ? *peer_len : 0;
    int rc = wire_recv(to_sock, peer, peer_len, got, 0, err, sizeof err);
    TU_CHECK(rc == 0, "%s: recv gave %d: %s", what, rc, err);
    if (rc == 0) TU_CHECK(msg_eq(m, got, &diff), "%s: arrived different in %s", what, diff);
    if (peer_len && rc != 0) *peer_len = cap;
    return rc;
}

/* Receives on the ROUTER and expects a refusal naming want and the peer. */
static void expect_garbage(void *router, const char *want, const char *who, const char *what) {
    uint8_t peer[256];
    size_t plen = sizeof peer;
    wire_msg_t m;
    int rc = wire_recv(router, peer, &plen, &m, 0, err, sizeof err);
    TU_CHECK(rc == -1 && is_empty(&m), "%s: wire_recv gave %d (%s)", what, rc, err);
    TU_CHECK(has(err, want, who), "%s: message '%s' lacks '%s' / '%s'", what, err, want, who);
    if (rc == 0) wire_msg_clear(&m);
    fprintf(stderr, "  %-32s -> %s\n", what, err);
}

/* The ROUTER still hears the DEALER: a valid HEARTBEAT goes through. */
static void still_works(void *dealer, void *router, const char *id, const char *what) {
    wire_msg_t hb = mk_simple(WIRE_HEARTBEAT), got;
    uint8_t peer[256];
    size_t plen = sizeof peer;
    if (pass(dealer, NULL, 0, router, peer, &plen, &hb, &got, what) == 0)
        TU_CHECK(plen == strlen(id) && !memcmp(peer, id, plen), "%s: identity", what);
    wire_msg_clear(&got);
}

static void test_loopback(void) {
    void *ctx = zmq_ctx_new();
    REQUIRE(ctx, "zmq_ctx_new");
    void *router = mk_socket(ctx, ZMQ_ROUTER, 5000), *dealer = mk_socket(ctx, ZMQ_DEALER, 5000);
    int mandatory = 1;
    REQUIRE(zmq_setsockopt(router, ZMQ_ROUTER_MANDATORY, &mandatory, sizeof mandatory) == 0, "MANDATORY");
    static const char ID[] = "worker-7";
    REQUIRE(zmq_setsockopt(dealer, ZMQ_ROUTING_ID, ID, strlen(ID)) == 0, "ROUTING_ID");
    REQUIRE(zmq_bind(router, "tcp://127.0.0.1:*") == 0, "bind: %s", zmq_strerror(zmq_errno()));
    char endpoint[256];
    size_t elen = sizeof endpoint;
    REQUIRE(zmq_getsockopt(router, ZMQ_LAST_ENDPOINT, endpoint, &elen) == 0, "LAST_ENDPOINT");
    REQUIRE(zmq_connect(dealer, endpoint) == 0, "connect %s: %s", endpoint, zmq_strerror(zmq_errno()));
    fprintf(stderr, "loopback on %s\n", endpoint);

    /* The conversation. */
    uint8_t peer[256];
    size_t plen = sizeof peer;
    wire_msg_t m, got;
    m = mk_hello(0);
    pass(dealer, NULL, 0, router, peer, &plen, &m, &got, "HELLO");
    REQUIRE(plen == strlen(ID) && !memcmp(peer, ID, plen), "ROUTER sees the DEALER's identity");
    wire_msg_clear(&m);
    wire_msg_clear(&got);
    m = mk_welcome(0);
    pass(router, peer, plen, dealer, NULL, NULL, &m, &got, "WELCOME");
    wire_msg_clear(&m);
    wire_msg_clear(&got);
    m = mk_simple(WIRE_READY);
    size_t plen2 = sizeof peer;
    pass(dealer, NULL, 0, router, peer, &plen2, &m, &got, "READY");
    wire_msg_clear(&got);
    m = mk_job_n(5);
    pass(router, peer, plen, dealer, NULL, NULL, &m, &got, "JOB");
    wire_msg_clear(&m);
    wire_msg_clear(&got);
    m = mk_job_big(4u << 20);
    pass(router, peer, plen, dealer, NULL, NULL, &m, &got, "JOB 4 MiB");
    wire_msg_clear(&m);
    wire_msg_clear(&got);
    m = mk_simple(WIRE_HEARTBEAT);
    pass(router, peer, plen, dealer, NULL, NULL, &m, &got, "HEARTBEAT to worker");
    m = mk_done(0);
    plen2 = sizeof peer;
    pass(dealer, NULL, 0, router, peer, &plen2, &m, &got, "DONE");
    wire_msg_clear(&m);
    wire_msg_clear(&got);

    /* Nothing waiting: 1, not an error. */
    plen2 = sizeof peer;
    TU_CHECK(wire_recv(router, peer, &plen2, &got, ZMQ_DONTWAIT, err, sizeof err) == 1 && is_empty(&got),
             "DONTWAIT on an empty socket gives 1");

    /* Garbage from the DEALER, each followed by a valid message. */
    fprintf(stderr, "garbage on the ROUTER:\n");
    uint8_t junk[512];
    for (size_t i = 0; i < sizeof junk; i++) junk[i] = (uint8_t)rnd();
    junk[0] = 0xff; /* wire type 7: never protobuf */
    TU_CHECK(zmq_send(dealer, junk, sizeof junk, 0) == (int)sizeof junk, "raw send");
    expect_garbage(router, "not a tokshift protobuf", "peer 'worker-7'", "512 random bytes");
    still_works(dealer, router, ID, "after random bytes");

    TU_CHECK(zmq_send(dealer, "", 0, 0) == 0, "raw send");
    expect_garbage(router, "empty frame", "peer 'worker-7'", "empty frame");
    still_works(dealer, router, ID, "after an empty frame");

    static const uint8_t hb[] = {0x08, WIRE_PROTOCOL_VERSION, 0x7a, 0x00};
    TU_CHECK(zmq_send(dealer, hb, sizeof hb, ZMQ_SNDMORE) == 4 && zmq_send(dealer, hb, sizeof hb, ZMQ_SNDMORE) == 4 &&
                 zmq_send(dealer, hb, sizeof hb, 0) == 4,
             "raw 3-frame send");
    expect_garbage(router, "3 payload frames, expected 1", "peer 'worker-7'", "3-frame message");
    still_works(dealer, router, ID, "after a 3-frame message");

    static const uint8_t v9[] = {0x08, 9, 0x7a, 0x00};
    TU_CHECK(zmq_send(dealer, v9, sizeof v9, 0) == 4, "raw send");
    expect_garbage(router, "protocol version 9 from the peer, this side speaks version 1", "worker-7",
                   "version 9");
    still_works(dealer, router, ID, "after a version 9 frame");

    wire_msg_t bad = mk_hello(0);
    bad.u.hello.pid = -1; /* refused before anything is sent */
    TU_CHECK(wire_send(dealer, NULL, 0, &bad, err, sizeof err) == -1 && strstr(err, "HELLO pid"),
             "wire_send refuses a bad message: %s", err);
    wire_msg_clear(&bad);
    wire_msg_t job = mk_job_n(3);
    pb_t raw = tenc(&job, WIRE_PROTOCOL_VERSION);
    raw.b[raw.n - 1] = 0xff; /* the last doc's text ends in 0xff */
    TU_CHECK(zmq_send(dealer, raw.b, raw.n, 0) == (int)raw.n, "raw send");
    expect_garbage(router, "JOB docs[2].text (doc_id 14): invalid UTF-8", "worker-7", "JOB with bad UTF-8");
    free(raw.b);
    wire_msg_clear(&job);
    still_works(dealer, router, ID, "after a bad JOB");

    /* A routing identity longer than the caller's buffer. */
    TU_CHECK(zmq_send(dealer, hb, sizeof hb, 0) == 4, "raw send");
    plen2 = 3;
    TU_CHECK(wire_recv(router, peer, &plen2, &got, 0, err, sizeof err) == -1 &&
                 strstr(err, "routing identity of 8 bytes exceeds the buffer (3 bytes)"),
             "short identity buffer: %s", err);
    still_works(dealer, router, ID, "after a short identity buffer");

    /* A second DEALER with ZeroMQ's binary identity: named in hex. */
    void *anon = mk_socket(ctx, ZMQ_DEALER, 5000);
    REQUIRE(zmq_connect(anon, endpoint) == 0, "connect");
    TU_CHECK(zmq_send(anon, junk, 100, 0) == 100, "raw send");
    expect_garbage(router, "not a tokshift protobuf", "from peer 0x", "garbage from an anonymous peer");
    zmq_close(anon);

    /* Garbage to the DEALER. */
    fprintf(stderr, "garbage on the DEALER:\n");
    TU_CHECK(zmq_send(router, ID, strlen(ID), ZMQ_SNDMORE) == (int)strlen(ID) &&
                 zmq_send(router, junk, 64, 0) == 64,
             "raw send to the DEALER");
    int rc = wire_recv(dealer, NULL, NULL, &got, 0, err, sizeof err);
    TU_CHECK(rc == -1 && strstr(err, "not a tokshift protobuf"), "DEALER: garbage gives %d: %s", rc, err);
    fprintf(stderr, "  %-32s -> %s\n", "64 random bytes", err);
    TU_CHECK(zmq_send(router, ID, strlen(ID), ZMQ_SNDMORE) == (int)strlen(ID) &&
                 zmq_send(router, hb, sizeof hb, ZMQ_SNDMORE) == 4 && zmq_send(router, hb, sizeof hb, 0) == 4,
             "raw 2-frame send to the DEALER");
    rc = wire_recv(dealer, NULL, NULL, &got, 0, err, sizeof err);
    TU_CHECK(rc == -1 && strstr(err, "2 payload frames, expected 1"), "DEALER: 2 frames give %d: %s", rc, err);
    fprintf(stderr, "  %-32s -> %s\n", "2-frame message", err);
    m = mk_shutdown(0);
    pass(router, ID, strlen(ID), dealer, NULL, NULL, &m, &got, "SHUTDOWN after garbage");
    wire_msg_clear(&m);
    wire_msg_clear(&got);

    /* Sends that cannot go: an unknown peer (ZMQ_ROUTER_MANDATORY), a DEALER
     * connected to nobody. */
    m = mk_simple(WIRE_HEARTBEAT);
    TU_CHECK(wire_send(router, "nobody", 6, &m, err, sizeof err) == -1 && has(err, "peer 'nobody'", "not connected"),
             "send to an unknown peer: %s", err);
    void *lonely = mk_socket(ctx, ZMQ_DEALER, 100);
    TU_CHECK(wire_send(lonely, NULL, 0, &m, err, sizeof err) == -1 && strstr(err, "would block"),
             "send from an unconnected DEALER: %s", err);
    TU_CHECK(wire_recv(lonely, NULL, NULL, &got, 0, err, sizeof err) == 1, "RCVTIMEO expiry gives 1");
    /* A signal during a blocking wait: 1 (EINTR), at once, not at RCVTIMEO. */
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_alarm; /* no SA_RESTART */
    sigemptyset(&sa.sa_mask);
    REQUIRE(sigaction(SIGALRM, &sa, NULL) == 0, "sigaction");
    struct itimerval tv = {.it_value = {.tv_sec = 0, .tv_usec = 50000}};
    int blocking = -1;
    REQUIRE(zmq_setsockopt(lonely, ZMQ_RCVTIMEO, &blocking, sizeof blocking) == 0, "RCVTIMEO");
    double t_sig = now_s();
    REQUIRE(setitimer(ITIMER_REAL, &tv, NULL) == 0, "setitimer");
    rc = wire_recv(lonely, NULL, NULL, &got, 0, err, sizeof err);
    TU_CHECK(rc == 1 && alarms == 1 && now_s() - t_sig < 2.0, "EINTR gives 1 (rc %d, %d alarms, %.2f s)", rc,
             (int)alarms, now_s() - t_sig);
    signal(SIGALRM, SIG_DFL);
    zmq_close(lonely);

    /* An oversized frame over TCP: ZMQ_MAXMSGSIZE makes ZeroMQ drop the
     * connection before the frame reaches wire_recv; the DEALER reconnects
     * (same ZMQ_ROUTING_ID) and the next message goes through. */
    double t0 = now_s();
    TU_CHECK(send_oversized(dealer) == 0, "oversized send: %s", zmq_strerror(zmq_errno()));
    m = mk_hello(0);
    plen2 = sizeof peer;
    rc = pass(dealer, NULL, 0, router, peer, &plen2, &m, &got, "HELLO after an oversized frame over TCP");
    if (rc == 0) TU_CHECK(plen2 == strlen(ID) && !memcmp(peer, ID, plen2), "same identity after the reconnect");
    fprintf(stderr, "oversized frame over TCP: connection dropped by ZMQ_MAXMSGSIZE, next message after %.2f s\n",
            now_s() - t0);
    wire_msg_clear(&m);
    wire_msg_clear(&got);
    zmq_close(dealer);
    zmq_close(router);

    /* Over inproc ZeroMQ applies no ZMQ_MAXMSGSIZE: wire_recv's own limit. */
    void *r2 = mk_socket(ctx, ZMQ_ROUTER, 5000), *d2 = mk_socket(ctx, ZMQ_DEALER, 5000);
    REQUIRE(zmq_setsockopt(d2, ZMQ_ROUTING_ID, "big", 3) == 0, "ROUTING_ID");
    REQUIRE(zmq_bind(r2, "inproc://wire-oversized") == 0 && zmq_connect(d2, "inproc://wire-oversized") == 0,
               "inproc");
    fprintf(stderr, "oversized frame over inproc:\n");
    TU_CHECK(send_oversized(d2) == 0, "oversized send: %s", zmq_strerror(zmq_errno()));
    expect_garbage(r2, "frame of 268435457 bytes exceeds WIRE_MAX_FRAME", "peer 'big'", "WIRE_MAX_FRAME + 1 bytes");
    still_works(d2, r2, "big", "after an oversized frame");
    zmq_close(d2);
    zmq_close(r2);
    zmq_ctx_term(ctx);
}

/* ---- the rest ---------------------------------------------------------------------- */

static void test_misc(void) {
    TU_CHECK(!strcmp(wire_type_name(WIRE_HELLO), "HELLO") && !strcmp(wire_type_name(WIRE_SHUTDOWN), "SHUTDOWN") &&
                 !strcmp(wire_type_name(WIRE_HEARTBEAT), "HEARTBEAT"),
             "type names");
    TU_CHECK(!strcmp(wire_type_name(99), "type 99") && !strcmp(wire_type_name(0), "type 0") &&
                 !strcmp(wire_type_name(-1), "type -1"),
             "unknown type names");
    wire_msg_clear(NULL);
    wire_msg_t m = mk_hello(0);
    wire_msg_clear(&m);
    wire_msg_clear(&m); /* twice: the first zeroed it */
    TU_CHECK(is_empty(&m), "clear zeroes");

    char s1[] = "caf\xe9 \xe2\x82\xac ok \xff\xfe end \xe2\x82";
    TU_CHECK(wire_utf8_sanitize(s1) == 5 && !strcmp(s1, "caf? \xe2\x82\xac ok ?? end ??"), "sanitize: '%s'", s1);
    char s2[] = "already fine \xf0\x9f\x98\x80";
    TU_CHECK(wire_utf8_sanitize(s2) == 0 && wire_utf8_sanitize(NULL) == 0, "sanitize of valid text");
    wire_msg_t f = mk_failed(0);
    replace_str(&f.u.failed.error, "cannot open /data/caf\xe9.jsonl");
    uint8_t *buf;
    size_t len;
    TU_CHECK(wire_encode(&f, &buf, &len, err, sizeof err) == -1, "non-UTF-8 error refused");
    wire_utf8_sanitize(f.u.failed.error);
    TU_CHECK(wire_encode(&f, &buf, &len, err, sizeof err) == 0, "sanitized error accepted: %s", err);
    free(buf);
    wire_msg_clear(&f);

    TU_CHECK(wire_encode(NULL, &buf, &len, err, sizeof err) == -1, "NULL message");
    TU_CHECK(wire_decode((const uint8_t *)"x", 1, NULL, err, sizeof err) == -1, "NULL output");
}

int main(void) {
    const char *seed_env = getenv("TOKSHIFT_TEST_SEED");
    uint64_t seed = seed_env ? strtoull(seed_env, NULL, 0) : (uint64_t)time(NULL) ^ ((uint64_t)clock() << 32);
    rng_state = seed ? seed : 1;
    fprintf(stderr, "test_wire: seed %llu (TOKSHIFT_TEST_SEED replays it)\n", (unsigned long long)seed);

    double t0 = now_s();
    test_misc();
    test_roundtrips();
    fprintf(stderr, "round trips: %.2f s\n", now_s() - t0);
    test_bad_values();
    test_malformed();
    const char *fuzz_env = getenv("TOKSHIFT_WIRE_FUZZ"); /* iterations, for longer runs by hand */
    test_fuzz(fuzz_env ? atoi(fuzz_env) : 200000);
    t0 = now_s();
    test_loopback();
    fprintf(stderr, "loopback: %.2f s\n", now_s() - t0);
    return tu_finish("test_wire");
}
