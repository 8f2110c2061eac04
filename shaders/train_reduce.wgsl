// train_reduce.wgsl: a deterministic single-workgroup reduction s = Σ_i x_i² (square = 1) or Σ_i x_i
// (square = 0) over n values: each invocation sums i = li, li+WG, … in order, then a fixed tree in
// workgroup memory. The result goes to out[slot]:
//   post = 0: scale·s (the loss mean, or one parameter's share of the squared gradient norm);
//   post = 1: the global-norm clip factor min(1, clip/(√s + 1e-6)) (torch's clip_grad_norm_, as
//             backend/cpu), or 1 when clip ≤ 0.

struct Params {
    n: u32,
    slot: u32,
    square: u32,
    post: u32,
    scale: f32,
    clip: f32,
    _pad0: u32,
    _pad1: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;

const WG: u32 = 256u;

var<workgroup> part: array<f32, WG>;

@compute @workgroup_size(WG)
fn main(@builtin(local_invocation_index) li: u32) {
    var s = 0.0;
    for (var i = li; i < p.n; i = i + WG) {
        let v = x[i];
        if (p.square == 1u) {
            s = fma(v, v, s);
        } else {
            s = s + v;
        }
    }
    part[li] = s;
    workgroupBarrier();
    for (var h = WG / 2u; h > 0u; h = h / 2u) {
        if (li < h) {
            part[li] = part[li] + part[li + h];
        }
        workgroupBarrier();
    }
    if (li == 0u) {
        let t = part[0];
        if (p.post == 1u) {
            var c = 1.0;
            if (p.clip > 0.0) {
                c = min(1.0, p.clip / (sqrt(t) + 1e-6));
            }
            out[p.slot] = c;
        } else {
            out[p.slot] = p.scale * t;
        }
    }
}
