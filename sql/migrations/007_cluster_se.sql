-- 007_cluster_se.sql - standard errors clustered by document.
--
-- What it is: tokshift_cluster_se, the standard error of a mean over tokens
-- when tokens come in clusters (the tokens of one document; for samples, the
-- K samples that share one prefix) whose tokens are correlated, so that the
-- naive sqrt(var / n) is too small.  It takes only sums that add across jobs
-- (a document, and so a cluster, never spans two jobs):
--
--   g     the number of clusters              n    the number of tokens, Σ n_c
--   s1    Σ x over all tokens, Σ S_c          ss   Σ_c S_c²   (S_c: the cluster's sum)
--   ns    Σ_c n_c S_c                          nn   Σ_c n_c²
--
-- The mean is the ratio m = s1 / n; its linearised (sandwich) variance with
-- the usual small-sample factor g / (g - 1) ("CR1", as Stata's vce(cluster)
-- and sandwich::vcovCL compute it) is
--
--   V(m) = g / (g - 1) · Σ_c (S_c - m n_c)² / n²
--        = g / (g - 1) · (ss - 2 m ns + m² nn) / n²
--
-- With one token per cluster it is the ordinary standard error (times
-- sqrt(n / (n - 1)) against the population formula).  Undefined (NULL) for
-- fewer than two clusters.
--
-- What it is not: a correction for few clusters (with g below ~30 the
-- interval m ± 1.96 se undercovers; the views report g beside it).

CREATE FUNCTION tokshift_cluster_se(g numeric, n numeric, s1 double precision, ss double precision,
                                    ns double precision, nn double precision) RETURNS double precision
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    RETURN CASE WHEN g > 1 AND n > 0 THEN
        sqrt(greatest(ss - 2 * (s1 / n) * ns + (s1 / n) ^ 2 * nn, 0) * g / (g - 1)) / n END;
