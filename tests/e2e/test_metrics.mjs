// test_metrics.mjs - the coordinator's metrics endpoint (issue 13 item 5):
// a real coordinator (--metrics 127.0.0.1:0) with two real workers on the
// demo model and a real PostgreSQL, scraped over HTTP while the run goes and
// after it is complete (--metrics-linger keeps the final figures up).
//
//   format    every scrape parses strictly as Prometheus text 0.0.4: each
//             sample belongs to a family whose HELP and TYPE came first, a
//             family's samples are together, no series twice, names
//             tokshift_*, counters *_total, histogram buckets cumulative
//             with +Inf equal to _count; the run's name is the label `run`,
//             a worker's name (with a quote and a backslash) is escaped
//   during    scrapes every 50 ms: counters never go down between scrapes;
//             jobs done and tokens done never exceed what PostgreSQL holds
//             right after the scrape (the coordinator counts a job after its
//             commit); while a worker holds a measured job (a stall before
//             its commit, TOKSHIFT_FAULT) scrapes see it busy, its tokens in
//             flight and a rate
//   after     jobs by state equal the jobs table's; tokens done equal the
//             rows of token_view and the jobs' n_tokens; documents done,
//             retries and per-worker jobs and tokens equal PostgreSQL's;
//             the round-trip histogram counted statements
//   HTTP      404 for another path, 405 for POST, bad --metrics refused
//             (exit 2), a port in use refused (exit 1); SIGTERM ends the
//             linger with exit 0
import http from "node:http";
import net from "node:net";
import {join} from "node:path";
import {BIN, check, cleanup, finish, model, psql, run, sleep, startPostgres, tempDir, tokshift, writeCorpus}
    from "./harness.mjs";
import {startProc, waitFor} from "./faultlib.mjs";

const M = model();
const dir = tempDir("tokshift-metrics-");
const pg = startPostgres(dir);
const db = pg.conninfo;
tokshift(["db", "migrate", "--db", db]);
const RUN = "metrics \"run\" \\ 1";  // label values escape quotes and backslashes
const WORKERS = ["w0", "w\"1\\x"];

// ---- a strict parser of the text exposition format ----------------------
const NAME = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/;
function parseLabels(s, where) {
    const labels = {};
    let i = 0;
    while (i < s.length) {
        const m = /^([a-zA-Z_][a-zA-Z0-9_]*)="/.exec(s.slice(i));
        if (!m) throw new Error(`${where}: bad label at '${s.slice(i)}'`);
        i += m[0].length;
        let v = "";
        for (;;) {
            if (i >= s.length) throw new Error(`${where}: unterminated label value`);
            const c = s[i++];
            if (c === '"') break;
            if (c === "\\") {
                const e = s[i++];
                if (e === "\\") v += "\\";
                else if (e === '"') v += '"';
                else if (e === "n") v += "\n";
                else throw new Error(`${where}: bad escape \\${e}`);
            } else {
                v += c;
            }
        }
        if (m[1] in labels) throw new Error(`${where}: label ${m[1]} twice`);
        labels[m[1]] = v;
        if (i < s.length) {
            if (s[i] !== ",") throw new Error(`${where}: expected ',' at '${s.slice(i)}'`);
            i++;
        }
    }
    return labels;
}
// Returns {families: {name: {type, help, samples: [{name, labels, value}]}}}; throws on any violation.
function parseExposition(text) {
    if (!text.endsWith("\n")) throw new Error("the text does not end with a newline");
    const families = {}, seen = new Set();
    let cur = null;
    const lines = text.slice(0, -1).split("\n");
    for (const [k, line] of lines.entries()) {
        const where = `line ${k + 1} '${line}'`;
        let m;
        if ((m = /^# HELP (\S+) (.*)$/.exec(line))) {
            if (!NAME.test(m[1]) || families[m[1]]) throw new Error(`${where}: bad or repeated HELP`);
            cur = families[m[1]] = {name: m[1], help: m[2], type: null, samples: []};
        } else if ((m = /^# TYPE (\S+) (counter|gauge|histogram|summary|untyped)$/.exec(line))) {
            if (!cur || cur.name !== m[1] || cur.type) throw new Error(`${where}: TYPE without its HELP just before`);
            cur.type = m[2];
        } else if ((m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$/.exec(line))) {
            if (!cur || !cur.type) throw new Error(`${where}: a sample outside a family with HELP and TYPE`);
            const suffixes = cur.type === "histogram" ? ["_bucket", "_sum", "_count"] : [""];
            if (!suffixes.some(s => m[1] === cur.name + s)) throw new Error(`${where}: not of family ${cur.name}`);
            if (!/^([-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?|[-+]Inf|NaN)$/.test(m[3])) throw new Error(`${where}: bad value`);
            const labels = m[2] === undefined ? {} : parseLabels(m[2], where);
            const key = m[1] + JSON.stringify(Object.entries(labels).sort());
            if (seen.has(key)) throw new Error(`${where}: the same series twice`);
            seen.add(key);
            cur.samples.push({name: m[1], labels, value: Number(m[3].replace("Inf", "Infinity"))});
        } else {
            throw new Error(`${where}: neither HELP, TYPE nor a sample`);
        }
    }
    for (const f of Object.values(families)) {
        if (!f.name.startsWith("tokshift_")) throw new Error(`family ${f.name}: not tokshift_*`);
        if ((f.type === "counter") !== f.name.endsWith("_total")) throw new Error(`family ${f.name} (${f.type}): _total is for counters only`);
        if (f.type === "histogram") {
            const groups = {};
            for (const s of f.samples) {
                const {le, ...rest} = s.labels;
                const g = groups[JSON.stringify(rest)] ??= {buckets: [], sum: null, count: null};
                if (s.name.endsWith("_bucket")) g.buckets.push([Number(le.replace("Inf", "Infinity")), s.value]);
                else if (s.name.endsWith("_sum")) g.sum = s.value;
                else g.count = s.value;
            }
            for (const g of Object.values(groups)) {
                const b = g.buckets;
                const sorted = b.every((x, i) => i === 0 || (x[0] > b[i - 1][0] && x[1] >= b[i - 1][1]));
                if (!sorted || b.at(-1)?.[0] !== Infinity || b.at(-1)[1] !== g.count || g.sum === null)
                    throw new Error(`histogram ${f.name}: buckets not cumulative, or +Inf != _count, or no _sum`);
            }
        }
    }
    return families;
}
const PROCESS_FAMILIES = ["tokshift_build_info", "tokshift_coordinator_start_time_seconds", "tokshift_coordinator_uptime_seconds"];
// The value of family's sample whose labels include want (one must match).
function val(fams, name, want = {}) {
    const f = fams[name] ?? fams[name.replace(/_(bucket|sum|count)$/, "")];
    if (!f) throw new Error(`no family ${name}`);
    const s = f.samples.filter(x => x.name === name && Object.entries(want).every(([k, v]) => x.labels[k] === v));
    if (s.length !== 1) throw new Error(`${name} ${JSON.stringify(want)}: ${s.length} samples`);
    return s[0].value;
}

function get(url, method = "GET") {
    return new Promise((res, rej) => {
        const req = http.request(url, {method}, r => {
            let body = "";
            r.setEncoding("utf8");
            r.on("data", d => body += d);
            r.on("end", () => res({status: r.statusCode, type: r.headers["content-type"], body}));
        });
        req.on("error", rej);
        req.end();
    });
}
// One scrape, parsed and checked for what holds of every scrape.
async function scrape(url) {
    const r = await get(url);
    check(r.status === 200 && /^text\/plain; version=0\.0\.4/.test(r.type), `GET /metrics: ${r.status} ${r.type}`);
    const fams = parseExposition(r.body);
    for (const f of Object.values(fams))
        for (const s of f.samples)
            if (!PROCESS_FAMILIES.includes(f.name) && s.labels.run !== RUN)
                throw new Error(`${s.name}: run label '${s.labels.run}', want '${RUN}'`);
    return fams;
}

// ---- refusals --------------------------------------------------------------
// Small and quick (a few seconds; about a minute under ThreadSanitizer,
// whose workers are slow), with jobs long enough to be seen in hand.
const corpus = writeCorpus(dir, {nStories: 8, longRepeat: 4});
const coordArgs = (extra) => ["--run", RUN, "--model", M, "--db", db, "--window", "64", "--stride", "32",
    "--prefix-lengths", "16", "--cont-len", "8", "--samples", "2", "--seed", "3", "--job-docs", "2", "--heartbeat", "200",
    "--liveness", "25", // (5 s: no worker of a busy machine, or under TSan, is taken for dead)
    ...extra, ...corpus.files];
for (const bad of ["127.0.0.1:99999", "localhost:9464", "[::1]9464", "127.0.0.1:", "x"]) {
    const r = run(join(BIN, "tokshift-coordinator"), coordArgs(["--bind", "tcp://127.0.0.1:0", "--metrics", bad]), {allowFail: true});
    check(r.status === 2 && /--metrics/.test(r.stderr), `--metrics ${bad}: exit ${r.status} (want 2): ${r.stderr.trim()}`);
}
const taken = net.createServer();
await new Promise(res => taken.listen(0, "127.0.0.1", res));
{
    const r = run(join(BIN, "tokshift-coordinator"),
                  coordArgs(["--bind", "tcp://127.0.0.1:0", "--metrics", `127.0.0.1:${taken.address().port}`]), {allowFail: true});
    check(r.status === 1 && /metrics: cannot serve/.test(r.stderr), `a port in use: exit ${r.status} (want 1): ${r.stderr.trim()}`);
}
taken.close();
check(psql(db, "SELECT count(*) FROM runs")[0][0] === "0", "a refused coordinator registered no run");

// ---- the run ----------------------------------------------------------------
const coord = startProc(join(BIN, "tokshift-coordinator"),
    coordArgs(["--bind", "tcp://127.0.0.1:0", "--metrics", "127.0.0.1:0", "--metrics-linger", "60"]),
    {logFile: join(dir, "coord.log")});
let url = null, endpoint = null;
await waitFor("the coordinator's addresses", () => {
    url = /metrics at (http:\S+)/.exec(coord.err())?.[1];
    endpoint = /serving \d+ pending jobs on (tcp:\S+)/.exec(coord.err())?.[1];
    return (url && endpoint) || !coord.running();
}, 30000);
if (!url || !endpoint) {
    console.error(coord.err());
    finish("test_metrics");
}
// Before the serve loop's first snapshot only the process's families are
// there; then, before any worker, nothing is done.
let fams = await scrape(url);
check(Object.keys(fams).every(f => PROCESS_FAMILIES.includes(f) || "tokshift_run_complete" in fams),
      `before the first snapshot, only ${PROCESS_FAMILIES}: ${Object.keys(fams)}`);
await waitFor("the first snapshot", async () => "tokshift_run_complete" in (fams = await scrape(url)), 30000);
check(val(fams, "tokshift_workers_alive") === 0 && val(fams, "tokshift_tokens_done_total") === 0,
      "before the workers: none alive, no tokens");
check(val(fams, "tokshift_build_info", {version: tokshift(["--version"]).trim().split(/\s+/).pop()}) === 1,
      "build_info names the version that tokshift --version prints");
const other = await get(url.replace(/\/metrics$/, "/other")), post = await get(url, "POST");
check(other.status === 404 && post.status === 405, `another path ${other.status} (want 404), POST ${post.status} (want 405)`);

// Each worker holds its first job, measured, for 1.5 s before committing it
// (TOKSHIFT_FAULT, common/fault.h; both, since one may take every job before
// the other has loaded the model): a busy worker and tokens in flight that
// the 50 ms scrapes must see, however fast the machine.
const workers = WORKERS.map((name, i) => startProc(join(BIN, "tokshift-worker"),
    ["--connect", endpoint, "--model", M, "--db", db, "--name", name, "--threads", "1"],
    {logFile: join(dir, `w${i}.log`), env: {TOKSHIFT_FAULT: "stall_before_commit_ms=1500"}}));

const COUNTERS = ["tokshift_tokens_done_total", "tokshift_documents_done_total", "tokshift_job_retries_total"];
let prev = null, scrapes = 0, sawBusy = false, sawInFlight = false, sawRate = false, t0 = Date.now();
for (;;) {
    fams = await scrape(url);
    const done = val(fams, "tokshift_jobs", {state: "done"}), tokens = val(fams, "tokshift_tokens_done_total");
    if (scrapes % 5 === 0) { // (psql costs a process; PostgreSQL after the scrape can only be ahead)
        const [dbDone, dbTokens] = psql(db, `SELECT count(*) FILTER (WHERE state = 'done'), coalesce(sum(n_tokens) FILTER (WHERE state = 'done'), 0)
                                             FROM jobs JOIN runs USING (run_id) WHERE name = '${RUN.replace(/'/g, "''")}'`)[0].map(Number);
        check(done <= dbDone && tokens <= dbTokens, `scrape ${scrapes}: done ${done} <= ${dbDone}, tokens ${tokens} <= ${dbTokens} (PostgreSQL's)`);
    }
    if (prev) for (const c of COUNTERS)
        check(val(fams, c) >= val(prev, c), `${c} went down: ${val(prev, c)} -> ${val(fams, c)}`);
    scrapes++;
    if (val(fams, "tokshift_run_complete") === 1) break;
    sawBusy ||= val(fams, "tokshift_workers", {state: "busy"}) > 0;
    sawInFlight ||= val(fams, "tokshift_tokens_in_flight") > 0;
    sawRate ||= val(fams, "tokshift_tokens_per_second") > 0;
    prev = fams;
    if (!coord.running() || Date.now() - t0 > 180000) {
        check(false, `the run did not complete: ${coord.err().slice(-1500)}`);
        finish("test_metrics");
    }
    await sleep(50);
}
check(sawInFlight && sawRate, `scrapes during the run saw tokens in flight (${sawInFlight}) and a rate (${sawRate})`);
check(sawBusy, `a scrape during the run saw a busy worker (${scrapes} scrapes)`);
check(coord.running(), "the coordinator lingers after the run");

// ---- after: the database's numbers --------------------------------------------
fams = await scrape(url);
const q = sql => psql(db, sql.replaceAll("$RUN", `'${RUN.replace(/'/g, "''")}'`));
const states = Object.fromEntries(q("SELECT state, count(*) FROM jobs JOIN runs USING (run_id) WHERE name = $RUN GROUP BY state"));
for (const s of ["pending", "leased", "done", "failed"])
    check(val(fams, "tokshift_jobs", {state: s}) === Number(states[s] ?? 0),
          `jobs ${s}: ${val(fams, "tokshift_jobs", {state: s})}, PostgreSQL ${states[s] ?? 0}`);
const rows = Number(q("SELECT count(*) FROM token_view JOIN runs USING (run_id) WHERE name = $RUN")[0][0]);
const [jobTokens, docsDone, retries] = q(`SELECT p.tokens_done, p.docs_done, p.retries FROM run_progress p WHERE name = $RUN`)[0].map(Number);
const tokens = val(fams, "tokshift_tokens_done_total");
check(tokens === rows && tokens === jobTokens && rows > 0, `tokens done ${tokens}, token_view rows ${rows}, jobs' n_tokens ${jobTokens}`);
check(val(fams, "tokshift_documents_done_total") === docsDone, `documents done ${val(fams, "tokshift_documents_done_total")}, PostgreSQL ${docsDone}`);
check(val(fams, "tokshift_documents") === corpus.usable, `documents ${val(fams, "tokshift_documents")}, usable ${corpus.usable}`);
check(val(fams, "tokshift_job_retries_total") === retries, `retries ${val(fams, "tokshift_job_retries_total")}, PostgreSQL ${retries}`);
const perWorker = Object.fromEntries(q(`SELECT worker, count(*), sum(n_tokens) FROM jobs JOIN runs USING (run_id)
                                        WHERE name = $RUN AND state = 'done' GROUP BY worker`).map(([w, n, t]) => [w, [Number(n), Number(t)]]));
const byWorker = n => Object.fromEntries(fams[n].samples.map(s => [s.labels.worker, s.value]));
const jobsBy = byWorker("tokshift_worker_jobs_done_total"), tokensBy = byWorker("tokshift_worker_tokens_done_total");
check(JSON.stringify(Object.keys(jobsBy).sort()) === JSON.stringify(Object.keys(perWorker).sort()) &&
      JSON.stringify(Object.keys(tokensBy).sort()) === JSON.stringify(Object.keys(perWorker).sort()),
      `per-worker series ${JSON.stringify(Object.keys(jobsBy))}, workers with jobs done ${JSON.stringify(Object.keys(perWorker))}`);
for (const [w, [n, t]] of Object.entries(perWorker))
    check(jobsBy[w] === n && tokensBy[w] === t, `worker ${w}: jobs ${jobsBy[w]} (PostgreSQL ${n}), tokens ${tokensBy[w]} (${t})`);
check(Object.keys(perWorker).every(w => WORKERS.includes(w)), `jobs done only by ${WORKERS}: ${Object.keys(perWorker)}`);
const rt = val(fams, "tokshift_db_round_trip_seconds_count");
check(rt >= 2 * Number(states.done) && val(fams, "tokshift_db_round_trip_seconds_sum") > 0,
      `round trips counted: ${rt} (at least a lease and a state read per job: ${2 * Number(states.done)})`);
check(val(fams, "tokshift_db_up") === 1 && val(fams, "tokshift_workers", {state: "busy"}) === 0, "db up, no worker busy at the end");

coord.p.kill("SIGTERM");
const res = await coord.exited;
check(res.code === 0, `the lingering coordinator exited ${res.code} on SIGTERM (want 0): ${res.err.slice(-800)}`);
for (const w of workers) {
    const t = setTimeout(() => w.p.kill("SIGKILL"), 10000);
    await w.exited;
    clearTimeout(t);
}
console.log(`metrics: ${scrapes} scrapes in ${((Date.now() - t0) / 1000).toFixed(1)} s; final: ${Number(states.done)} jobs done, ` +
            `${tokens} tokens, ${rt} PostgreSQL round trips (mean ${(val(fams, "tokshift_db_round_trip_seconds_sum") / rt * 1000).toFixed(2)} ms)`);
cleanup(dir);
finish("test_metrics");
