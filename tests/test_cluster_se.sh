#!/usr/bin/env bash
# test_cluster_se.sh - the clustered standard error (tokshift_cluster_se,
# sql/migrations/007_cluster_se.sql) is honest, tested as a statistic.
#
# 2,000 simulated runs, each of 200 documents (clusters) of 1-10 tokens with
# x = 5 + u_doc + e_tok, u and e independent N(0, 1) (intra-document
# correlation 0.5, as surprisal within one document is correlated).  Each
# run's clusters are split over 7 "jobs" whose sums are added afterwards, as
# the views add per-job rollups.  The 95 % interval mean ± 1.96 se must cover
# the true mean 5 in 93-97 % of the runs with the clustered se; the naive se
# (tokens independent) must cover it in under 90 % (its expected coverage
# here is about 75 %).  Seeds are fresh every run.  Why 93-97: with CR1 and
# 200 clusters the expected coverage is ~94.6 %; over 2,000 runs its
# binomial standard deviation is 0.5 percentage points, so the band is more
# than 3 standard deviations wide on either side.
set -u
HERE=$(cd "$(dirname "$0")/.." && pwd)
BIN=${1:-${TOKSHIFT_BUILD:-$HERE/build}/tokshift}
command -v initdb >/dev/null 2>&1 || ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || { echo "skip: no PostgreSQL"; exit 77; }
TMP=$(mktemp -d); chmod 755 "$TMP"
trap '"$HERE/deploy/pg-cluster.sh" stop "$TMP/pg" immediate >/dev/null 2>&1; rm -rf "$TMP"' EXIT
conn=$("$HERE/deploy/pg-cluster.sh" start "$TMP/pg" 2>"$TMP/pgerr") || { echo "FAIL: PostgreSQL: $(cat "$TMP/pgerr")"; exit 1; }
"$BIN" db migrate --db "$conn" >/dev/null 2>"$TMP/merr" || { echo "FAIL: migrate: $(cat "$TMP/merr")"; exit 1; }
out=$(psql "$conn" -XAtq -F ' ' <<'SQL'
-- Box-Muller normals (random_normal() needs PostgreSQL 16).
CREATE TEMP TABLE clusters AS
SELECT r, c, c % 7 AS job, 1 + floor(random() * 10)::int AS n_c,
       sqrt(-2 * ln(1 - random())) * cos(2 * pi() * random()) AS u
FROM generate_series(1, 2000) r, generate_series(1, 200) c;
CREATE TEMP TABLE tokens AS
SELECT r, c, job, n_c, 5 + u + sqrt(-2 * ln(1 - random())) * cos(2 * pi() * random()) AS x
FROM clusters, LATERAL generate_series(1, n_c) t;
WITH per_cluster AS (
    SELECT r, job, c, count(*) AS n_c, sum(x) AS s, sum(x * x) AS s2 FROM tokens GROUP BY r, job, c),
per_job AS (   -- what a worker's rollup holds
    SELECT r, job, count(*) AS g, sum(n_c) AS n, sum(s) AS s1, sum(s2) AS s2,
           sum(s * s) AS ss, sum(n_c * s) AS ns, sum(n_c * n_c) AS nn
    FROM per_cluster GROUP BY r, job),
per_run AS (   -- what a view adds up
    SELECT r, sum(g) AS g, sum(n) AS n, sum(s1) AS s1, sum(s2) AS s2, sum(ss) AS ss, sum(ns) AS ns, sum(nn) AS nn
    FROM per_job GROUP BY r),
ci AS (
    SELECT s1 / n AS m, tokshift_cluster_se(g, n, s1, ss, ns, nn) AS se_c,
           tokshift_se(n, s1, s2) AS se_naive FROM per_run)
SELECT round(100.0 * avg((abs(m - 5) <= 1.96 * se_c)::int), 2),
       round(100.0 * avg((abs(m - 5) <= 1.96 * se_naive)::int), 2),
       count(*),
       -- one token per cluster: the clustered se equals the ordinary one
       (SELECT round((tokshift_cluster_se(3, 3, 6, 14, 6, 3) / tokshift_se(3, 6, 14))::numeric, 9))
FROM ci;
SQL
) || { echo "FAIL: the simulation's SQL failed: $out"; exit 1; }
read -r cov_c cov_n runs ratio <<<"$out"
echo "runs $runs: 95% interval coverage, clustered se ${cov_c}%, naive se ${cov_n}%; singleton clusters: clustered/ordinary = $ratio"
fails=0
awk -v c="$cov_c" 'BEGIN { exit !(c >= 93 && c <= 97) }' || { echo "FAIL: clustered coverage $cov_c% outside 93-97%"; fails=1; }
awk -v c="$cov_n" 'BEGIN { exit !(c < 90) }' || { echo "FAIL: naive coverage $cov_n% is not below 90%: the simulation has no intra-document correlation"; fails=1; }
[ "$runs" = 2000 ] || { echo "FAIL: $runs runs, not 2000"; fails=1; }
[ "$ratio" = "1.000000000" ] || { echo "FAIL: with one token per cluster the clustered se / ordinary se is $ratio, not 1"; fails=1; }
[ $fails -eq 0 ] && echo "1 passed, 0 failed" || exit 1
