-- Which tokens of human text surprise the model most relative to its own
-- uncertainty (largest z = gap / sqrt(varentropy)), with their text?
SELECT d.ext_id, v.pos, w.text AS token, round(v.surprisal::numeric, 3) AS surprisal,
       round(v.entropy::numeric, 3) AS entropy, round(v.z::numeric, 2) AS z, v.rank
FROM token_view v
JOIN documents d USING (run_id, doc_id)
JOIN runs r USING (run_id)
JOIN models m ON m.identity = r.model_identity
JOIN vocab w ON w.model_id = m.model_id AND w.token_id = v.token_id
WHERE v.run_id = :run AND v.kind = 'human' AND v.z IS NOT NULL
ORDER BY v.z DESC
LIMIT 50;
