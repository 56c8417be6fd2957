-- 005_sequence_arrays.sql - token statistics one row per sequence, and the
-- rollups that answer run-level questions without reading them.
--
-- What it is:
--   sequence_stats  one row per scored sequence (partitioned by run), its
--                   per-token statistics as arrays in token order; it
--                   replaces the tables `sequences` and `token_stats` (a
--                   row per token cost ~130 bytes: a 24-byte tuple header
--                   and an index entry for 28 bytes of statistics).  What
--                   follows from the run's settings is not stored:
--                     pos          human: the i-th element (1-based) is pos i
--                                  (BOS, pos 0, is not predicted); a
--                                  continuation's is cut + i - 1;
--                     context_len  human: pos inside the window that scored
--                                  it, windows of W starting every S tokens
--                                  (the first window scores [1, W), window
--                                  k >= 1 scores [W + (k-1) S, W + k S) from
--                                  its start k S); continuation: the prefix
--                                  the model saw, least(cut, W - C), plus
--                                  i - 1 (experiment.c);
--                     temperature, top_k, top_p  the run's sampling settings;
--                     n_tokens     cardinality of the arrays.
--   sequences, token_view  views with the columns and types of the tables
--                   and view they replace, so existing SQL keeps working.
--   calib_rollups   per job, kind and confidence bin: n, sums of the top-1
--                   probability and its square, tokens of rank 1.
--   doc_rollups     per document, kind and cut (0 for the human text; per
--                   cut for its human continuation and, summed, its K
--                   samples): n and sums and sums of squares of surprisal,
--                   entropy, gap and z.  A document, and the samples that
--                   share one prefix, are the clusters of a cluster-robust
--                   standard error; these sums are what it needs.
--   top_tokens      per job, its 64 human tokens of largest z.
--   The views calibration and document_summary over those rollups, with a
--   standard error for every mean (shift_by_bucket gains those of its
--   surprisal and entropy means); tokshift_create_partition() making the
--   new table's partitions.
--
-- Existing runs are converted: their rows become arrays, their rollups are
-- computed from the rows, and the migration fails (changing nothing) if a
-- converted run's token_view differs from its old rows in any column, or if
-- a stored value is not what the derivations above give.
--
-- What it is not: a change of the per-(job, kind, position) job_rollups, or
-- of the views built on them (position_stats, bucket_stats,
-- shift_by_bucket), which already read only rollups.

CREATE TYPE tokshift_kind AS ENUM ('human', 'human_cont', 'sample');

-- Columns ordered to leave no alignment padding before the arrays (a
-- sample's fixed part is 40 bytes after the 24-byte header).
CREATE TABLE sequence_stats (
    run_id          bigint NOT NULL,
    doc_id          bigint NOT NULL,
    seed            bigint,          -- samples: the sampler's seed (uint64 bits)
    seq_no          integer NOT NULL CHECK (seq_no >= 0),
    cut             integer,         -- continuations: the prefix length (BOS included)
    sample_idx      integer,         -- samples: 0..K-1
    kind            tokshift_kind NOT NULL,
    token_id        integer[] NOT NULL,
    logprob         real[] NOT NULL,
    entropy         real[] NOT NULL,
    rank            integer[] NOT NULL,
    top1_logprob    real[] NOT NULL,
    varentropy      real[] NOT NULL,
    PRIMARY KEY (run_id, doc_id, seq_no),
    CHECK ((kind = 'human') = (cut IS NULL)),
    CHECK ((kind = 'sample') = (sample_idx IS NOT NULL AND seed IS NOT NULL)),
    CHECK (array_ndims(token_id) IS NULL OR array_ndims(token_id) = 1),
    CHECK (cardinality(logprob) = cardinality(token_id) AND cardinality(entropy) = cardinality(token_id)
           AND cardinality(rank) = cardinality(token_id) AND cardinality(top1_logprob) = cardinality(token_id)
           AND cardinality(varentropy) = cardinality(token_id))
) PARTITION BY LIST (run_id);

CREATE TABLE calib_rollups (
    run_id          bigint NOT NULL,
    job_id          bigint NOT NULL,
    kind            tokshift_kind NOT NULL,
    bin             integer NOT NULL,   -- width_bucket(exp(top1_logprob), 0, 1.0000001, 10)
    n               bigint NOT NULL,
    n_correct       bigint NOT NULL,    -- rank = 1
    sum_conf        double precision NOT NULL,
    sumsq_conf      double precision NOT NULL,
    PRIMARY KEY (run_id, job_id, kind, bin),
    FOREIGN KEY (run_id, job_id) REFERENCES jobs ON DELETE CASCADE
);

CREATE TABLE doc_rollups (
    run_id          bigint NOT NULL,
    doc_id          bigint NOT NULL,
    kind            tokshift_kind NOT NULL,
    cut             integer NOT NULL,   -- 0 for the human text
    n               bigint NOT NULL,
    n_z             bigint NOT NULL,    -- tokens with varentropy > 0 (z defined)
    sum_surprisal   double precision NOT NULL,
    sumsq_surprisal double precision NOT NULL,
    sum_entropy     double precision NOT NULL,
    sumsq_entropy   double precision NOT NULL,
    sum_gap         double precision NOT NULL,
    sumsq_gap       double precision NOT NULL,
    sum_z           double precision NOT NULL,
    sumsq_z         double precision NOT NULL,
    PRIMARY KEY (run_id, doc_id, kind, cut),
    FOREIGN KEY (run_id, doc_id) REFERENCES documents ON DELETE CASCADE
);

-- z is stored (it is what the table is ordered by) exactly as token_view
-- computes it: the real gap over sqrt of the varentropy in double.
CREATE TABLE top_tokens (
    run_id          bigint NOT NULL,
    job_id          bigint NOT NULL,
    doc_id          bigint NOT NULL,
    pos             integer NOT NULL,
    token_id        integer NOT NULL,
    logprob         real NOT NULL,
    entropy         real NOT NULL,
    rank            integer NOT NULL,
    varentropy      real NOT NULL,
    z               double precision NOT NULL,
    PRIMARY KEY (run_id, job_id, doc_id, pos),
    FOREIGN KEY (run_id, job_id) REFERENCES jobs ON DELETE CASCADE
);
CREATE INDEX top_tokens_z ON top_tokens (run_id, z DESC);

-- The partition function, new version: a run's sequence_stats partition.
-- A human text's arrays outgrow a page and go to TOAST in chunks of 1996
-- bytes, four to a TOAST page, which the small last chunk of each array
-- leaves a quarter empty; with the largest toast_tuple_target, only as many
-- arrays go to TOAST as it takes for the row to fit in a page, and the rest
-- stay in the heap page (bench/storage_scale.sh: 31.7 rather than 32.2
-- bytes per token).
CREATE OR REPLACE FUNCTION tokshift_create_partition(p_run_id bigint) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER AS $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM runs WHERE run_id = p_run_id) THEN
        RAISE EXCEPTION 'run % does not exist', p_run_id USING ERRCODE = 'foreign_key_violation';
    END IF;
    EXECUTE format('CREATE TABLE IF NOT EXISTS %I PARTITION OF sequence_stats FOR VALUES IN (%s) '
                   'WITH (toast_tuple_target = 8160)', 'sequence_stats_r' || p_run_id, p_run_id);
END $$;
REVOKE ALL ON FUNCTION tokshift_create_partition(bigint) FROM PUBLIC;
DO $$
BEGIN
    EXECUTE format('ALTER FUNCTION tokshift_create_partition(bigint) SET search_path = %I, pg_temp',
                   current_schema());
END $$;

-- ---- the views -------------------------------------------------------------

DROP VIEW document_summary, calibration, token_view;
ALTER TABLE sequences RENAME TO sequences_v4;

-- Each sequence's derivation parameters, from its run's settings.
CREATE VIEW sequences AS
SELECT s.run_id, s.doc_id, s.seq_no, s.kind::text AS kind, s.cut, s.sample_idx, s.seed,
       CASE WHEN s.kind = 'sample' THEN (r.settings->>'temperature')::real END AS temperature,
       CASE WHEN s.kind = 'sample' THEN (r.settings->>'top_k')::integer END AS top_k,
       CASE WHEN s.kind = 'sample' THEN (r.settings->>'top_p')::real END AS top_p,
       cardinality(s.token_id) AS n_tokens
FROM sequence_stats s JOIN runs r USING (run_id);

-- Every token with its derived quantities: the arrays unnested in order.
CREATE VIEW token_view AS
SELECT s.run_id, s.doc_id, s.seq_no, s.kind::text AS kind, s.cut, s.sample_idx, p.pos,
       CASE WHEN s.kind = 'human' THEN p.pos ELSE p.pos - s.cut END AS position,
       t.token_id, t.logprob, -t.logprob AS surprisal, t.entropy,
       -t.logprob - t.entropy AS gap,
       CASE WHEN t.varentropy > 0 THEN (-t.logprob - t.entropy) / sqrt(t.varentropy) END AS z,
       t.rank, t.top1_logprob, t.varentropy,
       CASE WHEN s.kind <> 'human' THEN least(s.cut, w.w - cardinality(s.token_id)) + t.i::integer - 1
            WHEN p.pos < w.w THEN p.pos
            ELSE p.pos - w.s * ((p.pos - w.w) / w.s + 1) END AS context_len
FROM sequence_stats s
JOIN runs r USING (run_id)
CROSS JOIN LATERAL (SELECT (r.settings->>'window')::integer AS w, (r.settings->>'stride')::integer AS s) w
CROSS JOIN LATERAL unnest(s.token_id, s.logprob, s.entropy, s.rank, s.top1_logprob, s.varentropy)
    WITH ORDINALITY AS t(token_id, logprob, entropy, rank, top1_logprob, varentropy, i)
CROSS JOIN LATERAL (SELECT coalesce(s.cut - 1, 0) + t.i::integer AS pos) p;

-- Calibration: tokens binned by the model's top-1 probability; a calibrated
-- model's accuracy (rank = 1) matches the mean confidence in every bin.
CREATE VIEW calibration AS
SELECT c.run_id, c.kind::text AS kind, c.bin, sum(c.n) AS n,
       sum(c.sum_conf) / sum(c.n) AS mean_confidence,
       sum(c.n_correct)::double precision / sum(c.n) AS accuracy,
       tokshift_se(sum(c.n), sum(c.sum_conf), sum(c.sumsq_conf)) AS se_confidence,
       tokshift_se(sum(c.n), sum(c.n_correct)::double precision, sum(c.n_correct)::double precision) AS se_accuracy
FROM calib_rollups c JOIN jobs j USING (run_id, job_id)
WHERE j.state = 'done'
GROUP BY c.run_id, c.kind, c.bin;

-- Per document: its human text's summary, and its continuations' gaps (the
-- standard errors treat tokens as independent; see doc_rollups for the
-- per-document and per-cut sums a clustered error needs).
CREATE VIEW document_summary AS
SELECT d.run_id, d.doc_id, d.ext_id, d.source, d.n_tokens, d.error,
       coalesce(r.n_h, 0) AS n_scored,
       r.s_h / r.n_h AS mean_surprisal, tokshift_se(r.n_h, r.s_h, r.ss_h) AS se_surprisal,
       r.e_h / r.n_h AS mean_entropy, tokshift_se(r.n_h, r.e_h, r.ee_h) AS se_entropy,
       r.g_h / r.n_h AS mean_gap, tokshift_se(r.n_h, r.g_h, r.gg_h) AS se_gap,
       r.g_c / r.n_c AS mean_gap_human_cont, tokshift_se(r.n_c, r.g_c, r.gg_c) AS se_gap_human_cont,
       r.g_s / r.n_s AS mean_gap_samples, tokshift_se(r.n_s, r.g_s, r.gg_s) AS se_gap_samples,
       exp(r.s_h / r.n_h) AS perplexity
FROM documents d
-- One index lookup per document, whatever the statistics say (a run's
-- rollups are usually not yet analyzed when it is asked about).
LEFT JOIN LATERAL (
    SELECT sum(n) FILTER (WHERE kind = 'human') AS n_h,
           sum(sum_surprisal) FILTER (WHERE kind = 'human') AS s_h,
           sum(sumsq_surprisal) FILTER (WHERE kind = 'human') AS ss_h,
           sum(sum_entropy) FILTER (WHERE kind = 'human') AS e_h,
           sum(sumsq_entropy) FILTER (WHERE kind = 'human') AS ee_h,
           sum(sum_gap) FILTER (WHERE kind = 'human') AS g_h,
           sum(sumsq_gap) FILTER (WHERE kind = 'human') AS gg_h,
           sum(n) FILTER (WHERE kind = 'human_cont') AS n_c,
           sum(sum_gap) FILTER (WHERE kind = 'human_cont') AS g_c,
           sum(sumsq_gap) FILTER (WHERE kind = 'human_cont') AS gg_c,
           sum(n) FILTER (WHERE kind = 'sample') AS n_s,
           sum(sum_gap) FILTER (WHERE kind = 'sample') AS g_s,
           sum(sumsq_gap) FILTER (WHERE kind = 'sample') AS gg_s
    FROM doc_rollups u WHERE u.run_id = d.run_id AND u.doc_id = d.doc_id) r ON true;

-- Human vs model by position bucket: as in 002, with the standard errors of
-- the surprisal and entropy means too (added at the end: the existing
-- columns keep their places).
CREATE OR REPLACE VIEW shift_by_bucket AS
SELECT h.run_id, h.bucket, h.positions,
       h.n AS n_human, m.n AS n_model,
       h.mean_surprisal AS human_surprisal, m.mean_surprisal AS model_surprisal,
       h.mean_entropy AS human_entropy, m.mean_entropy AS model_entropy,
       h.mean_gap AS human_gap, h.se_gap AS human_se_gap,
       m.mean_gap AS model_gap, m.se_gap AS model_se_gap,
       h.mean_gap - m.mean_gap AS shift,
       sqrt(h.se_gap ^ 2 + m.se_gap ^ 2) AS se_shift,
       h.se_surprisal AS human_se_surprisal, m.se_surprisal AS model_se_surprisal,
       h.se_entropy AS human_se_entropy, m.se_entropy AS model_se_entropy
FROM bucket_stats h
JOIN bucket_stats m ON m.run_id = h.run_id AND m.bucket = h.bucket AND m.kind = 'sample'
WHERE h.kind = 'human_cont';

-- ---- converting the runs of schema 4 ----------------------------------------

SELECT tokshift_create_partition(run_id) FROM runs;

INSERT INTO sequence_stats (run_id, doc_id, seed, seq_no, cut, sample_idx, kind, token_id, logprob, entropy, rank,
                            top1_logprob, varentropy)
SELECT s.run_id, s.doc_id, s.seed, s.seq_no, s.cut, s.sample_idx, s.kind::tokshift_kind,
       coalesce(array_agg(t.token_id ORDER BY t.pos) FILTER (WHERE t.pos IS NOT NULL), '{}'),
       coalesce(array_agg(t.logprob ORDER BY t.pos) FILTER (WHERE t.pos IS NOT NULL), '{}'),
       coalesce(array_agg(t.entropy ORDER BY t.pos) FILTER (WHERE t.pos IS NOT NULL), '{}'),
       coalesce(array_agg(t.rank ORDER BY t.pos) FILTER (WHERE t.pos IS NOT NULL), '{}'),
       coalesce(array_agg(t.top1_logprob ORDER BY t.pos) FILTER (WHERE t.pos IS NOT NULL), '{}'),
       coalesce(array_agg(t.varentropy ORDER BY t.pos) FILTER (WHERE t.pos IS NOT NULL), '{}')
FROM sequences_v4 s
LEFT JOIN token_stats t USING (run_id, doc_id, seq_no)
GROUP BY s.run_id, s.doc_id, s.seq_no;

-- The conversion is exact, or nothing happens: every old row is in
-- token_view with every column equal (so positions, context lengths and
-- counts follow the derivations), and the sequences are the old ones.
DO $$
DECLARE
    n_old bigint;
    n_new bigint;
    n_diff bigint;
BEGIN
    SELECT count(*) INTO n_old FROM token_stats;
    SELECT count(*) INTO n_new FROM token_view;
    SELECT count(*) INTO n_diff FROM (
        SELECT t.run_id, t.doc_id, t.seq_no, s.kind, s.cut, s.sample_idx, t.pos, t.token_id, t.logprob, t.entropy,
               t.rank, t.top1_logprob, t.varentropy, t.context_len
        FROM token_stats t JOIN sequences_v4 s USING (run_id, doc_id, seq_no)
        EXCEPT ALL
        SELECT run_id, doc_id, seq_no, kind, cut, sample_idx, pos, token_id, logprob, entropy, rank, top1_logprob,
               varentropy, context_len
        FROM token_view) d;
    IF n_old <> n_new OR n_diff <> 0 THEN
        RAISE EXCEPTION 'converting token_stats: % old rows, % new, % differ (positions not contiguous, or context '
                        'lengths not those of the run''s window and stride?)', n_old, n_new, n_diff;
    END IF;
    SELECT count(*) INTO n_diff FROM (
        SELECT run_id, doc_id, seq_no, kind, cut, sample_idx, seed, temperature, top_k, top_p, n_tokens
        FROM sequences_v4
        EXCEPT ALL
        SELECT run_id, doc_id, seq_no, kind, cut, sample_idx, seed, temperature, top_k, top_p, n_tokens
        FROM sequences) d;
    IF n_diff <> 0 THEN
        RAISE EXCEPTION 'converting sequences: % sequences differ (sampling settings not the run''s?)', n_diff;
    END IF;
END $$;

-- Rollups of the converted runs, from their rows (only done jobs have rows).
INSERT INTO calib_rollups (run_id, job_id, kind, bin, n, n_correct, sum_conf, sumsq_conf)
SELECT v.run_id, d.job_id, v.kind::tokshift_kind, width_bucket(exp(v.top1_logprob), 0, 1.0000001, 10),
       count(*), count(*) FILTER (WHERE v.rank = 1), sum(exp(v.top1_logprob)), sum(exp(v.top1_logprob) ^ 2)
FROM token_view v JOIN documents d USING (run_id, doc_id)
GROUP BY 1, 2, 3, 4;

INSERT INTO doc_rollups (run_id, doc_id, kind, cut, n, n_z, sum_surprisal, sumsq_surprisal, sum_entropy,
                         sumsq_entropy, sum_gap, sumsq_gap, sum_z, sumsq_z)
SELECT run_id, doc_id, kind::tokshift_kind, coalesce(cut, 0), count(*), count(z),
       sum(surprisal::float8), sum(surprisal::float8 ^ 2), sum(entropy::float8), sum(entropy::float8 ^ 2),
       sum(gap::float8), sum(gap::float8 ^ 2), coalesce(sum(z), 0), coalesce(sum(z ^ 2), 0)
FROM token_view
GROUP BY 1, 2, 3, 4;

INSERT INTO top_tokens (run_id, job_id, doc_id, pos, token_id, logprob, entropy, rank, varentropy, z)
SELECT run_id, job_id, doc_id, pos, token_id, logprob, entropy, rank, varentropy, z
FROM (SELECT v.*, d.job_id,
             row_number() OVER (PARTITION BY v.run_id, d.job_id ORDER BY v.z DESC, v.doc_id, v.pos) AS k
      FROM token_view v JOIN documents d USING (run_id, doc_id)
      WHERE v.kind = 'human' AND v.z IS NOT NULL) t
WHERE k <= 64;

DROP TABLE token_stats, sequences_v4;
ANALYZE sequence_stats, calib_rollups, doc_rollups, top_tokens;
