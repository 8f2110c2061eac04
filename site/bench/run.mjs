// The browser's speed against TensorFlow.js (issue 14): the same U-Net, the same weights, in one
// headless Chromium page, on this project's WebGPU path (shaders.GPUNet through asbm.forward) and
// CPU path (the wasm SIMD kernels of wasm/simd, or plain Go where they cannot run), and on tfjs's
// webgpu and wasm backends (the network built from the weights with ./tfjs-unet.js). Not a test: a
// report. Run after ./build.sh build, or as ./build.sh bench-browser [args]:
//
//   node site/bench/run.mjs [--models emoji,large] [--batches 1,16] [--reps 10] [--warmup 3] [--rounds 5] [--paths …] [--verbose]
//
// Paths: ours-gpu, tfjs-webgpu, ours-cpu (the CPU path as the page runs it), tfjs-wasm, and
// ours-cpu-go (the CPU path on its plain-Go kernels, asbm.forward's {simd: false}; not in the
// default list: it is slow).
//
// Protocol, per model × batch: every path gets a fresh page in a browser of its own, the cold call (pipelines compiled,
// weights placed on first use) and --warmup untimed calls; then --reps timed calls per path, made
// in --rounds rounds that alternate between the paths' pages (so that load from other processes
// on a shared machine falls on every path alike); the median, min and max of each path's calls.
// A call includes uploading t and x and reading the output back (asbm.forward; for tfjs, tensor
// creation and await data()). "÷ tfjs, minima" divides the fastest calls: on a busy machine the
// least disturbed estimate of what each path can do. Every path's
// output is checked against this project's CPU path: max |a − b| / max |b| < 1e-3. GFLOP/s counts a
// multiply and an add apart (model.RowFLOPs per image). "÷ tfjs" is this project's time over tfjs's
// on the same kind of backend (GPU: webgpu; CPU: wasm), so below 1 is faster.
//
// Models: "emoji" is the shipped weights/emoji.msgpack; "large" a random 3×32×32 U-Net, base 32,
// mults 1,2,2, two blocks per level (site/test/mkfixture -arch).
import { execFileSync } from 'node:child_process';
import { mkdtemp, mkdir, copyFile, readFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { startServer, launch, mustExist } from '../test/helpers.mjs';

const here = path.dirname(fileURLToPath(import.meta.url));
const root = path.resolve(here, '..', '..');
const dist = path.join(root, 'dist');
const argv = process.argv;
const opt = (name, def) => { const i = argv.indexOf('--' + name); return i > 0 ? argv[i + 1] : def; };
const MODELS = opt('models', 'emoji,large').split(',');
const BATCHES = opt('batches', '1,16').split(',').map(Number);
const REPS = Number(opt('reps', '10'));
const WARMUP = Number(opt('warmup', '3'));
const ROUNDS = Number(opt('rounds', '5'));
const VERBOSE = argv.includes('--verbose'); // print every timed call
const PATHS = opt('paths', 'ours-gpu,tfjs-webgpu,ours-cpu,tfjs-wasm').split(',');

const LARGE = '{"Channels": 3, "Height": 32, "Width": 32, "Base": 32, "Mults": [1, 2, 2], "ResBlocks": 2, "Groups": 8, "TimeEmb": 128, "Fourier": 16}';
const tf = path.join(root, 'site', 'node_modules', '@tensorflow');
const VENDOR = {
  '/vendor/tf-core.min.js': path.join(tf, 'tfjs-core/dist/tf-core.min.js'),
  '/vendor/tf-backend-cpu.min.js': path.join(tf, 'tfjs-backend-cpu/dist/tf-backend-cpu.min.js'),
  '/vendor/tf-backend-webgpu.min.js': path.join(tf, 'tfjs-backend-webgpu/dist/tf-backend-webgpu.min.js'),
  '/vendor/tf-backend-wasm.min.js': path.join(tf, 'tfjs-backend-wasm/dist/tf-backend-wasm.min.js'),
  '/vendor/tfjs-backend-wasm.wasm': path.join(tf, 'tfjs-backend-wasm/dist/tfjs-backend-wasm.wasm'),
  '/vendor/tfjs-backend-wasm-simd.wasm': path.join(tf, 'tfjs-backend-wasm/dist/tfjs-backend-wasm-simd.wasm'),
  '/vendor/tfjs-backend-wasm-threaded-simd.wasm': path.join(tf, 'tfjs-backend-wasm/dist/tfjs-backend-wasm-threaded-simd.wasm'),
  '/vendor/tfjs-unet.js': path.join(here, 'tfjs-unet.js'),
};

await mustExist(path.join(dist, 'asbm.wasm'), 'the built site', 'run ./build.sh build first');
await mustExist(VENDOR['/vendor/tf-core.min.js'], 'TensorFlow.js', 'run (cd site && npm ci)');
const tmp = await mkdtemp(path.join(tmpdir(), 'asbm-tfjs-bench-'));
const weights = path.join(tmp, 'weights');
await mkdir(weights);
await copyFile(path.join(root, 'weights', 'emoji.msgpack'), path.join(weights, 'emoji.msgpack'));
if (MODELS.includes('large')) {
  execFileSync('go', ['run', './site/test/mkfixture', '-out', path.join(weights, 'large.msgpack'), '-arch', LARGE], { cwd: root });
}
const { url, proc } = await startServer(path.join(dist, 'backend'), dist, weights);
// newBrowser starts a Chromium of its own (a fresh profile): every path runs in a separate browser,
// because pages of one origin in one browser can share a renderer process, and a second page
// with a model loaded was seen to slow tfjs-wasm down 2–3×. The tfjs files are answered from
// node_modules by the browser's router: nothing is copied into dist.
const browsers = [];
async function newBrowser() {
  const ctx = await launch(await mkdtemp(path.join(tmp, 'profile-')));
  browsers.push(ctx);
  await ctx.route('**/vendor/**', async (route) => {
    const file = VENDOR[new URL(route.request().url()).pathname];
    if (!file) return route.fulfill({ status: 404 });
    const type = file.endsWith('.wasm') ? 'application/wasm' : 'text/javascript';
    return route.fulfill({ status: 200, contentType: type, body: await readFile(file) });
  });
  return ctx;
}

// openPath loads the model in a fresh page for one path, makes the cold call (pipelines compiled,
// weights placed) and the warm-up calls, and returns {page, cold, out (the output), flops, dim}.
// The page keeps the path's call in globalThis.__bench for timeRound.
async function openPath(model, batch, p) {
  const ctx = await newBrowser();
  const page = ctx.pages()[0] || await ctx.newPage();
  try {
    await page.goto(url + 'embed?model=none');
    await page.waitForFunction(() => globalThis.asbm && typeof asbm.load === 'function', null, { timeout: 60000 });
    if (p.startsWith('tfjs')) {
      for (const s of ['tf-core', 'tf-backend-cpu', p === 'tfjs-webgpu' ? 'tf-backend-webgpu' : 'tf-backend-wasm']) {
        await page.addScriptTag({ url: `/vendor/${s}.min.js` });
      }
    }
    const r = await page.evaluate(async ({ model, batch, p, warmup }) => {
      const info = await asbm.load(`/weights/${model}.msgpack`, { device: p === 'ours-gpu' ? 'gpu' : 'cpu' });
      const dim = info.arch.channels * info.arch.height * info.arch.width;
      // Inputs: t = 1 (the generator's time) and a fixed pseudo-random x, the same in every page.
      const t = new Float32Array(batch).fill(1);
      const x = new Float32Array(batch * dim);
      let s = 12345;
      for (let i = 0; i < x.length; i++) { s = (s * 1103515245 + 12345) % 2147483648; x[i] = s / 1073741824 - 1; }
      const b = { kernels: '' };
      if (p.startsWith('ours')) {
        const device = p === 'ours-gpu' ? 'gpu' : 'cpu';
        const simd = p !== 'ours-cpu-go';
        b.call = async () => { const r = await asbm.forward({ net: 'gen', t, x, device, simd }); b.kernels = r.kernels || ''; return r.out; };
      } else {
        const backend = p === 'tfjs-webgpu' ? 'webgpu' : 'wasm';
        if (backend === 'wasm') tf.wasm.setWasmPaths('/vendor/');
        if (!(await tf.setBackend(backend))) throw new Error(`tfjs backend ${backend} did not start`);
        await tf.ready();
        const { buildUNet } = await import('/vendor/tfjs-unet.js');
        const fwd = buildUNet(tf, info.arch, await asbm.params('gen'));
        b.call = async () => { const y = fwd(t, x); const d = await y.data(); y.dispose(); return d; };
      }
      globalThis.__bench = b;
      const t0 = performance.now();
      const out = await b.call();
      const cold = performance.now() - t0;
      for (let i = 0; i < warmup; i++) await b.call();
      const where = p === 'ours-gpu' ? info.adapter : p.startsWith('ours-cpu') ? `CPU, ${b.kernels} kernels` : tf.getBackend() === 'wasm' ?
        `wasm, SIMD ${tf.env().getBool('WASM_HAS_SIMD_SUPPORT')}, threads ${tf.env().getBool('WASM_HAS_MULTITHREAD_SUPPORT')}` : `webgpu`;
      return { cold, out: Array.from(out), flops: info.flops, adapter: where, dim };
    }, { model, batch, p, warmup: WARMUP });
    return { page, ctx, ...r };
  } catch (e) {
    await ctx.close();
    throw e;
  }
}

// timeRound makes k timed calls in an opened path's page and returns their times in ms.
async function timeRound(page, k) {
  return page.evaluate(async (k) => {
    const ts = [];
    for (let i = 0; i < k; i++) {
      const t0 = performance.now();
      await globalThis.__bench.call();
      ts.push(performance.now() - t0);
    }
    return ts;
  }, k);
}

const median = (v) => { const s = [...v].sort((a, b) => a - b); return s.length % 2 ? s[s.length >> 1] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2; };

const relErr = (a, b) => { let d = 0, s = 0; for (let i = 0; i < b.length; i++) { d = Math.max(d, Math.abs(a[i] - b[i])); s = Math.max(s, Math.abs(b[i])); } return d / Math.max(s, 1e-12); };

try {
  console.log(`TensorFlow.js 4.22.0 against this project's paths in ${execFileSync('/usr/bin/chromium', ['--version'], { stdio: ['ignore', 'pipe', 'ignore'] }).toString().trim()}, ${REPS} timed calls after ${WARMUP} warm-ups in ${ROUNDS} rounds (median, min–max), one network call (the generator) per row batch`);
  console.log('| model | batch | path | cold ms | median ms (min–max) | GFLOP/s | ÷ tfjs (same kind) | ÷ tfjs, minima | max rel. err vs our CPU |');
  console.log('|---|---|---|---|---|---|---|---|---|');
  for (const model of MODELS) {
    for (const batch of BATCHES) {
      const res = {};
      for (const p of PATHS) {
        try {
          res[p] = await openPath(model, batch, p);
          res[p].ts = [];
        } catch (e) {
          res[p] = { error: String(e.message || e).split('\n')[0] };
        }
      }
      // Rounds alternate between the paths, so that load from other processes falls on all of them.
      const per = Math.ceil(REPS / ROUNDS);
      for (let round = 0; round < ROUNDS; round++) {
        for (const p of PATHS) {
          const r = res[p];
          if (r.error) continue;
          try {
            r.ts.push(...await timeRound(r.page, Math.min(per, REPS - r.ts.length)));
          } catch (e) {
            r.error = String(e.message || e).split('\n')[0];
          }
        }
      }
      for (const p of PATHS) {
        const r = res[p];
        if (r.ctx) await r.ctx.close();
        if (!r.error) {
          if (VERBOSE) console.log(`# ${model} batch ${batch} ${p}: ${r.ts.map((t) => t.toFixed(1)).join(' ')} ms`);
          r.median = median(r.ts);
          r.min = Math.min(...r.ts);
          r.max = Math.max(...r.ts);
        }
      }
      const ref = res['ours-cpu']?.out;
      for (const p of PATHS) {
        const r = res[p];
        if (r.error) { console.log(`| ${model} | ${batch} | ${p} | – | failed: ${r.error} | | | | |`); continue; }
        const other = { 'ours-gpu': 'tfjs-webgpu', 'ours-cpu': 'tfjs-wasm', 'ours-cpu-go': 'tfjs-wasm' }[p];
        const o = other && res[other] && !res[other].error ? res[other] : null;
        const ratio = o ? (r.median / o.median).toFixed(2) : '';
        const ratioMin = o ? (r.min / o.min).toFixed(2) : '';
        const err = ref ? relErr(r.out, ref) : NaN;
        const gflops = (batch * r.flops / (r.median / 1e3) / 1e9).toFixed(2);
        console.log(`| ${model} | ${batch} | ${p} (${r.adapter}) | ${r.cold.toFixed(0)} | ${r.median.toFixed(1)} (${r.min.toFixed(1)}–${r.max.toFixed(1)}) | ${gflops} | ${ratio} | ${ratioMin} | ${err.toExponential(1)}${err < 1e-3 ? '' : ' ✗'} |`);
      }
    }
  }
} finally {
  for (const b of browsers) await b.close().catch(() => {});
  proc.kill();
}
