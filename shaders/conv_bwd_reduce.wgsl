// conv_bwd_reduce.wgsl: adds the partial sums of conv_bwd_weights.wgsl's splits,
//   dst[i] = Σ_{s < splits} src[s·len + i]   for i < len,
// s in increasing order, so the result is deterministic. One invocation per value; workgroups are
// numbered wid.y·nwg.x + wid.x so the dispatch can exceed 65535 per dimension.

struct Params {
    len: u32,
    splits: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> Src: array<f32>;
@group(0) @binding(2) var<storage, read_write> Dst: array<f32>;

const WG: u32 = 256u;

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>,
        @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) li: u32) {
    let i = (wid.y * nwg.x + wid.x) * WG + li;
    if (i >= p.len) {
        return;
    }
    var s = Src[i];
    for (var z = 1u; z < p.splits; z = z + 1u) {
        s = s + Src[z * p.len + i];
    }
    Dst[i] = s;
}
