// test_faults.mjs - a run survives its faults with exactly the rows of an
// undisturbed run (issue 3, done-when 3).  Three runs of one corpus and one
// set of settings (so every sample's seed is the same in all three):
//   A: undisturbed;
//   B: a worker is SIGKILLed while it holds a job (a replacement starts);
//   C: the coordinator is SIGKILLed mid-run and started again (same --run).
// Then, in SQL: B and C have exactly A's token rows, sequences and
// documents (EXCEPT both ways), every job is done, and the killed work shows
// up as retried jobs.
import {check, cleanup, finish, model, psql, runOnce, sleep, start, startPostgres, tempDir, tokshift, writeCorpus} from "./harness.mjs";

const M = model();
const dir = tempDir("tokshift-faults-");
const pg = startPostgres(dir);
const db = pg.conninfo;
tokshift(["db", "migrate", "--db", db]);
const corpus = writeCorpus(dir, {nStories: 12, longRepeat: 3});
const settings = ["--window", "64", "--stride", "32", "--cut-every", "8", "--cont-len", "16", "--samples", "4",
                  "--seed", "7", "--job-docs", "1", "--heartbeat", "200", "--liveness", "3"];
const runId = name => psql(db, `SELECT run_id FROM runs WHERE name = '${name}'`)[0][0];
const waitFor = async (what, pred, ms = 300000) => {
    const t0 = Date.now();
    while (Date.now() - t0 < ms) {
        if (pred()) return true;
        await sleep(10);
    }
    check(false, `timed out waiting for ${what}`);
    return false;
};

// A: undisturbed.
let r = await runOnce({conninfo: db, runName: "A", corpus, modelPath: M, settings, logDir: dir});
check(r.res.code === 0, `run A: coordinator exited ${r.res.code}`);
const a = runId("A");

// B: SIGKILL a worker while it holds a job; a replacement joins.
let killedJob = null;
r = await runOnce({conninfo: db, runName: "B", corpus, modelPath: M, settings, logDir: dir, nWorkers: 2,
    onStarted: async ctl => {
        await waitFor("w0 to hold a job", () => {
            const rows = psql(db, `SELECT job_id FROM jobs j JOIN runs USING (run_id) WHERE name = 'B' AND state = 'leased'
                                   AND worker = 'w0' AND EXISTS (SELECT 1 FROM jobs WHERE run_id = j.run_id AND state = 'done')`);
            if (rows.length) killedJob = rows[0][0];
            return rows.length > 0;
        });
        ctl.workers[0].p.kill("SIGKILL");
        ctl.workers.push(ctl.startWorker(2));
    }});
check(r.res.code === 0, `run B: coordinator exited ${r.res.code}`);
const b = runId("B");
check(killedJob !== null, "a job was held by the killed worker");
if (killedJob !== null) {
    const [[att, state, err]] = psql(db, `SELECT attempts, state, coalesce(error, '') FROM jobs WHERE run_id = ${b} AND job_id = ${killedJob}`);
    console.error(`run B: job ${killedJob} held by the killed worker: attempts ${att}, ${state}`);
    check(Number(att) >= 2 && state === "done", `the killed worker's job was retried and done (attempts ${att}, ${state})`);
}
check(/presumed dead/.test(r.coord.err()), "the coordinator noticed the dead worker");

// C: SIGKILL the coordinator mid-run, start it again.
r = await runOnce({conninfo: db, runName: "C", corpus, modelPath: M, settings, logDir: dir, nWorkers: 2,
    onStarted: async ctl => {
        await waitFor("some jobs of C to be done", () => {
            const rows = psql(db, `SELECT count(*) FILTER (WHERE state = 'done'), count(*) FROM jobs JOIN runs USING (run_id) WHERE name = 'C'`);
            return rows.length && Number(rows[0][0]) >= 3 && Number(rows[0][0]) < Number(rows[0][1]) - 2;
        });
        ctl.coord.p.kill("SIGKILL");
        await ctl.coord.exited;
        const leased = psql(db, `SELECT count(*) FROM jobs JOIN runs USING (run_id) WHERE name = 'C' AND state = 'leased'`)[0][0];
        console.error(`run C: coordinator killed with ${leased} job(s) leased`);
        await sleep(300);
        ctl.coord = start(ctl.coord.p.spawnargs[0], ctl.cargs);
    }});
check(r.res.code === 0, `run C: restarted coordinator exited ${r.res.code}: ${r.res.err.slice(-1500)}`);
check(/resuming/.test(r.res.err), "the restarted coordinator resumed the run");
const c = runId("C");

// The rows: B and C equal A exactly.
const cols = "doc_id, seq_no, pos, token_id, logprob, entropy, rank, top1_logprob, varentropy, context_len";
for (const [name, id] of [["B", b], ["C", c]]) {
    for (const [x, y] of [[a, id], [id, a]]) {
        const [[n]] = psql(db, `SELECT count(*) FROM (SELECT ${cols} FROM token_view WHERE run_id = ${x}
                                EXCEPT ALL SELECT ${cols} FROM token_view WHERE run_id = ${y}) d`);
        check(n === "0", `run ${name}: ${n} token rows of run ${x} are not in run ${y}`);
        const [[s]] = psql(db, `SELECT count(*) FROM (SELECT doc_id, seq_no, kind, cut, sample_idx, seed, n_tokens FROM sequences
            WHERE run_id = ${x} EXCEPT ALL SELECT doc_id, seq_no, kind, cut, sample_idx, seed, n_tokens FROM sequences WHERE run_id = ${y}) d`);
        check(s === "0", `run ${name}: ${s} sequences of run ${x} are not in run ${y}`);
    }
    const [[jobs, done, retried, rows]] = psql(db, `SELECT count(*), count(*) FILTER (WHERE state = 'done'),
        count(*) FILTER (WHERE attempts > 1), (SELECT count(*) FROM token_view WHERE run_id = ${id}) FROM jobs WHERE run_id = ${id}`);
    console.error(`run ${name}: ${done}/${jobs} jobs done, ${retried} retried, ${rows} token rows equal to run A's`);
    check(jobs === done, `run ${name}: every job done`);
    const [[ra]] = psql(db, `SELECT count(*) FROM job_rollups r WHERE run_id = ${id}`);
    check(Number(ra) > 0, `run ${name} has rollups`);
    const [[dup]] = psql(db, `SELECT count(*) FROM (SELECT kind, position, sum(n) FROM job_rollups WHERE run_id = ${id} GROUP BY 1, 2
        EXCEPT SELECT kind, position, sum(n) FROM job_rollups WHERE run_id = ${a} GROUP BY 1, 2) d`);
    check(dup === "0", `run ${name}: rollup counts differ from run A's in ${dup} (kind, position) cells`);
}
const [[total]] = psql(db, `SELECT count(*) FROM token_view WHERE run_id = ${a}`);
check(Number(total) > 10000, `run A wrote ${total} token rows`);

pg.stop();
cleanup(dir);
finish("test_faults");
