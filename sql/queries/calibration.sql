-- Is the model calibrated on human text and on its own samples?  In each bin
-- of top-1 probability, a calibrated model's accuracy equals its confidence
-- (± its standard error).  From calib_rollups: no token is read.
SELECT kind, bin, n, round(mean_confidence::numeric, 3) AS confidence, round(accuracy::numeric, 3) AS accuracy,
       round(se_accuracy::numeric, 3) AS se_accuracy
FROM calibration
WHERE run_id = :run
ORDER BY kind, bin;
