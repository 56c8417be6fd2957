-- 011_sequence_sums.sql - a sequence's sums in its own row of sequence_stats.
--
-- What it is: sequence_stats gains scalar columns sum_surprisal,
-- sum_entropy, sum_gap, sum_z (double precision, the token values in
-- double from the stored floats, as token_view computes them; z over its
-- n_z tokens with varentropy > 0) and n_z, written by the worker in the same
-- COPY as the arrays (a sequence's n is cardinality(token_id), not stored).
-- They replace the table sequence_means of 008 (a row of 24 bytes of
-- header, 68 of data and a primary-key entry per sequence, ~3 bytes per
-- token with continuations of 32 tokens): the sums ride in a row that is
-- there anyway.  sequence_auroc reads them; sequence_means is dropped.
--
-- Existing runs: the columns are added with a default of 0 (no rewrite:
-- PostgreSQL keeps the default in the catalogue for the rows already
-- there), then every sequence that has a sequence_means row gets its sums
-- by one UPDATE joining the two tables on their primary keys (a hash join:
-- linear).  Sequences without tokens have no such row and keep 0.  The
-- defaults are then dropped, so a writer that omits the sums fails instead
-- of storing zeros.  The UPDATE writes a new version of each row's heap
-- tuple (the arrays' TOAST values are shared, not copied); the old
-- versions are reclaimed by (auto)vacuum.  The migration fails, changing
-- nothing, if a sequence_means row has no sequence, or a sequence with
-- tokens has no sequence_means row.
--
-- The partitions: columns added to the partitioned table are added to
-- every partition (003/005: one partition sequence_stats_r<run_id> per run,
-- made by tokshift_create_partition, which needs no change: new partitions
-- take the parent's columns).
--
-- Also cross_stats (below): cross-scoring means with clustered errors.
--
-- What it is not: a change of the arrays or of any other table.

ALTER TABLE sequence_stats
    ADD COLUMN sum_surprisal double precision NOT NULL DEFAULT 0,
    ADD COLUMN sum_entropy double precision NOT NULL DEFAULT 0,
    ADD COLUMN sum_gap double precision NOT NULL DEFAULT 0,
    ADD COLUMN sum_z double precision NOT NULL DEFAULT 0,
    ADD COLUMN n_z integer NOT NULL DEFAULT 0 CHECK (n_z >= 0);

DO $$
DECLARE
    n_means bigint;
    n_set bigint;
    n_with_tokens bigint;
BEGIN
    SELECT count(*) INTO n_means FROM sequence_means;
    UPDATE sequence_stats s
       SET sum_surprisal = m.sum_surprisal, sum_entropy = m.sum_entropy, sum_gap = m.sum_gap, sum_z = m.sum_z,
           n_z = m.n_z
      FROM sequence_means m
     WHERE m.run_id = s.run_id AND m.doc_id = s.doc_id AND m.seq_no = s.seq_no;
    GET DIAGNOSTICS n_set = ROW_COUNT;
    SELECT count(*) INTO n_with_tokens FROM sequence_stats WHERE cardinality(token_id) > 0;
    IF n_set <> n_means OR n_set <> n_with_tokens THEN
        RAISE EXCEPTION 'moving sequence_means into sequence_stats: % rows of means, % sequences matched, % '
                        'sequences with tokens', n_means, n_set, n_with_tokens;
    END IF;
END $$;

ALTER TABLE sequence_stats
    ALTER COLUMN sum_surprisal DROP DEFAULT, ALTER COLUMN sum_entropy DROP DEFAULT,
    ALTER COLUMN sum_gap DROP DEFAULT, ALTER COLUMN sum_z DROP DEFAULT, ALTER COLUMN n_z DROP DEFAULT;

-- As in 008, from the sums in sequence_stats (the filter on kind comes
-- before the means: a human text's arrays are never read).
CREATE OR REPLACE VIEW sequence_auroc AS
WITH v AS (
    SELECT m.run_id, m.kind, s.stat, s.x
    FROM sequence_stats m
    CROSS JOIN LATERAL (VALUES ('surprisal', m.sum_surprisal / nullif(cardinality(m.token_id), 0)),
                               ('gap', m.sum_gap / nullif(cardinality(m.token_id), 0)),
                               ('z', m.sum_z / nullif(m.n_z, 0))) s(stat, x)
    WHERE m.kind IN ('human_cont', 'sample') AND s.x IS NOT NULL),
r AS (
    SELECT run_id, kind, stat,
           rank() OVER (PARTITION BY run_id, stat ORDER BY x)
               + (count(*) OVER (PARTITION BY run_id, stat, x) - 1) / 2.0 AS midrank
    FROM v),
u AS (
    SELECT run_id, stat, count(*) FILTER (WHERE kind = 'human_cont') AS n_human,
           count(*) FILTER (WHERE kind = 'sample') AS n_sample,
           sum(midrank) FILTER (WHERE kind = 'human_cont') AS rank_sum_human
    FROM r GROUP BY run_id, stat)
SELECT run_id, stat, n_human, n_sample,
       rank_sum_human - n_human * (n_human + 1) / 2.0 AS u,
       ((rank_sum_human - n_human * (n_human + 1) / 2.0) / nullif(n_human * n_sample, 0))::double precision AS auroc
FROM u;

DROP TABLE sequence_means;
ANALYZE sequence_stats;

-- ---- cross-scoring: means with standard errors clustered by document -------
--
-- cross_stats: per cross-scoring run (observer), its generator and kind:
-- the mean surprisal of the same tokens under each model and the mean
-- log-likelihood ratio per token (observer log p - generator log p, the
-- per-token mean of cross_sequences' llr), each with its standard error
-- clustered by document (tokshift_cluster_se, 007: a document's human
-- text, continuations and samples are its cluster).  It reads the two runs'
-- doc_rollups (n and sums per document, kind and cut), joined on (doc_id,
-- kind, cut) where both scored as many tokens: linear in documents, no
-- token rows.  With identical vocabularies (what a cross-scoring worker
-- requires, 010) the two runs score the same tokens, so these are the means
-- over cross_scores' rows; a document one run could not measure is in
-- neither side.
CREATE VIEW cross_stats AS
WITH d AS (
    SELECT r.run_id AS observer_run, r.score_run_id AS generator_run, o.kind::text AS kind, o.doc_id,
           sum(o.n)::numeric AS n, sum(o.sum_surprisal) AS so, sum(g.sum_surprisal) AS sg
      FROM runs r
      JOIN doc_rollups o ON o.run_id = r.run_id
      JOIN doc_rollups g ON g.run_id = r.score_run_id AND g.doc_id = o.doc_id AND g.kind = o.kind AND g.cut = o.cut
                        AND g.n = o.n
     WHERE r.score_run_id IS NOT NULL
     GROUP BY 1, 2, 3, 4)
SELECT observer_run, generator_run, kind, sum(n) AS n_tokens, count(*) AS n_docs,
       sum(so) / sum(n) AS observer_surprisal,
       tokshift_cluster_se(count(*), sum(n), sum(so), sum(so * so), sum(n * so), sum(n * n)) AS se_observer_surprisal,
       sum(sg) / sum(n) AS generator_surprisal,
       tokshift_cluster_se(count(*), sum(n), sum(sg), sum(sg * sg), sum(n * sg), sum(n * n)) AS se_generator_surprisal,
       sum(sg - so) / sum(n) AS llr_per_token,
       tokshift_cluster_se(count(*), sum(n), sum(sg - so), sum((sg - so) ^ 2), sum(n * (sg - so)), sum(n * n))
           AS se_llr_per_token
  FROM d GROUP BY 1, 2, 3;
