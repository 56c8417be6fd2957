-- 006_resumable_load.sql - a corpus load that commits in batches, resumes
-- after a crash, and finds duplicate document ids through an index.
--
-- What it is:
--   runs.load_next_doc / load_next_job: how far the load got (the ordinal of
--     the next document to read, the id of the next job); the coordinator
--     advances them in the transaction that commits a batch's documents and
--     jobs, so a restarted coordinator continues exactly after the last
--     committed batch.
--   runs.loaded_at: when the load ended (NULL while it is incomplete).
--   runs.n_docs_error: documents recorded with an error by the load, kept
--     with n_docs so that progress never counts the documents table.
--   runs.corpus_fingerprint: the corpus files as the load saw them (path,
--     size, mtime, a hash of the first and last bytes), so that resuming a
--     load with other files is refused, naming what changed.
--   documents_ext_id: a unique index on (run_id, ext_id) over the usable
--     documents (text IS NOT NULL): the loader looks a batch's ids up in it
--     (a later duplicate becomes a document error), and it guarantees no two
--     usable documents of a run share an id.
--   tokshift_analyze_load(): ANALYZE of documents and jobs, SECURITY DEFINER
--     (only a table's owner may analyze it; the coordinator's role owns
--     nothing), for the loader to call after its bulk inserts: autovacuum
--     analyzes late, and plans made from statistics that predate a million
--     new rows turn linear statements into quadratic ones.
--
-- The run's life (status, mirrored by the CHECKs below):
--
--   loading --load complete (loaded_at set)--> running --all jobs final--> done
--      |  ^                                       |  ^
--      |  +---- restart, load incomplete ----+    |  | restart, load complete
--      +--signal--> stopped <-----------------+---+--+ (signal)
--
--   Jobs are served in every state but done: a batch's jobs are servable as
--   soon as it commits, while later batches load.
--
-- What it is not: a change to the jobs' state machine (001) or to results.

ALTER TABLE runs
    ADD COLUMN load_next_doc bigint NOT NULL DEFAULT 0 CHECK (load_next_doc >= 0),
    ADD COLUMN load_next_job bigint NOT NULL DEFAULT 0 CHECK (load_next_job >= 0),
    ADD COLUMN n_docs_error integer NOT NULL DEFAULT 0 CHECK (n_docs_error >= 0),
    ADD COLUMN loaded_at timestamptz,
    ADD COLUMN corpus_fingerprint jsonb;

-- Runs loaded by the one-transaction loader of before: loaded, counted.
UPDATE runs r SET loaded_at = coalesce(r.started_at, r.created_at),
       load_next_doc = coalesce(r.n_docs, 0),
       load_next_job = coalesce((SELECT max(job_id) + 1 FROM jobs j WHERE j.run_id = r.run_id), 0),
       n_docs_error = (SELECT count(*) FROM documents d WHERE d.run_id = r.run_id AND d.text IS NULL)
 WHERE r.status <> 'loading';

ALTER TABLE runs
    ADD CONSTRAINT runs_loading_unloaded CHECK (status <> 'loading' OR loaded_at IS NULL),
    ADD CONSTRAINT runs_running_loaded CHECK (status NOT IN ('running', 'done') OR loaded_at IS NOT NULL);

CREATE UNIQUE INDEX documents_ext_id ON documents (run_id, ext_id) WHERE text IS NOT NULL;

CREATE FUNCTION tokshift_analyze_load() RETURNS void
LANGUAGE plpgsql SECURITY DEFINER AS $$
BEGIN
    ANALYZE documents;
    ANALYZE jobs;
END $$;

REVOKE ALL ON FUNCTION tokshift_analyze_load() FROM PUBLIC;

DO $$
BEGIN
    EXECUTE format('ALTER FUNCTION tokshift_analyze_load() SET search_path = %I, pg_temp', current_schema());
END $$;
