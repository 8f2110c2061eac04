// conv_bwd_data.wgsl: the input gradient of conv.wgsl, a transposed convolution of dy with the same
// k×k weights (k odd, padding k/2):
//   dx[n,ci,h,w] = Σ_{co,kh,kw} W[co,ci,kh,kw] · dy[n,co,h−kh+k/2,w−kw+k/2]   (terms outside dy dropped)
//                = Σ_{co,kh,kw} W[co,ci,k−1−kh,k−1−kw] · dy[n,co,h+kh−k/2,w+kw−k/2],
// the second form being conv.wgsl's sum with the roles of ci and co swapped and the taps flipped. It is
// computed exactly as conv.wgsl computes its forward, an implicit GEMM
// DX[ci, q] = Σ_κ W'[ci, κ] · DŶ[κ, q] over the pixels q = (n, h, w) and κ = (co, kh, kw), with the same
// tiling (BM input channels × BN pixels per workgroup, BK output channels per staged chunk, SBM×SBN
// sub-blocks of 8×8 outputs per invocation, vec4 operands, accumulators indexed only by constants;
// see conv.wgsl for why) and the same variants (conv.go). Pixel tiles are numbered wid.y + wid.z·nwg.y
// so the dispatch can exceed 65535 tiles per dimension; wid.x is the channel tile.

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

// The tile: BM input channels (the outputs) × BN pixels per workgroup, BK output channels (the
// reduction) per staged chunk; each
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

var<workgroup> Ws: array<vec4<f32>, WS_LEN>; // Ws[c·BM4 + m]: W[co0+c, ci0+4m … +3, k−1−kh, k−1−kw]
var<workgroup> Xs: array<vec4<f32>, XS_LEN>; // Xs[c·BN4 + j]: dŷ at pixels q0+4j … +3, channel co0+c

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

// put stores v as input channel ci at the four pixels q … q+3 that are in range.
fn put(ci: u32, q: u32, v: vec4<f32>) {
    let hw = p.h * p.w;
    if (ci >= p.cin) {
        return;
    }
    let qq = vec4<u32>(q) + vec4<u32>(0u, 1u, 2u, 3u);
    let n = qq / hw;
    let o = n * (p.cin * hw) + ci * hw + qq - n * hw;
    let ok = qq < vec4<u32>(p.n * hw);
    if (ok.x) { DX[o.x] = v.x; }
    if (ok.y) { DX[o.y] = v.y; }
    if (ok.z) { DX[o.z] = v.z; }
    if (ok.w) { DX[o.w] = v.w; }
}

// store writes sub-block acc: input channels ci … ci+7 at pixels q … q+7.
fn store(acc: ptr<function, array<vec4<f32>, 16>>, ci: u32, q: u32) {
    put(ci, q, (*acc)[0]);
    put(ci, q + 4u, (*acc)[1]);
    put(ci + 1u, q, (*acc)[2]);
    put(ci + 1u, q + 4u, (*acc)[3]);
    put(ci + 2u, q, (*acc)[4]);
    put(ci + 2u, q + 4u, (*acc)[5]);
    put(ci + 3u, q, (*acc)[6]);
    put(ci + 3u, q + 4u, (*acc)[7]);
    put(ci + 4u, q, (*acc)[8]);
    put(ci + 4u, q + 4u, (*acc)[9]);
    put(ci + 5u, q, (*acc)[10]);
    put(ci + 5u, q + 4u, (*acc)[11]);
    put(ci + 6u, q, (*acc)[12]);
    put(ci + 6u, q + 4u, (*acc)[13]);
    put(ci + 7u, q, (*acc)[14]);
    put(ci + 7u, q + 4u, (*acc)[15]);
}

@compute @workgroup_size(NT)
fn main(@builtin(workgroup_id) wid: vec3<u32>,
        @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) tid: u32) {
    let hw = p.h * p.w;
    let total = p.n * hw;
    let kk = p.k * p.k;
    let pad = i32(p.k / 2u);
    let ci0 = wid.x * BM;
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
    let dbase = img * (p.cout * hw);

    // acc<I><J>: sub-block of input channels ci0 + 8·(SBM·ty + I) … +7 × pixels q0 + 8·(SBN·tx + J) … +7.
    var acc00: array<vec4<f32>, 16>;
    var acc01: array<vec4<f32>, 16>;
    var acc10: array<vec4<f32>, 16>;
    var acc11: array<vec4<f32>, 16>;
    for (var co0 = 0u; co0 < p.cout; co0 = co0 + BK) {
        for (var kh = 0u; kh < p.k; kh = kh + 1u) {
            for (var kw = 0u; kw < p.k; kw = kw + 1u) {
                let flip = kk - 1u - (kh * p.k + kw);
                // Stage BK×BM flipped weights, 4 input channels per entry (clamped reads, zero outside).
                for (var e = tid; e < WS_LEN; e = e + NT) {
                    let co = co0 + e / BM4;
                    let ci = vec4<u32>(ci0 + 4u * (e % BM4)) + vec4<u32>(0u, 1u, 2u, 3u);
                    let ok = (ci < vec4<u32>(p.cin)) & vec4<bool>(co < p.cout);
                    let wi = select(vec4<u32>(0u), (co * p.cin + ci) * kk + flip, ok);
                    let v = vec4<f32>(Wt[wi.x], Wt[wi.y], Wt[wi.z], Wt[wi.w]);
                    Ws[e] = select(vec4<f32>(0.0), v, ok);
                }
                // Stage BK×BN tap-shifted gradients, one pixel quad per entry.
                let iy = oy + i32(kh) - pad;
                let ix = ox + i32(kw) - pad;
                let okp = inside & (iy >= vec4<i32>(0)) & (iy < vec4<i32>(i32(p.h))) &
                    (ix >= vec4<i32>(0)) & (ix < vec4<i32>(i32(p.w)));
                let src = dbase + vec4<u32>(select(vec4<i32>(0), iy * i32(p.w) + ix, okp));
                for (var c = sc; c < BK; c = c + NT / BN4) {
                    let co = co0 + c;
                    let ok = okp & vec4<bool>(co < p.cout);
                    let o = select(vec4<u32>(0u), src + co * hw, ok);
                    let v = vec4<f32>(DY[o.x], DY[o.y], DY[o.z], DY[o.w]);
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
    let ci = ci0 + 8u * SBM * ty;
    let qo = q0 + 8u * SBN * tx;
    store(&acc00, ci, qo);
    if (SBN == 2u) {
        store(&acc01, ci, qo + 8u);
    }
    if (SBM == 2u) {
        store(&acc10, ci + 8u, qo);
        if (SBN == 2u) {
            store(&acc11, ci + 8u, qo + 8u);
        }
    }
}
