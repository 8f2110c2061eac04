// The ASBM demo page: loads the Go/WebAssembly client (asbm.wasm), lists the models the server
// offers, and draws what asbm.generate returns. Plain JavaScript (an ES module), no framework,
// nothing from other origins. Drawing (plot.js) and the runtime and cached model files
// (runtime.js) are shared with the embeddable widget (widget.js).
//
// For tests and embedding:
//   document.body.dataset.state  "loading" | "ready" | "busy" | "done" | "error"
//   window.asbmLastPoints        Float32Array of the last generated points (x0, y0, x1, y1, …)
//   window.asbmLastResult        the last result object (ms, adapter, method, steps, seed)
//   document.body.dataset.weights "cache" | "network": where the current model file came from
// URL parameters: ?model=NAME picks a model, ?device=gpu|cpu overrides the automatic choice (a
// software WebGPU adapter such as SwiftShader is slower than the CPU path, so "auto" takes the CPU
// there and says so).
import { drawAxes, drawPoints as plotPoints, drawMessage as plotMessage } from './plot.js';
import { startRuntime, listModels as listFromServer, fetchModel, clearCache, exclusive } from './runtime.js';

const POINTS = 2000;
const BASE = new URL('./', import.meta.url);

const $ = (id) => document.getElementById(id);
const ui = {
  model: $('model'), nfe: $('nfe'), nfeValue: $('nfe-value'), nfeLabel: $('nfe-label'),
  sampler: $('sampler'), seed: $('seed'), generate: $('generate'), download: $('download'),
  progress: $('progress'), timing: $('timing'), status: $('status'), message: $('message'),
  canvas: $('plot'), form: $('controls'), clearCache: $('clear-cache'),
};
const params = new URLSearchParams(location.search);
let forcedDevice = ['gpu', 'cpu'].includes(params.get('device')) ? params.get('device') : '';

let info = null;   // what asbm.load returned for the current model
let busy = false;
let last = null;   // {points, nfe, sampler, seed}
let models = [];   // what listModels returned

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

function updateNFELabel() {
  const n = Number(ui.nfe.value);
  ui.nfeValue.textContent = String(n);
  if (n === 1) {
    ui.nfeLabel.textContent = '1 = distilled one-step generator';
  } else if (ui.sampler.value === 'ode') {
    ui.nfeLabel.textContent = `${n} Heun steps of the probability-flow ODE`;
  } else {
    ui.nfeLabel.textContent = `${n} Euler–Maruyama steps of the backward SDE`;
  }
  ui.sampler.disabled = n === 1;
}

// --- drawing (plot.js) ------------------------------------------------------------------------

function drawPoints(points) { return plotPoints(ui.canvas, points); }
function drawMessage(text) { plotMessage(ui.canvas, text); }

// --- actions -------------------------------------------------------------------------------

async function listModels() {
  const list = await listFromServer(BASE);
  return list.map((m) => ({ ...m, value: m.src }));
}

function chooseDevice() {
  if (forcedDevice) return forcedDevice;
  return info && info.software ? 'cpu' : 'gpu';
}

function deviceNote() {
  const d = chooseDevice();
  if (d === 'cpu' && !forcedDevice) {
    return `software WebGPU adapter (${info.adapter}): using the faster CPU path`;
  }
  return d === 'cpu' ? 'CPU path (forced)' : `GPU: ${info.adapter}`;
}

async function loadModel(value) {
  const m = models.find((x) => x.value === value);
  const url = m ? m.url : value;
  setState('loading');
  ui.generate.disabled = true;
  clearError();
  status('Loading ' + (m ? m.name : url) + ' …');
  let from = '';
  try {
    info = await exclusive(async () => {
      if (!m) return globalThis.asbm.load(url, forcedDevice === 'cpu' ? { device: 'cpu' } : undefined);
      const got = await fetchModel(m, (got, total) => {
        ui.progress.value = total > 0 ? got / total : 0;
        status(`Loading ${m.name} … ${(got / 1024).toFixed(0)}` + (total > 0 ? ` / ${(total / 1024).toFixed(0)} KiB` : ' KiB'));
      });
      from = got.fromCache ? 'cache' : 'network';
      const opts = { name: m.src };
      if (forcedDevice === 'cpu') opts.device = 'cpu';
      globalThis.__asbmLoaded = ''; // widgets on this page must reload theirs (see widget.js)
      return globalThis.asbm.load(got.bytes, opts);
    });
  } catch (e) {
    info = null;
    showError(String(e && e.message ? e.message : e));
    if (forcedDevice !== 'cpu') offerCPU();
    return;
  }
  document.body.dataset.weights = from;
  const hasGen = info.nets.includes('gen');
  const hasODE = info.samplers.includes('ode');
  ui.sampler.querySelector('option[value=ode]').disabled = !hasODE;
  if (!hasODE) ui.sampler.value = 'sde';
  if (!hasGen && Number(ui.nfe.value) === 1) { ui.nfe.value = '8'; }
  ui.nfe.min = hasGen ? '1' : '2';
  updateNFELabel();
  ui.generate.disabled = false;
  status(`Ready: ${info.dataset || url}` + (from ? (from === 'cache' ? ' · from cache' : ' · downloaded') : '') +
    ` · ${deviceNote()}`);
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
  busy = true;
  ui.generate.disabled = true;
  ui.model.disabled = true;
  ui.progress.value = 0;
  setState('busy');
  clearError();
  status(nfe === 1 ? 'Generating (one step)…' : `Generating (${nfe} steps)…`);
  try {
    const r = await exclusive(() => globalThis.asbm.generate({ nfe, seed, sampler, points: POINTS, device: chooseDevice() }));
    window.asbmLastPoints = r.points;
    window.asbmLastResult = { ms: r.ms, adapter: r.adapter, method: r.method, steps: r.steps, seed: r.seed };
    last = { points: r.points, nfe, sampler: r.method, seed };
    const outside = drawPoints(r.points);
    ui.timing.textContent = `${r.points.length / 2} points in ${r.ms.toFixed(1)} ms`;
    status(`${r.method === 'gen' ? 'one-step generator' : r.method === 'ode' ? 'PF-ODE (Heun)' : 'backward SDE'}` +
      `, NFE ${nfe}, seed ${seed} · ${r.adapter}` + (outside ? ` · ${outside} points outside the view` : ''));
    ui.download.disabled = false;
    ui.progress.value = 1;
    setState('done');
  } catch (e) {
    showError(String(e && e.message ? e.message : e));
  } finally {
    busy = false;
    ui.generate.disabled = !info;
    ui.model.disabled = false;
  }
}

function downloadPNG() {
  if (!last) return;
  const name = `asbm-${info.dataset || 'model'}-nfe${last.nfe}-${last.sampler}-seed${last.seed}.png`;
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
  ui.sampler.addEventListener('change', updateNFELabel);
  ui.form.addEventListener('submit', (e) => { e.preventDefault(); generate(); });
  ui.download.addEventListener('click', downloadPNG);
  ui.model.addEventListener('change', () => loadModel(ui.model.value));
  ui.clearCache.addEventListener('click', clearWeights);
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
    const wanted = params.get('model') || '8gaussians';
    const pick = models.find((m) => m.name === wanted) || models[0];
    ui.model.value = pick.value;
    ui.model.disabled = false;
    await loadModel(pick.value);
  } catch (e) {
    showError(String(e && e.message ? e.message : e));
  }
}

main();
