// test_migrate.mjs - a database of schema 4 (a row per token) migrates to
// schema 5 (a row per sequence, arrays) with `tokshift db migrate`, its runs
// converted exactly.
//
// A real PostgreSQL gets migrations 001-004 only (as `tokshift db migrate`
// applied them, recorded in schema_migrations), then two runs of rows laid
// out as the schema-4 worker wrote them: human rows at pos 1..n-1 with the
// context lengths of windows of W every S tokens, continuations at cut..cut
// + C - 1 with least(cut, W - C) + i, their sequences, job_rollups, and
// documents and jobs (one job not done, one document with an error).  The
// statistics are pseudo-random reals (z undefined where varentropy is 0).
// Then `tokshift db migrate` and:
//   - token_view equals the old token_view row for row in every column,
//     both ways (EXCEPT ALL), and sequences equals the old table;
//   - calibration and document_summary agree with the old views (counts
//     exactly, means to 1e-9 relative: old ones averaged the same floats);
//     the new rollups agree with the rows (faultlib's rollupsDisagree);
//   - the new partition function makes sequence_stats partitions, and a
//     second migrate applies nothing;
//   - a schema-4 database whose rows do not follow the derivations (a
//     context length changed) is refused: the migration fails naming the
//     difference and leaves schema 4 as it was.
import {readdirSync, readFileSync} from "node:fs";
import {join} from "node:path";
import {BIN, ROOT, check, cleanup, finish, psql, run, startPostgres, tempDir} from "./harness.mjs";
import {rollupsDisagree} from "./faultlib.mjs";

const dir = tempDir("ts-migrate-");
const pg = startPostgres(dir);
const owner = pg.conninfo;
const W = 16, S = 8, C = 4, K = 2;

// Schema 4, as `tokshift db migrate` left it.
function schema4(db) {
    const files = readdirSync(join(ROOT, "sql", "migrations")).filter(f => /^00[1-4]_.*\.sql$/.test(f)).sort();
    check(files.length === 4, `migrations 001-004 found (${files})`);
    psql(db, "CREATE TABLE schema_migrations (name text PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())");
    for (const f of files) {
        run("psql", ["-X", "-q", "-v", "ON_ERROR_STOP=1", "-1", "-f", join(ROOT, "sql", "migrations", f), db]);
        psql(db, `INSERT INTO schema_migrations (name) VALUES ('${f}')`);
    }
}

// Runs in the schema-4 layout.  Statistics from a seeded generator, so the
// test is the same every time.
function fill4(db) {
    const settings = JSON.stringify({window: W, stride: S, prefix_lengths: [], cut_every: 8, cont_len: C, samples: K,
                                     temperature: 0.8999999761581421, top_k: 5, top_p: 0.949999988079071, seed: 7});
    psql(db, `SELECT setseed(0.25);
        INSERT INTO models (identity, name, arch, n_vocab, n_ctx) VALUES ('m1', 'm', 'llama', 512, 64);
        INSERT INTO vocab (model_id, token_id, piece) SELECT 1, i, 'p' || (i * 7919 % 512) FROM generate_series(0, 511) i;
        INSERT INTO runs (name, model_identity, settings, corpus, status, n_docs, n_jobs)
            VALUES ('a', 'm1', '${settings}', '{}', 'running', 4, 3), ('b', 'm1', '${settings}', '{}', 'done', 1, 1);
        SELECT tokshift_create_partition(run_id) FROM runs;
        INSERT INTO documents (run_id, doc_id, ext_id, source, text, n_bytes, job_id, n_tokens, error) VALUES
            (1, 0, 'd0', 'f:1', 'x', 1, 0, 90, NULL), (1, 1, 'd1', 'f:2', 'x', 1, 0, 13, NULL),
            (1, 2, 'd2', 'f:3', 'x', 1, 1, 1, NULL), (1, 3, 'd3', 'f:4', NULL, 0, NULL, NULL, 'invalid UTF-8'),
            (1, 4, 'd4', 'f:5', 'x', 1, 2, NULL, NULL), (2, 0, 'e0', 'g:1', 'x', 1, 0, 30, NULL);
        INSERT INTO jobs (run_id, job_id, state, attempts, n_docs, n_bytes, done_at, n_tokens) VALUES
            (1, 0, 'done', 1, 2, 2, now(), 0), (1, 1, 'done', 2, 1, 1, now(), 0), (2, 0, 'done', 1, 1, 1, now(), 0);
        INSERT INTO jobs (run_id, job_id, n_docs, n_bytes) VALUES (1, 2, 1, 1);
        CREATE TEMP TABLE seqs AS
            SELECT d.run_id, d.doc_id, 0 AS seq_no, 'human' AS kind, NULL::int AS cut, NULL::int AS sample_idx,
                   greatest(d.n_tokens - 1, 0) AS n FROM documents d WHERE d.n_tokens IS NOT NULL
            UNION ALL
            SELECT d.run_id, d.doc_id, 1 + j * (${K} + 1) + k, CASE WHEN k = 0 THEN 'human_cont' ELSE 'sample' END,
                   8 * (j + 1), CASE WHEN k > 0 THEN k - 1 END, ${C}
            FROM documents d, generate_series(0, 10) j, generate_series(0, ${K}) k
            WHERE d.n_tokens IS NOT NULL AND 8 * (j + 1) + ${C} <= d.n_tokens;
        INSERT INTO sequences (run_id, doc_id, seq_no, kind, cut, sample_idx, seed, temperature, top_k, top_p, n_tokens)
            SELECT run_id, doc_id, seq_no, kind, cut, sample_idx,
                   CASE WHEN kind = 'sample' THEN (random() * 9e18 - 4.5e18)::bigint END,
                   CASE WHEN kind = 'sample' THEN 0.9::real END, CASE WHEN kind = 'sample' THEN 5 END,
                   CASE WHEN kind = 'sample' THEN 0.95::real END, n
            FROM seqs;
        INSERT INTO token_stats (run_id, doc_id, seq_no, pos, token_id, logprob, entropy, rank, top1_logprob, varentropy,
                                 context_len)
            SELECT s.run_id, s.doc_id, s.seq_no, p.pos, (random() * 511)::int, -(random() * 9)::real, (random() * 5)::real,
                   1 + (random() * random() * 40)::int, -(random() * 2)::real,
                   CASE WHEN random() < 0.1 THEN 0 ELSE (random() * 6)::real END,
                   CASE WHEN s.kind <> 'human' THEN least(s.cut, ${W} - ${C}) + p.pos - s.cut
                        WHEN p.pos < ${W} THEN p.pos ELSE p.pos - ${S} * ((p.pos - ${W}) / ${S} + 1) END
            FROM seqs s, LATERAL generate_series(coalesce(s.cut, 1), coalesce(s.cut, 1) + s.n - 1) p(pos);
        INSERT INTO job_rollups (run_id, job_id, kind, position, n, sum_surprisal, sumsq_surprisal, sum_entropy,
                                 sumsq_entropy, sum_gap, sumsq_gap, sum_z, sumsq_z, n_z)
            SELECT v.run_id, d.job_id, v.kind, v.position, count(*), sum(v.surprisal), sum(v.surprisal ^ 2),
                   sum(v.entropy), sum(v.entropy ^ 2), sum(v.gap), sum(v.gap ^ 2), coalesce(sum(v.z), 0),
                   coalesce(sum(v.z ^ 2), 0), count(v.z)
            FROM token_view v JOIN documents d USING (run_id, doc_id) GROUP BY 1, 2, 3, 4;`);
}

const migrate = (db, allowFail = false) => run(join(BIN, "tokshift"), ["db", "migrate", "--db", db], {allowFail});
const one = (db, sql) => psql(db, sql)[0][0];

// ---- a schema-4 database with two runs migrates exactly ------------------------------
schema4(owner);
fill4(owner);
const oldRows = Number(one(owner, "SELECT count(*) FROM token_stats"));
check(oldRows > 250, `schema 4 holds ${oldRows} token rows`);
psql(owner, `CREATE TABLE old_tokens AS SELECT * FROM token_view;
    CREATE TABLE old_seqs AS SELECT run_id, doc_id, seq_no, kind, cut, sample_idx, seed, temperature, top_k, top_p, n_tokens FROM sequences;
    CREATE TABLE old_calib AS SELECT * FROM calibration;
    CREATE TABLE old_docs AS SELECT * FROM document_summary;
    CREATE TABLE old_pos AS SELECT * FROM position_stats;`);
let r = migrate(owner);
check(/applied migration 005_/.test(r.stderr), `tokshift db migrate applied 005: ${r.stderr.trim()}`);
const exceptAll = (a, b) => Number(one(owner, `SELECT count(*) FROM (SELECT * FROM ${a} EXCEPT ALL SELECT * FROM ${b}) d`));
// (sequences as 005 made it: 011 adds cut_byte, unknown for converted runs)
const TV = "token_view", SQ = "(SELECT run_id, doc_id, seq_no, kind, cut, sample_idx, seed, temperature, top_k, top_p, " +
                              "n_tokens FROM sequences) s";
check(exceptAll("old_tokens", TV) === 0 && exceptAll(TV, "old_tokens") === 0 &&
      Number(one(owner, "SELECT count(*) FROM token_view")) === oldRows,
      "token_view after the migration equals the old rows in every column");
check(exceptAll("old_seqs", SQ) === 0 && exceptAll(SQ, "old_seqs") === 0, "sequences equals the old table");
check(one(owner, "SELECT count(*) FROM sequences WHERE cut_byte IS NOT NULL") === "0",
      "011: converted sequences have no cut byte offset (not known)");
check(one(owner, "SELECT count(*) FROM pg_tables WHERE schemaname = current_schema() AND tablename IN ('token_stats', 'sequences_v4', 'sequences')") === "0",
      "the old tables are gone");
check(Number(one(owner, "SELECT count(*) FROM sequence_stats_r1")) > 0 &&
      Number(one(owner, "SELECT count(*) FROM sequence_stats_r2")) > 0, "each run's rows are in its own partition");
const rel = (a, b) => `abs(${a} - ${b}) > 1e-9 * abs(${b})`;
check(one(owner, `SELECT count(*) FROM old_calib o FULL JOIN calibration c USING (run_id, kind, bin)
    WHERE o.n IS DISTINCT FROM c.n OR ${rel("c.mean_confidence", "o.mean_confidence")}
       OR ${rel("c.accuracy", "o.accuracy::float8")} OR (c.n_docs > 1 AND c.se_accuracy IS NULL)`) === "0",
      "calibration (from calib_rollups) equals the old view (from every token)");
check(one(owner, `SELECT count(*) FROM old_docs o FULL JOIN document_summary s USING (run_id, doc_id)
    WHERE o.n_scored IS DISTINCT FROM s.n_scored OR o.error IS DISTINCT FROM s.error
       OR (o.mean_gap IS NULL) <> (s.mean_gap IS NULL) OR ${rel("s.mean_surprisal", "o.mean_surprisal")}
       OR ${rel("s.mean_gap", "o.mean_gap")} OR ${rel("s.mean_entropy", "o.mean_entropy")}
       OR ${rel("s.perplexity", "o.perplexity")}
       OR (o.mean_gap_human_cont IS NULL) <> (s.mean_gap_human_cont IS NULL)
       OR ${rel("s.mean_gap_human_cont", "o.mean_gap_human_cont")} OR ${rel("s.mean_gap_samples", "o.mean_gap_samples")}`) === "0",
      "document_summary (from doc_rollups) equals the old view");
// Migration 008: the means are unchanged; the standard errors are now
// clustered by document: recomputed here from the rows by their definition
// (CR1: G/(G-1) Σ_d (S_d - m n_d)² / n²), by position, by bucket and for
// all positions.  Tolerance as in test_compare.mjs: 1e-7 relative, plus
// 1e-6 |mean| for the cancellation noise of an SE near zero.
const MEANS = "run_id, kind, position, n, mean_surprisal, mean_entropy, mean_gap, mean_z";
check(Number(one(owner, `SELECT count(*) FROM (SELECT ${MEANS} FROM old_pos EXCEPT ALL SELECT ${MEANS} FROM position_stats) d`)) === 0,
      "position_stats's means are unchanged");
for (const [view, key] of [["position_stats", "position"], ["bucket_stats", "tokshift_bucket(position)"], ["run_stats", "-1"]]) {
    const k = view === "run_stats" ? "" : `, ${view === "position_stats" ? "position" : "bucket"}`;
    const bad = one(owner, `WITH c AS (SELECT run_id, kind, ${key} AS key, doc_id, count(*) AS n,
            sum(-logprob::float8 - entropy) AS s FROM token_view GROUP BY 1, 2, 3, 4),
        m AS (SELECT run_id, kind, key, sum(s) / sum(n) AS m, count(*) AS g, sum(n) AS n FROM c GROUP BY 1, 2, 3),
        r AS (SELECT run_id, kind, key, m.m, CASE WHEN m.g > 1 THEN sqrt(sum((c.s - m.m * c.n) ^ 2) * m.g / (m.g - 1)) / m.n END AS se
              FROM c JOIN m USING (run_id, kind, key) GROUP BY run_id, kind, key, m.m, m.g, m.n)
        SELECT count(*) FROM r FULL JOIN (SELECT *${k ? `, ${k.slice(2)} AS key` : ", -1 AS key"} FROM ${view}) p USING (run_id, kind, key)
        WHERE (p.se_gap IS NULL) <> (r.se IS NULL) OR NOT abs(p.se_gap - r.se) <= 1e-7 * r.se + 1e-6 * abs(r.m) + 1e-12`);
    check(bad === "0", `${view}: ${bad} clustered standard errors of the gap differ from the rows' (converted runs)`);
}
for (const id of [1, 2]) check(rollupsDisagree(owner, id) === 0, `run ${id}: the new rollups agree with the rows`);
// Migration 006: runs loaded by the one-transaction loader are loaded, their
// position after their last job, their unusable documents counted.
check(one(owner, `SELECT count(*) FROM runs r WHERE loaded_at IS NULL OR load_next_doc <> n_docs
    OR load_next_job <> (SELECT max(job_id) + 1 FROM jobs j WHERE j.run_id = r.run_id)
    OR n_docs_error <> (SELECT count(*) FROM documents d WHERE d.run_id = r.run_id AND d.text IS NULL)`) === "0",
      "006: the old runs are loaded, with their load position and error count");
check(Number(one(owner, "SELECT count(*) FROM top_tokens")) > 0, "top tokens were computed");
psql(owner, `INSERT INTO runs (name, model_identity, settings, corpus) VALUES ('c', 'm1', '{}', '{}');
    SELECT tokshift_create_partition(3);`);
check(one(owner, "SELECT count(*) FROM pg_class WHERE relname = 'sequence_stats_r3'") === "1",
      "tokshift_create_partition makes a sequence_stats partition");
check(one(owner, "SELECT proconfig::text FROM pg_proc WHERE proname = 'tokshift_create_partition'").includes("search_path"),
      "the new partition function keeps its pinned search_path");
// 015: vocab_digests from the store equals 010's definition (the digest of
// the pieces in token order), for the model registered before it and for one
// registered after (the triggers); a model's digest goes with its vocab rows.
const DIGEST10 = `SELECT m.identity, encode(sha256(string_agg(convert_to(v.piece, 'UTF8') || '\\x00'::bytea, ''::bytea
    ORDER BY v.token_id)), 'hex') AS digest FROM models m JOIN vocab v USING (model_id) GROUP BY m.identity`;
const digestsDiffer = () => Number(one(owner, `SELECT count(*) FROM (${DIGEST10}) a FULL JOIN vocab_digests b USING (identity)
    WHERE a.digest IS DISTINCT FROM b.digest`));
check(one(owner, "SELECT count(*) FROM vocab_digests") === "1" && digestsDiffer() === 0,
      "015: the existing model's vocabulary digest is stored, equal to 010's");
psql(owner, `INSERT INTO models (identity, name, arch, n_vocab, n_ctx) VALUES ('m2', 'm', 'llama', 3, 64);
    INSERT INTO vocab (model_id, token_id, piece) SELECT model_id, i, 'q' || i FROM models, generate_series(0, 2) i
     WHERE identity = 'm2';
    UPDATE vocab SET piece = 'r' WHERE token_id = 5 AND model_id = 1;`);
check(one(owner, "SELECT count(*) FROM vocab_digests") === "2" && digestsDiffer() === 0,
      "015: a model registered (and a piece changed) after it has its digest stored, equal to 010's");
psql(owner, "DELETE FROM vocab WHERE model_id = (SELECT model_id FROM models WHERE identity = 'm2')");
check(one(owner, "SELECT count(*) FROM vocab_digests") === "1" && digestsDiffer() === 0,
      "015: a model's digest goes with its vocabulary rows");
r = migrate(owner);
check(/0 migration\(s\) applied/.test(r.stderr), `a second migrate applies nothing: ${r.stderr.trim()}`);

// ---- rows that the derivations do not give are refused -------------------------------
psql(owner, "CREATE DATABASE bad");
const bad = owner.replace("dbname=tokshift", "dbname=bad");
schema4(bad);
fill4(bad);
psql(bad, "UPDATE token_stats SET context_len = context_len + 1 WHERE run_id = 1 AND doc_id = 0 AND seq_no = 0 AND pos = 20");
r = migrate(bad, true);
check(r.status !== 0 && /converting token_stats: \d+ old rows, \d+ new, 1 differ/.test(r.stderr),
      `a context length that is not the derived one is refused (${r.status}: ${r.stderr.trim().split("\n").pop()})`);
check(one(bad, "SELECT count(*) FROM schema_migrations WHERE name LIKE '005%'") === "0" &&
      one(bad, "SELECT count(*) FROM pg_tables WHERE schemaname = current_schema() AND tablename IN ('token_stats', 'sequences')") === "2" &&
      one(bad, "SELECT count(*) FROM pg_tables WHERE schemaname = current_schema() AND tablename = 'sequence_stats'") === "0",
      "the refused migration left schema 4 as it was");

pg.stop();
cleanup(dir);
finish("test_migrate");
