// chanbias_bwd.wgsl: the gradient of chanbias.wgsl with respect to the per-(image, channel) values,
//   dT[j] = Σ_{pos < hw} dY[j·hw + pos],   j = n·c_count + c.
// One workgroup per j: each invocation sums positions li, li+WG, … in order, then a fixed-shape tree
// in workgroup memory adds the shares, so the result is deterministic. Workgroups are numbered
// wid.y·nwg.x + wid.x so the dispatch can exceed 65535 per dimension.

struct Params {
    nc: u32,
    hw: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> DY: array<f32>;
@group(0) @binding(2) var<storage, read_write> DT: array<f32>;

const WG: u32 = 256u;

var<workgroup> red: array<f32, WG>;

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>,
        @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) li: u32) {
    let j = wid.y * nwg.x + wid.x; // uniform across the workgroup, so the barriers stay uniform
    var s = 0.0;
    if (j < p.nc) {
        for (var pos = li; pos < p.hw; pos = pos + WG) {
            s = s + DY[j * p.hw + pos];
        }
    }
    red[li] = s;
    workgroupBarrier();
    for (var h = WG / 2u; h > 0u; h = h >> 1u) {
        if (li < h) {
            red[li] = red[li] + red[li + h];
        }
        workgroupBarrier();
    }
    if (li == 0u && j < p.nc) {
        DT[j] = red[0];
    }
}
