/* digest.c - see digest.h. */
#include "digest.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "log.h"

static const uint32_t K[64] = {
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
    0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
    0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
    0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
    0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
    0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
    0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
    0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2};

#define ROR(x, n) (((x) >> (n)) | ((x) << (32 - (n))))

static void sha256_block(uint32_t *h, const uint8_t *p) {
    uint32_t w[64], s[8];
    for (int i = 0; i < 16; i++)
        w[i] = (uint32_t)p[4 * i] << 24 | (uint32_t)p[4 * i + 1] << 16 | (uint32_t)p[4 * i + 2] << 8 | p[4 * i + 3];
    for (int i = 16; i < 64; i++) {
        uint32_t s0 = ROR(w[i - 15], 7) ^ ROR(w[i - 15], 18) ^ (w[i - 15] >> 3);
        uint32_t s1 = ROR(w[i - 2], 17) ^ ROR(w[i - 2], 19) ^ (w[i - 2] >> 10);
        w[i] = w[i - 16] + s0 + w[i - 7] + s1;
    }
    memcpy(s, h, sizeof s);
    for (int i = 0; i < 64; i++) {
        uint32_t S1 = ROR(s[4], 6) ^ ROR(s[4], 11) ^ ROR(s[4], 25);
        uint32_t ch = (s[4] & s[5]) ^ (~s[4] & s[6]);
        uint32_t t1 = s[7] + S1 + ch + K[i] + w[i];
        uint32_t S0 = ROR(s[0], 2) ^ ROR(s[0], 13) ^ ROR(s[0], 22);
        uint32_t mj = (s[0] & s[1]) ^ (s[0] & s[2]) ^ (s[1] & s[2]);
        memmove(s + 1, s, 7 * sizeof *s);
        s[4] += t1;
        s[0] = t1 + S0 + mj;
    }
    for (int i = 0; i < 8; i++) h[i] += s[i];
}

#define ROL(x, n) (((x) << (n)) | ((x) >> (32 - (n))))

/* FIPS 180-4 section 6.1.2. */
static void sha1_block(uint32_t *h, const uint8_t *p) {
    uint32_t w[80], a = h[0], b = h[1], c = h[2], d = h[3], e = h[4];
    for (int i = 0; i < 16; i++)
        w[i] = (uint32_t)p[4 * i] << 24 | (uint32_t)p[4 * i + 1] << 16 | (uint32_t)p[4 * i + 2] << 8 | p[4 * i + 3];
    for (int i = 16; i < 80; i++) w[i] = ROL(w[i - 3] ^ w[i - 8] ^ w[i - 14] ^ w[i - 16], 1);
    for (int i = 0; i < 80; i++) {
        uint32_t f = i < 20 ? (b & c) | (~b & d) : i < 40 || i >= 60 ? b ^ c ^ d : (b & c) | (b & d) | (c & d);
        uint32_t k = i < 20 ? 0x5a827999 : i < 40 ? 0x6ed9eba1 : i < 60 ? 0x8f1bbcdc : 0xca62c1d6;
        uint32_t t = ROL(a, 5) + f + e + k + w[i];
        e = d, d = c, c = ROL(b, 30), b = a, a = t;
    }
    h[0] += a, h[1] += b, h[2] += c, h[3] += d, h[4] += e;
}

/* The framing SHA-1 and SHA-256 share: 64-byte blocks, buffered input, then
 * 0x80, zeros and the big-endian bit count. */
typedef void (*block_fn)(uint32_t *h, const uint8_t *p);

static void md_update(uint32_t *h, uint64_t *n, uint8_t *buf, size_t *blen, block_fn blk, const void *data,
                      size_t len) {
    const uint8_t *p = data;
    *n += len;
    if (*blen) {
        size_t take = 64 - *blen < len ? 64 - *blen : len;
        memcpy(buf + *blen, p, take);
        *blen += take, p += take, len -= take;
        if (*blen < 64) return;
        blk(h, buf);
        *blen = 0;
    }
    for (; len >= 64; p += 64, len -= 64) blk(h, p);
    memcpy(buf, p, len);
    *blen = len;
}

/* Pads and writes the first n_words state words big-endian into out. */
static void md_final(uint32_t *h, uint64_t *n, uint8_t *buf, size_t *blen, block_fn blk, int n_words, uint8_t *out) {
    uint64_t bits = *n * 8;
    uint8_t pad[72] = {0x80};
    size_t padlen = (*blen < 56 ? 56 : 120) - *blen;
    uint8_t lenb[8];
    for (int i = 0; i < 8; i++) lenb[i] = (uint8_t)(bits >> (56 - 8 * i));
    md_update(h, n, buf, blen, blk, pad, padlen);
    md_update(h, n, buf, blen, blk, lenb, 8);
    for (int i = 0; i < n_words; i++)
        for (int j = 0; j < 4; j++) out[4 * i + j] = (uint8_t)(h[i] >> (24 - 8 * j));
}

void digest_sha256_init(digest_sha256_t *c) {
    static const uint32_t h0[8] = {0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a,
                                   0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19};
    memcpy(c->h, h0, sizeof h0);
    c->n = 0;
    c->len = 0;
}

void digest_sha256_update(digest_sha256_t *c, const void *data, size_t len) {
    md_update(c->h, &c->n, c->buf, &c->len, sha256_block, data, len);
}

void digest_sha256_final(digest_sha256_t *c, uint8_t out[32]) {
    md_final(c->h, &c->n, c->buf, &c->len, sha256_block, 8, out);
}

void digest_sha1_init(digest_sha1_t *c) {
    static const uint32_t h0[5] = {0x67452301, 0xefcdab89, 0x98badcfe, 0x10325476, 0xc3d2e1f0};
    memcpy(c->h, h0, sizeof h0);
    c->n = 0;
    c->len = 0;
}

void digest_sha1_update(digest_sha1_t *c, const void *data, size_t len) {
    md_update(c->h, &c->n, c->buf, &c->len, sha1_block, data, len);
}

void digest_sha1_final(digest_sha1_t *c, uint8_t out[20]) {
    md_final(c->h, &c->n, c->buf, &c->len, sha1_block, 5, out);
}

void digest_hexn(const uint8_t *in, size_t n, char *out) {
    for (size_t i = 0; i < n; i++) snprintf(out + 2 * i, 3, "%02x", in[i]);
    out[2 * n] = 0;
}

void digest_hex(const uint8_t in[32], char out[65]) { digest_hexn(in, 32, out); }

int digest_file(const char *path, char out[65], char *err, size_t errlen) {
    FILE *f = fopen(path, "rb");
    if (!f) return log_seterr(err, errlen, "%s: cannot open: %s", path, strerror(errno));
    digest_sha256_t c;
    digest_sha256_init(&c);
    static __thread uint8_t buf[1 << 16];
    size_t r;
    while ((r = fread(buf, 1, sizeof buf, f)) > 0) digest_sha256_update(&c, buf, r);
    int bad = ferror(f);
    fclose(f);
    if (bad) return log_seterr(err, errlen, "%s: read error", path);
    uint8_t h[32];
    digest_sha256_final(&c, h);
    digest_hex(h, out);
    return 0;
}

static int name_cmp(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

static int wanted(const char *name) {
    size_t n = strlen(name);
    const char *ext[] = {".json", ".safetensors", ".model"};
    for (size_t i = 0; i < 3; i++) {
        size_t e = strlen(ext[i]);
        if (n > e && !strcmp(name + n - e, ext[i])) return 1;
    }
    return 0;
}

int digest_model_identity(const char *path, char out[65], char *err, size_t errlen) {
    struct stat st;
    if (err && errlen) err[0] = 0;
    if (stat(path, &st) != 0) return log_seterr(err, errlen, "%s: %s", path, strerror(errno));
    if (!S_ISDIR(st.st_mode)) return digest_file(path, out, err, errlen);
    DIR *d = opendir(path);
    char **names = NULL;
    size_t n = 0, cap = 0;
    int rc = -1;
    if (!d) return log_seterr(err, errlen, "%s: cannot open directory: %s", path, strerror(errno));
    struct dirent *e;
    while ((e = readdir(d))) {
        if (!wanted(e->d_name)) continue;
        if (n == cap) {
            char **nn = realloc(names, (cap = cap ? 2 * cap : 16) * sizeof *nn);
            if (!nn) goto error;
            names = nn;
        }
        if (!(names[n] = strdup(e->d_name))) goto error;
        n++;
    }
    if (n == 0) {
        log_seterr(err, errlen, "%s: no .json/.safetensors files: not a model directory", path);
        goto error;
    }
    qsort(names, n, sizeof *names, name_cmp);
    digest_sha256_t c;
    digest_sha256_init(&c);
    for (size_t i = 0; i < n; i++) {
        char file[4096], h[65];
        snprintf(file, sizeof file, "%s/%s", path, names[i]);
        if (digest_file(file, h, err, errlen)) goto error;
        digest_sha256_update(&c, names[i], strlen(names[i]) + 1);
        digest_sha256_update(&c, h, 64);
        digest_sha256_update(&c, "\n", 1);
    }
    uint8_t hb[32];
    digest_sha256_final(&c, hb);
    digest_hex(hb, out);
    rc = 0;
error:
    if (rc && err && !err[0]) log_seterr(err, errlen, "%s: out of memory", path);
    for (size_t i = 0; i < n; i++) free(names[i]);
    free(names);
    closedir(d);
    return rc;
}

int digest_selftest(void) {
    /* FIPS 180-4 examples. */
    static const struct { const char *in; const char *hex; } v[] = {
        {"", "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"},
        {"abc", "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"},
        {"abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq",
         "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1"}};
    for (size_t i = 0; i < 3; i++) {
        digest_sha256_t c;
        uint8_t h[32];
        char hex[65];
        digest_sha256_init(&c);
        /* Feed byte by byte to exercise the buffering. */
        for (const char *p = v[i].in; *p; p++) digest_sha256_update(&c, p, 1);
        digest_sha256_final(&c, h);
        digest_hex(h, hex);
        if (strcmp(hex, v[i].hex)) return -1;
    }
    /* FIPS 180-4 SHA-1 examples, and git's blob id of "hello" (git hash-object). */
    static const struct { const char *in; const char *hex; } v1[] = {
        {"", "da39a3ee5e6b4b0d3255bfef95601890afd80709"},
        {"abc", "a9993e364706816aba3e25717850c26c9cd0d89d"},
        {"abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq", "84983e441c3bd26ebaae4aa1f95129e5e54670f1"},
        {"blob 5\0hello", "b6fc4c620b67d95f953a5c1c1230aaab5db5a1b0"}};
    for (size_t i = 0; i < 4; i++) {
        digest_sha1_t c;
        uint8_t h[20];
        char hex[41];
        size_t len = strlen(v1[i].in);
        if (i == 3) len += 1 + strlen(v1[i].in + len + 1); /* the NUL inside */
        digest_sha1_init(&c);
        for (size_t k = 0; k < len; k++) digest_sha1_update(&c, v1[i].in + k, 1);
        digest_sha1_final(&c, h);
        digest_hexn(h, 20, hex);
        if (strcmp(hex, v1[i].hex)) return -1;
    }
    return 0;
}
