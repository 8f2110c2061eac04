// The page's one Go/WebAssembly runtime and the model files, shared by the page (app.js) and every
// <asbm-generator> element (widget.js). Everything is resolved against `base`, the URL of the
// folder that serves the site, so a widget embedded in a page of another origin still loads its
// files from home (the server sends CORS headers for them).

export const FALLBACK_MODELS = ['8gaussians', 'moons', 'checkerboard'];
export const CACHE_NAME = 'asbm-weights-v1';

// startRuntime loads wasm_exec.js and instantiates asbm.wasm from base, once per page: every caller
// (the page, each widget, whatever their module URL) gets the same promise, kept on globalThis.
// The instance must stay in globalThis.wasm: the WebGPU binding's Queue.WriteBuffer reads
// globalThis.wasm.instance.exports.mem.
export function startRuntime(base, onExit) {
  if (!globalThis.__asbmRuntime) {
    globalThis.__asbmRuntime = boot(String(base), onExit);
    // A failed start may be retried (say, after a network error).
    globalThis.__asbmRuntime.catch(() => { globalThis.__asbmRuntime = null; });
  }
  return globalThis.__asbmRuntime;
}

function loadClassicScript(src) {
  return new Promise((resolve, reject) => {
    const s = document.createElement('script');
    s.src = src;
    s.onload = resolve;
    s.onerror = () => reject(new Error(`could not load ${src}`));
    document.head.append(s);
  });
}

// HASH_RE is what the server accepts as ?v=: 12 to 64 lowercase hex digits of a SHA-256.
const HASH_RE = /^[0-9a-f]{12,64}$/;

// versioned is url with ?v=hash when hash is a valid one, else url itself. The server marks a
// response to a ?v= naming the file's current hash immutable for a year, and answers a stale one
// with the current file, uncached.
function versioned(url, hash) {
  if (!HASH_RE.test(hash || '')) return url;
  const u = new URL(url);
  u.searchParams.set('v', hash);
  return u.href;
}

// wasmHash asks base's /api/build for asbm.wasm's hash; '' where there is none (a static host).
async function wasmHash(base) {
  try {
    const res = await fetch(new URL('api/build', base), { cache: 'no-cache' });
    if (!res.ok) return '';
    const b = await res.json();
    return typeof b.wasm_sha256 === 'string' ? b.wasm_sha256 : '';
  } catch {
    return ''; // no API, or not JSON (a host answering every path with a page)
  }
}

async function boot(base, onExit) {
  const hash = wasmHash(base); // in parallel with wasm_exec.js
  if (typeof globalThis.Go !== 'function') await loadClassicScript(new URL('wasm_exec.js', base).href);
  if (typeof globalThis.Go !== 'function') throw new Error('wasm_exec.js did not load; rebuild the site with ./build.sh build');
  const go = new globalThis.Go();
  const url = versioned(new URL('asbm.wasm', base).href, await hash);
  let inst;
  try {
    inst = await WebAssembly.instantiateStreaming(fetch(url), go.importObject);
  } catch (e) {
    // A server that sends the wrong Content-Type breaks instantiateStreaming; the buffer path still works.
    console.warn('instantiateStreaming failed, retrying with a buffer:', e);
    const res = await fetch(url);
    if (!res.ok) throw new Error(`fetch ${url}: HTTP ${res.status}`);
    inst = await WebAssembly.instantiate(await res.arrayBuffer(), go.importObject);
  }
  globalThis.wasm = inst;
  go.run(inst.instance).then(() => { if (onExit) onExit(); });
  if (!globalThis.asbm) throw new Error('asbm.wasm started but did not define globalThis.asbm');
  return globalThis.asbm;
}

// exclusive runs fn after every earlier exclusive call has settled. The client holds one model
// at a time, so a load and the generate that uses it must not interleave with another element's.
export function exclusive(fn) {
  const prev = globalThis.__asbmQueue || Promise.resolve();
  const next = prev.catch(() => {}).then(fn);
  globalThis.__asbmQueue = next.catch(() => {});
  return next;
}

// listModels asks base's /api/models; a plain static host has none, so it falls back to the usual
// file names (with no sha256, and so no caching). Each entry: {name, src (as listed),
// url (absolute), bytes, sha256, label}.
export async function listModels(base) {
  try {
    const res = await fetch(new URL('api/models', base), { cache: 'no-cache' });
    if (!res.ok) throw new Error('HTTP ' + res.status);
    const list = await res.json();
    for (const m of list.filter((m) => m.error)) console.warn(`model ${m.name} skipped: ${m.error}`);
    return list.filter((m) => !m.error).map((m) => ({
      name: m.name, src: m.url, url: new URL(m.url, base).href, bytes: m.bytes, sha256: m.sha256 || '',
      nets: Array.isArray(m.nets) ? m.nets : [], kind: m.kind || '',
      label: `${m.name} (${(m.bytes / 1024).toFixed(0)} KiB)`,
    }));
  } catch (e) {
    console.warn('api/models unavailable, using the default list:', e);
    return FALLBACK_MODELS.map((n) => ({
      name: n, src: `weights/${n}.msgpack`, url: new URL(`weights/${n}.msgpack`, base).href, bytes: 0, sha256: '',
      nets: [], kind: '', label: n,
    }));
  }
}

// PAGE_NETS are the networks the page and the widget sample with. A model file holds others too
// (the baseline, for backend eval), which a visitor never needs.
export const PAGE_NETS = ['score', 'control', 'gen'];

// netsFor lists the networks a sampler runs: the distilled generator alone at NFE 1, the score for
// the backward SDE and the ancestral sampler, the score and the control for the PF-ODE.
export function netsFor(nfe, sampler) {
  if (nfe === 1) return ['gen'];
  return sampler === 'ode' ? ['score', 'control'] : ['score'];
}

// pageNets is every network of the model the page may run (PAGE_NETS it holds), or null when the
// model's networks are unknown (a static host without /api/models: the whole file is fetched).
export function pageNets(model) {
  if (!model.sha256 || !model.nets || model.nets.length === 0) return null;
  return PAGE_NETS.filter((n) => model.nets.includes(n));
}

// holdsNets says whether held, the networks the client holds of model (null: the whole file), can
// run need (netsFor): each needed network is held, or the file has none to fetch (the client's
// generate then says what is missing).
export function holdsNets(model, held, need) {
  if (held === null) return true;
  const all = pageNets(model);
  return need.every((n) => held.includes(n) || (all !== null && !all.includes(n)));
}

// wantedNets is what to fetch of model so that nets (netsFor) can run: those of them the file
// has, or null for the whole file (networks unknown, or a file with none of them, whose load then
// says what is missing).
export function wantedNets(model, nets) {
  const all = pageNets(model);
  if (!all) return null;
  const want = all.filter((n) => nets.includes(n));
  return want.length ? want : null;
}

// expectedLength is the decoded size of a response body, or 0 when unknown. Content-Length is the
// size on the wire, which for a compressed response is not what the body stream yields.
function expectedLength(res, known) {
  if (known > 0) return known;
  const decoded = Number(res.headers.get('X-Decoded-Content-Length'));
  if (decoded > 0) return decoded;
  const enc = (res.headers.get('Content-Encoding') || 'identity').toLowerCase();
  const len = Number(res.headers.get('Content-Length'));
  return enc === 'identity' && len > 0 ? len : 0;
}

// fetchWithProgress downloads url, calling onProgress(received, total) as chunks arrive (total 0:
// unknown), and returns the bytes. cache is fetch's cache mode: 'no-cache' (revalidate) unless url
// carries ?v=, whose response the server marks immutable.
export async function fetchWithProgress(url, { bytes = 0, onProgress, cache = 'no-cache' } = {}) {
  const res = await fetch(url, { cache });
  if (!res.ok) throw new Error(`fetch ${url}: HTTP ${res.status} ${res.statusText}`);
  const total = expectedLength(res, bytes);
  if (!res.body || !res.body.getReader) return new Uint8Array(await res.arrayBuffer());
  const reader = res.body.getReader();
  const chunks = [];
  let received = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    chunks.push(value);
    received += value.length;
    if (onProgress) onProgress(received, Math.max(total, received));
  }
  const out = new Uint8Array(received);
  let off = 0;
  for (const c of chunks) { out.set(c, off); off += c.length; }
  if (onProgress) onProgress(received, received);
  return out;
}

// sha256Prefix is the first 16 hex digits of bytes' SHA-256 (what /api/models lists), or '' where
// crypto.subtle is missing (insecure contexts).
async function sha256Prefix(bytes) {
  if (!globalThis.crypto || !crypto.subtle) return '';
  const d = new Uint8Array(await crypto.subtle.digest('SHA-256', bytes));
  return Array.from(d.slice(0, 8), (b) => b.toString(16).padStart(2, '0')).join('');
}

function cacheKey(model, nets) {
  const u = new URL(model.url);
  u.search = '?sha256=' + model.sha256 + (nets ? '&nets=' + nets.join(',') : '');
  return u.href;
}

// SUM_HEADER holds, on a cached copy of a network subset, the SHA-256 prefix its bytes had when
// downloaded: /api/models lists only the whole file's, and the cache is checked against this.
const SUM_HEADER = 'X-ASBM-SHA256';

// fetchModel returns {bytes, fromCache, nets} for a model from listModels. nets (optional) names
// the networks wanted (wantedNets); the server then sends the file with only those
// (/weights/NAME.msgpack?nets=…), and the returned nets says which the bytes hold (null: the whole
// file). Files are cached with the Cache API under the file's sha256 from /api/models, so a
// retrained model is fetched afresh and its old copies dropped. A whole file is checked against
// that hash, a subset against the hash of its bytes stored beside it when it was cached. Without
// the Cache API (an insecure context) or a hash, it simply downloads the whole file.
export async function fetchModel(model, onProgress, nets = null) {
  // A static host has no subsets, and nothing to key a cache on. Sorted, as the server names them.
  nets = model.sha256 && nets ? [...nets].sort() : null;
  const cache = model.sha256 && globalThis.caches ? await caches.open(CACHE_NAME).catch(() => null) : null;
  const key = cache ? cacheKey(model, nets) : '';
  if (cache) {
    const hit = await cache.match(key);
    if (hit) {
      const bytes = new Uint8Array(await hit.arrayBuffer());
      const sum = await sha256Prefix(bytes);
      const want = nets ? hit.headers.get(SUM_HEADER) || '' : model.sha256;
      if (sum === '' || sum === want) {
        if (onProgress) onProgress(bytes.length, bytes.length);
        return { bytes, fromCache: true, nets };
      }
      console.warn(`cached ${model.name} is corrupt (sha256 ${sum}, want ${want}); fetching it again`);
      await cache.delete(key);
    }
  }
  let url = versioned(model.url, model.sha256);
  if (nets) {
    const u = new URL(url);
    u.searchParams.set('nets', nets.join(','));
    url = u.href;
  }
  // A subset's size is not listed: its Content-Length says it.
  const bytes = await fetchWithProgress(url, { bytes: nets ? 0 : model.bytes, onProgress, cache: url === model.url ? 'no-cache' : 'default' });
  if (cache) {
    const sum = await sha256Prefix(bytes);
    if (!nets && sum !== '' && sum !== model.sha256) {
      throw new Error(`${url}: sha256 ${sum} differs from the listed ${model.sha256}; reload the page`);
    }
    try {
      // Older versions of this file go; this version's other subsets stay.
      const path = new URL(model.url).pathname;
      for (const old of await cache.keys()) {
        const u = new URL(old.url);
        if (u.pathname === path && u.searchParams.get('sha256') !== model.sha256) await cache.delete(old);
      }
      const headers = { 'Content-Type': 'application/octet-stream' };
      if (nets) headers[SUM_HEADER] = sum;
      await cache.put(key, new Response(bytes, { headers }));
    } catch (e) {
      console.warn('could not cache the model file:', e); // quota, private mode: still usable
    }
  }
  return { bytes, fromCache: false, nets };
}

// clearCache deletes the cached model files and returns how many there were.
export async function clearCache() {
  if (!globalThis.caches) return 0;
  let n = 0;
  if (await caches.has(CACHE_NAME)) {
    n = (await (await caches.open(CACHE_NAME)).keys()).length;
    await caches.delete(CACHE_NAME);
  }
  return n;
}
