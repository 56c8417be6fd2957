// test_garbage.mjs - garbage on the wire to a live coordinator and a live
// worker during a real run (issue 5, "Hostile and broken input / The wire").
// Real PostgreSQL, a real coordinator, one real worker, and two hostile
// peers from tests/wire_peer.c:
//   - `flood` connects to the coordinator's ROUTER as several DEALERs and
//     sends random frames, empty and truncated envelopes, wrong protocol
//     versions, valid protobuf with absurd values, unknown and missing
//     payloads, multipart junk, valid messages out of order (DONE and FAILED
//     for jobs it does not hold, with made-up tokens), a frame over
//     WIRE_MAX_FRAME, and raw TCP bytes that are not ZMTP, for the length of
//     the run; then a proper HELLO must still get a WELCOME;
//   - `proxy` stands between the worker and the coordinator: it answers the
//     worker's HELLO with garbage and a frame over WIRE_MAX_FRAME (libzmq in
//     the worker drops that connection for good; the worker's link, hearing
//     nothing for heartbeat x liveness, reconnects), then forwards the real
//     conversation while injecting garbage every 25 ms, plus JOBs nobody
//     gave (a job id that does not exist in the run; another run's job).
// Checks: the run completes with exactly the rows of an undisturbed run of
// the same corpus and settings (EXCEPT ALL both ways), no forged job left a
// row or a job record, both processes logged the bad peer (the coordinator
// names its routing id and address), and their logs stay rate-limited.
import {createHash} from "node:crypto";
import {readFileSync} from "node:fs";
import {join} from "node:path";
import {BIN, check, cleanup, finish, freePort, model, psql, runOnce, sleep, start, startPostgres, tempDir, tokshift,
        writeCorpus} from "./harness.mjs";

const M = model();
const identity = createHash("sha256").update(readFileSync(M)).digest("hex");
const dir = tempDir("tokshift-garbage-");
const pg = startPostgres(dir);
const db = pg.conninfo;
tokshift(["db", "migrate", "--db", db]);
const corpus = writeCorpus(dir, {nStories: 12, longRepeat: 3});
const settings = ["--window", "64", "--stride", "32", "--prefix-lengths", "4,12", "--cont-len", "8", "--samples", "4",
                  "--seed", "3", "--job-docs", "1", "--heartbeat", "200", "--liveness", "25"];
const PEER = join(BIN, "tests", "wire_peer");
const waitExit = async (proc, ms) => {
    const t = setTimeout(() => proc.p.kill("SIGKILL"), ms);
    const e = await proc.exited;
    clearTimeout(t);
    return e;
};

// A: undisturbed.
const a = await runOnce({conninfo: db, runName: "A", corpus, modelPath: M, settings, logDir: dir, nWorkers: 1});
check(a.res.code === 0, `run A: coordinator exited ${a.res.code}`);

// B: the same, under garbage.
const port = await freePort(), proxyPort = await freePort();
const ep = `tcp://127.0.0.1:${port}`, proxyEp = `tcp://127.0.0.1:${proxyPort}`;
const coord = start(join(BIN, "tokshift-coordinator"), ["--run", "B", "--model", M, "--db", db, "--bind", ep,
                    "--progress", "1", ...settings, ...corpus.files], join(dir, "B-coord.log"));
await sleep(300);
const flood = start(PEER, ["flood", ep, identity, "6"], join(dir, "B-flood.log"));
await sleep(500); // the flood is on before the worker arrives, and goes on during the run
const proxy = start(PEER, ["proxy", proxyEp, ep, "120"], join(dir, "B-proxy.log"));
await sleep(200);
const worker = start(join(BIN, "tokshift-worker"), ["--connect", proxyEp, "--model", M, "--db", db, "--name", "w0",
                     "--heartbeat", "200", "--liveness", "25"], join(dir, "B-w0.log"));
const res = await waitExit(coord, 300000);
check(res.code === 0, `run B: coordinator exited ${res.code}: ${res.err.slice(-2000)}`);
const w = await waitExit(worker, 15000);
check(w.code === 0, `run B: the worker exited ${w.code} (0: the coordinator said the run is complete)`);
const fl = await waitExit(flood, 30000);
check(fl.code === 0, `after the flood the coordinator still answers HELLO: ${fl.err.trim().split("\n").slice(-2).join(" | ")}`);
proxy.p.kill("SIGTERM");
const px = await waitExit(proxy, 10000);
console.error(fl.err.trim());
console.error(px.err.trim());

// The rows: B equals A exactly.
const runId = name => psql(db, `SELECT run_id FROM runs WHERE name = '${name}'`)[0][0];
const ra = runId("A"), rb = runId("B");
const cols = "doc_id, seq_no, pos, token_id, logprob, entropy, rank, top1_logprob, varentropy, context_len";
for (const [x, y] of [[ra, rb], [rb, ra]]) {
    const [[n]] = psql(db, `SELECT count(*) FROM (SELECT ${cols} FROM token_view WHERE run_id = ${x}
                            EXCEPT ALL SELECT ${cols} FROM token_view WHERE run_id = ${y}) d`);
    check(n === "0", `${n} token rows of run ${x} are not in run ${y}`);
    const [[s]] = psql(db, `SELECT count(*) FROM (SELECT doc_id, seq_no, kind, cut, sample_idx, seed, n_tokens FROM sequences
        WHERE run_id = ${x} EXCEPT ALL SELECT doc_id, seq_no, kind, cut, sample_idx, seed, n_tokens FROM sequences WHERE run_id = ${y}) d`);
    check(s === "0", `${s} sequences of run ${x} are not in run ${y}`);
}
const [[jobs, done, rows]] = psql(db, `SELECT count(*), count(*) FILTER (WHERE state = 'done'),
    (SELECT count(*) FROM token_view WHERE run_id = ${rb}) FROM jobs WHERE run_id = ${rb}`);
check(jobs === done && Number(rows) > 5000, `run B: ${done}/${jobs} jobs done, ${rows} token rows`);
const [[forgedRows]] = psql(db, "SELECT count(*) FROM jobs WHERE job_id >= 900000 OR run_id NOT IN (SELECT run_id FROM runs)");
check(forgedRows === "0", `no forged job left a job record (${forgedRows})`);
const [[rollA, rollB]] = psql(db, `SELECT (SELECT sum(n) FROM job_rollups WHERE run_id = ${ra}), (SELECT sum(n) FROM job_rollups WHERE run_id = ${rb})`);
check(rollA === rollB, `rollups count the same tokens: ${rollA} vs ${rollB}`);

// The logs: the bad peers are named, the logs stay bounded.
const clog = res.err, wlog = w.err;
check(/bad message from an unknown peer: from peer 0x[0-9a-f]+ at 127\.0\.0\.1: /.test(clog),
      "the coordinator names an anonymous bad peer by routing id and address");
check(/from peer 'garbage-1' at 127\.0\.0\.1: /.test(clog) || /earlier bad messages not logged/.test(clog),
      "the coordinator names a bad peer by its routing id");
for (const what of ["not a tokshift protobuf", "protocol version", "payload frames"])
    check(clog.includes(what), `the coordinator's log says '${what}'`);
const refused = Number((clog.match(/(\d+) malformed messages were refused/) || [0, 0])[1]);
check(refused >= 200, `the coordinator refused ${refused} malformed messages`);
const clines = (clog.match(/bad message from/g) || []).length;
check(clines < refused && clines < 200, `the coordinator's bad-message lines are rate-limited: ${clines} lines for ${refused} messages`);
check(wlog.includes(`link: bad message from the coordinator at ${proxyEp}: `), "the worker names the bad peer's endpoint");
check(/the worker reconnected after \d+ ms/.test(px.err) && /silent for \d+ ms; reconnecting/.test(wlog),
      "after the oversized frame the worker's link reconnected");
for (const what of ["not a tokshift protobuf", "protocol version"])
    check(wlog.includes(what), `the worker's log says '${what}'`);
const wlines = (wlog.match(/bad message from/g) || []).length;
check(wlines > 0 && wlines < 200, `the worker's bad-message lines are rate-limited: ${wlines}`);
const proxied = Number((px.err.match(/(\d+) hostile messages/) || [0, 0])[1]);
const flooded = Number((fl.err.match(/(\d+) hostile messages/) || [0, 0])[1]);
check(flooded > 500 && proxied > 100, `hostile messages: ${flooded} to the coordinator, ${proxied} to the worker`);
check(/forged jobs 1|forged jobs 2/.test(px.err), "the worker was sent a forged job");
if (/job 9\d{5}: attempt fenced off/.test(wlog)) console.error("the forged job of this run was measured, and fenced off at commit");
console.error(`test_garbage: run B equals run A (${rows} token rows) after ${flooded} hostile messages to the coordinator ` +
              `and ${proxied} to the worker; ${clines} + ${wlines} bad-message log lines`);

pg.stop();
cleanup(dir);
finish("test_garbage");
