// The KV cache as the kernels that read it see it (included by the prefill and decode
// stages): up to four blocks kv0 … kv3 of CAP positions each. A ring is one block, bound in
// all four places; a growing cache binds its allocated blocks and repeats the first in the
// places not allocated yet (never read: the host allocates a block before a position in it
// is written). KVT is the word the stage reads (f32 or vec4<f32>).
@group(0) @binding(2) var<storage, read> kv0: array<{{KVT}}>;
@group(0) @binding(3) var<storage, read> kv1: array<{{KVT}}>;
@group(0) @binding(4) var<storage, read> kv2: array<{{KVT}}>;
@group(0) @binding(5) var<storage, read> kv3: array<{{KVT}}>;

// Word `ix` (from cache_ix, in KVT units) of block b.
fn block_word(b: u32, ix: u32) -> {{KVT}} {
    switch (b) {
        case 0u: { return kv0[ix]; }
        case 1u: { return kv1[ix]; }
        case 2u: { return kv2[ix]; }
        default: { return kv3[ix]; }
    }
}

// Word `ix` of the block that holds position j.
fn kv_word(j: u32, ix: u32) -> {{KVT}} {
    return block_word(kv_block(j), ix);
}
