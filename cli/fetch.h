/* fetch.h - `tokshift fetch`: a model from the Hugging Face Hub, or from an
 * offline mirror folder, into a local folder, every file checked.
 *
 *   tokshift fetch REPO[:FILE] [--revision R] [--out DIR]
 *
 * What it is: REPO:FILE fetches one file (a GGUF); REPO alone fetches what
 * tokshift reads of a Hugging Face directory (config.json, tokenizer.json,
 * tokenizer_config.json when the repository has one, and the safetensors
 * weights: model.safetensors, or the shards that
 * model.safetensors.index.json names).  The file list, the commit, every
 * file's size, every LFS file's SHA-256 and every other file's git blob id
 * come from the Hub's API (GET /api/models/REPO/revision/R?blobs=true); the
 * files from
 * GET /REPO/resolve/COMMIT/FILE, with libcurl, into FILE.part, resumed with
 * a Range request after an interruption, hashed as they arrive and renamed
 * into place only when size and hash match; a file already there that
 * matches is kept.  DIR/SHA256SUMS (the format of
 * `sha256sum -c`) records every file fetched, so a fetched folder serves as
 * an offline mirror.  Environment: HF_ENDPOINT (default
 * https://huggingface.co), HF_TOKEN (sent as "Authorization: Bearer", never
 * to another host after a redirect), HF_HUB_OFFLINE=1 (no network), and
 * TOKSHIFT_MODEL_MIRROR (a folder holding REPO/ with its SHA256SUMS, as
 * `tokshift fetch --out MIRROR/REPO` leaves it: used instead of the Hub).
 * What it is not: a cache manager (no symlinked snapshots, no eviction), or
 * an uploader. */
#ifndef TS_FETCH_H
#define TS_FETCH_H

/* The `tokshift fetch` command; argv[0] is the program (getopt's view).
 * Prints the fetched model's path (the file, or the folder) on stdout.
 * Returns the exit status: 0, 1 on an error (message on stderr), 2 on bad
 * usage. */
int fetch_main(int argc, char **argv);

#endif
