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
