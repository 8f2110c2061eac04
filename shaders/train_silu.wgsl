// train_silu.wgsl: h = SiLU(z) = z·σ(z) elementwise (asbm.md §6.1). The training forward keeps the
// pre-activation z for the backward pass (linear_bwd.wgsl's fused silu'), so the linear layer runs
// without its fused SiLU and this kernel produces the activation.

struct Params {
    n: u32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> z: array<f32>;
@group(0) @binding(2) var<storage, read_write> h: array<f32>;

const WG: u32 = 256u;

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>,
        @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) li: u32) {
    let i = (wid.y * nwg.x + wid.x) * WG + li;
    if (i >= p.n) {
        return;
    }
    let v = z[i];
    h[i] = v / (1.0 + exp(-v));
}
