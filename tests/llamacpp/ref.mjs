#!/usr/bin/env node
// Reference scorer built on llama.cpp (through node-llama-cpp 3.21.1, prebuilt
// CPU binary from @node-llama-cpp/linux-x64). The C engine's tests compare
// their per-token statistics against this script's output.
//
// Usage:
//   node tests/llamacpp/ref.mjs MODEL.gguf [--threads N] [--chunk N] [--verbose] < ids.txt
//
// stdin: whitespace-separated integer token ids (ids[0] is normally BOS).
// Nothing is tokenized here: exactly these ids are fed to the model.
//
// stdout: TSV, header `pos token_id logprob entropy rank top1_logprob`, then
// one row per pos = 1..n-1 describing ids[pos] under the model's next-token
// distribution p(. | ids[0..pos-1]):
//   logprob      = ln p(ids[pos])
//   entropy      = -sum_v p(v) ln p(v) over the full vocabulary (float64;
//                  tokens whose probability is exactly 0 are skipped)
//   rank         = 1 + number of tokens with strictly greater probability
//   top1_logprob = ln max_v p(v)
//
// How the numbers are obtained:
// - controlledEvaluate() with generateNext.probabilities on every input token
//   and the default sampler options (temperature 0 -> greedy sampler only,
//   no top-k / top-p / min-p / penalties), so the addon returns the softmax of
//   the raw logits over all llama_vocab_n_tokens() entries. The script checks
//   that the map covers the full vocabulary and fails otherwise.
// - The addon does that softmax in float32. Every probability is therefore
//   renormalised here in float64 (q = p / sum p), which removes the common
//   float32 normalisation error; what remains is the per-entry float32
//   rounding (~6e-8 relative). Probabilities that are more than ~87 nats below
//   the top one become denormal/0 in float32 and lose precision; a warning is
//   printed on stderr if the scored token is in that range.
// - KV cache in F32, flash attention off, context size > number of ids (no
//   context shift; checked), CPU only, never builds or downloads llama.cpp,
//   makes no network access. llama.cpp logs go to stderr only.
// - All ids are fed in chunks of >= 2 tokens, each with an output row, so that
//   results do not depend on the input's length or chunking (1-row batches use
//   a different matmul path that differs in the ~7th digit).
// - Rank is computed on the float32 probabilities: in the far tail (p < ~1e-9)
//   near-equal tokens can tie, so ranks there may be off by one or two.

import process from "node:process";

const HEADER = "pos\ttoken_id\tlogprob\tentropy\trank\ttop1_logprob";
// float32 smallest normal number: below it a probability has lost precision.
const FLT_MIN = 1.1754943508222875e-38;

function usage(msg) {
    if (msg) process.stderr.write(`ref.mjs: ${msg}\n`);
    process.stderr.write(
        "usage: node tests/llamacpp/ref.mjs MODEL.gguf [--threads N] [--chunk N] [--verbose] < ids.txt\n");
    process.exit(2);
}

function parseArgs(argv) {
    const opts = {model: null, threads: 1, chunk: 128, verbose: false};
    const posInt = (name, v) => {
        if (v == null || !/^[0-9]+$/.test(v) || Number(v) < 1) usage(`${name} needs a positive integer`);
        return Number(v);
    };
    for (let i = 0; i < argv.length; i++) {
        const a = argv[i];
        if (a === "--threads") opts.threads = posInt(a, argv[++i]);
        else if (a.startsWith("--threads=")) opts.threads = posInt("--threads", a.slice(10));
        else if (a === "--chunk") opts.chunk = posInt(a, argv[++i]);
        else if (a.startsWith("--chunk=")) opts.chunk = posInt("--chunk", a.slice(8));
        else if (a === "--verbose" || a === "-v") opts.verbose = true;
        else if (a === "--help" || a === "-h") usage();
        else if (a.startsWith("-") && a !== "-") usage(`unknown option ${a}`);
        else if (opts.model == null) opts.model = a;
        else usage(`unexpected argument ${a}`);
    }
    if (opts.model == null) usage("missing MODEL.gguf");
    // 1-token batches take a different llama.cpp matmul path (see below).
    if (opts.chunk < 2 || opts.chunk > 512) usage("--chunk must be between 2 and 512");
    return opts;
}

async function readStdin() {
    const chunks = [];
    for await (const c of process.stdin) chunks.push(c);
    return Buffer.concat(chunks).toString("utf8");
}

function parseIds(text) {
    const toks = text.split(/\s+/).filter((s) => s.length > 0);
    return toks.map((s) => {
        if (!/^[0-9]+$/.test(s)) throw new Error(`invalid token id ${JSON.stringify(s)} on stdin`);
        const v = Number(s);
        if (!Number.isSafeInteger(v)) throw new Error(`token id out of range: ${s}`);
        return v;
    });
}

function fmt(x) {
    if (x === Infinity) return "inf";
    if (x === -Infinity) return "-inf";
    if (Number.isNaN(x)) return "nan";
    return x.toPrecision(10);
}

function vocabSizeFromFile(model) {
    const tokens = model.fileInfo?.metadata?.tokenizer?.ggml?.tokens;
    if (Array.isArray(tokens) && tokens.length > 0) return tokens.length;
    return null;
}

// Statistics of `target` under the probability map `probs` (token -> float32 p).
function rowStats(probs, target) {
    let sum = 0;
    let pmax = 0;
    for (const p of probs.values()) {
        sum += p;
        if (p > pmax) pmax = p;
    }
    const pt = probs.get(target);
    if (pt === undefined) throw new Error(`token ${target} missing from probability map`);
    const lnSum = Math.log(sum);
    let greater = 0;
    let plnp = 0; // sum p ln p over p > 0 (unnormalised p)
    for (const p of probs.values()) {
        if (p > pt) greater++;
        if (p > 0) plnp += p * Math.log(p);
    }
    // q = p / S:  -sum q ln q = ln S - (1/S) sum p ln p
    const entropy = lnSum - plnp / sum;
    return {
        logprob: pt > 0 ? Math.log(pt) - lnSum : -Infinity,
        entropy,
        rank: 1 + greater,
        top1: Math.log(pmax) - lnSum,
        sum,
        pt,
    };
}

async function main() {
    const opts = parseArgs(process.argv.slice(2));
    const ids = parseIds(await readStdin());
    if (ids.length === 0) throw new Error("no token ids on stdin");

    const t0 = performance.now();
    const {getLlama, LlamaLogLevel} = await import("node-llama-cpp");

    const logger = (level, message) => {
        const m = String(message).replace(/\n+$/, "");
        if (m.length > 0) process.stderr.write(`[llama.cpp ${level}] ${m}\n`);
    };
    const llama = await getLlama({
        gpu: false,                 // CPU backend only (@node-llama-cpp/linux-x64)
        build: "never",             // never compile llama.cpp; fail if no usable binary
        skipDownload: true,         // never download llama.cpp sources
        usePrebuiltBinaries: true,
        existingPrebuiltBinaryMustMatchBuildOptions: false,
        progressLogs: "stderr",
        logLevel: LlamaLogLevel.warn,
        logger,
        maxThreads: opts.threads,
        debug: false,
    });
    try {
        const model = await llama.loadModel({
            modelPath: opts.model,
            gpuLayers: 0,
        });
        const nVocab = vocabSizeFromFile(model);
        if (nVocab != null) {
            for (const id of ids)
                if (id >= nVocab) throw new Error(`token id ${id} >= vocabulary size ${nVocab}`);
        }
        if (ids.length > model.trainContextSize)
            process.stderr.write(`ref.mjs: warning: ${ids.length} ids exceed the model's training context (${model.trainContextSize})\n`);

        // Context strictly larger than the number of ids: node-llama-cpp shifts
        // the context (drops tokens) as soon as it is completely full, so a
        // context of exactly n cells is not enough. Rounded to a multiple of 256
        // so that the KV layout does not vary with n.
        const contextSize = Math.max(256, Math.ceil((ids.length + 1) / 256) * 256);
        const context = await model.createContext({
            contextSize,
            batchSize: Math.min(512, contextSize),
            sequences: 1,
            flashAttention: false,
            experimentalKvCacheKeyType: "F32",
            experimentalKvCacheValueType: "F32",
            threads: {ideal: opts.threads, min: opts.threads},
        });
        if (context.contextSize <= ids.length)
            throw new Error(`context size ${context.contextSize} < ${ids.length} ids`);
        const sequence = context.getSequence();
        const t1 = performance.now();

        const out = [HEADER];
        let maxSumErr = 0;
        // Feed every id, asking for the full next-token distribution after each
        // one. The distribution after the last id is computed and discarded: that
        // way no batch ever holds a single output row. (llama.cpp takes a
        // different matmul path for 1-row batches, which changes results in the
        // ~7th significant digit; with >= 2 rows per batch the rows are
        // bit-identical whatever the batch composition.) Chunks start at fixed
        // multiples of --chunk, a 1-token tail is merged into the previous chunk,
        // and only one chunk's probability maps are alive at a time.
        const n = ids.length;
        const bounds = [];
        if (n >= 2) {
            for (let start = 0; start < n; start += opts.chunk) bounds.push([start, Math.min(n, start + opts.chunk)]);
            const last = bounds[bounds.length - 1];
            if (last[1] - last[0] === 1 && bounds.length > 1) {
                bounds.pop();
                bounds[bounds.length - 1][1] = n;
            }
        }
        for (const [start, end] of bounds) {
            const input = [];
            for (let i = start; i < end; i++) input.push([ids[i], {generateNext: {probabilities: true}}]);
            const res = await sequence.controlledEvaluate(input);
            for (let i = start; i < end; i++) {
                const probs = res[i - start]?.next?.probabilities;
                if (probs == null) throw new Error(`no probabilities returned after position ${i}`);
                if (nVocab != null && probs.size !== nVocab)
                    throw new Error(`probability map has ${probs.size} entries, vocabulary has ${nVocab}`);
                const pos = i + 1;
                if (pos >= n) continue; // distribution after the last id: not needed
                const s = rowStats(probs, ids[pos]);
                maxSumErr = Math.max(maxSumErr, Math.abs(s.sum - 1));
                if (s.pt < FLT_MIN)
                    process.stderr.write(`ref.mjs: warning: pos ${pos}: p(token ${ids[pos]}) = ${s.pt} is below float32 normal range; logprob imprecise\n`);
                out.push(`${pos}\t${ids[pos]}\t${fmt(s.logprob)}\t${fmt(s.entropy)}\t${s.rank}\t${fmt(s.top1)}`);
            }
        }
        const nFed = n >= 2 ? n : 0;
        if (sequence.nextTokenIndex !== nFed)
            throw new Error(`sequence holds ${sequence.nextTokenIndex} tokens, expected ${nFed} (context shift?)`);
        process.stdout.write(out.join("\n") + "\n");

        if (opts.verbose) {
            const t2 = performance.now();
            process.stderr.write(
                `ref.mjs: n_ids=${ids.length} n_vocab=${nVocab} ctx=${context.contextSize} threads=${opts.threads} ` +
                `load=${(t1 - t0).toFixed(0)}ms eval=${(t2 - t1).toFixed(0)}ms max|sum(p)-1|=${maxSumErr.toExponential(2)}\n`);
        }
        await context.dispose();
        await model.dispose();
    } finally {
        await llama.dispose();
    }
}

main().catch((err) => {
    process.stderr.write(`ref.mjs: error: ${err?.stack ?? err}\n`);
    process.exit(1);
});
