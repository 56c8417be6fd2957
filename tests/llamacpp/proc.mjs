// Child processes and llama.cpp reference output for the conformance
// scripts (conformance_arch.mjs, conformance_quant.mjs): what they share.

import {spawn, spawnSync} from "node:child_process";

// Runs cmd with input on stdin; returns stdout, or throws with stderr when
// it exits non-zero.
export function run(cmd, args, input) {
    const r = spawnSync(cmd, args, {input, encoding: "utf8", maxBuffer: 1 << 28});
    if (r.status !== 0) throw new Error(`${cmd} ${args.join(" ")} exited ${r.status}\n${r.stderr}`);
    return r.stdout;
}

// The same, without blocking: llama.cpp for one model runs while tokshift
// scores another.
export function runAsync(cmd, args, input) {
    return new Promise((resolve, reject) => {
        const p = spawn(cmd, args, {stdio: ["pipe", "pipe", "pipe"]});
        let out = "", errText = "";
        p.stdout.on("data", d => out += d);
        p.stderr.on("data", d => errText += d);
        p.on("error", reject);
        p.on("close", code => code === 0 ? resolve(out)
            : reject(new Error(`${cmd} ${args.join(" ")} exited ${code}\n${errText}`)));
        p.stdin.end(input);
    });
}

// ref.mjs's TSV as rows shaped like `tokshift score --format json`'s.
export function parseRef(out) {
    return out.trim().split("\n").slice(1).map(l => l.split("\t"))
        .map(([pos, tok, lp, h, rank, top1]) =>
            ({pos: +pos, token_id: +tok, logprob: +lp, entropy: +h, rank: +rank, top1_logprob: +top1}));
}
