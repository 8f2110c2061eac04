// groupnorm.wgsl: group normalisation forward, NCHW float32. The c channels split into `groups`
// groups of cg = c/groups consecutive channels; for each (n, g) the cg·h·w values (contiguous in
// NCHW) are normalised with their mean μ and biased variance v, then scaled per channel:
//   y = γ[c]·(x − μ)·rstd + β[c],   rstd = 1/√(v + eps),
// and μ and rstd are saved per (n, g) for the backward pass (groupnorm_bwd_*.wgsl).
// One workgroup per (n, g); two passes (mean, then the mean square deviation) for accuracy, each a
// fixed-shape tree in workgroup memory, so results are deterministic.
// Workgroups are numbered wid.y·nwg.x + wid.x so the dispatch can exceed 65535 per dimension.

struct Params {
    n: u32,
    c: u32,
    hw: u32,
    groups: u32,
    eps: f32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> X: array<f32>;
@group(0) @binding(2) var<storage, read> Gamma: array<f32>;
@group(0) @binding(3) var<storage, read> Beta: array<f32>;
@group(0) @binding(4) var<storage, read_write> Y: array<f32>;
@group(0) @binding(5) var<storage, read_write> Mean: array<f32>;
@group(0) @binding(6) var<storage, read_write> Rstd: array<f32>;

const WG: u32 = 256u;

var<workgroup> red: array<f32, WG>;

// sum adds v over the workgroup; every invocation gets the total. Call from uniform control flow.
fn sum(li: u32, v: f32) -> f32 {
    red[li] = v;
    workgroupBarrier();
    for (var s = WG / 2u; s > 0u; s = s >> 1u) {
        if (li < s) {
            red[li] = red[li] + red[li + s];
        }
        workgroupBarrier();
    }
    let t = red[0];
    workgroupBarrier();
    return t;
}

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>,
        @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) li: u32) {
    let ng = wid.y * nwg.x + wid.x;
    if (ng >= p.n * p.groups) {
        return;
    }
    let cg = p.c / p.groups;
    let m = cg * p.hw;
    let base = ng * m; // (n·c + g·cg)·hw
    let c0 = (ng % p.groups) * cg;
    var acc = 0.0;
    for (var j = li; j < m; j = j + WG) {
        acc = acc + X[base + j];
    }
    let mean = sum(li, acc) / f32(m);
    acc = 0.0;
    for (var j = li; j < m; j = j + WG) {
        let dv = X[base + j] - mean;
        acc = fma(dv, dv, acc);
    }
    let rstd = 1.0 / sqrt(sum(li, acc) / f32(m) + p.eps);
    for (var j = li; j < m; j = j + WG) {
        let ch = c0 + j / p.hw;
        Y[base + j] = fma((X[base + j] - mean) * rstd, Gamma[ch], Beta[ch]);
    }
    if (li == 0u) {
        Mean[ng] = mean;
        Rstd[ng] = rstd;
    }
}
