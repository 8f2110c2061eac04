// conv3x3_bwd_weights.wgsl: the parameter gradients of conv3x3.wgsl,
//   dW[co,ci,kh,kw] = Σ_{n,h,w} dy[n,co,h,w] · x[n,ci,h+kh−1,w+kw−1],   db[co] = Σ_{n,h,w} dy[n,co,h,w].
// One workgroup per output value (the first cout·cin·9 workgroups make dW, the next cout make db).
// Each invocation sums a fixed strided share of the n·h·w terms, then a fixed-shape tree in workgroup
// memory adds the shares, so the result is deterministic (the same bits on every run of a device).
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
@group(0) @binding(2) var<storage, read> X: array<f32>;
@group(0) @binding(3) var<storage, read_write> DW: array<f32>;
@group(0) @binding(4) var<storage, read_write> DB: array<f32>;

const WG: u32 = 256u;

var<workgroup> red: array<f32, WG>;

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>,
        @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) li: u32) {
    let g = wid.y * nwg.x + wid.x;
    let nw = p.cout * p.cin * 9u;
    if (g >= nw + p.cout) {
        return;
    }
    let hw = p.h * p.w;
    let total = p.n * hw;
    var acc = 0.0;
    if (g < nw) {
        let co = g / (p.cin * 9u);
        let ci = (g / 9u) % p.cin;
        let kh = (g % 9u) / 3u;
        let kw = g % 3u;
        for (var j = li; j < total; j = j + WG) {
            let n = j / hw;
            let pos = j - n * hw;
            let oy = pos / p.w;
            let ox = pos - oy * p.w;
            let yy = i32(oy) + i32(kh) - 1;
            let xx = i32(ox) + i32(kw) - 1;
            if (yy >= 0 && yy < i32(p.h) && xx >= 0 && xx < i32(p.w)) {
                acc = fma(DY[(n * p.cout + co) * hw + pos], X[(n * p.cin + ci) * hw + u32(yy) * p.w + u32(xx)], acc);
            }
        }
    } else {
        let co = g - nw;
        for (var j = li; j < total; j = j + WG) {
            let n = j / hw;
            acc = acc + DY[(n * p.cout + co) * hw + j - n * hw];
        }
    }
    red[li] = acc;
    workgroupBarrier();
    for (var s = WG / 2u; s > 0u; s = s >> 1u) {
        if (li < s) {
            red[li] = red[li] + red[li + s];
        }
        workgroupBarrier();
    }
    if (li == 0u) {
        if (g < nw) {
            DW[g] = red[0];
        } else {
            DB[g - nw] = red[0];
        }
    }
}
