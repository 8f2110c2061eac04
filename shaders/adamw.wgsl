// adamw.wgsl: one AdamW step with decoupled weight decay and bias correction, then the EMA update
// (asbm.md §2.5; the same arithmetic as backend/cpu MLP.update, there in float64):
//   g ← scale·g   (scale = the global-norm clip factor, read from a one-value buffer)
//   m ← β1·m + (1−β1)·g,  v ← β2·v + (1−β2)·g²
//   p ← p·(1 − lr·wd) − (lr/(1−β1^t))·m / (√v/√(1−β2^t) + ε)
//   ema ← d·ema + (1−d)·p
// Elementwise, one invocation per parameter value.

struct Params {
    n: u32,
    b1: f32,
    b2: f32,
    eps: f32,
    step_size: f32, // lr / (1 − β1^t)
    sbc2: f32,      // √(1 − β2^t)
    decay: f32,     // 1 − lr·wd
    ema_d: f32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> g: array<f32>;
@group(0) @binding(2) var<storage, read> scale: array<f32>;
@group(0) @binding(3) var<storage, read_write> w: array<f32>;
@group(0) @binding(4) var<storage, read_write> m: array<f32>;
@group(0) @binding(5) var<storage, read_write> v: array<f32>;
@group(0) @binding(6) var<storage, read_write> ema: array<f32>;

const WG: u32 = 256u;

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>,
        @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) li: u32) {
    let i = (wid.y * nwg.x + wid.x) * WG + li;
    if (i >= p.n) {
        return;
    }
    let gi = g[i] * scale[0];
    let mi = p.b1 * m[i] + (1.0 - p.b1) * gi;
    let vi = p.b2 * v[i] + (1.0 - p.b2) * gi * gi;
    let wi = w[i] * p.decay - p.step_size * mi / (sqrt(vi) / p.sbc2 + p.eps);
    m[i] = mi;
    v[i] = vi;
    w[i] = wi;
    ema[i] = p.ema_d * ema[i] + (1.0 - p.ema_d) * wi;
}
