-- 010_cross_scoring.sql - runs that observe another run's sequences
-- (tokshift-coordinator --score-run; issue 12 item 2).
--
-- What it is:
--   runs.score_run_id: the run whose documents and samples this run scores
--     (the generator; NULL for a run of a corpus).  This run's model is the
--     observer.
--   tokshift_score_run_load(src, dst): the load of such a run: src's
--     documents (same doc_id, ext_id, source, metadata, text, load errors)
--     and jobs (same ids and sizes, pending again) copied into the fresh run
--     dst, which is marked loaded and running, with score_run_id = src.
--     It runs with its caller's rights (the coordinator's role may read and
--     write documents and jobs), with a pinned search_path.
--   sample_tokens: each stored sample's token ids, for the coordinator to
--     hand a cross-scoring run's worker (a worker's role reads no results).
--   cross_scores: every token that observer and generator both scored at
--     the same (doc_id, seq_no, pos) with the same token id, both sides'
--     log-probability, entropy and rank.  The observer's samples are the
--     generator's tokens by construction; human text joins where both
--     tokenized it alike (identical vocabularies are required).
--   cross_sequences: per sequence, the mean surprisal under each model and
--     their difference, the log-likelihood ratio per token
--     (mean observer log p - mean generator log p).
--
-- What it is not: Binoculars' score proper, which divides the observer's
-- log-perplexity by the cross-perplexity (the cross-entropy between the two
-- models' full next-token distributions); stored rows hold each model's
-- statistics of the token taken, not the distributions, so only the
-- log-likelihood ratio and the observer/generator perplexity comparisons
-- follow from them.  Nor scoring across vocabularies (through the decoded
-- text): a worker whose vocabulary differs from the generator's refuses
-- the run.

ALTER TABLE runs ADD COLUMN score_run_id bigint REFERENCES runs ON DELETE SET NULL
    CHECK (score_run_id IS DISTINCT FROM run_id);

CREATE FUNCTION tokshift_score_run_load(p_src bigint, p_dst bigint) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    s runs%ROWTYPE;
BEGIN
    SELECT * INTO s FROM runs WHERE run_id = p_src;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'run % does not exist', p_src USING ERRCODE = 'no_data_found';
    END IF;
    IF s.status <> 'done' THEN
        RAISE EXCEPTION 'run % is %, not done: its samples are not all stored', p_src, s.status
            USING ERRCODE = 'object_not_in_prerequisite_state';
    END IF;
    -- Only a fresh run: a second coordinator, or a run of a corpus, fails.
    PERFORM 1 FROM runs WHERE run_id = p_dst AND loaded_at IS NULL AND load_next_doc = 0 FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'run % is not a fresh run to load', p_dst USING ERRCODE = 'object_not_in_prerequisite_state';
    END IF;
    INSERT INTO jobs (run_id, job_id, n_docs, n_bytes)
    SELECT p_dst, job_id, n_docs, n_bytes FROM jobs WHERE run_id = p_src;
    -- A document the generator's worker could not measure ('worker: ...')
    -- is measured again; the load's own errors stay.
    INSERT INTO documents (run_id, doc_id, ext_id, source, metadata, text, n_bytes, job_id, error)
    SELECT p_dst, doc_id, ext_id, source, metadata, text, n_bytes, job_id,
           CASE WHEN text IS NULL THEN error END
      FROM documents WHERE run_id = p_src;
    UPDATE runs SET score_run_id = p_src, n_docs = s.n_docs, n_jobs = s.n_jobs, n_docs_error = s.n_docs_error,
                    load_next_doc = s.load_next_doc, load_next_job = s.load_next_job, loaded_at = now(),
                    status = 'running', started_at = coalesce(started_at, now())
     WHERE run_id = p_dst;
END $$;

DO $$
BEGIN
    EXECUTE format('ALTER FUNCTION tokshift_score_run_load(bigint, bigint) SET search_path = %I, pg_temp',
                   current_schema());
END $$;

CREATE VIEW sample_tokens AS
SELECT run_id, doc_id, seq_no, cut, sample_idx, seed, token_id AS tokens
  FROM sequence_stats WHERE kind = 'sample';

-- (The two sequences' arrays are unnested side by side, element i with
-- element i, so the view costs linear time in the tokens; joining two
-- token_views on the position would compare every pair within a sequence.)
CREATE VIEW cross_scores AS
SELECT r.run_id AS observer_run, r.score_run_id AS generator_run, o.doc_id, o.seq_no, o.kind::text AS kind, o.cut,
       o.sample_idx, coalesce(o.cut - 1, 0) + t.i::integer AS pos,
       CASE WHEN o.kind = 'human' THEN t.i::integer ELSE t.i::integer - 1 END AS position, t.o_token AS token_id,
       t.g_logprob AS generator_logprob, t.o_logprob AS observer_logprob,
       t.g_entropy AS generator_entropy, t.o_entropy AS observer_entropy,
       t.g_rank AS generator_rank, t.o_rank AS observer_rank
  FROM runs r
  JOIN sequence_stats o ON o.run_id = r.run_id
  JOIN sequence_stats g ON g.run_id = r.score_run_id AND g.doc_id = o.doc_id AND g.seq_no = o.seq_no
                       AND g.cut IS NOT DISTINCT FROM o.cut
 CROSS JOIN LATERAL unnest(o.token_id, g.token_id, o.logprob, g.logprob, o.entropy, g.entropy, o.rank, g.rank)
       WITH ORDINALITY AS t(o_token, g_token, o_logprob, g_logprob, o_entropy, g_entropy, o_rank, g_rank, i)
 WHERE r.score_run_id IS NOT NULL AND t.o_token = t.g_token;

CREATE VIEW cross_sequences AS
SELECT observer_run, generator_run, doc_id, seq_no, kind, cut, sample_idx, count(*) AS n_tokens,
       avg(-observer_logprob::double precision) AS observer_surprisal,
       avg(-generator_logprob::double precision) AS generator_surprisal,
       avg(observer_logprob::double precision - generator_logprob::double precision) AS llr_per_token
  FROM cross_scores
 GROUP BY observer_run, generator_run, doc_id, seq_no, kind, cut, sample_idx;

-- The vocabulary digest of each registered model: sha256 of its pieces in
-- token order, each followed by a NUL byte (no piece holds one), as the
-- worker computes it from its tokenizer (worker/main.c, vocab_digest).
CREATE VIEW vocab_digests AS
SELECT m.identity, encode(sha256(string_agg(convert_to(v.piece, 'UTF8') || '\x00'::bytea, ''::bytea
                                            ORDER BY v.token_id)), 'hex') AS digest
  FROM models m JOIN vocab v USING (model_id)
 GROUP BY m.identity;
