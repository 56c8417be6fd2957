-- 015_vocab_digest_store.sql - each model's vocabulary digest stored once,
-- not hashed again by every query that asks for it.
--
-- What it is: vocab_digest_store, one row per model with a vocabulary:
-- the sha256 of its pieces as 010's vocab_digests defined it (pieces in
-- token order, each followed by a zero byte).  Statement triggers on vocab
-- keep it: after an INSERT (a worker's COPY registering its model included;
-- COPY fires statement triggers), UPDATE or DELETE, the digests of the
-- models the statement touched are computed again from their vocab rows
-- (linear in those rows; a model's vocabulary is written once).  The
-- existing models' digests are filled here.  vocab_digests becomes a view
-- of the store, with the same columns and values.
--
-- Why: vocab_digests computed each digest from the vocab rows (a sort and
-- a hash of up to ~2.5e5 pieces per model), and tokshift_score_via (012)
-- asks for two digests per call.  cross_stats and cross_scores call it in a
-- subquery on runs that the planner may put on the inner side of a nested
-- loop, where it is evaluated again for every outer row: with the observer
-- run not yet analyzed (its doc_rollups estimated at one row),
-- bench/storage_scale.sh --tokens 200000 measured cross_stats at 159 s,
-- 1,920 doc_rollups rows x 83 ms of hashing (two 32,000-piece digests) -
-- quadratic in practice.  From the store a digest is one primary-key probe.
--
-- What it is not: a change of the digest's definition, of the views that
-- read vocab_digests, or of how workers register vocabularies.

CREATE TABLE vocab_digest_store (
    model_id    bigint PRIMARY KEY REFERENCES models ON DELETE CASCADE,
    digest      text NOT NULL
);

-- Computes again the digests of the models ids (those with no vocab rows
-- left lose theirs).
CREATE FUNCTION tokshift_vocab_digest_refresh(p_ids bigint[]) RETURNS void
LANGUAGE sql AS $$
DELETE FROM vocab_digest_store WHERE model_id = ANY (p_ids);
INSERT INTO vocab_digest_store (model_id, digest)
SELECT v.model_id, encode(sha256(string_agg(convert_to(v.piece, 'UTF8') || '\x00'::bytea, ''::bytea
                                            ORDER BY v.token_id)), 'hex')
  FROM vocab v WHERE v.model_id = ANY (p_ids) GROUP BY v.model_id;
$$;

-- The triggers' function: SECURITY DEFINER (it runs with the rights of
-- whoever applied the migrations, so that a worker's role, which may insert
-- into vocab, needs no rights on the store), with its search_path pinned as
-- in 003.
CREATE FUNCTION tokshift_vocab_digest_trigger() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        PERFORM tokshift_vocab_digest_refresh(ARRAY(SELECT DISTINCT model_id FROM new_rows));
    ELSIF TG_OP = 'UPDATE' THEN
        PERFORM tokshift_vocab_digest_refresh(ARRAY(SELECT model_id FROM new_rows UNION SELECT model_id FROM old_rows));
    ELSE
        PERFORM tokshift_vocab_digest_refresh(ARRAY(SELECT DISTINCT model_id FROM old_rows));
    END IF;
    RETURN NULL;
END $$;

REVOKE ALL ON FUNCTION tokshift_vocab_digest_refresh(bigint[]) FROM PUBLIC;
REVOKE ALL ON FUNCTION tokshift_vocab_digest_trigger() FROM PUBLIC;
DO $$
BEGIN
    EXECUTE format('ALTER FUNCTION tokshift_vocab_digest_trigger() SET search_path = %I, pg_temp', current_schema());
END $$;

-- (A trigger with transition tables has one event.)
CREATE TRIGGER vocab_digest_insert AFTER INSERT ON vocab REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION tokshift_vocab_digest_trigger();
CREATE TRIGGER vocab_digest_update AFTER UPDATE ON vocab REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION tokshift_vocab_digest_trigger();
CREATE TRIGGER vocab_digest_delete AFTER DELETE ON vocab REFERENCING OLD TABLE AS old_rows
    FOR EACH STATEMENT EXECUTE FUNCTION tokshift_vocab_digest_trigger();

SELECT tokshift_vocab_digest_refresh(ARRAY(SELECT model_id FROM models));

CREATE OR REPLACE VIEW vocab_digests AS
SELECT m.identity, d.digest FROM models m JOIN vocab_digest_store d USING (model_id);

-- ---- sequence_auroc: one narrow sort ----------------------------------------
--
-- 011's view sorted every continuation's (run, kind, statistic name, mean)
-- and ranked it with two window functions (rank, and the count of its ties
-- for the midrank).  At 10^7 tokens (bench/storage_scale.sh --tokens
-- 10000000: 629k means) that sort spilled 25 MB and the view took 9.9 s.
-- Here the statistic is a number while sorting, ties are grouped first
-- (one row per distinct mean, with its count of human continuations), and
-- one running sum gives each group the count below it: the midrank of a
-- group is below + (c + 1) / 2, and the human rank sum is sum h (below +
-- (c + 1) / 2).  Same columns, same values (ranks are integers and
-- half-integers: exact in numeric).  Still a sort (ranks need one): n log n
-- in the continuations, spilling in one merge when they exceed work_mem
-- (at 10^7 tokens: 5.2 s, ~31 MB spilled by a parallel plan).
CREATE OR REPLACE VIEW sequence_auroc AS
WITH v AS (
    SELECT m.run_id, s.stat_no, (m.kind = 'human_cont')::integer AS human, s.x
    FROM sequence_stats m
    CROSS JOIN LATERAL (VALUES (1, m.sum_surprisal / nullif(cardinality(m.token_id), 0)),
                               (2, m.sum_gap / nullif(cardinality(m.token_id), 0)),
                               (3, m.sum_z / nullif(m.n_z, 0))) s(stat_no, x)
    WHERE m.kind IN ('human_cont', 'sample') AND s.x IS NOT NULL),
g AS (
    SELECT run_id, stat_no, x, sum(human) AS h, count(*) AS c FROM v GROUP BY run_id, stat_no, x),
r AS (
    SELECT run_id, stat_no, h, c, sum(c) OVER (PARTITION BY run_id, stat_no ORDER BY x) - c AS below FROM g),
u AS (
    SELECT run_id, stat_no, sum(h)::bigint AS n_human, sum(c - h)::bigint AS n_sample,
           sum(h * (below + (c + 1) / 2.0)) AS rank_sum_human
    FROM r GROUP BY run_id, stat_no)
SELECT run_id, (ARRAY['surprisal', 'gap', 'z'])[stat_no] AS stat, n_human, n_sample,
       rank_sum_human - n_human * (n_human + 1) / 2.0 AS u,
       ((rank_sum_human - n_human * (n_human + 1) / 2.0) / nullif(n_human * n_sample, 0))::double precision AS auroc
FROM u;
