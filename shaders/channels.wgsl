// channels.wgsl: copies (acc = 0) or adds (acc = 1) a block of cc channels between two NCHW tensors
// of n images with hw values per channel: for c < cc,
//   D[n, d0 + c, :] (+)= S[n, s0 + c, :],   S has cs channels, D has cd.
// It is the U-Net's skip concat (two copies into one tensor), its backward (two copies out of one)
// and gradient accumulation (n = 1, cc = cs = cd = 1, hw = the count: D += S elementwise; WebGPU may
// not bind one buffer as both input and output, so the accumulator is the read_write binding).
// One invocation per copied value. A workgroup copies WG consecutive values of one channel row, so the
// image and channel follow from the workgroup's number alone and no invocation divides per value
// (software adapters such as lavapipe run a vector's integer divisions lane by lane). Workgroups are
// numbered g = wid.y·nwg.x + wid.x (so the dispatch can exceed 65535 per dimension): row g / ⌈hw/WG⌉
// (= n·cc + c), block g % ⌈hw/WG⌉.

struct Params {
    n: u32,
    hw: u32,
    cc: u32,
    cs: u32,
    s0: u32,
    cd: u32,
    d0: u32,
    acc: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> S: array<f32>;
@group(0) @binding(2) var<storage, read_write> D: array<f32>;

const WG: u32 = 256u;

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>,
        @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) li: u32) {
    let g = wid.y * nwg.x + wid.x;
    let blocks = (p.hw + WG - 1u) / WG;
    let row = g / blocks;
    let pos = (g - row * blocks) * WG + li;
    if (row >= p.n * p.cc || pos >= p.hw) {
        return;
    }
    let c = row % p.cc;
    let n = row / p.cc;
    let v = S[(n * p.cs + p.s0 + c) * p.hw + pos];
    let j = (n * p.cd + p.d0 + c) * p.hw + pos;
    if (p.acc == 1u) {
        D[j] = D[j] + v;
    } else {
        D[j] = v;
    }
}
