// test_score_run.mjs - cross-scoring (tokshift-coordinator --score-run; issue
// 12 item 2): a run whose documents and samples are another run's, measured
// by its own model.  Real PostgreSQL, a real coordinator and worker.
//   same      a run of the demo model, then a --score-run run of it with the
//             same model: its token_view rows equal the source's exactly
//             (EXCEPT ALL both ways, every column): same model, same tokens,
//             same statistics
//   observer  a --score-run run with a perturbed copy of the model
//             (dequant_gguf --perturb): the same tokens row for row (sample
//             tokens are the generator's, not drawn), other log-probabilities;
//             cross_scores pairs each token's two log-probabilities, and
//             cross_sequences' per-token log-likelihood ratio equals the
//             mean difference computed here from the token rows; cross_stats'
//             means and document-clustered standard errors equal those
//             computed here from cross_scores' rows
//   vocab     a worker whose model has another vocabulary (GPT-2's) refuses
//             the run with exit 3 without --source-vocab (or with one that
//             is not the generator's); with it the run
//             scores every sequence through its decoded text: each
//             continuation's rows are `tokshift score`'s of the same text,
//             and cross_text_sequences / cross_text_stats (014) equal sums
//             and clustered errors computed here from the rows
//   refused   --score-run of a run that is not done, and with settings given,
//             is refused at start-up; a worker whose HELLO lacks `observes`
//             (a version before cross-scoring would draw the samples anew)
//             is refused by the coordinator
import {createHash} from "node:crypto";
import {readFileSync} from "node:fs";
import {join} from "node:path";
import {BIN, check, cleanup, finish, freePort, model, psql, run, runOnce, start, startPostgres, tempDir, tokshift,
        writeCorpus} from "./harness.mjs";

// ---- the bounds the comparisons of sums below follow from ----------------
// Every statistic compared is a sum of float4 values (each exact in double)
// taken in double in two different orders (the worker's and the views', and
// this test's).  u = 2^-53; gamma(k) = k u / (1 - k u).  A sum of k doubles in
// any order is within gamma(k - 1) * sum |x| of the exact sum (Higham,
// Accuracy and Stability of Numerical Algorithms, 2nd ed., 4.2), so two such
// sums of the same k values differ by at most 2 gamma(k) A, A = sum |x|:
// for surprisals (>= 0) the sum itself, for a difference of two sums of
// surprisals the two sums' total.  (At ~10^4 values, 2 gamma(k) ~ 2e-12.)
const U = 2 ** -53, gamma = k => k * U / (1 - k * U);
const sumTol = (k, a) => 2 * gamma(k) * a;
// Clustered (CR1, 007) mean of sum f(d) / sum n(d) over documents d and its
// standard error sqrt(G/(G-1) sum (f(d) - m n(d))^2) / sum n(d), with the
// bounds on their differences from the view's: f(d) sums k(d) float4 terms
// whose absolute values sum to at most a(d); n(d) are exact integers.
//   mean: sumTol(K, A) / N over the whole sum, plus the division's rounding
//     on each side (2u relative).
//   se: the view computes V = ss - 2 m ns + m^2 nn from G documents' sums of
//     products in one pass (tokshift_cluster_se), within gamma(G + 4) W of
//     its inputs' exact V, W = sum (f^2 + 2 |m n f| + m^2 n^2); this test's
//     two-pass V is within the same.  The inputs' own differences (f(d) by
//     sumTol(k(d), a(d)), m by the mean's bound) move V by at most
//     P = sum 2 (|f| + |m| n) (df + n dm) to first order.  So se differs by
//     at most se ((2 gamma(G + 4) W + P) / 2V + 3u); doubled for the
//     second-order terms.
// scale multiplies the results (1 / ln 2 for bits), 2u more each.
function cr1(docs, n, f, k, a, scale = 1) {
    let N = 0, S = 0, K = 0, A = 0;
    for (const d of docs) N += n(d), S += f(d), K += k(d), A += a(d);
    const m = S / N, G = docs.length, dm = sumTol(K, A) / N + 2 * U * Math.abs(m);
    let V = 0, W = 0, P = 0;
    for (const d of docs) {
        const r = f(d) - m * n(d), mn = Math.abs(m) * n(d);
        V += r * r;
        W += f(d) ** 2 + 2 * mn * Math.abs(f(d)) + mn ** 2;
        P += 2 * (Math.abs(f(d)) + mn) * (sumTol(k(d), a(d)) + n(d) * dm);
    }
    const se = G > 1 ? Math.sqrt(V * G / (G - 1)) / N : null;
    const seTol = se === null ? 0 : 2 * se * ((2 * gamma(G + 4) * W + P) / (2 * V) + 3 * U);
    return [[m * scale, dm * scale + 2 * U * Math.abs(m * scale)],
            [se === null ? null : se * scale, seTol * scale + 2 * U * se * scale]];
}
// got (the view's text) within tol of want, or both NULL.
const within = (got, [want, tol]) => want === null ? got === null : got !== null && Math.abs(got - want) <= tol;

const M = model();
const dir = tempDir("tokshift-score-run-");
const pg = startPostgres(dir);
const db = pg.conninfo;
tokshift(["db", "migrate", "--db", db]);

const settings = ["--window", "64", "--stride", "32", "--prefix-lengths", "4,12", "--cont-len", "8", "--samples", "3",
                  "--seed", "7", "--job-docs", "4"];
const corpus = writeCorpus(dir, {nStories: 6, longRepeat: 3});
const none = {files: []};
async function runOk(name, opts) {
    const r = await runOnce({conninfo: db, runName: name, logDir: dir, nWorkers: 1, ...opts,
                             coordArgs: ["--heartbeat", "200", ...(opts.coordArgs || [])]});
    check(r.res.code === 0, `${name}: coordinator exited ${r.res.code}: ${r.res.err.slice(-2000)}`);
    for (const w of r.workers) {
        const e = await w.exited;
        check(e.code === 0, `${name}: worker exited ${e.code} (${e.sig}): ${e.err.slice(-2000)}`);
    }
    return Number(psql(db, `SELECT run_id FROM runs WHERE name = '${name}'`)[0][0]);
}
const src = await runOk("gen", {corpus, modelPath: M, settings});

// ---- refused: a run that is not done; settings with --score-run ----
{
    psql(db, `INSERT INTO runs (name, model_identity, settings, corpus) VALUES ('unfinished', 'x', '{}', '{}')`);
    const r = run(join(BIN, "tokshift-coordinator"), ["--run", "r1", "--model", M, "--db", db, "--score-run", "unfinished"],
                  {allowFail: true});
    check(r.status !== 0 && /not done/.test(r.stderr), `refused: a run that is not done (${r.status}): ${r.stderr.trim()}`);
    const r2 = run(join(BIN, "tokshift-coordinator"), ["--run", "r2", "--model", M, "--db", db, "--score-run", "gen",
                   "--window", "32"], {allowFail: true});
    check(r2.status !== 0 && /settings/.test(r2.stderr), `refused: settings with --score-run (${r2.status}): ${r2.stderr.trim()}`);
}

// ---- same: the same model reproduces the source's rows exactly ----
const same = await runOk("same", {corpus: none, modelPath: M, settings: [], coordArgs: ["--score-run", "gen"]});
const cols = "doc_id, seq_no, kind, cut, sample_idx, pos, position, token_id, logprob, entropy, rank, top1_logprob, " +
             "varentropy, context_len";
const nRows = Number(psql(db, `SELECT count(*) FROM token_view WHERE run_id = ${src}`)[0][0]);
const nSamples = Number(psql(db, `SELECT count(*) FROM token_view WHERE run_id = ${src} AND kind = 'sample'`)[0][0]);
check(nRows > 1000 && nSamples > 100, `the source run has ${nRows} token rows, ${nSamples} of samples`);
const diff = (a, b) => Number(psql(db, `SELECT count(*) FROM (SELECT ${cols} FROM token_view WHERE run_id = ${a}
    EXCEPT ALL SELECT ${cols} FROM token_view WHERE run_id = ${b}) d`)[0][0]);
check(diff(src, same) === 0 && diff(same, src) === 0,
      `same: the rows equal the source's (${diff(src, same)} / ${diff(same, src)} rows differ of ${nRows})`);
const seeds = q => psql(db, `SELECT doc_id, seq_no, seed FROM sequences WHERE run_id = ${q} ORDER BY 1, 2`).join(";");
check(seeds(same) === seeds(src), "same: the sequences carry the generator's seeds");
check(psql(db, `SELECT score_run_id FROM runs WHERE run_id = ${same}`)[0][0] === String(src), "same: score_run_id recorded");

// ---- observer: a perturbed model sees the same tokens differently ----
const P = join(dir, "perturbed.gguf");
run(join(BIN, "tests", "dequant_gguf"), ["--perturb", "0.1", "1", M, P]);
const obs = await runOk("obs", {corpus: none, modelPath: P, settings: [], coordArgs: ["--score-run", "gen"]});
const tok = q => psql(db, `SELECT doc_id, seq_no, pos, token_id FROM token_view WHERE run_id = ${q} ORDER BY 1, 2, 3`)
    .map(r => r.join(",")).join(";");
check(tok(obs) === tok(src), "observer: the same tokens, row for row");
const [[n, nDiff, nHum]] = psql(db, `SELECT count(*), count(*) FILTER (WHERE observer_logprob <> generator_logprob),
    count(*) FILTER (WHERE kind = 'human') FROM cross_scores WHERE observer_run = ${obs}`);
check(Number(n) === nRows && Number(nDiff) > 0.9 * nRows && Number(nHum) > 0,
      `observer: cross_scores pairs all ${nRows} tokens (${n}), ${nDiff} with other log-probabilities`);
// (as many rows as each run has, so one direction of EXCEPT ALL suffices)
const side = (col, q) => Number(psql(db, `SELECT count(*) FROM (SELECT doc_id, seq_no, kind, pos, position, token_id,
    ${col}_logprob, ${col}_entropy, ${col}_rank FROM cross_scores WHERE observer_run = ${obs} AND generator_run = ${src}
    EXCEPT ALL SELECT doc_id, seq_no, kind, pos, position, token_id, logprob, entropy, rank FROM token_view
    WHERE run_id = ${q}) d`)[0][0]);
check(side("observer", obs) === 0 && side("generator", src) === 0,
      `observer: cross_scores' two sides are the two runs' rows (${side("observer", obs)}, ${side("generator", src)} differ)`);
// The per-sequence ratio, independently: from the two runs' rows here.
// (extra_float_digits 3: each float4 printed so that Math.fround of the parsed
// text is the stored float4 exactly, whatever the server's default)
const lp = q => new Map(psql(db, `SET extra_float_digits = 3; SELECT doc_id || '/' || seq_no, array_agg(logprob ORDER BY pos)::text
    FROM token_view WHERE run_id = ${q} GROUP BY 1`).map(([k, v]) => [k, v.slice(1, -1).split(",").map(x => Math.fround(Number(x)))]));
const lo = lp(obs), lg = lp(src);
let worst = 0, nSeq = 0;
for (const [k, llr] of psql(db, `SET extra_float_digits = 3; SELECT doc_id || '/' || seq_no, llr_per_token FROM cross_sequences
                                 WHERE observer_run = ${obs}`)) {
    const a = lo.get(k), b = lg.get(k);
    const mine = a.reduce((s, x, i) => s + (x - b[i]), 0) / a.length;
    // 2n float4 terms, A = sum |a| + |b|; the division's rounding, 2u.
    const tol = sumTol(2 * a.length, a.reduce((s, x, i) => s + Math.abs(x) + Math.abs(b[i]), 0)) / a.length +
                2 * U * Math.abs(mine);
    worst = Math.max(worst, Math.abs(mine - Number(llr)) / tol);
    nSeq++;
}
check(nSeq === lo.size && worst <= 1, `observer: cross_sequences' llr over ${nSeq} sequences (of ${lo.size}) is the mean ` +
      `difference (worst ${worst} of the bound)`);
// cross_stats: per kind, the means and their standard errors clustered by
// document (CR1: G/(G-1) Σ_d (S_d - m n_d)² / n², 007), recomputed here
// from cross_scores' rows (the view reads the rollups instead), within the
// bounds of cr1 (above).
{
    const per = new Map();  // kind -> doc -> [n, Σ obs surprisal, Σ gen surprisal] (surprisals >= 0: Σ|x| = Σx)
    for (const [kind, doc, o, g] of psql(db, `SET extra_float_digits = 3; SELECT kind, doc_id, observer_logprob,
            generator_logprob FROM cross_scores WHERE observer_run = ${obs}`)) {
        if (!per.has(kind)) per.set(kind, new Map());
        const d = per.get(kind).get(doc) || [0, 0, 0];
        d[0]++, d[1] -= Math.fround(Number(o)), d[2] -= Math.fround(Number(g));
        per.get(kind).set(doc, d);
    }
    const rows = psql(db, `SET extra_float_digits = 3; SELECT kind, n_tokens, n_docs, observer_surprisal,
        se_observer_surprisal, generator_surprisal, se_generator_surprisal, llr_per_token, se_llr_per_token
        FROM cross_stats WHERE observer_run = ${obs} AND generator_run = ${src} ORDER BY kind`);
    check(rows.length === per.size && per.size === 3, `cross_stats: a row per kind (${rows.map(r => r[0])})`);
    for (const [kind, n, g, ...v] of rows) {
        const docs = [...(per.get(kind) || new Map()).values()];
        const tok = d => d[0];
        const want = [...cr1(docs, tok, d => d[1], tok, d => d[1]), ...cr1(docs, tok, d => d[2], tok, d => d[2]),
                      ...cr1(docs, tok, d => d[2] - d[1], d => 2 * d[0], d => d[1] + d[2])];
        const got = v.map(x => x === "" ? null : Number(x));
        check(Number(n) === docs.reduce((a, d) => a + d[0], 0) && Number(g) === docs.length &&
              got.every((x, i) => within(x, want[i])) && got[1] > 0 && got[5] > 0,
              `cross_stats ${kind}: ${v.join(" ")} vs the rows' ${want.join(" ")} (${docs.length} documents)`);
    }
}

// ---- vocab: another vocabulary, through the decoded text ----
// A GPT-2 of random weights with GPT-2's byte-level BPE vocabulary
// (tests/make_arch_model) observes the demo model's run (SentencePiece, 512
// tokens).  Without --source-vocab its worker refuses the run (exit 3,
// naming the option); with the demo model as --source-vocab the run
// completes, scored through the text.
{
    const G = join(dir, "gpt2-random.gguf");
    run(join(BIN, "tests", "make_arch_model"), ["gpt2", G, join(process.env.TOKSHIFT_TESTDATA, "vocab", "ggml-vocab-gpt-2.gguf")]);
    const port = await freePort();
    const ep = `tcp://127.0.0.1:${port}`;
    const coord = start(join(BIN, "tokshift-coordinator"), ["--run", "vocab", "--model", G, "--db", db, "--bind", ep,
                        "--score-run", "gen"], join(dir, "vocab-coord.log"));
    const w = run(join(BIN, "tokshift-worker"), ["--connect", ep, "--model", G, "--db", db], {allowFail: true});
    // (a --source-vocab that is not the generator's: GPT-2's own)
    const w2 = run(join(BIN, "tokshift-worker"), ["--connect", ep, "--model", G, "--db", db, "--source-vocab", G],
                   {allowFail: true});
    coord.p.kill("SIGTERM");
    await coord.exited;
    check(w.status === 3 && /vocabulary/.test(w.stderr) && /--source-vocab/.test(w.stderr),
          `vocab: without --source-vocab the worker refuses another vocabulary (exit ${w.status}): ${w.stderr.trim().split("\n").pop()}`);
    check(w2.status === 3 && /nor --source-vocab's/.test(w2.stderr),
          `vocab: a --source-vocab of another vocabulary is refused (exit ${w2.status}): ${w2.stderr.trim().split("\n").pop()}`);
    const [[written]] = psql(db, `SELECT count(*) FROM sequence_stats s JOIN runs r USING (run_id) WHERE r.name = 'vocab'`);
    check(written === "0", `vocab: nothing written (${written} sequences)`);

    const t0 = Date.now();
    const txt = await runOk("text", {corpus: none, modelPath: G, settings: [], coordArgs: ["--score-run", "gen"],
                                     workerArgs: ["--source-vocab", M]});
    const secs = (Date.now() - t0) / 1000;
    check(psql(db, `SELECT tokshift_score_via(${txt}), tokshift_score_via(${same}), tokshift_score_via(${src}) IS NULL`)[0]
              .join() === "text,tokens,t", "text: the run scores through the text, the same-vocabulary ones token for token");
    check(psql(db, `SELECT count(*) FROM cross_scores WHERE observer_run = ${txt}`)[0][0] === "0" &&
          psql(db, `SELECT count(*) FROM cross_stats WHERE observer_run = ${txt}`)[0][0] === "0",
          "text: no token-for-token pairs across vocabularies");
    // Every source sequence has its observer sequence (and no other).
    const keys = q => psql(db, `SELECT doc_id, seq_no, kind, coalesce(sample_idx, -1), coalesce(seed::text, '')
        FROM sequence_stats WHERE run_id = ${q} ORDER BY 1, 2`).join(";");
    const [[nSrcSeq]] = psql(db, `SELECT count(*) FROM sequence_stats WHERE run_id = ${src}`);
    check(keys(txt) === keys(src) && Number(nSrcSeq) > 50,
          `text: a sequence for each of the source's ${nSrcSeq} (doc, seq_no, kind, sample, seed) in ${secs} s` +
          (keys(txt) === keys(src) ? "" : `; errors: ${psql(db, `SELECT doc_id, error FROM documents WHERE run_id = ${txt} AND error IS NOT NULL`).join("|")}`));
    // The observer's rows of a continuation are `tokshift score`'s of the
    // same text (the document up to the generator's cut, then the
    // continuation as the generator's vocabulary spells it: vocab.text),
    // from the observer's cut on: bit for bit (rows do not depend on their
    // batch, forward.h; the stored float4 is the double rounded).  Only
    // texts within one window (64 tokens), where `score` gives every token
    // all of its context as a continuation has.
    const seqs = psql(db, `SELECT s.doc_id, s.seq_no, s.kind, s.cut_byte, encode(convert_to(d.text, 'UTF8'), 'hex'),
            (SELECT string_agg(encode(convert_to(w.text, 'UTF8'), 'hex'), '' ORDER BY t.i)
               FROM unnest(s.token_id) WITH ORDINALITY t(id, i) JOIN vocab w ON w.model_id = m.model_id AND w.token_id = t.id),
            (SELECT count(*) FROM unnest(s.token_id) t(id) LEFT JOIN vocab w ON w.model_id = m.model_id AND w.token_id = t.id
              WHERE w.text IS NULL),
            x.observer_cut, x.observer_cut_byte, x.end_byte, x.observer_n_tokens
        FROM sequence_stats s JOIN documents d USING (run_id, doc_id) JOIN runs r USING (run_id)
        JOIN models m ON m.identity = r.model_identity
        JOIN cross_text_sequences x ON x.observer_run = ${txt} AND x.doc_id = s.doc_id AND x.seq_no = s.seq_no
       WHERE s.run_id = ${src} AND s.kind <> 'human' ORDER BY s.doc_id, s.seq_no`);
    let compared = 0, samples = 0;
    for (const [doc, seq, kind, cb, dhex, chex, nNull, ocut, ocb, end, n] of seqs) {
        if (nNull !== "0") continue;  // (a token without a text: a control token)
        const text = Buffer.concat([Buffer.from(dhex, "hex").subarray(0, Number(cb)), Buffer.from(chex, "hex")]);
        check(Number(end) === text.length && Number(ocb) <= Number(cb),
              `text ${doc}/${seq}: end_byte ${end} is the text's ${text.length} bytes, its cut byte ${ocb} <= ${cb}`);
        if (Number(ocut) + Number(n) > 64 || compared >= 12) continue;
        const r = run(join(BIN, "tokshift"), ["score", "--model", G, "--window", "64", "--stride", "32", "--format", "json"],
                      {input: text});
        const want = JSON.parse(r.stdout).filter(x => x.pos >= Number(ocut));
        const got = psql(db, `SET extra_float_digits = 3; SELECT pos, token_id, logprob, entropy, rank FROM token_view
            WHERE run_id = ${txt} AND doc_id = ${doc} AND seq_no = ${seq} ORDER BY pos`);
        check(got.length === want.length && got.every(([p, id, lp, h, rk], i) => Number(p) === want[i].pos &&
                  Number(id) === want[i].token_id && Math.fround(Number(lp)) === Math.fround(want[i].logprob) &&
                  Math.fround(Number(h)) === Math.fround(want[i].entropy) && Number(rk) === want[i].rank),
              `text ${doc}/${seq} (${kind}): the rows are \`tokshift score\`'s of its text from pos ${ocut} ` +
              `(${got.length} vs ${want.length} rows)`);
        compared++;
        if (kind === "sample") samples++;
    }
    check(compared >= 8 && samples >= 4, `text: ${compared} continuations (${samples} samples) compared with \`tokshift score\``);
    console.log(`text: ${nSrcSeq} sequences scored through the text in ${secs} s; ${compared} continuations ` +
                `(${samples} samples) equal \`tokshift score\`'s rows`);
    // cross_text_sequences' totals are the rows' sums; cross_text_stats'
    // bits per byte and log-likelihood ratio per byte, with standard errors
    // clustered by document (CR1, 007, with bytes for tokens), equal those
    // computed here from the rows and the byte offsets, within the bounds
    // of sumTol and cr1 (above; surprisals >= 0, so Σ|x| is the total).
    const sums = q => new Map(psql(db, `SET extra_float_digits = 3; SELECT doc_id || '/' || seq_no,
        array_agg(logprob)::text FROM token_view WHERE run_id = ${q} AND kind <> 'human' GROUP BY 1`)
        .map(([k, v]) => { const x = v.slice(1, -1).split(",");
                           return [k, [-x.reduce((a, y) => a + Math.fround(Number(y)), 0), x.length]]; }));
    const so = sums(txt), sg = sums(src);
    const near = (got, [want, k]) => Math.abs(got - want) <= sumTol(k, want);
    const per = new Map();  // kind -> doc -> [bytes gen, bytes obs, Σ gen, Σ obs, terms gen, terms obs]
    let bad = 0, nx = 0;
    for (const [doc, seq, kind, gcb, ocb, end, gs, os] of psql(db, `SET extra_float_digits = 3; SELECT doc_id, seq_no,
            kind, generator_cut_byte, observer_cut_byte, end_byte, generator_surprisal, observer_surprisal
            FROM cross_text_sequences WHERE observer_run = ${txt} AND kind <> 'human'`)) {
        const k = `${doc}/${seq}`;
        if (!near(Number(gs), sg.get(k)) || !near(Number(os), so.get(k))) bad++;
        nx++;
        if (!per.has(kind)) per.set(kind, new Map());
        const d = per.get(kind).get(doc) || [0, 0, 0, 0, 0, 0];
        d[0] += Number(end) - Number(gcb), d[1] += Number(end) - Number(ocb), d[2] += sg.get(k)[0], d[3] += so.get(k)[0];
        d[4] += sg.get(k)[1], d[5] += so.get(k)[1];
        per.get(kind).set(doc, d);
    }
    check(bad === 0 && nx === so.size, `cross_text_sequences: ${nx} sequences' totals are their rows' sums (${bad} differ)`);
    const rows = psql(db, `SET extra_float_digits = 3; SELECT kind, n_docs, generator_bits_per_byte,
        se_generator_bits_per_byte, observer_bits_per_byte, se_observer_bits_per_byte, llr_bits_per_byte,
        se_llr_bits_per_byte FROM cross_text_stats WHERE observer_run = ${txt} ORDER BY kind`);
    check(rows.length === 2 && rows.length === per.size, `cross_text_stats: a row per continuation kind (${rows.map(r => r[0])})`);
    for (const [kind, g, ...v] of rows) {
        const docs = [...per.get(kind).values()];
        const B = 1 / Math.LN2;
        const want = [...cr1(docs, d => d[0], d => d[2], d => d[4], d => d[2], B),
                      ...cr1(docs, d => d[1], d => d[3], d => d[5], d => d[3], B),
                      ...cr1(docs, d => d[0], d => d[2] - d[3], d => d[4] + d[5], d => d[2] + d[3], B)];
        const got = v.map(x => x === "" ? null : Number(x));
        check(Number(g) === docs.length && got.every((x, i) => within(x, want[i])) && got[1] > 0 && got[3] > 0,
              `cross_text_stats ${kind}: ${v.join(" ")} vs the rows' ${want.join(" ")} (${docs.length} documents)`);
    }
}

// ---- old worker: a worker that does not say it observes is refused ----
{
    const port = await freePort();
    const ep = `tcp://127.0.0.1:${port}`;
    const coord = start(join(BIN, "tokshift-coordinator"), ["--run", "old-worker", "--model", M, "--db", db, "--bind", ep,
                        "--score-run", "gen"], join(dir, "old-worker-coord.log"));
    const identity = createHash("sha256").update(readFileSync(M)).digest("hex");
    // wire_peer's HELLO has the run's model but no `observes` (as a worker
    // of a version before cross-scoring sends it).
    run(join(BIN, "tests", "wire_peer"), ["hello", ep, identity, "3"], {allowFail: true});
    coord.p.kill("SIGTERM");
    const e = await coord.exited;
    check(/would draw anew/.test(e.err), `old worker: refused by the coordinator: ${e.err.slice(-600)}`);
}

cleanup(dir);
finish("test_score_run");
