/* corpus.h - reading documents out of corpus files.
 *
 * What it is: a stream of documents from a list of paths and glob patterns
 * (expanded and sorted, so the order is reproducible): JSONL files (one JSON
 * object per line; the text in a configurable field, an optional id field,
 * every other field kept as metadata) and plain text files (one document per
 * file), each optionally compressed with gzip (.gz) or zstd (.zst), decided
 * by the file's magic bytes rather than its name.
 *
 * What it is not: a judge of documents' worth.  A document that cannot be
 * used (a malformed JSON line, a missing or non-string text field, invalid
 * UTF-8, a NUL byte, a truncated compressed stream) still comes out, with
 * `error` set to a precise reason and `source` saying where, so that the run
 * records it and goes on.  Only failures that make the rest of a file
 * unreadable end that file (reported as one errored document for the rest).
 * Nor a de-duplicator: two documents with the same ext_id both come out (the
 * database layer decides).
 *
 * Formats: a file is JSONL when its name, less a .gz/.zst/.zstd suffix, ends
 * in .jsonl, .json or .ndjson (case-insensitive), else a text file.  JSONL
 * lines: a trailing '\r' is dropped, a UTF-8 BOM before the first line is
 * skipped, blank lines are skipped but counted; line numbers start at 1.
 */
#ifndef TS_CORPUS_H
#define TS_CORPUS_H

#include <stddef.h>
#include <stdint.h>

/* Options; a NULL opts, a NULL field or a 0 means the default. */
typedef struct {
    const char *text_field; /* JSONL: the text's key (default "text") */
    const char *id_field;   /* JSONL: the id's key (default "id"; absent in a
                               line -> source; "" -> no id field at all) */
    size_t max_doc_bytes;   /* larger documents get an error (default 256 MiB):
                               for JSONL the raw line's bytes, escapes and other
                               fields included; for text files the decompressed
                               file.  It also bounds the memory a line takes. */
} corpus_opts_t;

/* One document.  Every pointer is malloc'd and owned by the document; all
 * but text and error are always set (also for an errored document). */
typedef struct {
    char *ext_id;   /* the document's id in the corpus: the id field if present
                       (non-empty strings as-is, integers as written, of any
                       size; other values are an error), else source */
    char *source;   /* "path:line" for JSONL, "path" for text files */
    char *text;     /* NUL-terminated valid UTF-8 without NUL bytes, or NULL when error */
    size_t text_len;
    char *metadata; /* JSON object text of the other fields, in their order,
                       with their bytes as written (numbers, escapes) but no
                       whitespace outside strings ("{}" when none).  Never holds
                       \u0000 (PostgreSQL jsonb refuses it: such a line is an
                       error) */
    char *error;    /* NULL, or why this document cannot be used; it starts
                       with source ("path:line: ..." or "path: ...") */
} corpus_doc_t;

typedef struct corpus corpus_t;

/* Expands the patterns and opens the stream: each pattern is a glob(3)
 * (its matches sorted bytewise, whatever the locale; a pattern matching
 * nothing is an error naming it, unless it names an existing path literally,
 * like "a[1].txt"); a directory means every regular file directly in it,
 * hidden names skipped (as dir/ * in a shell), sorted.  Files come in the
 * patterns' order; a file met twice (same device and inode) is kept at its
 * first place.  File names must be valid UTF-8 (they become sources).
 * Returns NULL with a message on failure.  Free with corpus_destroy. */
corpus_t *corpus_open(const char *const *patterns, size_t n_patterns, const corpus_opts_t *opts, char *err,
                      size_t errlen);

/* NULL-safe; clears *self_p. */
void corpus_destroy(corpus_t **self_p);

/* Reads the next document into *doc, which must be zeroed or hold an earlier
 * document (released first); the caller releases the last one with
 * corpus_doc_clear.  Returns 1 with a document (possibly with error set: a
 * file that cannot be opened or read, or corrupt compressed data, gives one
 * errored document and the stream goes on with the next file), 0 at the end
 * of the corpus (and again after), -1 with a message when the stream cannot
 * go on (out of memory); *doc is zeroed unless 1. */
int corpus_next(corpus_t *self, corpus_doc_t *doc, char *err, size_t errlen);

/* Frees what doc owns and zeroes it; NULL-safe. */
void corpus_doc_clear(corpus_doc_t *doc);

/* Number of files the patterns expanded to. */
size_t corpus_n_files(const corpus_t *self);

/* The i-th file's path, in reading order (owned by the corpus); NULL past
 * the end. */
const char *corpus_file(const corpus_t *self, size_t i);

/* Checks the internals (UTF-8 table, metadata scanner, format by name);
 * 0 when all pass, else -1 after logging what failed. */
int corpus_selftest(void);

#endif
