#!/usr/bin/env node
// Conformance of quantized GGUF scoring against llama.cpp (ref.mjs), for the
// files of $TOKSHIFT_TESTDATA/quant (one random-weight llama quantized by
// llama.cpp's llama-quantize to every type tokshift supports).  The ids of one
// paragraph (`tokshift tokenize --bos`) are scored three ways:
//
//   ours   tokshift on the quantized file (weights kept quantized, dequantized
//          a panel at a time, fp32 products);
//   twin   llama.cpp on the file's F32 twin (dequant_gguf: every tensor
//          dequantized bit-exactly as llama.cpp does, stored F32);
//   quant  llama.cpp on the quantized file itself.
//
// ours vs twin is the conformance: the same weights, fp32 arithmetic on both
// sides, so logprob, entropy and top1_logprob agree within each row's
// tolerance from the arithmetic (tolerance.mjs with errbound_tool's bounds,
// as conformance.mjs) and ranks up to near-ties.
//
// ours vs quant is looser by construction: llama.cpp's CPU backend does not
// multiply quantized weights by fp32 activations; it first rounds each
// activation row to 8-bit integers per block (Q8_0: 32 values, Q8_K: 256)
// with scale max|x|/127 and takes integer dot products, so each activation
// moves by up to max|x_block|/254.  For this model's final product alone
// (d = 256, |w| ~ 0.016, RMS-normalised activations up to ~4) that is up to
// 256 * 0.016 * 4 / 254 ~ 0.065 per logit in the worst case and ~2e-3 for
// random signs, before the same rounding in every earlier product adds its
// share.  The test allows TOL_Q = 0.05 nats, prints what it observes, and
// requires the ours-vs-quant gap to be of that activation-rounding kind:
// twin and quant must differ from each other as much as ours and quant do
// (the gap is llama.cpp's rounding, not ours).
//
// Usage: node conformance_quant.mjs TOKSHIFT_BIN DEQUANT_GGUF_BIN ERRBOUND_TOOL [TYPE...]
// Exit: 0 pass, 1 fail, 77 skip (only when TOKSHIFT_TESTDATA is unset).

import {existsSync, mkdtempSync, rmSync} from "node:fs";
import {tmpdir} from "node:os";
import {dirname, join} from "node:path";
import {fileURLToPath} from "node:url";
import {tolerance} from "./tolerance.mjs";

import {parseRef, run, runAsync} from "./proc.mjs";

const here = dirname(fileURLToPath(import.meta.url));
const TOL_Q = 0.05;
const testdata = process.env.TOKSHIFT_TESTDATA;
const [bin, dequant, boundTool, ...only] = process.argv.slice(2);
if (!bin || !dequant || !boundTool) {
    console.error("usage: node conformance_quant.mjs TOKSHIFT_BIN DEQUANT_GGUF_BIN ERRBOUND_TOOL [TYPE...]");
    process.exit(2);
}
if (!testdata) {
    console.error("skip: TOKSHIFT_TESTDATA is not set");
    process.exit(77);
}
if (!existsSync(join(here, "node_modules", "node-llama-cpp"))) {
    console.error("FAIL: node-llama-cpp is not installed: run `npm ci --ignore-scripts --prefix tests/llamacpp`");
    process.exit(1);
}
// Nine files hold every supported type (Q2_K: Q2_K and Q3_K; Q3_K_M: Q3_K,
// Q4_K, Q5_K and Q6_K; Q6_K is every file's output); llama.cpp's own
// quantized arithmetic is compared on three of them (one legacy, one K and
// one IQ mix).  That keeps the test near half a minute; name files (Q4_K_M,
// Q5_K_M, Q6_K, ...) to run those, fully compared.
const types = (only.length ? only : ["Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0", "Q2_K", "Q3_K_M", "IQ4_NL", "IQ4_XS"]);
const againstQuant = new Set(only.length ? only : ["Q8_0", "Q3_K_M", "IQ4_XS"]);
for (const t of types) {
    const f = join(testdata, "quant", `model.${t}.gguf`);
    if (!existsSync(f)) {
        console.error(`FAIL: TOKSHIFT_TESTDATA is set but ${f} is missing`);
        process.exit(1);
    }
}
const text = "One day, a bird flew down. \"Hello,\" said the bird. \"Can I play too?\" Ben smiled and said yes. " +
    "They played until the moon came out, and then everyone went home happy. The end.";


const KEYS = ["logprob", "entropy", "top1_logprob"];
// Largest |a - b| per statistic over rows; rows must describe the same tokens.
// With bounds (errbound_tool's rows), also the rows beyond their tolerance
// (tolerance.mjs) and the largest tolerance.
function compare(label, as, bs, bounds) {
    if (as.length !== bs.length || as.length < 20) throw new Error(`${label}: ${as.length} vs ${bs.length} rows`);
    const worst = {logprob: 0, entropy: 0, top1_logprob: 0};
    let ranksFar = 0, beyond = 0, maxTol = 0;
    for (let j = 0; j < as.length; j++) {
        const a = as[j], b = bs[j];
        if (a.pos !== b.pos || a.token_id !== b.token_id)
            throw new Error(`${label} row ${j}: pos/token ${a.pos}/${a.token_id} vs ${b.pos}/${b.token_id}`);
        const tol = bounds ? tolerance(a, bounds[j]) : null;
        for (const k of KEYS) {
            const d = Math.abs(a[k] - b[k]);
            worst[k] = Math.max(worst[k], d);
            if (tol) {
                maxTol = Math.max(maxTol, tol[k]);
                if (!(d <= tol[k]) && beyond++ < 5)
                    console.error(`${label} pos ${a.pos}: ${k} ${a[k]} vs ${b[k]} (|d| ${d.toExponential(2)}, tolerance ${tol[k].toExponential(2)})`);
            }
        }
        if (Math.abs(a.rank - b.rank) > 1 + b.rank / 1000) ranksFar++;
    }
    return {worst, ranksFar, beyond, maxTol, max: Math.max(...KEYS.map(k => worst[k]))};
}

const dir = mkdtempSync(join(tmpdir(), "tokshift-quant-"));
let failures = 0;
const summary = [];
const fmt = r => KEYS.map(k => r.worst[k].toExponential(2)).join("/");
try {
    for (const t of types) { // one file at a time; its two llama.cpp runs overlap tokshift's
        const model = join(testdata, "quant", `model.${t}.gguf`), twinPath = join(dir, `${t}.f32.gguf`);
        run(dequant, [model, twinPath]);
        const ids = run(bin, ["tokenize", "--model", model, "--bos"], text).trim();
        const twinRef = runAsync("node", [join(here, "ref.mjs"), twinPath], ids);
        const quantRef = againstQuant.has(t) ? runAsync("node", [join(here, "ref.mjs"), model], ids) : null;
        const ours = JSON.parse(run(bin, ["score", "--model", model, "--ids", "--format", "json"], ids));
        const twin = parseRef(await twinRef);
        const bounds = JSON.parse(run(boundTool, [model], ids));
        const c = compare(`${t} ours/twin`, ours, twin, bounds);
        if (c.beyond || c.ranksFar) {
            console.error(`FAIL: ${t}: tokshift on the quantized file vs llama.cpp on its F32 twin: max |d| ` +
                `${fmt(c)}, ${c.beyond} beyond their rows' tolerance, ${c.ranksFar} ranks apart`);
            failures++;
        }
        let line = `${t.padEnd(7)} ${ours.length} tokens; max |d| logprob/entropy/top1: vs llama.cpp on the F32 twin ${fmt(c)}`;
        if (quantRef) {
            const quant = parseRef(await quantRef);
            const q = compare(`${t} ours/quant`, ours, quant), tq = compare(`${t} twin/quant`, twin, quant);
            if (!(q.max <= TOL_Q)) {
                console.error(`FAIL: ${t}: tokshift vs llama.cpp on the quantized file: max |d| ${fmt(q)} (allowed ${TOL_Q})`);
                failures++;
            }
            // The gap to llama.cpp-on-quant is llama.cpp's activation
            // rounding: its own F32 twin is as far from it.
            if (!(Math.abs(q.max - tq.max) <= 2 * c.maxTol)) {
                console.error(`FAIL: ${t}: tokshift is ${q.max.toExponential(2)} from llama.cpp-on-quant but ` +
                    `llama.cpp's F32 twin is ${tq.max.toExponential(2)} from it`);
                failures++;
            }
            line += `; vs llama.cpp on the quantized file ${fmt(q)} (llama.cpp twin vs quantized: ${fmt(tq)})`;
        }
        summary.push(line);
    }
} catch (e) {
    console.error(`FAIL: ${e.message}`);
    failures++;
} finally {
    rmSync(dir, {recursive: true, force: true});
}
for (const s of summary) console.log(s);
console.log(`conformance_quant: ${summary.length}/${types.length} files; per-row tolerances from the arithmetic against the F32 twin, ` +
    `${TOL_Q} against llama.cpp's quantized arithmetic: ${failures ? "FAIL" : "ok"}`);
process.exit(failures ? 1 : 0);
