// Mixture-of-experts MLP pieces (ops::moe), Qwen3-Next's and Kimi-Linear's forms. Layouts:
//   logits : [T, E]          router logits
//   route  : [T, 2·K]        per token the K chosen experts (as f32, exact) then their weights
//   x      : [T, d]          the normed input
//   w_gate, w_up : [E, I, d]  each expert's gate and up rows, in two bindings (stacked, a large
//                            model's would outgrow one)
//   h      : [T, K, I]       silu(gate) · up of each chosen expert
//   w_down : [E, d, I]
//   y      : [T, d]          y (+)= Σ_k weight_k · W_down[e_k]·h_k  (+ sigmoid(z)·shared)
// Weights are f32, or (W_F16P) f16 packed two to a u32 word. Accumulation is f32.
struct Params { tokens: u32, experts: u32, k: u32, d: u32, inter: u32, flags: u32, scale: f32 }
@group(0) @binding(0) var<uniform> p: Params;

#include flags

#if ROUTE
// Softmax over the experts (f32), the K largest (ties to the lowest index), renormalised to
// sum 1 with NORM_TOPK. With SIGMOID (Kimi-Linear's, DeepSeek-V3's): scores sigmoid(logit),
// chosen by score + bias[e], weighted by the score, renormalised (NORM_TOPK, + 1e-20), times
// p.scale. One workgroup per token.
@group(0) @binding(1) var<storage, {{ACT}}> logits: array<f32>;
@group(0) @binding(2) var<storage, read_write> route: array<f32>;
@group(0) @binding(3) var<storage, read> bias: array<f32>;
var<workgroup> scores: array<f32, {{EMAX}}>;
var<workgroup> probs: array<f32, {{EMAX}}>;
#include reduce

@compute @workgroup_size(64)
fn moe_route(inv: RowInvocation) {
    let t = row_of(inv);
    if (t >= p.tokens) { return; } // workgroup-uniform
    let l = lane(inv);
    let base = t * p.experts;
    var s = 1.0;
    if (flag(SIGMOID)) {
        // probs: what the choice ranks (score + bias); scores: the weights.
        for (var e = l.lid; e < p.experts; e += 64u) {
            let v = 1.0 / (1.0 + exp(-logits[base + e]));
            scores[e] = v;
            probs[e] = v + bias[e];
        }
        workgroupBarrier();
    } else {
        var m = -3.0e38;
        for (var e = l.lid; e < p.experts; e += 64u) { m = max(m, logits[base + e]); }
        m = reduce_max(m, l);
        s = 0.0;
        for (var e = l.lid; e < p.experts; e += 64u) {
            let v = exp(logits[base + e] - m);
            probs[e] = v;
            scores[e] = v;
            s += v;
        }
        s = reduce_sum(s, l);
    }
    var picked = 0.0;
    for (var k = 0u; k < p.k; k++) {
        var best = -3.0e38;
        var at = 0xffffffffu;
        for (var e = l.lid; e < p.experts; e += 64u) {
            if (probs[e] > best) {
                best = probs[e];
                at = e;
            }
        }
        let idx = min(reduce_argmax(best, at, l), p.experts - 1u);
        let w = scores[idx] / s;
        picked += w;
        workgroupBarrier(); // every lane has read probs[idx]
        if (l.lid == 0u) {
            probs[idx] = -3.0e38;
            route[t * 2u * p.k + k] = f32(idx);
            route[t * 2u * p.k + p.k + k] = w;
        }
        workgroupBarrier();
    }
    if (l.lid < p.k) {
        let at = t * 2u * p.k + p.k + l.lid;
        var w = route[at];
        if (flag(NORM_TOPK)) { w /= select(picked, picked + 1e-20, flag(SIGMOID)); }
        route[at] = w * p.scale;
    }
}
#endif

#if EXPERTS
@group(0) @binding(1) var<storage, {{ACT}}> xin: array<f32>;
@group(0) @binding(2) var<storage, read> w: array<{{WTYPE}}>;
@group(0) @binding(3) var<storage, {{ACT}}> route: array<f32>;
@group(0) @binding(4) var<storage, read_write> out: array<f32>;
#if DOWN
@group(0) @binding(5) var<storage, {{ACT}}> shared_out: array<f32>;
@group(0) @binding(6) var<storage, {{ACT}}> shared_gate: array<f32>;
#endif
#if UP
// (`w` is the gate weight.)
@group(0) @binding(5) var<storage, read> wu: array<{{WTYPE}}>;
#endif
var<workgroup> red: array<f32, 256>;

// Weight element i (flat).
fn wat(i: u32) -> f32 {
#if W_F16P
    return unpack2x16float(w[i >> 1u])[i & 1u];
#else
    return w[i];
#endif
}

#if UP
fn wat_up(i: u32) -> f32 {
#if W_F16P
    return unpack2x16float(wu[i >> 1u])[i & 1u];
#else
    return wu[i];
#endif
}
#endif

// Σ_j w[wb + j]·x[xb + j] over n elements by the 64 invocations, four rows at once (UP: the
// last two rows from the up weight).
fn dot4(lid: u32, wb: vec4<u32>, xb: u32, n: u32) -> vec4<f32> {
    var acc = vec4<f32>();
    for (var j = lid; j < n; j += 64u) {
        let xv = xin[xb + j];
#if UP
        acc += vec4<f32>(wat(wb.x + j), wat(wb.y + j), wat_up(wb.z + j), wat_up(wb.w + j)) * xv;
#else
        acc += vec4<f32>(wat(wb.x + j), wat(wb.y + j), wat(wb.z + j), wat(wb.w + j)) * xv;
#endif
    }
    red[lid] = acc.x;
    red[64u + lid] = acc.y;
    red[128u + lid] = acc.z;
    red[192u + lid] = acc.w;
    workgroupBarrier();
    for (var s = 32u; s > 0u; s >>= 1u) {
        if (lid < s) {
            for (var r = 0u; r < 4u; r++) { red[r * 64u + lid] += red[r * 64u + lid + s]; }
        }
        workgroupBarrier();
    }
    let v = vec4<f32>(red[0], red[64], red[128], red[192]);
    workgroupBarrier();
    return v;
}

#if UP
// h[t, k, n] = silu(W_gate[e][n]·x_t) · (W_up[e][n]·x_t) for 2 rows n at a time (the dot4
// lanes: gate n, gate n + 1, up n, up n + 1). Workgroup: (t, k, pair of rows).
@compute @workgroup_size(64)
fn moe_up(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let pairs = (p.inter + 1u) / 2u;
    let idx = wid.x + wid.y * nwg.x;
    if (idx >= p.tokens * p.k * pairs) { return; } // workgroup-uniform
    let n0 = (idx % pairs) * 2u;
    let slot = (idx / pairs) % p.k;
    let t = idx / (pairs * p.k);
    let e = min(u32(route[t * 2u * p.k + slot]), p.experts - 1u);
    let n1 = min(n0 + 1u, p.inter - 1u);
    let eb = e * p.inter * p.d;
    let wb = vec4<u32>(eb + n0 * p.d, eb + n1 * p.d, eb + n0 * p.d, eb + n1 * p.d);
    let v = dot4(lid, wb, t * p.d, p.d);
    if (lid == 0u) {
        let ob = (t * p.k + slot) * p.inter;
        out[ob + n0] = v.x / (1.0 + exp(-v.x)) * v.z;
        if (n0 + 1u < p.inter) { out[ob + n0 + 1u] = v.y / (1.0 + exp(-v.y)) * v.w; }
    }
}
#endif

#if DOWN
// y[t, n] (+)= Σ_k weight_k · W_down[e_k][n]·h[t, k] + sigmoid(shared_gate[t])·shared_out[t, n],
// 4 rows n at a time. Workgroup: (t, four rows).
@compute @workgroup_size(64)
fn moe_down(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let quads = (p.d + 3u) / 4u;
    let idx = wid.x + wid.y * nwg.x;
    if (idx >= p.tokens * quads) { return; } // workgroup-uniform
    let n0 = (idx % quads) * 4u;
    let t = idx / quads;
    let last = p.d - 1u;
    var acc = vec4<f32>();
    for (var slot = 0u; slot < p.k; slot++) {
        let e = min(u32(route[t * 2u * p.k + slot]), p.experts - 1u);
        let eb = e * p.d * p.inter;
        let wb = vec4<u32>(eb + n0 * p.inter, eb + min(n0 + 1u, last) * p.inter, eb + min(n0 + 2u, last) * p.inter, eb + min(n0 + 3u, last) * p.inter);
        acc += dot4(lid, wb, (t * p.k + slot) * p.inter, p.inter) * route[t * 2u * p.k + p.k + slot];
    }
    if (lid < 4u && n0 + lid < p.d) {
        let i = t * p.d + n0 + lid;
        var v = acc[lid];
        if (flag(SHARED)) {
            var g = 1.0;
            if (flag(SHARED_GATE)) { g = 1.0 / (1.0 + exp(-shared_gate[t])); }
            v += shared_out[i] * g;
        }
        if (flag(ACCUMULATE)) { v += out[i]; }
        out[i] = v;
    }
}
#endif
#endif
