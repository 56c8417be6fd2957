// test_fetch.mjs - `tokshift fetch` against a fake Hugging Face Hub on
// loopback (fakehub.mjs): nothing leaves the machine.
//
//   node tests/test_fetch.mjs TOKSHIFT_BIN
//
// The fake Hub serves the project's own test data laid out as the Hub lays
// out repositories: ggml-org/tiny-llamas with stories260K.gguf (LFS) from
// $TOKSHIFT_TESTDATA/models, and tokshift-test/tiny-llama-hf, a Hugging Face
// directory written here (a 2-layer Llama with seeded random weights in two
// safetensors shards and their index, a byte-level tokenizer.json,
// tokenizer_config.json, and files tokshift does not read: README.md,
// pytorch_model.bin).  Cases:
//   - a single GGUF whose first download is cut half-way by the server: it
//     resumes with a Range request from where it stopped, and the file is
//     byte for byte the original; `tokshift score` reads it;
//   - a part file left by an earlier run is continued (Range from its size),
//     or started over when the server ignores Range (200, the whole file);
//     a verified file already there (by SHA-256, or git blob id for files
//     kept in git) is not downloaded again;
//   - the whole directory: exactly the files tokshift reads, byte for byte,
//     SHA256SUMS as `sha256sum -c` reads it; `tokshift score` reads it;
//   - a corrupted download (the server changes a byte): refused, naming the
//     file, the expected and the actual SHA-256; no file and no part left;
//     a corrupted small file kept in git: refused by its git blob id (the
//     listing's blobId);
//   - a private repository: refused without HF_TOKEN (the message says so),
//     fetched with it, the token sent as "Authorization: Bearer" on every
//     request and never printed; without HF_TOKEN, the token file in
//     HF_HOME (where the Hub's own tools save it) is used;
//   - an unknown repository, revision or file: a clear error, exit 1;
//   - the mirror (TOKSHIFT_MODEL_MIRROR) with HF_HUB_OFFLINE=1 and the Hub
//     unreachable: files copied and checked against the mirror's SHA256SUMS;
//     a damaged mirror file is refused by name.
// Exit 77 (skip) without $TOKSHIFT_TESTDATA.
import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { startFakeHub, sha256, gitBlob } from './fakehub.mjs';

const bin = process.argv[2];
const testdata = process.env.TOKSHIFT_TESTDATA;
if (!bin) { console.error('usage: test_fetch.mjs TOKSHIFT_BIN'); process.exit(2); }
const ggufPath = testdata && path.join(testdata, 'models', 'stories260K.gguf');
if (!ggufPath || !fs.existsSync(ggufPath)) {
  console.log('SKIP: TOKSHIFT_TESTDATA (with models/stories260K.gguf) is not set');
  process.exit(77);
}

let failures = 0;
const check = (ok, what) => {
  console.log(`${ok ? 'ok  ' : 'FAIL'} ${what}`);
  if (!ok) failures++;
};

// ---- the Hugging Face directory (seeded, so the same bytes every run) ----
function rng(seed) {
  let s = BigInt(seed);
  return () => { // splitmix64 -> [-1, 1)
    s = (s + 0x9e3779b97f4a7c15n) & 0xffffffffffffffffn;
    let z = s;
    z = ((z ^ (z >> 30n)) * 0xbf58476d1ce4e5b9n) & 0xffffffffffffffffn;
    z = ((z ^ (z >> 27n)) * 0x94d049bb133111ebn) & 0xffffffffffffffffn;
    z ^= z >> 31n;
    return Number(z >> 11n) / 2 ** 53 * 2 - 1;
  };
}

function safetensors(tensors) {
  const header = {};
  let off = 0;
  for (const t of tensors) {
    header[t.name] = { dtype: 'F32', shape: t.shape, data_offsets: [off, off + t.data.byteLength] };
    off += t.data.byteLength;
  }
  header.__metadata__ = { format: 'pt' };
  let h = JSON.stringify(header);
  h += ' '.repeat((8 - (h.length % 8)) % 8);
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(h.length));
  return Buffer.concat([len, Buffer.from(h), ...tensors.map((t) => Buffer.from(t.data.buffer))]);
}

// GPT-2's byte-to-unicode alphabet (tokenizer.json's byte-level pieces).
function byteChars() {
  const bs = [];
  for (let i = 33; i <= 126; i++) bs.push(i);
  for (let i = 161; i <= 172; i++) bs.push(i);
  for (let i = 174; i <= 255; i++) bs.push(i);
  const cs = bs.slice();
  for (let b = 0, n = 0; b < 256; b++) if (!bs.includes(b)) { bs.push(b); cs.push(256 + n++); }
  const map = new Array(256);
  bs.forEach((b, i) => { map[b] = String.fromCodePoint(cs[i]); });
  return map;
}

function hfRepoFiles() {
  const d = 32, nLayer = 2, nHead = 4, nKv = 2, ff = 64, hd = d / nHead;
  const bc = byteChars();
  const vocab = {};
  bc.forEach((ch, b) => { vocab[ch] = b; });
  vocab.he = 256;
  vocab[`${bc[32]}t`] = 257;
  vocab['<|endoftext|>'] = 258;
  const V = 259;
  const rnd = rng(20261203);
  const mat = (name, rows, cols) => {
    const a = new Float32Array(rows * cols);
    for (let i = 0; i < a.length; i++) a[i] = rnd() * 0.3;
    return { name, shape: [rows, cols], data: a };
  };
  const ones = (name, n) => ({ name, shape: [n], data: new Float32Array(n).fill(1) });
  const shard1 = [mat('model.embed_tokens.weight', V, d), ones('model.norm.weight', d), mat('lm_head.weight', V, d)];
  const shard2 = [];
  for (let l = 0; l < nLayer; l++) {
    const p = `model.layers.${l}.`;
    (l === 0 ? shard1 : shard2).push(
      ones(`${p}input_layernorm.weight`, d), mat(`${p}self_attn.q_proj.weight`, nHead * hd, d),
      mat(`${p}self_attn.k_proj.weight`, nKv * hd, d), mat(`${p}self_attn.v_proj.weight`, nKv * hd, d),
      mat(`${p}self_attn.o_proj.weight`, d, nHead * hd), ones(`${p}post_attention_layernorm.weight`, d),
      mat(`${p}mlp.gate_proj.weight`, ff, d), mat(`${p}mlp.up_proj.weight`, ff, d), mat(`${p}mlp.down_proj.weight`, d, ff));
  }
  const names = ['model-00001-of-00002.safetensors', 'model-00002-of-00002.safetensors'];
  const weightMap = {};
  let total = 0;
  [shard1, shard2].forEach((s, i) => s.forEach((t) => { weightMap[t.name] = names[i]; total += t.data.byteLength; }));
  const bl = { type: 'ByteLevel', add_prefix_space: false, trim_offsets: true, use_regex: true };
  const tokenizer = {
    version: '1.0', truncation: null, padding: null,
    added_tokens: [{ id: 258, content: '<|endoftext|>', single_word: false, lstrip: false, rstrip: false, normalized: false, special: true }],
    normalizer: null, pre_tokenizer: bl, post_processor: bl, decoder: bl,
    model: { type: 'BPE', dropout: null, unk_token: null, continuing_subword_prefix: '', end_of_word_suffix: '',
      fuse_unk: false, byte_fallback: false, vocab, merges: ['h e', `${bc[32]} t`] },
  };
  const config = {
    architectures: ['LlamaForCausalLM'], model_type: 'llama', hidden_size: d, num_hidden_layers: nLayer,
    num_attention_heads: nHead, num_key_value_heads: nKv, intermediate_size: ff, max_position_embeddings: 128,
    rms_norm_eps: 1e-5, rope_theta: 10000.0, vocab_size: V, tie_word_embeddings: false, hidden_act: 'silu',
    torch_dtype: 'float32',
  };
  const j = (o) => Buffer.from(JSON.stringify(o, null, 2) + '\n');
  return {
    '.gitattributes': Buffer.from('*.safetensors filter=lfs diff=lfs merge=lfs -text\n*.bin filter=lfs diff=lfs merge=lfs -text\n'),
    'README.md': Buffer.from('# tiny-llama-hf\nRandom weights, for tokshift\'s tests.\n'),
    'config.json': j(config),
    'tokenizer.json': j(tokenizer),
    'tokenizer_config.json': j({ bos_token: '<|endoftext|>', eos_token: '<|endoftext|>', add_bos_token: true }),
    'model.safetensors.index.json': j({ metadata: { total_size: total }, weight_map: weightMap }),
    [names[0]]: safetensors(shard1),
    [names[1]]: safetensors(shard2),
    'pytorch_model.bin': Buffer.from(new Uint8Array(4096).map((_, i) => i * 7)),
  };
}

// ---- the fake Hub ---------------------------------------------------------
const gguf = fs.readFileSync(ggufPath);
const lfs = (p) => /\.(gguf|safetensors|bin)$/.test(p);
const ggufRepo = (extra) => ({
  commit: 'c0ffee0000000000000000000000000000000001', lfs,
  files: { '.gitattributes': Buffer.from('*.gguf filter=lfs diff=lfs merge=lfs -text\n'), 'README.md': Buffer.from('# tiny llamas\n'), 'stories260K.gguf': gguf },
  ...extra,
});
const hfFiles = hfRepoFiles();
const TOKEN = 'hf_fakeTokenForTests0123456789';
const hub = await startFakeHub({
  'ggml-org/tiny-llamas': ggufRepo({ dropOnce: true }),
  'tokshift-test/tiny-llama-hf': { commit: 'c0ffee0000000000000000000000000000000002', lfs, files: hfFiles },
  'tokshift-test/corrupt': ggufRepo({ corrupt: true }),
  'tokshift-test/private': ggufRepo({ token: TOKEN }),
  'tokshift-test/no-range': ggufRepo({ noRange: true }),
  'tokshift-test/corrupt-hf': { commit: 'c0ffee0000000000000000000000000000000003', lfs, files: hfFiles, corrupt: (p) => p === 'config.json' },
});

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'tokshift-fetch-'));
// HF_HOME: an empty folder, so that no token saved on this machine is used.
const hfHome = path.join(tmp, 'hf-home');
fs.mkdirSync(hfHome);
const baseEnv = { ...process.env, HF_ENDPOINT: hub.url, NO_COLOR: '1', HF_HOME: hfHome };
for (const k of ['HF_TOKEN', 'HF_TOKEN_PATH', 'TOKSHIFT_MODEL_MIRROR', 'HF_HUB_OFFLINE']) delete baseEnv[k];
// Asynchronous: the fake Hub answers from this process's event loop.
function tokshift(args, env = {}, input = '') {
  return new Promise((resolve) => {
    const p = spawn(bin, args, { env: { ...baseEnv, ...env } });
    let out = '', err = '';
    const timer = setTimeout(() => p.kill('SIGKILL'), 60000);
    p.stdout.on('data', (d) => { out += d; });
    p.stderr.on('data', (d) => { err += d; });
    p.on('close', (code) => { clearTimeout(timer); resolve({ code, out, err }); });
    p.stdin.end(input);
  });
}
const fetch = (args, env) => tokshift(['fetch', ...args], env);
const requests = (from, re) => hub.log.slice(from).filter((e) => re.test(e.url));
const same = (file, bytes) => fs.existsSync(file) && fs.readFileSync(file).equals(bytes);
const scoreWorks = async (model) => {
  const r = await tokshift(['score', '--model', model], {}, 'Once upon a time, there was a little cat.\n');
  return r.code === 0 && r.out.split('\n').length > 5 ? true : (console.log(r.err), false);
};

try {
  // 1. One GGUF; the server cuts the first download half-way.
  let mark = hub.log.length;
  const outG = path.join(tmp, 'gguf');
  let r = await fetch(['ggml-org/tiny-llamas:stories260K.gguf', '--out', outG]);
  const fileG = path.join(outG, 'stories260K.gguf');
  check(r.code === 0 && r.out.trim() === fileG, `single file: exit 0, prints its path (${r.code}: ${r.err.trim().split('\n').pop()})`);
  check(same(fileG, gguf), 'single file: byte for byte the original');
  const cdn = requests(mark, /^\/cdn\//);
  const resumed = cdn.length === 2 && cdn[0].range === null && /^bytes=[1-9]\d*-$/.test(cdn[1].range || '');
  check(resumed, `interrupted download resumed with a Range request (${JSON.stringify(cdn.map((e) => e.range))})`);
  check(/resuming after \d+ bytes/.test(r.err), 'the resume is logged');
  check(!fs.existsSync(fileG + '.part'), 'no part file left');
  check(requests(mark, /^\/api\/models\/ggml-org\/tiny-llamas\/revision\/main\?blobs=true$/).length === 1, 'the listing is GET /api/models/REPO/revision/main?blobs=true');
  check(requests(mark, /^\/ggml-org\/tiny-llamas\/resolve\/c0ffee0+1\/stories260K\.gguf$/).length === 2, 'downloads name the commit the listing gave');
  check(await scoreWorks(fileG), 'tokshift score reads the fetched GGUF');

  // 2. Already there and verified: not downloaded again.
  mark = hub.log.length;
  r = await fetch(['ggml-org/tiny-llamas:stories260K.gguf', '--out', outG]);
  check(r.code === 0 && requests(mark, /resolve|cdn/).length === 0 && /already here/.test(r.err), 'a verified file is not downloaded again');

  // 3. A part file of an earlier run is continued.
  const outP = path.join(tmp, 'gguf-part');
  fs.mkdirSync(outP);
  fs.writeFileSync(path.join(outP, 'stories260K.gguf.part'), gguf.subarray(0, 100000));
  mark = hub.log.length;
  r = await fetch(['ggml-org/tiny-llamas:stories260K.gguf', '--out', outP]);
  const cdnP = requests(mark, /^\/cdn\//);
  check(r.code === 0 && cdnP.length === 1 && cdnP[0].range === 'bytes=100000-', `an earlier run's part file is continued (${JSON.stringify(cdnP.map((e) => e.range))})`);
  check(same(path.join(outP, 'stories260K.gguf'), gguf), 'the continued file is the original');

  // 3b. A server that ignores Range answers 200 with the whole file: the
  // part file is started over.
  const outN = path.join(tmp, 'no-range');
  fs.mkdirSync(outN);
  fs.writeFileSync(path.join(outN, 'stories260K.gguf.part'), Buffer.alloc(5000, 0x55));
  mark = hub.log.length;
  r = await fetch(['tokshift-test/no-range:stories260K.gguf', '--out', outN]);
  const cdnN = requests(mark, /^\/cdn\//);
  check(r.code === 0 && cdnN.length === 1 && cdnN[0].range === 'bytes=5000-' && same(path.join(outN, 'stories260K.gguf'), gguf),
    'a server that ignores Range: the part file is started over, the file is the original');

  // 4. The whole Hugging Face directory.
  mark = hub.log.length;
  const outH = path.join(tmp, 'hf');
  r = await fetch(['tokshift-test/tiny-llama-hf', '--out', outH]);
  check(r.code === 0 && r.out.trim() === outH, `directory: exit 0, prints the folder (${r.code}: ${r.err.trim().split('\n').pop()})`);
  const want = ['config.json', 'tokenizer.json', 'tokenizer_config.json', 'model.safetensors.index.json',
    'model-00001-of-00002.safetensors', 'model-00002-of-00002.safetensors'];
  const got = fs.readdirSync(outH).filter((f) => f !== 'SHA256SUMS').sort();
  check(JSON.stringify(got) === JSON.stringify([...want].sort()), `directory: exactly the files tokshift reads (${got.join(' ')})`);
  check(want.every((f) => same(path.join(outH, f), hfFiles[f])), 'directory: every file byte for byte');
  const sums = fs.readFileSync(path.join(outH, 'SHA256SUMS'), 'utf8').trim().split('\n');
  check(sums.length === want.length && want.every((f) => sums.includes(`${sha256(hfFiles[f])}  ${f}`)), 'SHA256SUMS lists every file with its sha256');
  const c = spawnSync('sha256sum', ['-c', '--strict', '--quiet', 'SHA256SUMS'], { cwd: outH, encoding: 'utf8' });
  if (!c.error) check(c.status === 0, 'sha256sum -c SHA256SUMS passes');
  check(await scoreWorks(outH), 'tokshift score reads the fetched directory');
  mark = hub.log.length;
  r = await fetch(['tokshift-test/tiny-llama-hf', '--out', outH, '--revision', 'c0ffee0000000000000000000000000000000002']);
  check(r.code === 0 && requests(mark, /resolve|cdn/).length === 0 && (r.err.match(/already here/g) || []).length === want.length,
    '--revision COMMIT; every file already verified (LFS by sha256, the others by git blob id) is kept');

  // 5. A corrupted download.
  const outC = path.join(tmp, 'corrupt');
  r = await fetch(['tokshift-test/corrupt:stories260K.gguf', '--out', outC]);
  const bad = Buffer.from(gguf);
  bad[bad.length >> 1] ^= 0xff;
  check(r.code === 1, `corrupted file: exit 1 (${r.code})`);
  check(r.err.includes('stories260K.gguf') && r.err.includes(`expected ${sha256(gguf)}`) && r.err.includes(`got ${sha256(bad)}`),
    `corrupted file: the message names the file, the expected and the actual sha256 (${r.err.trim().split('\n').pop()})`);
  check(!fs.existsSync(path.join(outC, 'stories260K.gguf')) && !fs.existsSync(path.join(outC, 'stories260K.gguf.part')), 'corrupted file: neither the file nor its part file is left');

  // 5b. A small file kept in git, corrupted: its git blob id does not match.
  r = await fetch(['tokshift-test/corrupt-hf', '--out', path.join(tmp, 'corrupt-hf')]);
  const badCfg = Buffer.from(hfFiles['config.json']);
  badCfg[badCfg.length >> 1] ^= 0xff;
  check(r.code === 1 && r.err.includes(`config.json: wrong git blob id: expected ${gitBlob(hfFiles['config.json'])}`) &&
    r.err.includes(`got ${gitBlob(badCfg)}`), `a corrupted file kept in git: refused by its git blob id (${r.err.trim().split('\n').pop()})`);

  // 6. A private repository and HF_TOKEN.
  const outT = path.join(tmp, 'private');
  r = await fetch(['tokshift-test/private:stories260K.gguf', '--out', outT]);
  check(r.code === 1 && /401/.test(r.err) && /HF_TOKEN/.test(r.err), `private repository without HF_TOKEN: refused, the message names HF_TOKEN (${r.err.trim().split('\n').pop()})`);
  mark = hub.log.length;
  r = await fetch(['tokshift-test/private:stories260K.gguf', '--out', outT], { HF_TOKEN: TOKEN });
  const priv = hub.log.slice(mark);
  check(r.code === 0 && same(path.join(outT, 'stories260K.gguf'), gguf), 'private repository with HF_TOKEN: fetched');
  check(priv.length >= 3 && priv.every((e) => e.auth === `Bearer ${TOKEN}`), `HF_TOKEN sent as "Authorization: Bearer" on every request (${priv.length})`);
  check(!r.err.includes(TOKEN) && !r.out.includes(TOKEN), 'the token is never printed');
  fs.writeFileSync(path.join(hfHome, 'token'), `${TOKEN}\n`);
  mark = hub.log.length;
  r = await fetch(['tokshift-test/private:stories260K.gguf', '--out', path.join(tmp, 'private-file-token')]);
  check(r.code === 0 && hub.log.slice(mark).every((e) => e.auth === `Bearer ${TOKEN}`), 'without HF_TOKEN, the token saved in HF_HOME/token is used');
  fs.rmSync(path.join(hfHome, 'token'));

  // 7. Unknown repository, revision, file.
  r = await fetch(['nobody/no-such-model', '--out', path.join(tmp, 'none')]);
  check(r.code === 1 && /nobody\/no-such-model/.test(r.err) && /not found/.test(r.err) && /404/.test(r.err), `unknown repository: a clear error (${r.err.trim().split('\n').pop()})`);
  r = await fetch(['ggml-org/tiny-llamas:stories260K.gguf', '--revision', 'v9', '--out', path.join(tmp, 'none')]);
  check(r.code === 1 && /404/.test(r.err) && /v9/.test(r.err), `unknown revision: a clear error (${r.err.trim().split('\n').pop()})`);
  r = await fetch(['ggml-org/tiny-llamas:stories15M.gguf', '--out', path.join(tmp, 'none')]);
  check(r.code === 1 && /no stories15M\.gguf/.test(r.err) && /stories260K\.gguf/.test(r.err), `file not in the repository: named, with the files it has (${r.err.trim().split('\n').pop()})`);
  r = await fetch(['ggml-org/tiny-llamas', '--out', path.join(tmp, 'none')]);
  check(r.code === 1 && /no config\.json/.test(r.err) && /stories260K\.gguf/.test(r.err), `a GGUF repository without :FILE: the message lists its GGUF files (${r.err.trim().split('\n').pop()})`);
  r = await fetch(['../etc:passwd']);
  check(r.code === 2, 'a malformed REPO is bad usage (exit 2)');

  // 8. The mirror, offline: the folders fetched above, laid out as REPO/.
  const mirror = path.join(tmp, 'mirror');
  fs.mkdirSync(path.join(mirror, 'tokshift-test'), { recursive: true });
  fs.mkdirSync(path.join(mirror, 'ggml-org'), { recursive: true });
  fs.cpSync(outH, path.join(mirror, 'tokshift-test', 'tiny-llama-hf'), { recursive: true });
  fs.cpSync(outG, path.join(mirror, 'ggml-org', 'tiny-llamas'), { recursive: true });
  const offline = { TOKSHIFT_MODEL_MIRROR: mirror, HF_HUB_OFFLINE: '1', HF_ENDPOINT: 'http://127.0.0.1:9' };
  mark = hub.log.length;
  const outM = path.join(tmp, 'from-mirror');
  r = await fetch(['tokshift-test/tiny-llama-hf', '--out', outM], offline);
  check(r.code === 0 && want.every((f) => same(path.join(outM, f), hfFiles[f])), `mirror, offline: the directory copied and checked (${r.err.trim().split('\n').pop()})`);
  r = await fetch(['ggml-org/tiny-llamas:stories260K.gguf', '--out', path.join(tmp, 'from-mirror-gguf')], offline);
  check(r.code === 0 && same(path.join(tmp, 'from-mirror-gguf', 'stories260K.gguf'), gguf), 'mirror, offline: a GGUF copied and checked');
  check(hub.log.length === mark, 'mirror: no request reached the Hub');
  check(await scoreWorks(outM), 'tokshift score reads the directory from the mirror');
  const shard = path.join(mirror, 'tokshift-test', 'tiny-llama-hf', 'model-00002-of-00002.safetensors');
  const sb = fs.readFileSync(shard);
  sb[100] ^= 1;
  fs.writeFileSync(shard, sb);
  r = await fetch(['tokshift-test/tiny-llama-hf', '--out', path.join(tmp, 'from-bad-mirror')], offline);
  check(r.code === 1 && /model-00002-of-00002\.safetensors: wrong sha256/.test(r.err) && /SHA256SUMS/.test(r.err), `mirror: a damaged file is refused by name (${r.err.trim().split('\n').pop()})`);
  r = await fetch(['tokshift-test/other', '--out', path.join(tmp, 'none')], offline);
  check(r.code === 1 && /HF_HUB_OFFLINE/.test(r.err), 'offline without the repository in the mirror: a clear error');
} finally {
  await hub.close();
  if (!failures) fs.rmSync(tmp, { recursive: true, force: true });
  else console.log(`kept ${tmp}`);
}
console.log(failures ? `${failures} check(s) failed` : 'all checks passed');
process.exit(failures ? 1 : 0);
