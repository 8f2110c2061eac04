// conv_bwd_weights.wgsl: the parameter gradients of conv.wgsl (k×k, k ∈ {1, 3}, padding k/2),
//   dW[co,ci,kh,kw] = Σ_{n,h,w} dy[n,co,h,w] · x[n,ci,h+kh−k/2,w+kw−k/2],   db[co] = Σ_{n,h,w} dy[n,co,h,w],
// computed as a GEMM dW[co, j] = Σ_q DY[co, q] · X̂[j, q] whose reduction runs over the pixels
// q = (n, h, w) of all images and whose columns j = tap·cpad + ci pair a tap (kh, kw) with an input
// channel, X̂[j, q] being x at channel ci, shifted by the tap (zero outside the image: the padding).
// The tap stride cpad (≥ cin, a multiple of 4) is either a power of two below BN, so a column tile
// holds BN/cpad whole taps (p.packed = 1: narrow layers fill the tile with several taps instead of
// padding their few channels), or a multiple of BN, so a tile lies within one tap.
//
// Tiling: a workgroup computes a BM×BN tile (BM output channels × BN columns) for the pixels of one
// split (below). It walks the pixels in chunks of BK; per chunk it stages dy (BK×BM) and x̂ (BK×BN) in
// workgroup memory, then each of its first NC invocations accumulates SBM×SBN sub-blocks of 8 output
// channels × 8 columns in registers, with vec4 operands and accumulators indexed only by constants,
// as conv.wgsl does (see there why). Each invocation stages one pixel of every chunk, advancing its
// image, row and column from chunk to chunk without division, and whole vec4s of 4 channels (a
// quad of columns never straddles two taps).
//
// Splits: with p.splits > 1 the pixels are cut into p.splits ranges of p.chunk pixels (a multiple of
// BK); workgroup z handles range z and writes its partial sums to slot z of DW and DB (splits × the
// sizes), which conv_bwd_reduce.wgsl then adds in a fixed order: a few large taps give too few
// workgroups to keep every core busy (a 1×1 conv has one tap). Every sum has a fixed order, so the
// results are deterministic (the same bits on every run of a device).
//
// The bias gradient is accumulated by the workgroups of column tile 0 (from the staged dy, so it
// costs no loads). Workgroup x is the output-channel tile, y the column tile, z the split.

struct Params {
    n: u32,
    cin: u32,
    cout: u32,
    h: u32,
    w: u32,
    k: u32,
    splits: u32,
    chunk: u32,  // pixels per split, a multiple of BK
    cpad: u32,   // the column stride of a tap
    packed: u32, // 1: cpad is a power of two below BN, 2^lg
    lg: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> DY: array<f32>;
@group(0) @binding(2) var<storage, read> X: array<f32>;
@group(0) @binding(3) var<storage, read_write> DW: array<f32>;
@group(0) @binding(4) var<storage, read_write> DB: array<f32>;

// The tile: BM output channels × BN columns per workgroup, BK pixels per staged chunk; each computing
// invocation holds SBM×SBN sub-blocks of 8 output channels × 8 columns (SBM, SBN ∈ {1, 2}).
// Derived (written out because older WGSL front ends accept only literals or plain constants as array
// and workgroup sizes): BM4 = BM/4, BN4 = BN/4, WX = BN/(8·SBN), NC = BM/(8·SBM)·WX computing
// invocations, NT = max(NC, BK) invocations, DS_LEN = BK·BM4, XS_LEN = BK·BN4. The launcher checks
// that NT is a multiple of BK.
const BM: u32 = 64u;
const BN: u32 = 64u;
const BK: u32 = 16u;
const SBM: u32 = 2u;
const SBN: u32 = 2u;
const BM4: u32 = 16u;
const BN4: u32 = 16u;
const WX: u32 = 4u;
const NC: u32 = 16u;
const NT: u32 = 16u;
const DS_LEN: u32 = 256u;
const XS_LEN: u32 = 256u;

var<workgroup> Ds: array<vec4<f32>, DS_LEN>; // Ds[s·BM4 + m]: dy[co0+4m … +3] at pixel q+s
var<workgroup> Xs: array<vec4<f32>, XS_LEN>; // Xs[s·BN4 + j]: x̂ of columns j0+4j … +3 at pixel q+s

// column returns the tap and input channel of the column j0 + jj (jj < BN) of the tile at j0.
fn column(j0: u32, jj: u32) -> vec2<u32> {
    if (p.packed == 1u) {
        return vec2<u32>(j0 / p.cpad + (jj >> p.lg), jj & (p.cpad - 1u));
    }
    return vec2<u32>(j0 / p.cpad, j0 % p.cpad + jj);
}

// shift returns the tap's offset (kh − k/2, kw − k/2).
fn shift(tap: u32) -> vec2<i32> {
    if (p.k == 1u) {
        return vec2<i32>(0);
    }
    let kh = select(select(0, 1, tap >= 3u), 2, tap >= 6u);
    return vec2<i32>(kh - 1, i32(tap) - 3 * kh - 1);
}

// mma adds the outer product of 8 output channels (a0, a1) and 8 input channels (b0, b1) to the
// sub-block acc: acc[2i + j] += a[i] · b_j for output channel i and input-channel quad j.
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

// put stores the accumulated quad v of dW (output channel co, the columns j0 + jj … +3, one tap) in
// slot z of DW.
fn put(z: u32, co: u32, j0: u32, jj: u32, v: vec4<f32>) {
    let kk = p.k * p.k;
    let tc = column(j0, jj);
    if (co >= p.cout || tc.x >= kk) {
        return;
    }
    let ci = tc.y;
    let o = ((z * p.cout + co) * p.cin + ci) * kk + tc.x;
    if (ci < p.cin) { DW[o] = v.x; }
    if (ci + 1u < p.cin) { DW[o + kk] = v.y; }
    if (ci + 2u < p.cin) { DW[o + 2u * kk] = v.z; }
    if (ci + 3u < p.cin) { DW[o + 3u * kk] = v.w; }
}

// store writes sub-block acc: output channels co … co+7 × columns j0 + jj … +7, slot z.
fn store(acc: ptr<function, array<vec4<f32>, 16>>, z: u32, co: u32, j0: u32, jj: u32) {
    put(z, co, j0, jj, (*acc)[0]);
    put(z, co, j0, jj + 4u, (*acc)[1]);
    put(z, co + 1u, j0, jj, (*acc)[2]);
    put(z, co + 1u, j0, jj + 4u, (*acc)[3]);
    put(z, co + 2u, j0, jj, (*acc)[4]);
    put(z, co + 2u, j0, jj + 4u, (*acc)[5]);
    put(z, co + 3u, j0, jj, (*acc)[6]);
    put(z, co + 3u, j0, jj + 4u, (*acc)[7]);
    put(z, co + 4u, j0, jj, (*acc)[8]);
    put(z, co + 4u, j0, jj + 4u, (*acc)[9]);
    put(z, co + 5u, j0, jj, (*acc)[10]);
    put(z, co + 5u, j0, jj + 4u, (*acc)[11]);
    put(z, co + 6u, j0, jj, (*acc)[12]);
    put(z, co + 6u, j0, jj + 4u, (*acc)[13]);
    put(z, co + 7u, j0, jj, (*acc)[14]);
    put(z, co + 7u, j0, jj + 4u, (*acc)[15]);
}

// putBias stores the 8 bias sums (b0, b1) of output channels co … co+7 in slot z of DB.
fn putBias(z: u32, co: u32, b0: vec4<f32>, b1: vec4<f32>) {
    let b = z * p.cout + co;
    if (co < p.cout) { DB[b] = b0.x; }
    if (co + 1u < p.cout) { DB[b + 1u] = b0.y; }
    if (co + 2u < p.cout) { DB[b + 2u] = b0.z; }
    if (co + 3u < p.cout) { DB[b + 3u] = b0.w; }
    if (co + 4u < p.cout) { DB[b + 4u] = b1.x; }
    if (co + 5u < p.cout) { DB[b + 5u] = b1.y; }
    if (co + 6u < p.cout) { DB[b + 6u] = b1.z; }
    if (co + 7u < p.cout) { DB[b + 7u] = b1.w; }
}

@compute @workgroup_size(NT)
fn main(@builtin(workgroup_id) wid: vec3<u32>,
        @builtin(local_invocation_index) tid: u32) {
    let hw = p.h * p.w;
    let total = p.n * hw;
    let kk = p.k * p.k;
    let co0 = wid.x * BM;
    let j0 = wid.y * BN;
    let z = wid.z;
    let qBegin = z * p.chunk;
    let qEnd = min(qBegin + p.chunk, total);
    // This invocation computes the sub-blocks (ty, tx) (acc below).
    let tx = tid % WX;
    let ty = tid / WX;

    // It stages pixel s of every chunk (q = qBegin + s, qBegin + s + BK, …) for the quads u,
    // u + NT/BK, … of dy's channels and of x̂'s columns. The pixel's image, row and column advance by
    // BK pixels a chunk: dn images, dr rows and dc columns, with carries.
    let s = tid % BK;
    let u = tid / BK;
    let dn = BK / hw;
    let dr = (BK % hw) / p.w;
    let dc = BK % p.w;
    var q = qBegin + s;
    var img = q / hw;
    var oy = (q % hw) / p.w;
    var ox = q % p.w;

    // acc<I><J>: sub-block of output channels co0 + 8·(SBM·ty + I) … +7 × columns
    // j0 + 8·(SBN·tx + J) … +7; bias<I>: Σ dy of output channels co0 + 8·(SBM·ty + I) + 4r … +3.
    var acc00: array<vec4<f32>, 16>;
    var acc01: array<vec4<f32>, 16>;
    var acc10: array<vec4<f32>, 16>;
    var acc11: array<vec4<f32>, 16>;
    var bias0: array<vec4<f32>, 2>;
    var bias1: array<vec4<f32>, 2>;
    for (var k0 = qBegin; k0 < qEnd; k0 = k0 + BK) {
        let inside = q < qEnd;
        // Stage dy at (img, oy, ox), 4 output channels per entry.
        let pos = oy * p.w + ox;
        let dyb = img * p.cout * hw + pos;
        for (var m = u; m < BM4; m = m + NT / BK) {
            let co = vec4<u32>(co0 + 4u * m) + vec4<u32>(0u, 1u, 2u, 3u);
            let ok = (co < vec4<u32>(p.cout)) & vec4<bool>(inside);
            let o = select(vec4<u32>(0u), dyb + co * hw, ok);
            Ds[s * BM4 + m] = select(vec4<f32>(0.0), vec4<f32>(DY[o.x], DY[o.y], DY[o.z], DY[o.w]), ok);
        }
        // Stage x̂: x at the column quad's channels, shifted by its tap.
        let xb = img * p.cin * hw;
        for (var j = u; j < BN4; j = j + NT / BK) {
            let tc = column(j0, 4u * j);
            let sh = shift(tc.x);
            let iy = i32(oy) + sh.x;
            let ix = i32(ox) + sh.y;
            let okp = inside && tc.x < kk && iy >= 0 && iy < i32(p.h) && ix >= 0 && ix < i32(p.w);
            let ci = vec4<u32>(tc.y) + vec4<u32>(0u, 1u, 2u, 3u);
            let ok = (ci < vec4<u32>(p.cin)) & vec4<bool>(okp);
            let o = select(vec4<u32>(0u), xb + ci * hw + u32(iy * i32(p.w) + ix), ok);
            Xs[s * BN4 + j] = select(vec4<f32>(0.0), vec4<f32>(X[o.x], X[o.y], X[o.z], X[o.w]), ok);
        }
        workgroupBarrier();
        if (tid < NC) {
            for (var t = 0u; t < BK; t = t + 1u) {
                let da = t * BM4 + 2u * SBM * ty;
                let xa = t * BN4 + 2u * SBN * tx;
                let a0 = Ds[da];
                let a1 = Ds[da + 1u];
                let b0 = Xs[xa];
                let b1 = Xs[xa + 1u];
                mma(&acc00, a0, a1, b0, b1);
                bias0[0] = bias0[0] + a0;
                bias0[1] = bias0[1] + a1;
                var b2 = vec4<f32>(0.0);
                var b3 = vec4<f32>(0.0);
                if (SBN == 2u) {
                    b2 = Xs[xa + 2u];
                    b3 = Xs[xa + 3u];
                    mma(&acc01, a0, a1, b2, b3);
                }
                if (SBM == 2u) {
                    let a2 = Ds[da + 2u];
                    let a3 = Ds[da + 3u];
                    mma(&acc10, a2, a3, b0, b1);
                    bias1[0] = bias1[0] + a2;
                    bias1[1] = bias1[1] + a3;
                    if (SBN == 2u) {
                        mma(&acc11, a2, a3, b2, b3);
                    }
                }
            }
        }
        workgroupBarrier();
        // Advance the staged pixel by BK.
        q = q + BK;
        ox = ox + dc;
        if (ox >= p.w) {
            ox = ox - p.w;
            oy = oy + 1u;
        }
        oy = oy + dr;
        if (oy >= p.h) {
            oy = oy - p.h;
            img = img + 1u;
        }
        img = img + dn;
    }
    if (tid >= NC) {
        return;
    }
    let co = co0 + 8u * SBM * ty;
    let jj = 8u * SBN * tx;
    store(&acc00, z, co, j0, jj);
    if (SBN == 2u) {
        store(&acc01, z, co, j0, jj + 8u);
    }
    if (SBM == 2u) {
        store(&acc10, z, co + 8u, j0, jj);
        if (SBN == 2u) {
            store(&acc11, z, co + 8u, j0, jj + 8u);
        }
    }
    if (wid.y == 0u && tx == 0u) {
        putBias(z, co, bias0[0], bias0[1]);
        if (SBM == 2u) {
            putBias(z, co + 8u, bias1[0], bias1[1]);
        }
    }
}
