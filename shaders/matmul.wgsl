// y = x · Wᵀ + b with HF `Linear` layout: x (M, K) f32, W (N, K), b (N), y (M, N) f32.
// Accumulation is always f32. The weight storage mode is one of:
//   W_F32      array<f32>             (VEC: array<vec4<f32>>, K % 4 == 0)
//   W_F16P     f16 packed in u32 words, read with unpack2x16float: runs on every adapter
//              (VEC: array<vec4<u32>>, 8 halves per load, K % 8 == 0)
//   W_F16N     native f16 storage (needs SHADER_F16; VEC: array<vec4<f16>>, K % 4 == 0)
struct Params { m: u32, n: u32, k: u32, has_bias: u32 }
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<{{XTYPE}}>;
@group(0) @binding(2) var<storage, read> w: array<{{WTYPE}}>;
// Without a bias the op binds a 1-element placeholder and sets has_bias = 0.
@group(0) @binding(3) var<storage, read> bias: array<f32>;
@group(0) @binding(4) var<storage, read_write> y: array<f32>;

fn bias_at(n: u32) -> f32 {
    return select(0.0, bias[min(n, arrayLength(&bias) - 1u)], p.has_bias != 0u);
}

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
const ROWS: u32 = {{ROWS}}u;
const WG: u32 = {{WG}}u;
const CHUNK: u32 = {{CHUNK}}u;
var<workgroup> red: array<f32, {{RED}}>;

// Dot product of weight chunk j (from chunk base wb) with the matching x chunk (base xb).
fn partial(wb: u32, xb: u32, j: u32) -> f32 {
#if VEC
#if W_F32
    return dot(w[wb + j], x[xb + j]);
#endif
#if W_F16N
    return dot(vec4<f32>(w[wb + j]), x[xb + j]);
#endif
#if W_F16P
    let q = w[wb + j];
    let lo = vec4<f32>(unpack2x16float(q.x), unpack2x16float(q.y));
    let hi = vec4<f32>(unpack2x16float(q.z), unpack2x16float(q.w));
    return dot(lo, x[xb + 2u * j]) + dot(hi, x[xb + 2u * j + 1u]);
#endif
#else
    return wload(wb + j) * x[xb + j];
#endif
}

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
    let xb = m * p.k / {{XPER}}u;         // x row base in x-array elements
    var acc: array<f32, {{ROWS}}>;
    for (var r = 0u; r < ROWS; r++) { acc[r] = 0.0; }
    for (var j = lid; j < kc; j += WG) {
        for (var r = 0u; r < ROWS; r++) {
            let n = min(n0 + r, p.n - 1u); // clamp: rows past N compute garbage that is never stored
            acc[r] += partial(n * kc, xb, j);
        }
    }
#if SUBGROUPS
    for (var r = 0u; r < ROWS; r++) {
        let s = subgroupAdd(acc[r]);
        if (sg_lane == 0u) { red[r * WG + sg_id] = s; }
    }
    workgroupBarrier();
    if (lid < ROWS && n0 + lid < p.n) {
        var s = 0.0;
        for (var i = 0u; i < sg_count; i++) { s += red[lid * WG + i]; }
        y[m * p.n + n0 + lid] = s + bias_at(n0 + lid);
    }
#else
    for (var r = 0u; r < ROWS; r++) { red[r * WG + lid] = acc[r]; }
    workgroupBarrier();
    for (var s = WG / 2u; s > 0u; s >>= 1u) {
        if (lid < s) {
            for (var r = 0u; r < ROWS; r++) { red[r * WG + lid] += red[r * WG + lid + s]; }
        }
        workgroupBarrier();
    }
    if (lid < ROWS && n0 + lid < p.n) {
        y[m * p.n + n0 + lid] = red[lid * WG] + bias_at(n0 + lid);
    }
#endif
}
#endif

#if GEMM
// Tiled GEMM. A workgroup computes a BM×BN tile of y with BM/8 × BN/8 invocations, each owning
// an 8×8 block split into two 4-row and two 4-column halves (rows ty*4.. and BM/2+ty*4..), so
// the vec4 reads from workgroup memory by neighbouring invocations hit distinct banks.
// Tiles are staged k-major (As[k][m]) with 4 floats of padding per row against bank conflicts.
const BM: u32 = {{BM}}u;
const BN: u32 = {{BN}}u;
const BK: u32 = {{BK}}u;
const NT: u32 = {{NT}}u;
const SA: u32 = BM + 4u;  // padded row strides
const SB: u32 = BN + 4u;
var<workgroup> As: array<vec4<f32>, {{AS4}}>;
var<workgroup> Bs: array<vec4<f32>, {{BS4}}>;

fn xload(e: u32) -> f32 { return x[e]; }

@compute @workgroup_size({{NT}})
fn gemm(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wid: vec3<u32>) {
    let m0 = wid.y * BM;
    let n0 = wid.x * BN;
    let tx = lid % (BN / 8u);
    let ty = lid / (BN / 8u);
    var acc: array<vec4<f32>, 16>;
    for (var i = 0u; i < 16u; i++) { acc[i] = vec4<f32>(0.0); }
    for (var k0 = 0u; k0 < p.k; k0 += BK) {
        // Stage A (x) and B (W) tiles; consecutive invocations read consecutive k.
        for (var i = 0u; i < BM * BK / NT; i++) {
            let idx = lid + i * NT;
            let r = idx / BK;
            let kk = idx % BK;
            var v = 0.0;
            if (m0 + r < p.m && k0 + kk < p.k) { v = xload((m0 + r) * p.k + k0 + kk); }
            let s = kk * SA + r;
            As[s / 4u][s % 4u] = v;
        }
        for (var i = 0u; i < BN * BK / NT; i++) {
            let idx = lid + i * NT;
            let r = idx / BK;
            let kk = idx % BK;
            var v = 0.0;
            if (n0 + r < p.n && k0 + kk < p.k) { v = wload((n0 + r) * p.k + k0 + kk); }
            let s = kk * SB + r;
            Bs[s / 4u][s % 4u] = v;
        }
        workgroupBarrier();
        for (var kk = 0u; kk < BK; kk++) {
            let a0 = As[(kk * SA + ty * 4u) / 4u];
            let a1 = As[(kk * SA + BM / 2u + ty * 4u) / 4u];
            let b0 = Bs[(kk * SB + tx * 4u) / 4u];
            let b1 = Bs[(kk * SB + BN / 2u + tx * 4u) / 4u];
            for (var i = 0u; i < 4u; i++) {
                acc[i * 2u] += a0[i] * b0;
                acc[i * 2u + 1u] += a0[i] * b1;
                acc[8u + i * 2u] += a1[i] * b0;
                acc[8u + i * 2u + 1u] += a1[i] * b1;
            }
        }
        workgroupBarrier();
    }
    for (var i = 0u; i < 8u; i++) {
        let row = m0 + select(ty * 4u + i, BM / 2u + ty * 4u + i - 4u, i >= 4u);
        if (row >= p.m) { continue; }
        for (var h = 0u; h < 2u; h++) {
            let c = acc[i * 2u + h];
            let col0 = n0 + h * (BN / 2u) + tx * 4u;
            for (var j = 0u; j < 4u; j++) {
                let col = col0 + j;
                if (col < p.n) { y[row * p.n + col] = c[j] + bias_at(col); }
            }
        }
    }
}
#endif
