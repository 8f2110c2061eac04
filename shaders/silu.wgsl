// silu.wgsl: y = SiLU(x) = x·σ(x), σ(x) = 1/(1 + e^{−x}), elementwise over n values (the U-Net's
// activation after group norm; asbm.md §6.1 uses the same function in the MLP).
// Workgroups are numbered wid.y·nwg.x + wid.x so the dispatch can exceed 65535 per dimension.

struct Params {
    n: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> X: array<f32>;
@group(0) @binding(2) var<storage, read_write> Y: array<f32>;

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
    Y[i] = v / (1.0 + exp(-v));
}
