// faultlib.mjs - what the fault-matrix tests (test_fault_*.mjs) share on top
// of harness.mjs: a fleet (one coordinator, workers that can be killed,
// stopped, restarted, given TOKSHIFT_FAULT), and the checker that compares a
// disturbed run with an undisturbed reference run of the same corpus and
// settings, in SQL.  In the spirit of Jepsen's checkers: the faults are
// free to do anything; the checker only looks at what PostgreSQL holds.
import {spawn} from "node:child_process";
import {writeFileSync} from "node:fs";
import {join} from "node:path";
import {BIN, check, freePort, psql, sleep} from "./harness.mjs";

// Every child we start, so that none outlives the test.
const children = new Set();
process.on("exit", () => { for (const p of children) try { p.kill("SIGKILL"); } catch {} });

// A started process: stderr is kept, line by line with arrival times (ms),
// for timing checks.  env adds to the environment.
export function startProc(cmd, args, {env = {}, logFile} = {}) {
    const p = spawn(cmd, args, {stdio: ["ignore", "pipe", "pipe"], env: {...process.env, ...env}});
    children.add(p);
    const lines = [];
    let out = "", err = "", partial = "", running = true;
    p.stdout.on("data", d => out += d);
    p.stderr.on("data", d => {
        const t = Date.now();
        err += d;
        partial += d;
        for (let i; (i = partial.indexOf("\n")) >= 0; partial = partial.slice(i + 1)) lines.push({t, line: partial.slice(0, i)});
    });
    const exited = new Promise(res => p.on("exit", (code, sig) => {
        running = false;
        children.delete(p);
        if (logFile) writeFileSync(logFile, err);
        res({code, sig, out, err});
    }));
    return {p, exited, lines, out: () => out, err: () => err, running: () => running};
}

// Polls pred every 10 ms until it holds (true) or ms pass (false, a failed check).
export async function waitFor(what, pred, ms = 60000) {
    const t0 = Date.now();
    while (Date.now() - t0 < ms) {
        if (await pred()) return true;
        await sleep(10);
    }
    check(false, `timed out after ${ms} ms waiting for ${what}`);
    return false;
}

export const runIdOf = (db, name) => Number(psql(db, `SELECT run_id FROM runs WHERE name = '${name}'`)[0][0]);

// Settings of the fault runs: small and quick (a run of the default corpus
// takes a few seconds), heartbeats of 200 ms, dead after 3 silent beats.
export const FAST = ["--window", "64", "--stride", "32", "--cut-every", "24", "--cont-len", "8", "--samples", "4",
                     "--seed", "11", "--job-docs", "1", "--heartbeat", "200", "--liveness", "3", "--progress", "1"];

// One coordinator and its workers.  Workers are named w0, w1, ...; opts.env(i)
// gives worker i's extra environment (TOKSHIFT_FAULT).  With supervise, a
// worker that dies while the coordinator runs is replaced (as systemd's
// Restart= would), up to maxRestarts times.
export class Fleet {
    constructor({db, runName, corpus, model, settings = FAST, dir, coordArgs = [], workerArgs = [], env = () => ({}),
                 coordEnv = {}}) {
        Object.assign(this, {db, runName, corpus, model, settings, dir, coordArgs, workerArgs, env, coordEnv});
        this.workers = [];
        this.coords = [];
        this.restarts = 0;
        this.maxRestarts = 0;
    }
    async start(nWorkers) {
        this.endpoint = `tcp://127.0.0.1:${await freePort()}`;
        this.startCoordinator();
        for (let i = 0; i < nWorkers; i++) this.startWorker();
        return this;
    }
    startCoordinator() {
        const args = ["--run", this.runName, "--model", this.model, "--db", this.db, "--bind", this.endpoint,
                      ...this.settings, ...this.coordArgs, ...this.corpus.files];
        this.coord = startProc(join(BIN, "tokshift-coordinator"), args,
            {env: this.coordEnv, logFile: join(this.dir, `${this.runName}-coord${this.coords.length}.log`)});
        this.coords.push(this.coord);
        return this.coord;
    }
    startWorker({env, args = [], model} = {}) {
        const i = this.workers.length;
        const w = startProc(join(BIN, "tokshift-worker"),
            ["--connect", this.endpoint, "--model", model || this.model, "--db", this.db, "--name", `w${i}`,
             "--threads", "1", ...this.workerArgs, ...args],
            {env: env || this.env(i), logFile: join(this.dir, `${this.runName}-w${i}.log`)});
        w.name = `w${i}`;
        this.workers.push(w);
        w.exited.then(r => {
            if (this.supervise && this.coord.running() && r.code !== 0 && this.restarts < this.maxRestarts) {
                this.restarts++;
                this.startWorker();
            }
        });
        return w;
    }
    // Waits for the coordinator (the latest one) to end, then for the workers:
    // they end on the coordinator's SHUTDOWN; one that missed it (it was
    // stopped or disconnected at the end) gets SIGTERM after 2 s, as an
    // operator would send, and SIGKILL 5 s later.  A run that does not end
    // within ms fails the test with the coordinator's last lines.
    async wait(ms = 120000) {
        let timer;
        const timeout = new Promise(res => timer = setTimeout(() => res(null), ms));
        const res = await Promise.race([this.coord.exited, timeout]);
        clearTimeout(timer);
        if (!res) {
            check(false, `run ${this.runName} did not finish within ${ms} ms; coordinator's last lines:\n` +
                  this.coord.err().split("\n").slice(-25).join("\n"));
            this.coord.p.kill("SIGKILL");
        }
        for (const w of this.workers) {
            const t = setTimeout(() => w.p.kill("SIGTERM"), 2000), k = setTimeout(() => w.p.kill("SIGKILL"), 7000);
            await w.exited;
            clearTimeout(t);
            clearTimeout(k);
        }
        return res || {code: -1, err: this.coord.err(), out: ""};
    }
    // The names of the workers holding a job now (one snapshot).
    holders() {
        return psql(this.db, `SELECT worker FROM jobs j JOIN runs r USING (run_id) WHERE r.name = '${this.runName}'
                              AND j.state = 'leased'`).map(r => r[0]);
    }
    // The job (id) that worker `name` holds now, or null.
    leasedBy(name) {
        const rows = psql(this.db, `SELECT job_id FROM jobs j JOIN runs r USING (run_id) WHERE r.name = '${this.runName}'
                                    AND j.state = 'leased' AND j.worker = '${name}'`);
        return rows.length ? Number(rows[0][0]) : null;
    }
    jobCounts() {
        const [[n, done, leased]] = psql(this.db, `SELECT count(*), count(*) FILTER (WHERE state = 'done'),
            count(*) FILTER (WHERE state = 'leased') FROM jobs j JOIN runs r USING (run_id) WHERE r.name = '${this.runName}'`);
        return {n: Number(n), done: Number(done), leased: Number(leased)};
    }
}

// Checks that the given workers (all by default) exited 0: under the
// sanitizer build, a leak or an error report makes a process exit non-zero.
export async function checkCleanExit(fleet, label, names = null) {
    for (const w of fleet.workers.filter(w => !names || names.includes(w.name))) {
        const e = await w.exited;
        check(e.code === 0, `${label}: worker ${w.name} exited ${e.code} (${e.sig}): ${e.err.slice(-1500)}`);
    }
}

// A reference run of the same corpus and settings, undisturbed.
export async function referenceRun({db, corpus, model, dir, name = "ref", settings = FAST, nWorkers = 2}) {
    const f = await new Fleet({db, runName: name, corpus, model, settings, dir}).start(nWorkers);
    const r = await f.wait();
    check(r.code === 0, `reference run: coordinator exited ${r.code}`);
    return runIdOf(db, name);
}

const TOK = "doc_id, seq_no, pos, token_id, logprob, entropy, rank, top1_logprob, varentropy, context_len";
const SEQ = "doc_id, seq_no, kind, cut, sample_idx, seed, temperature, top_k, top_p, n_tokens";
const DOC = "doc_id, ext_id, metadata, text, n_bytes, job_id, error";
const one = (db, sql) => Number(psql(db, sql)[0][0]);

// The rollups other than job_rollups, recomputed from token_view (so from
// the arrays): per job and confidence bin, per document, kind and cut,
// each job's top tokens by z, and each sequence's sums in sequence_stats
// (its gap in double, as the worker adds it).  Counts and top-token rows
// exactly; sums of
// the stored floats to relative 1e-9 (the worker adds the same values in
// double, in another order: far above that rounding, far below any real
// difference); sums of gap within u = 2^-24 of the magnitudes of logprob,
// entropy and gap per token (token_view's gap is -logprob - entropy rounded
// to float4, and the worker's may be the difference of the unrounded
// values), plus the double sums' n 2^-52.
// Returns the number of disagreeing rows.
export function rollupsDisagree(db, id) {
    const close = (a, b) => `abs(${a} - ${b}) > 1e-9 * (abs(${a}) + abs(${b})) + 1e-9`;
    return one(db, `WITH t AS (SELECT d.job_id, v.kind, width_bucket(exp(v.top1_logprob), 0, 1.0000001, 10) AS bin,
            count(*) AS n, count(*) FILTER (WHERE v.rank = 1) AS c, sum(exp(v.top1_logprob)) AS s
            FROM token_view v JOIN documents d USING (run_id, doc_id) WHERE v.run_id = ${id} GROUP BY 1, 2, 3),
        r AS (SELECT job_id, kind::text, bin, n, n_correct AS c, sum_conf AS s FROM calib_rollups WHERE run_id = ${id})
        SELECT count(*) FROM t FULL JOIN r USING (job_id, kind, bin)
        WHERE t.n IS DISTINCT FROM r.n OR t.c IS DISTINCT FROM r.c OR ${close("t.s", "r.s")}`) +
        one(db, `WITH t AS (SELECT doc_id, kind, coalesce(cut, 0) AS cut, count(*) AS n, count(z) AS nz,
            sum(surprisal::float8) AS s, sum(entropy::float8 ^ 2) AS hh, sum(gap::float8) AS g, coalesce(sum(z), 0) AS z,
            sum(abs(logprob::float8) + abs(entropy::float8) + abs(gap::float8)) AS ga
            FROM token_view WHERE run_id = ${id} GROUP BY 1, 2, 3),
        r AS (SELECT doc_id, kind::text, cut, n, n_z AS nz, sum_surprisal AS s, sumsq_entropy AS hh, sum_gap AS g,
            sum_z AS z FROM doc_rollups WHERE run_id = ${id})
        SELECT count(*) FROM t FULL JOIN r USING (doc_id, kind, cut)
        WHERE t.n IS DISTINCT FROM r.n OR t.nz IS DISTINCT FROM r.nz OR ${close("t.s", "r.s")} OR ${close("t.hh", "r.hh")}
           OR abs(t.g - r.g) > (2 ^ -24 + t.n * 2 ^ -52) * t.ga OR ${close("t.z", "r.z")}`) +
        one(db, `WITH t AS (SELECT job_id, doc_id, pos, token_id, logprob, entropy, rank, varentropy, z
            FROM (SELECT v.*, d.job_id, row_number() OVER (PARTITION BY d.job_id ORDER BY v.z DESC, v.doc_id, v.pos) AS k
                  FROM token_view v JOIN documents d USING (run_id, doc_id)
                  WHERE v.run_id = ${id} AND v.kind = 'human' AND v.z IS NOT NULL) v WHERE k <= 64),
        r AS (SELECT job_id, doc_id, pos, token_id, logprob, entropy, rank, varentropy, z FROM top_tokens WHERE run_id = ${id})
        SELECT count(*) FROM ((SELECT * FROM t EXCEPT ALL SELECT * FROM r) UNION ALL (SELECT * FROM r EXCEPT ALL SELECT * FROM t)) d`) +
        // Each sequence's sums (sequence_stats' scalar columns; 0 without tokens).
        one(db, `WITH t AS (SELECT doc_id, seq_no, count(z) AS nz, sum(surprisal::float8) AS s, sum(entropy::float8) AS h,
            sum(-logprob::float8 - entropy) AS g, coalesce(sum(z), 0) AS z FROM token_view WHERE run_id = ${id} GROUP BY 1, 2)
        SELECT count(*) FROM sequence_stats q LEFT JOIN t USING (doc_id, seq_no)
        WHERE q.run_id = ${id} AND (coalesce(t.nz, 0) <> q.n_z OR ${close("coalesce(t.s, 0)", "q.sum_surprisal")}
           OR ${close("coalesce(t.h, 0)", "q.sum_entropy")} OR ${close("coalesce(t.g, 0)", "q.sum_gap")}
           OR ${close("coalesce(t.z, 0)", "q.sum_z")})`);
}

// Checks run `id` against reference run `ref` in SQL: the run is done; every
// job is done, or failed with a reason; no duplicate rows; no partial job
// (every sequence has exactly its token rows, no rows outside a done job,
// every job's rollups agree with its rows); and exactly the reference's
// token rows, sequences and documents (EXCEPT ALL both ways), less the
// documents of the jobs expected to fail (`lost`: doc ids).  Returns figures.
export function verifyRun(db, id, ref, {label = `run ${id}`, lost = []} = {}) {
    const L = lost.length ? lost.join(",") : "-1";
    const [[status]] = psql(db, `SELECT status FROM runs WHERE run_id = ${id}`);
    check(status === "done", `${label}: run status ${status}`);
    const bad = psql(db, `SELECT job_id, state, coalesce(error, '') FROM jobs WHERE run_id = ${id}
                          AND NOT (state = 'done' OR (state = 'failed' AND coalesce(error, '') <> ''))`);
    check(bad.length === 0, `${label}: jobs neither done nor failed with a reason: ${JSON.stringify(bad)}`);
    const failedDocs = psql(db, `SELECT d.doc_id FROM documents d JOIN jobs j USING (run_id, job_id)
                                 WHERE d.run_id = ${id} AND j.state = 'failed' ORDER BY 1`).map(r => Number(r[0]));
    check(JSON.stringify(failedDocs) === JSON.stringify([...lost].sort((a, b) => a - b)),
          `${label}: documents of failed jobs ${JSON.stringify(failedDocs)}, expected ${JSON.stringify(lost)}`);

    // No duplicates (the keys forbid them; this proves it of the data).
    const dup = one(db, `SELECT count(*) - count(DISTINCT (doc_id, seq_no, pos)) FROM token_view WHERE run_id = ${id}`) +
                one(db, `SELECT count(*) - count(DISTINCT (doc_id, seq_no)) FROM sequences WHERE run_id = ${id}`) +
                one(db, `SELECT count(*) - count(DISTINCT (job_id, kind, position)) FROM job_rollups WHERE run_id = ${id}`);
    check(dup === 0, `${label}: ${dup} duplicate rows`);
    // No partial sequence, no row outside a done job.
    const partial = one(db, `SELECT count(*) FROM sequences s LEFT JOIN (SELECT doc_id, seq_no, count(*) AS n FROM token_view
        WHERE run_id = ${id} GROUP BY 1, 2) t USING (doc_id, seq_no) WHERE s.run_id = ${id} AND coalesce(t.n, 0) <> s.n_tokens`);
    check(partial === 0, `${label}: ${partial} sequences whose token rows are not exactly n_tokens`);
    const orphans = one(db, `SELECT count(*) FROM token_view t WHERE run_id = ${id} AND NOT EXISTS
        (SELECT 1 FROM sequences s WHERE s.run_id = t.run_id AND s.doc_id = t.doc_id AND s.seq_no = t.seq_no)`);
    check(orphans === 0, `${label}: ${orphans} token rows without their sequence`);
    const outside = one(db, `SELECT count(*) FROM sequences s JOIN documents d USING (run_id, doc_id)
        LEFT JOIN jobs j ON j.run_id = d.run_id AND j.job_id = d.job_id WHERE s.run_id = ${id} AND j.state IS DISTINCT FROM 'done'`) +
        one(db, `SELECT count(*) FROM job_rollups r JOIN jobs j USING (run_id, job_id) WHERE r.run_id = ${id} AND j.state <> 'done'`) +
        one(db, `SELECT count(*) FROM calib_rollups r JOIN jobs j USING (run_id, job_id) WHERE r.run_id = ${id} AND j.state <> 'done'`) +
        one(db, `SELECT count(*) FROM top_tokens r JOIN jobs j USING (run_id, job_id) WHERE r.run_id = ${id} AND j.state <> 'done'`) +
        one(db, `SELECT count(*) FROM doc_rollups r JOIN documents d USING (run_id, doc_id)
            LEFT JOIN jobs j ON j.run_id = d.run_id AND j.job_id = d.job_id WHERE r.run_id = ${id} AND j.state IS DISTINCT FROM 'done'`);
    check(outside === 0, `${label}: ${outside} sequences or rollups outside a done job`);
    const unmeasured = one(db, `SELECT count(*) FROM documents d JOIN jobs j USING (run_id, job_id) WHERE d.run_id = ${id}
        AND j.state = 'done' AND d.text IS NOT NULL AND (d.n_tokens IS NULL OR (d.error IS NULL AND NOT EXISTS
        (SELECT 1 FROM sequences s WHERE s.run_id = d.run_id AND s.doc_id = d.doc_id AND s.kind = 'human')))`);
    check(unmeasured === 0, `${label}: ${unmeasured} documents of done jobs without their measurement`);
    // Rollups agree with the rows, per job, kind and position: counts exactly,
    // sums within what float4 storage explains.  The worker sums the double
    // statistics; a row holds them rounded to float4 (u = 2^-24 of each), and
    // the view's gap is a float4 subtraction of those (one more u of |gap|);
    // both sums are in double (n 2^-53 of the magnitudes each).
    const roll = one(db, `WITH t AS (SELECT d.job_id, v.kind, v.position, count(*) AS n, sum(v.surprisal::float8) AS s,
            sum(v.gap::float8) AS g, sum(abs(v.logprob::float8)) AS sa,
            sum(abs(v.logprob::float8) + abs(v.entropy::float8) + abs(v.gap::float8)) AS ga
            FROM token_view v JOIN documents d USING (run_id, doc_id) WHERE v.run_id = ${id} GROUP BY 1, 2, 3),
        r AS (SELECT job_id, kind, position, n, sum_surprisal AS s, sum_gap AS g FROM job_rollups WHERE run_id = ${id})
        SELECT count(*) FROM t FULL JOIN r USING (job_id, kind, position)
        WHERE t.n IS DISTINCT FROM r.n OR abs(t.s - r.s) > (2 ^ -24 + t.n * 2 ^ -52) * t.sa
           OR abs(t.g - r.g) > (2 ^ -24 + t.n * 2 ^ -52) * t.ga`);
    check(roll === 0, `${label}: ${roll} (job, kind, position) rollups disagree with the token rows`);
    const other = rollupsDisagree(db, id);
    check(other === 0, `${label}: ${other} calibration, document or top-token rollups disagree with the token rows`);

    // Exactly the reference's rows, less the lost documents.
    const diff = (cols, table, a, b, extra = "") => one(db, `SELECT count(*) FROM (SELECT ${cols} FROM ${table} WHERE run_id = ${a}
        AND doc_id NOT IN (${L}) ${extra} EXCEPT ALL SELECT ${cols} FROM ${table} WHERE run_id = ${b} AND doc_id NOT IN (${L}) ${extra}) d`);
    for (const [x, y, what] of [[id, ref, "not in the reference"], [ref, id, "missing"]]) {
        const t = diff(TOK, "token_view", x, y), s = diff(SEQ, "sequences", x, y), d = diff(DOC, "documents", x, y);
        check(t === 0 && s === 0 && d === 0, `${label}: ${t} token rows, ${s} sequences, ${d} documents ${what}`);
    }
    const lostRows = one(db, `SELECT count(*) FROM token_view WHERE run_id = ${id} AND doc_id IN (${L})`) +
                     one(db, `SELECT count(*) FROM sequences WHERE run_id = ${id} AND doc_id IN (${L})`);
    check(lostRows === 0, `${label}: ${lostRows} rows of the failed job's documents`);
    const refLost = one(db, `SELECT count(*) FROM token_view WHERE run_id = ${ref} AND doc_id IN (${L})`);
    if (lost.length) check(refLost > 0, `${label}: the reference has rows for the lost documents`);

    const [[jobs, done, failed, retried, attempts]] = psql(db, `SELECT count(*), count(*) FILTER (WHERE state = 'done'),
        count(*) FILTER (WHERE state = 'failed'), count(*) FILTER (WHERE attempts > 1), sum(attempts) FROM jobs WHERE run_id = ${id}`)
        .map(r => r.map(Number));
    const rows = one(db, `SELECT count(*) FROM token_view WHERE run_id = ${id}`);
    const seqs = one(db, `SELECT count(*) FROM sequences WHERE run_id = ${id}`);
    const figures = {jobs, done, failed, retried, attempts, rows, seqs, refLost};
    console.error(`${label}: ${done}/${jobs} jobs done, ${failed} failed, ${retried} retried (${attempts} attempts); ` +
                  `${rows} token rows and ${seqs} sequences ` + (ref === id ? "consistent (no reference run)" :
                  "equal to the reference's" + (lost.length ? ` less ${refLost} rows of lost documents` : "")));
    return figures;
}

// Tallies of what the tests injected and checked, printed at the end.
export const tally = {faults: {}, runs: 0, rowsChecked: 0};
export function count(kind, n = 1) { tally.faults[kind] = (tally.faults[kind] || 0) + n; }
export function reportTally(name) {
    console.error(`${name}: ${tally.runs} run(s), ${tally.rowsChecked} token rows checked against the reference; faults: ` +
                  Object.entries(tally.faults).map(([k, v]) => `${k} x${v}`).join(", "));
}
