-- What could not be measured, and why?  Documents with an error (malformed
-- lines, invalid UTF-8, duplicate ids, ...) and jobs that failed or retried.
SELECT 'document' AS what, source AS which, error FROM documents WHERE run_id = :run AND error IS NOT NULL
UNION ALL
SELECT 'job ' || state, job_id::text || ' (attempts ' || attempts || ')', error
FROM jobs WHERE run_id = :run AND (state = 'failed' OR attempts > 1)
ORDER BY 1, 2;
