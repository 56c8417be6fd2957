-- roles.sql - the PostgreSQL roles of a tokshift deployment, least privilege.
--
-- What it is: three login roles and exactly the rights each needs.
--
--   tokshift_coordinator  registers runs, loads documents and jobs, leases
--                         and releases jobs, reads progress; creates a run's
--                         sequence_stats partition only through
--                         tokshift_create_partition() (SECURITY DEFINER,
--                         migrations 003 and 005) and analyzes documents
--                         and jobs only through tokshift_analyze_load()
--                         (migration 006), so it has no DDL rights and owns
--                         no table.
--   tokshift_worker       writes results: INSERT into sequence_stats,
--                         job_rollups, bucket_rollups, calib_rollups,
--                         doc_rollups, doc_bucket_rollups, top_tokens,
--                         models, vocab; marks a
--                         job done only through tokshift_job_done() with
--                         the job's attempt token (migration 004: it cannot
--                         read tokens nor update jobs otherwise); sets
--                         n_tokens/error of documents of leased jobs only
--                         (a trigger).  No DDL, no DELETE, no TRUNCATE, no
--                         reading texts, runs, tokens or results.
--   tokshift_reader       read-only: every table and view (researchers).
--
-- and hardening that least privilege relies on: PUBLIC may no longer create
-- objects in the schema or temporary tables in the database (the reader
-- keeps TEMPORARY for its analyses); CONNECT is granted to the three roles.
--
-- Run it after `tokshift db migrate`, as a superuser (or as the database
-- owner if that role has CREATEROLE), in the tokshift database; run it again
-- after every migration (it is idempotent):
--
--   psql "$OWNER_DB" -v ON_ERROR_STOP=1 -f sql/roles.sql \
--        -v coordinator_password="$P1" -v worker_password="$P2" -v reader_password="$P3"
--
-- Variables (psql -v): coordinator_role, worker_role, reader_role (default
-- the names above); coordinator_password, worker_password, reader_password
-- (optional: an unset one leaves that role's password as it is, e.g. for
-- certificate or peer authentication).  A password given here travels in
-- the ALTER ROLE statement: do not run this with log_statement = 'ddl' or
-- 'all', or pass a SCRAM verifier ('SCRAM-SHA-256$4096:...') instead of
-- the password itself.
--
-- What it is not: authentication (pg_hba.conf decides how each role logs
-- in: use scram-sha-256 or certificates, and TLS off the machine).
\set ON_ERROR_STOP on
\if :{?coordinator_role}
\else
\set coordinator_role tokshift_coordinator
\endif
\if :{?worker_role}
\else
\set worker_role tokshift_worker
\endif
\if :{?reader_role}
\else
\set reader_role tokshift_reader
\endif

SELECT current_database() AS dbname, current_schema() AS schemaname \gset
SELECT NOT EXISTS (SELECT 1 FROM pg_proc WHERE proname = 'tokshift_create_partition') AS unmigrated \gset
\if :unmigrated
DO $$ BEGIN
    RAISE EXCEPTION 'the tokshift schema is not migrated here (no tokshift_create_partition): run `tokshift db migrate` first';
END $$;
\endif
SELECT tableowner AS owner FROM pg_tables WHERE schemaname = :'schemaname' AND tablename = 'sequence_stats' \gset
SET client_min_messages = warning;

BEGIN;

-- ---- the roles -------------------------------------------------------------

SELECT NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = :'coordinator_role') AS missing \gset
\if :missing
CREATE ROLE :"coordinator_role" LOGIN;
\endif
SELECT NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = :'worker_role') AS missing \gset
\if :missing
CREATE ROLE :"worker_role" LOGIN;
\endif
SELECT NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = :'reader_role') AS missing \gset
\if :missing
CREATE ROLE :"reader_role" LOGIN;
\endif
\if :{?coordinator_password}
ALTER ROLE :"coordinator_role" PASSWORD :'coordinator_password';
\endif
\if :{?worker_password}
ALTER ROLE :"worker_role" PASSWORD :'worker_password';
\endif
\if :{?reader_password}
ALTER ROLE :"reader_role" PASSWORD :'reader_password';
\endif

-- ---- hardening -------------------------------------------------------------

REVOKE CREATE ON SCHEMA :"schemaname" FROM PUBLIC;
REVOKE CREATE, TEMPORARY ON DATABASE :"dbname" FROM PUBLIC;
GRANT CONNECT ON DATABASE :"dbname" TO :"coordinator_role", :"worker_role", :"reader_role";
GRANT TEMPORARY ON DATABASE :"dbname" TO :"reader_role";
GRANT USAGE ON SCHEMA :"schemaname" TO :"coordinator_role", :"worker_role", :"reader_role";
-- Start from nothing, so that running this again after a change takes
-- rights away too.
REVOKE ALL ON ALL TABLES IN SCHEMA :"schemaname" FROM :"coordinator_role", :"worker_role", :"reader_role";
REVOKE ALL ON ALL SEQUENCES IN SCHEMA :"schemaname" FROM :"coordinator_role", :"worker_role", :"reader_role";
REVOKE ALL ON FUNCTION tokshift_create_partition(bigint) FROM PUBLIC, :"worker_role", :"reader_role";
REVOKE ALL ON FUNCTION tokshift_analyze_load() FROM PUBLIC, :"worker_role", :"reader_role";
REVOKE ALL ON FUNCTION tokshift_job_fence(bigint, bigint, bigint) FROM PUBLIC, :"coordinator_role", :"reader_role";
REVOKE ALL ON FUNCTION tokshift_job_done(bigint, bigint, bigint, bigint, double precision, double precision)
    FROM PUBLIC, :"coordinator_role", :"reader_role";

-- ---- coordinator -------------------------------------------------------------

GRANT SELECT, INSERT, UPDATE ON runs TO :"coordinator_role";
GRANT USAGE ON SEQUENCE runs_run_id_seq TO :"coordinator_role";
GRANT SELECT, INSERT, UPDATE ON documents TO :"coordinator_role";
GRANT SELECT, INSERT, UPDATE ON jobs TO :"coordinator_role";
GRANT EXECUTE ON FUNCTION tokshift_create_partition(bigint) TO :"coordinator_role";
-- ANALYZE of documents and jobs after the load's bulk inserts (migration 006).
GRANT EXECUTE ON FUNCTION tokshift_analyze_load() TO :"coordinator_role";
-- Progress and the summary (views read the tables with their owner's rights).
SELECT format('GRANT SELECT ON %I.%I TO %I', schemaname, viewname, :'coordinator_role')
  FROM pg_views WHERE schemaname = :'schemaname' ORDER BY viewname \gexec

-- ---- worker ------------------------------------------------------------------

-- The commit's fence and its "done" go through functions that take the
-- attempt token (migration 004): no token is readable, no job updatable
-- otherwise.  Job states are readable (the documents guard below needs them).
GRANT EXECUTE ON FUNCTION tokshift_job_fence(bigint, bigint, bigint) TO :"worker_role";
GRANT EXECUTE ON FUNCTION tokshift_job_done(bigint, bigint, bigint, bigint, double precision, double precision)
    TO :"worker_role";
GRANT SELECT (run_id, job_id, state) ON jobs TO :"worker_role";
GRANT SELECT (run_id, doc_id), UPDATE (n_tokens, error) ON documents TO :"worker_role";
GRANT INSERT ON sequence_stats, job_rollups, bucket_rollups, calib_rollups, doc_rollups, doc_bucket_rollups,
                top_tokens, vocab TO :"worker_role";
GRANT SELECT (model_id, identity), INSERT ON models TO :"worker_role";
GRANT USAGE ON SEQUENCE models_model_id_seq TO :"worker_role";

-- A worker may only touch the documents of a leased job.  The role's name
-- is the trigger's argument; the owner and superusers are not held by it.
CREATE OR REPLACE FUNCTION tokshift_worker_guard() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NOT pg_has_role(current_user, TG_ARGV[0], 'MEMBER')
       OR (SELECT rolsuper FROM pg_roles WHERE rolname = current_user) THEN
        RETURN NEW;
    END IF;
    IF NOT EXISTS (SELECT 1 FROM jobs j WHERE j.run_id = OLD.run_id AND j.job_id = OLD.job_id
                                          AND j.state = 'leased') THEN
        RAISE EXCEPTION 'role % may only update documents of a leased job (document %/%)',
            current_user, OLD.run_id, OLD.doc_id
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    RETURN NEW;
END $$;
REVOKE ALL ON FUNCTION tokshift_worker_guard() FROM PUBLIC;
DROP TRIGGER IF EXISTS tokshift_worker_guard ON documents;
CREATE TRIGGER tokshift_worker_guard BEFORE UPDATE ON documents
    FOR EACH ROW EXECUTE FUNCTION tokshift_worker_guard(:'worker_role');

-- ---- reader ------------------------------------------------------------------

GRANT SELECT ON ALL TABLES IN SCHEMA :"schemaname" TO :"reader_role";
-- Partitions (made by tokshift_create_partition, as the owner) and tables of
-- later migrations: readable too.
ALTER DEFAULT PRIVILEGES FOR ROLE :"owner" IN SCHEMA :"schemaname" GRANT SELECT ON TABLES TO :"reader_role";

COMMIT;
\echo roles.sql: roles :coordinator_role, :worker_role and :reader_role are set up in database :dbname
