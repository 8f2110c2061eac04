// conv3x3_bwd_data.wgsl: the input gradient of conv3x3.wgsl, a transposed convolution of dy with the
// same weights. One invocation per input value:
//   dx[n,ci,h,w] = Σ_{co,kh,kw} W[co,ci,kh,kw] · dy[n,co,h−kh+1,w−kw+1]   (terms outside dy dropped).
// Workgroups are numbered wid.y·nwg.x + wid.x so the dispatch can exceed 65535 per dimension.

struct Params {
    n: u32,
    cin: u32,
    cout: u32,
    h: u32,
    w: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> DY: array<f32>;
@group(0) @binding(2) var<storage, read> Wt: array<f32>;
@group(0) @binding(3) var<storage, read_write> DX: array<f32>;

const WG: u32 = 256u;

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>,
        @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) li: u32) {
    let i = (wid.y * nwg.x + wid.x) * WG + li;
    let hw = p.h * p.w;
    if (i >= p.n * p.cin * hw) {
        return;
    }
    let ix = i % p.w;
    let iy = (i / p.w) % p.h;
    let ci = (i / hw) % p.cin;
    let n = i / (hw * p.cin);
    var acc = 0.0;
    for (var co = 0u; co < p.cout; co = co + 1u) {
        let yb = (n * p.cout + co) * hw;
        let wb = (co * p.cin + ci) * 9u;
        for (var kh = 0u; kh < 3u; kh = kh + 1u) {
            let yy = i32(iy) - i32(kh) + 1;
            if (yy < 0 || yy >= i32(p.h)) {
                continue;
            }
            for (var kw = 0u; kw < 3u; kw = kw + 1u) {
                let xx = i32(ix) - i32(kw) + 1;
                if (xx < 0 || xx >= i32(p.w)) {
                    continue;
                }
                acc = fma(DY[yb + u32(yy) * p.w + u32(xx)], Wt[wb + kh * 3u + kw], acc);
            }
        }
    }
    DX[i] = acc;
}
