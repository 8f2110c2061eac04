// Cold and warm generate times of the tiny image model (site/test/fixtures/tiny-unet.msgpack) in
// headless Chromium, CPU path and WebGPU path (SwiftShader here), at NFE 1 and NFE 8; prints a
// table. Not a test (nothing is asserted on timings); run it after ./build.sh build:
//
//   node site/test/bench-images.mjs [--n 16] [--runs 5]
//
// Every row starts a fresh page, so the Go runtime and the WebGPU device are new: "cold" is the
// first generate after asbm.load (pipelines compiled on first use), "after warm-up" the first
// generate after asbm.load + asbm.warmup (what the page does), "warm" the median of the next runs.
import { mkdtemp, mkdir, copyFile, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { startServer, launch } from './helpers.mjs';

const here = path.dirname(fileURLToPath(import.meta.url));
const root = path.resolve(here, '..', '..');
const dist = path.join(root, 'dist');
const arg = (name, def) => {
  const i = process.argv.indexOf('--' + name);
  return i > 0 ? Number(process.argv[i + 1]) : def;
};
const N = arg('n', 16);
const RUNS = arg('runs', 5);

const median = (v) => { const s = [...v].sort((a, b) => a - b); const m = s.length >> 1; return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2; };

const tmp = await mkdtemp(path.join(tmpdir(), 'asbm-bench-'));
const weights = path.join(tmp, 'weights');
await mkdir(weights);
await copyFile(path.join(here, 'fixtures', 'tiny-unet.msgpack'), path.join(weights, 'tiny-unet.msgpack'));
const { url, proc } = await startServer(path.join(dist, 'backend'), dist, weights);
const ctx = await launch(await mkdtemp(path.join(tmp, 'profile-')));
try {
  const raw = (await stat(path.join(dist, 'asbm.wasm'))).size;
  const gz = (await stat(path.join(dist, 'asbm.wasm.gz'))).size;
  console.log(`asbm.wasm: ${raw} bytes raw, ${gz} bytes gzip`);
  console.log(`tiny-unet (3×8×8, 5,699 parameters per network), n = ${N} images, seed 1, ${RUNS} warm runs`);
  console.log('| path | NFE | load ms | warm-up ms | first generate ms | warm median ms (min–max) |');
  console.log('|---|---|---|---|---|---|');
  for (const device of ['cpu', 'gpu']) {
    for (const nfe of [1, 8]) {
      for (const warmup of [false, true]) {
        const p = await ctx.newPage();
        // The /embed page with no such model: it starts the Go runtime and loads nothing.
        await p.goto(url + 'embed?model=none');
        await p.waitForFunction(() => globalThis.asbm && typeof asbm.load === 'function', null, { timeout: 60000 });
        const r = await p.evaluate(async ({ device, nfe, warmup, n, runs }) => {
          const bytes = new Uint8Array(await (await fetch('/weights/tiny-unet.msgpack')).arrayBuffer());
          let t = performance.now();
          const info = await asbm.load(bytes, { device, name: 'tiny-unet' });
          const load = performance.now() - t;
          if (device === 'gpu' && info.gpuError) return { error: info.gpuError };
          let wu = null;
          if (warmup) wu = (await asbm.warmup({ device })).ms;
          const opt = { nfe, seed: 1, n, device, sampler: 'sde' };
          const warm = [];
          let first;
          try {
            first = await asbm.generate(opt);
            for (let i = 0; i < runs; i++) warm.push((await asbm.generate(opt)).ms);
          } catch (e) {
            return { error: `generate ${warm.length + (first ? 2 : 1)} failed: ${e.message}` };
          }
          return { load, wu, first: first.ms, firstFlag: first.first, warm, adapter: info.adapter };
        }, { device, nfe, warmup, n: N, runs: RUNS });
        await p.close();
        if (r.error) { console.log(`| ${device} | ${nfe} | — | — | ${r.error} | |`); continue; }
        const w = r.warm;
        console.log(`| ${device === 'gpu' ? 'WebGPU (' + r.adapter + ')' : 'CPU (Go/wasm)'} | ${nfe} | ${r.load.toFixed(0)} | ` +
          `${r.wu === null ? '—' : r.wu.toFixed(0)} | ${r.first.toFixed(1)}${r.wu === null ? ' (cold)' : ' (after warm-up)'} | ` +
          `${median(w).toFixed(1)} (${Math.min(...w).toFixed(1)}–${Math.max(...w).toFixed(1)}) |`);
      }
    }
  }
  // The WebAssembly memory over repeated GPU generates (NFE 8, no previews): it must stay flat, see
  // collectJSValues in wasm/generate.go.
  const p = await ctx.newPage();
  await p.goto(url + 'embed?model=none');
  await p.waitForFunction(() => globalThis.asbm && typeof asbm.load === 'function', null, { timeout: 60000 });
  const mem = await p.evaluate(async (n) => {
    const mib = () => (globalThis.wasm.instance.exports.mem.buffer.byteLength / 2 ** 20).toFixed(1);
    const bytes = new Uint8Array(await (await fetch('/weights/tiny-unet.msgpack')).arrayBuffer());
    const info = await asbm.load(bytes, { device: 'gpu', name: 'tiny-unet' });
    if (info.gpuError) return [info.gpuError];
    const out = [mib()];
    for (let i = 0; i < 10; i++) {
      try { await asbm.generate({ nfe: 8, seed: i, n, device: 'gpu' }); out.push(mib()); } catch (e) { out.push('ERROR ' + e.message); }
    }
    return out;
  }, N);
  await p.close();
  console.log(`wasm memory (MiB) after load and after each of 10 GPU generates: ${mem.join(' ')}`);
} finally {
  await ctx.close();
  proc.kill('SIGTERM');
  await rm(tmp, { recursive: true, force: true });
}
