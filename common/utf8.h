/* utf8.h - the project's one UTF-8 validator.
 *
 * What it is: a check that bytes are well-formed UTF-8 as RFC 3629 defines it
 * (no overlong forms, no surrogates, nothing above U+10FFFF), which is what
 * PostgreSQL's text type, JSON and protobuf strings accept.  NUL is valid
 * UTF-8; callers that cannot store it check for it themselves.  What it is
 * not: a decoder (the tokenizers split text into characters their own way,
 * and must accept invalid bytes). */
#ifndef TS_UTF8_H
#define TS_UTF8_H

#include <stddef.h>

/* Returns -1 when s[0..len) is valid UTF-8, else the offset of the first
 * byte of the first invalid or truncated sequence. */
long utf8_invalid_at(const void *s, size_t len);

#endif
