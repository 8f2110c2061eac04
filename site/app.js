// The ASBM demo page: loads the Go/WebAssembly client (asbm.wasm), lists the models the server
// offers, and draws what asbm.generate returns. Plain JavaScript, no framework, nothing from other
// origins.
//
// For tests and embedding:
//   document.body.dataset.state  "loading" | "ready" | "busy" | "done" | "error"
//   window.asbmLastPoints        Float32Array of the last generated points (x0, y0, x1, y1, …)
//   window.asbmLastResult        the last result object (ms, adapter, method, steps, seed)
// URL parameters: ?model=NAME picks a model, ?device=gpu|cpu overrides the automatic choice (a
// software WebGPU adapter such as SwiftShader is slower than the CPU path, so "auto" takes the CPU
// there and says so).
'use strict';

const POINTS = 2000;
const EXTENT = 4; // the canvas shows [−EXTENT, EXTENT]²
const FALLBACK_MODELS = ['8gaussians', 'moons', 'checkerboard'];

const $ = (id) => document.getElementById(id);
const ui = {
  model: $('model'), nfe: $('nfe'), nfeValue: $('nfe-value'), nfeLabel: $('nfe-label'),
  sampler: $('sampler'), seed: $('seed'), generate: $('generate'), download: $('download'),
  progress: $('progress'), timing: $('timing'), status: $('status'), message: $('message'),
  canvas: $('plot'), form: $('controls'),
};
const params = new URLSearchParams(location.search);
let forcedDevice = ['gpu', 'cpu'].includes(params.get('device')) ? params.get('device') : '';

let info = null;   // what asbm.load returned for the current model
let busy = false;
let last = null;   // {points, nfe, sampler, seed}

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

// --- drawing -------------------------------------------------------------------------------

function cssColor(name, fallback) {
  const v = getComputedStyle(document.documentElement).getPropertyValue(name).trim();
  return v || fallback;
}

function drawAxes(ctx, w, h) {
  ctx.fillStyle = cssColor('--panel', '#fff');
  ctx.fillRect(0, 0, w, h);
  ctx.strokeStyle = 'rgba(128,128,128,0.25)';
  ctx.lineWidth = 1;
  ctx.font = '11px system-ui, sans-serif';
  ctx.fillStyle = 'rgba(128,128,128,0.9)';
  for (let v = -EXTENT; v <= EXTENT; v++) {
    const px = ((v + EXTENT) / (2 * EXTENT)) * w;
    const py = h - ((v + EXTENT) / (2 * EXTENT)) * h;
    ctx.beginPath(); ctx.moveTo(px + 0.5, 0); ctx.lineTo(px + 0.5, h); ctx.stroke();
    ctx.beginPath(); ctx.moveTo(0, py + 0.5); ctx.lineTo(w, py + 0.5); ctx.stroke();
    if (v !== -EXTENT && v !== EXTENT && v % 2 === 0) {
      ctx.fillText(String(v), px + 3, h / 2 - 3);
      if (v !== 0) ctx.fillText(String(v), w / 2 + 3, py - 3);
    }
  }
}

function drawPoints(points) {
  const ctx = ui.canvas.getContext('2d');
  const w = ui.canvas.width, h = ui.canvas.height;
  drawAxes(ctx, w, h);
  ctx.fillStyle = cssColor('--accent', '#2f5fd0');
  ctx.globalAlpha = 0.7;
  let outside = 0;
  for (let i = 0; i + 1 < points.length; i += 2) {
    const x = points[i], y = points[i + 1];
    if (!(Math.abs(x) <= EXTENT && Math.abs(y) <= EXTENT)) { outside++; continue; }
    const px = ((x + EXTENT) / (2 * EXTENT)) * w;
    const py = h - ((y + EXTENT) / (2 * EXTENT)) * h;
    ctx.fillRect(px - 1.5, py - 1.5, 3, 3);
  }
  ctx.globalAlpha = 1;
  return outside;
}

// drawMessage writes text on the canvas, wrapped to its width.
function drawMessage(text) {
  const ctx = ui.canvas.getContext('2d');
  const w = ui.canvas.width, h = ui.canvas.height;
  ctx.fillStyle = cssColor('--error-bg', '#fde8e6');
  ctx.fillRect(0, 0, w, h);
  ctx.fillStyle = cssColor('--error-fg', '#8a1c12');
  ctx.font = '16px system-ui, sans-serif';
  const lines = [];
  let line = '';
  for (const word of text.split(/\s+/)) {
    const next = line ? line + ' ' + word : word;
    if (ctx.measureText(next).width > w - 48 && line) { lines.push(line); line = word; } else { line = next; }
  }
  if (line) lines.push(line);
  let y = Math.max(40, h / 2 - (lines.length * 22) / 2);
  for (const l of lines) { ctx.fillText(l, 24, y); y += 22; }
}

// --- actions -------------------------------------------------------------------------------

async function listModels() {
  try {
    const res = await fetch('api/models', { cache: 'no-cache' });
    if (!res.ok) throw new Error('HTTP ' + res.status);
    const list = await res.json();
    const ok = list.filter((m) => !m.error);
    for (const m of list.filter((m) => m.error)) console.warn(`model ${m.name} skipped: ${m.error}`);
    return ok.map((m) => ({ name: m.name, url: m.url, label: `${m.name} (${(m.bytes / 1024).toFixed(0)} KiB)` }));
  } catch (e) {
    // A plain static host has no /api: offer the usual files.
    console.warn('api/models unavailable, using the default list:', e);
    return FALLBACK_MODELS.map((n) => ({ name: n, url: `weights/${n}.msgpack`, label: n }));
  }
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

async function loadModel(url) {
  setState('loading');
  ui.generate.disabled = true;
  clearError();
  status('Loading ' + url + ' …');
  try {
    info = await globalThis.asbm.load(url, forcedDevice === 'cpu' ? { device: 'cpu' } : undefined);
  } catch (e) {
    info = null;
    showError(String(e && e.message ? e.message : e));
    if (forcedDevice !== 'cpu') offerCPU();
    return;
  }
  const hasGen = info.nets.includes('gen');
  const hasODE = info.samplers.includes('ode');
  ui.sampler.querySelector('option[value=ode]').disabled = !hasODE;
  if (!hasODE) ui.sampler.value = 'sde';
  if (!hasGen && Number(ui.nfe.value) === 1) { ui.nfe.value = '8'; }
  ui.nfe.min = hasGen ? '1' : '2';
  updateNFELabel();
  ui.generate.disabled = false;
  status(`Ready: ${info.dataset || url} · ${deviceNote()}`);
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
    const r = await globalThis.asbm.generate({ nfe, seed, sampler, points: POINTS, device: chooseDevice() });
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

// startWasm instantiates asbm.wasm. The instance must stay in globalThis.wasm: the WebGPU
// binding's Queue.WriteBuffer reads globalThis.wasm.instance.exports.mem.
async function startWasm() {
  if (typeof Go !== 'function') throw new Error('wasm_exec.js did not load; rebuild the site with ./build.sh build');
  const go = new Go();
  const res = fetch('asbm.wasm');
  let inst;
  try {
    inst = await WebAssembly.instantiateStreaming(res, go.importObject);
  } catch (e) {
    // A server that sends the wrong Content-Type breaks instantiateStreaming; the buffer path still works.
    console.warn('instantiateStreaming failed, retrying with a buffer:', e);
    const buf = await (await fetch('asbm.wasm')).arrayBuffer();
    inst = await WebAssembly.instantiate(buf, go.importObject);
  }
  globalThis.wasm = inst;
  go.run(inst.instance).then(() => showError('The Go program stopped; reload the page.'));
  if (!globalThis.asbm) throw new Error('asbm.wasm started but did not define globalThis.asbm');
  globalThis.asbm.onProgress = (step, total) => { ui.progress.value = total > 0 ? step / total : 0; };
}

async function main() {
  setState('loading');
  ui.nfe.addEventListener('input', updateNFELabel);
  ui.sampler.addEventListener('change', updateNFELabel);
  ui.form.addEventListener('submit', (e) => { e.preventDefault(); generate(); });
  ui.download.addEventListener('click', downloadPNG);
  ui.model.addEventListener('change', () => loadModel(ui.model.value));
  updateNFELabel();
  drawAxes(ui.canvas.getContext('2d'), ui.canvas.width, ui.canvas.height);

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
    const [models] = await Promise.all([listModels(), wasmStarted]);
    if (models.length === 0) {
      showError('The server offers no model files: train one with `backend train`, or put *.msgpack files in weights/.');
      return;
    }
    ui.model.textContent = '';
    for (const m of models) ui.model.add(new Option(m.label, m.url));
    const wanted = params.get('model') || '8gaussians';
    const pick = models.find((m) => m.name === wanted) || models[0];
    ui.model.value = pick.url;
    ui.model.disabled = false;
    await loadModel(pick.url);
  } catch (e) {
    showError(String(e && e.message ? e.message : e));
  }
}

main();
