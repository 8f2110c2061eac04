// timefeat.wgsl: builds the MLP input rows [x | sin(ω_k t) | cos(ω_k t)], ω_k = π(k+1), k < F
// (asbm.md §6.1; shaders/mlp.go TimeFeatures). One invocation per output value.
//
// t is read as t[t_offset + row * t_stride]: t_stride = 1 gives one time per row, t_stride = 0 one
// time for the whole batch (the samplers keep [t_k, t_{k+1}] in a two-value buffer).

struct Params {
    n: u32,        // rows
    d: u32,        // data width
    f: u32,        // Fourier frequencies F
    t_stride: u32,
    t_offset: u32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> t: array<f32>;
@group(0) @binding(3) var<storage, read_write> y: array<f32>;

const WG: u32 = 256u;
const PI: f32 = 3.14159265358979;

// sin(πr) and cos(πr) for |r| ≤ 1/4 by Taylor series (truncation < 2e-9 at π/4), evaluated in f32.
// The builtins are not used: WGSL only promises an absolute error of 2^-11 for sin/cos on [-π, π],
// and SwiftShader (Chrome's software adapter) measured 2e-4 here, while these are within a few ulp.
fn sin_pi(r: f32) -> f32 {
    let x = PI * r;
    let x2 = x * x;
    return x * (1.0 + x2 * (-1.0 / 6.0 + x2 * (1.0 / 120.0 + x2 * (-1.0 / 5040.0 + x2 * (1.0 / 362880.0)))));
}

fn cos_pi(r: f32) -> f32 {
    let x = PI * r;
    let x2 = x * x;
    return 1.0 + x2 * (-0.5 + x2 * (1.0 / 24.0 + x2 * (-1.0 / 720.0 + x2 * (1.0 / 40320.0 + x2 * (-1.0 / 3628800.0)))));
}

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>,
        @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) li: u32) {
    let w = p.d + 2u * p.f;
    let i = (wid.y * nwg.x + wid.x) * WG + li; // 2-D dispatch folds past 65535 workgroups
    if (i >= p.n * w) {
        return;
    }
    let r = i / w;
    let c = i - r * w;
    if (c < p.d) {
        y[i] = x[r * p.d + c];
        return;
    }
    var k = c - p.d;
    let is_cos = k >= p.f;
    if (is_cos) {
        k = k - p.f;
    }
    // ω_k t = π u with u = (k+1)t. Write u = q/2 + v with q = round(2u) and |v| ≤ 1/4 (exact in f32
    // for |u| < 2^22); then sin(πu) and cos(πu) are ±sin(πv) or ±cos(πv) by the quadrant q mod 4.
    let u = f32(k + 1u) * t[p.t_offset + r * p.t_stride];
    let q = round(2.0 * u);
    let v = u - 0.5 * q;
    let s = sin_pi(v);
    let co = cos_pi(v);
    let j = ((i32(q) % 4) + 4) % 4;
    var out: f32;
    if (is_cos) {
        out = select(select(select(s, -co, j == 2), -s, j == 1), co, j == 0);
    } else {
        out = select(select(select(-co, -s, j == 2), co, j == 1), s, j == 0);
    }
    y[i] = out;
}
