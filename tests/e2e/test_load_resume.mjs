// test_load_resume.mjs - the corpus load commits in batches and resumes after
// a crash (issue 8 item 1, issue 9 items 5 and 6).  Real PostgreSQL, a real
// coordinator; no worker is needed (the load does not wait for one).
//
//   resume    the coordinator is SIGKILLed right after the load's first batch
//             commits (TOKSHIFT_FAULT load_crash); started again, it continues
//             after that batch.  The run ends with exactly the documents and
//             jobs of an uninterrupted load of the same corpus: same doc ids,
//             ext ids, sources, texts, errors and jobs; each usable document
//             in exactly one job; duplicate ids caught within a batch and
//             across batches (the first occurrence in the batch before the
//             crash, the duplicate after it)
//   changed   a load interrupted the same way, then a corpus file changed and
//             one added: the restart is refused, naming both
//   settings  a run resumed with other settings is refused, naming each key
//             with both values, and no source path
import {appendFileSync, mkdirSync, writeFileSync, cpSync} from "node:fs";
import {join} from "node:path";
import {BIN, check, cleanup, finish, freePort, model, psql, run, sleep, start, startPostgres, tempDir, tokshift} from "./harness.mjs";

const M = model();
const dir = tempDir("tokshift-load-resume-");
const pg = startPostgres(dir);
const db = pg.conninfo;
tokshift(["db", "migrate", "--db", db]);

// 24,000 short documents in three files (load batches hold 10,000), with a
// malformed line, a duplicate id within the first batch, and one whose
// first occurrence is in the first batch and the duplicate in the third.
const corpusDir = join(dir, "corpus");
mkdirSync(corpusDir);
const N = 24000, PER_FILE = 8000;
for (let f = 0; f < 3; f++) {
    const lines = [];
    for (let i = f * PER_FILE; i < (f + 1) * PER_FILE; i++) {
        let id = `d${i}`;
        if (i === 17) id = "dup-within";
        if (i === 42) id = "dup-within";
        if (i === 5) id = "dup-across";
        if (i === 21000) id = "dup-across";
        lines.push(i === 100 ? '{"id": "broken", "text": "not JSON' : JSON.stringify({id, text: `Document ${i}: the cat sat.`, n: i}));
    }
    writeFileSync(join(corpusDir, `part${f}.jsonl`), lines.join("\n") + "\n");
}
const SETTINGS = ["--window", "64", "--stride", "32", "--job-docs", "7", "--heartbeat", "200", "--liveness", "3", "--progress", "1"];

// Starts a coordinator of run `name` on corpus `paths`; returns the process.
async function coordinator(name, paths, {env = {}, settings = SETTINGS} = {}) {
    const port = await freePort();
    const args = ["--run", name, "--model", M, "--db", db, "--bind", `tcp://127.0.0.1:${port}`, ...settings, ...paths];
    const saved = process.env.TOKSHIFT_FAULT;
    if (env.TOKSHIFT_FAULT) process.env.TOKSHIFT_FAULT = env.TOKSHIFT_FAULT;
    const p = start(join(BIN, "tokshift-coordinator"), args, join(dir, `${name}-coord-${Date.now()}.log`));
    if (saved === undefined) delete process.env.TOKSHIFT_FAULT; else process.env.TOKSHIFT_FAULT = saved;
    return p;
}
const loaded = name => (psql(db, `SELECT loaded_at IS NOT NULL FROM runs WHERE name = '${name}'`)[0] || ["f"])[0] === "t";
async function untilLoaded(name, proc, ms = 40000) {
    const t0 = Date.now();
    while (Date.now() - t0 < ms && !loaded(name)) await sleep(50);
    check(loaded(name), `${name}: the load completed within ${ms} ms:\n${proc.err().slice(-1500)}`);
    proc.p.kill("SIGTERM");
    const e = await proc.exited;
    // 130: stopped by a signal, cleanly (under the sanitizers, a leak or an
    // error report would change it).
    check(e.code === 130, `${name}: the coordinator stopped by SIGTERM exited ${e.code} (${e.sig}): ${e.err.slice(-1500)}`);
    return e;
}
const runId = name => Number(psql(db, `SELECT run_id FROM runs WHERE name = '${name}'`)[0][0]);

// ---- the reference: an uninterrupted load ----
const t0 = Date.now();
await untilLoaded("ref", await coordinator("ref", [corpusDir]));
console.error(`ref: ${N} documents loaded, uninterrupted, in ${Date.now() - t0} ms`);

// ---- resume: killed after the first batch, then started again ----
{
    const c1 = await coordinator("resume", [corpusDir], {env: {TOKSHIFT_FAULT: "load_crash=1"}});
    const e1 = await c1.exited;
    check(e1.sig === "SIGKILL", `resume: the first coordinator was killed by the fault (${e1.code}, ${e1.sig}): ${e1.err.slice(-800)}`);
    const [[status, next, isLoaded, nJobs]] = psql(db, `SELECT status, load_next_doc, loaded_at IS NOT NULL,
        (SELECT count(*) FROM jobs j WHERE j.run_id = r.run_id) FROM runs r WHERE name = 'resume'`);
    check(status === "loading" && next === "10000" && isLoaded === "f" && Number(nJobs) > 0,
          `resume: after the crash the run is loading at document 10000 with its first batch's jobs (${status}, ${next}, ${isLoaded}, ${nJobs} jobs)`);
    const c2 = await coordinator("resume", [corpusDir]);
    const e2 = await untilLoaded("resume", c2);
    check(/continuing the load after document 10000/.test(e2.err), "resume: the second coordinator continued after the committed batch");
    const a = runId("resume"), b = runId("ref");
    const one = sql => Number(psql(db, sql)[0][0]);
    const DOC = "doc_id, ext_id, source, metadata, text, n_bytes, job_id, error";
    const JOB = "job_id, state, n_docs, n_bytes";
    for (const [x, y, what] of [[a, b, "not in the uninterrupted load"], [b, a, "missing"]]) {
        const d = one(`SELECT count(*) FROM (SELECT ${DOC} FROM documents WHERE run_id = ${x} EXCEPT ALL SELECT ${DOC} FROM documents WHERE run_id = ${y}) q`);
        const j = one(`SELECT count(*) FROM (SELECT ${JOB} FROM jobs WHERE run_id = ${x} EXCEPT ALL SELECT ${JOB} FROM jobs WHERE run_id = ${y}) q`);
        check(d === 0 && j === 0, `resume: ${d} documents and ${j} jobs ${what}`);
    }
    const [[docs, usable, errors, jobs, nDocs, nErr]] = psql(db, `SELECT count(*), count(*) FILTER (WHERE text IS NOT NULL),
        count(*) FILTER (WHERE error IS NOT NULL), (SELECT count(*) FROM jobs WHERE run_id = ${a}),
        (SELECT n_docs FROM runs WHERE run_id = ${a}), (SELECT n_docs_error FROM runs WHERE run_id = ${a})
        FROM documents WHERE run_id = ${a}`).map(r => r.map(Number));
    check(docs === N && nDocs === N && errors === 3 && nErr === 3 && usable === N - 3,
          `resume: ${docs} documents (runs says ${nDocs}), ${errors} errors (runs says ${nErr}), ${usable} usable; expected ${N}, 3 (a broken line, two duplicates)`);
    // Each usable document in exactly one job, every job's counts its documents', no job empty.
    check(one(`SELECT count(*) FROM documents WHERE run_id = ${a} AND (text IS NULL) <> (job_id IS NULL)`) === 0,
          "resume: usable documents have a job, the others none");
    check(one(`SELECT count(*) FROM jobs j LEFT JOIN (SELECT job_id, count(*) AS n, sum(n_bytes) AS b FROM documents
               WHERE run_id = ${a} AND job_id IS NOT NULL GROUP BY 1) d USING (job_id)
               WHERE j.run_id = ${a} AND (d.n IS DISTINCT FROM j.n_docs OR d.b IS DISTINCT FROM j.n_bytes)`) === 0,
          "resume: every job's n_docs and n_bytes are its documents'");
    check(one(`SELECT count(*) - count(DISTINCT job_id) FROM jobs WHERE run_id = ${a}`) === 0 &&
          one(`SELECT max(job_id) + 1 - count(*) FROM jobs WHERE run_id = ${a}`) === 0, "resume: job ids are 0..n-1, each once");
    const dups = psql(db, `SELECT doc_id, error FROM documents WHERE run_id = ${a} AND error LIKE 'duplicate%' ORDER BY doc_id`);
    check(dups.length === 2 && dups[0][0] === "42" && /dup-within \(first at .*part0.jsonl:18\)/.test(dups[0][1]) &&
          dups[1][0] === "21000" && /dup-across \(first at .*part0.jsonl:6\)/.test(dups[1][1]),
          `resume: the duplicates within a batch and across batches are recorded: ${JSON.stringify(dups)}`);
    check(one(`SELECT count(*) FROM documents WHERE run_id = ${a} AND ext_id = 'dup-across' AND text IS NOT NULL AND doc_id = 5`) === 1,
          "resume: the first occurrence keeps its text");
    console.error(`resume: killed after batch 1 (10000 documents), resumed: ${docs} documents, ${jobs} jobs, equal to the uninterrupted load's`);
}

// ---- changed: a load interrupted, then the corpus changed ----
{
    const chg = join(dir, "corpus-chg");
    cpSync(corpusDir, chg, {recursive: true});
    const c1 = await coordinator("changed", [chg], {env: {TOKSHIFT_FAULT: "load_crash=1"}});
    await c1.exited;
    appendFileSync(join(chg, "part1.jsonl"), JSON.stringify({id: "new", text: "a late addition"}) + "\n");
    writeFileSync(join(chg, "part3.jsonl"), JSON.stringify({id: "extra", text: "another file"}) + "\n");
    const c2 = await coordinator("changed", [chg]);
    const e2 = await c2.exited;
    check(e2.code === 1, `changed: the restart with another corpus was refused (exit ${e2.code})`);
    check(/part1\.jsonl changed \(size \d+ -> \d+; mtime/.test(e2.err) && /added \S*part3\.jsonl/.test(e2.err),
          `changed: the refusal names the changed and the added file: ${e2.err.trim()}`);
    console.error(`changed: ${e2.err.trim().split("\n").filter(l => /fatal/.test(l)).join(" ")}`);
    const [[next, isLoaded]] = psql(db, "SELECT load_next_doc, loaded_at IS NOT NULL FROM runs WHERE name = 'changed'");
    check(next === "10000" && isLoaded === "f", `changed: the refused start loaded nothing (${next}, ${isLoaded})`);
}

// ---- settings: other settings on resume, named key by key ----
{
    const other = SETTINGS.map(a => a === "64" ? "128" : a).concat(["--seed", "7"]);
    const c = await coordinator("ref", [corpusDir], {settings: other});
    const e = await c.exited;
    console.error(`settings: ${e.err.trim()}`);
    check(e.code === 1, `settings: resuming with other settings was refused (exit ${e.code})`);
    check(/window: 64 \(registered\) vs 128 \(given\)/.test(e.err) && /seed: 0 \(registered\) vs 7 \(given\)/.test(e.err) &&
          !/stride/.test(e.err) && !/\.c:\d+/.test(e.err) && !/\{/.test(e.err),
          `settings: the refusal names window and seed with both values, nothing else, no source path nor JSON object: ${e.err.trim()}`);
}

pg.stop();
cleanup(dir);
finish("test_load_resume");
