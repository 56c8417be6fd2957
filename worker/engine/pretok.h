/* pretok.h - splitting text into words before BPE (pre-tokenization).
 *
 * What it is: a sequence of regular expressions (PCRE2, with Unicode
 * properties), each applied to every piece that the previous one produced,
 * keeping both the matches and the text between them as pieces (the
 * "Isolated" behaviour of the Hugging Face `tokenizers` Split
 * pre-tokenizer, and what llama.cpp's unicode_regex_split does), plus the
 * patterns of the models tokshift runs.  Any bytes can be split: the text is
 * first cut into runs of well-formed UTF-8 and runs of bytes that are not
 * (stray continuation bytes, truncated or overlong sequences, surrogates,
 * 0xF5..0xFF); the regexes see each well-formed run as a whole text of its
 * own, and each run of invalid bytes is a piece of its own.  What it is not:
 * a normaliser, or a matcher of special tokens (tokenizer.c cuts those out
 * before it calls this).
 *
 * Regex dialect: PCRE2 with PCRE2_UTF | PCRE2_UCP (\s, \d, \w and POSIX
 * classes are Unicode-aware) and PCRE2_MULTILINE (^ and $ match at line
 * breaks, as in the Oniguruma/Ruby syntax that `tokenizers` compiles its
 * patterns with).  The patterns of the models below are written the same
 * in both.  Known difference: PCRE2 counts U+180E MONGOLIAN VOWEL SEPARATOR
 * as \s; Oniguruma (Unicode's White_Space) does not.
 *
 * A pretok_t is immutable once built, so threads may share one. */
#ifndef TS_PRETOK_H
#define TS_PRETOK_H

#include <stddef.h>
#include <stdint.h>

/* The pre-tokenizer regexes of the models tokshift runs, exactly as their
 * tokenizer.json files write them. */
/* GPT-2, GPT-NeoX/Pythia, OLMo: the `tokenizers` ByteLevel pre-tokenizer. */
extern const char PRETOK_GPT2[];
/* Llama 3: digits in groups of one to three. */
extern const char PRETOK_LLAMA3[];
/* Qwen2: as Llama 3, but every digit on its own. */
extern const char PRETOK_QWEN2[];
/* Every digit on its own (`tokenizers` Digits(individual_digits=true)). */
extern const char PRETOK_DIGIT[];
/* Runs of digits (`tokenizers` Digits(individual_digits=false)). */
extern const char PRETOK_DIGITS[];

typedef struct pretok pretok_t;

/* A piece of the text: bytes [off, off + len), len > 0. */
typedef struct {
    size_t off, len;
} pretok_span_t;

/* Compiles n patterns (NUL-terminated UTF-8, PCRE2 syntax; n may be 0: the
 * text is then cut only at invalid UTF-8).  Returns a new pre-tokenizer
 * (free with pretok_destroy), or NULL with the reason in err: a pattern that
 * does not compile ("pattern 1 does not compile at offset 7: ..."), or no
 * memory.  The patterns are copied. */
pretok_t *pretok_new(const char *const *patterns, size_t n, char *err,
                     size_t errlen);

/* NULL-safe; clears *self_p. */
void pretok_destroy(pretok_t **self_p);

/* Number of patterns. */
size_t pretok_n_patterns(const pretok_t *self);

/* Splits text[0..len) (any bytes) into pieces that cover it in order, with
 * no gaps and no empty pieces.  *spans and *cap are a growable array the
 * caller owns (start with NULL and 0; free *spans when done; it is reused
 * across calls).  Returns the number of pieces (0 for empty text), or -1
 * with the reason in err when memory runs out or the regex engine gives up
 * (its match, heap or depth limits; then nothing is usable). */
long pretok_split(const pretok_t *self, const char *text, size_t len,
                  pretok_span_t **spans, size_t *cap, char *err,
                  size_t errlen);

/* Length of the UTF-8 character at s (avail > 0 bytes left): 2..4 for a
 * well-formed multi-byte sequence, 1 for ASCII, 0 when s does not start a
 * well-formed character (invalid or truncated sequence).  Well-formed means
 * what PCRE2 accepts: no overlong forms, no surrogates, nothing above
 * U+10FFFF. */
size_t pretok_utf8_len(const unsigned char *s, size_t avail);

/* Runs the module's self-test; returns 0 on success, else the number of
 * failed checks (each logged). */
int pretok_selftest(void);

#endif
