// harness.mjs - what the end-to-end and fault tests share: a private
// PostgreSQL (deploy/pg-cluster.sh), the tokshift binaries, a test corpus,
// runs of a coordinator with workers, and SQL.  Everything is real: real
// PostgreSQL, real ZeroMQ on loopback, real processes.  Nothing here mocks
// the system under test.
import {spawn, spawnSync} from "node:child_process";
import {chmodSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync} from "node:fs";
import {tmpdir} from "node:os";
import {join, resolve} from "node:path";
import {gzipSync} from "node:zlib";
import net from "node:net";

process.setMaxListeners(100);  // one exit hook per child process
export const ROOT = process.cwd();  // CTest runs tests in the project root
export const BIN = process.env.TOKSHIFT_BUILD ? resolve(process.env.TOKSHIFT_BUILD) : join(ROOT, "build");

let failures = 0;
export function check(cond, what) {
    if (!cond) {
        console.error(`FAIL: ${what}`);
        failures++;
    }
    return cond;
}
export function finish(name) {
    if (failures) {
        console.error(`${name}: ${failures} check(s) failed`);
        process.exit(1);
    }
    console.error(`${name}: ok`);
    process.exit(0);
}

// The shared model: skip when TOKSHIFT_TESTDATA is unset, fail when set but missing.
export function model() {
    const td = process.env.TOKSHIFT_TESTDATA;
    if (!td) {
        console.error("skip: TOKSHIFT_TESTDATA is not set");
        process.exit(77);
    }
    const m = resolve(td, "models", "stories260K.gguf");
    if (!existsSync(m)) {
        console.error(`FAIL: ${m} is missing`);
        process.exit(1);
    }
    return m;
}

export function run(cmd, args, {input, env, allowFail} = {}) {
    const r = spawnSync(cmd, args, {input, encoding: "utf8", maxBuffer: 1 << 30, env: {...process.env, ...env}});
    if (r.status !== 0 && !allowFail) {
        console.error(`FAIL: ${cmd} ${args.join(" ")} exited ${r.status}\n${r.stderr}`);
        process.exit(1);
    }
    return r;
}

export function tempDir(prefix) {
    const d = mkdtempSync(join(tmpdir(), prefix));
    chmodSync(d, 0o755);  // the PostgreSQL server runs as its own user when we are root
    return d;
}

// A private PostgreSQL cluster; returns {conninfo, stop, restart}.
export function startPostgres(dir) {
    const pg = join(ROOT, "deploy", "pg-cluster.sh");
    const data = join(dir, "pg");
    const conninfo = run("bash", [pg, "start", data]).stdout.trim();
    const self = {
        conninfo, data,
        stop: (mode = "fast") => run("bash", [pg, "stop", data, mode], {allowFail: true}),
        start: () => run("bash", [pg, "start", data]).stdout.trim(),
    };
    process.on("exit", () => spawnSync("bash", [pg, "stop", data, "immediate"]));
    return self;
}

export function psql(conninfo, sql) {
    const r = run("psql", ["-X", "-q", "-At", "-F", "\t", "-v", "ON_ERROR_STOP=1", "-c", sql, conninfo]);
    return r.stdout.split("\n").filter(l => l.length).map(l => l.split("\t"));
}

export async function freePort() {
    return new Promise((res, rej) => {
        const s = net.createServer();
        s.listen(0, "127.0.0.1", () => {
            const p = s.address().port;
            s.close(() => res(p));
        });
        s.on("error", rej);
    });
}

// A started process with a promise of its exit.
export function start(cmd, args, logFile) {
    const p = spawn(cmd, args, {stdio: ["ignore", "pipe", "pipe"]});
    let out = "", err = "";
    p.stdout.on("data", d => out += d);
    p.stderr.on("data", d => err += d);
    const exited = new Promise(res => p.on("exit", (code, sig) => {
        if (logFile) writeFileSync(logFile, err);
        res({code, sig, out, err});
    }));
    process.on("exit", () => { try { p.kill("SIGKILL"); } catch {} });
    return {p, exited, out: () => out, err: () => err};
}

export const sleep = ms => new Promise(r => setTimeout(r, ms));

// The test corpus: the first n demo stories, then the awkward cases.
// Returns {dir, files, usable}: usable = number of documents that must be scored.
export function writeCorpus(dir, {nStories = 20, longRepeat = 6} = {}) {
    const demo = readFileSync(join(ROOT, "deploy", "demo", "stories.jsonl"), "utf8").trim().split("\n")
        .slice(0, nStories).map(l => JSON.parse(l));
    const lines = demo.map(d => JSON.stringify({id: d.id, text: d.text, title: d.title}));
    // One longer than the window (scored in several windows).
    lines.push(JSON.stringify({id: "long", text: demo.map(d => d.text).slice(0, longRepeat).join("\n\n"), kind: "long"}));
    lines.push(JSON.stringify({id: "empty", text: ""}));
    lines.push(JSON.stringify({id: "quotes \"'\\\t\n", text: "Tom said, \"Hi!\"\tand\\left.", meta: {"a\"b": "c\\d"}}));
    lines.push('{"id": "broken", "text": "this line is not JSON');
    const jsonl = Buffer.concat([Buffer.from(lines.join("\n") + "\n"),
        // invalid UTF-8 inside a JSON string: recorded with a reason
        Buffer.from('{"id": "bad-utf8", "text": "caf'), Buffer.from([0xc3, 0x28, 0xff]), Buffer.from(' au lait"}\n')]);
    const files = [join(dir, "corpus.jsonl"), join(dir, "extra.txt.gz")];
    writeFileSync(files[0], jsonl);
    writeFileSync(files[1], gzipSync(Buffer.from("A plain text document, gzip-compressed. The dog ran to the park and played with a ball all day.")));
    // stories + long + empty + quotes + gz text = usable (empty is usable: 0 tokens scored)
    return {dir, files, usable: nStories + 4, bad: 2};
}

// Runs a coordinator with nWorkers workers to completion; opts.onStarted(procs)
// may inject faults.  Returns {coord, workers}.
export async function runOnce({conninfo, runName, corpus, modelPath, settings, nWorkers = 2, logDir, onStarted,
                               coordArgs = [], workerArgs = []}) {
    const port = await freePort();
    const endpoint = `tcp://127.0.0.1:${port}`;
    const cargs = ["--run", runName, "--model", modelPath, "--db", conninfo, "--bind", endpoint, "--progress", "1",
                   ...settings, ...coordArgs, ...corpus.files];
    const coord = start(join(BIN, "tokshift-coordinator"), cargs, join(logDir, `${runName}-coord.log`));
    const workers = [];
    const startWorker = i => start(join(BIN, "tokshift-worker"),
        ["--connect", endpoint, "--model", modelPath, "--db", conninfo, "--name", `w${i}`, ...workerArgs],
        join(logDir, `${runName}-w${i}.log`));
    for (let i = 0; i < nWorkers; i++) workers.push(startWorker(i));
    const ctl = {coord, workers, endpoint, startWorker, cargs};
    if (onStarted) await onStarted(ctl);
    const res = await ctl.coord.exited;
    for (const w of ctl.workers) {
        const t = setTimeout(() => w.p.kill("SIGKILL"), 10000);
        await w.exited;
        clearTimeout(t);
    }
    return {...ctl, res};
}

export const tokshift = (args, input) => run(join(BIN, "tokshift"), args, {input}).stdout;

export function cleanup(dir) {
    if (!process.env.TOKSHIFT_KEEP) rmSync(dir, {recursive: true, force: true});
    else console.error(`kept ${dir}`);
}
