// chanbias.wgsl: adds a per-(image, channel) value to every position of that channel, in place,
//   Y[n, c, :] += T[n·c_count + c],
// the U-Net residual block's time-embedding projection broadcast over H×W (unet.go). One invocation
// per value of Y; workgroups are numbered wid.y·nwg.x + wid.x so the dispatch can exceed 65535 per
// dimension.

struct Params {
    nc: u32, // images × channels
    hw: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> T: array<f32>;
@group(0) @binding(2) var<storage, read_write> Y: array<f32>;

const WG: u32 = 256u;

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>,
        @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) li: u32) {
    let i = (wid.y * nwg.x + wid.x) * WG + li;
    if (i >= p.nc * p.hw) {
        return;
    }
    Y[i] = Y[i] + T[i / p.hw];
}
