// groupnorm.wgsl: group normalisation forward, optionally followed by SiLU, NCHW float32. The c
// channels split into `groups` groups of cg = c/groups consecutive channels; for each (n, g) the
// cg·h·w values (contiguous in NCHW) are normalised with their mean μ and biased variance v, then
// scaled per channel:
//   a = γ[c]·(x − μ)·rstd + β[c],   rstd = 1/√(v + eps),   y = a, or y = SiLU(a) = a·σ(a) when p.act = 1
// (the U-Net's GN → SiLU pair in one pass; its backward recomputes a, groupnorm_bwd_data.wgsl), and
// μ and rstd are saved per (n, g) for the backward pass.
// One workgroup of WG invocations per (n, g); two passes (the mean, then the mean square deviation)
// for accuracy, each summed over a fixed-shape tree in workgroup memory, so results are
// deterministic. The output pass walks the group channel by channel (positions li, li + WG, … of
// each), so γ and β are read once per channel and no invocation divides by h·w (software adapters
// such as lavapipe run loads and integer divisions lane by lane). WG is 64 rather than 256: two fewer
// tree levels, at each of whose barriers lavapipe switches every invocation of the workgroup. With
// the fused SiLU, the U-Net's GN → SiLU pairs took 148 ms of CPU per training step of backend
// bench's "large" U-Net at batch 16 on lavapipe, against 322 ms for groupnorm + silu before.
// Workgroups are numbered wid.y·nwg.x + wid.x so the dispatch can exceed 65535 per dimension.

struct Params {
    n: u32,
    c: u32,
    hw: u32,
    groups: u32,
    eps: f32,
    act: u32, // 1: y = SiLU(a)
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> X: array<f32>;
@group(0) @binding(2) var<storage, read> Gamma: array<f32>;
@group(0) @binding(3) var<storage, read> Beta: array<f32>;
@group(0) @binding(4) var<storage, read_write> Y: array<f32>;
@group(0) @binding(5) var<storage, read_write> Mean: array<f32>;
@group(0) @binding(6) var<storage, read_write> Rstd: array<f32>;

const WG: u32 = 64u;

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
    let ng = wid.y * nwg.x + wid.x; // uniform across the workgroup, so the barriers stay uniform
    let live = ng < p.n * p.groups;
    let cg = p.c / p.groups;
    let m = cg * p.hw;
    let base = ng * m; // (n·c + g·cg)·hw
    let c0 = (ng % p.groups) * cg;
    var acc = 0.0;
    if (live) {
        for (var j = li; j < m; j = j + WG) {
            acc = acc + X[base + j];
        }
    }
    let mean = sum(li, acc) / f32(m);
    acc = 0.0;
    if (live) {
        for (var j = li; j < m; j = j + WG) {
            let dv = X[base + j] - mean;
            acc = fma(dv, dv, acc);
        }
    }
    let rstd = 1.0 / sqrt(sum(li, acc) / f32(m) + p.eps);
    if (!live) {
        return;
    }
    for (var ch = 0u; ch < cg; ch = ch + 1u) {
        let scale = Gamma[c0 + ch] * rstd;
        let shift = Beta[c0 + ch];
        let cb = base + ch * p.hw;
        for (var pos = li; pos < p.hw; pos = pos + WG) {
            let a = fma(X[cb + pos] - mean, scale, shift);
            if (p.act == 1u) {
                Y[cb + pos] = a / (1.0 + exp(-a));
            } else {
                Y[cb + pos] = a;
            }
        }
    }
    if (li == 0u) {
        Mean[ng] = mean;
        Rstd[ng] = rstd;
    }
}
