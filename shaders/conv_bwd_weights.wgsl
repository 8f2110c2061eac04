// conv_bwd_weights.wgsl: the parameter gradients of conv.wgsl (k×k, k ∈ {1, 3}, padding k/2),
//   dW[co,ci,kh,kw] = Σ_{n,h,w} dy[n,co,h,w] · x[n,ci,h+kh−k/2,w+kw−k/2],   db[co] = Σ_{n,h,w} dy[n,co,h,w].
// One workgroup per (co, ci) pair makes that pair's k² weights (the first cout·cin workgroups; the
// next cout make db): each invocation walks a fixed strided share of the n·h·w positions, loads dy
// once per position and accumulates all k² taps, then k² fixed-shape trees in workgroup memory add
// the shares, so the result is deterministic (the same bits on every run of a device). One workgroup
// per weight instead re-read dy k² times and paid a reduction per weight: 9× the workgroups, and
// ~10× slower on lavapipe.
// Workgroups are numbered wid.y·nwg.x + wid.x so the dispatch can exceed 65535 per dimension.

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
@group(0) @binding(2) var<storage, read> X: array<f32>;
@group(0) @binding(3) var<storage, read_write> DW: array<f32>;
@group(0) @binding(4) var<storage, read_write> DB: array<f32>;

const WG: u32 = 64u;
const KK: u32 = 9u; // the most taps (k = 3)

var<workgroup> red: array<f32, 576>; // KK × WG

// row returns x[yy, ox−1 … ox+1] of the plane at xb, zero outside the image (the padding).
fn row(xb: u32, yy: i32, ox: u32) -> vec3<f32> {
    if (yy < 0 || yy >= i32(p.h)) {
        return vec3<f32>(0.0);
    }
    let b = xb + u32(yy) * p.w;
    var v = vec3<f32>(0.0, X[b + ox], 0.0);
    if (ox > 0u) {
        v.x = X[b + ox - 1u];
    }
    if (ox + 1u < p.w) {
        v.z = X[b + ox + 1u];
    }
    return v;
}

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>,
        @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) li: u32) {
    let g = wid.y * nwg.x + wid.x;
    let pairs = p.cout * p.cin;
    if (g >= pairs + p.cout) {
        return;
    }
    let hw = p.h * p.w;
    let total = p.n * hw;
    let kk = p.k * p.k;
    // The taps accumulate in registers: three rows of three for k = 3 (a dynamically indexed
    // private array measured slower on lavapipe), the centre of row 1 for k = 1 and the bias.
    var r0 = vec3<f32>(0.0);
    var r1 = vec3<f32>(0.0);
    var r2 = vec3<f32>(0.0);
    // Invocation li visits positions j = li, li + WG, … < n·h·w as (image, row, column), advanced
    // without integer division (x86 has no vector divide, and lavapipe runs invocations as SIMD
    // lanes): the stride WG is dn images, dy rows and dx columns.
    let dn = WG / hw;
    let dy = (WG % hw) / p.w;
    let dx = WG % p.w;
    var n = li / hw;
    var oy = (li % hw) / p.w;
    var ox = li % p.w;
    let co = select(g / p.cin, g - pairs, g >= pairs);
    let ci = g % p.cin;
    for (var j = li; j < total; j = j + WG) {
        let pos = oy * p.w + ox;
        let gy = DY[(n * p.cout + co) * hw + pos];
        if (g >= pairs) {
            r1.y = r1.y + gy;
        } else if (p.k == 1u) {
            r1.y = fma(gy, X[(n * p.cin + ci) * hw + pos], r1.y);
        } else {
            let xb = (n * p.cin + ci) * hw;
            r0 = fma(vec3<f32>(gy), row(xb, i32(oy) - 1, ox), r0);
            r1 = fma(vec3<f32>(gy), row(xb, i32(oy), ox), r1);
            r2 = fma(vec3<f32>(gy), row(xb, i32(oy) + 1, ox), r2);
        }
        ox = ox + dx;
        if (ox >= p.w) {
            ox = ox - p.w;
            oy = oy + 1u;
        }
        oy = oy + dy;
        if (oy >= p.h) {
            oy = oy - p.h;
            n = n + 1u;
        }
        n = n + dn;
    }
    var acc = array<f32, KK>(r0.x, r0.y, r0.z, r1.x, r1.y, r1.z, r2.x, r2.y, r2.z);
    if (p.k == 1u || g >= pairs) {
        acc[0] = r1.y; // the single tap (and the bias) goes to slot 0
    }
    for (var t = 0u; t < KK; t = t + 1u) {
        red[t * WG + li] = acc[t];
    }
    workgroupBarrier();
    for (var s = WG / 2u; s > 0u; s = s >> 1u) {
        if (li < s) {
            for (var t = 0u; t < KK; t = t + 1u) {
                red[t * WG + li] = red[t * WG + li] + red[t * WG + li + s];
            }
        }
        workgroupBarrier();
    }
    if (g < pairs) {
        if (li < kk) {
            DW[g * kk + li] = red[li * WG];
        }
    } else if (li == 0u) {
        DB[g - pairs] = red[0];
    }
}
