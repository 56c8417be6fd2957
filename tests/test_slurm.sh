#!/usr/bin/env bash
# test_slurm.sh - deploy/slurm/ on a real Slurm: a one-machine cluster
# (munged, slurmctld and slurmd on this machine, a generated slurm.conf with
# its CPUs, all state in a temp folder, free ports), a private PostgreSQL.
#
#   1. a reference run of the demo corpus: a coordinator and 2 workers, no Slurm;
#   2. `sbatch tokshift.sbatch` of the same corpus and settings, 2 tasks:
#      every job done, and token_view's rows equal the reference's;
#   3. a run cancelled (scancel) after a few of its jobs are done, then
#      resubmitted as a coordinator alone (--no-workers) with its worker from
#      the job array (tokshift-workers.sbatch --join): it resumes (the jobs done before the
#      cancel are not done again), completes, and equals the reference.
#
# Skips (77) unless root, with Slurm (slurm-wlm) and munge installed and
# TOKSHIFT_TESTDATA set.  Every daemon it started is stopped on exit.
set -u
skip() { echo "skip: $*"; exit 77; }
[ "$(id -u)" -eq 0 ] || skip "needs root (slurmd runs jobs as their users)"
for p in munged slurmctld slurmd sbatch srun scancel squeue sinfo scontrol; do
  command -v "$p" >/dev/null 2>&1 || skip "$p not found (Debian: apt-get install slurm-wlm munge)"
done
[ -n "${TOKSHIFT_TESTDATA:-}" ] || skip "TOKSHIFT_TESTDATA is not set"
MODEL=$(cd "$TOKSHIFT_TESTDATA/models" 2>/dev/null && pwd)/stories260K.gguf
[ -f "$MODEL" ] || { echo "FAIL: the model $MODEL is missing"; exit 1; }
ROOT=$(pwd)
BUILD=$(cd "${TOKSHIFT_BUILD:-build}" && pwd)

TMP=$(mktemp -d); chmod 755 "$TMP"
pids=()
cleanup() {
  # Jobs first (slurmstepd outlives slurmd), then the daemons, then any
  # program of ours left behind (they all carry our database's conninfo).
  if [ -n "${SLURM_CONF:-}" ]; then
    scancel --quiet --partition=tstest 2>/dev/null
    for _ in $(seq 1 75); do [ -z "$(squeue -h 2>/dev/null)" ] && break; sleep 0.2; done
  fi
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null; done
  for p in "${pids[@]}"; do
    for _ in $(seq 1 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$p" 2>/dev/null
  done
  local f
  if [ -n "${DB:-}" ]; then
    for f in /proc/[0-9]*/cmdline; do
      tr '\0' '\n' 2>/dev/null < "$f" | grep -qxF "$DB" && kill -9 "$(basename "$(dirname "$f")")" 2>/dev/null
    done
  fi
  "$ROOT/deploy/pg-cluster.sh" stop "$TMP/pg" immediate >/dev/null 2>&1
  [ -n "${KEEP:-}" ] || rm -rf "$TMP"
}
trap cleanup EXIT
fails=0
fail() { echo "FAIL: $*"; fails=$((fails + 1)); }
step() { echo "[${SECONDS}s] $*"; }
free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
waitfor() {  # SECONDS WHAT CMD...: poll CMD every 0.2 s
  local n=$(($1 * 5)) what=$2; shift 2
  for _ in $(seq 1 $n); do "$@" >/dev/null 2>&1 && return 0; sleep 0.2; done
  fail "timed out waiting for $what"; return 1
}

# --- munge: a key of our own, its socket in TMP -------------------------
mkdir -p "$TMP/munge" "$TMP/log" "$TMP/state" "$TMP/spool" "$TMP/jobs"
chmod 711 "$TMP/munge"
head -c 1024 /dev/urandom > "$TMP/munge/munge.key"; chmod 600 "$TMP/munge/munge.key"
MSOCK=$TMP/munge/sock
munged -F -f --socket="$MSOCK" --key-file="$TMP/munge/munge.key" --log-file="$TMP/log/munged.log" \
  --pid-file="$TMP/munge/pid" --seed-file="$TMP/munge/seed" 2>>"$TMP/log/munged.log" &
pids+=($!)
waitfor 10 "munged" test -S "$MSOCK" || exit 1

# --- slurm.conf: this machine is the controller and the only node ------
NODE=$(hostname)
CPUS=$(nproc)
MEM=$(($(awk '/^MemTotal/ { print int($2 / 1024) }' /proc/meminfo) / 2))
getent hosts "$NODE" >/dev/null || skip "this machine's name '$NODE' does not resolve (Slurm needs it)"
export SLURM_CONF=$TMP/slurm.conf
cat > "$SLURM_CONF" <<EOF
ClusterName=tstest
SlurmctldHost=$NODE(127.0.0.1)
SlurmctldPort=$(free_port)
SlurmdPort=$(free_port)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
AuthInfo=socket=$MSOCK
CredType=cred/munge
StateSaveLocation=$TMP/state
SlurmdSpoolDir=$TMP/spool
SlurmctldPidFile=$TMP/slurmctld.pid
SlurmdPidFile=$TMP/slurmd.pid
SlurmctldLogFile=$TMP/log/slurmctld.log
SlurmdLogFile=$TMP/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SchedulerType=sched/builtin
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
ReturnToService=2
MpiDefault=none
SwitchType=switch/none
InactiveLimit=0
KillWait=10
MinJobAge=300
NodeName=$NODE NodeAddr=127.0.0.1 CPUs=$CPUS RealMemory=$MEM State=UNKNOWN
PartitionName=tstest Nodes=$NODE Default=YES MaxTime=10 State=UP
EOF
slurmctld -D -i -f "$SLURM_CONF" 2>>"$TMP/log/slurmctld.err" &
pids+=($!)
slurmd -D -f "$SLURM_CONF" 2>>"$TMP/log/slurmd.err" &
pids+=($!)
node_idle() { [ "$(sinfo -h -N -o %t 2>/dev/null)" = idle ]; }
if ! waitfor 30 "the Slurm node to come up" node_idle; then
  tail -n 5 "$TMP/log/slurmctld.log" "$TMP/log/slurmd.log" "$TMP/log/"*.err 2>/dev/null
  exit 1
fi
step "slurm: $(sinfo -h -o '%P %D node(s) %c CPUs %t') ($(sinfo -V))"

# --- PostgreSQL, and the reference run ----------------------------------
step "PostgreSQL and the reference run"
DB=$("$ROOT/deploy/pg-cluster.sh" start "$TMP/pg" 2>"$TMP/log/pg.err") || { fail "pg-cluster.sh: $(cat "$TMP/log/pg.err")"; exit 1; }
psqlc() { psql "$DB" -XAtqc "$1"; }
CORPUS=$ROOT/deploy/demo/stories.jsonl
# One BLAS thread everywhere, and the same jobs: the runs compute the same
# floating-point operations in the same order, so their rows must be equal.
SETTINGS=(--prefix-lengths '16,32' --cont-len 16 --samples 4 --job-docs 1 --seed 7)
"$BUILD/tokshift" db migrate --db "$DB" 2>"$TMP/log/migrate.err" || { fail "migrate: $(cat "$TMP/log/migrate.err")"; exit 1; }
EP=tcp://127.0.0.1:$(free_port)
OPENBLAS_NUM_THREADS=1 "$BUILD/tokshift-coordinator" --run ref --model "$MODEL" --db "$DB" --bind "$EP" \
  "${SETTINGS[@]}" "$CORPUS" >/dev/null 2>"$TMP/log/ref-coordinator.err" &
coord=$!
for i in 1 2; do
  OPENBLAS_NUM_THREADS=1 "$BUILD/tokshift-worker" --connect "$EP" --model "$MODEL" --db "$DB" 2>"$TMP/log/ref-worker-$i.err" &
  pids+=($!)
done
wait $coord || { fail "the reference run's coordinator exited $?: $(tail -3 "$TMP/log/ref-coordinator.err")"; exit 1; }
NJOBS=$(psqlc "SELECT n_jobs FROM runs WHERE name = 'ref'")
[ "${NJOBS:-0}" -ge 20 ] || fail "the reference run has ${NJOBS:-no} jobs"

SB=$ROOT/deploy/slurm/tokshift.sbatch
submit() {  # RUN NTASKS [OPTIONS...]: prints the job id
  local run=$1 n=$2; shift 2
  sbatch --parsable --chdir="$TMP/jobs" --ntasks="$n" --cpus-per-task=1 --output="$TMP/jobs/$run-%j.out" \
    "$SB" --run "$run" --model "$MODEL" --db "$DB" --bin "$BUILD" "$@" "${SETTINGS[@]}" "$CORPUS"
}
job_gone() { [ -z "$(squeue -h -j "$1" 2>/dev/null)" ]; }
job_state() { scontrol show job "$1" 2>/dev/null | sed -n 's/.*JobState=\([A-Z_]*\).*/\1/p'; }
jobs_done() { psqlc "SELECT count(*) FILTER (WHERE j.state = 'done') FROM jobs j JOIN runs r USING (run_id) WHERE r.name = '$1'"; }
# Rows of RUN that the reference lacks, and the reverse (0 and 0: equal).
ROWS="doc_id, seq_no, pos, token_id, logprob, entropy, rank"
differ() {
  psqlc "SELECT (SELECT count(*) FROM (SELECT $ROWS FROM token_view WHERE run_id = (SELECT run_id FROM runs WHERE name = '$1')
                   EXCEPT ALL SELECT $ROWS FROM token_view WHERE run_id = (SELECT run_id FROM runs WHERE name = 'ref')) a)
           || ' ' || (SELECT count(*) FROM (SELECT $ROWS FROM token_view WHERE run_id = (SELECT run_id FROM runs WHERE name = 'ref')
                   EXCEPT ALL SELECT $ROWS FROM token_view WHERE run_id = (SELECT run_id FROM runs WHERE name = '$1')) b)"
}
check_run() {  # RUN: complete and equal to the reference
  local st; st=$(psqlc "SELECT r.status || ' ' || count(*) FILTER (WHERE j.state = 'done') || '/' || count(*)
                         FROM runs r JOIN jobs j USING (run_id) WHERE r.name = '$1' GROUP BY r.status")
  [ "$st" = "done $NJOBS/$NJOBS" ] || fail "run $1: status and jobs done '$st', want 'done $NJOBS/$NJOBS'"
  local d; d=$(differ "$1")
  if [ "$d" = "0 0" ]; then
    echo "run $1: $st jobs done; $(psqlc "SELECT count(*) FROM token_view WHERE run_id = (SELECT run_id FROM runs WHERE name = '$1')") token rows, equal to the reference run's"
  else
    fail "run $1: rows differ from the reference's (only in $1, only in ref: $d)"
  fi
}

# --- 2: one batch job serves the whole run ------------------------------
step "sbatch run slurm"
j=$(submit slurm 2) || { fail "sbatch: $j"; exit 1; }
waitfor 90 "job $j (run slurm)" job_gone "$j" || { scancel "$j"; sleep 1; }
[ "$(job_state "$j")" = COMPLETED ] || fail "job $j ended $(job_state "$j"): $(tail -5 "$TMP/jobs/slurm-$j.out")"
grep -q 'coordinator exited 0' "$TMP/jobs/slurm-$j.out" || fail "job $j's log lacks the coordinator's exit 0"
[ "$(grep -c '] joined run\|joined run' "$TMP/jobs/slurm-$j.out")" -ge 2 ] || fail "fewer than 2 workers joined: $(grep -c 'joined run' "$TMP/jobs/slurm-$j.out")"
check_run slurm

# --- 3: scancel mid-run, resubmit, plus an array worker -----------------
step "sbatch run resume"
j=$(submit resume 1) || { fail "sbatch: $j"; exit 1; }
some_done() { [ "$(jobs_done resume)" -ge 3 ]; }
waitfor 60 "3 jobs of run resume done" some_done
scancel "$j"
waitfor 30 "job $j to end after scancel" job_gone "$j"
before=$(jobs_done resume)
step "run resume: cancelled (job $j $(job_state "$j")) with $before/$NJOBS jobs done"
[ "$before" -lt "$NJOBS" ] || fail "run resume completed before scancel took effect; the resume is untested"
[ "$(psqlc "SELECT status FROM runs WHERE name = 'resume'")" != 'done' ] || fail "run resume says done after the cancel"
first_done=$(psqlc "SELECT string_agg(job_id || ':' || done_at, ',' ORDER BY job_id) FROM jobs JOIN runs USING (run_id) WHERE name = 'resume' AND state = 'done'")
# The resubmitted job serves the run without workers of its own: the one
# worker is an array task (tokshift-workers.sbatch), started first, which
# waits for the coordinator's address file.
ja=$(sbatch --parsable --chdir="$TMP/jobs" --array=1-1 --output="$TMP/jobs/array-%A_%a.out" \
       "$ROOT/deploy/slurm/tokshift-workers.sbatch" --join "$TMP/jobs/tokshift-resume.endpoint" \
       --model "$MODEL" --db "$DB" --bin "$BUILD") || { fail "sbatch (array): $ja"; exit 1; }
j2=$(submit resume 1 --no-workers) || { fail "sbatch: $j2"; exit 1; }
waitfor 90 "job $j2 (run resume, resubmitted)" job_gone "$j2"
waitfor 30 "array job $ja" job_gone "${ja}_1"
[ "$(job_state "$j2")" = COMPLETED ] || fail "job $j2 ended $(job_state "$j2"): $(tail -5 "$TMP/jobs/resume-$j2.out")"
grep -q 'joined run' "$TMP/jobs/array-${ja}_1.out" 2>/dev/null || fail "the array worker did not join: $(tail -3 "$TMP/jobs/array-${ja}_1.out" 2>&1)"
[ "$(job_state "${ja}_1")" = COMPLETED ] || fail "array job ${ja}_1 ended $(job_state "${ja}_1")"
kept=$(psqlc "SELECT count(*) FROM jobs JOIN runs USING (run_id) WHERE name = 'resume' AND state = 'done'
               AND job_id || ':' || done_at = ANY (string_to_array('$first_done', ','))")
[ "$kept" = "$before" ] || fail "of the $before jobs done before the cancel, $kept are unchanged (done again?)"
check_run resume

if [ $fails -ne 0 ]; then
  for f in "$TMP/jobs/"*.out; do echo "---- $f"; tail -8 "$f"; done
  tail -n 5 "$TMP/log/slurmctld.log" "$TMP/log/slurmd.log"
  exit 1
fi
echo "test_slurm: ok"
