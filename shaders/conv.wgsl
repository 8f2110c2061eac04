// conv.wgsl: k×k convolution (k odd: the U-Net uses 3 and 1), stride 1, zero padding k/2, with bias,
// NCHW float32:
//   y[n,co,h,w] = b[co] + Σ_{ci,kh,kw} W[co,ci,kh,kw] · x[n,ci,h+kh−k/2,w+kw−k/2].
// One invocation per pixel and block of CB = 4 output channels: each x value loaded feeds four
// accumulators (a naive one-output-per-invocation kernel loaded every x value cout times). The last
// block of an odd cout reads clamped weights and stores only its real channels. Consecutive
// invocations take consecutive pixels, so x loads are contiguous and weight loads are shared across
// the workgroup. Workgroups are numbered wid.y·nwg.x + wid.x so the dispatch can exceed 65535 per
// dimension.
//
// Wt is read only through wt(), as f32, and stored as WT: the launcher (weightf16.go) derives the
// f16-weight variant by rewriting the two lines marked "f16 variant" (Wt then holds halves packed two
// to a u32); x, b, y and the accumulation stay f32.

struct Params {
    n: u32,
    cin: u32,
    cout: u32,
    h: u32,
    w: u32,
    k: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> X: array<f32>;
@group(0) @binding(2) var<storage, read> Wt: array<WT>;
@group(0) @binding(3) var<storage, read> B: array<f32>;
@group(0) @binding(4) var<storage, read_write> Y: array<f32>;

alias WT = f32; // f16 variant: u32
// wt returns weight i as f32.
fn wt(i: u32) -> f32 { return f32(Wt[i]); } // f16 variant: unpack a half

const WG: u32 = 256u;
const CB: u32 = 4u;

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>,
        @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) li: u32) {
    let i = (wid.y * nwg.x + wid.x) * WG + li;
    let hw = p.h * p.w;
    let blocks = (p.cout + CB - 1u) / CB;
    if (i >= p.n * blocks * hw) {
        return;
    }
    let pos = i % hw;
    let ox = pos % p.w;
    let oy = pos / p.w;
    let co0 = ((i / hw) % blocks) * CB;
    let n = i / (hw * blocks);
    let kk = p.k * p.k;
    let pad = i32(p.k / 2u);
    // Weight rows of the block's channels (clamped to the last real channel).
    let ws = p.cin * kk;
    let w0 = min(co0, p.cout - 1u) * ws;
    let w1 = min(co0 + 1u, p.cout - 1u) * ws;
    let w2 = min(co0 + 2u, p.cout - 1u) * ws;
    let w3 = min(co0 + 3u, p.cout - 1u) * ws;
    var acc = vec4<f32>(0.0);
    for (var ci = 0u; ci < p.cin; ci = ci + 1u) {
        let xb = (n * p.cin + ci) * hw;
        let wb = ci * kk;
        for (var kh = 0u; kh < p.k; kh = kh + 1u) {
            let yy = i32(oy) + i32(kh) - pad;
            if (yy < 0 || yy >= i32(p.h)) {
                continue;
            }
            for (var kw = 0u; kw < p.k; kw = kw + 1u) {
                let xx = i32(ox) + i32(kw) - pad;
                if (xx < 0 || xx >= i32(p.w)) {
                    continue;
                }
                let xv = X[xb + u32(yy) * p.w + u32(xx)];
                let t = wb + kh * p.k + kw;
                acc = fma(vec4<f32>(xv), vec4<f32>(wt(w0 + t), wt(w1 + t), wt(w2 + t), wt(w3 + t)), acc);
            }
        }
    }
    let yb = (n * p.cout + co0) * hw + pos;
    for (var j = 0u; j < CB; j = j + 1u) {
        if (co0 + j < p.cout) {
            Y[yb + j * hw] = acc[j] + B[co0 + j];
        }
    }
}
