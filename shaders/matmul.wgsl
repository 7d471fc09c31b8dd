// y = x · Wᵀ + b with HF `Linear` layout: x (M, K) f32, W (N, K), b (N), y (M, N) f32.
// Accumulation is always f32. The weight storage mode is one of:
//   W_F32      array<f32>             (VEC: array<vec4<f32>>, K % 4 == 0)
//   W_F16P     f16 packed in u32 words, read with unpack2x16float: runs on every adapter
//              (VEC: array<vec4<u32>>, 8 halves per load, K % 8 == 0)
//   W_F16N     native f16 storage (needs SHADER_F16; VEC: array<vec4<f16>>, K % 4 == 0)
// flags (constants from Rust's `matmul_flags`): HAS_BIAS a bias is bound; ACCUMULATE
// y += x·Wᵀ + b (a residual add fused into the store, each element read and written by the
// same invocation); CONV_BIAS (IN_STEP) a conv bias is bound.
// xs: the row stride of x in elements (GEMV; = k unless x rows are longer than K, as when a
// GEMV reads the first K columns of a wider activation).
//
// IN_STEP (GEMV only) fuses a decode step's input side of a Mamba block into the in_proj GEMV:
// the x row is RMS-normalised with weight `norm_w` first (its sum of squares is reduced in the
// same loop as the dot products: y = rsqrt(mean(x²) + eps) · W·(g ⊙ x)), and output columns
// [conv_lo, conv_hi) go through a depthwise causal conv step + silu with a rolling state
// [M, C, W − 1] (one token per sequence: x row m is sequence m), each column owned by one
// invocation, so the state update needs no synchronisation.
#if IN_STEP
struct Params { m: u32, n: u32, k: u32, flags: u32, xs: u32, conv_lo: u32, conv_hi: u32, width: u32, eps: f32 }
#else
struct Params { m: u32, n: u32, k: u32, flags: u32, xs: u32 }
#endif
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, {{ACT}}> x: array<{{XTYPE}}>;
@group(0) @binding(2) var<storage, read> w: array<{{WTYPE}}>;
// Without a bias the op binds a 1-element placeholder and clears flag bit 0.
@group(0) @binding(3) var<storage, read> bias: array<f32>;
@group(0) @binding(4) var<storage, read_write> y: array<f32>;
#if IN_STEP
@group(0) @binding(5) var<storage, read> norm_w: array<{{XTYPE}}>;
@group(0) @binding(6) var<storage, read> conv_w: array<f32>;
@group(0) @binding(7) var<storage, read> conv_b: array<f32>;
@group(0) @binding(8) var<storage, read_write> conv_state: array<f32>;
#endif

fn bias_at(n: u32) -> f32 {
    return select(0.0, bias[min(n, arrayLength(&bias) - 1u)], (p.flags & HAS_BIAS) != 0u);
}

// Stores output element i (column n): the sum, the bias, and the old value when accumulating.
fn store(i: u32, n: u32, v: f32) {
    var r = v + bias_at(n);
    if ((p.flags & ACCUMULATE) != 0u) { r += y[i]; }
#if IN_STEP
    if (n >= p.conv_lo && n < p.conv_hi) { r = conv_step(i / p.n, n - p.conv_lo, r); }
#endif
    y[i] = r;
}

#if IN_STEP
// Conv step of channel c of sequence m on the new input v: silu(b + Σ w·[history, v]); the
// state (oldest first) rolls by one.
fn conv_step(m: u32, c: u32, v: f32) -> f32 {
    let wd = p.width;
    let sb = (m * (p.conv_hi - p.conv_lo) + c) * (wd - 1u);
    var acc = conv_w[c * wd + wd - 1u] * v;
    for (var k = 0u; k + 1u < wd; k++) {
        let h = conv_state[sb + k];
        acc += conv_w[c * wd + k] * h;
        if (k > 0u) { conv_state[sb + k - 1u] = h; }
    }
    conv_state[sb + wd - 2u] = v;
    if ((p.flags & CONV_BIAS) != 0u) { acc += conv_b[c]; }
    return acc / (1.0 + exp(-acc));
}
#endif

#if !VEC
// Scalar weight load of element e (flat index into W).
fn wload(e: u32) -> f32 {
#if W_F32
    return w[e];
#endif
#if W_F16P
    return unpack2x16float(w[e >> 1u])[e & 1u];
#endif
#if W_F16N
    return f32(w[e]);
#endif
}
#endif

#if GEMV
// One workgroup computes ROWS outputs of one x row (workgroup z = row of x). Each invocation
// strides over K in chunks of CHUNK elements; partial sums are reduced across the workgroup.
const ROWS: u32 = 4u; // fixed: the kernel names its four accumulators
const WG: u32 = {{WG}}u;
const CHUNK: u32 = {{CHUNK}}u;
var<workgroup> red: array<f32, {{RED}}>;

// Element i of the x row starting at xb, times the norm weight under IN_STEP.
fn xat(xb: u32, i: u32) -> {{XTYPE}} {
#if IN_STEP
    return x[xb + i] * norm_w[i];
#else
    return x[xb + i];
#endif
}

// Dot product of weight chunk j (from chunk base wb) with the matching x chunk (base xb).
fn partial(wb: u32, xb: u32, j: u32) -> f32 {
#if VEC
#if W_F32
    return dot(w[wb + j], xat(xb, j));
#endif
#if W_F16N
    return dot(vec4<f32>(w[wb + j]), xat(xb, j));
#endif
#if W_F16P
    let q = w[wb + j];
    let lo = vec4<f32>(unpack2x16float(q.x), unpack2x16float(q.y));
    let hi = vec4<f32>(unpack2x16float(q.z), unpack2x16float(q.w));
    return dot(lo, xat(xb, 2u * j)) + dot(hi, xat(xb, 2u * j + 1u));
#endif
#else
    return wload(wb + j) * xat(xb, j);
#endif
}

#if IN_STEP
// Sum of squares of x chunk j (before the norm weight), for the RMS norm.
fn square(xb: u32, j: u32) -> f32 {
#if VEC
#if W_F16P
    let a = x[xb + 2u * j];
    let b = x[xb + 2u * j + 1u];
    return dot(a, a) + dot(b, b);
#else
    let a = x[xb + j];
    return dot(a, a);
#endif
#else
    let a = x[xb + j];
    return a * a;
#endif
}
#endif

@compute @workgroup_size({{WG}})
fn gemv(
    @builtin(local_invocation_index) lid: u32,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
#if SUBGROUPS
    @builtin(subgroup_invocation_id) sg_lane: u32,
    @builtin(subgroup_id) sg_id: u32,
    @builtin(num_subgroups) sg_count: u32,
#endif
) {
    let n0 = (wid.x + wid.y * nwg.x) * ROWS;
    let m = wid.z;
    let kc = p.k / CHUNK;                 // chunks per row (exact for VEC variants)
    let xb = m * p.xs / {{XPER}}u;        // x row base in x-array elements
    // Four named accumulators (ROWS == 4): arrays indexed in loops can land in local memory.
    var acc0 = 0.0;
    var acc1 = 0.0;
    var acc2 = 0.0;
    var acc3 = 0.0;
    var sumsq = 0.0; // IN_STEP only
    let last = p.n - 1u; // rows past N are clamped: computed, never stored
    let w0 = min(n0, last) * kc;
    let w1 = min(n0 + 1u, last) * kc;
    let w2 = min(n0 + 2u, last) * kc;
    let w3 = min(n0 + 3u, last) * kc;
    for (var j = lid; j < kc; j += WG) {
        acc0 += partial(w0, xb, j);
        acc1 += partial(w1, xb, j);
        acc2 += partial(w2, xb, j);
        acc3 += partial(w3, xb, j);
#if IN_STEP
        sumsq += square(xb, j);
#endif
    }
#if SUBGROUPS
    let s0 = subgroupAdd(acc0);
    let s1 = subgroupAdd(acc1);
    let s2 = subgroupAdd(acc2);
    let s3 = subgroupAdd(acc3);
#if IN_STEP
    let s4 = subgroupAdd(sumsq);
#endif
    if (sg_lane == 0u) {
        red[sg_id] = s0;
        red[WG + sg_id] = s1;
        red[2u * WG + sg_id] = s2;
        red[3u * WG + sg_id] = s3;
#if IN_STEP
        red[4u * WG + sg_id] = s4;
#endif
    }
    workgroupBarrier();
    if (lid < ROWS && n0 + lid < p.n) {
        var s = 0.0;
        for (var i = 0u; i < sg_count; i++) { s += red[lid * WG + i]; }
#if IN_STEP
        var ss = 0.0;
        for (var i = 0u; i < sg_count; i++) { ss += red[4u * WG + i]; }
        s *= inverseSqrt(ss / f32(p.k) + p.eps);
#endif
        store(m * p.n + n0 + lid, n0 + lid, s);
    }
#else
    red[lid] = acc0;
    red[WG + lid] = acc1;
    red[2u * WG + lid] = acc2;
    red[3u * WG + lid] = acc3;
#if IN_STEP
    red[4u * WG + lid] = sumsq;
#endif
    workgroupBarrier();
    for (var s = WG / 2u; s > 0u; s >>= 1u) {
        if (lid < s) {
            for (var r = 0u; r < {{REDROWS}}u; r++) { red[r * WG + lid] += red[r * WG + lid + s]; }
        }
        workgroupBarrier();
    }
    if (lid < ROWS && n0 + lid < p.n) {
        var s = red[lid * WG];
#if IN_STEP
        s *= inverseSqrt(red[4u * WG] / f32(p.k) + p.eps);
#endif
        store(m * p.n + n0 + lid, n0 + lid, s);
    }
#endif
}
#endif

#if SKINNY
// Batched decode (M from 9 to a few hundred rows): a workgroup computes 4 output columns for a
// block of 8 x rows, reading each weight chunk once for the 8 rows (8 named vec4 accumulators,
// one per row, each holding the 4 columns). Workgroups of the same columns are adjacent in
// dispatch order, so after the first read the weights come from L2. Vector loads only (K and
// the x row stride multiples of 4; W f32 or native f16), subgroups for the reduction.
const WG: u32 = {{WG}}u;
const MB: u32 = 8u; // fixed: the kernel names its eight accumulators
var<workgroup> redv: array<vec4<f32>, {{REDV}}>;

fn wvec(e: u32) -> vec4<f32> {
#if W_F32
    return w[e];
#else
    return vec4<f32>(w[e]);
#endif
}

// Row r's x chunk j dotted with the four columns' weight chunks (rows past M read row M − 1).
fn dot4(r: u32, j: u32, w0: vec4<f32>, w1: vec4<f32>, w2: vec4<f32>, w3: vec4<f32>) -> vec4<f32> {
    let xv = x[min(r, p.m - 1u) * (p.xs / 4u) + j];
    return vec4<f32>(dot(w0, xv), dot(w1, xv), dot(w2, xv), dot(w3, xv));
}

@compute @workgroup_size({{WG}})
fn gemv_skinny(
    @builtin(local_invocation_index) lid: u32,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(subgroup_invocation_id) sg_lane: u32,
    @builtin(subgroup_id) sg_id: u32,
    @builtin(num_subgroups) sg_count: u32,
) {
    let blocks = (p.m + MB - 1u) / MB;
    let idx = wid.x + wid.y * nwg.x;
    let m0 = (idx % blocks) * MB;
    let n0 = (idx / blocks) * 4u;
    if (n0 >= p.n) { return; } // workgroup-uniform
    let kc = p.k / 4u;
    let last = p.n - 1u;
    let w0 = min(n0, last) * kc;
    let w1 = min(n0 + 1u, last) * kc;
    let w2 = min(n0 + 2u, last) * kc;
    let w3 = min(n0 + 3u, last) * kc;
    var a0 = vec4<f32>(0.0); var a1 = vec4<f32>(0.0); var a2 = vec4<f32>(0.0); var a3 = vec4<f32>(0.0);
    var a4 = vec4<f32>(0.0); var a5 = vec4<f32>(0.0); var a6 = vec4<f32>(0.0); var a7 = vec4<f32>(0.0);
    for (var j = lid; j < kc; j += WG) {
        let q0 = wvec(w0 + j);
        let q1 = wvec(w1 + j);
        let q2 = wvec(w2 + j);
        let q3 = wvec(w3 + j);
        a0 += dot4(m0, j, q0, q1, q2, q3);
        a1 += dot4(m0 + 1u, j, q0, q1, q2, q3);
        a2 += dot4(m0 + 2u, j, q0, q1, q2, q3);
        a3 += dot4(m0 + 3u, j, q0, q1, q2, q3);
        a4 += dot4(m0 + 4u, j, q0, q1, q2, q3);
        a5 += dot4(m0 + 5u, j, q0, q1, q2, q3);
        a6 += dot4(m0 + 6u, j, q0, q1, q2, q3);
        a7 += dot4(m0 + 7u, j, q0, q1, q2, q3);
    }
    let s0 = subgroupAdd(a0); let s1 = subgroupAdd(a1); let s2 = subgroupAdd(a2); let s3 = subgroupAdd(a3);
    let s4 = subgroupAdd(a4); let s5 = subgroupAdd(a5); let s6 = subgroupAdd(a6); let s7 = subgroupAdd(a7);
    if (sg_lane == 0u) {
        let b = sg_id * MB;
        redv[b] = s0; redv[b + 1u] = s1; redv[b + 2u] = s2; redv[b + 3u] = s3;
        redv[b + 4u] = s4; redv[b + 5u] = s5; redv[b + 6u] = s6; redv[b + 7u] = s7;
    }
    workgroupBarrier();
    // Invocation (r, c) of the first 32 sums row m0 + r, column n0 + c over the subgroups.
    let r = lid / 4u;
    let c = lid % 4u;
    if (lid < MB * 4u && m0 + r < p.m && n0 + c < p.n) {
        var s = 0.0;
        for (var i = 0u; i < sg_count; i++) { s += redv[i * MB + r][c]; }
        store((m0 + r) * p.n + n0 + c, n0 + c, s);
    }
}
#endif

#if GEMM
// Tiled GEMM. A workgroup computes a BM×BN tile of y with BM/8 × BN/8 invocations, each owning
// an 8×8 block split into two 4-row and two 4-column halves (rows ty*4.. and BM/2+ty*4..), so
// the vec4 reads from workgroup memory by neighbouring invocations hit distinct banks.
// Tiles are staged k-major (As[k][m]) with 4 floats of padding per row against bank conflicts.
// BK = 4·NT/BM, so each invocation moves exactly one 4-wide k-slice of A and one of B per tile;
// the next tile's slices are loaded into registers while the current tile is multiplied.
// VEC variants load those slices with one vector load (K % 4 == 0); others use 4 scalar loads.
const BM: u32 = {{BM}}u;
const BN: u32 = {{BN}}u;
const BK: u32 = {{BK}}u;
const NT: u32 = {{NT}}u;
const SA: u32 = BM + 4u;  // padded row strides
const SB: u32 = BN + 4u;
var<workgroup> As: array<vec4<f32>, {{AS4}}>;
var<workgroup> Bs: array<vec4<f32>, {{BS4}}>;

// x[row, 4·kq .. 4·kq+4), zero outside x.
fn load_a(row: u32, kq: u32) -> vec4<f32> {
    if (row >= p.m) { return vec4<f32>(0.0); }
#if VEC
    if (4u * kq >= p.k) { return vec4<f32>(0.0); }
    return x[row * (p.xs / 4u) + kq];
#else
    var v = vec4<f32>(0.0);
    for (var c = 0u; c < 4u; c++) {
        let k = 4u * kq + c;
        if (k < p.k) { v[c] = x[row * p.xs + k]; }
    }
    return v;
#endif
}

// W[row, 4·kq .. 4·kq+4), zero outside W.
fn load_b(row: u32, kq: u32) -> vec4<f32> {
    if (row >= p.n) { return vec4<f32>(0.0); }
#if VEC
    if (4u * kq >= p.k) { return vec4<f32>(0.0); }
    let q = w[row * (p.k / 4u) + kq];
#if W_F32
    return q;
#endif
#if W_F16P
    return vec4<f32>(unpack2x16float(q.x), unpack2x16float(q.y));
#endif
#if W_F16N
    return vec4<f32>(q);
#endif
#else
    var v = vec4<f32>(0.0);
    for (var c = 0u; c < 4u; c++) {
        let k = 4u * kq + c;
        if (k < p.k) { v[c] = wload(row * p.k + k); }
    }
    return v;
#endif
}

// Writes a k-slice transposed into the staged tiles (naga cannot pass workgroup pointers).
fn stage_a(r: u32, kq: u32, v: vec4<f32>) {
    for (var c = 0u; c < 4u; c++) {
        let s = (4u * kq + c) * SA + r;
        As[s / 4u][s % 4u] = v[c];
    }
}

fn stage_b(r: u32, kq: u32, v: vec4<f32>) {
    for (var c = 0u; c < 4u; c++) {
        let s = (4u * kq + c) * SB + r;
        Bs[s / 4u][s % 4u] = v[c];
    }
}

@compute @workgroup_size({{NT}})
fn gemm(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wid: vec3<u32>) {
    let m0 = wid.y * BM;
    let n0 = wid.x * BN;
    let tx = lid % (BN / 8u);
    let ty = lid / (BN / 8u);
    // This invocation's slice of each tile: row lr, k-quad lq.
    let lr = lid / (BK / 4u);
    let lq = lid % (BK / 4u);
    var pa = load_a(m0 + lr, lq);
    var pb = load_b(n0 + lr, lq);
    // 8×8 block per invocation in 16 named vec4 accumulators: c{row}{half}. Arrays indexed in
    // loops are not reliably kept in registers by drivers.
    var c00 = vec4<f32>(0.0); var c01 = vec4<f32>(0.0); var c10 = vec4<f32>(0.0); var c11 = vec4<f32>(0.0);
    var c20 = vec4<f32>(0.0); var c21 = vec4<f32>(0.0); var c30 = vec4<f32>(0.0); var c31 = vec4<f32>(0.0);
    var c40 = vec4<f32>(0.0); var c41 = vec4<f32>(0.0); var c50 = vec4<f32>(0.0); var c51 = vec4<f32>(0.0);
    var c60 = vec4<f32>(0.0); var c61 = vec4<f32>(0.0); var c70 = vec4<f32>(0.0); var c71 = vec4<f32>(0.0);
    for (var k0 = 0u; k0 < p.k; k0 += BK) {
        stage_a(lr, lq, pa);
        stage_b(lr, lq, pb);
        workgroupBarrier();
        // Prefetch the next tile while this one is multiplied.
        let kn = (k0 + BK) / 4u + lq;
        pa = load_a(m0 + lr, kn);
        pb = load_b(n0 + lr, kn);
        for (var kk = 0u; kk < BK; kk++) {
            let a0 = As[(kk * SA + ty * 4u) / 4u];
            let a1 = As[(kk * SA + BM / 2u + ty * 4u) / 4u];
            let b0 = Bs[(kk * SB + tx * 4u) / 4u];
            let b1 = Bs[(kk * SB + BN / 2u + tx * 4u) / 4u];
            c00 += a0.x * b0; c01 += a0.x * b1;
            c10 += a0.y * b0; c11 += a0.y * b1;
            c20 += a0.z * b0; c21 += a0.z * b1;
            c30 += a0.w * b0; c31 += a0.w * b1;
            c40 += a1.x * b0; c41 += a1.x * b1;
            c50 += a1.y * b0; c51 += a1.y * b1;
            c60 += a1.z * b0; c61 += a1.z * b1;
            c70 += a1.w * b0; c71 += a1.w * b1;
        }
        workgroupBarrier();
    }
    let r0 = m0 + ty * 4u;
    let r1 = m0 + BM / 2u + ty * 4u;
    let q0 = n0 + tx * 4u;
    let q1 = n0 + BN / 2u + tx * 4u;
    store4(r0, q0, c00); store4(r0, q1, c01);
    store4(r0 + 1u, q0, c10); store4(r0 + 1u, q1, c11);
    store4(r0 + 2u, q0, c20); store4(r0 + 2u, q1, c21);
    store4(r0 + 3u, q0, c30); store4(r0 + 3u, q1, c31);
    store4(r1, q0, c40); store4(r1, q1, c41);
    store4(r1 + 1u, q0, c50); store4(r1 + 1u, q1, c51);
    store4(r1 + 2u, q0, c60); store4(r1 + 2u, q1, c61);
    store4(r1 + 3u, q0, c70); store4(r1 + 3u, q1, c71);
}

// Stores 4 consecutive outputs of one row, with bias, skipping those outside y.
fn store4(row: u32, col0: u32, v: vec4<f32>) {
    if (row >= p.m) { return; }
    for (var j = 0u; j < 4u; j++) {
        let col = col0 + j;
        if (col < p.n) { store(row * p.n + col, col, v[j]); }
    }
}
#endif
