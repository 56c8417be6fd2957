-- 003_partition_function.sql - a run's token_stats partition, made by a
-- function, so that the coordinator needs no DDL rights.
--
-- What it is: tokshift_create_partition(run_id), SECURITY DEFINER: it runs
-- with the rights of whoever applied the migrations (the owner of
-- token_stats, who alone may add partitions to it) and creates
-- token_stats_r<run_id> for a run that exists, or does nothing when the
-- partition is already there.  Nobody but that owner may call it until
-- sql/roles.sql grants it to the coordinator's role.  Its search_path is
-- pinned (the schema the migration ran in, then pg_temp), as the
-- PostgreSQL manual advises for SECURITY DEFINER functions; the table name
-- is built from an integer only.
--
-- What it is not: a way to create anything else (the argument is a bigint;
-- the run must exist).

CREATE FUNCTION tokshift_create_partition(p_run_id bigint) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER AS $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM runs WHERE run_id = p_run_id) THEN
        RAISE EXCEPTION 'run % does not exist', p_run_id USING ERRCODE = 'foreign_key_violation';
    END IF;
    EXECUTE format('CREATE TABLE IF NOT EXISTS %I PARTITION OF token_stats FOR VALUES IN (%s)',
                   'token_stats_r' || p_run_id, p_run_id);
END $$;

REVOKE ALL ON FUNCTION tokshift_create_partition(bigint) FROM PUBLIC;

DO $$
BEGIN
    EXECUTE format('ALTER FUNCTION tokshift_create_partition(bigint) SET search_path = %I, pg_temp',
                   current_schema());
END $$;
