// update.wgsl: out = a·x + b·y + c·z elementwise, the one sampler kernel (see sample.go): the EM step
// (x, score, noise), Heun's velocity, predictor and corrector, and the generator's (z + σ_1² G)/α_1
// (asbm.md §3.3). out must be a different buffer from x, y and z (WebGPU forbids a writable binding
// that aliases another).

struct Params {
    n: u32,
    a: f32,
    b: f32,
    c: f32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> y: array<f32>;
@group(0) @binding(3) var<storage, read> z: array<f32>;
@group(0) @binding(4) var<storage, read_write> out: array<f32>;

const WG: u32 = 256u;

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>,
        @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) li: u32) {
    let i = (wid.y * nwg.x + wid.x) * WG + li;
    if (i >= p.n) {
        return;
    }
    out[i] = p.a * x[i] + p.b * y[i] + p.c * z[i];
}
