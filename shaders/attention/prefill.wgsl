// Prefill (included by attention.wgsl): a workgroup takes BQ = 64 queries of one sequence and
// one query head, LANES invocations per query, each holding 1/LANES of q and of the output
// accumulator in registers, and walks the keys its queries see in tiles of BK staged in
// workgroup memory (K and V, f32; BK·D = 2048 floats each, 16 KiB in all). Tiles wholly
// outside every query's window or causal range are never visited, so a window costs O(L·W),
// not O(L²).
// - LANES = 1: one query per invocation. Its `.rolled` form bounds the inner loops by
//   uniforms (p.d4, p.bk) instead of constants: Mesa's GL compiler unrolls the constant ones
//   into minutes of compile time.
// - LANES = 4 (SG, the `.sg` form): a score is the quad's partial dot products summed by two
//   subgroup shuffles, and the quad keeps the softmax statistics redundantly. It needs
//   subgroups of at least 4 lanes (quads never straddle one).
#if PREFILL
// qkv and kv as vec4 words: every head starts at a multiple of D (≥ 64) floats.
@group(0) @binding(1) var<storage, {{ACT}}> qkv: array<vec4<f32>>;
#include attention/kv_blocks
@group(0) @binding(6) var<storage, read> seqs: array<u32>;
@group(0) @binding(7) var<storage, read> pos: array<u32>;
@group(0) @binding(8) var<storage, read_write> out: array<vec4<f32>>;

const BQ: u32 = 64u;
const BK: u32 = {{BK}}u;
const D4: u32 = D / 4u;
const LANES: u32 = {{LANES}}u;
const DQ: u32 = D4 / LANES; // vec4s of q and of the accumulator per invocation
var<workgroup> kt: array<vec4<f32>, {{BKD4}}>;
var<workgroup> vt: array<vec4<f32>, {{BKD4}}>;

// Stages K and V of keys j0 … j0 + BK of sequence s (clamped to `last`) with the workgroup's
// invocations: keys before pos0 from the ring, the others from the new rows.
fn stage_kv(lid: u32, j0: u32, last: u32, s: u32, pos0: u32, t0: u32, kvh: u32) {
    let width4 = row_width() / 4u;
    for (var e = lid; e < BK * D4; e += 64u * LANES) {
        let jj = e / D4;
        let d = e % D4;
        let j = min(j0 + jj, last);
        if (j < pos0) {
            kt[e] = kv_word(j, cache_ix(s, j, 0u, kvh, 0u) / 4u + d);
            vt[e] = kv_word(j, cache_ix(s, j, 1u, kvh, 0u) / 4u + d);
        } else {
            let r = (t0 + j - pos0) * width4;
            kt[e] = qkv[r + k_col(kvh) / 4u + d];
            vt[e] = qkv[r + v_col(kvh) / 4u + d];
        }
    }
}

@compute @workgroup_size({{WGSIZE}})
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
    let lane = lid % LANES;            // this invocation's part of the head
    let qi = tile * BQ + lid / LANES;  // its query's index within the sequence
    let live = qi < len;
    let i = pos0 + min(qi, len - 1u);  // its position (lanes past the end act as the last)
    let width4 = row_width() / 4u;
    var q: array<vec4<f32>, DQ>;
    var o: array<vec4<f32>, DQ>;
    let qrow = (t0 + min(qi, len - 1u)) * width4 + h * D4 + lane * DQ;
    for (var d = 0u; d < {{DQN}}; d++) {
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
        stage_kv(lid, j0, last, s, pos0, t0, kvh);
        workgroupBarrier();
        var sc: array<f32, BK>;
        var tmax = m;
        for (var jj = 0u; jj < {{BKN}}; jj++) {
            let j = j0 + jj;
            let visible = j <= i && j >= first;
#if SG
            // Every lane of the quad takes part (the shuffles need them all).
            var acc = vec4<f32>(0.0);
            for (var d = 0u; d < DQ; d++) { acc += q[d] * kt[jj * D4 + lane * DQ + d]; }
            var part = acc.x + acc.y + acc.z + acc.w;
            part += subgroupShuffleXor(part, 1u);
            part += subgroupShuffleXor(part, 2u);
#else
            var part = 0.0;
            if (visible) {
                var acc = vec4<f32>(0.0);
                for (var d = 0u; d < {{DQN}}; d++) { acc += q[d] * kt[jj * D4 + d]; }
                part = acc.x + acc.y + acc.z + acc.w;
            }
#endif
            var sv = 0.0;
            if (visible) {
                sv = capped(part);
                tmax = max(tmax, sv);
            }
            sc[jj] = sv;
        }
        // Rescale what was accumulated to the new max once per tile, then add the tile. (The
        // mask is tested by position, not by a sentinel score, so a NaN score stays NaN.)
        let corr = exp(m - tmax);
        l *= corr;
        for (var d = 0u; d < {{DQN}}; d++) { o[d] *= corr; }
        for (var jj = 0u; jj < {{BKN}}; jj++) {
            if (j0 + jj <= i && j0 + jj >= first) {
                let pj = exp(sc[jj] - tmax);
                l += pj;
                for (var d = 0u; d < {{DQN}}; d++) { o[d] += pj * vt[jj * D4 + lane * DQ + d]; }
            }
        }
        m = tmax;
        workgroupBarrier();
    }
    if (live) {
        let orow = (t0 + qi) * p.heads * D4 + h * D4 + lane * DQ;
        let inv = 1.0 / l;
        for (var d = 0u; d < {{DQN}}; d++) { out[orow + d] = o[d] * inv; }
    }
}
#endif
