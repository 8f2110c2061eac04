// screenshot.mjs: serve a folder of model files with the real `backend serve`, open the page on one
// model in headless Chromium (SwiftShader WebGPU), generate, and save a full-page screenshot — the
// pictures of the README, remade by one command.
//
//   node site/tools/screenshot.mjs --model NAME --out FILE.png [--weights DIR] [--nfe N] [--seed S]
//        [--sampler sde|ode|ancestral] [--denoise] [--grid K] [--device cpu|gpu]
//
// NAME is a file NAME.msgpack in --weights (default weights/). Needs dist/ from ./build.sh build and
// what ./build.sh test installs (Chromium, playwright-core). --grid applies to image models only.
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { fileURLToPath } from 'node:url';
import { startServer, launch, waitState } from '../test/helpers.mjs';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const { values: o } = parseArgs({
  options: {
    model: { type: 'string' }, out: { type: 'string' }, weights: { type: 'string', default: path.join(root, 'weights') },
    nfe: { type: 'string', default: '8' }, seed: { type: 'string', default: '1' }, sampler: { type: 'string', default: '' },
    grid: { type: 'string', default: '4' }, device: { type: 'string', default: '' }, denoise: { type: 'boolean', default: false },
  },
});
if (!o.model || !o.out) {
  console.error('usage: node site/tools/screenshot.mjs --model NAME --out FILE.png [--weights DIR] [--nfe N] [--seed S] [--sampler sde|ode|ancestral] [--denoise] [--grid K] [--device cpu|gpu]');
  process.exit(2);
}
const tmp = await mkdtemp(path.join(tmpdir(), 'asbm-shot-'));
const { url, proc } = await startServer(path.join(root, 'dist', 'backend'), path.join(root, 'dist'), path.resolve(o.weights));
const ctx = await launch(path.join(tmp, 'profile'));
try {
  const p = await ctx.newPage();
  await p.goto(`${url}?model=${encodeURIComponent(o.model)}` + (o.device ? `&device=${o.device}` : ''));
  await waitState(p, 'ready');
  if (await p.evaluate(() => document.body.dataset.kind) === 'images') await p.selectOption('#grid', o.grid);
  await p.fill('#nfe', o.nfe);
  // Without --sampler the page's default for the model's kind (ancestral for images, sde for 2-D).
  if (Number(o.nfe) > 1 && o.sampler) await p.selectOption('#sampler', o.sampler);
  const sampler = await p.inputValue('#sampler');
  if (Number(o.nfe) > 1 && sampler !== 'ancestral') await p.setChecked('#denoise', o.denoise);
  await p.fill('#seed', o.seed);
  await p.click('#generate');
  await waitState(p, 'done', 600000);
  await p.screenshot({ path: o.out, fullPage: true });
  console.log(`${o.out}: ${o.model}, NFE ${o.nfe}, ${sampler}${o.denoise ? ' + denoise' : ''}, seed ${o.seed}: ${await p.textContent('#timing')}`);
} finally {
  await ctx.close();
  proc.kill('SIGTERM');
  await rm(tmp, { recursive: true, force: true });
}
