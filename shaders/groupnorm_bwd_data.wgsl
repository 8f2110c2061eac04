// groupnorm_bwd_data.wgsl: the input gradient of groupnorm.wgsl. With x̂ = (x − μ)·rstd and
// g = dy·γ[c], over the m = cg·h·w values of one (n, group):
//   dx = rstd·(g − mean(g) − x̂·mean(g·x̂)),
// using the μ and rstd the forward pass saved. One workgroup per (n, group); fixed-shape trees in
// workgroup memory make it deterministic.
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
@group(0) @binding(3) var<storage, read> Gamma: array<f32>;
@group(0) @binding(4) var<storage, read> Mean: array<f32>;
@group(0) @binding(5) var<storage, read> Rstd: array<f32>;
@group(0) @binding(6) var<storage, read_write> DX: array<f32>;

const WG: u32 = 256u;

var<workgroup> red: array<vec2<f32>, WG>;

// sum2 adds v over the workgroup; every invocation gets the total. Call from uniform control flow.
fn sum2(li: u32, v: vec2<f32>) -> vec2<f32> {
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
    let base = ng * m;
    let c0 = (ng % p.groups) * cg;
    let mean = Mean[ng];
    let rstd = Rstd[ng];
    var acc = vec2<f32>(0.0, 0.0);
    for (var j = li; j < m; j = j + WG) {
        let g = DY[base + j] * Gamma[c0 + j / p.hw];
        let xh = (X[base + j] - mean) * rstd;
        acc = acc + vec2<f32>(g, g * xh);
    }
    let t = sum2(li, acc) / f32(m);
    for (var j = li; j < m; j = j + WG) {
        let g = DY[base + j] * Gamma[c0 + j / p.hw];
        let xh = (X[base + j] - mean) * rstd;
        DX[base + j] = rstd * (g - t.x - xh * t.y);
    }
}
