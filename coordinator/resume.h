/* resume.h - what a coordinator checks before it continues a registered run.
 *
 * What it is: the differences between what a run was registered with and
 * what this start was given, named for a person: JSON objects (settings,
 * the corpus description) compared key by key, and the corpus files'
 * fingerprint (path, size, mtime and a hash of each file's first and last
 * 4 KiB) compared file by file.  Size and mtime change with every ordinary
 * write (they are what make and rsync trust); the hash of the ends catches
 * a file replaced by another of the same size whose mtime was preserved
 * (cp -p, rsync -t of a regenerated shard), at the cost of two small reads
 * per file, never a read of the whole corpus.
 *
 * What it is not: a policy (the caller decides what refuses a resume) or a
 * content hash of whole files. */
#ifndef TS_RESUME_H
#define TS_RESUME_H

#include <stddef.h>

#include "corpus.h"

/* Writes into out the keys whose values differ between the JSON objects
 * registered and given, as "key: VALUE (registered) vs VALUE (given)"
 * joined by "; " (a key only one side has shows "(none)" on the other), in
 * key order.  Returns the number of differing keys (0: equal), or -1 when a
 * text is not a JSON object. */
int resume_json_diff(const char *registered, const char *given, char *out, size_t outlen);

/* The fingerprint of the corpus's files as JSON text (malloc'd; caller
 * frees), or NULL with a message (a file that cannot be read). */
char *resume_fingerprint(const corpus_t *corpus, char *err, size_t errlen);

/* Writes into out what differs between two fingerprints, file by file
 * ("added PATH", "removed PATH", "PATH changed: size 10 -> 12, mtime ...,
 * first/last bytes"), joined by "; ".  Returns the number of differences,
 * or -1 when a text is not a fingerprint. */
int resume_fingerprint_diff(const char *registered, const char *now, char *out, size_t outlen);

#endif
