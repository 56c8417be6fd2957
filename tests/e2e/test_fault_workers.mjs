// test_fault_workers.mjs - the fault matrix, worker side (issue 5).  One
// undisturbed reference run, then one run per fault, all of the same corpus
// and settings (so every sample's seed is the same), each checked against
// the reference in SQL by verifyRun: same rows (EXCEPT ALL both ways), no
// duplicates, no partial job, every job done or failed with its reason.
//
//   kill3      SIGKILL three of four workers at once, each holding a job
//   poison     every worker aborts on one document (TOKSHIFT_FAULT
//              crash_on_doc), a supervisor restarts them: that job ends
//              failed after --max-attempts with its reason, the rest matches
//   zombie     SIGSTOP a worker holding a finished job (stall_before_commit_ms)
//              past its liveness window; SIGCONT once its job was requeued:
//              its late commit is fenced off by the attempt token
//   zombie2    SIGSTOP a worker inside its commit transaction (holding the
//              job's row lock; stall_in_commit_ms): the coordinator does not
//              block on the lock, the others go on, the resumed commit counts
//   dup        the coordinator hands jobs to two workers at once with the same
//              token (dup_dispatch); workers replay their DONE messages
//              (replay_done) and their commits (commit_twice)
//   alloc      the N-th allocation of the job path fails (fail_alloc), in
//              three workers at different points
//   copy       the N-th COPY chunk fails (fail_copy_chunk): at the end of a
//              COPY, and in the middle of one (a job of more than 1 MB of rows)
//   heartbeat  a SIGKILLed worker is presumed dead within heartbeat x liveness
//              + one heartbeat of its death (measured from the kill to the
//              coordinator's log line)
// Under the sanitizer build every worker that was not killed must also exit
// 0: a leak (LeakSanitizer) or UB report would make it fail.
import {check, cleanup, finish, model, psql, sleep, startPostgres, tempDir, tokshift, writeCorpus} from "./harness.mjs";
import {checkCleanExit, count, Fleet, referenceRun, reportTally, runIdOf, tally, verifyRun, waitFor} from "./faultlib.mjs";

const M = model();
const dir = tempDir("tokshift-fault-workers-");
const pg = startPostgres(dir);
const db = pg.conninfo;
tokshift(["db", "migrate", "--db", db]);
// 16 stories and a long document of 10 of them (more than 1 MB of COPY data
// for its token rows): 21 jobs of one document each.
const N_STORIES = 16;
const corpus = writeCorpus(dir, {nStories: N_STORIES, longRepeat: 10});
const ref = await referenceRun({db, corpus, model: M, dir});
// TOKSHIFT_FAULT_CASES=zombie,dup runs only those cases.
const want = name => !process.env.TOKSHIFT_FAULT_CASES || process.env.TOKSHIFT_FAULT_CASES.split(",").includes(name);
tally.runs++;

// Runs one case: builds its fleet, lets inject() act, waits, verifies.
async function runCase(name, {nWorkers = 2, env, coordEnv, coordArgs, settings, lost = [], inject, cleanExit = []}) {
    const t0 = Date.now();
    const f = await new Fleet({db, runName: name, corpus, model: M, dir, env, coordEnv, coordArgs, settings}).start(nWorkers);
    if (inject) await inject(f);
    const r = await f.wait();
    check(r.code === 0, `${name}: coordinator exited ${r.code}: ${r.err.slice(-1500)}`);
    await checkCleanExit(f, name, cleanExit);
    const id = runIdOf(db, name);
    const fig = verifyRun(db, id, ref, {label: name, lost});
    tally.runs++;
    tally.rowsChecked += fig.rows;
    console.error(`${name}: ${((Date.now() - t0) / 1000).toFixed(1)} s`);
    return {f, id, fig, coordErr: r.err};
}

// kill3: SIGKILL three workers at once while each holds a job.  They stall
// 2 s before their first commit (stall_before_commit_ms), so that all three
// are surely inside a job when the signal lands.
if (want("kill3")) {
    const victims = ["w0", "w1", "w2"];
    let held = [];
    const {id} = await runCase("kill3", {nWorkers: 4,
        env: i => i < 3 ? {TOKSHIFT_FAULT: "stall_before_commit_ms=2000"} : {}, inject: async f => {
        const stalled = w => w.lines.find(l => /fault injected: stall_before_commit_ms/.test(l.line));
        await waitFor("w0, w1 and w2 inside their first jobs", () => f.workers.slice(0, 3).every(stalled));
        const first = Math.min(...f.workers.slice(0, 3).map(w => stalled(w).t));
        held = psql(db, `SELECT job_id FROM jobs j JOIN runs r USING (run_id) WHERE r.name = 'kill3' AND j.state = 'leased'
                         AND j.worker IN ('w0', 'w1', 'w2')`).map(r => Number(r[0]));
        for (const w of f.workers.slice(0, 3)) w.p.kill("SIGKILL");
        check(Date.now() - first < 1900 && held.length === 3, `kill3: the three held their jobs when killed (${held})`);
        count("SIGKILL worker (three at once)", 3);
        f.startWorker();
        f.startWorker();
    }, cleanExit: ["w3", "w4", "w5"]});
    const retried = psql(db, `SELECT job_id FROM jobs WHERE run_id = ${id} AND attempts > 1 AND job_id IN (${held.join(",") || -1})`);
    check(retried.length === 3, `kill3: the killed workers' jobs ${held} were retried (${retried.length})`);
}

// poison: one document crashes every worker that measures it.
if (want("poison")) {
    const POISON = 2; // doc_id 2: a story, alone in job 2
    const {id, coordErr} = await runCase("poison", {nWorkers: 2, lost: [POISON], coordArgs: ["--max-attempts", "3"],
        env: () => ({TOKSHIFT_FAULT: `crash_on_doc=${POISON}`}),
        inject: async f => { f.supervise = true; f.maxRestarts = 6; }});
    const [[state, attempts, error]] = psql(db, `SELECT j.state, j.attempts, j.error FROM jobs j JOIN documents d
        USING (run_id, job_id) WHERE d.run_id = ${id} AND d.doc_id = ${POISON}`);
    console.error(`poison: job of document ${POISON}: ${state} after ${attempts} attempts: ${error}`);
    check(state === "failed" && attempts === "3" && /presumed dead/.test(error),
          `poison: the job is ${state} after ${attempts} attempts (${error}); expected failed after 3, with the reason`);
    check(/failed after 3 attempts/.test(coordErr), "poison: the coordinator logged the job's failure");
    count("worker abort() on a poison document", Number(attempts));
}

// zombie: a worker stopped past its liveness window writes late; the token fences it off.
if (want("zombie")) {
    let job = null, victim = null;
    const zombieRun = await runCase("zombie", {nWorkers: 2, env: i => i === 0 ? {TOKSHIFT_FAULT: "stall_before_commit_ms=500"} : {},
        inject: async f => {
            victim = f.workers[0];
            await waitFor("w0 to hold its first job", () => (job = f.leasedBy("w0")) !== null);
            victim.p.kill("SIGSTOP");
            count("SIGSTOP/SIGCONT worker");
            const [[tok0]] = psql(db, `SELECT attempt_token FROM jobs j JOIN runs r USING (run_id) WHERE r.name = 'zombie' AND job_id = ${job}`);
            await waitFor(`job ${job} to be taken back from the stopped w0`, () => {
                const rows = psql(db, `SELECT coalesce(attempt_token::text, ''), attempts FROM jobs j JOIN runs r USING (run_id)
                                       WHERE r.name = 'zombie' AND job_id = ${job}`);
                return rows[0][0] !== tok0;
            });
            await sleep(100);
            victim.p.kill("SIGCONT");
            await waitFor("the zombie's late commit", () => /attempt fenced off/.test(victim.err()), 10000);
        }, cleanExit: ["w0", "w1"]});
    const {coordErr} = zombieRun;
    const rejoined = (coordErr.match(/worker w0 joined/g) || []).length > 1;
    console.error(`zombie: w0 stopped holding job ${job}; its late commit was fenced off; it ${rejoined ? "rejoined the fleet" : "did not rejoin before the run ended"}`);
    check(new RegExp(`job ${job}: attempt fenced off`).test(victim.err()),
          `zombie: w0's late commit of job ${job} was fenced off: ${victim.err().slice(-800)}`);
}

// zombie2: a worker stopped inside its commit transaction, holding the job's
// row lock (stall_in_commit_ms), past its liveness window: the coordinator
// must not block on that lock (the other workers go on), and once the worker
// resumes its commit (its token was never replaced) counts exactly once.
if (want("zombie2")) {
    let job = null, victim = null, progressed = 0;
    await runCase("zombie2", {nWorkers: 2, env: i => i === 0 ? {TOKSHIFT_FAULT: "stall_in_commit_ms=800"} : {},
        inject: async f => {
            victim = f.workers[0];
            await waitFor("w0 inside its first commit", () => /fault injected: stall_in_commit_ms/.test(victim.err()), 30000);
            victim.p.kill("SIGSTOP");
            job = f.leasedBy("w0");
            count("SIGSTOP/SIGCONT worker inside its commit transaction");
            await waitFor("w0 to be presumed dead", () => /worker w0 silent for \d+ ms: presumed dead/.test(f.coord.err()), 10000);
            const before = f.jobCounts().done;
            await waitFor("the other worker to go on while w0 holds its lock",
                          () => (progressed = f.jobCounts().done - before) >= 2, 5000);
            victim.p.kill("SIGCONT");
        }, cleanExit: ["w0", "w1"]});
    console.error(`zombie2: w0 stopped inside the commit of job ${job}; ${progressed} other jobs done meanwhile`);
}

// dup: duplicate delivery (two workers, one token), replayed DONE and replayed commits.
if (want("dup")) {
    const {coordErr, f} = await runCase("dup", {nWorkers: 3, coordEnv: {TOKSHIFT_FAULT: "dup_dispatch=4"},
        env: () => ({TOKSHIFT_FAULT: "replay_done=100,commit_twice=100"}), cleanExit: ["w0", "w1", "w2"]});
    const dups = (coordErr.match(/handed to w\d+ too, same attempt token/g) || []).length;
    const fenced = f.workers.reduce((n, w) => n + (w.err().match(/attempt fenced off/g) || []).length, 0);
    const replays = f.workers.reduce((n, w) => n + (w.err().match(/committed again with the same token: fenced off/g) || []).length, 0);
    const accepted = f.workers.reduce((n, w) => n + (w.err().match(/ACCEPTED/g) || []).length, 0);
    const doneReplays = f.workers.reduce((n, w) => n + (w.err().match(/fault injected: replay_done/g) || []).length, 0);
    console.error(`dup: ${dups} jobs handed to two workers (${fenced} second commits fenced off), ${replays} commits replayed, ${doneReplays} DONE replayed`);
    check(dups >= 1 && fenced === dups, `dup: ${dups} duplicate deliveries, ${fenced} fenced off`);
    check(replays >= 10 && accepted === 0, `dup: ${replays} replayed commits fenced, ${accepted} accepted`);
    // The coordinator counted every job once although every DONE came twice.
    const over = coordErr.split("\n").filter(l => /jobs (\d+)\/(\d+) done/.test(l))
        .filter(l => { const m = l.match(/jobs (\d+)\/(\d+) done/); return Number(m[1]) > Number(m[2]); });
    check(over.length === 0, `dup: progress counted more jobs than exist: ${over[0]}`);
    count("duplicate delivery (same job and token to two workers)", dups);
    count("replayed commit (same token)", replays);
    count("replayed DONE message", doneReplays);
}

// alloc: failing allocations in the job path, three workers at three points.
if (want("alloc")) {
    const points = [1, 777, 3000];
    const {coordErr, fig} = await runCase("alloc", {nWorkers: 3, env: i => ({TOKSHIFT_FAULT: `fail_alloc=${points[i]}`}),
        cleanExit: ["w0", "w1", "w2"]});
    const n = (coordErr.match(/requeued: worker w\d: (out of memory|worker out of memory)/g) || []).length;
    check(n === 3 && fig.retried >= 1, `alloc: ${n} jobs requeued for out of memory, expected 3`);
    count("failed allocation in the job path", n);
}

// copy: failing COPY chunks; one worker alone first, so that the chunk that
// fails is the long document's job's second COPY, after its sequence rows
// (all its token statistics, one chunk) went into the transaction (7 chunks
// per job before it: sequence_stats, job_rollups, calib_rollups,
// doc_rollups, top_tokens, bucket_rollups, doc_bucket_rollups:
// db_commit_job's COPYs).
if (want("copy")) {
    const mid = 7 * N_STORIES + 2;
    const {coordErr, f} = await runCase("copy1", {nWorkers: 1, env: () => ({TOKSHIFT_FAULT: `fail_copy_chunk=${mid}`}),
        cleanExit: ["w0"]});
    const n1 = (coordErr.match(/requeued: worker w0: .*fault injected/g) || []).length;
    const [[longRows]] = psql(db, `SELECT count(*) FROM token_view t JOIN documents d USING (run_id, doc_id)
                                   WHERE t.run_id = ${ref} AND d.ext_id = 'long'`);
    check(n1 === 1 && new RegExp(`job ${N_STORIES} handed back|job ${N_STORIES} not written`).test(f.workers[0].err()),
          `copy1: the long document's job (${longRows} token rows) failed after its rows were sent, once: ${n1}`);
    const {coordErr: e2} = await runCase("copy2", {nWorkers: 2, env: i => ({TOKSHIFT_FAULT: `fail_copy_chunk=${[1, 5][i]}`}),
        cleanExit: ["w0", "w1"]});
    const n2 = (e2.match(/requeued: worker w\d: .*fault injected/g) || []).length;
    check(n2 === 2, `copy2: ${n2} jobs requeued after a failed COPY chunk, expected 2`);
    count("failed COPY chunk", n1 + n2);
}

// heartbeat: detection time of a SIGKILLed worker, twice.
if (want("heartbeat")) {
    const HB = 200, LIVE = 3, bound = HB * LIVE + HB, slack = 100;
    const lat = [];
    // (Each job takes 300 ms more, so that jobs remain for the second
    // victim to hold however fast this machine runs the model.)
    await runCase("heartbeat", {nWorkers: 3, env: () => ({TOKSHIFT_FAULT: "slow_job_ms=300"}), inject: async f => {
        for (const victim of [f.workers[0], f.workers[1]]) {
            await waitFor(`${victim.name} to hold a job`, () => f.leasedBy(victim.name) !== null);
            const t0 = Date.now();
            victim.p.kill("SIGKILL");
            const re = new RegExp(`worker ${victim.name} silent for (\\d+) ms: presumed dead`);
            await waitFor(`${victim.name}'s death to be noticed`, () => f.coord.lines.some(l => re.test(l.line)), 5000);
            const l = f.coord.lines.find(l => re.test(l.line));
            if (l) lat.push({name: victim.name, ms: l.t - t0, silent: Number(l.line.match(re)[1])});
            count("SIGKILL worker (detection timed)");
            f.startWorker();
        }
    }, cleanExit: ["w2", "w3", "w4"]});
    for (const {name, ms, silent} of lat) {
        console.error(`heartbeat: ${name} killed, presumed dead ${ms} ms later (silent for ${silent} ms by the coordinator's clock); bound ${bound} ms`);
        // (slack: the coordinator's ticks and this process's reading of its log run a few ms late under load)
        check(ms <= bound + slack && silent <= bound + slack,
              `heartbeat: ${name} presumed dead after ${ms} ms (silent ${silent} ms), bound ${bound} ms`);
        check(ms >= HB * (LIVE - 1), `heartbeat: ${name} presumed dead too soon (${ms} ms)`);
    }
    check(lat.length === 2, "heartbeat: both deaths measured");
}

reportTally("test_fault_workers");
pg.stop();
cleanup(dir);
finish("test_fault_workers");
