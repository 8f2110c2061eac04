// The ASBM demo page: loads the Go/WebAssembly client (asbm.wasm), lists the models the server
// offers, and draws what asbm.generate returns. Plain JavaScript (an ES module), no framework,
// nothing from other origins. Drawing (plot.js) and the runtime and cached model files
// (runtime.js) are shared with the embeddable widget (widget.js).
//
// A 2-D model draws 2,000 points; an image model (info.image) draws a grid of n = g×g images, with
// previews of the current state while it samples.
//
// For tests and embedding:
//   document.body.dataset.state  "loading" | "ready" | "busy" | "done" | "error"
//   document.body.dataset.kind   "points" | "images": what the current model draws
//   document.body.dataset.previews  previews drawn during the last image generate
//   window.asbmLastPoints        Float32Array of the last generated points (x0, y0, x1, y1, …)
//   window.asbmLastImages        Float32Array of the last generated images (n×C×H×W, in [−1, 1])
//   window.asbmLastResult        the last result object (ms, adapter, method, steps, seed, n, shape,
//                                device, first)
//   window.asbmWarmup            the last warm-up ({ms, device}) or its error
//   document.body.dataset.weights "cache" | "network": where the current model file came from
//   document.body.dataset.nets   the networks the client holds ("score", "gen", "control,gen,score";
//                                "all" for a whole file)
// The page fetches only the networks its sampler runs (the generator at NFE 1, the score for
// the SDE and the ancestral sampler, both for the PF-ODE), and the rest of the ones it uses the first
// time another sampler needs them, never the baseline (runtime.js, netsFor).
// URL parameters: ?model=NAME picks a model, ?device=gpu|cpu overrides the automatic choice (a
// software WebGPU adapter such as SwiftShader is slower than the CPU path, so "auto" takes the CPU
// there and says so), ?grid=1|2|4|8 the image grid.
import {
  drawAxes, drawPoints as plotPoints, drawMessage as plotMessage, drawImages, drawPlaceholder, gridLayout,
} from './plot.js';
import {
  startRuntime, listModels as listFromServer, fetchModel, clearCache, exclusive, netsFor, pageNets, wantedNets, holdsNets,
} from './runtime.js';

const POINTS = 2000;
const SIZE = 560; // the canvas's width in CSS pixels (style.css)
const GRIDS = ['1', '2', '4', '8'];
// DEFAULT_MODELS is the page's preference when the URL names no model (weights/<name>.msgpack).
const DEFAULT_MODELS = ['emoji', 'digits', 'fashion', '8gaussians'];
const BASE = new URL('./', import.meta.url);

const $ = (id) => document.getElementById(id);
const ui = {
  model: $('model'), nfe: $('nfe'), nfeValue: $('nfe-value'), nfeLabel: $('nfe-label'),
  sampler: $('sampler'), denoise: $('denoise'), seed: $('seed'), generate: $('generate'), download: $('download'),
  progress: $('progress'), timing: $('timing'), status: $('status'), message: $('message'),
  canvas: $('plot'), form: $('controls'), clearCache: $('clear-cache'),
  grid: $('grid'), gridField: $('grid-field'), caption: $('caption'), deviceInfo: $('device-info'),
};
const params = new URLSearchParams(location.search);
let forcedDevice = ['gpu', 'cpu'].includes(params.get('device')) ? params.get('device') : '';
if (GRIDS.includes(params.get('grid'))) ui.grid.value = params.get('grid');

let info = null;   // what asbm.load returned for the current model
let current = null; // the current model's entry of listModels (null: loaded from a bare URL)
let loadedNets = null; // the networks the client holds of it (null: the whole file)
let busy = false;
let last = null;   // {nfe, sampler, seed, grid}
let samplerPicked = false; // the visitor chose a sampler: keep it across models
let models = [];   // what listModels returned
let warm = null;   // the current model's warm-up result, or null
// Generate times of the current model by setting (timingText): {first: ms of the cold run, warm: [ms…]}.
let times = {};

function setState(s) { document.body.dataset.state = s; }
function status(text) { ui.status.textContent = text; }

// showError puts a message on the page and on the canvas, so a failure is never a blank plot.
function showError(text) {
  ui.message.textContent = text;
  ui.message.hidden = false;
  status('Error: ' + text);
  drawMessage(text);
  setState('error');
}

// offerCPU adds a button to the message that reloads the model on the CPU path (plain Go in
// WebAssembly: slower than a real GPU, but it works everywhere).
function offerCPU() {
  const b = document.createElement('button');
  b.type = 'button';
  b.id = 'use-cpu';
  b.textContent = 'Run on the CPU instead';
  b.addEventListener('click', () => { forcedDevice = 'cpu'; start(); });
  ui.message.append(' ', b);
}

function clearError() {
  ui.message.hidden = true;
  ui.message.textContent = '';
}

// noWebGPUText explains a missing WebGPU in words a visitor can act on.
function noWebGPUText() {
  let t = 'WebGPU is not available in this browser (navigator.gpu is missing), so the model cannot run here.';
  if (!window.isSecureContext) {
    t += ' WebGPU needs a secure context (HTTPS or localhost): open the page via https:// or http://localhost.';
  } else {
    t += ' Use a recent Chrome or Edge, or enable WebGPU in Firefox or Safari.';
  }
  return t;
}

// defaultSampler is the sampler a model kind starts with (the widget's rule too).
function defaultSampler(image) { return image ? 'ancestral' : 'sde'; }

function updateNFELabel() {
  const n = Number(ui.nfe.value);
  ui.nfeValue.textContent = String(n);
  if (n === 1) {
    ui.nfeLabel.textContent = '1 = distilled one-step generator';
  } else if (ui.sampler.value === 'ode') {
    ui.nfeLabel.textContent = `${n} Heun steps of the probability-flow ODE`;
  } else if (ui.sampler.value === 'ancestral') {
    ui.nfeLabel.textContent = `${n} ancestral steps (the bridge's posterior at the predicted image)`;
  } else {
    ui.nfeLabel.textContent = `${n} Euler–Maruyama steps of the backward SDE`;
  }
  ui.sampler.disabled = n === 1;
  // The ancestral sampler's last step is the denoising step already; NFE 1 is the generator.
  ui.denoise.disabled = n === 1 || ui.sampler.value === 'ancestral';
}

// --- drawing (plot.js) ------------------------------------------------------------------------

function isImage() { return !!(info && info.image); }

// pointsCanvas gives the canvas back its square size and look after an image grid.
function pointsCanvas() {
  ui.canvas.classList.remove('images');
  if (ui.canvas.width !== SIZE) ui.canvas.width = SIZE;
  if (ui.canvas.height !== SIZE) ui.canvas.height = SIZE;
}

function drawPoints(points) { pointsCanvas(); return plotPoints(ui.canvas, points); }
function drawMessage(text) { plotMessage(ui.canvas, text); }

function gridSize() { return Number(ui.grid.value) || 1; }

function drawGrid(images, shape) {
  ui.canvas.classList.add('images');
  return drawImages(ui.canvas, images, shape, { cols: gridSize(), target: SIZE });
}

// blankCanvas shows what the current model will draw: axes for points, an empty frame for images.
function blankCanvas() {
  if (!isImage()) { pointsCanvas(); drawAxes(ui.canvas); return; }
  ui.canvas.classList.add('images');
  const [, H, W] = info.shape;
  const g = gridSize();
  const shape = [g * g, 1, H, W];
  // The placeholder has the size the grid will have, so the page does not jump on Generate.
  const { width, height } = gridLayout(shape, g, SIZE, 2);
  drawPlaceholder(ui.canvas, 'Press Generate', width, height);
}

function updateKind() {
  const image = isImage();
  document.body.dataset.kind = image ? 'images' : 'points';
  ui.gridField.hidden = !image;
  if (image) {
    const [C, H, W] = info.shape;
    ui.caption.textContent = `A grid of ${C === 1 ? 'grey' : 'colour'} ${H}×${W} images, shown enlarged pixel by pixel.`;
    ui.canvas.setAttribute('aria-label', 'generated images');
  } else {
    ui.caption.textContent = '2,000 samples on [−4, 4]².';
    ui.canvas.setAttribute('aria-label', 'generated points');
  }
}

// --- actions -------------------------------------------------------------------------------

async function listModels() {
  const list = await listFromServer(BASE);
  return list.map((m) => ({ ...m, value: m.src }));
}

function chooseDevice() {
  if (forcedDevice) return forcedDevice;
  if (!info || !info.webgpu || info.gpuError) return 'cpu';
  return info.software ? 'cpu' : 'gpu';
}

function deviceNote() {
  const d = chooseDevice();
  if (d === 'cpu' && !forcedDevice) {
    if (info.gpuError) return `the GPU path cannot run this model (${info.gpuError}): using the CPU path`;
    if (!info.webgpu) return 'CPU path';
    return `software WebGPU adapter (${info.adapter}): using the faster CPU path`;
  }
  return d === 'cpu' ? 'CPU path (forced)' : `GPU: ${info.adapter}`;
}

// precisionNote says in which precision the model runs: every path computes in f32; the GPU path
// keeps an f16 file's weight matrices in f16 (info.precision), the CPU path widens them on load.
// On the CPU path it also names the kernels (info.cpuKernels: "wasm SIMD", or "Go" where the
// browser lacks WebAssembly SIMD).
function precisionNote() {
  const half = chooseDevice() === 'gpu' && info.precision && info.precision !== 'f32';
  const cpu = chooseDevice() === 'cpu' && info.cpuKernels ? ` (CPU: ${info.cpuKernels})` : '';
  const parts = [half ? `GPU: ${info.precision}` : 'Kernels: f32' + cpu];
  if (!half && info.weights && info.weights !== 'f32') parts.push(`weights stored as ${info.weights}, widened to f32`);
  if (isImage()) {
    const [C, H, W] = info.shape;
    parts.push(`U-Net, ${info.params.toLocaleString('en')} parameters per network, ${C}×${H}×${W} images`);
  }
  return parts.join(' · ');
}

// warmUp runs one tiny forward per network on the chosen path (asbm.warmup), so the first Generate
// does not stall on shader compilation. A failure is reported, not fatal: Generate retries.
async function warmUp() {
  const device = chooseDevice();
  status(device === 'gpu' ? 'Compiling the shaders (warm-up)…' : 'Warming up…');
  try {
    warm = await exclusive(() => globalThis.asbm.warmup({ device }));
  } catch (e) {
    warm = null;
    console.warn('warm-up failed:', e);
    window.asbmWarmup = { error: String(e && e.message ? e.message : e) };
    return;
  }
  window.asbmWarmup = warm;
}

function median(v) {
  const s = [...v].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

// timingText records r's time and describes it: the first run of a model on a device is cold
// (pipelines, buffers and caches are built), later ones are warm; both are kept per setting
// (device, sampler, NFE, n), so only like is compared with like.
function timingText(r, what) {
  const key = `${r.device}|${r.method}|${r.steps}|${r.n}`;
  const t = times[key] || (times[key] = { first: null, warm: [] });
  if (r.first) t.first = r.ms; else t.warm.push(r.ms);
  const text = `${what} in ${r.ms.toFixed(1)} ms (${r.first ? 'first run' : 'warm'})`;
  const rest = [];
  if (!r.first && t.first !== null) rest.push(`first run ${t.first.toFixed(0)} ms`);
  if (t.warm.length > 1) rest.push(`warm median ${median(t.warm).toFixed(1)} ms of ${t.warm.length}`);
  if (warm && r.first) rest.push(`after a ${warm.ms.toFixed(0)} ms warm-up`);
  return text + (rest.length ? ' · ' + rest.join(' · ') : '');
}

// modelHas says whether the current model has network net: from /api/models when it lists the
// networks (the client may not hold them all yet), else from what the client loaded.
function modelHas(net) {
  const all = current && pageNets(current);
  return all ? all.includes(net) : !!(info && info.nets.includes(net));
}

// fetchAndLoad fetches nets of the model entry m (null: the whole file) and loads them into the
// client (inside exclusive); it returns the client's info and sets loadedNets and the data attributes.
async function fetchAndLoad(m, nets, what) {
  const got = await fetchModel(m, (got, total) => {
    ui.progress.value = total > 0 ? got / total : 0;
    status(`Loading ${what} … ${(got / 1024).toFixed(0)}` + (total > 0 ? ` / ${(total / 1024).toFixed(0)} KiB` : ' KiB'));
  }, nets);
  const opts = { name: m.src };
  if (forcedDevice === 'cpu') opts.device = 'cpu';
  globalThis.__asbmLoaded = null; // widgets on this page must reload theirs (see widget.js)
  const i = await globalThis.asbm.load(got.bytes, opts);
  loadedNets = got.nets;
  document.body.dataset.weights = got.fromCache ? 'cache' : 'network';
  document.body.dataset.nets = got.nets ? got.nets.join(',') : 'all';
  return { info: i, from: got.fromCache ? 'cache' : 'network' };
}

// ensureNets loads the rest of the page's networks of the current model when the client lacks one
// that nfe and sampler run (inside generate, which holds no exclusive section yet).
async function ensureNets(nfe, sampler) {
  if (!current || holdsNets(current, loadedNets, netsFor(nfe, sampler))) return;
  const rest = pageNets(current);
  const r = await exclusive(() => fetchAndLoad(current, rest, `${current.name} (${rest.join(', ')})`));
  info = r.info;
  await warmUp();
}

async function loadModel(value) {
  const m = models.find((x) => x.value === value);
  const url = m ? m.url : value;
  current = m || null;
  loadedNets = null;
  setState('loading');
  ui.generate.disabled = true;
  clearError();
  status('Loading ' + (m ? m.name : url) + ' …');
  let from = '';
  try {
    info = await exclusive(async () => {
      if (!m) {
        document.body.dataset.weights = 'network';
        document.body.dataset.nets = 'all';
        return globalThis.asbm.load(url, forcedDevice === 'cpu' ? { device: 'cpu' } : undefined);
      }
      // The networks of the sampler the page will open with (the kind's default until the visitor
      // picks one; NFE 8 where there is no generator).
      const image = m.kind === 'unet';
      const sampler = samplerPicked ? ui.sampler.value : defaultSampler(image);
      const all = pageNets(m);
      const nfe = Number(ui.nfe.value) === 1 && all && !all.includes('gen') ? 8 : Number(ui.nfe.value);
      const r = await fetchAndLoad(m, wantedNets(m, netsFor(nfe, sampler)), m.name);
      from = r.from;
      return r.info;
    });
  } catch (e) {
    info = null;
    showError(String(e && e.message ? e.message : e));
    if (forcedDevice !== 'cpu') offerCPU();
    return;
  }
  times = {};
  warm = null;
  last = null;
  ui.download.disabled = true;
  ui.timing.textContent = '';
  updateKind();
  blankCanvas();
  await warmUp();
  const hasGen = modelHas('gen');
  const hasODE = modelHas('score') && modelHas('control');
  ui.sampler.querySelector('option[value=ode]').disabled = !hasODE;
  // Until the visitor picks one, each kind of model gets its better sampler at few steps: the
  // ancestral one for images, the SDE for the 2-D toys, whose spread it keeps (README, "Samplers at
  // few steps").
  if (!samplerPicked) ui.sampler.value = defaultSampler(isImage());
  if (!hasODE && ui.sampler.value === 'ode') ui.sampler.value = defaultSampler(isImage());
  if (!hasGen && Number(ui.nfe.value) === 1) { ui.nfe.value = '8'; }
  ui.nfe.min = hasGen ? '1' : '2';
  updateNFELabel();
  ui.generate.disabled = false;
  status(`Ready: ${info.dataset || url}` + (from ? (from === 'cache' ? ' · from cache' : ' · downloaded') : '') +
    ` · ${deviceNote()}`);
  ui.deviceInfo.textContent = precisionNote() + (warm ? ` · warm-up ${warm.ms.toFixed(0)} ms` : '');
  setState('ready');
}

async function generate() {
  if (busy || !info) return;
  const nfe = Number(ui.nfe.value);
  const seedText = ui.seed.value.trim();
  const seed = Number(seedText);
  if (seedText === '' || !Number.isSafeInteger(seed) || seed < 0) {
    status('The seed must be a whole number ≥ 0.');
    ui.seed.focus();
    return;
  }
  const sampler = ui.sampler.value;
  const image = isImage();
  const g = gridSize();
  busy = true;
  ui.generate.disabled = true;
  ui.model.disabled = true;
  ui.grid.disabled = true;
  ui.progress.value = 0;
  setState('busy');
  clearError();
  let previews = 0;
  try {
    await ensureNets(nfe, sampler);
    status(nfe === 1 ? 'Generating (one step)…' : `Generating (${nfe} steps)…`);
    const opts = { nfe, seed, sampler, denoise: ui.denoise.checked, device: chooseDevice() };
    if (image) {
      opts.n = g * g;
      // About a dozen previews per run: each is one copy of the state and one redraw.
      opts.preview = Math.max(1, Math.round(nfe / 12));
      opts.onProgress = (step, total, pv) => {
        ui.progress.value = total > 0 ? step / total : 0;
        if (pv) {
          drawGrid(pv.images, pv.shape);
          previews++;
          status(`Generating… step ${step} of ${total} (preview of the current state)`);
        }
      };
    } else {
      opts.points = POINTS;
    }
    const r = await exclusive(() => globalThis.asbm.generate(opts));
    window.asbmLastResult = {
      ms: r.ms, adapter: r.adapter, method: r.method, steps: r.steps, seed: r.seed, n: r.n,
      device: r.device, first: r.first, shape: r.shape || null,
    };
    const names = { gen: 'one-step generator', ode: 'PF-ODE (Heun)', sde: 'backward SDE', ancestral: 'ancestral sampler' };
    const denoised = (r.method === 'sde' || r.method === 'ode') && opts.denoise ? ' + denoising step' : '';
    const how = `${names[r.method] || r.method}${denoised}` +
      `, NFE ${nfe}, seed ${seed} · ${r.adapter}`;
    if (image) {
      window.asbmLastImages = r.images;
      document.body.dataset.previews = String(previews);
      drawGrid(r.images, r.shape);
      ui.timing.textContent = timingText(r, `${r.n} image${r.n === 1 ? '' : 's'}`);
      status(how);
    } else {
      window.asbmLastPoints = r.points;
      const outside = drawPoints(r.points);
      ui.timing.textContent = timingText(r, `${r.points.length / 2} points`);
      status(how + (outside ? ` · ${outside} points outside the view` : ''));
    }
    // The file name says how the picture was drawn, the denoising step included.
    last = { nfe, sampler: r.method + (denoised ? '-denoise' : ''), seed, grid: image ? g : 0 };
    ui.download.disabled = false;
    ui.progress.value = 1;
    setState('done');
  } catch (e) {
    showError(String(e && e.message ? e.message : e));
  } finally {
    busy = false;
    ui.generate.disabled = !info;
    ui.model.disabled = false;
    ui.grid.disabled = false;
  }
}

// pngName is the download's file name: model, NFE, sampler, seed (and grid), so a picture can be
// made again from its name.
function pngName() {
  const ds = String(info.dataset || 'model').replace(/[^A-Za-z0-9._-]+/g, '-');
  return `asbm-${ds}-nfe${last.nfe}-${last.sampler}-seed${last.seed}` + (last.grid ? `-${last.grid}x${last.grid}` : '') + '.png';
}

function downloadPNG() {
  if (!last) return;
  const name = pngName();
  ui.canvas.toBlob((blob) => {
    if (!blob) return;
    const a = document.createElement('a');
    a.href = URL.createObjectURL(blob);
    a.download = name;
    document.body.appendChild(a);
    a.click();
    a.remove();
    setTimeout(() => URL.revokeObjectURL(a.href), 10000);
  }, 'image/png');
}

// startWasm starts the page's one Go runtime (runtime.js) and hooks up the progress bar.
async function startWasm() {
  await startRuntime(BASE, () => showError('The Go program stopped; reload the page.'));
  // Progress of 2-D models (image models pass their own callback, with previews).
  globalThis.asbm.onProgress = (step, total) => { ui.progress.value = total > 0 ? step / total : 0; };
}

// clearWeights empties the Cache API copy of the model files; the next load downloads again.
async function clearWeights() {
  try {
    const n = await clearCache();
    status(`Cache cleared (${n} model file${n === 1 ? '' : 's'}).`);
  } catch (e) {
    status('Could not clear the cache: ' + (e && e.message ? e.message : e));
  }
}

async function main() {
  setState('loading');
  ui.nfe.addEventListener('input', updateNFELabel);
  ui.sampler.addEventListener('change', () => { samplerPicked = true; updateNFELabel(); });
  ui.form.addEventListener('submit', (e) => { e.preventDefault(); generate(); });
  ui.download.addEventListener('click', downloadPNG);
  ui.model.addEventListener('change', () => loadModel(ui.model.value));
  ui.clearCache.addEventListener('click', clearWeights);
  ui.grid.addEventListener('change', () => {
    // The grid on screen stays until the next Generate, unless there is none yet.
    if (isImage() && !last) blankCanvas();
  });
  if (!globalThis.caches) ui.clearCache.hidden = true; // no Cache API (insecure context): nothing cached
  updateNFELabel();
  drawAxes(ui.canvas);

  if (!navigator.gpu && forcedDevice !== 'cpu') {
    // Say it at once; the client would reject load with the same reason.
    showError(noWebGPUText());
    offerCPU();
    return;
  }
  await start();
}

let wasmStarted = null;

// start loads the client (once) and the model list, then the preferred model.
async function start() {
  setState('loading');
  clearError();
  try {
    status('Loading the WebAssembly client…');
    wasmStarted = wasmStarted || startWasm();
    [models] = await Promise.all([listModels(), wasmStarted]);
    if (models.length === 0) {
      showError('The server offers no model files: train one with `backend train`, or put *.msgpack files in weights/.');
      return;
    }
    ui.model.textContent = '';
    for (const m of models) ui.model.add(new Option(m.label, m.value));
    // The list comes from /api/models: image models (digits, fashion, emoji, …) are there too once
    // their weights are; the page finds out what a model draws when it loads it (info.image).
    // Without ?model=, the first shipped model of DEFAULT_MODELS the server has: an image model
    // when there is one (emoji faces first), since that is what a visitor came to see.
    const wanted = params.get('model') || DEFAULT_MODELS.find((n) => models.some((m) => m.name === n));
    const pick = models.find((m) => m.name === wanted) || models[0];
    ui.model.value = pick.value;
    ui.model.disabled = false;
    await loadModel(pick.value);
  } catch (e) {
    showError(String(e && e.message ? e.message : e));
  }
}

main();
