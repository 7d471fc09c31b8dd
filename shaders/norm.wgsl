// Row normalisation over segments: x is (rows, groups·seg); one workgroup per (row, group).
//   RMSNorm:   groups = 1, no centring            y = x / sqrt(mean(x²) + eps) · w
//   LayerNorm: groups = 1, centred                y = (x − μ) / sqrt(var + eps) · w + b
//   GroupNorm: groups = G, centred per group      (w, b per channel)
//   Group RMSNorm (Mamba-2's gated norm): groups = G, no centring.
// Statistics are two-pass (mean, then squared deviations) in f32.
struct Params { seg: u32, groups: u32, eps: f32, has_bias: u32, count: u32 }
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, {{ACT}}> x: array<f32>;
@group(0) @binding(2) var<storage, read> weight: array<f32>;
@group(0) @binding(3) var<storage, read> bias: array<f32>;
@group(0) @binding(4) var<storage, read_write> y: array<f32>;

#include reduce

@compute @workgroup_size({{WG}})
fn norm(inv: RowInvocation) {
    let l = lane(inv);
    let lid = inv.lid;
    let segment = row_of(inv);
    if (segment >= p.count) { return; } // workgroup-uniform: grid padding
    let base = segment * p.seg;
    let ch0 = (segment % p.groups) * p.seg; // first channel of this group
    let n = f32(p.seg);
    var mean = 0.0;
#if CENTER
    var s = 0.0;
    for (var i = lid; i < p.seg; i += {{WG}}u) { s += x[base + i]; }
    mean = reduce_sum(s, l) / n;
#endif
    var q = 0.0;
    for (var i = lid; i < p.seg; i += {{WG}}u) {
        let d = x[base + i] - mean;
        q += d * d;
    }
    let rstd = inverseSqrt(reduce_sum(q, l) / n + p.eps);
    for (var i = lid; i < p.seg; i += {{WG}}u) {
        let c = ch0 + i;
        var v = (x[base + i] - mean) * rstd * weight[c];
        if (p.has_bias != 0u) { v += bias[c]; }
        y[base + i] = v;
    }
}
