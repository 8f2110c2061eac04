// Shared pieces of the headless-browser tests: the Chromium flags of design.md, the `backend serve`
// child process, the page log and state waits, and small numeric helpers.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { access } from 'node:fs/promises';
import { chromium } from 'playwright-core';

// pageLog collects every watched page's console lines and errors (one test file per process, so
// one log per file); failures print it.
export const pageLog = [];

// mustExist fails with what is missing and how to make it (hint).
export async function mustExist(p, what, hint) {
  try {
    await access(p);
  } catch {
    throw new Error(`${what} is missing: ${p} (${hint})`);
  }
}

// watch copies page p's console and uncaught errors into pageLog, tagged with name.
export function watch(p, name) {
  p.on('console', (m) => pageLog.push(`[${name} console.${m.type()}] ${m.text()}`));
  p.on('pageerror', (e) => pageLog.push(`[${name} pageerror] ${e.message}`));
}

// waitState waits for body[data-state] to become one of want and returns it; an unexpected "error"
// fails at once with the page's message and pageLog.
export async function waitState(p, want, timeout = 120000) {
  const wants = Array.isArray(want) ? want : [want];
  await p.waitForFunction((ws) => ws.includes(document.body.dataset.state) || document.body.dataset.state === 'error',
    wants, { timeout });
  const state = await p.evaluate(() => document.body.dataset.state);
  if (!wants.includes(state)) {
    const msg = await p.evaluate(() => document.getElementById('message').textContent);
    assert.fail(`page state ${state} (wanted ${wants.join('/')}): ${msg}\n${pageLog.join('\n')}`);
  }
  return state;
}

// The four flags that make WebGPU work headless on SwiftShader (design.md).
export const WEBGPU_ARGS = ['--enable-unsafe-webgpu', '--enable-features=Vulkan', '--use-vulkan=swiftshader', '--use-angle=swiftshader'];

// The ones that keep Chromium off the (closed) network. Playwright adds --headless itself when
// headless is true; it is listed too so the set is complete whatever Playwright does.
export const QUIET_ARGS = ['--headless', '--no-sandbox', '--no-first-run', '--disable-background-networking',
  '--disable-component-update', '--disable-sync', '--disable-quic'];

export const CHROMIUM_ARGS = [...WEBGPU_ARGS, ...QUIET_ARGS];

// startServer runs `backend serve` on a free loopback port (port 0; the server prints the URL it
// bound) and waits until the API answers. It returns {url, proc}.
export async function startServer(backend, site, weights) {
  const proc = spawn(backend, ['serve', '--site', site, '--weights', weights, '--addr', '127.0.0.1:0'],
    { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  proc.stderr.on('data', (d) => { err += d; });
  const url = await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`backend serve printed no URL in 30 s; stdout ${out} stderr ${err}`)), 30000);
    proc.stdout.on('data', (d) => {
      out += d;
      const m = out.match(/http:\/\/127\.0\.0\.1:\d+\//);
      if (m) { clearTimeout(timer); resolve(m[0]); }
    });
    proc.on('exit', (code) => { clearTimeout(timer); reject(new Error(`backend serve exited ${code}: ${err}`)); });
  });
  for (let i = 0; i < 100; i++) {
    try {
      const r = await fetch(url + 'api/models');
      if (r.ok) return { url, proc };
    } catch { /* not yet */ }
    await new Promise((r) => setTimeout(r, 100));
  }
  proc.kill('SIGTERM');
  throw new Error('the server did not answer /api/models');
}

// launch starts Chromium on a fresh profile folder: with the WebGPU flags, or (webgpu false) as a
// plain browser, whose WebGPU, if any, has no adapter here.
export async function launch(profile, { webgpu = true } = {}) {
  return chromium.launchPersistentContext(profile, {
    executablePath: '/usr/bin/chromium',
    headless: true,
    args: webgpu ? CHROMIUM_ARGS : QUIET_ARGS,
    viewport: { width: 1100, height: 900 },
    acceptDownloads: true,
  });
}

export function maxAbsDiff(a, b) {
  if (a.length !== b.length) throw new Error(`lengths differ: ${a.length} vs ${b.length}`);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
  return m;
}

// maxScaledDiff is max |a − b| / (1 + |b|): absolute for values below 1, relative above.
export function maxScaledDiff(a, b) {
  if (a.length !== b.length) throw new Error(`lengths differ: ${a.length} vs ${b.length}`);
  let m = 0;
  for (let i = 0; i < a.length; i++) {
    const d = Math.abs(a[i] - b[i]) / (1 + Math.abs(b[i]));
    m = Math.max(m, Number.isNaN(d) ? Infinity : d);
  }
  return m;
}

// blogOnOtherOrigin serves html at / on another origin (localhost vs the site's 127.0.0.1: both
// secure contexts) and opens it in a new page of ctx. errors collects the page's console errors and
// uncaught exceptions; every console line also goes to pageLog. close() closes the page and the
// server.
export async function blogOnOtherOrigin(ctx, html, pageLog) {
  const { createServer } = await import('node:http');
  const other = createServer((req, res) => {
    res.writeHead(req.url === '/' ? 200 : 404, { 'Content-Type': 'text/html; charset=utf-8' });
    res.end(req.url === '/' ? html : 'not found');
  });
  await new Promise((r) => other.listen(0, '127.0.0.1', r));
  const p = await ctx.newPage();
  const errors = [];
  p.on('console', (m) => { if (m.type() === 'error') errors.push(m.text()); pageLog.push(`[xorigin console.${m.type()}] ${m.text()}`); });
  p.on('pageerror', (e) => { errors.push(e.message); pageLog.push(`[xorigin pageerror] ${e.message}`); });
  const close = async () => {
    await p.close();
    other.closeAllConnections(); // the browser keeps idle keep-alive sockets open, which close() would wait for
    await new Promise((r) => other.close(r));
  };
  return { page: p, url: `http://localhost:${other.address().port}/`, errors, close };
}
