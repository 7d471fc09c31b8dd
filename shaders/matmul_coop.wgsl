// f16 GEMM on cooperative matrices (tensor cores): y = x · Wᵀ with x (M, K) f16, W (N, K) f16,
// y (M, N) f32, accumulated in f32 in 16×16×16 tiles.
// One workgroup is one subgroup and owns a BM×64 block of y: 2×4 accumulator tiles (BM = 32) or
// 4×4 (BM = 64, ROWS64: fewer operand loads per multiply, more registers).
// Operands stream straight from storage: A tiles are row-major x rows (stride K); B = Wᵀ is
// column-major with stride K, so W needs no transpose. Needs M % BM == 0, N % 64 == 0,
// K % 16 == 0; the op falls back to the tiled kernel otherwise.
#if !PROBE
struct Params { m: u32, n: u32, k: u32 }
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, {{ACT}}> x: array<f16>;
@group(0) @binding(2) var<storage, read> w: array<f16>;
@group(0) @binding(3) var<storage, read_write> y: array<f32>;

// naga 30's SPIR-V writer panics on coopStore with a run-time stride, so tiles go out through
// workgroup memory with the literal stride 16 and are copied to y by the invocations.
var<workgroup> stage: array<f32, 256>;

fn store_tile(c: coop_mat16x16<f32, C>, row0: u32, col0: u32, lane: u32) {
    coopStoreT(c, &stage[0], 16u);
    workgroupBarrier();
    for (var i = lane; i < 256u; i += {{WG}}u) {
        y[(row0 + i / 16u) * p.n + col0 + i % 16u] = stage[i];
    }
    workgroupBarrier();
}

@compute @workgroup_size({{WG}})
fn gemm_coop(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lane: u32) {
    let m0 = wid.y * {{BM}}u;
    let n0 = wid.x * 64u;
#if ROWS64
    var c00: coop_mat16x16<f32, C>;
    var c01: coop_mat16x16<f32, C>;
    var c02: coop_mat16x16<f32, C>;
    var c03: coop_mat16x16<f32, C>;
    var c10: coop_mat16x16<f32, C>;
    var c11: coop_mat16x16<f32, C>;
    var c12: coop_mat16x16<f32, C>;
    var c13: coop_mat16x16<f32, C>;
    var c20: coop_mat16x16<f32, C>;
    var c21: coop_mat16x16<f32, C>;
    var c22: coop_mat16x16<f32, C>;
    var c23: coop_mat16x16<f32, C>;
    var c30: coop_mat16x16<f32, C>;
    var c31: coop_mat16x16<f32, C>;
    var c32: coop_mat16x16<f32, C>;
    var c33: coop_mat16x16<f32, C>;
    for (var k = 0u; k < p.k; k += 16u) {
        let a0 = coopLoadT<coop_mat16x16<f16, A>>(&x[m0 * p.k + k], p.k);
        let a1 = coopLoadT<coop_mat16x16<f16, A>>(&x[(m0 + 16u) * p.k + k], p.k);
        let a2 = coopLoadT<coop_mat16x16<f16, A>>(&x[(m0 + 32u) * p.k + k], p.k);
        let a3 = coopLoadT<coop_mat16x16<f16, A>>(&x[(m0 + 48u) * p.k + k], p.k);
        let b0 = coopLoad<coop_mat16x16<f16, B>>(&w[n0 * p.k + k], p.k);
        let b1 = coopLoad<coop_mat16x16<f16, B>>(&w[(n0 + 16u) * p.k + k], p.k);
        let b2 = coopLoad<coop_mat16x16<f16, B>>(&w[(n0 + 32u) * p.k + k], p.k);
        let b3 = coopLoad<coop_mat16x16<f16, B>>(&w[(n0 + 48u) * p.k + k], p.k);
        c00 = coopMultiplyAdd(a0, b0, c00);
        c01 = coopMultiplyAdd(a0, b1, c01);
        c02 = coopMultiplyAdd(a0, b2, c02);
        c03 = coopMultiplyAdd(a0, b3, c03);
        c10 = coopMultiplyAdd(a1, b0, c10);
        c11 = coopMultiplyAdd(a1, b1, c11);
        c12 = coopMultiplyAdd(a1, b2, c12);
        c13 = coopMultiplyAdd(a1, b3, c13);
        c20 = coopMultiplyAdd(a2, b0, c20);
        c21 = coopMultiplyAdd(a2, b1, c21);
        c22 = coopMultiplyAdd(a2, b2, c22);
        c23 = coopMultiplyAdd(a2, b3, c23);
        c30 = coopMultiplyAdd(a3, b0, c30);
        c31 = coopMultiplyAdd(a3, b1, c31);
        c32 = coopMultiplyAdd(a3, b2, c32);
        c33 = coopMultiplyAdd(a3, b3, c33);
    }
    store_tile(c00, m0, n0, lane);
    store_tile(c01, m0, n0 + 16u, lane);
    store_tile(c02, m0, n0 + 32u, lane);
    store_tile(c03, m0, n0 + 48u, lane);
    store_tile(c10, m0 + 16u, n0, lane);
    store_tile(c11, m0 + 16u, n0 + 16u, lane);
    store_tile(c12, m0 + 16u, n0 + 32u, lane);
    store_tile(c13, m0 + 16u, n0 + 48u, lane);
    store_tile(c20, m0 + 32u, n0, lane);
    store_tile(c21, m0 + 32u, n0 + 16u, lane);
    store_tile(c22, m0 + 32u, n0 + 32u, lane);
    store_tile(c23, m0 + 32u, n0 + 48u, lane);
    store_tile(c30, m0 + 48u, n0, lane);
    store_tile(c31, m0 + 48u, n0 + 16u, lane);
    store_tile(c32, m0 + 48u, n0 + 32u, lane);
    store_tile(c33, m0 + 48u, n0 + 48u, lane);
#else
    var c00: coop_mat16x16<f32, C>;
    var c01: coop_mat16x16<f32, C>;
    var c02: coop_mat16x16<f32, C>;
    var c03: coop_mat16x16<f32, C>;
    var c10: coop_mat16x16<f32, C>;
    var c11: coop_mat16x16<f32, C>;
    var c12: coop_mat16x16<f32, C>;
    var c13: coop_mat16x16<f32, C>;
    for (var k = 0u; k < p.k; k += 16u) {
        let a0 = coopLoadT<coop_mat16x16<f16, A>>(&x[m0 * p.k + k], p.k);
        let a1 = coopLoadT<coop_mat16x16<f16, A>>(&x[(m0 + 16u) * p.k + k], p.k);
        let b0 = coopLoad<coop_mat16x16<f16, B>>(&w[n0 * p.k + k], p.k);
        let b1 = coopLoad<coop_mat16x16<f16, B>>(&w[(n0 + 16u) * p.k + k], p.k);
        let b2 = coopLoad<coop_mat16x16<f16, B>>(&w[(n0 + 32u) * p.k + k], p.k);
        let b3 = coopLoad<coop_mat16x16<f16, B>>(&w[(n0 + 48u) * p.k + k], p.k);
        c00 = coopMultiplyAdd(a0, b0, c00);
        c01 = coopMultiplyAdd(a0, b1, c01);
        c02 = coopMultiplyAdd(a0, b2, c02);
        c03 = coopMultiplyAdd(a0, b3, c03);
        c10 = coopMultiplyAdd(a1, b0, c10);
        c11 = coopMultiplyAdd(a1, b1, c11);
        c12 = coopMultiplyAdd(a1, b2, c12);
        c13 = coopMultiplyAdd(a1, b3, c13);
    }
    store_tile(c00, m0, n0, lane);
    store_tile(c01, m0, n0 + 16u, lane);
    store_tile(c02, m0, n0 + 32u, lane);
    store_tile(c03, m0, n0 + 48u, lane);
    store_tile(c10, m0 + 16u, n0, lane);
    store_tile(c11, m0 + 16u, n0 + 16u, lane);
    store_tile(c12, m0 + 16u, n0 + 32u, lane);
    store_tile(c13, m0 + 16u, n0 + 48u, lane);
#endif
}
#endif

#if PROBE
// Bench probe, not a GEMM: the rate of 16×16×16 f16 multiply-adds through cooperative matrices,
// by where the operands come from. Four subgroups per workgroup; each keeps four accumulators
// and per step feeds them from one A and four B fragments (the SSD chunk scan's pattern):
//   REGS: loaded once, before the loop (the multiply-add rate alone);
//   WG: from workgroup memory each step;
//   WG22: from workgroup memory, two A and two B per step (2 × 2 blocking, fewer loads);
//   STORAGE: from a 64 × 64 block in storage each step (cache-resident, as in the direct scan).
// Workgroup memory holds the block in rows of STRIDE halves (64, or padded to 72 so that the
// eight rows a fragment load touches at once fall in different banks); B fragments load
// row-major (coopLoadT) or column-major (coopLoad) as LOADB says.
struct Params { iters: u32, pad0: u32, pad1: u32, pad2: u32 }
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f16>; // 64 × 64
@group(0) @binding(2) var<storage, read_write> y: array<f32>; // one value per workgroup

var<workgroup> ops: array<f16, {{STRIDE}} * 64>; // rows of STRIDE (64, or padded)
const S: u32 = {{STRIDE}}u;
var<workgroup> out: array<f32, 1024>;

@compute @workgroup_size(128)
fn coop_probe(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let band = lid / 32u;
    for (var i = lid; i < 4096u; i += 128u) { ops[(i / 64u) * S + i % 64u] = x[i]; }
    workgroupBarrier();
    var c0: coop_mat16x16<f32, C>;
    var c1: coop_mat16x16<f32, C>;
    var c2: coop_mat16x16<f32, C>;
    var c3: coop_mat16x16<f32, C>;
#if REGS
    let a = coopLoadT<coop_mat16x16<f16, A>>(&ops[band * 16u * S], S);
    let b0 = coopLoadT<coop_mat16x16<f16, B>>(&ops[0], S);
    let b1 = coopLoadT<coop_mat16x16<f16, B>>(&ops[16], S);
    let b2 = coopLoadT<coop_mat16x16<f16, B>>(&ops[32], S);
    let b3 = coopLoadT<coop_mat16x16<f16, B>>(&ops[48], S);
    for (var it = 0u; it < p.iters; it++) {
        c0 = coopMultiplyAdd(a, b0, c0);
        c1 = coopMultiplyAdd(a, b1, c1);
        c2 = coopMultiplyAdd(a, b2, c2);
        c3 = coopMultiplyAdd(a, b3, c3);
    }
#endif
#if WG
    for (var it = 0u; it < p.iters; it++) {
        let k = (it % 4u) * 16u;
        let a = coopLoadT<coop_mat16x16<f16, A>>(&ops[band * 16u * S + k], S);
        c0 = coopMultiplyAdd(a, {{LOADB}}<coop_mat16x16<f16, B>>(&ops[k * S], S), c0);
        c1 = coopMultiplyAdd(a, {{LOADB}}<coop_mat16x16<f16, B>>(&ops[k * S + 16u], S), c1);
        c2 = coopMultiplyAdd(a, {{LOADB}}<coop_mat16x16<f16, B>>(&ops[k * S + 32u], S), c2);
        c3 = coopMultiplyAdd(a, {{LOADB}}<coop_mat16x16<f16, B>>(&ops[k * S + 48u], S), c3);
    }
#endif
#if WG22
    for (var it = 0u; it < p.iters; it++) {
        let k = (it % 4u) * 16u;
        let a0 = coopLoadT<coop_mat16x16<f16, A>>(&ops[(band % 2u) * 32u * S + k], S);
        let a1 = coopLoadT<coop_mat16x16<f16, A>>(&ops[(band % 2u) * 32u * S + 16u * S + k], S);
        let b0 = {{LOADB}}<coop_mat16x16<f16, B>>(&ops[k * S + (band / 2u) * 32u], S);
        let b1 = {{LOADB}}<coop_mat16x16<f16, B>>(&ops[k * S + (band / 2u) * 32u + 16u], S);
        c0 = coopMultiplyAdd(a0, b0, c0);
        c1 = coopMultiplyAdd(a0, b1, c1);
        c2 = coopMultiplyAdd(a1, b0, c2);
        c3 = coopMultiplyAdd(a1, b1, c3);
    }
#endif
#if STORAGE
    for (var it = 0u; it < p.iters; it++) {
        let k = (it % 4u) * 16u;
        let a = coopLoadT<coop_mat16x16<f16, A>>(&x[band * 1024u + k], 64u);
        c0 = coopMultiplyAdd(a, coopLoadT<coop_mat16x16<f16, B>>(&x[k * 64u], 64u), c0);
        c1 = coopMultiplyAdd(a, coopLoadT<coop_mat16x16<f16, B>>(&x[k * 64u + 16u], 64u), c1);
        c2 = coopMultiplyAdd(a, coopLoadT<coop_mat16x16<f16, B>>(&x[k * 64u + 32u], 64u), c2);
        c3 = coopMultiplyAdd(a, coopLoadT<coop_mat16x16<f16, B>>(&x[k * 64u + 48u], 64u), c3);
    }
#endif
    coopStoreT(c0 + c1 + c2 + c3, &out[band * 256u], 16u);
    workgroupBarrier();
    if (lid == 0u) {
        y[wid.x + wid.y * 65535u] = out[0] + out[256] + out[512] + out[768];
    }
}
#endif
