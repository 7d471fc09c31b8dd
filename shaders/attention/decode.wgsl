// Decode (included by attention.wgsl), flash-decoding: one query per sequence. A workgroup
// takes one (sequence, query head, split): the split's keys in tiles of 64, one key per
// invocation for the scores, then one output dimension per invocation (D / 64 each) for
// P·V, so K rows are read once per key and V rows coalesced. It writes its partial
// (max, sum, unnormalised output) to `part`; `attn_reduce` combines the splits.
#if DECODE
@group(0) @binding(1) var<storage, {{ACT}}> qkv: array<f32>;
#include attention/kv_blocks
@group(0) @binding(6) var<storage, read> seqs: array<u32>;
@group(0) @binding(7) var<storage, read> pos: array<u32>;
@group(0) @binding(8) var<storage, read_write> part: array<f32>;

var<workgroup> qs: array<f32, D>;
var<workgroup> ps: array<f32, 64>;
// Workgroup max and sum (lib/reduce, its workgroup-memory form: WG = 64, SUBGROUPS = 0).
#include reduce

@compute @workgroup_size(64)
fn attn_decode(
    @builtin(local_invocation_index) lid: u32,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let idx = wid.x + wid.y * nwg.x;
    if (idx >= p.nseq * p.heads * p.splits) { return; } // workgroup-uniform
    let split = idx % p.splits;
    let h = (idx / p.splits) % p.heads;
    let s = idx / (p.splits * p.heads);
    let t = seqs[s];
    let kvh = h / (p.heads / p.kv_heads);
    let i = pos[s];                    // the query's position; the cache holds keys < i
    let width = row_width();
    for (var d = lid; d < D; d += 64u) { qs[d] = qkv[t * width + h * D + d] * p.scale; }
    workgroupBarrier();
    let first = first_key(i);
    let lo = first + split * p.split_len;
    let hi = min(lo + p.split_len, i + 1u); // keys [lo, hi)
    var m = -3.0e38;
    var l = 0.0;
    var o: array<f32, 4>;              // dims lid, lid + 64, … (D ≤ 256)
    for (var c = 0u; c < 4u; c++) { o[c] = 0.0; }
    for (var j0 = lo; j0 < hi; j0 += 64u) {
        let j = j0 + lid;
        let visible = j < hi;
        var sv = -3.0e38;
        if (visible) {
            var acc = 0.0;
            if (j < i) {
                let k0 = cache_ix(s, j, 0u, kvh, 0u);
                for (var d = 0u; d < D; d++) { acc += qs[d] * kv_word(j, k0 + d); }
            } else {
                for (var d = 0u; d < D; d++) { acc += qs[d] * qkv[t * width + k_col(kvh) + d]; }
            }
            sv = capped(acc);
        }
        let lane = Lane(lid, 0u, 0u, 0u);
        let tmax = max(m, reduce_max(sv, lane));
        var pj = 0.0;
        if (visible) { pj = exp(sv - tmax); }
        ps[lid] = pj;
        let corr = exp(m - tmax);
        l = l * corr + reduce_sum(pj, lane);
        m = tmax;
        let n = min(64u, hi - j0);
        for (var c = 0u; c * 64u + lid < D; c++) {
            let d = c * 64u + lid;
            var acc = o[c] * corr;
            for (var jj = 0u; jj < n; jj++) {
                let jv = j0 + jj;
                var vv: f32;
                if (jv < i) { vv = kv_word(jv, cache_ix(s, jv, 1u, kvh, d)); } else { vv = qkv[t * width + v_col(kvh) + d]; }
                acc += ps[jj] * vv;
            }
            o[c] = acc;
        }
        workgroupBarrier();
    }
    // part[(s·H + h)·splits + split] = (m, l, o[0..D]).
    let base = ((s * p.heads + h) * p.splits + split) * (D + 2u);
    if (lid == 0u) {
        part[base] = m;
        part[base + 1u] = l;
    }
    for (var c = 0u; c * 64u + lid < D; c++) { part[base + 2u + c * 64u + lid] = o[c]; }
}
#endif

#if REDUCE
@group(0) @binding(1) var<storage, {{ACT}}> part: array<f32>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;

// Combines the splits of each (sequence, head): one invocation per output element.
@compute @workgroup_size(64)
fn attn_reduce(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let e = gid.x + gid.y * nwg.x * 64u;
    if (e >= p.nseq * p.heads * D) { return; }
    let d = e % D;
    let sh = e / D;
    var m = -3.0e38;
    for (var k = 0u; k < p.splits; k++) { m = max(m, part[(sh * p.splits + k) * (D + 2u)]); }
    var l = 0.0;
    var o = 0.0;
    for (var k = 0u; k < p.splits; k++) {
        let b = (sh * p.splits + k) * (D + 2u);
        let w = exp(part[b] - m);
        l += part[b + 1u] * w;
        o += part[b + 2u + d] * w;
    }
    out[e] = o / l;
}
#endif
