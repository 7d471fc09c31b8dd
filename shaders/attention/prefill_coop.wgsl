// The tensor-core prefill (included by attention.wgsl; the `.flash{BQ}` variants): Q·Kᵀ and
// P·V on 16×16×16 f16 cooperative matrices with f32 accumulation, fed from workgroup memory.
// A workgroup takes BQ queries (64 or 128) of one sequence and one query head, in 16-row bands
// of SPLIT subgroups of 32 lanes each: a band's subgroups hold the band's Q as DF = D / 16 A
// fragments for the whole walk and split O's columns (SPLIT 2 doubles the subgroups, which the
// H200 runs 1.1–1.7× faster). Keys go BK = 32 at a time, staged as f16 in rows of D + 8 halves
// (rows of D would put the rows a fragment load touches in one bank); the next tile's loads
// are issued a tile ahead, so they overlap the products. Fragments, fetched words and score
// groups are named one by one (#for) rather than held in arrays indexed in loops, which the
// driver may leave in memory.
//
// FA2's online softmax rescales O row by row at every tile, which a cooperative-matrix
// accumulator cannot do in WGSL. The rescale is lazy instead: P = exp(s − m) against a
// reference max m per row that moves only when a tile's max passes it by more than TAU, so
// P ≤ e^TAU stays within f16, and O goes through workgroup memory to be rescaled (a
// workgroup-uniform branch) only in the tiles where that happens. (The forms before this one
// swept the keys twice, max and sum then P·V: 1.7× slower on the H200.) The scores and P pass
// through workgroup memory: 2·SPLIT lanes per row, 32 / (2·SPLIT) keys each.
//
// Every workgroup variable's size is a multiple of 128 bytes. The first one-sweep version had
// a 4-byte flag and a BQ-float array beside the tiles and got wrong products on the H200
// (NVIDIA 580) even where its branch was never taken; with the flag in 32 words and the sums
// in the scores' padding column the same arithmetic is right. (Probably the driver placed the
// small variables so that a fragment load lost its alignment; the SSD notes' failures with
// workgroupUniformLoad had a 4-byte variable too.)
//
// Finite values beyond f16's range saturate to ±65504; NaN and ±Inf pass. Masked keys get
// P = 0 but still enter P·V, so a non-finite value in a later token's V can reach the earlier
// queries of its 32-key tile (never another sequence: staged keys are clamped to the tile's).
#if PREFILL_COOP
@group(0) @binding(1) var<storage, {{ACT}}> qkv: array<vec4<f32>>;
#include attention/kv_blocks
@group(0) @binding(6) var<storage, read> seqs: array<u32>;
@group(0) @binding(7) var<storage, read> pos: array<u32>;
@group(0) @binding(8) var<storage, read_write> out: array<vec4<f32>>;

const BQ: u32 = {{BQ}}u;
const BK: u32 = 32u;
const D4: u32 = D / 4u;
const HV: u32 = D4 + 2u;      // row stride of the f16 tiles, in vec4s (D + 8 halves)
const FS: u32 = BK + 4u;      // row stride of the scores, in floats
const FS4: u32 = FS / 4u;     // … in vec4s
const PV: u32 = BK / 4u + 2u; // row stride of P, in vec4s (BK + 8 halves)
const SPLIT: u32 = {{SPLIT}}u; // subgroups per 16 query rows, each with D / SPLIT columns of O
const WGSIZE: u32 = BQ * 2u * SPLIT;
const LPR: u32 = 2u * SPLIT;  // lanes per query row in the softmax
const KPL: u32 = BK / LPR;    // keys per lane there
const DFO: u32 = {{DFO}}u;    // O fragments per subgroup: D / 16 / SPLIT
const PL: u32 = {{PL}}u;      // vec4s of a K (or V) tile each invocation stages: BK·D4 / WGSIZE
// K at rows 0 … BK − 1, V at rows BK … 2·BK − 1; before the walk, Q 64 rows at a time.
var<workgroup> tiles: array<vec4<f16>, 64u * HV>;
// In vec4s, so that a softmax lane reads its keys four at a time: with a row's lanes KPL
// floats apart and rows FS apart, a quarter-warp's 128-bit reads touch 32 distinct banks
// (its scalar reads were 4-way conflicts).
var<workgroup> scores: array<vec4<f32>, BQ * FS4>;
var<workgroup> probs: array<vec4<f16>, BQ * PV>;
const TAU: f32 = 8.0;         // how far a row's max may pass its reference m before O is rescaled
// (32 words: a small variable beside the tiles might misalign them for cooperative loads.)
var<workgroup> rescale: array<atomic<u32>, 32>;

fn f16x4(v: vec4<f32>) -> vec4<f16> {
    let special = (bitcast<vec4<u32>>(v) & vec4<u32>(0x7f800000u)) == vec4<u32>(0x7f800000u);
    return vec4<f16>(select(clamp(v, vec4<f32>(-65504.0), vec4<f32>(65504.0)), v, special));
}

// Whether the query at position i sees key j. (Masks, maxima and sums are scalar: the same
// arithmetic on vec4 lanes gave wrong results on the H200, cause not found.)
fn key_seen(j: u32, i: u32, first: u32) -> bool {
    return j <= i && j >= first;
}

// One K or V tile's words for this invocation (element lid + u·WGSIZE of the BK × D4 tile).
struct Words {
#for U in 0..PL
    w{{U}}: vec4<f32>,
#endfor
}

// Loads K (which = 0) or V (1) of keys j0 … j0 + BK − 1, clamped to `last`: keys before pos0
// from the cache, the others from the new rows.
fn fetch(lid: u32, which: u32, j0: u32, last: u32, s: u32, pos0: u32, t0: u32, kvh: u32) -> Words {
    var f: Words;
    let width4 = row_width() / 4u;
    let col = select(k_col(kvh), v_col(kvh), which == 1u) / 4u;
#for U in 0..PL
    {
        let e = lid + {{U}}u * WGSIZE;
        let j = min(j0 + e / D4, last);
        let d = e % D4;
        if (j >= pos0) {
            f.w{{U}} = qkv[(t0 + j - pos0) * width4 + col + d];
        } else {
            f.w{{U}} = kv_word(j, cache_ix(s, j, which, kvh, 0u) / 4u + d);
        }
    }
#endfor
    return f;
}

// Writes fetched words into the tile rows from row0 on (0: the K tile, BK: the V tile) as f16.
fn stage(lid: u32, f: Words, row0: u32) {
#for U in 0..PL
    {
        let e = lid + {{U}}u * WGSIZE;
        tiles[(row0 + e / D4) * HV + e % D4] = f16x4(f.w{{U}});
    }
#endfor
}

// S = Q·Kᵀ of this subgroup's rows against the staged K tile, into its band's rows of
// `scores`: both 16-key halves, or (SPLIT 2) the half `half`.
// B = Kᵀ (row d, column j): the K rows [j][d] are its column-major form.
fn score_tile(
#for K in 0..DF
    q{{K}}: coop_mat16x16<f16, A>,
#endfor
    band: u32,
    half: u32,
) {
#if SPLIT2
    var s0: coop_mat16x16<f32, C>;
#for K in 0..DF
    s0 = coopMultiplyAdd(q{{K}}, coopLoad<coop_mat16x16<f16, B>>(&tiles[half * 16u * HV + {{K}}u * 4u], HV), s0);
#endfor
    coopStoreT(s0, &scores[band * 16u * FS4 + half * 4u], FS4);
#else
    var s0: coop_mat16x16<f32, C>;
    var s1: coop_mat16x16<f32, C>;
#for K in 0..DF
    s0 = coopMultiplyAdd(q{{K}}, coopLoad<coop_mat16x16<f16, B>>(&tiles[{{K}}u * 4u], HV), s0);
    s1 = coopMultiplyAdd(q{{K}}, coopLoad<coop_mat16x16<f16, B>>(&tiles[16u * HV + {{K}}u * 4u], HV), s1);
#endfor
    coopStoreT(s0, &scores[band * 16u * FS4], FS4);
    coopStoreT(s1, &scores[band * 16u * FS4 + 4u], FS4);
#endif
}

@compute @workgroup_size({{WGSIZE}})
fn attn_prefill_coop(
    @builtin(local_invocation_index) lid: u32,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    // Workgroup index: (sequence · heads + head) · tiles + tiles − 1 − tile. A head's tiles run
    // side by side, so its K/V rows are read from L2 by most of them, and its last tiles (the
    // longest under a causal mask) start first, so the dispatch ends on short ones. (Neither
    // this nor the vec4 score reads measured faster on the H200; neither is slower.)
    let idx = wid.x + wid.y * nwg.x;
    if (idx >= p.nseq * p.tiles * p.heads) { return; } // workgroup-uniform
    let tile = p.tiles - 1u - idx % p.tiles;
    let h = (idx / p.tiles) % p.heads;
    let s = idx / (p.heads * p.tiles);
    let t0 = seqs[s];
    let len = seqs[s + 1u] - t0;
    if (tile * BQ >= len) { return; } // workgroup-uniform
    let kvh = h / (p.heads / p.kv_heads);
    let pos0 = pos[s];
    // Subgroup lid / 32 owns query rows 16·band … 16·band + 15 and (SPLIT 2) one half of O's
    // columns.
    let band = lid / (32u * SPLIT);
    let half = (lid / 32u) % SPLIT;
    let lane = lid % 32u;
    // SIMT parts: row r of the tile, keys c0 … c0 + KPL − 1 of each key tile.
    let r = lid / LPR;
    let c0 = (lid % LPR) * KPL;
    let i = pos0 + min(tile * BQ + r, len - 1u); // rows past the end act as the last
    let first = first_key(i);
    let width4 = row_width() / 4u;

    // Q of the tile, scaled, 64 rows at a time through the key tiles' memory. Every subgroup
    // loads (cooperative ops must be workgroup-uniform); the round's own keep theirs.
#for K in 0..DF
    var q{{K}}: coop_mat16x16<f16, A>;
#endfor
    if (lid == 0u) { atomicStore(&rescale[0], 0u); } // workgroup memory starts unzeroed
    for (var round = 0u; round < BQ / 64u; round++) {
        workgroupBarrier();
        for (var e = lid; e < 64u * D4; e += WGSIZE) {
            let t = t0 + min(tile * BQ + round * 64u + e / D4, len - 1u);
            tiles[(e / D4) * HV + e % D4] = f16x4(qkv[t * width4 + h * D4 + e % D4] * p.scale);
        }
        workgroupBarrier();
        let mine = band / 4u == round;
#for K in 0..DF
        let f{{K}} = coopLoadT<coop_mat16x16<f16, A>>(&tiles[(band % 4u) * 16u * HV + {{K}}u * 4u], HV);
        if (mine) { q{{K}} = f{{K}}; }
#endfor
    }

    let last = pos0 + min(tile * BQ + BQ, len) - 1u;
    let lo = first_key(pos0 + tile * BQ);
    // One sweep with the lazy rescale (see the top). The LPR lanes of a row hold the same m;
    // each sums its own KPL keys into l. Pipelined so that a tile takes two barriers: a pass
    // does O += P·V of the previous tile and S = Q·Kᵀ of this one, then (barrier) the softmax
    // of this tile while V of this tile and K of the next are staged, then (barrier, the
    // flag's uniform load) P·V can run. One pass past the last tile does the last P·V (its
    // keys are all masked).
    var m = -3.0e38;
    var l = 0.0;
#for N in 0..DFO
    var o{{N}}: coop_mat16x16<f32, C>;
#endfor
    workgroupBarrier(); // Q's readers are done with the tiles
    stage(lid, fetch(lid, 0u, lo, last, s, pos0, t0, kvh), 0u);
    // The first pass's P·V adds 0 · 0.
    for (var e = lid; e < BK * HV; e += WGSIZE) { tiles[BK * HV + e] = vec4<f16>(); }
    for (var e = lid; e < BQ * PV; e += WGSIZE) { probs[e] = vec4<f16>(); }
    var nv = fetch(lid, 1u, lo, last, s, pos0, t0, kvh);
    var nk = fetch(lid, 0u, lo + BK, last, s, pos0, t0, kvh);
    workgroupBarrier();
    // This subgroup's columns of O (and of the V tile) start at column ocol.
    let ocol = half * DFO * 4u;
    for (var j0 = lo; j0 <= last + BK; j0 += BK) {
        // O += P·V (the previous tile); B = V (row j, column d), row-major.
        let pa = coopLoadT<coop_mat16x16<f16, A>>(&probs[band * 16u * PV], PV);
        let pb = coopLoadT<coop_mat16x16<f16, A>>(&probs[band * 16u * PV + 4u], PV);
#for N in 0..DFO
        o{{N}} = coopMultiplyAdd(pa, coopLoadT<coop_mat16x16<f16, B>>(&tiles[BK * HV + ocol + {{N}}u * 4u], HV), o{{N}});
        o{{N}} = coopMultiplyAdd(pb, coopLoadT<coop_mat16x16<f16, B>>(&tiles[(BK + 16u) * HV + ocol + {{N}}u * 4u], HV), o{{N}});
#endfor
        score_tile(
#for K in 0..DF
            q{{K}},
#endfor
            band, half);
        workgroupBarrier();
        var tmax = -3.0e38;
#for G in 0..KG
        let w{{G}} = scores[r * FS4 + c0 / 4u + {{G}}u];
        let x{{G}} = vec4<f32>(capped(w{{G}}.x), capped(w{{G}}.y), capped(w{{G}}.z), capped(w{{G}}.w));
        let on{{G}}_0 = key_seen(j0 + c0 + {{G}}u * 4u, i, first);
        let on{{G}}_1 = key_seen(j0 + c0 + {{G}}u * 4u + 1u, i, first);
        let on{{G}}_2 = key_seen(j0 + c0 + {{G}}u * 4u + 2u, i, first);
        let on{{G}}_3 = key_seen(j0 + c0 + {{G}}u * 4u + 3u, i, first);
        tmax = max(tmax, select(-3.0e38, x{{G}}.x, on{{G}}_0));
        tmax = max(tmax, select(-3.0e38, x{{G}}.y, on{{G}}_1));
        tmax = max(tmax, select(-3.0e38, x{{G}}.z, on{{G}}_2));
        tmax = max(tmax, select(-3.0e38, x{{G}}.w, on{{G}}_3));
#endfor
        tmax = max(tmax, subgroupShuffleXor(tmax, 1u));
#if SPLIT2
        tmax = max(tmax, subgroupShuffleXor(tmax, 2u));
#endif
        // A row's first seen key sets m (O is still 0); a later jump past TAU rescales O.
        let grow = tmax > m + TAU;
        let mn = select(m, tmax, grow);
        let alpha = exp(m - mn);
        if (grow && m > -1.0e38) { atomicOr(&rescale[0], 1u); }
        m = mn;
        var sum = 0.0;
#for G in 0..KG
        let e{{G}} = vec4<f32>(
            select(0.0, exp(x{{G}}.x - m), on{{G}}_0),
            select(0.0, exp(x{{G}}.y - m), on{{G}}_1),
            select(0.0, exp(x{{G}}.z - m), on{{G}}_2),
            select(0.0, exp(x{{G}}.w - m), on{{G}}_3));
        sum += e{{G}}.x;
        sum += e{{G}}.y;
        sum += e{{G}}.z;
        sum += e{{G}}.w;
        probs[r * PV + c0 / 4u + {{G}}u] = vec4<f16>(e{{G}});
#endfor
        l = l * alpha + sum;
        stage(lid, nv, BK);
        stage(lid, nk, 0u);
        nv = fetch(lid, 1u, j0 + BK, last, s, pos0, t0, kvh);
        nk = fetch(lid, 0u, j0 + 2u * BK, last, s, pos0, t0, kvh);
        if (workgroupUniformLoad(&rescale[0]) != 0u) {
            // O[r] *= alpha, a fragment at a time through the band's score rows (this
            // subgroup's at columns 16·half; a row's lanes scale 8 columns each).
#for N in 0..DFO
            coopStoreT(o{{N}}, &scores[band * 16u * FS4 + half * 4u], FS4);
            workgroupBarrier();
            for (var c = 0u; c < 2u; c++) { scores[r * FS4 + (lid % LPR) * 2u + c] *= alpha; }
            workgroupBarrier();
            o{{N}} = coopLoadT<coop_mat16x16<f32, C>>(&scores[band * 16u * FS4 + half * 4u], FS4);
            workgroupBarrier();
#endfor
            if (lid == 0u) { atomicStore(&rescale[0], 0u); }
        }
    }
    // 1 / the row's sum in the scores' padding column, for whichever lanes write the row out.
    var lr = l + subgroupShuffleXor(l, 1u);
#if SPLIT2
    lr += subgroupShuffleXor(lr, 2u);
#endif
    if (lid % LPR == 0u) { scores[r * FS4 + 8u] = vec4<f32>(1.0 / lr); }
    // O out, a 16 × 16 block at a time through this subgroup's part of its band's `scores`.
    let orow = tile * BQ + band * 16u;
#for N in 0..DFO
    workgroupBarrier();
    coopStoreT(o{{N}}, &scores[band * 16u * FS4 + half * 4u], FS4);
    workgroupBarrier();
    for (var e = lane; e < 64u; e += 32u) {
        if (orow + e / 4u < len) {
            let row = (band * 16u + e / 4u) * FS4;
            out[(((t0 + orow + e / 4u) * p.heads + h) * D + (half * DFO + {{N}}u) * 16u) / 4u + e % 4u] =
                scores[row + half * 4u + e % 4u] * scores[row + 8u].x;
        }
    }
#endfor
}
#endif
