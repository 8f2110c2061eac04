// conv3x3.wgsl: 3×3 convolution, stride 1, zero padding 1, with bias, NCHW float32 (the U-Net's
// convolution). One invocation per output value:
//   y[n,co,h,w] = b[co] + Σ_{ci,kh,kw} W[co,ci,kh,kw] · x[n,ci,h+kh−1,w+kw−1].
// Workgroups are numbered wid.y·nwg.x + wid.x so the dispatch can exceed 65535 per dimension.

struct Params {
    n: u32,
    cin: u32,
    cout: u32,
    h: u32,
    w: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> X: array<f32>;
@group(0) @binding(2) var<storage, read> Wt: array<f32>;
@group(0) @binding(3) var<storage, read> B: array<f32>;
@group(0) @binding(4) var<storage, read_write> Y: array<f32>;

const WG: u32 = 256u;

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>,
        @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) li: u32) {
    let i = (wid.y * nwg.x + wid.x) * WG + li;
    let hw = p.h * p.w;
    if (i >= p.n * p.cout * hw) {
        return;
    }
    let ox = i % p.w;
    let oy = (i / p.w) % p.h;
    let co = (i / hw) % p.cout;
    let n = i / (hw * p.cout);
    var acc = 0.0;
    for (var ci = 0u; ci < p.cin; ci = ci + 1u) {
        let xb = (n * p.cin + ci) * hw;
        let wb = (co * p.cin + ci) * 9u;
        for (var kh = 0u; kh < 3u; kh = kh + 1u) {
            let yy = i32(oy) + i32(kh) - 1;
            if (yy < 0 || yy >= i32(p.h)) {
                continue;
            }
            for (var kw = 0u; kw < 3u; kw = kw + 1u) {
                let xx = i32(ox) + i32(kw) - 1;
                if (xx < 0 || xx >= i32(p.w)) {
                    continue;
                }
                acc = fma(X[xb + u32(yy) * p.w + u32(xx)], Wt[wb + kh * 3u + kw], acc);
            }
        }
    }
    Y[i] = acc + B[co];
}
