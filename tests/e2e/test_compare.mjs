// test_compare.mjs - clustered and paired standard errors, run comparison and
// AUROC on two real runs (issue 12, items 1, 3 and 4); and two runs of
// models whose tokenizers differ, cut in bytes and paired by byte offset
// (section 8).  Two runs of the demo
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
import {mkdirSync} from "node:fs";
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

// 8. Runs whose tokenizers differ, cut in bytes (--cut-every-bytes): the demo
//    model (SentencePiece, 512 tokens) and a GPT-2 of random weights with
//    GPT-2's byte-level BPE vocabulary (tests/make_arch_model), over the same
//    corpus.  First each run's cuts, from its token rows and vocabulary
//    (vocab.text: each token's decoded bytes): token p starts at the text's
//    length less the bytes of the tokens from p on (the stored tokens end the
//    text; SentencePiece's added space makes the first start at -1, i.e. 0);
//    the cut for k EVERY bytes is the first token p >= 1 starting at or after
//    it on ASCII whitespace with p + C <= n, and cut_byte is where it starts.
//    Then the pairing: tokshift_compare's rows ('all, by byte') equal the
//    differences and paired errors of an independent join here of the two
//    runs' continuations on (ext_id, cut_byte), from their token rows.
{
    const EVERY = 40, C = 6;
    const G = join(dir, "gpt2-random.gguf"), bdir = join(dir, "bytes");
    mkdirSync(bdir);
    // (fewer documents than above: a 50,257-token vocabulary costs 100 times
    // the demo model's per token)
    const bcorpus = writeCorpus(bdir, {nStories: 3, longRepeat: 2});
    run(join(BIN, "tests", "make_arch_model"), ["gpt2", G, join(process.env.TOKSHIFT_TESTDATA, "vocab", "ggml-vocab-gpt-2.gguf")]);
    const bset = ["--window", "64", "--stride", "32", "--cut-every-bytes", String(EVERY), "--cont-len", String(C),
                  "--samples", "1", "--seed", "99", "--job-docs", "4"];
    for (const [name, mp] of [["bytesSpm", M], ["bytesGpt", G]]) {
        const {res, workers} = await runOnce({conninfo: db, runName: name, corpus: bcorpus, modelPath: mp, settings: bset,
                                              logDir: dir, nWorkers: 1});
        check(res.code === 0, `${name}: coordinator exited ${res.code}: ${res.err.slice(-2000)}`);
        for (const w of workers) {
            const r = await w.exited;
            check(r.code === 0, `${name}: worker exited ${r.code} (${r.sig}): ${r.err.slice(-2000)}`);
        }
    }
    const S = id("bytesSpm"), T = id("bytesGpt");
    check(psql(db, `SELECT tokshift_tokenizers_differ(${S}, ${T}), tokshift_runs_differ(${S}, ${T}) IS NULL,
                    tokshift_runs_differ(${A}, ${T}) LIKE '%--cut-every-bytes%'`)[0].join() === "t,t,t",
          "runs of two tokenizers cut in bytes are comparable (and without byte cuts they are not)");
    const ws = new Set([0x20, 0x0a, 0x09, 0x0d]);
    let checkedDocs = 0, allDocs = 0;
    for (const R of [S, T]) {
        const docs = psql(db, `SELECT d.doc_id, d.n_tokens, encode(convert_to(d.text, 'UTF8'), 'hex'),
                coalesce((SELECT bool_and(w.text IS NOT NULL) FROM token_view v JOIN runs r USING (run_id)
                          JOIN models m ON m.identity = r.model_identity JOIN vocab w ON w.model_id = m.model_id
                          AND w.token_id = v.token_id WHERE v.run_id = d.run_id AND v.doc_id = d.doc_id
                          AND v.kind = 'human'), false),
                (SELECT string_agg(encode(convert_to(w.text, 'UTF8'), 'hex'), ',' ORDER BY v.pos)
                   FROM token_view v JOIN runs r USING (run_id) JOIN models m ON m.identity = r.model_identity
                   JOIN vocab w ON w.model_id = m.model_id AND w.token_id = v.token_id
                  WHERE v.run_id = d.run_id AND v.doc_id = d.doc_id AND v.kind = 'human'),
                (SELECT coalesce(string_agg(cut || ':' || cut_byte, ',' ORDER BY cut), '') FROM sequences s
                  WHERE s.run_id = d.run_id AND s.doc_id = d.doc_id AND s.kind = 'human_cont')
            FROM documents d WHERE d.run_id = ${R} AND d.text IS NOT NULL ORDER BY d.doc_id`);
        for (const [doc, nTok, hex, exact, toks, stored] of docs) {
            if (Number(nTok) < 2) continue;  // (nothing scored, nothing cut)
            allDocs++;
            if (exact !== "t") continue;
            const text = Buffer.from(hex, "hex"), n = Number(nTok);
            const lens = toks.split(",").map(t => t.length / 2);  // tokens at pos 1 .. n-1
            const start = new Array(n).fill(0);
            let rest = 0;
            for (let p = n - 1; p >= 1; p--) rest += lens[p - 1], start[p] = Math.max(0, text.length - rest);
            const want = [];
            for (let target = EVERY, p = 1; ; target += EVERY) {
                while (p + C <= n && (start[p] < target || !ws.has(text[start[p]]))) p++;
                if (p + C > n) break;
                if (!want.length || want[want.length - 1][0] !== p) want.push([p, start[p]]);
            }
            check(want.map(w => w.join(":")).join(",") === stored,
                  `run ${R} document ${doc}: cuts ${stored} vs ${want.map(w => w.join(":")).join(",")} from the rows`);
            checkedDocs++;
        }
    }
    check(checkedDocs >= 0.8 * allDocs && checkedDocs >= 10, `byte cuts checked in ${checkedDocs} of ${allDocs} documents`);

    // The join, here: per run, per (ext_id, cut_byte) and kind, the sums of
    // the continuation's (and samples') token statistics.
    const cont = R => {
        const m = new Map();
        for (const t of psql(db, `SELECT d.ext_id, s.cut_byte, v.kind, v.logprob, v.entropy, coalesce(v.z::text, '')
                FROM token_view v JOIN sequences s USING (run_id, doc_id, seq_no) JOIN documents d USING (run_id, doc_id)
                WHERE v.run_id = ${R} AND v.kind <> 'human'`)) {
            const lp = Math.fround(Number(t[3])), h = Math.fround(Number(t[4]));
            const k = `${t[0]}\t${t[1]}`;
            if (!m.has(k)) m.set(k, []);
            m.get(k).push({ext: t[0], kind: t[2], s: -lp, h, g: -lp - h, z: t[5] === "" ? null : Number(t[5])});
        }
        return m;
    };
    const cs = cont(S), ct = cont(T);
    const shared = [...cs.keys()].filter(k => ct.has(k));
    const [[nA, nB, nP]] = psql(db, `SELECT * FROM tokshift_cuts_paired(${S}, ${T})`);
    const cutsOf = m => [...m.values()].filter(v => v.some(t => t.kind === "human_cont")).length;
    check(Number(nP) === shared.length && Number(nA) === cutsOf(cs) && Number(nB) === cutsOf(ct) &&
          shared.length >= 0.5 * Math.min(cutsOf(cs), cutsOf(ct)) && shared.length > 20,
          `cuts paired: ${nA}, ${nB}, ${nP} vs ${cutsOf(cs)}, ${cutsOf(ct)}, ${shared.length} here`);
    const tokS = shared.flatMap(k => cs.get(k)), tokT = shared.flatMap(k => ct.get(k));
    const rowsB = psql(db, `SELECT kind, bucket, positions, n_docs, n_a, n_b, diff_surprisal, se_diff_surprisal,
            diff_gap, se_diff_gap, diff_entropy, se_diff_entropy, coalesce(se_diff_z::text, '')
        FROM tokshift_compare(${S}, ${T}) ORDER BY kind`);
    check(rowsB.length === 2 && rowsB.every(r => r[1] === "-1" && r[2] === "all, by byte"),
          `tokshift_compare by byte: one row per kind: ${rowsB.map(r => r.slice(0, 3).join(" "))}`);
    for (const r of rowsB) {
        const sel = t => t.kind === r[0];
        const p = st => pairedSE(clusters(tokS, sel, STATS[st]), clusters(tokT, sel, STATS[st]));
        const sc = st => Math.abs(clusterSE(clusters(tokS, sel, STATS[st])).mean);
        const s = p("surprisal"), g = p("gap"), h = p("entropy"), z = p("z");
        check(Number(r[3]) === s.G && Number(r[4]) === tokS.filter(sel).length && Number(r[5]) === tokT.filter(sel).length &&
              close(num(r[6]), s.diff) && close(num(r[7]), s.se, sc("surprisal")) && close(num(r[8]), g.diff) &&
              close(num(r[9]), g.se, sc("gap")) && close(num(r[10]), h.diff) && close(num(r[11]), h.se, sc("entropy")) &&
              close(num(r[12]), z.se, sc("z")) && num(r[7]) > 0,
              `tokshift_compare by byte ${r.join(" ")} vs the join here ${JSON.stringify([s, g, h, z])}`);
    }
    console.error(`by byte: cuts checked in ${checkedDocs} of ${allDocs} documents; ${shared.length} cuts paired of ` +
                  `${cutsOf(cs)} and ${cutsOf(ct)}`);
    const out = ts(["compare", "bytesSpm", "bytesGpt", "--boot", "20"]).stdout;
    check(/at the same byte/.test(out) && /all, by byte/.test(out), `compare prints the byte pairing:\n${out}`);
}

cleanup(dir);
finish("test_compare");
