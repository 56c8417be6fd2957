#!/usr/bin/env bash
# test_cli.sh - the `tokshift` command as a user runs it: the shared model's
# known greedy output byte for byte, the exact output forms the other tests
# and later work rely on, --help everywhere, and clear errors with non-zero
# exits for bad input.  Usage: test_cli.sh TOKSHIFT_BIN
set -u
BIN=$1
if [ -z "${TOKSHIFT_TESTDATA:-}" ]; then echo "skip: TOKSHIFT_TESTDATA is not set"; exit 77; fi
M=$TOKSHIFT_TESTDATA/models/stories260K.gguf
GREEDY=$TOKSHIFT_TESTDATA/models/stories260K.greedy200.txt
for f in "$M" "$GREEDY"; do [ -f "$f" ] || { echo "FAIL: $f is missing"; exit 1; }; done
TMP=$(mktemp -d); trap 'rm -rf "$TMP"' EXIT
fails=0
fail() { echo "FAIL: $*"; fails=$((fails + 1)); }

# 1. Greedy generation reproduces the reference implementation's text.
"$BIN" generate --model "$M" -n 200 --temperature 0 > "$TMP/greedy" 2> "$TMP/err" || fail "generate exited $?: $(cat "$TMP/err")"
cmp -s "$TMP/greedy" "$GREEDY" || fail "greedy output differs from stories260K.greedy200.txt: $(head -c 120 "$TMP/greedy")"

# Sampling is reproducible from its seed and differs across seeds.
a=$("$BIN" generate --model "$M" -n 40 --seed 7 --prompt "Once upon a time"); b=$("$BIN" generate --model "$M" -n 40 --seed 7 --prompt "Once upon a time")
c=$("$BIN" generate --model "$M" -n 40 --seed 8 --prompt "Once upon a time")
[ "$a" = "$b" ] || fail "same seed gave different text"
[ "$a" != "$c" ] || fail "different seeds gave the same 40 tokens"
[ -n "$("$BIN" generate --model "$M" -n 20 --top-k 5 --top-p 0.9 --temperature 0.8)" ] || fail "top-k/top-p generation printed nothing"

# 2. tokenize: ids on one line; --bos prepends 1.
[ "$(printf 'Once upon a time' | "$BIN" tokenize --model "$M")" = "403 407 261 378" ] || fail "tokenize 'Once upon a time'"
[ "$(printf 'Once upon a time' | "$BIN" tokenize --model "$M" --bos)" = "1 403 407 261 378" ] || fail "tokenize --bos"
[ "$(printf '' | "$BIN" tokenize --model "$M")" = "" ] || fail "empty text has no tokens"

# 3. score: header, one row per token after BOS, pos from 1, invalid UTF-8 ok.
printf 'The dog ran.\xff\xfe and \xc3 then' > "$TMP/bad.txt"
"$BIN" score --model "$M" < "$TMP/bad.txt" > "$TMP/score.tsv" || fail "score of invalid UTF-8 exited $?"
n_ids=$("$BIN" tokenize --model "$M" --bos < "$TMP/bad.txt" | wc -w)
head -1 "$TMP/score.tsv" | grep -qx $'pos\ttoken_id\tpiece\tlogprob\tentropy\trank\ttop1_logprob\tvarentropy\tcontext_len' || fail "score header"
[ "$(($(wc -l < "$TMP/score.tsv") - 1))" -eq "$((n_ids - 1))" ] || fail "score rows != tokens - 1"
awk -F'\t' 'NR > 1 && ($1 != NR - 1 || $9 != NR - 1 || $4 > 0 || $5 < 0 || $6 < 1) { bad = 1 } END { exit bad }' "$TMP/score.tsv" || fail "score rows malformed"
grep -q '<0xFF>' "$TMP/score.tsv" || fail "byte-fallback piece <0xFF> not shown"
"$BIN" score --model "$M" --format json < "$TMP/bad.txt" | node -e 'const r = JSON.parse(require("fs").readFileSync(0, "utf8")); if (!r.length || r[0].pos !== 1) process.exit(1)' || fail "score --format json is not a JSON array of rows"
# A long text scored in windows: every token once.
for i in $(seq 30); do printf 'Lily and Tom played with a big red ball in the park. '; done > "$TMP/long.txt"
n_ids=$("$BIN" tokenize --model "$M" --bos < "$TMP/long.txt" | wc -w)
"$BIN" score --model "$M" --window 64 --stride 16 < "$TMP/long.txt" > "$TMP/long.tsv" || fail "windowed score"
[ "$(awk -F'\t' 'NR > 1 { print $1 }' "$TMP/long.tsv" | sort -n | uniq | wc -l)" -eq "$((n_ids - 1))" ] || fail "windowed score must cover every token once"
awk -F'\t' 'NR > 1 && $1 >= 64 && $9 < 48 { bad = 1 } END { exit bad }' "$TMP/long.tsv" || fail "context_len < W - S after the first window"

# 3b. experiment: its human rows are `score`'s (same window and stride), every
# cut has K samples and one human continuation of C rows, and every sample
# regenerates token for token with `generate --prompt-ids PREFIX --seed S`
# (seeds above 2^63 included; --first-window for a cut <= W - C, whose
# prefix is window 0's) although it was decoded in a batch with the other
# cuts' rows.
printf 'Once upon a time, there was a little dog named Max. Max liked to run in the big green park with his friend, a small cat called Lily. One day, the sun was hot and Max was thirsty. He saw a pond and ran to drink. Lily said, "Be careful, Max!"' > "$TMP/doc.txt"
"$BIN" experiment --model "$M" --window 48 --stride 16 --cut-every 11 --prefix-lengths 5 --cont-len 6 --samples 3 \
    --seed 12345 --doc-id 9 --format json < "$TMP/doc.txt" > "$TMP/exp.json" 2> "$TMP/err" || fail "experiment exited $?: $(cat "$TMP/err")"
"$BIN" score --model "$M" --window 48 --stride 16 --format json < "$TMP/doc.txt" > "$TMP/score.json" || fail "score for experiment"
"$BIN" tokenize --model "$M" --bos < "$TMP/doc.txt" > "$TMP/doc.ids"
"$BIN" experiment --model "$M" --window 48 --cut-every 11 --cont-len 6 --samples 3 < "$TMP/doc.txt" | head -1 |
    grep -qx $'kind\tcut\tsample\tpos\ttoken_id\tpiece\tlogprob\tentropy\trank\ttop1_logprob\tvarentropy\tcontext_len\tseed' || fail "experiment header"
BIN="$BIN" M="$M" TMP="$TMP" node -e '
const fs = require("fs"), { execFileSync } = require("child_process");
const { BIN, M, TMP } = process.env;
const rows = JSON.parse(fs.readFileSync(TMP + "/exp.json", "utf8")), score = JSON.parse(fs.readFileSync(TMP + "/score.json", "utf8"));
const ids = fs.readFileSync(TMP + "/doc.ids", "utf8").trim().split(" ");
const W = 48, C = 6, K = 3, bad = [];
const human = rows.filter(r => r.kind === "human");
const keys = ["pos", "token_id", "piece", "logprob", "entropy", "rank", "top1_logprob", "varentropy", "context_len"];
if (human.length !== score.length) bad.push(`human rows ${human.length} vs score ${score.length}`);
human.forEach((r, i) => keys.forEach(k => { if (r[k] !== score[i][k]) bad.push(`human ${i} ${k}: ${r[k]} vs ${score[i][k]}`); }));
const cuts = [5]; for (let c = 11; c + C <= ids.length; c += 11) cuts.push(c);
let top = 0, n = 0, reused = 0;
for (const cut of cuts) {
  const hc = rows.filter(r => r.kind === "human_cont" && r.cut === cut);
  if (hc.length !== C || hc.some((r, i) => r.pos !== cut + i || String(r.token_id) !== ids[cut + i])) bad.push(`cut ${cut}: human continuation`);
  for (let k = 0; k < K; k++) {
    const s = rows.filter(r => r.kind === "sample" && r.cut === cut && r.sample === k);
    const P = Math.min(cut, W - C);
    if (s.length !== C || s.some(r => r.seed !== s[0].seed || r.context_len !== P + (r.pos - cut))) { bad.push(`cut ${cut} sample ${k}: rows`); continue; }
    top += BigInt(s[0].seed) >= (1n << 63n); n++;
    // A cut <= W - C continues window 0 (experiment.h): --first-window.
    const w0 = cut <= W - C ? ["--first-window", String(Math.min(W, ids.length))] : [];
    reused += w0.length > 0;
    const regen = execFileSync(BIN, ["generate", "--model", M, "--prompt-ids", ids.slice(cut - P, cut).join(" "), "--seed", s[0].seed,
                                     "-n", String(C), "--temperature", "1", "--print-ids", ...w0], { encoding: "utf8" }).trim();
    if (regen !== s.map(r => r.token_id).join(" ")) bad.push(`cut ${cut} sample ${k} seed ${s[0].seed}: regenerated ${regen}, stored ${s.map(r => r.token_id).join(" ")}`);
  }
}
if (rows.length !== human.length + cuts.length * (K + 1) * C) bad.push(`${rows.length} rows for ${cuts.length} cuts`);
if (!(top > 0 && top < n)) bad.push(`seeds with the top bit set: ${top} of ${n}`);
if (!(reused > 0 && reused < n)) bad.push(`samples of cuts <= W - C: ${reused} of ${n}`);
if (bad.length) { console.log(bad.slice(0, 5).join("\n")); process.exit(1); }
' || fail "experiment rows"

# 4. --help everywhere, exit 0; bad usage exits 2; bad input exits 1 with a message.
for c in tokenize generate score experiment report; do "$BIN" $c --help | grep -q "usage: tokshift $c" || fail "$c --help"; done
"$BIN" report >/dev/null 2>&1; [ $? -eq 2 ] || fail "report without RUN does not exit 2"
"$BIN" --help | grep -q 'usage: tokshift' || fail "--help"
"$BIN" frobnicate 2> /dev/null; [ $? -eq 2 ] || fail "unknown command must exit 2"
"$BIN" score --model "$M" --format xml < /dev/null 2> /dev/null; [ $? -eq 2 ] || fail "bad --format must exit 2"
"$BIN" score --model "$TMP/nope.gguf" < /dev/null 2> "$TMP/err"; [ $? -eq 1 ] && grep -q 'nope.gguf' "$TMP/err" || fail "missing model: $(cat "$TMP/err")"
head -c 100000 "$M" > "$TMP/trunc.gguf"
"$BIN" score --model "$TMP/trunc.gguf" < /dev/null 2> "$TMP/err"; [ $? -eq 1 ] && grep -q 'trunc.gguf' "$TMP/err" || fail "truncated model: $(cat "$TMP/err")"
printf 'GGUF\x03\x00\x00\x00' > "$TMP/tiny.gguf"
"$BIN" tokenize --model "$TMP/tiny.gguf" < /dev/null 2> "$TMP/err"; [ $? -eq 1 ] && grep -q 'too short' "$TMP/err" || fail "tiny model: $(cat "$TMP/err")"

# 5. Seeds as the database stores them (issue 9): a negative bigint is the
# same 64 bits as its unsigned value.
a=$("$BIN" generate --model "$M" -n 30 --seed -4904984427566224562 --print-ids)
b=$("$BIN" generate --model "$M" -n 30 --seed 13541759646143327054 --print-ids)
[ -n "$a" ] && [ "$a" = "$b" ] || fail "--seed -4904984427566224562 and 13541759646143327054 must be the same seed: '$a' vs '$b'"
[ "$("$BIN" generate --model "$M" -n 5 --seed -1 --print-ids)" = "$("$BIN" generate --model "$M" -n 5 --seed 18446744073709551615 --print-ids)" ] || fail "--seed -1 is 2^64-1"
for s in 18446744073709551616 -9223372036854775809 1x - ''; do
  "$BIN" generate --model "$M" -n 1 --seed "$s" > /dev/null 2>&1; [ $? -eq 2 ] || fail "--seed '$s' must be a usage error"
done

# 6. Papercuts: generate needs -n; unknown options point at --help;
# score's default window is a run's (512) and --strip drops the newline;
# tokenize reads a vocabulary-only GGUF; the worker refuses an endpoint
# without a transport and a non-number.
"$BIN" generate --model "$M" > /dev/null 2> "$TMP/err"; [ $? -eq 2 ] && grep -q -- '-n N' "$TMP/err" || fail "generate without -n: $(cat "$TMP/err")"
for c in tokenize generate score regenerate status report keygen; do
  "$BIN" $c --no-such-option > /dev/null 2> "$TMP/err"; [ $? -eq 2 ] && grep -q "tokshift $c --help" "$TMP/err" || fail "$c with an unknown option: $(cat "$TMP/err")"
done
"$BIN" regenerate > /dev/null 2>&1; [ $? -eq 2 ] || fail "regenerate without RUN DOC must exit 2"
"$BIN" regenerate --help | grep -q 'usage: tokshift regenerate' || fail "regenerate --help"
"$BIN" score --help | grep -q 'Hugging Face' || fail "score --help does not mention Hugging Face directories"
for i in $(seq 60); do printf 'Lily and Tom played with a big red ball in the park. '; done > "$TMP/longer.txt"
"$BIN" score --model "$M" < "$TMP/longer.txt" > "$TMP/longer.tsv" || fail "score of a long text"
[ "$(awk -F'\t' 'NR > 1 && $9 > m { m = $9 } END { print m }' "$TMP/longer.tsv")" = 511 ] || fail "score's default window is not 512 (max context $(awk -F'\t' 'NR > 1 && $9 > m { m = $9 } END { print m }' "$TMP/longer.tsv"))"
awk -F'\t' '$1 == 512 && $9 != 256 { bad = 1 } END { exit bad }' "$TMP/longer.tsv" || fail "score's default stride is not 256"
[ "$(printf 'The end.\n' | "$BIN" score --model "$M" --strip | wc -l)" -eq "$(printf 'The end.' | "$BIN" tokenize --model "$M" --bos | wc -w)" ] || fail "score --strip keeps the newline"
[ "$(printf 'The end.\n' | "$BIN" score --model "$M" | wc -l)" -gt "$(printf 'The end.\n' | "$BIN" score --model "$M" --strip | wc -l)" ] || fail "without --strip the newline is scored"
V=$TOKSHIFT_TESTDATA/vocab/ggml-vocab-llama-spm.gguf
if [ -f "$V" ]; then
  [ -n "$(printf 'Hello world' | "$BIN" tokenize --model "$V" 2> "$TMP/err")" ] || fail "tokenize with a vocabulary-only GGUF: $(cat "$TMP/err")"
fi
W=$(dirname "$BIN")/tokshift-worker
"$W" --connect localhost:5555 --model "$M" > /dev/null 2> "$TMP/err"; [ $? -eq 2 ] && grep -q 'tcp://localhost:5555' "$TMP/err" || fail "worker --connect without tcp://: $(cat "$TMP/err")"
"$W" --connect tcp://127.0.0.1:1 --model "$M" --threads abc > /dev/null 2> "$TMP/err"; [ $? -eq 2 ] && grep -q -- '--threads' "$TMP/err" || fail "worker --threads abc: $(cat "$TMP/err")"

if [ $fails -ne 0 ]; then echo "test_cli: $fails failure(s)"; exit 1; fi
echo "test_cli: ok"
