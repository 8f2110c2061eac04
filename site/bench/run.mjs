// The browser's speed against TensorFlow.js (issue 14): the same U-Net, the same weights, in one
// headless Chromium page, on this project's WebGPU path (shaders.GPUNet through asbm.forward) and
// CPU path (Go's wasm), and on tfjs's webgpu and wasm backends (the network built from the weights
// with ./tfjs-unet.js). Not a test: a report. Run after ./build.sh build, or as ./build.sh bench-browser [args]:
//
//   node site/bench/run.mjs [--models emoji,large] [--batches 1,16] [--reps 10] [--warmup 3]
//
// Protocol, per model × batch × path: a fresh page; the cold call (pipelines compiled on first use);
// --warmup untimed calls; the median of --reps timed calls. A call includes uploading t and x and
// reading the output back (asbm.forward; for tfjs, tensor creation and await data()). Every path's
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
const ctx = await launch(await mkdtemp(path.join(tmp, 'profile-')));
// The tfjs files are answered from node_modules by the page's router: nothing is copied into dist.
await ctx.route('**/vendor/**', async (route) => {
  const file = VENDOR[new URL(route.request().url()).pathname];
  if (!file) return route.fulfill({ status: 404 });
  const type = file.endsWith('.wasm') ? 'application/wasm' : 'text/javascript';
  return route.fulfill({ status: 200, contentType: type, body: await readFile(file) });
});

// runPath measures one path in a fresh page and returns {cold, median, min, max, out (first image),
// maxRelErr vs ref}.
async function runPath(model, batch, p) {
  const page = await ctx.newPage();
  try {
    await page.goto(url + 'embed?model=none');
    await page.waitForFunction(() => globalThis.asbm && typeof asbm.load === 'function', null, { timeout: 60000 });
    if (p.startsWith('tfjs')) {
      for (const s of ['tf-core', 'tf-backend-cpu', p === 'tfjs-webgpu' ? 'tf-backend-webgpu' : 'tf-backend-wasm']) {
        await page.addScriptTag({ url: `/vendor/${s}.min.js` });
      }
    }
    return await page.evaluate(async ({ model, batch, p, reps, warmup }) => {
      const info = await asbm.load(`/weights/${model}.msgpack`, { device: p === 'ours-gpu' ? 'gpu' : 'cpu' });
      const dim = info.arch.channels * info.arch.height * info.arch.width;
      // Inputs: t = 1 (the generator's time) and a fixed pseudo-random x, the same in every page.
      const t = new Float32Array(batch).fill(1);
      const x = new Float32Array(batch * dim);
      let s = 12345;
      for (let i = 0; i < x.length; i++) { s = (s * 1103515245 + 12345) % 2147483648; x[i] = s / 1073741824 - 1; }
      let call;
      if (p.startsWith('ours')) {
        const device = p === 'ours-gpu' ? 'gpu' : 'cpu';
        call = async () => (await asbm.forward({ net: 'gen', t, x, device })).out;
      } else {
        const backend = p === 'tfjs-webgpu' ? 'webgpu' : 'wasm';
        if (backend === 'wasm') tf.wasm.setWasmPaths('/vendor/');
        if (!(await tf.setBackend(backend))) throw new Error(`tfjs backend ${backend} did not start`);
        await tf.ready();
        const { buildUNet } = await import('/vendor/tfjs-unet.js');
        const fwd = buildUNet(tf, info.arch, await asbm.params('gen'));
        call = async () => { const y = fwd(t, x); const d = await y.data(); y.dispose(); return d; };
      }
      const time = async () => { const t0 = performance.now(); const out = await call(); return [performance.now() - t0, out]; };
      const [cold, out] = await time();
      for (let i = 0; i < warmup; i++) await call();
      const ts = [];
      for (let i = 0; i < reps; i++) ts.push((await time())[0]);
      ts.sort((a, b) => a - b);
      const median = ts.length % 2 ? ts[ts.length >> 1] : (ts[ts.length / 2 - 1] + ts[ts.length / 2]) / 2;
      const where = p === 'ours-gpu' ? info.adapter : p === 'ours-cpu' ? 'Go wasm' : tf.getBackend() === 'wasm' ?
        `wasm, SIMD ${tf.env().getBool('WASM_HAS_SIMD_SUPPORT')}, threads ${tf.env().getBool('WASM_HAS_MULTITHREAD_SUPPORT')}` : `webgpu`;
      return { cold, median, min: ts[0], max: ts[ts.length - 1], out: Array.from(out), flops: info.flops, adapter: where, dim };
    }, { model, batch, p, reps: REPS, warmup: WARMUP });
  } finally {
    await page.close();
  }
}

const relErr = (a, b) => { let d = 0, s = 0; for (let i = 0; i < b.length; i++) { d = Math.max(d, Math.abs(a[i] - b[i])); s = Math.max(s, Math.abs(b[i])); } return d / Math.max(s, 1e-12); };

try {
  console.log(`TensorFlow.js 4.22.0 against this project's paths in ${(await ctx.browser()?.version()) ?? 'Chromium'}, ${REPS} timed calls after ${WARMUP} warm-ups (median, min–max), one network call (the generator) per row batch`);
  console.log('| model | batch | path | cold ms | median ms (min–max) | GFLOP/s | ÷ tfjs (same kind) | max rel. err vs our CPU |');
  console.log('|---|---|---|---|---|---|---|---|');
  for (const model of MODELS) {
    for (const batch of BATCHES) {
      const res = {};
      for (const p of PATHS) {
        try {
          res[p] = await runPath(model, batch, p);
        } catch (e) {
          res[p] = { error: String(e.message || e).split('\n')[0] };
        }
      }
      const ref = res['ours-cpu']?.out;
      for (const p of PATHS) {
        const r = res[p];
        if (r.error) { console.log(`| ${model} | ${batch} | ${p} | – | failed: ${r.error} | | | |`); continue; }
        const other = { 'ours-gpu': 'tfjs-webgpu', 'ours-cpu': 'tfjs-wasm' }[p];
        const ratio = other && res[other] && !res[other].error ? (r.median / res[other].median).toFixed(2) : '';
        const err = ref ? relErr(r.out, ref) : NaN;
        const gflops = (batch * r.flops / (r.median / 1e3) / 1e9).toFixed(2);
        console.log(`| ${model} | ${batch} | ${p} (${r.adapter}) | ${r.cold.toFixed(0)} | ${r.median.toFixed(1)} (${r.min.toFixed(1)}–${r.max.toFixed(1)}) | ${gflops} | ${ratio} | ${err.toExponential(1)}${err < 1e-3 ? '' : ' ✗'} |`);
      }
    }
  }
} finally {
  await ctx.close();
  proc.kill();
}
