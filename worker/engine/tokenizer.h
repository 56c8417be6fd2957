/* tokenizer.h - text <-> token ids for the models tokshift runs.
 *
 * What it is: the two kinds of BPE tokenizer of the models tokshift runs,
 * behind one type, tokenizer_t:
 * - SentencePiece-style BPE (Llama 1/2, TinyLlama): tokens with scores,
 *   merges chosen by the score of the merged piece, byte fallback to <0xNN>
 *   tokens, a dummy-prefix space; from GGUF (tokenizer.ggml.model =
 *   "llama"), with the ids llama.cpp's llm_tokenizer_spm gives; or from a
 *   tokenizer.json whose model is BPE with byte_fallback and a U+2581
 *   normaliser/Metaspace, where the merges' ranks order the merges (as in
 *   Hugging Face `tokenizers`).
 * - Byte-level BPE (GPT-2, GPT-NeoX/Pythia, Llama 3, Qwen2, SmolLM): every
 *   byte is a character of the GPT-2 byte alphabet, the text is split into
 *   words by the model's pre-tokenizer regexes (pretok.h), each word is
 *   merged by merge rank (bpe.h); from GGUF (tokenizer.ggml.model = "gpt2",
 *   tokenizer.ggml.pre naming the regexes) or from tokenizer.json.
 * What it is not: a normaliser beyond what those models do, a parser of
 * control tokens written in the text (text is plain text: "<s>" or
 * "<|endoftext|>" in the input are characters, never BOS/EOS; this is
 * llama.cpp's tokenize with parse_special = false), or a chat template.
 * Byte-level vocabularies' user-defined tokens (added tokens that are not
 * special, e.g. GPT-NeoX's runs of spaces) are matched in the text before
 * pre-tokenization, leftmost-longest, as `tokenizers` and llama.cpp do.
 *
 * Round trip: decode(encode(text)) with strip_leading_space gives text back
 * byte for byte, for any bytes (invalid UTF-8 and NUL included: byte tokens
 * for SentencePiece, the byte alphabet for byte-level BPE), except that for
 * SentencePiece a literal U+2581 ("\xe2\x96\x81") in the text decodes as a
 * space (SentencePiece uses that character for the space), and that
 * tokenizers that add a space prefix only to text without one (a
 * tokenizer.json's Metaspace pre-tokenizer, ByteLevel add_prefix_space)
 * drop the leading space of text that had one: decoding cannot tell it
 * from the prefix (`tokenizers`' Metaspace decoder drops it too; its
 * ByteLevel decoder keeps every prefix instead).
 *
 * Ownership: a tokenizer_t owns copies of everything it reads, so the gguf_t
 * or the JSON it was built from may be freed afterwards.  A tokenizer_t is
 * immutable after construction, so threads may share one. */
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
 * tokenizer (free with tokenizer_destroy) or NULL with the reason in err,
 * naming the file and the key (unsupported model: "unsupported tokenizer
 * model 'X'", unknown pre-tokenizer: "unknown pre-tokenizer 'X'", missing or
 * inconsistent arrays, merges that name no token, bad special ids).
 *
 * For "llama" it reads tokenizer.ggml.tokens, .scores and .token_type (all
 * required, of equal length), .bos_token_id / .eos_token_id /
 * .unknown_token_id (default 1 / 2 / 0; 0xFFFFFFFF means none; any other
 * value must be a valid id), .add_bos_token and .add_space_prefix (both
 * default true).
 *
 * For "gpt2" (byte-level BPE) it reads tokenizer.ggml.tokens and .merges
 * ("left right" strings, split at the first space after the first byte, as
 * llama.cpp does; rank = index), .token_type (optional, default all
 * NORMAL), .pre (which regexes split the text; absent means "default"):
 *   "gpt-2", "default", "gpt-neox", "olmo", "phi-2", "mpt": PRETOK_GPT2
 *     ("default" is GPT-2's regex here; llama.cpp's "default" is a
 *     different, degraded split that it warns about);
 *   "llama3", "llama-v3", "llama-bpe", "falcon3": PRETOK_LLAMA3, with
 *     ignore_merges and BOS added by default;
 *   "dbrx", "smaug-bpe": PRETOK_LLAMA3;
 *   "qwen2", "deepseek-r1-qwen", "megrez", "stablelm2": PRETOK_QWEN2;
 *   "smollm", "starcoder", "refact", "command-r", "codeshell", "exaone",
 *     "minerva-7b": PRETOK_DIGIT, then PRETOK_GPT2;
 *   anything else: error.
 * .bos_token_id / .eos_token_id / .unknown_token_id are optional (none when
 * absent); .add_bos_token overrides the default (false but for Llama 3). */
tokenizer_t *tokenizer_new_gguf(const gguf_t *g, char *err, size_t errlen);

/* The vocabulary of a SentencePiece-style tokenizer, as tokenizer_new_spm
 * takes it (tokenizer_new_gguf fills one from the file; tests build one in
 * memory).  Nothing here is retained: the tokenizer copies what it needs. */
typedef struct {
    int32_t n_vocab;            /* > 0 */
    const char *const *pieces;  /* n_vocab pieces, spaces written as U+2581 */
    const size_t *piece_lens;   /* their byte lengths; NULL: NUL-terminated */
    const float *scores;        /* n_vocab scores (higher merges first);
                                   may be NULL when n_merges > 0 */
    const int32_t *types;       /* TOKENIZER_TYPE_* (0..6); NULL: all NORMAL */
    int32_t bos, eos, unk;      /* ids, or -1 for none */
    int add_bos;                /* the model's convention: prepend BOS */
    int add_space_prefix;       /* prepend a space to non-empty text */
    int prefix_unless_space;    /* ...unless it starts with one (Metaspace) */
    /* Merges by rank instead of scores (a tokenizer.json's model.merges):
     * merge i joins merge_left[i] and merge_right[i] (pieces; lengths in the
     * _lens arrays, NULL: NUL-terminated) with rank i.  With n_merges > 0,
     * adjacent symbols merge when their pair is a merge, lowest rank first
     * (ties: leftmost), every piece formed is emitted (no resegmentation of
     * unused pieces), and scores are not used. */
    size_t n_merges;
    const char *const *merge_left;
    const char *const *merge_right;
    const size_t *merge_left_lens;
    const size_t *merge_right_lens;
} tokenizer_spm_vocab_t;

/* Builds a SentencePiece-style tokenizer from v.  Returns a new tokenizer or
 * NULL with the reason in err: no tokens, a NaN score, a token type outside
 * 0..6, a special id out of range, a byte that has neither a <0xNN> token
 * nor an unknown token to fall back to, or a merge whose sides or result
 * are not pieces ("merge 12 ('a b'): 'ab' is not a token").  Duplicate
 * pieces: the last id wins for encoding (as in llama.cpp); empty pieces are
 * never produced. */
tokenizer_t *tokenizer_new_spm(const tokenizer_spm_vocab_t *v, char *err,
                               size_t errlen);

/* The vocabulary of a byte-level BPE tokenizer, as tokenizer_new_bpe takes
 * it.  Nothing here is retained. */
typedef struct {
    int32_t n_vocab;            /* > 0 */
    /* NORMAL pieces are written in the byte alphabet (bpe.h: "\xc4\xa0the"
     * for " the"); USER_DEFINED and CONTROL pieces are plain text. */
    const char *const *pieces;
    const size_t *piece_lens;   /* NULL: NUL-terminated */
    const int32_t *types;       /* TOKENIZER_TYPE_* (0..6); NULL: all NORMAL */
    /* Merge i joins merge_left[i] and merge_right[i] with rank i. */
    size_t n_merges;
    const char *const *merge_left;
    const char *const *merge_right;
    const size_t *merge_left_lens;  /* NULL: NUL-terminated */
    const size_t *merge_right_lens;
    /* Pre-tokenizer regexes, applied in order (pretok.h); none: each text
     * between user-defined tokens is one word. */
    const char *const *patterns;
    size_t n_patterns;
    int ignore_merges;          /* a word that is a token is that token */
    int add_prefix_space;       /* a space before text that has none */
    int32_t bos, eos, unk;      /* ids, or -1 for none */
    int add_bos;
} tokenizer_bpe_vocab_t;

/* Builds a byte-level BPE tokenizer from v.  Returns a new tokenizer or NULL
 * with the reason in err: no tokens, a token type outside 0..6, a special id
 * out of range, a merge whose sides or result are not tokens, a byte whose
 * character is no token (and no unknown token to fall back to), or a
 * pattern that does not compile.  A repeated merge keeps its first rank;
 * duplicate pieces: the last id wins. */
tokenizer_t *tokenizer_new_bpe(const tokenizer_bpe_vocab_t *v, char *err,
                               size_t errlen);

/* What a caller that knows more than tokenizer.json (a Hugging Face
 * directory's tokenizer_config.json) can say.  Zero-initialised fields keep
 * what tokenizer.json gives. */
typedef struct {
    const char *bos_token; /* the BOS token's text; "" for none */
    const char *eos_token; /* the EOS token's text; "" for none */
    int add_bos;           /* TOKENIZER_BOS_KEEP, _ADD or _NO */
} tokenizer_json_opts_t;

enum { TOKENIZER_BOS_KEEP = 0, TOKENIZER_BOS_ADD = 1, TOKENIZER_BOS_NO = 2 };

/* Builds the tokenizer of a Hugging Face tokenizer.json file (read whole;
 * defaults as tokenizer_new_json_buffer with opts NULL).  Returns a new
 * tokenizer or NULL with the reason in err, which names the file and the
 * field ("tok.json: model.merges[17]: 'xy' is not in model.vocab"). */
tokenizer_t *tokenizer_new_json(const char *path, char *err, size_t errlen);

/* The same from len bytes of JSON in memory (not retained); name is used in
 * messages; opts may be NULL.
 *
 * Accepted (anything else is an error naming the field, never a guess):
 * - model: type "BPE"; vocab (object: token -> id); merges ("a b" strings
 *   with exactly one space, or ["a", "b"] pairs; both sides and their
 *   concatenation must be in vocab); unk_token (null or a vocab token);
 *   byte_fallback, fuse_unk, ignore_merges (booleans; ignore_merges only
 *   byte-level); dropout null; continuing_subword_prefix and
 *   end_of_word_suffix null or "".
 * - added_tokens: [{id, content, special, ...}]: special -> CONTROL (never
 *   matched in text), else USER_DEFINED (single_word, lstrip and rstrip
 *   must then be false).  An id already in vocab must hold
 *   the same text; ids may leave gaps (unused ids decode to nothing) but
 *   not run past 4 x the number of tokens + 1024.
 * - Byte-level (a ByteLevel pre-tokenizer anywhere): pre_tokenizer ByteLevel
 *   (use_regex -> PRETOK_GPT2; add_prefix_space only as the first step),
 *   Split (pattern Regex, compiled as is by pretok.h, or String; behavior
 *   "Isolated"; invert false), Digits, or a Sequence of those (each regex
 *   step splits the pieces of the one before); normalizer null or NFC
 *   (NFC is not applied, as in llama.cpp: text not already in NFC may
 *   tokenize differently from `tokenizers`).
 * - SentencePiece-style (model.byte_fallback, or a Metaspace pre-tokenizer,
 *   or a normaliser that writes spaces as U+2581): normalizer null,
 *   Prepend("\u2581"), Replace(" " -> "\u2581") or a Sequence of those;
 *   pre_tokenizer null or Metaspace (replacement U+2581, split false;
 *   prepend_scheme "always"/"first": dummy prefix unless the text starts
 *   with a space, "never": none).  Byte tokens <0xNN> get type BYTE,
 *   unk_token UNKNOWN.
 * - post_processor: null, ByteLevel, TemplateProcessing whose "single" is
 *   [SpecialToken?, Sequence A] (a SpecialToken first: add_bos with that
 *   id), or a Sequence of those.
 * - decoder: null or ByteLevel, Metaspace, Replace, ByteFallback, Fuse,
 *   Strip, or a Sequence of those (decoding follows from the kind).
 * BOS: the post_processor's token; else a special added token "<s>",
 * "<|begin_of_text|>" or "<bos>"; else the EOS when it is
 * "<|endoftext|>" (GPT-2, GPT-NeoX, Qwen2 use it for both).  EOS: a special
 * added token "</s>", "<|endoftext|>", "<|end_of_text|>" or "<eos>" (the
 * first of these found).  add_bos: whether the post_processor adds one
 * (then there must be a BOS).  opts override all three; an opts token that
 * is not in the vocabulary is an error. */
tokenizer_t *tokenizer_new_json_buffer(const char *json, size_t len,
                                       const char *name,
                                       const tokenizer_json_opts_t *opts,
                                       char *err, size_t errlen);

/* NULL-safe; clears *self_p. */
void tokenizer_destroy(tokenizer_t **self_p);

int32_t tokenizer_n_vocab(const tokenizer_t *self);
int32_t tokenizer_bos(const tokenizer_t *self); /* -1 when none */
int32_t tokenizer_eos(const tokenizer_t *self); /* -1 when none */
/* Whether the model's convention is to prepend BOS (add_bos_token). */
int tokenizer_adds_bos(const tokenizer_t *self);
/* Whether encoding puts a space before the text (SentencePiece's dummy
 * prefix, ByteLevel's add_prefix_space): then the first token's leading
 * space is not part of the text, and decoders drop it. */
int tokenizer_adds_space_prefix(const tokenizer_t *self);

/* Encodes len bytes of text (any bytes: invalid UTF-8 falls back to byte
 * tokens, or to the byte alphabet, never fails).  With add_bos, prepends BOS
 * when the model has one.  Empty text gives no tokens (only BOS, if asked).
 * On success returns the count and sets *ids to a malloc'd array the caller
 * frees (possibly with nothing in it, but never NULL); returns -1 only when
 * memory runs out or the regex engine gives up on a pathological text
 * (message in err, *ids set to NULL).  O(n log n) in len. */
long tokenizer_encode(const tokenizer_t *self, const char *text, size_t len,
                      int add_bos, int32_t **ids, char *err, size_t errlen);

/* The id of the control or user-defined token whose piece is exactly
 * s[0..n) (e.g. "<|im_start|>", "</s>"), or -1 when the vocabulary has no
 * such special token (a normal token spelled so does not count).  For
 * templates (template.h), which write special tokens in the text; encoding
 * never does this.  O(n). */
int32_t tokenizer_special(const tokenizer_t *self, const char *s, size_t n);

/* The stored piece of id (e.g. "\xe2\x96\x81the", "<0x0A>"), NUL-terminated,
 * owned by the tokenizer; NULL when id is out of range. */
const char *tokenizer_piece(const tokenizer_t *self, int32_t id);

/* Writes the bytes that id decodes to into out (capacity cap), returning how
 * many bytes were written, or -1 if cap is too small (nothing is written
 * then).  tokenizer_max_piece_bytes() bytes always suffice.  SentencePiece:
 * normal and user-defined pieces decode to their text with U+2581 -> ' ',
 * byte tokens <0xNN> to that byte.  Byte-level: normal pieces through the
 * byte alphabet (a piece with a character outside it decodes to its own
 * UTF-8, as `tokenizers` does), user-defined pieces to their text.  Both:
 * control, unknown (UNK included, as llama.cpp's token_to_piece does without
 * special) and unused tokens, and ids out of range, to nothing.  No leading
 * space is removed here. */
long tokenizer_token_bytes(const tokenizer_t *self, int32_t id, char *out,
                           size_t cap);
size_t tokenizer_max_piece_bytes(const tokenizer_t *self);

/* Decodes ids into a malloc'd, NUL-terminated string (caller frees), its
 * length in *len (len may be NULL; the text may hold NUL bytes).  With
 * strip_leading_space, and when the model adds a space prefix
 * (tokenizer_adds_space_prefix), one leading space of the decoded text is
 * dropped (as SentencePiece's decoder does; control tokens such as BOS
 * before it decode to nothing).  Ids out of range decode to nothing.  NULL
 * only when memory runs out. */
char *tokenizer_decode(const tokenizer_t *self, const int32_t *ids, size_t n,
                       int strip_leading_space, size_t *len);

/* Runs the module's self-test on vocabularies built in memory (no files);
 * returns 0 on success, else the number of failed checks (each logged). */
int tokenizer_selftest(void);

#endif
