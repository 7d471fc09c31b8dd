// Prefill (included by attention.wgsl): a workgroup takes BQ = 64 queries of one sequence and
// one query head, one query per invocation (q and the output accumulator in registers), and
// walks the keys its queries see in tiles of BK staged in workgroup memory (K and V, f32;
// BK·D = 2048 floats each, 16 KiB in all). Tiles wholly outside every query's window or
// causal range are never visited, so a window costs O(L·W), not O(L²). The `.rolled` forms
// bound the inner loops by uniforms (p.d4, p.bk) instead of constants: Mesa's GL compiler
// unrolls the constant ones into minutes of compile time.
#if PREFILL_ANY
// qkv and kv as vec4 words: every head starts at a multiple of D (≥ 64) floats.
@group(0) @binding(1) var<storage, {{ACT}}> qkv: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> kv: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read> seqs: array<u32>;
@group(0) @binding(4) var<storage, read> pos: array<u32>;
@group(0) @binding(5) var<storage, read_write> out: array<vec4<f32>>;

const BQ: u32 = 64u;
const BK: u32 = {{BK}}u;
const D4: u32 = D / 4u;
var<workgroup> kt: array<vec4<f32>, {{BKD4}}>;
var<workgroup> vt: array<vec4<f32>, {{BKD4}}>;

// Stages K and V of keys j0 … j0 + BK of sequence s (clamped to `last`) with `threads`
// invocations: keys before pos0 from the ring, the others from the new rows.
fn stage_kv(lid: u32, threads: u32, j0: u32, last: u32, s: u32, pos0: u32, t0: u32, kvh: u32) {
    let width4 = row_width() / 4u;
    for (var e = lid; e < BK * D4; e += threads) {
        let jj = e / D4;
        let d = e % D4;
        let j = min(j0 + jj, last);
        if (j < pos0) {
            kt[e] = kv[cache_ix(s, j, 0u, kvh, 0u) / 4u + d];
            vt[e] = kv[cache_ix(s, j, 1u, kvh, 0u) / 4u + d];
        } else {
            let r = (t0 + j - pos0) * width4;
            kt[e] = qkv[r + k_col(kvh) / 4u + d];
            vt[e] = qkv[r + v_col(kvh) / 4u + d];
        }
    }
}
#endif

#if PREFILL

@compute @workgroup_size(64)
fn attn_prefill(
    @builtin(local_invocation_index) lid: u32,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    // Workgroup index: (sequence · tiles + tile) · heads + head.
    let idx = wid.x + wid.y * nwg.x;
    if (idx >= p.nseq * p.tiles * p.heads) { return; } // workgroup-uniform
    let h = idx % p.heads;
    let tile = (idx / p.heads) % p.tiles;
    let s = idx / (p.heads * p.tiles);
    let t0 = seqs[s];
    let len = seqs[s + 1u] - t0;
    if (tile * BQ >= len) { return; } // workgroup-uniform
    let kvh = h / (p.heads / p.kv_heads);
    let pos0 = pos[s];
    let qi = tile * BQ + lid;          // this query's index within the sequence
    let live = qi < len;
    let i = pos0 + min(qi, len - 1u);  // its position (lanes past the end act as the last)
    let width4 = row_width() / 4u;
    var q: array<vec4<f32>, D4>;
    var o: array<vec4<f32>, D4>;
    let qrow = (t0 + min(qi, len - 1u)) * width4 + h * D4;
    for (var d = 0u; d < {{D4N}}; d++) {
        q[d] = qkv[qrow + d] * p.scale;
        o[d] = vec4<f32>(0.0);
    }
    var m = -3.0e38;
    var l = 0.0;
    // Keys from the first one the tile's first query sees to the tile's last query.
    let last = pos0 + min(tile * BQ + BQ, len) - 1u;
    let lo = first_key(pos0 + tile * BQ);
    let first = first_key(i);
    for (var j0 = lo; j0 <= last; j0 += BK) {
        stage_kv(lid, 64u, j0, last, s, pos0, t0, kvh);
        workgroupBarrier();
        var sc: array<f32, BK>;
        var tmax = m;
        for (var jj = 0u; jj < {{BKN}}; jj++) {
            let j = j0 + jj;
            var sv = 0.0;
            if (j <= i && j >= first) {
                var acc = vec4<f32>(0.0);
                for (var d = 0u; d < {{D4N}}; d++) { acc += q[d] * kt[jj * D4 + d]; }
                sv = capped(acc.x + acc.y + acc.z + acc.w);
                tmax = max(tmax, sv);
            }
            sc[jj] = sv;
        }
        // Rescale what was accumulated to the new max once per tile, then add the tile. (The
        // mask is tested by position, not by a sentinel score, so a NaN score stays NaN.)
        let corr = exp(m - tmax);
        l *= corr;
        for (var d = 0u; d < {{D4N}}; d++) { o[d] *= corr; }
        for (var jj = 0u; jj < {{BKN}}; jj++) {
            if (j0 + jj <= i && j0 + jj >= first) {
                let pj = exp(sc[jj] - tmax);
                l += pj;
                for (var d = 0u; d < {{D4N}}; d++) { o[d] += pj * vt[jj * D4 + d]; }
            }
        }
        m = tmax;
        workgroupBarrier();
    }
    if (live) {
        let orow = (t0 + qi) * p.heads * D4 + h * D4;
        let inv = 1.0 / l;
        for (var d = 0u; d < {{D4N}}; d++) { out[orow + d] = o[d] * inv; }
    }
}
#endif

#if PREFILL_SG
// The subgroup form: 4 invocations per query (a workgroup of 256 takes 64 queries), each
// holding a quarter of q and of the accumulator, so both stay in registers at D = 128 and 256
// (one query per invocation spills there). A score is the quad's partial dot products summed
// by two subgroup shuffles; the quad keeps the softmax statistics redundantly. Needs subgroups
// of at least 4 lanes (quads never straddle one).
const DQ: u32 = D4 / 4u; // vec4s per lane

@compute @workgroup_size(256)
fn attn_prefill_sg(
    @builtin(local_invocation_index) lid: u32,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let idx = wid.x + wid.y * nwg.x;
    if (idx >= p.nseq * p.tiles * p.heads) { return; } // workgroup-uniform
    let h = idx % p.heads;
    let tile = (idx / p.heads) % p.tiles;
    let s = idx / (p.heads * p.tiles);
    let t0 = seqs[s];
    let len = seqs[s + 1u] - t0;
    if (tile * BQ >= len) { return; } // workgroup-uniform
    let kvh = h / (p.heads / p.kv_heads);
    let pos0 = pos[s];
    let lane = lid % 4u;               // this invocation's quarter of the head
    let qi = tile * BQ + lid / 4u;
    let live = qi < len;
    let i = pos0 + min(qi, len - 1u);
    let width4 = row_width() / 4u;
    var q: array<vec4<f32>, DQ>;
    var o: array<vec4<f32>, DQ>;
    let qrow = (t0 + min(qi, len - 1u)) * width4 + h * D4 + lane * DQ;
    for (var d = 0u; d < DQ; d++) {
        q[d] = qkv[qrow + d] * p.scale;
        o[d] = vec4<f32>(0.0);
    }
    var m = -3.0e38;
    var l = 0.0;
    let last = pos0 + min(tile * BQ + BQ, len) - 1u;
    let lo = first_key(pos0 + tile * BQ);
    let first = first_key(i);
    for (var j0 = lo; j0 <= last; j0 += BK) {
        stage_kv(lid, 256u, j0, last, s, pos0, t0, kvh);
        workgroupBarrier();
        var sc: array<f32, BK>;
        var tmax = m;
        for (var jj = 0u; jj < BK; jj++) {
            var acc = vec4<f32>(0.0);
            for (var d = 0u; d < DQ; d++) { acc += q[d] * kt[jj * D4 + lane * DQ + d]; }
            // Every lane of the quad takes part (the shuffles need them all).
            var part = acc.x + acc.y + acc.z + acc.w;
            part += subgroupShuffleXor(part, 1u);
            part += subgroupShuffleXor(part, 2u);
            let j = j0 + jj;
            var sv = 0.0;
            if (j <= i && j >= first) {
                sv = capped(part);
                tmax = max(tmax, sv);
            }
            sc[jj] = sv;
        }
        let corr = exp(m - tmax);
        l *= corr;
        for (var d = 0u; d < DQ; d++) { o[d] *= corr; }
        for (var jj = 0u; jj < BK; jj++) {
            if (j0 + jj <= i && j0 + jj >= first) {
                let pj = exp(sc[jj] - tmax);
                l += pj;
                for (var d = 0u; d < DQ; d++) { o[d] += pj * vt[jj * D4 + lane * DQ + d]; }
            }
        }
        m = tmax;
        workgroupBarrier();
    }
    if (live) {
        let orow = (t0 + qi) * p.heads * D4 + h * D4 + lane * DQ;
        let inv = 1.0 / l;
        for (var d = 0u; d < DQ; d++) { out[orow + d] = o[d] * inv; }
    }
}
#endif
