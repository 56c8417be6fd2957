-- 012_cross_text.sql - cross-scoring through the decoded text, when the
-- observer's vocabulary is not the generator's (issue 12 item 2).
--
-- What it is:
--   sequence_stats.end_byte: where the text a continuation was scored in
--     ends (the text up to the generator's cut, then the continuation as
--     the generator's tokenizer decodes it), written by a cross-scoring
--     worker that scores through the text (tokshift-worker --source-vocab;
--     worker/job.c, observe_text).  Its cut and cut_byte are then its own
--     (the cut in its tokens, and where its first token starts, at or
--     before the generator's cut_byte when a token of it spans the cut).
--     NULL otherwise.
--   tokshift_score_via(run): 'tokens' for a cross-scoring run whose model's
--     vocabulary is its generator's (vocab_digests), 'text' for one whose
--     is not, NULL for a run of a corpus or while a vocabulary is not
--     registered (each worker registers its model's before writing rows).
--     What a run scored through follows from its model and its generator's
--     (the worker refuses a vocabulary it cannot score, 010), so it is
--     derived, not stored.
--   cross_scores and cross_stats (010, 011) keep to runs scored token for
--     token: across vocabularies equal token ids at one position mean
--     nothing.
--   cross_text_sequences: per sequence of a cross-scoring run, the
--     generator's and the observer's total surprisal (nats) of the same
--     continuation text, their difference (the log-likelihood ratio of the
--     text, observer over generator), and with end_byte each one's bits per
--     byte (total / ln 2 / bytes it covers: the generator's from its
--     cut_byte, the observer's from its own) and the ratio per byte of the
--     generator's bytes.  For runs scored token for token, and for the
--     human text (seq 0: each model leaves its own first token unscored),
--     the totals only.
--   cross_text_stats: per observer, generator and continuation kind, the
--     bits per byte of each and the log-likelihood ratio per byte (ratios
--     of sums over sequences), each with its standard error clustered by
--     document (tokshift_cluster_se, 007, with bytes for tokens).  It reads
--     sequence_stats' scalar columns (its arrays are not read but for their
--     length): linear in sequences.
--
-- What it is not: a per-token join across vocabularies (there is none),
-- nor a stored copy of the decoded text.

ALTER TABLE sequence_stats ADD COLUMN end_byte integer CHECK (end_byte IS NULL OR (end_byte >= 0 AND kind <> 'human'));

CREATE FUNCTION tokshift_score_via(p_run bigint) RETURNS text
LANGUAGE sql STABLE AS $$
SELECT CASE WHEN vo.digest IS NULL OR dg.digest IS NULL THEN NULL
            WHEN vo.digest = dg.digest THEN 'tokens' ELSE 'text' END
  FROM runs o JOIN runs g ON g.run_id = o.score_run_id
  LEFT JOIN vocab_digests vo ON vo.identity = o.model_identity
  LEFT JOIN vocab_digests dg ON dg.identity = g.model_identity
 WHERE o.run_id = p_run
$$;

-- (OFFSET 0 keeps the function to once per run row.)
CREATE OR REPLACE VIEW cross_scores AS
SELECT r.run_id AS observer_run, r.score_run_id AS generator_run, o.doc_id, o.seq_no, o.kind::text AS kind, o.cut,
       o.sample_idx, coalesce(o.cut - 1, 0) + t.i::integer AS pos,
       CASE WHEN o.kind = 'human' THEN t.i::integer ELSE t.i::integer - 1 END AS position, t.o_token AS token_id,
       t.g_logprob AS generator_logprob, t.o_logprob AS observer_logprob,
       t.g_entropy AS generator_entropy, t.o_entropy AS observer_entropy,
       t.g_rank AS generator_rank, t.o_rank AS observer_rank
  FROM (SELECT run_id, score_run_id FROM runs
         WHERE score_run_id IS NOT NULL AND tokshift_score_via(run_id) IS DISTINCT FROM 'text' OFFSET 0) r
  JOIN sequence_stats o ON o.run_id = r.run_id
  JOIN sequence_stats g ON g.run_id = r.score_run_id AND g.doc_id = o.doc_id AND g.seq_no = o.seq_no
                       AND g.cut IS NOT DISTINCT FROM o.cut
 CROSS JOIN LATERAL unnest(o.token_id, g.token_id, o.logprob, g.logprob, o.entropy, g.entropy, o.rank, g.rank)
       WITH ORDINALITY AS t(o_token, g_token, o_logprob, g_logprob, o_entropy, g_entropy, o_rank, g_rank, i)
 WHERE t.o_token = t.g_token;

CREATE OR REPLACE VIEW cross_stats AS
WITH d AS (
    SELECT r.run_id AS observer_run, r.score_run_id AS generator_run, o.kind::text AS kind, o.doc_id,
           sum(o.n)::numeric AS n, sum(o.sum_surprisal) AS so, sum(g.sum_surprisal) AS sg
      FROM (SELECT run_id, score_run_id FROM runs
             WHERE score_run_id IS NOT NULL AND tokshift_score_via(run_id) IS DISTINCT FROM 'text' OFFSET 0) r
      JOIN doc_rollups o ON o.run_id = r.run_id
      JOIN doc_rollups g ON g.run_id = r.score_run_id AND g.doc_id = o.doc_id AND g.kind = o.kind AND g.cut = o.cut
                        AND g.n = o.n
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

CREATE VIEW cross_text_sequences AS
SELECT r.run_id AS observer_run, r.score_run_id AS generator_run, r.score_via, o.doc_id, o.seq_no,
       o.kind::text AS kind, o.sample_idx, g.cut AS generator_cut, g.cut_byte AS generator_cut_byte,
       o.cut AS observer_cut, o.cut_byte AS observer_cut_byte, o.end_byte,
       cardinality(g.token_id) AS generator_n_tokens, cardinality(o.token_id) AS observer_n_tokens,
       g.sum_surprisal AS generator_surprisal, o.sum_surprisal AS observer_surprisal,
       g.sum_surprisal - o.sum_surprisal AS llr,
       g.sum_surprisal / ln(2) / nullif(o.end_byte - g.cut_byte, 0) AS generator_bits_per_byte,
       o.sum_surprisal / ln(2) / nullif(o.end_byte - o.cut_byte, 0) AS observer_bits_per_byte,
       (g.sum_surprisal - o.sum_surprisal) / ln(2) / nullif(o.end_byte - g.cut_byte, 0) AS llr_bits_per_byte
  FROM (SELECT run_id, score_run_id, tokshift_score_via(run_id) AS score_via FROM runs
         WHERE score_run_id IS NOT NULL OFFSET 0) r
  JOIN sequence_stats o ON o.run_id = r.run_id
  JOIN sequence_stats g ON g.run_id = r.score_run_id AND g.doc_id = o.doc_id AND g.seq_no = o.seq_no;

CREATE VIEW cross_text_stats AS
WITH d AS (
    SELECT observer_run, generator_run, kind, doc_id, count(*) AS n_seq,
           sum(end_byte - generator_cut_byte)::numeric AS bg, sum(end_byte - observer_cut_byte)::numeric AS bo,
           sum(generator_surprisal) AS sg, sum(observer_surprisal) AS so
      FROM cross_text_sequences WHERE end_byte IS NOT NULL AND generator_cut_byte IS NOT NULL
     GROUP BY 1, 2, 3, 4)
SELECT observer_run, generator_run, kind, sum(n_seq) AS n_sequences, count(*) AS n_docs,
       sum(bg) AS generator_bytes, sum(bo) AS observer_bytes,
       sum(sg) / sum(bg) / ln(2) AS generator_bits_per_byte,
       tokshift_cluster_se(count(*), sum(bg), sum(sg), sum(sg * sg), sum(bg * sg), sum(bg * bg)::float8) / ln(2)
           AS se_generator_bits_per_byte,
       sum(so) / sum(bo) / ln(2) AS observer_bits_per_byte,
       tokshift_cluster_se(count(*), sum(bo), sum(so), sum(so * so), sum(bo * so), sum(bo * bo)::float8) / ln(2)
           AS se_observer_bits_per_byte,
       sum(sg - so) / sum(bg) / ln(2) AS llr_bits_per_byte,
       tokshift_cluster_se(count(*), sum(bg), sum(sg - so), sum((sg - so) ^ 2), sum(bg * (sg - so)),
                           sum(bg * bg)::float8) / ln(2) AS se_llr_bits_per_byte
  FROM d GROUP BY 1, 2, 3;
