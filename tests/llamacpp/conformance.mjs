#!/usr/bin/env node
// Conformance of `tokshift score` against llama.cpp (ref.mjs): for several
// paragraphs, the ids that `tokshift tokenize --bos` gives are fed to
// llama.cpp, and every per-token logprob, entropy and top1_logprob must agree
// within the tolerance the arithmetic gives (tolerance.mjs: twice
// errbound_tool's bound on an fp32 evaluation of that row, plus the
// reference's float32 softmax), and every rank exactly (in the far tail,
// where llama.cpp's float32 probabilities tie, a rank may differ only when
// both engines put the token below probability 1e-9).
//
// Usage: node conformance.mjs TOKSHIFT_BIN ERRBOUND_TOOL [MODEL.gguf]
// The model defaults to $TOKSHIFT_TESTDATA/models/stories260K.gguf.
// Exit: 0 pass, 1 fail, 77 skip (never when TOKSHIFT_TESTDATA is set).

import {parseRef, run} from "./proc.mjs";
import {existsSync} from "node:fs";
import {dirname, join} from "node:path";
import {fileURLToPath} from "node:url";
import {tolerance} from "./tolerance.mjs";

const here = dirname(fileURLToPath(import.meta.url));
const testdata = process.env.TOKSHIFT_TESTDATA;
const [bin, boundTool] = process.argv.slice(2, 4);
const model = process.argv[4] || (testdata && join(testdata, "models", "stories260K.gguf"));
if (!bin || !boundTool) {
    console.error("usage: node conformance.mjs TOKSHIFT_BIN ERRBOUND_TOOL [MODEL.gguf]");
    process.exit(2);
}
if (!model) {
    console.error("skip: TOKSHIFT_TESTDATA is not set");
    process.exit(77);
}
if (!existsSync(model)) {
    console.error(`FAIL: model ${model} is missing`);
    process.exit(1);
}

if (!existsSync(join(here, "node_modules", "node-llama-cpp"))) {
    const msg = "node-llama-cpp is not installed: run `npm ci --ignore-scripts --prefix tests/llamacpp`";
    if (process.env.TOKSHIFT_TESTDATA) {
        console.error(`FAIL: ${msg}`);
        process.exit(1);
    }
    console.error(`skip: ${msg}`);
    process.exit(77);
}

const paragraphs = [
    "Once upon a time, there was a little girl named Lily. She loved to play outside in the sunshine.",
    "Tom had a red ball. He threw it high into the sky, and it landed in a tree!\nHis dad said, \"Let's get a ladder.\"",
    "The cat and the dog were friends. Every day they ate lunch together under the big oak tree, and then they took a long nap.",
    "Zyx 123 qwerty -- ünïcödé ☃ text the model never saw, with \"quotes\", tabs\tand\n\nblank lines.",
    "One day, a bird flew down. \"Hello,\" said the bird. \"Can I play too?\" Ben smiled and said yes. They played until the moon came out, and then everyone went home happy. The end.",
];

let failures = 0, rows = 0;
const worst = {logprob: 0, entropy: 0, top1_logprob: 0}, ofBound = {logprob: 0, entropy: 0, top1_logprob: 0};
for (const [i, text] of paragraphs.entries()) {
    const ids = run(bin, ["tokenize", "--model", model, "--bos"], text).trim();
    const ref = parseRef(run("node", [join(here, "ref.mjs"), model], ids));
    const ours = JSON.parse(run(bin, ["score", "--model", model, "--format", "json"], text));
    const bounds = JSON.parse(run(boundTool, [model], ids));
    if (ours.length !== ref.length) {
        console.error(`FAIL: paragraph ${i}: ${ours.length} rows from tokshift, ${ref.length} from llama.cpp`);
        failures++;
        continue;
    }
    for (let j = 0; j < ours.length; j++) {
        const a = ours[j], b = ref[j];
        rows++;
        if (a.pos !== b.pos || a.token_id !== b.token_id) {
            console.error(`FAIL: paragraph ${i} row ${j}: pos/token ${a.pos}/${a.token_id} vs ${b.pos}/${b.token_id}`);
            failures++;
            continue;
        }
        const tol = tolerance(a, bounds[j]);
        for (const k of Object.keys(worst)) {
            const d = Math.abs(a[k] - b[k]);
            worst[k] = Math.max(worst[k], d);
            ofBound[k] = Math.max(ofBound[k], d / tol[k]);
            if (!(d <= tol[k])) {
                console.error(`FAIL: paragraph ${i} pos ${a.pos}: ${k} ${a[k]} vs llama.cpp ${b[k]} (|d| = ${d}, tolerance ${tol[k]})`);
                failures++;
            }
        }
        const deepTail = a.logprob < Math.log(1e-9) && b.logprob < Math.log(1e-9);
        if (a.rank !== b.rank && !deepTail) {
            console.error(`FAIL: paragraph ${i} pos ${a.pos}: rank ${a.rank} vs llama.cpp ${b.rank}`);
            failures++;
        }
    }
}
console.log(`conformance: ${rows} tokens in ${paragraphs.length} paragraphs; max |d| logprob ${worst.logprob.toExponential(2)}, ` +
    `entropy ${worst.entropy.toExponential(2)}, top1_logprob ${worst.top1_logprob.toExponential(2)}; of the tolerance: ` +
    `${ofBound.logprob.toFixed(3)}, ${ofBound.entropy.toFixed(3)}, ${ofBound.top1_logprob.toFixed(3)}`);
process.exit(failures ? 1 : 0);
