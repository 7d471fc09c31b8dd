// f16 GEMM on cooperative matrices (tensor cores): y = x · Wᵀ with x (M, K) f16, W (N, K) f16,
// y (M, N) f32, accumulated in f32 in 16×16×16 tiles.
// One workgroup is one subgroup and owns a BM×64 block of y: 2×4 accumulator tiles (BM = 32) or
// 4×4 (BM = 64, ROWS64: fewer operand loads per multiply, more registers).
// Operands stream straight from storage: A tiles are row-major x rows (stride K); B = Wᵀ is
// column-major with stride K, so W needs no transpose. Needs M % BM == 0, N % 64 == 0,
// K % 16 == 0; the op falls back to the tiled kernel otherwise.
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
