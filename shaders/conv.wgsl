// conv.wgsl: k×k convolution (k odd: the U-Net uses 3 and 1), stride 1, zero padding k/2, with bias,
// NCHW float32:
//   y[n,co,h,w] = b[co] + Σ_{ci,kh,kw} W[co,ci,kh,kw] · x[n,ci,h+kh−k/2,w+kw−k/2]
//                 (+ t[n·cout + co] when p.tadd = 1)   (+ r[n,co,h,w] when p.radd = 1),
// the two optional terms being the U-Net residual block's time bias (added to conv1's output) and its
// residual (added to conv2's), so they cost no pass of their own;
// computed as an implicit GEMM Y[co, q] = b[co] + Σ_κ W[co, κ] · X̂[κ, q] over the pixels q = (n, h, w)
// of all images and κ = (ci, kh, kw); X̂ (im2col of x) is never stored, its values are gathered
// while staging.
//
// Tiling: a workgroup computes a BM×BN tile (BM output channels × BN consecutive pixels q, which may
// span rows and images, so small images still fill a tile). The reduction walks the input channels
// in chunks of BK and, inside a chunk, the k² taps; per (chunk, tap) step the workgroup stages W
// (BK×BM) and the tap-shifted x (BK×BN, zero outside the image: the padding) in workgroup memory, then
// each of its first NC invocations accumulates SBM×SBN sub-blocks of 8 output channels × 8 pixels in
// registers. Operands are staged and read as vec4 (4 channels or 4 pixels). Each invocation stages
// whole vec4s (a store to one component of a shared vec4 may compile to a read-modify-write of the
// whole vector, racing with its neighbours) and one pixel quad, whose image, row and column it finds
// once.
//
// Why these shapes: software adapters (lavapipe) run an invocation's loads one lane at a time, so
// loads, not FMAs, bound the speed there, and a larger register block does more FMAs per load: on
// lavapipe 2×2 sub-blocks (16×16 outputs, 64 FMAs per vec4 load) ran a 64→64-channel 3×3 conv 1.6×
// faster than one (8×8, 16 per load) despite spilling registers. GPUs get one sub-block (conv.go).
// The accumulators are arrays indexed only by constants (mma, store): one index that is not a
// constant after inlining, such as a loop counter, turned them into memory and the kernel ran 3×
// slower on lavapipe; loops over the sub-block's rows ran 1.6× slower than the written-out lines.
//
// The tile constants are rewritten by the launcher (conv.go) to build a few variants. Pixel tiles are
// numbered wid.y + wid.z·nwg.y so the dispatch can exceed 65535 tiles per dimension; wid.x is the
// channel tile.
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
    tadd: u32, // 1: add T[n·cout + co]
    radd: u32, // 1: add R[n, co, h, w]
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> X: array<f32>;
@group(0) @binding(2) var<storage, read> Wt: array<WT>;
@group(0) @binding(3) var<storage, read> B: array<f32>;
@group(0) @binding(4) var<storage, read_write> Y: array<f32>;
@group(0) @binding(5) var<storage, read> T: array<f32>; // read only when p.tadd = 1
@group(0) @binding(6) var<storage, read> R: array<f32>; // read only when p.radd = 1

alias WT = f32; // f16 variant: u32
// wt returns weight i as f32.
fn wt(i: u32) -> f32 { return f32(Wt[i]); } // f16 variant: unpack a half

// The tile: BM output channels × BN pixels per workgroup, BK input channels per staged chunk; each
// computing invocation holds SBM×SBN sub-blocks of 8 channels × 8 pixels (SBM, SBN ∈ {1, 2}).
// Derived (written out because older WGSL front ends accept only literals or plain constants as array
// and workgroup sizes): BM4 = BM/4, BN4 = BN/4, WX = BN/(8·SBN) invocations along the pixels,
// NC = BM/(8·SBM)·WX computing invocations, NT = max(NC, BN4) invocations (each stages one pixel quad),
// WS_LEN = BK·BM4, XS_LEN = BK·BN4. The launcher checks that NT is a multiple of BN4 and BK of NT/BN4.
const BM: u32 = 64u;
const BN: u32 = 128u;
const BK: u32 = 16u;
const SBM: u32 = 2u;
const SBN: u32 = 2u;
const BM4: u32 = 16u;
const BN4: u32 = 32u;
const WX: u32 = 8u;
const NC: u32 = 32u;
const NT: u32 = 32u;
const WS_LEN: u32 = 256u;
const XS_LEN: u32 = 512u;

var<workgroup> Ws: array<vec4<f32>, WS_LEN>; // Ws[c·BM4 + m]: W[co0+4m … +3, ci0+c, kh, kw]
var<workgroup> Xs: array<vec4<f32>, XS_LEN>; // Xs[c·BN4 + j]: x̂ at pixels q0+4j … +3, channel ci0+c

// mma adds the outer product of 8 channels (a0, a1) and 8 pixels (b0, b1) to the sub-block acc:
// acc[2i + j] += a[i] · b_j for channel i and pixel quad j.
fn mma(acc: ptr<function, array<vec4<f32>, 16>>, a0: vec4<f32>, a1: vec4<f32>, b0: vec4<f32>, b1: vec4<f32>) {
    (*acc)[0] = fma(vec4<f32>(a0.x), b0, (*acc)[0]);
    (*acc)[1] = fma(vec4<f32>(a0.x), b1, (*acc)[1]);
    (*acc)[2] = fma(vec4<f32>(a0.y), b0, (*acc)[2]);
    (*acc)[3] = fma(vec4<f32>(a0.y), b1, (*acc)[3]);
    (*acc)[4] = fma(vec4<f32>(a0.z), b0, (*acc)[4]);
    (*acc)[5] = fma(vec4<f32>(a0.z), b1, (*acc)[5]);
    (*acc)[6] = fma(vec4<f32>(a0.w), b0, (*acc)[6]);
    (*acc)[7] = fma(vec4<f32>(a0.w), b1, (*acc)[7]);
    (*acc)[8] = fma(vec4<f32>(a1.x), b0, (*acc)[8]);
    (*acc)[9] = fma(vec4<f32>(a1.x), b1, (*acc)[9]);
    (*acc)[10] = fma(vec4<f32>(a1.y), b0, (*acc)[10]);
    (*acc)[11] = fma(vec4<f32>(a1.y), b1, (*acc)[11]);
    (*acc)[12] = fma(vec4<f32>(a1.z), b0, (*acc)[12]);
    (*acc)[13] = fma(vec4<f32>(a1.z), b1, (*acc)[13]);
    (*acc)[14] = fma(vec4<f32>(a1.w), b0, (*acc)[14]);
    (*acc)[15] = fma(vec4<f32>(a1.w), b1, (*acc)[15]);
}

// put stores v (+ bias, time bias, residual) as output channel co at the four pixels q … q+3 that are
// in range.
fn put(co: u32, q: u32, v: vec4<f32>) {
    let hw = p.h * p.w;
    if (co >= p.cout) {
        return;
    }
    let qq = vec4<u32>(q) + vec4<u32>(0u, 1u, 2u, 3u);
    let ok = qq < vec4<u32>(p.n * hw);
    let n = select(vec4<u32>(0u), qq / hw, ok);
    let o = n * (p.cout * hw) + co * hw + select(vec4<u32>(0u), qq, ok) - n * hw;
    var y = v + B[co];
    if (p.tadd == 1u) {
        let t = n * p.cout + co;
        y = y + vec4<f32>(T[t.x], T[t.y], T[t.z], T[t.w]);
    }
    if (p.radd == 1u) {
        y = y + vec4<f32>(R[o.x], R[o.y], R[o.z], R[o.w]);
    }
    if (ok.x) { Y[o.x] = y.x; }
    if (ok.y) { Y[o.y] = y.y; }
    if (ok.z) { Y[o.z] = y.z; }
    if (ok.w) { Y[o.w] = y.w; }
}

// store writes sub-block acc: output channels co … co+7 at pixels q … q+7.
fn store(acc: ptr<function, array<vec4<f32>, 16>>, co: u32, q: u32) {
    put(co, q, (*acc)[0]);
    put(co, q + 4u, (*acc)[1]);
    put(co + 1u, q, (*acc)[2]);
    put(co + 1u, q + 4u, (*acc)[3]);
    put(co + 2u, q, (*acc)[4]);
    put(co + 2u, q + 4u, (*acc)[5]);
    put(co + 3u, q, (*acc)[6]);
    put(co + 3u, q + 4u, (*acc)[7]);
    put(co + 4u, q, (*acc)[8]);
    put(co + 4u, q + 4u, (*acc)[9]);
    put(co + 5u, q, (*acc)[10]);
    put(co + 5u, q + 4u, (*acc)[11]);
    put(co + 6u, q, (*acc)[12]);
    put(co + 6u, q + 4u, (*acc)[13]);
    put(co + 7u, q, (*acc)[14]);
    put(co + 7u, q + 4u, (*acc)[15]);
}

@compute @workgroup_size(NT)
fn main(@builtin(workgroup_id) wid: vec3<u32>,
        @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) tid: u32) {
    let hw = p.h * p.w;
    let total = p.n * hw;
    let kk = p.k * p.k;
    let pad = i32(p.k / 2u);
    let co0 = wid.x * BM;
    let q0 = (wid.y + wid.z * nwg.y) * BN;
    // This invocation computes the sub-blocks (ty, tx) (acc below).
    let tx = tid % WX;
    let ty = tid / WX;

    // It stages pixel quad sj (pixels q0 + 4·sj … +3) of channels sc, sc + NT/BN4, … of each chunk.
    let sj = tid % BN4;
    let sc = tid / BN4;
    let q = vec4<u32>(q0 + 4u * sj) + vec4<u32>(0u, 1u, 2u, 3u);
    let inside = q < vec4<u32>(total);
    let img = q / hw;
    let pos = q - img * hw;
    let oy = vec4<i32>(pos / p.w);
    let ox = vec4<i32>(pos % p.w);
    let xbase = img * (p.cin * hw);

    // acc<I><J>: sub-block of output channels co0 + 8·(SBM·ty + I) … +7 × pixels q0 + 8·(SBN·tx + J) … +7.
    var acc00: array<vec4<f32>, 16>;
    var acc01: array<vec4<f32>, 16>;
    var acc10: array<vec4<f32>, 16>;
    var acc11: array<vec4<f32>, 16>;
    for (var ci0 = 0u; ci0 < p.cin; ci0 = ci0 + BK) {
        for (var kh = 0u; kh < p.k; kh = kh + 1u) {
            for (var kw = 0u; kw < p.k; kw = kw + 1u) {
                let tap = kh * p.k + kw;
                // Stage BK×BM weights, 4 output channels per entry (clamped reads, zero outside).
                for (var e = tid; e < WS_LEN; e = e + NT) {
                    let ci = ci0 + e / BM4;
                    let co = vec4<u32>(co0 + 4u * (e % BM4)) + vec4<u32>(0u, 1u, 2u, 3u);
                    let ok = (co < vec4<u32>(p.cout)) & vec4<bool>(ci < p.cin);
                    let wi = select(vec4<u32>(0u), (co * p.cin + ci) * kk + tap, ok);
                    let v = vec4<f32>(wt(wi.x), wt(wi.y), wt(wi.z), wt(wi.w));
                    Ws[e] = select(vec4<f32>(0.0), v, ok);
                }
                // Stage BK×BN tap-shifted inputs, one pixel quad per entry.
                let iy = oy + i32(kh) - pad;
                let ix = ox + i32(kw) - pad;
                let okp = inside & (iy >= vec4<i32>(0)) & (iy < vec4<i32>(i32(p.h))) &
                    (ix >= vec4<i32>(0)) & (ix < vec4<i32>(i32(p.w)));
                let src = xbase + vec4<u32>(select(vec4<i32>(0), iy * i32(p.w) + ix, okp));
                for (var c = sc; c < BK; c = c + NT / BN4) {
                    let ci = ci0 + c;
                    let ok = okp & vec4<bool>(ci < p.cin);
                    let o = select(vec4<u32>(0u), src + ci * hw, ok);
                    let v = vec4<f32>(X[o.x], X[o.y], X[o.z], X[o.w]);
                    Xs[c * BN4 + sj] = select(vec4<f32>(0.0), v, ok);
                }
                workgroupBarrier();
                if (tid < NC) {
                    for (var c = 0u; c < BK; c = c + 1u) {
                        let wa = c * BM4 + 2u * SBM * ty;
                        let xa = c * BN4 + 2u * SBN * tx;
                        let a0 = Ws[wa];
                        let a1 = Ws[wa + 1u];
                        let b0 = Xs[xa];
                        let b1 = Xs[xa + 1u];
                        mma(&acc00, a0, a1, b0, b1);
                        var b2 = vec4<f32>(0.0);
                        var b3 = vec4<f32>(0.0);
                        if (SBN == 2u) {
                            b2 = Xs[xa + 2u];
                            b3 = Xs[xa + 3u];
                            mma(&acc01, a0, a1, b2, b3);
                        }
                        if (SBM == 2u) {
                            let a2 = Ws[wa + 2u];
                            let a3 = Ws[wa + 3u];
                            mma(&acc10, a2, a3, b0, b1);
                            if (SBN == 2u) {
                                mma(&acc11, a2, a3, b2, b3);
                            }
                        }
                    }
                }
                workgroupBarrier();
            }
        }
    }
    if (tid >= NC) {
        return;
    }
    let co = co0 + 8u * SBM * ty;
    let qo = q0 + 8u * SBN * tx;
    store(&acc00, co, qo);
    if (SBN == 2u) {
        store(&acc01, co, qo + 8u);
    }
    if (SBM == 2u) {
        store(&acc10, co + 8u, qo);
        if (SBN == 2u) {
            store(&acc11, co + 8u, qo + 8u);
        }
    }
}
