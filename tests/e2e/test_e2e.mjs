// test_e2e.mjs - a whole run, end to end: a real PostgreSQL, a coordinator
// and two workers over loopback, the shared model, and a corpus with the
// awkward cases (a document longer than the window, an empty one, quotes and
// tabs in ids and metadata, invalid UTF-8, a malformed JSONL line, a gzipped
// text file).  Checks (issue 3, done-when 1 and 2):
//   - every document's human rows are exactly `tokshift score`'s rows for the
//     same text (positions, tokens, ranks, context lengths identical; the
//     statistics identical at the stored float4 precision);
//   - sample sequences per document = cuts x K, human continuations = cuts;
//   - every stored sequence (human, continuations, samples, seeds with the
//     top bit set among them) regenerates from the database and the model
//     with `tokshift regenerate`, rows equal to the stored ones; a tampered
//     row is caught; `tokshift generate --seed` takes a stored (negative)
//     seed as the bigint holds it; `tokshift score --run` uses the run's
//     window and stride;
//   - no (sequence, position) twice; ids, metadata and text round-trip;
//   - the malformed line and the invalid document are recorded with reasons;
//   - the law of DESIGN.md section 1: over >= 5,000 sampled tokens at tau = 1,
//     the mean gap of the model's own samples is within 4 standard errors of
//     zero, overall and in every position bucket; with a new seed every run,
//     a false alarm has probability ~6e-5 per check.  The standard error is
//     the token-level one from the rollups' sums, not the views' clustered
//     one: at tau = 1 each token's gap has mean 0 given everything before it
//     (a martingale difference), so gaps are uncorrelated even within a
//     document and the token-level variance is the right one; the clustered
//     error, estimated from ~20 documents, is itself noisy enough (Student t
//     with ~19 degrees of freedom) to make a 4-se check fail ~10x as often.
import {join} from "node:path";
import {BIN, check, cleanup, finish, model, psql, run, runOnce, startPostgres, tempDir, tokshift, writeCorpus} from "./harness.mjs";
import {rollupsDisagree} from "./faultlib.mjs";

const M = model();
const dir = tempDir("tokshift-e2e-");
const pg = startPostgres(dir);
const db = pg.conninfo;
tokshift(["db", "migrate", "--db", db]);

const W = 64, S = 32, C = 16, K = 8, CUTS = [4, 12, 20];
// A fresh run seed each time (printed; TOKSHIFT_TEST_SEED replays one): the
// law below is tested as a statistic, not on a seed that happens to pass.
const seed = process.env.TOKSHIFT_TEST_SEED || String(Date.now() % 1000000007);
console.error(`run seed ${seed} (set TOKSHIFT_TEST_SEED to replay)`);
const settings = ["--window", W, "--stride", S, "--prefix-lengths", CUTS.join(","), "--cont-len", C,
                  "--samples", K, "--temperature", "1", "--seed", seed, "--job-docs", "3"].map(String);
const corpus = writeCorpus(dir);
const {res, workers} = await runOnce({conninfo: db, runName: "e2e", corpus, modelPath: M, settings, logDir: dir});
check(res.code === 0, `coordinator exited ${res.code}: ${res.err.slice(-2000)}`);
for (const [i, w] of workers.entries()) {
    const r = await w.exited;  // a sanitizer report makes a worker exit non-zero
    check(r.code === 0, `worker ${i} exited ${r.code} (${r.sig}): ${r.err.slice(-2000)}`);
}
console.error(res.out);
const runId = psql(db, "SELECT run_id FROM runs WHERE name = 'e2e'")[0][0];

// The run completed; every usable document was measured.
const [[status, jobs, done, failed]] = psql(db, `SELECT r.status, count(*), count(*) FILTER (WHERE j.state = 'done'),
    count(*) FILTER (WHERE j.state = 'failed') FROM runs r JOIN jobs j USING (run_id) WHERE run_id = ${runId} GROUP BY r.status`);
check(status === "done" && jobs === done && failed === "0", `run status ${status}, jobs ${done}/${jobs} done, ${failed} failed`);
const docs = psql(db, `SELECT doc_id, to_json(ext_id), coalesce(to_json(error)::text, ''), n_tokens, text IS NULL FROM documents
                       WHERE run_id = ${runId} ORDER BY doc_id`);
const bad = docs.filter(d => d[2] !== "");
check(bad.length === corpus.bad, `documents with an error: ${bad.length}, expected ${corpus.bad}: ${JSON.stringify(bad)}`);
check(bad.some(d => /malformed JSON/i.test(d[2])), `malformed line recorded with a reason: ${JSON.stringify(bad)}`);
check(bad.some(d => /invalid UTF-8/i.test(d[2])), `invalid UTF-8 recorded with a reason: ${JSON.stringify(bad)}`);
const good = docs.filter(d => d[2] === "");
check(good.length === corpus.usable, `usable documents ${good.length}, expected ${corpus.usable}`);
check(good.every(d => d[3] !== ""), "every usable document has n_tokens");

// Ids and metadata with quotes, backslashes, tabs and newlines round-trip exactly.
const [[qid, qmeta, qtext]] = psql(db, `SELECT to_json(ext_id), metadata::text, to_json(text) FROM documents
                                        WHERE run_id = ${runId} AND ext_id LIKE 'quotes%'`);
check(JSON.parse(qid) === "quotes \"'\\\t\n", `id round trip: ${qid}`);
check(JSON.parse(qmeta).meta["a\"b"] === "c\\d", `metadata round trip: ${qmeta}`);
check(JSON.parse(qtext) === "Tom said, \"Hi!\"\tand\\left.", `text round trip: ${qtext}`);

// Human rows are exactly `tokshift score`'s rows.
let compared = 0, mismatches = 0;
const f32 = Math.fround;
for (const [docId] of good) {
    const [[textJson]] = psql(db, `SELECT to_json(text) FROM documents WHERE run_id = ${runId} AND doc_id = ${docId}`);
    const text = JSON.parse(textJson);
    // --run: the window and stride come from the run's settings (W, S here).
    const ours = JSON.parse(tokshift(["score", "--model", M, "--format", "json", "--run", "e2e", "--db", db], text));
    const rows = psql(db, `SET extra_float_digits = 3; SELECT pos, token_id, logprob::float8, entropy::float8, rank,
        top1_logprob::float8, varentropy::float8, context_len FROM token_view
        WHERE run_id = ${runId} AND doc_id = ${docId} AND seq_no = 0 ORDER BY pos`);
    if (!check(rows.length === ours.length, `doc ${docId}: ${rows.length} human rows in the database, score gives ${ours.length}`)) continue;
    for (let i = 0; i < rows.length; i++) {
        const r = rows[i].map(Number), o = ours[i];
        const same = r[0] === o.pos && r[1] === o.token_id && r[2] === f32(o.logprob) && r[3] === f32(o.entropy) &&
            r[4] === o.rank && r[5] === f32(o.top1_logprob) && r[6] === f32(o.varentropy) && r[7] === o.context_len;
        compared++;
        if (!same && mismatches++ < 5) console.error(`doc ${docId} row ${i}: db ${rows[i].join(" ")} vs score ${JSON.stringify(o)}`);
    }
}
check(compared > 1000 && mismatches === 0, `human rows vs tokshift score: ${mismatches} of ${compared} differ`);
const longRows = psql(db, `SELECT max(t.context_len), count(*) FROM token_view t JOIN documents d USING (run_id, doc_id)
    WHERE t.run_id = ${runId} AND d.ext_id = 'long' AND seq_no = 0`)[0].map(Number);
check(longRows[1] > 3 * W && longRows[0] < W, `the long document was scored in windows (${longRows[1]} rows, max context ${longRows[0]})`);

// Sequences per document: cuts x K samples and one human continuation per cut.
const seqs = psql(db, `SELECT d.doc_id, d.n_tokens, count(*) FILTER (WHERE s.kind = 'sample'),
    count(*) FILTER (WHERE s.kind = 'human_cont'), count(*) FILTER (WHERE s.kind = 'human')
    FROM documents d LEFT JOIN sequences s USING (run_id, doc_id) WHERE d.run_id = ${runId} AND d.error IS NULL
    GROUP BY d.doc_id, d.n_tokens`);
for (const [docId, n, samples, hconts, humans] of seqs.map(r => r.map(Number))) {
    const cuts = CUTS.filter(c => c + C <= n).length;
    check(samples === cuts * K && hconts === cuts && humans === 1,
          `doc ${docId} (${n} tokens): ${samples} samples, ${hconts} human continuations, expected ${cuts * K} and ${cuts}`);
}

// No (sequence, position) twice.
const [[rowsAll, distinct]] = psql(db, `SELECT count(*), count(DISTINCT (doc_id, seq_no, pos)) FROM token_view WHERE run_id = ${runId}`);
check(rowsAll === distinct, `token rows ${rowsAll}, distinct (sequence, position) ${distinct}`);

// Every stored sequence (human text, human continuations, samples)
// regenerates from the database and the model (`tokshift regenerate`: the
// run's settings, the text, the seeds), rows equal to the stored ones.
const [[nSamples, nTopBit]] = psql(db, `SELECT count(*), count(*) FILTER (WHERE seed < 0) FROM sequences
    WHERE run_id = ${runId} AND kind = 'sample'`).map(r => r.map(Number));
let regenSeqs = 0;
for (const [docId] of good) {
    const r = run(join(BIN, "tokshift"), ["regenerate", "--model", M, "--db", db, "e2e", String(docId)], {allowFail: true});
    regenSeqs += (r.stdout.match(/^# run /gm) || []).length;
    check(r.status === 0, `regenerate e2e ${docId} exited ${r.status}: ${r.stderr.slice(-1500)}`);
}
const [[nSeqs]] = psql(db, `SELECT count(*) FROM sequences s JOIN documents d USING (run_id, doc_id)
    WHERE s.run_id = ${runId} AND d.error IS NULL`).map(r => r.map(Number));
console.error(`regenerate: ${regenSeqs} of ${nSeqs} sequences, ${nSamples} samples, ${nTopBit} seeds with the top bit set`);
check(regenSeqs === nSeqs && nTopBit > 0, `regenerated ${regenSeqs} of ${nSeqs} sequences (${nSamples} samples, ` +
      `${nTopBit} with the seed's top bit set)`);
// A stored seed, negative as the bigint holds it, is what `generate --seed` takes.
const [[gDoc, gSeq, gCut, gSeed]] = psql(db, `SELECT doc_id, seq_no, cut, seed FROM sequences
    WHERE run_id = ${runId} AND kind = 'sample' AND seed < 0 ORDER BY doc_id, seq_no LIMIT 1`);
{
    const [[textJson]] = psql(db, `SELECT to_json(text) FROM documents WHERE run_id = ${runId} AND doc_id = ${gDoc}`);
    const ids = tokshift(["tokenize", "--model", M, "--bos"], JSON.parse(textJson)).trim().split(" ");
    const P = Math.min(Number(gCut), W - C);
    const prefix = ids.slice(Number(gCut) - P, Number(gCut)).join(" ");
    // --run: the run's sampling settings (temperature 1 here)
    // A cut <= W - C continues window 0 of the document (experiment.h).
    const w0 = Number(gCut) <= W - C ? ["--first-window", String(Math.min(W, ids.length))] : [];
    const regen = tokshift(["generate", "--model", M, "--prompt-ids", prefix, "--seed", gSeed, "-n", String(C),
                            "--run", "e2e", "--db", db, "--print-ids", ...w0]).trim();
    const stored = psql(db, `SELECT string_agg(token_id::text, ' ' ORDER BY pos) FROM token_view
                             WHERE run_id = ${runId} AND doc_id = ${gDoc} AND seq_no = ${gSeq}`)[0][0];
    check(regen === stored, `generate --seed ${gSeed} (doc ${gDoc} seq ${gSeq}): ${regen} vs stored ${stored}`);
}

// The law: samples at tau = 1 have mean gap 0 (4 standard errors), overall and per bucket.
const [[n, mean, se]] = psql(db, `SELECT sum(n), sum(sum_gap) / sum(n),
    sqrt((sum(sumsq_gap) / sum(n) - (sum(sum_gap) / sum(n)) ^ 2) / (sum(n) - 1))
    FROM job_rollups WHERE run_id = ${runId} AND kind = 'sample'`).map(r => r.map(Number));
console.error(`model samples: n = ${n}, mean gap ${mean.toFixed(4)} ± ${se.toFixed(4)}`);
check(n >= 5000, `at least 5,000 sampled tokens (${n})`);
check(Math.abs(mean) <= 4 * se, `mean gap of samples ${mean} is beyond 4 standard errors (${se})`);
const buckets = psql(db, `SELECT tokshift_bucket_label(bucket), sum(n), sum(sum_gap) / sum(n),
    sqrt((sum(sumsq_gap) / sum(n) - (sum(sum_gap) / sum(n)) ^ 2) / (sum(n) - 1))
    FROM bucket_rollups WHERE run_id = ${runId} AND kind = 'sample' AND bucket >= 0 GROUP BY bucket ORDER BY bucket`);
for (const [pos, bn, bm, bse] of buckets) {
    console.error(`  samples, positions ${pos.padEnd(5)}: n ${bn.padStart(5)}, mean gap ${Number(bm).toFixed(4)} ± ${Number(bse).toFixed(4)}`);
    check(Math.abs(Number(bm)) <= 4 * Number(bse), `bucket ${pos}: mean gap ${bm} beyond 4 se ${bse}`);
}
const human = psql(db, `SELECT n, mean_gap, se_gap FROM bucket_stats WHERE run_id = ${runId} AND kind = 'human_cont'
    ORDER BY bucket`);
const hn = human.reduce((a, r) => a + Number(r[0]), 0);
const [[hm, hse]] = psql(db, `SELECT sum(sum_gap) / sum(n), sqrt((sum(sumsq_gap) / sum(n) - (sum(sum_gap) / sum(n)) ^ 2) / (sum(n) - 1))
    FROM job_rollups WHERE run_id = ${runId} AND kind = 'human_cont'`).map(r => r.map(Number));
console.error(`human continuations: n = ${hn}, mean gap ${hm.toFixed(4)} ± ${hse.toFixed(4)} (no law: this is the shift)`);
// The rollups agree with the rows they summarise.
// The worker sums double statistics; rows hold them in float4 (u = 2^-24 of
// each of logprob and entropy); the sums here are in double.
const [[rn, rsum, rabs]] = psql(db, `SET extra_float_digits = 3; SELECT count(*), sum(-logprob::float8 - entropy::float8),
    sum(abs(logprob::float8) + abs(entropy::float8)) FROM token_view WHERE run_id = ${runId} AND kind = 'sample'`).map(r => r.map(Number));
const rtol = (2 ** -24 + rn * 2 ** -52) * rabs / rn;
check(rn === n && Math.abs(rsum / rn - mean) <= rtol, `rollups (${n}, ${mean}) vs rows (${rn}, ${rsum / rn}), tolerance ${rtol}`);
// The calibration, per-document and top-token rollups agree with the rows too.
const disagree = rollupsDisagree(db, runId);
check(disagree === 0, `${disagree} calibration, document or top-token rollups disagree with the token rows`);
const [[nTop, nJobs]] = psql(db, `SELECT count(*), count(DISTINCT job_id) FROM top_tokens WHERE run_id = ${runId}`).map(r => r.map(Number));
check(nTop > 0 && nTop <= 64 * nJobs, `top_tokens: ${nTop} rows for ${nJobs} jobs (at most 64 each)`);
// A changed row is caught: regenerate fails on a tampered statistic (last:
// the rollups no longer match that row).
psql(db, `UPDATE sequence_stats SET logprob[4] = logprob[4] - 1e-3 WHERE run_id = ${runId} AND doc_id = ${gDoc}
          AND seq_no = ${gSeq}`);
const tampered = run(join(BIN, "tokshift"), ["regenerate", "--model", M, "--db", db, "e2e", gDoc, gSeq], {allowFail: true});
check(tampered.status === 1 && /differ/.test(tampered.stderr),
      `regenerate after tampering: exit ${tampered.status} ${tampered.stderr.slice(-500)}`);
// SEQs named are read with their document in one read and printed in the
// order given; one that is not stored is named, exit 2.
{
    const d0 = String(good[0][0]);
    const named = run(join(BIN, "tokshift"), ["regenerate", "--model", M, "--db", db, "e2e", d0, "1", "0"], {allowFail: true});
    const order = [...named.stdout.matchAll(/^# run e2e doc \d+ seq (\d+):/gm)].map(m => m[1]).join(" ");
    check(named.status === 0 && order === "1 0", `regenerate e2e ${d0} 1 0: exit ${named.status}, seqs "${order}"`);
    const missing = run(join(BIN, "tokshift"), ["regenerate", "--model", M, "--db", db, "e2e", d0, "0", "99999"],
                        {allowFail: true});
    check(missing.status === 2 && /has no sequence 99999/.test(missing.stderr),
          `regenerate of a sequence not stored: exit ${missing.status} ${missing.stderr.slice(-300)}`);
}
// status works from SQL.
check(/e2e/.test(tokshift(["status", "--db", db])), "tokshift status lists the run");

pg.stop();
cleanup(dir);
finish("test_e2e");
