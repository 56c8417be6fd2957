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
-- Also (below): cut_byte, where a continuation's cut falls in the
-- document's text, for pairing runs whose tokenizers differ; cross_stats:
-- cross-scoring means with clustered errors.
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

-- A continuation's cut as a byte offset in the document's text: the first
-- byte of the token the cut starts at (the tokens' decoded bytes, less a
-- tokenizer's added space prefix, laid over the text).  NULL for the human
-- text, for the runs of before, and where the tokens do not decode back to
-- the text byte for byte (a normalizing tokenizer).  Runs over one corpus
-- whose cuts are placed in bytes (--cut-every-bytes) pair on it whatever
-- their tokenizers (tokshift_compare_bytes).
ALTER TABLE sequence_stats
    ADD COLUMN cut_byte integer CHECK (cut_byte IS NULL OR (cut_byte >= 0 AND kind <> 'human'));

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

-- ---- pairing runs whose tokenizers differ, by the cuts' byte offsets --------

-- Each sequence, as 005 gave it, and its cut's byte offset.
CREATE OR REPLACE VIEW sequences AS
SELECT s.run_id, s.doc_id, s.seq_no, s.kind::text AS kind, s.cut, s.sample_idx, s.seed,
       CASE WHEN s.kind = 'sample' THEN (r.settings->>'temperature')::real END AS temperature,
       CASE WHEN s.kind = 'sample' THEN (r.settings->>'top_k')::integer END AS top_k,
       CASE WHEN s.kind = 'sample' THEN (r.settings->>'top_p')::real END AS top_p,
       cardinality(s.token_id) AS n_tokens, s.cut_byte
FROM sequence_stats s JOIN runs r USING (run_id);

-- Whether runs a and b have different vocabularies (vocab_digests; equal
-- when either is not registered).
CREATE FUNCTION tokshift_tokenizers_differ(p_a bigint, p_b bigint) RETURNS boolean
LANGUAGE sql STABLE AS $$
SELECT coalesce(da.digest <> db.digest, false)
  FROM runs a JOIN runs b ON b.run_id = p_b
  LEFT JOIN vocab_digests da ON da.identity = a.model_identity
  LEFT JOIN vocab_digests db ON db.identity = b.model_identity
 WHERE a.run_id = p_a
$$;

-- The cuts two runs share: (ext_id, cut_byte) of their human continuations
-- in both, and how many each has.
CREATE FUNCTION tokshift_cuts_paired(p_a bigint, p_b bigint)
RETURNS TABLE (n_cuts_a bigint, n_cuts_b bigint, n_paired bigint)
LANGUAGE sql STABLE AS $$
WITH c AS (
    SELECT s.run_id = p_b AS b, d.ext_id, s.cut_byte
      FROM sequence_stats s JOIN documents d USING (run_id, doc_id)
     WHERE s.run_id IN (p_a, p_b) AND s.kind = 'human_cont' AND s.cut_byte IS NOT NULL)
SELECT count(*) FILTER (WHERE NOT b), count(*) FILTER (WHERE b),
       (SELECT count(*) FROM (SELECT ext_id, cut_byte FROM c WHERE NOT b
                              INTERSECT SELECT ext_id, cut_byte FROM c WHERE b) i)
  FROM c
$$;

-- tokshift_compare (008), for runs whose tokenizers differ as well: those
-- pair cut by cut where both cut a document at the same byte (cut_byte;
-- runs made with the same --cut-every-bytes), each cut's continuation and
-- samples against the other's, over all their positions (a position in
-- tokens means other text under another tokenizer), one row per kind
-- (bucket -1, positions 'all, by byte'); the means per token are each
-- model's own tokens', and the errors are paired by document over the
-- shared cuts.  Runs with one tokenizer pair as in 008, by document and
-- position bucket.  Linear in the two runs' continuations (their sums and
-- array lengths, from sequence_stats) or in their doc_bucket_rollups.
CREATE OR REPLACE FUNCTION tokshift_compare(p_a bigint, p_b bigint)
RETURNS TABLE (kind text, bucket integer, positions text, n_docs bigint, n_a numeric, n_b numeric,
               surprisal_a double precision, surprisal_b double precision, diff_surprisal double precision,
               se_diff_surprisal double precision,
               entropy_a double precision, entropy_b double precision, diff_entropy double precision,
               se_diff_entropy double precision,
               gap_a double precision, gap_b double precision, diff_gap double precision,
               se_diff_gap double precision,
               z_a double precision, z_b double precision, diff_z double precision, se_diff_z double precision)
LANGUAGE sql STABLE AS $$
WITH m AS (SELECT tokshift_tokenizers_differ(p_a, p_b) AS by_bytes),
pc AS (
    SELECT d.ext_id, s.cut_byte FROM sequence_stats s JOIN documents d USING (run_id, doc_id), m
     WHERE m.by_bytes AND s.run_id = p_a AND s.kind = 'human_cont' AND s.cut_byte IS NOT NULL
    INTERSECT
    SELECT d.ext_id, s.cut_byte FROM sequence_stats s JOIN documents d USING (run_id, doc_id), m
     WHERE m.by_bytes AND s.run_id = p_b AND s.kind = 'human_cont' AND s.cut_byte IS NOT NULL),
x AS (
    SELECT d.ext_id, u.kind::text AS kind, u.bucket, u.run_id = p_b AS b, u.n::double precision AS n,
           u.n_z::double precision AS nz, u.sum_surprisal AS s, u.sum_entropy AS h, u.sum_gap AS g, u.sum_z AS z
    FROM doc_bucket_rollups u JOIN documents d USING (run_id, doc_id), m
    WHERE NOT m.by_bytes AND u.run_id IN (p_a, p_b)
    UNION ALL
    SELECT d.ext_id, s.kind::text, -1, s.run_id = p_b, cardinality(s.token_id)::double precision,
           s.n_z::double precision, s.sum_surprisal, s.sum_entropy, s.sum_gap, s.sum_z
    FROM sequence_stats s JOIN documents d USING (run_id, doc_id) JOIN pc USING (ext_id, cut_byte)
    WHERE s.run_id IN (p_a, p_b) AND s.kind IN ('human_cont', 'sample')),
c AS (
    SELECT kind, bucket,
           coalesce(sum(n) FILTER (WHERE NOT b), 0) AS na, coalesce(sum(n) FILTER (WHERE b), 0) AS nb,
           coalesce(sum(nz) FILTER (WHERE NOT b), 0) AS za, coalesce(sum(nz) FILTER (WHERE b), 0) AS zb,
           coalesce(sum(s) FILTER (WHERE NOT b), 0) AS sa, coalesce(sum(s) FILTER (WHERE b), 0) AS sb,
           coalesce(sum(h) FILTER (WHERE NOT b), 0) AS ha, coalesce(sum(h) FILTER (WHERE b), 0) AS hb,
           coalesce(sum(g) FILTER (WHERE NOT b), 0) AS ga, coalesce(sum(g) FILTER (WHERE b), 0) AS gb,
           coalesce(sum(z) FILTER (WHERE NOT b), 0) AS qa, coalesce(sum(z) FILTER (WHERE b), 0) AS qb
    FROM x GROUP BY ext_id, kind, bucket),
t AS (
    SELECT kind, bucket, count(*) AS g, count(*) FILTER (WHERE za > 0 OR zb > 0) AS gz,
           sum(na) AS na, sum(nb) AS nb, sum(na * na) AS nna, sum(nb * nb) AS nnb, sum(na * nb) AS nnx,
           sum(za) AS za, sum(zb) AS zb, sum(za * za) AS zza, sum(zb * zb) AS zzb, sum(za * zb) AS zzx,
           sum(sa) AS sa, sum(sa * sa) AS ssa, sum(na * sa) AS nsa, sum(sb) AS sb, sum(sb * sb) AS ssb,
           sum(nb * sb) AS nsb, sum(sa * sb) AS xss, sum(sa * nb) AS xsn, sum(na * sb) AS xns,
           sum(ha) AS ha, sum(ha * ha) AS hha, sum(na * ha) AS nha, sum(hb) AS hb, sum(hb * hb) AS hhb,
           sum(nb * hb) AS nhb, sum(ha * hb) AS xhh, sum(ha * nb) AS xhn, sum(na * hb) AS xnh,
           sum(ga) AS ga, sum(ga * ga) AS gga, sum(na * ga) AS nga, sum(gb) AS gb, sum(gb * gb) AS ggb,
           sum(nb * gb) AS ngb, sum(ga * gb) AS xgg, sum(ga * nb) AS xgn, sum(na * gb) AS xng,
           sum(qa) AS qa, sum(qa * qa) AS qqa, sum(za * qa) AS zqa, sum(qb) AS qb, sum(qb * qb) AS qqb,
           sum(zb * qb) AS zqb, sum(qa * qb) AS xqq, sum(qa * zb) AS xqz, sum(za * qb) AS xzq
    FROM c GROUP BY kind, bucket)
SELECT kind, bucket, CASE WHEN bucket < 0 THEN 'all, by byte' ELSE tokshift_bucket_label(bucket) END, g,
       na::numeric, nb::numeric,
       sa / nullif(na, 0), sb / nullif(nb, 0), sb / nullif(nb, 0) - sa / nullif(na, 0),
       tokshift_cluster_se_diff(g, na::numeric, sa, ssa, nsa, nna, nb::numeric, sb, ssb, nsb, nnb, xss, xsn, xns, nnx),
       ha / nullif(na, 0), hb / nullif(nb, 0), hb / nullif(nb, 0) - ha / nullif(na, 0),
       tokshift_cluster_se_diff(g, na::numeric, ha, hha, nha, nna, nb::numeric, hb, hhb, nhb, nnb, xhh, xhn, xnh, nnx),
       ga / nullif(na, 0), gb / nullif(nb, 0), gb / nullif(nb, 0) - ga / nullif(na, 0),
       tokshift_cluster_se_diff(g, na::numeric, ga, gga, nga, nna, nb::numeric, gb, ggb, ngb, nnb, xgg, xgn, xng, nnx),
       qa / nullif(za, 0), qb / nullif(zb, 0), qb / nullif(zb, 0) - qa / nullif(za, 0),
       tokshift_cluster_se_diff(gz, za::numeric, qa, qqa, zqa, zza, zb::numeric, qb, qqb, zqb, zzb, xqq, xqz, xzq, zzx)
FROM t ORDER BY kind, bucket
$$;

-- Why runs a and b are not comparable (008), now with cut_every_bytes among
-- the settings that place the cuts, and runs whose tokenizers differ
-- comparable when their cuts are placed in bytes (both with the same
-- --cut-every-bytes): tokshift_compare then pairs them by byte offset.
CREATE OR REPLACE FUNCTION tokshift_runs_differ(p_a bigint, p_b bigint) RETURNS text
LANGUAGE sql STABLE AS $$
SELECT nullif(concat_ws('; ',
    CASE WHEN a.corpus IS DISTINCT FROM b.corpus THEN format('corpus %s vs %s', a.corpus, b.corpus) END,
    (SELECT string_agg(format('%s %s vs %s', k, coalesce(a.settings -> k, 'null'), coalesce(b.settings -> k, 'null')),
                       ', ')
     FROM unnest(ARRAY['window', 'stride', 'prefix_lengths', 'cut_every', 'cut_every_bytes', 'cont_len', 'seed']) k
     WHERE a.settings -> k IS DISTINCT FROM b.settings -> k),
    (SELECT format('%s documents differ (ext_id or size), e.g. %s', count(*), to_json(min(coalesce(x.ext_id, y.ext_id))))
     FROM (SELECT ext_id, n_bytes FROM documents WHERE run_id = p_a) x
     FULL JOIN (SELECT ext_id, n_bytes FROM documents WHERE run_id = p_b) y ON x.ext_id = y.ext_id AND x.n_bytes = y.n_bytes
     WHERE x.ext_id IS NULL OR y.ext_id IS NULL HAVING count(*) > 0),
    CASE WHEN a.model_identity <> b.model_identity AND coalesce((a.settings ->> 'cut_every_bytes')::integer, 0) = 0 THEN
        (SELECT format('tokenizers differ (%s vocabulary entries not shared): such runs pair only when their cuts '
                       'are placed in bytes (tokshift-coordinator --cut-every-bytes N, the same N for both)', count(*))
         FROM (SELECT v.token_id, v.piece FROM vocab v JOIN models m USING (model_id) WHERE m.identity = a.model_identity) x
         FULL JOIN (SELECT v.token_id, v.piece FROM vocab v JOIN models m USING (model_id)
                    WHERE m.identity = b.model_identity) y USING (token_id, piece)
         WHERE x.piece IS NULL OR y.piece IS NULL HAVING count(*) > 0) END), '')
FROM runs a, runs b WHERE a.run_id = p_a AND b.run_id = p_b
$$;
