// train_loss.wgsl: the weighted regression loss of every ASBM matcher (asbm.md §2, Model.Step):
// L = mean_{i,j} r_ij², r_ij = w_i·f_ij − y_ij, over n rows of width d. Writes r (summed into L by
// train_reduce.wgsl) and dL/df_ij = 2·w_i·r_ij / (n·d). One invocation per value.

struct Params {
    n: u32,
    d: u32,
    inv: f32, // 2 / (n·d)
    _pad0: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> f: array<f32>;
@group(0) @binding(2) var<storage, read> w: array<f32>;
@group(0) @binding(3) var<storage, read> y: array<f32>;
@group(0) @binding(4) var<storage, read_write> r: array<f32>;
@group(0) @binding(5) var<storage, read_write> df: array<f32>;

const WG: u32 = 256u;

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>,
        @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) li: u32) {
    let i = (wid.y * nwg.x + wid.x) * WG + li;
    if (i >= p.n * p.d) {
        return;
    }
    let wi = w[i / p.d];
    let ri = wi * f[i] - y[i];
    r[i] = ri;
    df[i] = p.inv * wi * ri;
}
