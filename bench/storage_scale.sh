#!/usr/bin/env bash
# storage_scale.sh - storage per token and query times at corpus scale,
# each against a reference measured in the same run:
#   1. a run of synthetic jobs with the README's continuation settings
#      (window 512, stride 256, --cut-every 128 --cont-len 32 --samples 8;
#      documents of 1,024 tokens, 64 per job: the coordinator's default) written by bench/storage_bench
#      through the worker's job.c and db_commit_job (the real arrays,
#      rollups, COPYs and transaction; pseudo-random statistics instead of a
#      model's, so that 10^7 tokens take minutes, not hours): bytes per token
#      of sequence_stats (heap + TOAST + indexes, pg_total_relation_size), of
#      the rollups, WAL bytes per token (pg_current_wal_lsn before and
#      after), db_commit_job's rate; the reference is the schema-4 layout
#      (a row per token with its primary key) filled with the same tokens;
#   (written after a prior run of a quarter of its size, which is then
#   analyzed: the planner knows the other run, not the one asked about, as
#   in a database in use; the rollups' bytes are their tables' growth);
#   2. on that run: each view and each sql/queries/*.sql with EXPLAIN
#      (ANALYZE, BUFFERS) (execution time, the plan's first lines and any
#      sort or hash that spilled to disk; the cross-scoring views, cross_stats
#      and cross_text_*, over a copy of the run as its observer), and
#      `tokshift report`; the reference is the same calibration and
#      per-document answers computed by scanning token_view (what the views
#      did before the rollups).
# The worker's share of time spent writing, with a real model, is
# bench/pipeline.sh's first figure.
#
# Usage: bench/storage_scale.sh [--tokens N] [--doc-len N] [--plans DIR] [BUILD_DIR]
#   --tokens N   tokens in the run (default 5000000: about a minute on 2
#                cores; the query figures at 10^7: --tokens 10000000)
#   --plans DIR  also write each EXPLAIN (ANALYZE, BUFFERS) whole to DIR
#   --doc-len N  tokens per document (default 1024; the share of human text,
#                stored in TOAST, and of continuations depends on it)
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
TOKENS=5000000
DOC_LEN=1024
PLANS=
while [ $# -gt 0 ]; do
  case "$1" in
    --tokens) TOKENS=$2; shift 2 ;;
    --doc-len) DOC_LEN=$2; shift 2 ;;
    --plans) PLANS=$(mkdir -p "$2" && cd "$2" && pwd); shift 2 ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed -e '/^set -euo/d' -e 's/^# \{0,1\}//'; exit 0 ;;
    *) break ;;
  esac
done
BUILD=$(cd "${1:-$ROOT/build}" && pwd)
TMP=$(mktemp -d); chmod 755 "$TMP"
trap '"$ROOT/deploy/pg-cluster.sh" stop "$TMP/pg" immediate >/dev/null 2>&1; rm -rf "$TMP"' EXIT
DB=$("$ROOT/deploy/pg-cluster.sh" start "$TMP/pg")
"$BUILD/tokshift" db migrate --db "$DB" 2>/dev/null
q() { psql -X -At -v ON_ERROR_STOP=1 "$DB" -c "$1"; }

W=512 S=256 EVERY=128 C=32 K=8 PER_JOB=64
CUTS=$(( (DOC_LEN - C) / EVERY ))
PER_DOC=$(( DOC_LEN - 1 + CUTS * (K + 1) * C ))
JOBS=$(( (TOKENS + PER_DOC * PER_JOB - 1) / (PER_DOC * PER_JOB) ))
DOCS=$(( JOBS * PER_JOB ))
SETTINGS="{\"window\": $W, \"stride\": $S, \"prefix_lengths\": [], \"cut_every\": $EVERY, \"cont_len\": $C, \"samples\": $K, \"temperature\": 1, \"top_k\": 0, \"top_p\": 1, \"seed\": 1}"
q "INSERT INTO models (identity, name, arch, n_vocab, n_ctx) VALUES ('bench', 'bench', 'llama', 32000, 2048);
   INSERT INTO vocab SELECT 1, i, 'p' || i, 't' || i FROM generate_series(0, 31999) i;" > /dev/null
# A run RUN named NAME of JOBS jobs, registered, loaded and leased as a
# coordinator leaves it for storage_bench.
make_run() {  # RUN NAME JOBS
  q "INSERT INTO runs (run_id, name, model_identity, settings, corpus, status, n_docs, n_jobs, started_at, loaded_at)
         VALUES ($1, '$2', 'bench', '$SETTINGS', '{}', 'running', $(( $3 * PER_JOB )), $3, now(), now());
     SELECT tokshift_create_partition($1);
     INSERT INTO documents (run_id, doc_id, ext_id, source, text, n_bytes, job_id)
         SELECT $1, d, 'doc' || d, 'synthetic:' || d, 'x', 1, d / $PER_JOB FROM generate_series(0, $(( $3 * PER_JOB )) - 1) d;
     INSERT INTO jobs (run_id, job_id, n_docs, n_bytes) SELECT $1, j, $PER_JOB, $PER_JOB FROM generate_series(0, $3 - 1) j;
     UPDATE jobs SET state = 'leased', attempts = 1, attempt_token = job_id + 1, worker = 'bench', leased_at = now()
      WHERE run_id = $1;" > /dev/null
}
# Scale realism: a database in use holds earlier runs, analyzed, and the
# statistics of the run asked about are those of the others (it is seldom
# analyzed yet); plans made from them must stay linear.  So a prior run (a
# quarter of the size) is written and analyzed first; the figures are the
# second run's (the rollups' as the growth of their tables).
PRIOR_JOBS=$(( (JOBS + 3) / 4 ))
make_run 1 prior $PRIOR_JOBS
"$BUILD/bench/storage_bench" "$DB" 1 "$PRIOR_JOBS" "$PER_JOB" "$DOC_LEN" "$W" "$S" "$EVERY" "$C" "$K" > /dev/null
q "UPDATE runs SET status = 'done', finished_at = now() WHERE run_id = 1; ANALYZE; CHECKPOINT;" > /dev/null
RUN=2
make_run $RUN storage $JOBS
# Every table the worker writes besides sequence_stats (the rollups).
ROLLUPS="job_rollups calib_rollups doc_rollups top_tokens bucket_rollups doc_bucket_rollups"
q "CREATE TABLE size0 AS SELECT t, pg_total_relation_size(t) AS b FROM unnest(string_to_array('$ROLLUPS', ' ')) t;
   CHECKPOINT;" > /dev/null

echo "== 1. storage: $JOBS jobs x $PER_JOB documents of $DOC_LEN tokens ($PER_DOC tokens each with $CUTS cuts x (1 + $K) x $C), after a prior run of $PRIOR_JOBS jobs"
LSN0=$(q "SELECT pg_current_wal_lsn()")
"$BUILD/bench/storage_bench" "$DB" $RUN "$JOBS" "$PER_JOB" "$DOC_LEN" "$W" "$S" "$EVERY" "$C" "$K"
LSN1=$(q "SELECT pg_current_wal_lsn()")
q "UPDATE runs SET status = 'done', finished_at = now() WHERE run_id = $RUN" > /dev/null
N=$(q "SELECT sum(n_tokens) FROM jobs WHERE run_id = $RUN")
q "SELECT format('sequence_stats: %s tokens in %s sequences; %s bytes/token (heap %s, TOAST %s, indexes %s)',
     $N, (SELECT count(*) FROM sequence_stats_r$RUN),
     round(pg_total_relation_size('sequence_stats_r$RUN')::numeric / $N, 2),
     round(pg_relation_size('sequence_stats_r$RUN')::numeric / $N, 2),
     round(coalesce(pg_total_relation_size(nullif(c.reltoastrelid, 0)), 0)::numeric / $N, 2),
     round(pg_indexes_size('sequence_stats_r$RUN')::numeric / $N, 2))
   FROM pg_class c WHERE c.relname = 'sequence_stats_r$RUN'"
q "SELECT format('  by kind (tuple bytes per token, pg_column_size): %s',
     string_agg(format('%s %s', kind, round(b::numeric / n, 2)), ', ' ORDER BY kind))
   FROM (SELECT kind, sum(pg_column_size(s.*)) AS b, sum(cardinality(token_id)) AS n FROM sequence_stats_r$RUN s GROUP BY kind) k"
q "SELECT 'rollups: ' || string_agg(format('%s %s', t, round((pg_total_relation_size(t) - b)::numeric / $N, 2)), ', ')
   FROM size0"
q "SELECT format('rollups in all: %s bytes/token; with sequence_stats: %s bytes/token',
     round(r::numeric / $N, 2), round((r + pg_total_relation_size('sequence_stats_r$RUN'))::numeric / $N, 2))
   FROM (SELECT sum(pg_total_relation_size(t) - b) AS r FROM size0) x"
q "SELECT format('WAL: %s bytes/token (%s MB for the run''s commits)', round(pg_wal_lsn_diff('$LSN1', '$LSN0') / $N, 2),
     round(pg_wal_lsn_diff('$LSN1', '$LSN0') / 1e6, 1))"
# The reference: schema 4's row per token, primary key included, for the
# first 10^6 tokens (bytes per token do not depend on the count).
REF_DOCS=$(( (1000000 + PER_DOC - 1) / PER_DOC ))
q "CREATE TABLE ref_token_rows (run_id bigint NOT NULL, doc_id bigint NOT NULL, seq_no integer NOT NULL,
       pos integer NOT NULL, token_id integer NOT NULL, logprob real NOT NULL, entropy real NOT NULL,
       rank integer NOT NULL, top1_logprob real NOT NULL, varentropy real NOT NULL, context_len integer NOT NULL,
       PRIMARY KEY (run_id, doc_id, seq_no, pos));
   INSERT INTO ref_token_rows SELECT run_id, doc_id, seq_no, pos, token_id, logprob, entropy, rank, top1_logprob,
       varentropy, context_len FROM token_view WHERE run_id = $RUN AND doc_id < $REF_DOCS;" > /dev/null
q "SELECT format('reference: schema 4 (a row per token): %s bytes/token; ratio %s',
     round(pg_total_relation_size('ref_token_rows')::numeric / n, 2),
     round((pg_total_relation_size('sequence_stats_r$RUN')::numeric / $N) / (pg_total_relation_size('ref_token_rows')::numeric / n), 3))
   FROM (SELECT count(*) AS n FROM ref_token_rows) x"
q "DROP TABLE ref_token_rows" > /dev/null

# A cross-scoring run of the storage run (migrations 010-012's views): run
# OBS, an observer scored through the text, whose rows are a copy of the
# storage run's with cut bytes and end bytes (the storage run's
# continuations given cut bytes too): as many sequences and doc_rollups
# rows as the run asked about, not analyzed.
OBS=3
copy_rows() {  # TABLE: run RUN's rows of TABLE copied as run OBS's
  local cols
  cols=$(q "SELECT string_agg(quote_ident(attname), ', ' ORDER BY attnum) FROM pg_attribute
            WHERE attrelid = '$1'::regclass AND attnum > 0 AND NOT attisdropped AND attname <> 'run_id'")
  q "INSERT INTO $1 (run_id, $cols) SELECT $OBS, $cols FROM $1 WHERE run_id = $RUN" > /dev/null
}
q "INSERT INTO runs (run_id, name, model_identity, settings, corpus, status, n_docs, n_jobs, started_at, loaded_at,
                     finished_at, score_run_id)
     SELECT $OBS, 'observer', model_identity, settings, corpus, 'done', n_docs, n_jobs, now(), now(), now(), $RUN
       FROM runs WHERE run_id = $RUN;
   SELECT tokshift_create_partition($OBS);" > /dev/null
for t in documents jobs doc_rollups sequence_stats; do copy_rows $t; done
q "UPDATE sequence_stats SET cut_byte = cut * 4 WHERE run_id = $RUN AND kind <> 'human';
   UPDATE sequence_stats SET cut_byte = cut * 4 - 2, end_byte = (cut + $C) * 4 WHERE run_id = $OBS AND kind <> 'human';" \
  > /dev/null
q "VACUUM sequence_stats_r$RUN, sequence_stats_r$OBS" > /dev/null

echo "== 2. queries on the run of $N tokens (not analyzed beyond what autovacuum did; the prior run analyzed)"
explain() {  # LABEL SQL
  local out
  out=$(psql -X -At -v ON_ERROR_STOP=1 -v run=$RUN "$DB" <<< "EXPLAIN (ANALYZE, BUFFERS) $2")
  printf '%-34s %s\n' "$1" "$(grep -o 'Execution Time: .*' <<< "$out")"
  grep -v -e 'Execution Time' -e 'Planning' <<< "$out" | head -4 | cut -c1-150 | sed 's/^/      /'
  # Sorts and hashes that went to disk, wherever they are in the plan.
  grep -E 'Disk: |external (sort|merge)|Batches: [0-9]*[1-9][0-9]* .*Disk' <<< "$out" | sort -u | cut -c1-150 \
    | sed 's/^ */      spills: /' || true
  if [ -n "$PLANS" ]; then printf '%s\n' "$out" > "$PLANS/$(tr -c 'a-zA-Z0-9_.\n' '_' <<< "$1").txt"; fi
}
for v in position_stats bucket_stats shift_by_bucket calibration document_summary run_progress sequence_auroc; do
  explain "view $v" "SELECT * FROM $v WHERE run_id = $RUN"
done
explain "view cross_stats" "SELECT * FROM cross_stats WHERE observer_run = $OBS"
explain "view cross_text_sequences" "SELECT * FROM cross_text_sequences WHERE observer_run = $OBS"
explain "view cross_text_sequences (one doc)" "SELECT * FROM cross_text_sequences WHERE observer_run = $OBS AND doc_id = 7"
explain "view cross_text_stats" "SELECT * FROM cross_text_stats WHERE observer_run = $OBS"
explain "view sequences (one document)" "SELECT * FROM sequences WHERE run_id = $RUN AND doc_id = 7"
explain "view token_view (one document)" "SELECT * FROM token_view WHERE run_id = $RUN AND doc_id = 7"
for f in "$ROOT"/sql/queries/*.sql; do
  explain "sql/queries/$(basename "$f")" "$(grep -v '^--' "$f" | sed 's/;[[:space:]]*$//')"
done
START=$(date +%s.%N)
"$BUILD/tokshift" report storage --db "$DB" --out "$TMP/report" 2>/dev/null
END=$(date +%s.%N)
printf 'tokshift report: %.2f s (%s)\n' "$(echo "$END - $START" | bc -l)" "$(cd "$TMP/report" && echo *)"
echo "-- reference: the same answers from a scan of token_view (full scans: ad-hoc SQL only)"
explain "calibration by scan" "SELECT kind, width_bucket(exp(top1_logprob), 0, 1.0000001, 10) AS bin, count(*),
  avg(exp(top1_logprob)), avg((rank = 1)::integer) FROM token_view WHERE run_id = $RUN GROUP BY 1, 2"
explain "document_summary by scan" "SELECT doc_id, avg(surprisal) FILTER (WHERE kind = 'human'),
  avg(gap) FILTER (WHERE kind = 'sample') FROM token_view WHERE run_id = $RUN GROUP BY 1"
