/* template.h - a run's chat template (tpltext.h) in token ids: how an
 * instruction-tuned model reads each document as its own reply.
 *
 * Tokens: each part of the template's text (before and after the document)
 * is split at its special tokens, written as the vocabulary spells them:
 * every span "<...>" of at most TEMPLATE_MAX_SPECIAL bytes without
 * whitespace or another '<' inside is a special token and must be one of
 * the vocabulary's control or user-defined tokens (tokenizer_special), or
 * the template is refused, naming it; the text between them is encoded as
 * plain text without BOS (as llama.cpp's tokenize with parse_special).  A
 * template therefore cannot hold such a span as literal text.
 *
 * The context: T = [BOS] (when the model adds one and the text before the
 * document does not already start with it) followed by the tokens before
 * the document.  The document itself is encoded exactly as without a
 * template, but without BOS, into D, so that its tokens, and hence the
 * rows' pos, are the same with and without a template.  The ids the
 * measurement sees are [last token of T] + D (just D when T is empty), and
 * the other h = |T| - 1 tokens of T are a fixed context before every
 * window and every continuation prefix (experiment.h).  Without a template
 * T = [BOS] (or nothing), h = 0: today's ids exactly.
 *
 * The text after the document is tokenized and checked like the text
 * before, and is part of the run's identity, but it changes no number:
 * every measured token precedes it, and a causal model's prediction of a
 * token never sees what follows.
 *
 * What it is not: the file format (tpltext.h) or a Jinja chat template
 * interpreter. */
#ifndef TS_TEMPLATE_H
#define TS_TEMPLATE_H

#include <stddef.h>
#include <stdint.h>

#include "tokenizer.h"

/* The longest special token spelling looked for, in bytes. */
#define TEMPLATE_MAX_SPECIAL 128

typedef struct template template_t;

/* Builds the template of text[0..len) (tpltext format) for tok.  Returns a
 * new template, or NULL with a message: the format (tpltext_split), or a
 * special token the vocabulary lacks ("template: '<|im_start|>' is not a
 * special token of this model's vocabulary"), or no memory.  Nothing
 * of tok or text is retained. */
template_t *template_new(const tokenizer_t *tok, const char *text, size_t len, char *err, size_t errlen);

/* NULL-safe; clears *self_p. */
void template_destroy(template_t **self_p);

/* The fixed context before every window (its h ids in *n; NULL when h is
 * 0).  A NULL template has none. */
const int32_t *template_prefix(const template_t *self, int *n);

/* The tokens after the document (their count). */
int template_n_after(const template_t *self);

/* The ids a document is measured as (see above); with self NULL, the text
 * encoded with the model's BOS, as without a template.  Returns the count
 * and a malloc'd array in *ids (never NULL on success), or -1 with a
 * message (tokenizer_encode's failures). */
long template_encode_doc(const template_t *self, const tokenizer_t *tok, const char *text, size_t len, int32_t **ids,
                         char *err, size_t errlen);

#endif
