// groupnorm_bwd_params.wgsl: the parameter gradients of groupnorm.wgsl,
//   dγ[c] = Σ_{n,h,w} dy·x̂,   dβ[c] = Σ_{n,h,w} dy,   x̂ = (x − μ[n,g])·rstd[n,g], g = c / (c/groups),
// using the μ and rstd the forward pass saved. One workgroup per channel; each invocation sums a
// fixed strided share of the n·h·w terms and a fixed-shape tree adds the shares (deterministic).
// Workgroups are numbered wid.y·nwg.x + wid.x so the dispatch can exceed 65535 per dimension.

struct Params {
    n: u32,
    c: u32,
    hw: u32,
    groups: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> DY: array<f32>;
@group(0) @binding(2) var<storage, read> X: array<f32>;
@group(0) @binding(3) var<storage, read> Mean: array<f32>;
@group(0) @binding(4) var<storage, read> Rstd: array<f32>;
@group(0) @binding(5) var<storage, read_write> DGamma: array<f32>;
@group(0) @binding(6) var<storage, read_write> DBeta: array<f32>;

const WG: u32 = 256u;

var<workgroup> red: array<vec2<f32>, WG>;

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>,
        @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) li: u32) {
    let ch = wid.y * nwg.x + wid.x;
    if (ch >= p.c) {
        return;
    }
    let g = ch / (p.c / p.groups);
    let total = p.n * p.hw;
    var acc = vec2<f32>(0.0, 0.0);
    for (var j = li; j < total; j = j + WG) {
        let n = j / p.hw;
        let i = (n * p.c + ch) * p.hw + j - n * p.hw;
        let ng = n * p.groups + g;
        let dy = DY[i];
        acc = acc + vec2<f32>(dy * (X[i] - Mean[ng]) * Rstd[ng], dy);
    }
    red[li] = acc;
    workgroupBarrier();
    for (var s = WG / 2u; s > 0u; s = s >> 1u) {
        if (li < s) {
            red[li] = red[li] + red[li + s];
        }
        workgroupBarrier();
    }
    if (li == 0u) {
        DGamma[ch] = red[0].x;
        DBeta[ch] = red[0].y;
    }
}
