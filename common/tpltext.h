/* tpltext.h - the template file of a run (`--template FILE`): the text an
 * instruction-tuned model reads before and after each document, so that it
 * sees the document as its own reply in its chat format.
 *
 * The format: the file's bytes, taken as they are (no trimming: a newline
 * is part of the text), must be valid UTF-8 without NUL and hold the
 * marker TPLTEXT_MARKER ("{document}") exactly once; what precedes it is
 * the text before the document, what follows it the text after.  Special
 * tokens are written as the model's vocabulary spells them, e.g.
 * "<|im_start|>assistant\n{document}<|im_end|>\n"; the engine's template.h
 * says how they are recognised.
 *
 * What it is: reading and checking that format, for the coordinator (which
 * stores the text in the run's settings without a model) and the
 * commands.  What it is not: tokenization (worker/engine/template.h). */
#ifndef TS_TPLTEXT_H
#define TS_TPLTEXT_H

#include <stddef.h>

#define TPLTEXT_MARKER "{document}"
/* A template is a few lines of chat format; anything larger is a mistake
 * (the wrong file), and its text travels in every WELCOME. */
#define TPLTEXT_MAX_BYTES 65536

/* Splits text[0..len) at its one marker: *before_len bytes of text before
 * it, the text after from text + *after_off to the end.  Returns 0, or -1
 * with a message (no marker, more than one, invalid UTF-8 or a NUL byte,
 * over TPLTEXT_MAX_BYTES). */
int tpltext_split(const char *text, size_t len, size_t *before_len, size_t *after_off, char *err, size_t errlen);

/* Reads the template file at path whole and checks it (tpltext_split).
 * Returns the NUL-terminated text (malloc'd; the caller frees it), or NULL
 * with a message naming the file. */
char *tpltext_read(const char *path, char *err, size_t errlen);

#endif
