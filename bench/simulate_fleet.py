#!/usr/bin/env python3
"""simulate_fleet.py - where a 10^9-token run saturates: the coordinator,
the network or PostgreSQL, on 100 and 1,000 workers, from measured per-job
and per-token costs (bench/pipeline.sh measures them and passes them in).

The model (a steady state; every resource is a queue that serves at most
its capacity, and the run goes as fast as the most loaded one allows):

  demand     workers x tokens/s per worker = D corpus tokens/s
  jobs/s     D / tokens per job
  coordinator  jobs/s x coordinator CPU per job           (1 core: its loop
               is one thread)
  PostgreSQL   jobs/s x PostgreSQL CPU per job (leases, states, the job's
               commit)  +  D x stored tokens per corpus token / write rate
               per core (the results' rows), over its cores; and jobs/s
               against its durable commit rate (every job's results commit
               once, synchronously)
  network      jobs/s x (job text + message overhead)  +  D x bytes per
               stored token x stored tokens per corpus token, against the
               coordinator's and PostgreSQL's links (one each)

Each utilisation is demand / capacity; the largest names the bottleneck,
and the run's rate is D / max(1, largest).  For each fleet it prints the
utilisations, the run's duration, and the smallest job (tokens) at which
the coordinator (or PostgreSQL's per-job cost) would become the bottleneck.

No third-party modules; every input is a flag (defaults: see --help, and
the README's storage figures for bytes per token).  Example:

  bench/simulate_fleet.py --coord-cpu-ms 0.05 --pg-cpu-ms 0.1 \
      --pg-commits 900 --worker-tps 2000
"""
import argparse
import sys


def simulate(a, workers):
    demand = workers * a.worker_tps                       # corpus tokens/s wanted
    jobs = demand / a.tokens_per_job                      # jobs/s wanted
    stored = demand * a.stored_per_token                  # statistic tokens/s written
    util = {
        "coordinator CPU": jobs * a.coord_cpu_ms / 1e3,
        "PostgreSQL CPU": (jobs * a.pg_cpu_ms / 1e3 + stored / a.pg_write_tps) / a.pg_cores,
        "PostgreSQL commits": jobs / a.pg_commits,
        "coordinator link": jobs * (a.tokens_per_job * a.bytes_per_text_token + a.msg_bytes) / a.link_bytes,
        "PostgreSQL link": (stored * a.bytes_per_stored_token + jobs * a.tokens_per_job * a.bytes_per_text_token)
        / a.link_bytes,
    }
    worst = max(util, key=util.get)
    rate = demand / max(1.0, util[worst])
    # The smallest job before the per-job costs alone saturate a resource.
    per_job = {
        "coordinator CPU": demand * a.coord_cpu_ms / 1e3,
        "PostgreSQL per-job CPU": demand * a.pg_cpu_ms / 1e3 / a.pg_cores,
        "PostgreSQL commits": demand / a.pg_commits,
    }
    return demand, jobs, util, worst, rate, per_job


def hms(s):
    return "%d:%02d:%02d" % (s // 3600, s // 60 % 60, s % 60)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--tokens", type=float, default=1e9, help="corpus tokens in the run")
    p.add_argument("--workers", type=int, nargs="+", default=[100, 1000])
    p.add_argument("--worker-tps", type=float, default=2000,
                   help="corpus tokens/s one worker measures: an assumption (it depends on the model, the "
                        "cuts and samples and the worker's cores; bench_gpt2 / bench_continue give it for a "
                        "model)")
    p.add_argument("--tokens-per-job", type=float, default=65536,
                   help="corpus tokens per job (--job-bytes 262144 at ~4 bytes per token)")
    p.add_argument("--coord-cpu-ms", type=float, required=True, help="coordinator CPU per job (bench_dispatch)")
    p.add_argument("--pg-cpu-ms", type=float, required=True,
                   help="PostgreSQL CPU per job of the dispatch path (bench_dispatch, no-op jobs)")
    p.add_argument("--pg-commits", type=float, required=True,
                   help="PostgreSQL's durable commits/s (pgbench, in bench/pipeline.sh)")
    p.add_argument("--pg-cores", type=float, default=2, help="PostgreSQL server cores")
    p.add_argument("--pg-write-tps", type=float, default=600000,
                   help="statistic tokens/s one PostgreSQL core stores: one connection's db_commit_job rate, "
                        "563-649k on the 2-core CI machine (bench/storage_scale.sh; bench/pipeline.sh part 1 "
                        "passes its own)")
    p.add_argument("--stored-per-token", type=float, default=3.0,
                   help="statistic tokens stored per corpus token (human text + continuations + samples; "
                        "README: about 3 at its settings)")
    p.add_argument("--bytes-per-stored-token", type=float, default=76,
                   help="bytes sent to and written by PostgreSQL per stored token (bench/storage_scale.sh: "
                        "38.4 stored with the rollups + 37.8 WAL)")
    p.add_argument("--bytes-per-text-token", type=float, default=4, help="corpus text bytes per token")
    p.add_argument("--msg-bytes", type=float, default=400,
                   help="wire bytes per job besides the text (JOB, DONE, READY frames)")
    p.add_argument("--link-gbit", type=float, default=10, help="network link of the coordinator and of PostgreSQL")
    a = p.parse_args()
    a.link_bytes = a.link_gbit * 1e9 / 8
    print("inputs: coordinator %.3f ms CPU/job, PostgreSQL %.3f ms CPU/job + %.0f stored tokens/s per core "
          "on %g cores, %.0f durable commits/s; %.0f tokens/job, %.0f tokens/s per worker, %g Gbit/s links"
          % (a.coord_cpu_ms, a.pg_cpu_ms, a.pg_write_tps, a.pg_cores, a.pg_commits, a.tokens_per_job,
             a.worker_tps, a.link_gbit))
    for w in a.workers:
        demand, jobs, util, worst, rate, per_job = simulate(a, w)
        print("\n%d workers: %.3g tokens/s wanted, %.1f jobs/s" % (w, demand, jobs))
        for k, u in util.items():
            print("  %-20s %6.1f%% of capacity%s" % (k, 100 * u, "  <- bottleneck" if k == worst and u > 1 else ""))
        print("  PostgreSQL cores for this fleet: %.1f (CPU), and %.0f durable commits/s"
              % (util["PostgreSQL CPU"] * a.pg_cores, jobs))
        limit = "the workers" if util[worst] <= 1 else worst
        print("  run of %.3g tokens: %s at %.3g tokens/s (limited by %s)" % (a.tokens, hms(a.tokens / rate), rate,
                                                                         limit))
        smallest = max(per_job.values())
        print("  smallest job before a per-job cost saturates: %.0f tokens (%s)"
              % (smallest, max(per_job, key=per_job.get)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
