// fakehub.mjs - a fake Hugging Face Hub on loopback, for test_fetch.mjs.
//
// What it is: the three requests `tokshift fetch` makes, answered as the Hub
// answers them (shapes as huggingface_hub and huggingface.js read them):
//   GET /api/models/OWNER/NAME/revision/REV?blobs=true
//       {id, sha, siblings: [{rfilename, size, blobId, lfs?: {sha256, size, pointerSize}}]}
//   GET /OWNER/NAME/resolve/REV/PATH   a file kept in git: its bytes; an LFS
//       file: 302 to /cdn/OWNER/NAME/SHA256 (the Hub sends LFS files to its CDN), which
//       serves the bytes with Range support (206, Content-Range)
//   errors: {"error": "..."} with 404 (unknown repository, revision or file)
//       or 401 (a private repository without its token)
// plus faults a test asks for per repository: `dropOnce` (the first download
// of each LFS file stops half-way: the connection is destroyed), `corrupt`
// (LFS files, or the files for which corrupt(path) is true, are served with
// one byte changed), `token` (a private
// repository: the API and resolve need "Authorization: Bearer TOKEN"),
// `noRange` (Range headers ignored: always 200 and the whole file).
// Every request is logged ({method, url, range, auth}) for the test to check.
// What it is not: the Hub's other endpoints, pagination or Xet.
// Built-ins only.
import http from 'node:http';
import crypto from 'node:crypto';

const sha256 = (b) => crypto.createHash('sha256').update(b).digest('hex');
// git's blob id: sha1 of "blob SIZE\0" + content.
const gitBlob = (b) => crypto.createHash('sha1').update(`blob ${b.length}\0`).update(b).digest('hex');

// repos: {"owner/name": {commit, files: {path: Buffer}, lfs: (path) => bool,
//          dropOnce?, corrupt?, token?, noRange?}}.  Resolves to {url, log, close()}.
export async function startFakeHub(repos) {
  const log = [];
  const dropped = new Set();
  const blobs = new Map(); // "owner/name/sha256" -> {bytes, repo, path}
  for (const [id, r] of Object.entries(repos))
    for (const [p, b] of Object.entries(r.files)) if (r.lfs(p)) blobs.set(`${id}/${sha256(b)}`, { bytes: b, repo: id, path: p });

  const json = (res, status, obj) => {
    const body = Buffer.from(JSON.stringify(obj));
    res.writeHead(status, { 'content-type': 'application/json', 'content-length': body.length });
    res.end(body);
  };
  const authorized = (req, r) => !r.token || req.headers.authorization === `Bearer ${r.token}`;
  const revOk = (r, rev) => rev === 'main' || rev === r.commit;

  function serveBytes(req, res, bytes, repo, path) {
    let start = 0;
    const m = repos[repo].noRange ? null : /^bytes=(\d+)-$/.exec(req.headers.range || '');
    if (m) start = Number(m[1]);
    if (start > bytes.length) {
      res.writeHead(416, { 'content-range': `bytes */${bytes.length}` });
      return res.end();
    }
    let body = bytes.subarray(start);
    const r = repos[repo];
    if (typeof r.corrupt === 'function' ? r.corrupt(path) : r.corrupt && r.lfs(path)) {
      body = Buffer.from(body);
      body[body.length >> 1] ^= 0xff;
    }
    const headers = { 'content-type': 'application/octet-stream', 'content-length': body.length, 'accept-ranges': 'bytes' };
    if (m) headers['content-range'] = `bytes ${start}-${bytes.length - 1}/${bytes.length}`;
    res.writeHead(m ? 206 : 200, headers);
    const key = `${repo}/${path}`;
    if (r.dropOnce && r.lfs(path) && !dropped.has(key)) {
      dropped.add(key);
      // Half the body, a moment for it to arrive, then the connection dies.
      res.write(body.subarray(0, body.length >> 1), () => setTimeout(() => req.socket.destroy(), 200));
      return;
    }
    res.end(body);
  }

  const server = http.createServer((req, res) => {
    const u = new URL(req.url, 'http://x');
    log.push({ method: req.method, url: req.url, range: req.headers.range || null, auth: req.headers.authorization || null });
    let m;
    if ((m = /^\/api\/models\/([^/]+\/[^/]+)\/revision\/([^/]+)$/.exec(u.pathname))) {
      const r = repos[m[1]];
      const rev = decodeURIComponent(m[2]);
      if (!r) return json(res, 404, { error: 'Repository not found' });
      if (!authorized(req, r)) return json(res, 401, { error: 'Invalid username or password.' });
      if (!revOk(r, rev)) return json(res, 404, { error: `Invalid rev id: ${rev}` });
      const siblings = Object.entries(r.files).map(([p, b]) => {
        const s = { rfilename: p, size: b.length, blobId: gitBlob(r.lfs(p) ? Buffer.from(`lfs pointer ${sha256(b)}`) : b) };
        if (r.lfs(p)) s.lfs = { sha256: sha256(b), size: b.length, pointerSize: 134 };
        return s;
      });
      return json(res, 200, { _id: 'x', id: m[1], modelId: m[1], sha: r.commit, private: !!r.token, siblings });
    }
    if ((m = /^\/cdn\/([^/]+\/[^/]+\/[0-9a-f]{64})$/.exec(u.pathname))) {
      const b = blobs.get(m[1]);
      if (!b) return json(res, 404, { error: 'Entry not found' });
      return serveBytes(req, res, b.bytes, b.repo, b.path);
    }
    if ((m = /^\/([^/]+\/[^/]+)\/resolve\/([^/]+)\/(.+)$/.exec(u.pathname))) {
      const r = repos[m[1]];
      const rev = decodeURIComponent(m[2]), path = decodeURIComponent(m[3]);
      if (!r) return json(res, 404, { error: 'Repository not found' });
      if (!authorized(req, r)) return json(res, 401, { error: 'Invalid username or password.' });
      if (!revOk(r, rev) || !(path in r.files)) return json(res, 404, { error: 'Entry not found' });
      const bytes = r.files[path];
      if (r.lfs(path)) {
        res.writeHead(302, { location: `/cdn/${m[1]}/${sha256(bytes)}`, 'x-linked-size': bytes.length, 'content-length': 0 });
        return res.end();
      }
      return serveBytes(req, res, bytes, m[1], path);
    }
    json(res, 404, { error: 'Not found' });
  });
  await new Promise((ok) => server.listen(0, '127.0.0.1', ok));
  return {
    url: `http://127.0.0.1:${server.address().port}`,
    log,
    close: () => new Promise((ok) => { server.closeAllConnections?.(); server.close(ok); }),
  };
}

export { sha256, gitBlob };
