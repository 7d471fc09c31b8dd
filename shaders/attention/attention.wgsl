// Softmax attention over packed sequences with a KV cache (ops::attention). Layouts:
//   qkv  : [T, (H + 2·Hkv)·D]  per token: q (H heads), then k and v (Hkv heads each), RoPE'd
//   kv   : [S, CAP, 2, Hkv, D] the cache, K then V: for each sequence a ring of CAP positions
//                              (position j at slot j mod CAP), or (BLOCKS) up to KV_BLOCKS
//                              such tensors, position j in block j / CAP at slot j mod CAP
//   seqs : cu_seqlens [S + 1]  (lib/packed_seqs)
//   pos  : [S] u32             positions already cached per sequence (the new tokens of
//                              sequence s sit at positions pos[s], pos[s] + 1, …)
// Query at position i sees key j when i − W < j ≤ i (W = `window`, 0: no window). Keys before
// pos[s] come from the cache, the others from the new tokens' k and v in qkv. GQA: query head
// h reads KV head h / (H / Hkv). Scores are f32: s = q·k·scale, soft-capped to
// cap·tanh(s / cap) when SOFTCAP; the online softmax keeps a running max and sum (FA2).
struct Params {
    nseq: u32,
    heads: u32,
    kv_heads: u32,
    cap: u32,
    window: u32,
    tiles: u32,
    splits: u32,
    split_len: u32,
    scale: f32,
    softcap: f32,
    flags: u32,
    d4: u32,
    bk: u32,
    block: u32,
}
@group(0) @binding(0) var<uniform> p: Params;

#include flags

const D: u32 = {{D}}u;

// Row width of qkv, and where head parts start in it.
fn row_width() -> u32 { return (p.heads + 2u * p.kv_heads) * D; }
fn k_col(kvh: u32) -> u32 { return (p.heads + kvh) * D; }
fn v_col(kvh: u32) -> u32 { return (p.heads + p.kv_heads + kvh) * D; }

const KV_BLOCKS: u32 = 4u;

// The cache block that holds position j (0 for a ring).
fn kv_block(j: u32) -> u32 {
    if (flag(BLOCKS)) { return min(j / p.cap, KV_BLOCKS - 1u); }
    return 0u;
}

// Element (which: 0 K, 1 V) of position j's slot in sequence s's ring or block.
fn cache_ix(s: u32, j: u32, which: u32, kvh: u32, d: u32) -> u32 {
    let slot = select(j % p.cap, j - kv_block(j) * p.cap, flag(BLOCKS));
    return (((s * p.cap + slot) * 2u + which) * p.kv_heads + kvh) * D + d;
}

// The first key position query position i sees.
fn first_key(i: u32) -> u32 {
    if (p.window == 0u || i + 1u < p.window) { return 0u; }
    return i + 1u - p.window;
}

fn capped(s: f32) -> f32 {
    if (flag(SOFTCAP)) { return p.softcap * tanh(s / p.softcap); }
    return s;
}

#include attention/prefill
#include attention/prefill_coop
#include attention/decode
#include attention/cache
