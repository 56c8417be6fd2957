-- 013_run_queue.sql - the queue of runs that one coordinator serves.
--
-- What it is: a run's place in the queue (`tokshift-coordinator --submit`
-- loads a run and queues it; `tokshift-coordinator --serve-queue` serves
-- every queued run at once, from one fleet; `tokshift queue priority`
-- changes a queued run's priority).  Runs are served by priority, highest
-- first, and in the order they were queued (FIFO) within a priority: a
-- ready worker takes a job of the first run in that order that has jobs
-- pending and uses the worker's model.
--
--   priority   -1000..1000, default 0
--   queued_at  when the run joined the queue (its FIFO position, ties broken
--              by run_id); NULL: never queued (a run served on its own by
--              `tokshift-coordinator --run`)
--
-- The run's life gains one state, queued: loaded and waiting in the queue
-- (006's diagram otherwise unchanged):
--
--   loading --submit's load complete--> queued --a queue server serves it--> running --> done
--
-- A run stays in the queue while it is queued or running; a restarted queue
-- server resumes every such run.
--
-- What it is not: a change to the jobs' state machine or to results.

ALTER TABLE runs DROP CONSTRAINT runs_status_check;
ALTER TABLE runs
    ADD CONSTRAINT runs_status_check CHECK (status IN ('loading', 'queued', 'running', 'done', 'stopped')),
    ADD CONSTRAINT runs_queued_loaded CHECK (status <> 'queued' OR (loaded_at IS NOT NULL AND queued_at IS NOT NULL)),
    ADD COLUMN priority integer NOT NULL DEFAULT 0 CONSTRAINT runs_priority_range CHECK (priority BETWEEN -1000 AND 1000),
    ADD COLUMN queued_at timestamptz;

-- The queue server's poll (every heartbeat): the queue in serving order,
-- from an index over the queue's runs only (done runs leave it).
CREATE INDEX runs_queue ON runs (priority DESC, queued_at, run_id)
    WHERE queued_at IS NOT NULL AND status IN ('queued', 'running');
