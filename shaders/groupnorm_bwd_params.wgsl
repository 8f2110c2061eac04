// groupnorm_bwd_params.wgsl: the parameter gradients of groupnorm.wgsl from the per-(n, channel)
// sums groupnorm_bwd_data.wgsl wrote (P[n·c + ch] = Σ_{h,w} da·x̂, P[(n + N)·c + ch] = Σ_{h,w} da):
//   dγ[ch] = Σ_n Σ_{h,w} da·x̂,   dβ[ch] = Σ_n Σ_{h,w} da,
// n in increasing order, so the sums are deterministic. One invocation per channel; workgroups are
// numbered wid.y·nwg.x + wid.x so the dispatch can exceed 65535 per dimension.

struct Params {
    n: u32,
    c: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> P: array<f32>;
@group(0) @binding(2) var<storage, read_write> DGamma: array<f32>;
@group(0) @binding(3) var<storage, read_write> DBeta: array<f32>;

const WG: u32 = 64u;

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>,
        @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) li: u32) {
    let ch = (wid.y * nwg.x + wid.x) * WG + li;
    if (ch >= p.c) {
        return;
    }
    var dg = 0.0;
    var db = 0.0;
    for (var n = 0u; n < p.n; n = n + 1u) {
        dg = dg + P[n * p.c + ch];
        db = db + P[(n + p.n) * p.c + ch];
    }
    DGamma[ch] = dg;
    DBeta[ch] = db;
}
