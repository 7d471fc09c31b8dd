// The tensor-core prefill (included by attention.wgsl; the `.coop{BQ}` variants): Q·Kᵀ and
// P·V on 16×16×16 f16 cooperative matrices with f32 accumulation, fed from workgroup memory.
// A workgroup takes BQ queries (64 or 128) of one sequence and one query head; it has BQ / 16
// subgroups of 32 lanes, subgroup b owning query rows 16b … 16b + 15, whose Q it holds as D / 16
// A fragments for the whole walk. Keys go BK = 32 at a time, staged as f16 (clamped to ±65504)
// in rows of D + 8 halves (rows of D would put the rows a fragment load touches in one bank).
//
// Two passes over the keys, because an accumulator fragment cannot be rescaled row by row as
// FA2's online softmax would: the first computes each row's max and sum (Q·Kᵀ only), the
// second P = exp(s − max) / sum, already normalised, into f16 and O += P·V. That costs a
// second Q·Kᵀ (1.5× the multiply-adds of one pass) and keeps P in [0, 1], where f16 is fine.
// The scores and P pass through workgroup memory: two lanes per row, 16 keys each.
//
// Masked keys get P = 0, but they still enter P·V: a non-finite value in a later token's V can
// reach the earlier queries of its 32-key tile (never another sequence: staged keys are
// clamped to the tile's sequence).
#if PREFILL_COOP
@group(0) @binding(1) var<storage, {{ACT}}> qkv: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> kv: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read> seqs: array<u32>;
@group(0) @binding(4) var<storage, read> pos: array<u32>;
@group(0) @binding(5) var<storage, read_write> out: array<f32>;

const BQ: u32 = {{BQ}}u;
const BK: u32 = 32u;
const D4: u32 = D / 4u;
const DF: u32 = D / 16u;      // fragments across a head
const HV: u32 = D4 + 2u;      // row stride of the f16 tiles, in vec4s (D + 8 halves)
const FS: u32 = BK + 4u;      // row stride of the scores, in floats
const PV: u32 = BK / 4u + 2u; // row stride of P, in vec4s (BK + 8 halves)
const WGSIZE: u32 = BQ * 2u;
// K at rows 0 … BK − 1, V at rows BK … 2·BK − 1; before the walk, Q 64 rows at a time.
var<workgroup> tiles: array<vec4<f16>, 64u * HV>;
var<workgroup> scores: array<f32, BQ * FS>;
var<workgroup> probs: array<vec4<f16>, BQ * PV>;

fn f16x4(v: vec4<f32>) -> vec4<f16> {
    return vec4<f16>(clamp(v, vec4<f32>(-65504.0), vec4<f32>(65504.0)));
}

// Stages `rows` keys from j0 (clamped to `last`) into tile rows from `row0`: `which` 0 for K,
// 1 for V; keys before pos0 from the ring, the others from the new rows.
fn stage_keys(lid: u32, j0: u32, last: u32, s: u32, pos0: u32, t0: u32, kvh: u32, which: u32, row0: u32) {
    let width4 = row_width() / 4u;
    let col4 = select(k_col(kvh), v_col(kvh), which == 1u) / 4u;
    for (var e = lid; e < BK * D4; e += WGSIZE) {
        let jj = e / D4;
        let d = e % D4;
        let j = min(j0 + jj, last);
        var x: vec4<f32>;
        if (j < pos0) {
            x = kv[cache_ix(s, j, which, kvh, 0u) / 4u + d];
        } else {
            x = qkv[(t0 + j - pos0) * width4 + col4 + d];
        }
        tiles[(row0 + jj) * HV + d] = f16x4(x);
    }
}

// S = Q·Kᵀ of this subgroup's rows against the staged K tile, into its rows of `scores`.
fn score_tile(q: ptr<function, array<coop_mat16x16<f16, A>, DF>>, band: u32) {
    var s0: coop_mat16x16<f32, C>;
    var s1: coop_mat16x16<f32, C>;
    for (var k = 0u; k < DF; k++) {
        // B = Kᵀ (row d, column j): the K rows [j][d] are its column-major form.
        s0 = coopMultiplyAdd((*q)[k], coopLoad<coop_mat16x16<f16, B>>(&tiles[k * 4u], HV), s0);
        s1 = coopMultiplyAdd((*q)[k], coopLoad<coop_mat16x16<f16, B>>(&tiles[16u * HV + k * 4u], HV), s1);
    }
    coopStoreT(s0, &scores[band * 16u * FS], FS);
    coopStoreT(s1, &scores[band * 16u * FS + 16u], FS);
}

@compute @workgroup_size({{WGSIZE}})
fn attn_prefill_coop(
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
    let band = lid / 32u;
    let lane = lid % 32u;
    // SIMT passes: row r of the tile, keys c0 … c0 + 15 of each key tile.
    let r = band * 16u + lane / 2u;
    let c0 = (lane % 2u) * 16u;
    let qi = tile * BQ + r;
    let i = pos0 + min(qi, len - 1u); // rows past the end act as the last
    let first = first_key(i);
    let width4 = row_width() / 4u;

    // Q of the tile, scaled, 64 rows at a time through the key tiles' memory.
    var q: array<coop_mat16x16<f16, A>, DF>;
    for (var round = 0u; round < BQ / 64u; round++) {
        workgroupBarrier();
        for (var e = lid; e < 64u * D4; e += WGSIZE) {
            let rr = e / D4;
            let t = t0 + min(tile * BQ + round * 64u + rr, len - 1u);
            tiles[rr * HV + e % D4] = f16x4(qkv[t * width4 + h * D4 + e % D4] * p.scale);
        }
        workgroupBarrier();
        // Every subgroup loads (cooperative ops must be workgroup-uniform); the round's keep it.
        for (var k = 0u; k < DF; k++) {
            let f = coopLoadT<coop_mat16x16<f16, A>>(&tiles[(band % 4u) * 16u * HV + k * 4u], HV);
            if (band / 4u == round) { q[k] = f; }
        }
    }

    let last = pos0 + min(tile * BQ + BQ, len) - 1u;
    let lo = first_key(pos0 + tile * BQ);
    // Pass 1: the row's max and sum over this lane's 16 keys of every tile.
    var m = -3.0e38;
    var l = 0.0;
    for (var j0 = lo; j0 <= last; j0 += BK) {
        workgroupBarrier();
        stage_keys(lid, j0, last, s, pos0, t0, kvh, 0u, 0u);
        workgroupBarrier();
        score_tile(&q, band);
        workgroupBarrier();
        var tmax = m;
        for (var c = 0u; c < 16u; c++) {
            let j = j0 + c0 + c;
            if (j <= i && j >= first) { tmax = max(tmax, capped(scores[r * FS + c0 + c])); }
        }
        var sum = 0.0;
        for (var c = 0u; c < 16u; c++) {
            let j = j0 + c0 + c;
            if (j <= i && j >= first) { sum += exp(capped(scores[r * FS + c0 + c]) - tmax); }
        }
        l = l * exp(m - tmax) + sum;
        m = tmax;
    }
    // The two lanes of a row combine their halves.
    let m2 = subgroupShuffleXor(m, 1u);
    let l2 = subgroupShuffleXor(l, 1u);
    let mr = max(m, m2);
    let inv = 1.0 / (l * exp(m - mr) + l2 * exp(m2 - mr));

    // Pass 2: P = exp(s − max) / sum, O += P·V.
    var o: array<coop_mat16x16<f32, C>, DF>;
    for (var j0 = lo; j0 <= last; j0 += BK) {
        workgroupBarrier();
        stage_keys(lid, j0, last, s, pos0, t0, kvh, 0u, 0u);
        stage_keys(lid, j0, last, s, pos0, t0, kvh, 1u, BK);
        workgroupBarrier();
        score_tile(&q, band);
        workgroupBarrier();
        for (var c = 0u; c < 16u; c += 4u) {
            var pr = vec4<f32>(0.0);
            for (var cc = 0u; cc < 4u; cc++) {
                let j = j0 + c0 + c + cc;
                if (j <= i && j >= first) { pr[cc] = exp(capped(scores[r * FS + c0 + c + cc]) - mr) * inv; }
            }
            probs[r * PV + (c0 + c) / 4u] = vec4<f16>(pr);
        }
        workgroupBarrier();
        let p0 = coopLoadT<coop_mat16x16<f16, A>>(&probs[band * 16u * PV], PV);
        let p1 = coopLoadT<coop_mat16x16<f16, A>>(&probs[band * 16u * PV + 4u], PV);
        for (var n = 0u; n < DF; n++) {
            // B = V (row j, column d), row-major.
            o[n] = coopMultiplyAdd(p0, coopLoadT<coop_mat16x16<f16, B>>(&tiles[BK * HV + n * 4u], HV), o[n]);
            o[n] = coopMultiplyAdd(p1, coopLoadT<coop_mat16x16<f16, B>>(&tiles[(BK + 16u) * HV + n * 4u], HV), o[n]);
        }
    }
    // O out, a 16 × 16 block at a time through this subgroup's rows of `scores`.
    let orow = tile * BQ + band * 16u;
    for (var n = 0u; n < DF; n++) {
        workgroupBarrier();
        coopStoreT(o[n], &scores[band * 16u * FS], FS);
        workgroupBarrier();
        for (var e = lane; e < 256u; e += 32u) {
            let rr = e / 16u;
            if (orow + rr < len) {
                out[((t0 + orow + rr) * p.heads + h) * D + n * 16u + e % 16u] = scores[(band * 16u + rr) * FS + e % 16u];
            }
        }
    }
}
#endif
