// linear.wgsl: Y = X·W + b, optionally followed by SiLU(v) = v·sigmoid(v) (asbm.md §6.1;
// shaders/mlp.go linear). X is n×k, W is k×m, b is m, Y is n×m, all row-major.
//
// Tiled: a workgroup of (BN/TN)×(BM/TM) invocations computes a BM×BN block of Y, staging BM×BK of X
// and BK×BN of W in workgroup memory per step along k; each invocation accumulates TM×TN outputs,
// strided by the workgroup size so neighbouring invocations touch neighbouring memory. The tile
// constants below are rewritten by the Go launcher (linear.go) to build a few variants.
//
// Row tiles are numbered wid.y + wid.z·nwg.y so the dispatch can exceed 65535 tiles per dimension.
//
// W (Wt) is read only through wt(), as f32, and stored as WT: the launcher (weightf16.go) derives the
// f16-weight variant by rewriting the two lines marked "f16 variant" (W then holds halves packed two
// to a u32); X, b, Y and the accumulation stay f32.

struct Params {
    n: u32,
    k: u32,
    m: u32,
    act: u32, // 1: apply SiLU
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> X: array<f32>;
@group(0) @binding(2) var<storage, read> Wt: array<WT>;
@group(0) @binding(3) var<storage, read> B: array<f32>;
@group(0) @binding(4) var<storage, read_write> Y: array<f32>;

alias WT = f32; // f16 variant: u32
// wt returns W[i] as f32.
fn wt(i: u32) -> f32 { return f32(Wt[i]); } // f16 variant: unpack a half

const BM: u32 = 64u;
const BN: u32 = 64u;
const BK: u32 = 16u;
const TM: u32 = 4u;
const TN: u32 = 4u;
// Derived: WX = BN/TN, WY = BM/TM, NT = WX·WY, A_LEN = BK·BM, B_LEN = BK·BN, ACC = TM·TN. Written
// out (and rewritten by the launcher) because older WGSL front ends (naga in wgpu-native) accept
// only literals or plain constants as array sizes and workgroup sizes.
const WX: u32 = 16u;
const WY: u32 = 16u;
const NT: u32 = 256u;
const A_LEN: u32 = 1024u;
const B_LEN: u32 = 1024u;
const ACC: u32 = 16u;

var<workgroup> As: array<f32, A_LEN>; // As[kk * BM + r]: X tile, transposed
var<workgroup> Bs: array<f32, B_LEN>; // Bs[kk * BN + c]: W tile

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
                v = X[gr * p.k + gc];
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
                v = wt(gr * p.m + gc);
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
                var v = acc[i * TN + j] + B[c];
                if (p.act == 1u) {
                    v = v / (1.0 + exp(-v));
                }
                Y[r * p.m + c] = v;
            }
        }
    }
}
