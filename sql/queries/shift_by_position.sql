-- How differently does the model treat human text and its own samples,
-- position by position after the cut?  (gap = surprisal - entropy; for the
-- model's own samples its expectation is 0, so model_gap estimates 0 and the
-- shift is the human text's excess surprise.)  :run is the run id.
SELECT position, n,
       round(mean_gap::numeric, 4) AS mean_gap, round(se_gap::numeric, 4) AS se,
       kind
FROM position_stats
WHERE run_id = :run AND kind IN ('human_cont', 'sample')
ORDER BY position, kind;
