// Headless-browser test of image models: the page, the widget and /embed with the tiny random U-Net
// of site/test/fixtures (3×8×8 images, written by `go run ./site/test/mkfixture`), served by the real
// `backend serve` from a scratch weights folder, and compared with `backend sample` for the same
// seed.
//
// Needs (./build.sh test provides them): dist/ built by ./build.sh build, including dist/backend;
// /usr/bin/chromium; weights/8gaussians.msgpack (copied next to the fixture, for the blog page).
// Environment overrides: ASBM_BACKEND (binary), ASBM_ARTIFACTS (screenshots).
//
// Tolerances: page vs `backend sample` max |Δ|/(1 + |ref|) < 1e-4 (plain-Go float32 on both sides;
// the samplers' coefficients are computed by two implementations; values reach ±10 with these
// random weights); CPU path vs CPU path, and the same seed twice, bit-identical; WebGPU vs CPU 1e-4.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { mkdtemp, mkdir, readFile, rm, copyFile, writeFile, readdir, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { startServer, launch, maxScaledDiff, maxAbsDiff, blogOnOtherOrigin, pageLog, mustExist, watch, waitState } from './helpers.mjs';

const run = promisify(execFile);
const here = path.dirname(fileURLToPath(import.meta.url));
const root = path.resolve(here, '..', '..');
const dist = path.join(root, 'dist');
const backend = process.env.ASBM_BACKEND || path.join(dist, 'backend');
const fixture = path.join(here, 'fixtures', 'tiny-unet.msgpack');
const toyModel = path.join(root, 'weights', '8gaussians.msgpack');
// SHIPPED are the trained image models of weights/ that the site serves (the blog page uses them).
const SHIPPED = ['digits', 'fashion', 'emoji'];
const DIM = 3 * 8 * 8;
const TOL = 1e-4;

// HINT says how to make what a run of this file needs.
const HINT = 'run ./build.sh build; the fixture: go run ./site/test/mkfixture';
let tmp;
let artifacts;
let weightsDir;
let server;
let baseURL;
let ctx;
let page;
const results = {}; // images by run name, for comparisons across tests




// generateImages sets the controls, clicks Generate and returns the images the page drew.
async function generateImages(p, { nfe, seed, sampler = 'sde', denoise = false, grid, dim = DIM }) {
  await p.selectOption('#grid', String(grid));
  await p.fill('#nfe', String(nfe));
  if (nfe > 1) await p.selectOption('#sampler', sampler);
  // The checkbox is disabled where it does not apply (NFE 1, the ancestral sampler).
  if (nfe > 1 && sampler !== 'ancestral') await p.setChecked('#denoise', denoise);
  await p.fill('#seed', String(seed));
  await p.click('#generate');
  await waitState(p, 'done');
  const imgs = await p.evaluate(() => Array.from(window.asbmLastImages));
  assert.equal(imgs.length, grid * grid * dim, 'asbmLastImages length');
  assert.equal(imgs.findIndex((v) => !Number.isFinite(v)), -1, 'non-finite value');
  return imgs;
}

// canvasStats describes a canvas: its size, how many pixels differ from the top-left (panel)
// colour, how many distinct colours it has, and a SHA-256 of its pixels.
async function canvasStats(frame, selector) {
  return frame.evaluate(async (sel) => {
    const c = sel === '#plot' ? document.getElementById('plot')
      : document.querySelector(sel).shadowRoot.querySelector('canvas');
    const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
    let painted = 0;
    const colours = new Set();
    for (let i = 0; i < d.length; i += 4) {
      if (d[i] !== d[0] || d[i + 1] !== d[1] || d[i + 2] !== d[2]) painted++;
      colours.add((d[i] << 16) | (d[i + 1] << 8) | d[i + 2]);
    }
    const h = new Uint8Array(await crypto.subtle.digest('SHA-256', d));
    return { width: c.width, height: c.height, pixels: c.width * c.height, painted, colours: colours.size,
      sha: Array.from(h, (b) => b.toString(16).padStart(2, '0')).join('') };
  }, selector);
}

function assertNotBlank(st, what) {
  assert.ok(st.painted > 0.5 * st.pixels, `${what}: only ${st.painted} of ${st.pixels} pixels painted`);
  assert.ok(st.colours > 20, `${what}: only ${st.colours} colours: the images look constant`);
}

// backendSample runs `backend sample` on a model of the server's folder (the fixture by default)
// and returns its rows, flattened.
async function backendSample({ nfe, seed, sampler = 'sde', denoise = false, n, model = 'tiny-unet', dim = DIM }) {
  const out = path.join(tmp, `ref-${model}-${nfe}-${sampler}-${denoise}-${seed}-${n}.csv`);
  await run(backend, ['sample', '--model', path.join(weightsDir, model + '.msgpack'), '--nfe', String(nfe),
    '--sampler', sampler, `--denoise=${denoise}`, '--seed', String(seed), '--n', String(n), '--out', out]);
  const lines = (await readFile(out, 'utf8')).trim().split('\n');
  assert.equal(lines[0].split(',').length, dim, 'CSV columns');
  assert.equal(lines.length - 1, n, 'CSV rows');
  return lines.slice(1).flatMap((l) => l.split(',').map(Number));
}

async function shot(p, name) {
  await p.screenshot({ path: path.join(artifacts, name + '.png'), fullPage: true });
}

before(async () => {
  await mustExist(path.join(dist, 'index.html'), 'the built site', HINT);
  await mustExist(path.join(dist, 'asbm.wasm'), 'the wasm client', HINT);
  await mustExist(backend, 'the backend binary', HINT);
  await mustExist(fixture, 'the tiny U-Net fixture', HINT);
  await mustExist(toyModel, 'the 8gaussians model', HINT);
  for (const name of SHIPPED) await mustExist(path.join(root, 'weights', name + '.msgpack'), `the shipped ${name} model`, HINT);
  await mustExist('/usr/bin/chromium', 'chromium', HINT);
  tmp = await mkdtemp(path.join(tmpdir(), 'asbm-images-'));
  artifacts = process.env.ASBM_ARTIFACTS || path.join(tmp, 'artifacts');
  await mkdir(artifacts, { recursive: true });
  console.log(`# screenshots and logs: ${artifacts}`);
  // The server's weights folder: the fixture and one toy (the blog page's element uses it).
  weightsDir = path.join(tmp, 'weights');
  await mkdir(weightsDir);
  await copyFile(fixture, path.join(weightsDir, 'tiny-unet.msgpack'));
  await copyFile(toyModel, path.join(weightsDir, '8gaussians.msgpack'));
  for (const name of SHIPPED) await copyFile(path.join(root, 'weights', name + '.msgpack'), path.join(weightsDir, name + '.msgpack'));
  const started = await startServer(backend, dist, weightsDir);
  server = started.proc;
  baseURL = started.url;
  ctx = await launch(await mkdtemp(path.join(tmp, 'profile-')));
  page = ctx.pages()[0] || await ctx.newPage();
  watch(page, 'images');
});

after(async () => {
  if (ctx) await ctx.close();
  if (server) server.kill('SIGTERM');
  if (pageLog.length) await writeFile(path.join(artifacts, 'console-images.log'), pageLog.join('\n') + '\n');
  if (tmp && !process.env.ASBM_ARTIFACTS && process.env.ASBM_KEEP !== '1') {
    for (const e of await readdir(tmp)) {
      if (e !== 'artifacts') await rm(path.join(tmp, e), { recursive: true, force: true });
    }
  }
});

test('the page lists the image model, loads it, warms up and shows the grid control', async () => {
  await page.goto(baseURL + '?model=tiny-unet');
  await waitState(page, 'ready');
  const models = await page.$$eval('#model option', (os) => os.map((o) => o.value));
  assert.deepEqual(models.sort(), ['/weights/8gaussians.msgpack', '/weights/digits.msgpack', '/weights/emoji.msgpack',
    '/weights/fashion.msgpack', '/weights/tiny-unet.msgpack']);
  assert.equal(await page.inputValue('#model'), '/weights/tiny-unet.msgpack');
  assert.equal(await page.evaluate(() => document.body.dataset.kind), 'images');
  assert.equal(await page.isVisible('#grid'), true, 'the grid control is hidden');
  const info = await page.evaluate(() => asbm.info());
  assert.equal(info.image, true);
  assert.deepEqual(info.shape, [3, 8, 8]);
  assert.equal(info.arch.kind, 'unet');
  // At the page's opening NFE 1 it fetched the generator alone (the file has four networks).
  assert.deepEqual(info.nets, ['gen']);
  assert.equal(await page.evaluate(() => document.body.dataset.nets), 'gen');
  const warm = await page.evaluate(() => window.asbmWarmup);
  assert.ok(warm && warm.ms >= 0, `warm-up: ${JSON.stringify(warm)}`);
  assert.match(await page.textContent('#device-info'), /Kernels: f32.*3×8×8 images/);
  console.log(`# tiny-unet: ${info.params} parameters per network; adapter "${info.adapter}" software ${info.software}; ` +
    `gpuError "${info.gpuError}"; status: ${await page.textContent('#status')}`);
  // Before Generate: an empty frame the size of the 4×4 grid (a dashed border and a hint), no images.
  const st = await canvasStats(page, '#plot');
  assert.ok(st.painted < 0.1 * st.pixels, `the canvas shows images before Generate (${st.painted} of ${st.pixels} pixels painted)`);
});

test('NFE 1 draws a 4×4 grid equal to backend sample; the same seed repeats pixel for pixel', async () => {
  const opt = { nfe: 1, seed: 7, grid: 4 };
  const imgs = await generateImages(page, opt);
  const r = await page.evaluate(() => window.asbmLastResult);
  assert.equal(r.method, 'gen');
  assert.deepEqual(r.shape, [16, 3, 8, 8]);
  assert.equal(r.first, true);
  assert.match(await page.textContent('#timing'), /^16 images in [\d.]+ ms \(first run\)/);
  const st = await canvasStats(page, '#plot');
  assertNotBlank(st, 'NFE 1 grid');
  // 4 columns of 8-pixel images, gaps of 2: the largest integer scale within 560 px is 17.
  assert.equal(st.width, 4 * 8 * 17 + 3 * 2);
  const ref = await backendSample({ ...opt, n: 16 });
  const d = maxScaledDiff(imgs, ref);
  console.log(`# NFE 1: max |page − backend sample|/(1+|ref|) = ${d.toExponential(2)}, ${r.ms.toFixed(1)} ms on ${r.adapter}`);
  assert.ok(d < TOL, `NFE 1: ${d} ≥ ${TOL}`);
  results.gen7 = imgs;

  const again = await generateImages(page, opt);
  assert.deepEqual(again, imgs, 'same seed, different images');
  assert.equal((await canvasStats(page, '#plot')).sha, st.sha, 'same seed, different pixels');
  assert.equal(await page.evaluate(() => window.asbmLastResult.first), false);
  assert.match(await page.textContent('#timing'), /^16 images in [\d.]+ ms \(warm\) · first run \d+ ms/);
  const other = await generateImages(page, { ...opt, seed: 8 });
  assert.ok(maxAbsDiff(other, imgs) > 1e-2, 'a different seed gave the same images');
  await shot(page, 'image-model-nfe1');
});

test('NFE 8 (SDE, ODE, ancestral; with and without the denoising step) shows previews while sampling and matches backend sample', async () => {
  for (const [sampler, seed, denoise] of [['sde', 11, false], ['ode', 12, false], ['ancestral', 13, false], ['sde', 14, true], ['ode', 15, true]]) {
    const opt = { nfe: 8, seed, sampler, denoise, grid: 2 };
    const imgs = await generateImages(page, opt);
    const r = await page.evaluate(() => window.asbmLastResult);
    assert.equal(r.method, sampler);
    assert.equal(r.steps, 8);
    // One preview every round(8/12) = 1 step, before steps 0 … 7.
    assert.equal(await page.evaluate(() => document.body.dataset.previews), '8', 'previews drawn');
    assertNotBlank(await canvasStats(page, '#plot'), `NFE 8 ${sampler}`);
    const d = maxScaledDiff(imgs, await backendSample({ ...opt, n: 4 }));
    console.log(`# NFE 8 ${sampler} denoise ${denoise}: max |page − backend sample|/(1+|ref|) = ${d.toExponential(2)}, ${r.ms.toFixed(1)} ms`);
    assert.ok(d < TOL, `NFE 8 ${sampler} denoise ${denoise}: ${d} ≥ ${TOL}`);
    results[sampler + seed] = imgs;
    // The first run past NFE 1 fetched the rest of the networks the page runs (never the baseline),
    // once: the page then holds the score, the control and the generator.
    assert.deepEqual((await page.evaluate(() => asbm.info())).nets, ['score', 'control', 'gen']);
    assert.equal(await page.evaluate(() => document.body.dataset.nets), 'control,gen,score');
  }
  // The previews are drawn while the Go code runs: the page's event loop runs in between. A timer
  // ticking during a generate proves it (a frozen page would let it fire at most once at the end).
  // The plain-Go kernels (simd: false) keep this generate long enough (about a second) for the
  // pacer's 30 ms frames to matter; on the SIMD kernels the tiny model's 100 steps take only a few
  // frames, and the same pacer runs either way.
  const ticks = await page.evaluate(async () => {
    let n = 0;
    const id = setInterval(() => { n++; }, 0);
    await asbm.generate({ nfe: 100, seed: 1, n: 16, device: 'cpu', preview: 10, simd: false });
    clearInterval(id);
    return n;
  });
  assert.ok(ticks >= 3, `the event loop ran ${ticks} times during a 100-step generate`);
});

test('Download PNG saves the 8×8 grid with the seed in the file name', async () => {
  await generateImages(page, { nfe: 8, seed: 11, sampler: 'sde', grid: 8 });
  const st = await canvasStats(page, '#plot');
  assertNotBlank(st, '8×8 grid');
  await shot(page, 'image-model-8x8-nfe8');
  const [download] = await Promise.all([page.waitForEvent('download'), page.click('#download')]);
  assert.equal(download.suggestedFilename(), 'asbm-tiny-unet-nfe8-sde-seed11-8x8.png');
  // With the denoising step the name says so.
  await generateImages(page, { nfe: 8, seed: 11, sampler: 'sde', denoise: true, grid: 8 });
  const [dn] = await Promise.all([page.waitForEvent('download'), page.click('#download')]);
  assert.equal(dn.suggestedFilename(), 'asbm-tiny-unet-nfe8-sde-denoise-seed11-8x8.png');
  await page.setChecked('#denoise', false);
  const file = path.join(tmp, 'download.png');
  await download.saveAs(file);
  const png = await readFile(file);
  assert.deepEqual([...png.subarray(0, 8)], [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a], 'PNG signature');
  assert.equal(png.toString('latin1', 12, 16), 'IHDR');
  assert.equal(png.readUInt32BE(16), st.width, 'PNG width');
  assert.equal(png.readUInt32BE(20), st.height, 'PNG height');
  assert.ok(png.length > 1000, `PNG of ${png.length} bytes`);
});

test('the WebGPU path gives the CPU path\'s images (where the GPU kernels run U-Nets)', async (t) => {
  const p = await ctx.newPage();
  watch(p, 'gpu');
  try {
    await p.goto(baseURL + '?model=tiny-unet&device=gpu');
    await waitState(p, 'ready');
    const info = await p.evaluate(() => asbm.info());
    // The fixture stores f32, so its networks stay f32 on the GPU whatever the adapter offers.
    console.log(`# tiny-unet on the GPU: weights ${info.weights}, precision "${info.precision}", adapter shader-f16 ${info.shaderF16}`);
    if (info.gpuError) {
      console.log(`# WebGPU path not available for U-Nets: ${info.gpuError}`);
      t.skip(`the GPU path cannot run U-Nets yet: ${info.gpuError}`);
      return;
    }
    assert.equal(info.precision, info.weights === 'f16' ? 'f16 weights, f32 compute' : 'f32');
    for (const [opt, ref] of [[{ nfe: 1, seed: 7, grid: 4 }, results.gen7], [{ nfe: 8, seed: 11, sampler: 'sde', grid: 2 }, results.sde11]]) {
      const imgs = await generateImages(p, opt);
      const r = await p.evaluate(() => window.asbmLastResult);
      assert.equal(r.device, 'gpu');
      const d = maxAbsDiff(imgs, ref);
      console.log(`# WebGPU NFE ${opt.nfe}: max |GPU − CPU| = ${d.toExponential(2)}, ${r.ms.toFixed(1)} ms on ${r.adapter}`);
      assert.ok(d < TOL, `WebGPU NFE ${opt.nfe}: ${d}`);
      assertNotBlank(await canvasStats(p, '#plot'), 'WebGPU grid');
    }
    // Without previews the client still takes shaders.SampleGPU, with no preview read-backs (x stays on the device): same images.
    const direct = await p.evaluate(async () => Array.from((await asbm.generate({ nfe: 8, seed: 11, n: 4, sampler: 'sde', device: 'gpu' })).images));
    const d = maxAbsDiff(direct, results.sde11);
    console.log(`# WebGPU NFE 8 without previews (SampleGPU): max |GPU − CPU| = ${d.toExponential(2)}`);
    assert.ok(d < TOL, `SampleGPU path: ${d}`);

    // An f16 file (the shipped digits model) keeps its weight matrices in f16 on the GPU, read by
    // f32 kernels through unpack2x16float (core WGSL, so no shader-f16 is needed and SwiftShader,
    // which has none, runs it). The CPU path widens the same halves to f32 on load, so both sides
    // multiply identical values in f32 and differ only in summation order: the f32 fixture's TOL.
    await p.goto(baseURL + '?model=digits&device=gpu');
    await waitState(p, 'ready');
    const di = await p.evaluate(() => asbm.info());
    console.log(`# digits on the GPU: weights ${di.weights}, precision "${di.precision}", adapter shader-f16 ${di.shaderF16}; ` +
      `${await p.textContent('#device-info')}`);
    assert.equal(di.gpuError, '', 'digits on the GPU');
    assert.equal(di.weights, 'f16');
    assert.equal(di.precision, 'f16 weights, f32 compute');
    assert.match(await p.textContent('#device-info'), /^GPU: f16 weights, f32 compute/);
    // The page opened at NFE 1 holds the generator alone; one PF-ODE run through the page fetches
    // the rest, which the direct asbm.generate calls below use.
    await generateImages(p, { nfe: 3, seed: 4, sampler: 'ode', grid: 1, dim: 28 * 28 });
    for (const opt of [{ nfe: 1, seed: 3, n: 4 }, { nfe: 3, seed: 4, n: 4, sampler: 'ode' }]) {
      const gen = (device) => p.evaluate(async (o) => Array.from((await asbm.generate(o)).images), { ...opt, device });
      const [g16, cpu] = [await gen('gpu'), await gen('cpu')];
      const d16 = maxScaledDiff(g16, cpu);
      console.log(`# digits NFE ${opt.nfe} on the GPU with f16 weights: max |GPU − CPU|/(1+|CPU|) = ${d16.toExponential(2)}`);
      assert.ok(d16 < TOL, `digits NFE ${opt.nfe}, f16 weights on the GPU vs the CPU path: ${d16} ≥ ${TOL}`);
      assert.ok(maxAbsDiff(g16, new Array(g16.length).fill(g16[0])) > 1e-2, 'the images are constant');
    }
  } finally {
    await p.close();
  }
});

test('a browser without the WebGPU flags generates the same images on the CPU path', async () => {
  const ctx2 = await launch(await mkdtemp(path.join(tmp, 'profile-plain-')), { webgpu: false });
  try {
    const p = ctx2.pages()[0] || await ctx2.newPage();
    watch(p, 'plain');
    await p.goto(baseURL + '?model=tiny-unet');
    const state = await waitState(p, ['ready', 'error']);
    if (state === 'error') {
      // No adapter: the page says why and offers the CPU path.
      assert.match(await p.textContent('#message'), /WebGPU|adapter/);
      await p.click('#use-cpu');
      await waitState(p, 'ready');
    }
    console.log(`# plain browser: ${state === 'error' ? 'no WebGPU, CPU button' : 'loaded'}; status ${await p.textContent('#status')}`);
    const imgs = await generateImages(p, { nfe: 1, seed: 7, grid: 4 });
    assert.equal(await p.evaluate(() => window.asbmLastResult.adapter), 'CPU (Go)');
    assert.deepEqual(imgs, results.gen7, 'CPU path in a plain browser differs');
    assertNotBlank(await canvasStats(p, '#plot'), 'plain browser grid');
  } finally {
    await ctx2.close();
  }
});

async function waitWidget(frame, states) {
  await frame.waitForFunction((ss) => {
    const el = document.querySelector('asbm-generator');
    return el && ss.includes(el.dataset.state);
  }, states, { timeout: 120000 });
  return frame.evaluate(() => {
    const el = document.querySelector('asbm-generator');
    return { state: el.dataset.state, kind: el.dataset.kind, status: el.shadowRoot.querySelector('.status').textContent };
  });
}

async function widgetGenerate(frame, name) {
  const t0 = Date.now();
  const s = await waitWidget(frame, ['ready', 'error']);
  console.log(`# ${name}: ready after ${Date.now() - t0} ms`);
  assert.equal(s.state, 'ready', `${name}: ${s.status}\n${pageLog.join('\n')}`);
  assert.equal(s.kind, 'images');
  await frame.locator('asbm-generator').locator('button').click();
  const d = await waitWidget(frame, ['done', 'error']);
  console.log(`# ${name}: done after ${Date.now() - t0} ms`);
  assert.equal(d.state, 'done', `${name}: ${d.status}\n${pageLog.join('\n')}`);
  const st = await canvasStats(frame, 'asbm-generator');
  assertNotBlank(st, name);
  assert.ok(st.width <= 300 && st.height <= 300, `${name}: canvas ${st.width}×${st.height} is wider than a text column`);
  return frame.evaluate(() => {
    const el = document.querySelector('asbm-generator');
    return { images: Array.from(el.lastImages), shape: el.lastShape };
  });
}

// What a visitor picks: the trained models of weights/, on the page as it is served (the NFE 1
// generator and 8 SDE steps), equal to `backend sample` and showing images, not a flat canvas.
test('the shipped digits, fashion and emoji models generate at NFE 1 and NFE 8, as backend sample does', async () => {
  for (const name of SHIPPED) {
    await page.goto(baseURL + '?model=' + name);
    await waitState(page, 'ready');
    const info = await page.evaluate(() => asbm.info());
    assert.equal(info.image, true, `${name} is not an image model`);
    assert.deepEqual(info.nets, ['gen'], `${name}: networks fetched at NFE 1`);
    const dim = info.shape.reduce((a, b) => a * b, 1);
    for (const opt of [{ nfe: 1, seed: 3, grid: 4 }, { nfe: 8, seed: 5, sampler: 'sde', grid: 4 }]) {
      const imgs = await generateImages(page, { ...opt, dim });
      const r = await page.evaluate(() => window.asbmLastResult);
      const st = await canvasStats(page, '#plot');
      // Digits are mostly black background, so "painted" is not asked of them; many colours are.
      assert.ok(st.colours > 20, `${name} NFE ${opt.nfe}: only ${st.colours} colours`);
      const ref = await backendSample({ ...opt, n: opt.grid * opt.grid, model: name, dim });
      const d = maxScaledDiff(imgs, ref);
      console.log(`# ${name} NFE ${opt.nfe}: ${info.shape.join('×')}, max |page − backend sample|/(1+|ref|) = ` +
        `${d.toExponential(2)}, ${r.ms.toFixed(1)} ms (${r.first ? 'first run' : 'warm'}) on ${r.adapter}`);
      assert.ok(d < TOL, `${name} NFE ${opt.nfe}: ${d} ≥ ${TOL}`);
      await shot(page, `shipped-${name}-nfe${opt.nfe}`);
    }
    assert.deepEqual((await page.evaluate(() => asbm.info())).nets, ['score', 'control', 'gen'], `${name}: networks after NFE 8`);
  }
});

test('the widget and /embed show the image model on a page of another origin', async () => {
  const html = `<!doctype html><html><head><meta charset="utf-8"><title>blog</title><link rel="icon" href="data:,">
<script type="module" src="${baseURL}widget.js"></script></head>
<body><article style="max-width:36rem;margin:0 auto;font-family:serif"><h1>A post</h1><p>Some text.</p>
<asbm-generator model="tiny-unet" nfe="1" seed="7"></asbm-generator>
<p>More text.</p>
<iframe id="f" src="${baseURL}embed?model=tiny-unet&nfe=8&seed=13&grid=2" style="width:100%;height:380px;border:0"></iframe>
</article></body></html>`;
  const { page: p, url: otherURL, errors, close } = await blogOnOtherOrigin(ctx, html, pageLog);
  try {
    await p.goto(otherURL);
    // Default grid: one image, the first of the page's NFE 1 seed 7 grid (rows are independent and
    // the noise is drawn row-major, so image 0 does not depend on n).
    const one = await widgetGenerate(p.mainFrame(), 'element');
    assert.deepEqual(one.shape, [1, 3, 8, 8]);
    assert.deepEqual(one.images, results.gen7.slice(0, DIM), 'widget image differs from the page\'s first image');
    const frame = p.frame({ url: /\/embed\?/ });
    assert.ok(frame, 'the /embed iframe did not load');
    const framed = await widgetGenerate(frame, 'iframe');
    assert.deepEqual(framed.shape, [4, 3, 8, 8]);
    // The widget's default sampler is the page's: ancestral.
    assert.deepEqual(framed.images, results.ancestral13, 'iframe differs from the page\'s NFE 8 ancestral grid');
    await shot(p, 'cross-origin-image-widget');
    assert.deepEqual(errors, [], 'console errors on the embedding page');
  } finally {
    await close();
  }
});

// The goal of issue 5: the emoji widget's first visit (empty caches) moves at most 2 MB, the wasm
// client and the model included. Sizes are the encoded bodies as they crossed the wire.
test('the emoji widget on a fresh browser transfers at most 2 MB in all', async () => {
  const fresh = await launch(await mkdtemp(path.join(tmp, 'profile-transfer-')));
  const html = `<!doctype html><html><head><meta charset="utf-8"><title>post</title><link rel="icon" href="data:,">
<script type="module" src="${baseURL}widget.js"></script></head>
<body><asbm-generator model="emoji" nfe="1" seed="0"></asbm-generator></body></html>`;
  const { page: p, url: otherURL, errors, close } = await blogOnOtherOrigin(fresh, html, pageLog);
  const sizes = [];
  p.on('requestfinished', async (req) => {
    if (!req.url().startsWith(baseURL)) return;
    const sz = await req.sizes();
    const u = new URL(req.url());
    sizes.push({ file: u.pathname, nets: u.searchParams.get('nets'), bytes: sz.responseBodySize + sz.responseHeadersSize });
  });
  try {
    await p.goto(otherURL);
    await widgetGenerate(p.mainFrame(), 'emoji element');
    const total = sizes.reduce((a, b) => a + b.bytes, 0);
    const byFile = sizes.sort((a, b) => b.bytes - a.bytes).map((x) => `${x.file} ${x.bytes}`).join(', ');
    console.log(`# emoji widget, first visit: ${total} bytes over the wire (${byFile})`);
    assert.ok(sizes.some((x) => x.file.endsWith('/asbm.wasm')) && sizes.some((x) => x.file.endsWith('/emoji.msgpack')),
      `the wasm or the model was not fetched: ${byFile}`);
    // At NFE 1 the widget runs the generator alone, and fetched only that network of the file.
    const fetched = sizes.filter((x) => x.file.endsWith('/emoji.msgpack'));
    assert.deepEqual(fetched.map((x) => x.nets), ['gen'], `the model requests: ${JSON.stringify(fetched)}`);
    const whole = (await stat(path.join(weightsDir, 'emoji.msgpack'))).size;
    assert.ok(fetched[0].bytes < whole / 3, `the generator alone took ${fetched[0].bytes} bytes of the file's ${whole}`);
    // Moving the slider past 1 fetches, once, the rest of the networks the widget may run (not the
    // baseline), and the element draws with them.
    const after = await p.mainFrame().evaluate(async () => {
      const el = document.querySelector('asbm-generator');
      const slider = el.shadowRoot.querySelector('input');
      slider.value = '8';
      slider.dispatchEvent(new Event('input'));
      await el.generate();
      slider.value = '4';
      slider.dispatchEvent(new Event('input'));
      await el.generate();
      return { state: el.dataset.state, status: el.shadowRoot.querySelector('.status').textContent };
    });
    assert.equal(after.state, 'done', after.status);
    const models = () => sizes.filter((x) => x.file.endsWith('/emoji.msgpack')).map((x) => x.nets);
    for (let i = 0; i < 50 && models().length < 2; i++) await new Promise((r) => setTimeout(r, 100)); // sizes() is async
    const later = models();
    assert.deepEqual(later, ['gen', 'control,gen,score'], 'the model requests after NFE 8 and 4');
    assert.ok(total <= 2 * 1024 * 1024, `the emoji widget moved ${total} bytes (> 2 MiB): ${byFile}`);
    assert.deepEqual(errors, [], 'console errors');
  } finally {
    await close();
    await fresh.close();
  }
});

test('the blog page renders with its widget (screenshot)', async () => {
  const p = await ctx.newPage();
  watch(p, 'blog');
  try {
    await p.goto(baseURL + 'blog.html');
    const el = p.locator('#demo-element');
    await p.waitForFunction(() => ['ready', 'error'].includes(document.getElementById('demo-element').dataset.state), null, { timeout: 120000 });
    await el.locator('button').click();
    await p.waitForFunction(() => ['done', 'error'].includes(document.getElementById('demo-element').dataset.state), null, { timeout: 120000 });
    assert.equal(await p.evaluate(() => document.getElementById('demo-element').dataset.state), 'done');
    await p.locator('#demo-frame').scrollIntoViewIfNeeded();
    await shot(p, 'blog');
  } finally {
    await p.close();
  }
});
