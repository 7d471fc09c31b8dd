// The decode-step skeleton (`#include decode_step`), shared by the scan, SSD and fused Mamba
// step kernels: a workgroup of 256 invocations takes 64 channels of one item (a sequence, or a
// (sequence, head) pair), 4 invocations per channel. Invocation (c, q) streams the states
// n ≡ q (mod 4) of its channel in place, so no private state array is needed, and
// `quad_sum` adds the channel's four partials through workgroup memory.

// Channel blocks of 64 per item.
fn step_blocks(channels: u32) -> u32 {
    return (channels + 63u) / 64u;
}

// The workgroup's flat index over a 2-D grid (see ops::grid): item × step_blocks + block.
// Workgroup-uniform, so an early return on it keeps the barriers below in uniform control flow.
fn step_workgroup(wid: vec3<u32>, nwg: vec3<u32>) -> u32 {
    return wid.x + wid.y * nwg.x;
}

// The channel that invocation `lid` of workgroup `idx` takes (may be past the last channel:
// such lanes compute and take part in the barriers, and never store).
fn step_channel(idx: u32, channels: u32, lid: u32) -> u32 {
    return (idx % step_blocks(channels)) * 64u + lid / 4u;
}

// Two slots, so a kernel can reduce twice (dt, then y) without a barrier between the reads of
// one and the writes of the next.
var<workgroup> quad_part: array<f32, 512>;

// The sum of the four partials of `lid`'s channel. Every invocation calls it, in uniform
// control flow (it holds a barrier); `slot` is 0 or 1.
fn quad_sum(lid: u32, part: f32, slot: u32) -> f32 {
    let base = slot * 256u;
    quad_part[base + lid] = part;
    workgroupBarrier();
    let c0 = base + (lid & ~3u);
    return quad_part[c0] + quad_part[c0 + 1u] + quad_part[c0 + 2u] + quad_part[c0 + 3u];
}
