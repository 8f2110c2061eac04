// conv_bwd_data.wgsl: the input gradient of conv.wgsl, a transposed convolution of dy with the same
// k×k weights (k odd, padding k/2):
//   dx[n,ci,h,w] = Σ_{co,kh,kw} W[co,ci,kh,kw] · dy[n,co,h−kh+k/2,w−kw+k/2]   (terms outside dy dropped).
// One invocation per pixel and block of CB = 4 input channels, so each dy value loaded feeds four
// accumulators (as conv.wgsl blocks output channels); the last block of an odd cin reads clamped
// weights and stores only its real channels. Workgroups are numbered wid.y·nwg.x + wid.x so the
// dispatch can exceed 65535 per dimension.

struct Params {
    n: u32,
    cin: u32,
    cout: u32,
    h: u32,
    w: u32,
    k: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> DY: array<f32>;
@group(0) @binding(2) var<storage, read> Wt: array<f32>;
@group(0) @binding(3) var<storage, read_write> DX: array<f32>;

const WG: u32 = 256u;
const CB: u32 = 4u;

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>,
        @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) li: u32) {
    let i = (wid.y * nwg.x + wid.x) * WG + li;
    let hw = p.h * p.w;
    let blocks = (p.cin + CB - 1u) / CB;
    if (i >= p.n * blocks * hw) {
        return;
    }
    let pos = i % hw;
    let ix = pos % p.w;
    let iy = pos / p.w;
    let ci0 = ((i / hw) % blocks) * CB;
    let n = i / (hw * blocks);
    let kk = p.k * p.k;
    let pad = i32(p.k / 2u);
    // Offsets of the block's input channels within a weight row (clamped to the last real one).
    let w0 = min(ci0, p.cin - 1u) * kk;
    let w1 = min(ci0 + 1u, p.cin - 1u) * kk;
    let w2 = min(ci0 + 2u, p.cin - 1u) * kk;
    let w3 = min(ci0 + 3u, p.cin - 1u) * kk;
    var acc = vec4<f32>(0.0);
    for (var co = 0u; co < p.cout; co = co + 1u) {
        let yb = (n * p.cout + co) * hw;
        let wb = co * p.cin * kk;
        for (var kh = 0u; kh < p.k; kh = kh + 1u) {
            let yy = i32(iy) - i32(kh) + pad;
            if (yy < 0 || yy >= i32(p.h)) {
                continue;
            }
            for (var kw = 0u; kw < p.k; kw = kw + 1u) {
                let xx = i32(ix) - i32(kw) + pad;
                if (xx < 0 || xx >= i32(p.w)) {
                    continue;
                }
                let dv = DY[yb + u32(yy) * p.w + u32(xx)];
                let t = wb + kh * p.k + kw;
                acc = fma(vec4<f32>(dv), vec4<f32>(Wt[t + w0], Wt[t + w1], Wt[t + w2], Wt[t + w3]), acc);
            }
        }
    }
    let xb = (n * p.cin + ci0) * hw + pos;
    for (var j = 0u; j < CB; j = j + 1u) {
        if (ci0 + j < p.cin) {
            DX[xb + j * hw] = acc[j];
        }
    }
}
