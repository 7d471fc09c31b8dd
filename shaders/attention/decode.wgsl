// Decode (included by attention.wgsl), flash-decoding: one query per sequence. A workgroup
// takes one (sequence, KV head, group of up to GB of its query heads, split), so that the K
// and V rows of a split are read once for all the query heads that share them (GQA), in
// vec4 words. Per tile of 64 keys: one key per invocation for the scores against each head
// (K rows read whole by their invocation, Q broadcast from workgroup memory); invocation g
// (< GB) then finds head g's max and sum; for P·V each invocation takes 4 output dims of
// every head over a 64 / (D / 4)-th of the tile's keys (V rows coalesced), and the key
// groups are summed at the end. It writes each head's partial (max, sum, unnormalised
// output) to `part`; `attn_reduce` combines the splits.
#if DECODE
@group(0) @binding(1) var<storage, {{ACT}}> qkv: array<vec4<f32>>;
#include attention/kv_blocks
@group(0) @binding(6) var<storage, read> seqs: array<u32>;
@group(0) @binding(7) var<storage, read> pos: array<u32>;
@group(0) @binding(8) var<storage, read_write> part: array<f32>;

const GB: u32 = {{GB}}u;      // query heads per workgroup
const D4: u32 = D / 4u;
const KGR: u32 = 64u / D4;    // key groups of P·V (4, 2, 1 at D = 64, 128, 256)
const PS: u32 = 65u;          // row stride of `ps` (65: head g's max loop reads its own bank)
// Q of the group's heads (scaled), then at the end each key group's O.
var<workgroup> qs: array<vec4<f32>, GB * 64u>;
// The tile's scores, then P, per head.
var<workgroup> ps: array<f32, GB * PS>;
// Where each key of the tile has its V row: the cache block (KV_BLOCKS: the new row in qkv) and the
// word index.
var<workgroup> row_src: array<u32, 64>;
var<workgroup> row_ix: array<u32, 64>;
// Each head's new max, then its rescale factor.
var<workgroup> stat: array<f32, 2u * GB>;

// Word ix of cache block src (0 … 3), or of qkv (src 4).
fn word(src: u32, ix: u32) -> vec4<f32> {
    if (src >= KV_BLOCKS) { return qkv[ix]; }
    return block_word(src, ix);
}

@compute @workgroup_size(64)
fn attn_decode(
    @builtin(local_invocation_index) lid: u32,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let group = p.heads / p.kv_heads;          // query heads per KV head
    let hgs = (group + GB - 1u) / GB;          // workgroups per KV head and split
    let idx = wid.x + wid.y * nwg.x;
    if (idx >= p.nseq * p.kv_heads * hgs * p.splits) { return; } // workgroup-uniform
    let split = idx % p.splits;
    let hg = (idx / p.splits) % hgs;
    let kvh = (idx / (p.splits * hgs)) % p.kv_heads;
    let s = idx / (p.splits * hgs * p.kv_heads);
    let h0 = kvh * group + hg * GB;            // the group's first query head
    let gn = min(GB, group - hg * GB);         // and how many it has
    let t = seqs[s];
    let i = pos[s];                            // the query's position; the cache holds keys < i
    let row4 = t * (row_width() / 4u);
    for (var e = lid; e < GB * D4; e += 64u) {
        let g = e / D4;
        qs[e] = select(vec4<f32>(), qkv[row4 + (h0 + min(g, gn - 1u)) * D4 + e % D4] * p.scale, g < gn);
    }
    workgroupBarrier();
    let first = first_key(i);
    let lo = first + split * p.split_len;
    let hi = min(lo + p.split_len, i + 1u);    // keys [lo, hi)
    let c4 = lid % D4;                         // P·V: this invocation's dims 4·c4 … 4·c4 + 3
    let kgr = lid / D4;                        // and its keys kgr, kgr + KGR, … of each tile
    var m = -3.0e38;                           // head lid's max and sum (lid < GB)
    var l = 0.0;
#for G in 0..GB
    var o{{G}} = vec4<f32>();
#endfor
    for (var j0 = lo; j0 < hi; j0 += 64u) {
        let j = j0 + lid;
        let visible = j < hi;
        var src = KV_BLOCKS; // the new row, in qkv
        var kix = row4 + k_col(kvh) / 4u;
        var vix = row4 + v_col(kvh) / 4u;
        if (j < i) {
            src = kv_block(j);
            kix = cache_ix(s, j, 0u, kvh, 0u) / 4u;
            vix = cache_ix(s, j, 1u, kvh, 0u) / 4u;
        }
        row_src[lid] = src;
        row_ix[lid] = vix;
#for G in 0..GB
        var a{{G}} = 0.0;
#endfor
        if (visible) {
            for (var c = 0u; c < D4; c++) {
                let kw = word(src, kix + c);
#for G in 0..GB
                a{{G}} += dot(qs[{{G}}u * D4 + c], kw);
#endfor
            }
        }
#for G in 0..GB
        ps[{{G}}u * PS + lid] = select(-3.0e38, capped(a{{G}}), visible);
#endfor
        workgroupBarrier();
        if (lid < GB) {
            var tmax = m;
            for (var k = 0u; k < 64u; k++) { tmax = max(tmax, ps[lid * PS + k]); }
            stat[lid] = tmax;
            stat[GB + lid] = exp(m - tmax);
            m = tmax;
        }
        workgroupBarrier();
#for G in 0..GB
        ps[{{G}}u * PS + lid] = select(0.0, exp(ps[{{G}}u * PS + lid] - stat[{{G}}u]), visible);
#endfor
        workgroupBarrier();
        if (lid < GB) {
            var sum = 0.0;
            for (var k = 0u; k < 64u; k++) { sum += ps[lid * PS + k]; }
            l = l * stat[GB + lid] + sum;
        }
#for G in 0..GB
        o{{G}} *= stat[GB + {{G}}u];
#endfor
        let n = min(64u, hi - j0);
        for (var jj = kgr; jj < n; jj += KGR) {
            let vw = word(row_src[jj], row_ix[jj] + c4);
#for G in 0..GB
            o{{G}} += ps[{{G}}u * PS + jj] * vw;
#endfor
        }
        workgroupBarrier();
    }
    // The key groups' O through `qs` (Q is no longer read), summed by key group 0.
#for G in 0..GB
    qs[(kgr * GB + {{G}}u) * D4 + c4] = o{{G}};
#endfor
    workgroupBarrier();
    // part[(s·H + h)·splits + split] = (m, l, o[0..D]).
    if (kgr == 0u) {
        for (var g = 0u; g < gn; g++) {
            var acc = qs[g * D4 + c4];
            for (var k = 1u; k < KGR; k++) { acc += qs[(k * GB + g) * D4 + c4]; }
            let base = ((s * p.heads + h0 + g) * p.splits + split) * (D + 2u) + 2u + 4u * c4;
            part[base] = acc.x;
            part[base + 1u] = acc.y;
            part[base + 2u] = acc.z;
            part[base + 3u] = acc.w;
        }
    }
    if (lid < gn) {
        let base = ((s * p.heads + h0 + lid) * p.splits + split) * (D + 2u);
        part[base] = m;
        part[base + 1u] = l;
    }
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
