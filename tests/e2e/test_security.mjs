// test_security.mjs - ZeroMQ CURVE end to end (issue 5, Security): real
// PostgreSQL, a real coordinator with --curve-secret/--curve-clients, real
// workers on loopback.  Checks:
//   - `tokshift keygen` writes PREFIX.key (0600) and PREFIX.pub (0644), prints
//     the public key, refuses to overwrite; the coordinator and the worker
//     refuse a secret key file readable by group or others (exit 1, before
//     touching the database), and half a key configuration (exit 2);
//   - while a worker with a listed key completes the run, four peers are
//     refused and never handed a job: a worker without keys, a worker with
//     an unlisted key, a worker with a listed key but the wrong server key,
//     and a plain NULL-mechanism client (tests/wire_peer.c) that says HELLO
//     and READY and must hear nothing; the coordinator's log names each
//     refusal (address and key prefix, or the handshake's failure), the
//     refused workers' logs say what to do;
//   - the traffic is encrypted: a TCP relay between the good worker and the
//     coordinator never sees a document's text, while the same relay in a
//     run without CURVE does (that coordinator, serving every interface
//     without CURVE, warns); and the rows are exactly those of that run.
import {createHash} from "node:crypto";
import {copyFileSync, chmodSync, mkdirSync, readFileSync, statSync} from "node:fs";
import net from "node:net";
import {join} from "node:path";
import {BIN, check, cleanup, finish, freePort, model, psql, run, sleep, start, startPostgres, tempDir, tokshift,
        writeCorpus} from "./harness.mjs";

const M = model();
const identity = createHash("sha256").update(readFileSync(M)).digest("hex");
const dir = tempDir("tokshift-security-");
const pg = startPostgres(dir);
const db = pg.conninfo;
tokshift(["db", "migrate", "--db", db]);
const corpus = writeCorpus(dir, {nStories: 8, longRepeat: 2});
const MARKER = "gzip-compressed"; // in a document's text (extra.txt.gz), so in a JOB's bytes
const settings = ["--window", "64", "--stride", "32", "--prefix-lengths", "8", "--cont-len", "8", "--samples", "2",
                  "--seed", "11", "--job-docs", "2", "--heartbeat", "200", "--liveness", "10"];
const COORD = join(BIN, "tokshift-coordinator"), WORKER = join(BIN, "tokshift-worker");
const PEER = join(BIN, "tests", "wire_peer");

// ---- keygen --------------------------------------------------------------
const keys = join(dir, "keys"), clients = join(keys, "clients");
mkdirSync(clients, {recursive: true, mode: 0o755});
const keygen = name => {
    const r = run(join(BIN, "tokshift"), ["keygen", "--out", join(keys, name)], {allowFail: true});
    check(r.status === 0, `keygen ${name}: exit ${r.status}: ${r.stderr}`);
    return r.stdout.trim();
};
const pubs = {};
for (const name of ["coord", "good", "bad"]) pubs[name] = keygen(name);
for (const name of ["coord", "good", "bad"]) {
    const key = join(keys, `${name}.key`), pub = join(keys, `${name}.pub`);
    check((statSync(key).mode & 0o777) === 0o600, `${name}.key is mode 0600 (${(statSync(key).mode & 0o777).toString(8)})`);
    check((statSync(pub).mode & 0o777) === 0o644, `${name}.pub is mode 0644`);
    const line = readFileSync(pub, "utf8").split("\n").find(l => l && !l.startsWith("#"));
    check(line === `${pubs[name]} ${name}`, `${name}.pub holds the printed key and its name: '${line}'`);
    check(/^[0-9a-zA-Z.\-:+=^!/*?&<>()[\]{}@%$#]{40}$/.test(pubs[name]), `a 40-character Z85 key: ${pubs[name]}`);
}
const before = readFileSync(join(keys, "good.key"));
const again = run(join(BIN, "tokshift"), ["keygen", "--out", join(keys, "good")], {allowFail: true});
check(again.status === 1 && /exists: refusing to overwrite/.test(again.stderr), `keygen refuses to overwrite: ${again.stderr}`);
check(readFileSync(join(keys, "good.key")).equals(before), "good.key unchanged");
copyFileSync(join(keys, "good.pub"), join(clients, "good.pub")); // only the good worker is allowed

// ---- refused key files and half configurations -----------------------------
const port0 = await freePort();
const loose = join(keys, "loose.key");
copyFileSync(join(keys, "coord.key"), loose);
chmodSync(loose, 0o644);
let r = run(COORD, ["--run", "x", "--model", M, "--db", "host=127.0.0.1 port=1", "--bind", `tcp://127.0.0.1:${port0}`,
                    "--curve-secret", loose, "--curve-clients", clients, corpus.files[0]], {allowFail: true});
check(r.status === 1 && /permissions 0644 .* too open/.test(r.stderr) && /chmod 600/.test(r.stderr) &&
      !/PostgreSQL/.test(r.stderr), `coordinator refuses a 0644 secret key before the database: ${r.stderr}`);
chmodSync(loose, 0o640);
r = run(WORKER, ["--connect", `tcp://127.0.0.1:${port0}`, "--model", M, "--curve-secret", loose,
                 "--curve-server-key", join(keys, "coord.pub")], {allowFail: true});
check(r.status === 1 && /permissions 0640 .* too open/.test(r.stderr), `worker refuses a 0640 secret key: ${r.stderr}`);
r = run(COORD, ["--run", "x", "--model", M, "--curve-secret", join(keys, "coord.key"), corpus.files[0]], {allowFail: true});
check(r.status === 2 && /go together/.test(r.stderr), `--curve-secret without --curve-clients: exit ${r.status}`);
r = run(WORKER, ["--connect", `tcp://127.0.0.1:${port0}`, "--model", M, "--curve-secret", join(keys, "good.key")],
        {allowFail: true});
check(r.status === 2 && /go together/.test(r.stderr), `worker --curve-secret without --curve-server-key: exit ${r.status}`);
r = run(COORD, ["--run", "x", "--model", M, "--db", "host=127.0.0.1 port=1", "--curve-secret", join(keys, "coord.key"),
                "--curve-clients", join(keys, "nothing"), corpus.files[0]], {allowFail: true});
check(r.status === 1 && /nothing/.test(r.stderr), `a missing --curve-clients is refused: ${r.stderr}`);

// ---- a TCP relay that records every byte ----------------------------------------
function relay(targetPort) {
    return new Promise(res => {
        const chunks = [];
        const srv = net.createServer(c => {
            const u = net.connect(targetPort, "127.0.0.1");
            c.on("data", d => { chunks.push(d); u.write(d); });
            u.on("data", d => { chunks.push(d); c.write(d); });
            c.on("close", () => u.destroy());
            u.on("close", () => c.destroy());
            c.on("error", () => {});
            u.on("error", () => {});
        });
        srv.listen(0, "127.0.0.1", () => res({port: srv.address().port, bytes: () => Buffer.concat(chunks),
                                                 close: () => srv.close()}));
    });
}
const waitExit = async (proc, ms) => {
    const t = setTimeout(() => proc.p.kill("SIGKILL"), ms);
    const e = await proc.exited;
    clearTimeout(t);
    return e;
};

// ---- the plain run (reference, and proof that the relay sees plaintext) -----
let port = await freePort();
let rl = await relay(port);
let coord = start(COORD, ["--run", "plain", "--model", M, "--db", db, "--bind", `tcp://*:${port}`,
                          "--progress", "1", ...settings, ...corpus.files], join(dir, "plain-coord.log"));
await sleep(300);
let w = start(WORKER, ["--connect", `tcp://127.0.0.1:${rl.port}`, "--model", M, "--db", db, "--name", "plain"],
              join(dir, "plain-w.log"));
let res = await waitExit(coord, 300000);
check(res.code === 0, `plain run: coordinator exited ${res.code}: ${res.err.slice(-1500)}`);
const plainW = await waitExit(w, 10000);
rl.close();
const plainBytes = rl.bytes();
check(plainBytes.includes(MARKER), `without CURVE the relay sees document text (${plainBytes.length} bytes)`);
check(/serving tcp:\/\/\*:\d+ without CURVE: anyone who reaches this address can take jobs/.test(res.err),
      "serving every interface without CURVE gives a warning");
check(!/without CURVE/.test(plainW.err), "a worker on loopback is not warned");

// ---- the CURVE run, with refused peers ---------------------------------------------
port = await freePort();
rl = await relay(port);
const ep = `tcp://127.0.0.1:${port}`;
coord = start(COORD, ["--run", "secure", "--model", M, "--db", db, "--bind", ep, "--progress", "1",
                      "--curve-secret", join(keys, "coord.key"), "--curve-clients", clients, ...settings, ...corpus.files],
              join(dir, "secure-coord.log"));
await sleep(300);
const refusedWorkers = {
    nokey: [],
    wrongkey: ["--curve-secret", join(keys, "bad.key"), "--curve-server-key", join(keys, "coord.pub")],
    wrongserver: ["--curve-secret", join(keys, "good.key"), "--curve-server-key", join(keys, "bad.pub")],
};
const bad = {};
for (const [name, args] of Object.entries(refusedWorkers))
    bad[name] = start(WORKER, ["--connect", ep, "--model", M, "--db", db, "--name", name, ...args], join(dir, `${name}.log`));
const nullClient = start(PEER, ["hello", ep, identity, "6"], join(dir, "null-client.log"));
// The refused peers knock before the good worker comes, and the run must not
// end before the coordinator has seen them: wait until it has logged each
// kind of refusal checked below (the NULL-mechanism peers connect once each,
// whenever their processes get to it), not a fixed time, which a loaded
// machine outlasted (up to 120 s; a refusal never logged fails below).
for (const t0 = Date.now(); Date.now() - t0 < 120000; await sleep(100))
    if ([/security mechanism mismatch/, /is not in --curve-clients/, /CURVE handshake failed \(cryptographic error/]
        .every(re => re.test(coord.err()))) break;
w = start(WORKER, ["--connect", `tcp://127.0.0.1:${rl.port}`, "--model", M, "--db", db, "--name", "good",
                   "--curve-secret", join(keys, "good.key"), "--curve-server-key", join(keys, "coord.pub")],
          join(dir, "good.log"));
res = await waitExit(coord, 300000);
check(res.code === 0, `secure run: coordinator exited ${res.code}: ${res.err.slice(-2000)}`);
const good = await waitExit(w, 10000);
check(good.code === 0, `the good worker exited ${good.code}`);
const nc = await waitExit(nullClient, 20000);
check(nc.code === 0, `the NULL-mechanism client heard nothing: ${nc.err.trim()}`);
for (const p of Object.values(bad)) p.p.kill("SIGTERM");
const badRes = {};
for (const [name, p] of Object.entries(bad)) badRes[name] = await waitExit(p, 10000);
rl.close();
const secureBytes = rl.bytes();
check(secureBytes.length > 10000 && !secureBytes.includes(MARKER),
      `with CURVE the relay sees no document text (${secureBytes.length} bytes)`);

const clog = res.err;
const secureId = psql(db, "SELECT run_id FROM runs WHERE name = 'secure'")[0][0];
const plainId = psql(db, "SELECT run_id FROM runs WHERE name = 'plain'")[0][0];
const [[jobs, done, workers]] = psql(db, `SELECT count(*), count(*) FILTER (WHERE state = 'done'),
    string_agg(DISTINCT worker, ',') FROM jobs WHERE run_id = ${secureId}`);
check(jobs === done && workers === "good", `secure run: ${done}/${jobs} jobs done, all by '${workers}'`);
const joined = [...clog.matchAll(/worker (\S+) joined/g)].map(m => m[1]);
check(joined.length >= 1 && joined.every(n => n === "good"), `only 'good' joined: ${joined.join(", ")}`);
for (const [name, rr] of Object.entries(badRes)) {
    check(!/joined run/.test(rr.err), `worker ${name} never joined a run`);
    check(rr.code === 0, `worker ${name} stopped by SIGTERM, exit ${rr.code}`);
}
check(/CURVE: server key .*, 1 worker keys allowed/.test(clog), "the coordinator says it serves CURVE");
check(clog.includes(`accepted worker key 'good' (${pubs.good.slice(0, 8)}...) from 127.0.0.1`), "the good key accepted");
check(clog.includes(`refused a worker at 127.0.0.1: CURVE key ${pubs.bad.slice(0, 8)}... is not in --curve-clients`),
      "the unlisted key's refusal names its address and key prefix");
check(/refused a peer connecting to tcp:\/\/127\.0\.0\.1:\d+: security mechanism mismatch/.test(clog),
      "the NULL-mechanism peers' refusal is logged");
check(/refused a peer connecting to tcp:\/\/127\.0\.0\.1:\d+: CURVE handshake failed \(cryptographic error/.test(clog),
      "the wrong-server-key peer's refusal is logged");
check(/CURVE: \d+ connections accepted, [1-9]\d* refused by key, [1-9]\d* failed handshakes/.test(clog), "refusals counted");
check(/failed: authentication refused \(ZAP status 400\).*add this worker's public key/.test(badRes.wrongkey.err),
      `the unlisted worker is told why: ${badRes.wrongkey.err.slice(-600)}`);
check(/handshake with the coordinator at .* failed: .*give --curve-secret and --curve-server-key/.test(badRes.nokey.err),
      `the keyless worker is told why: ${badRes.nokey.err.slice(-600)}`);
const refusals = (clog.match(/refused a (worker|peer)/g) || []).length;
console.error(`secure run: ${done} jobs done by 'good'; ${refusals} refusal lines in the coordinator's log ` +
              `(${(clog.match(/\n/g) || []).length} lines in all); relay saw ${secureBytes.length} encrypted bytes`);
check(refusals < 200, `refusal logs are rate-limited: ${refusals} lines`);
for (const k of ["coord", "good", "bad"]) {
    const secret = readFileSync(join(keys, `${k}.key`), "utf8").split("\n").find(l => l && !l.startsWith("#"));
    for (const [what, text] of [["coordinator", clog], ["good worker", good.err], ...Object.entries(badRes).map(([n, x]) => [n, x.err])])
        check(!text.includes(secret), `no secret key (${k}) in the ${what}'s log`);
}

// Same rows as the plain run.
const cols = "doc_id, seq_no, pos, token_id, logprob, entropy, rank, top1_logprob, varentropy, context_len";
for (const [x, y] of [[plainId, secureId], [secureId, plainId]]) {
    const [[n]] = psql(db, `SELECT count(*) FROM (SELECT ${cols} FROM token_view WHERE run_id = ${x}
                            EXCEPT ALL SELECT ${cols} FROM token_view WHERE run_id = ${y}) d`);
    check(n === "0", `${n} token rows of run ${x} are not in run ${y}`);
}
const [[rows]] = psql(db, `SELECT count(*) FROM token_view WHERE run_id = ${secureId}`);
check(Number(rows) > 1000, `the secure run wrote ${rows} token rows, equal to the plain run's`);

pg.stop();
cleanup(dir);
finish("test_security");
