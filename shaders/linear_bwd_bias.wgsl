// linear_bwd_bias.wgsl: the bias gradient of a linear layer, db_j = Σ_i dY[i][j] (dY n×m row-major).
// One workgroup per column: each invocation sums rows li, li+WG, … in order, then a fixed tree in
// workgroup memory adds the partial sums, so the result is deterministic run to run.

struct Params {
    n: u32,
    m: u32,
    _pad0: u32,
    _pad1: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> dY: array<f32>;
@group(0) @binding(2) var<storage, read_write> db: array<f32>;

const WG: u32 = 256u;

var<workgroup> part: array<f32, WG>;

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>,
        @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) li: u32) {
    let j = wid.y * nwg.x + wid.x; // uniform across the workgroup, so the barriers stay uniform
    var s = 0.0;
    if (j < p.m) {
        for (var i = li; i < p.n; i = i + WG) {
            s = s + dY[i * p.m + j];
        }
    }
    part[li] = s;
    workgroupBarrier();
    for (var h = WG / 2u; h > 0u; h = h / 2u) {
        if (li < h) {
            part[li] = part[li] + part[li + h];
        }
        workgroupBarrier();
    }
    if (li == 0u && j < p.m) {
        db[j] = part[0];
    }
}
