/* tokenizer.h - text <-> token ids for the models tokshift runs.
 *
 * What it is: the SentencePiece-style BPE of Llama 1/2 (tokens with scores,
 * merges chosen by the score of the merged piece, byte fallback to <0xNN>
 * tokens, a dummy-prefix space), loaded from GGUF metadata
 * (tokenizer.ggml.model = "llama"), with the ids llama.cpp's llm_tokenizer_spm
 * gives.  What it is not: a normaliser beyond what those models do, a parser
 * of special tokens written in the text (text is always plain text: "<s>" in
 * the input is three characters, never BOS), or a chat template.
 *
 * Round trip: decode(encode(text)) with strip_leading_space gives text back
 * byte for byte (invalid UTF-8 and NUL bytes included, through byte tokens),
 * except that a literal U+2581 ("\xe2\x96\x81") in the text decodes as a
 * space: SentencePiece uses that character for the space.
 *
 * Ownership: a tokenizer_t owns copies of everything it reads, so the gguf_t
 * it was built from may be closed afterwards.  A tokenizer_t is immutable
 * after construction, so threads may share one. */
#ifndef TS_TOKENIZER_H
#define TS_TOKENIZER_H

#include <stddef.h>
#include <stdint.h>

#include "gguf.h"

typedef struct tokenizer tokenizer_t;

/* GGUF token types (tokenizer.ggml.token_type). */
enum {
    TOKENIZER_TYPE_NORMAL = 1,
    TOKENIZER_TYPE_UNKNOWN = 2,
    TOKENIZER_TYPE_CONTROL = 3,
    TOKENIZER_TYPE_USER_DEFINED = 4,
    TOKENIZER_TYPE_UNUSED = 5,
    TOKENIZER_TYPE_BYTE = 6,
};

/* Builds the tokenizer described by g's tokenizer.ggml.* keys.  Returns a new
 * tokenizer (free with tokenizer_destroy) or NULL with the reason in err
 * (unsupported model: "unsupported tokenizer model 'X'", missing or
 * inconsistent arrays, bad special ids).
 *
 * For "llama" it reads tokenizer.ggml.tokens, .scores and .token_type (all
 * required, of equal length), .bos_token_id / .eos_token_id /
 * .unknown_token_id (default 1 / 2 / 0; 0xFFFFFFFF means none; any other
 * value must be a valid id), .add_bos_token and .add_space_prefix (both
 * default true). */
tokenizer_t *tokenizer_new_gguf(const gguf_t *g, char *err, size_t errlen);

/* The vocabulary of a SentencePiece-style tokenizer, as tokenizer_new_spm
 * takes it (tokenizer_new_gguf fills one from the file; tests build one in
 * memory).  Nothing here is retained: the tokenizer copies what it needs. */
typedef struct {
    int32_t n_vocab;            /* > 0 */
    const char *const *pieces;  /* n_vocab pieces, spaces written as U+2581 */
    const size_t *piece_lens;   /* their byte lengths; NULL: NUL-terminated */
    const float *scores;        /* n_vocab scores (higher merges first) */
    const int32_t *types;       /* TOKENIZER_TYPE_* (0..6); NULL: all NORMAL */
    int32_t bos, eos, unk;      /* ids, or -1 for none */
    int add_bos;                /* the model's convention: prepend BOS */
    int add_space_prefix;       /* prepend a space to non-empty text */
} tokenizer_spm_vocab_t;

/* Builds a SentencePiece-style tokenizer from v.  Returns a new tokenizer or
 * NULL with the reason in err: no tokens, a NaN score, a token type outside
 * 0..6, a special id out of range, or a byte that has neither a <0xNN> token
 * nor an unknown token to fall back to.  Duplicate pieces: the last id wins
 * for encoding (as in llama.cpp); empty pieces are never produced. */
tokenizer_t *tokenizer_new_spm(const tokenizer_spm_vocab_t *v, char *err,
                               size_t errlen);

/* NULL-safe; clears *self_p. */
void tokenizer_destroy(tokenizer_t **self_p);

int32_t tokenizer_n_vocab(const tokenizer_t *self);
int32_t tokenizer_bos(const tokenizer_t *self); /* -1 when none */
int32_t tokenizer_eos(const tokenizer_t *self); /* -1 when none */
/* Whether the model's convention is to prepend BOS (add_bos_token). */
int tokenizer_adds_bos(const tokenizer_t *self);

/* Encodes len bytes of text (any bytes: invalid UTF-8 falls back to byte
 * tokens, never fails).  With add_bos, prepends BOS when the model has one.
 * Empty text gives no tokens (only BOS, if asked).  On success returns the
 * count and sets *ids to a malloc'd array the caller frees (possibly with
 * nothing in it, but never NULL); returns -1 only when memory runs out
 * (message in err, *ids set to NULL).  O(n log n) in len. */
long tokenizer_encode(const tokenizer_t *self, const char *text, size_t len,
                      int add_bos, int32_t **ids, char *err, size_t errlen);

/* The stored piece of id (e.g. "\xe2\x96\x81the", "<0x0A>"), NUL-terminated,
 * owned by the tokenizer; NULL when id is out of range. */
const char *tokenizer_piece(const tokenizer_t *self, int32_t id);

/* Writes the bytes that id decodes to into out (capacity cap), returning how
 * many bytes were written, or -1 if cap is too small (nothing is written
 * then).  tokenizer_max_piece_bytes() bytes always suffice.  Normal and
 * user-defined pieces decode to their text with U+2581 -> ' '; byte tokens
 * <0xNN> to that byte; control, unknown (UNK included, as llama.cpp's
 * token_to_piece does without special) and unused tokens, and ids out of
 * range, to nothing.  No leading space is removed here. */
long tokenizer_token_bytes(const tokenizer_t *self, int32_t id, char *out,
                           size_t cap);
size_t tokenizer_max_piece_bytes(const tokenizer_t *self);

/* Decodes ids into a malloc'd, NUL-terminated string (caller frees), its
 * length in *len (len may be NULL; the text may hold NUL bytes).  With
 * strip_leading_space, and when the model adds the dummy-prefix space, one
 * leading space of the decoded text is dropped (as SentencePiece's decoder
 * does; control tokens such as BOS before it decode to nothing).  Ids out of
 * range decode to nothing.  NULL only when memory runs out. */
char *tokenizer_decode(const tokenizer_t *self, const int32_t *ids, size_t n,
                       int strip_leading_space, size_t *len);

/* Runs the module's self-test on vocabularies built in memory (no files);
 * returns 0 on success, else the number of failed checks (each logged). */
int tokenizer_selftest(void);

#endif
