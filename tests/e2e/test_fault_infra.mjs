// test_fault_infra.mjs - the fault matrix, infrastructure side (issue 5):
// the coordinator and PostgreSQL die under a running fleet.  Each run is
// checked against an undisturbed reference run of the same corpus and
// settings (faultlib.mjs verifyRun: same rows, no duplicates, no partial
// job, every job done or failed with a reason).
//
//   adopt     SIGKILL the coordinator while two workers hold jobs that they
//             finish during the restart (stall_before_commit_ms), start it
//             again at once: it adopts their leases (same attempt tokens),
//             so both jobs are written, not fenced off, and no compute is
//             wasted (goal 0 s, checked)
//   coord2x   SIGKILL the coordinator mid-run, start it again at once, SIGKILL
//             the new one as soon as it serves, start a third: it resumes
//   pgrestart PostgreSQL stopped (fast shutdown) mid-run and kept down for
//             3 s (connections refused), then started; later stopped with an
//             immediate shutdown (a crash: recovery on start) for 2 s.
//             Workers keep their results and retry with backoff; the
//             coordinator reconnects; nothing is lost
//   lostlease what a crash can do to the coordinator's asynchronous commits
//             (a lease lost, a lease leased to nobody), done in SQL: the late
//             write is fenced off, the coordinator finds both jobs again
//   backoff   a worker whose coordinator is not there backs off 100, 200,
//             400, 800, 800 ms (--reconnect-ms 100 --reconnect-max-ms 800),
//             then joins when a coordinator appears and the run completes
import {check, cleanup, finish, freePort, model, psql, sleep, startPostgres, tempDir, tokshift, writeCorpus} from "./harness.mjs";
import {count, Fleet, referenceRun, reportTally, runIdOf, tally, verifyRun, waitFor} from "./faultlib.mjs";

const M = model();
const dir = tempDir("tokshift-fault-infra-");
const pg = startPostgres(dir);
let db = pg.conninfo;
tokshift(["db", "migrate", "--db", db]);
const corpus = writeCorpus(dir, {nStories: 16, longRepeat: 3});
const ref = await referenceRun({db, corpus, model: M, dir});
tally.runs++;
// TOKSHIFT_FAULT_CASES=pgrestart,backoff runs only those cases.
const want = name => !process.env.TOKSHIFT_FAULT_CASES || process.env.TOKSHIFT_FAULT_CASES.split(",").includes(name);

async function verify(name, fleet, res) {
    check(res.code === 0, `${name}: the last coordinator exited ${res.code}: ${res.err.slice(-1500)}`);
    const fig = verifyRun(db, runIdOf(db, name), ref, {label: name});
    tally.runs++;
    tally.rowsChecked += fig.rows;
    for (const w of fleet.workers) {
        const e = await w.exited;
        check(e.code === 0, `${name}: worker ${w.name} exited ${e.code} (${e.sig}): ${e.err.slice(-1000)}`);
    }
    return fig;
}

// adopt: a restarted coordinator adopts the leases it finds; the jobs that
// live workers finish meanwhile are written under the same token.
if (want("adopt")) {
    const f = await new Fleet({db, runName: "adopt", corpus, model: M, dir,
        env: () => ({TOKSHIFT_FAULT: "stall_before_commit_ms=2500"})}).start(2);
    await waitFor("both workers inside their first job", () =>
        f.workers.every(w => /fault injected: stall_before_commit_ms/.test(w.err())));
    const run = runIdOf(db, "adopt");
    const held = psql(db, `SELECT job_id, attempt_token, worker FROM jobs WHERE run_id = ${run} AND state = 'leased' ORDER BY job_id`);
    f.coord.p.kill("SIGKILL");
    await f.coord.exited;
    count("SIGKILL coordinator while two workers hold jobs");
    f.startCoordinator();
    const res = await f.wait();
    await verify("adopt", f, res);
    check(held.length === 2, `adopt: two jobs were held at the kill (${JSON.stringify(held)})`);
    for (const [job, token, worker] of held) {
        const [[state, attempts, tok]] = psql(db, `SELECT state, attempts, attempt_token FROM jobs WHERE run_id = ${run} AND job_id = ${job}`);
        check(state === "done" && attempts === "1" && tok === token,
              `adopt: job ${job} held by ${worker} was written under its first attempt's token (${state}, ${attempts} attempts)`);
    }
    const fenced = f.workers.reduce((n, w) => n + (w.err().match(/attempt fenced off|handed back/g) || []).length, 0);
    // Compute wasted: an attempt thrown away costs what the job's kept attempt cost.
    const [[wasted]] = psql(db, `SELECT coalesce(sum(compute_s * (attempts - 1)), 0) FROM jobs WHERE run_id = ${run}`);
    console.error(`adopt: ${held.length} jobs held at the SIGKILL; ${fenced} attempts fenced off or handed back; ` +
                  `compute wasted ${Number(wasted).toFixed(3)} s (goal 0)`);
    check(fenced === 0 && Number(wasted) === 0, `adopt: no work thrown away (${fenced} attempts, ${wasted} s)`);
    check((res.err.match(/lease adopted/g) || []).length === 2, "adopt: the new coordinator adopted both leases");
}

// coord2x: the coordinator killed twice in quick succession.
if (want("coord2x")) {
    const f = await new Fleet({db, runName: "coord2x", corpus, model: M, dir}).start(2);
    await waitFor("a few jobs done, more held", () => {
        const c = f.jobCounts();
        return c.done >= 3 && c.leased >= 1 && c.done < c.n - 6;
    });
    f.coord.p.kill("SIGKILL");
    await f.coord.exited;
    const leased = f.jobCounts().leased;
    f.startCoordinator();
    await waitFor("the second coordinator to serve", () => f.coord.lines.some(l => /serving/.test(l.line)), 20000);
    await sleep(50);
    f.coord.p.kill("SIGKILL");
    await f.coord.exited;
    count("SIGKILL coordinator", 2);
    console.error(`coord2x: killed the coordinator with ${leased} job(s) leased, then its successor right after it served`);
    f.startCoordinator();
    const res = await f.wait();
    check(/resuming/.test(res.err), "coord2x: the third coordinator resumed the run");
    await verify("coord2x", f, res);
}

// pgrestart: PostgreSQL restarted twice mid-run: fast shutdown and 3 s refused,
// immediate shutdown (crash recovery) and 2 s refused.
if (want("pgrestart")) {
    // (Each job takes 250 ms more: the run must outlast both restarts,
    // however fast this machine runs the model.)
    const f = await new Fleet({db, runName: "pgrestart", corpus, model: M, dir,
        env: () => ({TOKSHIFT_FAULT: "slow_job_ms=250"})}).start(2);
    let c;
    await waitFor("a few jobs done, more held", () => (c = f.jobCounts()).done >= 3 && c.leased >= 1 && c.done < c.n - 10);
    for (const [mode, downMs] of [["fast", 3000], ["immediate", 2000]]) {
        const before = f.jobCounts();
        check(f.coord.running() && before.done < before.n, `pgrestart: the run was still going at the ${mode} shutdown`);
        pg.stop(mode);
        count(`PostgreSQL ${mode} shutdown, refusing connections for ${downMs / 1000} s`);
        await sleep(downMs);
        db = pg.start();
        console.error(`pgrestart: ${mode} shutdown with ${before.done}/${before.n} jobs done and ${before.leased} leased; back after ${downMs} ms`);
        if (mode === "fast")
            await waitFor("more jobs done after the restart, and the coordinator reconnected", () => !f.coord.running() ||
                (/reconnected to PostgreSQL/.test(f.coord.err()) && f.jobCounts().done >= before.done + 2), 30000);
    }
    const res = await f.wait();
    const fig = await verify("pgrestart", f, res);
    const retries = f.workers.reduce((n, w) => n + (w.err().match(/PostgreSQL unavailable/g) || []).length, 0);
    const reconnects = (res.err.match(/reconnected to PostgreSQL/g) || []).length;
    console.error(`pgrestart: workers retried ${retries} commit(s) while PostgreSQL was away; the coordinator reconnected ${reconnects} time(s); ${fig.retried} job(s) retried`);
    check(retries >= 1, "pgrestart: a worker kept its results and retried");
    const troubles = (res.err.match(/PostgreSQL is unreachable/g) || []).length;
    check(reconnects === 2 && reconnects === troubles,
          `pgrestart: the coordinator noticed PostgreSQL gone ${troubles} time(s) and reconnected ${reconnects} time(s)`);
}

// lostlease: what a PostgreSQL crash can do to the coordinator's asynchronous
// commits, done directly in SQL: a job that w0 holds falls back to pending
// (its lease lost), and a pending job turns leased to a worker that does not
// exist (a lease whose reply was lost).  w0's late write must be fenced off,
// and the coordinator must find both jobs again and finish the run.
if (want("lostlease")) {
    const f = await new Fleet({db, runName: "lostlease", corpus, model: M, dir,
        env: i => i === 0 ? {TOKSHIFT_FAULT: "stall_before_commit_ms=1000"} : {}}).start(2);
    const w0 = f.workers[0];
    await waitFor("w0 inside its first job", () => /fault injected: stall_before_commit_ms/.test(w0.err()));
    const run = runIdOf(db, "lostlease");
    const [[lost]] = psql(db, `UPDATE jobs SET state = 'pending', attempt_token = NULL, worker = NULL
                               WHERE run_id = ${run} AND state = 'leased' AND worker = 'w0' RETURNING job_id`);
    const [[ghost]] = psql(db, `UPDATE jobs SET state = 'leased', attempt_token = 42, worker = 'ghost', leased_at = now(),
        attempts = attempts + 1 WHERE run_id = ${run} AND job_id = (SELECT max(job_id) FROM jobs WHERE run_id = ${run}
        AND state = 'pending') RETURNING job_id`);
    count("lease lost (job back to pending under its holder)");
    count("lease reply lost (job leased to no worker)");
    const res = await f.wait();
    await verify("lostlease", f, res);
    check(/attempt fenced off/.test(w0.err()), "lostlease: w0's write under the lost lease was fenced off");
    check(/held by no worker: requeued/.test(res.err), "lostlease: the coordinator requeued the jobs it had lost track of");
    console.error(`lostlease: job ${lost} lost its lease, job ${ghost} was leased to nobody; both done`);
}

// backoff: no coordinator yet; the worker's reconnect delay doubles to its cap.
if (want("backoff")) {
    const port = await freePort();
    const f = new Fleet({db, runName: "backoff", corpus, model: M, dir,
        workerArgs: ["--heartbeat", "100", "--liveness", "2", "--reconnect-ms", "100", "--reconnect-max-ms", "800"]});
    f.endpoint = `tcp://127.0.0.1:${port}`;
    const w = f.startWorker();
    const re = /silent for \d+ ms; reconnecting in (\d+) ms/;
    await waitFor("six reconnections", () => w.lines.filter(l => re.test(l.line)).length >= 6, 20000);
    const tries = w.lines.filter(l => re.test(l.line)).map(l => ({t: l.t, ms: Number(l.line.match(re)[1])}));
    const delays = tries.map(x => x.ms);
    console.error(`backoff: delays ${delays.join(", ")} ms; intervals between tries ${tries.slice(1).map((x, i) => x.t - tries[i].t).join(", ")} ms`);
    check(JSON.stringify(delays.slice(0, 6)) === JSON.stringify([100, 200, 400, 800, 800, 800]),
          `backoff: delays ${delays} should double from 100 to the cap of 800`);
    for (let i = 1; i < Math.min(tries.length, 6); i++) {
        const gap = tries[i].t - tries[i - 1].t, want = delays[i - 1] + 200; // the delay, then 2 x 100 ms of silence
        check(gap >= want - 30 && gap <= want + 400, `backoff: try ${i + 1} came ${gap} ms after the previous, expected about ${want}`);
    }
    count("coordinator absent (worker backs off to its cap)");
    f.startCoordinator();
    const res = await f.wait();
    check(w.lines.some(l => /joined run/.test(l.line)), "backoff: the worker joined once the coordinator was there");
    await verify("backoff", f, res);
}

reportTally("test_fault_infra");
pg.stop();
cleanup(dir);
finish("test_fault_infra");
