// test_compare.mjs - clustered and paired standard errors, run comparison and
// AUROC on two real runs (issue 12, items 1, 3 and 4).  Two runs of the demo
// model over the same corpus with the same cuts and seed, at temperatures 1
// and 0.7 (so their human continuations agree and their samples differ).
// Every number the views and `tokshift compare` / `tokshift auroc` give is
// recomputed here from the token rows (token_view), by the definitions:
//   clustered SE (CR1, cluster = document):  m = Σx / n,
//       V = G/(G-1) Σ_d (S_d - m n_d)² / n²;
//   paired SE of m_B - m_A (documents matched by ext_id):
//       e_d = (S_Bd - m_B n_Bd)/N_B - (S_Ad - m_A n_Ad)/N_A, V = G/(G-1) Σ e_d²;
//   AUROC = P(X_human > X_sample) + P(=)/2 over all pairs (brute force here,
//       mid-ranks in the view).
// Tolerance: the rollups sum in double the same double values as here
// (gap = -logprob - entropy in double from the stored floats) in another
// order: relative error ~ n 2^-53 per sum (n < 10^4, so < 2e-12); the
// variance formula's cancellation (Σ S² - 2 m Σ n S + m² Σ n²) amplifies it
// by the ratio of raw to centred second moments (< 10^3 here), so 1e-7
// relative (+1e-12 absolute for zeros) is loose by orders of magnitude and
// still catches any wrong term (which changes an SE by whole percents).  An
// SE near zero (identical sides of a difference, or a statistic constant
// across documents) is the square root of that cancellation noise:
// sqrt(2^-52 Σ S_c²) / n <= 1.5e-8 |mean| (as Σ S_c² <= mean² n max n_c
// roughly and max n_c <= n), so SEs get 1e-6 |mean| more.
import {join} from "node:path";
import {check, cleanup, finish, model, psql, run, runOnce, startPostgres, tempDir, tokshift, writeCorpus, BIN} from "./harness.mjs";

const M = model();
const dir = tempDir("tokshift-cmp-");
const pg = startPostgres(dir);
const db = pg.conninfo;
tokshift(["db", "migrate", "--db", db]);

const corpus = writeCorpus(dir, {nStories: 12, longRepeat: 2});
const base = ["--window", "64", "--stride", "32", "--prefix-lengths", "4,12", "--cont-len", "8", "--samples", "4",
              "--seed", "12345", "--job-docs", "3"];
for (const [name, tau] of [["cmpA", "1"], ["cmpB", "0.7"]]) {
    const {res, workers} = await runOnce({conninfo: db, runName: name, corpus, modelPath: M,
                                          settings: [...base, "--temperature", tau], logDir: dir});
    check(res.code === 0, `${name}: coordinator exited ${res.code}: ${res.err.slice(-2000)}`);
    for (const [i, w] of workers.entries()) {
        const r = await w.exited;  // a sanitizer report makes a worker exit non-zero
        check(r.code === 0, `${name}: worker ${i} exited ${r.code} (${r.sig}): ${r.err.slice(-2000)}`);
    }
}
const id = name => Number(psql(db, `SELECT run_id FROM runs WHERE name = '${name}'`)[0][0]);
const A = id("cmpA"), B = id("cmpB");

const close = (a, b, scale = 0) => a === null || b === null ? a === b :
    Math.abs(a - b) <= 1e-7 * Math.abs(b) + 1e-6 * scale + 1e-12;
const num = v => v === "" ? null : Number(v);
const bucketOf = p => p <= 0 ? 0 : 2 ** Math.floor(Math.log2(p));

// The token rows, with the document's ext_id.
const rows = run => psql(db, `SELECT d.ext_id, v.doc_id, v.seq_no, v.kind, v.position, v.logprob, v.entropy,
        coalesce(v.z::text, ''), v.top1_logprob, v.rank
    FROM token_view v JOIN documents d USING (run_id, doc_id) WHERE v.run_id = ${run}`).map(r => {
    // float4 as text is the shortest decimal that reads back to the same
    // float: fround recovers the stored value exactly.
    const lp = Math.fround(Number(r[5])), h = Math.fround(Number(r[6]));
    return {ext: r[0], doc: r[1], seq: r[2], kind: r[3], pos: Number(r[4]), s: -lp, h, g: -lp - h,
            z: r[7] === "" ? null : Number(r[7]), conf: Math.exp(Math.fround(Number(r[8]))), correct: r[9] === "1" ? 1 : 0};
});
const tokA = rows(A), tokB = rows(B);
check(tokA.length > 2000 && tokB.length === tokA.length, `token rows: ${tokA.length}, ${tokB.length}`);

// Per cluster sums of statistic f over the rows that pass sel, keyed by key(row).
function clusters(toks, sel, f) {
    const m = new Map();
    for (const t of toks) {
        if (!sel(t)) continue;
        const x = f(t);
        if (x === null) continue;
        const c = m.get(t.ext) || {n: 0, s: 0};
        c.n++, c.s += x;
        m.set(t.ext, c);
    }
    return m;
}
function clusterSE(cl) {
    let n = 0, s = 0;
    for (const c of cl.values()) n += c.n, s += c.s;
    const mean = s / n, G = cl.size;
    if (G < 2) return {mean, se: null, n, G};
    let q = 0;
    for (const c of cl.values()) q += (c.s - mean * c.n) ** 2;
    return {mean, se: Math.sqrt(q * G / (G - 1)) / n, n, G};
}
function pairedSE(ca, cb) {
    const a = clusterSE(ca), b = clusterSE(cb), keys = new Set([...ca.keys(), ...cb.keys()]), G = keys.size;
    let q = 0;
    for (const k of keys) {
        const x = ca.get(k) || {n: 0, s: 0}, y = cb.get(k) || {n: 0, s: 0};
        q += ((y.s - b.mean * y.n) / b.n - (x.s - a.mean * x.n) / a.n) ** 2;
    }
    return {diff: b.mean - a.mean, se: G > 1 ? Math.sqrt(q * G / (G - 1)) : null, G};
}
const STATS = {surprisal: t => t.s, entropy: t => t.h, gap: t => t.g, z: t => t.z};

// 1. position_stats and bucket_stats: clustered by document.
let cells = 0;
for (const [view, key, posOf] of [["position_stats", "position", t => t.pos], ["bucket_stats", "bucket", t => bucketOf(t.pos)]]) {
    for (const r of psql(db, `SELECT kind, ${key}, n, n_docs, mean_gap, se_gap, mean_surprisal, se_surprisal,
            mean_entropy, se_entropy, coalesce(mean_z::text, ''), coalesce(se_z::text, '') FROM ${view} WHERE run_id = ${A}`)) {
        const [kind, k] = [r[0], Number(r[1])];
        const sel = t => t.kind === kind && posOf(t) === k;
        const ref = Object.fromEntries(Object.entries(STATS).map(([s, f]) => [s, clusterSE(clusters(tokA, sel, f))]));
        const se = (x, q) => close(x, q.se, Math.abs(q.mean));
        const ok = Number(r[2]) === ref.gap.n && Number(r[3]) === ref.gap.G &&
            close(num(r[4]), ref.gap.mean) && se(num(r[5]), ref.gap) &&
            close(num(r[6]), ref.surprisal.mean) && se(num(r[7]), ref.surprisal) &&
            close(num(r[8]), ref.entropy.mean) && se(num(r[9]), ref.entropy) &&
            (ref.z.n ? se(num(r[11]), ref.z) : r[11] === "");
        check(ok, `${view} ${kind} ${k}: view ${r.join(" ")} vs token rows ${JSON.stringify(ref)}`);
        cells++;
    }
}
check(cells > 30, `position and bucket cells checked: ${cells}`);

// 2. run_stats (all positions) and shift_by_bucket (the shift's error uses
//    the covariance of human and model means within a document).
for (const r of psql(db, `SELECT kind, n_docs, mean_gap, se_gap, se_z FROM run_stats WHERE run_id = ${A}`)) {
    const g = clusterSE(clusters(tokA, t => t.kind === r[0], STATS.gap));
    const z = clusterSE(clusters(tokA, t => t.kind === r[0], STATS.z));
    check(Number(r[1]) === g.G && close(num(r[2]), g.mean) && close(num(r[3]), g.se) && close(num(r[4]), z.se),
          `run_stats ${r.join(" ")} vs ${JSON.stringify([g, z])}`);
}
let naiveBigger = 0, shifts = 0;
for (const r of psql(db, `SELECT bucket, shift, se_shift, human_se_gap, model_se_gap FROM shift_by_bucket WHERE run_id = ${A}`)) {
    const b = Number(r[0]), sel = kind => t => t.kind === kind && bucketOf(t.pos) === b;
    const p = pairedSE(clusters(tokA, sel("sample"), STATS.gap), clusters(tokA, sel("human_cont"), STATS.gap));
    check(close(num(r[1]), p.diff) && close(num(r[2]), p.se), `shift_by_bucket ${r.join(" ")} vs ${JSON.stringify(p)}`);
    naiveBigger += Math.hypot(num(r[3]), num(r[4])) !== num(r[2]);
    shifts++;
}
check(shifts >= 3 && naiveBigger === shifts, `shift buckets ${shifts}, covariance term nonzero in ${naiveBigger}`);

// 3. calibration, clustered by document.
for (const r of psql(db, `SELECT kind, bin, n, mean_confidence, accuracy, se_confidence, se_accuracy FROM calibration
                          WHERE run_id = ${A}`)) {
    const sel = t => t.kind === r[0] && Math.min(Math.floor(10 * t.conf / 1.0000001) + 1, 11) === Number(r[1]);
    const c = clusterSE(clusters(tokA, sel, t => t.conf)), a = clusterSE(clusters(tokA, sel, t => t.correct));
    check(Number(r[2]) === c.n && close(num(r[3]), c.mean) && close(num(r[4]), a.mean) && close(num(r[5]), c.se) &&
          close(num(r[6]), a.se), `calibration ${r.join(" ")} vs ${JSON.stringify([c, a])}`);
}

// 4. compare_by_bucket: B - A paired by document.
let cmpRows = 0, nonzero = 0;
for (const r of psql(db, `SELECT kind, bucket, n_docs, diff_gap, se_diff_gap, diff_surprisal, se_diff_surprisal,
        diff_entropy, se_diff_entropy, coalesce(se_diff_z::text, '') FROM compare_by_bucket
        WHERE run_a = ${A} AND run_b = ${B}`)) {
    const sel = t => t.kind === r[0] && bucketOf(t.pos) === Number(r[1]);
    const p = s => pairedSE(clusters(tokA, sel, STATS[s]), clusters(tokB, sel, STATS[s]));
    const g = p("gap"), s = p("surprisal"), h = p("entropy"), z = p("z");
    const sc = st => Math.abs(clusterSE(clusters(tokA, sel, STATS[st])).mean);
    check(Number(r[2]) === g.G && close(num(r[3]), g.diff) && close(num(r[4]), g.se, sc("gap")) &&
          close(num(r[5]), s.diff) && close(num(r[6]), s.se, sc("surprisal")) && close(num(r[7]), h.diff) &&
          close(num(r[8]), h.se, sc("entropy")) && close(num(r[9]), z.se, sc("z")),
          `compare_by_bucket ${r.join(" ")} vs ${JSON.stringify([g, s, h, z])}`);
    if (r[0] === "human_cont") check(Math.abs(num(r[3])) < 1e-12, `human continuations agree across the runs: ${r.join(" ")}`);
    if (r[0] === "sample" && num(r[4]) > 0) nonzero++;
    cmpRows++;
}
check(cmpRows > 10 && nonzero >= 3, `compare rows ${cmpRows}, sample buckets with a paired error ${nonzero}`);

// 5. AUROC by brute force over all (human continuation, sample) pairs.
function auroc(toks, f) {
    const seqs = new Map();
    for (const t of toks) {
        if (t.kind === "human") continue;
        const k = `${t.doc}/${t.seq}`, x = f(t), q = seqs.get(k) || {kind: t.kind, ext: t.ext, n: 0, s: 0};
        if (x !== null) q.n++, q.s += x;
        seqs.set(k, q);
    }
    const v = [...seqs.values()].filter(q => q.n), h = v.filter(q => q.kind === "human_cont"), m = v.filter(q => q.kind === "sample");
    let u = 0;
    for (const a of h) for (const b of m) u += a.s / a.n > b.s / b.n ? 1 : a.s / a.n === b.s / b.n ? 0.5 : 0;
    return {auroc: u / (h.length * m.length), nh: h.length, ns: m.length};
}
const aurocs = {};
for (const r of psql(db, `SELECT stat, n_human, n_sample, auroc FROM sequence_auroc WHERE run_id = ${A} ORDER BY stat`)) {
    const ref = auroc(tokA, STATS[r[0]]);
    aurocs[r[0]] = ref.auroc;
    check(Number(r[1]) === ref.nh && Number(r[2]) === ref.ns && close(num(r[3]), ref.auroc),
          `sequence_auroc ${r.join(" ")} vs ${JSON.stringify(ref)}`);
}
check(Object.keys(aurocs).length === 3, `AUROC statistics: ${Object.keys(aurocs)}`);

// 6. `tokshift compare`: the tables above, side by side, rounded to 4
//    decimals; the AUROC computed in C equals the view's.
const ts = (args, allowFail = false) => run(join(BIN, "tokshift"), [...args, "--db", db], {allowFail});
const out = ts(["compare", "cmpA", "cmpB", "--boot", "100"]).stdout;
console.error(out);
const r4 = x => Number(x).toFixed(4);
for (const r of psql(db, `SELECT stat, auroc FROM sequence_auroc WHERE run_id = ${A}`)) {
    const line = out.split("\n").find(l => new RegExp(`^\\s*cmpA\\s+${r[0]}\\s`).test(l));
    const m = line && line.match(/(\d\.\d{4})\s+\[(\d\.\d{4}), (\d\.\d{4})\]/);
    check(m && m[1] === r4(r[1]) && Number(m[2]) <= Number(m[1]) && Number(m[1]) <= Number(m[3]),
          `compare: AUROC line for ${r[0]} '${line}' vs view ${r[1]}`);
}
for (const r of psql(db, `SELECT positions, diff_gap, se_diff_gap FROM compare_by_bucket
                          WHERE run_a = ${A} AND run_b = ${B} AND kind = 'sample'`)) {
    const want = `${r4(r[1])} ± ${r4(r[2])}`.replace(/^-0\.0000/, "0.0000");
    check(out.split("\n").some(l => /^\s*cmpB - cmpA\s+sample\s/.test(l) && l.includes(` ${r[0]} `) && l.includes(want)),
          `compare: sample difference in bucket ${r[0]} printed as ${want}`);
}
check(/Calibration/.test(out) && /shift ± se/.test(out), "compare prints calibration and the shift");
const au = ts(["auroc", "cmpA", "cmpB", "--boot", "50"]).stdout;
check((au.match(/^\s*cmp[AB]\s+(surprisal|gap|z)\s/mg) || []).length === 6, `auroc: 6 lines:\n${au}`);

// 7. Runs that are not comparable are refused, naming what differs.
psql(db, `INSERT INTO runs (name, model_identity, settings, corpus)
          SELECT 'cmpX', model_identity, jsonb_set(settings, '{seed}', '7'), corpus FROM runs WHERE name = 'cmpA'`);
const bad = ts(["compare", "cmpA", "cmpX"], true);
check(bad.status === 1 && /not comparable/.test(bad.stderr) && /seed 12345 vs 7/.test(bad.stderr) &&
      /documents differ/.test(bad.stderr) && bad.stdout === "", `compare refuses: ${bad.status} ${bad.stderr}`);
check(ts(["compare", "cmpA"], true).status === 2, "compare needs two runs");

cleanup(dir);
finish("test_compare");
