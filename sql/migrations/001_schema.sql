-- 001_schema.sql - the tokshift schema, version 1.
--
-- What it is: the tables that hold a run's state (runs, documents, jobs) and
-- its results (sequences, token_stats, job_rollups), plus models and their
-- vocabularies.  PostgreSQL is the source of truth: a restarted coordinator
-- resumes from here, and a worker writes a job's rows and marks the job done
-- in one transaction guarded by the job's attempt token.
--
-- Applied by `tokshift db migrate` inside a transaction; never edited once
-- released (later changes are new numbered files).

CREATE TABLE models (
    model_id    bigserial PRIMARY KEY,
    identity    text NOT NULL UNIQUE,          -- sha256 of the model file(s), hex
    name        text NOT NULL,
    arch        text NOT NULL,
    n_vocab     integer NOT NULL CHECK (n_vocab > 0),
    n_ctx       integer NOT NULL CHECK (n_ctx > 0),
    created_at  timestamptz NOT NULL DEFAULT now()
);

-- token id -> piece, so that queries can show text.  `piece` is the
-- vocabulary entry as stored ("▁the", "<0x0A>", "Ġthe"); `text` is what the
-- token decodes to (bytes as UTF-8 where valid, else NULL).
CREATE TABLE vocab (
    model_id    bigint NOT NULL REFERENCES models ON DELETE CASCADE,
    token_id    integer NOT NULL CHECK (token_id >= 0),
    piece       text NOT NULL,
    text        text,
    PRIMARY KEY (model_id, token_id)
);

CREATE TABLE runs (
    run_id          bigserial PRIMARY KEY,
    name            text NOT NULL UNIQUE,
    model_identity  text NOT NULL,
    settings        jsonb NOT NULL,            -- window, stride, cuts, C, K, tau, top-k/p, seed
    corpus          jsonb NOT NULL,            -- patterns and field names
    status          text NOT NULL DEFAULT 'loading'
                    CHECK (status IN ('loading', 'running', 'done', 'stopped')),
    n_docs          integer,
    n_jobs          integer,
    created_at      timestamptz NOT NULL DEFAULT now(),
    started_at      timestamptz,
    finished_at     timestamptz
);

-- One row per document of a run's corpus, usable or not.  `error` says why a
-- document could not be used (malformed line, invalid UTF-8, duplicate id,
-- ...); such a document has no text and no job.
CREATE TABLE documents (
    run_id      bigint NOT NULL REFERENCES runs ON DELETE CASCADE,
    doc_id      bigint NOT NULL CHECK (doc_id >= 0),  -- ordinal in the corpus
    ext_id      text NOT NULL,                        -- the corpus's own id
    source      text NOT NULL,                        -- path:line
    metadata    jsonb NOT NULL DEFAULT '{}',
    text        text,
    n_bytes     bigint NOT NULL DEFAULT 0,
    job_id      bigint,
    n_tokens    integer,                              -- set by the worker (BOS included)
    error       text,
    PRIMARY KEY (run_id, doc_id),
    CHECK ((error IS NULL) = (text IS NOT NULL) OR error LIKE 'worker:%'),
    CHECK (error IS NULL OR job_id IS NULL OR error LIKE 'worker:%')
);
CREATE INDEX documents_job ON documents (run_id, job_id);

-- The job lifecycle (mirrored by the CHECKs and the transition trigger):
--
--            lease (attempts += 1, new token)
--   pending ----------------------------------> leased
--      ^                                          |  |
--      |  requeue: worker dead, job failed or     |  |  commit by the worker holding
--      +--- timed out, attempts < max_attempts ---+  |  the current token (one txn
--                                                    |  with all of the job's rows)
--   failed <--- give up: attempts exhausted ---------+---------------> done
--
-- done and failed are final.
CREATE TABLE jobs (
    run_id          bigint NOT NULL REFERENCES runs ON DELETE CASCADE,
    job_id          bigint NOT NULL CHECK (job_id >= 0),
    state           text NOT NULL DEFAULT 'pending'
                    CHECK (state IN ('pending', 'leased', 'done', 'failed')),
    attempts        integer NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    attempt_token   bigint,
    worker          text,
    n_docs          integer NOT NULL,
    n_bytes         bigint NOT NULL,
    leased_at       timestamptz,
    done_at         timestamptz,
    n_tokens        bigint,
    compute_s       double precision,
    write_s         double precision,
    error           text,
    PRIMARY KEY (run_id, job_id),
    CHECK (state <> 'leased' OR (attempt_token IS NOT NULL AND worker IS NOT NULL AND leased_at IS NOT NULL)),
    CHECK (state <> 'pending' OR attempt_token IS NULL),
    CHECK (state <> 'done' OR (done_at IS NOT NULL AND n_tokens IS NOT NULL)),
    CHECK (state <> 'failed' OR error IS NOT NULL)
);

CREATE FUNCTION jobs_transition_check() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF OLD.state = NEW.state AND OLD.state IN ('pending', 'leased') THEN
        RETURN NEW;  -- bookkeeping within a state
    END IF;
    IF (OLD.state, NEW.state) IN (('pending', 'leased'), ('leased', 'pending'),
                                  ('leased', 'done'), ('leased', 'failed'),
                                  ('pending', 'failed')) THEN
        RETURN NEW;
    END IF;
    RAISE EXCEPTION 'job %/% may not go from % to %', OLD.run_id, OLD.job_id, OLD.state, NEW.state
        USING ERRCODE = 'check_violation';
END $$;
CREATE TRIGGER jobs_transition BEFORE UPDATE OF state ON jobs
    FOR EACH ROW EXECUTE FUNCTION jobs_transition_check();

-- One row per scored sequence of a document: the human text (seq_no 0), and
-- for each cut point its human continuation and K model samples.
CREATE TABLE sequences (
    run_id      bigint NOT NULL,
    doc_id      bigint NOT NULL,
    seq_no      integer NOT NULL CHECK (seq_no >= 0),
    kind        text NOT NULL CHECK (kind IN ('human', 'human_cont', 'sample')),
    cut         integer,            -- prefix length in tokens (BOS included); NULL for human
    sample_idx  integer,            -- 0..K-1 for samples
    seed        bigint,             -- the sample's own seed (uint64 bits), to regenerate it
    temperature real,
    top_k       integer,
    top_p       real,
    n_tokens    integer NOT NULL,   -- token rows of this sequence
    PRIMARY KEY (run_id, doc_id, seq_no),
    FOREIGN KEY (run_id, doc_id) REFERENCES documents ON DELETE CASCADE,
    CHECK ((kind = 'human') = (cut IS NULL)),
    CHECK ((kind = 'sample') = (sample_idx IS NOT NULL AND seed IS NOT NULL))
);

-- One row per token, partitioned by run (the coordinator creates each run's
-- partition).  pos is the token's index in the document's ids (0 = BOS); for
-- continuations pos - cut is the offset into the continuation.  Statistics
-- are float4: ~7 significant digits, far below the engine's 1e-4 agreement
-- with references, at half the storage.
CREATE TABLE token_stats (
    run_id          bigint NOT NULL,
    doc_id          bigint NOT NULL,
    seq_no          integer NOT NULL,
    pos             integer NOT NULL,
    token_id        integer NOT NULL,
    logprob         real NOT NULL,
    entropy         real NOT NULL,
    rank            integer NOT NULL CHECK (rank >= 1),
    top1_logprob    real NOT NULL,
    varentropy      real NOT NULL,
    context_len     integer NOT NULL,
    PRIMARY KEY (run_id, doc_id, seq_no, pos)
) PARTITION BY LIST (run_id);

-- Per-job sums by kind and position (human: pos; continuations: pos - cut),
-- so that run-level summaries never scan token_stats.
CREATE TABLE job_rollups (
    run_id          bigint NOT NULL,
    job_id          bigint NOT NULL,
    kind            text NOT NULL,
    position        integer NOT NULL,
    n               bigint NOT NULL,
    sum_surprisal   double precision NOT NULL,
    sumsq_surprisal double precision NOT NULL,
    sum_entropy     double precision NOT NULL,
    sumsq_entropy   double precision NOT NULL,
    sum_gap         double precision NOT NULL,
    sumsq_gap       double precision NOT NULL,
    sum_z           double precision NOT NULL,
    sumsq_z         double precision NOT NULL,
    n_z             bigint NOT NULL,            -- tokens with varentropy > 0 (z defined)
    PRIMARY KEY (run_id, job_id, kind, position),
    FOREIGN KEY (run_id, job_id) REFERENCES jobs ON DELETE CASCADE
);
