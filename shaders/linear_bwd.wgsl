// linear_bwd.wgsl: the matrix products of a linear layer's backward pass (asbm.md §6.1 network,
// y = x·W + b row-major): C = A·B where A and B are read through strides, so one kernel serves
//   dX = dY·Wᵀ  (A = dY, B(l, j) = W[j][l]) with the SiLU derivative of the previous layer fused:
//                dZ_prev = (dY·Wᵀ) ⊙ silu'(Z_prev), silu'(z) = σ(z)(1 + z(1 − σ(z))), and
//   dW = Xᵀ·dY  (A(i, l) = X[l][i], B = dY).
// C is n×m row-major, the reduction runs over k. The tiling is linear.wgsl's: a workgroup of
// (BN/TN)×(BM/TM) invocations computes a BM×BN block of C, staging BM×BK of A and BK×BN of B per step
// along k; the constants are rewritten by linear_bwd.go. Every output is accumulated by one invocation
// in a fixed order along k, so results are deterministic run to run.
//
// Row tiles are numbered wid.y + wid.z·nwg.y so the dispatch can exceed 65535 tiles per dimension.

struct Params {
    n: u32,   // rows of C
    k: u32,   // reduction length
    m: u32,   // columns of C
    act: u32, // 1: multiply by silu'(Z[r·m + c])
    as0: u32, // A(i, l) = A[i·as0 + l·as1]
    as1: u32,
    bs0: u32, // B(l, j) = B[l·bs0 + j·bs1]
    bs1: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> A: array<f32>;
@group(0) @binding(2) var<storage, read> B: array<f32>;
@group(0) @binding(3) var<storage, read> Z: array<f32>;
@group(0) @binding(4) var<storage, read_write> C: array<f32>;

const BM: u32 = 64u;
const BN: u32 = 64u;
const BK: u32 = 16u;
const TM: u32 = 4u;
const TN: u32 = 4u;
const WX: u32 = 16u;
const WY: u32 = 16u;
const NT: u32 = 256u;
const A_LEN: u32 = 1024u;
const B_LEN: u32 = 1024u;
const ACC: u32 = 16u;

var<workgroup> As: array<f32, A_LEN>; // As[kk * BM + r]
var<workgroup> Bs: array<f32, B_LEN>; // Bs[kk * BN + c]

@compute @workgroup_size(WX, WY, 1)
fn main(@builtin(local_invocation_id) lid: vec3<u32>,
        @builtin(workgroup_id) wid: vec3<u32>,
        @builtin(num_workgroups) nwg: vec3<u32>) {
    let row0 = (wid.z * nwg.y + wid.y) * BM;
    let col0 = wid.x * BN;
    let tid = lid.y * WX + lid.x;
    var acc: array<f32, ACC>;
    for (var k0 = 0u; k0 < p.k; k0 = k0 + BK) {
        for (var i = tid; i < BM * BK; i = i + NT) {
            let r = i / BK;
            let c = i - r * BK;
            let gr = row0 + r;
            let gc = k0 + c;
            var v = 0.0;
            if (gr < p.n && gc < p.k) {
                v = A[gr * p.as0 + gc * p.as1];
            }
            As[c * BM + r] = v;
        }
        for (var i = tid; i < BK * BN; i = i + NT) {
            let r = i / BN;
            let c = i - r * BN;
            let gr = k0 + r;
            let gc = col0 + c;
            var v = 0.0;
            if (gr < p.k && gc < p.m) {
                v = B[gr * p.bs0 + gc * p.bs1];
            }
            Bs[r * BN + c] = v;
        }
        workgroupBarrier();
        for (var kk = 0u; kk < BK; kk = kk + 1u) {
            var a: array<f32, TM>;
            var b: array<f32, TN>;
            for (var i = 0u; i < TM; i = i + 1u) {
                a[i] = As[kk * BM + lid.y + i * WY];
            }
            for (var j = 0u; j < TN; j = j + 1u) {
                b[j] = Bs[kk * BN + lid.x + j * WX];
            }
            for (var i = 0u; i < TM; i = i + 1u) {
                for (var j = 0u; j < TN; j = j + 1u) {
                    acc[i * TN + j] = fma(a[i], b[j], acc[i * TN + j]);
                }
            }
        }
        workgroupBarrier();
    }
    for (var i = 0u; i < TM; i = i + 1u) {
        let r = row0 + lid.y + i * WY;
        if (r >= p.n) {
            break;
        }
        for (var j = 0u; j < TN; j = j + 1u) {
            let c = col0 + lid.x + j * WX;
            if (c < p.m) {
                var v = acc[i * TN + j];
                if (p.act == 1u) {
                    let z = Z[r * p.m + c];
                    let s = 1.0 / (1.0 + exp(-z));
                    v = v * s * (1.0 + z * (1.0 - s));
                }
                C[r * p.m + c] = v;
            }
        }
    }
}
