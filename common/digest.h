/* digest.h - SHA-256 (and SHA-1), and the identity of a model on disk.
 *
 * What it is: a plain FIPS 180-4 SHA-256; SHA-1, only because git names a
 * file's content by it (the Hugging Face Hub's blobId of a file kept in
 * git, which `tokshift fetch` checks); and digest_model_identity(), which
 * names a model by the hash of its bytes so that a coordinator (which never
 * loads a model) and a worker (which does) can agree they mean the same one.
 * What it is not: anything cryptographic beyond that. */
#ifndef TS_DIGEST_H
#define TS_DIGEST_H

#include <stddef.h>
#include <stdint.h>

typedef struct {
    uint32_t h[8];
    uint64_t n; /* bytes hashed */
    uint8_t buf[64];
    size_t len;
} digest_sha256_t;

void digest_sha256_init(digest_sha256_t *c);
void digest_sha256_update(digest_sha256_t *c, const void *data, size_t len);
/* Writes 32 bytes. */
void digest_sha256_final(digest_sha256_t *c, uint8_t out[32]);
/* Lower-case hex of 32 bytes into out (65 bytes with the NUL). */
void digest_hex(const uint8_t in[32], char out[65]);
/* Lower-case hex of n bytes into out (2n + 1 bytes with the NUL). */
void digest_hexn(const uint8_t *in, size_t n, char *out);

typedef struct {
    uint32_t h[5];
    uint64_t n; /* bytes hashed */
    uint8_t buf[64];
    size_t len;
} digest_sha1_t;

void digest_sha1_init(digest_sha1_t *c);
void digest_sha1_update(digest_sha1_t *c, const void *data, size_t len);
/* Writes 20 bytes. */
void digest_sha1_final(digest_sha1_t *c, uint8_t out[20]);

/* SHA-256 of a file's contents as hex.  Returns 0, or -1 with a message. */
int digest_file(const char *path, char out[65], char *err, size_t errlen);

/* The identity of the model at path: for a file, the SHA-256 of its bytes;
 * for a directory (a Hugging Face checkpoint), the SHA-256 of the sorted
 * list "name\0sha256\n" of its *.json, *.safetensors and *.model files.
 * Returns 0, or -1 with a message. */
int digest_model_identity(const char *path, char out[65], char *err, size_t errlen);

int digest_selftest(void);

#endif
