// test_roles.mjs - PostgreSQL roles of least privilege (sql/roles.sql), and
// passwords kept out of every log (issue 5, Security).  Real PostgreSQL with
// password (SCRAM) authentication for the tokshift roles.  Checks:
//   - the schema belongs to a non-superuser owner, who applies the
//     migrations; roles.sql (run twice: idempotent) creates
//     tokshift_coordinator, tokshift_worker and tokshift_reader with
//     passwords;
//   - a full run with the coordinator and two workers connecting as those
//     roles, with passwords, completes with exactly the rows of a run by
//     the owner; a cross-scoring run of it (--score-run) by the same roles
//     reproduces those rows;
//   - the worker role cannot CREATE TABLE (nor TEMP), DROP, ALTER, DELETE,
//     TRUNCATE, UPDATE runs or jobs, read document texts, runs, attempt
//     tokens or results, call the partition function, mark a job done with
//     a made-up token, or touch the documents of a job that is not leased;
//     the coordinator role cannot create, drop, write results or call the
//     worker's commit functions;
//     the reader role reads everything and writes nothing;
//   - no log line of the coordinator, the workers or `tokshift` contains a
//     password from a connection string: in the run, and when connecting
//     fails (a wrong password, an unreachable server, a connection string
//     libpq cannot parse because of the password, a URI with a bad
//     %-escape in its password).
import {randomBytes} from "node:crypto";
import {readFileSync, writeFileSync} from "node:fs";
import {join} from "node:path";
import {BIN, ROOT, check, cleanup, finish, model, psql, run, runOnce, sleep, start, startPostgres, tempDir, tokshift,
        writeCorpus} from "./harness.mjs";

const M = model();
const dir = tempDir("tokshift-roles-");
const pg = startPostgres(dir);
const su = pg.conninfo; // the cluster's superuser, database tokshift
const base = su.replace(/ dbname=\S+/, "").replace(/ user=\S+/, "");
const secret = what => `s3cr3t-${what}-${randomBytes(6).toString("hex")}`;
const PW = {coordinator: secret("coord"), worker: secret("worker"), reader: secret("reader")};
const conn = (role, pw, db = "tokshift_roles") => `${base} dbname=${db} user=${role}${pw ? ` password=${pw}` : ""}`;

// A non-superuser owner, its database; password authentication for the roles.
psql(su, "CREATE ROLE tokshift_owner LOGIN");
psql(su, "CREATE DATABASE tokshift_roles OWNER tokshift_owner");
const hba = join(pg.data, "pg_hba.conf");
writeFileSync(hba, "host all tokshift_coordinator,tokshift_worker,tokshift_reader 127.0.0.1/32 scram-sha-256\n" +
                   readFileSync(hba, "utf8"));
psql(su, "SELECT pg_reload_conf()");
const owner = conn("tokshift_owner");
const logs = []; // [what, text] of every log to search for passwords
const keep = (what, r) => { logs.push([what, `${r.stdout || ""}${r.stderr || ""}`]); return r; };
keep("migrate", run(join(BIN, "tokshift"), ["db", "migrate", "--db", owner]));
const roles = ["-X", "-q", "-v", "ON_ERROR_STOP=1", "-f", join(ROOT, "sql", "roles.sql"),
               "-v", `coordinator_password=${PW.coordinator}`, "-v", `worker_password=${PW.worker}`,
               "-v", `reader_password=${PW.reader}`, conn(su.match(/user=(\S+)/)[1])];
let r = run("psql", roles, {allowFail: true});
check(r.status === 0 && /roles tokshift_coordinator, tokshift_worker and tokshift_reader are set up/.test(r.stdout),
      `roles.sql: exit ${r.status}: ${r.stdout}${r.stderr}`);
r = run("psql", roles, {allowFail: true});
check(r.status === 0, `roles.sql again (idempotent): exit ${r.status}: ${r.stderr}`);
r = run("psql", ["-X", "-q", "-v", "ON_ERROR_STOP=1", "-f", join(ROOT, "sql", "roles.sql"), su], {allowFail: true});
check(r.status !== 0 && /tokshift db migrate/.test(r.stderr), `roles.sql in an unmigrated database says so: ${r.stderr}`);
// Without the right password: refused (authentication really is on).
r = run("psql", ["-X", "-c", "SELECT 1", conn("tokshift_worker", "wrong")], {allowFail: true});
check(r.status !== 0 && /password authentication failed/.test(r.stderr), `a wrong password is refused: ${r.stderr}`);

// ---- a run as the roles, and the same run as the owner -------------------------
const corpus = writeCorpus(dir, {nStories: 10, longRepeat: 2});
const settings = ["--window", "64", "--stride", "32", "--prefix-lengths", "4,12", "--cont-len", "8", "--samples", "3",
                  "--seed", "9", "--job-docs", "2"];
const ref = await runOnce({conninfo: owner, runName: "by-owner", corpus, modelPath: M, settings, logDir: dir, nWorkers: 1});
check(ref.res.code === 0, `run by the owner: exit ${ref.res.code}: ${ref.res.err.slice(-1000)}`);
const byRoles = await runOnce({conninfo: conn("tokshift_coordinator", PW.coordinator), runName: "by-roles", corpus,
                               modelPath: M, settings, logDir: dir, nWorkers: 2,
                               workerArgs: ["--db", conn("tokshift_worker", PW.worker)]});
check(byRoles.res.code === 0, `run by the roles: exit ${byRoles.res.code}: ${byRoles.res.err.slice(-1500)}`);
logs.push(["coordinator", byRoles.res.err + byRoles.res.out]);
for (const [i, w] of byRoles.workers.entries()) {
    const e = await w.exited;
    check(e.code === 0, `worker ${i} (role tokshift_worker) exited ${e.code}: ${e.err.slice(-800)}`);
    logs.push([`worker ${i}`, e.err]);
}
const q1 = sql => psql(owner, sql);
const [[ra], [rb]] = [q1("SELECT run_id FROM runs WHERE name = 'by-owner'")[0], q1("SELECT run_id FROM runs WHERE name = 'by-roles'")[0]];
const cols = "doc_id, seq_no, pos, token_id, logprob, entropy, rank, top1_logprob, varentropy, context_len";
for (const [x, y] of [[ra, rb], [rb, ra]]) {
    const [[n]] = q1(`SELECT count(*) FROM (SELECT ${cols} FROM token_view WHERE run_id = ${x}
                      EXCEPT ALL SELECT ${cols} FROM token_view WHERE run_id = ${y}) d`);
    check(n === "0", `${n} token rows of run ${x} are not in run ${y}`);
}
const [[jobs, done, rows, owner_of_part]] = q1(`SELECT count(*), count(*) FILTER (WHERE state = 'done'),
    (SELECT sum(cardinality(token_id)) FROM sequence_stats WHERE run_id = ${rb}),
    (SELECT tableowner FROM pg_tables WHERE tablename = 'sequence_stats_r${rb}') FROM jobs WHERE run_id = ${rb}`);
check(jobs === done && Number(rows) > 3000, `run by the roles: ${done}/${jobs} jobs done, ${rows} token rows`);
check(owner_of_part === "tokshift_owner", `the run's partition was made by the owner's function (owner ${owner_of_part})`);
// A cross-scoring run (--score-run, migration 010) by the roles: the
// coordinator loads through tokshift_score_run_load with its own rights and
// reads the samples through sample_tokens; same model, so the same rows.
{
    const sr = await runOnce({conninfo: conn("tokshift_coordinator", PW.coordinator), runName: "scored-by-roles",
                              corpus: {files: []}, modelPath: M, settings: [], coordArgs: ["--score-run", "by-roles"],
                              logDir: dir, nWorkers: 1, workerArgs: ["--db", conn("tokshift_worker", PW.worker)]});
    check(sr.res.code === 0, `cross-scoring run by the roles: exit ${sr.res.code}: ${sr.res.err.slice(-1500)}`);
    logs.push(["score-run coordinator", sr.res.err + sr.res.out]);
    for (const w of sr.workers) logs.push(["score-run worker", (await w.exited).err]);
    const [[rs]] = q1("SELECT run_id FROM runs WHERE name = 'scored-by-roles'");
    for (const [x, y] of [[rb, rs], [rs, rb]]) {
        const [[n]] = q1(`SELECT count(*) FROM (SELECT ${cols} FROM token_view WHERE run_id = ${x}
                          EXCEPT ALL SELECT ${cols} FROM token_view WHERE run_id = ${y}) d`);
        check(n === "0", `cross-scoring by the roles: ${n} token rows of run ${x} are not in run ${y}`);
    }
}
r = keep("status as reader", run(join(BIN, "tokshift"), ["status", "by-roles", "--db", conn("tokshift_reader", PW.reader)], {allowFail: true}));
check(r.status === 0 && /by-roles/.test(r.stdout), `tokshift status as the reader: ${r.stderr}`);

// ---- what each role may not do -----------------------------------------------------
const as = (role, sql) => run("psql", ["-X", "-q", "-At", "-v", "ON_ERROR_STOP=1", "-c", sql,
                                       conn(role, PW[role.replace("tokshift_", "")])], {allowFail: true});
const denied = /permission denied|must be owner|may only|not leased under this attempt token/;
const refuse = (role, sql) => {
    const x = as(role, sql);
    check(x.status !== 0 && denied.test(x.stderr), `${role} may not: ${sql}  (${x.status}: ${x.stderr.trim().split("\n")[0]})`);
};
const allow = (role, sql) => {
    const x = as(role, sql);
    check(x.status === 0, `${role} may: ${sql}  (${x.stderr.trim()})`);
    return x.stdout.trim();
};
const W = "tokshift_worker", C = "tokshift_coordinator", R = "tokshift_reader";
for (const sql of ["CREATE TABLE evil (i int)", "CREATE TEMP TABLE evil (i int)", "DROP TABLE sequence_stats",
                   "ALTER TABLE jobs ADD COLUMN evil int", "CREATE INDEX evil ON jobs (worker)",
                   `DELETE FROM sequence_stats WHERE run_id = ${rb}`, "DELETE FROM jobs", "DELETE FROM documents",
                   "TRUNCATE sequence_stats", "UPDATE runs SET status = 'stopped'", "SELECT text FROM documents LIMIT 1",
                   "SELECT count(*) FROM runs", "SELECT count(*) FROM sequence_stats", `SELECT count(*) FROM sequence_stats_r${rb}`, "SELECT count(*) FROM token_view",
                   "SELECT worker FROM jobs LIMIT 1", `SELECT tokshift_create_partition(${rb})`,
                   "INSERT INTO jobs (run_id, job_id, n_docs, n_bytes) VALUES (1, 999, 0, 0)",
                   `UPDATE jobs SET error = 'x' WHERE run_id = ${rb}`, `UPDATE jobs SET state = 'pending' WHERE run_id = ${rb}`,
                   "SELECT attempt_token FROM jobs LIMIT 1", "SELECT count(*) FROM jobs WHERE attempt_token > 0",
                   `SELECT tokshift_job_done(${rb}, 0, 12345, 0, 0, 0)`, // a made-up token: refused
                   `UPDATE documents SET n_tokens = 0 WHERE run_id = ${rb}`, // documents of done jobs
                   "CREATE FUNCTION evil() RETURNS int LANGUAGE sql AS 'SELECT 1'"])
    refuse(W, sql);
for (const sql of ["CREATE TABLE evil (i int)", "DROP TABLE jobs", `DELETE FROM sequence_stats WHERE run_id = ${rb}`,
                   "INSERT INTO sequence_stats SELECT * FROM sequence_stats LIMIT 0", "TRUNCATE runs",
                   "UPDATE sequence_stats SET seq_no = 0", "UPDATE doc_rollups SET n = 0", "DELETE FROM runs"])
    refuse(C, sql);
for (const sql of [`SELECT tokshift_job_fence(${rb}, 0, 1)`, `SELECT tokshift_job_done(${rb}, 0, 1, 0, 0, 0)`])
    refuse(C, sql), refuse(R, sql);
// ANALYZE after the load goes through a function only the coordinator may call (migration 006).
refuse(W, "SELECT tokshift_analyze_load()"), refuse(R, "SELECT tokshift_analyze_load()");
allow(C, "SELECT tokshift_analyze_load()");
for (const sql of ["UPDATE runs SET status = 'stopped'", "DELETE FROM sequence_stats", "INSERT INTO models (identity, name, arch, n_vocab, n_ctx) VALUES ('x', 'x', 'x', 1, 1)",
                   "CREATE TABLE evil (i int)", `SELECT tokshift_create_partition(${rb})`])
    refuse(R, sql);
const seen = allow(R, `SELECT count(*) FROM token_view WHERE run_id = ${rb}`);
check(seen === rows, `the reader reads every token row through the views (${seen})`);
allow(R, `SELECT count(*) FROM sequence_stats_r${rb}`);
allow(R, "SELECT count(*) FROM documents WHERE text IS NOT NULL");
allow(C, `SELECT jobs_done FROM run_progress WHERE run_id = ${rb}`);

// ---- passwords never in logs ---------------------------------------------------------
const wrong = secret("wrong");
const bad = [
    ["a wrong password", conn("tokshift_reader", wrong), /password authentication failed/],
    ["an unreachable server", `host=127.0.0.1 port=1 dbname=x user=u password=${secret("unreach")}`, /Connection refused|could not connect/],
    ["a password with a space", `${base} dbname=tokshift_roles user=tokshift_reader password=${secret("part1")} ${secret("part2")}`, /connection/],
    ["a URI with a bad %-escape", `postgresql://tokshift_reader:${secret("uri")}%zz@127.0.0.1/tokshift_roles`, /percent-encoded/],
    // the misspelt option is named (it is not part of the password)
    ["a quoted password, then a bad option", `${base} password='${secret("quoted")} x' hots=y`, /invalid connection option "hots"/],
];
const M1 = join(BIN, "tokshift");
for (const [what, ci, want] of bad) {
    r = keep(`tokshift status (${what})`, run(M1, ["status", "--db", ci], {allowFail: true}));
    check(r.status === 1 && want.test(r.stderr), `tokshift status with ${what}: exit ${r.status}: ${r.stderr.trim()}`);
    keep(`tokshift db migrate (${what})`, run(M1, ["db", "migrate", "--db", ci], {allowFail: true}));
    r = keep(`coordinator (${what})`, run(join(BIN, "tokshift-coordinator"),
        ["--run", "x", "--model", M, "--db", ci, "--bind", "tcp://127.0.0.1:0", corpus.files[0]], {allowFail: true}));
    check(r.status === 1, `coordinator with ${what}: exit ${r.status}`);
    // A worker only warns at start (it retries when a job needs the database).
    const wk = start(join(BIN, "tokshift-worker"), ["--connect", "tcp://127.0.0.1:1", "--model", M, "--db", ci]);
    await sleep(1500);
    wk.p.kill("SIGTERM");
    const we = await wk.exited;
    logs.push([`worker (${what})`, we.err]);
    check(/cannot connect to PostgreSQL|connection/.test(we.err), `the worker says it cannot connect (${what})`);
}
const secrets = [...Object.values(PW), wrong];
for (const [, ci] of bad) for (const m of ci.matchAll(/s3cr3t-[a-z0-9]+-[0-9a-f]+/g)) secrets.push(m[0]);
let leaks = 0;
for (const [what, text] of logs)
    for (const s of secrets)
        if (text.includes(s) && leaks++ < 10) console.error(`LEAK: ${what} logs a password:\n${text}`);
check(leaks === 0, `${leaks} log(s) contain a password`);
check(logs.length >= 20, `${logs.length} logs searched for ${secrets.length} passwords`);
console.error(`test_roles: ${rows} token rows written as the roles (equal to the owner's run); ` +
              `${logs.length} logs free of ${secrets.length} passwords`);

pg.stop();
cleanup(dir);
finish("test_roles");
