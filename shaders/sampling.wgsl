// Token sampling with temperature, top-k and top-p (nucleus) from a seed. One workgroup per row.
//
// The kept set is defined exactly, so the f64 reference reproduces it:
//   - top-k keeps every logit ≥ the k-th largest (ties kept), found by a 32-step bisection on
//     an order-preserving u32 key of the logit;
//   - top-p then keeps keys ≥ the largest threshold whose kept mass is ≥ top_p of the top-k mass;
//   - u = rng(seed, step, row) · (kept mass); the sample is the first index, in index order,
//     whose running kept mass exceeds u.
struct Params { n: u32, rows: u32, inv_temp: f32, top_k: u32, top_p: f32, seed: u32, step: u32 }
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, {{ACT}}> logits: array<f32>;
@group(0) @binding(2) var<storage, read_write> out: array<u32>;

#include reduce
#include finite
// A row with a NaN or ±Inf logit gets the id NONFINITE (from Rust's
// `sampling::NONFINITE_ID`) instead of a draw: the host reports it, naming the step.

var<workgroup> chunk_mass: array<f32, {{WG}}>;
var<workgroup> pick: u32;

fn pcg(v: u32) -> u32 {
    let state = v * 747796405u + 2891336453u;
    let word = ((state >> ((state >> 28u) + 4u)) ^ state) * 277803737u;
    return (word >> 22u) ^ word;
}

// Uniform in [0, 1) with 24 random bits.
fn uniform01(seed: u32, step: u32, row: u32) -> f32 {
    return f32(pcg(seed ^ pcg(step ^ pcg(row))) >> 8u) / 16777216.0;
}

// Order-preserving map of f32 to u32.
fn key(v: f32) -> u32 {
    let b = bitcast<u32>(v);
    return select(b | 0x80000000u, ~b, (b & 0x80000000u) != 0u);
}

@compute @workgroup_size({{WG}})
fn sample(inv: RowInvocation) {
    let l = lane(inv);
    let lid = inv.lid;
    let row = row_of(inv);
    if (row >= p.rows) { return; } // workgroup-uniform
    let base = row * p.n;
    var m = -3.4028235e38;
    var bad = 0u;
    for (var i = lid; i < p.n; i += {{WG}}u) {
        let v = logits[base + i];
        m = max(m, v);
        bad += u32(nonfinite(v));
    }
    m = reduce_max(m, l);
    if (reduce_count(bad, l) > 0u) { // workgroup-uniform
        if (lid == 0u) { out[row] = NONFINITE; }
        return;
    }

    // Top-k threshold on keys.
    var tk = 0u;
    if (p.top_k > 0u && p.top_k < p.n) {
        for (var bit = 31i; bit >= 0i; bit--) {
            let cand = tk | (1u << u32(bit));
            var c = 0u;
            for (var i = lid; i < p.n; i += {{WG}}u) { c += u32(key(logits[base + i]) >= cand); }
            if (reduce_count(c, l) >= p.top_k) { tk = cand; }
        }
    }
    // Top-p threshold, within the top-k set.
    var s = 0.0;
    for (var i = lid; i < p.n; i += {{WG}}u) {
        let v = logits[base + i];
        if (key(v) >= tk) { s += exp((v - m) * p.inv_temp); }
    }
    let topk_mass = reduce_sum(s, l);
    var tp = tk;
    if (p.top_p < 1.0) {
        let goal = p.top_p * topk_mass;
        var t = 0u;
        for (var bit = 31i; bit >= 0i; bit--) {
            let cand = t | (1u << u32(bit));
            let thr = max(cand, tk);
            var ms = 0.0;
            for (var i = lid; i < p.n; i += {{WG}}u) {
                let v = logits[base + i];
                if (key(v) >= thr) { ms += exp((v - m) * p.inv_temp); }
            }
            if (reduce_sum(ms, l) >= goal) { t = cand; }
        }
        tp = max(t, tk);
    }
    // Inverse-CDF draw in index order over contiguous per-invocation chunks.
    let per = (p.n + {{WG}}u - 1u) / {{WG}}u;
    let lo = min(lid * per, p.n);
    let hi = min(lo + per, p.n);
    var cm = 0.0;
    for (var i = lo; i < hi; i++) {
        let v = logits[base + i];
        if (key(v) >= tp) { cm += exp((v - m) * p.inv_temp); }
    }
    chunk_mass[lid] = cm;
    workgroupBarrier();
    if (lid == 0u) {
        var total = 0.0;
        for (var c = 0u; c < {{WG}}u; c++) {
            let t = chunk_mass[c];
            chunk_mass[c] = total; // exclusive prefix
            total += t;
        }
        chunk_mass[0] = 0.0;
        pick = bitcast<u32>(uniform01(p.seed, p.step, row) * total);
    }
    workgroupBarrier();
    let u = bitcast<f32>(pick);
    let start = chunk_mass[lid];
    var next = 3.4028235e38;
    if (lid + 1u < {{WG}}u) { next = chunk_mass[lid + 1u]; }
    workgroupBarrier();
    // The chunk whose [start, next) holds u (with mass in it) scans for the sample.
    if (hi > lo && start <= u && u < next) {
        var run = start;
        var last = 0xffffffffu;
        var found = 0xffffffffu;
        for (var i = lo; i < hi; i++) {
            let v = logits[base + i];
            if (key(v) >= tp) {
                run += exp((v - m) * p.inv_temp);
                last = i;
                if (run > u) { found = i; break; }
            }
        }
        if (found == 0xffffffffu) { found = last; }
        if (found != 0xffffffffu) { out[row] = found; }
    }
}
