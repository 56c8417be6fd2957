// test_progress.mjs - the coordinator's progress while jobs run (issue 9,
// item 7): one long job in hand, a second worker that leaves cleanly.
//
//   in flight   the busy worker's heartbeats carry its job's token rows, so a
//               progress line shows tokens (and a rate and an ETA) while no
//               job is done yet; before, every such line said
//               "jobs 0/1 done ... 0 tok/s | ETA 00:00:00"
//   left        the idle worker is stopped (SIGTERM, exit 0): the lines after
//               count one worker, and the coordinator does not log
//               "is not connected" on every heartbeat to it
//   finished    the last line's tokens equal the rows the run stored
import {join} from "node:path";
import {check, cleanup, finish, model, psql, runOnce, sleep, startPostgres, tempDir, tokshift, writeCorpus}
    from "./harness.mjs";
import {waitFor} from "./faultlib.mjs";

process.env.TOKSHIFT_LOG = "debug"; // the coordinator's dispatch lines say which worker is busy
const M = model();
const dir = tempDir("tokshift-progress-");
const pg = startPostgres(dir);
const db = pg.conninfo;
tokshift(["db", "migrate", "--db", db]);

// One job of every document, with many cuts: long enough (several seconds)
// for progress lines while it is in hand.
const settings = ["--window", "64", "--stride", "32", "--cut-every", "16", "--cont-len", "16", "--samples", "4",
                  "--seed", "5", "--job-docs", "100", "--heartbeat", "200"];
const corpus = writeCorpus(dir, {nStories: 20, longRepeat: 6});
let stoppedAt = 0;
const {res, workers} = await runOnce({
    conninfo: db, runName: "progress", corpus, modelPath: M, settings, logDir: dir, nWorkers: 2,
    workerArgs: ["--threads", "1"],
    onStarted: async ctl => {
        // Stop whichever worker is idle once the job is in hand.
        if (!await waitFor("job 0 handed out", () => /job 0 \(attempt 1/.test(ctl.coord.err()), 10000)) return;
        await sleep(300);
        const busy = /-> (w\d)/.exec(ctl.coord.err());
        const idle = ctl.workers[busy && busy[1] === "w0" ? 1 : 0];
        idle.p.kill("SIGTERM");
        stoppedAt = ctl.coord.err().length;
        const r = await idle.exited;
        check(r.code === 0, `the idle worker left with exit ${r.code}`);
    },
});
check(res.code === 0, `coordinator exited ${res.code}: ${res.err.slice(-1500)}`);
for (const w of workers) await w.exited;

const lines = res.err.split("\n").filter(l => / jobs \d+\/\d+ done/.test(l));
const inFlight = lines.filter(l => /jobs 0\/1 done/.test(l) && /\((\d+) in jobs in hand\)/.exec(l)?.[1] > 0);
check(inFlight.length >= 1, `a progress line counts the tokens of the job in hand before it is done (${lines.length} lines: ${lines.slice(0, 3).join(" / ")})`);
check(inFlight.some(l => /\| [1-9]\d* tok\/s \| ETA \d\d:\d\d:\d\d/.test(l)),
      `a rate and an ETA while the job runs: ${inFlight.slice(-1)[0]}`);
const after = res.err.slice(stoppedAt).split("\n").filter(l => / jobs \d+\/\d+ done/.test(l) && !/finished:/.test(l));
// (the first line after the stop may come before the ROUTER notices)
check(after.length >= 2 && /workers 1 /.test(after[after.length - 1]),
      `the worker that left is not counted: ${after.slice(-1)[0]}`);
const spam = (res.err.match(/WARN.*is not connected/g) || []).length;
check(spam === 0, `no warnings about sending to the worker that left (${spam})`);
const rows = Number(psql(db, "SELECT sum(n_tokens) FROM sequences s JOIN runs r USING (run_id) WHERE r.name = 'progress'")[0][0]);
const fin = /finished: .*\| tokens (\d+) /.exec(res.err);
check(fin && Number(fin[1]) === rows, `the closing line's tokens (${fin && fin[1]}) equal the stored rows (${rows})`);
console.log(`progress: ${lines.length} lines, ${inFlight.length} with the job in hand (${inFlight.slice(-1)[0]?.replace(/^.*jobs/, "jobs")})`);
cleanup(dir);
finish("test_progress");
