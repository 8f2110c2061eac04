// chanbias.wgsl: adds a per-(image, channel) value to every position of that channel, in place,
//   Y[n, c, :] += T[n·c_count + c],
// the U-Net residual block's time-embedding projection broadcast over H×W (unet.go). One invocation
// per value of Y; a workgroup covers WG positions of one (image, channel) row, so no invocation
// divides (see channels.wgsl). Workgroups are numbered g = wid.y·nwg.x + wid.x so the dispatch can
// exceed 65535 per dimension: row g / ⌈hw/WG⌉, block g % ⌈hw/WG⌉.

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
    let g = wid.y * nwg.x + wid.x;
    let blocks = (p.hw + WG - 1u) / WG;
    let row = g / blocks;
    let pos = (g - row * blocks) * WG + li;
    if (row >= p.nc || pos >= p.hw) {
        return;
    }
    Y[row * p.hw + pos] = Y[row * p.hw + pos] + T[row];
}
