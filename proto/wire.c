/* wire.c - see wire.h.
 *
 * What it is: the only translation unit that sees the protobuf-c generated
 * types (tokshift.pb-c.h); it copies between them and the plain structs of
 * wire.h, checks every value against the bounds of tokshift.proto (the same
 * checks on encode and on decode, so what one side sends the other accepts),
 * and frames messages on ZeroMQ sockets.
 *
 * What it is not: the protocol's state machine, nor a place that keeps
 * state: every function here is reentrant (wire_type_name's fallback buffer
 * is thread-local). */
#include "wire.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <zmq.h>

#include "log.h"
#include "utf8.h"
#include "tokshift.pb-c.h"

/* The payload's field number in Envelope is 10 + wire_type_t (see the
 * .proto); the generated case constants must agree. */
_Static_assert(TOKSHIFT__ENVELOPE__PAYLOAD_HELLO == 10 + WIRE_HELLO, "field numbers");
_Static_assert(TOKSHIFT__ENVELOPE__PAYLOAD_SHUTDOWN == 10 + WIRE_SHUTDOWN, "field numbers");

/* HELLO/WELCOME bounds that wire.h does not name. */
#define MAX_HEARTBEAT_MS 3600000 /* one hour */
#define MAX_LIVENESS 1000
#define IDENTITY_HEX 64 /* sha256 in hex */

/* ---- names ------------------------------------------------------------ */

const char *wire_type_name(int type) {
    static const char *names[] = {NULL,        "HELLO", "WELCOME", "READY",   "JOB",
                                  "HEARTBEAT", "DONE",  "FAILED",  "SHUTDOWN"};
    static _Thread_local char other[32];
    if (type >= WIRE_HELLO && type <= WIRE_SHUTDOWN) return names[type];
    snprintf(other, sizeof other, "type %d", type);
    return other;
}

/* ---- UTF-8 ------------------------------------------------------------ */

/* Checks s[0..n) is well-formed UTF-8 (utf8.h) without NUL.  Returns -1
 * when it is, else the offset of the first offending byte. */
static ssize_t utf8_bad_at(const unsigned char *s, size_t n) {
    long bad = utf8_invalid_at(s, n);
    const unsigned char *nul = memchr(s, 0, bad < 0 ? n : (size_t)bad);
    return nul ? (ssize_t)(nul - s) : (ssize_t)bad;
}

size_t wire_utf8_sanitize(char *s) {
    if (!s) return 0;
    size_t n = strlen(s), fixed = 0, i = 0;
    while (i < n) {
        ssize_t bad = utf8_bad_at((const unsigned char *)s + i, n - i);
        if (bad < 0) break;
        s[i + (size_t)bad] = '?';
        fixed++;
        i += (size_t)bad + 1;
    }
    return fixed;
}

/* ---- validation (shared by encode and decode) ----------------------------- */

/* Writes up to 48 bytes of s, printable ASCII as is and the rest as \xNN,
 * into out (for messages that quote a bad value). */
static const char *quoted(const char *s, size_t n, char *out, size_t cap) {
    size_t o = 0;
    for (size_t i = 0; i < n && i < 48 && o + 5 < cap; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c >= 0x20 && c < 0x7F && c != '\\' && c != '\'') out[o++] = (char)c;
        else o += (size_t)snprintf(out + o, cap - o, "\\x%02x", c);
    }
    if (n > 48 && o + 4 < cap) out[o++] = '.', out[o++] = '.', out[o++] = '.';
    out[o] = 0;
    return out;
}

/* A text field: at most WIRE_MAX_STRING bytes of UTF-8 without NUL.  s may be
 * NULL (sent as empty) only when n is 0. */
static int check_text(const char *what, const char *s, size_t n, char *err, size_t errlen) {
    if (n > WIRE_MAX_STRING)
        return log_seterr(err, errlen, "%s: %zu bytes, more than WIRE_MAX_STRING (%u)", what, n,
                          WIRE_MAX_STRING);
    if (!s) return n ? log_seterr(err, errlen, "%s: NULL with length %zu", what, n) : 0;
    ssize_t bad = utf8_bad_at((const unsigned char *)s, n);
    if (bad < 0) return 0;
    if (s[bad] == 0) return log_seterr(err, errlen, "%s: contains NUL at byte %zd of %zu", what, bad, n);
    return log_seterr(err, errlen, "%s: invalid UTF-8 at byte %zd of %zu (0x%02x)", what, bad, n,
                      (unsigned char)s[bad]);
}

static int check_str(const char *what, const char *s, char *err, size_t errlen) {
    return check_text(what, s, s ? strlen(s) : 0, err, errlen);
}

/* Model identity: empty, or a sha256 as 64 lowercase hex digits. */
static int check_identity(const char *what, const char *s, char *err, size_t errlen) {
    if (check_str(what, s, err, errlen)) return -1;
    size_t n = s ? strlen(s) : 0;
    int ok = n == 0 || n == IDENTITY_HEX;
    for (size_t i = 0; ok && i < n; i++) ok = (s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f');
    if (ok) return 0;
    char q[256];
    return log_seterr(err, errlen, "%s '%s' is neither empty nor %d lowercase hex digits (sha256)", what,
                      quoted(s, n, q, sizeof q), IDENTITY_HEX);
}

#define NONNEG(what, v)                                                                             \
    do {                                                                                            \
        if ((v) < 0) return log_seterr(err, errlen, "%s %lld is negative", what, (long long)(v)); \
    } while (0)

#define BOOL01(what, v)                                                                             \
    do {                                                                                            \
        if ((v) != 0 && (v) != 1)                                                                   \
            return log_seterr(err, errlen, "%s %lld is neither 0 nor 1", what, (long long)(v));    \
    } while (0)

#define NONNEG_FINITE(what, v)                                                                      \
    do {                                                                                            \
        if (!isfinite(v) || (v) < 0)                                                                \
            return log_seterr(err, errlen, "%s %g is not a finite number >= 0", what, (double)(v)); \
    } while (0)

#define IN_RANGE(what, v, lo, hi)                                                                   \
    do {                                                                                            \
        if ((v) < (lo) || (v) > (hi))                                                               \
            return log_seterr(err, errlen, "%s %lld is outside [%lld, %lld]", what, (long long)(v), \
                              (long long)(lo), (long long)(hi));                                    \
    } while (0)

static int check_settings(const wire_settings_t *s, char *err, size_t errlen) {
    if (s->window < 2)
        return log_seterr(err, errlen, "WELCOME settings.window %d is below 2", (int)s->window);
    if (s->stride < 1 || s->stride >= s->window)
        return log_seterr(err, errlen, "WELCOME settings.stride %d is outside [1, window %d)", (int)s->stride,
                          (int)s->window);
    if (s->n_prefix_lengths > WIRE_MAX_CUTS)
        return log_seterr(err, errlen, "WELCOME settings.prefix_lengths: %zu of them, more than WIRE_MAX_CUTS (%d)",
                          s->n_prefix_lengths, WIRE_MAX_CUTS);
    if (s->n_prefix_lengths && !s->prefix_lengths)
        return log_seterr(err, errlen, "WELCOME settings.prefix_lengths: NULL with %zu of them", s->n_prefix_lengths);
    for (size_t i = 0; i < s->n_prefix_lengths; i++)
        if (s->prefix_lengths[i] < 1)
            return log_seterr(err, errlen, "WELCOME settings.prefix_lengths[%zu] %d is below 1 (BOS)", i,
                              (int)s->prefix_lengths[i]);
    NONNEG("WELCOME settings.cut_every", s->cut_every);
    NONNEG("WELCOME settings.cut_every_bytes", s->cut_every_bytes);
    if (s->cut_every_bytes > 0 && (s->cut_every || s->n_prefix_lengths))
        return log_seterr(err, errlen, "WELCOME settings: cut_every_bytes %d with other cuts",
                          (int)s->cut_every_bytes);
    NONNEG("WELCOME settings.cont_len", s->cont_len);
    NONNEG("WELCOME settings.n_samples", s->n_samples);
    NONNEG_FINITE("WELCOME settings.temperature", s->temperature);
    NONNEG("WELCOME settings.top_k", s->top_k);
    if (!(s->top_p > 0.0f && s->top_p <= 1.0f))
        return log_seterr(err, errlen, "WELCOME settings.top_p %g is outside (0, 1]", (double)s->top_p);
    NONNEG("WELCOME settings.score_run", s->score_run);
    if (check_identity("WELCOME settings.vocab_digest", s->vocab_digest, err, errlen)) return -1;
    if ((s->score_run > 0) != (s->vocab_digest && *s->vocab_digest))
        return log_seterr(err, errlen, "WELCOME settings: score_run %lld %s a vocab_digest", (long long)s->score_run,
                          s->score_run > 0 ? "without" : "with");
    if (check_str("WELCOME settings.chat_template", s->chat_template, err, errlen)) return -1;
    return 0;
}

/* A document's samples (cross-scoring): counts within their bounds, cuts
 * >= 1, indexes and token ids >= 0. */
static int check_samples(size_t doc, const wire_doc_t *d, char *err, size_t errlen) {
    if (d->n_samples > WIRE_MAX_SAMPLES_PER_DOC)
        return log_seterr(err, errlen, "JOB docs[%zu].samples: %zu of them, more than WIRE_MAX_SAMPLES_PER_DOC (%u)",
                          doc, d->n_samples, WIRE_MAX_SAMPLES_PER_DOC);
    if (d->n_samples && !d->samples)
        return log_seterr(err, errlen, "JOB docs[%zu].samples: NULL with %zu of them", doc, d->n_samples);
    for (size_t k = 0; k < d->n_samples; k++) {
        const wire_sample_t *x = &d->samples[k];
        if (x->cut < 1)
            return log_seterr(err, errlen, "JOB docs[%zu].samples[%zu].cut %d is below 1 (BOS)", doc, k, (int)x->cut);
        if (x->sample_idx < 0)
            return log_seterr(err, errlen, "JOB docs[%zu].samples[%zu].sample_idx %d is negative", doc, k,
                              (int)x->sample_idx);
        if (x->n_tokens > WIRE_MAX_SAMPLE_TOKENS)
            return log_seterr(err, errlen,
                              "JOB docs[%zu].samples[%zu].tokens: %zu of them, more than WIRE_MAX_SAMPLE_TOKENS (%u)",
                              doc, k, x->n_tokens, WIRE_MAX_SAMPLE_TOKENS);
        if (x->n_tokens && !x->tokens)
            return log_seterr(err, errlen, "JOB docs[%zu].samples[%zu].tokens: NULL with %zu of them", doc, k,
                              x->n_tokens);
        for (size_t i = 0; i < x->n_tokens; i++)
            if (x->tokens[i] < 0)
                return log_seterr(err, errlen, "JOB docs[%zu].samples[%zu].tokens[%zu] %d is negative", doc, k, i,
                                  (int)x->tokens[i]);
    }
    return 0;
}

static int check_job(const wire_msg_t *m, char *err, size_t errlen) {
    NONNEG("JOB run_id", m->u.job.run_id);
    NONNEG("JOB job_id", m->u.job.job_id);
    size_t n = m->u.job.n_docs;
    if (n > WIRE_MAX_DOCS_PER_JOB)
        return log_seterr(err, errlen, "JOB docs: %zu of them, more than WIRE_MAX_DOCS_PER_JOB (%d)", n,
                          WIRE_MAX_DOCS_PER_JOB);
    if (n && !m->u.job.docs) return log_seterr(err, errlen, "JOB docs: NULL with %zu of them", n);
    for (size_t i = 0; i < n; i++) {
        const wire_doc_t *d = &m->u.job.docs[i];
        char what[96];
        if (d->doc_id < 0)
            return log_seterr(err, errlen, "JOB docs[%zu].doc_id %lld is negative", i, (long long)d->doc_id);
        snprintf(what, sizeof what, "JOB docs[%zu].text (doc_id %lld)", i, (long long)d->doc_id);
        if (check_text(what, d->text, d->text_len, err, errlen) || check_samples(i, d, err, errlen)) return -1;
    }
    return 0;
}

/* Returns 0 when every field of m is within the bounds of tokshift.proto,
 * else -1 with a message naming the field and its value. */
static int validate(const wire_msg_t *m, char *err, size_t errlen) {
    switch (m->type) {
    case WIRE_HELLO:
        if (check_str("HELLO worker", m->u.hello.worker, err, errlen) ||
            check_str("HELLO host", m->u.hello.host, err, errlen) ||
            check_identity("HELLO model_identity", m->u.hello.model_identity, err, errlen) ||
            check_str("HELLO model_name", m->u.hello.model_name, err, errlen))
            return -1;
        NONNEG("HELLO pid", m->u.hello.pid);
        NONNEG("HELLO threads", m->u.hello.threads);
        BOOL01("HELLO observes", m->u.hello.observes);
        BOOL01("HELLO templates", m->u.hello.templates);
        BOOL01("HELLO cuts_by_bytes", m->u.hello.cuts_by_bytes);
        return 0;
    case WIRE_WELCOME:
        NONNEG("WELCOME run_id", m->u.welcome.run_id);
        if (check_identity("WELCOME model_identity", m->u.welcome.model_identity, err, errlen)) return -1;
        IN_RANGE("WELCOME heartbeat_ms", m->u.welcome.heartbeat_ms, 1, MAX_HEARTBEAT_MS);
        IN_RANGE("WELCOME liveness", m->u.welcome.liveness, 1, MAX_LIVENESS);
        return check_settings(&m->u.welcome.settings, err, errlen);
    case WIRE_READY:
        return 0;
    case WIRE_HEARTBEAT:
        BOOL01("HEARTBEAT busy", m->u.heartbeat.busy);
        NONNEG("HEARTBEAT job_id", m->u.heartbeat.job_id);
        NONNEG("HEARTBEAT tokens", m->u.heartbeat.tokens);
        NONNEG("HEARTBEAT bytes", m->u.heartbeat.bytes);
        NONNEG("HEARTBEAT docs", m->u.heartbeat.docs);
        return 0;
    case WIRE_JOB:
        return check_job(m, err, errlen);
    case WIRE_DONE:
        NONNEG("DONE job_id", m->u.done.job_id);
        NONNEG("DONE n_tokens", m->u.done.n_tokens);
        NONNEG("DONE n_docs", m->u.done.n_docs);
        NONNEG_FINITE("DONE compute_s", m->u.done.compute_s);
        NONNEG_FINITE("DONE write_s", m->u.done.write_s);
        BOOL01("DONE stale", m->u.done.stale);
        return 0;
    case WIRE_FAILED:
        NONNEG("FAILED job_id", m->u.failed.job_id);
        if (check_str("FAILED error", m->u.failed.error, err, errlen)) return -1;
        BOOL01("FAILED retryable", m->u.failed.retryable);
        return 0;
    case WIRE_SHUTDOWN:
        if ((unsigned)m->u.shutdown.code > WIRE_SHUTDOWN_MODEL_MISMATCH)
            return log_seterr(err, errlen, "SHUTDOWN code %d is not a known code", (int)m->u.shutdown.code);
        return check_str("SHUTDOWN reason", m->u.shutdown.reason, err, errlen);
    }
    return log_seterr(err, errlen, "unknown message type %d", (int)m->type);
}

/* ---- encode ------------------------------------------------------------- */

/* protobuf-c wants non-const pointers for what it only reads. */
static char *str_in(const char *s) { return s ? (char *)s : (char *)""; }

int wire_encode(const wire_msg_t *m, uint8_t **buf, size_t *len, char *err, size_t errlen) {
    Tokshift__Doc *docs = NULL, **doc_ptrs = NULL;
    Tokshift__Sample *samples = NULL, **sample_ptrs = NULL;
    uint8_t *out = NULL;
    if (!buf || !len) return log_seterr(err, errlen, "wire_encode: NULL output");
    *buf = NULL;
    *len = 0;
    if (!m) return log_seterr(err, errlen, "wire_encode: NULL message");
    if (validate(m, err, errlen)) return -1;

    Tokshift__Envelope env = TOKSHIFT__ENVELOPE__INIT;
    Tokshift__Hello hello = TOKSHIFT__HELLO__INIT;
    Tokshift__Welcome welcome = TOKSHIFT__WELCOME__INIT;
    Tokshift__RunSettings settings = TOKSHIFT__RUN_SETTINGS__INIT;
    Tokshift__Ready ready = TOKSHIFT__READY__INIT;
    Tokshift__Job job = TOKSHIFT__JOB__INIT;
    Tokshift__Heartbeat heartbeat = TOKSHIFT__HEARTBEAT__INIT;
    Tokshift__Done done = TOKSHIFT__DONE__INIT;
    Tokshift__Failed failed = TOKSHIFT__FAILED__INIT;
    Tokshift__Shutdown shutdown = TOKSHIFT__SHUTDOWN__INIT;
    env.version = WIRE_PROTOCOL_VERSION;
    env.payload_case = (Tokshift__Envelope__PayloadCase)(10 + (int)m->type);

    switch (m->type) {
    case WIRE_HELLO:
        hello.worker = str_in(m->u.hello.worker);
        hello.host = str_in(m->u.hello.host);
        hello.pid = m->u.hello.pid;
        hello.threads = m->u.hello.threads;
        hello.model_identity = str_in(m->u.hello.model_identity);
        hello.model_name = str_in(m->u.hello.model_name);
        hello.observes = m->u.hello.observes != 0;
        hello.templates = m->u.hello.templates != 0;
        hello.cuts_by_bytes = m->u.hello.cuts_by_bytes != 0;
        env.hello = &hello;
        break;
    case WIRE_WELCOME: {
        const wire_settings_t *s = &m->u.welcome.settings;
        settings.window = s->window;
        settings.stride = s->stride;
        settings.n_prefix_lengths = s->n_prefix_lengths;
        settings.prefix_lengths = (int32_t *)s->prefix_lengths;
        settings.cut_every = s->cut_every;
        settings.cont_len = s->cont_len;
        settings.n_samples = s->n_samples;
        settings.temperature = s->temperature;
        settings.top_k = s->top_k;
        settings.top_p = s->top_p;
        settings.seed = s->seed;
        settings.score_run = s->score_run;
        settings.vocab_digest = s->vocab_digest ? s->vocab_digest : "";
        settings.chat_template = s->chat_template ? s->chat_template : "";
        settings.cut_every_bytes = s->cut_every_bytes;
        welcome.run_id = m->u.welcome.run_id;
        welcome.model_identity = str_in(m->u.welcome.model_identity);
        welcome.settings = &settings;
        welcome.heartbeat_ms = m->u.welcome.heartbeat_ms;
        welcome.liveness = m->u.welcome.liveness;
        env.welcome = &welcome;
        break;
    }
    case WIRE_READY:
        env.ready = &ready;
        break;
    case WIRE_JOB: {
        size_t n = m->u.job.n_docs;
        job.run_id = m->u.job.run_id;
        job.job_id = m->u.job.job_id;
        job.attempt_token = m->u.job.attempt_token;
        if (n) {
            docs = malloc(n * sizeof *docs);
            doc_ptrs = malloc(n * sizeof *doc_ptrs);
            if (!docs || !doc_ptrs) {
                log_seterr(err, errlen, "wire_encode: out of memory for %zu docs", n);
                goto error;
            }
            size_t n_samples = 0;
            for (size_t i = 0; i < n; i++) n_samples += m->u.job.docs[i].n_samples;
            if (n_samples) {
                samples = malloc(n_samples * sizeof *samples);
                sample_ptrs = malloc(n_samples * sizeof *sample_ptrs);
                if (!samples || !sample_ptrs) {
                    log_seterr(err, errlen, "wire_encode: out of memory for %zu samples", n_samples);
                    goto error;
                }
            }
            size_t at = 0;
            for (size_t i = 0; i < n; i++) {
                const wire_doc_t *d = &m->u.job.docs[i];
                tokshift__doc__init(&docs[i]);
                docs[i].n_samples = d->n_samples;
                docs[i].samples = d->n_samples ? sample_ptrs + at : NULL;
                for (size_t k = 0; k < d->n_samples; k++, at++) {
                    const wire_sample_t *x = &d->samples[k];
                    tokshift__sample__init(&samples[at]);
                    samples[at].cut = x->cut;
                    samples[at].sample_idx = x->sample_idx;
                    samples[at].seed = x->seed;
                    samples[at].n_tokens = x->n_tokens;
                    samples[at].tokens = x->tokens;
                    sample_ptrs[at] = &samples[at];
                }
                docs[i].doc_id = d->doc_id;
                docs[i].text.len = d->text_len;
                docs[i].text.data = (uint8_t *)d->text;
                doc_ptrs[i] = &docs[i];
            }
        }
        job.n_docs = n;
        job.docs = doc_ptrs;
        env.job = &job;
        break;
    }
    case WIRE_HEARTBEAT:
        heartbeat.busy = m->u.heartbeat.busy != 0;
        heartbeat.job_id = m->u.heartbeat.job_id;
        heartbeat.tokens = m->u.heartbeat.tokens;
        heartbeat.bytes = m->u.heartbeat.bytes;
        heartbeat.docs = m->u.heartbeat.docs;
        env.heartbeat = &heartbeat;
        break;
    case WIRE_DONE:
        done.job_id = m->u.done.job_id;
        done.attempt_token = m->u.done.attempt_token;
        done.n_tokens = m->u.done.n_tokens;
        done.n_docs = m->u.done.n_docs;
        done.compute_s = m->u.done.compute_s;
        done.write_s = m->u.done.write_s;
        done.stale = m->u.done.stale != 0;
        env.done = &done;
        break;
    case WIRE_FAILED:
        failed.job_id = m->u.failed.job_id;
        failed.attempt_token = m->u.failed.attempt_token;
        failed.error = str_in(m->u.failed.error);
        failed.retryable = m->u.failed.retryable != 0;
        env.failed = &failed;
        break;
    case WIRE_SHUTDOWN:
        shutdown.reason = str_in(m->u.shutdown.reason);
        shutdown.code = (Tokshift__ShutdownCode)m->u.shutdown.code;
        env.shutdown = &shutdown;
        break;
    }

    size_t size = tokshift__envelope__get_packed_size(&env);
    if (size > WIRE_MAX_FRAME) {
        log_seterr(err, errlen, "%s encodes to %zu bytes, more than WIRE_MAX_FRAME (%u)", wire_type_name(m->type),
                   size, WIRE_MAX_FRAME);
        goto error;
    }
    out = malloc(size ? size : 1);
    if (!out) {
        log_seterr(err, errlen, "wire_encode: out of memory for %zu bytes", size);
        goto error;
    }
    size_t packed = tokshift__envelope__pack(&env, out);
    if (packed != size) {
        log_seterr(err, errlen, "wire_encode: packed %zu bytes, expected %zu", packed, size);
        goto error;
    }
    free(docs);
    free(doc_ptrs);
    free(samples);
    free(sample_ptrs);
    *buf = out;
    *len = size;
    return 0;

error:
    free(out);
    free(docs);
    free(doc_ptrs);
    free(samples);
    free(sample_ptrs);
    return -1;
}

/* ---- decode ------------------------------------------------------------- */

/* protobuf-c allocator with a budget: a small frame cannot make unpack
 * allocate gigabytes (a frame of empty repeated elements costs 2 bytes each
 * on the wire and tens of bytes each unpacked).  Freed bytes are not given
 * back to the budget: the budget bounds the total allocated by one unpack. */
typedef struct {
    size_t used, cap;
    int over;
} budget_t;

static void *budget_alloc(void *data, size_t size) {
    budget_t *b = data;
    if (size > b->cap - b->used) {
        b->over = 1;
        return NULL;
    }
    b->used += size;
    return malloc(size ? size : 1);
}

static void budget_free(void *data, void *p) {
    (void)data;
    free(p);
}

/* The budget of one unpack: the bytes copied out of the frame (at most its
 * length) plus the structs, which for a legitimate message are bounded by
 * the element limits (WIRE_MAX_DOCS_PER_JOB docs of ~56 bytes each). */
static size_t budget_for(size_t len) { return 2 * len + (32u << 20); }

static char *dup_str(const char *s) {
    size_t n = s ? strlen(s) : 0;
    char *d = malloc(n + 1);
    if (!d) return NULL;
    if (n) memcpy(d, s, n);
    d[n] = 0;
    return d;
}

/* Copies the unpacked envelope's payload into m (m->type already set).
 * Its bounds are checked after, once, by validate (as for a message to
 * encode): what is allocated here mirrors what the budget already allowed
 * protobuf-c to unpack (a text over WIRE_MAX_STRING is refused before it
 * is taken over).  Doc texts are moved, not copied: env loses them. */
static int copy_payload(Tokshift__Envelope *env, wire_msg_t *m, char *err, size_t errlen) {
#define DUP(dst, src)                                                              \
    do {                                                                           \
        if (!((dst) = dup_str(src))) return log_seterr(err, errlen, "out of memory"); \
    } while (0)
    switch (m->type) {
    case WIRE_HELLO: {
        const Tokshift__Hello *h = env->hello;
        DUP(m->u.hello.worker, h->worker);
        DUP(m->u.hello.host, h->host);
        m->u.hello.pid = h->pid;
        m->u.hello.threads = h->threads;
        DUP(m->u.hello.model_identity, h->model_identity);
        m->u.hello.observes = h->observes;
        m->u.hello.templates = h->templates;
        m->u.hello.cuts_by_bytes = h->cuts_by_bytes;
        DUP(m->u.hello.model_name, h->model_name);
        return 0;
    }
    case WIRE_WELCOME: {
        const Tokshift__Welcome *w = env->welcome;
        if (!w->settings) return log_seterr(err, errlen, "WELCOME has no settings");
        const Tokshift__RunSettings *s = w->settings;
        wire_settings_t *o = &m->u.welcome.settings;
        m->u.welcome.run_id = w->run_id;
        DUP(m->u.welcome.model_identity, w->model_identity);
        m->u.welcome.heartbeat_ms = w->heartbeat_ms;
        m->u.welcome.liveness = w->liveness;
        o->window = s->window;
        o->stride = s->stride;
        if (s->n_prefix_lengths > WIRE_MAX_CUTS)
            return log_seterr(err, errlen,
                              "WELCOME settings.prefix_lengths: %zu of them, more than WIRE_MAX_CUTS (%d)",
                              s->n_prefix_lengths, WIRE_MAX_CUTS);
        if (s->n_prefix_lengths) {
            o->prefix_lengths = malloc(s->n_prefix_lengths * sizeof *o->prefix_lengths);
            if (!o->prefix_lengths) return log_seterr(err, errlen, "out of memory");
            memcpy(o->prefix_lengths, s->prefix_lengths, s->n_prefix_lengths * sizeof *o->prefix_lengths);
            o->n_prefix_lengths = s->n_prefix_lengths;
        }
        o->cut_every = s->cut_every;
        o->cont_len = s->cont_len;
        o->n_samples = s->n_samples;
        o->temperature = s->temperature;
        o->top_k = s->top_k;
        o->top_p = s->top_p;
        o->seed = s->seed;
        o->score_run = s->score_run;
        o->cut_every_bytes = s->cut_every_bytes;
        DUP(o->vocab_digest, s->vocab_digest);
        DUP(o->chat_template, s->chat_template);
        return 0;
    }
    case WIRE_JOB: {
        const Tokshift__Job *j = env->job;
        m->u.job.run_id = j->run_id;
        m->u.job.job_id = j->job_id;
        m->u.job.attempt_token = j->attempt_token;
        /* The counts (documents, samples, a sample's tokens) are checked
         * once, by validate after this copy (check_job); the copy's
         * allocations are within a small multiple of the unpacked
         * message's, which the budget bounded. */
        if (!j->n_docs) return 0;
        m->u.job.docs = calloc(j->n_docs, sizeof *m->u.job.docs);
        if (!m->u.job.docs) return log_seterr(err, errlen, "out of memory for %zu docs", j->n_docs);
        m->u.job.n_docs = j->n_docs;
        for (size_t i = 0; i < j->n_docs; i++) {
            Tokshift__Doc *d = j->docs[i];
            wire_doc_t *o = &m->u.job.docs[i];
            o->doc_id = d->doc_id;
            if (d->text.len > WIRE_MAX_STRING)
                return log_seterr(err, errlen,
                                  "JOB docs[%zu].text (doc_id %lld): %zu bytes, more than WIRE_MAX_STRING (%u)", i,
                                  (long long)d->doc_id, d->text.len, WIRE_MAX_STRING);
            /* The unpacked bytes came from malloc (budget_alloc): take them
             * over rather than copy a text of up to WIRE_MAX_STRING bytes
             * (realloc for the NUL; protobuf-c then skips the NULL). */
            char *text = realloc(d->text.data, d->text.len + 1);
            if (!text) return log_seterr(err, errlen, "out of memory for a %zu-byte text", d->text.len);
            text[d->text.len] = 0;
            o->text = text;
            o->text_len = d->text.len;
            d->text.data = NULL;
            d->text.len = 0;
            if (!d->n_samples) continue;
            if (!(o->samples = calloc(d->n_samples, sizeof *o->samples)))
                return log_seterr(err, errlen, "out of memory for %zu samples", d->n_samples);
            o->n_samples = d->n_samples;
            for (size_t k = 0; k < d->n_samples; k++) {
                const Tokshift__Sample *x = d->samples[k];
                wire_sample_t *y = &o->samples[k];
                y->cut = x->cut, y->sample_idx = x->sample_idx, y->seed = x->seed;
                if (!x->n_tokens) continue;
                if (!(y->tokens = malloc(x->n_tokens * sizeof *y->tokens)))
                    return log_seterr(err, errlen, "out of memory for %zu tokens", x->n_tokens);
                memcpy(y->tokens, x->tokens, x->n_tokens * sizeof *y->tokens);
                y->n_tokens = x->n_tokens;
            }
        }
        return 0;
    }
    case WIRE_DONE: {
        const Tokshift__Done *d = env->done;
        m->u.done.job_id = d->job_id;
        m->u.done.attempt_token = d->attempt_token;
        m->u.done.n_tokens = d->n_tokens;
        m->u.done.n_docs = d->n_docs;
        m->u.done.compute_s = d->compute_s;
        m->u.done.write_s = d->write_s;
        m->u.done.stale = d->stale ? 1 : 0;
        return 0;
    }
    case WIRE_FAILED: {
        const Tokshift__Failed *f = env->failed;
        m->u.failed.job_id = f->job_id;
        m->u.failed.attempt_token = f->attempt_token;
        DUP(m->u.failed.error, f->error);
        m->u.failed.retryable = f->retryable ? 1 : 0;
        return 0;
    }
    case WIRE_SHUTDOWN:
        DUP(m->u.shutdown.reason, env->shutdown->reason);
        /* An open enum: a newer peer's code is "other" to this one. */
        m->u.shutdown.code = env->shutdown->code == TOKSHIFT__SHUTDOWN_CODE__SHUTDOWN_RUN_COMPLETE     ? WIRE_SHUTDOWN_RUN_COMPLETE
                             : env->shutdown->code == TOKSHIFT__SHUTDOWN_CODE__SHUTDOWN_MODEL_MISMATCH ? WIRE_SHUTDOWN_MODEL_MISMATCH
                                                                                                        : WIRE_SHUTDOWN_OTHER;
        return 0;
    case WIRE_HEARTBEAT:
        m->u.heartbeat.busy = env->heartbeat->busy ? 1 : 0;
        m->u.heartbeat.job_id = env->heartbeat->job_id;
        m->u.heartbeat.tokens = env->heartbeat->tokens;
        m->u.heartbeat.bytes = env->heartbeat->bytes;
        m->u.heartbeat.docs = env->heartbeat->docs;
        return 0;
    case WIRE_READY:
        return 0;
    }
#undef DUP
    return log_seterr(err, errlen, "unknown message type %d", (int)m->type);
}

/* The first bytes of a frame in hex, for messages about garbage. */
static const char *hex_head(const uint8_t *buf, size_t len, char *out, size_t cap) {
    size_t o = 0;
    out[0] = 0;
    for (size_t i = 0; i < len && i < 8 && o + 4 < cap; i++)
        o += (size_t)snprintf(out + o, cap - o, "%s%02x", i ? " " : "", buf[i]);
    if (len > 8 && o + 4 < cap) snprintf(out + o, cap - o, " ...");
    return out;
}

int wire_decode(const uint8_t *buf, size_t len, wire_msg_t *m, char *err, size_t errlen) {
    Tokshift__Envelope *env = NULL;
    budget_t budget = {0, budget_for(len), 0};
    ProtobufCAllocator alloc = {budget_alloc, budget_free, &budget};
    char head[64];
    if (!m) return log_seterr(err, errlen, "wire_decode: NULL message");
    memset(m, 0, sizeof *m);
    if (len > WIRE_MAX_FRAME)
        return log_seterr(err, errlen, "frame of %zu bytes exceeds WIRE_MAX_FRAME (%u)", len, WIRE_MAX_FRAME);
    if (len == 0) return log_seterr(err, errlen, "empty frame (0 bytes), not a tokshift message");
    if (!buf) return log_seterr(err, errlen, "wire_decode: NULL buffer of %zu bytes", len);

    env = tokshift__envelope__unpack(&alloc, len, buf);
    if (!env) {
        if (budget.over)
            return log_seterr(err, errlen,
                              "frame of %zu bytes needs more than %zu bytes to unpack (absurd element counts)", len,
                              budget.cap);
        return log_seterr(err, errlen, "frame of %zu bytes is not a tokshift protobuf Envelope (starts %s)", len,
                          hex_head(buf, len, head, sizeof head));
    }
    if (env->version != WIRE_PROTOCOL_VERSION) {
        log_seterr(err, errlen, "protocol version %u from the peer, this side speaks version %u", env->version,
                   (unsigned)WIRE_PROTOCOL_VERSION);
        goto error;
    }
    int pc = (int)env->payload_case;
    if (pc < 10 + WIRE_HELLO || pc > 10 + WIRE_SHUTDOWN) {
        /* A payload of a type this side does not know is kept by protobuf-c
         * as an unknown field: name its number. */
        unsigned unknown = 0;
        for (size_t i = 0; !unknown && i < env->base.n_unknown_fields; i++)
            if (env->base.unknown_fields[i].tag > 10) unknown = env->base.unknown_fields[i].tag;
        if (unknown)
            log_seterr(err, errlen,
                       "frame of %zu bytes has no known message: unknown payload field %u (a newer message type?)",
                       len, unknown);
        else
            log_seterr(err, errlen, "frame of %zu bytes has no known message: payload missing", len);
        goto error;
    }
    m->type = (wire_type_t)(pc - 10);
    m->version = env->version;
    /* protobuf-c sets the case only with the member, but be sure. */
    const void *sub = pc == TOKSHIFT__ENVELOPE__PAYLOAD_HELLO       ? (const void *)env->hello
                      : pc == TOKSHIFT__ENVELOPE__PAYLOAD_WELCOME   ? (const void *)env->welcome
                      : pc == TOKSHIFT__ENVELOPE__PAYLOAD_READY     ? (const void *)env->ready
                      : pc == TOKSHIFT__ENVELOPE__PAYLOAD_JOB       ? (const void *)env->job
                      : pc == TOKSHIFT__ENVELOPE__PAYLOAD_HEARTBEAT ? (const void *)env->heartbeat
                      : pc == TOKSHIFT__ENVELOPE__PAYLOAD_DONE      ? (const void *)env->done
                      : pc == TOKSHIFT__ENVELOPE__PAYLOAD_FAILED    ? (const void *)env->failed
                                                                    : (const void *)env->shutdown;
    if (!sub) {
        log_seterr(err, errlen, "%s payload is missing", wire_type_name(m->type));
        goto error;
    }
    if (copy_payload(env, m, err, errlen) || validate(m, err, errlen)) goto error;
    tokshift__envelope__free_unpacked(env, &alloc);
    return 0;

error:
    if (env) tokshift__envelope__free_unpacked(env, &alloc);
    wire_msg_clear(m);
    return -1;
}

void wire_msg_clear(wire_msg_t *m) {
    if (!m) return;
    switch (m->type) {
    case WIRE_HELLO:
        free(m->u.hello.worker);
        free(m->u.hello.host);
        free(m->u.hello.model_identity);
        free(m->u.hello.model_name);
        break;
    case WIRE_WELCOME:
        free(m->u.welcome.model_identity);
        free(m->u.welcome.settings.prefix_lengths);
        free(m->u.welcome.settings.vocab_digest);
        free(m->u.welcome.settings.chat_template);
        break;
    case WIRE_JOB:
        for (size_t i = 0; m->u.job.docs && i < m->u.job.n_docs; i++) {
            wire_doc_t *d = &m->u.job.docs[i];
            for (size_t k = 0; d->samples && k < d->n_samples; k++) free(d->samples[k].tokens);
            free(d->samples);
            free(d->text);
        }
        free(m->u.job.docs);
        break;
    case WIRE_FAILED:
        free(m->u.failed.error);
        break;
    case WIRE_SHUTDOWN:
        free(m->u.shutdown.reason);
        break;
    case WIRE_READY:
    case WIRE_HEARTBEAT:
    case WIRE_DONE:
        break;
    }
    memset(m, 0, sizeof *m);
}

/* ---- ZeroMQ ------------------------------------------------------------- */

/* A routing identity for messages: printable ASCII as 'name', else hex. */
static const char *peer_name(const uint8_t *id, size_t n, char *out, size_t cap) {
    int printable = n > 0;
    for (size_t i = 0; i < n; i++) printable = printable && id[i] >= 0x21 && id[i] < 0x7F && id[i] != '\'';
    if (printable) {
        snprintf(out, cap, "'%.*s'", (int)(n > 64 ? 64 : n), (const char *)id);
        return out;
    }
    size_t o = (size_t)snprintf(out, cap, "0x");
    for (size_t i = 0; i < n && i < 32 && o + 3 < cap; i++) o += (size_t)snprintf(out + o, cap - o, "%02x", id[i]);
    if (n > 32 && o + 4 < cap) snprintf(out + o, cap - o, "...");
    return out;
}

static void free_frame(void *data, void *hint) {
    (void)hint;
    free(data);
}

int wire_send(void *sock, const void *peer, size_t peer_len, const wire_msg_t *m, char *err, size_t errlen) {
    uint8_t *buf = NULL;
    size_t len = 0;
    char who[160] = "the peer", name[140];
    zmq_msg_t frame;
    int rc, e, have_frame = 0;
    errno = EINVAL;
    if (!sock) return log_seterr(err, errlen, "wire_send: NULL socket");
    if (peer && (peer_len == 0 || peer_len > 255))
        return log_seterr(err, errlen, "wire_send: routing identity of %zu bytes (must be 1..255)", peer_len);
    if (wire_encode(m, &buf, &len, err, errlen)) {
        errno = EINVAL;
        return -1;
    }
    if (peer) snprintf(who, sizeof who, "peer %s", peer_name(peer, peer_len, name, sizeof name));
    /* The payload travels without a copy (zmq frees it when sent or closed);
     * it is made ready before the identity goes, so that nothing can fail
     * between the two frames. */
    if (zmq_msg_init_data(&frame, buf, len, free_frame, NULL)) {
        e = zmq_errno();
        goto error;
    }
    buf = NULL;
    have_frame = 1;
    if (peer) {
        do rc = zmq_send(sock, peer, peer_len, ZMQ_SNDMORE | ZMQ_DONTWAIT);
        while (rc < 0 && zmq_errno() == EINTR);
        if (rc < 0) {
            e = zmq_errno();
            goto error;
        }
    }
    do rc = zmq_msg_send(&frame, sock, ZMQ_DONTWAIT);
    while (rc < 0 && zmq_errno() == EINTR);
    if (rc < 0) {
        e = zmq_errno();
        goto error;
    }
    return 0;

error:
    if (have_frame) zmq_msg_close(&frame);
    free(buf);
    if (e == EAGAIN)
        log_seterr(err, errlen, "sending %s to %s would block (no connected peer, or its queue is full)",
                   wire_type_name(m->type), who);
    else if (e == EHOSTUNREACH)
        log_seterr(err, errlen, "sending %s: %s is not connected", wire_type_name(m->type), who);
    else
        log_seterr(err, errlen, "sending %s to %s: %s", wire_type_name(m->type), who, zmq_strerror(e));
    errno = e; /* for callers that tell a gone peer from other failures */
    return -1;
}

int wire_recv(void *sock, void *peer, size_t *peer_len, wire_msg_t *m, int flags, char *err, size_t errlen) {
    zmq_msg_t part, payload;
    size_t cap = 0, n_payload = 0, n_frames = 0, id_len = 0;
    int id_too_long = 0, rc;
    char who[160] = "", name[140];
    if (m) memset(m, 0, sizeof *m);
    if (!sock || !m) return log_seterr(err, errlen, "wire_recv: NULL socket or message");
    if (peer) {
        if (!peer_len) return log_seterr(err, errlen, "wire_recv: peer without peer_len");
        cap = *peer_len;
        *peer_len = 0;
    }
    zmq_msg_init(&part);
    zmq_msg_init(&payload);
    rc = zmq_msg_recv(&part, sock, flags);
    if (rc < 0) {
        int e = zmq_errno();
        zmq_msg_close(&part);
        zmq_msg_close(&payload);
        if (e == EAGAIN || e == EINTR) return 1;
        return log_seterr(err, errlen, "receiving: %s", zmq_strerror(e));
    }
    /* Consume every frame of the message, whatever it holds: the next call
     * must start at the next message. */
    for (;;) {
        size_t size = zmq_msg_size(&part);
        int more = zmq_msg_more(&part);
        if (peer && n_frames == 0) {
            id_len = size;
            if (size > cap) id_too_long = 1;
            else {
                if (size) memcpy(peer, zmq_msg_data(&part), size);
                *peer_len = size;
            }
            /* The peer's network address (TCP), so that logs can name who
             * sent garbage: libzmq keeps it with every frame. */
            const char *addr = zmq_msg_gets(&part, "Peer-Address");
            char at[80] = "";
            if (addr && *addr) {
                size_t k = (size_t)snprintf(at, sizeof at, " at ");
                for (const char *p = addr; *p && k + 1 < sizeof at; p++) at[k++] = *p > 0x20 && *p < 0x7f ? *p : '?';
                at[k] = 0;
            }
            snprintf(who, sizeof who, "from peer %s%s: ", peer_name(zmq_msg_data(&part), size, name, sizeof name), at);
        } else if (++n_payload == 1) {
            zmq_msg_move(&payload, &part);
        }
        n_frames++;
        if (!more) break;
        do rc = zmq_msg_recv(&part, sock, 0);
        while (rc < 0 && zmq_errno() == EINTR);
        if (rc < 0) {
            log_seterr(err, errlen, "%sreceiving frame %zu: %s", who, n_frames + 1, zmq_strerror(zmq_errno()));
            goto error;
        }
    }
    zmq_msg_close(&part);
    if (id_too_long) {
        log_seterr(err, errlen, "%srouting identity of %zu bytes exceeds the buffer (%zu bytes)", who, id_len, cap);
        goto error;
    }
    if (n_payload != 1) {
        log_seterr(err, errlen, "%smessage has %zu payload frames, expected 1 (%zu frames in all)", who, n_payload,
                   n_frames);
        goto error;
    }
    char inner[LOG_ERRLEN];
    if (wire_decode(zmq_msg_data(&payload), zmq_msg_size(&payload), m, inner, sizeof inner)) {
        log_seterr(err, errlen, "%s%s", who, inner);
        goto error;
    }
    zmq_msg_close(&payload);
    return 0;

error:
    zmq_msg_close(&part);
    zmq_msg_close(&payload);
    return -1;
}

int wire_socket_setup(void *sock, char *err, size_t errlen) {
    int64_t max = WIRE_MAX_FRAME;
    int linger = 0;
    if (!sock) return log_seterr(err, errlen, "wire_socket_setup: NULL socket");
    if (zmq_setsockopt(sock, ZMQ_MAXMSGSIZE, &max, sizeof max))
        return log_seterr(err, errlen, "setting ZMQ_MAXMSGSIZE: %s", zmq_strerror(zmq_errno()));
    if (zmq_setsockopt(sock, ZMQ_LINGER, &linger, sizeof linger))
        return log_seterr(err, errlen, "setting ZMQ_LINGER: %s", zmq_strerror(zmq_errno()));
    return 0;
}

/* ---- self-test ----------------------------------------------------------- */

int wire_selftest(void) {
    static const struct {
        const char *s;
        ssize_t bad;
    } utf8[] = {
        {"", -1},           {"abc", -1},           {"\xc3\xa9", -1},     {"\xe2\x82\xac", -1},
        {"\xf0\x9f\x98\x80", -1}, {"\xf4\x8f\xbf\xbf", -1}, {"\x80", 0},  {"a\xc0\x80", 1},
        {"\xe0\x80\x80", 0}, {"\xed\xa0\x80", 0},   {"\xf4\x90\x80\x80", 0}, {"\xf5\x80\x80\x80", 0},
        {"ab\xe2\x82", 2},  {"\xff", 0},           {"\xc3(", 0},
    };
    for (size_t i = 0; i < sizeof utf8 / sizeof utf8[0]; i++)
        if (utf8_bad_at((const unsigned char *)utf8[i].s, strlen(utf8[i].s)) != utf8[i].bad) return -1;
    if (utf8_bad_at((const unsigned char *)"a\0b", 3) != 1) return -1;

    /* A HEARTBEAT is exactly version (field 1) and an empty field 15. */
    char err[LOG_ERRLEN];
    wire_msg_t m = {.type = WIRE_HEARTBEAT}, d;
    uint8_t *buf = NULL;
    size_t len = 0;
    static const uint8_t want[] = {0x08, WIRE_PROTOCOL_VERSION, 0x7a, 0x00};
    if (wire_encode(&m, &buf, &len, err, sizeof err)) return -1;
    int ok = len == sizeof want && !memcmp(buf, want, len);
    free(buf);
    if (!ok) return -1;
    if (wire_decode(want, sizeof want, &d, err, sizeof err) || d.type != WIRE_HEARTBEAT ||
        d.version != WIRE_PROTOCOL_VERSION)
        return -1;
    wire_msg_clear(&d);
    static const uint8_t v2[] = {0x08, WIRE_PROTOCOL_VERSION + 1, 0x7a, 0x00};
    if (wire_decode(v2, sizeof v2, &d, err, sizeof err) != -1 || d.type != 0) return -1;
    return 0;
}
