// test_template_run.mjs - chat templates (--template FILE; issue 11 item 5): an
// instruction-tuned model reads each document through its chat format.
// Real PostgreSQL, a real coordinator and worker, the demo model, whose
// SentencePiece vocabulary has the control tokens <s> and </s>.
//   rows      a run with a template: the template's tokens are never rows
//             (each document's human rows are its own tokens, pos for pos,
//             exactly those of the same run without a template), its
//             human rows' statistics equal `tokshift score --template FILE`
//             of the stored text to the bit (fp32 rounding of the printed
//             double), and `tokshift score --run` takes the template from
//             the run; without the template most log-probabilities differ;
//             `tokshift regenerate` reproduces every sequence of a document
//             (human, continuations, samples) from the stored settings,
//             and `tokshift generate --template` (or --run) a sample from
//             its prefix and seed
//   settings  the template's text is in runs.settings; a run without one
//             has no such key (its JSON is as before templates)
//   missing   a template naming a special token the vocabulary lacks is
//             refused, naming it: by `tokshift score`, and by the worker
//             (exit 3, nothing written; the coordinator has no vocabulary)
//   resume    the run started again with another template, or none, is
//             refused, naming the key
//   old       a worker whose HELLO does not say it reads templates (a
//             version before them would ignore it) is refused
import {createHash} from "node:crypto";
import {readFileSync, writeFileSync} from "node:fs";
import {join} from "node:path";
import {BIN, check, cleanup, finish, freePort, model, psql, run, runOnce, start, startPostgres, tempDir, tokshift,
        writeCorpus} from "./harness.mjs";

const M = model();
const dir = tempDir("tokshift-template-run-");
const pg = startPostgres(dir);
const db = pg.conninfo;
tokshift(["db", "migrate", "--db", db]);

// The model's own BOS first (no second one is added), a turn ended by </s>,
// then the document as the reply, after <s>.
const TPL = join(dir, "chat.tpl"), TPL2 = join(dir, "other.tpl"), BAD = join(dir, "bad.tpl");
const tplText = "<s>Tom asked Lily for a story.</s><s>{document}</s>\n";
writeFileSync(TPL, tplText);
writeFileSync(TPL2, "<s>Lily said: {document}</s>\n");
writeFileSync(BAD, "<|im_start|>assistant\n{document}<|im_end|>\n");

const settings = ["--window", "64", "--stride", "32", "--prefix-lengths", "4,12", "--cont-len", "8", "--samples", "3",
                  "--seed", "7", "--job-docs", "4"];
const corpus = writeCorpus(dir, {nStories: 6, longRepeat: 3});
async function runOk(name, extra) {
    const r = await runOnce({conninfo: db, runName: name, logDir: dir, nWorkers: 1, corpus, modelPath: M, settings,
                             coordArgs: ["--heartbeat", "200", ...extra]});
    check(r.res.code === 0, `${name}: coordinator exited ${r.res.code}: ${r.res.err.slice(-2000)}`);
    for (const w of r.workers) {
        const e = await w.exited;
        check(e.code === 0, `${name}: worker exited ${e.code} (${e.sig}): ${e.err.slice(-2000)}`);
    }
    return Number(psql(db, `SELECT run_id FROM runs WHERE name = '${name}'`)[0][0]);
}
const tpl = await runOk("tpl", ["--template", TPL]);
const plain = await runOk("plain", []);

// ---- settings ----
{
    const [[t]] = psql(db, `SELECT settings->'template' FROM runs WHERE run_id = ${tpl}`);
    check(JSON.parse(t) === tplText, `settings: the template's text is stored (${t})`);
    const [[hasPlain]] = psql(db, `SELECT settings ? 'template' FROM runs WHERE run_id = ${plain}`);
    check(hasPlain === "f", "settings: a run without a template has no template key");
}

// ---- rows ----
// (extra_float_digits 3: each float4 printed so that Math.fround of the
// parsed text is the stored float4 exactly)
const humanRows = q => psql(db, `SET extra_float_digits = 3; SELECT doc_id, pos, token_id, context_len, logprob, entropy,
    rank, top1_logprob, varentropy FROM token_view WHERE run_id = ${q} AND kind = 'human' ORDER BY doc_id, pos`);
const rowsT = humanRows(tpl), rowsP = humanRows(plain);
const key = r => r.slice(0, 4).join(",");
check(rowsT.length > 500 && rowsT.length === rowsP.length && rowsT.every((r, i) => key(r) === key(rowsP[i])),
      `rows: the template run's human rows are the document's tokens, pos and context_len as without it ` +
      `(${rowsT.length} vs ${rowsP.length} rows)`);
{
    // Every measured document's human rows: its ids but the first (documents.n_tokens counts BOS).
    const [[nDocs, bad]] = psql(db, `SELECT count(*), count(*) FILTER (WHERE coalesce(s.n, 0) <> greatest(d.n_tokens - 1, 0))
        FROM documents d LEFT JOIN (SELECT doc_id, cardinality(token_id) AS n FROM sequence_stats
        WHERE run_id = ${tpl} AND kind = 'human') s USING (doc_id) WHERE d.run_id = ${tpl} AND d.error IS NULL`);
    check(Number(nDocs) === corpus.usable && bad === "0",
          `rows: ${nDocs} documents, each with n_tokens - 1 human rows (${bad} not)`);
}
const nDiff = rowsT.filter((r, i) => r[4] !== rowsP[i][4]).length;
check(nDiff > 0.9 * rowsT.length, `rows: the template changes the log-probabilities (${nDiff} of ${rowsT.length} differ)`);

// `tokshift score` of each stored text, with the template and the run's window.
const texts = psql(db, `SELECT doc_id, translate(encode(convert_to(text, 'UTF8'), 'base64'), E'\n', '') FROM documents
    WHERE run_id = ${tpl} AND error IS NULL ORDER BY doc_id`);
const byDoc = new Map();
for (const r of rowsT) {
    if (!byDoc.has(r[0])) byDoc.set(r[0], []);
    byDoc.get(r[0]).push(r);
}
let compared = 0, mismatched = 0, runSame = 0, withoutSame = 0;
for (const [doc, b64] of texts) {
    const text = Buffer.from(b64, "base64");
    const mine = JSON.parse(tokshift(["score", "--model", M, "--window", "64", "--stride", "32", "--template", TPL,
                                      "--format", "json"], text));
    const fromRun = tokshift(["score", "--model", M, "--run", "tpl", "--db", db, "--format", "json"], text);
    runSame += JSON.stringify(JSON.parse(fromRun)) === JSON.stringify(mine);
    const without = JSON.parse(tokshift(["score", "--model", M, "--window", "64", "--stride", "32", "--format", "json"],
                                        text));
    const stored = byDoc.get(doc) || [];
    for (let i = 0; i < Math.max(stored.length, mine.length); i++) {
        const s = stored[i], m = mine[i];
        compared++;
        const same = s && m && Number(s[1]) === m.pos && Number(s[2]) === m.token_id && Number(s[3]) === m.context_len &&
            Math.fround(Number(s[4])) === Math.fround(m.logprob) && Math.fround(Number(s[5])) === Math.fround(m.entropy) &&
            Number(s[6]) === m.rank && Math.fround(Number(s[7])) === Math.fround(m.top1_logprob) &&
            Math.fround(Number(s[8])) === Math.fround(m.varentropy);
        if (!same && mismatched++ < 5)
            console.error(`doc ${doc} row ${i}: stored ${JSON.stringify(s)} vs score ${JSON.stringify(m)}`);
    }
    withoutSame += without.length > 0 && without.every((r, i) => Math.fround(r.logprob) === Math.fround(mine[i].logprob));
}
check(compared === rowsT.length && mismatched === 0,
      `rows: the stored human rows are \`tokshift score --template\`'s (${mismatched} of ${compared} differ)`);
check(runSame === texts.length, `rows: \`tokshift score --run\` takes the run's template (${runSame} of ${texts.length})`);
check(withoutSame === 0, `rows: without the template, score differs (${withoutSame} documents the same)`);

// regenerate: every sequence of the long document (several windows) and
// of a short one, from the stored settings alone.
for (const ext of ["long", psql(db, `SELECT ext_id FROM documents WHERE run_id = ${tpl} AND doc_id = 0`)[0][0]]) {
    const [[doc]] = psql(db, `SELECT doc_id FROM documents WHERE run_id = ${tpl} AND ext_id = '${ext}'`);
    const r = run(join(BIN, "tokshift"), ["regenerate", "--model", M, "--db", db, "tpl", doc], {allowFail: true});
    const nSeq = (r.stdout.match(/^# run/mg) || []).length;
    check(r.status === 0 && nSeq > 3, `rows: regenerate reproduces document ${ext}'s ${nSeq} sequences (exit ${r.status}): ` +
          r.stderr.slice(-600));
}

// generate: a stored sample from its prefix and seed, the template's context
// first (--template, or --run's).  The template ends with <s>, the model's
// BOS, so a document's ids are `tokenize --bos`'s.
{
    const [[doc, cut, seed, toks]] = psql(db, `SELECT s.doc_id, s.cut, s.seed, array_to_string(s.token_id, ' ')
        FROM sequence_stats s WHERE run_id = ${tpl} AND kind = 'sample' ORDER BY doc_id, seq_no LIMIT 1`);
    const [[b64]] = psql(db, `SELECT translate(encode(convert_to(text, 'UTF8'), 'base64'), E'\n', '') FROM documents
        WHERE run_id = ${tpl} AND doc_id = ${doc}`);
    const ids = tokshift(["tokenize", "--model", M, "--bos"], Buffer.from(b64, "base64")).trim().split(" ");
    const prefix = ids.slice(0, Number(cut)).join(" ");
    // The cuts are <= W - C (64 - 8): the prefix is window 0's (experiment.h).
    const gen = extra => tokshift(["generate", "--model", M, "-n", "8", "--prompt-ids", prefix, "--seed", seed,
                                   "--print-ids", "--first-window", String(Math.min(64, ids.length)), ...extra]).trim();
    check(gen(["--template", TPL, "--temperature", "1"]) === toks,
          `generate --template regenerates sample (doc ${doc}, cut ${cut}): ${toks}`);
    check(gen(["--run", "tpl", "--db", db]) === toks, "generate --run takes the run's template");
    check(gen(["--temperature", "1"]) !== toks, "generate without the template draws another sample");
}

// ---- missing: a special token the vocabulary lacks ----
{
    const r = run(join(BIN, "tokshift"), ["score", "--model", M, "--template", BAD], {input: "Hi.", allowFail: true});
    check(r.status !== 0 && r.stderr.includes("'<|im_start|>' is not a special token"),
          `missing: score refuses it, naming the token (exit ${r.status}): ${r.stderr.trim()}`);
    const port = await freePort();
    const ep = `tcp://127.0.0.1:${port}`;
    const coord = start(join(BIN, "tokshift-coordinator"), ["--run", "bad", "--model", M, "--db", db, "--bind", ep,
                        "--template", BAD, ...settings, ...corpus.files], join(dir, "bad-coord.log"));
    const w = run(join(BIN, "tokshift-worker"), ["--connect", ep, "--model", M, "--db", db], {allowFail: true});
    coord.p.kill("SIGTERM");
    await coord.exited;
    check(w.status === 3 && w.stderr.includes("'<|im_start|>' is not a special token"),
          `missing: the worker refuses the run (exit ${w.status}): ${w.stderr.trim().split("\n").pop()}`);
    const [[rows]] = psql(db, `SELECT count(*) FROM sequence_stats s JOIN runs r USING (run_id) WHERE r.name = 'bad'`);
    check(rows === "0", `missing: nothing written (${rows} sequences)`);
}

// ---- resume: another template, or none ----
for (const extra of [["--template", TPL2], []]) {
    const r = run(join(BIN, "tokshift-coordinator"), ["--run", "tpl", "--model", M, "--db", db, "--bind",
                  `tcp://127.0.0.1:${await freePort()}`, ...settings, ...extra, ...corpus.files], {allowFail: true});
    check(r.status !== 0 && /other settings: template: .*\(registered\) vs .*\(given\)/.test(r.stderr),
          `resume: ${extra.length ? "another template" : "no template"} is refused naming the key (exit ${r.status}): ` +
          r.stderr.trim().split("\n").pop());
}

// ---- old: a worker that does not say it reads templates ----
{
    const port = await freePort();
    const ep = `tcp://127.0.0.1:${port}`;
    const coord = start(join(BIN, "tokshift-coordinator"), ["--run", "old-worker", "--model", M, "--db", db, "--bind", ep,
                        "--template", TPL, ...settings, ...corpus.files], join(dir, "old-worker-coord.log"));
    const identity = createHash("sha256").update(readFileSync(M)).digest("hex");
    // wire_peer's HELLO has the run's model but no `templates`.
    run(join(BIN, "tests", "wire_peer"), ["hello", ep, identity, "3"], {allowFail: true});
    coord.p.kill("SIGTERM");
    const e = await coord.exited;
    check(/would ignore/.test(e.err), `old: refused by the coordinator: ${e.err.slice(-600)}`);
}

cleanup(dir);
finish("test_template_run");
