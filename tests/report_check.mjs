// report_check.mjs - renders a tokshift report in headless Chromium and
// checks it: no script errors or console errors, every <svg> has its axes
// (g.axes) and legend (g.legend) and spans most of the page, nothing is
// wider than the 1,400 px window; saves a full-page screenshot.
//
// Usage: node report_check.mjs CHROMIUM PAGE.html SCREENSHOT.png PROFILE_DIR [TITLE...]
// Each TITLE names a plot (its aria-label) that must be there, drawn: with
// axes, a legend and at least one error bar (a <path> in g.series).
// Prints one JSON line of findings; exits 0 when every check holds, 1 if
// not.  Speaks the DevTools protocol over --remote-debugging-pipe (file
// descriptors 3 and 4, NUL-separated JSON) with node's built-ins only.
import { spawn } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { pathToFileURL } from 'node:url';

const [chromium, page, shot, profile, ...required] = process.argv.slice(2);
const WIDTH = 1400;
const browser = spawn(chromium, ['--headless=new', '--no-sandbox', '--disable-gpu', '--no-first-run',
  '--disable-extensions', '--remote-debugging-pipe', `--user-data-dir=${profile}`,
  `--window-size=${WIDTH},900`, 'about:blank'], { stdio: ['ignore', 'ignore', 'pipe', 'pipe', 'pipe'] });
let stderr = '';
browser.stderr.on('data', (d) => { stderr += d; });
const timer = setTimeout(() => { console.log(JSON.stringify({ error: 'timed out', stderr })); browser.kill(); process.exit(1); }, 45000);

let nextId = 1, buf = '';
const pending = new Map(), events = [];
const waiters = [];
browser.stdio[4].on('data', (d) => {
  buf += d.toString();
  let i;
  while ((i = buf.indexOf('\0')) >= 0) {
    const msg = JSON.parse(buf.slice(0, i));
    buf = buf.slice(i + 1);
    if (msg.id && pending.has(msg.id)) {
      const { resolve, reject } = pending.get(msg.id);
      pending.delete(msg.id);
      msg.error ? reject(new Error(`${JSON.stringify(msg.error)}`)) : resolve(msg.result);
    } else if (msg.method) {
      events.push(msg);
      for (const w of waiters.splice(0)) w();
    }
  }
});
function send(method, params = {}, sessionId) {
  const id = nextId++;
  browser.stdio[3].write(JSON.stringify({ id, method, params, ...(sessionId ? { sessionId } : {}) }) + '\0');
  return new Promise((resolve, reject) => pending.set(id, { resolve, reject }));
}
async function waitEvent(method) {
  for (;;) {
    if (events.some((e) => e.method === method)) return;
    await new Promise((r) => waiters.push(r));
  }
}

const { targetId } = await send('Target.createTarget', { url: 'about:blank' });
const { sessionId } = await send('Target.attachToTarget', { targetId, flatten: true });
const s = (m, p) => send(m, p, sessionId);
await s('Runtime.enable');
await s('Log.enable');
await s('Page.enable');
await s('Emulation.setDeviceMetricsOverride', { width: WIDTH, height: 900, deviceScaleFactor: 1, mobile: false });
await s('Page.navigate', { url: pathToFileURL(page).href });
await waitEvent('Page.loadEventFired');
const { result } = await s('Runtime.evaluate', {
  returnByValue: true,
  expression: `(() => {
    const W = document.documentElement.clientWidth;
    const svgs = [...document.querySelectorAll('svg')].map((g) => {
      const r = g.getBoundingClientRect();
      return { title: g.getAttribute('aria-label'), left: r.left, right: r.right, width: r.width,
               axes: !!g.querySelector('g.axes text'), legend: g.querySelectorAll('g.legend text').length,
               lines: g.querySelectorAll('polyline').length, bars: g.querySelectorAll('g.series path').length };
    });
    const wide = [...document.querySelectorAll('body *')].filter((e) => e.getBoundingClientRect().right > W + 0.5)
      .map((e) => e.tagName).slice(0, 5);
    return { clientWidth: W, scrollWidth: document.documentElement.scrollWidth, scripts: document.scripts.length,
             svgs, wide };
  })()`,
});
const png = await s('Page.captureScreenshot', { format: 'png', captureBeyondViewport: true });
writeFileSync(shot, Buffer.from(png.data, 'base64'));
await send('Browser.close').catch(() => {});
clearTimeout(timer);

const r = result.value;
const errors = events.filter((e) => e.method === 'Runtime.exceptionThrown' ||
  (e.method === 'Log.entryAdded' && e.params.entry.level === 'error') ||
  (e.method === 'Runtime.consoleAPICalled' && e.params.type === 'error'))
  .map((e) => JSON.stringify(e.params).slice(0, 300));
const problems = [];
if (errors.length) problems.push(`script or console errors: ${errors.join('; ')}`);
if (r.scripts) problems.push(`${r.scripts} <script> elements`);
if (r.scrollWidth > r.clientWidth) problems.push(`page scrolls sideways: ${r.scrollWidth} > ${r.clientWidth}`);
if (r.wide.length) problems.push(`elements overflow the page: ${r.wide.join(',')}`);
if (!r.svgs.length) problems.push('no <svg>');
for (const g of r.svgs) {
  if (!g.axes) problems.push(`'${g.title}' has no axes`);
  if (!g.legend) problems.push(`'${g.title}' has no legend`);
  if (g.width < 0.8 * r.clientWidth) problems.push(`'${g.title}' is ${g.width} px wide on a ${r.clientWidth} px page`);
  if (g.left < 0 || g.right > r.clientWidth) problems.push(`'${g.title}' overflows: ${g.left}..${g.right}`);
}
for (const t of required) {
  const g = r.svgs.find((x) => x.title === t);
  if (!g) problems.push(`no plot '${t}'`);
  else if (!g.axes || !g.legend || !g.bars) problems.push(`'${t}' lacks axes, legend or bars: ${JSON.stringify(g)}`);
}
console.log(JSON.stringify({ ...r, errors, problems }));
process.exit(problems.length ? 1 : 0);
