// silu_bwd.wgsl: the gradient of silu.wgsl, dx = dy·σ(x)·(1 + x·(1 − σ(x))), elementwise over n
// values (d/dx x·σ(x) = σ + x·σ·(1 − σ)). For very negative x, e^{−x} overflows to +∞ and σ = 0,
// which gives the correct limit 0.
// Workgroups are numbered wid.y·nwg.x + wid.x so the dispatch can exceed 65535 per dimension.

struct Params {
    n: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> DY: array<f32>;
@group(0) @binding(2) var<storage, read> X: array<f32>;
@group(0) @binding(3) var<storage, read_write> DX: array<f32>;

const WG: u32 = 256u;

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>,
        @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) li: u32) {
    let i = (wid.y * nwg.x + wid.x) * WG + li;
    if (i >= p.n) {
        return;
    }
    let v = X[i];
    let s = 1.0 / (1.0 + exp(-v));
    DX[i] = DY[i] * s * (1.0 + v * (1.0 - s));
}
