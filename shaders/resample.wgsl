// resample.wgsl: the U-Net's 2× resampling and its gradients, NCHW float32, over planes = n·c
// images of h×w (the forward input's size; h and w even for the pool). One invocation per output
// value; `mode` picks the map:
//   0 nearest 2× upsample:      y[p,2i+a,2j+b] = x[p,i,j]                 (y is 2h×2w)
//   1 its gradient:             dx[p,i,j] = Σ_{a,b∈{0,1}} dy[p,2i+a,2j+b]  (dx is h×w)
//   2 2×2 average pool:         y[p,i,j] = ¼ Σ_{a,b} x[p,2i+a,2j+b]       (y is h/2×w/2)
//   3 its gradient:             dx[p,i,j] = ¼ dy[p,i/2,j/2]                (dx is h×w)
// Workgroups are numbered wid.y·nwg.x + wid.x so the dispatch can exceed 65535 per dimension.

struct Params {
    planes: u32,
    h: u32,
    w: u32,
    mode: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> S: array<f32>;
@group(0) @binding(2) var<storage, read_write> D: array<f32>;

const WG: u32 = 256u;

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>,
        @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) li: u32) {
    let i = (wid.y * nwg.x + wid.x) * WG + li;
    // The output plane's size: the fine grid for modes 0 and 3, the coarse one for 1 and 2.
    var oh = p.h;
    var ow = p.w;
    if (p.mode == 0u) {
        oh = 2u * p.h;
        ow = 2u * p.w;
    } else if (p.mode == 2u) {
        oh = p.h / 2u;
        ow = p.w / 2u;
    }
    if (i >= p.planes * oh * ow) {
        return;
    }
    let ox = i % ow;
    let oy = (i / ow) % oh;
    let pl = i / (oh * ow);
    switch p.mode {
        case 0u: {
            D[i] = S[(pl * p.h + oy / 2u) * p.w + ox / 2u];
        }
        case 1u: {
            // dy is the fine 2h×2w grid.
            let w2 = 2u * p.w;
            let b = (pl * 2u * p.h + 2u * oy) * w2 + 2u * ox;
            D[i] = (S[b] + S[b + 1u]) + (S[b + w2] + S[b + w2 + 1u]);
        }
        case 2u: {
            let b = (pl * p.h + 2u * oy) * p.w + 2u * ox;
            D[i] = 0.25 * ((S[b] + S[b + 1u]) + (S[b + p.w] + S[b + p.w + 1u]));
        }
        default: {
            // dy is the coarse h/2×w/2 grid.
            let cw = p.w / 2u;
            D[i] = 0.25 * S[(pl * (p.h / 2u) + oy / 2u) * cw + ox / 2u];
        }
    }
}
