// The embeddable ASBM widget: one module script and one element,
//
//   <script type="module" src="https://HOST/widget.js"></script>
//   <asbm-generator model="8gaussians" nfe="1" seed="0" sampler="ode"></asbm-generator>
//   (sampler: sde, ode or ancestral, by default ancestral for images and sde for 2-D models;
//   denoise="true" ends the SDE and the ODE with Tweedie's x0)
//   <asbm-generator model="digits" nfe="8" grid="2"></asbm-generator>
//
// Each element draws samples of the named model (same drawing as the page, plot.js) with a
// Generate button and an NFE slider, inside its own shadow DOM so the host page's CSS neither
// leaks in nor out: 2,000 points for a 2-D model, a grid×grid grid of images for an image model
// (grid = 1, 2, 4 or 8; default 1, one image), previewed while it samples and sized for a column of
// text (at most 300 px wide, smaller on narrow screens). Everything it needs (wasm_exec.js, asbm.wasm, /api/models, the model files)
// comes from this script's own origin, derived from import.meta.url, so it works on a page of any
// origin; the server sends CORS headers for exactly those files. Every element on a page shares
// the one Go runtime (runtime.js); the client holds one model at a time, so loads and generates
// are queued (exclusive) and an element reloads its model only when another one was loaded since.
// Like the page, an element fetches only the networks its sampler runs at its NFE (the generator
// alone at NFE 1), and the rest of the ones it may use when the slider first needs them.
//
// For scripts and tests: element.dataset.state is "loading" | "ready" | "busy" | "done" | "error";
// element.dataset.kind is "points" | "images" once loaded; element.lastPoints is the last
// Float32Array of points, element.lastImages / element.lastShape the last images ([n, C, H, W]);
// element.generate() runs one draw.
import { drawAxes, drawPoints, drawMessage, drawImages, drawPlaceholder, gridLayout } from './plot.js';
import { startRuntime, listModels, fetchModel, exclusive, netsFor, pageNets, wantedNets, holdsNets } from './runtime.js';

const BASE = new URL('./', import.meta.url);
const POINTS = 2000;
const SIZE = 300; // the canvas's size in CSS pixels: fits a column of text
const GRIDS = [1, 2, 4, 8];

// The model list is asked for once per page, whatever the number of elements.
function models() {
  globalThis.__asbmModelList = globalThis.__asbmModelList || listModels(BASE);
  return globalThis.__asbmModelList;
}

const STYLE = `
:host { display: block; max-width: 100%; box-sizing: border-box; margin: 1rem 0;
  --panel: #ffffff; --accent: #2f5fd0; --fg: #1d2330; --muted: #5d6678; --error-bg: #fde8e6; --error-fg: #8a1c12;
  font: 14px/1.3 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: var(--fg); }
@media (prefers-color-scheme: dark) {
  :host { --panel: #1e2129; --accent: #7aa2ff; --fg: #e6e8ee; --muted: #9aa3b5; --error-bg: #3b1714; --error-fg: #ffb4a8; }
}
.box { display: flex; flex-direction: column; align-items: center; gap: .4rem; max-width: 100%; }
canvas { height: auto; max-width: 100%; background: var(--panel); border-radius: 6px; display: block; }
canvas.images { image-rendering: pixelated; }
.bar { display: flex; flex-wrap: wrap; align-items: center; gap: .6rem; max-width: 100%; }
button { font: inherit; padding: .3rem .9rem; border-radius: 5px; border: 1px solid var(--accent);
  background: var(--accent); color: #fff; cursor: pointer; }
button:disabled { opacity: .5; cursor: default; }
label { display: flex; align-items: center; gap: .3rem; }
input[type=range] { width: 120px; max-width: 40vw; }
output { min-width: 2.2em; font-variant-numeric: tabular-nums; }
.status { color: var(--muted); font-size: 12px; margin: 0; text-align: center; min-height: 1.3em; }
`;

let shared = null;
function sheet() {
  if (!shared) { shared = new CSSStyleSheet(); shared.replaceSync(STYLE); }
  return shared;
}

function intAttr(el, name, def, lo, hi) {
  const v = Number(el.getAttribute(name));
  return el.hasAttribute(name) && Number.isInteger(v) && v >= lo && v <= hi ? v : def;
}

// gridAttr is the grid attribute when it is one of GRIDS, else 1.
function gridAttr(el) {
  const g = Number(el.getAttribute('grid'));
  return GRIDS.includes(g) ? g : 1;
}

export class ASBMGenerator extends HTMLElement {
  static get observedAttributes() { return ['nfe', 'grid']; }

  constructor() {
    super();
    const root = this.attachShadow({ mode: 'open' });
    // A constructed stylesheet, not a <style> element: a page whose CSP says style-src 'self'
    // (this site's own) would block an inline one.
    root.adoptedStyleSheets = [sheet()];
    root.innerHTML = `<div class="box" part="box">
  <canvas width="300" height="300" part="canvas" aria-label="generated samples"></canvas>
  <div class="bar">
    <button type="button" part="button" disabled>Generate</button>
    <label>NFE <input type="range" min="1" max="100" step="1" value="1"><output>1</output></label>
  </div>
  <p class="status" aria-live="polite">Loading…</p>
</div>`;
    this.canvas = root.querySelector('canvas');
    this.button = root.querySelector('button');
    this.slider = root.querySelector('input');
    this.nfeOut = root.querySelector('output');
    this.statusEl = root.querySelector('.status');
    this.lastPoints = null;
    this.lastImages = null;
    this.lastShape = null;
    this.info = null;   // what asbm.load said about the model
    this.model = null;  // the entry of /api/models
    this.device = '';   // "cpu" when the client should take the CPU path
    this.ready = null;  // promise of the first load
    this.button.addEventListener('click', () => this.generate());
    this.slider.addEventListener('input', () => { this.nfeOut.textContent = this.slider.value; });
  }

  connectedCallback() {
    this.dataset.state = 'loading';
    this.slider.value = String(intAttr(this, 'nfe', 1, 1, 100));
    this.nfeOut.textContent = this.slider.value;
    drawAxes(this.canvas, this);
    if (!this.ready) this.ready = this.init();
  }

  attributeChangedCallback(name, _old, v) {
    if (name === 'nfe' && this.slider) {
      this.slider.value = String(intAttr(this, 'nfe', 1, 1, 100));
      this.nfeOut.textContent = this.slider.value;
    }
    if (name === 'grid' && this.isImage() && this.dataset.state === 'ready') this.blank();
  }

  isImage() { return !!(this.info && this.info.image); }

  // blank shows what the element will draw: axes for points, an empty frame the size of the grid.
  blank() {
    if (!this.isImage()) { this.canvas.width = SIZE; this.canvas.height = SIZE; drawAxes(this.canvas, this); return; }
    const [, H, W] = this.info.shape;
    const g = gridAttr(this);
    const { width, height } = gridLayout([g * g, 1, H, W], g, SIZE, 2);
    this.canvas.classList.add('images');
    drawPlaceholder(this.canvas, 'Press Generate', width, height, this);
  }

  drawGrid(images, shape) {
    this.canvas.classList.add('images');
    drawImages(this.canvas, images, shape, { cols: gridAttr(this), target: SIZE, styleFrom: this });
  }

  status(t) { this.statusEl.textContent = t; }

  fail(e) {
    const text = String(e && e.message ? e.message : e);
    this.status('Error: ' + text);
    drawMessage(this.canvas, text, this);
    this.dataset.state = 'error';
  }

  // init starts the runtime, finds the model and loads it once (on the GPU when there is one that
  // is not a software adapter, else on the CPU path, as the page does).
  async init() {
    try {
      const [list] = await Promise.all([models(), startRuntime(BASE)]);
      const want = this.getAttribute('model') || '8gaussians';
      this.model = list.find((m) => m.name === want);
      if (!this.model) throw new Error(`no model "${want}" on ${BASE.origin} (have: ${list.map((m) => m.name).join(', ')})`);
      if (!navigator.gpu) this.device = 'cpu';
      const info = await exclusive(async () => {
        const i = await this.ensureLoaded(true);
        // A software adapter, or a model the GPU kernels cannot run yet: the CPU path.
        if (i && (i.software || i.gpuError)) {
          this.device = 'cpu';
          // The model on the client serves the CPU path as it is: no reload at the first Generate.
          globalThis.__asbmLoaded = { ...globalThis.__asbmLoaded, key: this.loadKey() };
        }
        // One tiny forward so the first Generate does not stall on shader compilation.
        await globalThis.asbm.warmup({ device: this.device || 'gpu' }).catch((e) => console.warn('asbm-generator: warm-up failed:', e));
        return i;
      });
      this.info = info;
      const all = pageNets(this.model);
      if (all ? !all.includes('gen') : info && !info.nets.includes('gen')) this.slider.min = '2';
      this.dataset.kind = this.isImage() ? 'images' : 'points';
      this.canvas.setAttribute('aria-label', this.isImage() ? 'generated images' : 'generated points');
      this.blank();
      this.button.disabled = false;
      this.status(`Ready: ${this.model.name}` + (this.device === 'cpu' ? ' · CPU path' : ` · ${info.adapter}`));
      this.dataset.state = 'ready';
    } catch (e) {
      this.fail(e);
    }
  }

  // sampler is the element's sampler: its attribute, else the better one at few steps for the kind
  // of model (README, "Samplers at few steps"): ancestral for images, the SDE for the 2-D toys,
  // whose spread it keeps. Before the first load the kind comes from /api/models.
  sampler() {
    const asked = this.getAttribute('sampler');
    if (['sde', 'ode', 'ancestral'].includes(asked)) return asked;
    const image = this.info ? this.isImage() : this.model.kind === 'unet';
    return image ? 'ancestral' : 'sde';
  }

  loadKey() { return `${this.model.url}#${this.model.sha256}#${this.device}`; }

  // ensureLoaded (inside exclusive) loads this element's model unless the client holds it with the
  // networks the slider's NFE and the sampler run (globalThis.__asbmLoaded: {key, nets}, nets null
  // for the whole file); it returns the client's info, or null when nothing was loaded. It fetches
  // those networks only, unless the client holds some of this model already: then all the ones the
  // widget may run (PAGE_NETS), so moving the slider fetches at most once more.
  async ensureLoaded(force) {
    const need = netsFor(Number(this.slider.value), this.sampler());
    const cur = globalThis.__asbmLoaded;
    const same = cur && cur.key === this.loadKey();
    if (!force && same && holdsNets(this.model, cur.nets, need)) return null;
    const nets = same && !force ? pageNets(this.model) : wantedNets(this.model, need);
    const got = await fetchModel(this.model, (got, total) => {
      this.status(`Loading ${this.model.name} … ${Math.round((100 * got) / Math.max(total, 1))}%`);
    }, nets);
    const opts = { name: this.model.src };
    if (this.device === 'cpu') opts.device = 'cpu';
    let info;
    try {
      info = await globalThis.asbm.load(got.bytes, opts);
    } catch (e) {
      if (this.device === 'cpu') throw e;
      // No usable WebGPU: the CPU path works everywhere.
      console.warn('asbm-generator: WebGPU load failed, using the CPU path:', e);
      this.device = 'cpu';
      info = await globalThis.asbm.load(got.bytes, { ...opts, device: 'cpu' });
    }
    globalThis.__asbmLoaded = { key: this.loadKey(), nets: got.nets };
    return info;
  }

  // generate draws POINTS points, or grid×grid images, with the slider's NFE and the element's seed
  // and sampler.
  async generate() {
    await this.ready;
    if (this.dataset.state === 'busy' || !this.model) return;
    const nfe = Number(this.slider.value);
    const seed = intAttr(this, 'seed', 0, 0, Number.MAX_SAFE_INTEGER);
    const sampler = this.sampler();
    const denoise = this.getAttribute('denoise') === 'true';
    const image = this.isImage();
    const g = gridAttr(this);
    this.dataset.state = 'busy';
    this.button.disabled = true;
    this.status(nfe === 1 ? 'Generating (one step)…' : `Generating (${nfe} steps)…`);
    try {
      const r = await exclusive(async () => {
        await this.ensureLoaded(false);
        const opt = { nfe, seed, sampler, denoise };
        if (image) {
          opt.n = g * g;
          opt.preview = Math.max(1, Math.round(nfe / 8));
          opt.onProgress = (step, total, pv) => {
            if (pv) this.drawGrid(pv.images, pv.shape);
            this.status(`Generating… step ${step} of ${total}`);
          };
        } else {
          opt.points = POINTS;
        }
        if (this.device === 'cpu') opt.device = 'cpu';
        return globalThis.asbm.generate(opt);
      });
      if (image) {
        this.lastImages = r.images;
        this.lastShape = r.shape;
        this.drawGrid(r.images, r.shape);
        this.status(`${this.model.name} · NFE ${nfe} · ${r.n} image${r.n === 1 ? '' : 's'} in ${r.ms.toFixed(0)} ms`);
      } else {
        this.lastPoints = r.points;
        drawPoints(this.canvas, r.points, this);
        this.status(`${this.model.name} · NFE ${nfe} · ${r.points.length / 2} points in ${r.ms.toFixed(0)} ms`);
      }
      this.dataset.state = 'done';
    } catch (e) {
      this.fail(e);
    } finally {
      this.button.disabled = !this.model;
    }
  }
}

if (!customElements.get('asbm-generator')) customElements.define('asbm-generator', ASBMGenerator);
