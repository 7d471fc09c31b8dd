// Cache upkeep (included by attention.wgsl).
#if APPEND
// Writes the new tokens' K and V into each sequence's ring: of its positions
// [pos[s], pos[s] + len), only the last CAP (the rest would be overwritten in the same pass,
// and two writers of one slot would race). With BLOCKS, `kv` is block p.block and takes the
// positions that fall in it (one dispatch per block). One invocation per (token, KV head, d).
@group(0) @binding(1) var<storage, {{ACT}}> qkv: array<f32>;
@group(0) @binding(2) var<storage, read_write> kv: array<f32>;
@group(0) @binding(3) var<storage, read> seqs: array<u32>;
@group(0) @binding(4) var<storage, read> pos: array<u32>;

#include packed_seqs

@compute @workgroup_size(64)
fn kv_append(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let e = gid.x + gid.y * nwg.x * 64u;
    let total = seqs[p.nseq];
    if (e >= total * p.kv_heads * D) { return; }
    let d = e % D;
    let kvh = (e / D) % p.kv_heads;
    let t = e / (D * p.kv_heads);
    let s = seq_of(t);
    let len = seqs[s + 1u] - seqs[s];
    let r = t - seqs[s];
    let j = pos[s] + r;
    if (flag(BLOCKS)) {
        if (kv_block(j) != p.block) { return; }
    } else if (r + p.cap < len) { return; } // overwritten by a later token of this pass
    let row = t * row_width();
    kv[cache_ix(s, j, 0u, kvh, d)] = qkv[row + k_col(kvh) + d];
    kv[cache_ix(s, j, 1u, kvh, d)] = qkv[row + v_col(kvh) + d];
}
#endif

#if ADVANCE
// pos[s] += the sequence's new tokens, after every layer has read pos.
@group(0) @binding(1) var<storage, read> seqs: array<u32>;
@group(0) @binding(2) var<storage, read_write> pos: array<u32>;

@compute @workgroup_size(64)
fn advance(@builtin(global_invocation_id) gid: vec3<u32>) {
    let s = gid.x;
    if (s >= p.nseq) { return; }
    pos[s] = pos[s] + seqs[s + 1u] - seqs[s];
}
#endif
