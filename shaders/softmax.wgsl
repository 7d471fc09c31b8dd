// Row-wise softmax(x · scale) and argmax. One workgroup per row.
struct Params { n: u32, rows: u32, scale: f32 }
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, {{ACT}}> x: array<f32>;
#if SOFTMAX
@group(0) @binding(2) var<storage, read_write> y: array<f32>;
#else
@group(0) @binding(2) var<storage, read_write> y: array<u32>;
#endif

#include reduce
#include finite

@compute @workgroup_size({{WG}})
fn {{ENTRY}}(inv: RowInvocation) {
    let l = lane(inv);
    let lid = inv.lid;
    let row = row_of(inv);
    if (row >= p.rows) { return; } // workgroup-uniform
    let base = row * p.n;
#if SOFTMAX
    var m = -3.4028235e38;
    for (var i = lid; i < p.n; i += {{WG}}u) { m = max(m, x[base + i] * p.scale); }
    m = reduce_max(m, l);
    var s = 0.0;
    for (var i = lid; i < p.n; i += {{WG}}u) { s += exp(x[base + i] * p.scale - m); }
    let inv_sum = 1.0 / reduce_sum(s, l);
    for (var i = lid; i < p.n; i += {{WG}}u) { y[base + i] = exp(x[base + i] * p.scale - m) * inv_sum; }
#else
    // Ties go to the lowest index, as torch.argmax does.
    // A row with a NaN or ±Inf value gets NONFINITE (Rust's `sampling::NONFINITE_ID`).
    var best = -3.4028235e38;
    var best_i = 0xffffffffu;
    var bad = 0u;
    for (var i = lid; i < p.n; i += {{WG}}u) {
        let v = x[base + i];
        bad += u32(nonfinite(v));
        if (v > best || best_i == 0xffffffffu) { best = v; best_i = i; }
    }
    let r = reduce_argmax(best, best_i, l);
    let any_bad = reduce_count(bad, l) > 0u;
    if (lid == 0u) { y[row] = select(r, NONFINITE, any_bad); }
#endif
}
