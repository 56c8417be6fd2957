#!/usr/bin/env node
// Conformance of every architecture against llama.cpp (ref.mjs): for each of
// llama, llama3, qwen2, qwen3, olmo2, gpt2, gptneox (parallel residual) and
// gptneox-seq (sequential residual), make_arch_model writes a GGUF with
// random weights (randmodel.h presets: 3-4 layers, d 64-128, GQA for the
// llama family, q/k/v biases and NeoX RoPE for qwen2; llama3: a head size of
// 32 beside d 96 / 4 heads and Llama 3's rope_freqs (factor 32); qwen3:
// per-head q/k RMSNorm, head size 32 beside d 128 / 8 heads; olmo2:
// post-norms only, q/k RMSNorm over all heads; phi3: fused QKV and fused
// gate-up; gemma2: GeGLU, the embedding scaled by sqrt(d), pre- and
// post-norms, attention and final logit soft-capping (caps 2 and 15, far
// below the real 50 and 30, so that they bite) and a sliding window of 16
// positions on the even layers; learned positions and tied
// output for gpt2, partial rotary (a quarter of each head) and a separate
// output for gptneox) through the project's GGUF writer, with a real
// vocabulary: the GPT-2 one of ggml-vocab-gpt-2.gguf (the SentencePiece one
// of ggml-vocab-llama-spm.gguf for llama, llama3, phi3 and gemma2: the 128k and 151k
// vocabularies of Llama 3 and Qwen cost minutes here and the ids are fed
// directly, so the vocabulary's size, not its pre-tokenizer, is what
// matters).  The ids scored are BOS and then the ids of the vocabulary's
// conformance vectors (.out), fed to both engines as ids (`tokshift score
// --ids`), so this test does not depend on the tokenizers.  Every logprob,
// entropy and top1_logprob must agree within the tolerance the arithmetic
// gives for its row (tolerance.mjs, from errbound_tool's bounds: GELU's fp16
// steps included); ranks must agree up
// to near-ties (within 1 + rank/1000), since with 50257 tokens many
// probabilities in the tail lie closer together than the tolerance; and the
// distributions must be non-degenerate (median entropy between 1 nat and
// ln V - 1).  The generated models live in a temporary directory that is
// removed at the end.
//
// Usage: node conformance_arch.mjs TOKSHIFT_BIN MAKE_ARCH_MODEL_BIN ERRBOUND_TOOL [PRESET...]
// Exit: 0 pass, 1 fail, 77 skip (only when TOKSHIFT_TESTDATA is unset).

import {existsSync, mkdtempSync, readFileSync, rmSync} from "node:fs";
import {tmpdir} from "node:os";
import {dirname, join} from "node:path";
import {fileURLToPath} from "node:url";
import {tolerance} from "./tolerance.mjs";

import {parseRef, run, runAsync} from "./proc.mjs";

const here = dirname(fileURLToPath(import.meta.url));
const N_IDS = 128; // after BOS
const testdata = process.env.TOKSHIFT_TESTDATA;
const [bin, gen, boundTool, ...only] = process.argv.slice(2);
if (!bin || !gen || !boundTool) {
    console.error("usage: node conformance_arch.mjs TOKSHIFT_BIN MAKE_ARCH_MODEL_BIN ERRBOUND_TOOL [PRESET...]");
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

const cases = [
    {preset: "llama", vocab: "ggml-vocab-llama-spm.gguf"},
    {preset: "llama3", vocab: "ggml-vocab-llama-spm.gguf"},
    {preset: "qwen2", vocab: "ggml-vocab-gpt-2.gguf"},
    {preset: "qwen3", vocab: "ggml-vocab-gpt-2.gguf"},
    {preset: "olmo2", vocab: "ggml-vocab-gpt-2.gguf"},
    {preset: "phi3", vocab: "ggml-vocab-llama-spm.gguf"},
    {preset: "gemma2", vocab: "ggml-vocab-llama-spm.gguf"},
    {preset: "gpt2", vocab: "ggml-vocab-gpt-2.gguf"},
    {preset: "gptneox", vocab: "ggml-vocab-gpt-2.gguf"},
    {preset: "gptneox-seq", vocab: "ggml-vocab-gpt-2.gguf"},
].filter(c => only.length === 0 || only.includes(c.preset));

for (const c of cases) {
    for (const f of [c.vocab, `${c.vocab}.out`]) {
        if (!existsSync(join(testdata, "vocab", f))) {
            console.error(`FAIL: TOKSHIFT_TESTDATA is set but ${join(testdata, "vocab", f)} is missing`);
            process.exit(1);
        }
    }
}

const dir = mkdtempSync(join(tmpdir(), "tokshift-arch-"));
let failures = 0;
const summary = [];
try {
    const jobs = cases.map(c => {
        const model = join(dir, `${c.preset}.gguf`);
        const vocab = join(testdata, "vocab", c.vocab);
        const vocabSize = Number(run(gen, [c.preset, model, vocab]).trim()); // it prints n_vocab
        const bos = run(bin, ["tokenize", "--model", model, "--bos"], "").trim();
        if (!/^[0-9]+$/.test(bos)) throw new Error(`${c.preset}: the vocabulary has no BOS (got '${bos}')`);
        const ids = [bos, ...readFileSync(`${vocab}.out`, "utf8").split(/\s+/).filter(s => s.length)]
            .slice(0, N_IDS + 1).join(" ");
        return {c, model, ids, vocabSize, ref: runAsync("node", [join(here, "ref.mjs"), model], ids)};
    });
    for (const {c, model, ids, vocabSize, ref} of jobs) {
        const t0 = performance.now();
        const ours = JSON.parse(run(bin, ["score", "--model", model, "--ids", "--format", "json"], ids));
        const bounds = JSON.parse(run(boundTool, [model], ids));
        const theirs = parseRef(await ref);
        const worst = {logprob: 0, entropy: 0, top1_logprob: 0};
        let ofTol = 0;
        let rankEqual = 0, rankNear = 0;
        if (ours.length !== theirs.length || ours.length !== N_IDS) {
            console.error(`FAIL: ${c.preset}: ${ours.length} rows from tokshift, ${theirs.length} from llama.cpp`);
            failures++;
            continue;
        }
        for (let j = 0; j < ours.length; j++) {
            const a = ours[j], b = theirs[j];
            if (a.pos !== b.pos || a.token_id !== b.token_id) {
                console.error(`FAIL: ${c.preset} row ${j}: pos/token ${a.pos}/${a.token_id} vs ${b.pos}/${b.token_id}`);
                failures++;
                continue;
            }
            const tol = tolerance(a, bounds[j]);
            for (const k of Object.keys(worst)) {
                const d = Math.abs(a[k] - b[k]);
                worst[k] = Math.max(worst[k], d);
                ofTol = Math.max(ofTol, d / tol[k]);
                if (!(d <= tol[k])) {
                    console.error(`FAIL: ${c.preset} pos ${a.pos}: ${k} ${a[k]} vs llama.cpp ${b[k]} (|d| = ${d.toExponential(2)}, tolerance ${tol[k].toExponential(2)})`);
                    failures++;
                }
            }
            if (a.rank === b.rank) rankEqual++;
            else if (Math.abs(a.rank - b.rank) <= 1 + b.rank / 1000) rankNear++;
            else {
                console.error(`FAIL: ${c.preset} pos ${a.pos}: rank ${a.rank} vs llama.cpp ${b.rank}`);
                failures++;
            }
        }
        // Non-degenerate: neither (nearly) one-hot nor (nearly) uniform.
        const ent = ours.map(r => r.entropy).sort((x, y) => x - y);
        const median = ent[ent.length >> 1];
        if (!(median > 1 && median < Math.log(vocabSize) - 1)) {
            console.error(`FAIL: ${c.preset}: median entropy ${median.toFixed(2)} is degenerate (ln V = ${Math.log(vocabSize).toFixed(2)})`);
            failures++;
        }
        summary.push(`${c.preset.padEnd(12)} max |d| logprob ${worst.logprob.toExponential(2)}  entropy ${worst.entropy.toExponential(2)}  ` +
            `top1 ${worst.top1_logprob.toExponential(2)} (${ofTol.toFixed(3)} of the tolerance)  ranks ${rankEqual}/${ours.length} equal (${rankNear} near-ties)  ` +
            `entropy ${ent[0].toFixed(2)}..${median.toFixed(2)}..${ent[ent.length - 1].toFixed(2)} of ln V ${Math.log(vocabSize).toFixed(2)}  ` +
            `(${((performance.now() - t0) / 1000).toFixed(1)} s)`);
    }
} catch (e) {
    console.error(`FAIL: ${e.message}`);
    failures++;
} finally {
    rmSync(dir, {recursive: true, force: true});
}
for (const s of summary) console.log(s);
console.log(`conformance_arch: ${summary.length}/${cases.length} models: ${failures ? "FAIL" : "ok"}`);
process.exit(failures ? 1 : 0);
