// Row-wise softmax(x · scale) and argmax. One workgroup per row.
struct Params { n: u32, rows: u32, scale: f32 }
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
#if SOFTMAX
@group(0) @binding(2) var<storage, read_write> y: array<f32>;
#else
@group(0) @binding(2) var<storage, read_write> y: array<u32>;
#endif

#include reduce

@compute @workgroup_size({{WG}})
fn {{ENTRY}}(
    @builtin(local_invocation_index) lid: u32,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
#if SUBGROUPS
    @builtin(subgroup_invocation_id) sg_lane: u32,
    @builtin(subgroup_id) sg_id: u32,
    @builtin(num_subgroups) sg_count: u32,
#endif
) {
#if SUBGROUPS
    let l = Lane(lid, sg_lane, sg_id, sg_count);
#else
    let l = Lane(lid, 0u, 0u, 0u);
#endif
    let row = wid.x + wid.y * nwg.x;
    if (row >= p.rows) { return; } // workgroup-uniform
    let base = row * p.n;
#if SOFTMAX
    var m = -3.4028235e38;
    for (var i = lid; i < p.n; i += {{WG}}u) { m = max(m, x[base + i] * p.scale); }
    m = reduce_max(m, l);
    var s = 0.0;
    for (var i = lid; i < p.n; i += {{WG}}u) { s += exp(x[base + i] * p.scale - m); }
    let inv = 1.0 / reduce_sum(s, l);
    for (var i = lid; i < p.n; i += {{WG}}u) { y[base + i] = exp(x[base + i] * p.scale - m) * inv; }
#else
    // Ties go to the lowest index, as torch.argmax does.
    var best = -3.4028235e38;
    var best_i = 0xffffffffu;
    for (var i = lid; i < p.n; i += {{WG}}u) {
        let v = x[base + i];
        if (v > best || best_i == 0xffffffffu) { best = v; best_i = i; }
    }
    let r = reduce_argmax(best, best_i, l);
    if (lid == 0u) { y[row] = r; }
#endif
}
