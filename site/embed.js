// The /embed page: one <asbm-generator> filling the frame, configured by the query string
// (?model=NAME&nfe=N&seed=S&sampler=sde|ode|ancestral&denoise=true&grid=1|2|4|8). Invalid values are dropped, so the
// element's defaults apply rather than an error.
import './widget.js';

const q = new URLSearchParams(location.search);
const el = document.createElement('asbm-generator');
const model = q.get('model');
if (model && /^[A-Za-z0-9._-]{1,100}$/.test(model)) el.setAttribute('model', model);
for (const [name, hi] of [['nfe', 100], ['seed', Number.MAX_SAFE_INTEGER]]) {
  const v = Number(q.get(name));
  if (q.has(name) && Number.isInteger(v) && v >= 0 && v <= hi) el.setAttribute(name, String(v));
}
if (['sde', 'ode', 'ancestral'].includes(q.get('sampler'))) el.setAttribute('sampler', q.get('sampler'));
if (q.get('denoise') === 'true') el.setAttribute('denoise', 'true');
if (['1', '2', '4', '8'].includes(q.get('grid'))) el.setAttribute('grid', q.get('grid'));
document.body.append(el);
