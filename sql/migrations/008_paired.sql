-- 008_paired.sql - clustered standard errors everywhere, paired comparison
-- of runs, and how separable human and model text are (AUROC).
--
-- What it is:
--   Cluster terms.  A cluster is a document: its human text, its human
--   continuations and, for samples, all K samples of all its cuts (the
--   conservative choice: clustering by document nests clustering by
--   document x cut, so the error allows for correlation between cuts of one
--   document as well as between the samples of one prefix).  For a mean
--   over tokens of a cell (job, kind, position; bucket; run) the worker adds,
--   over the documents c with tokens in the cell (n_c tokens, S_c their sum
--   of a statistic):
--     g           the number of such documents      c_nn        Σ n_c²
--     c_ss_X      Σ S_c² of statistic X            c_ns_X      Σ n_c S_c
--     g_z, c_nn_z, c_ss_z, c_ns_z   the same for z over its own n_z tokens
--   and, on a human_cont row, the cross terms with the same document's
--   samples in the same cell, for the clustered error of the shift
--   (human gap - model gap), whose two means share their documents:
--     x_ss_gap  Σ S_c(h) S_c(s)   x_sn_gap  Σ S_c(h) n_c(s)
--     x_ns_gap  Σ n_c(h) S_c(s)   x_nn      Σ n_c(h) n_c(s)
--   A document never spans two jobs, so all of these add across jobs.
--   Squares do not add across positions, so buckets and the whole run have
--   their own rows: bucket_rollups (bucket as tokshift_bucket gives it; -1
--   for all positions).  calib_rollups gains the same terms for confidence
--   and accuracy.
--   doc_bucket_rollups  per document, kind and position bucket: n and sums;
--                       what a paired comparison of two runs needs.
--   sequence_means      per scored sequence: n and sums of surprisal,
--                       entropy, gap, z (n_z): what the AUROC needs.
--   tokshift_cluster_se_diff  the clustered standard error of a difference of
--                       two ratio means over the same clusters.
--   Views: position_stats, bucket_stats, shift_by_bucket, calibration and
--   document_summary now give clustered standard errors (se_*) and the
--   number of documents (n_docs); run_stats (whole-run means per kind);
--   cell_sums and cell_stats (what they share: sums and means per cell);
--   compare_by_bucket / tokshift_compare(a, b) (two runs paired by
--   document); tokshift_runs_differ(a, b) (why two runs are not
--   comparable); sequence_auroc (AUROC by statistic, from ranks).
--
-- Existing runs are converted from their token rows (one pass per table).
--
-- What it is not: pairing of runs whose tokenizers differ (the cuts are in
-- tokens; see README), nor the bootstrap interval of the AUROC (the CLI
-- computes it from sequence_means).

ALTER TABLE job_rollups
    ADD COLUMN g bigint NOT NULL DEFAULT 0, ADD COLUMN c_nn double precision NOT NULL DEFAULT 0,
    ADD COLUMN c_ss_surprisal double precision NOT NULL DEFAULT 0,
    ADD COLUMN c_ns_surprisal double precision NOT NULL DEFAULT 0,
    ADD COLUMN c_ss_entropy double precision NOT NULL DEFAULT 0,
    ADD COLUMN c_ns_entropy double precision NOT NULL DEFAULT 0,
    ADD COLUMN c_ss_gap double precision NOT NULL DEFAULT 0, ADD COLUMN c_ns_gap double precision NOT NULL DEFAULT 0,
    ADD COLUMN g_z bigint NOT NULL DEFAULT 0, ADD COLUMN c_nn_z double precision NOT NULL DEFAULT 0,
    ADD COLUMN c_ss_z double precision NOT NULL DEFAULT 0, ADD COLUMN c_ns_z double precision NOT NULL DEFAULT 0,
    ADD COLUMN x_ss_gap double precision NOT NULL DEFAULT 0, ADD COLUMN x_sn_gap double precision NOT NULL DEFAULT 0,
    ADD COLUMN x_ns_gap double precision NOT NULL DEFAULT 0, ADD COLUMN x_nn double precision NOT NULL DEFAULT 0;

CREATE TABLE bucket_rollups (LIKE job_rollups INCLUDING DEFAULTS);
ALTER TABLE bucket_rollups RENAME COLUMN position TO bucket;
ALTER TABLE bucket_rollups ADD PRIMARY KEY (run_id, job_id, kind, bucket),
    ADD FOREIGN KEY (run_id, job_id) REFERENCES jobs ON DELETE CASCADE;

ALTER TABLE calib_rollups
    ADD COLUMN g bigint NOT NULL DEFAULT 0, ADD COLUMN c_nn double precision NOT NULL DEFAULT 0,
    ADD COLUMN c_ss_conf double precision NOT NULL DEFAULT 0, ADD COLUMN c_ns_conf double precision NOT NULL DEFAULT 0,
    ADD COLUMN c_ss_correct double precision NOT NULL DEFAULT 0,
    ADD COLUMN c_ns_correct double precision NOT NULL DEFAULT 0;

CREATE TABLE doc_bucket_rollups (
    run_id          bigint NOT NULL,
    doc_id          bigint NOT NULL,
    kind            tokshift_kind NOT NULL,
    bucket          integer NOT NULL,   -- tokshift_bucket(position)
    n               bigint NOT NULL,
    n_z             bigint NOT NULL,
    sum_surprisal   double precision NOT NULL,
    sum_entropy     double precision NOT NULL,
    sum_gap         double precision NOT NULL,
    sum_z           double precision NOT NULL,
    PRIMARY KEY (run_id, doc_id, kind, bucket),
    FOREIGN KEY (run_id, doc_id) REFERENCES documents ON DELETE CASCADE
);

CREATE TABLE sequence_means (
    run_id          bigint NOT NULL,
    doc_id          bigint NOT NULL,
    seq_no          integer NOT NULL,
    kind            tokshift_kind NOT NULL,
    n               bigint NOT NULL,
    n_z             bigint NOT NULL,
    sum_surprisal   double precision NOT NULL,
    sum_entropy     double precision NOT NULL,
    sum_gap         double precision NOT NULL,
    sum_z           double precision NOT NULL,
    PRIMARY KEY (run_id, doc_id, seq_no),
    FOREIGN KEY (run_id, doc_id) REFERENCES documents ON DELETE CASCADE
);

-- The clustered (CR1) standard error of m_b - m_a, two ratio means over the
-- same g clusters (a cluster absent from one side has n = S = 0 there):
-- with e_c = (S_bc - m_b n_bc) / N_b - (S_ac - m_a n_ac) / N_a,
--   V = g / (g - 1) Σ_c e_c²,
-- expanded into sums that add across jobs (x_sn = Σ S_a n_b, x_ns = Σ n_a S_b).
CREATE FUNCTION tokshift_cluster_se_diff(g numeric, n_a numeric, s_a double precision, ss_a double precision,
                                         ns_a double precision, nn_a double precision, n_b numeric,
                                         s_b double precision, ss_b double precision, ns_b double precision,
                                         nn_b double precision, x_ss double precision, x_sn double precision,
                                         x_ns double precision, x_nn double precision) RETURNS double precision
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    RETURN CASE WHEN g > 1 AND n_a > 0 AND n_b > 0 THEN
        sqrt(greatest((ss_a - 2 * (s_a / n_a) * ns_a + (s_a / n_a) ^ 2 * nn_a) / n_a ^ 2
                      + (ss_b - 2 * (s_b / n_b) * ns_b + (s_b / n_b) ^ 2 * nn_b) / n_b ^ 2
                      - 2 * (x_ss - (s_b / n_b) * x_sn - (s_a / n_a) * x_ns + (s_a / n_a) * (s_b / n_b) * x_nn)
                          / (n_a * n_b), 0) * g / (g - 1)) END;

-- "mean ± se" for the terminal (4 decimals; the mean alone without an se).
CREATE FUNCTION tokshift_pm(x double precision, se double precision) RETURNS text
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    RETURN round(x::numeric, 4) || coalesce(' ± ' || round(se::numeric, 4), '');

-- ---- the views --------------------------------------------------------------

-- The rollups of a run's finished jobs, summed per cell: level 'position'
-- (job_rollups, key = position) or 'bucket' (bucket_rollups, key = bucket,
-- -1 for all positions).  A query for one level reads only its table (the
-- planner drops the other branch).
CREATE VIEW cell_sums AS
SELECT r.level, r.run_id, r.kind, r.key,
       sum(r.n) AS n, sum(r.sum_surprisal) AS s1, sum(r.sumsq_surprisal) AS s2,
       sum(r.sum_entropy) AS h1, sum(r.sumsq_entropy) AS h2,
       sum(r.sum_gap) AS g1, sum(r.sumsq_gap) AS g2,
       sum(r.n_z) AS nz, sum(r.sum_z) AS z1, sum(r.sumsq_z) AS z2,
       sum(r.g) AS n_docs, sum(r.c_nn) AS c_nn, sum(r.c_ss_surprisal) AS c_ss_s, sum(r.c_ns_surprisal) AS c_ns_s,
       sum(r.c_ss_entropy) AS c_ss_h, sum(r.c_ns_entropy) AS c_ns_h, sum(r.c_ss_gap) AS c_ss_g,
       sum(r.c_ns_gap) AS c_ns_g, sum(r.g_z) AS n_docs_z, sum(r.c_nn_z) AS c_nn_z, sum(r.c_ss_z) AS c_ss_z,
       sum(r.c_ns_z) AS c_ns_z, sum(r.x_ss_gap) AS x_ss_g, sum(r.x_sn_gap) AS x_sn_g, sum(r.x_ns_gap) AS x_ns_g,
       sum(r.x_nn) AS x_nn
FROM (SELECT 'position' AS level, r.*, r.position AS key FROM job_rollups r
      UNION ALL
      SELECT 'bucket' AS level, b.*, b.bucket AS key FROM bucket_rollups b) r
JOIN jobs j USING (run_id, job_id)
WHERE j.state = 'done'
GROUP BY r.level, r.run_id, r.kind, r.key;

-- Means with standard errors clustered by document, per cell.
CREATE VIEW cell_stats AS
SELECT level, run_id, kind, key, n, n_docs,
       s1 / n AS mean_surprisal, tokshift_cluster_se(n_docs, n, s1, c_ss_s, c_ns_s, c_nn) AS se_surprisal,
       h1 / n AS mean_entropy, tokshift_cluster_se(n_docs, n, h1, c_ss_h, c_ns_h, c_nn) AS se_entropy,
       g1 / n AS mean_gap, tokshift_cluster_se(n_docs, n, g1, c_ss_g, c_ns_g, c_nn) AS se_gap,
       z1 / nullif(nz, 0) AS mean_z, tokshift_cluster_se(n_docs_z, nz, z1, c_ss_z, c_ns_z, c_nn_z) AS se_z
FROM cell_sums;

-- 002's per-position sums, as before (the columns they had, then the
-- cluster terms).
CREATE OR REPLACE VIEW rollup_sums AS
SELECT run_id, kind, key AS position, n, s1, s2, h1, h2, g1, g2, nz, z1, z2, n_docs, c_nn, c_ss_s, c_ns_s, c_ss_h,
       c_ns_h, c_ss_g, c_ns_g, n_docs_z, c_nn_z, c_ss_z, c_ns_z, x_ss_g, x_sn_g, x_ns_g, x_nn
FROM cell_sums WHERE level = 'position';

-- Means by run, kind and exact position; se_* clustered by document.
CREATE OR REPLACE VIEW position_stats AS
SELECT run_id, kind, key AS position, n, mean_surprisal, se_surprisal, mean_entropy, se_entropy, mean_gap, se_gap,
       mean_z, se_z, n_docs
FROM cell_stats WHERE level = 'position';

-- The same in position buckets (0, 1, 2-3, 4-7, ...), clustered at that level.
CREATE OR REPLACE VIEW bucket_stats AS
SELECT run_id, kind, key AS bucket, tokshift_bucket_label(key) AS positions, n, mean_surprisal, se_surprisal,
       mean_entropy, se_entropy, mean_gap, se_gap, mean_z, se_z, n_docs
FROM cell_stats WHERE level = 'bucket' AND key >= 0;

-- Whole-run means per kind (all positions), clustered by document.
CREATE VIEW run_stats AS
SELECT run_id, kind, n, n_docs, mean_surprisal, se_surprisal, mean_entropy, se_entropy, mean_gap, se_gap, mean_z, se_z
FROM cell_stats WHERE level = 'bucket' AND key = -1;

-- Human vs model by position bucket.  The shift's error is clustered by
-- document with the covariance of the two means (they share documents).
CREATE OR REPLACE VIEW shift_by_bucket AS
SELECT h.run_id, h.key AS bucket, tokshift_bucket_label(h.key) AS positions,
       h.n AS n_human, m.n AS n_model,
       h.s1 / h.n AS human_surprisal, m.s1 / m.n AS model_surprisal,
       h.h1 / h.n AS human_entropy, m.h1 / m.n AS model_entropy,
       h.g1 / h.n AS human_gap, tokshift_cluster_se(h.n_docs, h.n, h.g1, h.c_ss_g, h.c_ns_g, h.c_nn) AS human_se_gap,
       m.g1 / m.n AS model_gap, tokshift_cluster_se(m.n_docs, m.n, m.g1, m.c_ss_g, m.c_ns_g, m.c_nn) AS model_se_gap,
       h.g1 / h.n - m.g1 / m.n AS shift,
       tokshift_cluster_se_diff(greatest(h.n_docs, m.n_docs), h.n, h.g1, h.c_ss_g, h.c_ns_g, h.c_nn,
                                m.n, m.g1, m.c_ss_g, m.c_ns_g, m.c_nn, h.x_ss_g, h.x_sn_g, h.x_ns_g, h.x_nn) AS se_shift,
       tokshift_cluster_se(h.n_docs, h.n, h.s1, h.c_ss_s, h.c_ns_s, h.c_nn) AS human_se_surprisal,
       tokshift_cluster_se(m.n_docs, m.n, m.s1, m.c_ss_s, m.c_ns_s, m.c_nn) AS model_se_surprisal,
       tokshift_cluster_se(h.n_docs, h.n, h.h1, h.c_ss_h, h.c_ns_h, h.c_nn) AS human_se_entropy,
       tokshift_cluster_se(m.n_docs, m.n, m.h1, m.c_ss_h, m.c_ns_h, m.c_nn) AS model_se_entropy,
       h.n_docs
FROM cell_sums h
JOIN cell_sums m ON m.level = h.level AND m.run_id = h.run_id AND m.key = h.key AND m.kind = 'sample'
WHERE h.level = 'bucket' AND h.kind = 'human_cont' AND h.key >= 0;

-- Calibration, with standard errors clustered by document.
CREATE OR REPLACE VIEW calibration AS
SELECT c.run_id, c.kind::text AS kind, c.bin, sum(c.n) AS n,
       sum(c.sum_conf) / sum(c.n) AS mean_confidence,
       sum(c.n_correct)::double precision / sum(c.n) AS accuracy,
       tokshift_cluster_se(sum(c.g), sum(c.n), sum(c.sum_conf), sum(c.c_ss_conf), sum(c.c_ns_conf), sum(c.c_nn))
           AS se_confidence,
       tokshift_cluster_se(sum(c.g), sum(c.n), sum(c.n_correct)::double precision, sum(c.c_ss_correct),
                           sum(c.c_ns_correct), sum(c.c_nn)) AS se_accuracy,
       sum(c.g) AS n_docs
FROM calib_rollups c JOIN jobs j USING (run_id, job_id)
WHERE j.state = 'done'
GROUP BY c.run_id, c.kind, c.bin;

-- Per document: its human text's summary (se_*_naive: one document's tokens
-- treated as independent, the only error one text allows), and its
-- continuations' gaps with errors clustered by cut (a cut's continuation and
-- its K samples share a prefix).
DROP VIEW document_summary;
CREATE VIEW document_summary AS
SELECT d.run_id, d.doc_id, d.ext_id, d.source, d.n_tokens, d.error,
       coalesce(r.n_h, 0) AS n_scored,
       r.s_h / r.n_h AS mean_surprisal, tokshift_se(r.n_h, r.s_h, r.ss_h) AS se_surprisal_naive,
       r.e_h / r.n_h AS mean_entropy, tokshift_se(r.n_h, r.e_h, r.ee_h) AS se_entropy_naive,
       r.g_h / r.n_h AS mean_gap, tokshift_se(r.n_h, r.g_h, r.gg_h) AS se_gap_naive,
       r.g_c / r.n_c AS mean_gap_human_cont,
       tokshift_cluster_se(r.k_c, r.n_c, r.g_c, r.cs_c, r.cn_c, r.nn_c) AS se_gap_human_cont,
       r.g_s / r.n_s AS mean_gap_samples,
       tokshift_cluster_se(r.k_s, r.n_s, r.g_s, r.cs_s, r.cn_s, r.nn_s) AS se_gap_samples,
       exp(r.s_h / r.n_h) AS perplexity,
       coalesce(r.k_c, 0) AS n_cuts
FROM documents d
LEFT JOIN LATERAL (
    SELECT sum(n) FILTER (WHERE kind = 'human') AS n_h,
           sum(sum_surprisal) FILTER (WHERE kind = 'human') AS s_h,
           sum(sumsq_surprisal) FILTER (WHERE kind = 'human') AS ss_h,
           sum(sum_entropy) FILTER (WHERE kind = 'human') AS e_h,
           sum(sumsq_entropy) FILTER (WHERE kind = 'human') AS ee_h,
           sum(sum_gap) FILTER (WHERE kind = 'human') AS g_h,
           sum(sumsq_gap) FILTER (WHERE kind = 'human') AS gg_h,
           count(*) FILTER (WHERE kind = 'human_cont') AS k_c,
           sum(n) FILTER (WHERE kind = 'human_cont') AS n_c,
           sum(sum_gap) FILTER (WHERE kind = 'human_cont') AS g_c,
           sum(sum_gap ^ 2) FILTER (WHERE kind = 'human_cont') AS cs_c,
           sum(n * sum_gap) FILTER (WHERE kind = 'human_cont') AS cn_c,
           sum((n * n)::double precision) FILTER (WHERE kind = 'human_cont') AS nn_c,
           count(*) FILTER (WHERE kind = 'sample') AS k_s,
           sum(n) FILTER (WHERE kind = 'sample') AS n_s,
           sum(sum_gap) FILTER (WHERE kind = 'sample') AS g_s,
           sum(sum_gap ^ 2) FILTER (WHERE kind = 'sample') AS cs_s,
           sum(n * sum_gap) FILTER (WHERE kind = 'sample') AS cn_s,
           sum((n * n)::double precision) FILTER (WHERE kind = 'sample') AS nn_s
    FROM doc_rollups u WHERE u.run_id = d.run_id AND u.doc_id = d.doc_id) r ON true;

-- Two runs paired by document (the corpus's ext_id), by kind and position
-- bucket: each run's mean and the difference b - a with its paired standard
-- error (tokshift_cluster_se_diff over the documents either run scored).
-- Reads doc_bucket_rollups only: linear in the two runs' documents.
CREATE FUNCTION tokshift_compare(p_a bigint, p_b bigint)
RETURNS TABLE (kind text, bucket integer, positions text, n_docs bigint, n_a numeric, n_b numeric,
               surprisal_a double precision, surprisal_b double precision, diff_surprisal double precision,
               se_diff_surprisal double precision,
               entropy_a double precision, entropy_b double precision, diff_entropy double precision,
               se_diff_entropy double precision,
               gap_a double precision, gap_b double precision, diff_gap double precision,
               se_diff_gap double precision,
               z_a double precision, z_b double precision, diff_z double precision, se_diff_z double precision)
LANGUAGE sql STABLE AS $$
WITH x AS (
    SELECT d.ext_id, u.kind::text AS kind, u.bucket, u.run_id = p_b AS b, u.n::double precision AS n,
           u.n_z::double precision AS nz, u.sum_surprisal AS s, u.sum_entropy AS h, u.sum_gap AS g, u.sum_z AS z
    FROM doc_bucket_rollups u JOIN documents d USING (run_id, doc_id)
    WHERE u.run_id IN (p_a, p_b)),
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
SELECT kind, bucket, tokshift_bucket_label(bucket), g, na::numeric, nb::numeric,
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

-- Why runs a and b are not comparable document by document and cut by cut
-- (NULL when they are): their corpus settings, the settings that place the
-- cuts and draw the samples' seeds (window, stride, prefix_lengths,
-- cut_every, cont_len, seed: the model, temperature, top-k/p and K may
-- differ), their documents (ext_id and size), and their tokenizers (the
-- cuts are token counts: with different vocabularies they cut the text at
-- different places).
CREATE FUNCTION tokshift_runs_differ(p_a bigint, p_b bigint) RETURNS text
LANGUAGE sql STABLE AS $$
SELECT nullif(concat_ws('; ',
    CASE WHEN a.corpus IS DISTINCT FROM b.corpus THEN format('corpus %s vs %s', a.corpus, b.corpus) END,
    (SELECT string_agg(format('%s %s vs %s', k, coalesce(a.settings -> k, 'null'), coalesce(b.settings -> k, 'null')),
                       ', ')
     FROM unnest(ARRAY['window', 'stride', 'prefix_lengths', 'cut_every', 'cont_len', 'seed']) k
     WHERE a.settings -> k IS DISTINCT FROM b.settings -> k),
    (SELECT format('%s documents differ (ext_id or size), e.g. %s', count(*), to_json(min(coalesce(x.ext_id, y.ext_id))))
     FROM (SELECT ext_id, n_bytes FROM documents WHERE run_id = p_a) x
     FULL JOIN (SELECT ext_id, n_bytes FROM documents WHERE run_id = p_b) y ON x.ext_id = y.ext_id AND x.n_bytes = y.n_bytes
     WHERE x.ext_id IS NULL OR y.ext_id IS NULL HAVING count(*) > 0),
    CASE WHEN a.model_identity <> b.model_identity THEN
        (SELECT format('tokenizers differ (%s vocabulary entries not shared); pairing by character offset is not '
                       'implemented', count(*))
         FROM (SELECT v.token_id, v.piece FROM vocab v JOIN models m USING (model_id) WHERE m.identity = a.model_identity) x
         FULL JOIN (SELECT v.token_id, v.piece FROM vocab v JOIN models m USING (model_id)
                    WHERE m.identity = b.model_identity) y USING (token_id, piece)
         WHERE x.piece IS NULL OR y.piece IS NULL HAVING count(*) > 0) END), '')
FROM runs a, runs b WHERE a.run_id = p_a AND b.run_id = p_b
$$;

-- Every ordered pair of runs; ask for one pair (WHERE run_a = .. AND run_b = ..).
CREATE VIEW compare_by_bucket AS
SELECT a.run_id AS run_a, b.run_id AS run_b, c.*
FROM runs a JOIN runs b ON b.run_id <> a.run_id
CROSS JOIN LATERAL tokshift_compare(a.run_id, b.run_id) c;

-- How separable human continuations and model samples are, per run and by
-- a sequence's mean surprisal, gap or z: the AUROC of "the human
-- continuation scores higher", P(X_h > X_s) + P(X_h = X_s) / 2, as Mann-
-- Whitney's U / (n_h n_s) from mid-ranks.  The bootstrap interval over
-- documents is the CLI's (tokshift auroc).
CREATE VIEW sequence_auroc AS
WITH v AS (
    SELECT m.run_id, m.kind, s.stat, s.x
    FROM sequence_means m
    CROSS JOIN LATERAL (VALUES ('surprisal', m.sum_surprisal / nullif(m.n, 0)),
                               ('gap', m.sum_gap / nullif(m.n, 0)),
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

-- ---- converting existing runs (their token rows, read once per table) -------

-- Per document, kind and position: the sums every cell's cluster terms need
-- (the gap in double from the stored floats, as the worker computes it).
CREATE TEMP TABLE t008 AS
SELECT v.run_id, d.job_id, v.doc_id, v.kind, v.position, tokshift_bucket(v.position) AS bucket,
       count(*)::double precision AS n, count(v.z)::double precision AS nz,
       sum(v.surprisal::float8) AS s, sum(v.surprisal::float8 ^ 2) AS s2,
       sum(v.entropy::float8) AS h, sum(v.entropy::float8 ^ 2) AS h2,
       sum(-v.logprob::float8 - v.entropy) AS g, sum((-v.logprob::float8 - v.entropy) ^ 2) AS g2,
       coalesce(sum(v.z), 0) AS z, coalesce(sum(v.z ^ 2), 0) AS z2
FROM token_view v JOIN documents d USING (run_id, doc_id)
GROUP BY 1, 2, 3, 4, 5;

-- The terms of cells keyed by (job, kind, key) from per-document sums.
CREATE TEMP VIEW t008_terms AS
SELECT run_id, job_id, kind, key, sum(n) AS n, sum(nz) AS nz, sum(s) AS s, sum(s2) AS s2, sum(h) AS h, sum(h2) AS h2,
       sum(g) AS g, sum(g2) AS g2, sum(z) AS z, sum(z2) AS z2,
       count(*) AS gc, sum(n * n) AS nn, sum(s * s) AS ss, sum(n * s) AS ns, sum(h * h) AS hh, sum(n * h) AS nh,
       sum(g * g) AS gg, sum(n * g) AS ng, count(*) FILTER (WHERE nz > 0) AS gz, sum(nz * nz) AS zz,
       sum(z * z) AS qq, sum(nz * z) AS zq
FROM (SELECT a.run_id, a.job_id, a.doc_id, a.kind, a.key, sum(a.n) AS n, sum(a.nz) AS nz, sum(a.s) AS s,
             sum(a.s2) AS s2, sum(a.h) AS h, sum(a.h2) AS h2, sum(a.g) AS g, sum(a.g2) AS g2, sum(a.z) AS z,
             sum(a.z2) AS z2
      FROM (SELECT t.*, k.key FROM t008 t
            CROSS JOIN LATERAL (VALUES (t.position), (t.bucket + 1000000000), (-1 + 1000000000)) k(key)) a
      GROUP BY 1, 2, 3, 4, 5) c
GROUP BY 1, 2, 3, 4;

-- Cross terms of human_cont with its document's samples, by cell.
CREATE TEMP VIEW t008_cross AS
SELECT h.run_id, h.job_id, h.key, sum(h.g * m.g) AS xss, sum(h.g * m.n) AS xsn, sum(h.n * m.g) AS xns,
       sum(h.n * m.n) AS xnn
FROM (SELECT run_id, job_id, doc_id, kind, k.key, sum(n) AS n, sum(g) AS g FROM t008
      CROSS JOIN LATERAL (VALUES (position), (bucket + 1000000000), (-1 + 1000000000)) k(key)
      GROUP BY 1, 2, 3, 4, 5) h
JOIN (SELECT run_id, doc_id, k.key, sum(n) AS n, sum(g) AS g FROM t008
      CROSS JOIN LATERAL (VALUES (position), (bucket + 1000000000), (-1 + 1000000000)) k(key)
      WHERE kind = 'sample' GROUP BY 1, 2, 3) m USING (run_id, doc_id, key)
WHERE h.kind = 'human_cont'
GROUP BY 1, 2, 3;

CREATE TEMP TABLE t008_all AS
SELECT t.*, coalesce(x.xss, 0) AS cxss, coalesce(x.xsn, 0) AS cxsn, coalesce(x.xns, 0) AS cxns,
       coalesce(x.xnn, 0) AS cxnn
FROM t008_terms t
LEFT JOIN t008_cross x ON x.run_id = t.run_id AND x.job_id = t.job_id AND x.key = t.key AND t.kind = 'human_cont';

UPDATE job_rollups r
SET g = a.gc, c_nn = a.nn, c_ss_surprisal = a.ss, c_ns_surprisal = a.ns, c_ss_entropy = a.hh, c_ns_entropy = a.nh,
    c_ss_gap = a.gg, c_ns_gap = a.ng, g_z = a.gz, c_nn_z = a.zz, c_ss_z = a.qq, c_ns_z = a.zq,
    x_ss_gap = a.cxss, x_sn_gap = a.cxsn, x_ns_gap = a.cxns, x_nn = a.cxnn
FROM t008_all a
WHERE a.key < 1000000000 - 1 AND r.run_id = a.run_id AND r.job_id = a.job_id AND r.kind = a.kind
  AND r.position = a.key;

INSERT INTO bucket_rollups (run_id, job_id, kind, bucket, n, sum_surprisal, sumsq_surprisal, sum_entropy,
                            sumsq_entropy, sum_gap, sumsq_gap, sum_z, sumsq_z, n_z, g, c_nn, c_ss_surprisal,
                            c_ns_surprisal, c_ss_entropy, c_ns_entropy, c_ss_gap, c_ns_gap, g_z, c_nn_z, c_ss_z,
                            c_ns_z, x_ss_gap, x_sn_gap, x_ns_gap, x_nn)
SELECT run_id, job_id, kind, key - 1000000000, n, s, s2, h, h2, g, g2, z, z2, nz, gc, nn, ss, ns, hh, nh, gg, ng, gz,
       zz, qq, zq, cxss, cxsn, cxns, cxnn
FROM t008_all WHERE key >= 1000000000 - 1;

INSERT INTO doc_bucket_rollups (run_id, doc_id, kind, bucket, n, n_z, sum_surprisal, sum_entropy, sum_gap, sum_z)
SELECT run_id, doc_id, kind::tokshift_kind, bucket, sum(n), sum(nz), sum(s), sum(h), sum(g), sum(z)
FROM t008 GROUP BY 1, 2, 3, 4;

-- Calibration's cluster terms: per document and bin first.
UPDATE calib_rollups r
SET g = a.gc, c_nn = a.nn, c_ss_conf = a.ss, c_ns_conf = a.ns, c_ss_correct = a.cc, c_ns_correct = a.nc
FROM (SELECT run_id, job_id, kind, bin, count(*) AS gc, sum(n * n) AS nn, sum(s * s) AS ss, sum(n * s) AS ns,
             sum(c * c) AS cc, sum(n * c) AS nc
      FROM (SELECT v.run_id, d.job_id, v.doc_id, v.kind::tokshift_kind AS kind,
                   width_bucket(exp(v.top1_logprob), 0, 1.0000001, 10) AS bin, count(*)::float8 AS n,
                   sum(exp(v.top1_logprob)) AS s, count(*) FILTER (WHERE v.rank = 1)::float8 AS c
            FROM token_view v JOIN documents d USING (run_id, doc_id)
            GROUP BY 1, 2, 3, 4, 5) p
      GROUP BY 1, 2, 3, 4) a
WHERE r.run_id = a.run_id AND r.job_id = a.job_id AND r.kind = a.kind AND r.bin = a.bin;

INSERT INTO sequence_means (run_id, doc_id, seq_no, kind, n, n_z, sum_surprisal, sum_entropy, sum_gap, sum_z)
SELECT run_id, doc_id, seq_no, kind::tokshift_kind, count(*), count(z), sum(surprisal::float8),
       sum(entropy::float8), sum(-logprob::float8 - entropy), coalesce(sum(z), 0)
FROM token_view GROUP BY 1, 2, 3, 4;

DROP VIEW t008_cross, t008_terms;
DROP TABLE t008_all, t008;
ANALYZE job_rollups, bucket_rollups, calib_rollups, doc_bucket_rollups, sequence_means;
