-- Which tokens of human text surprise the model most relative to its own
-- uncertainty (largest z = gap / sqrt(varentropy)), with their text?  From
-- top_tokens, each job's 64 human tokens of largest z (written by the
-- worker), so this reads an index, not every token: the run's 50 largest
-- are among them.  (For other ranks or kinds, scan token_view.)  The text
-- is looked up token by token on vocab's key, whatever the statistics.
SELECT d.ext_id, t.pos,
       (SELECT w.text FROM runs r JOIN models m ON m.identity = r.model_identity
        JOIN vocab w ON w.model_id = m.model_id AND w.token_id = t.token_id WHERE r.run_id = t.run_id) AS token,
       round((-t.logprob)::numeric, 3) AS surprisal, round(t.entropy::numeric, 3) AS entropy,
       round(t.z::numeric, 2) AS z, t.rank
FROM (SELECT * FROM top_tokens WHERE run_id = :run ORDER BY z DESC LIMIT 50) t
JOIN documents d USING (run_id, doc_id)
ORDER BY t.z DESC;
