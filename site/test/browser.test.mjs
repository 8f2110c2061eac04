// Headless-browser test of the whole path: the real `backend serve`, the built page and asbm.wasm,
// WebGPU on Chromium's SwiftShader, and the points compared with `backend sample` for the same seed.
//
// Needs (./build.sh test provides them): dist/ built by ./build.sh build, including dist/backend;
// /usr/bin/chromium; weights/8gaussians.msgpack. It builds nothing itself.
// Environment overrides: ASBM_BACKEND (binary), ASBM_WEIGHTS (folder), ASBM_ARTIFACTS (screenshots).
//
// Tolerances: page vs `backend sample` max |Δ| < 1e-4 (float32 GPU kernels vs the CPU reference,
// same noise); the same seed twice must give bit-identical points.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { startServer as startServerAt, launch, maxAbsDiff, blogOnOtherOrigin, pageLog, mustExist, watch, waitState } from './helpers.mjs';

const run = promisify(execFile);
const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const dist = path.join(root, 'dist');
const backend = process.env.ASBM_BACKEND || path.join(dist, 'backend');
const weightsDir = process.env.ASBM_WEIGHTS || path.join(root, 'weights');
const modelFile = path.join(weightsDir, '8gaussians.msgpack');
const POINTS = 2000;
const TOL = 1e-4;

// HINT says how to make what a run of this file needs.
const HINT = 'run ./build.sh build, and train or copy the model';
let tmp;        // scratch folder: CSVs, profiles
let artifacts;  // screenshots
let server;     // child process
let baseURL;
let ctx;        // the WebGPU browser (a persistent context on a fresh --user-data-dir)
let page;


async function startServer() {
  const started = await startServerAt(backend, dist, weightsDir);
  server = started.proc;
  return started.url;
}



async function setNFE(p, n) {
  await p.fill('#nfe', String(n));
  assert.equal(await p.inputValue('#nfe'), String(n));
}

// generateOnPage sets the controls, clicks Generate and returns the points the page drew.
async function generateOnPage(p, { nfe, seed, sampler }) {
  await setNFE(p, nfe);
  if (nfe > 1) await p.selectOption('#sampler', sampler);
  await p.fill('#seed', String(seed));
  await p.click('#generate');
  await waitState(p, 'done');
  return p.evaluate(() => Array.from(window.asbmLastPoints));
}

async function backendSample({ nfe, seed, sampler }) {
  const out = path.join(tmp, `ref-${nfe}-${sampler}-${seed}.csv`);
  await run(backend, ['sample', '--model', modelFile, '--nfe', String(nfe), '--sampler', sampler,
    '--seed', String(seed), '--n', String(POINTS), '--out', out]);
  const lines = (await readFile(out, 'utf8')).trim().split('\n');
  assert.equal(lines[0].trim(), 'x,y', 'CSV header');
  const pts = [];
  for (const l of lines.slice(1)) {
    const [x, y] = l.split(',').map(Number);
    pts.push(x, y);
  }
  assert.equal(pts.length, 2 * POINTS, 'CSV rows');
  return pts;
}

function assertFinitePoints(pts) {
  assert.equal(pts.length, 2 * POINTS, 'asbmLastPoints length');
  const bad = pts.findIndex((v) => !Number.isFinite(v));
  assert.equal(bad, -1, `non-finite value at ${bad}`);
  const spread = Math.max(...pts) - Math.min(...pts);
  assert.ok(spread > 0.1, `points collapsed (spread ${spread})`);
}

// drawnPixels counts canvas pixels painted in the points' colour (blue well above red; the grid is
// grey and the background white), i.e. evidence that points were drawn.
async function drawnPixels(p) {
  return p.evaluate(() => {
    const c = document.getElementById('plot');
    const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
    let n = 0;
    for (let i = 0; i < d.length; i += 4) if (d[i + 2] - d[i] > 50) n++;
    return n;
  });
}

async function shot(p, name) {
  const file = path.join(artifacts, name + '.png');
  await p.screenshot({ path: file, fullPage: true });
  return file;
}

before(async () => {
  await mustExist(path.join(dist, 'index.html'), 'the built site', HINT);
  await mustExist(path.join(dist, 'asbm.wasm'), 'the wasm client', HINT);
  await mustExist(backend, 'the backend binary', HINT);
  await mustExist(modelFile, 'the 8gaussians model', HINT);
  await mustExist('/usr/bin/chromium', 'chromium', HINT);
  tmp = await mkdtemp(path.join(tmpdir(), 'asbm-browser-'));
  artifacts = process.env.ASBM_ARTIFACTS || path.join(tmp, 'artifacts');
  await import('node:fs/promises').then((fs) => fs.mkdir(artifacts, { recursive: true }));
  console.log(`# screenshots and logs: ${artifacts}`);
  baseURL = await startServer();
  ctx = await launch(await mkdtemp(path.join(tmp, 'profile-')));
  page = ctx.pages()[0] || await ctx.newPage();
  watch(page, 'gpu');
});

after(async () => {
  if (ctx) await ctx.close();
  if (server) server.kill('SIGTERM');
  if (pageLog.length) {
    await import('node:fs/promises').then((fs) => fs.writeFile(path.join(artifacts, 'console.log'), pageLog.join('\n') + '\n'));
  }
  if (tmp && !process.env.ASBM_ARTIFACTS && process.env.ASBM_KEEP !== '1') {
    // Keep the screenshots (their folder is printed); drop profiles and CSVs.
    for (const e of await import('node:fs/promises').then((fs) => fs.readdir(tmp))) {
      if (e !== 'artifacts') await rm(path.join(tmp, e), { recursive: true, force: true });
    }
  }
});

test('the page loads the client and the model on WebGPU', async () => {
  const wasmRes = page.waitForResponse((r) => new URL(r.url()).pathname.endsWith('/asbm.wasm'));
  const res = await page.goto(baseURL + '?device=gpu&model=8gaussians');
  assert.equal(res.status(), 200);
  const wr = await wasmRes;
  const wh = await wr.allHeaders();
  assert.equal(wh['content-type'], 'application/wasm');
  // Chromium offers br even over plain http to loopback, so the brotli file is what it gets; the
  // URL carries the wasm's hash (?v=, from /api/build), which makes it cacheable for a year.
  assert.equal(wh['content-encoding'], 'br', 'the pre-compressed asbm.wasm.br should be served');
  assert.match(wr.url(), /\/asbm\.wasm\?v=[0-9a-f]{16}$/);
  assert.equal(wh['cache-control'], 'public, max-age=31536000, immutable');
  await waitState(page, 'ready');
  const status = await page.textContent('#status');
  assert.match(status, /Ready/);
  assert.equal(await page.evaluate(() => typeof globalThis.wasm.instance.exports.mem), 'object');
  const models = await page.$$eval('#model option', (os) => os.map((o) => o.value));
  assert.ok(models.includes('/weights/8gaussians.msgpack'), `model list ${models}`);
  assert.equal(pageLog.filter((l) => /Content Security Policy|Refused to/.test(l)).length, 0, pageLog.join('\n'));
});

test('the NFE slider updates its label', async () => {
  await setNFE(page, 1);
  assert.equal(await page.textContent('#nfe-label'), '1 = distilled one-step generator');
  assert.equal(await page.isDisabled('#sampler'), true, 'the sampler does not apply at NFE 1');
  // A plain input event, as a user's drag sends, updates it too.
  await page.evaluate(() => {
    const s = document.getElementById('nfe');
    s.value = '37';
    s.dispatchEvent(new Event('input', { bubbles: true }));
  });
  assert.equal(await page.textContent('#nfe-value'), '37');
  // A 2-D model starts on the SDE (images on the ancestral sampler); the denoising checkbox applies
  // to the SDE and the ODE, not to the ancestral sampler.
  assert.match(await page.textContent('#nfe-label'), /^37 .*backward SDE/);
  assert.equal(await page.isDisabled('#sampler'), false);
  assert.equal(await page.isDisabled('#denoise'), false);
  await page.selectOption('#sampler', 'ancestral');
  assert.match(await page.textContent('#nfe-label'), /^37 ancestral steps/);
  assert.equal(await page.isDisabled('#denoise'), true);
  await page.selectOption('#sampler', 'ode');
  assert.match(await page.textContent('#nfe-label'), /^37 .*Heun/);
  assert.equal(await page.isDisabled('#denoise'), false);
  await page.selectOption('#sampler', 'sde');
});

const runs = {};

test('NFE 1 (distilled generator) draws 2000 points equal to backend sample', async () => {
  const opt = { nfe: 1, seed: 3, sampler: 'sde' };
  const pts = await generateOnPage(page, opt);
  assertFinitePoints(pts);
  const drawn = await drawnPixels(page);
  assert.ok(drawn > 500, `canvas looks blank: ${drawn} point pixels`);
  const result = await page.evaluate(() => window.asbmLastResult);
  assert.equal(result.method, 'gen');
  assert.match(await page.textContent('#timing'), /2000 points in [\d.]+ ms/);
  await shot(page, 'nfe1-gen');
  const ref = await backendSample(opt);
  const d = maxAbsDiff(pts, ref);
  console.log(`# NFE 1: max |page − backend sample| = ${d.toExponential(2)}, ${result.ms.toFixed(0)} ms on ${result.adapter}`);
  assert.ok(d < TOL, `NFE 1: max abs diff ${d} ≥ ${TOL}`);
  runs.gen = pts;
});

test('NFE 4 backward SDE matches backend sample, and the same seed repeats exactly', async () => {
  const opt = { nfe: 4, seed: 5, sampler: 'sde' };
  const pts = await generateOnPage(page, opt);
  assertFinitePoints(pts);
  assert.ok(await drawnPixels(page) > 500, 'canvas looks blank');
  assert.match(await page.textContent('#nfe-label'), /^4 /);
  await shot(page, 'nfe4-sde');
  const ref = await backendSample(opt);
  const d = maxAbsDiff(pts, ref);
  const ms = await page.evaluate(() => window.asbmLastResult.ms);
  console.log(`# NFE 4 sde: max |page − backend sample| = ${d.toExponential(2)}, ${ms.toFixed(0)} ms`);
  assert.ok(d < TOL, `NFE 4 sde: max abs diff ${d} ≥ ${TOL}`);

  const again = await generateOnPage(page, opt);
  assert.deepEqual(again, pts, 'same seed, different points');
  const other = await generateOnPage(page, { ...opt, seed: 6 });
  assert.ok(maxAbsDiff(other, pts) > 1e-3, 'a different seed gave the same points');
});

test('NFE 3 PF-ODE (Heun) matches backend sample', async () => {
  const opt = { nfe: 3, seed: 11, sampler: 'ode' };
  const pts = await generateOnPage(page, opt);
  assertFinitePoints(pts);
  assert.equal(await page.evaluate(() => window.asbmLastResult.method), 'ode');
  const d = maxAbsDiff(pts, await backendSample(opt));
  console.log(`# NFE 3 ode: max |page − backend sample| = ${d.toExponential(2)}`);
  assert.ok(d < TOL, `NFE 3 ode: max abs diff ${d} ≥ ${TOL}`);
  await shot(page, 'nfe3-ode');
});

test('the CPU path in the page gives the same points as the GPU path', async () => {
  const cpu = await page.evaluate(async () => {
    const r = await asbm.generate({ nfe: 1, seed: 3, points: 2000, device: 'cpu' });
    return Array.from(r.points);
  });
  const d = maxAbsDiff(cpu, runs.gen);
  assert.ok(d < TOL, `CPU vs GPU NFE 1: ${d}`);
});

test('on a software adapter the page picks the CPU path by itself and says so', async () => {
  const p = await ctx.newPage();
  watch(p, 'auto');
  try {
    await p.goto(baseURL + '?model=8gaussians');
    await waitState(p, 'ready');
    const info = await p.evaluate(() => asbm.info());
    if (!info.software) {
      console.log(`# adapter ${info.adapter} is not a software one: the page stays on the GPU`);
      assert.doesNotMatch(await p.textContent('#status'), /CPU path/);
      return;
    }
    assert.match(await p.textContent('#status'), /software WebGPU adapter .*CPU path/);
    const pts = await generateOnPage(p, { nfe: 1, seed: 3, sampler: 'sde' });
    assert.equal(await p.evaluate(() => window.asbmLastResult.adapter), 'CPU (Go)');
    assert.ok(maxAbsDiff(pts, runs.gen) < TOL, 'CPU path differs from the GPU');
  } finally {
    await p.close();
  }
});

test('generate rejects bad arguments with a clear message', async () => {
  const cases = [
    [{ nfe: 0 }, /nfe must be an integer in \[1, 100\]/],
    [{ nfe: 101 }, /nfe must be an integer in \[1, 100\]/],
    [{ nfe: 2.5 }, /nfe must be an integer/],
    [{ nfe: '4' }, /nfe must be a number/],
    [{ seed: -1 }, /seed must be an integer in \[0, /],
    [{ seed: 1.5 }, /seed must be an integer/],
    [{ points: 0 }, /points must be an integer in \[1, 10000\]/],
    [{ points: 10001 }, /points must be an integer in \[1, 10000\]/],
    [{ nfe: 4, sampler: 'euler' }, /sampler must be "sde"/],
    [{ device: 'tpu' }, /device must be "gpu" or "cpu"/],
    [null, /options must be an object/],
  ];
  for (const [opt, want] of cases) {
    const msg = await page.evaluate(async (o) => {
      try { await asbm.generate(o); return 'resolved'; } catch (e) { return e.message; }
    }, opt);
    assert.match(msg, want, `generate(${JSON.stringify(opt)})`);
  }
  const loadMsg = await page.evaluate(async () => {
    try { await asbm.load('/weights/missing.msgpack'); return 'resolved'; } catch (e) { return e.message; }
  });
  assert.match(loadMsg, /HTTP 404/);
  // The page keeps working after rejections.
  const pts = await page.evaluate(async () => Array.from((await asbm.generate({ nfe: 1, seed: 3 })).points));
  assert.deepEqual(pts, runs.gen);
});

test('without WebGPU the page says so, and offers the CPU path', async () => {
  const ctx2 = await launch(await mkdtemp(path.join(tmp, 'profile-nogpu-')));
  try {
    const p = ctx2.pages()[0] || await ctx2.newPage();
    watch(p, 'nogpu');
    await p.addInitScript(() => { delete Navigator.prototype.gpu; });
    await p.goto(baseURL + '?model=8gaussians');
    await waitState(p, 'error', 30000);
    assert.equal(await p.evaluate(() => 'gpu' in navigator), false);
    const msg = await p.textContent('#message');
    assert.match(msg, /WebGPU is not available/);
    assert.equal(await p.isVisible('#message'), true);
    const canvasPainted = await p.evaluate(() => {
      const c = document.getElementById('plot');
      const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
      let n = 0;
      for (let i = 0; i < d.length; i += 4) if (d[i] - d[i + 2] > 40) n++; // reddish message text/background
      return n;
    });
    assert.ok(canvasPainted > 1000, `the canvas does not show the message (${canvasPainted} px)`);
    await shot(p, 'no-webgpu');

    // The CPU fallback gives the same points as the GPU run above.
    await p.click('#use-cpu');
    await waitState(p, 'ready', 60000);
    const pts = await generateOnPage(p, { nfe: 1, seed: 3, sampler: 'sde' });
    assert.ok(maxAbsDiff(pts, runs.gen) < TOL, 'CPU fallback differs from the GPU');
    await shot(p, 'no-webgpu-cpu');

    // Not a secure context: the message says what to do.
    const p2 = await ctx2.newPage();
    watch(p2, 'insecure');
    await p2.addInitScript(() => {
      delete Navigator.prototype.gpu;
      Object.defineProperty(window, 'isSecureContext', { value: false });
    });
    await p2.goto(baseURL + '?model=8gaussians');
    await waitState(p2, 'error', 30000);
    assert.match(await p2.textContent('#message'), /WebGPU needs a secure context \(HTTPS or localhost\)/);
  } finally {
    await ctx2.close();
  }
});

test('the second load of the page takes the model file from the Cache API; Clear cache empties it', async () => {
  const p = await ctx.newPage();
  watch(p, 'cache');
  try {
    await p.goto(baseURL + '?device=cpu&model=8gaussians');
    await waitState(p, 'ready');
    // The first test loaded the page in this profile already, so the file is cached by now.
    assert.equal(await p.evaluate(() => document.body.dataset.weights), 'cache');
    assert.match(await p.textContent('#status'), /from cache/);
    const keys = await p.evaluate(async () => (await (await caches.open('asbm-weights-v1')).keys()).map((r) => r.url));
    // The page opens at NFE 1, so it fetched the generator alone; the SDE and ODE runs of the earlier
    // tests fetched the rest of its networks once, cached beside it.
    assert.equal(await p.evaluate(() => document.body.dataset.nets), 'gen');
    assert.ok(keys.some((k) => /\/weights\/8gaussians\.msgpack\?sha256=[0-9a-f]{16}&nets=gen$/.test(k)), `cache keys ${keys}`);
    assert.ok(keys.some((k) => /\/weights\/8gaussians\.msgpack\?sha256=[0-9a-f]{16}&nets=control,gen,score$/.test(k)), `cache keys ${keys}`);
    await p.click('#clear-cache');
    await p.waitForFunction(() => /Cache cleared/.test(document.getElementById('status').textContent));
    assert.equal(await p.evaluate(() => caches.has('asbm-weights-v1')), false);
    await p.reload();
    await waitState(p, 'ready');
    assert.equal(await p.evaluate(() => document.body.dataset.weights), 'network');
    await p.reload();
    await waitState(p, 'ready');
    assert.equal(await p.evaluate(() => document.body.dataset.weights), 'cache');
  } finally {
    await p.close();
  }
});

// widgetPixels counts point-coloured pixels on the canvas of the first <asbm-generator> in a frame.
async function widgetPixels(frame) {
  return frame.evaluate(() => {
    const c = document.querySelector('asbm-generator').shadowRoot.querySelector('canvas');
    const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
    let n = 0;
    for (let i = 0; i < d.length; i += 4) if (d[i + 2] - d[i] > 50) n++;
    return n;
  });
}

async function widgetGenerate(frame, name) {
  await frame.waitForFunction(() => {
    const el = document.querySelector('asbm-generator');
    return el && ['ready', 'error'].includes(el.dataset.state);
  }, null, { timeout: 120000 });
  const before = await widgetPixels(frame);
  assert.equal(before, 0, `${name}: canvas has points before Generate`);
  await frame.locator('asbm-generator').locator('button').click();
  await frame.waitForFunction(() => ['done', 'error'].includes(document.querySelector('asbm-generator').dataset.state),
    null, { timeout: 120000 });
  const state = await frame.evaluate(() => document.querySelector('asbm-generator').dataset.state);
  const text = await frame.evaluate(() => document.querySelector('asbm-generator').shadowRoot.querySelector('.status').textContent);
  assert.equal(state, 'done', `${name}: ${text}\n${pageLog.join('\n')}`);
  const n = await widgetPixels(frame);
  assert.ok(n > 300, `${name}: canvas looks blank (${n} point pixels)`);
  const pts = await frame.evaluate(() => Array.from(document.querySelector('asbm-generator').lastPoints));
  assertFinitePoints(pts);
  return pts;
}

test('the widget and the /embed iframe work on a page of another origin', async () => {
  const html = `<!doctype html><html><head><meta charset="utf-8"><title>blog</title><link rel="icon" href="data:,">
<script type="module" src="${baseURL}widget.js"></script></head>
<body><article style="max-width:36rem"><p>Some text.</p>
<asbm-generator model="8gaussians" nfe="1" seed="3"></asbm-generator>
<p>More text.</p>
<iframe id="f" src="${baseURL}embed?model=8gaussians&nfe=1&seed=3" style="width:100%;height:380px;border:0"></iframe>
</article></body></html>`;
  const { page: p, url: otherURL, errors: log, close } = await blogOnOtherOrigin(ctx, html, pageLog);
  try {
    await p.goto(otherURL);
    const direct = await widgetGenerate(p.mainFrame(), 'element');
    const frame = p.frame({ url: /\/embed\?/ });
    assert.ok(frame, 'the /embed iframe did not load');
    const framed = await widgetGenerate(frame, 'iframe');
    // Same model, seed and NFE: the same points, and the ones the page drew for seed 3.
    assert.ok(maxAbsDiff(direct, runs.gen) < TOL, 'widget differs from the page');
    assert.ok(maxAbsDiff(framed, runs.gen) < TOL, 'iframe differs from the page');
    await shot(p, 'cross-origin-embed');
    assert.deepEqual(log, [], 'console errors on the embedding page');
  } finally {
    await close();
  }
});
