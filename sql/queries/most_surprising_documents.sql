-- Which documents does the model find most surprising (highest perplexity),
-- and how do their continuations' gaps compare with the model's samples?
SELECT ext_id, source, n_tokens, round(perplexity::numeric, 2) AS perplexity,
       round(mean_gap_human_cont::numeric, 3) AS human_cont_gap,
       round(mean_gap_samples::numeric, 3) AS sample_gap
FROM document_summary
WHERE run_id = :run AND error IS NULL
ORDER BY perplexity DESC NULLS LAST
LIMIT 20;
