-- 002_views.sql - the views researchers query.  Derived quantities live here
-- and are never stored twice: surprisal = -logprob; gap = surprisal -
-- entropy; z = gap / sqrt(varentropy) (Fast-DetectGPT's analytic criterion).

-- Position buckets for summaries: 0, 1, 2-3, 4-7, 8-15, ... (powers of two).
CREATE FUNCTION tokshift_bucket(pos integer) RETURNS integer
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    RETURN CASE WHEN pos <= 0 THEN 0
                ELSE 1 << (length(ltrim(pos::bit(32)::text, '0')) - 1) END;

CREATE FUNCTION tokshift_bucket_label(bucket integer) RETURNS text
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    RETURN CASE WHEN bucket <= 1 THEN bucket::text ELSE bucket || '-' || (2 * bucket - 1) END;

-- Every token with its derived quantities and its sequence's description.
CREATE VIEW token_view AS
SELECT t.run_id, t.doc_id, t.seq_no, s.kind, s.cut, s.sample_idx, t.pos,
       CASE WHEN s.kind = 'human' THEN t.pos ELSE t.pos - s.cut END AS position,
       t.token_id, t.logprob, -t.logprob AS surprisal, t.entropy,
       -t.logprob - t.entropy AS gap,
       CASE WHEN t.varentropy > 0 THEN (-t.logprob - t.entropy) / sqrt(t.varentropy) END AS z,
       t.rank, t.top1_logprob, t.varentropy, t.context_len
FROM token_stats t
JOIN sequences s USING (run_id, doc_id, seq_no);

-- The standard error of a mean from a count, a sum and a sum of squares.
CREATE FUNCTION tokshift_se(n numeric, s1 double precision, s2 double precision) RETURNS double precision
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    RETURN CASE WHEN n > 0 THEN sqrt(greatest(s2 / n - (s1 / n) ^ 2, 0) / greatest(n - 1, 1)) END;

-- The rollups of a run's finished jobs, summed by kind and exact position.
CREATE VIEW rollup_sums AS
SELECT r.run_id, r.kind, r.position,
       sum(r.n) AS n, sum(r.sum_surprisal) AS s1, sum(r.sumsq_surprisal) AS s2,
       sum(r.sum_entropy) AS h1, sum(r.sumsq_entropy) AS h2,
       sum(r.sum_gap) AS g1, sum(r.sumsq_gap) AS g2,
       sum(r.n_z) AS nz, sum(r.sum_z) AS z1, sum(r.sumsq_z) AS z2
FROM job_rollups r JOIN jobs j USING (run_id, job_id)
WHERE j.state = 'done'
GROUP BY r.run_id, r.kind, r.position;

-- Means and standard errors by run, kind and exact position.
CREATE VIEW position_stats AS
SELECT run_id, kind, position, n,
       s1 / n AS mean_surprisal, tokshift_se(n, s1, s2) AS se_surprisal,
       h1 / n AS mean_entropy, tokshift_se(n, h1, h2) AS se_entropy,
       g1 / n AS mean_gap, tokshift_se(n, g1, g2) AS se_gap,
       z1 / nullif(nz, 0) AS mean_z, tokshift_se(nz, z1, z2) AS se_z
FROM rollup_sums;

-- The same in position buckets (0, 1, 2-3, 4-7, ...).
CREATE VIEW bucket_stats AS
WITH b AS (
    SELECT run_id, kind, tokshift_bucket(position) AS bucket,
           sum(n) AS n, sum(s1) AS s1, sum(s2) AS s2, sum(h1) AS h1, sum(h2) AS h2,
           sum(g1) AS g1, sum(g2) AS g2, sum(nz) AS nz, sum(z1) AS z1, sum(z2) AS z2
    FROM rollup_sums GROUP BY 1, 2, 3)
SELECT run_id, kind, bucket, tokshift_bucket_label(bucket) AS positions, n,
       s1 / n AS mean_surprisal, tokshift_se(n, s1, s2) AS se_surprisal,
       h1 / n AS mean_entropy, tokshift_se(n, h1, h2) AS se_entropy,
       g1 / n AS mean_gap, tokshift_se(n, g1, g2) AS se_gap,
       z1 / nullif(nz, 0) AS mean_z, tokshift_se(nz, z1, z2) AS se_z
FROM b;

-- Human vs model: the shift, by position bucket of the continuation.
CREATE VIEW shift_by_bucket AS
SELECT h.run_id, h.bucket, h.positions,
       h.n AS n_human, m.n AS n_model,
       h.mean_surprisal AS human_surprisal, m.mean_surprisal AS model_surprisal,
       h.mean_entropy AS human_entropy, m.mean_entropy AS model_entropy,
       h.mean_gap AS human_gap, h.se_gap AS human_se_gap,
       m.mean_gap AS model_gap, m.se_gap AS model_se_gap,
       h.mean_gap - m.mean_gap AS shift,
       sqrt(h.se_gap ^ 2 + m.se_gap ^ 2) AS se_shift
FROM bucket_stats h
JOIN bucket_stats m ON m.run_id = h.run_id AND m.bucket = h.bucket AND m.kind = 'sample'
WHERE h.kind = 'human_cont';

-- Per document: its human text's summary, and its continuations' gaps.
CREATE VIEW document_summary AS
SELECT d.run_id, d.doc_id, d.ext_id, d.source, d.n_tokens, d.error,
       count(*) FILTER (WHERE v.kind = 'human') AS n_scored,
       avg(v.surprisal) FILTER (WHERE v.kind = 'human') AS mean_surprisal,
       avg(v.entropy) FILTER (WHERE v.kind = 'human') AS mean_entropy,
       avg(v.gap) FILTER (WHERE v.kind = 'human') AS mean_gap,
       avg(v.gap) FILTER (WHERE v.kind = 'human_cont') AS mean_gap_human_cont,
       avg(v.gap) FILTER (WHERE v.kind = 'sample') AS mean_gap_samples,
       exp(avg(v.surprisal) FILTER (WHERE v.kind = 'human')) AS perplexity
FROM documents d
LEFT JOIN token_view v USING (run_id, doc_id)
GROUP BY d.run_id, d.doc_id, d.ext_id, d.source, d.n_tokens, d.error;

-- Calibration: tokens binned by the model's top-1 probability; a calibrated
-- model's accuracy (rank = 1) matches the mean confidence in every bin.
CREATE VIEW calibration AS
SELECT run_id, kind, width_bucket(exp(top1_logprob), 0, 1.0000001, 10) AS bin,
       count(*) AS n, avg(exp(top1_logprob)) AS mean_confidence,
       avg((rank = 1)::integer) AS accuracy
FROM token_view
GROUP BY 1, 2, 3;

-- Progress of every run, from the jobs table.
CREATE VIEW run_progress AS
SELECT r.run_id, r.name, r.status, r.model_identity,
       count(j.job_id) AS jobs,
       count(*) FILTER (WHERE j.state = 'done') AS jobs_done,
       count(*) FILTER (WHERE j.state = 'failed') AS jobs_failed,
       count(*) FILTER (WHERE j.state = 'leased') AS jobs_leased,
       count(*) FILTER (WHERE j.state = 'pending') AS jobs_pending,
       coalesce(sum(j.n_docs) FILTER (WHERE j.state = 'done'), 0) AS docs_done,
       coalesce(sum(j.n_tokens) FILTER (WHERE j.state = 'done'), 0) AS tokens_done,
       coalesce(sum(greatest(j.attempts - 1, 0)), 0) AS retries,
       r.created_at, r.started_at, r.finished_at
FROM runs r LEFT JOIN jobs j USING (run_id)
GROUP BY r.run_id;
