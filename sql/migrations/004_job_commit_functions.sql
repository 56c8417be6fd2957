-- 004_job_commit_functions.sql - the two steps of a worker's commit that
-- touch the jobs table, as functions, so that the worker's role needs no
-- right to read attempt tokens or to update jobs.
--
-- What it is: tokshift_job_fence(run, job, token) locks the job's row and
-- says whether it is leased under that attempt token (the fence every
-- worker commit starts with); tokshift_job_done(run, job, token, n_tokens,
-- compute_s, write_s) marks such a job done, and raises an error when it is
-- not leased under the token.  Both are SECURITY DEFINER (they run with the
-- rights of whoever applied the migrations), their search_path is pinned,
-- and nobody but that owner may call them until sql/roles.sql grants them
-- to the worker's role.  So a worker's database credentials can complete a
-- job only with the token that the coordinator handed to the worker holding
-- the lease, and can read no token.
--
-- What it is not: the rest of the commit (the rows are COPYed by the
-- worker in the same transaction; see common/db.c, db_commit_job).

CREATE FUNCTION tokshift_job_fence(p_run_id bigint, p_job_id bigint, p_token bigint) RETURNS boolean
LANGUAGE plpgsql SECURITY DEFINER AS $$
BEGIN
    PERFORM 1 FROM jobs
     WHERE run_id = p_run_id AND job_id = p_job_id AND state = 'leased' AND attempt_token = p_token
       FOR UPDATE;
    RETURN FOUND;
END $$;

CREATE FUNCTION tokshift_job_done(p_run_id bigint, p_job_id bigint, p_token bigint, p_n_tokens bigint,
                                  p_compute_s double precision, p_write_s double precision) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER AS $$
BEGIN
    UPDATE jobs SET state = 'done', done_at = now(), n_tokens = p_n_tokens, compute_s = p_compute_s,
                    write_s = p_write_s, error = NULL
     WHERE run_id = p_run_id AND job_id = p_job_id AND state = 'leased' AND attempt_token = p_token;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'job %/% is not leased under this attempt token', p_run_id, p_job_id
            USING ERRCODE = 'object_not_in_prerequisite_state';
    END IF;
END $$;

REVOKE ALL ON FUNCTION tokshift_job_fence(bigint, bigint, bigint) FROM PUBLIC;
REVOKE ALL ON FUNCTION tokshift_job_done(bigint, bigint, bigint, bigint, double precision, double precision) FROM PUBLIC;

DO $$
BEGIN
    EXECUTE format('ALTER FUNCTION tokshift_job_fence(bigint, bigint, bigint) SET search_path = %I, pg_temp',
                   current_schema());
    EXECUTE format('ALTER FUNCTION tokshift_job_done(bigint, bigint, bigint, bigint, double precision, '
                   'double precision) SET search_path = %I, pg_temp', current_schema());
END $$;
